/* changelog.c - writing a partition's user records and commit markers to
 * the changelog topic, and restoring a partition's users from it (the
 * format and its guarantees are in dr_handoff.h). */
#include "dr_handoff.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dr_epoch.h"
#include "dr_key.h"
#include "dr_err.h"
#include "dr_ingest.h"
#include "dr_log.h"
#include "dr_types.h"
#include "handoff_internal.h"

/* Users written to the store per batch while restoring. */
#define RESTORE_BATCH 20000
#define RESTORE_PROGRESS_S 5.0

struct dr_changelog {
    rd_kafka_t *producer;      /* borrowed */
    rd_kafka_t *reader;        /* created at the first restore */
    char *topic;
    char *epoch_topic;         /* "<topic>#epoch": where a store keeps its epochs */
    const char *const *kafka_keys, *const *kafka_values; /* borrowed */
    int n_kafka;
    const atomic_bool *cancel; /* set: a restore under way stops (a standby's) */
};

int dr_changelog_new(dr_changelog_t **out, rd_kafka_t *producer, const char *topic,
                     const char *const *kafka_keys, const char *const *kafka_values, int n_kafka,
                     char *errstr, size_t n) {
    *out = NULL;
    dr_changelog_t *c = calloc(1, sizeof(*c));
    size_t tlen = strlen(topic);
    if (!c || !(c->topic = strdup(topic)) || !(c->epoch_topic = malloc(tlen + sizeof("#epoch")))) {
        if (c) free(c->topic);
        free(c);
        snprintf(errstr, n, "out of memory");
        return DR_ENOMEM;
    }
    memcpy(c->epoch_topic, topic, tlen);
    memcpy(c->epoch_topic + tlen, "#epoch", sizeof("#epoch"));
    c->producer = producer;
    c->kafka_keys = kafka_keys;
    c->kafka_values = kafka_values;
    c->n_kafka = n_kafka;
    *out = c;
    return 0;
}

void dr_changelog_free(dr_changelog_t *c) {
    if (!c) return;
    dr__handoff_reader_free(c->reader);
    free(c->topic);
    free(c->epoch_topic);
    free(c);
}

const char *dr_changelog_topic(const dr_changelog_t *c) { return c->topic; }

void dr__changelog_set_cancel(dr_changelog_t *c, const atomic_bool *cancel) { c->cancel = cancel; }

int dr_changelog_check(dr_changelog_t *c, const char *events_topic, int timeout_ms, char *errstr,
                       size_t n) {
    int events = -1, changelog = -1;
    if (dr_ingest_topic_partitions(c->producer, events_topic, timeout_ms, &events) ||
        dr_ingest_topic_partitions(c->producer, c->topic, timeout_ms, &changelog)) {
        snprintf(errstr, n, "cannot read the metadata of %s and %s within %d ms", events_topic,
                 c->topic, timeout_ms);
        return DR_EKAFKA;
    }
    if (events < 0) return 0; /* the events topic is checked where it is consumed */
    if (changelog < events) {
        snprintf(errstr, n,
                 "the changelog topic %s %s; create it with %d partitions (as %s) and cleanup.policy=compact "
                 "(`driftrec topics` prints the command), or set topic.changelog=- to run without one "
                 "(a single instance, no handover)",
                 c->topic, changelog < 0 ? "does not exist" : "has fewer partitions than the events topic",
                 events, events_topic);
        return DR_ECONFIG;
    }
    return 0;
}

static int produce(dr_changelog_t *c, int32_t partition, int64_t epoch, const char *key,
                   size_t klen, const void *val, size_t len, void *opaque, int wait_ms) {
    int64_t deadline = dr_mono_ms() + wait_ms;
    for (;;) {
        /* producev takes the headers only when it succeeds */
        rd_kafka_headers_t *h = dr_epoch_headers(epoch);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            c->producer, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
        rd_kafka_headers_destroy(h);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            dr_log(DR_LOG_ERROR, "handoff", "cannot produce to the changelog | topic=%s partition=%d err=%s",
                   c->topic, (int)partition, rd_kafka_err2str(err));
            return DR_EKAFKA;
        }
        if (dr_mono_ms() >= deadline) return DR_EFULL;
        rd_kafka_poll(c->producer, 10);
    }
}

