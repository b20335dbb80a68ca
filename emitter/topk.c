/* topk.c - batch scoring with cblas_sgemm over fixed-size chunks of the item
 * matrix and per-user top-K selection. Each user's list stays sorted in
 * `out` from chunk to chunk. A chunk's scores are completed in one pass
 * that also notes the best score of each block of them; from those a bar
 * is guessed that about k blocks reach, the few blocks that reach it are
 * searched, their eligible items merged into the list, and the list's
 * k-th score then proves that nothing under the bar could enter (else a
 * lower bar is tried). Issue 18: this replaced a min-heap per user fed
 * every item in turn, whose sift-downs and per-item branches cost about
 * 4 ns per item, 4 times the sgemm at 5,000 items (docs/BENCHMARKS.md). */
#include "dr_emit.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"

/* "Worse" is a lower score, or the same score with a larger item id, so
 * ties rank by ascending id. Bitwise operators: no branch, since the
 * partition below does not know the answer in advance. */
static inline bool worse(const dr_scored_item_t *a, const dr_scored_item_t *b) {
    return (a->score < b->score) | ((a->score == b->score) & (a->item_id > b->item_id));
}

static inline void swap_items(dr_scored_item_t *a, dr_scored_item_t *b) {
    dr_scored_item_t t = *a;
    *a = *b;
    *b = t;
}

/* Candidates staged between two merges into a list: STAGE_PER_K times its
 * length, at most STAGE_MAX (a stack buffer; it also bounds sort_best's
 * recursion). Larger buffers merge less often but let the bar lag more. */
#define STAGE_PER_K 4
#define STAGE_MAX 256

/* Puts the `want` best of a[0..n) first, best first; the rest is left in
 * any order. A partial quicksort: parts wholly past `want` are not sorted,
 * so it costs about n + want·log(want) comparisons. tmp has room for n. */
static void sort_best(dr_scored_item_t *a, size_t n, size_t want, dr_scored_item_t *tmp) {
    while (want > 0 && n > 16) {
        /* the median of the first, middle and last entries is the pivot */
        size_t mid = n / 2, last = n - 1;
        if (worse(&a[0], &a[mid])) swap_items(&a[0], &a[mid]);
        if (worse(&a[mid], &a[last])) swap_items(&a[mid], &a[last]);
        if (worse(&a[0], &a[mid])) swap_items(&a[0], &a[mid]);
        swap_items(&a[mid], &a[last]);
        /* partitioned into tmp, those that beat the pivot from the front and
         * the others from the back: no branch on the comparison, and no
         * load of an entry just stored (in place, a swap per entry waited
         * on its own stores) */
        const dr_scored_item_t pivot = a[last];
        size_t p = 0, back = last;
        for (size_t i = 0; i < last; i++) {
            size_t beats = worse(&pivot, &a[i]), to_front = -beats; /* all ones or zero */
            tmp[(p & to_front) | ((back - 1) & ~to_front)] = a[i];
            p += beats;
            back -= 1 - beats;
        }
        memcpy(a, tmp, last * sizeof(*a));
        a[last] = a[p]; /* the pivot between the two parts */
        a[p] = pivot;
        if (want <= p) {
            n = p;
            continue;
        }
        sort_best(a, p, p, tmp);
        a += p + 1;
        n -= p + 1;
        want -= p + 1;
    }
    if (want == 0) return;
    for (size_t i = 1; i < n; i++) { /* insertion sort of the last few */
        dr_scored_item_t x = a[i];
        size_t j = i;
        for (; j > 0 && worse(&a[j - 1], &x); j--) a[j] = a[j - 1];
        a[j] = x;
    }
}

/* A user's list in the making: its best items so far, sorted (the list
 * itself, carried in `out` from chunk to chunk), and the candidates staged
 * since the last merge. Only a score at or above the bar is worth an
 * eligibility check and a slot; the bar rises at each merge. */
