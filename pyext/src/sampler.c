/*
 * The sampler: a native thread (not a Python thread) that wakes every
 * sample period, samples every thread of the interpreter, and produces
 * status ticks on its own schedule.
 *
 * Two ways to sample:
 *  - GIL-free (fastwalk.c): the steady state. Frames are read with
 *    guarded reads and matched against code objects already interned; a
 *    stack is recorded only when its walk is proven consistent, else the
 *    thread is left to the GIL path; the profiled threads never wait for
 *    the sampler;
 *  - the GIL path: the first passes, a pass that meets an unknown code
 *    object or a new thread (names need Python), and every pass on
 *    interpreters without a GIL-free layer or with mode ML__SAMPLER_GIL.
 *    It teaches the GIL-free walker what it interned.
 * The interpreter part of a status tick (modules, heap blocks) is measured
 * by a pending call run by the main thread between two bytecodes, so it
 * needs no GIL hand-over either; only when the main thread has not run it
 * for a second does the sampler take the GIL to measure itself.
 *
 * Invariants:
 *  - the sampler never holds its mutex while waiting for the GIL, and the
 *    stopper releases the GIL before joining, so neither can deadlock;
 *  - a pass walks frames with no Python code running (phase 1), then does
 *    the rare Python look-ups (thread names) once no frame pointer is kept
 *    (phase 2);
 *  - the steady state allocates nothing: scratch arrays live here and grow
 *    only when a new thread appears.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Threads a GIL-free pass can leave to the pending call. */
#define ML__DEFERRED_MAX 64

typedef struct pending {
    unsigned long ident, native_id;
    uint32_t stack;
} pending;

struct ml__sampler {
    ml__run *run;
    ml__periods periods;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* on CLOCK_MONOTONIC */
    bool stop;           /* guarded by lock */
    PyThreadState *own;  /* the sampler's thread state, made in its thread */
    ml__threads threads;
    uint32_t gen;
    ml__status_state status;
    ml_status last_status; /* the last tick sent (status_repeats) */
    bool has_last_status;
    pending *pending;
    size_t pending_cap;
    ml__fastwalk *fast;        /* NULL: GIL path only */
    pthread_mutex_t walk_lock; /* held through a GIL-free pass; taken around fork() */
    ml__fast_sample *fs;
    size_t fs_cap;
    ml__cost_ring costs;
    int64_t started_ns;
    atomic_uint_fast64_t fast_passes, gil_passes, fallbacks, walks, deferred, learnt_pending,
        deferred_by_gil, gil_status, deferred_lost;
    /* The walker's counts, published after each pass (fastwalk.c). */
    atomic_uint_fast64_t walk_retries, walk_torn, walk_faults, unguarded_passes;
    /* Threads of GIL-free passes that met unknown code and still wait for
     * a sample (under walk_lock): the pending call learn_cb takes them. */
    struct {
        unsigned long ident, native_id;
    } waiting[ML__DEFERRED_MAX];
    size_t nwaiting;
    /* How often learn_cb came in time (hits) or not (misses), halved now and
     * then: while it mostly misses (the main thread blocked in C, e.g. in
     * join() while other threads run new code), a pass with a deferred
     * thread goes straight to the GIL path instead of waiting in vain. */
    uint32_t learn_hits, learn_misses;
    pthread_cond_t learnt; /* signalled by learn_cb (with walk_lock) */
    atomic_int_fast64_t cpu_ns, gil_held_ns, gil_wait_ns;
    ml__rawframe raw[ML__MAX_DEPTH];
    uint32_t ids[ML__MAX_DEPTH];
};

/* The latest reading of the interpreter part of status ticks (modules,
 * heap blocks): by the main thread in a pending call (see py_status_cb), or
 * by the sampler when it holds the GIL. Process-wide: a pending call may
 * run after its sampler is gone, so it touches only these. */
static atomic_uint_fast32_t py_modules;
static atomic_uint_fast64_t py_objects;
static atomic_int_fast64_t py_measured_us; /* 0: never */
static atomic_bool py_scheduled;

/* How old the reading a tick uses may be. While the main thread serves no
 * pending call (it waits in join(), say), the sampler takes the GIL for a
 * new one once this old: taking it at every tick (10 a second) made the
 * program's threads hand it over that often, 2-3 % of an 8-thread program. */
#define PY_STATUS_MAX_AGE_US 1000000

