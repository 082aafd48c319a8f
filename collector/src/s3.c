#include "s3.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "fsutil.h"
#include "log.h"
#include "mem.h"
#include "sigv4.h"
#include "xml.h"

#define S3_BACKOFF_MS 200
#define S3_CONNECT_TIMEOUT_MS 3000
#define S3_TIMEOUT_MS 120000

/* The whole-request timeout: S3_TIMEOUT_MS, or MICROLOG_S3_TIMEOUT_MS when
 * set to a positive count (the fault tests stall S3 for a few seconds). */
static long s3_timeout_ms(void)
{
    const char *v = getenv("MICROLOG_S3_TIMEOUT_MS");
    long ms = v && v[0] ? strtol(v, NULL, 10) : 0;
    return ms > 0 ? ms : (long)S3_TIMEOUT_MS;
}
/* Responses bigger than this are an error (recordings are far smaller). */
#define S3_BODY_MAX ((size_t)1 << 31)

typedef struct s3_req s3_req;
/* Internal completion: runs once per request, then the request is freed. */
typedef void (*s3_done_fn)(s3_req *q, int rv);

struct s3_req {
    ml_s3 *s;
    CURL *easy;
    char *method, *key, *query; /* query already encoded, "" for none */
    char *body;                 /* owned request body */
    size_t body_len, body_off;
    char *resp;
    size_t resp_len, resp_cap;
    char etag[256];
    struct curl_slist *hdrs;
    int attempt;
    uv_timer_t retry;
    s3_done_fn done;
    ml_s3_cb cb;
    void *arg;
    void *ctx; /* multipart / list state, owned by done */
    s3_req *prev, *next;
};

struct ml_s3 {
    uv_loop_t *loop;
    ml_s3_config cfg;
    char *host;     /* for the signature: "host[:port]" */
    char *base_url; /* scheme://host[:port][/bucket] */
    CURLM *multi;
    uv_timer_t timer;
    s3_req *reqs;           /* every request not yet finished */
    struct sock_ctx *socks; /* every socket curl asked us to watch, until REMOVE */
    int open_handles;
    bool closing;
    void (*closed)(void *arg);
    void *closed_arg;
    ml_s3_stats stats;
};

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    ml_s3 *s;
    struct sock_ctx *prev, *next; /* ml_s3.socks */
} sock_ctx;

static char *dup_or_null(const char *s)
{
    return s ? ml_xstrdup(s) : NULL;
}

/* ---- configuration ---- */

static char *ini_value(const char *path, const char *profile, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char line[1024], *found = NULL;
    bool in = false;
    while (fgets(line, sizeof(line), f) && found == NULL) {
        char *p = line + strspn(line, " \t");
        p[strcspn(p, "\r\n")] = '\0';
        if (*p == '[') {
            char *end = strchr(p, ']');
            in = end && (size_t)(end - p - 1) == strlen(profile) &&
                 strncmp(p + 1, profile, strlen(profile)) == 0;
        } else if (in && strncmp(p, key, strlen(key)) == 0) {
            char *q = p + strlen(key);
            q += strspn(q, " \t");
            if (*q++ != '=')
                continue;
            q += strspn(q, " \t");
            size_t n = strlen(q);
            while (n && (q[n - 1] == ' ' || q[n - 1] == '\t'))
                q[--n] = '\0';
            found = ml_xstrdup(q);
        }
    }
    fclose(f);
    return found;
}

static int config_error(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -EINVAL;
}

