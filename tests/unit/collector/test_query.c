/* Query: a model built from a journal holding hand-built batches, and the
 * answers computed from it (flame graph totals, log with stacks, threads).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "microlog.pb-c.h"

#include "fsutil.h"
#include "journal.h"
#include "mem.h"
#include "query.h"
#include "store.h"

#define PERIOD 0.05

static void append_msg(ml_journal *j, uint8_t type, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = ml_xmalloc(len);
    protobuf_c_message_pack(m, buf);
    assert_int_equal(ml_journal_append(j, type, buf, len, false), 0);
    free(buf);
}

/* Definitions: main() -> work() -> sleep(); frames 2 and 4 are two lines
 * of the same function work() and must merge in the flame graph. */
static void append_batch1(ml_journal *j)
{
    Microlog__V1__Batch b = MICROLOG__V1__BATCH__INIT;
    b.run_uid = "uid00000001";
    b.seq = 1;
    b.base_time = 1000;
    const char *strs[] = {"main", "/app/main.py", "work", "sleep", "MainThread", "helper"};
    Microlog__V1__StringDef sd[6], *sp[6];
    for (int i = 0; i < 6; i++) {
        microlog__v1__string_def__init(&sd[i]);
        sd[i].id = (uint32_t)i + 1;
        sd[i].value = (char *)strs[i];
        sp[i] = &sd[i];
    }
    b.n_strings = 6;
    b.strings = sp;
    uint32_t fdef[4][4] = {{1, 10, 1, 1}, {3, 20, 15, 2}, {4, 30, 28, 3}, {3, 22, 15, 4}};
    Microlog__V1__FrameDef fd[4], *fp[4];
    for (int i = 0; i < 4; i++) {
        microlog__v1__frame_def__init(&fd[i]);
        fd[i].id = fdef[i][3];
        fd[i].name = fdef[i][0];
        fd[i].file = 2;
        fd[i].line = fdef[i][1];
        fd[i].first_line = fdef[i][2];
        fp[i] = &fd[i];
    }
    b.n_frames = 4;
    b.frames = fp;
    uint32_t s1[] = {1}, s2[] = {1, 2}, s3[] = {1, 2, 3}, s4[] = {1, 4};
    uint32_t *sf[] = {s1, s2, s3, s4};
    size_t sn[] = {1, 2, 3, 2};
    Microlog__V1__StackDef st[4], *stp[4];
    for (int i = 0; i < 4; i++) {
        microlog__v1__stack_def__init(&st[i]);
        st[i].id = (uint32_t)i + 1;
        st[i].frames = sf[i];
        st[i].n_frames = sn[i];
        stp[i] = &st[i];
    }
    b.n_stacks = 4;
    b.stacks = stp;
    Microlog__V1__ThreadDef th[2], *thp[2] = {&th[0], &th[1]};
    microlog__v1__thread_def__init(&th[0]);
    microlog__v1__thread_def__init(&th[1]);
    th[0].id = 1, th[0].ident = 140000, th[0].native_id = 77, th[0].name = "MainThread";
    th[1].id = 2, th[1].ident = 140001, th[1].native_id = 78, th[1].name = "helper";
    th[1].started_us = 5000, th[1].ended_us = 400000;
    b.n_threads = 2;
    b.threads = thp;
    Microlog__V1__Samples smp = MICROLOG__V1__SAMPLES__INIT;
    uint32_t thread[] = {1, 1, 1, 1, 2, 2, 1}, stack[] = {1, 2, 3, 4, 3, 0, 2};
    int64_t delta[] = {0, 50000, 50000, 50000, -100000, 50000, 150000};
    smp.n_thread = smp.n_stack = smp.n_time_delta = 7;
    smp.thread = thread, smp.stack = stack, smp.time_delta = delta;
    b.samples = &smp;
    Microlog__V1__LogEvent lg[2], *lgp[2] = {&lg[0], &lg[1]};
    microlog__v1__log_event__init(&lg[0]);
    microlog__v1__log_event__init(&lg[1]);
    lg[0].time = 120000, lg[0].thread = 1, lg[0].kind = 3, lg[0].level = 20;
    lg[0].message = "hello", lg[0].stack = 3, lg[0].logger = "app";
    lg[1].time = 60000, lg[1].thread = 2, lg[1].kind = 1, lg[1].message = "printed";
    b.n_logs = 2;
    b.logs = lgp;
    append_msg(j, ML_JOURNAL_BATCH, &b.base);
}

static void append_batch2(ml_journal *j)
{
    Microlog__V1__Batch b = MICROLOG__V1__BATCH__INIT;
    b.run_uid = "uid00000001";
    b.seq = 2;
    b.base_time = 500000;
    Microlog__V1__Samples smp = MICROLOG__V1__SAMPLES__INIT;
    uint32_t thread[] = {1, 1}, stack[] = {3, 3}, cpu[] = {40000, 50000};
    int64_t delta[] = {0, 50000};
    smp.n_thread = smp.n_stack = smp.n_time_delta = smp.n_cpu_us = 2;
    smp.thread = thread, smp.stack = stack, smp.time_delta = delta, smp.cpu_us = cpu;
    b.samples = &smp;
    append_msg(j, ML_JOURNAL_BATCH, &b.base);
}

