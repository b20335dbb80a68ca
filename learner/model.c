/* model.c - the online factor model: item matrix, prior û, per-event SGD on
 * v_u (inner loop) and on item parameters, the population prior and the
 * co-engagement term (records.c holds their binary records). See
 * dr_learner.h for the scoring formulas and the threading contract. */
#include "dr_learner.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "learner_internal.h"

static void bound_norm(float *v, int n, float lim);


void dr_learner_conf_default(dr_learner_conf_t *c) {
    memset(c, 0, sizeof(*c));
    c->dim = 32;
    c->mode = DR_MODE_IMPLICIT;
    c->lr_user = 0.5f;
    c->lr_item = 0.1f;
    c->reg_user = 0.01f;
    c->reg_item = 0.001f;
    c->weight[DR_EV_IMPRESSION] = 0.0f; /* see impression_weight */
    c->weight[DR_EV_CLICK] = 1.0f;
    c->weight[DR_EV_LIKE] = 1.5f;
    c->weight[DR_EV_SHARE] = 2.0f;
    c->weight[DR_EV_COMMENT] = 1.5f;
    c->weight[DR_EV_PURCHASE] = 3.0f;
    c->weight[DR_EV_HIDE] = 2.0f;
    c->weight[DR_EV_HIDE_AUTHOR] = 2.0f;
    c->weight[DR_EV_HIDE_TOPIC] = 2.0f;
    c->weight[DR_EV_DWELL] = 1.0f;
    c->weight[DR_EV_RATE] = 1.0f;
    c->dwell_threshold_s = 10.0f;
    c->impression_weight = 1.0f; /* docs/DRIFT.md: ignored impressions are the closed loop's negatives */
    c->impression_timeout_ms = 60000;
    c->negatives = 2;
    c->negative_uniform = true; /* docs/BENCHMARKS.md, "Baselines and one set of defaults" */
    c->negative_weight = 1.0f;
    c->grad_clip = 5.0f;
    c->max_norm = 10.0f;
    c->init_scale = 0.3f;
    c->recent_items = 32;
    c->rest_impressions = 3;
    c->rest_ms = 86400000; /* a day */
    c->cooc_neighbors = 512;
    c->cooc_window = 8;
    c->cooc_weight = 100.0f;
    c->cooc_age = 50.0f;
    /* docs/BENCHMARKS.md, "The co-engagement term (issue 15)" */
    c->cooc_halflife = 10000.0f;
    c->cooc_pair_decay = 5.0f;
    c->cooc_query_decay = 0.5f;
    c->cooc_source_norm = 1.0f;
    c->cooc_candidate_norm = 0.1f;
    c->cooc_hop_weight = 1.2f;
    c->cooc_hop_seeds = 5;
    c->cooc_hop_spread = 300.0f;
    c->max_items = 1000000; /* ~8 GB of item state at the other defaults, worst case */
    c->item_ttl_ms = 0;            /* items never expire unless told (a catalog of films does not) */
    c->item_grace_ms = 3600000;    /* an hour between leaving lists and leaving the model */
    c->fresh_weight = 0.0f;        /* docs/CATALOG.md */
    c->fresh_halflife_ms = 21600000; /* six hours */
    c->rating_blend = true;
    c->seed = 42;
    c->drift_enabled = true;
    dr_adwin_conf_default(&c->drift);
    c->drift.clock = 1;          /* per-user streams are short: check every event */
    c->drift.min_window = 10;
    c->drift.min_sub_window = 5;
    c->drift.delta = 0.5;        /* docs/DRIFT.md: with drift_min_change, the detection and false alarms measured */
    c->readapt_epochs = 3;
    c->regime_at_cut = true;
    c->drift_explore_events = 300; /* docs/DRIFT.md: recovery after a switch */
    c->drift_explore_engaged = 3;
    c->explore_miss_rate = 0.9;
    c->drift_scale = 1.0f;
    c->drift_min_change = 0.15; /* docs/DRIFT.md: with δ, the false alarms measured */
    c->prior_step = 0.1f;
    c->prior_period = 1000;
    c->lr_content = 0.001f;
    c->content_refresh_rows = 16384; /* docs/COLD-START.md: ~1 ms an outer step */
    c->pop_weight = 1.0f;
    c->pop_fade = 20.0f;
    c->pop_step = 1.0f;
    c->pop_halflife = 20000.0f;
    c->pop_authors = 1000000; /* docs/CATALOG.md: new posts of known authors */
    c->pop_content = false;   /* ... and of content like earning posts' (opt-in: no gain measured) */
    c->drift_arm_share = 1.0;
    c->trend_weight = 2.0f;
    c->trend_topic_weight = 100.0f;
    c->trend_positives = 100000;
}

int dr_learner_conf_check(const dr_learner_conf_t *c, char *errstr, size_t n) {
    const char *bad = NULL;
    if (c->dim < 1 || c->dim > DR_MAX_DIM) bad = "learner.dim must be in [1, 512]";
    else if (c->mode != DR_MODE_IMPLICIT && c->mode != DR_MODE_RATING) bad = "learner.mode";
    else if (!(c->lr_user >= 0 && c->lr_user <= 10) || !(c->lr_item >= 0 && c->lr_item <= 10))
        bad = "learner.lr.* must be in [0, 10]";
    else if (!(c->reg_user >= 0) || !(c->reg_item >= 0)) bad = "learner.reg.* must be >= 0";
    else if (c->recent_items < 1 || c->recent_items > DR_RECENT_MAX)
        bad = "learner.recent.items must be in [1, 64]";
    else if (c->rest_impressions < 0 || c->rest_impressions > 15)
        bad = "learner.rest.impressions must be in [0, 15]";
    else if (c->rest_impressions > 0 && c->rest_ms < 1) bad = "learner.rest.ms must be >= 1";
    else if (c->negatives < 0 || c->negatives > 100) bad = "learner.negatives must be in [0, 100]";
    else if (!(c->grad_clip > 0) || !(c->max_norm > 0)) bad = "learner.grad.clip and learner.max.norm must be > 0";
    else if (c->max_items < 1) bad = "learner.max.items must be >= 1";
    else if (c->item_ttl_ms < 0 || c->item_ttl_ms > INT64_C(315360000000000))
        bad = "learner.item.ttl.ms must be in [0, 1e4 years]";
    else if (c->item_grace_ms < 0 || c->item_grace_ms > INT64_C(315360000000000))
        bad = "learner.item.grace.ms must be in [0, 1e4 years]";
    else if (!(c->fresh_weight >= 0 && c->fresh_weight <= 1e4f)) bad = "learner.item.fresh.weight must be in [0, 1e4]";
    else if (c->fresh_halflife_ms < 1 || c->fresh_halflife_ms > INT64_C(315360000000000))
        bad = "learner.item.fresh.halflife.ms must be in [1, 1e4 years]";
    else if (dr_adwin_conf_check(&c->drift) != 0) bad = "drift.*: delta in (0,1), clock >= 1, max.buckets 2..64";
    else if (c->readapt_epochs < 0 || c->readapt_epochs > 100) bad = "drift.readapt.epochs must be in [0, 100]";
    else if (!(c->prior_step >= 0 && c->prior_step <= 1)) bad = "learner.prior.step must be in [0, 1]";
    else if (c->prior_period < 1) bad = "learner.prior.period must be >= 1";
    else if (c->content_dim < 0 || c->content_dim > DR_MAX_CONTENT_DIM)
        bad = "learner.content.dim must be in [0, 4096]";
    else if (!(c->lr_content >= 0 && c->lr_content <= 10)) bad = "learner.lr.content must be in [0, 10]";
    else if (c->content_refresh_rows < 0) bad = "learner.content.refresh.rows must be >= 0";
    else if (c->cooc_neighbors < 0 || c->cooc_neighbors > DR_MAX_NEIGHBORS)
        bad = "learner.cooc.neighbors must be in [0, 65536]";
    else if (c->cooc_window < 1 || c->cooc_window > DR_RECENT_MAX) bad = "learner.cooc.window must be in [1, 64]";
    else if (!(c->cooc_weight >= 0 && c->cooc_weight <= 1e6)) bad = "learner.cooc.weight must be in [0, 1e6]";
    else if (!(c->cooc_age >= 0 && c->cooc_age <= 1e9f)) bad = "learner.cooc.age must be in [0, 1e9]";
    else if (!(c->cooc_halflife == 0 || (c->cooc_halflife >= 1 && c->cooc_halflife <= 1e12f)))
        bad = "learner.cooc.halflife must be 0 or in [1, 1e12]";
    else if (!(c->cooc_pair_decay >= 0 && c->cooc_pair_decay <= 1e6f))
        bad = "learner.cooc.pair.decay must be in [0, 1e6]";
    else if (!(c->cooc_query_decay >= 0 && c->cooc_query_decay <= 4))
        bad = "learner.cooc.query.decay must be in [0, 4]";
    else if (!(c->cooc_source_norm >= 0 && c->cooc_source_norm <= 1))
        bad = "learner.cooc.source.norm must be in [0, 1]";
    else if (!(c->cooc_candidate_norm >= 0 && c->cooc_candidate_norm <= 1))
        bad = "learner.cooc.candidate.norm must be in [0, 1]";
    else if (!(c->cooc_hop_weight >= 0 && c->cooc_hop_weight <= 100))
        bad = "learner.cooc.hop.weight must be in [0, 100]";
    else if (c->cooc_hop_seeds < 0 || c->cooc_hop_seeds > DR_COOC_HOP_SEEDS_MAX)
        bad = "learner.cooc.hop.seeds must be in [0, 8]";
    else if (!(c->cooc_hop_spread >= 0 && c->cooc_hop_spread <= 1e9f))
        bad = "learner.cooc.hop.spread must be in [0, 1e9]";
    else if (!(c->pop_weight >= 0 && c->pop_weight <= DR__POP_GAMMA_MAX))
        bad = "learner.prior.popularity.weight must be in [0, 100]";
    else if (!(c->pop_fade >= DR__POP_TAU_MIN && c->pop_fade <= DR__POP_TAU_MAX))
        bad = "learner.prior.popularity.fade must be in [0.1, 1e6]";
    else if (!(c->pop_step >= 0 && c->pop_step <= 10)) bad = "learner.prior.popularity.step must be in [0, 10]";
    else if (c->pop_authors < 0 || c->pop_authors > 1000000000) bad = "learner.prior.popularity.authors must be in [0, 1e9]";
    else if (!(c->pop_halflife >= 0 && c->pop_halflife <= 1e12f))
        bad = "learner.prior.popularity.halflife must be in [0, 1e12]";
    else if (!(c->drift_arm_share >= 0 && c->drift_arm_share <= 1)) bad = "drift.arm.share must be in [0, 1]";
    else if (!(c->trend_weight >= 0 && c->trend_weight <= 100)) bad = "drift.global.trend.weight must be in [0, 100]";
    else if (!(c->trend_topic_weight >= 0 && c->trend_topic_weight <= 1000))
        bad = "drift.global.trend.topic.weight must be in [0, 1000]";
    else if (c->trend_positives < 0 || c->trend_positives > 1000000000000LL) bad = "drift.global.trend.positives must be in [0, 1e12]";
    if (!bad) return 0;
    snprintf(errstr, n, "%s", bad);
    return DR_ECONFIG;
}

/* ---- users ---------------------------------------------------------------- */

size_t dr_user_size(int dim) { return sizeof(dr_user_t) + (size_t)dim * sizeof(float); }

static dr_user_t *user_alloc(int64_t user_id, int dim, const dr_adwin_conf_t *drift) {
    dr_user_t *u = calloc(1, dr_user_size(dim));
    if (!u) return NULL;
    u->user_id = user_id;
    u->last_source.partition = -1;
    u->last_source.offset = -1;
    u->prior_version = -1;
    if (dr_adwin_init(&u->drift, drift) != 0) dr_adwin_init(&u->drift, NULL);
    return u;
}

dr_user_t *dr_user_new(int64_t user_id, int dim) { return user_alloc(user_id, dim, NULL); }

dr_user_t *dr_user_new_conf(int64_t user_id, const dr_learner_conf_t *conf) {
    return user_alloc(user_id, conf->dim, &conf->drift);
}

void dr_user_free(dr_user_t *u) {
    if (!u) return;
    dr_adwin_free_buckets(&u->drift);
    free(u->rating.content);
    free(u);
}

bool dr_user_has_recent(const dr_user_t *u, int64_t item_id) {
    for (unsigned i = 0; i < u->recent_len; i++)
        if (u->recent[i].item_id == item_id) return true;
    return false;
}

/* A bounded ring of ids (the hidden items, authors, topics): ids[0..*len);
 * once it holds cap, *head is the oldest, which a new id replaces. */
static bool ids_hold(const int64_t *ids, unsigned len, int64_t id) {
    for (unsigned i = 0; i < len; i++)
        if (ids[i] == id) return true;
    return false;
}

static void ids_remember(int64_t *ids, uint8_t *len, uint8_t *head, unsigned cap, int64_t id) {
    if (ids_hold(ids, *len, id)) return;
    if (*len < cap) {
        ids[(*len)++] = id;
        return;
    }
    ids[*head] = id;
    *head = (uint8_t)((*head + 1) % cap);
}

bool dr_user_has_hidden(const dr_user_t *u, int64_t item_id) {
    return ids_hold(u->hidden, u->hidden_len, item_id);
}

bool dr_user_excludes(const dr_user_t *u, int64_t item_id) {
    return dr_user_has_recent(u, item_id) || dr_user_has_hidden(u, item_id) ||
           dr_user_resting(u, item_id);
}

/* Remembers an author or topic the user hid (-1: the catalog names none). */
static void ring_remember(dr_id_ring_t *r, int64_t id) {
    if (id >= 0) ids_remember(r->id, &r->len, &r->head, DR_HIDDEN_SOURCES, id);
}

bool dr_user_passed_topic(const dr_user_t *u, int64_t topic) {
    return topic >= 0 && ids_hold(u->passed_topics.id, u->passed_topics.len, topic);
}

/* An outcome that was not an engagement, with item idx, while u's lists
 * explore (the caller asked dr_user_exploring): its topic goes after the
 * others, so that the next lists show topics u has not passed over yet
 * instead of the same few again. */
static void passed_over(const dr_model_t *m, dr_user_t *u, size_t idx) {
    ring_remember(&u->passed_topics, m->topic[idx]);
}

