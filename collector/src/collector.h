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
 *   ingest_pipes.c  ingest connections and their idle clocks (idle timeout)
 *   ingest_rpc.c    envelope -> OpenRun / Batch / CloseRun -> reply
 *   validate.c      batch checks before anything is stored
 *   live.c          a run being written: open journal, defined ids, seqs
 *   journal.c       journal.mlj records (append, read, torn-tail cut)
 *   commit.c        group commit: the journals of many runs synced at once
 *   store.c         <data>/runs/<team>/<label>/<stamp>/ and run.json
 *   run.c           run metadata and its JSON
 *   runid.c         label / timestamp / run id validation
 *   index.c         runs in memory, regex filter, listing queries and paging
 *   s3.c            S3 client: libcurl multi on the loop, retries, multipart
 *   sigv4.c, xml.c  SigV4 signing (OpenSSL), S3 XML answers (expat)
 *   s3_sync.c       upload, bucket listing, fetch, delete of runs in S3
 *   cache.c         HTTP requests waiting for a remote run's fetch
 *   retention.c     --retain-days / --retain-bytes
 *   recording*.c    compaction of finished runs
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
#include "journal.h"
#include "map.h"
#include "query.h"
#include "store.h"

#define ML_COLLECTOR_VERSION "0.1.0"
#define ML_DEFAULT_HTTP "127.0.0.1:7777"
#define ML_DEFAULT_INGEST "tcp://127.0.0.1:0"
#define ML_DEFAULT_TEAM "local"
/* A live run whose client sent nothing for this long is marked incomplete. */
#define ML_LIVE_TIMEOUT_MS 60000
#define ML_HOUSEKEEPING_MS 1000
/* How often the spool directory is scanned for runs to import. */
#define ML_SPOOL_SCAN_MS 2000
/* libuv thread pool threads (UV_THREADPOOL_SIZE, unless set): the group
 * commit's concurrent journal syncs, compactions. */
#define ML_THREADPOOL_SIZE "64"
/* Compactions in flight at once (the rest wait for later housekeeping
 * passes): the thread pool is sized for the group commit's syncs, and a
 * compaction holds a whole run in memory. */
#define ML_COMPACT_MAX 4
/* An ingest connection that completed no request for this long is closed
 * (its client's dialer reconnects when it next sends). */
#define ML_INGEST_IDLE_TIMEOUT_MS 300000
/* At most this many run.json files of live runs whose only change is
 * progress (counts, end time) are rewritten per housekeeping pass; each
 * costs three syncs on the loop, and the journal has the same facts. */
#define ML_META_PROGRESS_WRITES 16
/* At shutdown, S3 uploads in flight get this long to finish before they
 * are aborted (the runs stay on disk and are uploaded at the next start). */
#define ML_DRAIN_TIMEOUT_MS 10000
/* How often the bucket is listed for runs other collectors uploaded. */
#define ML_S3_LIST_MS 30000

typedef struct ml_collector_config {
    const char *data_dir;          /* required */
    const char *team;              /* NULL: "local" */
    const char *http;              /* HOST:PORT; NULL: no HTTP server */
    const char *ingest;            /* nng URL; NULL: no ingest listener */
    const char *ingest_advertise;  /* announced instead of the bound URL; NULL: bound URL */
    const char *ui_dir;            /* static files; NULL or missing: built-in page */
    bool allow_remote;             /* allow non-loopback listeners */
    uint32_t live_timeout_ms;      /* 0: ML_LIVE_TIMEOUT_MS */
    uint32_t housekeeping_ms;      /* 0: ML_HOUSEKEEPING_MS */
    int ingest_contexts;           /* 0: ML_INGEST_CONTEXTS */
    uint32_t ingest_idle_ms;       /* 0: ML_INGEST_IDLE_TIMEOUT_MS; UINT32_MAX: never */
    const struct ml_s3_config *s3; /* the bucket (s3.h); NULL: local disk only */
    uint32_t s3_list_ms;           /* 0: ML_S3_LIST_MS */
    uint32_t drain_ms;             /* 0: ML_DRAIN_TIMEOUT_MS; UINT32_MAX: no drain */
    unsigned collector_id;         /* 1..ML_COLLECTOR_ID_MAX: partitions run stamps among
                                      the collectors of one bucket (runid.h); 0: derived
                                      from the host name when s3 is set, else unused */
    uint32_t retain_days;          /* 0: keep runs of any age */
    uint64_t retain_bytes;         /* per team; 0: no limit */
    const char *spool_dir;         /* clients' spool files to import (spool.h); NULL: none */
    struct ml_hosted *hosted;      /* hosted mode (hosted.h: tokens, limits, TLS), borrowed;
                                      NULL: standalone */
} ml_collector_config;

