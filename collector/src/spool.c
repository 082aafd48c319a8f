#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collector.h"
#include "ingest.h"
#include "log.h"
#include "mem.h"
#include "spool_format.h"
#include "wire.h"

/* A spool file larger than this is not one a client wrote. */
#define SPOOL_FILE_MAX (4ull << 30)

typedef struct rec {
    uint32_t kind;
    uint64_t seq;
    const uint8_t *data;
    size_t len;
} rec;

/* The host part of an http(s) URL and its port (default 80/443). */
static const char *url_host(const char *url, long *port)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return NULL;
    *port = strncmp(url, "https", 5) == 0 ? 443 : 80;
    p += 3;
    const char *colon = p[0] == '[' ? strchr(p, ']') : p;
    colon = colon ? strchr(colon, ':') : NULL;
    const char *slash = strchr(p, '/');
    if (colon != NULL && (slash == NULL || colon < slash))
        *port = strtol(colon + 1, NULL, 10);
    return p;
}

int ml_spool_server_is_local(const char *server)
{
    static const char *const hosts[] = {"localhost", "127.0.0.1", "[::1]"};
    long port;
    const char *p = url_host(server, &port);
    if (p == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        size_t n = strlen(hosts[i]);
        if (strncmp(p, hosts[i], n) == 0 && (p[n] == '\0' || p[n] == ':' || p[n] == '/'))
            return 1;
    }
    return 0;
}

int ml_spool_server_is_ours(const char *server, const char *own_url)
{
    long port, own_port;
    if (!ml_spool_server_is_local(server) || own_url == NULL || url_host(server, &port) == NULL ||
        url_host(own_url, &own_port) == NULL)
        return 0;
    return port == own_port;
}

/* Import order: OpenRun, batches by seq, CloseRun (stable otherwise). */
static int rec_cmp(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    int kx = x->kind == ML_SPOOL_OPEN ? 0 : x->kind == ML_SPOOL_BATCH ? 1 : 2;
    int ky = y->kind == ML_SPOOL_OPEN ? 0 : y->kind == ML_SPOOL_BATCH ? 1 : 2;
    if (kx != ky)
        return kx - ky;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Parses buf into records (up to the first torn or corrupt one). Returns
 * the count; *server points into buf (not NUL-terminated, *server_len). */
static size_t parse(const uint8_t *buf, size_t len, rec **out, const char **server,
                    size_t *server_len, bool *torn)
{
    size_t n = 0, cap = 16, off = ML_SPOOL_FILE_MAGIC_LEN;
    rec *v = ml_xcalloc(cap, sizeof(rec));
    *server = NULL;
    *server_len = 0;
    *torn = false;
    while (off < len) {
        ml_spool_rec h;
        if (len - off < ML_SPOOL_HEADER || !ml_spool_header_decode(buf + off, &h) ||
            len - off - ML_SPOOL_HEADER < h.len ||
            !ml_spool_payload_ok(buf + off, buf + off + ML_SPOOL_HEADER, h.len)) {
            *torn = true;
            break;
        }
        const uint8_t *p = buf + off + ML_SPOOL_HEADER;
        off += ML_SPOOL_HEADER + h.len;
        if (h.kind == ML_SPOOL_META) {
            if (*server == NULL) {
                *server = (const char *)p;
                *server_len = h.len;
            }
            continue;
        }
        if (n == cap)
            v = ml_xrealloc(v, (cap *= 2) * sizeof(rec));
        v[n++] = (rec){h.kind, h.seq, p, h.len};
    }
    *out = v;
    return n;
}

/* Replays one record; returns its reply status (an INTERNAL status when
 * the reply cannot be read) and copies the reason into why. */
static int32_t replay(ml_collector *c, const rec *r, char *why, size_t whylen)
{
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    ml_wire_msg m = {0};
    ml_ingest_handle(c, r->data, r->len, &reply, &reply_len);
    int32_t status = MICROLOG__V1__STATUS__INTERNAL;
    snprintf(why, whylen, "unreadable reply");
    if (ml_wire_unpack(reply, reply_len, &m) == 0) {
        status = m.env->status;
        snprintf(why, whylen, "%s", m.env->error ? m.env->error : "");
    }
    if (m.env)
        ml_wire_msg_free(&m);
    free(reply);
    return status;
}

static bool transient(int32_t status)
{
    return status == MICROLOG__V1__STATUS__INTERNAL ||
           status == MICROLOG__V1__STATUS__RESOURCE_EXHAUSTED ||
           status == MICROLOG__V1__STATUS__UNAVAILABLE;
}

static void reject(const char *dir, const char *name, const char *path, const char *why)
{
    char *rdir = ml_xasprintf("%s/rejected", dir);
    char *to = ml_xasprintf("%s/%s", rdir, name);
    if (mkdir(rdir, 0700) != 0 && errno != EEXIST)
        ml_error("spool: cannot create %s: %s", rdir, strerror(errno));
    if (rename(path, to) != 0)
        ml_error("spool: cannot move %s to %s: %s", path, to, strerror(errno));
    ml_warn("spool: %s refused (%s); kept as %s", name, why, to);
    free(rdir);
    free(to);
}

/* Reads the whole locked file; NULL (reason logged) when unusable. */
static uint8_t *read_all(int fd, const char *path, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > SPOOL_FILE_MAX ||
        st.st_size < ML_SPOOL_FILE_MAGIC_LEN) {
        ml_warn("spool: %s: not a spool file", path);
        return NULL;
    }
    uint8_t *buf = ml_xmalloc((size_t)st.st_size);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (n <= 0) {
            ml_error("spool: cannot read %s: %s", path, n < 0 ? strerror(errno) : "short file");
            free(buf);
            return NULL;
        }
        got += (size_t)n;
    }
    if (memcmp(buf, ML_SPOOL_FILE_MAGIC, ML_SPOOL_FILE_MAGIC_LEN) != 0) {
        ml_warn("spool: %s: not a spool file", path);
        free(buf);
        return NULL;
    }
    *len = got;
    return buf;
}

