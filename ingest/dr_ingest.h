/* dr_ingest.h - the Kafka side of the input: a high-level consumer in a
 * consumer group, driven by a libuv loop (rd_kafka_queue_io_event_enable +
 * uv_poll, no polling thread), decoding UserEvent records in batches and
 * sending every record that fails to the dead-letter topic with the reason.
 *
 * Threads: every callback runs on the loop thread, inside the loop. */
#ifndef DR_INGEST_H
#define DR_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "dr_codec.h"
#include "dr_flight.h"
#include "dr_types.h"

/* Sizes of the per-partition table; partitions beyond this are refused. */
#define DR_INGEST_MAX_PARTITIONS 4096

typedef struct dr_ingest_handler {
    void *ctx;
    /* One valid event, in partition order. Return 0 when applied; a DR_E*
     * code with `reason` filled sends the record to the DLQ instead;
     * DR_ESTOPPED stops consumption before this record (it stays unread). */
    int (*on_event)(void *ctx, const dr_event_t *ev, int32_t partition, int64_t offset,
                    char *reason, size_t reason_size);
    /* After each batch taken from the queue. */
    void (*on_batch_end)(void *ctx);
    /* Partitions were assigned: set each element's .offset to where to start
     * (the next offset stored with the state), or leave RD_KAFKA_OFFSET_INVALID
     * for the group's committed offset; a position out of the log's range,
     * or none at all, is settled by conf.offset_reset.
     * `parts` holds only the partitions newly given to us, under both
     * protocols (partition.assignment.strategy): with the eager assignors
     * (range, roundrobin: the default) every rebalance revokes everything and
     * then assigns the whole new set, so `parts` is the full assignment; with
     * cooperative-sticky a rebalance adds a few partitions and the ones
     * already held keep flowing, untouched (no on_revoke/on_assign for them).
     * A partition assigned while consumption is paused starts paused. */
    void (*on_assign)(void *ctx, rd_kafka_topic_partition_list_t *parts);
    /* Partitions are being taken away: make their state durable now. `parts`
     * holds only those revoked: all of them under the eager assignors, just
     * the ones moving elsewhere under cooperative-sticky (the rest stay
     * assigned and keep flowing). Also called, with lost true, when the
     * partitions were lost (session timeout, fencing: another member may own
     * them already, so a Kafka commit may fail; a warning is logged): store
     * the state locally anyway, but write nothing another owner reads. */
    void (*on_revoke)(void *ctx, const rd_kafka_topic_partition_list_t *parts, bool lost);
    /* An erase request: a record keyed by a user id with a null value (a
     * tombstone) on the events topic, so it is ordered with the user's
     * events. Same return contract as on_event. May be NULL (then such
     * records are dead-lettered). */
    int (*on_erase)(void *ctx, int64_t user_id, int32_t partition, int64_t offset,
                    char *reason, size_t reason_size);
} dr_ingest_handler_t;

/* The events topic's partitions an instance takes without joining the
 * consumer group (ingest.partitions): all of them, or those listed. */
typedef struct dr_partition_set {
    bool all;
    int n;                                /* listed, ascending, each once */
    int32_t p[DR_INGEST_MAX_PARTITIONS];
} dr_partition_set_t;

/* Parses "all" or a list of partitions and ranges ("0-3,8") into out
 * (NULL: only checks it). 0, or DR_ECONFIG with the reason in errstr. */
int dr_ingest_parse_partitions(const char *spec, dr_partition_set_t *out, char *errstr, size_t n);

