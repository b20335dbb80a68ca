/* test_codec.c - proves the claims of schemas/dr_codec.h: round trips, schema
 * evolution through registered writer schemas, and that malformed or hostile
 * input gets a clean error with a reason (never a crash, leak or hang). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dr_codec.h"
#include "dr_err.h"

extern const char dr_schema_UserEvent[];
extern const char dr_schema_Recommendations[];
extern const char dr_schema_Item[];

/*------------------------------------------------------------------------
 * Helpers: codecs, and a tiny independent Avro binary writer for crafting
 * records (written from the Avro spec, not with Avro C).
 */

typedef struct bb {
    uint8_t b[8192];
    size_t n;
} bb_t;

static void bb_u8(bb_t *b, uint8_t x) {
    assert_true(b->n < sizeof b->b);
    b->b[b->n++] = x;
}

static void bb_long(bb_t *b, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z > 0x7f) {
        bb_u8(b, (uint8_t)((z & 0x7f) | 0x80));
        z >>= 7;
    }
    bb_u8(b, (uint8_t)z);
}

static void bb_float(bb_t *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++) bb_u8(b, (uint8_t)(u >> (8 * i)));
}

static void bb_str(bb_t *b, const char *s) {
    bb_long(b, (int64_t)strlen(s));
    for (; *s; s++) bb_u8(b, (uint8_t)*s);
}

static void bb_frame(bb_t *b, int32_t id) {
    bb_u8(b, 0);
    for (int i = 3; i >= 0; i--) bb_u8(b, (uint8_t)((uint32_t)id >> (8 * i)));
}

/* A UserEvent body in our own field order, session_id and context null. */
static void bb_event(bb_t *b, int64_t user, int64_t item, int type, float value, int64_t ts) {
    bb_long(b, user);
    bb_long(b, item);
    bb_long(b, type);
    bb_float(b, value);
    bb_long(b, ts);
    bb_long(b, 0);
    bb_long(b, 0);
}

static dr_codec_t *new_codec(dr_framing_t framing) {
    dr_codec_conf_t conf;
    dr_codec_t *c = NULL;
    char err[256] = "";
    dr_codec_conf_default(&conf);
    conf.framing = framing;
    int rc = dr_codec_new(&c, &conf, err, sizeof err);
    if (rc) fail_msg("dr_codec_new: %s", err);
    return c;
}

static void add_writer(dr_codec_t *c, dr_schema_kind_t kind, int32_t id, const char *json) {
    char err[256] = "";
    int rc = dr_codec_add_writer_schema(c, kind, id, json, err, sizeof err);
    if (rc) fail_msg("add_writer_schema(%d): %s", (int)id, err);
}

/* Decodes an event expecting failure rc with a non-empty reason containing
 * `needle` (if not NULL). */
static void expect_event_error(dr_codec_t *c, const void *p, size_t n, int rc, const char *needle) {
    dr_event_t ev;
    char reason[256] = "";
    int got = dr_codec_decode_event(c, p, n, &ev, reason, sizeof reason);
    if (got != rc) fail_msg("expected %s, got %s (%s)", dr_err_name(rc), dr_err_name(got), reason);
    assert_true(reason[0] != '\0');
    assert_null(strchr(reason, '\n'));
    if (needle && !strstr(reason, needle))
        fail_msg("reason '%s' lacks '%s'", reason, needle);
}

static const dr_event_t sample_event = {42, 4242, DR_EV_RATE, 4.5f, 1700000000123};

/*------------------------------------------------------------------------
 * Round trips
 */

/* Claim: an event survives encode then decode unchanged, for every event
 * type, in both framings (dr_codec_encode_event / dr_codec_decode_event). */
static void test_event_round_trip(void **state) {
    (void)state;
    for (int fr = 0; fr < 2; fr++) {
        dr_codec_t *c = new_codec((dr_framing_t)fr);
        dr_buf_t buf = {0};
        for (int t = 0; t < DR_EV__COUNT; t++) {
            dr_event_t in = {t * 1000 + 1, DR_MAX_ID - 1 - t, (dr_event_type_t)t,
                             t == DR_EV_DWELL ? 12.25f : (t == DR_EV_RATE ? -3.5f : 0.0f),
                             DR_CODEC_MAX_TIMESTAMP_MS - 1 - t};
            dr_event_t out;
            char reason[128] = "";
            assert_int_equal(dr_codec_encode_event(c, &in, &buf), 0);
            assert_int_equal(dr_codec_decode_event(c, buf.data, buf.len, &out, reason, sizeof reason), 0);
            assert_int_equal(out.user_id, in.user_id);
            assert_int_equal(out.item_id, in.item_id);
            assert_int_equal(out.type, in.type);
            assert_true(out.value == in.value);
            assert_int_equal(out.timestamp_ms, in.timestamp_ms);
        }
        dr_buf_free(&buf);
        dr_codec_free(c);
    }
}

/* Claim: Confluent framing is magic byte 0, the configured schema id in 4
 * big-endian bytes, then the same Avro body that plain framing writes. */
static void test_frame_layout(void **state) {
    (void)state;
    dr_codec_conf_t conf;
    dr_codec_t *conf_c = NULL, *plain = new_codec(DR_FRAMING_PLAIN);
    dr_buf_t a = {0}, b = {0};
    dr_codec_conf_default(&conf);
    assert_int_equal(conf.framing, DR_FRAMING_CONFLUENT);
    assert_int_equal(conf.schema_id[DR_SCHEMA_EVENT], 1);
    assert_int_equal(conf.schema_id[DR_SCHEMA_RECS], 2);
    assert_int_equal(conf.schema_id[DR_SCHEMA_ITEM], 5);
    assert_int_equal(conf.item_v1_id, 3);
    assert_int_equal(conf.item_v2_id, 4);
    conf.schema_id[DR_SCHEMA_EVENT] = 0x01020304;
    assert_int_equal(dr_codec_new(&conf_c, &conf, NULL, 0), 0);
    assert_int_equal(dr_codec_encode_event(conf_c, &sample_event, &a), 0);
    assert_int_equal(dr_codec_encode_event(plain, &sample_event, &b), 0);
    assert_int_equal(a.len, b.len + 5);
    const uint8_t hdr[5] = {0, 1, 2, 3, 4};
    assert_memory_equal(a.data, hdr, 5);
    assert_memory_equal(a.data + 5, b.data, b.len);
    dr_buf_free(&a);
    dr_buf_free(&b);
    dr_codec_free(conf_c);
    dr_codec_free(plain);
}

/* Claim: dr_codec_new rejects an unknown framing and negative ids with
 * DR_ECONFIG and a message; NULL conf means the defaults; free(NULL) is ok. */
static void test_codec_conf(void **state) {
    (void)state;
    dr_codec_conf_t conf;
    dr_codec_t *c = NULL;
    char err[128] = "";
    dr_codec_conf_default(&conf);
    conf.framing = (dr_framing_t)7;
    assert_int_equal(dr_codec_new(&c, &conf, err, sizeof err), DR_ECONFIG);
    assert_null(c);
    assert_true(err[0] != '\0');
    dr_codec_conf_default(&conf);
    conf.schema_id[DR_SCHEMA_ITEM] = -1;
    assert_int_equal(dr_codec_new(&c, &conf, err, sizeof err), DR_ECONFIG);
    assert_int_equal(dr_codec_new(&c, NULL, err, sizeof err), 0);
    dr_codec_free(c);
    dr_codec_free(NULL);
    dr_buf_free(NULL);
}