bool dr_user_hides_source(const dr_user_t *u, int64_t author, int64_t topic) {
    return (author >= 0 && ids_hold(u->hidden_authors.id, u->hidden_authors.len, author)) ||
           (topic >= 0 && ids_hold(u->hidden_topics.id, u->hidden_topics.len, topic));
}

/* Remembers a hidden item; once DR_HIDDEN_MAX are kept, the oldest hide
 * makes room (the bound on a user's state). */
static void user_hide(dr_user_t *u, int64_t item_id) {
    ids_remember(u->hidden, &u->hidden_len, &u->hidden_head, DR_HIDDEN_MAX, item_id);
}

/* The slot of the ring entry `back` places before the head (0: the newest).
 * Unsigned and reduced modulo the ring: decoding adapts every stored ring
 * to learner.recent.items, and this keeps a ring that does not match it
 * anyway (a bug elsewhere) inside recent[] rather than far outside it. */
static unsigned ring_slot(const dr_user_t *u, int ring, unsigned back) {
    unsigned r = (unsigned)ring;
    return ((unsigned)u->recent_head % r + r - 1 - back % r) % r;
}

/* Entries of u's ring that the model's ring size can hold. */
static unsigned ring_len(const dr_user_t *u, int ring) {
    return u->recent_len < ring ? u->recent_len : (unsigned)ring;
}

static void user_remember(dr_user_t *u, const dr_event_t *ev, int ring, float residual) {
    if (u->recent_head >= ring) u->recent_head = 0; /* see ring_slot */
    dr_recent_event_t *r = &u->recent[u->recent_head];
    r->item_id = ev->item_id;
    r->value = ev->value;
    r->residual = residual;
    r->type = (uint8_t)ev->type;
    r->sample = (uint32_t)u->drift_samples;
    u->recent_head = (uint16_t)((u->recent_head + 1) % ring);
    if (u->recent_len < ring) u->recent_len++;
}

/* ---- items ---------------------------------------------------------------- */

/* Rebuilds the id table with n slots (a power of two, more than twice the
 * live items). */
int dr__rehash_slots(dr_model_t *m, size_t n) {
    int64_t *ids = malloc(n * sizeof(*ids)), *idx = malloc(n * sizeof(*idx));
    if (!ids || !idx) { free(ids); free(idx); return DR_ENOMEM; }
    for (size_t i = 0; i < n; i++) ids[i] = -1;
    for (size_t i = 0; i < m->n_items; i++) {
        if (m->ids[i] < 0) continue; /* a free row */
        size_t s = dr_mix64((uint64_t)m->ids[i]) & (n - 1);
        while (ids[s] != -1) s = (s + 1) & (n - 1);
        ids[s] = m->ids[i];
        idx[s] = (int64_t)i;
    }
    free(m->slot_id);
    free(m->slot_idx);
    m->slot_id = ids;
    m->slot_idx = idx;
    m->n_slots = n;
    m->slot_rehashes++;
    return 0;
}

static int grow_slots(dr_model_t *m) { return dr__rehash_slots(m, m->n_slots ? m->n_slots * 2 : 1024); }

/* realloc that leaves *p untouched on failure. */
static int grow_array(void **p, size_t elem_size, size_t count) {
    void *np = realloc(*p, elem_size * count);
    if (!np) return DR_ENOMEM;
    *p = np;
    return 0;
}

static int grow_items(dr_model_t *m) {
    size_t n = m->cap_items ? m->cap_items * 2 : 1024;
    if (grow_array((void **)&m->q, sizeof(float) * (size_t)m->dim, n) ||
        grow_array((void **)&m->bias, sizeof(float), n) ||
        grow_array((void **)&m->ids, sizeof(int64_t), n) ||
        grow_array((void **)&m->published, sizeof(int64_t), n) ||
        grow_array((void **)&m->author, sizeof(int64_t), n) ||
        grow_array((void **)&m->topic, sizeof(int64_t), n) ||
        grow_array((void **)&m->excluded, 1, n) || grow_array((void **)&m->dirty, 1, n) ||
        grow_array((void **)&m->count, sizeof(uint64_t), n) ||
        grow_array((void **)&m->dirty_list, sizeof(int64_t), n) ||
        grow_array((void **)&m->has_content, 1, n) || grow_array((void **)&m->engaged, sizeof(float), n) ||
        grow_array((void **)&m->engaged_norm, sizeof(float), n) ||
        grow_array((void **)&m->nbr_base, sizeof(double), n) ||
        grow_array((void **)&m->hop_acc, sizeof(float), n) ||
        grow_array((void **)&m->hop_touched, sizeof(int32_t), n) ||
        grow_array((void **)&m->nbr, sizeof(dr__nbr_t), n) ||
        grow_array((void **)&m->pop_count, sizeof(float), n) ||
        grow_array((void **)&m->pop_time, sizeof(uint64_t), n) ||
        grow_array((void **)&m->pop_score, sizeof(float), n) ||
        grow_array((void **)&m->pop_seed, sizeof(float), n) ||
        grow_array((void **)&m->author_joined, sizeof(uint64_t), n) ||
        grow_array((void **)&m->content_joined, sizeof(uint64_t), n) ||
        grow_array((void **)&m->trend_count, sizeof(uint32_t), n) ||
        grow_array((void **)&m->trend_lift, sizeof(float), n) ||
        grow_array((void **)&m->trend_score, sizeof(float), n) ||
        grow_array((void **)&m->fresh_score, sizeof(float), n) ||
        grow_array((void **)&m->rated, sizeof(dr__item_ratings_t), n))
        return DR_ENOMEM;
    /* item_init clears a row's table: it must start as a valid empty one */
    memset(m->nbr + m->cap_items, 0, (n - m->cap_items) * sizeof(dr__nbr_t));
    memset(m->hop_acc + m->cap_items, 0, (n - m->cap_items) * sizeof(float));
    if (m->content_dim > 0 &&
        (grow_array((void **)&m->emb, sizeof(float) * (size_t)m->content_dim, n) ||
         grow_array((void **)&m->delta, sizeof(float) * (size_t)m->dim, n)))
        return DR_ENOMEM;
    m->cap_items = n;
    return 0;
}

/* Row idx's units: the exponent e of 2^e that takes its stored counts to
 * true ones as of `clock` (0 without fading). A base ahead of the clock (a
 * record loaded before the globals that hold the clock, or from another
 * instance's store) counts as now, so nothing is ever scaled up. */
static double row_exponent(const dr_model_t *m, size_t idx, double clock) {
    return m->conf.cooc_halflife > 0 ? fmin(m->nbr_base[idx] - clock, 0.0) / m->conf.cooc_halflife : 0.0;
}

double dr__cooc_scale(const dr_model_t *m, size_t idx) { return exp2(row_exponent(m, idx, m->cooc_clock)); }

double dr__cooc_engaged(const dr_model_t *m, size_t idx) {
    return m->conf.cooc_neighbors == 0 ? 0.0 : m->engaged[idx] * dr__cooc_scale(m, idx);
}

/* n_i (in its row's units), and n_i^-b as of cooc_ref (b =
 * conf.cooc_candidate_norm) that the term multiplies a candidate's score by
 * (× 2^(b(clock - ref)/H), common to all candidates: recent_engaged). A
 * count below 1 counts as 1, as it always has: an item's first engagements
 * do not make it a favourite. */
void dr__set_engaged(dr_model_t *m, size_t idx, float n) {
    m->engaged[idx] = n;
    double h = m->conf.cooc_halflife;
    double x = h > 0 ? (fmin(m->nbr_base[idx], m->cooc_clock) - m->cooc_ref) / h : 0.0; /* to ref's units */
    double l = n > 0 ? log2((double)n) + x : 0.0;
    m->engaged_norm[idx] = (float)exp2(-m->conf.cooc_candidate_norm * fmax(l, 0.0));
}

/* Row idx's counts × f (never below FLT_MIN: 0 reads as absent), n_i too,
 * its units now as of the clock. */
static void rescale_row(dr_model_t *m, size_t idx, float f) {
    dr__nbr_t *t = &m->nbr[idx];
    for (uint32_t s = 0; s < t->n; s++) t->e[s].w = fmaxf(t->e[s].w * f, FLT_MIN);
    m->nbr_base[idx] = m->cooc_clock;
    dr__set_engaged(m, idx, m->engaged[idx] * f);
}

void dr__cooc_convert_row(dr_model_t *m, size_t idx, float made_halflife) {
    if (made_halflife == m->conf.cooc_halflife) return;
    double e = made_halflife > 0 ? fmin(m->nbr_base[idx] - m->cooc_clock, 0.0) / made_halflife : 0.0;
    rescale_row(m, idx, (float)exp2(e));
}

/* 2^((clock - base) / H): what a count added to row idx now weighs in its
 * units. A row whose base is 30 half-lives old is first rescaled to the
 * clock (its counts × 2^-30 or less, n_i too), so no weight overflows a
 * float however long the row lives; the caller marks the item dirty. */
static double row_gain(dr_model_t *m, size_t idx) {
    double e = -row_exponent(m, idx, m->cooc_clock);
    if (e < 30.0) return exp2(e);
    rescale_row(m, idx, (float)exp2(-e));
    return 1.0;
}

/* The clock engaged_norm is as of: the clock rounded down to 20 half-lives,
 * a function of the stored clock alone, so that a restored model scores
 * to the bit what the one before it did. */
static double norm_ref(const dr_model_t *m) {
    double span = 20.0 * m->conf.cooc_halflife;
    return span > 0 ? floor(m->cooc_clock / span) * span : 0.0;
}

/* Moves the clock by n engagements; when it crosses into the next 20
 * half-lives, engaged_norm is worked out again (one pass over the items),
 * so the common factor of recent_engaged stays within 2^(20b). */
void dr__cooc_tick(dr_model_t *m, double n) {
    m->cooc_clock += n;
    if (norm_ref(m) != m->cooc_ref) dr__cooc_rebase_norms(m);
}

int dr__cooc_add_synced(dr_model_t *m, size_t idx, int32_t key, float w) {
    double gain = row_gain(m, idx);
    return dr__nbr_add(&m->nbr[idx], key, (float)(w * gain), (uint32_t)m->conf.cooc_neighbors, m->ids);
}

void dr__cooc_engaged_synced(dr_model_t *m, size_t idx, float n) {
    double gain = row_gain(m, idx);
    dr__set_engaged(m, idx, (float)(m->engaged[idx] + n * gain));
}

void dr__cooc_rebase_norms(dr_model_t *m) {
    m->cooc_ref = norm_ref(m);
    for (size_t i = 0; i < m->n_items; i++) dr__set_engaged(m, i, m->engaged[i]);
}

void dr__item_init(dr_model_t *m, size_t idx, int64_t item_id) {
    uint64_t s = dr_mix64((uint64_t)item_id ^ m->conf.seed);
    float *q = m->q + idx * (size_t)m->dim;
    for (int k = 0; k < m->dim; k++)
        q[k] = (float)((dr_rand01(&s) * 2.0 - 1.0) * m->conf.init_scale);
    m->bias[idx] = 0.0f;
    m->ids[idx] = item_id;
    m->published[idx] = -1;
    m->author[idx] = m->topic[idx] = -1;
    m->excluded[idx] = 0;
    m->dirty[idx] = 0;
    m->count[idx] = 0;
    m->has_content[idx] = 0;
    m->nbr_base[idx] = m->cooc_clock;
    dr__set_engaged(m, idx, 0.0f);
    dr__nbr_clear(&m->nbr[idx]);
    m->pop_count[idx] = 0.0f;
    m->pop_time[idx] = 0;
    m->pop_score[idx] = 0.0f;
    m->pop_seed[idx] = 0.0f;
    m->author_joined[idx] = 0;
    m->content_joined[idx] = 0;
    m->trend_count[idx] = 0;
    m->trend_lift[idx] = m->trend_score[idx] = 0.0f;
    m->fresh_score[idx] = 1.0f;
    memset(&m->rated[idx], 0, sizeof(m->rated[idx]));
}

static void mark_item_dirty(dr_model_t *m, size_t idx) {
    if (m->dirty[idx]) return;
    m->dirty[idx] = 1;
    m->dirty_list[m->n_dirty++] = (int64_t)idx;
}

void dr__mark_item_dirty(dr_model_t *m, size_t idx) { mark_item_dirty(m, idx); }

int64_t dr_model_item_index(dr_model_t *m, int64_t item_id, bool create) {
    size_t mask = m->n_slots - 1;
    size_t s = dr_mix64((uint64_t)item_id) & mask;
    for (; m->slot_id[s] != -1; s = (s + 1) & mask)
        if (m->slot_id[s] == item_id) return m->slot_idx[s];
    if (!create) return DR_ENOTFOUND;
    if (item_id < 0 || item_id >= DR_MAX_ID) return DR_ERANGE;
    if ((int64_t)m->n_live >= m->conf.max_items) return DR_ERANGE;
    if (m->free_rows.n == 0 && m->n_items == m->cap_items && grow_items(m) != 0) return DR_ENOMEM;
    if ((m->n_live + 1) * 2 > m->n_slots) {
        if (grow_slots(m) != 0) return DR_ENOMEM;
        mask = m->n_slots - 1;
        for (s = dr_mix64((uint64_t)item_id) & mask; m->slot_id[s] != -1;) s = (s + 1) & mask;
    }
    size_t idx = dr__item_row_take(m); /* a freed row, else the next one */
    m->n_live++;
    dr__item_init(m, idx, item_id);
    dr__item_stamp_new(m, idx);
    m->slot_id[s] = item_id;
    m->slot_idx[s] = (int64_t)idx;
    return (int64_t)idx;
}

/* q_i = W·e_i + δ_i for a content item. */
void dr__content_refresh_item(dr_model_t *m, size_t idx) {
    int c = m->content_dim;
    const float *e = m->emb + idx * (size_t)c, *delta = m->delta + idx * (size_t)m->dim;
    float *q = m->q + idx * (size_t)m->dim;
    for (int k = 0; k < m->dim; k++) {
        const float *w = m->W + (size_t)k * (size_t)c;
        float s = delta[k];
        for (int j = 0; j < c; j++) s += w[j] * e[j];
        q[k] = s;
    }
}

