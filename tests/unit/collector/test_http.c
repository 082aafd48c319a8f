/* The HTTP API through a real socket: a collector with HTTP on a loop
 * driven by the test, runs created through the real ingest handler, and
 * plain HTTP/1.0 requests from a client thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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

#include "collector.h"
#include "fsutil.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "mem.h"
#include "wire.h"

#define UID1 "0123456789abcdef0123456789abcdef"
#define UID2 "fedcba9876543210fedcba9876543210"

typedef struct fixture {
    char *dir;
    uv_loop_t loop;
    ml_collector c;
    ml_collector_config cfg;
    int port;
    bool closed;
} fixture;

typedef struct response {
    int status;
    char *headers;
    char *body;
} response;

typedef struct request {
    int port;
    const char *method, *path;
    response res;
    atomic_bool done;
} request;

/* Client thread: one HTTP/1.0 request, read until the server closes. */
static void *client(void *arg)
{
    request *rq = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rq->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        char *req = ml_xasprintf("%s %s HTTP/1.0\r\nHost: test\r\n\r\n", rq->method, rq->path);
        ml_write_all(fd, req, strlen(req));
        free(req);
        size_t cap = 4096, len = 0;
        char *buf = ml_xmalloc(cap);
        ssize_t n;
        while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
            len += (size_t)n;
            if (cap - len < 2048)
                buf = ml_xrealloc(buf, cap *= 2);
        }
        buf[len] = '\0';
        char *sep = strstr(buf, "\r\n\r\n");
        if (sep && sscanf(buf, "HTTP/1.%*d %d", &rq->res.status) == 1) {
            rq->res.headers = ml_xstrndup(buf, (size_t)(sep - buf));
            rq->res.body = ml_xstrdup(sep + 4);
        }
        free(buf);
    }
    close(fd);
    atomic_store(&rq->done, true);
    return NULL;
}

/* Runs the collector's loop until the client thread has its answer. */
static response http(fixture *f, const char *method, const char *path)
{
    request rq = {.port = f->port, .method = method, .path = path};
    atomic_init(&rq.done, false);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, &rq), 0);
    struct timespec nap = {0, 1000000};
    for (int i = 0; i < 10000 && !atomic_load(&rq.done); i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        nanosleep(&nap, NULL);
    }
    pthread_join(t, NULL);
    assert_int_not_equal(rq.res.status, 0);
    return rq.res;
}

static json_t *json_of(response *r, int want_status)
{
    if (r->status != want_status)
        fail_msg("status %d, want %d: %s", r->status, want_status, r->body);
    assert_non_null(strstr(r->headers, "application/json"));
    json_error_t err;
    json_t *j = json_loads(r->body, 0, &err);
    assert_non_null(j);
    free(r->headers);
    free(r->body);
    return j;
}

static void free_response(response *r)
{
    free(r->headers);
    free(r->body);
}

/* Sends one request envelope through the collector's real ingest handler. */
static int32_t ingest(fixture *f, const char *method, const ProtobufCMessage *m)
{
    uint8_t *req, *rep;
    size_t len, rlen;
    assert_int_equal(ml_wire_pack(method, 1, 0, NULL, NULL, m, &req, &len), 0);
    ml_ingest_handle(&f->c, req, len, &rep, &rlen);
    ml_wire_msg w;
    assert_int_equal(ml_wire_unpack(rep, rlen, &w), 0);
    int32_t status = w.env->status;
    ml_wire_msg_free(&w);
    free(req);
    free(rep);
    return status;
}

