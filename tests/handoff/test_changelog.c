/* test_changelog.c - the changelog a partition's users move with
 * (handoff/dr_handoff.h), against the embedded broker and a real RocksDB
 * store: what a restore takes (records up to the last marker, tombstones),
 * what it leaves (records after it, reported as orphans), when it replaces
 * the store and when it reads only what follows the store's position, and
 * what it fences off (a former owner's writes after a new owner's claim);
 * and a standby replica that keeps the partitions its instance does not own
 * up to their changelogs. */
#include "dr_test.h"

#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "dr_embedded.h"
#include "dr_err.h"
#include "dr_handoff.h"
#include "dr_state.h"

#define TOPIC "ev.changelog"
#define EVENTS "ev"
#define PART 1

typedef struct fixture {
    dr_embedded_t *broker;
    rd_kafka_t *producer;
    dr_changelog_t *log;
    const char *keys[1], *values[1];
    char dir[128];
    dr_state_t *st;
} fixture_t;

static int setup_brokers(void **state, int brokers) {
    fixture_t *f = calloc(1, sizeof(*f));
    char err[512];
    assert_int_equal(dr_embedded_new(&f->broker, brokers, err, sizeof(err)), 0);
    assert_int_equal(dr_embedded_create_topic(f->broker, TOPIC, 2, err, sizeof(err)), 0);
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(kc, "bootstrap.servers", dr_embedded_bootstraps(f->broker), err, sizeof(err)), 0);
    rd_kafka_conf_set(kc, "linger.ms", "0", err, sizeof(err));
    f->producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    assert_non_null(f->producer);
    f->keys[0] = "bootstrap.servers";
    f->values[0] = dr_embedded_bootstraps(f->broker);
    assert_int_equal(dr_changelog_new(&f->log, f->producer, TOPIC, f->keys, f->values, 1, err, sizeof(err)), 0);
    dr_test_tmpdir(f->dir, sizeof(f->dir), "changelog");
    dr_state_conf_t sc;
    dr_state_conf_default(&sc);
    sc.path = f->dir;
    sc.block_cache_mb = 8;
    assert_int_equal(dr_state_open(&f->st, &sc, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int setup(void **state) { return setup_brokers(state, 1); }

/* With every broker down librdkafka says so at once: the case that hung is
 * a leader down while another broker answers. */
static int setup_two_brokers(void **state) { return setup_brokers(state, 2); }

static int teardown(void **state) {
    fixture_t *f = *state;
    dr_state_close(f->st);
    dr_changelog_free(f->log);
    rd_kafka_destroy(f->producer);
    dr_embedded_free(f->broker);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* put/mark as a writer of epoch 0 (one from before epochs), put_as/mark_as
 * as the owner of the given epoch */
static void put_as(fixture_t *f, int64_t epoch, int64_t user, const char *rec) {
    assert_int_equal(dr_changelog_put(f->log, PART, epoch, user, rec, rec ? strlen(rec) : 0, NULL, 1000), 0);
}
static void mark_as(fixture_t *f, int64_t epoch, int64_t next) {
    assert_int_equal(dr_changelog_mark(f->log, PART, epoch, next, NULL, 1000), 0);
}
static void put(fixture_t *f, int64_t user, const char *rec) { put_as(f, 0, user, rec); }
static void mark(fixture_t *f, int64_t next) { mark_as(f, 0, next); }
static void flush(fixture_t *f) { assert_int_equal(rd_kafka_flush(f->producer, 5000), 0); }

static void expect_user(fixture_t *f, int64_t user, const char *want) {
    uint8_t *rec = NULL;
    size_t len = 0;
    int rc = dr_state_get_user(f->st, PART, user, &rec, &len);
    if (!want) {
        assert_int_equal(rc, DR_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(rec, want, len);
    free(rec);
}

static int64_t stored(fixture_t *f, const char *topic) {
    int64_t next = -1;
    return dr_state_get_offset(f->st, topic, PART, &next) == 0 ? next : -1;
}

/* Claim: a restore whose changelog leader does not answer fails within its
 * timeout, saying so, and leaves the store as it was. It used to wait for
 * as long as the leader was down, on the loop thread: librdkafka 2.0.2's
 * rd_kafka_query_watermark_offsets ignores its timeout then (librdkafka
 * issue #2588; docs/RELIABILITY.md). */
static void test_restore_with_the_leader_down(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    rd_kafka_mock_cluster_t *mock = dr_embedded_mock(f->broker);
    assert_int_equal(rd_kafka_mock_partition_set_leader(mock, TOPIC, PART, 2), 0);
    put(f, 1, "a1");
    mark(f, 10);
    flush(f);
    assert_int_equal(rd_kafka_mock_broker_set_down(mock, 2), 0); /* the leader; broker 1 answers */
    dr_restore_t r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, -1, -1, 0, 1000, &r, err, sizeof(err)), DR_EKAFKA);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "restore with the leader down: \"%s\" after %.2f s (timeout 1 s)\n", err, took);
    assert_true(took < 5.0);
    assert_non_null(strstr(err, "the changelog ev.changelog [1]: "));
    expect_user(f, 1, NULL);
    assert_int_equal(stored(f, EVENTS), -1);
    dr_restore_clear(&r);
    assert_int_equal(rd_kafka_mock_broker_set_up(mock, 2), 0);
}

/* Claim: an empty store takes the changelog's state at its last marker:
 * the newest record of each user, tombstones delete, records after the
 * marker are left out and named as orphans; the marker's events offset and
 * the changelog position after it are stored with the users. */
static void test_restore_into_empty_store(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    put(f, 1, "a1");
    put(f, 2, "b1");
    mark(f, 10);              /* changelog offsets 0-2 */
    put(f, 1, "a2");
    put(f, 2, NULL);          /* user 2 erased */
    put(f, 3, "c1");
    mark(f, 25);              /* offsets 3-6 */
    put(f, 3, "c2");          /* an unfinished commit */
    put(f, 4, "d1");
    flush(f);
    dr_restore_t r;
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, -1, -1, 0, 5000, &r, err, sizeof(err)), 0);
    assert_true(r.restored);
    assert_false(r.incremental);
    assert_int_equal(r.marker_offset, 25);
    assert_int_equal(r.marker_pos, 7);
    assert_int_equal(r.records, 9);
    assert_int_equal(r.n_orphans, 2);
    assert_int_equal(r.orphans[0], 3);
    assert_int_equal(r.orphans[1], 4);
    expect_user(f, 1, "a2");
    expect_user(f, 2, NULL);
    expect_user(f, 3, "c1");
    expect_user(f, 4, NULL);
    assert_int_equal(stored(f, EVENTS), 25);
    assert_int_equal(stored(f, TOPIC), 7);
    dr_restore_clear(&r);
}

