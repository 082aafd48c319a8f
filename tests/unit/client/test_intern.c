/*
 * Interning (client/src/intern.c): same content -> same id, ids sequential
 * per kind, each definition handed to exactly one sealed batch, no
 * allocation when content is already known, and a clean failure (id 0, no
 * gap in the ids) when memory runs out.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../client/src/internal.h"

static int setup(void **state)
{
    ml__intern *in = test_calloc(1, sizeof(*in));
    ml__intern_init(in);
    *state = in;
    atomic_store(&ml__alloc_budget, -1);
    return 0;
}

static int teardown(void **state)
{
    ml__intern_close(*state);
    test_free(*state);
    atomic_store(&ml__alloc_budget, -1);
    return 0;
}

static void test_strings_same_content_same_id(void **state)
{
    ml__intern *in = *state;
    uint32_t a = ml__intern_string(in, "alpha", 5);
    uint32_t b = ml__intern_string(in, "beta", 4);
    char copy[] = "alpha";
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_int_equal(ml__intern_string(in, copy, 5), a);
    /* length, not NUL, delimits: a prefix and embedded NULs are other strings */
    assert_int_equal(ml__intern_string(in, "alpha", 4), 3);
    assert_int_equal(ml__intern_string(in, "a\0b", 3), 4);
    assert_int_equal(ml__intern_string(in, "a\0c", 3), 5);
    assert_int_equal(ml__intern_string(in, "", 0), 6);
    assert_int_equal(ml__intern_string(in, NULL, 0), 6);
    assert_int_equal(ml__intern_string(in, NULL, 3), 0);
    assert_int_equal(in->nstrs, 6);
}

static void test_strings_sanitized_for_the_wire(void **state)
{
    ml__intern *in = *state;
    uint32_t id = ml__intern_string(in, "caf\xe9\0x", 6);
    assert_int_equal(id, 1);
    /* the key is the raw bytes; what is sent is valid UTF-8 without NUL */
    assert_memory_equal(in->strs[0].raw, "caf\xe9\0x", 6);
    assert_string_equal(in->strs[0].utf8, "caf\xef\xbf\xbd\xef\xbf\xbdx");
    assert_int_equal(ml__intern_string(in, "caf\xe9\0x", 6), 1);
    uint32_t ok = ml__intern_string(in, "caf\xc3\xa9", 5);
    assert_ptr_equal(in->strs[ok - 1].utf8, in->strs[ok - 1].raw);
}

static void test_many_strings_grow_tables(void **state)
{
    ml__intern *in = *state;
    char buf[64];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(buf, sizeof(buf), "module_%d.function_%d", i % 97, i);
        assert_int_equal(ml__intern_string(in, buf, (size_t)n), (uint32_t)i + 1);
    }
    for (int i = 19999; i >= 0; i -= 7) {
        int n = snprintf(buf, sizeof(buf), "module_%d.function_%d", i % 97, i);
        assert_int_equal(ml__intern_string(in, buf, (size_t)n), (uint32_t)i + 1);
    }
    assert_int_equal(in->nstrs, 20000);
}

static void test_frames_and_stacks(void **state)
{
    ml__intern *in = *state;
    uint32_t name = ml__intern_string(in, "main", 4), file = ml__intern_string(in, "/a.py", 5);
    ml__frame f1 = {name, file, 10, 1, 0}, f2 = {name, file, 11, 1, 0};
    ml__frame bad = {99, file, 1, 1, 0};
    assert_int_equal(ml__intern_frame(in, &f1), 1);
    assert_int_equal(ml__intern_frame(in, &f2), 2);
    assert_int_equal(ml__intern_frame(in, &f1), 1);
    assert_int_equal(ml__intern_frame(in, &bad), 0);

    uint32_t s12[] = {1, 2}, s21[] = {2, 1}, s1[] = {1}, sbad[] = {1, 7};
    assert_int_equal(ml__intern_stack(in, s12, 2, 0), 1);
    assert_int_equal(ml__intern_stack(in, s21, 2, 0), 2);
    assert_int_equal(ml__intern_stack(in, s1, 1, 0), 3);
    assert_int_equal(ml__intern_stack(in, s12, 2, 5), 4); /* truncated is content */
    assert_int_equal(ml__intern_stack(in, NULL, 0, 0), 5);
    uint32_t again[] = {1, 2};
    assert_int_equal(ml__intern_stack(in, again, 2, 0), 1);
    assert_int_equal(ml__intern_stack(in, sbad, 2, 0), 0);
    assert_int_equal(ml__intern_stack(in, NULL, 2, 0), 0);
    assert_int_equal(in->nstacks, 5);
}

