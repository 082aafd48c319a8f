/*
 * Discovery: the user sets one variable (MICROLOG_SERVER, the collector's
 * HTTP base URL) and the client asks GET <server>/api/v1/ingest for the nng
 * address, answered as {"ingest": "tcp://127.0.0.1:PORT", "protocol": 1}.
 *
 * Runs on the sender thread. The easy handle is driven through a multi
 * handle in short polls so that ml_client_close can cut a hung request short
 * (should_stop) instead of waiting out the whole timeout. libcurl is loaded
 * here, at the first discovery (curl_dl.c), not when the library is loaded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "curl_dl.h"
#include "internal.h"

#define BODY_MAX (64u << 10)
#define POLL_MS 10

typedef struct body {
    char *data;
    size_t len;
} body;

static size_t on_body(char *ptr, size_t size, size_t n, void *arg)
{
    body *b = arg;
    size_t len = size * n;
    if (b->len + len > BODY_MAX)
        return 0; /* not a discovery answer: makes curl fail with a write error */
    char *p = realloc(b->data, b->len + len + 1);
    if (p == NULL)
        return 0;
    memcpy(p + b->len, ptr, len);
    b->len += len;
    p[b->len] = '\0';
    b->data = p;
    return len;
}

/* Checks server and builds "<server>/api/v1/ingest" into *url (malloc'd). */
static int ingest_url(const ml__curl_api *cu, const char *server, char **url, char *err,
                      size_t errlen)
{
    CURLU *u = cu->url();
    char *scheme = NULL, *host = NULL;
    int rv = -EINVAL;

    if (u == NULL)
        return -ENOMEM;
    if (cu->url_set(u, CURLUPART_URL, server, 0) != CURLUE_OK ||
        cu->url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        cu->url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        snprintf(err, errlen,
                 "malformed server URL '%s': expected http://HOST:PORT or https://HOST", server);
        goto done;
    }
    size_t len = strlen(server);
    while (len > 0 && server[len - 1] == '/')
        len--;
    if ((*url = malloc(len + sizeof("/api/v1/ingest"))) == NULL) {
        rv = -ENOMEM;
        goto done;
    }
    memcpy(*url, server, len);
    strcpy(*url + len, "/api/v1/ingest");
    rv = 0;
done:
    cu->free(scheme);
    cu->free(host);
    cu->url_cleanup(u);
    return rv;
}

/* Parses the JSON answer into *ingest. */
static int parse_answer(const body *b, char **ingest, char *err, size_t errlen, bool *permanent)
{
    json_error_t jerr;
    json_t *root = json_loadb(b->data ? b->data : "", b->len, 0, &jerr);
    const char *s = root ? json_string_value(json_object_get(root, "ingest")) : NULL;
    json_t *proto = root ? json_object_get(root, "protocol") : NULL;
    int rv = -EBADMSG;

    *permanent = true;
    if (s == NULL || *s == '\0') {
        snprintf(err, errlen, "the server's /api/v1/ingest answer has no ingest address");
    } else if (proto != NULL && json_integer_value(proto) != ML_PROTOCOL_VERSION) {
        snprintf(err, errlen, "the collector speaks protocol %lld, this client speaks %d",
                 (long long)json_integer_value(proto), ML_PROTOCOL_VERSION);
        rv = -EPROTONOSUPPORT;
    } else if ((*ingest = strdup(s)) == NULL) {
        *permanent = false;
        rv = -ENOMEM;
    } else {
        rv = 0;
    }
    json_decref(root);
    return rv;
}

