/* dr_emit.h - recommendation lists: score a batch of users against the item
 * matrix with one cblas_sgemm, select each user's top-K, encode them as
 * Recommendations and produce them keyed by user_id.
 *
 * Threads: an emit call returns once its lists are produced. Both the full
 * scan and the retrieval path split each batch's users over emit.threads
 * threads (the caller's and a pool's, dr_workers.h) that only read the
 * model, the users and the index; the encoding and the produce run on the
 * caller's.
 * OpenBLAS may use its own threads inside sgemm (emit.blas.threads). */
#ifndef DR_EMIT_H
#define DR_EMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "dr_codec.h"
#include "dr_flight.h"
#include "dr_learner.h"

/* ---- scoring core (no Kafka) --------------------------------------------- */

/* Per-user exclusions: item indices (into the items view) never listed. */
typedef struct dr_exclusions {
    const int64_t *idx;
    size_t n;
    /* the user whose seen posts rest (dr_user_resting) and whose hidden
     * authors and topics (dr_user_hides_source) stay out, and whose lists
     * explore the topics it did not pass over first, or NULL: asked
     * only about the items that would enter the list (a filter can't be
     * listed, and an item's author is one look-up away) */
    const dr_user_t *user;
} dr_exclusions_t;

/* Adds a per-user term to one chunk of user u's scores between the sgemm
 * and the selection: row[j] is the score of item index first + j, j < n
 * (a range of the items view). Called once per user and chunk. */
typedef void (*dr_emit_row_fn)(void *ctx, size_t u, float *row, size_t first, size_t n);

/* What a list's score adds to U·Qᵀ + b: the learner's terms that only rank.
 * pop_weight[u] times the items view's pop vector is added in the selection
 * pass (the population prior: no pass of its own); add_row adds sparse
 * terms (co-engagement). Either may be NULL. */
typedef struct dr_emit_terms {
    const float *pop_weight; /* B weights */
    dr_emit_row_fn add_row;
    void *ctx;
    /* B flags, or NULL: the lists of users whose flag is set explore topics
     * (dr_user_exploring): every other slot holds the best item of another
     * topic, topics in the order of their best items' scores. `topics` is
     * scratch of B × DR_EMIT_EXPLORE_TOPICS entries when explore is set. */
    const uint8_t *explore;
    struct dr_emit_topic_best *topics;
} dr_emit_terms_t;

/* Topics an exploring list draws from (items of the catalog's topic -1,
 * unknown, never; two topics that hash to one slot share it, the better
 * item kept). */
#define DR_EMIT_EXPLORE_TOPICS 64
typedef struct dr_emit_topic_best {
    int64_t topic;   /* -1: empty */
    dr_scored_item_t best;
} dr_emit_topic_best_t;

/* Items scored per cblas_sgemm: the scoring scratch is B × this many floats
 * whatever the catalog size (128 MiB at the default emit.batch of 512;
 * one sgemm over the whole catalog took 2 GiB at 1M items). Each chunk
 * costs every user one call of the row hook, a pass over its co-engagement
 * tables, so small chunks slow large catalogs down: at 1M items with full
 * tables, 16384 scored 10-20% fewer lists per second than one sgemm over
 * the catalog, 65536 about 6% fewer, within the noise (bench/scale.sh). */
#define DR_EMIT_CHUNK_ITEMS 65536

/* Floats per user of the scratch dr_emit_topk() needs for n_items items:
 * min(n_items, DR_EMIT_CHUNK_ITEMS). */
size_t dr_emit_scratch_items(size_t n_items);

/* Scores B users (rows of U, B×dim, row-major) against every item:
 * S = U·Qᵀ + b (+ the terms, when not NULL), one cblas_sgemm per chunk of
 * DR_EMIT_CHUNK_ITEMS items, each chunk merged into every user's top-k before
 * the next, then writes each user's k best items into out[u*k ...] and their
 * count into out_n[u].
 *
 * Guarantees (tested): lists are sorted by score, descending, ties broken by
 * ascending item id, except an exploring user's (terms->explore), whose
 * odd slots hold other topics' best items (the topics excl[u].user passed
 * over while exploring, dr_user_passed_topic, after the others); no item appears twice; excluded
 * and blocked items never appear; a list is shorter than k only when fewer
 * eligible items exist. `scores` is scratch
 * of at least B × dr_emit_scratch_items(items->n) floats. */
void dr_emit_topk(const float *U, size_t B, const dr_items_view_t *items, int k,
                  const dr_exclusions_t *excl, const dr_emit_terms_t *terms, float *scores,
                  dr_scored_item_t *out, size_t *out_n);

/* One user's list from a candidate set rather than the catalog (the
 * retrieval path): item indices idx[0..n) with their complete scores
 * (dr_model_scores_at), no index twice, the user's recent and hidden items
 * already left out. Blocked items, NaN scores and the user filters
 * (excl->user's) apply as in dr_emit_topk; topics not NULL (DR_EMIT_EXPLORE_TOPICS
 * entries of scratch): the list explores, drawing each topic's best among
 * the candidates. Writes up to k items, best first, into out. 0, or
 * DR_ENOMEM (the list is then the plain ranking). */
int dr_emit_select(const dr_items_view_t *items, const int64_t *idx, const float *score, size_t n,
                   int k, const dr_user_t *user, dr_emit_topic_best_t *topics,
                   dr_scored_item_t *out, size_t *out_n);

/* ---- the emitter --------------------------------------------------------- */

/* The retrieval path: from min_items items on, each list is ranked from
 * candidates (an HNSW index over [q_i, p_i, b_i], retrieval/dr_retrieval.h, plus
 * the items the sparse terms favour and the most popular) instead of the
 * whole catalog; docs/RETRIEVAL.md measures both paths. */
