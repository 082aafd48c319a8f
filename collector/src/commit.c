/*
 * Group commit: the collector acknowledges a batch only after the
 * fdatasync that covers it. A sync costs the disk a journal commit (about
 * 2 ms here, more under load) whatever the number of records it covers,
 * so one sync per journal per loop turn, run one after the other on the
 * loop, caps ingest at a few hundred batches per second when many runs
 * are live. Instead, the journals of every run noted since the last group
 * are synced concurrently on the libuv thread pool (the kernel folds
 * concurrent syncs into shared journal commits), while the loop goes on
 * handling requests, which form the next group.
 *
 * OpenRun and CloseRun take the same path: besides journals, a group
 * syncs the directories that gained entries (a new run's directory, its
 * journal and run.json) and the index log when a reply depends on its
 * lines (a new run must be listed after a restart). run.json and the log
 * lines of a closed run are written but not synced before the reply:
 * start-up recomputes both from the journal (store.h).
 *
 * Invariants. A journal is in at most one collecting list and one group in
 * flight; each holds a reference so that a run released meanwhile
 * (closed, silent, deleted) leaves the fd open for the worker. Workers
 * only call fdatasync; tickets are taken and completed on the loop
 * (journal.h), so records appended while a sync runs are simply left to
 * the next group.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector.h"
#include "fsutil.h"
#include "ingest.h"
#include "journal.h"
#include "live.h"
#include "log.h"
#include "mem.h"

typedef struct commit_group commit_group;

/* One sync of the group: a journal's (j), else a directory's (dir), else
 * the index log's (fd, a duplicate the job closes). */
typedef struct commit_job {
    uv_work_t work;
    commit_group *g;
    ml_journal *j;
    char *dir; /* owned */
    int fd;
    ml_journal_ticket ticket;
    int rv; /* the worker's sync result */
} commit_job;

struct commit_group {
    ml_collector *c;
    ml_ingest *in;
    size_t n;
    size_t left; /* jobs not completed, plus one while they are being queued */
    int rv;      /* first failure */
    commit_job jobs[];
};

void ml_collector_note_unsynced(ml_collector *c, ml_run *r)
{
    if (!c->group_commit || r->live == NULL || r->live->journal == NULL)
        return;
    ml_journal *j = r->live->journal;
    if (!ml_journal_note_group(j, c->unsynced_group))
        return; /* already in this group */
    ml_xgrow((void **)&c->unsynced, &c->capunsynced, c->nunsynced + 1, sizeof(ml_journal *));
    ml_journal_ref(j);
    c->unsynced[c->nunsynced++] = j;
}

/* A directory removed meanwhile (its run deleted before the group ran)
 * has nothing left to make durable. */
static int fsync_dir(const char *path)
{
    int rv = ml_fsync_dir(path);
    return rv == -ENOENT ? 0 : rv;
}

int ml_collector_note_dir(ml_collector *c, const char *path)
{
    if (!c->group_commit)
        return fsync_dir(path);
    if (ml_map_get(&c->dirs_seen, path) != NULL)
        return 0; /* already in this group */
    ml_xgrow((void **)&c->unsynced_dirs, &c->capdirs, c->ndirs + 1, sizeof(char *));
    char *copy = ml_xstrdup(path);
    c->unsynced_dirs[c->ndirs++] = copy;
    ml_map_put(&c->dirs_seen, copy, copy);
    return 0;
}

int ml_collector_note_index_log(ml_collector *c)
{
    if (!c->group_commit)
        return ml_store_log_sync(&c->store);
    c->log_wanted = true;
    return 0;
}

/* Worker thread: touches nothing but the fd (kept open by the job's ref)
 * or its own copy of a path. */
static void job_work(uv_work_t *w)
{
    commit_job *job = w->data;
    if (job->j)
        job->rv = ml_journal_sync_fd(job->j);
    else if (job->dir)
        job->rv = fsync_dir(job->dir);
    else {
        job->rv = fdatasync(job->fd) == 0 ? 0 : -errno;
        close(job->fd);
    }
}

static void group_finish(commit_group *g)
{
    ml_collector *c = g->c;
    for (size_t i = 0; i < g->n; i++) {
        ml_journal_close(g->jobs[i].j);
        free(g->jobs[i].dir);
    }
    ml_ingest_flushed(g->in, g->rv);
    free(g);
    ml_collector_release_pending(c);
}

