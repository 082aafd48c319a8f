/*
 * The HTTP server: h2o (libuv flavour) on the collector's loop, serving
 * the JSON API under /api/v1/, /healthz, and the web UI's static files.
 * Loop thread only.
 */
#ifndef ML_COLLECTOR_HTTP_H
#define ML_COLLECTOR_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct ml_collector;
typedef struct ml_http ml_http;

/* Splits "HOST:PORT" or "[V6]:PORT" into host (hostlen bytes) and port
 * (0..65535). Returns 0 or -EINVAL. */
int ml_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* Listens on hostport (an IP literal or "localhost"; port 0 picks a free
 * one) and serves c's API and UI (c->ui_dir, or a built-in page when that
 * directory is missing). A non-loopback host is refused with -EACCES
 * unless allow_remote. Returns 0 with *out set, or a negative errno
 * (logged). */
int ml_http_start(struct ml_collector *c, const char *hostport, bool allow_remote, ml_http **out);

/* "http://HOST:PORT" with the real port. Borrowed. */
const char *ml_http_url(const ml_http *h);

typedef void (*ml_http_closed_cb)(void *arg);

/* Stops listening, shuts the open connections down, waits (on the loop)
 * for them to close, disposes of h2o and frees h, then calls cb(arg). */
void ml_http_close(ml_http *h, ml_http_closed_cb cb, void *arg);

#endif
