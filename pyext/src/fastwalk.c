/*
 * The GIL-free frame walk: every thread's _PyInterpreterFrame chain read
 * while the threads keep running (CPython 3.11 and 3.13+, layout.h).
 *
 * A sample is a consistent stack or it is not recorded as one. The walk of
 * one thread is an attempt that either proves its stack consistent or
 * fails; a failed attempt is retried at once (ML__WALK_TRIES in all), and
 * a thread without a consistent attempt is left to the GIL path (the
 * sampler's deferral: the main thread's pending call or a GIL pass, which
 * read the stack with the thread stopped), never recorded truncated.
 *
 * What makes an attempt consistent (the rules, for every interpreter):
 *  1. Memory safety. The thread-state list is read under the runtime's
 *     HEAD_LOCK, held through every attempt: a listed thread state is
 *     valid, and so is its first datastack chunk (both are freed only after
 *     the state is unlinked under that lock). Every other byte - frames of
 *     other chunks, generator frames on the heap, entry frames on a C stack
 *     - may be freed and unmapped at any moment: it is read with guarded
 *     reads (guard.c: a fault ends the attempt) or, when the guard is not
 *     ours, with process_vm_readv().
 *  2. A snapshot in time. The thread's current frame (the leaf) is read
 *     first and again after the last read of the attempt: the leaf, with
 *     the code it ran, must still be on the thread's chain - current, or
 *     suspended in a call at most CALLEES_MAX frames below the current one
 *     (a busy thread calls all the time; requiring it current would leave
 *     such code to the GIL path and bias the profile). Otherwise it
 *     returned meanwhile and the attempt is torn. While one frame stays on
 *     the chain, the frames below it cannot change: they are suspended in
 *     calls, their links fixed (a generator's `previous` is set when it is
 *     resumed and holds while it runs). So the chain read is the chain of
 *     one moment.
 *  3. The chain's shape. Each frame is aligned; a frame owned by the thread
 *     lies inside one of the thread's chunks, below the previous one of the
 *     same chunk (the data stack grows upward); a generator's frame is on
 *     the chain only while the generator executes (its frame state); a
 *     frame object's copy is never on a running chain.
 *  4. The chain's end. It must reach the thread's first frame: the first
 *     slot of its root chunk (3.11, 3.13, 3.14; followed by the entry frame
 *     on 3.13+) or the base frame of the thread state (3.15). A chain that
 *     ends anywhere else - a generator whose `previous` was just cleared by
 *     a yield, a frame read half-written - is torn.
 *  5. Known code. A code object is accepted only when its address is in the
 *     table of code objects the GIL path interned (the code map holds a
 *     strong reference to each, so such an address is a live code object)
 *     and the instruction pointer lies inside its bytecode. An unknown code
 *     object is not an inconsistency: the thread is deferred so the GIL path
 *     learns it, as before.
 * Line numbers of a known code object come from its line table, immutable
 * and kept alive by the code map's reference.
 *
 * Only the sampler thread calls into this file (ml__fastwalk_learn with the
 * GIL, the rest without); its tables are its own.
 */
#include "layout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef ML_LAYOUT

/* Attempts per thread and pass before the thread is left to the GIL path.
 * Code that yields chunks through nested generators (json.dump with indent)
 * tears about every other attempt; the GIL path samples such a thread only
 * where it lets the GIL go, so each sample left to it biases the profile:
 * at 4 tries 6 % of the worker's samples of bench_truth went there and its
 * json.dump share read 3-5 points low, at 16 none but one in 1 400. */
#define ML__WALK_TRIES 16
/* Longest frame chain followed (a torn read may hold a cycle). */
#define CHAIN_MAX 4096
/* Calls the thread may have made below the attempt's leaf frame by the
 * time the attempt ends (rule 2). */
#define CALLEES_MAX 8
/* Chunks of one thread followed (deeper stacks: the walk is torn). */
#define CHUNKS_MAX 64
/* The process_vm_readv path copies at most this much of the current chunk
 * (its leaf end) in one call; other frames are read one by one. */
#define CHUNK_COPY_MAX (64 * 1024)

/* Reads of memory other threads write, racing with them by design: never
 * instrumented (the address sanitizer would report reads of memory the
 * program just freed, the thread sanitizer every read). */
