/* dr_feed.h - a closed-loop feed world: simulated users with hidden,
 * drifting tastes read the lists driftrec publishes on Kafka, react to what
 * they are shown, and produce their events back to Kafka. Four parts:
 *
 *   world   (world.c)   the hidden truth: tastes, item quality, activity,
 *                       drift schedules. Pure, seeded, read-only after
 *                       creation, so any number of threads may read it.
 *   measure (measure.c) CTR bookkeeping of the impressions the simulator
 *                       plays (per arm, per round, around the switches and
 *                       the population shift). Pure, single-threaded.
 *   sim     (sim.c)     the Kafka client loop: rounds of sessions, waiting
 *                       for each active user's refreshed list.
 *   detect  (detect.c)  detection bookkeeping, fed by the pipeline's event
 *                       observer: delays, false alarms, the global cut.
 *
 * Users are numbered 1..users, items 1..items. See feed/README.md. */
#ifndef DR_FEED_H
#define DR_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dr_codec.h"
#include "dr_types.h"

/* ---- the world ------------------------------------------------------------ */

#define DR_FEED_CONTENT_DIM 16 /* floats of an item's content embedding */

typedef struct dr_feed_conf {
    uint64_t users;
    uint64_t items;
    int clusters;            /* item i is in cluster (i - 1) % clusters */
    int rounds;              /* simulated rounds in the run */
    int round_minutes;       /* simulated time per round */
    int64_t start_ms;        /* event time of round 0 */
    uint64_t seed;
    double switch_share;     /* users whose main cluster switches abruptly */
    double gradual_share;    /* users whose taste moves over a fifth of the run */
    double second_share;     /* users with a weaker second cluster */
    double shift_at;         /* population shift, as a share of the run */
    double popular_share;    /* users served the simulator's most-popular feed */
    double explore_share;    /* share of slots filled with organic items */
    double activity_min;     /* Pareto scale of the per-round session probability */
    double activity_alpha;   /* Pareto shape: smaller, heavier tail */
    double activity_max;     /* cap of the per-round session probability */
    int session_min, session_max; /* impressions per session */
} dr_feed_conf_t;

/** Fills the defaults (8000 users, 5000 items, 20 clusters, 240 rounds of
 *  30 minutes from 2026-01-01, seed 1, 20% abrupt, 10% gradual, shift at
 *  75%, 10% popular arm, 20% exploration). Can't fail. */
void dr_feed_conf_default(dr_feed_conf_t *c);

typedef struct dr_feed_world dr_feed_world_t;

/** What a user's taste does over the run. */
typedef enum { DR_FEED_STABLE = 0, DR_FEED_ABRUPT, DR_FEED_GRADUAL } dr_feed_drift_t;

typedef struct dr_feed_truth {
    dr_feed_drift_t kind;
    int c0;            /* main cluster at the start */
    int c1;            /* main cluster after the switch / drift; c0 when stable */
    int second;        /* weaker second cluster, -1: none */
    int64_t from_ms;   /* ABRUPT: the switch; GRADUAL: the drift starts */
    int64_t to_ms;     /* ABRUPT: = from_ms; GRADUAL: the drift ends */
    int from_round;    /* the round starting at from_ms */
    double activity;   /* probability of a session in each round */
    bool popular;      /* served the most-popular feed */
} dr_feed_truth_t;

/** Builds the world. conf is copied. 0, DR_EINVAL (fewer than 3 clusters,
 *  no users, fewer items than clusters, fewer than 10 rounds, a share outside
 *  [0, 1], shares of abrupt + gradual above 1, bad session or activity
 *  bounds) or DR_ENOMEM. *out is NULL on failure. */
int dr_feed_world_new(dr_feed_world_t **out, const dr_feed_conf_t *conf);
/** NULL is ignored. */
void dr_feed_world_free(dr_feed_world_t *w);

const dr_feed_conf_t *dr_feed_world_conf(const dr_feed_world_t *w);
/** Event time at which round r starts. */
int64_t dr_feed_world_round_ms(const dr_feed_world_t *w, int round);
/** The round holding event time t (may be < 0 or >= rounds outside the run). */
int dr_feed_world_round_of(const dr_feed_world_t *w, int64_t t_ms);

int dr_feed_world_item_cluster(const dr_feed_world_t *w, int64_t item_id);
/** The item's quality, added to every user's logit for it. */
float dr_feed_world_item_quality(const dr_feed_world_t *w, int64_t item_id);
/** DR_FEED_CONTENT_DIM floats: the cluster's centre plus noise of the same
 *  size (informative about the cluster, not a label), as dr_synth does. */
void dr_feed_world_item_embedding(const dr_feed_world_t *w, int64_t item_id, float *out);

