/* dr_types.h - the plain data records that flow between driftrec's modules.
 *
 * ingest decodes Kafka records into dr_event_t, the learner consumes them,
 * the emitter fills dr_recs_t; schemas/ maps each of them to its Avro schema.
 * These are value types: no module owns a pointer inside another's record
 * beyond the call that passes it. */
#ifndef DR_TYPES_H
#define DR_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Event types, in the order of the UserEvent.type enum in
 * schemas/UserEvent.avsc (the Avro enum index is the C value). */
typedef enum dr_event_type {
    DR_EV_IMPRESSION = 0,
    DR_EV_CLICK,
    DR_EV_LIKE,
    DR_EV_SHARE,
    DR_EV_COMMENT,
    DR_EV_PURCHASE,
    DR_EV_HIDE,
    DR_EV_DWELL,
    DR_EV_RATE,
    DR_EV_HIDE_AUTHOR, /* "not interested in this author": item_id is the item shown */
    DR_EV_HIDE_TOPIC,  /* "not interested in this topic": likewise */
    DR_EV__COUNT
} dr_event_type_t;

/* A HIDE of the item, or of its author or topic: a strong negative on the item. */
static inline int dr_event_is_hide(int type) {
    return type == DR_EV_HIDE || type == DR_EV_HIDE_AUTHOR || type == DR_EV_HIDE_TOPIC;
}

/* Symbol of an event type as spelled in the schema ("CLICK"), or NULL. */
const char *dr_event_type_name(int type);
/* Parses a symbol (case-insensitive); returns the type or -1. */
int dr_event_type_parse(const char *name);

/* Largest id accepted on input: ids are non-negative and below 2^53 so that
 * they survive JSON tools and doubles unchanged. */
#define DR_MAX_ID ((int64_t)1 << 53)

/* One user event, decoded and validated. */
typedef struct dr_event {
    int64_t user_id;
    int64_t item_id;
    dr_event_type_t type;
    float value;          /* dwell seconds or rating; 0 otherwise */
    int64_t timestamp_ms; /* event time, Unix epoch milliseconds */
} dr_event_t;

/* One entry of a recommendation list. */
typedef struct dr_scored_item {
    int64_t item_id;
    float score;
} dr_scored_item_t;

/* Where a list's input came from: the last event that changed the user. */
typedef struct dr_source_pos {
    int32_t partition;
    int64_t offset;
} dr_source_pos_t;

/* A user's recommendation list, as published. `items` is borrowed. */
typedef struct dr_recs {
    int64_t user_id;
    const dr_scored_item_t *items;
    size_t n_items;
    int64_t generated_at_ms;
    int64_t model_version;
    bool drift;
    dr_source_pos_t source;
} dr_recs_t;

/* A catalog record. `embedding` is borrowed; NULL when absent. */
typedef struct dr_item_rec {
    int64_t item_id;
    const float *embedding;
    size_t embedding_len;
    bool deleted;
    bool blocked;
    int64_t author;       /* who published it, -1: unknown */
    int64_t topic;        /* what it is about, -1: unknown */
    int64_t published_ms; /* when it was published (Unix ms), -1: unknown */
} dr_item_rec_t;

#endif /* DR_TYPES_H */
