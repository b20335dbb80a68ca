/* test_items.c - claims of the item lifetime (learner/items.c): items past
 * learner.item.ttl.ms leave the lists, past the grace period the model and
 * the store; removed items' rows are reused only once no co-engagement
 * table names them; an id that comes back soon after comes back expired;
 * memory follows the live catalog under churn; a new post of a known author
 * starts from its author's record (learner/authors.c). */
#include "learner_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_learner.h"
#include "learner_internal.h" /* the id table's size and rebuilds */

#define TTL 10000
#define GRACE 5000

static dr_model_t *new_model(int64_t ttl, int64_t grace, int neighbors, int64_t max_items) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.item_ttl_ms = ttl;
    c.item_grace_ms = grace;
    c.cooc_neighbors = neighbors;
    if (max_items > 0) c.max_items = max_items;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    return m;
}

static void click(dr_model_t *m, dr_user_t *u, int64_t item, int64_t ts) {
    dr_event_t e = {u->user_id, item, DR_EV_CLICK, 0, ts};
    dr_apply_result_t r;
    assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)ts ^ (uint64_t)item, &r), 0);
}

/* Runs the expiry pass until it has looked at every row and the sweep
 * released what it could (a few passes), summing what it did. */
static dr_expiry_stats_t expire_all(dr_model_t *m) {
    dr_expiry_stats_t sum = {0}, st;
    for (int k = 0; k < 8; k++) {
        assert_int_equal(dr_model_expire_items(m, 1u << 20, &st), 0);
        sum.visited += st.visited;
        sum.expired += st.expired;
        sum.removed += st.removed;
        sum.released += st.released;
    }
    return sum;
}

static bool listable(dr_model_t *m, int64_t item_id) {
    int64_t idx = dr_model_item_index(m, item_id, false);
    if (idx < 0) return false;
    dr_items_view_t v;
    dr_model_items(m, &v);
    return v.excluded[idx] == 0;
}

typedef struct drained {
    int64_t ids[4096];
    bool deleted[4096];
    size_t n;
} drained_t;

static int collect(void *ctx, int64_t item_id, const void *rec, size_t len) {
    (void)len;
    drained_t *d = ctx;
    if (d->n < 4096) {
        d->ids[d->n] = item_id;
        d->deleted[d->n++] = rec == NULL;
    }
    return 0;
}

static bool drained_delete_of(const drained_t *d, int64_t id) {
    for (size_t k = 0; k < d->n; k++)
        if (d->ids[k] == id && d->deleted[k]) return true;
    return false;
}

/* An item leaves the lists at its TTL (event time, from when the model met
 * it), keeps learning through the grace period, then leaves the model and
 * the store; a fresh item is untouched throughout. */
static void test_expires_then_removed(void **state) {
    (void)state;
    dr_model_t *m = new_model(TTL, GRACE, 64, 0);
    dr_user_t *u = dr_user_new(1, 8);
    click(m, u, 100, 1000000);
    assert_int_equal(dr_model_item_published(m, 100), 1000000);
    assert_true(listable(m, 100));
    click(m, u, 200, 1000000 + TTL - 1);
    expire_all(m);
    assert_true(listable(m, 100)); /* one ms short of its TTL */
    click(m, u, 200, 1000000 + TTL);
    dr_expiry_stats_t st = expire_all(m);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.removed, 0);
    assert_false(listable(m, 100));
    assert_true(dr_model_item_expired(m, 100));
    assert_true(listable(m, 200));
    click(m, u, 100, 1000000 + TTL + 1); /* a late click still learns */
    assert_true(dr_model_item_index(m, 100, false) >= 0);
    drained_t *d = calloc(1, sizeof(*d));
    assert_int_equal(dr_model_drain_dirty_items(m, collect, d), 0);
    click(m, u, 200, 1000000 + TTL + GRACE);
    st = expire_all(m);
    assert_int_equal(st.removed, 1);
    assert_int_equal(dr_model_item_index(m, 100, false), DR_ENOTFOUND);
    assert_int_equal(dr_model_live_items(m), 1);
    d->n = 0;
    assert_int_equal(dr_model_drain_dirty_items(m, collect, d), 0);
    assert_true(drained_delete_of(d, 100)); /* its stored record goes */
    assert_false(drained_delete_of(d, 200));
    free(d);
    dr_user_free(u);
    dr_model_free(m);
}

/* A catalog publish time counts instead of the first event; an item
 * published long ago is expired from its first record on. */
static void test_catalog_publish_time(void **state) {
    (void)state;
    dr_model_t *m = new_model(TTL, GRACE, 64, 0);
    dr_user_t *u = dr_user_new(1, 8);
    click(m, u, 1, 5000000);
    assert_int_equal(dr_model_set_item_published(m, 7, 5000000 - TTL), 0);
    assert_false(listable(m, 7));
    assert_int_equal(dr_model_set_item_published(m, 8, 5000000 - 10), 0);
    assert_true(listable(m, 8));
    assert_int_equal(dr_model_set_item_published(m, 9, -1), DR_ERANGE);
    dr_user_free(u);
    dr_model_free(m);
}

