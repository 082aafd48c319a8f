/*
 * libmicrolog: the Microlog client.
 *
 * A client records one run: it interns strings, frames, stacks and threads,
 * collects samples, status ticks and log events into batches, and a sender
 * thread of its own delivers them to a micrologd collector (nng REQ/REP,
 * protobuf-c envelopes, lz4-compressed payloads, acknowledged per batch).
 *
 * The client lives inside someone else's program. No call here blocks on
 * the network, raises, aborts or prints to stdout. Failures are counted and
 * reported by ml_client_close(). Every recording call is thread-safe.
 *
 * Return values: 0 or a negative errno; id-returning calls return 0 on
 * failure (0 is never a valid id).
 */
#ifndef MICROLOG_CLIENT_H
#define MICROLOG_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ML_CLIENT_VERSION "0.1.0"
#define ML_PROTOCOL_VERSION 1
#define ML_DEFAULT_SERVER "http://localhost:7777"

typedef struct ml_client ml_client;

/* How to reach the collector and how to batch. Fill with ml_client_config_init(). */
typedef struct ml_client_config {
    const char *server;          /* base URL of the collector's HTTP API; the ingest address is
                                    asked from GET <server>/api/v1/ingest */
    const char *ingest;          /* explicit nng URL; skips discovery when set */
    const char *token;           /* hosted mode token, or NULL */
    uint32_t flush_interval_ms;  /* a batch is sent at least this often (default 250) */
    size_t batch_max_bytes;      /* a batch is sent once its estimated size reaches this (default
                                    256 KiB) */
    size_t buffer_max_bytes;     /* unsent batches held in memory at most (default 32 MiB);
                                    beyond it data is dropped and counted */
    uint32_t connect_timeout_ms; /* discovery and each request (default 2000) */
    bool quiet;                  /* do not write the one-line warnings to stderr */
    bool spool_only;             /* never touch the network: every batch goes to the spool
                                    (a forked child, where nng cannot be used) */
    const char *spool_dir;       /* NULL: MICROLOG_SPOOL_DIR, else ~/.microlog/spool */
    const char *ca_file;         /* PEM CAs that verify an https:// server and a tls+tcp://
                                    ingest (MICROLOG_CA_FILE); NULL: the system's CAs */
} ml_client_config;

/* Fills cfg with defaults, then applies MICROLOG_SERVER, MICROLOG_INGEST,
 * MICROLOG_TOKEN and MICROLOG_CA_FILE from the environment. The strings
 * point into the environment. */
void ml_client_config_init(ml_client_config *cfg);

/* Describes the run. All strings are copied by ml_client_new(); NULL means empty. */
typedef struct ml_run_info {
    const char *label;       /* cleaned to [A-Za-z0-9._-], empty becomes "run" */
    const char *timestamp;   /* YYYY_MM_DD_HH_MM_SS; NULL: local time now */
    int64_t start_unix_us;   /* 0: now */
    const char *run_uid;     /* 32 hex chars; NULL: random */
    const char *host;        /* NULL: gethostname() */
    const char *user;        /* NULL: from the password database */
    int32_t pid;             /* 0: getpid() */
    const char *const *argv; /* argc entries */
    size_t argc;
    const char *executable;
    const char *python_version;
    const char *parent_id; /* run_uid of the parent run */
    double sample_period;  /* seconds */
    double status_period;
    double memory_period;
    const char *const *env_keys; /* env_count entries each; values already masked */
    const char *const *env_values;
    size_t env_count;
} ml_run_info;

/* Creates a client for one run and starts its sender thread, which
 * discovers the collector and opens the run in the background.
 * On success stores the client in *out and returns 0; on error returns
 * -EINVAL (bad cfg/run) or -ENOMEM and leaves *out untouched.
 * Any thread. */
int ml_client_new(const ml_client_config *cfg, const ml_run_info *run, ml_client **out);

/* Run identity known so far: "<label>/<timestamp>", replaced by the
 * collector's answer once the run is open. Valid until ml_client_free(). */
const char *ml_client_run_id(const ml_client *c);

/* The run's random uid (32 hex chars), for MICROLOG_ID in children. */
const char *ml_client_run_uid(const ml_client *c);

/* Microseconds since the run's start on the client's monotonic clock. */
int64_t ml_client_now(const ml_client *c);

/* ---- interning: returns the id (>= 1) or 0 on failure; the same content
 * always returns the same id within one client. ---- */

uint32_t ml_client_string(ml_client *c, const char *s, size_t len);

