/* sync.c - sharing the item parameters and the prior between instances:
 * the sparse changes this model made since its last export, and adding
 * another instance's (dr_learner.h, "sharing"). Only the learned part of an
 * item travels: q_i, or δ_i for an item with content (q_i = W·e_i + δ_i),
 * b_i, and (rating mode) the rating blend's sums over the item's ratings;
 * and the change of the content projection W, which every instance learns
 * from its own users like û.
 *
 * An export is "DRS3"; one of "DRS2" (before W travelled) or "DRS1" (before
 * the rating sums did), from an instance of an older build during a rolling
 * upgrade, is still imported, without what it lacks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "learner_internal.h"

#define SYNC_MAGIC "DRS3"
#define SYNC_MAGIC_V2 "DRS2" /* no W block */
#define SYNC_MAGIC_V1 "DRS1" /* no W block, rows without the rating sums */
#define RATED_BYTES 12       /* a DRS2 or DRS3 row's rating sums: residuals, squared errors, count */
#define SYNC_NBR_CAP 65536     /* pending pairs per item: far above what one interval adds */
#define SYNC_MAX_BYTES 900000  /* per exported message: under Kafka's default message.max.bytes (1,000,000) */
#define SYNC_W_BYTES 225000    /* of which ΔW at most: rows of W beyond it go in the next messages */

/* The export's version from its magic: 3, 2, 1, or 0 for none of ours. */
static int sync_version(const void *buf, size_t len) {
    if (len < 4) return 0;
    if (memcmp(buf, SYNC_MAGIC, 4) == 0) return 3;
    if (memcmp(buf, SYNC_MAGIC_V2, 4) == 0) return 2;
    return memcmp(buf, SYNC_MAGIC_V1, 4) == 0 ? 1 : 0;
}

int dr_model_sync_enable(dr_model_t *m) {
    if (m->sync_on) return 0;
    m->sync_prior_base = malloc((size_t)m->dim * sizeof(float));
    m->sync_prior_pending = calloc((size_t)m->dim, sizeof(float));
    if (!m->sync_prior_base || !m->sync_prior_pending) {
        dr__sync_free(m);
        return DR_ENOMEM;
    }
    memcpy(m->sync_prior_base, m->prior, (size_t)m->dim * sizeof(float));
    if (m->W) {
        size_t w_len = (size_t)m->dim * (size_t)m->content_dim;
        if (!(m->sync_W_base = malloc(w_len * sizeof(float)))) {
            dr__sync_free(m);
            return DR_ENOMEM;
        }
        memcpy(m->sync_W_base, m->W, w_len * sizeof(float));
    }
    m->sync_on = true;
    return 0;
}

