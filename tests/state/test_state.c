/* test_state.c - cmocka tests for state/: the RocksDB store (atomic batches,
 * offsets, ordered scans, read-only inspection, reopen) and the hot-user
 * cache (CLOCK eviction of clean users, dirty drain, a randomized model check). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dr_err.h"
#include <rocksdb/c.h>

#include "dr_state.h"

/* Until learner/model.c links into this test (build with -DDR_HAVE_LEARNER
 * then), stand-ins with the documented allocation: one malloc of
 * dr_user_size(dim), released by dr_user_free. */
#ifndef DR_HAVE_LEARNER
size_t dr_user_size(int dim) {
    return sizeof(dr_user_t) + (size_t)dim * sizeof(float);
}

dr_user_t *dr_user_new(int64_t user_id, int dim) {
    dr_user_t *u = calloc(1, dr_user_size(dim));

    if (u)
        u->user_id = user_id;
    return u;
}

void dr_user_free(dr_user_t *u) {
    free(u);
}
#endif

#define DIM 4

/* --- fixtures: one fresh directory per test ------------------------------ */

typedef struct fixture {
    char dir[64];
    char db[96];
} fixture_t;

static uint64_t log_bytes; /* add_log_bytes' sum */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup_dir(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/dr_state_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "%s/db", f->dir);
    *state = f;
    return 0;
}

static int teardown_dir(void **state) {
    fixture_t *f = *state;
    int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    free(f);
    return rc;
}

static dr_state_t *open_store(const fixture_t *f, bool read_only) {
    dr_state_conf_t conf;
    dr_state_t *st = NULL;
    char err[256] = "";

    dr_state_conf_default(&conf);
    conf.path = f->db;
    conf.read_only = read_only;
    conf.block_cache_mb = 8;
    if (dr_state_open(&st, &conf, err, sizeof(err)) != 0)
        fail_msg("open %s: %s", f->db, err);
    return st;
}

