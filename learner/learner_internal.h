/* learner_internal.h - declarations shared inside the learner module only (other
 * modules include dr_learner.h). */
#ifndef DR_LEARNER_INTERNAL_H
#define DR_LEARNER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dr_learner.h"

/* Backward-shift deletion in a linear-probing table (the item id table and
 * the co-engagement tables): with the hole at `hole`, the entry at slot j
 * (further along the hole's run, cyclically) whose home slot is `home`
 * stays where it is when its home lies cyclically in (hole, j]; else it
 * moves into the hole. */
static inline bool dr__probe_stays(size_t hole, size_t j, size_t home) {
    return hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
}

/* ---- seen posts rest (rest.c) --------------------------------------------- */

/* Counts an impression of item_id at event time ts (rests it at the
 * threshold), or forgets its count on an engagement. No-op when resting is
 * off (conf rest_impressions 0). */
void dr__rest_observe(dr_user_t *u, const dr_learner_conf_t *c, int64_t item_id, bool impression,
                      bool engaged, int64_t ts);

/* ---- co-engagement neighbours (neighbors.c) ------------------------------ */

/* One item's co-engagement counts: for each other item (by its index in the
 * item matrix), how often users engaged with both close together in their
 * own sequence. The entries are dense, e[0..n) in no particular order, so
 * that scoring walks only live ones (issue 18: a slot array at most 3/4
 * full made the walk visit twice as many, half of them empty); an
 * open-addressing index of their positions, a power-of-two array in the
 * same allocation, finds a key. It grows up to `cap` entries; a zeroed
 * struct is an empty table.
 *
 * Bounded memory: when a full table meets a new neighbour, every weight is
 * halved and the lightest entries are dropped until a quarter of the table
 * is free. Heavy pairs survive, old light ones go, and an item with many
 * neighbours forgets faster: what it kept is what stays frequent. */
typedef struct dr__nbr_entry {
    int32_t key; /* neighbour's item index */
    float w;
} dr__nbr_entry_t;

typedef struct dr__nbr {
    dr__nbr_entry_t *e; /* room entries, n in use; NULL until the first neighbour */
    int32_t *index;     /* n_slots positions in e (-1: empty), after e's room */
    uint32_t n_slots, n, room;
} dr__nbr_t;

/* Adds w to key's weight, inserting it (and making room) when new. Equal
 * weights are dropped in the order of ids[key] (item ids, which unlike
 * indices are the same after a restart). 0, or DR_ENOMEM with the table
 * unchanged. */
int dr__nbr_add(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids);
/* key's weight, 0 when absent. */
float dr__nbr_get(const dr__nbr_t *t, int32_t key);
/* Asks the CPU to fetch the index slot where key's look-up starts: a
 * caller about to look keys up in several tables issues these first, so
 * that the tables' cache misses overlap instead of following each other.
 * Changes nothing. */
void dr__nbr_prefetch(const dr__nbr_t *t, int32_t key);
/* Frees the entries; the table is empty again. */
void dr__nbr_clear(dr__nbr_t *t);
/* Removes key's entry; false when absent. No allocation. */
bool dr__nbr_remove(dr__nbr_t *t, int32_t key);
/* Drops the entries whose item was removed (ids[key] < 0: the row is free).
 * Returns how many were dropped, or DR_ENOMEM with the table unchanged. */
int dr__nbr_drop_freed(dr__nbr_t *t, const int64_t *ids);

/* An entry with the item id it is ordered by. */
typedef struct dr__nbr_ranked {
    dr__nbr_entry_t e;
    int64_t id; /* ids[e.key], or e.key when there are no ids */
} dr__nbr_ranked_t;
/* Writes the table's t->n entries into out, heaviest first, equal weights
 * by id (ids may be NULL: by key). Returns t->n. */
uint32_t dr__nbr_ranked(const dr__nbr_t *t, const int64_t *ids, dr__nbr_ranked_t *out);
/* Puts n entries in that order (for neighbours read back from a record). */
void dr__nbr_sort_ranked(dr__nbr_ranked_t *e, size_t n);

/* Two steps for callers that must not fail half-way (dr_learner_apply):
 * dr__nbr_reserve() allocates now what adding up to new_keys keys absent
 * from t would allocate, moving the entries into more slots (0, or
 * DR_ENOMEM; the entries are the same either way); dr__nbr_add_reserved()
 * then adds as dr__nbr_add() does, making room with `ranked` (cap entries)
 * instead of an allocation, and returns 0 for each of those keys. */