typedef struct dr_ingest_conf {
    const char *topic;          /* events */
    const char *dlq_topic;
    const char *group_id;
    int batch;                  /* records per consume call */
    const char *const *kafka_keys;   /* librdkafka properties, passed through */
    const char *const *kafka_values;
    int n_kafka;
    dr_codec_t *codec;          /* borrowed; used on the loop thread only */
    /* Where a partition starts when its position (stored, committed, or
     * reached) is out of the log's range: "earliest" (the default when NULL:
     * the oldest record still there), "latest" (the log end) or "fail"
     * (consumption halts); logged as an error with the records skipped. A
     * partition with no position at all (new group, new partition) starts
     * at the log start under "earliest" and "fail", at the end under
     * "latest" (logged as info). Overrides kafka.auto.offset.reset, which
     * is ignored for the events topic (with a warning). */
    const char *offset_reset;
    /* NULL: join the consumer group (subscribe), Kafka hands out the
     * partitions. Else these partitions, assigned at start without a group
     * join or rebalance (on_assign as usual, on_revoke at close): a restart
     * consumes at once. group_id then only names where the lag-monitoring
     * commits go. Each partition belongs in one instance's set. */
    const dr_partition_set_t *partitions;
} dr_ingest_conf_t;

/* Per-partition position and counters. */
typedef struct dr_partition_stats {
    bool assigned;
    int64_t next_offset;        /* next record to process (-1: none yet) */
    int64_t high_watermark;     /* last known log end (-1: unknown) */
    uint64_t consumed;          /* records taken from this partition */
    uint64_t dead_lettered;
} dr_partition_stats_t;

typedef struct dr_ingest_stats {
    uint64_t consumed;
    uint64_t events;            /* valid and applied */
    uint64_t erase_requests;    /* null values keyed by a user id, applied (not events) */
    uint64_t dead_lettered;
    uint64_t dlq_by_reason[8];  /* see dr_ingest_dlq_reason_name() */
    uint64_t pauses;
    uint64_t rebalances;
    bool paused;
    bool halted;                /* consumption stopped for good (fatal): a record could be
                                   neither handled nor dead-lettered (it stays unread), an
                                   (un)assign failed, or a position was out of range
                                   under offset_reset "fail"; see halt_reason */
    char halt_reason[192];      /* why, when halted */
    uint64_t offset_resets;     /* positions found out of the log's range (each logged) */
    uint64_t offset_reports_stale; /* librdkafka's reports of a lost position that a later
                                      assignment or record had overtaken (ignored) */
    uint64_t events_skipped;    /* records known to be lost to them: fallen out of
                                   retention before read, plus under "latest" the
                                   records jumped over */
} dr_ingest_stats_t;

/* DLQ reason classes, for metrics (the full reason text is in the header).
 * REGISTRY: the record's writer schema could not be fetched because the
 * Schema Registry was unreachable; such dead letters carry the header
 * dr.retryable: true (`driftrec dlq replay` puts them back). */
enum { DR_DLQ_DECODE, DR_DLQ_SCHEMA, DR_DLQ_INVALID, DR_DLQ_EMPTY, DR_DLQ_REJECTED,
       DR_DLQ_REGISTRY, DR_DLQ__COUNT };
const char *dr_ingest_dlq_reason_name(int cls);
/* The class of a DR_E* error returned for a record. */
int dr_ingest_dlq_class(int err);

typedef struct dr_ingest dr_ingest_t;

/* Creates the consumer (not yet subscribed). `producer` is borrowed and used
 * for the DLQ; `flight` counts DLQ messages in flight (see dr_emit.h's
 * delivery accounting: opaque carries the epoch tag). */
int dr_ingest_new(dr_ingest_t **out, uv_loop_t *loop, const dr_ingest_conf_t *conf,
                  const dr_ingest_handler_t *handler, rd_kafka_t *producer,
                  dr_flight_t *flight, char *errstr, size_t errstr_size);
/* Subscribes and starts watching the consumer queue. Safe to repeat. */
int dr_ingest_start(dr_ingest_t *in, char *errstr, size_t errstr_size);
/* Stops reading (the group membership stays until dr_ingest_close). */
void dr_ingest_stop(dr_ingest_t *in);
/* Leaves the group (revoking partitions, so on_revoke runs) and closes the
 * consumer. Blocks for at most the group's session handling (~1 s). */
void dr_ingest_close(dr_ingest_t *in);
/* Frees after the loop has closed our handles (run the loop once after
 * dr_ingest_close). NULL ok. */
void dr_ingest_free(dr_ingest_t *in);

/* Pauses or resumes every assigned partition (backpressure). Idempotent.
 * Paused, rebalances are still served: a partition assigned meanwhile
 * joins paused, one revoked meanwhile leaves unpaused; and the queue is
 * read at least every third of max.poll.interval.ms (at most 1 s apart),
 * so that a long pause does not drop the member from its group. */
