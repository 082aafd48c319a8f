/* recording.mlr: model -> file -> model round trip, time-window reads
 * through the block index, and rejection of damaged files. */
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
#include "mem.h"
#include "model.h"
#include "recording.h"

#define NSAMPLES (ML_RECORDING_BLOCK * 3 + 123)

static char dir[64];

static void fill(ml_model *m)
{
    ml_model_init(m);
    const char *strs[] = {"", "main", "/app/main.py", "work", "MainThread"};
    m->nstrings = m->capstrings = 5;
    m->strings = ml_xcalloc(5, sizeof(char *));
    for (int i = 1; i < 5; i++)
        m->strings[i] = ml_xstrdup(strs[i]);
    m->nframes = m->capframes = 3;
    m->frames = ml_xcalloc(3, sizeof(ml_frame));
    m->frames[1] = (ml_frame){1, 2, 10, 1, 0};
    m->frames[2] = (ml_frame){3, 2, 20, 15, 1};
    m->nstacks = m->capstacks = 3;
    m->stacks = ml_xcalloc(3, sizeof(ml_stack));
    m->stacks[1].n = 1;
    m->stacks[1].frames = ml_xmalloc(sizeof(uint32_t));
    m->stacks[1].frames[0] = 1;
    m->stacks[2].n = 2;
    m->stacks[2].truncated = 7;
    m->stacks[2].frames = ml_xmalloc(2 * sizeof(uint32_t));
    m->stacks[2].frames[0] = 1;
    m->stacks[2].frames[1] = 2;
    m->nthreads = m->capthreads = 2;
    m->threads = ml_xcalloc(2, sizeof(ml_thread));
    m->threads[1] = (ml_thread){true, 140001, 4242, ml_xstrdup("MainThread"), 0, 0, NSAMPLES};
    m->nsamples = m->capsamples = NSAMPLES;
    m->sample_thread = ml_xmalloc(NSAMPLES * sizeof(uint32_t));
    m->sample_stack = ml_xmalloc(NSAMPLES * sizeof(uint32_t));
    m->sample_cpu = ml_xmalloc(NSAMPLES * sizeof(uint32_t));
    m->sample_time = ml_xmalloc(NSAMPLES * sizeof(int64_t));
    for (size_t i = 0; i < NSAMPLES; i++) {
        m->sample_thread[i] = 1;
        m->sample_stack[i] = 1 + (uint32_t)(i % 3 == 0);
        m->sample_cpu[i] = (uint32_t)(i * 7 % 1000);
        m->sample_time[i] = (int64_t)i * 10000 + (int64_t)(i % 5); /* 100 Hz with jitter */
    }
    m->nstatus = m->capstatus = 2;
    m->status = ml_xcalloc(2, sizeof(ml_status_tick));
    m->status[0] =
        (ml_status_tick){100000, 12.5f, 40.0f, 1u << 20, 8ull << 30, 4ull << 30, 999, 33};
    m->status[1] = (ml_status_tick){200000, 99.0f, 50.0f, 2u << 20, 0, 0, 1999, 34};
    m->nlogs = m->caplogs = 1;
    m->logs = ml_xcalloc(1, sizeof(ml_log_event));
    m->logs[0] = (ml_log_event){150000, 1, 3, 2, 30, ml_xstrdup("hello\nworld"), ml_xstrdup("app")};
    m->sample_period = 0.01;
    m->closed = true;
    m->end_time = (int64_t)NSAMPLES * 10000;
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/ml_test_rec_XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    ml_remove_tree(dir);
    return 0;
}

