/* topk.c - batch scoring with one cblas_sgemm and per-user top-K selection
 * (a bounded min-heap; most candidates are rejected by one comparison). */
#include "dr_emit.h"

#include <cblas.h>
#include <math.h>

/* Heap order: the root is the worst kept entry. "Worse" is a lower score,
 * or the same score with a larger item id, so ties rank by ascending id. */
static int worse(const dr_scored_item_t *a, const dr_scored_item_t *b) {
    return a->score < b->score || (a->score == b->score && a->item_id > b->item_id);
}

static void sift_down(dr_scored_item_t *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(&h[l], &h[w])) w = l;
        if (r < n && worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        dr_scored_item_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void sift_up(dr_scored_item_t *h, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!worse(&h[i], &h[p])) return;
        dr_scored_item_t t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Selects the k best of one row of U·Qᵀ (item biases and w times the pop
 * vector added here: one multiply-add per item, in the same pass); returns
 * how many were kept, sorted best first in out. Excluded entries were set to
 * -INFINITY beforehand; NaN scores never rank. One pass: most candidates
 * fail the first comparison against the heap's worst entry. */
static size_t select_row(const float *s, const dr_items_view_t *items, float w, size_t k,
                         dr_scored_item_t *out) {
    size_t n = 0;
    const float *bias = items->bias, *pop = w != 0.0f ? items->pop : NULL;
    for (size_t i = 0; i < items->n; i++) {
        float score = s[i] + bias[i];
        if (pop) score += w * pop[i];
        if (n == k && score < out[0].score) continue;
        if (!(score > -INFINITY) || items->excluded[i]) continue; /* also drops NaN */
        dr_scored_item_t c = {items->ids[i], score};
        if (n < k) {
            out[n] = c;
            sift_up(out, n++);
        } else if (worse(&out[0], &c)) {
            out[0] = c;
            sift_down(out, n, 0);
        }
    }
    /* heap sort in place: repeatedly move the worst to the end */
    for (size_t end = n; end > 1; end--) {
        dr_scored_item_t t = out[0];
        out[0] = out[end - 1];
        out[end - 1] = t;
        sift_down(out, end - 1, 0);
    }
    return n;
}

void dr_emit_topk(const float *U, size_t B, const dr_items_view_t *items, int k,
                  const dr_exclusions_t *excl, const dr_emit_terms_t *terms, float *scores,
                  dr_scored_item_t *out, size_t *out_n) {
    size_t n = items->n;
    if (n == 0) {
        for (size_t u = 0; u < B; u++) out_n[u] = 0;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)n, items->dim, 1.0f, U,
                items->dim, items->q, items->dim, 0.0f, scores, (int)n);
    for (size_t u = 0; u < B; u++) {
        float *row = scores + u * n;
        if (terms && terms->add_row) terms->add_row(terms->ctx, u, row, n);
        if (excl)
            for (size_t j = 0; j < excl[u].n; j++)
                if (excl[u].idx[j] >= 0 && (size_t)excl[u].idx[j] < n) row[excl[u].idx[j]] = -INFINITY;
        float w = terms && terms->pop_weight ? terms->pop_weight[u] : 0.0f;
        out_n[u] = select_row(row, items, w, (size_t)k, out + u * (size_t)k);
    }
}
