/* records.c - the learner's binary records: users, items and the globals,
 * as RocksDB stores them. Fixed little-endian encodings, version byte
 * first; every older version is still read, and a record that does not
 * parse (truncated, out of bounds, NaN) is refused whole. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "internal.h"

#define USER_RECORD_VERSION 4 /* 2: + drift detector; 3: + last list scores; 4: + prior version; older still read */
#define ITEM_RECORD_VERSION 3 /* 2: + content embedding and δ_i; 3: + decayed positives and
                                 co-engagement; older still read */
#define GLOBALS_RECORD_VERSION 3 /* 2: + outer-loop accumulator and past priors; 3: + population prior */

static bool all_finite(const float *v, int n) {
    for (int k = 0; k < n; k++)
        if (!isfinite(v[k])) return false;
    return true;
}

size_t dr_model_dirty_items(const dr_model_t *m) { return m->n_dirty; }

/* The largest item record: fixed fields, q_i, content and δ_i, neighbours. */
size_t dr__item_record_cap(const dr_model_t *m) {
    return 64 + (size_t)m->dim * 8 + (size_t)m->content_dim * 4 + (size_t)m->conf.cooc_neighbors * 12;
}

/* Version 3's tail: n_i, then the neighbour count and (item id, n_ji) pairs
 * in slot order (ids, not indices: indices are this process's own). */
static void put_neighbors(const dr_model_t *m, size_t idx, dr_writer_t *w) {
    const dr__nbr_t *t = &m->nbr[idx];
    dr_put_f32(w, m->engaged[idx]);
    dr_put_u32(w, t->n);
    for (uint32_t s = 0; s < t->n_slots; s++) {
        if (t->slot[s].key < 0) continue;
        dr_put_i64(w, m->ids[t->slot[s].key]);
        dr_put_f32(w, t->slot[s].w);
    }
}

/* Reads version 3's tail into item idx's table. Neighbours not loaded yet
 * get their row now (their own record fills it later). DR_ECORRUPT on a bad
 * tail, DR_ENOMEM. */
static int get_neighbors(dr_model_t *m, size_t idx, dr_reader_t *r) {
    float engaged = dr_get_f32(r);
    uint32_t n = dr_get_u32(r);
    if (!r->ok || !(engaged >= 0 && isfinite(engaged)) || (size_t)n > (r->len - r->pos) / 12)
        return DR_ECORRUPT;
    dr__set_engaged(m, idx, engaged);
    dr__nbr_clear(&m->nbr[idx]);
    /* a record holds at most what its writer kept; a smaller cap now trims */
    uint32_t cap = m->conf.cooc_neighbors ? (uint32_t)m->conf.cooc_neighbors : 0;
    for (uint32_t k = 0; k < n; k++) {
        int64_t id = dr_get_i64(r);
        float w = dr_get_f32(r);
        if (!r->ok || !(w > 0 && isfinite(w))) return DR_ECORRUPT;
        int64_t j = dr_model_item_index(m, id, true);
        if (j < 0 || j > INT32_MAX) return j == DR_ENOMEM ? DR_ENOMEM : DR_ECORRUPT;
        int err = dr__nbr_add(&m->nbr[idx], (int32_t)j, w, cap, m->ids);
        if (err) return err;
    }
    return 0;
}

int dr_model_drain_dirty_items(dr_model_t *m, dr_item_sink_fn fn, void *ctx) {
    while (m->n_dirty > 0) {
        size_t idx = (size_t)m->dirty_list[m->n_dirty - 1];
        dr_writer_t w = {m->rec_buf, 0, dr__item_record_cap(m), true};
        dr_put_u8(&w, ITEM_RECORD_VERSION);
        dr_put_u16(&w, (uint16_t)m->dim);
        dr_put_f32(&w, m->bias[idx]);
        dr_put_u8(&w, m->excluded[idx]);
        dr_put_u64(&w, m->count[idx]);
        dr_put_bytes(&w, m->q + idx * (size_t)m->dim, (size_t)m->dim * 4);
        dr_put_f32(&w, m->pop_count[idx]);
        dr_put_u64(&w, m->pop_time[idx]);
        uint16_t c = m->has_content[idx] ? (uint16_t)m->content_dim : 0;
        dr_put_u16(&w, c);
        if (c) {
            dr_put_bytes(&w, m->emb + idx * (size_t)c, (size_t)c * 4);
            dr_put_bytes(&w, m->delta + idx * (size_t)m->dim, (size_t)m->dim * 4);
        }
        put_neighbors(m, idx, &w);
        int err = w.ok ? fn(ctx, m->ids[idx], m->rec_buf, w.len) : DR_ENOMEM;
        if (err) return err;
        m->dirty[idx] = 0;
        m->n_dirty--;
    }
    return 0;
}

