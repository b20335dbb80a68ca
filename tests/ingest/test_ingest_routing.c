/* test_ingest_routing.c - every producer made by dr_ingest_kafka_conf sends
 * a keyed record to the partition a Java producer's default partitioner
 * would choose (murmur2 of the key bytes, positive, mod the partitions), so
 * that a user's events and our erase requests meet in one partition; a
 * user's kafka.partitioner still wins; consumers built from the same
 * configuration log nothing about the producer-only property. */
#include "dr_test.h"

#include <inttypes.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "dr_ingest.h"
#include "dr_key.h"
#include "dr_log.h"

#define PARTITIONS 12
#define USERS 2000

/* Kafka's Utils.murmur2 (seed 0x9747b28c), for the expectations only: it
 * must reproduce Kafka's published vectors (test_murmur2_vectors) before
 * anything is judged by it. */
static int32_t java_murmur2(const void *key, size_t len) {
    const uint8_t *d = key;
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t k = (uint32_t)d[i] | (uint32_t)d[i + 1] << 8 | (uint32_t)d[i + 2] << 16 |
                     (uint32_t)d[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len & 3) {
    case 3: h ^= (uint32_t)d[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)d[i + 1] << 8;  /* fall through */
    case 1: h ^= d[i]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

/* The Java producer's partition for a keyed record (Utils.toPositive). */
static int32_t java_partition(const char *key, int partitions) {
    return (int32_t)(((uint32_t)java_murmur2(key, strlen(key)) & 0x7fffffffu) % (uint32_t)partitions);
}

/* Vectors of apache/kafka's UtilsTest.testMurmur2. */
static const struct { const char *key; int32_t hash; } vectors[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
};
#define N_VECTORS (sizeof(vectors) / sizeof(vectors[0]))

static void test_murmur2_vectors(void **state) {
    (void)state;
    for (size_t i = 0; i < N_VECTORS; i++)
        assert_int_equal(java_murmur2(vectors[i].key, strlen(vectors[i].key)), vectors[i].hash);
}

/* Only the canonical spelling of an id is read as that user: any other
 * would be hashed to another partition than the user's events. */
static void test_user_key_canonical(void **state) {
    (void)state;
    static const struct { const char *key; int64_t id; } good[] = {
        {"0", 0}, {"7", 7}, {"1234567", 1234567}, {"9007199254740991", 9007199254740991LL}};
    static const char *const bad[] = {"", "007", "00", "+7", " 7", "7 ", "-0", "-7", "12abc", "1e3",
                                      "9007199254740992", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        rd_kafka_message_t m = {0};
        m.key = (void *)good[i].key;
        m.key_len = strlen(good[i].key);
        int64_t id = -1;
        assert_true(dr_ingest_user_key(&m, &id));
        assert_int_equal(id, good[i].id);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rd_kafka_message_t m = {0};
        m.key = (void *)bad[i];
        m.key_len = strlen(bad[i]);
        int64_t id = -1;
        if (dr_ingest_user_key(&m, &id)) fail_msg("key \"%s\" read as user %" PRId64, bad[i], id);
    }
    /* Java's LongSerializer keys: 8 bytes big-endian, below 2^53 */
    static const struct { uint8_t key[9]; size_t len; int64_t id; } bin[] = {
        {{0, 0, 0, 0, 0, 0, 0, 7}, 8, 7},
        {{0, 0, 0, 0, 0, 0x12, 0xd6, 0x87}, 8, 1234567},
        {{0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8, 9007199254740991LL},
        {{0, 0x20, 0, 0, 0, 0, 0, 0}, 8, -1},        /* 2^53 */
        {{0, 0, 0, 0, 0, 0, 7}, 7, -1},              /* 7 bytes */
        {{0, 0, 0, 0, 0, 0, 0, 0, 7}, 9, -1},        /* 9 bytes */
        {{0x80, 0, 0, 0, 0, 0, 0, 7}, 8, -1}};       /* negative */
    for (size_t i = 0; i < sizeof(bin) / sizeof(bin[0]); i++) {
        rd_kafka_message_t m = {0};
        m.key = (void *)bin[i].key;
        m.key_len = bin[i].len;
        int64_t id = -1;
        bool ok = dr_ingest_user_key(&m, &id);
        if (ok != (bin[i].id >= 0) || (ok && id != bin[i].id))
            fail_msg("binary key %zu: read %d as %" PRId64, i, ok, id);
    }
    rd_kafka_message_t m = {0}; /* no key at all */
    int64_t id;
    assert_false(dr_ingest_user_key(&m, &id));
}

/* Our writers' key (common/dr_key.h) is snprintf's spelling of the id,
 * and the reader takes every id below 2^53 back from it: the writers and
 * the reader agree, at the edges of the id range too. */
static void test_id_key_round_trip(void **state) {
    (void)state;
    static const int64_t ids[] = {0, 1, 9, 10, 99, 100, 1234567, 4294967296LL, 9007199254740991LL,
                                  9007199254740992LL, INT64_MAX, -1, -10, INT64_MIN};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char key[DR_ID_KEY_MAX], want[32];
        size_t len = dr_id_key(key, ids[i]);
        snprintf(want, sizeof(want), "%" PRId64, ids[i]);
        assert_string_equal(key, want);
        assert_int_equal(len, strlen(want));
        rd_kafka_message_t m = {0};
        m.key = key;
        m.key_len = len;
        int64_t id = -1;
        bool readable = ids[i] >= 0 && ids[i] < 9007199254740992LL;
        assert_int_equal(dr_ingest_user_key(&m, &id), readable);
        if (readable) assert_int_equal(id, ids[i]);
    }
    uint64_t x = 88172645463325252ULL; /* and a spread of ids below 2^53 */
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t v = (int64_t)(x >> (11 + i % 50));
        char key[DR_ID_KEY_MAX], want[32];
        dr_id_key(key, v);
        snprintf(want, sizeof(want), "%" PRId64, v);
        assert_string_equal(key, want);
    }
}

/* ---- producing to the mock cluster ------------------------------------------- */

typedef struct delivery {
    int32_t partition;
    bool done, failed;
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    delivery_t *d = m->_private;
    d->done = true;
    d->failed = m->err != 0;
    d->partition = m->partition;
}

typedef struct keyset {
    char (*keys)[24];
    int n;
} keyset_t;

/* The vector keys, user ids 0..USERS-1 and the largest user id, as
 * dr_ingest_user_key reads them (decimal digits). */
static keyset_t make_keys(void) {
    keyset_t ks = {calloc(N_VECTORS + USERS + 1, sizeof(*ks.keys)), 0};
    assert_non_null(ks.keys);
    for (size_t i = 0; i < N_VECTORS; i++) {
        if (strlen(vectors[i].key) >= sizeof(ks.keys[0])) continue;
        snprintf(ks.keys[ks.n++], sizeof(ks.keys[0]), "%s", vectors[i].key);
    }
    for (int u = 0; u < USERS; u++) snprintf(ks.keys[ks.n++], sizeof(ks.keys[0]), "%d", u);
    snprintf(ks.keys[ks.n++], sizeof(ks.keys[0]), "%" PRId64, (int64_t)((1LL << 53) - 1));
    return ks;
}

/* Produces every key (null value: an erase request's shape) with a producer
 * built by dr_ingest_kafka_conf from kafka.* `keys`/`vals`; returns how
 * many landed on the Java partition. */
static int produce_and_count(const char *bootstraps, const char *const *keys, const char *const *vals,
                             int n_kafka, const keyset_t *ks) {
    char e[512];
    const char *const defaults[][2] = {{"bootstrap.servers", bootstraps}, {"linger.ms", "5"}};
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(defaults, 2, keys, vals, n_kafka, e, sizeof(e));
    assert_non_null(kc);
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof(e));
    assert_non_null(p);
    delivery_t *d = calloc((size_t)ks->n, sizeof(*d));
    assert_non_null(d);
    for (int i = 0; i < ks->n; i++)
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("events"),
                                           RD_KAFKA_V_KEY(ks->keys[i], strlen(ks->keys[i])),
                                           RD_KAFKA_V_VALUE(NULL, 0), RD_KAFKA_V_OPAQUE(&d[i]),
                                           RD_KAFKA_V_END),
                         0);
    assert_int_equal(rd_kafka_flush(p, 20000), 0);
    int same = 0;
    for (int i = 0; i < ks->n; i++) {
        assert_true(d[i].done && !d[i].failed);
        if (d[i].partition == java_partition(ks->keys[i], PARTITIONS)) same++;
    }
    free(d);
    rd_kafka_destroy(p);
    return same;
}

