/*
 * The compact query index of one run, built from its model (model.h).
 *
 * Raw samples are not kept, only their times (4 bytes each, so a window's
 * or a call's sample count is exact: one count everywhere). Each sample
 * only extends, closes and opens
 * calls (the original Microlog's merge: a call is a maximal run of
 * consecutive samples of one thread whose stacks agree, by function, from
 * the root down to that depth), and every answer is derived from the calls:
 *
 *   - the timeline reads them directly (with a level-of-detail pyramid);
 *   - the flame graph of a window: a call at depth d lies inside exactly
 *     one call at depth d-1 of its thread (its parent), so the path of a
 *     call is its parent's path plus its function, a node's total is the
 *     sum of its calls' durations clipped to the window, and its self time
 *     is its total minus its children's;
 *   - the exports walk the calls of a thread as time segments of constant
 *     call chain (ml_calls_walk).
 *
 * Calls are stored per thread and depth in chunks of ML_CALLS_BLOCK calls,
 * in columns: a 32-bit start offset in us from the chunk's 64-bit base, a
 * 32-bit duration in us and a 16-bit function id (a second 16-bit column
 * appears in a chunk the first time it holds a function id >= 65536). A call whose start offset or
 * duration does not fit in 32 bits (a call longer than 71 minutes) is kept
 * in full in a small side table, marked by UINT32_MAX in its start column.
 * That is 10 bytes a call against 8 bytes a sample, and a run has many
 * fewer calls than samples per depth.
 *
 * Timing rule (shared by every answer): a call starts at its first
 * sample and ends where its last sample stops standing: at the thread's
 * next sample, but at most ML_SAMPLE_WEIGHT_CAP periods later (a late
 * sampler still accounts for the time, a stopped process does not); the
 * thread's last sample stands for one period. A call that goes on across
 * a late sample spans the gap whole. A call at depth d+1 never outlasts
 * the call at depth d that contains it, and flame-graph time is the sum of
 * call durations, so timeline and flame graph agree.
 *
 * Functions: frames that share name, file and first line are one function
 * (a frame is a function at one executing line); a function is named by
 * its first frame id.
 *
 * The index grows incrementally for live runs: the last call of each depth
 * of a thread stays open (its duration provisional) until a sample ends it.
 * Loop thread only.
 */
#ifndef ML_COLLECTOR_CALLS_H
#define ML_COLLECTOR_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define ML_CALLS_BLOCK_SHIFT 10
#define ML_CALLS_BLOCK (1u << ML_CALLS_BLOCK_SHIFT)
/* Deepest stack level indexed as calls; deeper frames are cut (counted in
 * ml_calls.frames_cut). */
#define ML_CALLS_MAX_DEPTH 256
/* Pyramid levels of the timeline's level of detail (timeline.c). */
#define ML_LOD_LEVELS 8
/* A sample weighs the time to its thread's next sample, at most this many
 * periods. */
#define ML_SAMPLE_WEIGHT_CAP 2

/* One merged timeline item of a pyramid level: count calls of one depth
 * from start to end (us), func the dominant (longest) one. */
typedef struct ml_lod_item {
    int64_t start, end;
    uint32_t func, count;
} ml_lod_item;

/* A pyramid level: the merge at a pixel of px us. */
typedef struct ml_lod_level {
    ml_lod_item *items;
    size_t n;
    int64_t px;
} ml_lod_level;

/* A call whose start offset or duration does not fit 32 bits. */
typedef struct ml_call_far {
    uint32_t k; /* call index */
    int64_t start, dur;
} ml_call_far;

/* ML_CALLS_BLOCK calls of a list (fewer in its last chunk, whose arrays
 * grow up to that): chunks are never moved, so a growing list never
 * copies nor leaves holes the size of the list in the heap. */
typedef struct ml_call_chunk {
    int64_t base;      /* start of its first call, us */
    uint32_t *start;   /* us after base; UINT32_MAX: far */
    uint32_t *dur;     /* us */
    uint16_t *func;    /* function ids, low 16 bits */
    uint16_t *func_hi; /* high 16 bits; NULL while every id < 65536 */
    uint32_t cap;
} ml_call_chunk;

/* The calls of one thread at one depth, ordered by time, not overlapping. */
typedef struct ml_call_list {
    ml_call_chunk *chunks;
    size_t n, nchunks, capchunks;
    ml_call_far *far; /* sorted by k */
    size_t nfar, capfar;
    bool open;                       /* the last call may still grow */
    size_t lod_built;                /* generation + 1 when the pyramid was built; 0: never */
    ml_lod_level lod[ML_LOD_LEVELS]; /* nlod levels, px increasing */
    uint8_t nlod;
} ml_call_list;

/* The times of a thread's samples with a Python stack, in blocks: a 64-bit
 * base and 32-bit offsets from it (a block ends early where an offset
 * would not fit). first[b]: index of block b's first time. */
typedef struct ml_times {
    int64_t *base;
    uint32_t **off;
    size_t *first;
    uint32_t *count;
    size_t n, nblocks, capblocks;
} ml_times;

typedef struct ml_thread_index {
    size_t n;                 /* samples consumed */
    uint64_t no_stack;        /* of them, samples without a Python stack (no call) */
    ml_times stacked;         /* times of the others */
    ml_times bare;            /* times of those without */
    int64_t first_time, last; /* first and latest sample time (us) */
    ml_call_list *depth;      /* ndepth lists */
    size_t ndepth;
    uint32_t *prev_func; /* functions of the previous sample's stack, root first */
    uint32_t nprev, capprev;
} ml_thread_index;

