/*
 * The call tree (flamegraph.h) and the flame graph answer.
 */
#include "flamegraph.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "json.h"
#include "mem.h"

static uint64_t node_hash(uint32_t parent, uint32_t name, uint32_t file, uint32_t first_line)
{
    uint32_t key[4] = {parent, name, file, first_line};
    return XXH64(key, sizeof(key), 0);
}

static void rehash(ml_ftree *t)
{
    free(t->slots);
    t->nslots = t->nslots ? t->nslots * 2 : 1024;
    t->slots = ml_xcalloc(t->nslots, sizeof(uint32_t));
    for (size_t i = 1; i < t->n; i++) {
        ml_fnode *nd = &t->nodes[i];
        size_t k = node_hash(nd->parent, nd->name, nd->file, nd->first_line) & (t->nslots - 1);
        while (t->slots[k])
            k = (k + 1) & (t->nslots - 1);
        t->slots[k] = (uint32_t)i + 1;
    }
}

/* The child of parent for frame f (id fid), created when missing. */
static uint32_t child_of(ml_ftree *t, uint32_t parent, const ml_frame *f, uint32_t func)
{
    uint32_t first = f->first_line ? f->first_line : f->line;
    size_t k = node_hash(parent, f->name, f->file, first) & (t->nslots - 1);
    for (; t->slots[k]; k = (k + 1) & (t->nslots - 1)) {
        ml_fnode *nd = &t->nodes[t->slots[k] - 1];
        if (nd->parent == parent && nd->name == f->name && nd->file == f->file &&
            nd->first_line == first)
            return t->slots[k] - 1;
    }
    ml_xgrow((void **)&t->nodes, &t->cap, t->n + 1, sizeof(ml_fnode));
    uint32_t idx = (uint32_t)t->n++;
    t->nodes[idx] = (ml_fnode){
        .parent = parent, .name = f->name, .file = f->file, .first_line = first, .func = func};
    t->slots[k] = idx + 1;
    ml_fnode *p = &t->nodes[parent];
    ml_xgrow((void **)&p->children, &p->capchildren, p->nchildren + 1, sizeof(uint32_t));
    p->children[p->nchildren++] = idx;
    /* Keep the table at most half full. */
    if (t->n * 2 > t->nslots)
        rehash(t);
    return idx;
}

typedef struct fbuild {
    ml_ftree *t;
    const ml_qrun *q;
    const ml_thread_index *ti;         /* the thread being walked */
    uint32_t node[ML_CALLS_MAX_DEPTH]; /* tree node of each open level */
} fbuild;

/* ml_calls_walk enter: a call adds its clipped duration to its path. */
static void enter_call(void *arg, size_t level, uint32_t func, int64_t start, int64_t end)
{
    static const ml_frame unknown = {0, 0, 0, 0, 0};
    fbuild *b = arg;
    const ml_frame *f = ml_model_frame(b->q->model, func);
    uint32_t parent = level ? b->node[level - 1] : 0;
    uint32_t nd = child_of(b->t, parent, f ? f : &unknown, func);
    uint64_t samples = ml_calls_count(b->ti, start, end);
    b->t->nodes[nd].value += (uint64_t)(end - start);
    b->t->nodes[nd].samples += samples;
    if (level == 0) {
        b->t->nodes[0].value += (uint64_t)(end - start);
        b->t->nodes[0].samples += samples;
    }
    b->node[level] = nd;
}

static const ml_ftree *sorting_tree; /* qsort has no context; loop thread only */
static const ml_model *sorting_model;

static int cmp_children(const void *a, const void *b)
{
    const ml_fnode *x = &sorting_tree->nodes[*(const uint32_t *)a];
    const ml_fnode *y = &sorting_tree->nodes[*(const uint32_t *)b];
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return strcmp(ml_model_string(sorting_model, x->name), ml_model_string(sorting_model, y->name));
}

