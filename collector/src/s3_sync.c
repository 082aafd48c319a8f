#include "s3_sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collector.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "s3.h"

/* Upload retry backoff: 1 s doubling up to a minute. */
#define BACKOFF_MS 1000
#define BACKOFF_MAX_MS 60000
/* Uploads in flight at once: a backlog (S3 was down, or a first start
 * with many runs) must not read every recording into memory at once. */
#define UPLOADS_MAX 4

static char *run_key(ml_collector *c, const char *team, const char *id, const char *file)
{
    char *name = ml_xasprintf("runs/%s/%s/%s", team, id, file);
    char *key = ml_s3_key(c->s3, name);
    free(name);
    return key;
}

/* The run by id if it is still the one with this uid. */
static ml_run *find_same(ml_collector *c, const char *id, const char *uid)
{
    ml_run *r = ml_index_find(&c->index, id);
    return r && strcmp(r->uid ? r->uid : "", uid) == 0 ? r : NULL;
}

/* ---- upload ---- */

typedef struct upload {
    ml_collector *c;
    char id[ML_RUN_ID_MAX + 1];
    char *uid;
    bool meta_sent;
} upload;

static void drain_check(ml_collector *c);

static void upload_end(upload *u, int rv)
{
    ml_collector *c = u->c;
    c->s3_uploads--;
    drain_check(c);
    ml_run *r = find_same(c, u->id, u->uid);
    if (r && rv != -ECANCELED) {
        r->uploading = false;
        if (rv == 0) {
            r->uploaded = true;
            r->s3_failures = 0;
            r->s3_round = c->s3_round;
            r->dirty = true;
            ml_store_write_meta(&c->store, r);
            ml_info("run %s uploaded to S3", r->id);
        } else {
            uint64_t wait = (uint64_t)BACKOFF_MS << (r->s3_failures < 6 ? r->s3_failures : 6);
            r->s3_failures++;
            r->s3_next_try = uv_now(c->loop) + (wait > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : wait);
            ml_warn("run %s: upload failed (%s); retry in %llu ms", r->id, strerror(-rv),
                    (unsigned long long)(r->s3_next_try - uv_now(c->loop)));
        }
    } else if (r) {
        r->uploading = false;
    }
    free(u->uid);
    free(u);
}

static void upload_step(void *arg, int rv, const char *body, size_t len)
{
    (void)body;
    (void)len;
    upload *u = arg;
    ml_collector *c = u->c;
    ml_run *r = find_same(c, u->id, u->uid);
    if (rv != 0 || u->meta_sent || r == NULL || (c->closing && !c->s3_draining)) {
        upload_end(u, r == NULL && rv == 0 ? -ECANCELED : rv);
        return;
    }
    /* The recording is up: now run.json, which makes the run listable. */
    u->meta_sent = true;
    bool was = r->uploaded;
    r->uploaded = true;
    json_t *j = ml_run_to_json(r);
    r->uploaded = was;
    size_t n;
    char *text = ml_json_dump(j, &n);
    json_decref(j);
    char *key = run_key(c, r->team, r->id, ML_RUN_META_FILE);
    rv = ml_s3_put(c->s3, key, text, n, upload_step, u);
    free(key);
    free(text);
    if (rv != 0)
        upload_end(u, rv);
}

void ml_s3sync_upload(ml_collector *c, ml_run *r)
{
    if (c->s3 == NULL || c->closing || !r->recorded || r->remote || r->uploaded || r->uploading ||
        uv_now(c->loop) < r->s3_next_try || c->s3_uploads >= UPLOADS_MAX)
        return; /* housekeeping tries again */
    c->s3_uploads++;
    upload *u = ml_xcalloc(1, sizeof(*u));
    u->c = c;
    snprintf(u->id, sizeof(u->id), "%s", r->id);
    u->uid = ml_xstrdup(r->uid ? r->uid : "");
    char *path = ml_store_run_path(&c->store, r, ML_RUN_RECORDING_FILE);
    char *key = run_key(c, r->team, r->id, ML_RUN_RECORDING_FILE);
    r->uploading = true;
    ml_debug("run %s: uploading %s", r->id, key); /* bench_s3.py times from here */
    int rv = ml_s3_put_file(c->s3, key, path, upload_step, u);
    free(path);
    free(key);
    if (rv != 0)
        upload_end(u, rv);
}

/* ---- delete ---- */

