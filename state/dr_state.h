/* dr_state.h - durable state in RocksDB, and the hot-user cache in front of it.
 *
 * Column families: "users" (user_id -> user record), "items" (item_id ->
 * item record), "meta" (globals and consumed offsets). All writes go through
 * one WriteBatch per commit, so user/item parameters and the offsets of the
 * events they reflect are stored atomically: after a crash the pipeline
 * resumes exactly where the stored state ends.
 *
 * Threads: a dr_state_t may be used from several threads for reads and
 * writes (dr_state_write is serialised); a batch is built by one thread. The user cache is single-threaded. */
#ifndef DR_STATE_H
#define DR_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dr_learner.h"

/* How RocksDB compresses the blocks of its table files. Changing it
 * between starts is safe: each file records its own, and new files (from
 * flushes and compactions) take the new one. */
typedef enum dr_state_compression {
    DR_COMPRESS_NONE,
    DR_COMPRESS_SNAPPY,
    DR_COMPRESS_LZ4,
    DR_COMPRESS_ZSTD,
} dr_state_compression_t;

typedef struct dr_state_conf {
    const char *path;        /* directory; created when missing (unless read_only) */
    bool read_only;          /* open for inspection beside a running pipeline */
    bool sync;               /* fsync each commit (default false: WAL only) */
    size_t block_cache_mb;   /* RocksDB block cache (default 256) */
    size_t write_buffer_mb;  /* each memtable (default 64): a flush writes this much */
    dr_state_compression_t compression;            /* every level but the last (default lz4) */
    dr_state_compression_t bottommost_compression; /* the last level, most of the bytes (default zstd) */
    /* Free bytes the filesystem of `path` must keep (0: no check). Opening
     * for writing and every write are refused below it, so that RocksDB
     * itself never meets a full disk: Debian's RocksDB 7.8 is built with
     * assertions, and its info LOG writer aborts the process on the write
     * after a failed one (ENOSPC). */
    uint64_t min_free_bytes;
} dr_state_conf_t;

void dr_state_conf_default(dr_state_conf_t *conf);
/* "none", "snappy", "lz4" or "zstd" to *out: 0, or DR_EINVAL. */
int dr_state_compression_parse(const char *name, dr_state_compression_t *out);

typedef struct dr_state dr_state_t;

/* Opens (creating when allowed) the store. 0, or DR_ESTORE with RocksDB's
 * message (or the free-space shortfall) in errstr. */
int dr_state_open(dr_state_t **out, const dr_state_conf_t *conf, char *errstr,
                  size_t errstr_size);
void dr_state_close(dr_state_t *st); /* NULL ok */

/* Users are stored by the events-topic partition that carries their events
 * (a user's events are keyed by user, so one partition holds all of
 * them): a partition's users are restored, handed over and dropped on
 * their own. Partitions are >= 0; a negative one is DR_EINVAL. */

/* Reads a user record; *rec is malloc'd (caller frees). DR_ENOTFOUND when
 * the user has no stored state in that partition, DR_ESTORE on a read error;
 * on any error *rec is NULL (free() on it is safe). */
int dr_state_get_user(dr_state_t *st, int32_t partition, int64_t user_id, uint8_t **rec,
                      size_t *len);
/* Reads a meta value by name (e.g. "globals"); same contract as get_user. */
int dr_state_get_meta(dr_state_t *st, const char *key, uint8_t **val, size_t *len);
/* The next offset to consume for topic/partition, as last committed.
 * DR_ENOTFOUND when none was stored. */
int dr_state_get_offset(dr_state_t *st, const char *topic, int32_t partition,
                        int64_t *next_offset);
/* Calls fn for every stored item (in key order); stops at a non-zero return. */
typedef int (*dr_state_item_fn)(void *ctx, int64_t item_id, const void *rec, size_t len);
int dr_state_for_each_item(dr_state_t *st, dr_state_item_fn fn, void *ctx);
/* Calls fn for every stored user, by partition then id; stops at a non-zero
 * return. A user of a store written before users were keyed by partition
 * comes with partition -1 (see dr_state_upgrade_user_keys). */
typedef int (*dr_state_user_fn)(void *ctx, int32_t partition, int64_t user_id, const void *rec,
                                size_t len);
int dr_state_for_each_user(dr_state_t *st, dr_state_user_fn fn, void *ctx);
/* The same over one partition's users, in id order. */
int dr_state_for_each_partition_user(dr_state_t *st, int32_t partition, dr_state_user_fn fn,
                                     void *ctx);
