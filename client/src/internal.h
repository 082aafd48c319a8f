/*
 * libmicrolog internals: shared by the client's source files and its unit
 * tests, never installed.
 *
 * Layout of the client (one concept per file):
 *   alloc.c     counted malloc wrappers (the test hook for "no malloc on the hot path")
 *   utf8.c      copies text into valid, NUL-free UTF-8 for protobuf string fields
 *   errors.c    error translation (nng, curl, collector status) and the first-error record
 *   intern.c    hash tables for strings, frames, stacks, threads (ids from 1)
 *   batch.c     the columns of one batch and their protobuf encoding
 *   queue.c     sealed, packed batches waiting for their acknowledgement
 *   runinfo.c   the run's identity (label, timestamp, uid) and its OpenRun message
 *   curl_dl.c   libcurl loaded at the first discovery (curl_dl.h), not linked
 *   loopback.c  discovery from http://127.0.0.1 or localhost without libcurl
 *   discover.c  GET <server>/api/v1/ingest with libcurl
 *   seal.c      hands the batch under construction to the sender (swap, pack, queue)
 *   sender.c    the sender thread: nng REQ socket, OpenRun, batches, CloseRun
 *   spool.c     spool files: the run's own spool, replay, leftover files
 *   deliver.c   the sender's spool side: what goes to disk, replay, leftovers
 *   autostart.c starts a local `micrologd --standalone` when none answers
 *   client.c    configuration, ml_client_new and the run identity accessors
 *   record.c    the recording functions (interning, samples, status, logs)
 *   close.c     ml_client_close, ml_client_free, ml_client_forget_after_fork
 *
 * Locking: one mutex per client (ml_client.mu) protects the intern tables,
 * the batch under construction and the close request. It is held only for
 * bookkeeping: never across I/O, packing or compression. Everything under
 * "sender thread only" below is touched by the sender thread alone (and by
 * ml_client_close after it has joined that thread).
 */
#ifndef ML_CLIENT_INTERNAL_H
#define ML_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "microlog/client.h"
#include "spool_format.h"
#include "wire.h"

/* ---- limits ---------------------------------------------------------------- */

#define ML__LABEL_MAX 100             /* cleaned label length */
#define ML__RUN_ID_MAX 255            /* fits ml_client_result.run_id */
#define ML__STRING_MAX (64u << 10)    /* longer interned strings are cut */
#define ML__LOG_MAX (256u << 10)      /* longer log messages are cut */
#define ML__STACK_MAX 65536           /* frames per stack */
#define ML__BATCH_HARD_MAX (8u << 20) /* estimated bytes of one batch, whatever the config */
#define ML__ACK_SAMPLES 4096          /* ack latencies kept (a ring) */

/* ---- alloc.c: counted allocation ------------------------------------------- */

/* Every allocation made by intern.c and batch.c goes through these so that the
 * tests can check that steady-state recording does not allocate, and can make
 * an allocation fail. Same contracts as malloc/calloc/realloc/free. */
void *ml__malloc(size_t n);
void *ml__calloc(size_t n, size_t size);
void *ml__realloc(void *p, size_t n);
void ml__free(void *p);

/* Allocations made so far (successful or not). Any thread. */
extern atomic_ulong ml__alloc_count;
/* Test hook: when >= 0, the number of allocations still allowed to succeed;
 * each one decrements it and at 0 they fail. -1 (default): no limit. */
extern atomic_long ml__alloc_budget;

/* Grows *items (each of size elem) so that it holds at least need elements;
 * capacity doubles. Returns 0 or -ENOMEM (then *items and *cap are untouched). */
int ml__grow(void **items, size_t *cap, size_t need, size_t elem);

/* ---- utf8.c ----------------------------------------------------------------- */

/* Worst-case output size of ml__utf8_copy for len input bytes (without the NUL). */
#define ML__UTF8_BOUND(len) ((len)*3)

/* Copies len bytes of s into out (capacity at least ML__UTF8_BOUND(len) + 1),
 * replacing each invalid byte and each NUL by U+FFFD, and NUL-terminates it.
 * Returns the output length. Pure, any thread. */
size_t ml__utf8_copy(char *out, const char *s, size_t len);

/* True when s[0..len) is valid UTF-8 without NUL bytes. */
bool ml__utf8_valid(const char *s, size_t len);