static void test_threads_rename_and_end(void **state)
{
    ml__intern *in = *state;
    ml__batch b;
    ml__batch_init(&b);
    uint32_t t1 = ml__intern_thread(in, 140001, 501, "MainThread", 0);
    uint32_t t2 = ml__intern_thread(in, 140002, 502, NULL, 7);
    assert_int_equal(t1, 1);
    assert_int_equal(t2, 2);
    assert_string_equal(in->threads[1].name, "Thread-140002");
    assert_int_equal(in->threads[1].started_us, 7);
    assert_int_equal(ml__intern_thread(in, 140001, 501, NULL, 99), t1);
    assert_int_equal(ml__intern_thread(in, 140001, 501, "MainThread", 99), t1);
    assert_int_equal(ml__intern_thread(in, 140001, 999, NULL, 99), 3); /* other native id */
    assert_int_equal(ml__batch_take_defs(&b, in), 0);
    assert_int_equal(b.nthreads, 3);
    assert_false(ml__intern_has_pending(in));

    /* same name again: nothing to send; a new name: the same id again */
    assert_int_equal(ml__intern_thread(in, 140002, 502, "Thread-140002", 50), t2);
    assert_false(ml__intern_has_pending(in));
    assert_int_equal(ml__intern_thread(in, 140002, 502, "worker", 50), t2);
    assert_int_equal(ml__intern_thread_end(in, t2, 1234), 0);
    assert_int_equal(ml__intern_thread_end(in, 42, 1), -EINVAL);
    ml__batch_reset(&b);
    assert_int_equal(ml__batch_take_defs(&b, in), 0);
    assert_int_equal(b.nthreads, 1); /* renamed and ended: one definition */
    assert_int_equal(b.threads[0].id, t2);
    assert_string_equal(b.text + b.threads[0].name, "worker");
    assert_int_equal(b.threads[0].ended_us, 1234);
    assert_int_equal(b.threads[0].started_us, 7);
    ml__batch_close(&b);
}

static void test_definitions_taken_exactly_once(void **state)
{
    ml__intern *in = *state;
    ml__batch b;
    ml__batch_init(&b);
    ml__intern_string(in, "a", 1);
    ml__intern_string(in, "b", 1);
    ml__frame f = {1, 2, 3, 1, 0};
    ml__intern_frame(in, &f);
    assert_int_equal(ml__batch_take_defs(&b, in), 0);
    assert_int_equal(b.str_first, 1);
    assert_int_equal(b.nstrs, 2);
    assert_int_equal(b.nframes, 1);

    ml__batch_reset(&b);
    assert_false(ml__intern_has_pending(in));
    assert_int_equal(ml__batch_take_defs(&b, in), 0);
    assert_int_equal(b.nstrs + b.nframes + b.nstacks + b.nthreads, 0);

    ml__intern_string(in, "a", 1); /* known: not pending again */
    ml__intern_string(in, "c", 1);
    ml__batch_reset(&b);
    assert_int_equal(ml__batch_take_defs(&b, in), 0);
    assert_int_equal(b.str_first, 3);
    assert_int_equal(b.nstrs, 1);
    assert_string_equal(b.strs[0].utf8, "c");
    ml__batch_close(&b);
}

static void test_known_content_does_not_allocate(void **state)
{
    ml__intern *in = *state;
    uint32_t frames[64];
    for (uint32_t i = 0; i < 64; i++) {
        char name[32];
        int n = snprintf(name, sizeof(name), "f%u", i);
        ml__frame f = {ml__intern_string(in, name, (size_t)n), 0, i, 1, 0};
        frames[i] = ml__intern_frame(in, &f);
    }
    uint32_t stack = ml__intern_stack(in, frames, 64, 0);
    uint32_t thread = ml__intern_thread(in, 1, 1, "MainThread", 0);

    unsigned long before = atomic_load(&ml__alloc_count);
    for (int round = 0; round < 1000; round++) {
        for (uint32_t i = 0; i < 64; i++) {
            char name[32];
            int n = snprintf(name, sizeof(name), "f%u", i);
            ml__frame f = {ml__intern_string(in, name, (size_t)n), 0, i, 1, 0};
            assert_int_equal(ml__intern_frame(in, &f), frames[i]);
        }
        assert_int_equal(ml__intern_stack(in, frames, 64, 0), stack);
        assert_int_equal(ml__intern_thread(in, 1, 1, "MainThread", 0), thread);
    }
    assert_int_equal(atomic_load(&ml__alloc_count), before);
}

