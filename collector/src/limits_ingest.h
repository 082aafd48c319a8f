/*
 * Hosted-mode limits, so that one misbehaving client cannot hurt the
 * others: a per-token ingest rate (token bucket over payload bytes), a
 * maximum run size, a maximum message size and a maximum number of ingest
 * connections. A request over a limit is answered RESOURCE_EXHAUSTED with
 * a message naming the limit; the client keeps the data and retries later
 * (rate) or reports it once (size). Loop thread only.
 */
#ifndef ML_COLLECTOR_LIMITS_INGEST_H
#define ML_COLLECTOR_LIMITS_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map.h"

typedef struct ml_limits {
    uint64_t rate_bytes;        /* per token, bytes per second; 0: unlimited */
    uint64_t burst_bytes;       /* bucket size; 0: max(rate, largest message) */
    uint64_t max_run_bytes;     /* journal bytes per run; 0: unlimited */
    uint32_t max_message_bytes; /* one ingest request; 0: the protocol maximum */
    uint32_t max_connections;   /* ingest connections at once; 0: unlimited */
} ml_limits;

/* Per-token token buckets; keyed by the token text, so they outlive a
 * tokens-file reload. */
typedef struct ml_rate {
    ml_map buckets;
} ml_rate;

void ml_rate_init(ml_rate *r);
void ml_rate_dispose(ml_rate *r);

/* Takes len bytes from token's bucket at time now_ms (the loop clock).
 * Returns true when allowed; false (nothing taken) when the token is over
 * its rate, with *retry_ms set to when len bytes will be available. */
bool ml_rate_take(ml_rate *r, const ml_limits *l, const char *token, uint64_t len, uint64_t now_ms,
                  uint64_t *retry_ms);

/* Parses a byte count with an optional K, M or G suffix (powers of 1024).
 * Returns 0 or -EINVAL. */
int ml_parse_bytes(const char *s, uint64_t *out);

#endif
