/*
 * Frame layer on the public C API, for the interpreters layout.h does not
 * know (3.12, before 3.11), and for any when built with ML_PYEXT_FRAMES_API.
 * It materialises frame objects, so it allocates per sample;
 * frames_internal.c avoids that where the layout is known.
 */
#include "layout.h"

#ifndef ML_LAYOUT

#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h> /* struct _frame (f_globals) is public before 3.11 */
#endif

const char ml__frames_impl[] = "c-api";

static PyObject *frame_globals(PyFrameObject *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    /* New reference; the frame keeps its globals alive, so the pointer stays
     * valid after the decref for as long as the frame runs. */
    PyObject *g = PyFrame_GetGlobals(f);
    Py_XDECREF(g);
    return g;
#else
    return f->f_globals;
#endif
}

size_t ml__frames_collect(PyThreadState *ts, ml__rawframe *out, size_t cap, size_t *total)
{
    size_t n = 0, all = 0;
    PyFrameObject *f = PyThreadState_GetFrame(ts); /* new reference */

    while (f != NULL) {
        if (n < cap) {
            /* Borrowed after the decref: the running frame holds its code. */
            PyCodeObject *code = PyFrame_GetCode(f);
            Py_DECREF(code);
            out[n].code = code;
            out[n].globals = frame_globals(f);
            out[n].key = PyFrame_GetLineNumber(f);
            n++;
        }
        all++;
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    *total = all;
    return n;
}

uint32_t ml__frames_line(const ml__rawframe *f)
{
    return f->key > 0 ? (uint32_t)f->key : 0;
}

void ml__tstate_ids(PyThreadState *ts, unsigned long *ident, unsigned long *native_id)
{
    *ident = ts->thread_id;
#if PY_VERSION_HEX >= 0x030B0000
    *native_id = ts->native_thread_id;
#else
    *native_id = 0;
#endif
}

#endif