void dr__sync_free(dr_model_t *m) {
    for (size_t i = 0; m->sync_nbr && i < m->sync_nbr_cap; i++) dr__nbr_clear(&m->sync_nbr[i]);
    free(m->sync_nbr);
    free(m->sync_engaged);
    free(m->sync_nbr_list);
    m->sync_nbr = NULL;
    m->sync_engaged = NULL;
    m->sync_nbr_list = NULL;
    m->sync_nbr_cap = m->n_sync_nbr = m->cap_sync_nbr = 0;
    free(m->sync_pos);
    free(m->sync_base);
    free(m->sync_rated_base);
    m->sync_rated_base = NULL;
    free(m->sync_idx);
    free(m->sync_prior_base);
    free(m->sync_prior_pending);
    free(m->sync_W_base);
    m->sync_W_base = NULL;
    m->sync_W_row = 0;
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

/* A per-item array's capacity that holds index idx: doubled from cap (1024
 * to start) until it does. */
static size_t cap_for(size_t cap, size_t idx) {
    cap = cap ? cap : 1024;
    while (cap <= idx) cap *= 2;
    return cap;
}

/* Grows *p from `from` to `to` elements of `elem` bytes, the new ones zero. */
static int grow_zeroed(void **p, size_t elem, size_t from, size_t to) {
    uint8_t *np = realloc(*p, to * elem);
    if (!np) return DR_ENOMEM;
    memset(np + from * elem, 0, (to - from) * elem);
    *p = np;
    return 0;
}

int dr__sync_touch(dr_model_t *m, size_t idx) {
    if (!m->sync_on) return 0;
    if (idx >= m->sync_pos_cap) {
        size_t cap = cap_for(m->sync_pos_cap, idx);
        if (grow_zeroed((void **)&m->sync_pos, sizeof(*m->sync_pos), m->sync_pos_cap, cap)) return DR_ENOMEM;
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
        dr__item_ratings_t *rb = realloc(m->sync_rated_base, cap * sizeof(*rb));
        if (!rb) return DR_ENOMEM;
        m->sync_rated_base = rb;
        m->cap_sync = cap;
    }
    float *base = m->sync_base + m->n_sync * row;
    memcpy(base, learned_row(m, idx), (size_t)m->dim * sizeof(float));
    base[m->dim] = m->bias[idx];
    m->sync_rated_base[m->n_sync] = m->rated[idx];
    m->sync_idx[m->n_sync] = (int64_t)idx;
    m->sync_pos[idx] = (uint32_t)++m->n_sync;
    return 0;
}

/* Room for item idx in the pending co-engagement arrays, and idx listed. */
static int nbr_slot(dr_model_t *m, size_t idx) {
    if (idx >= m->sync_nbr_cap) {
        size_t cap = cap_for(m->sync_nbr_cap, idx);
        if (grow_zeroed((void **)&m->sync_nbr, sizeof(*m->sync_nbr), m->sync_nbr_cap, cap) ||
            grow_zeroed((void **)&m->sync_engaged, sizeof(*m->sync_engaged), m->sync_nbr_cap, cap))
            return DR_ENOMEM;
        m->sync_nbr_cap = cap;
    }
    if (m->sync_nbr[idx].n > 0 || m->sync_engaged[idx] != 0.0f) return 0;
    if (m->n_sync_nbr == m->cap_sync_nbr) {
        size_t cap = m->cap_sync_nbr ? m->cap_sync_nbr * 2 : 1024;
        int64_t *v = realloc(m->sync_nbr_list, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        m->sync_nbr_list = v;
        m->cap_sync_nbr = cap;
    }
    m->sync_nbr_list[m->n_sync_nbr++] = (int64_t)idx;
    return 0;
}

void dr__sync_coengage(dr_model_t *m, int32_t i, const int32_t *recent, const float *pair, int n) {
    if (!m->sync_on) return;
    /* out of memory: these counts stay local (the learning is not affected) */
    if (nbr_slot(m, (size_t)i)) return;
    for (int k = 0; k < n; k++) {
        if (nbr_slot(m, (size_t)recent[k])) return;
        if (dr__nbr_add(&m->sync_nbr[recent[k]], i, pair[k], SYNC_NBR_CAP, m->ids) ||
            dr__nbr_add(&m->sync_nbr[i], recent[k], pair[k], SYNC_NBR_CAP, m->ids))
            return;
    }
    m->sync_engaged[i] += 1.0f;
}

void dr__sync_forget(dr_model_t *m, size_t idx) {
    if (!m->sync_on) return;
    if (idx < m->sync_pos_cap && m->sync_pos[idx]) {
        m->sync_idx[m->sync_pos[idx] - 1] = -1; /* skipped by the export */
        m->sync_pos[idx] = 0;
    }
    if (idx < m->sync_nbr_cap && (m->sync_nbr[idx].n > 0 || m->sync_engaged[idx] != 0.0f)) {
        for (size_t e = 0; e < m->n_sync_nbr; e++)
            if (m->sync_nbr_list[e] == (int64_t)idx) m->sync_nbr_list[e] = -1;
        dr__nbr_clear(&m->sync_nbr[idx]);
        m->sync_engaged[idx] = 0.0f;
    }
}

int dr__sync_drop_freed(dr_model_t *m, size_t row) {
    if (!m->sync_on || row >= m->sync_nbr_cap) return 0;
    int dropped = dr__nbr_drop_freed(&m->sync_nbr[row], m->ids);
    return dropped < 0 ? dropped : 0;
}

size_t dr_model_sync_pending(const dr_model_t *m) { return m->n_sync + m->n_sync_nbr; }

/* Rows of W (c floats each) whose change one export carries: all of them
 * unless c is large (a row of W is c floats); at least one. */
static int w_rows_per_export(const dr_model_t *m) {
    if (!m->W) return 0;
    size_t rows = SYNC_W_BYTES / ((size_t)m->content_dim * 4);
    return rows == 0 ? 1 : rows < (size_t)m->dim ? (int)rows : m->dim;
}

/* Writes the change of w_rows rows of W since their last export, from
 * m->sync_W_row on (wrapping), as u32 c, u32 first row, u32 rows, then
 * the rows; c 0 without content. When consume, they count as exported. */
static void encode_w_change(dr_model_t *m, int w_rows, bool consume, dr_writer_t *w) {
    size_t c = m->W ? (size_t)m->content_dim : 0;
    int first = w_rows < m->dim ? m->sync_W_row : 0;
    dr_put_u32(w, (uint32_t)c);
    dr_put_u32(w, (uint32_t)first);
    dr_put_u32(w, c ? (uint32_t)w_rows : 0);
    for (int e = 0; c && e < w_rows; e++) {
        size_t at = (size_t)((first + e) % m->dim) * c;
        for (size_t j = 0; j < c; j++) {
            dr_put_f32(w, m->W[at + j] - m->sync_W_base[at + j]);
            if (consume) m->sync_W_base[at + j] = m->W[at + j];
        }
    }
    if (consume && c) m->sync_W_row = (first + w_rows) % m->dim;
}

/* Encodes up to max_items of the pending changes (the newest first) and
 * w_rows rows of W's change and, when consume, forgets them; else leaves
 * everything as it was (the copy a commit stores). */
static int encode_pending(dr_model_t *m, size_t max_items, size_t max_pairs, int w_rows, bool consume,
                          uint8_t **out, size_t *len, size_t *n_items) {
    *out = NULL;
    *len = *n_items = 0;
    if (!m->sync_on) return DR_EINVAL;
    size_t n = m->n_sync < max_items ? m->n_sync : max_items;
    size_t row = (size_t)m->dim + 1;
    /* the co-engagement counts of the newest items with pending counts, up
     * to max_pairs pairs (an item's pairs go whole) */
    size_t n_nbr = 0, pairs = 0;
    while (n_nbr < m->n_sync_nbr && n_nbr < max_items) {
        int64_t idx = m->sync_nbr_list[m->n_sync_nbr - 1 - n_nbr];
        uint32_t n_pairs = idx >= 0 ? m->sync_nbr[idx].n : 0; /* -1: a removed item */
        if (n_nbr > 0 && pairs + n_pairs > max_pairs) break;
        pairs += n_pairs;
        n_nbr++;
    }
    size_t cap = 4 + 4 + (size_t)m->dim * 4 + 12 + (size_t)w_rows * (size_t)m->content_dim * 4 + 4 +
                 n * (8 + 1 + row * 4 + RATED_BYTES) + 4 +
                 n_nbr * (8 + 4 + 4) + pairs * (8 + 4);
    dr_writer_t w = {malloc(cap), 0, cap, true};
    if (!w.p) return DR_ENOMEM;
    dr_put_bytes(&w, SYNC_MAGIC, 4);
    dr_put_u32(&w, (uint32_t)m->dim);
    for (int k = 0; k < m->dim; k++) {
        dr_put_f32(&w, m->prior[k] - m->sync_prior_base[k]);
        if (consume) m->sync_prior_base[k] = m->prior[k];
    }
    encode_w_change(m, w_rows, consume, &w);
    size_t count_at = w.len;
    dr_put_u32(&w, 0);
    uint32_t written = 0;
    /* the newest entries first: the array shrinks from its end */
    for (size_t e = 0; e < n; e++) {
        size_t i = m->n_sync - 1 - e;
        if (m->sync_idx[i] < 0) continue; /* the item was removed */
        size_t idx = (size_t)m->sync_idx[i];
        const float *base = m->sync_base + i * row;
        const float *now = learned_row(m, idx);
        float d[DR_MAX_DIM + 1];
        bool moved = false;
        for (int k = 0; k < m->dim; k++) moved |= (d[k] = now[k] - base[k]) != 0.0f;
        moved |= (d[m->dim] = m->bias[idx] - base[m->dim]) != 0.0f;
        const dr__item_ratings_t *rated = &m->rated[idx], *rated_base = &m->sync_rated_base[i];
        moved |= rated->n != rated_base->n;
        if (consume) m->sync_pos[idx] = 0;
        if (!moved) continue;
        dr_put_i64(&w, m->ids[idx]);
        dr_put_u8(&w, m->has_content[idx]);
        for (size_t k = 0; k < row; k++) dr_put_f32(&w, d[k]);
        dr_put_f32(&w, rated->residual_sum - rated_base->residual_sum);
        dr_put_f32(&w, rated->error_sq - rated_base->error_sq);
        dr_put_u32(&w, rated->n - rated_base->n);
        written++;
    }
    if (consume) m->n_sync -= n;
    memcpy(w.p + count_at, &written, 4);
    size_t nbr_count_at = w.len;
    uint32_t nbr_written = 0;
    dr_put_u32(&w, 0);
    for (size_t e = 0; e < n_nbr; e++) {
        int64_t entry = m->sync_nbr_list[m->n_sync_nbr - 1 - e];
        if (entry < 0) continue; /* the item was removed */
        size_t idx = (size_t)entry;
        dr__nbr_t *t = &m->sync_nbr[idx];
        dr_put_i64(&w, m->ids[idx]);
        dr_put_f32(&w, m->sync_engaged[idx]);
        size_t pairs_at = w.len;
        uint32_t pairs_written = 0;
        dr_put_u32(&w, 0);
        for (uint32_t k = 0; k < t->n; k++)
            if (m->ids[t->e[k].key] >= 0) { /* not a removed one */
                dr_put_i64(&w, m->ids[t->e[k].key]);
                dr_put_f32(&w, t->e[k].w);
                pairs_written++;
            }
        memcpy(w.p + pairs_at, &pairs_written, 4);
        nbr_written++;
        if (consume) {
            dr__nbr_clear(t);
            m->sync_engaged[idx] = 0.0f;
        }
    }
    memcpy(w.p + nbr_count_at, &nbr_written, 4);
    if (consume) m->n_sync_nbr -= n_nbr;
    if (!w.ok) { /* cannot happen: cap counts every byte */
        free(w.p);
        return DR_ENOMEM;
    }
    *out = w.p;
    *len = w.len;
    *n_items = n + n_nbr;
    return 0;
}

int dr_model_sync_export(dr_model_t *m, size_t max_items, uint8_t **out, size_t *len,
                         size_t *n_items) {
    /* half the message for the rows, half for the co-engagement pairs: a
     * message above the broker's message.max.bytes would be refused, and
     * its changes lost to the other instances */
    size_t row_bytes = 8 + 1 + ((size_t)m->dim + 1) * 4 + RATED_BYTES;
    int w_rows = w_rows_per_export(m);
    size_t w_bytes = 12 + (size_t)w_rows * (size_t)m->content_dim * 4;
    size_t half = (SYNC_MAX_BYTES - 16 - (size_t)m->dim * 4 - w_bytes) / 2;
    size_t rows = half / row_bytes;
    if (max_items > rows) max_items = rows > 0 ? rows : 1;
    size_t max_pairs = (half - max_items * 16) / 12; /* each item's head: 16 bytes */
    return encode_pending(m, max_items, max_pairs, w_rows, true, out, len, n_items);
}

static size_t len_left(const dr_reader_t *r) { return r->ok && r->pos <= r->len ? r->len - r->pos : 0; }

/* Moves r on by n bytes; false (and r stopped) when fewer are left. */
static bool skip(dr_reader_t *r, size_t n) {
    if (!r->ok || n > r->len - r->pos) return r->ok = false;
    r->pos += n;
    return true;
}

/* The W block of a DRS3 export at r: u32 c, u32 first row, u32 rows;
 * false when malformed (a first row or a count beyond the dimension, or
 * rows without c). *c, *first and *rows are set; r is left at the rows. */
static bool w_block(dr_reader_t *r, int dim, uint32_t *c, uint32_t *first, uint32_t *rows) {
    *c = dr_get_u32(r);
    *first = dr_get_u32(r);
    *rows = dr_get_u32(r);
    return r->ok && *c <= DR_MAX_CONTENT_DIM && *first < (uint32_t)dim && *rows <= (uint32_t)dim &&
           (*c > 0 || *rows == 0) && (len_left(r) / 4) / (*c ? *c : 1) >= *rows;
}

/* The length of the export at the start of buf (0: malformed). */
static size_t export_length(const void *buf, size_t len, int dim) {
    int version = sync_version(buf, len); /* 0: no magic of ours (or under 4 bytes) */
    if (version == 0) return 0;
    size_t row_bytes = 8 + 1 + ((size_t)dim + 1) * 4 + (version >= 2 ? RATED_BYTES : 0);
    dr_reader_t r = {buf, len, 4, true};
    uint32_t d = dr_get_u32(&r);
    if (!r.ok || d != (uint32_t)dim) return 0;
    /* every skip is checked against what is left: a reader moved past the
     * end would read beyond it (dr_get_bytes takes len - pos) */
    if (!skip(&r, (size_t)dim * 4)) return 0;
    uint32_t c, first, rows;
    if (version >= 3 && (!w_block(&r, dim, &c, &first, &rows) || !skip(&r, (size_t)rows * c * 4))) return 0;
    uint32_t n = dr_get_u32(&r);
    if (!r.ok || (len - r.pos) / row_bytes < n) return 0;
    r.pos += (size_t)n * row_bytes;
    uint32_t n_nbr = dr_get_u32(&r);
    for (uint32_t e = 0; e < n_nbr && r.ok; e++) {
        if (!skip(&r, 8 + 4)) return 0;
        uint32_t pairs = dr_get_u32(&r);
        if (!r.ok || (len - r.pos) / 12 < pairs) return 0;
        r.pos += (size_t)pairs * 12;
    }
    return r.ok && r.pos <= len ? r.pos : 0;
}

int dr_model_sync_save_pending(dr_model_t *m, uint8_t **out, size_t *len) {
    size_t n_items;
    uint8_t *buf;
    size_t n;
    int err = encode_pending(m, SIZE_MAX, SIZE_MAX, m->W ? m->dim : 0, false, &buf, &n, &n_items);
    if (err) return err;
    /* then the others' Δû waiting for the next outer step */
    uint8_t *all = realloc(buf, n + (size_t)m->dim * 4);
    if (!all) {
        free(buf);
        return DR_ENOMEM;
    }
    dr_writer_t w = {all, n, n + (size_t)m->dim * 4, true};
    for (int k = 0; k < m->dim; k++) dr_put_f32(&w, m->sync_prior_pending[k]);
    *out = all;
    *len = w.len;
    return 0;
}

int dr_model_sync_load_pending(dr_model_t *m, const void *buf, size_t len) {
    if (!m->sync_on) return DR_EINVAL;
    size_t n_export = export_length(buf, len, m->dim);
    if (n_export == 0 || len != n_export + (size_t)m->dim * 4) return DR_ECORRUPT;
    size_t row = (size_t)m->dim + 1;
    int version = sync_version(buf, len);
    bool rated = version >= 2; /* DRS1: no rating sums */
    dr_reader_t r = {buf, len, 8, true};
    for (int k = 0; k < m->dim; k++) m->sync_prior_base[k] = m->prior[k] - dr_get_f32(&r);
    if (version >= 3) {
        uint32_t c, first, rows;
        (void)w_block(&r, m->dim, &c, &first, &rows); /* export_length checked it */
        bool ours = m->W && c == (uint32_t)m->content_dim; /* else learner.content.dim changed: W started again */
        for (uint32_t e = 0; e < rows; e++) {
            size_t at = ((first + e) % (uint32_t)m->dim) * (size_t)c;
            for (size_t j = 0; j < c; j++) {
                float d = dr_get_f32(&r);
                if (ours) m->sync_W_base[at + j] = m->W[at + j] - d;
            }
        }
    }
    uint32_t n = dr_get_u32(&r);
    for (uint32_t e = 0; e < n; e++) {
        int64_t id = dr_get_i64(&r);
        (void)dr_get_u8(&r);
        int64_t idx = id >= 0 ? dr_model_item_index(m, id, true) : -1;
        if (idx < 0) { r.pos += row * 4 + (rated ? RATED_BYTES : 0); continue; }
        int err = dr__sync_touch(m, (size_t)idx);
        if (err) return err;
        /* the base the change was counted from: now minus the change */
        float *base = m->sync_base + (m->sync_pos[idx] - 1) * row;
        for (size_t k = 0; k < row; k++) base[k] -= dr_get_f32(&r);
        if (rated) {
            dr__item_ratings_t *rb = &m->sync_rated_base[m->sync_pos[idx] - 1];
            rb->residual_sum -= dr_get_f32(&r);
            rb->error_sq -= dr_get_f32(&r);
            rb->n -= dr_get_u32(&r);
        }
    }
    uint32_t n_nbr = dr_get_u32(&r);
    for (uint32_t e = 0; e < n_nbr; e++) {
        int64_t id = dr_get_i64(&r);
        float engaged = dr_get_f32(&r);
        uint32_t pairs = dr_get_u32(&r);
        int64_t idx = id >= 0 ? dr_model_item_index(m, id, true) : -1;
        if (idx < 0 || idx > INT32_MAX || nbr_slot(m, (size_t)idx)) {
            r.pos += (size_t)pairs * 12;
            continue;
        }
        m->sync_engaged[idx] += engaged;
        for (uint32_t k = 0; k < pairs; k++) {
            int64_t nb_id = dr_get_i64(&r);
            float w = dr_get_f32(&r);
            int64_t nb = nb_id >= 0 ? dr_model_item_index(m, nb_id, true) : -1;
            if (nb < 0 || nb > INT32_MAX) continue;
            (void)dr__nbr_add(&m->sync_nbr[idx], (int32_t)nb, w, SYNC_NBR_CAP, m->ids);
        }
    }
    for (int k = 0; k < m->dim; k++) m->sync_prior_pending[k] = dr_get_f32(&r);
    return r.ok ? 0 : DR_ECORRUPT;
}

/* Adds another instance's change of W (a DRS3 export's W block at r, which
 * export_length checked) to W, and to what this one's next export counts
 * from, so that it is not sent back. Content rows follow W in turns, as
 * after a local step (model.c). A block of another content dimension (the
 * other instance runs another learner.content.dim) is not ours to add, nor
 * one with a value that is not finite. */
static void import_w_change(dr_model_t *m, dr_reader_t *r) {
    uint32_t c, first, rows;
    (void)w_block(r, m->dim, &c, &first, &rows);
    size_t at = r->pos, n = (size_t)rows * c;
    r->pos += n * 4;
    if (!m->W || c != (uint32_t)m->content_dim || n == 0) return;
    dr_reader_t check = {r->p, r->len, at, true};
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dr_get_f32(&check))) return;
    dr_reader_t in = {r->p, r->len, at, true};
    for (uint32_t e = 0; e < rows; e++) {
        size_t row_at = ((first + e) % (uint32_t)m->dim) * (size_t)c;
        for (size_t j = 0; j < c; j++) {
            float d = dr_get_f32(&in);
            m->W[row_at + j] += d;
            if (m->sync_on) m->sync_W_base[row_at + j] += d;
        }
    }
}

