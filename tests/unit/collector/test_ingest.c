/* Ingest end to end below HTTP: a collector (store, index, ingest) on a
 * loop driven by the test, and a real nng REQ socket talking to it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "collector.h"
#include "fsutil.h"
#include "ingest.h"
#include "journal.h"
#include "log.h"
#include "mem.h"
#include "validate.h"
#include "wire.h"

#define UID1 "0123456789abcdef0123456789abcdef"
#define UID2 "fedcba9876543210fedcba9876543210"
#define STAMP "2026_11_26_05_30_00"

typedef struct fixture {
    char *dir;
    uv_loop_t loop;
    ml_collector c;
    bool started, closed;
    nng_socket req;
    ml_collector_config cfg;
} fixture;

static void on_closed(ml_collector *c)
{
    fixture *f = (fixture *)((char *)c - offsetof(fixture, c));
    f->closed = true;
}

static void warm_up(fixture *f);

static void start(fixture *f)
{
    assert_int_equal(ml_collector_start(&f->c, &f->loop, &f->cfg), 0);
    f->started = true;
    f->closed = false;
    assert_int_equal(nng_req0_open(&f->req), 0);
    assert_int_equal(nng_socket_set_ms(f->req, NNG_OPT_REQ_RESENDTIME, 60000), 0);
    const char *url = ml_collector_ingest_url(&f->c);
    assert_non_null(url);
    assert_null(strstr(url, ":0")); /* the real port, not the wildcard */
    assert_int_equal(nng_dial(f->req, url, NULL, 0), 0);
    warm_up(f);
}

static ml_wire_msg call(fixture *f, const char *method, uint64_t call_id,
                        const ProtobufCMessage *msg);

/* One round trip, so the connection's SP handshake is over before the test
 * goes on: libnng 1.5.2 leaks the pipe of a socket closed while that
 * handshake is in flight (seen under LeakSanitizer). */
static void warm_up(fixture *f)
{
    ml_wire_msg m = call(f, "microlog.v1.Ingest/Ping", 1, NULL);
    assert_int_equal(m.env->status, MICROLOG__V1__STATUS__UNIMPLEMENTED);
    ml_wire_msg_free(&m);
}

static void stop(fixture *f)
{
    nng_close(f->req);
    ml_collector_close(&f->c, on_closed);
    while (!f->closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    ml_collector_dispose(&f->c);
    f->started = false;
}

static int setup(void **state)
{
    fixture *f = ml_xcalloc(1, sizeof(*f));
    char tmpl[] = "/tmp/ml_test_ingest_XXXXXX";
    f->dir = ml_xstrdup(mkdtemp(tmpl));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->cfg.data_dir = f->dir;
    f->cfg.ingest = "tcp://127.0.0.1:0";
    f->cfg.ingest_contexts = 4;
    ml_log_set_level(ML_LOG_ERROR);
    start(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->started)
        stop(f);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    ml_remove_tree(f->dir);
    free(f->dir);
    free(f);
    ml_log_set_level(ML_LOG_INFO);
    return 0;
}

/* Sends raw bytes and returns the reply envelope, running the collector's
 * loop until it arrives. */
static ml_wire_msg roundtrip_raw(fixture *f, const void *buf, size_t len)
{
    assert_int_equal(nng_send(f->req, (void *)buf, len, 0), 0);
    struct timespec nap = {0, 1000000};
    for (int i = 0; i < 10000; i++) {
        char *rep;
        size_t rlen;
        int rv = nng_recv(f->req, &rep, &rlen, NNG_FLAG_ALLOC | NNG_FLAG_NONBLOCK);
        if (rv == 0) {
            ml_wire_msg m = {0};
            assert_int_equal(ml_wire_unpack((uint8_t *)rep, rlen, &m), 0);
            /* The reply may point into the envelope, not into rep. */
            nng_free(rep, rlen);
            return m;
        }
        assert_int_equal(rv, NNG_EAGAIN);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        nanosleep(&nap, NULL);
    }
    fail_msg("no reply within 10 s");
    return (ml_wire_msg){0};
}

static ml_wire_msg call(fixture *f, const char *method, uint64_t call_id,
                        const ProtobufCMessage *msg)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(ml_wire_pack(method, call_id, 0, NULL, NULL, msg, &buf, &len), 0);
    ml_wire_msg m = roundtrip_raw(f, buf, len);
    free(buf);
    assert_int_equal(m.env->call_id, call_id);
    return m;
}

