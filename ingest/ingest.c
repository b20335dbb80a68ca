/* ingest.c - consumer-group input on the libuv loop: the consumer queue
 * signals a pipe when it turns non-empty, uv_poll wakes us, and we drain it
 * in batches; records that fail decoding or are rejected go to the DLQ.
 * Rebalances follow the group's protocol (eager or cooperative), or
 * partitions are assigned statically (ingest.partitions) without a group
 * join; a position out of the log's range is settled by
 * ingest.offset.reset, never skipped silently. Also the librdkafka
 * configuration every client of ours starts from (dr_ingest_kafka_conf). */
#include "dr_ingest.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dr_err.h"
#include "dr_log.h"

/* Batches handled per loop iteration before yielding to timers (emit,
 * commit), so lists keep flowing while a backlog is drained. */
#define WAKE_BUDGET_BATCHES 2

/* How long an out-of-range position may block the loop to learn the log's
 * range from the partition leader; a reset is rare, and its numbers are what
 * the operator needs to judge what was skipped. */
#define WATERMARK_TIMEOUT_MS 2000
/* ingest.partitions: how long the start waits for the topic's partition count */
#define STATIC_METADATA_MS 10000

/* ingest.offset.reset, parsed. */
typedef enum { RESET_EARLIEST, RESET_LATEST, RESET_FAIL } reset_policy_t;
static const char *const policy_names[] = {"earliest", "latest", "fail"};

static const char *const dlq_names[DR_DLQ__COUNT] = {"decode", "schema", "invalid", "empty",
                                                  "rejected", "registry"};

struct dr_ingest {
    uv_loop_t *loop;
    dr_ingest_conf_t conf;
    dr_ingest_handler_t handler;
    char *topic, *dlq_topic;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    rd_kafka_t *producer;
    dr_flight_t *flight;
    int pipe_fd[2];
    uv_poll_t poll;
    uv_idle_t idle;           /* continues a drain that hit WAKE_BUDGET */
    uv_timer_t keepalive;     /* while paused: reads the queue now and then (keepalive_read) */
    uint64_t keepalive_ms;
    bool started, stopped, subscribed, closed_handles;
    bool assigned_statically; /* conf.partitions: assigned at start, revoked at close by us */
    int open_handles;
    rd_kafka_message_t **batch;
    dr_partition_stats_t parts[DR_INGEST_MAX_PARTITIONS];
    int n_parts;              /* highest partition seen + 1 */
    dr_ingest_stats_t stats;
    dr_log_limit_t dlq_log;
    reset_policy_t reset_policy;
    /* Where each partition was last told to start (its on_assign offset, or
     * a reset target): an eager re-assignment restarts a partition that has
     * not delivered a record yet from there again. */
    int64_t start_offset[DR_INGEST_MAX_PARTITIONS];
    /* Repositions decided during a batch, applied after it (see
     * apply_resets); reset_to is an absolute or logical offset. */
    bool reset_pending[DR_INGEST_MAX_PARTITIONS];
    int64_t reset_to[DR_INGEST_MAX_PARTITIONS];
    int n_resets_pending;
};

const char *dr_ingest_dlq_reason_name(int cls) {
    return cls >= 0 && cls < DR_DLQ__COUNT ? dlq_names[cls] : "other";
}

int dr_ingest_dlq_class(int err) {
    switch (err) {
    case DR_EDECODE: return DR_DLQ_DECODE;
    case DR_ESCHEMA: return DR_DLQ_SCHEMA;
    case DR_EAGAIN: return DR_DLQ_REGISTRY;
    case DR_ERANGE: case DR_EINVAL: return DR_DLQ_INVALID;
    default: return DR_DLQ_REJECTED;
    }
}

/* ---- halting ---------------------------------------------------------------- */

/* Stops consumption for good (like a record that can be neither handled nor
 * dead-lettered): the pipeline sees stats.halted after the batch and fails,
 * rather than carrying on with a wrong assignment or a skipped range. */
static void halt(dr_ingest_t *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void halt(dr_ingest_t *in, const char *fmt, ...) {
    if (!in->stats.halted) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(in->stats.halt_reason, sizeof(in->stats.halt_reason), fmt, ap);
        va_end(ap);
    }
    in->stopped = true;
    in->stats.halted = true;
}

/* ---- rebalancing ---------------------------------------------------------- */

/* partition.assignment.strategy decides: cooperative-sticky hands out and
 * takes back partitions a few at a time (incremental_assign/unassign), the
 * eager assignors (range, roundrobin) swap the whole set (assign). Mixing
 * them is refused by librdkafka with an error, so ask every time. */
static bool cooperative(rd_kafka_t *rk) {
    const char *proto = rd_kafka_rebalance_protocol(rk);
    return proto && !strcmp(proto, "COOPERATIVE");
}

/* Checks an incremental (un)assign: a failure leaves us consuming a set of
 * partitions the group did not give us, or missing some it did. */
