/* state_bench.c - the state as the user population grows (issue 18,
 * benchmark 4): events/s of the learner with the RocksDB store and the hot
 * cache, as the pipeline drives them (get_user, apply, commit every 100,000
 * events), for USERS users drawn uniformly (so the working set is every
 * user, far beyond the cache once USERS exceeds it), then the bytes per
 * user on disk (after a flush and compaction) and in the cache, and the time
 * a restart takes to reopen the store and read a first user.
 *
 *   state_bench DIR USERS EVENTS [CACHE_USERS]
 *
 * Environment: STATE_COMPRESSION, STATE_COMPRESSION_BOTTOMMOST (none,
 * snappy, lz4, zstd) and STATE_WRITE_BUFFER_MB, the store's settings
 * (state.compression, state.compression.bottommost, state.write.buffer.mb).
 *
 * Kafka is left out on purpose: the embedded broker keeps ~5 MiB per
 * partition in memory, far less than millions of users' events. Built and
 * run by bench/state.sh. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_log.h"
#include "dr_learner.h"
#include "dr_state.h"
#include "bench_state.h"

#define ITEMS 10000
#define COMMIT_EVERY 100000
#define PARTITION BENCH_PARTITION

static void die(const char *what, int err) {
    fprintf(stderr, "state_bench: %s: %s\n", what, dr_strerror(err));
    exit(1);
}

static long rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: state_bench DIR USERS EVENTS [CACHE_USERS]\n");
        return 2;
    }
    const char *dir = argv[1];
    int64_t users = atoll(argv[2]), events = atoll(argv[3]);
    size_t cache_users = argc > 4 ? (size_t)atoll(argv[4]) : 200000;
    bench_state_t r = {.name = "state_bench"};
    char err[256];
    dr_learner_conf_default(&r.conf);
    dr_state_conf_t sc;
    dr_state_conf_default(&sc);
    sc.path = dir;
    /* the store's settings under test (bench/state.sh passes them on) */
    const char *v;
    if ((v = getenv("STATE_COMPRESSION")) && *v && dr_state_compression_parse(v, &sc.compression))
        die("STATE_COMPRESSION: none, snappy, lz4 or zstd", DR_EINVAL);
    if ((v = getenv("STATE_COMPRESSION_BOTTOMMOST")) && *v &&
        dr_state_compression_parse(v, &sc.bottommost_compression))
        die("STATE_COMPRESSION_BOTTOMMOST: none, snappy, lz4 or zstd", DR_EINVAL);
    if ((v = getenv("STATE_WRITE_BUFFER_MB")) && *v) sc.write_buffer_mb = (size_t)atoll(v);
    int rc;
    if ((rc = dr_state_open(&r.st, &sc, err, sizeof err))) die(err, rc);
    if ((rc = dr_user_cache_new(&r.cache, cache_users, r.conf.dim))) die("cache", rc);
    if ((rc = dr_model_new(&r.model, &r.conf, err, sizeof err))) die(err, rc);
    uint64_t rng = 42;
    double t0 = dr_mono_s();
    for (int64_t e = 0; e < events; e++) {
        int64_t id = (int64_t)(dr_rand64(&rng) % (uint64_t)users) + 1;
        int64_t item = (int64_t)(dr_rand64(&rng) % ITEMS) + 1;
        /* the open-loop stream's mix: mostly impressions, a click in five */
        dr_event_t ev = {id, item, dr_rand01(&rng) < 0.8 ? DR_EV_IMPRESSION : DR_EV_CLICK, 0.0f,
                         1767225600000 + e * 10};
        dr_user_t *u = bench_get_user(&r, id);
        dr_apply_result_t res;
        if ((rc = dr_learner_apply(r.model, u, &ev, (uint64_t)e, &res))) die("apply", rc);
        dr_user_cache_mark_dirty(r.cache, u);
        if ((e + 1) % COMMIT_EVERY == 0) bench_commit(&r, e + 1);
    }
    bench_commit(&r, events);
    double dt = dr_mono_s() - t0;
    uint64_t hits, misses;
    dr_user_cache_stats(r.cache, &hits, &misses);
    long rss = rss_kib();
    dr_user_cache_free(r.cache);
    dr_model_free(r.model);
    dr_state_close(r.st);
    /* a restart: open the store, read one user */
    double r0 = dr_mono_s();
    if ((rc = dr_state_open(&r.st, &sc, err, sizeof err))) die(err, rc);
    uint8_t *rec = NULL;
    size_t len = 0;
    rc = dr_state_get_user(r.st, PARTITION, 1, &rec, &len);
    double restart = dr_mono_s() - r0;
    free(rec);
    uint64_t live = 0, pending = 0;
    dr_state_sizes(r.st, &live, &pending);
    dr_state_close(r.st);
    printf("users=%" PRId64 " events=%" PRId64 " cache=%zu events_per_s=%.0f hit_rate=%.3f "
           "record_bytes_mean=%.0f live_sst_bytes_per_user=%.0f peak_rss_mib=%ld restart_ms=%.1f\n",
           users, events, cache_users, (double)events / dt,
           hits + misses ? (double)hits / (double)(hits + misses) : 0,
           r.records ? (double)r.record_bytes / (double)r.records : 0,
           (double)live / (double)users, rss / 1024, restart * 1000);
    return 0;
}
