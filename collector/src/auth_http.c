/*
 * HTTP authentication for hosted mode (auth_http.h).
 */
#include "auth_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include "hosted.h"
#include "http_internal.h"
#include "log.h"
#include "url.h"

static const char signin_page[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Microlog: sign in</title>"
    "<style>body{font-family:sans-serif;margin:4em auto;max-width:28em}"
    "input{width:100%;padding:6px;margin:6px 0}</style></head><body><h1>Microlog</h1>"
    "<p>This collector is shared: sign in with your token (MICROLOG_TOKEN).</p>"
    "<form method=\"post\" action=\"/signin\"><input type=\"password\" name=\"token\" "
    "autocomplete=\"current-password\" placeholder=\"token\" autofocus>"
    "<input type=\"submit\" value=\"Sign in\"></form></body></html>\n";

static ml_hosted *hosted_of(ml_collector *c)
{
    return c->hosted && c->hosted->has_tokens ? c->hosted : NULL;
}

/* The value of cookie name in the Cookie headers, or a zero iovec. */
static h2o_iovec_t find_cookie(h2o_req_t *req, const char *name)
{
    size_t nlen = strlen(name);
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        const char *p = v.base, *end = v.base + v.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *item_end = semi ? semi : end;
            if ((size_t)(item_end - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=')
                return h2o_iovec_init(p + nlen + 1, (size_t)(item_end - p - nlen - 1));
            p = item_end;
        }
    }
    return h2o_iovec_init(NULL, 0);
}

const ml_principal *ml_http_principal(ml_collector *c, h2o_req_t *req)
{
    ml_hosted *hs = hosted_of(c);
    if (hs == NULL)
        return NULL;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i != -1) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len > 7 && strncasecmp(v.base, "Bearer ", 7) == 0)
            return ml_auth_find(&hs->auth, v.base + 7, v.len - 7);
        return NULL;
    }
    h2o_iovec_t ck = find_cookie(req, ML_AUTH_COOKIE);
    return ck.base ? ml_auth_find(&hs->auth, ck.base, ck.len) : NULL;
}

bool ml_http_sees(ml_collector *c, h2o_req_t *req, const char *team)
{
    if (hosted_of(c) == NULL)
        return true;
    const ml_principal *p = ml_http_principal(c, req);
    return p != NULL && ml_principal_sees(p, team);
}

static bool is_read(h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
           h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

static bool wants_html(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    if (i == -1)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    return h2o_strstr(v.base, v.len, H2O_STRLIT("text/html")) != SIZE_MAX;
}

static void unauthorized(h2o_req_t *req, const char *why)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                   H2O_STRLIT("Bearer realm=\"microlog\""));
    if (wants_html(req) &&
        !h2o_memis(req->path.base, req->path.len > 8 ? 8 : req->path.len, H2O_STRLIT("/api/v1/"))) {
        ml_http_send_raw(req, 401, "text/html; charset=utf-8", signin_page, sizeof(signin_page) - 1,
                         NULL);
        return;
    }
    ml_http_send_error(req, 401, "%s", why);
}

static int guard_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    ml_http *h = ((ml_http_handler *)self)->http;
    ml_hosted *hs = hosted_of(h->c);
    if (hs == NULL)
        return -1;
    const ml_principal *p = ml_http_principal(h->c, req);
    if (p == NULL) {
        bool sent = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) != -1 ||
                    find_cookie(req, ML_AUTH_COOKIE).base != NULL;
        unauthorized(req, sent ? "invalid or revoked token"
                               : "authentication required: send Authorization: Bearer TOKEN");
        return 0;
    }
    if (!is_read(req) && p->role == ML_ROLE_READ) {
        ml_http_send_error(req, 403, "token of %s (team %s) is read-only", p->user, p->team);
        return 0;
    }
    return -1; /* on to the real handler */
}

void ml_http_auth_guard(ml_http *h, h2o_pathconf_t *pc)
{
    ml_http_handler *hd = (ml_http_handler *)h2o_create_handler(pc, sizeof(*hd));
    hd->super.on_req = guard_on_req;
    hd->http = h;
}

static void set_cookie(h2o_req_t *req, const char *value, bool clear)
{
    char *v = h2o_mem_alloc_pool(&req->pool, strlen(value) + 128);
    int n = sprintf(v, "%s=%s; Path=/; Secure; HttpOnly; SameSite=Strict%s", ML_AUTH_COOKIE, value,
                    clear ? "; Max-Age=0" : "");
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, v, (size_t)n);
}

static void redirect_home(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, H2O_STRLIT("/"));
    req->res.status = 303;
    req->res.reason = "See Other";
    h2o_send_inline(req, "", 0);
}

/* GET: the form. POST token=...: checks it, sets the cookie, back to "/". */
static int signin_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    ml_http *h = ((ml_http_handler *)self)->http;
    ml_hosted *hs = hosted_of(h->c);
    if (hs == NULL) {
        redirect_home(req); /* standalone: nothing to sign in to */
        return 0;
    }
    if (is_read(req)) {
        ml_http_send_raw(req, 200, "text/html; charset=utf-8", signin_page, sizeof(signin_page) - 1,
                         NULL);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        ml_http_send_error(req, 405, "use GET or POST");
        return 0;
    }
    char *token =
        ml_url_query_get(req->entity.base ? req->entity.base : "", req->entity.len, "token");
    const ml_principal *p = token ? ml_auth_find(&hs->auth, token, strlen(token)) : NULL;
    if (p == NULL) {
        free(token);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer realm=\"microlog\""));
        ml_http_send_raw(req, 401, "text/html; charset=utf-8", signin_page, sizeof(signin_page) - 1,
                         NULL);
        return 0;
    }
    ml_info("http: %s (team %s) signed in", p->user, p->team);
    set_cookie(req, p->token, false);
    free(token);
    redirect_home(req);
    return 0;
}

static int signout_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    set_cookie(req, "", true);
    redirect_home(req);
    return 0;
}

void ml_http_auth_configure(ml_http *h, h2o_globalconf_t *config, h2o_hostconf_t *host)
{
    config->max_request_entity_size = ML_HTTP_MAX_BODY;
    static const struct {
        const char *path;
        int (*on_req)(h2o_handler_t *, h2o_req_t *);
    } routes[] = {{"/signin", signin_on_req}, {"/signout", signout_on_req}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        h2o_pathconf_t *pc = h2o_config_register_path(host, routes[i].path, 0);
        ml_http_handler *hd = (ml_http_handler *)h2o_create_handler(pc, sizeof(*hd));
        hd->super.on_req = routes[i].on_req;
        hd->http = h;
    }
}
