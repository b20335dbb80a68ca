/* modelsync.c - the instances of a group share what they learn of the
 * items and the prior through the model topic: each publishes its sparse
 * changes and adds the others' (dr_handoff.h, "shared parameters"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"
#include "dr_handoff.h"
#include "dr_ingest.h"
#include "dr_key.h"
#include "dr_log.h"
#include "dr_types.h"
#include "handoff_internal.h"

#define SYNC_CHUNK_ITEMS 4096   /* ~0.6 MB per message at d = 32 */
#define PRODUCE_WAIT_MS 1000    /* a full producer queue is waited out this long */

struct dr_model_sync {
    rd_kafka_t *producer;      /* borrowed */
    rd_kafka_t *reader;
    rd_kafka_queue_t *queue;
    char *topic;
    char key[DR_ID_KEY_MAX];   /* this instance's id, decimal */
    size_t key_len;
    const char *const *kafka_keys, *const *kafka_values;
    int n_kafka;
    int64_t *next;             /* per partition */
    int n_parts;
    uint64_t instance;
    uint64_t seq;              /* the last message number this instance published */
    uint64_t epoch_base;       /* this process numbers its messages above it */
    struct seen { uint64_t instance, seq; } *seen; /* the last applied of each instance, this one too */
    size_t n_seen, cap_seen;
    dr_model_sync_stats_t stats;
};

int dr_model_sync_new(dr_model_sync_t **out, rd_kafka_t *producer, const char *topic,
                      uint64_t instance_id, const char *const *kafka_keys,
                      const char *const *kafka_values, int n_kafka, char *errstr, size_t n) {
    *out = NULL;
    dr_model_sync_t *s = calloc(1, sizeof(*s));
    /* instance ids are keys in the user id format (below 2^53) */
    instance_id &= ((uint64_t)1 << 53) - 1;
    if (!s || !(s->topic = strdup(topic))) {
        free(s);
        snprintf(errstr, n, "out of memory");
        return DR_ENOMEM;
    }
    s->producer = producer;
    s->instance = instance_id;
    s->key_len = dr_id_key(s->key, (int64_t)instance_id);
    s->kafka_keys = kafka_keys;
    s->kafka_values = kafka_values;
    s->n_kafka = n_kafka;
    *out = s;
    return 0;
}

void dr_model_sync_free(dr_model_sync_t *s) {
    if (!s) return;
    if (s->queue) rd_kafka_queue_destroy(s->queue);
    dr__handoff_reader_free(s->reader);
    free(s->next);
    free(s->seen);
    free(s->topic);
    free(s);
}

/* The state that goes with a commit: own sequence number, then (instance,
 * last applied sequence) pairs; little-endian u64s. */
int dr_model_sync_encode_state(const dr_model_sync_t *s, uint8_t **out, size_t *len) {
    *len = 8 * (1 + 2 * s->n_seen);
    if (!(*out = malloc(*len))) return DR_ENOMEM;
    memcpy(*out, &s->seq, 8);
    for (size_t i = 0; i < s->n_seen; i++) {
        memcpy(*out + 8 + 16 * i, &s->seen[i].instance, 8);
        memcpy(*out + 16 + 16 * i, &s->seen[i].seq, 8);
    }
    return 0;
}

static struct seen *seen_of(dr_model_sync_t *s, uint64_t instance, bool add) {
    for (size_t i = 0; i < s->n_seen; i++)
        if (s->seen[i].instance == instance) return &s->seen[i];
    if (!add) return NULL;
    if (s->n_seen == s->cap_seen) {
        size_t cap = s->cap_seen ? s->cap_seen * 2 : 16;
        struct seen *v = realloc(s->seen, cap * sizeof(*v));
        if (!v) return NULL;
        s->seen = v;
        s->cap_seen = cap;
    }
    s->seen[s->n_seen] = (struct seen){instance, 0};
    return &s->seen[s->n_seen++];
}

