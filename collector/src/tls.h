/*
 * TLS for the collector's two listeners, from one PEM certificate chain
 * and key: an OpenSSL context for h2o (HTTPS, HTTP/2 by ALPN) and an nng
 * TLS configuration (mbedTLS inside Debian's libnng) for tls+tcp ingest.
 * Loop thread, at start.
 */
#ifndef ML_COLLECTOR_TLS_H
#define ML_COLLECTOR_TLS_H

#include <stddef.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <openssl/ssl.h>

/* A server SSL_CTX with cert (chain) and key loaded and checked, ALPN
 * h2/http1.1 registered, TLS 1.2 at least. Returns 0 with *out (free with
 * SSL_CTX_free), or -EINVAL with a reason in err. */
int ml_tls_http_ctx(const char *cert, const char *key, SSL_CTX **out, char *err, size_t errlen);

/* A server nng_tls_config with cert and key (free with
 * nng_tls_config_free). Returns 0 with *out, or -EINVAL with a reason. */
int ml_tls_nng_server(const char *cert, const char *key, nng_tls_config **out, char *err,
                      size_t errlen);

#endif
