#include "url.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *ml_url_decode(const char *s, size_t n, bool plus_space, size_t *out_len)
{
    char *out = ml_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '\0') {
            free(out);
            return NULL;
        } else {
            out[o++] = plus_space && c == '+' ? ' ' : c;
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

char *ml_url_query_get(const char *q, size_t qlen, const char *key)
{
    size_t klen = strlen(key);
    const char *end = q + qlen;
    for (const char *p = q; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == klen && memcmp(p, key, klen) == 0)
            return eq ? ml_url_decode(eq + 1, (size_t)(stop - eq - 1), true, NULL) : ml_xstrdup("");
        p = stop + 1;
    }
    return NULL;
}
