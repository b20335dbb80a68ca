/* scale_bench.c - how memory and list scoring scale with the catalog size
 * (issue 12, defect 7); built and run by bench/scale.sh against a build's
 * libraries, so the same source measures the code before and after.
 *
 *   scale_bench topk N REPS [B]   lists per second of dr_emit_topk over N
 *                                 items for B users (default 512, emit.batch),
 *                                 with the co-engagement row hook, exclusions
 *                                 and the population prior as the emitter
 *                                 uses them, each user engaged with 10 items
 *                                 whose tables are full (the hook's worst
 *                                 case); prints the scratch bytes, the peak
 *                                 RSS and a hash of the lists
 *   scale_bench emit N REPS [B]   the emitter itself (dr_emitter_emit, lists
 *                                 queued to a producer with no broker) with
 *                                 the full scan and with the retrieval path
 *                                 (emit.retrieval.*, its index built first):
 *                                 lists per CPU second of each, their ratio,
 *                                 the index's upkeep per call (within
 *                                 SYNC_MS, 20: emit.retrieval.sync.ms, its
 *                                 refresh pass paced by REFRESH_PASS_MS,
 *                                 20000: emit.retrieval.refresh.pass.ms) and
 *                                 the share of the full scan's top 50
 *                                 that the retrieval path's lists hold;
 *                                 VECTORS=clustered gives the items and
 *                                 users vectors shaped like trained ones
 *                                 (bench/bench_world.h) instead of the
 *                                 model's structureless initial rows;
 *                                 INDEX_DIR keeps the index between runs
 *   scale_bench build N [USERS] [SYNC_MS] [THREADS] [MAX_S]
 *                                 the retrieval index's first build inside
 *                                 an emit loop: dr_emitter_emit for USERS
 *                                 (8) users every emit.interval.ms (100),
 *                                 emit.retrieval.sync.ms SYNC_MS (20), the
 *                                 build on THREADS threads (1; the code
 *                                 before the background build ignores it),
 *                                 until the index serves or MAX_S (3600)
 *                                 seconds: wall time until it serves, the
 *                                 first emit call (it faults the scan's
 *                                 scratch in), the slowest of the others
 *                                 and the slowest upkeep
 *                                 within one, and the emit thread's upkeep
 *                                 in all; an index built in the loop that
 *                                 ran out of time is extrapolated from
 *                                 the items it holds
 *   scale_bench memory N          heap bytes per item (rows, id table, a
 *                                 co-engagement table at its cap) and per
 *                                 user (cached state, stored record)
 *
 * Heap bytes are glibc's mallinfo2() (in use + mmapped), so they include
 * allocator headers and the spare capacity of the doubling arrays. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#include "bench_clock.h"
#include "bench_env.h"
#include "bench_world.h"
#include "dr_bytes.h"
#include "dr_emit.h"
#include "dr_log.h"

#define N_SOURCES 10 /* a scored user's last engaged items: learner.cooc.window */
#define N_POOL 1024  /* items the scored users engaged with, 5 users each */

