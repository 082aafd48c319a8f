/*
 * Load generator for bench_storage.py: speaks the real ingest protocol
 * (envelope + protobuf-c over an nng REQ socket) to a running micrologd.
 * Each of T threads opens one run, sends B batches of S samples (a
 * realistic mix: a few threads, a few hundred distinct stacks, 100 Hz
 * timestamps), closes it, and counts acked samples.
 *
 *   loadgen_storage URL THREADS BATCHES SAMPLES_PER_BATCH [PERIOD_US (10000: 100 Hz)]
 *
 * Prints one JSON line: {"samples": N, "seconds": S, "samples_per_s": R,
 * "ack_p50_ms", "ack_p99_ms", "ack_max_ms" (Batch call to reply), "failed_clients"}.
 *
 * Options from the environment (bench_load.py, bench_soak.py, test_faults.py):
 *   ML_LOADGEN_LABEL       one fixed label for every run (see below)
 *   ML_LOADGEN_PACE_MS     send batch b at start + b * PACE ms (real time), as a
 *                          client flushing every PACE ms does; 0: as fast as acked
 *   ML_LOADGEN_TIMEOUT_MS  nng send/receive timeout per call (default 3000)
 *   ML_LOADGEN_IDLE        hold this many extra dialed, silent REQ sockets open
 *                          while the clients run (idle connections)
 *   ML_LOADGEN_JUMP_US     add this (negative: a clock jumping backwards) to the
 *                          first time delta of the middle batch
 * THREADS (concurrent clients, one run each) goes up to 4096.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "microlog.pb-c.h"
#include "wire.h"

static const char *url;
static int nbatches, nsamples;
static int64_t period_us = 10000;
static int64_t pace_ms, timeout_ms = 3000, jump_us;

/* One worker's result; the latencies array holds one entry per acked batch. */
typedef struct {
    long acked;
    int failed;
    double *lat_ms;
    int nlat;
} worker_result;

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? atol(v) : dflt;
}

/* Sleeps until the CLOCK_MONOTONIC time t (seconds). */
static void sleep_until(double t)
{
    struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (double)(time_t)t) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends one request and checks the reply status. */
