/*
 * Threads: the sampler's table of the threads it has seen (per-run id, CPU
 * clock reading, last generation seen), per-thread CPU time, thread names
 * from the threading module, and the start of microlog's own native threads.
 *
 * The table is touched by the sampler thread only. It grows only when a new
 * thread shows up, so the steady state allocates nothing.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

ml__thread_slot *ml__threads_find(ml__threads *t, unsigned long ident, unsigned long native_id)
{
    /* Linear: programs have few threads, and the scan is a few cache lines. */
    for (size_t i = 0; i < t->len; i++)
        if (t->v[i].ident == ident && t->v[i].native_id == native_id)
            return &t->v[i];
    return NULL;
}

/*
 * The CPU clock of the kernel thread tid, derived from the tid alone as the
 * kernel's ABI defines it and glibc and musl compute it
 * (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): ~tid << 3 | 6).
 * pthread_getcpuclockid() would read the thread's struct pthread instead,
 * which is freed memory once the thread has ended (glibc 2.43 faults on it),
 * and the pthread id of a thread state the interpreter has made but not yet
 * started is 0. With the tid nothing is dereferenced: the kernel answers
 * EINVAL for a thread that is gone, and only a thread of this process is
 * ever read (a reused tid is a new slot: slots are keyed by tid too).
 */
static clockid_t thread_cpu_clock(pid_t tid)
{
    return (clockid_t)((~(uint32_t)tid << 3) | 6u);
}

ml__thread_slot *ml__threads_add(ml__threads *t, unsigned long ident, unsigned long native_id,
                                 uint32_t id)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        ml__thread_slot *v = realloc(t->v, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    ml__thread_slot *s = &t->v[t->len++];
    memset(s, 0, sizeof(*s));
    s->ident = ident;
    s->native_id = native_id;
    s->id = id;
    s->has_clock = native_id != 0;
    if (s->has_clock)
        s->clock = thread_cpu_clock((pid_t)native_id);
    return s;
}

void ml__threads_reap(ml__threads *t, ml_client *c, uint32_t gen, int64_t now)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (t->v[i].seen == gen)
            t->v[keep++] = t->v[i];
        else if (t->v[i].id != 0) /* 0: never defined (still waiting for its name) */
            ml_client_thread_end(c, t->v[i].id, now);
    }
    t->len = keep;
}

void ml__threads_free(ml__threads *t)
{
    free(t->v);
    memset(t, 0, sizeof(*t));
}

uint32_t ml__threads_cpu_us(ml__thread_slot *s)
{
    struct timespec ts;
    if (!s->has_clock || clock_gettime(s->clock, &ts) != 0)
        return 0;
    uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint64_t used = (s->has_cpu && ns > s->last_cpu_ns) ? (ns - s->last_cpu_ns) / 1000u : 0;
    s->last_cpu_ns = ns;
    s->has_cpu = true;
    return used > UINT32_MAX ? UINT32_MAX : (uint32_t)used;
}

/* True when ident is the main thread: its state is the first one the main
 * interpreter created and new states are linked at the head, so it is the
 * last of the list (public API only). GIL held. */
static bool is_main_thread(unsigned long ident)
{
    PyThreadState *last = NULL;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Main()); ts != NULL;
         ts = PyThreadState_Next(ts))
        last = ts;
    unsigned long last_ident = 0, native = 0;
    if (last != NULL)
        ml__tstate_ids(last, &last_ident, &native);
    return last != NULL && last_ident == ident;
}

bool ml__thread_name(unsigned long ident, char *buf, size_t n)
{
    bool found = false;
    PyObject *threading = PyDict_GetItemString(PyImport_GetModuleDict(), "threading");
    PyObject *active = threading ? PyObject_GetAttrString(threading, "_active") : NULL;
    PyObject *key = active ? PyLong_FromUnsignedLong(ident) : NULL;
    PyObject *thread = (key && PyDict_Check(active)) ? PyDict_GetItemWithError(active, key) : NULL;
    PyObject *name = thread ? PyObject_GetAttrString(thread, "_name") : NULL;
    const char *u = (name && PyUnicode_Check(name)) ? PyUnicode_AsUTF8(name) : NULL;
    if (u != NULL && n > 0) {
        snprintf(buf, n, "%s", u);
        found = true;
    }
    Py_XDECREF(name);
    Py_XDECREF(key);
    Py_XDECREF(active);
    PyErr_Clear();
    if (!found && threading == NULL && n > 0 && is_main_thread(ident)) {
        /* microlog does not import threading (start-up cost); without it the
         * main thread still has the name threading would give it. */
        snprintf(buf, n, "MainThread");
        found = true;
    }
    return found;
}

uint32_t ml__thread_current_id(ml_client *c)
{
    char name[128];
    unsigned long ident = PyThread_get_thread_ident();
    unsigned long native = PyThread_get_thread_native_id();
    bool named = ml__thread_name(ident, name, sizeof(name));
    return ml_client_thread(c, ident, native, named ? name : NULL);
}

int ml__thread_start(pthread_t *thread, void *(*main)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rv = pthread_create(thread, NULL, main, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rv;
}
