/*
 * The collector's side of S3 (s3.h is the client): uploads finished runs,
 * learns the runs other collectors uploaded (every team's) by listing the
 * bucket at start-up and every s3_list_ms, fetches a remote run's recording into
 * the local cache (the run's directory) when it is first read, and
 * deletes a run's objects. Objects: <prefix>/runs/<team>/<label>/<stamp>/
 * recording.mlr and run.json; run.json is written last, so a listed run
 * is always whole. Loop thread only.
 */
#ifndef ML_COLLECTOR_S3_SYNC_H
#define ML_COLLECTOR_S3_SYNC_H

#include <stdbool.h>

#include "run.h"

typedef struct ml_collector ml_collector;

/* Starts the periodic listing (first one now). */
void ml_s3sync_start(ml_collector *c);

/* Cancels everything and closes the client and the timer; holds a
 * close_pending reference until they are closed. */
void ml_s3sync_close(ml_collector *c);

/* Shutdown: lets the uploads in flight finish (no new ones start) for at
 * most c->drain_ms, then ml_s3sync_close(); holds a close_pending
 * reference meanwhile. Loop thread; once, from ml_collector_close(). */
void ml_s3sync_drain(ml_collector *c);

/* Uploads r (recorded, not remote) unless an upload is in flight or
 * backing off. On failure retried by housekeeping with backoff. */
void ml_s3sync_upload(ml_collector *c, ml_run *r);

/* Deletes r's objects (run.json first). The keys are saved in
 * <data>/s3-pending-deletes before any request is sent and dropped once
 * S3 answered, so failures are retried by housekeeping, also after a
 * restart or a crash; listings skip runs whose run.json is pending. */
void ml_s3sync_delete(ml_collector *c, const ml_run *r);

/* Object deletes not yet answered by S3 (kept across restarts in
 * <data>/s3-pending-deletes). For /metrics. */
size_t ml_s3sync_pending_deletes(const ml_collector *c);

/* Housekeeping: uploads due, deletes to retry. */
void ml_s3sync_housekeeping(ml_collector *c);

/* True when r's data is only in the bucket (a remote run whose recording
 * is not cached yet). */
bool ml_s3sync_needs_fetch(ml_collector *c, const ml_run *r);

/* Fetches r's recording into its local directory and calls done(arg, rv)
 * (0 or -errno) from the loop; concurrent fetches of one run are shared.
 * Returns 0 or -errno (done not called). */
int ml_s3sync_fetch(ml_collector *c, ml_run *r, void (*done)(void *arg, int rv), void *arg);

#endif