static void test_out_of_memory_leaves_no_gap(void **state)
{
    ml__intern *in = *state;
    /* a fresh table must allocate for its first entry of each kind */
    atomic_store(&ml__alloc_budget, 0);
    assert_int_equal(ml__intern_string(in, "name", 4), 0);
    assert_int_equal(ml__intern_thread(in, 5, 5, "t", 0), 0);
    atomic_store(&ml__alloc_budget, -1);
    assert_int_equal(ml__intern_string(in, "name", 4), 1);
    atomic_store(&ml__alloc_budget, 0);
    assert_int_equal(ml__intern_string(in, "name", 4), 1); /* known: no allocation needed */
    ml__frame f = {1, 1, 1, 1, 0};
    assert_int_equal(ml__intern_frame(in, &f), 0);

    /* fail each allocation of a first stack in turn: never a gap, never a half entry */
    atomic_store(&ml__alloc_budget, -1);
    uint32_t one[] = {ml__intern_frame(in, &f)};
    assert_int_equal(one[0], 1);
    for (long budget = 0; budget < 8; budget++) {
        atomic_store(&ml__alloc_budget, budget);
        uint32_t id = ml__intern_stack(in, one, 1, 0);
        assert_true(id == 0 || id == 1);
    }
    atomic_store(&ml__alloc_budget, -1);
    assert_int_equal(ml__intern_stack(in, one, 1, 0), 1);
    assert_int_equal(in->nstacks, 1);
    assert_int_equal(ml__intern_thread(in, 5, 5, "t", 0), 1);
    assert_int_equal(in->nthreads, 1);
    assert_int_equal(in->npending_threads, 1);
}

/* The same properties through the public API, with a real client. */
static void test_public_api_ids(void **state)
{
    ml_client_config cfg;
    ml_client_config_init(&cfg);
    cfg.ingest = "ipc:///nonexistent/microlog-test.ipc";
    cfg.quiet = true;
    cfg.flush_interval_ms = 60000;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t s = ml_client_string(c, "x.py", 4);
    assert_int_equal(s, 1);
    assert_int_equal(ml_client_string(c, "x.py", 4), 1);
    uint32_t f = ml_client_frame(c, s, s, 3, 1, 0);
    assert_int_equal(f, 1);
    assert_int_equal(ml_client_frame(c, s, 2, 3, 1, 0), 0); /* unknown file string */
    uint32_t st = ml_client_stack(c, &f, 1, 0);
    uint32_t th = ml_client_thread(c, 11, 22, "MainThread");
    assert_int_equal(st, 1);
    assert_int_equal(th, 1);
    assert_int_equal(ml_client_sample(c, th, 5, st, 1), 0);
    assert_int_equal(ml_client_sample(c, 2, 5, st, 1), -EINVAL); /* unknown thread */
    assert_int_equal(ml_client_sample(c, th, 5, 9, 1), -EINVAL); /* unknown stack */
    assert_int_equal(ml_client_sample(c, th, 5, 0, 1), 0);       /* idle */

    /* steady state: known content and samples do not allocate */
    unsigned long before = atomic_load(&ml__alloc_count);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ml_client_string(c, "x.py", 4), s);
        assert_int_equal(ml_client_frame(c, s, s, 3, 1, 0), f);
        assert_int_equal(ml_client_stack(c, &f, 1, 0), st);
        assert_int_equal(ml_client_thread(c, 11, 22, "MainThread"), th);
        assert_int_equal(ml_client_sample(c, th, 10 + i, st, 1), 0);
    }
    assert_int_equal(atomic_load(&ml__alloc_count), before);
    ml_client_result res;
    ml_client_close(c, 0, 0, &res);
    assert_int_equal(res.samples, 102);
    ml_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_strings_same_content_same_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_sanitized_for_the_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_strings_grow_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_and_stacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_rename_and_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_definitions_taken_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_known_content_does_not_allocate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory_leaves_no_gap, setup, teardown),
        cmocka_unit_test(test_public_api_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
