/*
 * Batches (client/src/batch.c, batch_pack.c): records go into columns,
 * sealing takes the pending definitions, and the packed envelope decodes
 * (ml_wire_unpack + microlog__v1__batch__unpack) to the same columns with
 * the time deltas the protocol specifies.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../client/src/internal.h"

/* Packs b and decodes it back; the caller frees with free_batch(). */
static Microlog__V1__Batch *roundtrip(const ml__batch *b, uint64_t seq, bool with_data,
                                      const char *token, ml_wire_msg *w)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(ml__batch_pack(b, "0123456789abcdef0123456789abcdef", seq, with_data, 77,
                                    token, &buf, &len),
                     0);
    assert_int_equal(ml_wire_unpack(buf, len, w), 0);
    free(buf);
    assert_string_equal(w->env->method, ML_METHOD_BATCH);
    assert_int_equal(w->env->call_id, 77);
    assert_string_equal(w->env->token, token ? token : "");
    Microlog__V1__Batch *m = microlog__v1__batch__unpack(NULL, w->payload_len, w->payload);
    assert_non_null(m);
    assert_string_equal(m->run_uid, "0123456789abcdef0123456789abcdef");
    assert_int_equal(m->seq, seq);
    return m;
}

static void free_batch(Microlog__V1__Batch *m, ml_wire_msg *w)
{
    microlog__v1__batch__free_unpacked(m, NULL);
    ml_wire_msg_free(w);
}

static void test_samples_columns_and_deltas(void **state)
{
    ml__batch b;
    ml__batch_init(&b);
    /* times out of order across threads: deltas may be negative */
    const int64_t times[] = {1000, 1050, 1040, 5000, 5000, 4999999};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(ml__batch_add_sample(&b, 1 + (uint32_t)(i % 2), times[i], (uint32_t)i,
                                              (uint32_t)(10 * i)),
                         0);
    ml_wire_msg w;
    Microlog__V1__Batch *m = roundtrip(&b, 3, true, NULL, &w);
    assert_int_equal(m->base_time, 1000);
    Microlog__V1__Samples *s = m->samples;
    assert_non_null(s);
    assert_int_equal(s->n_thread, 6);
    assert_int_equal(s->n_time_delta, 6);
    assert_int_equal(s->n_stack, 6);
    assert_int_equal(s->n_cpu_us, 6);
    int64_t t = m->base_time;
    for (size_t i = 0; i < 6; i++) {
        t += s->time_delta[i];
        assert_int_equal(t, times[i]);
        assert_int_equal(s->thread[i], 1 + i % 2);
        assert_int_equal(s->stack[i], i);
        assert_int_equal(s->cpu_us[i], 10 * i);
    }
    assert_int_equal(s->time_delta[0], 0);
    assert_int_equal(s->time_delta[2], -10);
    free_batch(m, &w);
    ml__batch_close(&b);
}

static void test_status_and_logs(void **state)
{
    ml__batch b;
    ml__batch_init(&b);
    ml_status st = {.time = 42,
                    .cpu_percent = 150.5f,
                    .system_cpu_percent = 12.25f,
                    .rss = 1u << 30,
                    .memory_total = 16ull << 30,
                    .memory_free = 3ull << 30,
                    .modules = 321,
                    .objects = 99999};
    assert_int_equal(ml__batch_add_status(&b, &st), 0);
    assert_int_equal(ml__batch_add_log(&b, 1, 7, ML_LOG_STDOUT, 0, "hello\nworld", 11, 3, NULL), 0);
    assert_int_equal(ml__batch_add_log(&b, 2, 8, ML_LOG_LOGGING, 30, "disk low", 8, 4, "app.io"),
                     0);
    /* invalid UTF-8 and a NUL inside a message must not break the encoding */
    assert_int_equal(ml__batch_add_log(&b, 1, 9, ML_LOG_STDERR, 0, "a\xff\0b", 4, 0, NULL), 0);

    ml_wire_msg w;
    Microlog__V1__Batch *m = roundtrip(&b, 1, true, "tok", &w);
    assert_null(m->samples);
    assert_int_equal(m->n_status, 1);
    Microlog__V1__StatusTick *t = m->status[0];
    assert_int_equal(t->time, 42);
    assert_true(t->cpu_percent == 150.5f && t->system_cpu_percent == 12.25f);
    assert_int_equal(t->rss, 1u << 30);
    assert_int_equal(t->memory_total, 16ull << 30);
    assert_int_equal(t->memory_free, 3ull << 30);
    assert_int_equal(t->modules, 321);
    assert_int_equal(t->objects, 99999);
    assert_int_equal(m->n_logs, 3);
    assert_string_equal(m->logs[0]->message, "hello\nworld");
    assert_int_equal(m->logs[0]->kind, ML_LOG_STDOUT);
    assert_int_equal(m->logs[0]->stack, 3);
    assert_string_equal(m->logs[0]->logger, "");
    assert_string_equal(m->logs[1]->logger, "app.io");
    assert_int_equal(m->logs[1]->level, 30);
    assert_int_equal(m->logs[1]->thread, 2);
    assert_int_equal(m->logs[1]->time, 8);
    assert_string_equal(m->logs[2]->message, "a\xef\xbf\xbd\xef\xbf\xbd"
                                             "b");
    free_batch(m, &w);
    ml__batch_close(&b);
}

