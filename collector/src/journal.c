#include "journal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "fsutil.h"
#include "log.h"
#include "mem.h"

struct ml_journal {
    int fd;
    uint64_t size;   /* invariant: end of the last complete record */
    uint64_t synced; /* invariant: synced <= size; bytes below are durable */
    int lost;        /* -errno when unsynced records were cut away; reported by sync */
    bool broken;     /* records were cut away: the writer's derived state is stale */
    uint64_t cuts;   /* how many times complete records were cut away */
    unsigned refs;   /* the owner's plus one per group sync holding the journal */
    uint64_t group;  /* ml_journal_note_group() */
};

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool type_known(uint8_t type)
{
    return type >= ML_JOURNAL_OPEN_RUN && type <= ML_JOURNAL_CLOSE_RUN;
}

/* pread exactly n bytes; returns n, fewer at end of file, or -errno. */
static ssize_t pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Reads from an open fd; see ml_journal_read(). */
static int read_fd(int fd, uint64_t *offset, ml_journal_record_cb cb, void *arg, bool *torn)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    uint64_t end = (uint64_t)st.st_size, off = *offset;
    int rv = 0;
    *torn = false;
    if (off == 0) {
        uint8_t magic[ML_JOURNAL_HEADER_SIZE];
        ssize_t n = pread_full(fd, magic, sizeof(magic), 0);
        if (n < 0)
            return (int)n;
        if ((size_t)n < sizeof(magic)) {
            /* A header cut short by a crash right after creation. */
            *torn = n > 0;
            return memcmp(magic, ML_JOURNAL_MAGIC, (size_t)n) == 0 ? 0 : -EBADMSG;
        }
        if (memcmp(magic, ML_JOURNAL_MAGIC, sizeof(magic)) != 0)
            return -EBADMSG;
        off = *offset = ML_JOURNAL_HEADER_SIZE;
    }
    uint8_t *buf = NULL;
    size_t cap = 0;
    while (off < end) {
        uint8_t head[ML_JOURNAL_RECORD_HEADER];
        ssize_t n = pread_full(fd, head, sizeof(head), off);
        if (n < 0) {
            rv = (int)n;
            break;
        }
        uint32_t len = (size_t)n == sizeof(head) ? get_u32(head) : 0;
        if ((size_t)n < sizeof(head) || len > ML_JOURNAL_MAX_PAYLOAD || !type_known(head[8]) ||
            end - off - sizeof(head) < len) {
            *torn = true;
            break;
        }
        ml_xgrow((void **)&buf, &cap, (size_t)len + 1, 1);
        buf[0] = head[8];
        if ((n = pread_full(fd, buf + 1, len, off + sizeof(head))) != (ssize_t)len) {
            rv = n < 0 ? (int)n : 0;
            *torn = n >= 0;
            break;
        }
        if (XXH32(buf, (size_t)len + 1, 0) != get_u32(head + 4)) {
            *torn = true;
            break;
        }
        if ((rv = cb(arg, head[8], buf + 1, len, off)) != 0)
            break;
        off += sizeof(head) + len;
        *offset = off;
    }
    free(buf);
    return rv;
}

int ml_journal_read(const char *path, uint64_t *offset, ml_journal_record_cb cb, void *arg,
                    bool *torn)
{
    bool t = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rv = read_fd(fd, offset, cb, arg, &t);
    close(fd);
    if (torn)
        *torn = t;
    return rv;
}

static int count_record(void *arg, uint8_t type, const uint8_t *payload, size_t len,
                        uint64_t offset)
{
    return 0;
}

int ml_journal_open(const char *path, ml_journal **out)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    uint64_t end = 0;
    bool torn = false;
    int rv = read_fd(fd, &end, count_record, NULL, &torn);
    if (rv != 0)
        goto fail;
    if (end == 0) {
        /* New (or a header cut short): start the file over. */
        if (ftruncate(fd, 0) != 0 ||
            (rv = ml_write_all(fd, ML_JOURNAL_MAGIC, ML_JOURNAL_HEADER_SIZE)) != 0 ||
            fdatasync(fd) != 0 || (rv = ml_fsync_parent(path)) != 0) {
            rv = rv ? rv : -errno;
            goto fail;
        }
        end = ML_JOURNAL_HEADER_SIZE;
    } else if (torn) {
        ml_warn("journal %s: cutting a torn tail at offset %llu", path, (unsigned long long)end);
        if (ftruncate(fd, (off_t)end) != 0 || fdatasync(fd) != 0) {
            rv = -errno;
            goto fail;
        }
    }
    ml_journal *j = ml_xcalloc(1, sizeof(*j));
    j->fd = fd;
    j->size = j->synced = end;
    j->refs = 1;
    *out = j;
    return 0;