int dr__nbr_reserve(dr__nbr_t *t, uint32_t new_keys, uint32_t cap);
int dr__nbr_add_reserved(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids,
                         dr__nbr_ranked_t *ranked);

/* ---- item lifetime helpers (items.c) -------------------------------------- */

/* A growable list of int64 (rows or ids). */
typedef struct dr__rows {
    int64_t *v;
    size_t n, cap;
} dr__rows_t;

/* Ids of removed items with their publish times (open addressing, -1
 * empty): an event or a record that brings a removed id back within a
 * generation or two finds its age here, and the item is expired at once
 * instead of listed as new. */
typedef struct dr__retired {
    int64_t *id;
    int64_t *published;
    size_t n, n_slots;
} dr__retired_t;

/* Excluded bits (dr_model_t.excluded): an item with any bit set is never
 * listed. Only the catalog's is stored; the others are worked out again. */
#define DR__EXCL_CATALOG 1u     /* blocked or deleted by the catalog */
#define DR__EXCL_EXPIRED 2u     /* older than learner.item.ttl.ms */
#define DR__EXCL_FREE 4u        /* the row holds no item */
#define DR__EXCL_PLACEHOLDER 8u /* made for a neighbour named in a stored
                                   record, its own record not read yet */
#define DR__PUBLISHED_DELETED INT64_MIN /* a removed id the catalog deleted: expired at any age */

/* ---- authors, for the population prior of their new posts (authors.c) ---- */

/* One author: what its live posts earned, both sums decayed on the positive
 * clock with learner.prior.popularity.halflife, as the items' c_i are. */
typedef struct dr__author {
    int64_t id;      /* -1: empty slot */
    uint64_t time;   /* the positive clock both sums are as of */
    float posts;     /* Σ over its posts of 2^(-(time - joined)/half-life) */
    float positives; /* Σ over its posts of their decayed positives c_i */
} dr__author_t;

/* Open addressing over a power-of-two slot array that grows up to
 * learner.prior.popularity.authors entries (load <= 3/4); a zeroed struct
 * is an empty table. Full, a new author takes the place of the least active
 * (sums decayed to now) of 8 entries sampled from a pseudo-random slot:
 * O(1), and authors still posting or earning stay. */
typedef struct dr__authors {
    dr__author_t *slot; /* NULL until the first author */
    size_t n_slots, n;
    uint64_t evicted;   /* authors dropped to make room, ever */
} dr__authors_t;

/* ---- content, for the population prior of new posts (content_prior.c) ---- */

/* A ridge regression of a post's decayed positives on its content
 * embedding, over the live posts with content: w = (A + λI)^-1 b with
 * A = Σ 2^(-(t - joined)/h) e_i e_iᵀ and b = Σ c_i(t) e_i. With one-hot
 * embeddings it is the author table's mean (positives / (posts + λ)); with
 * real ones, posts of similar content share what theirs earned. Both sums
 * are kept as raw · scale, so that the decay between two changes is one
 * multiply of `scale` and a positive adds c floats to b. */
typedef struct dr__content_prior {
    double *a_raw;   /* c × c */
    double *b_raw;   /* c */
    double scale;    /* A = a_raw · scale, b = b_raw · scale, as of `time` */
    uint64_t time;   /* the positive clock */
    double *w;       /* c: the last solution, valid while !stale */
    double *work;    /* c × c + c: the solver's */
    bool stale;
    uint64_t posts;  /* live posts counted (not decayed): 0 means no signal */
} dr__content_prior_t;

/* ---- the rating blend (rating.c) ----------------------------------------- */

#define DR__RATING_INPUTS 14 /* the global stage's inputs at most, the constant 1 first: */
#define DR__RATING_BASE_INPUTS 12 /* 12 from the ratings, 2 more from the catalog's content */

/* What the blend keeps per item: its ratings' statistics. */
typedef struct dr__item_ratings {
    float residual_sum; /* Σ r - μ - the rater's mean residual */
    float error_sq;     /* Σ (r - μ - b_u - b_i - dot)² */
    uint32_t n;         /* ratings */
} dr__item_ratings_t;

/* The global stage: a recursive-least-squares fit of r - base on the
 * inputs, forgetting DR__RATING_FORGET per rating. */