int dr_model_sync_import(dr_model_t *m, const void *buf, size_t len, size_t *applied,
                         size_t *skipped) {
    *applied = *skipped = 0;
    int version = sync_version(buf, len);
    bool rated = version >= 2; /* DRS1: no rating sums */
    if (version == 0 || len < 8) return DR_ECORRUPT;
    dr_reader_t r = {buf, len, 4, true};
    uint32_t dim = dr_get_u32(&r);
    if (dim != (uint32_t)m->dim) return DR_EINVAL;
    size_t row = (size_t)m->dim + 1;
    /* the whole buffer is walked before anything is applied */
    if (export_length(buf, len, m->dim) != len) return DR_ECORRUPT;
    float dprior[DR_MAX_DIM];
    for (int k = 0; k < m->dim; k++) dprior[k] = dr_get_f32(&r);
    if (version >= 3) import_w_change(m, &r);
    uint32_t n = dr_get_u32(&r);
    for (int k = 0; k < m->dim; k++)
        if (isfinite(dprior[k]) && m->sync_on) m->sync_prior_pending[k] += dprior[k];
    for (uint32_t e = 0; e < n; e++) {
        int64_t id = dr_get_i64(&r);
        uint8_t content = dr_get_u8(&r);
        float d[DR_MAX_DIM + 1];
        bool finite = true;
        for (size_t k = 0; k < row; k++) finite &= isfinite(d[k] = dr_get_f32(&r)) != 0;
        dr__item_ratings_t their_rated = {0.0f, 0.0f, 0};
        if (rated) {
            their_rated.residual_sum = dr_get_f32(&r);
            their_rated.error_sq = dr_get_f32(&r);
            their_rated.n = dr_get_u32(&r);
            finite &= isfinite(their_rated.residual_sum) && isfinite(their_rated.error_sq);
        }
        if (!finite || id < 0) { (*skipped)++; continue; }
        int64_t idx = dr_model_item_index(m, id, true);
        if (idx < 0) { (*skipped)++; continue; }
        /* the rating sums add whatever part of the item each side learns */
        if (their_rated.n != 0 || their_rated.residual_sum != 0.0f || their_rated.error_sq != 0.0f) {
            dr__item_ratings_t *now = &m->rated[idx];
            now->residual_sum += their_rated.residual_sum;
            now->error_sq = fmaxf(now->error_sq + their_rated.error_sq, 0.0f);
            now->n = now->n > UINT32_MAX - their_rated.n ? UINT32_MAX : now->n + their_rated.n;
            if (m->sync_on && (size_t)idx < m->sync_pos_cap && m->sync_pos[idx]) {
                dr__item_ratings_t *rb = &m->sync_rated_base[m->sync_pos[idx] - 1];
                rb->residual_sum += their_rated.residual_sum;
                rb->error_sq += their_rated.error_sq;
                rb->n += their_rated.n;
            }
            dr__mark_item_dirty(m, (size_t)idx);
        }
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
    uint32_t cap = (uint32_t)m->conf.cooc_neighbors;
    uint32_t n_nbr = dr_get_u32(&r);
    /* every engagement counted there moves the clock here, item or not,
     * before its counts are added: they arrive as the newest */
    double ticks = 0;
    size_t nbr_at = r.pos;
    for (uint32_t e = 0; e < n_nbr && cap > 0; e++) {
        (void)dr_get_i64(&r);
        float engaged = dr_get_f32(&r);
        uint32_t pairs = dr_get_u32(&r);
        if (isfinite(engaged) && engaged > 0 && engaged < 1e9f) ticks += engaged;
        r.pos += (size_t)pairs * 12;
    }
    dr__cooc_tick(m, ticks);
    r.pos = nbr_at;
    for (uint32_t e = 0; e < n_nbr; e++) {
        int64_t id = dr_get_i64(&r);
        float engaged = dr_get_f32(&r);
        uint32_t pairs = dr_get_u32(&r);
        int64_t idx = cap > 0 && id >= 0 ? dr_model_item_index(m, id, true) : -1;
        if (idx < 0 || idx > INT32_MAX) {
            r.pos += (size_t)pairs * 12;
            (*skipped)++;
            continue;
        }
        if (isfinite(engaged) && engaged > 0 && engaged < 1e9f) dr__cooc_engaged_synced(m, (size_t)idx, engaged);
        for (uint32_t k = 0; k < pairs; k++) {
            int64_t nb_id = dr_get_i64(&r);
            float w = dr_get_f32(&r);
            int64_t nb = nb_id >= 0 ? dr_model_item_index(m, nb_id, true) : -1;
            if (nb < 0 || nb > INT32_MAX || !isfinite(w) || w <= 0 || w >= 1e9f) continue;
            (void)dr__cooc_add_synced(m, (size_t)idx, (int32_t)nb, w); /* out of memory: not counted */
        }
        dr__mark_item_dirty(m, (size_t)idx);
        (*applied)++;
    }
    return 0;
}