/* An id that comes back within a generation of its removal (a late event,
 * another instance's model message, a catalog record read again) gets a
 * row that is expired at once: it is never listed as new. A tombstoned id
 * comes back expired whatever the TTL. */
static void test_removed_id_comes_back_expired(void **state) {
    (void)state;
    dr_model_t *m = new_model(TTL, GRACE, 64, 0);
    dr_user_t *u = dr_user_new(1, 8);
    click(m, u, 100, 1000000);
    click(m, u, 200, 1000000 + TTL + GRACE);
    expire_all(m);
    assert_int_equal(dr_model_item_index(m, 100, false), DR_ENOTFOUND);
    click(m, u, 100, 1000000 + TTL + GRACE + 1);
    assert_int_equal(dr_model_item_published(m, 100), 1000000);
    assert_false(listable(m, 100));
    assert_int_equal(dr_model_remove_item(m, 200), 0);
    assert_int_equal(dr_model_remove_item(m, 200), DR_ENOTFOUND);
    click(m, u, 200, 1000000 + TTL + GRACE + 2);
    assert_false(listable(m, 200));
    dr_user_free(u);
    dr_model_free(m);
}

/* Off the comfortable path: co-engagement tables far smaller than what
 * users engage with drop entries independently, so a table may name an
 * item that does not name it back. After removals, the rows handed to new
 * items must carry no co-engagement weight from the removed ones: no live
 * item may list a new item it was never engaged next to. */
