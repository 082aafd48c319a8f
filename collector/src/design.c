/*
 * The design answer: the runtime call graph aggregated by module and by
 * class. A frame belongs to its class node ("mod.Class") when its name has
 * a class, else to its module node ("mod"); module nodes also include the
 * time of their classes. A node's time counts each sample once, however
 * many of its frames the stack holds; self is the time of samples whose
 * innermost frame is in it. An edge source -> target carries the time of
 * samples whose stack steps from a frame of source into a frame of target
 * (once per sample) and the number of calls that made that step.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "flamegraph.h"
#include "json.h"
#include "map.h"
#include "mem.h"
#include "query.h"

void ml_name_split(const char *name, uint32_t flags, size_t *mod_len, size_t *cls_len)
{
    size_t n = strlen(name);
    const char *body = strstr(name, ".<module>");
    *cls_len = 0;
    if ((flags & 1u) || body) {
        *mod_len = body ? (size_t)(body - name) : n;
        return;
    }
    const char *lastdot = strrchr(name, '.');
    *mod_len = lastdot ? (size_t)(lastdot - name) : n;
    /* The first capitalized component after the first, before the last. */
    for (const char *p = strchr(name, '.'); p && p < lastdot; p = strchr(p + 1, '.')) {
        if (isupper((unsigned char)p[1])) {
            const char *end = strchr(p + 1, '.');
            *mod_len = (size_t)(p - name);
            *cls_len = (size_t)(end - name);
            return;
        }
    }
}

typedef struct dnode {
    char *id;
    size_t mod_len;
    bool is_class;
    uint64_t time, self, stamp;
} dnode;

typedef struct dedge {
    char *key; /* "a\nb" */
    uint32_t src, dst;
    uint64_t time, calls, stamp;
} dedge;

typedef struct design {
    ml_map nodes_by_id, edges_by_key;
    dnode *nodes;
    size_t nnodes, capnodes;
    dedge *edges;
    size_t nedges, capedges;
    uint32_t *frame_node, *frame_mod; /* per frame id: node index + 1 */
} design;

static uint32_t node_for(design *g, const char *id, size_t len, bool is_class, size_t mod_len)
{
    char *key = ml_xstrndup(id, len);
    void *v = ml_map_get(&g->nodes_by_id, key);
    if (v) {
        free(key);
        return (uint32_t)(uintptr_t)v;
    }
    ml_xgrow((void **)&g->nodes, &g->capnodes, g->nnodes + 1, sizeof(dnode));
    g->nodes[g->nnodes] = (dnode){.id = key, .mod_len = mod_len, .is_class = is_class};
    g->nnodes++;
    ml_map_put(&g->nodes_by_id, key, (void *)(uintptr_t)g->nnodes);
    return (uint32_t)g->nnodes;
}

static void map_frame(design *g, const ml_model *m, uint32_t f)
{
    if (g->frame_node[f])
        return;
    const ml_frame *fr = &m->frames[f];
    const char *name = ml_model_string(m, fr->name);
    size_t mod_len, cls_len;
    ml_name_split(name, fr->flags, &mod_len, &cls_len);
    g->frame_mod[f] = node_for(g, name, mod_len, false, mod_len);
    g->frame_node[f] = cls_len ? node_for(g, name, cls_len, true, mod_len) : g->frame_mod[f];
}

static dedge *edge_for(design *g, uint32_t a, uint32_t b)
{
    char *key = ml_xasprintf("%u\n%u", a, b);
    void *v = ml_map_get(&g->edges_by_key, key);
    if (v) {
        free(key);
        return &g->edges[(uintptr_t)v - 1];
    }
    ml_xgrow((void **)&g->edges, &g->capedges, g->nedges + 1, sizeof(dedge));
    g->edges[g->nedges] = (dedge){.key = key, .src = a, .dst = b};
    g->nedges++;
    ml_map_put(&g->edges_by_key, key, (void *)(uintptr_t)g->nedges);
    return &g->edges[g->nedges - 1];
}

static void add_stack(design *g, const ml_model *m, const ml_stack *st, uint64_t count,
                      uint64_t stamp)
{
    uint32_t prev = 0;
    for (uint32_t i = 0; i < st->n; i++) {
        uint32_t f = st->frames[i];
        if (f == 0 || f >= m->nframes)
            continue;
        map_frame(g, m, f);
        uint32_t nd = g->frame_node[f], md = g->frame_mod[f];
        dnode *x = &g->nodes[nd - 1];
        if (x->stamp != stamp) {
            x->stamp = stamp;
            x->time += count;
        }
        dnode *y = &g->nodes[md - 1];
        if (y->stamp != stamp) {
            y->stamp = stamp;
            y->time += count;
        }
        if (prev && prev != nd) {
            dedge *e = edge_for(g, prev, nd);
            if (e->stamp != stamp) {
                e->stamp = stamp;
                e->time += count;
            }
        }
        prev = nd;
    }
    if (prev)
        g->nodes[prev - 1].self += count;
}