/* Content items' q_i in rows [first, first + n) brought up to W. With Wᵀ
 * the inner loop runs over q_i's d coordinates and vectorises; each q_i[k]
 * still sums δ_i[k], then w_kj·e_ij for j = 0, 1, ... in that order, so the
 * floats are those of dr__content_refresh_item (no contraction under ISO
 * C): ~5x faster, which matters at 100k+ items (docs/BENCHMARKS.md). */
static void content_refresh_rows(dr_model_t *m, size_t first, size_t n) {
    size_t d = (size_t)m->dim, c = (size_t)m->content_dim;
    float *wt = malloc(d * c * sizeof(float));
    if (!wt) { /* the slower way, same result */
        for (size_t i = first; i < first + n; i++)
            if (m->has_content[i]) dr__content_refresh_item(m, i);
        return;
    }
    for (size_t k = 0; k < d; k++)
        for (size_t j = 0; j < c; j++) wt[j * d + k] = m->W[k * c + j];
    for (size_t i = first; i < first + n; i++) {
        if (!m->has_content[i]) continue;
        const float *restrict e = m->emb + i * c;
        float *restrict q = m->q + i * d;
        memcpy(q, m->delta + i * d, d * sizeof(float));
        for (size_t j = 0; j < c; j++) {
            const float *restrict w = wt + j * d;
            float ej = e[j];
            for (size_t k = 0; k < d; k++) q[k] += w[k] * ej;
        }
    }
    free(wt);
}

/* Every content item's q_i (a restore, after W was read). */
void dr__content_refresh_all(dr_model_t *m) {
    if (m->n_content == 0) return;
    content_refresh_rows(m, 0, m->n_items);
}

/* The outer step's share: conf.content_refresh_rows rows from where the
 * last step stopped, wrapping, so that a large catalog costs each step a
 * bounded pass (a whole 1M-item catalog is ~70 ms of memory traffic, at
 * every step: docs/COLD-START.md) and every row follows W within
 * n_items / rows steps. A row an event touches is brought up to W then
 * (sgd_step), whatever the turn. */
static void content_refresh_step(dr_model_t *m) {
    if (m->n_content == 0 || m->n_items == 0) return;
    size_t rows = (size_t)m->conf.content_refresh_rows;
    if (rows == 0 || rows >= m->n_items) {
        content_refresh_rows(m, 0, m->n_items);
        m->content_cursor = 0;
        return;
    }
    if (m->content_cursor >= m->n_items) m->content_cursor = 0; /* the catalog shrank */
    size_t first = m->content_cursor, tail = m->n_items - first;
    if (rows <= tail) {
        content_refresh_rows(m, first, rows);
    } else {
        content_refresh_rows(m, first, tail);
        content_refresh_rows(m, 0, rows - tail);
    }
    m->content_cursor = (first + rows) % m->n_items;
}

bool dr_model_item_has_content(const dr_model_t *m, int64_t idx) {
    return idx >= 0 && (size_t)idx < m->n_items && m->has_content[idx];
}

/* The pseudo-count item idx starts from (its own count brought to now
 * first, so that both are as of the same clock): its author's record when
 * it has one that earned something, else what posts of similar content
 * earned (docs/CATALOG.md). An item its events already describe keeps its
 * own; an author's record replaces a content seed, as a new author's
 * replaces the old. */
static void start_pop_seed(dr_model_t *m, size_t idx) {
    bool authors = dr__authors_on(m), content = dr__content_prior_on(m) && m->has_content[idx];
    if (!authors && !content) return;
    m->pop_count[idx] = (float)(m->pop_count[idx] * dr__pop_decay(m, m->pop_time[idx], m->pos_clock));
    m->pop_time[idx] = m->pos_clock;
    float seed = authors ? dr__author_seed(m, m->author[idx]) : 0.0f;
    if (seed == 0.0f && content && m->count[idx] == 0)
        seed = dr__content_prior_seed(m, m->emb + idx * (size_t)m->content_dim);
    m->pop_seed[idx] = seed;
    dr__pop_refresh_item(m, idx);
}

int dr_model_set_item_content(dr_model_t *m, int64_t item_id, const float *emb, size_t len) {
    if (m->content_dim == 0 || len != (size_t)m->content_dim) return DR_EINVAL;
    for (size_t j = 0; j < len; j++)
        if (!isfinite(emb[j]) || fabsf(emb[j]) > 1e6f) return DR_EINVAL;
    int64_t i = dr_model_item_index(m, item_id, true);
    if (i < 0) return (int)i;
    size_t idx = (size_t)i;
    int c = m->content_dim;
    /* unit length: the step W takes for an item does not depend on how its
     * encoder scales vectors (or how many genres a multi-hot vector has) */
    double norm2 = 0.0;
    for (size_t j = 0; j < len; j++) norm2 += (double)emb[j] * emb[j];
    if (norm2 == 0.0) return DR_EINVAL;
    /* a catalog record sent again (an edit, a compacted topic read anew)
     * replaces the content, not the post's age or its own random start */
    bool first_content = !m->has_content[idx];
    dr__content_prior_leave(m, idx); /* new content: its share goes with the old */
    float *e = m->emb + idx * (size_t)c;
    for (size_t j = 0; j < len; j++) e[j] = (float)(emb[j] / sqrt(norm2));
    float *delta = m->delta + idx * (size_t)m->dim;
    if (m->count[idx] == 0) {
        /* untouched: its content plus its own random start (which keeps
         * items of similar content apart until interactions tell them
         * apart); with content already, δ_i is that start (q_i is not: it
         * holds the old content's part too) */
        if (first_content) memcpy(delta, m->q + idx * (size_t)m->dim, (size_t)m->dim * sizeof(float));
    } else {
        /* it learned already: keep q_i, the content explains part of it */
        const float *q = m->q + idx * (size_t)m->dim;
        for (int k = 0; k < m->dim; k++) {
            const float *w = m->W + (size_t)k * (size_t)c;
            float s = 0.0f;
            for (int j = 0; j < c; j++) s += w[j] * e[j];
            delta[k] = q[k] - s;
        }
    }
    if (!m->has_content[idx]) m->n_content++;
    m->has_content[idx] = 1;
    dr__content_refresh_item(m, idx);
    if (m->count[idx] == 0 && dr__content_prior_on(m)) start_pop_seed(m, idx); /* what posts like it earned */
    if (first_content) m->content_joined[idx] = m->pos_clock;
    dr__content_prior_join(m, idx);
    mark_item_dirty(m, idx);
    return 0;
}

int dr_model_set_item_excluded(dr_model_t *m, int64_t item_id, bool excluded) {
    int64_t idx = dr_model_item_index(m, item_id, true);
    if (idx < 0) return (int)idx;
    if (excluded) m->excluded[idx] |= DR__EXCL_CATALOG;
    else m->excluded[idx] &= (uint8_t)~DR__EXCL_CATALOG;
    mark_item_dirty(m, (size_t)idx);
    return 0;
}

/* The item moves to another author (-1: none): its share leaves the old
 * author's record and joins the new one's, and with the author prior on it
 * takes the new author's pseudo-count (its own count brought to now first,
 * so that both are as of the same clock). */
static void author_assign(dr_model_t *m, size_t idx, int64_t author) {
    dr__author_leave(m, idx);
    m->author[idx] = author;
    m->author_joined[idx] = m->pos_clock;
    start_pop_seed(m, idx);
    dr__author_join(m, idx);
}

int dr_model_set_item_source(dr_model_t *m, int64_t item_id, int64_t author, int64_t topic) {
    if (author < -1 || author >= DR_MAX_ID || topic < -1 || topic >= DR_MAX_ID) return DR_ERANGE;
    int64_t idx = dr_model_item_index(m, item_id, true);
    if (idx < 0) return (int)idx;
    if (m->author[idx] == author && m->topic[idx] == topic) return 0;
    if (m->author[idx] != author) author_assign(m, (size_t)idx, author);
    m->topic[idx] = topic;
    mark_item_dirty(m, (size_t)idx);
    return 0;
}

bool dr_model_item_excluded(dr_model_t *m, int64_t item_id) {
    int64_t idx = dr_model_item_index(m, item_id, false);
    return idx >= 0 && (m->excluded[idx] & DR__EXCL_CATALOG);
}

int dr_model_excluded_items(const dr_model_t *m, int64_t **ids, size_t *n, size_t *cap) {
    *n = 0;
    for (size_t i = 0; i < m->n_items; i++) {
        if (!(m->excluded[i] & DR__EXCL_CATALOG) || (m->excluded[i] & DR__EXCL_FREE)) continue;
        if (*n == *cap) {
            size_t room = *cap ? *cap * 2 : 64;
            int64_t *v = realloc(*ids, room * sizeof(*v));
            if (!v) return DR_ENOMEM;
            *ids = v;
            *cap = room;
        }
        (*ids)[(*n)++] = m->ids[i];
    }
    return 0;
}

void dr_model_items(const dr_model_t *m, dr_items_view_t *v) {
    v->n = m->n_items;
    v->dim = m->dim;
    v->q = m->q;
    v->bias = m->bias;
    v->ids = m->ids;
    v->excluded = m->excluded;
    v->pop = m->pop_score;
    v->author = m->author;
    v->topic = m->topic;
}

/* ---- model lifecycle ------------------------------------------------------ */

int dr_model_new(dr_model_t **out, const dr_learner_conf_t *conf, char *errstr, size_t n) {
    *out = NULL;
    int err = dr_learner_conf_check(conf, errstr, n);
    if (err) return err;
    dr_model_t *m = calloc(1, sizeof(*m));
    if (!m) goto out_nomem;
    m->conf = *conf;
    m->dim = conf->dim;
    dr__rating_blend_reset(&m->blend, dr__rating_inputs(conf));
    m->prior = calloc((size_t)m->dim, sizeof(float));
    m->scratch = calloc((size_t)m->dim, sizeof(float));
    m->reptile_sum = calloc((size_t)m->dim, sizeof(double));
    m->past_prior = calloc((size_t)DR_PRIOR_HISTORY * (size_t)m->dim, sizeof(float));
    m->content_dim = conf->content_dim;
    if (m->content_dim > 0 && !(m->W = calloc((size_t)m->dim * (size_t)m->content_dim, sizeof(float))))
        goto out_nomem;
    if (conf->cooc_neighbors > 0 &&
        !(m->nbr_ranked = malloc((size_t)conf->cooc_neighbors * sizeof(*m->nbr_ranked))))
        goto out_nomem;
    m->rec_buf = malloc(dr__item_record_cap(m));
    if (!m->rec_buf || !m->prior || !m->scratch || !m->reptile_sum || !m->past_prior || grow_items(m) != 0 ||
        grow_slots(m) != 0)
        goto out_nomem;
    for (int h = 0; h < DR_PRIOR_HISTORY; h++) m->past_version[h] = -1;
    m->pop_gamma = conf->pop_weight;
    m->pop_log_tau = logf(conf->pop_fade);
    /* W starts like an item vector (q_i = W·e_i with ‖e_i‖ = 1 then has the
     * spread of a new free item), so new content items differ from the start */
    uint64_t ws = dr_mix64(conf->seed ^ 0xc0de7u);
    for (size_t k = 0; m->W && k < (size_t)m->dim * (size_t)m->content_dim; k++)
        m->W[k] = (float)((dr_rand01(&ws) * 2.0 - 1.0) * conf->init_scale);
    /* û starts small and random (seeded), not at 0: with u = û + v_u = 0 for
     * every new user, an item's first gradients g·u would vanish. */
    uint64_t s = dr_mix64(conf->seed ^ 0x5eedu);
    for (int k = 0; k < m->dim && !conf->prior_zero; k++)
        m->prior[k] = (float)((dr_rand01(&s) * 2.0 - 1.0) * conf->init_scale);
    *out = m;
    return 0;
out_nomem:
    dr_model_free(m);
    snprintf(errstr, n, "out of memory creating the model");
    return DR_ENOMEM;
}

void dr_model_free(dr_model_t *m) {
    if (!m) return;
    free(m->q);
    free(m->bias);
    free(m->ids);
    free(m->published);
    dr__items_free(m);
    free(m->excluded);
    free(m->author);
    free(m->topic);
    free(m->dirty);
    free(m->count);
    free(m->dirty_list);
    free(m->slot_id);
    free(m->slot_idx);
    free(m->prior);
    free(m->scratch);
    free(m->reptile_sum);
    free(m->past_prior);
    free(m->W);
    free(m->emb);
    free(m->delta);
    free(m->has_content);
    for (size_t i = 0; m->nbr && i < m->n_items; i++) dr__nbr_clear(&m->nbr[i]);
    free(m->nbr);
    free(m->nbr_ranked);
    free(m->engaged);
    free(m->engaged_norm);
    free(m->nbr_base);
    free(m->hop_acc);
    free(m->hop_touched);
    free(m->pop_count);
    free(m->pop_time);
    free(m->pop_score);
    free(m->pop_seed);
    free(m->author_joined);
    dr__authors_free(&m->authors);
    free(m->content_joined);
    dr__content_prior_free(&m->content_prior);
    free(m->trend_count);
    free(m->trend_lift);
    free(m->trend_score);
    free(m->fresh_score);
    free(m->rated);
    free(m->rec_buf);
    dr__sync_free(m);
    free(m);
}

const dr_learner_conf_t *dr_model_conf(const dr_model_t *m) { return &m->conf; }
const float *dr_model_prior(const dr_model_t *m) { return m->prior; }
int64_t dr_model_version(const dr_model_t *m) { return m->version; }

/* ---- the population prior ------------------------------------------------- */

/* Off only when it has no weight and cannot learn one (the zero-prior arm). */
bool dr__pop_on(const dr_model_t *m) { return m->conf.pop_weight > 0 || m->conf.pop_step > 0; }

double dr__pop_decay(const dr_model_t *m, uint64_t from, uint64_t to) {
    if (m->conf.pop_halflife <= 0 || to <= from) return 1.0;
    return exp2(-(double)(to - from) / m->conf.pop_halflife);
}

/* The item's own events (SGD steps: impressions, engagements, sampled
 * negatives) at which its author's pseudo-count weighs half: a post shown a
 * few dozen times without a positive loses it, one that earns positives
 * soon ranks by them. */
#define POP_SEED_EVIDENCE 30.0

/* What p_i counts, decayed from the item's last positive (or its author's
 * pseudo-count, set at the same clock) to the positive clock t: c_i, plus
 * s_i·k/(k + e_i) for a post that started from its author's record. */