static void test_reused_rows_carry_no_stale_weights(void **state) {
    (void)state;
    dr_model_t *m = new_model(TTL, GRACE, 4, 0);
    dr_user_t *users[20];
    for (int k = 0; k < 20; k++) users[k] = dr_user_new(k + 1, 8);
    uint64_t rng = 12345;
    int64_t t = 1000000;
    /* old items 1..300 co-engaged at random, early */
    for (int e = 0; e < 6000; e++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        click(m, users[(rng >> 33) % 20], 1 + (int64_t)((rng >> 40) % 300), t + e / 10);
    }
    /* items 1..150 stay fresh (published late); 151..300 expire */
    t += 600 + TTL + GRACE;
    dr_user_t *late = dr_user_new(999, 8); /* moves the clock, pairs nothing */
    click(m, late, 1, t);
    dr_user_free(late);
    for (int64_t i = 1; i <= 150; i++) assert_int_equal(dr_model_set_item_published(m, i, t), 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    size_t rows_before = v.n;
    dr_expiry_stats_t st = expire_all(m);
    assert_int_equal(st.removed, 150);
    assert_int_equal(st.released, 150);
    /* new items 1001..1150 take the freed rows; each is engaged alone */
    for (int64_t i = 1001; i <= 1150; i++) {
        dr_user_t *solo = dr_user_new(10000 + i, 8);
        click(m, solo, i, t + 1);
        dr_user_free(solo);
    }
    dr_model_items(m, &v);
    assert_int_equal(v.n, rows_before); /* no new rows */
    for (int64_t i = 1; i <= 150; i++) {
        int64_t idx = dr_model_item_index(m, i, false);
        assert_true(idx >= 0);
        float engaged;
        int64_t nb[8];
        float w[8];
        size_t n = dr_model_item_neighbors(m, idx, &engaged, nb, w, 8);
        for (size_t k = 0; k < n; k++) {
            assert_true(nb[k] >= 1 && nb[k] <= 150); /* never a removed or a new item */
        }
    }
    for (int k = 0; k < 20; k++) dr_user_free(users[k]);
    dr_model_free(m);
}

/* Memory follows the live catalog: a stream where 20,000 posts arrive and
 * expire, about 1,000 live at a time, never holds more than a small
 * multiple of that in rows, and learner.max.items bounds the live items,
 * not the ones ever seen. */
static void test_churn_keeps_rows_flat(void **state) {
    (void)state;
    dr_model_t *m = new_model(1000, 500, 16, 2000);
    dr_user_t *u = dr_user_new(1, 8);
    size_t max_rows = 0, max_live = 0;
    for (int64_t i = 1; i <= 20000; i++) {
        click(m, u, i, 1000000 + i); /* one new post per ms of event time */
        if (i % 100 == 0) {
            dr_expiry_stats_t st;
            assert_int_equal(dr_model_expire_items(m, 4096, &st), 0);
            dr_items_view_t v;
            dr_model_items(m, &v);
            if (v.n > max_rows) max_rows = v.n;
            if (dr_model_live_items(m) > max_live) max_live = dr_model_live_items(m);
        }
    }
    print_message("      20,000 posts, TTL 1,000 + grace 500: at most %zu live, %zu rows\n", max_live, max_rows);
    assert_true(max_live <= 1500 + 200);
    assert_true(max_rows <= 2 * 1700);
    dr_user_free(u);
    dr_model_free(m);
}

typedef struct saved {
    int64_t id[8];
    uint8_t rec[8][16384];
    size_t len[8], n;
} saved_t;

static int save(void *ctx, int64_t item_id, const void *rec, size_t len) {
    saved_t *s = ctx;
    assert_true(s->n < 8 && rec && len <= sizeof(s->rec[0]));
    s->id[s->n] = item_id;
    memcpy(s->rec[s->n], rec, len);
    s->len[s->n++] = len;
    return 0;
}

/* Records keep the publish time (item record version 5); a drained
 * removal removes the item from a replica, and a stored table naming an
 * item whose record is gone leaves no row behind after the first pass. */
static void test_records_and_restore(void **state) {
    (void)state;
    dr_model_t *m = new_model(TTL, GRACE, 64, 0), *m2 = new_model(TTL, GRACE, 64, 0);
    dr_user_t *u = dr_user_new(1, 8);
    click(m, u, 10, 2000000);
    click(m, u, 11, 2000001);
    click(m, u, 12, 2000002);
    assert_int_equal(dr_model_set_item_published(m, 12, 1999000), 0);
    assert_int_equal(dr_model_drain_dirty_items(m, (dr_item_sink_fn)dr_model_load_item, m2), 0);
    assert_int_equal(dr_model_item_published(m2, 12), 1999000);
    assert_int_equal(dr_model_item_published(m2, 10), 2000000);
    assert_int_equal(dr_model_remove_item(m, 10), 0);
    assert_int_equal(dr_model_drain_dirty_items(m, (dr_item_sink_fn)dr_model_load_item, m2), 0);
    assert_int_equal(dr_model_item_index(m2, 10, false), DR_ENOTFOUND);
    /* a restore that reads 21's record (naming 20) but not 20's: 20 was
     * removed after 21 was last written */
    dr_model_t *m3 = new_model(TTL, GRACE, 64, 0);
    dr_user_t *u2 = dr_user_new(2, 8);
    click(m3, u2, 20, 3000000);
    click(m3, u2, 21, 3000001);
    saved_t *saved = calloc(1, sizeof(*saved));
    assert_int_equal(dr_model_drain_dirty_items(m3, save, saved), 0);
    dr_model_t *m4 = new_model(TTL, GRACE, 64, 0);
    for (size_t k = 0; k < saved->n; k++)
        if (saved->id[k] == 21) assert_int_equal(dr_model_load_item(m4, 21, saved->rec[k], saved->len[k]), 0);
    assert_true(dr_model_item_index(m4, 20, false) >= 0); /* a row for the name ... */
    assert_false(listable(m4, 20));                        /* ... never listed */
    expire_all(m4);
    assert_int_equal(dr_model_item_index(m4, 20, false), DR_ENOTFOUND);
    assert_int_equal(dr_model_live_items(m4), 1);
    int64_t idx = dr_model_item_index(m4, 21, false);
    float engaged;
    int64_t nb[4];
    float w[4];
    assert_int_equal(dr_model_item_neighbors(m4, idx, &engaged, nb, w, 4), 0);
    /* with both records read, nothing is dropped */
    dr_model_t *m5 = new_model(TTL, GRACE, 64, 0);
    for (size_t k = 0; k < saved->n; k++)
        assert_int_equal(dr_model_load_item(m5, saved->id[k], saved->rec[k], saved->len[k]), 0);
    expire_all(m5);
    assert_int_equal(dr_model_live_items(m5), 2);
    assert_true(listable(m5, 20));
    free(saved);
    dr_user_free(u2);
    dr_user_free(u);
    dr_model_free(m);
    dr_model_free(m2);
    dr_model_free(m3);
    dr_model_free(m4);
    dr_model_free(m5);
}

/* The freshness term: a list score gains w · 2^(-age / half-life), ages as
 * of the last expiry pass; off (w = 0) it changes nothing. */
static void test_freshness_term(void **state) {
    (void)state;
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.fresh_halflife_ms = 1000;
    dr_model_t *off, *on;
    char err[128];
    assert_int_equal(dr_model_new(&off, &c, err, sizeof err), 0);
    c.fresh_weight = 2.0f;
    assert_int_equal(dr_model_new(&on, &c, err, sizeof err), 0);
    dr_model_t *ms[2] = {off, on};
    dr_user_t *us[2] = {dr_user_new(1, 8), dr_user_new(1, 8)};
    for (int k = 0; k < 2; k++) {
        click(ms[k], us[k], 10, 100000);           /* met at 100,000 */
        assert_int_equal(dr_model_set_item_published(ms[k], 11, 100000 + 2000), 0);
        click(ms[k], us[k], 12, 100000 + 2000);    /* the clock: 102,000 */
        dr_expiry_stats_t st;
        assert_int_equal(dr_model_expire_items(ms[k], 1000, &st), 0);
    }
    float d10 = dr_model_score(on, us[1], dr_model_item_index(on, 10, false)) -
                dr_model_score(off, us[0], dr_model_item_index(off, 10, false));
    float d11 = dr_model_score(on, us[1], dr_model_item_index(on, 11, false)) -
                dr_model_score(off, us[0], dr_model_item_index(off, 11, false));
    assert_float_equal(d10, 2.0f * 0.25f, 1e-5); /* two half-lives old */
    assert_float_equal(d11, 2.0f, 1e-5);          /* new */
    float row[3] = {0, 0, 0};
    dr_model_add_fresh_range(off, row, 0, 3);
    assert_true(row[0] == 0.0f && row[1] == 0.0f && row[2] == 0.0f);
    for (int k = 0; k < 2; k++) {
        dr_user_free(us[k]);
        dr_model_free(ms[k]);
    }
}

/* A model restored from what a model with many removals stored draws the
 * same negatives as the model did: the id table a restore builds for the
 * live items is the one the running model keeps (it shrinks with them), so
 * the same next event moves the same items the same way. 3,000 posts, then
 * all but 100 removed. */
static void test_restored_model_draws_the_same(void **state) {
    (void)state;
    dr_model_t *m = new_model(1000, 0, 16, 0), *r = new_model(1000, 0, 16, 0);
    dr_user_t *u = dr_user_new(1, 8);
    for (int64_t i = 1; i <= 3000; i++) click(m, u, i, 1000000 + i / 10);
    for (int64_t i = 5001; i <= 5100; i++) click(m, u, i, 1005000);
    expire_all(m);
    assert_int_equal(dr_model_live_items(m), 100);
    copy_stored_model(m, r);
    expire_all(r);
    assert_int_equal(dr_model_live_items(r), 100);
    dr_model_t *ms[2] = {m, r};
    for (int k = 0; k < 2; k++) {
        dr_user_t *v = dr_user_new(7, 8);
        for (int e = 0; e < 20; e++) click(ms[k], v, 5001 + e, 1005001 + e); /* negatives drawn each time */
        dr_user_free(v);
    }
    dr_items_view_t vm, vr;
    dr_model_items(m, &vm);
    dr_model_items(r, &vr);
    for (int64_t id = 5001; id <= 5100; id++) {
        int64_t a = dr_model_item_index(m, id, false), b = dr_model_item_index(r, id, false);
        assert_true(a >= 0 && b >= 0);
        assert_memory_equal(vm.q + a * 8, vr.q + b * 8, 8 * sizeof(float));
    }
    dr_user_free(u);
    dr_model_free(m);
    dr_model_free(r);
}

/* Steady churn whose live items straddle a size of the id table: each
 * round 5 posts arrive, and the expiry pass after it removes the 5 of 204
 * rounds before, so 1,020 to 1,025 items live, about the 1,024 at which a
 * table of 2,048 slots is half full; and the removed posts' rows wait for
 * reuse beside them. A table sized to the live items at every commit was
 * rebuilt twice a round (grown by the new posts, shrunk by the pass: a
 * million items' table is 32 MB); it is sized once, then stays. A restore
 * gives the table the size it had (globals), so it draws as it did. */
static void test_id_table_does_not_thrash(void **state) {
    (void)state;
    const int64_t round_ms = 1000, rounds_live = 204;
    dr_model_t *m = new_model((rounds_live - 1) * round_ms, 1, 16, 0); /* older than 204 rounds: gone */
    dr_user_t *u = dr_user_new(1, 8);
    int64_t next = 1;
    uint64_t before = 0;
    for (int64_t round = 0; round < 300; round++) {
        if (round == 250) before = m->slot_rehashes;
        for (int k = 0; k < 5; k++) click(m, u, next++, 1000000 + round * round_ms);
        expire_all(m);
    }
    size_t live = dr_model_live_items(m);
    assert_true(live >= 1015 && live <= 1025);
    print_message("      %zu live, %zu rows, %zu slots: %llu rebuilds in the last 50 rounds\n", live, m->n_items,
                  m->n_slots, (unsigned long long)(m->slot_rehashes - before));
    assert_true(m->slot_rehashes - before <= 1);
    dr_model_t *r = new_model((rounds_live - 1) * round_ms, 1, 16, 0);
    copy_stored_model(m, r);
    assert_int_equal(r->n_slots, m->n_slots);
    /* the size sits before the content dimension (2 bytes): one that is
     * not a power of two is no size of ours; one larger than what
     * learner.max.items can need (lowered since) is not taken */
    uint8_t *g;
    size_t glen;
    assert_int_equal(dr_model_encode_globals(m, &g, &glen), 0);
    uint64_t slots = 3000;
    memcpy(g + glen - 2 - 8, &slots, 8);
    dr_model_t *h = new_model((rounds_live - 1) * round_ms, 1, 16, 0);
    assert_int_equal(dr_model_load_globals(h, g, glen), DR_ECORRUPT);
    dr_model_free(h);
    slots = (uint64_t)1 << 40;
    memcpy(g + glen - 2 - 8, &slots, 8);
    h = new_model((rounds_live - 1) * round_ms, 1, 16, 1000);
    assert_int_equal(dr_model_load_globals(h, g, glen), 0);
    assert_true(h->n_slots <= 4096);
    dr_model_free(h);
    free(g);
    dr_user_free(u);
    dr_model_free(m);
    dr_model_free(r);
}

/* Instances of one group expire items by their own clocks (the newest
 * event of their partitions), which differ by their lag. Instance A removed
 * items 1..20; B, behind, still learns items 5 and 6 together and shares
 * it: the ids come back in A expired, with their old age, never as new
 * posts. And A's own changes to the items it removed, made before the
 * removal, are not shared: a third instance that imports A's export gets
 * none of those ids. */
static void test_removed_items_between_instances(void **state) {
    (void)state;
    dr_model_t *a = new_model(TTL, GRACE, 64, 0), *b = new_model(TTL, GRACE, 64, 0),
               *c = new_model(TTL, GRACE, 64, 0);
    assert_int_equal(dr_model_sync_enable(a), 0);
    assert_int_equal(dr_model_sync_enable(b), 0);
    assert_int_equal(dr_model_sync_enable(c), 0);
    dr_user_t *ua = dr_user_new(1, 8), *ub = dr_user_new(2, 8), *late = dr_user_new(3, 8);
    for (int64_t i = 1; i <= 20; i++) {
        click(a, ua, i, 1000000 + i);
        click(b, ub, i, 1000000 + i);
    }
    click(a, late, 99, 1000000 + TTL + GRACE + 100); /* A's clock moves on */
    expire_all(a);
    for (int64_t i = 1; i <= 20; i++) assert_int_equal(dr_model_item_index(a, i, false), DR_ENOTFOUND);
    click(b, ub, 5, 1000100);
    click(b, ub, 6, 1000101);
    uint8_t *msg;
    size_t len, n, applied, skipped;
    assert_int_equal(dr_model_sync_export(b, 100000, &msg, &len, &n), 0);
    assert_int_equal(dr_model_sync_import(a, msg, len, &applied, &skipped), 0);
    free(msg);
    assert_true(applied > 0);
    for (int64_t i = 5; i <= 6; i++) {
        assert_true(dr_model_item_index(a, i, false) >= 0); /* back ... */
        assert_false(listable(a, i));                       /* ... expired */
        assert_true(dr_model_item_published(a, i) <= 1000000 + 20);
    }
    assert_int_equal(dr_model_sync_export(a, 100000, &msg, &len, &n), 0);
    assert_int_equal(dr_model_sync_import(c, msg, len, &applied, &skipped), 0);
    free(msg);
    for (int64_t i = 1; i <= 20; i++)
        if (i != 5 && i != 6) assert_int_equal(dr_model_item_index(c, i, false), DR_ENOTFOUND);
    assert_true(dr_model_item_index(c, 99, false) >= 0);
    dr_user_free(ua);
    dr_user_free(ub);
    dr_user_free(late);
    dr_model_free(a);
    dr_model_free(b);
    dr_model_free(c);
}

/* ---- the author prior (learner/authors.c) ------------------------------------ */

static dr_model_t *author_model(int64_t authors) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    c.init_scale = 0.001f; /* the factor part next to nothing: p_i decides */
    c.prior_zero = true;
    c.pop_authors = authors;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof err), 0);
    return m;
}

