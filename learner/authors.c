/* authors.c - what each author's posts earned, so that a new post of a known
 * author starts with a population prior p_i from it instead of 0
 * (docs/CATALOG.md, "New posts, and freshness in the ranking").
 *
 * Per author: its posts in the model and the positives they earned, both
 * decayed on the positive clock with learner.prior.popularity.halflife as
 * the items' own counts c_i are, so that an author's record is the sum over
 * its live posts of what they hold: a post leaving the model (removal, a
 * new author) takes its share with it, and a restart rebuilds the table
 * from the stored items. Each update is one hash look-up; the table holds
 * at most learner.prior.popularity.authors authors. */
#include <math.h>
#include <stdlib.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "learner_internal.h"

#define AUTHOR_SLOTS_MIN 64
#define EVICT_SAMPLE 8 /* entries compared to pick the one to drop */
/* An author's mean counts as if it had this many more posts that earned
 * nothing: one lucky post does not make a popular author, and a first post
 * gives the next one a fraction of its count. */
#define AUTHOR_SHRINK_POSTS 2.0f

bool dr__authors_on(const dr_model_t *m) { return m->conf.pop_authors > 0 && dr__pop_on(m); }

static size_t home_slot(int64_t id, size_t mask) { return dr_mix64((uint64_t)id) & mask; }

static dr__author_t *author_find(const dr__authors_t *t, int64_t id) {
    if (t->n == 0) return NULL;
    size_t mask = t->n_slots - 1;
    for (size_t s = home_slot(id, mask); t->slot[s].id != -1; s = (s + 1) & mask)
        if (t->slot[s].id == id) return &t->slot[s];
    return NULL;
}

/* Brings both sums to positive-clock time `to` (never back). */
static void author_decay_to(const dr_model_t *m, dr__author_t *a, uint64_t to) {
    if (to <= a->time) return;
    double d = dr__pop_decay(m, a->time, to);
    a->posts = (float)(a->posts * d);
    a->positives = (float)(a->positives * d);
    a->time = to;
}

/* Adds (posts, positives) as of time t, which may be before the entry's
 * own; sums that would fall below 0 (what an evicted author's posts take
 * back, float rounding) stop at 0. */
static void author_add(const dr_model_t *m, dr__author_t *a, double posts, double positives, uint64_t t) {
    author_decay_to(m, a, t);
    double d = dr__pop_decay(m, t, a->time);
    a->posts = (float)fmax(a->posts + posts * d, 0.0);
    a->positives = (float)fmax(a->positives + positives * d, 0.0);
}

/* How much an author weighs now: the eviction drops the lightest. */
static double author_activity(const dr_model_t *m, const dr__author_t *a) {
    return ((double)a->posts + a->positives) * dr__pop_decay(m, a->time, m->pos_clock);
}

static void slot_remove(dr__authors_t *t, size_t s) {
    size_t mask = t->n_slots - 1, hole = s;
    for (size_t j = (s + 1) & mask; t->slot[j].id != -1; j = (j + 1) & mask) {
        if (dr__probe_stays(hole, j, home_slot(t->slot[j].id, mask))) continue;
        t->slot[hole] = t->slot[j];
        hole = j;
    }
    t->slot[hole].id = -1;
    t->n--;
}

/* The least active of up to EVICT_SAMPLE entries met from a slot derived
 * from the newcomer and the clock goes. */
static void author_evict(dr_model_t *m, int64_t newcomer) {
    dr__authors_t *t = &m->authors;
    size_t mask = t->n_slots - 1, s = dr_mix64((uint64_t)newcomer ^ (m->pos_clock << 20) ^ t->evicted) & mask;
    size_t victim = SIZE_MAX, seen = 0;
    double lightest = 0.0;
    for (size_t k = 0; k < t->n_slots && seen < EVICT_SAMPLE; k++, s = (s + 1) & mask) {
        if (t->slot[s].id == -1) continue;
        double w = author_activity(m, &t->slot[s]);
        if (victim == SIZE_MAX || w < lightest) victim = s, lightest = w;
        seen++;
    }
    if (victim == SIZE_MAX) return;
    slot_remove(t, victim);
    t->evicted++;
}

