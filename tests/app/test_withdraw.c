/* test_withdraw.c - the withdrawal's scan of the stored users: it finds
 * exactly the users of the partitions asked for whose last list holds a
 * withdrawn item (or may: a full head of a longer list), on the thread
 * pool while the loop goes on, and a stop can finish it or run it in
 * place; the ledger that keeps an unfinished withdrawal across a crash or
 * a partition's move survives its stored form, and refuses a damaged one
 * (dr_withdraw.h). */
#include "dr_test.h"

#include "dr_err.h"
#include "dr_learner.h"
#include "dr_state.h"
#include "dr_withdraw.h"

#define USERS 60000
#define PARTS 4
#define WITHDRAWN 7
#define DIM 8

/* User u, of partition u % PARTS: every 100th holds item WITHDRAWN in its
 * last list (at position u % 10), every 1000th (when not one of those) a
 * full head of other items; the rest hold other items. */
static bool holds(int64_t u) { return u % 100 == 0; }
static bool full_head(int64_t u) { return u % 1000 == 500; }

typedef struct fixture {
    char dir[512];
    dr_state_t *state;
} fixture_t;

static int setup(void **state) {
    fixture_t *fx = calloc(1, sizeof(*fx));
    char err[512];
    dr_test_tmpdir(fx->dir, sizeof(fx->dir), "withdraw");
    dr_state_conf_t sc;
    dr_state_conf_default(&sc);
    sc.path = fx->dir;
    assert_int_equal(dr_state_open(&fx->state, &sc, err, sizeof(err)), 0);
    dr_state_batch_t *b = dr_state_batch_new();
    for (int64_t id = 1; id <= USERS; id++) {
        dr_user_t *u = dr_user_new(id, DIM);
        u->last_source.partition = (int32_t)(id % PARTS);
        u->last_list_len = full_head(id) ? DR_LAST_LIST : 10;
        for (unsigned i = 0; i < u->last_list_len; i++) u->last_list[i] = 1000 + id % 500 + i;
        if (holds(id)) u->last_list[id % 10] = WITHDRAWN;
        uint8_t *rec;
        size_t len;
        assert_int_equal(dr_user_encode(u, DIM, &rec, &len), 0);
        dr_state_batch_put_user(b, (int32_t)(id % PARTS), id, rec, len);
        free(rec);
        dr_user_free(u);
    }
    assert_int_equal(dr_state_write(fx->state, b, err, sizeof(err)), 0);
    dr_state_batch_free(b);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture_t *fx = *state;
    dr_state_close(fx->state);
    dr_rmtree(fx->dir);
    free(fx);
    return 0;
}

typedef struct seen {
    int calls;
    int err;
    size_t n_found;
    bool wrong;         /* a user found that should not be */
    uint64_t users_read;
    uint64_t ticks_at_end; /* the loop's timer ticks when the callback ran */
    uint64_t ticks;
    bool longer;
} seen_t;

static void on_scanned(void *ctx, const dr_withdraw_result_t *r) {
    seen_t *s = ctx;
    s->calls++;
    s->err = r->err;
    s->n_found = r->n_found;
    s->users_read = r->users_read;
    s->ticks_at_end = s->ticks;
    for (size_t i = 0; i < r->n_found; i++) {
        int64_t u = r->found[i].user_id;
        if (r->found[i].partition != u % PARTS || !r->scanned[u % PARTS] ||
            !(holds(u) || (s->longer && full_head(u))))
            s->wrong = true;
    }
}

/* The users each scan must find among partitions 0..2 (not 3). */
static size_t expected(bool longer) {
    size_t n = 0;
    for (int64_t u = 1; u <= USERS; u++)
        if (u % PARTS != 3 && (holds(u) || (longer && full_head(u)))) n++;
    return n;
}

static const bool three_partitions[DR_INGEST_MAX_PARTITIONS] = {true, true, true};

static void on_tick(uv_timer_t *t) { ((seen_t *)t->data)->ticks++; }

/* Started on the pool, the scan leaves the loop free: a 1 ms timer keeps
 * ticking until its callback runs on the loop thread. */
static void test_scan_on_the_pool(void **state) {
    fixture_t *fx = *state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_withdraw_scan_t *s;
    assert_int_equal(dr_withdraw_scan_new(&s, &loop, fx->state), 0);
    seen_t seen = {0};
    int64_t items[] = {123456, WITHDRAWN};
    assert_int_equal(dr_withdraw_scan_start(s, items, 2, three_partitions, false, on_scanned, &seen), 0);
    assert_true(dr_withdraw_scan_busy(s));
    assert_int_equal(dr_withdraw_scan_start(s, items, 2, three_partitions, false, on_scanned, &seen), DR_EAGAIN);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &seen;
    uv_timer_start(&timer, on_tick, 1, 1);
    while (seen.calls == 0) uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_false(dr_withdraw_scan_busy(s));
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, 0);
    assert_false(seen.wrong);
    assert_int_equal(seen.n_found, expected(false));
    assert_int_equal(seen.users_read, USERS * 3 / 4);
    print_message("scan of %llu stored users: the loop ticked %llu times meanwhile\n",
                  (unsigned long long)seen.users_read, (unsigned long long)seen.ticks_at_end);
    assert_true(seen.ticks_at_end > 0);
    dr_withdraw_scan_free(s);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A stop: the scan under way is waited for and its callback runs at once,
 * never again when the loop gets to the request; a last scan runs in
 * place, here with lists longer than the head kept (every full head may
 * hold the item). */
