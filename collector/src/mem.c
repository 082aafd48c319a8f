#include "mem.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ml_oom(size_t n)
{
    fprintf(stderr, "micrologd: out of memory (%zu bytes)\n", n);
    abort();
}

void *ml_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        ml_oom(n);
    return p;
}

void *ml_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        ml_oom(count * size);
    return p;
}

void *ml_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        ml_oom(n);
    return q;
}

void ml_xgrow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem)
        ml_oom(SIZE_MAX);
    *p = ml_xrealloc(*p, ncap * elem);
    *cap = ncap;
}

char *ml_xstrdup(const char *s)
{
    return ml_xstrndup(s ? s : "", s ? strlen(s) : 0);
}

char *ml_xstrndup(const char *s, size_t n)
{
    char *d = ml_xmalloc(n + 1);
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ml_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        ml_oom(0);
    char *s = ml_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
