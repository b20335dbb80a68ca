/* dr_learner.h - the online model: item parameters, the shared prior û and
 * per-user deltas v_u, updated one event at a time (test, then train).
 *
 * Score of item i for user u:  s(u,i) = b_i + (û + v_u)·q_i + w(n_u)·p_i
 * Rating mode predicts         r(u,i) = μ + b_u + b_i + (û + v_u)·q_i
 *
 * The last term is the population prior: p_i = log(1 + c_i), c_i the item's
 * positives counted with a half-life, is what a user with no history engages
 * with; w(n_u) = γ / (1 + n_u/τ) fades it as the user's own events n_u
 * accumulate. A post of a known author starts from its author's record
 * instead of 0: c_i + s_i·k/(k + e_i), s_i the mean positives of the
 * author's posts (shrunk for authors with few), e_i the post's own events,
 * so its own evidence replaces it (conf.pop_authors, docs/CATALOG.md); with
 * conf.pop_content, a post with content and no author record to start from
 * takes s_i from a regression of posts' positives on their content. γ
 * and τ are meta-learned at the outer steps, by gradient ascent on a
 * ranking objective (a positive against a uniformly drawn item) over all
 * users' events (docs/COLD-START.md).
 *
 * Lists rank by s(u,i) + β·c(u,i), where the co-engagement term
 *   c(u,i) = Σ_{k: u's last L engaged items j_k, newest first}
 *              (1 + k)^-q · n_{j_k}^-a · n_{j_k,i} / n_i^b   (+ a second hop)
 * counts how often other users engaged with i close after or before j
 * (n_ji, a bounded table per item, exp(-distance/τ) a pair) against the
 * items' own engagements n: what people engage with next to what this
 * user just engaged with. Every count fades, halving every
 * conf.cooc_halflife engagements. It needs no training and follows a
 * user's newest interest at once (docs/LEARNER.md).
 *
 * Both terms only rank: the logistic model the inner loop fits (and its
 * prequential loss) is the factor part b_i + (û + v_u)·q_i, whose negatives
 * are sampled by popularity to keep popularity out of b_i.
 *
 * An item with a content embedding e_i (c floats, from the catalog) has
 * q_i = W·e_i + δ_i, with the projection W (d × c) shared by all items and
 * learned online from every interaction with such items, and δ_i its own
 * learned part (0 at first): an item nobody has touched yet is ranked by its
 * content. Other items keep a free q_i.
 *
 * The prior û is meta-learned (Reptile): every `prior_period` labelled
 * events it moves by ε·(mean of the v_u those events left), and the model
 * version counts these steps. Each user's v_u is relative to the û of the
 * version it last saw; a user whose version is one of the last
 * DR_PRIOR_HISTORY is re-based on its next event (v_u += û_old - û_new), so
 * an adapted user's vector does not jump when û moves. A user away for longer
 * takes the shared shift, as a new user would (docs/COLD-START.md).
 *
 * Threads: a model and its users are used from one thread (the pipeline's
 * loop). dr_model_items() exposes the item matrix for the emitter, which
 * copies what it needs before scoring elsewhere. */
#ifndef DR_LEARNER_H
#define DR_LEARNER_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dr_adwin.h"
#include "dr_types.h"

/* Bounds that keep every record of ours finite and small. */
#define DR_MAX_DIM 512
#define DR_RECENT_MAX 64    /* per-user ring of recent events */
#define DR_COOC_HOP_SEEDS_MAX 8 /* learner.cooc.hop.seeds */
#define DR_HIDDEN_MAX 64    /* per-user hidden items kept out of lists (the newest; 512 bytes) */
#define DR_HIDDEN_SOURCES 16 /* per-user hidden authors, and hidden topics (the newest; 128 bytes each) */
#define DR_REST_COUNTERS 1024 /* 4-bit impression counters of the seen-posts filter (512 bytes) */
#define DR_REST_BITS 1024     /* bits of each of its two generations of resting items (128 bytes) */
#define DR_PENDING_IMP 8    /* impressions awaiting engagement */
#define DR_TREND_TOPICS 1024 /* slots of the trend term's lift; it follows 3/4 as many topics (the rest get none) */
#define DR_TREND_TOPIC_PRIOR 50.0 /* a topic's lift starts as if it had this many outcomes at the mean */
#define DR_DRIFT_LEVEL_MIN_SAMPLES 10 /* a user's drift level (dr_apply_result_t) is its window's mean from this many */
#define DR_LAST_LIST 64     /* head of the last emitted list: for hr@10, and to
                               find the lists an excluded item must leave */
#define DR_POP_RING 4096    /* recent positives, for popularity sampling */
#define DR_PRIOR_HISTORY 16 /* past priors kept to re-base users exactly */
#define DR_MAX_CONTENT_DIM 4096 /* c: floats of an item's content embedding */
#define DR_MAX_NEIGHBORS 65536  /* co-engagement neighbours kept per item */

typedef enum dr_learn_mode {
    DR_MODE_IMPLICIT = 0, /* engagement as labels, logistic loss */
    DR_MODE_RATING = 1    /* RATE events, squared loss */
} dr_learn_mode_t;

