/*
 * The JSON API under /api/v1 (see ARCHITECTURE.md "HTTP API"):
 *
 *   GET    /api/v1/ingest                      where clients send runs
 *   GET    /api/v1/runs?filter=RE&limit=N      runs, newest first
 *   GET    /api/v1/runs/{run}                  metadata + threads
 *   DELETE /api/v1/runs/{run}                  204
 *   GET    /api/v1/openapi.json                the OpenAPI document of all this
 *   GET    /api/v1/runs/{run}/ENDPOINT         the queries: log, flamegraph, timeline,
 *          status, design, calls, search, export, diff, live (SSE); parameters and
 *          answers as in collector/openapi.json
 *
 * {run} is "label%2Fstamp" or "label/stamp". The path is percent-decoded
 * first; a label never contains "/", so after decoding the first segment
 * is the label, the second the stamp and an optional third the endpoint.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_http.h"
#include "export.h"
#include "cache.h"
#include "http_internal.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "search.h"
#include "url.h"

#define API_PREFIX "/api/v1"
/* Thread ids accepted in one threads= filter. */
#define MAX_THREAD_FILTER 1024

typedef struct api_req {
    h2o_req_t *req;
    h2o_handler_t *self; /* to handle req again after an S3 fetch (cache.h) */
    ml_collector *c;
    const char *query; /* query string without "?", or "" */
    size_t query_len;
} api_req;

static bool method_is(const h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static bool is_get(const h2o_req_t *req)
{
    return method_is(req, "GET") || method_is(req, "HEAD");
}

static void get_ingest(api_req *a)
{
    const char *url = ml_collector_ingest_url(a->c);
    if (url == NULL) {
        ml_http_send_error(a->req, 404, "this collector has no ingest listener");
        return;
    }
    json_t *o = json_object();
    ml_json_set(o, "ingest", ml_json_str(url));
    ml_json_set(o, "protocol", json_integer(1));
    ml_http_send_json(a->req, 200, o);
}

static void get_runs(api_req *a)
{
    /* Conditions and paging: index.h (ml_index_query_parse). The total
     * before paging goes in X-Total-Count; the body stays an array. */
    ml_index_query q;
    char err[300];
    if (ml_index_query_parse(&q, a->query, a->query_len, err, sizeof(err)) != 0) {
        ml_http_send_error(a->req, 400, "%s", err);
        ml_index_query_dispose(&q);
        return;
    }
    /* Hosted mode: a team lists its own runs only (admins: all). */
    const ml_principal *who = ml_http_principal(a->c, a->req);
    if (who && who->role != ML_ROLE_ADMIN) {
        if (q.team && strcmp(q.team, who->team) != 0)
            q.label = "\x01"; /* another team: matches nothing */
        q.team = who->team;
    }
    ml_run **runs;
    size_t total;
    size_t n = ml_index_query_run(&a->c->index, &q, &runs, &total);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, ml_run_summary_json(runs[i]));
    free(runs);
    ml_index_query_dispose(&q);
    char count[32];
    int clen = snprintf(count, sizeof(count), "%zu", total);
    h2o_add_header_by_str(&a->req->pool, &a->req->res.headers, H2O_STRLIT("x-total-count"), 0, NULL,
                          h2o_strdup(&a->req->pool, count, (size_t)clen).base, (size_t)clen);
    ml_http_send_json(a->req, 200, arr);
}

static void get_run(api_req *a, ml_run *r)
{
    const ml_model *m = ml_query_model(&a->c->query, &a->c->store, r);
    json_t *o = ml_run_to_json(r);
    ml_json_set(o, "threads", m ? ml_query_threads(m) : json_array());
    ml_http_send_json(a->req, 200, o);
}

static void delete_run(api_req *a, ml_run *r)
{
    char id[ML_RUN_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", r->id);
    int rv = ml_collector_delete_run(a->c, r);
    if (rv != 0) {
        ml_http_send_error(a->req, 500, "cannot delete %s: %s", id, strerror(-rv));
        return;
    }
    a->req->res.status = 204;
    a->req->res.reason = "No Content";
    h2o_send_inline(a->req, "", 0);
}

/* threads=1,2,3 into ids; returns the count or -1 when malformed. */
static long parse_threads(const char *s, uint32_t *ids, size_t cap)
{
    size_t n = 0;
    while (*s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > UINT32_MAX || n == cap || (*end != ',' && *end != '\0'))
            return -1;
        ids[n++] = (uint32_t)v;
        s = *end ? end + 1 : end;
    }
    return (long)n;
}