static bool check_error(dr_ingest_t *in, rd_kafka_error_t *e, const char *what) {
    if (!e) return true;
    dr_log(DR_LOG_ERROR, "ingest", "%s failed: consumption stops | err=%s reason=\"%s\"", what,
           rd_kafka_err2name(rd_kafka_error_code(e)), rd_kafka_error_string(e));
    halt(in, "%s failed: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return false;
}

static bool check_err(dr_ingest_t *in, rd_kafka_resp_err_t err, const char *what) {
    if (!err) return true;
    dr_log(DR_LOG_ERROR, "ingest", "%s failed: consumption stops | err=%s reason=\"%s\"", what,
           rd_kafka_err2name(err), rd_kafka_err2str(err));
    halt(in, "%s failed: %s", what, rd_kafka_err2str(err));
    return false;
}

static void cancel_reset(dr_ingest_t *in, int32_t p) {
    if (!in->reset_pending[p]) return;
    in->reset_pending[p] = false;
    in->n_resets_pending--;
}

static void forget(dr_ingest_t *in, int32_t p) {
    if (p < 0 || p >= DR_INGEST_MAX_PARTITIONS) return;
    in->parts[p].assigned = false;
    cancel_reset(in, p);
}

static void on_assigned(dr_ingest_t *in, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                        bool coop, const char *how) {
    for (int i = 0; i < parts->cnt; i++) parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    if (in->handler.on_assign) in->handler.on_assign(in->handler.ctx, parts);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (p < 0 || p >= DR_INGEST_MAX_PARTITIONS) continue;
        forget(in, p);
        in->parts[p].assigned = true;
        in->parts[p].next_offset = parts->elems[i].offset >= 0 ? parts->elems[i].offset : -1;
        in->start_offset[p] = parts->elems[i].offset;
        if (p >= in->n_parts) in->n_parts = p + 1;
    }
    dr_log(DR_LOG_INFO, "ingest", "partitions assigned | count=%d protocol=%s", parts->cnt, how);
    bool ok = coop ? check_error(in, rd_kafka_incremental_assign(rk, parts), "incremental assign")
                   : check_err(in, rd_kafka_assign(rk, parts), "assign");
    /* Under backpressure a partition joins paused; with cooperative
     * rebalancing `parts` holds only the newcomers, the rest stay as they are. */
    if (ok && in->stats.paused) rd_kafka_pause_partitions(rk, parts);
}

static void on_revoked(dr_ingest_t *in, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                       bool coop) {
    bool lost = !in->assigned_statically && rd_kafka_assignment_lost(rk);
    if (lost)
        dr_log(DR_LOG_WARN, "ingest", "partitions lost: the group moved on without us (session "
               "timeout or fencing); another member may already be consuming them | count=%d",
               parts->cnt);
    /* Lost or not, the state of what we consumed is ours to keep locally;
     * a lost partition's shared copy (the changelog) is the new owner's. */
    if (in->handler.on_revoke) in->handler.on_revoke(in->handler.ctx, parts, lost);
    if (coop) {
        for (int i = 0; i < parts->cnt; i++) forget(in, parts->elems[i].partition);
    } else {
        for (int p = 0; p < in->n_parts; p++) forget(in, p); /* assign(NULL) drops them all */
    }
    dr_log(DR_LOG_INFO, "ingest", "partitions revoked | count=%d protocol=%s", parts->cnt,
           in->assigned_statically ? "static" : coop ? "cooperative" : "eager");
    /* librdkafka keeps a partition's pause across unassign and assign, and
     * the resume at the pause's end reaches only what is assigned then: a
     * partition must leave unpaused, or it would come back never fetched. */
    if (in->stats.paused) rd_kafka_resume_partitions(rk, parts);
    if (coop) check_error(in, rd_kafka_incremental_unassign(rk, parts), "incremental unassign");
    else check_err(in, rd_kafka_assign(rk, NULL), "unassign");
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    dr_ingest_t *in = opaque;
    in->stats.rebalances++;
    bool coop = cooperative(rk);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assigned(in, rk, parts, coop, coop ? "cooperative" : "eager");
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoked(in, rk, parts, coop);
    } else {
        /* A failed rebalance: librdkafka asks us to drop the assignment and
         * wait for the next one; store what we have first. */
        dr_log(DR_LOG_ERROR, "ingest", "rebalance failed; dropping the assignment | err=%s",
               rd_kafka_err2name(err));
        rd_kafka_topic_partition_list_t *cur = NULL;
        if (rd_kafka_assignment(rk, &cur) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            on_revoked(in, rk, cur, coop);
            rd_kafka_topic_partition_list_destroy(cur);
        } else {
            check_err(in, rd_kafka_assign(rk, NULL), "unassign");
        }
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)opaque;
    static dr_log_limit_t lim = DR_LOG_LIMIT_INIT(10000, 5);
    uint64_t dropped = 0;
    if (dr_log_allow(&lim, &dropped))
        dr_log(DR_LOG_WARN, "ingest", "kafka: %s | err=%s suppressed=%" PRIu64, reason,
               rd_kafka_err2name((rd_kafka_resp_err_t)err), dropped);
}

void dr_ingest_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (strstr(buf, "is a consumer property") || strstr(buf, "is a producer property")) return;
    dr_log_level_t l = level <= 3 ? DR_LOG_ERROR : level <= 4 ? DR_LOG_WARN
                     : level <= 6 ? DR_LOG_INFO : DR_LOG_DEBUG;
    dr_log(l, "kafka", "%s | facility=%s", buf, fac);
}

/* ---- creation ------------------------------------------------------------- */