typedef struct dr_learner_conf {
    int dim;                       /* d */
    dr_learn_mode_t mode;
    float lr_user;                 /* α for v_u and b_u */
    float lr_user_decay;           /* τ: a user's rate is α / sqrt(1 + n/τ), n = the
                                      user's events since its last re-adaptation; 0: constant */
    float lr_item;                 /* rate for q_i and b_i */
    float reg_user;                /* λ_u: pulls v_u to 0, i.e. u to the prior */
    float prior_step;              /* Reptile ε of the outer loop on û; 0: û fixed */
    int prior_period;              /* labelled events per outer step */
    bool prior_zero;               /* û starts at 0 instead of small random values */
    float pop_weight;              /* γ of the population prior at start; 0 with
                                      pop_step 0: the term is off */
    float pop_fade;                /* τ at start: events of a user that halve the term */
    float pop_step;                /* meta step on γ and log τ per outer step; 0: fixed */
    float pop_halflife;            /* positives after which a count weighs half; 0: none */
    int64_t pop_authors;           /* authors whose posts' positives are kept, so that
                                      a new post starts from its author's (0: none) */
    bool pop_content;              /* a new post with content and no author record
                                      starts from what posts of similar content earned */
    int content_dim;               /* c; 0: content embeddings are not used */
    float lr_content;              /* rate for the projection W */
    int64_t content_refresh_rows;  /* item rows brought up to W per outer step, in
                                      turn (0: the whole catalog every step) */
    float reg_item;
    float weight[DR_EV__COUNT];    /* per-type weight of the label (implicit) */
    float dwell_threshold_s;       /* DWELL at or above this is a positive */
    float impression_weight;       /* weak negative for an unengaged impression */
    int64_t impression_timeout_ms; /* engagement later than this does not cancel it */
    int negatives;                 /* sampled negatives per positive (0: none) */
    float grad_clip;               /* |g| bound for one event */
    float max_norm;                /* bound on ‖q_i‖ and ‖û+v_u‖ */
    float init_scale;              /* item vectors start ~ U(-s, s) */
    int recent_items;              /* ring size, <= DR_RECENT_MAX */
    /* seen posts rest: an item shown rest_impressions times without
     * engagement leaves the user's lists for rest_ms to 2 × rest_ms of event
     * time (learner/rest.c); 0 impressions: off */
    int rest_impressions;
    int64_t rest_ms;
    /* co-engagement: items engaged close together by the same users */
    int cooc_neighbors;            /* neighbours kept per item; 0: the term is off */
    int cooc_window;               /* a user's last this many engaged items pair
                                      with a new one, and drive its lists */
    float cooc_weight;             /* β of the term in a list's score */
    float cooc_age;                /* a source engaged a drift samples ago weighs
                                      τ/(τ + a), τ this; 0: every source weighs 1 */
    float cooc_halflife;           /* counts halve every this many engagements
                                      (own and synced); 0: they never fade */
    float cooc_pair_decay;         /* τ: a new engagement adds exp(-k/τ) to its pair
                                      with the user's k-th previous one; 0: 1 to each */
    float cooc_query_decay;        /* q: the user's k-th last engaged item weighs
                                      (1 + k)^-q in its lists */
    float cooc_source_norm;        /* a: a source's row weighs n_j^-a */
    float cooc_candidate_norm;     /* b: a candidate's score is divided by n_c^b */
    float cooc_hop_weight;         /* the second hop's weight (model.c, add_second_hop); 0: off */
    int cooc_hop_seeds;            /* the first hop's best this many expand, <= DR_COOC_HOP_SEEDS_MAX */
    float cooc_hop_spread;         /* the hop weighs min(1, this / candidates the first scored); 0: 1 */
    /* drift: a per-user ADWIN over the prequential loss */
    bool drift_enabled;            /* run the per-user detectors */
    dr_adwin_conf_t drift;         /* per-user detector parameters */
    int readapt_epochs;            /* SGD passes over the regime's events on a cut */
    bool regime_at_cut;            /* a cut for the worse whose kept window holds
                                      misses starts the regime at the cut, not at
                                      the window's first sample (dr_learner_readapt) */
    float drift_scale;             /* the detectors see their signal × this */
    double drift_min_change;       /* a cut is drift only when the kept window's mean
                                      and the dropped part's differ by this much (in
                                      the signal's units); smaller: drift_small */
    double drift_arm_share;        /* users (by hash of user_id) whose cuts get a
                                      response; the rest form a control arm */
    bool drift_respond_improving;  /* respond to a cut after which the signal
                                      fell (the user got easier to serve) too */
    int drift_explore_events;      /* after a re-adaptation, the user's lists
                                      explore topics (every other slot: the best
                                      item of another topic) for at most this
                                      many events (0: never) ... */
    int drift_explore_engaged;     /* ... and until the regime holds this many
                                      engaged items: a new interest was found */
    double explore_miss_rate;      /* lists also explore while the user's drift
                                      window (of at least DR_EXPLORE_FAILING_WINDOW
                                      samples) misses this often; 1: never */
    /* the response to a population-wide drift (the global detector's cut in
     * the worsening direction): for trend_positives positives, the lists of
     * users with drift handling add trend_weight · log(1 + t_i), t_i the
     * item's positives among the last DR_POP_RING of all users, and
     * trend_topic_weight · log(lift) of the item's topic: the topic's
     * engagement per outcome since the period began over everyone's, shrunk
     * by DR_TREND_TOPIC_PRIOR outcomes (0 unless above 1) */
    float trend_weight;
    float trend_topic_weight;
    int64_t trend_positives;
    float negative_weight;         /* weight of each sampled negative */
    bool negative_uniform;         /* sample negatives uniformly over known items
                                      instead of by popularity */
    int64_t max_items;             /* catalog bound (live items): an event on a
                                      new item beyond it is refused */
    /* item lifetime (docs/CATALOG.md): an item older than item_ttl_ms (from
     * its publish time, else from when the model first met it; event time)
     * leaves every list; item_grace_ms later it leaves the model and the
     * store, and its row is reused. 0: items never expire. */
    int64_t item_ttl_ms;
    int64_t item_grace_ms;
    /* freshness: lists add fresh_weight · 2^(-age / fresh_halflife_ms) for
     * an item of that age (a new post 1, one half-life old 0.5); 0: off */
    float fresh_weight;
    int64_t fresh_halflife_ms;
    /* rating mode: refine the biased MF's prediction with the rating blend
     * (learner/rating.c); false: the MF's own prediction */
    bool rating_blend;
    uint64_t seed;
} dr_learner_conf_t;

