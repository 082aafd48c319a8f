/*
 * TLS for the ingest connection (tls+tcp://): an nng client TLS
 * configuration that verifies the collector's certificate against
 * MICROLOG_CA_FILE (or the system's CA bundle) and its host name.
 * Sender thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "internal.h"

/* Debian's bundle of the system's trusted CAs (ca-certificates). */
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

bool ml__url_is_tls(const char *url)
{
    return url != NULL && strncmp(url, "tls+tcp://", 10) == 0;
}

int ml__tls_dialer(nng_socket sock, const char *url, const char *ca_file, nng_dialer *out,
                   char *err, size_t errlen)
{
    nng_tls_config *cfg = NULL;
    nng_url *u = NULL;
    nng_dialer d;
    const char *ca = ca_file && *ca_file ? ca_file : SYSTEM_CA_FILE;
    int rv;

    if (access(ca, R_OK) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot read the CA file %s (MICROLOG_CA_FILE): %s", ca, strerror(e));
        return -e;
    }
    if ((rv = nng_url_parse(&u, url)) != 0) {
        snprintf(err, errlen, "malformed ingest address %s", url);
        return -EINVAL;
    }
    if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT)) != 0 ||
        (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
        (rv = nng_tls_config_server_name(cfg, u->u_hostname)) != 0) {
        snprintf(err, errlen, "cannot set up TLS: %s", nng_strerror(rv));
        goto fail;
    }
    if ((rv = nng_tls_config_ca_file(cfg, ca)) != 0) {
        snprintf(err, errlen, "bad CA file %s (MICROLOG_CA_FILE): %s", ca, nng_strerror(rv));
        goto fail;
    }
    if ((rv = nng_dialer_create(&d, sock, url)) != 0) {
        snprintf(err, errlen, "cannot dial %s: %s", url, nng_strerror(rv));
        goto fail;
    }
    /* The dialer holds its own reference to cfg. */
    if ((rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0) {
        snprintf(err, errlen, "cannot set up TLS for %s: %s", url, nng_strerror(rv));
        nng_dialer_close(d);
        goto fail;
    }
    nng_tls_config_free(cfg);
    nng_url_free(u);
    *out = d;
    return 0;
fail:
    if (cfg)
        nng_tls_config_free(cfg);
    nng_url_free(u);
    return ml__err_from_nng(rv);
}
