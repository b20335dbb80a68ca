/* test_neighbors.c - claims of the co-engagement table (learner/learner_internal.h):
 * exact counts while it has room, bounded size, the heaviest kept. */
#include "dr_test.h"

#include "dr_err.h"
#include "learner_internal.h"

/* "Adds w to key's weight, inserting it when new"; "0 when absent". */
static void test_counts_exactly_below_cap(void **state) {
    (void)state;
    dr__nbr_t t = {0};
    assert_true(dr__nbr_get(&t, 5) == 0.0f); /* a zeroed struct is an empty table */
    for (int32_t k = 0; k < 100; k++)
        for (int rep = 0; rep <= k % 7; rep++) assert_int_equal(dr__nbr_add(&t, k, 1.0f, 1000, NULL), 0);
    assert_int_equal(t.n, 100);
    for (int32_t k = 0; k < 100; k++) assert_true(dr__nbr_get(&t, k) == (float)(k % 7 + 1));
    assert_true(dr__nbr_get(&t, 100) == 0.0f);
    assert_true(t.n * 4 <= t.n_slots * 3); /* at most 3/4 full */
    dr__nbr_clear(&t);
    assert_null(t.e);
    assert_int_equal(t.n, 0);
}

/* "when a full table meets a new neighbour, every weight is halved and the
 * lightest entries are dropped until a quarter of the table is free" */
static void test_full_table_keeps_heaviest(void **state) {
    (void)state;
    dr__nbr_t t = {0};
    const uint32_t cap = 16;
    for (int32_t k = 0; k < 16; k++) assert_int_equal(dr__nbr_add(&t, k, (float)(k + 1), cap, NULL), 0);
    assert_int_equal(t.n, 16);
    assert_int_equal(dr__nbr_add(&t, 99, 1.0f, cap, NULL), 0);
    assert_int_equal(t.n, 12 + 1); /* 3/4 of cap kept, then the new one */
    for (int32_t k = 0; k < 4; k++) assert_true(dr__nbr_get(&t, k) == 0.0f); /* the lightest went */
    for (int32_t k = 4; k < 16; k++) assert_true(dr__nbr_get(&t, k) == (float)(k + 1) / 2.0f);
    assert_true(dr__nbr_get(&t, 99) == 1.0f);
    /* a long stream of new keys never grows it past cap */
    for (int32_t k = 1000; k < 5000; k++) {
        assert_int_equal(dr__nbr_add(&t, k, 1.0f, cap, NULL), 0);
        assert_true(t.n <= cap);
    }
    /* a key seen all along outlives them */
    dr__nbr_t u = {0};
    for (int32_t k = 1000; k < 5000; k++) {
        assert_int_equal(dr__nbr_add(&u, 7, 1.0f, cap, NULL), 0);
        assert_int_equal(dr__nbr_add(&u, k, 1.0f, cap, NULL), 0);
    }
    assert_true(dr__nbr_get(&u, 7) > 1.0f);
    dr__nbr_clear(&t);
    dr__nbr_clear(&u);
}

/* "Equal weights are dropped in the order of ids[key]": the smallest ids
 * stay, whatever the indices. */
static void test_ties_follow_item_ids(void **state) {
    (void)state;
    int64_t ids[17];
    for (int k = 0; k < 17; k++) ids[k] = 1000 - k; /* index order reverses id order */
    dr__nbr_t t = {0};
    for (int32_t k = 0; k < 17; k++) assert_int_equal(dr__nbr_add(&t, k, 1.0f, 16, ids), 0);
    assert_int_equal(t.n, 13);
    for (int32_t k = 0; k < 4; k++) assert_true(dr__nbr_get(&t, k) == 0.0f);   /* largest ids went */
    for (int32_t k = 4; k < 16; k++) assert_true(dr__nbr_get(&t, k) == 0.5f);
    assert_true(dr__nbr_get(&t, 16) == 1.0f);
    dr__nbr_clear(&t);
}

/* Tiny caps still bound the table; cap 0 and negative keys add nothing. */
static void test_tiny_caps(void **state) {
    (void)state;
    for (uint32_t cap = 1; cap <= 4; cap++) {
        dr__nbr_t t = {0};
        for (int32_t k = 0; k < 50; k++) {
            assert_int_equal(dr__nbr_add(&t, k, 1.0f, cap, NULL), 0);
            assert_true(t.n >= 1 && t.n <= cap);
            assert_true(dr__nbr_get(&t, k) == 1.0f); /* the newest is always in */
        }
        dr__nbr_clear(&t);
    }
    dr__nbr_t t = {0};
    assert_int_equal(dr__nbr_add(&t, 3, 1.0f, 0, NULL), 0);
    assert_int_equal(dr__nbr_add(&t, -1, 1.0f, 8, NULL), 0);
    assert_int_equal(t.n, 0);
    dr__nbr_clear(&t);
}

/* learner.cooc.neighbors changed between restarts: a table full at the old
 * cap takes new keys exactly up to a raised one (its entries' room was
 * sized by the old cap), and a lowered one bounds it at the next new key,
 * the heaviest kept. Reserving ahead under the raised cap is enough for
 * the add that follows. */
