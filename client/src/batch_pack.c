/*
 * Encoding of a sealed batch: builds the protobuf-c message tree over the
 * batch's own arrays (no copy of the columns, only the sample time deltas
 * and the message structs are allocated) and packs it into an Envelope.
 * Sender thread, outside the client mutex.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The message structs of one encoding, freed together. */
typedef struct packbuf {
    Microlog__V1__StringDef *sd, **sdp;
    Microlog__V1__FrameDef *fd, **fdp;
    Microlog__V1__StackDef *kd, **kdp;
    Microlog__V1__ThreadDef *td, **tdp;
    Microlog__V1__StatusTick *st, **stp;
    Microlog__V1__LogEvent *le, **lep;
    int64_t *deltas;
} packbuf;

static void packbuf_free(packbuf *p)
{
    free(p->sd);
    free(p->sdp);
    free(p->fd);
    free(p->fdp);
    free(p->kd);
    free(p->kdp);
    free(p->td);
    free(p->tdp);
    free(p->st);
    free(p->stp);
    free(p->le);
    free(p->lep);
    free(p->deltas);
}

/* calloc of n elements (at least one, so NULL always means failure). */
static void *alloc_n(size_t n, size_t size, bool *ok)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        *ok = false;
    return p;
}

static bool packbuf_alloc(packbuf *p, const ml__batch *b, bool with_data)
{
    bool ok = true;
    size_t ns = with_data ? b->nsamples : 0, nst = with_data ? b->nstatus : 0;
    size_t nl = with_data ? b->nlogs : 0;
    memset(p, 0, sizeof(*p));
    p->sd = alloc_n(b->nstrs, sizeof(*p->sd), &ok);
    p->sdp = alloc_n(b->nstrs, sizeof(*p->sdp), &ok);
    p->fd = alloc_n(b->nframes, sizeof(*p->fd), &ok);
    p->fdp = alloc_n(b->nframes, sizeof(*p->fdp), &ok);
    p->kd = alloc_n(b->nstacks, sizeof(*p->kd), &ok);
    p->kdp = alloc_n(b->nstacks, sizeof(*p->kdp), &ok);
    p->td = alloc_n(b->nthreads, sizeof(*p->td), &ok);
    p->tdp = alloc_n(b->nthreads, sizeof(*p->tdp), &ok);
    p->st = alloc_n(nst, sizeof(*p->st), &ok);
    p->stp = alloc_n(nst, sizeof(*p->stp), &ok);
    p->le = alloc_n(nl, sizeof(*p->le), &ok);
    p->lep = alloc_n(nl, sizeof(*p->lep), &ok);
    p->deltas = alloc_n(ns, sizeof(*p->deltas), &ok);
    return ok;
}

static void fill_defs(Microlog__V1__Batch *m, packbuf *p, const ml__batch *b)
{
    for (size_t i = 0; i < b->nstrs; i++) {
        microlog__v1__string_def__init(&p->sd[i]);
        p->sd[i].id = b->str_first + (uint32_t)i;
        p->sd[i].value = (char *)b->strs[i].utf8;
        p->sdp[i] = &p->sd[i];
    }
    for (size_t i = 0; i < b->nframes; i++) {
        const ml__frame *f = &b->frames[i];
        microlog__v1__frame_def__init(&p->fd[i]);
        p->fd[i].id = b->frame_first + (uint32_t)i;
        p->fd[i].name = f->name;
        p->fd[i].file = f->file;
        p->fd[i].line = f->line;
        p->fd[i].first_line = f->first_line;
        p->fd[i].flags = f->flags;
        p->fdp[i] = &p->fd[i];
    }
    for (size_t i = 0; i < b->nstacks; i++) {
        microlog__v1__stack_def__init(&p->kd[i]);
        p->kd[i].id = b->stack_first + (uint32_t)i;
        p->kd[i].n_frames = b->stacks[i].n;
        p->kd[i].frames = (uint32_t *)b->stacks[i].frames;
        p->kd[i].truncated = b->stacks[i].truncated;
        p->kdp[i] = &p->kd[i];
    }
    for (size_t i = 0; i < b->nthreads; i++) {
        const ml__threadrec *t = &b->threads[i];
        microlog__v1__thread_def__init(&p->td[i]);
        p->td[i].id = t->id;
        p->td[i].ident = t->ident;
        p->td[i].native_id = t->native_id;
        p->td[i].name = b->text + t->name;
        p->td[i].started_us = t->started_us;
        p->td[i].ended_us = t->ended_us;
        p->tdp[i] = &p->td[i];
    }
    m->n_strings = b->nstrs;
    m->strings = p->sdp;
    m->n_frames = b->nframes;
    m->frames = p->fdp;
    m->n_stacks = b->nstacks;
    m->stacks = p->kdp;
    m->n_threads = b->nthreads;
    m->threads = p->tdp;
}

