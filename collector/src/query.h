/*
 * Queries over runs: a cache of run models (model.h), refreshed from the
 * journal when it grew, and the JSON answers the HTTP API serves. Loop
 * thread only.
 */
#ifndef ML_COLLECTOR_QUERY_H
#define ML_COLLECTOR_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "map.h"
#include "model.h"
#include "run.h"
#include "store.h"

/* Models kept in memory at most; the least recently used goes first. */
#define ML_QUERY_CACHE_MAX 16

typedef struct ml_query {
    ml_map models;  /* run id -> cache entry */
    uint64_t clock; /* use counter for LRU */
} ml_query;

void ml_query_init(ml_query *q);

/* Frees every cached model. */
void ml_query_dispose(ml_query *q);

/* The model of run r, loaded or brought up to date from its journal.
 * Borrowed: valid until the next ml_query_* call. Returns NULL (and logs)
 * when the journal cannot be read. */
const ml_model *ml_query_model(ml_query *q, const ml_store *s, const ml_run *r);

/* Drops the cached model of run id (after a delete). */
void ml_query_forget(ml_query *q, const char *id);

/* {"run": id, "events": [...]}: the log with resolved stacks, by time. */
json_t *ml_query_log(const ml_model *m, const ml_run *r);

/* [{"id","ident","native_id","name","samples","started","ended"}]. */
json_t *ml_query_threads(const ml_model *m);

/* {"run": id, "total": s, "root": {...}}: the whole-run call tree, each
 * sample weighted by the sample period. threads (n entries) restricts it to
 * those thread ids; n == 0 means all threads. */
json_t *ml_query_flamegraph(const ml_model *m, const ml_run *r, const uint32_t *threads, size_t n);

/* The name of a LogKind: "stdout", "stderr", "logging", "marker",
 * "analysis" or "unspecified". */
const char *ml_log_kind_name(uint32_t kind);

#endif
