/* topk_bench.c - the cost of dr_emit_topk's top-K selection alone (issue 18:
 * "top-K selection must not dominate"), built and run by bench/topk.sh
 * against a build's libraries or against an older emitter/topk.c.
 *
 *   topk_bench N REPS [B] [ROUNDS]
 *
 * N items with Gaussian vectors (d = 32), small biases and Zipf-like
 * popularity, ids a permutation of the rows, 1% of them blocked; B users
 * (default 512, emit.batch) with Gaussian vectors, a population-prior
 * weight and 10 excluded items each; K = 50. Scores come from the real
 * cblas_sgemm (one thread, as the emitter runs it). Each of ROUNDS (5)
 * rounds times REPS calls of dr_emit_topk and then REPS bare sgemm passes
 * of the same shapes and scratch (CPU time); the selection is the
 * difference. Prints per round and the medians: ns of selection per list
 * and per item, the share of the bare sgemm's time in dr_emit_topk's, and
 * a hash of the lists (the same for every build that ranks alike). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "bench_clock.h"
#include "dr_bytes.h"
#include "dr_emit.h"

#define DIM 32
#define K 50
#define N_EXCLUDED 10
#define MAX_ROUNDS 64

static void die(const char *what) {
    fprintf(stderr, "topk_bench: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

/* A standard normal draw (Box-Muller; one of the pair is enough here). */
static float gauss(uint64_t *rng) {
    double u = dr_rand01(rng), v = dr_rand01(rng);
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    if (argc < 3) die("usage: topk_bench N REPS [B] [ROUNDS]");
    size_t n = strtoull(argv[1], NULL, 10), B = argc > 3 ? strtoull(argv[3], NULL, 10) : 512;
    int reps = atoi(argv[2]), rounds = argc > 4 ? atoi(argv[4]) : 5;
    if (n == 0 || B == 0 || reps < 1 || rounds < 1 || rounds > MAX_ROUNDS) die("bad arguments");
    openblas_set_num_threads(1); /* emit.blas.threads' default */
    uint64_t rng = 18;
    float *q = xmalloc(n * DIM * sizeof(float)), *bias = xmalloc(n * sizeof(float));
    float *pop = xmalloc(n * sizeof(float)), *U = xmalloc(B * DIM * sizeof(float));
    float *w = xmalloc(B * sizeof(float));
    int64_t *ids = xmalloc(n * sizeof(int64_t)), *excl_idx = xmalloc(B * N_EXCLUDED * sizeof(int64_t));
    uint8_t *blocked = xmalloc(n);
    for (size_t i = 0; i < n * DIM; i++) q[i] = 0.3f * gauss(&rng);
    for (size_t i = 0; i < n; i++) {
        bias[i] = 0.1f * gauss(&rng);
        pop[i] = (float)(1.0 / (1.0 + (double)(dr_rand64(&rng) % n))); /* Zipf-like ranks */
        ids[i] = (int64_t)((i * 7919 + 13) % n) + 1;                 /* rows not in id order */
        blocked[i] = dr_rand64(&rng) % 100 == 0;
    }
    dr_exclusions_t *excl = xmalloc(B * sizeof(*excl));
    for (size_t u = 0; u < B; u++) {
        for (size_t d = 0; d < DIM; d++) U[u * DIM + d] = gauss(&rng);
        w[u] = u % 4 == 0 ? 0.0f : (float)dr_rand01(&rng); /* some users without the prior */
        for (size_t j = 0; j < N_EXCLUDED; j++) excl_idx[u * N_EXCLUDED + j] = (int64_t)(dr_rand64(&rng) % n);
        excl[u] = (dr_exclusions_t){excl_idx + u * N_EXCLUDED, N_EXCLUDED, NULL};
    }
    dr_items_view_t items = {n, DIM, q, bias, ids, blocked, pop, NULL, NULL};
    dr_emit_terms_t terms = {w, NULL, NULL, NULL, NULL};
    size_t step = dr_emit_scratch_items(n);
    float *scores = xmalloc(B * step * sizeof(float));
    dr_scored_item_t *out = xmalloc(B * K * sizeof(*out));
    size_t *out_n = xmalloc(B * sizeof(*out_n));

    dr_emit_topk(U, B, &items, K, excl, &terms, scores, out, out_n); /* warm-up, faults pages in */
    uint64_t hash = 0;
    for (size_t u = 0; u < B; u++)
        for (size_t r = 0; r < out_n[u]; r++) {
            uint32_t bits;
            memcpy(&bits, &out[u * K + r].score, sizeof(bits));
            hash = dr_mix64(hash ^ (uint64_t)out[u * K + r].item_id ^ ((uint64_t)bits << 32));
        }
    double sel_list[MAX_ROUNDS], sel_item[MAX_ROUNDS], share[MAX_ROUNDS];
    double lists = (double)B * reps;
    for (int r = 0; r < rounds; r++) {
        double t0 = cpu_s();
        for (int rep = 0; rep < reps; rep++) dr_emit_topk(U, B, &items, K, excl, &terms, scores, out, out_n);
        double topk_s = cpu_s() - t0;
        t0 = cpu_s();
        for (int rep = 0; rep < reps; rep++)
            for (size_t first = 0; first < n; first += step) {
                size_t c = n - first < step ? n - first : step;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)c, DIM, 1.0f, U, DIM,
                            q + first * DIM, DIM, 0.0f, scores, (int)c);
            }
        double sgemm_s = cpu_s() - t0;
        sel_list[r] = (topk_s - sgemm_s) / lists * 1e9;
        sel_item[r] = sel_list[r] / (double)n;
        share[r] = sgemm_s / topk_s;
        printf("round %d: topk %.3f s, bare sgemm %.3f s: selection %.0f ns per list, %.3f ns per item, "
               "share %.2f\n", r + 1, topk_s, sgemm_s, sel_list[r], sel_item[r], share[r]);
    }
    printf("items=%zu batch=%zu k=%d reps=%d selection_ns_per_list=%.0f selection_ns_per_item=%.3f "
           "share=%.2f lists_hash=%016llx\n",
           n, B, K, reps, median(sel_list, rounds), median(sel_item, rounds), median(share, rounds),
           (unsigned long long)hash);
    free(q); free(bias); free(pop); free(U); free(w); free(ids); free(excl_idx); free(blocked);
    free(excl); free(scores); free(out); free(out_n);
    return 0;
}
