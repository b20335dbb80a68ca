/* learner_test.h - what the learner's tests share beside dr_test.h. */
#ifndef DR_LEARNER_TEST_H
#define DR_LEARNER_TEST_H

#include "dr_test.h"

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

#endif /* DR_LEARNER_TEST_H */
