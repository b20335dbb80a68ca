/* dr_withdraw.h - finding the stored users whose last published list may
 * hold a withdrawn (blocked or deleted) item, off the loop thread.
 *
 * A withdrawal must reach every published list, and most users are not in
 * the cache: they are found by reading every stored user of the owned
 * partitions (the head of the last list only, dr_user_record_last_list).
 * That is O(stored users), ~3 µs a user on a 2-core VM: 3 s at a million
 * users, 30 s at ten million, during which a scan on the loop thread would
 * hold every event and every list. The scan runs on libuv's thread pool
 * instead; the loop thread gets the users found and makes their lists.
 *
 * One scan at a time. The worker sees neither the cache nor the
 * assignment as they change: the caller checks each user found against its
 * current list and the current assignment (dr_withdraw_list_may_hold). */
#ifndef DR_WITHDRAW_H
#define DR_WITHDRAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dr_ingest.h"
#include "dr_state.h"

/* Whether a last published list may hold one of `items` (sorted ascending:
 * a moderation sweep may withdraw thousands at once, and every stored user
 * is checked against them): it holds one in the head kept (`list`, `len`
 * items), or the head is full and the list was longer (`longer_than_head`:
 * emit.topk above DR_LAST_LIST), so the rest is unknown. */
bool dr_withdraw_list_may_hold(const int64_t *list, size_t len, const int64_t *items, size_t n_items,
                               bool longer_than_head);

/* Sorts items ascending and drops repeats; returns how many are left. */
size_t dr_withdraw_sort_items(int64_t *items, size_t n);

typedef struct dr_withdraw_found {
    int32_t partition;
    int64_t user_id;
} dr_withdraw_found_t;

/* Appends f to the array *v of *n (room for *cap), growing it by doubling;
 * DR_ENOMEM leaves it as it was. */
int dr_withdraw_found_append(dr_withdraw_found_t **v, size_t *n, size_t *cap, dr_withdraw_found_t f);

/* What a scan looked for, where, and what it found. Valid during the
 * callback only. */
typedef struct dr_withdraw_result {
    int err;                          /* 0 or the store's error */
    const int64_t *items;
    size_t n_items;
    const bool *scanned;              /* [DR_INGEST_MAX_PARTITIONS]: the partitions read */
    const dr_withdraw_found_t *found; /* users whose stored list may hold an item */
    size_t n_found;
    uint64_t users_read;
    double seconds;
} dr_withdraw_result_t;

typedef void (*dr_withdraw_cb)(void *ctx, const dr_withdraw_result_t *result);

typedef struct dr_withdraw_scan dr_withdraw_scan_t;

int dr_withdraw_scan_new(dr_withdraw_scan_t **out, uv_loop_t *loop, dr_state_t *state);
/* Starts reading the stored users of the partitions marked in `partitions`
 * ([DR_INGEST_MAX_PARTITIONS]) for `items` (copied, then sorted and without
 * repeats: the result's items are) on the thread pool;
 * `cb` runs on the loop thread when done. DR_EAGAIN until the last
 * scan's libuv request is over. */
int dr_withdraw_scan_start(dr_withdraw_scan_t *s, const int64_t *items, size_t n_items, const bool *partitions,
                           bool longer_than_head, dr_withdraw_cb cb, void *ctx);
/* Whether a scan is under way (its callback has not run). */
bool dr_withdraw_scan_busy(const dr_withdraw_scan_t *s);
/* For a stop: waits for the scan under way, if any, and runs its callback
 * now (it does not run again when the loop gets to the request). */
void dr_withdraw_scan_finish(dr_withdraw_scan_t *s);
/* For a stop: the same scan on the calling thread, callback included.
 * DR_EAGAIN while one is under way (finish it first). */
int dr_withdraw_scan_run(dr_withdraw_scan_t *s, const int64_t *items, size_t n_items, const bool *partitions,
                         bool longer_than_head, dr_withdraw_cb cb, void *ctx);
/* Stops the worker at its next user and waits for it (a loop left before
 * the callback ran); the state must outlive this call. */
void dr_withdraw_scan_free(dr_withdraw_scan_t *s);

/* What a crash or a partition's move must not lose of a withdrawal, stored
 * with the commits: the partitions whose stored lists may still hold a
 * withdrawn item (`unchecked`), and the items withdrawn lately, oldest
 * first (a deleted item leaves the model at once, so the model cannot name
 * it later). Zeroed is empty. */
typedef struct dr_withdrawal {
    int64_t item_id;
    int64_t at_ms; /* wall clock */
} dr_withdrawal_t;

typedef struct dr_withdraw_ledger {
    uint8_t unchecked[DR_INGEST_MAX_PARTITIONS]; /* 0 or 1 */
    dr_withdrawal_t *recent;
    size_t n_recent, cap_recent;
} dr_withdraw_ledger_t;

/* A new withdrawal: remembered, and partitions 0 to n_partitions - 1
 * unchecked (every one the topic has; at most DR_INGEST_MAX_PARTITIONS).
 * DR_ENOMEM leaves the ledger as it was. */
int dr_withdraw_ledger_add(dr_withdraw_ledger_t *l, int64_t item_id, int64_t now_ms, int n_partitions);
/* Forgets the withdrawals made before `before_ms`; returns how many. */
size_t dr_withdraw_ledger_forget(dr_withdraw_ledger_t *l, int64_t before_ms);
/* Forgets the oldest withdrawals beyond the newest `max`; returns how many. */
size_t dr_withdraw_ledger_keep_newest(dr_withdraw_ledger_t *l, size_t max);
/* The stored form (*out malloc'd). 0 or DR_ENOMEM. */
int dr_withdraw_ledger_encode(const dr_withdraw_ledger_t *l, uint8_t **out, size_t *len);
/* Replaces l's content with a stored one. DR_ECORRUPT (another layout, a
 * short or long record) or DR_ENOMEM leave l as it was. */
int dr_withdraw_ledger_decode(dr_withdraw_ledger_t *l, const uint8_t *val, size_t len);
void dr_withdraw_ledger_free(dr_withdraw_ledger_t *l); /* leaves it empty */

#endif /* DR_WITHDRAW_H */
