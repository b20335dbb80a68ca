/* neighbors.c - one item's bounded table of co-engagement counts (see
 * learner_internal.h). The model keeps one per item and scores with them in
 * model.c. */
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "learner_internal.h"

static uint32_t home(int32_t key, uint32_t n_slots) {
    return (uint32_t)dr_mix64((uint64_t)(uint32_t)key) & (n_slots - 1);
}

/* The index slot holding key's position, or the empty slot where it would go. */
static uint32_t probe(const dr__nbr_t *t, int32_t key) {
    uint32_t mask = t->n_slots - 1, s = home(key, t->n_slots);
    while (t->index[s] != -1 && t->e[t->index[s]].key != key) s = (s + 1) & mask;
    return s;
}

/* Points the index at e[0..n). */
static void reindex(dr__nbr_t *t) {
    memset(t->index, 0xff, (size_t)t->n_slots * sizeof(*t->index));
    for (uint32_t k = 0; k < t->n; k++) t->index[probe(t, t->e[k].key)] = (int32_t)k;
}

/* Rebuilds the table with room for `room` entries and an index of n_slots
 * from the entries in `from` (which may be t->e), leaving out those of
 * removed items when ids is given. DR_ENOMEM leaves t as it was. */
static int rebuild(dr__nbr_t *t, uint32_t n_slots, uint32_t room, const dr__nbr_entry_t *from,
                   uint32_t n_from, const int64_t *ids) {
    dr__nbr_entry_t *e = malloc((size_t)room * sizeof(*e) + (size_t)n_slots * sizeof(int32_t));
    if (!e) return DR_ENOMEM;
    uint32_t n = 0;
    for (uint32_t k = 0; k < n_from; k++)
        if (!ids || ids[from[k].key] >= 0) e[n++] = from[k];
    free(t->e);
    t->e = e;
    t->index = (int32_t *)(e + room);
    t->n_slots = n_slots;
    t->room = room;
    t->n = n;
    reindex(t);
    return 0;
}

/* Heaviest first; equal weights by item id, so an order (and what a full
 * table keeps) depends neither on the entries' order nor on this process's
 * indices. */
