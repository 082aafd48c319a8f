#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "journal.h"
#include "recording.h"
#include "microlog.pb-c.h"
#include "json.h"
#include "log.h"
#include "map.h"
#include "mem.h"

#define LOG_HEADER "{\"microlog_index\":1}\n"
/* The log is read whole; a bigger one is rebuilt from the runs. */
#define LOG_MAX ((size_t)4 << 30)

static char *log_path(const ml_store *s)
{
    return ml_xasprintf("%s/%s", s->data_dir, ML_INDEX_LOG_FILE);
}

/* Stops logging and removes the log: it may now be behind the run.json
 * files, so the next start-up must rebuild it from them. */
static void log_abandon(ml_store *s, int err)
{
    char *path = log_path(s);
    ml_error("store: cannot append to %s (%s); it is dropped and rebuilt at the next start", path,
             strerror(-err));
    if (s->log_fd >= 0)
        close(s->log_fd);
    s->log_fd = -1;
    unlink(path);
    free(path);
}

/* Appends one line; sync: fdatasync it (and every unsynced line before
 * it) before returning. */
static void log_append(ml_store *s, const char *line, size_t len, bool sync)
{
    if (s->log_fd < 0)
        return;
    int rv = ml_write_all(s->log_fd, line, len);
    if (rv == 0 && sync && fdatasync(s->log_fd) != 0)
        rv = -errno;
    if (rv != 0) {
        log_abandon(s, rv);
        return;
    }
    s->log_lines++;
    s->log_unsynced = !sync;
}

int ml_store_log_sync_begin(ml_store *s)
{
    if (s->log_fd < 0 || !s->log_unsynced)
        return -1;
    int fd = fcntl(s->log_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        ml_error("store: cannot duplicate the index log fd: %s; syncing it on the loop",
                 strerror(errno));
    if (fd < 0 && ml_store_log_sync(s) == 0)
        return -1;
    s->log_unsynced = false;
    return fd; /* a failed dup that also failed to sync: the log is gone, -1 */
}

void ml_store_log_sync_failed(ml_store *s, int err)
{
    if (s->log_fd >= 0)
        log_abandon(s, err);
}

int ml_store_log_sync(ml_store *s)
{
    if (s->log_fd < 0 || !s->log_unsynced)
        return 0;
    if (fdatasync(s->log_fd) != 0) {
        int rv = -errno;
        log_abandon(s, rv);
        return rv;
    }
    s->log_unsynced = false;
    return 0;
}

/* {"put": run}\n, malloc'd. */
static char *put_line(const ml_run *r, size_t *len)
{
    json_t *o = json_object();
    ml_json_set(o, "put", ml_run_to_json(r));
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (text == NULL)
        ml_oom(0);
    char *line = ml_xasprintf("%s\n", text);
    free(text);
    *len = strlen(line);
    return line;
}

int ml_store_log_open(ml_store *s)
{
    if (s->log_fd >= 0)
        return 0;
    char *path = log_path(s);
    s->log_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    int rv = s->log_fd < 0 ? -errno : 0;
    free(path);
    return rv;
}

int ml_store_log_rewrite(ml_store *s, ml_run *const *runs, size_t n)
{
    if (s->log_fd >= 0)
        close(s->log_fd);
    s->log_fd = -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = ml_xmalloc(cap);
    memcpy(buf, LOG_HEADER, sizeof(LOG_HEADER) - 1);
    len = sizeof(LOG_HEADER) - 1;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        char *line = put_line(runs[i], &l);
        ml_xgrow((void **)&buf, &cap, len + l, 1);
        memcpy(buf + len, line, l);
        len += l;
        free(line);
    }
    char *path = log_path(s);
    int rv = ml_write_file_atomic(path, buf, len);
    free(buf);
    free(path);
    if (rv == 0) {
        s->log_lines = n + 1;
        rv = ml_store_log_open(s);
    }
    if (rv != 0)
        ml_error("store: cannot write the index log: %s", strerror(-rv));
    return rv;
}

typedef struct log_entry {
    char key[ML_LABEL_MAX + ML_RUN_ID_MAX + 2]; /* team/label/stamp */
    ml_run *run;
} log_entry;