int dr_model_load_item(dr_model_t *m, int64_t item_id, const void *rec, size_t len) {
    dr_reader_t r = {rec, len, 0, true};
    uint8_t version = dr_get_u8(&r);
    if (version < 1 || version > ITEM_RECORD_VERSION || dr_get_u16(&r) != m->dim) return DR_ECORRUPT;
    int64_t i = dr_model_item_index(m, item_id, true);
    if (i < 0) return (int)i;
    size_t idx = (size_t)i;
    m->bias[idx] = dr_get_f32(&r);
    m->excluded[idx] = dr_get_u8(&r);
    m->count[idx] = dr_get_u64(&r);
    float *q = m->q + idx * (size_t)m->dim;
    dr_get_bytes(&r, q, (size_t)m->dim * 4);
    if (version >= 3) { /* older: no positives counted yet */
        m->pop_count[idx] = dr_get_f32(&r);
        m->pop_time[idx] = dr_get_u64(&r);
    }
    uint16_t c = version >= 2 ? dr_get_u16(&r) : 0;
    if (c == 0 && m->has_content[idx]) { m->has_content[idx] = 0; m->n_content--; }
    bool ok = r.ok && all_finite(q, m->dim) && isfinite(m->bias[idx]) && isfinite(m->pop_count[idx]) &&
              m->pop_count[idx] >= 0;
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
    int err = ok ? 0 : DR_ECORRUPT;
    /* the neighbours may add rows: nothing above holds a pointer past here */
    if (!err && version >= 3) err = get_neighbors(m, idx, &r);
    else if (!err) { dr__set_engaged(m, idx, 0.0f); dr__nbr_clear(&m->nbr[idx]); }
    if (!err && r.pos != len) err = DR_ECORRUPT;
    if (err) {
        if (m->has_content[idx]) m->n_content--;
        dr__item_init(m, idx, item_id); /* never let a bad record put NaN in the model */
        return err;
    }
    return 0;
}

int dr_model_encode_globals(const dr_model_t *m, uint8_t **out, size_t *len) {
    size_t cap = 64 + 44 + (size_t)m->dim * 4 + DR_POP_RING * 8 + 4 + (size_t)m->dim * 8 +
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
    m->version = dr_get_i64(&r);
    dr_get_bytes(&r, m->prior, (size_t)m->dim * 4);
    uint32_t pop_len = dr_get_u32(&r), pop_head = dr_get_u32(&r);
    if (!r.ok || pop_len > DR_POP_RING || pop_head >= DR_POP_RING) return DR_ECORRUPT;
    m->pop_len = pop_len;
    m->pop_head = pop_head;
    dr_get_bytes(&r, m->pop, (size_t)pop_len * 8);
    bool sums_finite = true;
    if (version >= 2) {
        m->reptile_n = dr_get_u32(&r);
        for (int k = 0; k < m->dim; k++) sums_finite &= isfinite(m->reptile_sum[k] = dr_get_f64(&r));
        for (int h = 0; h < DR_PRIOR_HISTORY; h++) m->past_version[h] = dr_get_i64(&r);
        dr_get_bytes(&r, m->past_prior, (size_t)DR_PRIOR_HISTORY * (size_t)m->dim * 4);
        sums_finite &= all_finite(m->past_prior, DR_PRIOR_HISTORY * m->dim);
        if (version >= 3 && !pop_globals_read(m, &r)) sums_finite = false;
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
        return DR_ECORRUPT;
    }
    dr__pop_refresh_all(m);
    return 0;
}

