/*
 * One batch: columns of samples, status ticks and log events, and once it is
 * sealed the definitions it carries. Recording appends to arrays that grow
 * geometrically and are kept across batches (two batches per client
 * alternate), so the steady state allocates nothing. Encoding to protobuf
 * happens on the sender thread, outside the client mutex.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Estimated encoded sizes, deliberately generous: they decide when a batch
 * is sent and bound memory, they are not exact. */
#define EST_SAMPLE 16
#define EST_STATUS 64
#define EST_LOG 32

void ml__batch_init(ml__batch *b)
{
    memset(b, 0, sizeof(*b));
}

void ml__batch_close(ml__batch *b)
{
    ml__free(b->s_thread);
    ml__free(b->s_stack);
    ml__free(b->s_cpu);
    ml__free(b->s_time);
    ml__free(b->status);
    ml__free(b->logs);
    ml__free(b->text);
    ml__free(b->strs);
    ml__free(b->frames);
    ml__free(b->stacks);
    ml__free(b->threads);
    memset(b, 0, sizeof(*b));
}

void ml__batch_reset(ml__batch *b)
{
    b->nsamples = b->nstatus = b->nlogs = b->text_len = 0;
    b->nstrs = b->nframes = b->nstacks = b->nthreads = 0;
    b->str_first = b->frame_first = b->stack_first = 0;
    b->dropped_samples = b->dropped_logs = 0;
    b->est_bytes = 0;
}

bool ml__batch_empty(const ml__batch *b)
{
    return b->nsamples == 0 && b->nstatus == 0 && b->nlogs == 0 && b->nstrs == 0 &&
           b->nframes == 0 && b->nstacks == 0 && b->nthreads == 0 && b->dropped_samples == 0 &&
           b->dropped_logs == 0;
}

/* Grows the four sample columns together so they always share one capacity. */
static int samples_reserve(ml__batch *b)
{
    if (b->nsamples < b->samples_cap)
        return 0;
    size_t ncap = b->samples_cap ? b->samples_cap * 2 : 256;
    void *t = ml__realloc(b->s_thread, ncap * sizeof(uint32_t));
    if (t == NULL)
        return -ENOMEM;
    b->s_thread = t;
    if ((t = ml__realloc(b->s_stack, ncap * sizeof(uint32_t))) == NULL)
        return -ENOMEM;
    b->s_stack = t;
    if ((t = ml__realloc(b->s_cpu, ncap * sizeof(uint32_t))) == NULL)
        return -ENOMEM;
    b->s_cpu = t;
    if ((t = ml__realloc(b->s_time, ncap * sizeof(int64_t))) == NULL)
        return -ENOMEM;
    b->s_time = t;
    b->samples_cap = ncap;
    return 0;
}

int ml__batch_add_sample(ml__batch *b, uint32_t thread, int64_t t, uint32_t stack, uint32_t cpu)
{
    if (samples_reserve(b) != 0)
        return -ENOMEM;
    size_t i = b->nsamples++;
    b->s_thread[i] = thread;
    b->s_time[i] = t;
    b->s_stack[i] = stack;
    b->s_cpu[i] = cpu;
    b->est_bytes += EST_SAMPLE;
    return 0;
}

int ml__batch_add_status(ml__batch *b, const ml_status *st)
{
    if (ml__grow((void **)&b->status, &b->status_cap, b->nstatus + 1, sizeof(*st)) != 0)
        return -ENOMEM;
    b->status[b->nstatus++] = *st;
    b->est_bytes += EST_STATUS;
    return 0;
}

/* Appends sanitized text to b->text; returns its offset or SIZE_MAX. */
static size_t text_append(ml__batch *b, const char *s, size_t len)
{
    if (ml__grow((void **)&b->text, &b->text_cap, b->text_len + ML__UTF8_BOUND(len) + 1, 1) != 0)
        return SIZE_MAX;
    size_t off = b->text_len;
    b->text_len += ml__utf8_copy(b->text + off, s, len) + 1;
    return off;
}

