/* demo.c - `driftrec demo`: starts the embedded broker, produces a seeded
 * synthetic stream (dr_synth.h), runs the real pipeline on it until the
 * stream is consumed, shows progress and writes DIR/report.json. */
#include "dr_demo.h"

#include <getopt.h>
#include <inttypes.h>
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
#include "dr_log.h"
#include "dr_pipeline.h"
#include "dr_report.h"
#include "dr_synth.h"

typedef struct demo_opts {
    dr_synth_conf_t synth;
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
    uv_timer_t progress;
    uv_signal_t sigint, sigterm;
    double t_start, t_produced, t_end;
    uint64_t last_consumed;
    double last_t;
    bool tty;
} demo_run_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: driftrec demo [--events N] [--users U] [--items I] [--partitions P]\n"
            "                     [--report DIR] [--state-dir DIR] [--keep-state] [--quiet]\n"
            "                     [--seed S] [--bootstrap HOST:PORT] [--no-drift-eval]\n"
            "                     [--produce-only [--erase-share X]] [--set key=value]...\n"
            "Runs the whole pipeline on the embedded broker (librdkafka's mock cluster on\n"
            "127.0.0.1) over a synthetic stream of sessions (impressions, clicks, likes,\n"
            "shares, dwells, hides; 20%% of users switch interests mid-stream), shows live\n"
            "progress and writes DIR/report.json (default DIR: demo-report).\n"
            "Defaults: 400000 events, 4000 users, 2000 items, 16 partitions; half the users\n"
            "(by hash) get drift handling, half form the control arm; a catalog topic\n"
            "(driftrec.items) gives every item a 16-float content embedding.\n"
            "--bootstrap uses a running broker instead (e.g. `driftrec broker --topic ...`),\n"
            "so that other tools (kcat) can read the same topics; with --produce-only it only\n"
            "produces the stream there (for `driftrec run` and test harnesses); --erase-share\n"
            "then follows that share of the events (seeded) with an erase request for the\n"
            "event's user (a null value keyed by the user), as `driftrec erase` sends.\n"
            "The drift evaluation ranks every click under the current model (a pass over\n"
            "the item matrix each); --no-drift-eval skips it to show the pipeline's own speed.\n");
}

