/* test_feed.c - unit tests for feed/: the world (determinism per seed, truth
 * queries, the click model, heavy-tailed activity), the trending counts, the
 * session player, the CTR bookkeeping and the detection bookkeeping. No
 * Kafka: the simulator's client loop is exercised by tests/cli/test_demo.sh.
 * Each test quotes the claim of dr_feed.h it checks. */
#include "dr_test.h"

#include <math.h>

#include "dr_err.h"
#include "dr_feed.h"
#include "feed_internal.h"

static dr_feed_world_t *small_world(uint64_t seed) {
    dr_feed_conf_t c;
    dr_feed_conf_default(&c);
    c.users = 2000;
    c.items = 1000;
    c.rounds = 100;
    c.seed = seed;
    dr_feed_world_t *w = NULL;
    assert_int_equal(dr_feed_world_new(&w, &c), 0);
    return w;
}

/* The first user of the given kind (and not in the popular arm). */
static int64_t find_user(const dr_feed_world_t *w, dr_feed_drift_t kind) {
    for (int64_t id = 1; id <= (int64_t)dr_feed_world_conf(w)->users; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(w, id, &t);
        if (t.kind == kind && !t.popular) return id;
    }
    fail_msg("no user of kind %d", kind);
    return 0;
}

/* "seeded, reproducible": the same seed gives the same world, another seed
 * another one. */
static void test_world_deterministic(void **state) {
    (void)state;
    dr_feed_world_t *a = small_world(5), *b = small_world(5), *c = small_world(6);
    int differ = 0, relabelled = 0;
    for (int64_t id = 1; id <= 2000; id++) {
        dr_feed_truth_t ta, tb, tc;
        dr_feed_world_truth(a, id, &ta);
        dr_feed_world_truth(b, id, &tb);
        dr_feed_world_truth(c, id, &tc);
        assert_memory_equal(&ta, &tb, sizeof(ta));
        differ += ta.c0 != tc.c0 || ta.kind != tc.kind;
        /* not the same users under other ids: nearby ids of the other seed differ too */
        dr_feed_truth_t td;
        dr_feed_world_truth(c, id ^ 3, &td);
        relabelled += td.c0 == ta.c0 && td.activity == ta.activity;
        for (int r = 0; r < 100; r += 7)
            assert_int_equal(dr_feed_world_active(a, id, r), dr_feed_world_active(b, id, r));
    }
    assert_true(differ > 1000);
    assert_true(relabelled < 20);
    float ea[DR_FEED_CONTENT_DIM], eb[DR_FEED_CONTENT_DIM];
    for (int64_t item = 1; item <= 1000; item++) {
        assert_true(dr_feed_world_item_quality(a, item) == dr_feed_world_item_quality(b, item));
        dr_feed_world_item_embedding(a, item, ea);
        dr_feed_world_item_embedding(b, item, eb);
        assert_memory_equal(ea, eb, sizeof(ea));
    }
    dr_feed_world_free(a);
    dr_feed_world_free(b);
    dr_feed_world_free(c);
}

/* "0, DR_EINVAL (fewer than 3 clusters, no users, ...)" */
static void test_world_refuses_bad_conf(void **state) {
    (void)state;
    dr_feed_conf_t good, c;
    dr_feed_conf_default(&good);
    dr_feed_world_t *w = (dr_feed_world_t *)&c; /* must come back NULL */
    c = good; c.clusters = 2;
    assert_int_equal(dr_feed_world_new(&w, &c), DR_EINVAL);
    assert_null(w);
    c = good; c.users = 0;
    assert_int_equal(dr_feed_world_new(&w, &c), DR_EINVAL);
    c = good; c.switch_share = 0.7; c.gradual_share = 0.4;
    assert_int_equal(dr_feed_world_new(&w, &c), DR_EINVAL);
    c = good; c.session_min = 9; c.session_max = 3;
    assert_int_equal(dr_feed_world_new(&w, &c), DR_EINVAL);
    c = good; c.explore_share = 1.5;
    assert_int_equal(dr_feed_world_new(&w, &c), DR_EINVAL);
}

