/* replay.c - prequential backtesting (see dr_replay.h): shared per-event
 * facts are computed once (dense ids, each user's history), then every arm
 * runs in its own thread: rank (or predict), then learn, event by event.
 * With spliced users (dr_splice_events) each arm also scores the composite
 * users before and after their splice points and times its drift cuts. */
#include "dr_replay.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_learner.h"
#include "dr_log.h"
#include "dr_report.h"

#define MAX_DRIFTS_REPORTED 20000

static const char *const arm_names[DR_ARM__COUNT] = {"full", "prior", "nodrift", "popularity",
                                                     "zeroprior", "nocontent", "nocooc",
                                                     "itemknn", "recentpop", "bias",
                                                     "expknn"};
#define ARM_LIST "full, prior, nodrift, popularity, zeroprior, nocontent, nocooc, itemknn, recentpop, bias, expknn"
#define KNN_WINDOW 20  /* itemknn: W, a user's previous engagements each new one co-occurs with */
#define KNN_RECENT 20  /* itemknn: L, a user's last engagements that score the candidates */
#define KNN_HIST 20    /* itemknn: engagements kept per user, max(W, L) */
#define KNN_EMPTY UINT32_MAX
#define BIAS_LR 0.1    /* bias: SGD step on b_u and b_i, the best of a grid on */
#define BIAS_REG 0.1   /* ml-latest-small (docs/REPLAY.md), L2 on b_u and b_i */
static const int cold_user_n[] = {1, 5, 10, 20}; /* hr@K over each user's first N events */
#define COLD_USER_BUCKETS 4
#define COLD_ITEM_EVENTS 10 /* hr@K of items in their first 10 interactions */
static const int splice_window_n[] = {10, 20, 50}; /* hr@K over the first N events after a splice */
#define SPLICE_WINDOWS 3
#define NO_SPLICE UINT32_MAX
#define MAX_SPLICE_USERS_REPORTED 100000

const char *dr_replay_arm_name(dr_arm_kind_t kind) {
    return kind < DR_ARM__COUNT ? arm_names[kind] : "?";
}

int dr_replay_parse_arms(const char *list, dr_arm_kind_t *arms, int max, char *err, size_t n) {
    char buf[256];
    int count = 0;
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < DR_ARM__COUNT && strcmp(arm_names[k], t)) k++;
        if (k == DR_ARM__COUNT || count == max) {
            snprintf(err, n, "--arms: unknown or too many arms at '%s' (" ARM_LIST ")", t);
            return DR_EINVAL;
        }
        arms[count++] = (dr_arm_kind_t)k;
    }
    return count;
}

/* Defaults per mode: a mode's baselines, never an arm the mode cannot
 * measure (ranking-only arms have no figures in rating mode, and bias
 * predicts ratings only). */
const char *dr_replay_default_arms(dr_learn_mode_t mode) {
    return mode == DR_MODE_RATING ? "full,prior,nodrift,popularity,bias"
                                  : "full,prior,nodrift,popularity,itemknn,recentpop";
}

/* Refuses an arm whose metrics the mode does not produce, so that a replay
 * never reports an arm with only nulls. */
int dr_replay_check_arms(const dr_arm_kind_t *arms, int n, dr_learn_mode_t mode, char *err, size_t size) {
    for (int i = 0; i < n; i++) {
        if (arms[i] == DR_ARM_BIAS && mode != DR_MODE_RATING) {
            snprintf(err, size, "the bias arm predicts ratings: use --mode rating");
            return DR_EINVAL;
        }
        if ((arms[i] == DR_ARM_ITEMKNN || arms[i] == DR_ARM_RECENTPOP || arms[i] == DR_ARM_EXPKNN) && mode == DR_MODE_RATING) {
            snprintf(err, size, "the %s arm ranks items and predicts no ratings: use --mode implicit (the default)",
                     arm_names[arms[i]]);
            return DR_EINVAL;
        }
    }
    return 0;
}

/* ---- shared, read-only facts about the stream ----------------------------- */

typedef struct id_map {
    int64_t *keys;
    uint32_t *vals;
    size_t cap, n;
} id_map_t;

static int map_init(id_map_t *m, size_t expect) {
    m->cap = 1024;
    while (m->cap < expect * 2) m->cap *= 2;
    m->keys = malloc(m->cap * sizeof(int64_t));
    m->vals = malloc(m->cap * sizeof(uint32_t));
    m->n = 0;
    if (!m->keys || !m->vals) return DR_ENOMEM;
    memset(m->keys, 0xff, m->cap * sizeof(int64_t)); /* -1: empty */
    return 0;
}

/* Dense index of key, or -1 when absent. */
static int64_t map_find(const id_map_t *m, int64_t key) {
    size_t s = dr_mix64((uint64_t)key) & (m->cap - 1);
    while (m->keys[s] != -1 && m->keys[s] != key) s = (s + 1) & (m->cap - 1);
    return m->keys[s] == -1 ? -1 : (int64_t)m->vals[s];
}

/* Dense index of key, adding it (as m->n) when new; *added tells which. */
static uint32_t map_get(id_map_t *m, int64_t key, bool *added) {
    size_t s = dr_mix64((uint64_t)key) & (m->cap - 1);
    while (m->keys[s] != -1 && m->keys[s] != key) s = (s + 1) & (m->cap - 1);
    *added = m->keys[s] == -1;
    if (*added) {
        m->keys[s] = key;
        m->vals[s] = (uint32_t)m->n++;
    }
    return m->vals[s];
}

typedef struct prep {
    size_t n;
    uint32_t *user, *item, *hist_len;
    uint8_t *first_user;
    uint8_t *first_engaged;      /* the user's first event with this item other
                                    than an impression or a hide */
    uint32_t n_users, n_items;
    int64_t *item_ids;
    uint8_t *announced;
    uint32_t *hist_off, *hist;   /* per user: distinct items, in first-interaction order */
    uint32_t *splice_at;         /* per user: a composite's splice index, else NO_SPLICE
                                    (NULL without spliced users) */
    uint32_t n_spliced;          /* composite users present in the stream */
} prep_t;

static void prep_free(prep_t *p) {
    free(p->user); free(p->item); free(p->hist_len); free(p->first_user); free(p->first_engaged);
    free(p->item_ids); free(p->announced); free(p->hist_off); free(p->hist); free(p->splice_at);
}

static int prep_build(prep_t *p, const dr_replay_input_t *in) {
    id_map_t users = {0}, items = {0}, pairs = {0}, engaged = {0};
    size_t n = in->n;
    int err = DR_ENOMEM;
    memset(p, 0, sizeof(*p));
    p->n = n;
    p->user = malloc(n * 4 + 4); p->item = malloc(n * 4 + 4); p->hist_len = malloc(n * 4 + 4);
    p->first_user = malloc(n + 1);
    uint8_t *new_pair = malloc(n + 1);
    p->first_engaged = malloc(n + 1);
    if (!p->user || !p->item || !p->hist_len || !p->first_user || !new_pair || !p->first_engaged) goto out;
    if (map_init(&users, 1 << 16) || map_init(&items, in->n_catalog + (1 << 16)) || map_init(&pairs, n) ||
        map_init(&engaged, n))
        goto out;
    bool added;
    for (size_t i = 0; i < in->n_catalog; i++) map_get(&items, in->catalog[i], &added);
    size_t n_announced = items.n;
    for (size_t e = 0; e < n; e++) {
        p->user[e] = map_get(&users, in->events[e].user_id, &added);
        p->first_user[e] = added;
        p->item[e] = map_get(&items, in->events[e].item_id, &added);
        if (users.n > UINT32_MAX / 2 || items.n > UINT32_MAX / 2) { err = DR_ERANGE; goto out; }
        int64_t pair = ((int64_t)p->user[e] << 32) | p->item[e];
        map_get(&pairs, pair, &added);
        new_pair[e] = added;
        dr_event_type_t t = in->events[e].type;
        p->first_engaged[e] = 0;
        if (t != DR_EV_IMPRESSION && !dr_event_is_hide(t)) {
            map_get(&engaged, pair, &added);
            p->first_engaged[e] = added;
        }
    }
    p->n_users = (uint32_t)users.n;
    p->n_items = (uint32_t)items.n;
    p->item_ids = malloc(items.n * 8 + 8);
    p->announced = calloc(items.n + 1, 1);
    p->hist_off = calloc(users.n + 1, 4);
    p->hist = malloc(pairs.n * 4 + 4);
    uint32_t *fill = calloc(users.n + 1, 4);
    if (!p->item_ids || !p->announced || !p->hist_off || !p->hist || !fill) { free(fill); goto out; }
    for (size_t s = 0; s < items.cap; s++)
        if (items.keys[s] != -1) p->item_ids[items.vals[s]] = items.keys[s];
    memset(p->announced, 1, n_announced);
    for (size_t e = 0; e < n; e++) p->hist_off[p->user[e] + 1] += new_pair[e];
    for (uint32_t u = 0; u < p->n_users; u++) p->hist_off[u + 1] += p->hist_off[u];
    for (size_t e = 0; e < n; e++) {
        uint32_t u = p->user[e];
        p->hist_len[e] = fill[u];
        if (new_pair[e]) p->hist[p->hist_off[u] + fill[u]++] = p->item[e];
    }
    free(fill);
    if (in->splice) {
        if (!(p->splice_at = malloc(users.n * sizeof(uint32_t) + 4))) goto out;
        for (uint32_t u = 0; u < p->n_users; u++) p->splice_at[u] = NO_SPLICE;
        for (size_t i = 0; i < in->splice->n; i++) {
            int64_t u = map_find(&users, in->splice->users[i].user_id);
            if (u < 0) continue; /* not in this stream */
            p->splice_at[u] = in->splice->users[i].splice_index;
            p->n_spliced++;
        }
    }
    err = 0;
out:
    free(new_pair);
    free(users.keys); free(users.vals); free(items.keys); free(items.vals);
    free(pairs.keys); free(pairs.vals); free(engaged.keys); free(engaged.vals);
    return err;
}

/* ---- one arm ------------------------------------------------------------- */

typedef struct wstats {
    uint64_t ranked, hits, rated;
    double ndcg, rr, abs_err, sq_err, seconds;
} wstats_t;

typedef struct drift_rec {
    size_t event;
    int64_t ts, user;
} drift_rec_t;

/* Cold start: new users' and new items' first events. */
typedef struct cold_stats {
    uint64_t user_ranked[COLD_USER_BUCKETS], user_hits[COLD_USER_BUCKETS];
    uint64_t item_ranked, item_hits;
    uint64_t new_items, listed_before_first; /* items seen with a first interaction */
} cold_stats_t;

/* Composite users (spliced): ranks before and after the splice, and the
 * drift cuts around it. */
typedef struct splice_stats {
    wstats_t before, after, first[SPLICE_WINDOWS];
    uint32_t *first_cut;         /* per user: index of its first cut at or after the splice */
    uint8_t *cut_before;         /* per user: cut before the splice */
    uint64_t cuts_before, cuts_after;
} splice_stats_t;

/* itemknn: one item's co-occurrence counts C[j][.], keyed by candidate
 * row, so memory grows with the pairs seen, not with items squared: the
 * pairs in two dense arrays (scoring walks them in order) and an
 * open-addressing index over them (slot: a pair's position, KNN_EMPTY: free). */
typedef struct knn_row {
    uint32_t *slot;
    uint32_t *keys;
    float *vals;
    uint32_t cap, n, room;       /* slots, pairs, pairs allocated */
} knn_row_t;

/* itemknn: a user's last KNN_HIST engaged items, a ring (n: all so far). */
typedef struct knn_user {
    uint32_t n;
    uint32_t items[KNN_HIST];
} knn_user_t;

