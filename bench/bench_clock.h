/* bench_clock.h - the clock the benchmark programs time their work with:
 * this process's CPU seconds, steadier than the wall clock on a shared
 * machine for single-threaded work (OpenBLAS is set to one thread). */
#ifndef BENCH_CLOCK_H
#define BENCH_CLOCK_H

#include <time.h>

static inline double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif /* BENCH_CLOCK_H */
