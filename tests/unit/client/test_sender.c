/*
 * The sender over a real transport. The test plays the collector: an nng
 * REP socket on tcp://127.0.0.1 that decodes every request with
 * ml_wire_unpack, checks it against the protocol (seq 1, 2, 3 ... without
 * gaps, definitions exactly once and before use, ids sequential) and
 * answers as micrologd does (OpenRunReply / BatchReply / CloseRunReply,
 * with CloseRun.final_batch when it announces takes_final_batch).
 * Discovery is exercised with a small HTTP responder serving the
 * documented /api/v1/ingest answer.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "microlog/client.h"
#include "wire.h"

#define MAX_IDS 4096
#define MAX_SAMPLES 20000
#define MAX_LOGS 1000

/* ---- the collector played by the test ------------------------------------ */

typedef struct collector {
    nng_socket sock;
    char url[64];
    int port;
    pthread_t thread;
    atomic_bool stop;
    /* behaviour */
    int ignore_batches;   /* do not answer this many Batch requests (they are stored) */
    int32_t open_status;  /* answer OpenRun with this status */
    uint64_t refuse_from; /* answer batches from this seq on OUT_OF_RANGE (0: never) */
    int refusals;         /* batches answered OUT_OF_RANGE */
    bool refuse_now;      /* the batch being answered is refused */
    bool never_reply;
    bool takes_final_batch;  /* announced in OpenRunReply ... */
    bool ignore_final_batch; /* ... but not acted upon (an older collector behind it) */
    /* what arrived (read after the thread stopped) */
    int opens, closes, dups, violations;
    int folded; /* CloseRuns that carried a final_batch */
    char violation[256];
    char tokens[64];
    bool token_mismatch;
    uint64_t last_seq;
    char label[128], timestamp[32], run_uid[40];
    int32_t pid;
    size_t nargv;
    uint64_t close_last_seq, close_dropped_samples;
    int32_t close_exit;
    uint64_t batch_dropped_samples;
    uint32_t nstrs, nframes, nstacks, nthreads;
    char *strs[MAX_IDS];
    uint32_t frame_name[MAX_IDS];
    uint32_t stack_top[MAX_IDS]; /* innermost frame of each stack */
    char thread_name[MAX_IDS][64];
    int thread_defs[MAX_IDS];
    int64_t thread_ended[MAX_IDS];
    size_t nsamples;
    int64_t sample_time[MAX_SAMPLES];
    uint32_t sample_stack[MAX_SAMPLES];
    uint32_t sample_thread[MAX_SAMPLES];
    size_t nlogs;
    char *log_msg[MAX_LOGS];
    char *log_logger[MAX_LOGS];
    size_t nstatus;
} collector;

static void violation(collector *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (k->violations++ == 0)
        vsnprintf(k->violation, sizeof(k->violation), fmt, ap);
    va_end(ap);
}

static void check_defs(collector *k, const Microlog__V1__Batch *b)
{
    for (size_t i = 0; i < b->n_strings; i++) {
        if (b->strings[i]->id != k->nstrs + 1 || k->nstrs + 1 >= MAX_IDS)
            return violation(k, "string id %u after %u", b->strings[i]->id, k->nstrs);
        k->strs[++k->nstrs] = strdup(b->strings[i]->value);
    }
    for (size_t i = 0; i < b->n_frames; i++) {
        const Microlog__V1__FrameDef *f = b->frames[i];
        if (f->id != k->nframes + 1 || f->name > k->nstrs || f->file > k->nstrs)
            return violation(k, "frame %u: bad id or unknown string", f->id);
        k->frame_name[++k->nframes] = f->name;
    }
    for (size_t i = 0; i < b->n_stacks; i++) {
        const Microlog__V1__StackDef *s = b->stacks[i];
        if (s->id != k->nstacks + 1)
            return violation(k, "stack id %u after %u", s->id, k->nstacks);
        for (size_t j = 0; j < s->n_frames; j++)
            if (s->frames[j] == 0 || s->frames[j] > k->nframes)
                return violation(k, "stack %u: unknown frame %u", s->id, s->frames[j]);
        k->stack_top[++k->nstacks] = s->n_frames ? s->frames[s->n_frames - 1] : 0;
    }
    for (size_t i = 0; i < b->n_threads; i++) {
        const Microlog__V1__ThreadDef *t = b->threads[i];
        if (t->id == 0 || t->id > k->nthreads + 1)
            return violation(k, "thread id %u after %u", t->id, k->nthreads);
        if (t->id == k->nthreads + 1)
            k->nthreads++;
        snprintf(k->thread_name[t->id], sizeof(k->thread_name[0]), "%s", t->name);
        k->thread_defs[t->id]++;
        k->thread_ended[t->id] = t->ended_us;
    }
}