/* Length of the longest prefix of s[0..len) not longer than max that does not
 * end inside a UTF-8 sequence. */
size_t ml__utf8_cut(const char *s, size_t len, size_t max);

/* A malloc'd sanitized copy of s (NULL: ""); NULL when out of memory. */
char *ml__utf8_dup(const char *s);

/* ---- errors.c --------------------------------------------------------------- */

/* nng error -> -errno. */
int ml__err_from_nng(int rv);
/* curl result (and the OS errno curl saw, 0 if none) -> -errno. */
int ml__err_from_curl(int code, long os_errno);
/* Collector reply status (gRPC code) -> -errno; 0 for OK. */
int ml__err_from_status(int32_t status);
/* True for the statuses after which retrying cannot help. */
bool ml__status_permanent(int32_t status);
/* Lower-case name of a gRPC status ("unauthenticated"). */
const char *ml__status_name(int32_t status);
/* Lower-case text for an -errno ("connection refused"). */
const char *ml__strerror(int err);

/* ---- intern.c --------------------------------------------------------------- */

/* Open-addressing set of ids keyed by a 64-bit hash. A slot holds
 * (hash >> 32) << 32 | id, 0 when empty; linear probing; load <= 1/2. */
typedef struct ml__index {
    uint64_t *slots;
    uint32_t mask; /* capacity - 1; capacity is a power of two */
    uint32_t count;
} ml__index;

typedef struct ml__str {
    const char *raw;  /* the bytes as given: the lookup key */
    const char *utf8; /* what is sent: raw itself when it is valid UTF-8 */
    uint32_t len;
} ml__str;

typedef struct ml__frame {
    uint32_t name, file, line, first_line, flags;
} ml__frame;

typedef struct ml__stack {
    const uint32_t *frames; /* in the arena; root first */
    uint32_t n;
    uint32_t truncated;
} ml__stack;

typedef struct ml__thread {
    uint64_t ident, native_id;
    char *name; /* malloc'd, replaced when the thread is renamed */
    int64_t started_us, ended_us;
    bool pending; /* listed in ml__intern.pending_threads */
} ml__thread;

typedef struct ml__arena_chunk ml__arena_chunk;

/* All interned content of one client. Ids of each kind are 1..n in creation
 * order. Definitions with an id above the matching sent_* watermark have not
 * been handed to a sealed batch yet; threads to (re)send are listed in
 * pending_threads. Not thread-safe: the client holds its mutex. */
typedef struct ml__intern {
    ml__arena_chunk *arena; /* string bytes and stack frame arrays; never moved */
    ml__index str_ix, frame_ix, stack_ix, thread_ix;
    ml__str *strs;
    size_t nstrs, strs_cap;
    ml__frame *frames;
    size_t nframes, frames_cap;
    ml__stack *stacks;
    size_t nstacks, stacks_cap;
    ml__thread *threads;
    size_t nthreads, threads_cap;
    uint32_t *pending_threads;
    size_t npending_threads, pending_threads_cap;
    uint32_t sent_strs, sent_frames, sent_stacks;
    size_t pending_bytes; /* estimated encoded size of the unsent definitions */
} ml__intern;

void ml__intern_init(ml__intern *in);
void ml__intern_close(ml__intern *in);
/* Each returns the id, or 0 on invalid input or out of memory. A lookup of
 * known content does not allocate. */
uint32_t ml__intern_string(ml__intern *in, const char *s, size_t len);
uint32_t ml__intern_frame(ml__intern *in, const ml__frame *f);
uint32_t ml__intern_stack(ml__intern *in, const uint32_t *frames, size_t n, uint32_t truncated);
/* name NULL keeps a known thread's name (new thread: "Thread-<ident>"); a
 * different name re-sends the ThreadDef. now: started_us of a new thread. */
uint32_t ml__intern_thread(ml__intern *in, uint64_t ident, uint64_t native_id, const char *name,
                           int64_t now);
/* Sets ended_us and re-sends the ThreadDef. 0, -EINVAL or -ENOMEM. */
int ml__intern_thread_end(ml__intern *in, uint32_t id, int64_t t);
/* True when some definition waits for a batch. */
bool ml__intern_has_pending(const ml__intern *in);