static int authors_rehash(dr__authors_t *t, size_t n_slots) {
    dr__author_t *slot = malloc(n_slots * sizeof(*slot));
    if (!slot) return DR_ENOMEM;
    for (size_t s = 0; s < n_slots; s++) slot[s].id = -1;
    size_t mask = n_slots - 1;
    for (size_t s = 0; s < t->n_slots; s++) {
        if (t->slot[s].id == -1) continue;
        size_t j = home_slot(t->slot[s].id, mask);
        while (slot[j].id != -1) j = (j + 1) & mask;
        slot[j] = t->slot[s];
    }
    free(t->slot);
    t->slot = slot;
    t->n_slots = n_slots;
    return 0;
}

/* The author's entry, made (empty, as of now) when absent: the table grows
 * while under its bound and there is memory, else makes room by eviction.
 * NULL only when no slot could ever be allocated. */
static dr__author_t *author_entry(dr_model_t *m, int64_t id) {
    dr__authors_t *t = &m->authors;
    dr__author_t *a = author_find(t, id);
    if (a) return a;
    bool full = t->n >= (size_t)m->conf.pop_authors;
    if (!full && (t->n + 1) * 4 > t->n_slots * 3 &&
        authors_rehash(t, t->n_slots ? t->n_slots * 2 : AUTHOR_SLOTS_MIN) != 0)
        full = true; /* no memory to grow: make room as a full table does */
    if (t->n_slots == 0) return NULL;
    if (full || (t->n + 1) * 4 > t->n_slots * 3) author_evict(m, id);
    size_t mask = t->n_slots - 1, s = home_slot(id, mask);
    while (t->slot[s].id != -1) s = (s + 1) & mask;
    t->slot[s] = (dr__author_t){.id = id, .time = m->pos_clock, .posts = 0.0f, .positives = 0.0f};
    t->n++;
    return &t->slot[s];
}

void dr__author_join(dr_model_t *m, size_t idx) {
    if (!dr__authors_on(m) || m->author[idx] < 0) return;
    dr__author_t *a = author_entry(m, m->author[idx]);
    if (!a) return;
    author_add(m, a, 1.0, 0.0, m->author_joined[idx]);
    author_add(m, a, 0.0, m->pop_count[idx], m->pop_time[idx]);
}

void dr__author_leave(dr_model_t *m, size_t idx) {
    if (!dr__authors_on(m) || m->author[idx] < 0) return;
    dr__author_t *a = author_find(&m->authors, m->author[idx]);
    if (!a) return; /* evicted: nothing of it is kept */
    author_add(m, a, -1.0, 0.0, m->author_joined[idx]);
    author_add(m, a, 0.0, -(double)m->pop_count[idx], m->pop_time[idx]);
}

void dr__author_positive(dr_model_t *m, size_t idx) {
    if (!dr__authors_on(m) || m->author[idx] < 0) return;
    dr__author_t *a = author_entry(m, m->author[idx]);
    if (a) author_add(m, a, 0.0, 1.0, m->pos_clock);
}

float dr__author_seed(const dr_model_t *m, int64_t author) {
    const dr__author_t *a = author < 0 || !dr__authors_on(m) ? NULL : author_find(&m->authors, author);
    if (!a) return 0.0f;
    double d = dr__pop_decay(m, a->time, m->pos_clock);
    return (float)(a->positives * d / (a->posts * d + AUTHOR_SHRINK_POSTS));
}

void dr__authors_free(dr__authors_t *t) {
    free(t->slot);
    *t = (dr__authors_t){0};
}

int dr_model_author_stats(const dr_model_t *m, int64_t author, float *posts, float *positives,
                          float *seed) {
    const dr__author_t *a = author < 0 || !dr__authors_on(m) ? NULL : author_find(&m->authors, author);
    if (!a) return DR_ENOTFOUND;
    double d = dr__pop_decay(m, a->time, m->pos_clock);
    if (posts) *posts = (float)(a->posts * d);
    if (positives) *positives = (float)(a->positives * d);
    if (seed) *seed = dr__author_seed(m, author);
    return 0;
}

size_t dr_model_authors(const dr_model_t *m, uint64_t *evicted) {
    if (evicted) *evicted = m->authors.evicted;
    return m->authors.n;
}
