/* test_learner.c - claims of dr_learner.h: the update rules, label mapping,
 * numerical safety and exact record round trips. */
#include "learner_test.h"

#include <math.h>

#include "dr_bytes.h"
#include "dr_log.h"
#include "dr_err.h"
#include "dr_learner.h"

/* Bytes of a user record's last sections: the seen-posts filter's flag and
 * the filter when it holds anything (version 7), the hidden authors and
 * topics (version 8). */
#define RING_BYTES(r) (2 + 8 * (size_t)(r).len)
#define REST_BYTES(u) (1 + ((u)->rest.gen_start_ms ? 8 + sizeof((u)->rest.counts) + sizeof((u)->rest.resting) : 0) + \
                       RING_BYTES((u)->hidden_authors) + RING_BYTES((u)->hidden_topics) + 8 /* v9 */ + \
                       RATING_BYTES(u) + RING_BYTES((u)->passed_topics) /* v12 */)
/* version 10: the rating blend's part, with a residual per ring entry, when the user has ratings */
#define RATING_BYTES(u) (1 + ((u)->rating.n ? 4 * (8 + DR_RATING_USER_INPUTS * (1 + DR_RATING_USER_INPUTS)) + \
                                                  4 * (size_t)(u)->recent_len : 0))

static dr_model_t *new_model(dr_learn_mode_t mode) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.mode = mode;
    c.dim = 8;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    return m;
}

static dr_event_t ev(int64_t user, int64_t item, dr_event_type_t t, float v, int64_t ts) {
    dr_event_t e = {user, item, t, v, ts};
    return e;
}

/* The co-engagement term as it was before issue 15 (counts that never
 * fade, 1 a pair, every source alike, n_c^-1/2, no second hop): the tests
 * whose claims are about the tables, not the weighting, check it by hand. */
static void classic_cooc(dr_learner_conf_t *c) {
    c->cooc_halflife = 0;
    c->cooc_pair_decay = 0;
    c->cooc_query_decay = 0;
    c->cooc_source_norm = 0;
    c->cooc_candidate_norm = 0.5f;
    c->cooc_hop_weight = 0;
}

/* "a new user starts at v_u = 0 (the prior)" */
static void test_new_user_at_prior(void **state) {
    (void)state;
    dr_user_t *u = dr_user_new(7, 8);
    for (int k = 0; k < 8; k++) assert_true(u->v[k] == 0.0f);
    assert_int_equal(u->events_applied, 0);
    dr_user_free(u);
}

/* Clicks on one item raise its score for the user; hides lower it. */
static void test_positive_and_negative_labels(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    dr_user_t *u = dr_user_new(1, 8);
    dr_apply_result_t r;
    dr_event_t click = ev(1, 100, DR_EV_CLICK, 0, 1000);
    assert_int_equal(dr_learner_apply(m, u, &click, 1, &r), 0);
    int64_t idx = dr_model_item_index(m, 100, false);
    assert_true(idx >= 0);
    float before = dr_model_score(m, u, idx);
    for (int i = 0; i < 5; i++) assert_int_equal(dr_learner_apply(m, u, &click, (uint64_t)i + 2, &r), 0);
    assert_true(r.learned);
    float after_clicks = dr_model_score(m, u, idx);
    assert_true(after_clicks > before);
    dr_event_t hide = ev(1, 100, DR_EV_HIDE, 0, 2000);
    for (int i = 0; i < 5; i++) assert_int_equal(dr_learner_apply(m, u, &hide, 9, &r), 0);
    assert_true(dr_model_score(m, u, idx) < after_clicks);
    assert_int_equal(u->events_applied, 11);
    dr_user_free(u);
    dr_model_free(m);
}

/* "an IMPRESSION not followed by engagement is a weak negative": an
 * impression alone changes nothing until it goes stale or the ring fills. */
static void test_impression_weak_negative(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    dr_user_t *u = dr_user_new(1, 8), *v = dr_user_new(2, 8);
    dr_apply_result_t r;
    dr_event_t imp = ev(1, 5, DR_EV_IMPRESSION, 0, 0);
    assert_int_equal(dr_learner_apply(m, u, &imp, 1, &r), 0);
    assert_false(r.learned);
    assert_int_equal(u->pending_len, 1);
    /* engaged in time: the impression is cancelled, no negative step */
    dr_event_t click = ev(1, 5, DR_EV_CLICK, 0, 1000);
    assert_int_equal(dr_learner_apply(m, u, &click, 2, &r), 0);
    assert_int_equal(u->pending_len, 0);
    /* not engaged: a later event past the timeout applies the negative */
    imp.user_id = 2;
    assert_int_equal(dr_learner_apply(m, v, &imp, 3, &r), 0);
    int64_t idx = dr_model_item_index(m, 5, false);
    float s0 = dr_model_score(m, v, idx);
    dr_event_t later = ev(2, 6, DR_EV_IMPRESSION, 0, 10 * 60 * 1000);
    assert_int_equal(dr_learner_apply(m, v, &later, 4, &r), 0);
    assert_true(r.updates >= 1);
    assert_true(dr_model_score(m, v, idx) < s0);
    dr_user_free(u);
    dr_user_free(v);
    dr_model_free(m);
}

/* Rating mode: repeated ratings move the prediction toward the rating. */
static void test_rating_mode_converges(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_RATING);
    dr_user_t *u = dr_user_new(1, 8);
    dr_apply_result_t r;
    dr_event_t rate = ev(1, 3, DR_EV_RATE, 4.5f, 0);
    float first = -1;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(dr_learner_apply(m, u, &rate, (uint64_t)i, &r), 0);
        if (i == 0) first = fabsf(r.prediction - 4.5f);
    }
    assert_true(fabsf(r.prediction - 4.5f) < first);
    assert_true(fabsf(r.prediction - 4.5f) < 0.2f);
    /* non-RATE events carry no label in rating mode */
    dr_event_t click = ev(1, 3, DR_EV_CLICK, 0, 0);
    assert_int_equal(dr_learner_apply(m, u, &click, 1, &r), 0);
    assert_false(r.learned);
    dr_user_free(u);
    dr_model_free(m);
}

/* "Keep the update numerically safe (clip gradients, bound norms; no NaN
 * can enter state)": extreme ratings leave every parameter finite and
 * bounded. */