/* Claim: a store at a changelog position reads only what follows it: a
 * restart with nothing new reads nothing; a newer marker's records are
 * applied on top (the store's other users kept); records after the last
 * marker are orphans and not applied. */
static void test_incremental_from_stored_position(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    put(f, 1, "a1");
    put(f, 2, "b1");
    mark(f, 10);
    flush(f);
    dr_restore_t r;
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, -1, -1, 0, 5000, &r, err, sizeof(err)), 0);
    dr_restore_clear(&r);
    assert_int_equal(stored(f, TOPIC), 3);

    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, 10, 3, 0, 5000, &r, err, sizeof(err)), 0);
    assert_true(r.incremental);
    assert_false(r.restored);
    assert_int_equal(r.records, 0);
    dr_restore_clear(&r);

    put(f, 2, "b2");          /* another owner's commit */
    mark(f, 40);
    put(f, 1, "a-orphan");
    flush(f);
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, 10, 3, 0, 5000, &r, err, sizeof(err)), 0);
    assert_true(r.incremental);
    assert_true(r.restored);
    assert_int_equal(r.records, 3);
    assert_int_equal(r.marker_offset, 40);
    assert_int_equal(r.n_orphans, 1);
    expect_user(f, 1, "a1");
    expect_user(f, 2, "b2");
    assert_int_equal(stored(f, EVENTS), 40);
    assert_int_equal(stored(f, TOPIC), 5);
    dr_restore_clear(&r);
}

