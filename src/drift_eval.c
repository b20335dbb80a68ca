/* drift_eval.c - scores drift handling against the synthetic ground truth
 * (see dr_drift_eval.h). Event counts are per user: "k events after the
 * switch" counts that user's events from the first one at or after its
 * switch time (k = 1). */
#include "dr_drift_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"

#define SMOOTH 5 /* trailing window for the recovery point */

typedef struct user_track {
    uint32_t since_switch;    /* 0: before the switch (or never) */
    int32_t first_delay;      /* k of the first detection after the switch, -1: none */
} user_track_t;

struct dr_drift_eval {
    const dr_synth_t *truth;
    uint64_t users;
    user_track_t *u;
    uint64_t hits[2][DR_DRIFT_HORIZON + 1], clicks[2][DR_DRIFT_HORIZON + 1];
    uint64_t pre_hits[2], pre_clicks[2];
    uint64_t stable_events, stable_alarms;
    double loss_sum[2];        /* switched users' loss: [0] before, [1] first 20 events after */
    uint64_t loss_n[2];
    uint64_t labelled_first10; /* switched users' labelled events among their first 10 after */
};

int dr_drift_eval_new(dr_drift_eval_t **out, const dr_synth_t *truth, uint64_t users) {
    dr_drift_eval_t *e = calloc(1, sizeof(*e));
    if (!e || !(e->u = calloc(users + 1, sizeof(*e->u)))) {
        free(e);
        return DR_ENOMEM;
    }
    e->truth = truth;
    e->users = users;
    for (uint64_t i = 0; i <= users; i++) e->u[i].first_delay = -1;
    *out = e;
    return 0;
}

void dr_drift_eval_free(dr_drift_eval_t *e) {
    if (!e) return;
    free(e->u);
    free(e);
}

_Static_assert(DR_DRIFT_HR_K <= DR_OBSERVED_RANK_MAX, "the pipeline ranks exactly only up to DR_OBSERVED_RANK_MAX");

/* A hit: the clicked item was in the head of the list the model would have
 * published just before the click (prequential, whatever the list cadence). */
static uint64_t in_top(const dr_observation_t *obs) {
    return obs->model_rank >= 1 && obs->model_rank <= DR_DRIFT_HR_K;
}

void dr_drift_eval_observe(void *ctx, const dr_event_t *ev, const dr_observation_t *obs) {
    dr_drift_eval_t *e = ctx;
    if (ev->user_id < 1 || (uint64_t)ev->user_id > e->users) return;
    user_track_t *t = &e->u[ev->user_id];
    int arm = obs->drift_arm ? 1 : 0;
    int64_t at;
    bool switches = dr_synth_user_switch(e->truth, ev->user_id, &at);
    if (!switches) {
        e->stable_events++;
        e->stable_alarms += obs->drift;
        return;
    }
    if (obs->loss >= 0 && (ev->timestamp_ms < at || t->since_switch < 20)) {
        int after = ev->timestamp_ms >= at;
        e->loss_sum[after] += obs->loss;
        e->loss_n[after]++;
    }
    if (ev->timestamp_ms < at) {
        /* the level to recover to: a settled user's, not one still cold */
        if (ev->type == DR_EV_CLICK && obs->model_rank >= 0 && obs->user_events > DR_DRIFT_SETTLED) {
            e->pre_clicks[arm]++;
            e->pre_hits[arm] += in_top(obs);
        }
        return;
    }
    t->since_switch++;
    if (t->since_switch <= 10 && obs->loss >= 0) e->labelled_first10++;
    if (obs->drift && t->first_delay < 0) t->first_delay = (int32_t)t->since_switch;
    if (t->since_switch <= DR_DRIFT_HORIZON && ev->type == DR_EV_CLICK && obs->model_rank >= 0) {
        e->clicks[arm][t->since_switch]++;
        e->hits[arm][t->since_switch] += in_top(obs);
    }
}

bool dr_drift_eval_wants_rank(void *ctx, const dr_event_t *ev, uint64_t user_events) {
    dr_drift_eval_t *e = ctx;
    if (ev->user_id < 1 || (uint64_t)ev->user_id > e->users) return false;
    int64_t at;
    if (!dr_synth_user_switch(e->truth, ev->user_id, &at)) return false;
    /* observe()'s tests: a click before the switch counts for a settled
     * user only; one past it counts as since_switch + 1 */
    if (ev->timestamp_ms < at) return user_events > DR_DRIFT_SETTLED;
    return e->u[ev->user_id].since_switch + 1 <= DR_DRIFT_HORIZON;
}

static int cmp_int(const void *a, const void *b) {
    return *(const int *)a - *(const int *)b;
}

/* hr@10 over the SMOOTH events ending at k, for one arm. */
static double smoothed_hr(const dr_drift_eval_t *e, int arm, int k) {
    uint64_t h = 0, n = 0;
    for (int j = k - SMOOTH + 1; j <= k; j++) {
        if (j < 1) continue;
        h += e->hits[arm][j];
        n += e->clicks[arm][j];
    }
    return n ? (double)h / (double)n : NAN;
}