static void test_no_nan_and_bounded_norms(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_RATING);
    dr_user_t *u = dr_user_new(1, 8);
    dr_apply_result_t r;
    for (int i = 0; i < 1000; i++) {
        dr_event_t e = ev(1, i % 7, DR_EV_RATE, (i % 2) ? 1e6f : -1e6f, i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    float n2 = 0;
    for (int k = 0; k < 8; k++) {
        assert_true(isfinite(u->v[k]));
        n2 += u->v[k] * u->v[k];
    }
    assert_true(sqrtf(n2) <= dr_model_conf(m)->max_norm * 1.001f);
    dr_items_view_t v;
    dr_model_items(m, &v);
    for (size_t i = 0; i < v.n * 8; i++) assert_true(isfinite(v.q[i]));
    dr_user_free(u);
    dr_model_free(m);
}

/* A stored record's last list, read without decoding it (the withdrawal
 * sweep's look at every stored user), is the decoded user's, past a full
 * ring of recent events and pending impressions; every truncation of its
 * start is refused without reading beyond it (ASan), and so is a record
 * whose start is not a user record's. */
static void test_record_last_list_without_decoding(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    dr_user_t *u = dr_user_new(7, 8);
    dr_apply_result_t r;
    for (int i = 0; i < 80; i++) { /* impressions stay pending until clicked or stale */
        dr_event_t e = ev(7, 100 + i % 37, i % 3 ? DR_EV_IMPRESSION : DR_EV_CLICK, 0, 1000 + i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    u->last_source.partition = 5;
    u->last_list_len = DR_LAST_LIST;
    for (int i = 0; i < DR_LAST_LIST; i++) u->last_list[i] = 1000 + 3 * i;
    assert_true(u->recent_len > 0 && u->pending_len > 0);
    uint8_t *rec;
    size_t len;
    assert_int_equal(dr_user_encode(u, 8, &rec, &len), 0);
    int64_t list[DR_LAST_LIST];
    size_t n = 0;
    int32_t part = -2;
    assert_int_equal(dr_user_record_last_list(rec, len, &part, list, &n), 0);
    assert_int_equal(part, 5);
    assert_int_equal(n, DR_LAST_LIST);
    assert_memory_equal(list, u->last_list, sizeof(list));
    size_t head = 1 + 2 + 8 + 8 + 4 + 8 + 4 + 2 + 13 * (size_t)u->recent_len + 1 + 16 * (size_t)u->pending_len + 1 +
                  8 * (size_t)DR_LAST_LIST; /* where the list ends */
    for (size_t cut = 0; cut < head; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exactly cut bytes: a read past them is ASan's */
        memcpy(copy, rec, cut);
        assert_int_equal(dr_user_record_last_list(copy, cut, &part, list, &n), DR_ECORRUPT);
        assert_int_equal(n, 0);
        free(copy);
    }
    assert_int_equal(dr_user_record_last_list(rec, head, &part, list, &n), 0);
    rec[0] = 0; /* no such version */
    assert_int_equal(dr_user_record_last_list(rec, len, &part, list, &n), DR_ECORRUPT);
    free(rec);
    dr_user_free(u);
    dr_model_free(m);
}

/* Records round-trip bit-exactly; corrupt or foreign records are refused. */
static void test_records_round_trip(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    dr_user_t *u = dr_user_new(42, 8);
    dr_apply_result_t r;
    for (int i = 0; i < 50; i++) {
        dr_event_t e = ev(42, 10 + i % 9, i % 5 ? DR_EV_CLICK : DR_EV_IMPRESSION, 0, i * 1000);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    u->last_list_len = 2;
    u->last_list[0] = 11;
    u->last_list[1] = 12;
    u->last_list_score[1] = 0.75f;
    uint8_t *rec;
    size_t len;
    dr_learner_conf_t c8 = *dr_model_conf(m), c16 = c8;
    c16.dim = 16;
    assert_int_equal(dr_user_encode(u, 8, &rec, &len), 0);
    dr_user_t *back;
    assert_int_equal(dr_user_decode(42, &c8, rec, len, &back), 0);
    assert_memory_equal(back->v, u->v, 8 * sizeof(float));
    assert_int_equal(back->events_applied, u->events_applied);
    assert_int_equal(back->recent_len, u->recent_len);
    assert_memory_equal(back->recent, u->recent, sizeof(dr_recent_event_t) * u->recent_len);
    assert_int_equal(back->last_list[1], 12);
    assert_true(back->last_list_score[1] == 0.75f);
    assert_int_equal(back->prior_version, u->prior_version);
    dr_user_free(back);
    /* every truncation and a wrong dimension are DR_ECORRUPT */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(dr_user_decode(42, &c8, rec, cut, &back), DR_ECORRUPT);
    assert_int_equal(dr_user_decode(42, &c16, rec, len, &back), DR_ECORRUPT);
    /* a NaN smuggled into the vector is refused */
    float nan = NAN;
    /* v, then cuts + last cut, the detector, the list's scores, the prior
     * version, the drift regime (+ a sample count per recent event), the
     * hidden items (none) */
    size_t v_end = len - dr_adwin_serialized_size(&u->drift) - 12 - 4 * u->last_list_len - 8 -
                   28 - 4 * (size_t)u->recent_len - 2 - REST_BYTES(u);
    memcpy(rec + v_end - 4, &nan, 4);
    assert_int_equal(dr_user_decode(42, &c8, rec, len, &back), DR_ECORRUPT);
    free(rec);
    /* items and globals */
    dr_model_t *m2 = new_model(DR_MODE_IMPLICIT);
    assert_true(dr_model_dirty_items(m) > 0);
    copy_stored_model(m, m2);
    assert_int_equal(dr_model_dirty_items(m), 0);
    int64_t i1 = dr_model_item_index(m, 12, false), i2 = dr_model_item_index(m2, 12, false);
    assert_true(dr_model_score(m, u, i1) == dr_model_score(m2, u, i2));
    dr_user_free(u);
    dr_model_free(m);
    dr_model_free(m2);
}

/* Items get rows on first sight, seeded by id; the catalog bound holds. */
static void test_item_index_and_bound(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 4;
    c.max_items = 3000;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    for (int64_t id = 1; id <= 3000; id++) assert_int_equal(dr_model_item_index(m, id * 7, true), id - 1);
    for (int64_t id = 1; id <= 3000; id++) assert_int_equal(dr_model_item_index(m, id * 7, false), id - 1);
    assert_int_equal(dr_model_item_index(m, 5, true), DR_ERANGE);
    assert_int_equal(dr_model_item_index(m, 6, false), DR_ENOTFOUND);
    assert_int_equal(dr_model_set_item_excluded(m, 7, true), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    assert_int_equal(v.excluded[0], 1);
    dr_model_free(m);
}

/* "v_u is recomputed from the prior (v_u = 0) by a few SGD steps over that
 * user's recent events that lie inside the window ADWIN kept": after a
 * re-adaptation the user scores the items of the kept window above the
 * items it clicked before the cut, and item parameters did not move. */
static void test_readapt_uses_kept_window(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.negatives = 0;
    c.drift_enabled = false; /* the window is filled by hand below */
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_user_t *u = dr_user_new_conf(1, &c);
    dr_apply_result_t r;
    for (int i = 0; i < 20; i++) { /* old interest: items 100..119, a sample each */
        dr_event_t e = ev(1, 100 + i, DR_EV_CLICK, 0, i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
        assert_int_equal(r.n_samples, 1);
    }
    for (int i = 0; i < 6; i++) { /* new interest: items 200..205 */
        dr_event_t e = ev(1, 200 + i, DR_EV_CLICK, 0, 100 + i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    assert_int_equal(u->drift_samples, 26);
    assert_int_equal(dr_user_regime_len(m, u), 26); /* no regime before a re-adaptation */
    /* a window that kept the last 6 samples: the new interest */
    for (int i = 0; i < 6; i++) assert_int_equal(dr_adwin_update(&u->drift, 0.5), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    float *q_before = malloc(v.n * 8 * sizeof(float));
    memcpy(q_before, v.q, v.n * 8 * sizeof(float));
    assert_int_equal(dr_learner_readapt(m, u, 1), 6);
    assert_memory_equal(q_before, v.q, v.n * 8 * sizeof(float));
    assert_int_equal(u->regime_from, 20);
    assert_int_equal(u->readapts, 1);
    assert_int_equal(u->readapt_event, u->events_applied);
    /* the regime: the 6 new events, then whatever comes after */
    assert_int_equal(dr_user_regime_len(m, u), 6);
    dr_event_t next = ev(1, 300, DR_EV_CLICK, 0, 200);
    assert_int_equal(dr_learner_apply(m, u, &next, 99, &r), 0);
    assert_int_equal(dr_user_regime_len(m, u), 7);
    float new_score = 0, old_score = 0;
    for (int i = 0; i < 6; i++) new_score += dr_model_score(m, u, dr_model_item_index(m, 200 + i, false)) / 6;
    for (int i = 0; i < 20; i++) old_score += dr_model_score(m, u, dr_model_item_index(m, 100 + i, false)) / 20;
    assert_true(new_score > old_score);
    free(q_before);
    dr_user_free(u);
    dr_model_free(m);
}

/* A user record written before drift detection existed (version 1) is
 * still read, with an empty detector. */
static void test_reads_version_1_user_record(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 2;
    uint8_t rec[64];
    dr_writer_t w = {rec, 0, sizeof(rec), true};
    dr_put_u8(&w, 1);
    dr_put_u16(&w, 2);
    dr_put_u64(&w, 17);       /* events applied */
    dr_put_i64(&w, 1234);     /* last event ms */
    dr_put_u32(&w, 3);        /* last partition */
    dr_put_i64(&w, 99);       /* last offset */
    dr_put_f32(&w, 0.5f);     /* bias */
    dr_put_u8(&w, 0);         /* recent len */
    dr_put_u8(&w, 0);         /* recent head */
    dr_put_u8(&w, 0);         /* pending */
    dr_put_u8(&w, 0);         /* last list */
    dr_put_f32(&w, 1.0f);
    dr_put_f32(&w, -1.0f);
    assert_true(w.ok);
    dr_user_t *u;
    assert_int_equal(dr_user_decode(5, &c, rec, w.len, &u), 0);
    assert_int_equal(u->events_applied, 17);
    assert_true(u->v[1] == -1.0f);
    assert_int_equal(dr_adwin_width(&u->drift), 0);
    dr_user_free(u);
}

/* A version-2 user record (drift detector, but no scores of the last list:
 * the layout of version 4 without its trailing floats and prior version) is still read, its
 * detector intact and the scores 0; with a trailing byte it is refused. */
static void test_reads_version_2_user_record(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    const dr_learner_conf_t *c = dr_model_conf(m);
    dr_user_t *u = dr_user_new_conf(7, c);
    dr_apply_result_t r;
    for (int i = 0; i < 40; i++) {
        dr_event_t e = ev(7, 10 + i % 7, i % 3 ? DR_EV_CLICK : DR_EV_IMPRESSION, 0, i * 1000);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    assert_true(dr_adwin_width(&u->drift) > 0);
    u->last_list_len = 3;
    for (int i = 0; i < 3; i++) {
        u->last_list[i] = 20 + i;
        u->last_list_score[i] = 0.5f + (float)i;
    }
    uint8_t *rec;
    size_t len;
    assert_int_equal(dr_user_encode(u, c->dim, &rec, &len), 0);
    assert_int_equal(rec[0], 12);
    rec[0] = 2;
    /* v3: + scores, v4: + the prior version, v5: + the drift regime, v6: + hidden items (none) */
    size_t v2_len = len - 3 * sizeof(float) - sizeof(int64_t) - 28 - 4 * (size_t)u->recent_len - 2 -
                    REST_BYTES(u); /* ..., v7: + the seen-posts filter */
    dr_user_t *back;
    assert_int_equal(dr_user_decode(7, c, rec, v2_len, &back), 0);
    assert_int_equal(back->events_applied, u->events_applied);
    assert_memory_equal(back->v, u->v, (size_t)c->dim * sizeof(float));
    assert_int_equal(dr_adwin_width(&back->drift), dr_adwin_width(&u->drift));
    assert_true(dr_adwin_mean(&back->drift) == dr_adwin_mean(&u->drift));
    assert_int_equal(back->last_list_len, 3);
    assert_int_equal(back->last_list[2], 22);
    for (int i = 0; i < 3; i++) assert_true(back->last_list_score[i] == 0.0f);
    dr_user_free(back);
    /* one byte more or less than the version-2 layout is corrupt */
    assert_int_equal(dr_user_decode(7, c, rec, v2_len + 1, &back), DR_ECORRUPT);
    assert_int_equal(dr_user_decode(7, c, rec, v2_len - 1, &back), DR_ECORRUPT);
    free(rec);
    dr_user_free(u);
    dr_model_free(m);
}

/* "New users adapt fast, settled users slowly": with learner.lr.user.decay
 * the same click moves a user with a long history less than a new one. */
static void test_user_step_size_decays(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.negatives = 0;
    c.drift_enabled = false;
    c.lr_user_decay = 5;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_user_t *fresh = dr_user_new_conf(1, &c), *settled = dr_user_new_conf(2, &c);
    settled->events_applied = 500; /* a long history, no drift cut */
    dr_apply_result_t r;
    dr_event_t e1 = ev(1, 9, DR_EV_CLICK, 0, 0), e2 = ev(2, 9, DR_EV_CLICK, 0, 0);
    assert_int_equal(dr_learner_apply(m, fresh, &e1, 1, &r), 0);
    assert_int_equal(dr_learner_apply(m, settled, &e2, 1, &r), 0);
    double nf = 0, ns = 0;
    for (int k = 0; k < 8; k++) { nf += fresh->v[k] * fresh->v[k]; ns += settled->v[k] * settled->v[k]; }
    assert_true(ns < nf / 4); /* 1/sqrt(1 + 500/5) ≈ 0.1 of the step */
    dr_user_free(fresh);
    dr_user_free(settled);
    dr_model_free(m);
}

/* The rank counts the items whose list score (dr_model_score: factors,
 * biases, the population prior, co-engagement with its second hop) is
 * above the item's: with dense co-engagement tables, so that the term
 * decides many places (it is summed row by row for a rank, look-up by
 * look-up for a score). A rank leaves the model's scratch as it found it:
 * scores after it are the same, also after a bounded rank that stopped
 * early (dr_model_list_rank_within). */
static void test_list_rank_counts_every_term(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    enum { ITEMS = 300, USERS = 60 };
    dr_user_t *users[USERS];
    uint64_t rng = 11;
    dr_apply_result_t r;
    for (int u = 0; u < USERS; u++) users[u] = dr_user_new(100 + u, 8);
    for (int round = 0; round < 40; round++)
        for (int u = 0; u < USERS; u++) {
            /* six groups of users, each clicking mostly its own 50 items */
            int64_t item = 1 + (dr_rand64(&rng) % 4 ? (u % 6) * 50 + (int64_t)(dr_rand64(&rng) % 50)
                                                    : (int64_t)(dr_rand64(&rng) % ITEMS));
            dr_event_t e = ev(100 + u, item, DR_EV_CLICK, 0, 1000 + round * 100 + u);
            assert_int_equal(dr_learner_apply(m, users[u], &e, (uint64_t)(round * USERS + u), &r), 0);
        }
    /* user 0 hides three items of its own group, which score high for it,
     * then clicks on until the hides have left its ring of recent events:
     * only the hidden list keeps them out */
    const int64_t hidden[] = {3, 17, 29};
    for (int k = 0; k < 3; k++) {
        dr_event_t e = ev(100, hidden[k], DR_EV_HIDE, 0, 9000 + k);
        assert_int_equal(dr_learner_apply(m, users[0], &e, (uint64_t)(90000 + k), &r), 0);
    }
    for (int k = 0; k < 80; k++) {
        int64_t item = 31 + (int64_t)(dr_rand64(&rng) % 20); /* the group's items 31..50 */
        dr_event_t e = ev(100, item, DR_EV_CLICK, 0, 9100 + k);
        assert_int_equal(dr_learner_apply(m, users[0], &e, (uint64_t)(91000 + k), &r), 0);
    }
    for (int k = 0; k < 3; k++) {
        assert_true(dr_user_has_hidden(users[0], hidden[k]) && !dr_user_has_recent(users[0], hidden[k]));
        assert_int_equal(dr_model_list_rank(m, users[0], hidden[k]), 0);
    }
    float before[ITEMS + 1];
    for (int64_t item = 1; item <= ITEMS; item++)
        before[item] = dr_model_score(m, users[0], dr_model_item_index(m, item, false));
    int checked = 0;
    for (int u = 0; u < USERS; u += 7) {
        for (int64_t item = 1; item <= ITEMS; item += u == 0 ? 1 : 13) {
            int64_t rank = dr_model_list_rank(m, users[u], item);
            if (rank == 0) continue; /* recent: not listable */
            float st = dr_model_score(m, users[u], dr_model_item_index(m, item, false));
            int64_t surely = 0, maybe = 0; /* above by a margin, or within it too */
            for (int64_t j = 1; j <= ITEMS; j++) {
                if (j == item || dr_user_excludes(users[u], j)) continue;
                float sj = dr_model_score(m, users[u], dr_model_item_index(m, j, false));
                surely += sj > st + 1e-4f;
                maybe += sj > st - 1e-4f;
            }
            assert_true(rank >= surely + 1 && rank <= maybe + 1);
            /* bounded: the same rank up to the bound, bound + 1 past it */
            for (int64_t limit = 1; limit <= 64; limit *= 4) {
                int64_t within = dr_model_list_rank_within(m, users[u], item, limit);
                assert_int_equal(within, rank <= limit ? rank : limit + 1);
            }
            checked++;
        }
    }
    assert_true(checked > 50);
    for (int64_t item = 1; item <= ITEMS; item++)
        assert_true(dr_model_score(m, users[0], dr_model_item_index(m, item, false)) == before[item]);
    for (int u = 0; u < USERS; u++) dr_user_free(users[u]);
    dr_model_free(m);
}

/* "the rank of an item in the list the model would publish": items scored
 * above it count, blocked and recently engaged ones are not listable. */
static void test_list_rank(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    dr_user_t *u = dr_user_new(3, 8);
    for (int64_t item = 1; item <= 20; item++)
        assert_true(dr_model_item_index(m, item, true) >= 0);
    assert_int_equal(dr_model_list_rank(m, u, 999), 0); /* unknown item */
    int64_t ranks[21] = {0};
    bool seen[21] = {false};
    for (int64_t item = 1; item <= 20; item++) {
        ranks[item] = dr_model_list_rank(m, u, item);
        assert_true(ranks[item] >= 1 && ranks[item] <= 20);
        seen[ranks[item]] = true; /* distinct scores: a permutation of 1..20 */
    }
    for (int r = 1; r <= 20; r++) assert_true(seen[r]);
    int64_t best = 1;
    while (ranks[best] != 1) best++;
    int64_t second = 1;
    while (ranks[second] != 2) second++;
    assert_int_equal(dr_model_set_item_excluded(m, best, true), 0);
    assert_int_equal(dr_model_list_rank(m, u, best), 0);
    assert_int_equal(dr_model_list_rank(m, u, second), 1);
    dr_apply_result_t r;
    dr_event_t like = ev(3, second, DR_EV_LIKE, 0, 1000);
    assert_int_equal(dr_learner_apply(m, u, &like, 1, &r), 0);
    assert_int_equal(dr_model_list_rank(m, u, second), 0); /* recent: not listed again */
    dr_user_free(u);
    dr_model_free(m);
}

/* "an adapted user's effective vector must not jump when û moves": after
 * outer steps, û and the model version moved, a user who was away is
 * re-based on its next event and its vector before learning is exactly
 * what it was; globals and records carry what it takes, across a restart. */
static void test_reptile_prior_keeps_users_in_place(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.prior_step = 0.5f;
    c.prior_period = 10;
    c.lr_item = 0; /* item vectors fixed: the user's vector is the only thing to compare */
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_user_t *away = dr_user_new_conf(1, &c);
    dr_apply_result_t r;
    for (int i = 0; i < 5; i++) {
        dr_event_t e = ev(1, 100 + i, DR_EV_CLICK, 0, i);
        assert_int_equal(dr_learner_apply(m, away, &e, (uint64_t)i, &r), 0);
    }
    float before[8], prior_before[8];
    dr_model_user_vector(m, away, before);
    memcpy(prior_before, dr_model_prior(m), sizeof(prior_before));
    int64_t v0 = dr_model_version(m);
    /* other users' clicks drive several outer steps */
    for (int i = 0; i < 40; i++) {
        dr_user_t *o = dr_user_new_conf(10 + i, &c);
        dr_event_t e = ev(10 + i, 100 + i % 3, DR_EV_CLICK, 0, i);
        assert_int_equal(dr_learner_apply(m, o, &e, (uint64_t)i, &r), 0);
        dr_user_free(o);
    }
    assert_true(dr_model_version(m) >= v0 + 3);
    assert_true(memcmp(prior_before, dr_model_prior(m), sizeof(prior_before)) != 0);
    float after[8];
    dr_model_user_vector(m, away, after);
    for (int k = 0; k < 8; k++) assert_true(after[k] == before[k]); /* read-only view: exact */
    /* the user's record and the globals survive a restart, and the re-base
     * on the next event keeps the vector (up to float rounding) */
    uint8_t *rec, *g;
    size_t len, glen;
    assert_int_equal(dr_user_encode(away, 8, &rec, &len), 0);
    assert_int_equal(dr_model_encode_globals(m, &g, &glen), 0);
    dr_model_t *m2;
    assert_int_equal(dr_model_new(&m2, &c, err, sizeof(err)), 0);
    assert_int_equal(dr_model_load_globals(m2, g, glen), 0);
    assert_int_equal(dr_model_version(m2), dr_model_version(m));
    dr_user_t *back;
    assert_int_equal(dr_user_decode(1, &c, rec, len, &back), 0);
    dr_model_user_vector(m2, back, after);
    for (int k = 0; k < 8; k++) assert_true(after[k] == before[k]);
    dr_event_t imp = ev(1, 555, DR_EV_IMPRESSION, 0, 100); /* no label: only the re-base */
    assert_int_equal(dr_learner_apply(m2, back, &imp, 1, &r), 0);
    assert_int_equal(back->prior_version, dr_model_version(m2));
    dr_model_user_vector(m2, back, after);
    for (int k = 0; k < 8; k++) assert_float_equal(after[k], before[k], 1e-5);
    free(rec);
    free(g);
    dr_user_free(back);
    dr_user_free(away);
    dr_model_free(m);
    dr_model_free(m2);
}

/* "an item with no interactions yet is ranked by its content": once W has
 * learned that a user likes items whose embeddings point one way, a new item
 * pointing that way outranks a new item pointing the other way. Records and
 * globals keep e_i, δ_i and W: the same score after a reload. */
static void test_content_ranks_new_items(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.content_dim = 4;
    c.lr_content = 0.05f;
    c.prior_step = 0;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    const float kind_a[4] = {1, 0, 0.1f, 0}, kind_b[4] = {0, 1, 0, 0.1f};
    assert_int_equal(dr_model_set_item_content(m, 1, kind_a, 3), DR_EINVAL); /* wrong length */
    for (int64_t item = 1; item <= 20; item++)
        assert_int_equal(dr_model_set_item_content(m, item, item % 2 ? kind_a : kind_b, 4), 0);
    assert_true(dr_model_item_has_content(m, dr_model_item_index(m, 1, false)));
    dr_user_t *u = dr_user_new_conf(1, &c);
    dr_apply_result_t r;
    for (int i = 0; i < 200; i++) { /* likes kind a, hides kind b */
        int64_t item = 1 + (i % 20);
        dr_event_t e = ev(1, item, item % 2 ? DR_EV_LIKE : DR_EV_HIDE, 0, i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    assert_int_equal(dr_model_set_item_content(m, 1001, kind_a, 4), 0);
    assert_int_equal(dr_model_set_item_content(m, 1002, kind_b, 4), 0);
    int64_t na = dr_model_item_index(m, 1001, false), nb = dr_model_item_index(m, 1002, false);
    assert_true(dr_model_score(m, u, na) > dr_model_score(m, u, nb));
    /* a record round trip keeps q_i, e_i and δ_i: the same score after learning */
    dr_model_t *m2;
    assert_int_equal(dr_model_new(&m2, &c, err, sizeof(err)), 0);
    copy_stored_model(m, m2);
    int64_t na2 = dr_model_item_index(m2, 1001, false);
    assert_true(dr_model_item_has_content(m2, na2));
    assert_true(dr_model_score(m, u, na) == dr_model_score(m2, u, na2));
    dr_user_free(u);
    dr_model_free(m);
    dr_model_free(m2);
}

/* Rows of q equal to those a restored model computes from the same W, e_i
 * and δ_i: the rows that follow the W learned so far. */
static size_t rows_up_to_w(dr_model_t *m, const dr_learner_conf_t *c, int64_t first_item, int64_t n) {
    dr_model_t *fresh;
    char err[128];
    assert_int_equal(dr_model_new(&fresh, c, err, sizeof(err)), 0);
    copy_stored_model(m, fresh);
    dr_items_view_t a, b;
    dr_model_items(m, &a);
    dr_model_items(fresh, &b);
    size_t same = 0, d = (size_t)c->dim;
    for (int64_t item = first_item; item < first_item + n; item++) {
        int64_t i = dr_model_item_index(m, item, false), i2 = dr_model_item_index(fresh, item, false);
        assert_true(i >= 0 && i2 >= 0);
        same += memcmp(a.q + (size_t)i * d, b.q + (size_t)i2 * d, d * sizeof(float)) == 0;
    }
    dr_model_free(fresh);
    return same;
}

/* The outer step brings every content item's q_i = W·e_i + δ_i up to the
 * W learned since, in one pass over the catalog that runs over Wᵀ: the
 * floats must be those the per-item refresh gives (a restart recomputes
 * q_i that way from the stored W, e_i and δ_i), bit for bit. */
static void test_content_refresh_is_exact(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 32;
    c.content_dim = 16;
    c.lr_content = 0.05f;
    c.prior_period = 40;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    uint64_t rng = 7;
    for (int64_t item = 1; item <= 100; item++) {
        float e[16];
        for (int j = 0; j < 16; j++) e[j] = (float)(dr_rand01(&rng) * 2.0 - 1.0);
        assert_int_equal(dr_model_set_item_content(m, item, e, 16), 0);
    }
    dr_user_t *users[20];
    for (int u = 0; u < 20; u++) users[u] = dr_user_new_conf(u + 1, &c);
    dr_apply_result_t r;
    for (int i = 0; i < 400; i++) { /* 10 outer steps, the last with the last event */
        int u = (int)(dr_rand01(&rng) * 20);
        dr_event_t e = ev(u + 1, 1 + (int64_t)(dr_rand01(&rng) * 100), DR_EV_LIKE, 0, i);
        assert_int_equal(dr_learner_apply(m, users[u], &e, (uint64_t)i, &r), 0);
    }
    assert_int_equal(rows_up_to_w(m, &c, 1, 100), 100);
    for (int u = 0; u < 20; u++) dr_user_free(users[u]);
    dr_model_free(m);
}

/* 64 content items in rows 0-63; 20 events on them teach W, with one outer
 * step (learner.prior.period 20) on the last; then `steps` more steps of
 * events on items without content, while W stands still. */
static dr_model_t *content_model_after(const dr_learner_conf_t *c, int steps) {
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, c, err, sizeof(err)), 0);
    uint64_t rng = 11;
    for (int64_t item = 1; item <= 64; item++) {
        float e[4];
        for (int j = 0; j < 4; j++) e[j] = (float)(dr_rand01(&rng) * 2.0 - 1.0);
        assert_int_equal(dr_model_set_item_content(m, item, e, 4), 0);
    }
    dr_user_t *u = dr_user_new_conf(1, c);
    dr_apply_result_t r;
    int64_t ts = 0;
    for (int i = 0; i < 20; i++) {
        dr_event_t e = ev(1, 1 + (int64_t)(dr_rand01(&rng) * 64), DR_EV_LIKE, 0, ts);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)ts++, &r), 0);
    }
    for (int i = 0; i < 20 * steps; i++) {
        dr_event_t e = ev(1, 1001 + (int64_t)(i % 4), DR_EV_LIKE, 0, ts);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)ts++, &r), 0);
    }
    dr_user_free(u);
    return m;
}

/* A catalog far larger than the outer step's refresh share
 * (learner.content.refresh.rows, 16 here): a step brings that many rows up
 * to W, not the whole catalog, and every row follows W within
 * items / rows steps. With 0 (the whole catalog each step), one step
 * brings every row up. */
static void test_content_refresh_in_turns(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.content_dim = 4;
    c.lr_content = 0.05f;
    c.prior_period = 20;
    c.negatives = 0;         /* a sampled negative with content would move W, */
    c.drift_enabled = false; /* and so would a re-adaptation over the kept window */
    c.content_refresh_rows = 16;
    dr_model_t *m = content_model_after(&c, 0);
    size_t after_one = rows_up_to_w(m, &c, 1, 64);
    fprintf(stderr, "after one outer step: %zu of 64 rows follow W\n", after_one);
    assert_true(after_one >= 16); /* the step's share, rows 0-15 */
    assert_true(after_one < 64);  /* not the whole catalog */
    dr_model_free(m);
    m = content_model_after(&c, 3); /* rows 16-63 in three more steps */
    assert_int_equal(rows_up_to_w(m, &c, 1, 64), 64);
    dr_model_free(m);
    c.content_refresh_rows = 0;
    m = content_model_after(&c, 0);
    assert_int_equal(rows_up_to_w(m, &c, 1, 64), 64);
    dr_model_free(m);
}

/* "A state written by an older record version is still read": an item
 * record of version 1 (no content) loads into a model with content on. */
static void test_reads_version_1_item_record(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 2;
    c.content_dim = 3;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    uint8_t rec[64];
    dr_writer_t w = {rec, 0, sizeof(rec), true};
    dr_put_u8(&w, 1);
    dr_put_u16(&w, 2);
    dr_put_f32(&w, 0.25f); /* bias */
    dr_put_u8(&w, 1);      /* excluded */
    dr_put_u64(&w, 9);     /* count */
    dr_put_f32(&w, 0.5f);
    dr_put_f32(&w, -0.5f);
    assert_true(w.ok);
    assert_int_equal(dr_model_load_item(m, 77, rec, w.len), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    int64_t i = dr_model_item_index(m, 77, false);
    assert_true(v.bias[i] == 0.25f && v.excluded[i] == 1 && v.q[i * 2 + 1] == -0.5f);
    assert_false(dr_model_item_has_content(m, i));
    assert_int_equal(dr_model_load_item(m, 78, rec, w.len - 1), DR_ECORRUPT);
    dr_model_free(m);
}

/* "c(u,i) counts how often other users engaged with i within L engagements
 * of j": after many users engaged with 1 then 2, a user who just engaged
 * with 1 finds 2 at the top of its list; a repeat engagement counts
 * nothing; the counts survive an item record round trip. */
static void test_coengagement_ranks_next_items(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.cooc_window = 3;
    c.pop_weight = 0; /* the co-engagement term alone */
    c.pop_step = 0;
    classic_cooc(&c);
    dr_model_t *m, *m2;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    assert_int_equal(dr_model_new(&m2, &c, err, sizeof(err)), 0);
    for (int64_t item = 1; item <= 30; item++) assert_true(dr_model_item_index(m, item, true) >= 0);
    dr_apply_result_t r;
    for (int64_t user = 100; user < 140; user++) {
        dr_user_t *u = dr_user_new_conf(user, &c);
        dr_event_t seq[3] = {ev(user, 1, DR_EV_CLICK, 0, 1000), ev(user, 2, DR_EV_CLICK, 0, 2000),
                             ev(user, 2, DR_EV_LIKE, 0, 2500)}; /* the like repeats the click */
        for (int k = 0; k < 3; k++) assert_int_equal(dr_learner_apply(m, u, &seq[k], (uint64_t)k, &r), 0);
        dr_user_free(u);
    }
    dr_user_t *fresh = dr_user_new_conf(7, &c);
    dr_event_t a = ev(7, 1, DR_EV_CLICK, 0, 5000);
    assert_int_equal(dr_learner_apply(m, fresh, &a, 9, &r), 0);
    assert_int_equal(dr_model_list_rank(m, fresh, 2), 1);
    /* the term itself: 40 pairs (1, 2) against 40 engagements of 2 */
    dr_items_view_t v;
    dr_model_items(m, &v);
    float *sc = calloc(v.n, sizeof(float));
    assert_non_null(sc);
    dr_model_add_coengagement(m, fresh, sc, v.n);
    assert_float_equal(sc[dr_model_item_index(m, 2, false)], c.cooc_weight * 40.0f / sqrtf(40.0f), 1e-4);
    assert_true(sc[dr_model_item_index(m, 3, false)] == 0.0f);
    /* a record round trip keeps the counts (only touched items are dirty) */
    assert_int_equal(dr_model_drain_dirty_items(m, (dr_item_sink_fn)dr_model_load_item, m2), 0);
    dr_model_items(m2, &v);
    memset(sc, 0, v.n * sizeof(float)); /* m2 holds fewer items */
    dr_model_add_coengagement(m2, fresh, sc, v.n);
    assert_float_equal(sc[dr_model_item_index(m2, 2, false)], c.cooc_weight * 40.0f / sqrtf(40.0f), 1e-4);
    assert_int_equal(dr_model_list_rank(m2, fresh, 2), 1);
    /* what inspect shows: 1's one neighbour is 2, counted 40 times; n_1 = 41
     * (the fresh user's click too) */
    int64_t nb_id[4];
    float nb_w[4], engaged;
    assert_int_equal(dr_model_item_neighbors(m, dr_model_item_index(m, 1, false), &engaged, nb_id, nb_w, 4), 1);
    assert_true(nb_id[0] == 2 && nb_w[0] == 40.0f && engaged == 41.0f);
    free(sc);
    dr_user_free(fresh);
    dr_model_free(m);
    dr_model_free(m2);
}

/* A model for the co-engagement tests below: d = 8, the term alone, counts
 * halving every `halflife` engagements, every other weighting off. */
static dr_model_t *cooc_model(float halflife) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.cooc_window = 3;
    c.pop_weight = 0;
    c.pop_step = 0;
    c.cooc_age = 0;
    classic_cooc(&c);
    c.cooc_candidate_norm = 0;
    c.cooc_halflife = halflife;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    return m;
}

/* n users click `a` then `b` (users from `first`): n pairs (a, b), 2n engagements. */
static void click_pairs(dr_model_t *m, int64_t first, int n, int64_t a, int64_t b) {
    dr_apply_result_t r;
    for (int64_t user = first; user < first + n; user++) {
        dr_user_t *u = dr_user_new_conf(user, dr_model_conf(m));
        dr_event_t e1 = ev(user, a, DR_EV_CLICK, 0, 1000), e2 = ev(user, b, DR_EV_CLICK, 0, 2000);
        assert_int_equal(dr_learner_apply(m, u, &e1, 1, &r), 0);
        assert_int_equal(dr_learner_apply(m, u, &e2, 2, &r), 0);
        dr_user_free(u);
    }
}

/* n single clicks by new users (from `first`) on items base .. base + spread
 * - 1: n engagements that pair with nothing. */
static void click_alone(dr_model_t *m, int64_t first, int n, int64_t base, int spread) {
    dr_apply_result_t r;
    for (int64_t user = first; user < first + n; user++) {
        dr_user_t *u = dr_user_new_conf(user, dr_model_conf(m));
        dr_event_t e = ev(user, base + user % spread, DR_EV_CLICK, 0, 6000);
        assert_int_equal(dr_learner_apply(m, u, &e, 3, &r), 0);
        dr_user_free(u);
    }
}

/* The term's score of item `id` for u. */
static float cooc_score(dr_model_t *m, const dr_user_t *u, int64_t id) {
    dr_items_view_t v;
    dr_model_items(m, &v);
    float *sc = calloc(v.n, sizeof(float));
    assert_non_null(sc);
    dr_model_add_coengagement(m, u, sc, v.n);
    float s = sc[dr_model_item_index(m, id, false)];
    free(sc);
    return s;
}

/* Every record a drain gives, kept. */
typedef struct stored_items {
    int64_t id[64];
    uint8_t *buf[64];
    size_t len[64], n;
} stored_items_t;

static int store_item(void *ctx, int64_t item_id, const void *rec, size_t len) {
    stored_items_t *st = ctx;
    assert_true(st->n < 64 && rec);
    st->id[st->n] = item_id;
    st->buf[st->n] = malloc(len);
    assert_non_null(st->buf[st->n]);
    memcpy(st->buf[st->n], rec, len);
    st->len[st->n++] = len;
    return 0;
}

/* Claim (learner.cooc.halflife): counts halve every H engagements, counted
 * by the model whoever made them. A restart (item records and globals into
 * a fresh model, globals first or last) scores the same; a clock that runs
 * 60 half-lives past a row's base rescales it when touched, and nothing
 * overflows or turns NaN. */
static void test_coengagement_counts_fade(void **state) {
    (void)state;
    dr_model_t *m = cooc_model(100);
    click_pairs(m, 100, 40, 1, 2); /* 80 engagements */
    dr_user_t *fresh = dr_user_new_conf(7, dr_model_conf(m));
    dr_apply_result_t r;
    dr_event_t a = ev(7, 1, DR_EV_CLICK, 0, 5000);
    assert_int_equal(dr_learner_apply(m, fresh, &a, 9, &r), 0);
    float s0 = cooc_score(m, fresh, 2);
    assert_true(s0 > 0.0f);
    click_alone(m, 1000, 100, 3, 5); /* 100 engagements with other items */
    float s1 = cooc_score(m, fresh, 2);
    assert_float_equal(s1, s0 / 2.0f, s0 * 1e-4f);
    /* a restart: the globals before the items, and after */
    stored_items_t st = {.n = 0};
    uint8_t *g;
    size_t glen;
    assert_int_equal(dr_model_encode_globals(m, &g, &glen), 0);
    assert_int_equal(dr_model_drain_dirty_items(m, store_item, &st), 0);
    for (int order = 0; order < 2; order++) {
        dr_model_t *m2 = cooc_model(100);
        if (order == 0) assert_int_equal(dr_model_load_globals(m2, g, glen), 0);
        for (size_t k = 0; k < st.n; k++) assert_int_equal(dr_model_load_item(m2, st.id[k], st.buf[k], st.len[k]), 0);
        if (order == 1) assert_int_equal(dr_model_load_globals(m2, g, glen), 0);
        assert_float_equal(cooc_score(m2, fresh, 2), s1, s1 * 1e-5f);
        dr_model_free(m2);
    }
    for (size_t k = 0; k < st.n; k++) free(st.buf[k]);
    free(g);
    /* 60 half-lives later (6,000 engagements elsewhere) 1 and 2 meet again */
    click_alone(m, 2000, 6000, 10, 7);
    float s2 = cooc_score(m, fresh, 2);
    assert_true(s2 >= 0.0f && s2 < s0 * 1e-12f);
    click_pairs(m, 9000, 1, 1, 2);
    float s3 = cooc_score(m, fresh, 2);
    assert_true(isfinite(s3) && s3 > 0.0f);
    int64_t nb_id[4];
    float nb_w[4], engaged;
    size_t n = dr_model_item_neighbors(m, dr_model_item_index(m, 2, false), &engaged, nb_id, nb_w, 4);
    assert_true(n == 1 && isfinite(nb_w[0]) && nb_w[0] > 0 && isfinite(engaged));
    dr_user_free(fresh);
    dr_model_free(m);
}

/* Claim (a restart under another learner.cooc.halflife): the counts are
 * what they were worth under the half-life that made them, as of the
 * restart, and fade under the new one from there; with fading switched off
 * they stay as they were at the restart. Read with the new half-life
 * instead, a count added late to a row would weigh up to 2^30 too much. */
static void test_coengagement_halflife_changed_between_restarts(void **state) {
    (void)state;
    dr_model_t *m = cooc_model(100);
    click_pairs(m, 100, 40, 1, 2);
    click_alone(m, 1000, 100, 3, 5); /* the clock at 180 */
    int64_t id[4];
    float w[4], engaged, w2[4], engaged2;
    size_t row1 = (size_t)dr_model_item_index(m, 1, false);
    assert_int_equal(dr_model_item_neighbors(m, (int64_t)row1, &engaged, id, w, 4), 1);
    stored_items_t st = {.n = 0};
    uint8_t *g;
    size_t glen;
    assert_int_equal(dr_model_encode_globals(m, &g, &glen), 0);
    assert_int_equal(dr_model_drain_dirty_items(m, store_item, &st), 0);
    float halflives[3] = {1000, 0, 100};
    for (int h = 0; h < 3; h++) {
        dr_model_t *m2 = cooc_model(halflives[h]);
        assert_int_equal(dr_model_load_globals(m2, g, glen), 0); /* first, as the pipeline does */
        for (size_t k = 0; k < st.n; k++) assert_int_equal(dr_model_load_item(m2, st.id[k], st.buf[k], st.len[k]), 0);
        int64_t r2 = dr_model_item_index(m2, 1, false);
        assert_int_equal(dr_model_item_neighbors(m2, r2, &engaged2, id, w2, 4), 1);
        assert_float_equal(w2[0], w[0], w[0] * 1e-5f);
        assert_float_equal(engaged2, engaged, engaged * 1e-5f);
        click_alone(m2, 5000, 1000, 20, 5); /* 1,000 engagements later */
        assert_int_equal(dr_model_item_neighbors(m2, r2, &engaged2, id, w2, 4), 1);
        float want = halflives[h] == 0 ? w[0] : w[0] * exp2f(-1000.0f / halflives[h]);
        assert_float_equal(w2[0], want, w[0] * 1e-4f);
        dr_model_free(m2);
    }
    for (size_t k = 0; k < st.n; k++) free(st.buf[k]);
    free(g);
    dr_model_free(m);
}

/* Claim (learner.cooc.pair.decay): a new engagement adds exp(-k/τ) to its
 * pair with the user's k-th previous engaged item, both ways. */
static void test_coengagement_pair_weights(void **state) {
    (void)state;
    dr_model_t *m = cooc_model(0);
    dr_learner_conf_t cc = *dr_model_conf(m);
    dr_model_free(m);
    cc.cooc_pair_decay = 5;
    char err[128];
    assert_int_equal(dr_model_new(&m, &cc, err, sizeof(err)), 0);
    dr_user_t *u = dr_user_new_conf(1, &cc);
    dr_apply_result_t r;
    for (int64_t item = 1; item <= 3; item++) {
        dr_event_t e = ev(1, item, DR_EV_CLICK, 0, item * 1000);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)item, &r), 0);
    }
    int64_t nb_id[4];
    float nb_w[4], engaged;
    assert_int_equal(dr_model_item_neighbors(m, dr_model_item_index(m, 3, false), &engaged, nb_id, nb_w, 4), 2);
    assert_true(nb_id[0] == 2 && nb_w[0] == 1.0f);
    assert_true(nb_id[1] == 1);
    assert_float_equal(nb_w[1], expf(-1.0f / 5.0f), 1e-6);
    assert_int_equal(dr_model_item_neighbors(m, dr_model_item_index(m, 1, false), &engaged, nb_id, nb_w, 4), 2);
    assert_true(nb_id[0] == 2 && nb_w[0] == 1.0f); /* (1, 2) at k = 0 when 2 came */
    assert_float_equal(nb_w[1], expf(-1.0f / 5.0f), 1e-6);
    dr_user_free(u);
    dr_model_free(m);
}

/* Claim (learner.cooc.hop.*): with the second hop, an item engaged next to
 * the user's likely next item ranks too (below that item); without it,
 * the term does not reach it. */
static void test_coengagement_second_hop(void **state) {
    (void)state;
    dr_model_t *m = cooc_model(0);
    dr_learner_conf_t c = *dr_model_conf(m);
    dr_model_free(m);
    for (int hop = 0; hop < 2; hop++) {
        c.cooc_hop_weight = hop ? 0.5f : 0.0f;
        char err[128];
        assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
        click_pairs(m, 100, 20, 1, 2); /* 1 then 2 */
        click_pairs(m, 200, 20, 2, 3); /* 2 then 3: never next to 1 */
        dr_user_t *fresh = dr_user_new_conf(7, &c);
        dr_apply_result_t r;
        dr_event_t a = ev(7, 1, DR_EV_CLICK, 0, 5000);
        assert_int_equal(dr_learner_apply(m, fresh, &a, 9, &r), 0);
        float s2 = cooc_score(m, fresh, 2), s3 = cooc_score(m, fresh, 3);
        assert_true(s2 > 0.0f);
        if (hop) assert_true(s3 > 0.0f && s3 < s2);
        else assert_true(s3 == 0.0f);
        dr_user_free(fresh);
        dr_model_free(m);
    }
}

/* The candidate stage's one pass (dr_model_coengagement_hold, then
 * dr_model_scores_at_held): every item's score, touched by the term or not,
 * is dr_model_score's; the items it favours come best first; and once
 * released the sums are zero again, so that the next user on the same
 * scratch (a thread's own, or the model's) is scored on its own rows only.
 * Two users with disjoint histories in turn: without the release the second
 * one's scores carry the first one's term. */
static void test_held_coengagement_scores(void **state) {
    (void)state;
    dr_model_t *m = cooc_model(0);
    dr_learner_conf_t c = *dr_model_conf(m);
    dr_model_free(m);
    c.cooc_hop_weight = 0.5f; /* the hop's seeds among the sources */
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    click_pairs(m, 100, 20, 1, 2);
    click_pairs(m, 200, 20, 2, 3);
    click_pairs(m, 300, 12, 10, 11);
    click_pairs(m, 400, 12, 11, 12);
    click_alone(m, 500, 30, 20, 10); /* items no source touches */
    dr_apply_result_t r;
    dr_user_t *u[2] = {dr_user_new_conf(7, &c), dr_user_new_conf(8, &c)};
    dr_event_t a = ev(7, 1, DR_EV_CLICK, 0, 5000), b = ev(8, 10, DR_EV_CLICK, 0, 5000);
    assert_int_equal(dr_learner_apply(m, u[0], &a, 9, &r), 0);
    assert_int_equal(dr_learner_apply(m, u[1], &b, 10, &r), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    int64_t *all = malloc(v.n * sizeof(int64_t)), top[4];
    float *held = malloc(v.n * sizeof(float)), scratch[4];
    assert_true(all && held);
    for (size_t i = 0; i < v.n; i++) all[i] = (int64_t)i;
    dr_cooc_scratch_t own = {0};
    assert_int_equal(dr_cooc_scratch_fit(&own, m), 0);
    for (int pass = 0; pass < 2; pass++) {
        dr_cooc_scratch_t *sums = pass == 0 ? &own : NULL; /* NULL: the model's own */
        for (int k = 0; k < 2; k++) {
            dr_cooc_sources_t src;
            dr_model_cooc_sources_in(m, u[k], &src, sums);
            size_t n_held, n = dr_model_coengagement_hold(m, &src, top, scratch, 4, sums, &n_held);
            assert_true(n >= 2 && n_held >= n);
            dr_model_scores_at_held(m, u[k], sums, all, v.n, held);
            dr_model_cooc_release(m, sums, n_held);
            for (size_t i = 0; i < v.n; i++) {
                float want = dr_model_score(m, u[k], (int64_t)i);
                assert_true(fabsf(held[i] - want) <= 1e-5f * (1.0f + fabsf(want)));
            }
            /* the n it favours (in no order) score no lower than any other:
             * u[0]'s term favours 2 (and 3 through the hop), u[1]'s 11 (and 12) */
            float least = INFINITY, most_else = 0.0f;
            bool favoured = false;
            for (size_t j = 0; j < n; j++) {
                least = fminf(least, cooc_score(m, u[k], v.ids[top[j]]));
                favoured |= v.ids[top[j]] == (k == 0 ? 2 : 11);
            }
            for (size_t i = 0; i < v.n; i++) {
                bool in_top = false;
                for (size_t j = 0; j < n; j++) in_top |= top[j] == (int64_t)i;
                if (!in_top) most_else = fmaxf(most_else, cooc_score(m, u[k], v.ids[i]));
            }
            assert_true(favoured && least > 0.0f && least >= most_else);
        }
    }
    for (size_t i = 0; i < own.cap; i++) assert_true(own.acc[i] == 0.0f);
    dr_cooc_scratch_free(&own);
    free(all);
    free(held);
    dr_user_free(u[0]);
    dr_user_free(u[1]);
    dr_model_free(m);
}

/* A version-3 item record with neighbours: every truncation is refused, a
 * hostile neighbour count is refused before anything is allocated, and a
 * model with the term off still reads it. */
static void test_item_record_neighbors_bounds(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT), *m2 = new_model(DR_MODE_IMPLICIT);
    dr_user_t *u = dr_user_new(1, 8);
    dr_apply_result_t r;
    for (int i = 0; i < 6; i++) {
        dr_event_t e = ev(1, 50 + i, DR_EV_CLICK, 0, i * 1000);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    kept_record_t k = {.item_id = 56};
    assert_int_equal(dr_model_drain_dirty_items(m, (dr_item_sink_fn)dr_model_load_item, m2), 0);
    dr_event_t e = ev(1, 56, DR_EV_CLICK, 0, 9000);
    assert_int_equal(dr_learner_apply(m, u, &e, 9, &r), 0);
    /* 56 pairs with 50..55: the window of 10 holds them all */
    assert_int_equal(dr_model_drain_dirty_items(m, keep_record, &k), 0);
    assert_true(k.len > 6 * 12);
    for (size_t cut = 0; cut < k.len; cut++) assert_int_equal(dr_model_load_item(m2, 56, k.buf, cut), DR_ECORRUPT);
    assert_int_equal(dr_model_load_item(m2, 56, k.buf, k.len), 0);
    /* "a smaller cap now trims": a model keeping 4 neighbours loads 4 */
    dr_learner_conf_t c4 = *dr_model_conf(m2);
    c4.cooc_neighbors = 4;
    dr_model_t *m4;
    char err[128];
    assert_int_equal(dr_model_new(&m4, &c4, err, sizeof(err)), 0);
    assert_int_equal(dr_model_load_item(m4, 56, k.buf, k.len), 0);
    int64_t nb_id[8];
    float nb_w[8], engaged;
    assert_true(dr_model_item_neighbors(m4, dr_model_item_index(m4, 56, false), &engaged, nb_id, nb_w, 8) <= 4);
    dr_model_free(m4);
    /* the row's base and half-life (version 7) sit before n_i and the count:
     * a NaN, a negative clock and one past 2^52 are refused, and so are a
     * NaN half-life and one below 1; an older record has none (version 8's
     * rating statistics, 12 bytes, and version 9's content join time, 8,
     * come last) */
    size_t halflife_pos = k.len - 8 - 12 - 6 * 12 - 8 - 4, base_pos = halflife_pos - 8;
    float good_h, bad_h[3] = {NAN, -1.0f, 0.5f};
    memcpy(&good_h, k.buf + halflife_pos, 4);
    for (int b = 0; b < 3; b++) {
        memcpy(k.buf + halflife_pos, &bad_h[b], 4);
        assert_int_equal(dr_model_load_item(m2, 56, k.buf, k.len), DR_ECORRUPT);
    }
    memcpy(k.buf + halflife_pos, &good_h, 4);
    double good_base, bad_base[3] = {NAN, -1.0, 9007199254740992.0};
    memcpy(&good_base, k.buf + base_pos, 8);
    for (int b = 0; b < 3; b++) {
        memcpy(k.buf + base_pos, &bad_base[b], 8);
        assert_int_equal(dr_model_load_item(m2, 56, k.buf, k.len), DR_ECORRUPT);
    }
    memcpy(k.buf + base_pos, &good_base, 8);
    assert_int_equal(dr_model_load_item(m2, 56, k.buf, k.len), 0);
    /* the globals' clock sits before the rating blend (none here: its count,
     * 8 bytes), the id table's size (8) and the content dimension (0 here):
     * the same */
    uint8_t *g;
    size_t glen;
    assert_int_equal(dr_model_encode_globals(m, &g, &glen), 0);
    for (int b = 0; b < 3; b++) {
        memcpy(g + glen - 2 - 8 - 8 - 8, &bad_base[b], 8);
        assert_int_equal(dr_model_load_globals(m2, g, glen), DR_ECORRUPT);
    }
    free(g);
    /* the neighbour count sits 4 bytes before the pairs: make it huge */
    size_t n_pos = k.len - 12 - 6 * 12 - 4;
    uint32_t huge = 0x7fffffff;
    memcpy(k.buf + n_pos, &huge, 4);
    assert_int_equal(dr_model_load_item(m2, 56, k.buf, k.len), DR_ECORRUPT);
    dr_user_free(u);
    dr_model_free(m);
    dr_model_free(m2);
}

/* A model for the population prior's tests: d = 8, no Reptile steps (û
 * fixed), outer steps every `period` labelled events. */
static dr_model_t *pop_model(float weight, float step, int period) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.prior_step = 0;
    c.prior_period = period;
    c.pop_weight = weight;
    c.pop_step = step;
    c.negative_uniform = false; /* the premise below: popularity-sampled negatives */
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    return m;
}

/* A crowd of 60 users: each clicks item 500 and one item of its own
 * (1000 + user), so 500 is what the population engages with; then 60 more
 * users click three items of their own each, drawing 500 as a negative. */
static void pop_crowd(dr_model_t *m) {
    dr_apply_result_t r;
    for (int64_t user = 1; user <= 120; user++) {
        dr_user_t *u = dr_user_new_conf(user, dr_model_conf(m));
        for (int k = 0; k < (user <= 60 ? 2 : 3); k++) {
            int64_t item = user <= 60 ? (k == 0 ? 500 : 1000 + user) : 2000 + user * 3 + k;
            dr_event_t e = ev(user, item, DR_EV_CLICK, 0, user * 10 + k);
            assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)user * 8 + (uint64_t)k, &r), 0);
        }
        dr_user_free(u);
    }
}