typedef struct dr_emit_retrieval_conf {
    int64_t min_items;       /* 0: the full scan always */
    int candidates;          /* from the index per list */
    int ef_search;           /* the index's search breadth (>= candidates pays) */
    int M, ef_construction;  /* the graph's links and build breadth */
    int coengaged;           /* co-engagement candidates per list */
    int popular;             /* the most popular items, candidates of every list */
    double sync_ms;          /* index upkeep on the emit thread per emit call, at most */
    double refresh_change;   /* re-insert a row that moved by more than this
                                share of its length */
    int build_threads;       /* threads of the background build of a new
                                index (<= 0: DR_EMIT_BUILD_THREADS) */
    bool persist;            /* save each index built into index_dir and
                                load the saved one at start */
    char index_dir[512];     /* "" : nothing saved or loaded */
    double refresh_pass_ms;  /* the refresh pass looks at no more rows than
                                a whole pass over the catalog in this time
                                allows (0: the whole catalog every call) */
    int64_t audit_every;     /* one list in this many ranked from candidates
                                is ranked again by the full scan, to count the
                                path's recall (dr_emit_stats_t); 0: none */
} dr_emit_retrieval_conf_t;
/* emit.retrieval.build.threads' default: the build's one thread leaves the
 * other core of a 2-core machine to the consume/emit loop. */
#define DR_EMIT_BUILD_THREADS 1

typedef struct dr_emitter_conf {
    int topk;
    int batch;               /* users per sgemm */
    int blas_threads;        /* OpenBLAS threads (process-wide setting) */
    dr_codec_conf_t codec;
    dr_emit_retrieval_conf_t retrieval;
    int threads;             /* threads a batch's lists are scored on, the
                                caller's included (<= 1: the caller's only) */
} dr_emitter_conf_t;

typedef struct dr_emit_stats {
    uint64_t lists;          /* lists produced */
    uint64_t batches;        /* sgemm calls */
    uint64_t produce_retries;
    double score_seconds;    /* time in sgemm + selection */
    uint64_t retrieved_lists; /* lists ranked from candidates (the retrieval path) */
    uint64_t audited_lists;  /* of them, ranked again by the full scan (audit_every) */
    uint64_t audit_hits;     /* items of those exact lists that the published lists hold */
    uint64_t audit_slots;    /* items of those exact lists: recall = hits / slots */
    double audit_seconds;    /* time in those full scans (not in score_seconds) */
    uint64_t index_items;    /* items in the retrieval index */
    uint64_t index_upserts;  /* items (re)inserted into it, ever */
    double index_seconds;    /* time spent keeping it up to date */
    uint64_t index_rebuilds; /* new indexes started (dead slots past a fifth) */
    uint64_t index_rows_checked; /* rows the refresh pass compared with the index */
} dr_emit_stats_t;

typedef struct dr_emitter dr_emitter_t;

/* rk is borrowed (the pipeline's producer); flight is borrowed too and is
 * shared with every other producer of the pipeline. */
int dr_emitter_new(dr_emitter_t **out, rd_kafka_t *rk, const char *topic,
                   const dr_emitter_conf_t *conf, dr_flight_t *flight, char *errstr,
                   size_t errstr_size);
void dr_emitter_free(dr_emitter_t *e); /* NULL ok */
/* At a graceful stop, after the commit: saves the retrieval index that
 * serves (with emit.retrieval.persist), so that the next start loads it as
 * it is now rather than as its last build left it. Stops a build under
 * way. Blocks for the write (~0.2 s per 100k items). 0 (also when there is
 * nothing to save), or DR_EIO / DR_ENOMEM, logged. */
int dr_emitter_save_index(dr_emitter_t *e, const dr_model_t *m);

/* Computes and produces the lists of n users (any n; batched internally),
 * in order. drift[i] (may be NULL) sets the list's drift flag. Records each
 * list's head in users[i]->last_list. *emitted counts the users whose list
 * was handed to the producer. Returns 0, or DR_ENOMEM, DR_EFULL (the produce
 * queue stayed full ~1 s) or DR_EKAFKA: then users[*emitted..n) got no list
 * and the caller tries them again later. */
int dr_emitter_emit(dr_emitter_t *e, const dr_model_t *m, dr_user_t *const *users, size_t n,
                    const bool *drift, int64_t now_ms, size_t *emitted);
/* Produces u's list as of now in place of a list (or tombstone) of u whose
 * delivery failed, under that message's delivery tag and without counting
 * a new message in flight: the commit waiting on the failed one waits on
 * this one. Producing the current list rather than the failed bytes keeps
 * the newest list last on the topic. 0, or DR_ENOMEM, DR_EFULL (try again
 * later), DR_EKAFKA. */
int dr_emitter_reissue(dr_emitter_t *e, const dr_model_t *m, dr_user_t *u, uint64_t tag,
                       int64_t now_ms);
const dr_emit_stats_t *dr_emitter_stats(const dr_emitter_t *e);
/* Fencing of lists: each list then carries the owner epoch of its user's
 * input partition, epochs[u->last_source.partition] (header dr.epoch,
 * common/dr_epoch.h), read at produce time; the caller keeps the array
 * (n entries) current as partitions are assigned. A consumer that keeps per
 * user the highest epoch seen and drops lists below it never takes a list
 * from a former owner that does not know it lost the partition (docs/SCALING.md).
 * Without epochs (the default), or for an epoch of 0, no header. */
void dr_emitter_set_epochs(dr_emitter_t *e, const int64_t *epochs, size_t n);

#endif /* DR_EMIT_H */
