/* cmd_dlq.c - `driftrec dlq replay`: puts records that ingest dead-lettered
 * (dr_ingest_dead_letter) back on their source topic once their cause is
 * fixed, with the original key, value and headers, plus a retry count
 * (dr.retries) that ingest keeps when a record is dead-lettered again: past
 * --max-retries it is not replayed, so no record loops forever. A consumer
 * group's committed offsets remember what was dealt with, and are committed
 * only behind records whose produce was delivered, so a failure neither
 * loses nor doubles a record; an explicit --from/--to range is a manual
 * selection that neither reads nor commits them. */
#include "dr_cmd_dlq.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "dr_config.h"
#include "dr_err.h"
#include "dr_ingest.h"
#include "dr_log.h"

/* Records read between two commits. It also bounds the commit metadata
 * (records delivered past a failed one, below): under 500 small deltas fit
 * the brokers' offset.metadata.max.bytes (4096 by default). */
#define BATCH 500
#define MAX_PICKED 16       /* --class names */
#define MAX_COUNTED 16      /* distinct classes counted as skipped; the rest are "other" */
#define MAX_TARGETS 64      /* target topics remembered as existing */
#define MAX_SAMPLES 10      /* lines of each kind --dry-run prints */
#define MAX_RETRIES_LIMIT 1000 /* the highest --max-retries */
/* Commit metadata of a partition whose committed offset stops at a record
 * that was not delivered while later ones were: their offsets, as deltas
 * from the committed one ("dr.replayed:2,5-7"). The next run skips them. */
#define META_PREFIX "dr.replayed:"

/* The reason classes dr_ingest_dead_letter writes, beside those of
 * dr_ingest_dlq_reason_name. */
static const char *const extra_classes[] = {"registry"};

typedef enum { PICK_RETRYABLE, PICK_CLASSES, PICK_ALL } pick_t;

typedef struct opts {
    const char *target;     /* NULL: each record's dr.source.topic */
    const char *from, *to;  /* an explicit range ('beginning', 'end', an offset); both NULL: the group's */
    bool ranged;            /* --from or --to given: no group offsets read or committed */
    const char *group;
    const char *bootstrap;  /* NULL: kafka.bootstrap.servers */
    pick_t pick;
    char picked[MAX_PICKED][32];
    int n_picked;
    bool dry_run;
    long long limit;        /* records to replay at most; -1: all */
    long long max_retries;  /* a dead letter with dr.retries >= this is not replayed */
    int timeout_ms;
} opts_t;

typedef enum { E_DONE, E_PENDING, E_DELIVERED, E_FAILED } entry_state_t;

/* A record of the current batch: dealt with (skipped), or produced and
 * waiting for, or given, its delivery report. */
typedef struct entry {
    int32_t partition;
    int64_t offset;
    entry_state_t state;
    rd_kafka_resp_err_t err;
    rd_kafka_msg_status_t status; /* of a failed one: whether it may be on the target */
} entry_t;

typedef struct part {
    int64_t end;            /* the high watermark at the start: read below it only */
    bool open;              /* records below end still to read */
    bool touched;           /* records of it in the current batch */
    int64_t *replayed;      /* offsets an earlier run delivered past its committed one */
    size_t n_replayed;
} part_t;

typedef struct counted {
    char name[32];
    uint64_t n;
} counted_t;

typedef struct replay {
    opts_t o;
    const dr_config_t *cfg;
    rd_kafka_t *consumer, *producer;
    part_t *parts;
    int n_parts, open;
    entry_t batch[BATCH];
    int n, pending;
    char targets[MAX_TARGETS][DR_NAME_MAX]; /* checked to exist */
    int n_targets;
    uint64_t read, truncated, no_source, already, skipped, exhausted;
    uint64_t chosen;        /* produced (or, with --dry-run, would be): what --limit counts */
    uint64_t replayed;      /* delivered (with --dry-run: chosen) */
    counted_t skipped_by[MAX_COUNTED];
    int n_skipped_by;
    int samples, exhausted_samples;
    bool stop;              /* the limit is reached, or a failure */
    char err[1024];         /* the failure, when one stopped the run */
} replay_t;

