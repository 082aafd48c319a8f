/*
 * micrologd: the Microlog collector. This file is only the command line:
 * it fills an ml_collector_config, runs the collector on the default loop
 * and turns SIGINT/SIGTERM into a clean shutdown (collector.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <uv.h>

#include "collector.h"
#include "fsutil.h"
#include "hosted.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "runid.h"
#include "s3.h"
#include "wire.h"

#define EXIT_USAGE 2

static const char usage[] =
    "usage: micrologd [--standalone] [options]\n"
    "\n"
    "The Microlog collector: receives runs from profiled programs, stores them\n"
    "and serves them over HTTP (JSON API and web UI).\n"
    "\n"
    "  --standalone            single-user mode (the default): no configuration,\n"
    "                          no authentication, loopback only\n"
    "  --data-dir DIR          where runs are stored (default ~/.microlog)\n"
    "  --spool-dir DIR         import the runs clients spooled there (default with the\n"
    "                          default data dir: $MICROLOG_SPOOL_DIR or ~/.microlog/spool)\n"
    "  --http HOST:PORT        HTTP address (default " ML_DEFAULT_HTTP "; port 0 picks one)\n"
    "  --ingest URL            nng address for clients (default " ML_DEFAULT_INGEST ")\n"
    "  --ingest-advertise URL  ingest address announced by GET /api/v1/ingest\n"
    "  --ui DIR                web UI files (default: the built UI, if any)\n"
    "  --allow-remote          allow listening on non-loopback addresses\n"
    "  --live-timeout SECONDS  a live run silent this long is closed as incomplete (60)\n"
    "  --ingest-idle-timeout SECONDS  close an ingest connection that completed no\n"
    "                          request for this long, e.g. a peer stalled mid-message\n"
    "                          (300; 0: never); clients reconnect by themselves\n"
    "  --drain-timeout SECONDS on SIGTERM/SIGINT, how long S3 uploads in flight may\n"
    "                          take before they are aborted (10; 0: abort at once);\n"
    "                          aborted runs are uploaded at the next start\n"
    "  --retain-days DAYS      delete runs started more than DAYS days ago\n"
    "  --retain-bytes BYTES    keep at most BYTES (K, M, G suffixes) of runs per team,\n"
    "                          deleting the oldest finished runs first\n"
    "  --s3-list-interval SECONDS  how often the S3 bucket is listed for runs other\n"
    "                          collectors uploaded (30)\n"
    "  --collector-id N        1..99, distinct for every collector over one S3 bucket\n"
    "                          (run ids stay unique; default $MICROLOG_COLLECTOR_ID,\n"
    "                          else derived from the host name)\n"
    "  --ready-file PATH       once listening, write {\"http\",\"ingest\",\"pid\"} there\n"
    "\n"
    "Hosted mode (shared by teams; docs/hosted.md):\n"
    "  --tokens FILE           tokens file (token team user read|write|admin per line):\n"
    "                          every ingest and HTTP request needs a token; reloaded on\n"
    "                          SIGHUP; allows non-loopback addresses\n"
    "  --tls-cert FILE         PEM certificate chain: HTTPS, and TLS for a tls+tcp:// ingest\n"
    "  --tls-key FILE          PEM private key of --tls-cert\n"
    "  --max-ingest-rate BYTES per token, bytes per second of ingest (K, M, G)\n"
    "  --ingest-burst BYTES    per token burst above the rate (default: one second's worth)\n"
    "  --max-run-size BYTES    largest stored run (journal bytes)\n"
    "  --max-message-size BYTES  largest ingest request (default and cap 16M)\n"
    "  --max-connections N     ingest connections at once\n"
    "\n"
    "  --verbose               log debug messages\n"
    "  --help                  show this help\n"
    "  --version               show the version\n"
    "\n"
    "S3 (many collectors, one bucket; docs/storage.md): MICROLOG_S3_ROOT=s3://bucket/prefix,\n"
    "MICROLOG_S3_REGION, MICROLOG_S3_ENDPOINT (S3-compatible server, path-style),\n"
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN] or ~/.aws/credentials\n"
    "(AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE).\n";

typedef struct options {
    ml_collector_config cfg;
    const char *ready_file;
    char *data_dir; /* owned defaults */
    char *ui_dir;
    char *spool_dir;
    const char *tokens, *tls_cert, *tls_key; /* hosted mode */
    ml_limits limits;
    bool hosted;
} options;