/* One fan clicks item 42 again and again: its bias climbs, while item
 * 500's is held down by the negatives sampled from the crowd's positives. */
static void pop_fan(dr_model_t *m) {
    dr_apply_result_t r;
    dr_user_t *fan = dr_user_new_conf(777, dr_model_conf(m));
    for (int i = 0; i < 8; i++) {
        dr_event_t e = ev(777, 42, DR_EV_CLICK, 0, 2000 + i);
        assert_int_equal(dr_learner_apply(m, fan, &e, 5000 + (uint64_t)i, &r), 0);
    }
    dr_user_free(fan);
}

/* "p_i is what a user with no history engages with": after a crowd clicked
 * item 500 (and one fan item 42, many times), a brand-new user's list puts
 * 500 first; without the term (weight 0, no meta step: the zero-prior arm)
 * popularity-sampled negatives keep popularity out of the bias and the fan's
 * item comes first. */
static void test_pop_prior_ranks_popular_for_new_user(void **state) {
    (void)state;
    dr_model_t *on = pop_model(2.0f, 0, 1000), *off = pop_model(0, 0, 1000);
    pop_crowd(on);
    pop_crowd(off);
    pop_fan(on);
    pop_fan(off);
    dr_user_t *fresh = dr_user_new(9999, 8);
    assert_true(dr_model_pop_weight(on, fresh) == 2.0f);
    assert_true(dr_model_pop_weight(off, fresh) == 0.0f);
    int64_t rank_on = dr_model_list_rank(on, fresh, 500), rank_off = dr_model_list_rank(off, fresh, 500);
    assert_int_equal(rank_on, 1);
    assert_true(rank_off > rank_on);
    /* the term only ranks: both learned the same factor part, and
     * dr_model_score adds w·p_i to it */
    dr_items_view_t v;
    dr_model_items(on, &v);
    int64_t i = dr_model_item_index(on, 500, false);
    assert_true(v.pop[i] > 0);
    assert_float_equal(dr_model_score(on, fresh, i) - dr_model_score(off, fresh, dr_model_item_index(off, 500, false)),
                       2.0f * v.pop[i], 1e-4);
    dr_user_free(fresh);
    dr_model_free(on);
    dr_model_free(off);
}

