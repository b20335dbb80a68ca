/* churn_bench.c - a feed's catalog churn (issue 17): POSTS posts arrive one
 * after another over EVENTS events of USERS users and expire after
 * learner.item.ttl.ms, with the learner, the RocksDB store and the hot
 * cache driven as the pipeline drives them (get_user, apply, an expiry pass
 * and a commit every 100,000 events). Every checkpoint prints the live
 * items, the rows of the item matrix, the items stored, the store's live
 * bytes and the process's current RSS: they must stay flat once the first
 * posts expire, whatever the number of posts seen.
 *
 *   churn_bench DIR USERS EVENTS POSTS LIVE_POSTS [CACHE_USERS [BLOCK_CACHE_MB]]
 *
 * Events are 10 ms of event time apart; a post's TTL is the time LIVE_POSTS
 * posts take to arrive (the grace period a tenth of it). Users engage
 * mostly the newest posts: the age of the post an event touches, in posts,
 * is exponential with a mean of LIVE_POSTS / 4, so some events reach posts
 * already expired or removed (late events). Built and run by
 * bench/churn.sh; Kafka is left out, as in state_bench. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dr_bytes.h"
#include "dr_log.h"
#include "dr_err.h"
#include "dr_learner.h"
#include "dr_state.h"
#include "bench_state.h"

#define COMMIT_EVERY 100000
#define EXPIRY_ROWS 65536 /* as the pipeline's pass per commit */
#define EVENT_GAP_MS 10

static void die(const char *what, int err) {
    fprintf(stderr, "churn_bench: %s: %s\n", what, dr_strerror(err));
    exit(1);
}

/* A commit as the pipeline's: the expiry pass first, so removed items'
 * records go with it. */
static void commit(bench_state_t *r, int64_t offset, uint64_t *expired, uint64_t *removed) {
    dr_expiry_stats_t ex;
    int rc = dr_model_expire_items(r->model, EXPIRY_ROWS, &ex);
    if (rc) die("expire", rc);
    *expired += ex.expired;
    *removed += ex.removed;
    bench_commit(r, offset);
}

/* The current resident set (not the peak: it must be seen to stay flat). */
static long rss_mib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024) / 1024;
}

static int count_item(void *ctx, int64_t id, const void *rec, size_t len) {
    (void)id;
    (void)rec;
    (void)len;
    (*(uint64_t *)ctx)++;
    return 0;
}

static uint64_t expired, removed; /* over the run */

static void checkpoint(bench_state_t *r, int64_t e, int64_t posts, double t0) {
    uint64_t live_bytes = 0, pending = 0, stored = 0;
    dr_state_sizes(r->st, &live_bytes, &pending);
    dr_state_for_each_item(r->st, count_item, &stored);
    dr_items_view_t v;
    dr_model_items(r->model, &v);
    printf("events=%" PRId64 " posts=%" PRId64 " live_items=%zu rows=%zu stored_items=%" PRIu64
           " expired=%" PRIu64 " removed=%" PRIu64 " sst_mib=%.1f rss_mib=%ld events_per_s=%.0f\n",
           e, posts, dr_model_live_items(r->model), v.n, stored, expired, removed,
           (double)live_bytes / 1048576.0, rss_mib(), (double)e / (dr_mono_s() - t0));
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: churn_bench DIR USERS EVENTS POSTS LIVE_POSTS [CACHE_USERS [BLOCK_CACHE_MB]]\n");
        return 2;
    }
    const char *dir = argv[1];
    int64_t users = atoll(argv[2]), events = atoll(argv[3]), posts = atoll(argv[4]),
            live_posts = atoll(argv[5]);
    size_t cache_users = argc > 6 ? (size_t)atoll(argv[6]) : 200000;
    if (users < 1 || events < 1 || posts < 1 || live_posts < 1 || posts > events) {
        fprintf(stderr, "churn_bench: USERS, EVENTS, POSTS, LIVE_POSTS >= 1, POSTS <= EVENTS\n");
        return 2;
    }
    double events_per_post = (double)events / (double)posts;
    bench_state_t r = {.name = "churn_bench"};
    char err[256];
    dr_learner_conf_default(&r.conf);
    r.conf.item_ttl_ms = (int64_t)((double)live_posts * events_per_post * EVENT_GAP_MS);
    r.conf.item_grace_ms = r.conf.item_ttl_ms / 10;
    dr_state_conf_t sc;
    dr_state_conf_default(&sc);
    sc.path = dir;
    if (argc > 7) sc.block_cache_mb = (size_t)atoll(argv[7]);
    int rc;
    if ((rc = dr_state_open(&r.st, &sc, err, sizeof err))) die(err, rc);
    if ((rc = dr_user_cache_new(&r.cache, cache_users, r.conf.dim))) die("cache", rc);
    if ((rc = dr_model_new(&r.model, &r.conf, err, sizeof err))) die(err, rc);
    printf("users=%" PRId64 " events=%" PRId64 " posts=%" PRId64 " live_posts=%" PRId64
           " ttl_ms=%" PRId64 " grace_ms=%" PRId64 " cache=%zu block_cache_mb=%zu\n",
           users, events, posts, live_posts, r.conf.item_ttl_ms, r.conf.item_grace_ms, cache_users,
           sc.block_cache_mb);
    uint64_t rng = 42;
    double t0 = dr_mono_s();
    int64_t every = events / 20 > COMMIT_EVERY ? events / 20 / COMMIT_EVERY * COMMIT_EVERY : COMMIT_EVERY;
    for (int64_t e = 0; e < events; e++) {
        int64_t newest = (int64_t)((double)e / events_per_post) + 1; /* posts so far */
        /* the post's age in posts: exponential, mean live_posts / 4 */
        int64_t age = (int64_t)(-log(1.0 - dr_rand01(&rng)) * (double)live_posts / 4.0);
        int64_t item = newest - age > 0 ? newest - age : 1;
        int64_t id = (int64_t)(dr_rand64(&rng) % (uint64_t)users) + 1;
        dr_event_t ev = {id, item, dr_rand01(&rng) < 0.8 ? DR_EV_IMPRESSION : DR_EV_CLICK, 0.0f,
                         1767225600000 + e * EVENT_GAP_MS};
        dr_user_t *u = bench_get_user(&r, id);
        dr_apply_result_t res;
        if ((rc = dr_learner_apply(r.model, u, &ev, (uint64_t)e, &res))) die("apply", rc);
        dr_user_cache_mark_dirty(r.cache, u);
        if ((e + 1) % COMMIT_EVERY == 0) commit(&r, e + 1, &expired, &removed);
        if ((e + 1) % every == 0) checkpoint(&r, e + 1, newest, t0);
    }
    commit(&r, events, &expired, &removed);
    dr_user_cache_free(r.cache);
    dr_model_free(r.model);
    dr_state_close(r.st);
    return 0;
}
