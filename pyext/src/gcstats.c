/*
 * Garbage collector statistics for the end-of-run analysis, gathered by a
 * gc.callbacks entry written in C. A Python callback would run bytecode in
 * the middle of whatever allocation triggered the collection, letting other
 * threads take the GIL there; some of CPython's C code (TextIOWrapper's
 * write buffer) loses data when that happens. A C callable runs no bytecode.
 */
#include "internal.h"

#include <string.h>

/* Reads an int from info[key]; 0 if absent. No Python code runs. */
static uint64_t info_count(PyObject *info, const char *key)
{
    PyObject *v = PyDict_Check(info) ? PyDict_GetItemString(info, key) : NULL;
    long long n = (v && PyLong_Check(v)) ? PyLong_AsLongLong(v) : 0;
    if (n < 0) {
        PyErr_Clear();
        return 0;
    }
    return (uint64_t)n;
}

void ml__gc_stats_note(ml__gc_stats *g, PyObject *phase, PyObject *info)
{
    const char *p = PyUnicode_Check(phase) ? PyUnicode_AsUTF8(phase) : NULL;
    if (p == NULL) {
        PyErr_Clear();
        return;
    }
    if (strcmp(p, "start") == 0) {
        g->started_us = ml__mono_us();
    } else if (strcmp(p, "stop") == 0 && g->started_us != 0) {
        g->duration_us += ml__mono_us() - g->started_us;
        g->started_us = 0;
        g->count++;
        g->collected += info_count(info, "collected");
        g->uncollectable += info_count(info, "uncollectable");
    }
}

PyObject *ml__gc_stats_dict(const ml__gc_stats *g)
{
    return Py_BuildValue("{s:K,s:d,s:K,s:K}", "count", (unsigned long long)g->count, "duration",
                         (double)g->duration_us / 1e6, "collected",
                         (unsigned long long)g->collected, "uncollectable",
                         (unsigned long long)g->uncollectable);
}
