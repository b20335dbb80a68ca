/* cmd_replay.c - `driftrec load` (a dataset file into a topic, as UserEvent
 * records keyed by user, in event-time order) and `driftrec replay` (a topic
 * range, merged across partitions by event time, optionally with spliced
 * users, through dr_replay). */
#include "dr_cmd_replay.h"

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "dr_codec.h"
#include "dr_config.h"
#include "dr_dataset.h"
#include "dr_embedded.h"
#include "dr_err.h"
#include "dr_key.h"
#include "dr_ingest.h"
#include "dr_log.h"
#include "dr_replay.h"
#include "dr_report_html.h"

typedef struct opts {
    const char *bootstrap, *topic, *catalog_topic, *input, *catalog, *from, *to, *report, *arms;
    dr_dataset_opts_t ds;
    bool embedded, quiet;
    int partitions, k, window;
    double recentpop_halflife;  /* --recentpop-halflife, events */
    dr_config_t cfg;
    /* --splice / --splice-control, --splice-seed, --splice-min-events */
    bool splice, splice_opt_given;
    dr_splice_opts_t sp;
} opts_t;

static void usage(FILE *f, const char *cmd) {
    if (!strcmp(cmd, "load"))
        fprintf(f,
                "usage: driftrec load --format movielens|csv|jsonl FILE --topic T --bootstrap HOST:PORT\n"
                "                     [--catalog movies.csv] [--catalog-topic T] [--min-rating R]\n"
                "                     [--user-col C --item-col C --time-col C --value-col C --type-col C]\n"
                "                     [--time-unit s|ms] [--default-type RATE]\n"
                "Produces the file's events as UserEvent records keyed by user, in event-time order\n"
                "(stable for ties), and a catalog as Item records (default topic: T.catalog).\n");
    else
        fprintf(f,
                "usage: driftrec replay --bootstrap HOST:PORT --topic T [--from X] [--to Y] [--catalog-topic T]\n"
                "       driftrec replay --embedded --input FILE --format F [--catalog FILE] [--min-rating R]\n"
                "   options: [--mode implicit|rating] [--k K] [--arms ARM,...] [--recentpop-halflife N]\n"
                "            [--window N] [--config FILE] [--set key=value]... [--report DIR] [--quiet]\n"
                "            [--splice | --splice-control] [--splice-seed S] [--splice-min-events N]\n"
                "Replays a topic range through the learner, test-then-train, and writes DIR/report.json\n"
                "and DIR/report.html (default DIR: replay-report). X and Y are offsets (the same in every\n"
                "partition), 'beginning' or 'end'; --to is exclusive. Partitions are merged by event\n"
                "time, ties by partition and offset, so the same range gives the same metrics.\n"
                "Arms (default: full,prior,nodrift,popularity,itemknn,recentpop in implicit mode,\n"
                "full,prior,nodrift,popularity,bias in rating mode):\n"
                "  full        the live configuration (per-user adaptation, drift handling, co-engagement)\n"
                "  prior       no per-user adaptation: every user is scored with the shared prior\n"
                "  nodrift     per-user adaptation, drift detection off\n"
                "  popularity  most engaged items so far (rating mode: the item's mean rating)\n"
                "  zeroprior   full with a zero, unlearned prior and no population prior\n"
                "  nocontent   full without the catalog's content embeddings\n"
                "  nocooc      full without the co-engagement term\n"
                "  itemknn     implicit only: item-to-item co-occurrence within 20 engagements of a\n"
                "              user, scored from the user's last 20 engaged items, no learning\n"
                "  recentpop   implicit only: popularity with counts halved every N events of the\n"
                "              stream (--recentpop-halflife, 5000)\n"
                "  bias        rating only: online mu + b_u + b_i (running mean, SGD on the biases)\n"
                "  expknn      implicit only, a study tool (not a baseline): item-to-item variants set\n"
                "              by DR_EXP_* environment variables (docs/REPLAY.md); unset, it is itemknn\n"
                "The report's \"baselines\" names the best baseline (popularity, itemknn, recentpop by\n"
                "hr@K; popularity, bias by mae) and full's figure over it.\n"
                "--splice injects abrupt drift into the events before replaying them: the users with at\n"
                "least N events (--splice-min-events, 20) are shuffled with seed S (--splice-seed, 1)\n"
                "into a cycle, and each becomes a composite user (a new id) made of its first half of\n"
                "events followed by the next user's second half, moved later when needed so that it\n"
                "follows; users with fewer events stay as they are. The report gains the splice points\n"
                "and, per arm, hr@K before/after them and over the first 10/20/50 events after, and the\n"
                "drift cuts near them (share detected, delay in events). --splice-control measures the\n"
                "same figures at each user's midpoint on the unchanged events (docs/REPLAY.md).\n");
}