static void take_records(collector *k, const Microlog__V1__Batch *b)
{
    k->batch_dropped_samples += b->dropped_samples;
    const Microlog__V1__Samples *s = b->samples;
    int64_t t = b->base_time;
    for (size_t i = 0; s && i < s->n_thread; i++) {
        t += s->time_delta[i];
        if (s->thread[i] == 0 || s->thread[i] > k->nthreads || s->stack[i] > k->nstacks)
            return violation(k, "sample refers to an undefined thread or stack");
        if (k->nsamples < MAX_SAMPLES) {
            k->sample_time[k->nsamples] = t;
            k->sample_stack[k->nsamples] = s->stack[i];
            k->sample_thread[k->nsamples] = s->thread[i];
        }
        k->nsamples++;
    }
    for (size_t i = 0; i < b->n_logs; i++) {
        if (b->logs[i]->thread > k->nthreads || b->logs[i]->stack > k->nstacks)
            return violation(k, "log refers to an undefined thread or stack");
        if (k->nlogs < MAX_LOGS) {
            k->log_msg[k->nlogs] = strdup(b->logs[i]->message);
            k->log_logger[k->nlogs] = strdup(b->logs[i]->logger);
        }
        k->nlogs++;
    }
    k->nstatus += b->n_status;
}

/* Stores b unless refused or already stored. */
static void store_batch(collector *k, const Microlog__V1__Batch *b)
{
    k->refuse_now = k->refuse_from && b->seq >= k->refuse_from;
    if (k->refuse_now) {
        k->refusals++; /* over the "maximum run size": not stored */
    } else if (b->seq <= k->last_seq) {
        k->dups++; /* a retry of a batch we stored: drop it, acknowledge again */
    } else if (b->seq != k->last_seq + 1) {
        violation(k, "seq %llu after %llu", (unsigned long long)b->seq,
                  (unsigned long long)k->last_seq);
    } else {
        if (strcmp(b->run_uid, k->run_uid) != 0)
            violation(k, "batch for another run");
        check_defs(k, b);
        take_records(k, b);
        k->last_seq = b->seq;
    }
}

/* Handles one Batch; false when the collector stays silent. */
static bool on_batch(collector *k, const ml_wire_msg *w, Microlog__V1__BatchReply *reply)
{
    Microlog__V1__Batch *b = microlog__v1__batch__unpack(NULL, w->payload_len, w->payload);
    if (b == NULL) {
        violation(k, "undecodable batch");
        return true;
    }
    store_batch(k, b);
    reply->acked_seq = k->last_seq;
    microlog__v1__batch__free_unpacked(b, NULL);
    if (k->ignore_batches > 0) {
        k->ignore_batches--;
        return false;
    }
    return true;
}

static void on_open(collector *k, const ml_wire_msg *w, Microlog__V1__OpenRunReply *reply,
                    char *run_id, size_t size)
{
    Microlog__V1__OpenRun *o = microlog__v1__open_run__unpack(NULL, w->payload_len, w->payload);
    if (o == NULL)
        return violation(k, "undecodable OpenRun");
    k->opens++;
    snprintf(k->label, sizeof(k->label), "%s", o->label);
    snprintf(k->timestamp, sizeof(k->timestamp), "%s", o->timestamp);
    snprintf(k->run_uid, sizeof(k->run_uid), "%s", o->run_uid);
    k->pid = o->pid;
    k->nargv = o->n_argv;
    snprintf(run_id, size, "%s/%s-2", o->label, o->timestamp); /* as on a collision */
    reply->run_id = run_id;
    reply->takes_final_batch = k->takes_final_batch;
    microlog__v1__open_run__free_unpacked(o, NULL);
}

static void on_close(collector *k, const ml_wire_msg *w, Microlog__V1__CloseRunReply *reply)
{
    Microlog__V1__CloseRun *c = microlog__v1__close_run__unpack(NULL, w->payload_len, w->payload);
    if (c == NULL)
        return violation(k, "undecodable CloseRun");
    k->closes++;
    if (c->final_batch != NULL) {
        k->folded++;
        if (!k->takes_final_batch)
            violation(k, "final_batch sent to a collector that did not announce it");
        else if (c->final_batch->seq != c->last_seq)
            violation(k, "final_batch seq %llu is not last_seq %llu",
                      (unsigned long long)c->final_batch->seq, (unsigned long long)c->last_seq);
        else if (!k->ignore_final_batch)
            store_batch(k, c->final_batch); /* as micrologd: the batch, then the close */
    }
    k->close_last_seq = c->last_seq;
    k->close_exit = c->exit_status;
    k->close_dropped_samples = c->dropped_samples;
    reply->complete = c->last_seq == k->last_seq;
    microlog__v1__close_run__free_unpacked(c, NULL);
}

