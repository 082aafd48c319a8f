#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth_http.h"
#include "fsutil.h"
#include "hosted.h"
#include "http_internal.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "tls.h"

/* How long ml_http_close() waits for open connections to finish. */
#define DRAIN_TIMEOUT_MS 3000

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 303:
        return "See Other";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 500:
        return "Internal Server Error";
    default:
        return "Internal Server Error";
    }
}

static void send_body(h2o_req_t *req, int status, const char *type, const char *body, size_t len)
{
    ml_http_send_raw(req, status, type, body, len, NULL);
}

void ml_http_send_raw(h2o_req_t *req, int status, const char *type, const char *body, size_t len,
                      const char *disposition)
{
    if (disposition)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_DISPOSITION, NULL,
                       disposition, strlen(disposition));
    req->res.status = status;
    req->res.reason = reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

void ml_http_send_json(h2o_req_t *req, int status, json_t *body)
{
    size_t len;
    char *text = ml_json_dump(body, &len);
    json_decref(body);
    send_body(req, status, "application/json", text, len);
    free(text);
}

void ml_http_send_error(h2o_req_t *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    ml_json_set(o, "error", ml_json_str(msg));
    ml_http_send_json(req, status, o);
}

int ml_http_health_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    json_t *o = json_object();
    ml_json_set(o, "status", ml_json_str("ok"));
    ml_http_send_json(req, 200, o);
    return 0;
}

static const char builtin_page[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Microlog</title>"
    "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}</style></head><body>"
    "<h1>Microlog</h1><p>The web UI is not installed; these are the recorded runs "
    "(<a href=\"/api/v1/runs\">JSON</a>).</p><table id=\"runs\"><tr><th>run</th><th>status</th>"
    "<th>duration</th><th>samples</th><th>host</th><th>user</th><th></th></tr></table><script>"
    "fetch('/api/v1/runs').then(r=>r.json()).then(runs=>{const t=document.getElementById('runs');"
    "for(const r of runs){const tr=t.insertRow();const id=encodeURIComponent(r.id);"
    "for(const v of [r.id,r.status,r.duration.toFixed(1)+'s',r.samples,r.host,r.user])"
    "tr.insertCell().textContent=v;tr.insertCell().innerHTML="
    "'<a href=\"/api/v1/runs/'+id+'/flamegraph\">flame graph</a> '+"
    "'<a href=\"/api/v1/runs/'+id+'/log\">log</a>';}});</script></body></html>\n";

/* "/" when the UI directory is missing. */
static int builtin_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    h2o_iovec_t p = req->path_normalized;
    if (!h2o_memis(p.base, p.len, H2O_STRLIT("/")) &&
        !h2o_memis(p.base, p.len, H2O_STRLIT("/index.html"))) {
        ml_http_send_error(req, 404, "not found");
        return 0;
    }
    send_body(req, 200, "text/html; charset=utf-8", builtin_page, sizeof(builtin_page) - 1);
    return 0;
}

static void add_handler(ml_http *h, h2o_hostconf_t *host, const char *path,
                        int (*on_req)(h2o_handler_t *, h2o_req_t *))
{
    h2o_pathconf_t *pc = h2o_config_register_path(host, path, 0);
    if (strcmp(path, "/healthz") != 0)
        ml_http_auth_guard(h, pc); /* hosted mode: a token for all but /healthz */
    ml_http_handler *hd = (ml_http_handler *)h2o_create_handler(pc, sizeof(*hd));
    hd->super.on_req = on_req;
    hd->http = h;
}

/* Paths are matched in registration order, first match wins: "/" last. */
static void configure(ml_http *h)
{
    h2o_config_init(&h->config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    ml_http_auth_configure(h, &h->config, host);
    add_handler(h, host, "/healthz", ml_http_health_on_req);
    add_handler(h, host, "/metrics", ml_http_metrics_on_req);
    add_handler(h, host, "/api", ml_http_api_on_req);
    const char *ui = h->c->ui_dir;
    if (ui && ml_is_dir(ui)) {
        h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
        ml_http_auth_guard(h, pc);
        h2o_file_register(pc, ui, NULL, NULL, 0);
        ml_info("http: web UI from %s", ui);
    } else {
        add_handler(h, host, "/", builtin_on_req);
        ml_info("http: no web UI at %s; serving the built-in page", ui ? ui : "(none)");
    }
}

static void on_conn_closed(uv_handle_t *handle)
{
    ml_http_conn *cn = (ml_http_conn *)handle;
    ml_http *h = cn->http;
    if (cn->prev)
        cn->prev->next = cn->next;
    else
        h->conns = cn->next;
    if (cn->next)
        cn->next->prev = cn->prev;
    free(cn);
}

static void on_accept(uv_stream_t *listener, int status)
{
    ml_http *h = listener->data;
    if (status != 0)
        return;
    ml_http_conn *cn = ml_xcalloc(1, sizeof(*cn));
    cn->http = h;
    uv_tcp_init(listener->loop, &cn->tcp);
    if (uv_accept(listener, (uv_stream_t *)&cn->tcp) != 0) {
        uv_close((uv_handle_t *)&cn->tcp, (uv_close_cb)free);
        return;
    }
    cn->next = h->conns;
    if (h->conns)
        h->conns->prev = cn;
    h->conns = cn;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&cn->tcp, on_conn_closed);
    h2o_accept(&h->accept_ctx, sock);
}

