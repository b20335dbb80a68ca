/* items.c - an item's life in the model: its publish time, its expiry past
 * learner.item.ttl.ms (it leaves every list), its removal after the grace
 * period (its row, its co-engagement counts, every table that names it, its
 * stored record), and the reuse of its row once no table can name it.
 *
 * Why rows wait before reuse: co-engagement tables name items by row, and
 * a table may name an item that no longer names it back (full tables drop
 * their lightest entries independently). A removed item's own table tells
 * which neighbours to clean at once; the rest is found by a sweep over all
 * tables, bounded per call, and a row is handed out again only after a
 * whole pass of the sweep began after its removal. Until then the row is
 * marked free (never listed, never drawn, named by no id). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "learner_internal.h"

#define MAX_PUBLISHED_MS INT64_C(32503680000000) /* year 3000, as ingest bounds event times */
#define SWEEP_SLOTS_PER_ROW 32 /* the sweep's budget per row of the expiry pass's */
#define RETIRED_MIN_PERIOD_MS INT64_C(3600000) /* generation length when ttl + grace is shorter */

/* ---- lists of rows and ids ----------------------------------------------- */

static int rows_reserve(dr__rows_t *r, size_t extra) {
    if (r->n + extra <= r->cap) return 0;
    size_t cap = r->cap ? r->cap : 64;
    while (cap < r->n + extra) cap *= 2;
    int64_t *v = realloc(r->v, cap * sizeof(*v));
    if (!v) return DR_ENOMEM;
    r->v = v;
    r->cap = cap;
    return 0;
}

/* ---- removed ids and their publish times ---------------------------------- */

static size_t retired_slot(const dr__retired_t *t, int64_t id) {
    size_t mask = t->n_slots - 1, s = dr_mix64((uint64_t)id ^ 0x7e71edu) & mask;
    while (t->id[s] != -1 && t->id[s] != id) s = (s + 1) & mask;
    return s;
}

static bool retired_get(const dr__retired_t *t, int64_t id, int64_t *published) {
    if (t->n == 0) return false;
    size_t s = retired_slot(t, id);
    if (t->id[s] != id) return false;
    *published = t->published[s];
    return true;
}

/* Room for one more id (at most half full). */
static int retired_reserve(dr__retired_t *t) {
    if ((t->n + 1) * 2 <= t->n_slots) return 0;
    size_t n = t->n_slots ? t->n_slots * 2 : 256;
    dr__retired_t g = {malloc(n * sizeof(int64_t)), malloc(n * sizeof(int64_t)), 0, n};
    if (!g.id || !g.published) {
        free(g.id);
        free(g.published);
        return DR_ENOMEM;
    }
    for (size_t s = 0; s < n; s++) g.id[s] = -1;
    for (size_t s = 0; s < t->n_slots; s++)
        if (t->id[s] != -1) {
            size_t d = retired_slot(&g, t->id[s]);
            g.id[d] = t->id[s];
            g.published[d] = t->published[s];
            g.n++;
        }
    free(t->id);
    free(t->published);
    *t = g;
    return 0;
}

static void retired_put(dr__retired_t *t, int64_t id, int64_t published) {
    size_t s = retired_slot(t, id);
    if (t->id[s] != id) t->n++;
    t->id[s] = id;
    t->published[s] = published;
}

static void retired_clear(dr__retired_t *t) {
    free(t->id);
    free(t->published);
    memset(t, 0, sizeof(*t));
}

/* A removed id is remembered for one to two generations of ttl + grace
 * (event time): memory follows the rate of removals, not their total. */
static void retired_rotate(dr_model_t *m) {
    if (m->now_ms < m->retired_rotate_ms) return;
    int64_t period = m->conf.item_ttl_ms + m->conf.item_grace_ms;
    if (period < RETIRED_MIN_PERIOD_MS) period = RETIRED_MIN_PERIOD_MS;
    if (m->retired_rotate_ms > 0) { /* the first call only starts the clock */
        retired_clear(&m->retired[1]);
        m->retired[1] = m->retired[0];
        memset(&m->retired[0], 0, sizeof(m->retired[0]));
    }
    m->retired_rotate_ms = m->now_ms + period;
}

/* ---- publish time and expiry ---------------------------------------------- */

bool dr__item_is_expired(const dr_model_t *m, size_t idx) {
    int64_t p = m->published[idx];
    if (p == DR__PUBLISHED_DELETED) return true;
    return m->conf.item_ttl_ms > 0 && p >= 0 && m->now_ms - p >= m->conf.item_ttl_ms;
}

