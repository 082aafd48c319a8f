#include "run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mem.h"
#include "microlog.pb-c.h"

ml_run *ml_run_new(void)
{
    return ml_xcalloc(1, sizeof(ml_run));
}

void ml_run_free(ml_run *r)
{
    if (r == NULL)
        return;
    free(r->uid);
    free(r->subject);
    free(r->host);
    free(r->user);
    free(r->executable);
    free(r->python_version);
    free(r->parent_id);
    free(r->client_version);
    for (size_t i = 0; i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
    json_decref(r->env);
    free(r);
}

const char *ml_run_status_name(ml_run_status s)
{
    switch (s) {
    case ML_RUN_COMPLETE:
        return "complete";
    case ML_RUN_INCOMPLETE:
        return "incomplete";
    default:
        return "live";
    }
}

static ml_run_status status_from_name(const char *s)
{
    if (strcmp(s, "complete") == 0)
        return ML_RUN_COMPLETE;
    if (strcmp(s, "incomplete") == 0)
        return ML_RUN_INCOMPLETE;
    return ML_RUN_LIVE;
}

double ml_run_duration(const ml_run *r)
{
    return r->end_us > 0 ? (double)r->end_us / 1e6 : 0.0;
}

json_t *ml_run_summary_json(const ml_run *r)
{
    json_t *o = json_object();
    ml_json_set(o, "id", ml_json_str(r->id));
    ml_json_set(o, "label", ml_json_str(r->label));
    ml_json_set(o, "timestamp", ml_json_str(r->timestamp));
    ml_json_set(o, "started", ml_json_real((double)r->start_unix_us / 1e6));
    ml_json_set(o, "duration", ml_json_real(ml_run_duration(r)));
    ml_json_set(o, "samples", ml_json_u64(r->samples));
    ml_json_set(o, "logs", ml_json_u64(r->logs));
    ml_json_set(o, "status", ml_json_str(ml_run_status_name(r->status)));
    ml_json_set(o, "host", ml_json_str(r->host));
    ml_json_set(o, "user", ml_json_str(r->user));
    ml_json_set(o, "pid", json_integer(r->pid));
    ml_json_set(o, "team", ml_json_str(r->team));
    return o;
}

json_t *ml_run_to_json(const ml_run *r)
{
    json_t *o = ml_run_summary_json(r);
    json_t *argv = json_array();
    for (size_t i = 0; i < r->argc; i++)
        json_array_append_new(argv, ml_json_str(r->argv[i]));
    ml_json_set(o, "uid", ml_json_str(r->uid));
    ml_json_set(o, "argv", argv);
    ml_json_set(o, "executable", ml_json_str(r->executable));
    ml_json_set(o, "python_version", ml_json_str(r->python_version));
    ml_json_set(o, "parent_id", ml_json_str(r->parent_id));
    ml_json_set(o, "client_version", ml_json_str(r->client_version));
    ml_json_set(o, "start_unix_us", json_integer(r->start_unix_us));
    ml_json_set(o, "sample_period", ml_json_real(r->sample_period));
    ml_json_set(o, "status_period", ml_json_real(r->status_period));
    ml_json_set(o, "memory_period", ml_json_real(r->memory_period));
    ml_json_set(o, "env", r->env ? json_incref(r->env) : json_object());
    ml_json_set(o, "end_us", json_integer(r->end_us));
    ml_json_set(o, "batches", ml_json_u64(r->batches));
    ml_json_set(o, "closed", json_boolean(r->closed));
    ml_json_set(o, "last_seq", ml_json_u64(r->last_seq));
    ml_json_set(o, "exit_status", r->closed ? json_integer(r->exit_status) : json_null());
    ml_json_set(o, "dropped_samples", ml_json_u64(r->dropped_samples));
    ml_json_set(o, "dropped_logs", ml_json_u64(r->dropped_logs));
    ml_json_set(o, "recorded", json_boolean(r->recorded));
    ml_json_set(o, "uploaded", json_boolean(r->uploaded));
    ml_json_set(o, "remote", json_boolean(r->remote));
    ml_json_set(o, "stored_bytes", ml_json_u64(r->stored_bytes));
    return o;
}

static char *dup_field(const json_t *j, const char *key)
{
    return ml_xstrdup(ml_json_get_str(j, key, ""));
}

static int copy_name(char *dst, size_t cap, const char *src)
{
    if (src == NULL || strlen(src) >= cap)
        return -EINVAL;
    strcpy(dst, src);
    return 0;
}

/* The names that become paths; all checked before anything is trusted. */
static int parse_names(const json_t *j, ml_run *r)
{
    const char *id = ml_json_get_str(j, "id", NULL);
    const char *team = ml_json_get_str(j, "team", "local");
    if (id == NULL || copy_name(r->id, sizeof(r->id), id) != 0 ||
        ml_run_id_split(id, strlen(id), r->label, r->stamp) != 0 || !ml_label_valid(team))
        return -EINVAL;
    strcpy(r->team, team);
    const char *ts = ml_json_get_str(j, "timestamp", NULL);
    if (ts == NULL || !ml_timestamp_valid(ts))
        ts = r->stamp; /* the stamp starts with the timestamp */
    memcpy(r->timestamp, ts, ML_TIMESTAMP_LEN);
    r->timestamp[ML_TIMESTAMP_LEN] = '\0';
    return 0;
}

/* Seconds (a JSON number from a file we may not have written) as us,
 * clamped: converting an out-of-range double to an integer is undefined
 * behaviour (found by tests/fuzz/fuzz_run_json). */
static int64_t us_from_seconds(const json_t *j, const char *key)
{
    double us = ml_json_get_real(j, key, 0) * 1e6;
    if (!(us > -9.2e18))
        return us < 0 ? INT64_MIN : 0; /* also NaN -> 0 */
    return us < 9.2e18 ? (int64_t)us : INT64_MAX;
}

int ml_run_from_json(const json_t *j, ml_run **out)
{
    if (!json_is_object(j))
        return -EINVAL;
    ml_run *r = ml_run_new();
    if (parse_names(j, r) != 0) {
        ml_run_free(r);
        return -EINVAL;
    }
    r->uid = dup_field(j, "uid");
    r->host = dup_field(j, "host");
    r->user = dup_field(j, "user");
    r->executable = dup_field(j, "executable");
    r->python_version = dup_field(j, "python_version");
    r->parent_id = dup_field(j, "parent_id");
    r->client_version = dup_field(j, "client_version");
    json_t *argv = json_object_get(j, "argv");
    r->argv = ml_xcalloc(json_array_size(argv) + 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(argv); i++) {
        const char *a = json_string_value(json_array_get(argv, i));
        r->argv[r->argc++] = ml_xstrdup(a);
    }
    json_t *env = json_object_get(j, "env");
    r->env = json_is_object(env) ? json_deep_copy(env) : json_object();
    r->pid = (int32_t)ml_json_get_int(j, "pid", 0);
    r->start_unix_us = ml_json_get_int(j, "start_unix_us", us_from_seconds(j, "started"));
    r->sample_period = ml_json_get_real(j, "sample_period", 0);
    r->status_period = ml_json_get_real(j, "status_period", 0);
    r->memory_period = ml_json_get_real(j, "memory_period", 0);
    r->status = status_from_name(ml_json_get_str(j, "status", "live"));
    r->end_us = ml_json_get_int(j, "end_us", us_from_seconds(j, "duration"));
    r->samples = (uint64_t)ml_json_get_int(j, "samples", 0);
    r->logs = (uint64_t)ml_json_get_int(j, "logs", 0);
    r->batches = (uint64_t)ml_json_get_int(j, "batches", 0);
    r->closed = json_is_true(json_object_get(j, "closed"));
    r->last_seq = (uint64_t)ml_json_get_int(j, "last_seq", 0);
    r->exit_status = (int32_t)ml_json_get_int(j, "exit_status", 0);
    r->dropped_samples = (uint64_t)ml_json_get_int(j, "dropped_samples", 0);
    r->dropped_logs = (uint64_t)ml_json_get_int(j, "dropped_logs", 0);
    r->recorded = json_is_true(json_object_get(j, "recorded"));
    r->uploaded = json_is_true(json_object_get(j, "uploaded"));
    r->remote = json_is_true(json_object_get(j, "remote"));
    r->stored_bytes = (uint64_t)ml_json_get_int(j, "stored_bytes", 0);
    *out = r;
    return 0;
}

ml_run *ml_run_from_open(const char *team, const Microlog__V1__OpenRun *o)
{
    ml_run *r = ml_run_new();
    snprintf(r->team, sizeof(r->team), "%s", team);
    snprintf(r->label, sizeof(r->label), "%s", o->label);
    snprintf(r->timestamp, sizeof(r->timestamp), "%s", o->timestamp);
    r->uid = ml_xstrdup(o->run_uid);
    r->host = ml_xstrdup(o->host);
    r->user = ml_xstrdup(o->user);
    r->executable = ml_xstrdup(o->executable);
    r->python_version = ml_xstrdup(o->python_version);
    r->parent_id = ml_xstrdup(o->parent_id);
    r->client_version = ml_xstrdup(o->client_version);
    r->argv = ml_xcalloc(o->n_argv + 1, sizeof(char *));
    for (size_t i = 0; i < o->n_argv; i++)
        r->argv[r->argc++] = ml_xstrdup(o->argv[i]);
    r->env = json_object();
    for (size_t i = 0; i < o->n_env; i++) {
        /* Keys too may be invalid UTF-8, which jansson refuses as keys. */
        json_t *key = ml_json_str(o->env[i]->key);
        if (json_string_length(key) > 0)
            json_object_set_new(r->env, json_string_value(key), ml_json_str(o->env[i]->value));
        json_decref(key);
    }
    r->pid = o->pid;
    r->start_unix_us = o->start_unix_us;
    r->sample_period = o->sample_period;
    r->status_period = o->status_period;
    r->memory_period = o->memory_period;
    r->status = ML_RUN_LIVE;
    return r;
}