/* ---- batch.c ---------------------------------------------------------------- */

typedef struct ml__logrec {
    int64_t time;
    uint32_t thread, kind, stack;
    int32_t level;
    size_t msg;    /* offset of the NUL-terminated message in ml__batch.text */
    size_t logger; /* offset, or SIZE_MAX: none */
} ml__logrec;

typedef struct ml__strref {
    const char *utf8; /* in the intern arena */
} ml__strref;

typedef struct ml__threadrec {
    uint32_t id;
    uint64_t ident, native_id;
    size_t name; /* offset in ml__batch.text */
    int64_t started_us, ended_us;
} ml__threadrec;

/* One batch: columns of records plus, once sealed, the definitions it
 * carries. Arrays grow geometrically and keep their capacity across
 * ml__batch_reset, so a steady run allocates nothing per record. */
typedef struct ml__batch {
    uint32_t *s_thread, *s_stack, *s_cpu;
    int64_t *s_time;
    size_t nsamples, samples_cap;
    ml_status *status;
    size_t nstatus, status_cap;
    ml__logrec *logs;
    size_t nlogs, logs_cap;
    char *text; /* log messages, logger and thread names, each NUL-terminated */
    size_t text_len, text_cap;
    /* definitions, filled by ml__batch_take_defs when the batch is sealed */
    uint32_t str_first, frame_first, stack_first; /* id of element 0 */
    ml__strref *strs;
    size_t nstrs, strs_cap;
    ml__frame *frames;
    size_t nframes, frames_cap;
    ml__stack *stacks;
    size_t nstacks, stacks_cap;
    ml__threadrec *threads;
    size_t nthreads, threads_cap;
    uint64_t dropped_samples, dropped_logs; /* lost since the previous batch */
    size_t est_bytes;                       /* estimated encoded size of the records */
} ml__batch;

void ml__batch_init(ml__batch *b);
void ml__batch_close(ml__batch *b);
/* Empties b, keeping its capacity. */
void ml__batch_reset(ml__batch *b);
/* True when b holds no record, no definition and no drop count. */
bool ml__batch_empty(const ml__batch *b);
/* 0 or -ENOMEM (b unchanged). */
int ml__batch_add_sample(ml__batch *b, uint32_t thread, int64_t t, uint32_t stack, uint32_t cpu);
int ml__batch_add_status(ml__batch *b, const ml_status *st);
/* msg is cut to ML__LOG_MAX and sanitized; logger may be NULL. */
int ml__batch_add_log(ml__batch *b, uint32_t thread, int64_t t, int kind, int level,
                      const char *msg, size_t len, uint32_t stack, const char *logger);
/* Moves every pending definition of in into b and advances in's watermarks.
 * All or nothing: on -ENOMEM nothing moved. Caller holds the client mutex. */
int ml__batch_take_defs(ml__batch *b, ml__intern *in);
/* Encodes b as a Batch (with_data false: definitions and drop counts only)
 * inside a request Envelope. On success *out is malloc'd (*out_len bytes).
 * Returns 0, -ENOMEM or -EMSGSIZE. Does not modify b. */
int ml__batch_pack(const ml__batch *b, const char *run_uid, uint64_t seq, bool with_data,
                   uint64_t call_id, const char *token, uint8_t **out, size_t *out_len);

/* ---- queue.c ---------------------------------------------------------------- */

typedef enum ml__reqkind { ML__REQ_OPEN = 1, ML__REQ_BATCH, ML__REQ_CLOSE } ml__reqkind;

/* One packed request. Batches keep their bytes (and so their call id) until
 * acknowledged: a retry sends the very same envelope. */
typedef enum ml__source {
    ML__SRC_MEMORY = 0, /* the queue, or open_req / close_req */
    ML__SRC_SPOOL,      /* read back from the run's own spool file */
    ML__SRC_LEFTOVER,   /* read from another run's spool file */
} ml__source;

typedef struct ml__req {
    struct ml__req *next;
    ml__reqkind kind;
    ml__source source;
    uint64_t spool_next; /* spooled requests: offset of the record after this one */
    uint8_t *data;
    size_t len;
    uint64_t seq; /* batches */
    uint64_t call_id;
    uint64_t samples, logs; /* what is lost if this batch is never acknowledged */
    bool sent;              /* sent at least once */
    bool folded;            /* a CloseRun carrying the queue's only batch (final_batch) */
} ml__req;

