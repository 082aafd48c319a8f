/*
 * Queries over runs: a cache of run models (model.h), refreshed from the
 * journal when it grew, and the JSON answers the HTTP API serves. Loop
 * thread only.
 */
#ifndef ML_COLLECTOR_QUERY_H
#define ML_COLLECTOR_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "calls.h"
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

/* One run ready to query: its model (tables, status, logs; its sample
 * columns are moved into calls) and its call index. Borrowed from the
 * cache: valid until the next ml_query_* call that loads a run. */
typedef struct ml_qrun {
    const ml_run *run;
    ml_model *model;
    ml_calls *calls;
    double period; /* seconds per sample, never 0 */
} ml_qrun;

/* Query window and filters shared by the endpoints (us since start). */
typedef struct ml_qwindow {
    int64_t start, end;      /* end exclusive; INT64_MAX: to the end */
    const uint32_t *threads; /* NULL / nthreads 0: all */
    size_t nthreads;
    int width; /* pixels */
} ml_qwindow;

void ml_query_init(ml_query *q);

/* Frees every cached model. */
void ml_query_dispose(ml_query *q);

/* The model of run r, loaded or brought up to date from its journal.
 * Borrowed: valid until the next ml_query_* call. Returns NULL (and logs)
 * when the journal cannot be read. */
const ml_model *ml_query_model(ml_query *q, const ml_store *s, const ml_run *r);

/* The run r loaded or brought up to date, with its call index. Returns
 * NULL (logged) when the journal cannot be read. Borrowed. */
const ml_qrun *ml_query_get(ml_query *q, const ml_store *s, const ml_run *r);

/* Bytes held by the cached runs: *index gets the call indexes' share,
 * the rest is the models' tables, status ticks and logs (estimates of the
 * payload, without allocator overhead). */
size_t ml_query_bytes(const ml_query *q, size_t *index);

/* Drops the cached model of run id (after a delete). */
void ml_query_forget(ml_query *q, const char *id);

/* {"run": id, "events": [...]}: the log with resolved stacks, by time. */
json_t *ml_query_log(const ml_model *m, const ml_run *r);

/* [{"id","ident","native_id","name","samples","started","ended"}]. */
json_t *ml_query_threads(const ml_model *m);

/* The flame graph of a window: {"run","total","sample_period","root"},
 * each sample weighted by the sample period; nodes merged by function. */
json_t *ml_query_flamegraph_window(const ml_qrun *q, const ml_qwindow *w);

/* True when thread id passes the window's thread filter. */
bool ml_qwindow_has_thread(const ml_qwindow *w, uint32_t id);

/* The timeline answer as JSON text (malloc'd, *len bytes). */
char *ml_query_timeline(const ml_qrun *q, const ml_qwindow *w, size_t *len);

/* {"run","series":{...}}: status ticks of the window, at most width. */
json_t *ml_query_status(const ml_qrun *q, const ml_qwindow *w);

/* The design graph (modules and classes). */
json_t *ml_query_design(const ml_qrun *q);

/* The log of a window filtered by re (NULL: all). */
struct ml_regex;
typedef struct ml_regex ml_regex;
json_t *ml_query_log_window(const ml_qrun *q, const ml_qwindow *w, struct ml_regex *re);

/* Indexes (into the time-ordered log of the whole run) of the events
 * whose message or logger matches re. */
json_t *ml_query_log_matches(const ml_qrun *q, struct ml_regex *re);

/* Log event i of m (model order) as the /log answer shows it. */
json_t *ml_query_log_event(const ml_model *m, size_t i);

/* Every call of function name and the run's top anomalies. */
json_t *ml_query_calls(const ml_qrun *q, const char *name);

/* Frames, functions, calls and log events matching re. */
json_t *ml_query_search(const ml_qrun *q, struct ml_regex *re, const char *pattern);

/* Function-level time differences between q and base. */
json_t *ml_query_diff(const ml_qrun *q, const ml_qrun *base);

/* The inclusive time (us) and samples of one function. */
typedef struct ml_fn_total {
    uint64_t us, samples;
} ml_fn_total;

/* The aggregated inclusive time and samples of every function id of q
 * (each sample counted once per function, however deep the recursion): a
 * malloc'd array indexed by function (frame) id, m->nframes entries;
 * *samples: the run's samples with a Python stack. */
ml_fn_total *ml_query_function_totals(const ml_qrun *q, uint64_t *samples);

/* Splits a frame name "pkg.mod.Class.method" (flags: FrameFlag bits):
 * *mod_len is the length of the module part ("pkg.mod"), *cls_len the
 * length of module plus class ("pkg.mod.Class") or 0 when the function is
 * not in a class. A class is the first component that starts with an
 * upper-case letter after the first; a module body (<module>) is all
 * module. */
void ml_name_split(const char *name, uint32_t flags, size_t *mod_len, size_t *cls_len);

/* The name of a LogKind: "stdout", "stderr", "logging", "marker",
 * "analysis" or "unspecified". */
const char *ml_log_kind_name(uint32_t kind);

#endif