void dr_ingest_set_paused(dr_ingest_t *in, bool paused);

/* Most bytes of a record's value a dead letter carries when the whole value
 * is over the producer's message.max.bytes: the head is parked, with the
 * header dr.value.truncated = the original length (the source headers say
 * where the whole record is). */
#define DR_DLQ_TRUNCATED_VALUE (64 * 1024)

/* Sends one record to the DLQ (used by the handler path internally, and
 * for records rejected later). A value too large for the producer is
 * truncated to DR_DLQ_TRUNCATED_VALUE bytes, so that one oversized record
 * cannot stop its partition. 0 or DR_EKAFKA. */
int dr_ingest_dead_letter(dr_ingest_t *in, const rd_kafka_message_t *msg, int cls,
                          const char *reason);

/* Positions of every partition ever assigned (index = partition id). */
const dr_partition_stats_t *dr_ingest_partitions(const dr_ingest_t *in, int *n);
const dr_ingest_stats_t *dr_ingest_stats(const dr_ingest_t *in);
/* Total lag over assigned partitions (log end - next offset), refreshing
 * the cached watermarks without blocking. */
int64_t dr_ingest_lag(dr_ingest_t *in);
/* Commits offsets to Kafka asynchronously: next_offsets[p] (n entries, -1:
 * none) for each still assigned partition. Pass the offsets just stored with
 * the state, never the current positions: a partition the store knows
 * nothing of starts from Kafka's committed offset, which must therefore
 * never run ahead of the store. */
void dr_ingest_commit_async(dr_ingest_t *in, const int64_t *next_offsets, int n);
/* A librdkafka log callback that writes through dr_log, dropping the
 * warnings about properties of the other client type (kafka.* settings are
 * shared by our consumer and producer). Install with rd_kafka_conf_set_log_cb. */
void dr_ingest_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* A librdkafka configuration: partitioner=murmur2_random first (Java's
 * default partitioning of keyed records, for every producer of ours), then
 * `defaults` (name/value pairs, may be NULL), then the pass-through kafka.*
 * properties (which win), with dr_ingest_kafka_log installed. NULL with "kafka.KEY: reason" in errstr
 * when a property is refused. The caller owns the result (rd_kafka_new
 * takes it over on success). */
rd_kafka_conf_t *dr_ingest_kafka_conf(const char *const (*defaults)[2], size_t n_defaults,
                                      const char *const *keys, const char *const *values, int n,
                                      char *errstr, size_t errstr_size);

/* fetch.wait.max.ms of our events and catalog consumers, unless
 * kafka.fetch.wait.max.ms says otherwise. A fetch that finds nothing new is
 * held this long; a real broker answers it as soon as a record arrives, the
 * embedded one only when the wait ends, which at librdkafka's 500 put lists
 * ~0.4 s behind their events (docs/BENCHMARKS.md, "Freshness"). 10 ms costs
 * an idle consumer 100 small requests a second. */
#define DR_INGEST_FETCH_WAIT_MS "10"

/* The user id in a message's key, as every producer of ours writes it
 * (common/dr_key.h: the decimal id, digits only, without sign, spaces or
 * leading zeros, below 2^53), or as Java's LongSerializer writes it (8 bytes, big-endian): true
 * and *id set, or false (other spellings of an id would be hashed to
 * another partition than the user's). Erase requests on the events topic,
 * lists and tombstones on the recommendations topic are keyed so. The
 * partitioner hashes the key's bytes: a producer keeps one kind of key for
 * all of a user's records, or its erase request lands in another partition. */
bool dr_ingest_user_key(const rd_kafka_message_t *m, int64_t *id);

/* A topic's partition count from the cluster's metadata (-1: no such
 * topic; where topics are auto-created, asking may create it). 0, or
 * DR_EKAFKA when the metadata cannot be read within timeout_ms. */
int dr_ingest_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count);
/* The same, saying why on DR_EKAFKA: "no broker answered at ADDRESS within
 * N s" (ADDRESS the handle's bootstrap.servers) in errstr, for the
 * commands that stop there rather than wait on records nobody takes. */
