/*
 * Spool files (format in proto/spool_format.h): the run's own spool, which
 * takes the batches that do not fit in memory or cannot be delivered, and
 * the reader the sender thread uses to replay its own spool or deliver the
 * leftover spool files of earlier runs and forked children.
 *
 * Safety: a file is created O_EXCL with mode 0600 in a 0700 directory and
 * flock()ed exclusively by its writer for as long as it may grow; each
 * append is one writev of a checksummed record, cut back on a short write,
 * and fdatasync'd when the caller asks (every batch, so a crash loses
 * nothing that was sealed). Sender thread only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "spool_format.h"

void ml__spool_init(ml__spool *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->fd = -1;
}

int ml__spool_dir(const ml_client_config *cfg, char *out, size_t outlen)
{
    const char *dir =
        cfg->spool_dir && *cfg->spool_dir ? cfg->spool_dir : getenv("MICROLOG_SPOOL_DIR");
    int n;
    if (dir && *dir) {
        n = snprintf(out, outlen, "%s", dir);
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || *home == '\0')
            return -ENOENT;
        n = snprintf(out, outlen, "%s/.microlog/spool", home);
    }
    return n > 0 && (size_t)n < outlen ? 0 : -ENAMETOOLONG;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdirs(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int ml__spool_append(ml__spool *sp, uint32_t kind, uint64_t seq, uint64_t call_id,
                     const uint8_t *data, size_t len, bool sync)
{
    uint8_t hdr[ML_SPOOL_HEADER];
    if (sp->fd < 0)
        return -EBADF;
    if (len > ML_SPOOL_MAX_RECORD)
        return -EMSGSIZE;
    ml_spool_header_encode(hdr, kind, seq, call_id, data, len);
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)data, len}};
    size_t want = sizeof(hdr) + len;
    ssize_t n;
    do
        n = pwritev(sp->fd, iov, 2, (off_t)sp->size);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)want) {
        int err = n < 0 ? -errno : -ENOSPC;
        /* cut the torn record so the next append starts at a record boundary */
        if (ftruncate(sp->fd, (off_t)sp->size) != 0) {
            /* the reader stops at the torn record anyway */
        }
        return err;
    }
    if (sync && fdatasync(sp->fd) != 0)
        return -errno;
    sp->size += want;
    sp->records++;
    return 0;
}

int ml__spool_create(ml__spool *sp, const char *dir, const char *uid, const char *server)
{
    int rv = mkdirs(dir);
    if (rv != 0)
        return rv;
    for (unsigned n = 1; n < 10000; n++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s-%u-%d%s", dir, uid, n, (int)getpid(),
                     ML_SPOOL_SUFFIX) >= (int)sizeof(path))
            return -ENAMETOOLONG;
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return -errno;
        /* the writer's lock: importers skip the file while it is held */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 ||
            pwrite(fd, ML_SPOOL_FILE_MAGIC, ML_SPOOL_FILE_MAGIC_LEN, 0) !=
                ML_SPOOL_FILE_MAGIC_LEN) {
            rv = errno ? -errno : -EIO;
            close(fd);
            unlink(path);
            return rv;
        }
        if ((sp->path = strdup(path)) == NULL) {
            close(fd);
            unlink(path);
            return -ENOMEM;
        }
        sp->fd = fd;
        sp->size = ML_SPOOL_FILE_MAGIC_LEN;
        sp->off = sp->size;
        sp->records = 0;
        rv = ml__spool_append(sp, ML_SPOOL_META, 0, 0, (const uint8_t *)server, strlen(server),
                              true);
        if (rv != 0) {
            ml__spool_remove(sp);
            return rv;
        }
        sync_dir(dir);
        return 0;
    }
    return -EEXIST;
}

void ml__spool_close(ml__spool *sp)
{
    if (sp->fd >= 0)
        close(sp->fd); /* releases the lock: importers may take the file now */
    sp->fd = -1;
}

void ml__spool_remove(ml__spool *sp)
{
    if (sp->path != NULL && sp->fd >= 0)
        unlink(sp->path); /* under the lock: nobody else is reading it */
    ml__spool_close(sp);
    free(sp->path);
    sp->path = NULL;
    sp->size = sp->off = 0;
    sp->records = 0;
}

