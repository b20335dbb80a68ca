/* main.c - the driftrec command: dispatches to run, demo, broker, adwin and
 * config, and implements `run` (the pipeline against a configured cluster). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "dr_cmd_adwin.h"
#include "dr_cmd_dlq.h"
#include "dr_cmd_inspect.h"
#include "dr_cmd_lists.h"
#include "dr_cmd_replay.h"
#include "dr_cmd_topics.h"
#include "dr_cmd_report.h"
#include "dr_config.h"
#include "dr_demo.h"
#include "dr_embedded.h"
#include "dr_log.h"
#include "dr_ingest.h"
#include "dr_key.h"
#include "dr_metrics.h"
#include "dr_pipeline.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: driftrec COMMAND [options]\n\n"
            "Commands:\n"
            "  run --config FILE [--set key=value]...  run the pipeline against a Kafka cluster\n"
            "  demo [--users U] [--rounds R] ...        embedded broker + closed-loop feed + report\n"
            "  broker [--partitions P] [--topic T]...  serve the embedded broker on 127.0.0.1\n"
            "  adwin [--delta D] [--clock C] ...        ADWIN change detection on numbers from stdin\n"
            "  load --format F FILE --topic T ...       a dataset into a topic (UserEvent, by event time)\n"
            "  replay --topic T [--from X --to Y] ...   backtest a topic range; --embedded --input FILE\n"
            "  report DIR                               (re)write DIR/report.html from DIR/report.json\n"
            "  inspect [--state-dir D] user ID|item ID|users|offsets|withdrawals  what the state holds (read-only)\n"
            "  erase --user ID [--set kafka.bootstrap.servers=B]  erase a user's state and list\n"
            "  lists [--last] [--set kafka.bootstrap.servers=B]  what the recommendations topic holds\n"
            "  topics create [--config FILE] [--partitions N]  create the topics (Admin API)\n"
            "  dlq replay [--reason-class LIST|--all] [--from X --to Y] ...  put dead letters back\n"
            "  config [--markdown|--dump] [--config FILE] [--set k=v]  show settings\n"
            "  version                                  print the version\n\n"
            "`driftrec COMMAND --help` explains each command. Settings: ops/CONFIG.md.\n");
}

/* Loads --config and --set options into cfg; returns 0, 1 (help) or 2. */
static int load_config(dr_config_t *cfg, int argc, char **argv, bool *markdown, bool *dump) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"set", required_argument, 0, 's'},
                                         {"markdown", no_argument, 0, 'm'},
                                         {"dump", no_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char err[1024];
    int c;
    dr_config_default(cfg);
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        int rc = 0;
        if (c == 'c') rc = dr_config_load_file(cfg, optarg, err, sizeof(err));
        else if (c == 's') rc = dr_config_set_pair(cfg, optarg, err, sizeof(err));
        else if (c == 'm' && markdown) *markdown = true;
        else if (c == 'd' && dump) *dump = true;
        else if (c == 'h') return 1;
        else return 2;
        if (rc) {
            fprintf(stderr, "driftrec: %s\n", err);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "driftrec: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (dr_config_finish(cfg, err, sizeof(err))) {
        fprintf(stderr, "driftrec: %s\n", err);
        return 2;
    }
    dr_log_set_level((dr_log_level_t)dr_log_level_parse(cfg->log_level));
    return 0;
}

typedef struct run_ctx {
    dr_pipeline_t *pipeline;
    dr_metrics_t *metrics;
    uv_signal_t sigint, sigterm;
    uv_timer_t stats, idle, watch;
    int exit_idle_ms;
    uint64_t last_consumed;
    int64_t last_change_ms;
    bool stopping;
} run_ctx_t;

