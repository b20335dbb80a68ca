/* withdraw.c - the stored users' part of a withdrawal, scanned on libuv's
 * thread pool, and the ledger that keeps an unfinished withdrawal across a
 * crash or a partition's move (dr_withdraw.h). */
#include "dr_withdraw.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_log.h"
#include "dr_learner.h"

struct dr_withdraw_scan {
    uv_loop_t *loop;
    dr_state_t *state;
    uv_work_t req;
    bool queued;        /* req is with libuv: its after-callback has not run */
    bool delivered;     /* the scan's callback ran (at its end, or in finish) */
    atomic_bool cancel; /* the worker stops at its next user (free) */
    pthread_mutex_t lock; /* guards worker_done */
    pthread_cond_t cond;
    bool worker_done;
    /* the scan under way */
    int64_t *items;
    size_t n_items, cap_items;
    bool scanned[DR_INGEST_MAX_PARTITIONS];
    bool longer_than_head;
    dr_withdraw_cb cb;
    void *ctx;
    dr_withdraw_found_t *found;
    size_t n_found, cap_found;
    uint64_t users_read;
    int err;
    double started;
};

bool dr_withdraw_list_may_hold(const int64_t *list, size_t len, const int64_t *items, size_t n_items,
                               bool longer_than_head) {
    if (len == 0 || n_items == 0) return false;
    if (len == DR_LAST_LIST && longer_than_head) return true;
    for (size_t i = 0; i < len; i++) {
        if (list[i] < items[0] || list[i] > items[n_items - 1]) continue;
        size_t lo = 0, hi = n_items; /* the first item >= list[i] */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (items[mid] < list[i]) lo = mid + 1;
            else hi = mid;
        }
        if (items[lo] == list[i]) return true;
    }
    return false;
}

static int cmp_id(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

size_t dr_withdraw_sort_items(int64_t *items, size_t n) {
    if (n == 0) return 0;
    qsort(items, n, sizeof(*items), cmp_id);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (items[i] != items[k - 1]) items[k++] = items[i];
    return k;
}

int dr_withdraw_found_append(dr_withdraw_found_t **v, size_t *n, size_t *cap, dr_withdraw_found_t f) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        dr_withdraw_found_t *w = realloc(*v, c * sizeof(*w));
        if (!w) return DR_ENOMEM;
        *v = w;
        *cap = c;
    }
    (*v)[(*n)++] = f;
    return 0;
}

/* One stored user: only the head of its last list is read from the record
 * (a whole decode allocates ~4.5 KB and cost 0.4-1.2 µs a user more). A
 * record that does not parse is the store's problem, reported elsewhere. */
static int scan_user(void *ctx, int32_t partition, int64_t user_id, const void *rec, size_t len) {
    dr_withdraw_scan_t *s = ctx;
    if (atomic_load_explicit(&s->cancel, memory_order_relaxed)) return DR_ESTOPPED;
    s->users_read++;
    int64_t list[DR_LAST_LIST];
    size_t n;
    int32_t last_partition;
    if (dr_user_record_last_list(rec, len, &last_partition, list, &n) != 0) return 0;
    if (!dr_withdraw_list_may_hold(list, n, s->items, s->n_items, s->longer_than_head)) return 0;
    return dr_withdraw_found_append(&s->found, &s->n_found, &s->cap_found,
                                    (dr_withdraw_found_t){partition, user_id});
}

static void scan(dr_withdraw_scan_t *s) {
    int err = 0;
    for (int p = 0; !err && p < DR_INGEST_MAX_PARTITIONS; p++)
        if (s->scanned[p]) err = dr_state_for_each_partition_user(s->state, p, scan_user, s);
    s->err = err;
}