/* A decimal integer in [0, max], digits only. 0 or -1. */
static int parse_count(const char *s, uint64_t max, uint64_t *out) {
    if (*s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno || v > max) return -1;
    *out = v;
    return 0;
}

static int parse(opts_t *o, int argc, char **argv) {
    static const struct option lo[] = {
        {"bootstrap", 1, 0, 'b'}, {"topic", 1, 0, 't'}, {"catalog-topic", 1, 0, 'C'},
        {"input", 1, 0, 'i'}, {"format", 1, 0, 'f'}, {"catalog", 1, 0, 'c'}, {"from", 1, 0, 'F'},
        {"to", 1, 0, 'T'}, {"report", 1, 0, 'r'}, {"arms", 1, 0, 'a'}, {"mode", 1, 0, 'm'},
        {"k", 1, 0, 'k'}, {"window", 1, 0, 'w'}, {"config", 1, 0, 'x'}, {"set", 1, 0, 's'},
        {"embedded", 0, 0, 'e'}, {"partitions", 1, 0, 'p'}, {"min-rating", 1, 0, 'R'},
        {"user-col", 1, 0, 1}, {"item-col", 1, 0, 2}, {"time-col", 1, 0, 3}, {"value-col", 1, 0, 4},
        {"type-col", 1, 0, 5}, {"time-unit", 1, 0, 6}, {"default-type", 1, 0, 7},
        {"splice", 0, 0, 8}, {"splice-control", 0, 0, 9}, {"splice-seed", 1, 0, 10},
        {"splice-min-events", 1, 0, 11}, {"recentpop-halflife", 1, 0, 12},
        {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    char err[1024];
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "b:t:C:i:f:c:F:T:r:a:m:k:w:x:s:ep:R:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'b': o->bootstrap = *optarg ? optarg : NULL; break; /* "": as if not given */
        case 't': o->topic = optarg; break;
        case 'C': o->catalog_topic = optarg; break;
        case 'i': o->input = optarg; break;
        case 'f': o->ds.format = optarg; break;
        case 'c': o->catalog = optarg; break;
        case 'F': o->from = optarg; break;
        case 'T': o->to = optarg; break;
        case 'r': o->report = optarg; break;
        case 'a': o->arms = optarg; break;
        case 'm': rc = dr_config_set(&o->cfg, "learner.mode", optarg, err, sizeof(err)); break;
        case 'k': o->k = atoi(optarg); break;
        case 'w': o->window = atoi(optarg); break;
        case 'x': rc = dr_config_load_file(&o->cfg, optarg, err, sizeof(err)); break;
        case 's': rc = dr_config_set_pair(&o->cfg, optarg, err, sizeof(err)); break;
        case 'e': o->embedded = true; break;
        case 'p': o->partitions = atoi(optarg); break;
        case 'R': o->ds.min_rating = (float)atof(optarg); break;
        case 1: o->ds.user_col = optarg; break;
        case 2: o->ds.item_col = optarg; break;
        case 3: o->ds.time_col = optarg; break;
        case 4: o->ds.value_col = optarg; break;
        case 5: o->ds.type_col = optarg; break;
        case 6: o->ds.time_unit = optarg; break;
        case 7: o->ds.default_type = optarg; break;
        case 8: o->splice = true; break;
        case 9: o->splice = o->sp.control = true; break;
        case 10: {
            uint64_t v;
            if (parse_count(optarg, (uint64_t)DR_MAX_ID - 1, &v)) {
                fprintf(stderr, "driftrec: --splice-seed takes an integer from 0 to 2^53-1, not '%s'\n", optarg);
                return 2;
            }
            o->sp.seed = v;
            o->splice_opt_given = true;
            break;
        }
        case 11: {
            uint64_t v;
            if (parse_count(optarg, 1u << 30, &v) || v < 2) {
                fprintf(stderr, "driftrec: --splice-min-events takes an integer of at least 2, not '%s'\n", optarg);
                return 2;
            }
            o->sp.min_events = (int)v;
            o->splice_opt_given = true;
            break;
        }
        case 12: {
            uint64_t v;
            if (parse_count(optarg, (uint64_t)1e12, &v) || v < 1) {
                fprintf(stderr, "driftrec: --recentpop-halflife takes a number of events from 1 to 10^12, not '%s'\n",
                        optarg);
                return 2;
            }
            o->recentpop_halflife = (double)v;
            break;
        }
        case 'q': o->quiet = true; break;
        case 'h': return 1;
        default: return 2;
        }
        if (rc) fprintf(stderr, "driftrec: %s\n", err);
    }
    if (rc) return 2;
    if (o->splice_opt_given && !o->splice) {
        fprintf(stderr, "driftrec: --splice-seed and --splice-min-events go with --splice or --splice-control\n");
        return 2;
    }
    if (optind < argc && !o->input) o->input = argv[optind++];
    if (optind < argc) { fprintf(stderr, "driftrec: unexpected argument '%s'\n", argv[optind]); return 2; }
    if (dr_config_finish(&o->cfg, err, sizeof(err))) { fprintf(stderr, "driftrec: %s\n", err); return 2; }
    dr_log_set_level((dr_log_level_t)dr_log_level_parse(o->cfg.log_level));
    return 0;
}

