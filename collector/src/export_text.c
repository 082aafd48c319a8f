/*
 * The text exports (export.h): speedscope, collapsed stacks, Chrome trace.
 * Written straight into a text buffer: a long run has millions of samples
 * and calls, too many for a jansson value tree.
 */
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "export.h"
#include "flamegraph.h"
#include "json.h"
#include "mem.h"

static const char *frame_name(const ml_model *m, uint32_t f)
{
    const ml_frame *fr = ml_model_frame(m, f);
    return fr ? ml_model_string(m, fr->name) : "?";
}

typedef struct ss_out {
    const ml_model *m;
    ml_sbuf *b, *frames, *weights;
    uint32_t *index; /* function -> shared frame index + 1 */
    uint32_t nshared;
    size_t nsamples;
    int64_t period;
    const ml_thread_index *t; /* the thread being written */
} ss_out;

/* ml_calls_walk segment: the chain once per sample the segment stands for
 * (calls.h keeps their times), the segment's time shared among them. */
static void ss_segment(void *arg, const uint32_t *funcs, size_t depth, int64_t start, int64_t end)
{
    ss_out *o = arg;
    const ml_model *m = o->m;
    ml_sbuf chain = {0};
    for (size_t k = 0; k < depth; k++) {
        uint32_t f = funcs[k] < m->nframes ? funcs[k] : 0;
        if (o->index[f] == 0) {
            const ml_frame *fr = ml_model_frame(m, f);
            o->index[f] = ++o->nshared;
            ml_sbuf_puts(o->frames, o->nshared > 1 ? ",{\"name\":" : "{\"name\":");
            ml_sbuf_jstr(o->frames, frame_name(m, f));
            ml_sbuf_puts(o->frames, ",\"file\":");
            ml_sbuf_jstr(o->frames, fr ? ml_model_string(m, fr->file) : "");
            ml_sbuf_printf(o->frames, ",\"line\":%u}",
                           fr ? (fr->first_line ? fr->first_line : fr->line) : 0);
        }
        ml_sbuf_printf(&chain, k ? ",%u" : "%u", o->index[f] - 1);
    }
    int64_t n = (int64_t)ml_calls_count(o->t, start, end);
    for (int64_t i = 0; i < n; i++) {
        int64_t w = (end - start) / n + (i + 1 < n ? 0 : (end - start) % n);
        ml_sbuf_puts(o->b, o->nsamples ? ",[" : "[");
        ml_sbuf_add(o->b, chain.p, chain.n);
        ml_sbuf_puts(o->b, "]");
        ml_sbuf_printf(o->weights, o->nsamples ? ",%.6g" : "%.6g", (double)w / 1e6);
        o->nsamples++;
    }
    free(chain.p);
}

char *ml_export_speedscope(const ml_qrun *q, size_t *len)
{
    const ml_model *m = q->model;
    const ml_calls *c = q->calls;
    ml_sbuf frames = {0}, b = {0}, weights = {0};
    /* Shared frame index of each function, in order of first use. */
    ss_out o = {.m = m,
                .b = &b,
                .frames = &frames,
                .weights = &weights,
                .period = c->period_us > 0 ? c->period_us : 1};
    o.index = ml_xcalloc(m->nframes + 1, sizeof(uint32_t));
    ml_sbuf_puts(&b, "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\","
                     "\"exporter\":\"microlog\",\"name\":");
    ml_sbuf_jstr(&b, q->run->id);
    ml_sbuf_puts(&b, ",\"activeProfileIndex\":0,\"profiles\":[");
    bool first_profile = true;
    for (size_t id = 1; id < c->nthreads; id++) {
        const ml_thread_index *t = &c->threads[id];
        if (t->n == 0)
            continue;
        const char *tname = id < m->nthreads && m->threads[id].name ? m->threads[id].name : "";
        ml_sbuf_printf(&b, "%s{\"type\":\"sampled\",\"name\":", first_profile ? "" : ",");
        ml_sbuf_jstr(&b, tname);
        ml_sbuf_printf(&b,
                       ",\"unit\":\"seconds\",\"startValue\":%.6f,\"endValue\":%.6f,\"samples\":[",
                       (double)t->first_time / 1e6, (double)(t->last + c->period_us) / 1e6);
        o.nsamples = 0;
        o.t = t;
        weights.n = 0;
        ml_calls_walk(t, INT64_MIN, INT64_MAX, NULL, ss_segment, &o);
        ml_sbuf_puts(&b, "],\"weights\":[");
        if (weights.n)
            ml_sbuf_add(&b, weights.p, weights.n);
        ml_sbuf_puts(&b, "]}");
        first_profile = false;
    }
    ml_sbuf_puts(&b, "],\"shared\":{\"frames\":[");
    if (frames.n)
        ml_sbuf_add(&b, frames.p, frames.n);
    ml_sbuf_puts(&b, "]}}");
    free(frames.p);
    free(weights.p);
    free(o.index);
    return ml_sbuf_take(&b, len);
}