static void expect_status(fixture *f, ml_wire_msg *m, int32_t status)
{
    if (m->env->status != status)
        fail_msg("status %d (%s), want %d", m->env->status, m->env->error, status);
    if (status != 0)
        assert_true(strlen(m->env->error) > 0);
    ml_wire_msg_free(m);
}

static char *open_run(fixture *f, const char *uid, const char *label, const char *ts, int32_t want)
{
    Microlog__V1__OpenRun o = MICROLOG__V1__OPEN_RUN__INIT;
    char *argv[] = {"python", "train.py"};
    o.run_uid = (char *)uid;
    o.label = (char *)label;
    o.timestamp = (char *)ts;
    o.start_unix_us = 1764135000000000;
    o.host = "box";
    o.user = "alice";
    o.pid = 4242;
    o.argv = argv;
    o.n_argv = 2;
    o.sample_period = 0.05;
    ml_wire_msg m = call(f, ML_METHOD_OPEN_RUN, 7, &o.base);
    char *id = NULL;
    if (want == 0 && m.env->status == 0) {
        Microlog__V1__OpenRunReply *r =
            microlog__v1__open_run_reply__unpack(NULL, m.payload_len, m.payload);
        assert_non_null(r);
        id = ml_xstrdup(r->run_id);
        microlog__v1__open_run_reply__free_unpacked(r, NULL);
    }
    expect_status(f, &m, want);
    return id;
}

/* A batch of n samples on thread 1 / stack 1; with_defs defines string 1,
 * frame 1, stack 1 and thread 1 (the first batch of a run must). */
typedef struct batch_buf {
    Microlog__V1__Batch b;
    Microlog__V1__StringDef sd, *sdp;
    Microlog__V1__FrameDef fd, *fdp;
    Microlog__V1__StackDef st, *stp;
    Microlog__V1__ThreadDef th, *thp;
    Microlog__V1__Samples smp;
    uint32_t frames[1], thread[8], stack[8];
    int64_t delta[8];
} batch_buf;

static Microlog__V1__Batch *make_batch(batch_buf *bb, const char *uid, uint64_t seq, bool with_defs,
                                       size_t n)
{
    memset(bb, 0, sizeof(*bb));
    microlog__v1__batch__init(&bb->b);
    microlog__v1__samples__init(&bb->smp);
    bb->b.run_uid = (char *)uid;
    bb->b.seq = seq;
    bb->b.base_time = (int64_t)seq * 1000000;
    if (with_defs) {
        microlog__v1__string_def__init(&bb->sd);
        bb->sd.id = 1, bb->sd.value = "main";
        microlog__v1__frame_def__init(&bb->fd);
        bb->fd.id = 1, bb->fd.name = 1, bb->fd.file = 1, bb->fd.line = 3;
        microlog__v1__stack_def__init(&bb->st);
        bb->frames[0] = 1;
        bb->st.id = 1, bb->st.frames = bb->frames, bb->st.n_frames = 1;
        microlog__v1__thread_def__init(&bb->th);
        bb->th.id = 1, bb->th.name = "MainThread";
        bb->sdp = &bb->sd, bb->fdp = &bb->fd, bb->stp = &bb->st, bb->thp = &bb->th;
        bb->b.strings = &bb->sdp, bb->b.n_strings = 1;
        bb->b.frames = &bb->fdp, bb->b.n_frames = 1;
        bb->b.stacks = &bb->stp, bb->b.n_stacks = 1;
        bb->b.threads = &bb->thp, bb->b.n_threads = 1;
    }
    for (size_t i = 0; i < n; i++)
        bb->thread[i] = 1, bb->stack[i] = 1, bb->delta[i] = 50000;
    bb->smp.thread = bb->thread, bb->smp.n_thread = n;
    bb->smp.stack = bb->stack, bb->smp.n_stack = n;
    bb->smp.time_delta = bb->delta, bb->smp.n_time_delta = n;
    bb->b.samples = &bb->smp;
    return &bb->b;
}

