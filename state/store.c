/* store.c - driftrec's durable state in RocksDB: users, items and meta
 * (globals, consumed offsets) in three column families, written together by
 * one WriteBatch per commit so that parameters and offsets never diverge. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/statvfs.h>

#include <rocksdb/c.h>

#include "dr_err.h"
#include "dr_log.h"
#include "dr_state.h"

/* Column families in the order they are opened; "default" is unused but
 * RocksDB requires it to be named on every open. */
enum { CF_DEFAULT, CF_USERS, CF_ITEMS, CF_META, CF_COUNT };
static const char *const cf_names[CF_COUNT] = {"default", "users", "items", "meta"};

#define ID_KEY_LEN 8
/* users: partition (4 bytes) then user id (8), both big-endian, so that a
 * partition's users are one key range (restored, handed over and dropped
 * on their own) and a partition's users come in id order. */
#define USER_KEY_LEN 12
/* Meta key: every user of this store is keyed by partition (the upgrade
 * from 8-byte keys ran, or found nothing to move). */
#define KEYED_BY_PARTITION "users/keyed_by_partition"
/* "offset/<topic>/<partition>"; Kafka topic names are at most 249 bytes. */
#define OFFSET_KEY_MAX 320
#define SCAN_READAHEAD (2u << 20) /* bytes a scan reads ahead */

struct dr_state {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_cache_t *block_cache;
    rocksdb_readoptions_t *ropts;
    rocksdb_readoptions_t *scan_ropts; /* full scans: do not churn the block cache */
    rocksdb_writeoptions_t *wopts;
    rocksdb_writebatch_t *wb;          /* reused by dr_state_write, under write_lock */
    pthread_mutex_t write_lock;        /* a standby replica writes beside the pipeline */
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    bool read_only;
    char *path;
    uint64_t min_free;                 /* conf->min_free_bytes */
};

/* A batch is recorded in our own buffer and replayed into a RocksDB
 * WriteBatch at write time: column-family handles belong to an open store,
 * and dr_state_batch_new() has none. Record: op, cf, klen, vlen, key, value. */
enum { OP_PUT = 1, OP_DELETE = 2, OP_DELETE_RANGE = 3 }; /* range: key = begin, value = end */
#define REC_HDR (1 + 1 + 4 + 4)

struct dr_state_batch {
    uint8_t *buf;
    size_t len, cap;
    size_t count;
    int error; /* first failure while building (DR_ENOMEM, DR_EINVAL); sticky */
};

void dr_state_conf_default(dr_state_conf_t *conf) {
    conf->path = NULL;
    conf->read_only = false;
    conf->sync = false;
    conf->block_cache_mb = 256;
    conf->write_buffer_mb = 64;
    conf->compression = DR_COMPRESS_LZ4;
    conf->bottommost_compression = DR_COMPRESS_ZSTD;
    conf->min_free_bytes = 0;
}

static const char *const compression_names[] = {"none", "snappy", "lz4", "zstd"};

int dr_state_compression_parse(const char *name, dr_state_compression_t *out) {
    for (int c = DR_COMPRESS_NONE; c <= DR_COMPRESS_ZSTD; c++)
        if (name && strcmp(name, compression_names[c]) == 0) {
            *out = (dr_state_compression_t)c;
            return 0;
        }
    return DR_EINVAL;
}

static int rocksdb_compression(dr_state_compression_t c) {
    switch (c) {
    case DR_COMPRESS_NONE: return rocksdb_no_compression;
    case DR_COMPRESS_SNAPPY: return rocksdb_snappy_compression;
    case DR_COMPRESS_LZ4: return rocksdb_lz4_compression;
    case DR_COMPRESS_ZSTD: return rocksdb_zstd_compression;
    }
    return rocksdb_lz4_compression;
}

static void set_err(char *errstr, size_t errstr_size, const char *what, const char *msg) {
    if (errstr && errstr_size > 0)
        snprintf(errstr, errstr_size, "%s: %s", what, msg ? msg : "unknown error");
}

/* Converts a RocksDB error into DR_ESTORE, copying and freeing its text. */
static int store_err(char *errptr, char *errstr, size_t errstr_size, const char *what) {
    set_err(errstr, errstr_size, what, errptr);
    rocksdb_free(errptr);
    return DR_ESTORE;
}

