#include "query.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "log.h"
#include "mem.h"

typedef struct cache_entry {
    char *id; /* map key */
    ml_model model;
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

const ml_model *ml_query_model(ml_query *q, const ml_store *s, const ml_run *r)
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
        ml_map_put(&q->models, e->id, e);
    }
    e->used = ++q->clock;
    int rv = ml_model_load(&e->model, path);
    if (rv != 0) {
        ml_warn("query: cannot read %s: %s", path, strerror(-rv));
        ml_query_forget(q, r->id);
        free(path);
        return NULL;
    }
    free(path);
    return &e->model;
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

json_t *ml_query_log(const ml_model *m, const ml_run *r)
{
    const ml_log_event **order = ml_xmalloc(m->nlogs * sizeof(*order));
    for (size_t i = 0; i < m->nlogs; i++)
        order[i] = &m->logs[i];
    qsort(order, m->nlogs, sizeof(*order), cmp_log_time);
    json_t *events = json_array();
    for (size_t i = 0; i < m->nlogs; i++) {
        const ml_log_event *e = order[i];
        json_t *o = json_object();
        ml_json_set(o, "time", json_real((double)e->time / 1e6));
        ml_json_set(o, "kind", ml_json_str(ml_log_kind_name(e->kind)));
        ml_json_set(o, "level", json_integer(e->level));
        ml_json_set(o, "logger", ml_json_str(e->logger));
        ml_json_set(o, "message", ml_json_str(e->message));
        ml_json_set(o, "thread", json_integer(e->thread));
        ml_json_set(o, "stack", stack_json(m, e->stack));
        json_array_append_new(events, o);
    }
    free(order);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(r->id));
    ml_json_set(out, "events", events);
    return out;
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
        ml_json_set(o, "started", json_real((double)t->started_us / 1e6));
        ml_json_set(o, "ended", t->ended_us ? json_real((double)t->ended_us / 1e6) : json_null());
        json_array_append_new(a, o);
    }
    return a;
}
