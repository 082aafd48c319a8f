/*
 * AWS Signature Version 4 (HMAC-SHA256 with OpenSSL): the Authorization
 * header of one request. Pure functions, any thread; unit-tested against
 * AWS's published examples (tests/unit/collector/test_sigv4.c).
 */
#ifndef ML_COLLECTOR_SIGV4_H
#define ML_COLLECTOR_SIGV4_H

#include <stddef.h>

#define ML_SHA256_HEX_LEN 64

typedef struct ml_sigv4_header {
    const char *name;  /* lower case */
    const char *value; /* leading/trailing blanks are trimmed when signing */
} ml_sigv4_header;

typedef struct ml_sigv4_request {
    const char *method;             /* "GET", "PUT", ... */
    const char *uri;                /* the path, already URI-encoded ("/bucket/a%20b") */
    const char *query;              /* "k=v&k2=v2", already URI-encoded, any order; "" */
    const ml_sigv4_header *headers; /* every header to sign; must include host */
    size_t nheaders;
    const char *payload_sha256; /* hex, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;       /* "YYYYMMDDTHHMMSSZ", also sent as x-amz-date */
    const char *region, *service;
    const char *access_key, *secret_key;
} ml_sigv4_request;

/* The Authorization header value for req:
 * "AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=a;b, Signature=HEX". malloc'd, owned by the caller; NULL
 * only for a request without headers or with a malformed amz_date. */
char *ml_sigv4_authorization(const ml_sigv4_request *req);

/* hex(SHA-256(data)) into out (ML_SHA256_HEX_LEN + 1 bytes). */
void ml_sha256_hex(const void *data, size_t len, char *out);

/* RFC 3986 encoding as SigV4 wants it: unreserved characters kept, every
 * other byte %XX (upper case); "/" kept when keep_slash. malloc'd. */
char *ml_uri_encode(const char *s, int keep_slash);

#endif
