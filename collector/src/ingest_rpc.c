/*
 * Request handling behind the ingest listener: envelope -> method ->
 * store/index -> reply envelope. Runs on the loop thread.
 *
 * Durability: an OpenRun, Batch or CloseRun is acknowledged only after its
 * journal record is fdatasync'd (and, for OpenRun, the directory entries
 * and the index log line that make the run found at start-up): the group
 * commit (commit.c) syncs them on the thread pool before the reply goes.
 * Idempotency: OpenRun by run_uid, Batch by seq, CloseRun by the run's
 * closed flag, so a client may resend anything whose reply it did not get.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "collector.h"
#include "hosted.h"
#include "ingest.h"
#include "json.h"
#include "live.h"
#include "log.h"
#include "mem.h"
#include "validate.h"
#include "wire.h"

#define ST(name) MICROLOG__V1__STATUS__##name

/* The outcome of one call: a status, a reason, and on success a reply
 * message to pack. */
typedef struct rpc_result {
    int32_t status;
    char error[256];
    const ProtobufCMessage *reply;
} rpc_result;

static void set_error(rpc_result *res, int32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(rpc_result *res, int32_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    res->status = status;
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
}

/* A storage failure as a status: a full disk is RESOURCE_EXHAUSTED (the
 * client keeps the batch and retries), anything else INTERNAL. */
static void storage_error(rpc_result *res, const char *what, int err)
{
    set_error(res, err == -ENOSPC || err == -EDQUOT ? ST(RESOURCE_EXHAUSTED) : ST(INTERNAL),
              "%s: %s", what, strerror(-err));
}

/* The team a request acts for: the token's in hosted mode, else the
 * collector's own (standalone). */
static const char *team_of(const ml_collector *c, const ml_principal *who)
{
    return who ? who->team : c->team;
}

static ml_run *run_from_open(const ml_collector *c, const ml_principal *who,
                             const Microlog__V1__OpenRun *o)
{
    ml_run *r = ml_run_from_open(team_of(c, who), o);
    r->last_activity = uv_now(c->loop);
    return r;
}

/* Picks the first free stamp among this collector's candidates (runid.h:
 * timestamp, timestamp-2, ... alone; a residue class of "-N" per collector
 * over one bucket) and creates the run's directory, unsynced
 * (*new_parents: see ml_store_make_run_dir()). */
static int claim_stamp(ml_collector *c, ml_run *r, bool *new_parents)
{
    for (unsigned n = 1;
         ml_stamp_make(r->stamp, sizeof(r->stamp), r->timestamp, c->collector_id, n) == 0; n++) {
        snprintf(r->id, sizeof(r->id), "%s/%s", r->label, r->stamp);
        if (ml_index_find(&c->index, r->id))
            continue;
        int rv = ml_store_make_run_dir(&c->store, r, new_parents);
        if (rv != -EEXIST)
            return rv;
    }
    return -ENOSPC;
}

/* What an OpenRun reply needs durable, handed to the group commit (done
 * now without one): the journal with its OpenRun record, the directory
 * entries that lead to it (the journal and run.json in the run's
 * directory, that one in its label's; the label's and the team's when
 * they are new) and the index log line that lists the run at start-up.
 * run.json itself is not: start-up rebuilds it from the journal. */
static int note_open_durable(ml_collector *c, ml_run *r, bool new_parents)
{
    char *dir = ml_store_run_path(&c->store, r, NULL);
    char *label = ml_xasprintf("%s/%s/%s", c->store.runs_dir, r->team, r->label);
    char *team = ml_xasprintf("%s/%s", c->store.runs_dir, r->team);
    int rv = ml_collector_note_dir(c, dir);
    if (rv == 0)
        rv = ml_collector_note_dir(c, label);
    if (rv == 0 && new_parents && (rv = ml_collector_note_dir(c, team)) == 0)
        rv = ml_collector_note_dir(c, c->store.runs_dir);
    if (rv == 0)
        rv = ml_collector_note_index_log(c);
    if (rv == 0)
        ml_collector_note_unsynced(c, r);
    free(dir);
    free(label);
    free(team);
    return rv;
}

/* Journals the OpenRun (the payload bytes exactly as received) and writes
 * run.json, neither synced (note_open_durable()); on failure removes the
 * directory again. */
static int create_run(ml_collector *c, ml_run *r, bool new_parents, const uint8_t *payload,
                      size_t len)
{
    char *path = ml_store_run_path(&c->store, r, ML_RUN_JOURNAL_FILE);
    int rv = ml_live_create(r, path);
    free(path);
    if (rv == 0)
        rv = ml_journal_append(r->live->journal, ML_JOURNAL_OPEN_RUN, payload, len,
                               !c->group_commit);
    if (rv == 0)
        rv = ml_store_write_meta_unsynced(&c->store, r);
    if (rv == 0) /* last: nothing noted for the group may vanish below */
        rv = note_open_durable(c, r, new_parents);
    if (rv != 0) {
        ml_live_release(r);
        ml_store_delete_run(&c->store, r);
    }
    return rv;
}

/* An OpenRun sent again (its reply was lost, or is not sent yet): the
 * answer is the same, and it too waits until what the first one stored is
 * durable. When a failed sync cut the OpenRun record away (the journal
 * reloaded empty), it is journaled again. A run whose ingest state was
 * released has nothing unsynced. */
static int reopen_run(ml_collector *c, ml_run *r, const uint8_t *payload, size_t len)
{
    r->last_activity = uv_now(c->loop);
    if (r->live == NULL || r->live->journal == NULL)
        return 0;
    int rv = ml_collector_ensure_live(c, r);
    if (rv == 0 && ml_journal_size(r->live->journal) <= ML_JOURNAL_HEADER_SIZE)
        rv = ml_journal_append(r->live->journal, ML_JOURNAL_OPEN_RUN, payload, len,
                               !c->group_commit);
    return rv == 0 ? note_open_durable(c, r, true) : rv;
}

/* The reply messages of one call; run ids are malloc'd. */
typedef struct replies {
    Microlog__V1__OpenRunReply open;
    Microlog__V1__BatchReply batch;
    Microlog__V1__CloseRunReply close;
    char *run_id; /* owned; open.run_id or close.run_id point here */
} replies;

static void open_run(ml_collector *c, const ml_principal *who, const Microlog__V1__OpenRun *o,
                     const uint8_t *payload, size_t len, rpc_result *res, replies *rp)
{
    ml_run *r = ml_index_find_uid(&c->index, o->run_uid);
    if (r != NULL && who != NULL && strcmp(r->team, who->team) != 0) {
        /* Even an admin opens runs for its own team only. */
        set_error(res, ST(ALREADY_EXISTS), "run_uid %s belongs to another team", o->run_uid);
        return;
    }
    if (r != NULL) {
        int rv = reopen_run(c, r, payload, len);
        if (rv != 0) {
            storage_error(res, "cannot store the run", rv);
            return;
        }
    } else {
        r = run_from_open(c, who, o);
        bool new_parents = false;
        int rv = claim_stamp(c, r, &new_parents);
        if (rv == 0)
            rv = create_run(c, r, new_parents, payload, len);
        if (rv == 0 && (rv = ml_index_add(&c->index, r)) != 0)
            ml_store_delete_run(&c->store, r); /* cannot happen: id and uid were free */
        if (rv != 0) {
            storage_error(res, "cannot create the run", rv);
            ml_live_release(r);
            ml_run_free(r);
            return;
        }
        ml_info("run %s opened (uid %s, host %s, pid %d)", r->id, r->uid, r->host, r->pid);
    }
    rp->open.run_id = rp->run_id = ml_xstrdup(r->id);
    rp->open.takes_final_batch = true; /* see handle_close */
    res->reply = &rp->open.base;
}

static void handle_open(ml_collector *c, const ml_principal *who, const uint8_t *payload,
                        size_t len, rpc_result *res, replies *rp)
{
    Microlog__V1__OpenRun *o = microlog__v1__open_run__unpack(NULL, len, payload);
    if (o == NULL)
        set_error(res, ST(INVALID_ARGUMENT), "malformed OpenRun");
    else if (!ml_uid_valid(o->run_uid))
        set_error(res, ST(INVALID_ARGUMENT), "bad run_uid (want [A-Za-z0-9_-]{8,64})");
    else if (!ml_label_valid(o->label))
        set_error(res, ST(INVALID_ARGUMENT), "bad label (want [A-Za-z0-9._-]{1,100})");
    else if (!ml_timestamp_valid(o->timestamp))
        set_error(res, ST(INVALID_ARGUMENT), "bad timestamp (want YYYY_MM_DD_HH_MM_SS)");
    else
        open_run(c, who, o, payload, len, res, rp);
    if (o)
        microlog__v1__open_run__free_unpacked(o, NULL);
}

/* The run a Batch or CloseRun names, with its ingest state loaded. */
static ml_run *find_live(ml_collector *c, const ml_principal *who, const char *uid, rpc_result *res)
{
    ml_run *r = uid ? ml_index_find_uid(&c->index, uid) : NULL;
    /* Another team's run is answered as unknown: a token never learns
     * about runs it may not write to. */
    if (r == NULL || (who != NULL && strcmp(r->team, who->team) != 0)) {
        set_error(res, ST(NOT_FOUND), "unknown run_uid %.64s", uid ? uid : "");
        return NULL;
    }
    int rv = ml_collector_ensure_live(c, r);
    if (rv != 0) {
        storage_error(res, "cannot open the journal", rv);
        return NULL;
    }
    r->last_activity = uv_now(c->loop);
    return r;
}

/* Validates, journals and commits a batch not stored before. sync: make
 * the record durable now (else a later sync covers it before the ack). */
static void store_batch(ml_collector *c, ml_run *r, const Microlog__V1__Batch *b,
                        const uint8_t *payload, size_t len, bool sync, rpc_result *res)
{
    char why[200];
    int rv;
    const ml_limits *lim = c->hosted ? &c->hosted->limits : NULL;
    if (lim && lim->max_run_bytes && r->live->journal &&
        ml_journal_size(r->live->journal) + len > lim->max_run_bytes) {
        /* Permanent for this run (unlike the rate limit, which passes):
         * the client stops sending it. */
        set_error(res, ST(OUT_OF_RANGE),
                  "run %s reached the collector's maximum run size of %llu bytes; the rest of "
                  "the run is not stored",
                  r->id, (unsigned long long)lim->max_run_bytes);
    } else if (r->closed && b->seq > r->last_seq) {
        set_error(res, ST(FAILED_PRECONDITION), "run %s is closed (last seq %llu)", r->id,
                  (unsigned long long)r->last_seq);
    } else if (ml_batch_validate(r->live, b, why, sizeof(why)) != 0) {
        set_error(res, ST(INVALID_ARGUMENT), "batch %llu: %s", (unsigned long long)b->seq, why);
    } else if ((rv = ml_journal_append(r->live->journal, ML_JOURNAL_BATCH, payload, len, sync)) !=
               0) {
        storage_error(res, "cannot store the batch", rv);
    } else {
        /* With group commit the ack waits for ml_collector_commit(). */
        ml_collector_note_unsynced(c, r);
        ml_live_commit_batch(r->live, r, b);
        if (r->status == ML_RUN_INCOMPLETE && !r->closed) {
            ml_info("run %s: the client is back; live again", r->id);
            r->status = ML_RUN_LIVE;
        }
    }
}

static void handle_batch(ml_collector *c, const ml_principal *who, const uint8_t *payload,
                         size_t len, rpc_result *res, replies *rp)
{
    Microlog__V1__Batch *b = microlog__v1__batch__unpack(NULL, len, payload);
    if (b == NULL) {
        set_error(res, ST(INVALID_ARGUMENT), "malformed Batch");
        return;
    }
    ml_run *r = find_live(c, who, b->run_uid, res);
    if (r != NULL) {
        if (b->seq == 0)
            set_error(res, ST(INVALID_ARGUMENT), "batch seq must be at least 1");
        else if (!ml_live_has_seq(r->live, b->seq)) /* a resend is acked, not stored twice */
            store_batch(c, r, b, payload, len, !c->group_commit, res);
        else /* its ack waits for the sync of the first copy when that is still pending */
            ml_collector_note_unsynced(c, r);
        if (res->status == ST(OK)) {
            rp->batch.acked_seq = r->live->acked_seq;
            res->reply = &rp->batch.base;
        }
    }
    microlog__v1__batch__free_unpacked(b, NULL);
}

static void close_run(ml_collector *c, ml_run *r, const Microlog__V1__CloseRun *m,
                      const uint8_t *payload, size_t len, rpc_result *res, replies *rp)
{
    if (!r->closed) {
        int rv = ml_journal_append(r->live->journal, ML_JOURNAL_CLOSE_RUN, payload, len,
                                   !c->group_commit);
        if (rv != 0) {
            storage_error(res, "cannot store CloseRun", rv);
            return;
        }
        ml_live_commit_close(r->live, r, m);
        /* Unsynced: a restart recomputes the status from the journal. */
        ml_store_write_meta_unsynced(&c->store, r);
        ml_info("run %s closed: %s, %llu samples, %llu logs", r->id, ml_run_status_name(r->status),
                (unsigned long long)r->samples, (unsigned long long)r->logs);
    }
    /* The reply waits for the journal's sync (a resend's too: the first
     * copy's sync may still be in flight). */
    ml_collector_note_unsynced(c, r);
    rp->close.run_id = rp->run_id = ml_xstrdup(r->id);
    rp->close.complete = r->status == ML_RUN_COMPLETE;
    res->reply = &rp->close.base;
    /* A complete run takes no more writes: free its ingest state now. */
    if (r->status == ML_RUN_COMPLETE)
        ml_live_release(r);
}

/* Charges len bytes of batch data to who's ingest rate (hosted mode);
 * true, with RESOURCE_EXHAUSTED (retryable) in res, when over it. */
static bool rate_refused(ml_collector *c, const ml_principal *who, size_t len, rpc_result *res)
{
    ml_hosted *h = c->hosted;
    uint64_t retry_ms;
    if (h == NULL ||
        ml_rate_take(&h->rate, &h->limits, who ? who->token : "", len, uv_now(c->loop), &retry_ms))
        return false;
    set_error(res, ST(RESOURCE_EXHAUSTED),
              "ingest rate limit of %llu bytes/s for this token exceeded; retry in %llu ms",
              (unsigned long long)h->limits.rate_bytes, (unsigned long long)retry_ms);
    return true;
}

/* Serializes msg into a malloc'd buffer. */
static uint8_t *pack_message(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = ml_xmalloc(*len ? *len : 1);
    protobuf_c_message_pack(msg, buf);
    return buf;
}

/* CloseRun.final_batch: the batch as a Batch request would store it (its
 * own journal record, re-serialized), then the close without it. Neither
 * record is synced by itself: the group commit's sync of the file makes
 * both durable before the one reply. A refused batch leaves the run open
 * and its status is the reply's. */
static void close_with_batch(ml_collector *c, const ml_principal *who, ml_run *r,
                             Microlog__V1__CloseRun *m, rpc_result *res, replies *rp)
{
    Microlog__V1__Batch *b = m->final_batch;
    if (b->run_uid == NULL || strcmp(b->run_uid, m->run_uid) != 0) {
        set_error(res, ST(INVALID_ARGUMENT), "final_batch names another run than CloseRun");
        return;
    }
    if (b->seq == 0 || b->seq != m->last_seq) {
        set_error(res, ST(INVALID_ARGUMENT), "final_batch seq %llu is not last_seq %llu",
                  (unsigned long long)b->seq, (unsigned long long)m->last_seq);
        return;
    }
    if (!ml_live_has_seq(r->live, b->seq)) {
        size_t blen;
        uint8_t *bytes = pack_message(&b->base, &blen);
        if (!rate_refused(c, who, blen, res)) /* as admit() charges a Batch */
            store_batch(c, r, b, bytes, blen, false, res);
        free(bytes);
        if (res->status != ST(OK))
            return;
    }
    m->final_batch = NULL; /* the journal's CloseRun record is a plain one */
    size_t clen;
    uint8_t *bytes = pack_message(&m->base, &clen);
    close_run(c, r, m, bytes, clen, res, rp);
    free(bytes);
    m->final_batch = b; /* freed with m */
}

static void handle_close(ml_collector *c, const ml_principal *who, const uint8_t *payload,
                         size_t len, rpc_result *res, replies *rp)
{
    Microlog__V1__CloseRun *m = microlog__v1__close_run__unpack(NULL, len, payload);
    if (m == NULL) {
        set_error(res, ST(INVALID_ARGUMENT), "malformed CloseRun");
        return;
    }
    ml_run *r = find_live(c, who, m->run_uid, res);
    if (r != NULL && m->final_batch != NULL)
        close_with_batch(c, who, r, m, res, rp);
    else if (r != NULL)
        close_run(c, r, m, payload, len, res, rp);
    microlog__v1__close_run__free_unpacked(m, NULL);
}

/* Hosted mode: the token of the envelope, and the limits that do not need
 * the run. Returns false with res set when the request is refused; *who is
 * the principal (NULL in standalone mode). */
static bool admit(ml_collector *c, const ml_wire_msg *msg, size_t len, const ml_principal **who,
                  rpc_result *res)
{
    ml_hosted *h = c->hosted;
    *who = NULL;
    if (h == NULL)
        return true;
    if (h->has_tokens) {
        const char *tok = msg->env->token ? msg->env->token : "";
        if ((*who = ml_auth_find(&h->auth, tok, strlen(tok))) == NULL) {
            set_error(res, ST(UNAUTHENTICATED),
                      tok[0] ? "invalid or revoked token: check MICROLOG_TOKEN"
                             : "this collector needs a token: set MICROLOG_TOKEN");
            return false;
        }
        if ((*who)->role == ML_ROLE_READ) {
            set_error(res, ST(PERMISSION_DENIED),
                      "the token of %s (team %s) is read-only: it cannot send runs", (*who)->user,
                      (*who)->team);
            return false;
        }
    }
    if (h->limits.max_message_bytes && len > h->limits.max_message_bytes) {
        set_error(res, ST(RESOURCE_EXHAUSTED),
                  "a message of %zu bytes is over the collector's limit of %u bytes", len,
                  h->limits.max_message_bytes);
        return false;
    }
    return strcmp(msg->env->method, ML_METHOD_BATCH) != 0 || !rate_refused(c, *who, len, res);
}

static void dispatch(ml_collector *c, const ml_wire_msg *msg, size_t len, rpc_result *res,
                     replies *rp)
{
    const char *method = msg->env->method;
    const ml_principal *who;
    if (!admit(c, msg, len, &who, res))
        return;
    if (strcmp(method, ML_METHOD_OPEN_RUN) == 0)
        handle_open(c, who, msg->payload, msg->payload_len, res, rp);
    else if (strcmp(method, ML_METHOD_BATCH) == 0)
        handle_batch(c, who, msg->payload, msg->payload_len, res, rp);
    else if (strcmp(method, ML_METHOD_CLOSE_RUN) == 0)
        handle_close(c, who, msg->payload, msg->payload_len, res, rp);
    else
        set_error(res, ST(UNIMPLEMENTED), "unknown method \"%.100s\"", method);
}

/* Packs the reply; falls back to a bare INTERNAL error if that fails. */
static void pack_reply(const char *method, uint64_t call_id, const rpc_result *res, uint8_t **reply,
                       size_t *reply_len)
{
    bool ok = res->status == ST(OK);
    int rv = ml_wire_pack(method, call_id, res->status, ok ? NULL : res->error, NULL,
                          ok ? res->reply : NULL, reply, reply_len);
    if (rv != 0) {
        ml_error("ingest: cannot pack a reply: %s", ml_wire_strerror(rv));
        rv = ml_wire_pack(method, call_id, ST(INTERNAL), "cannot pack the reply", NULL, NULL, reply,
                          reply_len);
        if (rv != 0)
            ml_oom(0);
    }
}

void ml_ingest_handle(void *collector, const uint8_t *req, size_t len, uint8_t **reply,
                      size_t *reply_len)
{
    ml_collector *c = collector;
    ml_wire_msg msg = {0};
    rpc_result res = {.status = ST(OK)};
    replies rp = {MICROLOG__V1__OPEN_RUN_REPLY__INIT, MICROLOG__V1__BATCH_REPLY__INIT,
                  MICROLOG__V1__CLOSE_RUN_REPLY__INIT, NULL};
    const char *method = "";
    uint64_t call_id = 0;
    int rv = ml_wire_unpack(req, len, &msg);
    if (msg.env) {
        method = msg.env->method ? msg.env->method : "";
        call_id = msg.env->call_id;
    }
    if (rv == -EPROTO)
        set_error(&res, ST(FAILED_PRECONDITION), "unsupported protocol version %u (want %d)",
                  msg.env->version, ML_WIRE_VERSION);
    else if (rv != 0)
        set_error(&res, rv == -ENOMEM ? ST(RESOURCE_EXHAUSTED) : ST(INVALID_ARGUMENT), "%s",
                  ml_wire_strerror(rv));
    else
        dispatch(c, &msg, len, &res, &rp);
    if (res.status != ST(OK))
        ml_warn("ingest: %.100s call %llu refused (status %d): %s", method[0] ? method : "?",
                (unsigned long long)call_id, res.status, res.error);
    else
        ml_debug("ingest: %s call %llu ok", method, (unsigned long long)call_id);
    pack_reply(method, call_id, &res, reply, reply_len);
    free(rp.run_id);
    ml_wire_msg_free(&msg);
}