/* Ground truth: shares of abrupt / gradual / popular users near the
 * configuration, switches in the middle of the run, main cluster c0 -> c1
 * at the switch, gradual taste moving linearly, the item cluster rule. */
static void test_world_truth(void **state) {
    (void)state;
    dr_feed_world_t *w = small_world(3);
    int kinds[3] = {0, 0, 0}, popular = 0;
    for (int64_t id = 1; id <= 2000; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(w, id, &t);
        kinds[t.kind]++;
        popular += t.popular;
        assert_true(t.c0 >= 0 && t.c0 < 20 && t.c1 >= 0 && t.c1 < 20);
        if (t.kind == DR_FEED_STABLE) {
            assert_int_equal(t.c0, t.c1);
            continue;
        }
        assert_int_not_equal(t.c0, t.c1);
        assert_true(t.second != t.c1);
        int64_t before = t.from_ms - 1;
        assert_true(dr_feed_world_taste(w, id, t.c0, before) == 1.0);
        if (t.kind == DR_FEED_ABRUPT) {
            assert_true(t.from_round >= 35 && t.from_round < 60);
            assert_true(t.from_ms == t.to_ms && t.from_ms == dr_feed_world_round_ms(w, t.from_round));
            assert_true(dr_feed_world_taste(w, id, t.c1, t.from_ms) == 1.0);
            assert_true(dr_feed_world_taste(w, id, t.c0, t.from_ms) == 0.0);
        } else {
            int64_t mid = t.from_ms + (t.to_ms - t.from_ms) / 2;
            assert_true(fabs(dr_feed_world_taste(w, id, t.c1, mid) - 0.5) < 1e-9);
            assert_true(dr_feed_world_taste(w, id, t.c1, t.to_ms) == 1.0);
            assert_true(t.to_ms - t.from_ms == dr_feed_world_round_ms(w, 20) - dr_feed_world_round_ms(w, 0));
        }
    }
    assert_in_range(kinds[DR_FEED_ABRUPT], 320, 480);  /* 20% of 2000 */
    assert_in_range(kinds[DR_FEED_GRADUAL], 140, 260); /* 10% */
    assert_in_range(popular, 140, 260);                /* 10% */
    int round, cluster;
    int64_t shift_ms;
    dr_feed_world_shift(w, &round, &shift_ms, &cluster);
    assert_int_equal(round, 75);
    assert_true(shift_ms == dr_feed_world_round_ms(w, 75));
    /* the trending cluster is nobody's taste before it */
    for (int64_t id = 1; id <= 2000; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(w, id, &t);
        assert_true(t.c0 != cluster && t.c1 != cluster && t.second != cluster);
        assert_true(dr_feed_world_taste(w, id, cluster, shift_ms - 1) == 0.0);
    }
    assert_int_equal(dr_feed_world_round_of(w, shift_ms), 75);
    assert_int_equal(dr_feed_world_round_of(w, shift_ms - 1), 74);
    assert_int_equal(dr_feed_world_round_of(w, dr_feed_world_round_ms(w, 0) - 1), -1);
    assert_int_equal(dr_feed_world_item_cluster(w, 1), 0);
    assert_int_equal(dr_feed_world_item_cluster(w, 21), 0);
    assert_int_equal(dr_feed_world_item_cluster(w, 20), 19);
    dr_feed_world_free(w);
}

/* "examination(position) * sigmoid(logit)": in taste beats out of taste,
 * later slots are examined less, a recent click is repeated a tenth as
 * often; after the shift the trending cluster is in taste for everyone and
 * the user's own main cluster loses. */
