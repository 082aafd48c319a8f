/*
 * Interning: strings, frames, stacks and threads get small sequential ids
 * (1, 2, 3, ... per kind and client). The sampler calls these once per frame
 * and sample, so a lookup of known content hashes, probes and compares:
 * it never allocates. New content is copied into an arena whose chunks never
 * move, so sealed batches can point at it after the lock is released.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "internal.h"

#define ARENA_CHUNK (64u << 10)
#define THREAD_NAME_MAX 256

struct ml__arena_chunk {
    ml__arena_chunk *next;
    size_t used, cap;
    _Alignas(8) char data[];
};

/* n bytes aligned to 8 from the arena, or NULL. */
static void *arena_alloc(ml__arena_chunk **arena, size_t n)
{
    ml__arena_chunk *ch = *arena;
    n = (n + 7) & ~(size_t)7;
    if (ch == NULL || ch->cap - ch->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        if ((ch = ml__malloc(sizeof(*ch) + cap)) == NULL)
            return NULL;
        ch->used = 0;
        ch->cap = cap;
        ch->next = *arena;
        *arena = ch;
    }
    void *p = ch->data + ch->used;
    ch->used += n;
    return p;
}

/* ---- the index ---------------------------------------------------------- */

typedef bool (*eq_fn)(const ml__intern *in, uint32_t id, const void *key);

static uint32_t index_find(const ml__index *ix, uint64_t hash, eq_fn eq, const ml__intern *in,
                           const void *key)
{
    if (ix->slots == NULL)
        return 0;
    uint32_t h = (uint32_t)(hash >> 32);
    for (uint32_t pos = h & ix->mask;; pos = (pos + 1) & ix->mask) {
        uint64_t s = ix->slots[pos];
        if (s == 0)
            return 0;
        if ((uint32_t)(s >> 32) == h && eq(in, (uint32_t)s, key))
            return (uint32_t)s;
    }
}

/* Places a slot; the index has room (load stays <= 1/2). */
static void index_place(uint64_t *slots, uint32_t mask, uint64_t slot)
{
    uint32_t pos = (uint32_t)(slot >> 32) & mask;
    while (slots[pos] != 0)
        pos = (pos + 1) & mask;
    slots[pos] = slot;
}

/* Makes room for one more id: 0 or -ENOMEM. */
static int index_reserve(ml__index *ix)
{
    size_t cap = ix->slots ? (size_t)ix->mask + 1 : 0;
    if (((size_t)ix->count + 1) * 2 <= cap)
        return 0;
    size_t ncap = cap ? cap * 2 : 64;
    if (ncap > ((size_t)1 << 31))
        return -ENOMEM;
    uint64_t *ns = ml__calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        if (ix->slots[i] != 0)
            index_place(ns, (uint32_t)(ncap - 1), ix->slots[i]);
    ml__free(ix->slots);
    ix->slots = ns;
    ix->mask = (uint32_t)(ncap - 1);
    return 0;
}

static void index_insert(ml__index *ix, uint64_t hash, uint32_t id)
{
    index_place(ix->slots, ix->mask, (hash >> 32) << 32 | id);
    ix->count++;
}

/* ---- setup ---------------------------------------------------------------- */

void ml__intern_init(ml__intern *in)
{
    memset(in, 0, sizeof(*in));
}

void ml__intern_close(ml__intern *in)
{
    for (ml__arena_chunk *ch = in->arena, *next; ch; ch = next) {
        next = ch->next;
        ml__free(ch);
    }
    ml__free(in->str_ix.slots);
    ml__free(in->frame_ix.slots);
    ml__free(in->stack_ix.slots);
    ml__free(in->thread_ix.slots);
    for (size_t i = 0; i < in->nthreads; i++)
        ml__free(in->threads[i].name);
    ml__free(in->strs);
    ml__free(in->frames);
    ml__free(in->stacks);
    ml__free(in->threads);
    ml__free(in->pending_threads);
    memset(in, 0, sizeof(*in));
}

bool ml__intern_has_pending(const ml__intern *in)
{
    return in->nstrs > in->sent_strs || in->nframes > in->sent_frames ||
           in->nstacks > in->sent_stacks || in->npending_threads > 0;
}

