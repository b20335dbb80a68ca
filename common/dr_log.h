/* dr_log.h - structured logging: one logfmt line per message on stderr,
 * with a level filter and rate limiting for messages that can repeat.
 *
 *   ts=2026-11-22T20:47:40.123Z level=warn mod=ingest msg="..." key=value
 *
 * Never log secrets: configuration values are logged only through
 * dr_config's redacting dump. */
#ifndef DR_LOG_H
#define DR_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum dr_log_level {
    DR_LOG_DEBUG = 0,
    DR_LOG_INFO,
    DR_LOG_WARN,
    DR_LOG_ERROR,
    DR_LOG_OFF
} dr_log_level_t;

void dr_log_set_level(dr_log_level_t level);
dr_log_level_t dr_log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns -1 when unknown. */
int dr_log_level_parse(const char *name);

/* Logs `fmt` (printf-style) at level for module `mod`. Text before an
 * optional " | " becomes the quoted msg= field; what follows it is appended
 * as fields, e.g. dr_log(DR_LOG_WARN, "ingest", "slow commit | ms=%d", ms). */
void dr_log(dr_log_level_t level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A limiter for one repeating message: at most `burst` lines per
 * `interval_ms`; the next line that passes reports how many were dropped. */
typedef struct dr_log_limit {
    uint32_t interval_ms;
    uint32_t burst;
    int64_t window_start_ms;
    uint32_t in_window;
    uint64_t suppressed;
} dr_log_limit_t;
#define DR_LOG_LIMIT_INIT(interval_ms, burst) {(interval_ms), (burst), 0, 0, 0}

/* True when the caller may log now; *suppressed gets the count skipped
 * since the last line that passed. */
bool dr_log_allow(dr_log_limit_t *lim, uint64_t *suppressed);

/* Wall clock and monotonic clock in milliseconds. */
int64_t dr_now_ms(void);
int64_t dr_mono_ms(void);
double dr_mono_s(void);

#endif /* DR_LOG_H */
