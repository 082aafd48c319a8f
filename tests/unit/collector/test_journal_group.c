/* journal.c, group commit in steps: tickets, a failed sync's cut and the
 * broken state it leaves, references keeping the file open. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"
#include "journal.h"
#include "mem.h"

static int count(void *arg, uint8_t type, const uint8_t *p, size_t n, uint64_t off)
{
    (void)type, (void)p, (void)n, (void)off;
    ++*(size_t *)arg;
    return 0;
}

static size_t records(const char *path)
{
    size_t n = 0;
    uint64_t off = 0;
    assert_int_equal(ml_journal_read(path, &off, count, &n, NULL), 0);
    return n;
}

static char *temp_path(char **dir)
{
    char tmpl[] = "/tmp/ml_test_jgroup_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    *dir = ml_xstrdup(tmpl);
    return ml_xasprintf("%s/j.mlj", tmpl);
}

/* A ticket covers what was appended before it; later records wait for the
 * next one. A reference keeps the journal usable after the owner closed. */
static void test_ticket_covers_prefix(void **state)
{
    (void)state;
    char *dir, *path = temp_path(&dir);
    ml_journal *j;
    ml_journal_ticket t;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_int_equal(ml_journal_sync_begin(j, &t), 1); /* nothing pending */
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "a", 1, false), 0);
    assert_int_equal(ml_journal_sync_begin(j, &t), 0);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "bb", 2, false), 0);
    ml_journal_ref(j); /* as a group in flight does */
    assert_int_equal(ml_journal_sync_fd(j), 0);
    assert_int_equal(ml_journal_sync_end(j, &t, 0), 0);
    assert_true(ml_journal_pending(j)); /* "bb" came after the ticket */
    ml_journal_ticket t2;
    assert_int_equal(ml_journal_sync_begin(j, &t2), 0);
    ml_journal_close(j); /* the owner lets go; the group's reference remains */
    assert_int_equal(ml_journal_sync_end(j, &t2, ml_journal_sync_fd(j)), 0);
    assert_false(ml_journal_pending(j));
    assert_false(ml_journal_broken(j));
    ml_journal_close(j);
    assert_int_equal(records(path), 2);
    ml_remove_tree(dir);
    free(path);
    free(dir);
}

/* A failed fdatasync cuts back to the last durable record; the journal is
 * broken and reports the loss to every later sync (a group that still
 * holds records of it must not ack them). */
static void test_failed_sync_cuts_and_sticks(void **state)
{
    (void)state;
    char *dir, *path = temp_path(&dir);
    ml_journal *j;
    ml_journal_ticket t;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "a", 1, true), 0);
    uint64_t durable = ml_journal_size(j);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "b", 1, false), 0);
    assert_int_equal(ml_journal_sync_begin(j, &t), 0);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "c", 1, false), 0);
    assert_int_equal(ml_journal_sync_end(j, &t, -EIO), -EIO); /* the worker's fdatasync failed */
    assert_true(ml_journal_broken(j));
    assert_int_equal(ml_journal_size(j), durable);
    assert_int_equal(ml_journal_sync_begin(j, &t), -EIO); /* "c" was lost too */
    assert_int_equal(ml_journal_sync(j), -EIO);
    ml_journal_close(j);
    assert_int_equal(records(path), 1);
    ml_remove_tree(dir);
    free(path);
    free(dir);
}

/* A synced append that fails cuts records a ticket in flight covers: the
 * ticket's end reports it even though its own fdatasync succeeded. */
static void test_cut_during_ticket(void **state)
{
    (void)state;
    char *dir, *path = temp_path(&dir);
    ml_journal *j;
    ml_journal_ticket t;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "a", 1, false), 0);
    assert_int_equal(ml_journal_sync_begin(j, &t), 0);
    /* An oversized record is refused before anything is written: no cut. */
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "x", ML_JOURNAL_MAX_PAYLOAD + 1, true),
                     -EINVAL);
    assert_int_equal(ml_journal_sync_end(j, &t, ml_journal_sync_fd(j)), 0);
    assert_false(ml_journal_broken(j));
    /* Now a real cut between begin and end (a failed sync of another
     * ticket): the first ticket's end must not report success. */
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "b", 1, false), 0);
    ml_journal_ticket t1, t2;
    assert_int_equal(ml_journal_sync_begin(j, &t1), 0);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_BATCH, "c", 1, false), 0);
    assert_int_equal(ml_journal_sync_begin(j, &t2), 0);
    assert_int_equal(ml_journal_sync_end(j, &t2, -EIO), -EIO);
    assert_int_equal(ml_journal_sync_end(j, &t1, 0), -EIO);
    ml_journal_close(j);
    assert_int_equal(records(path), 1);
    ml_remove_tree(dir);
    free(path);
    free(dir);
}

static void test_note_group(void **state)
{
    (void)state;
    char *dir, *path = temp_path(&dir);
    ml_journal *j;
    assert_int_equal(ml_journal_open(path, &j), 0);
    assert_true(ml_journal_note_group(j, 1));
    assert_false(ml_journal_note_group(j, 1));
    assert_true(ml_journal_note_group(j, 2));
    ml_journal_close(j);
    ml_remove_tree(dir);
    free(path);
    free(dir);
}

/* A journal created for a new run syncs nothing by itself: its header and
 * OpenRun record are pending until the group's sync, and a failed sync
 * cuts the file back to nothing (reopening starts it over). */
static void test_create_is_pending_until_synced(void **state)
{
    (void)state;
    char *dir, *path = temp_path(&dir);
    ml_journal *j;
    ml_journal_ticket t;
    assert_int_equal(ml_journal_create(path, &j), 0);
    assert_int_equal(ml_journal_create(path, &j), -EEXIST);
    assert_true(ml_journal_pending(j));
    assert_int_equal(ml_journal_size(j), ML_JOURNAL_HEADER_SIZE);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_OPEN_RUN, "o", 1, false), 0);
    assert_int_equal(ml_journal_sync_begin(j, &t), 0);
    assert_int_equal(ml_journal_sync_end(j, &t, -EIO), -EIO);
    assert_true(ml_journal_broken(j));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    ml_journal_close(j);
    assert_int_equal(ml_journal_open(path, &j), 0); /* starts over with a header */
    assert_int_equal(ml_journal_size(j), ML_JOURNAL_HEADER_SIZE);
    assert_false(ml_journal_pending(j));
    ml_journal_close(j);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(ml_journal_create(path, &j), 0);
    assert_int_equal(ml_journal_append(j, ML_JOURNAL_OPEN_RUN, "o", 1, false), 0);
    assert_int_equal(ml_journal_sync(j), 0);
    assert_false(ml_journal_pending(j));
    ml_journal_close(j);
    assert_int_equal(records(path), 1);
    ml_remove_tree(dir);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticket_covers_prefix),
        cmocka_unit_test(test_failed_sync_cuts_and_sticks),
        cmocka_unit_test(test_cut_during_ticket),
        cmocka_unit_test(test_note_group),
        cmocka_unit_test(test_create_is_pending_until_synced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
