/* catalog.c - the catalog reader: a group-less consumer assigned to every
 * partition of the catalog topic, woken by the libuv loop like the events
 * consumer, decoding Item records for the learner (see dr_ingest.h). */
#include "dr_ingest.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dr_err.h"
#include "dr_log.h"

#define CATALOG_MAX_PARTITIONS 1024
#define CATALOG_BATCH 1024

struct dr_catalog {
    uv_loop_t *loop;
    char *topic;
    dr_ingest_conf_t conf;
    dr_catalog_handler_t handler;
    dr_ingest_t *dlq;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int pipe_fd[2];
    uv_poll_t poll;
    bool started, closed;
    dr_partition_stats_t parts[CATALOG_MAX_PARTITIONS];
    int64_t end_at_start[CATALOG_MAX_PARTITIONS]; /* each partition's end offset when started
                                                     (-1 until its first fetch is answered), */
    int64_t low_at_start[CATALOG_MAX_PARTITIONS]; /* and the first it still kept */
    int ends_unknown;
    int n_parts;
    bool caught_up;
    uint64_t items;
    float *emb;
};

int dr_catalog_new(dr_catalog_t **out, uv_loop_t *loop, const char *topic, const dr_ingest_conf_t *conf,
                   const dr_catalog_handler_t *handler, dr_ingest_t *dlq, char *errstr, size_t n) {
    char e[512], group[64];
    *out = NULL;
    dr_catalog_t *c = calloc(1, sizeof(*c));
    if (!c) return DR_ENOMEM;
    c->loop = loop;
    c->conf = *conf;
    c->handler = *handler;
    c->dlq = dlq;
    c->pipe_fd[0] = c->pipe_fd[1] = -1;
    c->topic = strdup(topic);
    c->emb = malloc(DR_CODEC_MAX_EMBEDDING * sizeof(float));
    /* assign() needs no group; a group id is still required by the client */
    snprintf(group, sizeof(group), "%s.catalog", conf->group_id);
    /* a catalog record (a block, a new post) reaches lists within an emit
     * interval, not after the fetch wait */
    const char *const defaults[][2] = {{"group.id", group}, {"enable.auto.commit", "false"},
                                       {"fetch.wait.max.ms", DR_INGEST_FETCH_WAIT_MS}};
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(defaults, 3, conf->kafka_keys, conf->kafka_values,
                                               conf->n_kafka, e, sizeof(e));
    c->rk = kc ? rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof(e)) : NULL;
    if (!c->rk || !c->topic || !c->emb) {
        if (kc && !c->rk) rd_kafka_conf_destroy(kc);
        snprintf(errstr, n, "catalog consumer: %s", c->rk ? "out of memory" : e);
        dr_catalog_free(c);
        return DR_EKAFKA;
    }
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    for (int p = 0; p < CATALOG_MAX_PARTITIONS; p++) c->parts[p].next_offset = -1;
    *out = c;
    return 0;
}

static void handle(dr_catalog_t *c, rd_kafka_message_t *m) {
    if (m->err || m->partition < 0 || m->partition >= CATALOG_MAX_PARTITIONS) return;
    char reason[256] = "";
    dr_item_rec_t item;
    int err = m->payload ? dr_codec_decode_item(c->conf.codec, m->payload, m->len, &item, c->emb,
                                                 DR_CODEC_MAX_EMBEDDING, reason, sizeof(reason))
                         : DR_EDECODE;
    int cls = m->payload ? dr_ingest_dlq_class(err) : DR_DLQ_EMPTY;
    int64_t tombstone_id;
    if (!err) {
        err = c->handler.on_item(c->handler.ctx, &item, reason, sizeof(reason));
        cls = DR_DLQ_REJECTED;
    } else if (!m->payload && c->handler.on_item_removed && dr_ingest_user_key(m, &tombstone_id)) {
        /* a compacted topic's tombstone: the catalog forgot the item (keyed
         * as every id of ours is: dr_ingest_user_key) */
        err = c->handler.on_item_removed(c->handler.ctx, tombstone_id, reason, sizeof(reason));
        cls = DR_DLQ_REJECTED;
    } else if (!m->payload) {
        snprintf(reason, sizeof(reason),
                 "empty catalog record: a tombstone needs the item id as its key (decimal, or 8 bytes as Java's LongSerializer writes it)");
    }
    if (err) dr_ingest_dead_letter(c->dlq, m, cls, reason[0] ? reason : dr_strerror(err));
    else c->items++;
    c->parts[m->partition].next_offset = m->offset + 1;
    c->parts[m->partition].consumed++;
}

/* Records of partition p left before the end it had at start. Reading
 * is at the furthest of: the offset after the last record read (or the
 * stored one), the first record the broker still kept at start, and the
 * consumer's position (-1: not asked), which passes the commit markers of
 * a transactionally written partition that no application ever receives. */
static int64_t left_in(const dr_catalog_t *c, int p, int64_t position) {
    int64_t at = c->parts[p].next_offset;
    if (c->low_at_start[p] > at) at = c->low_at_start[p];
    if (position > at) at = position;
    return c->end_at_start[p] > at ? c->end_at_start[p] - at : 0;
}

int64_t dr_catalog_behind(const dr_catalog_t *c) {
    if (c->caught_up) return 0;
    int64_t left = 0;
    for (int p = 0; p < c->n_parts; p++) left += left_in(c, p, -1); /* an unknown end counts nothing */
    return left;
}