typedef struct arm_run {
    const prep_t *p;
    const dr_replay_conf_t *conf;
    const dr_replay_input_t *in;
    dr_arm_kind_t kind;
    float rating_min, rating_max;
    /* results */
    wstats_t total;
    wstats_t *win;
    size_t n_win;
    uint8_t *covered;
    uint64_t drifts;
    drift_rec_t *drift_list;
    size_t n_drift_list;
    double logloss;
    uint64_t labelled, positives;
    float *auc_pred;
    uint8_t *auc_label;
    double seconds;
    cold_stats_t cold;
    splice_stats_t sp;
    bool drift_on;               /* the arm detects drift */
    float pop_gamma, pop_tau;    /* the population prior's γ and τ at the end */
    int rc;
    char err[256];
    /* working state */
    uint32_t *user_n, *item_n;   /* events so far per dense user / item */
    dr_model_t *m;
    dr_user_t **users;
    int64_t *row_of;             /* dense item -> model row, -1 */
    float *scores, *uvec;
    float *blend_tmp;            /* full with DR_EXP_BLEND: the model's own scores */
    float blend;                 /* DR_EXP_BLEND: weight of the expknn score added to full's */
    double *pop_count, *rating_sum;
    int64_t *avail;              /* row -> dense item (model rows, or popularity's candidates) */
    size_t n_avail;
    size_t since_expiry;         /* events since the model's last expiry pass */
    double mu_sum;
    uint64_t mu_n;
    knn_row_t *knn_rows;         /* itemknn: per candidate row */
    knn_user_t **knn_users;      /* itemknn: per dense user, once it engages (rows) */
    float *knn_inv_sqrt;         /* itemknn: per row, 1 / sqrt(n_i), n_i the item's engagements */
    uint32_t *knn_n;
    struct exp_state *x;         /* expknn */
    double halflife;             /* recentpop: H, events */
    size_t decay_base;           /* recentpop: pop_count holds counts × 2^((e - base) / H) */
    double *b_user, *b_item;     /* bias */
    float *cover_saved;          /* cover_top_k: the history rows' scores */
    uint32_t cover_saved_cap;
    size_t *cover_best;          /* cover_top_k: k rows */
} arm_run_t;

/* Arms with a learner model (the others are the baselines, scored by
 * pop_event): they have drift detection and a population prior to report. */
static bool has_model(dr_arm_kind_t kind) {
    return kind != DR_ARM_POPULARITY && kind != DR_ARM_ITEMKNN && kind != DR_ARM_RECENTPOP &&
           kind != DR_ARM_BIAS && kind != DR_ARM_EXPKNN;
}

static bool is_positive(const dr_learner_conf_t *c, const dr_event_t *ev) {
    switch (ev->type) {
    case DR_EV_CLICK: case DR_EV_LIKE: case DR_EV_SHARE: case DR_EV_COMMENT:
    case DR_EV_PURCHASE: case DR_EV_RATE:
        return true;
    case DR_EV_DWELL: return ev->value >= c->dwell_threshold_s;
    default: return false;
    }
}

static void add_rank(wstats_t *s, int k, double rank) {
    s->ranked++;
    if (isfinite(rank) && rank <= k) {
        s->hits++;
        s->ndcg += 1.0 / log2(1.0 + rank);
    }
    if (isfinite(rank)) s->rr += 1.0 / rank;
}

static void add_error(wstats_t *s, double d) {
    s->rated++;
    s->abs_err += fabs(d);
    s->sq_err += d * d;
}

static void record_rank(arm_run_t *a, wstats_t *w, double rank) {
    add_rank(w, a->conf->k, rank);
    add_rank(&a->total, a->conf->k, rank);
}

/* The splice figures event e falls in, pos being its index among its user's
 * events: none unless its user is a composite; before, or after and the
 * first-N windows it is in. Returns the count. */
static int splice_buckets(arm_run_t *a, size_t e, uint32_t pos, wstats_t **b) {
    uint32_t at = a->p->splice_at ? a->p->splice_at[a->p->user[e]] : NO_SPLICE;
    if (at == NO_SPLICE) return 0;
    if (pos < at) { b[0] = &a->sp.before; return 1; }
    int n = 0;
    b[n++] = &a->sp.after;
    for (int i = 0; i < SPLICE_WINDOWS; i++)
        if (pos - at < (uint32_t)splice_window_n[i]) b[n++] = &a->sp.first[i];
    return n;
}

static void record_splice_rank(arm_run_t *a, size_t e, uint32_t pos, double rank) {
    wstats_t *b[SPLICE_WINDOWS + 1];
    for (int i = 0, n = splice_buckets(a, e, pos, b); i < n; i++) add_rank(b[i], a->conf->k, rank);
}

static void record_splice_error(arm_run_t *a, size_t e, uint32_t pos, double d) {
    wstats_t *b[SPLICE_WINDOWS + 1];
    for (int i = 0, n = splice_buckets(a, e, pos, b); i < n; i++) add_error(b[i], d);
}

/* A drift cut of user ud at its event pos, against its splice point. */
static void record_splice_cut(arm_run_t *a, uint32_t ud, uint32_t pos) {
    uint32_t at = a->p->splice_at ? a->p->splice_at[ud] : NO_SPLICE;
    if (at == NO_SPLICE || !a->sp.first_cut) return;
    if (pos < at) {
        a->sp.cuts_before++;
        a->sp.cut_before[ud] = 1;
        return;
    }
    a->sp.cuts_after++;
    if (a->sp.first_cut[ud] == NO_SPLICE) a->sp.first_cut[ud] = pos;
}

/* Before event e is learned from: its user's and item's cold-start buckets. */
static void record_cold(arm_run_t *a, size_t e, double rank, bool ranked) {
    uint32_t un = a->user_n[a->p->user[e]] + 1, in = a->item_n[a->p->item[e]];
    bool hit = isfinite(rank) && rank <= a->conf->k;
    for (int b = 0; ranked && b < COLD_USER_BUCKETS; b++)
        if (un <= (uint32_t)cold_user_n[b]) {
            a->cold.user_ranked[b]++;
            a->cold.user_hits[b] += hit;
        }
    if (ranked && in < COLD_ITEM_EVENTS) {
        a->cold.item_ranked++;
        a->cold.item_hits += hit;
    }
    if (in == 0) {
        a->cold.new_items++;
        a->cold.listed_before_first += a->covered[a->p->item[e]];
    }
}

static void count_event(arm_run_t *a, size_t e) {
    a->user_n[a->p->user[e]]++;
    a->item_n[a->p->item[e]]++;
}

/* Comparisons only (no arithmetic on the scores, so no instruction set can
 * change a result): built for AVX2 too where the compiler can pick the
 * build at run time, which halves this pass over every row per ranked
 * event. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define DR_COMPARE_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef DR_COMPARE_CLONES
#define DR_COMPARE_CLONES
#endif

/* How many of sc[0..n) score above st, and how many equal it. 32-bit
 * counts (rows <= learner.max.items <= 1e9): the loop vectorises at -O3. */
DR_COMPARE_CLONES
static void count_vs(const float *sc, size_t n, float st, int64_t *greater, int64_t *ties) {
    int32_t g = 0, t = 0;
    for (size_t r = 0; r < n; r++) {
        g += sc[r] > st;
        t += sc[r] == st;
    }
    *greater = g;
    *ties = t;
}

/* Rank of the target row among every candidate row (sc[0..n)) the user has
 * not had before event e: 1 + the number scoring higher, with ties counted
 * half (the expected rank under a random tie-break). row_of maps a dense
 * item to its row (-1: not a candidate). Excluded rows hold -INFINITY. */
static double rank_in(const arm_run_t *a, size_t e, const float *sc, size_t n, int64_t target,
                      const int64_t *row_of) {
    float st = sc[target];
    int64_t greater, ties;
    count_vs(sc, n, st, &greater, &ties);
    const uint32_t *h = a->p->hist + a->p->hist_off[a->p->user[e]];
    for (uint32_t j = 0; j < a->p->hist_len[e]; j++) {
        int64_t r = row_of[h[j]];
        if (r < 0 || r == target) continue;
        greater -= sc[r] > st;
        ties -= sc[r] == st;
    }
    ties -= 1; /* the target itself */
    return 1.0 + (double)greater + (ties > 0 ? (double)ties / 2.0 : 0.0);
}

#define COVER_BLOCK 32 /* cover_top_k: rows tested at once against the worst kept */

/* The arm's scratch for cover_top_k: room for the user's history scores
 * (grown by doubling, kept across events). NULL when out of memory. */
static float *cover_scratch(arm_run_t *a, uint32_t hist_len) {
    if (hist_len >= a->cover_saved_cap) {
        uint32_t cap = a->cover_saved_cap ? a->cover_saved_cap : 256;
        while (cap <= hist_len) cap *= 2;
        float *v = realloc(a->cover_saved, cap * sizeof(float));
        if (!v) return NULL;
        a->cover_saved = v;
        a->cover_saved_cap = cap;
    }
    if (!a->cover_best && !(a->cover_best = malloc((size_t)a->conf->k * sizeof(size_t)))) return NULL;
    return a->cover_saved;
}

/* Marks the k best candidates the user has not had as covered (sampled
 * every coverage_every ranked events: a full list per event costs more
 * than the ranking itself). */
static void cover_top_k(arm_run_t *a, size_t e, float *sc, size_t n, const int64_t *row_of,
                        const int64_t *dense_of_row) {
    const uint32_t *h = a->p->hist + a->p->hist_off[a->p->user[e]];
    float *saved = cover_scratch(a, a->p->hist_len[e]);
    if (!saved) return;
    for (uint32_t j = 0; j < a->p->hist_len[e]; j++) {
        int64_t r = row_of[h[j]];
        saved[j] = r >= 0 ? sc[r] : 0;
        if (r >= 0) sc[r] = -INFINITY;
    }
    /* one pass, keeping the k best in a small array sorted best first */
    int k = a->conf->k, kept = 0;
    size_t *best = a->cover_best;
    for (size_t r = 0; r < n; r++) {
        /* once k are kept, a block of COVER_BLOCK rows none of which beats
         * the worst kept is passed over whole: the test counts, branch-free
         * (it vectorises), the rows at or below it, which the row-by-row
         * test would each pass over too (a NaN counts as not below, so its
         * block goes row by row as before) */
        if (kept == k && r % COVER_BLOCK == 0 && r + COVER_BLOCK <= n) {
            float worst = sc[best[k - 1]];
            int below = 0;
            for (int i = 0; i < COVER_BLOCK; i++) below += sc[r + (size_t)i] <= worst;
            if (below == COVER_BLOCK) { r += COVER_BLOCK - 1; continue; }
        }
        if (sc[r] == -INFINITY || (kept == k && sc[r] <= sc[best[k - 1]])) continue;
        int pos = kept < k ? kept++ : k - 1;
        while (pos > 0 && sc[best[pos - 1]] < sc[r]) { best[pos] = best[pos - 1]; pos--; }
        best[pos] = r;
    }
    for (int i = 0; i < kept; i++) a->covered[dense_of_row[best[i]]] = 1;
    for (uint32_t j = 0; j < a->p->hist_len[e]; j++) {
        int64_t r = row_of[h[j]];
        if (r >= 0) sc[r] = saved[j];
    }
}

/* ---- arms with a model --------------------------------------------------- */