/* The query parameters shared by the run endpoints. */
typedef struct params {
    ml_qwindow w;
    uint32_t ids[MAX_THREAD_FILTER];
} params;

/* Reads a time parameter (seconds, finite, >= 0) into *us; absent leaves
 * it. Returns false (400 sent) when malformed. */
static bool param_time(api_req *a, const char *key, int64_t *us)
{
    char *v = ml_url_query_get(a->query, a->query_len, key);
    if (v == NULL)
        return true;
    char *end;
    double d = strtod(v, &end);
    bool ok = v[0] != '\0' && *end == '\0' && isfinite(d) && d >= 0 && d < 1e9;
    if (ok)
        *us = (int64_t)(d * 1e6 + 0.5);
    else
        ml_http_send_error(a->req, 400, "%s must be a number of seconds >= 0", key);
    free(v);
    return ok;
}

static bool parse_params(api_req *a, params *p)
{
    p->w = (ml_qwindow){.start = 0, .end = INT64_MAX, .threads = p->ids, .width = 1000};
    if (!param_time(a, "start", &p->w.start) || !param_time(a, "end", &p->w.end))
        return false;
    if (p->w.end <= p->w.start) {
        ml_http_send_error(a->req, 400, "end must be after start");
        return false;
    }
    char *width = ml_url_query_get(a->query, a->query_len, "width");
    if (width) {
        char *end;
        long v = strtol(width, &end, 10);
        bool ok = width[0] != '\0' && *end == '\0' && v >= 1 && v <= 20000;
        free(width);
        if (!ok) {
            ml_http_send_error(a->req, 400, "width must be an integer from 1 to 20000");
            return false;
        }
        p->w.width = (int)v;
    }
    char *threads = ml_url_query_get(a->query, a->query_len, "threads");
    long n = threads ? parse_threads(threads, p->ids, MAX_THREAD_FILTER) : 0;
    free(threads);
    if (n < 0) {
        ml_http_send_error(a->req, 400, "threads must be a comma-separated list of thread ids");
        return false;
    }
    p->w.nthreads = (size_t)n;
    return true;
}

/* Compiles the q parameter (required when need); *re stays NULL when
 * absent. Returns false (400 sent) for a bad pattern. */
static bool param_regex(api_req *a, bool need, char **pattern, ml_regex **re)
{
    char err[300];
    *re = NULL;
    *pattern = ml_url_query_get(a->query, a->query_len, "q");
    if (*pattern == NULL || (*pattern)[0] == '\0') {
        if (need) {
            ml_http_send_error(a->req, 400, "the q parameter (a regular expression) is required");
            return false;
        }
        return true;
    }
    if (ml_regex_compile(*pattern, re, err, sizeof(err)) != 0) {
        ml_http_send_error(a->req, 400, "%s", err);
        return false;
    }
    return true;
}

static void send_file(api_req *a, const ml_qrun *q, const char *type, const char *ext, char *body,
                      size_t len)
{
    if (body == NULL) {
        ml_http_send_error(a->req, 500, "export failed");
        return;
    }
    char name[ML_RUN_ID_MAX + 32];
    snprintf(name, sizeof(name), "attachment; filename=\"%s_%s.%s\"", q->run->label, q->run->stamp,
             ext);
    ml_http_send_raw(a->req, 200, type, body, len, name);
    free(body);
}

