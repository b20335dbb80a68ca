/* standby.c - standby replicas: a thread that keeps the store's copy of every
 * partition its instance does not own up to that partition's changelog, so
 * that taking the partition over reads only the last few commits (the
 * contract is in dr_handoff.h). */
#include "dr_handoff.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dr_err.h"
#include "dr_ingest.h"
#include "dr_log.h"
#include "handoff_internal.h"

/* A failing partition is logged once per this many seconds. */
#define STANDBY_WARN_EVERY_S 60
/* A partition read whole and kept as it was (the store is ahead of its
 * changelog: this instance lost it and applied events the new owner has not
 * reached yet) is read whole again only after this many rounds, and at
 * least this many seconds: until the owner's marker passes the store, each
 * read would be the whole partition for nothing. */
#define STANDBY_FULL_READ_EVERY_ROUNDS 30
#define STANDBY_FULL_READ_EVERY_S 30

struct dr_standby {
    dr_state_t *st;            /* borrowed; writes serialised by dr_state_write */
    rd_kafka_t *producer;      /* borrowed: the events topic's metadata */
    dr_changelog_t *changelog; /* its own reader */
    char *events_topic;
    int interval_ms, timeout_ms;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;      /* guards everything below */
    pthread_cond_t cond;       /* busy changed, or stop/begin set */
    bool begun, stop;
    int32_t busy;              /* the partition being read, -1: none */
    atomic_bool cancel;        /* cuts the read of `busy` short; cleared before the next */
    bool owned[DR_INGEST_MAX_PARTITIONS];
    bool changed[DR_INGEST_MAX_PARTITIONS]; /* written since released */
    int64_t behind[DR_INGEST_MAX_PARTITIONS];
    int64_t full_read_after_ms[DR_INGEST_MAX_PARTITIONS]; /* see STANDBY_FULL_READ_EVERY_S */
    int32_t n_partitions;      /* of the events topic, at the last round */
    int64_t last_warn_s;
    dr_standby_stats_t stats;
};

/* One read of a partition the instance does not own; called with the lock
 * free and s->busy == part. */
static void catch_up(dr_standby_t *s, int32_t part) {
    int64_t local = -1, pos = -1, epoch = 0;
    if (dr_state_get_offset(s->st, s->events_topic, part, &local) != 0) local = -1;
    dr_changelog_stored_position(s->changelog, s->st, part, &pos, &epoch);
    dr_restore_t r;
    char err[512] = "";
    int rc = dr_changelog_restore(s->changelog, s->st, s->events_topic, part, local, pos, epoch,
                                  s->timeout_ms, &r, err, sizeof(err));
    pthread_mutex_lock(&s->lock);
    s->stats.records += r.records;
    s->stats.fenced += r.fenced;
    s->stats.seconds += r.seconds;
    if (r.users > 0) s->changed[part] = true; /* in part, even when cut short */
    if (rc == 0) {
        s->stats.users += r.users;
        if (!r.incremental && !r.restored && r.records > 0) {
            int64_t wait_ms = (int64_t)s->interval_ms * STANDBY_FULL_READ_EVERY_ROUNDS;
            if (wait_ms < STANDBY_FULL_READ_EVERY_S * 1000) wait_ms = STANDBY_FULL_READ_EVERY_S * 1000;
            s->full_read_after_ms[part] = dr_mono_ms() + wait_ms;
        }
        s->behind[part] = r.marker_pos >= 0 ? r.log_end - r.marker_pos : r.log_end - r.log_start;
    } else if (rc == DR_ESTOPPED && atomic_load(&s->cancel)) {
        s->stats.cancelled++;
    } else {
        s->stats.failures++;
        int64_t now = dr_mono_ms() / 1000;
        if (now - s->last_warn_s >= STANDBY_WARN_EVERY_S) {
            s->last_warn_s = now;
            dr_log(DR_LOG_WARN, "standby", "cannot keep a partition warm; trying again | topic=%s partition=%d err=%s",
                   dr_changelog_topic(s->changelog), (int)part, err[0] ? err : dr_strerror(rc));
        }
    }
    pthread_mutex_unlock(&s->lock);
    dr_restore_clear(&r);
}

/* Waits for the first round (dr_standby_begin) or the next one; false when
 * stopped. Lock held. */
