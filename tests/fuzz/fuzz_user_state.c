/* fuzz_user_state.c - libFuzzer target for the records driftrec reads back
 * from RocksDB (learner/records.c): user records of every version, as the
 * pipeline reads them (the configured dimension) and as `driftrec inspect`
 * does (the dimension written in the record), plus item and globals records.
 * Oracles beyond "no crash, no leak, no hang": a user that decodes has a
 * finite vector and bias, and re-encoding it is stable (encode, decode,
 * encode gives the same bytes). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"
#include "dr_learner.h"

static dr_learner_conf_t conf;
static dr_model_t *model;

static void die(const char *what) {
    (void)what;
    __builtin_trap();
}

static void check_user(const dr_learner_conf_t *c, const uint8_t *data, size_t size) {
    dr_user_t *u = NULL, *again = NULL;
    uint8_t *rec1 = NULL, *rec2 = NULL;
    size_t len1 = 0, len2 = 0;
    int rc = dr_user_decode(42, c, data, size, &u);
    if (rc) {
        if (rc != DR_ECORRUPT && rc != DR_ENOMEM) die("unexpected error code");
        if (u) die("output set on failure");
        return;
    }
    if (!isfinite(u->bias)) die("non-finite bias");
    for (int k = 0; k < c->dim; k++)
        if (!isfinite(u->v[k])) die("non-finite vector");
    if (u->recent_len > DR_RECENT_MAX || u->pending_len > DR_PENDING_IMP || u->last_list_len > DR_LAST_LIST)
        die("ring bounds");
    if (dr_user_encode(u, c->dim, &rec1, &len1) != 0) die("cannot re-encode");
    if (dr_user_decode(42, c, rec1, len1, &again) != 0) die("cannot decode our own record");
    if (dr_user_encode(again, c->dim, &rec2, &len2) != 0) die("cannot re-encode twice");
    if (len1 != len2 || memcmp(rec1, rec2, len1) != 0) die("re-encoding is not stable");
    free(rec1);
    free(rec2);
    dr_user_free(u);
    dr_user_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) {
        char err[256];
        dr_learner_conf_default(&conf);
        if (dr_model_new(&model, &conf, err, sizeof err)) die(err);
    }
    check_user(&conf, data, size);
    if (size >= 3) { /* as `driftrec inspect` reads it: the record's own dimension */
        dr_learner_conf_t own = conf;
        own.dim = data[1] | data[2] << 8;
        check_user(&own, data, size);
    }
    (void)dr_model_load_item(model, 1, data, size);
    (void)dr_model_load_globals(model, data, size);
    return 0;
}