/* Calls per edge: a call at depth d whose node differs from its caller's
 * (the call at depth d-1 that contains it). */
static void count_calls(design *g, const ml_qrun *q)
{
    const ml_calls *c = q->calls;
    const ml_model *m = q->model;
    for (size_t id = 1; id < c->nthreads; id++) {
        const ml_thread_index *t = &c->threads[id];
        for (size_t d = 1; d < t->ndepth; d++) {
            const ml_call_list *l = &t->depth[d], *pl = &t->depth[d - 1];
            size_t p = 0;
            for (size_t k = 0; k < l->n; k++) {
                /* Parents are met in order: advance instead of searching. */
                int64_t s = ml_call_start(l, k);
                while (p < pl->n && ml_call_end(pl, p) <= s)
                    p++;
                if (p >= pl->n)
                    break;
                uint32_t a = ml_call_func(pl, p), b = ml_call_func(l, k);
                if (a == 0 || b == 0 || a >= m->nframes || b >= m->nframes)
                    continue;
                map_frame(g, m, a);
                map_frame(g, m, b);
                if (g->frame_node[a] != g->frame_node[b])
                    edge_for(g, g->frame_node[a], g->frame_node[b])->calls++;
            }
        }
    }
}

json_t *ml_query_design(const ml_qrun *q)
{
    const ml_model *m = q->model;
    design g = {0};
    ml_map_init(&g.nodes_by_id);
    ml_map_init(&g.edges_by_key);
    g.frame_node = ml_xcalloc(m->nframes + 1, sizeof(uint32_t));
    g.frame_mod = ml_xcalloc(m->nframes + 1, sizeof(uint32_t));
    /* Every path of the call tree with its self time stands for the
     * samples whose whole stack it was. */
    ml_ftree tree;
    ml_ftree_build(&tree, q, NULL);
    uint32_t path[ML_CALLS_MAX_DEPTH];
    for (size_t i = 1; i < tree.n; i++) {
        if (tree.nodes[i].self == 0)
            continue;
        ml_stack st = {.frames = path};
        st.n = (uint32_t)ml_ftree_path(&tree, (uint32_t)i, path, ML_CALLS_MAX_DEPTH);
        add_stack(&g, m, &st, tree.nodes[i].self, i);
    }
    ml_ftree_dispose(&tree);
    count_calls(&g, q);
    json_t *nodes = json_array(), *edges = json_array();
    for (size_t i = 0; i < g.nnodes; i++) {
        dnode *x = &g.nodes[i];
        json_t *o = json_object();
        const char *dot = x->is_class ? strrchr(x->id, '.') : NULL;
        ml_json_set(o, "id", ml_json_str(x->id));
        ml_json_set(o, "name", ml_json_str(dot ? dot + 1 : x->id));
        ml_json_set(o, "kind", ml_json_str(x->is_class ? "class" : "module"));
        ml_json_set(o, "module", ml_json_strn(x->id, x->mod_len));
        ml_json_set(o, "time", ml_json_real((double)x->time / 1e6));
        ml_json_set(o, "self", ml_json_real((double)x->self / 1e6));
        json_array_append_new(nodes, o);
    }
    for (size_t i = 0; i < g.nedges; i++) {
        dedge *e = &g.edges[i];
        json_t *o = json_object();
        ml_json_set(o, "source", ml_json_str(g.nodes[e->src - 1].id));
        ml_json_set(o, "target", ml_json_str(g.nodes[e->dst - 1].id));
        ml_json_set(o, "time", ml_json_real((double)e->time / 1e6));
        ml_json_set(o, "calls", ml_json_u64(e->calls));
        json_array_append_new(edges, o);
        free(e->key);
    }
    for (size_t i = 0; i < g.nnodes; i++)
        free(g.nodes[i].id);
    free(g.nodes);
    free(g.edges);
    free(g.frame_node);
    free(g.frame_mod);
    ml_map_dispose(&g.nodes_by_id);
    ml_map_dispose(&g.edges_by_key);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "nodes", nodes);
    ml_json_set(out, "edges", edges);
    return out;
}
