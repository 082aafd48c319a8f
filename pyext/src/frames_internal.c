/*
 * Frame layer on the interpreter's own structures (layout.h: CPython 3.11
 * and 3.13+), so a GIL-path sample creates no Python object: the public
 * API would materialise a PyFrameObject for every frame it visits.
 * Unless ML_PYEXT_FRAMES_API forces the public-API layer of frames_api.c.
 */
#include "layout.h"

#ifdef ML_LAYOUT

const char ml__frames_impl[] = ML_LAYOUT_NAME;

/* A frame whose code has not started (before its first RESUME, when its
 * cells may not exist yet), and the interpreter's own entry frames: the
 * interpreter skips both in tracebacks, and so do we. */
static bool incomplete(_PyInterpreterFrame *f)
{
    enum ml_layout_owner owner = ml_layout_frame_owner(f);
    if (owner == ML_OWNER_ENTRY || owner == ML_OWNER_OTHER)
        return true;
    PyCodeObject *code = (PyCodeObject *)ml_layout_frame_code(f);
    intptr_t units = (intptr_t)(ml_layout_frame_instr(f) - ml_layout_code_units(code)) /
                     (intptr_t)sizeof(_Py_CODEUNIT);
    return owner != ML_OWNER_GENERATOR && units < ml_layout_code_first_traceable(code);
}

size_t ml__frames_collect(PyThreadState *ts, ml__rawframe *out, size_t cap, size_t *total)
{
    size_t n = 0, all = 0;
#if PY_VERSION_HEX < 0x030D0000
    _PyInterpreterFrame *f = ts->cframe ? ts->cframe->current_frame : NULL;
#else
    _PyInterpreterFrame *f = ts->current_frame;
#endif
    for (; f != NULL; f = f->previous) {
        if (incomplete(f))
            continue;
        if (n < cap) {
            PyCodeObject *code = (PyCodeObject *)ml_layout_frame_code(f);
            intptr_t units = (intptr_t)(ml_layout_frame_instr(f) - ml_layout_code_units(code)) /
                             (intptr_t)sizeof(_Py_CODEUNIT);
            out[n].code = code;
            out[n].globals = f->f_globals;
            out[n].key = (int)units * (int)sizeof(_Py_CODEUNIT);
            n++;
        }
        all++;
    }
    *total = all;
    return n;
}

uint32_t ml__frames_line(const ml__rawframe *f)
{
    /* A fresh 3.11 frame's prev_instr points one unit before the code: clamp. */
    int line = PyCode_Addr2Line(f->code, f->key < 0 ? 0 : f->key);
    return line > 0 ? (uint32_t)line : 0;
}

void ml__tstate_ids(PyThreadState *ts, unsigned long *ident, unsigned long *native_id)
{
    *ident = ts->thread_id;
    *native_id = ts->native_thread_id;
}

#endif
