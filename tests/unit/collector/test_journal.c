/* journal.mlj: write/read round trip, torn-tail recovery, bad records. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"
#include "journal.h"
#include "log.h"
#include "mem.h"

typedef struct rec {
    uint8_t type;
    size_t len;
    uint8_t data[512];
    uint64_t offset;
} rec;

typedef struct collected {
    rec recs[64];
    size_t n;
} collected;

static int collect(void *arg, uint8_t type, const uint8_t *payload, size_t len, uint64_t offset)
{
    collected *c = arg;
    assert_true(c->n < 64);
    assert_true(len <= sizeof(c->recs[0].data));
    rec *r = &c->recs[c->n++];
    r->type = type;
    r->len = len;
    memcpy(r->data, payload, len);
    r->offset = offset;
    return 0;
}

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/ml_test_journal_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return ml_xstrdup(d);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Writes three records of known content; returns the path (caller frees). */
static char *write_three(const char *dir, uint64_t *ends)
{
    char *path = ml_xasprintf("%s/journal.mlj", dir);
    ml_journal *j;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_int_equal(ml_journal_size(j), ML_JOURNAL_HEADER_SIZE);
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_OPEN_RUN, "open", 4, true), 0);
    ends[0] = ml_journal_size(j);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, payload, sizeof(payload), true), 0);
    ends[1] = ml_journal_size(j);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_CLOSE_RUN, "", 0, false), 0);
    ends[2] = ml_journal_size(j);
    ml_journal_close(j);
    return path;
}

static void test_round_trip(void **state)
{
    char *dir = temp_dir();
    uint64_t ends[3];
    char *path = write_three(dir, ends);
    assert_int_equal(file_size(path), (off_t)ends[2]);
    collected c = {0};
    uint64_t off = 0;
    bool torn = true;
    assert_int_equal(ml_journal_read(path, &off, collect, &c, &torn), 0);
    assert_false(torn);
    assert_int_equal(off, ends[2]);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.recs[0].type, ML_JOURNAL_OPEN_RUN);
    assert_int_equal(c.recs[0].len, 4);
    assert_memory_equal(c.recs[0].data, "open", 4);
    assert_int_equal(c.recs[0].offset, ML_JOURNAL_HEADER_SIZE);
    assert_int_equal(c.recs[1].type, ML_JOURNAL_BATCH);
    assert_int_equal(c.recs[1].len, 300);
    assert_int_equal(c.recs[1].data[299], (uint8_t)(299 * 7));
    assert_int_equal(c.recs[2].type, ML_JOURNAL_CLOSE_RUN);
    assert_int_equal(c.recs[2].len, 0);
    /* The layout is the documented one: header, then length|checksum|type. */
    int fd = open(path, O_RDONLY);
    uint8_t head[ML_JOURNAL_HEADER_SIZE + ML_JOURNAL_RECORD_HEADER];
    assert_int_equal(read(fd, head, sizeof(head)), (ssize_t)sizeof(head));
    close(fd);
    assert_memory_equal(head, "MLJ1", 4);
    assert_int_equal(head[4] | head[5] << 8 | head[6] << 16 | head[7] << 24, 4);
    assert_int_equal(head[12], ML_JOURNAL_OPEN_RUN);

    /* Reading on from the end finds nothing new; after an append, only it. */
    c.n = 0;
    assert_int_equal(ml_journal_read(path, &off, collect, &c, &torn), 0);
    assert_int_equal(c.n, 0);
    ml_journal *j;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_int_equal(ml_journal_size(j), ends[2]);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "more", 4, true), 0);
    ml_journal_close(j);
    assert_int_equal(ml_journal_read(path, &off, collect, &c, &torn), 0);
    assert_int_equal(c.n, 1);
    assert_memory_equal(c.recs[0].data, "more", 4);
    assert_int_equal(c.recs[0].offset, ends[2]);

    ml_remove_tree(dir);
    free(path);
    free(dir);
}

/* Cut the file at every byte inside the last two records (a 300-byte batch
 * and an empty CloseRun): the reader keeps the records before the cut and
 * reports a torn tail; reopening for append cuts the tail away so a new
 * record follows the good prefix. */
static void test_torn_tail_every_byte(void **state)
{
    char *dir = temp_dir();
    uint64_t ends[3];
    char *path = write_three(dir, ends);
    char *text;
    size_t len;
    assert_int_equal(ml_read_file(path, 1 << 20, &text, &len), 0);
    ml_log_set_level(ML_LOG_ERROR); /* one "cutting a torn tail" warning per cut */
    for (uint64_t cut = ends[0]; cut < ends[2]; cut++) {
        size_t whole = cut >= ends[1] ? 2 : 1;
        uint64_t good = ends[whole - 1];
        char *p2 = ml_xasprintf("%s/cut.mlj", dir);
        assert_int_equal(ml_write_file_atomic(p2, text, (size_t)cut), 0);
        collected c = {0};
        uint64_t off = 0;
        bool torn = false;
        assert_int_equal(ml_journal_read(p2, &off, collect, &c, &torn), 0);
        assert_int_equal(c.n, whole);
        assert_int_equal(off, good);
        assert_int_equal(torn, cut > good);

        ml_journal *j;
        assert_int_equal(ml_journal_open(p2, &j), 0);
        assert_int_equal(ml_journal_size(j), good);
        assert_int_equal(ml_journal_append(j, ML_JOURNAL_CLOSE_RUN, "end", 3, true), 0);
        ml_journal_close(j);
        c.n = 0;
        off = 0;
        assert_int_equal(ml_journal_read(p2, &off, collect, &c, &torn), 0);
        assert_false(torn);
        assert_int_equal(c.n, whole + 1);
        assert_int_equal(c.recs[whole].type, ML_JOURNAL_CLOSE_RUN);
        assert_memory_equal(c.recs[whole].data, "end", 3);
        assert_int_equal(file_size(p2), (off_t)(good + ML_JOURNAL_RECORD_HEADER + 3));
        free(p2);
    }
    ml_log_set_level(ML_LOG_INFO);
    free(text);
    ml_remove_tree(dir);
    free(path);
    free(dir);
}