static void get_export(api_req *a, const ml_qrun *q)
{
    char *fmt = ml_url_query_get(a->query, a->query_len, "format");
    size_t len = 0;
    char *body;
    if (fmt == NULL || strcmp(fmt, "speedscope") == 0) {
        body = ml_export_speedscope(q, &len);
        send_file(a, q, "application/json", "speedscope.json", body, len);
    } else if (strcmp(fmt, "pprof") == 0) {
        body = ml_export_pprof(q, &len);
        send_file(a, q, "application/octet-stream", "pb.gz", body, len);
    } else if (strcmp(fmt, "collapsed") == 0) {
        body = ml_export_collapsed(q, &len);
        send_file(a, q, "text/plain; charset=utf-8", "collapsed.txt", body, len);
    } else if (strcmp(fmt, "chrome") == 0) {
        body = ml_export_chrome(q, &len);
        send_file(a, q, "application/json", "trace.json", body, len);
    } else {
        ml_http_send_error(a->req, 400, "format must be speedscope, pprof, collapsed or chrome");
    }
    free(fmt);
}

static void get_diff(api_req *a, const ml_qrun *q)
{
    char *base = ml_url_query_get(a->query, a->query_len, "base");
    if (base == NULL || base[0] == '\0') {
        ml_http_send_error(a->req, 400, "the base parameter (a run id) is required");
        free(base);
        return;
    }
    ml_run *br = ml_index_find(&a->c->index, base);
    if (br && !ml_http_sees(a->c, a->req, br->team))
        br = NULL; /* another team's run: as if it did not exist */
    const ml_qrun *bq = br ? ml_query_get(&a->c->query, &a->c->store, br) : NULL;
    if (br == NULL)
        ml_http_send_error(a->req, 404, "no run %.200s", base);
    else if (bq == NULL)
        ml_http_send_error(a->req, 500, "cannot read the journal of %s", br->id);
    else
        ml_http_send_json(a->req, 200, ml_query_diff(q, bq));
    free(base);
}

static void get_calls(api_req *a, const ml_qrun *q)
{
    char *name = ml_url_query_get(a->query, a->query_len, "name");
    if (name == NULL || name[0] == '\0')
        ml_http_send_error(a->req, 400, "the name parameter (a function name) is required");
    else
        ml_http_send_json(a->req, 200, ml_query_calls(q, name));
    free(name);
}

static void get_regex_endpoint(api_req *a, const ml_qrun *q, bool is_log, const params *p)
{
    char *pattern;
    ml_regex *re;
    if (param_regex(a, !is_log, &pattern, &re)) {
        if (is_log)
            ml_http_send_json(a->req, 200, ml_query_log_window(q, &p->w, re));
        else
            ml_http_send_json(a->req, 200, ml_query_search(q, re, pattern));
    }
    ml_regex_free(re);
    free(pattern);
}

static const char *const endpoints[] = {"log",    "flamegraph", "timeline", "status",
                                        "design", "calls",      "search",   "export",
                                        "diff",   "live",       NULL};

static void query_endpoint(api_req *a, ml_run *r, const char *endpoint)
{
    params *p = ml_xmalloc(sizeof(*p));
    if (!parse_params(a, p)) {
        free(p);
        return;
    }
    if (strcmp(endpoint, "live") == 0) {
        ml_http_live_start(a->req, a->c, r);
        free(p);
        return;
    }
    const ml_qrun *q = ml_query_get(&a->c->query, &a->c->store, r);
    size_t len;
    if (q == NULL)
        ml_http_send_error(a->req, 500, "cannot read the journal of %s", r->id);
    else if (strcmp(endpoint, "log") == 0 || strcmp(endpoint, "search") == 0)
        get_regex_endpoint(a, q, endpoint[0] == 'l', p);
    else if (strcmp(endpoint, "flamegraph") == 0)
        ml_http_send_json(a->req, 200, ml_query_flamegraph_window(q, &p->w));
    else if (strcmp(endpoint, "timeline") == 0) {
        char *body = ml_query_timeline(q, &p->w, &len);
        ml_http_send_raw(a->req, 200, "application/json", body, len, NULL);
        free(body);
    } else if (strcmp(endpoint, "status") == 0)
        ml_http_send_json(a->req, 200, ml_query_status(q, &p->w));
    else if (strcmp(endpoint, "design") == 0)
        ml_http_send_json(a->req, 200, ml_query_design(q));
    else if (strcmp(endpoint, "calls") == 0)
        get_calls(a, q);
    else if (strcmp(endpoint, "export") == 0)
        get_export(a, q);
    else
        get_diff(a, q);
    free(p);
}

