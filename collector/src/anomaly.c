/*
 * The calls answer: every call of one function (when, how long, thread,
 * depth, caller) with a robust anomaly score, plus the run's top
 * anomalies across all functions.
 *
 * Score = |duration - median| / (1.4826 * MAD), the robust z-score. Call
 * durations are measured in whole sample periods, so the MAD is floored at
 * one period: a function whose calls all take the same time does not make
 * a one-period jitter an outlier. A call is an anomaly when its score
 * exceeds ML_ANOMALY_SCORE, it is slower than the median by at least two
 * periods, and its function has at least ML_ANOMALY_MIN_CALLS calls.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "json.h"
#include "mem.h"
#include "query.h"

#define ML_ANOMALY_SCORE 3.5
#define ML_ANOMALY_MIN_CALLS 5
#define ML_ANOMALY_TOP 20

typedef struct call_ref {
    int64_t start, dur;
    uint32_t thread, depth, func;
    uint32_t k; /* index in its call list */
    float score;
} call_ref;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median of v (n > 0 values; v is reordered). */
static double median(int64_t *v, size_t n)
{
    qsort(v, n, sizeof(int64_t), cmp_i64);
    return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

/* Median and MAD of the durations of refs[0..n). */
static void robust_stats(const call_ref *refs, size_t n, double *med, double *mad)
{
    int64_t *v = ml_xmalloc(n * sizeof(int64_t));
    for (size_t i = 0; i < n; i++)
        v[i] = refs[i].dur;
    *med = median(v, n);
    for (size_t i = 0; i < n; i++)
        v[i] = (int64_t)fabs((double)refs[i].dur - *med);
    *mad = median(v, n);
    free(v);
}

static double score_of(int64_t dur, double med, double mad, int64_t period)
{
    double scale = 1.4826 * (mad > (double)period ? mad : (double)period);
    return fabs((double)dur - med) / scale;
}

static bool is_anomaly(const call_ref *r, double med, size_t ncalls, int64_t period)
{
    return ncalls >= ML_ANOMALY_MIN_CALLS && r->score > ML_ANOMALY_SCORE &&
           (double)r->dur >= med + 2.0 * (double)period;
}

static call_ref ref_of(const ml_qrun *q, const ml_thread_index *t, size_t id, size_t d, size_t k)
{
    (void)q;
    const ml_call_list *l = &t->depth[d];
    return (call_ref){.start = ml_call_start(l, k),
                      .dur = ml_call_dur(l, k),
                      .thread = (uint32_t)id,
                      .depth = (uint32_t)d,
                      .func = ml_call_func(l, k)};
}

static const char *func_name(const ml_model *m, uint32_t func)
{
    const ml_frame *f = ml_model_frame(m, func);
    return f ? ml_model_string(m, f->name) : "";
}

/* The caller's function name of call ref r: the function of the call one
 * level up that contains it. */
static const char *caller_name(const ml_qrun *q, const call_ref *r, size_t k)
{
    if (r->depth == 0)
        return "";
    const ml_thread_index *t = &q->calls->threads[r->thread];
    size_t p = ml_calls_parent(t, r->depth, k);
    return p == SIZE_MAX ? "" : func_name(q->model, ml_call_func(&t->depth[r->depth - 1], p));
}

static int cmp_score_desc(const void *a, const void *b)
{
    const call_ref *x = a, *y = b;
    return (x->score < y->score) - (x->score > y->score);
}

static int cmp_func_then_start(const void *a, const void *b)
{
    const call_ref *x = a, *y = b;
    if (x->func != y->func)
        return (x->func > y->func) - (x->func < y->func);
    return (x->start > y->start) - (x->start < y->start);
}

/* The top anomalies of the run: every call grouped by function. */
static json_t *top_anomalies(const ml_qrun *q)
{
    const ml_calls *c = q->calls;
    size_t n = 0, cap = 0;
    call_ref *all = NULL;
    for (size_t id = 1; id < c->nthreads; id++) {
        const ml_thread_index *t = &c->threads[id];
        for (size_t d = 0; d < t->ndepth; d++)
            for (size_t k = 0; k < t->depth[d].n; k++) {
                ml_xgrow((void **)&all, &cap, n + 1, sizeof(call_ref));
                all[n] = ref_of(q, t, id, d, k);
                all[n++].k = (uint32_t)k;
            }
    }
    if (n)
        qsort(all, n, sizeof(call_ref), cmp_func_then_start);
    call_ref top[ML_ANOMALY_TOP];
    size_t ntop = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && all[j].func == all[i].func)
            j++;
        if (j - i >= ML_ANOMALY_MIN_CALLS) {
            double med, mad;
            robust_stats(all + i, j - i, &med, &mad);
            for (size_t k = i; k < j; k++) {
                all[k].score = (float)score_of(all[k].dur, med, mad, c->period_us);
                if (!is_anomaly(&all[k], med, j - i, c->period_us))
                    continue;
                if (ntop < ML_ANOMALY_TOP) {
                    top[ntop++] = all[k];
                } else if (all[k].score > top[ntop - 1].score) {
                    top[ntop - 1] = all[k];
                } else {
                    continue;
                }
                qsort(top, ntop, sizeof(call_ref), cmp_score_desc);
            }
        }
        i = j;
    }
    free(all);
    json_t *a = json_array();
    for (size_t i = 0; i < ntop; i++) {
        json_t *o = json_object();
        ml_json_set(o, "name", ml_json_str(func_name(q->model, top[i].func)));
        ml_json_set(o, "start", ml_json_real((double)top[i].start / 1e6));
        ml_json_set(o, "duration", ml_json_real((double)top[i].dur / 1e6));
        ml_json_set(o, "thread", json_integer(top[i].thread));
        ml_json_set(o, "depth", json_integer(top[i].depth));
        ml_json_set(o, "score", ml_json_real(top[i].score));
        json_array_append_new(a, o);
    }
    return a;
}

