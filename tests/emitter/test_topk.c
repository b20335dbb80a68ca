/* test_topk.c - claims of dr_emit_topk (dr_emit.h), checked against a
 * brute-force ranking on seeded random batches, small catalogs and ones
 * spanning several scoring chunks. */
#include "dr_test.h"

#include <math.h>

#include "dr_bytes.h"
#include "dr_emit.h"

typedef struct naive {
    float score;
    int64_t id;
} naive_t;

static int naive_cmp(const void *a, const void *b) {
    const naive_t *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* A sparse per-user term for add_row: item u % n_items gets w[u] more. */
typedef struct row_term {
    const float *w;
    size_t n_items;
} row_term_t;

static void add_row_term(void *ctx, size_t u, float *row, size_t first, size_t n) {
    const row_term_t *t = ctx;
    size_t i = u % t->n_items;
    if (i >= first && i - first < n) row[i - first] += t->w[u];
}

/* "lists are sorted by score, descending, ties broken by ascending item id;
 * excluded and blocked items never appear; a list is shorter than k only
 * when fewer eligible items exist" - against brute force, 200 seeded cases,
 * with the terms (S = U·Qᵀ + b + w·pᵀ, and a sparse one through add_row) in
 * every other round. */
static void test_matches_brute_force(void **state) {
    (void)state;
    uint64_t rng = 99;
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + dr_rand64(&rng) % 300, B = 1 + dr_rand64(&rng) % 9;
        int dim = 1 + (int)(dr_rand64(&rng) % 16), k = 1 + (int)(dr_rand64(&rng) % 40);
        float *q = malloc(n * (size_t)dim * 4), *bias = malloc(n * 4), *U = malloc(B * (size_t)dim * 4);
        float *pop = malloc(n * 4), w[16];
        bool with_pop = round % 2 == 1;
        int64_t *ids = malloc(n * 8), *ex = malloc(B * 5 * 8);
        uint8_t *blocked = calloc(n, 1);
        bool coarse = round % 3 == 0; /* many exact ties */
        for (size_t i = 0; i < n * (size_t)dim; i++) q[i] = coarse ? (float)(dr_rand64(&rng) % 3) : (float)dr_rand01(&rng) - 0.5f;
        for (size_t i = 0; i < n; i++) {
            bias[i] = coarse ? 0.0f : (float)dr_rand01(&rng) * 0.1f;
            ids[i] = (int64_t)(n - i) * 3; /* ids not in index order */
            blocked[i] = dr_rand64(&rng) % 10 == 0;
            pop[i] = coarse ? (float)(dr_rand64(&rng) % 2) : (float)dr_rand01(&rng) * 3.0f;
        }
        for (size_t u = 0; u < B; u++) w[u] = u % 3 == 0 ? 0.0f : (float)dr_rand01(&rng);
        for (size_t i = 0; i < B * (size_t)dim; i++) U[i] = coarse ? 1.0f : (float)dr_rand01(&rng) - 0.5f;
        dr_exclusions_t excl[16];
        for (size_t u = 0; u < B; u++) {
            excl[u].idx = ex + u * 5;
            excl[u].user = NULL;
            excl[u].n = dr_rand64(&rng) % 6;
            for (size_t j = 0; j < excl[u].n; j++) ex[u * 5 + j] = (int64_t)(dr_rand64(&rng) % n);
        }
        dr_items_view_t v = {n, dim, q, bias, ids, blocked, pop, NULL, NULL}; /* no authors: no user filters */
        row_term_t term = {w, n};
        dr_emit_terms_t terms = {w, add_row_term, &term, NULL, NULL};
        float *scores = malloc(B * dr_emit_scratch_items(n) * 4);
        dr_scored_item_t *out = malloc(B * (size_t)k * sizeof(*out));
        size_t out_n[16];
        dr_emit_topk(U, B, &v, k, excl, with_pop ? &terms : NULL, scores, out, out_n);
        naive_t *all = malloc(n * sizeof(*all));
        for (size_t u = 0; u < B; u++) {
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                bool skip = blocked[i];
                for (size_t j = 0; j < excl[u].n; j++) skip |= (size_t)excl[u].idx[j] == i;
                if (skip) continue;
                float s = bias[i];
                for (int d = 0; d < dim; d++) s += U[u * (size_t)dim + (size_t)d] * q[i * (size_t)dim + (size_t)d];
                if (with_pop) s += w[u] * pop[i] + (i == u % n ? w[u] : 0.0f);
                all[m].score = s;
                all[m++].id = ids[i];
            }
            qsort(all, m, sizeof(*all), naive_cmp);
            size_t want = m < (size_t)k ? m : (size_t)k;
            assert_int_equal(out_n[u], want);
            for (size_t r = 0; r < want; r++) {
                assert_int_equal(out[u * (size_t)k + r].item_id, all[r].id);
                assert_true(fabsf(out[u * (size_t)k + r].score - all[r].score) < 1e-4f);
            }
        }
        free(all); free(q); free(bias); free(U); free(ids); free(ex); free(blocked); free(scores); free(out);
        free(pop);
    }
}

