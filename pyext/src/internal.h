/*
 * microlog._native internals, shared by the files of pyext/src.
 *
 * Threads and locks in this extension:
 *  - the GIL protects the module state, the code map and every Python object;
 *  - the sampler thread (sampler.c) owns its thread table, status state and
 *    scratch arrays, and takes the GIL only for one sampling pass;
 *  - libmicrolog is thread-safe on its own and never needs the GIL.
 * No function here raises into the profiled program from the hot path:
 * failures are counted in ml__run.errors and reported by stop().
 */
#ifndef ML_PYEXT_INTERNAL_H
#define ML_PYEXT_INTERNAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "microlog/client.h"

/* Deepest stack recorded; deeper frames (nearest the root) are counted in
 * StackDef.truncated. */
#define ML__MAX_DEPTH 256

/* FrameFlag bits of proto/microlog.proto (mirrored so this code does not
 * depend on the generated protobuf header). */
#define ML__FRAME_FLAG_MODULE 1u

/* ---- frames_*.c: the version-specific frame layer --------------------- */

/* One Python frame as the walker saw it. Pointers are borrowed and valid
 * only while the GIL stays held since the walk. */
typedef struct ml__rawframe {
    PyCodeObject *code;
    PyObject *globals;
    int key; /* position in code: byte offset (frames_internal.c) or line (frames_api.c) */
} ml__rawframe;

/* Stores at most cap frames of ts, innermost (leaf) first, in out and the
 * total number of complete frames in *total. Returns the number stored.
 * GIL held. No Python object survives the call and none is created by the
 * 3.11 layer. */
size_t ml__frames_collect(PyThreadState *ts, ml__rawframe *out, size_t cap, size_t *total);

/* Line number of a collected frame (0 when unknown). GIL held. */
uint32_t ml__frames_line(const ml__rawframe *f);

/* pthread id (threading.get_ident()) and OS thread id of ts (0 if unknown). */
void ml__tstate_ids(PyThreadState *ts, unsigned long *ident, unsigned long *native_id);

/* Which layer was compiled in: "cpython-3.11" or "c-api". */
extern const char ml__frames_impl[];

/* ---- codemap.c: code object -> interned frame description ------------ */

typedef struct ml__code_info {
    PyCodeObject *code; /* strong reference: its address cannot be reused */
    uint32_t name;      /* string id of "module.qualname" */
    uint32_t file;      /* string id of the absolute file name */
    uint32_t first_line;
    uint32_t flags;   /* ML__FRAME_FLAG_* */
    bool hidden;      /* microlog's own machinery: never shown in a stack */
    bool logging;     /* code of the logging package */
    char *name_utf8;  /* the name, for _native._walk() */
    int last_key;     /* one-entry cache: last position seen ... */
    uint32_t last_id; /* ... and its frame id (0: empty) */
} ml__code_info;

typedef struct ml__codemap {
    ml__code_info *slots; /* open addressing by code pointer, cap a power of 2 */
    size_t cap;
    size_t len;
} ml__codemap;

/* All codemap calls: GIL held. */
void ml__codemap_init(ml__codemap *m);
/* Returns the entry for code, interning it into c on first sight; NULL on
 * failure (no Python error is left set). The pointer is valid until the next
 * ml__codemap_get() of another code object. */
ml__code_info *ml__codemap_get(ml__codemap *m, ml_client *c, PyCodeObject *code, PyObject *globals);
/* Frame id of a collected frame of entry ci; 0 on failure. */
uint32_t ml__codemap_frame(ml__code_info *ci, ml_client *c, const ml__rawframe *f);
/* Drops every strong reference and the table. */
void ml__codemap_clear(ml__codemap *m);

/* ---- stack.c ---------------------------------------------------------- */

enum { ML__STACK_SKIP_LOGGING = 1 }; /* drop leaf frames of the logging package */

/* Interns raw[0..n) (leaf first; total frames existed) as one stack, root
 * first, leaving out hidden frames. ids is scratch for ML__MAX_DEPTH ids.
 * Returns the stack id, 0 when no frame is left or on failure (counted in
 * *errors). GIL held. */
