/* demo.c - `driftrec demo`: starts the embedded broker and runs the real
 * pipeline in one of two scenarios, with live progress and DIR/report.json:
 *   feed (default)  a closed loop: simulated users (feed/dr_feed.h), on a
 *                   thread of their own, read the lists driftrec publishes
 *                   and produce their reactions back to the events topic;
 *   openloop        a seeded synthetic stream (dr_synth.h), produced first,
 *                   then consumed (benchmarks and tests use it). */
#include "dr_demo.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "dr_codec.h"
#include "dr_config.h"
#include "dr_drift_eval.h"
#include "dr_embedded.h"
#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_key.h"
#include "dr_feed.h"
#include "dr_ingest.h"
#include "dr_log.h"
#include "dr_pipeline.h"
#include "dr_report.h"
#include "dr_report_html.h"
#include "dr_synth.h"

typedef enum { SCENARIO_FEED = 0, SCENARIO_OPENLOOP } scenario_t;

/* After the simulator is done, how long the pipeline may take to consume
 * what is left (only rounds that timed out leave anything). */
#define FEED_DRAIN_S 10.0
#define FEED_CURVE_STEP 5 /* impressions between points of the switch curve */
#define NOT_GIVEN UINT64_MAX

typedef struct demo_opts {
    scenario_t scenario;
    bool scenario_given;
    dr_synth_conf_t synth;
    dr_feed_conf_t feed;
    uint64_t users, items, seed; /* as given; NOT_GIVEN: the scenario's default */
    bool seed_given;
    int rounds;                /* -1: the default */
    int partitions;
    const char *report_dir;
    const char *bootstrap;     /* external broker; NULL: embedded */
    char state_dir[1024];
    bool keep_state, quiet, produce_only, no_drift_eval;
    double erase_share;        /* --produce-only: share of events followed by an erase */
    dr_config_t cfg;
} demo_opts_t;

typedef struct demo_run {
    demo_opts_t *o;
    dr_pipeline_t *pipeline;
    dr_synth_t *truth;
    dr_drift_eval_t *drift;
    /* the feed scenario */
    dr_feed_world_t *world;
    dr_feed_sim_t *sim;
    dr_feed_detect_t *detect;
    uv_thread_t sim_thread;
    bool sim_started, stopping;
    int sim_rc;
    double t_sim_done;
    uv_timer_t progress;
    uv_signal_t sigint, sigterm;
    double t_start, t_produced, t_end;
    uint64_t last_consumed;
    /* the retrieval audit's counts when two thirds of the events were in
     * (openloop): the recall of the last third, nearer the index's steady
     * state than the run's, which the first build's stale rows pull down */
    bool audit_marked;
    uint64_t audit_hits_at, audit_slots_at;
    double last_t;
    bool tty;
} demo_run_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: driftrec demo [--scenario feed|openloop] [--rounds R] [--events N]\n"
            "                     [--users U] [--items I] [--partitions P] [--seed S]\n"
            "                     [--report DIR] [--state-dir DIR] [--keep-state] [--quiet]\n"
            "                     [--bootstrap HOST:PORT] [--no-drift-eval]\n"
            "                     [--produce-only [--erase-share X]] [--set key=value]...\n"
            "Runs the whole pipeline on the embedded broker (librdkafka's mock cluster on\n"
            "127.0.0.1), shows live progress and writes DIR/report.json (default DIR:\n"
            "demo-report).\n"
            "--scenario feed (default): a closed loop. Simulated users with hidden tastes\n"
            "read the lists driftrec publishes and produce their impressions, clicks,\n"
            "dwells, likes, shares and hides back, round by round (default 240 rounds of 30\n"
            "simulated minutes, 8000 users, 5000 items, seed 1); 20%% switch taste abruptly,\n"
            "10%% drift gradually, and one cluster starts trending for everyone at 75%% of\n"
            "the run. 10%% of users (by hash) get a most-popular feed, the others driftrec's\n"
            "lists, half of them with drift handling. The report gives CTR per arm and\n"
            "round, detection delays, false alarms and recovery (feed/README.md).\n"
            "--scenario openloop: a synthetic stream of sessions, produced first (default\n"
            "400000 events, 4000 users, 2000 items; 20%% of users switch interests).\n"
            "Both: 16 partitions; half the users (by hash) get drift handling; a catalog\n"
            "topic (driftrec.items) gives every item a 16-float content embedding.\n"
            "--bootstrap uses a running broker instead (e.g. `driftrec broker --topic ...`),\n"
            "so that other tools (kcat) can read the same topics; with --produce-only (which\n"
            "implies openloop) it only produces the stream there (for `driftrec run` and\n"
            "test harnesses); --erase-share then follows that share of the events (seeded)\n"
            "with an erase request for the event's user (a null value keyed by the user),\n"
            "as `driftrec erase` sends.\n"
            "openloop's drift evaluation ranks the clicks of the users whose interest switches\n"
            "(before the switch and 50 events after it) under the current model (a pass over\n"
            "the item matrix each); --no-drift-eval skips it (feed: skips the detection\n"
            "bookkeeping) to show the pipeline's own speed.\n");
}

static int parse_scenario(demo_opts_t *o, const char *name) {
    if (!strcmp(name, "feed")) o->scenario = SCENARIO_FEED;
    else if (!strcmp(name, "openloop")) o->scenario = SCENARIO_OPENLOOP;
    else return -1;
    o->scenario_given = true;
    return 0;
}

