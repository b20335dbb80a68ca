/* sim.c - the feed simulator as a Kafka client (see dr_feed.h): each round
 * it produces the sessions of the round's active users to the events topic,
 * then reads the recommendations topic until every one of them has a list
 * reflecting its last event, so the next round is played on fresh lists. */
#include "feed_internal.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_key.h"
#include "dr_log.h"

#define DECODE_MAX 10000     /* entries a decoded list may have (emit.topk's upper bound) */
#define POLL_MS 50           /* longest single wait for a list */
#define FLUSH_MS 30000

struct dr_feed_sim {
    const dr_feed_world_t *w;
    dr_feed_sim_conf_t conf;
    char topic_events[256], topic_recs[256];
    rd_kafka_t *producer, *consumer;
    dr_codec_t *codec;             /* the simulator thread's own */
    dr_buf_t buf;
    dr_scored_item_t *decoded;     /* [DECODE_MAX] */
    feed_user_t *users;            /* [users + 1] */
    int64_t *active;               /* this round's users */
    size_t n_active;
    uint64_t pending;              /* active users still waiting for a list */
    feed_trending_t trend;
    dr_feed_measure_t *measure;
    feed_player_t player;
    uint64_t decode_errors, delivery_errors;
    atomic_bool stop, done;
    atomic_int round;
    atomic_uint_fast64_t events, lists, timeouts;
    atomic_uint_fast64_t impressions[DR_FEED_ARMS], clicks[DR_FEED_ARMS];
    atomic_uint_fast64_t hidden_shown[DR_FEED_ARMS];
    atomic_uint_fast64_t repeat_shown[DR_FEED_ARMS], stale_shown[DR_FEED_ARMS];
};

void dr_feed_sim_conf_default(dr_feed_sim_conf_t *c) {
    memset(c, 0, sizeof(*c));
    c->topic_events = "driftrec.events";
    c->topic_recs = "driftrec.recommendations";
    dr_codec_conf_default(&c->codec);
    c->round_timeout_s = 3.0;
}

/* Delivery report (on the simulator's thread, inside poll or flush): the
 * user's last event is where its next list must have got to. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    dr_feed_sim_t *s = opaque;
    (void)rk;
    if (m->err) {
        s->delivery_errors++;
        return;
    }
    int64_t user = (int64_t)(intptr_t)m->_private;
    feed_user_t *u = &s->users[user];
    if (m->partition != u->want.partition || m->offset > u->want.offset)
        u->want = (dr_source_pos_t){m->partition, m->offset};
    atomic_fetch_add_explicit(&s->events, 1, memory_order_relaxed);
}

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *const props[][2], size_t n,
                              dr_feed_sim_t *s, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    for (size_t i = 0; i < n; i++)
        if (rd_kafka_conf_set(kc, props[i][0], props[i][1], errstr, errstr_size) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(kc);
            return NULL;
        }
    rd_kafka_conf_set_opaque(kc, s);
    if (type == RD_KAFKA_PRODUCER) rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(type, kc, errstr, errstr_size);
    if (!rk) rd_kafka_conf_destroy(kc);
    return rk;
}

/* A topic's partition count from the cluster's metadata, asked through rk
 * (0 when unknown; *kerr says why when the request itself failed). A
 * producer that asks learns the topic before its first record. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, rd_kafka_resp_err_t *kerr) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    *kerr = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000) : RD_KAFKA_RESP_ERR__FAIL;
    int parts = *kerr || md->topic_cnt < 1 || md->topics[0].err ? 0 : md->topics[0].partition_cnt;
    if (md) rd_kafka_metadata_destroy(md);
    if (rkt) rd_kafka_topic_destroy(rkt);
    return parts;
}

/* Assigns every partition of the recommendations topic, from the beginning
 * (no group: the simulator is every user's reader). */