/* The synopsis; with `full`, what every option does. */
static void usage(FILE *f, bool full) {
    fprintf(f, "usage: driftrec dlq replay [--config FILE] [--set key=value]... [--bootstrap HOST:PORT]\n"
               "                           [--reason-class LIST | --all] [--from X] [--to Y] [--target TOPIC]\n"
               "                           [--max-retries N] [--group ID] [--limit N] [--dry-run]\n"
               "                           [--timeout-ms MS]\n");
    if (!full) {
        fprintf(f, "`driftrec dlq replay --help` explains them.\n");
        return;
    }
    fprintf(f,
            "Puts dead-lettered records of the DLQ topic (topic.dlq: <topic.events>.dlq unless set)\n"
            "back on their source topic (header dr.source.topic) with their original key, value and\n"
            "non-dr. headers, plus dr.replayed.from = DLQ:PARTITION:OFFSET and dr.retries = the dead\n"
            "letter's own dr.retries + 1 (taken as 0 when absent or not a decimal number). A replayed\n"
            "record that fails again is dead-lettered with its dr.retries, so it goes back at most\n"
            "--max-retries times: it never loops forever. Without --from/--to every partition is read\n"
            "from the group's committed offset (from the oldest record when none) to its end as of\n"
            "the start, so records dead-lettered again meanwhile wait for the next run.\n"
            "  --reason-class LIST  replay the records of these reason classes (comma-separated:\n"
            "                       decode, schema, invalid, empty, rejected, registry); by default\n"
            "                       only those marked dr.retryable: true (their cause was transient).\n"
            "                       --class LIST is the same\n"
            "  --all                replay every class\n"
            "  --from X, --to Y     read only offsets X (inclusive) to Y (exclusive) of every partition:\n"
            "                       X and Y are offsets (the same in every partition), 'beginning' or\n"
            "                       'end' (by default beginning and end). An explicit range is a manual\n"
            "                       selection: the group's committed offsets are neither used nor\n"
            "                       committed (so --group is refused), and records of the range are\n"
            "                       replayed again each time it is given\n"
            "  --target TOPIC       produce to TOPIC instead of each record's source topic (a record\n"
            "                       without dr.source.topic is otherwise skipped and counted)\n"
            "  --max-retries N      do not replay a dead letter whose dr.retries is N or more (3; 0 to\n"
            "                       1000); it is counted as exhausted. A higher N gives such records a\n"
            "                       deliberate extra try: with --from/--to, or a group of its own, since\n"
            "                       the group that counted them exhausted has passed over them\n"
            "  --group ID           the consumer group whose committed offsets remember what was dealt\n"
            "                       with (driftrec-dlq-replay). Records a run passes over (other classes,\n"
            "                       exhausted ones) are not read again by its group: give each selection\n"
            "                       a group of its own\n"
            "  --limit N            replay at most N records; the rest wait for the group's next run\n"
            "  --dry-run            print what would be replayed; produce nothing, commit nothing\n"
            "  --bootstrap B        kafka.bootstrap.servers (kafka.* settings apply to the consumer and\n"
            "                       the producer alike)\n"
            "  --timeout-ms MS      for metadata, offsets, and the cluster's silence while reading\n"
            "                       (10000)\n"
            "Without --from/--to, offsets are committed only behind delivered records (idempotent\n"
            "producer, delivery reports awaited, kafka.message.timeout.ms 30000 unless set): a failed\n"
            "delivery stops the run with exit 1, and the next run starts at the first record not\n"
            "delivered (records delivered past it are named in the commit's metadata and skipped).\n"
            "A record whose value was cut (dr.value.truncated) is never replayed. Prints one summary\n"
            "line:\n"
            "  dlq replay: dlq=T group=G read=N replayed=N skipped_by_class=N (CLASS:N ...)\n"
            "              truncated=N no_source_topic=N exhausted=N already_replayed=N\n"
            "(range=[X..Y) instead of group=G with --from/--to; with --dry-run, would_replay=N, after\n"
            "a sample of the records that would be replayed and of the exhausted ones).\n"
            "Exit status: 0 done, 1 a failure (named on stderr), 2 bad usage.\n");
}

/* ---- options ----------------------------------------------------------------- */

static bool known_class(const char *name) {
    for (int c = 0; c < DR_DLQ__COUNT; c++)
        if (!strcmp(name, dr_ingest_dlq_reason_name(c))) return true;
    for (size_t i = 0; i < sizeof(extra_classes) / sizeof(extra_classes[0]); i++)
        if (!strcmp(name, extra_classes[i])) return true;
    return false;
}

/* --reason-class LIST into o->picked; 0, or 2 with the reason on stderr. */
static int parse_classes(opts_t *o, const char *list) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list);
    o->pick = PICK_CLASSES;
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (!known_class(name)) {
            fprintf(stderr, "driftrec dlq replay: --reason-class: \"%s\" is not a reason class (decode, schema, "
                            "invalid, empty, rejected, registry)\n", name);
            return 2;
        }
        if (o->n_picked == MAX_PICKED) continue;
        snprintf(o->picked[o->n_picked++], sizeof(o->picked[0]), "%s", name);
    }
    if (o->n_picked == 0) {
        fprintf(stderr, "driftrec dlq replay: --reason-class: no class given\n");
        return 2;
    }
    return 0;
}

static bool parse_count(const char *text, long long lo, long long *out) {
    char *end;
    long long v = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < lo) return false;
    *out = v;
    return true;
}

/* --from/--to: 'beginning', 'end' or an offset (0 or more; into *offset,
 * -1 for the two names). */
static bool parse_position(const char *text, long long *offset) {
    *offset = -1;
    return !strcmp(text, "beginning") || !strcmp(text, "end") || parse_count(text, 0, offset);
}

/* Checks --from/--to; 0, or 2 with the reason on stderr. */
static int check_range(const opts_t *o) {
    long long from = -1, to = -1;
    if (o->from && !parse_position(o->from, &from)) {
        fprintf(stderr, "driftrec dlq replay: --from \"%s\" is not an offset, 'beginning' or 'end'\n", o->from);
        return 2;
    }
    if (o->to && !parse_position(o->to, &to)) {
        fprintf(stderr, "driftrec dlq replay: --to \"%s\" is not an offset, 'beginning' or 'end' (the topic to "
                        "produce to is --target)\n", o->to);
        return 2;
    }
    if (from >= 0 && to >= 0 && from > to) {
        fprintf(stderr, "driftrec dlq replay: --from %lld is past --to %lld\n", from, to);
        return 2;
    }
    return 0;
}

