#define PCRE2_CODE_UNIT_WIDTH 8

#include "index.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "log.h"
#include "mem.h"
#include "url.h"

void ml_index_init(ml_index *x)
{
    ml_map_init(&x->by_id);
    ml_map_init(&x->by_uid);
    x->sorted = NULL;
}

static void stale(ml_index *x)
{
    free(x->sorted);
    x->sorted = NULL;
}

void ml_index_dispose(ml_index *x)
{
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&x->by_id, pos, &v)) != 0;)
        ml_run_free(v);
    ml_map_dispose(&x->by_id);
    ml_map_dispose(&x->by_uid);
    stale(x);
}

int ml_index_add(ml_index *x, ml_run *r)
{
    if (ml_map_get(&x->by_id, r->id) || (r->uid && r->uid[0] && ml_map_get(&x->by_uid, r->uid)))
        return -EEXIST;
    stale(x);
    ml_map_put(&x->by_id, r->id, r);
    if (r->uid && r->uid[0])
        ml_map_put(&x->by_uid, r->uid, r);
    return 0;
}

void ml_index_remove(ml_index *x, ml_run *r)
{
    stale(x);
    if (ml_map_get(&x->by_id, r->id) == r)
        ml_map_remove(&x->by_id, r->id);
    if (r->uid && ml_map_get(&x->by_uid, r->uid) == r)
        ml_map_remove(&x->by_uid, r->uid);
}

ml_run *ml_index_find(const ml_index *x, const char *id)
{
    return ml_map_get(&x->by_id, id);
}

ml_run *ml_index_find_uid(const ml_index *x, const char *uid)
{
    return ml_map_get(&x->by_uid, uid);
}

size_t ml_index_count(const ml_index *x)
{
    return x->by_id.len;
}

static ml_run **all_runs(const ml_index *x)
{
    ml_run **runs = ml_xmalloc((ml_index_count(x) + 1) * sizeof(ml_run *));
    size_t n = 0;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&x->by_id, pos, &v)) != 0;)
        runs[n++] = v;
    return runs;
}

static void load_one(void *arg, ml_run *r)
{
    ml_index *x = arg;
    if (ml_index_add(x, r) != 0) {
        ml_warn("index: run %s (uid %s) is on disk twice; keeping the first", r->id, r->uid);
        ml_run_free(r);
    }
}

int ml_index_load(ml_index *x, ml_store *s)
{
    size_t before = ml_index_count(x);
    int rv = ml_store_log_read(s, load_one, x);
    bool rewrite = rv < 0;
    if (rv < 0) {
        /* No log (first start, or dropped after a write error) or a
         * corrupt one: the run.json files are the truth. */
        if (rv != -ENOENT)
            ml_warn("index: the index log is unusable; scanning every run");
        rv = ml_store_scan(s, load_one, x);
        if (rv < 0)
            return rv;
    }
    size_t n = ml_index_count(x);
    /* Compaction: superseded puts (live runs rewrite run.json often). */
    rewrite = rewrite || s->log_lines > 2 * n + 1024;
    if (rewrite) {
        ml_run **runs = all_runs(x);
        ml_store_log_rewrite(s, runs, n);
        free(runs);
    } else if ((rv = ml_store_log_open(s)) != 0) {
        ml_warn("index: cannot append to the index log: %s", strerror(-rv));
    }
    return (int)(n - before);
}

struct ml_filter {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    bool jit; /* compiled to machine code: ~10x faster over 100 000 runs */
};

void ml_filter_free(ml_filter *f)
{
    if (f == NULL)
        return;
    pcre2_match_data_free(f->md);
    pcre2_match_context_free(f->mctx);
    pcre2_code_free(f->code);
    free(f);
}

int ml_filter_compile(const char *pattern, ml_filter **out, char *err, size_t errlen)
{
    size_t len = strlen(pattern);
    if (len > ML_FILTER_MAX) {
        snprintf(err, errlen, "filter longer than %d characters", ML_FILTER_MAX);
        return -EINVAL;
    }
    int code;
    PCRE2_SIZE at;
    /* MATCH_INVALID_UTF: run fields come from clients and may not be UTF-8. */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                                   &code, &at, NULL);
    if (re == NULL) {
        char msg[256];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof(msg));
        snprintf(err, errlen, "invalid filter at offset %zu: %s", (size_t)at, msg);
        return -EINVAL;
    }
    ml_filter *f = ml_xcalloc(1, sizeof(*f));
    f->code = re;
    f->md = pcre2_match_data_create_from_pattern(re, NULL);
    f->mctx = pcre2_match_context_create(NULL);
    if (f->md == NULL || f->mctx == NULL)
        ml_oom(0);
    pcre2_set_match_limit(f->mctx, ML_FILTER_MATCH_LIMIT);
    pcre2_set_depth_limit(f->mctx, ML_FILTER_MATCH_LIMIT);
    /* The JIT honours the match limit too; without JIT support the
     * interpreter is used. */
    f->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    *out = f;
    return 0;
}

int ml_filter_match(ml_filter *f, const ml_run *r)
{
    /* The subject is built once per run: id, host and user never change. */
    ml_run *w = (ml_run *)r;
    if (w->subject == NULL) {
        w->subject =
            ml_xasprintf("%s %s %s", r->id, r->host ? r->host : "", r->user ? r->user : "");
        w->subject_len = strlen(w->subject);
    }
    int rc =
        f->jit
            ? pcre2_jit_match(f->code, (PCRE2_SPTR)r->subject, r->subject_len, 0, 0, f->md, f->mctx)
            : pcre2_match(f->code, (PCRE2_SPTR)r->subject, r->subject_len, 0, 0, f->md, f->mctx);
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
        ml_debug("index: filter hit the match limit on %s", r->id);
    return rc >= 0;
}