/* A user whichever partition holds it (the lowest, should two): a seek and
 * a point read per partition held, or a scan of every user in a store not
 * upgraded yet (dr_state_upgrade_user_keys). *partition -1 for a user of
 * such a store under an 8-byte key. DR_ENOTFOUND when none holds it. */
int dr_state_find_user(dr_state_t *st, int64_t user_id, int32_t *partition, uint8_t **rec,
                       size_t *len);
/* Whether dr_state_upgrade_user_keys has run on this store. */
bool dr_state_users_keyed_by_partition(dr_state_t *st);
/* Stores written before users were keyed by partition hold 8-byte user
 * keys: moves each to the partition fn names (fn returns 0 and sets
 * *partition; a negative one drops the user), in one atomic write with a
 * mark that the store is upgraded. The first call on a store reads every
 * user; later calls read the mark only (a start does not grow with the
 * users stored). *moved counts the users moved. */
typedef int (*dr_state_partition_fn)(void *ctx, int64_t user_id, const void *rec, size_t len,
                                     int32_t *partition);
int dr_state_upgrade_user_keys(dr_state_t *st, dr_state_partition_fn fn, void *ctx,
                               uint64_t *moved, char *errstr, size_t errstr_size);
/* Calls fn for every stored consumed offset (where the pipeline resumes), in
 * key order; stops at a non-zero return. DR_ECORRUPT on a malformed entry. */
typedef int (*dr_state_offset_fn)(void *ctx, const char *topic, int32_t partition,
                                  int64_t next_offset);
int dr_state_for_each_offset(dr_state_t *st, dr_state_offset_fn fn, void *ctx);

/* A write batch. Everything put into one batch lands together or not at all. */
typedef struct dr_state_batch dr_state_batch_t;
dr_state_batch_t *dr_state_batch_new(void);
void dr_state_batch_free(dr_state_batch_t *b); /* NULL ok */
/* Empties a batch for the next one, keeping its buffer when it is at most
 * keep_bytes: a commit every second then neither grows a fresh buffer by
 * doubling nor faults its pages in again. */
void dr_state_batch_clear(dr_state_batch_t *b, size_t keep_bytes);
void dr_state_batch_put_user(dr_state_batch_t *b, int32_t partition, int64_t user_id,
                             const void *rec, size_t len);
/* The same without a copy: room for a record of at most max_len bytes,
 * for the caller to write in place (valid until the next put), or NULL
 * when the batch has failed (DR_ENOMEM, DR_EINVAL: a negative partition);
 * user_done(len) then puts it, len at most max_len. Nothing may be put in
 * between. */
uint8_t *dr_state_batch_user_room(dr_state_batch_t *b, int32_t partition, int64_t user_id,
                                  size_t max_len);
void dr_state_batch_user_done(dr_state_batch_t *b, size_t len);
void dr_state_batch_delete_user(dr_state_batch_t *b, int32_t partition, int64_t user_id);
/* Deletes every stored user of a partition (one range deletion). */
void dr_state_batch_drop_partition(dr_state_batch_t *b, int32_t partition);
void dr_state_batch_put_item(dr_state_batch_t *b, int64_t item_id, const void *rec, size_t len);
void dr_state_batch_delete_item(dr_state_batch_t *b, int64_t item_id); /* a removed item */
void dr_state_batch_put_meta(dr_state_batch_t *b, const char *key, const void *val, size_t len);
void dr_state_batch_put_offset(dr_state_batch_t *b, const char *topic, int32_t partition,
                               int64_t next_offset);
size_t dr_state_batch_count(const dr_state_batch_t *b);
/* Writes the batch atomically. 0, or DR_ESTORE with the reason in errstr
 * (a write error such as EFBIG or ENOSPC, or less free space than
 * min_free_bytes would be left); on failure nothing of the batch is stored. */
int dr_state_write(dr_state_t *st, dr_state_batch_t *b, char *errstr, size_t errstr_size);

/* Approximate on-disk size and pending-compaction bytes, for metrics. */
int dr_state_sizes(dr_state_t *st, uint64_t *live_bytes, uint64_t *pending_compaction);
/* Whether RocksDB currently stops writes (1/0) and the rate it delays them
 * to (bytes/s, 0 when not delayed): its write stalls, for metrics. */
int dr_state_write_stall(dr_state_t *st, uint64_t *stopped, uint64_t *delayed_rate);