int dr_model_sync_load_state(dr_model_sync_t *s, const void *buf, size_t len) {
    if (len < 8 || (len - 8) % 16 != 0) return DR_ECORRUPT;
    const uint8_t *b = buf;
    memcpy(&s->seq, b, 8);
    for (size_t i = 0; i < (len - 8) / 16; i++) {
        uint64_t instance, seq;
        memcpy(&instance, b + 8 + 16 * i, 8);
        memcpy(&seq, b + 16 + 16 * i, 8);
        struct seen *e = seen_of(s, instance, true);
        if (!e) return DR_ENOMEM;
        e->seq = seq;
    }
    return 0;
}

void dr_model_sync_begin_epoch(dr_model_sync_t *s) {
    s->seq = ((s->seq >> 32) + 1) << 32;
    s->epoch_base = s->seq;
}

const char *dr_model_sync_topic(const dr_model_sync_t *s) { return s->topic; }

int64_t dr_model_sync_lag(const dr_model_sync_t *s) {
    if (!s->reader) return 0;
    int64_t lag = 0;
    for (int p = 0; p < s->n_parts; p++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(s->reader, s->topic, p, &lo, &hi) || hi < 0) return -1;
        int64_t at = s->next[p] >= 0 ? s->next[p] : lo;
        if (hi > at) lag += hi - at;
    }
    return lag;
}
dr_model_sync_stats_t *dr_model_sync_stats(dr_model_sync_t *s) { return &s->stats; }
const int64_t *dr_model_sync_positions(const dr_model_sync_t *s, int *n) {
    *n = s->n_parts;
    return s->next;
}

int dr_model_sync_start(dr_model_sync_t *s, int64_t (*start)(void *ctx, int32_t partition),
                        void *ctx, int timeout_ms, char *errstr, size_t n) {
    int err = dr__handoff_reader(&s->reader, "driftrec-model", "100", s->kafka_keys, s->kafka_values,
                                 s->n_kafka, "model reader", errstr, n);
    if (err) return err;
    s->queue = rd_kafka_queue_get_consumer(s->reader);
    int parts = -1;
    if (dr_ingest_topic_partitions(s->reader, s->topic, timeout_ms, &parts)) {
        snprintf(errstr, n, "cannot read the metadata of the model topic %s within %d ms", s->topic, timeout_ms);
        return DR_EKAFKA;
    }
    if (parts <= 0) {
        snprintf(errstr, n,
                 "the model topic %s does not exist; create it (any partition count, delete policy, "
                 "`driftrec topics` makes it), or set topic.model=- to learn the items per instance",
                 s->topic);
        return DR_ECONFIG;
    }
    if (!(s->next = malloc((size_t)parts * sizeof(*s->next)))) return DR_ENOMEM;
    s->n_parts = parts;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++) {
        int64_t at = start(ctx, p);
        s->next[p] = at;
        rd_kafka_topic_partition_list_add(list, s->topic, p)->offset = at >= 0 ? at : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t kerr = rd_kafka_assign(s->reader, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (kerr) {
        snprintf(errstr, n, "reading the model topic %s: %s", s->topic, rd_kafka_err2str(kerr));
        return DR_EKAFKA;
    }
    return 0;
}

static int produce(dr_model_sync_t *s, const uint8_t *buf, size_t len, uint64_t seq, void *opaque) {
    int64_t deadline = dr_mono_ms() + PRODUCE_WAIT_MS;
    char seq_text[24];
    int seq_len = snprintf(seq_text, sizeof(seq_text), "%" PRIu64, seq);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            s->producer, RD_KAFKA_V_TOPIC(s->topic), RD_KAFKA_V_KEY(s->key, s->key_len),
            RD_KAFKA_V_VALUE((void *)buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("dr.seq", seq_text, seq_len), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || dr_mono_ms() >= deadline) {
            static dr_log_limit_t lim = DR_LOG_LIMIT_INIT(60000, 3);
            uint64_t dropped = 0;
            if (dr_log_allow(&lim, &dropped))
                dr_log(DR_LOG_WARN, "handoff", "item changes not shared: cannot produce to the model topic | topic=%s err=%s suppressed=%" PRIu64,
                       s->topic, rd_kafka_err2str(err), dropped);
            s->stats.lost++;
            return DR_EKAFKA;
        }
        rd_kafka_poll(s->producer, 10);
    }
}