static size_t heap_bytes(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static long peak_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void die(const char *what) {
    fprintf(stderr, "scale_bench: %s\n", what);
    exit(1);
}

static dr_model_t *model_with_items(size_t n, const dr_learner_conf_t *conf) {
    dr_model_t *m;
    char err[128];
    if (dr_model_new(&m, conf, err, sizeof(err)) != 0) die(err);
    for (size_t i = 0; i < n; i++)
        if (dr_model_item_index(m, (int64_t)i, true) < 0) die("cannot create an item");
    return m;
}

static void click(dr_model_t *m, dr_user_t *u, int64_t item, int64_t ts, uint64_t seed) {
    dr_event_t ev = {u->user_id, item, DR_EV_CLICK, 0.0f, ts};
    dr_apply_result_t r;
    if (dr_learner_apply(m, u, &ev, seed, &r) != 0) die("apply failed");
}

/* The emitter's row hook (emit.c), in the form the built library has. */
typedef struct batch {
    const dr_model_t *m;
    dr_user_t **users;
} batch_t;
#ifdef DR_EMIT_CHUNK_ITEMS
static void add_coengagement(void *ctx, size_t r, float *row, size_t first, size_t n) {
    const batch_t *b = ctx;
    dr_model_add_coengagement_range(b->m, b->users[r], row, first, n);
}
#else
static void add_coengagement(void *ctx, size_t r, float *row, size_t n) {
    const batch_t *b = ctx;
    dr_model_add_coengagement(b->m, b->users[r], row, n);
}
#endif

/* The scored users' world: n items, and N_POOL of them (pool) whose
 * co-engagement tables are filled past their cap with neighbours all over
 * the catalog: the row hook's worst case per chunk. */
static dr_model_t *model_with_full_tables(size_t n, dr_learner_conf_t *conf, int64_t *pool) {
    dr_learner_conf_default(conf);
    conf->max_items = (int64_t)n;
    conf->prior_period = 1 << 30; /* no outer steps: each refreshes every item (setup time only) */
    dr_model_t *m = model_with_items(n, conf);
    uint64_t rng = 12;
    for (size_t k = 0; k < N_POOL; k++) pool[k] = (int64_t)((k * (n / N_POOL) + 7) % n);
    for (int64_t j = 0; j < 300 * N_POOL; j++) {
        dr_user_t *u = dr_user_new_conf(1000000 + j, conf);
        if (!u) die("out of memory");
        click(m, u, pool[j % N_POOL], 2 * j, (uint64_t)j);
        click(m, u, (int64_t)(dr_rand64(&rng) % n), 2 * j + 1, (uint64_t)j + 1);
        dr_user_free(u);
    }
    return m;
}

static int bench_topk(size_t n, int reps, size_t B) {
    dr_learner_conf_t conf;
    int64_t pool[N_POOL];
    openblas_set_num_threads(1); /* emit.blas.threads' default */
    dr_model_t *m = model_with_full_tables(n, &conf, pool);
    dr_user_t **users = calloc(B, sizeof(*users));
    float *U = malloc(B * (size_t)conf.dim * sizeof(float)), *w = malloc(B * sizeof(float));
    dr_exclusions_t *excl = calloc(B, sizeof(*excl));
    int64_t *excl_idx = malloc(B * N_SOURCES * sizeof(int64_t));
    const int k = 50;
    dr_scored_item_t *out = malloc(B * (size_t)k * sizeof(*out));
    size_t *out_n = malloc(B * sizeof(*out_n));
    if (!users || !U || !w || !excl || !excl_idx || !out || !out_n) die("out of memory");
    for (size_t r = 0; r < B; r++) {
        if (!(users[r] = dr_user_new_conf((int64_t)r, &conf))) die("out of memory");
        int64_t src[N_SOURCES]; /* this user's own slice of the pool */
        for (size_t s = 0; s < N_SOURCES; s++) src[s] = pool[(r * N_SOURCES + s) % N_POOL];
        for (size_t s = 0; s < N_SOURCES; s++) click(m, users[r], src[s], 100000000 + (int64_t)s, r * 31 + s);
        dr_model_user_vector(m, users[r], U + r * (size_t)conf.dim);
        w[r] = dr_model_pop_weight(m, users[r]);
        excl[r].idx = excl_idx + r * N_SOURCES;
        excl[r].n = N_SOURCES;
        for (size_t s = 0; s < N_SOURCES; s++) excl_idx[r * N_SOURCES + s] = dr_model_item_index(m, src[s], false);
    }
    dr_items_view_t items;
    dr_model_items(m, &items);
#ifdef DR_EMIT_CHUNK_ITEMS
    size_t scratch_items = dr_emit_scratch_items(n);
    long chunk = DR_EMIT_CHUNK_ITEMS;
#else
    size_t scratch_items = n;
    long chunk = 0;
#endif
    float *scores = malloc(B * scratch_items * sizeof(float));
    if (!scores) die("out of memory");
    batch_t ctx = {m, users};
    dr_emit_terms_t terms = {w, add_coengagement, &ctx, NULL, NULL};
    dr_emit_topk(U, B, &items, k, excl, &terms, scores, out, out_n); /* warm-up */
    double t0 = dr_mono_s(), c0 = cpu_s();
    for (int rep = 0; rep < reps; rep++) dr_emit_topk(U, B, &items, k, excl, &terms, scores, out, out_n);
    double dt = dr_mono_s() - t0, dc = cpu_s() - c0;
    uint64_t check = 0; /* the lists themselves, to compare builds */
    for (size_t r = 0; r < B; r++)
        for (size_t j = 0; j < out_n[r]; j++) check = dr_mix64(check ^ (uint64_t)out[r * (size_t)k + j].item_id);
    /* the ceiling (issue 18, benchmark 3): the same sgemm calls alone, same
     * shapes and scratch, no row terms, no selection */
    size_t step = scratch_items ? scratch_items : n;
    double b0 = dr_mono_s();
    for (int rep = 0; rep < reps; rep++)
        for (size_t first = 0; first < n; first += step) {
            size_t c = n - first < step ? n - first : step;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)c, items.dim, 1.0f, U,
                        items.dim, items.q + first * (size_t)items.dim, items.dim, 0.0f, scores, (int)c);
        }
    double db = dr_mono_s() - b0;
    double flops = 2.0 * (double)B * (double)items.dim * (double)n * reps;
    printf("items=%zu chunk=%ld batch=%zu scratch_bytes=%zu lists_per_cpu_s=%.0f lists_per_s=%.0f "
           "peak_rss_mib=%ld lists_hash=%016llx gflops=%.1f bare_sgemm_gflops=%.1f share=%.2f\n",
           n, chunk, B, B * scratch_items * sizeof(float), (double)(B * (size_t)reps) / dc,
           (double)(B * (size_t)reps) / dt,
           peak_rss_kib() / 1024, (unsigned long long)check, flops / dt / 1e9, flops / db / 1e9,
           db / dt);
    for (size_t r = 0; r < B; r++) dr_user_free(users[r]);
    free(users); free(U); free(w); free(excl); free(excl_idx); free(out); free(out_n); free(scores);
    dr_model_free(m);
    return 0;
}

