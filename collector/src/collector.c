#include "collector.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include "http.h"
#include "ingest.h"
#include "spool.h"
#include "live.h"
#include "log.h"
#include "mem.h"
#include "retention.h"
#include "runid.h"
#include "s3.h"
#include "s3_sync.h"

bool ml_host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
        return true;
    struct sockaddr_in sa;
    return uv_ip4_addr(host, 0, &sa) == 0 && (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
}

/* Whether an nng URL listens beyond this machine. */
static bool ingest_is_remote(const char *url)
{
    nng_url *u;
    if (nng_url_parse(&u, url) != 0)
        return false; /* nng_listen reports the bad URL */
    bool remote = false;
    if (strncmp(u->u_scheme, "tcp", 3) == 0 || strncmp(u->u_scheme, "ws", 2) == 0 ||
        strncmp(u->u_scheme, "tls", 3) == 0)
        remote = u->u_hostname == NULL || !ml_host_is_loopback(u->u_hostname);
    nng_url_free(u);
    return remote;
}

static void on_housekeeping(uv_timer_t *t)
{
    ml_collector_housekeeping(t->data);
}

/* A live run listed at start-up whose journal is missing or holds no
 * OpenRun record was never acknowledged: a crash came before the group
 * commit that syncs them both, while the index log line it also syncs
 * reached the disk. */
static bool never_acked(ml_collector *c, ml_run *r, int live_rv)
{
    if (r->status != ML_RUN_LIVE || r->recorded || r->remote)
        return false;
    if (live_rv == -ENOENT)
        return true;
    return live_rv == 0 && ml_journal_size(r->live->journal) <= ML_JOURNAL_HEADER_SIZE;
}

static int load_index(ml_collector *c)
{
    int n = ml_index_load(&c->index, &c->store);
    if (n < 0) {
        ml_error("cannot read the runs under %s: %s", c->store.runs_dir, strerror(-n));
        return n;
    }
    /* Runs left live by an earlier collector get the full timeout for
     * their client to come back before they are marked incomplete. */
    uint64_t now = uv_now(c->loop);
    size_t live = 0, nghosts = 0, capghosts = 0;
    ml_run **ghosts = NULL;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&c->index.by_id, pos, &v)) != 0;) {
        ml_run *r = v;
        r->last_activity = now;
        /* After a crash run.json may be behind its journal (or rebuilt
         * from it): recompute the progress of every unfinished run now, so
         * the index is exact and a torn journal tail is cut before any
         * client appends. */
        if (r->status == ML_RUN_LIVE || r->dirty) {
            int rv = ml_collector_ensure_live(c, r);
            if (never_acked(c, r, rv)) {
                ml_xgrow((void **)&ghosts, &capghosts, nghosts + 1, sizeof(ml_run *));
                ghosts[nghosts++] = r;
                continue;
            }
            ml_live_release(r);
            if (rv == 0 && r->dirty)
                ml_store_write_meta(&c->store, r);
        }
        live += r->status == ML_RUN_LIVE;
    }
    for (size_t i = 0; i < nghosts; i++) {
        ml_warn("run %s: its OpenRun never became durable (crash before its reply); dropped",
                ghosts[i]->id);
        ml_collector_delete_run_local(c, ghosts[i]);
    }
    free(ghosts);
    ml_info("index: %d runs (%zu live) under %s", n, live, c->store.runs_dir);
    return 0;
}

static int start_listeners(ml_collector *c, const ml_collector_config *cfg)
{
    int rv;
    if (cfg->ingest) {
        if (!cfg->allow_remote && ingest_is_remote(cfg->ingest)) {
            ml_error("ingest: refusing to listen on %s without --allow-remote (standalone mode "
                     "is loopback only)",
                     cfg->ingest);
            return -EACCES;
        }
        rv = ml_ingest_start(c->loop, cfg->ingest, cfg->ingest_contexts, ml_ingest_handle, c,
                             cfg->hosted, &c->ingest);
        if (rv != 0)
            return rv;
        ml_ingest_set_flush(c->ingest, ml_collector_commit);
        c->group_commit = true;
        uint32_t idle = cfg->ingest_idle_ms ? cfg->ingest_idle_ms : ML_INGEST_IDLE_TIMEOUT_MS;
        ml_ingest_set_idle_timeout(c->ingest, idle == UINT32_MAX ? 0 : idle);
    }
    if (cfg->http && (rv = ml_http_start(c, cfg->http, cfg->allow_remote, &c->http)) != 0)
        return rv;
    return 0;
}