/** The user's ground truth (user_id in 1..users; others get a stable
 *  zeroed truth). */
void dr_feed_world_truth(const dr_feed_world_t *w, int64_t user_id, dr_feed_truth_t *out);
/** Whether the user has a session in round r (seeded coin of probability
 *  truth.activity: the same answer every time). */
bool dr_feed_world_active(const dr_feed_world_t *w, int64_t user_id, int round);
/** The population shift: its round, event time and trending cluster (one
 *  no user has a taste for before the shift). */
void dr_feed_world_shift(const dr_feed_world_t *w, int *round, int64_t *t_ms, int *cluster);

/** The user's taste for cluster c at time t, in [0, 1] (1: main cluster). */
double dr_feed_world_taste(const dr_feed_world_t *w, int64_t user_id, int cluster, int64_t t_ms);
/** The logit of a click on item at t, before position and repetition:
 *  -3.5 + 4 * taste + quality; after the shift the trending cluster is at
 *  least in-taste (+0.5 + quality) and every other cluster loses 2 * taste. */
double dr_feed_world_logit(const dr_feed_world_t *w, int64_t user_id, int64_t item_id, int64_t t_ms);
/** Whether the item is in the user's taste at t (taste >= 0.5, or trending). */
bool dr_feed_world_in_taste(const dr_feed_world_t *w, int64_t user_id, int64_t item_id, int64_t t_ms);
/** examination(position) * sigmoid(logit), examination(k) = 1 / (1 + 0.1 k)
 *  for the 0-based slot k of the session; an item clicked recently is
 *  clicked a tenth as often. */
double dr_feed_world_click_prob(const dr_feed_world_t *w, int64_t user_id, int64_t item_id,
                                int position, int64_t t_ms, bool clicked_recently);

/* ---- arms ----------------------------------------------------------------- */

typedef enum { DR_FEED_ARM_DRIFT = 0, DR_FEED_ARM_CONTROL = 1, DR_FEED_ARM_POPULAR = 2 } dr_feed_arm_t;
#define DR_FEED_ARMS 3
/** "drift", "control", "popular". */
const char *dr_feed_arm_name(int arm);

/* ---- CTR bookkeeping -------------------------------------------------------- */

/* Impression indices relative to a user's abrupt switch that the curve
 * covers: -50..-1 before, 0..300 after (0 = the first one after). */
#define DR_FEED_CURVE_FROM (-50)
#define DR_FEED_CURVE_TO 300
#define DR_FEED_CURVE_LEN (DR_FEED_CURVE_TO - DR_FEED_CURVE_FROM + 1)
#define DR_FEED_ELIGIBLE_PRE 100 /* labelled events before the switch to be "eligible" */
#define DR_FEED_PRE_WINDOW 50    /* impressions before the switch giving its CTR */
#define DR_FEED_SMOOTH 20        /* trailing window of the smoothed curve */
#define DR_FEED_COLD 20          /* a user's first impressions counted as "cold" */

typedef struct dr_feed_measure dr_feed_measure_t;

/** What the measure makes of the impressions it saw. Arrays point into the
 *  measure: valid while it lives and until its next update. CTRs are NAN
 *  where nothing was seen; round counts are -1 where undefined. */
typedef struct dr_feed_report {
    int rounds;                           /* rounds the arrays cover */
    uint64_t users[DR_FEED_ARMS];         /* users assigned to each arm */
    uint64_t impressions[DR_FEED_ARMS];
    uint64_t clicks[DR_FEED_ARMS];
    const uint64_t *round_impressions[DR_FEED_ARMS]; /* [rounds] */
    const uint64_t *round_clicks[DR_FEED_ARMS];
    struct {
        int round, cluster;
        double pre_ctr[DR_FEED_ARMS];     /* the 10 rounds before the shift */
        double min_ctr[DR_FEED_ARMS];     /* lowest round from the shift on */
        double depth[DR_FEED_ARMS];       /* pre_ctr - min_ctr */
        int rounds_to_90[DR_FEED_ARMS];   /* rounds from the shift until back to 90% of
                                             pre_ctr; 0: never below, -1: never back */
    } shift;
    struct {                              /* abrupt switches; [0] drift, [1] control */
        uint64_t users[2], eligible[2];
        double pre_ctr[2];                /* eligible users' last 50 before the switch */
        double post_ctr[2];               /* all switched users, all traffic after */
        int recovery[2];                  /* first index back to 90% of pre_ctr, -1: none */
        double curve[2][DR_FEED_CURVE_LEN]; /* smoothed CTR by index - DR_FEED_CURVE_FROM */
        uint64_t curve_n[2][DR_FEED_CURVE_LEN]; /* impressions at each index */
    } sw;
    struct {                              /* gradual drifters: before / during / after */
        uint64_t users[DR_FEED_ARMS];
        uint64_t impressions[DR_FEED_ARMS][3], clicks[DR_FEED_ARMS][3];
    } gradual;
    struct {                              /* every user's first DR_FEED_COLD impressions */
        uint64_t users[DR_FEED_ARMS], impressions[DR_FEED_ARMS], clicks[DR_FEED_ARMS];
    } cold;
} dr_feed_report_t;