float dr__item_freshness(const dr_model_t *m, size_t idx) {
    int64_t p = m->published[idx];
    if (p == DR__PUBLISHED_DELETED) return 0.0f;
    if (p < 0 || m->now_ms <= p) return 1.0f;
    return (float)exp2(-(double)(m->now_ms - p) / (double)m->conf.fresh_halflife_ms);
}

static void update_expired(dr_model_t *m, size_t idx) {
    m->fresh_score[idx] = dr__item_freshness(m, idx);
    if (dr__item_is_expired(m, idx)) m->excluded[idx] |= DR__EXCL_EXPIRED;
    else m->excluded[idx] &= (uint8_t)~DR__EXCL_EXPIRED;
}

void dr__item_stamp_new(dr_model_t *m, size_t idx) {
    int64_t id = m->ids[idx], p;
    if (retired_get(&m->retired[0], id, &p) || retired_get(&m->retired[1], id, &p))
        m->published[idx] = p; /* back soon after its removal: as old as it was */
    else
        m->published[idx] = m->now_ms > 0 ? m->now_ms : -1; /* first met now */
    update_expired(m, idx);
}

size_t dr__item_row_take(dr_model_t *m) {
    if (m->free_rows.n == 0) return m->n_items++;
    int64_t row = m->free_rows.v[--m->free_rows.n];
    m->reuse_log[m->reuse_seq++ % DR_REUSE_LOG] = row; /* for indexes over the rows */
    return (size_t)row;
}

uint64_t dr_model_reuse_seq(const dr_model_t *m) { return m->reuse_seq; }

size_t dr_model_reused_rows(const dr_model_t *m, uint64_t *cursor, int64_t *rows, size_t max, bool *lost) {
    *lost = m->reuse_seq - *cursor > DR_REUSE_LOG;
    if (*lost) *cursor = m->reuse_seq - DR_REUSE_LOG;
    size_t n = 0;
    for (; *cursor < m->reuse_seq && n < max; (*cursor)++) rows[n++] = m->reuse_log[*cursor % DR_REUSE_LOG];
    return n;
}

void dr_model_advance_clock(dr_model_t *m, int64_t now_ms) {
    if (now_ms <= m->now_ms) return;
    if (m->clock_start_ms == 0) m->clock_start_ms = now_ms;
    m->now_ms = now_ms;
}

int64_t dr_model_clock(const dr_model_t *m) { return m->now_ms; }

size_t dr_model_live_items(const dr_model_t *m) { return m->n_live; }

int dr_model_set_item_published(dr_model_t *m, int64_t item_id, int64_t published_ms) {
    if (published_ms < 0 || published_ms >= MAX_PUBLISHED_MS) return DR_ERANGE;
    int64_t i = dr_model_item_index(m, item_id, true);
    if (i < 0) return (int)i;
    size_t idx = (size_t)i;
    if (m->published[idx] == published_ms) return 0;
    m->published[idx] = published_ms;
    update_expired(m, idx);
    dr__mark_item_dirty(m, idx);
    return 0;
}

int64_t dr_model_item_published(dr_model_t *m, int64_t item_id) {
    int64_t i = dr_model_item_index(m, item_id, false);
    return i < 0 ? i : m->published[i];
}

bool dr_model_item_expired(dr_model_t *m, int64_t item_id) {
    int64_t i = dr_model_item_index(m, item_id, false);
    return i >= 0 && (m->excluded[i] & DR__EXCL_EXPIRED);
}

/* ---- removal ------------------------------------------------------------- */

/* Deletes id from the id table, shifting back the entries of its run that
 * probed past it: the table is then what inserting the remaining ids
 * would have built, so draw_item_any_order() stays order-independent. */
static void slot_remove(dr_model_t *m, int64_t id) {
    size_t mask = m->n_slots - 1, s = dr_mix64((uint64_t)id) & mask;
    while (m->slot_id[s] != id) {
        if (m->slot_id[s] == -1) return;
        s = (s + 1) & mask;
    }
    size_t hole = s, j = s;
    for (;;) {
        j = (j + 1) & mask;
        if (m->slot_id[j] == -1) break;
        if (dr__probe_stays(hole, j, dr_mix64((uint64_t)m->slot_id[j]) & mask)) continue;
        m->slot_id[hole] = m->slot_id[j];
        m->slot_idx[hole] = m->slot_idx[j];
        hole = j;
    }
    m->slot_id[hole] = -1;
}

