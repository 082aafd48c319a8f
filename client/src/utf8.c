/*
 * Protobuf string fields must carry UTF-8, and the C strings protobuf-c
 * encodes end at the first NUL. Text from the profiled program (paths with
 * undecodable bytes, binary written to stdout) is made safe here, once, when
 * it enters the client.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when it is invalid
 * or a NUL. Rejects overlong forms, surrogates and code points > U+10FFFF. */
static size_t seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

bool ml__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] > 0 && p[i] < 0x80) { /* ASCII fast path */
            i++;
            continue;
        }
        size_t n = seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

size_t ml__utf8_copy(char *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        size_t n = seq_len(p + i, len - i);
        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3); /* U+FFFD */
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, p + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return o;
}

size_t ml__utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* step back over continuation bytes to the start of the cut sequence */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80 && max - n < 4)
        n--;
    return n;
}

char *ml__utf8_dup(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    char *out = malloc(ML__UTF8_BOUND(len) + 1);
    if (out)
        ml__utf8_copy(out, s ? s : "", len);
    return out;
}