static void test_click_model(void **state) {
    (void)state;
    dr_feed_world_t *w = small_world(9);
    int64_t user = find_user(w, DR_FEED_STABLE);
    dr_feed_truth_t t;
    dr_feed_world_truth(w, user, &t);
    int x;
    int64_t shift_ms, t0 = dr_feed_world_round_ms(w, 10);
    dr_feed_world_shift(w, NULL, &shift_ms, &x);
    /* an in-taste and an out-of-taste item of equal quality are hard to
     * find; compare averages over each cluster's items instead */
    double in = 0, out = 0;
    int n_in = 0, n_out = 0;
    for (int64_t item = 1; item <= 1000; item++) {
        int c = dr_feed_world_item_cluster(w, item);
        double p = dr_feed_world_click_prob(w, user, item, 0, t0, false);
        assert_true(p > 0 && p < 1);
        if (c == t.c0) in += p, n_in++;
        else if (c != t.second) out += p, n_out++;
        double q = dr_feed_world_item_quality(w, item);
        assert_true(q > -1.3 && q < 1.3);
        assert_true(dr_feed_world_click_prob(w, user, item, 5, t0, false) < p);
        assert_true(fabs(dr_feed_world_click_prob(w, user, item, 0, t0, true) - 0.1 * p) < 1e-12);
    }
    in /= n_in;
    out /= n_out;
    assert_true(in > 0.8 && in < 0.93);  /* ~sigmoid(2) */
    assert_true(out > 0.01 && out < 0.08); /* ~sigmoid(-3.5) */
    /* the population shift */
    int64_t own = t.c0 + 1, trend = x + 1; /* items of the main and the trending cluster */
    if (t.c0 != x && t.second != x) {
        assert_true(dr_feed_world_logit(w, user, own, shift_ms) <
                    dr_feed_world_logit(w, user, own, shift_ms - 1) - 1.99);
        assert_true(dr_feed_world_logit(w, user, trend, shift_ms) >
                    dr_feed_world_logit(w, user, trend, shift_ms - 1) + 3);
        assert_false(dr_feed_world_in_taste(w, user, trend, shift_ms - 1));
        assert_true(dr_feed_world_in_taste(w, user, trend, shift_ms));
    }
    dr_feed_world_free(w);
}

/* "Activity heavy-tailed: most users a few sessions, some one in nearly
 * every round", and the coin of dr_feed_world_active has that probability. */
static void test_activity_heavy_tailed(void **state) {
    (void)state;
    dr_feed_conf_t c;
    dr_feed_conf_default(&c);
    dr_feed_world_t *w = NULL;
    assert_int_equal(dr_feed_world_new(&w, &c), 0);
    uint64_t users = c.users, heavy = 0, light = 0;
    double *act = malloc(users * sizeof(double)), sum = 0;
    for (uint64_t id = 1; id <= users; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(w, (int64_t)id, &t);
        act[id - 1] = t.activity * c.rounds; /* expected sessions */
        sum += act[id - 1];
        heavy += act[id - 1] >= 200;
        light += act[id - 1] <= 25;
        assert_true(t.activity >= c.activity_min && t.activity <= c.activity_max);
    }
    assert_true(light > users / 2);          /* most users: a few sessions */
    assert_true(heavy > users / 100);        /* some: nearly every round */
    assert_true(sum / (double)users > 25);   /* the tail carries the mean */
    /* the per-round coin follows the probability */
    for (uint64_t id = 1; id <= 50; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(w, (int64_t)id, &t);
        int on = 0;
        for (int r = 0; r < 2000; r++) on += dr_feed_world_active(w, (int64_t)id, r);
        assert_true(fabs(on / 2000.0 - t.activity) < 0.05);
    }
    free(act);
    dr_feed_world_free(w);
}

/* Trending: decayed counts, most clicked first. */
static void test_trending(void **state) {
    (void)state;
    feed_trending_t t;
    assert_int_equal(dr__feed_trending_init(&t, 100), 0);
    for (int i = 0; i < 5; i++) dr__feed_trending_click(&t, 7);
    for (int i = 0; i < 3; i++) dr__feed_trending_click(&t, 3);
    dr__feed_trending_click(&t, 0);   /* ignored: not an item */
    dr__feed_trending_click(&t, 101); /* ignored */
    dr__feed_trending_roll(&t);
    assert_int_equal(t.n_top, 2);
    assert_int_equal(t.top[0], 7);
    assert_int_equal(t.top[1], 3);
    for (int i = 0; i < 10; i++) dr__feed_trending_click(&t, 3);
    for (int i = 1; i <= 60; i++) dr__feed_trending_click(&t, 40 + i % 60);
    dr__feed_trending_roll(&t);
    assert_int_equal(t.n_top, FEED_TREND_TOP);
    assert_int_equal(t.top[0], 3);
    for (int i = 1; i < t.n_top; i++) assert_true(t.count[t.top[i - 1]] >= t.count[t.top[i]]);
    dr__feed_trending_free(&t);
}