/* Claim: a recommendation list round-trips (0, 3 and 1000 items; drift and
 * source position kept) in both framings, items copied into the caller's
 * buffer; more items than max_items gives DR_ERANGE. */
static void test_recs_round_trip(void **state) {
    (void)state;
    static dr_scored_item_t in_items[1000], out_items[1000];
    const size_t sizes[] = {0, 3, 1000};
    for (size_t i = 0; i < 1000; i++) in_items[i] = (dr_scored_item_t){(int64_t)i * 7919, 1.0f / (float)(i + 1)};
    for (int fr = 0; fr < 2; fr++) {
        dr_codec_t *c = new_codec((dr_framing_t)fr);
        dr_buf_t buf = {0};
        for (size_t s = 0; s < 3; s++) {
            dr_recs_t in = {77, in_items, sizes[s], 1700000000000, 12, s == 1, {s == 2 ? -1 : 5, s == 2 ? -1 : 123456789}};
            dr_recs_t out;
            char reason[128] = "";
            assert_int_equal(dr_codec_encode_recs(c, &in, &buf), 0);
            assert_int_equal(dr_codec_decode_recs(c, buf.data, buf.len, &out, out_items, 1000, reason, sizeof reason), 0);
            assert_int_equal(out.user_id, 77);
            assert_ptr_equal(out.items, out_items);
            assert_int_equal(out.n_items, sizes[s]);
            if (sizes[s]) assert_memory_equal(out.items, in_items, sizes[s] * sizeof *in_items);
            assert_int_equal(out.generated_at_ms, in.generated_at_ms);
            assert_int_equal(out.model_version, 12);
            assert_int_equal(out.drift, in.drift);
            assert_int_equal(out.source.partition, in.source.partition);
            assert_int_equal(out.source.offset, in.source.offset);
            if (sizes[s] > 2) {
                assert_int_equal(dr_codec_decode_recs(c, buf.data, buf.len, &out, out_items, 2, reason, sizeof reason), DR_ERANGE);
                assert_non_null(strstr(reason, "buffer holds 2"));
            }
        }
        dr_buf_free(&buf);
        dr_codec_free(c);
    }
}

/* Claim: a catalog record round-trips with an embedding, an empty one, and
 * none (NULL, length 0), flags kept, in both framings; an embedding larger
 * than max_emb gives DR_ERANGE. */
static void test_item_round_trip(void **state) {
    (void)state;
    float emb[64], out_emb[64];
    for (int i = 0; i < 64; i++) emb[i] = sinf((float)i) * 3.0f;
    for (int fr = 0; fr < 2; fr++) {
        dr_codec_t *c = new_codec((dr_framing_t)fr);
        dr_buf_t buf = {0};
        const dr_item_rec_t cases[] = {
            {9, emb, 64, false, false, -1, -1, -1}, {10, emb, 0, true, false, 0, 7, 0},
            {11, NULL, 0, false, true, 9007199254740991LL, -1, INT64_C(1764892800000)}};
        for (size_t k = 0; k < 3; k++) {
            dr_item_rec_t out;
            char reason[128] = "";
            assert_int_equal(dr_codec_encode_item(c, &cases[k], &buf), 0);
            assert_int_equal(dr_codec_decode_item(c, buf.data, buf.len, &out, out_emb, 64, reason, sizeof reason), 0);
            assert_int_equal(out.item_id, cases[k].item_id);
            assert_int_equal(out.deleted, cases[k].deleted);
            assert_int_equal(out.blocked, cases[k].blocked);
            assert_int_equal(out.author, cases[k].author);
            assert_int_equal(out.topic, cases[k].topic);
            assert_int_equal(out.published_ms, cases[k].published_ms);
            assert_int_equal(out.embedding_len, cases[k].embedding_len);
            if (cases[k].embedding == NULL) assert_null(out.embedding);
            else assert_ptr_equal(out.embedding, out_emb);
            if (out.embedding_len) assert_memory_equal(out_emb, emb, 64 * sizeof(float));
        }
        dr_item_rec_t out;
        char reason[128] = "";
        assert_int_equal(dr_codec_encode_item(c, &cases[0], &buf), 0);
        assert_int_equal(dr_codec_decode_item(c, buf.data, buf.len, &out, out_emb, 63, reason, sizeof reason), DR_ERANGE);
        assert_true(reason[0] != '\0');
        /* an author or topic outside [0, 2^53) is refused both ways */
        dr_item_rec_t bad = cases[2];
        bad.author = DR_MAX_ID;
        assert_int_equal(dr_codec_encode_item(c, &bad, &buf), DR_ERANGE);
        bad.author = -2;
        assert_int_equal(dr_codec_encode_item(c, &bad, &buf), DR_ERANGE);
        bad = cases[2]; /* a publish time outside [1970, 3000) too */
        bad.published_ms = DR_CODEC_MAX_TIMESTAMP_MS;
        assert_int_equal(dr_codec_encode_item(c, &bad, &buf), DR_ERANGE);
        bad.published_ms = -2;
        assert_int_equal(dr_codec_encode_item(c, &bad, &buf), DR_ERANGE);
        dr_buf_free(&buf);
        dr_codec_free(c);
    }
}

/* Claim: a catalog record written with the first Item schema (before author
 * and topic) under its old id 3 still decodes, author and topic unknown, and
 * one of the second (before published_at) under id 4, its publish time
 * unknown; ours is framed with id 5 now; -1 turns an old id off. */
static void test_item_v1_still_read(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    bb_t b = {.n = 0};
    bb_frame(&b, 3);
    bb_long(&b, 5);  /* item_id */
    bb_long(&b, 0);  /* embedding: null */
    bb_u8(&b, 0);    /* deleted */
    bb_u8(&b, 1);    /* blocked */
    bb_long(&b, 0);  /* updated_at: null */
    dr_item_rec_t it;
    char reason[128] = "";
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, NULL, 0, reason, sizeof reason), 0);
    assert_int_equal(it.item_id, 5);
    assert_true(it.blocked);
    assert_int_equal(it.author, -1);
    assert_int_equal(it.topic, -1);
    assert_int_equal(it.published_ms, -1);
    bb_t b2 = {.n = 0};
    bb_frame(&b2, 4);
    bb_long(&b2, 7);  /* item_id */
    bb_long(&b2, 0);  /* embedding: null */
    bb_u8(&b2, 0);    /* deleted */
    bb_u8(&b2, 0);    /* blocked */
    bb_long(&b2, 0);  /* updated_at: null */
    bb_long(&b2, 1);  /* author: the long branch */
    bb_long(&b2, 12);
    bb_long(&b2, 0);  /* topic: null */
    assert_int_equal(dr_codec_decode_item(c, b2.b, b2.n, &it, NULL, 0, reason, sizeof reason), 0);
    assert_int_equal(it.item_id, 7);
    assert_int_equal(it.author, 12);
    assert_int_equal(it.published_ms, -1);
    dr_item_rec_t item = {6, NULL, 0, false, false, 8, 9, -1};
    dr_buf_t buf = {0};
    assert_int_equal(dr_codec_encode_item(c, &item, &buf), 0);
    assert_int_equal(buf.data[4], 5);
    dr_codec_free(c);
    dr_codec_conf_t conf;
    dr_codec_conf_default(&conf);
    conf.item_v1_id = -1;
    char err[128];
    assert_int_equal(dr_codec_new(&c, &conf, err, sizeof err), 0);
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, NULL, 0, reason, sizeof reason), DR_ESCHEMA);
    dr_buf_free(&buf);
    dr_codec_free(c);
}

