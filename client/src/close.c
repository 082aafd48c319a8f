/*
 * The end of a client: ml_client_close (last batch, CloseRun, the result
 * and the one-line warning), ml_client_free and the fork escape hatch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
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
    r->statuses = c->statuses;
    r->spooled = s->spool_path != NULL;
    if (r->spooled)
        snprintf(r->spool_path, sizeof(r->spool_path), "%s", s->spool_path);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* p-th percentile (0..100) of the kept ack latencies, in us; 0 if none. */
static uint32_t ack_percentile(const ml__sender *s, int p)
{
    size_t n = s->nack < ML__ACK_SAMPLES ? s->nack : ML__ACK_SAMPLES;
    uint32_t v[ML__ACK_SAMPLES];
    if (n == 0)
        return 0;
    memcpy(v, s->ack_us, n * sizeof(v[0]));
    qsort(v, n, sizeof(v[0]), cmp_u32);
    return v[(n - 1) * (size_t)p / 100];
}

/* MICROLOG_DEBUG_COUNTS=PATH: one JSON line per closed client, appended in
 * one write(2) so that a parent and its children can share the file. */
static void debug_counts(ml_client *c, const ml_client_result *r)
{
    const char *path = getenv("MICROLOG_DEBUG_COUNTS");
    char line[1400];
    if (path == NULL || *path == '\0')
        return;
    int n = snprintf(line, sizeof(line),
                     "{\"run_uid\": \"%s\", \"run_id\": \"%s\", \"samples\": %llu, "
                     "\"statuses\": %llu, \"logs\": %llu, \"dropped_samples\": %llu, "
                     "\"dropped_logs\": %llu, \"delivered\": %s, \"spooled\": %s, "
                     "\"batches_sent\": %llu, \"batches_acked\": %llu, "
                     "\"leftover_files\": %llu, \"acks\": %zu, \"ack_p50_us\": %u, "
                     "\"ack_p99_us\": %u}\n",
                     c->run.uid, r->run_id, (unsigned long long)r->samples,
                     (unsigned long long)r->statuses, (unsigned long long)r->logs,
                     (unsigned long long)r->dropped_samples, (unsigned long long)r->dropped_logs,
                     r->delivered ? "true" : "false", r->spooled ? "true" : "false",
                     (unsigned long long)r->batches_sent, (unsigned long long)r->batches_acked,
                     (unsigned long long)c->snd.leftover_files, c->snd.nack,
                     ack_percentile(&c->snd, 50), ack_percentile(&c->snd, 99));
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (n > 0 && n < (int)sizeof(line) && write(fd, line, (size_t)n) < 0) {
        /* a debugging aid only */
    }
    close(fd);
}

static int close_status(ml_client *c, const ml_client_result *r)
{
    if (r->delivered)
        return 0;
    if (c->no_transport != NULL)
        return -ENOTSUP;
    if (c->snd.offline)
        return -EINPROGRESS; /* spool only: saved for a later delivery */
    if (c->snd.refused)
        return -EFBIG; /* over the collector's maximum run size */
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
    char line[1400];
    int n;

    if (c->snd.refused) {
        n = snprintf(line, sizeof(line),
                     "Microlog: the collector at %s stored only the start of this run (%s); "
                     "this run is incomplete\n",
                     where, c->refusal);
    } else if (r->spooled) {
        char why[300];
        if (c->snd.offline)
            snprintf(why, sizeof(why), "this process does not use the network (%s)",
                     c->no_transport ? c->no_transport : "spool only");
        else if (c->snd.failed && c->conn_err == -ELIBACC) /* no libcurl for discovery */
            snprintf(why, sizeof(why), "cannot ask %s for its ingest address (%s)", where, reason);
        else if (c->snd.failed)
            snprintf(why, sizeof(why), "the collector at %s refused this run (%s)", where, reason);
        else if (!r->collector_reached)
            snprintf(why, sizeof(why), "collector unreachable at %s (%s)", where, reason);
        else
            snprintf(why, sizeof(why),
                     "the collector at %s did not acknowledge the whole run in "
                     "time (%s)",
                     where, reason);
        n = snprintf(line, sizeof(line),
                     "Microlog: %s; run saved to %s; it will appear at %s/#%s once a collector "
                     "imports it (micrologd --standalone imports its spool at start-up)\n",
                     why, r->spool_path, c->server, r->run_id);
    } else if (c->no_transport != NULL)
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

/* How long past the close deadline the sender may take to end. It gives up
 * on the collector at the deadline; beyond it only nng can hold it: in
 * nng < 1.8, nng_close() can wait forever when a reply arrives while the
 * socket closes. The program is never kept waiting for that. */
#define SENDER_JOIN_GRACE_MS 2000

/* Joins the sender by deadline (ml__mono_ms) + the grace; false (and the
 * thread detached) when it did not end by then. */
static bool join_sender(ml_client *c, uint64_t deadline)
{
    uint64_t now = ml__mono_ms();
    uint64_t wait_ms = (deadline > now ? deadline - now : 0) + SENDER_JOIN_GRACE_MS;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(wait_ms / 1000);
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(c->thread, NULL, &ts) == 0)
        return true;
    pthread_detach(c->thread);
    return false;
}