static void scan_work(uv_work_t *req) {
    dr_withdraw_scan_t *s = req->data;
    scan(s);
    pthread_mutex_lock(&s->lock);
    s->worker_done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void deliver(dr_withdraw_scan_t *s) {
    s->delivered = true;
    dr_withdraw_result_t r = {.err = s->err, .items = s->items, .n_items = s->n_items, .scanned = s->scanned,
                              .found = s->found, .n_found = s->n_found, .users_read = s->users_read,
                              .seconds = dr_mono_s() - s->started};
    if (s->cb) s->cb(s->ctx, &r);
}

static void scan_after(uv_work_t *req, int status) {
    dr_withdraw_scan_t *s = req->data;
    (void)status; /* never cancelled through libuv */
    s->queued = false;
    if (!s->delivered) deliver(s);
}

static void wait_worker(dr_withdraw_scan_t *s) {
    pthread_mutex_lock(&s->lock);
    while (!s->worker_done) pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

int dr_withdraw_scan_new(dr_withdraw_scan_t **out, uv_loop_t *loop, dr_state_t *state) {
    dr_withdraw_scan_t *s = calloc(1, sizeof(*s));
    if (!s) return DR_ENOMEM;
    s->loop = loop;
    s->state = state;
    s->req.data = s;
    s->worker_done = true;
    atomic_init(&s->cancel, false);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    *out = s;
    return 0;
}

/* The next scan's parameters, with the buffers of the last one. */
static int prepare(dr_withdraw_scan_t *s, const int64_t *items, size_t n_items, const bool *partitions,
                   bool longer_than_head, dr_withdraw_cb cb, void *ctx) {
    if (n_items > s->cap_items) {
        int64_t *v = realloc(s->items, n_items * sizeof(*v));
        if (!v) return DR_ENOMEM;
        s->items = v;
        s->cap_items = n_items;
    }
    memcpy(s->items, items, n_items * sizeof(*items));
    s->n_items = dr_withdraw_sort_items(s->items, n_items);
    memcpy(s->scanned, partitions, sizeof(s->scanned));
    s->longer_than_head = longer_than_head;
    s->cb = cb;
    s->ctx = ctx;
    s->n_found = 0;
    s->users_read = 0;
    s->err = 0;
    s->delivered = false;
    atomic_store(&s->cancel, false);
    s->started = dr_mono_s();
    return 0;
}

int dr_withdraw_scan_start(dr_withdraw_scan_t *s, const int64_t *items, size_t n_items, const bool *partitions,
                           bool longer_than_head, dr_withdraw_cb cb, void *ctx) {
    if (s->queued) return DR_EAGAIN;
    int err = prepare(s, items, n_items, partitions, longer_than_head, cb, ctx);
    if (err) return err;
    s->worker_done = false;
    s->queued = true;
    if (uv_queue_work(s->loop, &s->req, scan_work, scan_after) != 0) {
        s->queued = false;
        s->worker_done = true;
        return DR_EIO;
    }
    return 0;
}

bool dr_withdraw_scan_busy(const dr_withdraw_scan_t *s) { return s->queued && !s->delivered; }

void dr_withdraw_scan_finish(dr_withdraw_scan_t *s) {
    if (!s->queued || s->delivered) return;
    wait_worker(s);
    deliver(s);
}

int dr_withdraw_scan_run(dr_withdraw_scan_t *s, const int64_t *items, size_t n_items, const bool *partitions,
                         bool longer_than_head, dr_withdraw_cb cb, void *ctx) {
    if (dr_withdraw_scan_busy(s)) return DR_EAGAIN;
    int err = prepare(s, items, n_items, partitions, longer_than_head, cb, ctx);
    if (err) return err;
    scan(s);
    deliver(s);
    return 0;
}

void dr_withdraw_scan_free(dr_withdraw_scan_t *s) {
    if (!s) return;
    if (s->queued) { /* a loop left before the scan's end: stop the worker */
        atomic_store(&s->cancel, true);
        wait_worker(s);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->items);
    free(s->found);
    free(s);
}

/* ---- the ledger ------------------------------------------------------------ */

#define LEDGER_VERSION 1

int dr_withdraw_ledger_add(dr_withdraw_ledger_t *l, int64_t item_id, int64_t now_ms, int n_partitions) {
    if (l->n_recent == l->cap_recent) {
        size_t cap = l->cap_recent ? 2 * l->cap_recent : 64;
        dr_withdrawal_t *v = realloc(l->recent, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        l->recent = v;
        l->cap_recent = cap;
    }
    l->recent[l->n_recent++] = (dr_withdrawal_t){item_id, now_ms};
    if (n_partitions < 0 || n_partitions > DR_INGEST_MAX_PARTITIONS) n_partitions = DR_INGEST_MAX_PARTITIONS;
    memset(l->unchecked, 1, (size_t)n_partitions);
    return 0;
}

size_t dr_withdraw_ledger_forget(dr_withdraw_ledger_t *l, int64_t before_ms) {
    size_t k = 0;
    while (k < l->n_recent && l->recent[k].at_ms < before_ms) k++;
    if (k > 0) memmove(l->recent, l->recent + k, (l->n_recent - k) * sizeof(*l->recent));
    l->n_recent -= k;
    return k;
}

size_t dr_withdraw_ledger_keep_newest(dr_withdraw_ledger_t *l, size_t max) {
    if (l->n_recent <= max) return 0;
    size_t k = l->n_recent - max;
    memmove(l->recent, l->recent + k, max * sizeof(*l->recent));
    l->n_recent = max;
    return k;
}

/* version (1 byte), the unchecked partitions as a bitmap, the count of
 * recent withdrawals (4 bytes), each as item id and time (8 bytes each) */
int dr_withdraw_ledger_encode(const dr_withdraw_ledger_t *l, uint8_t **out, size_t *len) {
    size_t cap = 1 + DR_INGEST_MAX_PARTITIONS / 8 + 4 + l->n_recent * 16;
    dr_writer_t w = {malloc(cap), 0, cap, true};
    if (!w.p) return DR_ENOMEM;
    dr_put_u8(&w, LEDGER_VERSION);
    uint8_t bits[DR_INGEST_MAX_PARTITIONS / 8] = {0};
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++)
        if (l->unchecked[i]) bits[i / 8] |= (uint8_t)(1u << (i % 8));
    dr_put_bytes(&w, bits, sizeof(bits));
    dr_put_u32(&w, (uint32_t)l->n_recent);
    for (size_t k = 0; k < l->n_recent; k++) {
        dr_put_i64(&w, l->recent[k].item_id);
        dr_put_i64(&w, l->recent[k].at_ms);
    }
    *out = w.p;
    *len = w.len;
    return 0;
}

int dr_withdraw_ledger_decode(dr_withdraw_ledger_t *l, const uint8_t *val, size_t len) {
    dr_reader_t r = {val, len, 0, true};
    uint8_t bits[DR_INGEST_MAX_PARTITIONS / 8];
    bool ok = dr_get_u8(&r) == LEDGER_VERSION;
    dr_get_bytes(&r, bits, sizeof(bits));
    uint32_t count = dr_get_u32(&r);
    if (!ok || !r.ok || (len - r.pos) / 16 != count || (len - r.pos) % 16 != 0) return DR_ECORRUPT;
    dr_withdrawal_t *recent = NULL;
    if (count > 0 && !(recent = malloc(count * sizeof(*recent)))) return DR_ENOMEM;
    for (uint32_t k = 0; k < count; k++) {
        recent[k].item_id = dr_get_i64(&r);
        recent[k].at_ms = dr_get_i64(&r);
    }
    free(l->recent);
    l->recent = recent;
    l->n_recent = l->cap_recent = count;
    for (size_t i = 0; i < DR_INGEST_MAX_PARTITIONS; i++) l->unchecked[i] = (bits[i / 8] >> (i % 8)) & 1;
    return 0;
}

void dr_withdraw_ledger_free(dr_withdraw_ledger_t *l) {
    free(l->recent);
    memset(l, 0, sizeof(*l));
}