/* Claim: encode refuses what decode would reject (we never publish it):
 * invalid events and oversize / NULL arrays / non-finite floats. */
static void test_encode_rejects_invalid(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    dr_buf_t buf = {0};
    dr_event_t ev = sample_event;
    ev.value = NAN;
    assert_int_equal(dr_codec_encode_event(c, &ev, &buf), DR_ERANGE);
    ev = sample_event;
    ev.user_id = -1;
    assert_int_equal(dr_codec_encode_event(c, &ev, &buf), DR_ERANGE);
    dr_recs_t r = {1, NULL, 3, 0, 0, false, {-1, -1}};
    assert_int_equal(dr_codec_encode_recs(c, &r, &buf), DR_EINVAL);
    static dr_scored_item_t many[DR_CODEC_MAX_RECS_ITEMS + 1];
    r.items = many;
    r.n_items = DR_CODEC_MAX_RECS_ITEMS + 1;
    assert_int_equal(dr_codec_encode_recs(c, &r, &buf), DR_ERANGE);
    dr_scored_item_t bad = {1, INFINITY};
    r.items = &bad;
    r.n_items = 1;
    assert_int_equal(dr_codec_encode_recs(c, &r, &buf), DR_ERANGE);
    static float big[DR_CODEC_MAX_EMBEDDING + 1];
    dr_item_rec_t it = {1, big, DR_CODEC_MAX_EMBEDDING + 1, false, false, -1, -1, -1};
    assert_int_equal(dr_codec_encode_item(c, &it, &buf), DR_ERANGE);
    it.embedding = NULL;
    assert_int_equal(dr_codec_encode_item(c, &it, &buf), DR_EINVAL);
    dr_buf_free(&buf);
    dr_codec_free(c);
}

/*------------------------------------------------------------------------
 * Writer schemas (evolution)
 */

#define EVENT_TYPE_ENUM(extra)                                                              \
    "{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":[\"IMPRESSION\",\"CLICK\","     \
    "\"LIKE\",\"SHARE\",\"COMMENT\",\"PURCHASE\",\"HIDE\",\"DWELL\",\"RATE\"" extra "]}"

/* A newer producer: an optional field inserted in the middle, two appended. */
static const char writer_extra[] =
    "{\"type\":\"record\",\"name\":\"UserEvent\",\"namespace\":\"com.example\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"long\"},"
    "{\"name\":\"country\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"item_id\",\"type\":\"long\"},"
    "{\"name\":\"type\",\"type\":" EVENT_TYPE_ENUM("") "},"
    "{\"name\":\"value\",\"type\":\"float\",\"default\":0},"
    "{\"name\":\"timestamp\",\"type\":\"long\"},"
    "{\"name\":\"session_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"context\",\"type\":[\"null\",{\"type\":\"map\",\"values\":\"string\"}],\"default\":null},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[]},"
    "{\"name\":\"score\",\"type\":\"double\",\"default\":0}]}";

/* Claim: a writer schema with extra optional fields decodes: the fields we
 * don't know are skipped (dr_codec_add_writer_schema). */
static void test_writer_extra_fields(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    bb_t b = {.n = 0};
    dr_event_t ev;
    char reason[128] = "";
    add_writer(c, DR_SCHEMA_EVENT, 10, writer_extra);
    bb_frame(&b, 10);
    bb_long(&b, 5);
    bb_long(&b, 1);
    bb_str(&b, "FR");
    bb_long(&b, 6);
    bb_long(&b, DR_EV_DWELL);
    bb_float(&b, 33.5f);
    bb_long(&b, 1700000000000);
    bb_long(&b, 1);
    bb_str(&b, "sess-1");
    bb_long(&b, 1);
    bb_long(&b, 2);
    bb_str(&b, "device");
    bb_str(&b, "tv");
    bb_str(&b, "pos");
    bb_str(&b, "3");
    bb_long(&b, 0);
    bb_long(&b, -2);  /* tags: a block of 2 with its byte size */
    bb_long(&b, 4);
    bb_str(&b, "a");
    bb_str(&b, "b");
    bb_long(&b, 0);
    for (int i = 0; i < 8; i++) bb_u8(&b, 0);  /* score 0.0 */
    assert_int_equal(dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason), 0);
    assert_int_equal(ev.user_id, 5);
    assert_int_equal(ev.item_id, 6);
    assert_int_equal(ev.type, DR_EV_DWELL);
    assert_true(ev.value == 33.5f);
    assert_int_equal(ev.timestamp_ms, 1700000000000);
    /* Our own schema id keeps working next to the registered one. */
    dr_buf_t buf = {0};
    assert_int_equal(dr_codec_encode_event(c, &sample_event, &buf), 0);
    assert_int_equal(dr_codec_decode_event(c, buf.data, buf.len, &ev, reason, sizeof reason), 0);
    assert_int_equal(ev.item_id, sample_event.item_id);
    dr_buf_free(&buf);
    dr_codec_free(c);
}

/* The lookup a Schema Registry stands behind, as the codec sees it: id 10 is
 * writer_extra, 11 is unknown, 12 cannot be asked now, 13 is not a UserEvent. */
typedef struct { int calls[16]; } lookup_log_t;

static int test_lookup(void *ctx, int32_t id, char **json, char *reason, size_t reason_size) {
    lookup_log_t *log = ctx;
    log->calls[id & 15]++;
    switch (id) {
    case 10: *json = strdup(writer_extra); return *json ? 0 : DR_ENOMEM;
    case 11: snprintf(reason, reason_size, "HTTP 404: Schema 11 not found"); return DR_ENOTFOUND;
    case 12: snprintf(reason, reason_size, "registry unreachable"); return DR_EAGAIN;
    default:
        *json = strdup("{\"type\":\"record\",\"name\":\"Other\",\"fields\":[]}");
        return *json ? 0 : DR_ENOMEM;
    }
}

/* Claim: an unknown schema id is asked for once; the answer is kept whether
 * it is a schema (then decoded) or a refusal (then refused without asking);
 * only "could not ask now" is retried, and it reads DR_EAGAIN. */
