/*
 * The recording functions: interning and records, called by the profiled
 * program's threads (the sampler, the log hooks). Each takes the client
 * mutex for a bounded amount of bookkeeping, never allocates in the steady
 * state, never waits for the network. Memory is bounded: when the batch
 * under construction plus the unsent queue reach cfg.buffer_max_bytes, a
 * record is refused with -ENOBUFS and counted as dropped.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

/* The calling thread's recording calls: how deep it is inside them, and
 * what a signal handler deferred to their end. Initial-exec TLS: a signal
 * handler reads it without the allocation a dynamic TLS access may make. */
static __thread struct {
    int depth;
    void (*volatile deferred)(void);
} call __attribute__((tls_model("initial-exec")));

bool ml_client_defer_to_call_end(void (*fn)(void))
{
    if (call.depth == 0)
        return false;
    call.deferred = fn;
    return true;
}

static void call_enter(void)
{
    call.depth++;
    atomic_signal_fence(memory_order_seq_cst); /* before the mutex is taken */
}

/* After the mutex is released. */
static void call_leave(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    if (--call.depth > 0 || call.deferred == NULL)
        return;
    void (*fn)(void) = call.deferred;
    call.deferred = NULL;
    fn();
}

/* Takes the mutex of a live, open client: 0 (locked, inside a recording
 * call) or -errno (neither). A forked client is never locked: its mutex
 * may belong to a vanished thread. */
static int lock_open(ml_client *c)
{
    if (c == NULL)
        return -EINVAL;
    if (atomic_load_explicit(&c->forked, memory_order_relaxed))
        return -ECHILD;
    call_enter();
    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        call_leave();
        return -ESHUTDOWN;
    }
    return 0;
}

/* Estimated bytes recorded but not yet sealed. */
static size_t unsealed_locked(const ml_client *c)
{
    return c->active->est_bytes + c->in.pending_bytes;
}

/* Whether more bytes may be recorded without passing the memory bounds. */
static bool room_locked(ml_client *c, size_t more)
{
    size_t now = unsealed_locked(c) + more;
    if (now > ML__BATCH_HARD_MAX)
        return false;
    /* batches go to disk (or will, once sealed, when the queue is full):
     * only the batch under construction is in memory, and it is sealed
     * once it reaches batch_max_bytes */
    if (atomic_load_explicit(&c->to_disk, memory_order_relaxed) ||
        now <= 2 * c->cfg.batch_max_bytes)
        return true;
    return now + atomic_load_explicit(&c->snd.queue.bytes, memory_order_relaxed) <=
           c->cfg.buffer_max_bytes;
}

/* Wakes the sender once per batch when the batch is full. */
static void unlock_and_signal(ml_client *c)
{
    if (!c->full_signaled && unsealed_locked(c) >= c->cfg.batch_max_bytes) {
        c->full_signaled = true;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    call_leave();
}

uint32_t ml_client_string(ml_client *c, const char *s, size_t len)
{
    if (lock_open(c) != 0)
        return 0;
    uint32_t id = ml__intern_string(&c->in, s, len);
    unlock_and_signal(c);
    return id;
}

uint32_t ml_client_frame(ml_client *c, uint32_t name, uint32_t file, uint32_t line,
                         uint32_t first_line, uint32_t flags)
{
    ml__frame f = {name, file, line, first_line, flags};
    if (lock_open(c) != 0)
        return 0;
    uint32_t id = ml__intern_frame(&c->in, &f);
    unlock_and_signal(c);
    return id;
}

uint32_t ml_client_stack(ml_client *c, const uint32_t *frames, size_t n, uint32_t truncated)
{
    if (lock_open(c) != 0)
        return 0;
    uint32_t id = ml__intern_stack(&c->in, frames, n, truncated);
    unlock_and_signal(c);
    return id;
}

uint32_t ml_client_thread(ml_client *c, uint64_t ident, uint64_t native_id, const char *name)
{
    int64_t now = ml_client_now(c);
    if (lock_open(c) != 0)
        return 0;
    uint32_t id = ml__intern_thread(&c->in, ident, native_id, name, now);
    unlock_and_signal(c);
    return id;
}

int ml_client_thread_end(ml_client *c, uint32_t thread, int64_t t)
{
    int rv = lock_open(c);
    if (rv != 0)
        return rv;
    rv = ml__intern_thread_end(&c->in, thread, t);
    unlock_and_signal(c);
    return rv;
}

int ml_client_sample(ml_client *c, uint32_t thread, int64_t t, uint32_t stack, uint32_t cpu_us)
{
    int rv = lock_open(c);
    if (rv != 0)
        return rv;
    if (thread == 0 || thread > c->in.nthreads || stack > c->in.nstacks) {
        rv = -EINVAL;
    } else if (!room_locked(c, 16) ||
               ml__batch_add_sample(c->active, thread, t, stack, cpu_us) != 0) {
        c->active->dropped_samples++;
        c->drop_samples++;
        rv = -ENOBUFS;
    } else {
        c->samples++;
    }
    unlock_and_signal(c);
    return rv;
}

int ml_client_status(ml_client *c, const ml_status *st)
{
    if (st == NULL)
        return -EINVAL;
    int rv = lock_open(c);
    if (rv != 0)
        return rv;
    if (!room_locked(c, 64) || ml__batch_add_status(c->active, st) != 0)
        rv = -ENOBUFS; /* the protocol has no counter for lost ticks */
    else
        c->statuses++;
    unlock_and_signal(c);
    return rv;
}

int ml_client_log(ml_client *c, uint32_t thread, int64_t t, int kind, int level, const char *msg,
                  size_t len, uint32_t stack, const char *logger)
{
    if (kind < ML_LOG_STDOUT || kind > ML_LOG_ANALYSIS || (msg == NULL && len > 0))
        return -EINVAL;
    int rv = lock_open(c);
    if (rv != 0)
        return rv;
    size_t est = 32 + (len < ML__LOG_MAX ? len : ML__LOG_MAX) + (logger ? strlen(logger) : 0);
    if (thread > c->in.nthreads || stack > c->in.nstacks) {
        rv = -EINVAL;
    } else if (!room_locked(c, est) ||
               ml__batch_add_log(c->active, thread, t, kind, level, msg, len, stack, logger) != 0) {
        c->active->dropped_logs++;
        c->drop_logs++;
        rv = -ENOBUFS;
    } else {
        c->logs++;
    }
    unlock_and_signal(c);
    return rv;
}
