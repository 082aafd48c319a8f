/*
 * GET /metrics in the Prometheus text exposition format (version 0.0.4):
 * what the collector holds and how fast it answers. Ingest rates are the
 * rate() of the *_total counters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "http_internal.h"
#include "ingest.h"
#include "json.h"
#include "mem.h"
#include "s3.h"
#include "s3_sync.h"

static const double bounds[ML_HTTP_LATENCY_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                       0.1,   0.25,   0.5,   1.0,  2.5};

void ml_http_metrics_observe(ml_http *h, double seconds)
{
    h->requests++;
    h->latency_sum += seconds;
    size_t i = 0;
    while (i < ML_HTTP_LATENCY_BUCKETS && seconds > bounds[i])
        i++;
    h->latency_buckets[i]++;
}

static void metric(ml_sbuf *b, const char *name, const char *type, const char *help, double v)
{
    ml_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

int ml_http_metrics_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    ml_http *h = ((ml_http_handler *)self)->http;
    ml_collector *c = h->c;
    ml_run **runs;
    size_t n = ml_index_list(&c->index, NULL, 0, &runs);
    uint64_t live = 0, samples = 0, logs = 0, batches = 0, dropped = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        ml_run *r = runs[i];
        live += r->status == ML_RUN_LIVE;
        samples += r->samples;
        logs += r->logs;
        batches += r->batches;
        dropped += r->dropped_samples;
        bytes += ml_store_run_bytes(&c->store, r);
    }
    free(runs);
    ml_sbuf b = {0};
    metric(&b, "microlog_runs", "gauge", "Runs held by this collector.", (double)n);
    metric(&b, "microlog_open_runs", "gauge", "Runs still being recorded.", (double)live);
    metric(&b, "microlog_ingested_samples_total", "counter", "Stack samples stored.",
           (double)samples);
    metric(&b, "microlog_ingested_logs_total", "counter", "Log events stored.", (double)logs);
    metric(&b, "microlog_ingested_batches_total", "counter", "Batches stored.", (double)batches);
    metric(&b, "microlog_dropped_samples_total", "counter", "Samples the clients reported as lost.",
           (double)dropped);
    metric(&b, "microlog_bytes_stored", "gauge",
           "Bytes of runs on local disk (recordings, and journals of unfinished runs).",
           (double)bytes);
    metric(&b, "microlog_live_streams", "gauge", "Open live (SSE) streams.",
           (double)ml_http_live_count(h));
    metric(&b, "microlog_query_cache_runs", "gauge", "Run models held in memory.",
           (double)c->query.models.len);
    if (c->ingest) {
        ml_ingest_stats is;
        ml_ingest_get_stats(c->ingest, &is);
        metric(&b, "microlog_ingest_queue_depth", "gauge",
               "Ingest requests received and waiting for the collector's loop.", (double)is.queued);
        metric(&b, "microlog_ingest_queue_depth_max", "gauge",
               "The most ingest requests that ever waited for the loop at once.",
               (double)is.queued_max);
        metric(&b, "microlog_ingest_replies_pending", "gauge",
               "Ingest replies built and waiting for the storage sync (group commit) before "
               "they are sent.",
               (double)is.replying);
        metric(&b, "microlog_ingest_contexts", "gauge",
               "Ingest requests that can be in flight at once.", (double)is.contexts);
        metric(&b, "microlog_ingest_connections", "gauge", "Open client connections to ingest.",
               (double)is.connections);
        metric(&b, "microlog_ingest_refused_connections_total", "counter",
               "Requests answered \"too many connections\" (over --max-connections).",
               (double)is.refused_connections);
        metric(&b, "microlog_ingest_idle_closed_total", "counter",
               "Connections closed by the ingest idle timeout (--ingest-idle-timeout).",
               (double)is.idle_closed);
    }
    if (c->s3) {
        const ml_s3_stats *st = ml_s3_get_stats(c->s3);
        metric(&b, "microlog_s3_requests_total", "counter", "S3 requests sent.",
               (double)st->requests);
        metric(&b, "microlog_s3_retries_total", "counter", "S3 requests retried.",
               (double)st->retries);
        metric(&b, "microlog_s3_errors_total", "counter", "S3 requests that failed for good.",
               (double)st->failures);
        metric(&b, "microlog_s3_bytes_uploaded_total", "counter", "Bytes sent to S3.",
               (double)st->bytes_up);
        metric(&b, "microlog_s3_bytes_downloaded_total", "counter", "Bytes read from S3.",
               (double)st->bytes_down);
        metric(&b, "microlog_s3_pending_deletes", "gauge",
               "S3 object deletes not yet done (retried, also after a restart).",
               (double)ml_s3sync_pending_deletes(c));
    }
    size_t index_bytes, query_bytes = ml_query_bytes(&c->query, &index_bytes);
    metric(&b, "microlog_query_memory_bytes", "gauge",
           "Bytes of the runs held in memory for queries (models and call indexes).",
           (double)query_bytes);
    metric(&b, "microlog_query_index_bytes", "gauge",
           "Bytes of the call indexes among microlog_query_memory_bytes.", (double)index_bytes);
    ml_sbuf_puts(&b, "# HELP microlog_http_request_duration_seconds Time to answer an API "
                     "request.\n# TYPE microlog_http_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < ML_HTTP_LATENCY_BUCKETS; i++) {
        cum += h->latency_buckets[i];
        ml_sbuf_printf(&b, "microlog_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       bounds[i], (unsigned long long)cum);
    }
    cum += h->latency_buckets[ML_HTTP_LATENCY_BUCKETS];
    ml_sbuf_printf(&b, "microlog_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)cum);
    ml_sbuf_printf(&b, "microlog_http_request_duration_seconds_sum %.9f\n", h->latency_sum);
    ml_sbuf_printf(&b, "microlog_http_request_duration_seconds_count %llu\n",
                   (unsigned long long)h->requests);
    size_t len;
    char *text = ml_sbuf_take(&b, &len);
    ml_http_send_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
    free(text);
    return 0;
}