/* Answers one request. */
static void serve_one(collector *k, const uint8_t *buf, size_t len)
{
    ml_wire_msg w;
    if (ml_wire_unpack(buf, len, &w) != 0)
        return violation(k, "undecodable envelope");
    const Microlog__V1__Envelope *e = w.env;
    if (k->tokens[0] == '\0')
        snprintf(k->tokens, sizeof(k->tokens), "%s", e->token);
    else if (strcmp(k->tokens, e->token) != 0)
        k->token_mismatch = true;

    Microlog__V1__OpenRunReply open = MICROLOG__V1__OPEN_RUN_REPLY__INIT;
    Microlog__V1__BatchReply batch = MICROLOG__V1__BATCH_REPLY__INIT;
    Microlog__V1__CloseRunReply close = MICROLOG__V1__CLOSE_RUN_REPLY__INIT;
    const ProtobufCMessage *reply = NULL;
    int32_t status = 0;
    char run_id[200];
    bool answer = !k->never_reply;
    if (strcmp(e->method, ML_METHOD_OPEN_RUN) == 0) {
        status = k->open_status;
        if (status == 0)
            on_open(k, &w, &open, run_id, sizeof(run_id));
        reply = &open.base;
    } else if (strcmp(e->method, ML_METHOD_BATCH) == 0) {
        answer = on_batch(k, &w, &batch) && answer;
        reply = &batch.base;
        if (k->refuse_now)
            status = MICROLOG__V1__STATUS__OUT_OF_RANGE;
    } else if (strcmp(e->method, ML_METHOD_CLOSE_RUN) == 0) {
        on_close(k, &w, &close);
        close.run_id = "closed-id-ignored";
        reply = &close.base;
    } else {
        violation(k, "unknown method %s", e->method);
    }
    uint8_t *out;
    size_t out_len;
    const char *why = status == MICROLOG__V1__STATUS__OUT_OF_RANGE
                          ? "run x reached the collector's maximum run size"
                          : "bad token";
    if (answer && ml_wire_pack(e->method, e->call_id, status, status ? why : NULL, NULL,
                               status ? NULL : reply, &out, &out_len) == 0) {
        nng_send(k->sock, out, out_len, 0);
        free(out);
    }
    ml_wire_msg_free(&w);
}

static void *collector_main(void *arg)
{
    collector *k = arg;
    while (!atomic_load(&k->stop)) {
        nng_msg *m;
        if (nng_recvmsg(k->sock, &m, 0) != 0)
            continue; /* receive timeout: check stop */
        serve_one(k, nng_msg_body(m), nng_msg_len(m));
        nng_msg_free(m);
    }
    return NULL;
}

/* Starts a collector on port (0: any free port). */
static collector *collector_start(int port)
{
    collector *k = calloc(1, sizeof(*k));
    char url[64];
    nng_listener l;
    assert_non_null(k);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    assert_int_equal(nng_rep0_open(&k->sock), 0);
    assert_int_equal(nng_socket_set_ms(k->sock, NNG_OPT_RECVTIMEO, 20), 0);
    assert_int_equal(nng_listen(k->sock, url, &l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &k->port), 0);
    snprintf(k->url, sizeof(k->url), "tcp://127.0.0.1:%d", k->port);
    return k;
}

static void collector_run(collector *k)
{
    assert_int_equal(pthread_create(&k->thread, NULL, collector_main, k), 0);
}

static void collector_stop(collector *k)
{
    atomic_store(&k->stop, true);
    pthread_join(k->thread, NULL);
    nng_close(k->sock);
}

static void collector_free(collector *k)
{
    for (uint32_t i = 1; i <= k->nstrs; i++)
        free(k->strs[i]);
    for (size_t i = 0; i < k->nlogs && i < MAX_LOGS; i++) {
        free(k->log_msg[i]);
        free(k->log_logger[i]);
    }
    free(k);
}

/* ---- helpers --------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ml_client_config test_config(const char *ingest)
{
    ml_client_config cfg;
    ml_client_config_init(&cfg);
    cfg.server = "http://127.0.0.1:1"; /* never used when ingest is set */
    cfg.ingest = ingest;
    cfg.flush_interval_ms = 20;
    cfg.batch_max_bytes = 2048;
    cfg.connect_timeout_ms = 300;
    cfg.quiet = true;
    return cfg;
}

/* Interns a stack of depth frames named "<prefix>.f<i>" and returns its id. */
static uint32_t make_stack(ml_client *c, const char *prefix, int depth)
{
    uint32_t frames[16], file = ml_client_string(c, "/src/app.py", 11);
    for (int i = 0; i < depth; i++) {
        char name[64];
        int n = snprintf(name, sizeof(name), "%s.f%d", prefix, i);
        frames[i] = ml_client_frame(c, ml_client_string(c, name, (size_t)n), file,
                                    (uint32_t)(10 + i), 1, 0);
    }
    return ml_client_stack(c, frames, (size_t)depth, 0);
}

/* Name of the innermost frame of a stack as the collector saw it. */
static const char *top_name(const collector *k, uint32_t stack)
{
    return k->strs[k->frame_name[k->stack_top[stack]]];
}

/* Captures what is written to fd 2 between start and end. */
typedef struct capture {
    int saved;
    char path[32];
} capture;