static void group_done(commit_group *g, int rv)
{
    if (rv != 0 && g->rv == 0)
        g->rv = rv;
    if (--g->left == 0)
        group_finish(g);
}

static void job_after(uv_work_t *w, int status)
{
    commit_job *job = w->data;
    int rv = status == 0 ? job->rv : status;
    if (job->j) {
        rv = ml_journal_sync_end(job->j, &job->ticket, rv);
        if (rv != 0)
            ml_error("group commit: journal sync failed: %s; that run reloads its journal",
                     strerror(-rv));
    } else if (job->dir && rv != 0) {
        ml_error("group commit: cannot sync directory %s: %s", job->dir, strerror(-rv));
    } else if (!job->dir && rv != 0) {
        ml_store_log_sync_failed(&job->g->c->store, rv);
    }
    group_done(job->g, rv);
}

static void job_queue(commit_group *g, commit_job *job)
{
    g->left++;
    if (uv_queue_work(g->c->loop, &job->work, job_work, job_after) != 0) {
        job_work(&job->work); /* cannot happen with a live loop */
        job_after(&job->work, 0);
    }
}

/* Hands the directories noted so far to g's jobs from index first on. */
static void take_dirs(ml_collector *c, commit_group *g, size_t first)
{
    for (size_t i = 0; i < c->ndirs; i++) {
        commit_job *job = &g->jobs[first + i];
        job->dir = c->unsynced_dirs[i];
        ml_map_remove(&c->dirs_seen, job->dir);
    }
    c->ndirs = 0;
}

void ml_collector_commit(void *collector, ml_ingest *in)
{
    ml_collector *c = collector;
    int log_fd = c->log_wanted ? ml_store_log_sync_begin(&c->store) : -1;
    size_t nj = c->nunsynced, n = nj + c->ndirs + (log_fd >= 0);
    commit_group *g = ml_xcalloc(1, sizeof(*g) + n * sizeof(commit_job));
    g->c = c;
    g->in = in;
    g->n = n;
    g->left = 1;
    c->close_pending++;
    /* What was noted so far is this group's; later notes the next's. */
    c->nunsynced = 0;
    c->unsynced_group++;
    c->log_wanted = false;
    take_dirs(c, g, nj);
    for (size_t i = 0; i < n; i++) {
        commit_job *job = &g->jobs[i];
        job->g = g;
        job->work.data = job;
        job->fd = log_fd;
        if (i >= nj) { /* the directories, then the log when log_fd >= 0 */
            job_queue(g, job);
            continue;
        }
        job->j = c->unsynced[i];
        int rv = ml_journal_sync_begin(job->j, &job->ticket);
        if (rv < 0)
            g->rv = g->rv ? g->rv : rv;
        if (rv == 0) /* else nothing to sync, or records already lost */
            job_queue(g, job);
    }
    group_done(g, 0);
}

int ml_collector_sync(ml_collector *c)
{
    int rv = 0;
    for (size_t i = 0; i < c->nunsynced; i++) {
        int e = ml_journal_sync(c->unsynced[i]);
        if (e != 0) {
            ml_error("journal sync failed: %s; that run reloads its journal", strerror(-e));
            rv = rv ? rv : e;
        }
    }
    for (size_t i = 0; i < c->ndirs; i++) {
        int e = fsync_dir(c->unsynced_dirs[i]);
        if (e != 0) {
            ml_error("cannot sync directory %s: %s", c->unsynced_dirs[i], strerror(-e));
            rv = rv ? rv : e;
        }
    }
    int e = c->log_wanted ? ml_store_log_sync(&c->store) : 0;
    return rv ? rv : e;
}

void ml_collector_drop_unsynced(ml_collector *c)
{
    for (size_t i = 0; i < c->nunsynced; i++)
        ml_journal_close(c->unsynced[i]);
    for (size_t i = 0; i < c->ndirs; i++) {
        ml_map_remove(&c->dirs_seen, c->unsynced_dirs[i]);
        free(c->unsynced_dirs[i]);
    }
    c->nunsynced = c->ndirs = 0;
    c->log_wanted = false;
    c->unsynced_group++;
}