static CURL *easy_new(const ml__curl_api *cu, const char *url, const char *token,
                      const char *ca_file, uint32_t timeout_ms, body *b, char *errbuf,
                      struct curl_slist **headers)
{
    CURL *h = cu->easy_init();
    if (h == NULL)
        return NULL;
    cu->easy_setopt(h, CURLOPT_URL, url);
    cu->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    cu->easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    cu->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    cu->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    cu->easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    cu->easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    cu->easy_setopt(h, CURLOPT_MAXREDIRS, 3L);
    /* a proxy from the environment must not capture a local collector */
    cu->easy_setopt(h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    cu->easy_setopt(h, CURLOPT_USERAGENT, "libmicrolog/" ML_CLIENT_VERSION);
    cu->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    cu->easy_setopt(h, CURLOPT_WRITEDATA, b);
    cu->easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    /* https: curl verifies the certificate and host name by default; a
     * private CA comes from MICROLOG_CA_FILE. */
    if (ca_file != NULL && *ca_file != '\0')
        cu->easy_setopt(h, CURLOPT_CAINFO, ca_file);
    if (token != NULL && *token != '\0') {
        char auth[1024];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        *headers = cu->slist_append(NULL, auth);
        cu->easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
    }
    return h;
}

/* Runs h to completion in short polls. Returns the CURLcode, or -1 when
 * should_stop asked to give up. */
static int perform(const ml__curl_api *cu, CURL *h, bool (*should_stop)(void *), void *arg)
{
    CURLM *m = cu->multi_init();
    int running = 1, result = CURLE_OUT_OF_MEMORY;
    if (m == NULL)
        return result;
    if (cu->multi_add_handle(m, h) != CURLM_OK)
        goto done;
    while (running) {
        if (cu->multi_perform(m, &running) != CURLM_OK)
            break;
        if (!running)
            break;
        if (should_stop && should_stop(arg)) {
            result = -1;
            goto remove;
        }
        cu->multi_poll(m, NULL, 0, POLL_MS, NULL);
    }
    int left;
    CURLMsg *msg;
    while ((msg = cu->multi_info_read(m, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            result = msg->data.result;
remove:
    cu->multi_remove_handle(m, h);
done:
    cu->multi_cleanup(m);
    return result;
}

static int status_error(long status, const char *url, char *err, size_t errlen, bool *permanent);

/* Turns a finished transfer into 0 or -errno with a reason. */
static int check_transfer(const ml__curl_api *cu, CURL *h, int code, const char *url,
                          const char *errbuf, char *err, size_t errlen, bool *permanent)
{
    long os_errno = 0, status = 0;
    if (code == -1) {
        snprintf(err, errlen, "no answer from %s before the run ended", url);
        return -ETIMEDOUT;
    }
    if (code != CURLE_OK) {
        cu->easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
        int rv = ml__err_from_curl(code, os_errno);
        /* curl's own text is clearer than errno for TLS and protocol errors */
        bool detail = (rv == -EIO || rv == -EPROTO) && errbuf[0] != '\0';
        snprintf(err, errlen, "%s", detail ? errbuf : ml__strerror(rv));
        *permanent = rv == -EINVAL;
        return rv;
    }
    cu->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    return status_error(status, url, err, errlen, permanent);
}

/* An HTTP status other than 200 as -errno with a reason; 0 for 200. */
static int status_error(long status, const char *url, char *err, size_t errlen, bool *permanent)
{
    if (status == 200)
        return 0;
    if (status == 401 || status == 403)
        snprintf(err, errlen, "the collector refused %s (HTTP %ld from %s): check MICROLOG_TOKEN",
                 status == 401 ? "the token" : "access", status, url);
    else
        snprintf(err, errlen, "HTTP %ld from %s%s", status, url,
                 status == 404 ? ": is this a Microlog collector?" : "");
    *permanent = status >= 400 && status < 500;
    return status == 401 ? -EACCES : status == 403 ? -EPERM : status == 404 ? -ENOENT : -EIO;
}

/* Discovery from a collector on this machine without libcurl (loopback.c).
 * -ENOTSUP: not done that way, ask libcurl (also after a failed connection,
 * so that the reasons and the autostart decision stay libcurl's). */
static int discover_loopback(const char *server, const char *token, uint32_t timeout_ms,
                             bool (*should_stop)(void *), void *arg, char **ingest, char *err,
                             size_t errlen, bool *permanent)
{
    body b = {NULL, 0};
    long status;
    int rv =
        ml__loopback_get(server, token, timeout_ms, should_stop, arg, &status, &b.data, &b.len);
    size_t len = strlen(server);
    while (len > 0 && server[len - 1] == '/')
        len--;
    char url[600];
    snprintf(url, sizeof(url), "%.*s/api/v1/ingest", (int)(len < 500 ? len : 500), server);
    if (rv == -ECANCELED || rv == -ETIMEDOUT || rv == -ECONNREFUSED) {
        /* libcurl would only try again, and say the same */
        if (rv == -ECANCELED)
            snprintf(err, errlen, "no answer from %s before the run ended", url);
        else
            snprintf(err, errlen, "%s", ml__strerror(rv));
        return rv == -ECANCELED ? -ETIMEDOUT : rv;
    }
    if (rv != 0)
        return -ENOTSUP;
    if ((rv = status_error(status, url, err, errlen, permanent)) == 0)
        rv = parse_answer(&b, ingest, err, errlen, permanent);
    free(b.data);
    return rv;
}

int ml__discover(const char *server, const char *token, const char *ca_file, uint32_t timeout_ms,
                 bool (*should_stop)(void *), void *arg, char **ingest, char *err, size_t errlen,
                 bool *permanent)
{
    char errbuf[CURL_ERROR_SIZE] = "", *url = NULL;
    struct curl_slist *headers = NULL;
    body b = {NULL, 0};
    CURL *h = NULL;
    int rv;

    *permanent = false;
    if (strncasecmp(server, "http://", 7) != 0 && strncasecmp(server, "https://", 8) != 0) {
        /* known without libcurl: not worth loading it */
        snprintf(err, errlen,
                 "malformed server URL '%s': expected http://HOST:PORT or https://HOST", server);
        *permanent = true;
        return -EINVAL;
    }
    if ((rv = discover_loopback(server, token, timeout_ms, should_stop, arg, ingest, err, errlen,
                                permanent)) != -ENOTSUP)
        return rv;
    const char *why = NULL;
    const ml__curl_api *cu = ml__curl(&why);
    if (cu == NULL) {
        snprintf(err, errlen,
                 "%s; it is needed to ask %s for the ingest address (or set "
                 "MICROLOG_INGEST)",
                 why, server);
        *permanent = true;
        return -ELIBACC;
    }
    if ((rv = ingest_url(cu, server, &url, err, errlen)) != 0) {
        *permanent = rv == -EINVAL;
        return rv;
    }
    if ((h = easy_new(cu, url, token, ca_file, timeout_ms, &b, errbuf, &headers)) == NULL) {
        rv = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    int code = perform(cu, h, should_stop, arg);
    if ((rv = check_transfer(cu, h, code, url, errbuf, err, errlen, permanent)) == 0)
        rv = parse_answer(&b, ingest, err, errlen, permanent);
    /* MICROLOG_SERVER=https:// promises encryption for the runs too. */
    if (rv == 0 && strncmp(server, "https:", 6) == 0 && !ml__url_is_tls(*ingest)) {
        snprintf(err, errlen,
                 "the collector at %s announced a non-TLS ingest address %s: refusing to send "
                 "runs unencrypted",
                 server, *ingest);
        free(*ingest);
        *ingest = NULL;
        *permanent = true;
        rv = -EPROTO;
    }
done:
    if (h)
        cu->easy_cleanup(h);
    cu->slist_free_all(headers);
    free(b.data);
    free(url);
    return rv;
}
