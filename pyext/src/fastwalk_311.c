/*
 * The GIL-free frame walk for CPython 3.11: reads every thread's
 * _PyInterpreterFrame chain while the threads keep running.
 *
 * Why it is safe:
 *  - the list of thread states is read under the runtime's HEAD_LOCK
 *    (_PyRuntime.interpreters.mutex), which a thread state is unlinked under
 *    before it is freed: a listed PyThreadState is valid memory;
 *  - every other byte (the _PyCFrame on the thread's C stack, its datastack
 *    chunk, generator frames on the heap) can be freed or unmapped at any
 *    moment, so it is never dereferenced: it is copied with
 *    process_vm_readv() on our own pid, which fails with EFAULT instead of
 *    faulting. The used part of the current datastack chunk is copied in one
 *    call; frames outside it cost one call each;
 *  - what was copied is a racy snapshot, so it is validated: a code object
 *    is accepted only when its address is in the table of code objects the
 *    GIL path has learnt (the code map holds a strong reference to each, so
 *    such an address is a live code object), and its instruction offset must
 *    lie inside that code. Anything else makes the pass fall back to the GIL
 *    path, which also teaches the table the new code objects.
 * Line numbers of a known code object come from its line table, which is
 * immutable and kept alive by the code map's reference.
 *
 * Only the sampler thread calls into this file (ml__fastwalk_learn with the
 * GIL, the rest without); its tables are its own.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(ML_PYEXT_FRAMES_API)

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#undef Py_BUILD_CORE

/* Copy at most this much of a datastack chunk (its leaf end): deeper frames
 * are read one by one. */
#define CHUNK_COPY_MAX (64 * 1024)
/* Longest frame chain followed: a torn snapshot may contain a cycle. */
#define CHAIN_MAX 4096
/* The part of a frame read: everything before localsplus. */
#define FRAME_HEAD offsetof(_PyInterpreterFrame, localsplus)

struct ml__fastwalk {
    pid_t pid;
    ml__known_code *codes; /* open addressing by code address, cap a power of 2 */
    size_t ccap, clen;
    ml__known_frame *frames; /* open addressing by (code, offset) */
    size_t fcap, flen;
    struct stack_entry {
        uint64_t hash; /* of the frame ids and the cut count; 0: empty */
        uint32_t id;
    } * stacks; /* a stack seen before costs one lookup, not an interning */
    size_t scap, slen;
    /* Threads learnt under the GIL, by the interpreter's unique thread-state
     * id (never reused, unlike the address): where their frames may be read
     * with plain loads (see "Reading without a system call" below). */
    struct thread_info {
        uint64_t uid;
        uintptr_t ts;
        uintptr_t root;               /* root datastack chunk: freed only with the state */
        uintptr_t stack_lo, stack_hi; /* the thread's C stack (0, 0: unknown) */
        uint32_t gen;
    } * threads;
    size_t tlen, tcap;
    uint32_t tgen;
    /* Root-chunk copies of every thread of a pass, taken under HEAD_LOCK. */
    _Alignas(16) unsigned char chunk[CHUNK_COPY_MAX];
    /* The system-call path's copy (threads not learnt yet). */
    _Alignas(16) unsigned char slow[CHUNK_COPY_MAX];
};

static bool safe_copy(pid_t pid, void *dst, uintptr_t addr, size_t len)
{
    struct iovec local = {dst, len}, remote = {(void *)addr, len};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len;
}