/* ---- producing ------------------------------------------------------------ */

static rd_kafka_t *make_client(rd_kafka_type_t type, const char *const (*props)[2], size_t n) {
    char e[512];
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(props, n, NULL, NULL, 0, e, sizeof(e));
    rd_kafka_t *rk = kc ? rd_kafka_new(type, kc, e, sizeof(e)) : NULL;
    if (!rk) {
        fprintf(stderr, "driftrec: %s\n", e);
        if (kc) rd_kafka_conf_destroy(kc);
    }
    return rk;
}

static rd_kafka_t *make_producer(const char *bootstrap) {
    const char *const props[][2] = {{"bootstrap.servers", bootstrap}, {"linger.ms", "20"},
                                    {"batch.num.messages", "10000"}, {"compression.type", "lz4"},
                                    {"enable.idempotence", "true"},
                                    {"queue.buffering.max.messages", "1000000"}};
    return make_client(RD_KAFKA_PRODUCER, props, sizeof(props) / sizeof(props[0]));
}

static int produce(rd_kafka_t *rk, const char *topic, int64_t key_id, const dr_buf_t *buf) {
    char key[DR_ID_KEY_MAX];
    size_t klen = dr_id_key(key, key_id);
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, klen),
                                    RD_KAFKA_V_VALUE(buf->data, buf->len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
    if (err) fprintf(stderr, "driftrec: produce to %s: %s\n", topic, rd_kafka_err2str(err));
    return err ? DR_EKAFKA : 0;
}

static void progress(const char *what, size_t done, size_t total, bool quiet) {
    if (quiet || !isatty(STDERR_FILENO)) return;
    int width = 40, filled = total ? (int)((double)done / (double)total * width) : width;
    fprintf(stderr, "\r%-8s [%.*s%*s] %zu/%zu", what, filled, "########################################",
            width - filled, "", done, total);
    if (done == total) fputc('\n', stderr);
}