/* Applies one parsed line to the map of entries. Returns 0 or -EBADMSG. */
static int log_apply(ml_map *m, json_t *line)
{
    json_t *put = json_object_get(line, "put");
    const char *del = json_string_value(json_object_get(line, "del"));
    if (put) {
        ml_run *r;
        if (ml_run_from_json(put, &r) != 0)
            return -EBADMSG;
        char key[sizeof(((log_entry *)0)->key)];
        snprintf(key, sizeof(key), "%s/%s", r->team, r->id);
        log_entry *e = ml_map_get(m, key);
        if (e == NULL) {
            e = ml_xcalloc(1, sizeof(*e));
            memcpy(e->key, key, sizeof(key));
            ml_map_put(m, e->key, e);
        }
        ml_run_free(e->run);
        e->run = r;
        return 0;
    }
    if (del) {
        log_entry *e = ml_map_remove(m, del);
        if (e) {
            ml_run_free(e->run);
            free(e);
        }
        return 0;
    }
    return json_object_get(line, "microlog_index") ? 0 : -EBADMSG;
}

static void log_entries_free(ml_map *m)
{
    void *v;
    for (size_t pos = 0; (pos = ml_map_next(m, pos, &v)) != 0;) {
        log_entry *e = v;
        ml_run_free(e->run);
        free(e);
    }
    ml_map_dispose(m);
}

int ml_store_log_read(ml_store *s, ml_store_scan_cb cb, void *arg)
{
    char *path = log_path(s);
    char *text;
    size_t len;
    int rv = ml_read_file(path, LOG_MAX, &text, &len);
    if (rv != 0) {
        free(path);
        return rv == -ENOENT ? rv : -EBADMSG;
    }
    ml_map m;
    ml_map_init(&m);
    size_t pos = 0, lines = 0, good_end = 0;
    rv = 0;
    if (len < sizeof(LOG_HEADER) - 1 || memcmp(text, LOG_HEADER, sizeof(LOG_HEADER) - 1) != 0)
        rv = -EBADMSG;
    while (rv == 0 && pos < len) {
        char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        json_error_t err;
        json_t *j = nl ? json_loadb(text + pos, end - pos, 0, &err) : NULL;
        if (j == NULL || log_apply(&m, j) != 0) {
            /* Only the last line may be torn by a crash mid-append. */
            if (nl == NULL || memchr(nl + 1, '\n', len - end - 1) == NULL)
                ml_warn("store: %s ends in a torn line; cut", path);
            else
                rv = -EBADMSG;
            json_decref(j);
            break;
        }
        json_decref(j);
        lines++;
        pos = good_end = end + 1;
    }
    free(text);
    if (rv == 0 && good_end < len && truncate(path, (off_t)good_end) != 0)
        rv = -EBADMSG;
    if (rv != 0) {
        ml_warn("store: %s is corrupt; rebuilding it from the runs", path);
        log_entries_free(&m);
        free(path);
        return rv;
    }
    free(path);
    int n = 0;
    void *v;
    for (size_t it = 0; (it = ml_map_next(&m, it, &v)) != 0;) {
        log_entry *e = v;
        cb(arg, e->run);
        e->run = NULL;
        n++;
    }
    log_entries_free(&m);
    s->log_lines = lines;
    return n;
}

int ml_store_init(ml_store *s, const char *data_dir)
{
    memset(s, 0, sizeof(*s));
    char *runs = ml_xasprintf("%s/runs", data_dir);
    int rv = ml_mkdirs(runs);
    if (rv != 0) {
        free(runs);
        return rv;
    }
    s->data_dir = ml_xstrdup(data_dir);
    s->runs_dir = runs;
    s->log_fd = -1;
    return 0;
}

void ml_store_dispose(ml_store *s)
{
    if (s->log_fd >= 0)
        close(s->log_fd);
    free(s->data_dir);
    free(s->runs_dir);
    memset(s, 0, sizeof(*s));
}

char *ml_store_run_path(const ml_store *s, const ml_run *r, const char *name)
{
    if (name)
        return ml_xasprintf("%s/%s/%s/%s/%s", s->runs_dir, r->team, r->label, r->stamp, name);
    return ml_xasprintf("%s/%s/%s/%s", s->runs_dir, r->team, r->label, r->stamp);
}