static const struct option demo_options[] = {
    {"events", required_argument, 0, 'n'}, {"users", required_argument, 0, 'u'},
    {"items", required_argument, 0, 'i'},  {"partitions", required_argument, 0, 'p'},
    {"report", required_argument, 0, 'r'}, {"state-dir", required_argument, 0, 's'},
    {"keep-state", no_argument, 0, 'k'},   {"quiet", no_argument, 0, 'q'},
    {"seed", required_argument, 0, 'S'},   {"set", required_argument, 0, 'x'},
    {"bootstrap", required_argument, 0, 'b'}, {"produce-only", no_argument, 0, 'P'},
    {"no-drift-eval", no_argument, 0, 'E'}, {"erase-share", required_argument, 0, 'X'},
    {"scenario", required_argument, 0, 'C'}, {"rounds", required_argument, 0, 'R'},
    {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
#define DEMO_SHORT_OPTS "n:u:i:p:r:s:kqS:x:b:PEX:C:R:h"

/* One option of the first pass (everything but --set). 0, 1 (--help) or 2. */
static int take_opt(demo_opts_t *o, int c) {
    switch (c) {
    case 'n': o->synth.events = strtoull(optarg, NULL, 10); break;
    case 'u': o->users = strtoull(optarg, NULL, 10); break;
    case 'i': o->items = strtoull(optarg, NULL, 10); break;
    case 'p': o->partitions = atoi(optarg); break;
    case 'r': o->report_dir = optarg; break;
    case 's': snprintf(o->state_dir, sizeof(o->state_dir), "%s", optarg); break;
    case 'k': o->keep_state = true; break;
    case 'q': o->quiet = true; break;
    case 'b': o->bootstrap = optarg; break;
    case 'P': o->produce_only = true; break;
    case 'E': o->no_drift_eval = true; break;
    case 'X': {
        char *end;
        o->erase_share = strtod(optarg, &end);
        if (end == optarg || *end) o->erase_share = -1; /* refused below */
        break;
    }
    case 'S': o->seed = strtoull(optarg, NULL, 10); o->seed_given = true; break;
    case 'R': o->rounds = atoi(optarg); break;
    case 'C':
        if (parse_scenario(o, optarg)) {
            fprintf(stderr, "driftrec demo: --scenario takes feed or openloop\n");
            return 2;
        }
        break;
    case 'x': break; /* second pass */
    case 'h': usage(stdout); return 1;
    default: usage(stderr); return 2;
    }
    return 0;
}

/* Sizes and seed from the options or the scenario's defaults. 0 or 2. */
static int settle_scenario(demo_opts_t *o) {
    if (o->produce_only && o->scenario_given && o->scenario == SCENARIO_FEED) {
        fprintf(stderr, "driftrec demo: --produce-only produces the openloop stream, not the feed\n");
        return 2;
    }
    if (o->produce_only) o->scenario = SCENARIO_OPENLOOP;
    o->synth.users = o->users != NOT_GIVEN ? o->users : 4000;
    o->synth.items = o->items != NOT_GIVEN ? o->items : 2000;
    if (o->users != NOT_GIVEN) o->feed.users = o->users;
    if (o->items != NOT_GIVEN) o->feed.items = o->items;
    if (o->seed_given) o->synth.seed = o->feed.seed = o->seed;
    if (o->rounds != -1) o->feed.rounds = o->rounds;
    uint64_t items = o->scenario == SCENARIO_FEED ? o->feed.items : o->synth.items;
    if (o->synth.events < 1 || o->synth.users < 1 || o->feed.users < 1 || items < 40 || o->partitions < 1 ||
        o->partitions > 1024 || o->feed.rounds < 10) {
        fprintf(stderr, "driftrec demo: need --events >= 1, --users >= 1, --items >= 40, "
                        "--partitions 1..1024, --rounds >= 10\n");
        return 2;
    }
    if (!(o->erase_share >= 0 && o->erase_share <= 1) || (o->erase_share > 0 && !o->produce_only)) {
        fprintf(stderr, "driftrec demo: --erase-share takes a share in [0, 1], with --produce-only\n");
        return 2;
    }
    return 0;
}

/* Two passes: the options, then the scenario's settings, then the --set
 * pairs over them (so --set overrides what the scenario chose). */
static int parse_opts(demo_opts_t *o, int argc, char **argv) {
    char err[512];
    int c, rc;
    while ((c = getopt_long(argc, argv, DEMO_SHORT_OPTS, demo_options, NULL)) != -1)
        if ((rc = take_opt(o, c))) return rc;
    if ((rc = settle_scenario(o))) return rc;
    /* the closed loop waits for lists each round: publish them sooner */
    if (o->scenario == SCENARIO_FEED) dr_config_set(&o->cfg, "emit.interval.ms", "20", NULL, 0);
    optind = 0; /* GNU getopt: start over */
    while ((c = getopt_long(argc, argv, DEMO_SHORT_OPTS, demo_options, NULL)) != -1) {
        if (c != 'x') continue;
        if (dr_config_set_pair(&o->cfg, optarg, err, sizeof(err))) {
            fprintf(stderr, "driftrec demo: %s\n", err);
            return 2;
        }
    }
    return 0;
}

/* Produces one message (value NULL: a null value), waiting while the
 * producer's queue is full. 0 or DR_EKAFKA. */
static int produce_waiting(rd_kafka_t *rk, const char *topic, const char *key, size_t klen,
                           const void *value, size_t len) {
    rd_kafka_resp_err_t kerr;
    while ((kerr = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, klen),
                                     RD_KAFKA_V_VALUE((void *)value, len),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
    return kerr ? DR_EKAFKA : 0;
}

static rd_kafka_t *new_producer(const char *bootstraps) {
    char e[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    /* partitioner: Java's, as every producer of ours (dr_ingest_kafka_conf) */
    const char *props[][2] = {{"bootstrap.servers", bootstraps}, {"linger.ms", "20"},
                              {"batch.num.messages", "10000"}, {"compression.type", "lz4"},
                              {"queue.buffering.max.messages", "2000000"},
                              {"partitioner", "murmur2_random"}};
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
        rd_kafka_conf_set(kc, props[i][0], props[i][1], e, sizeof(e));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof(e));
    if (!rk) fprintf(stderr, "driftrec demo: %s\n", e);
    return rk;
}

/* An item's content embedding, from whichever world the scenario has. */
typedef void (*embed_fn)(const void *world, int64_t item_id, float *out);
static void synth_embed(const void *s, int64_t item, float *out) { dr_synth_item_embedding(s, item, out); }
static void feed_embed(const void *w, int64_t item, float *out) { dr_feed_world_item_embedding(w, item, out); }
_Static_assert(DR_SYNTH_CONTENT_DIM == DR_FEED_CONTENT_DIM, "one content dimension for both scenarios");

/* The catalog: every item with its content embedding and, in the feed
 * world, its topic (the item's cluster, as a post carries its topic);
 * nothing without a catalog topic. */
static int produce_catalog(demo_opts_t *o, rd_kafka_t *rk, dr_codec_t *codec, uint64_t items,
                           embed_fn embed, const void *world, const dr_feed_world_t *feed) {
    dr_buf_t buf = {0};
    int err = 0;
    for (uint64_t item = 1; !err && o->cfg.topic_catalog[0] && item <= items; item++) {
        float emb[DR_SYNTH_CONTENT_DIM];
        embed(world, (int64_t)item, emb);
        int64_t topic = feed ? dr_feed_world_item_cluster(feed, (int64_t)item) : -1;
        dr_item_rec_t it = {(int64_t)item, emb, DR_SYNTH_CONTENT_DIM, false, false, -1, topic, -1};
        char key[DR_ID_KEY_MAX];
        size_t klen = dr_id_key(key, (int64_t)item);
        if ((err = dr_codec_encode_item(codec, &it, &buf))) break;
        err = produce_waiting(rk, o->cfg.topic_catalog, key, klen, buf.data, buf.len);
    }
    dr_buf_free(&buf);
    return err;
}

/* Produces the whole synthetic stream, keyed by user, Avro-encoded. */
static int produce_events(demo_opts_t *o, rd_kafka_t *rk, dr_codec_t *codec, dr_synth_t *s) {
    dr_buf_t buf = {0};
    dr_event_t ev;
    int err = 0;
    uint64_t erase_rng = dr_mix64(o->synth.seed ^ 0xe2a5eULL), n_erases = 0;
    while (!err && dr_synth_next(s, &ev)) {
        char key[DR_ID_KEY_MAX];
        size_t klen = dr_id_key(key, ev.user_id);
        if ((err = dr_codec_encode_event(codec, &ev, &buf))) break;
        bool erase = o->erase_share > 0 && dr_rand01(&erase_rng) < o->erase_share;
        n_erases += erase;
        /* the event, then (sometimes) the user's erase request: a null value */
        err = produce_waiting(rk, o->cfg.topic_events, key, klen, buf.data, buf.len);
        if (!err && erase) err = produce_waiting(rk, o->cfg.topic_events, key, klen, NULL, 0);
    }
    if (!err && n_erases > 0)
        fprintf(stderr, "produced %" PRIu64 " erase requests among the events\n", n_erases);
    dr_buf_free(&buf);
    return err;
}

/* The end offsets of a topic's n partitions (-1 where not learnt). */
static void topic_ends(rd_kafka_t *rk, const char *topic, int n, int64_t *ends) {
    for (int p = 0; p < n; p++) {
        int64_t lo, hi;
        ends[p] = dr_ingest_watermarks(rk, topic, p, &lo, &hi, 10000) ? -1 : hi;
    }
}

/* Whether the broker still keeps every record produced to topic since its
 * ends were before[0..n); says on stderr what it dropped. The embedded
 * broker keeps ~5 MiB a partition and drops the oldest records silently:
 * a lost event left the demo waiting for it, a lost catalog record an item
 * with no content. */
static bool topic_kept_all(rd_kafka_t *rk, const char *topic, const int64_t *before, int n, const char *hint) {
    int64_t dropped = 0;
    for (int p = 0; p < n; p++) {
        int64_t lo, hi;
        if (before[p] < 0 || dr_ingest_watermarks(rk, topic, p, &lo, &hi, 10000)) continue;
        if (lo > before[p]) dropped += (lo < hi ? lo : hi) - before[p];
    }
    if (dropped > 0)
        fprintf(stderr,
                "driftrec demo: the broker dropped the oldest %" PRId64 " records produced to %s (the embedded "
                "broker keeps ~5 MiB per partition): %s\n",
                dropped, topic, hint);
    return dropped == 0;
}

/* The catalog, then (openloop) the stream, flushed; fails when the broker
 * did not keep all of it. world: the feed's world, or NULL for the
 * openloop scenario. */
static int produce_inputs(demo_opts_t *o, const char *bootstraps, const dr_feed_world_t *world) {
    char e[512];
    rd_kafka_t *rk = new_producer(bootstraps);
    if (!rk) return DR_EKAFKA;
    /* the topics' metadata first: learnt from the first record instead, it
     * holds the records for about a second */
    int n_events, n_catalog = 0;
    if (dr_ingest_topic_partitions_err(rk, o->cfg.topic_events, 10000, &n_events, e, sizeof(e)) != 0) {
        /* else every record would wait out its delivery timeout (minutes) */
        fprintf(stderr, "driftrec demo: %s: nothing was produced\n", e);
        rd_kafka_destroy(rk);
        return DR_EKAFKA;
    }
    if (o->cfg.topic_catalog[0] && dr_ingest_topic_partitions(rk, o->cfg.topic_catalog, 10000, &n_catalog) != 0)
        n_catalog = 0;
    if (n_events > DR_INGEST_MAX_PARTITIONS) n_events = DR_INGEST_MAX_PARTITIONS;
    if (n_catalog > DR_INGEST_MAX_PARTITIONS) n_catalog = DR_INGEST_MAX_PARTITIONS;
    int64_t *ends = malloc(2 * DR_INGEST_MAX_PARTITIONS * sizeof(*ends));
    if (!ends) {
        rd_kafka_destroy(rk);
        return DR_ENOMEM;
    }
    /* where each partition ends before producing: what the broker dropped of ours is told after */
    topic_ends(rk, o->cfg.topic_events, n_events, ends);
    topic_ends(rk, o->cfg.topic_catalog, n_catalog, ends + DR_INGEST_MAX_PARTITIONS);
    dr_synth_t *s = NULL;
    dr_codec_t *codec = NULL;
    int err = world ? 0 : dr_synth_new(&s, &o->synth);
    if (!err) err = dr_codec_new(&codec, &o->cfg.codec, e, sizeof(e));
    if (!err && world)
        err = produce_catalog(o, rk, codec, o->feed.items, feed_embed, world, world);
    else if (!err)
        err = produce_catalog(o, rk, codec, o->synth.items, synth_embed, s, NULL);
    if (!err && !world) err = produce_events(o, rk, codec, s);
    if (!err && rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) err = DR_EKAFKA;
    if (err) fprintf(stderr, "driftrec demo: producing the inputs failed: %s\n", dr_strerror(err));
    if (!err && (!topic_kept_all(rk, o->cfg.topic_catalog, ends + DR_INGEST_MAX_PARTITIONS, n_catalog,
                                 "give the catalog topic more partitions, or run with fewer --items") ||
                 !topic_kept_all(rk, o->cfg.topic_events, ends, n_events, "use more --partitions or fewer --events")))
        err = DR_ERANGE;
    free(ends);
    dr_codec_free(codec);
    dr_synth_free(s);
    rd_kafka_destroy(rk);
    return err;
}

static void print_progress(demo_run_t *r, bool final) {
    dr_pipeline_stats_t st;
    dr_pipeline_stats(r->pipeline, &st);
    double now = dr_mono_s();
    double rate = now > r->last_t ? (double)(st.consumed - r->last_consumed) / (now - r->last_t) : 0;
    r->last_consumed = st.consumed;
    r->last_t = now;
    if (r->o->quiet && !final) return;
    if (r->sim) {
        dr_feed_progress_t fp;
        dr_feed_sim_progress(r->sim, &fp);
        fprintf(stderr, "%s[%6.1fs] round %d/%d  events %" PRIu64 "  %7.0f ev/s  lists %" PRIu64
                "  ctr drift %.3f control %.3f popular %.3f  timeouts %" PRIu64 "%s",
                r->tty ? "\r" : "", now - r->t_produced, fp.round, fp.rounds, st.consumed, rate,
                st.lists_emitted, dr_feed_ctr(fp.clicks[0], fp.impressions[0]),
                dr_feed_ctr(fp.clicks[1], fp.impressions[1]),
                dr_feed_ctr(fp.clicks[2], fp.impressions[2]), fp.timeouts,
                r->tty && !final ? "" : "\n");
        return;
    }
    fprintf(stderr, "%s[%6.1fs] consumed %" PRIu64 "/%" PRIu64 "  %8.0f ev/s  lag %" PRId64
            "  lists %" PRIu64 "  dlq %" PRIu64 "%s%s",
            r->tty ? "\r" : "", now - r->t_produced, st.consumed, r->o->synth.events, rate, st.lag,
            st.lists_emitted, st.dead_lettered, st.paused ? "  (paused)" : "          ",
            r->tty && !final ? "" : "\n");
}

/* Closes the demo's own loop handles and stops the pipeline: uv_run returns. */
static void stop_all(demo_run_t *r) {
    r->t_end = dr_mono_s();
    uv_timer_stop(&r->progress);
    uv_close((uv_handle_t *)&r->progress, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    dr_pipeline_stop(r->pipeline);
}

static void on_progress(uv_timer_t *t) {
    demo_run_t *r = t->data;
    print_progress(r, false);
    dr_pipeline_stats_t st;
    dr_pipeline_stats(r->pipeline, &st);
    if (!r->audit_marked && r->o->synth.events > 0 && st.consumed >= r->o->synth.events / 3 * 2) {
        r->audit_marked = true;
        r->audit_hits_at = st.retrieval_audit_hits;
        r->audit_slots_at = st.retrieval_audit_slots;
    }
    if (st.consumed >= r->o->synth.events || st.failed) stop_all(r);
}

static void on_signal(uv_signal_t *h, int sig) {
    demo_run_t *r = h->data;
    dr_log(DR_LOG_INFO, "demo", "signal received, stopping | signal=%d", sig);
    r->o->synth.events = 0; /* openloop: the next progress tick stops the pipeline */
    r->stopping = true;     /* feed: once the simulator has returned */
    if (r->sim) dr_feed_sim_request_stop(r->sim);
}

/* The catalog topic's partitions on the embedded broker, which keeps ~5
 * MiB of each (STACK-NOTES): a record is ~100 bytes (16 floats of
 * embedding that do not compress), so 20,000 items a partition. One
 * partition held 60,000 of 100,000 items, and the rest of the run met
 * those items' events with no content, topic or retrieval row. */
static int catalog_partitions(const demo_opts_t *o) {
    uint64_t items = o->scenario == SCENARIO_FEED ? o->feed.items : o->synth.items;
    uint64_t parts = (items + 19999) / 20000;
    return parts < 1 ? 1 : parts > 256 ? 256 : (int)parts;
}

/* Creates the state directory, the embedded broker and its topics, and
 * points the configuration at them. */
static int prepare(demo_opts_t *o, dr_embedded_t **broker) {
    char err[512];
    if (o->state_dir[0] == '\0') {
        snprintf(o->state_dir, sizeof(o->state_dir), "/tmp/driftrec-demo-XXXXXX");
        if (!mkdtemp(o->state_dir)) { perror("driftrec demo: mkdtemp"); return DR_EIO; }
    }
    const char *bs = o->bootstrap;
    if (!bs) {
        if (dr_embedded_new(broker, 1, err, sizeof(err))) goto out_err;
        const char *topics[] = {o->cfg.topic_events, o->cfg.topic_recs};
        for (int i = 0; i < 2; i++)
            if (dr_embedded_create_topic(*broker, topics[i], o->partitions, err, sizeof(err))) goto out_err;
        if (dr_embedded_create_topic(*broker, o->cfg.topic_dlq, 1, err, sizeof(err))) goto out_err;
        if (strcmp(o->cfg.topic_changelog, "-") != 0 &&
            dr_embedded_create_topic(*broker, o->cfg.topic_changelog, o->partitions, err, sizeof(err)))
            goto out_err;
        if (strcmp(o->cfg.topic_model, "-") != 0 &&
            dr_embedded_create_topic(*broker, o->cfg.topic_model, 1, err, sizeof(err)))
            goto out_err;
        if (o->cfg.topic_catalog[0] &&
            dr_embedded_create_topic(*broker, o->cfg.topic_catalog, catalog_partitions(o), err, sizeof(err)))
            goto out_err;
        bs = dr_embedded_bootstraps(*broker);
    }
    const char *sets[][2] = {{"kafka.bootstrap.servers", bs},
                             {"kafka.fetch.wait.max.ms", "10"},
                             {"kafka.queued.min.messages", "1000000"},
                             {"state.dir", o->state_dir}};
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        if (dr_config_set(&o->cfg, sets[i][0], sets[i][1], err, sizeof(err))) goto out_err;
    return 0;
out_err:
    fprintf(stderr, "driftrec demo: %s\n", err);
    return DR_EKAFKA;
}

/* ---- the feed scenario ----------------------------------------------------- */

static void sim_main(void *arg) {
    demo_run_t *r = arg;
    r->sim_rc = dr_feed_sim_run(r->sim);
}

static bool feed_drift_arm(void *pipeline, int64_t user_id) {
    return dr_pipeline_drift_arm(pipeline, user_id);
}

/* The pipeline's observer (on the loop thread): what detection needs. */
static void feed_observe(void *detect, const dr_event_t *ev, const dr_observation_t *obs) {
    dr_feed_obs_t o = {.drift = obs->drift, .drift_direction = obs->drift_direction,
                       .global_drift = obs->global_drift, .global_direction = obs->global_direction,
                       .drift_arm = obs->drift_arm};
    dr_feed_detect_observe(detect, ev, &o);
}

/* Starts the simulator once the pipeline has its partitions (the group
 * join takes seconds: the first round would otherwise time out), and stops
 * the pipeline once the simulator returned and its events are consumed. */
static void on_feed_progress(uv_timer_t *t) {
    demo_run_t *r = t->data;
    dr_pipeline_stats_t st;
    dr_pipeline_stats(r->pipeline, &st);
    if (!r->sim_started && !r->stopping && st.assigned_partitions > 0) {
        if (uv_thread_create(&r->sim_thread, sim_main, r) == 0) r->sim_started = true;
        else r->stopping = true;
    }
    print_progress(r, false);
    if (st.failed) {
        r->stopping = true;
        dr_feed_sim_request_stop(r->sim);
    }
    dr_feed_progress_t fp;
    dr_feed_sim_progress(r->sim, &fp);
    if (r->sim_started && !fp.done) return;
    if (!r->sim_started && !r->stopping) return;
    double now = dr_mono_s();
    if (r->t_sim_done == 0) r->t_sim_done = now;
    if (r->stopping || st.consumed >= fp.events || now - r->t_sim_done > FEED_DRAIN_S) stop_all(r);
}

/* A start that failed left handles open on the loop (dr_pipeline.h): they
 * close before the pipeline is freed. */
static void stop_failed_start(dr_pipeline_t *p, uv_loop_t *loop) {
    dr_pipeline_stop(p);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void start_loop_handles(demo_run_t *r, uv_loop_t *loop, uv_timer_cb tick) {
    r->tty = isatty(STDERR_FILENO);
    r->last_t = r->t_produced = dr_mono_s();
    uv_timer_init(loop, &r->progress);
    uv_signal_init(loop, &r->sigint);
    uv_signal_init(loop, &r->sigterm);
    r->progress.data = r->sigint.data = r->sigterm.data = r;
    uv_timer_start(&r->progress, tick, 250, 250);
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
}

static int run_feed(demo_run_t *r, uv_loop_t *loop) {
    demo_opts_t *o = r->o;
    char err[512] = "";
    const char *bs = dr_config_kafka(&o->cfg, "bootstrap.servers");
    if (dr_feed_world_new(&r->world, &o->feed)) {
        fprintf(stderr, "driftrec demo: invalid feed world (sizes or shares)\n");
        return 2;
    }
    if (produce_inputs(o, bs, r->world)) return 1;
    if (dr_pipeline_new(&r->pipeline, loop, &o->cfg, err, sizeof(err))) goto out_err;
    if (!o->no_drift_eval) {
        if (dr_feed_detect_new(&r->detect, r->world)) {
            snprintf(err, sizeof(err), "detection bookkeeping: %s", dr_strerror(DR_ENOMEM));
            goto out_err;
        }
        dr_pipeline_set_observer(r->pipeline, feed_observe, r->detect);
    }
    dr_feed_sim_conf_t sc;
    dr_feed_sim_conf_default(&sc);
    sc.bootstrap = bs;
    sc.topic_events = o->cfg.topic_events;
    sc.topic_recs = o->cfg.topic_recs;
    sc.codec = o->cfg.codec;
    sc.drift_arm = feed_drift_arm;
    sc.drift_arm_ctx = r->pipeline;
    if (dr_feed_sim_new(&r->sim, r->world, &sc, err, sizeof(err))) goto out_err;
    if (dr_pipeline_start(r->pipeline, err, sizeof(err))) {
        stop_failed_start(r->pipeline, loop);
        goto out_err;
    }
    start_loop_handles(r, loop, on_feed_progress);
    uv_run(loop, UV_RUN_DEFAULT);
    if (r->sim_started) uv_thread_join(&r->sim_thread);
    print_progress(r, true);
    if (r->sim_rc && r->sim_rc != DR_ESTOPPED) {
        fprintf(stderr, "driftrec demo: the feed simulator failed: %s\n", dr_strerror(r->sim_rc));
        return 1;
    }
    return 0;
out_err:
    fprintf(stderr, "driftrec demo: %s\n", err);
    return 1;
}

/* ---- the openloop scenario -------------------------------------------------- */

static int run_pipeline(demo_run_t *r, uv_loop_t *loop) {
    char err[512] = "";
    if (dr_pipeline_new(&r->pipeline, loop, &r->o->cfg, err, sizeof(err))) {
        fprintf(stderr, "driftrec demo: %s\n", err);
        return 1;
    }
    if (!r->o->no_drift_eval && dr_synth_new(&r->truth, &r->o->synth) == 0 &&
        dr_drift_eval_new(&r->drift, r->truth, r->o->synth.users) == 0) {
        dr_pipeline_set_observer(r->pipeline, dr_drift_eval_observe, r->drift);
        dr_pipeline_set_observer_ranks(r->pipeline, true);
        dr_pipeline_set_rank_filter(r->pipeline, dr_drift_eval_wants_rank);
    }
    if (dr_pipeline_start(r->pipeline, err, sizeof(err))) {
        fprintf(stderr, "driftrec demo: %s\n", err);
        stop_failed_start(r->pipeline, loop);
        return 1;
    }
    start_loop_handles(r, loop, on_progress);
    uv_run(loop, UV_RUN_DEFAULT);
    print_progress(r, true);
    return 0;
}

/* ---- report.json ------------------------------------------------------------ */

/* An integer where < 0 means "none": null. */
static void json_count(dr_json_t *j, const char *key, int64_t v) {
    if (v < 0) dr_json_num(j, key, NAN);
    else dr_json_int(j, key, v);
}

/* {"drift": a, "control": b} */
static void json_pair(dr_json_t *j, const char *key, double a, double b) {
    dr_json_object_begin(j, key);
    dr_json_num(j, "drift", a);
    dr_json_num(j, "control", b);
    dr_json_object_end(j);
}

/* The retrieval audit's recall from its counts (NAN: nothing audited). */
static double audit_recall(uint64_t hits, uint64_t slots) {
    return slots ? (double)hits / (double)slots : NAN;
}

/* Its recall since two thirds of the events were in (NAN: none audited
 * since, or the run ended before). */
static double last_third_recall(const demo_run_t *r, const dr_pipeline_stats_t *st) {
    return r->audit_marked ? audit_recall(st->retrieval_audit_hits - r->audit_hits_at,
                                          st->retrieval_audit_slots - r->audit_slots_at)
                           : NAN;
}

static void write_pipeline_json(dr_json_t *j, demo_run_t *r, const dr_pipeline_stats_t *st) {
    double busy = st->last_event_s - st->first_event_s;
    dr_json_int(j, "events", (int64_t)st->consumed);
    /* Rate over the processing window (first batch to last), excluding the
     * consumer group's join delay; wall_seconds includes it. */
    dr_json_num(j, "events_per_second", busy > 0 ? (double)st->consumed / busy : 0);
    dr_json_num(j, "processing_seconds", busy);
    dr_json_num(j, "wall_seconds", r->t_end - r->t_produced);
    dr_json_num(j, "produce_seconds", r->t_produced - r->t_start);
    dr_json_int(j, "lists_emitted", (int64_t)st->lists_emitted);
    dr_json_int(j, "lists_retrieved", (int64_t)st->lists_retrieved);
    dr_json_int(j, "retrieval_audited_lists", (int64_t)st->retrieval_audited_lists);
    /* null when no list was audited (emit.retrieval.audit.every) */
    dr_json_num(j, "retrieval_recall", audit_recall(st->retrieval_audit_hits, st->retrieval_audit_slots));
    dr_json_num(j, "retrieval_recall_last_third", last_third_recall(r, st));
    dr_json_int(j, "lists_delivered", (int64_t)st->lists_delivered);
    dr_json_num(j, "hr@10", st->clicks_scored ? (double)st->click_hits / (double)st->clicks_scored : 0);
    dr_json_int(j, "clicks_scored", (int64_t)st->clicks_scored);
    dr_json_num(j, "mean_prequential_loss", st->loss_count ? st->loss_sum / (double)st->loss_count : 0);
    dr_json_int(j, "dead_lettered", (int64_t)st->dead_lettered);
    dr_json_int(j, "commits", (int64_t)st->commits);
    dr_json_int(j, "pauses", (int64_t)st->pauses);
    dr_json_num(j, "emit_seconds", st->emit_seconds);
    dr_json_int(j, "drift_detections", (int64_t)st->drift_detections);
    dr_json_int(j, "drift_readapted", (int64_t)st->drift_readapted);
    dr_json_int(j, "global_drifts", (int64_t)st->global_drifts);
}

static void write_openloop_scenario(dr_json_t *j, const demo_opts_t *o) {
    dr_json_object_begin(j, "scenario");
    dr_json_str(j, "name", "openloop");
    dr_json_int(j, "users", (int64_t)o->synth.users);
    dr_json_int(j, "items", (int64_t)o->synth.items);
    dr_json_int(j, "clusters", o->synth.clusters);
    dr_json_num(j, "switch_share", o->synth.switch_share);
    dr_json_int(j, "partitions", o->partitions);
    dr_json_int(j, "dim", o->cfg.learner.dim);
    dr_json_int(j, "seed", (int64_t)o->synth.seed);
    dr_json_num(j, "drift_arm_share", o->cfg.learner.drift_arm_share);
    dr_json_object_end(j);
}

static void write_feed_scenario(dr_json_t *j, const demo_opts_t *o) {
    const dr_feed_conf_t *f = &o->feed;
    dr_json_object_begin(j, "scenario");
    dr_json_str(j, "name", "feed");
    dr_json_int(j, "users", (int64_t)f->users);
    dr_json_int(j, "items", (int64_t)f->items);
    dr_json_int(j, "clusters", f->clusters);
    dr_json_int(j, "rounds", f->rounds);
    dr_json_int(j, "round_minutes", f->round_minutes);
    dr_json_int(j, "seed", (int64_t)f->seed);
    dr_json_num(j, "switch_share", f->switch_share);
    dr_json_num(j, "gradual_share", f->gradual_share);
    dr_json_num(j, "second_share", f->second_share);
    dr_json_num(j, "shift_at", f->shift_at);
    dr_json_num(j, "popular_share", f->popular_share);
    dr_json_num(j, "explore_share", f->explore_share);
    dr_json_num(j, "activity_min", f->activity_min);
    dr_json_num(j, "activity_alpha", f->activity_alpha);
    dr_json_num(j, "activity_max", f->activity_max);
    dr_json_int(j, "session_min", f->session_min);
    dr_json_int(j, "session_max", f->session_max);
    dr_json_int(j, "partitions", o->partitions);
    dr_json_int(j, "dim", o->cfg.learner.dim);
    dr_json_num(j, "drift_arm_share", o->cfg.learner.drift_arm_share);
    dr_json_int(j, "emit_interval_ms", o->cfg.emit_interval_ms);
    dr_json_object_end(j);
}

static void write_feed_arms(dr_json_t *j, const dr_feed_report_t *fr, const dr_feed_progress_t *fp) {
    dr_json_array_begin(j, "arms");
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        dr_json_object_begin(j, NULL);
        dr_json_str(j, "name", dr_feed_arm_name(a));
        dr_json_int(j, "users", (int64_t)fr->users[a]);
        dr_json_int(j, "impressions", (int64_t)fr->impressions[a]);
        dr_json_int(j, "clicks", (int64_t)fr->clicks[a]);
        dr_json_num(j, "ctr", dr_feed_ctr(fr->clicks[a], fr->impressions[a]));
        dr_json_int(j, "hidden_items_shown", (int64_t)fp->hidden_shown[a]);
        dr_json_int(j, "repeat_items_shown", (int64_t)fp->repeat_shown[a]);
        dr_json_int(j, "stale_items_shown", (int64_t)fp->stale_shown[a]);
        dr_json_object_end(j);
    }
    dr_json_array_end(j);
    dr_json_object_begin(j, "ctr_by_round");
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        dr_json_array_begin(j, dr_feed_arm_name(a));
        for (int i = 0; i < fr->rounds; i++)
            dr_json_num(j, NULL, dr_feed_ctr(fr->round_clicks[a][i], fr->round_impressions[a][i]));
        dr_json_array_end(j);
    }
    dr_json_object_end(j);
}

static void write_feed_shift(dr_json_t *j, const dr_feed_report_t *fr, const dr_feed_detect_summary_t *ds) {
    dr_json_object_begin(j, "shift");
    dr_json_int(j, "round", fr->shift.round);
    dr_json_int(j, "cluster", fr->shift.cluster);
    json_count(j, "detected_after_events", ds ? ds->shift_detected_after : -1);
    json_count(j, "global_cuts", ds ? (int64_t)ds->global_cuts : -1);
    json_count(j, "global_cuts_before_shift", ds ? (int64_t)ds->global_cuts_before_shift : -1);
    dr_json_object_begin(j, "dip");
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        dr_json_object_begin(j, dr_feed_arm_name(a));
        dr_json_num(j, "pre_ctr", fr->shift.pre_ctr[a]);
        dr_json_num(j, "min_ctr", fr->shift.min_ctr[a]);
        dr_json_num(j, "depth", fr->shift.depth[a]);
        json_count(j, "rounds_to_90", fr->shift.rounds_to_90[a]);
        dr_json_object_end(j);
    }
    dr_json_object_end(j);
    dr_json_object_end(j);
}

/* The share of eligible users detected (NAN without detection numbers). */
static double detected_share(const dr_feed_detect_summary_t *ds, int arm) {
    if (!ds) return NAN;
    uint64_t e = arm < 0 ? ds->eligible[0] + ds->eligible[1] : ds->eligible[arm];
    uint64_t d = arm < 0 ? ds->detected[0] + ds->detected[1] : ds->detected[arm];
    return dr_feed_ctr(d, e);
}

/* CTR by windows of impressions after the switch, of the users whose switch
 * was detected, per arm (false without detection numbers). */
static bool detected_windows(demo_run_t *r, double ctr[2][DR_FEED_WINDOWS], uint64_t users[2]) {
    if (!r->detect) return false;
    dr_feed_detected_curve_t dc;
    dr_feed_sim_detected_curve(r->sim, r->detect, &dc);
    for (int a = 0; a < 2; a++) {
        users[a] = dc.users[a];
        for (int w = 0; w < DR_FEED_WINDOWS; w++) ctr[a][w] = dr_feed_ctr(dc.clicks[a][w], dc.impressions[a][w]);
    }
    return true;
}

static void write_feed_detected(dr_json_t *j, demo_run_t *r) {
    double ctr[2][DR_FEED_WINDOWS];
    uint64_t users[2];
    if (!detected_windows(r, ctr, users)) return;
    dr_json_object_begin(j, "detected_recovery");
    dr_json_array_begin(j, "window_from");
    for (int w = 0; w <= DR_FEED_WINDOWS; w++) dr_json_int(j, NULL, dr_feed_window_from[w]);
    dr_json_array_end(j);
    json_pair(j, "users", (double)users[0], (double)users[1]);
    for (int a = 0; a < 2; a++) {
        dr_json_array_begin(j, a == 0 ? "drift" : "control");
        for (int w = 0; w < DR_FEED_WINDOWS; w++) dr_json_num(j, NULL, ctr[a][w]);
        dr_json_array_end(j);
    }
    dr_json_object_end(j);
}

static void write_feed_switch(dr_json_t *j, const dr_feed_report_t *fr, const dr_feed_detect_summary_t *ds) {
    dr_json_object_begin(j, "switch");
    dr_json_int(j, "users", (int64_t)(fr->sw.users[0] + fr->sw.users[1]));
    dr_json_int(j, "eligible", (int64_t)(fr->sw.eligible[0] + fr->sw.eligible[1]));
    json_pair(j, "eligible_by_arm", (double)fr->sw.eligible[0], (double)fr->sw.eligible[1]);
    json_pair(j, "detected", ds ? (double)ds->detected[0] : NAN, ds ? (double)ds->detected[1] : NAN);
    dr_json_num(j, "detected_share", detected_share(ds, -1));
    json_pair(j, "detected_share_by_arm", detected_share(ds, 0), detected_share(ds, 1));
    dr_json_num(j, "delay_median", ds ? ds->delay_median : NAN);
    dr_json_num(j, "delay_p90", ds ? ds->delay_p90 : NAN);
    /* the eligible users whose lists engaged them before the switch (the
     * others lost nothing at it: docs/DRIFT.md) */
    json_pair(j, "served", ds ? (double)ds->served[0] : NAN, ds ? (double)ds->served[1] : NAN);
    dr_json_num(j, "served_detected_share",
                ds ? dr_feed_ctr(ds->served_detected[0] + ds->served_detected[1], ds->served[0] + ds->served[1]) : NAN);
    dr_json_num(j, "served_delay_median", ds ? ds->served_delay_median : NAN);
    json_pair(j, "delay_median_by_arm", ds ? ds->arm_delay_median[0] : NAN, ds ? ds->arm_delay_median[1] : NAN);
    json_pair(j, "pre_switch_ctr", fr->sw.pre_ctr[0], fr->sw.pre_ctr[1]);
    json_pair(j, "post_switch_ctr", fr->sw.post_ctr[0], fr->sw.post_ctr[1]);
    json_pair(j, "recovery_impressions", fr->sw.recovery[0] < 0 ? NAN : fr->sw.recovery[0],
              fr->sw.recovery[1] < 0 ? NAN : fr->sw.recovery[1]);
    dr_json_object_begin(j, "curve");
    dr_json_int(j, "from", DR_FEED_CURVE_FROM);
    dr_json_int(j, "step", FEED_CURVE_STEP);
    dr_json_int(j, "smooth", DR_FEED_SMOOTH);
    for (int a = 0; a < 2; a++) {
        dr_json_array_begin(j, dr_feed_arm_name(a));
        for (int i = 0; i < DR_FEED_CURVE_LEN; i += FEED_CURVE_STEP) dr_json_num(j, NULL, fr->sw.curve[a][i]);
        dr_json_array_end(j);
    }
    dr_json_object_begin(j, "n"); /* impressions at each point (before smoothing) */
    for (int a = 0; a < 2; a++) {
        dr_json_array_begin(j, dr_feed_arm_name(a));
        for (int i = 0; i < DR_FEED_CURVE_LEN; i += FEED_CURVE_STEP) dr_json_int(j, NULL, (int64_t)fr->sw.curve_n[a][i]);
        dr_json_array_end(j);
    }
    dr_json_object_end(j);
    dr_json_object_end(j);
    dr_json_object_end(j);
}

static void write_feed_groups(dr_json_t *j, const dr_feed_report_t *fr, const dr_feed_detect_summary_t *ds) {
    dr_json_object_begin(j, "false_alarms");
    json_count(j, "labelled_events", ds ? (int64_t)ds->stable_labelled : -1);
    json_count(j, "cuts", ds ? (int64_t)ds->cuts : -1);
    json_count(j, "improving_cuts", ds ? (int64_t)ds->improving_cuts : -1);
    dr_json_num(j, "per_10k", ds && ds->stable_labelled ? 1e4 * (double)ds->cuts / (double)ds->stable_labelled : NAN);
    dr_json_object_end(j);
    dr_json_object_begin(j, "gradual");
    static const char *const phase[3] = {"ctr_before", "ctr_during", "ctr_after"};
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        dr_json_object_begin(j, dr_feed_arm_name(a));
        dr_json_int(j, "users", (int64_t)fr->gradual.users[a]);
        for (int p = 0; p < 3; p++)
            dr_json_num(j, phase[p], dr_feed_ctr(fr->gradual.clicks[a][p], fr->gradual.impressions[a][p]));
        dr_json_object_end(j);
    }
    dr_json_object_end(j);
    dr_json_object_begin(j, "cold");
    dr_json_int(j, "impressions_per_user", DR_FEED_COLD);
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        dr_json_object_begin(j, dr_feed_arm_name(a));
        dr_json_int(j, "users", (int64_t)fr->cold.users[a]);
        dr_json_int(j, "impressions", (int64_t)fr->cold.impressions[a]);
        dr_json_num(j, "ctr", dr_feed_ctr(fr->cold.clicks[a], fr->cold.impressions[a]));
        dr_json_object_end(j);
    }
    dr_json_object_end(j);
}

