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

/* Slot holding key, or the empty slot where it would go. */
static uint32_t probe(const dr__nbr_slot_t *slot, uint32_t n_slots, int32_t key) {
    uint32_t s = home(key, n_slots);
    while (slot[s].key != -1 && slot[s].key != key) s = (s + 1) & (n_slots - 1);
    return s;
}

/* Rebuilds the table into n_slots slots from the entries in `from` (which
 * may be t->slot), leaving out those of removed items when ids is given. */
static int rehash(dr__nbr_t *t, uint32_t n_slots, const dr__nbr_slot_t *from, uint32_t n_from,
                  const int64_t *ids) {
    dr__nbr_slot_t *slot = malloc((size_t)n_slots * sizeof(*slot));
    if (!slot) return DR_ENOMEM;
    for (uint32_t s = 0; s < n_slots; s++) slot[s].key = -1;
    uint32_t n = 0;
    for (uint32_t s = 0; s < n_from; s++) {
        if (from[s].key < 0 || (ids && ids[from[s].key] < 0)) continue;
        slot[probe(slot, n_slots, from[s].key)] = from[s];
        n++;
    }
    free(t->slot);
    t->slot = slot;
    t->n_slots = n_slots;
    t->n = n;
    return 0;
}

/* Heaviest first; equal weights by item id, so an order (and what a full
 * table keeps) depends neither on the slot order nor on this process's
 * indices. */
static int heavier_first(const void *a, const void *b) {
    const dr__nbr_ranked_t *x = a, *y = b;
    if (x->e.w != y->e.w) return x->e.w > y->e.w ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

uint32_t dr__nbr_ranked(const dr__nbr_t *t, const int64_t *ids, dr__nbr_ranked_t *out) {
    uint32_t n = 0;
    for (uint32_t s = 0; s < t->n_slots; s++)
        if (t->slot[s].key >= 0) {
            out[n].e = t->slot[s];
            out[n++].id = ids ? ids[t->slot[s].key] : t->slot[s].key;
        }
    dr__nbr_sort_ranked(out, n);
    return n;
}

void dr__nbr_sort_ranked(dr__nbr_ranked_t *e, size_t n) { qsort(e, n, sizeof(*e), heavier_first); }

/* Halves every weight and keeps the heaviest three quarters of cap (at
 * least one slot is freed), in the same slots. `ranked` has room for t->n
 * entries; NULL: allocated here, the only allocation, so DR_ENOMEM leaves
 * the table as it was. */
static int make_room(dr__nbr_t *t, uint32_t cap, const int64_t *ids, dr__nbr_ranked_t *ranked) {
    dr__nbr_ranked_t *live = ranked ? ranked : malloc((size_t)t->n * sizeof(*live));
    if (!live) return DR_ENOMEM;
    uint32_t n = dr__nbr_ranked(t, ids, live);
    uint32_t keep = cap - (cap >= 4 ? cap / 4 : 1);
    if (n > keep) n = keep;
    /* rebuilt heaviest first into emptied slots: the same table a rehash
     * into fresh slots would give */
    for (uint32_t s = 0; s < t->n_slots; s++) t->slot[s].key = -1;
    for (uint32_t k = 0; k < n; k++) {
        dr__nbr_slot_t e = live[k].e;
        e.w *= 0.5f;
        t->slot[probe(t->slot, t->n_slots, e.key)] = e;
    }
    t->n = n;
    if (!ranked) free(live);
    return 0;
}

/* Moves the entries into n_slots new slots; DR_ENOMEM leaves t as it was. */
static int resize(dr__nbr_t *t, uint32_t n_slots) {
    dr__nbr_slot_t *old = t->slot;
    uint32_t n_old = t->n_slots;
    t->slot = NULL; /* rehash frees what t points at: keep the old slots */
    int err = rehash(t, n_slots, old, n_old, NULL);
    if (err) {
        t->slot = old;
        return err;
    }
    free(old);
    return 0;
}

/* The slots n entries need at most 3/4 full, doubling from n_slots (from 8
 * when there are none), as the table grows one entry at a time. */
static uint32_t slots_for(uint32_t n_slots, uint32_t n) {
    uint32_t s = n_slots ? n_slots : 8;
    while ((uint64_t)n * 4 > (uint64_t)s * 3) s *= 2;
    return s;
}

static int add(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids,
               dr__nbr_ranked_t *ranked) {
    if (cap == 0 || key < 0) return 0;
    if (t->slot) {
        uint32_t s = probe(t->slot, t->n_slots, key);
        if (t->slot[s].key == key) {
            t->slot[s].w += w;
            return 0;
        }
    }
    int err = 0;
    if (t->n >= cap && (err = make_room(t, cap, ids, ranked))) return err;
    /* at most 3/4 full, so probes stay short */
    uint32_t n_slots = slots_for(t->n_slots, t->n + 1);
    if (n_slots != t->n_slots && (err = resize(t, n_slots))) return err;
    uint32_t s = probe(t->slot, t->n_slots, key);
    t->slot[s].key = key;
    t->slot[s].w = w;
    t->n++;
    return 0;
}

int dr__nbr_add(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids) {
    return add(t, key, w, cap, ids, NULL);
}

int dr__nbr_reserve(dr__nbr_t *t, uint32_t new_keys, uint32_t cap) {
    if (cap == 0 || new_keys == 0) return 0;
    uint64_t n = (uint64_t)t->n + new_keys;
    uint32_t n_slots = slots_for(t->n_slots, n < cap ? (uint32_t)n : cap);
    return n_slots > t->n_slots ? resize(t, n_slots) : 0;
}

int dr__nbr_add_reserved(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids,
                         dr__nbr_ranked_t *ranked) {
    return add(t, key, w, cap, ids, ranked);
}

float dr__nbr_get(const dr__nbr_t *t, int32_t key) {
    if (!t->slot) return 0.0f;
    uint32_t s = probe(t->slot, t->n_slots, key);
    return t->slot[s].key == key ? t->slot[s].w : 0.0f;
}

bool dr__nbr_remove(dr__nbr_t *t, int32_t key) {
    if (!t->slot || key < 0) return false;
    uint32_t mask = t->n_slots - 1, hole = probe(t->slot, t->n_slots, key);
    if (t->slot[hole].key != key) return false;
    /* backward shift: the entries of the run that probed past the hole
     * move into it, so no tombstone is needed */
    for (uint32_t j = (hole + 1) & mask; t->slot[j].key != -1; j = (j + 1) & mask) {
        if (dr__probe_stays(hole, j, home(t->slot[j].key, t->n_slots))) continue;
        t->slot[hole] = t->slot[j];
        hole = j;
    }
    t->slot[hole].key = -1;
    t->n--;
    return true;
}

int dr__nbr_drop_freed(dr__nbr_t *t, const int64_t *ids) {
    uint32_t dead = 0;
    for (uint32_t s = 0; s < t->n_slots; s++)
        if (t->slot[s].key >= 0 && ids[t->slot[s].key] < 0) dead++;
    if (dead == 0) return 0;
    if (dead == t->n) {
        dr__nbr_clear(t);
        return (int)dead;
    }
    /* rebuilt without them into fresh slots of the same size */
    int err = rehash(t, t->n_slots, t->slot, t->n_slots, ids);
    return err ? err : (int)dead;
}

void dr__nbr_clear(dr__nbr_t *t) {
    free(t->slot);
    memset(t, 0, sizeof(*t));
}
