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

/* Every sample column of b equals a's, sample by sample. */
static void assert_samples_equal(const ml_model *a, const ml_model *b)
{
    assert_int_equal(b->nsamples, a->nsamples);
    assert_memory_equal(b->sample_thread, a->sample_thread, a->nsamples * sizeof(uint32_t));
    assert_memory_equal(b->sample_time, a->sample_time, a->nsamples * sizeof(int64_t));
    assert_memory_equal(b->sample_stack, a->sample_stack, a->nsamples * sizeof(uint32_t));
    assert_memory_equal(b->sample_cpu, a->sample_cpu, a->nsamples * sizeof(uint32_t));
}

static void set_samples(ml_model *m, size_t n)
{
    free(m->sample_thread);
    free(m->sample_stack);
    free(m->sample_cpu);
    free(m->sample_time);
    m->nsamples = m->capsamples = n;
    m->sample_thread = ml_xmalloc(n * sizeof(uint32_t));
    m->sample_stack = ml_xmalloc(n * sizeof(uint32_t));
    m->sample_cpu = ml_xmalloc(n * sizeof(uint32_t));
    m->sample_time = ml_xmalloc(n * sizeof(int64_t));
}

static off_t write_load(const ml_model *a, ml_model *b, const char *name)
{
    char *path = ml_xasprintf("%s/%s", dir, name);
    assert_int_equal(ml_recording_write(a, path), 0);
    ml_model_init(b);
    assert_int_equal(ml_recording_load(b, path), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    free(path);
    return st.st_size;
}

/* Run-length coding: a long call (one thread, one stack, a busy thread's
 * cpu) costs almost nothing per sample, and decodes exactly. */
static void test_long_call_is_run_length_coded(void **state)
{
    ml_model a, b;
    fill(&a);
    size_t n = ML_RECORDING_BLOCK * 2 + 7;
    set_samples(&a, n);
    for (size_t i = 0; i < n; i++) {
        a.sample_thread[i] = 1;
        a.sample_stack[i] = i < n - 3 ? 2 : 1;
        a.sample_time[i] = (int64_t)i * 10000 + 50;
        a.sample_cpu[i] = i ? 10000 : 3;
    }
    off_t size = write_load(&a, &b, "rle.mlr");
    assert_samples_equal(&a, &b);
    /* Well under a bit per sample (the tables and headers are most of it). */
    assert_true((size_t)size < n / 8);
    ml_model_dispose(&a);
    ml_model_dispose(&b);
}

/* Interleaved threads (ids in and out of the thread table, 0 included),
 * irregular times going backwards, stacks switching and repeating per
 * thread, cpu of busy and idle threads, and extreme values: all exact. */
static void test_interleaved_threads_round_trip_exact(void **state)
{
    ml_model a, b;
    fill(&a);
    size_t n = ML_RECORDING_BLOCK + 5000;
    set_samples(&a, n);
    uint64_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t th = (uint32_t)(i % 4); /* 0, 1 (defined), 2, 3 (beyond nthreads) */
        a.sample_thread[i] = i % 1000 == 999 ? UINT32_MAX : th;
        a.sample_stack[i] = (x >> 60) < 12 ? (uint32_t)(i / 97 % 3) : (uint32_t)(x >> 33);
        a.sample_time[i] = (int64_t)(i / 4) * 10000 + (int64_t)(x >> 52) - 2048;
        a.sample_cpu[i] = th == 1 ? 9000 + (uint32_t)(x >> 54) : th == 2 ? 0 : (uint32_t)(x >> 32);
    }
    a.sample_time[10] = INT64_MIN / 4;
    a.sample_time[11] = INT64_MAX / 4;
    a.sample_cpu[12] = UINT32_MAX;
    a.sample_stack[13] = UINT32_MAX;
    a.sample_period = 0.0037;
    write_load(&a, &b, "mix.mlr");
    assert_samples_equal(&a, &b);
    ml_model_dispose(&a);
    ml_model_dispose(&b);
}

/* The tables are front-coded / delta-coded: many strings sharing
 * prefixes, frames of one function at many lines, stacks sharing roots,
 * and status ticks with every field changing all come back exact. */