char *ml_export_collapsed(const ml_qrun *q, size_t *len)
{
    ml_ftree t;
    ml_ftree_build(&t, q, NULL);
    int64_t period = q->calls->period_us > 0 ? q->calls->period_us : 1;
    ml_sbuf b = {0};
    uint32_t *path = ml_xmalloc((t.n + 1) * sizeof(uint32_t));
    (void)period;
    for (size_t i = 1; i < t.n; i++) {
        /* Counts are samples, as flamegraph.pl expects from a sampling
         * profiler: each path's samples with it as the whole stack. */
        uint64_t count = t.nodes[i].self_samples;
        if (count == 0)
            continue;
        size_t depth = 0;
        for (uint32_t k = (uint32_t)i; k != 0; k = t.nodes[k].parent)
            path[depth++] = k;
        for (size_t d = depth; d-- > 0;) {
            const char *name = ml_model_string(q->model, t.nodes[path[d]].name);
            /* ';' separates frames and ' ' the count: keep them out of names. */
            for (const char *p = name; *p; p++)
                ml_sbuf_add(&b, *p == ';' ? ":" : *p == ' ' ? "_" : p, 1);
            if (d)
                ml_sbuf_add(&b, ";", 1);
        }
        ml_sbuf_printf(&b, " %llu\n", (unsigned long long)count);
    }
    free(path);
    ml_ftree_dispose(&t);
    return ml_sbuf_take(&b, len);
}

char *ml_export_chrome(const ml_qrun *q, size_t *len)
{
    const ml_model *m = q->model;
    const ml_calls *c = q->calls;
    int pid = q->run->pid > 0 ? q->run->pid : 1;
    ml_sbuf b = {0};
    ml_sbuf_puts(&b, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"run\":");
    ml_sbuf_jstr(&b, q->run->id);
    /* Trace events are calls, not samples: the samples they stand for are
     * said here, the same count as every other view. */
    ml_sbuf_printf(&b, ",\"samples\":%llu,\"samples_without_stack\":%llu,\"events\":\"calls\"",
                   (unsigned long long)(c->samples - c->no_stack), (unsigned long long)c->no_stack);
    ml_sbuf_puts(&b, "},\"traceEvents\":[");
    bool first = true;
    for (size_t id = 1; id < c->nthreads; id++) {
        const ml_thread_index *t = &c->threads[id];
        if (t->n == 0)
            continue;
        const char *tname = id < m->nthreads && m->threads[id].name ? m->threads[id].name : "";
        ml_sbuf_printf(&b,
                       "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%zu,"
                       "\"args\":{\"name\":",
                       first ? "" : ",", pid, id);
        ml_sbuf_jstr(&b, tname);
        ml_sbuf_puts(&b, "}}");
        first = false;
        for (size_t d = 0; d < t->ndepth; d++) {
            const ml_call_list *l = &t->depth[d];
            for (size_t k = 0; k < l->n; k++) {
                uint32_t f = ml_call_func(l, k);
                int64_t s = ml_call_start(l, k), e = s + ml_call_dur(l, k);
                const ml_frame *fr = ml_model_frame(m, f);
                ml_sbuf_puts(&b, ",{\"name\":");
                ml_sbuf_jstr(&b, frame_name(m, f));
                ml_sbuf_printf(&b,
                               ",\"cat\":\"python\",\"ph\":\"X\",\"ts\":%lld,\"dur\":%lld,"
                               "\"pid\":%d,\"tid\":%zu,\"args\":{\"file\":",
                               (long long)s, (long long)(e - s), pid, id);
                ml_sbuf_jstr(&b, fr ? ml_model_string(m, fr->file) : "");
                ml_sbuf_printf(&b, ",\"line\":%u}}", fr ? fr->first_line : 0);
            }
        }
    }
    ml_sbuf_puts(&b, "]}");
    return ml_sbuf_take(&b, len);
}
