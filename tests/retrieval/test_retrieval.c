/* test_retrieval.c - claims of the approximate retrieval index
 * (retrieval/dr_retrieval.h) on tiny catalogs: exact results when ef covers
 * the catalog, upsert replacing a vector, remove, growth past the initial
 * capacity, the bulk build and the one that can be stopped, hostile input
 * returning errors, and an index saved and loaded under other indices. */
#include "dr_test.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dr_err.h"
#include "dr_retrieval.h"

#define DIM 8
#define N_ITEMS 300

static uint64_t rng_state = 88172645463325252ULL;

static float frand(void) { /* xorshift64, uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / (double)(1ULL << 53) * 2.0 - 1.0);
}

static dr_ann_t *new_index_mode(size_t capacity, int ef, int in_place) {
    dr_ann_conf_t conf;
    dr_ann_conf_default(&conf, DIM);
    conf.replace_in_place = in_place;
    conf.capacity = capacity;
    conf.M = 8;
    conf.ef_construction = 64;
    conf.ef_search = ef;
    conf.bias_offset = -0.5f;
    dr_ann_t *a = NULL;
    char err[128];
    assert_int_equal(dr_ann_new(&a, &conf, err, sizeof(err)), 0);
    assert_non_null(a);
    return a;
}

static dr_ann_t *new_index(size_t capacity, int ef) { return new_index_mode(capacity, ef, 0); }

static float dot_bias(const float *u, const float *q, float b) {
    float s = b;
    for (int k = 0; k < DIM; k++) s += u[k] * q[k];
    return s;
}

typedef struct scored {
    float s;
    int64_t i;
} scored_t;

static int by_score_desc(const void *a, const void *b) {
    const scored_t *x = a, *y = b;
    return x->s > y->s ? -1 : x->s < y->s;
}

/* The exact top-k of u over items [0, n) (all present). */
static void exact_topk(const float *Q, const float *B, size_t n, const float *u, size_t k,
                       int64_t *out) {
    scored_t *s = malloc(n * sizeof(*s));
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) s[i] = (scored_t){dot_bias(u, Q + i * DIM, B[i]), (int64_t)i};
    qsort(s, n, sizeof(*s), by_score_desc);
    for (size_t j = 0; j < k; j++) out[j] = s[j].i;
    free(s);
}

/* With ef at the catalog size the graph search visits everything: the
 * results are the exact top-k, best first, with their scores. */
static void test_exact_on_tiny_catalog(void **state) {
    (void)state;
    static float Q[N_ITEMS * DIM], B[N_ITEMS];
    for (size_t i = 0; i < N_ITEMS * DIM; i++) Q[i] = frand();
    for (size_t i = 0; i < N_ITEMS; i++) B[i] = 0.5f * frand() - 0.5f;
    dr_ann_t *a = new_index(64, N_ITEMS); /* grows 64 -> 512 on the way */
    for (int64_t i = 0; i < N_ITEMS; i++) assert_int_equal(dr_ann_upsert(a, i, Q + i * DIM, B[i]), 0);
    assert_int_equal(dr_ann_count(a), N_ITEMS);
    assert_true(dr_ann_capacity(a) >= N_ITEMS);
    assert_true(dr_ann_bytes(a) > N_ITEMS * DIM * sizeof(float));
    for (int q = 0; q < 20; q++) {
        float u[DIM];
        for (int k = 0; k < DIM; k++) u[k] = frand();
        int64_t want[10], got[10];
        float score[10];
        size_t n = 0;
        exact_topk(Q, B, N_ITEMS, u, 10, want);
        assert_int_equal(dr_ann_search(a, u, 10, got, score, &n), 0);
        assert_int_equal(n, 10);
        for (int j = 0; j < 10; j++) {
            assert_int_equal(got[j], want[j]);
            assert_float_equal(score[j], dot_bias(u, Q + got[j] * DIM, B[got[j]]), 1e-4);
        }
    }
    dr_ann_free(a);
}