/* Sends a batch; returns acked_seq on OK, or -status. */
static int64_t send_batch(fixture *f, const Microlog__V1__Batch *b)
{
    ml_wire_msg m = call(f, ML_METHOD_BATCH, 100 + b->seq, &b->base);
    int64_t out = -(int64_t)m.env->status;
    if (m.env->status == 0) {
        Microlog__V1__BatchReply *r =
            microlog__v1__batch_reply__unpack(NULL, m.payload_len, m.payload);
        assert_non_null(r);
        out = (int64_t)r->acked_seq;
        microlog__v1__batch_reply__free_unpacked(r, NULL);
    } else {
        assert_true(strlen(m.env->error) > 0);
    }
    ml_wire_msg_free(&m);
    return out;
}

static bool close_run(fixture *f, const char *uid, uint64_t last_seq, const char *want_id)
{
    Microlog__V1__CloseRun cr = MICROLOG__V1__CLOSE_RUN__INIT;
    cr.run_uid = (char *)uid;
    cr.last_seq = last_seq;
    cr.end_time = 9000000;
    ml_wire_msg m = call(f, ML_METHOD_CLOSE_RUN, 900, &cr.base);
    assert_int_equal(m.env->status, 0);
    Microlog__V1__CloseRunReply *r =
        microlog__v1__close_run_reply__unpack(NULL, m.payload_len, m.payload);
    assert_non_null(r);
    assert_string_equal(r->run_id, want_id);
    bool complete = r->complete;
    microlog__v1__close_run_reply__free_unpacked(r, NULL);
    ml_wire_msg_free(&m);
    return complete;
}

typedef struct journal_counts {
    int types[4];
    uint64_t seqs[256];
    int nseqs;
} journal_counts;

static int count_rec(void *arg, uint8_t type, const uint8_t *p, size_t len, uint64_t off)
{
    journal_counts *jc = arg;
    jc->types[type]++;
    if (type == ML_JOURNAL_BATCH) {
        Microlog__V1__Batch *b = microlog__v1__batch__unpack(NULL, len, p);
        assert_non_null(b);
        assert_true(jc->nseqs < 256);
        jc->seqs[jc->nseqs++] = b->seq;
        microlog__v1__batch__free_unpacked(b, NULL);
    }
    return 0;
}

static journal_counts read_journal(fixture *f, const char *id)
{
    char *path = ml_xasprintf("%s/runs/local/%s/journal.mlj", f->dir, id);
    journal_counts jc = {0};
    uint64_t off = 0;
    bool torn = true;
    assert_int_equal(ml_journal_read(path, &off, count_rec, &jc, &torn), 0);
    assert_false(torn);
    free(path);
    return jc;
}

static json_t *read_meta(fixture *f, const char *id)
{
    char *path = ml_xasprintf("%s/runs/local/%s/run.json", f->dir, id);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    assert_non_null(j);
    free(path);
    return j;
}

