/* The index: lookups, newest-first listing, the regex filter (valid,
 * invalid, pathological) and rebuilding from the store. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"
#include "index.h"
#include "log.h"
#include "mem.h"
#include "store.h"

static ml_run *make_run(const char *label, const char *stamp, int64_t start, const char *host,
                        const char *user, const char *uid)
{
    ml_run *r = ml_run_new();
    snprintf(r->label, sizeof(r->label), "%s", label);
    snprintf(r->stamp, sizeof(r->stamp), "%s", stamp);
    snprintf(r->timestamp, sizeof(r->timestamp), "%.19s", stamp);
    snprintf(r->id, sizeof(r->id), "%s/%s", label, stamp);
    strcpy(r->team, "local");
    r->start_unix_us = start;
    r->host = ml_xstrdup(host);
    r->user = ml_xstrdup(user);
    r->uid = ml_xstrdup(uid);
    r->env = json_object();
    return r;
}

static void fill(ml_index *x)
{
    ml_index_init(x);
    assert_int_equal(ml_index_add(x, make_run("train", "2026_01_01_00_00_00", 100, "host-a",
                                              "alice", "uid00000001")),
                     0);
    assert_int_equal(ml_index_add(x, make_run("train", "2026_01_02_00_00_00", 300, "host-b", "bob",
                                              "uid00000002")),
                     0);
    assert_int_equal(ml_index_add(x, make_run("eval", "2026_01_01_12_00_00", 200, "host-b", "alice",
                                              "uid00000003")),
                     0);
}

static void test_add_find(void **state)
{
    ml_index x;
    fill(&x);
    assert_int_equal(ml_index_count(&x), 3);
    ml_run *r = ml_index_find(&x, "eval/2026_01_01_12_00_00");
    assert_non_null(r);
    assert_ptr_equal(ml_index_find_uid(&x, "uid00000003"), r);
    assert_null(ml_index_find(&x, "eval/2026_01_01_12_00_01"));
    assert_null(ml_index_find_uid(&x, "nope"));

    ml_run *dup = make_run("eval", "2026_01_01_12_00_00", 1, "h", "u", "uid-other");
    assert_int_equal(ml_index_add(&x, dup), -EEXIST);
    ml_run_free(dup);
    dup = make_run("eval", "2026_01_01_12_00_00-2", 1, "h", "u", "uid00000003");
    assert_int_equal(ml_index_add(&x, dup), -EEXIST);
    ml_run_free(dup);

    ml_index_remove(&x, r);
    assert_null(ml_index_find(&x, "eval/2026_01_01_12_00_00"));
    assert_null(ml_index_find_uid(&x, "uid00000003"));
    ml_run_free(r);
    assert_int_equal(ml_index_count(&x), 2);
    ml_index_dispose(&x);
}

static size_t list(ml_index *x, const char *pattern, size_t limit, const char **ids)
{
    ml_filter *f = NULL;
    char err[200];
    if (pattern)
        assert_int_equal(ml_filter_compile(pattern, &f, err, sizeof(err)), 0);
    ml_run **runs;
    size_t n = ml_index_list(x, f, limit, &runs);
    for (size_t i = 0; i < n; i++)
        ids[i] = runs[i]->id;
    free(runs);
    ml_filter_free(f);
    return n;
}

static void test_list_and_filter(void **state)
{
    ml_index x;
    fill(&x);
    const char *ids[8];
    assert_int_equal(list(&x, NULL, 0, ids), 3);
    assert_string_equal(ids[0], "train/2026_01_02_00_00_00"); /* newest first */
    assert_string_equal(ids[1], "eval/2026_01_01_12_00_00");
    assert_string_equal(ids[2], "train/2026_01_01_00_00_00");
    assert_int_equal(list(&x, NULL, 2, ids), 2);

    assert_int_equal(list(&x, "^train/", 0, ids), 2);
    assert_string_equal(ids[0], "train/2026_01_02_00_00_00");
    assert_int_equal(list(&x, "host-b", 0, ids), 2);
    assert_int_equal(list(&x, " alice$", 0, ids), 2);
    assert_int_equal(list(&x, "^eval/.* alice$", 0, ids), 1);
    assert_string_equal(ids[0], "eval/2026_01_01_12_00_00");
    assert_int_equal(list(&x, "nobody", 0, ids), 0);
    assert_int_equal(list(&x, "2026_01_0[12]_00", 0, ids), 2);
    ml_index_dispose(&x);
}