static char *default_data_dir(void)
{
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0') {
        struct passwd *pw = getpwuid(getuid());
        home = pw && pw->pw_dir ? pw->pw_dir : "/tmp";
    }
    return ml_xasprintf("%s/.microlog", home);
}

/* The source tree's built UI when present, else the installed one. */
static char *default_ui_dir(void)
{
    if (ml_is_dir(ML_UI_SOURCE_DIR))
        return ml_xstrdup(ML_UI_SOURCE_DIR);
    char exe[PATH_MAX];
    size_t len = sizeof(exe);
    if (uv_exepath(exe, &len) != 0)
        return NULL;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    return ml_xasprintf("%s/../share/microlog/ui", exe);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "micrologd: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'micrologd --help'.\n");
    return EXIT_USAGE;
}

/* Hosted-mode options, numbered apart from parse_args' own. */
enum hosted_option {
    O_TOKENS = 300,
    O_TLS_CERT,
    O_TLS_KEY,
    O_RATE,
    O_BURST,
    O_MAX_RUN,
    O_MAX_MSG,
    O_MAX_CONN
};

/* The hosted-mode flags (hosted.h). Returns -1 to go on, or an exit
 * status. */
static int parse_hosted_option(int ch, options *o)
{
    uint64_t v = 0;
    o->hosted = true;
    switch (ch) {
    case O_TOKENS:
        o->tokens = optarg;
        return -1;
    case O_TLS_CERT:
        o->tls_cert = optarg;
        return -1;
    case O_TLS_KEY:
        o->tls_key = optarg;
        return -1;
    default:
        break;
    }
    if (ml_parse_bytes(optarg, &v) != 0)
        return usage_error("%s", "a limit wants a positive number (K, M, G suffixes allowed)");
    switch (ch) {
    case O_RATE:
        o->limits.rate_bytes = v;
        break;
    case O_BURST:
        o->limits.burst_bytes = v;
        break;
    case O_MAX_RUN:
        o->limits.max_run_bytes = v;
        break;
    case O_MAX_MSG:
        if (v > ML_WIRE_MAX_MESSAGE)
            return usage_error("%s", "--max-message-size is at most 16M (the protocol's cap)");
        o->limits.max_message_bytes = (uint32_t)v;
        break;
    default:
        if (v > 1000000)
            return usage_error("%s", "--max-connections wants a count up to 1000000");
        o->limits.max_connections = (uint32_t)v;
        break;
    }
    return -1;
}

/* "1".."99" into *id. Returns 0 or -EINVAL. */
/* Seconds in (min, 86400] (or [min, 86400] when min_included) as
 * milliseconds, rounded; *ms is written only on success. */
static int parse_seconds_ms(const char *s, double min, bool min_included, uint32_t *ms)
{
    char *end;
    double secs = strtod(s, &end);
    if (end == s || *end != '\0' || !(min_included ? secs >= min : secs > min) || !(secs <= 86400))
        return -EINVAL;
    *ms = (uint32_t)(secs * 1000 + 0.5);
    return 0;
}