static void dirty_forget(dr_model_t *m, size_t idx) {
    if (!m->dirty[idx]) return;
    for (size_t k = 0; k < m->n_dirty; k++)
        if (m->dirty_list[k] == (int64_t)idx) {
            m->dirty_list[k] = m->dirty_list[--m->n_dirty];
            break;
        }
    m->dirty[idx] = 0;
}

/* retire: remember the id's age (an id the catalog removed counts as
 * deleted at any age); stored: its record is to be deleted. Every
 * allocation comes first: DR_ENOMEM leaves the model as it was. */
static int item_remove(dr_model_t *m, size_t idx, bool retire, bool stored) {
    int64_t id = m->ids[idx];
    if (rows_reserve(&m->held_rows, 1) || rows_reserve(&m->gone, 1) ||
        (retire && retired_reserve(&m->retired[0])))
        return DR_ENOMEM;
    if (m->held_epoch_cap < m->held_rows.cap) {
        uint64_t *e = realloc(m->held_epoch, m->held_rows.cap * sizeof(*e));
        if (!e) return DR_ENOMEM;
        m->held_epoch = e;
        m->held_epoch_cap = m->held_rows.cap;
    }
    dr__author_leave(m, idx); /* its author's record holds its live posts */
    dr__content_prior_leave(m, idx); /* ... and so does the content prior */
    if (retire)
        retired_put(&m->retired[0], id,
                    m->published[idx] >= 0 || m->published[idx] == DR__PUBLISHED_DELETED ? m->published[idx]
                                                                                        : m->now_ms);
    if (stored) m->gone.v[m->gone.n++] = id;
    slot_remove(m, id);
    m->ids[idx] = -1; /* from here on every table sees the row as free */
    /* the neighbours it names forget it now, one probe each (the tables
     * that name it without being named, when the sweep passes) */
    dr__nbr_t *t = &m->nbr[idx];
    for (uint32_t s = 0; s < t->n; s++) {
        int32_t k = t->e[s].key;
        if (m->ids[k] < 0) continue;
        if (dr__nbr_remove(&m->nbr[k], (int32_t)idx)) dr__mark_item_dirty(m, (size_t)k);
    }
    dr__nbr_clear(t);
    dr__sync_forget(m, idx);
    dirty_forget(m, idx);
    if (m->has_content[idx]) {
        m->has_content[idx] = 0;
        m->n_content--;
    }
    if (m->excluded[idx] & DR__EXCL_PLACEHOLDER) m->n_placeholders--;
    m->excluded[idx] = DR__EXCL_FREE;
    m->published[idx] = -1;
    m->count[idx] = 0;
    m->bias[idx] = 0.0f;
    dr__set_engaged(m, idx, 0.0f);
    m->pop_count[idx] = m->pop_score[idx] = m->pop_seed[idx] = 0.0f;
    m->pop_time[idx] = 0;
    m->author[idx] = -1;
    m->trend_count[idx] = 0;
    m->trend_lift[idx] = m->trend_score[idx] = 0.0f;
    m->held_epoch[m->held_rows.n] = m->sweep_epoch;
    m->held_rows.v[m->held_rows.n++] = (int64_t)idx;
    m->n_live--;
    return 0;
}

int dr_model_remove_item(dr_model_t *m, int64_t item_id) {
    int64_t i = dr_model_item_index(m, item_id, false);
    if (i < 0) return (int)i;
    int64_t published = m->published[i];
    m->published[i] = DR__PUBLISHED_DELETED; /* brought back soon: never listed */
    int err = item_remove(m, (size_t)i, true, true);
    if (err) m->published[i] = published;
    return err;
}

/* ---- the sweep: rows back for reuse ---------------------------------------- */

/* Held rows whose removal a whole pass of the sweep followed go free. */
static int release_rows(dr_model_t *m, size_t *released) {
    size_t keep = 0;
    for (size_t k = 0; k < m->held_rows.n; k++) {
        if (m->held_epoch[k] + 2 <= m->sweep_epoch && rows_reserve(&m->free_rows, 1) == 0) {
            m->free_rows.v[m->free_rows.n++] = m->held_rows.v[k];
            (*released)++;
            continue;
        }
        m->held_epoch[keep] = m->held_epoch[k];
        m->held_rows.v[keep++] = m->held_rows.v[k];
    }
    m->held_rows.n = keep;
    return 0;
}

/* budget counts table slots looked at (a table costs its slots, and one
 * for being visited): a pass costs what the tables hold, spread over calls. */
