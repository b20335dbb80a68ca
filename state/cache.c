/* cache.c - the write-back hot-user cache: an open-addressing table of
 * user_id -> dr_user_t*, dirty users kept in dirtying order for the commit,
 * and CLOCK eviction of clean users beyond capacity. Single-threaded.
 *
 * A user stored by a commit stays unevictable until that commit's batch is
 * written (from its commit_step or commit_begin to commit_end; it is dirty
 * all along, and dirty users are never evicted): evicted in between, its next event
 * would reload the older stored record and the following commit would
 * overwrite the effects still waiting in the batch. */
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"
#include "dr_state.h"

/* Slot indices are 32-bit to keep a slot at 32 bytes; NONE marks "no slot". */
#define NONE UINT32_MAX
#define MAX_TABLE ((size_t)1 << 31)
#define MIN_TABLE 16

/* A slot is empty when u is NULL. A clean user sits on the CLOCK ring
 * (prev/next); a dirty one is off the ring and at dirty[dpos]. Entries move
 * (backward-shift deletion, growth), so every move fixes both references.
 * While a commit is open, dirty[0 .. commit_len) are the users it stores
 * ("committing"); users dirtied after it was begun come after them. A
 * commit built in steps is open from its first step; it is sealed by
 * commit_begin, which encodes the rest. */
typedef struct slot {
    int64_t id;
    dr_user_t *u;
    uint32_t prev, next;
    uint32_t dpos;
    uint8_t dirty;
    uint8_t ref; /* CLOCK referenced bit: set on use, cleared by the hand */
} slot_t;

struct dr_user_cache {
    slot_t *slots;
    uint32_t mask;       /* table size - 1 (a power of two) */
    size_t size;         /* users held */
    size_t capacity;
    int dim;
    uint32_t hand;       /* CLOCK hand: a clean slot, NONE when none is clean */
    uint32_t *dirty;     /* slot of each dirty user, oldest first; NONE = removed */
    size_t dirty_len;    /* used entries of dirty[], holes included */
    size_t n_dirty;      /* dirty users (dirty_len minus holes) */
    size_t commit_len;   /* dirty[0 .. commit_len): the open commit's users */
    bool commit_open;
    bool commit_sealed;  /* commit_begin done: no step may add users */
    uint64_t hits, misses;
};

/* splitmix64's finalizer: user ids are often sequential, and linear probing
 * needs them spread over the table. */
static inline uint32_t home(const dr_user_cache_t *c, int64_t id) {
    uint64_t x = (uint64_t)id;

    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (uint32_t)x & c->mask;
}

static inline uint32_t find(const dr_user_cache_t *c, int64_t id) {
    /* The table is never more than 3/4 full, so an empty slot ends the probe. */
    for (uint32_t i = home(c, id);; i = (i + 1) & c->mask) {
        const slot_t *s = &c->slots[i];

        if (!s->u)
            return NONE;
        if (s->id == id)
            return i;
    }
}

/* --- the CLOCK ring of clean users ----------------------------------------- */

/* Inserts just behind the hand, so the hand reaches it last. */
static void ring_insert(dr_user_cache_t *c, uint32_t i) {
    slot_t *s = &c->slots[i];

    if (c->hand == NONE) {
        s->prev = s->next = i;
        c->hand = i;
        return;
    }
    s->next = c->hand;
    s->prev = c->slots[c->hand].prev;
    c->slots[s->prev].next = i;
    c->slots[c->hand].prev = i;
}

static void ring_unlink(dr_user_cache_t *c, uint32_t i) {
    slot_t *s = &c->slots[i];

    if (s->next == i) {
        c->hand = NONE;
        return;
    }
    c->slots[s->prev].next = s->next;
    c->slots[s->next].prev = s->prev;
    if (c->hand == i)
        c->hand = s->next;
}

/* Moves the entry in slot `from` to the empty slot `to`, fixing whoever
 * refers to it by index. */
