/* withdraw_bench.c - what a withdrawal's scan of the stored users costs the
 * loop thread (bench/withdraw.sh): a store of N users (d=32, a 50-item
 * last list each, 1% holding the withdrawn item), scanned once on the loop
 * thread (as the pipeline did before the scan moved to the thread pool)
 * and once on the pool, while a 1 ms timer ticks: the longest gap between
 * ticks is how long events and lists would wait.
 *
 * ITEMS withdrawn at once (a moderation sweep): the one the lists hold and
 * ITEMS - 1 that none does.
 *
 *   withdraw_bench DB_DIR USERS [ROUNDS [ITEMS]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "dr_err.h"
#include "dr_learner.h"
#include "dr_log.h"
#include "dr_state.h"
#include "dr_withdraw.h"

#define DIM 32
#define PARTS 8
#define WITHDRAWN 7

typedef struct run {
    dr_withdraw_scan_t *scan;
    bool in_place;
    bool done;
    const int64_t *items;
    size_t n_items;
    double last_tick, max_gap;
    uint64_t ticks;
    int after_done;
    size_t found;
    uint64_t read;
    double seconds;
} run_t;

static const bool all_partitions[DR_INGEST_MAX_PARTITIONS] = {true, true, true, true, true, true, true, true};

static void on_scanned(void *ctx, const dr_withdraw_result_t *r) {
    run_t *run = ctx;
    run->done = true;
    run->found = r->n_found;
    run->read = r->users_read;
    run->seconds = r->seconds;
}

static void on_tick(uv_timer_t *t) {
    run_t *run = t->data;
    double now = dr_mono_s();
    if (run->ticks > 0 && now - run->last_tick > run->max_gap) run->max_gap = now - run->last_tick;
    run->last_tick = now;
    run->ticks++;
    if (run->ticks == 5) { /* the withdrawal arrives */
        int err = run->in_place
                      ? dr_withdraw_scan_run(run->scan, run->items, run->n_items, all_partitions, false, on_scanned, run)
                      : dr_withdraw_scan_start(run->scan, run->items, run->n_items, all_partitions, false, on_scanned, run);
        if (err) {
            fprintf(stderr, "scan: %s\n", dr_strerror(err));
            exit(1);
        }
    }
    if (run->done && ++run->after_done > 5) uv_timer_stop(t); /* a few ticks after: the gap it left */
}

static int build(dr_state_t *st, long users) {
    char err[512];
    dr_state_batch_t *b = dr_state_batch_new();
    size_t bytes = 0;
    for (long id = 1; id <= users; id++) {
        dr_user_t *u = dr_user_new(id, DIM);
        u->last_source.partition = (int32_t)(id % PARTS);
        u->last_list_len = 50;
        for (unsigned i = 0; i < 50; i++) u->last_list[i] = 1000 + (id * 7 + i) % 100000;
        if (id % 100 == 0) u->last_list[id % 50] = WITHDRAWN;
        uint8_t *rec;
        size_t len;
        if (dr_user_encode(u, DIM, &rec, &len) != 0) return 1;
        bytes += len;
        dr_state_batch_put_user(b, (int32_t)(id % PARTS), id, rec, len);
        free(rec);
        dr_user_free(u);
        if (id % 20000 == 0 || id == users) {
            if (dr_state_write(st, b, err, sizeof(err)) != 0) {
                fprintf(stderr, "write: %s\n", err);
                return 1;
            }
            dr_state_batch_clear(b, (size_t)64 << 20);
        }
    }
    dr_state_batch_free(b);
    printf("store: %ld users, %.0f bytes a record\n", users, (double)bytes / (double)users);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: withdraw_bench DB_DIR USERS [ROUNDS]\n");
        return 2;
    }
    long users = atol(argv[2]);
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    size_t n_items = argc > 4 ? (size_t)atol(argv[4]) : 1;
    if (n_items == 0) n_items = 1;
    int64_t *items = malloc(n_items * sizeof(*items));
    if (!items) return 1;
    items[0] = WITHDRAWN;
    for (size_t i = 1; i < n_items; i++) items[i] = 1000000000 + (int64_t)(i * 7919 % n_items) * 3; /* unsorted */
    dr_state_conf_t sc;
    dr_state_conf_default(&sc);
    sc.path = argv[1];
    dr_state_t *st;
    char err[512];
    if (dr_state_open(&st, &sc, err, sizeof(err)) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    if (build(st, users)) return 1;
    for (int round = 0; round < rounds; round++) {
        for (int mode = 0; mode < 2; mode++) { /* alternated: the VM is noisy */
            uv_loop_t loop;
            uv_loop_init(&loop);
            run_t run = {.in_place = mode == 0, .items = items, .n_items = n_items};
            dr_withdraw_scan_new(&run.scan, &loop, st);
            uv_timer_t timer;
            uv_timer_init(&loop, &timer);
            timer.data = &run;
            uv_timer_start(&timer, on_tick, 1, 1);
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_close((uv_handle_t *)&timer, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
            dr_withdraw_scan_free(run.scan);
            uv_loop_close(&loop);
            printf("items %zu round %d %-13s users read %8llu found %6zu scan %7.3f s  loop's longest gap %8.1f ms  ticks %llu\n",
                   n_items, round + 1, run.in_place ? "loop thread:" : "thread pool:", (unsigned long long)run.read, run.found,
                   run.seconds, run.max_gap * 1e3, (unsigned long long)run.ticks);
        }
    }
    dr_state_close(st);
    free(items);
    return 0;
}