static int arm_model_init(arm_run_t *a) {
    dr_learner_conf_t lc = *a->conf->learner;
    /* the prior arm ranks every user by the shared prior alone (û and the
     * population prior): no per-user learning, no co-engagement term */
    if (a->kind == DR_ARM_PRIOR) { lc.lr_user = 0; lc.drift_enabled = false; lc.cooc_neighbors = 0; }
    if (a->kind == DR_ARM_NOCOOC) lc.cooc_neighbors = 0;
    if (a->kind == DR_ARM_NODRIFT) lc.drift_enabled = false;
    /* a zero prior: no shared prior at all, neither û nor the population's */
    if (a->kind == DR_ARM_ZEROPRIOR) {
        lc.prior_zero = true;
        lc.prior_step = 0;
        lc.pop_weight = 0;
        lc.pop_step = 0;
    }
    a->drift_on = lc.drift_enabled;
    bool content = a->in->catalog_emb && a->kind != DR_ARM_NOCONTENT;
    if (!content) lc.content_dim = 0;
    else if (lc.content_dim == 0) lc.content_dim = a->in->emb_dim; /* the catalog's, unless configured */
    if (content && lc.content_dim != a->in->emb_dim) {
        snprintf(a->err, sizeof(a->err), "the catalog's embeddings have %d floats, learner.content.dim is %d",
                 a->in->emb_dim, lc.content_dim);
        return DR_ECONFIG;
    }
    int err = dr_model_new(&a->m, &lc, a->err, sizeof(a->err));
    if (err) return err;
    a->users = calloc(a->p->n_users + 1, sizeof(dr_user_t *));
    a->uvec = malloc((size_t)lc.dim * sizeof(float));
    if (!a->users || !a->uvec) return DR_ENOMEM;
    for (uint32_t d = 0; d < a->p->n_items; d++) {
        if (!a->p->announced[d]) continue;
        int64_t r = dr_model_item_index(a->m, a->p->item_ids[d], true);
        if (r < 0) return (int)r;
        a->row_of[d] = r;
        a->avail[r] = d;
    }
    for (size_t i = 0; content && i < a->in->n_catalog; i++) {
        const float *row = a->in->catalog_emb + i * (size_t)a->in->emb_dim;
        bool any = false;
        for (int j = 0; j < a->in->emb_dim; j++) any |= row[j] != 0.0f;
        if (any && (err = dr_model_set_item_content(a->m, a->in->catalog[i], row, (size_t)a->in->emb_dim)))
            return err;
    }
    return 0;
}

/* Scores every row for user u as dr_model_score() does: û + v_u against the
 * item matrix, plus biases, the population prior and the co-engagement
 * term; blocked rows get
 * -INFINITY. Returns the row count. */
static size_t score_rows(arm_run_t *a, const dr_user_t *u) {
    dr_items_view_t v;
    dr_model_items(a->m, &v);
    dr_model_user_vector(a->m, u, a->uvec);
    /* the biases and the population prior ride in sgemv's y (beta = 1) */
    float w = dr_model_pop_weight(a->m, u);
    if (w != 0.0f)
        for (size_t r = 0; r < v.n; r++) a->scores[r] = v.bias[r] + w * v.pop[r];
    else
        memcpy(a->scores, v.bias, v.n * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)v.n, v.dim, 1.0f, v.q, v.dim, a->uvec, 1, 1.0f,
                a->scores, 1);
    dr_model_add_coengagement(a->m, u, a->scores, v.n);
    dr_model_add_fresh_range(a->m, a->scores, 0, v.n);
    /* a select, not a branch around a store: it vectorises, and this pass
     * over every row cost more than the ranking itself as a branch */
    float *sc = a->scores;
    const uint8_t *ex = v.excluded;
    for (size_t r = 0; r < v.n; r++) sc[r] = ex[r] ? -INFINITY : sc[r];
    return v.n;
}

static void collect_label(arm_run_t *a, float pred, float y) {
    float eps = 1e-7f;
    a->logloss += -(y * logf(pred + eps) + (1 - y) * logf(1 - pred + eps));
    a->positives += y > 0.5f;
    a->auc_pred[a->labelled] = pred;
    a->auc_label[a->labelled++] = y > 0.5f;
}

/* learner.item.ttl.ms in a replay: the model's expiry pass runs every
 * REPLAY_EXPIRY_EVERY events, as the pipeline's commits run it. A removed
 * item's row loses its dataset item (an event on it later gives it a row
 * again, expired: lists never hold it, and ranking it counts as a miss). */
#define REPLAY_EXPIRY_EVERY 1000
static int expire_items(arm_run_t *a) {
    a->since_expiry = 0;
    dr_items_view_t v;
    dr_model_items(a->m, &v);
    dr_expiry_stats_t st;
    int err = dr_model_expire_items(a->m, v.n, &st);
    if (err || st.removed == 0) return err;
    dr_model_items(a->m, &v);
    for (size_t r = 0; r < v.n; r++) {
        int64_t d = a->avail[r];
        if (v.ids[r] >= 0 || d < 0 || a->row_of[d] != (int64_t)r) continue;
        a->row_of[d] = -1;
        a->avail[r] = -1;
    }
    return 0;
}

static void exp_scores(arm_run_t *a, size_t e);
static int exp_learn(arm_run_t *a, size_t e, uint32_t ud, uint32_t id);

static int model_event(arm_run_t *a, size_t e, wstats_t *w, uint64_t *ranked_count) {
    const dr_event_t *ev = &a->in->events[e];
    uint32_t ud = a->p->user[e], id = a->p->item[e];
    uint32_t pos = a->user_n[ud]; /* the event's index among its user's */
    dr_user_t *u = a->users[ud];
    if (!u && !(u = a->users[ud] = dr_user_new_conf(ev->user_id, dr_model_conf(a->m)))) return DR_ENOMEM;
    const dr_learner_conf_t *lc = dr_model_conf(a->m);
    /* ranked: a user's first positive event with an item (a like or a
     * dwell after the click repeats it, and its item was just learned) */
    bool ranked = lc->mode == DR_MODE_IMPLICIT && is_positive(lc, ev) && a->p->first_engaged[e];
    double rank = INFINITY;
    if (ranked && a->row_of[id] >= 0) {
        size_t n = score_rows(a, u);
        if (a->x) { /* the study's blend: full's scores + blend × expknn's */
            memcpy(a->blend_tmp, a->scores, n * sizeof(float));
            size_t keep = a->n_avail;
            a->n_avail = n;
            exp_scores(a, e);
            a->n_avail = keep;
            for (size_t r = 0; r < n; r++) a->scores[r] = a->blend_tmp[r] + a->blend * a->scores[r];
        }
        rank = rank_in(a, e, a->scores, n, a->row_of[id], a->row_of);
        if (!a->p->first_user[e] && a->conf->coverage_every > 0 &&
            (*ranked_count)++ % (uint64_t)a->conf->coverage_every == 0)
            cover_top_k(a, e, a->scores, n, a->row_of, a->avail);
    }
    /* a user's first event is ranked for the cold-start figures only (the
     * headline metrics count users seen before) */
    if (ranked && !a->p->first_user[e]) {
        record_rank(a, w, rank);
        record_splice_rank(a, e, pos, rank);
    }
    record_cold(a, e, rank, ranked);
    count_event(a, e);
    dr_apply_result_t res;
    int err = dr_learner_apply(a->m, u, ev, dr_mix64(e), &res);
    if (!err && lc->item_ttl_ms > 0 && ++a->since_expiry >= REPLAY_EXPIRY_EVERY) err = expire_items(a);
    if (err) return err;
    if (lc->mode == DR_MODE_RATING && res.learned) {
        float pred = fminf(fmaxf(res.prediction, a->rating_min), a->rating_max);
        double d = (double)pred - ev->value;
        add_error(w, d);
        add_error(&a->total, d);
        record_splice_error(a, e, pos, d);
    } else if (res.learned) {
        collect_label(a, res.prediction, is_positive(lc, ev) ? 1.0f : 0.0f);
    }
    if (res.drift) {
        a->drifts++;
        /* only arms with drift handling see cuts; an improving one gets no response */
        if (dr_learner_should_respond(a->m, u, &res)) dr_learner_readapt(a->m, u, res.drift_direction);
        record_splice_cut(a, ud, pos);
        if (a->drift_list && a->n_drift_list < MAX_DRIFTS_REPORTED)
            a->drift_list[a->n_drift_list++] = (drift_rec_t){e, ev->timestamp_ms, ev->user_id};
    }
    if (a->row_of[id] < 0) {
        int64_t r = dr_model_item_index(a->m, ev->item_id, false);
        if (r >= 0) { a->row_of[id] = r; a->avail[r] = id; }
    }
    if (a->x && is_positive(lc, ev) && a->p->first_engaged[e] && a->row_of[id] >= 0 &&
        exp_learn(a, e, ud, (uint32_t)a->row_of[id]))
        return DR_ENOMEM;
    return 0;
}

/* ---- the baseline arms: popularity, itemknn, recentpop, bias ---------------- */

/* Adds inc to C[row][key]: a new key is appended to the pairs, and the
 * index is rebuilt twice as large past 70% load (linear probing stays
 * short there). 0 or DR_ENOMEM. */
static int knn_add(knn_row_t *r, uint32_t key, float inc) {
    uint32_t t = 0;
    if (r->cap) {
        t = (uint32_t)dr_mix64(key) & (r->cap - 1);
        while (r->slot[t] != KNN_EMPTY && r->keys[r->slot[t]] != key) t = (t + 1) & (r->cap - 1);
        if (r->slot[t] != KNN_EMPTY) { r->vals[r->slot[t]] += inc; return 0; }
    }
    if (r->n == r->room) {
        uint32_t room = r->room ? r->room * 2 : 4;
        uint32_t *keys = realloc(r->keys, room * sizeof(uint32_t));
        if (keys) r->keys = keys;
        float *vals = keys ? realloc(r->vals, room * sizeof(float)) : NULL;
        if (!vals) return DR_ENOMEM;
        r->vals = vals;
        r->room = room;
    }
    r->keys[r->n] = key;
    r->vals[r->n] = inc;
    if ((uint64_t)(r->n + 1) * 10 > (uint64_t)r->cap * 7) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        uint32_t *slot = malloc(cap * sizeof(uint32_t));
        if (!slot) return DR_ENOMEM;
        memset(slot, 0xff, cap * sizeof(uint32_t));
        for (uint32_t i = 0; i <= r->n; i++) {
            uint32_t u = (uint32_t)dr_mix64(r->keys[i]) & (cap - 1);
            while (slot[u] != KNN_EMPTY) u = (u + 1) & (cap - 1);
            slot[u] = i;
        }
        free(r->slot);
        r->slot = slot;
        r->cap = cap;
    } else {
        r->slot[t] = r->n;
    }
    r->n++;
    return 0;
}

/* itemknn's scores of every candidate row r for user ud: the sum over its
 * last KNN_RECENT engaged items j (newest first, k = 0, 1, ...) of
 * C[j][r] / (1 + k), divided by sqrt(n_r) at the end. Only those rows are
 * walked; items that never co-occurred with them score 0. */
static void knn_scores(arm_run_t *a, uint32_t ud) {
    float *sc = a->scores;
    memset(sc, 0, a->n_avail * sizeof(float));
    const knn_user_t *h = a->knn_users[ud];
    uint32_t n = h ? (h->n < KNN_RECENT ? h->n : KNN_RECENT) : 0;
    if (n == 0) return;
    for (uint32_t k = 0; k < n; k++) {
        const knn_row_t *r = &a->knn_rows[h->items[(h->n - 1 - k) % KNN_HIST]];
        float wk = 1.0f / (float)(1 + k);
        for (uint32_t i = 0; i < r->n; i++) sc[r->keys[i]] += r->vals[i] * wk;
    }
    /* a plain counted loop (no test of n inside): it vectorises */
    const float *inv = a->knn_inv_sqrt;
    for (size_t r = 0; r < a->n_avail; r++) sc[r] *= inv[r];
}

