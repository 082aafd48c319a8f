/*
 * Compaction of finished runs on the libuv thread pool: journal.mlj ->
 * recording.mlr (recording.h), then, back on the loop, the journal is
 * removed and the run marked recorded. The work function touches only
 * files (paths copied into the job), never collector state.
 *
 * Crash safety: the recording is written atomically and the journal is
 * removed only after that, so at every instant one of the two holds the
 * whole run; a run found with both (a crash in between) or with a journal
 * but finished is compacted again by the housekeeping pass.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collector.h"
#include "fsutil.h"
#include "live.h"
#include "log.h"
#include "mem.h"
#include "recording.h"

typedef struct compact_job {
    uv_work_t req;
    ml_collector *c;
    char id[ML_RUN_ID_MAX + 1];
    char *uid;
    char *journal, *recording;
    int rv;
} compact_job;

static void compact_work(uv_work_t *req)
{
    compact_job *j = req->data;
    j->rv = ml_recording_compact(j->journal, j->recording);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void compact_done(uv_work_t *req, int status)
{
    compact_job *j = req->data;
    ml_collector *c = j->c;
    ml_run *r = ml_index_find(&c->index, j->id);
    /* The run may have been deleted (and its id even reused) meanwhile. */
    bool same = r && r->uid && strcmp(r->uid, j->uid) == 0;
    if (same)
        r->compacting = false;
    if (status != 0 || j->rv != 0) {
        if (same)
            ml_error("run %s: compaction failed: %s; the journal stays", j->id,
                     strerror(status ? -status : -j->rv));
        unlink(j->recording);
    } else if (!same || c->closing) {
        /* Deleted: drop the file. Closing: both files stay; the journal
         * wins at the next start and compaction runs again. */
        if (!same)
            unlink(j->recording);
    } else {
        ml_live_release(r);
        if (unlink(j->journal) != 0 && errno != ENOENT)
            ml_warn("run %s: cannot remove the journal: %s", r->id, strerror(errno));
        ml_fsync_parent(j->journal);
        r->recorded = true;
        r->stored_bytes = file_size(j->recording);
        r->dirty = true;
        ml_store_write_meta(&c->store, r);
        ml_query_forget(&c->query, r->id);
        ml_info("run %s compacted: %llu bytes, %.1f bytes/sample", r->id,
                (unsigned long long)r->stored_bytes,
                r->samples ? (double)r->stored_bytes / (double)r->samples : 0.0);
        ml_collector_run_recorded(c, r);
    }
    free(j->uid);
    free(j->journal);
    free(j->recording);
    free(j);
    ml_collector_release_pending(c);
}

int ml_collector_compact(ml_collector *c, ml_run *r)
{
    if (r->compacting || r->recorded || r->remote || r->status == ML_RUN_LIVE || c->closing)
        return 0;
    compact_job *j = ml_xcalloc(1, sizeof(*j));
    j->req.data = j;
    j->c = c;
    snprintf(j->id, sizeof(j->id), "%s", r->id);
    j->uid = ml_xstrdup(r->uid ? r->uid : "");
    j->journal = ml_store_run_path(&c->store, r, ML_RUN_JOURNAL_FILE);
    j->recording = ml_store_run_path(&c->store, r, ML_RUN_RECORDING_FILE);
    int rv = uv_queue_work(c->loop, &j->req, compact_work, compact_done);
    if (rv != 0) {
        free(j->uid);
        free(j->journal);
        free(j->recording);
        free(j);
        return rv;
    }
    r->compacting = true;
    c->close_pending++;
    return 0;
}