/* Fills the documented defaults (d = 32, implicit mode, ...). */
void dr_learner_conf_default(dr_learner_conf_t *conf);
/* 0 when the values are usable, else DR_ECONFIG with the reason in errstr. */
int dr_learner_conf_check(const dr_learner_conf_t *conf, char *errstr, size_t errstr_size);

/* One entry of a user's recent-event ring. */
#define DR_EXPLORE_FAILING_WINDOW 50 /* samples before lists count as failing a user */

typedef struct dr_recent_event {
    int64_t item_id;
    float value;
    uint32_t sample;   /* the user's drift samples counted when it joined (low
                          32 bits): places it before or after a cut */
    float residual;    /* rating mode: the rating less μ + b_u + b_i just after
                          learning from it (learner/rating.c); else 0 */
    uint8_t type;
} dr_recent_event_t;

/* What the rating blend (learner/rating.c, docs/LEARNER.md) keeps per user:
 * in effect how the user rates. All zero for a new user and in implicit mode. */
#define DR_RATING_USER_INPUTS 6
typedef struct dr_rating_user {
    uint32_t n;            /* ratings learned from */
    uint32_t session_n;    /* ... since the session began (a gap of an hour) */
    float residual_sum;    /* Σ r - μ - the item's mean residual */
    float error_sq;        /* Σ (r - μ - b_u - b_i - dot)² */
    float ema[3];          /* r - μ - the item's mean residual, averaged at 0.5, 0.2, 0.05 */
    float session_sum;     /* the same residuals, summed over the session */
    float w[DR_RATING_USER_INPUTS]; /* the user's own stage: weights ... */
    float p[DR_RATING_USER_INPUTS * DR_RATING_USER_INPUTS]; /* ... and their RLS covariance
                                                               (all 0: not started) */
    uint16_t content_len;  /* c of content[]: 0 until the user rates an item with content */
    float *content;        /* per content dimension k, Σ a_k·(r - base) over the user's
                              ratings of items with content, then Σ a_k (2c floats, freed
                              with the user): how the user rates each genre or topic */
} dr_rating_user_t;
/* The blend keeps content[] when learner.content.dim is at most this (genres,
 * topics; not dense text embeddings, whose dimensions mean nothing alone). */
#define DR_RATING_CONTENT_MAX 64

/* The items a user was shown without engaging, and those that rest
 * (learner/rest.c): a counting Bloom filter and two Bloom generations. */
typedef struct dr_rest_filter {
    int64_t gen_start_ms;                  /* the current generation began; 0: empty */
    uint8_t counts[DR_REST_COUNTERS / 2];  /* two 4-bit counters a byte */
    uint64_t resting[2][DR_REST_BITS / 64]; /* [0] current, [1] previous generation */
} dr_rest_filter_t;

/* The newest ids of a kind, up to DR_HIDDEN_SOURCES: once full, a new one
 * takes the oldest one's place. */
typedef struct dr_id_ring {
    int64_t id[DR_HIDDEN_SOURCES];
    uint8_t len, head;
} dr_id_ring_t;

typedef struct dr_pending_imp {
    int64_t item_id;
    int64_t timestamp_ms;
} dr_pending_imp_t;

/* A user's state. Allocated by dr_user_new() with its vector inline. */
typedef struct dr_user {
    int64_t user_id;
    uint64_t events_applied;       /* events whose effect is in this state */
    int64_t last_event_ms;
    dr_source_pos_t last_source;   /* input position of the last event */
    float bias;                    /* b_u (rating mode) */
    uint16_t recent_len;           /* entries used in recent[] */
    uint16_t recent_head;          /* next slot to overwrite */
    uint8_t pending_len;
    uint8_t last_list_len;
    uint8_t hidden_len;            /* entries used in hidden[] ... */
    uint8_t hidden_head;           /* ... and the next to overwrite once full */
    uint8_t erased;                /* runtime only: erased on request; the next
                                      commit deletes the stored record */
    uint8_t emit_pending;          /* runtime only: a new list is owed ... */
    double owed_since;             /* ... since this monotonic time (seconds) */
    dr_recent_event_t recent[DR_RECENT_MAX];
    int64_t hidden[DR_HIDDEN_MAX]; /* items the user hid: never in its lists */
    dr_pending_imp_t pending[DR_PENDING_IMP];
    int64_t last_list[DR_LAST_LIST]; /* head of the last list emitted ... */
    float last_list_score[DR_LAST_LIST]; /* ... and its scores */
    uint32_t drift_cuts;           /* detections of this user's ADWIN */
    uint64_t last_cut_event;       /* events_applied at the last detection */
    uint64_t drift_samples;        /* values the detector was given, ever */
    uint64_t regime_from;          /* the current regime's first sample, set by a
                                      re-adaptation (0: none yet): older recent
                                      events no longer drive the user's lists */
    uint32_t readapts;             /* re-adaptations (responses to cuts) */
    uint64_t readapt_event;        /* events_applied at the last one */
    uint64_t readapt_sample;       /* drift_samples at the last one */
    int64_t prior_version;         /* v_u is relative to the û of this model
                                      version; -1: to the current one (new) */
    dr_adwin_t drift;              /* ADWIN over this user's prequential loss */
    dr_rest_filter_t rest;         /* seen posts that rest */
    dr_id_ring_t hidden_authors;   /* HIDE_AUTHOR: their items never in its lists */
    dr_id_ring_t hidden_topics;    /* HIDE_TOPIC: likewise */
    dr_id_ring_t passed_topics;    /* topics of items u passed over while its lists
                                      explored, since the last re-adaptation (the
                                      newest): explored after the others */
    dr_rating_user_t rating;       /* rating mode: the rating blend's per-user part */
    float v[];                     /* v_u, dim floats */
} dr_user_t;