static void write_feed(dr_json_t *j, demo_run_t *r, const dr_feed_report_t *fr,
                       const dr_feed_detect_summary_t *ds) {
    const dr_feed_conf_t *f = &r->o->feed;
    dr_feed_progress_t fp;
    dr_feed_sim_progress(r->sim, &fp);
    dr_json_object_begin(j, "feed");
    dr_json_int(j, "rounds", f->rounds);
    dr_json_int(j, "rounds_played", fp.round);
    dr_json_int(j, "round_minutes", f->round_minutes);
    dr_json_int(j, "users", (int64_t)f->users);
    dr_json_int(j, "items", (int64_t)f->items);
    dr_json_int(j, "clusters", f->clusters);
    dr_json_int(j, "seed", (int64_t)f->seed);
    dr_json_int(j, "timeouts", (int64_t)fp.timeouts);
    dr_json_int(j, "events_produced", (int64_t)fp.events);
    dr_json_int(j, "lists_read", (int64_t)fp.lists);
    write_feed_arms(j, fr, &fp);
    write_feed_shift(j, fr, ds);
    write_feed_switch(j, fr, ds);
    write_feed_groups(j, fr, ds);
    write_feed_detected(j, r);
    dr_json_object_end(j);
}

static int write_report(demo_run_t *r, const dr_pipeline_stats_t *st, const dr_feed_report_t *fr,
                        const dr_feed_detect_summary_t *ds) {
    char path[1200];
    if (dr_mkdirs(r->o->report_dir)) {
        fprintf(stderr, "driftrec demo: cannot create %s\n", r->o->report_dir);
        return DR_EIO;
    }
    snprintf(path, sizeof(path), "%s/report.json", r->o->report_dir);
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "driftrec demo: cannot write %s\n", path); return DR_EIO; }
    dr_json_t j;
    dr_json_init(&j, f);
    dr_json_object_begin(&j, NULL);
    write_pipeline_json(&j, r, st);
    if (r->drift) dr_drift_eval_write_json(r->drift, &j);
    if (fr) {
        write_feed_scenario(&j, r->o);
        write_feed(&j, r, fr, ds);
    } else {
        write_openloop_scenario(&j, r->o);
    }
    dr_json_object_end(&j);
    int bad = ferror(f);
    fclose(f);
    if (bad) return DR_EIO;
    fprintf(stderr, "report written to %s\n", path);
    if (!fr) return 0;
    /* the feed's page: CTR per arm over time, the recovery around switches */
    char err[512];
    if (dr_report_html_write_dir(r->o->report_dir, err, sizeof(err))) {
        fprintf(stderr, "driftrec demo: %s\n", err);
        return DR_EIO;
    }
    fprintf(stderr, "report page written to %s/report.html\n", r->o->report_dir);
    return 0;
}