rd_kafka_conf_t *dr_ingest_kafka_conf(const char *const (*defaults)[2], size_t n_defaults,
                                      const char *const *keys, const char *const *values, int n,
                                      char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char e[512];
    /* Every producer of ours partitions keyed records as Java's default
     * partitioner does (murmur2 of the key bytes, positive, mod the
     * partition count), so that a user's events from a Java producer, our
     * erase requests and our lists agree on the user's partition; without
     * it librdkafka hashes with CRC32 (consistent_random). First, so that
     * `defaults` and kafka.partitioner still win. Consumers ignore it (their
     * "is a producer property" warning is dropped by dr_ingest_kafka_log). */
    if (rd_kafka_conf_set(kc, "partitioner", "murmur2_random", e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "partitioner: %s", e);
        goto out_refused;
    }
    for (size_t i = 0; i < n_defaults; i++)
        if (rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], e, sizeof(e)) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "%s: %s", defaults[i][0], e);
            goto out_refused;
        }
    for (int i = 0; i < n; i++)
        if (rd_kafka_conf_set(kc, keys[i], values[i], e, sizeof(e)) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "kafka.%s: %s", keys[i], e);
            goto out_refused;
        }
    rd_kafka_conf_set_log_cb(kc, dr_ingest_kafka_log);
    return kc;
out_refused:
    rd_kafka_conf_destroy(kc);
    return NULL;
}

static int make_consumer(dr_ingest_t *in, char *errstr, size_t n) {
    char e[512];
    static const char *const defaults[][2] = {{"fetch.wait.max.ms", DR_INGEST_FETCH_WAIT_MS}};
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(defaults, 1, in->conf.kafka_keys, in->conf.kafka_values,
                                               in->conf.n_kafka, errstr, n);
    if (!kc) return DR_ECONFIG;
    for (int i = 0; i < in->conf.n_kafka; i++)
        if (!strcmp(in->conf.kafka_keys[i], "auto.offset.reset")) {
            dr_log(DR_LOG_WARN, "ingest", "kafka.auto.offset.reset is ignored for the events topic: "
                   "ingest.offset.reset decides where a partition starts | policy=%s",
                   policy_names[in->reset_policy]);
            break;
        }
    /* Our own positions live in RocksDB; Kafka commits are for lag only.
     * auto.offset.reset=error, after the pass-through properties so that it
     * wins: librdkafka then reports a position out of the log's range (or no
     * position at all) to us instead of jumping silently, and
     * handle_offset_reset applies ingest.offset.reset with a count of what
     * was skipped. */
    if (rd_kafka_conf_set(kc, "group.id", in->conf.group_id, e, sizeof(e)) ||
        rd_kafka_conf_set(kc, "enable.auto.commit", "false", e, sizeof(e)) ||
        rd_kafka_conf_set(kc, "enable.auto.offset.store", "false", e, sizeof(e)) ||
        rd_kafka_conf_set(kc, "auto.offset.reset", "error", e, sizeof(e))) {
        snprintf(errstr, n, "consumer config: %s", e);
        rd_kafka_conf_destroy(kc);
        return DR_ECONFIG;
    }
    rd_kafka_conf_set_rebalance_cb(kc, on_rebalance);
    rd_kafka_conf_set_error_cb(kc, on_error);
    rd_kafka_conf_set_opaque(kc, in);
    in->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof(e));
    if (!in->rk) {
        snprintf(errstr, n, "creating the consumer: %s", e);
        rd_kafka_conf_destroy(kc);
        return DR_EKAFKA;
    }
    rd_kafka_poll_set_consumer(in->rk);
    in->queue = rd_kafka_queue_get_consumer(in->rk);
    return 0;
}

int dr_ingest_new(dr_ingest_t **out, uv_loop_t *loop, const dr_ingest_conf_t *conf,
                  const dr_ingest_handler_t *handler, rd_kafka_t *producer, dr_flight_t *flight,
                  char *errstr, size_t n) {
    *out = NULL;
    dr_ingest_t *in = calloc(1, sizeof(*in));
    if (!in) return DR_ENOMEM;
    in->loop = loop;
    in->conf = *conf;
    in->handler = *handler;
    in->producer = producer;
    in->flight = flight;
    in->pipe_fd[0] = in->pipe_fd[1] = -1;
    in->dlq_log = (dr_log_limit_t)DR_LOG_LIMIT_INIT(10000, 10);
    const char *policy = conf->offset_reset ? conf->offset_reset : "earliest";
    if (!strcmp(policy, "earliest")) {
        in->reset_policy = RESET_EARLIEST;
    } else if (!strcmp(policy, "latest")) {
        in->reset_policy = RESET_LATEST;
    } else if (!strcmp(policy, "fail")) {
        in->reset_policy = RESET_FAIL;
    } else {
        snprintf(errstr, n, "ingest.offset.reset: \"%s\" is not one of earliest, latest, fail", policy);
        free(in);
        return DR_ECONFIG;
    }
    in->topic = strdup(conf->topic);
    in->dlq_topic = strdup(conf->dlq_topic);
    in->batch = calloc((size_t)conf->batch, sizeof(*in->batch));
    for (int p = 0; p < DR_INGEST_MAX_PARTITIONS; p++) {
        in->parts[p].next_offset = -1;
        in->parts[p].high_watermark = -1;
        in->start_offset[p] = RD_KAFKA_OFFSET_INVALID;
    }
    int err = DR_ENOMEM;
    if (!in->topic || !in->dlq_topic || !in->batch) goto out_fail;
    if ((err = make_consumer(in, errstr, n))) goto out_fail;
    *out = in;
    return 0;
out_fail:
    if (err == DR_ENOMEM) snprintf(errstr, n, "out of memory creating the consumer");
    dr_ingest_free(in);
    return err;
}

/* ---- consuming ------------------------------------------------------------ */

static void add_header(rd_kafka_headers_t *h, const char *name, const char *value) {
    rd_kafka_header_add(h, name, -1, value, -1);
}

