/* dr_replay.h - backtesting: replays an event history through the same
 * learner code the live pipeline uses, test-then-train on every event, for
 * several arms (configurations) side by side, and writes report.json.
 *
 * The replay keeps its state in memory: it never reads or writes a live
 * state directory or consumer group. Arms run in parallel threads, each
 * over the same events in the same order, so a replay is reproducible. */
#ifndef DR_REPLAY_H
#define DR_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "dr_dataset.h"
#include "dr_learner.h"
#include "dr_types.h"

#define DR_REPLAY_MAX_ARMS 10
/* recentpop's default half-life, in events of the stream (docs/REPLAY.md) */
#define DR_REPLAY_RECENTPOP_HALFLIFE 5000

typedef enum dr_arm_kind {
    DR_ARM_FULL = 0,     /* prior + per-user adaptation + drift handling */
    DR_ARM_PRIOR,        /* no per-user adaptation: every user is the prior û */
    DR_ARM_NODRIFT,      /* per-user adaptation, drift detection off */
    DR_ARM_POPULARITY,   /* most popular items the user has not seen */
    DR_ARM_ZEROPRIOR,    /* full model, but û = 0 and not meta-learned */
    DR_ARM_NOCONTENT,    /* full model without the catalog's content embeddings */
    DR_ARM_NOCOOC,       /* full model without the co-engagement term */
    DR_ARM_ITEMKNN,      /* item-to-item co-engagement counts, no learning (implicit mode) */
    DR_ARM_RECENTPOP,    /* popularity over a recent window: decayed counts (implicit mode) */
    DR_ARM_BIAS,         /* online μ + b_u + b_i by SGD (rating mode) */
    DR_ARM_EXPKNN,       /* experimental item-to-item variants, set by DR_EXP_* (implicit mode) */
    DR_ARM__COUNT
} dr_arm_kind_t;

/* Parses "full,prior,nodrift,popularity,zeroprior,nocontent,nocooc,itemknn,recentpop,bias" into
 * kinds; returns the count or DR_EINVAL with the bad name in errstr. */
int dr_replay_parse_arms(const char *list, dr_arm_kind_t *arms, int max, char *errstr,
                         size_t errstr_size);
const char *dr_replay_arm_name(dr_arm_kind_t kind);
/* The arms a replay runs when --arms is not given: they depend on the mode,
 * as some baselines only rank (itemknn, recentpop) or only predict (bias). */
const char *dr_replay_default_arms(dr_learn_mode_t mode);
/* 0, or DR_EINVAL with errstr naming the first arm that does not apply to
 * mode (a ranking-only arm in rating mode, bias in implicit mode). */
int dr_replay_check_arms(const dr_arm_kind_t *arms, int n, dr_learn_mode_t mode, char *errstr,
                         size_t errstr_size);

typedef struct dr_replay_conf {
    const dr_learner_conf_t *learner; /* learner settings (mode, dim, rates, drift) */
    int k;                    /* cut-off of hr@K and ndcg@K */
    int window;               /* events per window of the series */
    int coverage_every;       /* compute the top-K list every N ranked events */
    dr_arm_kind_t arms[DR_REPLAY_MAX_ARMS];
    int n_arms;
    double recentpop_halflife; /* recentpop: events after which an engagement counts
                                  half (<= 0: DR_REPLAY_RECENTPOP_HALFLIFE) */
} dr_replay_conf_t;

typedef struct dr_replay_input {
    const dr_event_t *events; /* in replay order */
    size_t n;
    const int64_t *catalog;   /* items announced by the catalog (may be NULL) */
    size_t n_catalog;
    const float *catalog_emb; /* n_catalog × emb_dim content embeddings, or NULL;
                                 an all-zero row: the item has none */
    int emb_dim;
    double load_seconds;      /* time spent loading/reading, for the report */
    const char *source;       /* what was replayed, for the report */
    const dr_splice_t *splice; /* the ground truth when users were spliced
                                  (dr_splice_events), else NULL: adds the
                                  per-arm splice figures to the report */
} dr_replay_input_t;

/* Runs every arm and writes DIR/report.json. Prints a short summary to
 * stderr. 0 or a DR_E* code with errstr. */
int dr_replay_run(const dr_replay_conf_t *conf, const dr_replay_input_t *in, const char *report_dir,
                  char *errstr, size_t errstr_size);

#endif /* DR_REPLAY_H */