typedef struct ml_http ml_http;
typedef struct ml_ingest ml_ingest;
struct ml_s3;
struct pending_delete;
struct ml_s3_fetch;
struct ml_hosted;

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
    bool group_commit;     /* batches are synced by the group commit before acks */
    ml_journal **unsynced; /* journals with records awaiting the group sync (a ref each) */
    size_t nunsynced, capunsynced;
    uint64_t unsynced_group; /* number of the group being collected (commit.c) */
    char **unsynced_dirs;    /* directories with entries awaiting the group sync (owned) */
    size_t ndirs, capdirs;
    ml_map dirs_seen;   /* unsynced_dirs by path (keys borrowed from it) */
    bool log_wanted;    /* the group's replies need the index log synced */
    size_t meta_cursor; /* index position where the paced run.json writes resume */
    /* S3 (s3_sync.c); s3 is NULL without a bucket. */
    struct ml_s3 *s3;
    uv_timer_t s3_timer; /* periodic listing */
    uint32_t s3_list_ms;
    unsigned collector_id; /* 0 without a bucket; see ml_stamp_make() */
    uint32_t s3_round;     /* listings started */
    bool s3_listing;
    int s3_uploads;         /* in flight */
    uint32_t drain_ms;      /* shutdown: how long uploads in flight may take */
    bool s3_draining;       /* shutdown is waiting for uploads (s3_sync.c) */
    uv_timer_t drain_timer; /* initialised with the bucket */
    struct pending_delete *s3_deletes;
    struct ml_s3_fetch *s3_fetches;
    /* Retention (retention.c): 0 means no limit. */
    uint32_t retain_days;
    uint64_t retain_bytes;
    /* Spool import (spool.c): NULL when this collector imports none. */
    char *spool_dir;
    uint64_t spool_scan_at;   /* uv_now of the next periodic scan */
    struct ml_hosted *hosted; /* borrowed from the config; NULL: standalone */
    bool closing;
    int close_pending; /* handles still closing */
    bool nng_stuck;    /* the ingest socket did not close (ml_ingest_close): skip nng_fini() */
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

/* Group commit (commit.c): remembers that r's journal has records
 * appended without sync (ingest, between handling a request and sending
 * its reply). No-op without group commit. Loop thread. */
void ml_collector_note_unsynced(ml_collector *c, ml_run *r);

/* Group commit: the entries of directory path (created or renamed files
 * and directories) must be durable before the replies of the requests
 * handled since the last group are sent; the group fsyncs it on the
 * thread pool. Without group commit the fsync is done now. Returns 0 or
 * that fsync's -errno. Loop thread. */
int ml_collector_note_dir(ml_collector *c, const char *path);

/* Group commit: the index log's unsynced lines (ml_store_write_meta_
 * unsynced()) must be durable before the replies of the requests handled
 * since the last group; the group fdatasyncs the log once for all of
 * them. Without group commit the log is synced now. Returns 0 or -errno.
 * Loop thread. */
int ml_collector_note_index_log(ml_collector *c);

/* The ingest flush hook (ingest.h): takes the journals noted so far and
 * fdatasyncs them concurrently on the libuv thread pool, then completes
 * the group with ml_ingest_flushed() from the loop: 0 when every one is
 * durable, else the first -errno (a journal whose sync failed is cut
 * back and broken; its run reloads its ingest state on the next request).
 * Holds a close_pending reference while in flight. Loop thread. */
void ml_collector_commit(void *collector, ml_ingest *in);

/* Makes every noted journal, directory and the index log durable now, on
 * the loop (spool import). They stay noted for the next group commit (a
 * no-op for them then, unless this failed). Returns 0 or the first -errno. Loop thread. */
int ml_collector_sync(ml_collector *c);

/* Drops the journals, directories and log noted and not yet handed to a group commit (their
 * records are not acknowledged). Loop thread; collector close. */
void ml_collector_drop_unsynced(ml_collector *c);

/* Loads r's ingest state from its journal when not loaded yet, or again
 * when its journal is broken (a failed sync cut records away). Returns 0
 * or -errno. */
int ml_collector_ensure_live(ml_collector *c, ml_run *r);

/* Deletes run r everywhere it is stored: its objects in the bucket (run.json
 * first; retried until they are gone), then from disk, the index and the
 * caches, and frees it.
 * Returns 0 or -errno (the run stays indexed when the files could not be
 * removed). */
int ml_collector_delete_run(ml_collector *c, ml_run *r);

/* Deletes run r from this collector only (disk, index, caches), not from
 * the bucket, and frees it. Returns 0 or -errno. */
int ml_collector_delete_run_local(ml_collector *c, ml_run *r);

/* Schedules the compaction of a finished run (journal -> recording) on
 * the thread pool; no-op for a live, compacting or recorded run. Returns
 * 0 or -errno (recording_task.c). */
int ml_collector_compact(ml_collector *c, ml_run *r);

/* Called on the loop once r's recording is durable and its journal gone:
 * starts the S3 upload when a bucket is configured. */
void ml_collector_run_recorded(ml_collector *c, ml_run *r);

/* Drops one close_pending reference (an async job finished). */
void ml_collector_release_pending(ml_collector *c);

/* True when host (an IP literal or "localhost") is a loopback address. */
bool ml_host_is_loopback(const char *host);

#endif
