/* retrieval_bench.c - the approximate retrieval stage (retrieval/, issue 17)
 * against the production full scan (dr_emit_topk, emitter/dr_emit.h) on the
 * same users and items; built and run by bench/retrieval.sh.
 *
 *   retrieval_bench KIND N       KIND: clustered | gauss
 *
 * Items (d = DIM, 32; bench/bench_world.h): `clustered` is shaped like trained embeddings: 200
 * topics, item = popularity-dependent norm x (its topic's centroid + noise),
 * bias ~ log popularity (Zipf ranks); queries are users mixing 1-3 topics.
 * `gauss` is isotropic Gaussian vectors and biases, the hardest case.
 *
 * Per catalog size it prints
 *   scan:  dr_emit_topk's lists per CPU second and per second (batches of
 *          BATCH users, K = 50, no exclusions or sparse terms), which are
 *          also the exact top-50 the recall is measured against;
 *   build: dr_ann_build's wall and CPU seconds (THREADS threads), bytes per
 *          item (dr_ann_bytes, and malloc's own count);
 *   ann:   for each ef of EF and candidate count of CAND: lists per CPU
 *          second of the ANN path (search CAND candidates, recompute their
 *          exact scores, select the top 50: what the emitter would do, on
 *          one thread), the ratio to the scan's, recall@50 (the share of
 *          the exact top-50 among the candidates, averaged over users);
 *   saved: (SAVE=1) dr_ann_save's seconds and bytes on disk, and
 *          dr_ann_load's seconds with every item in another row (ids
 *          reversed, as rows change across a restart), against the build's:
 *          what a restart of the emitter costs with and without the saved
 *          index (emit.retrieval.persist); recall@50 of the loaded index;
 *   stale: (STALE=1) what an index that lags costs: 10% of the items take
 *          SGD-size steps, recall@50 of the index as built (candidates
 *          rescored with the new vectors); then 1% are replaced by new
 *          vectors, recall again; then after upserting the replaced items
 *          only, and after upserting every touched item; upserts/s.
 * Timings are medians of RUNS runs on the same index, each run timing the
 * scan and then every ef/candidate setting (ratios are per run, then the
 * median), so that load from elsewhere hits both sides alike.
 *
 * Environment: DIM (32), BATCH (512), RUNS (3), THREADS (2), M (48),
 *   EFC (100), EF ("50,64,100"), CAND ("50"), OFFSET (mean: the items' mean
 *   bias; 0: none), IN_PLACE (0: conf.replace_in_place), SAVE (1), STALE (1),
 *   SEED (1). */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "bench_clock.h"
#include "bench_env.h"
#include "bench_world.h"
#include "dr_emit.h"
#include "dr_retrieval.h"

#define K 50
#define TOPICS 200
#define MAX_LIST 16

static int D = 32;