/* "w(n_u) = γ / (1 + n_u/τ) fades the term as the user's own history
 * grows": γ for a new user, γ/2 after τ events, toward 0 after many; and a
 * user with a long history is ranked by its own vector, not by popularity. */
static void test_pop_prior_fades(void **state) {
    (void)state;
    dr_model_t *m = pop_model(2.0f, 0, 1000);
    float gamma, tau;
    dr_model_pop_fade(m, &gamma, &tau);
    assert_float_equal(gamma, 2.0f, 1e-6);
    assert_float_equal(tau, 20.0f, 1e-3);
    dr_user_t *u = dr_user_new(1, 8);
    float last = dr_model_pop_weight(m, u);
    assert_float_equal(last, 2.0f, 1e-6);
    for (uint64_t n = 1; n <= 400; n++) {
        u->events_applied = n;
        float w = dr_model_pop_weight(m, u);
        assert_true(w < last && w > 0);
        if (n == 20) assert_float_equal(w, 1.0f, 1e-4);
        last = w;
    }
    assert_true(last < 0.1f);
    dr_user_free(u);
    dr_model_free(m);
}

/* New users of a catalog of 200 items who all click the same few items
 * 500..502, in turn. */
static void pop_herd(dr_model_t *m) {
    dr_apply_result_t r;
    for (int64_t item = 1; item <= 200; item++) assert_true(dr_model_item_index(m, item, true) >= 0);
    for (int64_t user = 1; user <= 100; user++) {
        dr_user_t *u = dr_user_new_conf(user, dr_model_conf(m));
        for (int k = 0; k < 3; k++) {
            dr_event_t e = ev(user, 500 + k, DR_EV_CLICK, 0, user * 10 + k);
            assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)user * 8 + (uint64_t)k, &r), 0);
        }
        dr_user_free(u);
    }
}

/* "γ and τ are meta-learned at the outer steps": when new users' positives
 * are popular items that their lists would otherwise rank low, γ grows from
 * a small start; with step 0 it stays where it was set. */
static void test_pop_prior_meta_learns_weight(void **state) {
    (void)state;
    dr_model_t *learn = pop_model(0.05f, 1.0f, 20), *fixed = pop_model(0.05f, 0, 20);
    pop_herd(learn);
    pop_herd(fixed);
    float g_learn, g_fixed, tau;
    dr_model_pop_fade(learn, &g_learn, &tau);
    dr_model_pop_fade(fixed, &g_fixed, &tau);
    assert_true(g_fixed == 0.05f);
    assert_true(g_learn > 0.1f);
    dr_model_free(learn);
    dr_model_free(fixed);
}

/* The decayed counts, the clock, γ and τ round-trip through the item and
 * globals records exactly (globals before or after the items): a restarted
 * model ranks as before, also across an outer step that decays every p_i. */
static void test_pop_prior_records_round_trip(void **state) {
    (void)state;
    dr_model_t *m = pop_model(0.5f, 1.0f, 7);
    pop_crowd(m);
    for (int order = 0; order < 2; order++) {
        dr_model_t *m2 = pop_model(0.5f, 1.0f, 7);
        uint8_t *g;
        size_t glen;
        assert_int_equal(dr_model_encode_globals(m, &g, &glen), 0);
        if (order == 0) assert_int_equal(dr_model_load_globals(m2, g, glen), 0);
        /* re-marks every item dirty: the drain below sees them all */
        dr_items_view_t v;
        dr_model_items(m, &v);
        for (size_t i = 0; i < v.n; i++) {
            bool ex = v.excluded[i];
            assert_int_equal(dr_model_set_item_excluded(m, v.ids[i], ex), 0);
        }
        assert_int_equal(dr_model_drain_dirty_items(m, (dr_item_sink_fn)dr_model_load_item, m2), 0);
        if (order == 1) assert_int_equal(dr_model_load_globals(m2, g, glen), 0);
        free(g);
        float g1, t1, g2, t2;
        dr_model_pop_fade(m, &g1, &t1);
        dr_model_pop_fade(m2, &g2, &t2);
        assert_true(g1 == g2 && t1 == t2);
        dr_items_view_t v2;
        dr_model_items(m2, &v2);
        dr_user_t *fresh = dr_user_new(9999, 8);
        for (size_t i = 0; i < v.n; i++) {
            int64_t j = dr_model_item_index(m2, v.ids[i], false);
            assert_true(j >= 0);
            assert_true(v.pop[i] == v2.pop[j]);
            assert_true(dr_model_score(m, fresh, (int64_t)i) == dr_model_score(m2, fresh, j));
        }
        /* both go on the same way: one more outer step each */
        dr_apply_result_t r1, r2;
        dr_user_t *a = dr_user_new_conf(77, dr_model_conf(m)), *b = dr_user_new_conf(77, dr_model_conf(m2));
        for (int k = 0; k < 7; k++) {
            dr_event_t e = ev(77, 1000 + k, DR_EV_CLICK, 0, 5000 + k);
            assert_int_equal(dr_learner_apply(m, a, &e, (uint64_t)k + 900, &r1), 0);
            assert_int_equal(dr_learner_apply(m2, b, &e, (uint64_t)k + 900, &r2), 0);
        }
        dr_model_pop_fade(m, &g1, &t1);
        dr_model_pop_fade(m2, &g2, &t2);
        assert_true(g1 == g2 && t1 == t2);
        int64_t i500 = dr_model_item_index(m, 500, false), j500 = dr_model_item_index(m2, 500, false);
        assert_true(dr_model_score(m, fresh, i500) == dr_model_score(m2, fresh, j500));
        dr_user_free(a);
        dr_user_free(b);
        dr_user_free(fresh);
        dr_model_free(m2);
        /* m moved on: rebuild it the same way for the other load order */
        dr_model_free(m);
        m = pop_model(0.5f, 1.0f, 7);
        pop_crowd(m);
    }
    dr_model_free(m);
}

/* "A state written by an older record version is still read": a version-2
 * item record (content, no counts) and a version-2 globals record (no
 * population prior) load; the item has no positives counted and γ, τ are
 * the configured ones. */
static void test_reads_version_2_item_and_globals(void **state) {
    (void)state;
    dr_model_t *m = pop_model(0.75f, 0.1f, 1000);
    uint8_t rec[64];
    dr_writer_t w = {rec, 0, sizeof(rec), true};
    dr_put_u8(&w, 2);
    dr_put_u16(&w, 8);
    dr_put_f32(&w, 0.25f); /* bias */
    dr_put_u8(&w, 0);      /* excluded */
    dr_put_u64(&w, 9);     /* count */
    for (int k = 0; k < 8; k++) dr_put_f32(&w, 0.125f * (float)k);
    dr_put_u16(&w, 0); /* no content */
    assert_true(w.ok);
    assert_int_equal(dr_model_load_item(m, 77, rec, w.len), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    int64_t i = dr_model_item_index(m, 77, false);
    assert_true(v.bias[i] == 0.25f && v.q[i * 8 + 7] == 0.875f && v.pop[i] == 0.0f);
    /* globals v2: μ, n, version, û, the ring, the Reptile sums, past priors, W */
    size_t cap = 2048;
    uint8_t *g = malloc(cap);
    dr_writer_t gw = {g, 0, cap, true};
    dr_put_u8(&gw, 2);
    dr_put_u16(&gw, 8);
    dr_put_f64(&gw, 3.5);
    dr_put_u64(&gw, 4);
    dr_put_i64(&gw, 3);
    for (int k = 0; k < 8; k++) dr_put_f32(&gw, 0.01f * (float)k);
    dr_put_u32(&gw, 1);
    dr_put_u32(&gw, 1);
    dr_put_i64(&gw, 77);
    dr_put_u32(&gw, 0);
    for (int k = 0; k < 8; k++) dr_put_f64(&gw, 0.0);
    for (int h = 0; h < DR_PRIOR_HISTORY; h++) dr_put_i64(&gw, -1);
    for (int k = 0; k < DR_PRIOR_HISTORY * 8; k++) dr_put_f32(&gw, 0.0f);
    dr_put_u16(&gw, 0);
    assert_true(gw.ok);
    assert_int_equal(dr_model_load_globals(m, g, gw.len), 0);
    assert_int_equal(dr_model_version(m), 3);
    float gamma, tau;
    dr_model_pop_fade(m, &gamma, &tau);
    assert_true(gamma == 0.75f);
    assert_float_equal(tau, 20.0f, 1e-3);
    assert_int_equal(dr_model_load_globals(m, g, gw.len - 1), DR_ECORRUPT);
    free(g);
    dr_model_free(m);
}

/* Appends len bytes to a snapshot buffer. */
static void snap_put(uint8_t *buf, size_t cap, size_t *at, const void *p, size_t len) {
    assert_true(*at + len <= cap);
    memcpy(buf + *at, p, len);
    *at += len;
}

/* Everything a refused event could have changed, as bytes: u's stored
 * record, the globals record, every item's parameters (q_i, b_i, p_i, id,
 * blocked mark, n_i and neighbours) and how many items are dirty. */
static size_t snapshot(dr_model_t *m, const dr_user_t *u, uint8_t *buf, size_t cap) {
    size_t at = 0, len;
    uint8_t *rec;
    assert_int_equal(dr_user_encode(u, dr_model_conf(m)->dim, &rec, &len), 0);
    snap_put(buf, cap, &at, rec, len);
    free(rec);
    assert_int_equal(dr_model_encode_globals(m, &rec, &len), 0);
    snap_put(buf, cap, &at, rec, len);
    free(rec);
    dr_items_view_t v;
    dr_model_items(m, &v);
    snap_put(buf, cap, &at, &v.n, sizeof(v.n));
    snap_put(buf, cap, &at, v.q, v.n * (size_t)v.dim * sizeof(float));
    snap_put(buf, cap, &at, v.bias, v.n * sizeof(float));
    snap_put(buf, cap, &at, v.pop, v.n * sizeof(float));
    snap_put(buf, cap, &at, v.ids, v.n * sizeof(int64_t));
    snap_put(buf, cap, &at, v.excluded, v.n);
    for (size_t i = 0; i < v.n; i++) {
        int64_t nb_id[16];
        float nb_w[16], engaged;
        size_t n = dr_model_item_neighbors(m, (int64_t)i, &engaged, nb_id, nb_w, 16);
        snap_put(buf, cap, &at, &engaged, sizeof(engaged));
        snap_put(buf, cap, &at, nb_id, n * sizeof(int64_t));
        snap_put(buf, cap, &at, nb_w, n * sizeof(float));
    }
    size_t dirty = dr_model_dirty_items(m);
    snap_put(buf, cap, &at, &dirty, sizeof(dirty));
    return at;
}

/* An item sink that stores nothing: it only clears the dirty marks. */
static int discard_record(void *ctx, int64_t item_id, const void *rec, size_t len) {
    (void)ctx, (void)item_id, (void)rec, (void)len;
    return 0;
}

static dr_model_t *new_model_max_items(int64_t max_items) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.max_items = max_items;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    return m;
}

/* "an error leaves the model and u exactly as before" (dr_learner_apply):
 * with the catalog full, a click on a new item is refused with DR_ERANGE,
 * although two of the user's impressions went stale before it (they would
 * be learned as negatives first), and so is an impression of a new item:
 * the user's record, the globals and every item's parameters are the same
 * bytes as before. The default catalog bound is 1,000,000 items. */
static void test_refused_event_leaves_no_trace(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    assert_int_equal(c.max_items, 1000000);
    dr_model_t *m = new_model_max_items(4);
    dr_user_t *u = dr_user_new_conf(1, dr_model_conf(m));
    dr_apply_result_t r;
    for (int64_t item = 1; item <= 4; item++) {
        dr_event_t click = ev(1, item, DR_EV_CLICK, 0, item);
        assert_int_equal(dr_learner_apply(m, u, &click, (uint64_t)item, &r), 0);
    }
    dr_event_t imp1 = ev(1, 1, DR_EV_IMPRESSION, 0, 100), imp2 = ev(1, 2, DR_EV_IMPRESSION, 0, 100);
    assert_int_equal(dr_learner_apply(m, u, &imp1, 10, &r), 0);
    assert_int_equal(dr_learner_apply(m, u, &imp2, 11, &r), 0);
    assert_int_equal(u->pending_len, 2);
    /* clean slate: what is stored so far is stored */
    assert_int_equal(dr_model_drain_dirty_items(m, discard_record, NULL), 0);
    static uint8_t before[65536], after[65536];
    size_t n_before = snapshot(m, u, before, sizeof(before));
    int64_t later = 100 + dr_model_conf(m)->impression_timeout_ms + 1; /* both impressions are stale */
    dr_event_t refused[] = {ev(1, 99, DR_EV_CLICK, 0, later), ev(1, 98, DR_EV_IMPRESSION, 0, later),
                            ev(1, 97, DR_EV_PURCHASE, 0, later)};
    for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
        assert_int_equal(dr_learner_apply(m, u, &refused[k], 20 + k, &r), DR_ERANGE);
        assert_false(r.learned);
        size_t n_after = snapshot(m, u, after, sizeof(after));
        assert_int_equal(n_after, n_before);
        assert_memory_equal(after, before, n_before);
    }
    assert_int_equal(dr_model_item_index(m, 99, false), DR_ENOTFOUND);
    /* a known item still learns, and takes the stale impressions with it */
    dr_event_t known = ev(1, 3, DR_EV_CLICK, 0, later);
    assert_int_equal(dr_learner_apply(m, u, &known, 30, &r), 0);
    assert_true(r.learned && r.updates >= 3);
    assert_int_equal(u->pending_len, 0);
    dr_user_free(u);
    dr_model_free(m);
}

/* A pending impression whose item can never get a row (the catalog filled
 * up after it was shown) is dropped when it goes stale instead of refusing
 * every later event of the user; and the catalog's last row goes to the
 * event's own item before such an impression. */
static void test_full_catalog_drops_unplaceable_impressions(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        dr_model_t *m = new_model_max_items(3);
        dr_user_t *u = dr_user_new_conf(1, dr_model_conf(m));
        dr_apply_result_t r;
        dr_event_t seq[] = {ev(1, 1, DR_EV_CLICK, 0, 0), ev(1, 2, DR_EV_CLICK, 0, 1),
                            ev(1, 7, DR_EV_IMPRESSION, 0, 2)}; /* 7: no row yet, one left */
        for (int k = 0; k < 3; k++) assert_int_equal(dr_learner_apply(m, u, &seq[k], (uint64_t)k, &r), 0);
        int64_t later = 2 + dr_model_conf(m)->impression_timeout_ms + 1;
        if (variant == 0) {
            /* another item takes the last row; 7 goes stale with none left */
            dr_event_t fill = ev(1, 3, DR_EV_CLICK, 0, 3);
            assert_int_equal(dr_learner_apply(m, u, &fill, 5, &r), 0);
            dr_event_t next = ev(1, 1, DR_EV_LIKE, 0, later);
            assert_int_equal(dr_learner_apply(m, u, &next, 6, &r), 0);
            assert_true(r.learned);
        } else {
            /* the click on new item 8 and the stale impression of 7 both
             * need a row and one is left: the click gets it */
            dr_event_t click = ev(1, 8, DR_EV_CLICK, 0, later);
            assert_int_equal(dr_learner_apply(m, u, &click, 6, &r), 0);
            assert_true(dr_model_item_index(m, 8, false) >= 0);
        }
        assert_int_equal(u->pending_len, 0);
        assert_int_equal(dr_model_item_index(m, 7, false), DR_ENOTFOUND);
        dr_user_free(u);
        dr_model_free(m);
    }
}

/* Bad settings are refused with the key's name. */
static void test_conf_check(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    char err[128];
    assert_int_equal(dr_learner_conf_check(&c, err, sizeof(err)), 0);
    c.dim = 0;
    assert_int_equal(dr_learner_conf_check(&c, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "learner.dim"));
    dr_learner_conf_default(&c);
    c.pop_fade = 0;
    assert_int_equal(dr_learner_conf_check(&c, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "learner.prior.popularity.fade"));
}

/* dr_apply_result_t.samples: one value per outcome. An impression answered
 * by a click is a hit (0), one that comes due unanswered or is hidden is a
 * miss (1); the like after a click repeats it (no sample); an engagement no
 * impression announced is scored by its surprise. */