/* The multi-chunk case: a per-user term boosting items in every chunk (so
 * the best items sit in several chunks, some of them excluded or blocked),
 * applied through add_row chunk by chunk. */
#define N_BOOSTED 8
typedef struct chunk_term {
    size_t n_items;
    size_t boosted[N_BOOSTED]; /* item indices, the same for every user */
    float boost[16][N_BOOSTED];
    size_t seen[16];           /* items each user's row hook was shown ... */
    size_t next_first[16];     /* ... in order, without gaps or overlaps */
} chunk_term_t;

static void add_chunk_term(void *ctx, size_t u, float *row, size_t first, size_t n) {
    chunk_term_t *t = ctx;
    assert_int_equal(first, t->next_first[u]);
    assert_true(n >= 1 && n <= DR_EMIT_CHUNK_ITEMS);
    t->next_first[u] = first + n;
    t->seen[u] += n;
    for (int j = 0; j < N_BOOSTED; j++)
        if (t->boosted[j] >= first && t->boosted[j] - first < n) row[t->boosted[j] - first] += t->boost[u][j];
}

/* The guarantees for a catalog of three and a bit chunks, scored with a
 * scratch of B × dr_emit_scratch_items(n) floats (one chunk, whatever n):
 * the same lists as the brute force, the row hook shown every item once
 * per user, chunk by chunk, exclusions and blocked items kept out in every
 * chunk, ties across chunks by ascending id, and lists shorter than k only
 * when fewer items are eligible. */
