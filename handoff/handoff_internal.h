/* handoff_internal.h - declarations shared inside handoff/ only (other modules
 * include dr_handoff.h). */
#ifndef DR_HANDOFF_INTERNAL_H
#define DR_HANDOFF_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "dr_handoff.h"

/* A consumer that assigns partitions itself and never joins a group nor
 * commits (librdkafka's assign still wants a group id: `name` serves as
 * group and client id), configured by the kafka.* properties, reading from
 * the beginning where it has no position. 0, DR_ECONFIG or DR_EKAFKA with
 * the reason (prefixed by `what`) in errstr. */
int dr__handoff_reader(rd_kafka_t **out, const char *name, const char *fetch_wait_ms,
                       const char *const *kafka_keys, const char *const *kafka_values, int n_kafka,
                       const char *what, char *errstr, size_t errstr_size);
/* Closes and destroys a reader made by dr__handoff_reader (NULL ok). */
void dr__handoff_reader_free(rd_kafka_t *reader);

/* While *cancel is true, a restore of c stops at its next batch of
 * messages with DR_ESTOPPED, leaving the store as a restore cut short does
 * (dr_changelog_restore): a standby gives a partition up at once when its
 * instance is assigned it. NULL: never. */
void dr__changelog_set_cancel(dr_changelog_t *c, const atomic_bool *cancel);

#endif /* DR_HANDOFF_INTERNAL_H */
