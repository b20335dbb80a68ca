/* embedded.c - the embedded broker (librdkafka's mock cluster) and the
 * `driftrec broker` command that serves it to other processes. */
#include "dr_embedded.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "dr_cmd_topics.h"
#include "dr_config.h"
#include "dr_err.h"

struct dr_embedded {
    rd_kafka_t *rk; /* the handle that owns the cluster */
    rd_kafka_mock_cluster_t *mock;
};

int dr_embedded_new(dr_embedded_t **out, int brokers, char *errstr, size_t n) {
    *out = NULL;
    dr_embedded_t *b = calloc(1, sizeof(*b));
    if (!b) return DR_ENOMEM;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[256];
    rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e));
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!b->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, n, "embedded broker: %s", e);
        free(b);
        return DR_EKAFKA;
    }
    b->mock = rd_kafka_mock_cluster_new(b->rk, brokers);
    if (!b->mock) {
        snprintf(errstr, n, "embedded broker: could not start the mock cluster");
        rd_kafka_destroy(b->rk);
        free(b);
        return DR_EKAFKA;
    }
    *out = b;
    return 0;
}

void dr_embedded_free(dr_embedded_t *b) {
    if (!b) return;
    rd_kafka_mock_cluster_destroy(b->mock);
    rd_kafka_destroy(b->rk);
    free(b);
}

const char *dr_embedded_bootstraps(const dr_embedded_t *b) {
    return rd_kafka_mock_cluster_bootstraps(b->mock);
}

void *dr_embedded_mock(dr_embedded_t *b) { return b->mock; }

int dr_embedded_create_topic(dr_embedded_t *b, const char *topic, int partitions, char *errstr,
                             size_t n) {
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(b->mock, topic, partitions, 1);
    if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        snprintf(errstr, n, "creating topic %s: %s", topic, rd_kafka_err2str(err));
        return DR_EKAFKA;
    }
    return 0;
}

/* The topics `driftrec topics create` would make, made with the mock API
 * (the mock cluster does not serve CreateTopics). */
static void create_configured(dr_embedded_t *b, const char *path, int partitions) {
    char err[1024];
    dr_config_t *cfg = malloc(sizeof(*cfg));
    if (!cfg) return;
    dr_config_default(cfg);
    if (dr_config_load_file(cfg, path, err, sizeof(err)) || dr_config_finish(cfg, err, sizeof(err))) {
        fprintf(stderr, "driftrec broker: %s\n", err);
    } else {
        dr_topic_plan_t plan[8];
        int n = dr_topics_plan(cfg, partitions, plan);
        for (int i = 0; i < n; i++)
            if (dr_embedded_create_topic(b, plan[i].name, plan[i].partitions, err, sizeof(err)))
                fprintf(stderr, "driftrec broker: %s\n", err);
    }
    free(cfg);
}

static volatile sig_atomic_t broker_stop;
static void on_stop_signal(int sig) { (void)sig; broker_stop = 1; }

static void broker_usage(FILE *f) {
    fprintf(f, "usage: driftrec broker [--brokers B] [--partitions P] [--topic NAME]... [--config FILE]\n"
               "                       [--rtt-ms MS]\n"
               "Runs librdkafka's mock cluster on 127.0.0.1 and prints its bootstrap address\n"
               "on the first line of stdout. Topics named with --topic are created with P\n"
               "partitions (default 8), each with NAME.changelog and NAME.model (what `run`\n"
               "expects beside an events topic by default); with --config, the configuration's\n"
               "events, changelog, model, lists (compacted in a real cluster), DLQ and catalog\n"
               "topics too.\n"
               "Others are auto-created. Stops on\n"
               "SIGINT/SIGTERM. Keeps data in memory only, ~5 MiB per partition.\n"
               "--rtt-ms delays every broker's responses by MS (a slow or distant cluster, for\n"
               "tests of lagging deliveries).\n");
}

int dr_cmd_broker(int argc, char **argv) {
    static const struct option opts[] = {{"brokers", required_argument, 0, 'b'},
                                         {"partitions", required_argument, 0, 'p'},
                                         {"topic", required_argument, 0, 't'},
                                         {"config", required_argument, 0, 'c'},
                                         {"rtt-ms", required_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int brokers = 1, partitions = 8, rtt_ms = 0, c;
    const char *topics[64], *config = NULL;
    int n_topics = 0;
    while ((c = getopt_long(argc, argv, "b:p:t:c:r:h", opts, NULL)) != -1) {
        if (c == 'b') brokers = atoi(optarg);
        else if (c == 'r') rtt_ms = atoi(optarg);
        else if (c == 'c') config = optarg;
        else if (c == 'p') partitions = atoi(optarg);
        else if (c == 't' && n_topics < 64) topics[n_topics++] = optarg;
        else { broker_usage(c == 'h' ? stdout : stderr); return c == 'h' ? 0 : 2; }
    }
    if (brokers < 1 || brokers > 16 || partitions < 1 || partitions > 1024 || rtt_ms < 0 ||
        rtt_ms > 60000) {
        fprintf(stderr, "driftrec broker: --brokers must be 1..16, --partitions 1..1024 and --rtt-ms 0..60000\n");
        return 2;
    }
    char err[600];
    dr_embedded_t *b;
    if (dr_embedded_new(&b, brokers, err, sizeof(err))) {
        fprintf(stderr, "driftrec broker: %s\n", err);
        return 1;
    }
    for (int i = 0; i < n_topics; i++) {
        char changelog[DR_NAME_MAX], model[DR_NAME_MAX];
        snprintf(changelog, sizeof(changelog), "%.*s.changelog", (int)(sizeof(changelog) - 11), topics[i]);
        snprintf(model, sizeof(model), "%.*s.model", (int)(sizeof(model) - 7), topics[i]);
        if (dr_embedded_create_topic(b, topics[i], partitions, err, sizeof(err)) ||
            dr_embedded_create_topic(b, changelog, partitions, err, sizeof(err)) ||
            dr_embedded_create_topic(b, model, partitions, err, sizeof(err)))
            fprintf(stderr, "driftrec broker: %s\n", err);
    }
    if (config) create_configured(b, config, partitions);
    if (rtt_ms > 0) rd_kafka_mock_broker_set_rtt(b->mock, -1, rtt_ms);
    printf("%s\n", dr_embedded_bootstraps(b));
    fflush(stdout);
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    while (!broker_stop) usleep(100 * 1000);
    dr_embedded_free(b);
    return 0;
}
