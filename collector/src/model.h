/*
 * The in-memory model of one run, rebuilt from its journal: the interned
 * tables (strings, frames, stacks, threads), the samples as columns, the
 * status ticks and the log events. Reading is incremental: loading again
 * continues at the end of the last record read, so a live run's model
 * follows its journal cheaply. Loop thread only.
 */
#ifndef ML_COLLECTOR_MODEL_H
#define ML_COLLECTOR_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ml_frame {
    uint32_t name, file; /* string ids */
    uint32_t line, first_line, flags;
} ml_frame;

typedef struct ml_stack {
    uint32_t *frames; /* frame ids, root first */
    uint32_t n;
    uint32_t truncated;
} ml_stack;

typedef struct ml_thread {
    bool defined;
    uint64_t ident, native_id;
    char *name;
    int64_t started_us, ended_us; /* us since start; ended 0 while alive */
    uint64_t samples;
} ml_thread;

typedef struct ml_log_event {
    int64_t time; /* us since start */
    uint32_t thread, kind, stack;
    int32_t level;
    char *message, *logger;
} ml_log_event;

typedef struct ml_status_tick {
    int64_t time;
    float cpu_percent, system_cpu_percent;
    uint64_t rss, memory_total, memory_free, objects;
    uint32_t modules;
} ml_status_tick;

/* Tables are indexed by id; entry 0 is unused ("none"). */
typedef struct ml_model {
    char **strings;
    size_t nstrings, capstrings;
    ml_frame *frames;
    size_t nframes, capframes;
    ml_stack *stacks;
    size_t nstacks, capstacks;
    ml_thread *threads;
    size_t nthreads, capthreads;

    /* Samples, one entry per sample across all batches. */
    uint32_t *sample_thread, *sample_stack, *sample_cpu;
    int64_t *sample_time; /* us since start */
    size_t nsamples, capsamples;

    ml_status_tick *status;
    size_t nstatus, capstatus;
    ml_log_event *logs;
    size_t nlogs, caplogs;

    double sample_period; /* from OpenRun, seconds */
    bool closed;
    int64_t end_time;

    uint64_t offset;          /* journal offset read up to */
    uint64_t batches_skipped; /* records that did not decode */

    /* Called by ml_model_load() after each batch record is added (NULL:
     * none), so a consumer can move the samples out as they come and a
     * long journal never sits in the sample columns whole. */
    void (*on_batch)(struct ml_model *m, void *arg);
    void *on_batch_arg;
} ml_model;

void ml_model_init(ml_model *m);

void ml_model_dispose(ml_model *m);

/* Reads the records of the journal at path that follow m->offset into m.
 * Returns 0 or -errno / -EBADMSG (m keeps what it had). */
int ml_model_load(ml_model *m, const char *path);

/* The string with this id, or "" when undefined. Borrowed from m. */
const char *ml_model_string(const ml_model *m, uint32_t id);

/* The frame / stack with this id, or NULL when undefined. */
const ml_frame *ml_model_frame(const ml_model *m, uint32_t id);
const ml_stack *ml_model_stack(const ml_model *m, uint32_t id);

#endif
