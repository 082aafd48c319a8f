/*
 * fuzz_url: what the HTTP API does with the request target before any
 * query runs. Input: bytes of a URL path segment or query string. Path
 * under test: ml_url_decode (percent-decoding, with and without "+"),
 * ml_url_query_get for every parameter the API reads, ml_run_id_split on
 * the raw and the decoded bytes, and the name validators (labels,
 * timestamps, stamps, client uids).
 * Invariants checked: decoding never grows the text and never yields an
 * embedded NUL; a run id that splits names a valid label and stamp that
 * cannot leave the data directory ("/", "." and ".." impossible).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "runid.h"
#include "url.h"

static const char *const keys[] = {"filter", "width", "threads", "q",   "format", "base",   "name",
                                   "t0",     "t1",    "start",   "end", "limit",  "offset", ""};

static void check_run_id(const char *s, size_t n)
{
    char label[ML_LABEL_MAX + 1], stamp[ML_STAMP_MAX + 1];
    if (ml_run_id_split(s, n, label, stamp) != 0)
        return;
    FUZZ_CHECK(ml_label_valid(label) && ml_stamp_valid(stamp));
    FUZZ_CHECK(strchr(label, '/') == NULL && strchr(stamp, '/') == NULL);
    FUZZ_CHECK(strcmp(label, ".") != 0 && strcmp(label, "..") != 0);
    FUZZ_CHECK(strlen(label) + 1 + strlen(stamp) == n && n <= ML_RUN_ID_MAX);
}

static void check_names(const char *s)
{
    if (ml_label_valid(s)) {
        FUZZ_CHECK(strlen(s) >= 1 && strlen(s) <= ML_LABEL_MAX && strchr(s, '/') == NULL);
        FUZZ_CHECK(strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
    }
    if (ml_stamp_valid(s))
        FUZZ_CHECK(strlen(s) <= ML_STAMP_MAX && strchr(s, '/') == NULL && s[0] != '.');
    if (ml_timestamp_valid(s))
        FUZZ_CHECK(strlen(s) == ML_TIMESTAMP_LEN);
    if (ml_uid_valid(s))
        FUZZ_CHECK(strlen(s) >= 8 && strlen(s) <= 64 && strchr(s, '/') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    for (int plus = 0; plus < 2; plus++) {
        size_t n = 0;
        char *d = ml_url_decode(s, size, plus, &n);
        if (d != NULL) {
            FUZZ_CHECK(n <= size && strlen(d) == n);
            check_run_id(d, n);
            check_names(d);
            free(d);
        }
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char *v = ml_url_query_get(s, size, keys[i]);
        if (v != NULL)
            FUZZ_CHECK(strlen(v) <= size);
        free(v);
    }
    check_run_id(s, size);
    char *z = malloc(size + 1);
    memcpy(z, data, size);
    z[size] = '\0';
    check_names(z);
    free(z);
    return 0;
}