static void test_writer_lookup(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    lookup_log_t log = {{0}};
    dr_codec_set_schema_lookup(c, test_lookup, &log);
    dr_buf_t buf = {0};
    dr_event_t ev;
    char reason[256] = "";
    assert_int_equal(dr_codec_encode_event(c, &sample_event, &buf), 0);
    /* writer_extra's record for sample_event: our fields plus its extras */
    bb_t b = {.n = 0};
    bb_frame(&b, 10);
    bb_long(&b, sample_event.user_id);
    bb_long(&b, 0); /* country: null */
    bb_long(&b, sample_event.item_id);
    bb_long(&b, sample_event.type);
    bb_float(&b, sample_event.value);
    bb_long(&b, sample_event.timestamp_ms);
    bb_long(&b, 0);
    bb_long(&b, 0);
    bb_long(&b, 0); /* tags: empty */
    for (int i = 0; i < 8; i++) bb_u8(&b, 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason), 0);
        assert_int_equal(ev.item_id, sample_event.item_id);
    }
    assert_int_equal(log.calls[10], 1);
    for (int32_t id = 11; id <= 13; id++) {
        for (int round = 0; round < 2; round++) {
            b.b[1] = b.b[2] = b.b[3] = 0;
            b.b[4] = (uint8_t)id;
            int want = id == 12 ? DR_EAGAIN : DR_ESCHEMA;
            reason[0] = 0;
            assert_int_equal(dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason), want);
            if (!strstr(reason, "schema id")) fail_msg("id %d: reason '%s'", (int)id, reason);
        }
    }
    assert_int_equal(log.calls[11], 1);
    assert_int_equal(log.calls[12], 2);
    assert_int_equal(log.calls[13], 1);
    /* our own id never asks */
    assert_int_equal(dr_codec_decode_event(c, buf.data, buf.len, &ev, reason, sizeof reason), 0);
    dr_buf_free(&buf);
    dr_codec_free(c);
}

/* Claim: fields in a different order, and a writer int promoted to our long,
 * decode to the right values. */
static void test_writer_reordered(void **state) {
    (void)state;
    static const char json[] =
        "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":["
        "{\"name\":\"timestamp\",\"type\":\"long\"},"
        "{\"name\":\"type\",\"type\":" EVENT_TYPE_ENUM("") "},"
        "{\"name\":\"value\",\"type\":\"float\"},"
        "{\"name\":\"item_id\",\"type\":\"int\"},"
        "{\"name\":\"user_id\",\"type\":\"long\"}]}";
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    bb_t b = {.n = 0};
    dr_event_t ev;
    char reason[128] = "";
    add_writer(c, DR_SCHEMA_EVENT, 11, json);
    bb_frame(&b, 11);
    bb_long(&b, 1234567);
    bb_long(&b, DR_EV_LIKE);
    bb_float(&b, 0.0f);
    bb_long(&b, 99);
    bb_long(&b, 123456789012345);
    assert_int_equal(dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason), 0);
    assert_int_equal(ev.user_id, 123456789012345);
    assert_int_equal(ev.item_id, 99);
    assert_int_equal(ev.type, DR_EV_LIKE);
    assert_int_equal(ev.timestamp_ms, 1234567);
    dr_codec_free(c);
}

/* Claim: a writer lacking fields that have defaults in our schema decodes
 * with those defaults: UserEvent.value = 0; Recommendations drift = false,
 * source = -1/-1; Item embedding = none, deleted = blocked = false. */
static void test_writer_missing_defaults(void **state) {
    (void)state;
    static const char ev_json[] =
        "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":["
        "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},"
        "{\"name\":\"type\",\"type\":" EVENT_TYPE_ENUM("") "},"
        "{\"name\":\"timestamp\",\"type\":\"long\"}]}";
    static const char recs_json[] =
        "{\"type\":\"record\",\"name\":\"Recommendations\",\"fields\":["
        "{\"name\":\"user_id\",\"type\":\"long\"},"
        "{\"name\":\"items\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
        "\"name\":\"ScoredItem\",\"fields\":[{\"name\":\"item_id\",\"type\":\"long\"},"
        "{\"name\":\"score\",\"type\":\"float\"}]}}},"
        "{\"name\":\"generated_at\",\"type\":\"long\"},{\"name\":\"model_version\",\"type\":\"long\"}]}";
    static const char item_json[] =
        "{\"type\":\"record\",\"name\":\"Item\",\"fields\":[{\"name\":\"item_id\",\"type\":\"long\"}]}";
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    char reason[128] = "";
    bb_t b = {.n = 0};
    dr_event_t ev;
    add_writer(c, DR_SCHEMA_EVENT, 12, ev_json);
    add_writer(c, DR_SCHEMA_RECS, 12, recs_json);
    add_writer(c, DR_SCHEMA_ITEM, 12, item_json);
    bb_frame(&b, 12);
    bb_long(&b, 1);
    bb_long(&b, 2);
    bb_long(&b, DR_EV_CLICK);
    bb_long(&b, 1000);
    assert_int_equal(dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason), 0);
    assert_int_equal(ev.type, DR_EV_CLICK);
    assert_true(ev.value == 0.0f);
    assert_int_equal(ev.timestamp_ms, 1000);

    dr_scored_item_t items[2];
    dr_recs_t r;
    b.n = 0;
    bb_frame(&b, 12);
    bb_long(&b, 3);
    bb_long(&b, 1);
    bb_long(&b, 8);
    bb_float(&b, 0.5f);
    bb_long(&b, 0);
    bb_long(&b, 555);
    bb_long(&b, 9);
    assert_int_equal(dr_codec_decode_recs(c, b.b, b.n, &r, items, 2, reason, sizeof reason), 0);
    assert_int_equal(r.n_items, 1);
    assert_int_equal(r.items[0].item_id, 8);
    assert_false(r.drift);
    assert_int_equal(r.source.partition, -1);
    assert_int_equal(r.source.offset, -1);
    assert_int_equal(r.model_version, 9);

    dr_item_rec_t it;
    float emb[4];
    b.n = 0;
    bb_frame(&b, 12);
    bb_long(&b, 31);
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, emb, 4, reason, sizeof reason), 0);
    assert_int_equal(it.item_id, 31);
    assert_null(it.embedding);
    assert_int_equal(it.embedding_len, 0);
    assert_false(it.deleted);
    assert_false(it.blocked);
    dr_codec_free(c);
}

/* Returns the text right after "default": in field `name`'s object of json. */
static const char *avsc_default_of(const char *json, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "\"name\": \"%s\"", name);
    const char *at = strstr(json, key);
    assert_non_null(at);
    int depth = 0;
    for (const char *p = at; *p; p++) {
        if (*p == '{') depth++;
        if (*p == '}' && --depth < 0) return NULL;
        if (depth == 0 && strncmp(p, "\"default\":", 10) == 0) {
            p += 10;
            while (*p == ' ') p++;
            return p;
        }
    }
    return NULL;
}

/* Claim: the defaults the codec substitutes are the ones our .avsc files
 * declare (value 0, drift false, source -1/-1, nulls, flags false). */