static int call(nng_socket s, const char *method, const ProtobufCMessage *m)
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
        fprintf(stderr, "loadgen: %s: status %d: %s\n", method, st, msg.env->error);
    ml_wire_msg_free(&msg);
    return st == 0 ? 0 : -1;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    worker_result *res = calloc(1, sizeof(*res));
    res->lat_ms = calloc((size_t)nbatches + 1, sizeof(double));
    res->failed = 1; /* until every batch is acked */
    long *acked = &res->acked;
    nng_socket s;
    if (nng_req0_open(&s) != 0 || nng_dial(s, url, NULL, 0) != 0)
        return res;
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
    char uid[40], label[40];
    snprintf(uid, sizeof(uid), "loadgen%04lx%06lx%08lx", id, (long)getpid() & 0xffffff,
             (long)time(NULL));
    snprintf(label, sizeof(label), "loadgen-%ld-%ld", (long)getpid(), id);
    /* ML_LOADGEN_LABEL: one fixed label (with the fixed timestamp below,
     * runs of several loadgens then collide on label and second). */
    const char *fixed = getenv("ML_LOADGEN_LABEL");
    if (fixed && *fixed)
        snprintf(label, sizeof(label), "%s", fixed);
    Microlog__V1__OpenRun o = MICROLOG__V1__OPEN_RUN__INIT;
    o.run_uid = uid;
    o.label = label;
    o.timestamp = "2026_01_01_00_00_00";
    o.host = "bench";
    o.user = "bench";
    o.sample_period = (double)period_us / 1e6;
    if (call(s, ML_METHOD_OPEN_RUN, &o.base) != 0)
        return res;
    /* Paced clients start spread over one period, as real ones do. */
    double start = now() + (pace_ms > 0 ? (double)(id % pace_ms) / 1e3 : 0);
    enum { NSTR = 200, NFRAMES = 200, NSTACKS = 300, DEPTH = 12 };
    uint32_t *thread = malloc(sizeof(uint32_t) * (size_t)nsamples);
    uint32_t *stack = malloc(sizeof(uint32_t) * (size_t)nsamples);
    uint32_t *cpu = malloc(sizeof(uint32_t) * (size_t)nsamples);
    int64_t *delta = malloc(sizeof(int64_t) * (size_t)nsamples);
    int64_t t = 0;
    unsigned seed = (unsigned)id * 7919u + 1;
    for (int b = 1; b <= nbatches; b++) {
        Microlog__V1__Batch m = MICROLOG__V1__BATCH__INIT;
        Microlog__V1__StringDef sd[NSTR], *sdp[NSTR];
        Microlog__V1__FrameDef fd[NFRAMES], *fdp[NFRAMES];
        Microlog__V1__StackDef st[NSTACKS], *stp[NSTACKS];
        Microlog__V1__ThreadDef td[4], *tdp[4];
        uint32_t frames[NSTACKS][DEPTH];
        char names[NSTR][32];
        m.run_uid = uid;
        m.seq = (uint64_t)b;
        m.base_time = t;
        if (b == 1) { /* definitions once, as the client interns them */
            for (int i = 0; i < NSTR; i++) {
                microlog__v1__string_def__init(&sd[i]);
                snprintf(names[i], sizeof(names[i]), "module%d.function_%d", i / 10, i);
                sd[i].id = (uint32_t)i + 1;
                sd[i].value = names[i];
                sdp[i] = &sd[i];
            }
            for (int i = 0; i < NFRAMES; i++) {
                microlog__v1__frame_def__init(&fd[i]);
                fd[i].id = (uint32_t)i + 1;
                fd[i].name = (uint32_t)i % NSTR + 1;
                fd[i].file = (uint32_t)(i / 10) % NSTR + 1;
                fd[i].line = (uint32_t)(10 + i);
                fdp[i] = &fd[i];
            }
            for (int i = 0; i < NSTACKS; i++) {
                microlog__v1__stack_def__init(&st[i]);
                st[i].id = (uint32_t)i + 1;
                for (int k = 0; k < DEPTH; k++)
                    frames[i][k] = (uint32_t)((i * 7 + k * 13) % NFRAMES) + 1;
                st[i].frames = frames[i];
                st[i].n_frames = DEPTH;
                stp[i] = &st[i];
            }
            for (int i = 0; i < 4; i++) {
                microlog__v1__thread_def__init(&td[i]);
                td[i].id = (uint32_t)i + 1;
                td[i].ident = (uint64_t)(1000 + i);
                td[i].name = "worker";
                tdp[i] = &td[i];
            }
            m.strings = sdp;
            m.n_strings = NSTR;
            m.frames = fdp;
            m.n_frames = NFRAMES;
            m.stacks = stp;
            m.n_stacks = NSTACKS;
            m.threads = tdp;
            m.n_threads = 4;
        }
        for (int i = 0; i < nsamples; i++) {
            seed = seed * 1103515245u + 12345u;
            thread[i] = (uint32_t)i % 4 + 1;
            stack[i] = (seed >> 16) % 40 + 1; /* a hot set of stacks */
            cpu[i] = (seed >> 8) % 10000;
            delta[i] = thread[i] == 1 ? period_us : 0; /* 4 threads sampled together at 100 Hz */
            if (i == 0 && jump_us != 0 && b == nbatches / 2 + 1)
                delta[i] += jump_us; /* the client's clock jumps */
            t += delta[i];
        }
        Microlog__V1__Samples smp = MICROLOG__V1__SAMPLES__INIT;
        smp.thread = thread;
        smp.n_thread = (size_t)nsamples;
        smp.stack = stack;
        smp.n_stack = (size_t)nsamples;
        smp.cpu_us = cpu;
        smp.n_cpu_us = (size_t)nsamples;
        smp.time_delta = delta;
        smp.n_time_delta = (size_t)nsamples;
        m.samples = &smp;
        if (pace_ms > 0)
            sleep_until(start + (double)b * (double)pace_ms / 1e3);
        double sent = now();
        if (call(s, ML_METHOD_BATCH, &m.base) != 0)
            break;
        res->lat_ms[res->nlat++] = (now() - sent) * 1e3;
        *acked += nsamples;
        if (b == nbatches)
            res->failed = 0;
    }
    Microlog__V1__CloseRun c = MICROLOG__V1__CLOSE_RUN__INIT;
    c.run_uid = uid;
    c.end_time = t;
    c.last_seq = (uint64_t)nbatches;
    call(s, ML_METHOD_CLOSE_RUN, &c.base);
    nng_close(s);
    free(thread);
    free(stack);
    free(cpu);
    free(delta);
    return res;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr,
                "usage: loadgen_storage URL THREADS BATCHES SAMPLES_PER_BATCH [PERIOD_US]\n");
        return 2;
    }
    url = argv[1];
    int nthreads = atoi(argv[2]);
    nbatches = atoi(argv[3]);
    nsamples = atoi(argv[4]);
    if (argc == 6)
        period_us = atoll(argv[5]);
    pace_ms = env_long("ML_LOADGEN_PACE_MS", 0);
    timeout_ms = env_long("ML_LOADGEN_TIMEOUT_MS", 3000);
    jump_us = env_long("ML_LOADGEN_JUMP_US", 0);
    long nidle = env_long("ML_LOADGEN_IDLE", 0);
    if (nthreads < 1 || nthreads > 4096 || nbatches < 1 || nsamples < 1 || nidle < 0)
        return 2;
    /* Idle connections: dialed REQ sockets that never send. */
    nng_socket *idle = calloc((size_t)nidle + 1, sizeof(nng_socket));
    long nheld = 0;
    for (long i = 0; i < nidle; i++) {
        if (nng_req0_open(&idle[nheld]) != 0)
            break;
        if (nng_dial(idle[nheld], url, NULL, 0) != 0) {
            nng_close(idle[nheld]);
            break;
        }
        nheld++;
    }
    if (nidle > 0) {
        fprintf(stderr, "loadgen: %ld idle connections held\n", nheld);
        fflush(stderr);
    }
    pthread_t *th = calloc((size_t)nthreads, sizeof(pthread_t));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512u << 10); /* ~60 KiB of tables per worker */
    double t0 = now();
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], &attr, worker, (void *)i) != 0) {
            fprintf(stderr, "loadgen: cannot start client %ld\n", i);
            return 2;
        }
    long total = 0;
    int failed = 0, nlat = 0;
    double *lat = malloc(sizeof(double) * ((size_t)nthreads * (size_t)nbatches + 1));
    for (long i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(th[i], &r);
        worker_result *w = r;
        total += w->acked;
        failed += w->failed;
        memcpy(lat + nlat, w->lat_ms, sizeof(double) * (size_t)w->nlat);
        nlat += w->nlat;
        free(w->lat_ms);
        free(w);
    }
    double secs = now() - t0;
    for (long i = 0; i < nheld; i++)
        nng_close(idle[i]);
    free(idle);
    qsort(lat, (size_t)nlat, sizeof(double), cmp_double);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)((nlat - 1) * 0.99)] : 0,
           mx = nlat ? lat[nlat - 1] : 0;
    printf("{\"samples\": %ld, \"seconds\": %.4f, \"samples_per_s\": %.0f, \"ack_p50_ms\": %.3f, "
           "\"ack_p99_ms\": %.3f, \"ack_max_ms\": %.3f, \"failed_clients\": %d, "
           "\"idle_held\": %ld}\n",
           total, secs, (double)total / secs, p50, p99, mx, failed, nheld);
    free(lat);
    free(th);
    return total == (long)nthreads * nbatches * nsamples ? 0 : 1;
}
