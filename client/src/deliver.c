/*
 * The spool side of the sender thread.
 *
 * Invariants:
 *  - Batches reach the own spool in seq order, and only batches that were
 *    never acknowledged: a batch is either in the memory queue, in the own
 *    spool, or acknowledged (then in neither).
 *  - Once spooling starts, every later batch is spooled too, and CloseRun
 *    is appended after the last one, so the file replays in order. The
 *    memory queue (older seqs) is sent first; then the spool is replayed
 *    from disk one record at a time; when the replay has caught up the
 *    file is removed and batches go to memory again.
 *  - At the end of the run what is left (queue, the spool's unreplayed
 *    records, CloseRun) is in the spool, fdatasync'd, behind OpenRun, so
 *    the file alone is a complete replayable run; the collector's
 *    idempotency (run_uid, seq, closed flag) makes replaying a record that
 *    was in fact stored harmless.
 *  - Leftover files (other runs) are delivered only while this run is open
 *    and idle, never after the close request: they cannot delay the
 *    profiled program's exit. A file is removed only after every record
 *    was acknowledged.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define LEFTOVER_SCAN_MS 3000
/* While closing, the run's own forked children are looked for this often. */
#define CHILD_SCAN_MS 20

static int own_ensure(ml_client *c)
{
    ml__sender *s = &c->snd;
    char dir[PATH_MAX];
    int rv;
    if (s->own.fd >= 0)
        return 0;
    if (s->spool_failed)
        return -EIO;
    char stem[256];
    /* A forked child's run (spool only) is named after its parent's, which
     * delivers it at its own end (ml__leftover_next). */
    if (c->cfg.spool_only && c->run.parent_id && c->run.parent_id[0])
        snprintf(stem, sizeof(stem), "%s.%s", c->run.parent_id, c->run.uid);
    else
        snprintf(stem, sizeof(stem), "%s", c->run.uid);
    if ((rv = ml__spool_dir(&c->cfg, dir, sizeof(dir))) == 0)
        rv = ml__spool_create(&s->own, dir, stem, c->server);
    if (rv == 0) {
        ml__req *o = ml__open_request(c);
        rv = o ? ml__spool_append(&s->own, ML_SPOOL_OPEN, 0, o->call_id, o->data, o->len, true)
               : -ENOMEM;
        ml__req_free(o);
        if (rv != 0)
            ml__spool_remove(&s->own);
    }
    if (rv != 0) {
        s->spool_failed = true;
        ml__client_error(c, rv, "cannot write the spool in %s: %s", dir, ml__strerror(rv));
        return rv;
    }
    s->own.off = s->own.size; /* OpenRun goes over the network when it can */
    return 0;
}

int ml__spool_batch(ml_client *c, const ml__req *r)
{
    ml__sender *s = &c->snd;
    int rv = own_ensure(c);
    if (rv == 0)
        rv = ml__spool_append(&s->own, ML_SPOOL_BATCH, r->seq, r->call_id, r->data, r->len, true);
    if (rv != 0)
        return rv;
    s->spooling = true;
    atomic_store(&c->to_disk, true);
    return 0;
}

static ml__reqkind req_kind(uint32_t kind)
{
    return kind == ML_SPOOL_OPEN    ? ML__REQ_OPEN
           : kind == ML_SPOOL_CLOSE ? ML__REQ_CLOSE
                                    : ML__REQ_BATCH;
}

/* Reads the next request record of sp (skipping META). NULL at the end or
 * on error; *err says which (-ENODATA: the end). */
static ml__req *read_next(ml__spool *sp, ml__source source, int *err)
{
    for (;;) {
        ml_spool_rec rec;
        uint8_t *data;
        uint64_t next;
        if (sp->off >= sp->size && source == ML__SRC_SPOOL) {
            *err = -ENODATA;
            return NULL;
        }
        if ((*err = ml__spool_read(sp, sp->off, &rec, &data, &next)) != 0)
            return NULL;
        if (rec.kind == ML_SPOOL_META) {
            free(data);
            sp->off = next;
            continue;
        }
        ml__req *r = ml__req_new(req_kind(rec.kind), data, rec.len, rec.call_id);
        if (r == NULL) {
            free(data);
            *err = -ENOMEM;
            return NULL;
        }
        r->source = source;
        r->seq = rec.seq;
        r->spool_next = next;
        return r;
    }
}

ml__req *ml__spool_next(ml_client *c)
{
    ml__sender *s = &c->snd;
    int err;
    if (s->own.fd < 0 || !s->spooling)
        return NULL;
    if (s->final_sealed && !s->close_spooled) {
        ml__req *cr = ml__close_request(c);
        if (cr == NULL || ml__spool_append(&s->own, ML_SPOOL_CLOSE, 0, cr->call_id, cr->data,
                                           cr->len, true) != 0) {
            ml__req_free(cr);
            return NULL; /* tried again on the next step; at the end ml__spool_rest */
        }
        ml__req_free(cr);
        s->close_spooled = true;
    }
    ml__req *r = read_next(&s->own, ML__SRC_SPOOL, &err);
    if (r == NULL && err != -ENODATA && err != -ENOMEM) {
        /* our own file is unreadable: leave it for the collector's import */
        ml__client_error(c, err, "cannot read back the spool %s", s->own.path);
        s->failed = true;
    }
    return s->replay = r;
}

