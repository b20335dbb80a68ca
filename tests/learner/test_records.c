/* test_records.c - claims of learner/records.c about stored records meeting
 * another configuration or hostile bytes: a user record written with a
 * longer recent-event ring than configured keeps its newest entries in a
 * consistent ring (and re-adapting it is safe), a detector written with
 * other drift.max.buckets is dropped rather than the user, an item keeps
 * its heaviest neighbours under a lower learner.cooc.neighbors, and every
 * stored count, head, type byte or id that no writer of ours produces is
 * DR_ECORRUPT. */
#include "learner_test.h"

#include <math.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_learner.h"

#define DIM 8
#define FIRST_ITEM 1000

/* The defaults at d = 8 with a ring of `ring` recent events. */
static dr_learner_conf_t conf_ring(int ring) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = DIM;
    c.recent_items = ring;
    return c;
}

static dr_model_t *model_of(const dr_learner_conf_t *c) {
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, c, err, sizeof(err)), 0);
    return m;
}

/* Event i of the test stream: item FIRST_ITEM + i, engagement types in turn. */
static dr_event_t stream_event(int i) {
    static const dr_event_type_t types[] = {DR_EV_CLICK, DR_EV_LIKE, DR_EV_DWELL, DR_EV_SHARE, DR_EV_HIDE};
    dr_event_t e = {7, FIRST_ITEM + i, types[i % 5], 0, 1000 * (int64_t)i};
    if (e.type == DR_EV_DWELL) e.value = 30.0f;
    return e;
}