/* Samples as columns; times become deltas: the first against base_time
 * (the first sample's time), each next against the previous. */
static void fill_samples(Microlog__V1__Batch *m, Microlog__V1__Samples *s, packbuf *p,
                         const ml__batch *b)
{
    size_t n = b->nsamples;
    if (n == 0)
        return;
    m->base_time = b->s_time[0];
    int64_t prev = m->base_time;
    for (size_t i = 0; i < n; i++) {
        p->deltas[i] = b->s_time[i] - prev;
        prev = b->s_time[i];
    }
    s->n_thread = s->n_time_delta = s->n_stack = s->n_cpu_us = n;
    s->thread = b->s_thread;
    s->time_delta = p->deltas;
    s->stack = b->s_stack;
    s->cpu_us = b->s_cpu;
    m->samples = s;
}

static void fill_records(Microlog__V1__Batch *m, packbuf *p, const ml__batch *b)
{
    for (size_t i = 0; i < b->nstatus; i++) {
        const ml_status *st = &b->status[i];
        Microlog__V1__StatusTick *t = &p->st[i];
        microlog__v1__status_tick__init(t);
        t->time = st->time;
        t->cpu_percent = st->cpu_percent;
        t->system_cpu_percent = st->system_cpu_percent;
        t->rss = st->rss;
        t->memory_total = st->memory_total;
        t->memory_free = st->memory_free;
        t->modules = st->modules;
        t->objects = st->objects;
        p->stp[i] = t;
    }
    for (size_t i = 0; i < b->nlogs; i++) {
        const ml__logrec *r = &b->logs[i];
        Microlog__V1__LogEvent *e = &p->le[i];
        microlog__v1__log_event__init(e);
        e->time = r->time;
        e->thread = r->thread;
        e->kind = r->kind;
        e->level = r->level;
        e->message = b->text + r->msg;
        e->stack = r->stack;
        e->logger = r->logger == SIZE_MAX ? "" : b->text + r->logger;
        p->lep[i] = e;
    }
    m->n_status = b->nstatus;
    m->status = p->stp;
    m->n_logs = b->nlogs;
    m->logs = p->lep;
}

int ml__batch_pack(const ml__batch *b, const char *run_uid, uint64_t seq, bool with_data,
                   uint64_t call_id, const char *token, uint8_t **out, size_t *out_len)
{
    Microlog__V1__Batch m = MICROLOG__V1__BATCH__INIT;
    Microlog__V1__Samples s = MICROLOG__V1__SAMPLES__INIT;
    packbuf p;
    int rv = -ENOMEM;

    if (packbuf_alloc(&p, b, with_data)) {
        m.run_uid = (char *)run_uid;
        m.seq = seq;
        m.dropped_samples = b->dropped_samples;
        m.dropped_logs = b->dropped_logs;
        fill_defs(&m, &p, b);
        if (with_data) {
            fill_samples(&m, &s, &p, b);
            fill_records(&m, &p, b);
        }
        rv = ml_wire_pack(ML_METHOD_BATCH, call_id, 0, NULL, token, &m.base, out, out_len);
    }
    packbuf_free(&p);
    return rv;
}
