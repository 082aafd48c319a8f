/*
 * The spool file format, shared by the client (writer, and reader when it
 * delivers leftover spool files) and the collector (importer).
 *
 * A spool file holds one run that could not (yet) be delivered over the
 * network: the very request envelopes the client would have sent, so that
 * replaying them through the collector's ingest handler stores the run
 * exactly as a live delivery would (OpenRun is idempotent by run_uid,
 * batches are deduplicated by seq, CloseRun by the run's closed flag).
 *
 *   file   := magic(8) record*
 *   record := header(40) payload(len)
 *   header := u32 magic | u32 kind | u32 len | u32 zero | u64 seq |
 *             u64 call_id | u64 checksum          (all little-endian)
 *
 * checksum is XXH3-64 of the payload seeded with XXH3-64 of the first 32
 * header bytes, so a torn or corrupted record (a crash mid-append) is
 * detected and the file is read up to the last good record. The first
 * record is ML_SPOOL_META (payload: the collector's base URL the run was
 * meant for), then ML_SPOOL_OPEN, batches and at last ML_SPOOL_CLOSE.
 * The writer holds an exclusive flock() on the file while it may still
 * append; readers skip a locked file.
 *
 * Header-only, pure functions; any thread.
 */
#ifndef ML_SPOOL_FORMAT_H
#define ML_SPOOL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#define ML_SPOOL_FILE_MAGIC "MLSPOOL\001"
#define ML_SPOOL_FILE_MAGIC_LEN 8
#define ML_SPOOL_REC_MAGIC 0x52534c4du /* "MLSR" */
#define ML_SPOOL_HEADER 40
#define ML_SPOOL_SUFFIX ".mlspool"
/* Largest record payload: one envelope. */
#define ML_SPOOL_MAX_RECORD (16u << 20)

enum ml_spool_kind {
    ML_SPOOL_META = 1,  /* payload: the server URL (no NUL) */
    ML_SPOOL_OPEN = 2,  /* payload: an OpenRun request envelope */
    ML_SPOOL_BATCH = 3, /* payload: a Batch request envelope; seq set */
    ML_SPOOL_CLOSE = 4, /* payload: a CloseRun request envelope */
};

typedef struct ml_spool_rec {
    uint32_t kind;
    uint32_t len;
    uint64_t seq;
    uint64_t call_id;
    uint64_t checksum;
} ml_spool_rec;

static inline void ml_spool_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void ml_spool_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t ml_spool_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline uint64_t ml_spool_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Fills hdr (ML_SPOOL_HEADER bytes) for a record of kind with payload. */
static inline void ml_spool_header_encode(uint8_t *hdr, uint32_t kind, uint64_t seq,
                                          uint64_t call_id, const void *payload, size_t len)
{
    ml_spool_put32(hdr, ML_SPOOL_REC_MAGIC);
    ml_spool_put32(hdr + 4, kind);
    ml_spool_put32(hdr + 8, (uint32_t)len);
    ml_spool_put32(hdr + 12, 0);
    ml_spool_put64(hdr + 16, seq);
    ml_spool_put64(hdr + 24, call_id);
    uint64_t seed = XXH3_64bits(hdr, 32);
    ml_spool_put64(hdr + 32, XXH3_64bits_withSeed(payload, len, seed));
}

/* Parses a header. False when it is not a record header (bad magic, kind
 * or length): the file ends before it. */
static inline bool ml_spool_header_decode(const uint8_t *hdr, ml_spool_rec *out)
{
    if (ml_spool_get32(hdr) != ML_SPOOL_REC_MAGIC || ml_spool_get32(hdr + 12) != 0)
        return false;
    out->kind = ml_spool_get32(hdr + 4);
    out->len = ml_spool_get32(hdr + 8);
    out->seq = ml_spool_get64(hdr + 16);
    out->call_id = ml_spool_get64(hdr + 24);
    out->checksum = ml_spool_get64(hdr + 32);
    return out->kind >= ML_SPOOL_META && out->kind <= ML_SPOOL_CLOSE &&
           out->len <= ML_SPOOL_MAX_RECORD;
}

/* True when payload matches the checksum of the header it came with. */
static inline bool ml_spool_payload_ok(const uint8_t *hdr, const void *payload, size_t len)
{
    uint64_t seed = XXH3_64bits(hdr, 32);
    return XXH3_64bits_withSeed(payload, len, seed) == ml_spool_get64(hdr + 32);
}

#endif
