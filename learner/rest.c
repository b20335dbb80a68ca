/* rest.c - seen posts rest: a per-user filter of the items shown to the
 * user again and again without engagement, which leave its lists for a while.
 *
 * Two structures of fixed size per user (dr_rest_filter_t, 776 bytes):
 * - a counting Bloom filter of impressions (4-bit counters, conservative
 *   update: only the smallest of an item's counters grow, so a count is
 *   overestimated only where all its counters are shared), halved at each new
 *   generation so old impressions fade;
 * - two generations of a plain Bloom filter of resting items: an item joins
 *   the current one when its count reaches learner.rest.impressions, and
 *   leaves when that generation is dropped, between learner.rest.ms and twice
 *   that later (generations turn over every learner.rest.ms of event time).
 * An engagement takes the item's count back to 0 (from its counters' minimum).
 * Hashes are salted per user, so two items that collide do so for few users.
 * False positives only ever rest an item too many; docs/BENCHMARKS.md measures
 * their rate ("Seen posts rest"). */
#include "learner_internal.h"

#include <string.h>

#include "dr_bytes.h"

#define REST_HASHES 4
#define COUNT_MAX 15 /* 4-bit counters */

typedef struct { uint32_t c[REST_HASHES], b[REST_HASHES]; } positions_t;

/* Kirsch-Mitzenmacher: k positions from two halves of one 64-bit hash. */
static positions_t positions(int64_t user_id, int64_t item_id) {
    uint64_t h = dr_mix64((uint64_t)item_id ^ dr_mix64((uint64_t)user_id + 0x5eedu));
    uint32_t h1 = (uint32_t)h, h2 = (uint32_t)(h >> 32) | 1u;
    positions_t p;
    for (uint32_t i = 0; i < REST_HASHES; i++) {
        uint32_t x = h1 + i * h2;
        p.c[i] = x % DR_REST_COUNTERS;
        p.b[i] = (x >> 10) % DR_REST_BITS; /* other bits of x than the counter's */
    }
    return p;
}

static unsigned get_count(const dr_rest_filter_t *f, uint32_t i) {
    return (f->counts[i / 2] >> (4 * (i & 1))) & 0xfu;
}

static void set_count(dr_rest_filter_t *f, uint32_t i, unsigned v) {
    uint8_t shift = (uint8_t)(4 * (i & 1));
    f->counts[i / 2] = (uint8_t)((f->counts[i / 2] & ~(0xfu << shift)) | (v << shift));
}

static unsigned min_count(const dr_rest_filter_t *f, const positions_t *p) {
    unsigned m = COUNT_MAX;
    for (int i = 0; i < REST_HASHES; i++) {
        unsigned c = get_count(f, p->c[i]);
        if (c < m) m = c;
    }
    return m;
}

/* Starts a new generation when ts is a period or more past the current one:
 * the resting items of the previous one are dropped, the current one becomes
 * the previous, counts halve. Two periods or more: everything is forgotten. */
static void turn_over(dr_rest_filter_t *f, int64_t ts, int64_t period) {
    if (f->gen_start_ms == 0 || ts - f->gen_start_ms >= 2 * period) {
        memset(f, 0, sizeof(*f));
        f->gen_start_ms = ts > 0 ? ts : 1; /* 0 means empty */
        return;
    }
    if (ts - f->gen_start_ms < period) return;
    memcpy(f->resting[1], f->resting[0], sizeof(f->resting[0]));
    memset(f->resting[0], 0, sizeof(f->resting[0]));
    for (size_t i = 0; i < sizeof(f->counts); i++) /* both nibbles halve */
        f->counts[i] = (uint8_t)((f->counts[i] >> 1) & 0x77u);
    f->gen_start_ms += period;
}

void dr__rest_observe(dr_user_t *u, const dr_learner_conf_t *c, int64_t item_id, bool impression,
                      bool engaged, int64_t ts) {
    if (c->rest_impressions <= 0 || (!impression && !engaged)) return;
    dr_rest_filter_t *f = &u->rest;
    if (f->gen_start_ms == 0 && !impression) return; /* nothing to forget yet */
    turn_over(f, ts, c->rest_ms);
    positions_t p = positions(u->user_id, item_id);
    unsigned m = min_count(f, &p);
    if (engaged) { /* the item's count back to 0, as far as it is its own */
        for (int i = 0; i < REST_HASHES; i++) set_count(f, p.c[i], get_count(f, p.c[i]) - m);
        return;
    }
    if (m < COUNT_MAX)
        for (int i = 0; i < REST_HASHES; i++)
            if (get_count(f, p.c[i]) == m) set_count(f, p.c[i], m + 1);
    if (m + 1 >= (unsigned)c->rest_impressions)
        for (int i = 0; i < REST_HASHES; i++)
            f->resting[0][p.b[i] / 64] |= UINT64_C(1) << (p.b[i] % 64);
}

bool dr_user_resting(const dr_user_t *u, int64_t item_id) {
    const dr_rest_filter_t *f = &u->rest;
    if (f->gen_start_ms == 0) return false;
    positions_t p = positions(u->user_id, item_id);
    for (int g = 0; g < 2; g++) {
        bool all = true;
        for (int i = 0; i < REST_HASHES && all; i++)
            all = (f->resting[g][p.b[i] / 64] >> (p.b[i] % 64)) & 1u;
        if (all) return true;
    }
    return false;
}
