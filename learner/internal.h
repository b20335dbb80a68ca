/* internal.h - declarations shared inside the learner module only (other
 * modules include dr_learner.h). */
#ifndef DR_LEARNER_INTERNAL_H
#define DR_LEARNER_INTERNAL_H

#include <stdint.h>

/* ---- co-engagement neighbours (neighbors.c) ------------------------------ */

/* One item's co-engagement counts: for each other item (by its index in the
 * item matrix), how often users engaged with both close together in their
 * own sequence. Open addressing over a power-of-two slot array that grows up
 * to `cap` entries; a zeroed struct is an empty table.
 *
 * Bounded memory: when a full table meets a new neighbour, every weight is
 * halved and the lightest entries are dropped until a quarter of the table
 * is free. Heavy pairs survive, old light ones go, and an item with many
 * neighbours forgets faster: what it kept is what stays frequent. */
typedef struct dr__nbr_slot {
    int32_t key; /* neighbour's item index; -1: empty */
    float w;
} dr__nbr_slot_t;

typedef struct dr__nbr {
    dr__nbr_slot_t *slot; /* NULL until the first neighbour */
    uint32_t n_slots, n;
} dr__nbr_t;

/* Adds w to key's weight, inserting it (and making room) when new. Equal
 * weights are dropped in the order of ids[key] (item ids, which unlike
 * indices are the same after a restart). 0, or DR_ENOMEM with the table
 * unchanged. */
int dr__nbr_add(dr__nbr_t *t, int32_t key, float w, uint32_t cap, const int64_t *ids);
/* key's weight, 0 when absent. */
float dr__nbr_get(const dr__nbr_t *t, int32_t key);
/* Frees the slots; the table is empty again. */
void dr__nbr_clear(dr__nbr_t *t);

#endif /* DR_LEARNER_INTERNAL_H */
