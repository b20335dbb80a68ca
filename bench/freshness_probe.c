/* freshness_probe.c - how fresh driftrec's lists are, timed from outside the
 * pipeline (issue 18): produces UserEvent records at a steady rate to the
 * events topic and reads the recommendations topic; each list names the
 * newest event it reflects (source_partition, source_offset), so its delay is
 * its arrival time minus that event's produce time. Prints p50/p90/p99/max.
 *
 *   freshness_probe BOOTSTRAP EVENTS_TOPIC RECS_TOPIC RATE SECONDS [USERS] [WARMUP_S]
 *
 * Built and run by bench/freshness.sh. One process, two threads: the
 * producer (and its delivery reports, which say where each event landed)
 * and a consumer assigned every partition of the recommendations topic. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "dr_codec.h"
#include "dr_err.h"
#include "dr_log.h"

#define MAX_PARTITIONS 256
#define MAX_LIST 1000

/* Produce time of each delivered event, by partition and offset. */
typedef struct sent_log {
    pthread_mutex_t lock;
    double *at[MAX_PARTITIONS];
    int64_t cap[MAX_PARTITIONS];
} sent_log_t;

static sent_log_t sent = {.lock = PTHREAD_MUTEX_INITIALIZER};
static atomic_bool producing_done;

static void sent_put(int32_t p, int64_t off, double t) {
    if (p < 0 || p >= MAX_PARTITIONS || off < 0) return;
    pthread_mutex_lock(&sent.lock);
    if (off >= sent.cap[p]) {
        int64_t cap = sent.cap[p] ? sent.cap[p] : 4096;
        while (cap <= off) cap *= 2;
        double *a = realloc(sent.at[p], (size_t)cap * sizeof(double));
        if (a) {
            for (int64_t i = sent.cap[p]; i < cap; i++) a[i] = -1;
            sent.at[p] = a;
            sent.cap[p] = cap;
        }
    }
    if (off < sent.cap[p]) sent.at[p][off] = t;
    pthread_mutex_unlock(&sent.lock);
}

static double sent_get(int32_t p, int64_t off) {
    double t = -1;
    if (p < 0 || p >= MAX_PARTITIONS || off < 0) return -1;
    pthread_mutex_lock(&sent.lock);
    if (off < sent.cap[p]) t = sent.at[p][off];
    pthread_mutex_unlock(&sent.lock);
    return t;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    double *t = m->_private;
    if (!m->err) sent_put(m->partition, m->offset, *t);
    free(t);
}

typedef struct args {
    const char *bootstrap, *events, *recs;
    double rate, seconds, warmup;
    int64_t users;
} args_t;

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap, const char *const (*props)[2],
                          size_t n) {
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err);
    for (size_t i = 0; i < n; i++)
        if (rd_kafka_conf_set(c, props[i][0], props[i][1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "freshness_probe: %s\n", err);
            exit(2);
        }
    if (type == RD_KAFKA_PRODUCER) rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "freshness_probe: %s\n", err);
        exit(2);
    }
    return rk;
}

/* Steady rate: event k leaves at start + k / rate (no catching up in bursts
 * beyond what fell behind). */