/* itemknn learns an engagement of user ud with the item of candidate row
 * id: it co-occurs with the user's previous KNN_WINDOW engaged items, both
 * ways. */
static int knn_learn(arm_run_t *a, uint32_t ud, uint32_t id) {
    knn_user_t *h = a->knn_users[ud];
    if (!h && !(h = a->knn_users[ud] = calloc(1, sizeof(*h)))) return DR_ENOMEM;
    uint32_t n = h->n < KNN_WINDOW ? h->n : KNN_WINDOW;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t j = h->items[(h->n - 1 - k) % KNN_HIST];
        if (knn_add(&a->knn_rows[j], id, 1.0f) || knn_add(&a->knn_rows[id], j, 1.0f)) return DR_ENOMEM;
    }
    h->items[h->n++ % KNN_HIST] = id;
    a->knn_n[id]++;
    a->knn_inv_sqrt[id] = 1.0f / sqrtf((float)a->knn_n[id]);
    return 0;
}

/* ---- expknn: experimental item-to-item variants (issue 15 study) ----------
 * Parameters from the environment, read once at the arm's set-up:
 *   DR_EXP_W      learn window: previous engagements a new one co-occurs with (20)
 *   DR_EXP_L      query length: the user's last engagements that score (20)
 *   DR_EXP_FWD    weight added to C[j][i], j engaged before i (1)
 *   DR_EXP_BWD    weight added to C[i][j] (1)
 *   DR_EXP_TAUP   learn: × exp(-k / TAUP), k = 0 for the previous engagement (0: flat)
 *   DR_EXP_TAUT   learn: × exp(-Δt / TAUT), Δt seconds between the two (0: off)
 *   DR_EXP_QPOW   query: × 1 / (1 + k)^QPOW (1)
 *   DR_EXP_QTAU   query: × exp(-k / QTAU) instead when > 0
 *   DR_EXP_QTIME  query: × exp(-(t - t_j) / QTIME) seconds (0: off)
 *   DR_EXP_ALPHA  query: C[j][c] / n_j^ALPHA (0)
 *   DR_EXP_BETA   / n_c^BETA (0.5)
 *   DR_EXP_SAT    0: counts, 1: sqrt(C), 2: log1p(C), 3: C^2/(C+SHRINK) (0)
 *   DR_EXP_SHRINK λ of SAT 3
 *   DR_EXP_DECAY  half-life of counts and n, in events of the stream (0: none)
 *   DR_EXP_POP    + POP × recent popularity of c (decayed count, half-life POPH)
 *   DR_EXP_POPH   (5000)
 *   DR_EXP_POPN   1: the popularity term is divided by the largest one (0) */
#define EXP_HIST 128

typedef struct exp_pair {
    float sim;
    uint32_t user;
} exp_pair_t;

typedef struct exp_conf {
    int W, L, sat, popn;
    float fwd, bwd, taup, qpow, qtau, alpha, beta, shrink, pop;
    double taut, qtime, decay, poph;
    float sk, kw, sknorm;
    float x2;             /* DR_EXP_X2: weight of the expansion (0: off) */
    int x2m;              /* DR_EXP_X2M: the best X2M candidates expand, each its row × its score */
    int x2a;              /* DR_EXP_X2A: 1 also weighs a seed's row by n_m^-alpha, as the first hop */
    float x2k;            /* DR_EXP_X2K: > 0 scales X2 by min(1, X2K / candidates the first hop scores) */
    int x2h;              /* DR_EXP_X2H: 1 skips the user's own last engaged items as seeds */
    exp_pair_t *xp;
    int skm, skk, skh;
    int nraw;             /* DR_EXP_NRAW: 1 normalises by n_c^beta over all time, not decayed */
    int knorm;            /* DR_EXP_KNORM: 1 divides the kNN scores by their largest before the popularity term */
    int clock;            /* DR_EXP_CLOCK: 0 decay by stream events, 1 by engagements learned */
} exp_conf_t;

typedef struct exp_user {
    uint32_t n;
    uint32_t items[EXP_HIST];
    int64_t ts[EXP_HIST];
} exp_user_t;

typedef struct exp_ulist {
    uint32_t *u;
    uint32_t n, room;
} exp_ulist_t;

typedef struct exp_state {
    exp_ulist_t *item_users; /* per row: users who engaged it, in order */
    float *sim, *sk;          /* per user; per row */
    uint32_t *touched;
    exp_pair_t *pairs;
    exp_conf_t c;
    exp_user_t **users;
    double *n;            /* per row: engagements × growing factor */
    uint32_t *nr;         /* per row: engagements */
    float *inv_beta;      /* per row: n^-beta */
    double *pc;           /* per row: popularity × 2^((e - pbase) / poph) */
    double pmax;          /* the largest pc */
    size_t base, pbase;   /* decay bases */
    size_t eng;           /* engagements learned so far */
} exp_state_t;

static double env_d(const char *name, double def) {
    const char *v = getenv(name);
    return v && *v ? atof(v) : def;
}

static void exp_conf_read(exp_conf_t *c) {
    c->W = (int)env_d("DR_EXP_W", 20);
    c->L = (int)env_d("DR_EXP_L", 20);
    if (c->W > EXP_HIST) c->W = EXP_HIST;
    if (c->L > EXP_HIST) c->L = EXP_HIST;
    c->fwd = (float)env_d("DR_EXP_FWD", 1);
    c->bwd = (float)env_d("DR_EXP_BWD", 1);
    c->taup = (float)env_d("DR_EXP_TAUP", 0);
    c->taut = env_d("DR_EXP_TAUT", 0);
    c->qpow = (float)env_d("DR_EXP_QPOW", 1);
    c->qtau = (float)env_d("DR_EXP_QTAU", 0);
    c->qtime = env_d("DR_EXP_QTIME", 0);
    c->alpha = (float)env_d("DR_EXP_ALPHA", 0);
    c->beta = (float)env_d("DR_EXP_BETA", 0.5);
    c->sat = (int)env_d("DR_EXP_SAT", 0);
    c->shrink = (float)env_d("DR_EXP_SHRINK", 1);
    c->decay = env_d("DR_EXP_DECAY", 0);
    c->pop = (float)env_d("DR_EXP_POP", 0);
    c->poph = env_d("DR_EXP_POPH", 5000);
    c->popn = (int)env_d("DR_EXP_POPN", 0);
    c->clock = (int)env_d("DR_EXP_CLOCK", 1);
    c->knorm = (int)env_d("DR_EXP_KNORM", 0);
    c->nraw = (int)env_d("DR_EXP_NRAW", 0);
    c->sk = (float)env_d("DR_EXP_SK", 0);
    c->x2 = (float)env_d("DR_EXP_X2", 0);
    c->x2m = (int)env_d("DR_EXP_X2M", 10);
    c->x2a = (int)env_d("DR_EXP_X2A", 0);
    c->x2h = (int)env_d("DR_EXP_X2H", 0);
    c->x2k = (float)env_d("DR_EXP_X2K", 0);
    fprintf(stderr, "expknn: x2=%g x2m=%d\n", c->x2, c->x2m);
    c->kw = (float)env_d("DR_EXP_KW", 1);
    c->sknorm = (float)env_d("DR_EXP_SKNORM", 0);
    c->skm = (int)env_d("DR_EXP_SKM", 100);
    c->skk = (int)env_d("DR_EXP_SKK", 50);
    c->skh = (int)env_d("DR_EXP_SKH", 50);
    if (c->skh > EXP_HIST) c->skh = EXP_HIST;
    fprintf(stderr, "expknn: sk=%g kw=%g sknorm=%g skm=%d skk=%d skh=%d knorm=%d\n", c->sk, c->kw, c->sknorm,
            c->skm, c->skk, c->skh, c->knorm);
    fprintf(stderr,
            "expknn: W=%d L=%d fwd=%g bwd=%g taup=%g taut=%g qpow=%g qtau=%g qtime=%g alpha=%g beta=%g "
            "sat=%d shrink=%g decay=%g pop=%g poph=%g popn=%d clock=%d\n",
            c->W, c->L, c->fwd, c->bwd, c->taup, c->taut, c->qpow, c->qtau, c->qtime, c->alpha, c->beta,
            c->sat, c->shrink, c->decay, c->pop, c->poph, c->popn, c->clock);
}

static int exp_init(arm_run_t *a) {
    exp_state_t *x = a->x = calloc(1, sizeof(*x));
    if (!x) return DR_ENOMEM;
    exp_conf_read(&x->c);
    x->users = calloc(a->p->n_users + 1, sizeof(exp_user_t *));
    x->n = calloc(a->p->n_items + 1, sizeof(double));
    x->nr = calloc(a->p->n_items + 1, sizeof(uint32_t));
    if (!x->nr) return DR_ENOMEM;
    x->inv_beta = calloc(a->p->n_items + 1, sizeof(float));
    x->pc = calloc(a->p->n_items + 1, sizeof(double));
    a->knn_rows = calloc(a->p->n_items + 1, sizeof(knn_row_t));
    if (x->c.x2 != 0) {
        x->c.xp = malloc((a->p->n_items + 1) * sizeof(exp_pair_t));
        if (!x->sk) x->sk = calloc(a->p->n_items + 1, sizeof(float));
        if (!x->c.xp || !x->sk) return DR_ENOMEM;
    }
    if (x->c.sk != 0) {
        x->item_users = calloc(a->p->n_items + 1, sizeof(exp_ulist_t));
        x->sim = calloc(a->p->n_users + 1, sizeof(float));
        if (!x->sk) x->sk = calloc(a->p->n_items + 1, sizeof(float));
        size_t cap = (size_t)x->c.L * (size_t)x->c.skm + 1;
        x->touched = malloc(cap * sizeof(uint32_t));
        x->pairs = malloc(cap * sizeof(exp_pair_t));
        if (!x->item_users || !x->sim || !x->sk || !x->touched || !x->pairs) return DR_ENOMEM;
    }
    if (!x->users || !x->n || !x->inv_beta || !x->pc || !a->knn_rows) return DR_ENOMEM;
    return 0;
}

static void exp_free(arm_run_t *a) {
    exp_state_t *x = a->x;
    if (!x) return;
    if (x->users)
        for (uint32_t u = 0; u < a->p->n_users; u++) free(x->users[u]);
    free(x->nr);
    free(x->users); free(x->n); free(x->inv_beta); free(x->pc);
    if (x->item_users)
        for (uint32_t r = 0; r < a->p->n_items; r++) free(x->item_users[r].u);
    free(x->c.xp);
    free(x->item_users); free(x->sim); free(x->sk); free(x->touched); free(x->pairs);
    free(x);
    a->x = NULL;
}

/* the counts' growing factor 2^((e - base) / decay) (1 without decay);
 * rescales everything every 40 half-lives */
static double exp_gain(arm_run_t *a, size_t e) {
    exp_state_t *x = a->x;
    if (x->c.clock) e = x->eng;
    if (x->c.decay <= 0) return 1.0;
    if ((double)(e - x->base) >= 40.0 * x->c.decay) {
        double f = exp2(-(double)(e - x->base) / x->c.decay);
        for (size_t r = 0; r < a->n_avail; r++) {
            knn_row_t *row = &a->knn_rows[r];
            for (uint32_t i = 0; i < row->n; i++) row->vals[i] = (float)(row->vals[i] * f);
            x->n[r] *= f;
            if (!x->c.nraw) x->inv_beta[r] = x->n[r] > 0 ? powf((float)x->n[r], -x->c.beta) : 0.0f;
        }
        x->base = e;
    }
    return exp2((double)(e - x->base) / x->c.decay);
}

