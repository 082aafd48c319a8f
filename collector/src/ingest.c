#include "ingest.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "hosted.h"
#include "ingest_pipes.h"
#include "log.h"
#include "mem.h"
#include "tls.h"
#include "wire.h"

enum slot_state { SLOT_RECV, SLOT_WORK, SLOT_SEND };

/* Connections over the cap that are still open to carry their refusal (see
 * on_pipe); beyond this many, a connection over the cap is closed at once. */
#define REFUSED_PIPES_MAX 16

/* One context: a request in flight. state is written by whoever owns the
 * slot at the time (nng callback in RECV/SEND, loop in WORK), never both. */
typedef struct slot {
    ml_ingest *in;
    nng_ctx ctx;
    nng_aio *aio;
    enum slot_state state;
    nng_msg *msg;        /* the request while queued for the loop */
    struct slot *next;   /* queue link */
    uint32_t close_pipe; /* nng pipe id to close once the reply is sent; 0: none */
    uint32_t pipe;       /* the pipe the request came on (idle clock) */
} slot;

/* Most idle pipes closed per timer tick (the rest on the next ticks). */
#define IDLE_CLOSE_MAX 256

struct ml_ingest {
    nng_socket sock;
    nng_listener listener;
    slot *slots;
    int nslots;
    ml_ingest_handler fn;
    ml_ingest_flush_fn flush; /* group commit hook, may be NULL */
    void *arg;
    /* Group commit (loop thread): replies built and waiting. "group" grows
     * while "flushing" (the previous group) is being made durable; at most
     * one group is flushing at a time. */
    slot *group, **group_tail;
    slot *flushing;
    bool flush_busy;    /* the flush hook has not called ml_ingest_flushed() yet */
    int handles_open;   /* async and the timers, until their close callbacks ran */
    bool handle_closed; /* all closed: free once no flush is busy */
    /* Shutdown (ml_ingest_close): nng_close() runs on the closer thread,
     * which sets nng_closed and wakes the loop through async; close_timer
     * gives up waiting after ML_INGEST_CLOSE_TIMEOUT_MS. */
    pthread_t closer;
    bool closer_started;
    atomic_bool nng_closed;
    uv_timer_t close_timer;
    ml_ingest_closed_fn closed_cb;
    void *closed_arg;
    bool close_reported;
    /* Idle timeout: every pipe's last complete request; the timer closes
     * pipes idle for idle_ms (0: never). */
    ml_pipes pipes_clock;
    uint64_t idle_ms;
    uv_timer_t idle_timer;
    bool idle_timer_on;
    atomic_ulong idle_closed;
    char *url;
    atomic_bool closing;
    uv_async_t async;
    pthread_mutex_t mu; /* guards head/tail */
    slot *head, *tail;
    /* Connection cap (hosted.h limits): pipes counted in nng's pipe
     * callbacks (nng threads), hence atomic. */
    uint32_t max_pipes; /* 0: no cap */
    atomic_uint pipes;
    /* Pipes over the cap, kept open until their first request is answered
     * with RESOURCE_EXHAUSTED (guarded by refused_mu; nng threads). */
    pthread_mutex_t refused_mu;
    uint32_t refused[REFUSED_PIPES_MAX];
    /* Queue depths (ml_ingest_get_stats): requests waiting for the loop,
     * and replies built but not sent yet (waiting for the group commit or
     * sync before they go to nng). Counted by nng threads and the loop. */
    atomic_uint queued, queued_max, replying;
    atomic_ulong refused_total;
    nng_tls_config *tls; /* tls+tcp listener, or NULL */
};

int ml_err_from_nng(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case NNG_ENOMEM:
        return -ENOMEM;
    case NNG_EINVAL:
    case NNG_EBADTYPE:
        return -EINVAL;
    case NNG_EADDRINUSE:
        return -EADDRINUSE;
    case NNG_EADDRINVAL:
        return -EADDRNOTAVAIL;
    case NNG_ENOTSUP:
        return -ENOTSUP;
    case NNG_EPERM:
        return -EPERM;
    case NNG_ECLOSED:
        return -EBADF;
    case NNG_ETIMEDOUT:
        return -ETIMEDOUT;
    case NNG_ECONNREFUSED:
        return -ECONNREFUSED;
    default:
        return -EIO;
    }
}