uint64_t ml_store_run_bytes(const ml_store *s, const ml_run *r)
{
    if (r->recorded || r->remote)
        return r->stored_bytes;
    char *path = ml_store_run_path(s, r, ML_RUN_JOURNAL_FILE);
    struct stat st;
    uint64_t n = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    free(path);
    return n;
}

int ml_store_make_run_dir(const ml_store *s, const ml_run *r, bool *new_parents)
{
    char *parent = ml_xasprintf("%s/%s/%s", s->runs_dir, r->team, r->label);
    char *dir = ml_store_run_path(s, r, NULL);
    *new_parents = !ml_is_dir(parent);
    int rv = *new_parents ? ml_mkdirs(parent) : 0;
    if (rv == 0 && mkdir(dir, 0755) != 0)
        rv = -errno;
    free(parent);
    free(dir);
    return rv;
}

int ml_store_create_run_dir(const ml_store *s, const ml_run *r)
{
    bool new_parents;
    int rv = ml_store_make_run_dir(s, r, &new_parents);
    if (rv == 0) {
        char *dir = ml_store_run_path(s, r, NULL);
        rv = ml_fsync_parent(dir);
        free(dir);
    }
    return rv;
}

static int write_meta(ml_store *s, ml_run *r, bool sync)
{
    json_t *j = ml_run_to_json(r);
    size_t len;
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (text == NULL)
        ml_oom(0);
    len = strlen(text);
    char *path = ml_store_run_path(s, r, ML_RUN_META_FILE);
    int rv = ml_write_file_replace(path, text, len, sync);
    if (rv == 0) {
        r->dirty = false;
        size_t l;
        char *line = put_line(r, &l);
        log_append(s, line, l, sync);
        free(line);
    } else
        ml_error("store: cannot write %s: %s", path, strerror(-rv));
    free(path);
    free(text);
    return rv;
}

int ml_store_write_meta(ml_store *s, ml_run *r)
{
    return write_meta(s, r, true);
}

int ml_store_write_meta_unsynced(ml_store *s, ml_run *r)
{
    return write_meta(s, r, false);
}

int ml_store_read_meta(const char *path, ml_run **out)
{
    char *text;
    size_t len;
    int rv = ml_read_file(path, ML_RUN_META_MAX, &text, &len);
    if (rv != 0)
        return rv;
    json_error_t err;
    json_t *j = json_loadb(text, len, 0, &err);
    free(text);
    if (j == NULL)
        return -EINVAL;
    rv = ml_run_from_json(j, out);
    json_decref(j);
    return rv;
}

int ml_store_load_model(const ml_store *s, const ml_run *r, ml_model *m)
{
    char *path = ml_store_run_path(s, r, ML_RUN_JOURNAL_FILE);
    int rv = ml_model_load(m, path);
    free(path);
    if (rv != -ENOENT)
        return rv;
    if (m->offset > 0 || m->nstrings > 0 || m->nsamples > 0)
        return 0; /* read from the journal before it was compacted */
    path = ml_store_run_path(s, r, ML_RUN_RECORDING_FILE);
    rv = ml_recording_load(m, path);
    free(path);
    return rv;
}

int ml_store_delete_run(ml_store *s, const ml_run *r)
{
    char *dir = ml_store_run_path(s, r, NULL);
    int rv = ml_remove_tree(dir);
    free(dir);
    if (rv == 0) {
        char *line = ml_xasprintf("{\"del\":\"%s/%s\"}\n", r->team, r->id);
        log_append(s, line, strlen(line), true);
        free(line);
        /* Tidy an emptied label directory; failure (not empty) is fine. */
        char *parent = ml_xasprintf("%s/%s/%s", s->runs_dir, r->team, r->label);
        rmdir(parent);
        free(parent);
    }
    return rv;
}

/* The valid subdirectory names of dir, or NULL with *n = 0. */
static char **list_dirs(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    if (d == NULL)
        return NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
            continue;
        ml_xgrow((void **)&names, &cap, *n + 1, sizeof(char *));
        names[(*n)++] = ml_xstrdup(e->d_name);
    }
    closedir(d);
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int first_open_run(void *arg, uint8_t type, const uint8_t *payload, size_t len,
                          uint64_t offset)
{
    Microlog__V1__OpenRun **o = arg;
    if (type == ML_JOURNAL_OPEN_RUN)
        *o = microlog__v1__open_run__unpack(NULL, len, payload);
    return 1; /* the OpenRun is the first record; nothing else is needed */
}

