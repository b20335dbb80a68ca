/* retrieve.c - the emitter's retrieval path for large catalogs: an HNSW
 * index over the items' [q_i, b_i] (retrieval/dr_retrieval.h) proposes each
 * user's candidates, together with the items its co-engagement term
 * favours, the trending items and the most popular; their exact scores
 * (every term, dr_model_scores_at) rank the list. The index follows the
 * item matrix within a time budget per emit call: items it lacks first,
 * then a round-robin pass that re-inserts the rows that moved by more than
 * emit.retrieval.refresh.change of their length since the index took them;
 * re-inserted rows leave dead slots, and past a fifth of the items a new
 * index is built beside the one serving and replaces it. Until the first
 * holds the whole catalog the full scan serves. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_log.h"
#include "emitter_internal.h"

/* Items that joined the catalog since the index last caught up are
 * scored exactly for every list, up to this many; more, and the full scan
 * serves until the index has them. */
#define RETR_TAIL_MAX 1024
#define RETR_TREND_TOP 64 /* trending candidates per list (the trend term) */

struct dr__retrieval {
    dr_emit_retrieval_conf_t conf;
    dr_ann_t *ann;         /* the index that serves */
    size_t indexed;        /* items 0..indexed-1 are in it */
    dr_ann_t *next;        /* its rebuild (replaced rows leave dead slots), or NULL */
    size_t next_indexed;
    int dim;
    size_t cursor;         /* the refresh pass's next row */
    /* per emit call: the global candidates */
    int64_t *popular;      /* conf.popular most popular indices */
    int64_t *coengaged;    /* per list: conf.coengaged co-engagement candidates */
    size_t n_popular;
    int64_t trend[RETR_TREND_TOP];
    size_t n_trend;
    /* per list: candidates, their scores, and a set that keeps them apart */
    int64_t *cand;
    float *score;
    size_t cand_cap;
    int64_t *set;          /* open addressing, -1 empty; set_mask + 1 slots */
    size_t set_mask;
};

int dr__retrieval_new(dr__retrieval_t **out, const dr_emitter_conf_t *conf, char *errstr,
                      size_t errstr_size) {
    *out = NULL;
    const dr_emit_retrieval_conf_t *c = &conf->retrieval;
    if (c->min_items <= 0) return 0; /* off */
    dr__retrieval_t *r = calloc(1, sizeof(*r));
    if (!r) goto nomem;
    r->conf = *c;
    r->cand_cap = (size_t)c->candidates + EXCL_MAX + (size_t)c->coengaged + (size_t)c->popular +
                  RETR_TREND_TOP + RETR_TAIL_MAX;
    size_t slots = 1;
    while (slots < 2 * (r->cand_cap + EXCL_MAX)) slots <<= 1;
    r->set_mask = slots - 1;
    r->cand = malloc(r->cand_cap * sizeof(*r->cand));
    r->score = malloc(r->cand_cap * sizeof(*r->score));
    r->set = malloc(slots * sizeof(*r->set));
    r->popular = malloc(((size_t)c->popular + 1) * sizeof(*r->popular));
    r->coengaged = malloc(((size_t)c->coengaged + 1) * sizeof(*r->coengaged));
    if (!r->cand || !r->score || !r->set || !r->popular || !r->coengaged) goto nomem;
    *out = r;
    return 0;
nomem:
    dr__retrieval_free(r);
    snprintf(errstr, errstr_size, "out of memory creating the retrieval path");
    return DR_ENOMEM;
}

void dr__retrieval_free(dr__retrieval_t *r) {
    if (!r) return;
    dr_ann_free(r->ann);
    dr_ann_free(r->next);
    free(r->popular);
    free(r->coengaged);
    free(r->cand);
    free(r->score);
    free(r->set);
    free(r);
}

/* A new index sized for the catalog, its bias offset the items' mean bias
 * (dr_retrieval.h: the graph's shape wants biases around 0). */