static void test_drift_signal_samples(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    dr_user_t *u = dr_user_new_conf(5, dr_model_conf(m));
    dr_apply_result_t r;
    dr_event_t e = ev(5, 1, DR_EV_IMPRESSION, 0, 1000);
    assert_int_equal(dr_learner_apply(m, u, &e, 1, &r), 0);
    assert_int_equal(r.n_samples, 0); /* not answered yet */
    e = ev(5, 1, DR_EV_CLICK, 0, 1500);
    assert_int_equal(dr_learner_apply(m, u, &e, 2, &r), 0);
    assert_int_equal(r.n_samples, 1);
    assert_true(r.samples[0] == 0.0f);
    e = ev(5, 1, DR_EV_LIKE, 0, 1600);
    assert_int_equal(dr_learner_apply(m, u, &e, 3, &r), 0);
    assert_int_equal(r.n_samples, 0);
    /* two impressions nobody answers, then an event past their timeout */
    e = ev(5, 2, DR_EV_IMPRESSION, 0, 2000);
    assert_int_equal(dr_learner_apply(m, u, &e, 4, &r), 0);
    e = ev(5, 3, DR_EV_IMPRESSION, 0, 2100);
    assert_int_equal(dr_learner_apply(m, u, &e, 5, &r), 0);
    e = ev(5, 4, DR_EV_IMPRESSION, 0, 2000 + 61000 + 500);
    assert_int_equal(dr_learner_apply(m, u, &e, 6, &r), 0);
    assert_int_equal(r.n_samples, 2);
    assert_true(r.samples[0] == 1.0f && r.samples[1] == 1.0f);
    e = ev(5, 4, DR_EV_HIDE, 0, 2000 + 62000);
    assert_int_equal(dr_learner_apply(m, u, &e, 7, &r), 0);
    assert_int_equal(r.n_samples, 1);
    assert_true(r.samples[0] == 1.0f);
    e = ev(5, 9, DR_EV_CLICK, 0, 2000 + 63000); /* no impression announced it */
    assert_int_equal(dr_learner_apply(m, u, &e, 8, &r), 0);
    assert_int_equal(r.n_samples, 1);
    assert_true(fabsf(r.samples[0] - (1.0f - r.prediction)) < 1e-6f);
    assert_int_equal(u->drift_samples, 5);
    dr_user_free(u);
    dr_model_free(m);
}

/* The user's level, the population detector's reference: none until the
 * detector's window holds DR_DRIFT_LEVEL_MIN_SAMPLES samples, then the
 * window's mean before the event's own samples; none with drift off. */
static void test_drift_level(void **state) {
    (void)state;
    for (int enabled = 1; enabled >= 0; enabled--) {
        dr_learner_conf_t c;
        dr_learner_conf_default(&c);
        c.dim = 8;
        c.drift_enabled = enabled;
        dr_model_t *m = NULL;
        char err[256];
        assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
        dr_user_t *u = dr_user_new_conf(6, dr_model_conf(m));
        dr_apply_result_t r;
        int64_t t = 1000;
        int samples = 0, misses = 0;
        for (int i = 0; i < 40; i++, t += 100000) { /* each impression comes due at the next */
            dr_event_t imp = ev(6, 3000 + i, DR_EV_IMPRESSION, 0, t);
            assert_int_equal(dr_learner_apply(m, u, &imp, (uint64_t)t, &r), 0);
            if (!enabled || samples < DR_DRIFT_LEVEL_MIN_SAMPLES) assert_true(isnan(r.level));
            else assert_float_equal(r.level, (double)misses / samples, 1e-6);
            /* as the population detector gets it: without a level, left out;
             * with drift off, the sample as it is */
            for (int k = 0; k < r.n_samples; k++) {
                double x;
                bool kept = dr_drift_global_sample(&c, &r, k, true, &x);
                assert_int_equal(kept, !isnan(r.level) || !enabled);
                if (kept) assert_float_equal(x, enabled ? r.samples[k] - r.level : r.samples[k], 1e-6);
            }
            samples += r.n_samples;
            for (int k = 0; k < r.n_samples; k++) misses += r.samples[k] == 1.0f;
            if (i % 3 == 0) { /* a third clicked: the level is not all misses */
                dr_event_t click = ev(6, 3000 + i, DR_EV_CLICK, 0, t + 500);
                assert_int_equal(dr_learner_apply(m, u, &click, (uint64_t)t + 1, &r), 0);
                samples += r.n_samples;
                for (int k = 0; k < r.n_samples; k++) misses += r.samples[k] == 1.0f;
            }
        }
        assert_true(samples > 20 && misses > 0 && misses < samples);
        dr_user_free(u);
        dr_model_free(m);
    }
}

/* A user whose impressions stop being clicked: the detector cuts in the
 * worsening direction and the drift arm responds; a user who starts
 * clicking cuts in the improving direction and gets no response. */
static void feed_user(dr_model_t *m, dr_user_t *u, int n, bool clicked, int64_t *t) {
    dr_apply_result_t r;
    for (int i = 0; i < n; i++, *t += 2000) {
        int64_t item = 1000 + (*t / 2000) % 500;
        dr_event_t imp = ev(u->user_id, item, DR_EV_IMPRESSION, 0, *t);
        assert_int_equal(dr_learner_apply(m, u, &imp, (uint64_t)*t, &r), 0);
        if (clicked) {
            dr_event_t c = ev(u->user_id, item, DR_EV_CLICK, 0, *t + 500);
            assert_int_equal(dr_learner_apply(m, u, &c, (uint64_t)*t + 1, &r), 0);
        }
    }
}

static int first_cut(dr_model_t *m, dr_user_t *u, int n, bool clicked, int64_t *t, int *direction,
                     bool *respond) {
    dr_apply_result_t r;
    for (int i = 0; i < n; i++, *t += 100000) { /* each impression comes due at the next */
        int64_t item = 3000 + i;
        dr_event_t imp = ev(u->user_id, item, DR_EV_IMPRESSION, 0, *t);
        assert_int_equal(dr_learner_apply(m, u, &imp, (uint64_t)*t, &r), 0);
        if (!r.drift && clicked) {
            dr_event_t c = ev(u->user_id, item, DR_EV_CLICK, 0, *t + 500);
            assert_int_equal(dr_learner_apply(m, u, &c, (uint64_t)*t + 1, &r), 0);
        }
        if (r.drift) {
            *direction = r.drift_direction;
            *respond = dr_learner_should_respond(m, u, &r);
            return i;
        }
    }
    return -1;
}

static void test_drift_direction_and_response(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.drift.delta = 0.05;
    c.drift_min_change = 0.0; /* every cut: test_drift_min_change has the rest */
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    int64_t t = 0;
    int dir = 0;
    bool respond = false;
    dr_user_t *u = dr_user_new_conf(11, &c);
    feed_user(m, u, 150, true, &t); /* 150 hits */
    t += 100000;
    int at = first_cut(m, u, 200, false, &t, &dir, &respond); /* then misses */
    assert_true(at > 0 && at < 40);
    assert_int_equal(dir, 1);
    assert_true(respond);
    assert_int_equal(u->drift_cuts, 1);
    dr_user_free(u);
    /* the other way round: a cut, but no response */
    u = dr_user_new_conf(12, &c);
    t = 0;
    for (int i = 0; i < 150; i++, t += 100000) {
        dr_apply_result_t r;
        dr_event_t imp = ev(12, 5000 + i, DR_EV_IMPRESSION, 0, t);
        assert_int_equal(dr_learner_apply(m, u, &imp, (uint64_t)t, &r), 0);
    }
    at = first_cut(m, u, 200, true, &t, &dir, &respond);
    assert_true(at > 0);
    assert_int_equal(dir, -1);
    assert_false(respond);
    dr_user_free(u);
    dr_model_free(m);
    /* the control arm: the same worsening cut, no response */
    c.drift_arm_share = 0;
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    u = dr_user_new_conf(11, &c);
    t = 0;
    feed_user(m, u, 150, true, &t);
    t += 100000;
    at = first_cut(m, u, 200, false, &t, &dir, &respond);
    assert_true(at > 0);
    assert_int_equal(dir, 1);
    assert_false(respond);
    dr_user_free(u);
    dr_model_free(m);
}

/* n outcomes of impressions to u, each missed with probability `miss` (a
 * click answers it, else the next impression finds it due); counts the
 * cuts reported as drift (either way) and the small ones, and the index
 * of the first drift for the worse (-1: none). */
static int play_outcomes(dr_model_t *m, dr_user_t *u, int64_t *t, int n, double miss, uint64_t *rng,
                         int *small, int *first) {
    int drifts = 0;
    *first = -1;
    for (int i = 0; i < n; i++) {
        int64_t item = 1 + i % 50;
        dr_event_t imp = ev(u->user_id, item, DR_EV_IMPRESSION, 0, *t += 120000);
        dr_apply_result_t r;
        assert_int_equal(dr_learner_apply(m, u, &imp, (uint64_t)*t, &r), 0);
        int cut = r.drift && r.drift_direction > 0;
        drifts += r.drift;
        *small += r.drift_small;
        *rng = dr_mix64(*rng + 1);
        if ((double)(*rng >> 11) * 0x1.0p-53 >= miss) {
            dr_event_t click = ev(u->user_id, item, DR_EV_CLICK, 0, *t + 1000);
            assert_int_equal(dr_learner_apply(m, u, &click, (uint64_t)*t + 1, &r), 0);
            cut |= r.drift && r.drift_direction > 0;
            drifts += r.drift;
            *small += r.drift_small;
        }
        if (cut && *first < 0) *first = i;
    }
    return drifts;
}

/* Claim (drift.min.change): at a large δ ADWIN also cuts the window of a
 * user whose miss rate holds still, on chance differences between short
 * windows; a cut is drift only when the kept window's mean and the dropped
 * part's differ by drift.min.change, so such a user is far less often in
 * drift, while a jump of its miss rate from 0.5 to 1 (an interest switch)
 * is drift within a few dozen outcomes either way. */
static void test_drift_min_change(void **state) {
    (void)state;
    int stable[2], small[2] = {0, 0}, jump_small = 0, delay[2];
    for (int t = 0; t < 2; t++) {
        dr_learner_conf_t c;
        dr_learner_conf_default(&c);
        c.dim = 8;
        c.drift.delta = 0.5;
        c.drift_min_change = t == 0 ? 0.0 : 0.15;
        dr_model_t *m;
        char err[128];
        assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
        stable[t] = delay[t] = 0;
        for (int64_t user = 1; user <= 40; user++) {
            dr_user_t *u = dr_user_new_conf(user, &c);
            int64_t ts = 0;
            uint64_t rng = (uint64_t)user;
            int first;
            stable[t] += play_outcomes(m, u, &ts, 1000, 0.5, &rng, &small[t], &first);
            assert_int_equal(play_outcomes(m, u, &ts, 100, 1.0, &rng, &jump_small, &first) > 0, 1);
            delay[t] = first > delay[t] ? first : delay[t];
            dr_user_free(u);
        }
        dr_model_free(m);
    }
    print_message("      40 users, 1,000 outcomes at a miss rate of 0.5, then 100 at 1: drifts while stable "
                  "%d without the minimum change, %d with 0.15 (%d small cuts); the longest delay after "
                  "the jump %d / %d outcomes\n", stable[0], stable[1], small[1], delay[0], delay[1]);
    assert_int_equal(small[0], 0);
    assert_true(stable[0] >= 8 && stable[1] * 3 <= stable[0]);
    assert_true(small[1] >= stable[0] - stable[1]);
    assert_true(delay[1] <= 40);
}

/* A user who engaged with items 100..119, then with nothing but one item
 * (200) over 24 samples (hides: misses), its detector's window holding the
 * last 30 samples: 6 of the old clicks, the misses, the one click. */
static dr_user_t *user_whose_clicks_stopped(dr_model_t *m, const dr_learner_conf_t *c) {
    dr_user_t *u = dr_user_new_conf(1, c);
    dr_apply_result_t r;
    int64_t ts = 0;
    for (int i = 0; i < 44; i++) {
        dr_event_t e = i < 20    ? ev(1, 100 + i, DR_EV_CLICK, 0, ts += 1000)
                       : i == 40 ? ev(1, 200, DR_EV_CLICK, 0, ts += 1000)
                                 : ev(1, 300 + i, DR_EV_HIDE, 0, ts += 1000);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)ts, &r), 0);
        assert_int_equal(r.n_samples, 1);
    }
    assert_int_equal(u->drift_samples, 44);
    for (int i = 0; i < 30; i++) assert_int_equal(dr_adwin_update(&u->drift, 0.5), 0);
    return u;
}

/* A ring far smaller than the window ADWIN kept (learner.recent.items 4,
 * the window 30 samples): what the ring holds decides, and a ring that
 * starts inside the window tells nothing of the samples before it. Clicks
 * only: the window is kept (4 replayed); clicks then hides: the ring holds
 * misses, the regime starts at the cut; hides then clicks: the ring holds
 * 4 engagements only, so the window is kept, as the ring cannot tell. */
static void test_regime_at_cut_small_ring(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.negatives = 0;
    c.recent_items = 4;
    c.drift_enabled = false; /* the window is filled by hand */
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    const int replayed[3] = {4, 0, 4};
    const uint64_t regime_from[3] = {10, 40, 10};
    for (int story = 0; story < 3; story++) {
        dr_user_t *u = dr_user_new_conf(1, &c);
        dr_apply_result_t r;
        for (int i = 0; i < 40; i++) {
            bool click = story == 0 || (story == 1 ? i < 20 : i >= 36);
            dr_event_t e = ev(1, 100 + i, click ? DR_EV_CLICK : DR_EV_HIDE, 0, 1000 * (int64_t)(i + 1));
            assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
            assert_int_equal(r.n_samples, 1);
        }
        for (int i = 0; i < 30; i++) assert_int_equal(dr_adwin_update(&u->drift, 0.5), 0);
        assert_int_equal(dr_learner_readapt(m, u, 1), replayed[story]);
        assert_int_equal(u->regime_from, regime_from[story]);
        dr_user_free(u);
    }
    dr_model_free(m);
}

static bool sources_hold(const dr_model_t *m, const dr_user_t *u, int64_t lo, int64_t hi) {
    dr_cooc_sources_t src;
    dr_model_cooc_sources(m, u, &src);
    dr_items_view_t v;
    dr_model_items((dr_model_t *)m, &v);
    for (int k = 0; k < src.n; k++)
        if (v.ids[src.idx[k]] >= lo && v.ids[src.idx[k]] < hi) return true;
    return false;
}

/* At a cut for the worse ADWIN's kept window still holds the end of the old
 * regime, and its engagements are that end or chance clicks on the stale
 * lists: with misses in the window, the regime starts at the cut, so that
 * nothing of them holds the lists; the next engagement starts the new
 * context. An improving cut, or drift.regime.at.cut=false, keeps the
 * window as the regime (and test_readapt_uses_kept_window: a window of
 * engagements only is kept at a cut for the worse too). */
static void test_regime_starts_at_worse_cut(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.negatives = 0;
    c.recent_items = 64; /* the whole story fits the ring */
    c.cooc_hop_weight = 0; /* item 200's own pairs would carry a second hop back */
    c.drift_enabled = false; /* the window is filled by hand */
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_user_t *u = user_whose_clicks_stopped(m, &c);
    assert_true(sources_hold(m, u, 100, 120));
    assert_int_equal(dr_learner_readapt(m, u, 1), 0);
    assert_int_equal(u->regime_from, 44);
    assert_int_equal(dr_user_regime_len(m, u), 0);
    assert_false(sources_hold(m, u, 100, 120));
    assert_false(sources_hold(m, u, 200, 201));
    dr_apply_result_t r;
    dr_event_t next = ev(1, 500, DR_EV_CLICK, 0, 100000);
    assert_int_equal(dr_learner_apply(m, u, &next, 1, &r), 0);
    assert_int_equal(dr_user_regime_len(m, u), 1);
    assert_true(sources_hold(m, u, 500, 501));
    dr_user_free(u);
    /* the same user at an improving cut, or with the setting off: the window */
    dr_model_free(m);
    for (int t = 0; t < 2; t++) {
        c.regime_at_cut = t == 0;
        assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
        u = user_whose_clicks_stopped(m, &c);
        assert_int_equal(dr_learner_readapt(m, u, t == 0 ? -1 : 1), 30);
        assert_int_equal(u->regime_from, 14);
        assert_true(sources_hold(m, u, 100, 120));
        dr_user_free(u);
        dr_model_free(m);
    }
}

/* After a re-adaptation the items engaged before the kept window no longer
 * drive the co-engagement term: the old interest's neighbours lose it. */
