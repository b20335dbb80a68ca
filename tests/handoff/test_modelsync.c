/* test_modelsync.c - the model topic across a crash (handoff/dr_handoff.h,
 * "shared parameters"), against the embedded broker: a process that
 * published its item changes and died before its commit stored them leaves
 * messages the others applied; the instance's next process applies them too
 * and numbers its own above them, so every instance ends with the same items. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "dr_test.h"

#include <librdkafka/rdkafka.h>
#include <time.h>

#include "dr_embedded.h"
#include "dr_err.h"
#include "dr_handoff.h"
#include "dr_learner.h"

#define TOPIC "ev.model"

static dr_model_t *new_model(void) {
    dr_learner_conf_t c;
    dr_learner_conf_default(&c);
    c.dim = 8;
    dr_model_t *m;
    char err[128];
    assert_int_equal(dr_model_new(&m, &c, err, sizeof(err)), 0);
    assert_int_equal(dr_model_sync_enable(m), 0);
    return m;
}

/* A user clicks items first..first+n-1: item changes to share. */
static void learn(dr_model_t *m, int64_t user, int64_t first, int n) {
    dr_user_t *u = dr_user_new_conf(user, dr_model_conf(m));
    dr_apply_result_t r;
    for (int i = 0; i < n; i++) {
        dr_event_t e = {.user_id = user, .item_id = first + i, .type = DR_EV_CLICK, .timestamp_ms = 1000 + i};
        assert_int_equal(dr_learner_apply(m, u, &e, (uint64_t)(user * 100 + i), &r), 0);
    }
    dr_user_free(u);
}

static void pause_10ms(void) { nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); }

static int64_t from_beginning(void *ctx, int32_t partition) {
    (void)ctx;
    (void)partition;
    return -1;
}

/* Polls s into m until `want` messages were applied or skipped (5 s). */
static void read_until(dr_model_sync_t *s, dr_model_t *m, uint64_t want) {
    const dr_model_sync_stats_t *st = dr_model_sync_stats(s);
    for (int i = 0; i < 500 && st->imported + st->duplicates < want; i++) {
        dr_model_sync_poll(s, m, 100);
        pause_10ms();
    }
    assert_int_equal(st->imported + st->duplicates, want);
}

static dr_model_sync_t *sync_for(rd_kafka_t *producer, uint64_t id, const char **keys, const char **values) {
    dr_model_sync_t *s;
    char err[512];
    assert_int_equal(dr_model_sync_new(&s, producer, TOPIC, id, keys, values, 1, err, sizeof(err)), 0);
    return s;
}

static void publish(dr_model_sync_t *s, dr_model_t *m, rd_kafka_t *producer) {
    size_t messages = 0;
    assert_int_equal(dr_model_sync_publish(s, m, NULL, &messages), 0);
    assert_int_equal(messages, 1);
    assert_int_equal(rd_kafka_flush(producer, 5000), 0);
}

/* Claim: instance 7 publishes, dies before its commit (its state stays as
 * at start), and restarts on that state; instance 9 reads everything. The
 * restarted process applies its predecessor's message (own_recovered), its
 * next message is not taken for a replay (no duplicate anywhere), and both
 * instances end with the same items. */
static void test_dead_process_message_applied_by_its_successor(void **state) {
    (void)state;
    dr_embedded_t *broker;
    char err[512];
    assert_int_equal(dr_embedded_new(&broker, 1, err, sizeof(err)), 0);
    assert_int_equal(dr_embedded_create_topic(broker, TOPIC, 2, err, sizeof(err)), 0);
    const char *keys[1] = {"bootstrap.servers"}, *values[1] = {dr_embedded_bootstraps(broker)};
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(kc, "bootstrap.servers", values[0], err, sizeof(err)), 0);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    assert_non_null(producer);

    /* the first process of instance 7: its start stores the state, then it
     * publishes what it learned and dies before any commit */
    dr_model_t *dead = new_model();
    dr_model_sync_t *first = sync_for(producer, 7, keys, values);
    dr_model_sync_begin_epoch(first);
    uint8_t *stored;
    size_t stored_len;
    assert_int_equal(dr_model_sync_encode_state(first, &stored, &stored_len), 0);
    learn(dead, 1, 10, 6);
    publish(first, dead, producer);
    dr_model_sync_free(first);
    dr_model_free(dead);

    /* its successor: the stored state, items as at the last commit (none) */
    dr_model_t *m7 = new_model();
    dr_model_sync_t *next = sync_for(producer, 7, keys, values);
    assert_int_equal(dr_model_sync_load_state(next, stored, stored_len), 0);
    dr_model_sync_begin_epoch(next);
    assert_int_equal(dr_model_sync_start(next, from_beginning, NULL, 5000, err, sizeof(err)), 0);
    read_until(next, m7, 1);
    assert_int_equal(dr_model_sync_stats(next)->own_recovered, 1);
    learn(m7, 2, 13, 6); /* overlaps the dead process's items */
    publish(next, m7, producer);

    /* instance 9 reads both messages of instance 7 */
    dr_model_t *m9 = new_model();
    dr_model_sync_t *other = sync_for(producer, 9, keys, values);
    assert_int_equal(dr_model_sync_start(other, from_beginning, NULL, 5000, err, sizeof(err)), 0);
    read_until(other, m9, 2);
    assert_int_equal(dr_model_sync_stats(other)->imported, 2);
    assert_int_equal(dr_model_sync_stats(other)->duplicates, 0);
    /* the successor skips its own live message */
    for (int i = 0; i < 20; i++) {
        dr_model_sync_poll(next, m7, 100);
        pause_10ms();
    }
    assert_int_equal(dr_model_sync_stats(next)->imported, 1);

    dr_items_view_t a, b;
    dr_model_items(m7, &a);
    dr_model_items(m9, &b);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        int64_t j = dr_model_item_index(m9, a.ids[i], false);
        assert_true(j >= 0);
        for (int k = 0; k < a.dim; k++) assert_float_equal(a.q[i * 8 + k], b.q[(size_t)j * 8 + k], 1e-6);
        assert_float_equal(a.bias[i], b.bias[j], 1e-6);
    }

    free(stored);
    dr_model_sync_free(next);
    dr_model_sync_free(other);
    dr_model_free(m7);
    dr_model_free(m9);
    rd_kafka_destroy(producer);
    dr_embedded_free(broker);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_process_message_applied_by_its_successor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
