/*
 * Allocation helpers for the collector. The collector is a daemon of its
 * own: running out of memory is fatal there (unlike in the client, which
 * lives inside someone else's program and must never abort). Every helper
 * either returns usable memory or prints a message and aborts.
 * Any thread.
 */
#ifndef ML_COLLECTOR_MEM_H
#define ML_COLLECTOR_MEM_H

#include <stddef.h>

/* Prints "out of memory" and aborts. */
void ml_oom(size_t n) __attribute__((noreturn));

/* malloc(n) (n == 0 allocates one byte); never returns NULL. */
void *ml_xmalloc(size_t n);

/* calloc(count, size) with overflow check; never returns NULL. */
void *ml_xcalloc(size_t count, size_t size);

/* realloc(p, n); never returns NULL. */
void *ml_xrealloc(void *p, size_t n);

/* Grows *p (an array of *cap elements of elem bytes) so that it holds at
 * least need elements, doubling the capacity. */
void ml_xgrow(void **p, size_t *cap, size_t need, size_t elem);

/* strdup(s); s == NULL gives "". The caller frees. */
char *ml_xstrdup(const char *s);

/* strndup(s, n). The caller frees. */
char *ml_xstrndup(const char *s, size_t n);

/* A formatted string, malloc'd; the caller frees. */
char *ml_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
