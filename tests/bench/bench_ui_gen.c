/*
 * Recording generator for bench_ui: sends one long run to a running
 * micrologd through the real ingest protocol (envelope + protobuf-c over an
 * nng REQ socket), as the client would: T threads sampled together every
 * PERIOD_US, status ticks every 100 ms, a log line every 30 s.
 *
 * Each thread walks a tree of call stacks (depth up to 24): it stays in a
 * stack for a random number of samples, then moves to a child (a call), the
 * parent (a return) or a sibling, so the timeline shows nested calls of
 * realistic lengths rather than noise.
 *
 *   bench_ui_gen URL SECONDS THREADS [PERIOD_US (10000: 100 Hz)]
 *
 * Prints one JSON line: {"run": "<run id>", "samples": N, "seconds": S}.
 * Exit status 0 when every batch was acknowledged.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "microlog.pb-c.h"
#include "wire.h"

enum { NFUNCS = 600, NSTACKS = 6000, MAXDEPTH = 24, MAXTHREADS = 16, BATCH_S = 10 };

typedef struct {
    uint32_t frames[MAXDEPTH];
    uint32_t depth;
    uint32_t parent; /* stack index, 0 for a thread's root */
    uint32_t first_child, next_sibling;
} stack_t_;

static stack_t_ stacks[NSTACKS + 1];
static unsigned seed = 12345;

static unsigned rnd(void)
{
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) & 0xffffff;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends one request; on success stores the reply payload's run id (if asked). */
static int call(nng_socket s, const char *method, const ProtobufCMessage *m, char *run_id,
                size_t cap)
{
    uint8_t *buf;
    size_t len;
    if (ml_wire_pack(method, 1, 0, NULL, NULL, m, &buf, &len) != 0)
        return -1;
    int rv = nng_send(s, buf, len, 0);
    free(buf);
    if (rv != 0)
        return -1;
    char *rep;
    size_t rlen;
    if ((rv = nng_recv(s, &rep, &rlen, NNG_FLAG_ALLOC)) != 0)
        return -1;
    ml_wire_msg msg;
    rv = ml_wire_unpack((uint8_t *)rep, rlen, &msg);
    nng_free(rep, rlen);
    if (rv != 0)
        return -1;
    int st = msg.env->status;
    if (st != 0)
        fprintf(stderr, "bench_ui_gen: %s: %s\n", method, msg.env->error);
    if (st == 0 && run_id) {
        Microlog__V1__OpenRunReply *r =
            microlog__v1__open_run_reply__unpack(NULL, msg.payload_len, msg.payload);
        if (r) {
            snprintf(run_id, cap, "%s", r->run_id);
            microlog__v1__open_run_reply__free_unpacked(r, NULL);
        }
    }
    ml_wire_msg_free(&msg);
    return st == 0 ? 0 : -1;
}

/* Stacks 1..nthreads are the threads' roots; each later stack extends a random earlier one. */
static void make_stacks(int nthreads)
{
    for (uint32_t i = 1; i <= NSTACKS; i++) {
        stack_t_ *st = &stacks[i];
        if ((int)i <= nthreads) {
            st->frames[0] = i; /* a per-thread root function */
            st->depth = 1;
            continue;
        }
        uint32_t p;
        do
            p = 1 + rnd() % (i - 1);
        while (stacks[p].depth >= MAXDEPTH);
        *st = stacks[p];
        st->frames[st->depth++] = (uint32_t)(nthreads + 1 + rnd() % (NFUNCS - nthreads));
        st->parent = p;
        st->first_child = 0;
        st->next_sibling = stacks[p].first_child;
        stacks[p].first_child = i;
    }
}