int dr_changelog_put(dr_changelog_t *c, int32_t partition, int64_t epoch, int64_t user_id,
                     const void *rec, size_t len, void *opaque, int wait_ms) {
    char key[DR_ID_KEY_MAX];
    size_t klen = dr_id_key(key, user_id);
    return produce(c, partition, epoch, key, klen, rec, rec ? len : 0, opaque, wait_ms);
}

int dr_changelog_mark(dr_changelog_t *c, int32_t partition, int64_t epoch, int64_t next_offset,
                      void *opaque, int wait_ms) {
    uint8_t val[8];
    dr_be64_put(val, (uint64_t)next_offset);
    return produce(c, partition, epoch, DR_CHANGELOG_MARKER_KEY, strlen(DR_CHANGELOG_MARKER_KEY),
                   val, sizeof(val), opaque, wait_ms);
}

int64_t dr_changelog_next_epoch(int64_t seen) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if (seen < now_us) return now_us;
    /* a hostile or corrupt epoch at the top of the range: ours equals it
     * (equal epochs do not fence each other) rather than overflow */
    return seen < INT64_MAX ? seen + 1 : INT64_MAX;
}

void dr_changelog_batch_position(dr_changelog_t *c, dr_state_batch_t *b, int32_t partition,
                                 int64_t pos, int64_t epoch) {
    dr_state_batch_put_offset(b, c->topic, partition, pos);
    dr_state_batch_put_offset(b, c->epoch_topic, partition, epoch);
}

void dr_changelog_stored_position(dr_changelog_t *c, dr_state_t *st, int32_t partition,
                                  int64_t *pos, int64_t *epoch) {
    if (dr_state_get_offset(st, c->topic, partition, pos) != 0) *pos = -1;
    if (dr_state_get_offset(st, c->epoch_topic, partition, epoch) != 0) *epoch = 0;
}

/* ---- restoring ------------------------------------------------------------ */

void dr_restore_clear(dr_restore_t *r) {
    free(r->orphans);
    memset(r, 0, sizeof(*r));
    r->marker_offset = r->marker_pos = -1;
}

int dr__handoff_reader(rd_kafka_t **out, const char *name, const char *fetch_wait_ms,
                       const char *const *kafka_keys, const char *const *kafka_values, int n_kafka,
                       const char *what, char *errstr, size_t n) {
    const char *const defaults[][2] = {
        {"enable.auto.commit", "false"}, {"enable.partition.eof", "false"},
        {"auto.offset.reset", "earliest"}, {"fetch.wait.max.ms", fetch_wait_ms},
        {"client.id", name}};
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(defaults, sizeof(defaults) / sizeof(defaults[0]),
                                               kafka_keys, kafka_values, n_kafka, errstr, n);
    if (!kc) return DR_ECONFIG;
    char e[512];
    if (rd_kafka_conf_set(kc, "group.id", name, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, n, "%s: %s", what, e);
        return DR_ECONFIG;
    }
    if (!(*out = rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof(e)))) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, n, "creating the %s: %s", what, e);
        return DR_EKAFKA;
    }
    rd_kafka_poll_set_consumer(*out);
    return 0;
}

void dr__handoff_reader_free(rd_kafka_t *reader) {
    if (!reader) return;
    rd_kafka_consumer_close(reader);
    rd_kafka_destroy(reader);
}

static int make_reader(dr_changelog_t *c, char *errstr, size_t n) {
    if (c->reader) return 0;
    return dr__handoff_reader(&c->reader, "driftrec-restore", "10", c->kafka_keys, c->kafka_values,
                              c->n_kafka, "changelog reader", errstr, n);
}

/* The records since the last marker seen, not yet known to be complete. */
typedef struct staged {
    int64_t user_id;
    uint8_t *val; /* NULL: tombstone */
    size_t len;
} staged_t;

typedef struct scan {
    dr_changelog_t *c;
    dr_state_t *st;             /* NULL: only find the last marker and the orphans */
    dr_state_batch_t *batch;
    const char *events_topic;
    int32_t partition;
    staged_t *staged;
    size_t n_staged, cap_staged;
    dr_restore_t *r;
    char *errstr;
    size_t errstr_size;
} scan_t;

static void clear_staged(scan_t *s) {
    for (size_t i = 0; i < s->n_staged; i++) free(s->staged[i].val);
    s->n_staged = 0;
}

/* Writes the batch; with next_offset >= 0 also the partition's position:
 * the next events offset and the changelog position it was restored to. */