static int parse_opts(demo_opts_t *o, int argc, char **argv) {
    static const struct option opts[] = {
        {"events", required_argument, 0, 'n'}, {"users", required_argument, 0, 'u'},
        {"items", required_argument, 0, 'i'},  {"partitions", required_argument, 0, 'p'},
        {"report", required_argument, 0, 'r'}, {"state-dir", required_argument, 0, 's'},
        {"keep-state", no_argument, 0, 'k'},   {"quiet", no_argument, 0, 'q'},
        {"seed", required_argument, 0, 'S'},   {"set", required_argument, 0, 'x'},
        {"bootstrap", required_argument, 0, 'b'}, {"produce-only", no_argument, 0, 'P'},
        {"no-drift-eval", no_argument, 0, 'E'}, {"erase-share", required_argument, 0, 'X'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    char err[512];
    int c;
    while ((c = getopt_long(argc, argv, "n:u:i:p:r:s:kqS:x:b:PEX:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': o->synth.events = strtoull(optarg, NULL, 10); break;
        case 'u': o->synth.users = strtoull(optarg, NULL, 10); break;
        case 'i': o->synth.items = strtoull(optarg, NULL, 10); break;
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
        case 'S': o->synth.seed = strtoull(optarg, NULL, 10); break;
        case 'x':
            if (dr_config_set_pair(&o->cfg, optarg, err, sizeof(err))) {
                fprintf(stderr, "driftrec demo: %s\n", err);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
    }
    if (o->synth.events < 1 || o->synth.users < 1 || o->synth.items < 40 || o->partitions < 1 ||
        o->partitions > 1024) {
        fprintf(stderr, "driftrec demo: need --events >= 1, --users >= 1, --items >= 40, --partitions 1..1024\n");
        return 2;
    }
    if (!(o->erase_share >= 0 && o->erase_share <= 1) || (o->erase_share > 0 && !o->produce_only)) {
        fprintf(stderr, "driftrec demo: --erase-share takes a share in [0, 1], with --produce-only\n");
        return 2;
    }
    return 0;
}

/* Produces one message (value NULL: a null value), waiting while the
 * producer's queue is full. 0 or DR_EKAFKA. */
static int produce_waiting(rd_kafka_t *rk, const char *topic, const char *key, int klen,
                           const void *value, size_t len) {
    rd_kafka_resp_err_t kerr;
    while ((kerr = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)klen),
                                     RD_KAFKA_V_VALUE((void *)value, len),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
    return kerr ? DR_EKAFKA : 0;
}

/* Produces the whole synthetic stream, keyed by user, Avro-encoded. */
static int produce_stream(demo_opts_t *o, const char *bootstraps) {
    char e[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    const char *props[][2] = {{"bootstrap.servers", bootstraps}, {"linger.ms", "20"},
                              {"batch.num.messages", "10000"}, {"compression.type", "lz4"},
                              {"queue.buffering.max.messages", "2000000"}};
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
        rd_kafka_conf_set(kc, props[i][0], props[i][1], e, sizeof(e));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof(e));
    if (!rk) { fprintf(stderr, "driftrec demo: %s\n", e); return DR_EKAFKA; }
    dr_synth_t *s = NULL;
    dr_codec_t *codec = NULL;
    dr_buf_t buf = {0};
    int err = dr_synth_new(&s, &o->synth);
    if (!err) err = dr_codec_new(&codec, &o->cfg.codec, e, sizeof(e));
    /* the catalog first: every item with its content embedding */
    for (uint64_t item = 1; !err && o->cfg.topic_catalog[0] && item <= o->synth.items; item++) {
        float emb[DR_SYNTH_CONTENT_DIM];
        dr_synth_item_embedding(s, (int64_t)item, emb);
        dr_item_rec_t it = {(int64_t)item, emb, DR_SYNTH_CONTENT_DIM, false, false};
        char key[24];
        int klen = snprintf(key, sizeof(key), "%" PRIu64, item);
        if ((err = dr_codec_encode_item(codec, &it, &buf))) break;
        err = produce_waiting(rk, o->cfg.topic_catalog, key, klen, buf.data, buf.len);
    }
    dr_event_t ev;
    uint64_t erase_rng = dr_mix64(o->synth.seed ^ 0xe2a5eULL), n_erases = 0;
    while (!err && dr_synth_next(s, &ev)) {
        char key[24];
        int klen = snprintf(key, sizeof(key), "%" PRId64, ev.user_id);
        if ((err = dr_codec_encode_event(codec, &ev, &buf))) break;
        bool erase = o->erase_share > 0 && dr_rand01(&erase_rng) < o->erase_share;
        n_erases += erase;
        /* the event, then (sometimes) the user's erase request: a null value */
        err = produce_waiting(rk, o->cfg.topic_events, key, klen, buf.data, buf.len);
        if (!err && erase) err = produce_waiting(rk, o->cfg.topic_events, key, klen, NULL, 0);
    }
    if (!err && rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) err = DR_EKAFKA;
    if (err) fprintf(stderr, "driftrec demo: producing the stream failed: %s\n", dr_strerror(err));
    else if (n_erases > 0)
        fprintf(stderr, "produced %" PRIu64 " erase requests among the events\n", n_erases);
    dr_buf_free(&buf);
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
    fprintf(stderr, "%s[%6.1fs] consumed %" PRIu64 "/%" PRIu64 "  %8.0f ev/s  lag %" PRId64
            "  lists %" PRIu64 "  dlq %" PRIu64 "%s%s",
            r->tty ? "\r" : "", now - r->t_produced, st.consumed, r->o->synth.events, rate, st.lag,
            st.lists_emitted, st.dead_lettered, st.paused ? "  (paused)" : "          ",
            r->tty && !final ? "" : "\n");
}

static void on_progress(uv_timer_t *t) {
    demo_run_t *r = t->data;
    print_progress(r, false);
    dr_pipeline_stats_t st;
    dr_pipeline_stats(r->pipeline, &st);
    if (st.consumed >= r->o->synth.events || st.failed) {
        r->t_end = dr_mono_s();
        uv_timer_stop(t);
        uv_close((uv_handle_t *)&r->progress, NULL);
        uv_close((uv_handle_t *)&r->sigint, NULL);
        uv_close((uv_handle_t *)&r->sigterm, NULL);
        dr_pipeline_stop(r->pipeline);
    }
}

static void on_signal(uv_signal_t *h, int sig) {
    demo_run_t *r = h->data;
    dr_log(DR_LOG_INFO, "demo", "signal received, stopping | signal=%d", sig);
    r->o->synth.events = 0; /* the next progress tick stops the pipeline */
}

static int write_report(demo_run_t *r, const dr_pipeline_stats_t *st) {
    char path[1200];
    if (dr_mkdirs(r->o->report_dir)) {
        fprintf(stderr, "driftrec demo: cannot create %s\n", r->o->report_dir);
        return DR_EIO;
    }
    snprintf(path, sizeof(path), "%s/report.json", r->o->report_dir);
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "driftrec demo: cannot write %s\n", path); return DR_EIO; }
    double wall = r->t_end - r->t_produced;
    double busy = st->last_event_s - st->first_event_s;
    dr_json_t j;
    dr_json_init(&j, f);
    dr_json_object_begin(&j, NULL);
    dr_json_int(&j, "events", (int64_t)st->consumed);
    /* Rate over the processing window (first batch to last), excluding the
     * consumer group's join delay; wall_seconds includes it. */
    dr_json_num(&j, "events_per_second", busy > 0 ? (double)st->consumed / busy : 0);
    dr_json_num(&j, "processing_seconds", busy);
    dr_json_num(&j, "wall_seconds", wall);
    dr_json_num(&j, "produce_seconds", r->t_produced - r->t_start);
    dr_json_int(&j, "lists_emitted", (int64_t)st->lists_emitted);
    dr_json_int(&j, "lists_delivered", (int64_t)st->lists_delivered);
    dr_json_num(&j, "hr@10", st->clicks_scored ? (double)st->click_hits / (double)st->clicks_scored : 0);
    dr_json_int(&j, "clicks_scored", (int64_t)st->clicks_scored);
    dr_json_num(&j, "mean_prequential_loss", st->loss_count ? st->loss_sum / (double)st->loss_count : 0);
    dr_json_int(&j, "dead_lettered", (int64_t)st->dead_lettered);
    dr_json_int(&j, "commits", (int64_t)st->commits);
    dr_json_int(&j, "pauses", (int64_t)st->pauses);
    dr_json_num(&j, "emit_seconds", st->emit_seconds);
    dr_json_int(&j, "drift_detections", (int64_t)st->drift_detections);
    dr_json_int(&j, "drift_readapted", (int64_t)st->drift_readapted);
    dr_json_int(&j, "global_drifts", (int64_t)st->global_drifts);
    if (r->drift) dr_drift_eval_write_json(r->drift, &j);
    dr_json_object_begin(&j, "scenario");
    dr_json_int(&j, "users", (int64_t)r->o->synth.users);
    dr_json_int(&j, "items", (int64_t)r->o->synth.items);
    dr_json_int(&j, "clusters", r->o->synth.clusters);
    dr_json_num(&j, "switch_share", r->o->synth.switch_share);
    dr_json_int(&j, "partitions", r->o->partitions);
    dr_json_int(&j, "dim", r->o->cfg.learner.dim);
    dr_json_int(&j, "seed", (int64_t)r->o->synth.seed);
    dr_json_num(&j, "drift_arm_share", r->o->cfg.drift_arm_share);
    dr_json_object_end(&j);
    dr_json_object_end(&j);
    int bad = ferror(f);
    fclose(f);
    if (bad) return DR_EIO;
    fprintf(stderr, "report written to %s\n", path);
    return 0;
}

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
        if (o->cfg.topic_catalog[0] &&
            dr_embedded_create_topic(*broker, o->cfg.topic_catalog, 1, err, sizeof(err)))
            goto out_err;
        bs = dr_embedded_bootstraps(*broker);
    }
    const char *sets[][2] = {{"kafka.bootstrap.servers", bs},
                             {"kafka.fetch.wait.max.ms", "10"},
                             {"kafka.queued.min.messages", "1000000"},
                             {"kafka.auto.offset.reset", "earliest"},
                             {"state.dir", o->state_dir}};
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        if (dr_config_set(&o->cfg, sets[i][0], sets[i][1], err, sizeof(err))) goto out_err;
    return 0;
out_err:
    fprintf(stderr, "driftrec demo: %s\n", err);
    return DR_EKAFKA;
}

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
    }
    if (dr_pipeline_start(r->pipeline, err, sizeof(err))) {
        fprintf(stderr, "driftrec demo: %s\n", err);
        return 1;
    }
    r->tty = isatty(STDERR_FILENO);
    r->last_t = r->t_produced = dr_mono_s();
    uv_timer_init(loop, &r->progress);
    uv_signal_init(loop, &r->sigint);
    uv_signal_init(loop, &r->sigterm);
    r->progress.data = r->sigint.data = r->sigterm.data = r;
    uv_timer_start(&r->progress, on_progress, 250, 250);
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    print_progress(r, true);
    return 0;
}