typedef struct fixture {
    char *dir;
    ml_store store;
    ml_run *run;
    ml_journal *journal;
    ml_query q;
} fixture;

static int setup(void **state)
{
    fixture *f = ml_xcalloc(1, sizeof(*f));
    char tmpl[] = "/tmp/ml_test_query_XXXXXX";
    f->dir = ml_xstrdup(mkdtemp(tmpl));
    assert_int_equal(ml_store_init(&f->store, f->dir), 0);
    ml_run *r = f->run = ml_run_new();
    strcpy(r->team, "local");
    strcpy(r->label, "demo");
    strcpy(r->stamp, "2026_11_26_05_30_00");
    strcpy(r->timestamp, r->stamp);
    strcpy(r->id, "demo/2026_11_26_05_30_00");
    r->sample_period = 0; /* use the OpenRun record's */
    assert_int_equal(ml_store_create_run_dir(&f->store, r), 0);
    char *path = ml_store_run_path(&f->store, r, ML_RUN_JOURNAL_FILE);
    assert_int_equal(ml_journal_open(path, &f->journal), 0);
    free(path);
    Microlog__V1__OpenRun o = MICROLOG__V1__OPEN_RUN__INIT;
    o.run_uid = "uid00000001";
    o.label = "demo";
    o.timestamp = "2026_11_26_05_30_00";
    o.sample_period = PERIOD;
    append_msg(f->journal, ML_JOURNAL_OPEN_RUN, &o.base);
    append_batch1(f->journal);
    ml_query_init(&f->q);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ml_query_dispose(&f->q);
    ml_journal_close(f->journal);
    ml_run_free(f->run);
    ml_remove_tree(f->dir);
    ml_store_dispose(&f->store);
    free(f->dir);
    free(f);
    return 0;
}

static void assert_near(double a, double b)
{
    if (fabs(a - b) > 1e-9) {
        fprintf(stderr, "%.12f != %.12f\n", a, b);
        fail();
    }
}