static int new_index(dr__retrieval_t *r, const dr_items_view_t *items, dr_ann_t **out) {
    dr_ann_conf_t ac;
    dr_ann_conf_default(&ac, items->dim);
    ac.capacity = items->n;
    ac.M = r->conf.M;
    ac.ef_construction = r->conf.ef_construction;
    ac.ef_search = r->conf.ef_search;
    double sum = 0;
    for (size_t i = 0; i < items->n; i++) sum += items->bias[i];
    ac.bias_offset = items->n ? (float)(sum / (double)items->n) : 0.0f;
    char err[256];
    int rc = dr_ann_new(out, &ac, err, sizeof(err));
    if (rc) dr_log(DR_LOG_ERROR, "emitter", "retrieval index not created | err=\"%s\"", err);
    return rc;
}

static int upsert_row(dr_ann_t *ann, const dr_items_view_t *items, size_t i) {
    int rc = dr_ann_upsert(ann, (int64_t)i, items->q + i * (size_t)items->dim, items->bias[i]);
    return rc == DR_EINVAL ? 0 : rc; /* a row not finite: left out until it is */
}

/* Whether row i moved enough since the index took it to be worth a new
 * slot: |Δ|² > change² · |row|², over [q_i, b_i]. */
static bool moved(const dr__retrieval_t *r, const dr_items_view_t *items, size_t i) {
    float old[DR_ANN_MAX_DIM + 1];
    if (dr_ann_get(r->ann, (int64_t)i, old, &old[items->dim]) != 0) return true;
    const float *q = items->q + i * (size_t)items->dim;
    double d2 = 0, n2 = 0;
    for (int k = 0; k <= items->dim; k++) {
        double x = k < items->dim ? q[k] : items->bias[i];
        d2 += (x - old[k]) * (x - old[k]);
        n2 += x * x;
    }
    return d2 > r->conf.refresh_change * r->conf.refresh_change * (n2 + 1e-12);
}

/* Adds rows [*indexed, n) to ann until the deadline. */
static int catch_up(dr_ann_t *ann, size_t *indexed, const dr_items_view_t *items, double deadline,
                    uint64_t *upserts) {
    int rc = 0;
    while (!rc && *indexed < items->n && dr_mono_s() < deadline)
        for (int k = 0; k < 64 && !rc && *indexed < items->n; k++, (*upserts)++)
            rc = upsert_row(ann, items, (*indexed)++);
    return rc;
}

static void global_candidates(dr__retrieval_t *r, const dr_model_t *m, const dr_items_view_t *items);

bool dr__retrieval_sync(dr__retrieval_t *r, const dr_model_t *m, const dr_items_view_t *items,
                        dr_emit_stats_t *stats) {
    if (!r || items->n < (size_t)r->conf.min_items) return false;
    double t0 = dr_mono_s(), deadline = t0 + r->conf.sync_ms / 1000.0;
    if (r->ann && r->dim != items->dim) { /* the dimension changed: start over */
        dr_ann_free(r->ann);
        dr_ann_free(r->next);
        r->ann = r->next = NULL;
        r->indexed = r->next_indexed = r->cursor = 0;
    }
    if (!r->ann) {
        if (new_index(r, items, &r->ann)) return false;
        r->dim = items->dim;
    }
    uint64_t upserts = 0;
    /* the items the index lacks first */
    int rc = catch_up(r->ann, &r->indexed, items, deadline, &upserts);
    if (!rc && r->indexed == items->n && !r->next) {
        /* then the rows that moved, round robin */
        size_t looked = 0;
        while (!rc && looked < items->n && dr_mono_s() < deadline)
            for (int k = 0; k < 1024 && !rc && looked < items->n; k++, looked++) {
                size_t i = r->cursor++ % items->n;
                r->cursor %= items->n;
                if (!moved(r, items, i)) continue;
                rc = upsert_row(r->ann, items, i);
                upserts++;
            }
        /* replaced rows leave dead slots that searches still walk: past a
         * fifth of the items, a new index is built beside it */
        if (!rc && dr_ann_dead(r->ann) > dr_ann_count(r->ann) / 5) {
            rc = new_index(r, items, &r->next);
            r->next_indexed = 0;
            stats->index_rebuilds++;
        }
    }
    if (!rc && r->next) {
        rc = catch_up(r->next, &r->next_indexed, items, deadline, &upserts);
        if (!rc && r->next_indexed == items->n) { /* the rebuild is complete: it serves */
            dr_ann_free(r->ann);
            r->ann = r->next;
            r->indexed = r->next_indexed;
            r->next = NULL;
        }
    }
    if (rc) dr_log(DR_LOG_WARN, "emitter", "retrieval index update failed | err=\"%s\"", dr_strerror(rc));
    stats->index_items = dr_ann_count(r->ann);
    stats->index_upserts += upserts;
    bool ready = items->n - r->indexed <= RETR_TAIL_MAX;
    if (ready) global_candidates(r, m, items);
    stats->index_seconds += dr_mono_s() - t0;
    return ready;
}

