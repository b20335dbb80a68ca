/* records.c - the learner's binary records: users, items and the globals,
 * as RocksDB stores them. Fixed little-endian encodings, version byte
 * first; every older version is still read, and a record that does not
 * parse (truncated, out of bounds, NaN) is refused whole.
 *
 * A record may have been written under other settings than the running
 * ones (learner.recent.items, learner.cooc.neighbors, drift.max.buckets,
 * learner.content.dim changed between restarts): such a record is adapted to
 * the configuration, never refused, so that a restart keeps every user's
 * state. Only a value no writer of ours produces is DR_ECORRUPT, and every
 * stored count, length, head or type byte is checked against the array it
 * will index before anything reads through it. A changed learner.dim makes
 * the globals record DR_ECORRUPT, and the pipeline refuses to start. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "learner_internal.h"

#define USER_RECORD_VERSION 12 /* 2: + drift detector; 3: + last list scores; 4: + prior version; 5: + drift regime; 6: + hidden items; 7: + seen posts filter; 8: + hidden authors and topics; 9: + the last re-adaptation's sample; 10: + the rating blend's part and the ring's residuals; 11: + the user's content statistics; 12: + the topics passed over while exploring; older still read */
#define ITEM_RECORD_VERSION 9 /* 2: + content embedding and δ_i; 3: + decayed positives and
                                 co-engagement; 4: + author and topic; 5: + publish time;
                                 6: + the author's pseudo-count and when it joined
                                 its author; 7: + the co-engagement row's base
                                 and the half-life its counts were made under;
                                 8: + the rating blend's statistics;
                                 9: + when its content joined the content
                                 prior's regression; older still read */
#define GLOBALS_RECORD_VERSION 6 /* 2: + outer-loop accumulator and past priors; 3: + population prior;
                                    4: + the co-engagement clock; 5: + the rating blend;
                                    6: + the id table's size */

/* Co-engagement clocks a record may hold: engagements, far below 2^53
 * (where a double stops counting by one). */
#define STORED_MAX_COOC_CLOCK 4503599627370496.0 /* 2^52 */

/* Event times a stored record may hold: what ingest accepts on input
 * (schemas/codec.c, dr_event_validate: [1970, 3000)). The bound also keeps
 * the learner's `now - t` of a pending impression from overflowing. */
#define STORED_MAX_TIMESTAMP_MS INT64_C(32503680000000)

static bool all_finite(const float *v, int n) {
    for (int k = 0; k < n; k++)
        if (!isfinite(v[k])) return false;
    return true;
}

/* Item ids are what ingest accepts ([0, 2^53)); anything else in a record
 * was never written by us, and would make the learner fail on every event
 * of the user or item holding it (dr_model_item_index refuses it). */
static bool valid_item_id(int64_t id) { return id >= 0 && id < DR_MAX_ID; }

size_t dr_model_dirty_items(const dr_model_t *m) { return m->n_dirty + m->gone.n; }

/* The largest item record: fixed fields, q_i, content and δ_i, neighbours. */
size_t dr__item_record_cap(const dr_model_t *m) {
    return 64 + 56 + (size_t)m->dim * 8 + (size_t)m->content_dim * 4 + (size_t)m->conf.cooc_neighbors * 12;
}

/* Version 3's tail: n_i, then the neighbour count and (item id, n_ji) pairs
 * in the table's order (ids, not indices: indices are this process's own). */
static void put_neighbors(const dr_model_t *m, size_t idx, dr_writer_t *w) {
    const dr__nbr_t *t = &m->nbr[idx];
    dr_put_f32(w, m->engaged[idx]);
    /* a removed item the sweep has not reached yet is not written */
    uint32_t n = 0;
    for (uint32_t s = 0; s < t->n; s++) n += m->ids[t->e[s].key] >= 0;
    dr_put_u32(w, n);
    for (uint32_t s = 0; s < t->n; s++) {
        if (m->ids[t->e[s].key] < 0) continue;
        dr_put_i64(w, m->ids[t->e[s].key]);
        dr_put_f32(w, t->e[s].w);
    }
}

/* Reads version 3's tail into item idx's table. Neighbours not loaded yet
 * get their row now (their own record fills it later). DR_ECORRUPT on a bad
 * tail (a neighbour id outside [0, 2^53) or the item itself, a weight not
 * > 0), DR_ENOMEM, DR_ERANGE when the catalog (learner.max.items) is full. */
static int get_neighbors(dr_model_t *m, size_t idx, int64_t item_id, dr_reader_t *r) {
    float engaged = dr_get_f32(r);
    uint32_t n = dr_get_u32(r);
    if (!r->ok || !(engaged >= 0 && isfinite(engaged)) || (size_t)n > (r->len - r->pos) / 12)
        return DR_ECORRUPT;
    /* every pair is read and checked before any row is made: n is bounded
     * by the record's length (12 bytes a pair) */
    dr__nbr_ranked_t *pairs = n ? malloc((size_t)n * sizeof(*pairs)) : NULL;
    if (n && !pairs) return DR_ENOMEM;
    for (uint32_t k = 0; k < n; k++) {
        pairs[k].id = dr_get_i64(r);
        pairs[k].e.w = dr_get_f32(r);
        pairs[k].e.key = -1;
        if (!r->ok || !(pairs[k].e.w > 0 && isfinite(pairs[k].e.w)) || !valid_item_id(pairs[k].id) ||
            pairs[k].id == item_id) {
            free(pairs);
            return DR_ECORRUPT;
        }
    }
    /* A record holds at most what its writer kept. When learner.cooc.neighbors
     * was lowered since, the item keeps its heaviest `cap` neighbours (equal
     * weights by id), with their weights as stored: what a full table keeps
     * when it makes room, without the halving a table applies to go on
     * counting. 0: the term is off and nothing is kept. */
    uint32_t cap = m->conf.cooc_neighbors > 0 ? (uint32_t)m->conf.cooc_neighbors : 0;
    if (n > cap) {
        dr__nbr_sort_ranked(pairs, n); /* the order a full table keeps by */
        n = cap;
    }
    dr__set_engaged(m, idx, engaged);
    dr__nbr_clear(&m->nbr[idx]);
    /* the table's final size at once: the same table as one grown entry by
     * entry (its index is rebuilt in entry order), without its seven
     * allocations and copies at a full table; a start loads every item */
    int err = dr__nbr_reserve(&m->nbr[idx], n, cap);
    for (uint32_t k = 0; k < n && !err; k++) {
        int64_t j = dr_model_item_index(m, pairs[k].id, false);
        if (j == DR_ENOTFOUND && (j = dr_model_item_index(m, pairs[k].id, true)) >= 0) {
            /* until its own record comes; a removed item's never does, and
             * the expiry pass drops the row (items.c) */
            m->excluded[j] |= DR__EXCL_PLACEHOLDER;
            m->n_placeholders++;
        }
        if (j < 0) err = (int)j; /* the id is valid: the catalog is full, or no memory */
        else if (j > INT32_MAX) err = DR_ERANGE;
        else err = dr__nbr_add(&m->nbr[idx], (int32_t)j, pairs[k].e.w, cap, m->ids);
    }
    free(pairs);
    return err;
}