/* A run with main() -> work(): 10 samples (4 in main, 6 in work), one log. */
static void make_run(fixture *f, const char *uid, const char *label, const char *host,
                     int64_t start_us, bool close)
{
    Microlog__V1__OpenRun o = MICROLOG__V1__OPEN_RUN__INIT;
    o.run_uid = (char *)uid, o.label = (char *)label, o.timestamp = "2026_11_26_05_30_00";
    o.host = (char *)host, o.user = "alice", o.start_unix_us = start_us, o.sample_period = 0.1;
    assert_int_equal(ingest(f, ML_METHOD_OPEN_RUN, &o.base), 0);

    Microlog__V1__Batch b = MICROLOG__V1__BATCH__INIT;
    b.run_uid = (char *)uid, b.seq = 1;
    Microlog__V1__StringDef s1 = MICROLOG__V1__STRING_DEF__INIT, s2 = s1, s3 = s1;
    s1.id = 1, s1.value = "main", s2.id = 2, s2.value = "/app/x.py", s3.id = 3, s3.value = "work";
    Microlog__V1__StringDef *sp[] = {&s1, &s2, &s3};
    Microlog__V1__FrameDef f1 = MICROLOG__V1__FRAME_DEF__INIT, f2 = f1;
    f1.id = 1, f1.name = 1, f1.file = 2, f1.line = 5, f1.first_line = 1;
    f2.id = 2, f2.name = 3, f2.file = 2, f2.line = 9, f2.first_line = 8;
    Microlog__V1__FrameDef *fp[] = {&f1, &f2};
    uint32_t st1f[] = {1}, st2f[] = {1, 2};
    Microlog__V1__StackDef st1 = MICROLOG__V1__STACK_DEF__INIT, st2 = st1;
    st1.id = 1, st1.frames = st1f, st1.n_frames = 1;
    st2.id = 2, st2.frames = st2f, st2.n_frames = 2;
    Microlog__V1__StackDef *stp[] = {&st1, &st2};
    Microlog__V1__ThreadDef th = MICROLOG__V1__THREAD_DEF__INIT, *thp = &th;
    th.id = 1, th.name = "MainThread", th.ident = 7;
    b.strings = sp, b.n_strings = 3, b.frames = fp, b.n_frames = 2;
    b.stacks = stp, b.n_stacks = 2, b.threads = &thp, b.n_threads = 1;
    uint32_t thread[10], stack[10];
    int64_t delta[10];
    for (int i = 0; i < 10; i++)
        thread[i] = 1, stack[i] = i < 4 ? 1 : 2, delta[i] = 100000;
    Microlog__V1__Samples smp = MICROLOG__V1__SAMPLES__INIT;
    smp.thread = thread, smp.n_thread = 10, smp.stack = stack, smp.n_stack = 10;
    smp.time_delta = delta, smp.n_time_delta = 10;
    b.samples = &smp;
    Microlog__V1__LogEvent lg = MICROLOG__V1__LOG_EVENT__INIT, *lgp = &lg;
    lg.time = 250000, lg.thread = 1, lg.kind = 4, lg.message = "checkpoint", lg.stack = 2;
    b.logs = &lgp, b.n_logs = 1;
    assert_int_equal(ingest(f, ML_METHOD_BATCH, &b.base), 0);
    if (close) {
        Microlog__V1__CloseRun c = MICROLOG__V1__CLOSE_RUN__INIT;
        c.run_uid = (char *)uid, c.last_seq = 1, c.end_time = 1000000;
        assert_int_equal(ingest(f, ML_METHOD_CLOSE_RUN, &c.base), 0);
    }
}

static void on_closed(ml_collector *c)
{
    fixture *f = (fixture *)((char *)c - offsetof(fixture, c));
    f->closed = true;
}

static int port_of(const char *url)
{
    const char *colon = strrchr(url, ':');
    assert_non_null(colon);
    return atoi(colon + 1);
}

static int setup_with_ui(void **state, const char *ui)
{
    fixture *f = ml_xcalloc(1, sizeof(*f));
    char tmpl[] = "/tmp/ml_test_http_XXXXXX";
    f->dir = ml_xstrdup(mkdtemp(tmpl));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    char *ui_dir = ml_xasprintf("%s/%s", f->dir, ui);
    f->cfg.data_dir = f->dir;
    f->cfg.http = "127.0.0.1:0";
    f->cfg.ingest_advertise = "tcp://collector.example:4000";
    f->cfg.ui_dir = ui_dir;
    if (strcmp(ui, "ui") == 0) {
        assert_int_equal(ml_mkdirs(ui_dir), 0);
        char *index = ml_xasprintf("%s/index.html", ui_dir);
        assert_int_equal(ml_write_file_atomic(index, "<p>the real UI</p>", 18), 0);
        free(index);
    }
    ml_log_set_level(ML_LOG_ERROR);
    assert_int_equal(ml_collector_start(&f->c, &f->loop, &f->cfg), 0);
    free(ui_dir);
    f->port = port_of(ml_collector_http_url(&f->c));
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with_ui(state, "missing-ui");
}

static int setup_ui(void **state)
{
    return setup_with_ui(state, "ui");
}