/* nng thread: hands a received request to the loop. */
static void enqueue(ml_ingest *in, slot *s)
{
    pthread_mutex_lock(&in->mu);
    s->next = NULL;
    if (in->tail)
        in->tail->next = s;
    else
        in->head = s;
    in->tail = s;
    pthread_mutex_unlock(&in->mu);
    unsigned depth = atomic_fetch_add(&in->queued, 1) + 1;
    unsigned max = atomic_load(&in->queued_max);
    while (depth > max && !atomic_compare_exchange_weak(&in->queued_max, &max, depth))
        ;
    uv_async_send(&in->async);
}

/* Takes pipe id out of the refused set; true when it was there. */
static bool refused_take(ml_ingest *in, uint32_t id)
{
    bool found = false;
    pthread_mutex_lock(&in->refused_mu);
    for (int i = 0; i < REFUSED_PIPES_MAX && !found; i++)
        if (in->refused[i] == id) {
            in->refused[i] = 0;
            found = true;
        }
    pthread_mutex_unlock(&in->refused_mu);
    return found;
}

/* Puts pipe id into the refused set; false when it is full. */
static bool refused_put(ml_ingest *in, uint32_t id)
{
    bool put = false;
    pthread_mutex_lock(&in->refused_mu);
    for (int i = 0; i < REFUSED_PIPES_MAX && !put; i++)
        if (in->refused[i] == 0) {
            in->refused[i] = id;
            put = true;
        }
    pthread_mutex_unlock(&in->refused_mu);
    return put;
}

/* nng thread: the first request on a connection over the cap gets a
 * RESOURCE_EXHAUSTED reply in place (the loop never sees it); the pipe is
 * closed once that reply is sent. False when no reply could be built (the
 * pipe is closed now). */
static bool refuse_request(ml_ingest *in, slot *s, nng_msg *msg, uint32_t pipe_id)
{
    ml_wire_msg w = {0};
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    int rv = ml_wire_unpack(nng_msg_body(msg), nng_msg_len(msg), &w);
    const char *method = rv == 0 && w.env->method ? w.env->method : "";
    uint64_t call_id = w.env ? w.env->call_id : 0;
    char why[160];
    snprintf(why, sizeof(why), "too many connections: the collector takes at most %u; retry later",
             in->max_pipes);
    rv = ml_wire_pack(method, call_id, MICROLOG__V1__STATUS__RESOURCE_EXHAUSTED, why, NULL, NULL,
                      &reply, &reply_len);
    if (w.env)
        ml_wire_msg_free(&w);
    nng_msg_clear(msg);
    if (rv != 0 || nng_msg_append(msg, reply, reply_len) != 0) {
        nng_pipe p = nng_msg_get_pipe(msg);
        free(reply);
        nng_msg_free(msg);
        nng_pipe_close(p);
        return false;
    }
    free(reply);
    atomic_fetch_add(&in->refused_total, 1);
    s->close_pipe = pipe_id;
    s->state = SLOT_SEND;
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
    return true;
}

/* nng thread. Never touches collector state. */
static void on_aio(void *arg)
{
    slot *s = arg;
    ml_ingest *in = s->in;
    int rv = nng_aio_result(s->aio);
    if (s->state == SLOT_SEND) {
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(s->aio)); /* on failure the msg stays ours */
        if (s->close_pipe != 0) {
            nng_pipe p = NNG_PIPE_INITIALIZER;
            p.id = s->close_pipe;
            s->close_pipe = 0;
            nng_pipe_close(p); /* the refusal is on its way (or failed): done */
        }
        s->state = SLOT_RECV;
    } else if (rv == 0) {
        nng_msg *msg = nng_aio_get_msg(s->aio);
        uint32_t pipe_id = (uint32_t)nng_pipe_id(nng_msg_get_pipe(msg));
        s->pipe = pipe_id;
        ml_pipes_touch(&in->pipes_clock, pipe_id, ml_pipes_now_ms());
        if (in->max_pipes && refused_take(in, pipe_id)) {
            if (refuse_request(in, s, msg, pipe_id))
                return;
        } else if (atomic_load(&in->closing)) {
            nng_msg_free(msg); /* shutting down: never answered, the client resends */
            return;
        } else {
            s->msg = msg;
            s->state = SLOT_WORK;
            enqueue(in, s);
            return;
        }
    }
    if (atomic_load(&in->closing) || rv == NNG_ECLOSED)
        return;
    nng_ctx_recv(s->ctx, s->aio);
}