int ml__batch_add_log(ml__batch *b, uint32_t thread, int64_t t, int kind, int level,
                      const char *msg, size_t len, uint32_t stack, const char *logger)
{
    size_t text_len = b->text_len;
    if (ml__grow((void **)&b->logs, &b->logs_cap, b->nlogs + 1, sizeof(*b->logs)) != 0)
        return -ENOMEM;
    len = ml__utf8_cut(msg ? msg : "", msg ? len : 0, ML__LOG_MAX);
    size_t m = text_append(b, msg ? msg : "", len), l = SIZE_MAX;
    if (m == SIZE_MAX)
        return -ENOMEM;
    if (logger != NULL) {
        size_t llen = ml__utf8_cut(logger, strlen(logger), 1024);
        if ((l = text_append(b, logger, llen)) == SIZE_MAX) {
            b->text_len = text_len;
            return -ENOMEM;
        }
    }
    b->logs[b->nlogs++] = (ml__logrec){t, thread, (uint32_t)kind, stack, level, m, l};
    b->est_bytes += EST_LOG + (b->text_len - text_len);
    return 0;
}

/* Reserves room in b for every pending definition of in: 0 or -ENOMEM. */
static int defs_reserve(ml__batch *b, const ml__intern *in, size_t names)
{
    if (ml__grow((void **)&b->strs, &b->strs_cap, in->nstrs - in->sent_strs, sizeof(*b->strs)) !=
            0 ||
        ml__grow((void **)&b->frames, &b->frames_cap, in->nframes - in->sent_frames,
                 sizeof(*b->frames)) != 0 ||
        ml__grow((void **)&b->stacks, &b->stacks_cap, in->nstacks - in->sent_stacks,
                 sizeof(*b->stacks)) != 0 ||
        ml__grow((void **)&b->threads, &b->threads_cap, in->npending_threads,
                 sizeof(*b->threads)) != 0 ||
        ml__grow((void **)&b->text, &b->text_cap, b->text_len + names, 1) != 0)
        return -ENOMEM;
    return 0;
}

int ml__batch_take_defs(ml__batch *b, ml__intern *in)
{
    size_t names = 0;
    for (size_t i = 0; i < in->npending_threads; i++)
        names += strlen(in->threads[in->pending_threads[i] - 1].name) + 1;
    if (defs_reserve(b, in, names) != 0)
        return -ENOMEM;

    b->str_first = in->sent_strs + 1;
    b->nstrs = in->nstrs - in->sent_strs;
    for (size_t i = 0; i < b->nstrs; i++)
        b->strs[i].utf8 = in->strs[in->sent_strs + i].utf8;
    b->frame_first = in->sent_frames + 1;
    b->nframes = in->nframes - in->sent_frames;
    if (b->nframes > 0)
        memcpy(b->frames, in->frames + in->sent_frames, b->nframes * sizeof(*b->frames));
    b->stack_first = in->sent_stacks + 1;
    b->nstacks = in->nstacks - in->sent_stacks;
    if (b->nstacks > 0)
        memcpy(b->stacks, in->stacks + in->sent_stacks, b->nstacks * sizeof(*b->stacks));
    /* thread names can change later: copy them, not the pointer */
    b->nthreads = in->npending_threads;
    for (size_t i = 0; i < b->nthreads; i++) {
        uint32_t id = in->pending_threads[i];
        ml__thread *t = &in->threads[id - 1];
        size_t len = strlen(t->name);
        memcpy(b->text + b->text_len, t->name, len + 1);
        b->threads[i] =
            (ml__threadrec){id, t->ident, t->native_id, b->text_len, t->started_us, t->ended_us};
        b->text_len += len + 1;
        t->pending = false;
    }
    in->sent_strs = (uint32_t)in->nstrs;
    in->sent_frames = (uint32_t)in->nframes;
    in->sent_stacks = (uint32_t)in->nstacks;
    in->npending_threads = 0;
    in->pending_bytes = 0;
    return 0;
}