static void *produce(void *arg) {
    const args_t *a = arg;
    /* a producer tuned for latency, as a feed's front end would be */
    static const char *const props[][2] = {{"linger.ms", "1"}, {"enable.idempotence", "true"}};
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, a->bootstrap, props, 2);
    dr_codec_t *codec = NULL;
    char err[256];
    if (dr_codec_new(&codec, NULL, err, sizeof err)) {
        fprintf(stderr, "freshness_probe: %s\n", err);
        exit(2);
    }
    dr_buf_t buf = {0};
    uint64_t x = 88172645463325252ULL;
    double start = dr_mono_s();
    int64_t total = (int64_t)(a->rate * a->seconds);
    for (int64_t k = 0; k < total; k++) {
        double due = start + (double)k / a->rate;
        while (dr_mono_s() < due) rd_kafka_poll(rk, 1);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        dr_event_t ev = {(int64_t)(x % (uint64_t)a->users) + 1, (int64_t)(x >> 40) % 5000 + 1,
                         DR_EV_CLICK, 0.0f, (int64_t)time(NULL) * 1000};
        if (dr_codec_encode_event(codec, &ev, &buf)) continue;
        char key[24];
        int klen = snprintf(key, sizeof key, "%" PRId64, ev.user_id);
        double *t = malloc(sizeof *t);
        *t = dr_mono_s();
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(a->events), RD_KAFKA_V_KEY(key, (size_t)klen),
                                 RD_KAFKA_V_VALUE(buf.data, buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 1);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 10000);
    atomic_store(&producing_done, true);
    dr_buf_free(&buf);
    dr_codec_free(codec);
    rd_kafka_destroy(rk);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: freshness_probe BOOTSTRAP EVENTS_TOPIC RECS_TOPIC RATE SECONDS [USERS] [WARMUP_S]\n");
        return 2;
    }
    args_t a = {argv[1], argv[2], argv[3], atof(argv[4]), atof(argv[5]), argc > 7 ? atof(argv[7]) : 2.0,
                argc > 6 ? atoll(argv[6]) : 100000};
    /* the measuring consumer must not add its own wait */
    static const char *const props[][2] = {{"group.id", "freshness-probe"}, {"fetch.wait.max.ms", "5"},
                                           {"enable.auto.commit", "false"}};
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, a.bootstrap, props, 3);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, a.recs, NULL);
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) || md->topic_cnt != 1 || md->topics[0].partition_cnt < 1) {
        fprintf(stderr, "freshness_probe: no metadata for %s\n", a.recs);
        return 1;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, a.recs, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_END;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);

    dr_codec_t *codec = NULL;
    char err[256];
    if (dr_codec_new(&codec, NULL, err, sizeof err)) return 1;
    pthread_t prod;
    double start = dr_mono_s();
    pthread_create(&prod, NULL, produce, &a);
    size_t cap = 1 << 20, n = 0, unknown = 0, lists = 0;
    double *delay = malloc(cap * sizeof *delay);
    /* lists whose source's delivery report was not seen yet: retried later */
    struct late { int32_t p; int64_t off; double at; } *late = malloc(cap * sizeof *late);
    size_t n_late = 0;
    dr_scored_item_t items[MAX_LIST];
    double quiet_since = 0;
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 5);
        double now = dr_mono_s();
        if (!m) {
            if (atomic_load(&producing_done)) {
                if (quiet_since == 0) quiet_since = now;
                if (now - quiet_since > 3.0) break; /* 3 s without a list after the last event */
            }
            continue;
        }
        quiet_since = 0;
        dr_recs_t r;
        if (!m->err && m->payload &&
            dr_codec_decode_recs(codec, m->payload, m->len, &r, items, MAX_LIST, NULL, 0) == 0) {
            lists++;
            double sent_at = sent_get(r.source.partition, r.source.offset);
            if (sent_at < 0 && n_late < cap) late[n_late++] = (struct late){r.source.partition, r.source.offset, now};
            else if (sent_at >= start + a.warmup && n < cap) delay[n++] = now - sent_at;
        }
        rd_kafka_message_destroy(m);
    }
    pthread_join(prod, NULL);
    for (size_t i = 0; i < n_late; i++) {
        double sent_at = sent_get(late[i].p, late[i].off);
        if (sent_at < 0) unknown++;
        else if (sent_at >= start + a.warmup && n < cap) delay[n++] = late[i].at - sent_at;
    }
    qsort(delay, n, sizeof *delay, cmp_double);
    if (n == 0) {
        printf("rate %.0f/s: no list matched an event (lists %zu)\n", a.rate, lists);
        return 1;
    }
#define PCT(q) (1000.0 * delay[(size_t)((double)(n - 1) * (q))])
    printf("rate %.0f/s for %.0f s: %zu lists timed (of %zu; %zu sources unknown): "
           "p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
           a.rate, a.seconds, n, lists, unknown, PCT(0.5), PCT(0.9), PCT(0.99), 1000.0 * delay[n - 1]);
    free(delay);
    free(late);
    dr_codec_free(codec);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
