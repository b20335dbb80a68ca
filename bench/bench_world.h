/* bench_world.h - the item and user vectors the retrieval benchmarks score
 * (bench/retrieval_bench.c, bench/scale_bench.c): one seeded generator and
 * a world shaped like trained embeddings. Trained factors are not random:
 * items of a topic point the same way, popular items have longer vectors
 * and larger biases, and a user's vector mixes the few topics it reads.
 * That structure is what an approximate index exploits, so a benchmark of
 * one on structureless vectors measures its worst case, not a catalog's.
 *
 *   clustered item: a random one of `topics` unit centroids plus noise, its
 *                   norm 0.3 .. 1.2 growing with log popularity (a Zipf
 *                   rank), its bias 0.12 x log popularity relative to the
 *                   top item (about -1.1 .. 0 at 1M items);
 *   clustered user: 1-3 topics with random weights, |u| ~ 2, plus noise. */
#ifndef BENCH_WORLD_H
#define BENCH_WORLD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bench_rng {
    uint64_t s;
} bench_rng_t;

/* splitmix64 */
static inline uint64_t bench_next64(bench_rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline double bench_unif(bench_rng_t *r) { return (double)(bench_next64(r) >> 11) / 9007199254740992.0; }

static inline float bench_gauss(bench_rng_t *r) {
    double u = bench_unif(r), v = bench_unif(r);
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

/* topics unit-norm centroids of d floats into centroid (topics x d). */
static inline void bench_topics(bench_rng_t *r, float *centroid, int topics, int d) {
    for (int t = 0; t < topics; t++) {
        float *c = centroid + (size_t)t * (size_t)d, norm = 0;
        for (int k = 0; k < d; k++) {
            c[k] = bench_gauss(r);
            norm += c[k] * c[k];
        }
        for (int k = 0; k < d; k++) c[k] /= sqrtf(norm);
    }
}

/* One item of a catalog of n: its d floats into q, its bias into *b. */
static inline void bench_clustered_item(bench_rng_t *r, const float *centroid, int topics, int d, size_t n,
                                        float *q, float *b) {
    size_t t = bench_next64(r) % (uint64_t)topics;
    double rank = (double)(bench_next64(r) % n) + 1.0;
    double lo = log((double)n + 10.0), hi = log(11.0); /* -log pop of the last and first */
    double frac = (lo - log(rank + 10.0)) / (lo - hi);
    float s = (float)(0.3 + 0.9 * frac);
    for (int k = 0; k < d; k++) q[k] = s * (centroid[t * (size_t)d + k] + 0.6f * bench_gauss(r) / sqrtf((float)d));
    *b = (float)(-0.12 * (log(rank + 10.0) - hi));
}

/* One user's d floats into x (overwritten). */
static inline void bench_clustered_user(bench_rng_t *r, const float *centroid, int topics, int d, float *x) {
    for (int k = 0; k < d; k++) x[k] = 0.0f;
    int m = 1 + (int)(bench_next64(r) % 3);
    double wt[3], sum = 0;
    for (int j = 0; j < m; j++) sum += (wt[j] = bench_unif(r) + 0.2);
    for (int j = 0; j < m; j++) {
        const float *c = centroid + (bench_next64(r) % (uint64_t)topics) * (size_t)d;
        for (int k = 0; k < d; k++) x[k] += (float)(2.0 * wt[j] / sum) * c[k];
    }
    for (int k = 0; k < d; k++) x[k] += 0.4f * bench_gauss(r) / sqrtf((float)d);
}

#endif /* BENCH_WORLD_H */