static int write_batch(scan_t *s, int64_t next_offset) {
    if (next_offset >= 0) {
        dr_state_batch_put_offset(s->batch, s->events_topic, s->partition, next_offset);
        dr_changelog_batch_position(s->c, s->batch, s->partition, s->r->marker_pos, s->r->epoch);
    }
    int err = dr_state_write(s->st, s->batch, s->errstr, s->errstr_size);
    dr_state_batch_free(s->batch);
    s->batch = err ? NULL : dr_state_batch_new();
    if (!err && !s->batch) err = DR_ENOMEM;
    return err;
}

/* A marker: the records staged before it are complete. */
static int on_marker(scan_t *s, int64_t next_offset, int64_t changelog_offset) {
    s->r->marker_offset = next_offset;
    s->r->marker_pos = changelog_offset + 1;
    if (s->st) {
        for (size_t i = 0; i < s->n_staged; i++) {
            staged_t *e = &s->staged[i];
            if (e->val) dr_state_batch_put_user(s->batch, s->partition, e->user_id, e->val, e->len);
            else dr_state_batch_delete_user(s->batch, s->partition, e->user_id);
            s->r->users++;
        }
        /* the offset is written only with the last batch: a restore cut short
         * leaves the partition behind, and the next one starts over */
        if (dr_state_batch_count(s->batch) >= RESTORE_BATCH) {
            int err = write_batch(s, -1);
            if (err) return err;
        }
    }
    clear_staged(s);
    return 0;
}

