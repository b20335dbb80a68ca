/* dr_synth.h - the demo's synthetic event stream: users with latent
 * interests over item clusters browse in sessions (impressions, then clicks,
 * likes, shares, dwells and hides drawn from a logistic model), and a known
 * share of users switches interest at a known time. Fully seeded: the same
 * configuration always gives the same stream. */
#ifndef DR_SYNTH_H
#define DR_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "dr_types.h"

typedef struct dr_synth_conf {
    uint64_t events;
    uint64_t users;
    uint64_t items;
    int clusters;          /* item clusters (interests) */
    double switch_share;   /* share of users whose interest switches */
    double in_cluster;     /* share of a session's impressions from the user's interest */
    int64_t start_ms;      /* event time of the first session */
    int64_t span_ms;       /* event time covered by the stream */
    uint64_t seed;
} dr_synth_conf_t;

void dr_synth_conf_default(dr_synth_conf_t *c);

typedef struct dr_synth dr_synth_t;

int dr_synth_new(dr_synth_t **out, const dr_synth_conf_t *conf);
void dr_synth_free(dr_synth_t *s);
/* Next event; false at the end of the stream. */
bool dr_synth_next(dr_synth_t *s, dr_event_t *ev);

/* Ground truth, for reports and tests. Users and items are numbered from 1. */
int dr_synth_item_cluster(const dr_synth_t *s, int64_t item_id);
/* The user's interest at event time t. */
int dr_synth_user_interest(const dr_synth_t *s, int64_t user_id, int64_t t_ms);
/* Whether the user switches, and when (event time). */
bool dr_synth_user_switch(const dr_synth_t *s, int64_t user_id, int64_t *switch_ms);

/* The item's content embedding (DR_SYNTH_CONTENT_DIM floats): its cluster's
 * centre plus noise of comparable size, as an encoder of the item's text or
 * image might give: informative about the cluster, not a label. */
#define DR_SYNTH_CONTENT_DIM 16
void dr_synth_item_embedding(const dr_synth_t *s, int64_t item_id, float *out);

#endif /* DR_SYNTH_H */