static void move_slot(dr_user_cache_t *c, uint32_t from, uint32_t to) {
    slot_t *s = &c->slots[to];

    *s = c->slots[from];
    if (s->dirty) {
        c->dirty[s->dpos] = to;
        return;
    }
    if (s->next == from) {
        s->prev = s->next = to;
    } else {
        c->slots[s->prev].next = to;
        c->slots[s->next].prev = to;
    }
    if (c->hand == from)
        c->hand = to;
}

/* Empties slot i, then pulls later entries of its probe run back so that
 * lookups never need tombstones. */
static void shift_back(dr_user_cache_t *c, uint32_t i) {
    for (uint32_t j = (i + 1) & c->mask; c->slots[j].u; j = (j + 1) & c->mask) {
        uint32_t k = home(c, c->slots[j].id);

        /* j may fill i when i lies cyclically in [k, j). */
        if (((i - k) & c->mask) < ((j - k) & c->mask)) {
            move_slot(c, j, i);
            i = j;
        }
    }
    memset(&c->slots[i], 0, sizeof(slot_t));
}

/* Takes the user out of slot i and returns it (the caller frees it). */
static dr_user_t *take(dr_user_cache_t *c, uint32_t i) {
    slot_t *s = &c->slots[i];
    dr_user_t *u = s->u;

    if (s->dirty) {
        c->dirty[s->dpos] = NONE; /* a hole: keeps the others' order and dpos */
        c->n_dirty--;
    } else {
        ring_unlink(c, i);
    }
    c->size--;
    shift_back(c, i);
    return u;
}

/* --- growth ---------------------------------------------------------------- */

/* Doubles the table (only while many users are dirty: clean ones are
 * evicted first). Returns 0 or DR_ENOMEM. */
static int grow(dr_user_cache_t *c) {
    size_t old_n = (size_t)c->mask + 1, n = old_n * 2;
    slot_t *old = c->slots, *ns;
    uint32_t *map = NULL, *dirty = NULL;
    int rc = DR_ENOMEM;

    if (n > MAX_TABLE)
        return DR_ENOMEM;
    ns = calloc(n, sizeof(*ns));
    map = malloc(old_n * sizeof(*map));
    dirty = realloc(c->dirty, n * sizeof(*dirty));
    if (dirty)
        c->dirty = dirty;
    if (!ns || !map || !dirty)
        goto out_map;
    c->slots = ns;
    c->mask = (uint32_t)(n - 1);
    for (size_t i = 0; i < old_n; i++) {
        uint32_t p;

        if (!old[i].u)
            continue;
        for (p = home(c, old[i].id); ns[p].u; p = (p + 1) & c->mask)
            ;
        ns[p] = old[i];
        map[i] = p;
    }
    for (size_t i = 0; i < old_n; i++) {
        slot_t *s;

        if (!old[i].u)
            continue;
        s = &ns[map[i]];
        if (s->dirty) {
            c->dirty[s->dpos] = map[i];
        } else {
            s->prev = map[s->prev];
            s->next = map[s->next];
        }
    }
    if (c->hand != NONE)
        c->hand = map[c->hand];
    ns = old; /* freed below */
    rc = 0;
out_map:
    free(map);
    free(ns);
    return rc;
}

/* --- eviction ----------------------------------------------------------- */

/* CLOCK over clean users: a referenced user gets its bit cleared and a
 * second chance. `keep` (just put) is never evicted, since the caller is
 * about to use it. Stops when nothing clean but `keep` is left. */
static void evict(dr_user_cache_t *c, int64_t keep, bool keep_clean) {
    size_t evictable = c->size - c->n_dirty - (keep_clean ? 1 : 0);

    while (c->size > c->capacity && evictable > 0) {
        uint32_t h = c->hand;
        slot_t *s = &c->slots[h];

        c->hand = s->next;
        if (s->id == keep)
            continue;
        if (s->ref) {
            s->ref = 0;
            continue;
        }
        dr_user_free(take(c, h));
        evictable--;
    }
}

/* --- public API --------------------------------------------------------- */