json_t *ml_query_calls(const ml_qrun *q, const char *name)
{
    const ml_calls *c = q->calls;
    const ml_model *m = q->model;
    /* The functions of that name (one per file and first line). */
    uint8_t *want = ml_xcalloc(m->nframes + 1, 1);
    for (size_t f = 1; f < m->nframes; f++)
        if (strcmp(ml_model_string(m, m->frames[f].name), name) == 0)
            want[ml_calls_func(c, (uint32_t)f)] = 1;
    size_t n = 0, cap = 0;
    call_ref *refs = NULL;
    for (size_t id = 1; id < c->nthreads; id++) {
        const ml_thread_index *t = &c->threads[id];
        for (size_t d = 0; d < t->ndepth; d++)
            for (size_t k = 0; k < t->depth[d].n; k++) {
                uint32_t func = ml_call_func(&t->depth[d], k);
                if (func >= m->nframes || !want[func])
                    continue;
                ml_xgrow((void **)&refs, &cap, n + 1, sizeof(call_ref));
                refs[n] = ref_of(q, t, id, d, k);
                refs[n++].k = (uint32_t)k;
            }
    }
    free(want);
    double med = 0, mad = 0;
    if (n) {
        robust_stats(refs, n, &med, &mad);
        qsort(refs, n, sizeof(call_ref), cmp_func_then_start);
    }
    json_t *calls = json_array();
    for (size_t i = 0; i < n; i++) {
        call_ref *r = &refs[i];
        r->score = (float)score_of(r->dur, med, mad, c->period_us);
        json_t *o = json_object();
        ml_json_set(o, "start", ml_json_real((double)r->start / 1e6));
        ml_json_set(o, "duration", ml_json_real((double)r->dur / 1e6));
        ml_json_set(o, "thread", json_integer(r->thread));
        ml_json_set(o, "depth", json_integer(r->depth));
        ml_json_set(o, "caller", ml_json_str(caller_name(q, r, r->k)));
        ml_json_set(o, "score", ml_json_real(r->score));
        ml_json_set(o, "anomaly", json_boolean(is_anomaly(r, med, n, c->period_us)));
        json_array_append_new(calls, o);
    }
    free(refs);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "name", ml_json_str(name));
    ml_json_set(out, "calls", calls);
    ml_json_set(out, "median", ml_json_real(med / 1e6));
    ml_json_set(out, "mad", ml_json_real(mad / 1e6));
    ml_json_set(out, "anomalies", top_anomalies(q));
    return out;
}
