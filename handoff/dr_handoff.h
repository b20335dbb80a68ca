/* dr_handoff.h - a partition's user state moves with the partition: every
 * commit writes the partition's changed user records to a compacted
 * changelog topic (same partition number), followed by a commit marker, and
 * an instance that is assigned the partition restores the users from it
 * when its own stored state is missing or behind.
 *
 * Changelog records, all on the partition of the events they reflect:
 *   key "<user id>" (decimal), value = the user record (dr_user_encode);
 *   key "<user id>", null value = the user was erased (a tombstone);
 *   key "__marker", value = 8 bytes big-endian: the next events offset the
 *   records before it reflect (compaction keeps the last marker only).
 * Everything before the last marker is a consistent state of the partition
 * at that offset. Records after it are the start of a commit that never
 * finished (an instance died before its marker): they are ignored, and the
 * next owner supersedes them (see dr_restore_t.orphans). Kafka
 * transactions are not used (the embedded broker only pretends to have
 * them), so correctness rests on that order, which the idempotent
 * producer keeps within a partition.
 *
 * Fencing. Every message carries its writer's epoch for the partition
 * (header dr.epoch, common/dr_epoch.h; none: epoch 0). An owner takes a
 * new epoch when it is assigned the partition, above every epoch it read
 * (dr_changelog_next_epoch). A reader keeps the highest epoch seen so far
 * in log order and ignores messages of a lower one, and the records it had
 * staged when a higher one appears: what a former owner that does not know
 * it lost the partition (a zombie: paused past its session timeout) wrote
 * after the new owner's first message does not enter any restore.
 *
 * Threads: one thread (the pipeline's loop). */
#ifndef DR_HANDOFF_H
#define DR_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "dr_learner.h"
#include "dr_state.h"

#define DR_CHANGELOG_MARKER_KEY "__marker"

typedef struct dr_changelog dr_changelog_t;

/* A changelog on `topic`, produced through `producer` (borrowed; its
 * delivery reports carry the opaque given to put/mark). The kafka.*
 * properties configure the consumer a restore reads with. */
int dr_changelog_new(dr_changelog_t **out, rd_kafka_t *producer, const char *topic,
                     const char *const *kafka_keys, const char *const *kafka_values, int n_kafka,
                     char *errstr, size_t errstr_size);
void dr_changelog_free(dr_changelog_t *c); /* NULL ok */
const char *dr_changelog_topic(const dr_changelog_t *c);

/* Checks that the changelog topic exists with at least as many partitions
 * as the events topic (a user's records go to its events partition). 0, or
 * DR_ECONFIG with what to create in errstr, DR_EKAFKA when the metadata
 * cannot be read within timeout_ms. */
int dr_changelog_check(dr_changelog_t *c, const char *events_topic, int timeout_ms, char *errstr,
                       size_t errstr_size);

/* Produces a user's record (rec NULL: a tombstone) or a partition's commit
 * marker, under the writer's epoch for the partition. A full producer queue
 * is waited out (serving delivery reports) for up to wait_ms. 0, DR_EFULL
 * (still full), or DR_EKAFKA. */
int dr_changelog_put(dr_changelog_t *c, int32_t partition, int64_t epoch, int64_t user_id,
                     const void *rec, size_t len, void *opaque, int wait_ms);
int dr_changelog_mark(dr_changelog_t *c, int32_t partition, int64_t epoch, int64_t next_offset,
                      void *opaque, int wait_ms);

/* The epoch a new owner writes under: above `seen` (the restore's
 * dr_restore_t.epoch) and, so that owners that never read each other's
 * messages still order, at least the wall clock in microseconds (a new
 * owner is assigned a partition at least a session timeout after a zombie
 * took its epoch). */
int64_t dr_changelog_next_epoch(int64_t seen);

/* The store's position in a partition's changelog (the offset after the
 * marker of the last commit it stored; -1: none) and the epoch in force
 * there, written with a commit's batch and read back at the next
 * assignment. A position of -1 makes the next restore read the whole
 * changelog (a store written while the partition was lost). */
void dr_changelog_batch_position(dr_changelog_t *c, dr_state_batch_t *b, int32_t partition,
                                 int64_t pos, int64_t epoch);
void dr_changelog_stored_position(dr_changelog_t *c, dr_state_t *st, int32_t partition,
                                  int64_t *pos, int64_t *epoch);