int dr_user_cache_new(dr_user_cache_t **out, size_t capacity, int dim) {
    dr_user_cache_t *c;
    size_t n = MIN_TABLE;

    *out = NULL;
    if (capacity == 0 || capacity > MAX_TABLE / 4 || dim < 1 || dim > DR_MAX_DIM)
        return DR_EINVAL;
    while (n < capacity * 2) /* load <= 1/2 at capacity */
        n *= 2;
    c = calloc(1, sizeof(*c));
    if (!c)
        return DR_ENOMEM;
    c->slots = calloc(n, sizeof(*c->slots));
    /* One dirty[] entry per slot: mark_dirty can then never need memory. */
    c->dirty = malloc(n * sizeof(*c->dirty));
    if (!c->slots || !c->dirty) {
        dr_user_cache_free(c);
        return DR_ENOMEM;
    }
    c->mask = (uint32_t)(n - 1);
    c->capacity = capacity;
    c->dim = dim;
    c->hand = NONE;
    *out = c;
    return 0;
}

void dr_user_cache_free(dr_user_cache_t *c) {
    if (!c)
        return;
    if (c->slots)
        for (size_t i = 0; i <= c->mask; i++)
            if (c->slots[i].u)
                dr_user_free(c->slots[i].u);
    free(c->slots);
    free(c->dirty);
    free(c);
}

dr_user_t *dr_user_cache_get(dr_user_cache_t *c, int64_t user_id) {
    uint32_t i = find(c, user_id);

    if (i == NONE)
        return NULL;
    c->slots[i].ref = 1;
    c->hits++;
    return c->slots[i].u;
}

dr_user_t *dr_user_cache_peek(const dr_user_cache_t *c, int64_t user_id) {
    uint32_t i = find(c, user_id);
    return i == NONE ? NULL : c->slots[i].u;
}

int dr_user_cache_for_each(const dr_user_cache_t *c, dr_user_visit_fn fn, void *ctx) {
    for (size_t i = 0; c->slots && i <= c->mask; i++) {
        if (!c->slots[i].u)
            continue;
        int err = fn(ctx, c->slots[i].u);
        if (err)
            return err;
    }
    return 0;
}

/* Puts u in an empty slot as a clean, not yet referenced user. */
static void insert(dr_user_cache_t *c, dr_user_t *u) {
    uint32_t i = home(c, u->user_id);
    slot_t *s;

    while (c->slots[i].u)
        i = (i + 1) & c->mask;
    s = &c->slots[i];
    s->id = u->user_id;
    s->u = u;
    s->dirty = 0;
    s->ref = 0;
    ring_insert(c, i);
    c->size++;
}

int dr_user_cache_put(dr_user_cache_t *c, dr_user_t *u) {
    uint32_t i;
    bool clean = true;

    if (!u)
        return DR_EINVAL;
    i = find(c, u->user_id);
    if (i != NONE) {
        /* Replaces the cached user; a pending change stays pending. */
        slot_t *s = &c->slots[i];

        if (s->u != u)
            dr_user_free(s->u);
        s->u = u;
        s->ref = 1;
        clean = !s->dirty;
    } else {
        if ((c->size + 1) * 4 > ((size_t)c->mask + 1) * 3 && grow(c) != 0)
            return DR_ENOMEM; /* u was not taken */
        insert(c, u);
    }
    evict(c, u->user_id, clean);
    return 0;
}

void dr_user_cache_remove(dr_user_cache_t *c, int64_t user_id) {
    uint32_t i = find(c, user_id);

    if (i != NONE)
        dr_user_free(take(c, i));
}

/* Drops the holes of dirty[], keeping order, dpos and the boundary of the
 * open commit. */
static void compact_dirty(dr_user_cache_t *c) {
    size_t w = 0, commit_w = 0;

    for (size_t r = 0; r < c->dirty_len; r++) {
        uint32_t i = c->dirty[r];

        if (i == NONE)
            continue;
        c->dirty[w] = i;
        c->slots[i].dpos = (uint32_t)w;
        w++;
        if (r < c->commit_len)
            commit_w = w;
    }
    c->dirty_len = w;
    c->commit_len = commit_w;
}

/* Appends slot i to dirty[] (it is off the ring). dirty[] has one entry per
 * slot, so after dropping holes there is always room. */
static void dirty_append(dr_user_cache_t *c, uint32_t i) {
    if (c->dirty_len == (size_t)c->mask + 1)
        compact_dirty(c);
    c->slots[i].dpos = (uint32_t)c->dirty_len;
    c->dirty[c->dirty_len++] = i;
}