int dr_model_drain_dirty_items(dr_model_t *m, dr_item_sink_fn fn, void *ctx) {
    while (m->gone.n > 0) { /* removed items: their records go */
        int err = fn(ctx, m->gone.v[m->gone.n - 1], NULL, 0);
        if (err) return err;
        m->gone.n--;
    }
    while (m->n_dirty > 0) {
        size_t idx = (size_t)m->dirty_list[m->n_dirty - 1];
        dr_writer_t w = {m->rec_buf, 0, dr__item_record_cap(m), true};
        dr_put_u8(&w, ITEM_RECORD_VERSION);
        dr_put_u16(&w, (uint16_t)m->dim);
        dr_put_f32(&w, m->bias[idx]);
        dr_put_u8(&w, m->excluded[idx] & DR__EXCL_CATALOG); /* the rest is worked out again */
        dr_put_u64(&w, m->count[idx]);
        dr_put_bytes(&w, m->q + idx * (size_t)m->dim, (size_t)m->dim * 4);
        dr_put_f32(&w, m->pop_count[idx]);
        dr_put_u64(&w, m->pop_time[idx]);
        dr_put_i64(&w, m->author[idx]); /* version 4: the catalog's author and topic */
        dr_put_i64(&w, m->topic[idx]);
        dr_put_i64(&w, m->published[idx]); /* version 5 */
        dr_put_f32(&w, m->pop_seed[idx]);  /* version 6 */
        dr_put_u64(&w, m->author_joined[idx]);
        uint16_t c = m->has_content[idx] ? (uint16_t)m->content_dim : 0;
        dr_put_u16(&w, c);
        if (c) {
            dr_put_bytes(&w, m->emb + idx * (size_t)c, (size_t)c * 4);
            dr_put_bytes(&w, m->delta + idx * (size_t)m->dim, (size_t)m->dim * 4);
        }
        dr_put_f64(&w, m->nbr_base[idx]); /* version 7 */
        dr_put_f32(&w, m->conf.cooc_halflife);
        put_neighbors(m, idx, &w);
        dr_put_f32(&w, m->rated[idx].residual_sum); /* version 8 */
        dr_put_f32(&w, m->rated[idx].error_sq);
        dr_put_u32(&w, m->rated[idx].n);
        dr_put_u64(&w, m->content_joined[idx]); /* version 9 */
        int err = w.ok ? fn(ctx, m->ids[idx], m->rec_buf, w.len) : DR_ENOMEM;
        if (err) return err;
        m->dirty[idx] = 0;
        m->n_dirty--;
    }
    return 0;
}

