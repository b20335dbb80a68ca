/* test_adwin.c - unit tests for learner/adwin.c: detections on the reference
 * stream, false-alarm rates, exact window statistics, the encoding's round
 * trip and its resistance to corrupt input. Each test quotes its claim. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_adwin.h"
#include "dr_err.h"

#ifndef DR_SOURCE_DIR
#define DR_SOURCE_DIR "."
#endif

#define STREAM_REL "/data/adwin/skmultiflow_drift_stream.txt"
#define ENC_MAX 65536

/* ---- Helpers -------------------------------------------------------- */

/* xorshift64*: a seeded PRNG of our own, so results never depend on libc. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static double rng_uniform(uint64_t *s) { /* in (0, 1) */
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(uint64_t *s) { /* Box-Muller */
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static dr_adwin_conf_t conf_default(void) {
    dr_adwin_conf_t c;
    dr_adwin_conf_default(&c);
    return c;
}

static void init_ok(dr_adwin_t *a, const dr_adwin_conf_t *c) {
    assert_int_equal(dr_adwin_init(a, c), 0);
}

/* Reads the shared reference stream into a malloc'd array; NULL if absent. */
static double *load_stream(size_t *n) {
    char path[4096];
    const char *dir = getenv("DR_SHARED_DIR");
    if (dir != NULL && dir[0] != '\0')
        snprintf(path, sizeof(path), "%s" STREAM_REL, dir);
    else
        snprintf(path, sizeof(path), "%s/../shared" STREAM_REL, DR_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        print_message("reference stream not found at %s "
                      "(set DR_SHARED_DIR); skipping\n", path);
        return NULL;
    }
    double *xs = malloc(4096 * sizeof(double));
    assert_non_null(xs);
    *n = 0;
    while (*n < 4096 && fscanf(f, "%lf", &xs[*n]) == 1)
        (*n)++;
    fclose(f);
    return xs;
}

/* Runs `xs` through a fresh detector; stores detection indices. */
static size_t run_stream(const dr_adwin_conf_t *c, const double *xs, size_t n,
                         size_t *det, size_t maxdet) {
    dr_adwin_t a;
    size_t nd = 0;
    init_ok(&a, c);
    for (size_t i = 0; i < n; i++) {
        int rc = dr_adwin_update(&a, xs[i]);
        assert_true(rc == 0 || rc == 1);
        if (rc == 1 && nd < maxdet)
            det[nd++] = i;
    }
    assert_int_equal(dr_adwin_detections(&a), nd);
    assert_int_equal(dr_adwin_updates(&a), n);
    dr_adwin_free_buckets(&a);
    return nd;
}

/* Piecewise-constant mean plus N(0, sd) noise, shifting every `seg` items. */
static double *drift_stream(size_t n, size_t seg, double sd, uint64_t seed) {
    static const double means[] = {0.0, 3.0, -2.0, 5.0, 1.0, -4.0, 2.0};
    double *xs = malloc(n * sizeof(double));
    assert_non_null(xs);
    for (size_t i = 0; i < n; i++)
        xs[i] = means[(i / seg) % 7] + sd * rng_normal(&seed);
    return xs;
}

static size_t encode(const dr_adwin_t *a, uint8_t *buf) {
    size_t w = 0;
    assert_int_equal(dr_adwin_serialize(a, buf, ENC_MAX, &w), 0);
    assert_int_equal(w, dr_adwin_serialized_size(a));
    return w;
}

static uint64_t bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

/* ---- Configuration and input checks ------------------------------------ */

/* Claim: "dr_adwin_conf_default fills conf with MOA's defaults: delta
 * 0.002, clock 32, max_buckets 5, min_window 10, min_sub_window 5,
 * reset_on_cut false". */
static void test_conf_defaults_are_moa(void **state) {
    (void)state;
    dr_adwin_conf_t c = conf_default();
    assert_true(c.delta == 0.002);
    assert_int_equal(c.clock, 32);
    assert_int_equal(c.max_buckets, 5);
    assert_int_equal(c.min_window, 10);
    assert_int_equal(c.min_sub_window, 5);
    assert_false(c.reset_on_cut);
    assert_int_equal(dr_adwin_conf_check(&c), 0);
}

/* Claim: "dr_adwin_conf_check returns DR_ECONFIG when a field is out of
 * range or not finite"; "dr_adwin_init returns DR_ECONFIG if conf is
 * invalid (then a is left as an empty detector with default parameters)". */
static void test_conf_check_rejects_out_of_range(void **state) {
    (void)state;
    static const struct { int field; double v; } bad[] = {
        {0, 0.0}, {0, 1.0}, {0, -0.1}, {0, NAN}, {1, 0}, {2, 1},
        {2, DR_ADWIN_MAX_BUCKETS + 1}, {3, -1}, {4, -1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dr_adwin_conf_t c = conf_default();
        dr_adwin_t a;
        if (bad[i].field == 0) c.delta = bad[i].v;
        if (bad[i].field == 1) c.clock = (int)bad[i].v;
        if (bad[i].field == 2) c.max_buckets = (int)bad[i].v;
        if (bad[i].field == 3) c.min_window = (int)bad[i].v;
        if (bad[i].field == 4) c.min_sub_window = (int)bad[i].v;
        assert_int_equal(dr_adwin_conf_check(&c), DR_ECONFIG);
        assert_int_equal(dr_adwin_init(&a, &c), DR_ECONFIG);
        assert_int_equal(a.max_buckets, 5);
        assert_int_equal(dr_adwin_update(&a, 1.0), 0);
        dr_adwin_free_buckets(&a);
    }
    assert_int_equal(dr_adwin_conf_check(NULL), DR_EINVAL);
    assert_int_equal(dr_adwin_init(NULL, NULL), DR_EINVAL);
}

/* Claim: "DR_EINVAL if a is NULL or x is not finite, DR_ERANGE if |x| >
 * DR_ADWIN_MAX_ABS ... On error the detector is unchanged"; an empty window
 * reports mean and variance 0; init allocates nothing. */
static void test_update_rejects_non_finite(void **state) {
    (void)state;
    dr_adwin_t a;
    init_ok(&a, NULL);
    assert_true(dr_adwin_mean(&a) == 0.0 && dr_adwin_variance(&a) == 0.0);
    assert_int_equal(dr_adwin_heap_bytes(&a), 0); /* init allocates nothing */
    assert_int_equal(dr_adwin_update(&a, 2.0), 0);
    assert_int_equal(dr_adwin_update(&a, NAN), DR_EINVAL);
    assert_int_equal(dr_adwin_update(&a, INFINITY), DR_EINVAL);
    assert_int_equal(dr_adwin_update(&a, -INFINITY), DR_EINVAL);
    assert_int_equal(dr_adwin_update(NULL, 1.0), DR_EINVAL);
    assert_int_equal(dr_adwin_update(&a, 1e101), DR_ERANGE);
    assert_int_equal(dr_adwin_update(&a, -1e101), DR_ERANGE);
    assert_int_equal(dr_adwin_width(&a), 1);
    assert_int_equal(dr_adwin_updates(&a), 1);
    assert_true(dr_adwin_total(&a) == 2.0 && dr_adwin_mean(&a) == 2.0);
    dr_adwin_free_buckets(&a);
    dr_adwin_free_buckets(&a); /* "Safe to call repeatedly" */
    dr_adwin_free_buckets(NULL);
}

/* ---- Detection behaviour ----------------------------------------------- */

/* Claim (brief): on the scikit-multiflow drift stream (2000 integers, 0/1
 * then 0..7 from index 999), delta 0.002, clock 32, M 5 report changes at
 * 0-based indices [1023, 1055] without reset and [1023] with reset. (The
 * same as MOA's ADWIN.java; scikit-multiflow's own port, which differs from
 * MOA, reports [1023, 1055, 1087, 1151].) */
static void test_reference_stream(void **state) {
    (void)state;
    size_t n, det[16];
    double *xs = load_stream(&n);
    if (xs == NULL)
        skip();
    assert_int_equal(n, 2000);
    dr_adwin_conf_t c = conf_default();
    size_t nd = run_stream(&c, xs, n, det, 16);
    assert_int_equal(nd, 2);
    assert_int_equal(det[0], 1023);
    assert_int_equal(det[1], 1055);
    c.reset_on_cut = true;
    nd = run_stream(&c, xs, n, det, 16);
    assert_int_equal(nd, 1);
    assert_int_equal(det[0], 1023);
    free(xs);
}

/* Claim: a constant stream (10,000 x 0.5) never detects a change. */
static void test_constant_stream_never_detects(void **state) {
    (void)state;
    dr_adwin_t a;
    init_ok(&a, NULL);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(dr_adwin_update(&a, 0.5), 0);
    assert_int_equal(dr_adwin_detections(&a), 0);
    assert_int_equal(dr_adwin_width(&a), 10000);
    assert_true(dr_adwin_mean(&a) == 0.5);
    assert_true(dr_adwin_variance(&a) == 0.0);
    dr_adwin_free_buckets(&a);
}

/* Claim: 5,000 standard normal values give at most 2 detections (ADWIN's
 * false-positive rate is bounded by delta per check). Seeds 1..5. */
static void test_normal_noise_few_false_alarms(void **state) {
    (void)state;
    dr_adwin_conf_t c = conf_default();
    for (uint64_t seed = 1; seed <= 5; seed++) {
        double *xs = malloc(5000 * sizeof(double));
        uint64_t s = seed * UINT64_C(0x9E3779B97F4A7C15);
        size_t det[16];
        assert_non_null(xs);
        for (int i = 0; i < 5000; i++)
            xs[i] = rng_normal(&s);
        assert_in_range(run_stream(&c, xs, 5000, det, 16), 0, 2);
        free(xs);
    }
}

/* Naive statistics of xs[from..to): total, and sum of squared deviations
 * divided by the count (two-pass). */
static void naive_stats(const double *xs, size_t from, size_t to,
                        double *total, double *var) {
    double t = 0.0, ss = 0.0;
    for (size_t i = from; i < to; i++)
        t += xs[i];
    double mean = t / (double)(to - from);
    for (size_t i = from; i < to; i++)
        ss += (xs[i] - mean) * (xs[i] - mean);
    *total = t;
    *var = ss / (double)(to - from);
}

/* Claim: "width, total and variance agree with a naive computation over
 * the kept items" - after every update the window is exactly the last
 * `width` items, through cuts (checked after each of 14,000 updates). */
static void test_window_matches_naive(void **state) {
    (void)state;
    const size_t n = 14000;
    double *xs = drift_stream(n, 2000, 1.0, 42);
    dr_adwin_t a;
    uint64_t min_width_after_cut = UINT64_MAX;
    init_ok(&a, NULL);
    for (size_t i = 0; i < n; i++) {
        int rc = dr_adwin_update(&a, xs[i]);
        uint64_t w = dr_adwin_width(&a);
        double total, var;
        assert_true(rc == 0 || rc == 1);
        assert_true(w >= 1 && w <= i + 1);
        if (rc == 1 && w < min_width_after_cut)
            min_width_after_cut = w;
        naive_stats(xs, i + 1 - w, i + 1, &total, &var);
        assert_true(fabs(dr_adwin_total(&a) - total) <= 1e-9 * (double)w);
        assert_true(fabs(dr_adwin_mean(&a) - total / (double)w) <= 1e-9);
        assert_true(fabs(dr_adwin_variance(&a) - var) <= 1e-9 * (1.0 + var));
    }
    assert_true(dr_adwin_detections(&a) >= 6); /* one per shift at least */
    assert_true(min_width_after_cut < 2000);
    dr_adwin_free_buckets(&a);
    free(xs);
}

/* Claim: "O(M log W) memory": "Bucket rows in use: at most about
 * log2(width / max_buckets) + 2", and the heap is one block of
 * rows * (16 * (max_buckets + 1) + 1) bytes. */
static void test_memory_is_logarithmic(void **state) {
    (void)state;
    dr_adwin_t a;
    init_ok(&a, NULL);
    for (int i = 0; i < (1 << 20); i++)
        assert_int_equal(dr_adwin_update(&a, 0.25), 0);
    unsigned rows = dr_adwin_rows(&a);
    assert_int_equal(dr_adwin_width(&a), 1u << 20);
    assert_true(rows <= (unsigned)(log2((double)(1 << 20) / 5.0) + 2.0));
    assert_int_equal(dr_adwin_heap_bytes(&a), rows * (16u * 6u + 1u));
    assert_true(dr_adwin_serialized_size(&a) <= DR_ADWIN_HEADER_SIZE +
                                                   rows * (1u + 16u * 5u));
    assert_true(dr_adwin_mean(&a) == 0.25);
    assert_int_equal(sizeof(dr_adwin_t), 80);
    dr_adwin_free_buckets(&a);
    assert_int_equal(dr_adwin_heap_bytes(&a), 0);
}

/* Claim: "reset_on_cut: empty the window after a detection"; "dr_adwin_reset
 * empties the window ... keeping the allocated rows and the lifetime
 * counters"; "dr_adwin_free_buckets ... a remains usable". */
static void test_reset_and_free_keep_detector_usable(void **state) {
    (void)state;
    dr_adwin_conf_t c = conf_default();
    double *xs = drift_stream(6000, 2000, 1.0, 7);
    dr_adwin_t a;
    c.reset_on_cut = true;
    init_ok(&a, &c);
    for (size_t i = 0; i < 6000; i++)
        if (dr_adwin_update(&a, xs[i]) == 1)
            assert_int_equal(dr_adwin_width(&a), 0);
    assert_true(dr_adwin_detections(&a) >= 2);
    size_t heap = dr_adwin_heap_bytes(&a);
    dr_adwin_reset(&a);
    assert_int_equal(dr_adwin_width(&a), 0);
    assert_int_equal(dr_adwin_heap_bytes(&a), heap);
    assert_int_equal(dr_adwin_updates(&a), 6000);
    dr_adwin_free_buckets(&a);
    assert_int_equal(dr_adwin_update(&a, 1.5), 0);
    assert_true(dr_adwin_width(&a) == 1 && dr_adwin_mean(&a) == 1.5);
    dr_adwin_free_buckets(&a);
    free(xs);
}

/* Claim: "a large-value stream (values ~1e15 with small noise, then a
 * shift) stays accurate: variance non-negative, mean correct to relative
 * 1e-9, detection of the shift". Noise sd 1000 (1e-12 relative), shift
 * +20000 at item 4000; no alarm before it, one within 100 items after. */
static void test_large_values_stay_accurate(void **state) {
    (void)state;
    const size_t n = 8000;
    double *xs = malloc(n * sizeof(double));
    uint64_t s = 99;
    size_t first = 0;
    dr_adwin_t a;
    assert_non_null(xs);
    for (size_t i = 0; i < n; i++)
        xs[i] = 1e15 + (i >= 4000 ? 20000.0 : 0.0) + 1000.0 * rng_normal(&s);
    init_ok(&a, NULL);
    for (size_t i = 0; i < n; i++) {
        if (dr_adwin_update(&a, xs[i]) == 1 && first == 0)
            first = i;
        uint64_t w = dr_adwin_width(&a);
        double dev = 0.0; /* mean of the kept items, relative to 1e15 */
        for (size_t j = i + 1 - w; j <= i; j++)
            dev += xs[j] - 1e15;
        double mean = 1e15 + dev / (double)w;
        assert_true(dr_adwin_variance(&a) >= 0.0);
        assert_true(fabs(dr_adwin_mean(&a) - mean) <= 1e-9 * mean);
    }
    assert_in_range(first, 4000, 4100);
    assert_true(fabs(sqrt(dr_adwin_variance(&a)) - 1000.0) < 100.0);
    dr_adwin_free_buckets(&a);
    free(xs);
}

/* Claim: the window's statistics stay accurate when the stream drifts from
 * near 0 to a level 1e12 times its noise ("the center moves to the window's
 * mean once the mean has drifted more than 2^10 standard deviations"):
 * after the jump is detected the variance matches the naive one to 1e-6
 * and no further change is reported. */
static void test_far_drift_recenters(void **state) {
    (void)state;
    const size_t n = 6000;
    double *xs = malloc(n * sizeof(double));
    uint64_t s = 5;
    dr_adwin_t a;
    assert_non_null(xs);
    for (size_t i = 0; i < n; i++)
        xs[i] = (i >= 2000 ? 1e12 : 0.0) + rng_normal(&s);
    init_ok(&a, NULL);
    for (size_t i = 0; i < n; i++) {
        int rc = dr_adwin_update(&a, xs[i]);
        assert_true(rc == 0 || (rc == 1 && i >= 2000 && i < 2100));
    }
    uint64_t w = dr_adwin_width(&a);
    double total, var;
    assert_true(w > 3000);
    naive_stats(xs, n - w, n, &total, &var);
    assert_true(fabs(dr_adwin_variance(&a) - var) <= 1e-6 * var);
    assert_true(fabs(dr_adwin_mean(&a) - total / (double)w) <= 1e-3);
    dr_adwin_free_buckets(&a);
    free(xs);
}

/* ---- MOA's scan, kept here as the reference ----------------------------- */

/* adwin.c's row storage, read directly (a test-only view of private
 * fields): row i's (total, variance) pairs, M + 1 slots a row, then one
 * count byte a row after all cap_rows rows. */
static const double *ref_row(const dr_adwin_t *a, unsigned i) {
    return a->rows + (size_t)i * 2u * ((size_t)a->max_buckets + 1u);
}

static unsigned ref_count(const dr_adwin_t *a, unsigned i) {
    const uint8_t *c = (const uint8_t *)ref_row(a, a->cap_rows);
    return c[i];
}

/* One pass of MOA's scan over a's window, written as ADWIN.java does it:
 * every cut point with both parts above mwl + 1 items gets
 * blnCutexpression, with its two divisions per mean, two for m and the
 * square root. True if some point would cut. */
static bool moa_scan_finds_cut(const dr_adwin_t *a) {
    uint64_t n0 = 0, n1 = a->width, mwl = a->min_sub_window;
    double u0 = 0.0, u1 = a->total;
    double n = (double)a->width;
    for (int i = (int)a->nrows - 1; i >= 0; i--) {
        const double *r = ref_row(a, (unsigned)i);
        unsigned c = ref_count(a, (unsigned)i);
        for (unsigned k = 0; k < c; k++) {
            n0 += (uint64_t)1 << i;
            n1 -= (uint64_t)1 << i;
            u0 += r[2u * k];
            u1 -= r[2u * k];
            if (i == 0 && k == c - 1)
                return false; /* W1 would be empty */
            if (n1 <= mwl + 1 || n0 <= mwl + 1)
                continue;
            double dd = log(2 * log(n) / a->delta);
            double v = a->variance / n;
            double m = 1.0 / ((double)n0 - (double)mwl + 1) +
                       1.0 / ((double)n1 - (double)mwl + 1);
            double epsilon = sqrt(2 * m * v * dd) + 2.0 / 3 * dd * m;
            double absvalue = u0 / (double)n0 - u1 / (double)n1;
            if (fabs(absvalue) > epsilon)
                return true;
        }
    }
    return false;
}

/* One item of random stream `kind` (0..6) at step i of n. */
static double random_item(int kind, size_t i, size_t n, double scale,
                          uint64_t *s) {
    size_t phase = i * 6 / n;
    switch (kind) {
    case 0: /* Bernoulli whose rate moves between segments */
        return rng_uniform(s) < 0.3 + 0.08 * (double)phase ? 1.0 : 0.0;
    case 1: /* Gaussian with small jumps (many near misses) */
        return scale * (0.25 * (double)(phase % 3) + rng_normal(s));
    case 2: /* integers 0..7, mean moving */
        return (double)((rng_next(s) % 8 + phase) % 8);
    case 3: /* a slow ramp plus noise */
        return scale * ((double)i / (double)n + 0.3 * rng_normal(s));
    case 4: /* constant stretches (variance 0), then a step */
        return phase < 3 ? 2.0 : (phase < 5 ? 2.0 + scale : 2.0 + scale * rng_uniform(s));
    case 5: /* rare large outliers */
        return scale * (rng_uniform(s) < 0.01 ? 30.0 : rng_normal(s));
    default: /* offset far from 0: centered sums */
        return 1e9 + scale * rng_normal(s);
    }
}

/* Claim (docs/ADWIN.md, "Exactness of the faster scan"): the filter in
 * front of MOA's cut test only skips points where MOA's test fails, so
 * every decision is MOA's. A scan that wrongly skipped a cutting point
 * would stop while MOA's would cut; so after every check, MOA's own scan
 * of the window left must find no cut. 240 seeded random streams of 3,000
 * items: 7 kinds, scales from 1e-30 to 1e60 (inside and outside the
 * filter's range), delta from 1e-4 to 0.99, mwl 0..9, M 2..9, clock 1 or
 * 3, with and without reset. They must also cut, often. */
static void test_filtered_scan_matches_moa(void **state) {
    (void)state;
    static const double deltas[] = {1e-4, 0.002, 0.05, 0.15, 0.5, 0.99};
    static const double scales[] = {1.0, 1e-30, 1e-3, 1e3, 1e25, 1e60};
    static const int mwls[] = {0, 1, 2, 5, 9};
    static const int buckets[] = {2, 3, 5, 9};
    uint64_t s = 20240611;
    unsigned long checks = 0, cuts = 0;
    for (int stream = 0; stream < 240; stream++) {
        dr_adwin_conf_t c = conf_default();
        c.delta = deltas[rng_next(&s) % 6];
        c.min_sub_window = mwls[rng_next(&s) % 5];
        c.max_buckets = buckets[rng_next(&s) % 4];
        c.clock = rng_next(&s) % 4 == 0 ? 3 : 1;
        c.min_window = rng_next(&s) % 2 ? 10 : 0;
        c.reset_on_cut = rng_next(&s) % 5 == 0;
        int kind = stream % 7;
        double scale = scales[rng_next(&s) % 6];
        dr_adwin_t a;
        init_ok(&a, &c);
        for (size_t i = 0; i < 3000; i++) {
            int rc = dr_adwin_update(&a, random_item(kind, i, 3000, scale, &s));
            assert_true(rc == 0 || rc == 1);
            cuts += rc == 1;
            if (a.phase == 0 && dr_adwin_width(&a) > (uint64_t)c.min_window) {
                checks++;
                assert_false(moa_scan_finds_cut(&a));
            }
        }
        dr_adwin_free_buckets(&a);
    }
    assert_true(checks > 400000);
    assert_true(cuts > 500);
}

/* ---- Encoding -------------------------------------------------------- */

/* Runs the same updates on a and b; every result must match. */
static void feed_both(dr_adwin_t *a, dr_adwin_t *b, const double *xs,
                      size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        assert_int_equal(dr_adwin_update(a, xs[i]), dr_adwin_update(b, xs[i]));
}

/* Claim: "a round trip is bit-exact" - same encoding, same doubles bit for
 * bit, and both copies then report identical detections and states. */
static void roundtrip_case(const dr_adwin_conf_t *c, size_t split) {
    static uint8_t e1[ENC_MAX], e2[ENC_MAX];
    double *xs = drift_stream(12000, 1500, 1.0, 1234 + split);
    dr_adwin_t a, b;
    size_t used = 0;
    init_ok(&a, c);
    for (size_t i = 0; i < split; i++)
        assert_true(dr_adwin_update(&a, xs[i]) >= 0);
    size_t n1 = encode(&a, e1);
    assert_int_equal(dr_adwin_deserialize(&b, c, e1, n1, &used), 0);
    assert_int_equal(used, n1);
    assert_int_equal(bits(dr_adwin_total(&a)), bits(dr_adwin_total(&b)));
    assert_int_equal(bits(dr_adwin_variance(&a)), bits(dr_adwin_variance(&b)));
    assert_int_equal(dr_adwin_width(&a), dr_adwin_width(&b));
    assert_int_equal(dr_adwin_updates(&a), dr_adwin_updates(&b));
    assert_int_equal(dr_adwin_detections(&a), dr_adwin_detections(&b));
    assert_int_equal(a.phase, b.phase);
    assert_int_equal(encode(&b, e2), n1);
    assert_memory_equal(e1, e2, n1);
    feed_both(&a, &b, xs, split, 12000);
    n1 = encode(&a, e1);
    assert_int_equal(encode(&b, e2), n1);
    assert_memory_equal(e1, e2, n1);
    dr_adwin_free_buckets(&a);
    dr_adwin_free_buckets(&b);
    free(xs);
}

static void test_roundtrip_exact(void **state) {
    (void)state;
    dr_adwin_conf_t c = conf_default();
    roundtrip_case(&c, 0);    /* empty detector */
    roundtrip_case(&c, 1);
    roundtrip_case(&c, 4321); /* after cuts, mid-clock */
    c.reset_on_cut = true;
    c.clock = 7;
    c.max_buckets = 3;
    roundtrip_case(&c, 5000);
}

/* Claim: "Bytes after the record are ignored" and "consumed is set to the
 * bytes read"; "DR_ERANGE if cap is below dr_adwin_serialized_size(a)
 * (nothing written)", with *written set to the size needed. */
static void test_serialize_bounds(void **state) {
    (void)state;
    static uint8_t buf[ENC_MAX];
    dr_adwin_t a, b;
    size_t need, w = 0, used = 0;
    init_ok(&a, NULL);
    for (int i = 0; i < 300; i++)
        assert_true(dr_adwin_update(&a, i % 3) >= 0);
    need = dr_adwin_serialized_size(&a);
    memset(buf, 0xAB, sizeof(buf));
    assert_int_equal(dr_adwin_serialize(&a, buf, need - 1, &w), DR_ERANGE);
    assert_int_equal(w, need);
    assert_int_equal(buf[0], 0xAB);
    assert_int_equal(dr_adwin_serialize(&a, NULL, need, &w), DR_EINVAL);
    assert_int_equal(dr_adwin_serialize(&a, buf, need, NULL), 0);
    assert_int_equal(buf[0], DR_ADWIN_FORMAT_VERSION);
    assert_int_equal(dr_adwin_deserialize(&b, NULL, buf, need + 100, &used), 0);
    assert_int_equal(used, need);
    assert_true(dr_adwin_width(&b) == 300);
    dr_adwin_free_buckets(&b);
    assert_int_equal(dr_adwin_deserialize(&b, NULL, NULL, 10, &used),
                     DR_EINVAL);
    assert_int_equal(dr_adwin_deserialize(NULL, NULL, buf, need, &used),
                     DR_EINVAL);
    dr_adwin_free_buckets(&a);
}

/* Builds a valid encoding of a detector that has seen `n` items. */
static size_t valid_encoding(uint8_t *buf, int n) {
    dr_adwin_t a;
    init_ok(&a, NULL);
    for (int i = 0; i < n; i++)
        assert_true(dr_adwin_update(&a, (i * 7) % 5) >= 0);
    size_t len = encode(&a, buf);
    dr_adwin_free_buckets(&a);
    return len;
}

/* Decodes buf and expects `want`; on error the detector must be empty and
 * hold no memory ("On error a is an empty detector holding no memory"). */
static void expect_decode(const uint8_t *buf, size_t len, int want) {
    dr_adwin_t b;
    int rc = dr_adwin_deserialize(&b, NULL, buf, len, NULL);
    assert_int_equal(rc, want);
    if (rc != 0) {
        assert_int_equal(dr_adwin_width(&b), 0);
        assert_int_equal(dr_adwin_heap_bytes(&b), 0);
    }
    dr_adwin_free_buckets(&b);
}

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Claim: "DR_ECORRUPT if buf is truncated" - every proper prefix of a valid
 * encoding is rejected, without a crash or a leak. */
static void test_truncated_is_corrupt(void **state) {
    (void)state;
    static uint8_t buf[ENC_MAX];
    size_t len = valid_encoding(buf, 5000);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size, for ASan */
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        expect_decode(copy, cut, DR_ECORRUPT);
        free(copy);
    }
    expect_decode(buf, len, 0);
}

/* Claim: "DR_ECORRUPT if buf ... has an unknown version or is
 * inconsistent"; "at most DR_ADWIN_MAX_ROWS rows are allocated";
 * "DR_ECONFIG if the state was written with another max_buckets".
 * Cases: 1 wrong versions, 2 reserved byte, 3 absurd row counts, 4 bad
 * bucket counts, 5 non-finite or negative doubles, 6 impossible counters
 * or sums in an empty window, 7 max_buckets mismatch. */
static void test_hostile_fields(void **state) {
    (void)state;
    static uint8_t good[ENC_MAX], buf[ENC_MAX];
    static const struct { size_t off; int width; uint64_t v; int want; } c[] = {
        {0, 1, 0, DR_ECORRUPT}, {0, 1, 2, DR_ECORRUPT},           /* 1 */
        {0, 1, 255, DR_ECORRUPT}, {3, 1, 1, DR_ECORRUPT},         /* 1, 2 */
        {2, 1, 255, DR_ECORRUPT}, {2, 1, DR_ADWIN_MAX_ROWS + 1,   /* 3 */
                                   DR_ECORRUPT},
        {2, 1, DR_ADWIN_MAX_ROWS, DR_ECORRUPT},                   /* 3 */
        {2, 1, 0, DR_ECORRUPT},                                   /* 6 */
        {44, 1, 0, DR_ECORRUPT}, {44, 1, 6, DR_ECORRUPT},         /* 4 */
        {44, 1, 255, DR_ECORRUPT},                                /* 4 */
        {20, 8, UINT64_C(0x7FF8000000000000), DR_ECORRUPT},       /* 5 NaN */
        {28, 8, UINT64_C(0x7FF0000000000000), DR_ECORRUPT},       /* 5 inf */
        {36, 8, UINT64_C(0xFFF0000000000001), DR_ECORRUPT},       /* 5 NaN */
        {36, 8, UINT64_C(0xBFF0000000000000), DR_ECORRUPT},       /* 5 -1.0 */
        {45, 8, UINT64_C(0xFFF0000000000000), DR_ECORRUPT},       /* 5 -inf */
        {53, 8, UINT64_C(0xBFF0000000000000), DR_ECORRUPT},       /* 5 -1.0 */
        {12, 8, 3, DR_ECORRUPT},                                  /* 6 */
        {8, 4, 6000, DR_ECORRUPT},                                /* 6 */
        {1, 1, 6, DR_ECONFIG}, {1, 1, 0, DR_ECONFIG},             /* 7 */
    };
    size_t len = valid_encoding(good, 5000);
    assert_true(len > 61 && good[44] >= 1);
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        memcpy(buf, good, len);
        put_le(buf + c[i].off, c[i].v, c[i].width);
        expect_decode(buf, len, c[i].want);
    }
    /* a valid record decoded with another max_buckets */
    dr_adwin_conf_t other = conf_default();
    dr_adwin_t b;
    other.max_buckets = 7;
    assert_int_equal(dr_adwin_deserialize(&b, &other, good, len, NULL),
                     DR_ECONFIG);
    assert_int_equal(dr_adwin_heap_bytes(&b), 0);
}