/* A replaced vector is the one searched: the item that was best for u
 * drops out once its vector points away, and an item moved onto u comes
 * first; in both replacement modes. */
static void upsert_replaces(int in_place) {
    dr_ann_t *a = new_index_mode(16, 64, in_place);
    float v[DIM];
    for (int64_t i = 0; i < 50; i++) {
        for (int k = 0; k < DIM; k++) v[k] = frand();
        assert_int_equal(dr_ann_upsert(a, i, v, 0.0f), 0);
    }
    float u[DIM] = {1, 0, 0, 0, 0, 0, 0, 0};
    float hot[DIM] = {5, 0, 0, 0, 0, 0, 0, 0}, cold[DIM] = {-5, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(dr_ann_upsert(a, 7, hot, 0.0f), 0);
    int64_t got[5];
    size_t n;
    assert_int_equal(dr_ann_search(a, u, 5, got, NULL, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(got[0], 7);
    float held[DIM], held_b = 0;
    assert_int_equal(dr_ann_get(a, 7, held, &held_b), 0);
    assert_memory_equal(held, hot, sizeof(hot));
    assert_float_equal(held_b, 0.0f, 1e-6);
    assert_int_equal(dr_ann_upsert(a, 7, cold, 0.0f), 0);
    assert_int_equal(dr_ann_upsert(a, 31, hot, 1.0f), 0);
    assert_int_equal(dr_ann_get(a, 7, held, NULL), 0); /* the replacement's */
    assert_memory_equal(held, cold, sizeof(cold));
    assert_int_equal(dr_ann_get(a, 31, NULL, &held_b), 0);
    assert_float_equal(held_b, 1.0f, 1e-6);
    assert_int_equal(dr_ann_count(a), 50); /* replaced, not added */
    float score[5];
    assert_int_equal(dr_ann_search(a, u, 5, got, score, &n), 0);
    assert_int_equal(got[0], 31);
    assert_float_equal(score[0], 6.0f, 1e-5);
    for (size_t j = 0; j < n; j++) assert_true(got[j] != 7);
    size_t cap = dr_ann_capacity(a);
    for (int r = 0; r < 100; r++) assert_int_equal(dr_ann_upsert(a, 31, hot, 1.0f), 0);
    assert_int_equal(dr_ann_count(a), 50);
    if (in_place) assert_int_equal(dr_ann_capacity(a), cap); /* no new slots */
    else assert_true(dr_ann_capacity(a) >= 150);             /* a slot per replacement */
    assert_int_equal(dr_ann_search(a, u, 5, got, score, &n), 0);
    assert_int_equal(got[0], 31);
    dr_ann_free(a);
}

static void test_upsert_replaces(void **state) {
    (void)state;
    upsert_replaces(0);
    upsert_replaces(1);
}

/* A removed item is never returned, removing it again or an unknown item
 * is DR_ENOTFOUND, and an upsert brings it back; in both modes. */
static void removes(int in_place) {
    dr_ann_t *a = new_index_mode(8, 64, in_place);
    float v[DIM];
    for (int64_t i = 0; i < 40; i++) {
        for (int k = 0; k < DIM; k++) v[k] = 0.1f * frand();
        assert_int_equal(dr_ann_upsert(a, i, v, 0.0f), 0);
    }
    float u[DIM] = {0, 1, 0, 0, 0, 0, 0, 0}, top[DIM] = {0, 9, 0, 0, 0, 0, 0, 0};
    assert_int_equal(dr_ann_upsert(a, 12, top, 0.0f), 0);
    assert_int_equal(dr_ann_remove(a, 12), 0);
    assert_int_equal(dr_ann_count(a), 39);
    assert_int_equal(dr_ann_remove(a, 12), DR_ENOTFOUND);
    assert_int_equal(dr_ann_remove(a, 1000), DR_ENOTFOUND);
    assert_int_equal(dr_ann_get(a, 12, NULL, NULL), DR_ENOTFOUND);
    int64_t got[40];
    size_t n;
    assert_int_equal(dr_ann_search(a, u, 40, got, NULL, &n), 0);
    assert_int_equal(n, 39);
    for (size_t j = 0; j < n; j++) assert_true(got[j] != 12);
    assert_int_equal(dr_ann_upsert(a, 12, top, 0.0f), 0);
    assert_int_equal(dr_ann_count(a), 40);
    assert_int_equal(dr_ann_search(a, u, 1, got, NULL, &n), 0);
    assert_int_equal(got[0], 12);
    /* every item removed: nothing comes back */
    for (int64_t i = 0; i < 40; i++) assert_int_equal(dr_ann_remove(a, i), 0);
    assert_int_equal(dr_ann_count(a), 0);
    assert_int_equal(dr_ann_search(a, u, 5, got, NULL, &n), 0);
    assert_int_equal(n, 0);
    dr_ann_free(a);
}

static void test_remove(void **state) {
    (void)state;
    removes(0);
    removes(1);
}

/* dr_ann_build over rows 0..n-1 (two threads) gives what upserts give:
 * every item indexed once, exact top-k at a large ef; building again
 * updates rather than adds, and brings removed rows back. */
static void test_build(void **state) {
    (void)state;
    static float Q[N_ITEMS * DIM], B[N_ITEMS];
    for (size_t i = 0; i < N_ITEMS * DIM; i++) Q[i] = frand();
    for (size_t i = 0; i < N_ITEMS; i++) B[i] = 0.3f * frand();
    dr_ann_t *a = new_index(4, N_ITEMS);
    assert_int_equal(dr_ann_build(a, Q, B, N_ITEMS, 2), 0);
    assert_int_equal(dr_ann_count(a), N_ITEMS);
    assert_int_equal(dr_ann_dead(a), 0);
    float u[DIM];
    for (int k = 0; k < DIM; k++) u[k] = frand();
    int64_t want[20], got[20];
    size_t n;
    exact_topk(Q, B, N_ITEMS, u, 20, want);
    assert_int_equal(dr_ann_search(a, u, 20, got, NULL, &n), 0);
    assert_int_equal(n, 20);
    for (int j = 0; j < 20; j++) assert_int_equal(got[j], want[j]);
    /* again, over the index, with item 3 removed and one replaced by upsert */
    assert_int_equal(dr_ann_remove(a, 3), 0);
    assert_int_equal(dr_ann_upsert(a, 5, Q, 0.0f), 0);
    assert_int_equal(dr_ann_dead(a), 2);
    size_t cap = dr_ann_capacity(a);
    assert_int_equal(dr_ann_build(a, Q, B, N_ITEMS, 2), 0);
    assert_int_equal(dr_ann_count(a), N_ITEMS);
    assert_int_equal(dr_ann_capacity(a), cap); /* updated in place: 3 and 5 took new slots before */
    assert_int_equal(dr_ann_remove(a, 3), 0);  /* live again */
    assert_int_equal(dr_ann_build(a, Q, B, 0, 1), 0); /* nothing to do */
    dr_ann_free(a);
}

/* should_stop for the stoppable build: nonzero from the limit-th call on
 * (calls come from every building thread: an atomic count). */
typedef struct stop_after {
    atomic_int calls;
    int limit;
} stop_after_t;

static int stop_after(void *ctx) {
    stop_after_t *s = ctx;
    return atomic_fetch_add(&s->calls, 1) + 1 >= s->limit;
}

/* dr_ann_build_stoppable: left alone, the graph of dr_ann_build (one
 * thread: the very same searches); rows not finite left out, not a failed
 * build; asked to stop, it stops at once with DR_ESTOPPED and an index
 * that holds what was put in, still usable and freed whole. */
static void test_build_stoppable(void **state) {
    (void)state;
    static float Q[N_ITEMS * DIM], B[N_ITEMS];
    for (size_t i = 0; i < N_ITEMS * DIM; i++) Q[i] = frand();
    for (size_t i = 0; i < N_ITEMS; i++) B[i] = 0.3f * frand();
    dr_ann_t *plain = new_index(N_ITEMS, 40), *stoppable = new_index(N_ITEMS, 40);
    stop_after_t never = {0, 1 << 30};
    size_t built = 0;
    assert_int_equal(dr_ann_build(plain, Q, B, N_ITEMS, 1), 0);
    assert_int_equal(dr_ann_build_stoppable(stoppable, Q, B, N_ITEMS, 1, stop_after, &never, &built), 0);
    assert_int_equal(built, N_ITEMS);
    assert_int_equal(dr_ann_count(stoppable), N_ITEMS);
    assert_true(atomic_load(&never.calls) >= N_ITEMS); /* polled before every row */
    for (int q = 0; q < 20; q++) {
        float u[DIM];
        for (int k = 0; k < DIM; k++) u[k] = frand();
        int64_t a[30], b[30];
        size_t na, nb;
        assert_int_equal(dr_ann_search(plain, u, 30, a, NULL, &na), 0);
        assert_int_equal(dr_ann_search(stoppable, u, 30, b, NULL, &nb), 0);
        assert_int_equal(na, nb);
        for (size_t j = 0; j < na; j++) assert_int_equal(a[j], b[j]);
    }
    dr_ann_free(plain);
    dr_ann_free(stoppable);
    /* a row not finite: dr_ann_build refuses the whole build, the
     * stoppable one leaves that row out (no should_stop: never stops) */
    Q[3 * DIM + 1] = NAN;
    B[7] = INFINITY;
    dr_ann_t *a = new_index(8, N_ITEMS);
    assert_int_equal(dr_ann_build(a, Q, B, N_ITEMS, 2), DR_EINVAL);
    assert_int_equal(dr_ann_count(a), 0);
    assert_int_equal(dr_ann_build_stoppable(a, Q, B, N_ITEMS, 2, NULL, NULL, &built), 0);
    assert_int_equal(built, N_ITEMS - 2);
    assert_int_equal(dr_ann_count(a), N_ITEMS - 2);
    assert_int_equal(dr_ann_get(a, 3, NULL, NULL), DR_ENOTFOUND);
    assert_int_equal(dr_ann_get(a, 7, NULL, NULL), DR_ENOTFOUND);
    assert_int_equal(dr_ann_get(a, 8, NULL, NULL), 0);
    dr_ann_free(a);
    Q[3 * DIM + 1] = 0.5f;
    B[7] = 0.0f;
    /* stopped after 50 polls, with one thread and with two */
    for (int threads = 1; threads <= 2; threads++) {
        stop_after_t soon = {0, 50};
        a = new_index(N_ITEMS, N_ITEMS);
        assert_int_equal(dr_ann_build_stoppable(a, Q, B, N_ITEMS, threads, stop_after, &soon, &built),
                         DR_ESTOPPED);
        assert_true(built < 50);
        assert_int_equal(dr_ann_count(a), built);
        float u[DIM] = {1};
        int64_t got[10];
        size_t n;
        assert_int_equal(dr_ann_search(a, u, 10, got, NULL, &n), 0);
        assert_int_equal(n, built < 10 ? built : 10);
        dr_ann_free(a);
    }
    /* stopped before anything: nothing changes */
    stop_after_t now = {0, 1};
    a = new_index(8, N_ITEMS);
    assert_int_equal(dr_ann_build_stoppable(a, Q, B, N_ITEMS, 2, stop_after, &now, &built), DR_ESTOPPED);
    assert_int_equal(built, 0);
    assert_int_equal(dr_ann_count(a), 0);
    assert_int_equal(dr_ann_build_stoppable(NULL, Q, B, N_ITEMS, 1, NULL, NULL, &built), DR_EINVAL);
    assert_int_equal(dr_ann_build_stoppable(a, NULL, B, N_ITEMS, 1, NULL, NULL, NULL), DR_EINVAL);
    assert_int_equal(dr_ann_build_stoppable(a, Q, B, N_ITEMS, 0, NULL, NULL, NULL), DR_EINVAL);
    dr_ann_free(a);
}

/* Errors, not crashes: NULLs, a bad configuration (dim out of range: the
 * vectors' length is the index's, fixed at creation), idx out of range,
 * values that are not finite, k == 0; and free(NULL). */
static void test_hostile_input(void **state) {
    (void)state;
    char err[128] = "";
    dr_ann_conf_t conf;
    dr_ann_t *a = (dr_ann_t *)&conf; /* overwritten with NULL on failure */
    dr_ann_conf_default(&conf, 0);
    assert_int_equal(dr_ann_new(&a, &conf, err, sizeof(err)), DR_ECONFIG);
    assert_null(a);
    assert_true(strstr(err, "dim") != NULL);
    dr_ann_conf_default(&conf, DR_ANN_MAX_DIM + 1);
    assert_int_equal(dr_ann_new(&a, &conf, err, sizeof(err)), DR_ECONFIG);
    dr_ann_conf_default(&conf, -3);
    assert_int_equal(dr_ann_new(&a, &conf, err, sizeof(err)), DR_ECONFIG);
    dr_ann_conf_default(&conf, DIM);
    conf.M = 1;
    assert_int_equal(dr_ann_new(&a, &conf, err, sizeof(err)), DR_ECONFIG);
    dr_ann_conf_default(&conf, DIM);
    conf.capacity = 0;
    assert_int_equal(dr_ann_new(&a, &conf, NULL, 0), DR_ECONFIG);
    dr_ann_conf_default(&conf, DIM);
    conf.bias_offset = NAN;
    assert_int_equal(dr_ann_new(&a, &conf, err, sizeof(err)), DR_ECONFIG);
    dr_ann_conf_default(&conf, DIM);
    assert_int_equal(dr_ann_new(NULL, &conf, err, sizeof(err)), DR_EINVAL);
    assert_int_equal(dr_ann_new(&a, NULL, err, sizeof(err)), DR_EINVAL);
    dr_ann_conf_default(NULL, DIM); /* no-op */

    a = new_index(4, 16);
    float v[DIM] = {1, 2, 3, 4, 5, 6, 7, 8}, bad[DIM] = {1, 2, 3, NAN, 5, 6, 7, 8};
    assert_int_equal(dr_ann_upsert(a, -1, v, 0.0f), DR_EINVAL);
    assert_int_equal(dr_ann_upsert(a, 0, NULL, 0.0f), DR_EINVAL);
    assert_int_equal(dr_ann_upsert(NULL, 0, v, 0.0f), DR_EINVAL);
    assert_int_equal(dr_ann_upsert(a, 0, bad, 0.0f), DR_EINVAL);
    assert_int_equal(dr_ann_upsert(a, 0, v, INFINITY), DR_EINVAL);
    assert_int_equal(dr_ann_upsert(a, 0, v, 3e38f), 0); /* finite */
    assert_int_equal(dr_ann_upsert(a, 0, v, -3e38f), 0); /* b - offset still finite */
    assert_int_equal(dr_ann_count(a), 1);
    assert_int_equal(dr_ann_upsert(a, (int64_t)1 << 40, v, 0.0f), DR_EINVAL); /* idx too large */
    assert_int_equal(dr_ann_upsert(a, ((int64_t)1 << 40) - 1, v, 0.0f), 0);
    assert_int_equal(dr_ann_remove(a, ((int64_t)1 << 40) - 1), 0);
    assert_int_equal(dr_ann_remove(a, INT64_MAX), DR_ENOTFOUND);
    assert_int_equal(dr_ann_remove(a, -5), DR_EINVAL);
    assert_int_equal(dr_ann_remove(NULL, 0), DR_EINVAL);
    int64_t got[4];
    size_t n = 99;
    assert_int_equal(dr_ann_search(a, bad, 4, got, NULL, &n), DR_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(dr_ann_search(a, v, 0, got, NULL, &n), DR_EINVAL);
    assert_int_equal(dr_ann_search(a, NULL, 4, got, NULL, &n), DR_EINVAL);
    assert_int_equal(dr_ann_search(a, v, 4, NULL, NULL, &n), DR_EINVAL);
    assert_int_equal(dr_ann_search(a, v, 4, got, NULL, NULL), DR_EINVAL);
    assert_int_equal(dr_ann_search(NULL, v, 4, got, NULL, &n), DR_EINVAL);
    assert_int_equal(dr_ann_search(a, v, 4, got, NULL, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(dr_ann_build(a, NULL, NULL, 3, 1), DR_EINVAL);
    assert_int_equal(dr_ann_build(a, v, v, 1, 0), DR_EINVAL);
    assert_int_equal(dr_ann_build(NULL, v, v, 1, 1), DR_EINVAL);
    assert_int_equal(dr_ann_set_ef(a, 0), DR_EINVAL);
    assert_int_equal(dr_ann_set_ef(NULL, 10), DR_EINVAL);
    assert_int_equal(dr_ann_set_ef(a, 10), 0);
    float got_v[DIM], got_b;
    assert_int_equal(dr_ann_get(a, -1, got_v, &got_b), DR_EINVAL);
    assert_int_equal(dr_ann_get(NULL, 0, got_v, &got_b), DR_EINVAL);
    assert_int_equal(dr_ann_get(a, 77, got_v, &got_b), DR_ENOTFOUND);
    assert_int_equal(dr_ann_get(a, INT64_MAX, got_v, &got_b), DR_ENOTFOUND);
    assert_int_equal(dr_ann_get(a, 0, NULL, NULL), 0);
    dr_ann_free(a);
    dr_ann_free(NULL);
    assert_int_equal(dr_ann_count(NULL), 0);
    assert_int_equal(dr_ann_capacity(NULL), 0);
    assert_int_equal(dr_ann_bytes(NULL), 0);
    assert_int_equal(dr_ann_dead(NULL), 0);
}

/* Far more items than the initial capacity of 1, added one by one: every
 * one is findable (its own vector as the query, ef covering the catalog). */
static void test_capacity_growth(void **state) {
    (void)state;
    dr_ann_t *a = new_index(1, 1100);
    static float Q[1000 * DIM];
    for (size_t i = 0; i < 1000 * DIM; i++) Q[i] = frand();
    for (int64_t i = 0; i < 1000; i++) assert_int_equal(dr_ann_upsert(a, i * 3 + 1, Q + i * DIM, 0.0f), 0);
    assert_int_equal(dr_ann_count(a), 1000);
    assert_true(dr_ann_capacity(a) >= 1000 && dr_ann_capacity(a) <= 1024);
    for (int64_t i = 0; i < 1000; i += 37) {
        int64_t want[3], got[3];
        size_t n;
        int64_t *ids = want;
        scored_t s[1000];
        for (int64_t j = 0; j < 1000; j++) s[j] = (scored_t){dot_bias(Q + i * DIM, Q + j * DIM, 0.0f), j * 3 + 1};
        qsort(s, 1000, sizeof(*s), by_score_desc);
        for (int j = 0; j < 3; j++) ids[j] = s[j].i;
        assert_int_equal(dr_ann_search(a, Q + i * DIM, 3, got, NULL, &n), 0);
        assert_int_equal(n, 3);
        for (int j = 0; j < 3; j++) assert_int_equal(got[j], want[j]);
    }
    dr_ann_free(a);
}

/* The graph file a save named: the only index-*.hnsw in dir. */
static void graph_file(const char *dir, char *path, size_t n) {
    char cmd[256], more[512];
    snprintf(cmd, sizeof(cmd), "ls %s/index-*.hnsw", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(path, (int)n, p));
    path[strcspn(path, "\n")] = '\0';
    assert_null(fgets(more, sizeof(more), p)); /* the previous save's was removed */
    pclose(p);
}

static void write_junk(const char *path) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int k = 0; k < 100; k++) fputc(0x5a, f);
    fclose(f);
}

static void rewrite_byte(const char *path, long at, int byte) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, at, SEEK_SET), 0);
    assert_int_equal(fputc(byte, f), byte);
    fclose(f);
}

static void copy_file(const char *from, const char *to) {
    char cmd[1300];
    snprintf(cmd, sizeof(cmd), "cp %s %s", from, to);
    assert_int_equal(system(cmd), 0);
}

/* Saved and loaded under other indices (the caller's rows after a
 * restart): the same searches give the same items, by id; items whose id
 * is gone are never proposed and the others keep their vectors; a second
 * save replaces the first; other settings and damaged files are refused. */
static void test_save_and_load(void **state) {
    (void)state;
    char dir[] = "/tmp/dr_ann_XXXXXX";
    assert_non_null(mkdtemp(dir));
    enum { N = 400 };
    static float Q[N * DIM], B[N];
    int64_t ids[N], ids_now[N];
    dr_ann_t *a = new_index(64, 400);
    for (size_t i = 0; i < N; i++) {
        for (int k = 0; k < DIM; k++) Q[i * DIM + k] = frand();
        B[i] = frand() * 0.3f;
        ids[i] = 5000 + (int64_t)i * 7;
    }
    assert_int_equal(dr_ann_build(a, Q, B, N, 1), 0);
    assert_int_equal(dr_ann_upsert(a, 3, Q, 0.5f), 0); /* a replaced copy: a dead slot */
    char err[256];
    assert_int_equal(dr_ann_save(a, dir, ids, N - 1, err, sizeof(err)), DR_EINVAL); /* idx 399 unnamed */
    assert_int_equal(dr_ann_save(a, dir, ids, N, err, sizeof(err)), 0);
    assert_int_equal(dr_ann_save(a, dir, ids, N, err, sizeof(err)), 0); /* replaces it */
    char graph[512];
    graph_file(dir, graph, sizeof(graph));
    /* a save that crashed before its rename leaves a new graph and a meta
     * file half written beside the last save: the last save loads */
    char stray_graph[300], stray_meta[300];
    snprintf(stray_graph, sizeof(stray_graph), "%s/index-00000000deadbeef.hnsw", dir);
    snprintf(stray_meta, sizeof(stray_meta), "%s/index.meta.tmp", dir);
    write_junk(stray_graph);
    write_junk(stray_meta);
    /* now row j holds the item saved at N-1-j */
    for (size_t j = 0; j < N; j++) ids_now[j] = ids[N - 1 - j];
    dr_ann_conf_t conf;
    dr_ann_conf_default(&conf, DIM);
    conf.M = 8;
    conf.ef_search = 400;
    dr_ann_t *b = NULL;
    size_t kept = 0;
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), 0);
    assert_int_equal(kept, N);
    assert_int_equal(dr_ann_count(b), N);
    /* and the next save removes the stray graph (the size of the index)
     * and writes its meta file over the stray one, then renames it */
    assert_int_equal(dr_ann_save(a, dir, ids, N, err, sizeof(err)), 0);
    assert_int_equal(access(stray_graph, F_OK), -1);
    assert_int_equal(access(stray_meta, F_OK), -1);
    graph_file(dir, graph, sizeof(graph));
    for (int q = 0; q < 20; q++) {
        float u[DIM];
        for (int k = 0; k < DIM; k++) u[k] = frand();
        int64_t ra[10], rb[10];
        float sa[10], sb[10];
        size_t na, nb;
        assert_int_equal(dr_ann_search(a, u, 10, ra, sa, &na), 0);
        assert_int_equal(dr_ann_search(b, u, 10, rb, sb, &nb), 0);
        assert_int_equal(na, nb);
        for (size_t j = 0; j < na; j++) {
            assert_int_equal(ids[ra[j]], ids_now[rb[j]]);
            assert_float_equal(sa[j], sb[j], 1e-5);
        }
    }
    dr_ann_free(b);
    /* a quarter of the saved items gone, some new ones in their rows */
    for (size_t j = 0; j < N; j += 4) ids_now[j] = j % 8 ? -1 : 900000 + (int64_t)j;
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), 0);
    assert_int_equal(kept, N - N / 4);
    for (size_t j = 0; j < N; j++) {
        float v[DIM], bias;
        int rc = dr_ann_get(b, (int64_t)j, v, &bias);
        if (j % 4 == 0) {
            assert_int_equal(rc, DR_ENOTFOUND); /* the caller's to insert */
            continue;
        }
        assert_int_equal(rc, 0);
        size_t i = N - 1 - j; /* where it was saved */
        const float *want = i == 3 ? Q : Q + i * DIM;
        assert_memory_equal(v, want, sizeof(v));
    }
    for (int q = 0; q < 20; q++) {
        float u[DIM];
        for (int k = 0; k < DIM; k++) u[k] = frand();
        int64_t r[50];
        size_t n;
        assert_int_equal(dr_ann_search(b, u, 50, r, NULL, &n), 0);
        assert_true(n > 0);
        for (size_t j = 0; j < n; j++) assert_true(r[j] % 4 != 0);
    }
    /* and it goes on as an index: the new rows in, one replaced */
    for (size_t j = 0; j < N; j += 4) assert_int_equal(dr_ann_upsert(b, (int64_t)j, Q + j * DIM, B[j]), 0);
    assert_int_equal(dr_ann_upsert(b, 1, Q, 0.1f), 0);
    assert_int_equal(dr_ann_count(b), N);
    dr_ann_free(b);
    /* other settings: a build is due */
    dr_ann_conf_t other = conf;
    other.M = 16;
    assert_int_equal(dr_ann_load(&b, dir, &other, ids_now, N, &kept, err, sizeof(err)), DR_ECONFIG);
    dr_ann_conf_default(&other, DIM + 1);
    other.M = 8;
    assert_int_equal(dr_ann_load(&b, dir, &other, ids_now, N, &kept, err, sizeof(err)), DR_ECONFIG);
    /* damaged files: a link out of range (the graph's first link, past its
     * 96-byte header and its list's count), a graph cut short, a meta file
     * cut short; none loads, none crashes */
    char saved[600];
    snprintf(saved, sizeof(saved), "%s.keep", graph);
    copy_file(graph, saved);
    for (int k = 0; k < 4; k++) rewrite_byte(graph, 96 + 4 + k, 0xff);
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), DR_ECORRUPT);
    assert_null(b);
    /* a header that announces more elements than the file holds (hnswlib's
     * loader would allocate and seek by it): byte 16 is the element count */
    copy_file(saved, graph);
    rewrite_byte(graph, 16 + 5, 0x40);
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), DR_ECORRUPT);
    copy_file(saved, graph); /* a capacity of 2^46 elements (byte 8): refused, not allocated */
    rewrite_byte(graph, 8 + 5, 0x40);
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), DR_ECORRUPT);
    copy_file(saved, graph);
    assert_int_equal(truncate(graph, 1000), 0);
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), DR_ECORRUPT);
    char meta[300];
    snprintf(meta, sizeof(meta), "%s/index.meta", dir);
    copy_file(saved, graph);
    assert_int_equal(truncate(meta, 40), 0);
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), DR_ECORRUPT);
    /* nothing saved */
    assert_int_equal(unlink(meta), 0);
    assert_int_equal(dr_ann_load(&b, dir, &conf, ids_now, N, &kept, err, sizeof(err)), DR_ENOTFOUND);
    dr_ann_free(a);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_on_tiny_catalog),
        cmocka_unit_test(test_upsert_replaces),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_build_stoppable),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_capacity_growth),
        cmocka_unit_test(test_save_and_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
