#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "microlog.pb-c.h"

#include "journal.h"
#include "log.h"
#include "mem.h"
#include "validate.h"

void ml_model_init(ml_model *m)
{
    memset(m, 0, sizeof(*m));
}

void ml_model_dispose(ml_model *m)
{
    for (size_t i = 0; i < m->nstrings; i++)
        free(m->strings[i]);
    free(m->strings);
    free(m->frames);
    for (size_t i = 0; i < m->nstacks; i++)
        free(m->stacks[i].frames);
    free(m->stacks);
    for (size_t i = 0; i < m->nthreads; i++)
        free(m->threads[i].name);
    free(m->threads);
    free(m->sample_thread);
    free(m->sample_stack);
    free(m->sample_cpu);
    free(m->sample_time);
    free(m->status);
    for (size_t i = 0; i < m->nlogs; i++) {
        free(m->logs[i].message);
        free(m->logs[i].logger);
    }
    free(m->logs);
    memset(m, 0, sizeof(*m));
}

const char *ml_model_string(const ml_model *m, uint32_t id)
{
    return id < m->nstrings && m->strings[id] ? m->strings[id] : "";
}

const ml_frame *ml_model_frame(const ml_model *m, uint32_t id)
{
    return id > 0 && id < m->nframes ? &m->frames[id] : NULL;
}

const ml_stack *ml_model_stack(const ml_model *m, uint32_t id)
{
    return id > 0 && id < m->nstacks ? &m->stacks[id] : NULL;
}

/* Makes table (*n entries of elem bytes) cover index id, zero-filling. */
static void cover(void **table, size_t *n, size_t *cap, uint32_t id, size_t elem)
{
    if (id < *n)
        return;
    ml_xgrow(table, cap, (size_t)id + 1, elem);
    memset((char *)*table + *n * elem, 0, ((size_t)id + 1 - *n) * elem);
    *n = (size_t)id + 1;
}