static void test_open_batch_close(void **state)
{
    fixture *f = *state;
    char *id = open_run(f, UID1, "demo", STAMP, 0);
    assert_string_equal(id, "demo/" STAMP);
    /* OpenRun is idempotent by uid... */
    char *again = open_run(f, UID1, "demo", STAMP, 0);
    assert_string_equal(again, id);
    /* ...and another run with the same label and second gets a suffix. */
    char *other = open_run(f, UID2, "demo", STAMP, 0);
    assert_string_equal(other, "demo/" STAMP "-2");

    batch_buf bb;
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 1, true, 3)), 1);
    /* A resend of seq 1 is acknowledged again but stored once. */
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 1, true, 3)), 1);
    /* Seq 2 refers to definitions sent in seq 1. */
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 2, false, 4)), 2);
    assert_true(close_run(f, UID1, 2, id));
    assert_true(close_run(f, UID1, 2, id)); /* idempotent too */

    journal_counts jc = read_journal(f, id);
    assert_int_equal(jc.types[ML_JOURNAL_OPEN_RUN], 1);
    assert_int_equal(jc.types[ML_JOURNAL_BATCH], 2);
    assert_int_equal(jc.types[ML_JOURNAL_CLOSE_RUN], 1);
    assert_int_equal(jc.seqs[0], 1);
    assert_int_equal(jc.seqs[1], 2);

    json_t *meta = read_meta(f, id);
    assert_string_equal(json_string_value(json_object_get(meta, "status")), "complete");
    assert_string_equal(json_string_value(json_object_get(meta, "uid")), UID1);
    assert_string_equal(json_string_value(json_object_get(meta, "host")), "box");
    assert_int_equal(json_integer_value(json_object_get(meta, "samples")), 7);
    assert_int_equal(json_integer_value(json_object_get(meta, "pid")), 4242);
    assert_true(json_number_value(json_object_get(meta, "duration")) == 9.0);
    assert_true(json_number_value(json_object_get(meta, "started")) == 1764135000.0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(meta, "argv"), 1)),
                        "train.py");
    json_decref(meta);

    ml_run *r = ml_index_find(&f->c.index, id);
    assert_non_null(r);
    assert_int_equal(r->status, ML_RUN_COMPLETE);
    assert_null(r->live); /* a complete run holds no journal open */
    /* After close, a new seq is refused; an old one is still acknowledged. */
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 3, false, 1)),
                     -MICROLOG__V1__STATUS__FAILED_PRECONDITION);
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 2, false, 1)), 2);
    assert_int_equal(read_journal(f, id).types[ML_JOURNAL_BATCH], 2);
    free(id);
    free(again);
    free(other);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    /* Garbage bytes: not an envelope. */
    static const char junk[] = "\xff\xff\xff\xff garbage \x01\x02";
    ml_wire_msg m = roundtrip_raw(f, junk, sizeof(junk));
    assert_int_equal(m.env->call_id, 0);
    expect_status(f, &m, MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    m = roundtrip_raw(f, "", 0); /* empty: an envelope with version 0 */
    expect_status(f, &m, MICROLOG__V1__STATUS__FAILED_PRECONDITION);

    /* A future protocol version: refused, call id echoed. */
    Microlog__V1__Envelope env = MICROLOG__V1__ENVELOPE__INIT;
    env.version = 2;
    env.method = ML_METHOD_OPEN_RUN;
    env.call_id = 31337;
    uint8_t buf[128];
    size_t n = microlog__v1__envelope__pack(&env, buf);
    m = roundtrip_raw(f, buf, n);
    assert_int_equal(m.env->call_id, 31337);
    expect_status(f, &m, MICROLOG__V1__STATUS__FAILED_PRECONDITION);

    m = call(f, "microlog.v1.Ingest/Explode", 5, NULL);
    expect_status(f, &m, MICROLOG__V1__STATUS__UNIMPLEMENTED);

    /* A known method with a payload that is not its message. */
    env.version = 1;
    env.method = ML_METHOD_BATCH;
    env.payload.data = (uint8_t *)"\xff\xff\xff";
    env.payload.len = 3;
    n = microlog__v1__envelope__pack(&env, buf);
    m = roundtrip_raw(f, buf, n);
    expect_status(f, &m, MICROLOG__V1__STATUS__INVALID_ARGUMENT);

    /* Names that would leave the data dir, or are not names at all. */
    open_run(f, UID1, "../etc", STAMP, MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    open_run(f, UID1, "a/b", STAMP, MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    open_run(f, UID1, "..", STAMP, MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    open_run(f, UID1, "", STAMP, MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    open_run(f, UID1, "demo", "../../x", MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    open_run(f, UID1, "demo", "2026-11-26 05:30:00", MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    open_run(f, "../uid/../x", "demo", STAMP, MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    assert_int_equal(ml_index_count(&f->c.index), 0);
    char *runs = ml_xasprintf("%s/runs/local", f->dir);
    assert_false(ml_is_dir(runs)); /* nothing was created */
    free(runs);

    batch_buf bb;
    assert_int_equal(send_batch(f, make_batch(&bb, UID2, 1, true, 1)),
                     -MICROLOG__V1__STATUS__NOT_FOUND);
    char *id = open_run(f, UID1, "demo", STAMP, 0);
    /* Undefined references in an in-order batch. */
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 1, false, 1)),
                     -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    Microlog__V1__Batch *b = make_batch(&bb, UID1, 1, true, 2);
    bb.stack[1] = 9;
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.fd.name = 5; /* frame names an undefined string */
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.th.id = 0; /* ids start at 1 */
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    /* Columns of different lengths. */
    b = make_batch(&bb, UID1, 1, true, 3);
    bb.smp.n_stack = 2;
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    b = make_batch(&bb, UID1, 0, true, 1);
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    /* Times whose sum would overflow (found by fuzz/ingest): refused. */
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.delta[1] = INT64_MAX - 100;
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.delta[0] = ML_TIME_LIMIT_US, bb.delta[1] = 1; /* each in range, the sum not */
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.b.base_time = INT64_MIN;
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.th.started_us = -ML_TIME_LIMIT_US - 1;
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    /* An id far ahead of what the run defines (found by fuzz/journal: a
     * 366-byte input cost 4.5 s and 950 MB at compaction): refused, in
     * order or after a gap; one within the slack is taken. */
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.sd.id = bb.fd.name = bb.fd.file = 2 + ML_ID_SLACK;
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    b = make_batch(&bb, UID1, 7, true, 2);
    bb.st.id = bb.stack[0] = bb.stack[1] = 60000000;
    assert_int_equal(send_batch(f, b), -MICROLOG__V1__STATUS__INVALID_ARGUMENT);
    /* None of it was stored, and the collector still works. */
    assert_int_equal(read_journal(f, id).types[ML_JOURNAL_BATCH], 0);
    b = make_batch(&bb, UID1, 1, true, 2);
    bb.sd.id = bb.fd.name = bb.fd.file = 1 + ML_ID_SLACK;
    assert_int_equal(send_batch(f, b), 1);
    free(id);
}

/* Batches out of order are stored and acked up to the first gap; a
 * restarted collector rebuilds the run's state from the journal. */
static void test_gap_and_restart(void **state)
{
    fixture *f = *state;
    char *id = open_run(f, UID1, "demo", STAMP, 0);
    batch_buf bb;
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 1, true, 1)), 1);
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 3, false, 1)), 1);
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 2, false, 1)), 3);

    stop(f);
    start(f);
    ml_run *r = ml_index_find(&f->c.index, id);
    assert_non_null(r);
    assert_int_equal(r->status, ML_RUN_LIVE);
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 2, false, 1)), 3); /* known */
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 4, false, 5)), 4);
    /* Only three of five batches arrive before close: incomplete. */
    assert_false(close_run(f, UID1, 6, id));
    assert_int_equal(r->status, ML_RUN_INCOMPLETE);
    assert_int_equal(r->samples, 8);
    /* The missing ones may still come, and complete the run. */
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 6, false, 1)), 4);
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 5, false, 1)), 6);
    assert_int_equal(r->status, ML_RUN_COMPLETE);
    journal_counts jc = read_journal(f, id);
    assert_int_equal(jc.types[ML_JOURNAL_BATCH], 6);
    uint64_t want[] = {1, 3, 2, 4, 6, 5};
    for (int i = 0; i < 6; i++)
        assert_int_equal(jc.seqs[i], want[i]);
    free(id);
}

