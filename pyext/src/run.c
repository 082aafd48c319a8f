/*
 * One recording: the options dict of _native.start() turned into a client
 * config and run info, the client, the code map and the sampler; and the
 * end of the run turned into the result dict of _native.stop().
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* UTF-8 of options[key] if it is a str, else NULL. Borrowed from the dict. */
static const char *opt_str(PyObject *options, const char *key)
{
    PyObject *v = PyDict_GetItemString(options, key);
    if (v == NULL || !PyUnicode_Check(v))
        return NULL;
    const char *u = PyUnicode_AsUTF8(v);
    if (u == NULL)
        PyErr_Clear();
    return u;
}

static double opt_double(PyObject *options, const char *key, double fallback)
{
    PyObject *v = PyDict_GetItemString(options, key);
    double d = v ? PyFloat_AsDouble(v) : fallback;
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return fallback;
    }
    return d;
}

/* options[key] as a list of str: fills a malloc'd array (caller frees) with
 * borrowed UTF-8 pointers. Returns 0, or -1 with an exception set. */
static int opt_strings(PyObject *options, const char *key, const char ***out, size_t *n)
{
    PyObject *v = PyDict_GetItemString(options, key);
    *out = NULL;
    *n = 0;
    if (v == NULL || v == Py_None)
        return 0;
    if (!PyList_Check(v)) {
        PyErr_Format(PyExc_TypeError, "options[%s] must be a list of str", key);
        return -1;
    }
    Py_ssize_t len = PyList_GET_SIZE(v);
    const char **a = calloc((size_t)len + 1, sizeof(*a));
    if (a == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *s = PyList_GET_ITEM(v, i);
        a[i] = PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
        if (a[i] == NULL) {
            free(a);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "options[%s] must be a list of str", key);
            return -1;
        }
    }
    *out = a;
    *n = (size_t)len;
    return 0;
}

static int new_client(PyObject *label, PyObject *options, ml_client **out)
{
    ml_client_config cfg;
    ml_run_info info;
    const char **argv = NULL, **keys = NULL, **values = NULL;
    size_t argc = 0, nkeys = 0, nvalues = 0;
    int rv = -1;

    ml_client_config_init(&cfg);
    if (opt_str(options, "server"))
        cfg.server = opt_str(options, "server");
    cfg.quiet = PyDict_GetItemString(options, "quiet") == Py_True;
    cfg.spool_only = PyDict_GetItemString(options, "spool_only") == Py_True;
    if (opt_str(options, "spool_dir"))
        cfg.spool_dir = opt_str(options, "spool_dir");

    memset(&info, 0, sizeof(info));
    info.label = PyUnicode_AsUTF8(label);
    if (info.label == NULL || opt_strings(options, "argv", &argv, &argc) != 0 ||
        opt_strings(options, "env_keys", &keys, &nkeys) != 0 ||
        opt_strings(options, "env_values", &values, &nvalues) != 0)
        goto done;
    if (nkeys != nvalues) {
        PyErr_SetString(PyExc_ValueError, "env_keys and env_values differ in length");
        goto done;
    }
    info.argv = argv;
    info.argc = argc;
    info.env_keys = keys;
    info.env_values = values;
    info.env_count = nkeys;
    info.executable = opt_str(options, "executable");
    info.python_version = opt_str(options, "python_version");
    info.parent_id = opt_str(options, "parent_id");
    info.run_uid = opt_str(options, "run_uid");
    info.sample_period = opt_double(options, "sample_period", 0.05);
    info.status_period = opt_double(options, "status_period", 0.1);
    info.memory_period = opt_double(options, "memory_period", 1.0);

    rv = ml_client_new(&cfg, &info, out);
    if (rv != 0) {
        errno = -rv;
        PyErr_SetFromErrno(rv == -EINVAL ? PyExc_ValueError : PyExc_OSError);
    }
done:
    free(argv);
    free(keys);
    free(values);
    return rv;
}

ml__run *ml__run_start(PyObject *label, PyObject *options)
{
    ml__run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return (ml__run *)PyErr_NoMemory();
    atomic_init(&r->errors, 0);
    atomic_init(&r->passes, 0);
    ml__codemap_init(&r->codemap);
    r->interp = PyThreadState_Get()->interp;
    if (new_client(label, options, &r->client) != 0) {
        free(r);
        return NULL;
    }
    ml__periods p = {
        .sample = opt_double(options, "sample_period", 0.05),
        .status = opt_double(options, "status_period", 0.1),
        .memory = opt_double(options, "memory_period", 1.0),
    };
    const char *mode = opt_str(options, "sampler");
    int rv = ml__sampler_start(r, &p, mode && strcmp(mode, "gil") == 0 ? ML__SAMPLER_GIL : 0,
                               &r->sampler);
    if (rv != 0) {
        ml_client_free(r->client);
        free(r);
        errno = -rv;
        return (ml__run *)PyErr_SetFromErrno(PyExc_OSError);
    }
    return r;
}