static int teardown(void **state)
{
    fixture *f = *state;
    ml_collector_close(&f->c, on_closed);
    while (!f->closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    ml_collector_dispose(&f->c);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    ml_remove_tree(f->dir);
    free(f->dir);
    free(f);
    ml_log_set_level(ML_LOG_INFO);
    return 0;
}

static void test_health_and_ingest(void **state)
{
    fixture *f = *state;
    response r = http(f, "GET", "/healthz");
    json_t *j = json_of(&r, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    r = http(f, "GET", "/api/v1/ingest");
    j = json_of(&r, 200);
    assert_string_equal(json_string_value(json_object_get(j, "ingest")),
                        "tcp://collector.example:4000");
    assert_int_equal(json_integer_value(json_object_get(j, "protocol")), 1);
    json_decref(j);
    r = http(f, "GET", "/api/v1/nothing");
    json_decref(json_of(&r, 404));
}

static void test_runs_list(void **state)
{
    fixture *f = *state;
    make_run(f, UID1, "demo", "box-a", 1000000, true);
    make_run(f, UID2, "train", "box-b", 2000000, false);
    response r = http(f, "GET", "/api/v1/runs");
    json_t *j = json_of(&r, 200);
    assert_int_equal(json_array_size(j), 2);
    json_t *first = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(first, "id")),
                        "train/2026_11_26_05_30_00");
    assert_string_equal(json_string_value(json_object_get(first, "status")), "live");
    json_t *second = json_array_get(j, 1);
    assert_string_equal(json_string_value(json_object_get(second, "status")), "complete");
    assert_int_equal(json_integer_value(json_object_get(second, "samples")), 10);
    assert_int_equal(json_integer_value(json_object_get(second, "logs")), 1);
    assert_true(json_real_value(json_object_get(second, "duration")) == 1.0);
    assert_true(json_real_value(json_object_get(second, "started")) == 1.0);
    assert_string_equal(json_string_value(json_object_get(second, "team")), "local");
    json_decref(j);

    r = http(f, "GET", "/api/v1/runs?filter=box-a");
    j = json_of(&r, 200);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    r = http(f, "GET", "/api/v1/runs?filter=%5Etrain%2F&limit=5");
    j = json_of(&r, 200);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    r = http(f, "GET", "/api/v1/runs?limit=1");
    j = json_of(&r, 200);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    r = http(f, "GET", "/api/v1/runs?filter=(unclosed");
    j = json_of(&r, 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "invalid filter"));
    json_decref(j);
    r = http(f, "POST", "/api/v1/runs");
    json_decref(json_of(&r, 405));
}

static void test_run_endpoints(void **state)
{
    fixture *f = *state;
    make_run(f, UID1, "demo", "box-a", 1000000, true);
    /* Encoded and plain forms name the same run. */
    response r = http(f, "GET", "/api/v1/runs/demo%2F2026_11_26_05_30_00");
    json_t *j = json_of(&r, 200);
    assert_string_equal(json_string_value(json_object_get(j, "uid")), UID1);
    json_t *threads = json_object_get(j, "threads");
    assert_int_equal(json_array_size(threads), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(threads, 0), "samples")),
                     10);
    json_decref(j);
    r = http(f, "GET", "/api/v1/runs/demo/2026_11_26_05_30_00");
    json_decref(json_of(&r, 200));

    r = http(f, "GET", "/api/v1/runs/demo%2F2026_11_26_05_30_00/log");
    j = json_of(&r, 200);
    json_t *ev = json_array_get(json_object_get(j, "events"), 0);
    assert_string_equal(json_string_value(json_object_get(ev, "kind")), "marker");
    assert_string_equal(json_string_value(json_object_get(ev, "message")), "checkpoint");
    assert_true(json_real_value(json_object_get(ev, "time")) == 0.25);
    assert_int_equal(json_array_size(json_object_get(ev, "stack")), 2);
    json_decref(j);

    r = http(f, "GET", "/api/v1/runs/demo/2026_11_26_05_30_00/flamegraph");
    j = json_of(&r, 200);
    assert_true(fabs(json_real_value(json_object_get(j, "total")) - 1.0) < 1e-9);
    json_t *mainf = json_array_get(json_object_get(json_object_get(j, "root"), "children"), 0);
    assert_string_equal(json_string_value(json_object_get(mainf, "name")), "main");
    assert_true(fabs(json_real_value(json_object_get(mainf, "self")) - 0.4) < 1e-9);
    json_decref(j);
    r = http(f, "GET", "/api/v1/runs/demo/2026_11_26_05_30_00/flamegraph?threads=2");
    j = json_of(&r, 200);
    assert_true(json_real_value(json_object_get(j, "total")) == 0.0);
    json_decref(j);
    r = http(f, "GET", "/api/v1/runs/demo/2026_11_26_05_30_00/flamegraph?threads=x");
    json_decref(json_of(&r, 400));

    const char *missing[] = {
        "/api/v1/runs/demo%2F2026_11_26_05_30_01",
        "/api/v1/runs/demo/2026_11_26_05_30_00/nope",
        "/api/v1/runs/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/runs/demo",
    };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        r = http(f, "GET", missing[i]);
        json_decref(json_of(&r, 404));
    }
    r = http(f, "GET", "/api/v1/runs/demo%zz");
    json_decref(json_of(&r, 400));
    r = http(f, "POST", "/api/v1/runs/demo/2026_11_26_05_30_00/log");
    json_decref(json_of(&r, 405));
}

