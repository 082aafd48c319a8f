/*
 * The sender thread: one per client. It discovers the collector, opens an
 * nng REQ socket (a non-blocking dial, so a collector that starts later is
 * reached), sends OpenRun, then a sealed batch every flush interval or when
 * a batch is full, one request in flight, each answered before the next.
 * A failed or unanswered request stays queued and is sent again (the same
 * envelope, so the same call id and seq) after a backoff. On close it sends
 * what is queued and then CloseRun, until done or the close deadline.
 *
 * Every wait is bounded: the condition variable by the next flush, retry or
 * deadline; nng by aio timeouts; discovery by should_stop().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "internal.h"

#define BACKOFF_MIN 100
#define BACKOFF_MAX 2000
#define DISCOVER_BACKOFF_MAX 5000
/* Requests in a row that failed while no connection was up before a
 * discovered ingest address is looked up again (the collector may have
 * come back on another port). */
#define REDISCOVER_AFTER 2

/* pid of the process that first used nng; nng cannot be used again after a
 * fork (it aborts: "nng is not fork-reentrant safe"). */
static atomic_int nng_pid;

bool ml__transport_forked(void)
{
    int pid = atomic_load(&nng_pid);
    return pid != 0 && pid != (int)getpid();
}

int64_t ml__clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ml__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ml__sender_init(ml__sender *s)
{
    memset(s, 0, sizeof(*s));
    atomic_init(&s->queue.bytes, 0);
    s->backoff = BACKOFF_MIN;
    s->discover_backoff = BACKOFF_MIN;
    ml__spool_init(&s->own);
    ml__spool_init(&s->left);
}

void ml__sender_close(ml__sender *s)
{
    uint64_t ignored = 0;
    ml__queue_drop_all(&s->queue, &ignored, &ignored);
    ml__req_free(s->replay);
    s->replay = NULL;
    ml__spool_free(&s->own);
    ml__spool_free(&s->left);
    free(s->spool_path);
    s->spool_path = NULL;
    ml__req_free(s->open_req);
    ml__req_free(s->close_req);
    free(s->ingest);
    s->open_req = s->close_req = NULL;
    s->ingest = NULL;
}

/* ---- callbacks from nng threads ------------------------------------------- */

static void on_aio(void *arg)
{
    ml_client *c = arg;
    pthread_mutex_lock(&c->mu);
    c->aio_done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    ml_client *c = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_store(&c->pipe_seen, true);
        atomic_fetch_add(&c->pipes, 1);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub(&c->pipes, 1);
    }
}

/* ---- failures --------------------------------------------------------------- */

/* Nothing more will be sent over the network: what is queued and what
 * comes next goes to the spool (finish), for a collector that takes it. */
static void fail_permanently(ml_client *c)
{
    ml__sender *s = &c->snd;
    s->failed = true;
}

/* An attempt that began after the close request failed: if the collector was
 * never reached, closing stops waiting for it (see close_finished). */
static void note_closing_failure(ml__sender *s)
{
    if (s->closing_seen && s->attempt_at >= s->closing_at)
        s->closing_failure = true;
}

static void backoff(ml__sender *s)
{
    s->retry_at = ml__mono_ms() + s->backoff;
    s->backoff = s->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : s->backoff * 2;
    note_closing_failure(s);
}

static const char *req_name(const ml__req *r)
{
    return r->kind == ML__REQ_OPEN ? "OpenRun" : r->kind == ML__REQ_CLOSE ? "CloseRun" : "Batch";
}

/* The request in flight failed transiently: it stays queued for a retry. */
static void request_failed_detail(ml_client *c, int err, const char *what, const char *detail)
{
    ml__sender *s = &c->snd;
    ml__req *r = s->inflight;
    s->inflight = NULL;
    s->recv_phase = false;
    /* no connection at all (not a refusal or a slow reply): counts towards
     * looking the ingest address up again */
    if (atomic_load(&c->pipes) <= 0)
        s->dead_requests++;
    else
        s->dead_requests = 0;
    if (!atomic_load(&c->pipe_seen))
        ml__client_conn_error(c, -ECONNREFUSED, "cannot connect to %s", s->ingest);
    else
        ml__client_conn_error(c, err, "%s %s: %s", what, req_name(r),
                              detail && *detail ? detail : ml__strerror(err));
    backoff(s);
}