/* Measures the interpreter part into st and publishes it. GIL held. */
static void py_status_measure(ml_status *st)
{
    ml__status_measure_python(st);
    atomic_store(&py_modules, st->modules);
    atomic_store(&py_objects, st->objects);
    atomic_store(&py_measured_us, ml__mono_us());
}

static int py_status_cb(void *unused)
{
    ml_status st;
    (void)unused;
    memset(&st, 0, sizeof(st));
    py_status_measure(&st);
    PyErr_Clear();
    atomic_store(&py_scheduled, false);
    return 0;
}

/* Asks the main thread for a new reading (one pending call at a time). */
static void py_status_schedule(void)
{
    if (!atomic_exchange(&py_scheduled, true)) {
        if (Py_AddPendingCall(py_status_cb, NULL) == 0)
            ml__fastwalk_wake_main(PyInterpreterState_Main());
        else
            atomic_store(&py_scheduled, false);
    }
}

/* Fills the interpreter part of st from the latest reading; false when it
 * is too old (or missing). No GIL. */
static bool py_status_recent(ml_status *st, int64_t now_us)
{
    int64_t at = atomic_load(&py_measured_us);
    if (at == 0 || now_us - at > PY_STATUS_MAX_AGE_US)
        return false;
    st->modules = (uint32_t)atomic_load(&py_modules);
    st->objects = atomic_load(&py_objects);
    return true;
}

/* Phase 1: one stack per thread state, no Python code runs. Returns how
 * many pending entries were filled. */
static size_t walk_threads(ml__sampler *s)
{
    ml__run *r = s->run;
    size_t np = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(r->interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        if (ts == s->own)
            continue;
        if (np == s->pending_cap) {
            size_t cap = s->pending_cap ? s->pending_cap * 2 : 16;
            pending *p = realloc(s->pending, cap * sizeof(*p));
            if (p == NULL) {
                atomic_fetch_add(&r->errors, 1);
                break;
            }
            s->pending = p;
            s->pending_cap = cap;
        }
        unsigned long ident, native_id;
        ml__tstate_ids(ts, &ident, &native_id);
        if (ident == 0)
            continue; /* made, not started yet (3.12+) */
        pending *p = &s->pending[np++];
        size_t total, n = ml__frames_collect(ts, s->raw, ML__MAX_DEPTH, &total);
        p->ident = ident;
        p->native_id = native_id;
        p->stack =
            ml__stack_intern(&r->codemap, r->client, s->raw, n, total, s->ids, 0, &r->errors);
        if (s->fast != NULL && ml__fastwalk_learn(s->fast, &r->codemap, r->client, s->raw, n) != 0)
            atomic_fetch_add(&r->errors, 1);
    }
    return np;
}

/* Phase 2: thread ids (defining new threads), CPU, the samples themselves,
 * and the end of threads that are gone. GIL held. */
static bool is_waiting(const ml__sampler *s, unsigned long ident, unsigned long native_id);

/* only_waiting: the GIL pass completes a GIL-free pass of the same period
 * whose deferred threads learn_cb did not take: only those are sampled
 * (the others were, by the GIL-free pass). */
static void record_threads(ml__sampler *s, size_t np, int64_t t, bool only_waiting)
{
    ml_client *c = s->run->client;
    s->gen++;
    for (size_t i = 0; i < np; i++) {
        pending *p = &s->pending[i];
        ml__thread_slot *slot = ml__threads_find(&s->threads, p->ident, p->native_id);
        if (slot == NULL &&
            (slot = ml__threads_add(&s->threads, p->ident, p->native_id, 0)) == NULL) {
            atomic_fetch_add(&s->run->errors, 1);
            continue;
        }
        if (slot->id == 0) {
            char name[128];
            bool named = ml__thread_name(p->ident, name, sizeof(name));
            slot->seen = s->gen; /* listed: not reaped while it waits for its name */
            /* The interpreter lists a new thread a moment before threading
             * registers its name: wait a few passes for the name rather
             * than record the thread nameless for good. */
            if (!named && slot->name_waits++ < ML__THREAD_NAME_WAITS)
                continue;
            if ((slot->id = ml_client_thread(c, p->ident, p->native_id, named ? name : NULL)) ==
                0) {
                atomic_fetch_add(&s->run->errors, 1);
                continue;
            }
        }
        slot->seen = s->gen;
        if (only_waiting && !is_waiting(s, p->ident, p->native_id))
            continue;
        ml_client_sample(c, slot->id, t, p->stack, ml__threads_cpu_us(slot));
        if (only_waiting)
            atomic_fetch_add(&s->deferred_by_gil, 1);
    }
    ml__threads_reap(&s->threads, c, s->gen, t);
}