static void test_avsc_declares_defaults(void **state) {
    (void)state;
    static const struct { const char *json, *field, *dflt; } rows[] = {
        {dr_schema_UserEvent, "value", "0"},
        {dr_schema_UserEvent, "session_id", "null"},
        {dr_schema_UserEvent, "context", "null"},
        {dr_schema_Recommendations, "drift", "false"},
        {dr_schema_Recommendations, "source_partition", "-1"},
        {dr_schema_Recommendations, "source_offset", "-1"},
        {dr_schema_Item, "embedding", "null"},
        {dr_schema_Item, "deleted", "false"},
        {dr_schema_Item, "blocked", "false"},
        {dr_schema_Item, "updated_at", "null"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *d = avsc_default_of(rows[i].json, rows[i].field);
        if (d == NULL || strncmp(d, rows[i].dflt, strlen(rows[i].dflt)))
            fail_msg("field %s: default is not %s", rows[i].field, rows[i].dflt);
    }
    /* Fields without a default must not declare one (registration relies on it). */
    assert_null(avsc_default_of(dr_schema_UserEvent, "user_id"));
    assert_null(avsc_default_of(dr_schema_Recommendations, "model_version"));
}

/* Claim: enum symbols are matched by name: a writer with an extra symbol
 * decodes records using known symbols (even when its symbol order differs)
 * and rejects a record using the unknown one with DR_EDECODE and a reason. */
static void test_writer_enum_symbols(void **state) {
    (void)state;
    static const char extra[] =
        "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":["
        "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},"
        "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":"
        "[\"SAVE\",\"RATE\",\"DWELL\",\"HIDE\",\"PURCHASE\",\"COMMENT\",\"SHARE\",\"LIKE\","
        "\"CLICK\",\"IMPRESSION\"]}},"
        "{\"name\":\"timestamp\",\"type\":\"long\"}]}";
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    bb_t b = {.n = 0};
    dr_event_t ev;
    char reason[128] = "";
    add_writer(c, DR_SCHEMA_EVENT, 13, extra);
    bb_frame(&b, 13);
    bb_long(&b, 1);
    bb_long(&b, 2);
    bb_long(&b, 8);  /* CLICK in the writer's order */
    bb_long(&b, 1000);
    assert_int_equal(dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason), 0);
    assert_int_equal(ev.type, DR_EV_CLICK);
    b.b[7] = 2 * 1;  /* zigzag(1) = RATE */
    assert_int_equal(dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason), 0);
    assert_int_equal(ev.type, DR_EV_RATE);
    b.b[7] = 0;      /* SAVE: unknown to us */
    expect_event_error(c, b.b, b.n, DR_EDECODE, "unknown enum symbol 'SAVE'");
    b.b[7] = 2 * 10; /* beyond the writer's symbols */
    expect_event_error(c, b.b, b.n, DR_EDECODE, "out of range");
    dr_codec_free(c);
}

/* Claim: registration fails (DR_ESCHEMA, message naming the field) when the
 * writer lacks a field without default or has an incompatible type, also
 * nested in arrays, maps and union branches (where Avro C 1.11's own resolver
 * would crash); bad JSON, another record name and a duplicate id are refused. */