uint32_t ml_client_frame(ml_client *c, uint32_t name, uint32_t file, uint32_t line,
                         uint32_t first_line, uint32_t flags);

/* frames: n frame ids, root first. truncated: frames left out nearest the root. */
uint32_t ml_client_stack(ml_client *c, const uint32_t *frames, size_t n, uint32_t truncated);

/* Returns the per-run thread id for (ident, native_id), defining it on first
 * use with the given name (NULL: "Thread-<ident>"). */
uint32_t ml_client_thread(ml_client *c, uint64_t ident, uint64_t native_id, const char *name);

/* Marks a thread as ended at time t (us since run start). */
int ml_client_thread_end(ml_client *c, uint32_t thread, int64_t t);

/* ---- recording: 0 on success, -ENOBUFS when dropped (counted). ---- */

int ml_client_sample(ml_client *c, uint32_t thread, int64_t t, uint32_t stack, uint32_t cpu_us);

typedef struct ml_status {
    int64_t time;
    float cpu_percent;
    float system_cpu_percent;
    uint64_t rss;
    uint64_t memory_total; /* 0: not measured in this tick */
    uint64_t memory_free;
    uint32_t modules;
    uint64_t objects;
} ml_status;

int ml_client_status(ml_client *c, const ml_status *st);

enum ml_log_kind {
    ML_LOG_STDOUT = 1,
    ML_LOG_STDERR = 2,
    ML_LOG_LOGGING = 3,
    ML_LOG_MARKER = 4,
    ML_LOG_ANALYSIS = 5,
};

/* msg: len bytes of UTF-8; logger may be NULL. */
int ml_client_log(ml_client *c, uint32_t thread, int64_t t, int kind, int level, const char *msg,
                  size_t len, uint32_t stack, const char *logger);

/* What a closed run delivered. */
typedef struct ml_client_result {
    char run_id[256]; /* as in ml_client_run_id() */
    bool delivered;   /* every batch was acknowledged by the collector */
    bool collector_reached;
    uint64_t samples; /* recorded */
    uint64_t logs;
    uint64_t batches_sent;
    uint64_t batches_acked;
    uint64_t dropped_samples; /* lost: buffer full or undeliverable */
    uint64_t dropped_logs;
    char error[256];      /* first error met, empty if none */
    uint64_t statuses;    /* status ticks recorded */
    bool spooled;         /* what was not acknowledged is in spool_path, complete with
                             OpenRun and CloseRun, for a collector to import */
    char spool_path[512]; /* the spool file, when spooled */
} ml_client_result;

/* Ends the run: flushes what is buffered, sends CloseRun with exit_status
 * (carrying the last batch when the collector takes it: one round trip),
 * waits at most timeout_ms for the acknowledgements, then writes whatever
 * was not acknowledged to the spool (res->spooled, res->spool_path) and
 * stops the sender thread. Fills *res when res is not NULL. Returns 0 when
 * everything was delivered, -ETIMEDOUT or -ECONNREFUSED (or another
 * -errno) otherwise, also when the run was spooled. Unless cfg.quiet, a
 * run not delivered gets one line on stderr saying why and where it went.
 * With MICROLOG_DEBUG_COUNTS=PATH, appends the result as one JSON line to
 * PATH (tests compare it with what the collector stored).
 * Call once, from any thread but the sender. */
int ml_client_close(ml_client *c, int exit_status, uint32_t timeout_ms, ml_client_result *res);

/* ml_client_close() for a process about to end (a signal handler's
 * helper thread): the same delivery or spooling, but the sender thread is
 * never joined, only awaited (bounded), because joining a thread takes the
 * C library's thread-stack lock, which the signalled thread may hold.
 * Returns as ml_client_close(); the client must not be freed afterwards. */
int ml_client_close_dying(ml_client *c, int exit_status, uint32_t timeout_ms);

/* For a signal handler of the program's threads (async-signal-safe): when
 * the calling thread is inside a recording call of this library (it may
 * hold a client's mutex, which a close needs), fn is kept and called by
 * that thread as it leaves its outermost recording call, and true is
 * returned; false (fn not kept) otherwise. One fn per thread: the last
 * one kept is called. */
bool ml_client_defer_to_call_end(void (*fn)(void));

/* Frees the client; closes it first (with a zero wait) if that was not done. */
void ml_client_free(ml_client *c);

/* After fork() in the child: drops the inherited client state without
 * touching its locks or threads (they do not exist in the child). The
 * child's memory for it is leaked on purpose. */
void ml_client_forget_after_fork(ml_client *c);

#ifdef __cplusplus
}
#endif
#endif /* MICROLOG_CLIENT_H */