#define ML_RACY __attribute__((no_sanitize("address", "thread", "undefined"), noinline))

typedef struct raw_frame {
    const ml__known_code *kc;
    int key;
} raw_frame;

struct ml__fastwalk {
    pid_t pid;
    bool guard;            /* guarded reads this pass (else process_vm_readv) */
    ml__known_code *codes; /* open addressing by code address, cap a power of 2 */
    size_t ccap, clen;
    ml__known_frame *frames; /* open addressing by (code, offset) */
    size_t fcap, flen;
    struct stack_entry {
        uint64_t hash; /* of the frame ids and the cut count; 0: empty */
        uint32_t id;
    } * stacks; /* see stack_slot() */
    size_t scap, slen;
    ml__fastwalk_stats stats;
    raw_frame raw[ML__MAX_DEPTH]; /* the attempt's frames, leaf first */
    /* The process_vm_readv path's copy of the current chunk's used part. */
    uintptr_t copy_lo, copy_hi;
    _Alignas(16) unsigned char copy[CHUNK_COPY_MAX];
};

static bool pvm_copy(pid_t pid, void *dst, uintptr_t addr, size_t len)
{
    struct iovec local = {dst, len}, remote = {(void *)addr, len};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len;
}

/* Plain loads, word by word where aligned, never through an intercepted
 * memcpy. Guarded: a fault here ends the attempt (guard.c). */
ML_RACY static void copy_plain(void *dst, uintptr_t src, size_t len)
{
    if (((src | (uintptr_t)dst | len) & 7) == 0) {
        const volatile uint64_t *s = (const volatile uint64_t *)src;
        uint64_t *d = dst;
        for (size_t i = 0; i < len / 8; i++)
            d[i] = s[i];
        return;
    }
    const volatile unsigned char *s = (const volatile unsigned char *)src;
    unsigned char *d = dst;
    for (size_t i = 0; i < len; i++)
        d[i] = s[i];
}

/* Copies len bytes at addr (memory of another thread, rule 1). */
static bool rd(ml__fastwalk *w, void *dst, uintptr_t addr, size_t len)
{
    if (w->guard) {
        copy_plain(dst, addr, len);
        return true;
    }
    if (addr >= w->copy_lo && addr + len <= w->copy_hi) {
        memcpy(dst, w->copy + (addr - w->copy_lo), len);
        return true;
    }
    return pvm_copy(w->pid, dst, addr, len);
}

static bool rd_word(ml__fastwalk *w, uintptr_t *dst, uintptr_t addr)
{
    return rd(w, dst, addr, sizeof(*dst));
}

/* What the walk reads of a frame. */
typedef struct fhead {
    uintptr_t code, previous, instr;
    int owner;
} fhead;

/* The four fields straight from the frame (guarded). */
ML_RACY static void head_plain(fhead *h, uintptr_t f)
{
    h->code = *(const volatile uintptr_t *)(f + ML_FRAME_CODE_OFF);
    h->previous = *(const volatile uintptr_t *)(f + ML_FRAME_PREV_OFF);
    h->instr = *(const volatile uintptr_t *)(f + ML_FRAME_INSTR_OFF);
    h->owner = *(const volatile char *)(f + ML_FRAME_OWNER_OFF);
}

static bool read_head(ml__fastwalk *w, fhead *h, uintptr_t f)
{
    if (w->guard) {
        head_plain(h, f);
        return true;
    }
    _PyInterpreterFrame copy; /* its first ML_FRAME_HEAD bytes */
    if (!rd(w, &copy, f, ML_FRAME_HEAD))
        return false;
    h->code = *(const uintptr_t *)((const char *)&copy + ML_FRAME_CODE_OFF);
    h->previous = (uintptr_t)copy.previous;
    h->instr = ml_layout_frame_instr(&copy);
    h->owner = copy.owner;
    return true;
}