/* Produces the dataset's events (sorted) and its catalog. */
static int load_dataset(opts_t *o, const dr_dataset_t *d, const char *bootstrap, const char *catalog_topic) {
    rd_kafka_t *rk = make_producer(bootstrap);
    dr_codec_t *codec = NULL;
    dr_buf_t buf = {0};
    char e[512];
    int rc = rk ? dr_codec_new(&codec, &o->cfg.codec, e, sizeof(e)) : DR_EKAFKA;
    /* the topics' metadata first: a producer that learns it from its first
     * record waits about a second (../shared/docs/STACK-NOTES.md), most of
     * the load of a 100k-event file */
    int parts;
    if (!rc && (rc = dr_ingest_topic_partitions_err(rk, o->topic, 10000, &parts, e, sizeof(e))))
        fprintf(stderr, "driftrec: %s: nothing was produced\n", e); /* else each record waits out the flush below */
    if (!rc && d->n_items) (void)dr_ingest_topic_partitions(rk, catalog_topic, 10000, &parts);
    for (size_t i = 0; !rc && i < d->n; i++) {
        if ((rc = dr_codec_encode_event(codec, &d->events[i], &buf)) == 0)
            rc = produce(rk, o->topic, d->events[i].user_id, &buf);
        if (i % 8192 == 0 || i + 1 == d->n) progress("events", i + 1, d->n, o->quiet);
    }
    for (size_t i = 0; !rc && i < d->n_items; i++) {
        const float *emb = d->item_emb ? d->item_emb + i * (size_t)d->emb_dim : NULL;
        bool any = false; /* a movie with no genres listed has no content, not a zero vector */
        for (int k = 0; emb && k < d->emb_dim; k++) any |= emb[k] != 0.0f;
        dr_item_rec_t it = {d->item_ids[i], any ? emb : NULL, any ? (size_t)d->emb_dim : 0, false, false, -1, -1, -1};
        if ((rc = dr_codec_encode_item(codec, &it, &buf)) == 0) rc = produce(rk, catalog_topic, it.item_id, &buf);
    }
    if (!rc && rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "driftrec: not every record was delivered within 60 s\n");
        rc = DR_EKAFKA;
    }
    dr_buf_free(&buf);
    dr_codec_free(codec);
    if (rk) rd_kafka_destroy(rk);
    return rc;
}

static int read_dataset(opts_t *o, dr_dataset_t *d) {
    char err[1024];
    int rc = dr_dataset_read(d, o->input, &o->ds, err, sizeof(err));
    if (!rc && o->catalog) rc = dr_dataset_read_catalog(d, o->catalog, err, sizeof(err));
    if (!rc) rc = dr_dataset_sort(d);
    if (rc) fprintf(stderr, "driftrec: %s\n", err);
    else if (d->skipped)
        fprintf(stderr, "driftrec: %zu lines of %s could not be read and were skipped\n", d->skipped, o->input);
    return rc;
}

/* ---- reading a topic range -------------------------------------------------- */

typedef int (*msg_fn)(void *ctx, const rd_kafka_message_t *m);

/* Resolves --from/--to for one partition: 'beginning', 'end' or an offset. */
static int resolve(const char *spec, int64_t lo, int64_t hi, int64_t dflt, int64_t *out) {
    if (!spec) { *out = dflt; return 0; }
    if (!strcmp(spec, "beginning")) { *out = lo; return 0; }
    if (!strcmp(spec, "end")) { *out = hi; return 0; }
    char *end;
    long long v = strtoll(spec, &end, 10);
    if (*spec == '\0' || *end != '\0' || v < 0) return DR_EINVAL;
    *out = v < hi ? v : hi;
    return 0;
}

static rd_kafka_t *make_reader(const char *bootstrap) {
    char group[64];
    snprintf(group, sizeof(group), "driftrec-replay-%d", (int)getpid()); /* isolated, never committed */
    const char *const props[][2] = {{"bootstrap.servers", bootstrap}, {"group.id", group},
                                    {"enable.auto.commit", "false"}, {"enable.partition.eof", "false"},
                                    {"fetch.wait.max.ms", "10"}, {"queued.min.messages", "1000000"}};
    return make_client(RD_KAFKA_CONSUMER, props, sizeof(props) / sizeof(props[0]));
}

