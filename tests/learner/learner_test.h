/* learner_test.h - what the learner's tests share beside dr_test.h. */
#ifndef DR_LEARNER_TEST_H
#define DR_LEARNER_TEST_H

#include "dr_test.h"

#include <stdlib.h>
#include <string.h>

#include "dr_learner.h"

/* dst takes what a restart reads of src's store: src's globals, then the
 * records of every item src holds dirty (drained: src's are clean after). */
static inline void copy_stored_model(dr_model_t *src, dr_model_t *dst) {
    uint8_t *g;
    size_t glen;
    assert_int_equal(dr_model_encode_globals(src, &g, &glen), 0);
    assert_int_equal(dr_model_load_globals(dst, g, glen), 0);
    free(g);
    assert_int_equal(dr_model_drain_dirty_items(src, (dr_item_sink_fn)dr_model_load_item, dst), 0);
}

/* Holds the record of one item, as a commit's sink saw it. */
typedef struct kept_record {
    int64_t item_id;
    uint8_t buf[8192];
    size_t len;
} kept_record_t;

static inline int keep_record(void *ctx, int64_t item_id, const void *rec, size_t len) {
    kept_record_t *k = ctx;
    if (item_id != k->item_id) return 0;
    assert_true(len <= sizeof(k->buf));
    memcpy(k->buf, rec, len);
    k->len = len;
    return 0;
}

/* Decodes, under c, a copy of the user record rec with `n` bytes at `at`
 * replaced by `bytes`. */
static inline int decode_patched(const dr_learner_conf_t *c, const uint8_t *rec, size_t len, size_t at,
                                 const void *bytes, size_t n) {
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, rec, len);
    assert_true(at + n <= len);
    memcpy(copy + at, bytes, n);
    dr_user_t *u = NULL;
    int err = dr_user_decode(7, c, copy, len, &u);
    if (err) assert_null(u);
    dr_user_free(u);
    free(copy);
    return err;
}

/* Loads into m a copy of the globals record g with `n` bytes at `at`
 * replaced by `bytes`. */
static inline int globals_patched(dr_model_t *m, const uint8_t *g, size_t len, size_t at, const void *bytes,
                                  size_t n) {
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, g, len);
    assert_true(at + n <= len);
    memcpy(copy + at, bytes, n);
    int err = dr_model_load_globals(m, copy, len);
    free(copy);
    return err;
}

#endif /* DR_LEARNER_TEST_H */