static void capture_start(capture *cap)
{
    strcpy(cap->path, "/tmp/mltest-XXXXXX");
    int fd = mkstemp(cap->path);
    assert_true(fd >= 0);
    cap->saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(capture *cap)
{
    dup2(cap->saved, 2);
    close(cap->saved);
    FILE *f = fopen(cap->path, "r");
    char *text = calloc(1, 4096);
    size_t n = fread(text, 1, 4095, f);
    text[n] = '\0';
    fclose(f);
    unlink(cap->path);
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- tests ----------------------------------------------------------------- */

/* Records n samples (one stack) and a log line every 10, then closes. */
static int record_and_close(ml_client *c, int n, ml_client_result *res)
{
    uint32_t th = ml_client_thread(c, 1001, 2001, "MainThread");
    uint32_t stack = make_stack(c, "fold", 3);
    for (int i = 0; i < n; i++) {
        assert_int_equal(ml_client_sample(c, th, (int64_t)i * 1000, stack, 7), 0);
        if (i % 10 == 0)
            assert_int_equal(
                ml_client_log(c, th, (int64_t)i * 1000, ML_LOG_STDOUT, 0, "line", 4, stack, NULL),
                0);
        if (i % 100 == 0)
            usleep(25000); /* a few flushes: several batches before the last */
    }
    return ml_client_close(c, 0, 5000, res);
}

/* A collector that takes final_batch gets the last batch inside CloseRun:
 * stored once, in order, the run complete. */
static void test_last_batch_folded_into_close(void **state)
{
    collector *k = collector_start(0);
    k->takes_final_batch = true;
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    ml_run_info run = {.label = "folded"};
    ml_client *c;
    ml_client_result res;
    assert_int_equal(ml_client_new(&cfg, &run, &c), 0);
    assert_int_equal(record_and_close(c, 350, &res), 0);
    collector_stop(k);

    assert_int_equal(k->violations, 0);
    assert_int_equal(k->folded, 1);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->dups, 0);
    assert_true(k->last_seq >= 2);
    assert_int_equal(k->close_last_seq, k->last_seq);
    assert_int_equal(k->nsamples, 350);
    assert_int_equal(k->nlogs, 35);
    assert_true(res.delivered);
    assert_int_equal(res.batches_sent, k->last_seq);
    assert_int_equal(res.batches_acked, k->last_seq);
    ml_client_free(c);
    collector_free(k);
    (void)state;
}

/* The clients closed dying: never freed (ml_client_close_dying), kept
 * reachable here for the leak checker. */
static ml_client *dying_clients[8];

/* ml_client_close_dying (a SIGTERM's close) with the sender's timers far
 * off (5 s flush interval): the sender must hear every wake-up, so the run
 * is delivered well inside the 1.5 s timeout. When the close waited on the
 * sender's own condition, an nng callback's signal could wake the close
 * instead of the sender, which slept on to its next timer: past the
 * deadline, the run not delivered. */
static void test_dying_close_is_prompt(void **state)
{
    for (size_t i = 0; i < sizeof(dying_clients) / sizeof(dying_clients[0]); i++) {
        collector *k = collector_start(0);
        collector_run(k);
        ml_client_config cfg = test_config(k->url);
        cfg.flush_interval_ms = 5000;
        ml_run_info run = {.label = "dying"};
        assert_int_equal(ml_client_new(&cfg, &run, &dying_clients[i]), 0);
        ml_client *c = dying_clients[i];
        uint32_t th = ml_client_thread(c, 1001, 2001, "MainThread");
        uint32_t stack = make_stack(c, "dying", 3);
        for (int j = 0; j < 50; j++)
            assert_int_equal(ml_client_sample(c, th, (int64_t)j * 1000, stack, 7), 0);
        usleep(50000); /* the run opened: the sender waits on its timers */
        assert_int_equal(ml_client_close_dying(c, 143, 1500), 0);
        collector_stop(k);
        assert_int_equal(k->violations, 0);
        assert_int_equal(k->closes, 1);
        assert_int_equal(k->nsamples, 50);
        collector_free(k);
    }
    (void)state;
}

/* A collector that announces final_batch but ignores it (an older one
 * behind the same address) answers the folded CloseRun "incomplete": the
 * client sends the batch alone and CloseRun again, and the run is whole. */
static void test_ignored_final_batch_is_sent_again(void **state)
{
    collector *k = collector_start(0);
    k->takes_final_batch = k->ignore_final_batch = true;
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    ml_run_info run = {.label = "unfolded"};
    ml_client *c;
    ml_client_result res;
    assert_int_equal(ml_client_new(&cfg, &run, &c), 0);
    assert_int_equal(record_and_close(c, 250, &res), 0);
    collector_stop(k);

    assert_int_equal(k->violations, 0);
    assert_int_equal(k->folded, 1);
    assert_int_equal(k->closes, 2);
    assert_int_equal(k->close_last_seq, k->last_seq);
    assert_int_equal(k->nsamples, 250);
    assert_true(res.delivered);
    assert_int_equal(res.batches_sent, k->last_seq); /* the last batch counted once */
    assert_int_equal(res.batches_acked, k->last_seq);
    ml_client_free(c);
    collector_free(k);
    (void)state;
}

/* A whole run arrives exactly once and in order, over several batches. */
static void test_run_delivered_in_order(void **state)
{
    collector *k = collector_start(0);
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    const char *argv[] = {"app.py", "-v"};
    ml_run_info run = {.label = "e2e run", .argv = argv, .argc = 2};
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, &run, &c), 0);
    char provisional[256];
    snprintf(provisional, sizeof(provisional), "%s", ml_client_run_id(c));

    uint32_t th = ml_client_thread(c, 1001, 2001, "MainThread");
    uint32_t stacks[8];
    int nstacks = 0;
    const int N = 3000;
    for (int i = 0; i < N; i++) {
        if (i % 400 == 0) { /* new definitions keep appearing mid-run */
            char prefix[16];
            snprintf(prefix, sizeof(prefix), "phase%d", nstacks);
            stacks[nstacks] = make_stack(c, prefix, 1 + nstacks % 5);
            nstacks++;
        }
        assert_int_equal(ml_client_sample(c, th, (int64_t)i * 1000, stacks[nstacks - 1], 7), 0);
        if (i % 100 == 0) {
            char msg[64];
            int n = snprintf(msg, sizeof(msg), "step %d", i);
            assert_int_equal(ml_client_log(c, th, (int64_t)i * 1000, ML_LOG_LOGGING, 20, msg,
                                           (size_t)n, stacks[nstacks - 1], "app.steps"),
                             0);
        }
        if (i % 250 == 0) {
            ml_status st = {.time = (int64_t)i * 1000, .cpu_percent = 50, .rss = 1 << 20};
            assert_int_equal(ml_client_status(c, &st), 0);
        }
        if (i % 500 == 0)
            usleep(5000); /* let the flush timer seal some batches too */
    }
    ml_client_result res;
    int rv = ml_client_close(c, 3, 5000, &res);
    collector_stop(k);

    assert_int_equal(k->violations, 0);
    if (k->violations)
        fail_msg("%s", k->violation);
    assert_int_equal(rv, 0);
    assert_true(res.delivered);
    assert_true(res.collector_reached);
    assert_int_equal(res.samples, N);
    assert_int_equal(res.logs, N / 100);
    assert_int_equal(res.dropped_samples, 0);
    assert_int_equal(res.dropped_logs, 0);
    assert_string_equal(res.error, "");
    assert_true(res.batches_sent >= 3);
    assert_int_equal(res.batches_sent, res.batches_acked);
    assert_int_equal(res.batches_acked, k->last_seq);

    assert_int_equal(k->opens, 1);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->dups, 0);
    assert_string_equal(k->label, "e2e_run");
    assert_int_equal(k->pid, getpid());
    assert_int_equal(k->nargv, 2);
    assert_int_equal(k->close_last_seq, k->last_seq);
    assert_int_equal(k->close_exit, 3);
    assert_int_equal(k->nsamples, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(k->sample_time[i], (int64_t)i * 1000);
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "phase%d.", i / 400);
        assert_memory_equal(top_name(k, k->sample_stack[i]), prefix, strlen(prefix));
    }
    assert_int_equal(k->nlogs, N / 100);
    for (int i = 0; i < N / 100; i++) {
        char want[32];
        snprintf(want, sizeof(want), "step %d", i * 100);
        assert_string_equal(k->log_msg[i], want);
        assert_string_equal(k->log_logger[i], "app.steps");
    }
    assert_int_equal(k->nstatus, N / 250);
    assert_int_equal(k->thread_defs[th], 1);
    assert_string_equal(k->thread_name[th], "MainThread");

    /* the collector's run id replaces the provisional one */
    char want[300];
    snprintf(want, sizeof(want), "%s-2", provisional);
    assert_string_equal(ml_client_run_id(c), want);
    assert_string_equal(res.run_id, want);
    ml_client_free(c);
    collector_free(k);
}

