/* dr_pipeline.h - the whole loop on one libuv loop: ingest (Kafka events)
 * -> learner (per-event SGD) -> state (RocksDB, atomic commits with the
 * consumed offsets) -> emitter (sgemm top-K, Kafka lists).
 *
 * Commit protocol (why a crash neither loses nor repeats an event's effect):
 * every state.commit.interval.ms the pipeline (1) publishes the lists still
 * owed, (2) serialises dirty users, dirty items, the globals and the next
 * offset of every owned partition into one WriteBatch, (3) waits until every
 * message produced before that point is delivered, (4) writes the batch.
 * A commit is skipped when no record was handled since the last one (an
 * idle pipeline writes nothing). On assignment the consumer seeks to the
 * offsets stored in RocksDB. */
#ifndef DR_PIPELINE_H
#define DR_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "dr_config.h"
#include "dr_ingest.h"

/* A latency histogram in seconds, Prometheus-style (cumulated on output). */
#define DR_HIST_BUCKETS 12
extern const double dr_hist_bounds[DR_HIST_BUCKETS]; /* upper bounds; then +Inf */
typedef struct dr_histogram {
    uint64_t bucket[DR_HIST_BUCKETS + 1];
    double sum;
    uint64_t count;
} dr_histogram_t;
void dr_histogram_observe(dr_histogram_t *h, double seconds);

/* What followed a per-user drift cut. */
typedef enum dr_cut_reason {
    DR_CUT_READAPTED = 0, /* drift arm, worsening: re-adapted, list published */
    DR_CUT_IMPROVING,     /* drift arm, the signal fell: nothing (drift.respond.improving) */
    DR_CUT_CONTROL,       /* control arm: counted only */
    DR_CUT_SMALL,         /* either arm: the change was below drift.min.change, not drift */
    DR_CUT__COUNT
} dr_cut_reason_t;
extern const char *const dr_cut_reason_names[DR_CUT__COUNT];

