/*
 * Frame layer for CPython 3.11: reads the interpreter's own frame structures
 * (_PyInterpreterFrame), so a sample creates no Python object: the public
 * API would materialise a PyFrameObject for every frame it visits.
 *
 * Compiled only for 3.11 (the layout changes in every minor version) and
 * unless ML_PYEXT_FRAMES_API forces the public-API layer of frames_api.c.
 */
#include "internal.h"

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(ML_PYEXT_FRAMES_API)

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE

const char ml__frames_impl[] = "cpython-3.11";

size_t ml__frames_collect(PyThreadState *ts, ml__rawframe *out, size_t cap, size_t *total)
{
    size_t n = 0, all = 0;
    _PyInterpreterFrame *f = ts->cframe ? ts->cframe->current_frame : NULL;

    for (; f != NULL; f = f->previous) {
        /* A frame is incomplete until its first RESUME: its code may not
         * even have its cells yet. The interpreter skips them too. */
        if (_PyFrame_IsIncomplete(f))
            continue;
        if (n < cap) {
            out[n].code = f->f_code;
            out[n].globals = f->f_globals;
            out[n].key = _PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT);
            n++;
        }
        all++;
    }
    *total = all;
    return n;
}

uint32_t ml__frames_line(const ml__rawframe *f)
{
    /* A fresh frame's prev_instr points one unit before the code: clamp. */
    int line = PyCode_Addr2Line(f->code, f->key < 0 ? 0 : f->key);
    return line > 0 ? (uint32_t)line : 0;
}

void ml__tstate_ids(PyThreadState *ts, unsigned long *ident, unsigned long *native_id)
{
    *ident = ts->thread_id;
    *native_id = ts->native_thread_id;
}

#endif