int ml_s3_config_from_env(ml_s3_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    const char *root = getenv("MICROLOG_S3_ROOT");
    if (root == NULL || root[0] == '\0')
        return 1;
    if (strncmp(root, "s3://", 5) != 0 || root[5] == '\0' || root[5] == '/')
        return config_error(err, errlen, "MICROLOG_S3_ROOT must look like s3://bucket/prefix");
    const char *b = root + 5, *slash = strchr(b, '/');
    cfg->bucket = slash ? ml_xasprintf("%.*s", (int)(slash - b), b) : ml_xstrdup(b);
    const char *pre = slash ? slash + 1 : "";
    size_t plen = strlen(pre);
    while (plen && pre[plen - 1] == '/')
        plen--;
    cfg->prefix = ml_xasprintf("%.*s", (int)plen, pre);
    const char *region = getenv("MICROLOG_S3_REGION");
    if (region == NULL || !region[0])
        region = getenv("AWS_REGION");
    cfg->region = ml_xstrdup(region && region[0] ? region : "us-east-1");
    const char *ep = getenv("MICROLOG_S3_ENDPOINT");
    if (ep && ep[0]) {
        if (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0) {
            ml_s3_config_dispose(cfg);
            return config_error(err, errlen, "MICROLOG_S3_ENDPOINT must be an http(s):// URL");
        }
        size_t n = strlen(ep);
        while (n && ep[n - 1] == '/')
            n--;
        cfg->endpoint = ml_xasprintf("%.*s", (int)n, ep);
    }
    const char *mp = getenv("MICROLOG_S3_MULTIPART_BYTES");
    if (mp && mp[0]) {
        char *end;
        unsigned long long v = strtoull(mp, &end, 10);
        /* S3 parts are at least 5 MiB except the last; S3-compatible test
         * servers accept smaller ones, so only 0 is refused. */
        if (*end || v == 0) {
            ml_s3_config_dispose(cfg);
            return config_error(err, errlen, "MICROLOG_S3_MULTIPART_BYTES must be a byte count");
        }
        cfg->multipart_threshold = (size_t)v;
    }
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (ak && ak[0] && sk && sk[0]) {
        cfg->access_key = ml_xstrdup(ak);
        cfg->secret_key = ml_xstrdup(sk);
        const char *tok = getenv("AWS_SESSION_TOKEN");
        cfg->session_token = tok && tok[0] ? ml_xstrdup(tok) : NULL;
    } else {
        const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
        const char *home = getenv("HOME");
        char *path = file && file[0] ? ml_xstrdup(file)
                                     : ml_xasprintf("%s/.aws/credentials", home ? home : "");
        const char *profile = getenv("AWS_PROFILE");
        if (profile == NULL || !profile[0])
            profile = "default";
        cfg->access_key = ini_value(path, profile, "aws_access_key_id");
        cfg->secret_key = ini_value(path, profile, "aws_secret_access_key");
        cfg->session_token = ini_value(path, profile, "aws_session_token");
        free(path);
    }
    if (cfg->access_key == NULL || cfg->secret_key == NULL) {
        ml_s3_config_dispose(cfg);
        return config_error(err, errlen,
                            "MICROLOG_S3_ROOT is set but no AWS credentials were found "
                            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials)");
    }
    return 0;
}

void ml_s3_config_dispose(ml_s3_config *cfg)
{
    free(cfg->bucket);
    free(cfg->prefix);
    free(cfg->region);
    free(cfg->endpoint);
    free(cfg->access_key);
    free(cfg->secret_key);
    free(cfg->session_token);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- curl multi on the uv loop ---- */

static void check_done(ml_s3 *s);

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *sc = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(sc->s->multi, sc->fd, flags, &running);
    check_done(sc->s);
}

static void on_handle_closed(uv_handle_t *h)
{
    ml_s3 *s = h->data == NULL ? NULL : ((sock_ctx *)h->data)->s;
    free(h->data);
    if (s && --s->open_handles == 0 && s->closing && s->closed)
        s->closed(s->closed_arg);
}

/* Stops watching sc's socket and closes its handle (freed in the close
 * callback). */