static double exp_popgain(arm_run_t *a, size_t e) {
    exp_state_t *x = a->x;
    if (x->c.clock) e = x->eng;
    if ((double)(e - x->pbase) >= 500.0 * x->c.poph) {
        double f = exp2(-(double)(e - x->pbase) / x->c.poph);
        for (size_t r = 0; r < a->n_avail; r++) x->pc[r] *= f;
        x->pmax *= f;
        x->pbase = e;
    }
    return exp2((double)(e - x->pbase) / x->c.poph);
}

static inline float exp_sat(const exp_conf_t *c, float v) {
    switch (c->sat) {
    case 1: return sqrtf(v);
    case 2: return log1pf(v);
    case 3: return v * v / (v + c->shrink);
    default: return v;
    }
}

/* expknn's session-kNN part (DR_EXP_SK > 0): users who engaged the user's
 * last L items recently are its neighbours. For each of the last L items j
 * (query weight w_k as above), each of the last SKM users v who engaged j
 * gains sim_v += w_k; sim_v /= n_v^SKNORM (n_v: v's engagements); the SKK
 * best neighbours each add sim_v to each of their last SKH engaged items.
 * The result, divided by its largest, is added × SK to the item-kNN scores
 * (themselves divided by their largest, times KW). */
static void exp_select(exp_pair_t *v, size_t n, size_t k) { /* the k best first, unordered */
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        float piv = v[lo + (hi - lo) / 2].sim;
        size_t i = lo, j = hi - 1;
        while (i <= j) {
            while (v[i].sim > piv) i++;
            while (v[j].sim < piv) j--;
            if (i <= j) {
                exp_pair_t t = v[i]; v[i] = v[j]; v[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j) hi = j + 1;
        else if (k >= i) lo = i;
        else return;
    }
}

static void exp_sknn(arm_run_t *a, size_t e, float *out) {
    exp_state_t *x = a->x;
    const exp_conf_t *c = &x->c;
    uint32_t ud = a->p->user[e];
    const exp_user_t *h = x->users[ud];
    memset(out, 0, a->n_avail * sizeof(float));
    uint32_t n = h ? (h->n < (uint32_t)c->L ? h->n : (uint32_t)c->L) : 0;
    size_t nt = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t j = h->items[(h->n - 1 - k) % EXP_HIST];
        float wk = c->qtau > 0 ? expf(-(float)k / c->qtau)
                   : (c->qpow == 1.0f ? 1.0f / (float)(1 + k) : powf((float)(1 + k), -c->qpow));
        const exp_ulist_t *ul = &x->item_users[j];
        uint32_t from = ul->n > (uint32_t)c->skm ? ul->n - (uint32_t)c->skm : 0;
        for (uint32_t i = from; i < ul->n; i++) {
            uint32_t v = ul->u[i];
            if (v == ud) continue;
            if (x->sim[v] == 0) x->touched[nt++] = v;
            x->sim[v] += wk;
        }
    }
    for (size_t i = 0; i < nt; i++) {
        uint32_t v = x->touched[i];
        float s = x->sim[v];
        if (c->sknorm != 0) s *= powf((float)x->users[v]->n, -c->sknorm);
        x->pairs[i] = (exp_pair_t){s, v};
        x->sim[v] = 0;
    }
    size_t kk = nt < (size_t)c->skk ? nt : (size_t)c->skk;
    if (nt > kk) exp_select(x->pairs, nt, kk);
    for (size_t i = 0; i < kk; i++) {
        const exp_user_t *vh = x->users[x->pairs[i].user];
        uint32_t m = vh->n < (uint32_t)c->skh ? vh->n : (uint32_t)c->skh;
        for (uint32_t q = 0; q < m; q++) out[vh->items[(vh->n - 1 - q) % EXP_HIST]] += x->pairs[i].sim;
    }
}

static void exp_scores(arm_run_t *a, size_t e) {
    exp_state_t *x = a->x;
    const exp_conf_t *c = &x->c;
    float *sc = a->scores;
    memset(sc, 0, a->n_avail * sizeof(float));
    uint32_t ud = a->p->user[e];
    const exp_user_t *h = x->users[ud];
    uint32_t n = h ? (h->n < (uint32_t)c->L ? h->n : (uint32_t)c->L) : 0;
    double g = exp_gain(a, e);
    float cs = (float)(1.0 / g); /* counts back to decayed units */
    int64_t now = a->in->events[e].timestamp_ms;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t slot = (h->n - 1 - k) % EXP_HIST;
        uint32_t j = h->items[slot];
        const knn_row_t *r = &a->knn_rows[j];
        float wk = c->qtau > 0 ? expf(-(float)k / c->qtau)
                   : (c->qpow == 1.0f ? 1.0f / (float)(1 + k) : powf((float)(1 + k), -c->qpow));
        if (c->qtime > 0) wk *= (float)exp(-(double)(now - h->ts[slot]) / 1000.0 / c->qtime);
        if (c->alpha != 0 && x->n[j] > 0) wk *= powf((float)(x->n[j] / g), -c->alpha);
        if (c->sat == 0) {
            for (uint32_t i = 0; i < r->n; i++) sc[r->keys[i]] += r->vals[i] * wk;
        } else {
            for (uint32_t i = 0; i < r->n; i++) sc[r->keys[i]] += exp_sat(c, r->vals[i] * cs) * wk;
        }
    }
    const float *inv = x->inv_beta;
    for (size_t r = 0; r < a->n_avail; r++) sc[r] *= inv[r];
    if (c->x2 != 0 && n > 0) {
        exp_pair_t *xp = c->xp;
        size_t m = 0;
        float *saved = NULL;
        uint32_t nh = h->n < EXP_HIST ? h->n : EXP_HIST;
        if (c->x2h && (saved = malloc(nh * sizeof(float))))
            for (uint32_t k = 0; k < nh; k++) {
                uint32_t j = h->items[(h->n - 1 - k) % EXP_HIST];
                saved[k] = sc[j];
                sc[j] = 0;
            }
        for (size_t r = 0; r < a->n_avail; r++)
            if (sc[r] > 0) xp[m++] = (exp_pair_t){sc[r], (uint32_t)r};
        if (saved) { /* restored newest last: a duplicate cannot be, items are first engagements */
            for (uint32_t k = nh; k-- > 0;) sc[h->items[(h->n - 1 - k) % EXP_HIST]] = saved[k];
            free(saved);
        }
        size_t top = m < (size_t)c->x2m ? m : (size_t)c->x2m;
        if (m > top) exp_select(xp, m, top);
        float *s2 = x->sk;
        memset(s2, 0, a->n_avail * sizeof(float));
        for (size_t t = 0; t < top; t++) {
            const knn_row_t *r = &a->knn_rows[xp[t].user];
            float wk = xp[t].sim;
            uint32_t mr = xp[t].user;
            if (c->x2a && c->alpha != 0) {
                double nm = c->nraw ? (double)x->nr[mr] : x->n[mr] / g;
                if (nm > 0) wk *= powf((float)nm, -c->alpha);
            }
            for (uint32_t i = 0; i < r->n; i++) s2[r->keys[i]] += r->vals[i] * wk;
        }
        float mx1 = 0, mx2 = 0;
        for (size_t r = 0; r < a->n_avail; r++) {
            s2[r] *= inv[r];
            mx1 = sc[r] > mx1 ? sc[r] : mx1;
            mx2 = s2[r] > mx2 ? s2[r] : mx2;
        }
        float x2 = c->x2;
        if (c->x2k > 0 && (float)m > c->x2k) x2 *= c->x2k / (float)m;
        float f1 = mx1 > 0 ? 1.0f / mx1 : 0, f2 = mx2 > 0 ? x2 / mx2 : 0;
        for (size_t r = 0; r < a->n_avail; r++) sc[r] = sc[r] * f1 + s2[r] * f2;
    }
    if (c->knorm || c->sk != 0) {
        float mx = 0;
        for (size_t r = 0; r < a->n_avail; r++) mx = sc[r] > mx ? sc[r] : mx;
        float f = mx > 0 ? c->kw / mx : 0;
        for (size_t r = 0; r < a->n_avail; r++) sc[r] *= f;
    }
    if (c->sk != 0) {
        exp_sknn(a, e, x->sk);
        float mx = 0;
        for (size_t r = 0; r < a->n_avail; r++) mx = x->sk[r] > mx ? x->sk[r] : mx;
        float f = mx > 0 ? c->sk / mx : 0;
        for (size_t r = 0; r < a->n_avail; r++) sc[r] += f * x->sk[r];
    }
    if (c->pop != 0 && x->pmax > 0) {
        float pw = c->popn ? (float)(c->pop / x->pmax) : (float)(c->pop / exp_popgain(a, e));
        for (size_t r = 0; r < a->n_avail; r++) sc[r] += pw * (float)x->pc[r];
    }
}

/* an engagement of user ud with row id at event e */
static int exp_learn(arm_run_t *a, size_t e, uint32_t ud, uint32_t id) {
    exp_state_t *x = a->x;
    const exp_conf_t *c = &x->c;
    exp_user_t *h = x->users[ud];
    if (!h && !(h = x->users[ud] = calloc(1, sizeof(*h)))) return DR_ENOMEM;
    double g = exp_gain(a, e);
    int64_t now = a->in->events[e].timestamp_ms;
    uint32_t n = h->n < (uint32_t)c->W ? h->n : (uint32_t)c->W;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t slot = (h->n - 1 - k) % EXP_HIST;
        uint32_t j = h->items[slot];
        double w = g;
        if (c->taup > 0) w *= exp(-(double)k / c->taup);
        if (c->taut > 0) w *= exp(-(double)(now - h->ts[slot]) / 1000.0 / c->taut);
        if (c->fwd != 0 && knn_add(&a->knn_rows[j], id, (float)(w * c->fwd))) return DR_ENOMEM;
        if (c->bwd != 0 && knn_add(&a->knn_rows[id], j, (float)(w * c->bwd))) return DR_ENOMEM;
    }
    x->eng++;
    if (x->item_users) {
        exp_ulist_t *ul = &x->item_users[id];
        if (ul->n == ul->room) {
            uint32_t room = ul->room ? ul->room * 2 : 4;
            uint32_t *u = realloc(ul->u, room * sizeof(uint32_t));
            if (!u) return DR_ENOMEM;
            ul->u = u;
            ul->room = room;
        }
        ul->u[ul->n++] = ud;
    }
    uint32_t s = h->n++ % EXP_HIST;
    h->items[s] = id;
    h->ts[s] = now;
    x->n[id] += g;
    x->nr[id]++;
    float nb = c->nraw ? (float)x->nr[id] : (float)x->n[id];
    x->inv_beta[id] = c->beta == 0.5f ? 1.0f / sqrtf(nb) : powf(nb, -c->beta);
    if (c->pop != 0) {
        x->pc[id] += exp_popgain(a, e);
        if (x->pc[id] > x->pmax) x->pmax = x->pc[id];
    }
    return 0;
}

/* recentpop keeps pop_count[i] = sum of 2^((t - base) / H) over i's
 * engagements t, so an engagement is one addition and the decay is a
 * common factor; every 64 half-lives the counts are rescaled (O(items),
 * rare) so that they stay far from overflow. */