/* A user that saw `n` events of the stream under `c`, encoded. */
static void encode_stream_user(const dr_learner_conf_t *c, int n, uint8_t **rec, size_t *len) {
    dr_model_t *m = model_of(c);
    dr_user_t *u = dr_user_new_conf(7, c);
    dr_apply_result_t r;
    for (int i = 0; i < n; i++) {
        dr_event_t e = stream_event(i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    assert_int_equal(dr_user_encode(u, c->dim, rec, len), 0);
    dr_user_free(u);
    dr_model_free(m);
}

/* encode_into writes the bytes encode allocates, into any room of at least
 * their length (dr_user_encoded_max always is), and refuses a smaller one
 * with DR_ERANGE, for a user past a full ring of 64 events. */
static void test_encode_into_same_bytes(void **state) {
    (void)state;
    dr_learner_conf_t c = conf_ring(64);
    dr_model_t *m = model_of(&c);
    dr_user_t *u = dr_user_new_conf(7, &c);
    dr_apply_result_t r;
    for (int i = 0; i < 200; i++) {
        dr_event_t e = stream_event(i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    uint8_t *rec;
    size_t len, len2;
    assert_int_equal(dr_user_encode(u, c.dim, &rec, &len), 0);
    size_t max = dr_user_encoded_max(u, c.dim);
    assert_true(max >= len);
    uint8_t *room = malloc(max);
    assert_non_null(room);
    assert_int_equal(dr_user_encode_into(u, c.dim, room, max, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(room, rec, len);
    assert_int_equal(dr_user_encode_into(u, c.dim, room, len, &len2), 0); /* exactly enough */
    assert_memory_equal(room, rec, len);
    for (size_t cap = 0; cap < len; cap += 1 + cap / 8)
        assert_int_equal(dr_user_encode_into(u, c.dim, room, cap, &len2), DR_ERANGE);
    assert_int_equal(dr_user_encode_into(u, c.dim, room, len - 1, &len2), DR_ERANGE);
    free(room);
    free(rec);
    dr_user_free(u);
    dr_model_free(m);
}

/* The ring is one the learner can walk: no more entries than slots, head
 * within the slots and, while not full, at the first free one; and walking
 * back from head gives the items of the stream's events last-1, last-2, ...
 * (newest first), `n` of them. */
static void assert_ring_newest(const dr_user_t *u, int ring, int last, unsigned n) {
    assert_int_equal(u->recent_len, n);
    assert_true(u->recent_head < ring);
    if (u->recent_len < ring) assert_int_equal(u->recent_head, u->recent_len);
    for (unsigned k = 0; k < n; k++) {
        const dr_recent_event_t *r = &u->recent[(u->recent_head + (unsigned)ring - 1 - k) % (unsigned)ring];
        dr_event_t e = stream_event(last - 1 - (int)k);
        assert_int_equal(r->item_id, e.item_id);
        assert_int_equal(r->type, e.type);
        assert_true(r->value == e.value);
    }
}

/* "old records must load under a new configuration, keeping the newest
 * entries": a full 64-entry ring (head not at 0) read under rings of 1, 4,
 * 31 and 63 keeps that many newest events, in order; then the user learns
 * from more events and re-adapts (what read outside the ring before). */
static void test_longer_ring_keeps_newest(void **state) {
    (void)state;
    dr_learner_conf_t c64 = conf_ring(DR_RECENT_MAX);
    const int events = DR_RECENT_MAX + 6; /* the ring went round: head is 6 */
    uint8_t *rec;
    size_t len;
    encode_stream_user(&c64, events, &rec, &len);
    const int rings[] = {1, 4, 31, 63};
    for (size_t t = 0; t < sizeof(rings) / sizeof(rings[0]); t++) {
        int ring = rings[t];
        dr_learner_conf_t c = conf_ring(ring);
        dr_user_t *u;
        assert_int_equal(dr_user_decode(7, &c, rec, len, &u), 0);
        assert_int_equal(u->events_applied, (uint64_t)events);
        assert_ring_newest(u, ring, events, (unsigned)ring);
        assert_true(dr_user_has_recent(u, stream_event(events - 1).item_id));
        assert_false(dr_user_has_recent(u, stream_event(events - 1 - ring).item_id));
        /* the model knows the stream's items, so the replay below learns */
        dr_model_t *m = model_of(&c);
        for (int i = 0; i < events + 3; i++) assert_true(dr_model_item_index(m, stream_event(i).item_id, true) >= 0);
        dr_apply_result_t r;
        for (int i = events; i < events + 3; i++) {
            dr_event_t e = stream_event(i);
            assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
        }
        assert_ring_newest(u, ring, events + 3, (unsigned)ring);
        /* a window wider than any ring: the replay takes every kept entry */
        for (int i = 0; i < 2 * DR_RECENT_MAX; i++) assert_true(dr_adwin_update(&u->drift, 0.5) >= 0);
        assert_true(dr_adwin_width(&u->drift) >= (uint64_t)ring);
        assert_int_equal(dr_learner_readapt(m, u, 0), ring);
        for (int k = 0; k < DIM; k++) assert_true(isfinite(u->v[k]));
        assert_true(isfinite(dr_model_score(m, u, 0)));
        dr_user_free(u);
        dr_model_free(m);
    }
    free(rec);
}

/* Read under the ring it was written with, a record is kept exactly as it
 * is (head where the writer left it) and re-encodes to the same bytes; a
 * partly filled ring read under a smaller one keeps its newest entries. */
static void test_same_ring_unchanged(void **state) {
    (void)state;
    dr_learner_conf_t c64 = conf_ring(DR_RECENT_MAX);
    uint8_t *rec, *again;
    size_t len, again_len;
    encode_stream_user(&c64, DR_RECENT_MAX + 6, &rec, &len);
    dr_user_t *u;
    assert_int_equal(dr_user_decode(7, &c64, rec, len, &u), 0);
    assert_int_equal(u->recent_head, 6);
    assert_int_equal(dr_user_encode(u, DIM, &again, &again_len), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, rec, len);
    dr_user_free(u);
    free(again);
    free(rec);
    /* 20 of 64 slots used, read under 32 (as is) and under 8 (the newest 8) */
    encode_stream_user(&c64, 20, &rec, &len);
    dr_learner_conf_t c32 = conf_ring(32), c8 = conf_ring(8);
    assert_int_equal(dr_user_decode(7, &c32, rec, len, &u), 0);
    assert_ring_newest(u, 32, 20, 20);
    dr_user_free(u);
    assert_int_equal(dr_user_decode(7, &c8, rec, len, &u), 0);
    assert_ring_newest(u, 8, 20, 8);
    dr_user_free(u);
    free(rec);
}

/* A full ring of 4 (head at 2) read under a ring of 32: the 4 entries in
 * order, head at the first free slot, so the next event adds a fifth entry
 * instead of overwriting one of the four. */
static void test_shorter_ring_grows(void **state) {
    (void)state;
    dr_learner_conf_t c4 = conf_ring(4), c32 = conf_ring(32);
    uint8_t *rec;
    size_t len;
    encode_stream_user(&c4, 6, &rec, &len);
    dr_user_t *u;
    assert_int_equal(dr_user_decode(7, &c32, rec, len, &u), 0);
    assert_ring_newest(u, 32, 6, 4);
    dr_model_t *m = model_of(&c32);
    dr_apply_result_t r;
    dr_event_t e = stream_event(6);
    assert_int_equal(dr_learner_apply(m, u, &e, 6, &r), 0);
    assert_ring_newest(u, 32, 7, 5);
    dr_user_free(u);
    dr_model_free(m);
    free(rec);
}

/* Offsets in a version-4 user record (records.c's layout). */
enum { REC_PARTITION = 19, REC_RECENT_LEN = 35, REC_RECENT_HEAD = 36, REC_RECENT = 37 };
static size_t rec_recent_type(unsigned i) { return REC_RECENT + 13u * i + 12u; }
static size_t rec_recent_value(unsigned i) { return REC_RECENT + 13u * i + 8u; }
static size_t rec_pending(const dr_user_t *u) { return REC_RECENT + 13u * u->recent_len; }
static size_t rec_last_list(const dr_user_t *u) { return rec_pending(u) + 1 + 16u * u->pending_len; }
static size_t rec_cuts(const dr_user_t *u) {
    return rec_last_list(u) + 1 + 8u * u->last_list_len + (size_t)DIM * 4;
}


/* A user with a full ring of 32, two pending impressions and a last list. */
static dr_user_t *rich_user(const dr_learner_conf_t *c, uint8_t **rec, size_t *len) {
    dr_model_t *m = model_of(c);
    dr_user_t *u = dr_user_new_conf(7, c);
    dr_apply_result_t r;
    for (int i = 0; i < 40; i++) {
        dr_event_t e = stream_event(i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    for (int i = 0; i < 2; i++) {
        dr_event_t imp = {7, 5000 + i, DR_EV_IMPRESSION, 0, 99000};
        assert_int_equal(dr_learner_apply(m, u, &imp, 100 + (uint64_t)i, &r), 0);
    }
    assert_int_equal(u->pending_len, 2);
    u->last_list_len = 3;
    for (int i = 0; i < 3; i++) {
        u->last_list[i] = 20 + i;
        u->last_list_score[i] = 1.0f - 0.25f * (float)i;
    }
    assert_int_equal(dr_user_encode(u, DIM, rec, len), 0);
    dr_model_free(m);
    return u;
}

/* "The event-type byte must be < DR_EV__COUNT", and no other stored byte
 * that no writer produces is read as a length, head or id. */
static void test_hostile_user_bytes(void **state) {
    (void)state;
    dr_learner_conf_t c = conf_ring(32);
    uint8_t *rec;
    size_t len;
    dr_user_t *u = rich_user(&c, &rec, &len);
    dr_user_t *back;
    assert_int_equal(dr_user_decode(7, &c, rec, len, &back), 0);
    dr_user_free(back);
    uint8_t b;
    /* event types: the last valid one reads, the first invalid one does not */
    b = DR_EV__COUNT - 1;
    assert_int_equal(decode_patched(&c, rec, len, rec_recent_type(3), &b, 1), 0);
    b = DR_EV__COUNT;
    assert_int_equal(decode_patched(&c, rec, len, rec_recent_type(3), &b, 1), DR_ECORRUPT);
    b = 0xff;
    assert_int_equal(decode_patched(&c, rec, len, rec_recent_type(0), &b, 1), DR_ECORRUPT);
    /* ring length over the array, head past the entries */
    b = DR_RECENT_MAX + 1;
    assert_int_equal(decode_patched(&c, rec, len, REC_RECENT_LEN, &b, 1), DR_ECORRUPT);
    b = 0xff;
    assert_int_equal(decode_patched(&c, rec, len, REC_RECENT_LEN, &b, 1), DR_ECORRUPT);
    b = (uint8_t)(u->recent_len + 1);
    assert_int_equal(decode_patched(&c, rec, len, REC_RECENT_HEAD, &b, 1), DR_ECORRUPT);
    b = 0xff;
    assert_int_equal(decode_patched(&c, rec, len, REC_RECENT_HEAD, &b, 1), DR_ECORRUPT);
    /* a value that is not finite, an item id no event can carry */
    float nan = NAN;
    assert_int_equal(decode_patched(&c, rec, len, rec_recent_value(1), &nan, 4), DR_ECORRUPT);
    int64_t bad_ids[] = {-1, DR_MAX_ID, INT64_MIN};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(decode_patched(&c, rec, len, REC_RECENT, &bad_ids[k], 8), DR_ECORRUPT);
        assert_int_equal(decode_patched(&c, rec, len, rec_pending(u) + 1, &bad_ids[k], 8), DR_ECORRUPT);
        assert_int_equal(decode_patched(&c, rec, len, rec_last_list(u) + 1, &bad_ids[k], 8), DR_ECORRUPT);
    }
    /* pending impressions: count over the array, a time no event has */
    b = DR_PENDING_IMP + 1;
    assert_int_equal(decode_patched(&c, rec, len, rec_pending(u), &b, 1), DR_ECORRUPT);
    int64_t bad_ts[] = {-1, INT64_MIN, INT64_MAX};
    for (int k = 0; k < 3; k++)
        assert_int_equal(decode_patched(&c, rec, len, rec_pending(u) + 9, &bad_ts[k], 8), DR_ECORRUPT);
    /* last list over its array */
    b = DR_LAST_LIST + 1;
    assert_int_equal(decode_patched(&c, rec, len, rec_last_list(u), &b, 1), DR_ECORRUPT);
    /* a cut after the last applied event; a source partition below -1 */
    uint64_t late = u->events_applied + 1;
    assert_int_equal(decode_patched(&c, rec, len, rec_cuts(u) + 4, &late, 8), DR_ECORRUPT);
    int32_t part = -2;
    assert_int_equal(decode_patched(&c, rec, len, REC_PARTITION, &part, 4), DR_ECORRUPT);
    /* the detector's buckets-per-row byte: neither this configuration's nor
     * any valid one */
    size_t adwin = rec_cuts(u) + 12;
    b = 1;
    assert_int_equal(decode_patched(&c, rec, len, adwin + 1, &b, 1), DR_ECORRUPT);
    b = DR_ADWIN_MAX_BUCKETS + 1;
    assert_int_equal(decode_patched(&c, rec, len, adwin + 1, &b, 1), DR_ECORRUPT);
    /* a score of the last list that is not finite (then the prior version
     * and version 5's regime: 28 bytes and a sample count per recent event) */
    size_t passed = len - 2 - 8u * u->passed_topics.len; /* v12's ring */
    size_t regime = passed - 1 /* v10, no ratings */ - 8 /* v9 */ - 28 - 4u * u->recent_len - 2 - 8u * u->hidden_len - /* then v6's hidden items */
                    (1 + (u->rest.gen_start_ms ? 8 + sizeof(u->rest.counts) + sizeof(u->rest.resting) : 0)); /* and v7's filter */
    size_t scores = regime - 8 - 4u * u->last_list_len;
    assert_int_equal(decode_patched(&c, rec, len, scores, &nan, 4), DR_ECORRUPT);
    /* a regime that starts after the samples counted; a re-adaptation after
     * the last applied event */
    uint64_t samples = 0;
    memcpy(&samples, rec + regime, 8);
    uint64_t later = samples + 1;
    assert_int_equal(decode_patched(&c, rec, len, regime + 8, &later, 8), DR_ECORRUPT);
    assert_int_equal(decode_patched(&c, rec, len, regime + 20, &late, 8), DR_ECORRUPT);
    /* the topics passed over while exploring: a count over the ring, a head
     * past a partial one */
    b = DR_HIDDEN_SOURCES + 1;
    assert_int_equal(decode_patched(&c, rec, len, passed, &b, 1), DR_ECORRUPT);
    b = 1;
    assert_int_equal(decode_patched(&c, rec, len, passed + 1, &b, 1), DR_ECORRUPT);
    /* a conf out of its bounds is the caller's error, not the record's */
    dr_learner_conf_t wrong = c;
    wrong.recent_items = DR_RECENT_MAX + 1;
    assert_int_equal(dr_user_decode(7, &wrong, rec, len, &back), DR_EINVAL);
    assert_null(back);
    dr_user_free(u);
    free(rec);
}

/* drift.max.buckets changed: the user keeps its state (counter, vector,
 * ring) with an empty detector under the new parameters, which then works. */
static void test_other_max_buckets_keeps_user(void **state) {
    (void)state;
    dr_learner_conf_t c = conf_ring(32);
    uint8_t *rec;
    size_t len;
    dr_user_t *u = rich_user(&c, &rec, &len);
    assert_true(dr_adwin_width(&u->drift) > 0);
    const int buckets[] = {2, 3, 64};
    for (int t = 0; t < 3; t++) {
        dr_learner_conf_t other = c;
        other.drift.max_buckets = buckets[t];
        dr_user_t *back;
        assert_int_equal(dr_user_decode(7, &other, rec, len, &back), 0);
        assert_int_equal(back->events_applied, u->events_applied);
        assert_memory_equal(back->v, u->v, DIM * sizeof(float));
        assert_int_equal(back->recent_len, u->recent_len);
        assert_int_equal(back->pending_len, 2);
        assert_int_equal(dr_adwin_width(&back->drift), 0);
        for (int i = 0; i < 500; i++) assert_true(dr_adwin_update(&back->drift, (i / 100) % 2 ? 0.9 : 0.1) >= 0);
        assert_true(dr_adwin_width(&back->drift) > 0);
        /* and it is stored under the new parameters */
        uint8_t *again;
        size_t again_len;
        dr_user_t *twice;
        assert_int_equal(dr_user_encode(back, DIM, &again, &again_len), 0);
        assert_int_equal(dr_user_decode(7, &other, again, again_len, &twice), 0);
        assert_int_equal(dr_adwin_width(&twice->drift), dr_adwin_width(&back->drift));
        dr_user_free(twice);
        free(again);
        dr_user_free(back);
    }
    dr_user_free(u);
    free(rec);
}

/* A version-3 item record written by hand: q_i = 0.5, no content unless
 * content_dim > 0 (then e_i = 1 and δ_i = 0), and these neighbours. */
static size_t item_record(uint8_t *buf, size_t cap, uint8_t excluded, int content_dim, const int64_t *ids,
                          const float *weights, uint32_t n) {
    dr_writer_t w = {buf, 0, cap, true};
    dr_put_u8(&w, 3);
    dr_put_u16(&w, DIM);
    dr_put_f32(&w, 0.25f);  /* bias */
    dr_put_u8(&w, excluded);
    dr_put_u64(&w, 9);      /* events */
    for (int k = 0; k < DIM; k++) dr_put_f32(&w, 0.5f);
    dr_put_f32(&w, 2.0f);   /* decayed positives */
    dr_put_u64(&w, 0);      /* at this clock */
    dr_put_u16(&w, (uint16_t)content_dim);
    for (int k = 0; k < content_dim; k++) dr_put_f32(&w, 1.0f);
    for (int k = 0; content_dim && k < DIM; k++) dr_put_f32(&w, 0.0f);
    dr_put_f32(&w, 6.0f);   /* n_i */
    dr_put_u32(&w, n);
    for (uint32_t k = 0; k < n; k++) {
        dr_put_i64(&w, ids[k]);
        dr_put_f32(&w, weights[k]);
    }
    assert_true(w.ok);
    return w.len;
}

/* learner.cooc.neighbors lowered: an item keeps its heaviest neighbours with
 * their weights as stored; 0 keeps none. A neighbour id that is the item
 * itself or outside [0, 2^53), or an excluded flag other than 0 or 1, is
 * DR_ECORRUPT; a content embedding of another learner.content.dim leaves
 * the item with its stored q_i. */
static void test_item_records_under_other_settings(void **state) {
    (void)state;
    const int64_t ids[] = {501, 502, 503, 504, 505, 506};
    const float weights[] = {1, 6, 2, 5, 3, 4};
    uint8_t buf[512];
    size_t len = item_record(buf, sizeof(buf), 0, 0, ids, weights, 6);
    dr_learner_conf_t c = conf_ring(32);
    c.cooc_neighbors = 3;
    dr_model_t *m = model_of(&c);
    assert_int_equal(dr_model_load_item(m, 77, buf, len), 0);
    int64_t nb[8];
    float w[8], engaged;
    int64_t idx = dr_model_item_index(m, 77, false);
    assert_int_equal(dr_model_item_neighbors(m, idx, &engaged, nb, w, 8), 3);
    assert_true(engaged == 6.0f);
    assert_int_equal(nb[0], 502);
    assert_true(w[0] == 6.0f);
    assert_int_equal(nb[1], 504);
    assert_true(w[1] == 5.0f);
    assert_int_equal(nb[2], 506);
    assert_true(w[2] == 4.0f);
    dr_model_free(m);
    c.cooc_neighbors = 0;
    m = model_of(&c);
    assert_int_equal(dr_model_load_item(m, 77, buf, len), 0);
    assert_int_equal(dr_model_item_neighbors(m, dr_model_item_index(m, 77, false), &engaged, nb, w, 8), 0);
    dr_model_free(m);
    /* hostile neighbours and flags */
    c = conf_ring(32);
    m = model_of(&c);
    const int64_t bad_ids[] = {77, -1, DR_MAX_ID};
    for (int k = 0; k < 3; k++) {
        int64_t with_bad[6];
        memcpy(with_bad, ids, sizeof(ids));
        with_bad[4] = bad_ids[k];
        len = item_record(buf, sizeof(buf), 0, 0, with_bad, weights, 6);
        assert_int_equal(dr_model_load_item(m, 77, buf, len), DR_ECORRUPT);
    }
    len = item_record(buf, sizeof(buf), 2, 0, ids, weights, 6);
    assert_int_equal(dr_model_load_item(m, 77, buf, len), DR_ECORRUPT);
    len = item_record(buf, sizeof(buf), 1, 0, ids, weights, 6);
    assert_int_equal(dr_model_load_item(m, 77, buf, len), 0);
    assert_true(dr_model_item_excluded(m, 77));
    /* content of 4 floats, read under content.dim 0 and 8 */
    len = item_record(buf, sizeof(buf), 0, 4, ids, weights, 6);
    for (int cd = 0; cd <= 8; cd += 8) {
        dr_learner_conf_t cc = c;
        cc.content_dim = cd;
        dr_model_t *mc = model_of(&cc);
        assert_int_equal(dr_model_load_item(mc, 77, buf, len), 0);
        int64_t i = dr_model_item_index(mc, 77, false);
        assert_false(dr_model_item_has_content(mc, i));
        dr_items_view_t v;
        dr_model_items(mc, &v);
        for (int k = 0; k < DIM; k++) assert_true(v.q[i * DIM + k] == 0.5f);
        dr_model_free(mc);
    }
    dr_model_free(m);
}

/* Offsets in a version-3 globals record. */
enum { GLOBALS_VERSION_AT = 19, GLOBALS_PRIOR_AT = 27 };
static size_t globals_pop_at(void) { return GLOBALS_PRIOR_AT + DIM * 4; }

/* globals_patched (learner_test.h), into a model of its own. */
static int load_globals_patched(const uint8_t *g, size_t len, size_t at, const void *bytes, size_t n) {
    dr_learner_conf_t c = conf_ring(32);
    dr_model_t *m = model_of(&c);
    int err = globals_patched(m, g, len, at, bytes, n);
    dr_model_free(m);
    return err;
}

/* The globals: a negative model version (the slot of the next past prior
 * is version % 16), a popularity ring whose head is not at its end while it
 * fills, an id in it no event carries, a past version not older than the
 * current one: DR_ECORRUPT. */
static void test_hostile_globals(void **state) {
    (void)state;
    dr_learner_conf_t c = conf_ring(32);
    c.prior_period = 5;
    dr_model_t *m = model_of(&c);
    dr_user_t *u = dr_user_new_conf(7, &c);
    dr_apply_result_t r;
    for (int i = 0; i < 12; i++) { /* two outer steps: version 2, 12 positives */
        dr_event_t e = stream_event(i);
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)i, &r), 0);
    }
    assert_int_equal(dr_model_version(m), 2);
    uint8_t *g;
    size_t len;
    assert_int_equal(dr_model_encode_globals(m, &g, &len), 0);
    assert_int_equal(load_globals_patched(g, len, 0, g, 1), 0);
    int64_t version = -3;
    assert_int_equal(load_globals_patched(g, len, GLOBALS_VERSION_AT, &version, 8), DR_ECORRUPT);
    uint32_t pop_len, pop_head;
    memcpy(&pop_len, g + globals_pop_at(), 4);
    memcpy(&pop_head, g + globals_pop_at() + 4, 4);
    assert_true(pop_len > 1 && pop_len < DR_POP_RING && pop_head == pop_len);
    pop_head = 0;
    assert_int_equal(load_globals_patched(g, len, globals_pop_at() + 4, &pop_head, 4), DR_ECORRUPT);
    int64_t bad_id = -5;
    assert_int_equal(load_globals_patched(g, len, globals_pop_at() + 8, &bad_id, 8), DR_ECORRUPT);
    /* the past versions follow the ring, the Reptile count and sums */
    size_t past_at = globals_pop_at() + 8 + 8u * pop_len + 4 + 8u * DIM;
    int64_t past;
    memcpy(&past, g + past_at, 8);
    assert_int_equal(past, 0);
    past = 2;
    assert_int_equal(load_globals_patched(g, len, past_at, &past, 8), DR_ECORRUPT);
    free(g);
    dr_user_free(u);
    dr_model_free(m);
}

/* The sequence that crashed a restarted pipeline (ASan: heap-buffer-overflow
 * in model.c, else SIGSEGV): a user stored with a full ring of 64, read under
 * learner.recent.items=4, learns from an event, and its detector cuts: the
 * re-adaptation replays the kept window. It must replay the 4 kept events.
 * Last in the list: on a decoder that keeps the 64 entries it crashes. */
static void test_readapt_after_ring_lowered(void **state) {
    (void)state;
    dr_learner_conf_t c64 = conf_ring(DR_RECENT_MAX), c4 = conf_ring(4);
    uint8_t *rec;
    size_t len;
    encode_stream_user(&c64, DR_RECENT_MAX + 6, &rec, &len);
    dr_model_t *m = model_of(&c4);
    for (int i = 0; i < DR_RECENT_MAX + 7; i++) assert_true(dr_model_item_index(m, stream_event(i).item_id, true) >= 0);
    dr_user_t *u;
    assert_int_equal(dr_user_decode(7, &c4, rec, len, &u), 0);
    dr_apply_result_t r;
    dr_event_t e = stream_event(DR_RECENT_MAX + 6);
    assert_int_equal(dr_learner_apply(m, u, &e, 1, &r), 0);
    for (int i = 0; i < 2 * DR_RECENT_MAX; i++) assert_true(dr_adwin_update(&u->drift, 0.5) >= 0);
    assert_int_equal(dr_learner_readapt(m, u, 0), 4);
    for (int k = 0; k < DIM; k++) assert_true(isfinite(u->v[k]));
    dr_user_free(u);
    dr_model_free(m);
    free(rec);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_into_same_bytes),
        cmocka_unit_test(test_longer_ring_keeps_newest),
        cmocka_unit_test(test_same_ring_unchanged),
        cmocka_unit_test(test_shorter_ring_grows),
        cmocka_unit_test(test_hostile_user_bytes),
        cmocka_unit_test(test_other_max_buckets_keeps_user),
        cmocka_unit_test(test_item_records_under_other_settings),
        cmocka_unit_test(test_hostile_globals),
        cmocka_unit_test(test_readapt_after_ring_lowered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