static void summary(demo_run_t *r, const dr_pipeline_stats_t *st) {
    double wall = r->t_end - r->t_produced, busy = st->last_event_s - st->first_event_s;
    fprintf(stderr,
            "\ndriftrec demo summary\n"
            "  events consumed     %" PRIu64 " in %.2f s of processing, %.2f s with group join\n"
            "  throughput          %.0f events/s end to end%s\n"
            "  lists published     %" PRIu64 " (%" PRIu64 " delivered)\n"
            "  hr@10 over clicks   %.4f (%" PRIu64 " clicks of users with a list)\n"
            "  dead-lettered       %" PRIu64 "\n"
            "  commits             %" PRIu64 " (state in %s)\n",
            st->consumed, busy, wall, busy > 0 ? (double)st->consumed / busy : 0,
            r->drift ? " (with the drift evaluation's ranking)" : "", st->lists_emitted,
            st->lists_delivered,
            st->clicks_scored ? (double)st->click_hits / (double)st->clicks_scored : 0,
            st->clicks_scored, st->dead_lettered, st->commits, r->o->state_dir);
    if (r->drift) dr_drift_eval_print(r->drift, stderr);
}

int dr_cmd_demo(int argc, char **argv) {
    demo_opts_t o;
    memset(&o, 0, sizeof(o));
    dr_synth_conf_default(&o.synth);
    o.synth.events = 400000;
    o.synth.users = 4000;
    o.synth.items = 2000;
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
    if (prepare(&o, &broker) || produce_stream(&o, dr_config_kafka(&o.cfg, "bootstrap.servers"))) {
        rc = 1;
        goto out;
    }
    fprintf(stderr, "produced %" PRIu64 " events to %s in %.2f s\n", o.synth.events, o.cfg.topic_events,
            dr_mono_s() - r.t_start);
    if (o.produce_only) goto out;
    if ((rc = run_pipeline(&r, &loop))) goto out;
    dr_pipeline_stats_t st;
    dr_pipeline_stats(r.pipeline, &st);
    summary(&r, &st);
    rc = dr_pipeline_exit_code(r.pipeline);
    if (write_report(&r, &st)) rc = 1;
out:
    dr_pipeline_free(r.pipeline);
    dr_drift_eval_free(r.drift);
    dr_synth_free(r.truth);
    uv_loop_close(&loop);
    dr_embedded_free(broker);
    if (!o.keep_state && strncmp(o.state_dir, "/tmp/driftrec-demo-", 19) == 0) {
        if (dr_rmtree(o.state_dir)) fprintf(stderr, "driftrec demo: could not remove %s\n", o.state_dir);
    }
    return rc;
}