/* The sampler whose deferred threads learn_cb samples; NULL when none.
 * Set and cleared with the GIL held, read by learn_cb with the GIL held, so
 * a callback never sees a sampler that is being freed. */
static ml__sampler *learn_target;
static atomic_bool learn_scheduled;

/* Counts a learn_cb that came in time (hit) or not. walk_lock held. */
static void note_learn(ml__sampler *s, bool hit)
{
    if (hit)
        s->learn_hits++;
    else
        s->learn_misses++;
    if (s->learn_hits + s->learn_misses >= 32) { /* the recent past weighs most */
        s->learn_hits /= 2;
        s->learn_misses /= 2;
    }
}

static bool is_waiting(const ml__sampler *s, unsigned long ident, unsigned long native_id)
{
    for (size_t i = 0; i < s->nwaiting; i++)
        if (s->waiting[i].ident == ident && s->waiting[i].native_id == native_id)
            return true;
    return false;
}

/* Pending call, run by the main thread between two bytecodes (GIL held, no
 * hand-over to wait for): learns the code of every thread's stack and
 * records the samples the GIL-free pass deferred, so one new code object
 * costs neither the whole pass nor a GIL hand-over. */
static int learn_cb(void *unused)
{
    (void)unused;
    atomic_store(&learn_scheduled, false);
    ml__sampler *s = learn_target;
    /* trylock: a fork (before_fork) may hold walk_lock while it waits for
     * the GIL we hold; the sampler's GIL path then serves. */
    if (s == NULL || pthread_mutex_trylock(&s->walk_lock) != 0)
        return 0;
    if (s->nwaiting > 0) {
        ml_client *c = s->run->client;
        int64_t t = ml_client_now(c);
        size_t np = walk_threads(s);
        for (size_t i = 0; i < np; i++) {
            pending *p = &s->pending[i];
            ml__thread_slot *slot = ml__threads_find(&s->threads, p->ident, p->native_id);
            if (slot == NULL || slot->id == 0 || !is_waiting(s, p->ident, p->native_id))
                continue;
            ml_client_sample(c, slot->id, t, p->stack, ml__threads_cpu_us(slot));
            atomic_fetch_add(&s->learnt_pending, 1);
        }
        s->nwaiting = 0;
        pthread_cond_signal(&s->learnt);
    }
    PyErr_Clear();
    pthread_mutex_unlock(&s->walk_lock);
    return 0;
}

void ml__sampler_detach(ml__sampler *s)
{
    if (learn_target == s)
        learn_target = NULL;
}

/* The last pass: ends the threads that are gone without taking samples, so
 * a thread joined just before stop() is marked ended. GIL held. */
static void reap_threads(ml__sampler *s, int64_t t)
{
    s->gen++;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(s->run->interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        unsigned long ident, native_id;
        ml__tstate_ids(ts, &ident, &native_id);
        ml__thread_slot *slot = ml__threads_find(&s->threads, ident, native_id);
        if (slot != NULL)
            slot->seen = s->gen;
    }
    ml__threads_reap(&s->threads, s->run->client, s->gen, t);
}

enum { DO_SAMPLE = 1, DO_STATUS = 2, DO_MEMORY = 4, DO_REAP = 8 };

/* Records a GIL-free pass if every thread in it is known (a new thread's
 * name needs Python). Returns false, recording nothing, otherwise. A
 * deferred thread is recorded later by learn_cb. walk_lock held. */