static void sock_close(ml_s3 *s, sock_ctx *sc)
{
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        s->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    uv_poll_stop(&sc->poll);
    uv_close((uv_handle_t *)&sc->poll, on_handle_closed);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    ml_s3 *s = userp;
    sock_ctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            sock_close(s, sc);
            if (s->multi)
                curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    if (sc == NULL) {
        sc = ml_xcalloc(1, sizeof(*sc));
        sc->fd = fd;
        sc->s = s;
        if (uv_poll_init_socket(s->loop, &sc->poll, fd) != 0) {
            free(sc);
            return -1;
        }
        sc->poll.data = sc;
        s->open_handles++;
        sc->next = s->socks;
        if (s->socks)
            s->socks->prev = sc;
        s->socks = sc;
        curl_multi_assign(s->multi, fd, sc);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&sc->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    ml_s3 *s = t->data;
    int running;
    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(s);
}

static int on_timer(CURLM *multi, long ms, void *userp)
{
    (void)multi;
    ml_s3 *s = userp;
    if (ms < 0)
        uv_timer_stop(&s->timer);
    else
        uv_timer_start(&s->timer, on_timeout, (uint64_t)ms, 0);
    return 0;
}

/* ---- requests ---- */

static void req_start(s3_req *q);

static void on_retry_closed(uv_handle_t *h)
{
    s3_req *q = h->data;
    ml_s3 *s = q->s;
    free(q->method);
    free(q->key);
    free(q->query);
    free(q->body);
    free(q->resp);
    free(q);
    if (--s->open_handles == 0 && s->closing && s->closed)
        s->closed(s->closed_arg);
}

/* Finishes q: unlinks it, calls its completion, frees it. */
static void req_finish(s3_req *q, int rv)
{
    ml_s3 *s = q->s;
    if (q->prev)
        q->prev->next = q->next;
    else
        s->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (q->easy) {
        curl_multi_remove_handle(s->multi, q->easy);
        curl_easy_cleanup(q->easy);
        q->easy = NULL;
    }
    curl_slist_free_all(q->hdrs);
    q->hdrs = NULL;
    uv_timer_stop(&q->retry);
    if (rv != 0 && rv != -ENOENT && rv != -ECANCELED)
        s->stats.failures++;
    q->done(q, rv);
    uv_close((uv_handle_t *)&q->retry, on_retry_closed);
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    s3_req *q = userp;
    size_t len = size * n;
    if (q->resp_len + len > S3_BODY_MAX)
        return 0;
    ml_xgrow((void **)&q->resp, &q->resp_cap, q->resp_len + len + 1, 1);
    memcpy(q->resp + q->resp_len, data, len);
    q->resp_len += len;
    q->resp[q->resp_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    s3_req *q = userp;
    size_t len = size * n;
    if (len > 5 && strncasecmp(data, "etag:", 5) == 0) {
        const char *v = data + 5;
        size_t vl = len - 5;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        snprintf(q->etag, sizeof(q->etag), "%.*s", (int)vl, v);
    }
    return len;
}

static size_t on_read(char *out, size_t size, size_t n, void *userp)
{
    s3_req *q = userp;
    size_t len = size * n, left = q->body_len - q->body_off;
    if (len > left)
        len = left;
    memcpy(out, q->body + q->body_off, len);
    q->body_off += len;
    return len;
}

static void on_retry_timer(uv_timer_t *t)
{
    req_start(t->data);
}

/* Whether an answer is worth another attempt. */
static bool retryable(CURLcode cc, long status)
{
    if (cc != CURLE_OK)
        return cc != CURLE_WRITE_ERROR;
    return status >= 500 || status == 429 || status == 0;
}

static int err_from_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    default:
        return -EIO;
    }
}

static void req_completed(s3_req *q, CURLcode cc)
{
    ml_s3 *s = q->s;
    long status = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(s->multi, q->easy);
    curl_easy_cleanup(q->easy);
    q->easy = NULL;
    curl_slist_free_all(q->hdrs);
    q->hdrs = NULL;
    /* A 200 whose body is an <Error> (CompleteMultipartUpload may do
     * that) is a server error too. */
    bool error_body =
        status == 200 && q->resp && strstr(q->resp, "<Error>") && strcmp(q->method, "GET") != 0;
    if (cc == CURLE_OK && status >= 200 && status < 300 && !error_body) {
        s->stats.bytes_down += q->resp_len;
        s->stats.bytes_up += q->body_len;
        req_finish(q, 0);
        return;
    }
    if (cc == CURLE_OK && status == 404) {
        req_finish(q, -ENOENT);
        return;
    }
    if ((retryable(cc, status) || error_body) && q->attempt + 1 < ML_S3_ATTEMPTS && !s->closing) {
        uint64_t delay = (uint64_t)S3_BACKOFF_MS << q->attempt;
        q->attempt++;
        s->stats.retries++;
        ml_debug("s3: %s %s: %s (HTTP %ld); retry %d in %llu ms", q->method, q->key,
                 curl_easy_strerror(cc), status, q->attempt, (unsigned long long)delay);
        uv_timer_start(&q->retry, on_retry_timer, delay, 0);
        return;
    }
    ml_warn("s3: %s %s failed: %s (HTTP %ld) %.200s", q->method, q->key,
            cc != CURLE_OK ? curl_easy_strerror(cc) : "error", status, q->resp ? q->resp : "");
    req_finish(q, cc != CURLE_OK ? err_from_curl(cc) : -EIO);
}