static void test_cap_changes(void **state) {
    (void)state;
    dr__nbr_t t = {0};
    for (int32_t k = 0; k < 16; k++) assert_int_equal(dr__nbr_add(&t, k, (float)(k + 1), 16, NULL), 0);
    assert_int_equal(t.n, 16);
    assert_int_equal(dr__nbr_reserve(&t, 1, 64), 0);
    uint32_t room = t.room;
    assert_int_equal(dr__nbr_add_reserved(&t, 100, 1.0f, 64, NULL, NULL), 0);
    assert_int_equal(t.room, room); /* no allocation after the reserve */
    for (int32_t k = 101; k < 148; k++) assert_int_equal(dr__nbr_add(&t, k, 1.0f, 64, NULL), 0);
    assert_int_equal(t.n, 64); /* raised: nothing dropped */
    for (int32_t k = 0; k < 16; k++) assert_true(dr__nbr_get(&t, k) == (float)(k + 1));
    for (int32_t k = 100; k < 148; k++) assert_true(dr__nbr_get(&t, k) == 1.0f);
    assert_int_equal(dr__nbr_add(&t, 500, 1.0f, 8, NULL), 0);
    assert_int_equal(t.n, 6 + 1); /* lowered: 3/4 of 8 kept, then the new one */
    for (int32_t k = 10; k < 16; k++) assert_true(dr__nbr_get(&t, k) == (float)(k + 1) / 2.0f);
    assert_true(dr__nbr_get(&t, 500) == 1.0f);
    dr__nbr_clear(&t);
}

/* Removing keys one by one (a removed item's neighbours forget it) keeps
 * every other entry findable with its weight, and in the dense entries
 * that scoring walks exactly once: random adds and removes
 * against a plain array, over 300 keys (a table of 512 slots) and over 12
 * (16 slots, 3/4 full: runs of probes wrap around its end). */
static void check_removes(int32_t keys, int ops, uint64_t rng) {
    float want[300] = {0};
    dr__nbr_t t = {0};
    for (int op = 0; op < ops; op++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int32_t key = (int32_t)((rng >> 33) % (uint64_t)keys);
        if ((rng >> 20) % 3 == 0) {
            assert_int_equal(dr__nbr_remove(&t, key), want[key] != 0.0f);
            want[key] = 0.0f;
        } else {
            assert_int_equal(dr__nbr_add(&t, key, 1.0f, 1024, NULL), 0);
            want[key] += 1.0f;
        }
        uint32_t n = 0;
        for (int32_t k = 0; k < keys; k++) {
            assert_true(dr__nbr_get(&t, k) == want[k]);
            n += want[k] != 0.0f;
        }
        assert_int_equal(t.n, n);
        /* the walk scoring makes: every live entry once, with its weight */
        float walked[300] = {0};
        for (uint32_t s = 0; s < t.n; s++) {
            int32_t k = t.e[s].key;
            assert_true(k >= 0 && k < keys && walked[k] == 0.0f);
            walked[k] = t.e[s].w;
        }
        for (int32_t k = 0; k < keys; k++) assert_true(walked[k] == want[k]);
    }
    assert_false(dr__nbr_remove(&t, -1));
    dr__nbr_clear(&t);
    assert_false(dr__nbr_remove(&t, 3)); /* an empty table */
}

static void test_remove_keeps_the_rest(void **state) {
    (void)state;
    check_removes(300, 2000, 99);
    for (uint64_t seed = 1; seed <= 50; seed++) check_removes(12, 400, seed);
}

/* A table reserved at its final size and then filled (as a start loads an
 * item's record) is the table grown entry by entry: the same entries, slots
 * and room, and the same index, slot for slot. */
static void test_reserved_table_is_the_grown_one(void **state) {
    (void)state;
    const uint32_t sizes[] = {1, 5, 6, 7, 100, 383, 384, 385, 512}, cap = 512;
    for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
        uint32_t n = sizes[c];
        dr__nbr_t grown = {0}, reserved = {0};
        assert_int_equal(dr__nbr_reserve(&reserved, n, cap), 0);
        for (uint32_t k = 0; k < n; k++) {
            int32_t key = (int32_t)((k * 2654435761u) % 100003u); /* spread, colliding slots */
            float w = 1.0f + (float)(k % 13);
            assert_int_equal(dr__nbr_add(&grown, key, w, cap, NULL), 0);
            assert_int_equal(dr__nbr_add(&reserved, key, w, cap, NULL), 0);
        }
        assert_int_equal(reserved.n, grown.n);
        assert_int_equal(reserved.n_slots, grown.n_slots);
        assert_int_equal(reserved.room, grown.room);
        assert_memory_equal(reserved.e, grown.e, n * sizeof(*grown.e));
        assert_memory_equal(reserved.index, grown.index, grown.n_slots * sizeof(*grown.index));
        dr__nbr_clear(&grown);
        dr__nbr_clear(&reserved);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_exactly_below_cap),
        cmocka_unit_test(test_full_table_keeps_heaviest),
        cmocka_unit_test(test_ties_follow_item_ids),
        cmocka_unit_test(test_tiny_caps),
        cmocka_unit_test(test_cap_changes),
        cmocka_unit_test(test_remove_keeps_the_rest),
        cmocka_unit_test(test_reserved_table_is_the_grown_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
