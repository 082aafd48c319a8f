/*
 * microlog._native: the module object, its state (PEP 489 multi-phase init)
 * and the functions the microlog package calls. Python exceptions are raised
 * only here, and only for misuse (bad arguments, start while running); the
 * recording paths return False instead of raising.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

typedef struct module_state {
    ml__run *run;    /* NULL when not running; GIL */
    bool busy;       /* a start or stop is in progress with the GIL released */
    ml__gc_stats gc; /* since the last start(); GIL */
} module_state;

/* Set while this thread is inside log(): a write made while recording (say
 * by an object's __eq__ during a dict look-up) must not record again. */
static _Thread_local bool in_log;

static module_state *state_of(PyObject *m)
{
    return (module_state *)PyModule_GetState(m);
}

static int check_idle(module_state *st)
{
    if (st->busy) {
        PyErr_SetString(PyExc_RuntimeError, "microlog is starting or stopping in another thread");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(start_doc, "start(label, options) -> dict\n\n"
                        "Creates the client and starts the sampler thread. options: argv, "
                        "executable, python_version, parent_id, run_uid, server, quiet, "
                        "spool_only, spool_dir, "
                        "sample_period, status_period, memory_period, env_keys, env_values. "
                        "Returns {'run_id', 'run_uid'}.");

static PyObject *native_start(PyObject *m, PyObject *args)
{
    module_state *st = state_of(m);
    PyObject *label, *options;
    if (!PyArg_ParseTuple(args, "UO!:start", &label, &PyDict_Type, &options) || check_idle(st) != 0)
        return NULL;
    if (st->run != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "microlog is already running");
        return NULL;
    }
    ml__run *r = ml__run_start(label, options);
    if (r == NULL)
        return NULL;
    st->run = r;
    memset(&st->gc, 0, sizeof(st->gc));
    return Py_BuildValue("{s:s,s:s}", "run_id", ml_client_run_id(r->client), "run_uid",
                         ml_client_run_uid(r->client));
}

PyDoc_STRVAR(catch_sigterm_doc,
             "catch_sigterm(timeout=2.0) -> bool\n\n"
             "While the run records and SIGTERM has its default action: a SIGTERM "
             "closes the run (waiting at most timeout seconds for the collector) before "
             "the process dies of it. False when the program has its own action for "
             "SIGTERM (left alone) or nothing records.");

static PyObject *native_catch_sigterm(PyObject *m, PyObject *args)
{
    module_state *st = state_of(m);
    double timeout = 2.0;
    if (!PyArg_ParseTuple(args, "|d:catch_sigterm", &timeout))
        return NULL;
    if (st->run == NULL)
        Py_RETURN_FALSE;
    double ms = timeout <= 0 ? 0 : timeout * 1000.0;
    int rv = ml__sigterm_arm(st->run->client, ms > 3.6e6 ? 3600000u : (uint32_t)ms);
    if (rv < 0) {
        errno = -rv;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyBool_FromLong(rv);
}

PyDoc_STRVAR(stop_sampler_doc, "stop_sampler() -> None\n\n"
                               "Stops the sampler thread; log() keeps recording until stop().");

static PyObject *native_stop_sampler(PyObject *m, PyObject *unused)
{
    module_state *st = state_of(m);
    if (check_idle(st) != 0)
        return NULL;
    if (st->run != NULL) {
        st->busy = true;
        ml__run_stop_sampler(st->run);
        st->busy = false;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc, "stop(exit_status=0, timeout=2.0) -> dict | None\n\n"
                       "Ends the run: stops the sampler, flushes and closes the client waiting "
                       "at most timeout seconds. Returns the client's result (run_id, delivered, "
                       "collector_reached, samples, logs, statuses, batches_sent, batches_acked, "
                       "dropped_samples, dropped_logs, error, spooled, spool_path, status, "
                       "native_errors, passes), "
                       "or None when not running.");

static PyObject *native_stop(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"exit_status", "timeout", NULL};
    module_state *st = state_of(m);
    int exit_status = 0;
    double timeout = 2.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|id:stop", kwlist, &exit_status, &timeout) ||
        check_idle(st) != 0)
        return NULL;
    ml__run *r = st->run;
    if (r == NULL)
        Py_RETURN_NONE;
    st->run = NULL; /* from now on log() records nothing */
    if (!ml__sigterm_disarm()) {
        /* A SIGTERM is closing the run: the process ends shortly. */
        Py_BEGIN_ALLOW_THREADS ml__sigterm_wait_end();
        Py_END_ALLOW_THREADS Py_RETURN_NONE;
    }
    st->busy = true;
    double ms = timeout <= 0 ? 0 : timeout * 1000.0;
    PyObject *res = ml__run_finish(r, exit_status, ms > 3.6e6 ? 3600000u : (uint32_t)ms);
    st->busy = false;
    ml__sigterm_release();
    return res;
}

/* Message as UTF-8; a str with lone surrogates is recorded with
 * replacement characters rather than failing. *tmp owns the bytes then. */
static const char *message_utf8(PyObject *msg, Py_ssize_t *len, PyObject **tmp)
{
    const char *u = PyUnicode_AsUTF8AndSize(msg, len);
    if (u != NULL)
        return u;
    PyErr_Clear();
    *tmp = PyUnicode_AsEncodedString(msg, "utf-8", "replace");
    if (*tmp == NULL) {
        PyErr_Clear();
        return NULL;
    }
    *len = PyBytes_GET_SIZE(*tmp);
    return PyBytes_AS_STRING(*tmp);
}

static bool record_log(ml__run *r, int kind, int level, PyObject *msg, const char *logger)
{
    ml__rawframe raw[ML__MAX_DEPTH];
    uint32_t ids[ML__MAX_DEPTH];
    PyObject *tmp = NULL;
    Py_ssize_t len = 0;
    size_t total, n = ml__frames_collect(PyThreadState_Get(), raw, ML__MAX_DEPTH, &total);
    uint32_t stack =
        ml__stack_intern(&r->codemap, r->client, raw, n, total, ids,
                         kind == ML_LOG_LOGGING ? ML__STACK_SKIP_LOGGING : 0, &r->errors);
    uint32_t thread = ml__thread_current_id(r->client);
    const char *u = message_utf8(msg, &len, &tmp);
    int rv = -EINVAL;
    if (u != NULL && thread != 0)
        rv = ml_client_log(r->client, thread, ml_client_now(r->client), kind, level, u, (size_t)len,
                           stack, logger);
    Py_XDECREF(tmp);
    if (rv != 0 && rv != -ENOBUFS) /* -ENOBUFS is counted by the client */
        atomic_fetch_add(&r->errors, 1);
    return rv == 0;
}

PyDoc_STRVAR(log_doc, "log(kind, level, message, logger=None) -> bool\n\n"
                      "Records a log event with the calling thread's current Python stack. "
                      "kind: LOG_STDOUT, LOG_STDERR, LOG_LOGGING, LOG_MARKER or LOG_ANALYSIS. "
                      "Returns False when not running or when the event was dropped; never "
                      "raises for that.");

static PyObject *native_log(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"kind", "level", "message", "logger", NULL};
    int kind, level;
    PyObject *msg, *logger = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiU|O:log", kwlist, &kind, &level, &msg, &logger))
        return NULL;
    if (kind < ML_LOG_STDOUT || kind > ML_LOG_ANALYSIS) {
        PyErr_Format(PyExc_ValueError, "unknown log kind %d", kind);
        return NULL;
    }
    if (logger != Py_None && !PyUnicode_Check(logger)) {
        PyErr_SetString(PyExc_TypeError, "logger must be a str or None");
        return NULL;
    }
    module_state *st = state_of(m);
    if (st->run == NULL || in_log)
        Py_RETURN_FALSE;
    const char *lg = logger == Py_None ? NULL : PyUnicode_AsUTF8(logger);
    if (lg == NULL)
        PyErr_Clear();
    in_log = true;
    bool ok = record_log(st->run, kind, level, msg, lg);
    in_log = false;
    return PyBool_FromLong(ok);
}