/* An unanswered batch is sent again (same envelope); the duplicate is harmless. */
static void test_unanswered_batch_is_retried(void **state)
{
    collector *k = collector_start(0);
    k->ignore_batches = 2;
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t th = ml_client_thread(c, 1, 1, NULL);
    uint32_t st = make_stack(c, "retry", 3);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(ml_client_sample(c, th, i, st, 0), 0);
        if (i % 100 == 0)
            usleep(30000);
    }
    ml_client_result res;
    int rv = ml_client_close(c, 0, 8000, &res);
    collector_stop(k);
    if (k->violations)
        fail_msg("%s", k->violation);
    assert_int_equal(rv, 0);
    assert_true(res.delivered);
    assert_true(k->dups >= 1);
    assert_int_equal(k->nsamples, 500);
    for (int i = 0; i < 500; i++)
        assert_int_equal(k->sample_time[i], i);
    assert_int_equal(res.batches_acked, k->last_seq);
    assert_string_equal(k->thread_name[th], "Thread-1");
    ml_client_free(c);
    collector_free(k);
}

/* A collector that starts after the program is still reached. */
static void test_collector_starting_late(void **state)
{
    collector *probe = collector_start(0); /* finds a free port */
    int port = probe->port;
    char url[64];
    snprintf(url, sizeof(url), "%s", probe->url);
    nng_close(probe->sock);
    collector_free(probe);

    ml_client_config cfg = test_config(url);
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ml_client_sample(c, th, i, 0, 0), 0);
        usleep(5000);
    }
    collector *k = collector_start(port);
    collector_run(k);
    for (int i = 100; i < 200; i++)
        assert_int_equal(ml_client_sample(c, th, i, 0, 0), 0);
    ml_client_result res;
    int rv = ml_client_close(c, 0, 8000, &res);
    collector_stop(k);
    if (k->violations)
        fail_msg("%s", k->violation);
    assert_int_equal(rv, 0);
    assert_true(res.delivered);
    assert_int_equal(k->nsamples, 200);
    /* reached late: the early failure is recorded, but the run is complete */
    assert_string_not_equal(res.error, "");
    ml_client_free(c);
    collector_free(k);
}

/* A permanent rejection stops the client at once; the loss is counted and
 * told in one line. */
