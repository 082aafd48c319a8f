/*
 * The stacks table of a recording (format 3). Stacks are kept in id order
 * (ids are first sight, so they must not move); each is coded against the
 * earlier stack that shares the longest root prefix with it, found with a
 * trie of all earlier stacks: the distance back to that stack, how many of
 * its frames are not shared (0: the new stack extends it), then only the
 * new frames. A new frame is predicted from its caller (the frame before
 * it): its rank among the frames that followed that caller in earlier
 * stacks, most recent first, or 0 and then its id against the highest id
 * so far (a frame seen for the first time is just above it).
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "recording_codec.h"

/* Columns: distance back, frames cut, new frames, truncated, ranks,
 * frame ids of the frames with rank 0. */
#define STACK_COLS 6

/* Trie node: the frame that leads to it from its parent, and the latest
 * stack whose path runs through it. Node 0 is the root. */
typedef struct trie {
    uint32_t *parent, *frame, *latest;
    size_t n, cap;
    uint32_t *slot; /* hash of (parent, frame) -> node + 1; 0 empty */
    size_t nslots;  /* a power of two, kept above twice n */
} trie;

static size_t slot_of(const trie *t, uint32_t parent, uint32_t frame)
{
    uint64_t key = (uint64_t)parent << 32 | frame;
    return (size_t)XXH64(&key, sizeof(key), 0) & (t->nslots - 1);
}

static uint32_t trie_child(const trie *t, uint32_t parent, uint32_t frame)
{
    for (size_t i = slot_of(t, parent, frame); t->slot[i]; i = (i + 1) & (t->nslots - 1)) {
        uint32_t c = t->slot[i] - 1;
        if (t->parent[c] == parent && t->frame[c] == frame)
            return c;
    }
    return 0;
}

static void trie_rehash(trie *t)
{
    free(t->slot);
    t->nslots = t->nslots ? t->nslots * 2 : 1024;
    t->slot = ml_xcalloc(t->nslots, sizeof(uint32_t));
    for (size_t c = 1; c < t->n; c++) {
        size_t i = slot_of(t, t->parent[c], t->frame[c]);
        while (t->slot[i])
            i = (i + 1) & (t->nslots - 1);
        t->slot[i] = (uint32_t)c + 1;
    }
}

static uint32_t trie_add(trie *t, uint32_t parent, uint32_t frame)
{
    if (t->n == t->cap) {
        size_t cap = t->cap;
        ml_xgrow((void **)&t->parent, &cap, t->n + 1, sizeof(uint32_t));
        cap = t->cap;
        ml_xgrow((void **)&t->frame, &cap, t->n + 1, sizeof(uint32_t));
        cap = t->cap;
        ml_xgrow((void **)&t->latest, &cap, t->n + 1, sizeof(uint32_t));
        t->cap = cap;
    }
    uint32_t c = (uint32_t)t->n++;
    t->parent[c] = parent;
    t->frame[c] = frame;
    if (t->n * 2 > t->nslots) {
        trie_rehash(t);
    } else {
        size_t i = slot_of(t, parent, frame);
        while (t->slot[i])
            i = (i + 1) & (t->nslots - 1);
        t->slot[i] = c + 1;
    }
    return c;
}

/* Successor lists: for each caller frame, the frames that followed it in
 * the new part of earlier stacks, most recent first, at most SUCC_MAX
 * (which bounds the work per frame whatever a damaged file holds). */
#define SUCC_MAX 64

typedef struct succ_list {
    uint32_t caller, n;
    uint32_t f[SUCC_MAX];
} succ_list;

typedef struct succ_map {
    succ_list *lists;
    size_t n, cap;
    uint32_t *slot; /* hash of caller -> list + 1; 0 empty */
    size_t nslots;  /* a power of two, kept above twice n */
} succ_map;

static size_t caller_slot(const succ_map *sm, uint32_t caller)
{
    return (size_t)XXH64(&caller, sizeof(caller), 0) & (sm->nslots - 1);
}

/* The list of caller, created empty if new. The pointer is valid until
 * the next call. */
static succ_list *succ_of(succ_map *sm, uint32_t caller)
{
    if (sm->n * 2 >= sm->nslots) {
        free(sm->slot);
        sm->nslots = sm->nslots ? sm->nslots * 2 : 256;
        sm->slot = ml_xcalloc(sm->nslots, sizeof(uint32_t));
        for (size_t l = 0; l < sm->n; l++) {
            size_t i = caller_slot(sm, sm->lists[l].caller);
            while (sm->slot[i])
                i = (i + 1) & (sm->nslots - 1);
            sm->slot[i] = (uint32_t)l + 1;
        }
    }
    size_t i = caller_slot(sm, caller);
    for (; sm->slot[i]; i = (i + 1) & (sm->nslots - 1))
        if (sm->lists[sm->slot[i] - 1].caller == caller)
            return &sm->lists[sm->slot[i] - 1];
    ml_xgrow((void **)&sm->lists, &sm->cap, sm->n + 1, sizeof(succ_list));
    sm->lists[sm->n] = (succ_list){.caller = caller};
    sm->slot[i] = (uint32_t)++sm->n;
    return &sm->lists[sm->n - 1];
}

/* Moves f to the front of l (adding it, dropping the last when full). */
static void succ_touch(succ_list *l, uint32_t f)
{
    uint32_t r = 0;
    while (r < l->n && l->f[r] != f)
        r++;
    if (r == l->n && l->n < SUCC_MAX)
        l->n++;
    if (r == SUCC_MAX)
        r--;
    memmove(l->f + 1, l->f, r * sizeof(uint32_t));
    l->f[0] = f;
}

/* After stack s is coded: its new frames [k, n) become their callers'
 * most recent successors (the shared prefix is left alone: it is known
 * already, and skipping it keeps loading cheap). */