int dr_ingest_dead_letter(dr_ingest_t *in, const rd_kafka_message_t *msg, int cls,
                          const char *reason) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    /* the record's own headers go along: a dead letter replayed and dead-
     * lettered again keeps dr.replayed.from and dr.retries (the replay stops
     * at its retry limit); our other dr.* annotations of an earlier trip are
     * replaced by this one's */
    rd_kafka_headers_t *orig = NULL;
    if (rd_kafka_message_headers(msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *value;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(orig, i, &name, &value, &size); i++)
            if (strncmp(name, "dr.", 3) != 0 || strcmp(name, "dr.replayed.from") == 0 ||
                strcmp(name, "dr.retries") == 0) /* `dlq replay`'s count: no endless loop */
                rd_kafka_header_add(h, name, -1, value, value ? (ssize_t)size : -1);
    }
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    add_header(h, "dr.reason", reason);
    add_header(h, "dr.reason.class", dr_ingest_dlq_reason_name(cls));
    add_header(h, "dr.source.topic", rd_kafka_topic_name(msg->rkt));
    add_header(h, "dr.source.partition", part);
    add_header(h, "dr.source.offset", off);
    if (cls == DR_DLQ_REGISTRY) add_header(h, "dr.retryable", "true");
    uint64_t tag = in->flight->epoch;
    rd_kafka_resp_err_t err;
    int tries = 0;
    size_t len = msg->len;
    /* A DLQ record must not be lost: wait out a full queue (bounded). */
    for (;;) {
        err = rd_kafka_producev(in->producer, RD_KAFKA_V_TOPIC(in->dlq_topic),
                                RD_KAFKA_V_KEY(msg->key, msg->key_len),
                                RD_KAFKA_V_VALUE(msg->payload, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                RD_KAFKA_V_OPAQUE(dr_msg_opaque(tag, DR_MSG_DLQ)), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && tries++ < 1000) {
            rd_kafka_poll(in->producer, 10);
        } else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && len > DR_DLQ_TRUNCATED_VALUE) {
            char orig[24];
            snprintf(orig, sizeof(orig), "%zu", msg->len);
            add_header(h, "dr.value.truncated", orig);
            len = DR_DLQ_TRUNCATED_VALUE; /* the headers stay ours until a produce succeeds */
        } else {
            break;
        }
    }
    if (err) {
        rd_kafka_headers_destroy(h);
        dr_log(DR_LOG_ERROR, "ingest", "dead-letter produce failed | topic=%s err=\"%s\"",
               in->dlq_topic, rd_kafka_err2str(err));
        return DR_EKAFKA;
    }
    dr_flight_sent(in->flight);
    in->stats.dead_lettered++;
    in->stats.dlq_by_reason[cls < DR_DLQ__COUNT ? cls : DR_DLQ_REJECTED]++;
    uint64_t dropped = 0;
    if (dr_log_allow(&in->dlq_log, &dropped))
        dr_log(DR_LOG_WARN, "ingest", "record dead-lettered | reason=\"%s\" partition=%" PRId32
               " offset=%" PRId64 " suppressed=%" PRIu64, reason, msg->partition, msg->offset,
               dropped);
    return 0;
}

bool dr_ingest_user_key(const rd_kafka_message_t *m, int64_t *id) {
    /* The canonical spelling only (no sign, space or leading zero): the
     * partitioner hashes the key's bytes, so "007" or "+7" would send a
     * user's erase request to another partition than the user's events. */
    const char *k = m->key;
    size_t n = m->key_len;
    /* Java's LongSerializer: 8 bytes, big-endian. An id below 2^53 starts
     * with a zero byte, which no decimal key does: the two never clash. */
    if (k && n == 8 && k[0] == 0) {
        uint64_t v = 0;
        for (size_t i = 0; i < 8; i++) v = v << 8 | (uint8_t)k[i];
        if (v >= (uint64_t)DR_MAX_ID) return false;
        *id = (int64_t)v;
        return true;
    }
    if (!k || n == 0 || n > 16 || (n > 1 && k[0] == '0')) return false; /* 2^53 has 16 digits */
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9') return false;
        v = v * 10 + (k[i] - '0');
    }
    if (v >= DR_MAX_ID) return false;
    *id = v;
    return true;
}

/* ---- positions out of the log's range ---------------------------------------- */

/* librdkafka (auto.offset.reset=error) stopped fetching partition
 * m->partition and tells us why in an RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET
 * message: m->offset is the position it could not fetch (ours from
 * on_assign, the group's committed one, or where the partition had got to),
 * or RD_KAFKA_OFFSET_INVALID when there was no position at all. In 2.0.2 the
 * partition then stays stopped: a seek is refused (_STATE), so it is
 * restarted by re-assigning it (apply_resets). Decides where, per
 * ingest.offset.reset; DR_ESTOPPED under "fail".
 *
 * Such a report can be stale: each eager re-assignment of a partition with
 * no position makes librdkafka report it again, and a report made before
 * a re-assignment may be read after it. One without a position for a
 * partition we have since assigned an explicit offset is ignored; one
 * followed by a record of its partition is cancelled (handle_message).
 * Acting on it re-assigned the partition at the offset decided here, and
 * the records read after the report were read and applied again (47 of
 * them in a run of test_leader_change_and_latency). */