/* A read error has no errstr to go to: log RocksDB's reason, free it. */
static int read_err(char *errptr, const char *what) {
    dr_log(DR_LOG_ERROR, "state", "%s failed: %s", what, errptr);
    rocksdb_free(errptr);
    return DR_ESTORE;
}

/* Big-endian so that RocksDB's bytewise key order is id order (ids are
 * non-negative, below 2^53). */
static void encode_id(uint8_t key[ID_KEY_LEN], int64_t id) {
    uint64_t v = (uint64_t)id;
    for (int i = ID_KEY_LEN - 1; i >= 0; i--, v >>= 8)
        key[i] = (uint8_t)v;
}

static int64_t decode_id(const uint8_t key[ID_KEY_LEN]) {
    uint64_t v = 0;
    for (int i = 0; i < ID_KEY_LEN; i++)
        v = v << 8 | key[i];
    return (int64_t)v;
}

/* The 4 big-endian bytes a partition's user keys begin with. */
static void encode_partition(uint8_t key[4], uint32_t partition) {
    for (int i = 3; i >= 0; i--, partition >>= 8)
        key[i] = (uint8_t)partition;
}

static void encode_user_key(uint8_t key[USER_KEY_LEN], int32_t partition, int64_t user_id) {
    encode_partition(key, (uint32_t)partition);
    encode_id(key + 4, user_id);
}

static int32_t decode_partition(const uint8_t key[4]) {
    return (int32_t)((uint32_t)key[0] << 24 | (uint32_t)key[1] << 16 | (uint32_t)key[2] << 8 | key[3]);
}

static void encode_le64(uint8_t out[8], uint64_t v) {
    for (int i = 0; i < 8; i++, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t decode_le64(const uint8_t in[8]) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | in[i];
    return v;
}

/* Returns the key length, or -1 when the topic is too long for a key. */
static int offset_key(char key[OFFSET_KEY_MAX], const char *topic, int32_t partition) {
    int n = snprintf(key, OFFSET_KEY_MAX, "offset/%s/%d", topic, (int)partition);
    return n < 0 || n >= OFFSET_KEY_MAX ? -1 : n;
}

/* --- free space ------------------------------------------------------------ */

/* Bytes an unprivileged writer may still use on the filesystem of path, or
 * of its nearest existing ancestor (the store may not exist yet); -1 when
 * that cannot be told. */
static int64_t free_bytes(const char *path) {
    char dir[PATH_MAX];
    struct statvfs sv;
    int n = snprintf(dir, sizeof(dir), "%s", path);

    if (n < 0 || (size_t)n >= sizeof(dir))
        return -1;
    while (statvfs(dir, &sv) != 0) {
        char *slash = strrchr(dir, '/');

        if (errno != ENOENT)
            return -1;
        if (!slash)
            snprintf(dir, sizeof(dir), ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
    }
    return (int64_t)((uint64_t)sv.f_bavail * sv.f_frsize);
}

/* DR_ESTORE when writing `need` more bytes would leave less than min_free. */
static int check_free(const char *path, uint64_t min_free, uint64_t need, const char *what,
                      char *errstr, size_t errstr_size) {
    int64_t avail;

    if (min_free == 0)
        return 0;
    avail = free_bytes(path);
    if (avail < 0 || (uint64_t)avail >= min_free + need)
        return 0;
    if (errstr && errstr_size > 0)
        snprintf(errstr, errstr_size,
                 "%s refused: the filesystem of %s is nearly full (%.1f MiB free, %.1f MiB "
                 "must stay free: state.min.free.mb)",
                 what, path, (double)avail / (1 << 20), (double)min_free / (1 << 20));
    return DR_ESTORE;
}

/* --- open / close --------------------------------------------------------- */

static void build_options(dr_state_t *st, const dr_state_conf_t *conf) {
    size_t mb = conf->block_cache_mb ? conf->block_cache_mb : 256;
    rocksdb_block_based_table_options_t *bbt = rocksdb_block_based_options_create();

    st->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->opts, !conf->read_only);
    rocksdb_options_set_create_missing_column_families(st->opts, !conf->read_only);
    rocksdb_options_set_keep_log_file_num(st->opts, 4);
    st->block_cache = rocksdb_cache_create_lru(mb << 20);
    rocksdb_block_based_options_set_block_cache(bbt, st->block_cache);
    /* The table options take ownership of the filter policy. */
    rocksdb_block_based_options_set_filter_policy(bbt, rocksdb_filterpolicy_create_bloom_full(10));
    /* The factory copies the table options, so they can go right away. */
    rocksdb_options_set_block_based_table_factory(st->opts, bbt);
    /* A bloom filter over each memtable's keys (5% of its size): a look-up
     * of a key the memtables do not hold (a new user, or one last stored
     * before them) skips their skip lists, which otherwise cost a search
     * each, cache misses included. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(st->opts, 0.05);
    rocksdb_options_set_memtable_whole_key_filtering(st->opts, 1);
    rocksdb_block_based_options_destroy(bbt);
    /* The write pattern is small records rewritten often (a user's record
     * at each commit that changed it): the upper levels are rewritten soon
     * and get a fast compression, the last level holds nearly every live
     * record once and gets a dense one (docs/BENCHMARKS.md, "RocksDB's
     * compression and memtables"). */
    rocksdb_options_set_write_buffer_size(st->opts, (conf->write_buffer_mb ? conf->write_buffer_mb : 64) << 20);
    rocksdb_options_set_compression(st->opts, rocksdb_compression(conf->compression));
    rocksdb_options_set_bottommost_compression(st->opts, rocksdb_compression(conf->bottommost_compression));

    st->ropts = rocksdb_readoptions_create();
    st->scan_ropts = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(st->scan_ropts, 0);
    /* A scan reads a whole column family or partition in order (the items
     * at every start): one read per SCAN_READAHEAD instead of one per block
     * (~2 KB), 32,000 reads for 5,000 items with full co-engagement tables. */
    rocksdb_readoptions_set_readahead_size(st->scan_ropts, SCAN_READAHEAD);
    st->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wopts, conf->sync);
    st->wb = rocksdb_writebatch_create();
    pthread_mutex_init(&st->write_lock, NULL);
}