static int stage(scan_t *s, int64_t user_id, const void *val, size_t len) {
    if (s->n_staged == s->cap_staged) {
        size_t cap = s->cap_staged ? s->cap_staged * 2 : 1024;
        staged_t *v = realloc(s->staged, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        s->staged = v;
        s->cap_staged = cap;
    }
    staged_t *e = &s->staged[s->n_staged];
    e->user_id = user_id;
    e->val = NULL;
    e->len = len;
    if (val && s->st) { /* only a restore needs the bytes */
        if (!(e->val = malloc(len ? len : 1))) return DR_ENOMEM;
        memcpy(e->val, val, len);
    }
    s->n_staged++;
    return 0;
}

static int on_message(scan_t *s, const rd_kafka_message_t *m) {
    s->r->records++;
    s->r->bytes += m->key_len + m->len;
    int64_t epoch = dr_epoch_of(m);
    if (epoch < s->r->epoch) { /* a superseded owner's: fenced off */
        s->r->fenced++;
        return 0;
    }
    if (epoch > s->r->epoch) {
        /* a new owner: what the old one left unfinished never will be */
        s->r->fenced += s->n_staged;
        clear_staged(s);
        s->r->epoch = epoch;
    }
    int64_t id;
    if (m->key_len == strlen(DR_CHANGELOG_MARKER_KEY) &&
        memcmp(m->key, DR_CHANGELOG_MARKER_KEY, m->key_len) == 0) {
        if (!m->payload || m->len != 8) return 0; /* not ours: ignored */
        return on_marker(s, (int64_t)dr_be64_get(m->payload), m->offset);
    }
    if (!dr_ingest_user_key(m, &id)) return 0;
    return stage(s, id, m->payload, m->len);
}

/* Reads [lo, hi) of the partition. */
static int scan_partition(scan_t *s, int64_t lo, int64_t hi, int timeout_ms) {
    dr_changelog_t *c = s->c;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, c->topic, s->partition)->offset = lo;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(c->reader, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (kerr) {
        snprintf(s->errstr, s->errstr_size, "reading %s [%d]: %s", c->topic, (int)s->partition,
                 rd_kafka_err2str(kerr));
        return DR_EKAFKA;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(c->reader);
    rd_kafka_message_t *batch[1024];
    int64_t next = lo;
    int err = 0;
    double start = dr_mono_s(), last_log = start;
    int64_t deadline = dr_mono_ms() + timeout_ms;
    while (!err && next < hi) {
        if (c->cancel && atomic_load(c->cancel)) {
            snprintf(s->errstr, s->errstr_size, "reading %s [%d]: cancelled at offset %" PRId64,
                     c->topic, (int)s->partition, next);
            err = DR_ESTOPPED;
            break;
        }
        if (dr_mono_ms() > deadline) {
            snprintf(s->errstr, s->errstr_size, "reading %s [%d]: at offset %" PRId64 " of %" PRId64
                     " after %d ms", c->topic, (int)s->partition, next, hi, timeout_ms);
            err = DR_EKAFKA;
            break;
        }
        ssize_t got = rd_kafka_consume_batch_queue(q, 10, batch, 1024);
        for (ssize_t i = 0; i < got; i++) {
            rd_kafka_message_t *m = batch[i];
            if (!err && m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->partition == s->partition &&
                m->offset >= next) {
                next = m->offset + 1;
                if (m->offset < hi) err = on_message(s, m);
                deadline = dr_mono_ms() + timeout_ms; /* progress: the clock starts again */
            } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                dr_log(DR_LOG_WARN, "handoff", "reading the changelog | topic=%s partition=%d err=%s",
                       c->topic, (int)s->partition, rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
        }
        double now = dr_mono_s();
        if (now - last_log >= RESTORE_PROGRESS_S) {
            last_log = now;
            dr_log(DR_LOG_INFO, "handoff", "restoring | topic=%s partition=%d read=%" PRId64 " of=%" PRId64 " seconds=%.1f",
                   c->topic, (int)s->partition, next - lo, hi - lo, now - start);
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_assign(c->reader, NULL);
    return err;
}

int dr_changelog_restore(dr_changelog_t *c, dr_state_t *st, const char *events_topic,
                         int32_t partition, int64_t local_next, int64_t local_pos,
                         int64_t local_epoch, int timeout_ms, dr_restore_t *r, char *errstr,
                         size_t n) {
    memset(r, 0, sizeof(*r)); /* r may be uninitialised */
    r->marker_offset = r->marker_pos = -1;
    double t0 = dr_mono_s();
    int err = make_reader(c, errstr, n);
    if (err) return err;
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t kerr = dr_ingest_watermarks(c->reader, c->topic, partition, &lo, &hi, timeout_ms);
    if (kerr) {
        snprintf(errstr, n, "the changelog %s [%d]: %s", c->topic, (int)partition, rd_kafka_err2str(kerr));
        return DR_EKAFKA;
    }
    r->log_start = lo;
    r->log_end = hi;
    scan_t s = {.c = c, .events_topic = events_topic, .partition = partition, .r = r,
                .errstr = errstr, .errstr_size = n};
    if (local_next >= 0 && local_pos >= lo && local_pos <= hi) {
        /* the store is the changelog's state at local_pos: only what came
         * after it is read, and applied on top when it holds a newer marker */
        r->incremental = true;
        r->marker_offset = local_next;
        r->marker_pos = local_pos;
        r->epoch = local_epoch; /* what the store read or wrote there fences what follows */
        if (local_pos < hi) {
            s.st = st;
            if (!(s.batch = dr_state_batch_new())) err = DR_ENOMEM;
            if (!err) err = scan_partition(&s, local_pos, hi, timeout_ms);
            if (!err && r->marker_pos > local_pos && r->marker_offset > local_next) {
                err = write_batch(&s, r->marker_offset);
                r->restored = err == 0;
            }
            dr_state_batch_free(s.batch);
        }
    } else if (hi > lo) {
        /* first the marker and the orphans; read again to restore, only when
         * the store is behind (a handover back to a former owner) or empty */
        err = local_next >= 0 ? scan_partition(&s, lo, hi, timeout_ms) : 0;
        if (!err && (local_next < 0 || r->marker_offset > local_next)) {
            clear_staged(&s);
            r->marker_offset = r->marker_pos = -1; /* records and bytes: both reads count */
            r->epoch = 0;
            r->fenced = 0;
            s.st = st;
            s.batch = dr_state_batch_new();
            if (!s.batch) err = DR_ENOMEM;
            else dr_state_batch_drop_partition(s.batch, partition);
            if (!err) err = scan_partition(&s, lo, hi, timeout_ms);
            if (!err && r->marker_offset >= 0) {
                err = write_batch(&s, r->marker_offset);
                r->restored = err == 0;
            }
            dr_state_batch_free(s.batch);
        }
    }
    /* what is still staged came after the last marker: an unfinished commit */
    if (!err && s.n_staged > 0) {
        r->orphans = malloc(s.n_staged * sizeof(*r->orphans));
        if (!r->orphans) err = DR_ENOMEM;
        for (size_t i = 0; !err && i < s.n_staged; i++) r->orphans[r->n_orphans++] = s.staged[i].user_id;
    }
    clear_staged(&s);
    free(s.staged);
    r->seconds = dr_mono_s() - t0;
    if (err == DR_ENOMEM && !errstr[0]) snprintf(errstr, n, "out of memory restoring");
    return err;
}
