/*
 * The ingest state of a run that is being written: its open journal, the
 * ids it has defined so far (to validate references in later batches) and
 * which batch sequence numbers are stored. Rebuilt from the journal when a
 * client resumes a run after a collector restart. Loop thread only.
 */
#ifndef ML_COLLECTOR_LIVE_H
#define ML_COLLECTOR_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "microlog.pb-c.h"

#include "idset.h"
#include "journal.h"
#include "run.h"

struct ml_live {
    ml_journal *journal; /* open for appending */
    ml_idset strings, frames, stacks, threads;
    uint64_t acked_seq; /* every seq in 1..acked_seq is stored */
    uint64_t *ahead;    /* stored seqs above acked_seq + 1, ascending */
    size_t nahead, capahead;
    ml_run_status meta_status; /* the status run.json has on disk, as far as known */
};

/* Loads the run's state from its journal at path (creating the journal
 * when missing) and opens it for appending. Recomputes r's progress
 * fields (samples, logs, batches, end_us, closed, ...) from the records,
 * so they are exact even when run.json was behind. On success r->live is
 * set. Returns 0 or -errno / -EBADMSG. */
int ml_live_open(ml_run *r, const char *path);

/* The ingest state of a new run: creates its journal at path (which must
 * not exist) without syncing it (ml_journal_create()); r's progress
 * fields are left as they are. On success r->live is set. Returns 0 or
 * -errno. */
int ml_live_create(ml_run *r, const char *path);

/* Closes the journal and frees r->live (no-op when NULL). */
void ml_live_release(ml_run *r);

/* True when batch seq is already stored. */
bool ml_live_has_seq(const ml_live *l, uint64_t seq);

/* Records that a valid batch b is stored: its definitions, its sequence
 * number, and its counts into r (samples, logs, batches, end_us). */
void ml_live_commit_batch(ml_live *l, ml_run *r, const Microlog__V1__Batch *b);

/* Applies a stored CloseRun to r (closed, last_seq, status, counters). */
void ml_live_commit_close(ml_live *l, ml_run *r, const Microlog__V1__CloseRun *m);

#endif