int dr_state_open(dr_state_t **out, const dr_state_conf_t *conf, char *errstr,
                  size_t errstr_size) {
    const rocksdb_options_t *cf_opts[CF_COUNT];
    char *err = NULL;
    dr_state_t *st;

    *out = NULL;
    if (!conf || !conf->path || !*conf->path) {
        set_err(errstr, errstr_size, "state open", "no path given");
        return DR_EINVAL;
    }
    if (!conf->read_only) {
        int rc = check_free(conf->path, conf->min_free_bytes, 0, "state open", errstr,
                            errstr_size);

        if (rc)
            return rc;
    }
    st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(conf->path))) {
        free(st);
        set_err(errstr, errstr_size, "state open", "out of memory");
        return DR_ENOMEM;
    }
    st->min_free = conf->min_free_bytes;
    build_options(st, conf);
    for (int i = 0; i < CF_COUNT; i++)
        cf_opts[i] = st->opts;
    st->read_only = conf->read_only;
    if (conf->read_only)
        /* Takes no LOCK and replays the WAL into memory: a point-in-time view
         * that can sit beside a running writer. */
        st->db = rocksdb_open_for_read_only_column_families(
            st->opts, conf->path, CF_COUNT, cf_names, cf_opts, st->cf, 0, &err);
    else
        st->db = rocksdb_open_column_families(st->opts, conf->path, CF_COUNT, cf_names,
                                              cf_opts, st->cf, &err);
    if (err) {
        int rc = store_err(err, errstr, errstr_size, conf->path);

        dr_state_close(st); /* no db and no handles were returned */
        return rc;
    }
    *out = st;
    return 0;
}

/* Writes the memtables to SST files: a store closed this way reopens without
 * replaying its write-ahead log, which took ~2 s per 100,000 users changed
 * (docs/BENCHMARKS.md, "State"). A crash still replays it, as it must.
 * Best effort: the WAL holds everything either way. */
static void flush_memtables(dr_state_t *st) {
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    if (!fo)
        return;
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < CF_COUNT; i++) {
        char *err = NULL;
        if (st->cf[i])
            rocksdb_flush_cf(st->db, fo, st->cf[i], &err);
        free(err);
    }
    rocksdb_flushoptions_destroy(fo);
}

