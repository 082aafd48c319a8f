/*
 * The ingest connections (nng pipes) and when each last completed a
 * request: the idle timeout of the ingest listener (ingest.c) closes the
 * ones silent for too long, so that a peer that stopped mid-message, or
 * that never says anything, does not hold its connection forever.
 *
 * Threads: nng's pipe and aio callbacks add, touch and remove entries;
 * the loop collects the expired ones. A mutex guards the table.
 */
#ifndef ML_COLLECTOR_INGEST_PIPES_H
#define ML_COLLECTOR_INGEST_PIPES_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ml_pipe_entry {
    uint32_t id;      /* nng pipe id; 0: empty slot */
    uint64_t last_ms; /* monotonic ms of the last complete request (or of the connect) */
} ml_pipe_entry;

/* Open addressing with linear probing, at most half full. */
typedef struct ml_pipes {
    pthread_mutex_t mu;
    ml_pipe_entry *slots;
    size_t cap; /* a power of two */
    size_t n;
} ml_pipes;

void ml_pipes_init(ml_pipes *p);
void ml_pipes_dispose(ml_pipes *p);

/* Monotonic milliseconds (any thread). */
uint64_t ml_pipes_now_ms(void);

/* A new pipe, active as of now_ms. Any thread. */
void ml_pipes_add(ml_pipes *p, uint32_t id, uint64_t now_ms);

/* The pipe completed a request (or a reply went out) at now_ms; no-op for
 * an unknown id. Any thread. */
void ml_pipes_touch(ml_pipes *p, uint32_t id, uint64_t now_ms);

/* Forgets a pipe (closed). Any thread. */
void ml_pipes_remove(ml_pipes *p, uint32_t id);

/* Writes up to max ids of pipes idle since before now_ms - idle_ms into
 * out and restarts their clocks (so that a pipe whose close is slow is
 * not reported again at once). Returns how many were written. Any thread. */
size_t ml_pipes_expired(ml_pipes *p, uint64_t now_ms, uint64_t idle_ms, uint32_t *out, size_t max);

#endif