typedef struct dr__rating_blend {
    int inputs;          /* n: DR__RATING_BASE_INPUTS, or all with content (dr__rating_inputs) */
    double w[DR__RATING_INPUTS];
    double p[DR__RATING_INPUTS * DR__RATING_INPUTS]; /* n × n, row-major */
    uint64_t n;          /* ratings it learned from (0: not started) */
    float lo, hi;        /* the lowest and highest rating seen: predictions are
                            clipped to them */
} dr__rating_blend_t;

/* One prediction, kept from the test for the train. */
typedef struct dr__rating_pred {
    double x[DR__RATING_INPUTS];     /* the global stage's inputs */
    double x2[DR_RATING_USER_INPUTS]; /* the user's stage's */
    double base;  /* μ + b_u + b_i + dot */
    double y;     /* after the global stage */
    double y2;    /* after the user's */
    float item_mean, user_mean; /* the shrunk mean residuals it used */
    float prediction; /* y2 clipped to the ratings seen */
} dr__rating_pred_t;

/* The blend's prediction of u's rating of item idx at event time ts; `dot`
 * is the MF's (û + v_u)·q_i, base = μ + b_u + b_i + dot; near[0..n_near)
 * the user's last engaged items (the co-engagement sources) with the
 * residuals their ring entries keep. Writes p for dr__rating_learn().
 * With the blend off (learner.rating.blend), base. */
float dr__rating_predict(const dr_model_t *m, const dr_user_t *u, size_t idx, float base, float dot,
                         int64_t ts, const int32_t *near, const float *near_residual, int n_near,
                         dr__rating_pred_t *p);
/* Learns from the rating r of the prediction p (after the MF's own step):
 * both stages, then the user's and the item's statistics. Returns the
 * residual the user's ring keeps with this rating (r less μ + b_u + b_i
 * now). */
float dr__rating_learn(dr_model_t *m, dr_user_t *u, size_t idx, float r, int64_t ts,
                       const dr__rating_pred_t *p);
/* Makes room for what dr__rating_learn() will keep of u's rating of item
 * idx (the user's content statistics): DR_ENOMEM before anything changed. */
int dr__rating_reserve(const dr_model_t *m, dr_user_t *u, size_t idx);
/* The global stage's input count under conf: the content inputs join when
 * the catalog's content embeddings are short enough to mean something per
 * dimension (0 < learner.content.dim <= DR_RATING_CONTENT_MAX). */
int dr__rating_inputs(const dr_learner_conf_t *conf);
/* The global stage back to its start, with n inputs. */
void dr__rating_blend_reset(dr__rating_blend_t *b, int n);

/* ---- the model's state (model.c; its records in records.c) -------------- */

#define DR__POP_GAMMA_MAX 100.0f /* bounds of the learned γ and τ: the term stays finite */
#define DR__POP_TAU_MIN 0.1f
#define DR__POP_TAU_MAX 1e6f

/* A topic's outcomes during a trend period (the trend term's lift). */
typedef struct dr__trend_topic {
    int64_t topic; /* -1: a free slot */
    float shown, engaged;
} dr__trend_topic_t;

