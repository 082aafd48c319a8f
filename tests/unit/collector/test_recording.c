/* recording.mlr: model -> file -> model round trip, time-window reads
 * through the block index, and rejection of damaged files. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

#include "microlog.pb-c.h"

#include "fsutil.h"
#include "journal.h"
#include "mem.h"
#include "model.h"
#include "recording.h"

/* Every sample column of b equals a's, sample by sample, exactly (times
 * and cpu_us are kept to the microsecond). */
static void assert_samples_equal(const ml_model *a, const ml_model *b)
{
    assert_int_equal(b->nsamples, a->nsamples);
    assert_memory_equal(b->sample_thread, a->sample_thread, a->nsamples * sizeof(uint32_t));
    assert_memory_equal(b->sample_time, a->sample_time, a->nsamples * sizeof(int64_t));
    assert_memory_equal(b->sample_stack, a->sample_stack, a->nsamples * sizeof(uint32_t));
    assert_memory_equal(b->sample_cpu, a->sample_cpu, a->nsamples * sizeof(uint32_t));
}

/* Status CPU percentages are kept to 0.1 %. */
static void assert_percent_close(float x, float y)
{
    if (fabs((double)x - (double)y) > 0.05 + 1e-6 * fabs((double)x))
        fail_msg("%g and %g differ by more than 0.05", (double)x, (double)y);
}

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
    assert_samples_equal(&a, &b);
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
 * and status ticks with every field changing all come back exact (status
 * CPU percentages to 0.1 %). */
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
        assert_percent_close(y->cpu_percent, x->cpu_percent);
        assert_percent_close(y->system_cpu_percent, x->system_cpu_percent);
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

/* Recordings of format versions 1 to 3 are refused with -EPROTO, not
 * misread. */