/* A new user at the prior (v_u = 0), with an empty drift detector
 * (parameters from `drift`, NULL: MOA's defaults). NULL on allocation failure. */
dr_user_t *dr_user_new(int64_t user_id, int dim);
dr_user_t *dr_user_new_conf(int64_t user_id, const dr_learner_conf_t *conf);
void dr_user_free(dr_user_t *u); /* NULL ok */
size_t dr_user_size(int dim);
/* True when item_id is among the user's recent events (excluded from lists). */
bool dr_user_has_recent(const dr_user_t *u, int64_t item_id);
/* True when the user hid item_id (a HIDE event; the newest DR_HIDDEN_MAX
 * hidden items are kept, each out of the user's lists for good). */
bool dr_user_has_hidden(const dr_user_t *u, int64_t item_id);
/* True when item_id rests for the user: shown learner.rest.impressions times
 * without engagement lately (a Bloom filter: may say true for an item that
 * does not rest, with the rate docs/BENCHMARKS.md gives; never the reverse). */
bool dr_user_resting(const dr_user_t *u, int64_t item_id);
/* Out of the user's lists: recent, hidden or resting. */
bool dr_user_excludes(const dr_user_t *u, int64_t item_id);
/* True when the user hid this author or this topic (HIDE_AUTHOR,
 * HIDE_TOPIC; -1: unknown, never hidden): the item stays out of its lists. */
bool dr_user_hides_source(const dr_user_t *u, int64_t author, int64_t topic);

typedef struct dr_model dr_model_t;

int dr_model_new(dr_model_t **out, const dr_learner_conf_t *conf, char *errstr,
                 size_t errstr_size);
void dr_model_free(dr_model_t *m);
const dr_learner_conf_t *dr_model_conf(const dr_model_t *m);

/* Index of an item in the item matrix; with create, a new item gets a row
 * (seeded from its id, so the same id always starts the same). Returns the
 * index, or DR_ENOTFOUND / DR_ENOMEM / DR_ERANGE (catalog full). */
int64_t dr_model_item_index(dr_model_t *m, int64_t item_id, bool create);

/* Read-only view of the item parameters, rows in index order. Valid until
 * the next call that may add items. */
typedef struct dr_items_view {
    size_t n;
    int dim;
    const float *q;          /* n × dim, row-major */
    const float *bias;       /* n */
    const int64_t *ids;      /* n */
    const uint8_t *excluded; /* n: blocked or deleted */
    const float *pop;        /* n: p_i of the population prior */
    const int64_t *author;   /* n: the catalog's author, -1: unknown */
    const int64_t *topic;    /* n: the catalog's topic, -1: unknown */
} dr_items_view_t;
void dr_model_items(const dr_model_t *m, dr_items_view_t *view);

/* Shared parameters. */
const float *dr_model_prior(const dr_model_t *m); /* û, dim floats */
int64_t dr_model_version(const dr_model_t *m);
/* The population prior's current γ and τ (learned when pop_step > 0). */
void dr_model_pop_fade(const dr_model_t *m, float *gamma, float *tau);

/* Marks an item blocked or deleted (never recommended) or clears it. */
int dr_model_set_item_excluded(dr_model_t *m, int64_t item_id, bool excluded);
/* True when the item is known and blocked or deleted. */
bool dr_model_item_excluded(dr_model_t *m, int64_t item_id);
/* Every item the catalog blocked or deleted that the model still holds, as
 * ids into *ids (grown with realloc, *cap its room); their count in *n.
 * DR_ENOMEM leaves *ids as it was. */
int dr_model_excluded_items(const dr_model_t *m, int64_t **ids, size_t *n, size_t *cap);
/* Sets an item's author and topic from the catalog (-1: unknown), which a
 * user's HIDE_AUTHOR / HIDE_TOPIC refer to. Creates the item if needed.
 * 0, DR_ERANGE (an id outside [-1, 2^53)), or as dr_model_item_index(). */
int dr_model_set_item_source(dr_model_t *m, int64_t item_id, int64_t author, int64_t topic);
/* The population prior's record of an author (conf.pop_authors): its posts
 * in the model and their positives, both decayed as c_i is, and the
 * pseudo-count a new post of it starts with. DR_ENOTFOUND when the bounded
 * table does not hold it (never met, evicted, or the table is off). */
int dr_model_author_stats(const dr_model_t *m, int64_t author, float *posts, float *positives,
                          float *seed);
/* Authors the table holds, and how many it dropped to make room, ever. */
size_t dr_model_authors(const dr_model_t *m, uint64_t *evicted);
/* Gives an item its content embedding (len must be conf.content_dim, values
 * finite): from now on q_i = W·e_i + δ_i, δ_i chosen so that an item that
 * already learned keeps its vector. Creates the item if needed. 0, DR_EINVAL
 * (wrong length, content off, not finite), or as dr_model_item_index(). */
