/* fuzz_user_state.c - libFuzzer target for the records driftrec reads back
 * from RocksDB (learner/records.c): user records of every version, as the
 * pipeline reads them (the configured dimension) and as `driftrec inspect`
 * does (the dimension written in the record), plus item and globals records
 * and model-topic messages (learner/sync.c: another instance's changes, and
 * the pending ones a commit stores).
 *
 * A record may meet other settings than those it was written with (a
 * restart after learner.recent.items, drift.max.buckets, learner.cooc.neighbors
 * or learner.content.dim changed), so each input is read under the defaults
 * and under a small configuration (a ring of 1 to 4 recent events, 2 to 4
 * ADWIN buckets per row, 4 neighbours, content of 4 floats), picked by the
 * input's last byte. A user that decodes is then used as the pipeline would
 * use it, on a model of its own: one event learned, a re-adaptation over its
 * ring, its list scores. Reading memory through a stored length, head or
 * type byte shows up there, under ASan and UBSan.
 *
 * Oracles beyond "no crash, no leak, no hang": a user that decodes has a
 * finite vector and bias, a ring within the configured size (head within
 * it), and re-encoding it is stable (encode, decode, encode gives the same
 * bytes); it stays finite after learning and re-adapting; and the head of
 * its last list read without decoding (dr_user_record_last_list, the
 * withdrawal sweep's) is the decoded one. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"
#include "dr_learner.h"

static dr_learner_conf_t conf;
static dr_model_t *model;

static void die(const char *what) {
    (void)what;
    __builtin_trap();
}

/* The small configuration a restart may bring, picked by the last byte. */
static dr_learner_conf_t small_conf(const uint8_t *data, size_t size) {
    dr_learner_conf_t c = conf;
    unsigned pick = size ? data[size - 1] : 0;
    c.recent_items = 1 + (int)(pick % 4);
    c.drift.max_buckets = 2 + (int)(pick / 4 % 3); /* the defaults have 5 */
    c.cooc_neighbors = 4;
    c.content_dim = 4;
    return c;
}

static dr_model_t *model_for(const dr_learner_conf_t *c) {
    char err[256];
    dr_model_t *m;
    if (dr_model_new(&m, c, err, sizeof err)) die(err);
    return m;
}

/* What the pipeline does with a user it read: learn from one event (which
 * also ages its pending impressions and walks its ring for co-engagement),
 * re-adapt over the ring as after a drift, and score its list. On a model
 * of its own, which knows the items of the user's ring, so that the replay
 * reads every kept entry's type and value. */
static void exercise_user(const dr_learner_conf_t *c, dr_user_t *u) {
    dr_model_t *m = model_for(c);
    for (unsigned i = 0; i < u->recent_len; i++) (void)dr_model_item_index(m, u->recent[i].item_id, true);
    dr_event_t ev = {u->user_id, u->recent_len ? u->recent[0].item_id : 1, DR_EV_CLICK, 0,
                     INT64_C(1700000000000)};
    dr_apply_result_t res;
    int rc = dr_learner_apply(m, u, &ev, 7, &res);
    if (rc != 0 && rc != DR_ENOMEM && rc != DR_ERANGE) die("unexpected apply error");
    if (u->recent_len > c->recent_items || u->recent_head >= c->recent_items) die("ring past its size after an event");
    /* at a cut for the worse (the ring's sample counts decide where the
     * regime starts), then at one that keeps the window */
    for (int direction = 1; direction >= 0; direction--) {
        int replayed = dr_learner_readapt(m, u, direction);
        if (replayed < 0 || replayed > c->recent_items) die("replayed more than the ring holds");
    }
    for (int k = 0; k < c->dim; k++)
        if (!isfinite(u->v[k])) die("non-finite vector after learning");
    dr_items_view_t view;
    dr_model_items(m, &view);
    float *scores = calloc(view.n ? view.n : 1, sizeof(float));
    if (!scores) die("no memory");
    dr_model_add_coengagement(m, u, scores, view.n);
    for (size_t i = 0; i < view.n; i++)
        if (!isfinite(dr_model_score(m, u, (int64_t)i))) die("non-finite score");
    free(scores);
    dr_model_free(m);
}

static void check_user(const dr_learner_conf_t *c, const uint8_t *data, size_t size, bool exercise) {
    dr_user_t *u = NULL, *again = NULL;
    uint8_t *rec1 = NULL, *rec2 = NULL;
    size_t len1 = 0, len2 = 0;
    int rc = dr_user_decode(42, c, data, size, &u);
    /* the withdrawal sweep's look at a stored record: any input, no reading
     * past it; where the record decodes, the decoded user's list and partition */
    int64_t head[DR_LAST_LIST];
    size_t head_len = 0;
    int32_t head_part = -2;
    int peek = dr_user_record_last_list(data, size, &head_part, head, &head_len);
    if (peek != 0 && (peek != DR_ECORRUPT || head_len != 0)) die("last list: unexpected result");
    if (rc) {
        if (rc != DR_ECORRUPT && rc != DR_ENOMEM) die("unexpected error code");
        if (u) die("output set on failure");
        return;
    }
    if (peek != 0 || head_part != u->last_source.partition || head_len != u->last_list_len ||
        memcmp(head, u->last_list, head_len * sizeof(int64_t)) != 0)
        die("the last list read without decoding differs from the decoded one");
    if (!isfinite(u->bias)) die("non-finite bias");
    for (int k = 0; k < c->dim; k++)
        if (!isfinite(u->v[k])) die("non-finite vector");
    if (u->recent_len > DR_RECENT_MAX || u->pending_len > DR_PENDING_IMP || u->last_list_len > DR_LAST_LIST)
        die("ring bounds");
    if (u->recent_len > c->recent_items || u->recent_head >= c->recent_items) die("ring past the configured size");
    for (unsigned i = 0; i < u->recent_len; i++)
        if (u->recent[i].type >= DR_EV__COUNT) die("event type out of range");
    if (dr_user_encode(u, c->dim, &rec1, &len1) != 0) die("cannot re-encode");
    if (dr_user_decode(42, c, rec1, len1, &again) != 0) die("cannot decode our own record");
    if (dr_user_encode(again, c->dim, &rec2, &len2) != 0) die("cannot re-encode twice");
    if (len1 != len2 || memcmp(rec1, rec2, len1) != 0) die("re-encoding is not stable");
    free(rec1);
    free(rec2);
    if (exercise) exercise_user(c, u);
    dr_user_free(u);
    dr_user_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) {
        dr_learner_conf_default(&conf);
        model = model_for(&conf);
    }
    dr_learner_conf_t small = small_conf(data, size);
    check_user(&conf, data, size, true);
    check_user(&small, data, size, true);
    if (size >= 3) { /* as `driftrec inspect` reads it: the record's own dimension */
        dr_learner_conf_t own = conf;
        own.dim = data[1] | data[2] << 8;
        check_user(&own, data, size, false);
    }
    (void)dr_model_load_item(model, 1, data, size);
    (void)dr_model_load_globals(model, data, size);
    /* the same records under the small configuration, on a fresh model */
    dr_model_t *m = model_for(&small);
    (void)dr_model_load_globals(m, data, size);
    (void)dr_model_load_item(m, 1, data, size);
    /* and as a model-topic message from another instance, or the pending
     * changes a commit stored (learner/sync.c) */
    size_t applied, skipped;
    if (dr_model_sync_enable(m) != 0) die("sync");
    (void)dr_model_sync_import(m, data, size, &applied, &skipped);
    (void)dr_model_sync_load_pending(m, data, size);
    dr_model_free(m);
    return 0;
}