uint32_t ml__stack_intern(ml__codemap *m, ml_client *c, const ml__rawframe *raw, size_t n,
                          size_t total, uint32_t *ids, int options, atomic_uint_fast64_t *errors);

/* ---- threads.c: the sampler's table of known threads ------------------ */

typedef struct ml__thread_slot {
    unsigned long ident;
    unsigned long native_id; /* tells a new thread from a dead one whose pthread id was reused */
    uint32_t id;             /* per-run thread id; 0: not defined yet (waiting for its name) */
    uint32_t name_waits;     /* passes it was seen without a name */
    uint32_t seen;           /* generation of the last pass that saw it */
    uint64_t last_cpu_ns;    /* thread CPU clock at its previous sample */
    clockid_t clock;         /* the thread's CPU clock, derived from native_id: reading
                                it once the thread is gone fails (EINVAL), safely */
    bool has_clock;
    bool has_cpu;
} ml__thread_slot;

/* Passes a new thread may wait for threading to name it before it is
 * recorded with the default name. */
#define ML__THREAD_NAME_WAITS 3

typedef struct ml__threads {
    ml__thread_slot *v;
    size_t len, cap;
} ml__threads;

/* Slot for (ident, native_id) or NULL. Sampler thread only. */
ml__thread_slot *ml__threads_find(ml__threads *t, unsigned long ident, unsigned long native_id);
/* Appends a slot; NULL on -ENOMEM. Sampler thread only. The thread may have
 * ended already: nothing of it is read (its CPU clock comes from native_id;
 * 0: no clock). */
ml__thread_slot *ml__threads_add(ml__threads *t, unsigned long ident, unsigned long native_id,
                                 uint32_t id);
/* Calls ml_client_thread_end for every slot not seen in generation gen and
 * removes it. */
void ml__threads_reap(ml__threads *t, ml_client *c, uint32_t gen, int64_t now);
void ml__threads_free(ml__threads *t);
/* CPU time consumed by the slot's thread since its previous call, in us;
 * 0 on the first call or when the clock is unreadable. Sampler thread; no
 * GIL needed. */
uint32_t ml__threads_cpu_us(ml__thread_slot *s);
/* Starts one of microlog's own threads with every signal blocked: signals
 * are the program's business and must reach its own threads. 0 or -errno. */
int ml__thread_start(pthread_t *thread, void *(*main)(void *), void *arg);
/* Copies threading's name of thread ident into buf (size n), or
 * "MainThread" for the main thread while threading is not imported; false
 * when neither applies. GIL held; may run no Python code. */
bool ml__thread_name(unsigned long ident, char *buf, size_t n);
/* Per-run id of the calling Python thread, defining it on first use. GIL held. */
uint32_t ml__thread_current_id(ml_client *c);

/* ---- status.c --------------------------------------------------------- */

typedef struct ml__status_state {
    int64_t last_wall_us;           /* monotonic, of the previous tick */
    uint64_t last_cpu_ns;           /* process CPU clock at the previous tick */
    uint64_t last_busy, last_total; /* /proc/stat jiffies at the previous tick */
    uint64_t page_size;
} ml__status_state;

/* Takes the first reading so the first tick has deltas. Any thread. */
void ml__status_init(ml__status_state *s, int64_t mono_us);
/* Fills the OS part of a tick: CPU %, system CPU %, RSS and, when memory is
 * true, memory total/available. No GIL needed; no allocation. */
void ml__status_measure_os(ml__status_state *s, int64_t mono_us, bool memory, ml_status *out);
/* Fills the interpreter part: module count and allocated heap blocks. GIL held. */
void ml__status_measure_python(ml_status *out);

/* Monotonic clock in microseconds. */
int64_t ml__mono_us(void);

/* ---- costs.c: the sampler's own cost ---------------------------------- */

/* The last ML__COST_RING per-thread walk durations (ns), for a median.
 * Written by the sampler thread only, read by any thread: relaxed atomics
 * (a reader may see a mix of old and new entries, harmless for a median). */
#define ML__COST_RING 4096
typedef struct ml__cost_ring {
    _Atomic uint32_t ns[ML__COST_RING];
    _Atomic uint64_t count; /* walks recorded since the start */
} ml__cost_ring;

