/*
 * The interpreter's own structures, for the two families the extension
 * reads directly: CPython 3.11 and CPython 3.13 or later (3.13, 3.14,
 * 3.15; with or without the GIL). Everything that differs between
 * versions is here, as small inline accessors over copies of frames; the
 * walker (fastwalk.c) and the GIL-path frame layer (frames_internal.c)
 * use only these.
 *
 * ML_LAYOUT is defined when the running interpreter has such a layer
 * (3.12 and pre-3.11 do not: the public API serves them, frames_api.c).
 */
#ifndef ML_PYEXT_LAYOUT_H
#define ML_PYEXT_LAYOUT_H

#include "internal.h"

#if !defined(ML_PYEXT_FRAMES_API) &&                                                               \
    ((PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000) ||                              \
     (PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x03100000))
#define ML_LAYOUT 1

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#if PY_VERSION_HEX >= 0x030D0000
#include "internal/pycore_code.h"
#include "internal/pycore_genobject.h"
#include "internal/pycore_tstate.h"
#endif
#undef Py_BUILD_CORE

#if PY_VERSION_HEX < 0x030D0000
#define ML_LAYOUT_NAME "cpython-3.11"
#elif defined(Py_GIL_DISABLED)
#define ML_LAYOUT_NAME "cpython-3.13t"
#else
#define ML_LAYOUT_NAME "cpython-3.13+"
#endif

/* The part of a frame the walker reads: everything before localsplus. */
#define ML_FRAME_HEAD offsetof(_PyInterpreterFrame, localsplus)

/* From a generator's frame back to its frame state (an int8 that precedes
 * the frame in the generator object). */
#define ML_GEN_STATE_BACK (offsetof(PyGenObject, gi_iframe) - offsetof(PyGenObject, gi_frame_state))

/* The runtime's thread-list lock (HEAD_LOCK): a thread state is unlinked
 * under it before anything of it is freed. */
static inline void ml_layout_head_lock(void)
{
#if PY_VERSION_HEX < 0x030D0000
    PyThread_acquire_lock(_PyRuntime.interpreters.mutex, WAIT_LOCK);
#else
    PyMutex_Lock(&_PyRuntime.interpreters.mutex);
#endif
}

static inline void ml_layout_head_unlock(void)
{
#if PY_VERSION_HEX < 0x030D0000
    PyThread_release_lock(_PyRuntime.interpreters.mutex);
#else
    PyMutex_Unlock(&_PyRuntime.interpreters.mutex);
#endif
}

static inline PyThreadState *ml_layout_threads(PyInterpreterState *interp)
{
    return interp->threads.head;
}

/* Where the thread's current frame pointer is read (3.13+: in the thread
 * state itself; 3.11 reads it through ts->cframe, fastwalk.c). */
#if PY_VERSION_HEX >= 0x030D0000
static inline uintptr_t ml_layout_current_ref(const PyThreadState *ts, bool *in_tstate)
{
    *in_tstate = true;
    return (uintptr_t)&ts->current_frame;
}
#endif

/* The frame a complete chain of ts ends at when the interpreter marks it
 * (3.15: the base frame in the thread state), else 0. */
static inline uintptr_t ml_layout_base_frame(const PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030F0000
    return (uintptr_t) & ((const _PyThreadStateImpl *)ts)->base_frame;
#else
    (void)ts;
    return 0;
#endif
}

/* Where a frame keeps what the walker reads. */
#if PY_VERSION_HEX < 0x030D0000
#define ML_FRAME_CODE_OFF offsetof(_PyInterpreterFrame, f_code)
/* 3.11 keeps the unit before the next one to run, 3.13+ the one running. */
#define ML_FRAME_INSTR_OFF offsetof(_PyInterpreterFrame, prev_instr)
#else
#define ML_FRAME_CODE_OFF offsetof(_PyInterpreterFrame, f_executable)
#define ML_FRAME_INSTR_OFF offsetof(_PyInterpreterFrame, instr_ptr)
#endif
#define ML_FRAME_PREV_OFF offsetof(_PyInterpreterFrame, previous)
#define ML_FRAME_OWNER_OFF offsetof(_PyInterpreterFrame, owner)

/* The code object's address from the word at ML_FRAME_CODE_OFF. */
static inline uintptr_t ml_layout_code_untag(uintptr_t word)
{
#if PY_VERSION_HEX >= 0x030E0000
    return word & ~(uintptr_t)3; /* a _PyStackRef: the low bits are tags */
#else
    return word;
#endif
}

enum ml_layout_owner {
    ML_OWNER_THREAD,    /* in a datastack chunk of the thread */
    ML_OWNER_GENERATOR, /* in a generator, coroutine or async generator */
    ML_OWNER_ENTRY,     /* the interpreter's own frame at an entry from C (3.13+), or the
                           thread's base frame (3.15): no code of the program */
    ML_OWNER_OTHER,     /* a frame object's copy: never part of a running chain */
};

static inline enum ml_layout_owner ml_layout_owner_of(int owner)
{
    switch (owner) {
    case FRAME_OWNED_BY_THREAD:
        return ML_OWNER_THREAD;
    case FRAME_OWNED_BY_GENERATOR:
        return ML_OWNER_GENERATOR;
#if PY_VERSION_HEX >= 0x030F0000
    case FRAME_OWNED_BY_INTERPRETER:
        return ML_OWNER_ENTRY;
#elif PY_VERSION_HEX >= 0x030E0000
    case FRAME_OWNED_BY_INTERPRETER:
    case FRAME_OWNED_BY_CSTACK:
        return ML_OWNER_ENTRY;
#elif PY_VERSION_HEX >= 0x030D0000
    case FRAME_OWNED_BY_CSTACK:
        return ML_OWNER_ENTRY;
#endif
    default:
        return ML_OWNER_OTHER;
    }
}

/* The same, on a frame the caller may dereference (the GIL path). */
static inline uintptr_t ml_layout_frame_code(const _PyInterpreterFrame *f)
{
    return ml_layout_code_untag(*(const uintptr_t *)((const char *)f + ML_FRAME_CODE_OFF));
}

static inline uintptr_t ml_layout_frame_instr(const _PyInterpreterFrame *f)
{
    return *(const uintptr_t *)((const char *)f + ML_FRAME_INSTR_OFF);
}

static inline enum ml_layout_owner ml_layout_frame_owner(const _PyInterpreterFrame *f)
{
    return ml_layout_owner_of(f->owner);
}

/* A generator's frame is on a thread's stack only while it executes. */
static inline bool ml_layout_gen_executing(int8_t state)
{
    return state == FRAME_EXECUTING;
}

/* Instruction units (_Py_CODEUNIT) before the first one a frame counts as
 * started at (its first RESUME), and the address of the first unit. */
static inline int32_t ml_layout_code_first_traceable(PyCodeObject *code)
{
    return code->_co_firsttraceable;
}

static inline uintptr_t ml_layout_code_units(PyCodeObject *code)
{
    return (uintptr_t)_PyCode_CODE(code);
}

/* Datastack chunks. */
static inline uintptr_t ml_layout_chunk_data(uintptr_t chunk)
{
    return chunk + offsetof(_PyStackChunk, data);
}

/* A thread's first frame sits one slot into its root chunk (push_chunk()
 * skips the first slot of the root chunk so it is never popped). */
static inline uintptr_t ml_layout_first_frame(uintptr_t root_chunk)
{
    return ml_layout_chunk_data(root_chunk) + sizeof(PyObject *);
}

#endif /* layout available */
#endif /* ML_PYEXT_LAYOUT_H */