static void test_rejected_run(void **state)
{
    collector *k = collector_start(0);
    k->open_status = MICROLOG__V1__STATUS__UNAUTHENTICATED;
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    cfg.quiet = false;
    cfg.token = "wrong";
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    for (int i = 0; i < 50; i++)
        ml_client_sample(c, th, i, 0, 0);
    usleep(200000);
    for (int i = 50; i < 100; i++)
        ml_client_sample(c, th, i, 0, 0);
    capture cap;
    capture_start(&cap);
    int64_t t0 = mono_ms();
    ml_client_result res;
    int rv = ml_client_close(c, 0, 5000, &res);
    int64_t took = mono_ms() - t0;
    char *err = capture_end(&cap);
    collector_stop(k);

    assert_int_equal(rv, -EACCES);
    assert_true(took < 1000);
    assert_false(res.delivered);
    assert_true(res.collector_reached);
    assert_int_equal(res.samples, 100);
    assert_int_equal(res.dropped_samples, 0); /* refused, so saved to the spool */
    assert_true(res.spooled);
    assert_non_null(strstr(res.error, "unauthenticated: bad token"));
    assert_string_equal(k->tokens, "wrong");
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "Microlog: the collector at tcp://127.0.0.1:"));
    assert_non_null(strstr(err, "refused this run (unauthenticated: bad token)"));
    assert_int_equal(k->nsamples, 0);
    free(err);
    ml_client_free(c);
    collector_free(k);
}

/* A run over the collector's maximum run size (OUT_OF_RANGE) is refused for
 * good: the refused batch is not retried, later batches are not sent (their
 * samples are counted as dropped), nothing is spooled, CloseRun still closes
 * the run, and the reason is told in one line. */
static void test_run_over_maximum_size(void **state)
{
    collector *k = collector_start(0);
    k->refuse_from = 2;
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    cfg.quiet = false;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    uint32_t st = make_stack(c, "big", 2);
    for (int i = 0; i < 600; i++) {
        assert_int_equal(ml_client_sample(c, th, i, st, 0), 0);
        if (i % 100 == 99)
            usleep(120000); /* a few flush intervals: several batches */
    }
    capture cap;
    capture_start(&cap);
    ml_client_result res;
    int rv = ml_client_close(c, 0, 5000, &res);
    char *err = capture_end(&cap);
    collector_stop(k);
    if (k->violations)
        fail_msg("%s", k->violation);
    assert_int_equal(rv, -EFBIG);
    assert_int_equal(k->refusals, 1); /* not retried, nothing sent after it */
    assert_int_equal(k->closes, 1);
    assert_false(res.delivered);
    assert_false(res.spooled);
    assert_true(k->nsamples > 0 && k->nsamples < 600);
    assert_int_equal(res.dropped_samples, 600 - k->nsamples);
    assert_int_equal(k->close_dropped_samples, 600 - k->nsamples);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "stored only the start of this run (run x reached the "
                                "collector's maximum run size)"));
    free(err);
    ml_client_free(c);
    collector_free(k);
}

/* The token travels in every envelope; renames and thread ends re-send the
 * ThreadDef under the same id. */
static void test_token_and_thread_changes(void **state)
{
    collector *k = collector_start(0);
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    cfg.token = "team-token";
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t t1 = ml_client_thread(c, 1, 1, "MainThread");
    uint32_t t2 = ml_client_thread(c, 2, 2, "Thread-2");
    ml_client_sample(c, t1, 1, 0, 0);
    ml_client_sample(c, t2, 2, 0, 0);
    usleep(100000); /* delivered in an early batch */
    assert_int_equal(ml_client_thread(c, 2, 2, "worker"), t2);
    assert_int_equal(ml_client_thread_end(c, t2, 5555), 0);
    ml_client_sample(c, t1, 3, 0, 0);
    ml_client_result res;
    assert_int_equal(ml_client_close(c, 0, 5000, &res), 0);
    collector_stop(k);
    if (k->violations)
        fail_msg("%s", k->violation);
    assert_string_equal(k->tokens, "team-token");
    assert_false(k->token_mismatch);
    assert_int_equal(k->nthreads, 2);
    assert_int_equal(k->thread_defs[t1], 1);
    assert_int_equal(k->thread_defs[t2], 2);
    assert_string_equal(k->thread_name[t2], "worker");
    assert_int_equal(k->thread_ended[t2], 5555);
    assert_int_equal(k->thread_ended[t1], 0);
    /* recording after close is refused */
    assert_int_equal(ml_client_sample(c, t1, 4, 0, 0), -ESHUTDOWN);
    assert_int_equal(ml_client_string(c, "late", 4), 0);
    ml_client_free(c);
    collector_free(k);
}

/* A collector that takes requests but never answers: close keeps to its timeout. */
static void test_hung_collector(void **state)
{
    collector *k = collector_start(0);
    k->never_reply = true;
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    cfg.connect_timeout_ms = 5000;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    for (int i = 0; i < 10; i++)
        ml_client_sample(c, th, i, 0, 0);
    usleep(100000);
    int64_t t0 = mono_ms();
    ml_client_result res;
    int rv = ml_client_close(c, 0, 400, &res);
    int64_t took = mono_ms() - t0;
    collector_stop(k);
    assert_int_equal(rv, -ETIMEDOUT);
    assert_true(took >= 350 && took < 900);
    assert_false(res.delivered);
    assert_int_equal(res.dropped_samples, 0); /* unacknowledged, so saved to the spool */
    assert_true(res.spooled);
    ml_client_free(c);
    collector_free(k);
}