int ml__fastwalk_new(ml__fastwalk **out)
{
    ml__fastwalk *w = calloc(1, sizeof(*w));
    uint64_t probe = 0x6d6963726f6c6f67ull, copy = 0;
    if (w == NULL)
        return -ENOMEM;
    w->pid = getpid();
    /* Seccomp profiles (some containers) forbid process_vm_readv: it is
     * the path of every pass the guard does not serve, so without it the
     * sampler keeps the GIL path. */
    if (!pvm_copy(w->pid, &copy, (uintptr_t)&probe, sizeof(probe)) || copy != probe) {
        int err = errno ? errno : EIO;
        free(w);
        return -err;
    }
    *out = w;
    return 0;
}

void ml__fastwalk_free(ml__fastwalk *w)
{
    if (w == NULL)
        return;
    free(w->codes);
    free(w->frames);
    free(w->stacks);
    free(w);
}

void ml__fastwalk_stats_get(const ml__fastwalk *w, ml__fastwalk_stats *out)
{
    *out = w->stats;
}

/* The stack cache: a stack seen before costs one lookup, keyed by the hash
 * of its raw frames (code address, offset) and cut count; two different
 * stacks would need equal 64-bit hashes to mix. Slot for h, or NULL when
 * the table cannot grow. */
static struct stack_entry *stack_slot(ml__fastwalk *w, uint64_t h)
{
    h = h ? h : 1;
    if ((w->slen + 1) * 2 > w->scap) {
        size_t cap = w->scap ? w->scap * 2 : 1024;
        struct stack_entry *v = calloc(cap, sizeof(*v));
        if (v == NULL)
            return NULL;
        for (size_t i = 0; i < w->scap; i++) {
            if (w->stacks[i].hash == 0)
                continue;
            size_t j = (size_t)(w->stacks[i].hash >> 11) & (cap - 1);
            while (v[j].hash != 0)
                j = (j + 1) & (cap - 1);
            v[j] = w->stacks[i];
        }
        free(w->stacks);
        w->stacks = v;
        w->scap = cap;
    }
    size_t j = (size_t)(h >> 11) & (w->scap - 1);
    while (w->stacks[j].hash != 0 && w->stacks[j].hash != h)
        j = (j + 1) & (w->scap - 1);
    return &w->stacks[j];
}

static size_t hash_ptr(uintptr_t p, int key)
{
    uint64_t h = ((uint64_t)(p >> 4) ^ ((uint64_t)(uint32_t)key << 32)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17);
}

static const ml__known_code *code_find(const ml__fastwalk *w, uintptr_t code)
{
    if (w->ccap == 0 || code == 0)
        return NULL;
    for (size_t j = hash_ptr(code, 0) & (w->ccap - 1); w->codes[j].code != 0;
         j = (j + 1) & (w->ccap - 1))
        if (w->codes[j].code == code)
            return &w->codes[j];
    return NULL;
}

static int code_grow(ml__fastwalk *w)
{
    size_t cap = w->ccap ? w->ccap * 2 : 512;
    ml__known_code *v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < w->ccap; i++) {
        if (w->codes[i].code == 0)
            continue;
        size_t j = hash_ptr(w->codes[i].code, 0) & (cap - 1);
        while (v[j].code != 0)
            j = (j + 1) & (cap - 1);
        v[j] = w->codes[i];
    }
    free(w->codes);
    w->codes = v;
    w->ccap = cap;
    return 0;
}

static uint32_t *frame_slot(ml__fastwalk *w, uintptr_t code, int key, bool *found)
{
    size_t j = hash_ptr(code, key) & (w->fcap - 1);
    for (; w->frames[j].code != 0; j = (j + 1) & (w->fcap - 1))
        if (w->frames[j].code == code && w->frames[j].key == key) {
            *found = true;
            return &w->frames[j].id;
        }
    *found = false;
    w->frames[j].code = code;
    w->frames[j].key = key;
    return &w->frames[j].id;
}

static int frame_grow(ml__fastwalk *w)
{
    size_t cap = w->fcap ? w->fcap * 2 : 2048;
    ml__known_frame *v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < w->fcap; i++) {
        if (w->frames[i].code == 0 || w->frames[i].id == 0)
            continue;
        size_t j = hash_ptr(w->frames[i].code, w->frames[i].key) & (cap - 1);
        while (v[j].code != 0)
            j = (j + 1) & (cap - 1);
        v[j] = w->frames[i];
    }
    free(w->frames);
    w->frames = v;
    w->fcap = cap;
    return 0;
}

