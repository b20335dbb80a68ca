/* cmd_topics.c - `driftrec topics create`: the events, changelog (compacted), model, recommendations
 * (compacted), dead-letter and catalog (compacted) topics of a configuration,
 * created with the Admin API on a real cluster. (The embedded broker does
 * not serve CreateTopics: `driftrec broker --config FILE` creates the same
 * topics there with the mock API.) */
#include "dr_cmd_topics.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "dr_config.h"
#include "dr_err.h"
#include "dr_ingest.h"

int dr_topics_plan(const dr_config_t *cfg, int partitions, dr_topic_plan_t *out) {
    int n = 0;
    out[n++] = (dr_topic_plan_t){cfg->topic_events, partitions, false};
    /* users' records and commit markers: the latest record per key is what counts */
    if (strcmp(cfg->topic_changelog, "-") != 0)
        out[n++] = (dr_topic_plan_t){cfg->topic_changelog, partitions, true};
    /* every instance's item changes: a log read from the beginning */
    if (strcmp(cfg->topic_model, "-") != 0)
        out[n++] = (dr_topic_plan_t){cfg->topic_model, partitions, false};
    out[n++] = (dr_topic_plan_t){cfg->topic_recs, partitions, true}; /* latest list per user */
    out[n++] = (dr_topic_plan_t){cfg->topic_dlq, partitions, false};
    if (cfg->topic_catalog[0]) out[n++] = (dr_topic_plan_t){cfg->topic_catalog, partitions, true};
    return n;
}

static int create(const dr_config_t *cfg, const dr_topic_plan_t *plan, int n, int replication, int timeout_ms) {
    char err[512];
    const char **keys, **vals;
    rd_kafka_conf_t *kc = dr_config_kafka_arrays(cfg, &keys, &vals) == 0
                              ? dr_ingest_kafka_conf(NULL, 0, keys, vals, cfg->n_kafka, err, sizeof(err))
                              : NULL;
    rd_kafka_t *rk = kc ? rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err)) : NULL;
    free(keys);
    free(vals);
    if (!rk) {
        if (kc) rd_kafka_conf_destroy(kc);
        fprintf(stderr, "driftrec topics: %s\n", err);
        return 1;
    }
    rd_kafka_NewTopic_t *nt[8];
    for (int i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(plan[i].name, plan[i].partitions, replication, err, sizeof(err));
        if (nt[i] && plan[i].compact) rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "compact");
    }
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, err, sizeof(err));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, (size_t)n, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    int rc = 1;
    int parts;
    if (!ev || rd_kafka_event_error(ev)) {
        /* a timeout is also what an address where nobody answers gives */
        char why[600];
        if (dr_ingest_topic_partitions_err(rk, plan[0].name, 2000, &parts, why, sizeof(why)) != 0)
            fprintf(stderr, "driftrec topics: %s: nothing was created\n", why);
        else
            fprintf(stderr, "driftrec topics: CreateTopics failed: %s (the embedded broker does not serve it: "
                            "use `driftrec broker --config FILE` there)\n",
                    ev ? rd_kafka_event_error_string(ev) : "no answer");
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        rc = 0;
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
            bool exists = e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS;
            printf("%s: %s\n", rd_kafka_topic_result_name(res[i]), !e ? "created" : exists ? "exists" : rd_kafka_err2str(e));
            if (e && !exists) rc = 1;
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    for (int i = 0; i < n; i++) rd_kafka_NewTopic_destroy(nt[i]);
    rd_kafka_destroy(rk);
    return rc;
}

int dr_cmd_topics(int argc, char **argv) {
    static const struct option lo[] = {{"config", 1, 0, 'c'}, {"set", 1, 0, 's'}, {"partitions", 1, 0, 'p'},
                                       {"replication", 1, 0, 'r'}, {"timeout-ms", 1, 0, 't'},
                                       {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    dr_config_t *cfg = malloc(sizeof(*cfg));
    char err[1024];
    int c, rc = 0, partitions = 12, replication = 3, timeout_ms = 15000;
    if (!cfg) return 1;
    dr_config_default(cfg);
    if (argc < 2 || strcmp(argv[1], "create") != 0) rc = 2;
    optind = 2;
    while (!rc && (c = getopt_long(argc, argv, "c:s:p:r:t:h", lo, NULL)) != -1) {
        if (c == 'c') rc = dr_config_load_file(cfg, optarg, err, sizeof(err)) ? 3 : 0;
        else if (c == 's') rc = dr_config_set_pair(cfg, optarg, err, sizeof(err)) ? 3 : 0;
        else if (c == 'p') partitions = atoi(optarg);
        else if (c == 'r') replication = atoi(optarg);
        else if (c == 't') timeout_ms = atoi(optarg);
        else rc = c == 'h' ? 1 : 2;
    }
    if (rc == 3) fprintf(stderr, "driftrec topics: %s\n", err);
    if (!rc && (partitions < 1 || replication < 1 || timeout_ms < 1 || dr_config_finish(cfg, err, sizeof(err)))) rc = 2;
    if (rc) {
        fprintf(rc == 1 ? stdout : stderr,
                "usage: driftrec topics create [--config FILE] [--set key=value]... [--partitions N (12)]\n"
                "                              [--replication R (3)] [--timeout-ms MS (15000)]\n"
                "Creates the events, recommendations (compacted), dead-letter and catalog (compacted)\n"
                "topics of the configuration with the Admin API; existing topics are left alone.\n");
        free(cfg);
        return rc == 1 ? 0 : 2;
    }
    dr_topic_plan_t plan[8];
    rc = create(cfg, plan, dr_topics_plan(cfg, partitions, plan), replication, timeout_ms);
    free(cfg);
    return rc;
}
