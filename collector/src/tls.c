/*
 * TLS setup (tls.h).
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o.h>
#include <openssl/err.h>

#include "fsutil.h"

static void ssl_reason(char *err, size_t errlen, const char *what, const char *path)
{
    char buf[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, path, buf[0] ? buf : "invalid");
}

int ml_tls_http_ctx(const char *cert, const char *key, SSL_CTX **out, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create an OpenSSL context");
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_reason(err, errlen, "bad TLS certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_reason(err, errlen, "bad TLS key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_reason(err, errlen, "the TLS key does not match the certificate", cert);
        goto fail;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -EINVAL;
}

int ml_tls_nng_server(const char *cert, const char *key, nng_tls_config **out, char *err,
                      size_t errlen)
{
    nng_tls_config *cfg = NULL;
    char *certpem = NULL, *keypem = NULL;
    size_t len;
    int rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER);
    if (rv != 0) {
        snprintf(err, errlen, "cannot create an nng TLS config: %s", nng_strerror(rv));
        return -ENOMEM;
    }
    /* nng_tls_config_own_cert wants PEM text (NUL-terminated). */
    if ((rv = ml_read_file(cert, 1u << 20, &certpem, &len)) != 0 ||
        (rv = ml_read_file(key, 1u << 20, &keypem, &len)) != 0) {
        snprintf(err, errlen, "cannot read the TLS certificate or key: %s", strerror(-rv));
        goto fail;
    }
    if ((rv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_3)) != 0 &&
        (rv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_2)) != 0) {
        snprintf(err, errlen, "nng TLS versions: %s", nng_strerror(rv));
        goto fail;
    }
    if ((rv = nng_tls_config_own_cert(cfg, certpem, keypem, NULL)) != 0) {
        snprintf(err, errlen, "nng refused the TLS certificate %s / key %s: %s", cert, key,
                 nng_strerror(rv));
        goto fail;
    }
    free(certpem);
    free(keypem);
    *out = cfg;
    return 0;
fail:
    free(certpem);
    free(keypem);
    nng_tls_config_free(cfg);
    return -EINVAL;
}