#ifdef DR_EMIT_CHUNK_ITEMS
static rd_kafka_t *queue_only_producer(void) {
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set(kc, "bootstrap.servers", "127.0.0.1:1", err, sizeof(err));
    rd_kafka_conf_set(kc, "log_level", "0", err, sizeof(err));
    rd_kafka_conf_set(kc, "queue.buffering.max.messages", "10000000", err, sizeof(err));
    rd_kafka_conf_set(kc, "queue.buffering.max.kbytes", "2097151", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    if (!rk) die(err);
    return rk;
}

static void nap_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - 1000.0 * (double)(time_t)(ms / 1000)) * 1e6)};
    nanosleep(&ts, NULL);
}

/* VECTORS=clustered: the catalog as a trained model has it (items of a
 * topic point the same way, users mix a few topics; bench/bench_world.h).
 * The items' rows arrive as another instance's changes would
 * (dr_model_sync_import of "DRS1" rows: the target minus the row), the
 * users' v_u as the target minus û. The co-engagement tables stay as they
 * were filled. */
#define TOPICS 200
static void make_clustered(dr_model_t *m, dr_user_t **users, size_t B) {
    dr_items_view_t v;
    dr_model_items(m, &v);
    const int d = v.dim;
    const size_t n = v.n, chunk = 65536, row = 8 + 1 + ((size_t)d + 1) * 4;
    bench_rng_t rng = {7};
    float *centroid = calloc((size_t)TOPICS * (size_t)d, sizeof(float)), q[DR_MAX_DIM], b;
    uint8_t *buf = malloc(4 + 4 + (size_t)d * 4 + 4 + chunk * row + 4);
    if (!centroid || !buf) die("out of memory");
    bench_topics(&rng, centroid, TOPICS, d);
    for (size_t first = 0; first < n; first += chunk) {
        size_t cnt = n - first < chunk ? n - first : chunk, pos = 0;
        uint32_t dim32 = (uint32_t)d, n32 = (uint32_t)cnt, none = 0;
        float zero = 0.0f;
        memcpy(buf, "DRS1", 4), pos = 4; /* little-endian fields: this machine's order */
        memcpy(buf + pos, &dim32, 4), pos += 4;
        for (int k = 0; k < d; k++) memcpy(buf + pos, &zero, 4), pos += 4; /* Δû */
        memcpy(buf + pos, &n32, 4), pos += 4;
        for (size_t i = first; i < first + cnt; i++) {
            bench_clustered_item(&rng, centroid, TOPICS, d, n, q, &b);
            memcpy(buf + pos, &v.ids[i], 8), pos += 8;
            buf[pos++] = 0; /* no content */
            for (int k = 0; k < d; k++) {
                float delta = q[k] - v.q[i * (size_t)d + (size_t)k];
                memcpy(buf + pos, &delta, 4), pos += 4;
            }
            float db = b - v.bias[i];
            memcpy(buf + pos, &db, 4), pos += 4;
        }
        memcpy(buf + pos, &none, 4), pos += 4; /* no co-engagement counts */
        size_t applied, skipped;
        if (dr_model_sync_import(m, buf, pos, &applied, &skipped) != 0 || applied != cnt)
            die("cannot set the item vectors");
    }
    const float *prior = dr_model_prior(m);
    for (size_t r = 0; r < B; r++) {
        bench_clustered_user(&rng, centroid, TOPICS, d, q);
        for (int k = 0; k < d; k++) users[r]->v[k] = q[k] - prior[k];
    }
    free(buf);
    free(centroid);
}

