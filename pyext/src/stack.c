/*
 * Turning a walked frame list into a stack id: code map lookups, frame ids
 * (cached per code object), root-first order and the truncation count.
 */
#include "internal.h"

uint32_t ml__stack_intern(ml__codemap *m, ml_client *c, const ml__rawframe *raw, size_t n,
                          size_t total, uint32_t *ids, int options, atomic_uint_fast64_t *errors)
{
    /* ids is filled from its end: raw is leaf first, a stack is root first. */
    size_t pos = ML__MAX_DEPTH;
    bool at_leaf = true;

    assert(n <= ML__MAX_DEPTH && n <= total);
    for (size_t i = 0; i < n; i++) {
        ml__code_info *ci = ml__codemap_get(m, c, raw[i].code, raw[i].globals);
        if (ci == NULL) {
            atomic_fetch_add(errors, 1);
            return 0;
        }
        if (ci->hidden)
            continue;
        /* A logging record's stack ends at the code that called logging. */
        if (at_leaf && (options & ML__STACK_SKIP_LOGGING) && ci->logging)
            continue;
        at_leaf = false;
        uint32_t id = ml__codemap_frame(ci, c, &raw[i]);
        if (id == 0) {
            atomic_fetch_add(errors, 1);
            return 0;
        }
        ids[--pos] = id;
    }
    if (pos == ML__MAX_DEPTH)
        return 0;
    uint32_t stack = ml_client_stack(c, ids + pos, ML__MAX_DEPTH - pos, (uint32_t)(total - n));
    if (stack == 0)
        atomic_fetch_add(errors, 1);
    return stack;
}