static double pop_decayed(const dr_model_t *m, size_t idx, uint64_t t) {
    double c = m->pop_count[idx];
    if (m->pop_seed[idx] > 0)
        c += m->pop_seed[idx] * (POP_SEED_EVIDENCE / (POP_SEED_EVIDENCE + (double)m->count[idx]));
    return c * dr__pop_decay(m, m->pop_time[idx], t);
}

/* p_i as of the last outer step. A pure function of the stored c_i, s_i,
 * e_i, t_i and pop_ref, so a restarted model scores exactly as before. */
void dr__pop_refresh_item(dr_model_t *m, size_t idx) {
    m->pop_score[idx] = (float)log1p(pop_decayed(m, idx, m->pop_ref));
}

/* Every item's p_i decays at the outer steps only: between them a score is
 * one multiply-add per item, as cheap as the item bias. */
void dr__pop_refresh_all(dr_model_t *m) {
    for (size_t i = 0; i < m->n_items; i++) dr__pop_refresh_item(m, i);
}

/* Counts a positive for the item (it is then fresher than pop_ref, so
 * dr__pop_refresh_item() gives it its undecayed count, as here). */
static void pop_observe(dr_model_t *m, size_t idx) {
    m->pos_clock++; /* also the trend term's clock, with the prior off too */
    if (!dr__pop_on(m)) return;
    double d = dr__pop_decay(m, m->pop_time[idx], m->pos_clock);
    m->pop_count[idx] = (float)(m->pop_count[idx] * d + 1.0);
    m->pop_seed[idx] = (float)(m->pop_seed[idx] * d); /* kept as of the same clock */
    m->pop_time[idx] = m->pos_clock;
    dr__author_positive(m, idx);
    dr__content_prior_positive(m, idx);
    dr__pop_refresh_item(m, idx);
}

void dr_model_pop_fade(const dr_model_t *m, float *gamma, float *tau) {
    *gamma = dr__pop_on(m) ? m->pop_gamma : 0.0f;
    *tau = expf(m->pop_log_tau);
}

/* f(n_u) = 1 / (1 + n_u/τ): 1 for a new user, 1/2 after τ events. */
static float pop_fade_of(const dr_model_t *m, const dr_user_t *u) {
    /* a re-adapted user is new again: its own events since count */
    return 1.0f / (1.0f + (float)(u->events_applied - u->readapt_event) / expf(m->pop_log_tau));
}

float dr_model_pop_weight(const dr_model_t *m, const dr_user_t *u) {
    return dr__pop_on(m) ? m->pop_gamma * pop_fade_of(m, u) : 0.0f;
}

/* The outer loop's step on γ and log τ: the mean ascent direction of the
 * period (see pop_meta_observe), bounded; then every p_i decays to now. */
static void pop_outer_step(dr_model_t *m) {
    if (!dr__pop_on(m)) return;
    if (m->conf.pop_step > 0 && m->pop_grad_n > 0) {
        double step = m->conf.pop_step / (double)m->pop_grad_n;
        float gamma = (float)(m->pop_gamma + step * m->pop_grad_gamma);
        float log_tau = (float)(m->pop_log_tau + step * m->pop_grad_log_tau);
        m->pop_gamma = fminf(fmaxf(gamma, 0.0f), DR__POP_GAMMA_MAX);
        m->pop_log_tau = fminf(fmaxf(log_tau, logf(DR__POP_TAU_MIN)), logf(DR__POP_TAU_MAX));
    }
    m->pop_grad_gamma = m->pop_grad_log_tau = 0.0;
    m->pop_grad_n = 0;
    m->pop_ref = m->pos_clock;
    dr__pop_refresh_all(m);
}

/* ---- scoring -------------------------------------------------------------- */

/* The û a user's v_u is relative to: that of its version while it is still
 * kept, else the current one (a new user, or one away for long). */
static const float *prior_of(const dr_model_t *m, const dr_user_t *u) {
    if (u->prior_version < 0 || u->prior_version == m->version) return m->prior;
    for (int h = 0; h < DR_PRIOR_HISTORY; h++)
        if (m->past_version[h] == u->prior_version) return m->past_prior + (size_t)h * (size_t)m->dim;
    return m->prior;
}

void dr_model_user_vector(const dr_model_t *m, const dr_user_t *u, float *out) {
    const float *prior = prior_of(m, u);
    for (int k = 0; k < m->dim; k++) out[k] = prior[k] + u->v[k];
}

/* Makes v_u relative to the current û without moving û + v_u. */
static void rebase_user(dr_model_t *m, dr_user_t *u) {
    if (u->prior_version == m->version) return;
    const float *old = prior_of(m, u);
    if (old != m->prior)
        for (int k = 0; k < m->dim; k++) u->v[k] += old[k] - m->prior[k];
    u->prior_version = m->version;
}

/* The outer loop, every prior_period labelled events. Reptile's step: û
 * moves toward the users' adapted vectors, by ε times the mean v_u of the
 * period's labelled events; the old û is kept so that the users behind it
 * are re-based exactly. And content items' q_i follow the W learned since,
 * a bounded share of the catalog each step. */
static void outer_observe(dr_model_t *m, const dr_user_t *u) {
    bool reptile = m->conf.prior_step > 0;
    if (!reptile && m->n_content == 0 && !dr__pop_on(m)) return;
    for (int k = 0; reptile && k < m->dim; k++) m->reptile_sum[k] += u->v[k];
    if (++m->reptile_n < (uint32_t)m->conf.prior_period) return;
    content_refresh_step(m);
    pop_outer_step(m);
    if (reptile) {
        int slot = (int)(m->version % DR_PRIOR_HISTORY);
        memcpy(m->past_prior + (size_t)slot * (size_t)m->dim, m->prior, (size_t)m->dim * sizeof(float));
        m->past_version[slot] = m->version;
        double step = m->conf.prior_step / (double)m->reptile_n;
        for (int k = 0; k < m->dim; k++) m->prior[k] += (float)(step * m->reptile_sum[k]);
        if (m->sync_on)
            /* other instances' steps join this one, so that users are
             * re-based on them as on our own */
            for (int k = 0; k < m->dim; k++) {
                m->prior[k] += m->sync_prior_pending[k];
                m->sync_prior_base[k] += m->sync_prior_pending[k];
                m->sync_prior_pending[k] = 0.0f;
            }
        bound_norm(m->prior, m->dim, m->conf.max_norm);
        m->version++;
    }
    memset(m->reptile_sum, 0, (size_t)m->dim * sizeof(double));
    m->reptile_n = 0;
}

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}

/* The logistic (or rating) model the inner loop fits: b_i + (û + v_u)·q_i. */
static float factor_score(const dr_model_t *m, const dr_user_t *u, int64_t idx) {
    const float *q = m->q + (size_t)idx * (size_t)m->dim;
    const float *prior = prior_of(m, u);
    float s = m->bias[idx];
    for (int k = 0; k < m->dim; k++) s += (prior[k] + u->v[k]) * q[k];
    return s;
}

/* ---- co-engagement ---------------------------------------------------------- */

/* Label and weight of an event in implicit mode (the click, like, ... a
 * positive; a hide or a short dwell a negative); false: none (an
 * impression's label comes later, from what follows it). */
static bool implicit_label(const dr_learner_conf_t *c, uint8_t type, float value, float *y, float *w) {
    if (type == DR_EV_IMPRESSION) return false;
    *y = dr_event_is_hide(type) ? 0.0f : 1.0f;
    *w = c->weight[type];
    if (type == DR_EV_DWELL && value < c->dwell_threshold_s) {
        *y = 0.0f; /* a short look: mild disinterest, like an ignored impression */
        *w = c->impression_weight;
    }
    return true;
}

/* True for an event that is a positive engagement (a label of 1 in implicit
 * mode; every RATE counts: the user chose the item). */
static bool engages(const dr_learner_conf_t *c, uint8_t type, float value) {
    float y, w;
    return implicit_label(c, type, value, &y, &w) && y > 0.5f;
}

/* An entry belongs to the current regime when it joined after the first
 * sample the last re-adaptation kept. Ages are compared in 32 bits, as the
 * entries store their sample counts. */
bool dr_user_in_regime(const dr_user_t *u, const dr_recent_event_t *r) {
    if (u->regime_from == 0) return true;
    uint64_t span = u->drift_samples - u->regime_from;
    uint32_t age = (uint32_t)u->drift_samples - r->sample;
    return span > UINT32_MAX || age < span;
}

/* The newest entries of u's ring that are in the regime (entries join in
 * order, so they are the newest ones). */
unsigned dr_user_regime_len(const dr_model_t *m, const dr_user_t *u) {
    unsigned len = ring_len(u, m->conf.recent_items), k = 0;
    while (k < len && dr_user_in_regime(u, &u->recent[ring_slot(u, m->conf.recent_items, k)])) k++;
    return k;
}

/* Indices of u's last `max` distinct engaged items of the current regime,
 * newest first, and (weight not NULL) how much each row weighs in u's
 * lists: (1 + k)^-q for the k-th newest; τ / (τ + a), a the drift samples
 * (impression outcomes, else labelled events) u has had since, τ =
 * conf.cooc_age (an engagement that many ignored impressions followed fades
 * from the user's lists, so a few chance clicks cannot hold them on one
 * topic); n_j^-a, its count as of now (below 1 counts as 1); the factor
 * that takes the row's counts to true ones as of now, and the candidates'
 * n_c^-b from cooc_ref to now (dr__set_engaged); and (residual not NULL)
 * the residual its ring entry keeps (rating mode, learner/rating.c). */
static int recent_engaged(const dr_model_t *m, const dr_user_t *u, int32_t *out, float *weight,
                          float *residual, int max) {
    int ring = m->conf.recent_items, n = 0;
    unsigned len = dr_user_regime_len(m, u);
    double common = m->conf.cooc_halflife > 0 ? m->conf.cooc_candidate_norm * (m->cooc_clock - m->cooc_ref) /
                                                     m->conf.cooc_halflife
                                               : 0.0;
    for (unsigned k = 0; k < len && n < max; k++) {
        const dr_recent_event_t *r = &u->recent[ring_slot(u, ring, k)];
        if (!engages(&m->conf, r->type, r->value)) continue;
        int64_t idx = dr_model_item_index((dr_model_t *)m, r->item_id, false);
        if (idx < 0 || idx > INT32_MAX) continue;
        int seen = 0;
        while (seen < n && out[seen] != (int32_t)idx) seen++;
        if (seen < n) continue;
        if (weight) {
            float age = (float)((uint32_t)u->drift_samples - r->sample);
            double x = row_exponent(m, (size_t)idx, m->cooc_clock);
            double log_n = m->engaged[idx] > 0 ? log2((double)m->engaged[idx]) + x : 0.0;
            double w = exp2(x - m->conf.cooc_source_norm * fmax(log_n, 0.0) + common) *
                       pow(1.0 + n, -(double)m->conf.cooc_query_decay);
            if (m->conf.cooc_age > 0) w *= m->conf.cooc_age / (m->conf.cooc_age + age);
            weight[n] = (float)w;
        }
        if (residual) residual[n] = r->residual;
        out[n++] = (int32_t)idx;
    }
    return n;
}

/* The index of ev's item when coengage() counts it: a positive engagement
 * of an item with a row that is not among the user's last L engaged items
 * (recent[0..n)); a repeat engagement with one of them (a like after the
 * click) counts nothing. */
static bool coengaged_item(const dr_model_t *m, const dr_event_t *ev, const int32_t *recent, int n,
                           int32_t *item) {
    if (m->conf.cooc_neighbors == 0 || !engages(&m->conf, (uint8_t)ev->type, ev->value)) return false;
    int64_t i = dr_model_item_index((dr_model_t *)m, ev->item_id, false);
    if (i < 0 || i > INT32_MAX) return false;
    for (int k = 0; k < n; k++)
        if (recent[k] == (int32_t)i) return false;
    *item = (int32_t)i;
    return true;
}

/* Allocates ahead what coengage() will: room in ev's item's table for the
 * recent items it lacks, and in each recent item's table for ev's item.
 * Called before the event changes anything, so DR_ENOMEM leaves no trace. */
static int coengage_reserve(dr_model_t *m, const dr_event_t *ev, const int32_t *recent, int n) {
    int32_t i;
    if (!coengaged_item(m, ev, recent, n, &i)) return 0;
    uint32_t cap = (uint32_t)m->conf.cooc_neighbors, missing = 0;
    for (int k = 0; k < n; k++) { /* 2n look-ups in n + 1 tables: their misses at once */
        dr__nbr_prefetch(&m->nbr[recent[k]], i);
        dr__nbr_prefetch(&m->nbr[i], recent[k]);
    }
    for (int k = 0; k < n; k++) {
        /* a weight of 0 reads as absent: reserving for it only costs slots */
        bool known = dr__nbr_get(&m->nbr[recent[k]], i) != 0.0f;
        int err = dr__nbr_reserve(&m->nbr[recent[k]], known ? 0 : 1, cap);
        if (err) return err;
        missing += dr__nbr_get(&m->nbr[i], recent[k]) == 0.0f;
    }
    return dr__nbr_reserve(&m->nbr[i], missing, cap);
}

/* Counts ev's item as engaged next to each of the user's last L engaged
 * items (recent[0..n), taken before ev joins the user's ring), in both
 * directions, exp(-k/τ) with the k-th newest, and moves the clock. After
 * coengage_reserve() it cannot fail. */
static int coengage(dr_model_t *m, const dr_event_t *ev, const int32_t *recent, int n) {
    int32_t i;
    if (!coengaged_item(m, ev, recent, n, &i)) return 0;
    uint32_t cap = (uint32_t)m->conf.cooc_neighbors;
    double gain_i = row_gain(m, (size_t)i);
    float pair[DR_RECENT_MAX];
    for (int k = 0; k < n; k++) {
        pair[k] = m->conf.cooc_pair_decay > 0 ? expf(-(float)k / m->conf.cooc_pair_decay) : 1.0f;
        double gain_k = row_gain(m, (size_t)recent[k]);
        int err = dr__nbr_add_reserved(&m->nbr[recent[k]], i, (float)(pair[k] * gain_k), cap, m->ids,
                                       m->nbr_ranked);
        if (!err) err = dr__nbr_add_reserved(&m->nbr[i], recent[k], (float)(pair[k] * gain_i), cap, m->ids,
                                             m->nbr_ranked);
        if (err) return err;
        mark_item_dirty(m, (size_t)recent[k]);
    }
    dr__set_engaged(m, (size_t)i, (float)(m->engaged[i] + gain_i));
    mark_item_dirty(m, (size_t)i);
    dr__sync_coengage(m, i, recent, pair, n);
    dr__cooc_tick(m, 1.0);
    return 0;
}

