/*
 * The code map: one entry per code object seen in a run, holding what a
 * frame needs (name and file string ids, first line, flags) so a sample
 * only hashes a pointer. Each entry keeps a strong reference to its code
 * object: a freed code object's address could otherwise be reused by a
 * different function and inherit its name.
 *
 * Invariant: the table is only modified with the GIL held and with no
 * Python call between finding a free slot and filling it, so two threads
 * interleaving on the GIL never see a half-built entry.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Modules whose frames are microlog's own machinery (and the runners it
 * starts the program through), left out of every stack as the original
 * does (config.IGNORE_MODULES). */
static const char *const hidden_modules[] = {
    /* and the package microlog */
    "runpy",
    "threading",
    "importlib._bootstrap",
    "importlib._bootstrap_external",
    "_frozen_importlib",
    "_frozen_importlib_external",
};

static bool module_is(const char *mod, const char *pkg)
{
    size_t n = strlen(pkg);
    return strncmp(mod, pkg, n) == 0 && (mod[n] == '\0' || mod[n] == '.');
}

static bool module_hidden(const char *mod)
{
    if (module_is(mod, "microlog"))
        return true;
    for (size_t i = 0; i < sizeof(hidden_modules) / sizeof(hidden_modules[0]); i++)
        if (strcmp(mod, hidden_modules[i]) == 0)
            return true;
    return false;
}

static size_t slot_of(const ml__codemap *m, const PyCodeObject *code)
{
    uintptr_t h = ((uintptr_t)code >> 4) * (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (m->cap - 1);
}

void ml__codemap_init(ml__codemap *m)
{
    memset(m, 0, sizeof(*m));
}

static int grow(ml__codemap *m)
{
    size_t old_cap = m->cap, cap = old_cap ? old_cap * 2 : 256;
    ml__code_info *old = m->slots, *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].code == NULL)
            continue;
        size_t j = slot_of(m, old[i].code);
        while (slots[j].code != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = old[i];
    }
    free(old);
    return 0;
}

/* UTF-8 of a str object or fallback; never leaves an exception set. */
static const char *utf8_or(PyObject *s, const char *fallback)
{
    const char *u = (s && PyUnicode_Check(s)) ? PyUnicode_AsUTF8(s) : NULL;
    if (u == NULL) {
        PyErr_Clear();
        return fallback;
    }
    return u;
}

/* "module.qualname"; for __main__ the script's name (basename without .py). */
static char *make_name(const char *module, const char *qualname, const char *file)
{
    char stem[256];
    if (strcmp(module, "__main__") == 0 && file[0] != '<') {
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        size_t len = strlen(base);
        if (len > 3 && strcmp(base + len - 3, ".py") == 0)
            len -= 3;
        if (len >= sizeof(stem))
            len = sizeof(stem) - 1;
        memcpy(stem, base, len);
        stem[len] = '\0';
        module = stem;
    }
    size_t n = strlen(module) + 1 + strlen(qualname) + 1;
    char *name = malloc(n);
    if (name != NULL)
        snprintf(name, n, "%s%s%s", module, module[0] ? "." : "", qualname);
    return name;
}

/* Absolute form of a code object's file name; "<frozen ...>" kept as is. */
static uint32_t intern_file(ml_client *c, const char *file)
{
    char buf[4096];
    if (file[0] == '/' || file[0] == '<' || getcwd(buf, sizeof(buf)) == NULL)
        return ml_client_string(c, file, strlen(file));
    size_t used = strlen(buf);
    if (file[0] == '.' && file[1] == '/')
        file += 2;
    snprintf(buf + used, sizeof(buf) - used, "/%s", file);
    return ml_client_string(c, buf, strlen(buf));
}

/* The module a code object runs in: globals' __name__, except that a module
 * run with -m (__name__ "__main__" and a __spec__) goes by its real name.
 * *ref receives a reference the caller drops once done with the result.
 * Only dict look-ups and an instance attribute: no Python code runs. */
static const char *module_name(PyObject *globals, PyObject **ref)
{
    if (globals == NULL || !PyDict_Check(globals))
        return "";
    const char *name = utf8_or(PyDict_GetItemString(globals, "__name__"), "");
    PyObject *spec =
        strcmp(name, "__main__") == 0 ? PyDict_GetItemString(globals, "__spec__") : NULL;
    if (spec != NULL && spec != Py_None) {
        *ref = PyObject_GetAttrString(spec, "name");
        if (*ref == NULL)
            PyErr_Clear();
        const char *real = utf8_or(*ref, NULL);
        if (real != NULL && real[0] != '\0')
            return real;
    }
    return name;
}

/* Fills everything but the slot position; Python calls happen only here. */
static int describe(ml__code_info *ci, ml_client *c, PyCodeObject *code, PyObject *globals)
{
#if PY_VERSION_HEX >= 0x030B0000
    const char *qualname = utf8_or(code->co_qualname, "?");
#else
    const char *qualname = utf8_or(code->co_name, "?");
#endif
    const char *file = utf8_or(code->co_filename, "<unknown>");
    PyObject *spec_name = NULL;
    const char *module = module_name(globals, &spec_name);

    ci->name_utf8 = make_name(module, qualname, file);
    ci->hidden = module_hidden(module);
    ci->logging = module_is(module, "logging");
    Py_XDECREF(spec_name); /* module is not used past this point */
    if (ci->name_utf8 == NULL)
        return -ENOMEM;
    ci->name = ml_client_string(c, ci->name_utf8, strlen(ci->name_utf8));
    ci->file = intern_file(c, file);
    ci->first_line = code->co_firstlineno > 0 ? (uint32_t)code->co_firstlineno : 0;
    ci->flags = strcmp(qualname, "<module>") == 0 ? ML__FRAME_FLAG_MODULE : 0;
    ci->last_key = -1;
    if (ci->name == 0 || ci->file == 0) {
        free(ci->name_utf8);
        return -ENOMEM;
    }
    return 0;
}

ml__code_info *ml__codemap_get(ml__codemap *m, ml_client *c, PyCodeObject *code, PyObject *globals)
{
    if (m->cap) {
        for (size_t j = slot_of(m, code); m->slots[j].code != NULL; j = (j + 1) & (m->cap - 1))
            if (m->slots[j].code == code)
                return &m->slots[j];
    }
    ml__code_info ci = {0};
    if (describe(&ci, c, code, globals) != 0)
        return NULL;
    /* From here on no Python code runs until the entry is in place. */
    if ((m->len + 1) * 2 > m->cap && grow(m) != 0) {
        free(ci.name_utf8);
        return NULL;
    }
    size_t j = slot_of(m, code);
    while (m->slots[j].code != NULL)
        j = (j + 1) & (m->cap - 1);
    Py_INCREF(code);
    ci.code = code;
    m->slots[j] = ci;
    m->len++;
    return &m->slots[j];
}

uint32_t ml__codemap_frame(ml__code_info *ci, ml_client *c, const ml__rawframe *f)
{
    if (ci->last_id != 0 && ci->last_key == f->key)
        return ci->last_id;
    uint32_t id =
        ml_client_frame(c, ci->name, ci->file, ml__frames_line(f), ci->first_line, ci->flags);
    if (id != 0) {
        ci->last_key = f->key;
        ci->last_id = id;
    }
    return id;
}

void ml__codemap_clear(ml__codemap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].code != NULL) {
            free(m->slots[i].name_utf8);
            Py_DECREF(m->slots[i].code);
        }
    }
    free(m->slots);
    ml__codemap_init(m);
}
