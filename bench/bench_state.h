/* bench_state.h - what state_bench.c and churn_bench.c share: the learner,
 * the RocksDB store and the hot-user cache driven as the pipeline drives
 * them (a user from the cache or the store; a commit of the dirty users and
 * items, removed items deleted, in one batch with an offset). Static
 * functions in a header: each bench is one program its script builds. */
#ifndef DR_BENCH_STATE_H
#define DR_BENCH_STATE_H

#include <stdio.h>
#include <stdlib.h>

#include "dr_err.h"
#include "dr_learner.h"
#include "dr_state.h"

#define BENCH_PARTITION 0

typedef struct bench_state {
    const char *name; /* the program, for errors */
    dr_state_t *st;
    dr_user_cache_t *cache;
    dr_model_t *model;
    dr_learner_conf_t conf;
    dr_state_batch_t *batch;
    uint64_t record_bytes, records; /* user records written */
} bench_state_t;

static void bench_die(const bench_state_t *r, const char *what, int err) {
    fprintf(stderr, "%s: %s: %s\n", r->name, what, dr_strerror(err));
    exit(1);
}

static int bench_put_user(void *ctx, dr_user_t *u) {
    bench_state_t *r = ctx;
    uint8_t *rec;
    size_t len;
    int err = dr_user_encode(u, r->conf.dim, &rec, &len);
    if (err) return err;
    dr_state_batch_put_user(r->batch, BENCH_PARTITION, u->user_id, rec, len);
    r->record_bytes += len;
    r->records++;
    free(rec);
    return 0;
}

static int bench_put_item(void *ctx, int64_t item_id, const void *rec, size_t len) {
    if (rec) dr_state_batch_put_item(ctx, item_id, rec, len);
    else dr_state_batch_delete_item(ctx, item_id); /* a removed item */
    return 0;
}

/* Writes the dirty users and items with the position `offset`. */
static void bench_commit(bench_state_t *r, int64_t offset) {
    char err[256];
    r->batch = dr_state_batch_new();
    int rc = dr_user_cache_commit_begin(r->cache, bench_put_user, r);
    if (!rc) rc = dr_model_drain_dirty_items(r->model, bench_put_item, r->batch);
    dr_state_batch_put_offset(r->batch, "bench", BENCH_PARTITION, offset);
    if (!rc) rc = dr_state_write(r->st, r->batch, err, sizeof err);
    dr_user_cache_commit_end(r->cache, rc == 0);
    dr_state_batch_free(r->batch);
    if (rc) bench_die(r, "commit", rc);
}

/* The user from the cache, else the store, else a new one (cached). */
static dr_user_t *bench_get_user(bench_state_t *r, int64_t id) {
    dr_user_t *u = dr_user_cache_get(r->cache, id);
    if (u) return u;
    dr_user_cache_count_miss(r->cache);
    uint8_t *rec = NULL;
    size_t len = 0;
    int err = dr_state_get_user(r->st, BENCH_PARTITION, id, &rec, &len);
    if (err == 0) {
        err = dr_user_decode(id, &r->conf, rec, len, &u);
        free(rec);
        if (err) bench_die(r, "decode", err);
    } else if (err != DR_ENOTFOUND) {
        bench_die(r, "get", err);
    }
    if (!u && !(u = dr_user_new_conf(id, &r->conf))) bench_die(r, "new user", DR_ENOMEM);
    if ((err = dr_user_cache_put(r->cache, u))) bench_die(r, "cache", err);
    return u;
}

#endif /* DR_BENCH_STATE_H */
