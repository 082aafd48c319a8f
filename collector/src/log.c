#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static ml_log_level min_level = ML_LOG_INFO;

static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void ml_log_set_level(ml_log_level level)
{
    min_level = level;
}

int ml_log_enabled(ml_log_level level)
{
    return level >= min_level;
}

void ml_log(ml_log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    struct timespec ts;
    struct tm tm;
    char stamp[32], msg[2048];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from different threads never interleave. */
    fprintf(stderr, "%s.%03ldZ micrologd %s %s\n", stamp, ts.tv_nsec / 1000000,
            level_names[level > ML_LOG_ERROR ? ML_LOG_ERROR : level], msg);
}
