/*
 * fuzz_run_json: run.json files are read back from the data directory at
 * start-up and from the S3 bucket (written there by other collectors).
 * Input: the bytes of a run.json. Path under test: jansson's json_loadb
 * then ml_run_from_json, which must refuse names that could point outside
 * the data directory; an accepted run is written back with
 * ml_run_to_json and parsed again.
 * Invariants checked: an accepted run has a valid team, label and stamp
 * and id == label/stamp; it survives to_json -> from_json unchanged.
 */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "fuzz_common.h"
#include "run.h"
#include "runid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *j = json_loadb((const char *)data, size, 0, &err);
    if (j == NULL)
        return 0;
    ml_run *r = NULL;
    if (ml_run_from_json(j, &r) == 0) {
        FUZZ_CHECK(r != NULL);
        FUZZ_CHECK(ml_label_valid(r->team) && ml_label_valid(r->label) && ml_stamp_valid(r->stamp));
        char id[ML_RUN_ID_MAX + 2];
        snprintf(id, sizeof(id), "%s/%s", r->label, r->stamp);
        FUZZ_CHECK(strcmp(id, r->id) == 0);
        json_t *back = ml_run_to_json(r);
        ml_run *r2 = NULL;
        FUZZ_CHECK(back != NULL && ml_run_from_json(back, &r2) == 0);
        FUZZ_CHECK(strcmp(r2->id, r->id) == 0 && strcmp(r2->team, r->team) == 0);
        ml_run_free(r2);
        json_decref(back);
        ml_run_free(r);
    }
    json_decref(j);
    return 0;
}
