/*
 * Live streams: GET /api/v1/runs/{run}/live answers with Server-Sent
 * Events. A timer on the loop (ML_SSE_POLL_MS) brings each streamed run's
 * model up to date from its journal (an incremental read of what the
 * ingest appended) and sends what is new since the last tick:
 *
 *   event: status  one status tick           (as in /status, one point)
 *   event: log     one log event             (as in /log)
 *   event: calls   {"threads":[{"id","calls":[...]}]}  calls that ended
 *   event: run     the run summary, when it changed
 *   event: end     the run summary, once the run is no longer live; the
 *                  stream then ends
 *
 * So anything the collector stored reaches the browser within
 * ML_SSE_POLL_MS plus one write. h2o's streaming protocol: one h2o_send()
 * in flight at a time; proceed() says it was written, stop() that the
 * client went away (after which the request must not be touched).
 */
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "http_internal.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "query.h"

#define ML_SSE_POLL_MS 250

struct ml_sse {
    ml_http *http;
    h2o_req_t *req;
    char run_id[ML_RUN_ID_MAX + 1];
    size_t status_sent, logs_sent;
    size_t **calls_sent; /* [thread][depth] calls already sent */
    size_t *ndepth_sent; /* per thread: depths in calls_sent */
    size_t nthreads_sent;
    uint64_t samples_seen, logs_seen;
    ml_sbuf out;    /* events waiting for the socket */
    char *inflight; /* being written by h2o */
    bool busy, ending;
    struct sse_gen *gen;
    ml_sse *prev, *next;
};

typedef struct sse_gen {
    h2o_generator_t super;
    ml_sse *s;
} sse_gen;

static void sse_free(ml_sse *s)
{
    ml_http *h = s->http;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    for (size_t i = 0; i < s->nthreads_sent; i++)
        free(s->calls_sent[i]);
    free(s->calls_sent);
    free(s->ndepth_sent);
    free(s->out.p);
    free(s->inflight);
    free(s);
}