static void succ_update(succ_map *sm, const uint32_t *frames, uint32_t k, uint32_t n)
{
    for (uint32_t j = k; j < n; j++)
        succ_touch(succ_of(sm, j ? frames[j - 1] : 0), frames[j]);
}

static void succ_free(succ_map *sm)
{
    free(sm->lists);
    free(sm->slot);
}

/* Codes stack i (not yet in t) into the columns, then adds it to t. */
static void code_stack(trie *t, succ_map *sm, uint32_t *hi, const ml_model *m, uint32_t i,
                       ml__buf *col)
{
    const ml_stack *s = &m->stacks[i];
    uint32_t node = 0, k = 0, c;
    while (k < s->n && (c = trie_child(t, node, s->frames[k])) != 0) {
        node = c;
        k++;
    }
    uint32_t ref = k ? t->latest[node] : 0;
    ml__put_varint(&col[0], ref ? i - ref : 0);
    if (ref)
        ml__put_varint(&col[1], m->stacks[ref].n - k);
    ml__put_varint(&col[2], s->n - k);
    ml__put_varint(&col[3], s->truncated);
    for (uint32_t j = k; j < s->n; j++) {
        const succ_list *l = succ_of(sm, j ? s->frames[j - 1] : 0);
        uint32_t r = 0, f = s->frames[j];
        while (r < l->n && l->f[r] != f)
            r++;
        ml__put_varint(&col[4], r < l->n ? r + 1 : 0);
        if (r == l->n)
            ml__put_svarint(&col[5], (int64_t)f - ((int64_t)*hi + 1));
        *hi = f > *hi ? f : *hi;
    }
    succ_update(sm, s->frames, k, s->n);
    node = 0;
    t->latest[0] = i;
    for (uint32_t j = 0; j < s->n; j++) {
        c = j < k ? trie_child(t, node, s->frames[j]) : trie_add(t, node, s->frames[j]);
        t->latest[c] = i;
        node = c;
    }
}

void ml__recording_stacks_write(ml__buf *b, const ml_model *m)
{
    ml__buf col[STACK_COLS] = {{0}};
    trie t = {0};
    succ_map sm = {0};
    uint32_t hi = 0;
    /* The root: node 0, never in the hash (0 means "no child" there). */
    t.cap = 1024;
    t.parent = ml_xcalloc(t.cap, sizeof(uint32_t));
    t.frame = ml_xcalloc(t.cap, sizeof(uint32_t));
    t.latest = ml_xcalloc(t.cap, sizeof(uint32_t));
    t.n = 1;
    trie_rehash(&t);
    for (size_t i = 1; i < m->nstacks; i++)
        code_stack(&t, &sm, &hi, m, (uint32_t)i, col);
    ml__put_varint(b, m->nstacks);
    for (int c = 0; c < STACK_COLS; c++)
        ml__put_col(b, &col[c]);
    succ_free(&sm);
    free(t.parent);
    free(t.frame);
    free(t.latest);
    free(t.slot);
}

void ml__recording_stacks_load(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    ml__rd c[STACK_COLS];
    for (int i = 0; i < STACK_COLS; i++)
        c[i] = ml__get_col(r);
    /* Row 0 is "none" and not stored; every other row takes at least a
     * byte of the distance column. */
    if (!ml__count_ok(&c[0], n ? n - 1 : 0)) {
        r->ok = false;
        return;
    }
    m->stacks = ml_xcalloc(n + 1, sizeof(ml_stack));
    m->capstacks = n + 1;
    m->nstacks = n ? 1 : 0;
    succ_map sm = {0};
    uint32_t hi = 0; /* the highest frame id so far */
    for (uint64_t i = 1; i < n && c[0].ok && c[4].ok; i++) {
        ml_stack *s = &m->stacks[i];
        uint64_t d = ml__get_varint(&c[0]), k = 0;
        const ml_stack *ref = NULL;
        if (d > i - 1)
            break; /* c[0] stays ok: caught below */
        if (d) {
            ref = &m->stacks[i - d];
            uint64_t cut = ml__get_varint(&c[1]);
            if (cut > ref->n)
                break;
            k = ref->n - cut;
        }
        uint64_t tail = ml__get_varint(&c[2]);
        s->truncated = (uint32_t)ml__get_varint(&c[3]);
        /* Every new frame takes at least a byte of the frames column. */
        if (!c[1].ok || !c[2].ok || tail > UINT32_MAX - k || !ml__count_ok(&c[4], tail))
            break;
        s->n = (uint32_t)(k + tail);
        s->frames = ml_xmalloc((s->n ? s->n : 1) * sizeof(uint32_t));
        if (k)
            memcpy(s->frames, ref->frames, (size_t)k * sizeof(uint32_t));
        m->nstacks = i + 1; /* the frames are the model's to free from here */
        for (uint64_t j = k; j < s->n && c[4].ok; j++) {
            const succ_list *l = succ_of(&sm, j ? s->frames[j - 1] : 0);
            uint64_t rank = ml__get_varint(&c[4]);
            if (rank > l->n) {
                c[4].ok = false; /* a rank past the list: damage */
            } else if (rank) {
                s->frames[j] = l->f[rank - 1];
            } else {
                /* Unsigned: a damaged delta wraps, any id is a valid id. */
                s->frames[j] = (uint32_t)((uint64_t)hi + 1 + (uint64_t)ml__get_svarint(&c[5]));
            }
            hi = s->frames[j] > hi ? s->frames[j] : hi;
        }
        succ_update(&sm, s->frames, (uint32_t)k, s->n);
    }
    succ_free(&sm);
    ml__cols_done(r, c, STACK_COLS);
    if (m->nstacks != n)
        r->ok = false;
}
