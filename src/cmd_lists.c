/* cmd_lists.c - `driftrec lists`: what the recommendations topic holds, read
 * from its beginning to its current end with a plain consumer (no group, no
 * committed offsets): every list, or with --last the newest message of each
 * user, as a consumer of the topic should take it: fenced by owner epoch (a
 * zombie's list after the new owner's is skipped; compaction would keep it).
 * For operators ("what did we publish for this user?") and for the crash
 * tests, which compare the last list of every user after restarts with an
 * uninterrupted run's. */
#include "dr_cmd_lists.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "dr_bytes.h"
#include "dr_codec.h"
#include "dr_config.h"
#include "dr_epoch.h"
#include "dr_err.h"
#include "dr_ingest.h"
#include "dr_log.h"

#define MAX_LIST 10000 /* emit.topk's bound */

/* What a line says of one message: a list (source position, length) or a
 * tombstone (an erased user). */
typedef struct last_msg {
    int64_t user_id;
    int32_t partition;
    int64_t offset;
    bool tombstone;
    int64_t epoch; /* its writer's owner epoch (dr.epoch; 0: none) */
    dr_source_pos_t source;
    size_t n_items;
    int64_t *ids; /* with --items: the list's item ids (owned) */
} last_msg_t;

typedef struct lists {
    bool last;
    bool items; /* print the item ids too */
    last_msg_t *msgs; /* with --last: one per user, in order of first sight */
    size_t n, cap;
    uint64_t fenced;  /* with --last: messages of a lower epoch than the user's kept one */
    /* user id -> index into msgs, open addressing, -1 = empty */
    int64_t *slot_id;
    size_t *slot_idx, n_slots;
} lists_t;

static void print_msg(const last_msg_t *m) {
    if (m->tombstone) {
        printf("%" PRId64 " %d %" PRId64 " tombstone\n", m->user_id, m->partition, m->offset);
        return;
    }
    printf("%" PRId64 " %d %" PRId64 " source=%d:%" PRId64 " items=%zu", m->user_id, m->partition,
           m->offset, m->source.partition, m->source.offset, m->n_items);
    for (size_t k = 0; m->ids && k < m->n_items; k++) printf("%s%" PRId64, k ? "," : " ids=", m->ids[k]);
    printf("\n");
}

static int grow_slots(lists_t *l) {
    size_t n = l->n_slots ? l->n_slots * 2 : 1024;
    int64_t *ids = malloc(n * sizeof(*ids));
    size_t *idx = malloc(n * sizeof(*idx));
    if (!ids || !idx) {
        free(ids);
        free(idx);
        return DR_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) ids[i] = -1;
    for (size_t k = 0; k < l->n; k++) {
        size_t i = dr_mix64((uint64_t)l->msgs[k].user_id) & (n - 1);
        while (ids[i] >= 0) i = (i + 1) & (n - 1);
        ids[i] = l->msgs[k].user_id;
        idx[i] = k;
    }
    free(l->slot_id);
    free(l->slot_idx);
    l->slot_id = ids;
    l->slot_idx = idx;
    l->n_slots = n;
    return 0;
}

/* Keeps m as its user's newest message, unless the kept one has a higher
 * epoch: m then comes from a former owner of the user's partition that did
 * not know it had lost it (a zombie), and is fenced. Returns 1 when m was
 * fenced (the caller still owns its ids). */