void ml__run_stop_sampler(ml__run *r)
{
    ml__sampler *s = r->sampler;
    r->sampler = NULL; /* before the GIL is released: nobody stops it twice */
    if (s == NULL)
        return;
    /* Taken before the stop so the figures cover the whole run; the last
     * pass adds a few microseconds at most. */
    ml__sampler_stats_get(s, &r->last_stats);
    r->has_stats = true;
    ml__sampler_detach(s);
    Py_BEGIN_ALLOW_THREADS ml__sampler_stop(s);
    Py_END_ALLOW_THREADS
}

/* d[key] = v, stealing v; false on error (v may be NULL: an error already). */
static bool put(PyObject *d, const char *key, PyObject *v);

PyObject *ml__sampler_stats_dict(const ml__sampler_stats *st)
{
    if (st == NULL)
        Py_RETURN_NONE;
    double el = st->elapsed_s > 0 ? st->elapsed_s : 1.0;
    return Py_BuildValue(
        "{s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d}",
        "mode", st->mode, "deferred_lost", (unsigned long long)st->deferred_lost, "walk_retries",
        (unsigned long long)st->walk_retries, "walk_torn", (unsigned long long)st->walk_torn,
        "walk_faults", (unsigned long long)st->walk_faults, "unguarded_passes",
        (unsigned long long)st->unguarded_passes, "fast_passes",
        (unsigned long long)st->fast_passes, "gil_passes", (unsigned long long)st->gil_passes,
        "fallbacks", (unsigned long long)st->fallbacks, "deferred",
        (unsigned long long)st->deferred, "learnt_pending", (unsigned long long)st->learnt_pending,
        "deferred_by_gil", (unsigned long long)st->deferred_by_gil, "gil_status",
        (unsigned long long)st->gil_status, "walks", (unsigned long long)st->walks, "elapsed",
        st->elapsed_s, "cpu", st->cpu_s, "gil_held", st->gil_held_s, "gil_wait", st->gil_wait_s,
        "cpu_per_s", st->cpu_s / el, "gil_held_per_s", st->gil_held_s / el, "gil_wait_per_s",
        st->gil_wait_s / el, "walk_median_us", st->walk_median_ns / 1000.0);
}

static bool put(PyObject *d, const char *key, PyObject *v)
{
    bool ok = v != NULL && PyDict_SetItemString(d, key, v) == 0;
    Py_XDECREF(v);
    return ok;
}

static PyObject *text(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *result_dict(const ml_client_result *res, int rv, ml__run *r)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    bool ok = put(d, "run_id", text(res->run_id)) &&
              put(d, "delivered", PyBool_FromLong(res->delivered)) &&
              put(d, "collector_reached", PyBool_FromLong(res->collector_reached)) &&
              put(d, "samples", PyLong_FromUnsignedLongLong(res->samples)) &&
              put(d, "logs", PyLong_FromUnsignedLongLong(res->logs)) &&
              put(d, "statuses", PyLong_FromUnsignedLongLong(res->statuses)) &&
              put(d, "batches_sent", PyLong_FromUnsignedLongLong(res->batches_sent)) &&
              put(d, "batches_acked", PyLong_FromUnsignedLongLong(res->batches_acked)) &&
              put(d, "dropped_samples", PyLong_FromUnsignedLongLong(res->dropped_samples)) &&
              put(d, "dropped_logs", PyLong_FromUnsignedLongLong(res->dropped_logs)) &&
              put(d, "error", text(res->error)) &&
              put(d, "spooled", PyBool_FromLong(res->spooled)) &&
              put(d, "spool_path", text(res->spooled ? res->spool_path : "")) &&
              put(d, "status", PyLong_FromLong(rv)) &&
              put(d, "native_errors", PyLong_FromUnsignedLongLong(atomic_load(&r->errors))) &&
              put(d, "passes", PyLong_FromUnsignedLongLong(atomic_load(&r->passes))) &&
              put(d, "sampler", ml__sampler_stats_dict(r->has_stats ? &r->last_stats : NULL));
    if (!ok)
        Py_CLEAR(d);
    return d;
}

PyObject *ml__run_finish(ml__run *r, int exit_status, uint32_t timeout_ms)
{
    ml_client_result res;
    int rv;

    ml__run_stop_sampler(r);
    memset(&res, 0, sizeof(res));
    Py_BEGIN_ALLOW_THREADS rv = ml_client_close(r->client, exit_status, timeout_ms, &res);
    ml_client_free(r->client);
    Py_END_ALLOW_THREADS PyObject *d = result_dict(&res, rv, r);
    ml__codemap_clear(&r->codemap);
    free(r);
    return d;
}

void ml__run_forget_after_fork(ml__run *r)
{
    if (r->sampler != NULL)
        ml__sampler_forget(r->sampler);
    ml_client_forget_after_fork(r->client);
    /* Plain Python references and memory: safe to release in the child. */
    ml__codemap_clear(&r->codemap);
    free(r);
}
