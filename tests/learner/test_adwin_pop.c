/* test_adwin_pop.c - claims of the population drift detector (dr_adwin.h,
 * learner/adwin_pop.c) on streams of 0/1 drift samples: a step of the kind
 * a population-wide shift makes is flagged within a few blocks (and was
 * not, unmagnified), a stream that holds still or ages slowly never is, and
 * a fall is never a drift. */
#include "dr_test.h"

#include "dr_adwin.h"
#include "dr_bytes.h"
#include "dr_err.h"

#define BLOCK 100

static dr_adwin_pop_t new_detector(double scale) {
    dr_adwin_pop_t d;
    dr_adwin_pop_conf_t c = {0.01, BLOCK, scale, 0.07}; /* the shipped drift.global.* */
    assert_int_equal(dr_adwin_pop_init(&d, &c), 0);
    return d;
}

/* Feeds `blocks` blocks of samples, each a miss with probability p(block);
 * returns the first block (from 0) whose last sample gave a drift, or -1,
 * and counts the drifts. */
static int feed(dr_adwin_pop_t *d, uint64_t *rng, int blocks, double p0, double p1, int step_at,
                double ramp_per_block, int *drifts) {
    int first = -1;
    for (int b = 0; b < blocks; b++) {
        double p = (b < step_at ? p0 : p1) + ramp_per_block * b;
        for (int k = 0; k < BLOCK; k++) {
            double x = dr_rand01(rng) < p ? 1.0 : 0.0;
            if (dr_adwin_pop_observe(d, x, NULL) == DR_ADWIN_POP_DRIFT) {
                (*drifts)++;
                if (first < 0) first = b;
            }
        }
    }
    return first;
}

/* The closed-loop demo's shift: the miss rate steps from 0.58 to 0.74
 * (CTR 0.42 to 0.26). Magnified 4×, it is flagged within 20 blocks (2,000
 * samples) in each of 10 streams, never before the step; unmagnified
 * (scale 1: ADWIN on the block means as they are) it takes over 30 in every
 * one. */
static void test_step_flagged_within_blocks(void **state) {
    (void)state;
    int worst = 0, worst_plain = 1 << 30;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        uint64_t rng = seed;
        dr_adwin_pop_t d = new_detector(4.0);
        int drifts = 0;
        assert_int_equal(feed(&d, &rng, 300, 0.58, 0.58, 300, 0, &drifts), -1);
        int at = feed(&d, &rng, 60, 0.58, 0.74, 0, 0, &drifts);
        assert_true(at >= 0);
        if (at > worst) worst = at;
        dr_adwin_pop_free(&d);
        rng = seed;
        d = new_detector(1.0);
        drifts = 0;
        feed(&d, &rng, 300, 0.58, 0.58, 300, 0, &drifts);
        at = feed(&d, &rng, 60, 0.58, 0.74, 0, 0, &drifts);
        if (at < 0) at = 60;
        if (at < worst_plain) worst_plain = at;
        dr_adwin_pop_free(&d);
    }
    print_message("      step 0.58 -> 0.74: flagged after at most %d blocks magnified, at least %d plain\n",
                  worst + 1, worst_plain + 1);
    assert_true(worst + 1 <= 20);
    assert_true(worst_plain + 1 > 30);
}

/* No drift on 3,000 blocks that hold still, nor on a population that ages
 * slowly (+0.03 over 3,000 blocks), nor on a fall of the miss rate (the
 * model learning). */
static void test_no_drift_when_still_slow_or_better(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 5; seed++) {
        uint64_t rng = seed * 7919;
        int drifts = 0;
        dr_adwin_pop_t d = new_detector(4.0);
        feed(&d, &rng, 3000, 0.6, 0.6, 3000, 0, &drifts);
        assert_int_equal(drifts, 0);
        dr_adwin_pop_free(&d);
        d = new_detector(4.0);
        feed(&d, &rng, 3000, 0.6, 0.6, 3000, 0.03 / 3000, &drifts);
        assert_int_equal(drifts, 0);
        dr_adwin_pop_free(&d);
        d = new_detector(4.0);
        feed(&d, &rng, 300, 0.74, 0.58, 100, 0, &drifts);
        assert_int_equal(drifts, 0);
        dr_adwin_pop_free(&d);
    }
}

static void test_bad_settings(void **state) {
    (void)state;
    dr_adwin_pop_t d;
    dr_adwin_pop_conf_t c = {0.01, 0, 4.0, 0.05};
    assert_int_equal(dr_adwin_pop_init(&d, &c), DR_ECONFIG);
    c.block = 10;
    c.scale = 0.5;
    assert_int_equal(dr_adwin_pop_init(&d, &c), DR_ECONFIG);
    c.scale = 4.0;
    c.delta = 0.0;
    assert_int_equal(dr_adwin_pop_init(&d, &c), DR_ECONFIG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_flagged_within_blocks),
        cmocka_unit_test(test_no_drift_when_still_slow_or_better),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