/* The topic's partition count (dr_ingest_topic_partitions); an error, said
 * on stderr, when the metadata cannot be read or the topic does not exist. */
static int partition_count(rd_kafka_t *rk, const char *topic, int *n) {
    char why[600];
    int rc = dr_ingest_topic_partitions_err(rk, topic, 10000, n, why, sizeof(why));
    if (rc) fprintf(stderr, "driftrec: topic %s: %s: nothing was read\n", topic, why);
    else if (*n < 1) fprintf(stderr, "driftrec: topic %s: no such topic\n", topic);
    return rc ? rc : *n < 1 ? DR_EKAFKA : 0;
}

/* Builds the assignment [from, to) per partition; fails clearly when the
 * range starts before what the broker still keeps. */
static int plan_range(rd_kafka_t *rk, const char *topic, const char *from, const char *to,
                      rd_kafka_topic_partition_list_t *list, int64_t *ends, int *n_parts) {
    int rc = partition_count(rk, topic, n_parts);
    for (int p = 0; !rc && p < *n_parts; p++) {
        int64_t lo, hi, start, stop;
        rd_kafka_resp_err_t err = dr_ingest_watermarks(rk, topic, p, &lo, &hi, 10000);
        if (err) { fprintf(stderr, "driftrec: %s[%d]: %s\n", topic, p, rd_kafka_err2str(err)); return DR_EKAFKA; }
        if (resolve(from, lo, hi, lo, &start) || resolve(to, lo, hi, hi, &stop)) {
            fprintf(stderr, "driftrec: --from/--to take an offset, 'beginning' or 'end'\n");
            return DR_EINVAL;
        }
        if (start < lo) {
            fprintf(stderr, "driftrec: %s[%d]: the range starts at offset %" PRId64 " but the broker only keeps offsets "
                    "%" PRId64 "..%" PRId64 " (the embedded broker keeps ~5 MiB per partition); the rest no longer exists\n",
                    topic, p, start, lo, hi);
            return DR_ERANGE;
        }
        ends[p] = stop;
        if (start < stop) rd_kafka_topic_partition_list_add(list, topic, p)->offset = start;
    }
    return rc;
}