static float pop_of(dr_model_t *m, int64_t item_id) {
    int64_t idx = dr_model_item_index(m, item_id, false);
    assert_true(idx >= 0);
    dr_items_view_t v;
    dr_model_items(m, &v);
    return v.pop[idx];
}

/* posts posts of author (ids first ..), each clicked by `clicks` users */
static void author_posts(dr_model_t *m, int64_t author, int64_t first, int posts, int clicks, int64_t *ts) {
    for (int p = 0; p < posts; p++) {
        assert_int_equal(dr_model_set_item_source(m, first + p, author, 1), 0);
        for (int k = 0; k < clicks; k++) {
            dr_user_t *u = dr_user_new(1000 + k, 8);
            click(m, u, first + p, (*ts)++);
            dr_user_free(u);
        }
    }
}

/* A new post of an author whose posts earned many positives starts with a
 * p_i from them and ranks, for a new user, above a new post of an author
 * whose posts earned nothing and above one without an author; a restart
 * rebuilds the author's record from the stored items. */
static void test_author_prior_ranks_new_posts(void **state) {
    (void)state;
    dr_model_t *m = author_model(1000);
    int64_t ts = 1000000;
    author_posts(m, 7, 100, 5, 8, &ts);  /* popular: 8 positives a post */
    author_posts(m, 9, 200, 5, 0, &ts);  /* nobody engaged */
    assert_int_equal(dr_model_set_item_source(m, 300, 7, 1), 0);
    assert_int_equal(dr_model_set_item_source(m, 301, 9, 1), 0);
    assert_int_equal(dr_model_set_item_source(m, 302, -1, 1), 0);
    float posts, positives, seed;
    assert_int_equal(dr_model_author_stats(m, 7, &posts, &positives, &seed), 0);
    assert_float_equal(posts, 6.0f, 0.1f);
    assert_float_equal(positives, 40.0f, 0.5f);
    /* the mean of 8 a post, shrunk: 40 / (5 + 2) when the new post joined */
    assert_float_equal(pop_of(m, 300), log1pf(40.0f / 7.0f), 0.05f);
    assert_float_equal(pop_of(m, 301), 0.0f, 1e-6);
    assert_float_equal(pop_of(m, 302), 0.0f, 1e-6);
    dr_user_t *fresh = dr_user_new(1, 8);
    int64_t popular = dr_model_list_rank(m, fresh, 300), unpopular = dr_model_list_rank(m, fresh, 301),
            unknown = dr_model_list_rank(m, fresh, 302);
    assert_true(popular > 0 && popular < unpopular && popular < unknown);
    /* after a restart: the same record, the same prior for the next post */
    dr_model_t *m2 = author_model(1000);
    copy_stored_model(m, m2);
    float posts2, positives2, seed2;
    assert_int_equal(dr_model_author_stats(m2, 7, &posts2, &positives2, &seed2), 0);
    assert_float_equal(posts2, posts, 1e-3);
    assert_float_equal(positives2, positives, 1e-3);
    assert_float_equal(seed2, seed, 1e-4);
    assert_float_equal(pop_of(m2, 300), pop_of(m, 300), 1e-6);
    /* a removed post takes its share with it */
    assert_int_equal(dr_model_remove_item(m, 100), 0);
    assert_int_equal(dr_model_author_stats(m, 7, &posts, &positives, NULL), 0);
    assert_float_equal(posts, 5.0f, 0.1f);
    assert_float_equal(positives, 32.0f, 0.5f);
    dr_user_free(fresh);
    dr_model_free(m2);
    dr_model_free(m);
}