/* The next stack of a thread: a call (child), a return (parent) or a sibling. */
static uint32_t step(uint32_t cur)
{
    unsigned r = rnd() % 10;
    if (r < 4 && stacks[cur].first_child) {
        uint32_t c = stacks[cur].first_child;
        for (unsigned k = rnd() % 4; k && stacks[c].next_sibling; k--)
            c = stacks[c].next_sibling;
        return c;
    }
    if (stacks[cur].parent == 0)
        return cur;
    if (r < 8)
        return stacks[cur].parent;
    uint32_t c = stacks[stacks[cur].parent].first_child;
    for (unsigned k = rnd() % 4; k && stacks[c].next_sibling; k--)
        c = stacks[c].next_sibling;
    return c;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: bench_ui_gen URL SECONDS THREADS [PERIOD_US]\n");
        return 2;
    }
    const char *url = argv[1];
    long seconds = atol(argv[2]);
    int nthreads = atoi(argv[3]);
    int64_t period = argc == 5 ? atoll(argv[4]) : 10000;
    if (seconds < 1 || nthreads < 1 || nthreads > MAXTHREADS || period < 100)
        return 2;
    make_stacks(nthreads);

    nng_socket s;
    if (nng_req0_open(&s) != 0 || nng_dial(s, url, NULL, 0) != 0) {
        fprintf(stderr, "bench_ui_gen: cannot dial %s\n", url);
        return 1;
    }
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 30000);
    char uid[40], run_id[256] = "";
    snprintf(uid, sizeof(uid), "benchui%08lx%08lx", (long)getpid(), (long)time(NULL));
    Microlog__V1__OpenRun o = MICROLOG__V1__OPEN_RUN__INIT;
    o.run_uid = uid;
    o.label = "bench-ui";
    char stamp[32];
    time_t wall = time(NULL);
    strftime(stamp, sizeof(stamp), "%Y_%m_%d_%H_%M_%S", localtime(&wall));
    o.timestamp = stamp;
    o.start_unix_us = (int64_t)wall * 1000000;
    o.host = "bench";
    o.user = "bench";
    o.sample_period = (double)period / 1e6;
    o.status_period = 0.1;
    o.memory_period = 1.0;
    if (call(s, ML_METHOD_OPEN_RUN, &o.base, run_id, sizeof(run_id)) != 0)
        return 1;

    /* Definitions, sent with the first batch. */
    static char names[NFUNCS + 8][64];
    static Microlog__V1__StringDef sd[NFUNCS + 8];
    static Microlog__V1__StringDef *sdp[NFUNCS + 8];
    static Microlog__V1__FrameDef fd[NFUNCS], *fdp[NFUNCS];
    static Microlog__V1__StackDef sk[NSTACKS], *skp[NSTACKS];
    Microlog__V1__ThreadDef td[MAXTHREADS], *tdp[MAXTHREADS];
    char tnames[MAXTHREADS][24];
    size_t nstr = 0;
    for (int i = 0; i < NFUNCS; i++) {
        if (i < nthreads)
            snprintf(names[i], sizeof(names[i]), "app.threads.run_%d", i);
        else
            snprintf(names[i], sizeof(names[i]), "pkg%d.mod%d.Class%d.method_%d", i % 7, i % 23,
                     i % 41, i);
        microlog__v1__string_def__init(&sd[nstr]);
        sd[nstr].id = (uint32_t)nstr + 1;
        sd[nstr].value = names[i];
        sdp[nstr] = &sd[nstr];
        nstr++;
    }
    uint32_t file_id = (uint32_t)nstr + 1;
    snprintf(names[NFUNCS], sizeof(names[NFUNCS]), "/srv/app/generated.py");
    microlog__v1__string_def__init(&sd[nstr]);
    sd[nstr].id = file_id;
    sd[nstr].value = names[NFUNCS];
    sdp[nstr] = &sd[nstr];
    nstr++;
    for (int i = 0; i < NFUNCS; i++) {
        microlog__v1__frame_def__init(&fd[i]);
        fd[i].id = (uint32_t)i + 1;
        fd[i].name = (uint32_t)i + 1;
        fd[i].file = file_id;
        fd[i].line = fd[i].first_line = (uint32_t)(10 + 5 * i);
        fdp[i] = &fd[i];
    }
    for (int i = 0; i < NSTACKS; i++) {
        microlog__v1__stack_def__init(&sk[i]);
        sk[i].id = (uint32_t)i + 1;
        sk[i].frames = stacks[i + 1].frames;
        sk[i].n_frames = stacks[i + 1].depth;
        skp[i] = &sk[i];
    }
    for (int i = 0; i < nthreads; i++) {
        microlog__v1__thread_def__init(&td[i]);
        td[i].id = (uint32_t)i + 1;
        td[i].ident = (uint64_t)(1000 + i);
        td[i].native_id = (uint64_t)(2000 + i);
        snprintf(tnames[i], sizeof(tnames[i]), i ? "worker-%d" : "MainThread", i);
        td[i].name = tnames[i];
        tdp[i] = &td[i];
    }

    long ticks_per_batch = (long)(BATCH_S * 1000000 / period);
    size_t n = (size_t)ticks_per_batch * (size_t)nthreads;
    uint32_t *thread = malloc(sizeof(uint32_t) * n), *stack = malloc(sizeof(uint32_t) * n);
    uint32_t *cpu = malloc(sizeof(uint32_t) * n);
    int64_t *delta = malloc(sizeof(int64_t) * n);
    Microlog__V1__StatusTick tick[BATCH_S * 10], *tickp[BATCH_S * 10];
    uint32_t cur[MAXTHREADS];
    int dwell[MAXTHREADS];
    for (int i = 0; i < nthreads; i++) {
        cur[i] = (uint32_t)i + 1;
        dwell[i] = 0;
    }
    int64_t t = 0;
    long nbatches = (seconds + BATCH_S - 1) / BATCH_S;
    uint64_t samples = 0;
    double cpu_level = 50, rss = 80e6, objects = 2e5;
    uint32_t modules = 50;
    char logmsg[128];
    double t0 = now();
    int rc = 0;
    for (long b = 1; b <= nbatches; b++) {
        Microlog__V1__Batch m = MICROLOG__V1__BATCH__INIT;
        m.run_uid = uid;
        m.seq = (uint64_t)b;
        if (b == 1) {
            m.strings = sdp;
            m.n_strings = nstr;
            m.frames = fdp;
            m.n_frames = NFUNCS;
            m.stacks = skp;
            m.n_stacks = NSTACKS;
            m.threads = tdp;
            m.n_threads = (size_t)nthreads;
        }
        /* Every thread is sampled at each timestamp: thread 1's delta advances the
         * clock, the others' deltas are 0. base_time is the batch's first timestamp. */
        int64_t batch_start = (int64_t)(b - 1) * ticks_per_batch * period;
        size_t k = 0;
        for (long j = 0; j < ticks_per_batch; j++) {
            for (int i = 0; i < nthreads; i++, k++) {
                if (dwell[i]-- <= 0) {
                    cur[i] = step(cur[i]);
                    /* Mostly short stays, sometimes long ones: 1..8 or up to 400 samples. */
                    dwell[i] = rnd() % 10 == 0 ? (int)(rnd() % 400) : (int)(1 + rnd() % 8);
                }
                thread[k] = (uint32_t)i + 1;
                stack[k] = cur[i];
                cpu[k] = (uint32_t)(rnd() % (unsigned)period);
                delta[k] = i == 0 && j > 0 ? period : 0;
            }
        }
        t = batch_start + (ticks_per_batch - 1) * period;
        Microlog__V1__Samples smp = MICROLOG__V1__SAMPLES__INIT;
        smp.thread = thread;
        smp.n_thread = k;
        smp.stack = stack;
        smp.n_stack = k;
        smp.cpu_us = cpu;
        smp.n_cpu_us = k;
        smp.time_delta = delta;
        smp.n_time_delta = k;
        m.base_time = batch_start;
        m.samples = &smp;
        size_t nt = 0;
        for (int64_t tt = (b - 1) * BATCH_S * 1000000; nt < BATCH_S * 10; nt++, tt += 100000) {
            microlog__v1__status_tick__init(&tick[nt]);
            cpu_level += (double)((int)(rnd() % 21) - 10);
            cpu_level = cpu_level < 2 ? 2 : cpu_level > 100 * nthreads ? 100 * nthreads : cpu_level;
            rss += (double)((int)(rnd() % 2001) - 990) * 1000;
            objects += (double)((int)(rnd() % 201) - 99) * 10;
            if (rnd() % 50 == 0)
                modules++;
            tick[nt].time = tt;
            tick[nt].cpu_percent = (float)cpu_level;
            tick[nt].system_cpu_percent = (float)(cpu_level / nthreads);
            tick[nt].rss = (uint64_t)rss;
            tick[nt].memory_total = 16ull << 30;
            tick[nt].memory_free = 8ull << 30;
            tick[nt].modules = modules;
            tick[nt].objects = (uint64_t)objects;
            tickp[nt] = &tick[nt];
        }
        m.status = tickp;
        m.n_status = nt;
        Microlog__V1__LogEvent ev = MICROLOG__V1__LOG_EVENT__INIT, *evp = &ev;
        if (b % 3 == 0) {
            snprintf(logmsg, sizeof(logmsg), "checkpoint **%ld** of %ld", b / 3, nbatches / 3);
            ev.time = batch_start;
            ev.thread = 1;
            ev.kind = 0;
            ev.message = logmsg;
            ev.stack = cur[0];
            m.logs = &evp;
            m.n_logs = 1;
        }
        if (call(s, ML_METHOD_BATCH, &m.base, NULL, 0) != 0) {
            rc = 1;
            break;
        }
        samples += k;
    }
    Microlog__V1__CloseRun c = MICROLOG__V1__CLOSE_RUN__INIT;
    c.run_uid = uid;
    c.end_time = t;
    c.last_seq = (uint64_t)nbatches;
    if (call(s, ML_METHOD_CLOSE_RUN, &c.base, NULL, 0) != 0)
        rc = 1;
    nng_close(s);
    printf("{\"run\": \"%s\", \"samples\": %llu, \"seconds\": %.2f}\n", run_id,
           (unsigned long long)samples, now() - t0);
    free(thread);
    free(stack);
    free(cpu);
    free(delta);
    return rc;
}