/* Reads the options into o and cfg; 0, 1 (--help) or 2 (reported). */
static int parse_args(opts_t *o, dr_config_t *cfg, int argc, char **argv) {
    static const struct option lo[] = {
        {"config", 1, 0, 'c'},      {"set", 1, 0, 's'},        {"bootstrap", 1, 0, 'b'},   {"target", 1, 0, 'T'},
        {"reason-class", 1, 0, 'C'}, {"class", 1, 0, 'C'},     {"all", 0, 0, 'a'},         {"from", 1, 0, 'F'},
        {"to", 1, 0, 'U'},          {"max-retries", 1, 0, 'r'}, {"dry-run", 0, 0, 'n'},    {"group", 1, 0, 'g'},
        {"limit", 1, 0, 'l'},       {"timeout-ms", 1, 0, 't'}, {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    char err[1024];
    long long v;
    int c, rc = 0;
    bool all = false, group_given = false;
    *o = (opts_t){.group = "driftrec-dlq-replay", .limit = -1, .max_retries = 3, .timeout_ms = 10000};
    dr_config_default(cfg);
    if (argc < 2 || strcmp(argv[1], "replay") != 0) {
        bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        if (!help) fprintf(stderr, "driftrec dlq: %s\n", argc < 2 ? "a subcommand is needed" : "unknown subcommand");
        return help ? 1 : 2;
    }
    optind = 2;
    while (!rc && (c = getopt_long(argc, argv, "c:s:b:T:C:aF:U:r:ng:l:t:h", lo, NULL)) != -1) {
        if (c == 'c' || c == 's') {
            int e = c == 'c' ? dr_config_load_file(cfg, optarg, err, sizeof(err))
                             : dr_config_set_pair(cfg, optarg, err, sizeof(err));
            if (e) fprintf(stderr, "driftrec dlq replay: %s\n", err);
            rc = e ? 2 : 0;
        } else if (c == 'b') o->bootstrap = optarg;
        else if (c == 'T') o->target = optarg;
        else if (c == 'C') rc = parse_classes(o, optarg);
        else if (c == 'a') all = true;
        else if (c == 'F') o->from = optarg;
        else if (c == 'U') o->to = optarg;
        else if (c == 'n') o->dry_run = true;
        else if (c == 'g') {
            o->group = optarg;
            group_given = true;
        } else if (c == 'r') {
            if (!parse_count(optarg, 0, &v) || v > MAX_RETRIES_LIMIT) {
                fprintf(stderr, "driftrec dlq replay: --max-retries \"%s\" is not a count from 0 to %d\n", optarg,
                        MAX_RETRIES_LIMIT);
                rc = 2;
            } else o->max_retries = v;
        } else if (c == 'l' || c == 't') {
            if (!parse_count(optarg, 1, &v) || (c == 't' && v > 3600000)) {
                fprintf(stderr, "driftrec dlq replay: --%s \"%s\" is not a %s\n", c == 'l' ? "limit" : "timeout-ms",
                        optarg, c == 'l' ? "count (1 or more)" : "time in ms (1 to 3600000)");
                rc = 2;
            } else if (c == 'l') o->limit = v;
            else o->timeout_ms = (int)v;
        } else rc = c == 'h' ? 1 : 2;
    }
    if (rc) return rc;
    if (optind < argc) {
        fprintf(stderr, "driftrec dlq replay: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (all && o->pick == PICK_CLASSES) {
        fprintf(stderr, "driftrec dlq replay: --all and --reason-class exclude each other\n");
        return 2;
    }
    if (all) o->pick = PICK_ALL;
    if (!o->group[0] || (o->target && !o->target[0])) {
        fprintf(stderr, "driftrec dlq replay: --group and --target need a name\n");
        return 2;
    }
    if ((rc = check_range(o))) return rc;
    o->ranged = o->from || o->to;
    if (o->ranged && group_given) {
        fprintf(stderr, "driftrec dlq replay: --group does not go with --from/--to: an explicit range neither "
                        "reads nor commits a group's offsets\n");
        return 2;
    }
    if ((o->bootstrap && dr_config_set(cfg, "kafka.bootstrap.servers", o->bootstrap, err, sizeof(err))) ||
        dr_config_finish(cfg, err, sizeof(err))) {
        fprintf(stderr, "driftrec dlq replay: %s\n", err);
        return 2;
    }
    if (o->target && !strcmp(o->target, cfg->topic_dlq)) {
        fprintf(stderr, "driftrec dlq replay: --target %s is the DLQ topic itself\n", o->target);
        return 2;
    }
    dr_log_set_level((dr_log_level_t)dr_log_level_parse(cfg->log_level));
    return 0;
}

/* ---- clients ----------------------------------------------------------------- */

/* The delivery report of one replayed record (on the thread that polls the
 * producer: ours). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    replay_t *r = opaque;
    entry_t *e = m->_private;
    e->state = m->err ? E_FAILED : E_DELIVERED;
    e->err = m->err;
    e->status = rd_kafka_message_status(m);
    r->pending--;
    if (!m->err) r->replayed++;
}

/* A client with the kafka.* settings over `defaults`, then `forced` over
 * those (what the replay's guarantees rest on); a producer reports its
 * deliveries to on_delivery. NULL with the reason in r->err. */
static rd_kafka_t *make_client(replay_t *r, rd_kafka_type_t type, const char *const (*defaults)[2],
                               size_t n_defaults, const char *const (*forced)[2], size_t n_forced) {
    const char **keys = NULL, **vals = NULL;
    char *err = r->err;
    size_t n = sizeof(r->err);
    rd_kafka_conf_t *kc = dr_config_kafka_arrays(r->cfg, &keys, &vals) == 0
                              ? dr_ingest_kafka_conf(defaults, n_defaults, keys, vals, r->cfg->n_kafka, err, n)
                              : NULL;
    free(keys);
    free(vals);
    if (!kc) return NULL;
    for (size_t i = 0; i < n_forced; i++)
        if (rd_kafka_conf_set(kc, forced[i][0], forced[i][1], err, n) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(kc);
            return NULL;
        }
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set_opaque(kc, r);
        rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    }
    rd_kafka_t *rk = rd_kafka_new(type, kc, err, n);
    if (!rk) rd_kafka_conf_destroy(kc);
    return rk;
}

/* The reader of the DLQ (positions from, and commits to, the group) and,
 * unless --dry-run, the idempotent producer of the replayed records. */
static int make_clients(replay_t *r) {
    /* a short fetch wait: the run ends as soon as every partition's end is reached */
    const char *const c_defaults[][2] = {{"auto.offset.reset", "earliest"}, {"fetch.wait.max.ms", "100"}};
    const char *const c_forced[][2] = {{"group.id", r->o.group},
                                       {"enable.auto.commit", "false"},
                                       {"enable.auto.offset.store", "false"},
                                       {"enable.partition.eof", "true"}};
    /* delivery reports within 30 s unless kafka.message.timeout.ms says otherwise */
    const char *const p_defaults[][2] = {{"message.timeout.ms", "30000"}, {"linger.ms", "5"}};
    const char *const p_forced[][2] = {{"enable.idempotence", "true"}};
    r->consumer = make_client(r, RD_KAFKA_CONSUMER, c_defaults, 2, c_forced, 4);
    if (!r->consumer) return 1;
    if (!r->o.dry_run && !(r->producer = make_client(r, RD_KAFKA_PRODUCER, p_defaults, 2, p_forced, 1))) return 1;
    return 0;
}

/* The partition count of topic (-1: no such topic) from the metadata of
 * every topic: asking for one topic by name may create it where brokers
 * auto-create topics (the embedded broker does). 0, or DR_EKAFKA when the
 * metadata cannot be read within timeout_ms. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count) {
    const rd_kafka_metadata_t *md = NULL;
    if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) return DR_EKAFKA;
    *count = -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic) && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            *count = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return 0;
}

/* ---- positions --------------------------------------------------------------- */

/* Parses the commit metadata META_PREFIX "d,a-b,..." of partition pt whose
 * committed offset is base; anything else is ignored (another tool's). */
static int parse_replayed(part_t *pt, int64_t base, const char *meta, size_t size) {
    size_t plen = strlen(META_PREFIX);
    if (!meta || size <= plen || size > 8192 || memcmp(meta, META_PREFIX, plen) != 0) return 0;
    char buf[8200];
    memcpy(buf, meta + plen, size - plen);
    buf[size - plen] = '\0';
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long long a = 0, b = 0;
        int got = sscanf(tok, "%lld-%lld", &a, &b);
        if (got < 1 || a < 1 || (got == 2 && (b < a || b - a > BATCH))) continue;
        if (got == 1) b = a;
        int64_t *v = realloc(pt->replayed, (pt->n_replayed + (size_t)(b - a + 1)) * sizeof(*v));
        if (!v) return DR_ENOMEM;
        pt->replayed = v;
        for (long long d = a; d <= b; d++) pt->replayed[pt->n_replayed++] = base + d;
    }
    return 0;
}

/* --from/--to for one partition, as `driftrec replay` reads them:
 * 'beginning', 'end' or an offset (one past the end means the end). */
static int64_t resolve(const char *spec, int64_t lo, int64_t hi, int64_t dflt) {
    if (!spec) return dflt;
    if (!strcmp(spec, "beginning")) return lo;
    if (!strcmp(spec, "end")) return hi;
    long long v = strtoll(spec, NULL, 10); /* checked by parse_position */
    return v < hi ? v : hi;
}

/* Where partition p starts and ends with --from/--to; 0, or 1 with r->err
 * set when the range starts before the oldest record kept. */
static int range_bounds(replay_t *r, int p, int64_t lo, int64_t hi, int64_t *from, int64_t *end) {
    *from = resolve(r->o.from, lo, hi, lo);
    *end = resolve(r->o.to, lo, hi, hi);
    if (*from >= lo) return 0;
    snprintf(r->err, sizeof(r->err), "the range starts at offset %" PRId64 " but %s [%d] only keeps offsets %" PRId64
             "..%" PRId64 " (older ones were deleted); --from beginning starts at the oldest record kept", *from,
             r->cfg->topic_dlq, p, lo, hi);
    return 1;
}

/* Where partition p starts by the group's committed offset c (the oldest
 * record when none), with the offsets an earlier run delivered past it; 0,
 * or 1 with r->err set. */
static int group_start(replay_t *r, int p, const rd_kafka_topic_partition_t *c, int64_t lo, int64_t hi,
                       int64_t *from) {
    const char *dlq = r->cfg->topic_dlq;
    if (c->err) {
        snprintf(r->err, sizeof(r->err), "cannot read group %s's committed offset of %s [%d]: %s", r->o.group, dlq, p,
                 rd_kafka_err2str(c->err));
        return 1;
    }
    *from = c->offset >= 0 && c->offset >= lo && c->offset <= hi ? c->offset : lo;
    if (c->offset >= 0 && c->offset < lo)
        fprintf(stderr, "driftrec dlq replay: warning: %s [%d]: %" PRId64 " records after group %s's position "
                "%" PRId64 " were deleted (retention) before they were dealt with\n", dlq, p, lo - c->offset,
                r->o.group, c->offset);
    else if (c->offset > hi)
        fprintf(stderr, "driftrec dlq replay: warning: %s [%d]: group %s's position %" PRId64 " is past the log "
                "end %" PRId64 " (was the topic recreated?): reading from its oldest record\n", dlq, p, r->o.group,
                c->offset, hi);
    if (c->offset >= 0 && c->offset <= hi && parse_replayed(&r->parts[p], c->offset, c->metadata, c->metadata_size))
        return 1;
    return 0;
}

/* Where each partition starts (the group's committed offset, the oldest
 * record, or --from) and ends (its high watermark now, or --to); assigns
 * those with records to read. */
static int start_positions(replay_t *r) {
    const char *dlq = r->cfg->topic_dlq;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(r->n_parts);
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(r->n_parts);
    int rc = 0;
    for (int p = 0; p < r->n_parts; p++) rd_kafka_topic_partition_list_add(list, dlq, p);
    rd_kafka_resp_err_t e = r->o.ranged ? RD_KAFKA_RESP_ERR_NO_ERROR
                                        : rd_kafka_committed(r->consumer, list, r->o.timeout_ms);
    if (e) {
        snprintf(r->err, sizeof(r->err), "cannot read the committed offsets of group %s: %s", r->o.group,
                 rd_kafka_err2str(e));
        rc = 1;
    }
    for (int p = 0; !rc && p < r->n_parts; p++) {
        int64_t lo = 0, hi = 0, from = 0, end = 0;
        e = dr_ingest_watermarks(r->consumer, dlq, p, &lo, &hi, r->o.timeout_ms);
        if (e) {
            snprintf(r->err, sizeof(r->err), "cannot read the end of %s [%d]: %s", dlq, p, rd_kafka_err2str(e));
            rc = 1;
            break;
        }
        if (r->o.ranged) rc = range_bounds(r, p, lo, hi, &from, &end);
        else if (!(rc = group_start(r, p, &list->elems[p], lo, hi, &from))) end = hi;
        if (rc) break;
        r->parts[p].end = end;
        if (from < end) {
            rd_kafka_topic_partition_list_add(assign, dlq, p)->offset = from;
            r->parts[p].open = true;
            r->open++;
        }
    }
    if (!rc && r->open > 0 && (e = rd_kafka_assign(r->consumer, assign))) {
        snprintf(r->err, sizeof(r->err), "cannot assign %s: %s", dlq, rd_kafka_err2str(e));
        rc = 1;
    }
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_topic_partition_list_destroy(assign);
    return rc;
}

/* ---- one record -------------------------------------------------------------- */

/* The last value of header `name` as a string in buf (cut to fit); false
 * when there is none. */
static bool header(rd_kafka_headers_t *h, const char *name, char *buf, size_t n) {
    const void *v;
    size_t size;
    if (!h || rd_kafka_header_get_last(h, name, &v, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
    if (size >= n) size = n - 1;
    if (v) memcpy(buf, v, size);
    buf[v ? size : 0] = '\0';
    return true;
}

static bool picked(const replay_t *r, rd_kafka_headers_t *h, const char *cls) {
    char retry[16];
    if (r->o.pick == PICK_ALL) return true;
    if (r->o.pick == PICK_RETRYABLE) return header(h, "dr.retryable", retry, sizeof(retry)) && !strcmp(retry, "true");
    for (int i = 0; i < r->o.n_picked; i++)
        if (!strcmp(cls, r->o.picked[i])) return true;
    return false;
}

/* The counter of class `name`; past MAX_COUNTED - 1 classes, "other"'s. */
static counted_t *counter(replay_t *r, const char *name) {
    for (int i = 0; i < r->n_skipped_by; i++)
        if (!strcmp(r->skipped_by[i].name, name)) return &r->skipped_by[i];
    if (r->n_skipped_by >= MAX_COUNTED - 1 && strcmp(name, "other") != 0) return counter(r, "other");
    counted_t *c = &r->skipped_by[r->n_skipped_by++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    return c;
}

static void count_skipped(replay_t *r, const char *cls) {
    counter(r, cls[0] ? cls : "none")->n++;
    r->skipped++;
}

/* A header's text as printed on one line: anything but [A-Za-z0-9._:-] as '?'. */
static void printable(char *s) {
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("._:-", *s)))
            *s = '?';
}

static bool already_replayed(const part_t *pt, int64_t offset) {
    for (size_t i = 0; i < pt->n_replayed; i++)
        if (pt->replayed[i] == offset) return true;
    return false;
}

/* The dead letter's dr.retries: its decimal value, or 0 when it has none or
 * it is not a clean decimal (digits only); a huge one saturates, still
 * past any --max-retries. */
static long long retries_of(rd_kafka_headers_t *h) {
    char text[32];
    long long n = 0;
    if (!header(h, "dr.retries", text, sizeof(text)) || !text[0]) return 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9') return 0;
        if (n <= MAX_RETRIES_LIMIT) n = n * 10 + (*c - '0');
    }
    return n;
}

/* dr.reason as printed in a --dry-run sample: control characters and '"' as '?'. */
static void sample_reason(rd_kafka_headers_t *h, char *reason, size_t n) {
    reason[0] = '\0';
    header(h, "dr.reason", reason, n);
    for (char *c = reason; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '"') *c = '?';
}

/* 0 when topic exists (asked once per topic); 1 with the reason in r->err. */
static int check_target(replay_t *r, const char *topic, const rd_kafka_message_t *m) {
    for (int i = 0; i < r->n_targets; i++)
        if (!strcmp(r->targets[i], topic)) return 0;
    int count = -1;
    /* the producer's connection, when there is one: the consumer's waits behind its fetches */
    if (topic_partitions(r->producer ? r->producer : r->consumer, topic, r->o.timeout_ms, &count)) {
        snprintf(r->err, sizeof(r->err), "cannot read the metadata of the target topic %s within %d ms", topic,
                 r->o.timeout_ms);
        return 1;
    }
    if (count < 1) {
        snprintf(r->err, sizeof(r->err), "the target topic %s (of the record at %s [%" PRId32 "] offset %" PRId64
                 ") does not exist", topic, r->cfg->topic_dlq, m->partition, m->offset);
        return 1;
    }
    if (r->n_targets < MAX_TARGETS) snprintf(r->targets[r->n_targets++], DR_NAME_MAX, "%s", topic);
    return 0;
}

/* Produces m's key, value and non-dr. headers to topic, plus
 * dr.replayed.from and dr.retries = retries; e gets the delivery report. */
static rd_kafka_resp_err_t produce(replay_t *r, const rd_kafka_message_t *m, const char *topic, long long retries,
                                   entry_t *e) {
    rd_kafka_headers_t *in = NULL, *out = rd_kafka_headers_new(8);
    const char *name;
    const void *val;
    size_t size;
    char from[DR_NAME_MAX + 48], count[24];
    if (rd_kafka_message_headers(m, &in) != RD_KAFKA_RESP_ERR_NO_ERROR) in = NULL;
    for (size_t i = 0; in && rd_kafka_header_get_all(in, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
        if (strncmp(name, "dr.", 3) != 0) rd_kafka_header_add(out, name, -1, val, val ? (ssize_t)size : 0);
    snprintf(from, sizeof(from), "%s:%" PRId32 ":%" PRId64, r->cfg->topic_dlq, m->partition, m->offset);
    rd_kafka_header_add(out, "dr.replayed.from", -1, from, -1);
    snprintf(count, sizeof(count), "%lld", retries);
    rd_kafka_header_add(out, "dr.retries", -1, count, -1);
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(m->key, m->key_len),
                                RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(out), RD_KAFKA_V_OPAQUE(e), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        rd_kafka_poll(r->producer, 100); /* deliveries (or their timeouts) make room */
    }
    if (err) rd_kafka_headers_destroy(out);
    return err;
}

/* Counts m as past --max-retries (a --dry-run prints it among the first). */
static void count_exhausted(replay_t *r, const rd_kafka_message_t *m, const char *cls, long long retries,
                            rd_kafka_headers_t *h) {
    char reason[160];
    r->exhausted++;
    if (!r->o.dry_run || r->exhausted_samples++ >= MAX_SAMPLES) return;
    sample_reason(h, reason, sizeof(reason));
    printf("exhausted: partition=%" PRId32 " offset=%" PRId64 " class=%s dr.retries=%lld (--max-retries %lld) "
           "reason=\"%s\"\n", m->partition, m->offset, cls[0] ? cls : "none", retries, r->o.max_retries, reason);
}

/* Replays m, its retry count now `retries` (or only counts it, with
 * --dry-run); 0, or 1 when the run must stop before m (r->err says why). */
static int replay_one(replay_t *r, const rd_kafka_message_t *m, const char *topic, const char *cls,
                      long long retries, rd_kafka_headers_t *h, entry_t *e) {
    if (check_target(r, topic, m)) return 1;
    if (r->o.dry_run) {
        char reason[160];
        sample_reason(h, reason, sizeof(reason));
        if (r->samples++ < MAX_SAMPLES)
            printf("would replay: partition=%" PRId32 " offset=%" PRId64 " class=%s to=%s dr.retries=%lld "
                   "reason=\"%s\"\n", m->partition, m->offset, cls[0] ? cls : "none", topic, retries, reason);
    } else {
        rd_kafka_resp_err_t err = produce(r, m, topic, retries, e);
        e->state = err ? E_FAILED : E_PENDING;
        e->err = err;
        e->status = RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
        if (err) {
            r->stop = true; /* e stops the commit; nothing after it is produced */
            return 0;
        }
        r->pending++;
    }
    if (r->o.dry_run) r->replayed++;
    if (r->o.limit >= 0 && (long long)++r->chosen >= r->o.limit) r->stop = true;
    return 0;
}

static void close_partition(replay_t *r, int32_t p) {
    if (!r->parts[p].open) return;
    r->parts[p].open = false;
    r->open--;
}

/* Deals with one record of the DLQ; 0, or 1 when the run must stop before
 * it (r->err says why). */
static int handle(replay_t *r, const rd_kafka_message_t *m) {
    part_t *pt = &r->parts[m->partition];
    if (m->offset >= pt->end) { /* past --to, or dead-lettered after the start: the next run's */
        close_partition(r, m->partition);
        return 0;
    }
    rd_kafka_headers_t *h = NULL;
    char cls[32] = "", source[DR_NAME_MAX] = "", cut[24];
    long long retries;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) h = NULL;
    header(h, "dr.reason.class", cls, sizeof(cls));
    printable(cls);
    entry_t *e = &r->batch[r->n];
    *e = (entry_t){.partition = m->partition, .offset = m->offset, .state = E_DONE};
    if (already_replayed(pt, m->offset)) {
        r->already++;
    } else if (!picked(r, h, cls)) {
        count_skipped(r, cls);
    } else if (header(h, "dr.value.truncated", cut, sizeof(cut))) {
        r->truncated++;
    } else if (!r->o.target && (!header(h, "dr.source.topic", source, sizeof(source)) || !source[0])) {
        r->no_source++;
    } else if ((retries = retries_of(h)) >= r->o.max_retries) {
        count_exhausted(r, m, cls, retries, h);
    } else if (replay_one(r, m, r->o.target ? r->o.target : source, cls, retries + 1, h, e)) {
        return 1;
    }
    r->read++;
    r->n++;
    pt->touched = true;
    if (m->offset + 1 >= pt->end) close_partition(r, m->partition);
    return 0;
}

/* ---- commits ----------------------------------------------------------------- */

/* The commit metadata of a partition: the offsets past `next` delivered,
 * by this batch or an earlier run, as deltas (ranges a-b). False (and ""
 * in buf) when they do not fit in n bytes: better replayed twice than a
 * cut list that skips a record never replayed. */
static bool replayed_meta(const replay_t *r, int32_t p, int64_t next, char *buf, size_t n) {
    int64_t d[BATCH * 2];
    size_t nd = 0, len;
    const part_t *pt = &r->parts[p];
    for (size_t i = 0; i < pt->n_replayed && nd < BATCH; i++)
        if (pt->replayed[i] > next) d[nd++] = pt->replayed[i] - next;
    for (int i = 0; i < r->n; i++)
        if (r->batch[i].partition == p && r->batch[i].state == E_DELIVERED && r->batch[i].offset > next)
            d[nd++] = r->batch[i].offset - next;
    buf[0] = '\0';
    if (nd == 0) return true;
    for (size_t i = 1; i < nd; i++) /* insertion sort: few, mostly in order */
        for (size_t j = i; j > 0 && d[j - 1] > d[j]; j--) {
            int64_t t = d[j];
            d[j] = d[j - 1];
            d[j - 1] = t;
        }
    len = (size_t)snprintf(buf, n, "%s", META_PREFIX);
    for (size_t i = 0; i < nd && len < n; i++) {
        size_t j = i;
        while (j + 1 < nd && d[j + 1] <= d[j] + 1) j++;
        len += (size_t)snprintf(buf + len, n - len, j > i ? "%s%" PRId64 "-%" PRId64 : "%s%" PRId64,
                                len > strlen(META_PREFIX) ? "," : "", d[i], d[j]);
        i = j;
    }
    if (len < n) return true;
    buf[0] = '\0';
    return false;
}

/* The offset a partition's commit may name: its first record of the batch
 * not delivered, or the one after its last record. */
static int64_t commit_point(const replay_t *r, int32_t p, const entry_t **failed) {
    int64_t next = -1;
    for (int i = 0; i < r->n; i++) {
        const entry_t *e = &r->batch[i];
        if (e->partition != p) continue;
        if (e->state == E_FAILED || e->state == E_PENDING) {
            if (!*failed) *failed = e;
            return e->offset;
        }
        next = e->offset + 1;
    }
    return next;
}

/* Waits for the batch's delivery reports, then commits each partition up to
 * its commit point (with --from/--to: nothing). 0, or 1 with r->err set (a
 * delivery or the commit failed). */
static int settle(replay_t *r) {
    while (r->pending > 0) rd_kafka_poll(r->producer, 100); /* bounded by message.timeout.ms */
    const entry_t *failed = NULL;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(r->n_parts);
    char meta[3072]; /* below the brokers' offset.metadata.max.bytes (4096) */
    for (int32_t p = 0; p < r->n_parts; p++) {
        if (!r->parts[p].touched) continue;
        r->parts[p].touched = false;
        int64_t next = commit_point(r, p, &failed);
        if (next < 0 || r->o.ranged) continue;
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(list, r->cfg->topic_dlq, p);
        tp->offset = next;
        if (!replayed_meta(r, p, next, meta, sizeof(meta)))
            fprintf(stderr, "driftrec dlq replay: warning: %s [%" PRId32 "]: too many records delivered past offset "
                    "%" PRId64 " to remember: the next run replays them again\n", r->cfg->topic_dlq, p, next);
        if (meta[0]) {
            tp->metadata = strdup(meta);
            tp->metadata_size = tp->metadata ? strlen(meta) : 0;
        }
    }
    rd_kafka_resp_err_t e = list->cnt > 0 ? rd_kafka_commit(r->consumer, list, 0) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(list);
    int rc = 0;
    if (failed) {
        snprintf(r->err, sizeof(r->err), "the record at %s [%" PRId32 "] offset %" PRId64 " could not be replayed: "
                 "%s%s; %s", r->cfg->topic_dlq, failed->partition, failed->offset, rd_kafka_err2str(failed->err),
                 failed->status == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED
                     ? " (it may have reached the target all the same: look for its dr.replayed.from)" : "",
                 r->o.ranged ? "an explicit range commits nothing: the range's records from that offset on may not "
                               "have been replayed (those after it that were are named by their dr.replayed.from)"
                             : "the group's offset stops there, the next run starts with it");
        r->stop = true;
        rc = 1;
    }
    if (e) {
        size_t len = strlen(r->err);
        snprintf(r->err + len, sizeof(r->err) - len, "%scould not commit group %s's offsets: %s (the records "
                 "replayed since its last commit will be replayed again by the next run)",
                 len ? "; and " : "", r->o.group, rd_kafka_err2str(e));
        r->stop = true;
        rc = 1;
    }
    r->n = 0;
    return rc;
}

/* ---- the run ----------------------------------------------------------------- */

/* Reads up to BATCH records (or to the ends), replaying the chosen ones;
 * 0, or 1 with r->err set. */
static int read_batch(replay_t *r) {
    int64_t idle_since = dr_mono_ms();
    while (!r->stop && r->open > 0 && r->n < BATCH) {
        if (r->producer) rd_kafka_poll(r->producer, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->consumer, 100);
        if (!m) {
            if (dr_mono_ms() - idle_since > r->o.timeout_ms) {
                snprintf(r->err, sizeof(r->err), "nothing came from %s for %d ms, %d partitions unfinished",
                         r->cfg->topic_dlq, r->o.timeout_ms, r->open);
                return 1;
            }
            continue;
        }
        idle_since = dr_mono_ms();
        int rc = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            close_partition(r, m->partition);
        } else if (m->err) {
            snprintf(r->err, sizeof(r->err), "reading %s: %s", r->cfg->topic_dlq, rd_kafka_message_errstr(m));
            rc = 1;
        } else if (m->partition >= 0 && m->partition < r->n_parts) {
            rc = handle(r, m);
        }
        rd_kafka_message_destroy(m);
        if (rc) return rc;
    }
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const counted_t *)a)->name, ((const counted_t *)b)->name);
}