static int cmp_newest(const void *a, const void *b)
{
    const ml_run *x = *(ml_run *const *)a, *y = *(ml_run *const *)b;
    if (x->start_unix_us != y->start_unix_us)
        return x->start_unix_us > y->start_unix_us ? -1 : 1;
    return -strcmp(x->id, y->id);
}

void ml_index_query_init(ml_index_query *q)
{
    memset(q, 0, sizeof(*q));
    q->status = -1;
}

static bool str_is(const char *want, const char *have)
{
    return want == NULL || strcmp(want, have ? have : "") == 0;
}

static bool query_match(const ml_index_query *q, const ml_run *r)
{
    if (!str_is(q->team, r->team) || !str_is(q->label, r->label) || !str_is(q->host, r->host) ||
        !str_is(q->user, r->user))
        return false;
    if (q->status >= 0 && (int)r->status != q->status)
        return false;
    if ((q->since_us && r->start_unix_us < q->since_us) ||
        (q->until_us && r->start_unix_us >= q->until_us))
        return false;
    return q->filter == NULL || ml_filter_match(q->filter, r) == 1;
}

size_t ml_index_query_run(const ml_index *x, const ml_index_query *q, ml_run ***out, size_t *total)
{
    size_t count = ml_index_count(x);
    ml_index *w = (ml_index *)x; /* the sorted cache is not part of the state */
    if (w->sorted == NULL) {
        w->sorted = all_runs(x);
        qsort(w->sorted, count, sizeof(ml_run *), cmp_newest);
    }
    ml_run **runs = ml_xmalloc((count + 1) * sizeof(ml_run *));
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (query_match(q, x->sorted[i]))
            runs[n++] = x->sorted[i];
    if (total)
        *total = n;
    size_t from = q->offset < n ? q->offset : n;
    size_t len = n - from;
    if (q->limit && len > q->limit)
        len = q->limit;
    if (from)
        memmove(runs, runs + from, len * sizeof(ml_run *));
    *out = runs;
    return len;
}

size_t ml_index_list(const ml_index *x, ml_filter *f, size_t limit, ml_run ***out)
{
    ml_index_query q;
    ml_index_query_init(&q);
    q.filter = f;
    q.limit = limit;
    return ml_index_query_run(x, &q, out, NULL);
}

/* A non-negative integer, or -1. */
static long long parse_count(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    return (*s == '\0' || *end != '\0' || v < 0) ? -1 : v;
}

static int parse_time(const char *s, int64_t *us)
{
    char *end;
    double secs = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(secs >= 0 && secs < 1e11))
        return -EINVAL;
    *us = (int64_t)(secs * 1e6);
    return 0;
}

static int query_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int ml_index_query_parse(ml_index_query *q, const char *query, size_t len, char *err, size_t errlen)
{
    static const char *const strings[] = {"team", "label", "host", "user"};
    ml_index_query_init(q);
    for (size_t i = 0; i < 4; i++)
        q->owned[i] = ml_url_query_get(query, len, strings[i]);
    q->team = q->owned[0];
    q->label = q->owned[1];
    q->host = q->owned[2];
    q->user = q->owned[3];
    int rv = 0;
    char *v;
    if ((v = ml_url_query_get(query, len, "status")) != NULL) {
        if (strcmp(v, "live") == 0)
            q->status = ML_RUN_LIVE;
        else if (strcmp(v, "complete") == 0)
            q->status = ML_RUN_COMPLETE;
        else if (strcmp(v, "incomplete") == 0)
            q->status = ML_RUN_INCOMPLETE;
        else
            rv = query_error(err, errlen, "status must be live, complete or incomplete");
        free(v);
    }
    static const char *const times[] = {"since", "until"};
    int64_t *dst[] = {&q->since_us, &q->until_us};
    for (size_t i = 0; rv == 0 && i < 2; i++) {
        if ((v = ml_url_query_get(query, len, times[i])) != NULL && parse_time(v, dst[i]) != 0)
            rv = query_error(err, errlen, "%s must be unix seconds", times[i]);
        free(v);
    }
    static const char *const counts[] = {"offset", "limit"};
    size_t *cdst[] = {&q->offset, &q->limit};
    for (size_t i = 0; rv == 0 && i < 2; i++) {
        long long n;
        if ((v = ml_url_query_get(query, len, counts[i])) != NULL && (n = parse_count(v)) < 0)
            rv = query_error(err, errlen, "%s must be a non-negative integer", counts[i]);
        else if (v)
            *cdst[i] = (size_t)n;
        free(v);
    }
    if (rv == 0 && (v = ml_url_query_get(query, len, "filter")) != NULL) {
        if (v[0])
            rv = ml_filter_compile(v, &q->filter, err, errlen);
        free(v);
    }
    return rv;
}

void ml_index_query_dispose(ml_index_query *q)
{
    ml_filter_free(q->filter);
    for (size_t i = 0; i < sizeof(q->owned) / sizeof(q->owned[0]); i++)
        free(q->owned[i]);
    ml_index_query_init(q);
}
