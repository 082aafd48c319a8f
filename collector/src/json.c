#include "json.h"

#include <math.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

static json_t *checked(json_t *v)
{
    if (v == NULL) {
        /* jansson returns NULL only for bad input (handled by the callers)
         * or out of memory. */
        ml_oom(0);
    }
    return v;
}

json_t *ml_json_real(double v)
{
    return checked(json_real(isfinite(v) ? v : 0.0));
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return c == 0 ? 0 : 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

json_t *ml_json_strn(const char *s, size_t n)
{
    if (s == NULL)
        return checked(json_string(""));
    json_t *v = json_stringn(s, n);
    if (v != NULL)
        return v;
    /* Invalid UTF-8 (or a NUL byte): rebuild with U+FFFD replacements. */
    char *buf = ml_xmalloc(n * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        }
    }
    v = checked(json_stringn(buf, o));
    free(buf);
    return v;
}

json_t *ml_json_str(const char *s)
{
    return ml_json_strn(s, s ? strlen(s) : 0);
}

json_t *ml_json_u64(uint64_t v)
{
    return checked(json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v));
}

void ml_json_set(json_t *obj, const char *key, json_t *value)
{
    json_object_set_new(obj, key, checked(value));
}

const char *ml_json_get_str(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : def;
}

int64_t ml_json_get_int(const json_t *obj, const char *key, int64_t def)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    /* an out-of-range double -> int64 conversion is undefined (fuzz_run_json) */
    if (json_is_real(v) && json_real_value(v) > -9.2e18 && json_real_value(v) < 9.2e18)
        return (int64_t)json_real_value(v);
    return def;
}

double ml_json_get_real(const json_t *obj, const char *key, double def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

char *ml_json_dump(const json_t *v, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    if (s == NULL)
        s = ml_xstrdup("null");
    if (len)
        *len = strlen(s);
    return s;
}

void ml_sbuf_add(ml_sbuf *b, const char *s, size_t n)
{
    ml_xgrow((void **)&b->p, &b->cap, b->n + n + 1, 1);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void ml_sbuf_puts(ml_sbuf *b, const char *s)
{
    ml_sbuf_add(b, s, strlen(s));
}

void ml_sbuf_printf(ml_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        ml_sbuf_add(b, tmp, (size_t)n);
        return;
    }
    ml_xgrow((void **)&b->p, &b->cap, b->n + (size_t)n + 1, 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void ml_sbuf_json(ml_sbuf *b, const json_t *v)
{
    size_t len;
    char *s = ml_json_dump(v, &len);
    ml_sbuf_add(b, s, len);
    free(s);
}

void ml_sbuf_jstr(ml_sbuf *b, const char *s)
{
    json_t *v = ml_json_str(s);
    ml_sbuf_json(b, v);
    json_decref(v);
}

char *ml_sbuf_take(ml_sbuf *b, size_t *len)
{
    if (b->p == NULL)
        ml_sbuf_add(b, "", 0);
    char *p = b->p;
    if (len)
        *len = b->n;
    memset(b, 0, sizeof(*b));
    return p;
}