int dr_model_load_item(dr_model_t *m, int64_t item_id, const void *rec, size_t len) {
    if (!rec) { /* a drained removal */
        int err = dr_model_remove_item(m, item_id);
        return err == DR_ENOTFOUND ? 0 : err;
    }
    dr_reader_t r = {rec, len, 0, true};
    uint8_t version = dr_get_u8(&r);
    if (version < 1 || version > ITEM_RECORD_VERSION || dr_get_u16(&r) != m->dim) return DR_ECORRUPT;
    int64_t i = dr_model_item_index(m, item_id, true);
    if (i < 0) return (int)i;
    size_t idx = (size_t)i;
    dr__author_leave(m, idx); /* the record replaces the item's share of its author's */
    dr__content_prior_leave(m, idx); /* ... and of the content prior's regression */
    m->bias[idx] = dr_get_f32(&r);
    uint8_t excluded = dr_get_u8(&r);
    if (m->excluded[idx] & DR__EXCL_PLACEHOLDER) m->n_placeholders--; /* its record came */
    m->excluded[idx] = excluded ? DR__EXCL_CATALOG : 0; /* a flag: only 0 and 1 are written */
    m->count[idx] = dr_get_u64(&r);
    float *q = m->q + idx * (size_t)m->dim;
    dr_get_bytes(&r, q, (size_t)m->dim * 4);
    if (version >= 3) { /* older: no positives counted yet */
        m->pop_count[idx] = dr_get_f32(&r);
        m->pop_time[idx] = dr_get_u64(&r);
    }
    if (version >= 4) { /* older: the catalog's record sets them again */
        m->author[idx] = dr_get_i64(&r);
        m->topic[idx] = dr_get_i64(&r);
    }
    int64_t published = version >= 5 ? dr_get_i64(&r) : -1; /* older: met now */
    bool published_ok = (published >= -1 && published < STORED_MAX_TIMESTAMP_MS) || published == DR__PUBLISHED_DELETED;
    m->published[idx] = published_ok ? published : -1;
    /* older: no pseudo-count; joined its author as of its last positive
     * (what its author's record, rebuilt from the items, counts it from) */
    m->pop_seed[idx] = version >= 6 ? dr_get_f32(&r) : 0.0f;
    m->author_joined[idx] = version >= 6 ? dr_get_u64(&r) : m->pop_time[idx];
    if (dr__item_is_expired(m, idx)) m->excluded[idx] |= DR__EXCL_EXPIRED;
    m->fresh_score[idx] = dr__item_freshness(m, idx);
    uint16_t c = version >= 2 ? dr_get_u16(&r) : 0;
    /* no embedding, or one of another learner.content.dim: a free q_i */
    if (c != m->content_dim && m->has_content[idx]) { m->has_content[idx] = 0; m->n_content--; }
    bool ok = r.ok && excluded <= 1 && published_ok && all_finite(q, m->dim) && isfinite(m->bias[idx]) &&
              m->author[idx] >= -1 && m->author[idx] < DR_MAX_ID && m->topic[idx] >= -1 &&
              m->topic[idx] < DR_MAX_ID &&
              isfinite(m->pop_count[idx]) && m->pop_count[idx] >= 0 && isfinite(m->pop_seed[idx]) &&
              m->pop_seed[idx] >= 0;
    if (ok) dr__pop_refresh_item(m, idx); /* the globals, loaded before or after, do the same for all */
    size_t content_len = (size_t)c * 4 + (size_t)m->dim * 4;
    if (ok && c > 0 && r.len - r.pos >= content_len) {
        if (c == m->content_dim) {
            if (!m->has_content[idx]) m->n_content++;
            m->has_content[idx] = 1;
            dr_get_bytes(&r, m->emb + idx * (size_t)c, (size_t)c * 4);
            dr_get_bytes(&r, m->delta + idx * (size_t)m->dim, (size_t)m->dim * 4);
            ok = all_finite(m->emb + idx * (size_t)c, c) && all_finite(m->delta + idx * (size_t)m->dim, m->dim);
            /* the stored q_i may predate W's last outer step: recompute it
             * (the globals, loaded before or after, do the same for all) */
            if (ok) dr__content_refresh_item(m, idx);
        } else {
            r.pos += content_len; /* learner.content.dim changed: the item keeps its q_i */
        }
    }
    /* older: counted as of clock 0 (a globals record of theirs has no clock
     * either) by counts that never faded; the globals may load before or
     * after (model.c, row_exponent) */
    double base = ok && version >= 7 ? dr_get_f64(&r) : 0.0;
    float made_halflife = ok && version >= 7 ? dr_get_f32(&r) : 0.0f;
    ok = ok && r.ok && base >= 0 && base <= STORED_MAX_COOC_CLOCK &&
         (made_halflife == 0 || (made_halflife >= 1 && made_halflife <= 1e12f));
    m->nbr_base[idx] = ok ? base : m->cooc_clock;
    int err = ok ? 0 : DR_ECORRUPT;
    /* the neighbours may add rows: nothing above holds a pointer past here */
    if (!err && version >= 3) err = get_neighbors(m, idx, item_id, &r);
    if (!err) dr__cooc_convert_row(m, idx, made_halflife);
    if (!err && version >= 8) { /* older: no ratings counted yet */
        dr__item_ratings_t *rated = &m->rated[idx];
        rated->residual_sum = dr_get_f32(&r);
        rated->error_sq = dr_get_f32(&r);
        rated->n = dr_get_u32(&r);
        if (!r.ok || !isfinite(rated->residual_sum) || !(rated->error_sq >= 0 && rated->error_sq < INFINITY))
            err = DR_ECORRUPT;
    }
    /* older: its content joined the regression when it joined its author */
    if (!err) m->content_joined[idx] = version >= 9 ? dr_get_u64(&r) : m->author_joined[idx];
    if (!err && !r.ok) err = DR_ECORRUPT;
    if (!err && r.pos != len) err = DR_ECORRUPT;
    if (err) {
        if (m->has_content[idx]) m->n_content--;
        dr__item_init(m, idx, item_id); /* never let a bad record put NaN in the model */
        return err;
    }
    /* the author table is not stored: its record is the sum over its posts
     * of what their records hold, rebuilt here one post at a time */
    dr__author_join(m, idx);
    dr__content_prior_join(m, idx);
    return 0;
}

/* Version 5's rating blend: ratings learned from; with any, the range seen
 * and the global stage (its input count, weights, covariance). */
static void put_blend(const dr__rating_blend_t *b, dr_writer_t *w) {
    dr_put_u64(w, b->n);
    if (b->n == 0) return;
    dr_put_f32(w, b->lo);
    dr_put_f32(w, b->hi);
    dr_put_u16(w, (uint16_t)b->inputs);
    for (int k = 0; k < b->inputs; k++) dr_put_f64(w, b->w[k]);
    for (int k = 0; k < b->inputs * b->inputs; k++) dr_put_f64(w, b->p[k]);
}

/* False for a blend no writer of ours makes. One of another input count
 * than b's (a build that blends other inputs, or content embeddings
 * switched on or off since) starts the stage again. */
static bool get_blend(dr__rating_blend_t *b, dr_reader_t *r) {
    int want = b->inputs;
    dr__rating_blend_reset(b, want);
    uint64_t n = dr_get_u64(r);
    if (n == 0) return r->ok;
    float lo = dr_get_f32(r), hi = dr_get_f32(r);
    uint16_t inputs = dr_get_u16(r);
    if (!r->ok || !isfinite(lo) || !isfinite(hi) || lo > hi) return false;
    if (inputs != want) {
        size_t skip = (size_t)inputs * (inputs + 1u) * 8u;
        if (skip > r->len - r->pos) { /* past the record: the reader stops, nothing read beyond */
            r->ok = false;
            return false;
        }
        r->pos += skip;
    } else {
        bool finite = true;
        for (int k = 0; k < want; k++) finite &= isfinite(b->w[k] = dr_get_f64(r));
        for (int k = 0; k < want * want; k++) finite &= isfinite(b->p[k] = dr_get_f64(r));
        if (!r->ok || !finite) { dr__rating_blend_reset(b, want); return false; }
    }
    b->n = n;
    b->lo = lo;
    b->hi = hi;
    return true;
}

