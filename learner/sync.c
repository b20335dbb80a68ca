/* sync.c - sharing the item parameters and the prior between instances:
 * the sparse changes this model made since its last export, and adding
 * another instance's (dr_learner.h, "sharing"). Only the learned part of an
 * item travels: q_i, or δ_i for an item with content (q_i = W·e_i + δ_i),
 * and b_i. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "internal.h"

#define SYNC_MAGIC "DRS1"

int dr_model_sync_enable(dr_model_t *m) {
    if (m->sync_on) return 0;
    m->sync_prior_base = malloc((size_t)m->dim * sizeof(float));
    m->sync_prior_pending = calloc((size_t)m->dim, sizeof(float));
    if (!m->sync_prior_base || !m->sync_prior_pending) {
        dr__sync_free(m);
        return DR_ENOMEM;
    }
    memcpy(m->sync_prior_base, m->prior, (size_t)m->dim * sizeof(float));
    m->sync_on = true;
    return 0;
}

void dr__sync_free(dr_model_t *m) {
    free(m->sync_pos);
    free(m->sync_base);
    free(m->sync_idx);
    free(m->sync_prior_base);
    free(m->sync_prior_pending);
    m->sync_pos = NULL;
    m->sync_base = m->sync_prior_base = m->sync_prior_pending = NULL;
    m->sync_idx = NULL;
    m->sync_pos_cap = m->n_sync = m->cap_sync = 0;
    m->sync_on = false;
}

/* The learned row of an item: δ_i for content items, else q_i. */
static float *learned_row(dr_model_t *m, size_t idx) {
    return (m->has_content[idx] ? m->delta : m->q) + idx * (size_t)m->dim;
}

