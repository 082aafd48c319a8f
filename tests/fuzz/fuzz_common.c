#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "journal.h"
#include "live.h"
#include "run.h"
#include "validate.h"
#include "recording.h"

static char scratch[256];

static void remove_scratch(void)
{
    if (scratch[0])
        ml_remove_tree(scratch);
}

const char *fuzz_scratch_dir(void)
{
    if (scratch[0])
        return scratch;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(scratch, sizeof(scratch), "%s/ml_fuzz_%d_XXXXXX", base, (int)getpid());
    if (mkdtemp(scratch) == NULL) {
        perror("mkdtemp");
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", fuzz_scratch_dir(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror(path);
            abort();
        }
        off += (size_t)n;
    }
    close(fd);
    return path;
}

uint64_t fuzz_get_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return v;
}

void fuzz_put_varint(FILE *f, uint64_t v)
{
    while (v >= 0x80) {
        fputc((int)(v | 0x80) & 0xff, f);
        v >>= 7;
    }
    fputc((int)v, f);
}

/* A length read from the input, cut to what the input still holds. */
static size_t take_len(const uint8_t **p, const uint8_t *end)
{
    uint64_t n = fuzz_get_varint(p, end);
    size_t left = (size_t)(end - *p);
    return n < left ? (size_t)n : left;
}

static int append_raw(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rv = ml_write_all(fd, p, n);
    close(fd);
    return rv;
}

/* What the ingest does with one record before it journals it
 * (ingest_rpc.c): a record that does not decode, a batch with seq 0 or
 * one already stored, or one ml_batch_validate refuses is not journaled. */
static bool admit(ml_run *run, uint8_t type, const uint8_t *p, size_t n)
{
    ml_live *l = run->live;
    if (type == ML_JOURNAL_OPEN_RUN) {
        Microlog__V1__OpenRun *o = microlog__v1__open_run__unpack(NULL, n, p);
        microlog__v1__open_run__free_unpacked(o, NULL);
        return o != NULL && ml_journal_append(l->journal, type, p, n, false) == 0;
    }
    if (type == ML_JOURNAL_CLOSE_RUN) {
        Microlog__V1__CloseRun *c = microlog__v1__close_run__unpack(NULL, n, p);
        bool ok = c != NULL && ml_journal_append(l->journal, type, p, n, false) == 0;
        if (ok)
            ml_live_commit_close(l, run, c);
        microlog__v1__close_run__free_unpacked(c, NULL);
        return ok;
    }
    Microlog__V1__Batch *b =
        type == ML_JOURNAL_BATCH ? microlog__v1__batch__unpack(NULL, n, p) : NULL;
    char why[200];
    bool ok = b != NULL && b->seq != 0 && !ml_live_has_seq(l, b->seq) &&
              ml_batch_validate(l, b, why, sizeof(why)) == 0 &&
              ml_journal_append(l->journal, type, p, n, false) == 0;
    if (ok)
        ml_live_commit_batch(l, run, b);
    microlog__v1__batch__free_unpacked(b, NULL);
    return ok;
}

int fuzz_sealed_journal(const char *path, const uint8_t *data, size_t size, size_t *records,
                        bool *tail)
{
    const uint8_t *p = data, *end = data + size;
    *records = 0;
    *tail = false;
    if (unlink(path) != 0 && errno != ENOENT)
        return -errno;
    ml_run *run = ml_run_new();
    int rv = ml_live_create(run, path);
    while (rv == 0 && p < end) {
        uint8_t type = *p++;
        if (type == 0) {
            *tail = p < end;
            break;
        }
        size_t n = take_len(&p, end);
        *records += admit(run, type, p, n);
        p += n;
    }
    ml_live_release(run);
    ml_run_free(run);
    if (rv != 0)
        return rv;
    return *tail ? append_raw(path, p, (size_t)(end - p)) : 0;
}

static int64_t get_svarint(const uint8_t **p, const uint8_t *end)
{
    uint64_t u = fuzz_get_varint(p, end);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

int fuzz_sealed_recording(const char *path, const uint8_t *data, size_t size, size_t *sections)
{
    const uint8_t *p = data, *end = data + size;
    /* Every section takes at least its type byte. */
    ml_recording_section *s = calloc(size ? size : 1, sizeof(*s));
    size_t n = 0;
    if (s == NULL)
        abort();
    while (p < end) {
        ml_recording_section *c = &s[n++];
        c->type = *p++;
        c->len = take_len(&p, end);
        c->body = p;
        p += c->len;
        c->t_first = get_svarint(&p, end);
        c->t_last = get_svarint(&p, end);
        c->n = (uint32_t)fuzz_get_varint(&p, end);
    }
    int rv = ml_recording_write_sections(path, s, n);
    free(s);
    *sections = n;
    return rv;
}
