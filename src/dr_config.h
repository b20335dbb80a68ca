/* dr_config.h - every driftrec setting, in one table (src/config.c) that
 * gives each key its type, bounds, default and documentation.
 *
 * Keys are namespaced ("learner.dim", "emit.topk"). Keys starting with
 * "kafka." pass through unchanged to librdkafka (without the prefix), so
 * SASL/SSL and any client tuning work as for any librdkafka client. An
 * unknown key or a bad value is an error naming the key. */
#ifndef DR_CONFIG_H
#define DR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "dr_codec.h"
#include "dr_emit.h"
#include "dr_learner.h"

#define DR_NAME_MAX 256
#define DR_PATH_MAX 1024
#define DR_KAFKA_PROPS_MAX 64

typedef struct dr_kv {
    char key[DR_NAME_MAX];
    char value[DR_PATH_MAX];
} dr_kv_t;

#define DR_CONFIG_ROWS_MAX 160

typedef struct dr_config {
    /* topics and group */
    char topic_events[DR_NAME_MAX];
    char topic_recs[DR_NAME_MAX];
    char topic_dlq[DR_NAME_MAX];     /* empty: "<events>.dlq" */
    char topic_catalog[DR_NAME_MAX]; /* empty: no catalog */
    int catalog_first_ms;            /* events wait at most this for the catalog at start */
    char topic_changelog[DR_NAME_MAX]; /* empty: "<events>.changelog"; "-": none */
    char topic_model[DR_NAME_MAX];     /* empty: "<events>.model"; "-": none */
    int model_sync_interval_ms;        /* how often item changes are shared */
    char group_id[DR_NAME_MAX];
    /* state */
    char state_dir[DR_PATH_MAX];
    int commit_interval_ms;
    int commit_step_users;    /* encode this many users ahead of the commit at a time; 0: all at once */
    int cache_users;
    int block_cache_mb;
    int write_buffer_mb;
    char state_compression[8];            /* none | snappy | lz4 | zstd */
    char state_compression_bottommost[8]; /* the same, for the last level */
    bool state_sync;
    int standby_interval_ms;  /* 0: no standby replicas */
    int changelog_idle_marker_ms; /* a marker at least this often per owned partition; 0: never */
    int state_min_free_mb;    /* stop before the state filesystem is this full */
    char partitions_changed[16]; /* refuse | accept: the events topic's partition count moved */
    /* ingest */
    int ingest_batch;
    int max_dirty_users;      /* pause consumption above this many unemitted users */
    int max_producer_queue;   /* ... or this many undelivered messages */
    int max_rate;             /* events/s cap (0: none) */
    char offset_reset[16];    /* earliest | latest | fail: a stored position out of range */
    char ingest_partitions[1024]; /* "": join the group; "all" or "0-3,8": assigned statically */
    /* emitter */
    int emit_interval_ms;
    int emit_withdraw_users_per_tick; /* stored users a withdrawal refreshes per emit tick */
    int emit_batch;
    int topk;
    int blas_threads;
    int emit_threads;
    dr_emit_retrieval_conf_t emit_retrieval; /* emit.retrieval.* */
    /* learner */
    dr_learner_conf_t learner;
    double global_drift_delta;
    double global_min_rise;   /* a global cut responds to a rise of at least this */
    int global_block;         /* samples per value of the global detector */
    double global_scale;      /* block means are magnified this much around a slow reference */
    bool global_relative;     /* the global detector sees each sample less its user's level */
    char learner_mode[16];
    char negative_sampling[16];
    /* schemas */
    dr_codec_conf_t codec;
    char framing[16];
    char writer_schemas[DR_PATH_MAX]; /* "id:kind:path,..." extra writer schemas */
    char registry_url[DR_PATH_MAX];   /* "": no Schema Registry */
    char registry_user_info[512];     /* basic auth "user:password" */
    char registry_ca[DR_PATH_MAX], registry_cert[DR_PATH_MAX], registry_key[DR_PATH_MAX];
    char registry_key_password[256];
    int registry_timeout_ms;
    int registry_wait_ms;
    /* process */
    char log_level[16];
    int shutdown_timeout_ms;
    int exit_idle_ms;
    bool eval_rank_clicks;
    char metrics_listen[64];  /* "": no endpoint */
    int metrics_max_connections; /* open at once; at the cap the oldest is closed */
    int metrics_timeout_ms;   /* from accept to the response written, at most */
    int64_t ready_max_lag;         /* run: stop cleanly after this long with nothing to consume */
    /* librdkafka pass-through, in the order given */
    dr_kv_t kafka[DR_KAFKA_PROPS_MAX];
    int n_kafka;
    /* keys given by --config or --set (by row): a mode's own defaults do
     * not override them */
    bool set_by_user[DR_CONFIG_ROWS_MAX];
} dr_config_t;

/* Fills every default. */
void dr_config_default(dr_config_t *cfg);
/* Sets one key; 0, or DR_ECONFIG with "key: reason" in errstr. */
int dr_config_set(dr_config_t *cfg, const char *key, const char *value, char *errstr,
                  size_t errstr_size);
/* Parses "key=value" (as given to --set). */
int dr_config_set_pair(dr_config_t *cfg, const char *pair, char *errstr, size_t errstr_size);
/* Reads a properties file: "key = value" lines, '#' comments, blank lines.
 * Errors name the file and line. */
int dr_config_load_file(dr_config_t *cfg, const char *path, char *errstr, size_t errstr_size);
/* Cross-field checks and derived values (e.g. the DLQ topic name). */
int dr_config_finish(dr_config_t *cfg, char *errstr, size_t errstr_size);
/* The value of a kafka.* pass-through key, or NULL. */
const char *dr_config_kafka(const dr_config_t *cfg, const char *librdkafka_key);
/* Pointer arrays over the kafka.* pairs (the strings stay in cfg), as
 * dr_ingest_kafka_conf takes them; free() both. 0 or DR_ENOMEM. */
int dr_config_kafka_arrays(const dr_config_t *cfg, const char ***keys, const char ***values);
/* Writes the table as Markdown (key, type, default, range, doc). */
void dr_config_write_markdown(FILE *out);
/* Writes the effective configuration; values of secret-looking keys
 * (password, secret, key, token, jaas) are printed as "[redacted]". */
void dr_config_dump(const dr_config_t *cfg, FILE *out);

#endif /* DR_CONFIG_H */