static void test_tables_round_trip_exact(void **state)
{
    ml_model a, b;
    fill(&a);
    size_t ns = 500, nf = 700, nk = 400, nt = 300;
    a.strings = realloc(a.strings, ns * sizeof(char *));
    for (size_t i = a.nstrings; i < ns; i++)
        a.strings[i] =
            i % 7 == 0 ? ml_xstrdup("")
                       : ml_xasprintf("/usr/lib/python3/site-packages/pkg%zu/mod%zu.py", i % 13, i);
    a.nstrings = a.capstrings = ns;
    a.frames = realloc(a.frames, nf * sizeof(ml_frame));
    for (size_t i = a.nframes; i < nf; i++)
        a.frames[i] = (ml_frame){(uint32_t)(i / 5 % ns), (uint32_t)(i / 20 % ns),
                                 (uint32_t)(i % 5 ? 100 + i % 37 : 3), (uint32_t)(90 + i % 11),
                                 (uint32_t)(i % 3)};
    a.frames[nf - 1].line = UINT32_MAX;
    a.frames[nf - 1].first_line = 0;
    a.nframes = a.capframes = nf;
    a.stacks = realloc(a.stacks, nk * sizeof(ml_stack));
    for (size_t i = a.nstacks; i < nk; i++) {
        ml_stack *s = &a.stacks[i];
        s->n = (uint32_t)(i % 9 == 0 ? 0 : 3 + i % 17);
        s->truncated = (uint32_t)(i % 4 == 0 ? i : 0);
        s->frames = ml_xmalloc((s->n ? s->n : 1) * sizeof(uint32_t));
        for (uint32_t k = 0; k < s->n; k++)
            s->frames[k] = k + 1 < s->n ? (uint32_t)(k * 31 % nf) : (uint32_t)(i * 7 % nf);
    }
    a.nstacks = a.capstacks = nk;
    a.status = realloc(a.status, nt * sizeof(ml_status_tick));
    for (size_t i = 0; i < nt; i++)
        a.status[i] = (ml_status_tick){(int64_t)i * 1000000 + (int64_t)(i % 3),
                                       (float)i * 0.7f,
                                       (float)(nt - i),
                                       (uint64_t)(i % 2 ? 1u << 30 : 5),
                                       8ull << 30,
                                       (4ull << 30) - i * 4096,
                                       UINT64_MAX - i,
                                       (uint32_t)(i % 5 ? 400 + i : 0)};
    a.nstatus = a.capstatus = nt;
    write_load(&a, &b, "tables.mlr");
    assert_int_equal(b.nstrings, ns);
    for (size_t i = 1; i < ns; i++)
        assert_string_equal(b.strings[i], a.strings[i]);
    assert_int_equal(b.nframes, nf);
    assert_memory_equal(b.frames, a.frames, nf * sizeof(ml_frame));
    assert_int_equal(b.nstacks, nk);
    for (size_t i = 1; i < nk; i++) {
        assert_int_equal(b.stacks[i].n, a.stacks[i].n);
        assert_int_equal(b.stacks[i].truncated, a.stacks[i].truncated);
        if (a.stacks[i].n)
            assert_memory_equal(b.stacks[i].frames, a.stacks[i].frames,
                                a.stacks[i].n * sizeof(uint32_t));
    }
    assert_int_equal(b.nstatus, nt);
    /* Field by field: the struct has tail padding, which memcmp would read. */
    for (size_t i = 0; i < nt; i++) {
        const ml_status_tick *x = &a.status[i], *y = &b.status[i];
        assert_int_equal(y->time, x->time);
        assert_true(y->cpu_percent == x->cpu_percent);
        assert_true(y->system_cpu_percent == x->system_cpu_percent);
        assert_int_equal(y->rss, x->rss);
        assert_int_equal(y->memory_total, x->memory_total);
        assert_int_equal(y->memory_free, x->memory_free);
        assert_int_equal(y->objects, x->objects);
        assert_int_equal(y->modules, x->modules);
    }
    assert_int_equal(b.nthreads, a.nthreads);
    assert_int_equal(b.threads[1].ident, 140001);
    assert_int_equal(b.logs[0].kind, 3);
    assert_int_equal(b.logs[0].stack, 2);
    assert_string_equal(b.logs[0].logger, "app");
    ml_model_dispose(&a);
    ml_model_dispose(&b);
}

/* A recording of format version 1 is refused with -EPROTO, not misread. */
static void test_version_1_is_refused(void **state)
{
    ml_model a, b;
    fill(&a);
    char *path = ml_xasprintf("%s/v1.mlr", dir);
    assert_int_equal(ml_recording_write(&a, path), 0);
    char *data;
    size_t len;
    assert_int_equal(ml_read_file(path, 1u << 30, &data, &len), 0);
    memcpy(data, ML_RECORDING_MAGIC_V1, 4);
    assert_int_equal(ml_write_file_atomic(path, data, len), 0);
    ml_model_init(&b);
    assert_int_equal(ml_recording_load(&b, path), -EPROTO);
    assert_int_equal(b.nsamples, 0);
    ml_model_dispose(&a);
    ml_model_dispose(&b);
    free(data);
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
        cmocka_unit_test(test_long_call_is_run_length_coded),
        cmocka_unit_test(test_interleaved_threads_round_trip_exact),
        cmocka_unit_test(test_tables_round_trip_exact),
        cmocka_unit_test(test_version_1_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