int dr_model_encode_globals(const dr_model_t *m, uint8_t **out, size_t *len) {
    size_t cap = 64 + 60 + 20 + 8 * (DR__RATING_INPUTS + 1) * DR__RATING_INPUTS + (size_t)m->dim * 4 + DR_POP_RING * 8 + 4 + (size_t)m->dim * 8 +
                 DR_PRIOR_HISTORY * (8 + (size_t)m->dim * 4) + 2 + (size_t)m->dim * (size_t)m->content_dim * 4;
    uint8_t *buf = malloc(cap);
    if (!buf) return DR_ENOMEM;
    dr_writer_t w = {buf, 0, cap, true};
    dr_put_u8(&w, GLOBALS_RECORD_VERSION);
    dr_put_u16(&w, (uint16_t)m->dim);
    dr_put_f64(&w, m->mu);
    dr_put_u64(&w, m->n_ratings);
    dr_put_i64(&w, m->version);
    dr_put_bytes(&w, m->prior, (size_t)m->dim * 4);
    dr_put_u32(&w, m->pop_len);
    dr_put_u32(&w, m->pop_head);
    dr_put_bytes(&w, m->pop, (size_t)m->pop_len * 8);
    dr_put_u32(&w, m->reptile_n);
    for (int k = 0; k < m->dim; k++) dr_put_f64(&w, m->reptile_sum[k]);
    for (int h = 0; h < DR_PRIOR_HISTORY; h++) dr_put_i64(&w, m->past_version[h]);
    dr_put_bytes(&w, m->past_prior, (size_t)DR_PRIOR_HISTORY * (size_t)m->dim * 4);
    dr_put_u64(&w, m->pos_clock);
    dr_put_u64(&w, m->pop_ref);
    dr_put_f32(&w, m->pop_gamma);
    dr_put_f32(&w, m->pop_log_tau);
    dr_put_f64(&w, m->pop_grad_gamma);
    dr_put_f64(&w, m->pop_grad_log_tau);
    dr_put_u32(&w, m->pop_grad_n);
    dr_put_f64(&w, m->cooc_clock); /* version 4 */
    put_blend(&m->blend, &w);      /* version 5 */
    dr_put_u64(&w, m->n_slots);    /* version 6 */
    dr_put_u16(&w, (uint16_t)m->content_dim);
    dr_put_bytes(&w, m->W, (size_t)m->dim * (size_t)m->content_dim * 4);
    *out = buf;
    *len = w.len;
    return 0;
}

/* The population prior's part of a version-3 globals record; false when a
 * value is out of its bounds. Older records keep the configured γ and τ, and
 * the clock at 0 (counts of older item records are 0 too). With the term
 * switched off in this configuration, a stored γ stays unused. */
static bool pop_globals_read(dr_model_t *m, dr_reader_t *r) {
    m->pos_clock = dr_get_u64(r);
    m->pop_ref = dr_get_u64(r);
    float gamma = dr_get_f32(r), log_tau = dr_get_f32(r);
    m->pop_grad_gamma = dr_get_f64(r);
    m->pop_grad_log_tau = dr_get_f64(r);
    m->pop_grad_n = dr_get_u32(r);
    if (!(gamma >= 0 && gamma <= DR__POP_GAMMA_MAX) ||
        !(log_tau >= logf(DR__POP_TAU_MIN) && log_tau <= logf(DR__POP_TAU_MAX)) || m->pop_ref > m->pos_clock ||
        !isfinite(m->pop_grad_gamma) || !isfinite(m->pop_grad_log_tau))
        return false;
    m->pop_gamma = gamma;
    m->pop_log_tau = log_tau;
    return true;
}