/* A flipped payload byte (checksum mismatch) or an unknown type ends the
 * valid prefix; a file that is not a journal is refused, never rewritten. */
static void test_bad_records(void **state)
{
    char *dir = temp_dir();
    uint64_t ends[3];
    char *path = write_three(dir, ends);
    int fd = open(path, O_RDWR);
    uint8_t b;
    off_t at = (off_t)ends[0] + ML_JOURNAL_RECORD_HEADER + 10; /* inside batch payload */
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
    collected c = {0};
    uint64_t off = 0;
    bool torn = false;
    assert_int_equal(ml_journal_read(path, &off, collect, &c, &torn), 0);
    assert_int_equal(c.n, 1);
    assert_true(torn);
    assert_int_equal(off, ends[0]);

    /* Unknown type byte in the first record. */
    fd = open(path, O_RDWR);
    b = 9;
    assert_int_equal(pwrite(fd, &b, 1, ML_JOURNAL_HEADER_SIZE + 8), 1);
    close(fd);
    c.n = 0;
    off = 0;
    assert_int_equal(ml_journal_read(path, &off, collect, &c, &torn), 0);
    assert_int_equal(c.n, 0);
    assert_true(torn);

    /* Not a journal. */
    char *other = ml_xasprintf("%s/other", dir);
    assert_int_equal(ml_write_file_atomic(other, "{\"json\": 1}", 11), 0);
    off = 0;
    assert_int_equal(ml_journal_read(other, &off, collect, &c, &torn), -EBADMSG);
    ml_journal *j;
    assert_int_equal(ml_journal_open(other, &j), -EBADMSG);
    assert_int_equal(file_size(other), 11);
    /* Missing file for reading. */
    char *missing = ml_xasprintf("%s/missing", dir);
    off = 0;
    assert_int_equal(ml_journal_read(missing, &off, collect, &c, &torn), -ENOENT);
    /* Oversized or typeless appends are refused. */
    assert_int_equal(ml_journal_open(missing, &j), 0);
    assert_int_equal(ml_journal_append(j, 0, "x", 1, false), -EINVAL);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "x", ML_JOURNAL_MAX_PAYLOAD + 1, false),
                     -EINVAL);
    assert_int_equal(ml_journal_size(j), ML_JOURNAL_HEADER_SIZE);
    ml_journal_close(j);

    ml_remove_tree(dir);
    free(missing);
    free(other);
    free(path);
    free(dir);
}

/* A header cut short (crash right after creation) is started over. */
static void test_short_header(void **state)
{
    char *dir = temp_dir();
    char *path = ml_xasprintf("%s/j.mlj", dir);
    assert_int_equal(ml_write_file_atomic(path, "ML", 2), 0);
    collected c = {0};
    uint64_t off = 0;
    bool torn = false;
    assert_int_equal(ml_journal_read(path, &off, collect, &c, &torn), 0);
    assert_true(torn);
    assert_int_equal(off, 0);
    ml_journal *j;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_int_equal(ml_journal_size(j), ML_JOURNAL_HEADER_SIZE);
    ml_journal_close(j);
    assert_int_equal(file_size(path), ML_JOURNAL_HEADER_SIZE);
    ml_remove_tree(dir);
    free(path);
    free(dir);
}

/* Group commit: unsynced appends become durable with one sync; after a
 * failed append that had to cut unsynced records, sync reports the loss. */
static void test_group_sync(void **state)
{
    char *dir = temp_dir();
    char *path = ml_xasprintf("%s/j.mlj", dir);
    ml_journal *j;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_false(ml_journal_pending(j));
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "a", 1, false), 0);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "bb", 2, false), 0);
    assert_true(ml_journal_pending(j));
    assert_int_equal(ml_journal_sync(j), 0);
    assert_false(ml_journal_pending(j));
    assert_int_equal(ml_journal_sync(j), 0);
    uint64_t size = ml_journal_size(j);
    assert_int_equal(ml_journal_append(j, 99, "x", 1, false), -EINVAL); /* nothing written */
    assert_int_equal(ml_journal_size(j), size);
    ml_journal_close(j);
    collected c = {0};
    uint64_t off = 0;
    assert_int_equal(ml_journal_read(path, &off, collect, &c, NULL), 0);
    assert_int_equal(c.n, 2);
    free(path);
    ml_remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),           cmocka_unit_test(test_group_sync),
        cmocka_unit_test(test_torn_tail_every_byte), cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_short_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