static void check_done(ml_s3 *s)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        s3_req *q;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        req_completed(q, m->data.result);
    }
}

static void amz_now(char out[17])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static void add_header(s3_req *q, const char *name, const char *value)
{
    char *h = ml_xasprintf("%s: %s", name, value);
    q->hdrs = curl_slist_append(q->hdrs, h);
    free(h);
}

/* Builds, signs and queues one attempt. */
static void req_start(s3_req *q)
{
    ml_s3 *s = q->s;
    q->resp_len = 0;
    q->body_off = 0;
    q->etag[0] = '\0';
    s->stats.requests++;
    char *ekey = ml_uri_encode(q->key, 1);
    char *path =
        s->cfg.endpoint ? ml_xasprintf("/%s/%s", s->cfg.bucket, ekey) : ml_xasprintf("/%s", ekey);
    /* The path in the URL is exactly the one signed ("/bucket/" for a
     * bucket-level request such as a listing). */
    char *url = ml_xasprintf("%s/%s%s", s->base_url, ekey, q->query[0] ? "?" : "");
    char *full = ml_xasprintf("%s%s", url, q->query);
    char date[17], hash[ML_SHA256_HEX_LEN + 1];
    amz_now(date);
    ml_sha256_hex(q->body ? q->body : "", q->body_len, hash);
    ml_sigv4_header h[4] = {{"host", s->host},
                            {"x-amz-content-sha256", hash},
                            {"x-amz-date", date},
                            {"x-amz-security-token", s->cfg.session_token}};
    ml_sigv4_request sr = {.method = q->method,
                           .uri = path,
                           .query = q->query,
                           .headers = h,
                           .nheaders = s->cfg.session_token ? 4 : 3,
                           .payload_sha256 = hash,
                           .amz_date = date,
                           .region = s->cfg.region,
                           .service = "s3",
                           .access_key = s->cfg.access_key,
                           .secret_key = s->cfg.secret_key};
    char *auth = ml_sigv4_authorization(&sr);
    add_header(q, "Authorization", auth);
    add_header(q, "x-amz-content-sha256", hash);
    add_header(q, "x-amz-date", date);
    if (s->cfg.session_token)
        add_header(q, "x-amz-security-token", s->cfg.session_token);
    q->hdrs = curl_slist_append(q->hdrs, "Expect:");
    q->hdrs = curl_slist_append(q->hdrs, "Content-Type:");
    free(auth);

    CURL *e = curl_easy_init();
    if (e == NULL)
        ml_oom(0);
    q->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, full);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)S3_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s3_timeout_ms());
    if (strcmp(q->method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, q);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
    } else if (strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    } else if (strcmp(q->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
    }
    curl_multi_add_handle(s->multi, e);
    free(ekey);
    free(path);
    free(url);
    free(full);
}

static s3_req *req_new(ml_s3 *s, const char *method, const char *key, const char *query,
                       s3_done_fn done, ml_s3_cb cb, void *arg)
{
    s3_req *q = ml_xcalloc(1, sizeof(*q));
    q->s = s;
    q->method = ml_xstrdup(method);
    q->key = ml_xstrdup(key);
    q->query = ml_xstrdup(query ? query : "");
    q->done = done;
    q->cb = cb;
    q->arg = arg;
    uv_timer_init(s->loop, &q->retry);
    q->retry.data = q;
    s->open_handles++;
    q->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = q;
    s->reqs = q;
    return q;
}