typedef struct capture {
    dr_event_t ev[4096];
    int n;
} capture_t;

static int capture_emit(void *ctx, int64_t user_id, const dr_event_t *ev) {
    capture_t *c = ctx;
    assert_true(ev->user_id == user_id);
    if (c->n < 4096) c->ev[c->n++] = *ev;
    return 0;
}

/* A session: S impressions (5..15), in the round, 2 s apart, each click
 * followed by a dwell; list items from the top unless explored. */
static void test_session(void **state) {
    (void)state;
    dr_feed_world_t *w = small_world(4);
    dr_feed_measure_t *m = NULL;
    assert_int_equal(dr_feed_measure_new(&m, w), 0);
    feed_trending_t trend;
    assert_int_equal(dr__feed_trending_init(&trend, 1000), 0);
    capture_t *cap = calloc(1, sizeof(*cap));
    feed_player_t p = {.w = w, .trend = &trend, .measure = m, .rng = 42, .emit = capture_emit,
                       .emit_ctx = cap};
    int64_t user = find_user(w, DR_FEED_STABLE);
    feed_user_t u = {.arm = DR_FEED_ARM_DRIFT, .list_len = FEED_LIST_MAX};
    for (int i = 0; i < FEED_LIST_MAX; i++) u.list[i] = 500 + i;
    int from_list = 0, total = 0, clicks_seen = 0, stale = 0, repeats = 0;
    for (int s = 0; s < 50; s++) {
        cap->n = 0;
        feed_session_counts_t sc;
        assert_int_equal(dr__feed_play_session(&p, &u, user, 10, &sc), 0);
        int n = sc.impressions, k = sc.clicks;
        if (s == 0) assert_int_equal(sc.repeat_shown, 0); /* nothing passed over yet */
        assert_true(sc.stale_shown <= sc.repeat_shown);
        stale += sc.stale_shown;
        repeats += sc.repeat_shown;
        assert_in_range(n, 5, 15);
        int imps = 0, clicks = 0, next_list = 0;
        int64_t last_imp = 0;
        for (int e = 0; e < cap->n; e++) {
            const dr_event_t *ev = &cap->ev[e];
            assert_int_equal(dr_feed_world_round_of(w, ev->timestamp_ms), 10);
            if (ev->type == DR_EV_IMPRESSION) {
                if (imps > 0) assert_true(ev->timestamp_ms == last_imp + FEED_EVENT_GAP_MS);
                last_imp = ev->timestamp_ms;
                imps++;
                if (ev->item_id == u.list[next_list]) from_list++, next_list++;
            } else if (ev->type == DR_EV_CLICK) {
                clicks++;
                assert_true(ev->timestamp_ms == last_imp + 500);
                assert_int_equal(cap->ev[e + 1].type, DR_EV_DWELL);
                assert_true(cap->ev[e + 1].value >= 5 && cap->ev[e + 1].value <= 45);
            }
        }
        assert_int_equal(imps, n);
        assert_int_equal(clicks, k);
        total += n;
        clicks_seen += k;
    }
    /* the same list 50 times: its unclicked items come back, stale soon */
    assert_true(repeats > 0 && stale > 0);
    /* ~80% of the slots come from the list */
    assert_true(from_list > total * 0.7 && from_list < total * 0.9);
    assert_true(clicks_seen > 0);
    dr_feed_report_t r;
    dr_feed_measure_report(m, &r);
    assert_int_equal(r.impressions[DR_FEED_ARM_DRIFT], total);
    assert_int_equal(r.clicks[DR_FEED_ARM_DRIFT], clicks_seen);
    assert_int_equal(r.round_impressions[DR_FEED_ARM_DRIFT][10], total);
    assert_int_equal(r.cold.impressions[DR_FEED_ARM_DRIFT], DR_FEED_COLD);
    assert_int_equal(r.cold.users[DR_FEED_ARM_DRIFT], 1);
    /* a user without a list gets organic items only */
    feed_user_t fresh = {.arm = DR_FEED_ARM_CONTROL};
    feed_session_counts_t sc;
    assert_int_equal(dr__feed_play_session(&p, &fresh, user + 1, 11, &sc), 0);
    free(cap);
    dr__feed_trending_free(&trend);
    dr_feed_measure_free(m);
    dr_feed_world_free(w);
}