int dr_model_set_item_content(dr_model_t *m, int64_t item_id, const float *emb, size_t len);
/* Item idx's co-engagement counts: n_i into *engaged, and its up to max
 * heaviest neighbours (heaviest first, then by id) into ids and weights
 * (n_ji), as of now (faded: learner.cooc.halflife). Returns how many
 * were written. For inspection: O(k log k). */
size_t dr_model_item_neighbors(const dr_model_t *m, int64_t idx, float *engaged, int64_t *ids,
                               float *weights, size_t max);
/* True when the item is scored from a content embedding. */
bool dr_model_item_has_content(const dr_model_t *m, int64_t idx);

/* What learning from one event did, for metrics. */
typedef struct dr_apply_result {
    bool learned;      /* false: the event carries no label in this mode */
    float loss;        /* prequential loss, before the update */
    float prediction;  /* probability (implicit) or rating (rating mode) */
    int updates;       /* SGD steps taken (labels, negatives, impressions) */
    float surprise;    /* the last drift sample below; < 0 when there is none */
    /* The drift signal, one value in [0, 1] per outcome the event resolved
     * (docs/DRIFT.md): implicit mode, 1 for an impression that got no
     * engagement (it came due, or a hide or a short dwell answered it), 0
     * for one answered by an engagement; an event that answers no impression
     * gives 1 - p for a positive and p for a negative, unless it repeats a
     * reaction to an item among the user's recent events (the like after a
     * click); rating mode, the clipped squared error / 4. */
    float samples[DR_PENDING_IMP + 1];
    int n_samples;
    float level;       /* the user's level before these samples: the mean of
                          its detector's window, in the samples' units; NAN
                          while the window holds fewer than
                          DR_DRIFT_LEVEL_MIN_SAMPLES or drift is off */
    bool drift;        /* the user's ADWIN cut its window on this event, and the
                          mean of the window it kept differs from that of the
                          part it dropped by at least conf.drift_min_change */
    bool drift_small;  /* it cut, by less than that: not drift (counted only) */
    int drift_direction; /* with drift: +1 the mean signal of the window kept
                            is above that of the window before (worse), -1 not */
} dr_apply_result_t;

/* The event's k-th drift sample as the population detector sees it
 * (dr_adwin.h): less the user's level when `relative` and the per-user
 * detectors run (without them no user has a level: the sample as it is).
 * False when the user has no level yet (the sample is left out). */
static inline bool dr_drift_global_sample(const dr_learner_conf_t *c, const dr_apply_result_t *res, int k,
                                          bool relative, double *x) {
    relative = relative && c->drift_enabled;
    if (relative && isnan(res->level)) return false;
    *x = relative ? (double)res->samples[k] - res->level : res->samples[k];
    return true;
}

/* Learns from one event for user u (test, then train). `event_seed` makes
 * negative sampling reproducible (derive it from the event's position).
 * Records the event in u's recent ring and counts it. Returns 0, or an
 * error with the model and u exactly as before (every row the event needs
 * is created, and every allocation made, before anything changes):
 *   DR_ERANGE - the event's item is new and the catalog already holds
 *     conf.max_items items (any event type; known items keep learning). A
 *     pending impression that goes stale while its item still cannot get a
 *     row is dropped without a step, so it never blocks the user's events.
 *   DR_ENOMEM - no memory for a row or a co-engagement table. */
int dr_learner_apply(dr_model_t *m, dr_user_t *u, const dr_event_t *ev,
                     uint64_t event_seed, dr_apply_result_t *res);

/* Re-adapts u after a drift: v_u restarts from the prior (v_u = 0, b_u = 0),
 * a new regime starts (older recent events leave the co-engagement context)
 * and readapt_epochs SGD passes go over the regime's recent events (oldest
 * first). The regime starts at the first sample of the window ADWIN kept,
 * except after a cut for the worse (direction > 0, as
 * dr_apply_result_t.drift_direction) when conf.regime_at_cut is set and the
 * window holds misses (samples that were not engagements): it starts at the
 * cut, since the window's engagements are then the old interest's last ones
 * or the few the stale lists still got (docs/DRIFT.md). Item parameters are
 * left as they are: they already learned from these events. Returns the
 * number of events replayed. */
int dr_learner_readapt(dr_model_t *m, dr_user_t *u, int direction);

/* Whether user_id is in the arm whose cuts get a response (drift_arm_share
 * of users, by a hash of the id). */
bool dr_model_drift_handled(const dr_model_t *m, int64_t user_id);
/* Whether a cut on u's detector gets a response (dr_learner_readapt, and
 * the pipeline's list flagged drift = true): u is in the drift arm, and the
 * cut was in the worsening direction (or conf.drift_respond_improving). */
bool dr_learner_should_respond(const dr_model_t *m, const dr_user_t *u,
                               const dr_apply_result_t *res);
/* Whether u passed over an item of `topic` while its lists explored
 * (since its last re-adaptation; the newest DR_HIDDEN_SOURCES such topics):
 * the lists then offer the topics it has not passed over first. */
bool dr_user_passed_topic(const dr_user_t *u, int64_t topic);
/* Whether u's lists explore topics now: u was re-adapted (a drift
 * response) fewer than conf.drift_explore_events events ago, and has
 * engaged with fewer than conf.drift_explore_engaged items since. */