int ml__fastwalk_learn(ml__fastwalk *w, ml__codemap *m, ml_client *c, const ml__rawframe *raw,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        PyCodeObject *code = raw[i].code;
        if (code_find(w, (uintptr_t)code) != NULL)
            continue;
        ml__code_info *ci = ml__codemap_get(m, c, code, raw[i].globals);
        if (ci == NULL)
            return -ENOMEM;
        if ((w->clen + 1) * 2 > w->ccap && code_grow(w) != 0)
            return -ENOMEM;
        size_t j = hash_ptr((uintptr_t)code, 0) & (w->ccap - 1);
        while (w->codes[j].code != 0)
            j = (j + 1) & (w->ccap - 1);
        /* ci->code holds the strong reference that keeps this address live. */
        w->codes[j] = (ml__known_code){
            .code = (uintptr_t)code,
            .units = ml_layout_code_units(code),
            .name = ci->name,
            .file = ci->file,
            .first_line = ci->first_line,
            .flags = ci->flags,
            .first_traceable = ml_layout_code_first_traceable(code),
            .nbytes = (int32_t)_PyCode_NBYTES(code),
            .hidden = ci->hidden,
        };
        w->clen++;
    }
    return 0;
}

/* Frame id of offset key in known code kc, computing the line the first
 * time; 0 on failure. */
static uint32_t frame_id(ml__fastwalk *w, ml_client *c, const ml__known_code *kc, int key)
{
    bool found;
    if ((w->flen + 1) * 2 > w->fcap && frame_grow(w) != 0)
        return 0;
    uint32_t *id = frame_slot(w, kc->code, key, &found);
    if (found && *id != 0)
        return *id;
    /* The line table is immutable and the code object alive (rule 5). */
    int line = PyCode_Addr2Line((PyCodeObject *)kc->code, key);
    *id = ml_client_frame(c, kc->name, kc->file, line > 0 ? (uint32_t)line : 0, kc->first_line,
                          kc->flags);
    if (!found)
        w->flen++;
    return *id;
}

/* One thread's chunks, current first: [lo, hi) of each used part. */
typedef struct chunks {
    size_t n;
    struct {
        uintptr_t lo, hi;
    } v[CHUNKS_MAX];
    uintptr_t root; /* the chunk without a previous one */
} chunks;

/* Reads the chain of chunks from the current one (its used part ends at
 * top) to the root. False: torn or unreadable. */
static bool read_chunks(ml__fastwalk *w, uintptr_t chunk, uintptr_t top, chunks *out)
{
    out->n = 0;
    out->root = 0;
    uintptr_t hi = top;
    while (chunk != 0) {
        _PyStackChunk head;
        if (out->n == CHUNKS_MAX || (chunk & 7) != 0 ||
            !rd(w, &head, chunk, offsetof(_PyStackChunk, data)))
            return false;
        uintptr_t lo = ml_layout_chunk_data(chunk);
        if (hi < lo || hi > chunk + head.size || head.size > ((size_t)1 << 30))
            return false;
        out->v[out->n].lo = lo;
        out->v[out->n].hi = hi;
        out->n++;
        if (head.previous == NULL) {
            out->root = chunk;
            return true;
        }
        chunk = (uintptr_t)head.previous;
        _PyStackChunk prev;
        if ((chunk & 7) != 0 || !rd(w, &prev, chunk, offsetof(_PyStackChunk, data)))
            return false;
        hi = ml_layout_chunk_data(chunk) + prev.top * sizeof(PyObject *);
    }
    return false; /* no chunk: a thread with frames has one */
}

enum { WALK_OK, WALK_UNKNOWN, WALK_TORN, WALK_FAULT };

/* One attempt on one listed thread state (HEAD_LOCK held). */
typedef struct attempt {
    ml__fastwalk *w;
    PyThreadState *ts;
    size_t n;      /* frames in w->raw, leaf first */
    size_t cut;    /* frames deeper than ML__MAX_DEPTH (nearest the root) */
    uint64_t hash; /* of the frames (code, offset) and cut: the stack cache's key */
} attempt;

/* The thread state's own fields: valid memory (HEAD_LOCK), written by its
 * thread meanwhile. */