#define COVER(m, field, id)                                                                        \
    cover((void **)&(m)->field, &(m)->n##field, &(m)->cap##field, id, sizeof(*(m)->field))

static void add_definitions(ml_model *m, const Microlog__V1__Batch *b)
{
    for (size_t i = 0; i < b->n_strings; i++) {
        uint32_t id = b->strings[i]->id;
        COVER(m, strings, id);
        free(m->strings[id]);
        m->strings[id] = ml_xstrdup(b->strings[i]->value);
    }
    for (size_t i = 0; i < b->n_frames; i++) {
        const Microlog__V1__FrameDef *f = b->frames[i];
        COVER(m, frames, f->id);
        m->frames[f->id] = (ml_frame){f->name, f->file, f->line, f->first_line, f->flags};
    }
    for (size_t i = 0; i < b->n_stacks; i++) {
        const Microlog__V1__StackDef *s = b->stacks[i];
        COVER(m, stacks, s->id);
        ml_stack *st = &m->stacks[s->id];
        free(st->frames);
        st->frames = ml_xmalloc(s->n_frames * sizeof(uint32_t));
        if (s->n_frames)
            memcpy(st->frames, s->frames, s->n_frames * sizeof(uint32_t));
        st->n = (uint32_t)s->n_frames;
        st->truncated = s->truncated;
    }
    for (size_t i = 0; i < b->n_threads; i++) {
        const Microlog__V1__ThreadDef *t = b->threads[i];
        COVER(m, threads, t->id);
        ml_thread *th = &m->threads[t->id];
        free(th->name);
        /* A later definition updates the thread (its end); counts stay. */
        th->defined = true;
        th->ident = t->ident;
        th->native_id = t->native_id;
        th->name = ml_xstrdup(t->name);
        th->started_us = t->started_us;
        th->ended_us = t->ended_us;
    }
}

/* Ingest refuses times beyond ML_TIME_LIMIT_US (validate.h); a journal
 * damaged on disk may still hold any value: clamped, so that no query
 * arithmetic on times can overflow. */
static int64_t clamp_time(int64_t t)
{
    return t < -ML_TIME_LIMIT_US ? -ML_TIME_LIMIT_US : t > ML_TIME_LIMIT_US ? ML_TIME_LIMIT_US : t;
}

static void add_samples(ml_model *m, const Microlog__V1__Batch *b)
{
    const Microlog__V1__Samples *s = b->samples;
    if (s == NULL || s->n_thread == 0)
        return;
    size_t n = s->n_thread, need = m->nsamples + n, cap = m->capsamples;
    /* Ingest journals only validated batches (validate.c); a journal that
     * was not written by it may hold anything: columns of unequal length
     * are skipped rather than read past their end. */
    if (s->n_time_delta != n || s->n_stack != n || (s->n_cpu_us != n && s->n_cpu_us != 0))
        return;
    ml_xgrow((void **)&m->sample_thread, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_stack, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_cpu, &cap, need, sizeof(uint32_t));
    cap = m->capsamples;
    ml_xgrow((void **)&m->sample_time, &cap, need, sizeof(int64_t));
    m->capsamples = cap;
    int64_t t = b->base_time;
    for (size_t i = 0; i < n; i++) {
        size_t k = m->nsamples++;
        t = (int64_t)((uint64_t)t + (uint64_t)s->time_delta[i]); /* wraps, no UB */
        m->sample_thread[k] = s->thread[i];
        m->sample_stack[k] = s->stack[i];
        m->sample_cpu[k] = s->n_cpu_us == n ? s->cpu_us[i] : 0;
        m->sample_time[k] = clamp_time(t);
        COVER(m, threads, s->thread[i]);
        m->threads[s->thread[i]].samples++;
    }
}

static void add_events(ml_model *m, const Microlog__V1__Batch *b)
{
    ml_xgrow((void **)&m->status, &m->capstatus, m->nstatus + b->n_status, sizeof(*m->status));
    for (size_t i = 0; i < b->n_status; i++) {
        const Microlog__V1__StatusTick *s = b->status[i];
        m->status[m->nstatus++] = (ml_status_tick){
            .time = clamp_time(s->time),
            .cpu_percent = s->cpu_percent,
            .system_cpu_percent = s->system_cpu_percent,
            .rss = s->rss,
            .memory_total = s->memory_total,
            .memory_free = s->memory_free,
            .objects = s->objects,
            .modules = s->modules,
        };
    }
    ml_xgrow((void **)&m->logs, &m->caplogs, m->nlogs + b->n_logs, sizeof(*m->logs));
    for (size_t i = 0; i < b->n_logs; i++) {
        const Microlog__V1__LogEvent *e = b->logs[i];
        m->logs[m->nlogs++] = (ml_log_event){
            .time = clamp_time(e->time),
            .thread = e->thread,
            .kind = e->kind,
            .stack = e->stack,
            .level = e->level,
            .message = ml_xstrdup(e->message),
            .logger = ml_xstrdup(e->logger),
        };
    }
}

static int add_record(void *arg, uint8_t type, const uint8_t *payload, size_t len, uint64_t offset)
{
    ml_model *m = arg;
    if (type == ML_JOURNAL_OPEN_RUN) {
        Microlog__V1__OpenRun *o = microlog__v1__open_run__unpack(NULL, len, payload);
        if (o) {
            m->sample_period = o->sample_period;
            microlog__v1__open_run__free_unpacked(o, NULL);
        }
    } else if (type == ML_JOURNAL_BATCH) {
        Microlog__V1__Batch *b = microlog__v1__batch__unpack(NULL, len, payload);
        if (b == NULL) {
            m->batches_skipped++;
            return 0;
        }
        add_definitions(m, b);
        add_samples(m, b);
        add_events(m, b);
        microlog__v1__batch__free_unpacked(b, NULL);
        if (m->on_batch)
            m->on_batch(m, m->on_batch_arg);
    } else if (type == ML_JOURNAL_CLOSE_RUN) {
        Microlog__V1__CloseRun *c = microlog__v1__close_run__unpack(NULL, len, payload);
        if (c) {
            m->closed = true;
            m->end_time = c->end_time;
            microlog__v1__close_run__free_unpacked(c, NULL);
        }
    }
    return 0;
}

int ml_model_load(ml_model *m, const char *path)
{
    return ml_journal_read(path, &m->offset, add_record, m, NULL);
}