typedef struct ranking {
    dr_scored_item_t *kept; /* best first, at most k */
    size_t n_kept, k;
    dr_scored_item_t *staged, *sort_tmp; /* stage_cap entries each */
    size_t n_staged, stage_cap;
    float bar; /* the k-th kept score; -INFINITY until k are kept */
} ranking_t;

static size_t stage_cap(int k) {
    size_t cap = STAGE_PER_K * (size_t)(k > 0 ? k : 1);
    return cap < STAGE_MAX ? cap : STAGE_MAX;
}

static void ranking_set_bar(ranking_t *r) {
    r->bar = r->k > 0 && r->n_kept == r->k ? r->kept[r->k - 1].score : -INFINITY;
}

/* Continues the list kept[0..n_kept), sorted best first, with no
 * candidates staged. */
static void ranking_resume(ranking_t *r, dr_scored_item_t *kept, size_t n_kept) {
    r->kept = kept;
    r->n_kept = n_kept;
    r->n_staged = 0;
    ranking_set_bar(r);
}

/* Merges the staged candidates into the list: the best k of both stay,
 * sorted. Only the staged ones that can still enter get sorted; the merge
 * runs from the back, into the room the kept entries that drop out leave,
 * so it needs no other memory. */
static void ranking_merge(ranking_t *r) {
    size_t b = r->n_staged < r->k ? r->n_staged : r->k, a = r->n_kept;
    sort_best(r->staged, r->n_staged, b, r->sort_tmp);
    size_t total = a + b < r->k ? a + b : r->k;
    while (a + b > total) { /* drop the worst of either until total remain */
        if (b == 0 || (a > 0 && worse(&r->kept[a - 1], &r->staged[b - 1]))) a--;
        else b--;
    }
    for (size_t at = a + b; b > 0;) {
        if (a > 0 && worse(&r->kept[a - 1], &r->staged[b - 1])) r->kept[--at] = r->kept[--a];
        else r->kept[--at] = r->staged[--b];
    }
    r->n_kept = total;
    r->n_staged = 0;
    ranking_set_bar(r);
}

/* Stages a candidate that reached the bar and passed the eligibility
 * checks, merging first when the buffer is full. */
static inline void ranking_stage(ranking_t *r, int64_t item_id, float score) {
    if (r->n_staged == r->stage_cap) {
        ranking_merge(r);
        if (score < r->bar) return;
    }
    r->staged[r->n_staged++] = (dr_scored_item_t){item_id, score};
}

/* Whether item index i, scored `score`, may enter the user's list: the
 * checks that cost more than a comparison, made only for an item that
 * reached the bar. Excluded entries were set to -INFINITY beforehand; NaN
 * scores never rank; nor do items resting for the user, or by an author or
 * of a topic it hid. */
static bool eligible(const dr_items_view_t *items, size_t i, float score, const dr_user_t *user) {
    if (!(score > -INFINITY) || items->excluded[i]) return false; /* also drops NaN */
    return !user || !(dr_user_resting(user, items->ids[i]) ||
                      dr_user_hides_source(user, items->author[i], items->topic[i]));
}

/* A chunk's scores are looked at in blocks: each block's best score says
 * whether any of its scores reaches a bar, and the blocks' best scores
 * give the first bar to try. Block b of a chunk of n scores laid out as
 * rows of `width` (n / LANES, at most MAX_BLOCKS) is column b, the items
 * b, b + width, b + 2·width, ...: the blocks' best scores are then an
 * elementwise max of rows, which vectorises without a horizontal step. */
#define LANES 16
#define MAX_BLOCKS 1024
#define MAX_BLOCK_LEN \
    (DR_EMIT_CHUNK_ITEMS / MAX_BLOCKS + 1 > LANES ? DR_EMIT_CHUNK_ITEMS / MAX_BLOCKS + 1 : LANES)

