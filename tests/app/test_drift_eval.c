/* test_drift_eval.c - the demo's drift evaluation (src/dr_drift_eval.h):
 * the clicks its rank filter lets the pipeline skip change none of its
 * figures. The pipeline is played here by its contract: a click is ranked
 * (a rank drawn from a hash) only when the filter asks for it, with the
 * user's event count as dr_pipeline.h gives it. */
#include "dr_test.h"

#include "dr_drift_eval.h"
#include "dr_report.h"
#include "dr_synth.h"

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

typedef struct played {
    char *json;
    size_t json_len;
    dr_drift_summary_t summary;
    uint64_t ranked; /* clicks ranked */
} played_t;

/* Plays the stream of `conf` through an evaluation; filtered: rank only
 * what dr_drift_eval_wants_rank asks for, else every click. */
static void play(const dr_synth_conf_t *conf, bool filtered, played_t *out) {
    dr_synth_t *s;
    assert_int_equal(dr_synth_new(&s, conf), 0);
    dr_drift_eval_t *e;
    assert_int_equal(dr_drift_eval_new(&e, s, conf->users), 0);
    uint64_t *events = calloc(conf->users + 1, sizeof(*events));
    assert_non_null(events);
    memset(out, 0, sizeof(*out));
    dr_event_t ev;
    while (dr_synth_next(s, &ev)) {
        uint64_t n = events[ev.user_id] + 1; /* this event included, once applied */
        uint64_t h = mix((uint64_t)ev.user_id * 1000003u ^ (uint64_t)ev.item_id ^ (uint64_t)ev.timestamp_ms << 20);
        int64_t rank = -1;
        if (ev.type == DR_EV_CLICK && (!filtered || dr_drift_eval_wants_rank(e, &ev, n))) {
            rank = (int64_t)(h % 40); /* 0: not listable */
            out->ranked++;
        }
        events[ev.user_id] = n;
        dr_observation_t obs = {.hit = -1,
                                .model_rank = rank,
                                .loss = h % 3 == 0 ? -1.0f : (float)(h >> 40) / (float)(1u << 24),
                                .drift = h % 997 == 0,
                                .drift_direction = 1,
                                .drift_arm = ev.user_id % 2 == 0,
                                .user_events = n};
        dr_drift_eval_observe(e, &ev, &obs);
    }
    dr_drift_eval_summary(e, &out->summary);
    FILE *f = open_memstream(&out->json, &out->json_len);
    assert_non_null(f);
    dr_json_t j;
    dr_json_init(&j, f);
    dr_drift_eval_write_json(e, &j);
    fclose(f);
    free(events);
    dr_drift_eval_free(e);
    dr_synth_free(s);
}

static void test_skipped_ranks_change_no_figure(void **state) {
    (void)state;
    dr_synth_conf_t conf;
    dr_synth_conf_default(&conf);
    conf.events = 300000;
    conf.users = 5000; /* heavy-tailed: many users never settle */
    played_t all, some;
    play(&conf, false, &all);
    play(&conf, true, &some);
    print_message("clicks ranked: %" PRIu64 " of %" PRIu64 " (%.1f%%); switched users %" PRIu64 ", detected %" PRIu64 "\n",
                  some.ranked, all.ranked, 100.0 * (double)some.ranked / (double)all.ranked,
                  all.summary.switched_users, all.summary.detected_users);
    assert_true(all.summary.switched_users > 100 && all.summary.pre_hr[0] > 0 && all.summary.pre_hr[1] > 0);
    assert_true(some.ranked < all.ranked / 2);
    assert_memory_equal(&some.summary, &all.summary, sizeof(all.summary));
    assert_int_equal(some.json_len, all.json_len);
    assert_string_equal(some.json, all.json);
    free(all.json);
    free(some.json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skipped_ranks_change_no_figure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
