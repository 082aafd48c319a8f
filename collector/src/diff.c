/*
 * Function-level time: the inclusive time of every function (each sample
 * counted once per function, however deep the recursion), and the diff of
 * two runs by function name.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "flamegraph.h"
#include "json.h"
#include "map.h"
#include "mem.h"
#include "query.h"

ml_fn_total *ml_query_function_totals(const ml_qrun *q, uint64_t *samples)
{
    const ml_model *m = q->model;
    ml_ftree tree;
    ml_ftree_build(&tree, q, NULL);
    ml_fn_total *total = ml_xcalloc(m->nframes + 1, sizeof(ml_fn_total));
    uint64_t *stamp = ml_xcalloc(m->nframes + 1, sizeof(uint64_t));
    uint32_t path[ML_CALLS_MAX_DEPTH];
    for (size_t s = 1; s < tree.n; s++) {
        uint64_t self = tree.nodes[s].self, self_samples = tree.nodes[s].self_samples;
        if (self == 0 && self_samples == 0)
            continue;
        size_t n = ml_ftree_path(&tree, (uint32_t)s, path, ML_CALLS_MAX_DEPTH);
        for (size_t i = 0; i < n; i++) {
            uint32_t f = path[i];
            if (f == 0 || f >= m->nframes || stamp[f] == s)
                continue;
            stamp[f] = s;
            total[f].us += self;
            total[f].samples += self_samples;
        }
    }
    *samples = tree.nodes[0].samples;
    free(stamp);
    ml_ftree_dispose(&tree);
    return total;
}

typedef struct fn_time {
    const char *name; /* borrowed from a model */
    double time, base;
    uint64_t samples, base_samples;
} fn_time;

/* Adds each function's time and samples of q into the map name -> fn_time;
 * returns the run's samples. */
static uint64_t collect(const ml_qrun *q, ml_map *by_name, fn_time **arr, size_t *n, size_t *cap,
                        bool base)
{
    uint64_t samples;
    ml_fn_total *total = ml_query_function_totals(q, &samples);
    for (size_t f = 1; f < q->model->nframes; f++) {
        if (total[f].us == 0 && total[f].samples == 0)
            continue;
        const char *name = ml_model_string(q->model, q->model->frames[f].name);
        uintptr_t idx = (uintptr_t)ml_map_get(by_name, name);
        if (idx == 0) {
            ml_xgrow((void **)arr, cap, *n + 1, sizeof(fn_time));
            (*arr)[*n] = (fn_time){.name = name};
            idx = ++*n;
            ml_map_put(by_name, name, (void *)idx);
        }
        double t = (double)total[f].us / 1e6;
        if (base) {
            (*arr)[idx - 1].base += t;
            (*arr)[idx - 1].base_samples += total[f].samples;
        } else {
            (*arr)[idx - 1].time += t;
            (*arr)[idx - 1].samples += total[f].samples;
        }
    }
    free(total);
    return samples;
}

static int cmp_delta(const void *a, const void *b)
{
    const fn_time *x = a, *y = b;
    double dx = fabs(x->time - x->base), dy = fabs(y->time - y->base);
    if (dx != dy)
        return dx < dy ? 1 : -1;
    return strcmp(x->name, y->name);
}

/*
 * Sampling error of a share. A function's share of a run's samples is a
 * proportion; between two runs its difference has the standard error
 * sqrt(p (1 - p) (1/n1 + 1/n2)) under the pooled share p if the samples
 * were independent. They are not (consecutive samples of one call are
 * alike), so the bound is widened by ML_DIFF_NOISE_SIGMAS (3) times that
 * error times sqrt(ML_DIFF_CORRELATION) (a sample stands for about that
 * many independent ones' worth of variance: 10, a conservative guess that
 * the known-answer test checks on real runs). A change within it is marked
 * "noise": it is what the next run of the same program could show.
 */
#define ML_DIFF_NOISE_SIGMAS 3.0
#define ML_DIFF_CORRELATION 10.0

static double noise_bound(uint64_t s1, uint64_t n1, uint64_t s2, uint64_t n2)
{
    if (n1 == 0 || n2 == 0)
        return 1.0;
    double p = (double)(s1 + s2) / (double)(n1 + n2);
    double se = sqrt(p * (1 - p) * (1.0 / (double)n1 + 1.0 / (double)n2));
    return ML_DIFF_NOISE_SIGMAS * se * sqrt(ML_DIFF_CORRELATION);
}

json_t *ml_query_diff(const ml_qrun *q, const ml_qrun *base)
{
    ml_map by_name;
    ml_map_init(&by_name);
    fn_time *arr = NULL;
    size_t n = 0, cap = 0;
    uint64_t samples = collect(q, &by_name, &arr, &n, &cap, false);
    uint64_t base_samples = collect(base, &by_name, &arr, &n, &cap, true);
    if (n)
        qsort(arr, n, sizeof(fn_time), cmp_delta);
    json_t *fns = json_array();
    for (size_t i = 0; i < n; i++) {
        const fn_time *f = &arr[i];
        double share = samples ? (double)f->samples / (double)samples : 0;
        double base_share = base_samples ? (double)f->base_samples / (double)base_samples : 0;
        double bound = noise_bound(f->samples, samples, f->base_samples, base_samples);
        json_t *o = json_object();
        ml_json_set(o, "name", ml_json_str(f->name));
        ml_json_set(o, "time", ml_json_real(f->time));
        ml_json_set(o, "base_time", ml_json_real(f->base));
        ml_json_set(o, "delta", ml_json_real(f->time - f->base));
        ml_json_set(o, "samples", json_integer((json_int_t)f->samples));
        ml_json_set(o, "base_samples", json_integer((json_int_t)f->base_samples));
        ml_json_set(o, "share", ml_json_real(share));
        ml_json_set(o, "base_share", ml_json_real(base_share));
        ml_json_set(o, "noise_bound", ml_json_real(bound));
        ml_json_set(o, "noise", json_boolean(fabs(share - base_share) <= bound));
        json_array_append_new(fns, o);
    }
    free(arr);
    ml_map_dispose(&by_name);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "base", ml_json_str(base->run->id));
    ml_json_set(out, "samples", json_integer((json_int_t)samples));
    ml_json_set(out, "base_samples", json_integer((json_int_t)base_samples));
    ml_json_set(out, "functions", fns);
    return out;
}