int dr__sync_touch(dr_model_t *m, size_t idx) {
    if (!m->sync_on) return 0;
    if (idx >= m->sync_pos_cap) {
        size_t cap = m->sync_pos_cap ? m->sync_pos_cap : 1024;
        while (cap <= idx) cap *= 2;
        uint32_t *v = realloc(m->sync_pos, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        memset(v + m->sync_pos_cap, 0, (cap - m->sync_pos_cap) * sizeof(*v));
        m->sync_pos = v;
        m->sync_pos_cap = cap;
    }
    if (m->sync_pos[idx]) return 0;
    size_t row = (size_t)m->dim + 1;
    if (m->n_sync == m->cap_sync) {
        size_t cap = m->cap_sync ? m->cap_sync * 2 : 1024;
        float *b = realloc(m->sync_base, cap * row * sizeof(float));
        if (!b) return DR_ENOMEM;
        m->sync_base = b;
        int64_t *ix = realloc(m->sync_idx, cap * sizeof(*ix));
        if (!ix) return DR_ENOMEM;
        m->sync_idx = ix;
        m->cap_sync = cap;
    }
    float *base = m->sync_base + m->n_sync * row;
    memcpy(base, learned_row(m, idx), (size_t)m->dim * sizeof(float));
    base[m->dim] = m->bias[idx];
    m->sync_idx[m->n_sync] = (int64_t)idx;
    m->sync_pos[idx] = (uint32_t)++m->n_sync;
    return 0;
}

size_t dr_model_sync_pending(const dr_model_t *m) { return m->n_sync; }

int dr_model_sync_export(dr_model_t *m, size_t max_items, uint8_t **out, size_t *len,
                         size_t *n_items) {
    *out = NULL;
    *len = *n_items = 0;
    if (!m->sync_on) return DR_EINVAL;
    size_t n = m->n_sync < max_items ? m->n_sync : max_items;
    size_t row = (size_t)m->dim + 1;
    size_t cap = 4 + 4 + (size_t)m->dim * 4 + 4 + n * (8 + 1 + row * 4);
    dr_writer_t w = {malloc(cap), 0, cap, true};
    if (!w.p) return DR_ENOMEM;
    dr_put_bytes(&w, SYNC_MAGIC, 4);
    dr_put_u32(&w, (uint32_t)m->dim);
    for (int k = 0; k < m->dim; k++) {
        dr_put_f32(&w, m->prior[k] - m->sync_prior_base[k]);
        m->sync_prior_base[k] = m->prior[k];
    }
    size_t count_at = w.len;
    dr_put_u32(&w, 0);
    uint32_t written = 0;
    /* the newest entries first: the array shrinks from its end */
    for (size_t e = 0; e < n; e++) {
        size_t i = m->n_sync - 1 - e;
        size_t idx = (size_t)m->sync_idx[i];
        const float *base = m->sync_base + i * row;
        const float *now = learned_row(m, idx);
        float d[DR_MAX_DIM + 1];
        bool moved = false;
        for (int k = 0; k < m->dim; k++) moved |= (d[k] = now[k] - base[k]) != 0.0f;
        moved |= (d[m->dim] = m->bias[idx] - base[m->dim]) != 0.0f;
        m->sync_pos[idx] = 0;
        if (!moved) continue;
        dr_put_i64(&w, m->ids[idx]);
        dr_put_u8(&w, m->has_content[idx]);
        for (size_t k = 0; k < row; k++) dr_put_f32(&w, d[k]);
        written++;
    }
    m->n_sync -= n;
    memcpy(w.p + count_at, &written, 4);
    *out = w.p;
    *len = w.len;
    *n_items = n;
    return 0;
}

int dr_model_sync_import(dr_model_t *m, const void *buf, size_t len, size_t *applied,
                         size_t *skipped) {
    *applied = *skipped = 0;
    dr_reader_t r = {buf, len, 0, true};
    char magic[4];
    dr_get_bytes(&r, magic, 4);
    uint32_t dim = dr_get_u32(&r);
    if (!r.ok || memcmp(magic, SYNC_MAGIC, 4) != 0) return DR_ECORRUPT;
    if (dim != (uint32_t)m->dim) return DR_EINVAL;
    size_t row = (size_t)m->dim + 1;
    /* the whole buffer is checked before anything is applied */
    size_t head = 4 + 4 + (size_t)dim * 4;
    if (len < head + 4) return DR_ECORRUPT;
    uint32_t n;
    memcpy(&n, (const uint8_t *)buf + head, 4);
    if ((len - head - 4) / (8 + 1 + row * 4) < n || len != head + 4 + (size_t)n * (8 + 1 + row * 4))
        return DR_ECORRUPT;
    float dprior[DR_MAX_DIM];
    for (int k = 0; k < m->dim; k++) dprior[k] = dr_get_f32(&r);
    (void)dr_get_u32(&r);
    for (int k = 0; k < m->dim; k++)
        if (isfinite(dprior[k]) && m->sync_on) m->sync_prior_pending[k] += dprior[k];
    for (uint32_t e = 0; e < n; e++) {
        int64_t id = dr_get_i64(&r);
        uint8_t content = dr_get_u8(&r);
        float d[DR_MAX_DIM + 1];
        bool finite = true;
        for (size_t k = 0; k < row; k++) finite &= isfinite(d[k] = dr_get_f32(&r)) != 0;
        if (!finite || id < 0) { (*skipped)++; continue; }
        int64_t idx = dr_model_item_index(m, id, true);
        if (idx < 0) { (*skipped)++; continue; }
        /* an item with content here and not there (or the reverse) learned
         * another part: its change is not ours to add */
        if ((content != 0) != (m->has_content[idx] != 0)) { (*skipped)++; continue; }
        float *now = learned_row(m, (size_t)idx);
        for (int k = 0; k < m->dim; k++) now[k] += d[k];
        m->bias[idx] += d[m->dim];
        if (m->has_content[idx]) dr__content_refresh_item(m, (size_t)idx);
        /* a change of ours waiting for export must not carry theirs */
        if (m->sync_on && (size_t)idx < m->sync_pos_cap && m->sync_pos[idx]) {
            float *base = m->sync_base + (m->sync_pos[idx] - 1) * row;
            for (size_t k = 0; k < row; k++) base[k] += d[k];
        }
        dr__mark_item_dirty(m, (size_t)idx);
        (*applied)++;
    }
    return 0;
}