static void test_chunks_match_brute_force(void **state) {
    (void)state;
    const size_t n = 3 * DR_EMIT_CHUNK_ITEMS + 1234, B = 5;
    const int dim = 8;
    assert_int_equal(dr_emit_scratch_items(n), DR_EMIT_CHUNK_ITEMS);
    assert_int_equal(dr_emit_scratch_items(100), 100);
    float *q = malloc(n * (size_t)dim * 4), *bias = malloc(n * 4), *pop = malloc(n * 4);
    float *scores = malloc(B * dr_emit_scratch_items(n) * 4), U[5 * 8], w[5];
    int64_t *ids = malloc(n * 8);
    uint8_t *blocked = malloc(n);
    naive_t *all = malloc(n * sizeof(*all));
    chunk_term_t *term = malloc(sizeof(*term));
    assert_true(q && bias && pop && scores && ids && blocked && all && term);
    uint64_t rng = 7;
    for (int round = 0; round < 3; round++) {
        bool coarse = round == 0;  /* integer scores: exact ties across chunks */
        bool sparse = round == 2;  /* nearly all blocked: lists shorter than k */
        int k = sparse ? 40 : 60;
        for (size_t i = 0; i < n * (size_t)dim; i++)
            q[i] = coarse ? (float)(dr_rand64(&rng) % 3) : (float)dr_rand01(&rng) - 0.5f;
        for (size_t i = 0; i < n; i++) {
            bias[i] = coarse ? 0.0f : (float)dr_rand01(&rng) * 0.1f;
            ids[i] = (int64_t)((i * 7919) % n); /* a permutation: ids not in index order */
            pop[i] = coarse ? (float)(dr_rand64(&rng) % 2) : (float)dr_rand01(&rng) * 3.0f;
            blocked[i] = sparse ? i % (n / 20) != 3 : dr_rand64(&rng) % 10 == 0; /* ~20 left */
        }
        for (size_t u = 0; u < B; u++) w[u] = u % 2 == 0 ? 0.0f : (coarse ? 1.0f : (float)dr_rand01(&rng));
        for (size_t i = 0; i < B * (size_t)dim; i++) U[i] = coarse ? 1.0f : (float)dr_rand01(&rng) - 0.5f;
        /* boosted: both sides of each chunk boundary, the middle, the last item */
        const size_t C = DR_EMIT_CHUNK_ITEMS;
        size_t boosted[N_BOOSTED] = {0, C - 1, C, 2 * C + 17, 3 * C - 1, 3 * C, 3 * C + 600, n - 1};
        memset(term, 0, sizeof(*term));
        term->n_items = n;
        memcpy(term->boosted, boosted, sizeof(boosted));
        for (size_t u = 0; u < B; u++)
            for (int j = 0; j < N_BOOSTED; j++)
                term->boost[u][j] = coarse ? (float)(20 + (j + (int)u) % 3) : 20.0f + (float)dr_rand01(&rng);
        blocked[2 * C + 17] = 1; /* boosted but blocked */
        /* per-user exclusions: boosted items in several chunks, others, and
         * indices outside the catalog (ignored) */
        int64_t ex[5][6] = {{(int64_t)C, (int64_t)(n - 1), 5, -1, (int64_t)n, 3},
                            {0, (int64_t)(3 * C), 40000, 9, 10, 11},
                            {(int64_t)(C - 1), 1, 2, 3, 4, 5},
                            {(int64_t)(3 * C + 600), 0, 0, 0, 0, 0},
                            {0, 0, 0, 0, 0, 0}};
        dr_exclusions_t excl[5];
        for (size_t u = 0; u < B; u++) {
            excl[u].idx = ex[u];
            excl[u].user = NULL;
            excl[u].n = u == 4 ? 0 : 6;
        }
        dr_items_view_t v = {n, dim, q, bias, ids, blocked, pop, NULL, NULL}; /* no authors: no user filters */
        dr_emit_terms_t terms = {w, add_chunk_term, term, NULL, NULL};
        dr_scored_item_t out[5 * 60];
        size_t out_n[5];
        dr_emit_topk(U, B, &v, k, excl, &terms, scores, out, out_n);
        for (size_t u = 0; u < B; u++) {
            assert_int_equal(term->seen[u], n);
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                bool skip = blocked[i];
                for (size_t j = 0; j < excl[u].n; j++) skip |= excl[u].idx[j] == (int64_t)i;
                if (skip) continue;
                float s = bias[i];
                for (int d = 0; d < dim; d++) s += U[u * (size_t)dim + (size_t)d] * q[i * (size_t)dim + (size_t)d];
                for (int j = 0; j < N_BOOSTED; j++) s += boosted[j] == i ? term->boost[u][j] : 0.0f;
                s += w[u] * pop[i];
                all[m].score = s;
                all[m++].id = ids[i];
            }
            qsort(all, m, sizeof(*all), naive_cmp);
            size_t want = m < (size_t)k ? m : (size_t)k;
            assert_int_equal(out_n[u], want);
            if (sparse) assert_true(want < (size_t)k);
            for (size_t r = 0; r < want; r++) {
                assert_int_equal(out[u * (size_t)k + r].item_id, all[r].id);
                assert_true(fabsf(out[u * (size_t)k + r].score - all[r].score) < 1e-4f);
            }
        }
    }
    free(q); free(bias); free(pop); free(scores); free(ids); free(blocked); free(all); free(term);
}