typedef struct dr_pipeline_stats {
    uint64_t consumed;         /* records taken from Kafka */
    uint64_t events;           /* events applied */
    uint64_t dead_lettered;
    uint64_t dlq_by_reason[8];
    uint64_t lists_emitted;
    uint64_t lists_retrieved;  /* of them, ranked from retrieval candidates (emit.retrieval.*) */
    uint64_t retrieval_index_items;
    uint64_t retrieval_index_upserts;
    uint64_t retrieval_rows_checked; /* rows the index's refresh pass compared (emit.retrieval.refresh.pass.ms) */
    uint64_t retrieval_audited_lists; /* lists from candidates ranked again by the full scan (emit.retrieval.audit.every) */
    uint64_t retrieval_audit_hits;    /* items of those exact lists the published lists held */
    uint64_t retrieval_audit_slots;   /* items of those exact lists: recall = hits / slots */
    uint64_t lists_delivered;
    uint64_t delivery_errors;  /* failed deliveries (each one retried) */
    uint64_t acks_without_offset; /* deliveries acknowledged with no offset (a duplicate or implicit ack) */
    uint64_t lists_reissued;   /* failed lists produced again as the user's current one */
    uint64_t commits;
    uint64_t commit_steps;           /* state.commit.step.users: steps that encoded users ahead of a commit */
    uint64_t commit_failures;
    double commit_build_seconds;     /* the loop thread's time building commits (the write is on the thread pool) */
    double commit_build_max_seconds; /* the longest one (or step): consumption and lists wait that long */
    uint64_t clicks_scored;    /* clicks of users that had a list */
    uint64_t click_hits;       /* ... whose item was in that list's top 10 */
    uint64_t clicks_ranked;    /* clicks ranked under the model before they apply (eval.rank.clicks) */
    uint64_t rank_hits;        /* ... whose item ranked in the top 10 */
    double loss_sum;           /* prequential loss over learned events */
    uint64_t loss_count;
    int64_t lag;
    int64_t model_lag;             /* model topic messages not read yet (-1: not known yet) */
    int assigned_partitions;
    uint64_t users_cached;
    uint64_t cache_hits, cache_misses;
    uint64_t pauses;
    bool paused;
    bool failed;               /* a fatal error stopped consumption */
    uint64_t erasures;           /* users erased on request */
    uint64_t erase_requests;     /* erase requests consumed (not counted in events) */
    uint64_t withdraw_refreshes; /* lists recomputed because a blocked or deleted item was in them */
    uint64_t withdraw_queued;    /* stored users found holding one, waiting for their turn */
    bool withdraw_scanning;      /* a scan of the stored users is under way */
    uint64_t withdraw_rechecks;  /* partitions taken with their lists unchecked, scanned for every withdrawn item */
    uint64_t withdraw_unchecked; /* owned partitions whose stored lists may still hold a withdrawn item */
    uint64_t items_expired;      /* items that went past learner.item.ttl.ms */
    uint64_t items_removed;      /* items removed from the model and the store (expired, or a catalog tombstone) */
    uint64_t items_live;         /* items in the model at the last commit */
    uint64_t drift_detections;   /* per-user ADWIN cuts */
    uint64_t drift_readapted;    /* ... followed by re-adaptation (drift arm) */
    uint64_t drift_cuts[DR_CUT__COUNT]; /* ... by what followed (dr_cut_reason_t) */
    uint64_t global_drifts;      /* cuts of the global ADWIN over all users */
    uint64_t global_cuts_worse;  /* ... after which the signal rose: trend term on */
    uint64_t global_cuts_small;  /* ... rose by less than drift.global.min.rise */
    uint64_t global_cuts_improving;
    uint64_t partitions_restored; /* partitions whose users came from the changelog */
    uint64_t users_restored;     /* ... user records (and tombstones) applied */
    uint64_t restore_records;    /* changelog messages read on assignment */
    uint64_t changelog_fenced;   /* ... ignored: a former owner's, written after it lost the partition */
    uint64_t changelog_foreign;  /* times another writer was found in a changelog partition we own */
    double restore_seconds;      /* ... and the time it took */
    uint64_t standby_partitions; /* partitions of other instances kept warm now (state.standby.interval.ms) */
    uint64_t standby_records;    /* ... changelog messages read for them */
    uint64_t standby_users;      /* ... user records and tombstones applied */
    uint64_t standby_fenced;     /* ... messages of a superseded owner ignored */
    uint64_t standby_failures;   /* ... reads that failed (tried again at the next round) */
    int64_t standby_behind;      /* ... messages past their last marker applied (an unfinished commit) */
    double standby_seconds;      /* ... time spent reading */
    uint64_t model_items_published; /* item changes shared through topic.model */
    uint64_t model_items_imported;  /* ... and taken from the other instances */
    uint64_t model_rejected;        /* model messages refused (malformed, other dimension) */
    uint64_t model_lost;            /* ... or not produced / delivered */
    uint64_t model_own_recovered;   /* own messages a dead process published past its commit */
    uint64_t model_items_pending;   /* item changes not shared yet (published within
                                       model.sync.interval.ms, even when input stops) */
    uint64_t offset_resets;      /* positions out of the events log's range */
    uint64_t events_skipped;     /* ... events known to be skipped by them */
    uint64_t offset_reports_stale; /* lost-position reports ignored as stale (dr_ingest.h) */
    double emit_seconds;
    dr_histogram_t freshness;    /* an event making a user owe a list -> list produced */
    dr_histogram_t learn;        /* one batch: first event taken -> all applied */
    uint64_t batches;            /* batches taken from the consumer queue */
    double first_event_s;      /* monotonic time of the first / last applied batch */
    double last_event_s;
} dr_pipeline_stats_t;

typedef struct dr_pipeline dr_pipeline_t;

/* Opens the state, restores items and globals, creates the Kafka clients.
 * cfg is copied. Returns 0 or a DR_E* code with the reason in errstr. */
int dr_pipeline_new(dr_pipeline_t **out, uv_loop_t *loop, const dr_config_t *cfg,
                    char *errstr, size_t errstr_size);