/* Waits on the client's condition (CLOCK_MONOTONIC) until the sender has
 * settled or deadline + the grace has passed; the thread is never joined.
 * True when it settled. */
static bool await_settled(ml_client *c, uint64_t deadline)
{
    uint64_t end = deadline + SENDER_JOIN_GRACE_MS;
    struct timespec ts = {.tv_sec = (time_t)(end / 1000), .tv_nsec = (long)(end % 1000) * 1000000L};
    pthread_mutex_lock(&c->mu);
    while (!c->sender_settled && (uint64_t)ml__mono_ms() < end)
        if (pthread_cond_timedwait(&c->settled_cv, &c->mu, &ts) == ETIMEDOUT)
            break;
    bool settled = c->sender_settled;
    pthread_mutex_unlock(&c->mu);
    return settled;
}

static int close_run(ml_client *c, int exit_status, uint32_t timeout_ms, bool quiet, bool join)
{
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    c->exit_status = exit_status;
    c->end_time_us = ml_client_now(c);
    c->deadline = ml__mono_ms() + timeout_ms;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    bool settled = true;
    if (c->thread_started && !join) {
        /* The process is about to end: the sender is left running. */
        settled = await_settled(c, c->deadline);
        c->thread_stuck = true;
    } else if (c->thread_started && !join_sender(c, c->deadline)) {
        c->thread_stuck = true;
        pthread_mutex_lock(&c->mu);
        settled = c->sender_settled;
        pthread_mutex_unlock(&c->mu);
        static const char line[] = "Microlog: the network library did not close the connection "
                                   "to the collector; not waiting for it\n";
        if (!quiet && write(STDERR_FILENO, line, sizeof(line) - 1) < 0) {
            /* nowhere left to report it */
        }
    }
    c->thread_started = false;
    if (!settled) { /* stuck mid-run: the sender's state is still its own */
        memset(&c->result, 0, sizeof(c->result));
        snprintf(c->result.run_id, sizeof(c->result.run_id), "%s", ml_client_run_id(c));
        c->result.samples = c->samples;
        c->result.logs = c->logs;
        c->result.statuses = c->statuses;
        snprintf(c->result.error, sizeof(c->result.error), "%s",
                 "the sender is stuck in the network library");
        c->close_rv = -ETIMEDOUT;
        c->closed = true;
        return c->close_rv;
    }

    fill_result(c, &c->result);
    c->close_rv = close_status(c, &c->result);
    if (c->close_rv != 0 && !quiet)
        warn(c, &c->result);
    debug_counts(c, &c->result);
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
        close_run(c, exit_status, timeout_ms, c->cfg.quiet, true);
    if (res != NULL)
        *res = c->result;
    return c->close_rv;
}

int ml_client_close_dying(ml_client *c, int exit_status, uint32_t timeout_ms)
{
    if (c == NULL)
        return -EINVAL;
    if (atomic_load(&c->forked))
        return -ECHILD;
    if (!c->closed)
        close_run(c, exit_status, timeout_ms, c->cfg.quiet, false);
    return c->close_rv;
}

static void release(ml_client *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->settled_cv);
    ml__client_destroy(c);
}

void ml_client_free(ml_client *c)
{
    if (c == NULL || atomic_load(&c->forked))
        return; /* a forked client's memory is leaked on purpose */
    if (!c->closed)
        close_run(c, 0, 0, true, true); /* abandoned: the caller did not ask for a verdict */
    if (c->thread_stuck) {
        pthread_mutex_lock(&c->mu);
        bool exited = c->sender_exited;
        c->free_on_exit = !exited;
        pthread_mutex_unlock(&c->mu);
        if (!exited)
            return; /* the sender frees c if nng ever lets it go */
    }
    release(c);
}

void ml__sender_exit(ml_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->sender_exited = true;
    bool free_now = c->free_on_exit;
    pthread_mutex_unlock(&c->mu);
    if (free_now)
        release(c);
}

void ml_client_forget_after_fork(ml_client *c)
{
    if (c != NULL)
        atomic_store_explicit(&c->forked, true, memory_order_relaxed);
}