void dr_state_close(dr_state_t *st) {
    if (!st)
        return;
    if (st->db && !st->read_only)
        flush_memtables(st);
    for (int i = 0; i < CF_COUNT; i++)
        if (st->cf[i])
            rocksdb_column_family_handle_destroy(st->cf[i]);
    if (st->db)
        rocksdb_close(st->db);
    if (st->wb) {
        rocksdb_writebatch_destroy(st->wb);
        pthread_mutex_destroy(&st->write_lock);
    }
    if (st->wopts)
        rocksdb_writeoptions_destroy(st->wopts);
    if (st->scan_ropts)
        rocksdb_readoptions_destroy(st->scan_ropts);
    if (st->ropts)
        rocksdb_readoptions_destroy(st->ropts);
    if (st->opts)
        rocksdb_options_destroy(st->opts);
    if (st->block_cache)
        rocksdb_cache_destroy(st->block_cache);
    free(st->path);
    free(st);
}

/* --- reads ---------------------------------------------------------------- */

/* Copies a value into memory of our own malloc (callers free() it); a
 * zero-length value still yields a non-NULL pointer. */
static int get_cf(dr_state_t *st, int cf, const void *key, size_t klen, uint8_t **val,
                  size_t *len) {
    char *err = NULL;
    const char *data;
    size_t n;
    rocksdb_pinnableslice_t *ps;

    *val = NULL; /* a failed read leaves nothing to free, whatever the caller passed */
    *len = 0;
    ps = rocksdb_get_pinned_cf(st->db, st->ropts, st->cf[cf], key, klen, &err);

    if (err)
        return read_err(err, "state read");
    if (!ps)
        return DR_ENOTFOUND;
    data = rocksdb_pinnableslice_value(ps, &n);
    *val = malloc(n ? n : 1);
    if (!*val) {
        rocksdb_pinnableslice_destroy(ps);
        return DR_ENOMEM;
    }
    memcpy(*val, data, n);
    *len = n;
    rocksdb_pinnableslice_destroy(ps);
    return 0;
}

int dr_state_get_user(dr_state_t *st, int32_t partition, int64_t user_id, uint8_t **rec,
                      size_t *len) {
    uint8_t key[USER_KEY_LEN];

    *rec = NULL;
    *len = 0;
    if (partition < 0)
        return DR_EINVAL;
    encode_user_key(key, partition, user_id);
    return get_cf(st, CF_USERS, key, sizeof(key), rec, len);
}

int dr_state_get_meta(dr_state_t *st, const char *key, uint8_t **val, size_t *len) {
    *val = NULL;
    *len = 0;
    if (!key)
        return DR_EINVAL;
    return get_cf(st, CF_META, key, strlen(key), val, len);
}

int dr_state_get_offset(dr_state_t *st, const char *topic, int32_t partition,
                        int64_t *next_offset) {
    char key[OFFSET_KEY_MAX];
    uint8_t *val;
    size_t len;
    int klen = topic ? offset_key(key, topic, partition) : -1;
    int rc;

    if (klen < 0)
        return DR_EINVAL;
    rc = get_cf(st, CF_META, key, (size_t)klen, &val, &len);
    if (rc)
        return rc;
    if (len == 8)
        *next_offset = (int64_t)decode_le64(val);
    else
        rc = DR_ECORRUPT;
    free(val);
    return rc;
}

/* Walks one id-keyed column family in key (= id) order. */
static int for_each_id(dr_state_t *st, int cf,
                       int (*fn)(void *ctx, int64_t id, const void *rec, size_t len),
                       void *ctx) {
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->scan_ropts, st->cf[cf]);
    char *err = NULL;
    int rc = 0;

    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);

        if (klen != ID_KEY_LEN) {
            rc = DR_ECORRUPT;
            goto out_it;
        }
        rc = fn(ctx, decode_id((const uint8_t *)key), val, vlen);
        if (rc)
            goto out_it;
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = read_err(err, "state scan");
out_it:
    rocksdb_iter_destroy(it);
    return rc;
}

int dr_state_for_each_item(dr_state_t *st, dr_state_item_fn fn, void *ctx) {
    return for_each_id(st, CF_ITEMS, fn, ctx);
}

static void batch_add(dr_state_batch_t *b, int op, int cf, const void *key, size_t klen,
                      const void *val, size_t vlen);

/* Walks the users between two keys (end NULL: to the end). A key of 8
 * bytes is a store written before users were keyed by partition: it is
 * reported with partition -1 (dr_state_upgrade_user_keys moves it). */