static json_t *child(json_t *node, const char *name)
{
    json_t *kids = json_object_get(node, "children");
    for (size_t i = 0; i < json_array_size(kids); i++) {
        json_t *k = json_array_get(kids, i);
        if (strcmp(json_string_value(json_object_get(k, "name")), name) == 0)
            return k;
    }
    fail_msg("no child %s", name);
    return NULL;
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void test_model_tables(void **state)
{
    fixture *f = *state;
    /* The raw model, before the query index takes its samples. */
    ml_model raw;
    ml_model_init(&raw);
    char *path = ml_store_run_path(&f->store, f->run, ML_RUN_JOURNAL_FILE);
    assert_int_equal(ml_model_load(&raw, path), 0);
    free(path);
    const ml_model *m = &raw;
    assert_near(m->sample_period, PERIOD);
    assert_int_equal(m->nsamples, 7);
    /* Delta decoding: base 1000, then +0, +50000, ... (one step back). */
    int64_t want[] = {1000, 51000, 101000, 151000, 51000, 101000, 251000};
    for (int i = 0; i < 7; i++)
        assert_int_equal(m->sample_time[i], want[i]);
    assert_string_equal(ml_model_string(m, 3), "work");
    assert_string_equal(ml_model_string(m, 99), "");
    assert_int_equal(ml_model_stack(m, 3)->n, 3);
    assert_null(ml_model_stack(m, 9));
    assert_int_equal(m->threads[1].samples, 5);
    assert_int_equal(m->threads[2].samples, 2);
    ml_model_dispose(&raw);
    /* The index: samples per thread, each thread's time going forward. */
    const ml_qrun *q = ml_query_get(&f->q, &f->store, f->run);
    assert_int_equal(q->model->nsamples, 0);
    assert_int_equal(q->calls->samples, 7);
    assert_int_equal(q->calls->threads[1].n, 5);
    assert_int_equal(q->calls->threads[2].n, 2);
    assert_int_equal(q->calls->threads[1].last, 251000);
    assert_int_equal(q->calls->threads[2].first_time, 51000);
}

static json_t *flamegraph(fixture *f, const uint32_t *threads, size_t n)
{
    const ml_qrun *q = ml_query_get(&f->q, &f->store, f->run);
    ml_qwindow w = {.start = 0, .end = INT64_MAX, .threads = threads, .nthreads = n};
    return ml_query_flamegraph_window(q, &w);
}

static void test_flamegraph_totals(void **state)
{
    fixture *f = *state;
    json_t *fg = flamegraph(f, NULL, 0);
    assert_string_equal(json_string_value(json_object_get(fg, "run")), f->run->id);
    /* 7 samples, one idle (stack 0) left out. Each weighs the time to its
     * thread's next sample (at most two periods): thread 1's sample at
     * 0.151 s waits 0.1 s for the next, the last samples weigh a period. */
    assert_near(num(fg, "total"), 7 * PERIOD);
    json_t *root = json_object_get(fg, "root");
    assert_string_equal(json_string_value(json_object_get(root, "name")), "all");
    assert_near(num(root, "value"), 7 * PERIOD);
    assert_near(num(root, "self"), 0);
    assert_int_equal(json_array_size(json_object_get(root, "children")), 1);
    json_t *mainf = child(root, "main");
    assert_near(num(mainf, "value"), 7 * PERIOD);
    assert_near(num(mainf, "self"), 1 * PERIOD);
    assert_string_equal(json_string_value(json_object_get(mainf, "file")), "/app/main.py");
    json_t *work = child(mainf, "work"); /* frames 2 and 4 merged */
    assert_int_equal(json_array_size(json_object_get(mainf, "children")), 1);
    assert_near(num(work, "value"), 6 * PERIOD);
    assert_near(num(work, "self"), 4 * PERIOD);
    assert_int_equal(json_integer_value(json_object_get(work, "line")), 15);
    json_t *sleepf = child(work, "sleep");
    assert_near(num(sleepf, "value"), 2 * PERIOD);
    assert_near(num(sleepf, "self"), 2 * PERIOD);
    assert_int_equal(json_array_size(json_object_get(sleepf, "children")), 0);
    json_decref(fg);

    uint32_t only[] = {2};
    fg = flamegraph(f, only, 1);
    assert_near(num(fg, "total"), 1 * PERIOD);
    root = json_object_get(fg, "root");
    assert_near(num(child(child(child(root, "main"), "work"), "sleep"), "self"), PERIOD);
    json_decref(fg);

    uint32_t none[] = {42};
    fg = flamegraph(f, none, 1);
    assert_near(num(fg, "total"), 0);
    json_decref(fg);
}

static void test_log_and_threads(void **state)
{
    fixture *f = *state;
    const ml_model *m = ml_query_model(&f->q, &f->store, f->run);
    json_t *log = ml_query_log(m, f->run);
    json_t *ev = json_object_get(log, "events");
    assert_int_equal(json_array_size(ev), 2);
    json_t *e0 = json_array_get(ev, 0), *e1 = json_array_get(ev, 1);
    /* Sorted by time: the print at 0.06 s first. */
    assert_string_equal(json_string_value(json_object_get(e0, "kind")), "stdout");
    assert_string_equal(json_string_value(json_object_get(e0, "message")), "printed");
    assert_int_equal(json_array_size(json_object_get(e0, "stack")), 0);
    assert_near(num(e1, "time"), 0.12);
    assert_string_equal(json_string_value(json_object_get(e1, "kind")), "logging");
    assert_int_equal(json_integer_value(json_object_get(e1, "level")), 20);
    assert_string_equal(json_string_value(json_object_get(e1, "logger")), "app");
    assert_int_equal(json_integer_value(json_object_get(e1, "thread")), 1);
    json_t *stack = json_object_get(e1, "stack");
    assert_int_equal(json_array_size(stack), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(stack, 0), "name")),
                        "main"); /* root first */
    json_t *leaf = json_array_get(stack, 2);
    assert_string_equal(json_string_value(json_object_get(leaf, "name")), "sleep");
    assert_int_equal(json_integer_value(json_object_get(leaf, "line")), 30);
    json_decref(log);

    json_t *threads = ml_query_threads(m);
    assert_int_equal(json_array_size(threads), 2);
    json_t *t2 = json_array_get(threads, 1);
    assert_string_equal(json_string_value(json_object_get(t2, "name")), "helper");
    assert_int_equal(json_integer_value(json_object_get(t2, "samples")), 2);
    assert_int_equal(json_integer_value(json_object_get(t2, "native_id")), 78);
    assert_near(num(t2, "ended"), 0.4);
    assert_true(json_is_null(json_object_get(json_array_get(threads, 0), "ended")));
    json_decref(threads);
}

/* The cached model follows the journal as it grows. */
static void test_incremental_refresh(void **state)
{
    fixture *f = *state;
    const ml_qrun *q = ml_query_get(&f->q, &f->store, f->run);
    assert_int_equal(q->calls->samples, 7);
    append_batch2(f->journal);
    q = ml_query_get(&f->q, &f->store, f->run);
    assert_int_equal(q->calls->samples, 9);
    assert_int_equal(q->calls->threads[1].last, 550000);
    json_t *fg = flamegraph(f, NULL, 0);
    /* The sample at 0.251 s now has a successor 0.249 s later in the same
     * calls: they span the gap whole (a call that ended would stop two
     * periods after its last sample). */
    assert_near(num(fg, "total"), 10 * PERIOD + 0.149);
    json_decref(fg);
    /* Forgetting reloads from scratch with the same result. */
    ml_query_forget(&f->q, f->run->id);
    q = ml_query_get(&f->q, &f->store, f->run);
    assert_int_equal(q->calls->samples, 9);
    assert_int_equal(q->model->threads[1].samples, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_model_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flamegraph_totals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_and_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_refresh, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
