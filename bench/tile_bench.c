/* tile_bench.c - would the full scan gain from scoring in tiles that keep
 * their scores in cache? One-thread cblas_sgemm of B = 512 users against N
 * items (d = 32) in tiles of UB users x IB items, each tile's rows then
 * passed over once (a max, standing in for the selection), CPU time per
 * list (docs/BENCHMARKS.md, "Benchmark 3: scores kept in cache").
 *
 *   cc -O3 -march=native bench/tile_bench.c -o tile_bench -lopenblas
 *   ./tile_bench N UB IB REPS          (NOPASS=1: the sgemm alone)
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static volatile float sink;

static void pass(const float *c, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *p = c + r * cols;
        float m = -1e30f;
        for (size_t j = 0; j < cols; j++) m = p[j] > m ? p[j] : m;
        sink += m;
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: tile_bench N UB IB REPS\n");
        return 2;
    }
    size_t n = strtoul(argv[1], NULL, 10), ub = strtoul(argv[2], NULL, 10), ib = strtoul(argv[3], NULL, 10);
    size_t B = 512, d = 32;
    int reps = atoi(argv[4]), with_pass = getenv("NOPASS") == NULL;
    openblas_set_num_threads(1);
    float *U = malloc(B * d * sizeof(float)), *Q = malloc(n * d * sizeof(float)),
          *C = malloc(ub * ib * sizeof(float));
    if (!U || !Q || !C || ub == 0 || ib == 0) return 1;
    for (size_t i = 0; i < B * d; i++) U[i] = (float)rand() / (float)RAND_MAX;
    for (size_t i = 0; i < n * d; i++) Q[i] = (float)rand() / (float)RAND_MAX;
    double t0 = cpu_s();
    for (int r = 0; r < reps; r++)
        for (size_t f = 0; f < n; f += ib) {
            size_t c = n - f < ib ? n - f : ib;
            for (size_t u0 = 0; u0 < B; u0 += ub) {
                size_t m = B - u0 < ub ? B - u0 : ub;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)c, (int)d, 1.0f, U + u0 * d,
                            (int)d, Q + f * d, (int)d, 0.0f, C, (int)c);
                if (with_pass) pass(C, m, c);
            }
        }
    double t = cpu_s() - t0;
    printf("items=%zu tile=%zux%zu pass=%d us_per_list=%.1f\n", n, ub, ib, with_pass, t / (reps * (double)B) * 1e6);
    free(U);
    free(Q);
    free(C);
    return 0;
}