static void test_invalid_filter(void **state)
{
    ml_filter *f = (ml_filter *)0x1;
    char err[200] = "";
    assert_int_equal(ml_filter_compile("train(", &f, err, sizeof(err)), -EINVAL);
    assert_ptr_equal(f, (ml_filter *)0x1); /* untouched */
    assert_non_null(strstr(err, "invalid filter"));
    assert_int_equal(ml_filter_compile("[a-", &f, err, sizeof(err)), -EINVAL);
    assert_int_equal(ml_filter_compile("*", &f, err, sizeof(err)), -EINVAL);
    char *huge = ml_xmalloc(ML_FILTER_MAX + 2);
    memset(huge, 'a', ML_FILTER_MAX + 1);
    huge[ML_FILTER_MAX + 1] = '\0';
    assert_int_equal(ml_filter_compile(huge, &f, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "longer"));
    free(huge);
}

/* Exponential backtracking is cut off by the match limit: no match, fast. */
static void test_pathological_filter(void **state)
{
    ml_index x;
    ml_index_init(&x);
    char label[ML_LABEL_MAX + 1];
    memset(label, 'a', ML_LABEL_MAX);
    label[ML_LABEL_MAX] = '\0';
    assert_int_equal(
        ml_index_add(&x, make_run(label, "2026_01_01_00_00_00", 1, "h", "u", "uid00000009")), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const char *ids[2];
    assert_int_equal(list(&x, "^(a|aa)+(a|aa)+$", 0, ids), 0);
    assert_int_equal(list(&x, "^(a+)+b", 0, ids), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 2.0);
    assert_int_equal(list(&x, "^a+/", 0, ids), 1); /* a sane pattern still matches */
    ml_index_dispose(&x);
}

static void test_load_from_store(void **state)
{
    char tmpl[] = "/tmp/ml_test_index_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    ml_store s;
    assert_int_equal(ml_store_init(&s, dir), 0);
    ml_run *a = make_run("train", "2026_01_01_00_00_00", 100, "h", "u", "uid00000001");
    ml_run *b = make_run("train", "2026_01_01_00_00_00-2", 200, "h", "u", "uid00000002");
    b->status = ML_RUN_COMPLETE;
    b->samples = 42;
    b->end_us = 1500000;
    ml_run *c = make_run("eval", "2026_01_03_00_00_00", 300, "h", "u", "uid00000003");
    assert_int_equal(ml_store_create_run_dir(&s, a), 0);
    assert_int_equal(ml_store_create_run_dir(&s, a), -EEXIST);
    assert_int_equal(ml_store_create_run_dir(&s, b), 0);
    assert_int_equal(ml_store_create_run_dir(&s, c), 0);
    assert_int_equal(ml_store_write_meta(&s, a), 0);
    assert_int_equal(ml_store_write_meta(&s, b), 0);
    /* c claims to be a run elsewhere: a tampered file is skipped. */
    snprintf(c->id, sizeof(c->id), "other/2026_01_03_00_00_00");
    snprintf(c->label, sizeof(c->label), "other");
    char *cdir = ml_xasprintf("%s/runs/local/eval/2026_01_03_00_00_00", dir);
    json_t *j = ml_run_to_json(c);
    char *text = json_dumps(j, 0);
    char *cpath = ml_xasprintf("%s/run.json", cdir);
    assert_int_equal(ml_write_file_atomic(cpath, text, strlen(text)), 0);
    /* Directories with names that are not run names are ignored. */
    char *junk = ml_xasprintf("%s/runs/local/train/not-a-stamp", dir);
    assert_int_equal(ml_mkdirs(junk), 0);

    ml_log_set_level(ML_LOG_ERROR);
    ml_index x;
    ml_index_init(&x);
    assert_int_equal(ml_index_load(&x, &s), 2);
    ml_log_set_level(ML_LOG_INFO);
    ml_run *lb = ml_index_find(&x, "train/2026_01_01_00_00_00-2");
    assert_non_null(lb);
    assert_int_equal(lb->status, ML_RUN_COMPLETE);
    assert_int_equal(lb->samples, 42);
    assert_int_equal(lb->end_us, 1500000);
    assert_string_equal(lb->timestamp, "2026_01_01_00_00_00");
    assert_non_null(ml_index_find_uid(&x, "uid00000001"));
    assert_null(ml_index_find(&x, "other/2026_01_03_00_00_00"));

    /* Delete removes the run directory and the emptied label directory. */
    snprintf(c->label, sizeof(c->label), "eval");
    assert_int_equal(ml_store_delete_run(&s, c), 0);
    char *edir = ml_xasprintf("%s/runs/local/eval", dir);
    assert_false(ml_is_dir(cdir));
    assert_false(ml_is_dir(edir));

    ml_index_dispose(&x);
    json_decref(j);
    free(text);
    free(cpath);
    free(cdir);
    free(edir);
    free(junk);
    ml_run_free(a);
    ml_run_free(b);
    ml_run_free(c);
    ml_remove_tree(dir);
    ml_store_dispose(&s);
}

static size_t load_fresh(const char *dir, ml_index *x)
{
    ml_store s;
    assert_int_equal(ml_store_init(&s, dir), 0);
    ml_index_init(x);
    int n = ml_index_load(x, &s);
    assert_true(n >= 0);
    ml_store_dispose(&s);
    return (size_t)n;
}

static void append(const char *path, const char *text)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The index log: start-up reads it instead of the run.json files, it
 * follows writes and deletes, a torn last line is cut, and a corrupt log
 * is rebuilt from the run.json files. */
static void test_index_log(void **state)
{
    char tmpl[] = "/tmp/ml_test_index_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char *logp = ml_xasprintf("%s/%s", dir, ML_INDEX_LOG_FILE);
    ml_store s;
    assert_int_equal(ml_store_init(&s, dir), 0);
    ml_run *runs[3] = {
        make_run("train", "2026_01_01_00_00_00", 100, "h", "u", "uid00000001"),
        make_run("train", "2026_01_02_00_00_00", 200, "h", "u", "uid00000002"),
        make_run("eval", "2026_01_03_00_00_00", 300, "h", "u", "uid00000003"),
    };
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ml_store_create_run_dir(&s, runs[i]), 0);
        assert_int_equal(ml_store_write_meta(&s, runs[i]), 0);
    }
    ml_index x;
    ml_index_init(&x);
    assert_int_equal(ml_index_load(&x, &s), 2); /* no log yet: scanned, log written */
    assert_true(s.log_fd >= 0);
    /* Changes after the load go to the log. */
    assert_int_equal(ml_store_create_run_dir(&s, runs[2]), 0);
    assert_int_equal(ml_store_write_meta(&s, runs[2]), 0);
    runs[1]->status = ML_RUN_COMPLETE;
    runs[1]->samples = 7;
    assert_int_equal(ml_store_write_meta(&s, runs[1]), 0);
    assert_int_equal(ml_store_delete_run(&s, runs[0]), 0);
    ml_index_dispose(&x);
    ml_store_dispose(&s);

    /* run.json of train/..02 removed: only the log still knows it, so a
     * listing that has it proves the log was read. */
    char *meta = ml_xasprintf("%s/runs/local/train/2026_01_02_00_00_00/run.json", dir);
    assert_int_equal(unlink(meta), 0);
    assert_int_equal(load_fresh(dir, &x), 2);
    ml_run *r = ml_index_find(&x, "train/2026_01_02_00_00_00");
    assert_non_null(r);
    assert_int_equal(r->status, ML_RUN_COMPLETE);
    assert_int_equal(r->samples, 7);
    assert_non_null(ml_index_find(&x, "eval/2026_01_03_00_00_00"));
    assert_null(ml_index_find(&x, "train/2026_01_01_00_00_00"));
    ml_index_dispose(&x);

    /* A torn last line (crash mid-append) is cut; the rest stays. */
    append(logp, "{\"put\":{\"id\":");
    ml_log_set_level(ML_LOG_ERROR);
    assert_int_equal(load_fresh(dir, &x), 2);
    ml_index_dispose(&x);
    char *text;
    size_t len;
    assert_int_equal(ml_read_file(logp, 1 << 20, &text, &len), 0);
    assert_true(len > 0 && text[len - 1] == '\n');
    free(text);

    /* Corrupt in the middle: rebuilt from the run.json files (so the run
     * whose run.json was removed is gone now). */
    append(logp, "garbage\n{\"del\":\"local/eval/2026_01_03_00_00_00\"}\n");
    assert_int_equal(load_fresh(dir, &x), 1);
    assert_non_null(ml_index_find(&x, "eval/2026_01_03_00_00_00"));
    ml_index_dispose(&x);
    /* ... and the rebuilt log is sound again. */
    assert_int_equal(load_fresh(dir, &x), 1);
    ml_index_dispose(&x);
    ml_log_set_level(ML_LOG_INFO);

    for (int i = 0; i < 3; i++)
        ml_run_free(runs[i]);
    free(meta);
    free(logp);
    ml_remove_tree(dir);
}