void ml_ftree_build(ml_ftree *t, const ml_qrun *q, const ml_qwindow *w)
{
    memset(t, 0, sizeof(*t));
    ml_xgrow((void **)&t->nodes, &t->cap, 1, sizeof(ml_fnode));
    t->nodes[0] = (ml_fnode){0};
    t->n = 1;
    rehash(t);
    fbuild b = {.t = t, .q = q};
    int64_t ws = w ? w->start : INT64_MIN, we = w ? w->end : INT64_MAX;
    const ml_calls *c = q->calls;
    for (size_t id = 1; id < c->nthreads; id++)
        if (c->threads[id].n && ml_qwindow_has_thread(w, (uint32_t)id)) {
            b.ti = &c->threads[id];
            ml_calls_walk(b.ti, ws, we, enter_call, NULL, &b);
            t->no_stack += ml_calls_count_bare(b.ti, ws, we);
        }
    /* Self = total - children: children lie inside their parent, so this
     * is the time the path was the whole stack. */
    for (size_t i = 1; i < t->n; i++) {
        t->nodes[i].self = t->nodes[i].value;
        t->nodes[i].self_samples = t->nodes[i].samples;
    }
    for (size_t i = 1; i < t->n; i++) {
        ml_fnode *p = &t->nodes[t->nodes[i].parent];
        p->self = p->self > t->nodes[i].value ? p->self - t->nodes[i].value : 0;
        p->self_samples -=
            p->self_samples >= t->nodes[i].samples ? t->nodes[i].samples : p->self_samples;
    }
    t->nodes[0].self = 0;
    t->nodes[0].self_samples = 0;
    sorting_tree = t;
    sorting_model = q->model;
    for (size_t i = 0; i < t->n; i++)
        if (t->nodes[i].nchildren > 1)
            qsort(t->nodes[i].children, t->nodes[i].nchildren, sizeof(uint32_t), cmp_children);
}

size_t ml_ftree_path(const ml_ftree *t, uint32_t node, uint32_t *out, size_t cap)
{
    size_t n = 0;
    for (uint32_t k = node; k != 0; k = t->nodes[k].parent)
        n++;
    size_t depth = n < cap ? n : cap, i = n;
    for (uint32_t k = node; k != 0; k = t->nodes[k].parent)
        if (--i < depth)
            out[i] = t->nodes[k].func;
    return depth;
}

void ml_ftree_dispose(ml_ftree *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->nodes[i].children);
    free(t->nodes);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* Depth-first with an explicit stack: deep recursion in the profiled
 * program must not become deep recursion here. */
static json_t *tree_json(const ml_ftree *t, const ml_model *m, double unit)
{
    size_t n = t->n;
    json_t **objs = ml_xcalloc(n, sizeof(json_t *));
    for (size_t i = 0; i < n; i++) {
        const ml_fnode *nd = &t->nodes[i];
        json_t *o = json_object();
        if (i == 0) {
            ml_json_set(o, "name", ml_json_str("all"));
        } else {
            ml_json_set(o, "name", ml_json_str(ml_model_string(m, nd->name)));
            ml_json_set(o, "file", ml_json_str(ml_model_string(m, nd->file)));
            ml_json_set(o, "line", json_integer(nd->first_line));
            ml_json_set(o, "first_line", json_integer(nd->first_line));
        }
        ml_json_set(o, "value", ml_json_real((double)nd->value * unit));
        ml_json_set(o, "self", ml_json_real((double)nd->self * unit));
        ml_json_set(o, "samples", json_integer((json_int_t)nd->samples));
        ml_json_set(o, "self_samples", json_integer((json_int_t)nd->self_samples));
        ml_json_set(o, "children", json_array());
        objs[i] = o;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *children = json_object_get(objs[i], "children");
        for (size_t k = 0; k < t->nodes[i].nchildren; k++)
            json_array_append_new(children, objs[t->nodes[i].children[k]]);
    }
    json_t *root = objs[0];
    free(objs);
    return root;
}

json_t *ml_query_flamegraph_window(const ml_qrun *q, const ml_qwindow *w)
{
    ml_ftree t;
    ml_ftree_build(&t, q, w);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "total", ml_json_real((double)t.nodes[0].value / 1e6));
    /* The run's samples: those with a Python stack are the tree's; the
     * others (a thread with no Python frame) are counted beside it. */
    ml_json_set(out, "samples", json_integer((json_int_t)t.nodes[0].samples));
    ml_json_set(out, "samples_without_stack", json_integer((json_int_t)t.no_stack));
    ml_json_set(out, "sample_period", ml_json_real(q->period));
    ml_json_set(out, "root", tree_json(&t, q->model, 1e-6));
    ml_ftree_dispose(&t);
    return out;
}