/* What reading a changelog partition found, and what a restore did. */
typedef struct dr_restore {
    int64_t marker_offset;   /* next events offset of the last marker; -1: none */
    int64_t marker_pos;      /* changelog offset just after that marker; -1: none */
    int64_t log_start;       /* the changelog's first offset (> 0: its head is gone) */
    int64_t log_end;         /* ... and its end when the restore began (where the
                              * next message lands unless someone else writes) */
    uint64_t records;        /* changelog messages read */
    uint64_t bytes;          /* ... and their key + value bytes */
    uint64_t users;          /* user records (and tombstones) applied to the store */
    uint64_t fenced;         /* messages of a superseded owner (lower epoch) ignored */
    int64_t epoch;           /* the highest epoch read (the local one when nothing was) */
    bool incremental;        /* read from the store's changelog position on */
    bool restored;           /* the store's users of the partition were brought up to it */
    double seconds;
    int64_t *orphans;        /* users with records after the last marker (malloc'd) */
    size_t n_orphans;
} dr_restore_t;
void dr_restore_clear(dr_restore_t *r); /* frees orphans */

/* Brings the store's users of `partition` up to the changelog, when needed.
 * local_next is the store's next events offset for the partition, local_pos
 * the changelog position it reflects (the offset after the marker of the
 * commit it stored; -1: none) and local_epoch the epoch in force there
 * (both from dr_changelog_stored_position). When local_pos is within the
 * changelog, only what follows it is read (a restart or a return reads what
 * others wrote meanwhile, nothing more), and a newer marker's records are
 * applied on top. Otherwise the whole changelog is read: when its last
 * marker is beyond local_next (or the store has none), the partition's
 * stored users are dropped and replaced by the changelog's state at the
 * marker. A restore writes the marker's events offset and changelog
 * position with its last batch (a restore cut short leaves both where they
 * were, so the next one starts again). Either way r tells the last marker
 * and the orphans. Logs progress every few seconds. 0, DR_EKAFKA (the
 * changelog could not be read within timeout_ms), DR_ESTORE, DR_ENOMEM. */
int dr_changelog_restore(dr_changelog_t *c, dr_state_t *st, const char *events_topic,
                         int32_t partition, int64_t local_next, int64_t local_pos,
                         int64_t local_epoch, int timeout_ms, dr_restore_t *r, char *errstr,
                         size_t errstr_size);

/* ---- standby replicas ---------------------------------------------------------
 * A standby keeps a warm copy of every events partition its instance does
 * not own: on its own thread, every interval, it brings the store's users of
 * each such partition up to the changelog's last marker (an incremental
 * dr_changelog_restore from the stored position, with its own reader), so
 * that when the instance is assigned the partition its restore reads only
 * what was written since. Partitions it never held are read whole once.
 * A copy is stored as a restore stores it (users, events offset, changelog
 * position and epoch), so fencing and an unfinished commit are handled as
 * there. It writes only partitions its instance does not own, so its
 * batches never meet the pipeline's (dr_state_write serialises them).
 *
 * Threads: new, begin, take, release, stats and free from the pipeline's
 * loop; the reading runs on the standby's own thread. */
typedef struct dr_standby dr_standby_t;

typedef struct dr_standby_stats {
    uint64_t rounds;         /* passes over the partitions not owned */
    uint64_t records;        /* changelog messages read */
    uint64_t users;          /* user records and tombstones applied to the store */
    uint64_t fenced;         /* messages of a superseded owner ignored */
    uint64_t failures;       /* reads that failed (tried again at the next round) */
    uint64_t cancelled;      /* reads cut short because the instance took the partition */
    double seconds;          /* time spent reading */
    int32_t partitions;      /* partitions kept warm now */
    int64_t behind;          /* changelog messages past the last marker applied, at the
                              * last read of each partition kept (an unfinished commit's) */
} dr_standby_stats_t;

/* A standby for the partitions of events_topic (on its changelog
 * changelog_topic), catching up every interval_ms; producer is borrowed for
 * metadata only. It reads nothing before dr_standby_begin. 0, DR_ENOMEM or
 * DR_EKAFKA/DR_ECONFIG (its reader) with the reason in errstr. */
int dr_standby_new(dr_standby_t **out, dr_state_t *st, rd_kafka_t *producer,
                   const char *changelog_topic, const char *events_topic, int interval_ms,
                   int timeout_ms, const char *const *kafka_keys,
                   const char *const *kafka_values, int n_kafka, char *errstr,
                   size_t errstr_size);
/* Starts the rounds (call once the first assignment is known, so that the
 * partitions about to be owned are not read in vain). Idempotent. */
void dr_standby_begin(dr_standby_t *s);
/* The instance owns the partition from now on: a read of it under way is
 * cut short and waited for, and it is left alone until released. True when
 * the standby wrote the partition's users since it was released (the
 * instance's cached copies of them are stale). */
