/*
 * Hosted mode (hosted.h).
 */
#include "hosted.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "mem.h"

int ml_hosted_init(ml_hosted *h, const char *tokens_file, const ml_limits *limits,
                   const char *tls_cert, const char *tls_key, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    ml_rate_init(&h->rate);
    ml_map_init(&h->auth.by_token);
    if (limits)
        h->limits = *limits;
    if ((tls_cert == NULL) != (tls_key == NULL)) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -EINVAL;
    }
    if (tls_cert) {
        const char *bad = access(tls_cert, R_OK) != 0  ? tls_cert
                          : access(tls_key, R_OK) != 0 ? tls_key
                                                       : NULL;
        if (bad) {
            snprintf(err, errlen, "cannot read %s: %s", bad, strerror(errno));
            return -errno;
        }
        h->tls_cert = ml_xstrdup(tls_cert);
        h->tls_key = ml_xstrdup(tls_key);
    }
    if (tokens_file) {
        ml_map_dispose(&h->auth.by_token);
        int rv = ml_auth_load(&h->auth, tokens_file, err, errlen);
        if (rv != 0)
            return rv;
        h->has_tokens = true;
    }
    return 0;
}

void ml_hosted_dispose(ml_hosted *h)
{
    ml_auth_dispose(&h->auth);
    ml_rate_dispose(&h->rate);
    free(h->tls_cert);
    free(h->tls_key);
}
