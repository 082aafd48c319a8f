/*
 * fuzz_spool: the client's reader of spool files, the runs a client could
 * not deliver and left on disk for itself or another client to send later
 * (proto/spool_format.h). Input: the contents of a .mlspool file. Path
 * under test: ml__spool_open_leftover (file magic, META record, locking)
 * and ml__spool_read over every record (header decode, checksum), then the
 * envelope of each record as the collector will decode it.
 * Invariants checked: offsets only move forward and stay inside the file;
 * a record read has the length its header announced and a known kind.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../../client/src/internal.h"
#include "fuzz_common.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("run" ML_SPOOL_SUFFIX, data, size);
    ml__spool sp;
    char server[256];
    int rv = ml__spool_open_leftover(&sp, path, server, sizeof(server));
    if (rv != 0) {
        FUZZ_CHECK(rv < 0 && rv != -EAGAIN); /* nobody else holds the lock */
        return 0;
    }
    FUZZ_CHECK(strlen(server) < sizeof(server));
    FUZZ_CHECK(sp.off >= ML_SPOOL_FILE_MAGIC_LEN + ML_SPOOL_HEADER && sp.off <= size);
    uint64_t off = sp.off;
    for (;;) {
        ml_spool_rec rec;
        uint8_t *payload = NULL;
        uint64_t next = 0;
        rv = ml__spool_read(&sp, off, &rec, &payload, &next);
        if (rv != 0) {
            FUZZ_CHECK(rv == -ENODATA || rv == -EBADMSG);
            break;
        }
        FUZZ_CHECK(rec.kind >= ML_SPOOL_META && rec.kind <= ML_SPOOL_CLOSE);
        FUZZ_CHECK(next == off + ML_SPOOL_HEADER + rec.len && next <= size);
        ml_wire_msg m = {0};
        if (ml_wire_unpack(payload, rec.len, &m) == 0 || m.env != NULL)
            ml_wire_msg_free(&m);
        free(payload);
        off = next;
    }
    ml__spool_free(&sp);
    return 0;
}