/* Records one walk duration. Sampler thread only. */
static inline void ml__cost_ring_add(ml__cost_ring *r, int64_t ns)
{
    uint64_t n = atomic_load_explicit(&r->count, memory_order_relaxed);
    uint32_t v = ns < 0 ? 0 : ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
    atomic_store_explicit(&r->ns[n % ML__COST_RING], v, memory_order_relaxed);
    atomic_store_explicit(&r->count, n + 1, memory_order_relaxed);
}
/* Walks recorded since the start. Any thread. */
static inline uint64_t ml__cost_ring_count(const ml__cost_ring *r)
{
    return atomic_load_explicit(&r->count, memory_order_relaxed);
}
/* Median of what the ring holds, in ns (0 when empty). Sorts a copy. Any
 * thread. */
uint32_t ml__cost_ring_median(const ml__cost_ring *r);

/* Monotonic clock in nanoseconds. */
int64_t ml__mono_ns(void);
/* CPU time of the calling thread in nanoseconds. */
int64_t ml__thread_cpu_ns(void);

/* ---- guard.c: guarded reads of memory that may vanish --------------- */

/* ml__guard_run()'s result when fn faulted. */
#define ML__GUARD_FAULT (-1000)

/* Installs the SIGSEGV/SIGBUS handler of guarded reads (once; again after
 * the program replaced it is not done: see ml__guard_ready). 0 or -errno.
 * GIL held. */
int ml__guard_install(void);
/* Puts back the dispositions it replaced, if ours is still installed. */
void ml__guard_uninstall(void);
/* True while our handler is the installed one: only then may
 * ml__guard_run() read memory that may be unmapped. Two system calls; the
 * sampler asks once per pass. Any thread. */
bool ml__guard_ready(void);
/* In the thread that will call ml__guard_run(): unblocks SIGSEGV and
 * SIGBUS (a fault while they are blocked kills the process). */
void ml__guard_thread_init(void);
/* Calls fn(arg); a fault inside it (in this thread) ends it: returns
 * ML__GUARD_FAULT, else what fn returned. fn must hold no lock and own no
 * resource across its reads (it may be left at any load). One thread at a
 * time (the sampler). */
int ml__guard_run(int (*fn)(void *), void *arg);
/* Faults taken since the process started. */
uint64_t ml__guard_faults(void);

/* ---- fastwalk.c: frames of every thread without the GIL -------------- */

/* A code object the GIL path has interned: what a frame of it needs, copied
 * so the walk never reads the object. code is an address kept live by the
 * code map's strong reference. */
typedef struct ml__known_code {
    uintptr_t code;  /* 0: empty slot */
    uintptr_t units; /* address of its first code unit (the bytecode the frames run) */
    uint32_t name, file, first_line, flags;
    int32_t first_traceable; /* code units before the first RESUME */
    int32_t nbytes;          /* size of the bytecode */
    bool hidden;
} ml__known_code;

/* (code, byte offset) -> frame id. */
typedef struct ml__known_frame {
    uintptr_t code;
    int key;
    uint32_t id;
} ml__known_frame;

/* Why a GIL-free pass left a thread without a stack. */
enum ml__defer {
    ML__DEFER_NONE = 0,
    ML__DEFER_UNKNOWN, /* an unknown code object: the GIL path learns it */
    ML__DEFER_TORN,    /* no consistent walk in ML__WALK_TRIES attempts */
};

/* One thread's sample from a GIL-free pass. */
typedef struct ml__fast_sample {
    unsigned long ident, native_id;
    uint32_t stack;
    int deferred; /* enum ml__defer: not NONE means no stack; the thread is
                     sampled again where its stack can be read (the GIL path) */
} ml__fast_sample;

/* The walker's own counts since its start. */
typedef struct ml__fastwalk_stats {
    uint64_t retries;          /* attempts after a thread's first in a pass */
    uint64_t torn;             /* threads left to the GIL path: no consistent attempt */
    uint64_t faults;           /* attempts ended by a fault the guard caught */
    uint64_t unguarded_passes; /* passes read with process_vm_readv (guard not ours) */
} ml__fastwalk_stats;

typedef struct ml__fastwalk ml__fastwalk;

