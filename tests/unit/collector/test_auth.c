/* The tokens file (auth.h) and the per-token rate buckets (limits_ingest.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "limits_ingest.h"

#define TA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TB "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void empty(ml_auth *a)
{
    memset(a, 0, sizeof(*a));
    ml_map_init(&a->by_token);
}

static void test_parse_ok(void **state)
{
    ml_auth a;
    char err[300] = "";
    empty(&a);
    assert_int_equal(ml_auth_parse(&a,
                                   "# comment\n\n" TA " team-a alice write\n" TB
                                   "\tops root@x admin # trailing\n",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(a.nentries, 2);
    const ml_principal *p = ml_auth_find(&a, TA, strlen(TA));
    assert_non_null(p);
    assert_string_equal(p->team, "team-a");
    assert_string_equal(p->user, "alice");
    assert_int_equal(p->role, ML_ROLE_WRITE);
    p = ml_auth_find(&a, TB, strlen(TB));
    assert_int_equal(p->role, ML_ROLE_ADMIN);
    assert_true(ml_principal_sees(p, "anyone"));
    assert_null(ml_auth_find(&a, TA, strlen(TA) - 1)); /* a prefix is not the token */
    assert_null(ml_auth_find(&a, "", 0));
    assert_null(ml_auth_find(&a, TA "\0x", strlen(TA) + 2));
    ml_auth_dispose(&a);
}

static void test_parse_refuses_bad_lines(void **state)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {TA " team-a alice\n", "line 1: want 4 fields"},
        {"\n" TA " team-a alice root\n", "line 2: bad role"},
        {"short team-a alice read\n", "line 1: bad token"},
        {TA " ../etc alice read\n", "line 1: bad team"},
        {TA " .. alice read\n", "line 1: bad team"},
        {TA " a/b alice read\n", "line 1: bad team"},
        {TA " t al/ice read\n", "line 1: bad user"},
        {TA " t alice read\n" TA " u bob read\n", "line 2: token listed twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ml_auth a;
        char err[300] = "";
        empty(&a);
        assert_int_equal(ml_auth_parse(&a, bad[i].text, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, bad[i].why));
        assert_int_equal(a.nentries, 0); /* nothing half-loaded */
        ml_auth_dispose(&a);
    }
}

static void test_reload_keeps_old_on_error(void **state)
{
    char path[] = "/tmp/ml_test_auth_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(TA " team-a alice write\n" TB " team-b bob read\n", f);
    fclose(f);
    ml_auth a;
    char err[300];
    assert_int_equal(ml_auth_load(&a, path, err, sizeof(err)), 0);
    assert_non_null(ml_auth_find(&a, TB, strlen(TB)));
    /* Revocation: TB gone after the reload. */
    f = fopen(path, "w");
    fputs(TA " team-a alice write\n", f);
    fclose(f);
    assert_int_equal(ml_auth_reload(&a, err, sizeof(err)), 0);
    assert_null(ml_auth_find(&a, TB, strlen(TB)));
    assert_non_null(ml_auth_find(&a, TA, strlen(TA)));
    /* A broken file: the previous table stays. */
    f = fopen(path, "w");
    fputs("garbage\n", f);
    fclose(f);
    assert_int_equal(ml_auth_reload(&a, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 1"));
    assert_non_null(ml_auth_find(&a, TA, strlen(TA)));
    ml_auth_dispose(&a);
    unlink(path);
    assert_int_not_equal(ml_auth_load(&a, path, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "cannot read"));
    ml_auth_dispose(&a);
}

static void test_rate_buckets_are_per_token(void **state)
{
    ml_rate r;
    ml_limits l = {.rate_bytes = 1000, .burst_bytes = 2000};
    uint64_t retry = 0;
    ml_rate_init(&r);
    assert_true(ml_rate_take(&r, &l, TA, 2000, 0, &retry));
    assert_false(ml_rate_take(&r, &l, TA, 500, 0, &retry));
    assert_in_range(retry, 490, 510);
    assert_true(ml_rate_take(&r, &l, TB, 2000, 0, &retry));  /* another token: untouched */
    assert_true(ml_rate_take(&r, &l, TA, 500, 600, &retry)); /* refilled 600 bytes */
    /* Larger than the bucket: passes once the bucket is full. */
    assert_true(ml_rate_take(&r, &l, TB, 5000, 10000, &retry));
    assert_false(ml_rate_take(&r, &l, TB, 1, 10000, &retry));
    ml_limits none = {0};
    assert_true(ml_rate_take(&r, &none, TA, 1u << 30, 0, &retry));
    ml_rate_dispose(&r);
    uint64_t v;
    assert_int_equal(ml_parse_bytes("64K", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(ml_parse_bytes("-1", &v), -EINVAL);
    assert_int_equal(ml_parse_bytes("5X", &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_refuses_bad_lines),
        cmocka_unit_test(test_reload_keeps_old_on_error),
        cmocka_unit_test(test_rate_buckets_are_per_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