/** A measure for the world's users (all in the drift arm until set).
 *  The world must outlive it. 0 or DR_ENOMEM. */
int dr_feed_measure_new(dr_feed_measure_t **out, const dr_feed_world_t *w);
void dr_feed_measure_free(dr_feed_measure_t *m); /* NULL ok */
/** Assigns user_id to an arm; ignored outside 1..users. */
void dr_feed_measure_set_arm(dr_feed_measure_t *m, int64_t user_id, dr_feed_arm_t arm);
dr_feed_arm_t dr_feed_measure_arm(const dr_feed_measure_t *m, int64_t user_id);
/** One impression of user_id at event time t_ms, clicked or not (its round
 *  is the world's round of t_ms). A user's impressions must come in time
 *  order. Ignored for ids outside 1..users. */
void dr_feed_measure_impression(dr_feed_measure_t *m, int64_t user_id, int64_t t_ms, bool clicked);
/** Fills r from what was seen so far (see dr_feed_report_t). */
void dr_feed_measure_report(const dr_feed_measure_t *m, dr_feed_report_t *r);
/** A ratio, NAN when the denominator is 0. */
double dr_feed_ctr(uint64_t clicks, uint64_t impressions);

/* ---- the simulator: a Kafka client ------------------------------------------ */

typedef struct dr_feed_sim_conf {
    const char *bootstrap;      /* bootstrap.servers */
    const char *topic_events;   /* where the users' events go */
    const char *topic_recs;     /* where driftrec publishes the lists */
    dr_codec_conf_t codec;      /* framing as the pipeline expects */
    /* driftrec's own arm split: true for users with drift handling. Called
     * by dr_feed_sim_new, once per user, on the caller's thread; NULL: every
     * user not in the popular arm is in the drift arm. */
    bool (*drift_arm)(void *ctx, int64_t user_id);
    void *drift_arm_ctx;
    double round_timeout_s;     /* most wall time to wait for a round's lists */
} dr_feed_sim_conf_t;

void dr_feed_sim_conf_default(dr_feed_sim_conf_t *c);

typedef struct dr_feed_sim dr_feed_sim_t;

/** Counters readable from any thread while the simulator runs. */
typedef struct dr_feed_progress {
    int round;                  /* rounds finished */
    int rounds;
    uint64_t events;            /* events delivered to Kafka */
    uint64_t lists;             /* lists read back */
    uint64_t impressions[DR_FEED_ARMS], clicks[DR_FEED_ARMS];
    uint64_t hidden_shown[DR_FEED_ARMS]; /* list slots filled with an item the user hid (its last 32 hides) */
    uint64_t repeat_shown[DR_FEED_ARMS]; /* list slots filled with an item the user passed over before */
    uint64_t stale_shown[DR_FEED_ARMS];  /* ... 3 times or more since it last clicked it */
    uint64_t timeouts;          /* rounds whose lists did not all come in time */
    bool done;                  /* dr_feed_sim_run returned */
} dr_feed_progress_t;

/** Creates the simulator's producer and consumer (assigned to every
 *  partition of the recommendations topic, from the beginning) and the arm
 *  of every user. world (and conf's drift_arm_ctx) must outlive it.
 *  0, DR_EINVAL, DR_EKAFKA or DR_ENOMEM with the reason in errstr. */
int dr_feed_sim_new(dr_feed_sim_t **out, const dr_feed_world_t *world,
                    const dr_feed_sim_conf_t *conf, char *errstr, size_t errstr_size);
/** Plays every round (blocking; run it on a thread of its own): the sessions
 *  of the round's active users are produced and flushed, then the simulator
 *  reads lists until every one of those users has a list reflecting its last
 *  event, or round_timeout_s passed (counted in timeouts).
 *  0; DR_ESTOPPED after dr_feed_sim_request_stop; DR_EKAFKA or DR_ENOMEM. */
int dr_feed_sim_run(dr_feed_sim_t *s);
/** Makes dr_feed_sim_run return soon. Any thread; safe to repeat. */
void dr_feed_sim_request_stop(dr_feed_sim_t *s);
/** A snapshot of the counters. Any thread. */
void dr_feed_sim_progress(dr_feed_sim_t *s, dr_feed_progress_t *out);
/** The CTR report; call once dr_feed_sim_run returned. */
void dr_feed_sim_report(const dr_feed_sim_t *s, dr_feed_report_t *out);