static int parse_collector_id(const char *s, unsigned *id)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || v < 1 || v > ML_COLLECTOR_ID_MAX)
        return -EINVAL;
    *id = (unsigned)v;
    return 0;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, options *o)
{
    enum {
        O_SPOOL = 200,
        O_DATA = 256,
        O_HTTP,
        O_INGEST,
        O_ADVERTISE,
        O_UI,
        O_READY,
        O_REMOTE,
        O_STANDALONE,
        O_LIVE_TIMEOUT,
        O_RETAIN_DAYS,
        O_RETAIN_BYTES,
        O_S3_LIST,
        O_COLLECTOR_ID,
        O_IDLE_TIMEOUT,
        O_DRAIN_TIMEOUT
    };
    static const struct option longopts[] = {
        {"standalone", no_argument, NULL, O_STANDALONE},
        {"data-dir", required_argument, NULL, O_DATA},
        {"spool-dir", required_argument, NULL, O_SPOOL},
        {"http", required_argument, NULL, O_HTTP},
        {"ingest", required_argument, NULL, O_INGEST},
        {"ingest-advertise", required_argument, NULL, O_ADVERTISE},
        {"ui", required_argument, NULL, O_UI},
        {"ready-file", required_argument, NULL, O_READY},
        {"allow-remote", no_argument, NULL, O_REMOTE},
        {"live-timeout", required_argument, NULL, O_LIVE_TIMEOUT},
        {"ingest-idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
        {"drain-timeout", required_argument, NULL, O_DRAIN_TIMEOUT},
        {"retain-days", required_argument, NULL, O_RETAIN_DAYS},
        {"retain-bytes", required_argument, NULL, O_RETAIN_BYTES},
        {"s3-list-interval", required_argument, NULL, O_S3_LIST},
        {"collector-id", required_argument, NULL, O_COLLECTOR_ID},
        {"tokens", required_argument, NULL, O_TOKENS},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"max-ingest-rate", required_argument, NULL, O_RATE},
        {"ingest-burst", required_argument, NULL, O_BURST},
        {"max-run-size", required_argument, NULL, O_MAX_RUN},
        {"max-message-size", required_argument, NULL, O_MAX_MSG},
        {"max-connections", required_argument, NULL, O_MAX_CONN},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":hvV", longopts, NULL)) != -1) {
        switch (ch) {
        case O_STANDALONE:
            break;
        case O_SPOOL:
            o->cfg.spool_dir = optarg;
            break;
        case O_DATA:
            o->cfg.data_dir = optarg;
            break;
        case O_HTTP:
            o->cfg.http = optarg;
            break;
        case O_INGEST:
            o->cfg.ingest = optarg;
            break;
        case O_ADVERTISE:
            o->cfg.ingest_advertise = optarg;
            break;
        case O_UI:
            o->cfg.ui_dir = optarg;
            break;
        case O_READY:
            o->ready_file = optarg;
            break;
        case O_REMOTE:
            o->cfg.allow_remote = true;
            break;
        case O_LIVE_TIMEOUT:
            if (parse_seconds_ms(optarg, 0, false, &o->cfg.live_timeout_ms) != 0)
                return usage_error("--live-timeout wants seconds in (0, 86400], not \"%s\"",
                                   optarg);
            break;
        case O_IDLE_TIMEOUT:
            if (parse_seconds_ms(optarg, 0, true, &o->cfg.ingest_idle_ms) != 0)
                return usage_error("--ingest-idle-timeout wants seconds in [0, 86400], not \"%s\"",
                                   optarg);
            if (o->cfg.ingest_idle_ms == 0)
                o->cfg.ingest_idle_ms = UINT32_MAX; /* never */
            break;
        case O_DRAIN_TIMEOUT:
            if (parse_seconds_ms(optarg, 0, true, &o->cfg.drain_ms) != 0)
                return usage_error("--drain-timeout wants seconds in [0, 86400], not \"%s\"",
                                   optarg);
            if (o->cfg.drain_ms == 0)
                o->cfg.drain_ms = UINT32_MAX; /* no drain: abort at once */
            break;
        case O_RETAIN_DAYS: {
            char *end;
            unsigned long days = strtoul(optarg, &end, 10);
            if (*end != '\0' || days == 0 || days > 100000 || optarg[0] == '-')
                return usage_error("--retain-days wants a number of days, not \"%s\"", optarg);
            o->cfg.retain_days = (uint32_t)days;
            break;
        }
        case O_RETAIN_BYTES:
            if (ml_parse_bytes(optarg, &o->cfg.retain_bytes) != 0)
                return usage_error("--retain-bytes wants a byte count (K, M, G), not \"%s\"",
                                   optarg);
            break;
        case O_S3_LIST:
            if (parse_seconds_ms(optarg, 0.1, true, &o->cfg.s3_list_ms) != 0)
                return usage_error("--s3-list-interval wants seconds in [0.1, 86400], not \"%s\"",
                                   optarg);
            break;
        case O_COLLECTOR_ID:
            if (parse_collector_id(optarg, &o->cfg.collector_id) != 0)
                return usage_error("--collector-id wants a number in 1..99, not \"%s\"", optarg);
            break;
        case O_TOKENS:
        case O_TLS_CERT:
        case O_TLS_KEY:
        case O_RATE:
        case O_BURST:
        case O_MAX_RUN:
        case O_MAX_MSG:
        case O_MAX_CONN: {
            int st = parse_hosted_option(ch, o);
            if (st >= 0)
                return st;
            break;
        }
        case 'v':
            ml_log_set_level(ML_LOG_DEBUG);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("micrologd %s (protocol 1)\n", ML_COLLECTOR_VERSION);
            return 0;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (o->cfg.data_dir && o->cfg.data_dir[0] == '\0')
        return usage_error("%s", "--data-dir must not be empty");
    return -1;
}

static int write_ready_file(const char *path, ml_collector *c)
{
    json_t *o = json_object();
    const char *http = ml_collector_http_url(c), *ingest = ml_collector_ingest_url(c);
    ml_json_set(o, "http", http ? ml_json_str(http) : json_null());
    ml_json_set(o, "ingest", ingest ? ml_json_str(ingest) : json_null());
    ml_json_set(o, "pid", json_integer(getpid()));
    size_t len;
    char *text = ml_json_dump(o, &len);
    json_decref(o);
    int rv = ml_write_file_atomic(path, text, len);
    free(text);
    if (rv != 0)
        ml_error("cannot write the ready file %s: %s", path, strerror(-rv));
    return rv;
}

static uv_signal_t sigint_h, sigterm_h, sighup_h;

/* SIGHUP: reread the tokens file; a bad file keeps the old tokens. */
static void on_sighup(uv_signal_t *s, int signum)
{
    ml_hosted *h = s->data;
    char err[400];
    (void)signum;
    if (ml_auth_reload(&h->auth, err, sizeof(err)) == 0)
        ml_info("SIGHUP: %zu tokens loaded from %s", h->auth.nentries, h->auth.path);
    else
        ml_error("SIGHUP: %s; keeping the previous tokens", err);
}

static void on_closed(ml_collector *c)
{
    uv_stop(c->loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
    ml_collector *c = s->data;
    ml_info("%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    /* Closing the watchers restores the default action: a second signal
     * ends the process at once. */
    uv_close((uv_handle_t *)&sigint_h, NULL);
    uv_close((uv_handle_t *)&sigterm_h, NULL);
    if (sighup_h.data)
        uv_close((uv_handle_t *)&sighup_h, NULL);
    ml_collector_close(c, on_closed);
}

static void watch_signals(uv_loop_t *loop, ml_collector *c)
{
    uv_signal_init(loop, &sigint_h);
    uv_signal_init(loop, &sigterm_h);
    sigint_h.data = sigterm_h.data = c;
    uv_signal_start(&sigint_h, on_signal, SIGINT);
    uv_signal_start(&sigterm_h, on_signal, SIGTERM);
    if (c->hosted && c->hosted->has_tokens) {
        uv_signal_init(loop, &sighup_h);
        sighup_h.data = c->hosted;
        uv_signal_start(&sighup_h, on_sighup, SIGHUP);
    }
}

int main(int argc, char **argv)
{
    options o = {0};
    int status = parse_args(argc, argv, &o);
    if (status >= 0)
        return status;
    signal(SIGPIPE, SIG_IGN);
    if (o.cfg.data_dir == NULL) {
        o.cfg.data_dir = o.data_dir = default_data_dir();
        /* the machine's own collector imports the machine's spool */
        if (o.cfg.spool_dir == NULL) {
            const char *env = getenv("MICROLOG_SPOOL_DIR");
            o.cfg.spool_dir = o.spool_dir =
                env && *env ? ml_xstrdup(env) : ml_xasprintf("%s/spool", o.data_dir);
        }
    }
    if (o.cfg.ui_dir == NULL)
        o.cfg.ui_dir = o.ui_dir = default_ui_dir();
    if (o.cfg.http == NULL)
        o.cfg.http = ML_DEFAULT_HTTP;
    if (o.cfg.ingest == NULL)
        o.cfg.ingest = ML_DEFAULT_INGEST;

    ml_s3_config s3;
    char err[300];
    int s3rv = ml_s3_config_from_env(&s3, err, sizeof(err));
    if (s3rv < 0) {
        fprintf(stderr, "micrologd: %s\n", err);
        free(o.data_dir);
        free(o.spool_dir);
        free(o.ui_dir);
        return EXIT_USAGE;
    }
    if (s3rv == 0)
        o.cfg.s3 = &s3;
    const char *idenv = getenv("MICROLOG_COLLECTOR_ID");
    if (o.cfg.collector_id == 0 && idenv && *idenv &&
        parse_collector_id(idenv, &o.cfg.collector_id) != 0) {
        fprintf(stderr, "micrologd: MICROLOG_COLLECTOR_ID wants a number in 1..%d, not \"%s\"\n",
                ML_COLLECTOR_ID_MAX, idenv);
        if (s3rv == 0)
            ml_s3_config_dispose(&s3);
        free(o.data_dir);
        free(o.spool_dir);
        free(o.ui_dir);
        return EXIT_USAGE;
    }

    ml_hosted hosted;
    if (o.hosted) {
        if (ml_hosted_init(&hosted, o.tokens, &o.limits, o.tls_cert, o.tls_key, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "micrologd: %s\n", err);
            ml_hosted_dispose(&hosted);
            if (s3rv == 0)
                ml_s3_config_dispose(&s3);
            free(o.data_dir);
            free(o.spool_dir);
            free(o.ui_dir);
            return EXIT_USAGE;
        }
        o.cfg.hosted = &hosted;
        /* With tokens every request is authenticated: other addresses than
         * loopback are fine. Without, --allow-remote is the explicit force. */
        if (hosted.has_tokens)
            o.cfg.allow_remote = true;
        else if (o.cfg.allow_remote)
            ml_warn("--allow-remote without --tokens: anyone who reaches this collector can read "
                    "and write every run");
    }

    /* The group commit syncs many journals at once on the thread pool
     * (commit.c); libuv sizes the pool when it is first used. */
    if (getenv("UV_THREADPOOL_SIZE") == NULL)
        setenv("UV_THREADPOOL_SIZE", ML_THREADPOOL_SIZE, 1);
    uv_loop_t *loop = uv_default_loop();
    ml_collector c;
    int rv = ml_collector_start(&c, loop, &o.cfg);
    if (rv == 0) {
        fprintf(stderr, "micrologd: serving %s ingest %s data %s\n", ml_collector_http_url(&c),
                ml_collector_ingest_url(&c), o.cfg.data_dir);
        if (o.ready_file)
            rv = write_ready_file(o.ready_file, &c);
    }
    if (rv == 0) {
        watch_signals(loop, &c);
        uv_run(loop, UV_RUN_DEFAULT);
    } else {
        ml_collector_close(&c, on_closed);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    bool nng_stuck = c.nng_stuck;
    ml_collector_dispose(&c);
    if (!nng_stuck) { /* else a thread still waits in nng_close(): nng_fini() would too */
        uv_loop_close(loop);
        nng_fini();
    }
    if (s3rv == 0)
        ml_s3_config_dispose(&s3);
    if (o.hosted)
        ml_hosted_dispose(&hosted);
    free(o.data_dir);
    free(o.spool_dir);
    free(o.ui_dir);
    return rv == 0 ? 0 : 1;
}
