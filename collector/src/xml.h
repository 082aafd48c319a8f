/*
 * The few S3 XML answers the collector reads (ListObjectsV2,
 * InitiateMultipartUpload, Error), parsed with expat. Any thread.
 */
#ifndef ML_COLLECTOR_XML_H
#define ML_COLLECTOR_XML_H

#include <stddef.h>

/* Called at the end of every element with its local name (namespace
 * dropped), its parent's local name ("" at the root) and its text
 * (character data directly inside it, NUL-terminated, borrowed). */
typedef void (*ml_xml_cb)(void *arg, const char *parent, const char *name, const char *text);

/* Parses len bytes of XML. Returns 0, or -EBADMSG for malformed XML or
 * an element nested deeper than 32 levels (cb may have been called for
 * the elements before the error). */
int ml_xml_parse(const char *data, size_t len, ml_xml_cb cb, void *arg);

#endif
