#include "calls.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "mem.h"

void ml_calls_init(ml_calls *c)
{
    memset(c, 0, sizeof(*c));
}

static void list_free_lod(ml_call_list *l)
{
    for (int k = 0; k < ML_LOD_LEVELS; k++) {
        free(l->lod[k].items);
        l->lod[k] = (ml_lod_level){0};
    }
    l->nlod = 0;
    l->lod_built = 0;
}

static void list_dispose(ml_call_list *l)
{
    for (size_t i = 0; i < l->nchunks; i++) {
        ml_call_chunk *ch = &l->chunks[i];
        free(ch->start);
        free(ch->dur);
        free(ch->func);
        free(ch->func_hi);
    }
    free(l->chunks);
    free(l->far);
    list_free_lod(l);
}

static void times_add(ml_times *tl, int64_t time)
{
    size_t b = tl->nblocks;
    if (b == 0 || tl->count[b - 1] == ML_CALLS_BLOCK ||
        (uint64_t)(time - tl->base[b - 1]) > UINT32_MAX) {
        if (b == tl->capblocks) {
            tl->capblocks = tl->capblocks ? tl->capblocks * 2 : 8;
            tl->base = ml_xrealloc(tl->base, tl->capblocks * sizeof(int64_t));
            tl->off = ml_xrealloc(tl->off, tl->capblocks * sizeof(uint32_t *));
            tl->first = ml_xrealloc(tl->first, tl->capblocks * sizeof(size_t));
            tl->count = ml_xrealloc(tl->count, tl->capblocks * sizeof(uint32_t));
        }
        tl->base[b] = time;
        tl->off[b] = ml_xmalloc(ML_CALLS_BLOCK * sizeof(uint32_t));
        tl->first[b] = tl->n;
        tl->count[b] = 0;
        tl->nblocks = ++b;
    }
    tl->off[b - 1][tl->count[b - 1]++] = (uint32_t)(time - tl->base[b - 1]);
    tl->n++;
}