/* Keys to delete survive restarts: the list of keys not yet deleted is
 * kept in <data>/PENDING_DELETES (one key a line), rewritten atomically
 * whenever it changes, and loaded again by ml_s3sync_start(). A key is
 * taken off only after S3 answered its DELETE, so a collector stopped (or
 * killed) while S3 was unreachable deletes the objects after its restart.
 * While a run.json key is pending, listings do not bring the run back. */
#define PENDING_DELETES "s3-pending-deletes"
/* Largest pending-deletes file read back (a key is at most ~1 KiB). */
#define PENDING_DELETES_MAX (64u << 20)

typedef struct pending_delete {
    char *key; /* "" once deleted: freed by the next housekeeping pass */
    bool in_flight;
    struct pending_delete *next;
} pending_delete;

/* Rewrites the pending-deletes file from the list (removes it when the
 * list is empty). A failure is logged: the deletes still go on in this
 * process, only their survival across a restart is lost. */
static void pending_save(ml_collector *c)
{
    char *path = ml_xasprintf("%s/%s", c->store.data_dir, PENDING_DELETES);
    size_t n = 0, cap = 0;
    char *text = NULL;
    for (pending_delete *p = c->s3_deletes; p; p = p->next) {
        size_t k = strlen(p->key);
        if (k == 0)
            continue;
        ml_xgrow((void **)&text, &cap, n + k + 1, 1);
        memcpy(text + n, p->key, k);
        text[n + k] = '\n';
        n += k + 1;
    }
    int rv = 0;
    if (n > 0)
        rv = ml_write_file_atomic(path, text, n);
    else if (unlink(path) != 0 && errno != ENOENT)
        rv = -errno;
    if (rv != 0)
        ml_error("s3: cannot save the pending deletes in %s: %s", path, strerror(-rv));
    free(text);
    free(path);
}

static void pending_add(ml_collector *c, char *key)
{
    pending_delete **tail = &c->s3_deletes;
    while (*tail)
        tail = &(*tail)->next;
    pending_delete *p = ml_xcalloc(1, sizeof(*p));
    p->key = key;
    *tail = p;
}

static bool pending_has(ml_collector *c, const char *key)
{
    for (pending_delete *p = c->s3_deletes; p; p = p->next)
        if (strcmp(p->key, key) == 0)
            return true;
    return false;
}

/* Loads the deletes a previous process could not finish; lines that are
 * not keys under our prefix are ignored (with a warning). */
static void pending_load(ml_collector *c)
{
    char *path = ml_xasprintf("%s/%s", c->store.data_dir, PENDING_DELETES);
    char *text;
    size_t len;
    int rv = ml_read_file(path, PENDING_DELETES_MAX, &text, &len);
    if (rv != 0) {
        if (rv != -ENOENT)
            ml_error("s3: cannot read %s: %s", path, strerror(-rv));
        free(path);
        return;
    }
    char *base = ml_s3_key(c->s3, "runs/");
    size_t bl = strlen(base), count = 0;
    for (char *line = text, *end; line < text + len; line = end + 1) {
        end = memchr(line, '\n', (size_t)(text + len - line));
        if (end == NULL)
            end = text + len; /* a torn last line is still a whole key or garbage */
        *end = '\0';
        if (strncmp(line, base, bl) != 0 || strstr(line, "/../") || strchr(line, '\r')) {
            if (*line)
                ml_warn("s3: %s: ignoring \"%.100s\"", path, line);
            continue;
        }
        if (!pending_has(c, line)) {
            pending_add(c, ml_xstrdup(line));
            count++;
        }
    }
    if (count)
        ml_info("s3: %zu deletes left by the previous run; retrying them", count);
    free(base);
    free(text);
    free(path);
}

static void delete_done(void *arg, int rv, const char *body, size_t len)
{
    (void)body;
    (void)len;
    pending_delete *p = arg;
    p->in_flight = false;
    if (rv == -ECANCELED)
        return;
    if (rv == 0) {
        p->key[0] = '\0'; /* done: freed (and the list saved) by the next housekeeping */
    } else {
        ml_warn("s3: cannot delete %s (%s); will retry", p->key, strerror(-rv));
    }
}

static void delete_send(ml_collector *c, pending_delete *p)
{
    if (p->in_flight || p->key[0] == '\0')
        return;
    p->in_flight = ml_s3_delete(c->s3, p->key, delete_done, p) == 0;
}

