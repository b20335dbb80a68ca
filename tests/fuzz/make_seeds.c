/* make_seeds.c - writes the seed corpora of the fuzz targets, generated from
 * the current encoders so that they never go stale: OUTDIR/event/ (events
 * with both framings, a record of the registered writer schema, a catalog
 * record, a list) and OUTDIR/user/ (user records of versions 1, 2 and the
 * current one, one with a full ring of 64 recent events, an item record and
 * a globals record; in rating mode a user with the rating blend's part and
 * its content statistics, the globals with its global stage, an item with
 * its rating sums and a model-topic message). Usage: fuzz_seeds OUTDIR */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dr_bytes.h"
#include "dr_codec.h"
#include "dr_learner.h"
#include "fuzz_schemas.h"

static const char *outdir;
static int failures;

static void put(const char *sub, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) failures++;
    if (f && fclose(f) != 0) failures++;
}

/* A tiny Avro binary writer for the writer-schema record. */
typedef struct { uint8_t b[256]; size_t n; } raw_t;
static void raw_long(raw_t *r, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) { r->b[r->n++] = (uint8_t)(z | 0x80); z >>= 7; }
    r->b[r->n++] = (uint8_t)z;
}
static void raw_str(raw_t *r, const char *s) {
    raw_long(r, (int64_t)strlen(s));
    memcpy(r->b + r->n, s, strlen(s));
    r->n += strlen(s);
}

static void event_seeds(void) {
    char err[256];
    dr_codec_conf_t conf;
    dr_codec_t *c[2] = {NULL, NULL};
    dr_buf_t buf = {0};
    dr_codec_conf_default(&conf);
    if (dr_codec_new(&c[0], &conf, err, sizeof err)) { failures++; return; }
    conf.framing = DR_FRAMING_PLAIN;
    if (dr_codec_new(&c[1], &conf, err, sizeof err)) { failures++; dr_codec_free(c[0]); return; }
    const dr_event_t events[] = {{1, 2, DR_EV_CLICK, 0, 1767225600000LL},
                                 {123456789, 987654321, DR_EV_DWELL, 12.5f, 1700000000000LL},
                                 {7, 0, DR_EV_RATE, 4.5f, 0}};
    for (int f = 0; f < 2; f++)
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
            char name[32];
            snprintf(name, sizeof name, "%s-%zu", f ? "plain" : "confluent", i);
            if (dr_codec_encode_event(c[f], &events[i], &buf)) failures++;
            else put("event", name, buf.data, buf.len);
        }
    float e[4] = {0.5f, -1, 2, 0};
    dr_item_rec_t item = {11, e, 4, false, true, -1, -1, -1};
    if (dr_codec_encode_item(c[0], &item, &buf)) failures++;
    else put("event", "item", buf.data, buf.len);
    dr_scored_item_t its[3] = {{5, 0.9f}, {6, 0.5f}, {7, -0.1f}};
    dr_recs_t recs = {3, its, 3, 1767225600000LL, 2, true, {1, 99}};
    if (dr_codec_encode_recs(c[0], &recs, &buf)) failures++;
    else put("event", "recs", buf.data, buf.len);
    /* the writer schema: frame, user, country "FR", item (int), type SAVE
     * (a symbol we lack: refused by name), value, timestamp, session "s",
     * context {k: v}, tags ["t"], score 0.0; and the same as CLICK */
    for (int sym = 0; sym < 2; sym++) {
        raw_t r = {{0, 0, 0, 0, FUZZ_WRITER_ID}, 5};
        raw_long(&r, 5); raw_long(&r, 1); raw_str(&r, "FR"); raw_long(&r, 6);
        raw_long(&r, sym ? 9 : 1); r.b[r.n++] = 0; r.b[r.n++] = 0; r.b[r.n++] = 0x60; r.b[r.n++] = 0x40;
        raw_long(&r, 1000); raw_long(&r, 1); raw_str(&r, "s");
        raw_long(&r, 1); raw_long(&r, 1); raw_str(&r, "k"); raw_str(&r, "v"); raw_long(&r, 0);
        raw_long(&r, 1); raw_str(&r, "t"); raw_long(&r, 0);
        memset(r.b + r.n, 0, 8);
        r.n += 8;
        put("event", sym ? "writer-unknown-symbol" : "writer", r.b, r.n);
    }
    dr_buf_free(&buf);
    dr_codec_free(c[0]);
    dr_codec_free(c[1]);
}

static int put_item(void *ctx, int64_t item_id, const void *rec, size_t len) {
    (void)ctx;
    char name[32];
    snprintf(name, sizeof name, "item-%lld", (long long)item_id);
    put("user", name, rec, len);
    return 1; /* one is enough */
}

static int put_rated_item(void *ctx, int64_t item_id, const void *rec, size_t len) {
    (void)ctx;
    (void)item_id;
    put("user", "item-rated", rec, len);
    return 1; /* one is enough */
}

/* Rating mode's records and a model-topic message ("DRS3"), from a model
 * with sharing and a catalog of 4 genres on that learned 40 ratings. */
