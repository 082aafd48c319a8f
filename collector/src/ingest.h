/*
 * Ingest: the nng REP listener clients send their runs to, and the request
 * handling behind it.
 *
 * Threads. nng runs its own threads. Its aio callbacks never touch
 * collector state: a received message is put on a mutex-protected queue
 * and the loop is woken with uv_async_send(); the loop thread runs the
 * handler and sends the reply. Each of the socket's contexts cycles
 * recv -> (loop) handle -> send reply -> recv, so several clients are
 * served at once while all processing stays on the loop.
 */
#ifndef ML_COLLECTOR_INGEST_H
#define ML_COLLECTOR_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Contexts (requests in flight) of an ingest socket by default. */
#define ML_INGEST_CONTEXTS 8

/* Handles one request (len bytes at req) on the loop thread and always
 * produces a reply: *reply is malloc'd (*reply_len bytes) and owned by the
 * caller afterwards. */
typedef void (*ml_ingest_handler)(void *arg, const uint8_t *req, size_t len, uint8_t **reply,
                                  size_t *reply_len);

typedef struct ml_ingest ml_ingest;

struct ml_hosted;

/* Listens on url (e.g. "tcp://127.0.0.1:0": nng picks a free port) with
 * ncontexts contexts, calling fn(arg, ...) on loop for each request.
 * hosted (borrowed, may be NULL) supplies the certificate for a
 * "tls+tcp://" url and the connection cap.
 * Returns 0 with *out set, or a negative errno (translated from nng) with
 * nothing left open. Loop thread. */
int ml_ingest_start(uv_loop_t *loop, const char *url, int ncontexts, ml_ingest_handler fn,
                    void *arg, const struct ml_hosted *hosted, ml_ingest **out);

/* Group commit (optional): after the loop has handled every queued
 * request, flush(arg) runs before any of their replies is sent, so one
 * fdatasync can cover them all. A nonzero return drops those replies (the
 * clients time out and resend; resends are idempotent). Loop thread. */
void ml_ingest_set_flush(ml_ingest *in, int (*flush)(void *arg));

/* The URL clients dial: url with the port nng actually bound. Borrowed. */
const char *ml_ingest_url(const ml_ingest *in);

/* Queue depths and connections of an ingest socket, for /metrics. */
typedef struct ml_ingest_stats {
    unsigned queued;     /* requests received, waiting for the loop */
    unsigned queued_max; /* the most that ever waited at once */
    unsigned replying;   /* replies built, waiting for the storage sync (group commit) */
    unsigned connections;
    unsigned contexts;                 /* requests that can be in flight at once */
    unsigned long refused_connections; /* requests answered "too many connections" */
} ml_ingest_stats;

/* Fills *out with a snapshot (each counter read atomically; together they
 * may be a moment apart). Any thread. */
void ml_ingest_get_stats(ml_ingest *in, ml_ingest_stats *out);

/* Stops receiving, closes the socket (waiting for nng callbacks to finish;
 * unanswered requests are dropped) and closes the loop handle; the memory
 * is freed once the loop has run the close callback. Loop thread. */
void ml_ingest_close(ml_ingest *in);

/* Translates an nng error code to a negative errno. */
int ml_err_from_nng(int rv);

/* ---- request handling (ingest_rpc.c) ---- */

struct ml_collector;

/* The ml_ingest_handler of a collector: decodes the envelope, dispatches
 * OpenRun / Batch / CloseRun, and packs the reply envelope (status and
 * error set on failure, call id echoed). Never fails on bad input. */
void ml_ingest_handle(void *collector, const uint8_t *req, size_t len, uint8_t **reply,
                      size_t *reply_len);

#endif
