/*
 * The run's identity and description: label cleaning, the local start
 * timestamp, the random run uid, host and user, and the OpenRun message
 * built from them. Everything is copied and sanitized once, in
 * ml_client_new, so the sender thread can encode it at any time.
 */
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "internal.h"

void ml__label_clean(const char *label, char out[ML__LABEL_MAX + 1])
{
    size_t n = 0;
    for (const char *p = label ? label : ""; *p && n < ML__LABEL_MAX; p++) {
        unsigned char ch = (unsigned char)*p;
        bool keep = isascii(ch) && (isalnum(ch) || ch == '.' || ch == '_' || ch == '-');
        out[n++] = keep ? (char)ch : '_';
    }
    out[n] = '\0';
    if (n == 0)
        strcpy(out, "run");
}

bool ml__timestamp_valid(const char *ts)
{
    static const char pattern[] = "dddd_dd_dd_dd_dd_dd";
    if (ts == NULL || strlen(ts) != sizeof(pattern) - 1)
        return false;
    for (size_t i = 0; pattern[i]; i++) {
        bool digit = ts[i] >= '0' && ts[i] <= '9';
        if (pattern[i] == 'd' ? !digit : ts[i] != '_')
            return false;
    }
    return true;
}

void ml__timestamp_format(int64_t unix_us, char out[20])
{
    time_t secs = (time_t)(unix_us / 1000000);
    struct tm tm;
    if (localtime_r(&secs, &tm) == NULL || strftime(out, 20, "%Y_%m_%d_%H_%M_%S", &tm) != 19)
        strcpy(out, "1970_01_01_00_00_00");
}

void ml__uid_random(char out[33])
{
    uint8_t bytes[16];
    if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t)sizeof(bytes)) {
        /* no entropy yet (early boot): unique enough for a run id */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t seed[4] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid(),
                            (uint64_t)(uintptr_t)out};
        XXH128_hash_t h = XXH3_128bits(seed, sizeof(seed));
        memcpy(bytes, &h.low64, 8);
        memcpy(bytes + 8, &h.high64, 8);
    }
    for (size_t i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* Validates and lower-cases a caller-given uid into out. */
static bool uid_copy(const char *uid, char out[33])
{
    if (strlen(uid) != 32)
        return false;
    for (size_t i = 0; i < 32; i++) {
        if (!isxdigit((unsigned char)uid[i]))
            return false;
        out[i] = (char)tolower((unsigned char)uid[i]);
    }
    out[32] = '\0';
    return true;
}

static char *default_host(void)
{
    char buf[256];
    if (gethostname(buf, sizeof(buf)) != 0)
        return ml__utf8_dup("");
    buf[sizeof(buf) - 1] = '\0';
    return ml__utf8_dup(buf);
}

static char *default_user(void)
{
    char buf[4096];
    struct passwd pw, *res = NULL;
    if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
        return ml__utf8_dup(res->pw_name);
    const char *env = getenv("USER");
    if (env != NULL)
        return ml__utf8_dup(env);
    snprintf(buf, sizeof(buf), "%u", (unsigned)geteuid());
    return ml__utf8_dup(buf);
}

static void strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A sanitized copy of n strings (NULL entries become ""); NULL on ENOMEM. */
static char **strv_dup(const char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if ((out[i] = ml__utf8_dup(v ? v[i] : NULL)) == NULL) {
            strv_free(out, i);
            return NULL;
        }
    }
    return out;
}

/* The identity part: label, start time, timestamp, uid. 0 or -EINVAL. */
static int run_identity(ml__run *r, const ml_run_info *info)
{
    ml__label_clean(info->label, r->label);
    r->start_unix_us = info->start_unix_us;
    if (r->start_unix_us == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r->start_unix_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    }
    if (info->timestamp != NULL) {
        if (!ml__timestamp_valid(info->timestamp))
            return -EINVAL;
        memcpy(r->timestamp, info->timestamp, sizeof(r->timestamp));
    } else {
        ml__timestamp_format(r->start_unix_us, r->timestamp);
    }
    if (info->run_uid != NULL) {
        if (!uid_copy(info->run_uid, r->uid))
            return -EINVAL;
    } else {
        ml__uid_random(r->uid);
    }
    return 0;
}

int ml__run_init(ml__run *r, const ml_run_info *info)
{
    static const ml_run_info empty;
    memset(r, 0, sizeof(*r));
    if (info == NULL)
        info = &empty;
    if (run_identity(r, info) != 0)
        return -EINVAL;
    r->pid = info->pid ? info->pid : (int32_t)getpid();
    r->sample_period = info->sample_period;
    r->status_period = info->status_period;
    r->memory_period = info->memory_period;
    r->host = info->host ? ml__utf8_dup(info->host) : default_host();
    r->user = info->user ? ml__utf8_dup(info->user) : default_user();
    r->executable = ml__utf8_dup(info->executable);
    r->python_version = ml__utf8_dup(info->python_version);
    r->parent_id = ml__utf8_dup(info->parent_id);
    r->argc = info->argc;
    r->argv = strv_dup(info->argv, info->argc);
    r->env_count = info->env_count;
    r->env_keys = strv_dup(info->env_keys, info->env_count);
    r->env_values = strv_dup(info->env_values, info->env_count);
    if (!r->host || !r->user || !r->executable || !r->python_version || !r->parent_id || !r->argv ||
        !r->env_keys || !r->env_values) {
        ml__run_close(r);
        return -ENOMEM;
    }
    return 0;
}

void ml__run_close(ml__run *r)
{
    free(r->host);
    free(r->user);
    free(r->executable);
    free(r->python_version);
    free(r->parent_id);
    strv_free(r->argv, r->argv ? r->argc : 0);
    strv_free(r->env_keys, r->env_keys ? r->env_count : 0);
    strv_free(r->env_values, r->env_values ? r->env_count : 0);
    memset(r, 0, sizeof(*r));
}

int ml__run_pack_open(const ml__run *r, uint64_t call_id, const char *token, uint8_t **out,
                      size_t *out_len)
{
    Microlog__V1__OpenRun m = MICROLOG__V1__OPEN_RUN__INIT;
    size_t n = r->env_count;
    Microlog__V1__EnvVar *env = calloc(n ? n : 1, sizeof(*env));
    Microlog__V1__EnvVar **envp = calloc(n ? n : 1, sizeof(*envp));
    int rv = -ENOMEM;

    if (env != NULL && envp != NULL) {
        for (size_t i = 0; i < n; i++) {
            microlog__v1__env_var__init(&env[i]);
            env[i].key = r->env_keys[i];
            env[i].value = r->env_values[i];
            envp[i] = &env[i];
        }
        m.run_uid = (char *)r->uid;
        m.label = (char *)r->label;
        m.timestamp = (char *)r->timestamp;
        m.start_unix_us = r->start_unix_us;
        m.host = r->host;
        m.user = r->user;
        m.pid = r->pid;
        m.n_argv = r->argc;
        m.argv = r->argv;
        m.executable = r->executable;
        m.python_version = r->python_version;
        m.parent_id = r->parent_id;
        m.sample_period = r->sample_period;
        m.status_period = r->status_period;
        m.memory_period = r->memory_period;
        m.n_env = n;
        m.env = envp;
        m.client_version = ML_CLIENT_VERSION;
        rv = ml_wire_pack(ML_METHOD_OPEN_RUN, call_id, 0, NULL, token, &m.base, out, out_len);
    }
    free(env);
    free(envp);
    return rv;
}
