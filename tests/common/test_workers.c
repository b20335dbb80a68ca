/* test_workers.c - claims of the fork-join pool (common/dr_workers.h):
 * every part of every call runs exactly once, on as many threads as the
 * call has parts (at most the pool's), and the caller goes on only once
 * all have returned; a NULL pool runs everything on the caller. Many
 * short calls in a row are the emitter's pattern: a thread that wakes
 * late must neither miss its part nor run one twice. */
#include "dr_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "dr_workers.h"

enum { MAX_PARTS = 8, CALLS = 20000 };

typedef struct tally {
    atomic_int runs[MAX_PARTS];
    atomic_int in_flight;   /* parts running now */
    int seen_parts;         /* the parts argument every part saw */
    atomic_int wrong_parts; /* parts that saw another */
    pthread_t caller;
    atomic_int part0_elsewhere; /* part 0 not on the caller */
} tally_t;

static void count_part(void *ctx, int part, int parts) {
    tally_t *t = ctx;
    atomic_fetch_add(&t->in_flight, 1);
    if (parts != t->seen_parts) atomic_fetch_add(&t->wrong_parts, 1);
    if (part == 0 && !pthread_equal(pthread_self(), t->caller)) atomic_fetch_add(&t->part0_elsewhere, 1);
    atomic_fetch_add(&t->runs[part], 1);
    atomic_fetch_sub(&t->in_flight, 1);
}

static void run_calls(dr_workers_t *w, int parts, int calls, int expect_parts) {
    tally_t t;
    memset(&t, 0, sizeof(t));
    t.seen_parts = expect_parts;
    t.caller = pthread_self();
    for (int c = 0; c < calls; c++) {
        dr_workers_run(w, count_part, &t, parts);
        /* every part returned before the call did */
        assert_int_equal(atomic_load(&t.in_flight), 0);
    }
    for (int p = 0; p < MAX_PARTS; p++) assert_int_equal(atomic_load(&t.runs[p]), p < expect_parts ? calls : 0);
    assert_int_equal(atomic_load(&t.wrong_parts), 0);
    assert_int_equal(atomic_load(&t.part0_elsewhere), 0);
}

static void test_every_part_once_per_call(void **state) {
    (void)state;
    dr_workers_t *w;
    assert_int_equal(dr_workers_new(&w, 4), 0);
    assert_non_null(w);
    assert_int_equal(dr_workers_threads(w), 4);
    run_calls(w, 4, CALLS, 4);
    /* fewer parts than threads: the others sit the call out */
    run_calls(w, 2, CALLS, 2);
    /* alternating sizes: a thread that sat one call out runs the next */
    for (int c = 0; c < 200; c++) {
        run_calls(w, 3, 1, 3);
        run_calls(w, 1, 1, 1);
    }
    /* more parts than threads: capped */
    run_calls(w, MAX_PARTS, 100, 4);
    dr_workers_free(w);
}

static void test_one_thread_is_the_caller(void **state) {
    (void)state;
    dr_workers_t *w = (dr_workers_t *)1;
    assert_int_equal(dr_workers_new(&w, 1), 0);
    assert_null(w);
    assert_int_equal(dr_workers_threads(NULL), 1);
    run_calls(NULL, 4, 10, 1);
    run_calls(NULL, 0, 10, 0); /* no parts: nothing runs */
    dr_workers_free(NULL);
}

static void test_freed_while_idle(void **state) {
    (void)state;
    for (int k = 0; k < 50; k++) { /* threads still starting when freed */
        dr_workers_t *w;
        assert_int_equal(dr_workers_new(&w, 3), 0);
        if (k % 2) run_calls(w, 3, 1, 3);
        dr_workers_free(w);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_part_once_per_call),
        cmocka_unit_test(test_one_thread_is_the_caller),
        cmocka_unit_test(test_freed_while_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