static int scan_users(dr_state_t *st, const uint8_t *begin, size_t blen, const uint8_t *end,
                      size_t elen, dr_state_user_fn fn, void *ctx) {
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->scan_ropts, st->cf[CF_USERS]);
    char *err = NULL;
    int rc = 0;

    if (begin)
        rocksdb_iter_seek(it, (const char *)begin, blen);
    else
        rocksdb_iter_seek_to_first(it);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);

        if (end && klen >= elen && memcmp(key, end, elen) >= 0)
            break;
        if (klen == USER_KEY_LEN)
            rc = fn(ctx, decode_partition(key), decode_id(key + 4), val, vlen);
        else if (klen == ID_KEY_LEN)
            rc = fn(ctx, -1, decode_id(key), val, vlen);
        else
            rc = DR_ECORRUPT;
        if (rc)
            goto out_it;
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = read_err(err, "state scan");
out_it:
    rocksdb_iter_destroy(it);
    return rc;
}

/* fn for a store not upgraded yet: the user asked for, wherever it is. */
typedef struct user_find {
    int64_t user_id;
    int32_t partition;
    uint8_t *rec;
    size_t len;
} user_find_t;

static int find_user_cb(void *ctx, int32_t partition, int64_t user_id, const void *rec, size_t len) {
    user_find_t *f = ctx;
    if (user_id != f->user_id)
        return 0;
    if (!(f->rec = malloc(len ? len : 1)))
        return DR_ENOMEM;
    memcpy(f->rec, rec, len);
    f->len = len;
    f->partition = partition;
    return 1; /* found: the scan stops */
}

int dr_state_find_user(dr_state_t *st, int64_t user_id, int32_t *partition, uint8_t **rec,
                       size_t *len) {
    *partition = -1;
    *rec = NULL;
    *len = 0;
    if (!dr_state_users_keyed_by_partition(st)) { /* 8-byte keys may be anywhere */
        user_find_t f = {user_id, -1, NULL, 0};
        int rc = scan_users(st, NULL, 0, NULL, 0, find_user_cb, &f);
        if (rc != 1)
            return rc ? rc : DR_ENOTFOUND;
        *partition = f.partition;
        *rec = f.rec;
        *len = f.len;
        return 0;
    }
    /* from one partition's first key to the next partition's: a seek and a
     * point read per partition held */
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->scan_ropts, st->cf[CF_USERS]);
    uint8_t at[4] = {0, 0, 0, 0};
    char *err = NULL;
    int rc = DR_ENOTFOUND;
    for (rocksdb_iter_seek(it, (const char *)at, sizeof(at)); rocksdb_iter_valid(it);) {
        size_t klen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen != USER_KEY_LEN) {
            rc = DR_ECORRUPT;
            break;
        }
        int32_t p = decode_partition(key);
        rc = dr_state_get_user(st, p, user_id, rec, len);
        if (rc == 0)
            *partition = p;
        if (rc != DR_ENOTFOUND || p == INT32_MAX)
            break;
        encode_partition(at, (uint32_t)p + 1u);
        rocksdb_iter_seek(it, (const char *)at, sizeof(at));
    }
    rocksdb_iter_get_error(it, &err);
    if (err) {
        free(*rec);
        *rec = NULL;
        *len = 0;
        *partition = -1;
        rc = read_err(err, "state find user");
    }
    rocksdb_iter_destroy(it);
    return rc;
}

int dr_state_for_each_user(dr_state_t *st, dr_state_user_fn fn, void *ctx) {
    return scan_users(st, NULL, 0, NULL, 0, fn, ctx);
}

int dr_state_for_each_partition_user(dr_state_t *st, int32_t partition, dr_state_user_fn fn,
                                     void *ctx) {
    uint8_t begin[4], end[4];

    if (partition < 0)
        return DR_EINVAL;
    encode_partition(begin, (uint32_t)partition);
    encode_partition(end, (uint32_t)partition + 1u); /* unused for INT32_MAX */
    return scan_users(st, begin, sizeof(begin), partition == INT32_MAX ? NULL : end, sizeof(end),
                      fn, ctx);
}

typedef struct upgrade {
    dr_state_t *st;
    dr_state_partition_fn fn;
    void *ctx;
    dr_state_batch_t *batch;
    uint64_t moved;
} upgrade_t;

static int upgrade_one(void *ctx, int32_t partition, int64_t user_id, const void *rec, size_t len) {
    upgrade_t *u = ctx;
    int32_t to = -1;
    uint8_t old_key[ID_KEY_LEN];

    if (partition >= 0)
        return 0; /* keyed by partition already */
    int rc = u->fn(u->ctx, user_id, rec, len, &to);
    if (rc)
        return rc;
    encode_id(old_key, user_id);
    batch_add(u->batch, OP_DELETE, CF_USERS, old_key, sizeof(old_key), NULL, 0);
    if (to >= 0)
        dr_state_batch_put_user(u->batch, to, user_id, rec, len);
    u->moved++;
    return 0;
}

