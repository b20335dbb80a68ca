/* dr_codec.h - Avro codec between Kafka record values and driftrec's records
 * (dr_event_t, dr_recs_t, dr_item_rec_t), with Confluent framing, writer-schema
 * resolution and strict validation of untrusted input. */
#ifndef DR_CODEC_H
#define DR_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "dr_types.h"

/** Most entries accepted in a Recommendations.items array. */
#define DR_CODEC_MAX_RECS_ITEMS 100000
/** Most floats accepted in an Item.embedding. */
#define DR_CODEC_MAX_EMBEDDING 65536
/** Most entries accepted in any other array or map (e.g. UserEvent.context). */
#define DR_CODEC_MAX_OTHER_ENTRIES 4096
/** Upper bound (exclusive) of event timestamps: 3000-01-01T00:00:00Z in ms. */
#define DR_CODEC_MAX_TIMESTAMP_MS INT64_C(32503680000000)
/** Largest accepted |value| of an event (dwell seconds or rating). */
#define DR_CODEC_MAX_EVENT_VALUE 1e6f

/** How a record value is laid out on the wire. */
typedef enum {
    /** Magic byte 0, 4-byte big-endian schema id, then the Avro binary body. */
    DR_FRAMING_CONFLUENT = 0,
    /** Bare Avro binary body written with our own schema; no schema id. */
    DR_FRAMING_PLAIN = 1
} dr_framing_t;

/** The record kinds the codec knows, one .avsc each. */
typedef enum {
    DR_SCHEMA_EVENT = 0, /**< schemas/UserEvent.avsc */
    DR_SCHEMA_RECS,      /**< schemas/Recommendations.avsc */
    DR_SCHEMA_ITEM,      /**< schemas/Item.avsc */
    DR_SCHEMA__COUNT
} dr_schema_kind_t;

/** Codec settings; fill with dr_codec_conf_default() then adjust. */
typedef struct dr_codec_conf {
    dr_framing_t framing;
    /** Confluent ids of OUR schemas (what encode writes into the frame, and
     *  the id under which decode reads our own schema); defaults 1, 2, 3. */
    int32_t schema_id[DR_SCHEMA__COUNT];
    /** Id under which the first Item schema (schemas/Item_1.avsc, before
     *  author and topic) is read, so that catalog records of producers from
     *  before keep decoding; -1: none (ids from a Schema Registry). */
    int32_t item_v1_id;
    /** The same for the second (schemas/Item_2.avsc, before published_at). */
    int32_t item_v2_id;
} dr_codec_conf_t;

/** Fills @p conf with Confluent framing, schema ids 1, 2, 4 and the first
 *  Item schema under id 3 (its id before it changed). Can't fail. */
void dr_codec_conf_default(dr_codec_conf_t *conf);

/** A codec: parsed schemas, resolvers and reused Avro values.
 *
 *  Thread-safety: a codec is NOT thread-safe (decode and encode reuse its
 *  internal values and reader/writer). Use one codec per thread.
 *
 *  Untrusted input: before Avro C reads a record, the codec walks the bytes
 *  against the writer schema, so every string length and array/map count
 *  is backed by input bytes or refused (allocation stays O(input size),
 *  entry counts within the DR_CODEC_MAX_* limits), values nest at most 32
 *  deep, and truncated records and trailing bytes are rejected. The codec
 *  keeps the storage of the largest record it decoded for reuse (a few MB
 *  at most, for a 100000-item list). */
typedef struct dr_codec dr_codec_t;

/**
 * @brief Creates a codec for our three schemas.
 *
 * @param out receives the codec on success (owned by the caller, free with
 *            dr_codec_free()); set to NULL on failure.
 * @param conf settings, copied; NULL means dr_codec_conf_default().
 * @returns 0, DR_ECONFIG (bad framing, negative id), DR_ESCHEMA (an embedded
 *          .avsc does not parse or disagrees with the C field table) or
 *          DR_ENOMEM, with a one-line message in @p errstr.
 */
int dr_codec_new(dr_codec_t **out, const dr_codec_conf_t *conf, char *errstr,
                 size_t errstr_size);

/** Frees the codec and everything it registered. NULL is ignored. */
void dr_codec_free(dr_codec_t *c);

/**
 * @brief Registers another writer schema of @p kind under Confluent id @p id.
 *
 * Records framed with @p id are then decoded by resolving @p schema_json
 * against our reader schema: fields only the writer has are skipped, fields
 * both have are promoted as Avro allows (int->long/float/double,
 * long->float/double, float->double), top-level fields only we have take
 * the default from our .avsc (registration fails, naming the field, when it
 * has none), and UserEvent.type symbols are matched by name (a record that
 * uses a symbol we lack fails to decode with "unknown enum symbol"). The
 * top-level record must have our record's name (namespace ignored).
 *
 * Limitation: records nested inside a field (ScoredItem) must resolve as
 * they are: a nested field we have and the writer lacks is refused, as are
 * arrays/maps whose items cannot be resolved (Avro C 1.11 would crash on
 * them; the codec checks before calling it).
 *
 * Not for the hot path: parses the schema and builds a resolver.
 * @param schema_json the writer schema text (copied; need not outlive the call).
 * @returns 0, DR_EINVAL (bad kind, negative id, id already registered for
 *          @p kind, NULL json), DR_ESCHEMA (does not parse or cannot be
 *          resolved; the message names the field) or DR_ENOMEM; message in
 *          @p errstr.
 */
int dr_codec_add_writer_schema(dr_codec_t *c, dr_schema_kind_t kind, int32_t id,
                               const char *schema_json, char *errstr,
                               size_t errstr_size);