ML_RACY static uintptr_t ts_load(const void *field)
{
    return *(const volatile uintptr_t *)field;
}

static bool read_current(ml__fastwalk *w, PyThreadState *ts, uintptr_t *ref, uintptr_t *cur)
{
    bool in_tstate;
#if PY_VERSION_HEX < 0x030D0000
    /* The _PyCFrame pointer is a thread-state field; the _PyCFrame itself
     * is on the thread's C stack (or ts->root_cframe). */
    uintptr_t cframe = ts_load(&ts->cframe);
    *ref = cframe ? cframe + offsetof(_PyCFrame, current_frame) : 0;
    in_tstate = cframe == (uintptr_t)&ts->root_cframe;
#else
    *ref = ml_layout_current_ref(ts, &in_tstate);
#endif
    if (*ref == 0) {
        *cur = 0;
        return true;
    }
    if (in_tstate) {
        *cur = ts_load((const void *)*ref);
        return true;
    }
    return rd_word(w, cur, *ref);
}

/* Rule 2's second reading: the attempt's leaf frame (at cur0, running
 * code0) is still the thread's current frame, or it is suspended in a call
 * at most CALLEES_MAX frames below the current one. Only frame addresses
 * and the leaf's code are compared: on 3.11 the _PyCFrame that points at
 * the current frame changes with every call through C. */
static bool leaf_still_there(ml__fastwalk *w, PyThreadState *ts, uintptr_t cur0, uintptr_t code0)
{
    uintptr_t ref, cur;
    if (!read_current(w, ts, &ref, &cur))
        return false;
    for (int i = 0; i <= CALLEES_MAX && cur != 0; i++) {
        fhead f;
        if ((cur & 7) != 0 || !read_head(w, &f, cur))
            return false;
        if (cur == cur0)
            return f.code == code0;
        cur = f.previous;
    }
    return false;
}