/* The run's one line (classes by name, so that it reads the same each time). */
static void print_summary(replay_t *r) {
    qsort(r->skipped_by, (size_t)r->n_skipped_by, sizeof(r->skipped_by[0]), by_name);
    printf("dlq replay%s: dlq=%s ", r->o.dry_run ? " (dry run: nothing produced or committed)" : "",
           r->cfg->topic_dlq);
    if (r->o.ranged)
        printf("range=[%s..%s)", r->o.from ? r->o.from : "beginning", r->o.to ? r->o.to : "end");
    else
        printf("group=%s", r->o.group);
    printf(" read=%" PRIu64 " %s=%" PRIu64 " skipped_by_class=%" PRIu64, r->read,
           r->o.dry_run ? "would_replay" : "replayed", r->replayed, r->skipped);
    for (int i = 0; i < r->n_skipped_by; i++)
        printf("%s%s:%" PRIu64 "%s", i ? " " : " (", r->skipped_by[i].name, r->skipped_by[i].n,
               i + 1 == r->n_skipped_by ? ")" : "");
    printf(" truncated=%" PRIu64 " no_source_topic=%" PRIu64 " exhausted=%" PRIu64 " already_replayed=%" PRIu64 "\n",
           r->truncated, r->no_source, r->exhausted, r->already);
    if (r->o.dry_run && r->samples > MAX_SAMPLES) printf("(%d more would be replayed)\n", r->samples - MAX_SAMPLES);
    if (r->o.dry_run && r->exhausted_samples > MAX_SAMPLES)
        printf("(%d more exhausted)\n", r->exhausted_samples - MAX_SAMPLES);
    fflush(stdout);
}