/* 0 when the store is marked upgraded, DR_ENOTFOUND when not, else the
 * read's error. */
static int read_upgrade_mark(dr_state_t *st) {
    uint8_t *done;
    size_t done_len;
    int rc = dr_state_get_meta(st, KEYED_BY_PARTITION, &done, &done_len);
    if (rc == 0)
        free(done);
    return rc;
}

bool dr_state_users_keyed_by_partition(dr_state_t *st) {
    return read_upgrade_mark(st) == 0;
}

int dr_state_upgrade_user_keys(dr_state_t *st, dr_state_partition_fn fn, void *ctx,
                               uint64_t *moved, char *errstr, size_t errstr_size) {
    *moved = 0;
    int rc = read_upgrade_mark(st);
    if (rc == 0)
        return 0;
    if (rc != DR_ENOTFOUND) {
        set_err(errstr, errstr_size, "state upgrade", dr_strerror(rc));
        return rc;
    }
    upgrade_t u = {st, fn, ctx, dr_state_batch_new(), 0};
    if (!u.batch)
        return DR_ENOMEM;
    /* 8-byte keys sort among the 12-byte ones by their first 4 bytes, so
     * the whole family is scanned: once per store, as the mark written with
     * the moves says (a scan at every start read every user: 11 s at 10M) */
    rc = scan_users(st, NULL, 0, NULL, 0, upgrade_one, &u);
    dr_state_batch_put_meta(u.batch, KEYED_BY_PARTITION, "1", 1);
    if (!rc)
        rc = dr_state_write(st, u.batch, errstr, errstr_size);
    else
        set_err(errstr, errstr_size, "state upgrade", dr_strerror(rc));
    dr_state_batch_free(u.batch);
    if (!rc)
        *moved = u.moved;
    return rc;
}

static bool parse_offset_key(const char *key, size_t klen, char topic[OFFSET_KEY_MAX],
                             int32_t *partition) {
    const size_t pre = sizeof("offset/") - 1;
    size_t slash = klen;

    if (klen <= pre || klen >= OFFSET_KEY_MAX || memcmp(key, "offset/", pre) != 0)
        return false;
    while (slash > pre && key[slash - 1] != '/')
        slash--;
    if (slash <= pre + 1 || slash == klen || klen - slash > 10)
        return false;
    long v = 0;
    for (size_t i = slash; i < klen; i++) {
        if (key[i] < '0' || key[i] > '9')
            return false;
        v = v * 10 + (key[i] - '0');
    }
    if (v > INT32_MAX)
        return false;
    memcpy(topic, key + pre, slash - 1 - pre);
    topic[slash - 1 - pre] = '\0';
    *partition = (int32_t)v;
    return true;
}

int dr_state_for_each_offset(dr_state_t *st, dr_state_offset_fn fn, void *ctx) {
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->scan_ropts, st->cf[CF_META]);
    char *err = NULL;
    int rc = 0;

    for (rocksdb_iter_seek(it, "offset/", 7); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);
        char topic[OFFSET_KEY_MAX];
        int32_t partition;

        if (klen < 7 || memcmp(key, "offset/", 7) != 0)
            break; /* past the offsets */
        if (vlen != 8 || !parse_offset_key(key, klen, topic, &partition)) {
            rc = DR_ECORRUPT;
            goto out_it;
        }
        rc = fn(ctx, topic, partition, (int64_t)decode_le64((const uint8_t *)val));
        if (rc)
            goto out_it;
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = read_err(err, "state scan");
out_it:
    rocksdb_iter_destroy(it);
    return rc;
}

int dr_state_sizes(dr_state_t *st, uint64_t *live_bytes, uint64_t *pending_compaction) {
    uint64_t live = 0, pending = 0;

    for (int i = 0; i < CF_COUNT; i++) {
        uint64_t l, p;

        if (rocksdb_property_int_cf(st->db, st->cf[i], "rocksdb.estimate-live-data-size",
                                    &l) != 0 ||
            rocksdb_property_int_cf(st->db, st->cf[i],
                                    "rocksdb.estimate-pending-compaction-bytes", &p) != 0)
            return DR_ESTORE;
        live += l;
        pending += p;
    }
    *live_bytes = live;
    *pending_compaction = pending;
    return 0;
}