/* ---- the summary on stderr -------------------------------------------------- */

static void summary_pipeline(demo_run_t *r, const dr_pipeline_stats_t *st) {
    double wall = r->t_end - r->t_produced, busy = st->last_event_s - st->first_event_s;
    fprintf(stderr,
            "  events consumed     %" PRIu64 " in %.2f s of processing, %.2f s with group join\n"
            "  throughput          %.0f events/s end to end%s\n"
            "  lists published     %" PRIu64 " (%" PRIu64 " delivered)\n"
            "  hr@10 over clicks   %.4f (%" PRIu64 " clicks of users with a list)\n"
            "  dead-lettered       %" PRIu64 "\n"
            "  commits             %" PRIu64 " (%" PRIu64 " step%s ahead of them, the longest stop %.1f ms; state in %s)\n",
            st->consumed, busy, wall, busy > 0 ? (double)st->consumed / busy : 0,
            r->drift ? " (with the drift evaluation's ranking)" : "", st->lists_emitted,
            st->lists_delivered,
            st->clicks_scored ? (double)st->click_hits / (double)st->clicks_scored : 0,
            st->clicks_scored, st->dead_lettered, st->commits, st->commit_steps,
            st->commit_steps == 1 ? "" : "s", st->commit_build_max_seconds * 1e3, r->o->state_dir);
    if (st->retrieval_index_items > 0) /* the path is on and built (emit.retrieval.min.items) */
        fprintf(stderr,
                "  retrieval index     %" PRIu64 " items; %" PRIu64 " lists ranked from its candidates, %" PRIu64
                " rows re-inserted as items learnt, %" PRIu64 " rows checked\n",
                st->retrieval_index_items, st->lists_retrieved, st->retrieval_index_upserts, st->retrieval_rows_checked);
    if (st->retrieval_audited_lists > 0) {
        double last = last_third_recall(r, st);
        char part[64] = "";
        if (!isnan(last)) snprintf(part, sizeof(part), " (%.4f over the last third of the events)", last);
        fprintf(stderr, "  retrieval recall    %.4f%s: of the full scan's lists for %" PRIu64
                " users it served, the share of the items its own lists held (emit.retrieval.audit.every)\n",
                audit_recall(st->retrieval_audit_hits, st->retrieval_audit_slots), part, st->retrieval_audited_lists);
    }
}