/* nng_close() as nng < 1.8 can leave it under traffic: never returning.
 * While close_blocked is set, the client's nng_close() waits here (the
 * executable's definition interposes on libnng's); then the real one. */
static atomic_bool close_blocked, close_waiting;

int nng_close(nng_socket s)
{
    if (atomic_load(&close_blocked)) {
        atomic_store(&close_waiting, true);
        while (atomic_load(&close_blocked))
            usleep(1000);
    }
    int (*real)(nng_socket) = (int (*)(nng_socket))dlsym(RTLD_NEXT, "nng_close");
    return real(s);
}

/* A sender stuck in nng_close() after delivering the run: ml_client_close
 * returns at its deadline plus the grace with the run delivered, and
 * ml_client_free leaves the client to the thread. */
static void test_stuck_socket_close(void **state)
{
    (void)state;
    collector *k = collector_start(0);
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    for (int i = 0; i < 10; i++)
        ml_client_sample(c, th, i, 0, 0);
    atomic_store(&close_blocked, true);
    int64_t t0 = mono_ms();
    ml_client_result res;
    int rv = ml_client_close(c, 0, 400, &res);
    int64_t took = mono_ms() - t0;
    assert_true(atomic_load(&close_waiting)); /* the sender did wait in nng_close */
    assert_int_equal(rv, 0);
    assert_true(res.delivered);
    assert_int_equal(res.samples, 10);
    assert_true(took >= 2000 && took < 10000); /* the grace, then not a moment longer */
    ml_client_free(c);
    atomic_store(&close_blocked, false); /* the sender ends by itself */
    usleep(100000);
    collector_stop(k);
    collector_free(k);
}

/* Several threads record at once while the sender seals: every sample
 * arrives once, each thread's samples in its own order. */
typedef struct recorder {
    ml_client *c;
    int index;
    int refused;
} recorder;

#define RECORDERS 4
#define PER_RECORDER 4000

static void *recorder_main(void *arg)
{
    recorder *r = arg;
    char name[32];
    snprintf(name, sizeof(name), "worker-%d", r->index);
    uint32_t th = ml_client_thread(r->c, 100 + (uint64_t)r->index, 0, name);
    for (int i = 0; i < PER_RECORDER; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "w%d.s%d", r->index, i % 7);
        uint32_t st = make_stack(r->c, prefix, 1 + i % 4);
        if (th == 0 || st == 0 ||
            ml_client_sample(r->c, th, (int64_t)i * RECORDERS + r->index, st, 1) != 0)
            r->refused++;
        if (i % 50 == 0 &&
            ml_client_log(r->c, th, i, ML_LOG_STDOUT, 0, name, strlen(name), st, NULL) != 0)
            r->refused++;
    }
    return NULL;
}

static void test_concurrent_recording(void **state)
{
    collector *k = collector_start(0);
    collector_run(k);
    ml_client_config cfg = test_config(k->url);
    cfg.flush_interval_ms = 5;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    pthread_t threads[RECORDERS];
    recorder rec[RECORDERS];
    for (int i = 0; i < RECORDERS; i++) {
        rec[i] = (recorder){c, i, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, recorder_main, &rec[i]), 0);
    }
    for (int i = 0; i < RECORDERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(rec[i].refused, 0);
    }
    ml_client_result res;
    int rv = ml_client_close(c, 0, 10000, &res);
    collector_stop(k);
    if (k->violations)
        fail_msg("%s", k->violation);
    assert_int_equal(rv, 0);
    assert_int_equal(k->nsamples, RECORDERS * PER_RECORDER);
    assert_int_equal(k->nthreads, RECORDERS);
    assert_int_equal(k->nlogs, RECORDERS * PER_RECORDER / 50);
    int64_t last[RECORDERS + 1];
    int count[RECORDERS + 1] = {0};
    for (int i = 0; i <= RECORDERS; i++)
        last[i] = -1;
    for (size_t i = 0; i < k->nsamples; i++) {
        uint32_t th = k->sample_thread[i];
        int w = (int)(k->sample_time[i] % RECORDERS);
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "w%d.", w);
        assert_memory_equal(top_name(k, k->sample_stack[i]), prefix, strlen(prefix));
        char name[32];
        snprintf(name, sizeof(name), "worker-%d", w);
        assert_string_equal(k->thread_name[th], name);
        assert_true(k->sample_time[i] > last[th]);
        last[th] = k->sample_time[i];
        count[th]++;
    }
    for (int i = 1; i <= RECORDERS; i++)
        assert_int_equal(count[i], PER_RECORDER);
    /* each recorder uses 7 names x 4 depths (i % 7, i % 4 cover all 28 pairs):
     * interned once each however the threads interleave */
    assert_int_equal(k->nstacks, RECORDERS * 28);
    assert_int_equal(k->nframes, RECORDERS * 28);
    assert_int_equal(k->nstrs, RECORDERS * 28 + 1);
    ml_client_free(c);
    collector_free(k);
}

/* ---- discovery over HTTP --------------------------------------------------- */

typedef struct http {
    int fd, port;
    pthread_t thread;
    char body[256];
    int status;
    char auth[128]; /* Authorization header seen */
    char path[128];
} http;