fail:
    close(fd);
    return rv;
}

int ml_journal_create(const char *path, ml_journal **out)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rv = ml_write_all(fd, ML_JOURNAL_MAGIC, ML_JOURNAL_HEADER_SIZE);
    if (rv != 0) {
        close(fd);
        unlink(path);
        return rv;
    }
    ml_journal *j = ml_xcalloc(1, sizeof(*j));
    j->fd = fd;
    j->size = ML_JOURNAL_HEADER_SIZE;
    j->synced = 0; /* the header is pending like any record: a crash may leave none */
    j->refs = 1;
    *out = j;
    return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Cuts the file back to keep (<= size). Losing complete records (keep <
 * size) is remembered: rv is reported by every later sync (whoever still
 * holds unacknowledged records of this journal must not ack them), the
 * journal is marked broken (the writer reloads from the file into a new
 * journal) and in-flight tickets see the cut (cuts). */
static void cut_back(ml_journal *j, uint64_t keep, int rv)
{
    if (keep < j->size) {
        j->lost = rv;
        j->broken = true;
        j->cuts++;
    }
    if (ftruncate(j->fd, (off_t)keep) != 0)
        ml_error("journal: cannot cut back to %llu: %s", (unsigned long long)keep, strerror(errno));
    j->size = keep;
    if (j->synced > keep)
        j->synced = keep;
}

int ml_journal_append(ml_journal *j, uint8_t type, const void *payload, size_t len, bool sync)
{
    if (!type_known(type) || len > ML_JOURNAL_MAX_PAYLOAD)
        return -EINVAL;
    size_t total = ML_JOURNAL_RECORD_HEADER + len;
    uint8_t *rec = ml_xmalloc(total);
    put_u32(rec, (uint32_t)len);
    rec[8] = type;
    if (len)
        memcpy(rec + ML_JOURNAL_RECORD_HEADER, payload, len);
    put_u32(rec + 4, XXH32(rec + 8, len + 1, 0));
    int rv = pwrite_all(j->fd, rec, total, j->size);
    if (rv == 0 && sync && fdatasync(j->fd) != 0)
        rv = -errno;
    free(rec);
    if (rv != 0) {
        /* Never leave a partial record behind a good prefix. A failed
         * fdatasync may have lost earlier unsynced records too: cut back to
         * what is known durable. */
        cut_back(j, sync ? j->synced : j->size, rv);
        return rv;
    }
    j->size += total;
    if (sync)
        j->synced = j->size;
    return 0;
}

int ml_journal_sync_begin(ml_journal *j, ml_journal_ticket *t)
{
    if (j->lost)
        return j->lost; /* sticky: every group still holding j carries lost records */
    if (j->synced == j->size)
        return 1;
    t->target = j->size;
    t->cuts = j->cuts;
    return 0;
}

int ml_journal_sync_fd(const ml_journal *j)
{
    return fdatasync(j->fd) == 0 ? 0 : -errno;
}

int ml_journal_sync_end(ml_journal *j, const ml_journal_ticket *t, int rv)
{
    if (rv != 0) {
        /* After a failed fdatasync the kernel may have dropped the dirty
         * pages: nothing past the last good sync can be trusted. */
        cut_back(j, j->synced, rv);
        return rv;
    }
    if (t->cuts != j->cuts)
        return -EIO; /* records of the ticket were cut meanwhile (reported there) */
    assert(t->target <= j->size);
    if (t->target > j->synced)
        j->synced = t->target;
    return 0;
}

int ml_journal_sync(ml_journal *j)
{
    ml_journal_ticket t;
    int rv = ml_journal_sync_begin(j, &t);
    if (rv != 0)
        return rv > 0 ? 0 : rv;
    return ml_journal_sync_end(j, &t, ml_journal_sync_fd(j));
}

bool ml_journal_broken(const ml_journal *j)
{
    return j->broken;
}

void ml_journal_ref(ml_journal *j)
{
    j->refs++;
}

bool ml_journal_note_group(ml_journal *j, uint64_t group)
{
    if (j->group == group)
        return false;
    j->group = group;
    return true;
}

bool ml_journal_pending(const ml_journal *j)
{
    return j->synced != j->size || j->lost != 0;
}

uint64_t ml_journal_size(const ml_journal *j)
{
    return j->size;
}

void ml_journal_close(ml_journal *j)
{
    if (j == NULL || --j->refs > 0)
        return;
    close(j->fd);
    free(j);
}
