/* fuzz_event_decoder.c - libFuzzer target for the Avro codec (schemas/): the
 * bytes of one Kafka record value go through the event decoder with both
 * framings (Confluent, with our schema and a registered writer schema, and
 * plain Avro), and through the catalog and list decoders. Oracles beyond
 * "no crash, no leak, no hang": a decoded event passes dr_event_validate and
 * survives encode -> decode unchanged; a failure always comes with a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dr_codec.h"
#include "dr_err.h"
#include "fuzz_schemas.h"

static dr_codec_t *codecs[2]; /* Confluent framing, plain framing */
static dr_buf_t scratch;
static float emb[DR_CODEC_MAX_EMBEDDING];
static dr_scored_item_t items[1024];

/* Avro C keeps some pointers of its resolved readers at unaligned offsets
 * (its value instances are packed), so LeakSanitizer's default scan misses
 * them and reports the storage of the codec's reused values as leaked at
 * exit, although the codecs still hold it (freeing them frees it). */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "use_unaligned=1"; }

static void die(const char *what) {
    (void)what;
    __builtin_trap();
}

static void setup(void) {
    char err[256];
    dr_codec_conf_t conf;
    dr_codec_conf_default(&conf);
    if (dr_codec_new(&codecs[0], &conf, err, sizeof err) ||
        dr_codec_add_writer_schema(codecs[0], DR_SCHEMA_EVENT, FUZZ_WRITER_ID, fuzz_writer_event, err, sizeof err) ||
        dr_codec_add_writer_schema(codecs[0], DR_SCHEMA_ITEM, FUZZ_WRITER_ID, fuzz_writer_item, err, sizeof err) ||
        dr_codec_add_writer_schema(codecs[0], DR_SCHEMA_RECS, FUZZ_WRITER_ID, fuzz_writer_recs, err, sizeof err))
        die(err);
    conf.framing = DR_FRAMING_PLAIN;
    if (dr_codec_new(&codecs[1], &conf, err, sizeof err)) die(err);
}

/* Every error is a DR_E* code with a one-line reason. */
static void check_error(int rc, const char *reason) {
    if (rc > 0 || rc < DR_ESTOPPED || reason[0] == '\0') die("error without a reason");
}

static void decode_event(dr_codec_t *c, const uint8_t *data, size_t size) {
    char reason[256] = "";
    dr_event_t ev, back;
    int rc = dr_codec_decode_event(c, data, size, &ev, reason, sizeof reason);
    if (rc) {
        check_error(rc, reason);
        return;
    }
    if (dr_event_validate(&ev, NULL, 0) != 0) die("accepted an invalid event");
    /* what we accept we can write, and read back the same */
    if (dr_codec_encode_event(c, &ev, &scratch) != 0) die("cannot re-encode");
    if (dr_codec_decode_event(c, scratch.data, scratch.len, &back, reason, sizeof reason) != 0)
        die("cannot decode our own encoding");
    if (back.user_id != ev.user_id || back.item_id != ev.item_id || back.type != ev.type ||
        memcmp(&back.value, &ev.value, sizeof ev.value) != 0 || back.timestamp_ms != ev.timestamp_ms)
        die("round trip changed the event");
}

static void decode_others(dr_codec_t *c, const uint8_t *data, size_t size) {
    char reason[256] = "";
    dr_item_rec_t item;
    dr_recs_t recs;
    int rc = dr_codec_decode_item(c, data, size, &item, emb, DR_CODEC_MAX_EMBEDDING, reason, sizeof reason);
    if (rc) check_error(rc, reason);
    else if (item.embedding_len > DR_CODEC_MAX_EMBEDDING || (item.embedding_len && item.embedding != emb))
        die("embedding outside the caller's buffer");
    reason[0] = '\0';
    rc = dr_codec_decode_recs(c, data, size, &recs, items, sizeof items / sizeof items[0], reason, sizeof reason);
    if (rc) check_error(rc, reason);
    else if (recs.n_items > sizeof items / sizeof items[0]) die("list larger than the buffer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!codecs[0]) setup();
    for (int i = 0; i < 2; i++) {
        decode_event(codecs[i], data, size);
        decode_others(codecs[i], data, size);
    }
    return 0;
}