/* Index of the first time >= x (tl->n when none). */
static size_t times_lower(const ml_times *tl, int64_t x)
{
    size_t lo = 0, hi = tl->nblocks; /* the last block whose base <= x */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tl->base[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    size_t b = lo - 1;
    uint64_t want = (uint64_t)(x - tl->base[b]);
    uint32_t l = 0, h = tl->count[b];
    while (l < h) {
        uint32_t mid = l + (h - l) / 2;
        if (tl->off[b][mid] < want)
            l = mid + 1;
        else
            h = mid;
    }
    return tl->first[b] + l;
}

uint64_t ml_calls_count(const ml_thread_index *t, int64_t a, int64_t b)
{
    if (b <= a || t->stacked.n == 0)
        return 0;
    return times_lower(&t->stacked, b) - times_lower(&t->stacked, a);
}

uint64_t ml_calls_count_bare(const ml_thread_index *t, int64_t a, int64_t b)
{
    if (b <= a || t->bare.n == 0)
        return 0;
    return times_lower(&t->bare, b) - times_lower(&t->bare, a);
}

static void times_dispose(ml_times *tl)
{
    for (size_t b = 0; b < tl->nblocks; b++)
        free(tl->off[b]);
    free(tl->base);
    free(tl->off);
    free(tl->first);
    free(tl->count);
    memset(tl, 0, sizeof(*tl));
}

void ml_calls_dispose(ml_calls *c)
{
    for (size_t i = 0; i < c->nthreads; i++) {
        ml_thread_index *t = &c->threads[i];
        times_dispose(&t->stacked);
        times_dispose(&t->bare);
        for (size_t d = 0; d < t->ndepth; d++)
            list_dispose(&t->depth[d]);
        free(t->depth);
        free(t->prev_func);
    }
    free(c->threads);
    free(c->func_of_frame);
    memset(c, 0, sizeof(*c));
}

uint32_t ml_calls_func(const ml_calls *c, uint32_t f)
{
    return f < c->nfunc_of_frame ? c->func_of_frame[f] : 0;
}

/* Assigns a function id to every frame defined since the last call: the
 * first frame id with the same (name, file, first line). A temporary hash
 * table over all frames, rebuilt only when frames were added (frames are
 * few compared with samples). */
void ml_calls_map_functions(ml_calls *c, const ml_model *m)
{
    if (m->nframes <= c->nfunc_of_frame)
        return;
    size_t nslots = 64;
    while (nslots < m->nframes * 2)
        nslots *= 2;
    uint32_t *slots = ml_xcalloc(nslots, sizeof(uint32_t));
    c->func_of_frame = ml_xrealloc(c->func_of_frame, m->nframes * sizeof(uint32_t));
    for (size_t f = 1; f < m->nframes; f++) {
        const ml_frame *fr = &m->frames[f];
        uint32_t key[3] = {fr->name, fr->file, fr->first_line ? fr->first_line : fr->line};
        size_t k = XXH64(key, sizeof(key), 0) & (nslots - 1);
        uint32_t func = (uint32_t)f;
        for (; slots[k]; k = (k + 1) & (nslots - 1)) {
            const ml_frame *g = &m->frames[slots[k]];
            uint32_t gfirst = g->first_line ? g->first_line : g->line;
            if (g->name == key[0] && g->file == key[1] && gfirst == key[2]) {
                func = slots[k];
                break;
            }
        }
        if (slots[k] == 0)
            slots[k] = (uint32_t)f;
        /* Frames already mapped keep their id (the first definition wins). */
        if (f >= c->nfunc_of_frame)
            c->func_of_frame[f] = func;
    }
    c->func_of_frame[0] = 0;
    c->nfunc_of_frame = m->nframes;
    free(slots);
}

static ml_thread_index *thread_of(ml_calls *c, uint32_t id)
{
    if (id >= c->nthreads) {
        size_t n = (size_t)id + 1;
        c->threads = ml_xrealloc(c->threads, n * sizeof(*c->threads));
        memset(c->threads + c->nthreads, 0, (n - c->nthreads) * sizeof(*c->threads));
        c->nthreads = n;
    }
    return &c->threads[id];
}

static ml_call_list *depth_of(ml_thread_index *t, size_t d)
{
    if (d >= t->ndepth) {
        t->depth = ml_xrealloc(t->depth, (d + 1) * sizeof(*t->depth));
        memset(t->depth + t->ndepth, 0, (d + 1 - t->ndepth) * sizeof(*t->depth));
        t->ndepth = d + 1;
    }
    return &t->depth[d];
}

const ml_call_far *ml__call_far(const ml_call_list *l, size_t k)
{
    size_t lo = 0, hi = l->nfar;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->far[mid].k < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    assert(lo < l->nfar && l->far[lo].k == k);
    return &l->far[lo];
}

/* Moves call k (the last one, or one after every far call) to the far
 * table. */
static void make_far(ml_call_list *l, size_t k, int64_t start, int64_t dur)
{
    ml_xgrow((void **)&l->far, &l->capfar, l->nfar + 1, sizeof(ml_call_far));
    l->far[l->nfar++] = (ml_call_far){(uint32_t)k, start, dur};
    l->chunks[k >> ML_CALLS_BLOCK_SHIFT].start[k & (ML_CALLS_BLOCK - 1)] = UINT32_MAX;
}

static void set_dur(ml_call_list *l, size_t k, int64_t dur)
{
    if (dur < 1)
        dur = 1; /* never zero length */
    ml_call_chunk *ch = &l->chunks[k >> ML_CALLS_BLOCK_SHIFT];
    size_t i = k & (ML_CALLS_BLOCK - 1);
    if (ch->start[i] == UINT32_MAX)
        ((ml_call_far *)ml__call_far(l, k))->dur = dur;
    else if (dur >= (int64_t)UINT32_MAX)
        make_far(l, k, ml_call_start(l, k), dur);
    else
        ch->dur[i] = (uint32_t)dur;
}

static void chunk_grow(ml_call_chunk *ch, uint32_t cap)
{
    ch->start = ml_xrealloc(ch->start, cap * sizeof(uint32_t));
    ch->dur = ml_xrealloc(ch->dur, cap * sizeof(uint32_t));
    ch->func = ml_xrealloc(ch->func, cap * sizeof(uint16_t));
    if (ch->func_hi)
        ch->func_hi = ml_xrealloc(ch->func_hi, cap * sizeof(uint16_t));
    ch->cap = cap;
}

/* Room for call k = l->n: a new chunk at a block boundary, else the last
 * chunk's arrays doubled (up to ML_CALLS_BLOCK). */
static ml_call_chunk *list_reserve(ml_call_list *l, int64_t time)
{
    size_t k = l->n, i = k & (ML_CALLS_BLOCK - 1);
    if (i == 0) {
        ml_xgrow((void **)&l->chunks, &l->capchunks, l->nchunks + 1, sizeof(ml_call_chunk));
        ml_call_chunk *ch = &l->chunks[l->nchunks++];
        *ch = (ml_call_chunk){.base = time};
        chunk_grow(ch, 16);
        return ch;
    }
    ml_call_chunk *ch = &l->chunks[l->nchunks - 1];
    if (i == ch->cap)
        chunk_grow(ch, ch->cap * 2 > ML_CALLS_BLOCK ? ML_CALLS_BLOCK : ch->cap * 2);
    return ch;
}

static void open_call(ml_call_list *l, int64_t time, uint32_t func)
{
    ml_call_chunk *ch = list_reserve(l, time);
    size_t k = l->n++, i = k & (ML_CALLS_BLOCK - 1);
    int64_t off = time - ch->base;
    ch->dur[i] = 1;
    ch->func[i] = (uint16_t)func;
    if (func > UINT16_MAX && ch->func_hi == NULL)
        ch->func_hi = ml_xcalloc(ch->cap, sizeof(uint16_t));
    if (ch->func_hi)
        ch->func_hi[i] = (uint16_t)(func >> 16);
    if (off >= 0 && off < (int64_t)UINT32_MAX)
        ch->start[i] = (uint32_t)off;
    else
        make_far(l, k, time, 1);
    l->open = true;
}

void ml_calls_add_sample(ml_calls *c, const ml_model *m, uint32_t thread, int64_t time,
                         uint32_t stack)
{
    ml_thread_index *t = thread_of(c, thread);
    /* Per-thread time never goes back, so windows are binary searches. */
    if (t->n > 0 && time < t->last)
        time = t->last;
    const ml_stack *st = ml_model_stack(m, stack);
    uint32_t n = st ? st->n : 0;
    if (n > ML_CALLS_MAX_DEPTH) {
        c->frames_cut += n - ML_CALLS_MAX_DEPTH;
        n = ML_CALLS_MAX_DEPTH;
    }
    /* The prefix that agrees by function with the previous sample goes
     * on; the rest of the previous stack ends where the previous sample
     * stops standing; the rest of this stack begins now. */
    uint32_t k = 0;
    while (k < n && k < t->nprev && ml_calls_func(c, st->frames[k]) == t->prev_func[k])
        k++;
    if (t->n > 0) {
        /* A call that ends stops where its last sample stops standing. A
         * call that goes on spans a late sample's gap whole: the function
         * was there before and after it. */
        int64_t cap = c->period_us * ML_SAMPLE_WEIGHT_CAP;
        int64_t end = time - t->last < cap ? time : t->last + cap;
        for (uint32_t d = k; d < t->nprev; d++) {
            ml_call_list *l = &t->depth[d];
            set_dur(l, l->n - 1, end - ml_call_start(l, l->n - 1));
            l->open = false;
        }
    }
    if (n > t->capprev) {
        t->capprev = n;
        t->prev_func = ml_xrealloc(t->prev_func, n * sizeof(uint32_t));
    }
    for (uint32_t d = k; d < n; d++) {
        uint32_t func = ml_calls_func(c, st->frames[d]);
        open_call(depth_of(t, d), time, func);
        t->prev_func[d] = func;
    }
    t->nprev = n;
    if (t->n == 0)
        t->first_time = time;
    t->last = time;
    t->n++;
    c->samples++;
    if (n > 0) {
        times_add(&t->stacked, time);
    } else {
        times_add(&t->bare, time);
        t->no_stack++;
        c->no_stack++;
    }
}

void ml_calls_settle(ml_calls *c)
{
    for (size_t id = 1; id < c->nthreads; id++) {
        ml_thread_index *t = &c->threads[id];
        for (uint32_t d = 0; d < t->nprev; d++) {
            ml_call_list *l = &t->depth[d];
            if (l->open)
                set_dur(l, l->n - 1, t->last + c->period_us - ml_call_start(l, l->n - 1));
        }
    }
}

void ml_calls_add(ml_calls *c, ml_model *m, int64_t period_us)
{
    c->period_us = period_us > 0 ? period_us : 50000;
    ml_calls_map_functions(c, m);
    for (size_t s = 0; s < m->nsamples; s++)
        ml_calls_add_sample(c, m, m->sample_thread[s], m->sample_time[s], m->sample_stack[s]);
    if (m->nsamples) {
        ml_calls_settle(c);
        c->generation++;
    }
    /* The model's columns were only a staging area: free them. */
    free(m->sample_thread);
    free(m->sample_stack);
    free(m->sample_cpu);
    free(m->sample_time);
    m->sample_thread = m->sample_stack = m->sample_cpu = NULL;
    m->sample_time = NULL;
    m->nsamples = m->capsamples = 0;
}

size_t ml_calls_first_ending_after(const ml_call_list *l, int64_t time)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ml_call_end(l, mid) <= time)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t ml_calls_parent(const ml_thread_index *t, size_t d, size_t k)
{
    assert(d > 0 && d < t->ndepth);
    const ml_call_list *p = &t->depth[d - 1];
    int64_t s = ml_call_start(&t->depth[d], k);
    /* The last parent that starts at or before s. */
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ml_call_start(p, mid) <= s)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || ml_call_end(p, lo - 1) <= s)
        return SIZE_MAX;
    return lo - 1;
}

