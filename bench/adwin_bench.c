/* adwin_bench.c - nanoseconds per ADWIN update, amortised (issue 18,
 * benchmark 5; target at most 100 ns), at MOA's settings and at the per-user
 * settings driftrec ships (learner/model.c), on a Bernoulli stream whose
 * mean changes every 100,000 items (so the detector cuts, as in use), and
 * at the per-user settings on streams as long as a user's (300 events,
 * the mean changing halfway).
 *
 *   adwin_bench [N]          (default 10,000,000 updates per setting)
 * Built and run by bench/adwin.sh. Times are the thread's CPU time: on a
 * machine shared with other work, wall time also counts the time others
 * hold the core. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dr_adwin.h"
#include "dr_bytes.h"

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* What a user's detector sees: a fresh one every `len` updates. */
static void run_short(const char *name, const dr_adwin_conf_t *conf, long n, long len) {
    uint64_t rng = 7;
    double *x = malloc((size_t)n * sizeof(double));
    for (long i = 0; i < n; i++) x[i] = dr_rand01(&rng) < ((i % len) < len / 2 ? 0.6 : 0.3) ? 1.0 : 0.0;
    long cuts = 0;
    double t0 = cpu_s();
    for (long i = 0; i < n; i += len) {
        dr_adwin_t a;
        if (dr_adwin_init(&a, conf) != 0) exit(2);
        for (long j = i; j < i + len && j < n; j++) cuts += dr_adwin_update(&a, x[j]) == 1;
        dr_adwin_free_buckets(&a);
    }
    double dt = cpu_s() - t0;
    printf("%-34s %6.1f ns/update  (%ld updates in streams of %ld, %ld cuts)\n", name,
           dt / (double)n * 1e9, n, len, cuts);
    free(x);
}

static void run(const char *name, const dr_adwin_conf_t *conf, long n) {
    dr_adwin_t a;
    if (dr_adwin_init(&a, conf) != 0) {
        fprintf(stderr, "adwin_bench: bad settings\n");
        exit(2);
    }
    uint64_t rng = 7;
    double *x = malloc((size_t)n * sizeof(double)); /* drawn beforehand: only the updates are timed */
    for (long i = 0; i < n; i++) x[i] = dr_rand01(&rng) < ((i / 100000) % 2 ? 0.3 : 0.6) ? 1.0 : 0.0;
    long cuts = 0;
    double t0 = cpu_s();
    for (long i = 0; i < n; i++) cuts += dr_adwin_update(&a, x[i]) == 1;
    double dt = cpu_s() - t0;
    printf("%-34s %6.1f ns/update  (%ld updates, %ld cuts, window at the end %.0f)\n", name,
           dt / (double)n * 1e9, n, cuts, (double)dr_adwin_width(&a));
    dr_adwin_free_buckets(&a);
    free(x);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    dr_adwin_conf_t moa;
    dr_adwin_conf_default(&moa);
    run("MOA (delta 0.002, clock 32)", &moa, n);
    dr_adwin_conf_t user = moa; /* learner/model.c's per-user detector */
    user.delta = 0.15;
    user.clock = 1;
    user.min_window = 10;
    user.min_sub_window = 5;
    run("per user (delta 0.15, clock 1)", &user, n);
    run_short("per user, 300 events per user", &user, n, 300);
    return 0;
}