int dr_state_write_stall(dr_state_t *st, uint64_t *stopped, uint64_t *delayed_rate) {
    *stopped = *delayed_rate = 0;
    if (rocksdb_property_int(st->db, "rocksdb.is-write-stopped", stopped) != 0 ||
        rocksdb_property_int(st->db, "rocksdb.actual-delayed-write-rate", delayed_rate) != 0)
        return DR_ESTORE;
    return 0;
}

/* --- batches -------------------------------------------------------------- */

dr_state_batch_t *dr_state_batch_new(void) {
    return calloc(1, sizeof(dr_state_batch_t));
}

void dr_state_batch_free(dr_state_batch_t *b) {
    if (!b)
        return;
    free(b->buf);
    free(b);
}

void dr_state_batch_clear(dr_state_batch_t *b, size_t keep_bytes) {
    if (b->cap > keep_bytes) {
        free(b->buf);
        b->buf = NULL;
        b->cap = 0;
    }
    b->len = 0;
    b->count = 0;
    b->error = 0;
}

static bool batch_reserve(dr_state_batch_t *b, size_t need) {
    size_t cap = b->cap ? b->cap : 4096;
    uint8_t *buf;

    if (b->cap - b->len >= need)
        return true;
    while (cap - b->len < need)
        cap *= 2;
    buf = realloc(b->buf, cap);
    if (!buf)
        return false;
    b->buf = buf;
    b->cap = cap;
    return true;
}

/* A failure is remembered and fails the whole batch at write time, so that
 * a batch is never stored in part. */
static void batch_fail(dr_state_batch_t *b, int err) {
    if (!b->error)
        b->error = err;
}

/* Starts one operation: room for its key and up to max_vlen bytes of value,
 * the header and the key written. Returns where the value goes (NULL: the
 * batch has failed); batch_end then says how long it came out. */
static uint8_t *batch_begin(dr_state_batch_t *b, int op, int cf, const void *key, size_t klen,
                            size_t max_vlen) {
    uint32_t k32 = (uint32_t)klen;
    uint8_t *p;

    if (b->error)
        return NULL;
    if (klen > UINT32_MAX || max_vlen > UINT32_MAX) {
        batch_fail(b, DR_EINVAL);
        return NULL;
    }
    if (!batch_reserve(b, REC_HDR + klen + max_vlen)) {
        batch_fail(b, DR_ENOMEM);
        return NULL;
    }
    p = b->buf + b->len;
    p[0] = (uint8_t)op;
    p[1] = (uint8_t)cf;
    memcpy(p + 2, &k32, 4);
    memcpy(p + REC_HDR, key, klen);
    return p + REC_HDR + klen;
}

static void batch_end(dr_state_batch_t *b, size_t klen, size_t vlen) {
    uint32_t v32 = (uint32_t)vlen;

    memcpy(b->buf + b->len + 6, &v32, 4);
    b->len += REC_HDR + klen + vlen;
    b->count++;
}

/* Appends one operation. */
static void batch_add(dr_state_batch_t *b, int op, int cf, const void *key, size_t klen,
                      const void *val, size_t vlen) {
    if (vlen && !val) {
        batch_fail(b, DR_EINVAL);
        return;
    }
    uint8_t *v = batch_begin(b, op, cf, key, klen, vlen);
    if (!v)
        return;
    if (vlen)
        memcpy(v, val, vlen);
    batch_end(b, klen, vlen);
}

/* A user's key; false (the batch failed) for a negative partition. */
static bool batch_user_key(dr_state_batch_t *b, int32_t partition, int64_t user_id,
                           uint8_t key[USER_KEY_LEN]) {
    if (partition < 0) {
        batch_fail(b, DR_EINVAL);
        return false;
    }
    encode_user_key(key, partition, user_id);
    return true;
}

void dr_state_batch_put_user(dr_state_batch_t *b, int32_t partition, int64_t user_id,
                             const void *rec, size_t len) {
    uint8_t key[USER_KEY_LEN];

    if (batch_user_key(b, partition, user_id, key))
        batch_add(b, OP_PUT, CF_USERS, key, sizeof(key), rec, len);
}

uint8_t *dr_state_batch_user_room(dr_state_batch_t *b, int32_t partition, int64_t user_id,
                                  size_t max_len) {
    uint8_t key[USER_KEY_LEN];

    if (!batch_user_key(b, partition, user_id, key))
        return NULL;
    return batch_begin(b, OP_PUT, CF_USERS, key, sizeof(key), max_len);
}