static void request_failed(ml_client *c, int err, const char *what)
{
    request_failed_detail(c, err, what, NULL);
}

/* ---- replies ---------------------------------------------------------------- */

static void set_run_id(ml_client *c, const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (len == 0 || len > ML__RUN_ID_MAX || !ml__utf8_valid(id, len))
        return;
    if (atomic_load(&c->run_id) == c->run_id_final)
        return; /* set once: readers may hold the pointer */
    memcpy(c->run_id_final, id, len + 1);
    atomic_store_explicit(&c->run_id, c->run_id_final, memory_order_release);
}

/* The collector stores no more of this run (OUT_OF_RANGE: its maximum run
 * size). What is queued or spooled and what is recorded from now on is
 * dropped and counted (CloseRun reports it); the run is closed. Resending
 * could only be refused again, and spooling would only move the refusal
 * to the next importer. */
static void refuse_run(ml_client *c, const char *detail)
{
    ml__sender *s = &c->snd;
    s->refused = true;
    s->dead_requests = 0;
    snprintf(c->refusal, sizeof(c->refusal), "%s", detail);
    ml__queue_drop_all(&s->queue, &s->lost_samples, &s->lost_logs);
    if (s->replay != NULL && s->replay->source == ML__SRC_SPOOL) {
        ml__req_free(s->replay);
        s->replay = NULL;
    }
    if (s->own.fd >= 0) {
        /* its batches are refused the same way; their counts are not
         * kept on disk, so the collector learns of them only as a gap */
        ml__spool_remove(&s->own);
        s->spooling = false;
        s->close_spooled = false;
        atomic_store(&c->to_disk, false);
    }
}

/* Stops folding the last batch into CloseRun: the folded request (in
 * flight, s->close_req) is dropped; the batch stays queued. */
static void unfold(ml__sender *s)
{
    s->no_fold = true;
    if (s->close_req != NULL && s->close_req->sent && s->queue.head != NULL)
        s->queue.head->sent = true; /* counted in batches_sent already */
    if (s->inflight == s->close_req)
        s->inflight = NULL;
    ml__req_free(s->close_req);
    s->close_req = NULL;
}

/* A reply with status != OK. */
static void on_status(ml_client *c, ml__req *r, const Microlog__V1__Envelope *e)
{
    ml__sender *s = &c->snd;
    int err = ml__err_from_status(e->status);
    const char *detail = e->error && *e->error ? e->error : "";

    if (r->folded) {
        /* The status is the final batch's (or the close's): answered as if
         * that batch had been sent alone; it and CloseRun go separately. */
        ml__req *batch = s->queue.head;
        unfold(s);
        s->inflight = batch;
        if (batch == NULL) {
            request_failed_detail(c, err, "the collector could not take", detail);
            return;
        }
        r = batch;
    }

    if (e->status == MICROLOG__V1__STATUS__OUT_OF_RANGE && r->source != ML__SRC_LEFTOVER &&
        r->kind == ML__REQ_BATCH) {
        s->inflight = NULL;
        s->recv_phase = false;
        s->backoff = BACKOFF_MIN;
        s->retry_at = 0;
        ml__client_conn_error(c, err, "%s", *detail ? detail : ml__status_name(e->status));
        refuse_run(c, *detail ? detail : ml__status_name(e->status));
        return;
    }
    if (r->source == ML__SRC_LEFTOVER && ml__status_permanent(e->status)) {
        s->inflight = NULL;
        s->recv_phase = false;
        ml__leftover_give_up(c); /* another run's problem: ours goes on */
        return;
    }
    if (ml__status_permanent(e->status)) {
        s->inflight = NULL;
        s->recv_phase = false;
        ml__client_conn_error(c, err, "%s%s%s", ml__status_name(e->status), *detail ? ": " : "",
                              detail);
        fail_permanently(c);
        return;
    }
    /* The collector's reason (a limit, a full disk) says more than errno. */
    request_failed_detail(c, err, "the collector could not take", detail);
    if (e->status == MICROLOG__V1__STATUS__RESOURCE_EXHAUSTED && *detail)
        snprintf(c->limit, sizeof(c->limit), "%s", detail);
    if (e->status == MICROLOG__V1__STATUS__NOT_FOUND && r->kind != ML__REQ_OPEN)
        s->opened = false; /* the collector lost the run (restart): open it again */
}

