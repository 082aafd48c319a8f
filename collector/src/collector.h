/*
 * micrologd as a unit: the store, the index, the query cache, the ingest
 * listener and the HTTP server on one libuv loop, plus the housekeeping
 * timer that flushes metadata and retires silent runs. main.c only parses
 * the command line and runs the loop; tests drive a collector on a loop of
 * their own. Everything here runs on the loop thread.
 *
 * Source layout (one concept per file):
 *   main.c          command line, signals, ready file
 *   collector.c     this unit: start/close, housekeeping, delete
 *   ingest.c        nng REP socket; hands requests to the loop (uv_async)
 *   ingest_rpc.c    envelope -> OpenRun / Batch / CloseRun -> reply
 *   validate.c      batch checks before anything is stored
 *   live.c          a run being written: open journal, defined ids, seqs
 *   journal.c       journal.mlj records (append, read, torn-tail cut)
 *   store.c         <data>/runs/<team>/<label>/<stamp>/ and run.json
 *   run.c           run metadata and its JSON
 *   runid.c         label / timestamp / run id validation
 *   index.c         runs in memory, regex filter
 *   model.c         a run's journal as tables, samples, logs
 *   query.c         model cache; log and threads answers
 *   flamegraph.c    the whole-run call tree
 *   http.c          h2o server, connections, static UI, built-in page
 *   http_api.c      the /api/v1 routes
 *   url.c, json.c, map.c, fsutil.c, mem.c, log.c, idset.h   helpers
 */
#ifndef ML_COLLECTOR_COLLECTOR_H
#define ML_COLLECTOR_COLLECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "index.h"
#include "query.h"
#include "store.h"

#define ML_COLLECTOR_VERSION "0.1.0"
#define ML_DEFAULT_HTTP "127.0.0.1:7777"
#define ML_DEFAULT_INGEST "tcp://127.0.0.1:0"
#define ML_DEFAULT_TEAM "local"
/* A live run whose client sent nothing for this long is marked incomplete. */
#define ML_LIVE_TIMEOUT_MS 60000
#define ML_HOUSEKEEPING_MS 1000

typedef struct ml_collector_config {
    const char *data_dir;         /* required */
    const char *team;             /* NULL: "local" */
    const char *http;             /* HOST:PORT; NULL: no HTTP server */
    const char *ingest;           /* nng URL; NULL: no ingest listener */
    const char *ingest_advertise; /* announced instead of the bound URL; NULL: bound URL */
    const char *ui_dir;           /* static files; NULL or missing: built-in page */
    bool allow_remote;            /* allow non-loopback listeners */
    uint32_t live_timeout_ms;     /* 0: ML_LIVE_TIMEOUT_MS */
    uint32_t housekeeping_ms;     /* 0: ML_HOUSEKEEPING_MS */
    int ingest_contexts;          /* 0: ML_INGEST_CONTEXTS */
} ml_collector_config;

typedef struct ml_http ml_http;
typedef struct ml_ingest ml_ingest;

typedef struct ml_collector {
    uv_loop_t *loop;
    char *team;
    char *ui_dir;
    char *ingest_advertise;
    uint32_t live_timeout_ms;
    ml_store store;
    ml_index index;
    ml_query query;
    ml_ingest *ingest; /* NULL when not listening */
    ml_http *http;     /* NULL when not serving */
    uv_timer_t housekeeping;
    bool closing;
    int close_pending; /* handles still closing */
    void (*closed_cb)(struct ml_collector *c);
} ml_collector;

/* Opens the store, loads the index, starts the listeners the config asks
 * for and the housekeeping timer. Returns 0, or -errno with a message
 * logged. Either way, end with ml_collector_close(), running the loop
 * until the closed callback, and ml_collector_dispose(). */
int ml_collector_start(ml_collector *c, uv_loop_t *loop, const ml_collector_config *cfg);

/* The ingest URL clients should dial (advertised or bound), or NULL. */
const char *ml_collector_ingest_url(const ml_collector *c);

/* The HTTP base URL, "http://HOST:PORT" with the real port, or NULL. */
const char *ml_collector_http_url(const ml_collector *c);

/* Stops the listeners and the timer, writes the metadata of every run
 * that changed and closes all journals. Handles close asynchronously:
 * closed(c) (may be NULL) is called from the loop once they are all
 * closed; then the caller may stop the loop and call
 * ml_collector_dispose(). Call once. */
void ml_collector_close(ml_collector *c, void (*closed)(ml_collector *c));

/* Frees what is left after ml_collector_close() and the loop has run. */
void ml_collector_dispose(ml_collector *c);

/* One housekeeping pass (also run by the timer): writes dirty run.json
 * files, marks live runs silent for live_timeout_ms incomplete and
 * releases their ingest state. */
void ml_collector_housekeeping(ml_collector *c);

/* Loads r's ingest state from its journal when not loaded yet. Returns 0
 * or -errno. */
int ml_collector_ensure_live(ml_collector *c, ml_run *r);

/* Deletes run r from disk, the index and the caches, and frees it.
 * Returns 0 or -errno (the run stays indexed when the files could not be
 * removed). */
int ml_collector_delete_run(ml_collector *c, ml_run *r);

/* True when host (an IP literal or "localhost") is a loopback address. */
bool ml_host_is_loopback(const char *host);

#endif