static void test_regime_resets_coengagement_context(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.drift_enabled = false; /* the window is filled by hand */
    c.pop_weight = 0;
    c.pop_step = 0;
    /* the user's own pair (1, 50) would carry a second hop back to 2 */
    c.cooc_hop_weight = 0;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_apply_result_t r;
    /* the crowd: users who click 1 then 2, others who click 50 then 51 */
    for (int64_t user = 100; user < 140; user++) {
        dr_user_t *x = dr_user_new_conf(user, &c);
        int64_t first = user < 120 ? 1 : 50;
        for (int k = 0; k < 2; k++) {
            dr_event_t e = ev(user, first + k, DR_EV_CLICK, 0, 1000 * k);
            assert_int_equal(dr_learner_apply(m, x, &e, (uint64_t)k, &r), 0);
        }
        dr_user_free(x);
    }
    dr_user_t *u = dr_user_new_conf(7, &c);
    dr_event_t a = ev(7, 1, DR_EV_CLICK, 0, 10000), b = ev(7, 50, DR_EV_CLICK, 0, 20000);
    assert_int_equal(dr_learner_apply(m, u, &a, 1, &r), 0);
    assert_int_equal(dr_learner_apply(m, u, &b, 2, &r), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    float *before = calloc(v.n, sizeof(float)), *after = calloc(v.n, sizeof(float));
    dr_model_add_coengagement(m, u, before, v.n);
    int64_t i2 = dr_model_item_index(m, 2, false), i51 = dr_model_item_index(m, 51, false);
    assert_true(before[i2] > 0 && before[i51] > 0);
    assert_int_equal(dr_adwin_update(&u->drift, 0.5), 0); /* kept: the last sample (item 50) */
    assert_int_equal(dr_learner_readapt(m, u, 1), 1);
    dr_model_add_coengagement(m, u, after, v.n);
    assert_true(after[i2] == 0.0f);
    assert_true(after[i51] == before[i51]);
    /* the regime survives a record round trip */
    uint8_t *rec;
    size_t len;
    assert_int_equal(dr_user_encode(u, c.dim, &rec, &len), 0);
    dr_user_t *back;
    assert_int_equal(dr_user_decode(7, &c, rec, len, &back), 0);
    assert_int_equal(back->regime_from, u->regime_from);
    assert_int_equal(back->drift_samples, u->drift_samples);
    assert_int_equal(back->readapts, 1);
    assert_memory_equal(back->recent, u->recent, sizeof(dr_recent_event_t) * u->recent_len);
    assert_int_equal(dr_user_regime_len(m, back), 1);
    free(rec);
    dr_user_free(back);
    free(before);
    free(after);
    dr_user_free(u);
    dr_model_free(m);
}

/* The response to a population-wide drift: for trend_positives positives
 * the lists of users with drift handling favour the items the population
 * engages with now; the control arm's do not change. */
static void test_trend_term(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.drift_arm_share = 0.5;
    c.trend_positives = 100;
    c.pop_weight = 0; /* the trend term alone ranks the crowd's items */
    c.pop_step = 0;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_apply_result_t r;
    for (int i = 0; i < 50; i++) { /* item 1 is what everyone clicks */
        dr_user_t *x = dr_user_new_conf(500 + i, &c);
        dr_event_t e = ev(500 + i, i % 2 ? 1 : 100 + i, DR_EV_CLICK, 0, 1000);
        assert_int_equal(dr_learner_apply(m, x, &e, (uint64_t)i, &r), 0);
        dr_user_free(x);
    }
    int64_t handled = -1, control = -1;
    for (int64_t id = 1; handled < 0 || control < 0; id++)
        *(dr_model_drift_handled(m, id) ? &handled : &control) = id;
    dr_user_t *uh = dr_user_new_conf(handled, &c), *uc = dr_user_new_conf(control, &c);
    int64_t i1 = dr_model_item_index(m, 1, false);
    float sh = dr_model_score(m, uh, i1), sc = dr_model_score(m, uc, i1);
    assert_int_equal(dr_model_trend_left(m), 0);
    dr_model_trend_start(m);
    assert_int_equal(dr_model_trend_left(m), 100);
    assert_true(dr_model_score(m, uh, i1) > sh + 2.0f); /* log(1 + 25) */
    assert_true(dr_model_score(m, uc, i1) == sc);
    /* the rank the evaluation uses is the list's, trend term included */
    dr_items_view_t v;
    dr_model_items(m, &v);
    for (size_t t = 0; t < v.n; t++) {
        int64_t above = 0;
        for (size_t i = 0; i < v.n; i++)
            above += i != t && dr_model_score(m, uh, (int64_t)i) > dr_model_score(m, uh, (int64_t)t);
        assert_int_equal(dr_model_list_rank(m, uh, v.ids[t]), above + 1);
    }
    for (int i = 0; i < 100; i++) {
        dr_user_t *x = dr_user_new_conf(900 + i, &c);
        dr_event_t e = ev(900 + i, 2, DR_EV_CLICK, 0, 1000);
        assert_int_equal(dr_learner_apply(m, x, &e, (uint64_t)i, &r), 0);
        dr_user_free(x);
    }
    assert_int_equal(dr_model_trend_left(m), 0); /* over */
    float scores[1] = {0};
    dr_model_add_trend_range(m, uh, scores, (size_t)i1, 1);
    assert_true(scores[0] == 0.0f);
    dr_user_free(uh);
    dr_user_free(uc);
    dr_model_free(m);
}

/* The trend term's topic part: after a population-wide shift the topic
 * everyone turned to is shown in few slots (organic ones) and engaged with
 * there far more often than the rest. Items 1-400 in four topics (item %
 * 4); topic 3 gets a tenth of the impressions, engaged 3 in 5, the others
 * 1 in 5. The count part (positives) favours the others' items, each of
 * which earned more positives; the lift gives topic 3's items the boost,
 * the others none, and only to users with drift handling. */
/* dr_model_popular_top (the retrieval path's popular candidates): the
 * items of largest p_i, each once, whatever max is against the catalog:
 * none for 0, every item for more than the catalog holds, and with many
 * items tied at the boundary (clicks counted 0-4 times) no item left out
 * whose p_i beats one taken. */
static void test_popular_top_any_size(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    enum { N = 500 };
    for (int64_t item = 1; item <= N; item++) assert_true(dr_model_item_index(m, item, true) >= 0);
    dr_user_t *u = dr_user_new_conf(7, &c);
    dr_apply_result_t r;
    uint64_t seq = 1;
    for (int64_t item = 1; item <= N; item++)
        for (int k = 0; k < (int)(item % 5); k++) {
            dr_event_t ev = {7, item, DR_EV_CLICK, 0, (int64_t)seq};
            assert_int_equal(dr_learner_apply(m, u, &ev, seq++, &r), 0);
        }
    dr_items_view_t v;
    dr_model_items(m, &v);
    static int64_t idx[N + 100];
    static float scratch[N + 100];
    static bool taken[N];
    assert_int_equal(dr_model_popular_top(m, idx, scratch, 0), 0);
    const size_t sizes[] = {1, 37, 100, 101, N - 1, N, N + 100};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t got = dr_model_popular_top(m, idx, scratch, sizes[s]);
        assert_int_equal(got, sizes[s] < v.n ? sizes[s] : v.n);
        memset(taken, 0, sizeof(taken));
        float least = INFINITY;
        for (size_t j = 0; j < got; j++) {
            assert_true(idx[j] >= 0 && (size_t)idx[j] < v.n);
            assert_false(taken[idx[j]]); /* each once */
            taken[idx[j]] = true;
            if (v.pop[idx[j]] < least) least = v.pop[idx[j]];
        }
        size_t below = 0;
        for (size_t i = 0; i < v.n; i++)
            if (!taken[i]) {
                assert_true(v.pop[i] <= least);
                below += v.pop[i] < least;
            }
        if (sizes[s] == 37) assert_true(below > 0); /* the counts set p_i apart */
    }
    dr_user_free(u);
    dr_model_free(m);
}

static void test_trend_topic_lift(void **state) {
    (void)state;
    for (int counts_only = 0; counts_only <= 1; counts_only++) {
        dr_learner_conf_t c;
        dr_learner_conf_default(&c);
        c.dim = 8;
        c.drift_arm_share = 0.5;
        c.trend_positives = 100000;
        c.trend_weight = counts_only ? 2.0f : 0.0f;
        c.trend_topic_weight = counts_only ? 0.0f : 100.0f;
        dr_model_t *m;
        char err[128];
        assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
        for (int64_t item = 1; item <= 400; item++)
            assert_int_equal(dr_model_set_item_source(m, item, -1, item % 4), 0);
        dr_model_trend_start(m);
        uint64_t rng = 42;
        dr_apply_result_t r;
        for (int64_t user = 1000; user < 1400; user++) {
            dr_user_t *x = dr_user_new_conf(user, &c);
            for (int k = 0; k < 5; k++) {
                bool trending = dr_rand01(&rng) < 0.1;
                int64_t item = 4 * (1 + (int64_t)(dr_rand01(&rng) * 99)) + (trending ? 3 : (int64_t)(dr_rand01(&rng) * 3));
                int64_t t = 1000 * (user * 10 + k);
                dr_event_t imp = ev(user, item, DR_EV_IMPRESSION, 0, t);
                assert_int_equal(dr_learner_apply(m, x, &imp, (uint64_t)t, &r), 0);
                bool engaged = dr_rand01(&rng) < (trending ? 0.6 : 0.2);
                dr_event_t answer = ev(user, item, engaged ? DR_EV_CLICK : DR_EV_HIDE, 0, t + 500);
                assert_int_equal(dr_learner_apply(m, x, &answer, (uint64_t)t + 1, &r), 0);
            }
            dr_user_free(x);
        }
        int64_t handled = -1, control = -1;
        for (int64_t id = 1; handled < 0 || control < 0; id++)
            *(dr_model_drift_handled(m, id) ? &handled : &control) = id;
        dr_user_t *uh = dr_user_new_conf(handled, &c), *uc = dr_user_new_conf(control, &c);
        dr_items_view_t v;
        dr_model_items(m, &v);
        float *term = calloc(v.n, sizeof(float)), *none = calloc(v.n, sizeof(float));
        dr_model_add_trend_range(m, uh, term, 0, v.n);
        dr_model_add_trend_range(m, uc, none, 0, v.n);
        double sum[4] = {0}, n[4] = {0};
        for (size_t i = 0; i < v.n; i++) {
            int topic = (int)(v.ids[i] % 4);
            sum[topic] += term[i];
            n[topic]++;
            assert_true(none[i] == 0.0f); /* the control arm's lists do not change */
        }
        double trending = sum[3] / n[3], rest = (sum[0] + sum[1] + sum[2]) / (n[0] + n[1] + n[2]);
        print_message("      %s: the trending topic's items %.2f on average, the others' %.2f\n",
                      counts_only ? "counts" : "lift", trending, rest);
        if (counts_only) {
            assert_true(trending < rest);
        } else {
            assert_true(trending > 50.0); /* 100 × log(lift), lift ~2.5 */
            assert_true(rest == 0.0);
        }
        free(term);
        free(none);
        dr_user_free(uh);
        dr_user_free(uc);
        dr_model_free(m);
    }
}

/* More topics than the lift's table holds (a feed's topics can be
 * hashtags): one item per topic, 20,000 of them, each shown once, one in
 * ten engaged. The topics that got a slot are followed, the others get no
 * lift. Before, outcomes of topics without a slot did not count, so once
 * the table was full no refresh came again and nothing was lifted; and a
 * look-up of such a topic walked the whole full table (now a quarter stays
 * free; the time is printed, not asserted). */
static void test_trend_topic_lift_many_topics(void **state) {
    (void)state;
    enum { TOPICS = 20000 };
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.drift_arm_share = 1.0;
    c.trend_weight = 0.0f;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    for (int64_t item = 1; item <= TOPICS; item++)
        assert_int_equal(dr_model_set_item_source(m, item, -1, item), 0);
    dr_model_trend_start(m);
    dr_apply_result_t r;
    double t0 = dr_mono_s();
    for (int64_t item = 1; item <= TOPICS; item++) {
        dr_user_t *x = dr_user_new_conf(item, &c);
        dr_event_t imp = ev(item, item, DR_EV_IMPRESSION, 0, 1000 * item);
        assert_int_equal(dr_learner_apply(m, x, &imp, (uint64_t)item, &r), 0);
        dr_event_t answer = ev(item, item, item % 10 == 0 ? DR_EV_CLICK : DR_EV_HIDE, 0, 1000 * item + 500);
        assert_int_equal(dr_learner_apply(m, x, &answer, (uint64_t)item, &r), 0);
        dr_user_free(x);
    }
    double took = dr_mono_s() - t0;
    dr_user_t *u = dr_user_new_conf(1, &c);
    dr_items_view_t v;
    dr_model_items(m, &v);
    float *term = calloc(v.n, sizeof(float));
    dr_model_add_trend_range(m, u, term, 0, v.n);
    int lifted = 0;
    int64_t last_lifted = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (term[i] <= 0.0f) continue;
        assert_true(v.ids[i] % 10 == 0); /* only engaged topics rise */
        lifted++;
        if (v.ids[i] > last_lifted) last_lifted = v.ids[i];
    }
    print_message("      %d topics: %d lifted, the last at topic %lld; 40,000 events in %.3f s\n", TOPICS, lifted,
                  (long long)last_lifted, took);
    /* the engaged tenth of the topics that took the slots, shown first */
    assert_true(lifted >= 50 && lifted <= DR_TREND_TOPICS / 10 + 1);
    assert_true(last_lifted <= DR_TREND_TOPICS);
    free(term);
    dr_user_free(u);
    dr_model_free(m);
}

/* A co-engagement source fades with the impressions the user ignored since
 * (learner.cooc.age): a chance click cannot hold the lists on its topic. */
static void test_coengagement_source_fades(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.pop_weight = 0;
    c.pop_step = 0;
    c.drift_enabled = false;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_apply_result_t r;
    for (int64_t user = 100; user < 120; user++) { /* the crowd: 1 then 2 */
        dr_user_t *x = dr_user_new_conf(user, &c);
        for (int k = 0; k < 2; k++) {
            dr_event_t e = ev(user, 1 + k, DR_EV_CLICK, 0, 1000 * k);
            assert_int_equal(dr_learner_apply(m, x, &e, (uint64_t)k, &r), 0);
        }
        dr_user_free(x);
    }
    dr_user_t *u = dr_user_new_conf(7, &c);
    dr_event_t a = ev(7, 1, DR_EV_CLICK, 0, 10000);
    assert_int_equal(dr_learner_apply(m, u, &a, 1, &r), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    float *fresh = calloc(v.n + 100, sizeof(float)), *faded = calloc(v.n + 100, sizeof(float));
    int64_t i2 = dr_model_item_index(m, 2, false);
    dr_model_add_coengagement(m, u, fresh, v.n);
    /* 50 impressions nobody answers: 50 misses, as many as τ */
    for (int k = 0; k < 50; k++) {
        dr_event_t imp = ev(7, 500 + k, DR_EV_IMPRESSION, 0, 20000 + 100000 * (int64_t)k);
        assert_int_equal(dr_learner_apply(m, u, &imp, (uint64_t)k, &r), 0);
    }
    assert_int_equal(u->drift_samples, 1 + 49); /* the click's surprise, then 49 come due */
    dr_model_items(m, &v);
    dr_model_add_coengagement(m, u, faded, v.n);
    assert_true(fresh[i2] > 0);
    assert_true(fabsf(faded[i2] - fresh[i2] * 50.0f / (50.0f + 49.0f)) < 1e-4f * fresh[i2]);
    free(fresh);
    free(faded);
    dr_user_free(u);
    dr_model_free(m);
}

/* A record from before the drift regime (version 4), read after an
 * upgrade: every recent event is in the (whole) regime, the sample counts
 * start from 0, and the first re-adaptation still works. */
static void test_reads_version_4_user_record(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    const dr_learner_conf_t *c = dr_model_conf(m);
    dr_user_t *u = dr_user_new_conf(9, c);
    dr_apply_result_t r;
    for (int i = 0; i < 30; i++) {
        dr_event_t e = ev(9, 10 + i, DR_EV_CLICK, 0, i * 1000);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    uint8_t *rec;
    size_t len;
    assert_int_equal(dr_user_encode(u, c->dim, &rec, &len), 0);
    rec[0] = 4;
    size_t v4_len = len - 28 - 4 * (size_t)u->recent_len - 2 - REST_BYTES(u); /* v5 added the regime, v6 the hidden items, v7 the seen-posts filter */
    dr_user_t *back;
    assert_int_equal(dr_user_decode(9, c, rec, v4_len, &back), 0);
    assert_int_equal(back->drift_samples, 0);
    assert_int_equal(back->regime_from, 0);
    assert_int_equal(back->readapts, 0);
    assert_int_equal(back->recent_len, u->recent_len);
    assert_int_equal(dr_user_regime_len(m, back), back->recent_len);
    for (unsigned i = 0; i < back->recent_len; i++) {
        assert_int_equal(back->recent[i].item_id, u->recent[i].item_id);
        assert_int_equal(back->recent[i].sample, 0);
    }
    /* samples count on from 0; a cut that keeps the last 3 puts every
     * event from before the upgrade out of the regime */
    for (int i = 0; i < 5; i++) {
        dr_event_t e = ev(9, 100 + i, DR_EV_CLICK, 0, 100000 + i * 1000);
        assert_int_equal(dr_learner_apply(m, back, &e, (uint64_t)i, &r), 0);
    }
    dr_adwin_reset(&back->drift);
    for (int i = 0; i < 3; i++) dr_adwin_update(&back->drift, 0.5);
    assert_int_equal(dr_learner_readapt(m, back, 1), 3);
    assert_int_equal(dr_user_regime_len(m, back), 3);
    free(rec);
    dr_user_free(back);
    dr_user_free(u);
    dr_model_free(m);
}


/* An item's row and bias by id, or fails. */
static void item_row(const dr_model_t *m, int64_t id, float *row) {
    dr_items_view_t v;
    dr_model_items(m, &v);
    for (size_t i = 0; i < v.n; i++)
        if (v.ids[i] == id) {
            memcpy(row, v.q + i * (size_t)v.dim, (size_t)v.dim * sizeof(float));
            row[v.dim] = v.bias[i];
            return;
        }
    fail_msg("item %lld not in the model", (long long)id);
}

/* Exports everything pending of `from` into `to`; want_items items whose
 * factors changed, and as many whose co-engagement counts did. */
static void exchange(dr_model_t *from, dr_model_t *to, size_t want_items) {
    uint8_t *buf;
    size_t len, n, applied, skipped;
    assert_int_equal(dr_model_sync_pending(from), 2 * want_items);
    assert_int_equal(dr_model_sync_export(from, 1000, &buf, &len, &n), 0);
    assert_int_equal(n, 2 * want_items);
    assert_int_equal(dr_model_sync_import(to, buf, len, &applied, &skipped), 0);
    assert_int_equal(applied, 2 * want_items);
    assert_int_equal(skipped, 0);
    free(buf);
}

/* Claim: two instances that learned different users' events agree on
 * every item once each has added the other's export: an item only one of
 * them changed ends as that one's, an item both changed as the start plus
 * both changes, and so do the co-engagement counts; an export carries only the exporter's own changes (what it
 * imported is not sent back), and nothing is pending after it. A buffer of
 * another dimension or cut short is refused and changes nothing. */
static void test_sync_two_instances_agree(void **state) {
    (void)state;
    /* counts that never fade: with fading, what each counted first weighs
     * a little less than what it imported last (test_sync_moves_the_clock) */
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.mode = DR_MODE_RATING;
    c.dim = 8;
    c.cooc_halflife = 0;
    dr_model_t *a, *b;
    char err[128];
    assert_int_equal(dr_model_new(&a, &c, err, sizeof(err)), 0);
    assert_int_equal(dr_model_new(&b, &c, err, sizeof(err)), 0);
    assert_int_equal(dr_model_sync_enable(a), 0);
    assert_int_equal(dr_model_sync_enable(b), 0);
    dr_user_t *ua = dr_user_new(1, 8), *ub = dr_user_new(2, 8);
    dr_apply_result_t r;
    for (int i = 0; i < 40; i++) {
        dr_event_t ea = ev(1, 1 + i % 5, DR_EV_RATE, (float)(i % 5), i); /* items 1-5 */
        dr_event_t eb = ev(2, 4 + i % 5, DR_EV_RATE, (float)(5 - i % 5), i); /* items 4-8 */
        assert_int_equal(dr_learner_apply(a, ua, &ea, (uint64_t)i, &r), 0);
        assert_int_equal(dr_learner_apply(b, ub, &eb, (uint64_t)i, &r), 0);
    }
    exchange(a, b, 5);
    exchange(b, a, 5); /* b's own items 4-8 only, not a's 1-3 */
    assert_int_equal(dr_model_sync_pending(a), 0);
    assert_int_equal(dr_model_sync_pending(b), 0);
    for (int64_t id = 1; id <= 8; id++) {
        float ra[9], rb[9];
        item_row(a, id, ra);
        item_row(b, id, rb);
        for (int k = 0; k < 9; k++) assert_float_equal(ra[k], rb[k], 1e-5);
        /* co-engagement: the same counts on both sides */
        int64_t ids_a[16], ids_b[16];
        float w_a[16], w_b[16], eng_a, eng_b;
        size_t na = dr_model_item_neighbors(a, dr_model_item_index(a, id, false), &eng_a, ids_a, w_a, 16);
        size_t nb = dr_model_item_neighbors(b, dr_model_item_index(b, id, false), &eng_b, ids_b, w_b, 16);
        assert_int_equal(na, nb);
        assert_true(na > 0);
        assert_float_equal(eng_a, eng_b, 1e-6);
        assert_memory_equal(ids_a, ids_b, na * sizeof(*ids_a));
        assert_memory_equal(w_a, w_b, na * sizeof(*w_a));
    }
    /* nothing new: the next export carries nothing */
    uint8_t *buf;
    size_t len, n, applied, skipped;
    assert_int_equal(dr_model_sync_export(a, 1000, &buf, &len, &n), 0);
    assert_int_equal(n, 0);
    free(buf);
    /* refused: another dimension, a cut-short buffer */
    dr_event_t e = ev(1, 1, DR_EV_RATE, 4.0f, 99);
    assert_int_equal(dr_learner_apply(a, ua, &e, 99, &r), 0);
    assert_int_equal(dr_model_sync_export(a, 1000, &buf, &len, &n), 0);
    float before[9], after[9];
    item_row(b, 1, before);
    assert_int_equal(dr_model_sync_import(b, buf, len - 1, &applied, &skipped), DR_ECORRUPT);
    buf[4] = 16; /* dim */
    assert_int_equal(dr_model_sync_import(b, buf, len, &applied, &skipped), DR_EINVAL);
    item_row(b, 1, after);
    assert_memory_equal(before, after, sizeof(before));
    free(buf);
    dr_user_free(ua);
    dr_user_free(ub);
    dr_model_free(a);
    dr_model_free(b);
}

/* Claim (learner.cooc.halflife across instances): the clock counts the
 * engagements other instances send, and their counts arrive as of now.
 * Instance b learned 100 engagements elsewhere before a's 40 pairs (1, 2)
 * arrive; 100 more engagements of a's (H = 100) then halve b's count as
 * they halve a's, and both agree within what one export's lag weighs. */
static void test_sync_moves_the_clock(void **state) {
    (void)state;
    dr_model_t *a = cooc_model(100), *b = cooc_model(100);
    assert_int_equal(dr_model_sync_enable(a), 0);
    assert_int_equal(dr_model_sync_enable(b), 0);
    dr_apply_result_t r;
    click_alone(b, 1000, 100, 3, 5); /* b: 100 engagements, no pairs */
    click_pairs(a, 100, 40, 1, 2);
    uint8_t *buf;
    size_t len, n, applied, skipped;
    assert_int_equal(dr_model_sync_export(a, 1000, &buf, &len, &n), 0);
    assert_int_equal(dr_model_sync_import(b, buf, len, &applied, &skipped), 0);
    free(buf);
    int64_t id[4];
    float wb[4], eb;
    assert_int_equal(dr_model_item_neighbors(b, dr_model_item_index(b, 1, false), &eb, id, wb, 4), 1);
    assert_float_equal(wb[0], 40.0f, 1e-3); /* as of now: b's own past does not fade them */
    click_alone(a, 2000, 100, 10, 5); /* 100 more engagements on a, sent to b */
    assert_int_equal(dr_model_sync_export(a, 1000, &buf, &len, &n), 0);
    assert_int_equal(dr_model_sync_import(b, buf, len, &applied, &skipped), 0);
    free(buf);
    dr_user_t *fresh = dr_user_new_conf(7, dr_model_conf(a));
    dr_event_t click = ev(7, 1, DR_EV_CLICK, 0, 8000);
    dr_user_t *fresh_b = dr_user_new_conf(7, dr_model_conf(b));
    assert_int_equal(dr_learner_apply(a, fresh, &click, 9, &r), 0);
    assert_int_equal(dr_learner_apply(b, fresh_b, &click, 9, &r), 0);
    float sa = cooc_score(a, fresh, 2), sb = cooc_score(b, fresh_b, 2);
    /* a counted its pairs over the 80 engagements before the export, b got
     * them as the newest: b's count is above a's, by at most 2^(80/100) */
    assert_true(sa > 0 && sb > sa && sb <= sa * exp2f(0.8f));
    /* the 100 engagements since halved it, and the fresh click counts one */
    float w = dr_model_conf(b)->cooc_weight;
    assert_float_equal(sb, w * 40.0f / 2.0f * exp2f(-1.0f / 100.0f), w * 1e-3f);
    dr_user_free(fresh);
    dr_user_free(fresh_b);
    dr_model_free(a);
    dr_model_free(b);
}

/* Claim (dr_model_sync_save_pending): the changes a commit stored but did
 * not publish survive a restart. A model restored from its records and the
 * saved pending changes exports what the first would have: the same
 * factor changes, co-engagement counts and Δû. A cut value is refused. */
static void test_sync_pending_survives_restart(void **state) {
    (void)state;
    dr_model_t *a = new_model(DR_MODE_RATING);
    assert_int_equal(dr_model_sync_enable(a), 0);
    dr_user_t *u = dr_user_new(1, 8);
    dr_apply_result_t r;
    uint8_t *buf, *pend, *want, *got;
    size_t len, n, plen, want_len, got_len;
    for (int i = 0; i < 30; i++) { /* published: not pending any more */
        dr_event_t e = ev(1, 1 + i % 6, DR_EV_RATE, (float)(i % 5), i);
        assert_int_equal(dr_learner_apply(a, u, &e, (uint64_t)i, &r), 0);
    }
    assert_int_equal(dr_model_sync_export(a, 1000, &buf, &len, &n), 0);
    free(buf);
    for (int i = 30; i < 60; i++) { /* committed, not published */
        dr_event_t e = ev(1, 4 + i % 5, DR_EV_RATE, (float)(5 - i % 5), i);
        assert_int_equal(dr_learner_apply(a, u, &e, (uint64_t)i, &r), 0);
    }
    assert_true(dr_model_sync_pending(a) > 0);
    assert_int_equal(dr_model_sync_save_pending(a, &pend, &plen), 0);
    /* the restart: items and globals from the records, then the pending changes */
    dr_model_t *b = new_model(DR_MODE_RATING);
    copy_stored_model(a, b);
    assert_int_equal(dr_model_sync_enable(b), 0);
    for (size_t cut = 0; cut < plen; cut += 7)
        assert_int_equal(dr_model_sync_load_pending(b, pend, cut), DR_ECORRUPT);
    assert_int_equal(dr_model_sync_load_pending(b, pend, plen), 0);
    assert_int_equal(dr_model_sync_pending(b), dr_model_sync_pending(a));
    assert_int_equal(dr_model_sync_export(a, 1000, &want, &want_len, &n), 0);
    assert_int_equal(dr_model_sync_export(b, 1000, &got, &got_len, &n), 0);
    assert_true(n > 0);
    /* the same items, changes and counts (the order within may differ) */
    assert_int_equal(got_len, want_len);
    dr_model_t *ca = new_model(DR_MODE_RATING), *cb = new_model(DR_MODE_RATING);
    size_t applied, skipped;
    assert_int_equal(dr_model_sync_import(ca, want, want_len, &applied, &skipped), 0);
    assert_int_equal(dr_model_sync_import(cb, got, got_len, &applied, &skipped), 0);
    for (int64_t id = 1; id <= 8; id++) {
        float ra[9], rb[9];
        item_row(ca, id, ra);
        item_row(cb, id, rb);
        for (int k = 0; k < 9; k++) assert_float_equal(ra[k], rb[k], 1e-6);
        float ea, eb;
        int64_t ids_a[16], ids_b[16];
        float w_a[16], w_b[16];
        size_t na = dr_model_item_neighbors(ca, dr_model_item_index(ca, id, false), &ea, ids_a, w_a, 16);
        size_t nb = dr_model_item_neighbors(cb, dr_model_item_index(cb, id, false), &eb, ids_b, w_b, 16);
        assert_int_equal(na, nb);
        assert_float_equal(ea, eb, 1e-6);
    }
    assert_memory_equal(want + 8, got + 8, 8 * sizeof(float)); /* Δû */
    free(want);
    free(got);
    free(pend);
    dr_user_free(u);
    dr_model_free(a);
    dr_model_free(b);
    dr_model_free(ca);
    dr_model_free(cb);
}

/* A model with content of c floats, sharing on, and items 1-20 of two
 * kinds of content (odd: the first coordinate, even: the second). */
static dr_model_t *content_sync_model(int dim, int c) {
    dr_learner_conf_t conf;
    dr_learner_conf_default(&conf);
    conf.dim = dim;
    conf.content_dim = c;
    conf.lr_content = 0.05f;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &conf, err, sizeof(err)), 0);
    assert_int_equal(dr_model_sync_enable(m), 0);
    float *e = calloc((size_t)c, sizeof(float));
    for (int64_t item = 1; item <= 20; item++) {
        e[0] = item % 2 ? 1.0f : 0.0f;
        e[1] = item % 2 ? 0.0f : 1.0f;
        assert_int_equal(dr_model_set_item_content(m, item, e, (size_t)c), 0);
    }
    free(e);
    return m;
}

