/* content_prior.c - what posts of similar content earned, so that a new
 * post with a content embedding and no author record to start from gets a
 * population prior p_i from its content instead of 0 (docs/CATALOG.md,
 * "A new post's prior from its content").
 *
 * A ridge regression, over the live posts with content, of a post's
 * decayed positives c_i on its embedding e_i (dr__content_prior_t): each
 * post weighs as the author table counts it, decayed on the positive clock
 * from when it joined, so the prediction is "what a post like this one
 * holds now". A positive adds c floats; a post joining or leaving c²; the
 * c × c system is solved (Cholesky) only when a new post asks and
 * something changed since. Not stored: a restart rebuilds it from the
 * stored items, as the author table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"
#include "learner_internal.h"

/* λ of the ridge: as if every direction had this many more posts that
 * earned nothing (the author table's shrinkage, which it equals for
 * one-hot embeddings). */
#define CONTENT_SHRINK_POSTS 2.0
/* Below this the raw sums are folded into the scale's 1 (doubles). */
#define SCALE_FLOOR 1e-150

bool dr__content_prior_on(const dr_model_t *m) {
    return m->conf.pop_content && m->content_dim > 0 && dr__pop_on(m);
}

/* NULL sums until the first post: a model without content pays nothing. */
static bool ensure(dr_model_t *m) {
    dr__content_prior_t *t = &m->content_prior;
    if (t->a_raw) return true;
    size_t c = (size_t)m->content_dim;
    t->a_raw = calloc(c * c, sizeof(double));
    t->b_raw = calloc(c, sizeof(double));
    t->w = calloc(c, sizeof(double));
    t->work = calloc(c * c + c, sizeof(double));
    if (!t->a_raw || !t->b_raw || !t->w || !t->work) {
        dr__content_prior_free(t);
        return false;
    }
    t->scale = 1.0;
    t->time = m->pos_clock;
    t->stale = true;
    return true;
}

/* Brings both sums to positive-clock time `to` (never back). */
static void decay_to(const dr_model_t *m, dr__content_prior_t *t, uint64_t to) {
    if (to <= t->time) return;
    t->scale *= dr__pop_decay(m, t->time, to);
    t->time = to;
    if (t->scale >= SCALE_FLOOR) return;
    size_t c = (size_t)m->content_dim;
    for (size_t k = 0; k < c * c; k++) t->a_raw[k] *= t->scale;
    for (size_t k = 0; k < c; k++) t->b_raw[k] *= t->scale;
    t->scale = 1.0;
}

/* Adds sign × item idx's share: its post weight (decayed from when it
 * joined) to A and its positives (decayed from its last) to b. */
static void add_item(dr_model_t *m, size_t idx, double sign) {
    dr__content_prior_t *t = &m->content_prior;
    decay_to(m, t, m->pos_clock);
    size_t c = (size_t)m->content_dim;
    const float *e = m->emb + idx * c;
    double post = sign * dr__pop_decay(m, m->content_joined[idx], t->time) / t->scale;
    double pos = sign * m->pop_count[idx] * dr__pop_decay(m, m->pop_time[idx], t->time) / t->scale;
    for (size_t j = 0; j < c; j++) {
        double pj = post * e[j];
        double *row = t->a_raw + j * c;
        for (size_t k = 0; k < c; k++) row[k] += pj * e[k];
        t->b_raw[j] += pos * e[j];
    }
    t->stale = true;
}

void dr__content_prior_join(dr_model_t *m, size_t idx) {
    if (!dr__content_prior_on(m) || !m->has_content[idx] || !ensure(m)) return;
    add_item(m, idx, 1.0);
    m->content_prior.posts++;
}

void dr__content_prior_leave(dr_model_t *m, size_t idx) {
    dr__content_prior_t *t = &m->content_prior;
    if (!dr__content_prior_on(m) || !m->has_content[idx] || !t->a_raw || t->posts == 0) return;
    if (--t->posts == 0) { /* nothing left: exact zeros, not rounding's residue */
        size_t c = (size_t)m->content_dim;
        memset(t->a_raw, 0, c * c * sizeof(double));
        memset(t->b_raw, 0, c * sizeof(double));
        t->stale = true;
        return;
    }
    add_item(m, idx, -1.0);
}

void dr__content_prior_positive(dr_model_t *m, size_t idx) {
    dr__content_prior_t *t = &m->content_prior;
    if (!dr__content_prior_on(m) || !m->has_content[idx] || !t->a_raw) return;
    decay_to(m, t, m->pos_clock);
    size_t c = (size_t)m->content_dim;
    const float *e = m->emb + idx * c;
    double one = 1.0 / t->scale;
    for (size_t j = 0; j < c; j++) t->b_raw[j] += one * e[j];
    t->stale = true;
}

/* w = (A + λI)^-1 b by Cholesky; false when the system is not positive
 * definite (rounding after many leaves): no seed then. */
static bool solve(const dr_model_t *m, dr__content_prior_t *t) {
    size_t c = (size_t)m->content_dim;
    double *l = t->work, *y = t->work + c * c;
    for (size_t j = 0; j < c; j++)
        for (size_t k = 0; k <= j; k++)
            l[j * c + k] = t->a_raw[j * c + k] * t->scale + (j == k ? CONTENT_SHRINK_POSTS : 0.0);
    for (size_t j = 0; j < c; j++) {
        for (size_t k = 0; k <= j; k++) {
            double s = l[j * c + k];
            for (size_t p = 0; p < k; p++) s -= l[j * c + p] * l[k * c + p];
            if (j == k) {
                if (!(s > 0.0)) return false;
                l[j * c + j] = sqrt(s);
            } else {
                l[j * c + k] = s / l[k * c + k];
            }
        }
    }
    for (size_t j = 0; j < c; j++) { /* L y = b */
        double s = t->b_raw[j] * t->scale;
        for (size_t p = 0; p < j; p++) s -= l[j * c + p] * y[p];
        y[j] = s / l[j * c + j];
    }
    for (size_t j = c; j-- > 0;) { /* Lᵀ w = y */
        double s = y[j];
        for (size_t p = j + 1; p < c; p++) s -= l[p * c + j] * t->w[p];
        t->w[j] = s / l[j * c + j];
    }
    t->stale = false;
    return true;
}

float dr__content_prior_seed(dr_model_t *m, const float *e) {
    dr__content_prior_t *t = &m->content_prior;
    if (!dr__content_prior_on(m) || !t->a_raw || t->posts == 0) return 0.0f;
    decay_to(m, t, m->pos_clock);
    if (t->stale && !solve(m, t)) return 0.0f;
    double s = 0.0;
    for (size_t j = 0; j < (size_t)m->content_dim; j++) s += t->w[j] * e[j];
    return s > 0.0 && isfinite(s) ? (float)s : 0.0f;
}

void dr__content_prior_free(dr__content_prior_t *t) {
    free(t->a_raw);
    free(t->b_raw);
    free(t->w);
    free(t->work);
    *t = (dr__content_prior_t){0};
}
