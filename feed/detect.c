/* detect.c - how well driftrec's detectors saw the feed world's drifts (see
 * dr_feed.h): fed every applied event with what the pipeline observed, it
 * counts each switched user's labelled events (impressions) from the switch
 * to the first cut, false alarms of users that never drift, and the events
 * from the population shift to the first global cut. Runs on the pipeline's
 * thread only. */
#include "dr_feed.h"

#include <math.h>
#include <stdlib.h>

#include "dr_err.h"

typedef struct user_det {
    uint32_t pre;      /* labelled events before the switch */
    uint32_t since;    /* labelled events at or after it */
    int32_t delay;     /* `since` at the first cut for the worse after the switch; -1: none */
    uint64_t pre_bits; /* outcomes of the last 64 impressions before the switch, newest in
                          bit 0: an impression pushes a 0, a click (which follows its
                          impression before the next one) sets it */
    uint8_t arm;       /* 0 drift, 1 control: as the pipeline said */
    bool seen;
} user_det_t;

struct dr_feed_detect {
    const dr_feed_world_t *w;
    int64_t shift_ms;
    user_det_t *u;                /* [users + 1] */
    uint64_t stable_labelled, cuts, improving_cuts;
    uint64_t after_shift;         /* labelled events of all users from the shift on */
    int64_t shift_detected_after;
    uint64_t global_cuts, global_cuts_before;
};

int dr_feed_detect_new(dr_feed_detect_t **out, const dr_feed_world_t *w) {
    *out = NULL;
    dr_feed_detect_t *d = calloc(1, sizeof(*d));
    if (!d) return DR_ENOMEM;
    uint64_t users = dr_feed_world_conf(w)->users;
    d->u = calloc(users + 1, sizeof(*d->u));
    if (!d->u) {
        free(d);
        return DR_ENOMEM;
    }
    for (uint64_t i = 0; i <= users; i++) d->u[i].delay = -1;
    d->w = w;
    d->shift_detected_after = -1;
    dr_feed_world_shift(w, NULL, &d->shift_ms, NULL);
    *out = d;
    return 0;
}

void dr_feed_detect_free(dr_feed_detect_t *d) {
    if (!d) return;
    free(d->u);
    free(d);
}

/* The global detector against the population shift. */
static void observe_global(dr_feed_detect_t *d, const dr_event_t *ev, const dr_feed_obs_t *obs,
                           bool labelled) {
    bool after = ev->timestamp_ms >= d->shift_ms;
    d->after_shift += after && labelled;
    if (!obs->global_drift || obs->global_direction < 0) return;
    d->global_cuts++;
    d->global_cuts_before += !after;
    if (after && d->shift_detected_after < 0) d->shift_detected_after = (int64_t)d->after_shift;
}

void dr_feed_detect_observe(dr_feed_detect_t *d, const dr_event_t *ev, const dr_feed_obs_t *obs) {
    if (ev->user_id < 1 || (uint64_t)ev->user_id > dr_feed_world_conf(d->w)->users) return;
    bool labelled = ev->type == DR_EV_IMPRESSION; /* every impression gets an outcome */
    observe_global(d, ev, obs, labelled);
    dr_feed_truth_t t;
    dr_feed_world_truth(d->w, ev->user_id, &t);
    if (t.popular) return; /* shown the simulator's feed, not driftrec's lists */
    user_det_t *u = &d->u[ev->user_id];
    u->seen = true;
    u->arm = obs->drift_arm ? 0 : 1;
    bool worse = obs->drift && obs->drift_direction >= 0;
    if (t.kind == DR_FEED_STABLE && ev->timestamp_ms < d->shift_ms) {
        d->stable_labelled += labelled;
        d->cuts += worse;
        d->improving_cuts += obs->drift && obs->drift_direction < 0;
    } else if (t.kind == DR_FEED_ABRUPT) {
        if (ev->timestamp_ms < t.from_ms) {
            u->pre += labelled;
            if (labelled) u->pre_bits <<= 1;
            else if (ev->type == DR_EV_CLICK) u->pre_bits |= 1;
            return;
        }
        u->since += labelled;
        if (worse && u->delay < 0) u->delay = (int32_t)u->since;
    }
}

int32_t dr_feed_detect_delay(const dr_feed_detect_t *d, int64_t user_id) {
    if (user_id < 1 || (uint64_t)user_id > dr_feed_world_conf(d->w)->users) return -1;
    return d->u[user_id].delay;
}

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank quantile of sorted v (NAN when empty). */
static double quantile(const int32_t *v, size_t n, double q) {
    if (n == 0) return NAN;
    size_t i = (size_t)ceil(q * (double)n);
    return v[i > 0 ? i - 1 : 0];
}

/* Median and p90 of the delays (sorted in place). */
static void delays(int32_t *v, size_t n, double *median, double *p90) {
    qsort(v, n, sizeof(*v), cmp_int32);
    *median = quantile(v, n, 0.5);
    *p90 = quantile(v, n, 0.9);
}

int dr_feed_detect_summary(const dr_feed_detect_t *d, dr_feed_detect_summary_t *s) {
    uint64_t users = dr_feed_world_conf(d->w)->users;
    *s = (dr_feed_detect_summary_t){.stable_labelled = d->stable_labelled, .cuts = d->cuts,
                                    .improving_cuts = d->improving_cuts,
                                    .shift_detected_after = d->shift_detected_after,
                                    .global_cuts = d->global_cuts,
                                    .global_cuts_before_shift = d->global_cuts_before};
    /* [0] drift arm, [1] control, [2] both, [3] served users of both */
    int32_t *v[4] = {malloc(users * sizeof(int32_t)), malloc(users * sizeof(int32_t)),
                     malloc(users * sizeof(int32_t)), malloc(users * sizeof(int32_t))};
    size_t n[4] = {0, 0, 0, 0};
    int err = v[0] && v[1] && v[2] && v[3] ? 0 : DR_ENOMEM;
    for (uint64_t id = 1; id <= users && !err; id++) {
        const user_det_t *u = &d->u[id];
        dr_feed_truth_t t;
        dr_feed_world_truth(d->w, (int64_t)id, &t);
        if (t.kind != DR_FEED_ABRUPT || t.popular || !u->seen) continue;
        s->switch_users[u->arm]++;
        if (u->pre < DR_FEED_ELIGIBLE_PRE) continue;
        s->eligible[u->arm]++;
        bool served = __builtin_popcountll(u->pre_bits & ((1ULL << 50) - 1)) >= DR_FEED_SERVED_CTR * 50;
        s->served[u->arm] += served;
        if (u->delay < 1 || u->delay > DR_FEED_DETECT_WITHIN) continue;
        s->detected[u->arm]++;
        s->served_detected[u->arm] += served;
        v[u->arm][n[u->arm]++] = u->delay;
        v[2][n[2]++] = u->delay;
        if (served) v[3][n[3]++] = u->delay;
    }
    s->delay_median = s->delay_p90 = s->served_delay_median = NAN;
    s->arm_delay_median[0] = s->arm_delay_p90[0] = s->arm_delay_median[1] = s->arm_delay_p90[1] = NAN;
    if (!err) {
        delays(v[0], n[0], &s->arm_delay_median[0], &s->arm_delay_p90[0]);
        delays(v[1], n[1], &s->arm_delay_median[1], &s->arm_delay_p90[1]);
        delays(v[2], n[2], &s->delay_median, &s->delay_p90);
        double p90;
        delays(v[3], n[3], &s->served_delay_median, &p90);
    }
    for (int i = 0; i < 4; i++) free(v[i]);
    return err;
}
