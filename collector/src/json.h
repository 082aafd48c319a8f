/*
 * jansson helpers. Strings that came from a client are not trusted to be
 * UTF-8 (protobuf-c does not check), and jansson refuses invalid UTF-8, so
 * every client string goes through ml_json_str(), which replaces invalid
 * sequences with U+FFFD. Any thread.
 */
#ifndef ML_COLLECTOR_JSON_H
#define ML_COLLECTOR_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* A new JSON string for s (NULL gives ""), with invalid UTF-8 replaced.
 * Never NULL (aborts on out-of-memory). */
json_t *ml_json_str(const char *s);

/* The same for n bytes at s. */
json_t *ml_json_strn(const char *s, size_t n);

/* A JSON number for a count; exact up to 2^53. */
json_t *ml_json_u64(uint64_t v);

/* A JSON number for v; NaN and the infinities (which JSON cannot express
 * and jansson refuses) become 0. Values can come from a client, so no
 * double reaches jansson without passing here. Never returns NULL. */
json_t *ml_json_real(double v);

/* obj[key] = value, taking the reference to value. */
void ml_json_set(json_t *obj, const char *key, json_t *value);

/* obj[key] as a string, or def when missing or not a string. Borrowed. */
const char *ml_json_get_str(const json_t *obj, const char *key, const char *def);

/* obj[key] as an integer (reals are truncated), or def. */
int64_t ml_json_get_int(const json_t *obj, const char *key, int64_t def);

/* obj[key] as a number, or def. */
double ml_json_get_real(const json_t *obj, const char *key, double def);

/* Serializes v compactly into a malloc'd string (*len bytes, NUL-terminated),
 * owned by the caller. Never NULL. */
char *ml_json_dump(const json_t *v, size_t *len);

/* A growable text buffer for answers too large to build as jansson
 * values (the timeline, exports). p is NUL-terminated, owned by the
 * buffer until taken. */
typedef struct ml_sbuf {
    char *p;
    size_t n, cap;
} ml_sbuf;

/* Appends n bytes. */
void ml_sbuf_add(ml_sbuf *b, const char *s, size_t n);

/* Appends a C string. */
void ml_sbuf_puts(ml_sbuf *b, const char *s);

/* Appends formatted text. */
void ml_sbuf_printf(ml_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends v serialized compactly (no reference taken). */
void ml_sbuf_json(ml_sbuf *b, const json_t *v);

/* Appends s (NULL: "") as a JSON string literal, invalid UTF-8 replaced. */
void ml_sbuf_jstr(ml_sbuf *b, const char *s);

/* Hands the text to the caller (malloc'd, *len bytes) and resets b. */
char *ml_sbuf_take(ml_sbuf *b, size_t *len);

#endif
