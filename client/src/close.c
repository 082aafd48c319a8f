/*
 * The end of a client: ml_client_close (last batch, CloseRun, the result
 * and the one-line warning), ml_client_free and the fork escape hatch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void fill_result(ml_client *c, ml_client_result *r)
{
    const ml__sender *s = &c->snd;
    memset(r, 0, sizeof(*r));
    snprintf(r->run_id, sizeof(r->run_id), "%s", ml_client_run_id(c));
    r->delivered = s->close_acked && s->close_complete;
    r->collector_reached = atomic_load(&c->reached);
    r->samples = c->samples;
    r->logs = c->logs;
    r->batches_sent = s->batches_sent;
    r->batches_acked = s->batches_acked;
    r->dropped_samples = c->drop_samples + s->lost_samples;
    r->dropped_logs = c->drop_logs + s->lost_logs;
    snprintf(r->error, sizeof(r->error), "%s", c->error);
}

static int close_status(ml_client *c, const ml_client_result *r)
{
    if (r->delivered)
        return 0;
    if (c->no_transport != NULL)
        return -ENOTSUP;
    if (c->snd.failed)
        return c->conn_err ? c->conn_err : -EIO;
    if (!r->collector_reached && !atomic_load(&c->pipe_seen))
        return c->conn_err ? c->conn_err : -ECONNREFUSED;
    if (c->snd.close_acked)
        return -EIO; /* the collector says batches are missing */
    return -ETIMEDOUT;
}

/* The one line the profiled program's user sees when the run was not
 * (fully) recorded. One write(2): no stdio buffer shared with the program. */
static void warn(ml_client *c, const ml_client_result *r)
{
    const char *where = c->ingest ? c->ingest : c->server;
    const char *reason = c->conn_reason[0] ? c->conn_reason : "no answer in time";
    bool partial = c->snd.batches_acked > 0;
    char line[600];
    int n;

    if (c->no_transport != NULL)
        n = snprintf(line, sizeof(line),
                     "Microlog: cannot send from this forked process (%s); this run was not "
                     "recorded\n",
                     c->no_transport);
    else if (!r->collector_reached)
        n = snprintf(line, sizeof(line),
                     "Microlog: cannot reach the collector at %s (%s); this run was not "
                     "recorded\n",
                     where, reason);
    else if (c->snd.failed)
        n = snprintf(line, sizeof(line),
                     "Microlog: the collector at %s refused this run (%s); this run %s\n", where,
                     reason, partial ? "is incomplete" : "was not recorded");
    else
        n = snprintf(line, sizeof(line),
                     "Microlog: the collector at %s did not acknowledge the whole run (%s); "
                     "this run is incomplete\n",
                     where, reason);
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* nowhere left to report it */
    }
}

static int close_run(ml_client *c, int exit_status, uint32_t timeout_ms, bool quiet)
{
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    c->exit_status = exit_status;
    c->end_time_us = ml_client_now(c);
    c->deadline = ml__mono_ms() + timeout_ms;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started)
        pthread_join(c->thread, NULL);
    c->thread_started = false;

    fill_result(c, &c->result);
    c->close_rv = close_status(c, &c->result);
    if (c->close_rv != 0 && !quiet)
        warn(c, &c->result);
    c->closed = true;
    return c->close_rv;
}

int ml_client_close(ml_client *c, int exit_status, uint32_t timeout_ms, ml_client_result *res)
{
    if (c == NULL)
        return -EINVAL;
    if (atomic_load(&c->forked))
        return -ECHILD;
    if (!c->closed)
        close_run(c, exit_status, timeout_ms, c->cfg.quiet);
    if (res != NULL)
        *res = c->result;
    return c->close_rv;
}

void ml_client_free(ml_client *c)
{
    if (c == NULL || atomic_load(&c->forked))
        return; /* a forked client's memory is leaked on purpose */
    if (!c->closed)
        close_run(c, 0, 0, true); /* abandoned: the caller did not ask for a verdict */
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    ml__client_destroy(c);
}

void ml_client_forget_after_fork(ml_client *c)
{
    if (c != NULL)
        atomic_store_explicit(&c->forked, true, memory_order_relaxed);
}
