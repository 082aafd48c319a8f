/*
 * When the collector cannot be reached the client must not break, slow or
 * change the profiled program: recording keeps working within its memory
 * bound, ml_client_close returns an error within its timeout, the run is
 * saved to the spool (nothing lost), and exactly one line goes to stderr
 * saying where (none when quiet).
 * Also: a client inherited over fork() is dropped without touching it, and
 * a new client in the child does not abort (nng cannot be used after fork).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "microlog/client.h"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A TCP port on 127.0.0.1 where nothing listens. */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

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

static ml_client_config base_config(void)
{
    ml_client_config cfg;
    ml_client_config_init(&cfg);
    cfg.flush_interval_ms = 20;
    cfg.connect_timeout_ms = 300;
    return cfg;
}

/* Records n samples (and a log every 10) and returns how many samples were
 * refused; adds refused logs to *logs_refused when not NULL. */
static int record_counted(ml_client *c, int n, int *logs_refused)
{
    uint32_t th = ml_client_thread(c, 1, 1, "MainThread");
    uint32_t file = ml_client_string(c, "/a.py", 5), name = ml_client_string(c, "main", 4);
    uint32_t fr = ml_client_frame(c, name, file, 1, 1, 0);
    uint32_t st = ml_client_stack(c, &fr, 1, 0);
    int refused = 0;
    for (int i = 0; i < n; i++) {
        int rv = ml_client_sample(c, th, i, st, 1);
        assert_true(rv == 0 || rv == -ENOBUFS);
        refused += rv != 0;
        if (i % 10 == 0) {
            rv = ml_client_log(c, th, i, ML_LOG_STDOUT, 0, "out", 3, st, NULL);
            assert_true(rv == 0 || (logs_refused && rv == -ENOBUFS));
            if (rv != 0)
                (*logs_refused)++;
        }
    }
    return refused;
}

static int record(ml_client *c, int n)
{
    return record_counted(c, n, NULL);
}

/* Closes c with a stderr capture; returns the close status. */
static int close_captured(ml_client *c, uint32_t timeout, ml_client_result *res, char **err,
                          int64_t *took)
{
    capture cap;
    capture_start(&cap);
    int64_t t0 = mono_ms();
    int rv = ml_client_close(c, 1, timeout, res);
    *took = mono_ms() - t0;
    *err = capture_end(&cap);
    return rv;
}

static void test_nothing_listens_on_ingest(void **state)
{
    char ingest[64];
    snprintf(ingest, sizeof(ingest), "tcp://127.0.0.1:%d", free_port());
    ml_client_config cfg = base_config();
    cfg.ingest = ingest;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    assert_int_equal(record(c, 1000), 0);
    usleep(100000);
    ml_client_result res;
    char *err;
    int64_t took;
    int rv = close_captured(c, 1500, &res, &err, &took);
    assert_int_equal(rv, -ECONNREFUSED);
    assert_true(took < 1500 + 300);
    assert_false(res.delivered);
    assert_false(res.collector_reached);
    assert_int_equal(res.samples, 1000);
    assert_int_equal(res.logs, 100);
    assert_int_equal(res.dropped_samples, 0);
    assert_int_equal(res.dropped_logs, 0);
    assert_int_equal(res.batches_acked, 0);
    assert_true(res.spooled);
    assert_int_equal(access(res.spool_path, R_OK), 0);
    assert_int_equal(count_lines(err), 1);
    char want[1400];
    snprintf(want, sizeof(want),
             "Microlog: collector unreachable at %s (cannot connect to %s); run saved to %s; it "
             "will appear at http://localhost:7777/#%s once a collector imports it (micrologd "
             "--standalone imports its spool at start-up)\n",
             ingest, ingest, res.spool_path, res.run_id);
    assert_string_equal(err, want);
    free(err);
    ml_client_free(c);
}

static void test_discovery_refused(void **state)
{
    char server[64];
    snprintf(server, sizeof(server), "http://localhost:%d", free_port());
    ml_client_config cfg = base_config();
    cfg.server = server;
    cfg.ingest = NULL;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    record(c, 100);
    ml_client_result res;
    char *err;
    int64_t took;
    int rv = close_captured(c, 3000, &res, &err, &took);
    assert_int_equal(rv, -ECONNREFUSED);
    assert_true(took < 1000); /* refused after the close request: no point waiting */
    assert_int_equal(res.dropped_samples, 0);
    assert_true(res.spooled);
    char want[400];
    snprintf(want, sizeof(want),
             "Microlog: collector unreachable at %s (connection refused); run saved to ", server);
    assert_memory_equal(err, want, strlen(want));
    assert_string_equal(res.error, "connection refused");
    free(err);
    ml_client_free(c);
}

static void test_malformed_server(void **state)
{
    ml_client_config cfg = base_config();
    cfg.server = "localhost:7777";
    cfg.ingest = NULL;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    record(c, 10);
    ml_client_result res;
    char *err;
    int64_t took;
    assert_int_equal(close_captured(c, 3000, &res, &err, &took), -EINVAL);
    assert_true(took < 500);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "malformed server URL 'localhost:7777': expected http://"));
    free(err);
    ml_client_free(c);
}

/* A server that accepts the connection and never answers: close still keeps
 * to its own timeout, not the (longer) request timeout. */
