/*
 * The envelope layer shared by client and collector: packs a protobuf-c
 * message into a serialized Envelope (LZ4-compressing large payloads) and
 * unpacks one, enforcing the size limits. Pure functions, any thread.
 */
#ifndef ML_WIRE_H
#define ML_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "microlog.pb-c.h"

#define ML_WIRE_VERSION 1
#define ML_METHOD_OPEN_RUN "microlog.v1.Ingest/OpenRun"
#define ML_METHOD_BATCH "microlog.v1.Ingest/Batch"
#define ML_METHOD_CLOSE_RUN "microlog.v1.Ingest/CloseRun"

/* Largest serialized envelope either side sends or accepts. */
#define ML_WIRE_MAX_MESSAGE (16u << 20)
/* Largest payload once decompressed. */
#define ML_WIRE_MAX_RAW (64u << 20)
/* Payloads at least this large are LZ4-compressed. */
#define ML_WIRE_COMPRESS_MIN 256

/* Serializes msg (may be NULL: empty payload) into an Envelope. On success
 * *out is a malloc'd buffer of *out_len bytes owned by the caller.
 * status/error are for replies (0/NULL for requests).
 * Returns 0, -ENOMEM, or -EMSGSIZE when the result exceeds ML_WIRE_MAX_MESSAGE. */
int ml_wire_pack(const char *method, uint64_t call_id, int32_t status, const char *error,
                 const char *token, const ProtobufCMessage *msg, uint8_t **out, size_t *out_len);

/* An unpacked envelope: env is owned (free with ml_wire_msg_free); payload
 * points to the decompressed payload (owned when compressed, else into env). */
typedef struct ml_wire_msg {
    Microlog__V1__Envelope *env;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t *owned;
} ml_wire_msg;

/* Parses buf. Returns 0, -EMSGSIZE (too large), -EBADMSG (not an envelope,
 * bad compression, size mismatch), -EPROTO (unsupported version) or
 * -ENOMEM. On -EPROTO, out->env is set (so the caller can answer with the
 * call id) and must be freed. On the other errors out is untouched. */
int ml_wire_unpack(const uint8_t *buf, size_t len, ml_wire_msg *out);

void ml_wire_msg_free(ml_wire_msg *m);

/* A short English name for an -errno returned above. */
const char *ml_wire_strerror(int err);

#endif
