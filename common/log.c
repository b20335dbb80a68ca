/* log.c - logfmt lines on stderr, level filter and rate limiting. */
#include "dr_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static dr_log_level_t current_level = DR_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void dr_log_set_level(dr_log_level_t level) { current_level = level; }
dr_log_level_t dr_log_get_level(void) { return current_level; }

int dr_log_level_parse(const char *name) {
    for (int i = 0; i <= DR_LOG_OFF; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

int64_t dr_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t dr_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double dr_mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void dr_log(dr_log_level_t level, const char *mod, const char *fmt, ...) {
    if (level < current_level || level >= DR_LOG_OFF) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* A message may carry " key=value" fields after its text: quote only the text. */
    char *fields = strstr(msg, " | ");
    if (fields) *fields = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\n') *p = '\'';
    int64_t now = dr_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "ts=%s.%03dZ level=%s mod=%s msg=\"%s\"%s%s\n", ts, (int)(now % 1000),
            level_names[level], mod, msg, fields ? " " : "", fields ? fields + 3 : "");
}

bool dr_log_allow(dr_log_limit_t *lim, uint64_t *suppressed) {
    int64_t now = dr_mono_ms();
    if (now - lim->window_start_ms >= (int64_t)lim->interval_ms) {
        lim->window_start_ms = now;
        lim->in_window = 0;
    }
    if (lim->in_window >= lim->burst) {
        lim->suppressed++;
        return false;
    }
    lim->in_window++;
    *suppressed = lim->suppressed;
    lim->suppressed = 0;
    return true;
}
