#define PCRE2_CODE_UNIT_WIDTH 8

#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "log.h"
#include "mem.h"

void ml_index_init(ml_index *x)
{
    ml_map_init(&x->by_id);
    ml_map_init(&x->by_uid);
}

void ml_index_dispose(ml_index *x)
{
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&x->by_id, pos, &v)) != 0;)
        ml_run_free(v);
    ml_map_dispose(&x->by_id);
    ml_map_dispose(&x->by_uid);
}

int ml_index_add(ml_index *x, ml_run *r)
{
    if (ml_map_get(&x->by_id, r->id) || (r->uid && r->uid[0] && ml_map_get(&x->by_uid, r->uid)))
        return -EEXIST;
    ml_map_put(&x->by_id, r->id, r);
    if (r->uid && r->uid[0])
        ml_map_put(&x->by_uid, r->uid, r);
    return 0;
}

void ml_index_remove(ml_index *x, ml_run *r)
{
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

static void load_one(void *arg, ml_run *r)
{
    ml_index *x = arg;
    if (ml_index_add(x, r) != 0) {
        ml_warn("index: run %s (uid %s) is on disk twice; keeping the first", r->id, r->uid);
        ml_run_free(r);
    }
}

int ml_index_load(ml_index *x, const ml_store *s)
{
    size_t before = ml_index_count(x);
    int rv = ml_store_scan(s, load_one, x);
    return rv < 0 ? rv : (int)(ml_index_count(x) - before);
}

struct ml_filter {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
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
    *out = f;
    return 0;
}

int ml_filter_match(ml_filter *f, const ml_run *r)
{
    char *subject = ml_xasprintf("%s %s %s", r->id, r->host ? r->host : "", r->user ? r->user : "");
    int rc = pcre2_match(f->code, (PCRE2_SPTR)subject, strlen(subject), 0, 0, f->md, f->mctx);
    free(subject);
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

size_t ml_index_list(const ml_index *x, ml_filter *f, size_t limit, ml_run ***out)
{
    ml_run **runs = ml_xmalloc(ml_index_count(x) * sizeof(ml_run *));
    size_t n = 0;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&x->by_id, pos, &v)) != 0;)
        if (f == NULL || ml_filter_match(f, v) == 1)
            runs[n++] = v;
    qsort(runs, n, sizeof(ml_run *), cmp_newest);
    if (limit && n > limit)
        n = limit;
    *out = runs;
    return n;
}