struct dr_model {
    dr_learner_conf_t conf;
    int dim;
    /* items, by dense index */
    size_t n_items, cap_items;
    float *q;
    float *bias;
    int64_t *ids;
    int64_t *author, *topic;      /* the catalog's, -1: unknown */
    uint8_t *excluded;
    uint8_t *dirty;
    uint64_t *count;      /* events applied per item */
    /* content: q_i = W·e_i + δ_i for items with an embedding */
    int content_dim;      /* c (0: off) */
    float *W;             /* d × c, row-major */
    float *emb;           /* n × c */
    float *delta;         /* n × d */
    uint8_t *has_content; /* n */
    size_t n_content;
    size_t content_cursor;   /* the next row the outer step's refresh brings up to W */
    /* co-engagement (conf.cooc_neighbors > 0) */
    dr__nbr_t *nbr;       /* n: each item's neighbour counts n_ji */
    float *engaged;       /* n: engagements per item, n_i, in its row's units */
    float *engaged_norm;  /* n: n_i^-b as of cooc_ref (dr__set_engaged), kept
                             beside n_i: the scoring loop is a gather, not a power */
    /* Counts fade by half every conf.cooc_halflife engagements. A row (an
     * item's n_i and neighbour counts) is stored in units of its own base:
     * the true value is stored × 2^((base - clock) / H), so counting is one
     * multiply-add, and a row is rescaled only when touched far past its
     * base (model.c, row_gain). */
    double *nbr_base;     /* n: the clock of each row's units */
    double cooc_clock;    /* engagements counted, own and synced (stored) */
    double cooc_ref;      /* the clock engaged_norm is as of (derived) */
    float *hop_acc;       /* n, zero between uses: the second hop's sums */
    int32_t *hop_touched; /* n: the items hop_acc holds */
    dr__nbr_ranked_t *nbr_ranked; /* cooc_neighbors entries: a full table makes
                             room with it while an event is applied, which
                             must not fail half-way (dr__nbr_add_reserved) */
    uint8_t *rec_buf;     /* one item record */
    int64_t *dirty_list;  /* indices of dirty items */
    size_t n_dirty;
    /* id -> index, open addressing, power-of-two slots, -1 = empty */
    int64_t *slot_id;
    int64_t *slot_idx;
    size_t n_slots;
    uint64_t slot_rehashes; /* times the id table was rebuilt (tests: no thrash) */
    /* shared parameters */
    float *prior;          /* û */
    double mu;             /* global mean rating */
    uint64_t n_ratings;
    int64_t version;       /* outer-loop steps taken on û */
    double *reptile_sum;   /* Σ v_u over the labelled events of this period */
    uint32_t reptile_n;
    float *past_prior;     /* DR_PRIOR_HISTORY × dim: û of versions ... */
    int64_t past_version[DR_PRIOR_HISTORY]; /* ... these (-1: empty slot) */
    int64_t pop[DR_POP_RING]; /* recent positives, sampled for negatives */
    uint32_t pop_len, pop_head;
    float *scratch;        /* dim floats: û + v_u */
    /* population prior: p_i = log(1 + c_i), c_i the item's decayed positives */
    float *pop_count;      /* n: c_i as of the item's last positive ... */
    uint64_t *pop_time;    /* n: ... at this value of the positive clock */
    float *pop_score;      /* n: p_i, decayed to pop_ref (or to its last positive) */
    float *pop_seed;       /* n: the author's pseudo-count the item started with,
                              decayed like c_i to pop_time (0: none) */
    uint64_t *author_joined; /* n: the positive clock when it joined its author */
    dr__authors_t authors; /* per author, what its posts earned (authors.c) */
    uint64_t *content_joined; /* n: ... and when its content joined the regression */
    dr__content_prior_t content_prior; /* content -> positives (content_prior.c) */
    uint64_t pos_clock;    /* positives seen */
    uint64_t pop_ref;      /* the clock at the last outer step */
    uint32_t *trend_count; /* n: t_i, kept while a trend period runs */
    float *trend_lift;     /* n: log(lift) of the item's topic, as last refreshed */
    float *trend_score;    /* n: the whole term, weighted: w·log(1 + t_i) + w_topic·trend_lift */
    /* outcomes (impressions answered or not) per topic since the trend
     * period began: open addressing on the topic id, topic -1 free */
    dr__trend_topic_t trend_topics[DR_TREND_TOPICS];
    uint32_t trend_topics_used;        /* its slots taken (at most 3/4 of them) */
    double trend_shown, trend_engaged; /* outcomes of every item, topic or not */
    uint32_t trend_outcomes;           /* ... since trend_lift was refreshed */
    uint64_t trend_until;  /* the positive clock at which the trend period ends
                              (runtime only: a restart ends it) */
    /* sharing with other instances (sync.c): the learned part of each item
     * changed since the last export, as it was before the change */
    bool sync_on;
    uint32_t *sync_pos;    /* per item index: 1 + its entry in sync_base, 0: none */
    size_t sync_pos_cap;
    float *sync_base;      /* entries × (dim + 1): q_i or δ_i, then b_i */
    dr__item_ratings_t *sync_rated_base; /* entries: the rating blend's item statistics */
    int64_t *sync_idx;     /* entries: the item index */
    size_t n_sync, cap_sync;
    float *sync_prior_base;    /* û at the last export (dim) */
    /* co-engagement counted since the last export: per item, the pairs it
     * gained (a table of its own, never halved) and its engagements */
    dr__nbr_t *sync_nbr;
    float *sync_engaged;
    size_t sync_nbr_cap;
    int64_t *sync_nbr_list;  /* items with pending counts */
    size_t n_sync_nbr, cap_sync_nbr;
    float *sync_prior_pending; /* others' changes to û, applied at the next outer step */
    float *sync_W_base;        /* W at the last export of each of its rows (dim × c) */
    int sync_W_row;            /* the row of W the next export starts at */
    float pop_gamma;       /* γ */
    float pop_log_tau;     /* log τ: learned in log space, τ > 0 at any step */
    double pop_grad_gamma, pop_grad_log_tau; /* ascent directions summed over ... */
    uint32_t pop_grad_n;   /* ... this many ranked positives of the period */
    /* item lifetime (items.c): publish times, expiry, removal, row reuse */
    int64_t *published;    /* n: publish time, ms (the catalog's, else when this
                              model first met the item); -1: not known yet */
    int64_t now_ms;        /* event time: the newest event applied */
    int64_t clock_start_ms; /* the first event's time (0: none yet) */
    float *fresh_score;    /* n: 2^(-age / halflife) as of the last expiry pass */
    dr__item_ratings_t *rated; /* n: rating mode, the rating blend's per-item part */
    dr__rating_blend_t blend;  /* rating mode: the blend's global stage */
    size_t n_live;         /* rows holding an item: n_items less the free ones */
    size_t expire_cursor;  /* the expiry pass's next row */
    dr__rows_t free_rows;  /* rows a new item may take */
    dr__rows_t held_rows;  /* removed items' rows, until every co-engagement
                              table forgot them (held_epoch: the sweep's epoch
                              at removal) */
    uint64_t *held_epoch;  /* held_epoch_cap entries */
    size_t held_epoch_cap;
    size_t n_placeholders; /* rows marked DR__EXCL_PLACEHOLDER */
    int64_t reuse_log[DR_REUSE_LOG]; /* the last rows new items took over ... */
    uint64_t reuse_seq;    /* ... and how many ever (log[seq % DR_REUSE_LOG] is next) */
    size_t sweep_cursor;   /* the sweep's next table while rows are held */
    uint64_t sweep_epoch;  /* completed passes of the sweep */
    dr__rows_t gone;       /* ids removed since the last drain: their stored
                              records are to be deleted */
    dr__retired_t retired[2]; /* removed ids -> publish time, two generations */
    int64_t retired_rotate_ms; /* when the older generation is forgotten */
};