/* Loop thread: answers one request; the reply waits in s->msg until
 * send_reply() (after the group commit). Returns false when the slot went
 * straight back to receiving. */
static bool serve(ml_ingest *in, slot *s)
{
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    nng_msg *msg = s->msg;
    s->msg = NULL;
    in->fn(in->arg, nng_msg_body(msg), nng_msg_len(msg), &reply, &reply_len);
    nng_msg_clear(msg);
    if (reply == NULL || nng_msg_append(msg, reply, reply_len) != 0) {
        /* No reply can be sent: drop the request; the client times out and retries. */
        ml_error("ingest: cannot build a reply");
        nng_msg_free(msg);
        free(reply);
        s->state = SLOT_RECV;
        nng_ctx_recv(s->ctx, s->aio);
        return false;
    }
    free(reply);
    s->msg = msg;
    return true;
}

/* Loop thread: sends the reply serve() left in s->msg, or drops it. */
static void send_reply(slot *s, bool ok)
{
    nng_msg *msg = s->msg;
    s->msg = NULL;
    atomic_fetch_sub(&s->in->replying, 1);
    if (!ok) {
        nng_msg_free(msg);
        s->state = SLOT_RECV;
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    /* A reply that waited long for its sync must not count as idleness. */
    ml_pipes_touch(&s->in->pipes_clock, s->pipe, ml_pipes_now_ms());
    s->state = SLOT_SEND;
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
}

void ml_ingest_set_flush(ml_ingest *in, ml_ingest_flush_fn flush)
{
    in->flush = flush;
}

/* Loop thread: the in-flight group is done (its replies sent, or dropped
 * when status != 0 or when closing). */
static void finish_group(ml_ingest *in, slot *s, bool ok)
{
    while (s) {
        slot *next = s->next;
        if (atomic_load(&in->closing)) { /* nng is closed: nothing can be sent */
            atomic_fetch_sub(&in->replying, 1);
            nng_msg_free(s->msg);
            s->msg = NULL;
        } else
            send_reply(s, ok);
        s = next;
    }
}

static void free_ingest(ml_ingest *in);

/* Loop thread: hands the waiting group to the flush hook unless one is
 * already in flight (then it goes when that one completes). */
static void start_flush(ml_ingest *in)
{
    if (in->flush_busy || in->group == NULL)
        return;
    slot *g = in->group;
    in->group = NULL;
    in->group_tail = &in->group;
    if (in->flush == NULL) {
        finish_group(in, g, true);
        return;
    }
    in->flushing = g;
    in->flush_busy = true;
    in->flush(in->arg, in); /* may call ml_ingest_flushed() at once */
}

void ml_ingest_flushed(ml_ingest *in, int status)
{
    assert(in->flush_busy);
    slot *g = in->flushing;
    in->flushing = NULL;
    in->flush_busy = false;
    if (status != 0 && !atomic_load(&in->closing))
        ml_error("ingest: storage sync failed (%s); %s replies dropped (clients resend)",
                 strerror(-status), "the group's");
    finish_group(in, g, status == 0);
    if (in->handle_closed) { /* ml_ingest_close() ran while this group was in flight */
        free_ingest(in);
        return;
    }
    start_flush(in);
}

static void closer_done(ml_ingest *in);

static void on_async(uv_async_t *h)
{
    ml_ingest *in = h->data;
    for (;;) {
        pthread_mutex_lock(&in->mu);
        slot *s = in->head;
        if (s) {
            in->head = s->next;
            if (in->head == NULL)
                in->tail = NULL;
        }
        pthread_mutex_unlock(&in->mu);
        if (s == NULL)
            break;
        atomic_fetch_sub(&in->queued, 1);
        if (atomic_load(&in->closing)) {
            nng_msg_free(s->msg);
            s->msg = NULL;
            continue;
        }
        if (serve(in, s)) {
            atomic_fetch_add(&in->replying, 1);
            s->next = NULL;
            *in->group_tail = s;
            in->group_tail = &s->next;
        }
    }
    if (atomic_load(&in->closing)) {
        if (atomic_load(&in->nng_closed))
            closer_done(in);
        return;
    }
    start_flush(in);
}

/* Loop thread: closes the pipes idle for longer than the timeout. nng
 * reports their removal (on_pipe), which forgets them. */
static void on_idle_timer(uv_timer_t *t)
{
    ml_ingest *in = t->data;
    uint32_t ids[IDLE_CLOSE_MAX];
    size_t n =
        ml_pipes_expired(&in->pipes_clock, ml_pipes_now_ms(), in->idle_ms, ids, IDLE_CLOSE_MAX);
    for (size_t i = 0; i < n; i++) {
        nng_pipe p = NNG_PIPE_INITIALIZER;
        p.id = ids[i];
        nng_pipe_close(p);
    }
    if (n > 0) {
        atomic_fetch_add(&in->idle_closed, n);
        ml_debug("ingest: closed %zu connections idle for %llu ms", n,
                 (unsigned long long)in->idle_ms);
    }
}

void ml_ingest_set_idle_timeout(ml_ingest *in, uint64_t ms)
{
    in->idle_ms = ms;
    if (in->idle_timer_on)
        uv_timer_stop(&in->idle_timer);
    in->idle_timer_on = ms > 0;
    if (ms > 0) {
        /* A pipe is closed between ms and ms + period after its last request. */
        uint64_t period = ms / 4 < 1000 ? (ms / 4 > 10 ? ms / 4 : 10) : 1000;
        uv_timer_start(&in->idle_timer, on_idle_timer, period, period);
    }
}

/* The URL as clients must dial it: the bound port instead of port 0. */
static char *bound_url(nng_listener l, const char *url)
{
    int port = 0;
    nng_url *u = NULL;
    if (nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0 || nng_url_parse(&u, url) != 0)
        return ml_xstrdup(url);
    const char *host = u->u_hostname && u->u_hostname[0] ? u->u_hostname : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    char *s = ml_xasprintf("%s://%s%s%s:%d", u->u_scheme, v6 ? "[" : "", host, v6 ? "]" : "", port);
    nng_url_free(u);
    return s;
}

/* nng threads: counts pipes. One over the cap is kept just long enough to
 * answer its first request with RESOURCE_EXHAUSTED "too many connections"
 * (on_aio), so that the client can say why; when too many such pipes wait,
 * the newest is closed at once (the client sees a connection failure). */
static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    ml_ingest *in = arg;
    uint32_t id = (uint32_t)nng_pipe_id(p);
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        ml_pipes_add(&in->pipes_clock, id, ml_pipes_now_ms());
        unsigned n = atomic_fetch_add(&in->pipes, 1) + 1;
        if (in->max_pipes && n > in->max_pipes) {
            bool kept = refused_put(in, id);
            ml_warn("ingest: %u connections, over the limit of %u: %s", n, in->max_pipes,
                    kept ? "refusing the newest's first request" : "closing the newest");
            if (!kept)
                nng_pipe_close(p); /* REM_POST follows and undoes the count */
        }
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        ml_pipes_remove(&in->pipes_clock, id);
        atomic_fetch_sub(&in->pipes, 1);
        if (in->max_pipes)
            refused_take(in, id); /* closed before it sent anything */
    }
}

