/* bench_env.h - the settings the benchmark programs read from their
 * environment (the scripts in bench/ pass them through). */
#ifndef BENCH_ENV_H
#define BENCH_ENV_H

#include <stdlib.h>

/* The integer in the environment variable name, or def where it is unset
 * or empty. */
static inline int env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

#endif /* BENCH_ENV_H */
