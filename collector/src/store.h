/*
 * The local store: where runs live on disk.
 *
 *   <data>/runs/<team>/<label>/<stamp>/run.json      metadata, rewritten atomically
 *   <data>/runs/<team>/<label>/<stamp>/journal.mlj   the record (journal.h)
 *
 * Team, label and stamp are validated names (runid.h), so no path built
 * here leaves the data dir. Blocking file I/O on the loop thread.
 */
#ifndef ML_COLLECTOR_STORE_H
#define ML_COLLECTOR_STORE_H

#include <stdbool.h>

#include "model.h"
#include "run.h"

#define ML_RUN_META_FILE "run.json"
#define ML_RUN_JOURNAL_FILE "journal.mlj"
#define ML_RUN_RECORDING_FILE "recording.mlr"
/* run.json files larger than this are not read. */
#define ML_RUN_META_MAX (4u << 20)

#define ML_INDEX_LOG_FILE "index.jsonl"

typedef struct ml_store {
    char *data_dir;
    char *runs_dir; /* <data>/runs */
    /* <data>/index.jsonl opened for appending, or -1. Every run.json write
     * appends a {"put": run} line and every delete a {"del": key} line
     * (fdatasync'd before the caller goes on, like run.json itself), so
     * start-up reads one file instead of one run.json per run. */
    int log_fd;
    size_t log_lines;  /* lines in the log, for compaction */
    bool log_unsynced; /* lines appended without fdatasync since the last one */
} ml_store;

/* Creates <data>/runs if needed. Returns 0 or -errno; on error s owns
 * nothing. */
int ml_store_init(ml_store *s, const char *data_dir);

void ml_store_dispose(ml_store *s);

/* <data>/runs/<team>/<label>/<stamp>, or that path plus "/" name when name
 * is not NULL. malloc'd, owned by the caller. */
char *ml_store_run_path(const ml_store *s, const ml_run *r, const char *name);

/* Bytes r takes on local disk: its recording (stored_bytes; 0 for a remote
 * run not fetched yet) once recorded, else its journal's current size (0
 * when there is none). For /metrics. Loop thread. */
uint64_t ml_store_run_bytes(const ml_store *s, const ml_run *r);

/* Creates the run's directory; the last component must not exist yet
 * (-EEXIST tells the caller to pick another stamp). Returns 0 or -errno. */
int ml_store_create_run_dir(const ml_store *s, const ml_run *r);

/* ml_store_create_run_dir() without any sync: the new directory entries
 * are the caller's to make durable (the run's directory in its label
 * directory; when *new_parents is set on return, the label directory or
 * the team directory was created too, so the team directory and runs/
 * hold new entries as well). Returns 0 or -errno. */
int ml_store_make_run_dir(const ml_store *s, const ml_run *r, bool *new_parents);

/* Writes run.json atomically and clears r->dirty. Returns 0 or -errno. */
int ml_store_write_meta(ml_store *s, ml_run *r);

/* ml_store_write_meta() without any sync, for the ingest: run.json is
 * replaced by rename (a crash leaves the old file, the new one, or an
 * empty or missing one: start-up rebuilds those from the journal) and the
 * index log line is appended unsynced (s->log_unsynced; the group commit
 * syncs it when a reply depends on it, ml_store_log_sync_begin()).
 * Returns 0 or -errno. */
int ml_store_write_meta_unsynced(ml_store *s, ml_run *r);

/* Group commit of the index log: when lines were appended unsynced,
 * returns a duplicate of the log's fd (owned by the caller, who
 * fdatasyncs and closes it, on any thread) and counts those lines as
 * synced; else -1. Loop thread. */
int ml_store_log_sync_begin(ml_store *s);

/* The sync of a fd from ml_store_log_sync_begin() failed with err: the
 * log is dropped (rebuilt from the runs at the next start). Loop thread. */
void ml_store_log_sync_failed(ml_store *s, int err);

/* fdatasync of the index log now when lines are unsynced. Returns 0 or
 * -errno (then the log is dropped as above). Loop thread. */
int ml_store_log_sync(ml_store *s);

/* Reads and parses one run.json. Returns 0 with *out owned by the caller,
 * -EINVAL for a file that is not a valid run, or -errno. */
int ml_store_read_meta(const char *path, ml_run **out);

/* Rebuilds the metadata of the run in dir (team/label/stamp are where it
 * was found) from the OpenRun record of its journal, for a run.json that
 * is missing or corrupt. Progress fields are left zero (ml_live_open()
 * recomputes them); r->dirty is set. Returns 0 with *out owned by the
 * caller, -EINVAL when the journal holds no matching OpenRun, or -errno. */
int ml_store_rebuild_meta(const char *dir, const char *team, const char *label, const char *stamp,
                          ml_run **out);

/* Brings m up to date with run r: from its journal while it has one
 * (incrementally, ml_model_load()), else from its recording (loaded once,
 * into an empty model; a model read from the journal before compaction is
 * already complete). Returns 0, -ENOENT when the run has neither, or
 * -errno / -EBADMSG. */
int ml_store_load_model(const ml_store *s, const ml_run *r, ml_model *m);

/* Removes the run's directory and everything in it, and the label
 * directory if it became empty. Returns 0 or -errno. */
int ml_store_delete_run(ml_store *s, const ml_run *r);

/* Called for each run found by ml_store_scan() / ml_store_log_read();
 * takes ownership of r. */
typedef void (*ml_store_scan_cb)(void *arg, ml_run *r);

/* Walks <data>/runs/<team>/<label>/<stamp>/run.json and hands every valid
 * run to cb. Invalid names and unreadable files are logged and skipped.
 * Returns the number of runs found, or -errno when runs/ cannot be read. */
int ml_store_scan(const ml_store *s, ml_store_scan_cb cb, void *arg);

/* Reads <data>/index.jsonl and hands every run it lists (the last "put"
 * of each run not followed by a "del") to cb. A torn last line (a crash
 * mid-append) is cut off. Returns the number of runs, -ENOENT when there
 * is no log, or -EBADMSG when it is corrupt (then cb was not called and
 * the caller rebuilds it with ml_store_scan() + ml_store_log_rewrite()). */
int ml_store_log_read(ml_store *s, ml_store_scan_cb cb, void *arg);

/* Replaces the log atomically by one "put" line per run of runs[0..n)
 * and opens it for appending. Returns 0 or -errno (then no log is kept
 * open and the next start-up scans the runs again). */
int ml_store_log_rewrite(ml_store *s, ml_run *const *runs, size_t n);

/* Opens the existing log for appending (after ml_store_log_read()).
 * Returns 0 or -errno. */
int ml_store_log_open(ml_store *s);

#endif