static void done_plain(s3_req *q, int rv)
{
    if (q->cb)
        q->cb(q->arg, rv, q->resp ? q->resp : "", q->resp_len);
}

static int submit(ml_s3 *s, const char *method, const char *key, const char *query, char *body,
                  size_t len, s3_done_fn done, ml_s3_cb cb, void *arg, void *ctx)
{
    if (s->closing) {
        free(body);
        return -ECANCELED;
    }
    s3_req *q = req_new(s, method, key, query, done, cb, arg);
    q->body = body;
    q->body_len = len;
    q->ctx = ctx;
    req_start(q);
    return 0;
}

/* ---- public operations ---- */

int ml_s3_new(uv_loop_t *loop, const ml_s3_config *cfg, ml_s3 **out)
{
    static int global;
    if (!global++)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    ml_s3 *s = ml_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg.bucket = ml_xstrdup(cfg->bucket);
    s->cfg.prefix = ml_xstrdup(cfg->prefix ? cfg->prefix : "");
    s->cfg.region = ml_xstrdup(cfg->region ? cfg->region : "us-east-1");
    s->cfg.endpoint = dup_or_null(cfg->endpoint);
    s->cfg.access_key = ml_xstrdup(cfg->access_key);
    s->cfg.secret_key = ml_xstrdup(cfg->secret_key);
    s->cfg.session_token = dup_or_null(cfg->session_token);
    s->cfg.multipart_threshold =
        cfg->multipart_threshold ? cfg->multipart_threshold : ML_S3_MULTIPART_DEFAULT;
    if (s->cfg.endpoint) {
        const char *h = strstr(s->cfg.endpoint, "://") + 3;
        s->host = ml_xasprintf("%.*s", (int)strcspn(h, "/"), h);
        s->base_url = ml_xasprintf("%s/%s", s->cfg.endpoint, s->cfg.bucket);
    } else {
        s->host = ml_xasprintf("%s.s3.%s.amazonaws.com", s->cfg.bucket, s->cfg.region);
        s->base_url = ml_xasprintf("https://%s", s->host);
    }
    s->multi = curl_multi_init();
    if (s->multi == NULL)
        ml_oom(0);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 1;
    *out = s;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    ml_s3 *s = h->data;
    if (--s->open_handles == 0 && s->closed)
        s->closed(s->closed_arg);
}

static void free_client(void *arg)
{
    ml_s3 *s = arg;
    void (*closed)(void *) = s->closed_arg ? NULL : NULL;
    (void)closed;
    ml_s3_config_dispose(&s->cfg);
    free(s->host);
    free(s->base_url);
    free(s);
}

typedef struct close_ctx {
    void (*closed)(void *arg);
    void *arg;
    ml_s3 *s;
} close_ctx;

static void on_all_closed(void *arg)
{
    close_ctx *cc = arg;
    free_client(cc->s);
    if (cc->closed)
        cc->closed(cc->arg);
    free(cc);
}