static int keep_last(lists_t *l, const last_msg_t *m) {
    if ((l->n + 1) * 2 > l->n_slots && grow_slots(l)) return DR_ENOMEM;
    size_t i = dr_mix64((uint64_t)m->user_id) & (l->n_slots - 1);
    for (; l->slot_id[i] >= 0; i = (i + 1) & (l->n_slots - 1))
        if (l->slot_id[i] == m->user_id) {
            last_msg_t *kept = &l->msgs[l->slot_idx[i]];
            if (m->epoch < kept->epoch) {
                l->fenced++;
                return 1;
            }
            free(kept->ids);
            *kept = *m;
            return 0;
        }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        last_msg_t *v = realloc(l->msgs, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        l->msgs = v;
        l->cap = cap;
    }
    l->slot_id[i] = m->user_id;
    l->slot_idx[i] = l->n;
    l->msgs[l->n++] = *m;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: driftrec lists [--last] [--items] [--config FILE] [--set key=value]...\n"
               "Prints the messages of the recommendations topic (topic.recommendations at\n"
               "kafka.bootstrap.servers), from its beginning to its current end, one line each:\n"
               "  USER PARTITION OFFSET source=SOURCE_PARTITION:SOURCE_OFFSET items=N\n"
               "  USER PARTITION OFFSET tombstone          (an erased user)\n"
               "SOURCE is the input position of the newest event the list reflects. With --last,\n"
               "only the newest message of each user (what a compacted topic keeps), fenced: a\n"
               "message whose owner epoch (header dr.epoch) is below that of an earlier one of\n"
               "the same user came from a former owner of its partition and is skipped (the count\n"
               "goes to stderr). With --items, each list's item ids follow, best first: ids=ID,ID,...\n");
}

/* Partition p is read: its end as of the start was reached, or its EOF
 * came (the end, even where compaction left a gap before it). */
static void finish_partition(bool *done, int32_t p, int *open) {
    if (done[p]) return;
    done[p] = true;
    (*open)--;
}

/* Reads every partition of the topic from the beginning to its end as of
 * the start (the high watermarks then), decoding each message. */
static int read_all(rd_kafka_t *rk, const dr_config_t *cfg, dr_codec_t *codec, lists_t *l) {
    int parts;
    char why[600] = "";
    int err = dr_ingest_topic_partitions_err(rk, cfg->topic_recs, 10000, &parts, why, sizeof(why));
    if (err) {
        fprintf(stderr, "driftrec lists: %s: nothing was read (topic %s)\n", why[0] ? why : dr_strerror(err),
                cfg->topic_recs);
        return 1;
    }
    if (parts < 0) parts = 0; /* no such topic: no lists */
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(parts);
    int64_t *end = calloc((size_t)(parts > 0 ? parts : 1), sizeof(*end));
    bool *done = calloc((size_t)(parts > 0 ? parts : 1), sizeof(*done));
    int open = 0, rc = 0;
    for (int p = 0; p < parts && end; p++) {
        int64_t lo = 0, hi = 0;
        if (dr_ingest_watermarks(rk, cfg->topic_recs, p, &lo, &hi, 10000)) {
            fprintf(stderr, "driftrec lists: cannot read the end of %s [%d]\n", cfg->topic_recs, p);
            rc = 1;
            break;
        }
        end[p] = hi;
        if (hi > lo) {
            rd_kafka_topic_partition_list_add(assign, cfg->topic_recs, p)->offset = lo;
            open++;
        }
    }
    if (!end || !done) rc = 1;
    if (!rc && open > 0 && rd_kafka_assign(rk, assign) != RD_KAFKA_RESP_ERR_NO_ERROR) rc = 1;
    rd_kafka_topic_partition_list_destroy(assign);
    dr_scored_item_t *items = malloc(MAX_LIST * sizeof(*items));
    if (!items) rc = 1;
    int64_t idle_since = dr_mono_ms();
    while (!rc && open > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) {
            if (dr_mono_ms() - idle_since > 30000) {
                fprintf(stderr, "driftrec lists: nothing arrived for 30 s, %d partitions unfinished\n", open);
                rc = 1;
            }
            continue;
        }
        idle_since = dr_mono_ms();
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                fprintf(stderr, "driftrec lists: %s\n", rd_kafka_message_errstr(m));
                rc = 1;
            } else {
                finish_partition(done, m->partition, &open);
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        last_msg_t lm = {.user_id = -1, .partition = m->partition, .offset = m->offset, .epoch = dr_epoch_of(m)};
        char reason[256];
        dr_recs_t recs;
        if (!m->payload) {
            lm.tombstone = true; /* its key is all it says: -1 when that is no user id */
            dr_ingest_user_key(m, &lm.user_id);
        } else if (dr_codec_decode_recs(codec, m->payload, m->len, &recs, items, MAX_LIST, reason,
                                        sizeof(reason)) == 0) {
            lm.user_id = recs.user_id;
            lm.source = recs.source;
            lm.n_items = recs.n_items;
            if (l->items && recs.n_items > 0) {
                if (!(lm.ids = malloc(recs.n_items * sizeof(*lm.ids)))) rc = 1;
                for (size_t k = 0; lm.ids && k < recs.n_items; k++) lm.ids[k] = items[k].item_id;
            }
        } else {
            fprintf(stderr, "driftrec lists: %s [%d] offset %" PRId64 ": %s\n", cfg->topic_recs,
                    m->partition, m->offset, reason);
            rc = 1;
        }
        if (!rc && m->offset < end[m->partition] && l->last) {
            int kept = keep_last(l, &lm);
            if (kept < 0) rc = 1;
            else if (kept == 0) lm.ids = NULL; /* kept */
        } else if (!rc && m->offset < end[m->partition]) {
            print_msg(&lm);
        }
        free(lm.ids);
        /* a partition is read once its end as of the start is reached (later
         * lists may follow: they are left for the next look) */
        if (m->offset + 1 >= end[m->partition]) finish_partition(done, m->partition, &open);
        rd_kafka_message_destroy(m);
    }
    free(items);
    free(end);
    free(done);
    return rc;
}

