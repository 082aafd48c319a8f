/*
 * The status answer: the resource series of a window, downsampled to at
 * most `width` points. Ticks are bucketed by time; a bucket reports the
 * maximum CPU (a spike must stay visible) and the last value of the other
 * series. memory_total / memory_free are 0 in ticks that did not measure
 * them (TRACER_MEMORY_DELAY is longer): the last measured value carries.
 */
#include <stdlib.h>

#include "json.h"
#include "mem.h"
#include "query.h"

static int cmp_tick(const void *a, const void *b)
{
    const ml_status_tick *x = a, *y = b;
    return (x->time > y->time) - (x->time < y->time);
}

/* Ticks arrive in time order from one client; a journal resumed after a
 * restart may interleave. Sorting once keeps windows a binary search. */
static void ensure_sorted(ml_model *m)
{
    for (size_t i = 1; i < m->nstatus; i++)
        if (m->status[i].time < m->status[i - 1].time) {
            qsort(m->status, m->nstatus, sizeof(ml_status_tick), cmp_tick);
            return;
        }
}

static size_t lower(const ml_model *m, int64_t t)
{
    size_t lo = 0, hi = m->nstatus;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->status[mid].time < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

enum { S_TIME, S_CPU, S_SYS, S_RSS, S_TOTAL, S_FREE, S_MODULES, S_OBJECTS, S_N };
static const char *const series_names[S_N] = {
    "time", "cpu", "system_cpu", "rss", "memory_total", "memory_free", "modules", "objects"};

json_t *ml_query_status(const ml_qrun *q, const ml_qwindow *w)
{
    ml_model *m = q->model;
    ensure_sorted(m);
    size_t lo = lower(m, w->start), hi = w->end == INT64_MAX ? m->nstatus : lower(m, w->end);
    json_t *s[S_N];
    for (int k = 0; k < S_N; k++)
        s[k] = json_array();
    uint64_t total = 0, free_mem = 0;
    /* Carry memory readings from before the window. */
    for (size_t i = lo; i-- > 0 && (total == 0 || free_mem == 0);) {
        if (total == 0)
            total = m->status[i].memory_total;
        if (free_mem == 0)
            free_mem = m->status[i].memory_free;
    }
    size_t width = w->width > 0 ? (size_t)w->width : 1000;
    int64_t ws = lo < hi ? m->status[lo].time : 0;
    int64_t span = lo < hi ? m->status[hi - 1].time - ws + 1 : 1;
    size_t i = lo;
    while (i < hi) {
        /* One bucket: the ticks that fall in the same 1/width of the span. */
        size_t bucket = (size_t)((double)(m->status[i].time - ws) * (double)width / (double)span);
        float cpu = 0, sys = 0;
        size_t j = i;
        for (; j < hi; j++) {
            const ml_status_tick *t = &m->status[j];
            if ((size_t)((double)(t->time - ws) * (double)width / (double)span) != bucket)
                break;
            if (t->cpu_percent > cpu)
                cpu = t->cpu_percent;
            if (t->system_cpu_percent > sys)
                sys = t->system_cpu_percent;
            if (t->memory_total)
                total = t->memory_total;
            if (t->memory_free)
                free_mem = t->memory_free;
        }
        const ml_status_tick *last = &m->status[j - 1];
        json_array_append_new(s[S_TIME], ml_json_real((double)last->time / 1e6));
        json_array_append_new(s[S_CPU], ml_json_real(cpu));
        json_array_append_new(s[S_SYS], ml_json_real(sys));
        json_array_append_new(s[S_RSS], ml_json_u64(last->rss));
        json_array_append_new(s[S_TOTAL], ml_json_u64(total));
        json_array_append_new(s[S_FREE], ml_json_u64(free_mem));
        json_array_append_new(s[S_MODULES], json_integer(last->modules));
        json_array_append_new(s[S_OBJECTS], ml_json_u64(last->objects));
        i = j;
    }
    json_t *series = json_object();
    for (int k = 0; k < S_N; k++)
        ml_json_set(series, series_names[k], s[k]);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "series", series);
    return out;
}