/* tls+tcp: the certificate of hosted mode on the listener. */
static int setup_tls(ml_ingest *in, const char *url, const ml_hosted *hosted)
{
    if (strncmp(url, "tls+tcp", 7) != 0)
        return 0;
    char err[300];
    if (hosted == NULL || hosted->tls_cert == NULL) {
        ml_error("ingest: %s needs a certificate (--tls-cert and --tls-key)", url);
        return NNG_EINVAL;
    }
    if (ml_tls_nng_server(hosted->tls_cert, hosted->tls_key, &in->tls, err, sizeof(err)) != 0) {
        ml_error("ingest: %s", err);
        return NNG_EINVAL;
    }
    return nng_listener_set_ptr(in->listener, NNG_OPT_TLS_CONFIG, in->tls);
}

static int open_socket(ml_ingest *in, const char *url, const ml_hosted *hosted)
{
    int rv;
    if ((rv = nng_rep0_open(&in->sock)) != 0)
        return rv;
    /* The hard cap stays the protocol's: a smaller configured limit is
     * enforced per request (ingest_rpc.c), so the client gets a clear
     * RESOURCE_EXHAUSTED instead of a silently dropped connection. */
    if ((rv = nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, ML_WIRE_MAX_MESSAGE)) != 0)
        return rv;
    in->max_pipes = hosted ? hosted->limits.max_connections : 0;
    if ((rv = nng_pipe_notify(in->sock, NNG_PIPE_EV_ADD_PRE, on_pipe, in)) != 0 ||
        (rv = nng_pipe_notify(in->sock, NNG_PIPE_EV_REM_POST, on_pipe, in)) != 0)
        return rv;
    for (int i = 0; i < in->nslots; i++) {
        slot *s = &in->slots[i];
        s->in = in;
        if ((rv = nng_ctx_open(&s->ctx, in->sock)) != 0 ||
            (rv = nng_aio_alloc(&s->aio, on_aio, s)) != 0)
            return rv;
    }
    if ((rv = nng_listener_create(&in->listener, in->sock, url)) != 0 ||
        (rv = setup_tls(in, url, hosted)) != 0 || (rv = nng_listener_start(in->listener, 0)) != 0)
        return rv;
    in->url = bound_url(in->listener, url);
    return 0;
}