/* ---- strings -------------------------------------------------------------- */

struct strkey {
    const char *s;
    size_t len;
};

static bool str_eq(const ml__intern *in, uint32_t id, const void *key)
{
    const struct strkey *k = key;
    const ml__str *e = &in->strs[id - 1];
    return e->len == k->len && memcmp(e->raw, k->s, k->len) == 0;
}

uint32_t ml__intern_string(ml__intern *in, const char *s, size_t len)
{
    if (s == NULL && len > 0)
        return 0;
    len = ml__utf8_cut(s, len, ML__STRING_MAX);
    struct strkey key = {s ? s : "", len};
    uint64_t h = XXH3_64bits(key.s, len);
    uint32_t id = index_find(&in->str_ix, h, str_eq, in, &key);
    if (id != 0)
        return id;

    if (index_reserve(&in->str_ix) != 0 ||
        ml__grow((void **)&in->strs, &in->strs_cap, in->nstrs + 1, sizeof(*in->strs)) != 0)
        return 0;
    bool valid = ml__utf8_valid(key.s, len);
    char *raw = arena_alloc(&in->arena, len + 1 + (valid ? 0 : ML__UTF8_BOUND(len) + 1));
    if (raw == NULL)
        return 0;
    memcpy(raw, key.s, len);
    raw[len] = '\0';
    char *utf8 = raw;
    size_t out_len = len;
    if (!valid) {
        utf8 = raw + len + 1;
        out_len = ml__utf8_copy(utf8, key.s, len);
    }
    in->strs[in->nstrs] = (ml__str){raw, utf8, (uint32_t)len};
    id = (uint32_t)++in->nstrs;
    index_insert(&in->str_ix, h, id);
    in->pending_bytes += out_len + 8;
    return id;
}

/* ---- frames --------------------------------------------------------------- */

static bool frame_eq(const ml__intern *in, uint32_t id, const void *key)
{
    return memcmp(&in->frames[id - 1], key, sizeof(ml__frame)) == 0;
}

uint32_t ml__intern_frame(ml__intern *in, const ml__frame *f)
{
    if (f->name > in->nstrs || f->file > in->nstrs)
        return 0;
    uint64_t h = XXH3_64bits(f, sizeof(*f));
    uint32_t id = index_find(&in->frame_ix, h, frame_eq, in, f);
    if (id != 0)
        return id;
    if (index_reserve(&in->frame_ix) != 0 ||
        ml__grow((void **)&in->frames, &in->frames_cap, in->nframes + 1, sizeof(*f)) != 0)
        return 0;
    in->frames[in->nframes] = *f;
    id = (uint32_t)++in->nframes;
    index_insert(&in->frame_ix, h, id);
    in->pending_bytes += 24;
    return id;
}

/* ---- stacks --------------------------------------------------------------- */

static bool stack_eq(const ml__intern *in, uint32_t id, const void *key)
{
    const ml__stack *k = key, *e = &in->stacks[id - 1];
    return e->n == k->n && e->truncated == k->truncated &&
           (k->n == 0 || memcmp(e->frames, k->frames, (size_t)k->n * sizeof(uint32_t)) == 0);
}

uint32_t ml__intern_stack(ml__intern *in, const uint32_t *frames, size_t n, uint32_t truncated)
{
    if (n > ML__STACK_MAX || (n > 0 && frames == NULL))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (frames[i] == 0 || frames[i] > in->nframes)
            return 0;
    ml__stack key = {frames, (uint32_t)n, truncated};
    uint64_t h =
        XXH3_64bits_withSeed(n ? (const void *)frames : "", n * sizeof(uint32_t), truncated);
    uint32_t id = index_find(&in->stack_ix, h, stack_eq, in, &key);
    if (id != 0)
        return id;
    if (index_reserve(&in->stack_ix) != 0 ||
        ml__grow((void **)&in->stacks, &in->stacks_cap, in->nstacks + 1, sizeof(key)) != 0)
        return 0;
    uint32_t *copy = arena_alloc(&in->arena, n * sizeof(uint32_t));
    if (copy == NULL)
        return 0;
    if (n > 0)
        memcpy(copy, frames, n * sizeof(uint32_t));
    key.frames = copy;
    in->stacks[in->nstacks] = key;
    id = (uint32_t)++in->nstacks;
    index_insert(&in->stack_ix, h, id);
    in->pending_bytes += 4 * n + 12;
    return id;
}