void ml_s3sync_delete(ml_collector *c, const ml_run *r)
{
    if (c->s3 == NULL)
        return;
    /* run.json first: once it is gone no collector lists the run. */
    const char *files[] = {ML_RUN_META_FILE, ML_RUN_RECORDING_FILE};
    for (int i = 0; i < 2; i++) {
        char *key = run_key(c, r->team, r->id, files[i]);
        if (pending_has(c, key))
            free(key);
        else
            pending_add(c, key);
    }
    /* Durable before any DELETE is sent: a crash from here on retries. */
    pending_save(c);
    for (pending_delete *p = c->s3_deletes; p; p = p->next)
        delete_send(c, p);
}

/* ---- listing ---- */

typedef struct meta_get {
    ml_collector *c;
    char team[ML_LABEL_MAX + 1], label[ML_LABEL_MAX + 1], stamp[ML_STAMP_MAX + 1];
    uint32_t round;
} meta_get;

static void meta_got(void *arg, int rv, const char *body, size_t len)
{
    meta_get *g = arg;
    ml_collector *c = g->c;
    char id[ML_RUN_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s/%s", g->label, g->stamp);
    ml_run *r = NULL;
    json_error_t err;
    json_t *j = rv == 0 ? json_loadb(body, len, 0, &err) : NULL;
    if (rv == 0 && !c->closing && ml_index_find(&c->index, id) == NULL && j &&
        ml_run_from_json(j, &r) == 0) {
        if (strcmp(r->team, g->team) || strcmp(r->label, g->label) || strcmp(r->stamp, g->stamp)) {
            ml_warn("s3: run.json of %s/%s names another run; skipped", g->team, id);
        } else {
            r->remote = true;
            r->recorded = true;
            r->uploaded = true;
            r->stored_bytes = 0; /* nothing cached yet */
            r->s3_round = g->round;
            r->last_activity = uv_now(c->loop);
            int e = ml_store_create_run_dir(&c->store, r);
            if ((e == 0 || e == -EEXIST) && ml_index_add(&c->index, r) == 0) {
                ml_store_write_meta(&c->store, r);
                ml_info("run %s listed from S3", r->id);
                r = NULL;
            } else {
                ml_warn("s3: cannot index remote run %s", id);
            }
        }
    }
    ml_run_free(r);
    json_decref(j);
    free(g);
}

/* "runs/<team>/<label>/<stamp>/run.json" under the prefix: the names, or
 * -EINVAL. */
static int parse_meta_key(ml_collector *c, const char *key, meta_get *g)
{
    char *base = ml_s3_key(c->s3, "runs/");
    size_t bl = strlen(base);
    int ok = strncmp(key, base, bl) == 0;
    free(base);
    if (!ok)
        return -EINVAL;
    const char *p = key + bl;
    const char *s1 = strchr(p, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL,
               *s3 = s2 ? strchr(s2 + 1, '/') : NULL;
    if (s3 == NULL || strcmp(s3 + 1, ML_RUN_META_FILE) != 0 || (size_t)(s1 - p) > ML_LABEL_MAX ||
        (size_t)(s2 - s1 - 1) > ML_LABEL_MAX || (size_t)(s3 - s2 - 1) > ML_STAMP_MAX)
        return -EINVAL;
    snprintf(g->team, sizeof(g->team), "%.*s", (int)(s1 - p), p);
    snprintf(g->label, sizeof(g->label), "%.*s", (int)(s2 - s1 - 1), s1 + 1);
    snprintf(g->stamp, sizeof(g->stamp), "%.*s", (int)(s3 - s2 - 1), s2 + 1);
    return ml_label_valid(g->team) && ml_label_valid(g->label) && ml_stamp_valid(g->stamp)
               ? 0
               : -EINVAL;
}

static void delete_local(ml_collector *c, ml_run *r)
{
    ml_info("run %s is gone from S3; removed here too", r->id);
    ml_collector_delete_run_local(c, r);
}

static void listed(void *arg, int rv, char **keys, size_t n)
{
    ml_collector *c = arg;
    c->s3_listing = false;
    if (rv != 0 || c->closing) {
        if (rv != -ECANCELED)
            ml_warn("s3: listing the bucket failed: %s", strerror(-rv));
        return;
    }
    uint32_t round = c->s3_round;
    ml_map seen;
    ml_map_init(&seen);
    char **ids = ml_xcalloc(n + 1, sizeof(char *));
    size_t nids = 0;
    for (size_t i = 0; i < n; i++) {
        meta_get g = {0};
        /* Every team's runs: in hosted mode one collector serves them all. */
        if (parse_meta_key(c, keys[i], &g) != 0 || pending_has(c, keys[i]))
            continue;
        ids[nids] = ml_xasprintf("%s/%s", g.label, g.stamp);
        ml_map_put(&seen, ids[nids], ids[nids]);
        nids++;
        if (ml_index_find(&c->index, ids[nids - 1]) == NULL) {
            meta_get *m = ml_xmalloc(sizeof(*m));
            *m = g;
            m->c = c;
            m->round = round;
            char *key = ml_xstrdup(keys[i]);
            if (ml_s3_get(c->s3, key, meta_got, m) != 0)
                free(m);
            free(key);
        }
    }
    /* Runs known to be in the bucket before this listing began that it no
     * longer holds were deleted by another collector. */
    ml_run **gone = NULL;
    size_t ngone = 0, cap = 0;
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(&c->index.by_id, pos, &v)) != 0;) {
        ml_run *r = v;
        if ((r->remote || r->uploaded) && !r->uploading && r->s3_round < round &&
            ml_map_get(&seen, r->id) == NULL) {
            ml_xgrow((void **)&gone, &cap, ngone + 1, sizeof(ml_run *));
            gone[ngone++] = r;
        }
    }
    for (size_t i = 0; i < ngone; i++)
        delete_local(c, gone[i]);
    free(gone);
    for (size_t i = 0; i < nids; i++)
        free(ids[i]);
    free(ids);
    ml_map_dispose(&seen);
}