/* What the emitter benchmarks share: a model of n items with full
 * co-engagement tables, B users who clicked a few of its items each, and
 * an emitter conf at emit.*'s defaults with the retrieval path at
 * emit.retrieval.*'s, from the first item on, upkeep sync_ms per call. */
static dr_model_t *emit_setup(size_t n, size_t B, double sync_ms, dr_user_t ***users_out,
                              dr_emitter_conf_t *ec) {
    dr_learner_conf_t conf;
    int64_t pool[N_POOL];
    dr_model_t *m = model_with_full_tables(n, &conf, pool);
    dr_user_t **users = calloc(B, sizeof(*users));
    if (!users) die("out of memory");
    /* SOURCES: each scored user's engaged items (N_SOURCES); 0: lists from
     * the factors and the popular items alone, the index's part measured */
    const size_t sources = (size_t)env_int("SOURCES", N_SOURCES);
    for (size_t r = 0; r < B; r++) {
        if (!(users[r] = dr_user_new_conf((int64_t)r, &conf))) die("out of memory");
        for (size_t s = 0; s < sources; s++)
            click(m, users[r], pool[(r * N_SOURCES + s) % N_POOL], 100000000 + (int64_t)s, r * 31 + s);
    }
    const char *vectors = getenv("VECTORS");
    if (vectors && strcmp(vectors, "clustered") == 0) make_clustered(m, users, B);
    else if (vectors && *vectors && strcmp(vectors, "random") != 0) die("VECTORS: clustered or random");
    memset(ec, 0, sizeof(*ec));
    ec->topk = 50;
    ec->batch = 512;
    ec->blas_threads = 1;
    dr_codec_conf_default(&ec->codec);
    /* emit.retrieval.candidates, .ef, .m, .popular: CANDIDATES, EF, M, POPULAR (50, 64, 32, 50) */
    ec->retrieval = (dr_emit_retrieval_conf_t){.min_items = 1, .candidates = env_int("CANDIDATES", 50),
                                               .ef_search = env_int("EF", 64), .M = env_int("M", 32),
                                               .ef_construction = 100, .coengaged = 100, .popular = env_int("POPULAR", 50),
                                               .sync_ms = sync_ms, .refresh_change = 0.25,
                                               /* emit.retrieval.refresh.pass.ms (REFRESH_PASS_MS;
                                                  0: the whole catalog every call) */
                                               .refresh_pass_ms = getenv("REFRESH_PASS_MS")
                                                                      ? atof(getenv("REFRESH_PASS_MS"))
                                                                      : 20000.0};
    /* INDEX_DIR: the index saved there once built and loaded from there
     * when it holds one of the same world and settings (emit.retrieval.
     * persist), so that runs after the first skip the build */
    const char *index_dir = getenv("INDEX_DIR");
    if (index_dir && *index_dir) {
        ec->retrieval.persist = true;
        snprintf(ec->retrieval.index_dir, sizeof(ec->retrieval.index_dir), "%s", index_dir);
    }
    *users_out = users;
    return m;
}