int dr_model_load_globals(dr_model_t *m, const void *rec, size_t len) {
    dr_reader_t r = {rec, len, 0, true};
    uint8_t version = dr_get_u8(&r);
    if (version < 1 || version > GLOBALS_RECORD_VERSION || dr_get_u16(&r) != m->dim) return DR_ECORRUPT;
    m->mu = dr_get_f64(&r);
    m->n_ratings = dr_get_u64(&r);
    /* the model version picks the slot of past priors it writes next
     * (version % DR_PRIOR_HISTORY): a negative one would index before them */
    int64_t model_version = dr_get_i64(&r);
    if (!r.ok || model_version < 0 || model_version == INT64_MAX) return DR_ECORRUPT;
    uint64_t slots = 0;
    m->version = model_version;
    dr_get_bytes(&r, m->prior, (size_t)m->dim * 4);
    /* The popularity ring fills from slot 0 (head == len) until it is full,
     * then head goes round: any other (len, head) is not a ring of ours. */
    uint32_t pop_len = dr_get_u32(&r), pop_head = dr_get_u32(&r);
    if (!r.ok || pop_len > DR_POP_RING || pop_head >= DR_POP_RING || (pop_len < DR_POP_RING && pop_head != pop_len))
        return DR_ECORRUPT;
    bool ids_valid = true;
    for (uint32_t k = 0; k < pop_len; k++) ids_valid &= valid_item_id(m->pop[k] = dr_get_i64(&r));
    if (!ids_valid) return DR_ECORRUPT; /* negatives drawn from them must get a row */
    m->pop_len = pop_len;
    m->pop_head = pop_head;
    bool sums_finite = true;
    if (version >= 2) {
        m->reptile_n = dr_get_u32(&r);
        /* counted up to learner.prior.period (an int), then reset */
        sums_finite &= m->reptile_n <= INT32_MAX;
        for (int k = 0; k < m->dim; k++) sums_finite &= isfinite(m->reptile_sum[k] = dr_get_f64(&r));
        /* past versions are older than the current one, or -1 (empty slot) */
        for (int h = 0; h < DR_PRIOR_HISTORY; h++) {
            int64_t past = dr_get_i64(&r);
            sums_finite &= past >= -1 && past < model_version;
            m->past_version[h] = sums_finite ? past : -1;
        }
        dr_get_bytes(&r, m->past_prior, (size_t)DR_PRIOR_HISTORY * (size_t)m->dim * 4);
        sums_finite &= all_finite(m->past_prior, DR_PRIOR_HISTORY * m->dim);
        if (version >= 3 && !pop_globals_read(m, &r)) sums_finite = false;
        double clock = version >= 4 ? dr_get_f64(&r) : 0.0; /* older: item records have no base */
        if (clock >= 0 && clock <= STORED_MAX_COOC_CLOCK) m->cooc_clock = clock;
        else sums_finite = false;
        if (version >= 5 && !get_blend(&m->blend, &r)) sums_finite = false; /* older: no blend yet */
        slots = version >= 6 ? dr_get_u64(&r) : 0; /* older: sized by the live items */
        if (slots != 0 && (slots < 1024 || (slots & (slots - 1)) != 0)) sums_finite = false;
        uint16_t c = dr_get_u16(&r);
        if (c == m->content_dim) {
            dr_get_bytes(&r, m->W, (size_t)m->dim * c * 4);
            sums_finite &= all_finite(m->W, m->dim * c);
            if (sums_finite) dr__content_refresh_all(m);
        } else {
            r.pos = len; /* learner.content.dim changed: W starts again */
        }
    }
    if (!r.ok || r.pos != len || !all_finite(m->prior, m->dim) || !isfinite(m->mu) || !sums_finite) {
        memset(m->prior, 0, (size_t)m->dim * sizeof(float));
        for (int h = 0; h < DR_PRIOR_HISTORY; h++) m->past_version[h] = -1;
        m->reptile_n = 0;
        return DR_ECORRUPT;
    }
    dr__pop_refresh_all(m);
    dr__cooc_rebase_norms(m); /* the items, loaded before or after, as of the clock */
    /* the id table at the size it had (items.c, dr__fit_slots), unless that
     * is too small for the items loaded already or more than
     * learner.max.items can need now; out of memory, it keeps its size */
    if (slots != 0 && slots != m->n_slots && m->n_live * 2 <= slots && slots <= dr__slots_bound(m))
        (void)dr__rehash_slots(m, slots);
    return 0;
}

/* A bounded ring of ids (hidden items, authors, topics): its length, head
 * and ids. */
static void put_ids(dr_writer_t *w, const int64_t *ids, uint8_t len, uint8_t head) {
    dr_put_u8(w, len);
    dr_put_u8(w, head);
    for (unsigned i = 0; i < len; i++) dr_put_i64(w, ids[i]);
}

/* A ring as put_ids wrote it for capacity cap: false for one that no writer
 * makes (a count over cap, a head past a partial ring, an id out of range). */
static bool get_ids(dr_reader_t *r, int64_t *ids, uint8_t *len, uint8_t *head, unsigned cap) {
    *len = dr_get_u8(r);
    *head = dr_get_u8(r);
    if (*len > cap || *head >= cap || (*head > 0 && *len < cap)) return false;
    for (unsigned i = 0; i < *len; i++)
        if (!valid_item_id(ids[i] = dr_get_i64(r))) return false; /* ids as items' */
    return r->ok;
}

size_t dr_user_encoded_max(const dr_user_t *u, int dim) {
    return 64 + 28 + (size_t)u->recent_len * 17 + (size_t)u->pending_len * 16 +
           (size_t)u->last_list_len * 12 + (size_t)dim * 4 + 12 + 8 + 2 + (size_t)u->hidden_len * 8 +
           1 + sizeof(u->rest) + 3 * (2 + DR_HIDDEN_SOURCES * 8) +
           8 + dr_adwin_serialized_size(&u->drift) + 1 + sizeof(u->rating) + (size_t)u->recent_len * 4 +
           2 + (size_t)u->rating.content_len * 8;
}

int dr_user_encode(const dr_user_t *u, int dim, uint8_t **out, size_t *len) {
    size_t cap = dr_user_encoded_max(u, dim);
    uint8_t *buf = malloc(cap);
    if (!buf) return DR_ENOMEM;
    int err = dr_user_encode_into(u, dim, buf, cap, len);
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    return 0;
}