/* FIFO of packed batches. Only the sender thread changes it; bytes may be read
 * by any thread (the recording functions bound memory with it). */
typedef struct ml__queue {
    ml__req *head, *tail;
    size_t count;
    atomic_size_t bytes;
} ml__queue;

/* A request owning data (taken on success). NULL when out of memory. */
ml__req *ml__req_new(ml__reqkind kind, uint8_t *data, size_t len, uint64_t call_id);
void ml__req_free(ml__req *r);
void ml__queue_push(ml__queue *q, ml__req *r);
/* Removes and returns the head, or NULL. */
ml__req *ml__queue_pop(ml__queue *q);
/* Frees every queued request, adding what they held to *samples / *logs. */
void ml__queue_drop_all(ml__queue *q, uint64_t *samples, uint64_t *logs);

/* ---- spool.c ---------------------------------------------------------------- */

/* An open spool file: the writer's (fd holds the flock) or a reader's. */
typedef struct ml__spool {
    int fd; /* -1: none */
    char *path;
    uint64_t size; /* bytes in the file (writer: written and synced) */
    uint64_t off;  /* the next record to replay */
    unsigned records;
} ml__spool;

#define ML__SPOOL_SKIP_MAX 32

/* Leftover files this client gave up on (by inode), so it does not retry
 * them in a loop. */
typedef struct ml__spool_skip {
    uint64_t ino[ML__SPOOL_SKIP_MAX];
    size_t n, next;
} ml__spool_skip;

void ml__spool_init(ml__spool *sp);
/* The spool directory: cfg->spool_dir, else MICROLOG_SPOOL_DIR, else
 * $HOME/.microlog/spool. 0, -ENOENT (no HOME) or -ENAMETOOLONG. */
int ml__spool_dir(const ml_client_config *cfg, char *out, size_t outlen);
/* Creates <dir>/<uid>-<n>-<pid>.mlspool (and dir), locks it and writes the
 * file magic and the META record naming server. A forked child's uid
 * argument is "<parent uid>.<uid>": its parent delivers it (deliver.c).
 * 0 or -errno. */
int ml__spool_create(ml__spool *sp, const char *dir, const char *uid, const char *server);
/* Appends one record; sync: fdatasync before returning. On error the file
 * is cut back to its previous size. 0 or -errno. */
int ml__spool_append(ml__spool *sp, uint32_t kind, uint64_t seq, uint64_t call_id,
                     const uint8_t *data, size_t len, bool sync);
/* Reads the record at off: on success *data is malloc'd (rec->len bytes)
 * and *next is the following offset. -ENODATA at the end, -EBADMSG at a
 * torn or corrupt record, -ENOMEM. */
int ml__spool_read(const ml__spool *sp, uint64_t off, ml_spool_rec *rec, uint8_t **data,
                   uint64_t *next);
/* Opens and locks a finished spool file; reads its META record into server
 * and positions off after it. -EAGAIN when locked by someone else. */
int ml__spool_open_leftover(ml__spool *sp, const char *path, char *server, size_t serverlen);
/* Finds, opens and locks the first spool file in dir meant for server that
 * is not own_path, not skipped and, when prefix is not NULL, whose name
 * starts with prefix. 0, -ENOENT (none) or -errno. */
int ml__spool_find_leftover(const char *dir, const char *own_path, const char *server,
                            const char *prefix, const ml__spool_skip *skip, ml__spool *out);
void ml__spool_skip_add(ml__spool_skip *skip, const ml__spool *sp);
/* Closes the file (releasing the lock) and keeps it on disk. */
void ml__spool_close(ml__spool *sp);
/* Removes the file (while still holding the lock) and closes it. */
void ml__spool_remove(ml__spool *sp);
/* ml__spool_close and frees the path. */
void ml__spool_free(ml__spool *sp);

/* ---- runinfo.c -------------------------------------------------------------- */