typedef struct blocks {
    size_t width;          /* blocks, the row length */
    float lowest, highest; /* the lowest and the highest block's best */
    float best[MAX_BLOCKS]; /* each block's best score; -INFINITY when it has none (NaN only) */
} blocks_t;

/* Completes one chunk of a user's scores in place (row[j] is item
 * first + j's part of U·Qᵀ plus the row hook's terms; the item biases and,
 * pop not NULL, w times the pop vector are added here) and finds each
 * block's best score on the way; NaN is never a block's best. */
static void complete_scores(float *row, const float *bias, const float *pop, float w, size_t n,
                            blocks_t *bl) {
    size_t width = (n + LANES - 1) / LANES;
    bl->width = width = width < MAX_BLOCKS ? width : MAX_BLOCKS;
    float *best = bl->best;
    for (size_t b = 0; b < width; b++) best[b] = -INFINITY;
    for (size_t lo = 0; lo < n; lo += width) {
        size_t m = n - lo < width ? n - lo : width;
        float *s = row + lo;
        const float *bi = bias + lo, *p = pop ? pop + lo : NULL;
        if (p)
            for (size_t b = 0; b < m; b++) {
                s[b] = s[b] + bi[b] + w * p[b];
                best[b] = s[b] > best[b] ? s[b] : best[b];
            }
        else
            for (size_t b = 0; b < m; b++) {
                s[b] += bi[b];
                best[b] = s[b] > best[b] ? s[b] : best[b];
            }
    }
    /* the extremes of the blocks' best, LANES at a time */
    float low[LANES], high[LANES];
    for (size_t t = 0; t < LANES; t++) low[t] = INFINITY, high[t] = -INFINITY;
    size_t b = 0;
    for (; b + LANES <= width; b += LANES)
        for (size_t t = 0; t < LANES; t++) {
            low[t] = best[b + t] < low[t] ? best[b + t] : low[t];
            high[t] = best[b + t] > high[t] ? best[b + t] : high[t];
        }
    for (size_t t = 0; b + t < width; t++) {
        low[t] = best[b + t] < low[t] ? best[b + t] : low[t];
        high[t] = best[b + t] > high[t] ? best[b + t] : high[t];
    }
    bl->lowest = INFINITY;
    bl->highest = -INFINITY;
    for (size_t t = 0; t < LANES; t++) {
        if (low[t] < bl->lowest) bl->lowest = low[t];
        if (high[t] > bl->highest) bl->highest = high[t];
    }
}

/* Blocks whose best score reaches t. */
static size_t blocks_reaching(const blocks_t *bl, float t) {
    uint32_t count = 0;
    for (size_t b = 0; b < bl->width; b++) count += bl->best[b] >= t;
    return count;
}

/* Floats as unsigned integers in the same order (NaN aside), so that a
 * bisection between two scores is plain integer arithmetic. */
static uint32_t order_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static float key_score(uint32_t key) {
    uint32_t u = key & 0x80000000u ? key & 0x7fffffffu : ~key;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* A bar to try: a score that at least `want` blocks' best reach, and not
 * many more (so about `want` scores reach it, a few of them in the same
 * block); -INFINITY when there are fewer blocks. Found by bisection, each
 * step a count over the blocks. */
static float guess_bar(const blocks_t *bl, size_t want) {
    if (want == 0 || bl->width < want) return -INFINITY;
    /* every block reaches lo, none hi */
    uint32_t lo = order_key(bl->lowest), hi = order_key(bl->highest) + 1;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        size_t count = blocks_reaching(bl, key_score(mid));
        if (count < want) {
            hi = mid;
            continue;
        }
        lo = mid;
        if (count <= want + want / 4) break;
    }
    return key_score(lo);
}

/* Stages the eligible items of a chunk scored in [from, below) (below:
 * only when `capped`), looking only into the blocks whose best reaches
 * `from`; there the scores in range are gathered first, without a branch
 * per score (whether one is in range is what a branch predictor cannot
 * guess). */