bool dr_standby_take(dr_standby_t *s, int32_t partition);
/* The instance no longer owns the partition (after its revoke commit). */
void dr_standby_release(dr_standby_t *s, int32_t partition);
void dr_standby_stats(dr_standby_t *s, dr_standby_stats_t *out);
/* Stops the thread (cutting a read short) and frees. NULL ok. */
void dr_standby_free(dr_standby_t *s);

/* ---- shared parameters: the model topic -------------------------------------
 * Every instance learns the items and the prior from its own users'
 * events; through the model topic (topic.model) each publishes the sparse
 * changes it made (dr_model_sync_export) and adds everyone else's
 * (dr_model_sync_import). Messages are keyed by the publishing instance's
 * id (decimal); an instance skips its own. Every instance reads every
 * partition, from the positions stored with its state (a new one: from the
 * beginning, which bootstraps its items). */
typedef struct dr_model_sync dr_model_sync_t;

typedef struct dr_model_sync_stats {
    uint64_t published;        /* messages produced */
    uint64_t items_published;
    uint64_t imported;         /* others' messages applied */
    uint64_t items_imported;
    uint64_t items_skipped;    /* refused (catalog full, not finite, ...) */
    uint64_t rejected;         /* malformed or of another dimension */
    uint64_t duplicates;       /* a message applied already (delivered twice) */
    uint64_t own_recovered;    /* this instance's, published by a process that died before its commit */
    uint64_t lost;             /* messages that could not be produced or delivered */
} dr_model_sync_stats_t;

/* A sync on `topic` for instance `instance_id` (its low 53 bits); producer borrowed; the
 * kafka.* properties configure its reader. */
int dr_model_sync_new(dr_model_sync_t **out, rd_kafka_t *producer, const char *topic,
                      uint64_t instance_id, const char *const *kafka_keys,
                      const char *const *kafka_values, int n_kafka, char *errstr,
                      size_t errstr_size);
void dr_model_sync_free(dr_model_sync_t *s); /* NULL ok */
/* Starts reading every partition of the topic, each from start(ctx, p) (a
 * stored next offset, or -1: the beginning). DR_ECONFIG when the topic does
 * not exist (errstr says what to create), DR_EKAFKA when its metadata
 * cannot be read. */
int dr_model_sync_start(dr_model_sync_t *s, int64_t (*start)(void *ctx, int32_t partition),
                        void *ctx, int timeout_ms, char *errstr, size_t errstr_size);
/* Publishes everything m changed since the last call (in messages of at
 * most 4,096 items, *messages of them) with the given delivery opaque.
 * Each message carries this instance's next sequence number (header
 * dr.seq); a reader applies an instance's messages only above the last
 * number it applied of it. Publish with a commit and store the sync's
 * state (dr_model_sync_encode_state) and the model's pending changes
 * (dr_model_sync_save_pending) in the same commit, written after the
 * messages are delivered. A process that dies between the delivery and
 * its write leaves messages the others applied and its own items lack:
 * its next process applies them as the others did (its numbers start a new
 * epoch, above any number the dead one used). 0, or DR_EKAFKA. */
int dr_model_sync_publish(dr_model_sync_t *s, dr_model_t *m, void *opaque, size_t *messages);
/* The sequence numbers (own, and the last applied of each other instance)
 * as one value for the state, and back (DR_ECORRUPT). */
int dr_model_sync_encode_state(const dr_model_sync_t *s, uint8_t **out, size_t *len);
int dr_model_sync_load_state(dr_model_sync_t *s, const void *buf, size_t len);
/* Numbers this process's messages above any a previous process of this
 * instance may have published: call once at start, after loading the state,
 * and store the state (dr_model_sync_encode_state) before publishing. */
void dr_model_sync_begin_epoch(dr_model_sync_t *s);
/* Applies the others' messages waiting (at most max); never blocks. */
void dr_model_sync_poll(dr_model_sync_t *s, dr_model_t *m, int max);
/* Messages of the topic not read yet, from the high watermarks the reader
 * has seen; -1 while one is not known yet (nothing fetched). */
int64_t dr_model_sync_lag(const dr_model_sync_t *s);
/* Next offset per partition read so far (-1: none); *n partitions. */
const int64_t *dr_model_sync_positions(const dr_model_sync_t *s, int *n);
const char *dr_model_sync_topic(const dr_model_sync_t *s);
dr_model_sync_stats_t *dr_model_sync_stats(dr_model_sync_t *s);

#endif /* DR_HANDOFF_H */
