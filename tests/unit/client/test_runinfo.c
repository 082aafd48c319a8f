/*
 * Run identity and configuration (client/src/runinfo.c, client.c): label
 * cleaning, the local timestamp, the random uid, the provisional run id,
 * the environment read by ml_client_config_init, and argument checks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../client/src/internal.h"

static void check_label(const char *in, const char *want)
{
    char out[ML__LABEL_MAX + 1];
    ml__label_clean(in, out);
    assert_string_equal(out, want);
}

static void test_label_cleaning(void **state)
{
    check_label("train-model_v2.1", "train-model_v2.1");
    check_label("my app/run #3", "my_app_run__3");
    check_label("", "run");
    check_label(NULL, "run");
    check_label("caf\xc3\xa9", "caf__"); /* one '_' per byte */
    check_label("a\tb\nc", "a_b_c");
    char longer[300];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    char out[ML__LABEL_MAX + 1];
    ml__label_clean(longer, out);
    assert_int_equal(strlen(out), ML__LABEL_MAX);
}

static void test_timestamp(void **state)
{
    assert_true(ml__timestamp_valid("2024_02_29_23_59_01"));
    assert_false(ml__timestamp_valid("2024-02-29_23_59_01"));
    assert_false(ml__timestamp_valid("2024_02_29_23_59_0"));
    assert_false(ml__timestamp_valid("2024_02_29_23_59_011"));
    assert_false(ml__timestamp_valid(NULL));

    setenv("TZ", "UTC", 1);
    tzset();
    char ts[20];
    ml__timestamp_format(1700000000123456, ts);
    assert_string_equal(ts, "2023_11_14_22_13_20");
    assert_true(ml__timestamp_valid(ts));
}

static void test_uid_random(void **state)
{
    char a[33], b[33];
    ml__uid_random(a);
    ml__uid_random(b);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
}

static ml_client_config quiet_config(void)
{
    ml_client_config cfg;
    ml_client_config_init(&cfg);
    cfg.ingest = "ipc:///nonexistent/microlog-test.ipc";
    cfg.quiet = true;
    return cfg;
}

static void test_provisional_run_id(void **state)
{
    ml_client_config cfg = quiet_config();
    ml_run_info run = {.label = "my app", .timestamp = "2024_01_02_03_04_05"};
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, &run, &c), 0);
    assert_string_equal(ml_client_run_id(c), "my_app/2024_01_02_03_04_05");
    assert_int_equal(strlen(ml_client_run_uid(c)), 32);
    ml_client_result res;
    assert_int_not_equal(ml_client_close(c, 0, 0, &res), 0);
    assert_string_equal(res.run_id, "my_app/2024_01_02_03_04_05");
    assert_false(res.delivered);
    ml_client_free(c);
}

static void test_defaults_from_the_system(void **state)
{
    ml_client_config cfg = quiet_config();
    ml__run r;
    assert_int_equal(ml__run_init(&r, NULL), 0);
    assert_string_equal(r.label, "run");
    assert_true(ml__timestamp_valid(r.timestamp));
    assert_int_equal(r.pid, (int32_t)getpid());
    assert_true(r.host[0] != '\0');
    assert_true(r.user[0] != '\0');
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    assert_true(llabs(r.start_unix_us - (int64_t)now.tv_sec * 1000000) < 5000000);
    ml__run_close(&r);

    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    const char *id = ml_client_run_id(c);
    assert_memory_equal(id, "run/", 4);
    assert_true(ml__timestamp_valid(id + 4));
    ml_client_free(c);
}

static void test_given_uid_and_bad_values(void **state)
{
    ml_client_config cfg = quiet_config();
    ml_run_info run = {.run_uid = "0123456789ABCDEF0123456789abcdef"};
    ml_client *c = NULL;
    assert_int_equal(ml_client_new(&cfg, &run, &c), 0);
    assert_string_equal(ml_client_run_uid(c), "0123456789abcdef0123456789abcdef");
    ml_client_free(c);

    ml_client *untouched = (ml_client *)&run;
    run.run_uid = "0123";
    assert_int_equal(ml_client_new(&cfg, &run, &untouched), -EINVAL);
    run.run_uid = "0123456789abcdef0123456789abcdeg";
    assert_int_equal(ml_client_new(&cfg, &run, &untouched), -EINVAL);
    run.run_uid = NULL;
    run.timestamp = "yesterday";
    assert_int_equal(ml_client_new(&cfg, &run, &untouched), -EINVAL);
    assert_ptr_equal(untouched, (ml_client *)&run); /* *out untouched on error */
    run.timestamp = NULL;
    cfg.flush_interval_ms = 0;
    assert_int_equal(ml_client_new(&cfg, &run, &untouched), -EINVAL);
    cfg = quiet_config();
    cfg.connect_timeout_ms = 0;
    assert_int_equal(ml_client_new(&cfg, &run, &untouched), -EINVAL);
    assert_int_equal(ml_client_new(&cfg, &run, NULL), -EINVAL);
}

