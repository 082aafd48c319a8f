/*
 * The stacks table of a recording (format 3). Stacks are kept in id order
 * (ids are first sight, so they must not move); each is coded against the
 * earlier stack that shares the longest root prefix with it, found with a
 * trie of all earlier stacks: the distance back to that stack, how many of
 * its frames are not shared (0: the new stack extends it), then only the
 * new frames, each as a delta from the frame before it.
 */
#include <stdlib.h>

#include <xxhash.h>

#include "recording_codec.h"

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

/* Codes stack i (not yet in t) into the columns, then adds it to t. */
static void code_stack(trie *t, const ml_model *m, uint32_t i, ml__buf *col)
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
    int64_t last = k ? s->frames[k - 1] : 0;
    for (uint32_t j = k; j < s->n; j++) {
        ml__put_svarint(&col[4], (int64_t)s->frames[j] - last);
        last = s->frames[j];
    }
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
    ml__buf col[5] = {{0}};
    trie t = {0};
    /* The root: node 0, never in the hash (0 means "no child" there). */
    t.cap = 1024;
    t.parent = ml_xcalloc(t.cap, sizeof(uint32_t));
    t.frame = ml_xcalloc(t.cap, sizeof(uint32_t));
    t.latest = ml_xcalloc(t.cap, sizeof(uint32_t));
    t.n = 1;
    trie_rehash(&t);
    for (size_t i = 1; i < m->nstacks; i++)
        code_stack(&t, m, (uint32_t)i, col);
    ml__put_varint(b, m->nstacks);
    for (int c = 0; c < 5; c++)
        ml__put_col(b, &col[c]);
    free(t.parent);
    free(t.frame);
    free(t.latest);
    free(t.slot);
}

void ml__recording_stacks_load(ml_model *m, ml__rd *r)
{
    uint64_t n = ml__get_varint(r);
    ml__rd c[5];
    for (int i = 0; i < 5; i++)
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
    for (uint64_t i = 1; i < n && c[0].ok; i++) {
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
        int64_t last = k ? s->frames[k - 1] : 0;
        for (uint64_t j = k; j < s->n; j++) {
            last = (uint32_t)(last + ml__get_svarint(&c[4]));
            s->frames[j] = (uint32_t)last;
        }
        m->nstacks = i + 1;
    }
    ml__cols_done(r, c, 5);
    if (m->nstacks != n)
        r->ok = false;
}