static int run(replay_t *r) {
    if (make_clients(r)) return 1;
    if (topic_partitions(r->consumer, r->cfg->topic_dlq, r->o.timeout_ms, &r->n_parts)) {
        snprintf(r->err, sizeof(r->err), "no metadata for the DLQ topic %s from %s within %d ms (is the cluster "
                 "reachable?)", r->cfg->topic_dlq, dr_config_kafka(r->cfg, "bootstrap.servers"), r->o.timeout_ms);
        return 1;
    }
    if (r->n_parts < 1) {
        snprintf(r->err, sizeof(r->err), "the DLQ topic %s does not exist", r->cfg->topic_dlq);
        return 1;
    }
    r->parts = calloc((size_t)r->n_parts, sizeof(*r->parts));
    if (!r->parts) return 1;
    if (start_positions(r)) return 1;
    int rc = 0;
    while (!rc && r->open > 0 && !r->stop) {
        rc = read_batch(r);
        if (r->o.dry_run) r->n = 0;
        else if (settle(r)) rc = 1; /* commits what the batch delivered, even after a failure */
    }
    return rc;
}

int dr_cmd_dlq(int argc, char **argv) {
    replay_t *r = calloc(1, sizeof(*r));
    dr_config_t *cfg = malloc(sizeof(*cfg));
    if (!r || !cfg) {
        free(r);
        free(cfg);
        fprintf(stderr, "driftrec dlq: out of memory\n");
        return 1;
    }
    int rc = parse_args(&r->o, cfg, argc, argv);
    if (rc) {
        usage(rc == 1 ? stdout : stderr, rc == 1);
        free(cfg);
        free(r);
        return rc == 1 ? 0 : 2;
    }
    r->cfg = cfg;
    rc = run(r);
    if (r->parts) print_summary(r);
    if (rc) fprintf(stderr, "driftrec dlq replay: %s\n", r->err[0] ? r->err : "out of memory");
    if (r->consumer) {
        rd_kafka_consumer_close(r->consumer);
        rd_kafka_destroy(r->consumer);
    }
    if (r->producer) rd_kafka_destroy(r->producer);
    for (int p = 0; r->parts && p < r->n_parts; p++) free(r->parts[p].replayed);
    free(r->parts);
    free(cfg);
    free(r);
    return rc;
}