void ml__spool_free(ml__spool *sp)
{
    ml__spool_close(sp);
    free(sp->path);
    sp->path = NULL;
}

int ml__spool_read(const ml__spool *sp, uint64_t off, ml_spool_rec *rec, uint8_t **data,
                   uint64_t *next)
{
    uint8_t hdr[ML_SPOOL_HEADER];
    ssize_t n = pread(sp->fd, hdr, sizeof(hdr), (off_t)off);
    if (n == 0)
        return -ENODATA;
    if (n != (ssize_t)sizeof(hdr) || !ml_spool_header_decode(hdr, rec))
        return -EBADMSG;
    uint8_t *buf = malloc(rec->len ? rec->len : 1);
    if (buf == NULL)
        return -ENOMEM;
    n = pread(sp->fd, buf, rec->len, (off_t)(off + sizeof(hdr)));
    if (n != (ssize_t)rec->len || !ml_spool_payload_ok(hdr, buf, rec->len)) {
        free(buf);
        return -EBADMSG;
    }
    *data = buf;
    *next = off + sizeof(hdr) + rec->len;
    return 0;
}

int ml__spool_open_leftover(ml__spool *sp, const char *path, char *server, size_t serverlen)
{
    char magic[ML_SPOOL_FILE_MAGIC_LEN];
    struct stat a, b;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -EAGAIN; /* its writer is alive, or another reader has it */
    }
    /* the path may have been removed and reused while we waited */
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev ||
        !S_ISREG(a.st_mode) || pread(fd, magic, sizeof(magic), 0) != (ssize_t)sizeof(magic) ||
        memcmp(magic, ML_SPOOL_FILE_MAGIC, sizeof(magic)) != 0) {
        close(fd);
        return -EBADMSG;
    }
    ml__spool_init(sp);
    sp->fd = fd;
    sp->size = (uint64_t)a.st_size;
    sp->off = ML_SPOOL_FILE_MAGIC_LEN;
    ml_spool_rec rec;
    uint8_t *data;
    uint64_t next;
    int rv = ml__spool_read(sp, sp->off, &rec, &data, &next);
    if (rv == 0 && rec.kind != ML_SPOOL_META) {
        free(data); /* leaked before (found by tests/fuzz/fuzz_spool) */
        rv = -EBADMSG;
    }
    if (rv == 0) {
        size_t n = rec.len < serverlen - 1 ? rec.len : serverlen - 1;
        memcpy(server, data, n);
        server[n] = '\0';
        free(data);
        sp->off = next;
    }
    if (rv != 0 || (sp->path = strdup(path)) == NULL) {
        close(fd);
        sp->fd = -1;
        return rv ? rv : -ENOMEM;
    }
    return 0;
}

int ml__spool_find_leftover(const char *dir, const char *own_path, const char *server,
                            const char *prefix, const ml__spool_skip *skip, ml__spool *out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int rv = -ENOENT;
    size_t suffix = strlen(ML_SPOOL_SUFFIX);
    if (d == NULL)
        return -errno;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char path[PATH_MAX], meta[512];
        if (len <= suffix || strcmp(e->d_name + len - suffix, ML_SPOOL_SUFFIX) != 0)
            continue;
        if (prefix != NULL && strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        if (own_path != NULL && strcmp(path, own_path) == 0)
            continue;
        bool skipped = false;
        for (size_t i = 0; i < skip->n; i++)
            skipped |= skip->ino[i] == (uint64_t)e->d_ino;
        if (skipped)
            continue;
        ml__spool sp;
        if (ml__spool_open_leftover(&sp, path, meta, sizeof(meta)) != 0)
            continue;
        if (strcmp(meta, server) != 0) { /* meant for another collector */
            ml__spool_free(&sp);
            continue;
        }
        *out = sp;
        rv = 0;
        break;
    }
    closedir(d);
    return rv;
}

void ml__spool_skip_add(ml__spool_skip *skip, const ml__spool *sp)
{
    struct stat st;
    if (sp->fd < 0 || fstat(sp->fd, &st) != 0)
        return;
    skip->ino[skip->next++ % ML__SPOOL_SKIP_MAX] = (uint64_t)st.st_ino;
    if (skip->n < ML__SPOOL_SKIP_MAX)
        skip->n++;
}
