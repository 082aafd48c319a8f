#include "validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "mem.h"

/* The ids one table defines in this batch, sorted for bsearch. */
typedef struct batch_ids {
    uint32_t *ids;
    size_t n;
} batch_ids;

typedef struct vctx {
    const ml_live *live;
    bool relaxed; /* after a gap: references are only range-checked */
    batch_ids strings, frames, stacks, threads;
    char *err;
    size_t errlen;
} vctx;

static int fail(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(vctx *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, v->errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static bool in_batch(const batch_ids *b, uint32_t id)
{
    return b->n && bsearch(&id, b->ids, b->n, sizeof(uint32_t), cmp_u32) != NULL;
}

/* A reference to table (set, ids): 0 allowed when optional. */
static bool ref_ok(const vctx *v, const ml_idset *set, const batch_ids *ids, uint32_t id,
                   bool optional)
{
    if (id == 0)
        return optional;
    if (id > ML_ID_MAX)
        return false;
    return v->relaxed || ml_idset_has(set, id) || in_batch(ids, id);
}

#define COLLECT_IDS(v, out, set, defs, ndefs, what)                                                \
    collect_ids(v, out, set, ndefs, what, (const void *const *)(defs),                             \
                offsetof(__typeof__(**(defs)), id))

/* Copies the ids of n definitions (each a message with a uint32 id at
 * id_off) into out, sorted, after checking their range: within
 * 1..ML_ID_MAX, and a new one (not in set) at most the count set will
 * reach with this batch plus ML_ID_SLACK. */
static int collect_ids(vctx *v, batch_ids *out, const ml_idset *set, size_t n, const char *what,
                       const void *const *defs, size_t id_off)
{
    out->ids = ml_xmalloc(n * sizeof(uint32_t));
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = *(const uint32_t *)((const char *)defs[i] + id_off);
        if (id == 0 || id > ML_ID_MAX)
            return fail(v, "%s[%zu].id = %u is out of range", what, i, id);
        out->ids[i] = id;
    }
    qsort(out->ids, n, sizeof(uint32_t), cmp_u32);
    uint64_t will_hold = set->count;
    for (size_t i = 0; i < n; i++)
        if ((i == 0 || out->ids[i] != out->ids[i - 1]) && !ml_idset_has(set, out->ids[i]))
            will_hold++;
    for (size_t i = n; i-- > 0;) { /* the largest new id decides */
        if (ml_idset_has(set, out->ids[i]))
            continue;
        if (out->ids[i] > will_hold + ML_ID_SLACK)
            return fail(v,
                        "%s id %u is too far ahead: the run defines %llu (ids count from 1 "
                        "without gaps)",
                        what, out->ids[i], (unsigned long long)will_hold);
        break;
    }
    return 0;
}

static int check_defs(vctx *v, const Microlog__V1__Batch *b)
{
    const ml_live *l = v->live;
    for (size_t i = 0; i < b->n_frames; i++) {
        const Microlog__V1__FrameDef *f = b->frames[i];
        if (!ref_ok(v, &l->strings, &v->strings, f->name, true) ||
            !ref_ok(v, &l->strings, &v->strings, f->file, true))
            return fail(v, "frames[%zu] (id %u) names an undefined string", i, f->id);
    }
    for (size_t i = 0; i < b->n_stacks; i++) {
        const Microlog__V1__StackDef *s = b->stacks[i];
        for (size_t k = 0; k < s->n_frames; k++)
            if (!ref_ok(v, &l->frames, &v->frames, s->frames[k], false))
                return fail(v, "stacks[%zu] (id %u) frame %u is not defined", i, s->id,
                            s->frames[k]);
    }
    return 0;
}

static bool time_ok(int64_t t)
{
    return t >= -ML_TIME_LIMIT_US && t <= ML_TIME_LIMIT_US;
}

static int check_samples(vctx *v, const Microlog__V1__Samples *s, int64_t base_time)
{
    const ml_live *l = v->live;
    size_t n = s->n_thread;
    if (s->n_time_delta != n || s->n_stack != n || (s->n_cpu_us != n && s->n_cpu_us != 0))
        return fail(v,
                    "sample columns differ in length (thread %zu, time_delta %zu, stack %zu, "
                    "cpu_us %zu)",
                    n, s->n_time_delta, s->n_stack, s->n_cpu_us);
    if (!time_ok(base_time))
        return fail(v, "base_time %lld is out of range", (long long)base_time);
    int64_t t = base_time;
    for (size_t i = 0; i < n; i++) {
        /* Both within 2^52 before the sum: it cannot overflow. */
        if (!time_ok(s->time_delta[i]) || !time_ok(t += s->time_delta[i]))
            return fail(v, "samples.time_delta[%zu] puts the sample out of range", i);
        if (!ref_ok(v, &l->threads, &v->threads, s->thread[i], false))
            return fail(v, "samples.thread[%zu] = %u is not defined", i, s->thread[i]);
        if (!ref_ok(v, &l->stacks, &v->stacks, s->stack[i], true))
            return fail(v, "samples.stack[%zu] = %u is not defined", i, s->stack[i]);
    }
    return 0;
}

static int check_logs(vctx *v, const Microlog__V1__Batch *b)
{
    const ml_live *l = v->live;
    for (size_t i = 0; i < b->n_logs; i++) {
        const Microlog__V1__LogEvent *e = b->logs[i];
        if (e->kind > MICROLOG__V1__LOG_KIND__LOG_KIND_ANALYSIS)
            return fail(v, "logs[%zu].kind = %u is unknown", i, e->kind);
        if (!time_ok(e->time))
            return fail(v, "logs[%zu].time is out of range", i);
        if (!ref_ok(v, &l->threads, &v->threads, e->thread, true))
            return fail(v, "logs[%zu].thread = %u is not defined", i, e->thread);
        if (!ref_ok(v, &l->stacks, &v->stacks, e->stack, true))
            return fail(v, "logs[%zu].stack = %u is not defined", i, e->stack);
    }
    return 0;
}

/* Status ticks and thread definitions (samples and logs: in their checks). */
static int check_times(vctx *v, const Microlog__V1__Batch *b)
{
    for (size_t i = 0; i < b->n_status; i++)
        if (!time_ok(b->status[i]->time))
            return fail(v, "status[%zu].time is out of range", i);
    for (size_t i = 0; i < b->n_threads; i++)
        if (!time_ok(b->threads[i]->started_us) || !time_ok(b->threads[i]->ended_us))
            return fail(v, "threads[%zu] (id %u) start or end is out of range", i,
                        b->threads[i]->id);
    return 0;
}

int ml_batch_validate(const ml_live *l, const Microlog__V1__Batch *b, char *err, size_t errlen)
{
    vctx v = {.live = l, .relaxed = b->seq != l->acked_seq + 1, .err = err, .errlen = errlen};
    int rv;
    if (b->seq == 0)
        rv = fail(&v, "seq must be at least 1");
    else if ((rv = COLLECT_IDS(&v, &v.strings, &l->strings, b->strings, b->n_strings, "strings")) ==
                 0 &&
             (rv = COLLECT_IDS(&v, &v.frames, &l->frames, b->frames, b->n_frames, "frames")) == 0 &&
             (rv = COLLECT_IDS(&v, &v.stacks, &l->stacks, b->stacks, b->n_stacks, "stacks")) == 0 &&
             (rv = COLLECT_IDS(&v, &v.threads, &l->threads, b->threads, b->n_threads, "threads")) ==
                 0 &&
             (rv = check_defs(&v, b)) == 0 && (rv = check_times(&v, b)) == 0 &&
             (b->samples == NULL || (rv = check_samples(&v, b->samples, b->base_time)) == 0))
        rv = check_logs(&v, b);
    free(v.strings.ids);
    free(v.frames.ids);
    free(v.stacks.ids);
    free(v.threads.ids);
    return rv;
}
