/*
 * The sampler's measure of itself: clocks and the ring of per-thread walk
 * durations whose median the benchmarks report.
 */
#include "internal.h"

#include <stdlib.h>
#include <time.h>

int64_t ml__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ml__thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

uint32_t ml__cost_ring_median(const ml__cost_ring *r)
{
    uint64_t count = ml__cost_ring_count(r);
    size_t n = count < ML__COST_RING ? (size_t)count : ML__COST_RING;
    if (n == 0)
        return 0;
    uint32_t *v = malloc(n * sizeof(*v));
    if (v == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        v[i] = atomic_load_explicit(&r->ns[i], memory_order_relaxed);
    qsort(v, n, sizeof(*v), cmp_u32);
    uint32_t m = v[n / 2];
    free(v);
    return m;
}