static void rating_seeds(const dr_learner_conf_t *base) {
    char err[256];
    dr_learner_conf_t rc = *base;
    rc.mode = DR_MODE_RATING;
    rc.content_dim = 4; /* genres: the user's content statistics (fuzz_user_state's small conf) */
    dr_model_t *m = NULL;
    dr_user_t *u = dr_user_new_conf(43, &rc);
    dr_apply_result_t res;
    uint8_t *rec;
    size_t len, n;
    if (dr_model_new(&m, &rc, err, sizeof err) != 0 || !u || dr_model_sync_enable(m) != 0) {
        failures++;
    } else {
        for (int i = 0; i < 7; i++) {
            float genres[4] = {0};
            genres[i % 4] = 1.0f;
            if (dr_model_set_item_content(m, 10 + i, genres, 4)) failures++;
        }
        for (int i = 0; i < 40; i++) {
            dr_event_t ev = {43, 10 + i % 7, DR_EV_RATE, (float)(1 + i % 5), 60000LL * i};
            if (dr_learner_apply(m, u, &ev, (uint64_t)i, &res)) failures++;
        }
        if (dr_user_encode(u, rc.dim, &rec, &len) == 0) put("user", "user-rating", rec, len), free(rec);
        else failures++;
        if (dr_model_encode_globals(m, &rec, &len) == 0) put("user", "globals-rating", rec, len), free(rec);
        else failures++;
        if (dr_model_sync_export(m, 100, &rec, &len, &n) == 0) put("user", "model-topic-message", rec, len), free(rec);
        else failures++;
        (void)dr_model_drain_dirty_items(m, put_rated_item, NULL);
    }
    dr_user_free(u);
    dr_model_free(m);
}

static void user_seeds(void) {
    char err[256];
    dr_learner_conf_t conf;
    dr_model_t *m;
    dr_learner_conf_default(&conf);
    if (dr_model_new(&m, &conf, err, sizeof err)) { failures++; return; }
    dr_user_t *u = dr_user_new_conf(42, &conf);
    dr_apply_result_t res;
    for (int i = 0; u && i < 60; i++) {
        dr_event_t ev = {42, 10 + i % 9, i % 4 ? DR_EV_CLICK : DR_EV_IMPRESSION, 0, 1000LL * i};
        if (dr_learner_apply(m, u, &ev, (uint64_t)i, &res)) failures++;
    }
    if (!u) { failures++; dr_model_free(m); return; }
    u->last_list_len = 2;
    u->last_list[0] = 11;
    u->last_list[1] = 12;
    u->last_list_score[0] = 0.75f;
    uint8_t *rec;
    size_t len;
    if (dr_user_encode(u, conf.dim, &rec, &len) == 0) {
        put("user", "user-v3", rec, len);
        rec[0] = 2; /* version 2: the same without the scores of the last list */
        put("user", "user-v2", rec, len - 4 * u->last_list_len);
        free(rec);
    } else {
        failures++;
    }
    /* a full head of the last list and a partition: what the withdrawal
     * sweep reads without decoding (dr_user_record_last_list) */
    u->last_source.partition = 3;
    u->last_list_len = DR_LAST_LIST;
    for (int i = 0; i < DR_LAST_LIST; i++) u->last_list[i] = 100 + i;
    if (dr_user_encode(u, conf.dim, &rec, &len) == 0) {
        put("user", "user-full-list", rec, len);
        free(rec);
    } else {
        failures++;
    }
    /* version 1: no detector, no scores (dimension 32, empty rings) */
    uint8_t v1[64 + 32 * 4];
    dr_writer_t w = {v1, 0, sizeof v1, true};
    dr_put_u8(&w, 1); dr_put_u16(&w, (uint16_t)conf.dim); dr_put_u64(&w, 3); dr_put_i64(&w, 1000);
    dr_put_u32(&w, 0); dr_put_i64(&w, 7); dr_put_f32(&w, 0.25f);
    dr_put_u8(&w, 0); dr_put_u8(&w, 0); dr_put_u8(&w, 0); dr_put_u8(&w, 0);
    for (int k = 0; k < conf.dim; k++) dr_put_f32(&w, 0.01f * (float)k);
    put("user", "user-v1", v1, w.len);
    /* a full ring of 64 recent events, head mid-ring: what a restart with a
     * smaller learner.recent.items must cut down to its newest entries */
    dr_learner_conf_t conf64 = conf;
    conf64.recent_items = DR_RECENT_MAX;
    dr_model_t *m64 = NULL;
    dr_user_t *u64 = dr_user_new_conf(42, &conf64);
    if (dr_model_new(&m64, &conf64, err, sizeof err) == 0 && u64) {
        for (int i = 0; i < DR_RECENT_MAX + 6; i++) {
            dr_event_t ev = {42, 10 + i % 9, i % 4 ? DR_EV_CLICK : DR_EV_DWELL, 20.0f, 1000LL * i};
            if (dr_learner_apply(m64, u64, &ev, (uint64_t)i, &res)) failures++;
        }
    }
    if (m64 && u64 && dr_user_encode(u64, conf.dim, &rec, &len) == 0) {
        put("user", "user-ring64", rec, len);
        free(rec);
    } else {
        failures++;
    }
    dr_model_free(m64);
    dr_user_free(u64);
    (void)dr_model_drain_dirty_items(m, put_item, NULL);
    if (dr_model_encode_globals(m, &rec, &len) == 0) {
        put("user", "globals", rec, len);
        free(rec);
    }
    dr_user_free(u);
    dr_model_free(m);
    rating_seeds(&conf);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    const char *subs[] = {"", "/event", "/user"};
    for (int i = 0; i < 3; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s", outdir, subs[i]);
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            perror(path);
            return 1;
        }
    }
    event_seeds();
    user_seeds();
    if (failures) fprintf(stderr, "fuzz_seeds: %d seeds could not be written\n", failures);
    return failures ? 1 : 0;
}