static bool wait_round(dr_standby_t *s, bool first) {
    if (first) {
        while (!s->stop && !s->begun) pthread_cond_wait(&s->cond, &s->lock);
        return !s->stop;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ns = until.tv_nsec + (int64_t)s->interval_ms * 1000000;
    until.tv_sec += ns / 1000000000;
    until.tv_nsec = ns % 1000000000;
    while (!s->stop)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT) break;
    return !s->stop;
}

static void *run(void *arg) {
    dr_standby_t *s = arg;
    pthread_mutex_lock(&s->lock);
    bool first = true;
    while (wait_round(s, first)) {
        first = false;
        pthread_mutex_unlock(&s->lock);
        int n = -1;
        if (dr_ingest_topic_partitions(s->producer, s->events_topic, s->timeout_ms, &n) != 0) n = -1;
        pthread_mutex_lock(&s->lock);
        if (n > DR_INGEST_MAX_PARTITIONS) n = DR_INGEST_MAX_PARTITIONS;
        if (n >= 0) s->n_partitions = n;
        for (int32_t part = 0; part < s->n_partitions && !s->stop; part++) {
            if (s->owned[part] || dr_mono_ms() < s->full_read_after_ms[part]) continue;
            atomic_store(&s->cancel, false); /* a take of the partition before */
            s->busy = part;
            pthread_mutex_unlock(&s->lock);
            catch_up(s, part);
            pthread_mutex_lock(&s->lock);
            s->busy = -1;
            pthread_cond_broadcast(&s->cond);
        }
        s->stats.rounds++;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int dr_standby_new(dr_standby_t **out, dr_state_t *st, rd_kafka_t *producer,
                   const char *changelog_topic, const char *events_topic, int interval_ms,
                   int timeout_ms, const char *const *kafka_keys,
                   const char *const *kafka_values, int n_kafka, char *errstr, size_t n) {
    *out = NULL;
    dr_standby_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->events_topic = strdup(events_topic))) {
        free(s);
        snprintf(errstr, n, "out of memory");
        return DR_ENOMEM;
    }
    s->st = st;
    s->producer = producer;
    s->interval_ms = interval_ms > 0 ? interval_ms : 1000;
    s->timeout_ms = timeout_ms;
    s->busy = -1;
    s->last_warn_s = -STANDBY_WARN_EVERY_S;
    atomic_init(&s->cancel, false);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    int err = dr_changelog_new(&s->changelog, producer, changelog_topic, kafka_keys, kafka_values,
                               n_kafka, errstr, n);
    if (!err) {
        dr__changelog_set_cancel(s->changelog, &s->cancel);
        if (pthread_create(&s->thread, NULL, run, s) != 0) {
            snprintf(errstr, n, "cannot start the standby thread");
            err = DR_ENOMEM;
        } else {
            s->thread_started = true;
        }
    }
    if (err) {
        dr_standby_free(s);
        return err;
    }
    *out = s;
    return 0;
}

void dr_standby_begin(dr_standby_t *s) {
    pthread_mutex_lock(&s->lock);
    if (!s->begun) {
        s->begun = true;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

bool dr_standby_take(dr_standby_t *s, int32_t part) {
    if (part < 0 || part >= DR_INGEST_MAX_PARTITIONS) return false;
    pthread_mutex_lock(&s->lock);
    s->owned[part] = true;
    if (s->busy == part) {
        atomic_store(&s->cancel, true);
        while (s->busy == part) pthread_cond_wait(&s->cond, &s->lock);
    }
    bool changed = s->changed[part];
    s->changed[part] = false;
    s->behind[part] = 0;
    s->full_read_after_ms[part] = 0;
    pthread_mutex_unlock(&s->lock);
    return changed;
}

void dr_standby_release(dr_standby_t *s, int32_t part) {
    if (part < 0 || part >= DR_INGEST_MAX_PARTITIONS) return;
    pthread_mutex_lock(&s->lock);
    s->owned[part] = false;
    pthread_mutex_unlock(&s->lock);
}

void dr_standby_stats(dr_standby_t *s, dr_standby_stats_t *out) {
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    out->partitions = 0;
    out->behind = 0;
    for (int32_t part = 0; s->begun && part < s->n_partitions; part++) {
        if (s->owned[part]) continue;
        out->partitions++;
        out->behind += s->behind[part];
    }
    pthread_mutex_unlock(&s->lock);
}

void dr_standby_free(dr_standby_t *s) {
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        atomic_store(&s->cancel, true);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    dr_changelog_free(s->changelog);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->events_topic);
    free(s);
}