static int sweep(dr_model_t *m, size_t budget, size_t *released) {
    while (m->held_rows.n > 0 && budget > 0) {
        if (m->sweep_cursor >= m->n_items) {
            m->sweep_cursor = 0;
            m->sweep_epoch++;
            release_rows(m, released);
            continue;
        }
        size_t r = m->sweep_cursor;
        size_t cost = 1 + m->nbr[r].n;
        budget = budget > cost ? budget - cost : 0;
        if (m->ids[r] >= 0) {
            int dropped = dr__nbr_drop_freed(&m->nbr[r], m->ids);
            if (dropped < 0) return dropped;
            if (dropped > 0) dr__mark_item_dirty(m, r);
            int err = dr__sync_drop_freed(m, r);
            if (err) return err;
        }
        m->sweep_cursor++;
    }
    return 0;
}

/* ---- the expiry pass ------------------------------------------------------- */

int dr_model_expire_items(dr_model_t *m, size_t max_rows, dr_expiry_stats_t *stats) {
    dr_expiry_stats_t none;
    if (!stats) stats = &none;
    memset(stats, 0, sizeof(*stats));
    retired_rotate(m);
    int64_t ttl = m->conf.item_ttl_ms;
    bool pass = ((ttl > 0 || m->conf.fresh_weight > 0) && m->now_ms > 0) || m->n_placeholders > 0;
    for (size_t v = 0; pass && v < max_rows && v < m->n_items; v++) {
        if (m->expire_cursor >= m->n_items) m->expire_cursor = 0;
        size_t r = m->expire_cursor++;
        stats->visited++;
        uint8_t ex = m->excluded[r];
        if (ex & DR__EXCL_FREE) continue;
        if (ex & DR__EXCL_PLACEHOLDER) {
            /* named by a stored table, its own record never came: an item
             * removed before the restart (an event since keeps it) */
            int err = 0;
            if (m->count[r] == 0) {
                err = item_remove(m, r, false, false); /* counts it */
            } else {
                m->excluded[r] &= (uint8_t)~DR__EXCL_PLACEHOLDER;
                m->n_placeholders--;
            }
            if (err) return err;
            continue;
        }
        if (ttl <= 0 && m->conf.fresh_weight <= 0) continue;
        if (m->published[r] == -1) {
            /* met before the clock started (a catalog record read before
             * the first event, a record stored without a publish time): as
             * old as the first event */
            m->published[r] = m->clock_start_ms;
            dr__mark_item_dirty(m, r);
        }
        m->fresh_score[r] = dr__item_freshness(m, r);
        if (!dr__item_is_expired(m, r)) {
            m->excluded[r] &= (uint8_t)~DR__EXCL_EXPIRED; /* the clock or the TTL moved */
            continue;
        }
        if (!(ex & DR__EXCL_EXPIRED)) {
            m->excluded[r] |= DR__EXCL_EXPIRED;
            stats->expired++;
        }
        int64_t p = m->published[r];
        if (p == DR__PUBLISHED_DELETED || m->now_ms - p >= ttl + m->conf.item_grace_ms) {
            int err = item_remove(m, r, true, true);
            if (err) return err;
            stats->removed++;
        }
    }
    int err = sweep(m, max_rows * SWEEP_SLOTS_PER_ROW, &stats->released);
    if (err) return err;
    return dr__fit_slots(m);
}

/* The id table grows when half full (model.c) and shrinks here once at
 * most an eighth full, to a quarter full: a live count that hovers about
 * a size rebuilds it once, not at every commit. Its size decides which
 * items draw_item_any_order() picks, so the globals record keeps it and a
 * restore takes it again (records.c): a model restored after a crash
 * draws what this one drew. */
int dr__fit_slots(dr_model_t *m) {
    if (m->n_live * 8 > m->n_slots) return 0;
    size_t want = 1024;
    while (m->n_live * 4 > want) want *= 2;
    return want < m->n_slots ? dr__rehash_slots(m, want) : 0;
}

size_t dr__slots_bound(const dr_model_t *m) {
    size_t bound = 1024;
    while (bound < (size_t)m->conf.max_items * 4 && bound < ((size_t)1 << 40)) bound *= 2;
    return bound;
}

void dr__items_free(dr_model_t *m) {
    free(m->free_rows.v);
    free(m->held_rows.v);
    free(m->held_epoch);
    free(m->gone.v);
    retired_clear(&m->retired[0]);
    retired_clear(&m->retired[1]);
}
