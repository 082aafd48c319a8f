/* Run identity validation: nothing a client sends may name a path outside
 * the data dir. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runid.h"

static void test_labels(void **state)
{
    assert_true(ml_label_valid("train"));
    assert_true(ml_label_valid("my-app_v1.2"));
    assert_true(ml_label_valid("..."));
    assert_true(ml_label_valid(".hidden"));
    char longest[ML_LABEL_MAX + 2];
    memset(longest, 'a', ML_LABEL_MAX);
    longest[ML_LABEL_MAX] = '\0';
    assert_true(ml_label_valid(longest));
    longest[ML_LABEL_MAX] = 'a';
    longest[ML_LABEL_MAX + 1] = '\0';
    assert_false(ml_label_valid(longest));

    const char *bad[] = {"",       ".",   "..", "a/b", "/etc", "a\\b", "a b",
                         "%2e%2e", "a\n", "é",  "a:b", "~",    "a*",   "../x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(ml_label_valid(bad[i]));
    assert_false(ml_label_valid(NULL));
}

static void test_timestamps_and_stamps(void **state)
{
    assert_true(ml_timestamp_valid("2026_11_26_05_30_00"));
    assert_false(ml_timestamp_valid("2026_11_26_05_30_0"));
    assert_false(ml_timestamp_valid("2026_11_26_05_30_000"));
    assert_false(ml_timestamp_valid("2026-11-26_05_30_00"));
    assert_false(ml_timestamp_valid("2026_11_26_05_30_0a"));
    assert_false(ml_timestamp_valid("../../../../../etc/x"));
    assert_false(ml_timestamp_valid(""));

    assert_true(ml_stamp_valid("2026_11_26_05_30_00"));
    assert_true(ml_stamp_valid("2026_11_26_05_30_00-2"));
    assert_true(ml_stamp_valid("2026_11_26_05_30_00-17"));
    assert_true(ml_stamp_valid("2026_11_26_05_30_00-999999"));
    assert_false(ml_stamp_valid("2026_11_26_05_30_00-1"));  /* the first run has no suffix */
    assert_false(ml_stamp_valid("2026_11_26_05_30_00-02")); /* one spelling per number */
    assert_false(ml_stamp_valid("2026_11_26_05_30_00-"));
    assert_false(ml_stamp_valid("2026_11_26_05_30_00-1000000"));
    assert_false(ml_stamp_valid("2026_11_26_05_30_00-2/x"));
    assert_false(ml_stamp_valid("2026_11_26_05_30_00_2"));
}

static void test_uids(void **state)
{
    assert_true(ml_uid_valid("0123456789abcdef0123456789abcdef"));
    assert_true(ml_uid_valid("run-uid_1"));
    assert_false(ml_uid_valid("short"));
    assert_false(ml_uid_valid("../../0123456789"));
    assert_false(ml_uid_valid("0123456789abcdef/123"));
    char longer[70];
    memset(longer, 'a', 65);
    longer[65] = '\0';
    assert_false(ml_uid_valid(longer));
    assert_false(ml_uid_valid(NULL));
}

static void test_run_id_split(void **state)
{
    char label[ML_LABEL_MAX + 1], stamp[ML_STAMP_MAX + 1];
    const char *id = "train/2026_11_26_05_30_00";
    assert_int_equal(ml_run_id_split(id, strlen(id), label, stamp), 0);
    assert_string_equal(label, "train");
    assert_string_equal(stamp, "2026_11_26_05_30_00");
    id = "train/2026_11_26_05_30_00-3/flamegraph";
    assert_int_equal(ml_run_id_split(id, strlen("train/2026_11_26_05_30_00-3"), label, stamp), 0);
    assert_string_equal(stamp, "2026_11_26_05_30_00-3");

    const char *bad[] = {
        "train",
        "train/",
        "/2026_11_26_05_30_00",
        "../2026_11_26_05_30_00",
        "./2026_11_26_05_30_00",
        "a/b/2026_11_26_05_30_00",
        "train/2026_11_26_05_30_00/x",
        "train/..",
        "train/2026_11_26_05_30_00/../../etc",
        "tr ain/2026_11_26_05_30_00",
    };
    strcpy(label, "untouched");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ml_run_id_split(bad[i], strlen(bad[i]), label, stamp), -EINVAL);
    assert_string_equal(label, "untouched");
    /* An embedded NUL is not a label character. */
    const char nul[] = "tr\0in/2026_11_26_05_30_00";
    assert_int_equal(ml_run_id_split(nul, sizeof(nul) - 1, label, stamp), -EINVAL);
}

/* Collectors with distinct ids never produce the same stamp for one
 * timestamp, and every stamp they produce is valid. */
static void test_stamp_make_partitions(void **state)
{
    (void)state;
    const char *ts = "2026_11_26_05_30_00";
    char a[ML_STAMP_MAX + 1], b[ML_STAMP_MAX + 1];
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 0, 1), 0);
    assert_string_equal(a, ts);
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 0, 2), 0);
    assert_string_equal(a, "2026_11_26_05_30_00-2");
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 1, 1), 0);
    assert_string_equal(a, ts);
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 1, 2), 0);
    assert_string_equal(a, "2026_11_26_05_30_00-101");
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 2, 1), 0);
    assert_string_equal(a, "2026_11_26_05_30_00-2");
    for (unsigned k1 = 1; k1 <= ML_COLLECTOR_ID_MAX; k1 += 7)
        for (unsigned k2 = k1 + 1; k2 <= ML_COLLECTOR_ID_MAX; k2 += 5)
            for (unsigned n1 = 1; n1 < 30; n1++)
                for (unsigned n2 = 1; n2 < 30; n2++) {
                    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, k1, n1), 0);
                    assert_int_equal(ml_stamp_make(b, sizeof(b), ts, k2, n2), 0);
                    assert_true(ml_stamp_valid(a));
                    assert_true(ml_stamp_valid(b));
                    assert_string_not_equal(a, b);
                }
    /* Past six digits of N: no more candidates. */
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 99, 10001), -ERANGE);
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 99, 10000), 0);
    assert_string_equal(a, "2026_11_26_05_30_00-999999");
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 100, 1), -ERANGE);
    assert_int_equal(ml_stamp_make(a, sizeof(a), ts, 1, 0), -ERANGE);
    assert_int_equal(ml_stamp_make(a, sizeof(a), "../x", 1, 1), -ERANGE);
}

static void test_collector_id_from_host(void **state)
{
    (void)state;
    assert_int_equal(ml_collector_id_from_host("microlog-0"), 1);
    assert_int_equal(ml_collector_id_from_host("microlog-1"), 2);
    assert_int_equal(ml_collector_id_from_host("microlog-41"), 42);
    const char *other[] = {"build-host", "x", "", "web-123", "db-7a"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        unsigned k = ml_collector_id_from_host(other[i]);
        assert_true(k >= 1 && k <= ML_COLLECTOR_ID_MAX);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_timestamps_and_stamps),
        cmocka_unit_test(test_uids),
        cmocka_unit_test(test_run_id_split),
        cmocka_unit_test(test_stamp_make_partitions),
        cmocka_unit_test(test_collector_id_from_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
