/*
 * URL pieces for the HTTP API: percent-decoding and query parameters.
 * Pure functions, any thread.
 */
#ifndef ML_COLLECTOR_URL_H
#define ML_COLLECTOR_URL_H

#include <stdbool.h>
#include <stddef.h>

/* Percent-decodes n bytes at s ("+" becomes a space when plus_space, as in
 * a query string). Returns a malloc'd NUL-terminated string owned by the
 * caller (its length in *out_len when not NULL), or NULL for a bad escape
 * or an encoded NUL byte. */
char *ml_url_decode(const char *s, size_t n, bool plus_space, size_t *out_len);

/* The decoded value of the first parameter key in the query string q (qlen
 * bytes, without the "?"), malloc'd, or NULL when absent or badly encoded.
 * A key without "=" has the value "". */
char *ml_url_query_get(const char *q, size_t qlen, const char *key);

#endif