static PyObject *native_is_running(PyObject *m, PyObject *unused)
{
    return PyBool_FromLong(state_of(m)->run != NULL);
}

static PyObject *native_run_id(PyObject *m, PyObject *unused)
{
    ml__run *r = state_of(m)->run;
    if (r == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(ml_client_run_id(r->client), strlen(ml_client_run_id(r->client)),
                                "replace");
}

PyDoc_STRVAR(after_fork_doc, "after_fork_child() -> None\n\n"
                             "For os.register_at_fork(after_in_child=...): drops the inherited "
                             "run without touching its threads or locks.");

static PyObject *native_after_fork_child(PyObject *m, PyObject *unused)
{
    module_state *st = state_of(m);
    ml__run *r = st->run;
    st->run = NULL;
    st->busy = false;
    ml__sigterm_after_fork_child();
    if (r != NULL)
        ml__run_forget_after_fork(r);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(before_fork_doc, "before_fork() -> None\n\n"
                              "For os.register_at_fork(before=...): waits for the sampler's "
                              "GIL-free pass to end and holds it off until after_fork_parent().");

static PyObject *native_before_fork(PyObject *m, PyObject *unused)
{
    ml__run *r = state_of(m)->run;
    if (r != NULL && r->sampler != NULL) {
        /* The sampler never waits for the GIL while holding this lock. */
        Py_BEGIN_ALLOW_THREADS ml__sampler_before_fork(r->sampler);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *native_after_fork_parent(PyObject *m, PyObject *unused)
{
    ml__run *r = state_of(m)->run;
    if (r != NULL && r->sampler != NULL)
        ml__sampler_after_fork_parent(r->sampler);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    sampler_stats_doc,
    "sampler_stats() -> dict | None\n\n"
    "The running sampler's own cost: mode ('gil-free' or 'gil'), fast_passes, "
    "gil_passes, fallbacks, deferred (thread samples a GIL-free pass left for later: unknown "
    "code), learnt_pending and deferred_by_gil (who took them: the main thread's pending "
    "call, a GIL pass), gil_status (passes that took the GIL only for the interpreter part of "
    "a status tick: at most one a second), walks, elapsed, cpu, gil_held, gil_wait (s), their "
    "per-second rates, walk_median_us (median walk of one thread). None when not sampling.");

static PyObject *native_sampler_stats(PyObject *m, PyObject *unused)
{
    ml__run *r = state_of(m)->run;
    if (r == NULL || r->sampler == NULL)
        return ml__sampler_stats_dict(r != NULL && r->has_stats ? &r->last_stats : NULL);
    ml__sampler_stats st;
    ml__sampler_stats_get(r->sampler, &st);
    return ml__sampler_stats_dict(&st);
}

PyDoc_STRVAR(walk_doc, "_walk(ident=None) -> (frames, truncated)\n\n"
                       "Debugging aid: the stack the sampler records for thread ident (default: "
                       "the caller), root first, as (name, file, line, flags) tuples.");

static PyObject *native_walk(PyObject *m, PyObject *args)
{
    module_state *st = state_of(m);
    if (st->run == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "microlog is not running");
        return NULL;
    }
    return ml__walk(st->run, args);
}

PyDoc_STRVAR(gc_callback_doc, "gc_callback(phase, info) -> None\n\n"
                              "For gc.callbacks: counts collections, their duration and the "
                              "objects collected. Runs no Python code.");

static PyObject *native_gc_callback(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 2)
        ml__gc_stats_note(&state_of(m)->gc, args[0], args[1]);
    Py_RETURN_NONE;
}

static PyObject *native_gc_stats(PyObject *m, PyObject *unused)
{
    return ml__gc_stats_dict(&state_of(m)->gc);
}

static PyMethodDef native_methods[] = {
    {"start", native_start, METH_VARARGS, start_doc},
    {"stop_sampler", native_stop_sampler, METH_NOARGS, stop_sampler_doc},
    {"catch_sigterm", native_catch_sigterm, METH_VARARGS, catch_sigterm_doc},
    {"stop", (PyCFunction)(void (*)(void))native_stop, METH_VARARGS | METH_KEYWORDS, stop_doc},
    {"log", (PyCFunction)(void (*)(void))native_log, METH_VARARGS | METH_KEYWORDS, log_doc},
    {"is_running", native_is_running, METH_NOARGS, "is_running() -> bool"},
    {"run_id", native_run_id, METH_NOARGS, "run_id() -> str | None: the run identity so far"},
    {"after_fork_child", native_after_fork_child, METH_NOARGS, after_fork_doc},
    {"gc_callback", (PyCFunction)(void (*)(void))native_gc_callback, METH_FASTCALL,
     gc_callback_doc},
    {"gc_stats", native_gc_stats, METH_NOARGS,
     "gc_stats() -> dict: count, duration (s), collected, uncollectable since start()"},
    {"_walk", native_walk, METH_VARARGS, walk_doc},
    {"before_fork", native_before_fork, METH_NOARGS, before_fork_doc},
    {"after_fork_parent", native_after_fork_parent, METH_NOARGS,
     "after_fork_parent() -> None: releases what before_fork() held"},
    {"sampler_stats", native_sampler_stats, METH_NOARGS, sampler_stats_doc},
    {"open_files_start", ml__open_files_start, METH_VARARGS,
     "open_files_start(own_dir, stdlib_dir, max) -> bool: notes the files open() is given from now "
     "on"},
    {"open_files_stop", ml__open_files_stop, METH_NOARGS,
     "open_files_stop() -> (dict, int): path -> (seconds, mode, filename, line), and the "
     "number of paths not kept"},
    {NULL, NULL, 0, NULL},
};

static int native_exec(PyObject *m)
{
    module_state *st = state_of(m);
    st->run = NULL;
    st->busy = false;
    if (PyModule_AddIntConstant(m, "LOG_STDOUT", ML_LOG_STDOUT) < 0 ||
        PyModule_AddIntConstant(m, "LOG_STDERR", ML_LOG_STDERR) < 0 ||
        PyModule_AddIntConstant(m, "LOG_LOGGING", ML_LOG_LOGGING) < 0 ||
        PyModule_AddIntConstant(m, "LOG_MARKER", ML_LOG_MARKER) < 0 ||
        PyModule_AddIntConstant(m, "LOG_ANALYSIS", ML_LOG_ANALYSIS) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_FLAG_MODULE", ML__FRAME_FLAG_MODULE) < 0 ||
        PyModule_AddIntConstant(m, "MAX_DEPTH", ML__MAX_DEPTH) < 0 ||
        PyModule_AddStringConstant(m, "FRAMES_IMPL", ml__frames_impl) < 0 ||
        PyModule_AddStringConstant(m, "CLIENT_VERSION", ML_CLIENT_VERSION) < 0)
        return -1;
    return 0;
}

/* The module going away with a run still open (the program never called
 * stop and atexit did not run): end it without waiting. */
static void native_free(void *m)
{
    module_state *st = state_of((PyObject *)m);
    if (st != NULL && st->run != NULL) {
        ml__run *r = st->run;
        st->run = NULL;
        if (!ml__sigterm_disarm())
            return; /* a SIGTERM is closing the run */
        Py_XDECREF(ml__run_finish(r, 0, 0));
        PyErr_Clear();
        ml__sigterm_release();
    }
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "microlog._native",
    .m_doc = "Microlog's native sampler and log recorder (see pyext/src).",
    .m_size = sizeof(module_state),
    .m_methods = native_methods,
    .m_slots = native_slots,
    .m_free = native_free,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