/* The progress line, every 10 s and once more ("stopped") at the end. */
static bool log_progress(run_ctx_t *r, const char *what) {
    dr_pipeline_stats_t s;
    dr_pipeline_stats(r->pipeline, &s);
    dr_log(DR_LOG_INFO, "main", "%s | consumed=%llu events=%llu erases=%llu lists=%llu dlq=%llu lag=%lld commits=%llu commit_steps=%llu commit_build_ms=%.0f commit_build_max_ms=%.1f paused=%d items=%llu items_expired=%llu items_removed=%llu",
           what, (unsigned long long)s.consumed, (unsigned long long)s.events, (unsigned long long)s.erase_requests,
           (unsigned long long)s.lists_emitted, (unsigned long long)s.dead_lettered,
           (long long)s.lag, (unsigned long long)s.commits, (unsigned long long)s.commit_steps, s.commit_build_seconds * 1e3, s.commit_build_max_seconds * 1e3, s.paused,
           (unsigned long long)s.items_live, (unsigned long long)s.items_expired, (unsigned long long)s.items_removed);
    if (s.standby_partitions > 0 || s.standby_records > 0)
        dr_log(DR_LOG_INFO, "main", "%s standby | partitions=%llu records=%llu users=%llu behind=%lld fenced=%llu failures=%llu seconds=%.2f",
               what, (unsigned long long)s.standby_partitions, (unsigned long long)s.standby_records,
               (unsigned long long)s.standby_users, (long long)s.standby_behind,
               (unsigned long long)s.standby_fenced, (unsigned long long)s.standby_failures, s.standby_seconds);
    return s.failed;
}

static void shut_down(run_ctx_t *r) {
    if (r->stopping) return;
    r->stopping = true;
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->stats, NULL);
    uv_close((uv_handle_t *)&r->idle, NULL);
    uv_close((uv_handle_t *)&r->watch, NULL);
    dr_metrics_close(r->metrics);
    r->metrics = NULL;
    dr_pipeline_stop(r->pipeline);
    log_progress(r, "stopped");
}

static void on_stats(uv_timer_t *t) {
    run_ctx_t *r = t->data;
    if (log_progress(r, "progress")) shut_down(r);
}

static void on_stop_signal(uv_signal_t *h, int sig) {
    dr_log(DR_LOG_INFO, "main", "signal received, shutting down | signal=%d", sig);
    shut_down(h->data);
}

/* run.exit.idle.ms: stop once nothing new arrived for that long, with no lag
 * on the events nor on the other instances' item changes (the model topic). */
static void on_idle_check(uv_timer_t *t) {
    run_ctx_t *r = t->data;
    dr_pipeline_stats_t s;
    dr_pipeline_stats(r->pipeline, &s);
    int64_t now = dr_mono_ms();
    if (s.consumed != r->last_consumed || s.lag > 0 || s.model_lag != 0 || s.assigned_partitions == 0) {
        r->last_consumed = s.consumed;
        r->last_change_ms = now;
    } else if (now - r->last_change_ms >= r->exit_idle_ms) {
        dr_log(DR_LOG_INFO, "main", "idle, exiting | consumed=%llu", (unsigned long long)s.consumed);
        shut_down(r);
    }
}

/* A fatal error (e.g. the state store refused a write) stopped consumption:
 * leave the group and exit non-zero now rather than at the next progress line. */
static void on_watch(uv_timer_t *t) {
    run_ctx_t *r = t->data;
    if (dr_pipeline_exit_code(r->pipeline) != 0) shut_down(r);
}