/* Row idx back to a new item's state (seeded from its id). */
void dr__item_init(dr_model_t *m, size_t idx, int64_t item_id);
/* Sets n_i and the factor the co-engagement term multiplies by. */
void dr__set_engaged(dr_model_t *m, size_t idx, float n);
/* Works every item's n_i^-b out again as of the clock (after the clock
 * moved 20 half-lives, or was loaded). */
void dr__cooc_rebase_norms(dr_model_t *m);
/* Adds w (true units, as of now) to row idx's count of key, and n (true)
 * to its n_i; for counts that other instances send (sync.c). DR_ENOMEM:
 * not counted. */
int dr__cooc_add_synced(dr_model_t *m, size_t idx, int32_t key, float w);
void dr__cooc_engaged_synced(dr_model_t *m, size_t idx, float n);
/* A row loaded from a record made under another learner.cooc.halflife: its
 * counts taken to true ones as of the clock (what they were worth under
 * the half-life that made them) and its base to the clock, so that they
 * fade under this one from now on. A no-op under the same half-life. The
 * clock is the globals' (the pipeline loads them first). */
void dr__cooc_convert_row(dr_model_t *m, size_t idx, float made_halflife);
/* Moves the clock by n engagements counted elsewhere. */
void dr__cooc_tick(dr_model_t *m, double n);
/* q_i = W·e_i + δ_i for one content item, or for all of them. */
void dr__content_refresh_item(dr_model_t *m, size_t idx);
void dr__content_refresh_all(dr_model_t *m);
/* p_i from the item's decayed count at the clock of the last outer step. */
void dr__pop_refresh_item(dr_model_t *m, size_t idx);
void dr__pop_refresh_all(dr_model_t *m);
/* The population prior is on: it has a weight or learns one (off only in
 * the zero-prior arm). */
bool dr__pop_on(const dr_model_t *m);
/* 2^(-(to - from) / learner.prior.popularity.halflife): what a count of
 * positive-clock time `from` weighs at `to` (1 when to <= from or no decay). */