static void *http_main(void *arg)
{
    http *h = arg;
    int fd = accept(h->fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char req[4096];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        ssize_t r = read(fd, req + n, sizeof(req) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[n] = '\0';
    sscanf(req, "GET %127s", h->path);
    const char *a = strstr(req, "Authorization: ");
    if (a)
        sscanf(a + 15, "%127[^\r]", h->auth);
    char resp[512];
    int len = snprintf(resp, sizeof(resp),
                       "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
                       "%zu\r\nConnection: close\r\n\r\n%s",
                       h->status, strlen(h->body), h->body);
    if (write(fd, resp, (size_t)len) < 0)
        fail();
    close(fd);
    return NULL;
}

static http *http_start(int status, const char *body)
{
    http *h = calloc(1, sizeof(*h));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    h->status = status;
    snprintf(h->body, sizeof(h->body), "%s", body);
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(h->fd, 4), 0);
    getsockname(h->fd, (struct sockaddr *)&sa, &len);
    h->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&h->thread, NULL, http_main, h), 0);
    return h;
}

static void http_stop(http *h)
{
    shutdown(h->fd, SHUT_RDWR);
    pthread_join(h->thread, NULL);
    close(h->fd);
    free(h);
}

static void test_discovery(void **state)
{
    collector *k = collector_start(0);
    collector_run(k);
    char body[128], server[64];
    snprintf(body, sizeof(body), "{\"ingest\": \"%s\", \"protocol\": 1}", k->url);
    http *h = http_start(200, body);
    snprintf(server, sizeof(server), "http://127.0.0.1:%d/", h->port);
    ml_client_config cfg = test_config(NULL);
    cfg.server = server;
    cfg.token = "tok123";
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    for (int i = 0; i < 20; i++)
        ml_client_sample(c, th, i, 0, 0);
    ml_client_result res;
    assert_int_equal(ml_client_close(c, 0, 5000, &res), 0);
    collector_stop(k);
    assert_true(res.delivered);
    assert_int_equal(k->nsamples, 20);
    assert_string_equal(h->path, "/api/v1/ingest");
    assert_string_equal(h->auth, "Bearer tok123");
    http_stop(h);
    ml_client_free(c);
    collector_free(k);
}

/* Answers that can never work stop the client with a clear reason. */
static void check_discovery_error(int status, const char *body, int want_rv, const char *want)
{
    http *h = http_start(status, body);
    char server[64];
    snprintf(server, sizeof(server), "http://127.0.0.1:%d", h->port);
    ml_client_config cfg = test_config(NULL);
    cfg.server = server;
    cfg.quiet = false;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    usleep(100000);
    capture cap;
    capture_start(&cap);
    ml_client_result res;
    int64_t t0 = mono_ms();
    int rv = ml_client_close(c, 0, 3000, &res);
    int64_t took = mono_ms() - t0;
    char *err = capture_end(&cap);
    assert_int_equal(rv, want_rv);
    assert_true(took < 500); /* permanent: no waiting for the timeout */
    assert_non_null(strstr(res.error, want));
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "Microlog: the collector at http://127.0.0.1:"));
    assert_non_null(strstr(err, "refused this run"));
    assert_non_null(strstr(err, "run saved to "));
    free(err);
    http_stop(h);
    ml_client_free(c);
}

static void test_discovery_errors(void **state)
{
    check_discovery_error(404, "{}", -ENOENT, "is this a Microlog collector?");
    check_discovery_error(200, "{\"ingest\": \"tcp://127.0.0.1:1\", \"protocol\": 2}",
                          -EPROTONOSUPPORT, "the collector speaks protocol 2");
    check_discovery_error(200, "not json", -EBADMSG, "no ingest address");
}

/* Each test gets an empty spool directory: the spooled run of one test is
 * not delivered as a leftover to the next test's collector. */
static int fresh_spool(void **state)
{
    char spool[] = "/tmp/mltest-spool-XXXXXX";
    if (mkdtemp(spool) == NULL)
        return -1;
    setenv("MICROLOG_SPOOL_DIR", spool, 1);
    return 0;
}

int main(void)
{
    setenv("MICROLOG_AUTOSTART", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_run_delivered_in_order, fresh_spool),
        cmocka_unit_test_setup(test_last_batch_folded_into_close, fresh_spool),
        cmocka_unit_test_setup(test_dying_close_is_prompt, fresh_spool),
        cmocka_unit_test_setup(test_ignored_final_batch_is_sent_again, fresh_spool),
        cmocka_unit_test_setup(test_unanswered_batch_is_retried, fresh_spool),
        cmocka_unit_test_setup(test_collector_starting_late, fresh_spool),
        cmocka_unit_test_setup(test_rejected_run, fresh_spool),
        cmocka_unit_test_setup(test_run_over_maximum_size, fresh_spool),
        cmocka_unit_test_setup(test_token_and_thread_changes, fresh_spool),
        cmocka_unit_test_setup(test_hung_collector, fresh_spool),
        cmocka_unit_test_setup(test_stuck_socket_close, fresh_spool),
        cmocka_unit_test_setup(test_concurrent_recording, fresh_spool),
        cmocka_unit_test_setup(test_discovery, fresh_spool),
        cmocka_unit_test_setup(test_discovery_errors, fresh_spool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