void dr_drift_eval_summary(const dr_drift_eval_t *e, dr_drift_summary_t *s) {
    memset(s, 0, sizeof(*s));
    int *delays = malloc((e->users + 1) * sizeof(int));
    size_t nd = 0;
    for (uint64_t i = 1; i <= e->users; i++) {
        if (!dr_synth_user_switch(e->truth, (int64_t)i, NULL) || e->u[i].since_switch == 0) continue;
        s->switched_users++;
        if (e->u[i].first_delay > 0 && delays) delays[nd++] = e->u[i].first_delay;
    }
    s->detected_users = nd;
    s->delay_median = s->delay_p90 = NAN;
    if (nd > 0) {
        qsort(delays, nd, sizeof(int), cmp_int);
        s->delay_median = delays[nd / 2];
        s->delay_p90 = delays[(size_t)(0.9 * (double)(nd - 1) + 0.5)];
    }
    free(delays);
    s->stable_events = e->stable_events;
    s->stable_alarms = e->stable_alarms;
    s->false_alarms_per_10k = e->stable_events ? 1e4 * (double)e->stable_alarms / (double)e->stable_events : 0;
    for (int arm = 0; arm < 2; arm++) {
        s->pre_hr[arm] = e->pre_clicks[arm] ? (double)e->pre_hits[arm] / (double)e->pre_clicks[arm] : NAN;
        s->recovery_events[arm] = -1;
        for (int k = SMOOTH; k <= DR_DRIFT_HORIZON; k++) {
            double hr = smoothed_hr(e, arm, k);
            if (isfinite(hr) && hr >= 0.9 * s->pre_hr[arm]) { s->recovery_events[arm] = k; break; }
        }
    }
}

void dr_drift_eval_write_json(const dr_drift_eval_t *e, dr_json_t *j) {
    dr_drift_summary_t s;
    dr_drift_eval_summary(e, &s);
    static const char *const arm_names[2] = {"without_drift_handling", "with_drift_handling"};
    dr_json_object_begin(j, "drift");
    dr_json_int(j, "switched_users", (int64_t)s.switched_users);
    dr_json_int(j, "detected_users", (int64_t)s.detected_users);
    dr_json_num(j, "detection_delay_median", s.delay_median);
    dr_json_num(j, "detection_delay_p90", s.delay_p90);
    dr_json_num(j, "false_alarms_per_10k_events", s.false_alarms_per_10k);
    dr_json_int(j, "stable_user_events", (int64_t)s.stable_events);
    dr_json_int(j, "stable_user_alarms", (int64_t)s.stable_alarms);
    dr_json_num(j, "switched_loss_before", e->loss_n[0] ? e->loss_sum[0] / (double)e->loss_n[0] : NAN);
    dr_json_num(j, "labelled_events_in_first_10_after_switch",
                s.switched_users ? (double)e->labelled_first10 / (double)s.switched_users : NAN);
    dr_json_num(j, "switched_loss_after_20", e->loss_n[1] ? e->loss_sum[1] / (double)e->loss_n[1] : NAN);
    dr_json_object_begin(j, "arms");
    for (int arm = 0; arm < 2; arm++) {
        dr_json_object_begin(j, arm_names[arm]);
        dr_json_num(j, "pre_switch_hr@10", s.pre_hr[arm]);
        dr_json_int(j, "recovery_events", s.recovery_events[arm]);
        dr_json_array_begin(j, "hr@10_by_events_since_switch");
        for (int k = 1; k <= DR_DRIFT_HORIZON; k++) {
            dr_json_object_begin(j, NULL);
            dr_json_int(j, "k", k);
            dr_json_int(j, "clicks", (int64_t)e->clicks[arm][k]);
            dr_json_num(j, "hr@10", e->clicks[arm][k] ? (double)e->hits[arm][k] / (double)e->clicks[arm][k] : NAN);
            dr_json_num(j, "hr@10_smoothed", smoothed_hr(e, arm, k));
            dr_json_object_end(j);
        }
        dr_json_array_end(j);
        dr_json_object_end(j);
    }
    dr_json_object_end(j);
    dr_json_object_end(j);
}

void dr_drift_eval_print(const dr_drift_eval_t *e, FILE *f) {
    dr_drift_summary_t s;
    dr_drift_eval_summary(e, &s);
    fprintf(f, "  drift: %llu of %llu switched users detected; delay median %.0f, p90 %.0f events\n"
               "         false alarms %.2f per 10k events of stable users (%llu in %llu)\n"
               "         recovery to 90%% of pre-switch hr@10: %d events with drift handling, %d without\n",
            (unsigned long long)s.detected_users, (unsigned long long)s.switched_users,
            s.delay_median, s.delay_p90, s.false_alarms_per_10k,
            (unsigned long long)s.stable_alarms, (unsigned long long)s.stable_events,
            s.recovery_events[1], s.recovery_events[0]);
}