static double recent_weight(arm_run_t *a, size_t e) {
    if ((double)(e - a->decay_base) >= 64.0 * a->halflife) {
        double f = exp2(-(double)(e - a->decay_base) / a->halflife);
        for (uint32_t d = 0; d < a->p->n_items; d++) {
            a->pop_count[d] *= f;
            if (a->pop_count[d] < 1e-200) a->pop_count[d] = 0; /* no subnormals */
        }
        a->decay_base = e;
    }
    return exp2((double)(e - a->decay_base) / a->halflife);
}

/* Fills a->scores[0..n_avail) with the arm's score of each candidate row
 * before event e is learned from. */
static void baseline_scores(arm_run_t *a, size_t e) {
    if (a->kind == DR_ARM_ITEMKNN) { knn_scores(a, a->p->user[e]); return; }
    if (a->kind == DR_ARM_EXPKNN) { exp_scores(a, e); return; }
    double scale = a->kind == DR_ARM_RECENTPOP ? 1.0 / recent_weight(a, e) : 1.0;
    for (size_t j = 0; j < a->n_avail; j++) a->scores[j] = (float)(a->pop_count[a->avail[j]] * scale);
}

/* The rating predicted before the event is learned from: popularity's item
 * mean, or bias's μ + b_u + b_i; the global mean so far when nothing is
 * known (the middle of the ratings' range before the first rating). */
static double baseline_predict(const arm_run_t *a, size_t e) {
    double mu = a->mu_n ? a->mu_sum / (double)a->mu_n : (a->rating_min + a->rating_max) / 2.0;
    if (!isfinite(mu)) mu = a->in->events[e].value;
    uint32_t id = a->p->item[e];
    if (a->kind == DR_ARM_BIAS) return mu + a->b_user[a->p->user[e]] + a->b_item[id];
    if (a->pop_count[id] > 0) return a->rating_sum[id] / a->pop_count[id];
    return a->mu_n ? mu : a->in->events[e].value;
}

/* One event for a baseline arm (popularity, itemknn, recentpop, bias):
 * rank or predict as the model arms do, then count or learn it. */
static int pop_event(arm_run_t *a, size_t e, wstats_t *w, uint64_t *ranked_count) {
    const dr_event_t *ev = &a->in->events[e];
    uint32_t id = a->p->item[e], ud = a->p->user[e], pos = a->user_n[ud];
    const dr_learner_conf_t *lc = a->conf->learner;
    /* ranked: a user's first positive event with an item (a like or a
     * dwell after the click repeats it, and its item was just learned) */
    bool ranked = lc->mode == DR_MODE_IMPLICIT && is_positive(lc, ev) && a->p->first_engaged[e];
    double rank = INFINITY;
    if (ranked && a->row_of[id] >= 0) {
        baseline_scores(a, e);
        rank = rank_in(a, e, a->scores, a->n_avail, a->row_of[id], a->row_of);
        if (!a->p->first_user[e] && a->conf->coverage_every > 0 &&
            (*ranked_count)++ % (uint64_t)a->conf->coverage_every == 0)
            cover_top_k(a, e, a->scores, a->n_avail, a->row_of, a->avail);
    }
    if (ranked && !a->p->first_user[e]) {
        record_rank(a, w, rank);
        record_splice_rank(a, e, pos, rank);
    }
    record_cold(a, e, rank, ranked);
    count_event(a, e);
    if (lc->mode == DR_MODE_RATING && ev->type == DR_EV_RATE) {
        double raw = baseline_predict(a, e);
        double pred = fmin(fmax(raw, a->rating_min), a->rating_max);
        double d = pred - ev->value;
        add_error(w, d);
        add_error(&a->total, d);
        record_splice_error(a, e, pos, d);
        if (a->kind == DR_ARM_BIAS) {
            /* SGD on (r - μ - b_u - b_i)^2 / 2 with L2, the unclipped prediction */
            double g = ev->value - raw, bu = a->b_user[ud], bi = a->b_item[id];
            a->b_user[ud] = bu + BIAS_LR * (g - BIAS_REG * bu);
            a->b_item[id] = bi + BIAS_LR * (g - BIAS_REG * bi);
        }
        a->rating_sum[id] += ev->value;
        a->mu_sum += ev->value;
        a->mu_n++;
    }
    if (a->row_of[id] < 0) {
        a->row_of[id] = (int64_t)a->n_avail;
        a->avail[a->n_avail++] = id;
    }
    if (a->kind == DR_ARM_ITEMKNN) { /* keyed by candidate row: scores index them directly */
        if (is_positive(lc, ev) && a->p->first_engaged[e] && knn_learn(a, ud, (uint32_t)a->row_of[id]))
            return DR_ENOMEM;
    } else if (a->kind == DR_ARM_EXPKNN) {
        if (is_positive(lc, ev) && a->p->first_engaged[e] && exp_learn(a, e, ud, (uint32_t)a->row_of[id]))
            return DR_ENOMEM;
    } else if (is_positive(lc, ev) || ev->type == DR_EV_RATE) {
        a->pop_count[id] += a->kind == DR_ARM_RECENTPOP ? recent_weight(a, e) : 1.0;
    }
    return 0;
}

/* ---- running an arm -------------------------------------------------------- */

static int arm_alloc(arm_run_t *a) {
    const prep_t *p = a->p;
    size_t n_win = (p->n + (size_t)a->conf->window - 1) / (size_t)a->conf->window + 1;
    a->win = calloc(n_win, sizeof(wstats_t));
    a->n_win = n_win;
    a->covered = calloc(p->n_items + 1, 1);
    a->row_of = malloc((p->n_items + 1) * sizeof(int64_t));
    a->avail = malloc((p->n_items + 1) * sizeof(int64_t));
    if (a->avail) memset(a->avail, 0xff, (p->n_items + 1) * sizeof(int64_t)); /* -1: no item */
    a->scores = malloc((p->n_items + 1) * sizeof(float));
    a->pop_count = calloc(p->n_items + 1, sizeof(double));
    a->rating_sum = calloc(p->n_items + 1, sizeof(double));
    a->auc_pred = malloc((p->n + 1) * sizeof(float));
    a->auc_label = malloc(p->n + 1);
    a->user_n = calloc(p->n_users + 1, sizeof(uint32_t));
    a->item_n = calloc(p->n_items + 1, sizeof(uint32_t));
    if (!a->user_n || !a->item_n) return DR_ENOMEM;
    if (a->kind == DR_ARM_FULL) a->drift_list = malloc(MAX_DRIFTS_REPORTED * sizeof(drift_rec_t));
    if (p->splice_at) {
        a->sp.first_cut = malloc((p->n_users + 1) * sizeof(uint32_t));
        a->sp.cut_before = calloc(p->n_users + 1, 1);
        if (!a->sp.first_cut || !a->sp.cut_before) return DR_ENOMEM;
        for (uint32_t u = 0; u < p->n_users; u++) a->sp.first_cut[u] = NO_SPLICE;
    }
    if (!a->win || !a->covered || !a->row_of || !a->avail || !a->scores || !a->pop_count ||
        !a->rating_sum || !a->auc_pred || !a->auc_label)
        return DR_ENOMEM;
    for (uint32_t d = 0; d < p->n_items; d++) a->row_of[d] = -1;
    if (has_model(a->kind)) {
        int err = arm_model_init(a);
        if (err || a->kind != DR_ARM_FULL || env_d("DR_EXP_BLEND", 0) <= 0) return err;
        a->blend = (float)env_d("DR_EXP_BLEND", 0);
        a->blend_tmp = malloc((p->n_items + 1) * sizeof(float));
        return !a->blend_tmp || exp_init(a) ? DR_ENOMEM : 0;
    }
    if (a->kind == DR_ARM_ITEMKNN) {
        a->knn_rows = calloc(p->n_items + 1, sizeof(knn_row_t));
        a->knn_users = calloc(p->n_users + 1, sizeof(knn_user_t *));
        a->knn_inv_sqrt = calloc(p->n_items + 1, sizeof(float));
        a->knn_n = calloc(p->n_items + 1, sizeof(uint32_t));
        if (!a->knn_rows || !a->knn_users || !a->knn_inv_sqrt || !a->knn_n) return DR_ENOMEM;
    }
    if (a->kind == DR_ARM_EXPKNN && exp_init(a)) return DR_ENOMEM;
    if (a->kind == DR_ARM_BIAS) {
        a->b_user = calloc(p->n_users + 1, sizeof(double));
        a->b_item = calloc(p->n_items + 1, sizeof(double));
        if (!a->b_user || !a->b_item) return DR_ENOMEM;
    }
    a->halflife = a->conf->recentpop_halflife > 0 ? a->conf->recentpop_halflife : DR_REPLAY_RECENTPOP_HALFLIFE;
    for (uint32_t d = 0; d < p->n_items; d++)
        if (p->announced[d]) { a->row_of[d] = (int64_t)a->n_avail; a->avail[a->n_avail++] = d; }
    return 0;
}

static void arm_free_work(arm_run_t *a) {
    if (a->users)
        for (uint32_t u = 0; u < a->p->n_users; u++) dr_user_free(a->users[u]);
    free(a->users);
    dr_model_free(a->m);
    free(a->row_of); free(a->avail); free(a->scores); free(a->uvec); free(a->blend_tmp);
    free(a->pop_count); free(a->rating_sum); free(a->user_n); free(a->item_n);
    if (a->knn_rows)
        for (uint32_t r = 0; r < a->p->n_items; r++) {
            free(a->knn_rows[r].slot); free(a->knn_rows[r].keys); free(a->knn_rows[r].vals);
        }
    if (a->knn_users)
        for (uint32_t u = 0; u < a->p->n_users; u++) free(a->knn_users[u]);
    exp_free(a);
    free(a->knn_rows); free(a->knn_users); free(a->knn_inv_sqrt); free(a->knn_n);
    free(a->cover_saved); free(a->cover_best);
    a->cover_saved = NULL; a->cover_best = NULL;
    free(a->b_user); free(a->b_item);
    a->knn_rows = NULL; a->knn_users = NULL; a->knn_inv_sqrt = NULL; a->knn_n = NULL;
    a->b_user = a->b_item = NULL;
    a->user_n = a->item_n = NULL;
    a->users = NULL; a->m = NULL; a->row_of = NULL; a->avail = NULL; a->scores = NULL;
    a->uvec = NULL; a->pop_count = NULL; a->rating_sum = NULL;
}

static void *arm_main(void *arg) {
    arm_run_t *a = arg;
    double t0 = dr_mono_s();
    a->rc = arm_alloc(a);
    uint64_t ranked = 0;
    size_t W = (size_t)a->conf->window;
    double win_start = dr_mono_s();
    for (size_t e = 0; a->rc == 0 && e < a->p->n; e++) {
        wstats_t *w = &a->win[e / W];
        a->rc = has_model(a->kind) ? model_event(a, e, w, &ranked) : pop_event(a, e, w, &ranked);
        if (e % W == W - 1 || e + 1 == a->p->n) {
            double now = dr_mono_s();
            w->seconds = now - win_start;
            win_start = now;
        }
    }
    if (a->rc && !a->err[0]) snprintf(a->err, sizeof(a->err), "arm %s: %s", arm_names[a->kind], dr_strerror(a->rc));
    a->seconds = dr_mono_s() - t0;
    if (a->m) dr_model_pop_fade(a->m, &a->pop_gamma, &a->pop_tau);
    arm_free_work(a);
    return NULL;
}

/* ---- the report ------------------------------------------------------------ */

typedef struct auc_pair {
    float pred;
    uint8_t label;
} auc_pair_t;

static int cmp_pred(const void *x, const void *y) {
    float a = ((const auc_pair_t *)x)->pred, b = ((const auc_pair_t *)y)->pred;
    return (a > b) - (a < b);
}

