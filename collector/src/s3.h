/*
 * An S3 client on the libuv loop: libcurl's multi interface driven by
 * uv_poll_t (one per socket curl asks about) and one uv_timer_t
 * (curl_multi_socket_action), so the loop never blocks on S3. Requests
 * are SigV4-signed (sigv4.h), retried with exponential backoff on
 * connection errors, timeouts, 5xx and 429, and large uploads go in
 * parts (multipart upload). Loop thread only.
 */
#ifndef ML_COLLECTOR_S3_H
#define ML_COLLECTOR_S3_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Uploads bigger than this use multipart (parts of this size). */
#define ML_S3_MULTIPART_DEFAULT (8u << 20)
#define ML_S3_ATTEMPTS 5

typedef struct ml_s3_config {
    char *bucket;
    char *prefix;   /* "" or "a/b" (no leading or trailing slash) */
    char *region;   /* MICROLOG_S3_REGION, AWS_REGION, or us-east-1 */
    char *endpoint; /* "http(s)://host[:port]", path-style; NULL: AWS virtual-host */
    char *access_key, *secret_key, *session_token; /* session_token may be NULL */
    size_t multipart_threshold;                    /* 0: ML_S3_MULTIPART_DEFAULT */
} ml_s3_config;

/* Reads MICROLOG_S3_ROOT (s3://bucket/prefix), MICROLOG_S3_REGION,
 * MICROLOG_S3_ENDPOINT, MICROLOG_S3_MULTIPART_BYTES and the credentials:
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the
 * shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials, profile AWS_PROFILE or "default"). Returns 1 when
 * MICROLOG_S3_ROOT is unset (no S3), 0 with cfg filled (release with
 * ml_s3_config_dispose()), or -EINVAL with a message in err. */
int ml_s3_config_from_env(ml_s3_config *cfg, char *err, size_t errlen);

void ml_s3_config_dispose(ml_s3_config *cfg);

typedef struct ml_s3 ml_s3;

/* One finished request. rv is 0 (2xx), -ENOENT (404), -EIO (other HTTP
 * error or bad answer, after retries), -ETIMEDOUT / -ECONNREFUSED /
 * -EHOSTUNREACH (transport, after retries) or -ECANCELED (client closed).
 * body/len: the response (GET bodies, XML), valid during the call only. */
typedef void (*ml_s3_cb)(void *arg, int rv, const char *body, size_t len);

/* Creates a client on loop; copies cfg. Returns 0 or -errno. */
int ml_s3_new(uv_loop_t *loop, const ml_s3_config *cfg, ml_s3 **out);

/* Cancels every request (their callbacks run with -ECANCELED before this
 * returns), closes the handles and frees the client; closed(arg) is
 * called from the loop once everything is closed. */
void ml_s3_close(ml_s3 *s, void (*closed)(void *arg), void *arg);

/* The full key of name under the configured prefix. malloc'd. */
char *ml_s3_key(const ml_s3 *s, const char *name);

/* PUT key with len bytes of data (copied). Returns 0 (cb will be called)
 * or -errno. */
int ml_s3_put(ml_s3 *s, const char *key, const void *data, size_t len, ml_s3_cb cb, void *arg);

/* PUT key with the content of the file at path, in parts when it is
 * larger than the multipart threshold. The file is read when the call is
 * made. Returns 0 (cb will be called) or -errno (file unreadable). */
int ml_s3_put_file(ml_s3 *s, const char *key, const char *path, ml_s3_cb cb, void *arg);

/* GET key; the body is passed to cb. */
int ml_s3_get(ml_s3 *s, const char *key, ml_s3_cb cb, void *arg);

/* DELETE key (a missing key is success, as in S3). */
int ml_s3_delete(ml_s3 *s, const char *key, ml_s3_cb cb, void *arg);

/* Every key under prefix (ListObjectsV2, following continuation tokens).
 * keys[0..n) borrowed, valid during the call only. */
typedef void (*ml_s3_list_cb)(void *arg, int rv, char **keys, size_t n);
int ml_s3_list(ml_s3 *s, const char *prefix, ml_s3_list_cb cb, void *arg);

/* Counters for /metrics and tests. */
typedef struct ml_s3_stats {
    uint64_t requests, retries, failures, bytes_up, bytes_down;
} ml_s3_stats;
const ml_s3_stats *ml_s3_get_stats(const ml_s3 *s);

#endif