int ml_collector_start(ml_collector *c, uv_loop_t *loop, const ml_collector_config *cfg)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->unsynced_group = 1;
    ml_map_init(&c->dirs_seen);
    c->hosted = cfg->hosted;
    c->team = ml_xstrdup(cfg->team ? cfg->team : ML_DEFAULT_TEAM);
    c->ui_dir = cfg->ui_dir ? ml_xstrdup(cfg->ui_dir) : NULL;
    c->ingest_advertise = cfg->ingest_advertise ? ml_xstrdup(cfg->ingest_advertise) : NULL;
    c->live_timeout_ms = cfg->live_timeout_ms ? cfg->live_timeout_ms : ML_LIVE_TIMEOUT_MS;
    ml_index_init(&c->index);
    ml_query_init(&c->query);
    uv_timer_init(loop, &c->housekeeping);
    c->housekeeping.data = c;
    if (!ml_label_valid(c->team)) {
        ml_error("bad team name \"%s\"", c->team);
        return -EINVAL;
    }
    int rv = ml_store_init(&c->store, cfg->data_dir);
    if (rv != 0) {
        ml_error("cannot create %s/runs: %s", cfg->data_dir, strerror(-rv));
        return rv;
    }
    if ((rv = load_index(c)) != 0 || (rv = start_listeners(c, cfg)) != 0)
        return rv;
    if (cfg->spool_dir) { /* runs left on disk by clients that could not reach us */
        c->spool_dir = ml_xstrdup(cfg->spool_dir);
        ml_spool_import_dir(c, c->spool_dir);
        c->spool_scan_at = uv_now(loop) + ML_SPOOL_SCAN_MS;
    }
    c->drain_ms = cfg->drain_ms ? cfg->drain_ms : ML_DRAIN_TIMEOUT_MS;
    c->retain_days = cfg->retain_days;
    c->retain_bytes = cfg->retain_bytes;
    c->collector_id = cfg->collector_id;
    if (c->collector_id > ML_COLLECTOR_ID_MAX) {
        ml_error("collector id %u out of range 1..%d", c->collector_id, ML_COLLECTOR_ID_MAX);
        return -EINVAL;
    }
    if (cfg->s3 && c->collector_id == 0) {
        char host[256] = "";
        gethostname(host, sizeof(host) - 1);
        c->collector_id = ml_collector_id_from_host(host);
        ml_warn("s3: no --collector-id; using %u (from host name \"%s\"); give every "
                "collector of one bucket a distinct id",
                c->collector_id, host);
    }
    if (cfg->s3) {
        if ((rv = ml_s3_new(loop, cfg->s3, &c->s3)) != 0)
            return rv;
        c->s3_list_ms = cfg->s3_list_ms ? cfg->s3_list_ms : ML_S3_LIST_MS;
        ml_s3sync_start(c);
        ml_info("s3: bucket %s, prefix \"%s\", listing every %u ms", cfg->s3->bucket,
                cfg->s3->prefix, c->s3_list_ms);
    }
    uint32_t every = cfg->housekeeping_ms ? cfg->housekeeping_ms : ML_HOUSEKEEPING_MS;
    uv_timer_start(&c->housekeeping, on_housekeeping, every, every);
    return 0;
}

const char *ml_collector_ingest_url(const ml_collector *c)
{
    if (c->ingest_advertise)
        return c->ingest_advertise;
    return c->ingest ? ml_ingest_url(c->ingest) : NULL;
}

const char *ml_collector_http_url(const ml_collector *c)
{
    return c->http ? ml_http_url(c->http) : NULL;
}