static void summary_feed(demo_run_t *r, const dr_feed_report_t *fr, const dr_feed_detect_summary_t *ds) {
    dr_feed_progress_t fp;
    dr_feed_sim_progress(r->sim, &fp);
    fprintf(stderr, "  rounds played       %d of %d (%" PRIu64 " timed out waiting for lists)\n"
                    "  CTR                 drift %.4f  control %.4f  popular %.4f\n",
            fp.round, fp.rounds, fp.timeouts, dr_feed_ctr(fr->clicks[0], fr->impressions[0]),
            dr_feed_ctr(fr->clicks[1], fr->impressions[1]), dr_feed_ctr(fr->clicks[2], fr->impressions[2]));
    fprintf(stderr, "  hidden items shown  drift %" PRIu64 "  control %" PRIu64 "  popular %" PRIu64
                    " (list slots holding an item the user had hidden)\n",
            fp.hidden_shown[0], fp.hidden_shown[1], fp.hidden_shown[2]);
    fprintf(stderr, "  stale items shown   drift %" PRIu64 "  control %" PRIu64 "  popular %" PRIu64
                    " (list slots holding an item the user had passed over 3+ times; "
                    "%" PRIu64 ", %" PRIu64 ", %" PRIu64 " passed over at all)\n",
            fp.stale_shown[0], fp.stale_shown[1], fp.stale_shown[2], fp.repeat_shown[0],
            fp.repeat_shown[1], fp.repeat_shown[2]);
    fprintf(stderr, "  abrupt switches     %" PRIu64 " eligible (drift %" PRIu64 ", control %" PRIu64
                    "); recovery to 90%% of pre-switch CTR: drift %d, control %d impressions (-1: not)\n",
            fr->sw.eligible[0] + fr->sw.eligible[1], fr->sw.eligible[0], fr->sw.eligible[1],
            fr->sw.recovery[0], fr->sw.recovery[1]);
    if (ds)
        fprintf(stderr, "  detected            %.0f%% within %d labelled events (drift %.0f%%, control %.0f%%);"
 " delay median %.0f, p90 %.0f\n"
                        "  served users        %.0f%% detected of the %" PRIu64 " whose lists engaged them before"
                        " the switch; delay median %.0f\n"
                        "  false alarms        %.2f per 10k labelled events of stable users (%" PRIu64
                        " cuts, %" PRIu64 " improving)\n",
                100 * detected_share(ds, -1), DR_FEED_DETECT_WITHIN, 100 * detected_share(ds, 0),
                100 * detected_share(ds, 1), ds->delay_median, ds->delay_p90,
                100 * dr_feed_ctr(ds->served_detected[0] + ds->served_detected[1], ds->served[0] + ds->served[1]),
                ds->served[0] + ds->served[1], ds->served_delay_median,
                ds->stable_labelled ? 1e4 * (double)ds->cuts / (double)ds->stable_labelled : NAN,
                ds->cuts, ds->improving_cuts);
    double wctr[2][DR_FEED_WINDOWS];
    uint64_t wusers[2];
    if (detected_windows(r, wctr, wusers)) {
        fprintf(stderr, "  after detection     CTR of the detected users (drift %" PRIu64 " / control %" PRIu64
                ") by impressions after the switch:\n                     ", wusers[0], wusers[1]);
        for (int w = 0; w < DR_FEED_WINDOWS; w++)
            fprintf(stderr, " %d-%d %.3f/%.3f", dr_feed_window_from[w], dr_feed_window_from[w + 1], wctr[0][w], wctr[1][w]);
        fprintf(stderr, "\n");
    }
    fprintf(stderr, "  population shift    round %d, cluster %d: ", fr->shift.round, fr->shift.cluster);
    if (ds && ds->shift_detected_after >= 0)
        fprintf(stderr, "detected after %" PRId64 " labelled events\n", ds->shift_detected_after);
    else
        fprintf(stderr, "no global cut for the worse after it\n");
    for (int a = 0; a < DR_FEED_ARMS; a++)
        fprintf(stderr, "    dip %-8s      CTR %.4f -> %.4f (depth %.4f), back to 90%% in %d rounds (-1: not)\n",
                dr_feed_arm_name(a), fr->shift.pre_ctr[a], fr->shift.min_ctr[a], fr->shift.depth[a],
                fr->shift.rounds_to_90[a]);
}