static void test_writer_registration_errors(void **state) {
    (void)state;
    static const struct { dr_schema_kind_t kind; const char *json; int rc; const char *needle; } rows[] = {
        {DR_SCHEMA_EVENT, "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":[{\"name\":\"item_id\","
         "\"type\":\"long\"},{\"name\":\"type\",\"type\":" EVENT_TYPE_ENUM("") "},"
         "{\"name\":\"timestamp\",\"type\":\"long\"}]}", DR_ESCHEMA, "'user_id'"},
        {DR_SCHEMA_EVENT, "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":[{\"name\":\"user_id\","
         "\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},{\"name\":\"type\","
         "\"type\":" EVENT_TYPE_ENUM("") "},{\"name\":\"value\",\"type\":\"string\"},"
         "{\"name\":\"timestamp\",\"type\":\"long\"}]}", DR_ESCHEMA, "field 'value' (string)"},
        {DR_SCHEMA_EVENT, "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":[{\"name\":\"user_id\","
         "\"type\":\"double\"},{\"name\":\"item_id\",\"type\":\"long\"},{\"name\":\"type\","
         "\"type\":\"string\"},{\"name\":\"timestamp\",\"type\":\"long\"}]}", DR_ESCHEMA, "'user_id'"},
        {DR_SCHEMA_EVENT, "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":[{\"name\":\"user_id\","
         "\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},{\"name\":\"type\","
         "\"type\":{\"type\":\"enum\",\"name\":\"Kind\",\"symbols\":[\"CLICK\"]}},"
         "{\"name\":\"timestamp\",\"type\":\"long\"}]}", DR_ESCHEMA, "'type'"},
        {DR_SCHEMA_EVENT, "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":[{\"name\":\"user_id\","
         "\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},{\"name\":\"type\","
         "\"type\":" EVENT_TYPE_ENUM("") "},{\"name\":\"timestamp\",\"type\":\"long\"},"
         "{\"name\":\"context\",\"type\":[\"null\",{\"type\":\"map\",\"values\":\"int\"}]}]}",
         DR_ESCHEMA, "'context'"},
        {DR_SCHEMA_RECS, "{\"type\":\"record\",\"name\":\"Recommendations\",\"fields\":["
         "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"items\",\"type\":{\"type\":"
         "\"array\",\"items\":{\"type\":\"record\",\"name\":\"ScoredItem\",\"fields\":"
         "[{\"name\":\"item_id\",\"type\":\"long\"}]}}},{\"name\":\"generated_at\",\"type\":"
         "\"long\"},{\"name\":\"model_version\",\"type\":\"long\"}]}", DR_ESCHEMA, "'items'"},
        {DR_SCHEMA_ITEM, "{\"type\":\"record\",\"name\":\"Item\",\"fields\":[{\"name\":\"item_id\","
         "\"type\":\"long\"},{\"name\":\"embedding\",\"type\":[\"null\",{\"type\":\"array\","
         "\"items\":\"string\"}]}]}", DR_ESCHEMA, "'embedding'"},
        {DR_SCHEMA_EVENT, "{\"type\":\"record\",\"name\":\"Click\",\"fields\":[{\"name\":\"user_id\",\"type\":"
         "\"long\"}]}", DR_ESCHEMA, "UserEvent"},
        {DR_SCHEMA_EVENT, "{\"type\":\"record\",", DR_ESCHEMA, "parse"},
        {DR_SCHEMA_EVENT, "\"long\"", DR_ESCHEMA, "record"},
        {DR_SCHEMA_EVENT, writer_extra, DR_EINVAL, "already registered"},
        {DR_SCHEMA__COUNT, writer_extra, DR_EINVAL, "bad arguments"},
    };
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    add_writer(c, DR_SCHEMA_EVENT, 20, writer_extra);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char err[256] = "";
        int32_t id = rows[i].rc == DR_EINVAL ? 20 : 30 + (int32_t)i;
        int rc = dr_codec_add_writer_schema(c, rows[i].kind, id, rows[i].json, err, sizeof err);
        if (rc != rows[i].rc || !strstr(err, rows[i].needle))
            fail_msg("row %zu: rc %s, err '%s' (want %s, '%s')", i, dr_err_name(rc), err,
                     dr_err_name(rows[i].rc), rows[i].needle);
        print_message("      %s\n", err);
    }
    /* The codec still works after failed registrations. */
    dr_buf_t buf = {0};
    dr_event_t ev;
    assert_int_equal(dr_codec_encode_event(c, &sample_event, &buf), 0);
    assert_int_equal(dr_codec_decode_event(c, buf.data, buf.len, &ev, NULL, 0), 0);
    dr_buf_free(&buf);
    dr_codec_free(c);
}

/*------------------------------------------------------------------------
 * Malformed input
 */

/* Claim: every strict prefix of a valid record (all kinds, both framings) is
 * rejected with DR_EDECODE and a reason ("truncated ..."). */
static void test_truncated_prefixes(void **state) {
    (void)state;
    dr_scored_item_t items[3] = {{1, 0.5f}, {2, 0.25f}, {300000, -1.0f}}, out_items[3];
    float emb[4] = {1, 2, 3, 4}, out_emb[4];
    dr_recs_t recs = {5, items, 3, 1, 2, true, {3, 4}};
    dr_item_rec_t item = {6, emb, 4, false, true, -1, -1, -1};
    for (int fr = 0; fr < 2; fr++) {
        dr_codec_t *c = new_codec((dr_framing_t)fr);
        dr_buf_t e = {0}, r = {0}, it = {0};
        assert_int_equal(dr_codec_encode_event(c, &sample_event, &e), 0);
        assert_int_equal(dr_codec_encode_recs(c, &recs, &r), 0);
        assert_int_equal(dr_codec_encode_item(c, &item, &it), 0);
        for (size_t n = 0; n < e.len; n++) expect_event_error(c, e.data, n, DR_EDECODE, "truncated");
        for (size_t n = 0; n < r.len; n++) {
            dr_recs_t out;
            char reason[128] = "";
            assert_int_equal(dr_codec_decode_recs(c, r.data, n, &out, out_items, 3, reason, sizeof reason), DR_EDECODE);
            assert_non_null(strstr(reason, "truncated"));
        }
        for (size_t n = 0; n < it.len; n++) {
            dr_item_rec_t out;
            char reason[128] = "";
            assert_int_equal(dr_codec_decode_item(c, it.data, n, &out, out_emb, 4, reason, sizeof reason), DR_EDECODE);
            assert_non_null(strstr(reason, "truncated"));
        }
        dr_buf_free(&e);
        dr_buf_free(&r);
        dr_buf_free(&it);
        dr_codec_free(c);
    }
}

/* Claim: a frame with a bad magic byte is DR_EDECODE ("bad magic byte 0x05"),
 * an unregistered id is DR_ESCHEMA ("unknown schema id 42"), and bytes after
 * the record are DR_EDECODE ("trailing bytes"). */
static void test_frame_errors(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    dr_codec_t *plain = new_codec(DR_FRAMING_PLAIN);
    dr_buf_t buf = {0};
    uint8_t tmp[256];
    assert_int_equal(dr_codec_encode_event(c, &sample_event, &buf), 0);
    memcpy(tmp, buf.data, buf.len);
    tmp[0] = 5;
    expect_event_error(c, tmp, buf.len, DR_EDECODE, "bad magic byte 0x05");
    tmp[0] = 0;
    tmp[4] = 42;
    expect_event_error(c, tmp, buf.len, DR_ESCHEMA, "unknown schema id 42");
    tmp[4] = 2;  /* the Recommendations id is not a UserEvent schema */
    expect_event_error(c, tmp, buf.len, DR_ESCHEMA, "unknown schema id 2");
    tmp[4] = 1;
    tmp[buf.len] = 0;
    expect_event_error(c, tmp, buf.len + 1, DR_EDECODE, "trailing bytes");
    assert_int_equal(dr_codec_encode_event(plain, &sample_event, &buf), 0);
    memcpy(tmp, buf.data, buf.len);
    memcpy(tmp + buf.len, "xyz", 3);
    expect_event_error(plain, tmp, buf.len + 3, DR_EDECODE, "3 trailing bytes");
    dr_buf_free(&buf);
    dr_codec_free(c);
    dr_codec_free(plain);
}

/* Claim: decode applies dr_event_validate: NaN/inf/huge values, negative or
 * too large ids, negative dwell and absurd timestamps are DR_ERANGE. */
static void test_decode_rejects_bad_values(void **state) {
    (void)state;
    static const struct { int64_t user, item; int type; float value; int64_t ts; const char *needle; } rows[] = {
        {1, 2, DR_EV_RATE, NAN, 1000, "value is NaN"},
        {1, 2, DR_EV_RATE, INFINITY, 1000, "value is infinite"},
        {1, 2, DR_EV_RATE, -INFINITY, 1000, "value is infinite"},
        {1, 2, DR_EV_RATE, 2e6f, 1000, "value"},
        {1, 2, DR_EV_DWELL, -1.0f, 1000, "negative dwell"},
        {-1, 2, DR_EV_CLICK, 0, 1000, "user_id -1"},
        {1, -7, DR_EV_CLICK, 0, 1000, "item_id -7"},
        {DR_MAX_ID, 2, DR_EV_CLICK, 0, 1000, "user_id"},
        {INT64_MIN, 2, DR_EV_CLICK, 0, 1000, "user_id"},
        {1, 2, DR_EV_CLICK, 0, -1, "timestamp"},
        {1, 2, DR_EV_CLICK, 0, DR_CODEC_MAX_TIMESTAMP_MS, "timestamp"},
        {1, 2, DR_EV_CLICK, 0, INT64_MAX, "timestamp"},
    };
    dr_codec_t *c = new_codec(DR_FRAMING_PLAIN);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        bb_t b = {.n = 0};
        bb_event(&b, rows[i].user, rows[i].item, rows[i].type, rows[i].value, rows[i].ts);
        expect_event_error(c, b.b, b.n, DR_ERANGE, rows[i].needle);
    }
    dr_codec_free(c);
}

/* Claim (dr_event_validate): ids in [0, DR_MAX_ID), known type, finite
 * |value| <= 1e6 (>= 0 for DWELL), timestamp in [0, year 3000); boundaries. */
static void test_event_validate_bounds(void **state) {
    (void)state;
    static const struct { dr_event_t ev; int rc; } rows[] = {
        {{0, 0, DR_EV_IMPRESSION, 0, 0}, 0},
        {{DR_MAX_ID - 1, DR_MAX_ID - 1, DR_EV_RATE, -1e6f, DR_CODEC_MAX_TIMESTAMP_MS - 1}, 0},
        {{1, 1, DR_EV_DWELL, 1e6f, 1}, 0},
        {{1, 1, DR_EV_DWELL, 0.0f, 1}, 0},
        {{1, DR_MAX_ID, DR_EV_CLICK, 0, 1}, DR_ERANGE},
        {{1, 1, (dr_event_type_t)DR_EV__COUNT, 0, 1}, DR_ERANGE},
        {{1, 1, (dr_event_type_t)-1, 0, 1}, DR_ERANGE},
        {{1, 1, DR_EV_DWELL, -0.001f, 1}, DR_ERANGE},
        {{1, 1, DR_EV_RATE, 1.0001e6f, 1}, DR_ERANGE},
    };
    char reason[128];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        reason[0] = '\0';
        int rc = dr_event_validate(&rows[i].ev, reason, sizeof reason);
        if (rc != rows[i].rc) fail_msg("row %zu: got %s (%s)", i, dr_err_name(rc), reason);
        if (rc) assert_true(reason[0] != '\0');
    }
    assert_int_equal(dr_event_validate(NULL, reason, sizeof reason), DR_EINVAL);
    assert_int_equal(dr_event_validate(&sample_event, NULL, 0), 0);
}

/* Claim: lengths and counts the input can't back are refused before any
 * allocation: an items count of 2^40 or a map of 10^6 entries is DR_ERANGE;
 * a string claiming 2^40 bytes, an 11-byte varint, a bad union branch or
 * boolean byte are DR_EDECODE; more than 65536 embedding floats DR_ERANGE. */
static void test_hostile_lengths(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_PLAIN);
    char reason[128] = "";
    dr_scored_item_t items[4];
    dr_recs_t r;
    dr_item_rec_t it;
    float emb[4];
    bb_t b = {.n = 0};
    bb_long(&b, 1);
    bb_long(&b, INT64_C(1) << 40);
    assert_int_equal(dr_codec_decode_recs(c, b.b, b.n, &r, items, 4, reason, sizeof reason), DR_ERANGE);
    b.n = 0;
    bb_long(&b, 1);
    bb_long(&b, INT64_MIN);
    assert_int_equal(dr_codec_decode_recs(c, b.b, b.n, &r, items, 4, reason, sizeof reason), DR_EDECODE);
    b.n = 0;
    bb_long(&b, 1);
    bb_long(&b, 1);
    bb_long(&b, DR_CODEC_MAX_EMBEDDING + 1);  /* no floats follow */
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, emb, 4, reason, sizeof reason), DR_ERANGE);

    bb_t e = {.n = 0};
    bb_long(&e, 1); bb_long(&e, 2); bb_long(&e, 1); bb_float(&e, 0); bb_long(&e, 5);
    size_t base = e.n;
    bb_long(&e, 1); bb_long(&e, INT64_C(1) << 40);  /* session_id of 2^40 bytes */
    expect_event_error(c, e.b, e.n, DR_EDECODE, "truncated");
    e.n = base;
    bb_long(&e, 0); bb_long(&e, 1); bb_long(&e, 1000000);  /* context map of 10^6 entries */
    expect_event_error(c, e.b, e.n, DR_ERANGE, "longer than 4096");
    e.n = base;
    bb_long(&e, 2); bb_long(&e, 0);  /* union branch 2 of 2 */
    expect_event_error(c, e.b, e.n, DR_EDECODE, "union branch");
    e.n = 0;
    for (int i = 0; i < 11; i++) bb_u8(&e, 0xff);
    expect_event_error(c, e.b, e.n, DR_EDECODE, "varint");

    bb_t i2 = {.n = 0};
    bb_long(&i2, 1); bb_long(&i2, 0); bb_u8(&i2, 2); bb_u8(&i2, 0); bb_long(&i2, 0);
    assert_int_equal(dr_codec_decode_item(c, i2.b, i2.n, &it, emb, 4, reason, sizeof reason), DR_EDECODE);
    assert_non_null(strstr(reason, "boolean"));
    dr_codec_free(c);
}

/* Claim: decode_recs / decode_item reject non-finite scores and embedding
 * floats and out-of-range ids with DR_ERANGE. */
static void test_decode_rejects_bad_lists(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_PLAIN);
    char reason[128] = "";
    dr_scored_item_t items[4];
    dr_recs_t r;
    dr_item_rec_t it;
    float emb[4];
    bb_t b = {.n = 0};
    bb_long(&b, 1); bb_long(&b, 1); bb_long(&b, 5); bb_float(&b, NAN); bb_long(&b, 0);
    bb_long(&b, 1); bb_long(&b, 1); bb_u8(&b, 0); bb_long(&b, -1); bb_long(&b, -1);
    assert_int_equal(dr_codec_decode_recs(c, b.b, b.n, &r, items, 4, reason, sizeof reason), DR_ERANGE);
    assert_non_null(strstr(reason, "score"));
    b.n = 0;
    bb_long(&b, 1); bb_long(&b, 1); bb_long(&b, 2); bb_float(&b, 1.0f); bb_float(&b, INFINITY);
    bb_long(&b, 0); bb_u8(&b, 0); bb_u8(&b, 0); bb_long(&b, 0);
    bb_long(&b, 0); bb_long(&b, 0); bb_long(&b, 0); /* author, topic, published_at: null */
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, emb, 4, reason, sizeof reason), DR_ERANGE);
    assert_non_null(strstr(reason, "embedding[1]"));
    b.n = 0;
    bb_long(&b, -3); bb_long(&b, 0); bb_u8(&b, 0); bb_u8(&b, 0); bb_long(&b, 0);
    bb_long(&b, 0); bb_long(&b, 0); bb_long(&b, 0);
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, emb, 4, reason, sizeof reason), DR_ERANGE);
    b.n = 0; /* an author present but negative */
    bb_long(&b, 3); bb_long(&b, 0); bb_u8(&b, 0); bb_u8(&b, 0); bb_long(&b, 0);
    bb_long(&b, 1); bb_long(&b, -1); bb_long(&b, 0); bb_long(&b, 0);
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, emb, 4, reason, sizeof reason), DR_ERANGE);
    assert_non_null(strstr(reason, "author"));
    b.n = 0; /* a publish time present but negative, or past the year 3000 */
    bb_long(&b, 3); bb_long(&b, 0); bb_u8(&b, 0); bb_u8(&b, 0); bb_long(&b, 0);
    bb_long(&b, 0); bb_long(&b, 0); bb_long(&b, 1); bb_long(&b, -5);
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, emb, 4, reason, sizeof reason), DR_ERANGE);
    assert_non_null(strstr(reason, "published_at"));
    b.n = 0;
    bb_long(&b, 3); bb_long(&b, 0); bb_u8(&b, 0); bb_u8(&b, 0); bb_long(&b, 0);
    bb_long(&b, 0); bb_long(&b, 0); bb_long(&b, 1); bb_long(&b, DR_CODEC_MAX_TIMESTAMP_MS);
    assert_int_equal(dr_codec_decode_item(c, b.b, b.n, &it, emb, 4, reason, sizeof reason), DR_ERANGE);
    dr_codec_free(c);
}