static bool record_fast(ml__sampler *s, size_t n, int64_t t)
{
    ml_client *c = s->run->client;
    bool any_deferred = false;
    for (size_t i = 0; i < n; i++) {
        ml__thread_slot *slot = ml__threads_find(&s->threads, s->fs[i].ident, s->fs[i].native_id);
        if (slot == NULL || slot->id == 0)
            return false;
        any_deferred |= s->fs[i].deferred;
    }
    if (any_deferred && s->learn_misses > 4 * s->learn_hits + 4)
        return false;
    s->gen++;
    for (size_t i = 0; i < n; i++) {
        ml__fast_sample *f = &s->fs[i];
        ml__thread_slot *slot = ml__threads_find(&s->threads, f->ident, f->native_id);
        slot->seen = s->gen;
        if (!f->deferred) {
            ml_client_sample(c, slot->id, t, f->stack, ml__threads_cpu_us(slot));
            continue;
        }
        atomic_fetch_add(&s->deferred, 1);
        if (is_waiting(s, f->ident, f->native_id))
            continue;
        if (s->nwaiting < ML__DEFERRED_MAX) {
            s->waiting[s->nwaiting].ident = f->ident;
            s->waiting[s->nwaiting].native_id = f->native_id;
            s->nwaiting++;
        } else {
            atomic_fetch_add(&s->deferred_lost, 1); /* this period's sample of it is lost */
        }
    }
    ml__threads_reap(&s->threads, c, s->gen, t);
    if (s->nwaiting > 0 && !atomic_exchange(&learn_scheduled, true)) {
        if (Py_AddPendingCall(learn_cb, NULL) == 0)
            ml__fastwalk_wake_main(s->run->interp);
        else
            atomic_store(&learn_scheduled, false);
    }
    return true;
}

/* A GIL-free sampling pass. Returns PASS_DONE when every thread was
 * sampled, PASS_WAITING when deferred threads (unknown code) are left for
 * the GIL path to sample, PASS_GIL when the GIL path must do the whole pass.
 * A deferred thread is first left to learn_cb, which the main thread runs
 * between two bytecodes: the sampler waits for it at most LEARN_WAIT_NS or
 * half a period (its own time, not the program's: it holds no GIL and
 * requests none meanwhile). No sample is lost either way. */
enum { PASS_DONE, PASS_WAITING, PASS_GIL };
#define LEARN_WAIT_NS 5000000

static int pass_fast(ml__sampler *s, int64_t t)
{
    size_t n = 0;
    int result = PASS_GIL;
    pthread_mutex_lock(&s->walk_lock);
    int rv = ml__fastwalk_pass(s->fast, s->run->interp, s->own, s->run->client, &s->fs, &s->fs_cap,
                               &n, s->ids, &s->costs);
    if (rv == 0 && record_fast(s, n, t)) {
        result = PASS_DONE;
        if (s->nwaiting > 0) {
            int64_t wait = (int64_t)(s->periods.sample * 1e9) / 2;
            wait = wait < LEARN_WAIT_NS ? wait : LEARN_WAIT_NS;
            int64_t deadline = ml__mono_ns() + wait;
            struct timespec ts = {.tv_sec = deadline / 1000000000,
                                  .tv_nsec = deadline % 1000000000};
            /* Releases walk_lock, which learn_cb takes. */
            while (s->nwaiting > 0 &&
                   pthread_cond_timedwait(&s->learnt, &s->walk_lock, &ts) != ETIMEDOUT)
                ;
            note_learn(s, s->nwaiting == 0);
            if (s->nwaiting > 0)
                result = PASS_WAITING; /* the GIL path samples them, then clears the list */
        }
    }
    ml__fastwalk_stats ws;
    ml__fastwalk_stats_get(s->fast, &ws);
    pthread_mutex_unlock(&s->walk_lock);
    if (rv < 0)
        atomic_fetch_add(&s->run->errors, 1);
    atomic_store(&s->walk_retries, ws.retries);
    atomic_store(&s->walk_torn, ws.torn);
    atomic_store(&s->walk_faults, ws.faults);
    atomic_store(&s->unguarded_passes, ws.unguarded_passes);
    atomic_store(&s->walks, ml__cost_ring_count(&s->costs));
    if (result == PASS_DONE)
        atomic_fetch_add(&s->fast_passes, 1);
    else
        atomic_fetch_add(&s->fallbacks, 1);
    return result;
}

/* True when st says nothing new: every figure equals the last tick sent.
 * A tick with memory figures is always sent, so they come every memory
 * period whatever the rest does. */
static bool status_repeats(const ml__sampler *s, const ml_status *st)
{
    const ml_status *l = &s->last_status;
    return s->has_last_status && st->memory_total == 0 && st->cpu_percent == l->cpu_percent &&
           st->system_cpu_percent == l->system_cpu_percent && st->rss == l->rss &&
           st->modules == l->modules && st->objects == l->objects;
}

/* One wake-up: the OS part of a status tick, a GIL-free sampling pass when
 * possible, and the GIL only for what is left. */