/* The run as described by ml_run_info, copied, sanitized and defaulted. */
typedef struct ml__run {
    char label[ML__LABEL_MAX + 1];
    char timestamp[20]; /* YYYY_MM_DD_HH_MM_SS */
    char uid[33];       /* 32 lower-case hex chars */
    int64_t start_unix_us;
    char *host, *user, *executable, *python_version, *parent_id;
    int32_t pid;
    char **argv;
    size_t argc;
    char **env_keys, **env_values;
    size_t env_count;
    double sample_period, status_period, memory_period;
} ml__run;

/* Cleans label into out: [A-Za-z0-9._-] kept, anything else '_' (one per
 * byte), cut to ML__LABEL_MAX, empty -> "run". NULL is empty. */
void ml__label_clean(const char *label, char out[ML__LABEL_MAX + 1]);
/* True when ts is exactly YYYY_MM_DD_HH_MM_SS (digits and underscores). */
bool ml__timestamp_valid(const char *ts);
/* Formats unix_us as local time YYYY_MM_DD_HH_MM_SS. */
void ml__timestamp_format(int64_t unix_us, char out[20]);
/* Fills out with 32 random lower-case hex chars and a NUL. */
void ml__uid_random(char out[33]);
/* Copies info into r with defaults filled in. 0, -EINVAL (bad timestamp or
 * run_uid) or -ENOMEM; on error r holds nothing to free. */
int ml__run_init(ml__run *r, const ml_run_info *info);
void ml__run_close(ml__run *r);
/* Encodes the OpenRun request. Same contract as ml_wire_pack. */
int ml__run_pack_open(const ml__run *r, uint64_t call_id, const char *token, uint8_t **out,
                      size_t *out_len);

/* ---- discover.c ------------------------------------------------------------- */

/* Asks GET <server>/api/v1/ingest for the collector's nng address. Blocks the
 * calling (sender) thread at most timeout_ms, less when should_stop(arg)
 * turns true (checked every few ms). On success *ingest is malloc'd.
 * On error returns -errno, writes a reason into err and sets *permanent when
 * retrying cannot help (malformed URL, HTTP 4xx, protocol mismatch). */
int ml__discover(const char *server, const char *token, const char *ca_file, uint32_t timeout_ms,
                 bool (*should_stop)(void *), void *arg, char **ingest, char *err, size_t errlen,
                 bool *permanent);

/* ---- loopback.c ------------------------------------------------------------ */

/* True when server is http://127.0.0.1[:PORT][/path] or the same with
 * localhost (*localhost): *port, and the path prefix without trailing
 * slashes. */
bool ml__loopback_url(const char *server, uint16_t *port, const char **path, size_t *path_len,
                      bool *localhost);

/* GET <server>/api/v1/ingest over a loopback TCP connection in HTTP/1.0,
 * for such a server. Returns 0 with the HTTP status and the body (malloc'd,
 * NUL-terminated) of a non-redirect answer; -ENOTSUP for a server, token or
 * answer this reader leaves to libcurl; -ECONNREFUSED when nothing listens,
 * -ETIMEDOUT when timeout_ms passed, -ECANCELED when should_stop(arg)
 * turned true, another -errno for other failures.
 * Sender thread. */
int ml__loopback_get(const char *server, const char *token, uint32_t timeout_ms,
                     bool (*should_stop)(void *), void *arg, long *status, char **body,
                     size_t *body_len);

/* ---- TLS ingest (tls.c) ---- */

/* True when url is a "tls+tcp://" nng address. Any thread. */
bool ml__url_is_tls(const char *url);

/* Creates (not started) a dialer of sock to url with a TLS configuration
 * that requires a certificate valid for url's host, signed by a CA in
 * ca_file (NULL: the system bundle). Returns 0 with *out, or -errno with
 * a one-line reason in err. Sender thread. */
int ml__tls_dialer(nng_socket sock, const char *url, const char *ca_file, nng_dialer *out,
                   char *err, size_t errlen);

/* ---- the client ------------------------------------------------------------- */