int ml_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon, *hs = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        hs = s + 1;
        hl = (size_t)(close - hs);
        colon = close + 1;
    } else {
        if ((colon = strrchr(s, ':')) == NULL)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (hl == 0 || hl >= hostlen || colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
        return -EINVAL;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

/* host as a socket address; "localhost" is 127.0.0.1. */
static int resolve(const char *host, int port, struct sockaddr_storage *ss)
{
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -EINVAL;
}

static char *url_of(uv_tcp_t *tcp, bool tls)
{
    const char *scheme = tls ? "https" : "http";
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "127.0.0.1";
    int port = 0;
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            return ml_xasprintf("%s://[%s]:%d", scheme, ip, port);
        }
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return ml_xasprintf("%s://%s:%d", scheme, ip, port);
}

static void free_http(ml_http *h)
{
    if (h->accept_ctx.ssl_ctx)
        SSL_CTX_free(h->accept_ctx.ssl_ctx);
    free(h->url);
    free(h);
}

static void on_listener_closed_early(uv_handle_t *handle)
{
    ml_http *h = handle->data;
    h2o_context_dispose(&h->ctx);
    h2o_config_dispose(&h->config);
    free_http(h);
}

int ml_http_start(ml_collector *c, const char *hostport, bool allow_remote, ml_http **out)
{
    char host[256];
    int port, rv;
    struct sockaddr_storage ss;
    if (ml_parse_hostport(hostport, host, sizeof(host), &port) != 0 ||
        resolve(host, port, &ss) != 0) {
        ml_error("http: bad address \"%s\" (want IP:PORT, [IPv6]:PORT or localhost:PORT)",
                 hostport);
        return -EINVAL;
    }
    if (!allow_remote && !ml_host_is_loopback(host)) {
        ml_error("http: refusing to serve on %s without --allow-remote (standalone mode is "
                 "loopback only)",
                 host);
        return -EACCES;
    }
    ml_http *h = ml_xcalloc(1, sizeof(*h));
    h->c = c;
    configure(h);
    h2o_context_init(&h->ctx, c->loop, &h->config);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;
    if (c->hosted && c->hosted->tls_cert) { /* HTTPS (tls.h) */
        char err[400];
        if (ml_tls_http_ctx(c->hosted->tls_cert, c->hosted->tls_key, &h->accept_ctx.ssl_ctx, err,
                            sizeof(err)) != 0) {
            ml_error("http: %s", err);
            h2o_context_dispose(&h->ctx);
            h2o_config_dispose(&h->config);
            free_http(h);
            return -EINVAL;
        }
    }
    uv_tcp_init(c->loop, &h->listener);
    h->listener.data = h;
    if ((rv = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (rv = uv_listen((uv_stream_t *)&h->listener, 128, on_accept)) != 0) {
        ml_error("http: cannot listen on %s: %s", hostport, uv_strerror(rv));
        uv_close((uv_handle_t *)&h->listener, on_listener_closed_early);
        return rv;
    }
    h->url = url_of(&h->listener, h->accept_ctx.ssl_ctx != NULL);
    *out = h;
    return 0;
}

const char *ml_http_url(const ml_http *h)
{
    return h->url;
}

static void on_drain_closed(uv_handle_t *handle)
{
    ml_http *h = handle->data;
    ml_http_closed_cb cb = h->closed_cb;
    void *arg = h->closed_arg;
    free_http(h);
    if (cb)
        cb(arg);
}

/* Polls until every connection is gone (or the deadline passed), then
 * disposes of h2o. */
static void on_drain(uv_timer_t *t)
{
    ml_http *h = t->data;
    if (h->conns && uv_now(t->loop) < h->drain_deadline)
        return;
    if (h->conns) {
        /* h2o still owns them; disposing now would pull its context from
         * under them. Leave h2o allocated: the process is exiting. */
        ml_warn("http: connections still open after %d ms; not disposing h2o", DRAIN_TIMEOUT_MS);
    } else {
        h2o_context_dispose(&h->ctx);
        h2o_config_dispose(&h->config);
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, on_drain_closed);
}

void ml_http_close(ml_http *h, ml_http_closed_cb cb, void *arg)
{
    h->closed_cb = cb;
    h->closed_arg = arg;
    ml_http_live_close(h);
    uv_close((uv_handle_t *)&h->listener, NULL);
    /* Not h2o_context_request_shutdown(): in h2o 2.2 it arms an HTTP/2
     * graceful-shutdown timer that h2o_context_dispose() then asserts on.
     * Instead half-close every connection: h2o sees the end of input and
     * closes it through its own path, so its state stays consistent. */
    for (ml_http_conn *cn = h->conns; cn; cn = cn->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&cn->tcp, &fd) == 0)
            shutdown(fd, SHUT_RDWR);
    }
    uv_timer_init(h->c->loop, &h->drain);
    h->drain.data = h;
    h->drain_deadline = uv_now(h->c->loop) + DRAIN_TIMEOUT_MS;
    uv_timer_start(&h->drain, on_drain, 0, 10);
}