static void stage_range(const float *row, const blocks_t *bl, const dr_items_view_t *items,
                        size_t first, size_t n, const dr_user_t *user, float from, bool capped,
                        float below, ranking_t *r) {
    const int64_t *ids = items->ids + first;
    uint32_t hit[MAX_BLOCK_LEN]; /* a block's scores in range */
    for (size_t b = 0; b < bl->width; b++) {
        if (!(bl->best[b] >= from)) continue;
        size_t n_hits = 0;
        for (size_t j = b; j < n; j += bl->width) {
            hit[n_hits] = (uint32_t)j;
            n_hits += (row[j] >= from) & ((row[j] < below) | !capped);
        }
        /* a merge in ranking_stage may raise the bar past later hits: they
         * are staged all the same, and drop out at the next merge */
        for (size_t h = 0; h < n_hits; h++) {
            size_t j = hit[h];
            if (eligible(items, first + j, row[j], user)) ranking_stage(r, ids[j], row[j]);
        }
    }
}

/* Completes one chunk of a user's scores (complete_scores) and merges its
 * best into the user's list. Most of a list's items are found in one
 * round: the items at a guessed bar, which about k blocks' best reach.
 * The guess is checked: once merged, a list of k whose k-th score is at
 * least the guess proves that no item under it could enter. Otherwise
 * (the items there were excluded, hidden or resting, or the list is
 * short) the next round takes the items between a lower guess, from twice
 * as many blocks, and the last; the last round's bar is the list's own. */
