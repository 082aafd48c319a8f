#include "runid.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
           c == '_' || c == '-';
}

/* The label rule on a counted string. */
static bool label_valid_n(const char *s, size_t n)
{
    if (n == 0 || n > ML_LABEL_MAX)
        return false;
    /* "." and ".." are made of valid characters but name directories. */
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_label_char(s[i]))
            return false;
    return true;
}

static bool timestamp_valid_n(const char *s, size_t n)
{
    static const char pattern[] = "dddd_dd_dd_dd_dd_dd";
    if (n != ML_TIMESTAMP_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (pattern[i] == 'd' ? !is_digit(s[i]) : s[i] != pattern[i])
            return false;
    }
    return true;
}

static bool stamp_valid_n(const char *s, size_t n)
{
    if (n == ML_TIMESTAMP_LEN)
        return timestamp_valid_n(s, n);
    if (n < ML_TIMESTAMP_LEN + 2 || n > ML_STAMP_MAX || s[ML_TIMESTAMP_LEN] != '-')
        return false;
    const char *d = s + ML_TIMESTAMP_LEN + 1;
    size_t nd = n - ML_TIMESTAMP_LEN - 1;
    if (nd > 6 || d[0] == '0' || (nd == 1 && d[0] == '1'))
        return false;
    for (size_t i = 0; i < nd; i++)
        if (!is_digit(d[i]))
            return false;
    return timestamp_valid_n(s, ML_TIMESTAMP_LEN);
}

bool ml_label_valid(const char *s)
{
    return s && label_valid_n(s, strlen(s));
}

bool ml_timestamp_valid(const char *s)
{
    return s && timestamp_valid_n(s, strlen(s));
}

bool ml_stamp_valid(const char *s)
{
    return s && stamp_valid_n(s, strlen(s));
}

bool ml_uid_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strlen(s);
    if (n < 8 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_label_char(s[i]) || s[i] == '.')
            return false;
    return true;
}

int ml_run_id_split(const char *id, size_t len, char *label, char *stamp)
{
    const char *slash = memchr(id, '/', len);
    if (slash == NULL)
        return -EINVAL;
    size_t nl = (size_t)(slash - id), ns = len - nl - 1;
    if (!label_valid_n(id, nl) || !stamp_valid_n(slash + 1, ns))
        return -EINVAL;
    memcpy(label, id, nl);
    label[nl] = '\0';
    memcpy(stamp, slash + 1, ns);
    stamp[ns] = '\0';
    return 0;
}

int ml_stamp_make(char *out, size_t size, const char *timestamp, unsigned collector_id, unsigned n)
{
    if (n == 0 || collector_id > ML_COLLECTOR_ID_MAX || size < ML_STAMP_MAX + 1 ||
        !ml_timestamp_valid(timestamp))
        return -ERANGE;
    unsigned long suffix = collector_id == 0 ? n : collector_id + 100ul * (unsigned long)(n - 1);
    if (suffix >= 1000000)
        return -ERANGE;
    if (suffix == 1)
        snprintf(out, size, "%s", timestamp);
    else
        snprintf(out, size, "%s-%lu", timestamp, suffix);
    return 0;
}

unsigned ml_collector_id_from_host(const char *host)
{
    size_t n = host ? strlen(host) : 0, d = n;
    while (d > 0 && is_digit(host[d - 1]))
        d--;
    if (d > 0 && d < n && n - d <= 2 && host[d - 1] == '-') {
        unsigned ordinal = 0;
        for (size_t i = d; i < n; i++)
            ordinal = ordinal * 10 + (unsigned)(host[i] - '0');
        if (ordinal < ML_COLLECTOR_ID_MAX)
            return ordinal + 1;
    }
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)host[i]) * 16777619u;
    return 1 + h % ML_COLLECTOR_ID_MAX;
}
