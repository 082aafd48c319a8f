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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Contexts (requests in flight) of an ingest socket by default. Every one
 * of them can be waiting for the group commit at once: with many clients,
 * the more requests one fdatasync round covers, the more batches per
 * second the collector takes (1 000 clients flushing every second need
 * about as many). A context costs an nng aio; its request's memory is
 * held by the pipe anyway until a context takes it. */
#define ML_INGEST_CONTEXTS 1024

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

/* Group commit (optional). The replies of the requests the loop handled
 * wait in a group; flush(arg, in) starts making the group's records
 * durable and, once they are (or could not be), calls
 * ml_ingest_flushed(in, status) on the loop thread, possibly from within
 * flush. One group is in flight at a time: requests handled meanwhile
 * form the next group, handed over when this one completes. Loop thread. */
typedef void (*ml_ingest_flush_fn)(void *arg, ml_ingest *in);
void ml_ingest_set_flush(ml_ingest *in, ml_ingest_flush_fn flush);

/* Completes the group handed to the flush hook: status 0 sends its
 * replies; nonzero drops them (the clients time out and resend; resends
 * are idempotent). Also after ml_ingest_close(): then nothing is sent and
 * the ingest is freed here if it was waiting for this. Loop thread. */
void ml_ingest_flushed(ml_ingest *in, int status);

/* Idle timeout: a connection that completed no request for ms (and sent
 * nothing, or only part of a message) is closed; a client's nng dialer
 * reconnects by itself when it next has something to send. 0 (the
 * default) keeps idle connections forever. Loop thread. */
void ml_ingest_set_idle_timeout(ml_ingest *in, uint64_t ms);

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
    unsigned long idle_closed;         /* connections closed by the idle timeout */
} ml_ingest_stats;

/* Fills *out with a snapshot (each counter read atomically; together they
 * may be a moment apart). Any thread. */
void ml_ingest_get_stats(ml_ingest *in, ml_ingest_stats *out);

/* How long ml_ingest_close() waits for nng to close its socket. */
#define ML_INGEST_CLOSE_TIMEOUT_MS 5000

/* Called once the ingest is closed: complete is true when nng closed and
 * every handle with it; false when nng did not finish closing within
 * ML_INGEST_CLOSE_TIMEOUT_MS (the process should then exit without
 * nng_fini(), which would wait for the same socket). Loop thread. */
typedef void (*ml_ingest_closed_fn)(void *arg, bool complete);

/* Stops receiving at once (requests not answered yet are dropped; their
 * clients resend) and closes the socket on a thread of its own, so that
 * the loop goes on whatever nng does; then closes the loop handles and
 * calls closed. The memory is freed once any flush in flight has called
 * ml_ingest_flushed(). Loop thread. */
void ml_ingest_close(ml_ingest *in, ml_ingest_closed_fn closed, void *arg);

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