/* A live run whose client goes silent is marked incomplete, and goes live
 * again when the client comes back. */
static void test_silent_run(void **state)
{
    fixture *f = *state;
    stop(f);
    f->cfg.live_timeout_ms = 100;
    f->cfg.housekeeping_ms = 10;
    start(f);
    char *id = open_run(f, UID1, "demo", STAMP, 0);
    batch_buf bb;
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 1, true, 2)), 1);
    ml_run *r = ml_index_find(&f->c.index, id);
    struct timespec nap = {0, 5000000};
    for (int i = 0; i < 200 && r->status == ML_RUN_LIVE; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        nanosleep(&nap, NULL);
    }
    assert_int_equal(r->status, ML_RUN_INCOMPLETE);
    assert_null(r->live);
    json_t *meta = read_meta(f, id);
    assert_string_equal(json_string_value(json_object_get(meta, "status")), "incomplete");
    assert_int_equal(json_integer_value(json_object_get(meta, "samples")), 2);
    json_decref(meta);
    assert_int_equal(send_batch(f, make_batch(&bb, UID1, 2, false, 1)), 2);
    assert_int_equal(r->status, ML_RUN_LIVE);
    assert_true(close_run(f, UID1, 2, id));
    free(id);
}

/* Mutated requests (bit flips, truncations, random bytes) straight into
 * the handler: every one gets a well-formed reply, nothing crashes (run
 * under ASan/UBSan in the sanitizer build). */
