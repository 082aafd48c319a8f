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

#include "run.h"

#define ML_RUN_META_FILE "run.json"
#define ML_RUN_JOURNAL_FILE "journal.mlj"
/* run.json files larger than this are not read. */
#define ML_RUN_META_MAX (4u << 20)

typedef struct ml_store {
    char *data_dir;
    char *runs_dir; /* <data>/runs */
} ml_store;

/* Creates <data>/runs if needed. Returns 0 or -errno; on error s owns
 * nothing. */
int ml_store_init(ml_store *s, const char *data_dir);

void ml_store_dispose(ml_store *s);

/* <data>/runs/<team>/<label>/<stamp>, or that path plus "/" name when name
 * is not NULL. malloc'd, owned by the caller. */
char *ml_store_run_path(const ml_store *s, const ml_run *r, const char *name);

/* Creates the run's directory; the last component must not exist yet
 * (-EEXIST tells the caller to pick another stamp). Returns 0 or -errno. */
int ml_store_create_run_dir(const ml_store *s, const ml_run *r);

/* Writes run.json atomically and clears r->dirty. Returns 0 or -errno. */
int ml_store_write_meta(const ml_store *s, ml_run *r);

/* Reads and parses one run.json. Returns 0 with *out owned by the caller,
 * -EINVAL for a file that is not a valid run, or -errno. */
int ml_store_read_meta(const char *path, ml_run **out);

/* Removes the run's directory and everything in it, and the label
 * directory if it became empty. Returns 0 or -errno. */
int ml_store_delete_run(const ml_store *s, const ml_run *r);

/* Called for each run found by ml_store_scan(); takes ownership of r. */
typedef void (*ml_store_scan_cb)(void *arg, ml_run *r);

/* Walks <data>/runs/<team>/<label>/<stamp>/run.json and hands every valid
 * run to cb. Invalid names and unreadable files are logged and skipped.
 * Returns the number of runs found, or -errno when runs/ cannot be read. */
int ml_store_scan(const ml_store *s, ml_store_scan_cb cb, void *arg);

#endif
