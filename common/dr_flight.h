/* dr_flight.h - delivery accounting shared by every producer of the
 * pipeline (lists and dead letters), so that a state commit never stores
 * offsets ahead of output that is not yet delivered.
 *
 * Every produced message is tagged with the current epoch. A commit calls
 * dr_flight_mark() after producing everything its state reflects, and writes
 * its batch once dr_flight_settled(): all messages of earlier epochs are
 * delivered. So stored offsets never run ahead of published output. */
#ifndef DR_FLIGHT_H
#define DR_FLIGHT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dr_flight {
    uint64_t epoch;
    uint64_t inflight_prev; /* tagged before the last mark */
    uint64_t inflight_cur;
} dr_flight_t;

static inline uint64_t dr_flight_sent(dr_flight_t *f) { f->inflight_cur++; return f->epoch; }
static inline void dr_flight_done(dr_flight_t *f, uint64_t tag) {
    if (tag < f->epoch) f->inflight_prev--;
    else f->inflight_cur--;
}
static inline void dr_flight_mark(dr_flight_t *f) {
    f->inflight_prev += f->inflight_cur;
    f->inflight_cur = 0;
    f->epoch++;
}
static inline bool dr_flight_settled(const dr_flight_t *f) { return f->inflight_prev == 0; }

/* Message opaque: epoch tag and the kind of message, for the delivery report. */
/* DR_MSG_MODEL (shared item changes) is not counted in flight: a commit
 * does not wait for it. */
typedef enum { DR_MSG_RECS = 0, DR_MSG_DLQ = 1, DR_MSG_CHANGELOG = 2, DR_MSG_MODEL = 3 } dr_msg_kind_t;
static inline void *dr_msg_opaque(uint64_t tag, dr_msg_kind_t kind) {
    return (void *)(uintptr_t)((tag << 2) | (uint64_t)kind);
}
static inline uint64_t dr_msg_tag(void *opaque) { return (uint64_t)(uintptr_t)opaque >> 2; }
static inline dr_msg_kind_t dr_msg_kind(void *opaque) {
    return (dr_msg_kind_t)((uintptr_t)opaque & 3);
}

#endif /* DR_FLIGHT_H */