/* Claim: a recursive writer schema is accepted; values nested within the
 * limit decode, deeper ones are DR_EDECODE (no unbounded recursion). */
static void test_writer_recursive(void **state) {
    (void)state;
    static const char json[] =
        "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":["
        "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},"
        "{\"name\":\"type\",\"type\":" EVENT_TYPE_ENUM("") "},"
        "{\"name\":\"timestamp\",\"type\":\"long\"},"
        "{\"name\":\"chain\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"Node\","
        "\"fields\":[{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}],\"default\":null}]}";
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    dr_event_t ev;
    char reason[128] = "";
    add_writer(c, DR_SCHEMA_EVENT, 14, json);
    for (int depth = 0; depth <= 200; depth += 5) {
        bb_t b = {.n = 0};
        bb_frame(&b, 14);
        bb_long(&b, 1); bb_long(&b, 2); bb_long(&b, DR_EV_SHARE); bb_long(&b, 3);
        for (int i = 0; i < depth; i++) bb_long(&b, 1);
        bb_long(&b, 0);
        int rc = dr_codec_decode_event(c, b.b, b.n, &ev, reason, sizeof reason);
        if (depth <= 10) {
            assert_int_equal(rc, 0);
            assert_int_equal(ev.type, DR_EV_SHARE);
        } else if (depth >= 20) {
            assert_int_equal(rc, DR_EDECODE);
            assert_non_null(strstr(reason, "nested deeper"));
        }
    }
    dr_codec_free(c);
}

/*------------------------------------------------------------------------
 * Robustness and speed
 */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void mutate(uint8_t *p, size_t *n, size_t cap) {
    static const uint8_t special[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff};
    for (int k = (int)(rng() % 4) + 1; k > 0 && *n > 0; k--) {
        size_t at = rng() % *n;
        switch (rng() % 5) {
        case 0: p[at] ^= (uint8_t)(1u << (rng() % 8)); break;
        case 1: p[at] = special[rng() % sizeof special]; break;
        case 2: p[at] = (uint8_t)rng(); break;
        case 3: *n = at; break;
        default:
            if (*n < cap) {
                memmove(p + at + 1, p + at, *n - at);
                p[at] = (uint8_t)rng();
                (*n)++;
            }
        }
    }
}

/* Claim: 20000 randomly mutated records (seeded, all kinds, our schema and a
 * registered writer schema with strings, maps and arrays) never crash, leak
 * or hang: each decode returns 0 or a DR_E* code with a non-empty reason. */
static void test_mutation_robustness(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    dr_buf_t seeds[4] = {{0}};
    dr_scored_item_t items[5] = {{1, 1}, {2, 0.5f}, {3, 0.25f}, {4, 0}, {5, -1}}, out_items[8];
    float emb[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out_emb[16];
    dr_recs_t recs = {9, items, 5, 100, 3, true, {1, 2}};
    dr_item_rec_t item = {10, emb, 8, false, false, -1, -1, -1};
    int counts[3] = {0};
    add_writer(c, DR_SCHEMA_EVENT, 10, writer_extra);
    assert_int_equal(dr_codec_encode_event(c, &sample_event, &seeds[0]), 0);
    assert_int_equal(dr_codec_encode_recs(c, &recs, &seeds[1]), 0);
    assert_int_equal(dr_codec_encode_item(c, &item, &seeds[2]), 0);
    bb_t w = {.n = 0};
    bb_frame(&w, 10); bb_long(&w, 5); bb_long(&w, 1); bb_str(&w, "FR"); bb_long(&w, 6);
    bb_long(&w, 7); bb_float(&w, 3.5f); bb_long(&w, 1000); bb_long(&w, 1); bb_str(&w, "s");
    bb_long(&w, 1); bb_long(&w, 1); bb_str(&w, "k"); bb_str(&w, "v"); bb_long(&w, 0);
    bb_long(&w, 1); bb_str(&w, "t"); bb_long(&w, 0);
    for (int i = 0; i < 8; i++) bb_u8(&w, 0);
    seeds[3].data = w.b;
    seeds[3].len = w.n;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t p[512];
        size_t s = rng() % 4, n = seeds[s].len;
        char reason[160] = "";
        int rc;
        memcpy(p, seeds[s].data, n);
        mutate(p, &n, sizeof p);
        if (s == 0 || s == 3) {
            dr_event_t ev;
            rc = dr_codec_decode_event(c, p, n, &ev, reason, sizeof reason);
        } else if (s == 1) {
            dr_recs_t r;
            rc = dr_codec_decode_recs(c, p, n, &r, out_items, 8, reason, sizeof reason);
        } else {
            dr_item_rec_t it;
            rc = dr_codec_decode_item(c, p, n, &it, out_emb, 16, reason, sizeof reason);
        }
        counts[rc == 0 ? 0 : rc == DR_EDECODE ? 1 : 2]++;
        if (rc != 0 && (reason[0] == '\0' || rc < DR_ESTOPPED))
            fail_msg("iteration %d: rc %d reason '%s'", iter, rc, reason);
    }
    print_message("      mutations: %d decoded, %d DR_EDECODE, %d other errors\n", counts[0],
                  counts[1], counts[2]);
    for (int i = 0; i < 3; i++) dr_buf_free(&seeds[i]);
    dr_codec_free(c);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Smoke (prints, asserts only correctness): encode+decode rates of a small
 * event and a 50-item recommendation list. */
static void test_throughput_smoke(void **state) {
    (void)state;
    dr_codec_t *c = new_codec(DR_FRAMING_CONFLUENT);
    dr_buf_t buf = {0};
    dr_event_t ev = sample_event, out;
    const int n = 300000;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        ev.user_id = i;
        assert_int_equal(dr_codec_encode_event(c, &ev, &buf), 0);
    }
    double t1 = now_s();
    for (int i = 0; i < n; i++)
        assert_int_equal(dr_codec_decode_event(c, buf.data, buf.len, &out, NULL, 0), 0);
    double t2 = now_s();
    for (int i = 0; i < n; i++) {
        ev.user_id = i;
        assert_int_equal(dr_codec_encode_event(c, &ev, &buf), 0);
        assert_int_equal(dr_codec_decode_event(c, buf.data, buf.len, &out, NULL, 0), 0);
        assert_int_equal(out.user_id, i);
    }
    double t3 = now_s();
    print_message("      UserEvent (%zu bytes): encode %.2f M/s, decode %.2f M/s, "
                  "encode+decode %.2f M rec/s\n", buf.len, n / (t1 - t0) / 1e6,
                  n / (t2 - t1) / 1e6, n / (t3 - t2) / 1e6);
    dr_scored_item_t items[50], out_items[50];
    for (int i = 0; i < 50; i++) items[i] = (dr_scored_item_t){i * 31, (float)(50 - i)};
    dr_recs_t r = {1, items, 50, 1, 1, false, {0, 0}}, rout;
    t0 = now_s();
    for (int i = 0; i < n / 10; i++) {
        assert_int_equal(dr_codec_encode_recs(c, &r, &buf), 0);
        assert_int_equal(dr_codec_decode_recs(c, buf.data, buf.len, &rout, out_items, 50, NULL, 0), 0);
    }
    t1 = now_s();
    print_message("      Recommendations, 50 items (%zu bytes): encode+decode %.2f k rec/s\n",
                  buf.len, n / 10 / (t1 - t0) / 1e3);
    dr_buf_free(&buf);
    dr_codec_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_frame_layout),
        cmocka_unit_test(test_codec_conf),
        cmocka_unit_test(test_recs_round_trip),
        cmocka_unit_test(test_item_round_trip),
        cmocka_unit_test(test_item_v1_still_read),
        cmocka_unit_test(test_encode_rejects_invalid),
        cmocka_unit_test(test_writer_extra_fields),
        cmocka_unit_test(test_writer_lookup),
        cmocka_unit_test(test_writer_reordered),
        cmocka_unit_test(test_writer_missing_defaults),
        cmocka_unit_test(test_avsc_declares_defaults),
        cmocka_unit_test(test_writer_enum_symbols),
        cmocka_unit_test(test_writer_registration_errors),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_decode_rejects_bad_values),
        cmocka_unit_test(test_event_validate_bounds),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_decode_rejects_bad_lists),
        cmocka_unit_test(test_writer_recursive),
        cmocka_unit_test(test_mutation_robustness),
        cmocka_unit_test(test_throughput_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