/* State owned by the sender thread. */
typedef struct ml__sender {
    char *ingest; /* nng URL: configured or discovered */
    int64_t discover_at;
    uint32_t discover_backoff;
    nng_socket sock;
    nng_ctx ctx;
    nng_aio *aio;
    bool sock_open;
    ml__req *inflight; /* request being sent or awaiting its reply */
    bool recv_phase;   /* the send completed; waiting for the reply */
    ml__req *open_req; /* kept for a re-open after NOT_FOUND */
    ml__req *close_req;
    bool opened;  /* the collector acknowledged OpenRun */
    bool fold_ok; /* its OpenRunReply said takes_final_batch: the last batch may ride
                     in CloseRun (one round trip less at close) */
    bool no_fold; /* a folded CloseRun was refused or left the run incomplete: the
                     batch and CloseRun go separately from then on */
    bool close_acked;
    bool close_complete;    /* CloseRunReply.complete */
    bool failed;            /* permanently: nothing more will be sent */
    bool refused;           /* the collector will store no more of this run (its maximum
                               run size): later batches are dropped and counted, CloseRun
                               still goes so that the run is closed as incomplete */
    uint32_t dead_requests; /* consecutive requests that failed with no connection up */
    bool closing_seen;      /* the thread has seen the close request */
    bool final_sealed;      /* the last batch (after the close request) is sealed */
    bool closing_failure;   /* an attempt begun after the close request failed */
    int64_t closing_at;     /* ms, monotonic: when the thread saw the close request */
    int64_t attempt_at;     /* ms, monotonic: when the latest discovery/dial/request began */
    int64_t retry_at;       /* ms, monotonic: no request before */
    uint32_t backoff;
    int64_t next_flush;
    uint64_t seq;
    uint64_t next_call_id;
    ml__queue queue;
    uint64_t carry_samples, carry_logs; /* dropped, to report in the next batch */
    uint64_t lost_samples, lost_logs;   /* sealed then lost (overflow, never acknowledged) */
    uint64_t batches_sent, batches_acked;

    /* spooling (deliver.c) */
    bool offline;            /* never use the network: spool_only, or a forked process */
    bool spooling;           /* new batches go to the own spool, not to memory */
    bool close_spooled;      /* CloseRun is in the own spool */
    bool spool_failed;       /* the spool cannot be written: losses are counted */
    ml__spool own;           /* the run's own spool file (fd -1: none open) */
    char *spool_path;        /* where the run was left on disk, once final */
    ml__req *replay;         /* a request read from a spool, until acknowledged */
    ml__spool left;          /* a leftover spool file being delivered */
    bool left_done;          /* one just ended: closing looks again at once */
    ml__spool_skip skip;     /* leftover files given up on */
    int64_t left_scan_at;    /* ms, monotonic: no directory scan before */
    uint64_t leftover_files; /* leftover files delivered and removed */
    /* acknowledgement latency of the latest requests (us), for the debug
     * counts and the transport benchmark */
    int64_t sent_us;
    uint32_t ack_us[ML__ACK_SAMPLES];
    size_t nack;
} ml__sender;

struct ml_client {
    /* set by ml_client_forget_after_fork: every call checks it first and then
     * touches nothing (the mutex may be held by a thread that is gone) */
    atomic_bool forked;
    /* immutable after ml_client_new */
    char *server, *ingest, *token, *spool_dir, *ca_file;
    ml_client_config cfg; /* its strings point to the five above */
    ml__run run;
    int64_t start_mono_ns;
    const char *no_transport; /* non-NULL: why this process cannot send at all */
    char run_id_prov[ML__RUN_ID_MAX + 1];
    char run_id_final[ML__RUN_ID_MAX + 1]; /* written once, before run_id points to it */
    _Atomic(const char *) run_id;
    atomic_bool reached;   /* some reply came back from the collector */
    atomic_bool pipe_seen; /* some nng connection was made */
    atomic_int pipes;      /* nng connections up now (pipe callbacks, nng threads) */
    atomic_bool to_disk;   /* sealed batches go to the spool, not the memory queue */

    pthread_mutex_t mu;
    pthread_cond_t cv; /* wakes the sender: batch full, aio done, close */
    /* Wakes a close that does not join the sender (sender_settled). Not cv:
     * a signal on cv meant for the sender (an nng callback's aio done) could
     * wake that close instead, and the sender would sleep on to its next
     * timer (250 ms more for a SIGTERM's close). */
    pthread_cond_t settled_cv;
    /* under mu */
    ml__intern in;
    ml__batch *active; /* the batch recording functions append to */
    bool full_signaled;
    bool aio_done;
    bool closing; /* ml_client_close was called: recording stops */
    int exit_status;
    int64_t end_time_us;
    int64_t deadline;                 /* ms, monotonic */
    uint64_t samples, logs, statuses; /* accepted */
    uint64_t drop_samples, drop_logs; /* refused by the recording functions */
    int first_err;
    char error[256];
    int conn_err; /* latest reason the collector could not be reached */
    char conn_reason[200];
    char limit[200];   /* the collector's latest "retry later" reason (a rate limit, a
                          full disk, too many connections); sender thread only: it
                          explains a close that ran out of time even after later
                          requests went through */
    char refusal[200]; /* why the collector refused the rest of the run (snd.refused);
                          written by the sender thread, read after it is joined */