/* --- hot-user cache (write-back) ------------------------------------------
 * Holds up to `capacity` users. A user is dirty from its change until the
 * commit that stores it is written; only clean users are evicted (CLOCK
 * order), so the cache can exceed capacity while many users are dirty. */
typedef struct dr_user_cache dr_user_cache_t;

int dr_user_cache_new(dr_user_cache_t **out, size_t capacity, int dim);
void dr_user_cache_free(dr_user_cache_t *c); /* frees every cached user */
/* The cached user, or NULL (a hit is counted; a NULL is not a miss, see
 * count_miss). The pointer stays valid until the next put or remove, and
 * across them while the user is dirty (dirty users are never evicted). */
dr_user_t *dr_user_cache_get(dr_user_cache_t *c, int64_t user_id);
/* The cached user, or NULL, without counting a hit or marking it
 * referenced: for the pipeline's own bookkeeping (lists owed). */
dr_user_t *dr_user_cache_peek(const dr_user_cache_t *c, int64_t user_id);
/* Inserts u (the cache takes ownership). Evicts clean users beyond capacity,
 * never u itself. A user already cached under u's id is replaced (and
 * freed); its dirty state carries over. DR_ENOMEM: u was not taken. */
int dr_user_cache_put(dr_user_cache_t *c, dr_user_t *u);
/* Removes and frees a user. */
void dr_user_cache_remove(dr_user_cache_t *c, int64_t user_id);
void dr_user_cache_mark_dirty(dr_user_cache_t *c, dr_user_t *u);
size_t dr_user_cache_size(const dr_user_cache_t *c);
/* Users whose state is not stored yet: dirty, or in the open commit. */
size_t dr_user_cache_dirty(const dr_user_cache_t *c);
/* Storing the dirty users takes two steps, because a commit's batch is
 * written only after the output it covers is delivered:
 * commit_begin calls fn for each dirty user, in the order they became
 * dirty (fn encodes it into the batch; it must not put or remove users).
 * Those users stay unevictable until commit_end: evicted in between, a user
 * would be reloaded from the older stored record. A user changed again
 * meanwhile stays dirty for the next commit. A non-zero return of fn stops
 * and is returned, and no commit is open. One commit is open at a time
 * (DR_EINVAL otherwise).
 * commit_end(written): true, the batch is stored: the commit's users that
 * did not change since become clean (and evictable); false, they all stay
 * dirty, in order, for the next commit. */
typedef int (*dr_user_fn)(void *ctx, dr_user_t *u);
int dr_user_cache_commit_begin(dr_user_cache_t *c, dr_user_fn fn, void *ctx);
void dr_user_cache_commit_end(dr_user_cache_t *c, bool written);
/* A commit built in steps between events, so that no single build holds
 * the caller for long: commit_step calls fn for up to max_users dirty users
 * not in the open commit yet (oldest first), adding them to it and opening
 * it when none is; commit_begin then encodes the rest and seals it. A user
 * changed again after its step is encoded again, by a later step or by
 * commit_begin (fn sees it twice: the later record must win). *encoded
 * (may be NULL) gets the users encoded. A failure of fn leaves no commit
 * open, as in commit_begin. DR_EINVAL while a sealed commit has not ended. */
int dr_user_cache_commit_step(dr_user_cache_t *c, dr_user_fn fn, void *ctx, size_t max_users,
                              size_t *encoded);
/* Dirty users a step or commit_begin would still encode (0 while sealed). */
size_t dr_user_cache_unstaged(const dr_user_cache_t *c);
/* Before it is sealed: the open commit's users count as not encoded, so
 * that they are encoded again after something older the caller put for
 * them (a partition's stored users written to its changelog again). */
void dr_user_cache_commit_restage(dr_user_cache_t *c);
/* Calls fn for every cached user (any order); stops at a non-zero return and
 * returns it. fn must not change the cache. */
typedef int (*dr_user_visit_fn)(void *ctx, const dr_user_t *u);
int dr_user_cache_for_each(const dr_user_cache_t *c, dr_user_visit_fn fn, void *ctx);
/* Hit/miss counters since creation. */
void dr_user_cache_stats(const dr_user_cache_t *c, uint64_t *hits, uint64_t *misses);
/* Counts a miss (the caller then loads the user from the store). */
void dr_user_cache_count_miss(dr_user_cache_t *c);

#endif /* DR_STATE_H */
