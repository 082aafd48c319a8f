/*
 * Hosted mode as one unit that main.c builds from its flags and hands to
 * the collector (ml_collector_config.hosted): the tokens (auth.h), the
 * limits and rate buckets (limits_ingest.h) and the TLS certificate for HTTPS and
 * tls+tcp ingest (tls.h). Standalone mode has none of it (hosted == NULL).
 * Owned by whoever created it (main.c); the collector only borrows it and
 * uses it on the loop thread.
 */
#ifndef ML_COLLECTOR_HOSTED_H
#define ML_COLLECTOR_HOSTED_H

#include <stdbool.h>

#include "auth.h"
#include "limits_ingest.h"

typedef struct ml_hosted {
    bool has_tokens; /* auth is loaded: every request needs a token */
    ml_auth auth;
    ml_limits limits;
    ml_rate rate;
    char *tls_cert; /* PEM certificate chain file, or NULL: plain HTTP/tcp */
    char *tls_key;  /* PEM private key file */
} ml_hosted;

/* Builds h: loads tokens_file (may be NULL: no authentication), copies the
 * limits and the certificate paths (both or neither). Returns 0, or -errno
 * with a one-line reason in err; h is disposable either way. */
int ml_hosted_init(ml_hosted *h, const char *tokens_file, const ml_limits *limits,
                   const char *tls_cert, const char *tls_key, char *err, size_t errlen);

/* Frees what h holds. */
void ml_hosted_dispose(ml_hosted *h);

#endif