static int assign_recs(dr_feed_sim_t *s, char *errstr, size_t errstr_size) {
    rd_kafka_resp_err_t kerr;
    int parts = topic_partitions(s->consumer, s->topic_recs, &kerr);
    if (parts < 1) {
        snprintf(errstr, errstr_size, "feed: no partitions found for topic %s: %s", s->topic_recs,
                 rd_kafka_err2str(kerr));
        return DR_EKAFKA;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, s->topic_recs, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    kerr = rd_kafka_assign(s->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (kerr) {
        snprintf(errstr, errstr_size, "feed: assign: %s", rd_kafka_err2str(kerr));
        return DR_EKAFKA;
    }
    return 0;
}

static int open_clients(dr_feed_sim_t *s, char *errstr, size_t errstr_size) {
    /* partitioner: Java's, as every producer of driftrec's (see dr_ingest_kafka_conf) */
    const char *const producer[][2] = {
        {"bootstrap.servers", s->conf.bootstrap}, {"linger.ms", "2"},
        {"compression.type", "lz4"}, {"queue.buffering.max.messages", "1000000"},
        {"client.id", "driftrec-feed-sim"}, {"partitioner", "murmur2_random"}};
    const char *const consumer[][2] = {
        {"bootstrap.servers", s->conf.bootstrap}, {"group.id", "driftrec-feed-sim"},
        {"enable.auto.commit", "false"}, {"enable.partition.eof", "false"},
        {"fetch.wait.max.ms", "5"}, {"client.id", "driftrec-feed-sim"}};
    s->producer = new_client(RD_KAFKA_PRODUCER, producer, sizeof(producer) / sizeof(producer[0]),
                             s, errstr, errstr_size);
    if (!s->producer) return DR_EKAFKA;
    /* the events topic's metadata now: learnt from the first record, it
     * can hold the first round's events for about a second. Best effort. */
    rd_kafka_resp_err_t kerr;
    (void)topic_partitions(s->producer, s->topic_events, &kerr);
    s->consumer = new_client(RD_KAFKA_CONSUMER, consumer, sizeof(consumer) / sizeof(consumer[0]),
                             s, errstr, errstr_size);
    if (!s->consumer) return DR_EKAFKA;
    rd_kafka_poll_set_consumer(s->consumer);
    return assign_recs(s, errstr, errstr_size);
}

/* Produces one event, keyed by its user, the user id riding along for the
 * delivery report. */
static int produce_event(void *ctx, int64_t user_id, const dr_event_t *ev) {
    dr_feed_sim_t *s = ctx;
    int err = dr_codec_encode_event(s->codec, ev, &s->buf);
    if (err) return err;
    char key[DR_ID_KEY_MAX];
    size_t klen = dr_id_key(key, user_id);
    rd_kafka_resp_err_t kerr;
    while ((kerr = rd_kafka_producev(s->producer, RD_KAFKA_V_TOPIC(s->topic_events),
                                     RD_KAFKA_V_KEY(key, klen),
                                     RD_KAFKA_V_VALUE(s->buf.data, s->buf.len),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_OPAQUE((void *)(intptr_t)user_id),
                                     RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(s->producer, 10);
    if (kerr) {
        dr_log(DR_LOG_ERROR, "feed", "cannot produce an event | err=%s", rd_kafka_err2str(kerr));
        return DR_EKAFKA;
    }
    return 0;
}

static int alloc_state(dr_feed_sim_t *s) {
    uint64_t users = dr_feed_world_conf(s->w)->users;
    s->users = calloc(users + 1, sizeof(*s->users));
    s->active = calloc(users, sizeof(*s->active));
    s->decoded = calloc(DECODE_MAX, sizeof(*s->decoded));
    if (!s->users || !s->active || !s->decoded) return DR_ENOMEM;
    if (dr__feed_trending_init(&s->trend, dr_feed_world_conf(s->w)->items)) return DR_ENOMEM;
    return dr_feed_measure_new(&s->measure, s->w);
}

/* Every user's arm: the popular one by the world's own split, else
 * driftrec's drift / control split. */
static void assign_arms(dr_feed_sim_t *s) {
    uint64_t users = dr_feed_world_conf(s->w)->users;
    for (uint64_t id = 1; id <= users; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(s->w, (int64_t)id, &t);
        dr_feed_arm_t arm = t.popular ? DR_FEED_ARM_POPULAR
                          : s->conf.drift_arm && !s->conf.drift_arm(s->conf.drift_arm_ctx, (int64_t)id)
                              ? DR_FEED_ARM_CONTROL : DR_FEED_ARM_DRIFT;
        s->users[id].arm = (uint8_t)arm;
        s->users[id].want = s->users[id].list_src = (dr_source_pos_t){-1, -1};
        dr_feed_measure_set_arm(s->measure, (int64_t)id, arm);
    }
}

int dr_feed_sim_new(dr_feed_sim_t **out, const dr_feed_world_t *world,
                    const dr_feed_sim_conf_t *conf, char *errstr, size_t errstr_size) {
    *out = NULL;
    if (!conf->bootstrap || !conf->topic_events || !conf->topic_recs || conf->round_timeout_s <= 0) {
        snprintf(errstr, errstr_size, "feed: bootstrap, topics and a positive round timeout are needed");
        return DR_EINVAL;
    }
    dr_feed_sim_t *s = calloc(1, sizeof(*s));
    if (!s) return DR_ENOMEM;
    s->w = world;
    s->conf = *conf;
    snprintf(s->topic_events, sizeof(s->topic_events), "%s", conf->topic_events);
    snprintf(s->topic_recs, sizeof(s->topic_recs), "%s", conf->topic_recs);
    int err = alloc_state(s);
    if (err) snprintf(errstr, errstr_size, "feed: %s", dr_strerror(err));
    if (!err) err = dr_codec_new(&s->codec, &conf->codec, errstr, errstr_size);
    if (!err) err = open_clients(s, errstr, errstr_size);
    if (err) {
        dr_feed_sim_free(s);
        return err;
    }
    s->conf.bootstrap = NULL; /* not kept: the caller's string */
    assign_arms(s);
    s->player = (feed_player_t){.w = world, .trend = &s->trend, .measure = s->measure,
                                .rng = dr_mix64(dr_feed_world_conf(world)->seed ^ 0x5e551011ULL),
                                .emit = produce_event, .emit_ctx = s};
    atomic_init(&s->stop, false);
    atomic_init(&s->done, false);
    atomic_init(&s->round, 0);
    *out = s;
    return 0;
}

static bool reflects_last_event(const feed_user_t *u) {
    return u->list_src.partition == u->want.partition && u->list_src.offset >= u->want.offset;
}

/* A message of the recommendations topic: the user's newest list (a null
 * value, a tombstone, clears it). */
static void take_list(dr_feed_sim_t *s, const rd_kafka_message_t *m) {
    uint64_t users = dr_feed_world_conf(s->w)->users;
    char key[24] = "";
    if (m->err || !m->key || m->key_len == 0 || m->key_len >= sizeof(key)) return;
    memcpy(key, m->key, m->key_len);
    int64_t user = strtoll(key, NULL, 10);
    if (user < 1 || (uint64_t)user > users) return;
    feed_user_t *u = &s->users[user];
    if (!m->payload) {
        u->list_len = 0;
        return;
    }
    dr_recs_t recs;
    if (dr_codec_decode_recs(s->codec, m->payload, m->len, &recs, s->decoded, DECODE_MAX, NULL, 0)) {
        s->decode_errors++;
        return;
    }
    u->list_len = (uint8_t)(recs.n_items < FEED_LIST_MAX ? recs.n_items : FEED_LIST_MAX);
    for (int i = 0; i < u->list_len; i++) u->list[i] = recs.items[i].item_id;
    u->list_drift = recs.drift;
    u->list_src = recs.source;
    atomic_fetch_add_explicit(&s->lists, 1, memory_order_relaxed);
    if (u->waiting && reflects_last_event(u)) {
        u->waiting = false;
        s->pending--;
    }
}

/* Reads lists until every user active this round has one reflecting its
 * last event, or the round's timeout passed (counted; those users play
 * their next session on whatever list they have then). */
static void await_lists(dr_feed_sim_t *s) {
    s->pending = 0;
    for (size_t i = 0; i < s->n_active; i++) {
        feed_user_t *u = &s->users[s->active[i]];
        u->waiting = u->want.offset >= 0 && !reflects_last_event(u);
        s->pending += u->waiting;
    }
    int64_t deadline = dr_mono_ms() + (int64_t)(s->conf.round_timeout_s * 1000);
    while (s->pending > 0 && !atomic_load(&s->stop)) {
        int64_t left = deadline - dr_mono_ms();
        if (left <= 0) {
            atomic_fetch_add_explicit(&s->timeouts, 1, memory_order_relaxed);
            dr_log(DR_LOG_DEBUG, "feed", "round timed out | waiting=%" PRIu64, s->pending);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(s->consumer, (int)(left < POLL_MS ? left : POLL_MS));
        if (!m) continue;
        take_list(s, m);
        rd_kafka_message_destroy(m);
    }
    for (size_t i = 0; i < s->n_active; i++) s->users[s->active[i]].waiting = false;
}

/* Plays the sessions of one round and flushes them. */
static int play_round(dr_feed_sim_t *s, int round) {
    uint64_t users = dr_feed_world_conf(s->w)->users;
    dr__feed_trending_roll(&s->trend);
    s->n_active = 0;
    for (uint64_t id = 1; id <= users; id++) {
        if (!dr_feed_world_active(s->w, (int64_t)id, round)) continue;
        s->active[s->n_active++] = (int64_t)id;
        feed_user_t *u = &s->users[id];
        feed_session_counts_t n;
        int err = dr__feed_play_session(&s->player, u, (int64_t)id, round, &n);
        atomic_fetch_add_explicit(&s->hidden_shown[u->arm], (uint64_t)n.hidden_shown, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->repeat_shown[u->arm], (uint64_t)n.repeat_shown, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->stale_shown[u->arm], (uint64_t)n.stale_shown, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->impressions[u->arm], (uint64_t)n.impressions, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->clicks[u->arm], (uint64_t)n.clicks, memory_order_relaxed);
        if (err) return err;
        rd_kafka_poll(s->producer, 0); /* delivery reports as they come */
    }
    if (rd_kafka_flush(s->producer, FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        dr_log(DR_LOG_ERROR, "feed", "events not delivered in time | round=%d", round);
        return DR_EKAFKA;
    }
    return 0;
}

int dr_feed_sim_run(dr_feed_sim_t *s) {
    int rounds = dr_feed_world_conf(s->w)->rounds, err = 0;
    for (int r = 0; r < rounds && !err; r++) {
        if (atomic_load(&s->stop)) {
            err = DR_ESTOPPED;
            break;
        }
        if (!(err = play_round(s, r))) {
            await_lists(s);
            atomic_store(&s->round, r + 1);
        }
    }
    if (s->delivery_errors || s->decode_errors)
        dr_log(DR_LOG_WARN, "feed", "simulator saw errors | delivery=%" PRIu64 " decode=%" PRIu64,
               s->delivery_errors, s->decode_errors);
    atomic_store(&s->done, true);
    return err;
}

void dr_feed_sim_request_stop(dr_feed_sim_t *s) { atomic_store(&s->stop, true); }

void dr_feed_sim_progress(dr_feed_sim_t *s, dr_feed_progress_t *out) {
    out->round = atomic_load(&s->round);
    out->rounds = dr_feed_world_conf(s->w)->rounds;
    out->events = atomic_load_explicit(&s->events, memory_order_relaxed);
    out->lists = atomic_load_explicit(&s->lists, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&s->timeouts, memory_order_relaxed);
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        out->impressions[a] = atomic_load_explicit(&s->impressions[a], memory_order_relaxed);
        out->hidden_shown[a] = atomic_load_explicit(&s->hidden_shown[a], memory_order_relaxed);
        out->repeat_shown[a] = atomic_load_explicit(&s->repeat_shown[a], memory_order_relaxed);
        out->stale_shown[a] = atomic_load_explicit(&s->stale_shown[a], memory_order_relaxed);
        out->clicks[a] = atomic_load_explicit(&s->clicks[a], memory_order_relaxed);
    }
    out->done = atomic_load(&s->done);
}

void dr_feed_sim_detected_curve(const dr_feed_sim_t *s, const dr_feed_detect_t *d,
                                dr_feed_detected_curve_t *out) {
    dr_feed_measure_detected_curve(s->measure, d, out);
}

void dr_feed_sim_report(const dr_feed_sim_t *s, dr_feed_report_t *out) {
    dr_feed_measure_report(s->measure, out);
}

void dr_feed_sim_free(dr_feed_sim_t *s) {
    if (!s) return;
    if (s->consumer) {
        rd_kafka_consumer_close(s->consumer);
        rd_kafka_destroy(s->consumer);
    }
    if (s->producer) {
        rd_kafka_flush(s->producer, 5000);
        rd_kafka_destroy(s->producer);
    }
    dr_codec_free(s->codec);
    dr_buf_free(&s->buf);
    dr__feed_trending_free(&s->trend);
    dr_feed_measure_free(s->measure);
    free(s->decoded);
    free(s->users);
    free(s->active);
    free(s);
}