bool dr_user_exploring(const dr_learner_conf_t *c, const dr_user_t *u);
/* u's recent-ring entries of the current regime (all of them before the
 * first re-adaptation): the ones that drive its co-engagement term and that
 * a re-adaptation replays. */
unsigned dr_user_regime_len(const dr_model_t *m, const dr_user_t *u);
/* Whether recent-ring entry r of u joined in the current regime. */
bool dr_user_in_regime(const dr_user_t *u, const dr_recent_event_t *r);

/* The response to a population-wide drift: starts (or extends) the trend
 * term for conf.trend_positives positives. No-op when both its weights are 0. */
void dr_model_trend_start(dr_model_t *m);
/* Positives left in the current trend period (0: none). */
uint64_t dr_model_trend_left(const dr_model_t *m);
/* Adds u's trend term to scores[j] for items first .. first + n - 1 (as
 * dr_model_add_coengagement_range); nothing outside a trend period or for
 * a user without drift handling. */
void dr_model_add_trend_range(const dr_model_t *m, const dr_user_t *u, float *scores,
                              size_t first, size_t n);

/* Adds the freshness term (conf.fresh_weight, recomputed by each expiry
 * pass) to scores[j] for items first .. first + n - 1; nothing when off. */
void dr_model_add_fresh_range(const dr_model_t *m, float *scores, size_t first, size_t n);

/* s(u,i) + β·c(u,i) for one item index: its score in u's list. */
float dr_model_score(const dr_model_t *m, const dr_user_t *u, int64_t idx);
/* The terms that only rank, for scorers that start from the factor part
 * over the whole item matrix (the emitter, the replay): */
/* w(n_u), the weight of u's population-prior term: s(u,i) adds it times the
 * items view's pop[i]. 0 when the term is off. */
float dr_model_pop_weight(const dr_model_t *m, const dr_user_t *u);
/* Adds β·c(u,i) to scores[i] for every item index i < n (scores indexed
 * like the item matrix rows). O(L · neighbours per item); nothing when the
 * term is off or u has engaged with nothing yet. */
void dr_model_add_coengagement(const dr_model_t *m, const dr_user_t *u, float *scores, size_t n);
/* The same for the item indices first .. first + n - 1 only, scores[j]
 * being item first + j's: for scorers that go through the item matrix in
 * chunks. Each call passes over u's L neighbour tables once. */
void dr_model_add_coengagement_range(const dr_model_t *m, const dr_user_t *u, float *scores,
                                     size_t first, size_t n);
/* The rows that make u's term and their weights: u's last engaged items,
 * then the second hop's seeds (docs/LEARNER.md). Working them out walks
 * those rows once; a scorer that goes through the items in chunks works
 * them out once per user (dr_model_cooc_sources) and adds them to each
 * chunk (dr_model_add_coengagement_sources). Valid until the model next
 * changes. */
#define DR_COOC_SOURCES_MAX (DR_RECENT_MAX + DR_COOC_HOP_SEEDS_MAX)
typedef struct dr_cooc_sources {
    int32_t idx[DR_COOC_SOURCES_MAX];
    float w[DR_COOC_SOURCES_MAX];
    int n;
} dr_cooc_sources_t;
void dr_model_cooc_sources(const dr_model_t *m, const dr_user_t *u, dr_cooc_sources_t *src);
/* Working the sources out sums rows in a scratch as long as the item
 * matrix: dr_model_cooc_sources uses the model's own, so one thread at a
 * time. Threads that score a model at once (the emitter's, while nothing
 * changes the model) each use a scratch of their own (the _in forms; NULL:
 * the model's): fitted to the catalog by dr_cooc_scratch_fit before use
 * (0 or DR_ENOMEM; a zeroed dr_cooc_scratch_t is an empty one), freed by
 * dr_cooc_scratch_free. */
typedef struct dr_cooc_scratch {
    float *acc;       /* per item row, zero between uses */
    int32_t *touched; /* the rows acc holds during a use */
    size_t cap;       /* rows both hold */
} dr_cooc_scratch_t;
int dr_cooc_scratch_fit(dr_cooc_scratch_t *s, const dr_model_t *m);
void dr_cooc_scratch_free(dr_cooc_scratch_t *s);
void dr_model_cooc_sources_in(const dr_model_t *m, const dr_user_t *u, dr_cooc_sources_t *src,
                              dr_cooc_scratch_t *scratch);
void dr_model_add_coengagement_sources(const dr_model_t *m, const dr_cooc_sources_t *src, float *scores,
                                       size_t first, size_t n);
/* For scorers that rank a candidate set instead of the whole catalog (the
 * emitter's retrieval path): */
/* u's list scores (dr_model_score) of the n item indices idx, into out. */
void dr_model_scores_at(const dr_model_t *m, const dr_user_t *u, const int64_t *idx, size_t n,
                        float *out);
/* The same in one pass over the sources' rows, for a candidate stage that
 * also wants the items the term favours: dr_model_coengagement_hold() sums
 * the whole co-engagement term of sources src (a user's:
 * dr_model_cooc_sources) into sums (NULL: the model's own scratch, one
 * thread at a time), writes the up to max item indices it favours most into
 * idx (each once; scratch: max floats), returns their count and leaves the
 * sums held (*held rows); dr_model_scores_at_held() scores candidates
 * reading the term from them; dr_model_cooc_release() zeroes them for the
 * scratch's next use. */
size_t dr_model_coengagement_hold(const dr_model_t *m, const dr_cooc_sources_t *src, int64_t *idx,
                                  float *scratch, size_t max, dr_cooc_scratch_t *sums, size_t *held);