    /* sender thread only */
    ml__batch *spare; /* the other batch; sealed and packed while active fills */
    ml__batch batches[2];
    ml__sender snd;
    pthread_t thread;
    bool thread_started;
    /* A sender not joined in time (close.c): whichever of it and
     * ml_client_free comes last frees c (guarded by mu). */
    bool thread_stuck;
    bool sender_exited;
    bool free_on_exit;
    bool sender_settled; /* finish() wrote the run's last state; only the socket is left */

    /* written by ml_client_close */
    bool closed;
    int close_rv;
    ml_client_result result;
};

/* Frees c and everything it owns except its mutex and condition variable;
 * the sender thread must not be running. */
void ml__client_destroy(ml_client *c);

/* The sender thread's last step: frees c when ml_client_free already gave
 * up on it (close.c). */
void ml__sender_exit(ml_client *c);

/* Monotonic milliseconds, microseconds. */
int64_t ml__mono_ms(void);
int64_t ml__clock_us(void);
/* Records err as the first error (if none yet) with a printf-style reason.
 * Takes the client mutex: never call with it held. */
void ml__client_error(ml_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records why the collector cannot be reached (the close-time warning says it). */
void ml__client_conn_error(ml_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* seal.c: sender thread. Seals the batch under construction (if not empty),
 * packs it and queues it, or drops and counts what does not fit. */
void ml__seal(ml_client *c);

/* sender.c */
/* Packs this run's CloseRun request (counts as of now). NULL on ENOMEM. */
ml__req *ml__close_request(ml_client *c);
/* The same with the packed batch request `batch` (the run's last) folded in
 * as final_batch. NULL when out of memory or when batch cannot be decoded. */
ml__req *ml__close_request_folded(ml_client *c, const ml__req *batch);
/* Packs this run's OpenRun request. NULL on ENOMEM. */
ml__req *ml__open_request(ml_client *c);

/* deliver.c: the spool side of the sender thread. */
/* Writes a packed batch (with data) to the run's own spool, creating the
 * spool on first use. 0 or -errno (then nothing was written). */
int ml__spool_batch(ml_client *c, const ml__req *r);
/* The next request to replay from the own spool (appending CloseRun to it
 * once the last batch is sealed), or NULL. Sets s->replay. */
ml__req *ml__spool_next(ml_client *c);
/* The next record of a leftover spool file meant for this collector, or
 * NULL (scans the directory at most every few seconds). Sets s->replay. */
ml__req *ml__leftover_next(ml_client *c);
/* Closing, with the run stored: true while a finished spool file of a
 * forked child of this run waits to be delivered (its parent delivers it:
 * a child cannot use the network library after fork). Sender thread. */
bool ml__children_pending(ml_client *c);
/* s->replay was acknowledged: moves past it. */
void ml__replay_acked(ml_client *c);
/* The collector refused s->replay from a leftover file for good: the file
 * stays for a collector's import, this client stops trying it. */
void ml__leftover_give_up(ml_client *c);
/* At the end of the run: everything not acknowledged (queue, CloseRun)
 * goes to the own spool, which is then closed and left for delivery. */
void ml__spool_rest(ml_client *c);

/* autostart.c: when server names this machine and MICROLOG_AUTOSTART is not
 * "0", starts `micrologd --standalone --http HOST:PORT` detached (once per
 * process). True when it started one. Sender thread. */
bool ml__autostart(ml_client *c);
/* True in a process forked after nng was used: nng aborts if used again. */
bool ml__transport_forked(void);
void *ml__sender_main(void *arg);
void ml__sender_init(ml__sender *s);
/* After the sender thread has been joined: frees what it left. */
void ml__sender_close(ml__sender *s);

#endif