static void test_round_trip(void **state)
{
    ml_model a, b;
    fill(&a);
    char *path = ml_xasprintf("%s/rec.mlr", dir);
    assert_int_equal(ml_recording_write(&a, path), 0);
    ml_model_init(&b);
    assert_int_equal(ml_recording_load(&b, path), 0);
    assert_int_equal(b.nstrings, a.nstrings);
    for (size_t i = 1; i < a.nstrings; i++)
        assert_string_equal(b.strings[i], a.strings[i]);
    assert_int_equal(b.nframes, a.nframes);
    assert_memory_equal(b.frames, a.frames, a.nframes * sizeof(ml_frame));
    assert_int_equal(b.nstacks, 3);
    assert_int_equal(b.stacks[2].n, 2);
    assert_int_equal(b.stacks[2].truncated, 7);
    assert_int_equal(b.stacks[2].frames[1], 2);
    assert_string_equal(b.threads[1].name, "MainThread");
    assert_int_equal(b.threads[1].native_id, 4242);
    assert_int_equal(b.nsamples, NSAMPLES);
    assert_memory_equal(b.sample_time, a.sample_time, NSAMPLES * sizeof(int64_t));
    assert_memory_equal(b.sample_stack, a.sample_stack, NSAMPLES * sizeof(uint32_t));
    assert_memory_equal(b.sample_cpu, a.sample_cpu, NSAMPLES * sizeof(uint32_t));
    assert_memory_equal(b.status, a.status, 2 * sizeof(ml_status_tick));
    assert_string_equal(b.logs[0].message, "hello\nworld");
    assert_int_equal(b.logs[0].level, 30);
    assert_true(b.closed);
    assert_int_equal(b.end_time, a.end_time);
    assert_true(b.sample_period == 0.01);
    /* Compact: far below the 24 bytes per sample the columns take in memory. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < NSAMPLES * 2);
    ml_model_dispose(&a);
    ml_model_dispose(&b);
    free(path);
}

static void test_time_window_reads_one_block(void **state)
{
    ml_model a, b;
    fill(&a);
    char *path = ml_xasprintf("%s/win.mlr", dir);
    assert_int_equal(ml_recording_write(&a, path), 0);
    ml_model_init(&b);
    uint32_t blocks = 99;
    /* A window inside the second block. */
    int64_t t0 = (int64_t)(ML_RECORDING_BLOCK + 10) * 10000, t1 = t0 + 50000;
    assert_int_equal(ml_recording_load_range(&b, path, t0, t1, &blocks), 0);
    assert_int_equal(blocks, 1);
    assert_int_equal(b.nsamples, ML_RECORDING_BLOCK);
    assert_int_equal(b.sample_time[0], a.sample_time[ML_RECORDING_BLOCK]);
    assert_int_equal(b.nlogs, 1); /* tables and events always come */
    ml_model_dispose(&b);
    ml_model_init(&b);
    assert_int_equal(ml_recording_load_range(&b, path, INT64_MIN, INT64_MAX, &blocks), 0);
    assert_int_equal(blocks, 4);
    ml_model_dispose(&a);
    ml_model_dispose(&b);
    free(path);
}

static void test_damage_is_detected(void **state)
{
    ml_model a, b;
    fill(&a);
    char *path = ml_xasprintf("%s/bad.mlr", dir);
    assert_int_equal(ml_recording_write(&a, path), 0);
    ml_model_dispose(&a);
    char *data;
    size_t len;
    assert_int_equal(ml_read_file(path, 1u << 30, &data, &len), 0);
    /* Flip one byte at several places; truncate at several lengths. */
    size_t spots[] = {0, 5, 20, len / 2, len - 20, len - 10, len - 1};
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        data[spots[i]] ^= 0x55;
        assert_int_equal(ml_write_file_atomic(path, data, len), 0);
        ml_model_init(&b);
        assert_int_equal(ml_recording_load(&b, path), -EBADMSG);
        ml_model_dispose(&b);
        data[spots[i]] ^= 0x55;
    }
    for (size_t cut = 0; cut < len; cut += len / 13 + 1) {
        assert_int_equal(ml_write_file_atomic(path, data, cut), 0);
        ml_model_init(&b);
        assert_int_equal(ml_recording_load(&b, path), -EBADMSG);
        ml_model_dispose(&b);
    }
    ml_model_init(&b);
    assert_int_equal(ml_recording_load(&b, "/nonexistent/x.mlr"), -ENOENT);
    ml_model_dispose(&b);
    free(data);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_time_window_reads_one_block),
        cmocka_unit_test(test_damage_is_detected),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