static int cmd_run(int argc, char **argv) {
    dr_config_t *cfg = malloc(sizeof(*cfg));
    if (!cfg) return 1;
    int rc = load_config(cfg, argc, argv, NULL, NULL);
    if (rc) {
        if (rc == 1) printf("usage: driftrec run [--config FILE] [--set key=value]...\n"
                            "Runs the pipeline; settings are listed in ops/CONFIG.md.\n");
        free(cfg);
        return rc == 1 ? 0 : rc;
    }
    /* A file-size limit (RLIMIT_FSIZE, systemd's LimitFSIZE=) would otherwise
     * kill us with SIGXFSZ mid-write; ignored, the write fails with EFBIG and
     * is handled like a full disk: consumption stops, nothing past the last
     * stored commit is acknowledged, exit status 1. */
    signal(SIGXFSZ, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    run_ctx_t r = {0};
    char err[1024] = "";
    if (dr_pipeline_new(&r.pipeline, &loop, cfg, err, sizeof(err))) {
        fprintf(stderr, "driftrec run: %s\n", err);
        rc = 1;
        goto out;
    }
    if (dr_pipeline_start(r.pipeline, err, sizeof(err))) {
        fprintf(stderr, "driftrec run: %s\n", err);
        rc = 1;
        /* the handles the start opened close before the pipeline is freed
         * (freeing them open crashed in uv_loop_close: exit 139) */
        dr_pipeline_stop(r.pipeline);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out;
    }
    uv_signal_init(&loop, &r.sigint);
    uv_signal_init(&loop, &r.sigterm);
    uv_timer_init(&loop, &r.stats);
    uv_timer_init(&loop, &r.idle);
    uv_timer_init(&loop, &r.watch);
    r.sigint.data = r.sigterm.data = r.stats.data = r.idle.data = r.watch.data = &r;
    r.exit_idle_ms = cfg->exit_idle_ms;
    r.last_change_ms = dr_mono_ms();
    if (cfg->metrics_listen[0] &&
        dr_metrics_new(&r.metrics, &loop, cfg->metrics_listen, r.pipeline, cfg->ready_max_lag, err, sizeof(err))) {
        fprintf(stderr, "driftrec run: %s\n", err);
        rc = 1;
        shut_down(&r); /* closes the handles; the loop below only finishes that */
    } else {
        dr_metrics_set_limits(r.metrics, cfg->metrics_max_connections, cfg->metrics_timeout_ms);
        if (r.exit_idle_ms > 0) uv_timer_start(&r.idle, on_idle_check, 100, 100);
        uv_signal_start(&r.sigint, on_stop_signal, SIGINT);
        uv_signal_start(&r.sigterm, on_stop_signal, SIGTERM);
        uv_timer_start(&r.stats, on_stats, 10000, 10000);
        uv_timer_start(&r.watch, on_watch, 100, 100);
        dr_log(DR_LOG_INFO, "main", "running | topic=%s group=%s state=%s", cfg->topic_events,
               cfg->group_id, cfg->state_dir);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!rc) rc = dr_pipeline_exit_code(r.pipeline);
    if (r.pipeline) {
        dr_pipeline_stats_t s;
        dr_pipeline_stats(r.pipeline, &s);
        /* the run's totals, for a catch-up job's log (hr@10 of the lists users had:
         * click_hits / clicks_scored; of the model before each click: rank_hits / clicks_ranked) */
        dr_log(DR_LOG_INFO, "main", "stopped | exit=%d events=%llu lists=%llu clicks_scored=%llu click_hits=%llu clicks_ranked=%llu rank_hits=%llu",
               rc, (unsigned long long)s.events, (unsigned long long)s.lists_emitted,
               (unsigned long long)s.clicks_scored, (unsigned long long)s.click_hits,
               (unsigned long long)s.clicks_ranked, (unsigned long long)s.rank_hits);
    } else {
        dr_log(DR_LOG_INFO, "main", "stopped | exit=%d", rc);
    }
out:
    dr_pipeline_free(r.pipeline);
    uv_loop_close(&loop);
    free(cfg);
    return rc;
}

/* A user id as the event codec accepts it: a decimal integer in
 * [0, DR_MAX_ID), digits only (no sign, spaces, exponent or trailing text).
 * Anything else is refused rather than read as its leading digits, which
 * would erase some other user. */
static bool parse_user_id(const char *text, int64_t *out) {
    int64_t v = 0;
    if (*text == '\0') return false;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9') return false;
        v = v * 10 + (*c - '0'); /* cannot overflow: v < 2^53 before, so v * 10 + 9 < 2^57 */
        if (v >= DR_MAX_ID) return false;
    }
    *out = v;
    return true;
}

/* `driftrec erase --user ID`: produces the erase request, a null value keyed
 * by the user on the events topic (so it lands in the user's partition,
 * after the user's earlier events). dr_ingest_kafka_conf makes the
 * partitioner murmur2_random, Java's default; events produced with another
 * partitioner need the same --set kafka.partitioner=... here. */