int ml_collector_ensure_live(ml_collector *c, ml_run *r)
{
    if (r->live && r->live->journal && ml_journal_broken(r->live->journal)) {
        /* A failed sync cut records away: what live holds may name
         * batches that are gone. Read the journal again. */
        ml_warn("run %s: reloading its journal after a failed sync", r->id);
        ml_live_release(r);
    }
    if (r->live)
        return 0;
    if (r->recorded || r->remote || r->compacting) {
        /* Finished and compacted (or being compacted): nothing more is
         * appended. A complete run still acks resends of its batches. */
        if (r->status != ML_RUN_COMPLETE)
            return -EROFS;
        r->live = ml_xcalloc(1, sizeof(ml_live));
        r->live->acked_seq = r->last_seq;
        return 0;
    }
    char *path = ml_store_run_path(&c->store, r, ML_RUN_JOURNAL_FILE);
    int rv = ml_live_open(r, path);
    if (rv != 0)
        ml_error("run %s: cannot open %s: %s", r->id, path, strerror(-rv));
    free(path);
    return rv;
}

/* A live run whose client went silent: mark it incomplete with counts
 * recomputed from its journal. */
static void retire_silent(ml_collector *c, ml_run *r)
{
    if (ml_collector_ensure_live(c, r) != 0)
        return;
    if (r->status == ML_RUN_LIVE) {
        ml_warn("run %s: no data for %u s; marked incomplete", r->id, c->live_timeout_ms / 1000);
        r->status = ML_RUN_INCOMPLETE;
        r->dirty = true;
    }
    ml_live_release(r);
}

/* A live run whose only change since its run.json was written is
 * progress (counts, end time). Its journal holds the same facts and is
 * what a restart recomputes a live run from. */
static bool progress_only(const ml_run *r)
{
    return r->status == ML_RUN_LIVE && r->live != NULL && r->live->journal != NULL &&
           r->live->meta_status == ML_RUN_LIVE;
}

static void write_meta(ml_collector *c, ml_run *r)
{
    if (ml_store_write_meta(&c->store, r) == 0 && r->live)
        r->live->meta_status = r->status;
}

/* Rewrites the run.json of at most ML_META_PROGRESS_WRITES live runs with
 * progress only, taking turns from where the last pass stopped: each
 * write costs three syncs on the loop, and 1 000 live runs every second
 * would be 3 000 of them. */
static void write_progress_meta(ml_collector *c)
{
    unsigned budget = ML_META_PROGRESS_WRITES;
    size_t start = c->meta_cursor, pos = start;
    bool wrapped = false;
    void *v;
    while (budget > 0) {
        pos = ml_map_next(&c->index.by_id, pos, &v);
        if (pos == 0) {
            if (wrapped || start == 0)
                break;
            wrapped = true;
            continue;
        }
        if (wrapped && pos > start)
            break;
        ml_run *r = v;
        if (r->dirty && progress_only(r)) {
            write_meta(c, r);
            budget--;
        }
        c->meta_cursor = pos;
    }
}

/* Starts compactions of settled runs, ML_COMPACT_MAX at most in flight;
 * called by housekeeping and whenever a compaction ends. */
static void start_compactions(ml_collector *c)
{
    uint64_t now = uv_now(c->loop);
    unsigned compacting = 0;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&c->index.by_id, pos, &v)) != 0;)
        compacting += ((ml_run *)v)->compacting;
    for (size_t pos = 0;
         compacting < ML_COMPACT_MAX && (pos = ml_map_next(&c->index.by_id, pos, &v)) != 0;) {
        ml_run *r = v;
        /* An incomplete run waits a second timeout before it is
         * compacted (read-only): its client may still come back. */
        bool settled = r->status == ML_RUN_COMPLETE ||
                       now - r->last_activity >= 2 * (uint64_t)c->live_timeout_ms;
        if (r->status != ML_RUN_LIVE && r->live == NULL && !r->recorded && !r->remote &&
            !r->compacting && settled && ml_collector_compact(c, r) == 0)
            compacting += r->compacting;
    }
}