/* ---- threads -------------------------------------------------------------- */

struct threadkey {
    uint64_t ident, native_id;
};

static bool thread_eq(const ml__intern *in, uint32_t id, const void *key)
{
    const struct threadkey *k = key;
    const ml__thread *t = &in->threads[id - 1];
    return t->ident == k->ident && t->native_id == k->native_id;
}

/* Lists thread id for the next sealed batch: 0 or -ENOMEM. */
static int thread_mark_pending(ml__intern *in, uint32_t id)
{
    ml__thread *t = &in->threads[id - 1];
    if (t->pending)
        return 0;
    if (ml__grow((void **)&in->pending_threads, &in->pending_threads_cap, in->npending_threads + 1,
                 sizeof(uint32_t)) != 0)
        return -ENOMEM;
    in->pending_threads[in->npending_threads++] = id;
    t->pending = true;
    in->pending_bytes += strlen(t->name) + 40;
    return 0;
}

/* Renames a known thread when name (already sanitized) differs. */
static void thread_rename(ml__intern *in, uint32_t id, const char *name, size_t len)
{
    ml__thread *t = &in->threads[id - 1];
    if (strcmp(t->name, name) == 0)
        return;
    char *copy = ml__malloc(len + 1);
    if (copy == NULL)
        return; /* keeps the old name: the id stays valid */
    memcpy(copy, name, len + 1);
    char *old = t->name;
    t->name = copy;
    if (thread_mark_pending(in, id) != 0) {
        t->name = old;
        ml__free(copy);
        return;
    }
    ml__free(old);
}

/* A new thread: its id, or 0 when out of memory. */
static uint32_t thread_add(ml__intern *in, const struct threadkey *k, uint64_t h, const char *name,
                           size_t len, int64_t now)
{
    if (index_reserve(&in->thread_ix) != 0 || ml__grow((void **)&in->threads, &in->threads_cap,
                                                       in->nthreads + 1, sizeof(*in->threads)) != 0)
        return 0;
    char *copy = ml__malloc(len + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, name, len + 1);
    in->threads[in->nthreads] = (ml__thread){k->ident, k->native_id, copy, now, 0, false};
    uint32_t id = (uint32_t)(in->nthreads + 1);
    if (thread_mark_pending(in, id) != 0) {
        ml__free(copy);
        return 0;
    }
    in->nthreads++;
    index_insert(&in->thread_ix, h, id);
    return id;
}

uint32_t ml__intern_thread(ml__intern *in, uint64_t ident, uint64_t native_id, const char *name,
                           int64_t now)
{
    struct threadkey k = {ident, native_id};
    uint64_t h = XXH3_64bits(&k, sizeof(k));
    uint32_t id = index_find(&in->thread_ix, h, thread_eq, in, &k);
    char buf[ML__UTF8_BOUND(THREAD_NAME_MAX) + 1];
    size_t len;

    if (name != NULL) {
        size_t raw = strlen(name);
        len = ml__utf8_copy(buf, name, ml__utf8_cut(name, raw, THREAD_NAME_MAX));
    } else if (id == 0) {
        len = (size_t)snprintf(buf, sizeof(buf), "Thread-%" PRIu64, ident);
    } else {
        return id; /* known thread, no new name: the hot path */
    }
    if (id != 0) {
        thread_rename(in, id, buf, len);
        return id;
    }
    return thread_add(in, &k, h, buf, len, now);
}

int ml__intern_thread_end(ml__intern *in, uint32_t id, int64_t t)
{
    if (id == 0 || id > in->nthreads)
        return -EINVAL;
    ml__thread *th = &in->threads[id - 1];
    int64_t old = th->ended_us;
    th->ended_us = t;
    int rv = thread_mark_pending(in, id);
    if (rv != 0)
        th->ended_us = old;
    return rv;
}