/* Abrupt switch bookkeeping: eligible after 100 pre-switch impressions, the
 * pre-switch CTR from the last 50, recovery = the first index whose smoothed
 * CTR is back to 90% of it. */
static void test_measure_switch(void **state) {
    (void)state;
    dr_feed_world_t *w = small_world(8);
    dr_feed_measure_t *m = NULL;
    assert_int_equal(dr_feed_measure_new(&m, w), 0);
    int64_t shift_ms;
    dr_feed_world_shift(w, NULL, &shift_ms, NULL);
    int eligible = 0;
    for (int64_t id = 1; id <= 2000 && eligible < 120; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(w, id, &t);
        if (t.kind != DR_FEED_ABRUPT || t.popular) continue;
        dr_feed_measure_set_arm(m, id, DR_FEED_ARM_CONTROL);
        eligible++;
        /* 150 impressions before: the last 50 click every other time */
        for (int i = 0; i < 150; i++)
            dr_feed_measure_impression(m, id, t.from_ms - 150 + i, i >= 100 && i % 2 == 0);
        /* after: nothing for 60 impressions, then the old rate */
        for (int i = 0; i < 200; i++)
            dr_feed_measure_impression(m, id, t.from_ms + i, i >= 60 && i % 2 == 0);
        assert_true(t.from_ms + 200 < shift_ms);
    }
    dr_feed_report_t r;
    dr_feed_measure_report(m, &r);
    assert_int_equal(r.sw.eligible[1], eligible);
    assert_int_equal(r.sw.eligible[0], 0);
    assert_true(fabs(r.sw.pre_ctr[1] - 0.5) < 1e-9);
    assert_true(isnan(r.sw.pre_ctr[0]));
    assert_int_equal(r.sw.recovery[0], -1);
    /* smoothed over 20: back to 0.45 once 18 of the last 20 are at the old rate */
    assert_in_range(r.sw.recovery[1], 60 + 16, 60 + 19);
    const int zero = -DR_FEED_CURVE_FROM;
    assert_true(fabs(r.sw.curve[1][zero - 1] - 0.5) < 0.03);
    assert_true(r.sw.curve[1][zero + 30] == 0.0);
    assert_int_equal(r.sw.curve_n[1][zero + 10], eligible);
    assert_true(fabs(r.sw.post_ctr[1] - 70.0 / 200) < 1e-9);
    dr_feed_measure_free(m);
    dr_feed_world_free(w);
}

/* The shift dip: pre-shift CTR over the 10 rounds before, its depth and
 * the rounds until the arm is back to 90% of it. */
static void test_measure_shift_dip(void **state) {
    (void)state;
    dr_feed_world_t *w = small_world(8);
    dr_feed_measure_t *m = NULL;
    assert_int_equal(dr_feed_measure_new(&m, w), 0);
    int shift;
    dr_feed_world_shift(w, &shift, NULL, NULL);
    int64_t user = find_user(w, DR_FEED_STABLE);
    /* CTR 0.4 before, 0.1 in the shift round, rising 0.1 per round after */
    for (int r = shift - 10; r < shift + 6; r++) {
        int clicks = r < shift ? 40 : 10 + 10 * (r - shift);
        for (int i = 0; i < 100; i++)
            dr_feed_measure_impression(m, user, dr_feed_world_round_ms(w, r) + i, i < clicks);
    }
    dr_feed_report_t rep;
    dr_feed_measure_report(m, &rep);
    assert_true(fabs(rep.shift.pre_ctr[0] - 0.4) < 1e-9);
    assert_true(fabs(rep.shift.depth[0] - 0.3) < 1e-9);
    assert_int_equal(rep.shift.rounds_to_90[0], 3); /* 0.4 again 3 rounds after */
    assert_int_equal(rep.shift.rounds_to_90[1], -1);
    assert_true(isnan(rep.shift.pre_ctr[1]));
    dr_feed_measure_free(m);
    dr_feed_world_free(w);
}