/* Area under the ROC curve by the rank-sum, ties averaged; NAN with one class. */
static double auc_of(const arm_run_t *a) {
    uint64_t pos = a->positives, neg = a->labelled - a->positives;
    if (pos == 0 || neg == 0) return NAN;
    auc_pair_t *v = malloc(a->labelled * sizeof(*v));
    if (!v) return NAN;
    for (uint64_t i = 0; i < a->labelled; i++) v[i] = (auc_pair_t){a->auc_pred[i], a->auc_label[i]};
    qsort(v, a->labelled, sizeof(*v), cmp_pred);
    double rank_sum = 0;
    for (uint64_t i = 0; i < a->labelled;) {
        uint64_t j = i;
        while (j < a->labelled && v[j].pred == v[i].pred) j++;
        double mid = (double)(i + j + 1) / 2.0; /* ranks are 1-based */
        for (uint64_t t = i; t < j; t++) rank_sum += v[t].label ? mid : 0;
        i = j;
    }
    free(v);
    return (rank_sum - (double)pos * (double)(pos + 1) / 2.0) / ((double)pos * (double)neg);
}

static void metric_names(int k, char *hr, char *ndcg, size_t n) {
    snprintf(hr, n, "hr@%d", k);
    snprintf(ndcg, n, "ndcg@%d", k);
}

static double ratio(double num, uint64_t den) { return den ? num / (double)den : NAN; }

static void write_cold(dr_json_t *j, const arm_run_t *a) {
    const cold_stats_t *c = &a->cold;
    char name[64];
    dr_json_object_begin(j, "cold_start");
    for (int b = 0; b < COLD_USER_BUCKETS; b++) {
        snprintf(name, sizeof(name), "users_first_%d_events", cold_user_n[b]);
        dr_json_object_begin(j, name);
        snprintf(name, sizeof(name), "hr@%d", a->conf->k);
        dr_json_num(j, name, ratio((double)c->user_hits[b], c->user_ranked[b]));
        dr_json_int(j, "ranked_events", (int64_t)c->user_ranked[b]);
        dr_json_object_end(j);
    }
    snprintf(name, sizeof(name), "items_first_%d_interactions", COLD_ITEM_EVENTS);
    dr_json_object_begin(j, name);
    snprintf(name, sizeof(name), "hr@%d", a->conf->k);
    dr_json_num(j, name, ratio((double)c->item_hits, c->item_ranked));
    dr_json_int(j, "ranked_events", (int64_t)c->item_ranked);
    dr_json_object_end(j);
    dr_json_int(j, "new_items", (int64_t)c->new_items);
    dr_json_int(j, "new_items_listed_before_first_interaction", (int64_t)c->listed_before_first);
    dr_json_object_end(j);
}

static void write_arm_metrics(dr_json_t *j, const arm_run_t *a, const wstats_t *s, bool full) {
    char hr[32], ndcg[32];
    metric_names(a->conf->k, hr, ndcg, sizeof(hr));
    bool rating = a->conf->learner->mode == DR_MODE_RATING;
    dr_json_num(j, hr, rating ? NAN : ratio((double)s->hits, s->ranked));
    dr_json_num(j, ndcg, rating ? NAN : ratio(s->ndcg, s->ranked));
    if (!full) return;
    dr_json_num(j, "mrr", rating ? NAN : ratio(s->rr, s->ranked));
    dr_json_num(j, "mae", rating ? ratio(s->abs_err, s->rated) : NAN);
    dr_json_num(j, "rmse", rating ? sqrt(ratio(s->sq_err, s->rated)) : NAN);
    uint64_t covered = 0;
    for (uint32_t d = 0; d < a->p->n_items; d++) covered += a->covered[d];
    dr_json_num(j, "coverage", rating ? NAN : ratio((double)covered, a->p->n_items));
    double auc = rating ? NAN : auc_of(a);
    dr_json_num(j, "auc", auc);
    dr_json_num(j, "logloss", isfinite(auc) ? ratio(a->logloss, a->labelled) : NAN);
    dr_json_int(j, "ranked_events", (int64_t)s->ranked);
    dr_json_int(j, "rated_events", (int64_t)s->rated);
    dr_json_int(j, "drifts", (int64_t)a->drifts);
    dr_json_num(j, "seconds", a->seconds);
    if (has_model(a->kind)) {
        dr_json_object_begin(j, "population_prior");
        dr_json_num(j, "gamma", a->pop_gamma);
        dr_json_num(j, "tau", a->pop_tau);
        dr_json_object_end(j);
    }
    if (!rating) write_cold(j, a);
}

/* ---- spliced users in the report ------------------------------------------ */

static void write_splice_bucket(dr_json_t *j, const arm_run_t *a, const char *key, const wstats_t *s) {
    char hr[32], ndcg[32];
    metric_names(a->conf->k, hr, ndcg, sizeof(hr));
    dr_json_object_begin(j, key);
    if (a->conf->learner->mode == DR_MODE_RATING) {
        dr_json_num(j, "mae", ratio(s->abs_err, s->rated));
        dr_json_num(j, "rmse", sqrt(ratio(s->sq_err, s->rated)));
        dr_json_int(j, "rated_events", (int64_t)s->rated);
    } else {
        dr_json_num(j, hr, ratio((double)s->hits, s->ranked));
        dr_json_num(j, ndcg, ratio(s->ndcg, s->ranked));
        dr_json_int(j, "ranked_events", (int64_t)s->ranked);
    }
    dr_json_object_end(j);
}

typedef struct splice_detection {
    uint32_t users, detected, within[SPLICE_WINDOWS], cut_before;
    double delay_mean, delay_median, delay_p90;   /* NAN when nothing was detected */
} splice_detection_t;

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* Delay of a detection: the composite's events from its splice point up to
 * and including the one whose cut came first (1: the first spliced event). */
static void splice_detection(const arm_run_t *a, splice_detection_t *d) {
    const prep_t *p = a->p;
    memset(d, 0, sizeof(*d));
    d->delay_mean = d->delay_median = d->delay_p90 = NAN;
    uint32_t *delays = malloc((size_t)p->n_spliced * sizeof(uint32_t) + 4);
    double sum = 0;
    for (uint32_t u = 0; u < p->n_users; u++) {
        if (p->splice_at[u] == NO_SPLICE) continue;
        d->users++;
        d->cut_before += a->sp.cut_before ? a->sp.cut_before[u] : 0;
        if (!a->sp.first_cut || a->sp.first_cut[u] == NO_SPLICE) continue;
        uint32_t delay = a->sp.first_cut[u] - p->splice_at[u] + 1;
        if (delays) delays[d->detected] = delay;
        d->detected++;
        sum += delay;
        for (int w = 0; w < SPLICE_WINDOWS; w++) d->within[w] += delay <= (uint32_t)splice_window_n[w];
    }
    if (d->detected && delays) {
        qsort(delays, d->detected, sizeof(uint32_t), cmp_u32);
        d->delay_mean = sum / d->detected;
        d->delay_median = d->detected % 2 ? delays[d->detected / 2]
                                          : (delays[d->detected / 2 - 1] + delays[d->detected / 2]) / 2.0;
        d->delay_p90 = delays[(size_t)((d->detected - 1) * 0.9 + 0.5)];
    }
    free(delays);
}

static void write_splice_arm(dr_json_t *j, const arm_run_t *a) {
    char name[64];
    dr_json_object_begin(j, "splice");
    dr_json_int(j, "users", a->p->n_spliced);
    write_splice_bucket(j, a, "before_splice", &a->sp.before);
    write_splice_bucket(j, a, "after_splice", &a->sp.after);
    for (int w = 0; w < SPLICE_WINDOWS; w++) {
        snprintf(name, sizeof(name), "after_splice_first_%d_events", splice_window_n[w]);
        write_splice_bucket(j, a, name, &a->sp.first[w]);
    }
    splice_detection_t d;
    splice_detection(a, &d);
    dr_json_object_begin(j, "detection");
    dr_json_bool(j, "drift_handling", a->drift_on);
    dr_json_num(j, "detected_share", ratio(d.detected, d.users));
    for (int w = 0; w < SPLICE_WINDOWS; w++) {
        snprintf(name, sizeof(name), "detected_within_%d_events_share", splice_window_n[w]);
        dr_json_num(j, name, ratio(d.within[w], d.users));
    }
    dr_json_int(j, "detected_users", d.detected);
    dr_json_num(j, "delay_events_mean", d.delay_mean);
    dr_json_num(j, "delay_events_median", d.delay_median);
    dr_json_num(j, "delay_events_p90", d.delay_p90);
    dr_json_int(j, "cuts_after_splice", (int64_t)a->sp.cuts_after);
    dr_json_int(j, "cuts_before_splice", (int64_t)a->sp.cuts_before);
    dr_json_num(j, "users_with_cut_before_splice_share", ratio(d.cut_before, d.users));
    dr_json_object_end(j);
    dr_json_object_end(j);
}

/* The ground truth: how the users were spliced. */
static void write_splice_truth(dr_json_t *j, const dr_splice_t *s) {
    dr_json_object_begin(j, "splice");
    dr_json_bool(j, "control", s->opts.control);
    dr_json_int(j, "seed", (int64_t)s->opts.seed);
    dr_json_int(j, "min_events", s->opts.min_events);
    dr_json_int(j, "composite_users", (int64_t)s->n);
    dr_json_int(j, "kept_users", (int64_t)s->kept_users);
    dr_json_int(j, "shifted_events", (int64_t)s->shifted_events);
    dr_json_int(j, "max_shift_ms", s->max_shift_ms);
    dr_json_array_begin(j, "users");
    for (size_t i = 0; i < s->n && i < MAX_SPLICE_USERS_REPORTED; i++) {
        const dr_splice_user_t *u = &s->users[i];
        dr_json_object_begin(j, NULL);
        dr_json_int(j, "user_id", u->user_id);
        dr_json_int(j, "first_user", u->first_user);
        dr_json_int(j, "second_user", u->second_user);
        dr_json_int(j, "splice_index", u->splice_index);
        dr_json_int(j, "events", u->events);
        dr_json_int(j, "splice_timestamp_ms", u->splice_ts);
        dr_json_int(j, "shift_ms", u->shift_ms);
        dr_json_object_end(j);
    }
    dr_json_array_end(j);
    dr_json_object_end(j);
}

static void write_windows(dr_json_t *j, const arm_run_t *arms, int n_arms, const dr_replay_input_t *in,
                          int window) {
    dr_json_array_begin(j, "windows");
    for (size_t w = 0; w * (size_t)window < in->n; w++) {
        size_t start = w * (size_t)window, end = start + (size_t)window;
        if (end > in->n) end = in->n;
        double secs = 0;
        for (int i = 0; i < n_arms; i++) secs = fmax(secs, arms[i].win[w].seconds);
        dr_json_object_begin(j, NULL);
        dr_json_int(j, "start_event", (int64_t)start);
        dr_json_int(j, "end_event", (int64_t)end);
        dr_json_int(j, "start_ms", in->events[start].timestamp_ms);
        dr_json_int(j, "end_ms", in->events[end - 1].timestamp_ms);
        dr_json_num(j, "events_per_second", secs > 0 ? (double)(end - start) / secs : NAN);
        dr_json_object_begin(j, "arms");
        for (int i = 0; i < n_arms; i++) {
            dr_json_object_begin(j, arm_names[arms[i].kind]);
            write_arm_metrics(j, &arms[i], &arms[i].win[w], false);
            if (arms[i].conf->learner->mode == DR_MODE_RATING) {
                dr_json_num(j, "mae", ratio(arms[i].win[w].abs_err, arms[i].win[w].rated));
                dr_json_num(j, "rmse", sqrt(ratio(arms[i].win[w].sq_err, arms[i].win[w].rated)));
            }
            dr_json_object_end(j);
        }
        dr_json_object_end(j);
        dr_json_object_end(j);
    }
    dr_json_array_end(j);
}