static int handle_offset_reset(dr_ingest_t *in, const rd_kafka_message_t *m) {
    int32_t p = m->partition;
    if (p < 0 || p >= DR_INGEST_MAX_PARTITIONS || !in->parts[p].assigned) return 0; /* stale */
    if (m->offset < 0 && in->start_offset[p] >= 0) {
        in->stats.offset_reports_stale++;
        return 0; /* made before we assigned it an offset */
    }
    int64_t pos = m->offset >= 0 ? m->offset : in->parts[p].next_offset;
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t werr =
        dr_ingest_watermarks(in->rk, in->topic, p, &lo, &hi, WATERMARK_TIMEOUT_MS);
    if (werr) {
        dr_log(DR_LOG_WARN, "ingest", "could not read the log's range | topic=%s partition=%" PRId32
               " err=%s", in->topic, p, rd_kafka_err2name(werr));
        lo = hi = -1;
    } else {
        in->parts[p].high_watermark = hi;
    }
    const char *policy = policy_names[in->reset_policy];
    int64_t target;
    if (pos < 0) {
        /* A new group or a new partition: nothing stored, nothing committed.
         * Normal, and "fail" would make a first deployment impossible, so
         * only "latest" starts at the end. */
        target = in->reset_policy == RESET_LATEST ? (hi >= 0 ? hi : RD_KAFKA_OFFSET_END)
                                                  : (lo >= 0 ? lo : RD_KAFKA_OFFSET_BEGINNING);
        dr_log(DR_LOG_INFO, "ingest", "no stored or committed position: starting the partition at "
               "the %s | topic=%s partition=%" PRId32 " low=%" PRId64 " high=%" PRId64 " policy=%s",
               in->reset_policy == RESET_LATEST ? "log end" : "log start", in->topic, p, lo, hi, policy);
    } else if (lo >= 0 && pos >= lo && pos <= hi) {
        /* In range by now (the range moved between the fetch and our query,
         * e.g. a new leader caught up): nothing is skipped by resuming there. */
        target = pos;
        dr_log(DR_LOG_WARN, "ingest", "position reported out of range is inside the log's range now; "
               "resuming there | topic=%s partition=%" PRId32 " position=%" PRId64 " low=%" PRId64
               " high=%" PRId64, in->topic, p, pos, lo, hi);
    } else {
        in->stats.offset_resets++;
        bool below = lo >= 0 && pos < lo, above = hi >= 0 && pos > hi;
        /* Known to be lost: what retention removed before we read it, plus
         * under "latest" everything still in the log that we jump over. */
        int64_t skipped = below ? lo - pos : 0;
        if (in->reset_policy == RESET_LATEST && hi >= 0) skipped += hi - lo;
        if (in->reset_policy == RESET_FAIL) skipped = 0;
        const char *why = below ? "events fell out of retention before they were read"
                        : above ? "the log is shorter than the stored position: the topic was "
                                  "recreated or truncated"
                                : "the log's range could not be read";
        const char *then = in->reset_policy == RESET_FAIL ? "consumption stops (ingest.offset.reset=fail)"
                         : in->reset_policy == RESET_LATEST ? "continuing from the log end"
                                                            : "continuing from the log start";
        if (lo >= 0)
            dr_log(DR_LOG_ERROR, "ingest", "stored position out of the log's range: %s; %s | topic=%s "
                   "partition=%" PRId32 " position=%" PRId64 " low=%" PRId64 " high=%" PRId64
                   " skipped=%" PRId64 " policy=%s", why, then, in->topic, p, pos, lo, hi, skipped,
                   policy);
        else
            dr_log(DR_LOG_ERROR, "ingest", "stored position out of the log's range: %s; %s | topic=%s "
                   "partition=%" PRId32 " position=%" PRId64 " skipped=unknown policy=%s", why, then,
                   in->topic, p, pos, policy);
        if (in->reset_policy == RESET_FAIL) {
            halt(in, "stored position %" PRId64 " of %s [%" PRId32 "] is out of the log's range "
                 "(%" PRId64 "..%" PRId64 ") and ingest.offset.reset=fail", pos, in->topic, p, lo, hi);
            return DR_ESTOPPED;
        }
        in->stats.events_skipped += (uint64_t)skipped;
        target = in->reset_policy == RESET_LATEST ? (hi >= 0 ? hi : RD_KAFKA_OFFSET_END)
                                                  : (lo >= 0 ? lo : RD_KAFKA_OFFSET_BEGINNING);
    }
    if (!in->reset_pending[p]) in->n_resets_pending++;
    in->reset_pending[p] = true;
    in->reset_to[p] = target;
    return 0;
}

/* Restarts the partitions handle_offset_reset repositioned, after the batch
 * (so that records of other partitions already taken from the queue are not
 * fetched again). Cooperative: those partitions are unassigned and assigned
 * again at their new offsets. Eager: incremental calls are refused, so the
 * whole assignment is set again, every other partition at its next record. */
static void apply_resets(dr_ingest_t *in) {
    if (in->n_resets_pending == 0) return;
    rd_kafka_topic_partition_list_t *list = NULL;
    bool coop = cooperative(in->rk);
    if (coop) {
        list = rd_kafka_topic_partition_list_new(in->n_resets_pending);
        for (int p = 0; p < in->n_parts; p++)
            if (in->reset_pending[p])
                rd_kafka_topic_partition_list_add(list, in->topic, p)->offset = in->reset_to[p];
    } else if (!check_err(in, rd_kafka_assignment(in->rk, &list), "reading the assignment")) {
        return;
    } else {
        for (int i = 0; i < list->cnt; i++) {
            int32_t p = list->elems[i].partition;
            if (p < 0 || p >= DR_INGEST_MAX_PARTITIONS) continue;
            list->elems[i].offset = in->reset_pending[p] ? in->reset_to[p]
                                  : in->parts[p].next_offset >= 0 ? in->parts[p].next_offset
                                                                  : in->start_offset[p];
        }
    }
    bool ok = coop ? check_error(in, rd_kafka_incremental_unassign(in->rk, list), "incremental unassign") &&
                         check_error(in, rd_kafka_incremental_assign(in->rk, list), "incremental assign")
                   : check_err(in, rd_kafka_assign(in->rk, list), "assign");
    if (ok && in->stats.paused) rd_kafka_pause_partitions(in->rk, list);
    for (int p = 0; p < in->n_parts; p++)
        if (in->reset_pending[p]) {
            in->reset_pending[p] = false;
            in->start_offset[p] = in->reset_to[p];
            if (in->reset_to[p] >= 0) in->parts[p].next_offset = in->reset_to[p];
        }
    in->n_resets_pending = 0;
    rd_kafka_topic_partition_list_destroy(list);
}