static void test_delete(void **state)
{
    fixture *f = *state;
    make_run(f, UID1, "demo", "box-a", 1000000, true);
    char *dir = ml_xasprintf("%s/runs/local/demo/2026_11_26_05_30_00", f->dir);
    assert_true(ml_is_dir(dir));
    response r = http(f, "DELETE", "/api/v1/runs/demo%2F2026_11_26_05_30_00");
    assert_int_equal(r.status, 204);
    free_response(&r);
    assert_false(ml_is_dir(dir));
    r = http(f, "GET", "/api/v1/runs/demo%2F2026_11_26_05_30_00");
    json_decref(json_of(&r, 404));
    r = http(f, "DELETE", "/api/v1/runs/demo%2F2026_11_26_05_30_00");
    json_decref(json_of(&r, 404));
    r = http(f, "GET", "/api/v1/runs");
    json_t *j = json_of(&r, 200);
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    /* The uid is free again: the client may open a run with it anew. */
    make_run(f, UID1, "demo", "box-a", 1000000, true);
    assert_true(ml_is_dir(dir));
    free(dir);
}

static void test_builtin_page(void **state)
{
    fixture *f = *state;
    response r = http(f, "GET", "/");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "text/html"));
    assert_non_null(strstr(r.body, "/api/v1/runs"));
    free_response(&r);
}

static void test_static_ui(void **state)
{
    fixture *f = *state;
    response r = http(f, "GET", "/");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "<p>the real UI</p>");
    free_response(&r);
    r = http(f, "GET", "/missing.js");
    assert_int_equal(r.status, 404);
    free_response(&r);
    r = http(f, "GET", "/healthz"); /* routes still win over static files */
    json_decref(json_of(&r, 200));
}

static void test_addresses(void **state)
{
    char host[64];
    int port;
    assert_int_equal(ml_parse_hostport("127.0.0.1:7777", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7777);
    assert_int_equal(ml_parse_hostport("[::1]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    const char *bad[] = {"127.0.0.1", ":80", "127.0.0.1:", "h:70000", "h:-1", "[::1]80", "h:8x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ml_parse_hostport(bad[i], host, sizeof(host), &port), -EINVAL);
    assert_true(ml_host_is_loopback("127.0.0.1"));
    assert_true(ml_host_is_loopback("127.1.2.3"));
    assert_true(ml_host_is_loopback("localhost"));
    assert_true(ml_host_is_loopback("::1"));
    assert_false(ml_host_is_loopback("0.0.0.0"));
    assert_false(ml_host_is_loopback("10.0.0.1"));
    assert_false(ml_host_is_loopback("::"));

    /* Standalone refuses to listen beyond loopback without --allow-remote. */
    fixture *f = *state;
    ml_http *h = NULL;
    assert_int_equal(ml_http_start(&f->c, "0.0.0.0:0", false, &h), -EACCES);
    assert_null(h);
    assert_int_equal(ml_http_start(&f->c, "not-an-ip:80", false, &h), -EINVAL);
    assert_null(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_and_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builtin_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_ui, setup_ui, teardown),
        cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);
    nng_fini();
    return rv;
}