double dr__pop_decay(const dr_model_t *m, uint64_t from, uint64_t to);
/* Whether new posts take their author's pseudo-count (the prior is on and
 * learner.prior.popularity.authors > 0). */
bool dr__authors_on(const dr_model_t *m);
/* Item idx's post and its positives count for its author, or stop counting
 * (its removal, a record read again, another author). No-ops without an
 * author or with the table off; never fail (a full table, or one that
 * cannot grow, makes room by eviction). */
void dr__author_join(dr_model_t *m, size_t idx);
void dr__author_leave(dr_model_t *m, size_t idx);
/* A positive on item idx counts for its author now. */
void dr__author_positive(dr_model_t *m, size_t idx);
/* The pseudo-count a new post of author starts with: its posts' mean
 * positives, shrunk toward 0 for authors with few posts; 0 when unknown. */
float dr__author_seed(const dr_model_t *m, int64_t author);
void dr__authors_free(dr__authors_t *t);
/* Whether new posts with content take a pseudo-count from the posts of
 * similar content (learner.prior.popularity.content, the prior on). */
bool dr__content_prior_on(const dr_model_t *m);
/* Item idx's content and positives count in the regression, or stop
 * counting (its removal, a record read again, new content). No-ops for an
 * item without content or with the regression off. */
void dr__content_prior_join(dr_model_t *m, size_t idx);
void dr__content_prior_leave(dr_model_t *m, size_t idx);
/* A positive on item idx counts for its content now. */
void dr__content_prior_positive(dr_model_t *m, size_t idx);
/* The pseudo-count a new post of content e (unit length) starts with: the
 * regression's prediction, 0 when below or without posts. */
float dr__content_prior_seed(dr_model_t *m, const float *e);
void dr__content_prior_free(dr__content_prior_t *t);
/* Records an item's learned part before a change, for the next export
 * (sync.c; nothing when sharing is off). DR_ENOMEM: not recorded. */
int dr__sync_touch(dr_model_t *m, size_t idx);
void dr__sync_free(dr_model_t *m);
/* Records what coengage() counted for item i next to recent[0..n), for the
 * next export. */
void dr__sync_coengage(dr_model_t *m, int32_t i, const int32_t *recent, const float *pair, int n);
/* Rebuilds the id table with n slots (model.c). 0 or DR_ENOMEM. */
int dr__rehash_slots(dr_model_t *m, size_t n);
/* What item idx's stored co-engagement counts are multiplied by to be true
 * ones as of the clock, and its n_i so taken (0 without the term). */
double dr__cooc_scale(const dr_model_t *m, size_t idx);
double dr__cooc_engaged(const dr_model_t *m, size_t idx);
/* Marks an item for the next commit's write-back (model.c). */
void dr__mark_item_dirty(dr_model_t *m, size_t idx);

/* Item lifetime (items.c). A row for a new item: a free one when the sweep
 * released any, else the next one (n_items grows; the caller grew the
 * arrays). */
size_t dr__item_row_take(dr_model_t *m);
/* A new item's publish time at creation: the removed id's, when it is
 * retired (expired at once), else -1. */
void dr__item_stamp_new(dr_model_t *m, size_t idx);
/* The item's freshness now: 2^(-age / conf.fresh_halflife_ms), 1 for an
 * item of unknown or negative age. */
float dr__item_freshness(const dr_model_t *m, size_t idx);
/* Whether the item at idx is past learner.item.ttl.ms (or was deleted). */
bool dr__item_is_expired(const dr_model_t *m, size_t idx);
/* Removes pending sync entries of a removed row (sync.c). */
void dr__sync_forget(dr_model_t *m, size_t idx);
/* Drops the removed rows from row's pending co-engagement table (sync.c);
 * DR_ENOMEM leaves it. */
int dr__sync_drop_freed(dr_model_t *m, size_t row);
void dr__items_free(dr_model_t *m);
/* Shrinks the id table once it is at most an eighth full (items.c). 0 or
 * DR_ENOMEM. */
int dr__fit_slots(dr_model_t *m);
/* The largest id table learner.max.items live items can need: a stored
 * size above it (the setting lowered since) is not taken again. */
size_t dr__slots_bound(const dr_model_t *m);

/* Bytes of the largest item record this model writes (records.c). */
size_t dr__item_record_cap(const dr_model_t *m);

#endif /* DR_LEARNER_INTERNAL_H */