static void free_ingest(ml_ingest *in)
{
    pthread_mutex_destroy(&in->mu);
    pthread_mutex_destroy(&in->refused_mu);
    ml_pipes_dispose(&in->pipes_clock);
    if (in->tls)
        nng_tls_config_free(in->tls);
    free(in->slots);
    free(in->url);
    free(in);
}

static void report_closed(ml_ingest *in, bool complete)
{
    if (in->close_reported || in->closed_cb == NULL)
        return;
    in->close_reported = true;
    in->closed_cb(in->closed_arg, complete);
}

/* Once every handle is closed: report, then free unless a flush is in
 * flight, in which case ml_ingest_flushed() frees. */
static void on_closed(uv_handle_t *h)
{
    ml_ingest *in = h->data;
    if (--in->handles_open > 0)
        return;
    in->handle_closed = true;
    report_closed(in, true);
    if (!in->flush_busy)
        free_ingest(in);
}

/* Closes nng: all callbacks have finished on return. Any thread. */
static void close_nng(ml_ingest *in)
{
    nng_close(in->sock);
    for (int i = 0; i < in->nslots; i++)
        if (in->slots[i].aio)
            nng_aio_free(in->slots[i].aio);
}

/* Loop thread: frees the requests queued for the loop and the replies
 * waiting for a flush that has not started (never sent). */
static void drop_waiting(ml_ingest *in)
{
    pthread_mutex_lock(&in->mu);
    slot *head = in->head;
    in->head = in->tail = NULL;
    pthread_mutex_unlock(&in->mu);
    for (slot *s = head; s; s = s->next) {
        atomic_fetch_sub(&in->queued, 1);
        nng_msg_free(s->msg);
        s->msg = NULL;
    }
    for (slot *s = in->group; s; s = s->next) {
        atomic_fetch_sub(&in->replying, 1);
        nng_msg_free(s->msg);
        s->msg = NULL;
    }
    in->group = NULL;
    in->group_tail = &in->group;
}

/* Closes nng synchronously: only while nothing can be connected yet (a
 * failed start). */
static void stop_nng(ml_ingest *in)
{
    atomic_store(&in->closing, true);
    close_nng(in);
    drop_waiting(in);
}

/* The closer thread. nng_close() waits for every pipe to be torn down; with
 * requests arriving during the close, nng 1.5 can wait forever (a pipe's
 * aio stopped between its start and its scheduling), so this never runs on
 * the loop. */
static void *closer_main(void *arg)
{
    ml_ingest *in = arg;
    close_nng(in);
    atomic_store(&in->nng_closed, true);
    uv_async_send(&in->async); /* async stays open until the loop saw this */
    return NULL;
}

