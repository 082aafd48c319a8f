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

uint64_t *ml_query_function_samples(const ml_qrun *q)
{
    const ml_model *m = q->model;
    ml_ftree tree;
    ml_ftree_build(&tree, q, NULL);
    uint64_t *total = ml_xcalloc(m->nframes + 1, sizeof(uint64_t));
    uint64_t *stamp = ml_xcalloc(m->nframes + 1, sizeof(uint64_t));
    uint32_t path[ML_CALLS_MAX_DEPTH];
    for (size_t s = 1; s < tree.n; s++) {
        uint64_t self = tree.nodes[s].self;
        if (self == 0)
            continue;
        size_t n = ml_ftree_path(&tree, (uint32_t)s, path, ML_CALLS_MAX_DEPTH);
        for (size_t i = 0; i < n; i++) {
            uint32_t f = path[i];
            if (f == 0 || f >= m->nframes || stamp[f] == s)
                continue;
            stamp[f] = s;
            total[f] += self;
        }
    }
    free(stamp);
    ml_ftree_dispose(&tree);
    return total;
}

typedef struct fn_time {
    const char *name; /* borrowed from a model */
    double time, base;
} fn_time;

/* Adds each function's time of q into the map name -> fn_time. */
static void collect(const ml_qrun *q, ml_map *by_name, fn_time **arr, size_t *n, size_t *cap,
                    bool base)
{
    uint64_t *total = ml_query_function_samples(q);
    for (size_t f = 1; f < q->model->nframes; f++) {
        if (total[f] == 0)
            continue;
        const char *name = ml_model_string(q->model, q->model->frames[f].name);
        uintptr_t idx = (uintptr_t)ml_map_get(by_name, name);
        if (idx == 0) {
            ml_xgrow((void **)arr, cap, *n + 1, sizeof(fn_time));
            (*arr)[*n] = (fn_time){.name = name};
            idx = ++*n;
            ml_map_put(by_name, name, (void *)idx);
        }
        double t = (double)total[f] / 1e6;
        if (base)
            (*arr)[idx - 1].base += t;
        else
            (*arr)[idx - 1].time += t;
    }
    free(total);
}

static int cmp_delta(const void *a, const void *b)
{
    const fn_time *x = a, *y = b;
    double dx = fabs(x->time - x->base), dy = fabs(y->time - y->base);
    if (dx != dy)
        return dx < dy ? 1 : -1;
    return strcmp(x->name, y->name);
}

json_t *ml_query_diff(const ml_qrun *q, const ml_qrun *base)
{
    ml_map by_name;
    ml_map_init(&by_name);
    fn_time *arr = NULL;
    size_t n = 0, cap = 0;
    collect(q, &by_name, &arr, &n, &cap, false);
    collect(base, &by_name, &arr, &n, &cap, true);
    if (n)
        qsort(arr, n, sizeof(fn_time), cmp_delta);
    json_t *fns = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        ml_json_set(o, "name", ml_json_str(arr[i].name));
        ml_json_set(o, "time", ml_json_real(arr[i].time));
        ml_json_set(o, "base_time", ml_json_real(arr[i].base));
        ml_json_set(o, "delta", ml_json_real(arr[i].time - arr[i].base));
        json_array_append_new(fns, o);
    }
    free(arr);
    ml_map_dispose(&by_name);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "base", ml_json_str(base->run->id));
    ml_json_set(out, "functions", fns);
    return out;
}