int dr_user_encode_into(const dr_user_t *u, int dim, uint8_t *buf, size_t cap, size_t *len) {
    dr_writer_t w = {buf, 0, cap, true};
    dr_put_u8(&w, USER_RECORD_VERSION);
    dr_put_u16(&w, (uint16_t)dim);
    dr_put_u64(&w, u->events_applied);
    dr_put_i64(&w, u->last_event_ms);
    dr_put_u32(&w, (uint32_t)u->last_source.partition);
    dr_put_i64(&w, u->last_source.offset);
    dr_put_f32(&w, u->bias);
    dr_put_u8(&w, (uint8_t)u->recent_len);
    dr_put_u8(&w, (uint8_t)u->recent_head);
    for (unsigned i = 0; i < u->recent_len; i++) {
        dr_put_i64(&w, u->recent[i].item_id);
        dr_put_f32(&w, u->recent[i].value);
        dr_put_u8(&w, u->recent[i].type);
    }
    dr_put_u8(&w, u->pending_len);
    for (unsigned i = 0; i < u->pending_len; i++) {
        dr_put_i64(&w, u->pending[i].item_id);
        dr_put_i64(&w, u->pending[i].timestamp_ms);
    }
    dr_put_u8(&w, u->last_list_len);
    for (unsigned i = 0; i < u->last_list_len; i++) dr_put_i64(&w, u->last_list[i]);
    dr_put_bytes(&w, u->v, (size_t)dim * 4);
    dr_put_u32(&w, u->drift_cuts);
    dr_put_u64(&w, u->last_cut_event);
    size_t written = 0;
    if (!w.ok || dr_adwin_serialize(&u->drift, w.p + w.len, w.cap - w.len, &written) != 0)
        return DR_ERANGE; /* cap below dr_user_encoded_max */
    w.len += written;
    for (unsigned i = 0; i < u->last_list_len; i++) dr_put_f32(&w, u->last_list_score[i]);
    dr_put_i64(&w, u->prior_version);
    /* version 5: the drift regime */
    dr_put_u64(&w, u->drift_samples);
    dr_put_u64(&w, u->regime_from);
    dr_put_u32(&w, u->readapts);
    dr_put_u64(&w, u->readapt_event);
    for (unsigned i = 0; i < u->recent_len; i++) dr_put_u32(&w, u->recent[i].sample);
    /* version 6: the hidden items */
    put_ids(&w, u->hidden, u->hidden_len, u->hidden_head);
    /* version 7: the seen posts filter, when it holds anything */
    dr_put_u8(&w, u->rest.gen_start_ms != 0);
    if (u->rest.gen_start_ms != 0) {
        dr_put_i64(&w, u->rest.gen_start_ms);
        dr_put_bytes(&w, u->rest.counts, sizeof(u->rest.counts));
        for (int g = 0; g < 2; g++)
            for (int i = 0; i < DR_REST_BITS / 64; i++) dr_put_u64(&w, u->rest.resting[g][i]);
    }
    /* version 8: the hidden authors and topics */
    put_ids(&w, u->hidden_authors.id, u->hidden_authors.len, u->hidden_authors.head);
    put_ids(&w, u->hidden_topics.id, u->hidden_topics.len, u->hidden_topics.head);
    /* version 9: where the last re-adaptation's exploration counts from */
    dr_put_u64(&w, u->readapt_sample);
    /* version 10: the rating blend's part, when it holds anything (rating
     * mode), with the ring's residuals */
    const dr_rating_user_t *ru = &u->rating;
    dr_put_u8(&w, ru->n > 0);
    if (ru->n > 0) {
        dr_put_u32(&w, ru->n);
        dr_put_u32(&w, ru->session_n);
        dr_put_f32(&w, ru->residual_sum);
        dr_put_f32(&w, ru->error_sq);
        for (int k = 0; k < 3; k++) dr_put_f32(&w, ru->ema[k]);
        dr_put_f32(&w, ru->session_sum);
        for (int k = 0; k < DR_RATING_USER_INPUTS; k++) dr_put_f32(&w, ru->w[k]);
        for (int k = 0; k < DR_RATING_USER_INPUTS * DR_RATING_USER_INPUTS; k++) dr_put_f32(&w, ru->p[k]);
        for (unsigned i = 0; i < u->recent_len; i++) dr_put_f32(&w, u->recent[i].residual);
        /* version 11: the content statistics (c, then 2c floats; c = 0: none) */
        dr_put_u16(&w, ru->content_len);
        for (unsigned k = 0; k < 2u * ru->content_len; k++) dr_put_f32(&w, ru->content[k]);
    }
    /* version 12: the topics passed over while exploring */
    put_ids(&w, u->passed_topics.id, u->passed_topics.len, u->passed_topics.head);
    if (!w.ok) return DR_ERANGE;
    *len = w.len;
    return 0;
}

/* Puts the stored recent-event ring into u under a ring of `ring` slots
 * (learner.recent.items now). A writer's ring fills slots 0..len-1 in order
 * (head == len) and, once full (len == its ring size), goes round with head
 * at the oldest entry; the writer's ring size is not stored, but in both
 * cases the entries, read as a ring of `len` slots starting at head (mod
 * len), run from the oldest to the newest.
 *
 * What is kept: the newest min(len, ring) entries, in their order. When the
 * stored layout is already a ring of `ring` slots it is kept as it is (a
 * record then re-encodes to the same bytes); otherwise (learner.recent.items
 * lowered, or raised under a full ring) the kept entries move to slots
 * 0..kept-1, oldest first, and head is kept % ring: the next event then
 * overwrites the oldest kept entry when the ring is full, or fills the next
 * free slot. recent_len <= ring and recent_head < ring afterwards, which is
 * what the learner's ring arithmetic (model.c) relies on. */
static void recent_fit(dr_user_t *u, const dr_recent_event_t *stored, unsigned len, unsigned head,
                       unsigned ring) {
    if (len <= ring && head < ring && (len == ring || head == len)) {
        memcpy(u->recent, stored, len * sizeof(*stored));
        u->recent_len = (uint16_t)len;
        u->recent_head = (uint16_t)head;
        return;
    }
    unsigned kept = len < ring ? len : ring;
    for (unsigned j = 0; j < kept; j++) u->recent[j] = stored[(head + len - kept + j) % len];
    u->recent_len = (uint16_t)kept;
    u->recent_head = (uint16_t)(kept % ring);
}

/* Reads the user's drift detector. A detector written with another
 * drift.max.buckets is checked under the one it was written with and then
 * dropped: its buckets cannot be re-bucketed, and the user goes on with an
 * empty detector under the configured parameters rather than losing its
 * whole state. 0, DR_ECORRUPT, DR_ENOMEM. */