static void test_finish_and_run_in_place(void **state) {
    fixture_t *fx = *state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_withdraw_scan_t *s;
    assert_int_equal(dr_withdraw_scan_new(&s, &loop, fx->state), 0);
    seen_t first = {0};
    int64_t item = WITHDRAWN;
    assert_int_equal(dr_withdraw_scan_start(s, &item, 1, three_partitions, false, on_scanned, &first), 0);
    dr_withdraw_scan_finish(s);
    assert_int_equal(first.calls, 1);
    assert_int_equal(first.n_found, expected(false));
    assert_false(dr_withdraw_scan_busy(s));
    seen_t last = {.longer = true};
    assert_int_equal(dr_withdraw_scan_run(s, &item, 1, three_partitions, true, on_scanned, &last), 0);
    assert_int_equal(last.calls, 1);
    assert_false(last.wrong);
    assert_int_equal(last.n_found, expected(true));
    uv_run(&loop, UV_RUN_DEFAULT); /* the first scan's request ends: no second callback */
    assert_int_equal(first.calls, 1);
    assert_int_equal(last.calls, 1);
    dr_withdraw_scan_free(s);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A moderation sweep: 20,000 items withdrawn at once, unsorted and with
 * repeats; the scan sorts them (the check is a binary search per list
 * item: the linear one took 18 s for 100k users against 10,000 items,
 * bench/withdraw.sh) and finds exactly the same users. */
static void test_many_items_at_once(void **state) {
    fixture_t *fx = *state;
    enum { N = 20000 };
    int64_t *items = malloc(N * sizeof(*items));
    for (int i = 0; i < N; i++) items[i] = 5000000 + (int64_t)((i * 7919) % (N / 2)); /* each twice */
    items[N / 3] = WITHDRAWN;
    uv_loop_t loop;
    uv_loop_init(&loop);
    dr_withdraw_scan_t *s;
    assert_int_equal(dr_withdraw_scan_new(&s, &loop, fx->state), 0);
    seen_t seen = {0};
    assert_int_equal(dr_withdraw_scan_run(s, items, N, three_partitions, false, on_scanned, &seen), 0);
    assert_int_equal(seen.calls, 1);
    assert_false(seen.wrong);
    assert_int_equal(seen.n_found, expected(false));
    assert_int_equal(dr_withdraw_sort_items(items, N), N / 2 + 1); /* the repeats go, WITHDRAWN stays */
    for (int i = 1; i < N / 2 + 1; i++) assert_true(items[i - 1] < items[i]);
    dr_withdraw_scan_free(s);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(items);
}

/* The list check the pipeline applies to cached users and to each user a
 * scan found (items sorted). */
static void test_list_may_hold(void **state) {
    (void)state;
    int64_t list[DR_LAST_LIST];
    for (int i = 0; i < DR_LAST_LIST; i++) list[i] = 100 + i;
    int64_t items[] = {5, 107};
    assert_true(dr_withdraw_list_may_hold(list, 10, items, 2, false));
    assert_false(dr_withdraw_list_may_hold(list, 7, items, 2, false)); /* 107 is the 8th */
    assert_false(dr_withdraw_list_may_hold(list, 0, items, 2, true));
    int64_t other = 5;
    assert_false(dr_withdraw_list_may_hold(list, DR_LAST_LIST, &other, 1, false));
    assert_true(dr_withdraw_list_may_hold(list, DR_LAST_LIST, &other, 1, true)); /* the rest is unknown */
    assert_false(dr_withdraw_list_may_hold(list, DR_LAST_LIST - 1, &other, 1, true));
}

/* Stored and read back, the ledger is the same; forgetting drops the
 * withdrawals before the time given, and only those. */
static void test_ledger_round_trip(void **state) {
    (void)state;
    dr_withdraw_ledger_t l = {0}, back = {0};
    for (int64_t i = 0; i < 100; i++)
        assert_int_equal(dr_withdraw_ledger_add(&l, 1000 + i, 5000 + 10 * i, DR_INGEST_MAX_PARTITIONS), 0);
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++) assert_int_equal(l.unchecked[i], 1);
    l.unchecked[0] = l.unchecked[7] = l.unchecked[DR_INGEST_MAX_PARTITIONS - 1] = 0; /* served */
    uint8_t *val;
    size_t len;
    assert_int_equal(dr_withdraw_ledger_encode(&l, &val, &len), 0);
    assert_int_equal(dr_withdraw_ledger_decode(&back, val, len), 0);
    free(val);
    assert_memory_equal(back.unchecked, l.unchecked, sizeof(l.unchecked));
    assert_int_equal(back.n_recent, 100);
    assert_memory_equal(back.recent, l.recent, 100 * sizeof(*l.recent));
    assert_int_equal(dr_withdraw_ledger_forget(&back, 5000 + 10 * 40), 40); /* before, not at */
    assert_int_equal(back.n_recent, 60);
    assert_int_equal(back.recent[0].item_id, 1040);
    assert_int_equal(dr_withdraw_ledger_forget(&back, 0), 0);
    assert_int_equal(dr_withdraw_ledger_forget(&back, INT64_MAX), 60);
    assert_int_equal(back.n_recent, 0);
    dr_withdraw_ledger_free(&back);
    assert_int_equal(dr_withdraw_ledger_add(&back, 9, 1, 12), 0); /* the topic's 12 partitions only */
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++) assert_int_equal(back.unchecked[i], i < 12);
    dr_withdraw_ledger_free(&back);
    dr_withdraw_ledger_free(&l);
    assert_null(l.recent);
}