/* events of user `user` that like one kind of content and hide the other;
 * W learns from them */
static void teach_content(dr_model_t *m, int64_t user, bool likes_odd, int events) {
    dr_user_t *u = dr_user_new_conf(user, dr_model_conf(m));
    dr_apply_result_t r;
    for (int i = 0; i < events; i++) {
        int64_t item = 1 + (i % 20);
        dr_event_t e = ev(user, item, (item % 2 != 0) == likes_odd ? DR_EV_LIKE : DR_EV_HIDE, 0, i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)(user * 100000 + i), &r), 0);
    }
    dr_user_free(u);
}

/* W seen from outside: the q_i of new posts first_id + j with the one-hot
 * embedding e_j, for the columns j listed: W's column j plus the post's
 * start vector, which depends on its id only (the same on every instance). */
static void new_posts_q(dr_model_t *m, int64_t first_id, const int *cols, int n_cols, float *out) {
    int dim = dr_model_conf(m)->dim, c = dr_model_conf(m)->content_dim;
    float *e = calloc((size_t)c, sizeof(float));
    for (int k = 0; k < n_cols; k++) {
        e[cols[k]] = 1.0f;
        assert_int_equal(dr_model_set_item_content(m, first_id + k, e, (size_t)c), 0);
        e[cols[k]] = 0.0f;
        float row[DR_MAX_DIM + 1];
        item_row(m, first_id + k, row);
        memcpy(out + (size_t)k * (size_t)dim, row, (size_t)dim * sizeof(float));
    }
    free(e);
}

static void export_into(dr_model_t *from, dr_model_t *to) {
    uint8_t *buf;
    size_t len, n, applied, skipped;
    assert_int_equal(dr_model_sync_export(from, 100000, &buf, &len, &n), 0);
    assert_true(len <= 900000);
    assert_int_equal(dr_model_sync_import(to, buf, len, &applied, &skipped), 0);
    free(buf);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float worst = 0.0f;
    for (size_t i = 0; i < n; i++) worst = fmaxf(worst, fabsf(a[i] - b[i]));
    return worst;
}

/* Claim: the content projection W, which every instance learns from its
 * own users, travels like û. Instance a learned that its users like one
 * kind of content; b, which learned nothing (a new instance), takes a's
 * export: a new post then gets the same q_i = W·e_i + δ_i on b as on a, so
 * b ranks new posts by content as the group learned it, not by its own
 * random start. What b imported is not sent back (a stays as its twin that
 * never heard from b); with both learning, both end at the start plus both
 * changes; and a commit's pending changes keep ΔW across a restart. */
static void test_sync_shares_the_content_projection(void **state) {
    (void)state;
    enum { DIM = 8, C = 4 };
    const int cols[C] = {0, 1, 2, 3};
    float qa[C * DIM], qb[C * DIM], q0[C * DIM];
    dr_model_t *a = content_sync_model(DIM, C), *twin = content_sync_model(DIM, C),
               *b = content_sync_model(DIM, C), *start = content_sync_model(DIM, C);
    teach_content(a, 1, true, 200);
    teach_content(twin, 1, true, 200);
    new_posts_q(start, 1100, cols, C, q0); /* W as every instance starts it */
    export_into(a, b);
    new_posts_q(a, 1100, cols, C, qa);
    new_posts_q(b, 1100, cols, C, qb);
    float moved = max_abs_diff(qa, q0, C * DIM), apart = max_abs_diff(qa, qb, C * DIM);
    fprintf(stderr, "W learned on a: new posts' q_i moved by up to %.4f; after b took a's export, a and b differ by %.2g\n",
            (double)moved, (double)apart);
    assert_true(moved > 0.01f);
    assert_true(apart < 1e-5f);
    export_into(b, a); /* nothing of a's comes back */
    new_posts_q(a, 1200, cols, C, qa);
    new_posts_q(twin, 1200, cols, C, qb);
    assert_memory_equal(qa, qb, sizeof(qa));
    /* both learn, each from its users; each takes the other's export */
    teach_content(a, 2, true, 100);
    teach_content(b, 3, false, 100);
    export_into(a, b);
    export_into(b, a);
    new_posts_q(a, 1300, cols, C, qa);
    new_posts_q(b, 1300, cols, C, qb);
    assert_true(max_abs_diff(qa, qb, C * DIM) < 1e-5f);
    /* a restart between a commit and its publication: the pending ΔW is
     * stored with the commit and published by the next process */
    teach_content(a, 4, false, 100);
    uint8_t *pend;
    size_t plen;
    assert_int_equal(dr_model_sync_save_pending(a, &pend, &plen), 0);
    dr_model_t *restarted = content_sync_model(DIM, C);
    copy_stored_model(a, restarted);
    assert_int_equal(dr_model_sync_load_pending(restarted, pend, plen), 0);
    free(pend);
    dr_model_t *from_a = content_sync_model(DIM, C), *from_restarted = content_sync_model(DIM, C);
    export_into(a, from_a);
    export_into(restarted, from_restarted);
    new_posts_q(from_a, 1400, cols, C, qa);
    new_posts_q(from_restarted, 1400, cols, C, qb);
    assert_true(max_abs_diff(qa, qb, C * DIM) < 1e-5f);
    /* an instance with another content dimension adds none of it */
    dr_model_t *other = content_sync_model(DIM, C + 1), *other_twin = content_sync_model(DIM, C + 1);
    const int other_cols[2] = {0, C};
    float got[2 * DIM], want[2 * DIM];
    teach_content(a, 5, true, 50);
    export_into(a, other);
    new_posts_q(other, 1500, other_cols, 2, got);
    new_posts_q(other_twin, 1500, other_cols, 2, want);
    assert_memory_equal(got, want, sizeof(got));
    dr_model_free(a);
    dr_model_free(twin);
    dr_model_free(b);
    dr_model_free(restarted);
    dr_model_free(from_a);
    dr_model_free(from_restarted);
    dr_model_free(other);
    dr_model_free(other_twin);
    dr_model_free(start);
}

/* Claim: a W too large for one message (c = 4,096 floats, d = 32: 512 KB)
 * travels in rows over the next messages, each under Kafka's limit; after
 * three exports the importer's W is the exporter's. */
static void test_sync_large_content_projection_in_rows(void **state) {
    (void)state;
    enum { DIM = 32, C = 4096 };
    const int cols[3] = {0, 1, C - 1};
    float qa[3 * DIM], qb[3 * DIM];
    dr_model_t *a = content_sync_model(DIM, C), *b = content_sync_model(DIM, C);
    teach_content(a, 1, true, 200);
    export_into(a, b);
    new_posts_q(a, 1000, cols, 3, qa);
    new_posts_q(b, 1000, cols, 3, qb);
    float after_one = max_abs_diff(qa, qb, 3 * DIM);
    export_into(a, b);
    export_into(a, b);
    new_posts_q(a, 1100, cols, 3, qa);
    new_posts_q(b, 1100, cols, 3, qb);
    fprintf(stderr, "W of 32 x 4096: apart by %.3g after one message, %.3g after three\n", (double)after_one,
            (double)max_abs_diff(qa, qb, 3 * DIM));
    assert_true(after_one > 1e-3f); /* the first message held the first rows only */
    assert_true(max_abs_diff(qa, qb, 3 * DIM) < 1e-5f);
    dr_model_free(a);
    dr_model_free(b);
}

/* Claim (issue 16): a hidden item stays out of the user's lists for good,
 * not only while it is among the recent events: after 40 more events (the
 * ring keeps 32) it is still excluded, across a record round trip; the
 * newest DR_HIDDEN_MAX hides are kept, the oldest makes room. Malformed
 * hidden bytes are refused. */
static void test_hidden_stays_hidden(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    const dr_learner_conf_t *c = dr_model_conf(m);
    for (int64_t item = 1; item <= 200; item++) assert_true(dr_model_item_index(m, item, true) >= 0);
    dr_user_t *u = dr_user_new_conf(5, c);
    dr_apply_result_t r;
    dr_event_t hide = ev(5, 7, DR_EV_HIDE, 0, 1000);
    assert_int_equal(dr_learner_apply(m, u, &hide, 1, &r), 0);
    for (int i = 0; i < 40; i++) {
        dr_event_t e = ev(5, 100 + i, DR_EV_CLICK, 0, 2000 + i);
        assert_int_equal(dr_learner_apply(m, u, &e, 2 + (uint64_t)i, &r), 0);
    }
    assert_false(dr_user_has_recent(u, 7)); /* out of the ring ... */
    assert_true(dr_user_excludes(u, 7));   /* ... still out of the lists */
    assert_int_equal(dr_model_list_rank(m, u, 7), 0);
    assert_true(dr_model_list_rank(m, u, 8) > 0);
    uint8_t *rec;
    size_t len;
    dr_user_t *back;
    assert_int_equal(dr_user_encode(u, c->dim, &rec, &len), 0);
    assert_int_equal(dr_user_decode(5, c, rec, len, &back), 0);
    assert_true(dr_user_excludes(back, 7));
    dr_user_free(back);
    /* hostile bytes: a count over the array, a head past a partial list, an id no event has */
    size_t end = len - REST_BYTES(u); /* where the hidden items end */
    uint8_t saved = rec[end - 10];
    rec[end - 10] = DR_HIDDEN_MAX + 1;
    assert_int_equal(dr_user_decode(5, c, rec, len, &back), DR_ECORRUPT);
    rec[end - 10] = saved;
    rec[end - 9] = 1;
    assert_int_equal(dr_user_decode(5, c, rec, len, &back), DR_ECORRUPT);
    rec[end - 9] = 0;
    int64_t bad = -1;
    memcpy(rec + end - 8, &bad, 8);
    assert_int_equal(dr_user_decode(5, c, rec, len, &back), DR_ECORRUPT);
    free(rec);
    /* the bound: DR_HIDDEN_MAX more hides release the first one, and only it */
    for (int i = 0; i < DR_HIDDEN_MAX; i++) {
        dr_event_t h = ev(5, 140 + i, DR_EV_HIDE, 0, 5000 + i);
        assert_int_equal(dr_learner_apply(m, u, &h, 100 + (uint64_t)i, &r), 0);
    }
    assert_false(dr_user_has_hidden(u, 7));
    for (int i = 0; i < DR_HIDDEN_MAX; i++) assert_true(dr_user_has_hidden(u, 140 + i));
    assert_int_equal(u->hidden_len, DR_HIDDEN_MAX);
    dr_user_free(u);
    dr_model_free(m);
}

/* Claim: an item shown learner.rest.impressions times without engagement
 * leaves the user's lists for one to two rest periods, an engagement resets
 * its count, the filter survives its record and a restart that switches
 * resting off frees everything; the false-positive rate stays small. */
static void test_seen_posts_rest(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.rest_impressions = 3;
    c.rest_ms = 1000000;
    c.impression_timeout_ms = 1;
    char err[128];
    dr_model_t *m;
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    for (int64_t item = 1; item <= 20000; item++) assert_true(dr_model_item_index(m, item, true) >= 0);
    dr_user_t *u = dr_user_new_conf(9, &c);
    dr_apply_result_t r;
    int64_t t = 1000;
    uint64_t seed = 1;
#define SHOW(item) do { dr_event_t e_ = ev(9, (item), DR_EV_IMPRESSION, 0, t += 10); \
        assert_int_equal(dr_learner_apply(m, u, &e_, seed++, &r), 0); } while (0)
    SHOW(7);
    SHOW(7);
    assert_false(dr_user_resting(u, 7));
    SHOW(7);
    assert_true(dr_user_resting(u, 7));
    assert_true(dr_user_excludes(u, 7));
    assert_int_equal(dr_model_list_rank(m, u, 7), 0);
    /* an engagement takes the count back to 0 */
    SHOW(8);
    SHOW(8);
    dr_event_t click = ev(9, 8, DR_EV_CLICK, 0, t += 10);
    assert_int_equal(dr_learner_apply(m, u, &click, seed++, &r), 0);
    SHOW(8);
    SHOW(8);
    assert_false(dr_user_resting(u, 8));
    /* the record keeps it; a restart with resting off frees it */
    uint8_t *rec;
    size_t len;
    dr_user_t *back;
    assert_int_equal(dr_user_encode(u, c.dim, &rec, &len), 0);
    assert_int_equal(dr_user_decode(9, &c, rec, len, &back), 0);
    assert_true(dr_user_resting(back, 7));
    dr_user_free(back);
    dr_learner_conf_t off = c;
    off.rest_impressions = 0;
    assert_int_equal(dr_user_decode(9, &off, rec, len, &back), 0);
    assert_false(dr_user_excludes(back, 7));
    dr_user_free(back);
    rec[len - REST_BYTES(u)] = 2; /* hostile flag */
    assert_int_equal(dr_user_decode(9, &c, rec, len, &back), DR_ECORRUPT);
    free(rec);
    /* rests through the next generation, gone after two */
    t = u->rest.gen_start_ms + c.rest_ms + 5;
    SHOW(9);
    assert_true(dr_user_resting(u, 7));
    t = u->rest.gen_start_ms + c.rest_ms + 5;
    SHOW(9);
    assert_false(dr_user_resting(u, 7));
    /* false positives: 50 items rested (a busy day) and 200 shown once */
    t += 2 * c.rest_ms;
    for (int64_t item = 100; item < 150; item++)
        for (int k = 0; k < 3; k++) SHOW(item);
    for (int64_t item = 200; item < 400; item++) SHOW(item);
    int wrong = 0, once = 0;
    for (int64_t item = 1000; item < 20000; item++) wrong += dr_user_resting(u, item);
    for (int64_t item = 200; item < 400; item++) once += dr_user_resting(u, item);
    for (int64_t item = 100; item < 150; item++) assert_true(dr_user_resting(u, item));
    print_message("      seen posts: %zu bytes per user; false positives %.4f of unseen items, "
                  "%.4f of items shown once (50 resting, 250 shown)\n",
                  sizeof(u->rest), wrong / 19000.0, once / 200.0);
    assert_true(wrong < 19000 * 0.01);
    assert_true(once < 200 * 0.02);