/* 1: imported and removed; 0: left in place; the file is locked by us. */
static int import_locked(ml_collector *c, const char *dir, const char *name, const char *path,
                         int fd)
{
    size_t len = 0, server_len;
    const char *server;
    bool torn;
    rec *v = NULL;
    char why[300];
    int imported = 0;
    uint8_t *buf = read_all(fd, path, &len);
    if (buf == NULL)
        return 0;
    size_t n = parse(buf, len, &v, &server, &server_len, &torn);
    char *srv = ml_xasprintf("%.*s", (int)server_len, server ? server : "");
    /* Another collector on this machine (another port) imports its own:
     * a run goes to the collector its program was told to use. */
    if (!ml_spool_server_is_ours(srv, ml_collector_http_url(c))) {
        ml_debug("spool: %s is for %s, not this collector", name, srv);
        goto done;
    }
    qsort(v, n, sizeof(rec), rec_cmp);
    size_t batches = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t status = replay(c, &v[i], why, sizeof(why));
        if (status == MICROLOG__V1__STATUS__OK) {
            batches += v[i].kind == ML_SPOOL_BATCH;
            continue;
        }
        if (transient(status))
            ml_warn("spool: %s: will retry (%s)", name, why);
        else
            reject(dir, name, path, why);
        goto done;
    }
    /* with group commit the journal appends above are not synced yet */
    if (c->group_commit && ml_collector_sync(c) != 0) {
        ml_warn("spool: %s: will retry (journal sync failed)", name);
        goto done;
    }
    if (torn)
        ml_warn("spool: %s ends in a torn record (its writer stopped mid-write); imported the "
                "%zu records before it",
                name, n);
    if (unlink(path) != 0) {
        ml_error("spool: cannot remove %s: %s", path, strerror(errno));
        goto done;
    }
    ml_info("spool: imported %s (%zu batches)", name, batches);
    imported = 1;
done:
    free(srv);
    free(v);
    free(buf);
    return imported;
}

static int import_file(ml_collector *c, const char *dir, const char *name)
{
    char *path = ml_xasprintf("%s/%s", dir, name);
    struct stat a, b;
    int imported = 0;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        goto done;
    /* locked: its writer is still running, or a client is delivering it */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        goto done;
    /* still the file the name refers to (not removed after delivery) */
    if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
        imported = import_locked(c, dir, name, path, fd);
done:
    if (fd >= 0)
        close(fd);
    free(path);
    return imported;
}

int ml_spool_import_dir(struct ml_collector *c, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int imported = 0;
    size_t suffix = strlen(ML_SPOOL_SUFFIX);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > suffix && strcmp(e->d_name + len - suffix, ML_SPOOL_SUFFIX) == 0)
            imported += import_file(c, dir, e->d_name);
    }
    closedir(d);
    return imported;
}