/* Applies an OK reply's payload; false when it cannot be decoded. */
static bool on_ok(ml_client *c, ml__req *r, const ml_wire_msg *w)
{
    ml__sender *s = &c->snd;
    if (r->source == ML__SRC_LEFTOVER) {
        ml__replay_acked(c); /* another run: only the status matters */
        return true;
    }
    if (r->kind == ML__REQ_OPEN) {
        Microlog__V1__OpenRunReply *o =
            microlog__v1__open_run_reply__unpack(NULL, w->payload_len, w->payload);
        if (o == NULL)
            return false;
        set_run_id(c, o->run_id);
        s->opened = true;
        s->fold_ok = o->takes_final_batch;
        microlog__v1__open_run_reply__free_unpacked(o, NULL);
    } else if (r->kind == ML__REQ_BATCH) {
        Microlog__V1__BatchReply *b =
            microlog__v1__batch_reply__unpack(NULL, w->payload_len, w->payload);
        if (b == NULL)
            return false;
        if (b->acked_seq < r->seq)
            ml__client_error(c, -EIO, "the collector stored batches only up to %llu of %llu",
                             (unsigned long long)b->acked_seq, (unsigned long long)r->seq);
        microlog__v1__batch_reply__free_unpacked(b, NULL);
        if (r->source == ML__SRC_MEMORY)
            ml__req_free(ml__queue_pop(&s->queue));
        else
            ml__replay_acked(c);
        s->batches_acked++;
    } else {
        Microlog__V1__CloseRunReply *cr =
            microlog__v1__close_run_reply__unpack(NULL, w->payload_len, w->payload);
        if (cr == NULL)
            return false;
        set_run_id(c, cr->run_id);
        bool complete = cr->complete;
        microlog__v1__close_run_reply__free_unpacked(cr, NULL);
        if (r->folded && !complete) {
            /* A collector that ignored final_batch (an older one behind the
             * same address) or a gap before it: the batch goes alone, then
             * a plain CloseRun (idempotent) tells the final verdict. */
            unfold(s);
            return true;
        }
        if (r->folded) {
            ml__req_free(ml__queue_pop(&s->queue));
            s->batches_acked++;
        }
        s->close_acked = true;
        s->close_complete = complete;
        if (r->source == ML__SRC_SPOOL)
            ml__replay_acked(c);
    }
    return true;
}

static void on_reply(ml_client *c, const uint8_t *buf, size_t len)
{
    ml__sender *s = &c->snd;
    ml__req *r = s->inflight;
    ml_wire_msg w;
    int rv = ml_wire_unpack(buf, len, &w);

    if (rv != 0 || w.env->call_id != r->call_id) {
        if (rv == 0 || rv == -EPROTO) /* both leave an envelope to free */
            ml_wire_msg_free(&w);
        request_failed(c, rv ? rv : -EBADMSG, "malformed reply to");
        return;
    }
    atomic_store(&c->reached, true);
    if (w.env->status != MICROLOG__V1__STATUS__OK) {
        on_status(c, r, w.env);
    } else if (!on_ok(c, r, &w)) {
        request_failed(c, -EBADMSG, "malformed reply to");
    } else {
        s->ack_us[s->nack++ % ML__ACK_SAMPLES] = (uint32_t)(ml__clock_us() - s->sent_us);
        s->inflight = NULL;
        s->recv_phase = false;
        s->backoff = BACKOFF_MIN;
        s->retry_at = 0;
        s->dead_requests = 0;
        if (c->conn_err != 0) { /* reachable again: the old reason is stale */
            pthread_mutex_lock(&c->mu);
            c->conn_err = 0;
            c->conn_reason[0] = '\0';
            pthread_mutex_unlock(&c->mu);
        }
    }
    ml_wire_msg_free(&w);
}

