/*
 * The JSON API under /api/v1 (see ARCHITECTURE.md "HTTP API"):
 *
 *   GET    /api/v1/ingest                      where clients send runs
 *   GET    /api/v1/runs?filter=RE&limit=N      runs, newest first
 *   GET    /api/v1/runs/{run}                  metadata + threads
 *   DELETE /api/v1/runs/{run}                  204
 *   GET    /api/v1/runs/{run}/log              log events with stacks
 *   GET    /api/v1/runs/{run}/flamegraph       call tree (threads=1,2)
 *
 * {run} is "label%2Fstamp" or "label/stamp". The path is percent-decoded
 * first; a label never contains "/", so after decoding the first segment
 * is the label, the second the stamp and an optional third the endpoint.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "url.h"

#define API_PREFIX "/api/v1"
/* Thread ids accepted in one threads= filter. */
#define MAX_THREAD_FILTER 1024

typedef struct api_req {
    h2o_req_t *req;
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
    char *pattern = ml_url_query_get(a->query, a->query_len, "filter");
    char *limit_s = ml_url_query_get(a->query, a->query_len, "limit");
    ml_filter *f = NULL;
    char err[300];
    long limit = 0;
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*limit_s == '\0' || *end != '\0' || limit < 0) {
            ml_http_send_error(a->req, 400, "limit must be a non-negative integer");
            goto done;
        }
    }
    if (pattern && pattern[0] && ml_filter_compile(pattern, &f, err, sizeof(err)) != 0) {
        ml_http_send_error(a->req, 400, "%s", err);
        goto done;
    }
    ml_run **runs;
    size_t n = ml_index_list(&a->c->index, f, (size_t)limit, &runs);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, ml_run_summary_json(runs[i]));
    free(runs);
    ml_http_send_json(a->req, 200, arr);
done:
    ml_filter_free(f);
    free(pattern);
    free(limit_s);
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

static void get_flamegraph(api_req *a, ml_run *r, const ml_model *m)
{
    uint32_t *ids = ml_xmalloc(MAX_THREAD_FILTER * sizeof(uint32_t));
    char *threads = ml_url_query_get(a->query, a->query_len, "threads");
    long n = threads ? parse_threads(threads, ids, MAX_THREAD_FILTER) : 0;
    if (n < 0)
        ml_http_send_error(a->req, 400, "threads must be a comma-separated list of thread ids");
    else
        ml_http_send_json(a->req, 200, ml_query_flamegraph(m, r, ids, (size_t)n));
    free(threads);
    free(ids);
}

static void run_endpoint(api_req *a, ml_run *r, const char *endpoint)
{
    if (endpoint[0] == '\0') {
        if (is_get(a->req))
            get_run(a, r);
        else if (method_is(a->req, "DELETE"))
            delete_run(a, r);
        else
            ml_http_send_error(a->req, 405, "use GET or DELETE");
        return;
    }
    if (strcmp(endpoint, "log") != 0 && strcmp(endpoint, "flamegraph") != 0) {
        ml_http_send_error(a->req, 404, "unknown endpoint \"%.100s\"", endpoint);
        return;
    }
    if (!is_get(a->req)) {
        ml_http_send_error(a->req, 405, "use GET");
        return;
    }
    const ml_model *m = ml_query_model(&a->c->query, &a->c->store, r);
    if (m == NULL)
        ml_http_send_error(a->req, 500, "cannot read the journal of %s", r->id);
    else if (strcmp(endpoint, "log") == 0)
        ml_http_send_json(a->req, 200, ml_query_log(m, r));
    else
        get_flamegraph(a, r, m);
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
    } else if (strncmp(path, "/runs/", 6) == 0) {
        route_run(a, path + 6);
    } else {
        ml_http_send_error(a->req, 404, "no such API endpoint");
    }
}

int ml_http_api_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    ml_http_handler *h = (ml_http_handler *)self;
    api_req a = {.req = req, .c = h->http->c, .query = "", .query_len = 0};
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
    return 0;
}