/**
 * @brief Where the codec finds a writer schema for an id it does not know
 *        (a Schema Registry: src/ wires registry/dr_registry.h in).
 *
 * Called from a decode, on the decoding thread, at most once per id and
 * kind while it answers 0, DR_ENOTFOUND or DR_ESCHEMA: on 0 @p *schema_json
 * (malloc'd, freed by the codec) is registered as with
 * dr_codec_add_writer_schema(); an id it does not know or that cannot be
 * read as ours is remembered and refused from then on (DR_ESCHEMA). Any
 * other error means "could not ask now" (registry unreachable): the decode
 * fails with DR_EAGAIN and the next record with that id asks again.
 * @p reason receives the lookup's one-line explanation.
 */
typedef int (*dr_codec_lookup_fn)(void *ctx, int32_t id, char **schema_json, char *reason,
                                  size_t reason_size);

/** Sets (or, with NULL @p fn, clears) the lookup for unknown schema ids. */
void dr_codec_set_schema_lookup(dr_codec_t *c, dr_codec_lookup_fn fn, void *ctx);

/** A growable output buffer owned by the caller. Start zeroed ({0}); the
 *  codec reallocates @c data as needed; release with dr_buf_free(). */
typedef struct dr_buf {
    uint8_t *data;
    size_t len, cap;
} dr_buf_t;

/** Frees @p b's storage and zeroes it. NULL is ignored. */
void dr_buf_free(dr_buf_t *b);

/**
 * @brief Encodes @p ev (framing per conf; Confluent id = conf schema_id).
 *
 * @p out->len is reset, then the whole record value is written.
 * Optional fields we don't model (session_id, context) are written as null.
 * @returns 0, DR_ERANGE / DR_EINVAL when @p ev fails dr_event_validate()
 *          (we never publish what we would reject), DR_ENOMEM.
 */
int dr_codec_encode_event(dr_codec_t *c, const dr_event_t *ev, dr_buf_t *out);

/**
 * @brief Decodes and validates one UserEvent record value.
 *
 * @p data is only read during the call. On failure @p ev is unspecified and
 * a one-line reason is written to @p reason (may be NULL).
 * @returns 0; DR_EDECODE (malformed: truncated, bad magic byte, trailing
 *          bytes, unknown enum symbol...); DR_ESCHEMA (unknown schema id);
 *          DR_EAGAIN (unknown schema id that the lookup could not resolve
 *          now: retryable); DR_ERANGE (an array/map over its limit, or a
 *          field failing dr_event_validate()).
 */
int dr_codec_decode_event(dr_codec_t *c, const void *data, size_t len,
                          dr_event_t *ev, char *reason, size_t reason_size);

/**
 * @brief Encodes a recommendation list.
 * @returns 0; DR_EINVAL (items NULL with n_items > 0); DR_ERANGE (more than
 *          DR_CODEC_MAX_RECS_ITEMS items, ids out of [0, DR_MAX_ID),
 *          non-finite score, negative generated_at or model_version,
 *          source position below -1); DR_ENOMEM.
 */
int dr_codec_encode_recs(dr_codec_t *c, const dr_recs_t *recs, dr_buf_t *out);

/**
 * @brief Decodes a recommendation list into @p recs, copying its entries into
 *        the caller's @p items (capacity @p max_items).
 *
 * On success @p recs->items points to @p items. The same range checks as
 * dr_codec_encode_recs() apply (DR_ERANGE).
 * @returns as dr_codec_decode_event(), plus DR_ERANGE when the list has more
 *          than @p max_items entries.
 */
int dr_codec_decode_recs(dr_codec_t *c, const void *data, size_t len,
                         dr_recs_t *recs, dr_scored_item_t *items,
                         size_t max_items, char *reason, size_t reason_size);

/**
 * @brief Encodes a catalog record. updated_at is written as null, author and
 *        topic as null when -1.
 * @returns 0; DR_EINVAL (embedding NULL with embedding_len > 0); DR_ERANGE
 *          (id, author or topic out of range, more than DR_CODEC_MAX_EMBEDDING
 *          floats, a non-finite float); DR_ENOMEM.
 */
int dr_codec_encode_item(dr_codec_t *c, const dr_item_rec_t *item, dr_buf_t *out);

/**
 * @brief Decodes a catalog record; embedding floats are copied into the
 *        caller's @p emb (capacity @p max_emb).
 *
 * On success @p item->embedding points to @p emb, or is NULL (length 0) when
 * the record's embedding is null. An empty array gives @p emb, length 0.
 * author and topic are -1 when null or absent (a present one must be in
 * [0, 2^53), else DR_ERANGE).
 * @returns as dr_codec_decode_event(), plus DR_ERANGE when the embedding has
 *          more than @p max_emb floats or a non-finite one.
 */
int dr_codec_decode_item(dr_codec_t *c, const void *data, size_t len,
                         dr_item_rec_t *item, float *emb, size_t max_emb,
                         char *reason, size_t reason_size);

/**
 * @brief Semantic checks of an event (decode_event applies them too).
 *
 * - user_id and item_id in [0, DR_MAX_ID);
 * - type a known dr_event_type_t;
 * - value finite with |value| <= DR_CODEC_MAX_EVENT_VALUE, and >= 0 for DWELL;
 * - timestamp_ms in [0, DR_CODEC_MAX_TIMESTAMP_MS) (1970 to year 3000).
 *
 * @returns 0, DR_EINVAL (NULL @p ev) or DR_ERANGE with a one-line reason
 *          (e.g. "value is NaN") in @p reason (may be NULL).
 */
int dr_event_validate(const dr_event_t *ev, char *reason, size_t reason_size);

#endif /* DR_CODEC_H */