/* A moderation sweep: 300,000 withdrawals within one millisecond. Bounded
 * by count, the ledger keeps exactly the newest (a bound by time alone
 * could not split them), and its stored form reads back whole. */
static void test_ledger_keeps_the_newest(void **state) {
    (void)state;
    dr_withdraw_ledger_t l = {0}, back = {0};
    for (int64_t i = 0; i < 300000; i++) assert_int_equal(dr_withdraw_ledger_add(&l, i, 7, 12), 0);
    assert_int_equal(dr_withdraw_ledger_forget(&l, 7), 0);
    assert_int_equal(dr_withdraw_ledger_keep_newest(&l, 262144), 300000 - 262144);
    assert_int_equal(l.n_recent, 262144);
    assert_int_equal(l.recent[0].item_id, 300000 - 262144);
    assert_int_equal(l.recent[262143].item_id, 299999);
    assert_int_equal(dr_withdraw_ledger_keep_newest(&l, 262144), 0);
    uint8_t *val;
    size_t len;
    assert_int_equal(dr_withdraw_ledger_encode(&l, &val, &len), 0);
    assert_int_equal(len, 1 + DR_INGEST_MAX_PARTITIONS / 8 + 4 + 262144 * 16); /* the 4 MiB stored */
    assert_int_equal(dr_withdraw_ledger_decode(&back, val, len), 0);
    assert_int_equal(back.n_recent, 262144);
    assert_memory_equal(back.recent, l.recent, 262144 * sizeof(*l.recent));
    free(val);
    dr_withdraw_ledger_free(&back);
    dr_withdraw_ledger_free(&l);
}

/* Another layout, a short record, a count the record cannot hold (no
 * allocation of what it claims) or bytes past the end: DR_ECORRUPT, and
 * the ledger keeps what it held. */
static void test_ledger_refuses_damaged_records(void **state) {
    (void)state;
    dr_withdraw_ledger_t l = {0}, kept = {0};
    assert_int_equal(dr_withdraw_ledger_add(&l, 42, 7, 8), 0);
    assert_int_equal(dr_withdraw_ledger_add(&l, 43, 8, 8), 0);
    assert_int_equal(dr_withdraw_ledger_add(&kept, 5, 1, 8), 0);
    kept.unchecked[3] = 0;
    uint8_t *val;
    size_t len;
    assert_int_equal(dr_withdraw_ledger_encode(&l, &val, &len), 0);
    uint8_t *bad = malloc(len + 1);
    memcpy(bad, val, len);
    bad[0] = 2; /* another version */
    assert_int_equal(dr_withdraw_ledger_decode(&kept, bad, len), DR_ECORRUPT);
    assert_int_equal(dr_withdraw_ledger_decode(&kept, val, len - 1), DR_ECORRUPT);
    assert_int_equal(dr_withdraw_ledger_decode(&kept, val, 10), DR_ECORRUPT);
    memcpy(bad, val, len);
    bad[len] = 0;
    assert_int_equal(dr_withdraw_ledger_decode(&kept, bad, len + 1), DR_ECORRUPT);
    uint32_t huge = 0xffffffffu;
    memcpy(bad + 1 + DR_INGEST_MAX_PARTITIONS / 8, &huge, 4);
    assert_int_equal(dr_withdraw_ledger_decode(&kept, bad, len), DR_ECORRUPT);
    assert_int_equal(kept.n_recent, 1);
    assert_int_equal(kept.recent[0].item_id, 5);
    assert_int_equal(kept.unchecked[3], 0);
    assert_int_equal(kept.unchecked[4], 1);
    free(bad);
    free(val);
    dr_withdraw_ledger_free(&kept);
    dr_withdraw_ledger_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scan_on_the_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_and_run_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_items_at_once, setup, teardown),
        cmocka_unit_test(test_list_may_hold),
        cmocka_unit_test(test_ledger_round_trip),
        cmocka_unit_test(test_ledger_refuses_damaged_records),
        cmocka_unit_test(test_ledger_keeps_the_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