int ml__fastwalk_new(ml__fastwalk **out)
{
    ml__fastwalk *w = calloc(1, sizeof(*w));
    uint64_t probe = 0x6d6963726f6c6f67ull, copy = 0;
    if (w == NULL)
        return -ENOMEM;
    w->pid = getpid();
    /* Seccomp profiles (some containers) forbid process_vm_readv: then the
     * sampler keeps the GIL path. */
    if (!safe_copy(w->pid, &copy, (uintptr_t)&probe, sizeof(probe)) || copy != probe) {
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
    free(w->threads);
    free(w);
}

/* Stack id of ids[0..n) with cut frames, through the hash cache; 0 on
 * failure. Two different stacks would need equal 64-bit hashes to mix. */
static uint32_t stack_id(ml__fastwalk *w, ml_client *c, const uint32_t *ids, size_t n, uint32_t cut)
{
    uint64_t h = 0xcbf29ce484222325ull ^ cut;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ids[i]) * 0x100000001b3ull;
    h = h ? h : 1;
    if ((w->slen + 1) * 2 > w->scap) {
        size_t cap = w->scap ? w->scap * 2 : 1024;
        struct stack_entry *v = calloc(cap, sizeof(*v));
        if (v == NULL)
            return ml_client_stack(c, ids, n, cut);
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
    for (; w->stacks[j].hash != 0; j = (j + 1) & (w->scap - 1))
        if (w->stacks[j].hash == h)
            return w->stacks[j].id;
    uint32_t id = ml_client_stack(c, ids, n, cut);
    if (id != 0) {
        w->stacks[j] = (struct stack_entry){h, id};
        w->slen++;
    }
    return id;
}

static size_t hash_ptr(uintptr_t p, int key)
{
    uint64_t h = ((uint64_t)(p >> 4) ^ ((uint64_t)(uint32_t)key << 32)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17);
}

static ml__known_code *code_find(ml__fastwalk *w, uintptr_t code)
{
    if (w->ccap == 0)
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
            .name = ci->name,
            .file = ci->file,
            .first_line = ci->first_line,
            .flags = ci->flags,
            .first_traceable = code->_co_firsttraceable,
            .nbytes = (int32_t)_PyCode_NBYTES(code),
            .hidden = ci->hidden,
        };
        w->clen++;
    }
    return 0;
}

/*
 * Reading without a system call. process_vm_readv costs about 2 us on a
 * virtual machine whatever the size, more than a whole walk should. So a
 * thread learnt under the GIL is read with plain loads, under HEAD_LOCK,
 * from memory that cannot be unmapped meanwhile:
 *  - its PyThreadState: listed, so not deleted while HEAD_LOCK is held
 *    (deletion unlinks under HEAD_LOCK before freeing anything);
 *  - its cframe, either &ts->root_cframe or a _PyCFrame on its C stack: the
 *    thread is alive while listed, and every value cframe ever holds is an
 *    address the thread itself used, so mapped (a stack never shrinks);
 *  - its root datastack chunk: "push_chunk ensures that the root chunk is
 *    never popped" (CPython 3.11, pystate.c); it is freed with the state.
 * Values read may be torn (the thread runs meanwhile); the walk validates
 * every one before use as it always did. Frames outside the root chunk
 * (deep stacks, generators) are still read with process_vm_readv.
 *
 * These reads race with the running thread by design, so the thread
 * sanitizer (make test-tsan) is told to ignore them: it would report every
 * copy against the interpreter's own writes to its frames.
 */
#if defined(__SANITIZE_THREAD__)
#define ML_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ML_TSAN 1
#endif
#endif
#ifdef ML_TSAN
/* libtsan's dynamic annotations: reads of the calling thread between Begin
 * and End are not recorded. */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define RACY_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define RACY_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define RACY_READS_BEGIN() ((void)0)
#define RACY_READS_END() ((void)0)
#endif

static struct thread_info *thread_find(ml__fastwalk *w, uint64_t uid, uintptr_t ts)
{
    for (size_t i = 0; i < w->tlen; i++)
        if (w->threads[i].uid == uid && w->threads[i].ts == ts)
            return &w->threads[i];
    return NULL;
}