int dr_ingest_topic_partitions_err(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
                                   char *errstr, size_t errstr_size);

/* A partition's first kept and end offsets, asked of its leader, within
 * timeout_ms: what rd_kafka_query_watermark_offsets answers, which in
 * librdkafka before 2.3.0 (Debian's 2.0.2) ignores its timeout and waits
 * for as long as the leader does not answer (librdkafka issue #2588): the
 * loop thread, or a command, would hang. Asked as two ListOffsets by time
 * (beginning, end), which keep to the timeout. A librdkafka error, e.g.
 * RD_KAFKA_RESP_ERR__TIMED_OUT; *low and *high are -1 then. */
rd_kafka_resp_err_t dr_ingest_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *low,
                                         int64_t *high, int timeout_ms);

/* The consumer handle, for inspection (e.g. member id). */
rd_kafka_t *dr_ingest_consumer(dr_ingest_t *in);

/* ---- the catalog ------------------------------------------------------------
 * Item records (blocked, deleted, embeddings, publish times) and
 * tombstones are global: every instance
 * reads every partition of the catalog topic, without a consumer group,
 * from the offsets stored with its state, on the same loop. Partitions
 * added to the catalog topic later are picked up at the next start. */
typedef struct dr_catalog dr_catalog_t;

typedef struct dr_catalog_handler {
    void *ctx;
    /* One decoded item. Return 0, or a DR_E* code with `reason` filled to
     * dead-letter the record. */
    int (*on_item)(void *ctx, const dr_item_rec_t *item, char *reason, size_t reason_size);
    /* A tombstone (a record with no value, keyed by the item id as
     * dr_ingest_user_key reads ids): the catalog removed the item. NULL: such records are
     * dead-lettered. Returns as on_item. */
    int (*on_item_removed)(void *ctx, int64_t item_id, char *reason, size_t reason_size);
    /* Where to start reading a partition: the stored next offset, or -1
     * for the beginning. */
    int64_t (*start_offset)(void *ctx, int32_t partition);
    /* Called once, on the loop, when every partition has been read up to
     * where it ended when the reader started (at once when nothing is left
     * to read, or when those ends could not be learnt); NULL: not wanted. */
    void (*caught_up)(void *ctx);
} dr_catalog_handler_t;

/* conf gives the kafka properties, the codec and the DLQ; conf->topic is
 * ignored in favour of `topic`. Borrowed pointers as for dr_ingest_new. */
int dr_catalog_new(dr_catalog_t **out, uv_loop_t *loop, const char *topic,
                   const dr_ingest_conf_t *conf, const dr_catalog_handler_t *handler,
                   dr_ingest_t *dlq, char *errstr, size_t errstr_size);
/* Reads the topic's partitions and starts consuming them. Each
 * partition's end at start is what the answer to its first fetch says (no
 * blocking query: a partition whose leader does not answer yet holds the
 * catch-up, not the loop). */
int dr_catalog_start(dr_catalog_t *c, char *errstr, size_t errstr_size);
/* Records left to read before the reader has caught up with the ends the
 * topic had at start, over the partitions whose end is known (0 once it
 * has caught up), and the partitions whose first fetch was not answered
 * yet. */
int64_t dr_catalog_behind(const dr_catalog_t *c);
int dr_catalog_ends_unknown(const dr_catalog_t *c);
/* Whether it has caught up; checks the consumer's positions too (a
 * partition that ends in transaction markers delivers no last record),
 * calling handler->caught_up the first time it finds so. */
bool dr_catalog_caught_up(dr_catalog_t *c);
/* Stops and closes the loop handles (run the loop once more before free). */
void dr_catalog_close(dr_catalog_t *c);
void dr_catalog_free(dr_catalog_t *c); /* NULL ok */
/* Next offset per partition (index = partition id). */
const dr_partition_stats_t *dr_catalog_partitions(const dr_catalog_t *c, int *n);
uint64_t dr_catalog_items_seen(const dr_catalog_t *c);

#endif /* DR_INGEST_H */