/* Claim: "robust to hostile input ... never allocates without bound" -
 * 20,000 seeded random mutations of a valid record (byte flips, random
 * lengths, random bytes) decode to 0, DR_ECORRUPT or DR_ECONFIG, and a
 * decoded detector stays consistent and usable. */
static void test_fuzzed_records(void **state) {
    (void)state;
    static uint8_t good[ENC_MAX], buf[ENC_MAX];
    size_t len = valid_encoding(good, 3000);
    uint64_t s = 2024;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = len;
        memcpy(buf, good, len);
        if (iter % 4 == 3) { /* pure noise after a valid version byte */
            n = 1 + rng_next(&s) % len;
            for (size_t k = 1; k < n; k++)
                buf[k] = (uint8_t)rng_next(&s);
        } else {
            for (int k = 0; k <= iter % 3; k++)
                buf[rng_next(&s) % len] ^= (uint8_t)(1u << (rng_next(&s) % 8));
            n = (iter % 5 == 0) ? rng_next(&s) % (len + 1) : len;
        }
        dr_adwin_t b;
        int rc = dr_adwin_deserialize(&b, NULL, buf, n, NULL);
        assert_true(rc == 0 || rc == DR_ECORRUPT || rc == DR_ECONFIG);
        if (rc == 0) {
            assert_true(dr_adwin_width(&b) <= dr_adwin_updates(&b));
            assert_true(dr_adwin_rows(&b) <= DR_ADWIN_MAX_ROWS);
            for (int k = 0; k < 64; k++)
                assert_true(dr_adwin_update(&b, k & 1) >= 0);
        }
        dr_adwin_free_buckets(&b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_defaults_are_moa),
        cmocka_unit_test(test_conf_check_rejects_out_of_range),
        cmocka_unit_test(test_update_rejects_non_finite),
        cmocka_unit_test(test_reference_stream),
        cmocka_unit_test(test_constant_stream_never_detects),
        cmocka_unit_test(test_normal_noise_few_false_alarms),
        cmocka_unit_test(test_window_matches_naive),
        cmocka_unit_test(test_memory_is_logarithmic),
        cmocka_unit_test(test_reset_and_free_keep_detector_usable),
        cmocka_unit_test(test_large_values_stay_accurate),
        cmocka_unit_test(test_far_drift_recenters),
        cmocka_unit_test(test_filtered_scan_matches_moa),
        cmocka_unit_test(test_roundtrip_exact),
        cmocka_unit_test(test_serialize_bounds),
        cmocka_unit_test(test_truncated_is_corrupt),
        cmocka_unit_test(test_hostile_fields),
        cmocka_unit_test(test_fuzzed_records),
    };
    return cmocka_run_group_tests_name("adwin", tests, NULL, NULL);
}