void dr_model_scores_at_held(const dr_model_t *m, const dr_user_t *u, const dr_cooc_scratch_t *sums,
                             const int64_t *idx, size_t n, float *out);
void dr_model_cooc_release(const dr_model_t *m, dr_cooc_scratch_t *sums, size_t held);
/* Up to max item indices the trend term favours most now (the same for
 * every user it applies to), each once; 0 outside a trend period.
 * scratch: max floats. */
size_t dr_model_trend_top(const dr_model_t *m, int64_t *idx, float *scratch, size_t max);
/* The up to max freshest listable items (the freshness term's candidates,
 * the same for every user), as dr_model_trend_top; 0 with the term off.
 * A pass over the item matrix. */
size_t dr_model_fresh_top(const dr_model_t *m, int64_t *idx, float *scratch, size_t max);
/* The up to max items of largest p_i (the population prior's candidates,
 * the same for every user), in no order; an item whose p_i is NaN never.
 * A pass over the catalog, as dr_model_fresh_top. */
size_t dr_model_popular_top(const dr_model_t *m, int64_t *idx, float *scratch, size_t max);
/* 1-based rank of item_id in the list the model would publish for u now
 * (items not blocked or deleted and not among u's recent events, by
 * dr_model_score()); 0 when the item could not be in it. O(items · dim):
 * for evaluation. */
int64_t dr_model_list_rank(dr_model_t *m, const dr_user_t *u, int64_t item_id);
/* The same up to limit (>= 1): past it, limit + 1, found as soon as limit
 * items score above (a hit@limit needs no more; most misses stop early). */
int64_t dr_model_list_rank_within(dr_model_t *m, const dr_user_t *u, int64_t item_id, int64_t limit);
/* The item rows u's lists leave out for good or for now: its recent events'
 * and its hidden items' (those still in the model; an item in both is
 * listed twice), recent first, into rows (room for DR_USER_EXCLUDED_MAX).
 * Returns the count. Resting items are not among them (a filter, asked per
 * item: dr_user_resting). */
#define DR_USER_EXCLUDED_MAX (DR_RECENT_MAX + DR_HIDDEN_MAX)
size_t dr_model_excluded_rows(const dr_model_t *m, const dr_user_t *u, int64_t *rows);
/* Writes û + v_u into out (dim floats). */
void dr_model_user_vector(const dr_model_t *m, const dr_user_t *u, float *out);

/* --- sharing the item parameters and the prior with other instances ------
 * Every instance learns the items from its own users' events. Each
 * exports, now and then, the sparse changes it made since its last export
 * (Δq_i, or Δδ_i for content items, and Δb_i of each item it changed, Δû
 * and ΔW, the content projection), and adds the others' exports to its own
 * parameters: all converge to the start plus the sum of everyone's changes
 * (items start from a state seeded by their id, W and û from the seed:
 * the same everywhere). Imported changes to û join the next outer step, so
 * users are re-based on them as on a local step; imported changes to W
 * apply at once, and content rows follow W in turns as after a local step.
 * The co-engagement pairs and engagements counted since the last export
 * travel too (added on the other side), and so do the rating blend's sums
 * over each item's ratings (rating mode); the population prior and the
 * blend's global stage stay per instance (each a sample of the same
 * population). Encoding: little-endian, "DRS3", u32 dim, dim floats Δû,
 * u32 c (learner.content.dim; 0 without), u32 first, u32 rows, rows × c
 * floats: the change of W's rows first, first + 1, ... (mod dim) since
 * their last export (all dim rows when they fit in 225,000 bytes, else the
 * next ones in the next export), then u32 n, then n × (i64 item id, u8
 * content, dim floats, float Δb, float Δ residual sum, float Δ
 * squared-error sum, u32 Δ ratings), then u32 m, then m × (i64 item id,
 * float Δn_i, u32 pairs, pairs × (i64 neighbour id, float Δn_ji)). A W
 * block of another c than this model's is skipped (the instances run other
 * learner.content.dim). "DRS2", without the W block, and "DRS1", also
 * without the three rating sums, are still imported (and loaded as saved
 * pending changes). */
int dr_model_sync_enable(dr_model_t *m);
/* Items changed since the last export (factors and co-engagement counted
 * apart: an item with both counts twice). */
size_t dr_model_sync_pending(const dr_model_t *m);
/* Encodes up to max_items of the changes (and Δû, with the first chunk)
 * into *out (malloc'd), at most 900,000 bytes whatever the dimension (an
 * item's co-engagement pairs go whole: one item above that goes alone),
 * and forgets them; *n_items says how many. Call until it encodes 0 items. */
int dr_model_sync_export(dr_model_t *m, size_t max_items, uint8_t **out, size_t *len,
                         size_t *n_items);
/* The changes not exported yet, as a value a commit stores beside the
 * items they changed (the items are stored with them, the changes would
 * otherwise be lost with the process), and back: after a restart they are
 * exported with the next changes. Load after the items and the prior,
 * before anything else changes. DR_ECORRUPT for a malformed value. */
int dr_model_sync_save_pending(dr_model_t *m, uint8_t **out, size_t *len);
int dr_model_sync_load_pending(dr_model_t *m, const void *buf, size_t len);
/* Adds another instance's export. Items new here are created (refused when
 * learner.max.items is reached: counted in *skipped); applied items become
 * dirty (stored by the next commit). DR_ECORRUPT for a malformed buffer,
 * DR_EINVAL for another dimension: nothing applied. */
int dr_model_sync_import(dr_model_t *m, const void *buf, size_t len, size_t *applied,
                         size_t *skipped);

