/*
 * Regex matching (search.h) and the search answer: which functions, calls
 * and log events match a pattern, for highlighting in the UI.
 */
#include "search.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "calls.h"
#include "json.h"
#include "mem.h"
#include "query.h"

struct ml_regex {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mc;
    size_t limit_hits;
};

int ml_regex_compile(const char *pattern, ml_regex **out, char *err, size_t errlen)
{
    if (strlen(pattern) > ML_REGEX_MAX) {
        snprintf(err, errlen, "pattern longer than %d bytes", ML_REGEX_MAX);
        return -EINVAL;
    }
    int code;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
    if (c == NULL) {
        char msg[200];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof(msg));
        snprintf(err, errlen, "invalid regular expression at offset %zu: %s", (size_t)off, msg);
        return -EINVAL;
    }
    ml_regex *re = ml_xcalloc(1, sizeof(*re));
    re->code = c;
    re->md = pcre2_match_data_create_from_pattern(c, NULL);
    re->mc = pcre2_match_context_create(NULL);
    if (re->md == NULL || re->mc == NULL)
        ml_oom(0);
    pcre2_set_match_limit(re->mc, ML_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(re->mc, ML_REGEX_DEPTH_LIMIT);
    *out = re;
    return 0;
}

void ml_regex_free(ml_regex *re)
{
    if (re == NULL)
        return;
    pcre2_match_data_free(re->md);
    pcre2_match_context_free(re->mc);
    pcre2_code_free(re->code);
    free(re);
}

bool ml_regex_match(ml_regex *re, const char *s, size_t n)
{
    int rc = pcre2_match(re->code, (PCRE2_SPTR)(s ? s : ""), n, 0, 0, re->md, re->mc);
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
        re->limit_hits++;
    return rc >= 0;
}

size_t ml_regex_limit_hits(const ml_regex *re)
{
    return re->limit_hits;
}

static bool frame_matches(const ml_qrun *q, ml_regex *re, const ml_frame *f)
{
    const char *name = ml_model_string(q->model, f->name);
    const char *file = ml_model_string(q->model, f->file);
    return ml_regex_match(re, name, strlen(name)) || ml_regex_match(re, file, strlen(file));
}

json_t *ml_query_search(const ml_qrun *q, ml_regex *re, const char *pattern)
{
    const ml_model *m = q->model;
    uint8_t *hit = ml_xcalloc(m->nframes + 1, 1);
    json_t *frames = json_array(), *functions = json_array();
    for (size_t f = 1; f < m->nframes; f++) {
        uint32_t func = ml_calls_func(q->calls, (uint32_t)f);
        if (func != f) /* each function tested once, through its own id */
            continue;
        if (frame_matches(q, re, &m->frames[f])) {
            hit[f] = 1;
            json_array_append_new(frames, json_integer((json_int_t)f));
            json_array_append_new(functions, ml_json_str(ml_model_string(m, m->frames[f].name)));
        }
    }
    uint64_t ncalls = 0;
    const ml_calls *c = q->calls;
    for (size_t id = 1; id < c->nthreads; id++) {
        const ml_thread_index *t = &c->threads[id];
        for (size_t d = 0; d < t->ndepth; d++)
            for (size_t k = 0; k < t->depth[d].n; k++) {
                uint32_t func = ml_call_func(&t->depth[d], k);
                ncalls += func < m->nframes && hit[func];
            }
    }
    free(hit);
    json_t *log = ml_query_log_matches(q, re);
    json_t *out = json_object();
    ml_json_set(out, "run", ml_json_str(q->run->id));
    ml_json_set(out, "q", ml_json_str(pattern));
    ml_json_set(out, "frames", frames);
    ml_json_set(out, "functions", functions);
    ml_json_set(out, "calls", ml_json_u64(ncalls));
    ml_json_set(out, "log", log);
    return out;
}