int ml__fastwalk_learn_thread(ml__fastwalk *w, PyThreadState *ts)
{
    struct thread_info *ti = thread_find(w, ts->id, (uintptr_t)ts);
    if (ti != NULL) {
        ti->gen = w->tgen;
        return 0;
    }
    if (w->tlen == w->tcap) {
        size_t cap = w->tcap ? w->tcap * 2 : 16;
        struct thread_info *v = realloc(w->threads, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        w->threads = v;
        w->tcap = cap;
    }
    _PyStackChunk *root = ts->datastack_chunk; /* GIL held: the chain is stable */
    while (root != NULL && root->previous != NULL)
        root = root->previous;
    ti = &w->threads[w->tlen++];
    *ti = (struct thread_info){
        .uid = ts->id, .ts = (uintptr_t)ts, .root = (uintptr_t)root, .gen = w->tgen};
    pthread_attr_t attr;
    void *addr;
    size_t size;
    /* The thread is alive: its state is listed and we hold the GIL it needs
     * to delete that state. */
    if (pthread_getattr_np((pthread_t)ts->thread_id, &attr) == 0) {
        if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
            ti->stack_lo = (uintptr_t)addr;
            ti->stack_hi = (uintptr_t)addr + size;
        }
        pthread_attr_destroy(&attr);
    }
    return 0;
}

void ml__fastwalk_threads_prune(ml__fastwalk *w)
{
    size_t keep = 0;
    for (size_t i = 0; i < w->tlen; i++)
        if (w->threads[i].gen == w->tgen)
            w->threads[keep++] = w->threads[i];
    w->tlen = keep;
    w->tgen++;
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
    /* The line table is immutable and the code object alive (see top). */
    int line = PyCode_Addr2Line((PyCodeObject *)kc->code, key);
    *id = ml_client_frame(c, kc->name, kc->file, line > 0 ? (uint32_t)line : 0, kc->first_line,
                          kc->flags);
    if (!found)
        w->flen++;
    return *id;
}

/* What was read of one thread state under HEAD_LOCK. */
typedef struct tsnap {
    unsigned long ident, native_id;
    uintptr_t cframe, chunk, top;
    /* Learnt thread: its leaf frame, and [lo, hi) of its root chunk copied
     * to w->chunk + off. */
    bool has_cur;
    uintptr_t cur, lo, hi;
    size_t off;
    int64_t copy_ns; /* time the copy took, part of this thread's cost */
} tsnap;

/* Walks one thread. Returns 0 with *stack set (0: no Python frame),
 * ML__FAST_NEED_GIL when the snapshot holds an unknown code object or does
 * not validate, -ENOMEM. */