int ml_store_rebuild_meta(const char *dir, const char *team, const char *label, const char *stamp,
                          ml_run **out)
{
    char *path = ml_xasprintf("%s/%s", dir, ML_RUN_JOURNAL_FILE);
    Microlog__V1__OpenRun *o = NULL;
    uint64_t off = 0;
    int rv = ml_journal_read(path, &off, first_open_run, &o, NULL);
    free(path);
    if (rv < 0)
        return rv;
    if (o == NULL || strcmp(o->label, label) != 0) {
        if (o)
            microlog__v1__open_run__free_unpacked(o, NULL);
        return -EINVAL;
    }
    ml_run *r = ml_run_from_open(team, o);
    microlog__v1__open_run__free_unpacked(o, NULL);
    snprintf(r->stamp, sizeof(r->stamp), "%s", stamp);
    snprintf(r->id, sizeof(r->id), "%s/%s", label, stamp);
    r->dirty = true; /* run.json is written by the next housekeeping pass */
    *out = r;
    return 0;
}

/* Reads <dir>/run.json and checks it belongs where it was found. */
static int scan_one(const char *dir, const char *team, const char *label, const char *stamp,
                    ml_run **out)
{
    char *path = ml_xasprintf("%s/%s", dir, ML_RUN_META_FILE);
    ml_run *r = NULL;
    int rv = ml_store_read_meta(path, &r);
    bool mismatch = false;
    if (rv == 0 && (strcmp(r->team, team) != 0 || strcmp(r->label, label) != 0 ||
                    strcmp(r->stamp, stamp) != 0)) {
        ml_warn("store: %s names run %s of team %s; skipped", path, r->id, r->team);
        ml_run_free(r);
        rv = -EINVAL;
        mismatch = true;
    } else if (rv != 0 && rv != -ENOENT) {
        ml_warn("store: cannot read %s: %s", path, strerror(-rv));
    }
    if (rv != 0 && !mismatch) {
        /* run.json lost (a crash between mkdir and its first write) or
         * unreadable: the journal's OpenRun has everything it held. */
        int rb = ml_store_rebuild_meta(dir, team, label, stamp, &r);
        if (rb == 0) {
            ml_warn("store: %s rebuilt from the journal", path);
            rv = 0;
        }
    }
    free(path);
    if (rv == 0)
        *out = r;
    return rv;
}

static int scan_label(const char *dir, const char *team, const char *label, ml_store_scan_cb cb,
                      void *arg)
{
    size_t n;
    char **stamps = list_dirs(dir, &n);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ml_stamp_valid(stamps[i]))
            continue;
        char *sub = ml_xasprintf("%s/%s", dir, stamps[i]);
        ml_run *r;
        if (scan_one(sub, team, label, stamps[i], &r) == 0) {
            cb(arg, r);
            found++;
        }
        free(sub);
    }
    free_names(stamps, n);
    return found;
}

int ml_store_scan(const ml_store *s, ml_store_scan_cb cb, void *arg)
{
    if (!ml_is_dir(s->runs_dir))
        return -ENOENT;
    size_t nteams;
    char **teams = list_dirs(s->runs_dir, &nteams);
    int found = 0;
    for (size_t t = 0; t < nteams; t++) {
        if (!ml_label_valid(teams[t]))
            continue;
        char *tdir = ml_xasprintf("%s/%s", s->runs_dir, teams[t]);
        size_t nlabels;
        char **labels = list_dirs(tdir, &nlabels);
        for (size_t l = 0; l < nlabels; l++) {
            if (!ml_label_valid(labels[l]))
                continue;
            char *ldir = ml_xasprintf("%s/%s", tdir, labels[l]);
            found += scan_label(ldir, teams[t], labels[l], cb, arg);
            free(ldir);
        }
        free_names(labels, nlabels);
        free(tdir);
    }
    free_names(teams, nteams);
    return found;
}