static int heavier_first(const void *a, const void *b) {
    const dr__nbr_ranked_t *x = a, *y = b;
    if (x->e.w != y->e.w) return x->e.w > y->e.w ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

uint32_t dr__nbr_ranked(const dr__nbr_t *t, const int64_t *ids, dr__nbr_ranked_t *out) {
    for (uint32_t k = 0; k < t->n; k++) {
        out[k].e = t->e[k];
        out[k].id = ids ? ids[t->e[k].key] : t->e[k].key;
    }
    dr__nbr_sort_ranked(out, t->n);
    return t->n;
}

void dr__nbr_sort_ranked(dr__nbr_ranked_t *e, size_t n) { qsort(e, n, sizeof(*e), heavier_first); }

/* Halves every weight and keeps the heaviest three quarters of cap (at
 * least one entry is freed), in the same allocation. `ranked` has room for
 * t->n entries; NULL: allocated here, the only allocation, so DR_ENOMEM
 * leaves the table as it was. */
static int make_room(dr__nbr_t *t, uint32_t cap, const int64_t *ids, dr__nbr_ranked_t *ranked) {
    dr__nbr_ranked_t *live = ranked ? ranked : malloc((size_t)t->n * sizeof(*live));
    if (!live) return DR_ENOMEM;
    uint32_t n = dr__nbr_ranked(t, ids, live);
    uint32_t keep = cap - (cap >= 4 ? cap / 4 : 1);
    if (n > keep) n = keep;
    /* heaviest first: the same table a rebuild from the ranked entries gives */
    for (uint32_t k = 0; k < n; k++) {
        t->e[k] = live[k].e;
        t->e[k].w *= 0.5f;
    }
    t->n = n;
    reindex(t);
    if (!ranked) free(live);
    return 0;
}

/* The index slots n entries need, at most 3/4 full, doubling from n_slots
 * (from 8 when there are none), as the table grows one entry at a time. */
static uint32_t slots_for(uint32_t n_slots, uint32_t n) {
    uint32_t s = n_slots ? n_slots : 8;
    while ((uint64_t)n * 4 > (uint64_t)s * 3) s *= 2;
    return s;
}

/* Makes room for n entries (n <= cap): the index grows as slots_for says,
 * and the entries get what that index can hold, but never more than cap,
 * the most a table keeps. DR_ENOMEM leaves t as it was. */
static int ensure(dr__nbr_t *t, uint32_t n, uint32_t cap) {
    uint32_t n_slots = slots_for(t->n_slots, n);
    if (n_slots == t->n_slots && n <= t->room) return 0;
    uint32_t room = n_slots / 4 * 3;
    if (room > cap) room = cap;
    if (room < n) room = n;
    return rebuild(t, n_slots, room, t->e, t->n, NULL);
}

static int add(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids,
               dr__nbr_ranked_t *ranked) {
    if (cap == 0 || key < 0) return 0;
    if (t->e) {
        uint32_t s = probe(t, key);
        if (t->index[s] != -1) {
            t->e[t->index[s]].w += w;
            return 0;
        }
    }
    int err = 0;
    if (t->n >= cap && (err = make_room(t, cap, ids, ranked))) return err;
    if ((err = ensure(t, t->n + 1, cap))) return err;
    t->index[probe(t, key)] = (int32_t)t->n;
    t->e[t->n++] = (dr__nbr_entry_t){key, w};
    return 0;
}

int dr__nbr_add(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids) {
    return add(t, key, w, cap, ids, NULL);
}

int dr__nbr_reserve(dr__nbr_t *t, uint32_t new_keys, uint32_t cap) {
    if (cap == 0 || new_keys == 0) return 0;
    uint64_t n = (uint64_t)t->n + new_keys;
    return ensure(t, n < cap ? (uint32_t)n : cap, cap);
}

int dr__nbr_add_reserved(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids,
                         dr__nbr_ranked_t *ranked) {
    return add(t, key, w, cap, ids, ranked);
}

void dr__nbr_prefetch(const dr__nbr_t *t, int32_t key) {
    if (t->e) __builtin_prefetch(&t->index[home(key, t->n_slots)]);
}

float dr__nbr_get(const dr__nbr_t *t, int32_t key) {
    if (!t->e) return 0.0f;
    int32_t at = t->index[probe(t, key)];
    return at != -1 ? t->e[at].w : 0.0f;
}

bool dr__nbr_remove(dr__nbr_t *t, int32_t key) {
    if (!t->e || key < 0) return false;
    uint32_t mask = t->n_slots - 1, hole = probe(t, key);
    int32_t at = t->index[hole];
    if (at == -1) return false;
    /* backward shift: the slots of the run that probed past the hole move
     * into it, so no tombstone is needed */
    for (uint32_t j = (hole + 1) & mask; t->index[j] != -1; j = (j + 1) & mask) {
        if (dr__probe_stays(hole, j, home(t->e[t->index[j]].key, t->n_slots))) continue;
        t->index[hole] = t->index[j];
        hole = j;
    }
    t->index[hole] = -1;
    /* the last entry fills the gap, and its slot follows it */
    uint32_t last = --t->n;
    if ((uint32_t)at != last) {
        t->e[at] = t->e[last];
        t->index[probe(t, t->e[at].key)] = at;
    }
    return true;
}

int dr__nbr_drop_freed(dr__nbr_t *t, const int64_t *ids) {
    uint32_t dead = 0;
    for (uint32_t k = 0; k < t->n; k++) dead += ids[t->e[k].key] < 0;
    if (dead == 0) return 0;
    if (dead == t->n) {
        dr__nbr_clear(t);
        return (int)dead;
    }
    /* rebuilt without them into a fresh allocation of the same size */
    int err = rebuild(t, t->n_slots, t->room, t->e, t->n, ids);
    return err ? err : (int)dead;
}

void dr__nbr_clear(dr__nbr_t *t) {
    free(t->e);
    memset(t, 0, sizeof(*t));
}