/* The author's pseudo-count gives way to the post's own evidence: events
 * without a positive take it away, positives replace it. */
static void test_author_prior_gives_way(void **state) {
    (void)state;
    dr_model_t *m = author_model(1000);
    int64_t ts = 1000000;
    author_posts(m, 7, 100, 5, 8, &ts);
    assert_int_equal(dr_model_set_item_source(m, 300, 7, 1), 0);
    assert_int_equal(dr_model_set_item_source(m, 301, 7, 1), 0);
    float start = pop_of(m, 300), start301 = pop_of(m, 301);
    assert_true(start > 1.0f);
    /* 300 is shown and skipped (short dwells: labelled negatives) */
    for (int k = 0; k < 30; k++) {
        dr_user_t *u = dr_user_new(2000 + k, 8);
        dr_event_t e = {u->user_id, 300, DR_EV_DWELL, 1.0f, ts++};
        dr_apply_result_t r;
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)k, &r), 0);
        dr_user_free(u);
    }
    float skipped = pop_of(m, 300);
    assert_true(skipped < 0.8f * start); /* half its pseudo-count after 30 events */
    for (int k = 0; k < 600; k++) {
        dr_user_t *u = dr_user_new(3000 + k, 8);
        dr_event_t e = {u->user_id, 300, DR_EV_DWELL, 1.0f, ts++};
        dr_apply_result_t r;
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)k, &r), 0);
        dr_user_free(u);
    }
    assert_true(pop_of(m, 300) < 0.25f * start); /* what is left is 5% of it */
    /* 301 earns its own positives: they count, the prior fades beside them */
    for (int k = 0; k < 40; k++) {
        dr_user_t *u = dr_user_new(5000 + k, 8);
        click(m, u, 301, ts++);
        dr_user_free(u);
    }
    /* c_i = 40, and of the pseudo-count s at most 30 / (30 + 40 steps) */
    float s301 = expm1f(start301);
    assert_true(pop_of(m, 301) > log1pf(40.0f) && pop_of(m, 301) < log1pf(40.0f + s301 * 30.0f / 70.0f));
    dr_model_free(m);
}