typedef struct cluster {
    rd_kafka_t *owner;
    rd_kafka_mock_cluster_t *mock;
} cluster_t;

static const char *cluster_start(cluster_t *c) {
    char e[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(kc, "log_level", "3", e, sizeof(e)), RD_KAFKA_CONF_OK);
    c->owner = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof(e));
    assert_non_null(c->owner);
    c->mock = rd_kafka_mock_cluster_new(c->owner, 1);
    assert_non_null(c->mock);
    assert_int_equal(rd_kafka_mock_topic_create(c->mock, "events", PARTITIONS, 1), 0);
    return rd_kafka_mock_cluster_bootstraps(c->mock);
}

static void cluster_stop(cluster_t *c) {
    rd_kafka_mock_cluster_destroy(c->mock);
    rd_kafka_destroy(c->owner);
}

static void test_keyed_records_land_where_java_puts_them(void **state) {
    (void)state;
    cluster_t c;
    const char *bs = cluster_start(&c);
    keyset_t ks = make_keys();
    assert_int_equal(produce_and_count(bs, NULL, NULL, 0, &ks), ks.n);
    /* kafka.partitioner still wins: CRC32 puts most keys elsewhere */
    const char *keys[] = {"partitioner"}, *vals[] = {"consistent"};
    int same = produce_and_count(bs, keys, vals, 1, &ks);
    fprintf(stderr, "with kafka.partitioner=consistent, %d of %d keys on the Java partition\n", same,
            ks.n);
    assert_true(same < ks.n / 2);
    free(ks.keys);
    cluster_stop(&c);
}

/* A consumer built from the same configuration: the producer-only property
 * must not show up in the log. */
static void test_consumer_quiet(void **state) {
    (void)state;
    cluster_t c;
    const char *bs = cluster_start(&c);
    char e[512], path[] = "/tmp/dr_test_routing_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    const char *const defaults[][2] = {{"bootstrap.servers", bs}, {"group.id", "quiet"}};
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(defaults, 2, NULL, NULL, 0, e, sizeof(e));
    rd_kafka_t *k = kc ? rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof(e)) : NULL;
    if (k) {
        rd_kafka_poll(k, 200);
        rd_kafka_destroy(k);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_non_null(k);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    fputs(buf, stderr);
    assert_null(strstr(buf, "partitioner"));
    assert_null(strstr(buf, "producer property"));
    cluster_stop(&c);
}

int main(void) {
    dr_log_set_level(DR_LOG_DEBUG); /* anything librdkafka says about the conf would show */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_vectors),
        cmocka_unit_test(test_user_key_canonical),
        cmocka_unit_test(test_id_key_round_trip),
        cmocka_unit_test(test_keyed_records_land_where_java_puts_them),
        cmocka_unit_test(test_consumer_quiet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
