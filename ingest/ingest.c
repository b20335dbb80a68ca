/* ingest.c - consumer-group input on the libuv loop: the consumer queue
 * signals a pipe when it turns non-empty, uv_poll wakes us, and we drain it
 * in batches; records that fail decoding or are rejected go to the DLQ. */
#include "dr_ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dr_err.h"
#include "dr_log.h"

/* Batches handled per loop iteration before yielding to timers (emit,
 * commit), so lists keep flowing while a backlog is drained. */
#define WAKE_BUDGET_BATCHES 2

static const char *const dlq_names[DR_DLQ__COUNT] = {"decode", "schema", "invalid", "empty",
                                                  "rejected"};

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
    bool started, stopped, subscribed, closed_handles;
    int open_handles;
    rd_kafka_message_t **batch;
    dr_partition_stats_t parts[DR_INGEST_MAX_PARTITIONS];
    int n_parts;              /* highest partition seen + 1 */
    dr_ingest_stats_t stats;
    dr_log_limit_t dlq_log;
};

const char *dr_ingest_dlq_reason_name(int cls) {
    return cls >= 0 && cls < DR_DLQ__COUNT ? dlq_names[cls] : "other";
}

int dr_ingest_dlq_class(int err) {
    switch (err) {
    case DR_EDECODE: return DR_DLQ_DECODE;
    case DR_ESCHEMA: return DR_DLQ_SCHEMA;
    case DR_ERANGE: case DR_EINVAL: return DR_DLQ_INVALID;
    default: return DR_DLQ_REJECTED;
    }
}

/* ---- rebalancing ---------------------------------------------------------- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    dr_ingest_t *in = opaque;
    in->stats.rebalances++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
        if (in->handler.on_assign) in->handler.on_assign(in->handler.ctx, parts);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p < 0 || p >= DR_INGEST_MAX_PARTITIONS) continue;
            in->parts[p].assigned = true;
            in->parts[p].next_offset = parts->elems[i].offset >= 0 ? parts->elems[i].offset : -1;
            if (p >= in->n_parts) in->n_parts = p + 1;
        }
        dr_log(DR_LOG_INFO, "ingest", "partitions assigned | count=%d", parts->cnt);
        rd_kafka_assign(rk, parts);
        if (in->stats.paused) rd_kafka_pause_partitions(rk, parts);
    } else {
        if (in->handler.on_revoke) in->handler.on_revoke(in->handler.ctx, parts);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p >= 0 && p < DR_INGEST_MAX_PARTITIONS) in->parts[p].assigned = false;
        }
        dr_log(DR_LOG_INFO, "ingest", "partitions revoked | count=%d", parts->cnt);
        rd_kafka_assign(rk, NULL);
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
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(NULL, 0, in->conf.kafka_keys, in->conf.kafka_values,
                                               in->conf.n_kafka, errstr, n);
    if (!kc) return DR_ECONFIG;
    /* Our own positions live in RocksDB; Kafka commits are for lag only. */
    if (rd_kafka_conf_set(kc, "group.id", in->conf.group_id, e, sizeof(e)) ||
        rd_kafka_conf_set(kc, "enable.auto.commit", "false", e, sizeof(e)) ||
        rd_kafka_conf_set(kc, "enable.auto.offset.store", "false", e, sizeof(e))) {
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
    in->topic = strdup(conf->topic);
    in->dlq_topic = strdup(conf->dlq_topic);
    in->batch = calloc((size_t)conf->batch, sizeof(*in->batch));
    for (int p = 0; p < DR_INGEST_MAX_PARTITIONS; p++) {
        in->parts[p].next_offset = -1;
        in->parts[p].high_watermark = -1;
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
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    add_header(h, "dr.reason", reason);
    add_header(h, "dr.reason.class", dr_ingest_dlq_reason_name(cls));
    add_header(h, "dr.source.topic", rd_kafka_topic_name(msg->rkt));
    add_header(h, "dr.source.partition", part);
    add_header(h, "dr.source.offset", off);
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
    char buf[24];
    if (!m->key || m->key_len == 0 || m->key_len >= sizeof(buf)) return false;
    memcpy(buf, m->key, m->key_len);
    buf[m->key_len] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (*end != '\0' || v < 0 || v >= DR_MAX_ID) return false;
    *id = v;
    return true;
}

/* Handles one message; returns DR_ESTOPPED when consumption must stop
 * before it (the message stays unprocessed). */
static int handle_message(dr_ingest_t *in, rd_kafka_message_t *m) {
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            on_error(in->rk, m->err, rd_kafka_message_errstr(m), in);
        return 0;
    }
    int32_t p = m->partition;
    if (p < 0 || p >= DR_INGEST_MAX_PARTITIONS) return 0;
    char reason[256] = "";
    int err, cls = DR_DLQ_DECODE;
    dr_event_t ev;
    int64_t erase_id;
    if (!m->payload && in->handler.on_erase && dr_ingest_user_key(m, &erase_id)) {
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
    } else {
        in->stats.events++;
    }
    in->parts[p].next_offset = m->offset + 1;
    in->parts[p].consumed++;
    in->stats.consumed++;
    return 0;
}

/* Drains the queue; returns true when it may hold more (budget reached). */
static bool drain(dr_ingest_t *in) {
    for (int b = 0; !in->stopped && !in->stats.paused && b < WAKE_BUDGET_BATCHES; b++) {
        ssize_t n = rd_kafka_consume_batch_queue(in->queue, 0, in->batch, (size_t)in->conf.batch);
        if (n <= 0) return false;
        ssize_t i = 0;
        for (; i < n; i++) {
            if (handle_message(in, in->batch[i]) == DR_ESTOPPED) {
                in->stopped = true;
                in->stats.halted = true;
                break;
            }
            rd_kafka_message_destroy(in->batch[i]);
        }
        for (; i < n; i++) rd_kafka_message_destroy(in->batch[i]);
        if (in->handler.on_batch_end) in->handler.on_batch_end(in->handler.ctx);
    }
    return !in->stopped && !in->stats.paused;
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

int dr_ingest_start(dr_ingest_t *in, char *errstr, size_t n) {
    if (in->started) return 0;
    if (pipe2(in->pipe_fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(errstr, n, "pipe: %s", strerror(errno));
        return DR_EIO;
    }
    uv_poll_init(in->loop, &in->poll, in->pipe_fd[0]);
    uv_idle_init(in->loop, &in->idle);
    in->poll.data = in->idle.data = in;
    in->open_handles = 2;
    rd_kafka_queue_io_event_enable(in->queue, in->pipe_fd[1], "1", 1);
    uv_poll_start(&in->poll, UV_READABLE, on_readable);
    in->started = true;
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

void dr_ingest_stop(dr_ingest_t *in) {
    if (!in || !in->started) return;
    in->stopped = true;
    uv_idle_stop(&in->idle);
    uv_poll_stop(&in->poll);
}

static void on_handle_closed(uv_handle_t *h) {
    dr_ingest_t *in = h->data;
    in->open_handles--;
}

void dr_ingest_close(dr_ingest_t *in) {
    if (!in || !in->rk) return;
    dr_ingest_stop(in);
    if (in->queue) rd_kafka_queue_io_event_enable(in->queue, -1, NULL, 0);
    /* Leaving the group revokes our partitions: on_revoke stores state. */
    rd_kafka_consumer_close(in->rk);
    if (in->started && !in->closed_handles) {
        uv_close((uv_handle_t *)&in->poll, on_handle_closed);
        uv_close((uv_handle_t *)&in->idle, on_handle_closed);
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
    } else if (in->started && !in->stopped) {
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