/* Creates the walker after checking the fault-safe copy works here.
 * Returns 0, -ENOTSUP on interpreters without a GIL-free layer, or -errno
 * (e.g. -EPERM when seccomp forbids process_vm_readv). Any thread. */
int ml__fastwalk_new(ml__fastwalk **out);
void ml__fastwalk_free(ml__fastwalk *w);
/* Teaches the walker the code objects of raw[0..n) (interning them in m).
 * Returns 0 or -ENOMEM. Sampler thread, GIL held. */
int ml__fastwalk_learn(ml__fastwalk *w, ml__codemap *m, ml_client *c, const ml__rawframe *raw,
                       size_t n);
/* Makes the main thread run pending calls soon (after Py_AddPendingCall
 * from another thread). Any thread, no GIL needed. */
void ml__fastwalk_wake_main(PyInterpreterState *interp);
/* One sample per started thread of interp except skip, into
 * (*out)[0..*n) (grown as needed, owned by the caller); a thread whose
 * stack could not be read consistently, or holds an unknown code object,
 * is marked deferred (fastwalk.c says why), the others are still walked.
 * ids: scratch of ML__MAX_DEPTH. Records each thread's walk time in costs.
 * Returns 0 or -errno. Sampler thread, GIL NOT needed. */
int ml__fastwalk_pass(ml__fastwalk *w, PyInterpreterState *interp, PyThreadState *skip,
                      ml_client *c, ml__fast_sample **out, size_t *cap, size_t *n, uint32_t *ids,
                      ml__cost_ring *costs);
/* The walker's counts. Sampler thread. */
void ml__fastwalk_stats_get(const ml__fastwalk *w, ml__fastwalk_stats *out);

/* ---- sampler.c -------------------------------------------------------- */

typedef struct ml__sampler ml__sampler;
struct ml__run;

/* Periods in seconds. */
typedef struct ml__periods {
    double sample, status, memory;
} ml__periods;

/* How the sampler samples. */
enum ml__sampler_mode {
    ML__SAMPLER_AUTO = 0, /* GIL-free walk where available, the GIL path as fallback */
    ML__SAMPLER_GIL = 1,  /* always the GIL path (the tested fallback) */
};

/* The sampler's own cost since its start (see ml__sampler_stats). */
typedef struct ml__sampler_stats {
    uint64_t fast_passes, gil_passes, fallbacks;
    /* Thread samples deferred by GIL-free passes; of them, taken by the main
     * thread's pending call, and by a GIL pass. */
    uint64_t deferred, learnt_pending, deferred_by_gil;
    /* Passes that took the GIL only for the interpreter part of a tick. */
    uint64_t gil_status;
    /* Deferred thread samples lost (more threads waiting than the list
     * holds): counted, never recorded with a wrong stack. */
    uint64_t deferred_lost;
    /* The walker's counts (ml__fastwalk_stats). */
    uint64_t walk_retries, walk_torn, walk_faults, unguarded_passes;
    double elapsed_s, cpu_s, gil_held_s, gil_wait_s;
    uint32_t walk_median_ns; /* median walk of one thread */
    uint64_t walks;
    const char *mode; /* "gil-free" or "gil" */
} ml__sampler_stats;

/* Starts the sampler thread for run. Returns 0 or -errno. GIL held. */
int ml__sampler_start(struct ml__run *run, const ml__periods *p, int mode, ml__sampler **out);
/* Current figures; any thread (they are read racily but each is atomic). */
void ml__sampler_stats_get(ml__sampler *s, ml__sampler_stats *out);
/* Around fork(): before takes the sampler's walk lock so no GIL-free pass is
 * half done; after_parent releases it. GIL held by the forking thread. */
void ml__sampler_before_fork(ml__sampler *s);
void ml__sampler_after_fork_parent(ml__sampler *s);
/* Makes sure no pending call of the sampler runs from now on. GIL held;
 * call before ml__sampler_stop(). */
void ml__sampler_detach(ml__sampler *s);
/* Stops and joins the thread, then frees the sampler. Must be called with
 * the GIL NOT held (the thread may be waiting for it). */
void ml__sampler_stop(ml__sampler *s);
/* After fork() in the child: forgets the sampler without touching its
 * thread or locks (leaked on purpose). */
