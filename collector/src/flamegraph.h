/*
 * The aggregated call tree of a window, shared by the flame graph, the
 * design graph, the collapsed and pprof exports and the diff. Built from
 * the calls (calls.h): each call adds its duration, clipped to the window,
 * to the node of its path (its parent call's node plus its function), so
 * the cost grows with the number of calls in the window, not of samples.
 * Nodes are merged by function (parent, name, file, first line); a node's
 * self time is its total minus its children's. Each node also counts the
 * samples its calls stand for (exact: calls.h keeps every sample's time),
 * so every view built on the tree counts the same samples. Loop thread
 * only.
 */
#ifndef ML_COLLECTOR_FLAMEGRAPH_H
#define ML_COLLECTOR_FLAMEGRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "query.h"

typedef struct ml_fnode {
    uint32_t parent, name, file, first_line, func; /* func: function (frame) id */
    uint64_t value, self;                          /* us */
    uint64_t samples, self_samples;                /* samples with a Python stack */
    uint32_t *children;
    size_t nchildren, capchildren;
} ml_fnode;

typedef struct ml_ftree {
    ml_fnode *nodes; /* nodes[0] is the root "all" */
    size_t n, cap;
    uint32_t *slots; /* open addressing: node index + 1, 0 = empty */
    size_t nslots;
    uint64_t no_stack; /* samples in the window without a Python stack (not in the tree) */
} ml_ftree;

/* Builds the tree of the calls of q within w (NULL: the whole run, every
 * thread). Children are sorted by value, largest first. The caller
 * disposes of t. */
void ml_ftree_build(ml_ftree *t, const ml_qrun *q, const ml_qwindow *w);

/* The functions (frame ids) of the path of node, root first, into out
 * (at most cap, the deepest cut). Returns the number written. */
size_t ml_ftree_path(const ml_ftree *t, uint32_t node, uint32_t *out, size_t cap);

void ml_ftree_dispose(ml_ftree *t);

#endif