/* Claim: without a usable position, a store at or ahead of the changelog's
 * last marker is left as it is; a store behind it is replaced: users the
 * changelog does not hold are dropped, not merged. */
static void test_full_read_keeps_or_replaces(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    dr_state_batch_t *b = dr_state_batch_new();
    dr_state_batch_put_user(b, PART, 7, "local7", 6);
    dr_state_batch_put_user(b, PART, 1, "local1", 6);
    dr_state_batch_put_user(b, 0, 7, "other-partition", 15);
    dr_state_batch_put_offset(b, EVENTS, PART, 30);
    assert_int_equal(dr_state_write(f->st, b, err, sizeof(err)), 0);
    dr_state_batch_free(b);
    put(f, 1, "a1");
    mark(f, 20);
    flush(f);
    dr_restore_t r;
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, 30, -1, 0, 5000, &r, err, sizeof(err)), 0);
    assert_false(r.restored);
    assert_int_equal(r.marker_offset, 20);
    expect_user(f, 1, "local1");
    dr_restore_clear(&r);

    put(f, 1, "a2");
    mark(f, 50);
    flush(f);
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, 30, -1, 0, 5000, &r, err, sizeof(err)), 0);
    assert_true(r.restored);
    assert_int_equal(r.records, 8); /* both reads count */
    expect_user(f, 1, "a2");
    expect_user(f, 7, NULL);
    uint8_t *rec;
    size_t len;
    assert_int_equal(dr_state_get_user(f->st, 0, 7, &rec, &len), 0); /* another partition: untouched */
    free(rec);
    assert_int_equal(stored(f, EVENTS), 50);
    dr_restore_clear(&r);
}

/* Claim: fencing. A former owner (epoch 100) that goes on writing after the
 * new owner (epoch 200) claimed the partition (a zombie, paused past its
 * session timeout) changes no restore: not a fresh store's, not one read
 * on from the old owner's position, not one read on from the new owner's.
 * The old owner's unfinished commit before the claim is dropped too. */
static void test_zombie_writes_fenced(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    put_as(f, 100, 1, "a1");
    put_as(f, 100, 2, "b1");
    mark_as(f, 100, 10);           /* offsets 0-2: A's last full commit */
    put_as(f, 100, 4, "d-unfinished");
    mark_as(f, 200, 10);           /* 3-4: B's claim */
    put_as(f, 100, 1, "a-zombie");
    put_as(f, 100, 3, "c-zombie");
    mark_as(f, 100, 15);           /* 5-7: A has not noticed yet */
    put_as(f, 200, 2, "b2");
    mark_as(f, 200, 20);           /* 8-9 */
    put_as(f, 100, 2, "b-zombie"); /* 10 */
    flush(f);
    dr_restore_t r;
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, -1, -1, 0, 5000, &r, err, sizeof(err)), 0);
    assert_true(r.restored);
    assert_int_equal(r.marker_offset, 20);
    assert_int_equal(r.marker_pos, 10);
    assert_int_equal(r.epoch, 200);
    assert_int_equal(r.fenced, 5);
    assert_int_equal(r.n_orphans, 0);
    expect_user(f, 1, "a1");
    expect_user(f, 2, "b2");
    expect_user(f, 3, NULL);
    expect_user(f, 4, NULL);
    int64_t pos, epoch;
    dr_changelog_stored_position(f->log, f->st, PART, &pos, &epoch);
    assert_int_equal(pos, 10);
    assert_int_equal(epoch, 200);
    dr_restore_clear(&r);

    /* A's store, read on from its last marker under its own epoch */
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, 10, 3, 100, 5000, &r, err, sizeof(err)), 0);
    assert_true(r.incremental);
    assert_int_equal(r.marker_offset, 20);
    assert_int_equal(r.fenced, 5);
    expect_user(f, 1, "a1");
    expect_user(f, 2, "b2");
    expect_user(f, 3, NULL);
    dr_restore_clear(&r);

    /* B's store, read on from its claim: A's later writes stay out */
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, 10, 5, 200, 5000, &r, err, sizeof(err)), 0);
    assert_int_equal(r.marker_offset, 20);
    assert_int_equal(r.epoch, 200);
    assert_int_equal(r.fenced, 4);
    expect_user(f, 1, "a1");
    expect_user(f, 3, NULL);
    dr_restore_clear(&r);

    /* a new owner's epoch is above every epoch read, and at least the clock */
    assert_int_equal(dr_changelog_next_epoch(INT64_C(1) << 62), (INT64_C(1) << 62) + 1);
    assert_int_equal(dr_changelog_next_epoch(INT64_MAX), INT64_MAX); /* no overflow (UBSan) */
    assert_true(dr_changelog_next_epoch(200) > INT64_C(1700000000) * 1000000);
}