int dr_model_sync_publish(dr_model_sync_t *s, dr_model_t *m, void *opaque, size_t *messages) {
    int err = 0;
    bool first = true;
    *messages = 0;
    /* the first message carries the prior's change even without items */
    while (!err && (first || dr_model_sync_pending(m) > 0)) {
        uint8_t *buf;
        size_t len, items;
        if ((err = dr_model_sync_export(m, SYNC_CHUNK_ITEMS, &buf, &len, &items))) break;
        first = false;
        /* numbered: after a crash the instance numbers its replay of a
         * commit the others already applied as before, and they skip it */
        err = produce(s, buf, len, s->seq + 1, opaque);
        free(buf);
        struct seen *own = err ? NULL : seen_of(s, s->instance, true);
        if (!err && !own) err = DR_ENOMEM;
        if (!err) {
            s->seq++;
            own->seq = s->seq; /* in this instance's items already */
            (*messages)++;
            s->stats.published++;
            s->stats.items_published += items;
        }
    }
    return err;
}

static bool message_seq(const rd_kafka_message_t *msg, uint64_t *seq) {
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    if (rd_kafka_message_headers(msg, &h) || rd_kafka_header_get_last(h, "dr.seq", &v, &len) || !v ||
        len == 0 || len > 20)
        return false;
    char text[24];
    memcpy(text, v, len);
    text[len] = '\0';
    char *end;
    *seq = strtoull(text, &end, 10);
    return *end == '\0';
}

void dr_model_sync_poll(dr_model_sync_t *s, dr_model_t *m, int max) {
    if (!s->queue) return;
    rd_kafka_message_t *batch[256];
    while (max > 0) {
        ssize_t got = rd_kafka_consume_batch_queue(s->queue, 0, batch, max < 256 ? (size_t)max : 256);
        if (got <= 0) return;
        max -= (int)got;
        for (ssize_t i = 0; i < got; i++) {
            rd_kafka_message_t *msg = batch[i];
            if (msg->err || msg->partition < 0 || msg->partition >= s->n_parts) {
                rd_kafka_message_destroy(msg);
                continue;
            }
            s->next[msg->partition] = msg->offset + 1;
            bool own = msg->key_len == s->key_len && memcmp(msg->key, s->key, s->key_len) == 0;
            int64_t instance = -1;
            uint64_t seq = 0;
            struct seen *seen = NULL;
            if (!msg->payload) {
                /* nothing to apply */
            } else if (!dr_ingest_user_key(msg, &instance) || !message_seq(msg, &seq)) {
                s->stats.rejected++; /* not ours: no instance key or sequence number */
            } else if (own && seq > s->epoch_base) {
                /* published by this process: in its items already */
            } else if (!(seen = seen_of(s, (uint64_t)instance, true)) || seq <= seen->seq) {
                s->stats.duplicates++;
            } else {
                /* another instance's, or this one's published by a process
                 * that died before its commit stored the items: the others
                 * have added it, so this instance adds it too */
                seen->seq = seq;
                if (own) s->stats.own_recovered++;
                size_t applied = 0, skipped = 0;
                int err = dr_model_sync_import(m, msg->payload, msg->len, &applied, &skipped);
                if (err) {
                    s->stats.rejected++;
                    static dr_log_limit_t lim = DR_LOG_LIMIT_INIT(60000, 3);
                    uint64_t dropped = 0;
                    if (dr_log_allow(&lim, &dropped))
                        dr_log(DR_LOG_WARN, "handoff", "a model message was refused | topic=%s partition=%d offset=%" PRId64 " err=%s suppressed=%" PRIu64,
                               s->topic, (int)msg->partition, msg->offset, dr_strerror(err), dropped);
                } else {
                    s->stats.imported++;
                    s->stats.items_imported += applied;
                    s->stats.items_skipped += skipped;
                }
            }
            rd_kafka_message_destroy(msg);
        }
    }
}
