/*
 * The whole-run call tree (ml_query_flamegraph). Samples are first counted
 * per stack id, then each distinct stack is walked once from the root, so
 * the cost grows with the number of distinct stacks, not of samples. Tree
 * nodes are merged by function: (parent, name, file, first line); a node's
 * value is the time of all samples through it, its self the time of the
 * samples that end in it.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "json.h"
#include "mem.h"
#include "query.h"

/* Weight of one sample when the run did not say (TRACER_SAMPLE_DELAY). */
#define DEFAULT_SAMPLE_PERIOD 0.05

typedef struct node {
    uint32_t parent, name, file, first_line, line;
    uint64_t value, self; /* in samples */
    uint32_t *children;
    size_t nchildren, capchildren;
} node;

typedef struct tree {
    node *nodes; /* nodes[0] is the root "all" */
    size_t n, cap;
    uint32_t *slots; /* open addressing: node index + 1, 0 = empty */
    size_t nslots;
} tree;

static uint64_t node_hash(uint32_t parent, uint32_t name, uint32_t file, uint32_t first_line)
{
    uint32_t key[4] = {parent, name, file, first_line};
    return XXH64(key, sizeof(key), 0);
}

static void rehash(tree *t)
{
    free(t->slots);
    t->nslots = t->nslots ? t->nslots * 2 : 1024;
    t->slots = ml_xcalloc(t->nslots, sizeof(uint32_t));
    for (size_t i = 1; i < t->n; i++) {
        node *nd = &t->nodes[i];
        size_t k = node_hash(nd->parent, nd->name, nd->file, nd->first_line) & (t->nslots - 1);
        while (t->slots[k])
            k = (k + 1) & (t->nslots - 1);
        t->slots[k] = (uint32_t)i + 1;
    }
}

/* The child of parent for frame f, created when missing. */
static uint32_t child_of(tree *t, uint32_t parent, const ml_frame *f)
{
    uint32_t first = f->first_line ? f->first_line : f->line;
    size_t k = node_hash(parent, f->name, f->file, first) & (t->nslots - 1);
    for (; t->slots[k]; k = (k + 1) & (t->nslots - 1)) {
        node *nd = &t->nodes[t->slots[k] - 1];
        if (nd->parent == parent && nd->name == f->name && nd->file == f->file &&
            nd->first_line == first)
            return t->slots[k] - 1;
    }
    ml_xgrow((void **)&t->nodes, &t->cap, t->n + 1, sizeof(node));
    uint32_t idx = (uint32_t)t->n++;
    t->nodes[idx] = (node){
        .parent = parent, .name = f->name, .file = f->file, .first_line = first, .line = first};
    t->slots[k] = idx + 1;
    node *p = &t->nodes[parent];
    ml_xgrow((void **)&p->children, &p->capchildren, p->nchildren + 1, sizeof(uint32_t));
    p->children[p->nchildren++] = idx;
    /* Keep the table at most half full. */
    if (t->n * 2 > t->nslots)
        rehash(t);
    return idx;
}

static void add_stack(tree *t, const ml_model *m, const ml_stack *st, uint64_t count)
{
    uint32_t cur = 0;
    t->nodes[0].value += count;
    for (uint32_t i = 0; i < st->n; i++) {
        const ml_frame *f = ml_model_frame(m, st->frames[i]);
        static const ml_frame unknown = {0, 0, 0, 0, 0};
        cur = child_of(t, cur, f ? f : &unknown);
        t->nodes[cur].value += count;
    }
    t->nodes[cur].self += count;
}

typedef struct sort_ctx {
    const tree *t;
    const ml_model *m;
} sort_ctx;

static sort_ctx sorting; /* qsort has no context argument; loop thread only */

static int cmp_children(const void *a, const void *b)
{
    const node *x = &sorting.t->nodes[*(const uint32_t *)a];
    const node *y = &sorting.t->nodes[*(const uint32_t *)b];
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return strcmp(ml_model_string(sorting.m, x->name), ml_model_string(sorting.m, y->name));
}

static json_t *node_json(const tree *t, const ml_model *m, uint32_t idx, double period)
{
    const node *nd = &t->nodes[idx];
    json_t *o = json_object();
    if (idx == 0) {
        ml_json_set(o, "name", ml_json_str("all"));
    } else {
        ml_json_set(o, "name", ml_json_str(ml_model_string(m, nd->name)));
        ml_json_set(o, "file", ml_json_str(ml_model_string(m, nd->file)));
        ml_json_set(o, "line", json_integer(nd->line));
    }
    ml_json_set(o, "value", json_real((double)nd->value * period));
    ml_json_set(o, "self", json_real((double)nd->self * period));
    sorting = (sort_ctx){t, m};
    if (nd->nchildren > 1)
        qsort(nd->children, nd->nchildren, sizeof(uint32_t), cmp_children);
    json_t *children = json_array();
    for (size_t i = 0; i < nd->nchildren; i++)
        json_array_append_new(children, node_json(t, m, nd->children[i], period));
    ml_json_set(o, "children", children);
    return o;
}

static bool thread_selected(const uint32_t *threads, size_t n, uint32_t id)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (threads[i] == id)
            return true;
    return false;
}

json_t *ml_query_flamegraph(const ml_model *m, const ml_run *r, const uint32_t *threads, size_t n)
{
    double period = r->sample_period > 0 ? r->sample_period : m->sample_period;
    if (period <= 0)
        period = DEFAULT_SAMPLE_PERIOD;
    /* Samples per stack id; stack 0 (idle, no Python frame) is left out. */
    uint64_t *counts = ml_xcalloc(m->nstacks + 1, sizeof(uint64_t));
    for (size_t i = 0; i < m->nsamples; i++) {
        uint32_t s = m->sample_stack[i];
        if (s != 0 && s < m->nstacks && thread_selected(threads, n, m->sample_thread[i]))
            counts[s]++;
    }
    tree t = {0};
    ml_xgrow((void **)&t.nodes, &t.cap, 1, sizeof(node));
    t.nodes[0] = (node){0};
    t.n = 1;
    rehash(&t);
    for (size_t s = 1; s < m->nstacks; s++)
        if (counts[s])
            add_stack(&t, m, &m->stacks[s], counts[s]);
    free(counts);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(r->id));
    ml_json_set(out, "total", json_real((double)t.nodes[0].value * period));
    ml_json_set(out, "sample_period", json_real(period));
    ml_json_set(out, "root", node_json(&t, m, 0, period));
    for (size_t i = 0; i < t.n; i++)
        free(t.nodes[i].children);
    free(t.nodes);
    free(t.slots);
    return out;
}