static int walk_one(ml__fastwalk *w, ml_client *c, const tsnap *t, uint32_t *ids, uint32_t *stack)
{
    uintptr_t cur = 0, lo = 0, hi = 0;
    const unsigned char *copy = w->slow;

    if (t->has_cur) {
        cur = t->cur;
        lo = t->lo;
        hi = t->hi;
        copy = w->chunk + t->off;
    } else {
        struct iovec local[2], remote[2];
        size_t niov = 1;
        local[0] = (struct iovec){&cur, sizeof(cur)};
        remote[0] =
            (struct iovec){(void *)(t->cframe + offsetof(_PyCFrame, current_frame)), sizeof(cur)};
        if (t->top > t->chunk && t->top - t->chunk < (64u << 20)) {
            lo = t->top - t->chunk > CHUNK_COPY_MAX ? t->top - CHUNK_COPY_MAX : t->chunk;
            hi = t->top;
            local[1] = (struct iovec){w->slow, hi - lo};
            remote[1] = (struct iovec){(void *)lo, hi - lo};
            niov = 2;
        }
        ssize_t got = process_vm_readv(w->pid, local, niov, remote, niov, 0);
        if (got < (ssize_t)sizeof(cur))
            return ML__FAST_NEED_GIL;
        if ((size_t)got < sizeof(cur) + (niov == 2 ? hi - lo : 0))
            hi = lo; /* the chunk was not copied: read every frame alone */
    }

    /* ids is filled from its end (the leaf comes first), so ids[pos..) is
     * root first as a stack is. */
    size_t pos = ML__MAX_DEPTH, cut = 0;
    unsigned char buf[FRAME_HEAD];
    for (size_t steps = 0; cur != 0; steps++) {
        const _PyInterpreterFrame *f;
        if (steps == CHAIN_MAX || (cur & (sizeof(void *) - 1)) != 0)
            return ML__FAST_NEED_GIL;
        if (cur >= lo && cur + FRAME_HEAD <= hi) {
            f = (const _PyInterpreterFrame *)(copy + (cur - lo));
        } else {
            if (!safe_copy(w->pid, buf, cur, FRAME_HEAD))
                return ML__FAST_NEED_GIL;
            f = (const _PyInterpreterFrame *)buf;
        }
        const ml__known_code *kc = code_find(w, (uintptr_t)f->f_code);
        if (kc == NULL)
            return ML__FAST_NEED_GIL;
        /* Offsets computed from the code address, never by reading it. */
        intptr_t units = (intptr_t)((uintptr_t)f->prev_instr -
                                    (uintptr_t)_PyCode_CODE((PyCodeObject *)kc->code)) /
                         (intptr_t)sizeof(_Py_CODEUNIT);
        if (units < -1 || units * (intptr_t)sizeof(_Py_CODEUNIT) >= kc->nbytes)
            return ML__FAST_NEED_GIL;
        cur = (uintptr_t)f->previous;
        /* Incomplete frames (before their first RESUME) are skipped, as
         * _PyFrame_IsIncomplete() does. */
        if (f->owner != FRAME_OWNED_BY_GENERATOR && units < kc->first_traceable)
            continue;
        if (kc->hidden)
            continue;
        if (pos == 0) { /* deeper than the cap: counted, nearest the root */
            cut++;
            continue;
        }
        int key = units < 0 ? 0 : (int)(units * (intptr_t)sizeof(_Py_CODEUNIT));
        uint32_t id = frame_id(w, c, kc, key);
        if (id == 0)
            return -ENOMEM;
        ids[--pos] = id;
    }
    size_t kept = ML__MAX_DEPTH - pos;
    if (kept == 0) {
        *stack = 0;
        return 0;
    }
    *stack = stack_id(w, c, ids + pos, kept, (uint32_t)cut);
    return *stack ? 0 : -ENOMEM;
}

/* For a learnt thread whose frames are in its root chunk: its leaf frame
 * and a copy of the chunk's used part, with plain loads (see "Reading
 * without a system call"). HEAD_LOCK held. */
static void snap_copy(ml__fastwalk *w, PyThreadState *ts, tsnap *t, size_t *used)
{
    int64_t t0 = ml__mono_ns();
    const struct thread_info *ti = thread_find(w, ts->id, (uintptr_t)ts);
    if (ti == NULL || ti->root == 0 || t->chunk != ti->root || t->cframe == 0)
        return;
    bool own = t->cframe == (uintptr_t)&ts->root_cframe;
    if (!own && (t->cframe < ti->stack_lo || t->cframe + sizeof(_PyCFrame) > ti->stack_hi ||
                 (t->cframe & (sizeof(void *) - 1)) != 0))
        return;
    uintptr_t lo = ti->root + offsetof(_PyStackChunk, data), hi = t->top;
    size_t size = ((const _PyStackChunk *)ti->root)->size; /* set once at allocation */
    if (hi < lo || hi > ti->root + size || hi - lo > sizeof(w->chunk) - *used)
        return;
    RACY_READS_BEGIN();
    t->cur = (uintptr_t)((const volatile _PyCFrame *)t->cframe)->current_frame;
    memcpy(w->chunk + *used, (const void *)lo, hi - lo);
    RACY_READS_END();
    t->lo = lo;
    t->hi = hi;
    t->off = *used;
    *used += (hi - lo + 15) & ~(size_t)15;
    t->has_cur = true;
    t->copy_ns = ml__mono_ns() - t0;
}