/* Loop thread: nng is closed; nothing touches async any more. */
static void closer_done(ml_ingest *in)
{
    if (uv_is_closing((uv_handle_t *)&in->async))
        return;
    if (in->closer_started)
        pthread_join(in->closer, NULL);
    drop_waiting(in);
    uv_timer_stop(&in->close_timer);
    uv_close((uv_handle_t *)&in->close_timer, on_closed);
    uv_close((uv_handle_t *)&in->async, on_closed);
}

static void on_close_timeout(uv_timer_t *t)
{
    ml_ingest *in = t->data;
    ml_warn("ingest: the nng socket did not finish closing within %d ms (a shutdown race in "
            "nng); going on without it: requests it still holds were not acknowledged and "
            "their clients resend them",
            ML_INGEST_CLOSE_TIMEOUT_MS);
    report_closed(in, false);
}

int ml_ingest_start(uv_loop_t *loop, const char *url, int ncontexts, ml_ingest_handler fn,
                    void *arg, const struct ml_hosted *hosted, ml_ingest **out)
{
    ml_ingest *in = ml_xcalloc(1, sizeof(*in));
    in->fn = fn;
    in->arg = arg;
    in->nslots = ncontexts > 0 ? ncontexts : ML_INGEST_CONTEXTS;
    in->slots = ml_xcalloc((size_t)in->nslots, sizeof(slot));
    pthread_mutex_init(&in->mu, NULL);
    pthread_mutex_init(&in->refused_mu, NULL);
    atomic_init(&in->closing, false);
    atomic_init(&in->queued, 0);
    atomic_init(&in->queued_max, 0);
    atomic_init(&in->replying, 0);
    atomic_init(&in->refused_total, 0);
    atomic_init(&in->pipes, 0);
    atomic_init(&in->idle_closed, 0);
    atomic_init(&in->nng_closed, false);
    in->group_tail = &in->group;
    ml_pipes_init(&in->pipes_clock);
    int rv = uv_async_init(loop, &in->async, on_async);
    if (rv != 0) {
        free_ingest(in);
        return rv;
    }
    in->async.data = in;
    in->handles_open = 3;
    uv_timer_init(loop, &in->idle_timer);
    in->idle_timer.data = in;
    uv_timer_init(loop, &in->close_timer);
    in->close_timer.data = in;
    if ((rv = open_socket(in, url, hosted)) != 0) {
        ml_error("ingest: cannot listen on %s: %s", url, nng_strerror(rv));
        stop_nng(in);
        uv_close((uv_handle_t *)&in->idle_timer, on_closed);
        uv_close((uv_handle_t *)&in->close_timer, on_closed);
        uv_close((uv_handle_t *)&in->async, on_closed);
        return ml_err_from_nng(rv);
    }
    for (int i = 0; i < in->nslots; i++) {
        in->slots[i].state = SLOT_RECV;
        nng_ctx_recv(in->slots[i].ctx, in->slots[i].aio);
    }
    *out = in;
    return 0;
}

const char *ml_ingest_url(const ml_ingest *in)
{
    return in->url;
}

void ml_ingest_get_stats(ml_ingest *in, ml_ingest_stats *out)
{
    out->queued = atomic_load(&in->queued);
    out->queued_max = atomic_load(&in->queued_max);
    out->replying = atomic_load(&in->replying);
    out->connections = atomic_load(&in->pipes);
    out->contexts = (unsigned)in->nslots;
    out->refused_connections = atomic_load(&in->refused_total);
    out->idle_closed = atomic_load(&in->idle_closed);
}

void ml_ingest_close(ml_ingest *in, ml_ingest_closed_fn closed, void *arg)
{
    in->closed_cb = closed;
    in->closed_arg = arg;
    atomic_store(&in->closing, true);
    drop_waiting(in);
    uv_close((uv_handle_t *)&in->idle_timer, on_closed);
    if (pthread_create(&in->closer, NULL, closer_main, in) == 0) {
        in->closer_started = true;
        uv_timer_start(&in->close_timer, on_close_timeout, ML_INGEST_CLOSE_TIMEOUT_MS, 0);
    } else {
        close_nng(in); /* no thread to spare: close here */
        atomic_store(&in->nng_closed, true);
        closer_done(in);
    }
}