void dr_user_cache_mark_dirty(dr_user_cache_t *c, dr_user_t *u) {
    uint32_t i = u ? find(c, u->user_id) : NONE;
    slot_t *s;

    if (i == NONE || c->slots[i].u != u)
        return; /* not cached: nothing to write back from here */
    s = &c->slots[i];
    s->ref = 1;
    if (s->dirty) {
        /* Changed again after the open commit encoded it: it must be stored
         * by the next commit too, so it moves behind the commit's users. */
        if (c->commit_open && s->dpos < c->commit_len) {
            c->dirty[s->dpos] = NONE;
            dirty_append(c, i);
        }
        return;
    }
    ring_unlink(c, i);
    s->dirty = 1;
    dirty_append(c, i);
    c->n_dirty++;
}

size_t dr_user_cache_size(const dr_user_cache_t *c) {
    return c->size;
}

size_t dr_user_cache_dirty(const dr_user_cache_t *c) {
    return c->n_dirty;
}

/* Encodes dirty[commit_len ..) into the open commit, at most max users
 * (SIZE_MAX: all). On fn's failure no commit is left open: every user stays
 * dirty, in order, for the next one. fn must not put or remove users (that
 * moves slots); get is fine. */
static int encode_unstaged(dr_user_cache_t *c, dr_user_fn fn, void *ctx, size_t max, size_t *encoded) {
    size_t n = 0;

    c->commit_open = true;
    while (c->commit_len < c->dirty_len && n < max) {
        uint32_t i = c->dirty[c->commit_len];

        if (i != NONE) {
            int rc = fn(ctx, c->slots[i].u);
            if (rc) {
                c->commit_open = c->commit_sealed = false;
                c->commit_len = 0;
                return rc;
            }
            n++;
        }
        c->commit_len++;
    }
    if (encoded)
        *encoded = n;
    return 0;
}

size_t dr_user_cache_unstaged(const dr_user_cache_t *c) {
    return c->commit_sealed ? 0 : c->dirty_len - c->commit_len;
}

int dr_user_cache_commit_step(dr_user_cache_t *c, dr_user_fn fn, void *ctx, size_t max_users,
                              size_t *encoded) {
    if (encoded)
        *encoded = 0;
    if (c->commit_sealed)
        return DR_EINVAL; /* the sealed commit must end first: the caller's bug */
    return encode_unstaged(c, fn, ctx, max_users, encoded);
}

void dr_user_cache_commit_restage(dr_user_cache_t *c) {
    if (!c->commit_sealed)
        c->commit_len = 0;
}

int dr_user_cache_commit_begin(dr_user_cache_t *c, dr_user_fn fn, void *ctx) {
    if (c->commit_sealed)
        return DR_EINVAL; /* one commit at a time: the caller's bug */
    int rc = encode_unstaged(c, fn, ctx, SIZE_MAX, NULL);
    if (rc)
        return rc;
    c->commit_sealed = true;
    return 0;
}

void dr_user_cache_commit_end(dr_user_cache_t *c, bool written) {
    if (!c->commit_open)
        return;
    c->commit_open = c->commit_sealed = false;
    if (!written) {
        c->commit_len = 0; /* they stay dirty, in order, for the next commit */
        return;
    }
    for (size_t k = 0; k < c->commit_len; k++) {
        uint32_t i = c->dirty[k];

        if (i == NONE)
            continue;
        c->dirty[k] = NONE;
        c->slots[i].dirty = 0;
        c->n_dirty--;
        ring_insert(c, i);
    }
    c->commit_len = 0;
    compact_dirty(c); /* the users dirtied since move to the front, in order */
    evict(c, INT64_MIN, false); /* no user id is negative */
}

void dr_user_cache_stats(const dr_user_cache_t *c, uint64_t *hits, uint64_t *misses) {
    if (hits)
        *hits = c->hits;
    if (misses)
        *misses = c->misses;
}

void dr_user_cache_count_miss(dr_user_cache_t *c) {
    c->misses++;
}
