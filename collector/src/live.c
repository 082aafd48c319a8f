#include "live.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

bool ml_live_has_seq(const ml_live *l, uint64_t seq)
{
    if (seq <= l->acked_seq)
        return true;
    for (size_t i = 0; i < l->nahead; i++)
        if (l->ahead[i] == seq)
            return true;
    return false;
}

/* Marks seq stored and advances acked_seq over any run of stored seqs.
 * Precondition: seq is not stored yet. */
static void add_seq(ml_live *l, uint64_t seq)
{
    if (seq == l->acked_seq + 1) {
        l->acked_seq = seq;
        size_t used = 0;
        while (used < l->nahead && l->ahead[used] == l->acked_seq + 1)
            l->acked_seq = l->ahead[used++];
        if (used > 0) {
            memmove(l->ahead, l->ahead + used, (l->nahead - used) * sizeof(uint64_t));
            l->nahead -= used;
        }
        return;
    }
    ml_xgrow((void **)&l->ahead, &l->capahead, l->nahead + 1, sizeof(uint64_t));
    size_t i = l->nahead;
    while (i > 0 && l->ahead[i - 1] > seq) {
        l->ahead[i] = l->ahead[i - 1];
        i--;
    }
    l->ahead[i] = seq;
    l->nahead++;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* The latest time (us since start) anything in b happened. */
static int64_t batch_end(const Microlog__V1__Batch *b)
{
    int64_t end = 0;
    if (b->samples) {
        int64_t t = b->base_time;
        for (size_t i = 0; i < b->samples->n_time_delta; i++) {
            t = (int64_t)((uint64_t)t + (uint64_t)b->samples->time_delta[i]); /* see validate.h */
            end = max64(end, t);
        }
    }
    for (size_t i = 0; i < b->n_status; i++)
        end = max64(end, b->status[i]->time);
    for (size_t i = 0; i < b->n_logs; i++)
        end = max64(end, b->logs[i]->time);
    return end;
}

void ml_live_commit_batch(ml_live *l, ml_run *r, const Microlog__V1__Batch *b)
{
    for (size_t i = 0; i < b->n_strings; i++)
        ml_idset_add(&l->strings, b->strings[i]->id);
    for (size_t i = 0; i < b->n_frames; i++)
        ml_idset_add(&l->frames, b->frames[i]->id);
    for (size_t i = 0; i < b->n_stacks; i++)
        ml_idset_add(&l->stacks, b->stacks[i]->id);
    for (size_t i = 0; i < b->n_threads; i++)
        ml_idset_add(&l->threads, b->threads[i]->id);
    add_seq(l, b->seq);
    r->samples += b->samples ? b->samples->n_thread : 0;
    r->logs += b->n_logs;
    r->batches++;
    r->dropped_samples += b->dropped_samples;
    r->dropped_logs += b->dropped_logs;
    r->end_us = max64(r->end_us, batch_end(b));
    if (r->closed && l->acked_seq >= r->last_seq)
        r->status = ML_RUN_COMPLETE; /* a late batch filled the last gap */
    r->dirty = true;
}

void ml_live_commit_close(ml_live *l, ml_run *r, const Microlog__V1__CloseRun *m)
{
    r->closed = true;
    r->last_seq = m->last_seq;
    r->exit_status = m->exit_status;
    r->end_us = max64(r->end_us, m->end_time);
    /* CloseRun carries the run's totals; they supersede the per-batch sums. */
    r->dropped_samples = m->dropped_samples;
    r->dropped_logs = m->dropped_logs;
    r->status = l->acked_seq >= m->last_seq ? ML_RUN_COMPLETE : ML_RUN_INCOMPLETE;
    r->dirty = true;
}

typedef struct load_ctx {
    ml_run *run;
    ml_live *live;
} load_ctx;

static int load_record(void *arg, uint8_t type, const uint8_t *payload, size_t len, uint64_t offset)
{
    load_ctx *lc = arg;
    if (type == ML_JOURNAL_BATCH) {
        Microlog__V1__Batch *b = microlog__v1__batch__unpack(NULL, len, payload);
        if (b == NULL) {
            ml_warn("journal of %s: undecodable batch at offset %llu", lc->run->id,
                    (unsigned long long)offset);
            return 0;
        }
        if (b->seq != 0 && !ml_live_has_seq(lc->live, b->seq))
            ml_live_commit_batch(lc->live, lc->run, b);
        microlog__v1__batch__free_unpacked(b, NULL);
    } else if (type == ML_JOURNAL_CLOSE_RUN) {
        Microlog__V1__CloseRun *m = microlog__v1__close_run__unpack(NULL, len, payload);
        if (m != NULL) {
            ml_live_commit_close(lc->live, lc->run, m);
            microlog__v1__close_run__free_unpacked(m, NULL);
        }
    }
    return 0;
}

int ml_live_open(ml_run *r, const char *path)
{
    ml_live *l = ml_xcalloc(1, sizeof(*l));
    /* Opening first cuts any torn tail, so the read below sees exactly the
     * records the writer will append after. */
    int rv = ml_journal_open(path, &l->journal);
    if (rv != 0) {
        free(l);
        return rv;
    }
    ml_run_status status = r->status;
    l->meta_status = status;
    r->samples = r->logs = r->batches = 0;
    r->dropped_samples = r->dropped_logs = 0;
    r->end_us = 0;
    r->closed = false;
    load_ctx lc = {r, l};
    uint64_t off = 0;
    if ((rv = ml_journal_read(path, &off, load_record, &lc, NULL)) != 0) {
        r->live = l;
        ml_live_release(r);
        return rv;
    }
    if (!r->closed)
        r->status = status == ML_RUN_COMPLETE ? ML_RUN_INCOMPLETE : status;
    r->dirty = true;
    r->live = l;
    return 0;
}

int ml_live_create(ml_run *r, const char *path)
{
    ml_live *l = ml_xcalloc(1, sizeof(*l));
    int rv = ml_journal_create(path, &l->journal);
    if (rv != 0) {
        free(l);
        return rv;
    }
    l->meta_status = r->status;
    r->live = l;
    return 0;
}

void ml_live_release(ml_run *r)
{
    ml_live *l = r->live;
    if (l == NULL)
        return;
    ml_journal_close(l->journal);
    ml_idset_dispose(&l->strings);
    ml_idset_dispose(&l->frames);
    ml_idset_dispose(&l->stacks);
    ml_idset_dispose(&l->threads);
    free(l->ahead);
    free(l);
    r->live = NULL;
}