int dr_cmd_lists(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"set", required_argument, 0, 's'},
                                         {"last", no_argument, 0, 'l'},
                                         {"items", no_argument, 0, 'i'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char err[1024];
    lists_t l = {0};
    dr_config_t *cfg = malloc(sizeof(*cfg));
    if (!cfg) return 1;
    dr_config_default(cfg);
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "c:s:lih", opts, NULL)) != -1) {
        if (c == 'c') rc = dr_config_load_file(cfg, optarg, err, sizeof(err)) ? 2 : 0;
        else if (c == 's') rc = dr_config_set_pair(cfg, optarg, err, sizeof(err)) ? 2 : 0;
        else if (c == 'l') l.last = true;
        else if (c == 'i') l.items = true;
        else { usage(c == 'h' ? stdout : stderr); free(cfg); return c == 'h' ? 0 : 2; }
        if (rc) fprintf(stderr, "driftrec lists: %s\n", err);
    }
    if (!rc && optind < argc) {
        usage(stderr);
        rc = 2;
    }
    if (!rc && dr_config_finish(cfg, err, sizeof(err))) {
        fprintf(stderr, "driftrec lists: %s\n", err);
        rc = 2;
    }
    if (rc) {
        free(cfg);
        return rc;
    }
    static const char *const defaults[][2] = {{"group.id", "driftrec-lists"},
                                              {"enable.auto.commit", "false"},
                                              {"enable.partition.eof", "true"}};
    const char **keys = NULL, **vals = NULL;
    rd_kafka_conf_t *kc = dr_config_kafka_arrays(cfg, &keys, &vals) == 0
                              ? dr_ingest_kafka_conf(defaults, 3, keys, vals, cfg->n_kafka, err, sizeof(err))
                              : NULL;
    rd_kafka_t *rk = kc ? rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err)) : NULL;
    dr_codec_t *codec = NULL;
    if (!rk) {
        if (kc) rd_kafka_conf_destroy(kc);
        fprintf(stderr, "driftrec lists: %s\n", err);
        rc = 1;
    } else if (dr_codec_new(&codec, &cfg->codec, err, sizeof(err))) {
        fprintf(stderr, "driftrec lists: %s\n", err);
        rc = 1;
    } else {
        rc = read_all(rk, cfg, codec, &l);
        for (size_t i = 0; !rc && i < l.n; i++) print_msg(&l.msgs[i]);
        if (!rc && l.fenced)
            fprintf(stderr, "driftrec lists: %" PRIu64 " messages of a former owner fenced (a lower dr.epoch than an earlier message of their user)\n",
                    l.fenced);
    }
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    dr_codec_free(codec);
    free(keys);
    free(vals);
    for (size_t i = 0; i < l.n; i++) free(l.msgs[i].ids);
    free(l.msgs);
    free(l.slot_id);
    free(l.slot_idx);
    free(cfg);
    return rc;
}
