/* dr_epoch.h - the owner epoch that everything an instance writes for a
 * partition it owns carries (changelog records and markers, lists and
 * tombstones on the recommendations topic): header dr.epoch, 8 bytes
 * big-endian. An owner takes a new epoch when it is assigned the partition,
 * above every one it read (handoff/dr_handoff.h), so a reader that keeps
 * the highest epoch seen and ignores lower ones ignores what a former
 * owner that does not know it lost the partition (a zombie) wrote after
 * the new owner's first message. No header: epoch 0 (a writer from before
 * epochs, or one without a changelog). */
#ifndef DR_EPOCH_H
#define DR_EPOCH_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#define DR_EPOCH_HEADER "dr.epoch"

static inline void dr_be64_put(uint8_t out[8], uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t dr_be64_get(const uint8_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = x << 8 | v[i];
    return x;
}

/* New headers holding the epoch, for a producev, which takes them only
 * when it succeeds (destroy them otherwise). Never NULL: librdkafka's
 * allocator aborts rather than fail. */
static inline rd_kafka_headers_t *dr_epoch_headers(int64_t epoch) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    uint8_t ep[8];
    dr_be64_put(ep, (uint64_t)epoch);
    rd_kafka_header_add(h, DR_EPOCH_HEADER, -1, ep, sizeof(ep));
    return h;
}

/* The writer's epoch of m (0: none). */
static inline int64_t dr_epoch_of(const rd_kafka_message_t *m) {
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, DR_EPOCH_HEADER, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || len != 8 || !v)
        return 0;
    return (int64_t)dr_be64_get(v);
}

#endif /* DR_EPOCH_H */