/* Detection: delay in labelled events from the switch to the first cut for
 * the worse; false alarms of stable users before the shift, improving cuts
 * apart; the shift's first global cut. */
static void test_detect(void **state) {
    (void)state;
    dr_feed_world_t *w = small_world(8);
    dr_feed_detect_t *d = NULL;
    assert_int_equal(dr_feed_detect_new(&d, w), 0);
    int64_t ab = find_user(w, DR_FEED_ABRUPT), st = find_user(w, DR_FEED_STABLE), shift_ms;
    dr_feed_world_shift(w, NULL, &shift_ms, NULL);
    dr_feed_truth_t t;
    dr_feed_world_truth(w, ab, &t);
    dr_feed_obs_t quiet = {.drift_arm = true}, cut = {.drift = true, .drift_direction = 1, .drift_arm = true};
    dr_event_t ev = {.user_id = ab, .item_id = 1, .type = DR_EV_IMPRESSION};
    for (int i = 0; i < 120; i++) {
        ev.timestamp_ms = t.from_ms - 1000 + i;
        dr_feed_detect_observe(d, &ev, i == 50 ? &cut : &quiet); /* before: not a detection */
    }
    for (int i = 1; i <= 40; i++) {
        ev.timestamp_ms = t.from_ms + i;
        ev.type = i % 2 ? DR_EV_IMPRESSION : DR_EV_CLICK;
        dr_feed_detect_observe(d, &ev, i == 31 ? &cut : &quiet);
    }
    /* a stable user: 1000 labelled events, 2 cuts for the worse, 1 improving */
    dr_feed_obs_t better = {.drift = true, .drift_direction = -1};
    dr_feed_obs_t unknown = {.drift = true}; /* direction not told: counts as worse */
    ev = (dr_event_t){.user_id = st, .item_id = 2, .type = DR_EV_IMPRESSION};
    for (int i = 0; i < 1000; i++) {
        ev.timestamp_ms = shift_ms - 100000 + i;
        dr_feed_detect_observe(d, &ev, i == 10 ? &cut : i == 20 ? &better : i == 30 ? &unknown : &quiet);
    }
    ev.timestamp_ms = shift_ms; /* after the shift: not a false alarm */
    dr_feed_detect_observe(d, &ev, &cut);
    for (int i = 0; i < 9; i++) dr_feed_detect_observe(d, &ev, &quiet);
    dr_feed_obs_t global = {.global_drift = true, .global_direction = 1};
    dr_feed_detect_observe(d, &ev, &global);
    dr_feed_detect_summary_t s;
    assert_int_equal(dr_feed_detect_summary(d, &s), 0);
    assert_int_equal(s.eligible[0], 1);
    assert_int_equal(s.detected[0], 1);
    assert_true(s.delay_median == 16 && s.arm_delay_median[0] == 16); /* impressions 1, 3, ..., 31 */
    assert_true(isnan(s.arm_delay_median[1]));
    assert_int_equal(s.stable_labelled, 1000);
    assert_int_equal(s.cuts, 2);
    assert_int_equal(s.improving_cuts, 1);
    assert_int_equal(s.shift_detected_after, 11);
    dr_feed_detect_free(d);
    dr_feed_world_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_deterministic),
        cmocka_unit_test(test_world_refuses_bad_conf),
        cmocka_unit_test(test_world_truth),
        cmocka_unit_test(test_click_model),
        cmocka_unit_test(test_activity_heavy_tailed),
        cmocka_unit_test(test_trending),
        cmocka_unit_test(test_session),
        cmocka_unit_test(test_measure_switch),
        cmocka_unit_test(test_measure_shift_dip),
        cmocka_unit_test(test_detect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