void ml_calls_walk(const ml_thread_index *t, int64_t ws, int64_t we, ml_calls_walk_enter enter,
                   ml_calls_walk_fn segment, void *arg)
{
    size_t nd = t->ndepth;
    if (nd == 0 || we <= ws)
        return;
    size_t *cur = ml_xmalloc(nd * sizeof(size_t));
    int64_t *end = ml_xmalloc(nd * sizeof(int64_t)), *pos = ml_xmalloc(nd * sizeof(int64_t));
    uint32_t *funcs = ml_xmalloc(nd * sizeof(uint32_t));
    for (size_t d = 0; d < nd; d++)
        cur[d] = ml_calls_first_ending_after(&t->depth[d], ws);
    /* Levels 0..open-1 are the calls containing the current position;
     * pos[j] is how far the time inside level j has been reported. */
    size_t open = 0;
    for (;;) {
        if (open < nd) {
            const ml_call_list *l = &t->depth[open];
            int64_t limit = open ? end[open - 1] : we, from = open ? pos[open - 1] : ws;
            if (cur[open] < l->n && ml_call_start(l, cur[open]) < limit) {
                size_t k = cur[open]++;
                int64_t s = ml_call_start(l, k), e = s + ml_call_dur(l, k);
                if (s < from)
                    s = from; /* clipped to the window (or a malformed nesting) */
                if (e > limit)
                    e = limit;
                if (e <= s)
                    continue;
                if (open > 0 && s > pos[open - 1] && segment)
                    segment(arg, funcs, open, pos[open - 1], s);
                funcs[open] = ml_call_func(l, k);
                end[open] = e;
                pos[open] = s;
                if (enter)
                    enter(arg, open, funcs[open], s, e);
                open++;
                continue;
            }
        }
        if (open == 0)
            break;
        size_t j = open - 1;
        if (pos[j] < end[j] && segment)
            segment(arg, funcs, j + 1, pos[j], end[j]);
        open = j;
        if (j > 0)
            pos[j - 1] = end[j];
    }
    free(cur);
    free(end);
    free(pos);
    free(funcs);
}