/* Rules 2-5 over the chain that starts at the current frame. */
static int walk_attempt(void *arg)
{
    attempt *a = arg;
    ml__fastwalk *w = a->w;
    PyThreadState *ts = a->ts;
    uintptr_t ref0, cur0;
    a->n = a->cut = 0;
    a->hash = 0;
    w->copy_lo = w->copy_hi = 0;
    if (!read_current(w, ts, &ref0, &cur0))
        return WALK_TORN;
    if (cur0 == 0)
        return WALK_OK; /* no Python frame: nothing to record */
    chunks ch;
    uintptr_t top = ts_load(&ts->datastack_top);
    if (!read_chunks(w, ts_load(&ts->datastack_chunk), top, &ch))
        return WALK_TORN;
    if (!w->guard) { /* one system call for the current chunk's used part */
        uintptr_t lo = ch.v[0].lo, hi = ch.v[0].hi;
        if (hi - lo > CHUNK_COPY_MAX)
            lo = hi - CHUNK_COPY_MAX;
        if (pvm_copy(w->pid, w->copy, lo, hi - lo)) {
            w->copy_lo = lo;
            w->copy_hi = hi;
        }
    }
    size_t ci = 0;                 /* chunk of the last thread-owned frame */
    uintptr_t below = UINTPTR_MAX; /* frames of that chunk lie below this */
    uintptr_t last = 0, last_own = 0;
    enum ml_layout_owner last_owner = ML_OWNER_OTHER;
    uint64_t h = 0xcbf29ce484222325ull;
    uintptr_t code0 = 0;
    fhead f;
    for (uintptr_t cur = cur0, steps = 0; cur != 0; steps++) {
        if (steps == CHAIN_MAX || (cur & 7) != 0 || !read_head(w, &f, cur))
            return WALK_TORN;
        if (steps == 0)
            code0 = f.code;
        enum ml_layout_owner owner = ml_layout_owner_of(f.owner);
        last = cur;
        last_owner = owner;
        if (owner == ML_OWNER_ENTRY) {
            cur = f.previous;
            continue;
        }
        if (owner == ML_OWNER_THREAD) {
            while (ci < ch.n && !(cur >= ch.v[ci].lo && cur + ML_FRAME_HEAD <= ch.v[ci].hi)) {
                ci++;
                below = UINTPTR_MAX;
            }
            if (ci == ch.n || cur >= below)
                return WALK_TORN;
            below = cur;
            last_own = cur;
        } else if (owner == ML_OWNER_GENERATOR) {
            int8_t state;
            if (!rd(w, &state, cur - ML_GEN_STATE_BACK, 1) || !ml_layout_gen_executing(state))
                return WALK_TORN;
        } else {
            return WALK_TORN;
        }
        const ml__known_code *kc = code_find(w, ml_layout_code_untag(f.code));
        if (kc == NULL)
            return WALK_UNKNOWN;
        /* Offsets computed from the code address, never by reading it. */
        intptr_t units = (intptr_t)(f.instr - kc->units) / (intptr_t)sizeof(_Py_CODEUNIT);
        if (units < -1 || units * (intptr_t)sizeof(_Py_CODEUNIT) >= kc->nbytes)
            return WALK_TORN;
        cur = f.previous;
        /* Frames before their first RESUME are skipped, as the interpreter
         * does (_PyFrame_IsIncomplete). */
        if (owner != ML_OWNER_GENERATOR && units < kc->first_traceable)
            continue;
        if (kc->hidden)
            continue;
        if (a->n == ML__MAX_DEPTH) { /* deeper than the cap: counted, nearest the root */
            a->cut++;
            continue;
        }
        int key = units < 0 ? 0 : (int)(units * (intptr_t)sizeof(_Py_CODEUNIT));
        w->raw[a->n].kc = kc;
        w->raw[a->n].key = key;
        a->n++;
        h = (h ^ kc->code) * 0x100000001b3ull;
        h = (h ^ (uint64_t)(uint32_t)key) * 0x100000001b3ull;
    }
    a->hash = (h ^ a->cut) * 0x100000001b3ull;
    /* Rule 4: the chain ends at the thread's first frame. */
    uintptr_t base = ml_layout_base_frame(ts);
    if (base != 0
            ? last != base
            : (last_own != ml_layout_first_frame(ch.root) ||
               (PY_VERSION_HEX >= 0x030D0000 ? last_owner != ML_OWNER_ENTRY : last != last_own)))
        return WALK_TORN;
    /* Rule 2: no frame of the chain was popped while it was read. */
    if (!leaf_still_there(w, ts, cur0, code0))
        return WALK_TORN;
    return WALK_OK;
}

/* The attempts on one thread: WALK_OK with w->raw filled, WALK_UNKNOWN, or
 * the last failure. */
static int walk_thread(ml__fastwalk *w, PyThreadState *ts, attempt *a)
{
    int rv = WALK_TORN;
    a->w = w;
    a->ts = ts;
    for (int i = 0; i < ML__WALK_TRIES; i++) {
        if (i > 0)
            w->stats.retries++;
        rv = w->guard ? ml__guard_run(walk_attempt, a) : walk_attempt(a);
        if (rv == ML__GUARD_FAULT) {
            w->stats.faults++;
            rv = WALK_FAULT;
            continue;
        }
        if (rv == WALK_OK || rv == WALK_UNKNOWN)
            return rv;
    }
    return rv;
}

/* The stack of a consistent attempt; 0 with no frame left. -ENOMEM. */
static int intern(ml__fastwalk *w, ml_client *c, const attempt *a, uint32_t *ids, uint32_t *stack)
{
    if (a->n == 0) {
        *stack = 0;
        return 0;
    }
    uint64_t h = a->hash ? a->hash : 1;
    struct stack_entry *e = stack_slot(w, h);
    if (e != NULL && e->hash == h) {
        *stack = e->id;
        return 0;
    }
    /* ids is filled from its end (raw is leaf first), so ids[pos..) is
     * root first as a stack is. */
    size_t pos = ML__MAX_DEPTH;
    for (size_t i = 0; i < a->n; i++) {
        uint32_t id = frame_id(w, c, w->raw[i].kc, w->raw[i].key);
        if (id == 0)
            return -ENOMEM;
        ids[--pos] = id;
    }
    *stack = ml_client_stack(c, ids + pos, ML__MAX_DEPTH - pos, (uint32_t)a->cut);
    if (*stack == 0)
        return -ENOMEM;
    if (e != NULL) {
        *e = (struct stack_entry){h, *stack};
        w->slen++;
    }
    return 0;
}