#undef SHOW
    dr_user_free(u);
    dr_model_free(m);
}

/* Claim: a HIDE_AUTHOR (HIDE_TOPIC) keeps every item of that author (topic)
 * out of the user's lists, the catalog's author and topic persist in item
 * records, the user's hidden ones in its record, at most DR_HIDDEN_SOURCES
 * of each (the oldest makes room); an item without an author hides only
 * itself. */
static void test_hidden_authors_and_topics(void **state) {
    (void)state;
    dr_model_t *m = new_model(DR_MODE_IMPLICIT);
    const dr_learner_conf_t *c = dr_model_conf(m);
    for (int64_t item = 1; item <= 200; item++)
        assert_int_equal(dr_model_set_item_source(m, item, item <= 100 ? item % 5 : -1, item % 7), 0);
    assert_int_equal(dr_model_set_item_source(m, 1, DR_MAX_ID, 0), DR_ERANGE);
    dr_user_t *u = dr_user_new_conf(3, c);
    dr_apply_result_t r;
    dr_event_t e = ev(3, 12, DR_EV_HIDE_AUTHOR, 0, 1000); /* author 2 */
    assert_int_equal(dr_learner_apply(m, u, &e, 1, &r), 0);
    assert_true(r.learned); /* a strong negative on item 12 */
    assert_int_equal(dr_model_list_rank(m, u, 17), 0);  /* author 2 */
    assert_true(dr_model_list_rank(m, u, 18) > 0);      /* author 3 */
    e = ev(3, 20, DR_EV_HIDE_TOPIC, 0, 2000);            /* topic 6 */
    assert_int_equal(dr_learner_apply(m, u, &e, 2, &r), 0);
    assert_int_equal(dr_model_list_rank(m, u, 27), 0);   /* topic 6, author 2 */
    assert_int_equal(dr_model_list_rank(m, u, 41), 0);   /* topic 6, author 1 */
    assert_true(dr_model_list_rank(m, u, 43) > 0);       /* topic 1, author 3 */
    e = ev(3, 150, DR_EV_HIDE_AUTHOR, 0, 3000);          /* no author: the item only */
    assert_int_equal(dr_learner_apply(m, u, &e, 3, &r), 0);
    assert_int_equal(u->hidden_authors.len, 1);
    assert_int_equal(dr_model_list_rank(m, u, 150), 0);
    assert_true(dr_model_list_rank(m, u, 151) > 0);
    /* the user's record keeps them; hostile ring bytes are refused */
    uint8_t *rec;
    size_t len;
    dr_user_t *back;
    assert_int_equal(dr_user_encode(u, c->dim, &rec, &len), 0);
    assert_int_equal(dr_user_decode(3, c, rec, len, &back), 0);
    assert_true(dr_user_hides_source(back, 2, -1) && dr_user_hides_source(back, -1, 6));
    assert_false(dr_user_hides_source(back, 3, 1));
    dr_user_free(back);
    /* the topics' count (then v9's 8 bytes, v10's flag, no ratings, and
     * v12's empty ring) */
    assert_int_equal(rec[len - 21], u->hidden_topics.len);
    rec[len - 21] = DR_HIDDEN_SOURCES + 1;
    assert_int_equal(dr_user_decode(3, c, rec, len, &back), DR_ECORRUPT);
    free(rec);
    /* the catalog's author and topic survive the item record */
    dr_model_t *m2 = new_model(DR_MODE_IMPLICIT);
    kept_record_t *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    k->item_id = 17;
    assert_int_equal(dr_model_drain_dirty_items(m, keep_record, k), 0);
    assert_true(k->len > 0);
    assert_int_equal(dr_model_load_item(m2, 17, k->buf, k->len), 0);
    dr_items_view_t v;
    dr_model_items(m2, &v);
    int64_t idx = dr_model_item_index(m2, 17, false);
    assert_int_equal(v.author[idx], 2);
    assert_int_equal(v.topic[idx], 3);
    free(k);
    dr_model_free(m2);
    /* the bound: DR_HIDDEN_SOURCES more topics release the first */
    for (int i = 0; i < DR_HIDDEN_SOURCES; i++) {
        assert_int_equal(dr_model_set_item_source(m, 300 + i, -1, 1000 + i), 0);
        e = ev(3, 300 + i, DR_EV_HIDE_TOPIC, 0, 4000 + i);
        assert_int_equal(dr_learner_apply(m, u, &e, 10 + (uint64_t)i, &r), 0);
    }
    assert_false(dr_user_hides_source(u, -1, 6));
    assert_true(dr_user_hides_source(u, -1, 1000) && dr_user_hides_source(u, -1, 1015));
    dr_user_free(u);
    dr_model_free(m);
}

/* Claim (dr_user_exploring): a user explores topics after a re-adaptation
 * only: for at most drift.explore.events events, ended early by its
 * drift.explore.engaged-th engagement since (engagements kept from before
 * the re-adaptation do not count); the point it counts from survives a
 * record round trip. */
static void test_exploring_after_readapt(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.drift_explore_events = 20;
    c.drift_explore_engaged = 2;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    dr_user_t *u = dr_user_new_conf(7, &c);
    dr_apply_result_t r;
    int64_t t = 1000;
    uint64_t seed = 1;
    for (int k = 0; k < 5; k++) { /* engagements before: they never count */
        dr_event_t e = ev(7, 1 + k, DR_EV_CLICK, 0, t += 10);
        assert_int_equal(dr_learner_apply(m, u, &e, seed++, &r), 0);
    }
    assert_false(dr_user_exploring(&c, u));
    dr_learner_readapt(m, u, 1);
    assert_true(dr_user_exploring(&c, u));
    dr_event_t imp = ev(7, 40, DR_EV_IMPRESSION, 0, t += 10), click = ev(7, 41, DR_EV_CLICK, 0, t += 10);
    assert_int_equal(dr_learner_apply(m, u, &imp, seed++, &r), 0);
    assert_int_equal(dr_learner_apply(m, u, &click, seed++, &r), 0);
    assert_true(dr_user_exploring(&c, u)); /* one engagement of two */
    uint8_t *rec;
    size_t len;
    dr_user_t *back;
    assert_int_equal(dr_user_encode(u, c.dim, &rec, &len), 0);
    assert_int_equal(dr_user_decode(7, &c, rec, len, &back), 0);
    /* hostile bytes: a re-adaptation after the samples counted (v9's 8,
     * before v10's flag, no ratings, and v12's ring) */
    size_t at = len - 11 - 8 * (size_t)u->passed_topics.len;
    assert_memory_equal(rec + at, &u->readapt_sample, 8);
    uint64_t later = u->drift_samples + 1;
    memcpy(rec + at, &later, 8);
    dr_user_t *bad;
    assert_int_equal(dr_user_decode(7, &c, rec, len, &bad), DR_ECORRUPT);
    free(rec);
    assert_int_equal(back->readapt_sample, u->readapt_sample);
    assert_true(dr_user_exploring(&c, back));
    dr_event_t click2 = ev(7, 42, DR_EV_CLICK, 0, t += 10);
    assert_int_equal(dr_learner_apply(m, back, &click2, seed++, &r), 0);
    assert_false(dr_user_exploring(&c, back)); /* a new interest was found */
    dr_user_free(back);
    /* without engagement: until drift.explore.events events have passed */
    dr_learner_readapt(m, u, 1);
    for (int k = 0; k < 19; k++) {
        dr_event_t i2 = ev(7, 100 + k, DR_EV_IMPRESSION, 0, t += 10);
        assert_int_equal(dr_learner_apply(m, u, &i2, seed++, &r), 0);
        assert_true(dr_user_exploring(&c, u));
    }
    dr_event_t last = ev(7, 200, DR_EV_IMPRESSION, 0, t += 10);
    assert_int_equal(dr_learner_apply(m, u, &last, seed++, &r), 0);
    assert_false(dr_user_exploring(&c, u));
    dr_user_free(u);
    dr_model_free(m);
}

/* While a user's lists explore, the topics of items it passed over (an
 * impression that came due unanswered, or answered by a hide) are
 * remembered, so that its next lists offer the other topics first
 * (test_topk: test_explore_topics); an engaged topic is not, a user who
 * does not explore remembers none, a re-adaptation starts afresh, and the
 * record keeps them (version 12). */
static void test_passed_topics(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.drift_explore_events = 100;
    c.drift_explore_engaged = 3;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    for (int64_t i = 1; i <= 60; i++) assert_int_equal(dr_model_set_item_source(m, i, -1, i % 6), 0);
    dr_user_t *u = dr_user_new_conf(7, &c);
    dr_apply_result_t r;
    int64_t t = 1000;
    uint64_t seed = 1;
    /* not exploring: an ignored impression of topic 1 is not remembered */
    dr_event_t e0 = ev(7, 1, DR_EV_IMPRESSION, 0, t += 10), e1 = ev(7, 6, DR_EV_CLICK, 0, t += 120000);
    assert_int_equal(dr_learner_apply(m, u, &e0, seed++, &r), 0);
    assert_int_equal(dr_learner_apply(m, u, &e1, seed++, &r), 0);
    assert_int_equal(u->passed_topics.len, 0);
    dr_learner_readapt(m, u, 1);
    assert_true(dr_user_exploring(&c, u));
    /* exploring: items 2 (topic 2) and 3 (topic 3) shown, 3 engaged, item 4
     * (topic 4) hidden; then item 2 comes due unanswered */
    dr_event_t e[] = {ev(7, 2, DR_EV_IMPRESSION, 0, t += 10), ev(7, 3, DR_EV_IMPRESSION, 0, t += 10),
                      ev(7, 4, DR_EV_IMPRESSION, 0, t += 10), ev(7, 3, DR_EV_CLICK, 0, t += 10),
                      ev(7, 4, DR_EV_HIDE, 0, t += 10), ev(7, 5, DR_EV_CLICK, 0, t += 120000)};
    for (size_t k = 0; k < sizeof(e) / sizeof(e[0]); k++) assert_int_equal(dr_learner_apply(m, u, &e[k], seed++, &r), 0);
    assert_true(dr_user_passed_topic(u, 2));
    assert_true(dr_user_passed_topic(u, 4));
    assert_false(dr_user_passed_topic(u, 1)); /* before the exploration */
    assert_false(dr_user_passed_topic(u, 3)); /* engaged */
    assert_false(dr_user_passed_topic(u, 5));
    assert_false(dr_user_passed_topic(u, -1));
    uint8_t *rec;
    size_t len;
    assert_int_equal(dr_user_encode(u, c.dim, &rec, &len), 0);
    assert_int_equal(rec[0], 12);
    dr_user_t *back;
    assert_int_equal(dr_user_decode(7, &c, rec, len, &back), 0);
    assert_int_equal(back->passed_topics.len, 2);
    assert_true(dr_user_passed_topic(back, 2) && dr_user_passed_topic(back, 4));
    /* version 11 (without them) is still read: none passed over */
    rec[0] = 11;
    dr_user_free(back);
    assert_int_equal(dr_user_decode(7, &c, rec, len - RING_BYTES(u->passed_topics), &back), 0);
    assert_int_equal(back->passed_topics.len, 0);
    dr_user_free(back);
    free(rec);
    dr_learner_readapt(m, u, 1);
    assert_false(dr_user_passed_topic(u, 2));
    /* more topics passed over than the ring holds: the newest 16 stay, the
     * older ones are offered again in their turn */
    for (int64_t i = 0; i < 20; i++) {
        assert_int_equal(dr_model_set_item_source(m, 1000 + i, -1, 100 + i), 0);
        dr_event_t imp = ev(7, 1000 + i, DR_EV_IMPRESSION, 0, t += 10), hide = ev(7, 1000 + i, DR_EV_HIDE, 0, t += 10);
        assert_int_equal(dr_learner_apply(m, u, &imp, seed++, &r), 0);
        assert_int_equal(dr_learner_apply(m, u, &hide, seed++, &r), 0);
    }
    assert_true(dr_user_exploring(&c, u));
    assert_int_equal(u->passed_topics.len, DR_HIDDEN_SOURCES);
    for (int64_t i = 0; i < 20; i++) assert_int_equal(dr_user_passed_topic(u, 100 + i), i >= 20 - DR_HIDDEN_SOURCES);
    dr_user_free(u);
    dr_model_free(m);
}

/* Claim (learner.explore.miss.rate): lists that fail a user explore too,
 * in either arm and without a cut: once its drift window holds at least
 * DR_EXPLORE_FAILING_WINDOW outcomes missing at least that share; no
 * longer once it engages enough; never with the rate at 1. */
static void test_exploring_when_lists_fail(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.drift.delta = 1e-9; /* the window keeps everything: no cut */
    dr_user_t *u = dr_user_new_conf(7, &c);
    for (int k = 0; k < DR_EXPLORE_FAILING_WINDOW - 1; k++) dr_adwin_update(&u->drift, 1.0);
    assert_false(dr_user_exploring(&c, u)); /* too few outcomes to tell */
    dr_adwin_update(&u->drift, 1.0);
    assert_true(dr_user_exploring(&c, u));
    dr_learner_conf_t off = c;
    off.explore_miss_rate = 1.0;
    assert_false(dr_user_exploring(&off, u));
    for (int k = 0; k < 10; k++) dr_adwin_update(&u->drift, 0.0); /* 50 of 60 missed: 0.83 */
    assert_false(dr_user_exploring(&c, u));
    dr_user_free(u);
}

/* Claim: an export never exceeds 900,000 bytes (under Kafka's default
 * message.max.bytes), whatever the dimension and the co-engagement pairs
 * pending; every change still goes out, in more messages, and all of them
 * apply to another instance. It failed before: at d = 128, 4096 rows made
 * a 2.1 MB message, refused by the broker and lost to the other instances. */
static void test_sync_messages_fit_kafka(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 128;
    dr_model_t *a, *b;
    char err[128];
    assert_int_equal(dr_model_new(&a, &c, err, sizeof(err)), 0);
    assert_int_equal(dr_model_new(&b, &c, err, sizeof(err)), 0);
    assert_int_equal(dr_model_sync_enable(a), 0);
    assert_int_equal(dr_model_sync_enable(b), 0);
    dr_apply_result_t r;
    uint64_t rng = 3, seed = 0;
    for (int64_t u = 1; u <= 300; u++) {
        dr_user_t *x = dr_user_new_conf(u, &c);
        for (int k = 0; k < 40; k++) {
            dr_event_t e = ev(u, 1 + (int64_t)(dr_rand64(&rng) % 6000), DR_EV_CLICK, 0, k * 1000);
            assert_int_equal(dr_learner_apply(a, x, &e, seed++, &r), 0);
        }
        dr_user_free(x);
    }
    size_t pending = dr_model_sync_pending(a), exported = 0, messages = 0, biggest = 0;
    assert_true(pending > 8000);
    for (;;) {
        uint8_t *buf;
        size_t len, n, applied, skipped;
        assert_int_equal(dr_model_sync_export(a, 4096, &buf, &len, &n), 0);
        if (n == 0) { free(buf); break; }
        assert_true(len <= 900000);
        biggest = len > biggest ? len : biggest;
        assert_int_equal(dr_model_sync_import(b, buf, len, &applied, &skipped), 0);
        free(buf);
        exported += n;
        messages++;
    }
    assert_int_equal(exported, pending);
    assert_true(messages >= 3);
    print_message("%zu changes in %zu messages, the largest %zu bytes\n", pending, messages, biggest);
    dr_model_free(a);
    dr_model_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_user_at_prior),
        cmocka_unit_test(test_positive_and_negative_labels),
        cmocka_unit_test(test_impression_weak_negative),
        cmocka_unit_test(test_rating_mode_converges),
        cmocka_unit_test(test_no_nan_and_bounded_norms),
        cmocka_unit_test(test_records_round_trip),
        cmocka_unit_test(test_item_index_and_bound),
        cmocka_unit_test(test_readapt_uses_kept_window),
        cmocka_unit_test(test_regime_starts_at_worse_cut),
        cmocka_unit_test(test_regime_at_cut_small_ring),
        cmocka_unit_test(test_drift_min_change),
        cmocka_unit_test(test_reads_version_1_user_record),
        cmocka_unit_test(test_reads_version_2_user_record),
        cmocka_unit_test(test_user_step_size_decays),
        cmocka_unit_test(test_list_rank),
        cmocka_unit_test(test_list_rank_counts_every_term),
        cmocka_unit_test(test_record_last_list_without_decoding),
        cmocka_unit_test(test_reptile_prior_keeps_users_in_place),
        cmocka_unit_test(test_content_ranks_new_items),
        cmocka_unit_test(test_content_refresh_is_exact),
        cmocka_unit_test(test_content_refresh_in_turns),
        cmocka_unit_test(test_reads_version_1_item_record),
        cmocka_unit_test(test_coengagement_ranks_next_items),
        cmocka_unit_test(test_coengagement_counts_fade),
        cmocka_unit_test(test_coengagement_halflife_changed_between_restarts),
        cmocka_unit_test(test_coengagement_pair_weights),
        cmocka_unit_test(test_coengagement_second_hop),
        cmocka_unit_test(test_held_coengagement_scores),
        cmocka_unit_test(test_sync_moves_the_clock),
        cmocka_unit_test(test_item_record_neighbors_bounds),
        cmocka_unit_test(test_pop_prior_ranks_popular_for_new_user),
        cmocka_unit_test(test_pop_prior_fades),
        cmocka_unit_test(test_pop_prior_meta_learns_weight),
        cmocka_unit_test(test_pop_prior_records_round_trip),
        cmocka_unit_test(test_reads_version_2_item_and_globals),
        cmocka_unit_test(test_conf_check),
        cmocka_unit_test(test_refused_event_leaves_no_trace),
        cmocka_unit_test(test_full_catalog_drops_unplaceable_impressions),
        cmocka_unit_test(test_drift_signal_samples),
        cmocka_unit_test(test_drift_level),
        cmocka_unit_test(test_popular_top_any_size),
        cmocka_unit_test(test_trend_topic_lift),
        cmocka_unit_test(test_trend_topic_lift_many_topics),
        cmocka_unit_test(test_drift_direction_and_response),
        cmocka_unit_test(test_regime_resets_coengagement_context),
        cmocka_unit_test(test_trend_term),
        cmocka_unit_test(test_coengagement_source_fades),
        cmocka_unit_test(test_reads_version_4_user_record),
        cmocka_unit_test(test_sync_two_instances_agree),
        cmocka_unit_test(test_sync_pending_survives_restart),
        cmocka_unit_test(test_sync_shares_the_content_projection),
        cmocka_unit_test(test_sync_large_content_projection_in_rows),
        cmocka_unit_test(test_hidden_stays_hidden),
        cmocka_unit_test(test_seen_posts_rest),
        cmocka_unit_test(test_hidden_authors_and_topics),
        cmocka_unit_test(test_exploring_after_readapt),
        cmocka_unit_test(test_passed_topics),
        cmocka_unit_test(test_exploring_when_lists_fail),
        cmocka_unit_test(test_sync_messages_fit_kafka),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
