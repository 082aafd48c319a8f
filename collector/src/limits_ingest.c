/*
 * Per-token token buckets (limits.h).
 */
#include "limits_ingest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "wire.h"

typedef struct bucket {
    char *token; /* the map key, owned */
    double level;
    uint64_t at_ms;
} bucket;

void ml_rate_init(ml_rate *r)
{
    ml_map_init(&r->buckets);
}

void ml_rate_dispose(ml_rate *r)
{
    void *v;
    for (size_t pos = ml_map_next(&r->buckets, 0, &v); pos;
         pos = ml_map_next(&r->buckets, pos, &v)) {
        bucket *b = v;
        free(b->token);
        free(b);
    }
    ml_map_dispose(&r->buckets);
}

bool ml_rate_take(ml_rate *r, const ml_limits *l, const char *token, uint64_t len, uint64_t now_ms,
                  uint64_t *retry_ms)
{
    if (l->rate_bytes == 0)
        return true;
    double cap = (double)(l->burst_bytes ? l->burst_bytes : l->rate_bytes);
    bucket *b = ml_map_get(&r->buckets, token);
    if (b == NULL) {
        b = ml_xcalloc(1, sizeof(*b));
        b->token = ml_xstrdup(token);
        b->level = cap;
        b->at_ms = now_ms;
        ml_map_put(&r->buckets, b->token, b);
    }
    if (now_ms > b->at_ms) {
        b->level += (double)(now_ms - b->at_ms) * (double)l->rate_bytes / 1000.0;
        if (b->level > cap)
            b->level = cap;
        b->at_ms = now_ms;
    }
    /* A message larger than the bucket could never pass: let it through
     * once the bucket is full, leaving the bucket in debt. */
    double need = (double)len > cap ? cap : (double)len;
    if (b->level >= need) {
        b->level -= (double)len;
        return true;
    }
    *retry_ms = (uint64_t)((need - b->level) * 1000.0 / (double)l->rate_bytes) + 1;
    return false;
}

int ml_parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1ull << 30, end++;
    if (*end != '\0' || v == 0 || v > (~0ull) / mult)
        return -EINVAL;
    *out = v * mult;
    return 0;
}