int ml__fastwalk_pass(ml__fastwalk *w, PyInterpreterState *interp, PyThreadState *skip,
                      ml_client *c, ml__fast_sample **out, size_t *cap, size_t *n, uint32_t *ids,
                      ml__cost_ring *costs)
{
    size_t ns = 0;
    int rv = 0;
    /* The guard serves while its handler is the one installed (guard.c). */
    w->guard = ml__guard_ready();
    if (!w->guard)
        w->stats.unguarded_passes++;
    ml_layout_head_lock();
    for (PyThreadState *ts = ml_layout_threads(interp); ts != NULL; ts = ts->next) {
        if (ts == skip)
            continue;
        unsigned long ident = (unsigned long)ts_load(&ts->thread_id);
        if (ident == 0)
            continue; /* made, not started yet (3.12+): no frame, no thread */
        if (ns == *cap) {
            size_t grown = *cap ? *cap * 2 : 16;
            ml__fast_sample *v = realloc(*out, grown * sizeof(*v));
            if (v == NULL) {
                rv = -ENOMEM;
                break;
            }
            *out = v;
            *cap = grown;
        }
        int64_t t0 = ml__mono_ns();
        ml__fast_sample *s = &(*out)[ns++];
        s->ident = ident;
        s->native_id = (unsigned long)ts_load(&ts->native_thread_id);
        s->deferred = ML__DEFER_NONE;
        s->stack = 0;
        attempt a;
        int r = walk_thread(w, ts, &a);
        if (r == WALK_OK) {
            if ((rv = intern(w, c, &a, ids, &s->stack)) != 0)
                break;
        } else if (r == WALK_UNKNOWN) {
            s->deferred = ML__DEFER_UNKNOWN; /* only this thread waits for its code */
        } else {
            s->deferred = ML__DEFER_TORN;
            w->stats.torn++;
        }
        ml__cost_ring_add(costs, ml__mono_ns() - t0);
    }
    ml_layout_head_unlock();
    *n = ns;
    return rv;
}

void ml__fastwalk_wake_main(PyInterpreterState *interp)
{
#if PY_VERSION_HEX < 0x030D0000
    /* Py_AddPendingCall from a thread other than the main one does not set
     * the eval breaker in 3.11: COMPUTE_EVAL_BREAKER asks whether the
     * *calling* thread can handle pending calls, so the call would wait for
     * the next GIL switch request (5 ms or more, never in a program with one
     * thread). Setting the flag makes the main thread look at its pending
     * calls at its next check; handling them recomputes the flag. Called
     * right after a call was added, so the flag is not left set with nothing
     * to handle. No GIL. (3.13+ signals the main thread itself.) */
    _Py_atomic_store_relaxed(&interp->ceval.eval_breaker, 1);
#else
    (void)interp;
#endif
}

#else /* no layout for this interpreter: the GIL path only */

void ml__fastwalk_wake_main(PyInterpreterState *interp)
{
    (void)interp;
}

int ml__fastwalk_new(ml__fastwalk **out)
{
    (void)out;
    return -ENOTSUP;
}

void ml__fastwalk_free(ml__fastwalk *w)
{
    (void)w;
}

void ml__fastwalk_stats_get(const ml__fastwalk *w, ml__fastwalk_stats *out)
{
    (void)w;
    memset(out, 0, sizeof(*out));
}

int ml__fastwalk_learn(ml__fastwalk *w, ml__codemap *m, ml_client *c, const ml__rawframe *raw,
                       size_t n)
{
    (void)w, (void)m, (void)c, (void)raw, (void)n;
    return -ENOTSUP;
}

int ml__fastwalk_pass(ml__fastwalk *w, PyInterpreterState *interp, PyThreadState *skip,
                      ml_client *c, ml__fast_sample **out, size_t *cap, size_t *n, uint32_t *ids,
                      ml__cost_ring *costs)
{
    (void)w, (void)interp, (void)skip, (void)c, (void)out, (void)cap, (void)n, (void)ids,
        (void)costs;
    return -ENOTSUP;
}

#endif