static int bench_build(size_t n, size_t B, double sync_ms, int threads, double max_s) {
    dr_user_t **users;
    dr_emitter_conf_t ec;
    dr_model_t *m = emit_setup(n, B, sync_ms, &users, &ec);
    rd_kafka_t *rk = queue_only_producer();
    dr_flight_t flight = {0};
#ifdef DR_EMIT_BUILD_THREADS
    ec.retrieval.build_threads = threads;
#else
    threads = 0; /* the code before the background build: none */
#endif
    dr_emitter_t *e;
    char err[256];
    if (dr_emitter_new(&e, rk, "t", &ec, &flight, err, sizeof(err))) die(err);
    const double interval_s = 0.1; /* emit.interval.ms */
    const dr_emit_stats_t *st = dr_emitter_stats(e);
    double t0 = dr_mono_s(), c0 = cpu_s(), first_call = 0, max_call = 0, max_upkeep = 0, calls_s = 0;
    long calls = 0;
    size_t done;
    while (!st->retrieved_lists && dr_mono_s() - t0 < max_s) {
        double t = dr_mono_s(), upkeep = st->index_seconds;
        if (dr_emitter_emit(e, m, users, B, NULL, calls, &done) != 0 || done != B) die("emit failed");
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
        double call = dr_mono_s() - t;
        /* the first call also faults in the scan's scratch (128 MiB at
         * emit.batch 512): apart */
        if (calls++ == 0) first_call = call;
        else if (call > max_call) max_call = call;
        calls_s += call;
        if (st->index_seconds - upkeep > max_upkeep) max_upkeep = st->index_seconds - upkeep;
        if (call < interval_s && !st->retrieved_lists) nap_ms((interval_s - call) * 1e3);
    }
    double wall = dr_mono_s() - t0;
    bool served = st->retrieved_lists > 0;
    /* an index built in the loop holds what it has: the rest at that pace */
    double until = served ? wall : st->index_items ? wall * (double)n / (double)st->index_items : -1;
    printf("items=%zu users_per_call=%zu sync_ms=%.0f build_threads=%d served=%s serves_after_s=%.1f%s "
           "calls=%ld mean_call_ms=%.1f first_call_ms=%.1f max_call_ms=%.1f max_upkeep_ms=%.1f upkeep_s=%.1f "
           "process_cpu_s=%.1f index_items=%llu\n",
           n, B, sync_ms, threads, served ? "yes" : "no", until, served ? "" : " (extrapolated)", calls,
           calls ? calls_s / (double)calls * 1e3 : 0.0, first_call * 1e3, max_call * 1e3, max_upkeep * 1e3, st->index_seconds,
           cpu_s() - c0, (unsigned long long)st->index_items);
    dr_emitter_free(e);
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
    rd_kafka_destroy(rk);
    for (size_t r = 0; r < B; r++) dr_user_free(users[r]);
    free(users);
    dr_model_free(m);
    return 0;
}

/* Lists per CPU second of the process (all its threads); per wall second
 * in *wall_rate. */
static double time_emit(dr_emitter_t *e, dr_model_t *m, dr_user_t **users, size_t B, int reps,
                        rd_kafka_t *rk, double *wall_rate) {
    size_t done;
    double c0 = cpu_s(), t0 = dr_mono_s();
    for (int rep = 0; rep < reps; rep++) {
        if (dr_emitter_emit(e, m, users, B, NULL, rep, &done) != 0 || done != B) die("emit failed");
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
    }
    *wall_rate = (double)(B * (size_t)reps) / (dr_mono_s() - t0);
    return (double)(B * (size_t)reps) / (cpu_s() - c0);
}