typedef struct ml_calls {
    ml_thread_index *threads; /* by thread id; 0 unused */
    size_t nthreads;
    uint32_t *func_of_frame; /* frame id -> function id (its first frame id) */
    size_t nfunc_of_frame;
    uint64_t samples;    /* total consumed */
    uint64_t no_stack;   /* of them, without a Python stack */
    uint64_t frames_cut; /* stack levels below ML_CALLS_MAX_DEPTH left out */
    int64_t period_us;
    uint64_t generation; /* bumped on every ml_calls_add that added samples */
} ml_calls;

void ml_calls_init(ml_calls *c);

void ml_calls_dispose(ml_calls *c);

/* Merges the samples of m into c and empties m's sample columns
 * (m->nsamples becomes 0, memory freed). period_us is the run's sample
 * period. Samples of a thread that go back in time are clamped to its
 * latest time. */
void ml_calls_add(ml_calls *c, ml_model *m, int64_t period_us);

/* Merges one sample (thread, time, stack) into c; m provides the stack
 * and frame tables. ml_calls_add() is this per sample plus bookkeeping;
 * call ml_calls_settle() after a run of ml_calls_add_sample(). */
void ml_calls_add_sample(ml_calls *c, const ml_model *m, uint32_t thread, int64_t time,
                         uint32_t stack);

/* Gives the open calls their provisional durations (after samples were
 * added one by one). */
void ml_calls_settle(ml_calls *c);

/* Maps the frames of m defined since the last call to functions. */
void ml_calls_map_functions(ml_calls *c, const ml_model *m);

/* The function id of frame id f (0 when unknown). */
uint32_t ml_calls_func(const ml_calls *c, uint32_t f);

/* The far entry of call k of l (which must be far). */
const ml_call_far *ml__call_far(const ml_call_list *l, size_t k);

static inline const ml_call_chunk *ml__call_chunk(const ml_call_list *l, size_t k)
{
    return &l->chunks[k >> ML_CALLS_BLOCK_SHIFT];
}

/* Start (us since run start) of call k of l. */
static inline int64_t ml_call_start(const ml_call_list *l, size_t k)
{
    const ml_call_chunk *ch = ml__call_chunk(l, k);
    uint32_t s = ch->start[k & (ML_CALLS_BLOCK - 1)];
    return s != UINT32_MAX ? ch->base + s : ml__call_far(l, k)->start;
}

/* Duration (us, > 0) of call k of l. */
static inline int64_t ml_call_dur(const ml_call_list *l, size_t k)
{
    const ml_call_chunk *ch = ml__call_chunk(l, k);
    size_t i = k & (ML_CALLS_BLOCK - 1);
    return ch->start[i] != UINT32_MAX ? (int64_t)ch->dur[i] : ml__call_far(l, k)->dur;
}

static inline int64_t ml_call_end(const ml_call_list *l, size_t k)
{
    return ml_call_start(l, k) + ml_call_dur(l, k);
}

/* Function (frame) id of call k of l. */
static inline uint32_t ml_call_func(const ml_call_list *l, size_t k)
{
    const ml_call_chunk *ch = ml__call_chunk(l, k);
    size_t i = k & (ML_CALLS_BLOCK - 1);
    return ch->func[i] | (ch->func_hi ? (uint32_t)ch->func_hi[i] << 16 : 0);
}

/* Samples of t with a Python stack whose time is in [a, b): the count a
 * call, a segment or a window stands for. O(log n). */
uint64_t ml_calls_count(const ml_thread_index *t, int64_t a, int64_t b);
/* The same for its samples without a Python stack. */
uint64_t ml_calls_count_bare(const ml_thread_index *t, int64_t a, int64_t b);

/* First call index of l whose end is after time (l->n when none). */
size_t ml_calls_first_ending_after(const ml_call_list *l, int64_t time);

/* The index of the call of t at depth d-1 that contains call k of depth d
 * (d > 0); SIZE_MAX if none (never for an index built by ml_calls_add). */
size_t ml_calls_parent(const ml_thread_index *t, size_t d, size_t k);

/* Called by ml_calls_walk() for every call of t met, clipped to the
 * window (and to its parent): level = its depth, func its function. */
typedef void (*ml_calls_walk_enter)(void *arg, size_t level, uint32_t func, int64_t start,
                                    int64_t end);

/* Called by ml_calls_walk() for every time segment [start, end) of a
 * thread during which the chain of calls stays the same: funcs[0..depth)
 * root first (depth >= 1; time outside every call is not reported). */
typedef void (*ml_calls_walk_fn)(void *arg, const uint32_t *funcs, size_t depth, int64_t start,
                                 int64_t end);

/* Walks the calls of t overlapping [ws, we) depth first, in time order,
 * clipped to the window: enter (may be NULL) for each call as it opens,
 * segment (may be NULL) for each stretch of constant call chain. Cost:
 * O(calls in the window), no allocation per call. */
void ml_calls_walk(const ml_thread_index *t, int64_t ws, int64_t we, ml_calls_walk_enter enter,
                   ml_calls_walk_fn segment, void *arg);

/* Frees the spare capacity of every array (once a run is closed). */
void ml_calls_shrink(ml_calls *c);

/* Bytes held by c (for the memory benchmark and /metrics). */
size_t ml_calls_bytes(const ml_calls *c);

#endif