void ml_calls_shrink(ml_calls *c)
{
    for (size_t i = 0; i < c->nthreads; i++) {
        ml_thread_index *t = &c->threads[i];
        for (size_t d = 0; d < t->ndepth; d++) {
            ml_call_list *l = &t->depth[d];
            if (l->nchunks) {
                ml_call_chunk *ch = &l->chunks[l->nchunks - 1];
                uint32_t used = (uint32_t)(l->n - ((l->nchunks - 1) << ML_CALLS_BLOCK_SHIFT));
                if (used < ch->cap)
                    chunk_grow(ch, used);
            }
            if (l->capchunks > l->nchunks && l->nchunks) {
                l->capchunks = l->nchunks;
                l->chunks = ml_xrealloc(l->chunks, l->nchunks * sizeof(ml_call_chunk));
            }
            if (l->capfar > l->nfar && l->nfar) {
                l->capfar = l->nfar;
                l->far = ml_xrealloc(l->far, l->nfar * sizeof(ml_call_far));
            }
        }
    }
}

size_t ml_calls_bytes(const ml_calls *c)
{
    size_t b = c->nthreads * sizeof(ml_thread_index) + c->nfunc_of_frame * 4;
    for (size_t i = 0; i < c->nthreads; i++) {
        const ml_thread_index *t = &c->threads[i];
        b += t->ndepth * sizeof(ml_call_list) + t->capprev * 4;
        b += t->stacked.capblocks * (sizeof(int64_t) + sizeof(void *) + sizeof(size_t) + 4) +
             t->stacked.nblocks * ML_CALLS_BLOCK * sizeof(uint32_t);
        for (size_t d = 0; d < t->ndepth; d++) {
            const ml_call_list *l = &t->depth[d];
            b += l->capchunks * sizeof(ml_call_chunk) + l->capfar * sizeof(ml_call_far);
            for (size_t k = 0; k < l->nchunks; k++)
                b += l->chunks[k].cap * (l->chunks[k].func_hi ? 12 : 10);
            for (int k = 0; k < ML_LOD_LEVELS; k++)
                b += l->lod[k].n * sizeof(ml_lod_item);
        }
    }
    return b;
}