/* The aio finished a phase of the request in flight. */
static void on_aio_done(ml_client *c)
{
    ml__sender *s = &c->snd;
    int rv = nng_aio_result(s->aio);
    nng_msg *m = nng_aio_get_msg(s->aio);

    if (s->inflight == NULL)
        return;
    if (!s->recv_phase) {
        if (rv != 0) {
            if (m != NULL)
                nng_msg_free(m); /* a failed send leaves the message with us */
            request_failed(c, ml__err_from_nng(rv), "cannot send");
            return;
        }
        s->recv_phase = true;
        nng_aio_set_timeout(s->aio, (nng_duration)c->cfg.connect_timeout_ms);
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    if (rv != 0) {
        request_failed(c, ml__err_from_nng(rv), "no reply to");
        return;
    }
    on_reply(c, nng_msg_body(m), nng_msg_len(m));
    nng_msg_free(m);
}

/* ---- the socket ------------------------------------------------------------- */

static void socket_close(ml__sender *s)
{
    if (s->aio != NULL)
        nng_aio_stop(s->aio); /* waits for on_aio to return */
    if (s->sock_open)
        nng_close(s->sock); /* closes the context too */
    if (s->aio != NULL)
        nng_aio_free(s->aio);
    s->aio = NULL;
    s->sock_open = false;
}

/* Opens the REQ socket and starts dialing s->ingest in the background. */
static void socket_open(ml_client *c)
{
    ml__sender *s = &c->snd;
    int rv, expected = 0;
    /* redial at least twice per request timeout, so that a request that
     * times out unconnected means the collector really is not there */
    nng_duration redial = (nng_duration)(c->cfg.connect_timeout_ms / 2);
    redial = redial > 250 ? 250 : redial < 10 ? 10 : redial;

    s->attempt_at = ml__mono_ms();
    atomic_compare_exchange_strong(&nng_pid, &expected, (int)getpid());
    if ((rv = nng_req0_open(&s->sock)) != 0)
        goto fail;
    s->sock_open = true;
    /* a reply is small; anything near the envelope limit is not one */
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, ML_WIRE_MAX_MESSAGE);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, redial < 50 ? redial : 50);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, redial);
    if ((rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, on_pipe, c)) != 0 ||
        (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, on_pipe, c)) != 0 ||
        (rv = nng_ctx_open(&s->ctx, s->sock)) != 0 || (rv = nng_aio_alloc(&s->aio, on_aio, c)) != 0)
        goto fail;
    if (ml__url_is_tls(s->ingest)) {
        nng_dialer d;
        char err[300];
        int e = ml__tls_dialer(s->sock, s->ingest, c->ca_file, &d, err, sizeof(err));
        if (e != 0) {
            socket_close(s);
            ml__client_conn_error(c, e, "%s", err);
            fail_permanently(c); /* a missing CA file does not appear by retrying */
            return;
        }
        if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0)
            goto fail;
        return;
    }
    if ((rv = nng_dial(s->sock, s->ingest, NULL, NNG_FLAG_NONBLOCK)) != 0)
        goto fail;
    return;
fail:
    socket_close(s);
    int err = ml__err_from_nng(rv);
    ml__client_conn_error(c, err, "cannot dial %s: %s", s->ingest, nng_strerror(rv));
    if (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP || rv == NNG_EINVAL)
        fail_permanently(c); /* a bad address does not get better */
    else
        backoff(s);
}

/* ---- discovery -------------------------------------------------------------- */