/* An empty catalog gives empty lists. */
static void test_empty_catalog(void **state) {
    (void)state;
    dr_items_view_t v = {0, 4, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    float U[4] = {1, 2, 3, 4};
    size_t out_n[1] = {99};
    dr_scored_item_t out[5];
    dr_emit_topk(U, 1, &v, 5, NULL, NULL, NULL, out, out_n);
    assert_int_equal(out_n[0], 0);
}

/* Claim: the user filters apply: items of an author or a topic the user hid
 * and items resting for it never enter its list, which is still filled to k
 * from the rest; another user of the same batch is not affected. */
static void test_user_filters(void **state) {
    (void)state;
    enum { N = 40, K = 10, DIM = 2 };
    float q[N * DIM], bias[N], pop[N] = {0}, scores[2 * N];
    int64_t ids[N], author[N], topic[N];
    uint8_t blocked[N] = {0};
    for (int i = 0; i < N; i++) {
        q[i * DIM] = (float)(N - i); /* item i scores N - i for U = (1, 0) */
        q[i * DIM + 1] = 0.0f;
        bias[i] = 0.0f;
        ids[i] = 100 + i;
        author[i] = i % 4;
        topic[i] = i % 3 ? 7 : 8;
    }
    dr_items_view_t v = {N, DIM, q, bias, ids, blocked, pop, author, topic};
    dr_learner_conf_t lc;
    dr_learner_conf_default(&lc);
    lc.dim = DIM;
    dr_user_t *u = dr_user_new_conf(1, &lc);
    assert_non_null(u);
    u->hidden_authors.id[u->hidden_authors.len++] = 1;  /* items 1, 5, 9, ... */
    u->hidden_topics.id[u->hidden_topics.len++] = 8;    /* items 0, 3, 6, ... */
    float U[2 * DIM] = {1, 0, 1, 0};
    dr_exclusions_t excl[2] = {{NULL, 0, u}, {NULL, 0, NULL}};
    dr_scored_item_t out[2 * K];
    size_t out_n[2];
    dr_emit_topk(U, 2, &v, K, excl, NULL, scores, out, out_n);
    assert_int_equal(out_n[0], K);
    for (int r = 0; r < K; r++) {
        int i = (int)(out[r].item_id - 100);
        assert_true(author[i] != 1 && topic[i] != 8);
    }
    assert_int_equal(out[0].item_id, 102); /* the best item neither hidden */
    assert_int_equal(out[K].item_id, 100); /* the other user: everything */
    dr_user_free(u);
}

/* Claim: an exploring user's list keeps its ranking in the even slots and
 * holds in the odd slots the best eligible item of each other topic, best
 * topic first, each item once; items of no topic are never explored, an
 * excluded item never enters through a topic; the other user of the batch,
 * not exploring, gets its plain ranking. */
static void test_explore_topics(void **state) {
    (void)state;
    enum { N = 60, K = 12, DIM = 2, TOPICS = 4 };
    float q[N * DIM], bias[N], pop[N] = {0}, scores[2 * N];
    int64_t ids[N], author[N], topic[N];
    uint8_t blocked[N] = {0};
    for (int i = 0; i < N; i++) {
        q[i * DIM] = (float)(N - i); /* item i scores N - i for U = (1, 0) */
        q[i * DIM + 1] = 0.0f;
        bias[i] = 0.0f;
        ids[i] = 100 + i;
        author[i] = -1;
        /* items 0..29 are topic 0 (the user's favourites), then topics 1..3
         * in turn; items 50..59 have no topic */
        topic[i] = i < 30 ? 0 : i < 50 ? 1 + (i - 30) % (TOPICS - 1) : -1;
    }
    blocked[30] = 1; /* topic 1's best item is blocked: its next one stands in */
    dr_items_view_t v = {N, DIM, q, bias, ids, blocked, pop, author, topic};
    float U[2 * DIM] = {1, 0, 1, 0};
    dr_exclusions_t excl[2] = {{NULL, 0, NULL}, {NULL, 0, NULL}};
    uint8_t explore[2] = {1, 0};
    dr_emit_topic_best_t topics[2 * DR_EMIT_EXPLORE_TOPICS];
    dr_emit_terms_t terms = {NULL, NULL, NULL, explore, topics};
    dr_scored_item_t out[2 * K];
    size_t out_n[2];
    dr_emit_topk(U, 2, &v, K, excl, &terms, scores, out, out_n);
    assert_int_equal(out_n[0], K);
    /* even slots: items 0, 1, 2, ... in order; odd slots: the topics' best
     * items by score, 0 (item 0, already listed: the next topic takes the
     * slot), 2 (item 31), 3 (item 32), 1 (item 33: 30 is blocked); then the
     * ranking fills the rest */
    int64_t want[K] = {100, 131, 101, 132, 102, 133, 103, 104, 105, 106, 107, 108};
    for (int r = 0; r < K; r++) assert_int_equal(out[r].item_id, want[r]);
    for (int r = 0; r < K; r++)
        for (int s = r + 1; s < K; s++) assert_true(out[r].item_id != out[s].item_id);
    assert_int_equal(out_n[1], K);
    for (int r = 0; r < K; r++) assert_int_equal(out[K + r].item_id, 100 + r);
    /* a user who passed over topic 2 while exploring: the topics it has not
     * passed over come first (3: item 32, 1: item 33), then topic 2 */
    dr_user_t *u = dr_user_new(7, DIM);
    assert_non_null(u);
    u->passed_topics.id[u->passed_topics.len++] = 2;
    excl[0].user = u;
    dr_emit_topk(U, 2, &v, K, excl, &terms, scores, out, out_n);
    int64_t passed[K] = {100, 132, 101, 133, 102, 131, 103, 104, 105, 106, 107, 108};
    for (int r = 0; r < K; r++) assert_int_equal(out[r].item_id, passed[r]);
    dr_user_free(u);
}

/* Claim (dr_emit_select): a list from candidates is the candidates'
 * ranking by the given scores, with the same rules as the full scan:
 * blocked items, NaN scores and the user's filters never enter, ties by
 * ascending id; with topics it explores among the candidates. */
static void test_select_from_candidates(void **state) {
    (void)state;
    enum { N = 30, K = 5, DIM = 2 };
    float q[N * DIM] = {0}, bias[N] = {0}, pop[N] = {0};
    int64_t ids[N], author[N], topic[N];
    uint8_t blocked[N] = {0};
    for (int i = 0; i < N; i++) {
        ids[i] = 500 + i;
        author[i] = -1;
        topic[i] = i % 3;
    }
    blocked[4] = 1;
    dr_items_view_t v = {N, DIM, q, bias, ids, blocked, pop, author, topic};
    int64_t idx[] = {2, 4, 9, 11, 13, 17, 20, 25};
    float score[] = {1.0f, 9.0f, 3.0f, NAN, 0.2f, 0.5f, 7.0f, 0.1f};
    dr_scored_item_t out[K];
    size_t n = 99;
    assert_int_equal(dr_emit_select(&v, idx, score, 8, K, NULL, NULL, out, &n), 0);
    assert_int_equal(n, K);
    int64_t want[K] = {520, 509, 502, 517, 513}; /* 4 is blocked, 11 NaN */
    for (int r = 0; r < K; r++) assert_int_equal(out[r].item_id, want[r]);
    /* exploring: the topics' best candidates are 20 (topic 2), 9 (topic 0)
     * and 13 (topic 1, 0.2 against 25's 0.1); 20 is listed already, so slot
     * 1 takes 9 and slot 3 takes 13 */
    dr_emit_topic_best_t topics[DR_EMIT_EXPLORE_TOPICS];
    assert_int_equal(dr_emit_select(&v, idx, score, 8, K, NULL, topics, out, &n), 0);
    assert_int_equal(n, K);
    int64_t want_x[K] = {520, 509, 502, 513, 517};
    for (int r = 0; r < K; r++) assert_int_equal(out[r].item_id, want_x[r]);
}

/* ---- the selection against a brute-force ranking, score for score ----
 * The row hook records every score as it leaves it, so that the reference
 * recomputes each complete score with the same float operations in the
 * same order ((hooked + b_i) + w·p_i) and the two rankings can be compared
 * exactly: same ids, same scores, same order, ties by ascending id. */

enum { REF_PLAIN, REF_TIES, REF_BOOST_INELIGIBLE };

typedef struct ref_case {
    size_t n;
    uint64_t seed;
    int mode;
    float *hooked;          /* B × n: each score as the hook left it */
    const uint8_t *blocked; /* the view's */
    const int64_t *topic;   /* the view's */
    int64_t hidden_topic;   /* the filtering users' */
} ref_case_t;

/* Per user and item, from the case's seed: 2% NaN, 2% -INFINITY; REF_TIES
 * replaces most scores by one of 8 values (exact ties, within and across
 * chunks); REF_BOOST_INELIGIBLE lifts blocked items and those of the hidden
 * topic above the rest, so that the best blocks hold no eligible item. */
static void ref_hook(void *ctx, size_t u, float *row, size_t first, size_t n) {
    ref_case_t *c = ctx;
    for (size_t j = 0; j < n; j++) {
        size_t i = first + j;
        uint64_t h = dr_mix64(c->seed ^ (u * 1000003u + i));
        float s = row[j];
        if (h % 100 < 2) s = NAN;
        else if (h % 100 < 4) s = -INFINITY;
        else if (c->mode == REF_TIES && h % 100 < 70) s = (float)((h >> 8) % 8) * 0.25f;
        else if (c->mode == REF_BOOST_INELIGIBLE && (c->blocked[i] || c->topic[i] == c->hidden_topic))
            s += 50.0f;
        row[j] = s;
        c->hooked[u * c->n + i] = s;
    }
}

/* The eligible items of user u, best first; their count. */
static size_t ref_ranking(const ref_case_t *c, const dr_items_view_t *v, size_t u,
                          const dr_exclusions_t *ex, float w, naive_t *all) {
    size_t m = 0;
    for (size_t i = 0; i < v->n; i++) {
        bool skip = v->excluded[i];
        for (size_t j = 0; j < ex->n; j++) skip |= ex->idx[j] == (int64_t)i;
        if (ex->user) skip |= dr_user_hides_source(ex->user, v->author[i], v->topic[i]);
        float s = c->hooked[u * c->n + i] + v->bias[i];
        if (w != 0.0f) s += w * v->pop[i];
        if (skip || !(s > -INFINITY)) continue; /* NaN and -inf never rank */
        all[m].score = s;
        all[m++].id = v->ids[i];
    }
    qsort(all, m, sizeof(*all), naive_cmp);
    return m;
}

/* An exploring user's table as it should be: per slot, the best of the
 * eligible items whose topic hashes there. */
static void ref_topics(const naive_t *all, size_t m, const int64_t *topic_of_id, size_t id_base,
                       dr_emit_topic_best_t *want) {
    for (size_t t = 0; t < DR_EMIT_EXPLORE_TOPICS; t++) want[t].topic = -1;
    for (size_t r = 0; r < m; r++) { /* best first: the first of a slot wins */
        int64_t topic = topic_of_id[(size_t)all[r].id - id_base];
        if (topic < 0) continue;
        dr_emit_topic_best_t *e = &want[dr_mix64((uint64_t)topic) % DR_EMIT_EXPLORE_TOPICS];
        if (e->topic >= 0) continue;
        e->topic = topic;
        e->best = (dr_scored_item_t){all[r].id, all[r].score};
    }
}

static void assert_list_is(const dr_scored_item_t *got, size_t got_n, const naive_t *want,
                           size_t want_n) {
    assert_int_equal(got_n, want_n);
    for (size_t r = 0; r < want_n; r++) {
        assert_int_equal(got[r].item_id, want[r].id);
        assert_memory_equal(&got[r].score, &want[r].score, sizeof(float));
    }
}

/* One case of dr_emit_topk: B users over n items, k, in the given mode;
 * users 1, 4, 7, ... hide a topic and an author, every third user
 * explores (its table is checked, and its plain ranking from a second call
 * without exploration). */
static void ref_topk_case(uint64_t *rng, size_t n, size_t B, int k, int mode) {
    const int dim = 1 + (int)(dr_rand64(rng) % 12);
    float *q = malloc(n * (size_t)dim * 4), *bias = malloc(n * 4), *pop = malloc(n * 4);
    float *U = malloc(B * (size_t)dim * 4), *w = malloc(B * 4);
    float *scores = malloc(B * dr_emit_scratch_items(n) * 4);
    int64_t *ids = malloc(n * 8), *author = malloc(n * 8), *topic = malloc(n * 8);
    int64_t *topic_of_id = malloc(n * 8), *ex = malloc(B * 12 * 8);
    uint8_t *blocked = malloc(n), *explore = malloc(B);
    ref_case_t c = {n, dr_rand64(rng), mode, malloc(B * n * 4), blocked, topic, 2};
    dr_exclusions_t *excl = malloc(B * sizeof(*excl));
    dr_scored_item_t *out = malloc(B * (size_t)k * sizeof(*out));
    dr_emit_topic_best_t *topics = malloc(B * DR_EMIT_EXPLORE_TOPICS * sizeof(*topics));
    size_t *out_n = malloc(B * sizeof(*out_n));
    naive_t *all = malloc(n * sizeof(*all));
    assert_true(q && bias && pop && U && w && scores && ids && author && topic && topic_of_id && ex &&
                blocked && explore && c.hooked && excl && out && topics && out_n && all);
    bool sparse = dr_rand64(rng) % 4 == 0; /* most items blocked: short lists */
    for (size_t i = 0; i < n * (size_t)dim; i++) q[i] = (float)dr_rand01(rng) - 0.5f;
    for (size_t i = 0; i < n; i++) ids[i] = (int64_t)(1000 + i);
    for (size_t i = n; i > 1; i--) { /* ids in no particular order of the rows */
        size_t j = dr_rand64(rng) % i;
        int64_t t = ids[i - 1];
        ids[i - 1] = ids[j];
        ids[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        bool coarse = mode == REF_TIES;
        bias[i] = coarse ? 0.0f : (float)dr_rand01(rng) * 0.1f;
        pop[i] = coarse ? (float)(dr_rand64(rng) % 2) : (float)dr_rand01(rng);
        blocked[i] = dr_rand64(rng) % 100 < (sparse ? 97u : 5u);
        author[i] = (int64_t)(dr_rand64(rng) % 6) - 1;
        topic[i] = (int64_t)(dr_rand64(rng) % 9) - 1;
        topic_of_id[ids[i] - 1000] = topic[i];
    }
    dr_learner_conf_t lc;
    dr_learner_conf_default(&lc);
    lc.dim = dim;
    dr_user_t *filtering = dr_user_new_conf(1, &lc);
    assert_non_null(filtering);
    filtering->hidden_topics.id[filtering->hidden_topics.len++] = c.hidden_topic;
    filtering->hidden_authors.id[filtering->hidden_authors.len++] = 3;
    for (size_t u = 0; u < B; u++) {
        for (int d = 0; d < dim; d++) U[u * (size_t)dim + (size_t)d] = (float)dr_rand01(rng) - 0.5f;
        w[u] = u % 3 == 0 ? 0.0f : (float)dr_rand01(rng);
        explore[u] = u % 3 == 2;
        excl[u].idx = ex + u * 12;
        excl[u].n = dr_rand64(rng) % 13;
        excl[u].user = u % 3 == 1 ? filtering : NULL;
        for (size_t j = 0; j < excl[u].n; j++) ex[u * 12 + j] = (int64_t)(dr_rand64(rng) % (n + 2)); /* some outside */
    }
    dr_items_view_t v = {n, dim, q, bias, ids, blocked, pop, author, topic};
    dr_emit_terms_t terms = {w, ref_hook, &c, explore, topics};
    dr_emit_topk(U, B, &v, k, excl, &terms, scores, out, out_n);
    for (size_t u = 0; u < B; u++) {
        size_t m = ref_ranking(&c, &v, u, &excl[u], w[u], all);
        size_t want = m < (size_t)k ? m : (size_t)k;
        if (!explore[u]) {
            assert_list_is(out + u * (size_t)k, out_n[u], all, want);
            continue;
        }
        dr_emit_topic_best_t want_topics[DR_EMIT_EXPLORE_TOPICS];
        ref_topics(all, m, topic_of_id, 1000, want_topics);
        for (size_t t = 0; t < DR_EMIT_EXPLORE_TOPICS; t++) {
            const dr_emit_topic_best_t *got = &topics[u * DR_EMIT_EXPLORE_TOPICS + t];
            assert_int_equal(got->topic, want_topics[t].topic);
            if (got->topic < 0) continue;
            assert_int_equal(got->best.item_id, want_topics[t].best.item_id);
            assert_memory_equal(&got->best.score, &want_topics[t].best.score, sizeof(float));
        }
    }
    terms.explore = NULL; /* the exploring users' plain rankings */
    dr_emit_topk(U, B, &v, k, excl, &terms, scores, out, out_n);
    for (size_t u = 0; u < B; u++) {
        size_t m = ref_ranking(&c, &v, u, &excl[u], w[u], all);
        assert_list_is(out + u * (size_t)k, out_n[u], all, m < (size_t)k ? m : (size_t)k);
    }
    dr_user_free(filtering);
    free(q); free(bias); free(pop); free(U); free(w); free(scores); free(ids); free(author);
    free(topic); free(topic_of_id); free(ex); free(blocked); free(explore); free(c.hooked); free(excl);
    free(out); free(topics); free(out_n); free(all);
}

/* Claim (dr_emit_topk, issue 18): the selection ranks exactly as a full
 * sort of the eligible items by score, descending, then id: 400 seeded
 * catalogs of 1 to 3,000 items, k from 1 to past the eligible items, exact
 * ties, NaN and -inf scores, exclusions, blocked items, hidden topics and
 * authors, the best blocks full of ineligible items; then catalogs of a
 * few chunks. */
static void test_selection_matches_reference(void **state) {
    (void)state;
    uint64_t rng = 1818;
    for (int round = 0; round < 400; round++) {
        size_t n = 1 + dr_rand64(&rng) % (round % 4 == 0 ? 3000 : 300), B = 1 + dr_rand64(&rng) % 7;
        int k = round % 5 == 0 ? 1 : 1 + (int)(dr_rand64(&rng) % (round % 7 == 0 ? n + 20 : 80));
        ref_topk_case(&rng, n, B, k, round % 3);
    }
    for (int mode = 0; mode < 3; mode++)
        ref_topk_case(&rng, 2 * DR_EMIT_CHUNK_ITEMS + 4321, 3, mode == 1 ? 1 : 50, mode);
}

/* Claim (dr_emit_select, issue 18): a list from candidates is exactly the
 * brute-force ranking of its eligible candidates, and an exploring one's
 * table the best eligible candidate per topic slot. */
static void test_select_matches_reference(void **state) {
    (void)state;
    enum { N = 700 };
    static float q[N], bias[N], pop[N], score[N];
    static int64_t ids[N], author[N], topic[N], topic_of_id[N], idx[N];
    static uint8_t blocked[N];
    static naive_t all[N];
    static dr_scored_item_t out[N + 10];
    uint64_t rng = 1819;
    dr_learner_conf_t lc;
    dr_learner_conf_default(&lc);
    dr_user_t *filtering = dr_user_new_conf(1, &lc);
    assert_non_null(filtering);
    filtering->hidden_topics.id[filtering->hidden_topics.len++] = 2;
    for (int round = 0; round < 300; round++) {
        for (size_t i = 0; i < N; i++) {
            ids[i] = (int64_t)(5000 + (i * 389) % N); /* 389 is prime: a permutation */
            blocked[i] = dr_rand64(&rng) % 10 == 0;
            author[i] = -1;
            topic[i] = (int64_t)(dr_rand64(&rng) % 7) - 1;
            topic_of_id[ids[i] - 5000] = topic[i];
            idx[i] = (int64_t)i;
        }
        size_t n = dr_rand64(&rng) % N;
        for (size_t j = 0; j < n; j++) { /* n distinct candidates, in random order */
            size_t t = j + dr_rand64(&rng) % (N - j);
            int64_t x = idx[j];
            idx[j] = idx[t];
            idx[t] = x;
            uint64_t h = dr_rand64(&rng) % 100;
            score[j] = h < 3 ? NAN : h < 6 ? -INFINITY : h < 50 ? (float)(h % 5) : (float)dr_rand01(&rng);
        }
        int k = 1 + (int)(dr_rand64(&rng) % (round % 4 == 0 ? N : 60));
        const dr_user_t *user = round % 2 ? filtering : NULL;
        dr_items_view_t v = {N, 1, q, bias, ids, blocked, pop, author, topic};
        size_t out_n = 0, m = 0;
        for (size_t j = 0; j < n; j++) {
            size_t i = (size_t)idx[j];
            if (blocked[i] || !(score[j] > -INFINITY) || (user && dr_user_hides_source(user, -1, topic[i])))
                continue;
            all[m++] = (naive_t){score[j], ids[i]};
        }
        qsort(all, m, sizeof(*all), naive_cmp);
        assert_int_equal(dr_emit_select(&v, idx, score, n, k, user, NULL, out, &out_n), 0);
        assert_list_is(out, out_n, all, m < (size_t)k ? m : (size_t)k);
        dr_emit_topic_best_t topics[DR_EMIT_EXPLORE_TOPICS], want_topics[DR_EMIT_EXPLORE_TOPICS];
        assert_int_equal(dr_emit_select(&v, idx, score, n, k, user, topics, out, &out_n), 0);
        ref_topics(all, m, topic_of_id, 5000, want_topics);
        for (size_t t = 0; t < DR_EMIT_EXPLORE_TOPICS; t++) {
            assert_int_equal(topics[t].topic, want_topics[t].topic);
            if (topics[t].topic >= 0) assert_int_equal(topics[t].best.item_id, want_topics[t].best.item_id);
        }
    }
    dr_user_free(filtering);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_brute_force),
        cmocka_unit_test(test_chunks_match_brute_force),
        cmocka_unit_test(test_empty_catalog),
        cmocka_unit_test(test_user_filters),
        cmocka_unit_test(test_explore_topics),
        cmocka_unit_test(test_select_from_candidates),
        cmocka_unit_test(test_selection_matches_reference),
        cmocka_unit_test(test_select_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