/* u's co-engagement sources: the rows that make its term, and their
 * weights (recent_engaged, then the second hop's seeds). */
typedef dr_cooc_sources_t cooc_src_t;

/* The model's own scratch, for its owner's thread. */
static dr_cooc_scratch_t own_scratch(const dr_model_t *m) {
    return (dr_cooc_scratch_t){m->hop_acc, m->hop_touched, m->cap_items};
}

/* sums, or the model's own scratch where the caller gave none. */
static dr_cooc_scratch_t scratch_or_own(const dr_model_t *m, const dr_cooc_scratch_t *sums) {
    return sums ? *sums : own_scratch(m);
}

/* Row r's counts added × w into the scratch, touched items listed. */
static size_t hop_gather(const dr_model_t *m, dr_cooc_scratch_t *sc, int32_t r, float w, size_t touched) {
    const dr__nbr_t *t = &m->nbr[r];
    float *acc = sc->acc;
    int32_t *list = sc->touched;
    for (uint32_t s = 0; s < t->n; s++) { /* without branches: one item in four is new */
        int32_t c = t->e[s].key;
        float a = acc[c];
        list[touched] = c;
        touched += a == 0.0f;
        float v = w * t->e[s].w;
        acc[c] = a + (v > FLT_MIN ? v : FLT_MIN); /* never back to 0: listed once */
    }
    return touched;
}

/* Rows rows[0..n) added × w[k] into the scratch; how many items they touched. */
static size_t hop_gather_rows(const dr_model_t *m, dr_cooc_scratch_t *sc, const int32_t *rows, const float *w,
                              int n) {
    size_t touched = 0;
    for (int k = 0; k < n; k++) touched = hop_gather(m, sc, rows[k], w[k], touched);
    return touched;
}

/* The k-th touched item's sum over n_c^b, its slot cleared for the next use. */
static float hop_take(const dr_model_t *m, dr_cooc_scratch_t *sc, size_t k, int32_t *item) {
    int32_t c = *item = sc->touched[k];
    float s = sc->acc[c] * m->engaged_norm[c];
    sc->acc[c] = 0.0f;
    return s;
}

/* The second hop: the first hop's best candidates (s1, the sources'
 * weighted rows over n_c^b) become sources too, each weighing its s1, so
 * that items engaged next to what the user is likely to engage next rank
 * too. The hop's scores are scaled to the first hop's largest, × the hop
 * weight, × min(1, spread / candidates the first hop scored): strong where
 * the user's own rows say little (a sparse stream), weak where they are
 * dense (docs/LEARNER.md). Sums in sc: one thread per scratch. */
static int add_second_hop(const dr_model_t *m, dr_cooc_scratch_t *sc, cooc_src_t *src) {
    int seeds = m->conf.cooc_hop_seeds;
    if (src->n == 0 || seeds == 0 || m->conf.cooc_hop_weight == 0) return src->n;
    size_t touched = hop_gather_rows(m, sc, src->idx, src->w, src->n);
    int32_t best[DR_COOC_HOP_SEEDS_MAX];
    float best_s[DR_COOC_HOP_SEEDS_MAX];
    int nb = 0;
    float max1 = 0.0f;
    for (size_t k = 0; k < touched; k++) {
        int32_t c;
        float s1 = hop_take(m, sc, k, &c);
        if (s1 > max1) max1 = s1;
        if (nb < seeds || s1 > best_s[nb - 1]) { /* kept best first */
            int at = nb < seeds ? nb++ : nb - 1;
            while (at > 0 && best_s[at - 1] < s1) {
                best[at] = best[at - 1];
                best_s[at] = best_s[at - 1];
                at--;
            }
            best[at] = c;
            best_s[at] = s1;
        }
    }
    if (nb == 0 || !(max1 > 0)) return src->n;
    /* the seeds' rows to true counts, and the hop's largest score */
    float row_w[DR_COOC_HOP_SEEDS_MAX];
    for (int t = 0; t < nb; t++)
        row_w[t] = best_s[t] * (float)dr__cooc_scale(m, (size_t)best[t]);
    size_t touched2 = hop_gather_rows(m, sc, best, row_w, nb);
    float max2 = 0.0f;
    for (size_t k = 0; k < touched2; k++) {
        int32_t c;
        float s2 = hop_take(m, sc, k, &c);
        if (s2 > max2) max2 = s2;
    }
    if (!(max2 > 0)) return src->n;
    float scale = m->conf.cooc_hop_weight * max1 / max2;
    if (m->conf.cooc_hop_spread > 0 && (float)touched > m->conf.cooc_hop_spread)
        scale *= m->conf.cooc_hop_spread / (float)touched;
    for (int t = 0; t < nb && src->n < DR_COOC_SOURCES_MAX; t++) {
        src->idx[src->n] = best[t];
        src->w[src->n++] = row_w[t] * scale;
    }
    return src->n;
}

/* u's co-engagement sources (none when the term is off), summed in sc. */
static int cooc_sources_in(const dr_model_t *m, const dr_user_t *u, cooc_src_t *src, dr_cooc_scratch_t *sc) {
    src->n = 0;
    if (m->conf.cooc_neighbors == 0 || m->conf.cooc_weight == 0) return 0;
    src->n = recent_engaged(m, u, src->idx, src->w, NULL, m->conf.cooc_window);
    return add_second_hop(m, sc, src);
}

/* The same in the model's own scratch. */
static int cooc_sources_of(const dr_model_t *m, const dr_user_t *u, cooc_src_t *src) {
    dr_cooc_scratch_t sc = own_scratch(m);
    return cooc_sources_in(m, u, src, &sc);
}

void dr_model_cooc_sources(const dr_model_t *m, const dr_user_t *u, dr_cooc_sources_t *src) {
    cooc_sources_of(m, u, src);
}

void dr_model_cooc_sources_in(const dr_model_t *m, const dr_user_t *u, dr_cooc_sources_t *src,
                              dr_cooc_scratch_t *scratch) {
    dr_cooc_scratch_t sc = scratch_or_own(m, scratch);
    cooc_sources_in(m, u, src, &sc);
}

int dr_cooc_scratch_fit(dr_cooc_scratch_t *s, const dr_model_t *m) {
    size_t n = m->n_items;
    if (s->cap >= n) return 0;
    size_t cap = n + n / 2 + 1024;
    float *acc = realloc(s->acc, cap * sizeof(float));
    if (!acc) return DR_ENOMEM;
    s->acc = acc;
    int32_t *touched = realloc(s->touched, cap * sizeof(int32_t));
    if (!touched) return DR_ENOMEM; /* acc kept, larger: cap stays what both hold */
    memset(acc + s->cap, 0, (cap - s->cap) * sizeof(float));
    s->touched = touched;
    s->cap = cap;
    return 0;
}

void dr_cooc_scratch_free(dr_cooc_scratch_t *s) {
    free(s->acc);
    free(s->touched);
    *s = (dr_cooc_scratch_t){0};
}

void dr_model_add_coengagement_sources(const dr_model_t *m, const dr_cooc_sources_t *src, float *scores,
                                       size_t first, size_t n) {
    for (int k = 0; k < src->n; k++) {
        const dr__nbr_t *t = &m->nbr[src->idx[k]];
        float beta = m->conf.cooc_weight * src->w[k];
        for (uint32_t s = 0; s < t->n; s++) {
            /* one comparison: an index below first wraps past n */
            size_t j = (size_t)(int64_t)t->e[s].key - first;
            if (j < n) scores[j] += beta * t->e[s].w * m->engaged_norm[first + j];
        }
    }
}

void dr_model_add_coengagement_range(const dr_model_t *m, const dr_user_t *u, float *scores,
                                     size_t first, size_t n) {
    cooc_src_t src;
    cooc_sources_of(m, u, &src);
    dr_model_add_coengagement_sources(m, &src, scores, first, n);
}

void dr_model_add_coengagement(const dr_model_t *m, const dr_user_t *u, float *scores, size_t n) {
    dr_model_add_coengagement_range(m, u, scores, 0, n);
}

/* A bounded min-heap of (value, index) keeping the max best: the root is
 * the worst kept. For the candidate lists below. */
typedef struct top_heap {
    int64_t *idx;
    float *val;
    size_t n, max;
} top_heap_t;

