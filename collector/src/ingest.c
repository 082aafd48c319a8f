#include "ingest.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "log.h"
#include "mem.h"
#include "wire.h"

enum slot_state { SLOT_RECV, SLOT_WORK, SLOT_SEND };

/* One context: a request in flight. state is written by whoever owns the
 * slot at the time (nng callback in RECV/SEND, loop in WORK), never both. */
typedef struct slot {
    ml_ingest *in;
    nng_ctx ctx;
    nng_aio *aio;
    enum slot_state state;
    nng_msg *msg;      /* the request while queued for the loop */
    struct slot *next; /* queue link */
} slot;

struct ml_ingest {
    nng_socket sock;
    nng_listener listener;
    slot *slots;
    int nslots;
    ml_ingest_handler fn;
    int (*flush)(void *arg); /* group commit hook, may be NULL */
    void *arg;
    char *url;
    atomic_bool closing;
    uv_async_t async;
    pthread_mutex_t mu; /* guards head/tail */
    slot *head, *tail;
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
    uv_async_send(&in->async);
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
        s->state = SLOT_RECV;
    } else if (rv == 0) {
        s->msg = nng_aio_get_msg(s->aio);
        s->state = SLOT_WORK;
        enqueue(in, s);
        return;
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
    if (!ok) {
        nng_msg_free(msg);
        s->state = SLOT_RECV;
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    s->state = SLOT_SEND;
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
}

void ml_ingest_set_flush(ml_ingest *in, int (*flush)(void *arg))
{
    in->flush = flush;
}

static void on_async(uv_async_t *h)
{
    ml_ingest *in = h->data;
    slot *done = NULL, **tail = &done; /* answered, reply not sent yet */
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
        if (atomic_load(&in->closing)) {
            nng_msg_free(s->msg);
            s->msg = NULL;
            continue;
        }
        if (serve(in, s)) {
            s->next = NULL;
            *tail = s;
            tail = &s->next;
        }
    }
    bool ok = done == NULL || in->flush == NULL || in->flush(in->arg) == 0;
    if (!ok)
        ml_error("ingest: storage sync failed; replies dropped (clients resend)");
    while (done) {
        slot *s = done;
        done = s->next;
        send_reply(s, ok);
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

static int open_socket(ml_ingest *in, const char *url)
{
    int rv;
    if ((rv = nng_rep0_open(&in->sock)) != 0)
        return rv;
    if ((rv = nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, ML_WIRE_MAX_MESSAGE)) != 0)
        return rv;
    for (int i = 0; i < in->nslots; i++) {
        slot *s = &in->slots[i];
        s->in = in;
        if ((rv = nng_ctx_open(&s->ctx, in->sock)) != 0 ||
            (rv = nng_aio_alloc(&s->aio, on_aio, s)) != 0)
            return rv;
    }
    if ((rv = nng_listen(in->sock, url, &in->listener, 0)) != 0)
        return rv;
    in->url = bound_url(in->listener, url);
    return 0;
}

static void free_ingest(ml_ingest *in)
{
    pthread_mutex_destroy(&in->mu);
    free(in->slots);
    free(in->url);
    free(in);
}

static void on_closed(uv_handle_t *h)
{
    free_ingest(h->data);
}

/* Closes nng (all callbacks finished on return) and frees queued requests. */
static void stop_nng(ml_ingest *in)
{
    atomic_store(&in->closing, true);
    nng_close(in->sock);
    for (int i = 0; i < in->nslots; i++)
        if (in->slots[i].aio)
            nng_aio_free(in->slots[i].aio);
    for (slot *s = in->head; s; s = s->next)
        nng_msg_free(s->msg);
    in->head = in->tail = NULL;
}

int ml_ingest_start(uv_loop_t *loop, const char *url, int ncontexts, ml_ingest_handler fn,
                    void *arg, ml_ingest **out)
{
    ml_ingest *in = ml_xcalloc(1, sizeof(*in));
    in->fn = fn;
    in->arg = arg;
    in->nslots = ncontexts > 0 ? ncontexts : ML_INGEST_CONTEXTS;
    in->slots = ml_xcalloc((size_t)in->nslots, sizeof(slot));
    pthread_mutex_init(&in->mu, NULL);
    atomic_init(&in->closing, false);
    int rv = uv_async_init(loop, &in->async, on_async);
    if (rv != 0) {
        free_ingest(in);
        return rv;
    }
    in->async.data = in;
    if ((rv = open_socket(in, url)) != 0) {
        ml_error("ingest: cannot listen on %s: %s", url, nng_strerror(rv));
        stop_nng(in);
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

void ml_ingest_close(ml_ingest *in)
{
    stop_nng(in);
    uv_close((uv_handle_t *)&in->async, on_closed);
}
