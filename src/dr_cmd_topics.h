/* dr_cmd_topics.h - `driftrec topics create`, and the topic plan that
 * `driftrec broker --config` shares. */
#ifndef DR_CMD_TOPICS_H
#define DR_CMD_TOPICS_H

#include <stdbool.h>

#include "dr_config.h"

int dr_cmd_topics(int argc, char **argv);

/* One topic of a configuration. */
typedef struct topic_plan {
    const char *name;
    int partitions;
    bool compact;   /* cleanup.policy=compact */
} dr_topic_plan_t;

/* The topics of cfg (events, recommendations, DLQ, catalog if set), each
 * with `partitions`, into out[4]; returns how many. */
int dr_topics_plan(const dr_config_t *cfg, int partitions, dr_topic_plan_t *out);

#endif /* DR_CMD_TOPICS_H */