/* Conditions and paging of ml_index_query_run(), parsed from a URL query. */
static void test_query_paging(void **state)
{
    ml_index x;
    ml_index_init(&x);
    char stamp[32], uid[32];
    for (int i = 0; i < 50; i++) {
        snprintf(stamp, sizeof(stamp), "2026_01_01_00_00_%02d", i);
        snprintf(uid, sizeof(uid), "uid%08d", i);
        ml_run *r = make_run(i % 2 ? "odd" : "even", stamp, (int64_t)i * 1000000, "h",
                             i < 10 ? "ann" : "ben", uid);
        r->status = i % 5 == 0 ? ML_RUN_INCOMPLETE : ML_RUN_COMPLETE;
        assert_int_equal(ml_index_add(&x, r), 0);
    }
    ml_index_query q;
    char err[200];
    const char *qs = "label=even&status=complete&offset=2&limit=3";
    assert_int_equal(ml_index_query_parse(&q, qs, strlen(qs), err, sizeof(err)), 0);
    ml_run **runs;
    size_t total;
    size_t n = ml_index_query_run(&x, &q, &runs, &total);
    /* even and not a multiple of 5: 25 - 5 = 20 runs; newest first. */
    assert_int_equal(total, 20);
    assert_int_equal(n, 3);
    assert_string_equal(runs[0]->stamp, "2026_01_01_00_00_44");
    assert_string_equal(runs[2]->stamp, "2026_01_01_00_00_38");
    free(runs);
    ml_index_query_dispose(&q);

    qs = "filter=%5Eodd%2F&user=ann&since=3&until=9";
    assert_int_equal(ml_index_query_parse(&q, qs, strlen(qs), err, sizeof(err)), 0);
    n = ml_index_query_run(&x, &q, &runs, &total);
    assert_int_equal(total, 3); /* 3, 5, 7 */
    assert_int_equal(n, 3);
    assert_string_equal(runs[2]->stamp, "2026_01_01_00_00_03");
    free(runs);
    ml_index_query_dispose(&q);

    qs = "offset=100";
    assert_int_equal(ml_index_query_parse(&q, qs, strlen(qs), err, sizeof(err)), 0);
    n = ml_index_query_run(&x, &q, &runs, &total);
    assert_int_equal(n, 0);
    assert_int_equal(total, 50);
    free(runs);
    ml_index_query_dispose(&q);

    const char *bad[] = {"status=done", "limit=-1", "since=yesterday", "filter=(", "offset=1x"};
    for (size_t i = 0; i < 5; i++) {
        err[0] = '\0';
        assert_int_equal(ml_index_query_parse(&q, bad[i], strlen(bad[i]), err, sizeof(err)),
                         -EINVAL);
        assert_true(err[0] != '\0');
        ml_index_query_dispose(&q);
    }
    ml_index_dispose(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find),        cmocka_unit_test(test_list_and_filter),
        cmocka_unit_test(test_invalid_filter),  cmocka_unit_test(test_pathological_filter),
        cmocka_unit_test(test_load_from_store), cmocka_unit_test(test_index_log),
        cmocka_unit_test(test_query_paging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