void ml_s3_close(ml_s3 *s, void (*closed)(void *arg), void *arg)
{
    s->closing = true;
    while (s->reqs)
        req_finish(s->reqs, -ECANCELED);
    curl_multi_cleanup(s->multi);
    s->multi = NULL;
    /* A socket curl never reported removed (a cached connection closed
     * inside the cleanup, say) would keep its poll handle, and with it
     * the collector's shutdown, open forever. */
    while (s->socks)
        sock_close(s, s->socks);
    close_ctx *cc = ml_xcalloc(1, sizeof(*cc));
    cc->closed = closed;
    cc->arg = arg;
    cc->s = s;
    s->closed = on_all_closed;
    s->closed_arg = cc;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

char *ml_s3_key(const ml_s3 *s, const char *name)
{
    return s->cfg.prefix[0] ? ml_xasprintf("%s/%s", s->cfg.prefix, name) : ml_xstrdup(name);
}

const ml_s3_stats *ml_s3_get_stats(const ml_s3 *s)
{
    return &s->stats;
}

int ml_s3_put(ml_s3 *s, const char *key, const void *data, size_t len, ml_s3_cb cb, void *arg)
{
    char *copy = ml_xmalloc(len + 1);
    memcpy(copy, data, len);
    return submit(s, "PUT", key, "", copy, len, done_plain, cb, arg, NULL);
}

int ml_s3_get(ml_s3 *s, const char *key, ml_s3_cb cb, void *arg)
{
    return submit(s, "GET", key, "", NULL, 0, done_plain, cb, arg, NULL);
}

static void done_delete(s3_req *q, int rv)
{
    if (q->cb)
        q->cb(q->arg, rv == -ENOENT ? 0 : rv, "", 0);
}

int ml_s3_delete(ml_s3 *s, const char *key, ml_s3_cb cb, void *arg)
{
    return submit(s, "DELETE", key, "", NULL, 0, done_delete, cb, arg, NULL);
}

/* ---- multipart upload ---- */

typedef struct multipart {
    char *key;
    char *data; /* the whole file */
    size_t len, part_size, nparts, next;
    char *upload_id;
    char **etags;
    ml_s3_cb cb;
    void *arg;
} multipart;

static void mp_free(multipart *m)
{
    free(m->key);
    free(m->data);
    free(m->upload_id);
    for (size_t i = 0; i < m->nparts; i++)
        free(m->etags[i]);
    free(m->etags);
    free(m);
}

static void mp_fail(ml_s3 *s, multipart *m, int rv)
{
    if (m->upload_id && !s->closing) {
        /* Best effort: an abandoned upload's parts cost storage. */
        char *eid = ml_uri_encode(m->upload_id, 0);
        char *query = ml_xasprintf("uploadId=%s", eid);
        submit(s, "DELETE", m->key, query, NULL, 0, done_plain, NULL, NULL, NULL);
        free(eid);
        free(query);
    }
    m->cb(m->arg, rv, "", 0);
    mp_free(m);
}

static void mp_next(ml_s3 *s, multipart *m);

static void mp_part_done(s3_req *q, int rv)
{
    multipart *m = q->ctx;
    if (rv != 0 || q->etag[0] == '\0') {
        mp_fail(q->s, m, rv ? rv : -EIO);
        return;
    }
    m->etags[m->next++] = ml_xstrdup(q->etag);
    mp_next(q->s, m);
}

static void mp_complete_done(s3_req *q, int rv)
{
    multipart *m = q->ctx;
    if (rv != 0) {
        mp_fail(q->s, m, rv);
        return;
    }
    m->cb(m->arg, 0, "", 0);
    mp_free(m);
}

static void mp_next(ml_s3 *s, multipart *m)
{
    char *eid = ml_uri_encode(m->upload_id, 0);
    int rv;
    if (m->next < m->nparts) {
        size_t off = m->next * m->part_size;
        size_t len = m->len - off < m->part_size ? m->len - off : m->part_size;
        char *body = ml_xmalloc(len + 1);
        memcpy(body, m->data + off, len);
        char *query = ml_xasprintf("partNumber=%zu&uploadId=%s", m->next + 1, eid);
        rv = submit(s, "PUT", m->key, query, body, len, mp_part_done, NULL, NULL, m);
        free(query);
    } else {
        size_t cap = 128 + m->nparts * 400, len = 0;
        char *body = ml_xmalloc(cap);
        len += (size_t)snprintf(body + len, cap - len, "<CompleteMultipartUpload>");
        for (size_t i = 0; i < m->nparts; i++)
            len += (size_t)snprintf(body + len, cap - len,
                                    "<Part><PartNumber>%zu</PartNumber><ETag>%.300s</ETag></Part>",
                                    i + 1, m->etags[i]);
        len += (size_t)snprintf(body + len, cap - len, "</CompleteMultipartUpload>");
        char *query = ml_xasprintf("uploadId=%s", eid);
        rv = submit(s, "POST", m->key, query, body, len, mp_complete_done, NULL, NULL, m);
        free(query);
    }
    free(eid);
    if (rv != 0)
        mp_fail(s, m, rv);
}

static void mp_id_text(void *arg, const char *parent, const char *name, const char *text)
{
    (void)parent;
    multipart *m = arg;
    if (strcmp(name, "UploadId") == 0 && m->upload_id == NULL && text[0])
        m->upload_id = ml_xstrdup(text);
}

static void mp_created(s3_req *q, int rv)
{
    multipart *m = q->ctx;
    if (rv == 0 && (ml_xml_parse(q->resp ? q->resp : "", q->resp_len, mp_id_text, m) != 0 ||
                    m->upload_id == NULL))
        rv = -EIO;
    if (rv != 0) {
        mp_fail(q->s, m, rv);
        return;
    }
    mp_next(q->s, m);
}

int ml_s3_put_file(ml_s3 *s, const char *key, const char *path, ml_s3_cb cb, void *arg)
{
    char *data;
    size_t len;
    int rv = ml_read_file(path, S3_BODY_MAX, &data, &len);
    if (rv != 0)
        return rv;
    if (len <= s->cfg.multipart_threshold)
        return submit(s, "PUT", key, "", data, len, done_plain, cb, arg, NULL);
    multipart *m = ml_xcalloc(1, sizeof(*m));
    m->key = ml_xstrdup(key);
    m->data = data;
    m->len = len;
    m->part_size = s->cfg.multipart_threshold;
    m->nparts = (len + m->part_size - 1) / m->part_size;
    m->etags = ml_xcalloc(m->nparts, sizeof(char *));
    m->cb = cb;
    m->arg = arg;
    rv = submit(s, "POST", key, "uploads", NULL, 0, mp_created, NULL, NULL, m);
    if (rv != 0)
        mp_free(m);
    return rv;
}

/* ---- listing ---- */

typedef struct listing {
    char *prefix;
    char **keys;
    size_t n, cap;
    char *token;
    bool truncated;
    ml_s3_list_cb cb;
    void *arg;
} listing;

static void list_free(listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    free(l->prefix);
    free(l->token);
    free(l);
}

static void list_text(void *arg, const char *parent, const char *name, const char *text)
{
    listing *l = arg;
    if (strcmp(name, "Key") == 0 && strcmp(parent, "Contents") == 0) {
        ml_xgrow((void **)&l->keys, &l->cap, l->n + 1, sizeof(char *));
        l->keys[l->n++] = ml_xstrdup(text);
    } else if (strcmp(name, "NextContinuationToken") == 0) {
        free(l->token);
        l->token = ml_xstrdup(text);
    } else if (strcmp(name, "IsTruncated") == 0) {
        l->truncated = strcmp(text, "true") == 0;
    }
}

static int list_page(ml_s3 *s, listing *l);

static void list_done(s3_req *q, int rv)
{
    listing *l = q->ctx;
    if (rv == 0) {
        free(l->token);
        l->token = NULL;
        l->truncated = false;
        if (ml_xml_parse(q->resp ? q->resp : "", q->resp_len, list_text, l) != 0)
            rv = -EIO;
    }
    if (rv == 0 && l->truncated && l->token && (rv = list_page(q->s, l)) == 0)
        return;
    l->cb(l->arg, rv, l->keys, l->n);
    list_free(l);
}

static int list_page(ml_s3 *s, listing *l)
{
    char *ep = ml_uri_encode(l->prefix, 0);
    char *et = l->token ? ml_uri_encode(l->token, 0) : NULL;
    char *query = et ? ml_xasprintf("continuation-token=%s&list-type=2&prefix=%s", et, ep)
                     : ml_xasprintf("list-type=2&prefix=%s", ep);
    int rv = submit(s, "GET", "", query, NULL, 0, list_done, NULL, NULL, l);
    free(ep);
    free(et);
    free(query);
    return rv;
}

int ml_s3_list(ml_s3 *s, const char *prefix, ml_s3_list_cb cb, void *arg)
{
    listing *l = ml_xcalloc(1, sizeof(*l));
    l->prefix = ml_xstrdup(prefix);
    l->cb = cb;
    l->arg = arg;
    int rv = list_page(s, l);
    if (rv != 0)
        list_free(l);
    return rv;
}