static void run_endpoint(api_req *a, ml_run *r, const char *endpoint)
{
    /* A run another collector uploaded: fetch its recording first. */
    if (is_get(a->req) && ml_cache_defer(a->c, r, a->req, a->self))
        return;
    if (endpoint[0] == '\0') {
        if (is_get(a->req))
            get_run(a, r);
        else if (method_is(a->req, "DELETE"))
            delete_run(a, r);
        else
            ml_http_send_error(a->req, 405, "use GET or DELETE");
        return;
    }
    bool known = false;
    for (size_t i = 0; endpoints[i]; i++)
        known = known || strcmp(endpoint, endpoints[i]) == 0;
    if (!known) {
        ml_http_send_error(a->req, 404, "unknown endpoint \"%.100s\"", endpoint);
        return;
    }
    if (!is_get(a->req)) {
        ml_http_send_error(a->req, 405, "use GET");
        return;
    }
    query_endpoint(a, r, endpoint);
}

/* rest: the decoded path after "/api/v1/runs/". */
static void route_run(api_req *a, const char *rest)
{
    const char *slash1 = strchr(rest, '/');
    const char *slash2 = slash1 ? strchr(slash1 + 1, '/') : NULL;
    size_t id_len = slash2 ? (size_t)(slash2 - rest) : strlen(rest);
    const char *endpoint = slash2 ? slash2 + 1 : "";
    char label[ML_LABEL_MAX + 1], stamp[ML_STAMP_MAX + 1];
    if (ml_run_id_split(rest, id_len, label, stamp) != 0) {
        ml_http_send_error(a->req, 404, "not a run id: \"%.*s\"",
                           (int)(id_len > 200 ? 200 : id_len), rest);
        return;
    }
    char id[ML_RUN_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s/%s", label, stamp);
    ml_run *r = ml_index_find(&a->c->index, id);
    if (r != NULL && !ml_http_sees(a->c, a->req, r->team))
        r = NULL; /* hosted: another team's run answers 404 like a missing one */
    if (r == NULL) {
        ml_http_send_error(a->req, 404, "no run %s", id);
        return;
    }
    run_endpoint(a, r, endpoint);
}

static void route(api_req *a, const char *path)
{
    if (strcmp(path, "/ingest") == 0 || strcmp(path, "/runs") == 0 || strcmp(path, "/runs/") == 0) {
        if (!is_get(a->req))
            ml_http_send_error(a->req, 405, "use GET");
        else if (path[1] == 'i')
            get_ingest(a);
        else
            get_runs(a);
    } else if (strcmp(path, "/openapi.json") == 0) {
        ml_http_send_raw(a->req, 200, "application/json", ml_openapi_json, ml_openapi_json_len,
                         NULL);
    } else if (strncmp(path, "/runs/", 6) == 0) {
        route_run(a, path + 6);
    } else {
        ml_http_send_error(a->req, 404, "no such API endpoint");
    }
}

int ml_http_api_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    ml_http_handler *h = (ml_http_handler *)self;
    uint64_t t0 = uv_hrtime();
    api_req a = {.req = req, .self = self, .c = h->http->c, .query = "", .query_len = 0};
    size_t path_len = req->path.len;
    if (req->query_at != SIZE_MAX) {
        path_len = req->query_at;
        a.query = req->path.base + req->query_at + 1;
        a.query_len = req->path.len - req->query_at - 1;
    }
    const char *raw = req->path.base;
    size_t prefix = sizeof(API_PREFIX) - 1;
    if (path_len < prefix || memcmp(raw, API_PREFIX, prefix) != 0 ||
        (path_len > prefix && raw[prefix] != '/')) {
        ml_http_send_error(req, 404, "no such API endpoint");
        return 0;
    }
    char *path = ml_url_decode(raw + prefix, path_len - prefix, false, NULL);
    if (path == NULL)
        ml_http_send_error(req, 400, "bad percent-encoding in the path");
    else
        route(&a, path);
    free(path);
    ml_http_metrics_observe(h->http, (double)(uv_hrtime() - t0) / 1e9);
    return 0;
}