static void test_config_from_environment(void **state)
{
    ml_client_config cfg;
    unsetenv("MICROLOG_SERVER");
    unsetenv("MICROLOG_INGEST");
    unsetenv("MICROLOG_TOKEN");
    ml_client_config_init(&cfg);
    assert_string_equal(cfg.server, ML_DEFAULT_SERVER);
    assert_null(cfg.ingest);
    assert_null(cfg.token);
    assert_int_equal(cfg.flush_interval_ms, 250);
    assert_int_equal(cfg.batch_max_bytes, 256u << 10);
    assert_int_equal(cfg.buffer_max_bytes, 32u << 20);
    assert_int_equal(cfg.connect_timeout_ms, 2000);
    assert_false(cfg.quiet);

    setenv("MICROLOG_SERVER", "https://microlog.example.com", 1);
    setenv("MICROLOG_INGEST", "tcp://127.0.0.1:9", 1);
    setenv("MICROLOG_TOKEN", "s3cret", 1);
    ml_client_config_init(&cfg);
    assert_string_equal(cfg.server, "https://microlog.example.com");
    assert_string_equal(cfg.ingest, "tcp://127.0.0.1:9");
    assert_string_equal(cfg.token, "s3cret");
    setenv("MICROLOG_SERVER", "", 1); /* empty means unset */
    ml_client_config_init(&cfg);
    assert_string_equal(cfg.server, ML_DEFAULT_SERVER);
    unsetenv("MICROLOG_SERVER");
    unsetenv("MICROLOG_INGEST");
    unsetenv("MICROLOG_TOKEN");
}

static void test_clock(void **state)
{
    ml_client_config cfg = quiet_config();
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    int64_t a = ml_client_now(c);
    usleep(20000);
    int64_t b = ml_client_now(c);
    assert_true(a >= 0 && a < 1000000);
    assert_true(b - a >= 20000 && b - a < 2000000);
    ml_client_free(c);
}

static void test_open_run_message(void **state)
{
    const char *argv[] = {"script.py", "--flag", "b\xffyte"};
    const char *keys[] = {"HOME", "API_KEY"}, *values[] = {"/root", "********"};
    ml_run_info info = {.label = "lbl",
                        .timestamp = "2024_01_02_03_04_05",
                        .start_unix_us = 1704164645000000,
                        .host = "box",
                        .user = "ann",
                        .pid = 4242,
                        .argv = argv,
                        .argc = 3,
                        .executable = "/usr/bin/python3",
                        .python_version = "3.11.7",
                        .parent_id = "ffffffffffffffffffffffffffffffff",
                        .sample_period = 0.05,
                        .status_period = 0.1,
                        .memory_period = 1.0,
                        .env_keys = keys,
                        .env_values = values,
                        .env_count = 2};
    ml__run r;
    assert_int_equal(ml__run_init(&r, &info), 0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(ml__run_pack_open(&r, 5, "tok", &buf, &len), 0);
    ml_wire_msg w;
    assert_int_equal(ml_wire_unpack(buf, len, &w), 0);
    assert_string_equal(w.env->method, ML_METHOD_OPEN_RUN);
    assert_string_equal(w.env->token, "tok");
    Microlog__V1__OpenRun *m = microlog__v1__open_run__unpack(NULL, w.payload_len, w.payload);
    assert_non_null(m);
    assert_string_equal(m->run_uid, r.uid);
    assert_string_equal(m->label, "lbl");
    assert_string_equal(m->timestamp, "2024_01_02_03_04_05");
    assert_int_equal(m->start_unix_us, 1704164645000000);
    assert_string_equal(m->host, "box");
    assert_string_equal(m->user, "ann");
    assert_int_equal(m->pid, 4242);
    assert_int_equal(m->n_argv, 3);
    assert_string_equal(m->argv[1], "--flag");
    assert_string_equal(m->argv[2], "b\xef\xbf\xbdyte");
    assert_string_equal(m->executable, "/usr/bin/python3");
    assert_string_equal(m->python_version, "3.11.7");
    assert_string_equal(m->parent_id, "ffffffffffffffffffffffffffffffff");
    assert_true(m->sample_period == 0.05 && m->status_period == 0.1 && m->memory_period == 1.0);
    assert_int_equal(m->n_env, 2);
    assert_string_equal(m->env[1]->key, "API_KEY");
    assert_string_equal(m->env[1]->value, "********");
    assert_string_equal(m->client_version, ML_CLIENT_VERSION);
    microlog__v1__open_run__free_unpacked(m, NULL);
    ml_wire_msg_free(&w);
    free(buf);
    ml__run_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_cleaning),
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_uid_random),
        cmocka_unit_test(test_provisional_run_id),
        cmocka_unit_test(test_defaults_from_the_system),
        cmocka_unit_test(test_given_uid_and_bad_values),
        cmocka_unit_test(test_config_from_environment),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_open_run_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