/* The queue depths /metrics shows: every request went through the loop's
 * queue and nothing is left waiting once its reply came back. */
static void test_queue_depth_stats(void **state)
{
    fixture *f = *state; /* started by setup, stopped by teardown */
    ml_ingest_stats st;
    ml_ingest_get_stats(f->c.ingest, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.replying, 0);
    assert_true(st.queued_max >= 1); /* the warm-up call waited for the loop */
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.contexts, (unsigned)f->cfg.ingest_contexts);
    assert_int_equal(st.refused_connections, 0);
    for (uint64_t id = 2; id < 6; id++) {
        ml_wire_msg m = call(f, "microlog.v1.Ingest/Ping", id, NULL);
        ml_wire_msg_free(&m);
    }
    ml_ingest_get_stats(f->c.ingest, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.replying, 0);
}

static void test_mutations_never_crash(void **state)
{
    fixture *f = *state;
    char *id = open_run(f, UID1, "demo", STAMP, 0);
    batch_buf bb;
    uint8_t *valid;
    size_t vlen;
    assert_int_equal(ml_wire_pack(ML_METHOD_BATCH, 5, 0, NULL, NULL,
                                  &make_batch(&bb, UID1, 1, true, 8)->base, &valid, &vlen),
                     0);
    uint32_t rng = 12345;
    uint8_t *buf = ml_xmalloc(vlen + 64);
    for (int i = 0; i < 3000; i++) {
        rng = rng * 1103515245 + 12345;
        size_t len = vlen;
        memcpy(buf, valid, vlen);
        int kind = (int)(rng >> 16) % 3;
        if (kind == 0) { /* flip a few bits */
            for (int k = 0; k < 3; k++) {
                rng = rng * 1103515245 + 12345;
                buf[(rng >> 8) % vlen] ^= (uint8_t)(1u << ((rng >> 4) % 8));
            }
        } else if (kind == 1) { /* truncate */
            len = (rng >> 8) % vlen;
        } else { /* random bytes */
            len = (rng >> 8) % (vlen + 64);
            for (size_t k = 0; k < len; k++) {
                rng = rng * 1103515245 + 12345;
                buf[k] = (uint8_t)(rng >> 16);
            }
        }
        uint8_t *rep;
        size_t rlen;
        ml_ingest_handle(&f->c, buf, len, &rep, &rlen);
        ml_wire_msg m;
        assert_int_equal(ml_wire_unpack(rep, rlen, &m), 0);
        ml_wire_msg_free(&m);
        free(rep);
    }
    free(buf);
    free(valid);
    /* The run is still usable; its journal reads clean and holds each seq
     * once (a flipped seq bit makes another valid batch: it may be kept). */
    ml_run *r = ml_index_find(&f->c.index, id);
    assert_non_null(r);
    journal_counts jc = read_journal(f, id);
    for (int a = 0; a < jc.nseqs; a++)
        for (int b = a + 1; b < jc.nseqs; b++)
            assert_true(jc.seqs[a] != jc.seqs[b]);
    assert_int_equal(r->batches, (uint64_t)jc.nseqs);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_batch_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_depth_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutations_never_crash, setup, teardown),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);
    nng_fini();
    return rv;
}
