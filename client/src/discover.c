/*
 * Discovery: the user sets one variable (MICROLOG_SERVER, the collector's
 * HTTP base URL) and the client asks GET <server>/api/v1/ingest for the nng
 * address, answered as {"ingest": "tcp://127.0.0.1:PORT", "protocol": 1}.
 *
 * Runs on the sender thread. The easy handle is driven through a multi
 * handle in short polls so that ml_client_close can cut a hung request short
 * (should_stop) instead of waiting out the whole timeout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

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
static int ingest_url(const char *server, char **url, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rv = -EINVAL;

    if (u == NULL)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, server, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
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
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
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

static CURL *easy_new(const char *url, const char *token, const char *ca_file, uint32_t timeout_ms,
                      body *b, char *errbuf, struct curl_slist **headers)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 3L);
    /* a proxy from the environment must not capture a local collector */
    curl_easy_setopt(h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "libmicrolog/" ML_CLIENT_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    /* https: curl verifies the certificate and host name by default; a
     * private CA comes from MICROLOG_CA_FILE. */
    if (ca_file != NULL && *ca_file != '\0')
        curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    if (token != NULL && *token != '\0') {
        char auth[1024];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        *headers = curl_slist_append(NULL, auth);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
    }
    return h;
}

/* Runs h to completion in short polls. Returns the CURLcode, or -1 when
 * should_stop asked to give up. */
static int perform(CURL *h, bool (*should_stop)(void *), void *arg)
{
    CURLM *m = curl_multi_init();
    int running = 1, result = CURLE_OUT_OF_MEMORY;
    if (m == NULL)
        return result;
    if (curl_multi_add_handle(m, h) != CURLM_OK)
        goto done;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        if (!running)
            break;
        if (should_stop && should_stop(arg)) {
            result = -1;
            goto remove;
        }
        curl_multi_poll(m, NULL, 0, POLL_MS, NULL);
    }
    int left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            result = msg->data.result;
remove:
    curl_multi_remove_handle(m, h);
done:
    curl_multi_cleanup(m);
    return result;
}

/* Turns a finished transfer into 0 or -errno with a reason. */
static int check_transfer(CURL *h, int code, const char *url, const char *errbuf, char *err,
                          size_t errlen, bool *permanent)
{
    long os_errno = 0, status = 0;
    if (code == -1) {
        snprintf(err, errlen, "no answer from %s before the run ended", url);
        return -ETIMEDOUT;
    }
    if (code != CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
        int rv = ml__err_from_curl(code, os_errno);
        /* curl's own text is clearer than errno for TLS and protocol errors */
        bool detail = (rv == -EIO || rv == -EPROTO) && errbuf[0] != '\0';
        snprintf(err, errlen, "%s", detail ? errbuf : ml__strerror(rv));
        *permanent = rv == -EINVAL;
        return rv;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
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
    if ((rv = ingest_url(server, &url, err, errlen)) != 0) {
        *permanent = rv == -EINVAL;
        return rv;
    }
    if ((h = easy_new(url, token, ca_file, timeout_ms, &b, errbuf, &headers)) == NULL) {
        rv = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    int code = perform(h, should_stop, arg);
    if ((rv = check_transfer(h, code, url, errbuf, err, errlen, permanent)) == 0)
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
        curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    free(b.data);
    free(url);
    return rv;
}