int dr_catalog_ends_unknown(const dr_catalog_t *c) { return c->caught_up ? 0 : c->ends_unknown; }

/* Each partition's end at start, as the answer to its first fetch gave it:
 * librdkafka keeps the high watermark (and the log start) of the last
 * fetch response of each partition, -1001 before the first. Not a
 * blocking query: a partition whose leader does not answer (down, being
 * elected) holds the catch-up until it does, and the loop goes on. */
static void learn_ends(dr_catalog_t *c) {
    for (int p = 0; c->ends_unknown > 0 && p < c->n_parts; p++) {
        int64_t lo = -1, hi = -1;
        if (c->end_at_start[p] >= 0 || rd_kafka_get_watermark_offsets(c->rk, c->topic, p, &lo, &hi) || hi < 0)
            continue;
        c->end_at_start[p] = hi;
        c->low_at_start[p] = lo > 0 ? lo : 0;
        c->ends_unknown--;
    }
}

/* Whether the consumer's positions have reached the ends where the
 * records read have not. */
static bool positions_at_ends(dr_catalog_t *c) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(c->n_parts);
    for (int p = 0; p < c->n_parts; p++) rd_kafka_topic_partition_list_add(list, c->topic, p);
    bool at_ends = rd_kafka_position(c->rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int k = 0; at_ends && k < list->cnt; k++)
        at_ends = left_in(c, list->elems[k].partition, list->elems[k].offset) == 0;
    rd_kafka_topic_partition_list_destroy(list);
    return at_ends;
}

/* Tells the handler, once, that the ends the topic had at start are read. */
static void check_caught_up(dr_catalog_t *c) {
    if (c->caught_up || !c->started) return;
    learn_ends(c);
    if (c->ends_unknown > 0 || (dr_catalog_behind(c) > 0 && !positions_at_ends(c))) return;
    c->caught_up = true;
    if (c->handler.caught_up) c->handler.caught_up(c->handler.ctx);
}

bool dr_catalog_caught_up(dr_catalog_t *c) {
    check_caught_up(c);
    return c->caught_up;
}

static void on_readable(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    dr_catalog_t *c = h->data;
    char buf[256];
    rd_kafka_message_t *batch[CATALOG_BATCH];
    while (read(c->pipe_fd[0], buf, sizeof(buf)) > 0) {}
    ssize_t n;
    /* the catalog is small next to the events: drain it completely */
    while ((n = rd_kafka_consume_batch_queue(c->queue, 0, batch, CATALOG_BATCH)) > 0)
        for (ssize_t i = 0; i < n; i++) {
            handle(c, batch[i]);
            rd_kafka_message_destroy(batch[i]);
        }
    check_caught_up(c);
}

static int assign_all(dr_catalog_t *c, char *errstr, size_t n) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(c->rk, c->topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, n, "catalog topic %s: %s", c->topic, rd_kafka_err2str(err ? err : md->topics[0].err));
        if (md) rd_kafka_metadata_destroy(md);
        return DR_EKAFKA;
    }
    c->n_parts = md->topics[0].partition_cnt < CATALOG_MAX_PARTITIONS ? md->topics[0].partition_cnt
                                                                        : CATALOG_MAX_PARTITIONS;
    c->ends_unknown = c->n_parts;
    for (int p = 0; p < c->n_parts; p++) c->end_at_start[p] = -1;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(c->n_parts);
    for (int p = 0; p < c->n_parts; p++) {
        int64_t start = c->handler.start_offset(c->handler.ctx, p);
        c->parts[p].assigned = true;
        c->parts[p].next_offset = start;
        rd_kafka_topic_partition_list_add(list, c->topic, p)->offset =
            start >= 0 ? start : RD_KAFKA_OFFSET_BEGINNING;
    }
    err = rd_kafka_assign(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) snprintf(errstr, n, "catalog assign: %s", rd_kafka_err2str(err));
    return err ? DR_EKAFKA : 0;
}

int dr_catalog_start(dr_catalog_t *c, char *errstr, size_t n) {
    if (c->started) return 0;
    if (pipe2(c->pipe_fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(errstr, n, "pipe: %s", strerror(errno));
        return DR_EIO;
    }
    uv_poll_init(c->loop, &c->poll, c->pipe_fd[0]);
    c->poll.data = c;
    c->started = true;
    rd_kafka_queue_io_event_enable(c->queue, c->pipe_fd[1], "1", 1);
    uv_poll_start(&c->poll, UV_READABLE, on_readable);
    int err = assign_all(c, errstr, n);
    if (err) return err;
    dr_log(DR_LOG_INFO, "ingest", "catalog reader started | topic=%s partitions=%d", c->topic, c->n_parts);
    on_readable(&c->poll, 0, 0); /* anything queued before the pipe was armed; caught up at once? */
    return 0;
}

void dr_catalog_close(dr_catalog_t *c) {
    if (!c || !c->started || c->closed) return;
    rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, NULL);
    c->closed = true;
}

void dr_catalog_free(dr_catalog_t *c) {
    if (!c) return;
    if (c->queue) rd_kafka_queue_destroy(c->queue);
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    for (int i = 0; i < 2; i++)
        if (c->pipe_fd[i] >= 0) close(c->pipe_fd[i]);
    free(c->topic);
    free(c->emb);
    free(c);
}

const dr_partition_stats_t *dr_catalog_partitions(const dr_catalog_t *c, int *n) {
    *n = c->n_parts;
    return c->parts;
}

uint64_t dr_catalog_items_seen(const dr_catalog_t *c) { return c->items; }
