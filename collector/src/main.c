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
#include "json.h"
#include "log.h"
#include "mem.h"
#include "s3.h"

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
    "  --retain-days DAYS      delete runs started more than DAYS days ago\n"
    "  --retain-bytes BYTES    keep at most BYTES (K, M, G suffixes) of runs per team,\n"
    "                          deleting the oldest finished runs first\n"
    "  --s3-list-interval SECONDS  how often the S3 bucket is listed for runs other\n"
    "                          collectors uploaded (30)\n"
    "  --ready-file PATH       once listening, write {\"http\",\"ingest\",\"pid\"} there\n"
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
        O_S3_LIST
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
        {"retain-days", required_argument, NULL, O_RETAIN_DAYS},
        {"retain-bytes", required_argument, NULL, O_RETAIN_BYTES},
        {"s3-list-interval", required_argument, NULL, O_S3_LIST},
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
        case O_LIVE_TIMEOUT: {
            char *end;
            double secs = strtod(optarg, &end);
            if (*end != '\0' || !(secs > 0 && secs <= 86400))
                return usage_error("--live-timeout wants seconds in (0, 86400], not \"%s\"",
                                   optarg);
            o->cfg.live_timeout_ms = (uint32_t)(secs * 1000 + 0.5);
            break;
        }
        case O_RETAIN_DAYS: {
            char *end;
            unsigned long days = strtoul(optarg, &end, 10);
            if (*end != '\0' || days == 0 || days > 100000 || optarg[0] == '-')
                return usage_error("--retain-days wants a number of days, not \"%s\"", optarg);
            o->cfg.retain_days = (uint32_t)days;
            break;
        }
        case O_RETAIN_BYTES: {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            unsigned long long mult = 1;
            if (*end == 'K' || *end == 'k')
                mult = 1ull << 10, end++;
            else if (*end == 'M' || *end == 'm')
                mult = 1ull << 20, end++;
            else if (*end == 'G' || *end == 'g')
                mult = 1ull << 30, end++;
            if (*end != '\0' || v == 0 || optarg[0] == '-' || v > (~0ull) / mult)
                return usage_error("--retain-bytes wants a byte count (K, M, G), not \"%s\"",
                                   optarg);
            o->cfg.retain_bytes = v * mult;
            break;
        }
        case O_S3_LIST: {
            char *end;
            double secs = strtod(optarg, &end);
            if (*end != '\0' || !(secs >= 0.1 && secs <= 86400))
                return usage_error("--s3-list-interval wants seconds in [0.1, 86400], not \"%s\"",
                                   optarg);
            o->cfg.s3_list_ms = (uint32_t)(secs * 1000 + 0.5);
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

static uv_signal_t sigint_h, sigterm_h;

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
    ml_collector_close(c, on_closed);
}

static void watch_signals(uv_loop_t *loop, ml_collector *c)
{
    uv_signal_init(loop, &sigint_h);
    uv_signal_init(loop, &sigterm_h);
    sigint_h.data = sigterm_h.data = c;
    uv_signal_start(&sigint_h, on_signal, SIGINT);
    uv_signal_start(&sigterm_h, on_signal, SIGTERM);
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
            o.cfg.spool_dir = o.spool_dir = env && *env ? ml_xstrdup(env)
                                                        : ml_xasprintf("%s/spool", o.data_dir);
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
    ml_collector_dispose(&c);
    uv_loop_close(loop);
    nng_fini();
    if (s3rv == 0)
        ml_s3_config_dispose(&s3);
    free(o.data_dir);
    free(o.spool_dir);
    free(o.ui_dir);
    return rv == 0 ? 0 : 1;
}