/* Subscribes and starts the timers. A start that fails (a partition
 * ingest.partitions names that the topic lacks, no broker to say how many
 * there are, ...) has opened handles on the loop already: the caller then
 * stops the pipeline and runs the loop before freeing it, as after a run
 * (the stop writes nothing: the pipeline counts as failed). */
int dr_pipeline_start(dr_pipeline_t *p, char *errstr, size_t errstr_size);
/* Graceful stop: finishes the batch in hand, publishes owed lists, commits
 * state and offsets, flushes the producer, leaves the group and closes its
 * loop handles, so uv_run returns. Safe to call more than once. */
void dr_pipeline_stop(dr_pipeline_t *p);
/* Frees everything; call after uv_run returned. NULL ok. */
void dr_pipeline_free(dr_pipeline_t *p);

/* Whether a user is in the arm with drift handling (drift.arm.share of
 * users, split by a hash of user_id). */
bool dr_pipeline_drift_arm(const dr_pipeline_t *p, int64_t user_id);

/* A snapshot of the counters (lag is refreshed). */
void dr_pipeline_stats(dr_pipeline_t *p, dr_pipeline_stats_t *out);
/* Per-partition positions of the events topic (index = partition id). */
const dr_partition_stats_t *dr_pipeline_partitions(dr_pipeline_t *p, int *n);
/* RocksDB's estimated live bytes and pending compaction bytes. */
void dr_pipeline_state_sizes(dr_pipeline_t *p, uint64_t *live, uint64_t *pending);
/* RocksDB write stalls: writes stopped (1/0) and the delayed write rate. */
void dr_pipeline_write_stall(dr_pipeline_t *p, uint64_t *stopped, uint64_t *delayed_rate);

/* The exit status the process should report: 0, or 1 after a fatal error. */
int dr_pipeline_exit_code(const dr_pipeline_t *p);

/* What the pipeline saw of one applied event (for the demo's drift
 * bookkeeping and replay metrics). */
#define DR_OBSERVED_RANK_MAX 10 /* ranks are exact up to here: hr@10 needs no more */
typedef struct dr_observation {
    int hit;          /* -1: the user had no list yet; else item in the list's head */
    int64_t model_rank; /* clicks, with a ranking observer: the item's rank in the
                           list the model would publish just before the event
                           (1-based, exact up to DR_OBSERVED_RANK_MAX, past it
                           DR_OBSERVED_RANK_MAX + 1; 0: not listable); else -1 */
    float loss;       /* prequential loss; < 0 when the event carried no label */
    bool drift;       /* the user's ADWIN cut on this event */
    bool readapted;   /* ... and the user was re-adapted (drift arm) */
    int drift_direction; /* with drift: +1 the user's signal got worse, -1 it
                            improved (ignored: no response) */
    bool global_drift; /* the global detector (all users) cut on this event */
    int global_direction; /* with global_drift: +1 worse, -1 improved */
    bool drift_arm;   /* the user is in the arm with drift handling */
    uint64_t user_events; /* the user's events applied, this one included */
} dr_observation_t;
typedef void (*dr_event_observer_fn)(void *ctx, const dr_event_t *ev, const dr_observation_t *obs);
void dr_pipeline_set_observer(dr_pipeline_t *p, dr_event_observer_fn fn, void *ctx);
/* Also rank each click under the current model for the observer (costs a
 * pass over the item matrix per click: evaluation runs only). */
void dr_pipeline_set_observer_ranks(dr_pipeline_t *p, bool on);
/* Which clicks the observer needs ranked (called with the observer's ctx
 * before the event is applied; user_events: the user's events applied
 * once this one is, as dr_observation_t.user_events will say); NULL: every
 * click. */
typedef bool (*dr_rank_filter_fn)(void *ctx, const dr_event_t *ev, uint64_t user_events);
void dr_pipeline_set_rank_filter(dr_pipeline_t *p, dr_rank_filter_fn fn);

#endif /* DR_PIPELINE_H */