/* CTR after the switch of the eligible users whose switch was detected (a
 * cut for the worse within DR_FEED_DETECT_WITHIN impressions), by windows
 * of impressions after the switch, per arm: where the response acts. The
 * average curve over all eligible users mixes them with users whose lists
 * never served them. */
#define DR_FEED_WINDOWS 6
extern const int dr_feed_window_from[DR_FEED_WINDOWS + 1]; /* 0, 30, 60, 100, 150, 200, 300 */
typedef struct dr_feed_detected_curve {
    uint64_t users[2];                        /* [0] drift, [1] control */
    uint64_t impressions[2][DR_FEED_WINDOWS], clicks[2][DR_FEED_WINDOWS];
} dr_feed_detected_curve_t;
typedef struct dr_feed_detect dr_feed_detect_t;
/** Call after both the simulator and the pipeline stopped. */
void dr_feed_sim_detected_curve(const dr_feed_sim_t *s, const dr_feed_detect_t *d,
                                dr_feed_detected_curve_t *out);
/** The same from the bookkeeping itself (what the simulator calls). */
void dr_feed_measure_detected_curve(const dr_feed_measure_t *m, const dr_feed_detect_t *d,
                                    dr_feed_detected_curve_t *out);
/** Closes the clients and frees everything. NULL ok. */
void dr_feed_sim_free(dr_feed_sim_t *s);

/* ---- detection bookkeeping --------------------------------------------------- */

/** What the pipeline told about one applied event (a copy of the fields of
 *  its observation that detection needs). */
typedef struct dr_feed_obs {
    bool drift;              /* the user's detector cut */
    int drift_direction;     /* +1 worse, -1 improving, 0 not told */
    bool global_drift;       /* the global detector cut */
    int global_direction;
    bool drift_arm;          /* the user is in driftrec's drift arm */
} dr_feed_obs_t;

#define DR_FEED_DETECT_WITHIN 300 /* labelled events after the switch that count as detected */
/* An eligible user was "served" by its lists when it engaged with at least
 * this share of its last 50 impressions before the switch: a user whose
 * lists never worked loses nothing at the switch, so there is nothing to
 * detect (docs/DRIFT.md: the closed loop's lock-in). */
#define DR_FEED_SERVED_CTR 0.2

typedef struct dr_feed_detect_summary {
    /* abrupt switches of users served driftrec's lists; [0] drift, [1] control */
    uint64_t switch_users[2];
    uint64_t eligible[2];         /* >= DR_FEED_ELIGIBLE_PRE labelled events before */
    uint64_t detected[2];         /* eligible, detected within DR_FEED_DETECT_WITHIN */
    uint64_t served[2];           /* eligible, served by their lists before the switch */
    uint64_t served_detected[2];  /* ... and detected */
    double served_delay_median;   /* labelled events, served detected users of both arms */
    double delay_median, delay_p90; /* labelled events, detected users of both arms */
    double arm_delay_median[2], arm_delay_p90[2];
    /* false alarms: users that never drift, events before the shift */
    uint64_t stable_labelled, cuts, improving_cuts;
    /* the population shift: labelled events of all users from the shift to
     * the first global cut for the worse, -1: none */
    int64_t shift_detected_after;
    uint64_t global_cuts;         /* global cuts for the worse, over the run ... */
    uint64_t global_cuts_before_shift; /* ... and before the shift (false starts of the trend term) */
} dr_feed_detect_summary_t;

/** World must outlive it. 0 or DR_ENOMEM. */
int dr_feed_detect_new(dr_feed_detect_t **out, const dr_feed_world_t *w);
void dr_feed_detect_free(dr_feed_detect_t *d); /* NULL ok */
/** One applied event, in the order the pipeline applied them (per user: in
 *  time order). A cut whose direction is 0 (a pipeline that does not tell)
 *  counts as a cut for the worse. Single-threaded: call from one thread. */
void dr_feed_detect_observe(dr_feed_detect_t *d, const dr_event_t *ev, const dr_feed_obs_t *obs);
/** The impressions from user_id's abrupt switch to its first cut for the
 *  worse, -1: none (or not an abrupt switcher). */
int32_t dr_feed_detect_delay(const dr_feed_detect_t *d, int64_t user_id);
/** Fills s (delays NAN where none). 0, or DR_ENOMEM with the delays NAN. */
int dr_feed_detect_summary(const dr_feed_detect_t *d, dr_feed_detect_summary_t *s);

#endif /* DR_FEED_H */