void ml__sampler_forget(ml__sampler *s);

/* ---- run.c: one recording --------------------------------------------- */

typedef struct ml__run {
    ml_client *client;
    ml__codemap codemap;  /* GIL */
    ml__sampler *sampler; /* NULL once stopped */
    PyInterpreterState *interp;
    atomic_uint_fast64_t errors;  /* failures met in the hot path */
    atomic_uint_fast64_t passes;  /* sampling passes done */
    ml__sampler_stats last_stats; /* the sampler's figures when it stopped */
    bool has_stats;
} ml__run;

/* Creates the client from label and options (a dict, see module.c) and starts
 * the sampler. Returns the run or NULL with a Python exception set. GIL held. */
ml__run *ml__run_start(PyObject *label, PyObject *options);
/* Stops the sampler (releases the GIL meanwhile). GIL held. */
void ml__run_stop_sampler(ml__run *r);
/* Stops the sampler, closes the client (waiting at most timeout_ms without the
 * GIL), frees the run and returns the result dict, or NULL with an exception.
 * GIL held. */
PyObject *ml__run_finish(ml__run *r, int exit_status, uint32_t timeout_ms);
/* After fork() in the child: leaks the run without touching locks or threads. */
void ml__run_forget_after_fork(ml__run *r);

/* ---- sigterm.c: SIGTERM ends the run, then the process ---------------- */

/* While SIGTERM has its default action (or ours), catches it: the run's
 * client is closed with exit status 143 (waiting at most timeout_ms) before
 * the process dies of SIGTERM. 1 armed, 0 left alone (the program's own
 * action, or armed already), -errno on failure. GIL held. */
int ml__sigterm_arm(ml_client *client, uint32_t timeout_ms);
/* Before the program's stop() closes the run: a SIGTERM from now on is
 * only noted. False when a SIGTERM already claimed the run: its client is
 * being closed by the handler's thread and the process is about to end.
 * GIL held. */
bool ml__sigterm_disarm(void);
/* After that close: SIGTERM's default action back, and a SIGTERM noted
 * meanwhile raised again (the process ends here). GIL held. */
void ml__sigterm_release(void);
/* After a false ml__sigterm_disarm(): waits (GIL released by the caller)
 * for the handler to end the process, bounded. */
void ml__sigterm_wait_end(void);
/* After fork() in the child: the parent's arming is forgotten. */
void ml__sigterm_after_fork_child(void);

/* The figures as a dict (None for st NULL); NULL with an exception on
 * failure. GIL held. */
PyObject *ml__sampler_stats_dict(const ml__sampler_stats *st);

/* ---- gcstats.c -------------------------------------------------------- */

/* Totals of the collections seen by _native.gc_callback. GIL. */
typedef struct ml__gc_stats {
    uint64_t count, collected, uncollectable;
    int64_t duration_us;
    int64_t started_us; /* monotonic; 0 outside a collection */
} ml__gc_stats;

/* One gc.callbacks call (phase "start" or "stop", info dict). Never fails. */
void ml__gc_stats_note(ml__gc_stats *g, PyObject *phase, PyObject *info);
/* {"count", "duration" (s), "collected", "uncollectable"}; NULL on error. */
PyObject *ml__gc_stats_dict(const ml__gc_stats *g);

/* ---- openfiles.c ------------------------------------------------------ */

/* _native.open_files_start(own_dir, stdlib_dir, max) -> bool: (re)starts noting the
 * paths open() is given (a C audit hook, installed once); False if another
 * hook refused it. _native.open_files_stop() -> (dict, dropped): what was
 * noted, path -> (seconds since start, mode, filename, line), and how many
 * paths were not kept. GIL held. */
PyObject *ml__open_files_start(PyObject *m, PyObject *args);
PyObject *ml__open_files_stop(PyObject *m, PyObject *unused);

/* ---- walk.c ----------------------------------------------------------- */

/* _native._walk(ident=None): the stack the sampler would record for a
 * thread, as Python tuples. GIL held. */
PyObject *ml__walk(ml__run *r, PyObject *args);

#endif /* ML_PYEXT_INTERNAL_H */