static void pass(ml__sampler *s, int what)
{
    ml_status st;
    int64_t cpu0 = ml__thread_cpu_ns();
    memset(&st, 0, sizeof(st));
    if (what & DO_STATUS)
        ml__status_measure_os(&s->status, ml__mono_us(), what & DO_MEMORY, &st);

    int64_t t = ml_client_now(s->run->client);
    bool sampled = false, py_status = false, only_waiting = false;
    if ((what & DO_SAMPLE) && s->fast != NULL) {
        int r = pass_fast(s, t);
        sampled = r == PASS_DONE;
        only_waiting = r == PASS_WAITING;
    }
    if ((what & DO_STATUS) && !(what & DO_REAP)) {
        if (s->fast != NULL)
            py_status_schedule();
        py_status = py_status_recent(&st, ml__mono_us());
    }

    bool gil_sample = (what & DO_SAMPLE) && !sampled;
    if (gil_sample || (what & DO_REAP) || ((what & DO_STATUS) && !py_status)) {
        int64_t w0 = ml__mono_ns();
        PyEval_RestoreThread(s->own);
        int64_t h0 = ml__mono_ns();
        if (gil_sample) {
            record_threads(s, walk_threads(s), t, only_waiting);
            /* No walk_lock here: a forking thread may hold it while it
             * waits for the GIL we hold. nwaiting is written by this thread
             * and by learn_cb, which needs the GIL. */
            s->nwaiting = 0;
        } else if (what & DO_REAP)
            reap_threads(s, t);
        if (what & DO_STATUS) { /* holding the GIL anyway: a new reading */
            py_status_measure(&st);
            if (!gil_sample && !(what & DO_REAP))
                atomic_fetch_add(&s->gil_status, 1);
        }
        if (PyErr_Occurred()) { /* never leave an error behind: count it */
            PyErr_Clear();
            atomic_fetch_add(&s->run->errors, 1);
        }
        PyEval_SaveThread();
        int64_t h1 = ml__mono_ns();
        atomic_fetch_add(&s->gil_wait_ns, h0 - w0);
        atomic_fetch_add(&s->gil_held_ns, h1 - h0);
        if (gil_sample)
            atomic_fetch_add(&s->gil_passes, 1);
    }

    if ((what & DO_STATUS) && !status_repeats(s, &st)) {
        st.time = t;
        ml_client_status(s->run->client, &st);
        s->last_status = st;
        s->has_last_status = true;
    }
    if (what & DO_SAMPLE)
        atomic_fetch_add(&s->run->passes, 1);
    atomic_fetch_add(&s->cpu_ns, ml__thread_cpu_ns() - cpu0);
}

static int64_t period_us(double seconds)
{
    return seconds > 0 ? (int64_t)(seconds * 1e6) : 1000;
}

/* Waits until deadline (monotonic us) or stop; returns true on stop. */
static bool wait_until(ml__sampler *s, int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000000, .tv_nsec = (deadline % 1000000) * 1000};
    bool stop;
    pthread_mutex_lock(&s->lock);
    while (!s->stop && ml__mono_us() < deadline)
        if (pthread_cond_timedwait(&s->wake, &s->lock, &ts) == ETIMEDOUT)
            break;
    stop = s->stop;
    pthread_mutex_unlock(&s->lock);
    return stop;
}

/* A missed deadline is skipped, not caught up with a burst of passes. */
static int64_t advance(int64_t next, int64_t period, int64_t now)
{
    next += period;
    return next <= now ? now + period : next;
}

static void *sampler_main(void *arg)
{
    ml__sampler *s = arg;
    int64_t ps = period_us(s->periods.sample), pt = period_us(s->periods.status),
            pm = period_us(s->periods.memory);
    int64_t now = ml__mono_us();
    int64_t next_sample = now + ps, next_status = now + pt, next_memory = now;

    while (!wait_until(s, next_sample < next_status ? next_sample : next_status)) {
        now = ml__mono_us();
        int what = (now >= next_sample ? DO_SAMPLE : 0) | (now >= next_status ? DO_STATUS : 0);
        if ((what & DO_STATUS) && now >= next_memory)
            what |= DO_MEMORY;
        pass(s, what);
        if (what & DO_SAMPLE)
            next_sample = advance(next_sample, ps, now);
        if (what & DO_STATUS)
            next_status = advance(next_status, pt, now);
        if (what & DO_MEMORY)
            next_memory = advance(next_memory, pm, now);
    }
    /* The last pass ends threads joined just before stop(), and a last tick
     * shows how the run ended (unless one was just taken: a ratio of two
     * tiny deltas is noise). */
    bool tick = ml__mono_us() - s->status.last_wall_us >= pt / 2;
    pass(s, DO_REAP | (tick ? DO_STATUS | DO_MEMORY : 0));

    PyEval_RestoreThread(s->own);
    PyThreadState_Clear(s->own);
    PyThreadState_DeleteCurrent(); /* releases the GIL */
    return NULL;
}

