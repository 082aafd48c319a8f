/*
 * Files opened while a run records, for the end-of-run "File Descriptors
 * Leaked" report (analysis.py): a C audit hook (PySys_AddAuditHook).
 *
 * Every audit event of the process goes through every hook, and some are
 * frequent: "builtins.id" on each id() (copy.deepcopy makes one per object),
 * "object.__getattr__", "open". A hook written in Python ran bytecode for
 * each: copy.deepcopy took 1.9 times as long, an open() 2.9 us more, and other
 * threads could take the GIL in the middle of the C code raising the event.
 * This hook compares the event name and returns; an "open" while a run
 * records costs a dict insert (the path, when, mode and the program's line
 * that opened it). The tracking itself (what is still open at the end) stays
 * in analysis.py.
 *
 * All state is guarded by the GIL: audit hooks run with it held, and so do
 * the two functions below. A hook cannot be removed; once tracking stops it
 * returns at its first test. Only the main interpreter is tracked.
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

/* Py_NewRef is 3.10's; the extension builds for 3.9 too. */
static PyObject *new_ref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

static struct {
    bool hooked, active, busy;
    PyObject *opened;     /* dict: path -> (seconds, mode, filename, line) */
    PyObject *own_dir;    /* frames under it are microlog's own, skipped */
    PyObject *stdlib_dir; /* the standard library's: skipped while others are left */
    Py_ssize_t max;       /* paths remembered; more are counted in dropped */
    unsigned long long dropped;
    int64_t started_us;
} of;

/* The path of open()'s first argument as a str, absolute (made so with
 * the current directory, not normalised); NULL for an fd, a failure, or
 * /proc (the report's own reading). New reference, no exception left. */
static PyObject *path_of(PyObject *file)
{
    PyObject *path = NULL;
    if (PyUnicode_Check(file)) {
        path = new_ref(file);
    } else if (PyBytes_Check(file)) {
        path = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(file), PyBytes_GET_SIZE(file));
    } else if (!PyLong_Check(file) && PyObject_HasAttrString(file, "__fspath__")) {
        PyObject *p = PyOS_FSPath(file);
        if (p != NULL && PyBytes_Check(p))
            path = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(p), PyBytes_GET_SIZE(p));
        else if (p != NULL && PyUnicode_Check(p))
            path = new_ref(p);
        Py_XDECREF(p);
    }
    const char *s = path ? PyUnicode_AsUTF8(path) : NULL;
    if (s == NULL || strncmp(s, "/proc/", 6) == 0) {
        Py_XDECREF(path);
        PyErr_Clear();
        return NULL;
    }
    if (s[0] != '/') {
        char cwd[PATH_MAX];
        PyObject *abs = getcwd(cwd, sizeof(cwd)) ? PyUnicode_FromFormat("%s/%U", cwd, path) : NULL;
        Py_DECREF(path);
        path = abs;
        PyErr_Clear();
    }
    return path;
}

/* The program's line that called open(): the innermost frame of the
 * calling thread outside microlog and frozen modules, and outside the
 * standard library (pathlib's open(), logging's FileHandler: the caller is
 * the program's line) unless only the standard library is left. Its
 * filename (new reference) and line; NULL if none. */