/* Handles one message; returns DR_ESTOPPED when consumption must stop
 * before it (the message stays unprocessed). */
static int handle_message(dr_ingest_t *in, rd_kafka_message_t *m) {
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) return handle_offset_reset(in, m);
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            on_error(in->rk, m->err, rd_kafka_message_errstr(m), in);
        return 0;
    }
    int32_t p = m->partition;
    if (p < 0 || p >= DR_INGEST_MAX_PARTITIONS) return 0;
    if (in->reset_pending[p]) { /* the partition is being read: the report before this was stale */
        cancel_reset(in, p);
        in->stats.offset_reports_stale++;
    }
    char reason[256] = "";
    int err, cls = DR_DLQ_DECODE;
    dr_event_t ev;
    int64_t erase_id;
    bool erase = false;
    if (!m->payload && in->handler.on_erase && dr_ingest_user_key(m, &erase_id)) {
        erase = true;
        err = in->handler.on_erase(in->handler.ctx, erase_id, p, m->offset, reason, sizeof(reason));
        if (err == DR_ESTOPPED) return err;
        cls = DR_DLQ_REJECTED;
    } else if (!m->payload || m->len == 0) {
        err = DR_EDECODE;
        cls = DR_DLQ_EMPTY;
        snprintf(reason, sizeof(reason), m->payload ? "empty record value"
                                                    : "null value without a user id key (an erase request needs one)");
    } else if ((err = dr_codec_decode_event(in->conf.codec, m->payload, m->len, &ev, reason,
                                            sizeof(reason))) != 0) {
        cls = dr_ingest_dlq_class(err);
    } else {
        err = in->handler.on_event(in->handler.ctx, &ev, p, m->offset, reason, sizeof(reason));
        if (err == DR_ESTOPPED) return err;
        cls = DR_DLQ_REJECTED;
    }
    if (err) {
        if (dr_ingest_dead_letter(in, m, cls, reason[0] ? reason : dr_strerror(err)))
            return DR_ESTOPPED; /* cannot park it: stop rather than lose it */
        in->parts[p].dead_lettered++;
    } else if (erase) {
        in->stats.erase_requests++;
    } else {
        in->stats.events++;
    }
    in->parts[p].next_offset = m->offset + 1;
    in->parts[p].consumed++;
    in->stats.consumed++;
    return 0;
}

/* Drains the queue; returns true when it may hold more (budget reached).
 * Paused, it drains too: librdkafka holds back the paused partitions'
 * records, and the rebalances and errors on the queue are served only
 * from here (a member joining must not wait for the pause to end). And it
 * empties the queue, or no wake-up comes for what arrives next. */
static bool drain(dr_ingest_t *in) {
    for (int b = 0; !in->stopped && b < WAKE_BUDGET_BATCHES; b++) {
        ssize_t n = rd_kafka_consume_batch_queue(in->queue, 0, in->batch, (size_t)in->conf.batch);
        /* A rebalance served inside that call may have halted us: still end
         * the batch, so that the handler sees stats.halted. */
        if (n <= 0 && !in->stopped) return false;
        ssize_t i = 0;
        for (; i < n && !in->stopped; i++) {
            if (handle_message(in, in->batch[i]) == DR_ESTOPPED) {
                if (!in->stats.halted)
                    halt(in, "a record could be neither handled nor dead-lettered");
                break;
            }
            rd_kafka_message_destroy(in->batch[i]);
        }
        for (; i < n; i++) rd_kafka_message_destroy(in->batch[i]);
        if (!in->stopped) apply_resets(in);
        if (in->handler.on_batch_end) in->handler.on_batch_end(in->handler.ctx);
    }
    return !in->stopped;
}

static void on_idle(uv_idle_t *h) {
    dr_ingest_t *in = h->data;
    if (!drain(in)) uv_idle_stop(&in->idle);
}

static void on_readable(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    dr_ingest_t *in = h->data;
    char buf[256];
    while (read(in->pipe_fd[0], buf, sizeof(buf)) > 0) {}
    /* The queue signals only on empty -> non-empty: drain it completely, or
     * continue from the idle callback, or a wake-up is lost. */
    if (drain(in)) uv_idle_start(&in->idle, on_idle);
}

/* While paused, nothing may arrive on the queue for as long as the pause
 * lasts (lists that cannot leave: minutes), and librdkafka counts a member
 * that has not read its queue for max.poll.interval.ms as gone: it leaves
 * the group, and its partitions move to members no better placed. So the
 * queue is read every third of that interval, at most a second apart. */
static void keepalive_read(uv_timer_t *t) {
    dr_ingest_t *in = t->data;
    if (!in->stopped && drain(in)) uv_idle_start(&in->idle, on_idle);
}