static void list_now(ml_collector *c)
{
    if (c->s3_listing || c->closing)
        return;
    char *prefix = ml_s3_key(c->s3, "runs/");
    c->s3_round++;
    c->s3_listing = ml_s3_list(c->s3, prefix, listed, c) == 0;
    free(prefix);
}

static void on_list_timer(uv_timer_t *t)
{
    list_now(t->data);
}

void ml_s3sync_start(ml_collector *c)
{
    uv_timer_init(c->loop, &c->s3_timer);
    c->s3_timer.data = c;
    uv_timer_init(c->loop, &c->drain_timer);
    c->drain_timer.data = c;
    c->s3_round = 1; /* runs loaded from disk are round 0: older than any listing */
    pending_load(c);
    uv_timer_start(&c->s3_timer, on_list_timer, 0, c->s3_list_ms);
}

/* ---- fetch ---- */

typedef struct fetch_waiter {
    void (*done)(void *arg, int rv);
    void *arg;
    struct fetch_waiter *next;
} fetch_waiter;

typedef struct ml_s3_fetch {
    ml_collector *c;
    char id[ML_RUN_ID_MAX + 1];
    char *uid;
    char *path;
    fetch_waiter *waiters;
    struct ml_s3_fetch *next;
} ml_s3_fetch;

bool ml_s3sync_needs_fetch(ml_collector *c, const ml_run *r)
{
    if (c->s3 == NULL || !r->remote)
        return false;
    char *path = ml_store_run_path(&c->store, r, ML_RUN_RECORDING_FILE);
    bool missing = access(path, F_OK) != 0;
    free(path);
    return missing;
}