int ml__fastwalk_pass(ml__fastwalk *w, PyInterpreterState *interp, PyThreadState *skip,
                      ml_client *c, ml__fast_sample **out, size_t *cap, size_t *n, uint32_t *ids,
                      ml__cost_ring *costs)
{
    tsnap snaps[64];
    size_t ns = 0, used = 0;
    bool more = false;

    /* HEAD_LOCK: the list and every listed PyThreadState stay valid. Only
     * plain loads happen while it is held. */
    PyThread_acquire_lock(_PyRuntime.interpreters.mutex, WAIT_LOCK);
    for (PyThreadState *ts = interp->threads.head; ts != NULL; ts = ts->next) {
        if (ts == skip)
            continue;
        if (ns == sizeof(snaps) / sizeof(snaps[0])) {
            more = true;
            break;
        }
        tsnap *t = &snaps[ns++];
        RACY_READS_BEGIN();
        *t = (tsnap){
            .ident = ts->thread_id,
            .native_id = ts->native_thread_id,
            .cframe = (uintptr_t)ts->cframe,
            .chunk = (uintptr_t)ts->datastack_chunk,
            .top = (uintptr_t)ts->datastack_top,
        };
        RACY_READS_END();
        snap_copy(w, ts, t, &used);
    }
    PyThread_release_lock(_PyRuntime.interpreters.mutex);
    if (more)
        return ML__FAST_NEED_GIL; /* rare: many threads; the GIL path has no cap */

    if (ns > *cap) {
        ml__fast_sample *v = realloc(*out, ns * 2 * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        *out = v;
        *cap = ns * 2;
    }
    for (size_t i = 0; i < ns; i++) {
        int64_t t0 = ml__mono_ns();
        ml__fast_sample *s = &(*out)[i];
        s->ident = snaps[i].ident;
        s->native_id = snaps[i].native_id;
        s->deferred = false;
        int rv = snaps[i].cframe ? walk_one(w, c, &snaps[i], ids, &s->stack) : (s->stack = 0, 0);
        if (rv == ML__FAST_NEED_GIL) { /* only this thread waits for its code to be learnt */
            s->deferred = true;
            s->stack = 0;
        } else if (rv != 0) {
            return rv;
        }
        ml__cost_ring_add(costs, ml__mono_ns() - t0 + snaps[i].copy_ns);
    }
    *n = ns;
    return 0;
}

void ml__fastwalk_wake_main(PyInterpreterState *interp)
{
    /* Py_AddPendingCall from a thread other than the main one does not set
     * the eval breaker in 3.11: COMPUTE_EVAL_BREAKER asks whether the
     * *calling* thread can handle pending calls, so the call would wait for
     * the next GIL switch request (5 ms or more, never in a program with one
     * thread). (_PyEval_SignalReceived forces it on Windows only.) Setting
     * the flag makes the main thread look at its pending calls at its next
     * check; handling them recomputes the flag. Called right after a call
     * was added, so the flag is not left set with nothing to handle (if the
     * call already ran, the next recomputation clears it). No GIL. */
    _Py_atomic_store_relaxed(&interp->ceval.eval_breaker, 1);
}

#else /* other versions: the GIL path only */

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

int ml__fastwalk_learn(ml__fastwalk *w, ml__codemap *m, ml_client *c, const ml__rawframe *raw,
                       size_t n)
{
    (void)w, (void)m, (void)c, (void)raw, (void)n;
    return -ENOTSUP;
}

int ml__fastwalk_learn_thread(ml__fastwalk *w, PyThreadState *ts)
{
    (void)w, (void)ts;
    return -ENOTSUP;
}

void ml__fastwalk_threads_prune(ml__fastwalk *w)
{
    (void)w;
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