/* The popular and trending candidates of this emit call's lists: a pass
 * over the catalog, made only when the index serves. */
static void global_candidates(dr__retrieval_t *r, const dr_model_t *m, const dr_items_view_t *items) {
    float *scratch = r->score; /* free between lists */
    r->n_popular = 0;
    for (size_t i = 0; r->conf.popular > 0 && i < items->n; i++) {
        /* a bounded insertion into a short sorted array: popular is small */
        size_t n = r->n_popular;
        if (n == (size_t)r->conf.popular && !(items->pop[i] > scratch[n - 1])) continue;
        size_t j = n < (size_t)r->conf.popular ? n++ : n - 1;
        while (j > 0 && scratch[j - 1] < items->pop[i]) {
            scratch[j] = scratch[j - 1];
            r->popular[j] = r->popular[j - 1];
            j--;
        }
        scratch[j] = items->pop[i];
        r->popular[j] = (int64_t)i;
        r->n_popular = n;
    }
    r->n_trend = dr_model_trend_top(m, r->trend, scratch, RETR_TREND_TOP);
}

/* Adds item index i to the list's candidates unless the set has it; the
 * set also holds the user's exclusions, which so never enter. */
static bool set_add(dr__retrieval_t *r, int64_t i) {
    size_t s = dr_mix64((uint64_t)i) & r->set_mask;
    while (r->set[s] != -1) {
        if (r->set[s] == i) return false;
        s = (s + 1) & r->set_mask;
    }
    r->set[s] = i;
    return true;
}

static void add_candidate(dr__retrieval_t *r, size_t *n, int64_t i) {
    if (*n < r->cand_cap && set_add(r, i)) r->cand[(*n)++] = i;
}

int dr__retrieval_score(dr_emitter_t *e, const dr_model_t *m, const dr_items_view_t *items,
                        dr_user_t *const *users, size_t B) {
    dr__retrieval_t *r = e->retr;
    size_t C = (size_t)r->conf.candidates, M = (size_t)r->conf.coengaged;
    int err = 0;
    for (size_t u = 0; u < B && !err; u++) {
        memset(r->set, 0xff, (r->set_mask + 1) * sizeof(*r->set));
        for (size_t j = 0; j < e->excl[u].n; j++) set_add(r, e->excl[u].idx[j]);
        size_t n = 0, found = 0;
        /* the index's candidates (as many more as the user excludes) land
         * at the end of cand, then move to the front through the set */
        size_t want = C + e->excl[u].n;
        int64_t *tail = r->cand + r->cand_cap - want;
        err = dr_ann_search(r->ann, e->U + u * (size_t)e->dim, want, tail, NULL, &found);
        if (err) break;
        for (size_t j = 0; j < found; j++) add_candidate(r, &n, tail[j]);
        /* r->score is free until the candidates are scored */
        size_t k = dr_model_coengagement_top(m, users[u], r->coengaged, r->score, M);
        for (size_t j = 0; j < k; j++) add_candidate(r, &n, r->coengaged[j]);
        for (size_t j = 0; j < r->n_trend; j++) add_candidate(r, &n, r->trend[j]);
        for (size_t j = 0; j < r->n_popular; j++) add_candidate(r, &n, r->popular[j]);
        for (size_t i = r->indexed; i < items->n; i++) add_candidate(r, &n, (int64_t)i);
        dr_model_scores_at(m, users[u], r->cand, n, r->score);
        dr_emit_topic_best_t *topics = e->explore[u] ? e->topics + u * DR_EMIT_EXPLORE_TOPICS : NULL;
        err = dr_emit_select(items, r->cand, r->score, n, e->conf.topk, e->excl[u].user, topics,
                             e->out + u * (size_t)e->conf.topk, &e->out_n[u]);
    }
    if (!err) e->stats.retrieved_lists += B; /* else the full scan serves the batch */
    return err;
}