static void die(const char *what) {
    fprintf(stderr, "retrieval_bench: %s\n", what);
    exit(1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) die("out of memory");
    return p;
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t heap_bytes(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* A comma-separated list of positive ints from the environment. */
static size_t env_list(const char *name, const char *def, int *out) {
    const char *v = getenv(name);
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", v && *v ? v : def);
    size_t n = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p && n < MAX_LIST; p = strtok_r(NULL, ",", &save))
        if (atoi(p) > 0) out[n++] = atoi(p);
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n) {
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- data ---------------------------------------------------------------- */

static bench_rng_t rng = {0x9e3779b97f4a7c15ULL};

static uint64_t next64(void) { return bench_next64(&rng); }
static double unif(void) { return bench_unif(&rng); }
static float gauss(void) { return bench_gauss(&rng); }

typedef struct world {
    size_t n;
    float *q, *bias;    /* n x D, n */
    float *centroid;    /* TOPICS x D, unit norm */
    float *users;       /* B x D */
    int clustered;
} world_t;

static void clustered_item(const world_t *w, float *q, float *b) {
    bench_clustered_item(&rng, w->centroid, TOPICS, D, w->n, q, b);
}

static void gauss_item(float *q, float *b) {
    for (int k = 0; k < D; k++) q[k] = gauss() / sqrtf((float)D);
    *b = 0.1f * gauss();
}

static void world_make(world_t *w, int clustered, size_t n, size_t B, uint64_t seed) {
    rng.s = seed * 0x2545f4914f6cdd1dULL + 1;
    w->n = n;
    w->clustered = clustered;
    w->q = xcalloc(n * (size_t)D, sizeof(float));
    w->bias = xcalloc(n, sizeof(float));
    w->centroid = xcalloc(TOPICS * (size_t)D, sizeof(float));
    w->users = xcalloc(B * (size_t)D, sizeof(float));
    bench_topics(&rng, w->centroid, TOPICS, D);
    for (size_t i = 0; i < n; i++) {
        if (clustered) clustered_item(w, w->q + i * D, w->bias + i);
        else gauss_item(w->q + i * D, w->bias + i);
    }
    for (size_t u = 0; u < B; u++) {
        float *x = w->users + u * D;
        if (!clustered) {
            for (int k = 0; k < D; k++) x[k] = gauss();
            continue;
        }
        bench_clustered_user(&rng, w->centroid, TOPICS, D, x);
    }
}

static void world_free(world_t *w) {
    free(w->q);
    free(w->bias);
    free(w->centroid);
    free(w->users);
}

/* ---- the full scan (production path) --------------------------------------- */

typedef struct scan {
    dr_items_view_t view;
    int64_t *ids;
    uint8_t *excluded;
    float *pop, *scores;
    int64_t *author, *topic;
    dr_scored_item_t *out;
    size_t *out_n;
} scan_t;

static void scan_init(scan_t *s, const world_t *w, size_t B) {
    memset(s, 0, sizeof(*s));
    s->ids = xcalloc(w->n, sizeof(int64_t));
    s->excluded = xcalloc(w->n, 1);
    s->pop = xcalloc(w->n, sizeof(float));
    s->author = xcalloc(w->n, sizeof(int64_t));
    s->topic = xcalloc(w->n, sizeof(int64_t));
    for (size_t i = 0; i < w->n; i++) {
        s->ids[i] = (int64_t)i; /* item id = index: the lists name indices */
        s->author[i] = s->topic[i] = -1;
    }
    s->view.n = w->n;
    s->view.dim = D;
    s->view.q = w->q;
    s->view.bias = w->bias;
    s->view.ids = s->ids;
    s->view.excluded = s->excluded;
    s->view.pop = s->pop;
    s->view.author = s->author;
    s->view.topic = s->topic;
    s->scores = xcalloc(B * dr_emit_scratch_items(w->n), sizeof(float));
    s->out = xcalloc(B * K, sizeof(dr_scored_item_t));
    s->out_n = xcalloc(B, sizeof(size_t));
}

static void scan_free(scan_t *s) {
    free(s->ids);
    free(s->excluded);
    free(s->pop);
    free(s->author);
    free(s->topic);
    free(s->scores);
    free(s->out);
    free(s->out_n);
}

/* Exact top-K of every user into truth (B x K, best first). */
static void truth_now(scan_t *s, const world_t *w, size_t B, int64_t *truth) {
    dr_emit_topk(w->users, B, &s->view, K, NULL, NULL, s->scores, s->out, s->out_n);
    for (size_t u = 0; u < B; u++)
        for (size_t j = 0; j < K; j++) truth[u * K + j] = j < s->out_n[u] ? s->out[u * K + j].item_id : -1;
}

/* One timed run of the scan (~1 s): lists per CPU second and per second. */
static void scan_measure(scan_t *s, const world_t *w, size_t B, double *lists_cpu, double *lists_wall) {
    int reps = (int)(600000000.0 / ((double)w->n * (double)B));
    if (reps < 1) reps = 1;
    double c0 = cpu_s(), w0 = wall_s();
    for (int rep = 0; rep < reps; rep++)
        dr_emit_topk(w->users, B, &s->view, K, NULL, NULL, s->scores, s->out, s->out_n);
    *lists_cpu = (double)(B * (size_t)reps) / (cpu_s() - c0);
    *lists_wall = (double)(B * (size_t)reps) / (wall_s() - w0);
}

/* ---- the ANN path -------------------------------------------------------- */

static float exact_score(const world_t *w, const float *u, int64_t i) {
    const float *q = w->q + (size_t)i * D;
    float s = w->bias[i];
    for (int k = 0; k < D; k++) s += u[k] * q[k];
    return s;
}

/* The emitter's side of a list: cand candidates from the index, their
 * exact scores, the best K (a small selection; order does not matter for
 * recall) into list. */
static size_t ann_list_flipped(const dr_ann_t *a, const world_t *w, const float *u, size_t cand,
                               int64_t *cidx, float *cscore, int64_t *list, size_t flip) {
    size_t n = 0;
    if (dr_ann_search(a, u, cand, cidx, NULL, &n) != 0) die("search failed");
    for (size_t j = 0; flip && j < n; j++) cidx[j] = (int64_t)flip - 1 - cidx[j]; /* rows reversed */
    for (size_t j = 0; j < n; j++) cscore[j] = exact_score(w, u, cidx[j]);
    size_t kept = n < K ? n : K;
    for (size_t j = 0; j < kept; j++) { /* partial selection sort: cand is small */
        size_t best = j;
        for (size_t l = j + 1; l < n; l++)
            if (cscore[l] > cscore[best]) best = l;
        float ts = cscore[j];
        int64_t ti = cidx[j];
        cscore[j] = cscore[best], cidx[j] = cidx[best];
        cscore[best] = ts, cidx[best] = ti;
        list[j] = cidx[j];
    }
    for (size_t j = kept; j < K; j++) list[j] = -1;
    return kept;
}

static size_t ann_list(const dr_ann_t *a, const world_t *w, const float *u, size_t cand,
                       int64_t *cidx, float *cscore, int64_t *list) {
    return ann_list_flipped(a, w, u, cand, cidx, cscore, list, 0);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Mean over users of |list ∩ truth| / |truth|. */
static double recall(const int64_t *lists, const int64_t *truth, size_t B) {
    double sum = 0;
    int64_t t[K];
    for (size_t u = 0; u < B; u++) {
        size_t n = 0, hit = 0;
        for (size_t j = 0; j < K; j++)
            if (truth[u * K + j] >= 0) t[n++] = truth[u * K + j];
        qsort(t, n, sizeof(int64_t), cmp_i64);
        for (size_t j = 0; j < K; j++)
            if (lists[u * K + j] >= 0 && bsearch(&lists[u * K + j], t, n, sizeof(int64_t), cmp_i64)) hit++;
        sum += n ? (double)hit / (double)n : 1.0;
    }
    return sum / (double)B;
}

/* One timed run (>= ~0.5 s CPU) of the lists of all B users through the
 * ANN path: lists per CPU second and per second; the lists in lists. */
static void ann_measure(const dr_ann_t *a, const world_t *w, size_t B, size_t cand, int64_t *lists,
                        double *lists_cpu, double *lists_wall) {
    int64_t *cidx = xcalloc(cand, sizeof(int64_t));
    float *cscore = xcalloc(cand, sizeof(float));
    size_t done = 0;
    double c0 = cpu_s(), w0 = wall_s(), dc;
    do {
        for (size_t u = 0; u < B; u++) ann_list(a, w, w->users + u * D, cand, cidx, cscore, lists + u * K);
        done += B;
    } while ((dc = cpu_s() - c0) < 0.5);
    *lists_cpu = (double)done / dc;
    *lists_wall = (double)done / (wall_s() - w0);
    free(cidx);
    free(cscore);
}

/* ---- staleness: vectors that moved since the build ----------------------- */

/* 10% of the items take 3 SGD-size steps each (q += 0.05 (u - 0.1 q) for a
 * random user u, as clicks would; b += 0.01 per step): touched[i] = 1. */
static size_t perturb_steps(world_t *w, size_t B, uint8_t *touched) {
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (unif() >= 0.10) continue;
        float *q = w->q + i * D;
        for (int step = 0; step < 3; step++) {
            const float *u = w->users + (next64() % B) * D;
            for (int k = 0; k < D; k++) q[k] += 0.05f * (u[k] - 0.1f * q[k]);
            w->bias[i] += 0.01f;
        }
        touched[i] = 1;
        n++;
    }
    return n;
}

/* 1% of the items get new vectors (a new topic and popularity, as if
 * re-learned or re-used): touched[i] = 2. */
static size_t perturb_replace(world_t *w, uint8_t *touched) {
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (unif() >= 0.01) continue;
        if (w->clustered) clustered_item(w, w->q + i * D, w->bias + i);
        else gauss_item(w->q + i * D, w->bias + i);
        touched[i] = 2;
        n++;
    }
    return n;
}

/* Upserts the items marked `mark`; returns CPU seconds and adds wall ones. */
static double upsert_marked(dr_ann_t *a, const world_t *w, const uint8_t *touched, uint8_t mark,
                            double *wall) {
    double c0 = cpu_s(), w0 = wall_s();
    for (size_t i = 0; i < w->n; i++)
        if (touched[i] == mark && dr_ann_upsert(a, (int64_t)i, w->q + i * D, w->bias[i]) != 0)
            die("upsert failed");
    *wall += wall_s() - w0;
    return cpu_s() - c0;
}

/* ---- main ---------------------------------------------------------------- */

/* Saves the index, loads it back under reversed rows, and prints both
 * timings beside the build's (see the top comment, "saved"). */
static void saved_index(const char *kind, dr_ann_t *a, const dr_ann_conf_t *conf, const world_t *w, size_t B, size_t n,
                        const int64_t *truth, int64_t *lists, double build_wall, double build_cpu) {
    char dir[] = "/tmp/driftrec-ann-XXXXXX", err[256], cmd[128];
    if (!mkdtemp(dir)) die("mkdtemp");
    int64_t *ids = xcalloc(n, sizeof(int64_t)), *rev = xcalloc(n, sizeof(int64_t));
    for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i, rev[i] = (int64_t)(n - 1 - i);
    double w0 = wall_s();
    if (dr_ann_save(a, dir, ids, n, err, sizeof(err)) != 0) die(err);
    double save_s = wall_s() - w0;
    snprintf(cmd, sizeof(cmd), "du -sb %s", dir);
    FILE *p = popen(cmd, "r");
    unsigned long long bytes = 0;
    if (!p || fscanf(p, "%llu", &bytes) != 1) bytes = 0;
    if (p) pclose(p);
    dr_ann_t *b = NULL;
    size_t kept = 0;
    w0 = wall_s();
    double c0 = cpu_s();
    if (dr_ann_load(&b, dir, conf, rev, n, &kept, err, sizeof(err)) != 0) die(err);
    double load_s = wall_s() - w0, load_cpu = cpu_s() - c0;
    /* the loaded index names item i as row n-1-i: its candidates, renamed
     * back, against the same exact top-50 */
    dr_ann_set_ef(b, 50);
    int64_t cidx[64];
    float cscore[64];
    for (size_t u = 0; u < B; u++) ann_list_flipped(b, w, w->users + u * D, 50, cidx, cscore, lists + u * K, n);
    printf("%s items=%zu saved save_s=%.2f disk_bytes_per_item=%.0f load_s=%.2f load_cpu_s=%.2f kept=%zu "
           "build_s=%.2f build_cpu_s=%.2f build_over_load=%.0f recall50_loaded=%.4f\n",
           kind, n, save_s, (double)bytes / (double)n, load_s, load_cpu, kept, build_wall, build_cpu,
           build_cpu / (load_cpu > 1e-9 ? load_cpu : 1e-9), recall(lists, truth, B));
    fflush(stdout);
    dr_ann_free(b);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(ids);
    free(rev);
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "clustered") != 0 && strcmp(argv[1], "gauss") != 0)) {
        fprintf(stderr, "usage: retrieval_bench clustered|gauss N\n");
        return 2;
    }
    const int clustered = strcmp(argv[1], "clustered") == 0;
    const size_t n = strtoul(argv[2], NULL, 10);
    D = env_int("DIM", 32);
    const size_t B = (size_t)env_int("BATCH", 512);
    int runs = env_int("RUNS", 3);
    if (runs < 1) runs = 1;
    if (runs > 32) runs = 32;
    const int threads = env_int("THREADS", 2);
    int efs[MAX_LIST], cands[MAX_LIST];
    size_t n_ef = env_list("EF", "50,64,100", efs), n_cand = env_list("CAND", "50", cands);
    if (n < K || D < 1 || D > DR_ANN_MAX_DIM || B < 1 || !n_ef || !n_cand) die("bad arguments");
    openblas_set_num_threads(1); /* emit.blas.threads' default */

    world_t w;
    world_make(&w, clustered, n, B, (uint64_t)env_int("SEED", 1));
    scan_t s;
    scan_init(&s, &w, B);
    int64_t *truth = xcalloc(B * K, sizeof(int64_t)), *lists = xcalloc(B * K, sizeof(int64_t));
    truth_now(&s, &w, B, truth);

    dr_ann_conf_t conf;
    dr_ann_conf_default(&conf, D);
    conf.capacity = n;
    conf.M = env_int("M", conf.M);
    conf.ef_construction = env_int("EFC", conf.ef_construction);
    conf.replace_in_place = env_int("IN_PLACE", conf.replace_in_place);
    const char *off = getenv("OFFSET");
    double mean_bias = 0;
    for (size_t i = 0; i < n; i++) mean_bias += w.bias[i];
    conf.bias_offset = off && strcmp(off, "mean") != 0 ? (float)atof(off) : (float)(mean_bias / (double)n);
    dr_ann_t *a;
    char err[160];
    size_t h0 = heap_bytes();
    if (dr_ann_new(&a, &conf, err, sizeof(err)) != 0) die(err);
    double c0 = cpu_s(), w0 = wall_s();
    if (dr_ann_build(a, w.q, w.bias, n, threads) != 0) die("build failed");
    double build_wall = wall_s() - w0, build_cpu = cpu_s() - c0;
    printf("%s items=%zu build M=%d efc=%d offset=%.3f in_place=%d threads=%d build_s=%.2f build_cpu_s=%.2f "
           "bytes_per_item=%.0f heap_bytes_per_item=%.0f\n",
           argv[1], n, conf.M, conf.ef_construction, conf.bias_offset, conf.replace_in_place, threads,
           build_wall, build_cpu,
           (double)dr_ann_bytes(a) / (double)n, (double)(heap_bytes() - h0) / (double)n);
    fflush(stdout);

    if (env_int("SAVE", 1)) saved_index(argv[1], a, &conf, &w, B, n, truth, lists, build_wall, build_cpu);

    /* each run: the scan once, then every configuration once, so that a
     * ratio compares timings taken close together on a shared machine;
     * medians over runs (the ratio: the median of the runs' ratios) */
    int cfg_ef[MAX_LIST * MAX_LIST], cfg_cand[MAX_LIST * MAX_LIST];
    size_t n_cfg = 0;
    for (size_t e = 0; e < n_ef; e++)
        for (size_t c = 0; c < n_cand; c++)
            if (efs[e] >= cands[c]) { /* a search of k uses ef >= k */
                cfg_ef[n_cfg] = efs[e];
                cfg_cand[n_cfg++] = cands[c];
            }
    double scan_c[32], scan_w[32], (*ann_c)[32] = xcalloc(n_cfg + 1, sizeof(*ann_c)),
           (*ann_w)[32] = xcalloc(n_cfg + 1, sizeof(*ann_w)), (*ratio)[32] = xcalloc(n_cfg + 1, sizeof(*ratio));
    double *rec = xcalloc(n_cfg + 1, sizeof(double));
    for (int r = 0; r < runs; r++) {
        scan_measure(&s, &w, B, &scan_c[r], &scan_w[r]);
        for (size_t j = 0; j < n_cfg; j++) {
            dr_ann_set_ef(a, cfg_ef[j]);
            ann_measure(a, &w, B, (size_t)cfg_cand[j], lists, &ann_c[j][r], &ann_w[j][r]);
            ratio[j][r] = ann_c[j][r] / scan_c[r];
            rec[j] = recall(lists, truth, B);
        }
    }
    printf("%s items=%zu scan lists_per_cpu_s=%.0f lists_per_s=%.0f\n", argv[1], n, median(scan_c, (size_t)runs),
           median(scan_w, (size_t)runs));
    for (size_t j = 0; j < n_cfg; j++)
        printf("%s items=%zu ann ef=%d cand=%d lists_per_cpu_s=%.0f lists_per_s=%.0f ratio=%.2f recall50=%.4f\n",
               argv[1], n, cfg_ef[j], cfg_cand[j], median(ann_c[j], (size_t)runs), median(ann_w[j], (size_t)runs),
               median(ratio[j], (size_t)runs), rec[j]);
    fflush(stdout);
    free(ann_c);
    free(ann_w);
    free(ratio);
    free(rec);

    if (env_int("STALE", 1)) {
        /* at the first ef and candidate count; each recall against the
         * exact top-50 of the vectors as they are now */
        const size_t cand = (size_t)cands[0];
        const int ef = efs[0] > (int)cand ? efs[0] : (int)cand;
        dr_ann_set_ef(a, efs[0]);
        uint8_t *touched = xcalloc(n, 1);
        double uc, uw, up_wall = 0, up_cpu = 0;
        size_t n_steps = perturb_steps(&w, B, touched);
        truth_now(&s, &w, B, truth);
        ann_measure(a, &w, B, cand, lists, &uc, &uw);
        double r_steps = recall(lists, truth, B);
        size_t n_repl = perturb_replace(&w, touched);
        truth_now(&s, &w, B, truth);
        ann_measure(a, &w, B, cand, lists, &uc, &uw);
        double r_stale = recall(lists, truth, B);
        up_cpu += upsert_marked(a, &w, touched, 2, &up_wall);
        ann_measure(a, &w, B, cand, lists, &uc, &uw);
        double r_repl = recall(lists, truth, B);
        up_cpu += upsert_marked(a, &w, touched, 1, &up_wall);
        ann_measure(a, &w, B, cand, lists, &uc, &uw);
        double r_all = recall(lists, truth, B);
        printf("%s items=%zu stale ef=%d cand=%d stepped=%zu replaced=%zu recall50_steps_only=%.4f "
               "recall50_stale=%.4f recall50_replaced_upserted=%.4f recall50_after_upserts=%.4f "
               "upserts_per_s=%.0f upserts_per_cpu_s=%.0f\n",
               argv[1], n, ef, (int)cand, n_steps, n_repl, r_steps, r_stale, r_repl, r_all,
               (double)(n_steps + n_repl) / up_wall, (double)(n_steps + n_repl) / up_cpu);
        free(touched);
    }
    dr_ann_free(a);
    free(truth);
    free(lists);
    scan_free(&s);
    world_free(&w);
    return 0;
}