/* Creates the sampler's thread state in the sampler thread, so its thread
 * id is the sampler's own, then runs the loop. */
static void *sampler_thread(void *arg)
{
    ml__sampler *s = arg;
    ml__guard_thread_init();
    s->own = PyThreadState_New(s->run->interp);
    if (s->own == NULL)
        return NULL;
    /* PyThreadState_New leaves the GIL untaken; the loop takes it per pass. */
    return sampler_main(s);
}

int ml__sampler_start(ml__run *run, const ml__periods *p, int mode, ml__sampler **out)
{
    ml__sampler *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    int rv;

    if (s == NULL)
        return -ENOMEM;
    s->run = run;
    s->periods = *p;
    s->started_ns = ml__mono_ns();
    if (mode != ML__SAMPLER_GIL && ml__fastwalk_new(&s->fast) != 0)
        s->fast = NULL; /* the GIL path serves */
    /* Without its handler the walker reads with process_vm_readv. */
    if (s->fast != NULL)
        (void)ml__guard_install();
    pthread_mutex_init(&s->walk_lock, NULL);
    ml__status_init(&s->status, ml__mono_us());
    {
        /* The interpreter part's first reading, here with the GIL (it may
         * look things up once). */
        ml_status first;
        memset(&first, 0, sizeof(first));
        ml__status_measure_python(&first);
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_cond_init(&s->learnt, &ca);
    pthread_condattr_destroy(&ca);

    rv = ml__thread_start(&s->thread, sampler_thread, s);
    if (rv != 0) {
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->learnt);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->walk_lock);
        ml__fastwalk_free(s->fast);
        free(s);
        return rv;
    }
    if (s->fast != NULL)
        learn_target = s; /* GIL held (see learn_target) */
    *out = s;
    return 0;
}

void ml__sampler_stop(ml__sampler *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    if (s->fast != NULL)
        ml__guard_uninstall(); /* the program's dispositions, as they were */

    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->learnt);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->walk_lock);
    ml__fastwalk_free(s->fast);
    ml__threads_free(&s->threads);
    free(s->pending);
    free(s->fs);
    free(s);
}

void ml__sampler_stats_get(ml__sampler *s, ml__sampler_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->fast_passes = atomic_load(&s->fast_passes);
    out->gil_passes = atomic_load(&s->gil_passes);
    out->fallbacks = atomic_load(&s->fallbacks);
    out->deferred = atomic_load(&s->deferred);
    out->learnt_pending = atomic_load(&s->learnt_pending);
    out->deferred_by_gil = atomic_load(&s->deferred_by_gil);
    out->gil_status = atomic_load(&s->gil_status);
    out->deferred_lost = atomic_load(&s->deferred_lost);
    out->walk_retries = atomic_load(&s->walk_retries);
    out->walk_torn = atomic_load(&s->walk_torn);
    out->walk_faults = atomic_load(&s->walk_faults);
    out->unguarded_passes = atomic_load(&s->unguarded_passes);
    out->elapsed_s = (double)(ml__mono_ns() - s->started_ns) / 1e9;
    out->cpu_s = (double)atomic_load(&s->cpu_ns) / 1e9;
    out->gil_held_s = (double)atomic_load(&s->gil_held_ns) / 1e9;
    out->gil_wait_s = (double)atomic_load(&s->gil_wait_ns) / 1e9;
    out->walks = atomic_load(&s->walks);
    /* The ring is written by the sampler meanwhile (relaxed atomics). */
    out->walk_median_ns = s->fast ? ml__cost_ring_median(&s->costs) : 0;
    out->mode = s->fast ? "gil-free" : "gil";
}

void ml__sampler_before_fork(ml__sampler *s)
{
    pthread_mutex_lock(&s->walk_lock);
}

void ml__sampler_after_fork_parent(ml__sampler *s)
{
    pthread_mutex_unlock(&s->walk_lock);
}

void ml__sampler_forget(ml__sampler *s)
{
    /* Its thread does not exist in the child; its locks may be held. */
    if (learn_target == s)
        learn_target = NULL;
}
