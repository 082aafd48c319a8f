#include "query.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "log.h"
#include "mem.h"
#include "search.h"

/* Loads that added more samples than this end with malloc_trim(). */
#define ML_QUERY_TRIM_SAMPLES 100000

typedef struct cache_entry {
    char *id; /* map key */
    ml_model model;
    ml_calls calls;
    const ml_run *run; /* for the sample period while loading */
    ml_qrun view;
    uint64_t used;
} cache_entry;

void ml_query_init(ml_query *q)
{
    memset(q, 0, sizeof(*q));
    ml_map_init(&q->models);
}

static void entry_free(cache_entry *e)
{
    ml_model_dispose(&e->model);
    ml_calls_dispose(&e->calls);
    free(e->id);
    free(e);
}

void ml_query_dispose(ml_query *q)
{
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&q->models, pos, &v)) != 0;)
        entry_free(v);
    ml_map_dispose(&q->models);
}

void ml_query_forget(ml_query *q, const char *id)
{
    cache_entry *e = ml_map_remove(&q->models, id);
    if (e)
        entry_free(e);
}

static void evict_one(ml_query *q)
{
    cache_entry *oldest = NULL;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&q->models, pos, &v)) != 0;) {
        cache_entry *e = v;
        if (oldest == NULL || e->used < oldest->used)
            oldest = e;
    }
    if (oldest)
        ml_query_forget(q, oldest->id);
}

static double entry_period(const cache_entry *e)
{
    double period = e->run->sample_period > 0 ? e->run->sample_period : e->model.sample_period;
    return period > 0 ? period : 0.05; /* TRACER_SAMPLE_DELAY's default */
}

/* model.on_batch: moves each batch's samples into the call index. */
static void drain_batch(ml_model *m, void *arg)
{
    cache_entry *e = arg;
    if (m->nsamples)
        ml_calls_add(&e->calls, m, (int64_t)(entry_period(e) * 1e6 + 0.5));
}

const ml_model *ml_query_model(ml_query *q, const ml_store *s, const ml_run *r)
{
    const ml_qrun *v = ml_query_get(q, s, r);
    return v ? v->model : NULL;
}

const ml_qrun *ml_query_get(ml_query *q, const ml_store *s, const ml_run *r)
{
    char *path = ml_store_run_path(s, r, ML_RUN_JOURNAL_FILE);
    cache_entry *e = ml_map_get(&q->models, r->id);
    struct stat st;
    /* A journal shorter than what was read is a different file (the run
     * was deleted and its id reused): start over. */
    if (e && stat(path, &st) == 0 && (uint64_t)st.st_size < e->model.offset) {
        ml_query_forget(q, r->id);
        e = NULL;
    }
    if (e == NULL) {
        if (q->models.len >= ML_QUERY_CACHE_MAX)
            evict_one(q);
        e = ml_xcalloc(1, sizeof(*e));
        e->id = ml_xstrdup(r->id);
        ml_model_init(&e->model);
        ml_calls_init(&e->calls);
        e->model.on_batch = drain_batch;
        e->model.on_batch_arg = e;
        e->run = r;
        ml_map_put(&q->models, e->id, e);
    }
    e->run = r;
    uint64_t before = e->calls.samples;
    e->used = ++q->clock;
    int rv = ml_store_load_model(s, r, &e->model); /* journal, or recording once compacted */
    if (rv != 0) {
        ml_warn("query: cannot read %s: %s", path, strerror(-rv));
        ml_query_forget(q, r->id);
        free(path);
        return NULL;
    }
    free(path);
    double period = entry_period(e);
    drain_batch(&e->model, e); /* what a recording loaded in one go */
    if (e->calls.samples != before && e->model.closed)
        ml_calls_shrink(&e->calls);
    /* A large load leaves the staging columns' memory free but mapped:
     * give it back, the daemon's resident size is what operators watch. */
    if (e->calls.samples - before > ML_QUERY_TRIM_SAMPLES)
        malloc_trim(0);
    e->view = (ml_qrun){.run = r, .model = &e->model, .calls = &e->calls, .period = period};
    return &e->view;
}

static size_t model_bytes(const ml_model *m)
{
    size_t b = m->capstrings * sizeof(char *) + m->capframes * sizeof(ml_frame) +
               m->capstacks * sizeof(ml_stack) + m->capthreads * sizeof(ml_thread) +
               m->capstatus * sizeof(ml_status_tick) + m->caplogs * sizeof(ml_log_event) +
               m->capsamples * 20;
    for (size_t i = 0; i < m->nstrings; i++)
        b += m->strings[i] ? strlen(m->strings[i]) + 1 : 0;
    for (size_t i = 0; i < m->nstacks; i++)
        b += m->stacks[i].n * sizeof(uint32_t);
    for (size_t i = 0; i < m->nlogs; i++)
        b += strlen(m->logs[i].message) + strlen(m->logs[i].logger) + 2;
    return b;
}

size_t ml_query_bytes(const ml_query *q, size_t *index)
{
    size_t total = 0, idx = 0;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&q->models, pos, &v)) != 0;) {
        const cache_entry *e = v;
        size_t cb = ml_calls_bytes(&e->calls);
        idx += cb;
        total += cb + model_bytes(&e->model);
    }
    if (index)
        *index = idx;
    return total;
}

