/*
 * Error translation, done once at each boundary: nng codes, curl codes and
 * the collector's gRPC-style statuses all become -errno here. Also the
 * client's record of the first error and of why the collector is unreachable.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "internal.h"

int ml__err_from_nng(int rv)
{
    if (rv == 0)
        return 0;
    if (rv & NNG_ESYSERR)
        return -(rv & ~NNG_ESYSERR);
    switch (rv) {
    case NNG_EINTR:
        return -EINTR;
    case NNG_ENOMEM:
        return -ENOMEM;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
    case NNG_EBADTYPE:
        return -EINVAL;
    case NNG_EBUSY:
        return -EBUSY;
    case NNG_ETIMEDOUT:
        return -ETIMEDOUT;
    case NNG_ECONNREFUSED:
        return -ECONNREFUSED;
    case NNG_ECLOSED:
        return -EBADF;
    case NNG_EAGAIN:
        return -EAGAIN;
    case NNG_ENOTSUP:
        return -ENOTSUP;
    case NNG_EADDRINUSE:
        return -EADDRINUSE;
    case NNG_ESTATE:
        return -EINVAL;
    case NNG_ENOENT:
        return -ENOENT;
    case NNG_EPROTO:
        return -EPROTO;
    case NNG_EUNREACHABLE:
        return -EHOSTUNREACH;
    case NNG_EPERM:
        return -EPERM;
    case NNG_EMSGSIZE:
        return -EMSGSIZE;
    case NNG_ECONNABORTED:
        return -ECONNABORTED;
    case NNG_ECONNRESET:
    case NNG_ECONNSHUT:
        return -ECONNRESET;
    case NNG_ECANCELED:
        return -ECANCELED;
    case NNG_ENOFILES:
        return -EMFILE;
    case NNG_ENOSPC:
        return -ENOSPC;
    case NNG_EEXIST:
        return -EEXIST;
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH:
        return -EACCES;
    default:
        return -EIO;
    }
}

int ml__err_from_curl(int code, long os_errno)
{
    switch ((CURLcode)code) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
        return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return -EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_ABORTED_BY_CALLBACK:
        return -ECANCELED;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return -ECONNRESET;
    default:
        return -EIO;
    }
}

int ml__err_from_status(int32_t status)
{
    switch (status) {
    case MICROLOG__V1__STATUS__OK:
        return 0;
    case MICROLOG__V1__STATUS__CANCELLED:
        return -ECANCELED;
    case MICROLOG__V1__STATUS__INVALID_ARGUMENT:
        return -EINVAL;
    case MICROLOG__V1__STATUS__NOT_FOUND:
        return -ENOENT;
    case MICROLOG__V1__STATUS__ALREADY_EXISTS:
        return -EEXIST;
    case MICROLOG__V1__STATUS__PERMISSION_DENIED:
        return -EPERM;
    case MICROLOG__V1__STATUS__RESOURCE_EXHAUSTED:
        return -ENOSPC;
    case MICROLOG__V1__STATUS__FAILED_PRECONDITION:
        return -EPROTO;
    case MICROLOG__V1__STATUS__OUT_OF_RANGE:
        return -EFBIG;
    case MICROLOG__V1__STATUS__UNIMPLEMENTED:
        return -ENOSYS;
    case MICROLOG__V1__STATUS__UNAVAILABLE:
        return -EAGAIN;
    case MICROLOG__V1__STATUS__DATA_LOSS:
        return -EIO;
    case MICROLOG__V1__STATUS__UNAUTHENTICATED:
        return -EACCES;
    default:
        return -EIO;
    }
}

bool ml__status_permanent(int32_t status)
{
    switch (status) {
    case MICROLOG__V1__STATUS__FAILED_PRECONDITION:
    case MICROLOG__V1__STATUS__OUT_OF_RANGE:
    case MICROLOG__V1__STATUS__UNAUTHENTICATED:
    case MICROLOG__V1__STATUS__PERMISSION_DENIED:
    case MICROLOG__V1__STATUS__INVALID_ARGUMENT:
        return true;
    default:
        return false;
    }
}

const char *ml__status_name(int32_t status)
{
    switch (status) {
    case MICROLOG__V1__STATUS__OK:
        return "ok";
    case MICROLOG__V1__STATUS__CANCELLED:
        return "cancelled";
    case MICROLOG__V1__STATUS__UNKNOWN:
        return "unknown";
    case MICROLOG__V1__STATUS__INVALID_ARGUMENT:
        return "invalid argument";
    case MICROLOG__V1__STATUS__NOT_FOUND:
        return "not found";
    case MICROLOG__V1__STATUS__ALREADY_EXISTS:
        return "already exists";
    case MICROLOG__V1__STATUS__PERMISSION_DENIED:
        return "permission denied";
    case MICROLOG__V1__STATUS__RESOURCE_EXHAUSTED:
        return "resource exhausted";
    case MICROLOG__V1__STATUS__FAILED_PRECONDITION:
        return "failed precondition";
    case MICROLOG__V1__STATUS__OUT_OF_RANGE:
        return "out of range";
    case MICROLOG__V1__STATUS__UNIMPLEMENTED:
        return "unimplemented";
    case MICROLOG__V1__STATUS__INTERNAL:
        return "internal error";
    case MICROLOG__V1__STATUS__UNAVAILABLE:
        return "unavailable";
    case MICROLOG__V1__STATUS__DATA_LOSS:
        return "data loss";
    case MICROLOG__V1__STATUS__UNAUTHENTICATED:
        return "unauthenticated";
    default:
        return "unknown status";
    }
}

const char *ml__strerror(int err)
{
    switch (-err) {
    case 0:
        return "ok";
    case ECONNREFUSED:
        return "connection refused";
    case ETIMEDOUT:
        return "timed out";
    case EHOSTUNREACH:
        return "host unreachable";
    case ENETUNREACH:
        return "network unreachable";
    case ECONNRESET:
        return "connection reset";
    case ENOMEM:
        return "out of memory";
    case EINVAL:
        return "invalid argument";
    case EPROTO:
        return "protocol error";
    case EACCES:
        return "access denied";
    case EPERM:
        return "permission denied";
    case ECANCELED:
        return "cancelled";
    case ENOTSUP:
        return "not supported";
    case EMSGSIZE:
        return "message too large";
    case EBADMSG:
        return "malformed message";
    default:
        return strerror(-err);
    }
}

/* vsnprintf into dst under the client mutex. */
static void record_locked(char *dst, size_t size, const char *fmt, va_list ap)
{
    vsnprintf(dst, size, fmt, ap);
}

void ml__client_error(ml_client *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&c->mu);
    if (c->first_err == 0) {
        c->first_err = err ? err : -EIO;
        record_locked(c->error, sizeof(c->error), fmt, ap);
    }
    pthread_mutex_unlock(&c->mu);
    va_end(ap);
}

void ml__client_conn_error(ml_client *c, int err, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    pthread_mutex_lock(&c->mu);
    c->conn_err = err ? err : -EIO;
    record_locked(c->conn_reason, sizeof(c->conn_reason), fmt, ap);
    if (c->first_err == 0) {
        c->first_err = c->conn_err;
        record_locked(c->error, sizeof(c->error), fmt, ap2);
    }
    pthread_mutex_unlock(&c->mu);
    va_end(ap2);
    va_end(ap);
}