/* Hands what is queued to h2o when nothing is in flight. */
static void flush(ml_sse *s)
{
    if (s->busy || (s->out.n == 0 && !s->ending))
        return;
    free(s->inflight);
    size_t len;
    s->inflight = ml_sbuf_take(&s->out, &len);
    h2o_iovec_t buf = h2o_iovec_init(s->inflight, len);
    if (s->ending) {
        h2o_req_t *req = s->req;
        /* h2o writes after we return and s goes now: the last bytes live
         * in the request's pool, freed with the request. */
        char *last = h2o_mem_alloc_pool(&req->pool, len + 1);
        memcpy(last, s->inflight, len);
        buf = h2o_iovec_init(last, len);
        /* The request is done after a final send: forget it first. */
        s->req = NULL;
        s->gen->s = NULL;
        sse_free(s);
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
        return;
    }
    s->busy = true;
    h2o_send(s->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    ml_sse *s = ((sse_gen *)self)->s;
    s->busy = false;
    flush(s);
}

static void on_stop(h2o_generator_t *self, h2o_req_t *req)
{
    sse_gen *g = (sse_gen *)self;
    if (g->s) {
        sse_free(g->s);
        g->s = NULL;
    }
}

static void event(ml_sse *s, const char *name, json_t *data)
{
    ml_sbuf_printf(&s->out, "event: %s\ndata: ", name);
    ml_sbuf_json(&s->out, data); /* compact JSON has no newline */
    ml_sbuf_puts(&s->out, "\n\n");
    json_decref(data);
}

static size_t *sent_slot(ml_sse *s, size_t thread, size_t depth)
{
    if (thread >= s->nthreads_sent) {
        s->calls_sent = ml_xrealloc(s->calls_sent, (thread + 1) * sizeof(size_t *));
        s->ndepth_sent = ml_xrealloc(s->ndepth_sent, (thread + 1) * sizeof(size_t));
        for (size_t i = s->nthreads_sent; i <= thread; i++) {
            s->calls_sent[i] = NULL;
            s->ndepth_sent[i] = 0;
        }
        s->nthreads_sent = thread + 1;
    }
    if (depth >= s->ndepth_sent[thread]) {
        s->calls_sent[thread] = ml_xrealloc(s->calls_sent[thread], (depth + 1) * sizeof(size_t));
        for (size_t d = s->ndepth_sent[thread]; d <= depth; d++)
            s->calls_sent[thread][d] = 0;
        s->ndepth_sent[thread] = depth + 1;
    }
    return &s->calls_sent[thread][depth];
}

/* Calls that ended since the last tick; with send false only moves the
 * cursors (at connect: the client queried what came before). */
static json_t *closed_calls(ml_sse *s, const ml_qrun *q, bool send)
{
    const ml_calls *c = q->calls;
    json_t *threads = json_array();
    for (size_t id = 1; id < c->nthreads; id++) {
        const ml_thread_index *t = &c->threads[id];
        json_t *calls = json_array();
        for (size_t d = 0; d < t->ndepth; d++) {
            const ml_call_list *l = &t->depth[d];
            size_t closed = l->open ? l->n - 1 : l->n, *sent = sent_slot(s, id, d);
            for (size_t k = *sent; send && k < closed; k++) {
                json_t *o = json_object();
                ml_json_set(o, "start", ml_json_real((double)ml_call_start(l, k) / 1e6));
                ml_json_set(o, "duration", ml_json_real((double)ml_call_dur(l, k) / 1e6));
                ml_json_set(o, "depth", json_integer((json_int_t)d));
                ml_json_set(o, "frame", json_integer(ml_call_func(l, k)));
                ml_json_set(o, "count", json_integer(1));
                json_array_append_new(calls, o);
            }
            if (closed > *sent)
                *sent = closed;
        }
        if (json_array_size(calls)) {
            json_t *o = json_object();
            ml_json_set(o, "id", json_integer((json_int_t)id));
            ml_json_set(o, "calls", calls);
            json_array_append_new(threads, o);
        } else {
            json_decref(calls);
        }
    }
    if (json_array_size(threads) == 0) {
        json_decref(threads);
        return NULL;
    }
    json_t *o = json_object();
    ml_json_set(o, "threads", threads);
    return o;
}

static json_t *tick_json(const ml_status_tick *t)
{
    json_t *o = json_object();
    ml_json_set(o, "time", ml_json_real((double)t->time / 1e6));
    ml_json_set(o, "cpu", ml_json_real(t->cpu_percent));
    ml_json_set(o, "system_cpu", ml_json_real(t->system_cpu_percent));
    ml_json_set(o, "rss", ml_json_u64(t->rss));
    ml_json_set(o, "memory_total", ml_json_u64(t->memory_total));
    ml_json_set(o, "memory_free", ml_json_u64(t->memory_free));
    ml_json_set(o, "modules", json_integer(t->modules));
    ml_json_set(o, "objects", ml_json_u64(t->objects));
    return o;
}

/* One tick of one stream: false when the stream ended (s freed). */
static void poll_stream(ml_sse *s)
{
    ml_collector *c = s->http->c;
    ml_run *r = ml_index_find(&c->index, s->run_id);
    const ml_qrun *q = r ? ml_query_get(&c->query, &c->store, r) : NULL;
    if (q == NULL) {
        ml_sbuf_puts(&s->out, "event: end\ndata: {\"deleted\":true}\n\n");
        s->ending = true;
        flush(s);
        return;
    }
    const ml_model *m = q->model;
    for (; s->status_sent < m->nstatus; s->status_sent++)
        event(s, "status", tick_json(&m->status[s->status_sent]));
    for (; s->logs_sent < m->nlogs; s->logs_sent++)
        event(s, "log", ml_query_log_event(m, s->logs_sent));
    json_t *calls = closed_calls(s, q, true);
    if (calls)
        event(s, "calls", calls);
    if (r->samples != s->samples_seen || r->logs != s->logs_seen) {
        s->samples_seen = r->samples;
        s->logs_seen = r->logs;
        event(s, "run", ml_run_summary_json(r));
    }
    if (r->status != ML_RUN_LIVE) {
        event(s, "end", ml_run_summary_json(r));
        s->ending = true;
    }
    flush(s);
}

static void on_tick(uv_timer_t *t)
{
    ml_http *h = t->data;
    ml_sse *next;
    for (ml_sse *s = h->streams; s; s = next) {
        next = s->next; /* s may be freed */
        poll_stream(s);
    }
}

void ml_http_live_start(h2o_req_t *req, ml_collector *c, ml_run *r)
{
    ml_http *h = c->http;
    const ml_qrun *q = ml_query_get(&c->query, &c->store, r);
    if (q == NULL) {
        ml_http_send_error(req, 500, "cannot read the journal of %s", r->id);
        return;
    }
    ml_sse *s = ml_xcalloc(1, sizeof(*s));
    s->http = h;
    s->req = req;
    snprintf(s->run_id, sizeof(s->run_id), "%s", r->id);
    /* Start from now: the client reads the past through the other routes. */
    s->status_sent = q->model->nstatus;
    s->logs_sent = q->model->nlogs;
    json_decref(closed_calls(s, q, false));
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    sse_gen *g = h2o_mem_alloc_pool(&req->pool, sizeof(*g));
    g->super = (h2o_generator_t){on_proceed, on_stop};
    g->s = s;
    s->gen = g;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_start_response(req, &g->super);
    ml_sbuf_puts(&s->out, "retry: 1000\n\n");
    s->samples_seen = r->samples;
    s->logs_seen = r->logs;
    event(s, "run", ml_run_summary_json(r));
    if (r->status != ML_RUN_LIVE) {
        event(s, "end", ml_run_summary_json(r));
        s->ending = true;
    }
    if (h->sse_timer == NULL) {
        h->sse_timer = ml_xmalloc(sizeof(uv_timer_t));
        uv_timer_init(c->loop, h->sse_timer);
        h->sse_timer->data = h;
        uv_timer_start(h->sse_timer, on_tick, ML_SSE_POLL_MS, ML_SSE_POLL_MS);
    }
    flush(s);
}

void ml_http_live_close(ml_http *h)
{
    if (h->sse_timer) {
        uv_timer_stop(h->sse_timer);
        uv_close((uv_handle_t *)h->sse_timer, (uv_close_cb)free);
        h->sse_timer = NULL;
    }
    /* The streams end with their connections (shut down by the caller);
     * h2o then calls on_stop for each. */
}

size_t ml_http_live_count(const ml_http *h)
{
    size_t n = 0;
    for (const ml_sse *s = h->streams; s; s = s->next)
        n++;
    return n;
}