static int bench_emit(size_t n, int reps, size_t B) {
    dr_user_t **users;
    dr_emitter_conf_t ec;
    /* the index's upkeep within emit.retrieval.sync.ms per call, as the
     * pipeline runs it (SYNC_MS, default 20; a budget without bound walks
     * every row's movement in every call: ~0.3 ms a list at 1M items) */
    double sync_ms = getenv("SYNC_MS") ? atof(getenv("SYNC_MS")) : 20.0;
    dr_model_t *m = emit_setup(n, B, sync_ms, &users, &ec);
    rd_kafka_t *rk = queue_only_producer();
    dr_flight_t flight = {0};
#ifdef DR_EMIT_BUILD_THREADS
    ec.retrieval.build_threads = getenv("BUILD_THREADS") ? atoi(getenv("BUILD_THREADS")) : 1;
#endif
    dr_emitter_t *scan, *retr;
    char err[256];
    dr_emit_retrieval_conf_t off = ec.retrieval;
    off.min_items = 0;
    dr_emitter_conf_t sc = ec;
    sc.retrieval = off;
    /* EMIT_THREADS: each batch's lists split over that many threads, both paths */
    sc.threads = ec.threads = getenv("EMIT_THREADS") ? atoi(getenv("EMIT_THREADS")) : 1;
    if (dr_emitter_new(&scan, rk, "t", &sc, &flight, err, sizeof(err)) ||
        dr_emitter_new(&retr, rk, "t", &ec, &flight, err, sizeof(err)))
        die(err);
    double b0 = dr_mono_s();
    size_t done;
    /* builds the index: in the first call (an index built in the loop), or
     * on its own thread (the background build) while calls go on */
    do {
        if (dr_emitter_emit(retr, m, users, 1, NULL, 0, &done) != 0) die("emit failed");
        if (!dr_emitter_stats(retr)->retrieved_lists) nap_ms(10);
    } while (!dr_emitter_stats(retr)->retrieved_lists);
    double build_s = dr_mono_s() - b0;
    /* the lists of both paths, for the overlap */
    int64_t (*want)[DR_LAST_LIST] = malloc(B * sizeof(*want));
    if (!want) die("out of memory");
    double scan_wall, retr_wall;
    double scan_rate = time_emit(scan, m, users, B, reps, rk, &scan_wall);
    for (size_t r = 0; r < B; r++) memcpy(want[r], users[r]->last_list, sizeof(want[r]));
    fprintf(stderr, "scale_bench: timing the retrieval path\n"); /* a profiler may attach now */
    double upkeep0 = dr_emitter_stats(retr)->index_seconds;
    uint64_t upserts0 = dr_emitter_stats(retr)->index_upserts;
    double retr_rate = time_emit(retr, m, users, B, reps, rk, &retr_wall);
    double upkeep_per_call = (dr_emitter_stats(retr)->index_seconds - upkeep0) / reps;
    fprintf(stderr, "scale_bench: upserts while timed %llu, rebuilds %llu\n",
            (unsigned long long)(dr_emitter_stats(retr)->index_upserts - upserts0),
            (unsigned long long)dr_emitter_stats(retr)->index_rebuilds);
    double hits = 0;
    for (size_t r = 0; r < B; r++)
        for (int a = 0; a < 50; a++)
            for (int b = 0; b < 50; b++) hits += users[r]->last_list[a] == want[r][b];
    const char *vectors = getenv("VECTORS");
    printf("items=%zu vectors=%s sources=%d m=%d ef=%d candidates=%d batch=%zu index_build_s=%.1f scan_threads=%d scan_lists_per_cpu_s=%.0f "
           "scan_lists_per_wall_s=%.0f retrieval_lists_per_cpu_s=%.0f retrieval_lists_per_wall_s=%.0f "
           "ratio=%.2f upkeep_ms_per_call=%.1f overlap_at_50=%.3f retrieved=%llu peak_rss_mib=%ld\n",
           n, vectors && *vectors ? vectors : "random", env_int("SOURCES", N_SOURCES), ec.retrieval.M, ec.retrieval.ef_search,
           ec.retrieval.candidates, B, build_s, sc.threads, scan_rate, scan_wall, retr_rate, retr_wall, retr_rate / scan_rate,
           upkeep_per_call * 1e3,
           hits / (50.0 * (double)B),
           (unsigned long long)dr_emitter_stats(retr)->retrieved_lists, peak_rss_kib() / 1024);
    dr_emitter_free(scan);
    dr_emitter_free(retr);
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE);
    rd_kafka_destroy(rk);
    for (size_t r = 0; r < B; r++) dr_user_free(users[r]);
    free(users);
    free(want);
    dr_model_free(m);
    return 0;
}
#endif

/* Heap bytes per item of a model with n items and no events (the rows and
 * the id table), and of a full co-engagement table, then per user. */