static int finish_feed(demo_run_t *r, const dr_pipeline_stats_t *st) {
    dr_feed_report_t *fr = malloc(sizeof(*fr)); /* ~11 KB of curves */
    if (!fr) return 1;
    dr_feed_sim_report(r->sim, fr);
    dr_feed_detect_summary_t ds;
    bool have_ds = r->detect && dr_feed_detect_summary(r->detect, &ds) == 0;
    fprintf(stderr, "\ndriftrec demo summary (closed-loop feed)\n");
    summary_feed(r, fr, have_ds ? &ds : NULL);
    summary_pipeline(r, st);
    int rc = write_report(r, st, fr, have_ds ? &ds : NULL) ? 1 : 0;
    free(fr);
    return rc;
}

int dr_cmd_demo(int argc, char **argv) {
    demo_opts_t o;
    memset(&o, 0, sizeof(o));
    dr_synth_conf_default(&o.synth);
    dr_feed_conf_default(&o.feed);
    o.synth.events = 400000;
    o.users = o.items = NOT_GIVEN;
    o.rounds = -1;
    o.partitions = 16;
    o.report_dir = "demo-report";
    dr_config_default(&o.cfg);
    dr_config_set(&o.cfg, "group.id", "driftrec-demo", NULL, 0);
    /* half the users form a control arm without drift handling (--set
     * drift.arm.share=1 handles everyone) */
    dr_config_set(&o.cfg, "drift.arm.share", "0.5", NULL, 0);
    /* a catalog whose items carry content embeddings (--set topic.catalog=
     * runs without one) */
    dr_config_set(&o.cfg, "topic.catalog", "driftrec.items", NULL, 0);
    dr_config_set(&o.cfg, "learner.content.dim", "16", NULL, 0);
    int rc = parse_opts(&o, argc, argv);
    char err[512];
    if (rc) return rc == 1 ? 0 : rc;
    if (dr_config_finish(&o.cfg, err, sizeof(err))) {
        fprintf(stderr, "driftrec demo: %s\n", err);
        return 2;
    }
    dr_embedded_t *broker = NULL;
    demo_run_t r = {.o = &o};
    uv_loop_t loop;
    uv_loop_init(&loop);
    r.t_start = dr_mono_s();
    if (prepare(&o, &broker)) {
        rc = 1;
        goto out;
    }
    if (o.scenario == SCENARIO_FEED) {
        if ((rc = run_feed(&r, &loop))) goto out;
    } else {
        if (produce_inputs(&o, dr_config_kafka(&o.cfg, "bootstrap.servers"), NULL)) {
            rc = 1;
            goto out;
        }
        fprintf(stderr, "produced %" PRIu64 " events to %s in %.2f s\n", o.synth.events,
                o.cfg.topic_events, dr_mono_s() - r.t_start);
        if (o.produce_only) goto out;
        if ((rc = run_pipeline(&r, &loop))) goto out;
    }
    dr_pipeline_stats_t st;
    dr_pipeline_stats(r.pipeline, &st);
    rc = dr_pipeline_exit_code(r.pipeline);
    if (o.scenario == SCENARIO_FEED) {
        if (finish_feed(&r, &st)) rc = 1;
    } else {
        fprintf(stderr, "\ndriftrec demo summary\n");
        summary_pipeline(&r, &st);
        if (r.drift) dr_drift_eval_print(r.drift, stderr);
        if (write_report(&r, &st, NULL, NULL)) rc = 1;
    }
out:
    dr_feed_sim_free(r.sim);
    dr_pipeline_free(r.pipeline);
    dr_feed_detect_free(r.detect);
    dr_feed_world_free(r.world);
    dr_drift_eval_free(r.drift);
    dr_synth_free(r.truth);
    uv_loop_close(&loop);
    dr_embedded_free(broker);
    if (!o.keep_state && strncmp(o.state_dir, "/tmp/driftrec-demo-", 19) == 0) {
        if (dr_rmtree(o.state_dir)) fprintf(stderr, "driftrec demo: could not remove %s\n", o.state_dir);
    }
    return rc;
}