void dr_state_batch_user_done(dr_state_batch_t *b, size_t len) {
    batch_end(b, USER_KEY_LEN, len);
}

void dr_state_batch_delete_user(dr_state_batch_t *b, int32_t partition, int64_t user_id) {
    uint8_t key[USER_KEY_LEN];

    if (batch_user_key(b, partition, user_id, key))
        batch_add(b, OP_DELETE, CF_USERS, key, sizeof(key), NULL, 0);
}

void dr_state_batch_drop_partition(dr_state_batch_t *b, int32_t partition) {
    uint8_t begin[USER_KEY_LEN], end[USER_KEY_LEN];

    if (partition < 0 || partition == INT32_MAX) {
        batch_fail(b, DR_EINVAL);
        return;
    }
    encode_user_key(begin, partition, 0);
    encode_user_key(end, partition + 1, 0);
    batch_add(b, OP_DELETE_RANGE, CF_USERS, begin, sizeof(begin), end, sizeof(end));
}

void dr_state_batch_put_item(dr_state_batch_t *b, int64_t item_id, const void *rec, size_t len) {
    uint8_t key[ID_KEY_LEN];

    encode_id(key, item_id);
    batch_add(b, OP_PUT, CF_ITEMS, key, sizeof(key), rec, len);
}

void dr_state_batch_delete_item(dr_state_batch_t *b, int64_t item_id) {
    uint8_t key[ID_KEY_LEN];

    encode_id(key, item_id);
    batch_add(b, OP_DELETE, CF_ITEMS, key, sizeof(key), NULL, 0);
}

void dr_state_batch_put_meta(dr_state_batch_t *b, const char *key, const void *val, size_t len) {
    if (!key) {
        batch_fail(b, DR_EINVAL);
        return;
    }
    batch_add(b, OP_PUT, CF_META, key, strlen(key), val, len);
}

void dr_state_batch_put_offset(dr_state_batch_t *b, const char *topic, int32_t partition,
                               int64_t next_offset) {
    char key[OFFSET_KEY_MAX];
    uint8_t val[8];
    int klen = topic ? offset_key(key, topic, partition) : -1;

    if (klen < 0) {
        batch_fail(b, DR_EINVAL);
        return;
    }
    encode_le64(val, (uint64_t)next_offset);
    batch_add(b, OP_PUT, CF_META, key, (size_t)klen, val, sizeof(val));
}

size_t dr_state_batch_count(const dr_state_batch_t *b) {
    return b->count;
}

/* Rebuilds the RocksDB WriteBatch from our record buffer. */
static void replay(dr_state_t *st, const dr_state_batch_t *b) {
    const uint8_t *p = b->buf, *end = b->buf + b->len;

    rocksdb_writebatch_clear(st->wb);
    while (p < end) {
        uint32_t klen, vlen;
        const char *key = (const char *)p + REC_HDR;

        memcpy(&klen, p + 2, 4);
        memcpy(&vlen, p + 6, 4);
        if (p[0] == OP_PUT)
            rocksdb_writebatch_put_cf(st->wb, st->cf[p[1]], key, klen, key + klen, vlen);
        else if (p[0] == OP_DELETE_RANGE)
            rocksdb_writebatch_delete_range_cf(st->wb, st->cf[p[1]], key, klen, key + klen, vlen);
        else
            rocksdb_writebatch_delete_cf(st->wb, st->cf[p[1]], key, klen);
        p += REC_HDR + klen + vlen;
    }
}

int dr_state_write(dr_state_t *st, dr_state_batch_t *b, char *errstr, size_t errstr_size) {
    char *err = NULL;

    if (b->error) {
        set_err(errstr, errstr_size, "state write: batch incomplete", dr_strerror(b->error));
        return b->error;
    }
    /* the WAL takes about the batch's size now, and a flush about as much later */
    int rc = check_free(st->path, st->min_free, 2 * (uint64_t)b->len, "state write", errstr,
                        errstr_size);
    if (rc)
        return rc;
    pthread_mutex_lock(&st->write_lock);
    replay(st, b);
    rocksdb_write(st->db, st->wopts, st->wb, &err);
    pthread_mutex_unlock(&st->write_lock);
    if (err)
        return store_err(err, errstr, errstr_size, "state write");
    return 0;
}
