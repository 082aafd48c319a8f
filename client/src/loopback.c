/*
 * Discovery from a collector on this machine without libcurl: with
 * MICROLOG_SERVER=http://127.0.0.1:PORT or http://localhost:PORT (the
 * standalone default) the answer to GET /api/v1/ingest is read over one
 * loopback TCP connection in plain HTTP/1.0 (the server closes the
 * connection after the body: no chunking, no keep-alive). Loading libcurl
 * and the libraries it pulls in costs more than the whole request, and it
 * holds the dynamic loader's lock meanwhile (the program's own dlopen and
 * pthread_create wait for it).
 *
 * A refused connection is answered as libcurl would answer it (the
 * autostart decision follows it); anything unusual (a redirect, an odd URL
 * or token, a failure after connecting) is left to libcurl.
 * Sender thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "internal.h"

#define HEAD_MAX (16u << 10)
#define POLL_MS 10

/* The loopback URL's port and path prefix; false for anything else. */
bool ml__loopback_url(const char *server, uint16_t *port, const char **path, size_t *path_len,
                      bool *localhost)
{
    const char *p = server + 16;
    if (strncmp(server, "http://127.0.0.1", 16) == 0)
        *localhost = false;
    else if (strncmp(server, "http://localhost", 16) == 0)
        *localhost = true;
    else
        return false;
    unsigned long n = 80;
    if (*p == ':') {
        char *end;
        if (p[1] < '0' || p[1] > '9')
            return false;
        n = strtoul(p + 1, &end, 10);
        if (n == 0 || n > 65535 || end - p > 6)
            return false;
        p = end;
    }
    if (*p != '\0' && *p != '/')
        return false;
    /* a plain path prefix only (no query, escapes or user info) */
    size_t len = strlen(p);
    for (size_t i = 0; i < len; i++)
        if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._~-", p[i]) ==
            NULL)
            return false;
    while (len > 0 && p[len - 1] == '/')
        len--;
    *port = (uint16_t)n;
    *path = p;
    *path_len = len;
    return true;
}

/* Waits for events on fd in short polls; 0, -ETIMEDOUT or -ECANCELED. */
static int wait_fd(int fd, short events, int64_t deadline, bool (*should_stop)(void *), void *arg)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        if (should_stop && should_stop(arg))
            return -ECANCELED;
        int64_t left = deadline - ml__mono_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        int rv = poll(&p, 1, left < POLL_MS ? (int)left : POLL_MS);
        if (rv > 0)
            return 0;
        if (rv < 0 && errno != EINTR)
            return -errno;
    }
}

/* A connected non-blocking socket to 127.0.0.1:port (::1 with v6), or
 * -errno (-ECONNREFUSED: nothing listens there). */
static int connect_loopback(uint16_t port, bool v6, int64_t deadline, bool (*should_stop)(void *),
                            void *arg)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a6.sin6_addr = in6addr_loopback;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e;
    if (fd < 0)
        return -errno;
    int one = 1;
    socklen_t elen = sizeof(e);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
                v6 ? sizeof(a6) : sizeof(a4)) == 0)
        return fd;
    if (errno != EINPROGRESS)
        e = -errno;
    else if ((e = wait_fd(fd, POLLOUT, deadline, should_stop, arg)) == 0 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == 0)
        e = -e;
    if (e == 0)
        return fd;
    close(fd);
    return e;
}

/* Sends all of buf; 0 or -errno. */
static int send_all(int fd, const char *buf, size_t len, int64_t deadline,
                    bool (*should_stop)(void *), void *arg)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -errno;
        } else {
            int rv = wait_fd(fd, POLLOUT, deadline, should_stop, arg);
            if (rv != 0)
                return rv;
        }
    }
    return 0;
}

/* Reads until the server closes, at most max bytes; *out malloc'd and
 * NUL-terminated. 0 or -errno (-EMSGSIZE when longer). */
static int recv_all(int fd, size_t max, int64_t deadline, bool (*should_stop)(void *), void *arg,
                    char **out, size_t *out_len)
{
    char *buf = malloc(max + 1);
    size_t len = 0;
    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        ssize_t n = recv(fd, buf + len, max + 1 - len, 0);
        if (n == 0)
            break;
        if (n > 0) {
            len += (size_t)n;
            if (len > max) {
                free(buf);
                return -EMSGSIZE;
            }
            continue;
        }
        int rv = errno == EAGAIN || errno == EINTR ? wait_fd(fd, POLLIN, deadline, should_stop, arg)
                                                   : -errno;
        if (rv != 0) {
            free(buf);
            return rv;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* Splits an HTTP/1.x response into its status and body (pointing into
 * resp). False when it is not one this reader understands. */
static bool parse_response(char *resp, size_t len, long *status, const char **body,
                           size_t *body_len)
{
    char *end = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.", 7) != 0 || len < 12 || resp[8] != ' ' || end == NULL)
        return false;
    *end = '\0'; /* the headers become one string */
    for (char *h = resp; (h = strchr(h, '\n')) != NULL; h++)
        if (strncasecmp(h + 1, "transfer-encoding:", 18) == 0)
            return false; /* chunked, against HTTP/1.0: not for this reader */
    *status = strtol(resp + 9, NULL, 10);
    *body = end + 4;
    *body_len = len - (size_t)(end + 4 - resp);
    return *status >= 100 && *status <= 599;
}

int ml__loopback_get(const char *server, const char *token, uint32_t timeout_ms,
                     bool (*should_stop)(void *), void *arg, long *status, char **body,
                     size_t *body_len)
{
    uint16_t port;
    const char *path;
    size_t path_len;
    bool localhost;
    char req[2048];
    if (!ml__loopback_url(server, &port, &path, &path_len, &localhost) ||
        (token != NULL && strpbrk(token, "\r\n") != NULL))
        return -ENOTSUP;
    int n = snprintf(req, sizeof(req),
                     "GET %.*s/api/v1/ingest HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n"
                     "User-Agent: libmicrolog/" ML_CLIENT_VERSION "\r\n%s%s%s\r\n",
                     (int)path_len, path, (unsigned)port,
                     token && *token ? "Authorization: Bearer " : "", token && *token ? token : "",
                     token && *token ? "\r\n" : "");
    if (n < 0 || n >= (int)sizeof(req))
        return -ENOTSUP;
    int64_t deadline = ml__mono_ms() + timeout_ms;
    int fd = connect_loopback(port, false, deadline, should_stop, arg), rv;
    if (fd == -ECONNREFUSED && localhost) /* "localhost" is ::1 too */
        fd = connect_loopback(port, true, deadline, should_stop, arg);
    if (fd < 0)
        return fd == -EAFNOSUPPORT ? -ECONNREFUSED : fd;
    char *resp = NULL;
    size_t len = 0;
    if ((rv = send_all(fd, req, (size_t)n, deadline, should_stop, arg)) == 0)
        rv = recv_all(fd, HEAD_MAX + (64u << 10), deadline, should_stop, arg, &resp, &len);
    close(fd);
    if (rv != 0)
        return rv;
    const char *b;
    size_t blen;
    if (!parse_response(resp, len, status, &b, &blen) || (*status >= 300 && *status < 400)) {
        free(resp); /* a redirect is libcurl's to follow */
        return -ENOTSUP;
    }
    memmove(resp, b, blen);
    resp[blen] = '\0';
    *body = resp;
    *body_len = blen;
    return 0;
}
