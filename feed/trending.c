/* trending.c - what trends in the feed world: every user's clicks, decayed
 * round by round. Its top is the popular arm's feed and half of the organic
 * slots of every session. */
#include "feed_internal.h"

#include <stdlib.h>

#include "dr_err.h"

/* Each round a click counts this much less: a half-life of about 3 rounds,
 * so a cluster that starts trending tops the list within a round or two. */
#define TREND_DECAY 0.8f

int dr__feed_trending_init(feed_trending_t *t, uint64_t items) {
    t->items = items;
    t->n_top = 0;
    t->count = calloc(items + 1, sizeof(float));
    return t->count ? 0 : DR_ENOMEM;
}

void dr__feed_trending_free(feed_trending_t *t) {
    free(t->count);
    t->count = NULL;
}

void dr__feed_trending_click(feed_trending_t *t, int64_t item_id) {
    if (item_id >= 1 && (uint64_t)item_id <= t->items) t->count[item_id] += 1.0f;
}

/* Inserts item into the sorted top when it belongs there (ties: lower id first,
 * which the scan order gives). O(FEED_TREND_TOP) per insertion, and insertions
 * are rare once the top is full. */
static void top_offer(feed_trending_t *t, int64_t item) {
    float c = t->count[item];
    if (t->n_top == FEED_TREND_TOP && c <= t->count[t->top[t->n_top - 1]]) return;
    int i = t->n_top < FEED_TREND_TOP ? t->n_top++ : t->n_top - 1;
    while (i > 0 && t->count[t->top[i - 1]] < c) {
        t->top[i] = t->top[i - 1];
        i--;
    }
    t->top[i] = item;
}

void dr__feed_trending_roll(feed_trending_t *t) {
    t->n_top = 0;
    for (uint64_t i = 1; i <= t->items; i++) {
        if (t->count[i] <= 0) continue;
        t->count[i] *= TREND_DECAY;
        if (t->count[i] < 1e-3f) t->count[i] = 0; /* long forgotten: keep out of denormals */
        else top_offer(t, (int64_t)i);
    }
}
