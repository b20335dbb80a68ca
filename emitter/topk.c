/* topk.c - batch scoring with cblas_sgemm over fixed-size chunks of the item
 * matrix and per-user top-K selection (a bounded min-heap per user, kept
 * across the chunks; most candidates are rejected by one comparison). */
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

/* Offers one chunk of a user's scores (s[j] is item first + j's part of
 * U·Qᵀ plus the row hook's terms) to the user's heap of up to k entries
 * (*len of them); the item biases and w times the pop vector are added here,
 * one multiply-add per item in the same pass. Excluded entries were set to
 * -INFINITY beforehand; NaN scores never rank; items resting for the user,
 * or by an author or of a topic it hid, are skipped once they pass the
 * heap's bar. Most candidates fail the first
 * comparison against the heap's worst entry. */
static void select_chunk(const float *s, const dr_items_view_t *items, size_t first, size_t n,
                         float w, const dr_user_t *user, size_t k, dr_scored_item_t *heap,
                         size_t *len) {
    size_t kept = *len;
    const float *bias = items->bias + first, *pop = w != 0.0f ? items->pop + first : NULL;
    const uint8_t *blocked = items->excluded + first;
    const int64_t *ids = items->ids + first;
    for (size_t j = 0; j < n; j++) {
        float score = s[j] + bias[j];
        if (pop) score += w * pop[j];
        if (kept == k && score < heap[0].score) continue;
        if (!(score > -INFINITY) || blocked[j]) continue; /* also drops NaN */
        if (user && (dr_user_resting(user, ids[j]) ||
                     dr_user_hides_source(user, items->author[first + j], items->topic[first + j])))
            continue;
        dr_scored_item_t c = {ids[j], score};
        if (kept < k) {
            heap[kept] = c;
            sift_up(heap, kept++);
        } else if (worse(&heap[0], &c)) {
            heap[0] = c;
            sift_down(heap, kept, 0);
        }
    }
    *len = kept;
}

/* Heap sort in place: repeatedly moves the worst entry to the end, which
 * leaves the list best first. */
static void sort_heap(dr_scored_item_t *heap, size_t len) {
    for (size_t end = len; end > 1; end--) {
        dr_scored_item_t t = heap[0];
        heap[0] = heap[end - 1];
        heap[end - 1] = t;
        sift_down(heap, end - 1, 0);
    }
}

size_t dr_emit_scratch_items(size_t n_items) {
    return n_items < DR_EMIT_CHUNK_ITEMS ? n_items : DR_EMIT_CHUNK_ITEMS;
}

void dr_emit_topk(const float *U, size_t B, const dr_items_view_t *items, int k,
                  const dr_exclusions_t *excl, const dr_emit_terms_t *terms, float *scores,
                  dr_scored_item_t *out, size_t *out_n) {
    for (size_t u = 0; u < B; u++) out_n[u] = 0; /* each user's heap starts empty */
    /* chunk by chunk: the scratch is B × chunk floats whatever the catalog
     * size, and each user's heap carries the best so far to the next chunk */
    for (size_t first = 0; first < items->n; first += DR_EMIT_CHUNK_ITEMS) {
        size_t n = dr_emit_scratch_items(items->n - first);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)n, items->dim, 1.0f, U,
                    items->dim, items->q + first * (size_t)items->dim, items->dim, 0.0f, scores,
                    (int)n);
        for (size_t u = 0; u < B; u++) {
            float *row = scores + u * n;
            if (terms && terms->add_row) terms->add_row(terms->ctx, u, row, first, n);
            for (size_t j = 0; excl && j < excl[u].n; j++) {
                int64_t i = excl[u].idx[j];
                if (i >= (int64_t)first && (size_t)i - first < n) row[(size_t)i - first] = -INFINITY;
            }
            float w = terms && terms->pop_weight ? terms->pop_weight[u] : 0.0f;
            select_chunk(row, items, first, n, w, excl ? excl[u].user : NULL, (size_t)k,
                         out + u * (size_t)k, &out_n[u]);
        }
    }
    for (size_t u = 0; u < B; u++) sort_heap(out + u * (size_t)k, out_n[u]);
}
