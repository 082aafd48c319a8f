/*
 * The public API (microlog/client.h): configuration, the client's life
 * cycle and the recording functions. Recording takes the client mutex for a
 * few hundred nanoseconds and never waits for the network; the sender
 * thread (sender.c) does all I/O.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "curl_dl.h"
#include "internal.h"

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

void ml_client_config_init(ml_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->server = env_nonempty("MICROLOG_SERVER");
    if (cfg->server == NULL)
        cfg->server = ML_DEFAULT_SERVER;
    cfg->ingest = env_nonempty("MICROLOG_INGEST");
    cfg->token = env_nonempty("MICROLOG_TOKEN");
    cfg->ca_file = env_nonempty("MICROLOG_CA_FILE");
    cfg->flush_interval_ms = 250;
    cfg->batch_max_bytes = 256u << 10;
    cfg->buffer_max_bytes = 32u << 20;
    cfg->connect_timeout_ms = 2000;
    cfg->quiet = false;
    cfg->spool_only = false;
    cfg->spool_dir = NULL; /* MICROLOG_SPOOL_DIR is read when the spool is made */
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Copies cfg's strings into c. 0 or -ENOMEM. */
static int copy_config(ml_client *c, const ml_client_config *cfg)
{
    c->cfg = *cfg;
    c->server = strdup(cfg->server && *cfg->server ? cfg->server : ML_DEFAULT_SERVER);
    c->ingest = cfg->ingest && *cfg->ingest ? strdup(cfg->ingest) : NULL;
    c->token = cfg->token && *cfg->token ? strdup(cfg->token) : NULL;
    c->spool_dir = cfg->spool_dir && *cfg->spool_dir ? strdup(cfg->spool_dir) : NULL;
    c->ca_file = cfg->ca_file && *cfg->ca_file ? strdup(cfg->ca_file) : NULL;
    if ((cfg->ca_file && *cfg->ca_file && c->ca_file == NULL) || c->server == NULL ||
        (cfg->ingest && *cfg->ingest && c->ingest == NULL) ||
        (cfg->token && *cfg->token && c->token == NULL) ||
        (cfg->spool_dir && *cfg->spool_dir && c->spool_dir == NULL))
        return -ENOMEM;
    c->cfg.server = c->server;
    c->cfg.ingest = c->ingest;
    c->cfg.token = c->token;
    c->cfg.spool_dir = c->spool_dir;
    c->cfg.ca_file = c->ca_file;
    return 0;
}

static int sync_init(ml_client *c)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -ENOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rv = pthread_cond_init(&c->cv, &attr);
    if (rv == 0 && (rv = pthread_cond_init(&c->settled_cv, &attr)) != 0)
        pthread_cond_destroy(&c->cv);
    pthread_condattr_destroy(&attr);
    if (rv != 0)
        return -ENOMEM;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_cond_destroy(&c->settled_cv);
        return -ENOMEM;
    }
    return 0;
}

/* Starts the sender with every signal blocked: the profiled program's
 * handlers (Python's SIGINT) must keep running on its own threads. */
static int start_sender(ml_client *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rv = pthread_create(&c->thread, NULL, ml__sender_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0)
        return -ENOMEM; /* EAGAIN: out of threads, which is out of memory here */
    pthread_setname_np(c->thread, "microlog-send");
    c->thread_started = true;
    return 0;
}

void ml__client_destroy(ml_client *c)
{
    ml__sender_close(&c->snd);
    ml__intern_close(&c->in);
    ml__batch_close(&c->batches[0]);
    ml__batch_close(&c->batches[1]);
    ml__run_close(&c->run);
    free(c->server);
    free(c->ingest);
    free(c->token);
    free(c->ca_file);
    free(c->spool_dir);
    free(c);
}

int ml_client_new(const ml_client_config *cfg, const ml_run_info *run, ml_client **out)
{
    ml_client_config defaults;
    ml_client *c;
    int rv;

    if (out == NULL)
        return -EINVAL;
    if (cfg == NULL) {
        ml_client_config_init(&defaults);
        cfg = &defaults;
    }
    if (cfg->flush_interval_ms == 0 || cfg->batch_max_bytes == 0 || cfg->buffer_max_bytes == 0 ||
        cfg->connect_timeout_ms == 0)
        return -EINVAL;
    ml__curl_prepare();
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return -ENOMEM;
    ml__intern_init(&c->in);
    ml__batch_init(&c->batches[0]);
    ml__batch_init(&c->batches[1]);
    ml__sender_init(&c->snd);
    c->active = &c->batches[0];
    c->spare = &c->batches[1];
    if ((rv = copy_config(c, cfg)) != 0 || (rv = ml__run_init(&c->run, run)) != 0) {
        ml__client_destroy(c);
        return rv;
    }
    snprintf(c->run_id_prov, sizeof(c->run_id_prov), "%s/%s", c->run.label, c->run.timestamp);
    atomic_init(&c->run_id, c->run_id_prov);
    c->start_mono_ns = mono_ns();
    if (c->ingest != NULL && (c->snd.ingest = strdup(c->ingest)) == NULL) {
        ml__client_destroy(c);
        return -ENOMEM;
    }
    if ((rv = sync_init(c)) != 0) {
        ml__client_destroy(c);
        return rv;
    }
    if (ml__transport_forked())
        c->no_transport = "the nng transport cannot be used again after fork()";
    /* without the network the sender thread still seals and spools */
    c->snd.offline = c->no_transport != NULL || cfg->spool_only;
    atomic_init(&c->to_disk, c->snd.offline);
    if ((rv = start_sender(c)) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        pthread_cond_destroy(&c->settled_cv);
        ml__client_destroy(c);
        return rv;
    }
    *out = c;
    return 0;
}

const char *ml_client_run_id(const ml_client *c)
{
    return c ? atomic_load_explicit(&((ml_client *)c)->run_id, memory_order_acquire) : "";
}

const char *ml_client_run_uid(const ml_client *c)
{
    return c ? c->run.uid : "";
}

int64_t ml_client_now(const ml_client *c)
{
    return c ? (mono_ns() - c->start_mono_ns) / 1000 : 0;
}