static int cmd_erase(int argc, char **argv) {
    int64_t user = -1;
    char key[DR_ID_KEY_MAX], err[512];
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--user")) {
            if (!parse_user_id(argv[i + 1], &user)) {
                fprintf(stderr, "driftrec erase: --user \"%s\" is not a user id (a decimal integer from 0 to "
                        "2^53-1, digits only); nothing was sent\n", argv[i + 1]);
                return 2;
            }
            memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 2) * sizeof(char *));
            argc -= 2;
            break;
        }
    dr_config_t *cfg = malloc(sizeof(*cfg));
    int rc = cfg ? load_config(cfg, argc, argv, NULL, NULL) : 1;
    if (rc == 0 && (user < 0 || user >= DR_MAX_ID)) rc = 2;
    if (rc) {
        fprintf(rc == 1 ? stdout : stderr, "usage: driftrec erase --user ID [--config FILE] [--set key=value]...\n"
                "Asks the pipeline to erase a user: its state and its last list (a tombstone).\n"
                "ID is the user_id of the events: a decimal integer from 0 to 2^53-1, digits only.\n");
        free(cfg);
        return rc == 1 ? 0 : 2;
    }
    const char **keys, **vals;
    rd_kafka_conf_t *kc = dr_config_kafka_arrays(cfg, &keys, &vals) == 0
                              ? dr_ingest_kafka_conf(NULL, 0, keys, vals, cfg->n_kafka, err, sizeof(err))
                              : NULL;
    rd_kafka_t *rk = kc ? rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err)) : NULL;
    size_t klen = dr_id_key(key, user);
    int parts; /* a broker first: else the request waits out the flush below for nobody */
    char why[600];
    bool reached = rk && dr_ingest_topic_partitions_err(rk, cfg->topic_events, 10000, &parts, why, sizeof(why)) == 0;
    rc = reached && !rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(cfg->topic_events), RD_KAFKA_V_KEY(key, klen),
                                       RD_KAFKA_V_VALUE(NULL, 0), RD_KAFKA_V_END) &&
                 rd_kafka_flush(rk, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : 1;
    if (rc && rk && !reached) fprintf(stderr, "driftrec erase: %s: nothing was sent\n", why);
    else if (rc) fprintf(stderr, "driftrec erase: could not deliver the request%s%s\n", rk ? "" : ": ", rk ? "" : err);
    else printf("erase request for user %s sent to %s\n", key, cfg->topic_events);
    if (rk) rd_kafka_destroy(rk);
    else if (kc) rd_kafka_conf_destroy(kc);
    free(keys);
    free(vals);
    free(cfg);
    return rc;
}

static int cmd_config(int argc, char **argv) {
    dr_config_t *cfg = malloc(sizeof(*cfg));
    bool markdown = false, dump = false;
    int rc = cfg ? load_config(cfg, argc, argv, &markdown, &dump) : 1;
    if (rc == 0) {
        if (markdown) dr_config_write_markdown(stdout);
        else dr_config_dump(cfg, stdout);
    } else if (rc == 1) {
        printf("usage: driftrec config [--markdown | --dump] [--config FILE] [--set key=value]...\n");
        rc = 0;
    }
    free(cfg);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (!strcmp(cmd, "run")) return cmd_run(argc, argv);
    if (!strcmp(cmd, "demo")) return dr_cmd_demo(argc, argv);
    if (!strcmp(cmd, "broker")) return dr_cmd_broker(argc, argv);
    if (!strcmp(cmd, "adwin")) return dr_cmd_adwin(argc, argv);
    if (!strcmp(cmd, "config")) return cmd_config(argc, argv);
    if (!strcmp(cmd, "load")) return dr_cmd_load(argc, argv);
    if (!strcmp(cmd, "replay")) return dr_cmd_replay(argc, argv);
    if (!strcmp(cmd, "report")) return dr_cmd_report(argc, argv);
    if (!strcmp(cmd, "inspect")) return dr_cmd_inspect(argc, argv);
    if (!strcmp(cmd, "lists")) return dr_cmd_lists(argc, argv);
    if (!strcmp(cmd, "erase")) return cmd_erase(argc, argv);
    if (!strcmp(cmd, "topics")) return dr_cmd_topics(argc, argv);
    if (!strcmp(cmd, "dlq")) return dr_cmd_dlq(argc, argv);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("driftrec %s\n", DR_VERSION);
        return 0;
    }
    fprintf(stderr, "driftrec: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
