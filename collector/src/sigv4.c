#include "sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "mem.h"

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void ml_sha256_hex(const void *data, size_t len, char *out)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    hex(md, sizeof(md), out);
}

static void hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len);
}

char *ml_uri_encode(const char *s, int keep_slash)
{
    size_t n = strlen(s);
    char *out = ml_xmalloc(3 * n + 1), *p = out;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~' ||
            (keep_slash && *c == '/'))
            *p++ = (char)*c;
        else
            p += sprintf(p, "%%%02X", *c);
    }
    *p = '\0';
    return out;
}

/* A growable string. */
typedef struct buf {
    char *s;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    ml_xgrow((void **)&b->s, &b->cap, b->len + n + 1, 1);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The query's parameters sorted by name, then value ("k=v" sorts so). */
static void canonical_query(buf *b, const char *query)
{
    char *copy = ml_xstrdup(query);
    size_t n = 0, cap = 0;
    char **parts = NULL;
    for (char *save = NULL, *t = strtok_r(copy, "&", &save); t; t = strtok_r(NULL, "&", &save)) {
        ml_xgrow((void **)&parts, &cap, n + 1, sizeof(char *));
        parts[n++] = t;
    }
    if (n > 1)
        qsort(parts, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i)
            puts_(b, "&");
        puts_(b, parts[i]);
        if (strchr(parts[i], '=') == NULL)
            puts_(b, "=");
    }
    free(parts);
    free(copy);
}

static int cmp_header(const void *a, const void *b)
{
    return strcmp(((const ml_sigv4_header *)a)->name, ((const ml_sigv4_header *)b)->name);
}

/* "name:value\n" lines and the "a;b" list, headers sorted by name. */
static void canonical_headers(buf *lines, buf *names, const ml_sigv4_header *hs, size_t n)
{
    ml_sigv4_header *sorted = ml_xmalloc(n * sizeof(*sorted));
    memcpy(sorted, hs, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_header);
    for (size_t i = 0; i < n; i++) {
        const char *v = sorted[i].value;
        size_t len = strlen(v);
        while (len && isspace((unsigned char)*v))
            v++, len--;
        while (len && isspace((unsigned char)v[len - 1]))
            len--;
        puts_(lines, sorted[i].name);
        puts_(lines, ":");
        put(lines, v, len);
        puts_(lines, "\n");
        if (i)
            puts_(names, ";");
        puts_(names, sorted[i].name);
    }
    free(sorted);
}

char *ml_sigv4_authorization(const ml_sigv4_request *req)
{
    if (req->nheaders == 0 || strlen(req->amz_date) != 16)
        return NULL;
    buf creq = {0}, lines = {0}, names = {0};
    canonical_headers(&lines, &names, req->headers, req->nheaders);
    puts_(&creq, req->method);
    puts_(&creq, "\n");
    puts_(&creq, req->uri[0] ? req->uri : "/");
    puts_(&creq, "\n");
    canonical_query(&creq, req->query ? req->query : "");
    puts_(&creq, "\n");
    puts_(&creq, lines.s);
    puts_(&creq, "\n");
    puts_(&creq, names.s);
    puts_(&creq, "\n");
    puts_(&creq, req->payload_sha256);

    char date[9], creq_hash[ML_SHA256_HEX_LEN + 1];
    memcpy(date, req->amz_date, 8);
    date[8] = '\0';
    ml_sha256_hex(creq.s, creq.len, creq_hash);
    char *scope = ml_xasprintf("%s/%s/%s/aws4_request", date, req->region, req->service);
    char *sts = ml_xasprintf("AWS4-HMAC-SHA256\n%s\n%s\n%s", req->amz_date, scope, creq_hash);

    unsigned char k[32];
    char *secret = ml_xasprintf("AWS4%s", req->secret_key);
    hmac(secret, strlen(secret), date, k);
    hmac(k, 32, req->region, k);
    hmac(k, 32, req->service, k);
    hmac(k, 32, "aws4_request", k);
    unsigned char sig[32];
    hmac(k, 32, sts, sig);
    char sighex[65];
    hex(sig, 32, sighex);
    char *out = ml_xasprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                             req->access_key, scope, names.s, sighex);
    /* The secret and the derived key do not outlive the call. */
    OPENSSL_cleanse(secret, strlen(secret));
    OPENSSL_cleanse(k, sizeof(k));
    free(secret);
    free(scope);
    free(sts);
    free(creq.s);
    free(lines.s);
    free(names.s);
    return out;
}
