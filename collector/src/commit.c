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

#include "collector.h"
#include "ingest.h"
#include "journal.h"
#include "live.h"
#include "log.h"
#include "mem.h"

typedef struct commit_group commit_group;

typedef struct commit_job {
    uv_work_t work;
    commit_group *g;
    ml_journal *j;
    ml_journal_ticket ticket;
    int rv; /* the worker's fdatasync result */
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

/* Worker thread: touches nothing but the fd (kept open by the job's ref). */
static void job_work(uv_work_t *w)
{
    commit_job *job = w->data;
    job->rv = ml_journal_sync_fd(job->j);
}

static void group_finish(commit_group *g)
{
    ml_collector *c = g->c;
    for (size_t i = 0; i < g->n; i++)
        ml_journal_close(g->jobs[i].j);
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
    int rv = ml_journal_sync_end(job->j, &job->ticket, status == 0 ? job->rv : status);
    if (rv != 0)
        ml_error("group commit: journal sync failed: %s; that run reloads its journal",
                 strerror(-rv));
    group_done(job->g, rv);
}

void ml_collector_commit(void *collector, ml_ingest *in)
{
    ml_collector *c = collector;
    size_t n = c->nunsynced;
    commit_group *g = ml_xcalloc(1, sizeof(*g) + n * sizeof(commit_job));
    g->c = c;
    g->in = in;
    g->n = n;
    g->left = 1;
    c->close_pending++;
    /* The journals noted so far are this group's; later ones the next. */
    c->nunsynced = 0;
    c->unsynced_group++;
    for (size_t i = 0; i < n; i++) {
        commit_job *job = &g->jobs[i];
        job->g = g;
        job->j = c->unsynced[i];
        job->work.data = job;
        int rv = ml_journal_sync_begin(job->j, &job->ticket);
        if (rv < 0)
            g->rv = g->rv ? g->rv : rv;
        if (rv != 0)
            continue; /* nothing to sync, or records already lost */
        g->left++;
        if ((rv = uv_queue_work(c->loop, &job->work, job_work, job_after)) != 0) {
            job->rv = ml_journal_sync_fd(job->j); /* cannot happen with a live loop */
            job_after(&job->work, 0);
        }
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
    return rv;
}

void ml_collector_drop_unsynced(ml_collector *c)
{
    for (size_t i = 0; i < c->nunsynced; i++)
        ml_journal_close(c->unsynced[i]);
    c->nunsynced = 0;
    c->unsynced_group++;
}