/* Reads every partition of topic over [from, to), calling fn per record. */
static int read_range(const char *bootstrap, const char *topic, const char *from, const char *to,
                      msg_fn fn, void *ctx) {
    rd_kafka_t *rk = make_reader(bootstrap);
    if (!rk) return DR_EKAFKA;
    int64_t *ends = calloc(DR_INGEST_MAX_PARTITIONS, sizeof(int64_t));
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
    int n_parts = 0, rc = ends ? plan_range(rk, topic, from, to, list, ends, &n_parts) : DR_ENOMEM;
    int remaining = list->cnt;
    if (!rc && remaining > 0 && rd_kafka_assign(rk, list)) rc = DR_EKAFKA;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t *batch[4096];
    int64_t idle_since = dr_mono_ms();
    while (!rc && remaining > 0) {
        ssize_t n = rd_kafka_consume_batch_queue(q, 100, batch, 4096);
        if (n > 0) idle_since = dr_mono_ms();
        else if (dr_mono_ms() - idle_since > 30000) {
            fprintf(stderr, "driftrec: %s: no data for 30 s before the end of the range\n", topic);
            rc = DR_EKAFKA;
        }
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = batch[i];
            if (!rc && !m->err && m->partition < n_parts && m->offset < ends[m->partition]) {
                rc = fn(ctx, m);
                if (m->offset + 1 == ends[m->partition]) remaining--;
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_topic_partition_list_destroy(list);
    free(ends);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

typedef struct ranged_event {
    dr_event_t ev;
    int32_t partition;
    int64_t offset;
} ranged_event_t;

typedef struct collect {
    dr_codec_t *codec;
    ranged_event_t *v;
    size_t n, cap, bad;
    int64_t *items;
    size_t n_items, cap_items;
    float *emb;                 /* decode scratch for catalog embeddings */
    float *item_emb;            /* n_items × emb_dim (zero rows: none), once one is seen */
    int emb_dim;
    size_t bad_emb;             /* embeddings of another length than the first */
} collect_t;

static int collect_event(void *ctx, const rd_kafka_message_t *m) {
    collect_t *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 65536;
        ranged_event_t *v = realloc(c->v, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    ranged_event_t *r = &c->v[c->n];
    if (!m->payload || dr_codec_decode_event(c->codec, m->payload, m->len, &r->ev, NULL, 0)) {
        c->bad++; /* the live pipeline dead-letters these; a replay skips them */
        return 0;
    }
    r->partition = m->partition;
    r->offset = m->offset;
    c->n++;
    return 0;
}

static int collect_item(void *ctx, const rd_kafka_message_t *m) {
    collect_t *c = ctx;
    dr_item_rec_t it;
    if (!c->emb && !(c->emb = malloc(DR_CODEC_MAX_EMBEDDING * sizeof(float)))) return DR_ENOMEM;
    if (!m->payload || dr_codec_decode_item(c->codec, m->payload, m->len, &it, c->emb,
                                            DR_CODEC_MAX_EMBEDDING, NULL, 0)) {
        c->bad++;
        return 0;
    }
    if (it.deleted || it.blocked) return 0;
    if (c->n_items == c->cap_items) {
        size_t cap = c->cap_items ? c->cap_items * 2 : 16384;
        int64_t *v = realloc(c->items, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        c->items = v;
        if (c->emb_dim > 0) {
            float *e = realloc(c->item_emb, cap * (size_t)c->emb_dim * sizeof(float));
            if (!e) return DR_ENOMEM;
            c->item_emb = e;
        }
        c->cap_items = cap;
    }
    if (it.embedding_len > 0 && c->emb_dim == 0 && it.embedding_len <= DR_MAX_CONTENT_DIM) {
        c->emb_dim = (int)it.embedding_len; /* the first embedding fixes c */
        if (!(c->item_emb = calloc(c->cap_items, it.embedding_len * sizeof(float)))) return DR_ENOMEM;
    }
    if (c->emb_dim > 0) {
        float *row = c->item_emb + c->n_items * (size_t)c->emb_dim;
        bool fits = it.embedding_len == (size_t)c->emb_dim;
        if (it.embedding_len > 0 && !fits) c->bad_emb++;
        if (fits) memcpy(row, it.embedding, it.embedding_len * sizeof(float));
        else memset(row, 0, (size_t)c->emb_dim * sizeof(float));
    }
    c->items[c->n_items++] = it.item_id;
    return 0;
}

static int cmp_ranged(const void *a, const void *b) {
    const ranged_event_t *x = a, *y = b;
    if (x->ev.timestamp_ms != y->ev.timestamp_ms) return x->ev.timestamp_ms < y->ev.timestamp_ms ? -1 : 1;
    if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* ---- the commands ------------------------------------------------------------ */

static void opts_init(opts_t *o) {
    memset(o, 0, sizeof(*o));
    dr_dataset_opts_default(&o->ds);
    dr_config_default(&o->cfg);
    o->partitions = 8;
    o->k = 10;
    o->window = 5000;
    o->report = "replay-report";
    o->arms = NULL; /* the mode's defaults, once the mode is known */
    o->recentpop_halflife = DR_REPLAY_RECENTPOP_HALFLIFE;
    o->sp.seed = DR_SPLICE_SEED;
    o->sp.min_events = DR_SPLICE_MIN_EVENTS;
}

static char *default_catalog_topic(const opts_t *o, char *buf, size_t n) {
    if (o->catalog_topic) return (char *)o->catalog_topic;
    snprintf(buf, n, "%s.catalog", o->topic);
    return buf;
}

int dr_cmd_load(int argc, char **argv) {
    opts_t *o = malloc(sizeof(*o));
    if (!o) return 1;
    opts_init(o);
    int rc = parse(o, argc, argv);
    if (rc == 0 && (!o->input || !o->topic || !o->bootstrap)) {
        fprintf(stderr, "driftrec load: FILE, --topic and --bootstrap are required\n");
        rc = 2;
    }
    if (rc == 0 && o->splice) {
        fprintf(stderr, "driftrec load: --splice is a replay option (the topic keeps the real users)\n");
        rc = 2;
    }
    if (rc) { usage(rc == 1 ? stdout : stderr, "load"); free(o); return rc == 1 ? 0 : rc; }
    dr_dataset_t d = {0};
    char ct[512];
    double t0 = dr_mono_s();
    rc = read_dataset(o, &d) || load_dataset(o, &d, o->bootstrap, default_catalog_topic(o, ct, sizeof(ct)));
    if (!rc)
        fprintf(stderr, "loaded %zu events to %s and %zu items to %s in %.2f s\n", d.n, o->topic, d.n_items,
                default_catalog_topic(o, ct, sizeof(ct)), dr_mono_s() - t0);
    if (!rc && d.emb_dim > 0) /* the pipeline dead-letters embeddings of another length */
        fprintf(stderr, "the items carry embeddings of %d floats: run with --set learner.content.dim=%d "
                        "--set topic.catalog=%s\n", d.emb_dim, d.emb_dim, default_catalog_topic(o, ct, sizeof(ct)));
    dr_dataset_free(&d);
    free(o);
    return rc ? 1 : 0;
}

/* Reads the range (and the catalog, if any) and replays it. */
static int replay_from(opts_t *o, const char *bootstrap, double t_start) {
    char e[1024], ct[512];
    collect_t c = {0};
    dr_splice_t splice = {0};
    int rc = dr_codec_new(&c.codec, &o->cfg.codec, e, sizeof(e));
    if (rc) { fprintf(stderr, "driftrec: %s\n", e); return rc; }
    rc = read_range(bootstrap, o->topic, o->from, o->to, collect_event, &c);
    const char *cat = default_catalog_topic(o, ct, sizeof(ct));
    int nparts;
    if (!rc && (o->catalog_topic || o->catalog)) {
        rc = read_range(bootstrap, cat, "beginning", "end", collect_item, &c);
    } else if (!rc && !o->embedded) {
        rd_kafka_t *probe = make_reader(bootstrap); /* an optional catalog beside the topic */
        if (probe && partition_count(probe, cat, &nparts) == 0)
            rc = read_range(bootstrap, cat, "beginning", "end", collect_item, &c);
        if (probe) rd_kafka_destroy(probe);
    }
    if (c.bad) fprintf(stderr, "driftrec: %zu records in the range could not be decoded and were skipped\n", c.bad);
    qsort(c.v, c.n, sizeof(*c.v), cmp_ranged);
    dr_event_t *events = malloc(c.n * sizeof(dr_event_t) + 1);
    if (!rc && !events) rc = DR_ENOMEM;
    for (size_t i = 0; !rc && i < c.n; i++) events[i] = c.v[i].ev;
    if (!rc) {
        dr_replay_conf_t rcfg = {&o->cfg.learner, o->k, o->window, 10, {0}, 0, o->recentpop_halflife};
        int n_arms = dr_replay_parse_arms(o->arms, rcfg.arms, DR_REPLAY_MAX_ARMS, e, sizeof(e));
        if (n_arms < 0) { fprintf(stderr, "driftrec: %s\n", e); rc = n_arms; }
        rcfg.n_arms = n_arms;
        char source[1024];
        snprintf(source, sizeof(source), "%s[%s..%s)", o->topic, o->from ? o->from : "beginning", o->to ? o->to : "end");
        if (c.bad_emb)
            fprintf(stderr, "driftrec replay: %zu catalog embeddings did not have the first one's %d floats: those items have none\n",
                    c.bad_emb, c.emb_dim);
        /* spliced here, after the merge by event time: the same for a
         * dataset file and for any topic range */
        if (!rc && o->splice && (rc = dr_splice_events(events, c.n, &o->sp, &splice, e, sizeof(e))))
            fprintf(stderr, "driftrec replay: %s\n", e);
        dr_replay_input_t in = {events, c.n, c.items, c.n_items, c.item_emb, c.emb_dim,
                                dr_mono_s() - t_start, o->input ? o->input : source,
                                o->splice ? &splice : NULL};
        openblas_set_num_threads(1); /* one BLAS thread per arm thread */
        if (!rc && (rc = dr_replay_run(&rcfg, &in, o->report, e, sizeof(e))))
            fprintf(stderr, "driftrec replay: %s\n", e);
    }
    if (!rc) {
        char json[1200], html[1200];
        snprintf(json, sizeof(json), "%s/report.json", o->report);
        snprintf(html, sizeof(html), "%s/report.html", o->report);
        if ((rc = dr_report_html_write(json, html, e, sizeof(e)))) fprintf(stderr, "driftrec replay: %s\n", e);
        else fprintf(stderr, "report: %s and %s (%.2f s in all)\n", json, html, dr_mono_s() - t_start);
    }
    dr_splice_free(&splice);
    free(events);
    free(c.v);
    free(c.items);
    free(c.item_emb);
    free(c.emb);
    dr_codec_free(c.codec);
    return rc;
}

static int replay_embedded(opts_t *o, double t0) {
    char e[512];
    dr_embedded_t *b = NULL;
    dr_dataset_t d = {0};
    char ct[512];
    if (!o->topic) o->topic = "driftrec.replay";
    int rc = read_dataset(o, &d);
    if (!rc) rc = dr_embedded_new(&b, 1, e, sizeof(e));
    if (!rc) rc = dr_embedded_create_topic(b, o->topic, o->partitions, e, sizeof(e));
    if (!rc && d.n_items) rc = dr_embedded_create_topic(b, default_catalog_topic(o, ct, sizeof(ct)), 1, e, sizeof(e));
    if (rc && rc != DR_ENOMEM && e[0]) fprintf(stderr, "driftrec: %s\n", e);
    if (!rc) rc = load_dataset(o, &d, dr_embedded_bootstraps(b), default_catalog_topic(o, ct, sizeof(ct)));
    if (!rc && d.n_items) o->catalog_topic = default_catalog_topic(o, ct, sizeof(ct));
    if (!rc) rc = replay_from(o, dr_embedded_bootstraps(b), t0);
    dr_dataset_free(&d);
    dr_embedded_free(b);
    return rc;
}

int dr_cmd_replay(int argc, char **argv) {
    opts_t *o = malloc(sizeof(*o));
    if (!o) return 1;
    opts_init(o);
    int rc = parse(o, argc, argv);
    if (rc == 0 && (o->embedded ? !o->input : (!o->topic || !o->bootstrap))) {
        fprintf(stderr, "driftrec replay: give --bootstrap and --topic, or --embedded --input FILE\n");
        rc = 2;
    }
    if (rc == 0 && (o->k < 1 || o->window < 1)) {
        fprintf(stderr, "driftrec replay: --k and --window must be >= 1\n");
        rc = 2;
    }
    if (rc == 0) { /* checked before anything is loaded: an arm the mode cannot measure is refused */
        char e[512];
        dr_arm_kind_t kinds[DR_REPLAY_MAX_ARMS];
        if (!o->arms) o->arms = dr_replay_default_arms(o->cfg.learner.mode);
        int n = dr_replay_parse_arms(o->arms, kinds, DR_REPLAY_MAX_ARMS, e, sizeof(e));
        if (n < 0 || dr_replay_check_arms(kinds, n, o->cfg.learner.mode, e, sizeof(e))) {
            fprintf(stderr, "driftrec replay: %s\n", e);
            free(o);
            return 2;
        }
    }
    if (rc) { usage(rc == 1 ? stdout : stderr, "replay"); free(o); return rc == 1 ? 0 : rc; }
    double t0 = dr_mono_s();
    rc = o->embedded ? replay_embedded(o, t0) : replay_from(o, o->bootstrap, t0);
    free(o);
    return rc ? 1 : 0;
}