static void test_discovery_hangs(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 8), 0); /* the kernel completes connects; nobody reads */
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char server[64];
    snprintf(server, sizeof(server), "http://127.0.0.1:%d", ntohs(sa.sin_port));

    ml_client_config cfg = base_config();
    cfg.server = server;
    cfg.ingest = NULL;
    cfg.connect_timeout_ms = 20000;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    record(c, 10);
    usleep(50000);
    ml_client_result res;
    char *err;
    int64_t took;
    int rv = close_captured(c, 300, &res, &err, &took);
    assert_int_equal(rv, -ETIMEDOUT);
    assert_true(took >= 250 && took < 800);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "Microlog: collector unreachable at http://127.0.0.1:"));
    assert_non_null(strstr(err, "run saved to "));
    free(err);
    ml_client_free(c);
    close(fd);
}

static void test_quiet_writes_nothing(void **state)
{
    char ingest[64];
    snprintf(ingest, sizeof(ingest), "tcp://127.0.0.1:%d", free_port());
    ml_client_config cfg = base_config();
    cfg.ingest = ingest;
    cfg.quiet = true;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    record(c, 10);
    ml_client_result res;
    char *err;
    int64_t took;
    assert_int_equal(close_captured(c, 200, &res, &err, &took), -ECONNREFUSED);
    assert_string_equal(err, "");
    assert_string_not_equal(res.error, "");
    free(err);
    ml_client_free(c);

    /* free without close: closes at once, silently */
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    cfg.quiet = false;
    record(c, 10);
    capture cap;
    capture_start(&cap);
    int64_t t0 = mono_ms();
    ml_client_free(c);
    assert_true(mono_ms() - t0 < 300);
    err = capture_end(&cap);
    assert_string_equal(err, "");
    free(err);
}

/* Memory stays bounded while nothing can be sent: what does not fit goes to
 * the spool; whatever is refused is counted, nothing else is lost. */
static void test_buffer_bound(void **state)
{
    char ingest[64];
    snprintf(ingest, sizeof(ingest), "tcp://127.0.0.1:%d", free_port());
    ml_client_config cfg = base_config();
    cfg.ingest = ingest;
    cfg.quiet = true;
    cfg.batch_max_bytes = 1024;
    cfg.buffer_max_bytes = 16 << 10;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    int n = 0, refused = 0, logs_refused = 0;
    for (int round = 0; round < 20; round++) {
        refused += record_counted(c, 1000, &logs_refused);
        n += 1000;
        usleep(25000);
    }
    ml_client_result res;
    ml_client_close(c, 0, 100, &res);
    assert_int_equal(res.samples + (uint64_t)refused, (uint64_t)n);
    assert_int_equal(res.logs + (uint64_t)logs_refused, (uint64_t)n / 10);
    /* only refusals are lost: the rest is on disk */
    assert_int_equal(res.dropped_samples, (uint64_t)refused);
    assert_int_equal(res.dropped_logs, (uint64_t)logs_refused);
    assert_true(res.spooled);
    struct stat st;
    assert_int_equal(stat(res.spool_path, &st), 0);
    assert_true(st.st_size > 0);
    assert_true(refused < n / 2); /* spooling keeps recording going */
    ml_client_free(c);
}

/* fork(): the child forgets the parent's client without touching its lock
 * (held here on purpose by a busy thread is not needed: forget must not
 * lock at all) and can start a client of its own without aborting. */
static void test_fork(void **state)
{
    char ingest[64];
    snprintf(ingest, sizeof(ingest), "tcp://127.0.0.1:%d", free_port());
    ml_client_config cfg = base_config();
    cfg.ingest = ingest;
    cfg.quiet = true;
    ml_client *c;
    assert_int_equal(ml_client_new(&cfg, NULL, &c), 0);
    record(c, 10);
    usleep(100000); /* the sender has opened its nng socket */

    pid_t pid = fork();
    if (pid == 0) {
        int code = 0;
        ml_client_forget_after_fork(c);
        if (ml_client_sample(c, 1, 1, 0, 0) != -ECHILD || ml_client_string(c, "x", 1) != 0 ||
            ml_client_close(c, 0, 0, NULL) != -ECHILD)
            code = 1;
        ml_client_free(c); /* leaks on purpose, touches nothing */
        ml_client *child;
        cfg.quiet = false;
        if (ml_client_new(&cfg, NULL, &child) != 0)
            _exit(2);
        if (ml_client_string(child, "y", 1) != 1)
            code = 3;
        ml_client_result res;
        capture cap;
        capture_start(&cap);
        int rv = ml_client_close(child, 0, 100, &res);
        char *err = capture_end(&cap);
        if (rv != -ENOTSUP || count_lines(err) != 1 ||
            strstr(err, "this process does not use the network") == NULL ||
            strstr(err, "run saved to ") == NULL || !res.spooled)
            code = 4;
        free(err);
        ml_client_free(child);
        _exit(code);
    }
    assert_true(pid > 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the parent's client is unaffected */
    assert_int_equal(ml_client_sample(c, 1, 100, 0, 0), 0);
    ml_client_close(c, 0, 0, NULL);
    ml_client_free(c);
}

int main(void)
{
    /* a spool directory of our own, no collector started behind our back */
    static char spool[] = "/tmp/mltest-spool-XXXXXX";
    assert_non_null(mkdtemp(spool));
    setenv("MICROLOG_SPOOL_DIR", spool, 1);
    setenv("MICROLOG_AUTOSTART", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_listens_on_ingest),
        cmocka_unit_test(test_discovery_refused),
        cmocka_unit_test(test_malformed_server),
        cmocka_unit_test(test_discovery_hangs),
        cmocka_unit_test(test_quiet_writes_nothing),
        cmocka_unit_test(test_buffer_bound),
        cmocka_unit_test(test_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
