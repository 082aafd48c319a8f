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
    int key; /* position in code: byte offset (frames_311.c) or line (frames_api.c) */
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
    uint32_t id;             /* per-run thread id */
    uint32_t seen;           /* generation of the last pass that saw it */
    uint64_t last_cpu_ns;    /* thread CPU clock at its previous sample */
    bool has_cpu;
} ml__thread_slot;

typedef struct ml__threads {
    ml__thread_slot *v;
    size_t len, cap;
} ml__threads;

/* Slot for (ident, native_id) or NULL. Sampler thread only. */
ml__thread_slot *ml__threads_find(ml__threads *t, unsigned long ident, unsigned long native_id);
/* Appends a slot; NULL on -ENOMEM. Sampler thread only. */
ml__thread_slot *ml__threads_add(ml__threads *t, unsigned long ident, unsigned long native_id,
                                 uint32_t id);
/* Calls ml_client_thread_end for every slot not seen in generation gen and
 * removes it. */
void ml__threads_reap(ml__threads *t, ml_client *c, uint32_t gen, int64_t now);
void ml__threads_free(ml__threads *t);
/* CPU time consumed by pthread ident since its slot's previous call, in us;
 * 0 on the first call or when the clock is unreadable. The thread must be
 * alive: call with the GIL held while its thread state is listed. */
uint32_t ml__threads_cpu_us(ml__thread_slot *s);
/* Copies threading's name of thread ident into buf (size n); false when
 * threading does not know it. GIL held; may run no Python code. */
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

/* ---- sampler.c -------------------------------------------------------- */

typedef struct ml__sampler ml__sampler;
struct ml__run;

/* Periods in seconds. */
typedef struct ml__periods {
    double sample, status, memory;
} ml__periods;

/* Starts the sampler thread for run. Returns 0 or -errno. GIL held. */
int ml__sampler_start(struct ml__run *run, const ml__periods *p, ml__sampler **out);
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
    atomic_uint_fast64_t errors; /* failures met in the hot path */
    atomic_uint_fast64_t passes; /* sampling passes done */
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

/* ---- walk.c ----------------------------------------------------------- */

/* _native._walk(ident=None): the stack the sampler would record for a
 * thread, as Python tuples. GIL held. */
PyObject *ml__walk(ml__run *r, PyObject *args);

#endif /* ML_PYEXT_INTERNAL_H */