static void test_earlier_versions_are_refused(void **state)
{
    ml_model a, b;
    fill(&a);
    char *path = ml_xasprintf("%s/v1.mlr", dir);
    assert_int_equal(ml_recording_write(&a, path), 0);
    char *data;
    size_t len;
    assert_int_equal(ml_read_file(path, 1u << 30, &data, &len), 0);
    const char *old[] = {"MLR1", "MLR2", "MLR3"};
    for (int i = 0; i < 3; i++) {
        memcpy(data, old[i], 4);
        assert_int_equal(ml_write_file_atomic(path, data, len), 0);
        ml_model_init(&b);
        assert_int_equal(ml_recording_load(&b, path), -EPROTO);
        assert_int_equal(b.nsamples, 0);
        ml_model_dispose(&b);
    }
    ml_model_dispose(&a);
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

/* ---- a journal compacted and read back: the model must not change ---- */

static uint64_t rnd(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 33;
}

static void append_msg(ml_journal *j, uint8_t type, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = ml_xmalloc(len);
    protobuf_c_message_pack(m, buf);
    assert_int_equal(ml_journal_append(j, type, buf, len, false), 0);
    free(buf);
}

#define J_FUNCS 60
#define J_FRAMES 400
#define J_STACKS 700
#define J_SAMPLES 3000
#define J_BATCHES 4

/* Definitions, as a profiled program sends them: function names and file
 * paths (several functions per file), frames at several lines of one
 * function, stacks that grow from earlier ones, three threads. */
static void append_defs(Microlog__V1__Batch *b, uint64_t *x, char **names)
{
    static Microlog__V1__StringDef sd[2 * J_FUNCS], *sp[2 * J_FUNCS];
    for (int i = 0; i < 2 * J_FUNCS; i++) {
        int f = i / 2;
        names[i] = i % 2 ? ml_xasprintf("/srv/venv/lib/python3.11/site-packages/pkg%d/mod%d.py",
                                        f % 5, f / 3)
                         : ml_xasprintf("pkg%d.mod%d.Class%d.method_%d", f % 5, f / 3, f % 4, f);
        microlog__v1__string_def__init(&sd[i]);
        sd[i].id = (uint32_t)i + 1;
        sd[i].value = names[i];
        sp[i] = &sd[i];
    }
    static Microlog__V1__FrameDef fd[J_FRAMES], *fp[J_FRAMES];
    for (int i = 0; i < J_FRAMES; i++) {
        uint32_t f = (uint32_t)(i < J_FUNCS ? (uint64_t)i : rnd(x) % J_FUNCS);
        microlog__v1__frame_def__init(&fd[i]);
        fd[i].id = (uint32_t)i + 1;
        fd[i].name = 2 * f + 1;
        fd[i].file = 2 * (f / 3 * 3) + 2; /* functions share files */
        fd[i].first_line = 10 + f * 7;
        fd[i].line = fd[i].first_line + (uint32_t)(rnd(x) % 40);
        fd[i].flags = f % 7 == 0;
        fp[i] = &fd[i];
    }
    static Microlog__V1__StackDef st[J_STACKS], *stp[J_STACKS];
    static uint32_t frames[J_STACKS][40];
    for (int i = 0; i < J_STACKS; i++) {
        microlog__v1__stack_def__init(&st[i]);
        st[i].id = (uint32_t)i + 1;
        st[i].frames = frames[i];
        size_t keep = 0;
        if (i > 0) { /* a prefix of an earlier stack, then new frames */
            const Microlog__V1__StackDef *ref = &st[rnd(x) % (uint64_t)i];
            keep = ref->n_frames ? rnd(x) % (ref->n_frames + 1) : 0;
            memcpy(frames[i], ref->frames, keep * sizeof(uint32_t));
        }
        size_t n = keep + rnd(x) % 8 + (i % 50 == 0 ? 0 : 1);
        n = n > 40 ? 40 : n;
        for (size_t k = keep; k < n; k++)
            frames[i][k] = (uint32_t)(rnd(x) % J_FRAMES) + 1;
        st[i].n_frames = n;
        st[i].truncated = i % 97 == 0 ? 12 : 0;
        stp[i] = &st[i];
    }
    static Microlog__V1__ThreadDef th[3], *thp[3];
    const char *tn[] = {"MainThread", "worker-1", "Thread-7 (poll)"};
    for (int i = 0; i < 3; i++) {
        microlog__v1__thread_def__init(&th[i]);
        th[i].id = (uint32_t)i + 1;
        th[i].ident = 140000000 + (uint64_t)i * 4096;
        th[i].native_id = 900 + (uint64_t)i;
        th[i].name = (char *)tn[i];
        th[i].started_us = i * 1234;
        th[i].ended_us = i == 2 ? 2000000 : 0;
        thp[i] = &th[i];
    }
    b->n_strings = 2 * J_FUNCS, b->strings = sp;
    b->n_frames = J_FRAMES, b->frames = fp;
    b->n_stacks = J_STACKS, b->stacks = stp;
    b->n_threads = 3, b->threads = thp;
}

/* One batch of samples (three threads at 100 Hz with jitter, busy and idle,
 * new and repeated stacks), status ticks and log events. */
static void append_batch(ml_journal *j, int seq, uint64_t *x, char **names)
{
    Microlog__V1__Batch b = MICROLOG__V1__BATCH__INIT;
    b.run_uid = "uid00000001";
    b.seq = (uint64_t)seq;
    size_t n = J_SAMPLES / J_BATCHES;
    b.base_time = (int64_t)(seq - 1) * (int64_t)n / 3 * 10000;
    if (seq == 1)
        append_defs(&b, x, names);
    uint32_t thread[J_SAMPLES / J_BATCHES], stack[J_SAMPLES / J_BATCHES],
        cpu[J_SAMPLES / J_BATCHES];
    int64_t delta[J_SAMPLES / J_BATCHES];
    for (size_t i = 0; i < n; i++) {
        thread[i] = (uint32_t)(i % 3) + 1;
        uint64_t r = rnd(x);
        stack[i] = thread[i] == 3 ? 5 : r % 4 == 0 ? 0 : (uint32_t)(r % J_STACKS) + 1;
        delta[i] = i % 3 == 0 ? 10000 + (int64_t)(r % 200) - 100 : (int64_t)(r % 50);
        cpu[i] = thread[i] == 1 ? 9000 + (uint32_t)(r % 900) : (uint32_t)(r % 30);
    }
    Microlog__V1__Samples smp = MICROLOG__V1__SAMPLES__INIT;
    smp.n_thread = smp.n_stack = smp.n_time_delta = smp.n_cpu_us = n;
    smp.thread = thread, smp.stack = stack, smp.time_delta = delta, smp.cpu_us = cpu;
    b.samples = &smp;
    Microlog__V1__StatusTick tk[10], *tkp[10];
    for (int i = 0; i < 10; i++) {
        microlog__v1__status_tick__init(&tk[i]);
        tk[i].time = b.base_time + i * 100000 + (int64_t)(rnd(x) % 99);
        tk[i].cpu_percent = (float)(rnd(x) % 10000) / 97.0f;
        tk[i].system_cpu_percent = (float)(rnd(x) % 1000) / 10.0f;
        tk[i].rss = (50u << 20) + rnd(x) % 100000 * 4096;
        tk[i].memory_total = i % 10 == 0 ? 16ull << 30 : 0;
        tk[i].memory_free = i % 10 == 0 ? (9ull << 30) + rnd(x) : 0;
        tk[i].modules = 80 + (uint32_t)seq * 10 + (uint32_t)i;
        tk[i].objects = 25000 + rnd(x) % 50000;
        tkp[i] = &tk[i];
    }
    b.n_status = 10, b.status = tkp;
    Microlog__V1__LogEvent lg[3], *lgp[3];
    char *msg[3];
    for (int i = 0; i < 3; i++) {
        microlog__v1__log_event__init(&lg[i]);
        lg[i].time = b.base_time + i * 33333;
        lg[i].thread = (uint32_t)i + 1;
        lg[i].kind = (uint32_t)i + 1;
        lg[i].level = i == 2 ? 30 : 0;
        msg[i] = ml_xasprintf("batch %d event %d from %s\nsecond line", seq, i, names[2 * i + 1]);
        lg[i].message = msg[i];
        lg[i].stack = (uint32_t)(rnd(x) % J_STACKS);
        lg[i].logger = i == 2 ? "app.worker" : "";
        lgp[i] = &lg[i];
    }
    b.n_logs = 3, b.logs = lgp;
    append_msg(j, ML_JOURNAL_BATCH, &b.base);
    for (int i = 0; i < 3; i++)
        free(msg[i]);
}

static void make_journal(const char *path)
{
    ml_journal *j;
    assert_int_equal(ml_journal_open(path, &j), 0);
    Microlog__V1__OpenRun o = MICROLOG__V1__OPEN_RUN__INIT;
    o.run_uid = "uid00000001";
    o.label = "demo";
    o.timestamp = "2026_11_26_05_30_00";
    o.sample_period = 0.01;
    append_msg(j, ML_JOURNAL_OPEN_RUN, &o.base);
    uint64_t x = 42;
    char *names[2 * J_FUNCS];
    for (int seq = 1; seq <= J_BATCHES; seq++)
        append_batch(j, seq, &x, names);
    for (int i = 0; i < 2 * J_FUNCS; i++)
        free(names[i]);
    Microlog__V1__CloseRun c = MICROLOG__V1__CLOSE_RUN__INIT;
    c.run_uid = "uid00000001";
    c.end_time = 12345678;
    c.last_seq = J_BATCHES;
    append_msg(j, ML_JOURNAL_CLOSE_RUN, &c.base);
    ml_journal_close(j);
}

/* Every field of every table, sample, tick and event. */
static void assert_models_equal(const ml_model *a, const ml_model *b)
{
    assert_int_equal(b->nstrings, a->nstrings);
    for (size_t i = 0; i < a->nstrings; i++)
        assert_string_equal(ml_model_string(b, (uint32_t)i), ml_model_string(a, (uint32_t)i));
    assert_int_equal(b->nframes, a->nframes);
    for (size_t i = 1; i < a->nframes; i++) {
        const ml_frame *x = &a->frames[i], *y = &b->frames[i];
        assert_int_equal(y->name, x->name);
        assert_int_equal(y->file, x->file);
        assert_int_equal(y->line, x->line);
        assert_int_equal(y->first_line, x->first_line);
        assert_int_equal(y->flags, x->flags);
    }
    assert_int_equal(b->nstacks, a->nstacks);
    for (size_t i = 1; i < a->nstacks; i++) {
        assert_int_equal(b->stacks[i].n, a->stacks[i].n);
        assert_int_equal(b->stacks[i].truncated, a->stacks[i].truncated);
        if (a->stacks[i].n)
            assert_memory_equal(b->stacks[i].frames, a->stacks[i].frames,
                                a->stacks[i].n * sizeof(uint32_t));
    }
    assert_int_equal(b->nthreads, a->nthreads);
    for (size_t i = 0; i < a->nthreads; i++) {
        const ml_thread *x = &a->threads[i], *y = &b->threads[i];
        assert_int_equal(y->defined, x->defined);
        assert_int_equal(y->ident, x->ident);
        assert_int_equal(y->native_id, x->native_id);
        assert_string_equal(y->name ? y->name : "", x->name ? x->name : "");
        assert_int_equal(y->started_us, x->started_us);
        assert_int_equal(y->ended_us, x->ended_us);
        assert_int_equal(y->samples, x->samples);
    }
    assert_samples_equal(a, b);
    assert_int_equal(b->nstatus, a->nstatus);
    for (size_t i = 0; i < a->nstatus; i++) {
        const ml_status_tick *x = &a->status[i], *y = &b->status[i];
        assert_int_equal(y->time, x->time);
        assert_percent_close(y->cpu_percent, x->cpu_percent);
        assert_percent_close(y->system_cpu_percent, x->system_cpu_percent);
        assert_int_equal(y->rss, x->rss);
        assert_int_equal(y->memory_total, x->memory_total);
        assert_int_equal(y->memory_free, x->memory_free);
        assert_int_equal(y->objects, x->objects);
        assert_int_equal(y->modules, x->modules);
    }
    assert_int_equal(b->nlogs, a->nlogs);
    for (size_t i = 0; i < a->nlogs; i++) {
        const ml_log_event *x = &a->logs[i], *y = &b->logs[i];
        assert_int_equal(y->time, x->time);
        assert_int_equal(y->thread, x->thread);
        assert_int_equal(y->kind, x->kind);
        assert_int_equal(y->stack, x->stack);
        assert_int_equal(y->level, x->level);
        assert_string_equal(y->message, x->message);
        assert_string_equal(y->logger, x->logger);
    }
    assert_true(b->sample_period == a->sample_period);
    assert_int_equal(b->closed, a->closed);
    assert_int_equal(b->end_time, a->end_time);
}

static void test_journal_compaction_keeps_every_field(void **state)
{
    char *jpath = ml_xasprintf("%s/journal.mlj", dir), *rpath = ml_xasprintf("%s/c.mlr", dir);
    make_journal(jpath);
    ml_recording_set_level(1); /* the level changes the bytes, never the model */
    assert_int_equal(ml_recording_compact(jpath, rpath), 0);
    ml_recording_set_level(19);
    ml_model a, b;
    ml_model_init(&a);
    assert_int_equal(ml_model_load(&a, jpath), 0);
    assert_int_equal(a.nsamples, J_SAMPLES);
    assert_int_equal(a.nstacks, J_STACKS + 1);
    assert_true(a.closed);
    ml_model_init(&b);
    assert_int_equal(ml_recording_load(&b, rpath), 0);
    assert_models_equal(&a, &b);
    ml_model_dispose(&b);
    /* And at the default level. */
    assert_int_equal(ml_recording_compact(jpath, rpath), 0);
    ml_model_init(&b);
    assert_int_equal(ml_recording_load(&b, rpath), 0);
    assert_models_equal(&a, &b);
    ml_model_dispose(&a);
    ml_model_dispose(&b);
    free(jpath);
    free(rpath);
}

/* A run with no frames, stacks, samples or events at all. */
static void test_empty_model_round_trip(void **state)
{
    ml_model a, b;
    ml_model_init(&a);
    a.sample_period = 0.05;
    write_load(&a, &b, "empty.mlr");
    assert_models_equal(&a, &b);
    ml_model_dispose(&a);
    ml_model_dispose(&b);
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
        cmocka_unit_test(test_earlier_versions_are_refused),
        cmocka_unit_test(test_journal_compaction_keeps_every_field),
        cmocka_unit_test(test_empty_model_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