static PyObject *caller(int *line)
{
    PyObject *found = NULL;
    PyFrameObject *f = PyThreadState_GetFrame(PyThreadState_Get());
    while (f != NULL) {
        PyCodeObject *code = PyFrame_GetCode(f);
        PyObject *name = code->co_filename;
        const char *s = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        bool own = s == NULL || strncmp(s, "<frozen", 7) == 0 ||
                   PyUnicode_Tailmatch(name, of.own_dir, 0, PY_SSIZE_T_MAX, -1) == 1;
        bool stdlib = !own &&
                      PyUnicode_Tailmatch(name, of.stdlib_dir, 0, PY_SSIZE_T_MAX, -1) == 1 &&
                      strstr(s, "/site-packages/") == NULL && strstr(s, "/dist-packages/") == NULL;
        if (!own && (found == NULL || !stdlib)) {
            Py_XSETREF(found, new_ref(name));
            *line = PyFrame_GetLineNumber(f);
        }
        Py_DECREF(code);
        if (!own && !stdlib) {
            Py_DECREF(f);
            break;
        }
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    PyErr_Clear();
    return found;
}

static void note(PyObject *args)
{
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 2)
        return;
    PyObject *path = path_of(PyTuple_GET_ITEM(args, 0));
    if (path == NULL)
        return;
    if (PyDict_GET_SIZE(of.opened) >= of.max && !PyDict_Contains(of.opened, path)) {
        of.dropped++;
        Py_DECREF(path);
        PyErr_Clear();
        return;
    }
    int line = 0;
    PyObject *where = caller(&line);
    PyObject *mode = new_ref(PyTuple_GET_ITEM(args, 1));
    if (mode == Py_None && PyTuple_GET_SIZE(args) >= 3 && PyLong_Check(PyTuple_GET_ITEM(args, 2))) {
        /* os.open(): no mode, only flags; say what they allow. */
        long flags = PyLong_AsLong(PyTuple_GET_ITEM(args, 2));
        int access = (int)(flags & O_ACCMODE);
        bool append = (flags & O_APPEND) != 0;
        const char *m = access == O_WRONLY ? (append ? "a" : "w")
                        : access == O_RDWR ? (append ? "a+" : "r+")
                                           : "r";
        PyObject *text = PyErr_Occurred() ? NULL : PyUnicode_FromString(m);
        if (text != NULL)
            Py_SETREF(mode, text);
        PyErr_Clear();
    }
    PyObject *row = Py_BuildValue("(dOOi)", (double)(ml__mono_us() - of.started_us) / 1e6, mode,
                                  where ? where : Py_None, line);
    Py_DECREF(mode);
    if (row == NULL || PyDict_SetItem(of.opened, path, row) < 0)
        of.dropped++;
    Py_XDECREF(row);
    Py_XDECREF(where);
    Py_DECREF(path);
    PyErr_Clear();
}

static int audit_hook(const char *event, PyObject *args, void *data)
{
    (void)data;
    if (!of.active || event[0] != 'o' || strcmp(event, "open") != 0 || of.busy ||
        PyInterpreterState_Get() != PyInterpreterState_Main())
        return 0;
    /* busy: the path's __fspath__ or a frame's line may open files too. */
    of.busy = true;
    note(args);
    of.busy = false;
    return 0; /* never fail the program's open() */
}

PyObject *ml__open_files_start(PyObject *m, PyObject *args)
{
    (void)m;
    PyObject *own_dir, *stdlib_dir;
    Py_ssize_t max;
    if (!PyArg_ParseTuple(args, "UUn", &own_dir, &stdlib_dir, &max))
        return NULL;
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError, "open files are tracked in the main interpreter only");
        return NULL;
    }
    PyObject *opened = PyDict_New();
    if (opened == NULL)
        return NULL;
    if (!of.hooked) {
        /* An existing hook may refuse ours: -1 and no exception when it
         * raised an Exception (no report then), or the BaseException it
         * raised (KeyboardInterrupt...), which goes on to the caller. */
        if (PySys_AddAuditHook(audit_hook, NULL) < 0) {
            Py_DECREF(opened);
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_FALSE;
        }
        of.hooked = true;
    }
    Py_XSETREF(of.opened, opened);
    Py_XSETREF(of.own_dir, new_ref(own_dir));
    Py_XSETREF(of.stdlib_dir, new_ref(stdlib_dir));
    of.max = max;
    of.dropped = 0;
    of.started_us = ml__mono_us();
    of.active = true;
    Py_RETURN_TRUE;
}

PyObject *ml__open_files_stop(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    of.active = false;
    PyObject *opened = of.opened ? of.opened : PyDict_New();
    of.opened = NULL;
    if (opened == NULL)
        return NULL;
    PyObject *result = Py_BuildValue("(NK)", opened, of.dropped);
    of.dropped = 0;
    return result;
}