ml__req *ml__leftover_next(ml_client *c)
{
    ml__sender *s = &c->snd;
    char dir[PATH_MAX];
    int err;
    if (s->offline || s->failed || !s->opened)
        return NULL;
    /* Closing: once the run itself is stored, only its forked children's
     * runs (they end before it, and spool: nng does not survive a fork). */
    if (s->closing_seen && !s->close_acked)
        return NULL;
    if (s->left.fd < 0) {
        int64_t now = ml__mono_ms();
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "%s.", c->run.uid);
        if (now < s->left_scan_at || ml__spool_dir(&c->cfg, dir, sizeof(dir)) != 0)
            return NULL;
        s->left_scan_at = now + (s->closing_seen ? CHILD_SCAN_MS : LEFTOVER_SCAN_MS);
        if (ml__spool_find_leftover(dir, s->own.path, c->server, s->closing_seen ? prefix : NULL,
                                    &s->skip, &s->left) != 0)
            return NULL;
    }
    ml__req *r = read_next(&s->left, ML__SRC_LEFTOVER, &err);
    if (r == NULL) {
        if (err == -ENODATA || err == -EBADMSG) {
            /* every good record was acknowledged (a torn tail is a crash
             * mid-append: nothing the writer ever synced) */
            ml__spool_remove(&s->left);
            s->leftover_files++;
        } else {
            ml__spool_free(&s->left);
        }
        s->left_scan_at = 0; /* the next one at once */
        s->left_done = true;
        return NULL;
    }
    return s->replay = r;
}

bool ml__children_pending(ml_client *c)
{
    ml__sender *s = &c->snd;
    char dir[PATH_MAX], prefix[128];
    if (s->offline || s->failed || !s->close_acked)
        return false;
    if (s->left.fd >= 0 || s->replay != NULL)
        return true;
    if (ml__spool_dir(&c->cfg, dir, sizeof(dir)) != 0)
        return false;
    snprintf(prefix, sizeof(prefix), "%s.", c->run.uid);
    ml__spool probe;
    if (ml__spool_find_leftover(dir, s->own.path, c->server, prefix, &s->skip, &probe) != 0)
        return false;
    ml__spool_free(&probe); /* found one: ml__leftover_next takes it */
    s->left_scan_at = 0;
    return true;
}

void ml__replay_acked(ml_client *c)
{
    ml__sender *s = &c->snd;
    ml__req *r = s->replay;
    s->replay = NULL;
    if (r == NULL)
        return;
    if (r->source == ML__SRC_LEFTOVER) {
        s->left.off = r->spool_next;
    } else {
        s->own.off = r->spool_next;
        if (s->own.off >= s->own.size && (!s->final_sealed || s->close_acked)) {
            /* caught up: everything in the file is stored */
            ml__spool_remove(&s->own);
            s->spooling = false;
            s->close_spooled = false;
            atomic_store(&c->to_disk, false);
        }
    }
    ml__req_free(r);
}

void ml__leftover_give_up(ml_client *c)
{
    ml__sender *s = &c->snd;
    ml__spool_skip_add(&s->skip, &s->left);
    ml__spool_free(&s->left);
    ml__req_free(s->replay);
    s->replay = NULL;
}

/* Counts a request that could not be spooled as lost. */
static void lose(ml__sender *s, ml__req *r)
{
    s->lost_samples += r->samples;
    s->lost_logs += r->logs;
    ml__req_free(r);
}

void ml__spool_rest(ml_client *c)
{
    ml__sender *s = &c->snd;
    ml__req *r;
    bool pending =
        s->queue.head != NULL || !s->close_acked || (s->own.fd >= 0 && s->own.off < s->own.size);

    if (s->replay != NULL && s->replay->source == ML__SRC_LEFTOVER) {
        ml__req_free(s->replay); /* the file keeps the record */
        s->replay = NULL;
    }
    ml__spool_free(&s->left);
    ml__req_free(s->replay); /* own spool records are on disk already */
    s->replay = NULL;
    if (!pending) {
        if (s->own.fd >= 0)
            ml__spool_remove(&s->own);
        return;
    }
    if (own_ensure(c) != 0) {
        while ((r = ml__queue_pop(&s->queue)) != NULL)
            lose(s, r);
        return;
    }
    /* the queue holds the oldest unacknowledged batches: they go before
     * the spooled ones in seq terms, but the collector takes any order */
    while ((r = ml__queue_pop(&s->queue)) != NULL) {
        if (ml__spool_append(&s->own, ML_SPOOL_BATCH, r->seq, r->call_id, r->data, r->len, false) ==
            0)
            ml__req_free(r);
        else
            lose(s, r);
    }
    if (!s->close_spooled && !s->close_acked) {
        ml__req *cr = ml__close_request(c);
        if (cr != NULL && ml__spool_append(&s->own, ML_SPOOL_CLOSE, 0, cr->call_id, cr->data,
                                           cr->len, false) == 0)
            s->close_spooled = true;
        ml__req_free(cr);
    }
    if (fdatasync(s->own.fd) != 0)
        ml__client_error(c, -EIO, "cannot sync the spool %s", s->own.path);
    s->spool_path = s->own.path ? strdup(s->own.path) : NULL;
    ml__spool_free(&s->own);
}