static void test_long_log_is_cut_on_a_character(void **state)
{
    ml__batch b;
    ml__batch_init(&b);
    size_t len = ML__LOG_MAX + 10;
    char *msg = malloc(len);
    memset(msg, 'x', len);
    memcpy(msg + ML__LOG_MAX - 1, "\xc3\xa9", 2); /* a character across the limit */
    assert_int_equal(ml__batch_add_log(&b, 1, 1, ML_LOG_STDOUT, 0, msg, len, 0, NULL), 0);
    free(msg);
    ml_wire_msg w;
    Microlog__V1__Batch *m = roundtrip(&b, 1, true, NULL, &w);
    assert_int_equal(strlen(m->logs[0]->message), ML__LOG_MAX - 1);
    assert_true(ml__utf8_valid(m->logs[0]->message, ML__LOG_MAX - 1));
    free_batch(m, &w);
    ml__batch_close(&b);
}

static void test_definitions_travel_with_the_batch(void **state)
{
    ml__intern in;
    ml__batch b;
    ml__intern_init(&in);
    ml__batch_init(&b);
    uint32_t name = ml__intern_string(&in, "pkg.mod.func", 12);
    uint32_t file = ml__intern_string(&in, "/src/pkg/mod.py", 15);
    ml__frame f = {name, file, 40, 31, 1};
    uint32_t fr = ml__intern_frame(&in, &f);
    uint32_t frames[] = {fr, fr};
    uint32_t st = ml__intern_stack(&in, frames, 2, 9);
    uint32_t th = ml__intern_thread(&in, 77, 88, "MainThread", 5);
    assert_int_equal(ml__batch_add_sample(&b, th, 100, st, 3), 0);
    b.dropped_samples = 4;
    b.dropped_logs = 2;
    assert_int_equal(ml__batch_take_defs(&b, &in), 0);

    for (int with_data = 1; with_data >= 0; with_data--) {
        ml_wire_msg w;
        Microlog__V1__Batch *m = roundtrip(&b, 9, with_data, NULL, &w);
        assert_int_equal(m->n_strings, 2);
        assert_int_equal(m->strings[0]->id, 1);
        assert_string_equal(m->strings[0]->value, "pkg.mod.func");
        assert_int_equal(m->strings[1]->id, 2);
        assert_string_equal(m->strings[1]->value, "/src/pkg/mod.py");
        assert_int_equal(m->n_frames, 1);
        assert_int_equal(m->frames[0]->id, 1);
        assert_int_equal(m->frames[0]->name, name);
        assert_int_equal(m->frames[0]->file, file);
        assert_int_equal(m->frames[0]->line, 40);
        assert_int_equal(m->frames[0]->first_line, 31);
        assert_int_equal(m->frames[0]->flags, 1);
        assert_int_equal(m->n_stacks, 1);
        assert_int_equal(m->stacks[0]->n_frames, 2);
        assert_int_equal(m->stacks[0]->truncated, 9);
        assert_int_equal(m->n_threads, 1);
        assert_int_equal(m->threads[0]->ident, 77);
        assert_int_equal(m->threads[0]->native_id, 88);
        assert_string_equal(m->threads[0]->name, "MainThread");
        assert_int_equal(m->threads[0]->started_us, 5);
        assert_int_equal(m->dropped_samples, 4);
        assert_int_equal(m->dropped_logs, 2);
        if (with_data)
            assert_int_equal(m->samples->n_thread, 1);
        else
            assert_null(m->samples); /* definitions only */
        free_batch(m, &w);
    }
    ml__batch_close(&b);
    ml__intern_close(&in);
}

static void test_reset_keeps_capacity(void **state)
{
    ml__batch b;
    ml__batch_init(&b);
    assert_true(ml__batch_empty(&b));
    for (int round = 0; round < 3; round++) {
        unsigned long before = atomic_load(&ml__alloc_count);
        for (int i = 0; i < 1000; i++) {
            assert_int_equal(ml__batch_add_sample(&b, 1, i, 1, 1), 0);
            assert_int_equal(ml__batch_add_log(&b, 1, i, ML_LOG_STDOUT, 0, "line", 4, 0, NULL), 0);
        }
        if (round > 0)
            assert_int_equal(atomic_load(&ml__alloc_count), before);
        assert_false(ml__batch_empty(&b));
        assert_true(b.est_bytes > 1000 * 16);
        ml__batch_reset(&b);
        assert_true(ml__batch_empty(&b));
        assert_int_equal(b.est_bytes, 0);
    }
    ml__batch_close(&b);
}

static void test_out_of_memory_keeps_the_batch_whole(void **state)
{
    ml__batch b;
    ml__batch_init(&b);
    assert_int_equal(ml__batch_add_sample(&b, 1, 1, 1, 1), 0);
    atomic_store(&ml__alloc_budget, 0);
    for (int i = 0; i < 1000; i++)
        if (ml__batch_add_sample(&b, 1, 2, 1, 1) != 0)
            break;
    assert_int_equal(ml__batch_add_log(&b, 1, 1, ML_LOG_STDOUT, 0, "x", 1, 0, NULL), -ENOMEM);
    atomic_store(&ml__alloc_budget, -1);
    assert_int_equal(b.nsamples, b.samples_cap);
    assert_int_equal(b.nlogs, 0);
    assert_int_equal(b.text_len, 0);
    ml_wire_msg w;
    Microlog__V1__Batch *m = roundtrip(&b, 1, true, NULL, &w);
    assert_int_equal(m->samples->n_thread, b.nsamples);
    free_batch(m, &w);
    ml__batch_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_columns_and_deltas),
        cmocka_unit_test(test_status_and_logs),
        cmocka_unit_test(test_long_log_is_cut_on_a_character),
        cmocka_unit_test(test_definitions_travel_with_the_batch),
        cmocka_unit_test(test_reset_keeps_capacity),
        cmocka_unit_test(test_out_of_memory_keeps_the_batch_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