static void fetched(void *arg, int rv, const char *body, size_t len)
{
    ml_s3_fetch *f = arg;
    ml_collector *c = f->c;
    for (ml_s3_fetch **pp = &c->s3_fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    ml_run *r = find_same(c, f->id, f->uid);
    if (rv == 0 && r == NULL)
        rv = -ENOENT;
    if (rv == 0 && (rv = ml_write_file_atomic(f->path, body, len)) == 0) {
        r->stored_bytes = len;
        r->dirty = true;
        ml_info("run %s: recording fetched from S3 (%zu bytes)", r->id, len);
    }
    if (r)
        r->fetching = false;
    for (fetch_waiter *w = f->waiters, *next; w; w = next) {
        next = w->next;
        w->done(w->arg, rv);
        free(w);
    }
    free(f->uid);
    free(f->path);
    free(f);
}

int ml_s3sync_fetch(ml_collector *c, ml_run *r, void (*done)(void *arg, int rv), void *arg)
{
    if (c->s3 == NULL || c->closing)
        return -ECANCELED;
    ml_s3_fetch *f = c->s3_fetches;
    while (f && strcmp(f->id, r->id) != 0)
        f = f->next;
    if (f == NULL) {
        f = ml_xcalloc(1, sizeof(*f));
        f->c = c;
        snprintf(f->id, sizeof(f->id), "%s", r->id);
        f->uid = ml_xstrdup(r->uid ? r->uid : "");
        f->path = ml_store_run_path(&c->store, r, ML_RUN_RECORDING_FILE);
        char *key = run_key(c, r->team, r->id, ML_RUN_RECORDING_FILE);
        int rv = ml_s3_get(c->s3, key, fetched, f);
        free(key);
        if (rv != 0) {
            free(f->uid);
            free(f->path);
            free(f);
            return rv;
        }
        f->next = c->s3_fetches;
        c->s3_fetches = f;
        r->fetching = true;
    }
    fetch_waiter *w = ml_xcalloc(1, sizeof(*w));
    w->done = done;
    w->arg = arg;
    w->next = f->waiters;
    f->waiters = w;
    return 0;
}

/* ---- housekeeping, close ---- */

size_t ml_s3sync_pending_deletes(const ml_collector *c)
{
    size_t n = 0;
    for (const pending_delete *p = c->s3_deletes; p; p = p->next)
        n += p->key[0] != '\0';
    return n;
}

void ml_s3sync_housekeeping(ml_collector *c)
{
    if (c->s3 == NULL)
        return;
    bool changed = false;
    for (pending_delete **pp = &c->s3_deletes; *pp;) {
        pending_delete *p = *pp;
        if (p->key[0] == '\0') { /* deleted: its request has finished */
            *pp = p->next;
            free(p->key);
            free(p);
            changed = true;
            continue;
        }
        delete_send(c, p);
        pp = &p->next;
    }
    if (changed)
        pending_save(c);
}

static void on_s3_closed(void *arg)
{
    ml_collector_release_pending(arg);
}

static void on_s3_timer_closed(uv_handle_t *h)
{
    ml_collector_release_pending(h->data);
}

/* ---- shutdown drain ---- */

static void on_drain_closed(uv_handle_t *h)
{
    ml_collector_release_pending(h->data);
}

/* The drain is over (uploads done, or the deadline): cancel the rest. */
static void on_drain_end(uv_timer_t *t)
{
    ml_collector *c = t->data;
    if (!c->s3_draining)
        return;
    c->s3_draining = false;
    if (c->s3_uploads > 0)
        ml_warn("s3: %d upload(s) still in flight after %u ms; aborting them (those runs are "
                "uploaded at the next start)",
                c->s3_uploads, c->drain_ms);
    ml_s3sync_close(c);
    uv_close((uv_handle_t *)&c->drain_timer, on_drain_closed);
}

/* Called as uploads end: the last one ends the drain, on the next loop
 * turn (not from within the S3 client's completion). */
static void drain_check(ml_collector *c)
{
    if (c->s3_draining && c->s3_uploads == 0)
        uv_timer_start(&c->drain_timer, on_drain_end, 0, 0);
}

void ml_s3sync_drain(ml_collector *c)
{
    if (c->s3 == NULL)
        return;
    c->close_pending++; /* released when the drain timer is closed */
    c->s3_draining = true;
    if (c->s3_uploads == 0 || c->drain_ms == UINT32_MAX) {
        on_drain_end(&c->drain_timer);
        return;
    }
    ml_info("s3: waiting up to %u ms for %d upload(s) in flight", c->drain_ms, c->s3_uploads);
    uv_timer_start(&c->drain_timer, on_drain_end, c->drain_ms, 0);
}

void ml_s3sync_close(ml_collector *c)
{
    if (c->s3 == NULL)
        return;
    c->close_pending += 2;
    uv_timer_stop(&c->s3_timer);
    uv_close((uv_handle_t *)&c->s3_timer, on_s3_timer_closed);
    ml_s3 *s3 = c->s3;
    ml_s3_close(s3, on_s3_closed, c); /* runs every callback with -ECANCELED */
    c->s3 = NULL;
    pending_save(c); /* the ones done since the last housekeeping drop out */
    for (pending_delete *p = c->s3_deletes, *next; p; p = next) {
        next = p->next;
        if (p->key[0])
            ml_warn("s3: %s not deleted before shutdown; retried after the restart", p->key);
        free(p->key);
        free(p);
    }
    c->s3_deletes = NULL;
}
