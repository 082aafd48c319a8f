/*
 * Sealing: the sender thread swaps the batch under construction with its
 * spare (under the mutex, a pointer swap plus copying the new definitions),
 * then packs it and queues the envelope outside the mutex.
 *
 * The queue is bounded by cfg.buffer_max_bytes. A batch that does not fit
 * goes to the run's spool file (deliver.c), and so does every later one
 * until the spool has been replayed; so do all batches of a client that
 * never uses the network (spool_only, forked) or whose collector refused
 * the run. Only when the spool cannot be written either does a batch lose
 * its records (counted), but never its definitions: later batches refer to
 * them, so they are queued anyway in a batch of their own that also
 * reports the loss.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static bool has_defs(const ml__batch *b)
{
    return b->nstrs || b->nframes || b->nstacks || b->nthreads;
}

/* Queues a packed envelope for batch seq. */
static int queue_packed(ml_client *c, const ml__batch *b, bool with_data, uint64_t seq,
                        uint64_t call_id, uint8_t *data, size_t len)
{
    ml__req *r = ml__req_new(ML__REQ_BATCH, data, len, call_id);
    if (r == NULL) {
        free(data);
        return -ENOMEM;
    }
    r->seq = seq;
    r->samples = with_data ? b->nsamples : 0;
    r->logs = with_data ? b->nlogs : 0;
    ml__queue_push(&c->snd.queue, r);
    c->snd.seq = seq;
    return 0;
}

/* Writes the packed batch to the spool. 0 or -errno (data stays ours). */
static int spool_packed(ml_client *c, const ml__batch *b, uint64_t seq, uint64_t call_id,
                        uint8_t *data, size_t len)
{
    ml__req r = {.kind = ML__REQ_BATCH, .data = data, .len = len, .seq = seq, .call_id = call_id};
    int rv = ml__spool_batch(c, &r);
    if (rv == 0)
        c->snd.seq = seq;
    (void)b;
    return rv;
}

/* The batch does not fit (or could not be packed): its records are lost.
 * Spooling to disk goes here. */
static void queue_overflow(ml_client *c, ml__batch *b, uint64_t seq, uint64_t call_id)
{
    ml__sender *s = &c->snd;
    uint8_t *data;
    size_t len;

    s->lost_samples += b->nsamples;
    s->lost_logs += b->nlogs;
    if (!has_defs(b)) {
        /* nothing the collector needs: report the loss with the next batch */
        s->carry_samples += b->dropped_samples + b->nsamples;
        s->carry_logs += b->dropped_logs + b->nlogs;
        return;
    }
    b->dropped_samples += b->nsamples;
    b->dropped_logs += b->nlogs;
    int rv = ml__batch_pack(b, c->run.uid, seq, false, call_id, c->token, &data, &len);
    if (rv == 0 && (s->failed || s->offline || s->spooling)) {
        rv = spool_packed(c, b, seq, call_id, data, len);
        free(data);
    } else if (rv == 0) {
        rv = queue_packed(c, b, false, seq, call_id, data, len);
    }
    if (rv != 0) {
        /* without these definitions later batches cannot be understood */
        ml__client_conn_error(c, rv, "cannot encode batch %llu: %s", (unsigned long long)seq,
                              ml__strerror(rv));
        s->failed = true;
    }
}

/* Packs b and queues or spools it, or hands it to queue_overflow. */
static void queue_or_overflow(ml_client *c, ml__batch *b)
{
    ml__sender *s = &c->snd;
    uint64_t seq = s->seq + 1, call_id = ++s->next_call_id;
    uint8_t *data;
    size_t len;

    int rv = ml__batch_pack(b, c->run.uid, seq, true, call_id, c->token, &data, &len);
    if (rv == 0) {
        size_t queued = atomic_load(&s->queue.bytes);
        bool to_disk = s->failed || s->offline || s->spooling;
        if (!to_disk && (s->queue.count == 0 || queued + len <= c->cfg.buffer_max_bytes)) {
            if (queue_packed(c, b, true, seq, call_id, data, len) == 0)
                return;
        } else if (spool_packed(c, b, seq, call_id, data, len) == 0) {
            free(data);
            return;
        } else {
            free(data);
        }
    } else {
        ml__client_error(c, rv, "cannot encode batch %llu: %s", (unsigned long long)seq,
                         ml__strerror(rv));
    }
    queue_overflow(c, b, seq, call_id);
}

void ml__seal(ml_client *c)
{
    ml__sender *s = &c->snd;

    pthread_mutex_lock(&c->mu);
    c->full_signaled = false;
    if (ml__batch_empty(c->active) && !ml__intern_has_pending(&c->in) && s->carry_samples == 0 &&
        s->carry_logs == 0) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    /* definitions first: the records may refer to them; on failure nothing
     * moves and the next seal tries again */
    int rv = ml__batch_take_defs(c->active, &c->in);
    ml__batch *b = c->active;
    if (rv == 0) {
        c->active = c->spare;
        c->spare = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (rv != 0) {
        ml__client_error(c, rv, "out of memory while sealing a batch");
        return;
    }

    b->dropped_samples += s->carry_samples;
    b->dropped_logs += s->carry_logs;
    s->carry_samples = s->carry_logs = 0;
    queue_or_overflow(c, b);
    ml__batch_reset(b);
    c->spare = b;
}