static int get_drift(dr_user_t *u, const dr_adwin_conf_t *conf, dr_reader_t *r) {
    size_t used = 0;
    const uint8_t *at = r->p + r->pos;
    size_t left = r->len - r->pos;
    dr_adwin_free_buckets(&u->drift);
    int err = dr_adwin_deserialize(&u->drift, conf, at, left, &used);
    if (err == DR_ECONFIG && left >= 2) { /* byte 1: the writer's max_buckets */
        dr_adwin_conf_t written = *conf;
        written.max_buckets = at[1];
        err = dr_adwin_deserialize(&u->drift, &written, at, left, &used);
        dr_adwin_free_buckets(&u->drift);
        if (err == 0) err = dr_adwin_init(&u->drift, conf);
    }
    if (err) return err == DR_ENOMEM ? DR_ENOMEM : DR_ECORRUPT;
    r->pos += used;
    return 0;
}

/* Version 11's content statistics into ru when their length is the
 * configured learner.content.dim c (another: settings changed since, and
 * they start again). DR_ECORRUPT for a part no writer of ours makes. */
static int get_rating_content(dr_reader_t *r, dr_rating_user_t *ru, int c) {
    unsigned len = dr_get_u16(r);
    if (!r->ok || len > DR_RATING_CONTENT_MAX || (size_t)len * 8 > r->len - r->pos) return DR_ECORRUPT;
    float stats[2 * DR_RATING_CONTENT_MAX];
    for (unsigned k = 0; k < 2 * len; k++) stats[k] = dr_get_f32(r);
    if (!all_finite(stats, 2 * len)) return DR_ECORRUPT;
    for (unsigned k = len; k < 2 * len; k++)
        if (stats[k] < 0) return DR_ECORRUPT; /* sums of weights a_k >= 0 */
    if (len == 0 || (int)len != c) return 0;
    if (!(ru->content = malloc((size_t)len * 8))) return DR_ENOMEM;
    memcpy(ru->content, stats, (size_t)len * 8);
    ru->content_len = (uint16_t)len;
    return 0;
}

/* Version 10's rating part (see dr_user_encode), with version 11's content
 * statistics: DR_ECORRUPT for one no writer of ours makes. Older records,
 * and users without ratings: all zero. */
static int get_rating(dr_reader_t *r, uint8_t version, int content_dim, dr_rating_user_t *ru,
                      dr_recent_event_t *stored, unsigned recent_len) {
    uint8_t has = dr_get_u8(r);
    if (has > 1 || !r->ok) return DR_ECORRUPT;
    if (!has) return 0;
    ru->n = dr_get_u32(r);
    ru->session_n = dr_get_u32(r);
    ru->residual_sum = dr_get_f32(r);
    ru->error_sq = dr_get_f32(r);
    for (int k = 0; k < 3; k++) ru->ema[k] = dr_get_f32(r);
    ru->session_sum = dr_get_f32(r);
    for (int k = 0; k < DR_RATING_USER_INPUTS; k++) ru->w[k] = dr_get_f32(r);
    for (int k = 0; k < DR_RATING_USER_INPUTS * DR_RATING_USER_INPUTS; k++) ru->p[k] = dr_get_f32(r);
    for (unsigned i = 0; i < recent_len; i++) stored[i].residual = dr_get_f32(r);
    bool finite = isfinite(ru->residual_sum) && isfinite(ru->session_sum) && all_finite(ru->ema, 3) &&
                  all_finite(ru->w, DR_RATING_USER_INPUTS) &&
                  all_finite(ru->p, DR_RATING_USER_INPUTS * DR_RATING_USER_INPUTS);
    for (unsigned i = 0; i < recent_len; i++) finite &= isfinite(stored[i].residual);
    if (!r->ok || !finite || ru->n == 0 || ru->session_n > ru->n || !(ru->error_sq >= 0) ||
        ru->error_sq == INFINITY)
        return DR_ECORRUPT;
    return version >= 11 ? get_rating_content(r, ru, content_dim) : 0;
}

int dr_user_record_last_list(const void *rec, size_t len, int32_t *partition, int64_t *items, size_t *n) {
    dr_reader_t r = {rec, len, 0, true};
    *n = 0;
    uint8_t version = dr_get_u8(&r);
    (void)dr_get_u16(&r);                   /* dim */
    dr_get_skip(&r, 8 + 8);                  /* events applied, last event's time */
    int32_t part = (int32_t)dr_get_u32(&r);
    dr_get_skip(&r, 8 + 4);                  /* offset, b_u */
    unsigned recent_len = dr_get_u8(&r), recent_head = dr_get_u8(&r);
    if (!r.ok || version < 1 || version > USER_RECORD_VERSION || part < -1 || recent_len > DR_RECENT_MAX ||
        recent_head > recent_len)
        return DR_ECORRUPT;
    dr_get_skip(&r, (size_t)recent_len * 13); /* item, value, type: as dr_user_decode reads them */
    unsigned pending_len = dr_get_u8(&r);
    if (!r.ok || pending_len > DR_PENDING_IMP) return DR_ECORRUPT;
    dr_get_skip(&r, (size_t)pending_len * 16);
    unsigned list_len = dr_get_u8(&r);
    if (!r.ok || list_len > DR_LAST_LIST) return DR_ECORRUPT;
    for (unsigned i = 0; i < list_len; i++)
        if (!valid_item_id(items[i] = dr_get_i64(&r))) return DR_ECORRUPT;
    if (!r.ok) return DR_ECORRUPT;
    *partition = part;
    *n = list_len;
    return 0;
}