/* --- persistence: fixed little-endian encodings, version byte first --- */

/* Per-item dirty tracking for write-back: items changed, and items removed
 * (their stored records are to be deleted), since the last drain. */
size_t dr_model_dirty_items(const dr_model_t *m);
/* Calls fn for each dirty item with its encoded record, and for each
 * removed item with rec NULL and len 0, then clears the marks. Stops at the
 * first non-zero return and returns it (what was not passed stays marked). */
typedef int (*dr_item_sink_fn)(void *ctx, int64_t item_id, const void *rec, size_t len);
int dr_model_drain_dirty_items(dr_model_t *m, dr_item_sink_fn fn, void *ctx);
/* Restores one item from its record; rec NULL (a drained removal) removes
 * it. DR_ECORRUPT on a bad record. */
int dr_model_load_item(dr_model_t *m, int64_t item_id, const void *rec, size_t len);

/* ---- item lifetime (items.c, docs/CATALOG.md) ------------------------------ */

/* Sets an item's publish time from the catalog (Unix ms, >= 0): its age,
 * and so its expiry, counts from it. Creates the item if needed; an item
 * already past conf.item_ttl_ms is expired at once. 0, DR_ERANGE, or as
 * dr_model_item_index(). */
int dr_model_set_item_published(dr_model_t *m, int64_t item_id, int64_t published_ms);
/* The item's publish time (-1: not known yet; INT64_MIN: it came back
 * after dr_model_remove_item and counts as expired at any age), or
 * DR_ENOTFOUND when absent. */
int64_t dr_model_item_published(dr_model_t *m, int64_t item_id);
/* True when the item is known and past conf.item_ttl_ms (never listed). */
bool dr_model_item_expired(dr_model_t *m, int64_t item_id);
/* Removes an item now (a catalog tombstone): it leaves lists, the model
 * (its row, co-engagement counts and every table naming it) and, at the
 * next drain, the store. An event or record that brings the id back soon
 * after gets an expired row. 0, or DR_ENOTFOUND when absent. */
int dr_model_remove_item(dr_model_t *m, int64_t item_id);
/* Event time the expiry pass compares ages with (the learner advances it
 * to each event's time; never moves back). */
void dr_model_advance_clock(dr_model_t *m, int64_t now_ms);
int64_t dr_model_clock(const dr_model_t *m);

/* What one expiry pass did. */
typedef struct dr_expiry_stats {
    size_t visited;  /* rows looked at */
    size_t expired;  /* items that went past their TTL in this pass */
    size_t removed;  /* items removed after their grace period */
    size_t released; /* removed items' rows freed for reuse */
} dr_expiry_stats_t;
/* One bounded step of item upkeep, for the commit path: visits up to
 * max_rows rows (expires items past the TTL, removes those past the grace
 * period, drops rows whose own record never came after a restore) and
 * sweeps about 32 × max_rows slots of co-engagement tables for removed
 * items, so their rows can be reused. No-op when nothing expires and nothing was
 * removed. 0 or DR_ENOMEM (the step is retried next time). */
int dr_model_expire_items(dr_model_t *m, size_t max_rows, dr_expiry_stats_t *stats);
/* Items in the model (rows holding an item; dr_items_view_t.n counts the
 * rows, free ones included). */
size_t dr_model_live_items(const dr_model_t *m);

/* Rows a new item took over from a removed one, for what indexes the rows
 * (the emitter's retrieval index): the model remembers the last
 * DR_REUSE_LOG. dr_model_reuse_seq() counts them, ever; a reader keeps its
 * own cursor (a count it has seen) and dr_model_reused_rows() writes up to
 * max rows reused since into rows, advancing it. *lost: more were reused
 * since than the model remembers (the oldest are skipped). */
#define DR_REUSE_LOG 4096
uint64_t dr_model_reuse_seq(const dr_model_t *m);
size_t dr_model_reused_rows(const dr_model_t *m, uint64_t *cursor, int64_t *rows, size_t max, bool *lost);

/* Global parameters (û, μ, version, popularity ring, population prior's
 * clock, γ and τ) as one record. */
int dr_model_encode_globals(const dr_model_t *m, uint8_t **out, size_t *len);
int dr_model_load_globals(dr_model_t *m, const void *rec, size_t len);

/* User records. encode allocates *out (free() it). encode_into writes into
 * buf instead (cap bytes; dr_user_encoded_max(u, dim) always suffices):
 * 0, or DR_ERANGE when cap is too small. */
int dr_user_encode(const dr_user_t *u, int dim, uint8_t **out, size_t *len);
size_t dr_user_encoded_max(const dr_user_t *u, int dim);
int dr_user_encode_into(const dr_user_t *u, int dim, uint8_t *buf, size_t cap, size_t *len);
/* Decodes a user record of the current or an older version (a version-1
 * record, from before drift detection, gets an empty detector; version 2
 * lacks the scores of the last list, read as 0). `conf`
 * gives the dimension and the detector parameters. */
int dr_user_decode(int64_t user_id, const dr_learner_conf_t *conf, const void *rec, size_t len,
                   dr_user_t **out);
/* The head of the last list a stored user record holds (items: room for
 * DR_LAST_LIST, *n of them) and the partition of its last event (-1: none),
 * read from the record's start without decoding the rest and without
 * allocating: for sweeps over every stored user (the same layout in every
 * version). 0, or DR_ECORRUPT when that start is not a user record's. */
int dr_user_record_last_list(const void *rec, size_t len, int32_t *partition, int64_t *items, size_t *n);

#endif /* DR_LEARNER_H */