static uint64_t keepalive_interval_ms(rd_kafka_t *rk) {
    char v[32];
    size_t len = sizeof(v);
    long long max_poll = 300000; /* librdkafka's default */
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "max.poll.interval.ms", v, &len) == RD_KAFKA_CONF_OK)
        max_poll = atoll(v);
    long long ms = max_poll / 3;
    return ms < 1 ? 1 : ms > 1000 ? 1000 : (uint64_t)ms;
}

static int assign_statically(dr_ingest_t *in, char *errstr, size_t n);

int dr_ingest_start(dr_ingest_t *in, char *errstr, size_t n) {
    if (in->started) return 0;
    if (pipe2(in->pipe_fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(errstr, n, "pipe: %s", strerror(errno));
        return DR_EIO;
    }
    uv_poll_init(in->loop, &in->poll, in->pipe_fd[0]);
    uv_idle_init(in->loop, &in->idle);
    uv_timer_init(in->loop, &in->keepalive);
    in->poll.data = in->idle.data = in->keepalive.data = in;
    in->open_handles = 3;
    in->keepalive_ms = keepalive_interval_ms(in->rk);
    rd_kafka_queue_io_event_enable(in->queue, in->pipe_fd[1], "1", 1);
    uv_poll_start(&in->poll, UV_READABLE, on_readable);
    in->started = true;
    if (in->stats.paused) uv_timer_start(&in->keepalive, keepalive_read, in->keepalive_ms, in->keepalive_ms);
    if (in->conf.partitions) {
        int err = assign_statically(in, errstr, n);
        if (err) return err;
        uv_idle_start(&in->idle, on_idle);
        return 0;
    }
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, in->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(in->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, n, "subscribe %s: %s", in->topic, rd_kafka_err2str(err));
        return DR_EKAFKA;
    }
    in->subscribed = true;
    /* Anything queued before the pipe was armed raised no signal. */
    uv_idle_start(&in->idle, on_idle);
    return 0;
}

/* conf.partitions: the partitions that exist of the set, assigned as a
 * group's assignment would be (on_assign picks where each starts). */
static int assign_statically(dr_ingest_t *in, char *errstr, size_t n) {
    const dr_partition_set_t *set = in->conf.partitions;
    int count = -1;
    int err = dr_ingest_topic_partitions(in->rk, in->topic, STATIC_METADATA_MS, &count);
    if (err || count <= 0) {
        snprintf(errstr, n, "ingest.partitions: cannot read how many partitions topic %s has%s", in->topic,
                 err ? " (no broker answered)" : " (no such topic)");
        return DR_EKAFKA;
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(set->all ? count : set->n);
    for (int i = 0; set->all && i < count && i < DR_INGEST_MAX_PARTITIONS; i++)
        rd_kafka_topic_partition_list_add(list, in->topic, i);
    for (int i = 0; !set->all && i < set->n; i++) {
        if (set->p[i] >= count) {
            snprintf(errstr, n, "ingest.partitions names partition %d, but topic %s has %d (0-%d)",
                     (int)set->p[i], in->topic, count, count - 1);
            rd_kafka_topic_partition_list_destroy(list);
            return DR_ECONFIG;
        }
        rd_kafka_topic_partition_list_add(list, in->topic, set->p[i]);
    }
    in->assigned_statically = true;
    on_assigned(in, in->rk, list, false, "static");
    rd_kafka_topic_partition_list_destroy(list);
    if (!in->stats.halted) return 0;
    snprintf(errstr, n, "ingest.partitions: %s", in->stats.halt_reason);
    return DR_EKAFKA;
}

void dr_ingest_stop(dr_ingest_t *in) {
    if (!in || !in->started) return;
    in->stopped = true;
    uv_idle_stop(&in->idle);
    uv_poll_stop(&in->poll);
    uv_timer_stop(&in->keepalive);
}

static void on_handle_closed(uv_handle_t *h) {
    dr_ingest_t *in = h->data;
    in->open_handles--;
}

void dr_ingest_close(dr_ingest_t *in) {
    if (!in || !in->rk) return;
    dr_ingest_stop(in);
    if (in->queue) rd_kafka_queue_io_event_enable(in->queue, -1, NULL, 0);
    /* Leaving the group revokes our partitions: on_revoke stores state.
     * Partitions we assigned ourselves we revoke ourselves, once. */
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (in->assigned_statically && rd_kafka_assignment(in->rk, &mine) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        mine->cnt > 0)
        on_revoked(in, in->rk, mine, false);
    if (mine) rd_kafka_topic_partition_list_destroy(mine);
    in->assigned_statically = false;
    rd_kafka_consumer_close(in->rk);
    if (in->started && !in->closed_handles) {
        uv_close((uv_handle_t *)&in->poll, on_handle_closed);
        uv_close((uv_handle_t *)&in->idle, on_handle_closed);
        uv_close((uv_handle_t *)&in->keepalive, on_handle_closed);
        in->closed_handles = true;
    }
}

void dr_ingest_free(dr_ingest_t *in) {
    if (!in) return;
    if (in->queue) rd_kafka_queue_destroy(in->queue);
    if (in->rk) rd_kafka_destroy(in->rk);
    for (int i = 0; i < 2; i++)
        if (in->pipe_fd[i] >= 0) close(in->pipe_fd[i]);
    free(in->topic);
    free(in->dlq_topic);
    free(in->batch);
    free(in);
}

/* ---- control and observation ---------------------------------------------- */

void dr_ingest_set_paused(dr_ingest_t *in, bool paused) {
    if (in->stats.paused == paused) return;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(in->rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (paused) rd_kafka_pause_partitions(in->rk, parts);
        else rd_kafka_resume_partitions(in->rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
    }
    in->stats.paused = paused;
    if (paused) {
        in->stats.pauses++;
        if (in->started && !in->stopped)
            uv_timer_start(&in->keepalive, keepalive_read, in->keepalive_ms, in->keepalive_ms);
    } else if (in->started && !in->stopped) {
        uv_timer_stop(&in->keepalive);
        uv_idle_start(&in->idle, on_idle); /* the queue may hold data again */
    }
}

const dr_partition_stats_t *dr_ingest_partitions(const dr_ingest_t *in, int *n) {
    *n = in->n_parts;
    return in->parts;
}

const dr_ingest_stats_t *dr_ingest_stats(const dr_ingest_t *in) { return &in->stats; }
rd_kafka_t *dr_ingest_consumer(dr_ingest_t *in) { return in->rk; }

int64_t dr_ingest_lag(dr_ingest_t *in) {
    int64_t lag = 0;
    for (int p = 0; p < in->n_parts; p++) {
        dr_partition_stats_t *ps = &in->parts[p];
        if (!ps->assigned) continue;
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(in->rk, in->topic, p, &lo, &hi) == 0 && hi >= 0)
            ps->high_watermark = hi;
        int64_t next = ps->next_offset >= 0 ? ps->next_offset : (lo >= 0 ? lo : 0);
        if (ps->high_watermark > next) lag += ps->high_watermark - next;
    }
    return lag;
}

void dr_ingest_commit_async(dr_ingest_t *in, const int64_t *next_offsets, int n) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(in->n_parts + 1);
    for (int p = 0; p < in->n_parts && p < n; p++)
        if (in->parts[p].assigned && next_offsets[p] >= 0)
            rd_kafka_topic_partition_list_add(list, in->topic, p)->offset = next_offsets[p];
    if (list->cnt > 0) rd_kafka_commit(in->rk, list, 1);
    rd_kafka_topic_partition_list_destroy(list);
}

