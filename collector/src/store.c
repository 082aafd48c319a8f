#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "mem.h"

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
    return 0;
}

void ml_store_dispose(ml_store *s)
{
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

int ml_store_create_run_dir(const ml_store *s, const ml_run *r)
{
    char *parent = ml_xasprintf("%s/%s/%s", s->runs_dir, r->team, r->label);
    char *dir = ml_store_run_path(s, r, NULL);
    int rv = ml_mkdirs(parent);
    if (rv == 0 && mkdir(dir, 0755) != 0)
        rv = -errno;
    if (rv == 0)
        rv = ml_fsync_parent(dir);
    free(parent);
    free(dir);
    return rv;
}

int ml_store_write_meta(const ml_store *s, ml_run *r)
{
    json_t *j = ml_run_to_json(r);
    size_t len;
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (text == NULL)
        ml_oom(0);
    len = strlen(text);
    char *path = ml_store_run_path(s, r, ML_RUN_META_FILE);
    int rv = ml_write_file_atomic(path, text, len);
    if (rv == 0)
        r->dirty = false;
    else
        ml_error("store: cannot write %s: %s", path, strerror(-rv));
    free(path);
    free(text);
    return rv;
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

int ml_store_delete_run(const ml_store *s, const ml_run *r)
{
    char *dir = ml_store_run_path(s, r, NULL);
    int rv = ml_remove_tree(dir);
    free(dir);
    if (rv == 0) {
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

/* Reads <dir>/run.json and checks it belongs where it was found. */
static int scan_one(const char *dir, const char *team, const char *label, const char *stamp,
                    ml_run **out)
{
    char *path = ml_xasprintf("%s/%s", dir, ML_RUN_META_FILE);
    ml_run *r = NULL;
    int rv = ml_store_read_meta(path, &r);
    if (rv == 0 && (strcmp(r->team, team) != 0 || strcmp(r->label, label) != 0 ||
                    strcmp(r->stamp, stamp) != 0)) {
        ml_warn("store: %s names run %s of team %s; skipped", path, r->id, r->team);
        ml_run_free(r);
        rv = -EINVAL;
    } else if (rv != 0 && rv != -ENOENT) {
        ml_warn("store: cannot read %s: %s", path, strerror(-rv));
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
