/*
 * One run's metadata: what run.json holds and what the index keeps in
 * memory. Converting to and from JSON lives here; where the file is kept
 * is the store's business (store.h), and the state of a run that is being
 * written is the ingest's (live.h). Loop thread only.
 */
#ifndef ML_COLLECTOR_RUN_H
#define ML_COLLECTOR_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "runid.h"

typedef enum ml_run_status {
    ML_RUN_LIVE = 0,       /* open, batches may still come */
    ML_RUN_COMPLETE = 1,   /* closed with every batch stored */
    ML_RUN_INCOMPLETE = 2, /* closed with batches missing, or the client went silent */
} ml_run_status;

typedef struct ml_live ml_live;

typedef struct ml_run {
    char id[ML_RUN_ID_MAX + 1]; /* "<label>/<stamp>" */
    char label[ML_LABEL_MAX + 1];
    char stamp[ML_STAMP_MAX + 1];         /* directory name: timestamp[-N] */
    char timestamp[ML_TIMESTAMP_LEN + 1]; /* as the client sent it */
    char team[ML_LABEL_MAX + 1];
    char *uid;
    char *host, *user, *executable, *python_version, *parent_id, *client_version;
    char **argv;
    size_t argc;
    json_t *env; /* object, owned; keys and values as the client sent them */
    int32_t pid;
    int64_t start_unix_us;
    double sample_period, status_period, memory_period;
    /* Progress, kept current by the ingest. */
    ml_run_status status;
    int64_t end_us; /* latest time seen (us since start); CloseRun.end_time once closed */
    uint64_t samples, logs, batches;
    bool closed; /* a CloseRun was stored */
    uint64_t last_seq;
    int32_t exit_status;
    uint64_t dropped_samples, dropped_logs;
    bool recorded;         /* compacted: recording.mlr holds the run, the journal is gone */
    bool uploaded;         /* the recording and run.json are in the S3 bucket */
    bool remote;           /* listed from the bucket: another collector ingested it */
    uint64_t stored_bytes; /* size of the run's data on local disk (retention) */

    /* Not persisted: */
    bool compacting;        /* a recording is being written on the thread pool */
    bool uploading;         /* an S3 upload is in flight */
    ml_live *live;          /* ingest state while the run is being written, else NULL */
    bool dirty;             /* run.json is behind the fields above */
    uint64_t last_activity; /* uv_now() of the last message for this run */
    char *subject;          /* "<id> <host> <user>" for filters, built on first use */
    size_t subject_len;
    uint32_t s3_failures; /* consecutive failed uploads (backoff) */
    uint64_t s3_next_try; /* uv_now() before which no upload is retried */
    bool fetching;        /* the recording is being fetched from S3 */
    uint32_t s3_round;    /* the bucket listing round when it was last known there */
} ml_run;

/* A zeroed run owning nothing yet. Never NULL. */
ml_run *ml_run_new(void);

/* Frees r and what it owns; r->live must already be released (NULL ok). */
void ml_run_free(ml_run *r);

/* "live", "complete" or "incomplete". */
const char *ml_run_status_name(ml_run_status s);

/* The full run.json object. The caller owns the reference. */
json_t *ml_run_to_json(const ml_run *r);

/* The summary listed by GET /api/v1/runs. The caller owns the reference. */
json_t *ml_run_summary_json(const ml_run *r);

/* Parses a run.json object. Checks that id, label, stamp and team are valid
 * names (so a tampered file cannot point outside the data dir) and that
 * the id is "<label>/<stamp>". Returns 0 with *out owned by the caller, or
 * -EINVAL. */
int ml_run_from_json(const json_t *j, ml_run **out);

struct Microlog__V1__OpenRun;

/* A live run of team built from a client's OpenRun: names, host, argv,
 * env, periods. stamp and id are left empty (the store picks the stamp).
 * Never NULL; owned by the caller. */
ml_run *ml_run_from_open(const char *team, const struct Microlog__V1__OpenRun *o);

/* Seconds between start and the latest time seen. */
double ml_run_duration(const ml_run *r);

#endif