int dr_ingest_topic_partitions_err(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
                                   char *errstr, size_t errstr_size) {
    int err = dr_ingest_topic_partitions(rk, topic, timeout_ms, count);
    if (err == DR_EKAFKA && errstr && errstr_size > 0) {
        char servers[512] = "?";
        size_t size = sizeof(servers);
        (void)rd_kafka_conf_get(rd_kafka_conf(rk), "bootstrap.servers", servers, &size);
        snprintf(errstr, errstr_size, "no broker answered at %s within %g s", servers, timeout_ms / 1000.0);
    }
    return err;
}

int dr_ingest_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (!t) return DR_ENOMEM;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    rd_kafka_topic_destroy(t);
    if (err) return DR_EKAFKA;
    *count = -1;
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        *count = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return 0;
}

/* One offset of the partition by time (RD_KAFKA_OFFSET_BEGINNING or _END),
 * within timeout_ms. */
static rd_kafka_resp_err_t offset_by_time(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t which,
                                          int timeout_ms, int64_t *out) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset = which;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, list, timeout_ms);
    if (!err) err = list->elems[0].err;
    if (!err && list->elems[0].offset < 0) err = RD_KAFKA_RESP_ERR__BAD_MSG; /* not an offset */
    *out = err ? -1 : list->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

rd_kafka_resp_err_t dr_ingest_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *low,
                                         int64_t *high, int timeout_ms) {
    *low = *high = -1;
    double t0 = dr_mono_s();
    rd_kafka_resp_err_t err = offset_by_time(rk, topic, partition, RD_KAFKA_OFFSET_BEGINNING, timeout_ms, low);
    int left = timeout_ms - (int)((dr_mono_s() - t0) * 1000.0);
    if (!err) err = offset_by_time(rk, topic, partition, RD_KAFKA_OFFSET_END, left > 1 ? left : 1, high);
    if (err) *low = *high = -1;
    return err;
}

int dr_ingest_parse_partitions(const char *spec, dr_partition_set_t *out, char *errstr, size_t n) {
    if (out) memset(out, 0, sizeof(*out));
    if (strcmp(spec, "all") == 0) {
        if (out) out->all = true;
        return 0;
    }
    static const char *const form = "expected \"all\" or partitions and ranges such as \"0-3,8\"";
    bool seen[DR_INGEST_MAX_PARTITIONS] = {false};
    const char *c = spec;
    while (*c) {
        char *end;
        errno = 0;
        long lo = strtol(c, &end, 10), hi = lo;
        if (end == c || !isdigit((unsigned char)*c)) goto bad_form;
        c = end;
        if (*c == '-') {
            const char *h = ++c;
            hi = strtol(h, &end, 10);
            if (end == h || !isdigit((unsigned char)*h)) goto bad_form;
            c = end;
        }
        if (errno || lo < 0 || hi < lo || hi >= DR_INGEST_MAX_PARTITIONS) {
            snprintf(errstr, n, "ingest.partitions: \"%s\": each partition in 0-%d, ranges low-high", spec,
                     DR_INGEST_MAX_PARTITIONS - 1);
            return DR_ECONFIG;
        }
        for (long p = lo; p <= hi; p++) seen[p] = true;
        if (*c == ',' && c[1] != '\0') c++;
        else if (*c) goto bad_form;
    }
    int listed = 0;
    for (int p = 0; p < DR_INGEST_MAX_PARTITIONS; p++) {
        if (!seen[p]) continue;
        if (out) out->p[out->n++] = p;
        listed++;
    }
    if (listed > 0) return 0;
bad_form:
    snprintf(errstr, n, "ingest.partitions: \"%s\": %s", spec, form);
    return DR_ECONFIG;
}