int dr_user_encode(const dr_user_t *u, int dim, uint8_t **out, size_t *len) {
    size_t cap = 64 + (size_t)u->recent_len * 13 + (size_t)u->pending_len * 16 +
                 (size_t)u->last_list_len * 12 + (size_t)dim * 4 + 12 + 8 +
                 dr_adwin_serialized_size(&u->drift);
    uint8_t *buf = malloc(cap);
    if (!buf) return DR_ENOMEM;
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
    if (!w.ok || dr_adwin_serialize(&u->drift, w.p + w.len, w.cap - w.len, &written) != 0) {
        free(buf);
        return DR_ENOMEM; /* cap was computed above: cannot happen */
    }
    w.len += written;
    for (unsigned i = 0; i < u->last_list_len; i++) dr_put_f32(&w, u->last_list_score[i]);
    dr_put_i64(&w, u->prior_version);
    if (!w.ok) { free(buf); return DR_ENOMEM; }
    *out = buf;
    *len = w.len;
    return 0;
}

int dr_user_decode(int64_t user_id, const dr_learner_conf_t *conf, const void *rec, size_t len,
                   dr_user_t **out) {
    dr_reader_t r = {rec, len, 0, true};
    int dim = conf->dim;
    *out = NULL;
    uint8_t version = dr_get_u8(&r);
    if (version < 1 || version > USER_RECORD_VERSION || dr_get_u16(&r) != dim) return DR_ECORRUPT;
    dr_user_t *u = dr_user_new_conf(user_id, conf);
    if (!u) return DR_ENOMEM;
    u->events_applied = dr_get_u64(&r);
    u->last_event_ms = dr_get_i64(&r);
    u->last_source.partition = (int32_t)dr_get_u32(&r);
    u->last_source.offset = dr_get_i64(&r);
    u->bias = dr_get_f32(&r);
    u->recent_len = dr_get_u8(&r);
    u->recent_head = dr_get_u8(&r);
    if (u->recent_len > DR_RECENT_MAX || u->recent_head >= DR_RECENT_MAX) goto out_corrupt;
    for (unsigned i = 0; i < u->recent_len; i++) {
        u->recent[i].item_id = dr_get_i64(&r);
        u->recent[i].value = dr_get_f32(&r);
        u->recent[i].type = dr_get_u8(&r);
    }
    u->pending_len = dr_get_u8(&r);
    if (u->pending_len > DR_PENDING_IMP) goto out_corrupt;
    for (unsigned i = 0; i < u->pending_len; i++) {
        u->pending[i].item_id = dr_get_i64(&r);
        u->pending[i].timestamp_ms = dr_get_i64(&r);
    }
    u->last_list_len = dr_get_u8(&r);
    if (u->last_list_len > DR_LAST_LIST) goto out_corrupt;
    for (unsigned i = 0; i < u->last_list_len; i++) u->last_list[i] = dr_get_i64(&r);
    dr_get_bytes(&r, u->v, (size_t)dim * 4);
    if (!r.ok || !all_finite(u->v, dim) || !isfinite(u->bias)) goto out_corrupt;
    if (version >= 2) {
        u->drift_cuts = dr_get_u32(&r);
        u->last_cut_event = dr_get_u64(&r);
        size_t used = 0;
        dr_adwin_free_buckets(&u->drift);
        if (!r.ok || dr_adwin_deserialize(&u->drift, &conf->drift, r.p + r.pos, len - r.pos, &used) != 0)
            goto out_corrupt;
        r.pos += used;
    }
    for (unsigned i = 0; version >= 3 && i < u->last_list_len; i++) u->last_list_score[i] = dr_get_f32(&r);
    if (version >= 4) u->prior_version = dr_get_i64(&r); /* older: û never moved */
    if (!r.ok || r.pos != len || u->prior_version < -1) goto out_corrupt;
    *out = u;
    return 0;
out_corrupt:
    dr_user_free(u);
    return DR_ECORRUPT;
}
