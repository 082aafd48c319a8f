/*
 * Counted allocation for the interning tables and the batch columns. The
 * counter makes "steady-state recording does not allocate" testable; the
 * budget lets the tests make the n-th allocation fail.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

atomic_ulong ml__alloc_count;
atomic_long ml__alloc_budget = -1;

/* False when the test budget forbids this allocation. */
static bool alloc_allowed(void)
{
    atomic_fetch_add_explicit(&ml__alloc_count, 1, memory_order_relaxed);
    long b = atomic_load_explicit(&ml__alloc_budget, memory_order_relaxed);
    while (b >= 0) {
        if (b == 0)
            return false;
        if (atomic_compare_exchange_weak(&ml__alloc_budget, &b, b - 1))
            return true;
    }
    return true;
}

void *ml__malloc(size_t n)
{
    return alloc_allowed() ? malloc(n ? n : 1) : NULL;
}

void *ml__calloc(size_t n, size_t size)
{
    return alloc_allowed() ? calloc(n ? n : 1, size ? size : 1) : NULL;
}

void *ml__realloc(void *p, size_t n)
{
    return alloc_allowed() ? realloc(p, n ? n : 1) : NULL;
}

void ml__free(void *p)
{
    free(p);
}

int ml__grow(void **items, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem)
            return -ENOMEM;
        ncap *= 2;
    }
    void *p = ml__realloc(*items, ncap * elem);
    if (p == NULL)
        return -ENOMEM;
    *items = p;
    *cap = ncap;
    return 0;
}