int dr_user_decode(int64_t user_id, const dr_learner_conf_t *conf, const void *rec, size_t len,
                   dr_user_t **out) {
    dr_reader_t r = {rec, len, 0, true};
    int dim = conf->dim;
    *out = NULL;
    if (conf->recent_items < 1 || conf->recent_items > DR_RECENT_MAX) return DR_EINVAL;
    uint8_t version = dr_get_u8(&r);
    if (version < 1 || version > USER_RECORD_VERSION || dr_get_u16(&r) != dim) return DR_ECORRUPT;
    dr_user_t *u = dr_user_new_conf(user_id, conf);
    if (!u) return DR_ENOMEM;
    int err = DR_ECORRUPT;
    u->events_applied = dr_get_u64(&r);
    u->last_event_ms = dr_get_i64(&r);
    u->last_source.partition = (int32_t)dr_get_u32(&r);
    u->last_source.offset = dr_get_i64(&r);
    u->bias = dr_get_f32(&r);
    /* -1: no event yet; else a Kafka partition and offset */
    if (u->last_source.partition < -1 || u->last_source.offset < -1) goto out_err;
    /* The ring as stored: at most DR_RECENT_MAX entries (the array every
     * writer had), head within the entries (see recent_fit). Larger than
     * the configured ring is not corrupt: recent_fit keeps the newest. */
    unsigned recent_len = dr_get_u8(&r), recent_head = dr_get_u8(&r);
    if (recent_len > DR_RECENT_MAX || recent_head > recent_len) goto out_err;
    dr_recent_event_t stored[DR_RECENT_MAX];
    memset(stored, 0, sizeof(stored)); /* padding too: records compare as bytes in tests */
    for (unsigned i = 0; i < recent_len; i++) {
        stored[i].item_id = dr_get_i64(&r);
        stored[i].value = dr_get_f32(&r);
        stored[i].type = dr_get_u8(&r);
        /* the type indexes the per-type label weights */
        if (stored[i].type >= DR_EV__COUNT || !isfinite(stored[i].value) || !valid_item_id(stored[i].item_id))
            goto out_err;
    }
    if (!r.ok) goto out_err;
    u->pending_len = dr_get_u8(&r);
    if (u->pending_len > DR_PENDING_IMP) goto out_err;
    for (unsigned i = 0; i < u->pending_len; i++) {
        u->pending[i].item_id = dr_get_i64(&r);
        u->pending[i].timestamp_ms = dr_get_i64(&r);
        /* a stale impression becomes a negative on its item: it needs a row */
        if (!valid_item_id(u->pending[i].item_id) || u->pending[i].timestamp_ms < 0 ||
            u->pending[i].timestamp_ms >= STORED_MAX_TIMESTAMP_MS)
            goto out_err;
    }
    u->last_list_len = dr_get_u8(&r);
    if (u->last_list_len > DR_LAST_LIST) goto out_err;
    for (unsigned i = 0; i < u->last_list_len; i++)
        if (!valid_item_id(u->last_list[i] = dr_get_i64(&r))) goto out_err;
    dr_get_bytes(&r, u->v, (size_t)dim * 4);
    if (!r.ok || !all_finite(u->v, dim) || !isfinite(u->bias)) goto out_err;
    if (version >= 2) {
        u->drift_cuts = dr_get_u32(&r);
        u->last_cut_event = dr_get_u64(&r);
        /* a cut is counted at an event the user had applied */
        if (!r.ok || u->last_cut_event > u->events_applied) goto out_err;
        if ((err = get_drift(u, &conf->drift, &r))) goto out_err;
        err = DR_ECORRUPT;
    }
    for (unsigned i = 0; version >= 3 && i < u->last_list_len; i++) u->last_list_score[i] = dr_get_f32(&r);
    if (!all_finite(u->last_list_score, u->last_list_len)) goto out_err;
    if (version >= 4) u->prior_version = dr_get_i64(&r); /* older: û never moved */
    if (version >= 5) { /* older: no regime yet, every recent event in it */
        u->drift_samples = dr_get_u64(&r);
        u->regime_from = dr_get_u64(&r);
        u->readapts = dr_get_u32(&r);
        u->readapt_event = dr_get_u64(&r);
        for (unsigned i = 0; i < recent_len; i++) stored[i].sample = dr_get_u32(&r);
        if (u->regime_from > u->drift_samples || u->readapt_event > u->events_applied) goto out_err;
    }
    /* older than 6: nothing hidden beyond the recent ring */
    if (version >= 6 && !get_ids(&r, u->hidden, &u->hidden_len, &u->hidden_head, DR_HIDDEN_MAX))
        goto out_err;
    if (version >= 7) { /* older: nothing rests yet */
        uint8_t has_rest = dr_get_u8(&r);
        if (has_rest > 1) goto out_err;
        if (has_rest) {
            u->rest.gen_start_ms = dr_get_i64(&r);
            dr_get_bytes(&r, u->rest.counts, sizeof(u->rest.counts));
            for (int g = 0; g < 2; g++)
                for (int i = 0; i < DR_REST_BITS / 64; i++) u->rest.resting[g][i] = dr_get_u64(&r);
            if (u->rest.gen_start_ms <= 0) goto out_err;
        }
        /* resting switched off since the record was written: nothing rests */
        if (conf->rest_impressions == 0) memset(&u->rest, 0, sizeof(u->rest));
    }
    dr_id_ring_t *ha = &u->hidden_authors, *ht = &u->hidden_topics;
    if (version >= 8 && (!get_ids(&r, ha->id, &ha->len, &ha->head, DR_HIDDEN_SOURCES) ||
                         !get_ids(&r, ht->id, &ht->len, &ht->head, DR_HIDDEN_SOURCES)))
        goto out_err;
    /* older: the re-adaptation's exploration counts from the regime's start */
    u->readapt_sample = version >= 9 ? dr_get_u64(&r) : u->regime_from;
    if (u->readapt_sample > u->drift_samples) goto out_err;
    if (version >= 10 && (err = get_rating(&r, version, conf->content_dim, &u->rating, stored, recent_len)))
        goto out_err;
    err = DR_ECORRUPT;
    dr_id_ring_t *pt = &u->passed_topics; /* older: none passed over yet */
    if (version >= 12 && !get_ids(&r, pt->id, &pt->len, &pt->head, DR_HIDDEN_SOURCES)) goto out_err;
    if (!r.ok || r.pos != len || u->prior_version < -1) goto out_err;
    recent_fit(u, stored, recent_len, recent_head, (unsigned)conf->recent_items);
    *out = u;
    return 0;
out_err:
    dr_user_free(u);
    return err;
}
