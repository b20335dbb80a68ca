/* encode_bench.c - what putting a changed user's record into a commit's
 * batch costs per user: encoded into a buffer of its own that the batch
 * copies (dr_user_encode, dr_state_batch_put_user) against encoded in place
 * (dr_user_encoded_max, dr_state_batch_user_room, dr_user_encode_into,
 * dr_state_batch_user_done), best of 15 passes over 20,000 users of 40
 * events each. Built and run by bench/encode.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "dr_learner.h"
#include "dr_state.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
    dr_learner_conf_t c; dr_learner_conf_default(&c);
    dr_model_t *m; char err[256];
    if (dr_model_new(&m, &c, err, sizeof err)) { puts(err); return 1; }
    enum { U = 20000 };
    dr_user_t **us = malloc(U * sizeof *us);
    dr_apply_result_t r;
    for (int i = 0; i < U; i++) {
        us[i] = dr_user_new_conf(i, &c);
        for (int k = 0; k < 40; k++) {
            dr_event_t e = {i, 1000 + (i * 7 + k * 13) % 5000, k % 3 ? DR_EV_IMPRESSION : DR_EV_CLICK, 0, 1000 * (int64_t)k};
            dr_learner_apply(m, us[i], &e, (uint64_t)k, &r);
        }
    }
    dr_state_batch_t *b = dr_state_batch_new();
    double best_old = 1e9, best_new = 1e9;
    for (int rep = 0; rep < 15; rep++) {
        dr_state_batch_clear(b, 1u << 30);
        double t0 = now();
        for (int i = 0; i < U; i++) {
            uint8_t *rec; size_t len;
            dr_user_encode(us[i], c.dim, &rec, &len);
            dr_state_batch_put_user(b, 0, i, rec, len);
            free(rec);
        }
        double t1 = now();
        dr_state_batch_clear(b, 1u << 30);
        double t2 = now();
        for (int i = 0; i < U; i++) {
            size_t max = dr_user_encoded_max(us[i], c.dim), len;
            uint8_t *room = dr_state_batch_user_room(b, 0, i, max);
            dr_user_encode_into(us[i], c.dim, room, max, &len);
            dr_state_batch_user_done(b, len);
        }
        double t3 = now();
        if (t1 - t0 < best_old) best_old = t1 - t0;
        if (t3 - t2 < best_new) best_new = t3 - t2;
    }
    printf("per user: malloc'd encode + copy %.0f ns, in place %.0f ns (%.2fx)\n", best_old / U * 1e9, best_new / U * 1e9, best_new / best_old);
    return 0;
}