/* Posts without an author keep p_i exactly as without the author table,
 * whatever the authored posts beside them do. */
static void test_author_prior_leaves_unauthored_items(void **state) {
    (void)state;
    dr_model_t *off = author_model(0), *on = author_model(1000);
    dr_model_t *ms[2] = {off, on};
    for (int k = 0; k < 2; k++) {
        int64_t ts = 1000000;
        author_posts(ms[k], 7, 100, 5, 8, &ts);
        assert_int_equal(dr_model_set_item_source(ms[k], 300, 7, 1), 0);
        uint64_t s = 5;
        for (int e = 0; e < 3000; e++) {
            dr_user_t *u = dr_user_new(1 + (int64_t)(dr_rand64(&s) % 50), 8);
            int64_t item = 400 + (int64_t)(dr_rand64(&s) % 20);
            if (e % 3 == 0) item = 100 + (int64_t)(dr_rand64(&s) % 5); /* authored ones too */
            click(ms[k], u, item, ts++);
            dr_user_free(u);
        }
    }
    assert_int_equal(dr_model_author_stats(off, 7, NULL, NULL, NULL), DR_ENOTFOUND);
    assert_true(pop_of(on, 300) > 0.0f && pop_of(off, 300) == 0.0f);
    for (int64_t item = 400; item < 420; item++) assert_true(pop_of(on, item) == pop_of(off, item));
    dr_model_free(off);
    dr_model_free(on);
}

/* ---- the content prior (learner/content_prior.c) -------------------------- */

static dr_model_t *content_model_with(bool on, float halflife, int period) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    if (halflife > 0) c.pop_halflife = halflife;
    if (period > 0) c.prior_period = period;
    c.dim = 8;
    c.init_scale = 0.001f;
    c.prior_zero = true;
    c.pop_authors = 0; /* content alone */
    c.pop_content = on;
    c.content_dim = 4;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof err), 0);
    return m;
}

static dr_model_t *content_model(bool on) { return content_model_with(on, 0, 0); }

/* The content of the p-th post near e. */
static void content_near(const float *e, int p, float v[4]) {
    for (int j = 0; j < 4; j++) v[j] = e[j] + 0.05f * (float)((p * 7 + j * 3) % 5 - 2);
}