bool ml_qwindow_has_thread(const ml_qwindow *w, uint32_t id)
{
    if (w == NULL || w->nthreads == 0)
        return true;
    for (size_t i = 0; i < w->nthreads; i++)
        if (w->threads[i] == id)
            return true;
    return false;
}

const char *ml_log_kind_name(uint32_t kind)
{
    static const char *names[] = {"unspecified", "stdout", "stderr",
                                  "logging",     "marker", "analysis"};
    return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unspecified";
}

/* [{"name","file","line"}, ...] root first; [] for stack 0 or undefined. */
static json_t *stack_json(const ml_model *m, uint32_t stack_id)
{
    json_t *a = json_array();
    const ml_stack *st = ml_model_stack(m, stack_id);
    for (uint32_t i = 0; st && i < st->n; i++) {
        const ml_frame *f = ml_model_frame(m, st->frames[i]);
        json_t *o = json_object();
        ml_json_set(o, "name", ml_json_str(f ? ml_model_string(m, f->name) : "?"));
        ml_json_set(o, "file", ml_json_str(f ? ml_model_string(m, f->file) : ""));
        ml_json_set(o, "line", json_integer(f ? f->line : 0));
        json_array_append_new(a, o);
    }
    return a;
}

static int cmp_log_time(const void *a, const void *b)
{
    const ml_log_event *x = *(const ml_log_event *const *)a, *y = *(const ml_log_event *const *)b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    /* Same time: keep journal order (the pointers are into one array). */
    return x < y ? -1 : x > y;
}

/* The log events in time order (journal order among equal times):
 * a malloc'd array of m->nlogs borrowed pointers. */
static const ml_log_event **log_order(const ml_model *m)
{
    const ml_log_event **order = ml_xmalloc(m->nlogs * sizeof(*order));
    for (size_t i = 0; i < m->nlogs; i++)
        order[i] = &m->logs[i];
    qsort(order, m->nlogs, sizeof(*order), cmp_log_time);
    return order;
}

static json_t *log_event_json(const ml_model *m, const ml_log_event *e)
{
    json_t *o = json_object();
    ml_json_set(o, "time", ml_json_real((double)e->time / 1e6));
    ml_json_set(o, "kind", ml_json_str(ml_log_kind_name(e->kind)));
    ml_json_set(o, "level", json_integer(e->level));
    ml_json_set(o, "logger", ml_json_str(e->logger));
    ml_json_set(o, "message", ml_json_str(e->message));
    ml_json_set(o, "thread", json_integer(e->thread));
    ml_json_set(o, "stack", stack_json(m, e->stack));
    return o;
}

json_t *ml_query_log_event(const ml_model *m, size_t i)
{
    return log_event_json(m, &m->logs[i]);
}

static bool log_matches(ml_regex *re, const ml_log_event *e)
{
    return re == NULL || ml_regex_match(re, e->message, strlen(e->message)) ||
           ml_regex_match(re, e->logger, strlen(e->logger));
}

json_t *ml_query_log(const ml_model *m, const ml_run *r)
{
    ml_qrun q = {.run = r, .model = (ml_model *)m};
    ml_qwindow w = {.start = INT64_MIN, .end = INT64_MAX};
    return ml_query_log_window(&q, &w, NULL);
}

json_t *ml_query_log_window(const ml_qrun *q, const ml_qwindow *w, ml_regex *re)
{
    const ml_model *m = q->model;
    const ml_log_event **order = log_order(m);
    json_t *events = json_array();
    for (size_t i = 0; i < m->nlogs; i++) {
        const ml_log_event *e = order[i];
        if (e->time < w->start || e->time >= w->end || !log_matches(re, e))
            continue;
        json_array_append_new(events, log_event_json(m, e));
    }
    free(order);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "events", events);
    return out;
}

json_t *ml_query_log_matches(const ml_qrun *q, ml_regex *re)
{
    const ml_model *m = q->model;
    const ml_log_event **order = log_order(m);
    json_t *a = json_array();
    for (size_t i = 0; i < m->nlogs; i++)
        if (log_matches(re, order[i]))
            json_array_append_new(a, json_integer((json_int_t)i));
    free(order);
    return a;
}

json_t *ml_query_threads(const ml_model *m)
{
    json_t *a = json_array();
    for (size_t id = 1; id < m->nthreads; id++) {
        const ml_thread *t = &m->threads[id];
        if (!t->defined && t->samples == 0)
            continue;
        json_t *o = json_object();
        ml_json_set(o, "id", json_integer((json_int_t)id));
        ml_json_set(o, "ident", ml_json_u64(t->ident));
        ml_json_set(o, "native_id", ml_json_u64(t->native_id));
        ml_json_set(o, "name", ml_json_str(t->name));
        ml_json_set(o, "samples", ml_json_u64(t->samples));
        ml_json_set(o, "started", ml_json_real((double)t->started_us / 1e6));
        ml_json_set(o, "ended",
                    t->ended_us ? ml_json_real((double)t->ended_us / 1e6) : json_null());
        json_array_append_new(a, o);
    }
    return a;
}