static void select_chunk(float *row, const dr_items_view_t *items, size_t first, size_t n, float w,
                         const dr_user_t *user, ranking_t *r, blocks_t *bl) {
    complete_scores(row, items->bias + first, w != 0.0f ? items->pop + first : NULL, w, n, bl);
    /* a list carried from earlier chunks may leave few blocks above its
     * bar: no guess needed */
    size_t want = r->k;
    if (r->bar > -INFINITY && blocks_reaching(bl, r->bar) <= want + want / 4) want = 0;
    float below = 0.0f;
    for (bool capped = false;; capped = true, want *= 2) {
        float from = guess_bar(bl, want);
        if (from < r->bar) from = r->bar;
        stage_range(row, bl, items, first, n, user, from, capped, below, r);
        ranking_merge(r);
        if (r->bar >= from) return; /* nothing under `from` can enter */
        below = from;
    }
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

/* Offers one chunk of an exploring user's complete scores (select_chunk
 * completed them) to its table. */
static void explore_chunk(const float *row, const dr_items_view_t *items, size_t first, size_t n,
                          const dr_user_t *user, dr_emit_topic_best_t *table) {
    for (size_t j = 0; j < n; j++) explore_offer(items, first + j, row[j], user, table);
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
 * odd slots hold the topics' best items, each once: first the topics the
 * user has not passed over while exploring, best first, then the others,
 * best first (a user shown the same few topics again would take many
 * sessions to meet the one it turned to); the even slots keep the list's
 * order. `tmp` has room for k + the table. */
static size_t interleave_topics(dr_scored_item_t *list, size_t len, size_t k,
                                const dr_emit_topic_best_t *table, const dr_user_t *user,
                                dr_scored_item_t *tmp) {
    dr_scored_item_t *picks = tmp + k;
    size_t n_picks = 0;
    for (int passed = 0; passed < 2; passed++) {
        size_t first = n_picks;
        for (size_t t = 0; t < DR_EMIT_EXPLORE_TOPICS; t++)
            if (table[t].topic >= 0 && (user && dr_user_passed_topic(user, table[t].topic)) == passed)
                picks[n_picks++] = table[t].best;
        qsort(picks + first, n_picks - first, sizeof(*picks), better_first);
    }
    size_t out = 0, li = 0, pi = 0;
    while (out < k && (li < len || pi < n_picks)) {
        bool from_topics = (out % 2 == 1 && pi < n_picks) || li >= len;
        const dr_scored_item_t *c = from_topics ? &picks[pi++] : &list[li++];
        if (!listed(tmp, out, c->item_id)) tmp[out++] = *c;
    }
    memcpy(list, tmp, out * sizeof(*list));
    return out;
}

size_t dr_emit_scratch_items(size_t n_items) {
    return n_items < DR_EMIT_CHUNK_ITEMS ? n_items : DR_EMIT_CHUNK_ITEMS;
}

void dr_emit_topk(const float *U, size_t B, const dr_items_view_t *items, int k,
                  const dr_exclusions_t *excl, const dr_emit_terms_t *terms, float *scores,
                  dr_scored_item_t *out, size_t *out_n) {
    for (size_t u = 0; u < B; u++) out_n[u] = 0; /* each user's list starts empty */
    const uint8_t *explore = terms && terms->topics ? terms->explore : NULL;
    for (size_t u = 0; explore && u < B; u++)
        for (size_t t = 0; explore[u] && t < DR_EMIT_EXPLORE_TOPICS; t++)
            terms->topics[u * DR_EMIT_EXPLORE_TOPICS + t].topic = -1;
    /* chunk by chunk: the scratch is B × chunk floats whatever the catalog
     * size, and each user's list carries the best so far to the next chunk */
    dr_scored_item_t staged[STAGE_MAX], sort_tmp[STAGE_MAX];
    ranking_t r = {.k = (size_t)k, .staged = staged, .sort_tmp = sort_tmp, .stage_cap = stage_cap(k)};
    blocks_t blocks;
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
            ranking_resume(&r, out + u * (size_t)k, out_n[u]);
            select_chunk(row, items, first, n, w, user, &r, &blocks);
            out_n[u] = r.n_kept;
            if (explore && explore[u])
                explore_chunk(row, items, first, n, user, terms->topics + u * DR_EMIT_EXPLORE_TOPICS);
        }
    }
    dr_scored_item_t *tmp = NULL;
    for (size_t u = 0; explore && u < B; u++) { /* the lists are sorted: merges keep them so */
        if (!explore[u]) continue;
        /* out of memory: the list stays as ranked, without exploration */
        if (!tmp && !(tmp = malloc(((size_t)k + DR_EMIT_EXPLORE_TOPICS) * sizeof(*tmp)))) continue;
        out_n[u] = interleave_topics(out + u * (size_t)k, out_n[u], (size_t)k,
                                     terms->topics + u * DR_EMIT_EXPLORE_TOPICS, excl ? excl[u].user : NULL, tmp);
    }
    free(tmp);
}

int dr_emit_select(const dr_items_view_t *items, const int64_t *idx, const float *score, size_t n,
                   int k, const dr_user_t *user, dr_emit_topic_best_t *topics,
                   dr_scored_item_t *out, size_t *out_n) {
    for (size_t t = 0; topics && t < DR_EMIT_EXPLORE_TOPICS; t++) topics[t].topic = -1;
    dr_scored_item_t staged[STAGE_MAX], sort_tmp[STAGE_MAX];
    ranking_t r = {.k = (size_t)k, .staged = staged, .sort_tmp = sort_tmp, .stage_cap = stage_cap(k)};
    ranking_resume(&r, out, 0);
    for (size_t j = 0; j < n; j++) {
        size_t i = (size_t)idx[j];
        if (topics) explore_offer(items, i, score[j], user, topics);
        if (score[j] >= r.bar && eligible(items, i, score[j], user))
            ranking_stage(&r, items->ids[i], score[j]);
    }
    ranking_merge(&r);
    *out_n = r.n_kept;
    if (!topics) return 0;
    dr_scored_item_t *tmp = malloc(((size_t)k + DR_EMIT_EXPLORE_TOPICS) * sizeof(*tmp));
    if (!tmp) return DR_ENOMEM;
    *out_n = interleave_topics(out, r.n_kept, (size_t)k, topics, user, tmp);
    free(tmp);
    return 0;
}