/* posts posts of content e (ids first ..), each clicked by `clicks` users */
static void content_posts(dr_model_t *m, const float *e, int64_t first, int posts, int clicks, int64_t *ts) {
    for (int p = 0; p < posts; p++) {
        float v[4];
        content_near(e, p, v);
        assert_int_equal(dr_model_set_item_content(m, first + p, v, 4), 0);
        for (int k = 0; k < clicks; k++) {
            dr_user_t *u = dr_user_new(1000 + k, 8);
            click(m, u, first + p, (*ts)++);
            dr_user_free(u);
        }
    }
}

/* A new post whose content is like that of posts that earned positives
 * starts with a p_i from them and ranks, for a new user, above a new post
 * like posts that earned nothing; with one-hot content the seed is the
 * author table's mean; a restart rebuilds the regression from the stored
 * items; removed posts take their share with them; off, nothing moves. */
static void test_content_prior_ranks_new_posts(void **state) {
    (void)state;
    static const float liked[4] = {1, 0, 0, 0}, ignored[4] = {0, 1, 0, 0}, other[4] = {0, 0, 0, 1};
    /* one-hot content: the author formula, 5 posts of 8 positives -> 40 / (5 + 2) */
    dr_model_t *hot = content_model(true);
    int64_t ts = 1000000;
    for (int64_t p = 0; p < 5; p++) {
        assert_int_equal(dr_model_set_item_content(hot, 100 + p, liked, 4), 0);
        for (int k = 0; k < 8; k++) {
            dr_user_t *u = dr_user_new(1000 + k, 8);
            click(hot, u, 100 + p, ts++);
            dr_user_free(u);
        }
    }
    assert_int_equal(dr_model_set_item_content(hot, 300, liked, 4), 0);
    assert_float_equal(pop_of(hot, 300), log1pf(40.0f / 7.0f), 0.05f);
    assert_int_equal(dr_model_set_item_content(hot, 301, other, 4), 0);
    assert_float_equal(pop_of(hot, 301), 0.0f, 1e-6);
    /* a version-8 record (no content join time: 8 bytes fewer) still loads */
    kept_record_t k = {.item_id = 300};
    assert_int_equal(dr_model_drain_dirty_items(hot, keep_record, &k), 0);
    assert_true(k.len > 8);
    dr_model_t *older = content_model(true);
    k.buf[0] = 8;
    assert_int_equal(dr_model_load_item(older, 300, k.buf, k.len - 8), 0);
    assert_true(dr_model_item_has_content(older, dr_model_item_index(older, 300, false)));
    dr_model_free(older);
    dr_model_free(hot);

    dr_model_t *m = content_model(true), *off = content_model(false);
    dr_model_t *ms[2] = {m, off};
    for (int k = 0; k < 2; k++) {
        ts = 1000000;
        content_posts(ms[k], liked, 100, 10, 8, &ts);
        content_posts(ms[k], ignored, 200, 10, 0, &ts);
        float near_liked[4] = {0.9f, 0.1f, 0.1f, 0}, near_ignored[4] = {0.1f, 0.9f, 0, 0.1f};
        assert_int_equal(dr_model_set_item_content(ms[k], 300, near_liked, 4), 0);
        assert_int_equal(dr_model_set_item_content(ms[k], 301, near_ignored, 4), 0);
    }
    assert_true(pop_of(m, 300) > 1.0f);
    print_message("content prior: p_i %.3f like the liked posts, %.3f like the ignored\n", pop_of(m, 300), pop_of(m, 301));
    assert_true(pop_of(m, 301) < 0.3f * pop_of(m, 300));
    assert_true(pop_of(off, 300) == 0.0f && pop_of(off, 301) == 0.0f);
    dr_user_t *fresh = dr_user_new(1, 8);
    assert_true(dr_model_list_rank(m, fresh, 300) < dr_model_list_rank(m, fresh, 301));
    /* after a restart: the same p_i, and the next post gets the same seed */
    dr_model_t *m2 = content_model(true);
    copy_stored_model(m, m2);
    assert_float_equal(pop_of(m2, 300), pop_of(m, 300), 1e-6);
    float next[4] = {0.8f, 0.2f, 0, 0.1f};
    assert_int_equal(dr_model_set_item_content(m, 302, next, 4), 0);
    assert_int_equal(dr_model_set_item_content(m2, 302, next, 4), 0);
    assert_true(pop_of(m, 302) > 1.0f);
    assert_float_equal(pop_of(m2, 302), pop_of(m, 302), 1e-3);
    /* a restart that turns the prior on over items stored with it off: the
     * regression is rebuilt from the items and the next post is seeded as
     * in a model that had it on throughout */
    dr_model_t *on_now = content_model(true);
    copy_stored_model(off, on_now);
    assert_int_equal(dr_model_set_item_content(on_now, 302, next, 4), 0);
    assert_float_equal(pop_of(on_now, 302), pop_of(m, 302), 0.05f);
    dr_model_free(on_now);
    /* the liked posts removed: posts like them hold nothing any more */
    for (int64_t p = 100; p < 110; p++) assert_int_equal(dr_model_remove_item(m, p), 0);
    assert_int_equal(dr_model_set_item_content(m, 303, next, 4), 0);
    assert_true(pop_of(m, 303) < 0.2f);
    dr_user_free(fresh);
    dr_model_free(m2);
    dr_model_free(off);
    dr_model_free(m);
}