/* Waits (up to 20 s) until the store's position in the changelog is pos. */
static void wait_position(fixture_t *f, int64_t pos) {
    for (int i = 0; i < 2000 && stored(f, TOPIC) != pos; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    assert_int_equal(stored(f, TOPIC), pos);
}

/* Claim: a standby reads nothing before it begins; then it keeps the store's
 * copy of a partition its instance does not own at the changelog's last
 * marker (not what follows it), commit after commit, so that a restore on
 * assignment reads nothing; it leaves a partition alone while owned, says
 * whether it wrote it since it was released, and takes it up again after;
 * reads cut short by a take leave a store the next round completes. */
static void test_standby_keeps_partitions_warm(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    assert_int_equal(dr_embedded_create_topic(f->broker, EVENTS, 2, err, sizeof(err)), 0);
    put_as(f, 100, 1, "a1");
    put_as(f, 100, 2, "b1");
    mark_as(f, 100, 10);      /* offsets 0-2 */
    put_as(f, 100, 3, "c-unfinished");
    flush(f);
    dr_standby_t *sb;
    assert_int_equal(dr_standby_new(&sb, f->st, f->producer, TOPIC, EVENTS, 20, 5000, f->keys, f->values, 1,
                                    err, sizeof(err)), 0);
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    assert_int_equal(stored(f, TOPIC), -1); /* not begun: nothing read */
    assert_false(dr_standby_take(sb, 0)); /* this instance owns partition 0 */
    dr_standby_begin(sb);
    wait_position(f, 3);
    assert_int_equal(stored(f, EVENTS), 10);
    expect_user(f, 1, "a1");
    expect_user(f, 3, NULL); /* after the marker: not yet */

    put_as(f, 100, 1, "a2");  /* 4: the unfinished commit goes on */
    mark_as(f, 100, 20);      /* 5 */
    flush(f);
    wait_position(f, 6);
    expect_user(f, 1, "a2");
    expect_user(f, 3, "c-unfinished");
    dr_standby_stats_t ss;
    dr_standby_stats(sb, &ss);
    assert_int_equal(ss.partitions, 1);
    assert_int_equal(ss.behind, 0);
    assert_int_equal(ss.users, 4);
    assert_int_equal(ss.failures, 0);

    /* assigned here: the store is where the changelog is, nothing to read */
    assert_true(dr_standby_take(sb, PART));
    int64_t pos, epoch;
    dr_changelog_stored_position(f->log, f->st, PART, &pos, &epoch);
    assert_int_equal(epoch, 100);
    dr_restore_t r;
    assert_int_equal(dr_changelog_restore(f->log, f->st, EVENTS, PART, stored(f, EVENTS), pos, epoch, 5000, &r,
                                          err, sizeof(err)), 0);
    assert_true(r.incremental);
    assert_int_equal(r.records, 0);
    dr_restore_clear(&r);
    put_as(f, 300, 2, "b-owned"); /* 6-7: written by this instance while it owns it */
    mark_as(f, 300, 30);
    flush(f);
    nanosleep(&(struct timespec){0, 200000000}, NULL);
    expect_user(f, 2, "b1");      /* the standby left it alone */
    assert_false(dr_standby_take(sb, PART));

    /* released (in a rebalance that takes it back and forth): kept warm again */
    for (int i = 0; i < 20; i++) {
        dr_standby_release(sb, PART);
        nanosleep(&(struct timespec){0, 1000000 * (i % 5)}, NULL);
        dr_standby_take(sb, PART);
    }
    dr_standby_release(sb, PART);
    wait_position(f, 8);
    expect_user(f, 2, "b-owned");
    assert_int_equal(stored(f, EVENTS), 30);
    dr_standby_stats(sb, &ss);
    assert_int_equal(ss.failures, 0);
    dr_standby_free(sb);
}

/* Claim: a store ahead of the changelog with no position in it (this
 * instance lost the partition after applying events the new owner has not
 * reached yet) is kept by the standby as a restore keeps it, and read whole
 * only once in STANDBY_FULL_READ_EVERY_S, not every round: until the owner
 * passes it each read would be the whole partition for nothing. A take and
 * a release let the next round read it again. */
static void test_standby_reads_a_store_ahead_once(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    assert_int_equal(dr_embedded_create_topic(f->broker, EVENTS, 2, err, sizeof(err)), 0);
    dr_state_batch_t *b = dr_state_batch_new();
    dr_state_batch_put_user(b, PART, 1, "zombie", 6);
    dr_state_batch_put_offset(b, EVENTS, PART, 100);
    assert_int_equal(dr_state_write(f->st, b, err, sizeof(err)), 0);
    dr_state_batch_free(b);
    put_as(f, 100, 1, "a1");
    mark_as(f, 100, 10); /* the owner is behind the store: offset 10 < 100 */
    flush(f);
    dr_standby_t *sb;
    assert_int_equal(dr_standby_new(&sb, f->st, f->producer, TOPIC, EVENTS, 20, 5000, f->keys, f->values, 1,
                                    err, sizeof(err)), 0);
    dr_standby_take(sb, 0);
    dr_standby_begin(sb);
    dr_standby_stats_t ss = {0};
    for (int i = 0; i < 500 && ss.records < 2; i++) {
        nanosleep(&(struct timespec){0, 10000000}, NULL);
        dr_standby_stats(sb, &ss);
    }
    assert_int_equal(ss.records, 2);
    nanosleep(&(struct timespec){0, 300000000}, NULL); /* ~15 rounds */
    dr_standby_stats(sb, &ss);
    assert_int_equal(ss.records, 2);
    assert_true(ss.rounds >= 5);
    expect_user(f, 1, "zombie");
    assert_int_equal(stored(f, EVENTS), 100);
    dr_standby_take(sb, PART);
    dr_standby_release(sb, PART);
    for (int i = 0; i < 500 && ss.records < 4; i++) {
        nanosleep(&(struct timespec){0, 10000000}, NULL);
        dr_standby_stats(sb, &ss);
    }
    assert_int_equal(ss.records, 4);
    assert_int_equal(ss.failures, 0);
    dr_standby_free(sb);
}

/* Claim: the check names what to create when the changelog is missing or
 * has fewer partitions than the events topic. */
static void test_check_topic(void **state) {
    fixture_t *f = *state;
    char err[512] = "";
    assert_int_equal(dr_embedded_create_topic(f->broker, "big", 4, err, sizeof(err)), 0);
    assert_int_equal(dr_changelog_check(f->log, "big", 5000, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "fewer partitions"));
    assert_int_equal(dr_embedded_create_topic(f->broker, "two", 2, err, sizeof(err)), 0);
    assert_int_equal(dr_changelog_check(f->log, "two", 5000, err, sizeof(err)), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restore_into_empty_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_with_the_leader_down, setup_two_brokers, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_from_stored_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_read_keeps_or_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zombie_writes_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standby_keeps_partitions_warm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standby_reads_a_store_ahead_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_topic, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
