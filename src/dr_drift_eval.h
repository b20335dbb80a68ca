/* dr_drift_eval.h - measures drift handling against the synthetic stream's
 * ground truth (who switched interest, and when): detection delay, false
 * alarms, and hr@10 as a function of events since the switch, per arm. */
#ifndef DR_DRIFT_EVAL_H
#define DR_DRIFT_EVAL_H

#include <stdio.h>

#include "dr_pipeline.h"
#include "dr_report.h"
#include "dr_synth.h"

#define DR_DRIFT_HORIZON 50 /* events after a switch that are followed */
#define DR_DRIFT_HR_K 10     /* hr@K of the recovery curves */
#define DR_DRIFT_SETTLED 20  /* pre-switch hr@K counts users past this many events */

typedef struct dr_drift_eval dr_drift_eval_t;

/* truth is borrowed; users are numbered 1..users. */
int dr_drift_eval_new(dr_drift_eval_t **out, const dr_synth_t *truth, uint64_t users);
void dr_drift_eval_free(dr_drift_eval_t *e);
/* A dr_event_observer_fn: pass e as ctx. */
void dr_drift_eval_observe(void *e, const dr_event_t *ev, const dr_observation_t *obs);
/* The clicks whose rank the evaluation reads (a dr_rank_filter_fn): those of
 * users that switch, before the switch once the user is settled (past
 * DR_DRIFT_SETTLED events) and within DR_DRIFT_HORIZON events after it.
 * Ranking no other click leaves every figure as it was and spares the
 * pipeline a pass over the items per click. (Sampling the clicks before
 * the switch, an eighth of them, was tried: the pre-switch level, which the
 * recovery point is measured against, moved by up to 0.03.) */
bool dr_drift_eval_wants_rank(void *e, const dr_event_t *ev, uint64_t user_events);

typedef struct dr_drift_summary {
    uint64_t switched_users, detected_users;
    double delay_median, delay_p90;     /* events after the switch; NAN if none */
    double false_alarms_per_10k;        /* on users that never switch */
    uint64_t stable_events, stable_alarms;
    double pre_hr[2];                   /* [arm]: 0 without, 1 with drift handling */
    int recovery_events[2];             /* first k back to 90% of pre_hr; -1: not within horizon */
} dr_drift_summary_t;

void dr_drift_eval_summary(const dr_drift_eval_t *e, dr_drift_summary_t *s);
/* Writes the "drift" object of report.json (summary and per-arm series). */
void dr_drift_eval_write_json(const dr_drift_eval_t *e, dr_json_t *j);
void dr_drift_eval_print(const dr_drift_eval_t *e, FILE *f);

#endif /* DR_DRIFT_EVAL_H */
