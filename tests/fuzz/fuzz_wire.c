/*
 * fuzz_wire: the collector's first look at a request from the network.
 * Input: the bytes of one nng message. Path under test: ml_wire_unpack
 * (size limits, version, LZ4), the protobuf-c decoding of the payload as
 * each request type, the batch validation against a run's live state, and
 * ml_run_from_open (the run an OpenRun becomes).
 * Invariants checked: an accepted batch packs again into an envelope that
 * unpacks (and, when the batch decodes again, with the same seq and stacks);
 * a refusal always comes with a reason; the names of a run built from any
 * OpenRun stay NUL-terminated within their buffers.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "live.h"
#include "log.h"
#include "run.h"
#include "validate.h"
#include "wire.h"

/* A run that has defined ids 1..40 in every table and stored batches 1..3:
 * references below, at and above the defined range all get exercised. */
static ml_live live;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ml_log_set_level(ML_LOG_ERROR + 1);
    for (uint32_t id = 1; id <= 40; id++) {
        ml_idset_add(&live.strings, id);
        ml_idset_add(&live.frames, id);
        ml_idset_add(&live.stacks, id);
        ml_idset_add(&live.threads, id);
    }
    live.acked_seq = 3;
    return 0;
}

static void check_batch(const uint8_t *p, size_t n)
{
    Microlog__V1__Batch *b = microlog__v1__batch__unpack(NULL, n, p);
    if (b == NULL)
        return;
    char err[256];
    err[0] = '\0';
    int rv = ml_batch_validate(&live, b, err, sizeof(err));
    FUZZ_CHECK(rv == 0 || (rv == -EINVAL && err[0] != '\0'));
    /* An accepted batch can always be packed again as an envelope (the
     * client's path) and that envelope unpacks. The batch inside need not
     * decode again: protobuf-c keeps an unknown field numbered 0 written
     * as an overlong varint tag, then packs it canonically and refuses it
     * (found by this target). Harmless here: the collector journals the
     * payload bytes it received, never a re-serialization. */
    uint8_t *buf;
    size_t len;
    if (rv == 0 && ml_wire_pack(ML_METHOD_BATCH, 7, 0, NULL, NULL, &b->base, &buf, &len) == 0) {
        ml_wire_msg m = {0};
        FUZZ_CHECK(ml_wire_unpack(buf, len, &m) == 0);
        Microlog__V1__Batch *b2 = microlog__v1__batch__unpack(NULL, m.payload_len, m.payload);
        FUZZ_CHECK(b2 == NULL || (b2->seq == b->seq && b2->n_stacks == b->n_stacks));
        if (b2 != NULL)
            microlog__v1__batch__free_unpacked(b2, NULL);
        ml_wire_msg_free(&m);
        free(buf);
    }
    microlog__v1__batch__free_unpacked(b, NULL);
}

static void check_open(const uint8_t *p, size_t n)
{
    Microlog__V1__OpenRun *o = microlog__v1__open_run__unpack(NULL, n, p);
    if (o == NULL)
        return;
    ml_run *r = ml_run_from_open("local", o);
    FUZZ_CHECK(r != NULL);
    /* fixed-size names stay NUL-terminated whatever the client sent */
    FUZZ_CHECK(strlen(r->label) <= ML_LABEL_MAX && strlen(r->team) <= ML_LABEL_MAX);
    ml_run_free(r);
    microlog__v1__open_run__free_unpacked(o, NULL);
}

static void check_close(const uint8_t *p, size_t n)
{
    Microlog__V1__CloseRun *c = microlog__v1__close_run__unpack(NULL, n, p);
    if (c != NULL)
        microlog__v1__close_run__free_unpacked(c, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ml_wire_msg m = {0};
    int rv = ml_wire_unpack(data, size, &m);
    if (rv == -EPROTO) {
        FUZZ_CHECK(m.env != NULL);
        ml_wire_msg_free(&m);
        return 0;
    }
    if (rv != 0) {
        FUZZ_CHECK(m.env == NULL); /* "on the other errors out is untouched" */
        FUZZ_CHECK(ml_wire_strerror(rv) != NULL);
        return 0;
    }
    FUZZ_CHECK(m.env != NULL && (m.payload != NULL || m.payload_len == 0));
    /* The dispatcher picks the type by method name; decoding the payload
     * as every type covers what a lying method name could reach. */
    check_batch(m.payload, m.payload_len);
    check_open(m.payload, m.payload_len);
    check_close(m.payload, m.payload_len);
    ml_wire_msg_free(&m);
    return 0;
}