static int bench_memory(size_t n) {
    dr_learner_conf_t conf;
    dr_learner_conf_default(&conf);
    conf.max_items = (int64_t)n;
    for (int content = 0; content < 2; content++) {
        conf.content_dim = content ? 16 : 0;
        size_t h0 = heap_bytes();
        dr_model_t *m = model_with_items(n, &conf);
        printf("rows: content_dim=%d dim=%d items=%zu heap_bytes_per_item=%.1f\n", conf.content_dim,
               conf.dim, n, (double)(heap_bytes() - h0) / (double)n);
        dr_model_free(m);
    }
    conf.content_dim = 0;
    /* co-engagement tables: S items engaged in random order by many users,
     * until every table has reached its cap (and made room at least once) */
    const size_t S = 2000;
    dr_model_t *m = model_with_items(S, &conf);
    size_t h0 = heap_bytes();
    uint64_t rng = 5;
    for (int64_t j = 0; j < 12000; j++) {
        dr_user_t *u = dr_user_new_conf(j, &conf);
        if (!u) die("out of memory");
        for (int e = 0; e < 40; e++) click(m, u, (int64_t)(dr_rand64(&rng) % S), e, (uint64_t)(j * 40 + e));
        dr_user_free(u);
    }
    size_t full = 0;
    float engaged;
    int64_t ids[1];
    float wts[1];
    for (size_t i = 0; i < S; i++) full += dr_model_item_neighbors(m, (int64_t)i, &engaged, ids, wts, 1) > 0;
    printf("cooc: neighbors_cap=%d items_with_neighbours=%zu/%zu heap_bytes_per_item=%.1f\n",
           conf.cooc_neighbors, full, S, (double)(heap_bytes() - h0) / (double)S);
    /* a user: cached state (decoded record, with its ADWIN rows) and the
     * record stored in RocksDB, after E events */
    for (int e_pow = 2; e_pow <= 4; e_pow++) {
        int E = e_pow == 2 ? 100 : e_pow == 3 ? 1000 : 10000;
        dr_user_t *u = dr_user_new_conf(1, &conf);
        if (!u) die("out of memory");
        for (int e = 0; e < E; e++) click(m, u, (int64_t)(dr_rand64(&rng) % S), 1000000 + e, (uint64_t)e);
        uint8_t *rec;
        size_t len;
        if (dr_user_encode(u, conf.dim, &rec, &len) != 0) die("encode failed");
        size_t h1 = heap_bytes();
        dr_user_t *copy;
        if (dr_user_decode(1, &conf, rec, len, &copy) != 0) die("decode failed");
        printf("user: events=%d cached_heap_bytes=%zu record_bytes=%zu adwin_width=%llu\n", E,
               heap_bytes() - h1, len, (unsigned long long)dr_adwin_width(&copy->drift));
        dr_user_free(copy);
        dr_user_free(u);
        free(rec);
    }
    dr_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "topk") == 0)
        return bench_topk(strtoul(argv[2], NULL, 10), atoi(argv[3]), argc > 4 ? strtoul(argv[4], NULL, 10) : 512);
    if (argc == 3 && strcmp(argv[1], "memory") == 0) return bench_memory(strtoul(argv[2], NULL, 10));
#ifdef DR_EMIT_CHUNK_ITEMS
    if (argc >= 4 && strcmp(argv[1], "emit") == 0)
        return bench_emit(strtoul(argv[2], NULL, 10), atoi(argv[3]), argc > 4 ? strtoul(argv[4], NULL, 10) : 512);
    if (argc >= 3 && strcmp(argv[1], "build") == 0)
        return bench_build(strtoul(argv[2], NULL, 10), argc > 3 ? strtoul(argv[3], NULL, 10) : 8,
                           argc > 4 ? atof(argv[4]) : 20.0, argc > 5 ? atoi(argv[5]) : 1,
                           argc > 6 ? atof(argv[6]) : 3600.0);
#endif
    fprintf(stderr, "usage: scale_bench topk N REPS [B] | scale_bench emit N REPS [B] | "
                    "scale_bench build N [USERS] [SYNC_MS] [THREADS] [MAX_S] | scale_bench memory N\n");
    return 2;
}
