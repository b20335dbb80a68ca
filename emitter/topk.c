/* topk.c - batch scoring with cblas_sgemm over fixed-size chunks of the item
 * matrix and per-user top-K selection (a bounded min-heap per user, kept
 * across the chunks; most candidates are rejected by one comparison). */
#include "dr_emit.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"

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
/* Whether item index i, scored `score`, may enter the user's list: the
 * checks that cost more than a comparison, made only for an item that
 * passed the bar. */
static bool eligible(const dr_items_view_t *items, size_t i, float score, const dr_user_t *user) {
    if (!(score > -INFINITY) || items->excluded[i]) return false; /* also drops NaN */
    return !user || !(dr_user_resting(user, items->ids[i]) ||
                      dr_user_hides_source(user, items->author[i], items->topic[i]));
}

/* Offers candidate c to a heap of up to k entries (*kept of them). */
static void heap_offer(dr_scored_item_t *heap, size_t k, size_t *kept, dr_scored_item_t c) {
    if (*kept < k) {
        heap[*kept] = c;
        sift_up(heap, (*kept)++);
    } else if (worse(&heap[0], &c)) {
        heap[0] = c;
        sift_down(heap, *kept, 0);
    }
}

static void select_chunk(const float *s, const dr_items_view_t *items, size_t first, size_t n,
                         float w, const dr_user_t *user, size_t k, dr_scored_item_t *heap,
                         size_t *len) {
    size_t kept = *len;
    const float *bias = items->bias + first, *pop = w != 0.0f ? items->pop + first : NULL;
    const int64_t *ids = items->ids + first;
    for (size_t j = 0; j < n; j++) {
        float score = s[j] + bias[j];
        if (pop) score += w * pop[j];
        if (kept == k && score < heap[0].score) continue;
        if (!eligible(items, first + j, score, user)) continue;
        heap_offer(heap, k, &kept, (dr_scored_item_t){ids[j], score});
    }
    *len = kept;
}

/* Offers item index i, scored `score`, to an exploring user's table of
 * the best item per topic. */
static void explore_offer(const dr_items_view_t *items, size_t i, float score, const dr_user_t *user,
                          dr_emit_topic_best_t *table) {
    int64_t topic = items->topic[i];
    if (topic < 0) return;
    dr_emit_topic_best_t *e = &table[dr_mix64((uint64_t)topic) % DR_EMIT_EXPLORE_TOPICS];
    dr_scored_item_t c = {items->ids[i], score};
    if (e->topic >= 0 && !worse(&e->best, &c)) return;
    if (!eligible(items, i, score, user)) return;
    e->topic = topic;
    e->best = c;
}

/* Offers one chunk of an exploring user's scores to its table (the same
 * score as select_chunk's). */
static void explore_chunk(const float *s, const dr_items_view_t *items, size_t first, size_t n,
                          float w, const dr_user_t *user, dr_emit_topic_best_t *table) {
    for (size_t j = 0; j < n; j++) {
        size_t i = first + j;
        float score = s[j] + items->bias[i];
        if (w != 0.0f) score += w * items->pop[i];
        explore_offer(items, i, score, user, table);
    }
}

static int better_first(const void *a, const void *b) {
    const dr_scored_item_t *x = a, *y = b;
    return worse(y, x) ? -1 : worse(x, y) ? 1 : 0;
}

static bool listed(const dr_scored_item_t *list, size_t n, int64_t item_id) {
    for (size_t i = 0; i < n; i++)
        if (list[i].item_id == item_id) return true;
    return false;
}

/* Rewrites an exploring user's sorted list (len entries of k) so that its
 * odd slots hold the topics' best items, best topic first, each once;
 * the even slots keep the list's order. `tmp` has room for k + the table. */
static size_t interleave_topics(dr_scored_item_t *list, size_t len, size_t k,
                                const dr_emit_topic_best_t *table, dr_scored_item_t *tmp) {
    dr_scored_item_t *picks = tmp + k;
    size_t n_picks = 0;
    for (size_t t = 0; t < DR_EMIT_EXPLORE_TOPICS; t++)
        if (table[t].topic >= 0) picks[n_picks++] = table[t].best;
    qsort(picks, n_picks, sizeof(*picks), better_first);
    size_t out = 0, li = 0, pi = 0;
    while (out < k && (li < len || pi < n_picks)) {
        bool from_topics = (out % 2 == 1 && pi < n_picks) || li >= len;
        const dr_scored_item_t *c = from_topics ? &picks[pi++] : &list[li++];
        if (!listed(tmp, out, c->item_id)) tmp[out++] = *c;
    }
    memcpy(list, tmp, out * sizeof(*list));
    return out;
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
    const uint8_t *explore = terms && terms->topics ? terms->explore : NULL;
    for (size_t u = 0; explore && u < B; u++)
        for (size_t t = 0; explore[u] && t < DR_EMIT_EXPLORE_TOPICS; t++)
            terms->topics[u * DR_EMIT_EXPLORE_TOPICS + t].topic = -1;
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
            const dr_user_t *user = excl ? excl[u].user : NULL;
            select_chunk(row, items, first, n, w, user, (size_t)k, out + u * (size_t)k, &out_n[u]);
            if (explore && explore[u])
                explore_chunk(row, items, first, n, w, user, terms->topics + u * DR_EMIT_EXPLORE_TOPICS);
        }
    }
    dr_scored_item_t *tmp = NULL;
    for (size_t u = 0; u < B; u++) {
        sort_heap(out + u * (size_t)k, out_n[u]);
        if (!explore || !explore[u]) continue;
        /* out of memory: the list stays as ranked, without exploration */
        if (!tmp && !(tmp = malloc(((size_t)k + DR_EMIT_EXPLORE_TOPICS) * sizeof(*tmp)))) continue;
        out_n[u] = interleave_topics(out + u * (size_t)k, out_n[u], (size_t)k,
                                     terms->topics + u * DR_EMIT_EXPLORE_TOPICS, tmp);
    }
    free(tmp);
}

int dr_emit_select(const dr_items_view_t *items, const int64_t *idx, const float *score, size_t n,
                   int k, const dr_user_t *user, dr_emit_topic_best_t *topics,
                   dr_scored_item_t *out, size_t *out_n) {
    size_t kept = 0;
    for (size_t t = 0; topics && t < DR_EMIT_EXPLORE_TOPICS; t++) topics[t].topic = -1;
    for (size_t j = 0; j < n; j++) {
        size_t i = (size_t)idx[j];
        if (topics) explore_offer(items, i, score[j], user, topics);
        if (kept == (size_t)k && score[j] < out[0].score) continue;
        if (!eligible(items, i, score[j], user)) continue;
        heap_offer(out, (size_t)k, &kept, (dr_scored_item_t){items->ids[i], score[j]});
    }
    sort_heap(out, kept);
    *out_n = kept;
    if (!topics) return 0;
    dr_scored_item_t *tmp = malloc(((size_t)k + DR_EMIT_EXPLORE_TOPICS) * sizeof(*tmp));
    if (!tmp) return DR_ENOMEM;
    *out_n = interleave_topics(out, kept, (size_t)k, topics, tmp);
    free(tmp);
    return 0;
}
