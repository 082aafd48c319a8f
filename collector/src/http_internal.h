/*
 * Shared by http.c (server, connections, static files) and http_api.c
 * (the JSON routes). Loop thread only.
 */
#ifndef ML_COLLECTOR_HTTP_INTERNAL_H
#define ML_COLLECTOR_HTTP_INTERNAL_H

#include <stdint.h>

#include <h2o.h>
#include <jansson.h>
#include <uv.h>

#include "collector.h"
#include "http.h"

/* An accepted connection; tcp must stay the first member (h2o's close
 * callback hands back the uv handle). */
typedef struct ml_http_conn {
    uv_tcp_t tcp;
    ml_http *http;
    struct ml_http_conn *prev, *next;
} ml_http_conn;

typedef struct ml_sse ml_sse;

/* Request latency histogram bucket bounds, seconds (metrics.c). */
#define ML_HTTP_LATENCY_BUCKETS 11

struct ml_http {
    ml_collector *c;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    uv_timer_t drain;
    ml_http_conn *conns; /* open connections */
    char *url;
    uint64_t drain_deadline;
    ml_http_closed_cb closed_cb;
    void *closed_arg;
    /* Live streams (sse.c) and the timer that feeds them. */
    ml_sse *streams;
    uv_timer_t *sse_timer; /* NULL when no stream was ever opened */
    /* Metrics (metrics.c). */
    uint64_t requests;
    uint64_t latency_buckets[ML_HTTP_LATENCY_BUCKETS + 1]; /* last: +Inf */
    double latency_sum;
};

/* A route handler with a way back to the server. */
typedef struct ml_http_handler {
    h2o_handler_t super;
    ml_http *http;
} ml_http_handler;

/* Sends body (a JSON value, reference taken) with the given status. */
void ml_http_send_json(h2o_req_t *req, int status, json_t *body);

/* Sends {"error": message} with the given status. */
void ml_http_send_error(h2o_req_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends len bytes of body (copied) with a content type; disposition, when
 * not NULL, is sent as Content-Disposition. */
void ml_http_send_raw(h2o_req_t *req, int status, const char *type, const char *body, size_t len,
                      const char *disposition);

/* Answers req with a Server-Sent Events stream of run r's new status
 * ticks, log events, closed calls and summary, until the run ends or the
 * client goes away (sse.c). */
void ml_http_live_start(h2o_req_t *req, ml_collector *c, ml_run *r);

/* Stops every live stream and the timer (on close). */
void ml_http_live_close(ml_http *h);

/* Number of open live streams. */
size_t ml_http_live_count(const ml_http *h);

/* Counts one API request that took seconds. */
void ml_http_metrics_observe(ml_http *h, double seconds);

/* The on_req of /metrics (metrics.c). */
int ml_http_metrics_on_req(h2o_handler_t *self, h2o_req_t *req);

/* The OpenAPI document (generated from collector/openapi.json at build
 * time). */
extern const char ml_openapi_json[];
extern const size_t ml_openapi_json_len;

/* The on_req of /api/v1 (http_api.c). */
int ml_http_api_on_req(h2o_handler_t *self, h2o_req_t *req);

/* The on_req of /healthz. */
int ml_http_health_on_req(h2o_handler_t *self, h2o_req_t *req);

#endif
