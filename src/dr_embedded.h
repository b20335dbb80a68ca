/* dr_embedded.h - the embedded broker: librdkafka's mock cluster
 * (rdkafka_mock.h), a real Kafka-protocol server on 127.0.0.1 that our own
 * clients, kcat and other processes talk to over TCP.
 *
 * Limits of the mock in librdkafka 2.0.2 (see docs/EMBEDDED-BROKER.md):
 * each partition keeps only ~5 MiB or 100k batches (older data is dropped
 * silently), data lives in memory, CreateTopics is not served (topics are
 * created here with the mock API), transactions are not real. */
#ifndef DR_EMBEDDED_H
#define DR_EMBEDDED_H

#include <stddef.h>
#include <stdint.h>

typedef struct dr_embedded dr_embedded_t;

/* Starts a cluster of `brokers` brokers. 0 or DR_EKAFKA with errstr. */
int dr_embedded_new(dr_embedded_t **out, int brokers, char *errstr, size_t errstr_size);
void dr_embedded_free(dr_embedded_t *b); /* stops the cluster; NULL ok */
/* "127.0.0.1:port,..." for bootstrap.servers. */
const char *dr_embedded_bootstraps(const dr_embedded_t *b);
/* Creates a topic (idempotent when it exists with the same partitions). */
int dr_embedded_create_topic(dr_embedded_t *b, const char *topic, int partitions,
                             char *errstr, size_t errstr_size);
/* The mock cluster handle, for fault injection in tests
 * (rd_kafka_mock_cluster_t *). */
void *dr_embedded_mock(dr_embedded_t *b);

/* `driftrec broker [--partitions P] [--brokers B] [--topic T]...`: runs a
 * cluster until SIGINT/SIGTERM, printing its bootstrap address first. */
int dr_cmd_broker(int argc, char **argv);

#endif /* DR_EMBEDDED_H */
