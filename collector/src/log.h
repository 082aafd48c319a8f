/*
 * The collector's diagnostic log: one timestamped line per message on
 * stderr, "2026-11-26T05:30:00.123Z micrologd INFO ingest: ...".
 * Thread-safe (one fprintf per line, stdio locks the stream).
 */
#ifndef ML_COLLECTOR_LOG_H
#define ML_COLLECTOR_LOG_H

typedef enum ml_log_level {
    ML_LOG_DEBUG = 0,
    ML_LOG_INFO = 1,
    ML_LOG_WARN = 2,
    ML_LOG_ERROR = 3,
} ml_log_level;

/* Lines below level are dropped. The default is ML_LOG_INFO; --verbose
 * sets ML_LOG_DEBUG. Call before other threads log. */
void ml_log_set_level(ml_log_level level);

/* True when messages of this level are written (to skip costly formatting). */
int ml_log_enabled(ml_log_level level);

/* Writes one line; a trailing newline in fmt is not needed. */
void ml_log(ml_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ml_debug(...) ml_log(ML_LOG_DEBUG, __VA_ARGS__)
#define ml_info(...) ml_log(ML_LOG_INFO, __VA_ARGS__)
#define ml_warn(...) ml_log(ML_LOG_WARN, __VA_ARGS__)
#define ml_error(...) ml_log(ML_LOG_ERROR, __VA_ARGS__)

#endif