void ml_collector_housekeeping(ml_collector *c)
{
    uint64_t now = uv_now(c->loop);
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&c->index.by_id, pos, &v)) != 0;) {
        ml_run *r = v;
        bool silent = now - r->last_activity >= c->live_timeout_ms;
        if (silent && r->status == ML_RUN_LIVE)
            retire_silent(c, r);
        else if (silent && r->live)
            ml_live_release(r); /* closed, late batches done: free its state */
        if (r->dirty && !progress_only(r))
            write_meta(c, r);
        if (c->s3 && r->recorded && !r->uploaded && !r->uploading && !r->remote)
            ml_s3sync_upload(c, r); /* backs off by itself after failures */
    }
    start_compactions(c);
    write_progress_meta(c);
    ml_s3sync_housekeeping(c);
    ml_retention_enforce(c);
    if (c->spool_dir && now >= c->spool_scan_at) {
        ml_spool_import_dir(c, c->spool_dir);
        c->spool_scan_at = uv_now(c->loop) + ML_SPOOL_SCAN_MS;
    }
}

int ml_collector_delete_run(ml_collector *c, ml_run *r)
{
    if (r->remote || r->uploaded || r->uploading)
        ml_s3sync_delete(c, r);
    return ml_collector_delete_run_local(c, r);
}

int ml_collector_delete_run_local(ml_collector *c, ml_run *r)
{
    ml_live_release(r);
    ml_query_forget(&c->query, r->id);
    int rv = ml_store_delete_run(&c->store, r);
    if (rv != 0) {
        ml_error("run %s: cannot delete: %s", r->id, strerror(-rv));
        return rv;
    }
    ml_info("run %s deleted", r->id);
    ml_index_remove(&c->index, r);
    ml_run_free(r);
    return 0;
}

static void close_done(ml_collector *c)
{
    if (--c->close_pending == 0 && c->closed_cb)
        c->closed_cb(c);
}

void ml_collector_run_recorded(ml_collector *c, ml_run *r)
{
    ml_s3sync_upload(c, r);
    if (!c->closing)
        start_compactions(c); /* the next waiting run takes the freed place */
}

void ml_collector_release_pending(ml_collector *c)
{
    close_done(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    close_done(h->data);
}

static void on_ingest_closed(void *arg, bool complete)
{
    ml_collector *c = arg;
    c->nng_stuck = !complete;
    close_done(c);
}

static void on_http_closed(void *arg)
{
    ml_collector *c = arg;
    c->http = NULL;
    close_done(c);
}

void ml_collector_close(ml_collector *c, void (*closed)(ml_collector *c))
{
    c->closing = true;
    c->closed_cb = closed;
    c->close_pending++; /* compactions and uploads in flight hold their own */
    if (c->ingest) {
        c->close_pending++;
        ml_ingest_close(c->ingest, on_ingest_closed, c); /* a group commit in flight completes */
        c->ingest = NULL;
    }
    ml_collector_drop_unsynced(c);
    uv_timer_stop(&c->housekeeping);
    uv_close((uv_handle_t *)&c->housekeeping, on_timer_closed);
    ml_s3sync_drain(c); /* uploads in flight may finish within the drain timeout */
    /* Flush: every changed run.json written, every journal closed. */
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&c->index.by_id, pos, &v)) != 0;) {
        ml_run *r = v;
        ml_live_release(r);
        if (r->dirty && c->store.runs_dir)
            ml_store_write_meta(&c->store, r);
    }
    if (c->http) {
        c->close_pending++;
        ml_http_close(c->http, on_http_closed, c);
    }
}

void ml_collector_dispose(ml_collector *c)
{
    ml_index_dispose(&c->index);
    ml_query_dispose(&c->query);
    ml_store_dispose(&c->store);
    free(c->team);
    free(c->ui_dir);
    free(c->ingest_advertise);
    free(c->spool_dir);
    free(c->unsynced);
    for (size_t i = 0; i < c->ndirs; i++)
        free(c->unsynced_dirs[i]);
    free(c->unsynced_dirs);
    ml_map_dispose(&c->dirs_seen);
    memset(c, 0, sizeof(*c));
}