static void top_offer(top_heap_t *h, int64_t idx, float val) {
    if (h->n == h->max) {
        if (h->max == 0 || !(val > h->val[0])) return;
        size_t i = 0; /* replace the root, sift down */
        for (;;) {
            size_t l = 2 * i + 1, r = l + 1, w = i;
            float wv = val;
            if (l < h->n && h->val[l] < wv) w = l, wv = h->val[l];
            if (r < h->n && h->val[r] < wv) w = r;
            if (w == i) break;
            h->idx[i] = h->idx[w];
            h->val[i] = h->val[w];
            i = w;
        }
        h->idx[i] = idx;
        h->val[i] = val;
        return;
    }
    size_t i = h->n++;
    while (i > 0 && h->val[(i - 1) / 2] > val) {
        h->idx[i] = h->idx[(i - 1) / 2];
        h->val[i] = h->val[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->idx[i] = idx;
    h->val[i] = val;
}

static float list_score(const dr_model_t *m, const dr_user_t *u, const cooc_src_t *src, int64_t idx);
static float trend_weight_of(const dr_model_t *m, const dr_user_t *u);
static float rank_score(const dr_model_t *m, float d, float pop_w, float trend_w, float coeng, size_t i);

/* Item i's co-engagement term from sums held in acc: the one expression
 * both the choice of the favoured items and their scores read, so that the
 * two agree bit for bit. */
static float held_term(const dr_model_t *m, const float *acc, size_t i) {
    return m->conf.cooc_weight * (acc[i] * m->engaged_norm[i]);
}

size_t dr_model_coengagement_hold(const dr_model_t *m, const dr_cooc_sources_t *src, int64_t *idx,
                                  float *scratch, size_t max, dr_cooc_scratch_t *sums, size_t *held) {
    top_heap_t h = {idx, scratch, 0, max};
    /* each item's whole term, summed as add_second_hop sums, and left there */
    dr_cooc_scratch_t sc = scratch_or_own(m, sums);
    size_t touched = hop_gather_rows(m, &sc, src->idx, src->w, src->n);
    for (size_t k = 0; k < touched; k++) {
        int32_t c = sc.touched[k];
        top_offer(&h, c, held_term(m, sc.acc, (size_t)c));
    }
    *held = touched;
    return h.n;
}

void dr_model_cooc_release(const dr_model_t *m, dr_cooc_scratch_t *sums, size_t held) {
    dr_cooc_scratch_t sc = scratch_or_own(m, sums);
    for (size_t k = 0; k < held; k++) sc.acc[sc.touched[k]] = 0.0f;
}

size_t dr_model_trend_top(const dr_model_t *m, int64_t *idx, float *scratch, size_t max) {
    if (dr_model_trend_left(m) == 0) return 0;
    top_heap_t h = {idx, scratch, 0, max};
    for (uint32_t k = 0; k < m->pop_len; k++) {
        int64_t i = dr_model_item_index((dr_model_t *)m, m->pop[k], false);
        if (i < 0 || (h.n == h.max && !(m->trend_score[i] > h.val[0]))) continue;
        /* the ring holds an item once per positive: offer it once */
        bool seen = false;
        for (size_t j = 0; j < h.n && !seen; j++) seen = h.idx[j] == i;
        if (!seen) top_offer(&h, i, m->trend_score[i]);
    }
    return h.n;
}

size_t dr_model_fresh_top(const dr_model_t *m, int64_t *idx, float *scratch, size_t max) {
    if (m->conf.fresh_weight == 0.0f) return 0;
    top_heap_t h = {idx, scratch, 0, max};
    for (size_t i = 0; i < m->n_items; i++) {
        if (m->excluded[i] || (h.n == h.max && !(m->fresh_score[i] > h.val[0]))) continue;
        top_offer(&h, (int64_t)i, m->fresh_score[i]);
    }
    return h.n;
}

size_t dr_model_popular_top(const dr_model_t *m, int64_t *idx, float *scratch, size_t max) {
    top_heap_t h = {idx, scratch, 0, max};
    for (size_t i = 0; i < m->n_items; i++)
        if (!isnan(m->pop_score[i])) top_offer(&h, (int64_t)i, m->pop_score[i]);
    return h.n;
}

void dr_model_scores_at(const dr_model_t *m, const dr_user_t *u, const int64_t *idx, size_t n,
                        float *out) {
    cooc_src_t src;
    cooc_sources_of(m, u, &src);
    for (size_t j = 0; j < n; j++) out[j] = list_score(m, u, &src, idx[j]);
}

void dr_model_scores_at_held(const dr_model_t *m, const dr_user_t *u, const dr_cooc_scratch_t *sums,
                             const int64_t *idx, size_t n, float *out) {
    /* u's weights once, not per candidate; the term read from the sums */
    const float *acc = scratch_or_own(m, sums).acc;
    float ue[DR_MAX_DIM];
    dr_model_user_vector(m, u, ue);
    float pop_w = dr_model_pop_weight(m, u), trend_w = trend_weight_of(m, u);
    size_t dim = (size_t)m->dim;
    for (size_t j = 0; j < n; j++) {
        size_t i = (size_t)idx[j];
        out[j] = rank_score(m, dot(ue, m->q + i * dim, m->dim), pop_w, trend_w, held_term(m, acc, i), i);
    }
}

size_t dr_model_item_neighbors(const dr_model_t *m, int64_t idx, float *engaged, int64_t *ids,
                               float *weights, size_t max) {
    *engaged = 0.0f;
    if (idx < 0 || (size_t)idx >= m->n_items) return 0;
    float f = (float)dr__cooc_scale(m, (size_t)idx); /* true counts, as of now */
    *engaged = m->engaged[idx] * f;
    const dr__nbr_t *t = &m->nbr[idx];
    dr__nbr_ranked_t *all = malloc((size_t)t->n * sizeof(*all) + 1);
    if (!all) return 0;
    size_t n = dr__nbr_ranked(t, m->ids, all);
    if (n > max) n = max;
    for (size_t k = 0; k < n; k++) {
        ids[k] = all[k].id;
        weights[k] = all[k].e.w * f;
    }
    free(all);
    return n;
}

/* β·c(u,i) for one item, given u's co-engagement sources. */
static float coengagement_of(const dr_model_t *m, const cooc_src_t *src, int64_t i) {
    float c = 0.0f;
    for (int k = 0; k < src->n; k++) dr__nbr_prefetch(&m->nbr[src->idx[k]], (int32_t)i); /* the misses at once */
    for (int k = 0; k < src->n; k++) c += src->w[k] * dr__nbr_get(&m->nbr[src->idx[k]], (int32_t)i);
    return m->conf.cooc_weight * c * m->engaged_norm[i];
}

/* s(u,i) given u's co-engagement sources. */
static float list_score(const dr_model_t *m, const dr_user_t *u, const cooc_src_t *src, int64_t idx) {
    return factor_score(m, u, idx) + dr_model_pop_weight(m, u) * m->pop_score[idx] +
           coengagement_of(m, src, idx) + trend_weight_of(m, u) * m->trend_score[idx] +
           m->conf.fresh_weight * m->fresh_score[idx];
}

float dr_model_score(const dr_model_t *m, const dr_user_t *u, int64_t idx) {
    cooc_src_t src;
    cooc_sources_of(m, u, &src);
    return list_score(m, u, &src, idx);
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* An item drawn about uniformly, the same one whatever order the items got
 * their rows in: a restored model (items loaded in key order) draws what the
 * model before the crash drew. A random slot of the id table picks the run of
 * occupied slots around it; with linear probing, which slots are occupied,
 * and which ids each run holds, do not depend on the order of insertion (a
 * removed item's id is deleted by backward shift, items.c, which leaves the
 * table that inserting the other ids builds). Within the run the id with the least hash wins. -1: no items. */
static int64_t draw_item_any_order(const dr_model_t *m, uint64_t *rng) {
    if (m->n_items == 0) return -1;
    size_t mask = m->n_slots - 1, s = dr_rand64(rng) & mask;
    while (m->slot_id[s] == -1) s = (s + 1) & mask;           /* a run ... */
    while (m->slot_id[(s - 1) & mask] != -1) s = (s - 1) & mask; /* ... from its start */
    uint64_t salt = dr_rand64(rng), best_hash = UINT64_MAX;
    int64_t best = -1;
    for (; m->slot_id[s] != -1; s = (s + 1) & mask) {
        uint64_t h = dr_mix64((uint64_t)m->slot_id[s] ^ salt);
        if (h <= best_hash) { best_hash = h; best = m->slot_idx[s]; }
    }
    return best;
}

/* Before a positive of u with item pos is learned (prequential): the
 * gradient of the ranking objective log σ(s(u,pos) − s(u,j)), j drawn
 * uniformly from the catalog as the lists are, with respect to γ and log τ.
 * Popular positives that new users' lists rank low pull γ up; users with
 * long histories, whose lists the term pushes wrong, pull τ down. recent
 * holds u's last engaged items (n of them). */
static void pop_meta_observe(dr_model_t *m, const dr_user_t *u, size_t pos, uint64_t seed,
                             const cooc_src_t *recent) {
    if (!dr__pop_on(m) || m->conf.pop_step <= 0 || m->n_items < 2) return;
    uint64_t s = dr_mix64(seed ^ 0x90b1a7u);
    size_t neg = (size_t)draw_item_any_order(m, &s);
    float dp = m->pop_score[pos] - m->pop_score[neg];
    if (neg == pos || m->excluded[neg] || dp == 0.0f) return; /* no information */
    float f = pop_fade_of(m, u);
    static const cooc_src_t none = {.n = 0};
    const cooc_src_t *src = m->conf.cooc_weight != 0 ? recent : &none; /* as cooc_sources_of(), without the second hop */
    float margin = list_score(m, u, src, (int64_t)pos) - list_score(m, u, src, (int64_t)neg);
    double g = sigmoidf(-margin);
    m->pop_grad_gamma += g * f * dp;
    m->pop_grad_log_tau += g * m->pop_gamma * f * (1.0f - f) * dp; /* ∂f/∂log τ = f(1 − f) */
    m->pop_grad_n++;
}

/* list_score() for a rank, with u's weights worked out once: item i's,
 * given its dot product d = (û + v_u) · q_i and its co-engagement term. */
static float rank_score(const dr_model_t *m, float d, float pop_w, float trend_w, float coeng, size_t i) {
    return m->bias[i] + d + pop_w * m->pop_score[i] + coeng + trend_w * m->trend_score[i] +
           m->conf.fresh_weight * m->fresh_score[i];
}

/* dot() of a with rows q, q + n, q + 2n and q + 3n: four sums, each in
 * dot()'s order (the same floats), carried side by side so that the CPU
 * overlaps their additions instead of waiting on one chain. */
static void dot4(const float *a, const float *q, int n, float *out) {
    const float *q1 = q + n, *q2 = q1 + n, *q3 = q2 + n;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (int k = 0; k < n; k++) {
        s0 += a[k] * q[k];
        s1 += a[k] * q1[k];
        s2 += a[k] * q2[k];
        s3 += a[k] * q3[k];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* Each item's co-engagement term for sources src into acc[0..n_items)
 * (zero on entry), as coengagement_of() works it out: each source's row
 * walked once instead of a look-up per item and source. Per item the
 * products are added in the order of the sources, as there, and an absent
 * pair adds nothing there either: the same floats. */
static void coengagement_all(const dr_model_t *m, const cooc_src_t *src, float *acc) {
    for (int k = 0; k < src->n; k++) {
        const dr__nbr_t *t = &m->nbr[src->idx[k]];
        for (uint32_t s = 0; s < t->n; s++) acc[t->e[s].key] += src->w[k] * t->e[s].w;
    }
    for (size_t i = 0; i < m->n_items; i++) acc[i] = m->conf.cooc_weight * acc[i] * m->engaged_norm[i];
}

size_t dr_model_excluded_rows(const dr_model_t *m, const dr_user_t *u, int64_t *rows) {
    dr_model_t *look = (dr_model_t *)m; /* a look-up without create changes nothing */
    size_t n = 0;
    for (unsigned k = 0; k < u->recent_len; k++) {
        int64_t r = dr_model_item_index(look, u->recent[k].item_id, false);
        if (r >= 0) rows[n++] = r;
    }
    for (unsigned k = 0; k < u->hidden_len; k++) {
        int64_t r = dr_model_item_index(look, u->hidden[k], false);
        if (r >= 0) rows[n++] = r;
    }
    return n;
}

/* u's excluded rows (dr_model_excluded_rows), ascending: a rank meets the
 * items in row order, so whether one of them is recent or hidden is a step
 * along this list rather than a scan of both rings for each item scored
 * above the target. */
static size_t excluded_rows_sorted(const dr_model_t *m, const dr_user_t *u, int64_t *rows) {
    size_t n = dr_model_excluded_rows(m, u, rows);
    for (size_t k = 1; k < n; k++) { /* at most 128: insertion sort */
        int64_t r = rows[k];
        size_t j = k;
        for (; j > 0 && rows[j - 1] > r; j--) rows[j] = rows[j - 1];
        rows[j] = r;
    }
    return n;
}

int64_t dr_model_list_rank(dr_model_t *m, const dr_user_t *u, int64_t item_id) {
    return dr_model_list_rank_within(m, u, item_id, INT64_MAX - 1);
}

int64_t dr_model_list_rank_within(dr_model_t *m, const dr_user_t *u, int64_t item_id, int64_t limit) {
    int64_t target = dr_model_item_index(m, item_id, false);
    if (target < 0 || m->excluded[target] || dr_user_excludes(u, item_id) ||
        dr_user_hides_source(u, m->author[target], m->topic[target]))
        return 0;
    float *ue = m->scratch;
    dr_model_user_vector(m, u, ue);
    float w = dr_model_pop_weight(m, u), tw = trend_weight_of(m, u);
    cooc_src_t src;
    cooc_sources_of(m, u, &src);
    float *coeng = m->hop_acc; /* the second hop's scratch: zero between uses, so again below */
    coengagement_all(m, &src, coeng);
    size_t dim = (size_t)m->dim, n = m->n_items;
    float st = rank_score(m, dot(ue, m->q + (size_t)target * dim, m->dim), w, tw, coeng[target], (size_t)target);
    int64_t above = 0, excl[DR_USER_EXCLUDED_MAX];
    size_t n_excl = excluded_rows_sorted(m, u, excl), next_excl = 0;
    /* once `limit` items score above the target its rank is past limit:
     * most of a miss's pass is left out */
    for (size_t i0 = 0; i0 < n && above < limit; i0 += 4) {
        float d[4];
        if (i0 + 4 <= n) dot4(ue, m->q + i0 * dim, m->dim, d);
        else
            for (size_t j = 0; i0 + j < n; j++) d[j] = dot(ue, m->q + (i0 + j) * dim, m->dim);
        for (size_t j = 0; j < 4 && i0 + j < n; j++) {
            size_t i = i0 + j;
            if ((int64_t)i == target || m->excluded[i]) continue;
            float si = rank_score(m, d[j], w, tw, coeng[i], i);
            if (!(si > st)) continue;
            while (next_excl < n_excl && excl[next_excl] < (int64_t)i) next_excl++;
            /* dr_user_excludes(), its ring scans done by the walk above */
            bool excluded = (next_excl < n_excl && excl[next_excl] == (int64_t)i) ||
                            dr_user_resting(u, m->ids[i]);
            if (!excluded && !dr_user_hides_source(u, m->author[i], m->topic[i])) above++;
        }
    }
    memset(coeng, 0, m->n_items * sizeof(float));
    return (above < limit ? above : limit) + 1;
}

/* ---- learning ------------------------------------------------------------- */

static float clampf(float x, float lim) { return x > lim ? lim : (x < -lim ? -lim : x); }

/* Scales v so that ‖v‖ <= lim; keeps NaN out by resetting a broken vector. */
static void bound_norm(float *v, int n, float lim) {
    float s = dot(v, v, n);
    if (!isfinite(s)) { memset(v, 0, (size_t)n * sizeof(float)); return; }
    if (s > lim * lim) {
        float f = lim / sqrtf(s);
        for (int k = 0; k < n; k++) v[k] *= f;
    }
}

/* The user's step size: new (or just re-adapted) users move fast, settled
 * ones slowly, so one odd event does not swing a long history. */
static float user_lr(const dr_model_t *m, const dr_user_t *u) {
    if (m->conf.lr_user_decay <= 0) return m->conf.lr_user;
    double n = (double)(u->events_applied - u->readapt_event);
    return (float)(m->conf.lr_user / sqrt(1.0 + n / m->conf.lr_user_decay));
}

/* One SGD step of the factor part, with gradient g on the score (already
 * weighted and clipped): v_u ← v_u − α(g·q_i + λ_u·v_u), q_i and b_i alike. */
static void sgd_step(dr_model_t *m, dr_user_t *u, size_t idx, float g, float lr_bias_reg) {
    const dr_learner_conf_t *c = &m->conf;
    (void)dr__sync_touch(m, idx); /* out of memory: this step is not shared */
    float lr_u = user_lr(m, u);
    float *q = m->q + idx * (size_t)m->dim;
    float *ue = m->scratch;
    dr_model_user_vector(m, u, ue);
    if (m->has_content[idx]) {
        /* q_i = W·e_i + δ_i: the gradient g·u reaches δ_i and, through
         * e_i, the shared W; q_i is then recomputed */
        int cd = m->content_dim;
        float *delta = m->delta + idx * (size_t)m->dim;
        const float *e = m->emb + idx * (size_t)cd;
        for (int k = 0; k < m->dim; k++) {
            float gk = g * ue[k];
            u->v[k] -= lr_u * (g * q[k] + c->reg_user * u->v[k]);
            delta[k] -= c->lr_item * (gk + c->reg_item * delta[k]);
            float *w = m->W + (size_t)k * (size_t)cd;
            for (int j = 0; j < cd; j++) w[j] -= c->lr_content * (gk * e[j] + c->reg_item * w[j]);
        }
        bound_norm(delta, m->dim, c->max_norm);
        dr__content_refresh_item(m, idx);
    } else {
        for (int k = 0; k < m->dim; k++) {
            float qk = q[k];
            u->v[k] -= lr_u * (g * qk + c->reg_user * u->v[k]);
            q[k] -= c->lr_item * (g * ue[k] + c->reg_item * qk);
        }
        bound_norm(q, m->dim, c->max_norm);
    }
    m->bias[idx] -= c->lr_item * (g + lr_bias_reg * m->bias[idx]);
    bound_norm(u->v, m->dim, c->max_norm);
    if (!isfinite(m->bias[idx])) m->bias[idx] = 0.0f;
    m->count[idx]++;
    if (m->pop_seed[idx] > 0) dr__pop_refresh_item(m, idx); /* its own evidence grew */
    mark_item_dirty(m, idx);
}

/* Logistic step toward label y with weight w; returns the loss before it. */
static float logistic_step(dr_model_t *m, dr_user_t *u, size_t idx, float y, float w,
                           float *pred) {
    float p = sigmoidf(factor_score(m, u, (int64_t)idx));
    float eps = 1e-7f;
    float loss = -(y * logf(p + eps) + (1.0f - y) * logf(1.0f - p + eps));
    if (pred) *pred = p;
    sgd_step(m, u, idx, clampf(w * (p - y), m->conf.grad_clip), m->conf.reg_item);
    return loss;
}

/* The row of an item the event learns about; it never creates one:
 * prepare_items() gave every item that gets a row its row before the event
 * changed anything. DR_ENOTFOUND: an item that got none (a stale impression
 * beyond the catalog bound, a negative drawn from a ring restored without
 * its items), which is skipped. */
static int item_for(dr_model_t *m, int64_t item_id, size_t *idx) {
    int64_t i = dr_model_item_index(m, item_id, false);
    if (i < 0) return (int)i;
    *idx = (size_t)i;
    return 0;
}

static void trend_score_of(dr_model_t *m, size_t idx) {
    m->trend_score[idx] = m->conf.trend_weight * (float)log1p((double)m->trend_count[idx]) +
                          m->conf.trend_topic_weight * m->trend_lift[idx];
}

/* t_i counts item idx's positives in the popularity ring while a trend
 * period runs; its log is the count part of the trend term. */
static void trend_add(dr_model_t *m, int64_t item_id, int by) {
    int64_t idx = dr_model_item_index(m, item_id, false);
    if (idx < 0 || (by < 0 && m->trend_count[idx] == 0)) return;
    m->trend_count[idx] = (uint32_t)((int64_t)m->trend_count[idx] + by);
    trend_score_of(m, (size_t)idx);
}

_Static_assert((DR_TREND_TOPICS & (DR_TREND_TOPICS - 1)) == 0, "trend_topic() masks the hash");

/* The topic's slot in the trend period's table, taken when `add`; NULL for
 * no topic, one not there, or a table three quarters full (that topic then
 * gets no lift): a quarter stays free, so that a look-up of a topic without
 * a slot, most of them in a catalog of many topics, ends within a few
 * probes instead of walking the whole table. */
static dr__trend_topic_t *trend_topic(dr_model_t *m, int64_t topic, bool add) {
    if (topic < 0) return NULL;
    size_t mask = DR_TREND_TOPICS - 1, h = (size_t)dr_mix64((uint64_t)topic) & mask;
    for (;; h = (h + 1) & mask) {
        if (m->trend_topics[h].topic == topic) return &m->trend_topics[h];
        if (m->trend_topics[h].topic < 0) {
            if (!add || m->trend_topics_used >= DR_TREND_TOPICS / 4 * 3) return NULL;
            m->trend_topics_used++;
            m->trend_topics[h].topic = topic;
            return &m->trend_topics[h];
        }
    }
}

/* log of the topic's lift: its engaged share of outcomes since the period
 * began over everyone's, each topic starting from DR_TREND_TOPIC_PRIOR
 * outcomes at everyone's share; 0 unless above 1. Counts, not lift, follow
 * what the lists already show: after a population-wide shift the topic
 * everyone now likes is shown only in organic slots, where it is engaged
 * with far more often than the rest (docs/DRIFT.md). */
static float topic_lift(dr_model_t *m, int64_t topic) {
    const dr__trend_topic_t *t = m->trend_shown > 0 ? trend_topic(m, topic, false) : NULL;
    if (!t) return 0.0f;
    double mean = (m->trend_engaged + 1.0) / (m->trend_shown + 2.0);
    double lift = (t->engaged + DR_TREND_TOPIC_PRIOR * mean) / (t->shown + DR_TREND_TOPIC_PRIOR) / mean;
    return lift > 1.0 ? (float)log(lift) : 0.0f;
}

/* An impression's outcome during a trend period: counted for everyone and
 * for its topic (when it has one with a slot); every max(256, n/16)
 * outcomes each item's lift is refreshed (a pass over the items costs at
 * most 16 writes an outcome). */
static void trend_outcome(dr_model_t *m, size_t idx, bool engaged) {
    if (m->conf.trend_topic_weight <= 0 || m->trend_until <= m->pos_clock) return;
    m->trend_shown += 1.0;
    m->trend_engaged += engaged;
    dr__trend_topic_t *t = trend_topic(m, m->topic[idx], true);
    if (t) {
        t->shown += 1.0f;
        t->engaged += engaged;
    }
    size_t every = m->n_items / 16 > 256 ? m->n_items / 16 : 256;
    if (++m->trend_outcomes < every) return;
    m->trend_outcomes = 0;
    for (size_t i = 0; i < m->n_items; i++) {
        m->trend_lift[i] = topic_lift(m, m->topic[i]);
        trend_score_of(m, i);
    }
}

static void pop_push(dr_model_t *m, int64_t item_id) {
    if (m->trend_until > m->pos_clock) {
        if (m->pop_len == DR_POP_RING) trend_add(m, m->pop[m->pop_head], -1);
        trend_add(m, item_id, +1);
    }
    m->pop[m->pop_head] = item_id;
    m->pop_head = (m->pop_head + 1) % DR_POP_RING;
    if (m->pop_len < DR_POP_RING) m->pop_len++;
}

/* k negatives drawn from recent positives (popularity-proportional). A
 * drawn item without a row (a popularity ring restored without its items)
 * has nothing to learn and is skipped rather than given a row mid-event. */
static void sample_negatives(dr_model_t *m, dr_user_t *u, int64_t pos_item, uint64_t seed,
                             int *updates) {
    uint64_t s = dr_mix64(seed);
    for (int n = 0; n < m->conf.negatives && m->pop_len > 1; n++) {
        /* uniform: drawn so that a restored model (rows in another order)
         * draws what the model before the crash drew */
        int64_t drawn = m->conf.negative_uniform ? draw_item_any_order(m, &s) : 0;
        if (drawn < 0) break; /* no items */
        int64_t item = m->conf.negative_uniform ? m->ids[drawn] : m->pop[dr_rand64(&s) % m->pop_len];
        if (item == pos_item || dr_user_has_recent(u, item)) continue;
        size_t idx = 0;
        if (item_for(m, item, &idx) != 0) continue;
        logistic_step(m, u, idx, 0.0f, m->conf.negative_weight, NULL);
        (*updates)++;
    }
}

static int pending_find(const dr_user_t *u, int64_t item_id) {
    for (int i = 0; i < u->pending_len; i++)
        if (u->pending[i].item_id == item_id) return i;
    return -1;
}

static void pending_remove(dr_user_t *u, int i) {
    u->pending[i] = u->pending[--u->pending_len];
}

/* Removes from pending[0..*len) the impressions that become weak negatives
 * at time now_ms: the stale ones (no engagement within the timeout) and,
 * with force_one, the first one left. Writes their items into due, in the
 * order they are learned, and returns how many. */
static int take_due(const dr_learner_conf_t *c, dr_pending_imp_t *pending, uint8_t *len,
                    int64_t now_ms, bool force_one, int64_t *due) {
    int n = 0;
    for (int i = 0; i < *len;) {
        bool stale = now_ms - pending[i].timestamp_ms > c->impression_timeout_ms;
        if (!stale && !(force_one && i == 0)) { i++; continue; }
        due[n++] = pending[i].item_id;
        pending[i] = pending[--*len];
        force_one = false;
    }
    return n;
}

/* What an implicit event does to u's pending impressions before its own
 * label, worked out once per event before anything changes: prepare_items()
 * gives their items rows, learn_implicit() applies it. */
typedef struct impressions_plan {
    int64_t due[DR_PENDING_IMP];          /* items that become weak negatives, in order */
    int n_due;
    dr_pending_imp_t rest[DR_PENDING_IMP]; /* the pending list that remains */
    uint8_t n_rest;
} impressions_plan_t;

/* The stale impressions become weak negatives and, when the event is a new
 * impression that finds the list full, so does the first one left. Changes
 * nothing. */
static void impressions_due(const dr_model_t *m, const dr_user_t *u, const dr_event_t *ev,
                            impressions_plan_t *plan) {
    plan->n_rest = u->pending_len;
    memcpy(plan->rest, u->pending, (size_t)u->pending_len * sizeof(*plan->rest));
    plan->n_due = take_due(&m->conf, plan->rest, &plan->n_rest, ev->timestamp_ms, false, plan->due);
    if (ev->type != DR_EV_IMPRESSION || plan->n_rest < DR_PENDING_IMP) return;
    for (int i = 0; i < plan->n_rest; i++)
        if (plan->rest[i].item_id == ev->item_id) return; /* already pending: nothing to add */
    plan->n_due += take_due(&m->conf, plan->rest, &plan->n_rest, ev->timestamp_ms, true,
                            plan->due + plan->n_due);
}

/* Grows the item arrays and the id table for `extra` more rows, so that
 * creating them cannot fail. DR_ENOMEM leaves every row as it was. */
static int reserve_items(dr_model_t *m, size_t extra) {
    while (m->cap_items < m->n_items + extra)
        if (grow_items(m) != 0) return DR_ENOMEM;
    while ((m->n_live + extra) * 2 > m->n_slots) /* the table holds live ids, not free rows */
        if (grow_slots(m) != 0) return DR_ENOMEM;
    return 0;
}

/* Gives every item the event learns about its row before anything else
 * changes, so that a refusal leaves the model and u exactly as they were:
 * the impressions that become negatives, then the event's own item, in the
 * order learning would create them (the order of the rows).
 *
 * An event whose item is new while the catalog holds conf.max_items items is
 * refused with DR_ERANGE, whatever its type: the catalog's last row goes to
 * the event's item before any stale impression. A stale impression whose
 * item still cannot get a row is dropped without a step (no row, nothing to
 * learn), so a user's pending impressions never block its later events. The
 * arrays grow before the first row is added: DR_ENOMEM changes nothing. */
static int prepare_items(dr_model_t *m, const dr_event_t *ev, const impressions_plan_t *plan) {
    bool event_new = dr_model_item_index(m, ev->item_id, false) < 0;
    int64_t room = m->conf.max_items - (int64_t)m->n_items;
    if (event_new && (room < 1 || ev->item_id < 0 || ev->item_id >= DR_MAX_ID)) return DR_ERANGE;
    /* which events learn about their own item (an impression waits) */
    bool event_learns = m->conf.mode == DR_MODE_RATING ? ev->type == DR_EV_RATE
                                                       : ev->type != DR_EV_IMPRESSION;
    bool event_row = event_new && event_learns;
    int64_t create[DR_PENDING_IMP + 1];
    int n_create = 0;
    int64_t room_for_impressions = room - (event_row ? 1 : 0);
    bool event_planned = false;
    for (int k = 0; k < plan->n_due; k++) {
        int64_t id = plan->due[k];
        bool planned = false;
        for (int j = 0; j < n_create && !planned; j++) planned = create[j] == id;
        if (planned || dr_model_item_index(m, id, false) >= 0) continue;
        if (event_row && id == ev->item_id) {
            create[n_create++] = id; /* its row, taken where learning takes it */
            event_planned = true;
        } else if (room_for_impressions > 0 && id >= 0 && id < DR_MAX_ID) {
            create[n_create++] = id;
            room_for_impressions--;
        } /* else: dropped when it comes due (learn_implicit) */
    }
    if (event_row && !event_planned) create[n_create++] = ev->item_id;
    if (n_create == 0) return 0;
    int err = reserve_items(m, (size_t)n_create);
    if (err) return err;
    for (int k = 0; k < n_create; k++) dr_model_item_index(m, create[k], true); /* reserved: cannot fail */
    return 0;
}

/* After a cut of u's detector: the mean of the window it kept less that of
 * the part it dropped (the window held width_before samples of mean
 * `before`, then n more of sum `added`). An interest switch moves a served
 * user's miss rate by 0.3-0.5; ADWIN at a large δ also cuts on chance
 * differences between short windows (docs/DRIFT.md). */
static double cut_change(const dr_user_t *u, double before, double width_before, int n, double added) {
    double kept = (double)dr_adwin_width(&u->drift), mean = dr_adwin_mean(&u->drift);
    double dropped = width_before + n - kept;
    if (!(dropped > 0)) return mean - before; /* nothing dropped: cannot happen on a cut */
    return mean - (before * width_before + added - mean * kept) / dropped;
}

/* One value for the drift detector (see dr_apply_result_t.samples). */
static void drift_sample(dr_apply_result_t *res, float x) {
    if (res->n_samples < (int)(sizeof(res->samples) / sizeof(res->samples[0])))
        res->samples[res->n_samples++] = x;
    res->surprise = x;
}

/* Weak negatives for the impressions that came due (items without a row
 * were dropped by prepare_items()); each one is an outcome: a miss. */
static void learn_impressions(dr_model_t *m, dr_user_t *u, const int64_t *due, int n,
                              dr_apply_result_t *res) {
    bool exploring = n > 0 && dr_user_exploring(&m->conf, u); /* no outcome below changes it */
    for (int k = 0; k < n; k++) {
        drift_sample(res, 1.0f);
        size_t idx = 0;
        if (item_for(m, due[k], &idx) != 0) continue;
        trend_outcome(m, idx, false);
        if (exploring) passed_over(m, u, idx);
        logistic_step(m, u, idx, 0.0f, m->conf.impression_weight, NULL);
        res->updates++;
    }
}

static int learn_implicit(dr_model_t *m, dr_user_t *u, const dr_event_t *ev, uint64_t seed,
                          const impressions_plan_t *plan, const cooc_src_t *recent,
                          dr_apply_result_t *res) {
    const dr_learner_conf_t *c = &m->conf;
    memcpy(u->pending, plan->rest, (size_t)plan->n_rest * sizeof(*plan->rest));
    u->pending_len = plan->n_rest;
    learn_impressions(m, u, plan->due, plan->n_due, res);
    if (ev->type == DR_EV_IMPRESSION) {
        if (pending_find(u, ev->item_id) >= 0) return 0;
        u->pending[u->pending_len].item_id = ev->item_id; /* impressions_due() left room */
        u->pending[u->pending_len].timestamp_ms = ev->timestamp_ms;
        u->pending_len++;
        return 0;
    }
    int p = pending_find(u, ev->item_id);
    if (p >= 0) pending_remove(u, p);
    float y, w;
    if (!implicit_label(c, (uint8_t)ev->type, ev->value, &y, &w)) return 0; /* impressions returned above */
    size_t idx = 0;
    int err = item_for(m, ev->item_id, &idx);
    if (err) return err;
    if (y > 0.5f) pop_meta_observe(m, u, idx, seed, recent);
    bool repeat = p < 0 && dr_user_has_recent(u, ev->item_id); /* checked before the ring takes ev */
    res->loss = logistic_step(m, u, idx, y, w, &res->prediction);
    /* the outcome of an impression, else the surprise of an unprompted event */
    if (p >= 0) {
        drift_sample(res, y > 0.5f ? 0.0f : 1.0f);
        trend_outcome(m, idx, y > 0.5f);
        if (!(y > 0.5f) && dr_user_exploring(c, u)) passed_over(m, u, idx);
    } else if (!repeat) drift_sample(res, y > 0.5f ? 1.0f - res->prediction : res->prediction);
    res->learned = true;
    res->updates++;
    if (y > 0.5f) {
        sample_negatives(m, u, ev->item_id, seed, &res->updates);
        pop_push(m, ev->item_id);
        pop_observe(m, idx);
    }
    return 0;
}

static int learn_rating(dr_model_t *m, dr_user_t *u, const dr_event_t *ev, const cooc_src_t *recent,
                        const float *recent_residual, dr_apply_result_t *res, float *residual) {
    if (ev->type != DR_EV_RATE) return 0;
    size_t idx = 0;
    int err = item_for(m, ev->item_id, &idx);
    if (!err) err = dr__rating_reserve(m, u, idx);
    if (err) return err;
    float score = factor_score(m, u, (int64_t)idx);
    float base = (float)m->mu + u->bias + score;
    dr__rating_pred_t blend;
    float pred = dr__rating_predict(m, u, idx, base, score - m->bias[idx], ev->timestamp_ms, recent->idx,
                                    recent_residual, recent->n, &blend);
    float e = pred - ev->value;
    res->prediction = pred;
    res->loss = e * e;
    drift_sample(res, fminf(e * e, 4.0f) / 4.0f);
    res->learned = true;
    res->updates = 1;
    e = clampf(base - ev->value, m->conf.grad_clip); /* the MF learns its own error */
    u->bias -= user_lr(m, u) * (e + m->conf.reg_user * u->bias);
    if (!isfinite(u->bias)) u->bias = 0.0f;
    sgd_step(m, u, idx, e, m->conf.reg_user);
    *residual = dr__rating_learn(m, u, idx, ev->value, ev->timestamp_ms, &blend);
    m->n_ratings++;
    m->mu += (ev->value - m->mu) / (double)m->n_ratings;
    pop_observe(m, idx);
    return 0;
}

int dr_learner_apply(dr_model_t *m, dr_user_t *u, const dr_event_t *ev, uint64_t event_seed,
                     dr_apply_result_t *res) {
    memset(res, 0, sizeof(*res));
    res->level = NAN;
    res->surprise = -1.0f;
    /* u's last engaged items before this event joins them: the pairs that
     * coengage() counts and the sources of the scores pop_meta_observe()
     * compares (one look-up for both, before this event's rows exist) */
    cooc_src_t src;
    float src_residual[DR_COOC_SOURCES_MAX]; /* rating mode: the rating blend's neighbours */
    src.n = m->conf.cooc_neighbors > 0 && engages(&m->conf, (uint8_t)ev->type, ev->value)
                ? recent_engaged(m, u, src.idx, src.w, src_residual, m->conf.cooc_window)
                : 0;
    const int32_t *recent = src.idx;
    int n_recent = src.n;
    /* every step that can fail comes first: a refused event leaves the
     * model and u as they were (the caller does not store u then) */
    dr_model_advance_clock(m, ev->timestamp_ms); /* a new item is first met now */
    impressions_plan_t plan = {.n_due = 0};
    if (m->conf.mode == DR_MODE_IMPLICIT) impressions_due(m, u, ev, &plan);
    int err = prepare_items(m, ev, &plan);
    if (!err) err = coengage_reserve(m, ev, recent, n_recent);
    if (err) return err;
    rebase_user(m, u);
    float residual = 0.0f; /* rating mode: what u's ring keeps with the rating */
    err = m->conf.mode == DR_MODE_RATING ? learn_rating(m, u, ev, &src, src_residual, res, &residual)
                                         : learn_implicit(m, u, ev, event_seed, &plan, &src, res);
    if (!err) err = coengage(m, ev, recent, n_recent);
    if (err) return err; /* not reached: prepared above */
    u->events_applied++;
    u->last_event_ms = ev->timestamp_ms;
    if (res->learned) outer_observe(m, u);
    /* ADWIN assumes bounded values: it watches samples in [0, 1]. The
     * direction compares the mean of the window it kept with that of the
     * whole window before. */
    double before = dr_adwin_mean(&u->drift);
    res->level = m->conf.drift_enabled && dr_adwin_width(&u->drift) >= DR_DRIFT_LEVEL_MIN_SAMPLES
                     ? (float)(before / m->conf.drift_scale)
                     : NAN; /* the global detector's reference (dr_adwin.h) */
    double width_before = (double)dr_adwin_width(&u->drift), added = 0.0;
    for (int k = 0; k < res->n_samples; k++) {
        u->drift_samples++;
        added += res->samples[k] * m->conf.drift_scale;
        if (m->conf.drift_enabled && dr_adwin_update(&u->drift, res->samples[k] * m->conf.drift_scale) == 1)
            res->drift = true;
    }
    if (res->drift) {
        u->drift_cuts++; /* every cut of the detector, small ones too */
        double change = cut_change(u, before, width_before, res->n_samples, added);
        if (fabs(change) < m->conf.drift_min_change * m->conf.drift_scale) {
            res->drift = false; /* ADWIN's bound at a large δ cuts on chance differences */
            res->drift_small = true;
        } else {
            res->drift_direction = dr_adwin_mean(&u->drift) > before ? 1 : -1;
            u->last_cut_event = u->events_applied;
        }
    }
    /* after the samples: the event's ring entry counts its own outcome */
    if (ev->type != DR_EV_IMPRESSION) user_remember(u, ev, m->conf.recent_items, residual);
    if (dr_event_is_hide(ev->type)) user_hide(u, ev->item_id);
    if (ev->type == DR_EV_HIDE_AUTHOR || ev->type == DR_EV_HIDE_TOPIC) {
        int64_t idx = dr_model_item_index(m, ev->item_id, false); /* learned above: known */
        if (idx >= 0 && ev->type == DR_EV_HIDE_AUTHOR) ring_remember(&u->hidden_authors, m->author[idx]);
        if (idx >= 0 && ev->type == DR_EV_HIDE_TOPIC) ring_remember(&u->hidden_topics, m->topic[idx]);
    }
    if (m->conf.mode == DR_MODE_IMPLICIT)
        dr__rest_observe(u, &m->conf, ev->item_id, ev->type == DR_EV_IMPRESSION,
                         engages(&m->conf, (uint8_t)ev->type, ev->value), ev->timestamp_ms);
    return 0;
}

bool dr_model_drift_handled(const dr_model_t *m, int64_t user_id) {
    double x = (double)(dr_mix64((uint64_t)user_id ^ 0xd1f7u) >> 11) * 0x1.0p-53;
    return x < m->conf.drift_arm_share;
}

bool dr_learner_should_respond(const dr_model_t *m, const dr_user_t *u,
                               const dr_apply_result_t *res) {
    return res->drift && dr_model_drift_handled(m, u->user_id) &&
           (res->drift_direction > 0 || m->conf.drift_respond_improving);
}

bool dr_user_exploring(const dr_learner_conf_t *c, const dr_user_t *u) {
    if (c->explore_miss_rate < 1.0 && dr_adwin_width(&u->drift) >= DR_EXPLORE_FAILING_WINDOW &&
        dr_adwin_mean(&u->drift) >= c->explore_miss_rate)
        return true; /* the lists fail the user: look for what it likes */
    if (u->readapts == 0 || u->events_applied - u->readapt_event >= (uint64_t)c->drift_explore_events)
        return false;
    /* engaged ring entries that joined since the re-adaptation, newest first */
    unsigned len = ring_len(u, c->recent_items);
    int engaged = 0;
    uint32_t since = (uint32_t)(u->drift_samples - u->readapt_sample);
    for (unsigned k = 0; k < len && engaged < c->drift_explore_engaged; k++) {
        const dr_recent_event_t *r = &u->recent[ring_slot(u, c->recent_items, k)];
        /* an entry counts the samples with its own event's: one that joined
         * since has a count above the re-adaptation's (stored as the low 32
         * bits, hence the modular difference) */
        uint32_t after = r->sample - (uint32_t)u->readapt_sample;
        if (after == 0 || after > since) break;
        engaged += engages(c, r->type, r->value);
    }
    return engaged < c->drift_explore_engaged;
}

void dr_model_trend_start(dr_model_t *m) {
    if ((m->conf.trend_weight <= 0 && m->conf.trend_topic_weight <= 0) || m->conf.trend_positives == 0) return;
    if (m->trend_until <= m->pos_clock) { /* counts from the ring as it is now, topics from 0 */
        for (size_t i = 0; i < m->n_items; i++)
            m->trend_count[i] = 0, m->trend_lift[i] = m->trend_score[i] = 0.0f;
        for (int k = 0; k < DR_TREND_TOPICS; k++) m->trend_topics[k].topic = -1;
        m->trend_topics_used = 0;
        m->trend_shown = m->trend_engaged = 0.0;
        m->trend_outcomes = 0;
        m->trend_until = UINT64_MAX; /* so that trend_add counts */
        for (uint32_t k = 0; k < m->pop_len; k++) trend_add(m, m->pop[k], +1);
    }
    m->trend_until = m->pos_clock + (uint64_t)m->conf.trend_positives;
}

uint64_t dr_model_trend_left(const dr_model_t *m) {
    return m->trend_until > m->pos_clock ? m->trend_until - m->pos_clock : 0;
}

static float trend_weight_of(const dr_model_t *m, const dr_user_t *u) {
    /* the weights are in trend_score */
    return dr_model_trend_left(m) > 0 && dr_model_drift_handled(m, u->user_id) ? 1.0f : 0.0f;
}

void dr_model_add_fresh_range(const dr_model_t *m, float *scores, size_t first, size_t n) {
    float w = m->conf.fresh_weight;
    if (w == 0.0f) return;
    for (size_t j = 0; j < n; j++) scores[j] += w * m->fresh_score[first + j];
}

void dr_model_add_trend_range(const dr_model_t *m, const dr_user_t *u, float *scores,
                              size_t first, size_t n) {
    float w = trend_weight_of(m, u);
    if (w == 0.0f) return;
    for (size_t j = 0; j < n; j++) scores[j] += w * m->trend_score[first + j];
}

/* A step on v_u (and b_u) alone, with gradient g on the score. */
static void user_step(dr_model_t *m, dr_user_t *u, size_t idx, float g, bool rating) {
    const dr_learner_conf_t *c = &m->conf;
    const float *q = m->q + idx * (size_t)m->dim;
    float lr_u = user_lr(m, u);
    for (int k = 0; k < m->dim; k++) u->v[k] -= lr_u * (g * q[k] + c->reg_user * u->v[k]);
    if (rating) u->bias -= lr_u * (g + c->reg_user * u->bias);
    bound_norm(u->v, m->dim, c->max_norm);
    if (!isfinite(u->bias)) u->bias = 0.0f;
}

static void replay_event(dr_model_t *m, dr_user_t *u, const dr_recent_event_t *r, uint64_t *rng) {
    int64_t idx = dr_model_item_index(m, r->item_id, false);
    if (idx < 0) return;
    if (m->conf.mode == DR_MODE_RATING) {
        if (r->type != DR_EV_RATE) return;
        float e = (float)m->mu + u->bias + factor_score(m, u, idx) - r->value;
        user_step(m, u, (size_t)idx, clampf(e, m->conf.grad_clip), true);
        return;
    }
    float y, w;
    if (!implicit_label(&m->conf, r->type, r->value, &y, &w)) return;
    float p = sigmoidf(factor_score(m, u, idx));
    user_step(m, u, (size_t)idx, clampf(w * (p - y), m->conf.grad_clip), false);
    for (int n = 0; y > 0.5f && n < m->conf.negatives && m->pop_len > 1; n++) {
        int64_t neg = m->conf.negative_uniform ? draw_item_any_order(m, rng)
                                               : dr_model_item_index(m, m->pop[dr_rand64(rng) % m->pop_len], false);
        if (neg < 0 || m->ids[neg] == r->item_id) continue;
        float pn = sigmoidf(factor_score(m, u, neg));
        user_step(m, u, (size_t)neg, clampf(m->conf.negative_weight * pn, m->conf.grad_clip), false);
    }
}

/* Whether u's current regime (the samples since regime_from) includes
 * misses (samples that were not engagements: impressions left unanswered,
 * hides), as far as the ring tells: the regime's engaged entries, one per
 * sample count (a like that repeats a click shares its count), against the
 * samples since. A full ring whose oldest entry is in the regime tells
 * nothing of the samples before that entry. */
static bool regime_has_misses(const dr_model_t *m, const dr_user_t *u) {
    uint64_t now = u->drift_samples, known_from = u->regime_from, engaged = 0, last = UINT64_MAX;
    int ring = m->conf.recent_items;
    unsigned n = dr_user_regime_len(m, u);
    for (unsigned k = 0; k < n; k++) {
        const dr_recent_event_t *r = &u->recent[ring_slot(u, ring, k)];
        uint64_t count = now - ((uint32_t)now - r->sample); /* samples counted when it joined: its own is the last */
        if (count == 0) break; /* joined before any sample (a regime from 0 holds it): before the window */
        if (k + 1 == (unsigned)ring) known_from = count - 1;
        if (engages(&m->conf, r->type, r->value) && count != last) engaged++, last = count;
    }
    return now - known_from > engaged;
}

int dr_learner_readapt(dr_model_t *m, dr_user_t *u, int direction) {
    memset(u->v, 0, (size_t)m->dim * sizeof(float));
    u->prior_version = m->version;
    u->bias = 0.0f;
    /* the new regime starts at the first sample ADWIN kept, or at the cut:
     * older recent events leave the co-engagement context and are not
     * replayed. At a cut for the worse the window still holds the end of
     * the old regime (ADWIN drops whole buckets), and where it also holds
     * misses its engagements are that end, or the low rate of chance
     * engagements with the stale lists shown since the change: neither
     * says what the user wants now, and kept in the context they hold the
     * lists on the old interest. A window of engagements only (ratings
     * whose surprise rose) is the new regime itself. */
    uint64_t kept = dr_adwin_width(&u->drift);
    u->regime_from = u->drift_samples > kept ? u->drift_samples - kept : 0;
    if (direction > 0 && m->conf.regime_at_cut && regime_has_misses(m, u))
        u->regime_from = u->drift_samples;
    u->readapts++;
    u->passed_topics.len = u->passed_topics.head = 0; /* a new exploration */
    u->readapt_event = u->events_applied;
    u->readapt_sample = u->drift_samples;
    int ring = m->conf.recent_items;
    unsigned n = dr_user_regime_len(m, u);
    uint64_t rng = dr_mix64((uint64_t)u->user_id ^ u->events_applied);
    for (int epoch = 0; epoch < m->conf.readapt_epochs; epoch++) {
        /* oldest kept event first: the ring's newest n entries end at head-1 */
        for (unsigned j = 0; j < n; j++)
            replay_event(m, u, &u->recent[ring_slot(u, ring, n - 1 - j)], &rng);
    }
    return (int)n;
}