static void expect_user(dr_state_t *st, int64_t id, const char *want) {
    uint8_t *rec = NULL;
    size_t len = 0;

    assert_int_equal(dr_state_get_user(st, 0, id, &rec, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(rec, want, len);
    free(rec);
}

static void expect_offset(dr_state_t *st, const char *topic, int32_t p, int64_t want) {
    int64_t got = -1;

    assert_int_equal(dr_state_get_offset(st, topic, p, &got), 0);
    assert_int_equal(got, want);
}

static void write_ok(dr_state_t *st, dr_state_batch_t *b) {
    char err[256] = "";

    if (dr_state_write(st, b, err, sizeof(err)) != 0)
        fail_msg("write: %s", err);
}

/* --- store --------------------------------------------------------------- */

/* Users (one written in place: room for more than it takes, the room after
 * it reused), an item, a meta key and an offset: six entries. */
static void put_six(dr_state_batch_t *b) {
    dr_state_batch_put_user(b, 0, 7, "user7", 5);
    dr_state_batch_put_item(b, 42, "item42", 6);
    dr_state_batch_put_meta(b, "globals", "G", 1);
    dr_state_batch_put_offset(b, "events", 3, 1001);
    uint8_t *room = dr_state_batch_user_room(b, 0, 8, 4096);
    assert_non_null(room);
    memcpy(room, "user8", 5);
    dr_state_batch_user_done(b, 5);
    dr_state_batch_put_user(b, 0, 9, "user9", 5);
    assert_int_equal(dr_state_batch_count(b), 6);
}

/* Claim: users, items and offsets put into one batch are all stored by one
 * write and are all visible after the store is closed and reopened; a user
 * written in place (user_room, user_done) is stored as one put is, and a
 * batch that could not take one is refused as a whole. */
static void test_batch_all_visible_after_reopen(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    uint8_t *val;
    size_t len;

    put_six(b);
    assert_null(dr_state_batch_user_room(b, -1, 10, 16)); /* no partition: the batch fails */
    assert_int_equal(dr_state_batch_count(b), 6);
    char err[256] = "";
    assert_int_not_equal(dr_state_write(st, b, err, sizeof(err)), 0);
    dr_state_batch_clear(b, 1 << 20);
    put_six(b);
    write_ok(st, b);
    dr_state_batch_free(b);
    dr_state_close(st);

    st = open_store(f, false);
    expect_user(st, 7, "user7");
    expect_user(st, 8, "user8");
    expect_user(st, 9, "user9");
    expect_offset(st, "events", 3, 1001);
    assert_int_equal(dr_state_get_meta(st, "globals", &val, &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(val[0], 'G');
    free(val);
    dr_state_close(st);
}

/* Claim: a write that RocksDB refuses (here: a read-only store) returns
 * DR_ESTORE with RocksDB's message in errstr and stores nothing. */
static void test_failed_write_stores_nothing(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false), *ro;
    dr_state_batch_t *b = dr_state_batch_new();
    char err[256] = "";
    uint8_t *rec;
    size_t len;
    int64_t off;

    dr_state_close(st); /* creates the store */
    ro = open_store(f, true);
    dr_state_batch_put_user(b, 0, 1, "u", 1);
    dr_state_batch_put_offset(b, "events", 0, 5);
    assert_int_equal(dr_state_write(ro, b, err, sizeof(err)), DR_ESTORE);
    assert_non_null(strstr(err, "read only"));
    dr_state_close(ro);

    st = open_store(f, false);
    assert_int_equal(dr_state_get_user(st, 0, 1, &rec, &len), DR_ENOTFOUND);
    assert_int_equal(dr_state_get_offset(st, "events", 0, &off), DR_ENOTFOUND);
    dr_state_batch_free(b);
    dr_state_close(st);
}

/* Claim: a batch with an invalid operation (a NULL meta key) fails as a
 * whole with DR_EINVAL: the valid operations before it are not stored. */
static void test_invalid_batch_stores_nothing(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    char err[256] = "";
    uint8_t *rec;
    size_t len;

    dr_state_batch_put_user(b, 0, 1, "u", 1);
    dr_state_batch_put_meta(b, NULL, "x", 1);
    assert_int_equal(dr_state_write(st, b, err, sizeof(err)), DR_EINVAL);
    assert_true(err[0] != '\0');
    assert_int_equal(dr_state_get_user(st, 0, 1, &rec, &len), DR_ENOTFOUND);
    dr_state_batch_free(b);
    dr_state_close(st);
}

/* Claim: offsets round-trip per topic and partition (the last write wins),
 * and an unknown topic or partition is DR_ENOTFOUND. */
static void test_offsets_round_trip(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    int64_t off;

    dr_state_batch_put_offset(b, "events", 0, 10);
    dr_state_batch_put_offset(b, "events", 1, 20);
    dr_state_batch_put_offset(b, "items", 0, 30);
    dr_state_batch_put_offset(b, "events", 0, 11);
    dr_state_batch_put_offset(b, "events", 2, INT64_MAX);
    write_ok(st, b);
    expect_offset(st, "events", 0, 11);
    expect_offset(st, "events", 1, 20);
    expect_offset(st, "events", 2, INT64_MAX);
    expect_offset(st, "items", 0, 30);
    assert_int_equal(dr_state_get_offset(st, "events", 3, &off), DR_ENOTFOUND);
    assert_int_equal(dr_state_get_offset(st, "other", 0, &off), DR_ENOTFOUND);
    assert_int_equal(dr_state_get_offset(st, "event", 0, &off), DR_ENOTFOUND);
    dr_state_batch_free(b);
    dr_state_close(st);
}

typedef struct offsets_seen {
    char line[8][64];
    int n;
} offsets_seen_t;

static int offset_fn(void *ctx, const char *topic, int32_t partition, int64_t next) {
    offsets_seen_t *s = ctx;

    assert_true(s->n < 8);
    snprintf(s->line[s->n++], sizeof(s->line[0]), "%s %d %lld", topic, (int)partition,
             (long long)next);
    return 0;
}

/* Claim: for_each_offset lists every stored offset (what `driftrec inspect
 * offsets` prints: where the pipeline resumes), topics with dots and
 * dashes included, and nothing else of the meta column family; a malformed
 * offset entry is DR_ECORRUPT. */
static void test_for_each_offset(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    offsets_seen_t seen = {0};

    dr_state_batch_put_offset(b, "feed.events-v2", 10, 7);
    dr_state_batch_put_offset(b, "feed.events-v2", 2, 5);
    dr_state_batch_put_offset(b, "items", 0, 30);
    dr_state_batch_put_meta(b, "globals", "G", 1);
    dr_state_batch_put_meta(b, "other", "x", 1);
    write_ok(st, b);
    dr_state_batch_free(b);
    assert_int_equal(dr_state_for_each_offset(st, offset_fn, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.line[0], "feed.events-v2 10 7"); /* key order */
    assert_string_equal(seen.line[1], "feed.events-v2 2 5");
    assert_string_equal(seen.line[2], "items 0 30");

    b = dr_state_batch_new();
    dr_state_batch_put_meta(b, "offset/events/x", "12345678", 8);
    write_ok(st, b);
    dr_state_batch_free(b);
    seen.n = 0;
    assert_int_equal(dr_state_for_each_offset(st, offset_fn, &seen), DR_ECORRUPT);
    dr_state_close(st);
}

/* Claim: with min_free_bytes set, a store is not opened for writing on a
 * filesystem with less free space (DR_ESTORE, the shortfall in errstr, no
 * directory created); read-only opens are not refused. */
static void test_open_refused_when_nearly_full(void **state) {
    fixture_t *f = *state;
    dr_state_conf_t conf;
    dr_state_t *st = NULL;
    char err[256] = "";

    dr_state_conf_default(&conf);
    conf.path = f->db;
    conf.min_free_bytes = UINT64_MAX / 4; /* more than any disk holds */
    assert_int_equal(dr_state_open(&st, &conf, err, sizeof(err)), DR_ESTORE);
    assert_null(st);
    assert_non_null(strstr(err, "nearly full"));
    assert_non_null(strstr(err, "state.min.free.mb"));
    assert_int_equal(access(f->db, F_OK), -1);

    conf.min_free_bytes = 1;
    assert_int_equal(dr_state_open(&st, &conf, err, sizeof(err)), 0);
    dr_state_close(st);
    conf.min_free_bytes = UINT64_MAX / 4;
    conf.read_only = true;
    assert_int_equal(dr_state_open(&st, &conf, err, sizeof(err)), 0);
    dr_state_close(st);
}

typedef struct scan {
    int64_t ids[64];
    size_t n;
    size_t stop_after; /* return 99 once this many were seen (0: never) */
} scan_t;

static int scan_fn(void *ctx, int64_t id, const void *rec, size_t len) {
    scan_t *s = ctx;
    char want[32];

    snprintf(want, sizeof(want), "r%lld", (long long)id);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(rec, want, len);
    s->ids[s->n++] = id;
    return s->n == s->stop_after ? 99 : 0;
}

static int scan_user_fn(void *ctx, int32_t partition, int64_t id, const void *rec, size_t len) {
    assert_int_equal(partition, 0);
    return scan_fn(ctx, id, rec, len);
}

/* Claim: for_each_item and for_each_user visit records in id order (ids
 * across byte boundaries included), and stop at, and return, a non-zero. */
static void test_scans_in_id_order_and_stop(void **state) {
    static const int64_t ids[] = {300, 5,   (int64_t)1 << 40, 256, 0,
                                  255, ((int64_t)1 << 53) - 1, 65536};
    static const int64_t sorted[] = {0, 5, 255, 256, 300, 65536, (int64_t)1 << 40,
                                     ((int64_t)1 << 53) - 1};
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    size_t n = sizeof(ids) / sizeof(ids[0]);
    scan_t s = {0};

    for (size_t i = 0; i < n; i++) {
        char rec[32];

        snprintf(rec, sizeof(rec), "r%lld", (long long)ids[i]);
        dr_state_batch_put_item(b, ids[i], rec, strlen(rec));
        dr_state_batch_put_user(b, 0, ids[i], rec, strlen(rec));
    }
    write_ok(st, b);
    assert_int_equal(dr_state_for_each_item(st, scan_fn, &s), 0);
    assert_int_equal(s.n, n);
    assert_memory_equal(s.ids, sorted, sizeof(sorted));
    memset(&s, 0, sizeof(s));
    assert_int_equal(dr_state_for_each_user(st, scan_user_fn, &s), 0);
    assert_memory_equal(s.ids, sorted, sizeof(sorted));

    memset(&s, 0, sizeof(s));
    s.stop_after = 3;
    assert_int_equal(dr_state_for_each_item(st, scan_fn, &s), 99);
    assert_int_equal(s.n, 3);
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    assert_int_equal(dr_state_for_each_user(st, scan_user_fn, &s), 99);
    assert_int_equal(s.n, 1);
    dr_state_batch_free(b);
    dr_state_close(st);
}


typedef struct part_scan {
    int32_t partitions[16];
    int64_t ids[16];
    size_t n;
} part_scan_t;

static int part_scan_fn(void *ctx, int32_t partition, int64_t id, const void *rec, size_t len) {
    part_scan_t *s = ctx;
    (void)rec;
    (void)len;
    assert_true(s->n < 16);
    s->partitions[s->n] = partition;
    s->ids[s->n++] = id;
    return 0;
}

/* Claim: users are stored per partition: the same id in two partitions is
 * two records; a partition's users are scanned and dropped on their own
 * (the neighbours' keys, partition 0 and 2^31-1 included, untouched); a
 * negative partition is refused and the batch stores nothing. */
static void test_users_by_partition(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    part_scan_t s = {0};
    uint8_t *rec;
    size_t len;

    dr_state_batch_put_user(b, 0, 7, "p0", 2);
    dr_state_batch_put_user(b, 3, 7, "p3", 2);
    dr_state_batch_put_user(b, 3, 1, "p3a", 3);
    dr_state_batch_put_user(b, 4, 2, "p4", 2);
    dr_state_batch_put_user(b, INT32_MAX, 9, "max", 3);
    write_ok(st, b);
    dr_state_batch_free(b);
    assert_int_equal(dr_state_get_user(st, 3, 7, &rec, &len), 0);
    assert_memory_equal(rec, "p3", 2);
    free(rec);
    assert_int_equal(dr_state_get_user(st, 5, 7, &rec, &len), DR_ENOTFOUND);
    assert_int_equal(dr_state_get_user(st, -1, 7, &rec, &len), DR_EINVAL);
    assert_int_equal(dr_state_for_each_partition_user(st, 3, part_scan_fn, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ids[0], 1);
    assert_int_equal(s.ids[1], 7);
    memset(&s, 0, sizeof(s));
    assert_int_equal(dr_state_for_each_partition_user(st, INT32_MAX, part_scan_fn, &s), 0);
    assert_int_equal(s.n, 1);

    b = dr_state_batch_new();
    dr_state_batch_drop_partition(b, 3);
    write_ok(st, b);
    dr_state_batch_free(b);
    memset(&s, 0, sizeof(s));
    assert_int_equal(dr_state_for_each_user(st, part_scan_fn, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.partitions[0], 0);
    assert_int_equal(s.partitions[1], 4);
    assert_int_equal(s.partitions[2], INT32_MAX);

    b = dr_state_batch_new();
    dr_state_batch_put_user(b, 1, 1, "ok", 2);
    dr_state_batch_put_user(b, -2, 1, "bad", 3);
    char err[256];
    assert_int_equal(dr_state_write(st, b, err, sizeof(err)), DR_EINVAL);
    dr_state_batch_free(b);
    assert_int_equal(dr_state_get_user(st, 1, 1, &rec, &len), DR_ENOTFOUND);
    dr_state_close(st);
}

static int legacy_to_partition(void *ctx, int64_t user_id, const void *rec, size_t len,
                               int32_t *partition) {
    (void)ctx;
    (void)rec;
    (void)len;
    *partition = user_id == 66 ? -1 : (int32_t)(user_id % 4);
    return 0;
}

/* Writes users under 8-byte keys, as stores did before users were keyed
 * by partition, with RocksDB itself (the store closed). */
static void put_legacy_users(const char *path, const int64_t *ids, int n) {
    char *err = NULL;
    rocksdb_options_t *o = rocksdb_options_create();
    const char *names[] = {"default", "users", "items", "meta"};
    const rocksdb_options_t *cfo[] = {o, o, o, o};
    rocksdb_column_family_handle_t *cf[4];
    rocksdb_t *db = rocksdb_open_column_families(o, path, 4, names, cfo, cf, &err);
    assert_null(err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    for (int i = 0; i < n; i++) {
        uint8_t key[8];
        for (int k = 0; k < 8; k++) key[k] = (uint8_t)((uint64_t)ids[i] >> (56 - 8 * k));
        rocksdb_put_cf(db, wo, cf[1], (const char *)key, 8, "old", 3, &err);
        assert_null(err);
    }
    rocksdb_writeoptions_destroy(wo);
    for (int i = 0; i < 4; i++) rocksdb_column_family_handle_destroy(cf[i]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

/* Claim: a store written before users were keyed by partition (8-byte
 * keys) is upgraded in place: every user moves to the partition named for
 * it, one the caller cannot place is dropped, and a second upgrade moves
 * nothing. The store is marked upgraded: later starts do not read its
 * users again (each start used to read every user: 11 s at 10M users), as
 * a legacy key put there behind its back shows (nothing looks for it). */
static void test_upgrade_legacy_user_keys(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_close(st);
    int64_t ids[] = {5, 66, 1000};
    put_legacy_users(f->db, ids, 3);

    st = open_store(f, false);
    part_scan_t s = {0};
    assert_int_equal(dr_state_for_each_user(st, part_scan_fn, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.partitions[0], -1);
    uint64_t moved = 99;
    char e[256];
    assert_int_equal(dr_state_upgrade_user_keys(st, legacy_to_partition, NULL, &moved, e, sizeof(e)), 0);
    assert_int_equal(moved, 3);
    memset(&s, 0, sizeof(s));
    assert_int_equal(dr_state_for_each_user(st, part_scan_fn, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.partitions[0], 0); /* 1000 % 4 */
    assert_int_equal(s.ids[0], 1000);
    assert_int_equal(s.partitions[1], 1); /* 5 % 4 */
    assert_int_equal(dr_state_upgrade_user_keys(st, legacy_to_partition, NULL, &moved, e, sizeof(e)), 0);
    assert_int_equal(moved, 0);
    dr_state_close(st);
    int64_t late[] = {7};
    put_legacy_users(f->db, late, 1);
    st = open_store(f, false);
    moved = 99;
    assert_int_equal(dr_state_upgrade_user_keys(st, legacy_to_partition, NULL, &moved, e, sizeof(e)), 0);
    assert_int_equal(moved, 0);
    dr_state_close(st);
}

/* Claim: dr_state_find_user finds a user in whichever partition holds it
 * (the lowest of two; partitions 0 and INT32_MAX included), says which,
 * and DR_ENOTFOUND otherwise; in a store not upgraded yet it finds a user
 * under an 8-byte key too (partition -1). */
static void test_find_user_across_partitions(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_close(st);
    int64_t legacy[] = {42};
    put_legacy_users(f->db, legacy, 1);
    st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    static const int32_t parts[] = {0, 3, 7, INT32_MAX};
    for (int i = 0; i < 4; i++)
        for (int64_t u = 1; u <= 50; u++) {
            char rec[32];
            int n = snprintf(rec, sizeof rec, "p%d-u%lld", (int)parts[i], (long long)(u * 10 + i));
            dr_state_batch_put_user(b, parts[i], u * 10 + i, rec, (size_t)n);
        }
    dr_state_batch_put_user(b, 7, 11, "p7-u11", 6); /* 11 is in partition 3 too */
    write_ok(st, b);
    dr_state_batch_free(b);
    for (int round = 0; round < 2; round++) { /* a store not upgraded yet, then one that is */
        assert_int_equal(dr_state_users_keyed_by_partition(st), round == 1);
        for (int i = 0; i < 4; i++) {
            int64_t u = 7 * 10 + i;
            int32_t p;
            uint8_t *rec;
            size_t len;
            assert_int_equal(dr_state_find_user(st, u, &p, &rec, &len), 0);
            assert_int_equal(p, parts[i]);
            char want[32];
            int n = snprintf(want, sizeof want, "p%d-u%lld", (int)parts[i], (long long)u);
            assert_int_equal(len, (size_t)n);
            assert_memory_equal(rec, want, len);
            free(rec);
        }
        int32_t p;
        uint8_t *rec;
        size_t len;
        assert_int_equal(dr_state_find_user(st, 11, &p, &rec, &len), 0);
        assert_int_equal(p, 3);
        free(rec);
        assert_int_equal(dr_state_find_user(st, 99999, &p, &rec, &len), DR_ENOTFOUND);
        assert_null(rec);
        assert_int_equal(p, -1);
        int found = dr_state_find_user(st, 42, &p, &rec, &len);
        if (round == 0) { /* under its 8-byte key */
            assert_int_equal(found, 0);
            assert_int_equal(p, -1);
            free(rec);
            uint64_t moved;
            char e[256];
            assert_int_equal(dr_state_upgrade_user_keys(st, legacy_to_partition, NULL, &moved, e, sizeof(e)), 0);
            assert_int_equal(moved, 1);
        } else { /* moved to partition 42 % 4 */
            assert_int_equal(found, 0);
            assert_int_equal(p, 2);
            free(rec);
        }
    }
    dr_state_close(st);
}

/* Claim: a read-only handle opened while another handle holds the store for
 * writing sees everything committed before it opened (a point-in-time view:
 * later commits need a reopen), and the writer keeps working beside it. */
static void test_read_only_beside_writer(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false), *ro;
    dr_state_batch_t *b = dr_state_batch_new();
    uint8_t *rec;
    size_t len;

    dr_state_batch_put_user(b, 0, 1, "one", 3);
    dr_state_batch_put_offset(b, "events", 0, 77);
    write_ok(st, b);
    ro = open_store(f, true);
    expect_user(ro, 1, "one");
    expect_offset(ro, "events", 0, 77);

    dr_state_batch_free(b);
    b = dr_state_batch_new();
    dr_state_batch_put_user(b, 0, 2, "two", 3);
    write_ok(st, b);
    assert_int_equal(dr_state_get_user(ro, 0, 2, &rec, &len), DR_ENOTFOUND);
    expect_user(st, 2, "two");
    dr_state_close(ro);

    ro = open_store(f, true);
    expect_user(ro, 2, "two");
    dr_state_close(ro);
    dr_state_batch_free(b);
    dr_state_close(st);
}

/* Claim: after close and reopen everything stays: puts, overwrites, deletes
 * and a zero-length value; and the size estimate sees the flushed data. */
static void test_reopen_keeps_everything(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    char rec[200];
    uint8_t *val;
    size_t len;
    uint64_t live = 0, pending = 0;

    memset(rec, 'x', sizeof(rec));
    for (int64_t id = 0; id < 2000; id++)
        dr_state_batch_put_user(b, 0, id, rec, sizeof(rec));
    dr_state_batch_put_user(b, 0, 5, "five", 4);
    dr_state_batch_delete_user(b, 0, 6);
    dr_state_batch_put_meta(b, "empty", "", 0);
    write_ok(st, b);
    dr_state_close(st);

    st = open_store(f, false); /* recovery flushes the WAL into a table file */
    expect_user(st, 5, "five");
    assert_int_equal(dr_state_get_user(st, 0, 6, &val, &len), DR_ENOTFOUND);
    assert_int_equal(dr_state_get_user(st, 0, 1999, &val, &len), 0);
    assert_int_equal(len, sizeof(rec));
    free(val);
    assert_int_equal(dr_state_get_meta(st, "empty", &val, &len), 0);
    assert_non_null(val);
    assert_int_equal(len, 0);
    free(val);
    assert_int_equal(dr_state_get_meta(st, "missing", &val, &len), DR_ENOTFOUND);
    assert_int_equal(dr_state_sizes(st, &live, &pending), 0);
    assert_true(live > 0);
    dr_state_batch_free(b);
    dr_state_close(st);
}

static int add_log_bytes(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)ftw;
    size_t n = strlen(path);
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".log") == 0 && strstr(path, "/LOG") == NULL)
        log_bytes += (uint64_t)sb->st_size;
    return 0;
}

/* Claim: a store closed cleanly leaves nothing in its write-ahead log to
 * replay (its memtables are flushed at close), so a restart does not pay for
 * a replay that grew with the users changed (2 s per 100,000 in
 * bench/state.sh before). */
static void test_close_leaves_no_log_to_replay(void **state) {
    fixture_t *f = *state;
    dr_state_t *st = open_store(f, false);
    dr_state_batch_t *b = dr_state_batch_new();
    char rec[200];
    memset(rec, 'y', sizeof(rec));
    for (int64_t id = 0; id < 5000; id++)
        dr_state_batch_put_user(b, 0, id, rec, sizeof(rec));
    write_ok(st, b);
    dr_state_batch_free(b);
    dr_state_close(st);
    log_bytes = 0;
    assert_int_equal(nftw(f->db, add_log_bytes, 16, FTW_PHYS), 0);
    if (log_bytes > 4096) fail_msg("%llu bytes of WAL left to replay", (unsigned long long)log_bytes);
    st = open_store(f, false);
    uint8_t *val = NULL;
    size_t len = 0;
    assert_int_equal(dr_state_get_user(st, 0, 4999, &val, &len), 0);
    assert_int_equal(len, sizeof(rec));
    free(val);
    dr_state_close(st);
}

static uint64_t sst_bytes; /* add_sst_bytes' sum */

static int add_sst_bytes(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)ftw;
    size_t n = strlen(path);
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".sst") == 0) sst_bytes += (uint64_t)sb->st_size;
    return 0;
}

static uint64_t table_bytes(const fixture_t *f) {
    sst_bytes = 0;
    assert_int_equal(nftw(f->db, add_sst_bytes, 16, FTW_PHYS), 0);
    return sst_bytes;
}

/* A user record as compressible as a real one with its zero padding, and
 * different for each user. */
static size_t compressible_record(int64_t id, char *rec, size_t cap) {
    memset(rec, 0, cap);
    for (size_t k = 0; k + 32 <= cap; k += 128) snprintf(rec + k, 32, "user %lld, block %zu", (long long)id, k);
    return cap;
}

static dr_state_t *open_compressed(const fixture_t *f, dr_state_compression_t upper,
                                   dr_state_compression_t last) {
    dr_state_conf_t conf;
    dr_state_t *st = NULL;
    char err[256] = "";
    dr_state_conf_default(&conf);
    conf.path = f->db;
    conf.block_cache_mb = 8;
    conf.compression = upper;
    conf.bottommost_compression = last;
    if (dr_state_open(&st, &conf, err, sizeof(err)) != 0) fail_msg("open %s: %s", f->db, err);
    return st;
}

static void put_compressible_users(dr_state_t *st, int64_t first, int64_t n) {
    dr_state_batch_t *b = dr_state_batch_new();
    char rec[1024];
    for (int64_t id = first; id < first + n; id++)
        dr_state_batch_put_user(b, 0, id, rec, compressible_record(id, rec, sizeof(rec)));
    write_ok(st, b);
    dr_state_batch_free(b);
}

/* Claim: state.compression takes effect (a store written uncompressed, then
 * as much again with lz4 and zstd: the second half's table files are a
 * fraction of the first's), and changing it between starts loses nothing:
 * a third start with yet another codec reads every record of both. The
 * codec names parse, and an unknown one is refused. */
static void test_compression_changed_between_starts(void **state) {
    fixture_t *f = *state;
    dr_state_compression_t c;
    assert_int_equal(dr_state_compression_parse("zstd", &c), 0);
    assert_int_equal(c, DR_COMPRESS_ZSTD);
    assert_int_equal(dr_state_compression_parse("none", &c), 0);
    assert_int_equal(c, DR_COMPRESS_NONE);
    assert_int_equal(dr_state_compression_parse("brotli", &c), DR_EINVAL);
    assert_int_equal(dr_state_compression_parse(NULL, &c), DR_EINVAL);

    dr_state_t *st = open_compressed(f, DR_COMPRESS_NONE, DR_COMPRESS_NONE);
    put_compressible_users(st, 0, 2000);
    dr_state_close(st); /* the memtables flushed: a table file */
    uint64_t plain = table_bytes(f);
    st = open_compressed(f, DR_COMPRESS_LZ4, DR_COMPRESS_ZSTD);
    put_compressible_users(st, 2000, 2000);
    dr_state_close(st);
    uint64_t packed = table_bytes(f) - plain;
    print_message("2,000 records of 1 KiB: %llu bytes of tables uncompressed, %llu with lz4\n",
                  (unsigned long long)plain, (unsigned long long)packed);
    assert_true(plain > 2000 * 1024);
    assert_true(packed * 4 < plain);

    st = open_compressed(f, DR_COMPRESS_SNAPPY, DR_COMPRESS_SNAPPY);
    char want[1024];
    for (int64_t id = 0; id < 4000; id++) {
        uint8_t *rec = NULL;
        size_t len = 0;
        assert_int_equal(dr_state_get_user(st, 0, id, &rec, &len), 0);
        assert_int_equal(len, compressible_record(id, want, sizeof(want)));
        assert_memory_equal(rec, want, len);
        free(rec);
    }
    dr_state_close(st);
}

/* Claim: open failures are DR_ESTORE with RocksDB's reason: a read-only open
 * of a missing store, and a second writer in the same process. */
static void test_open_errors(void **state) {
    fixture_t *f = *state;
    dr_state_conf_t conf;
    dr_state_t *st = NULL, *st2 = (dr_state_t *)1;
    char err[256] = "";

    dr_state_conf_default(&conf);
    conf.path = f->db;
    conf.read_only = true;
    assert_int_equal(dr_state_open(&st, &conf, err, sizeof(err)), DR_ESTORE);
    assert_null(st);
    assert_true(err[0] != '\0');

    st = open_store(f, false);
    conf.read_only = false;
    err[0] = '\0';
    assert_int_equal(dr_state_open(&st2, &conf, err, sizeof(err)), DR_ESTORE);
    assert_null(st2);
    assert_non_null(strstr(err, "lock"));
    conf.path = NULL;
    assert_int_equal(dr_state_open(&st2, &conf, err, sizeof(err)), DR_EINVAL);
    dr_state_close(st);
    dr_state_close(NULL);
}

/* --- cache --------------------------------------------------------------- */

static dr_user_t *user(int64_t id, uint64_t stamp) {
    dr_user_t *u = dr_user_new(id, DIM);

    assert_non_null(u);
    u->events_applied = stamp;
    return u;
}

static dr_user_cache_t *new_cache(size_t capacity) {
    dr_user_cache_t *c = NULL;

    assert_int_equal(dr_user_cache_new(&c, capacity, DIM), 0);
    return c;
}

/* Claim: put/get/remove behave as a map (remove frees: ASan's leak check
 * covers it), a put of a cached id replaces (and frees) the old user and
 * keeps it dirty; invalid arguments are DR_EINVAL. */
static void test_cache_basic(void **state) {
    dr_user_cache_t *c = new_cache(8), *bad = (dr_user_cache_t *)1;
    dr_user_t *u;

    (void)state;
    assert_int_equal(dr_user_cache_new(&bad, 0, DIM), DR_EINVAL);
    assert_null(bad);
    assert_int_equal(dr_user_cache_new(&bad, 8, 0), DR_EINVAL);
    assert_int_equal(dr_user_cache_put(c, NULL), DR_EINVAL);
    assert_null(dr_user_cache_get(c, 1));
    for (int64_t id = 1; id <= 5; id++)
        assert_int_equal(dr_user_cache_put(c, user(id, (uint64_t)id * 10)), 0);
    assert_int_equal(dr_user_cache_size(c), 5);
    assert_int_equal(dr_user_cache_get(c, 3)->events_applied, 30);
    dr_user_cache_remove(c, 3);
    dr_user_cache_remove(c, 99);
    assert_null(dr_user_cache_get(c, 3));
    assert_int_equal(dr_user_cache_size(c), 4);

    dr_user_cache_mark_dirty(c, dr_user_cache_get(c, 4));
    u = user(4, 41);
    assert_int_equal(dr_user_cache_put(c, u), 0);
    assert_ptr_equal(dr_user_cache_get(c, 4), u);
    assert_int_equal(dr_user_cache_dirty(c), 1);
    assert_int_equal(dr_user_cache_put(c, u), 0); /* same pointer: no-op */
    assert_int_equal(dr_user_cache_size(c), 4);
    dr_user_cache_remove(c, 4);                   /* a dirty one too */
    assert_int_equal(dr_user_cache_dirty(c), 0);
    dr_user_cache_free(c);
    dr_user_cache_free(NULL);
}

static int count_fn(void *ctx, dr_user_t *u) {
    (void)u;
    ++*(size_t *)ctx;
    return 0;
}

/* Claim: clean users beyond capacity are evicted on put, dirty users never
 * are (the cache grows past capacity while they are dirty), and once their
 * commit is written the cache is back at capacity. */
static void test_cache_eviction_spares_dirty(void **state) {
    dr_user_cache_t *c = new_cache(16);
    size_t drained = 0;

    (void)state;
    for (int64_t id = 0; id < 100; id++) {
        assert_int_equal(dr_user_cache_put(c, user(id, 0)), 0);
        assert_true(dr_user_cache_size(c) <= 16);
    }
    for (int64_t id = 1000; id < 11000; id++) { /* 10k dirty, forces growth */
        assert_int_equal(dr_user_cache_put(c, user(id, (uint64_t)id)), 0);
        dr_user_cache_mark_dirty(c, dr_user_cache_get(c, id));
    }
    assert_int_equal(dr_user_cache_dirty(c), 10000);
    assert_true(dr_user_cache_size(c) >= 10000 && dr_user_cache_size(c) <= 10001);
    for (int64_t id = 1000; id < 11000; id++)
        assert_int_equal(dr_user_cache_get(c, id)->events_applied, (uint64_t)id);
    assert_int_equal(dr_user_cache_commit_begin(c, count_fn, &drained), 0);
    assert_int_equal(drained, 10000);
    assert_int_equal(dr_user_cache_dirty(c), 10000); /* not stored yet */
    dr_user_cache_commit_end(c, true);
    assert_int_equal(dr_user_cache_dirty(c), 0);
    assert_int_equal(dr_user_cache_size(c), 16);
    assert_int_equal(dr_user_cache_put(c, user(5, 0)), 0);
    assert_int_equal(dr_user_cache_size(c), 16);
    assert_non_null(dr_user_cache_get(c, 5)); /* the user just put stays */
    dr_user_cache_free(c);
}

/* Claim: eviction is CLOCK: a user read since the hand last passed it gets
 * a second chance, the oldest unreferenced clean user goes first. */
static void test_cache_clock_second_chance(void **state) {
    dr_user_cache_t *c = new_cache(4);

    (void)state;
    for (int64_t id = 1; id <= 4; id++)
        assert_int_equal(dr_user_cache_put(c, user(id, 0)), 0);
    assert_non_null(dr_user_cache_get(c, 1));
    assert_int_equal(dr_user_cache_put(c, user(5, 0)), 0);
    assert_non_null(dr_user_cache_get(c, 1));
    assert_null(dr_user_cache_get(c, 2));
    assert_non_null(dr_user_cache_get(c, 5));
    assert_int_equal(dr_user_cache_size(c), 4);
    dr_user_cache_free(c);
}

typedef struct drain_log {
    int64_t ids[16];
    size_t n;
    size_t fail_at; /* return -7 for the user at this position (1-based; 0: never) */
} drain_log_t;

static int log_fn(void *ctx, dr_user_t *u) {
    drain_log_t *l = ctx;

    if (l->n + 1 == l->fail_at)
        return -7;
    l->ids[l->n++] = u->user_id;
    return 0;
}

/* Claim: commit_begin visits dirty users in the order they became dirty; a
 * non-zero return stops it, is returned, opens no commit and leaves every
 * user dirty, in order, for the next commit. */
static void test_cache_drain_order_and_partial(void **state) {
    static const int64_t order[] = {5, 3, 9, 1};
    dr_user_cache_t *c = new_cache(16);
    drain_log_t l = {.fail_at = 2};

    (void)state;
    for (int64_t id = 1; id <= 9; id++)
        assert_int_equal(dr_user_cache_put(c, user(id, 0)), 0);
    for (size_t i = 0; i < 4; i++)
        dr_user_cache_mark_dirty(c, dr_user_cache_get(c, order[i]));
    dr_user_cache_mark_dirty(c, dr_user_cache_get(c, 5)); /* already dirty */
    dr_user_cache_remove(c, 9);
    assert_int_equal(dr_user_cache_dirty(c), 3);

    assert_int_equal(dr_user_cache_commit_begin(c, log_fn, &l), -7);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.ids[0], 5);
    assert_int_equal(dr_user_cache_dirty(c), 3);
    dr_user_cache_commit_end(c, true); /* no commit is open: nothing happens */
    assert_int_equal(dr_user_cache_dirty(c), 3);

    memset(&l, 0, sizeof(l));
    assert_int_equal(dr_user_cache_commit_begin(c, log_fn, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.ids[0], 5);
    assert_int_equal(l.ids[1], 3);
    assert_int_equal(l.ids[2], 1);
    assert_int_equal(dr_user_cache_commit_begin(c, log_fn, &l), DR_EINVAL); /* one at a time */
    dr_user_cache_mark_dirty(c, dr_user_cache_get(c, 5)); /* changed again meanwhile */
    dr_user_cache_commit_end(c, true);
    assert_int_equal(dr_user_cache_dirty(c), 1);
    memset(&l, 0, sizeof(l));
    assert_int_equal(dr_user_cache_commit_begin(c, log_fn, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.ids[0], 5);
    dr_user_cache_commit_end(c, false); /* not written: 5 stays dirty */
    assert_int_equal(dr_user_cache_dirty(c), 1);
    memset(&l, 0, sizeof(l));
    assert_int_equal(dr_user_cache_commit_begin(c, log_fn, &l), 0);
    assert_int_equal(l.n, 1);
    dr_user_cache_commit_end(c, true);
    assert_int_equal(dr_user_cache_dirty(c), 0);
    dr_user_cache_free(c);
}

/* Claim: a commit built in steps encodes each dirty user once, oldest
 * first, a bounded number a step; a user changed after its step is encoded
 * again (later, so its newer record wins); commit_begin encodes what is
 * left and seals; only users unchanged since their last encoding are clean
 * after the write. */
static void test_cache_commit_in_steps(void **state) {
    dr_user_cache_t *c = new_cache(16);
    drain_log_t l = {0};
    size_t n = 0;

    (void)state;
    for (int64_t id = 1; id <= 5; id++) {
        assert_int_equal(dr_user_cache_put(c, user(id, 0)), 0);
        dr_user_cache_mark_dirty(c, dr_user_cache_get(c, id));
    }
    assert_int_equal(dr_user_cache_unstaged(c), 5);
    assert_int_equal(dr_user_cache_commit_step(c, log_fn, &l, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.ids[0], 1);
    assert_int_equal(l.ids[1], 2);
    assert_int_equal(dr_user_cache_unstaged(c), 3);
    dr_user_cache_mark_dirty(c, dr_user_cache_get(c, 1)); /* changed after its step */
    assert_int_equal(dr_user_cache_unstaged(c), 4);
    assert_int_equal(dr_user_cache_commit_step(c, log_fn, &l, 10, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(l.ids[2], 3);
    assert_int_equal(l.ids[5], 1); /* again, last */
    dr_user_cache_mark_dirty(c, dr_user_cache_get(c, 4));
    assert_int_equal(dr_user_cache_commit_begin(c, log_fn, &l), 0);
    assert_int_equal(l.n, 7);
    assert_int_equal(l.ids[6], 4);
    assert_int_equal(dr_user_cache_unstaged(c), 0);
    assert_int_equal(dr_user_cache_commit_step(c, log_fn, &l, 10, &n), DR_EINVAL); /* sealed */
    assert_int_equal(n, 0);
    dr_user_cache_mark_dirty(c, dr_user_cache_get(c, 2)); /* while the batch is written */
    dr_user_cache_commit_end(c, true);
    assert_int_equal(dr_user_cache_dirty(c), 1);

    /* restaged: the step's users are encoded again by commit_begin */
    memset(&l, 0, sizeof(l));
    assert_int_equal(dr_user_cache_commit_step(c, log_fn, &l, 10, &n), 0);
    assert_int_equal(n, 1);
    dr_user_cache_commit_restage(c);
    assert_int_equal(dr_user_cache_commit_begin(c, log_fn, &l), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.ids[1], 2);
    dr_user_cache_commit_end(c, false); /* not written: 2 stays dirty */
    assert_int_equal(dr_user_cache_dirty(c), 1);

    /* a step that fails leaves no commit open and everyone dirty */
    memset(&l, 0, sizeof(l));
    l.fail_at = 1;
    assert_int_equal(dr_user_cache_commit_step(c, log_fn, &l, 10, &n), -7);
    assert_int_equal(dr_user_cache_unstaged(c), 1);
    dr_user_cache_commit_end(c, true); /* nothing open: nothing happens */
    assert_int_equal(dr_user_cache_dirty(c), 1);
    dr_user_cache_free(c);
}

/* Claim (issue 12, defect 1): a user stored by an open commit is not
 * evicted before the commit is written, however many other users pass
 * through a cache far smaller than them; after the write it is evictable.
 * Before the fix, building a commit marked its users clean, the next put
 * evicted them, and an event in that gap reloaded the older stored record. */
static void test_cache_commit_pins_users_until_written(void **state) {
    dr_user_cache_t *c = new_cache(1);
    size_t n = 0;

    (void)state;
    assert_int_equal(dr_user_cache_put(c, user(7, 70)), 0);
    dr_user_t *u7 = dr_user_cache_get(c, 7);
    dr_user_cache_mark_dirty(c, u7);
    assert_int_equal(dr_user_cache_commit_begin(c, count_fn, &n), 0);
    for (int64_t id = 100; id < 5100; id++) /* 5,000 others while the batch waits */
        assert_int_equal(dr_user_cache_put(c, user(id, 0)), 0);
    assert_ptr_equal(dr_user_cache_get(c, 7), u7);
    assert_int_equal(u7->events_applied, 70);
    assert_true(dr_user_cache_size(c) <= 2);
    dr_user_cache_commit_end(c, true);
    assert_int_equal(dr_user_cache_size(c), 1);
    for (int64_t id = 6000; id < 6010; id++)
        assert_int_equal(dr_user_cache_put(c, user(id, 0)), 0);
    assert_null(dr_user_cache_get(c, 7)); /* stored now: evictable again */

    /* a failed write keeps them unevictable: they are still to be stored */
    assert_int_equal(dr_user_cache_put(c, user(8, 80)), 0);
    dr_user_cache_mark_dirty(c, dr_user_cache_get(c, 8));
    assert_int_equal(dr_user_cache_commit_begin(c, count_fn, &n), 0);
    dr_user_cache_commit_end(c, false);
    for (int64_t id = 7000; id < 7100; id++)
        assert_int_equal(dr_user_cache_put(c, user(id, 0)), 0);
    assert_non_null(dr_user_cache_get(c, 8));
    assert_int_equal(dr_user_cache_dirty(c), 1);
    dr_user_cache_free(c);
}

/* Claim: hits count successful gets; misses count only count_miss calls
 * (a NULL get is not a miss until the caller goes to the store). */
static void test_cache_stats(void **state) {
    dr_user_cache_t *c = new_cache(4);
    uint64_t hits, misses;

    (void)state;
    assert_null(dr_user_cache_get(c, 1));
    dr_user_cache_count_miss(c);
    assert_int_equal(dr_user_cache_put(c, user(1, 0)), 0);
    assert_non_null(dr_user_cache_get(c, 1));
    assert_non_null(dr_user_cache_get(c, 1));
    dr_user_cache_stats(c, &hits, &misses);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 1);
    dr_user_cache_free(c);
}

/* --- randomized check against a reference model --------------------------- */

#define KEYS 512
#define CAP 64
#define OPS 1000000

enum { ABSENT, CLEAN, DIRTY, STAGED, COMMITTING }; /* STAGED: encoded by a step */

typedef struct ref {
    uint8_t state[KEYS];
    uint64_t stamp[KEYS];
    uint64_t seq[KEYS]; /* when it became dirty */
    size_t n_dirty; /* DIRTY + STAGED + COMMITTING: not stored yet */
    bool commit_open; /* sealed (commit_begin done) */
    uint64_t build_last_seq; /* the open commit visits users in dirtying order */
    uint64_t next_stamp, next_seq, hits, evictions;
} ref_t;

static uint64_t rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A get, checked against the model: absent stays absent, dirty is always
 * there, clean may have been evicted (then the model forgets it). */
static dr_user_t *ref_get(dr_user_cache_t *c, ref_t *r, int64_t k) {
    dr_user_t *u = dr_user_cache_get(c, k);

    if (u) {
        r->hits++;
        assert_int_not_equal(r->state[k], ABSENT);
        assert_int_equal(u->user_id, k);
        assert_int_equal(u->events_applied, r->stamp[k]);
    } else {
        assert_int_not_equal(r->state[k], DIRTY);
        assert_int_not_equal(r->state[k], STAGED);
        assert_int_not_equal(r->state[k], COMMITTING);
        if (r->state[k] == CLEAN)
            r->evictions++;
        r->state[k] = ABSENT;
    }
    return u;
}

typedef struct ref_drain {
    ref_t *r;
    size_t n, fail_at;
} ref_drain_t;

/* Visited by a step or commit_begin: dirty, not visited before by this
 * commit unless changed since, in dirtying order. */
static int ref_drain_fn(void *ctx, dr_user_t *u) {
    ref_drain_t *d = ctx;
    int64_t k = u->user_id;

    assert_int_equal(d->r->state[k], DIRTY);
    assert_true(d->r->seq[k] > d->r->build_last_seq);
    assert_int_equal(u->events_applied, d->r->stamp[k]);
    if (++d->n == d->fail_at)
        return -3;
    d->r->build_last_seq = d->r->seq[k];
    d->r->state[k] = STAGED;
    return 0;
}

/* fn failed: no commit is open, every user encoded for it is dirty again. */
static void ref_failed(ref_t *r) {
    for (int64_t k = 0; k < KEYS; k++)
        if (r->state[k] == STAGED)
            r->state[k] = DIRTY;
    r->build_last_seq = 0;
}

/* The commit was sealed in the cache: every user it encoded is COMMITTING;
 * none is left DIRTY. */
static void ref_begun(ref_t *r) {
    for (int64_t k = 0; k < KEYS; k++) {
        assert_int_not_equal(r->state[k], DIRTY);
        if (r->state[k] == STAGED)
            r->state[k] = COMMITTING;
    }
    r->commit_open = true;
}

static void ref_end(dr_user_cache_t *c, ref_t *r, bool written) {
    for (int64_t k = 0; k < KEYS; k++) {
        if (r->state[k] != COMMITTING)
            continue;
        r->state[k] = written ? CLEAN : DIRTY;
        if (written)
            r->n_dirty--;
    }
    r->commit_open = false;
    r->build_last_seq = 0;
    dr_user_cache_commit_end(c, written);
}

static void ref_mark(dr_user_cache_t *c, ref_t *r, int64_t k, dr_user_t *u) {
    if (r->state[k] == CLEAN || r->state[k] == STAGED || r->state[k] == COMMITTING) {
        if (r->state[k] == CLEAN)
            r->n_dirty++;
        r->state[k] = DIRTY;
        r->seq[k] = ++r->next_seq;
    }
    dr_user_cache_mark_dirty(c, u);
}

/* A put as the pipeline does it (load, put, often change at once). */
static void ref_put(dr_user_cache_t *c, ref_t *r, int64_t k, bool then_dirty) {
    r->stamp[k] = ++r->next_stamp;
    assert_int_equal(dr_user_cache_put(c, user(k, r->stamp[k])), 0);
    if (r->state[k] == ABSENT)
        r->state[k] = CLEAN;
    assert_true(dr_user_cache_size(c) <= CAP ||
                dr_user_cache_size(c) - dr_user_cache_dirty(c) <= 1);
    dr_user_t *u = ref_get(c, r, k);

    assert_non_null(u); /* the user just put is never evicted by that put */
    if (then_dirty)
        ref_mark(c, r, k, u);
}

/* `rare_drains`: commit only 1 in 64 times, so that dirty users pile up
 * far past capacity. */
static void ref_op(dr_user_cache_t *c, ref_t *r, uint64_t *s, bool rare_drains) {
    uint64_t x = rng(s);
    int64_t k = (int64_t)((x >> 8) % KEYS);
    unsigned op = (unsigned)(x % 100);
    dr_user_t *u;

    if (op < 45 || (op >= 97 && rare_drains && (x >> 50) % 64)) {
        ref_get(c, r, k);
    } else if (op < 70) {
        ref_put(c, r, k, (x >> 32) & 1);
    } else if (op < 92) {
        u = ref_get(c, r, k);
        if (u)
            ref_mark(c, r, k, u);
    } else if (op < 97) {
        if (r->state[k] == DIRTY || r->state[k] == STAGED || r->state[k] == COMMITTING)
            r->n_dirty--;
        r->state[k] = ABSENT;
        dr_user_cache_remove(c, k);
    } else if (r->commit_open) {
        if ((x >> 36) % 4 == 0) { /* no step while sealed */
            ref_drain_t d = {.r = r};
            assert_int_equal(dr_user_cache_commit_step(c, ref_drain_fn, &d, 8, NULL), DR_EINVAL);
            assert_int_equal(d.n, 0);
            assert_int_equal(dr_user_cache_unstaged(c), 0);
        } else {
            ref_end(c, r, (x >> 40) % 8 != 0);
        }
    } else if ((x >> 36) % 16 == 0) { /* restaged: everyone encoded so far again */
        for (int64_t j = 0; j < KEYS; j++)
            if (r->state[j] == STAGED)
                r->state[j] = DIRTY;
        r->build_last_seq = 0;
        dr_user_cache_commit_restage(c);
    } else {
        bool step = (x >> 36) % 2;
        size_t max = 1 + (x >> 44) % 16, encoded = 99;
        ref_drain_t d = {.r = r, .fail_at = (x >> 40) % 4 ? 0 : 1 + (x >> 42) % 64};
        int rc = step ? dr_user_cache_commit_step(c, ref_drain_fn, &d, max, &encoded)
                      : dr_user_cache_commit_begin(c, ref_drain_fn, &d);

        assert_int_equal(rc, d.fail_at && d.n == d.fail_at ? -3 : 0);
        if (rc)
            ref_failed(r);
        else if (!step)
            ref_begun(r);
        else
            assert_int_equal(encoded, d.n);
        assert_true(d.n <= (step ? max : KEYS));
    }
    assert_int_equal(dr_user_cache_dirty(c), r->n_dirty);
}

/* Full reconciliation: after it the model knows exactly who is cached. */
static void ref_check_all(dr_user_cache_t *c, ref_t *r) {
    size_t present = 0, unstaged = 0;

    for (int64_t k = 0; k < KEYS; k++)
        unstaged += r->state[k] == DIRTY;
    /* (0 while sealed; holes of removed users count) */
    assert_true(r->commit_open ? dr_user_cache_unstaged(c) == 0 : dr_user_cache_unstaged(c) >= unstaged);

    for (int64_t k = 0; k < KEYS; k++)
        present += ref_get(c, r, k) != NULL;
    assert_int_equal(dr_user_cache_size(c), present);
}

/* Claim: over 1M seeded random gets, puts (new and replacing), mark_dirty,
 * removes, commits built in steps and begun (some failing part-way),
 * restaged, and ended (written or not), the cache agrees with a brute-force model: it never loses a dirty
 * or committing user, never returns a removed or stale one, stays within
 * capacity after each put unless only unstored users are left to evict,
 * visits in dirtying order, and counts hits exactly. */
static void test_cache_random_vs_reference(void **state) {
    dr_user_cache_t *c = new_cache(CAP);
    ref_t *r = calloc(1, sizeof(*r));
    uint64_t s = 20240601, hits, misses;
    size_t max_size = 0;

    (void)state;
    assert_non_null(r);
    for (int i = 0; i < OPS; i++) {
        ref_op(c, r, &s, (i >> 16) & 1); /* phases of 65536 ops */
        if (dr_user_cache_size(c) > max_size)
            max_size = dr_user_cache_size(c);
        if (i % 4096 == 0)
            ref_check_all(c, r);
    }
    ref_check_all(c, r);
    dr_user_cache_stats(c, &hits, &misses);
    assert_int_equal(hits, r->hits);
    assert_int_equal(misses, 0);
    assert_true(r->evictions > 1000);  /* eviction was exercised */
    assert_true(max_size > 2 * CAP);   /* and so were dirty users past capacity */
    dr_user_cache_free(c);
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_all_visible_after_reopen, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_failed_write_stores_nothing, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_invalid_batch_stores_nothing, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_offsets_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_scans_in_id_order_and_stop, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_read_only_beside_writer, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_users_by_partition, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_upgrade_legacy_user_keys, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_find_user_across_partitions, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_compression_changed_between_starts, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_close_leaves_no_log_to_replay, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_open_errors, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_for_each_offset, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_open_refused_when_nearly_full, setup_dir,
                                        teardown_dir),
        cmocka_unit_test(test_cache_basic),
        cmocka_unit_test(test_cache_eviction_spares_dirty),
        cmocka_unit_test(test_cache_clock_second_chance),
        cmocka_unit_test(test_cache_drain_order_and_partial),
        cmocka_unit_test(test_cache_commit_in_steps),
        cmocka_unit_test(test_cache_commit_pins_users_until_written),
        cmocka_unit_test(test_cache_stats),
        cmocka_unit_test(test_cache_random_vs_reference),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