/* The full arm against the best baseline of the mode (implicit: popularity,
 * itemknn, recentpop by hr@K; rating: popularity, bias by mae), so that a
 * report says at a glance whether the model earns its cost. *best is -1
 * when no baseline ran; *full_over_best is NAN without the full arm or
 * when the best baseline scored 0. */
static void best_baseline(const dr_replay_conf_t *c, const arm_run_t *arms, int *best, double *full_over_best) {
    bool rating = c->learner->mode == DR_MODE_RATING;
    double best_v = NAN, full_v = NAN;
    *best = -1;
    for (int i = 0; i < c->n_arms; i++) {
        const wstats_t *s = &arms[i].total;
        double v = rating ? ratio(s->abs_err, s->rated) : ratio((double)s->hits, s->ranked);
        if (arms[i].kind == DR_ARM_FULL) full_v = v;
        bool baseline = arms[i].kind == DR_ARM_POPULARITY ||
                        (rating ? arms[i].kind == DR_ARM_BIAS
                                : arms[i].kind == DR_ARM_ITEMKNN || arms[i].kind == DR_ARM_RECENTPOP);
        if (!baseline || !isfinite(v)) continue;
        if (*best < 0 || (rating ? v < best_v : v > best_v)) { *best = i; best_v = v; }
    }
    *full_over_best = *best >= 0 && best_v > 0 ? full_v / best_v : NAN;
}

static int write_report(const dr_replay_conf_t *c, const dr_replay_input_t *in, const arm_run_t *arms,
                        double wall, const char *dir, char *err, size_t n) {
    char path[4096];
    if (dr_mkdirs(dir)) { snprintf(err, n, "cannot create %s", dir); return DR_EIO; }
    snprintf(path, sizeof(path), "%s/report.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) { snprintf(err, n, "cannot write %s", path); return DR_EIO; }
    const arm_run_t *main_arm = &arms[0];
    dr_json_t j;
    dr_json_init(&j, f);
    dr_json_object_begin(&j, NULL);
    dr_json_str(&j, "mode", c->learner->mode == DR_MODE_RATING ? "rating" : "implicit");
    dr_json_str(&j, "source", in->source ? in->source : "");
    dr_json_int(&j, "k", c->k);
    dr_json_int(&j, "events", (int64_t)in->n);
    dr_json_num(&j, "events_per_second", wall > 0 ? (double)in->n / wall : NAN);
    dr_json_num(&j, "wall_seconds", wall + in->load_seconds);
    dr_json_num(&j, "replay_seconds", wall);
    dr_json_num(&j, "load_seconds", in->load_seconds);
    dr_json_str(&j, "main_arm", arm_names[main_arm->kind]);
    write_arm_metrics(&j, main_arm, &main_arm->total, true);
    dr_json_array_begin(&j, "drifts");
    for (int i = 0; i < c->n_arms; i++)
        for (size_t d = 0; d < arms[i].n_drift_list; d++) {
            dr_json_object_begin(&j, NULL);
            dr_json_int(&j, "event", (int64_t)arms[i].drift_list[d].event);
            dr_json_int(&j, "timestamp_ms", arms[i].drift_list[d].ts);
            dr_json_int(&j, "user_id", arms[i].drift_list[d].user);
            dr_json_str(&j, "arm", arm_names[arms[i].kind]);
            dr_json_object_end(&j);
        }
    dr_json_array_end(&j);
    if (in->splice) write_splice_truth(&j, in->splice);
    int best;
    double full_over_best;
    best_baseline(c, arms, &best, &full_over_best);
    if (best >= 0) {
        char hr[32], ndcg[32];
        metric_names(c->k, hr, ndcg, sizeof(hr));
        dr_json_object_begin(&j, "baselines");
        dr_json_str(&j, "best", arm_names[arms[best].kind]);
        dr_json_str(&j, "metric", c->learner->mode == DR_MODE_RATING ? "mae" : hr);
        dr_json_num(&j, "full_over_best", full_over_best);
        dr_json_object_end(&j);
    }
    dr_json_object_begin(&j, "arms");
    for (int i = 0; i < c->n_arms; i++) {
        dr_json_object_begin(&j, arm_names[arms[i].kind]);
        write_arm_metrics(&j, &arms[i], &arms[i].total, true);
        if (in->splice) write_splice_arm(&j, &arms[i]);
        dr_json_object_end(&j);
    }
    dr_json_object_end(&j);
    write_windows(&j, arms, c->n_arms, in, c->window);
    dr_json_object_end(&j);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) { snprintf(err, n, "writing %s failed", path); return DR_EIO; }
    return 0;
}

/* One line per arm: the composites' figures before and after the splice. */
static void print_splice(const dr_replay_conf_t *c, const arm_run_t *a) {
    const splice_stats_t *s = &a->sp;
    bool rating = c->learner->mode == DR_MODE_RATING;
    char fig[160];
    if (rating)
        snprintf(fig, sizeof(fig), "mae before %.4f after %.4f | first 10/20/50 after %.4f/%.4f/%.4f",
                 ratio(s->before.abs_err, s->before.rated), ratio(s->after.abs_err, s->after.rated),
                 ratio(s->first[0].abs_err, s->first[0].rated), ratio(s->first[1].abs_err, s->first[1].rated),
                 ratio(s->first[2].abs_err, s->first[2].rated));
    else
        snprintf(fig, sizeof(fig), "hr@%d before %.4f after %.4f | first 10/20/50 after %.4f/%.4f/%.4f", c->k,
                 ratio((double)s->before.hits, s->before.ranked), ratio((double)s->after.hits, s->after.ranked),
                 ratio((double)s->first[0].hits, s->first[0].ranked), ratio((double)s->first[1].hits, s->first[1].ranked),
                 ratio((double)s->first[2].hits, s->first[2].ranked));
    splice_detection_t d;
    splice_detection(a, &d);
    if (a->drift_on && d.detected)
        fprintf(stderr, "  %-11s %s | detected %u of %u (within 50 events: %u), median delay %.1f events\n",
                arm_names[a->kind], fig, d.detected, d.users, d.within[2], d.delay_median);
    else if (a->drift_on)
        fprintf(stderr, "  %-11s %s | detected 0 of %u\n", arm_names[a->kind], fig, d.users);
    else
        fprintf(stderr, "  %-11s %s\n", arm_names[a->kind], fig);
}

static void print_summary(const dr_replay_conf_t *c, const dr_replay_input_t *in, const arm_run_t *arms,
                          double wall) {
    bool rating = c->learner->mode == DR_MODE_RATING;
    size_t n = in->n;
    fprintf(stderr, "replayed %zu events in %.2f s (%.0f events/s per arm, %d arms in parallel)\n", n,
            wall, wall > 0 ? (double)n / wall : 0, c->n_arms);
    for (int i = 0; i < c->n_arms; i++) {
        const wstats_t *s = &arms[i].total;
        if (rating)
            fprintf(stderr, "  %-11s mae %.4f  rmse %.4f  (%llu ratings)\n", arm_names[arms[i].kind],
                    ratio(s->abs_err, s->rated), sqrt(ratio(s->sq_err, s->rated)), (unsigned long long)s->rated);
        else
            fprintf(stderr, "  %-11s hr@%d %.4f  ndcg@%d %.4f  mrr %.4f  (%llu ranked)  drifts %llu\n",
                    arm_names[arms[i].kind], c->k, ratio((double)s->hits, s->ranked), c->k,
                    ratio(s->ndcg, s->ranked), ratio(s->rr, s->ranked), (unsigned long long)s->ranked,
                    (unsigned long long)arms[i].drifts);
    }
    int best;
    double full_over_best;
    best_baseline(c, arms, &best, &full_over_best);
    if (best >= 0 && isfinite(full_over_best)) {
        char hr[32], ndcg[32];
        metric_names(c->k, hr, ndcg, sizeof(hr));
        fprintf(stderr, "  full / best baseline (%s) %s: %.3f (%s)\n", arm_names[arms[best].kind],
                rating ? "mae" : hr, full_over_best, rating ? "below 1: full predicts better" : "above 1: full ranks better");
    }
    if (!in->splice) return;
    const dr_splice_t *sp = in->splice;
    if (sp->opts.control)
        fprintf(stderr, "splice control: %zu users measured at their midpoint, unchanged (min %d events; %zu users with fewer)\n",
                sp->n, sp->opts.min_events, sp->kept_users);
    else
        fprintf(stderr, "spliced users: %zu composites (seed %llu, min %d events; %zu users with fewer kept as they were; "
                "%zu events shifted later)\n", sp->n, (unsigned long long)sp->opts.seed, sp->opts.min_events,
                sp->kept_users, sp->shifted_events);
    for (int i = 0; i < c->n_arms; i++) print_splice(c, &arms[i]);
}

int dr_replay_run(const dr_replay_conf_t *c, const dr_replay_input_t *in, const char *dir, char *err,
                  size_t n) {
    if (in->n == 0) { snprintf(err, n, "nothing to replay: the range holds no events"); return DR_EINVAL; }
    if (c->n_arms < 1 || c->n_arms > DR_REPLAY_MAX_ARMS || c->k < 1 || c->window < 1) {
        snprintf(err, n, "replay needs 1 to %d arms, k >= 1 and window >= 1", DR_REPLAY_MAX_ARMS);
        return DR_EINVAL;
    }
    int bad = dr_replay_check_arms(c->arms, c->n_arms, c->learner->mode, err, n);
    if (bad) return bad;
    prep_t p;
    int rc = prep_build(&p, in);
    if (rc) { snprintf(err, n, "preparing the replay: %s", dr_strerror(rc)); prep_free(&p); return rc; }
    float rmin = INFINITY, rmax = -INFINITY;
    for (size_t e = 0; e < in->n; e++)
        if (in->events[e].type == DR_EV_RATE) { rmin = fminf(rmin, in->events[e].value); rmax = fmaxf(rmax, in->events[e].value); }
    arm_run_t *arms = calloc((size_t)c->n_arms, sizeof(*arms));
    pthread_t th[DR_REPLAY_MAX_ARMS];
    if (!arms) { prep_free(&p); return DR_ENOMEM; }
    double t0 = dr_mono_s();
    for (int i = 0; i < c->n_arms; i++) {
        arms[i] = (arm_run_t){.p = &p, .conf = c, .in = in, .kind = c->arms[i],
                              .rating_min = isfinite(rmin) ? rmin : -INFINITY,
                              .rating_max = isfinite(rmax) ? rmax : INFINITY};
        if (pthread_create(&th[i], NULL, arm_main, &arms[i]) != 0) arm_main(&arms[i]), th[i] = 0;
    }
    for (int i = 0; i < c->n_arms; i++)
        if (th[i]) pthread_join(th[i], NULL);
    double wall = dr_mono_s() - t0;
    for (int i = 0; i < c->n_arms && !rc; i++)
        if (arms[i].rc) { rc = arms[i].rc; snprintf(err, n, "%s", arms[i].err); }
    if (!rc) rc = write_report(c, in, arms, wall, dir, err, n);
    if (!rc) print_summary(c, in, arms, wall);
    for (int i = 0; i < c->n_arms; i++) {
        free(arms[i].win); free(arms[i].covered); free(arms[i].drift_list);
        free(arms[i].sp.first_cut); free(arms[i].sp.cut_before);
        free(arms[i].auc_pred); free(arms[i].auc_label);
    }
    free(arms);
    prep_free(&p);
    return rc;
}