/* A catalog record sent again with the same content (an edit of another
 * field, a compacted catalog read again) changes nothing: an untouched
 * post's q_i keeps its own random start beside the content's part (it took
 * the content's part twice), and the regression keeps the post's age (it
 * counted it as a new post again), so the next post's seed is that of a
 * model that never saw the record twice. */
static void test_content_sent_again_changes_nothing(void **state) {
    (void)state;
    static const float liked[4] = {1, 0, 0, 0}, ignored[4] = {0, 1, 0, 0};
    dr_model_t *once = content_model_with(true, 40.0f, 10), *twice = content_model_with(true, 40.0f, 10);
    dr_model_t *ms[2] = {once, twice};
    for (int k = 0; k < 2; k++) {
        int64_t ts = 1000000;
        content_posts(ms[k], ignored, 200, 10, 0, &ts);
        content_posts(ms[k], liked, 100, 10, 12, &ts); /* 120 positives: the old posts' weight decays */
    }
    for (int64_t p = 200; p < 210; p++) {
        float e[4];
        content_near(ignored, (int)(p - 200), e); /* the record content_posts sent */
        assert_int_equal(dr_model_set_item_content(twice, p, e, 4), 0);
    }
    /* a new post (nothing sampled it as a negative yet), its record twice */
    const float fresh[4] = {0.2f, 0.7f, 0.1f, 0.3f};
    assert_int_equal(dr_model_set_item_content(once, 400, fresh, 4), 0);
    assert_int_equal(dr_model_set_item_content(twice, 400, fresh, 4), 0);
    size_t d = 8, idx = (size_t)dr_model_item_index(twice, 400, false);
    dr_items_view_t v;
    dr_model_items(twice, &v);
    float before[8];
    memcpy(before, v.q + idx * d, sizeof before);
    assert_int_equal(dr_model_set_item_content(twice, 400, fresh, 4), 0);
    dr_model_items(twice, &v);
    for (size_t k = 0; k < d; k++) assert_float_equal(v.q[idx * d + k], before[k], 1e-7);
    float next[4] = {0.5f, 0.5f, 0.1f, 0};
    assert_int_equal(dr_model_set_item_content(once, 300, next, 4), 0);
    assert_int_equal(dr_model_set_item_content(twice, 300, next, 4), 0);
    print_message("content sent again: next post's p_i %.4f, %.4f with the records sent twice\n", pop_of(once, 300),
                  pop_of(twice, 300));
    assert_true(pop_of(once, 300) > 0.1f);
    assert_float_equal(pop_of(twice, 300), pop_of(once, 300), 1e-3);
    dr_model_free(twice);
    dr_model_free(once);
}

/* The author table holds at most learner.prior.popularity.authors authors:
 * a new one takes the least active one's place. */
static void test_author_table_evicts_the_least_active(void **state) {
    (void)state;
    dr_model_t *m = author_model(4);
    int64_t ts = 1000000;
    author_posts(m, 1, 100, 3, 6, &ts);
    author_posts(m, 2, 200, 2, 3, &ts);
    author_posts(m, 3, 300, 2, 2, &ts);
    author_posts(m, 4, 400, 1, 0, &ts); /* one post, no positive: the lightest */
    uint64_t evicted;
    assert_int_equal(dr_model_authors(m, &evicted), 4);
    assert_int_equal(evicted, 0);
    assert_int_equal(dr_model_set_item_source(m, 500, 5, 1), 0);
    assert_int_equal(dr_model_authors(m, &evicted), 4);
    assert_int_equal(evicted, 1);
    assert_int_equal(dr_model_author_stats(m, 4, NULL, NULL, NULL), DR_ENOTFOUND);
    for (int64_t a = 1; a <= 5; a++)
        if (a != 4) assert_int_equal(dr_model_author_stats(m, a, NULL, NULL, NULL), 0);
    /* the evicted author's next post starts from nothing, as an unknown one */
    assert_int_equal(dr_model_set_item_source(m, 401, 4, 1), 0);
    assert_float_equal(pop_of(m, 401), 0.0f, 1e-6);
    assert_int_equal(dr_model_authors(m, NULL), 4);
    dr_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expires_then_removed),
        cmocka_unit_test(test_catalog_publish_time),
        cmocka_unit_test(test_removed_id_comes_back_expired),
        cmocka_unit_test(test_reused_rows_carry_no_stale_weights),
        cmocka_unit_test(test_churn_keeps_rows_flat),
        cmocka_unit_test(test_records_and_restore),
        cmocka_unit_test(test_freshness_term),
        cmocka_unit_test(test_restored_model_draws_the_same),
        cmocka_unit_test(test_id_table_does_not_thrash),
        cmocka_unit_test(test_removed_items_between_instances),
        cmocka_unit_test(test_author_prior_ranks_new_posts),
        cmocka_unit_test(test_author_prior_gives_way),
        cmocka_unit_test(test_author_prior_leaves_unauthored_items),
        cmocka_unit_test(test_content_prior_ranks_new_posts),
        cmocka_unit_test(test_content_sent_again_changes_nothing),
        cmocka_unit_test(test_author_table_evicts_the_least_active),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
