/*
 * ml_drive: a small C program that records a run through libmicrolog, for
 * the delivery fault tests (tests/e2e/test_delivery*.py) and the transport
 * benchmark (tests/bench/bench_transport.py).
 *
 *   ml_drive [options]
 *     --ingest URL | --server URL   where to send (default: the environment)
 *     --label L                     run label (default ml-drive)
 *     --samples N                   samples to record (default 1000)
 *     --rate HZ                     samples per second; 0: as fast as possible
 *     --log-every K                 a log line (also printed to stdout) every K samples
 *     --status-every K              a status tick every K samples
 *     --buffer BYTES                cfg.buffer_max_bytes
 *     --close-timeout MS            ml_client_close wait (default 2000)
 *     --exit CODE                   exit status (default 0)
 *     --spool-only                  cfg.spool_only
 *   ml_drive --ingest URL --raw FILE
 *     sends FILE's bytes as one request on an nng REQ socket and prints the
 *     reply's status ("status N: error") or "no reply" (bad-input tests)
 *
 * On stdout: the program's own lines ("log N"). On stderr: whatever the
 * client says. The client's counts go to MICROLOG_DEBUG_COUNTS (a JSON line
 * with samples, statuses, logs, ack latency). With --rate 0 it also prints
 * one JSON line to stdout at the end: {"elapsed_s", "cpu_s", "samples",
 * "close_s"} (the benchmark's measurements of the client side).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "microlog/client.h"
#include "wire.h"

/* --raw: one request of arbitrary bytes; 0 when a reply came. */
static int send_raw(const char *url, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 2;
    }
    static uint8_t buf[32u << 20];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    nng_socket s;
    nng_msg *m;
    if (nng_req0_open(&s) != 0 || nng_dial(s, url, NULL, 0) != 0)
        return 2;
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 3000);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 3000);
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, 60000);
    if (nng_send(s, buf, len, 0) != 0 || nng_recvmsg(s, &m, 0) != 0) {
        printf("no reply\n");
        fflush(stdout);
        _exit(1); /* nng_close could wait on a send the peer never reads */
    }
    ml_wire_msg w;
    int rv = ml_wire_unpack(nng_msg_body(m), nng_msg_len(m), &w);
    if (rv == 0) {
        printf("status %d: %s\n", w.env->status, w.env->error ? w.env->error : "");
        ml_wire_msg_free(&w);
    } else {
        printf("bad reply\n");
    }
    nng_msg_free(m);
    nng_close(s);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    ml_client_config cfg;
    ml_client_config_init(&cfg);
    ml_run_info info = {.label = "ml-drive", .sample_period = 0.001};
    long samples = 1000, log_every = 0, status_every = 0, exit_code = 0;
    double rate = 1000;
    uint32_t close_timeout = 2000;
    if (argc == 5 && strcmp(argv[1], "--ingest") == 0 && strcmp(argv[3], "--raw") == 0)
        return send_raw(argv[2], argv[4]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--spool-only") == 0) {
            cfg.spool_only = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "ml_drive: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--ingest") == 0)
            cfg.ingest = v;
        else if (strcmp(a, "--server") == 0)
            cfg.server = v;
        else if (strcmp(a, "--label") == 0)
            info.label = v;
        else if (strcmp(a, "--samples") == 0)
            samples = atol(v);
        else if (strcmp(a, "--rate") == 0)
            rate = atof(v);
        else if (strcmp(a, "--log-every") == 0)
            log_every = atol(v);
        else if (strcmp(a, "--status-every") == 0)
            status_every = atol(v);
        else if (strcmp(a, "--buffer") == 0)
            cfg.buffer_max_bytes = (size_t)atol(v);
        else if (strcmp(a, "--close-timeout") == 0)
            close_timeout = (uint32_t)atol(v);
        else if (strcmp(a, "--exit") == 0)
            exit_code = atol(v);
        else {
            fprintf(stderr, "ml_drive: unknown option %s\n", a);
            return 2;
        }
    }
    ml_client *c;
    if (ml_client_new(&cfg, &info, &c) != 0) {
        fprintf(stderr, "ml_drive: cannot create the client\n");
        return 2;
    }
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    uint32_t file = ml_client_string(c, "/drive/main.py", 14);
    uint32_t stacks[8];
    for (int s = 0; s < 8; s++) {
        char name[32];
        int n = snprintf(name, sizeof(name), "drive.func%d", s);
        uint32_t fr[2] = {ml_client_frame(c, ml_client_string(c, "drive.main", 10), file, 1, 1, 0),
                          ml_client_frame(c, ml_client_string(c, name, (size_t)n), file,
                                          (uint32_t)(10 + s), 10, 0)};
        stacks[s] = ml_client_stack(c, fr, 2, 0);
    }
    double t0 = now_s(), c0 = cpu_s();
    for (long i = 0; i < samples; i++) {
        if (rate > 0) {
            double due = t0 + (double)i / rate, wait = due - now_s();
            if (wait > 0)
                usleep((useconds_t)(wait * 1e6));
        }
        int64_t t = ml_client_now(c);
        ml_client_sample(c, th, t, stacks[i % 8], 100);
        if (log_every && i % log_every == 0) {
            char msg[64];
            int n = snprintf(msg, sizeof(msg), "log %ld", i);
            printf("%s\n", msg);
            fflush(stdout);
            ml_client_log(c, th, t, ML_LOG_STDOUT, 0, msg, (size_t)n, stacks[i % 8], NULL);
        }
        if (status_every && i % status_every == 0) {
            ml_status st = {.time = t, .cpu_percent = 50, .rss = 1u << 20, .modules = 10};
            ml_client_status(c, &st);
        }
    }
    double t1 = now_s(), c1 = cpu_s();
    ml_client_result res;
    ml_client_close(c, (int)exit_code, close_timeout, &res);
    double t2 = now_s(), c2 = cpu_s();
    if (rate <= 0)
        printf("{\"elapsed_s\": %.6f, \"record_cpu_s\": %.6f, \"cpu_s\": %.6f, \"samples\": %ld, "
               "\"close_s\": %.6f, \"delivered\": %s}\n",
               t2 - t0, c1 - c0, c2 - c0, samples, t2 - t1, res.delivered ? "true" : "false");
    ml_client_free(c);
    return (int)exit_code;
}
