/*
 * _native._walk(): shows what the sampler records for one thread, through
 * the same frame layer and code map, so tests can check names, lines and
 * hidden frames without a collector.
 */
#include "internal.h"

typedef struct walked {
    const char *name;   /* owned by the code map entry */
    PyCodeObject *code; /* kept alive by the code map */
    uint32_t line, flags;
} walked;

static PyThreadState *find_thread(PyInterpreterState *interp, unsigned long ident)
{
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts;
         ts = PyThreadState_Next(ts)) {
        unsigned long id, native;
        ml__tstate_ids(ts, &id, &native);
        if (id == ident)
            return ts;
    }
    return NULL;
}

/* Phase 1, no Python object created: frames may vanish once one is. */
static size_t collect(ml__run *r, PyThreadState *ts, walked *out, size_t *truncated)
{
    ml__rawframe raw[ML__MAX_DEPTH];
    size_t total, n = ml__frames_collect(ts, raw, ML__MAX_DEPTH, &total), k = 0;
    for (size_t i = n; i-- > 0;) {
        ml__code_info *ci = ml__codemap_get(&r->codemap, r->client, raw[i].code, raw[i].globals);
        if (ci == NULL || ci->hidden)
            continue;
        out[k].name = ci->name_utf8;
        out[k].code = ci->code;
        out[k].line = ml__frames_line(&raw[i]);
        out[k].flags = ci->flags;
        k++;
    }
    *truncated = total - n;
    return k;
}

PyObject *ml__walk(ml__run *r, PyObject *args)
{
    PyObject *ident = Py_None;
    if (!PyArg_ParseTuple(args, "|O:_walk", &ident))
        return NULL;
    PyThreadState *ts = PyThreadState_Get();
    if (ident != Py_None) {
        unsigned long id = PyLong_AsUnsignedLong(ident);
        if (id == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
        if ((ts = find_thread(r->interp, id)) == NULL)
            return PyErr_Format(PyExc_LookupError, "no Python thread %lu", id);
    }
    walked w[ML__MAX_DEPTH];
    size_t truncated, k = collect(r, ts, w, &truncated);

    PyObject *list = PyList_New((Py_ssize_t)k);
    for (size_t i = 0; list != NULL && i < k; i++) {
        PyObject *t = Py_BuildValue("(sOII)", w[i].name, w[i].code->co_filename,
                                    (unsigned)w[i].line, (unsigned)w[i].flags);
        if (t == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list ? Py_BuildValue("(Nn)", list, (Py_ssize_t)truncated) : NULL;
}