static bool past_deadline(void *arg)
{
    ml_client *c = arg;
    pthread_mutex_lock(&c->mu);
    bool stop = c->closing && ml__mono_ms() >= c->deadline;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

static void discover(ml_client *c)
{
    ml__sender *s = &c->snd;
    char err[160];
    bool permanent;
    s->attempt_at = ml__mono_ms();
    int rv = ml__discover(c->server, c->token, c->ca_file, c->cfg.connect_timeout_ms, past_deadline,
                          c, &s->ingest, err, sizeof(err), &permanent);
    if (rv == 0) {
        s->discover_backoff = BACKOFF_MIN; /* a later re-discovery starts quick again */
        return;
    }
    ml__client_conn_error(c, rv, "%s", err);
    if (rv == -ECONNREFUSED && ml__autostart(c)) {
        s->discover_at = ml__mono_ms() + BACKOFF_MIN; /* it takes a moment to listen */
        return;
    }
    if (permanent) {
        fail_permanently(c);
        return;
    }
    s->discover_at = ml__mono_ms() + s->discover_backoff;
    s->discover_backoff = s->discover_backoff * 2 > DISCOVER_BACKOFF_MAX ? DISCOVER_BACKOFF_MAX
                                                                         : s->discover_backoff * 2;
    note_closing_failure(s);
}

/* ---- requests --------------------------------------------------------------- */

/* Packs CloseRun (counts as of now) with final_batch (may be NULL). */
static ml__req *close_pack(ml_client *c, Microlog__V1__Batch *final_batch)
{
    ml__sender *s = &c->snd;
    Microlog__V1__CloseRun m = MICROLOG__V1__CLOSE_RUN__INIT;
    uint64_t call_id = ++s->next_call_id;
    uint8_t *data;
    size_t len;

    pthread_mutex_lock(&c->mu);
    m.end_time = c->end_time_us;
    m.exit_status = c->exit_status;
    m.dropped_samples = c->drop_samples + s->lost_samples;
    m.dropped_logs = c->drop_logs + s->lost_logs;
    pthread_mutex_unlock(&c->mu);
    m.run_uid = c->run.uid;
    m.last_seq = s->seq;
    m.final_batch = final_batch;
    if (ml_wire_pack(ML_METHOD_CLOSE_RUN, call_id, 0, NULL, c->token, &m.base, &data, &len) != 0)
        return NULL;
    ml__req *r = ml__req_new(ML__REQ_CLOSE, data, len, call_id);
    if (r == NULL)
        free(data);
    return r;
}

ml__req *ml__close_request(ml_client *c)
{
    return close_pack(c, NULL);
}

ml__req *ml__close_request_folded(ml_client *c, const ml__req *batch)
{
    ml_wire_msg w;
    ml__req *r = NULL;
    /* the batch was packed for a Batch request: its message is taken back
     * out of the envelope (once per run, the last batch only) */
    int rv = ml_wire_unpack(batch->data, batch->len, &w);
    if (rv != 0) {
        if (rv == -EPROTO)
            ml_wire_msg_free(&w);
        return NULL;
    }
    Microlog__V1__Batch *b = microlog__v1__batch__unpack(NULL, w.payload_len, w.payload);
    if (b != NULL && (r = close_pack(c, b)) != NULL) {
        r->folded = true;
        r->sent = batch->sent; /* batches_sent counts the batch once */
        r->seq = batch->seq;
        r->samples = batch->samples;
        r->logs = batch->logs;
    }
    if (b != NULL)
        microlog__v1__batch__free_unpacked(b, NULL);
    ml_wire_msg_free(&w);
    return r;
}

ml__req *ml__open_request(ml_client *c)
{
    uint64_t call_id = ++c->snd.next_call_id;
    uint8_t *data;
    size_t len;
    if (ml__run_pack_open(&c->run, call_id, c->token, &data, &len) != 0)
        return NULL;
    ml__req *r = ml__req_new(ML__REQ_OPEN, data, len, call_id);
    if (r == NULL)
        free(data);
    return r;
}

/* True when the last batch can ride in CloseRun: the run is over, that batch
 * is the only one left (none in a spool before it) and the collector
 * takes final_batch. */
static bool can_fold(const ml__sender *s)
{
    const ml__req *h = s->queue.head;
    return s->fold_ok && !s->no_fold && s->final_sealed && !s->close_acked && !s->close_spooled &&
           !s->refused && s->own.fd < 0 && s->queue.count == 1 && h->source == ML__SRC_MEMORY &&
           h->seq == s->seq;
}

/* The folded CloseRun (built once, resent as is), or NULL: send the batch
 * alone then. */
static ml__req *folded_close(ml_client *c)
{
    ml__sender *s = &c->snd;
    if (s->close_req != NULL && s->close_req->folded)
        return s->close_req;
    ml__req_free(s->close_req);
    if ((s->close_req = ml__close_request_folded(c, s->queue.head)) == NULL)
        s->no_fold = true;
    return s->close_req;
}

/* The next request to send, or NULL when there is none (yet). */
static ml__req *next_request(ml_client *c)
{
    ml__sender *s = &c->snd;
    ml__req *r;
    if (!s->opened) {
        if (s->open_req == NULL && (s->open_req = ml__open_request(c)) == NULL)
            ml__client_error(c, -ENOMEM, "out of memory encoding OpenRun");
        return s->open_req;
    }
    if (s->refused) /* batches sealed since the refusal: not sent */
        ml__queue_drop_all(&s->queue, &s->lost_samples, &s->lost_logs);
    if (s->replay != NULL) /* read from a spool, not acknowledged yet */
        return s->replay;
    if (s->queue.head != NULL) {
        ml__req *folded = can_fold(s) ? folded_close(c) : NULL;
        return folded ? folded : s->queue.head;
    }
    if ((r = ml__spool_next(c)) != NULL)
        return r;
    if (s->final_sealed && !s->close_acked && !s->close_spooled) {
        if (s->close_req == NULL && (s->close_req = ml__close_request(c)) == NULL)
            ml__client_error(c, -ENOMEM, "out of memory encoding CloseRun");
        return s->close_req;
    }
    return ml__leftover_next(c);
}

static void send_request(ml_client *c, ml__req *r)
{
    ml__sender *s = &c->snd;
    nng_msg *m;
    int rv = nng_msg_alloc(&m, r->len);
    s->attempt_at = ml__mono_ms();
    s->inflight = r;
    s->recv_phase = false;
    if (rv != 0) {
        request_failed(c, ml__err_from_nng(rv), "cannot send");
        return;
    }
    memcpy(nng_msg_body(m), r->data, r->len);
    s->sent_us = ml__clock_us();
    if ((r->kind == ML__REQ_BATCH || r->folded) && !r->sent)
        s->batches_sent++;
    r->sent = true;
    nng_aio_set_msg(s->aio, m);
    nng_aio_set_timeout(s->aio, (nng_duration)c->cfg.connect_timeout_ms);
    nng_ctx_send(s->ctx, s->aio);
}

/* True when a request could start now or at retry_at. */
static bool has_request(const ml__sender *s)
{
    return !s->opened || s->queue.head != NULL || (s->final_sealed && !s->close_acked) ||
           s->replay != NULL || (s->spooling && s->own.fd >= 0 && s->own.off < s->own.size) ||
           s->left.fd >= 0;
}

/* Moves the connection forward by one step; may block in discovery. */
static void step(ml_client *c)
{
    ml__sender *s = &c->snd;
    int64_t now = ml__mono_ms();
    if (s->failed || s->offline || s->inflight != NULL)
        return;
    if (s->ingest == NULL) {
        if (now >= s->discover_at)
            discover(c);
        return;
    }
    if (now < s->retry_at)
        return;
    if (c->ingest == NULL && s->dead_requests >= REDISCOVER_AFTER) {
        /* The discovered address stopped answering: the collector may be
         * back on another port (a restart with an ephemeral ingest port).
         * Ask the server again; what is queued is sent there. */
        socket_close(s); /* its pipes' REM_POST callbacks balance c->pipes */
        free(s->ingest);
        s->ingest = NULL;
        s->dead_requests = 0;
        s->discover_at = now;
        return;
    }
    if (!s->sock_open) {
        socket_open(c);
        if (!s->sock_open)
            return;
    }
    ml__req *r = next_request(c);
    if (r != NULL)
        send_request(c, r);
    else if (has_request(s) && s->left.fd < 0)
        backoff(s); /* could not encode it: out of memory */
}

/* ---- the thread ------------------------------------------------------------- */

typedef struct wake {
    bool closing, aio_done, full;
    int64_t deadline;
} wake;

/* The earliest time the thread has something to do without being woken. */
static int64_t next_event(const ml_client *c, int64_t now)
{
    const ml__sender *s = &c->snd;
    int64_t until = s->next_flush;
    /* An offline client (spool only, a forked child) never discovers nor
     * retries: without this its discover_at of 0 made the thread spin. */
    if (!s->failed && !s->offline && s->inflight == NULL) {
        int64_t t = s->ingest == NULL ? s->discover_at : has_request(s) ? s->retry_at : until;
        if (t < until)
            until = t;
    }
    if (c->closing && c->deadline < until)
        until = c->deadline;
    if (c->closing && s->left_done) /* see whether more children wait */
        until = now;
    return until < now ? now : until;
}

static void wait_for_work(ml_client *c, wake *w)
{
    pthread_mutex_lock(&c->mu);
    for (;;) {
        int64_t now = ml__mono_ms(), until = next_event(c, now);
        if (c->aio_done || c->full_signaled || (c->closing && !c->snd.closing_seen) || now >= until)
            break;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000};
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    w->closing = c->closing;
    w->deadline = c->deadline;
    w->aio_done = c->aio_done;
    w->full = c->full_signaled;
    c->aio_done = false;
    pthread_mutex_unlock(&c->mu);
}

/* True once closing has nothing left to wait for. */
static bool close_finished(ml_client *c)
{
    const ml__sender *s = &c->snd;
    return s->close_acked || s->failed || s->offline ||
           (s->closing_failure && !atomic_load(&c->reached));
}

/* Closing ran out of time: says why, unless an attempt already did. The
 * sender thread is the only writer of conn_err. */
static void note_timeout(ml_client *c)
{
    ml__sender *s = &c->snd;
    if (s->close_acked || s->failed || c->conn_err != 0)
        return;
    if (c->limit[0] != '\0') /* the collector held us back: that is why */
        ml__client_conn_error(c, -ETIMEDOUT, "%s", c->limit);
    else if (s->ingest == NULL)
        ml__client_conn_error(c, -ETIMEDOUT, "no answer from %s in time", c->server);
    else if (!atomic_load(&c->pipe_seen))
        ml__client_conn_error(c, -ECONNREFUSED, "cannot connect to %s", s->ingest);
    else
        ml__client_conn_error(c, -ETIMEDOUT, "no reply from %s in time (%zu batches unsent)",
                              s->ingest, s->queue.count);
}

/* Cancels what is in flight (taking a reply that made it), closes the
 * socket and counts whatever is still queued as lost. */
static void finish(ml_client *c)
{
    ml__sender *s = &c->snd;
    if (s->aio != NULL) {
        nng_aio_stop(s->aio);
        if (s->inflight != NULL && s->recv_phase && nng_aio_result(s->aio) == 0) {
            on_aio_done(c);
        } else if (s->inflight != NULL && !s->recv_phase) {
            nng_msg *m = nng_aio_get_msg(s->aio);
            if (m != NULL)
                nng_msg_free(m);
        }
        s->inflight = NULL;
    }
    if (!s->offline)
        note_timeout(c);
    ml__spool_rest(c);          /* before the socket: its close may never return (join_sender) */
    pthread_mutex_lock(&c->mu); /* publishes the state above to a close_run that gives up */
    c->sender_settled = true;
    pthread_cond_broadcast(&c->settled_cv); /* a close that does not join waits for this */
    pthread_mutex_unlock(&c->mu);
    socket_close(s);
}

void *ml__sender_main(void *arg)
{
    ml_client *c = arg;
    ml__sender *s = &c->snd;
    wake w;

    s->next_flush = ml__mono_ms() + c->cfg.flush_interval_ms;
    for (;;) {
        wait_for_work(c, &w);
        if (w.aio_done)
            on_aio_done(c);
        int64_t now = ml__mono_ms();
        if (w.full || w.closing || now >= s->next_flush) {
            ml__seal(c);
            s->next_flush = now + c->cfg.flush_interval_ms;
            /* recording stopped when closing was set: this seal was the last */
            if (w.closing && !s->closing_seen)
                s->closing_at = now;
            s->final_sealed = w.closing;
            s->closing_seen = w.closing;
        }
        s->left_done = false;
        if (w.closing && (now >= w.deadline || (close_finished(c) && !ml__children_pending(c))))
            break;
        step(c);
    }
    finish(c);
    ml__sender_exit(c);
    return NULL;
}
