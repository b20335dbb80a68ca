/* emitter_internal.h - what emit.c and retrieve.c (the retrieval path)
 * share inside the emitter module: the emitter's state. Not a public
 * interface: other modules use dr_emit.h. */
#ifndef DR_EMITTER_INTERNAL_H
#define DR_EMITTER_INTERNAL_H

#include "dr_emit.h"
#include "dr_retrieval.h"
#include "dr_workers.h"

#define EXCL_MAX DR_USER_EXCLUDED_MAX /* a user's exclusions: recent and hidden items */
#define DR_EMIT_THREADS_MAX 64 /* emit.threads' largest */

typedef struct dr__retrieval dr__retrieval_t;

struct dr_emitter {
    rd_kafka_t *rk;
    char *topic;
    dr_emitter_conf_t conf;
    dr_flight_t *flight;
    dr_codec_t *codec;
    dr_buf_t buf;
    int dim;
    float *U;                 /* batch × dim */
    float *pop_weight;        /* batch: the users' population-prior weights */
    dr_cooc_sources_t *cooc;  /* batch: the users' co-engagement sources, worked
                                 out once per list (all chunks of the item
                                 matrix, or the retrieval path's two uses) */
    uint8_t *explore;         /* batch: the user's list explores topics */
    dr_emit_topic_best_t *topics; /* batch × DR_EMIT_EXPLORE_TOPICS */
    float *scores;            /* batch × scores_cap_items: one chunk of scores */
    size_t scores_cap_items;  /* <= DR_EMIT_CHUNK_ITEMS */
    dr_scored_item_t *out;    /* batch × topk */
    size_t *out_n;
    dr_exclusions_t *excl;    /* batch */
    int64_t *excl_idx;        /* batch × EXCL_MAX */
    dr_emit_stats_t stats;
    dr_workers_t *workers;    /* the threads a batch's rows are split over (NULL: the caller's only) */
    dr_cooc_scratch_t *hop;   /* one per thread of workers: where each works out co-engagement sources */
    dr__retrieval_t *retr;    /* the retrieval path (retrieve.c); NULL: off */
    bool retr_ready;          /* its index holds the catalog: it serves */
    uint64_t audit_clock;     /* lists ranked from candidates, for audit_every */
    dr_scored_item_t *audit_out; /* topk: the full scan's list of an audited user */
    const int64_t *epochs;    /* the owner epoch of each input partition (dr_emitter_set_epochs) */
    size_t n_epochs;
};

/* A batch of B lists split over the emitter's threads (emit.c, and
 * retrieve.c for the retrieval path): part t of parts takes rows
 * [B·t/parts, B·(t+1)/parts) and writes only their share of the emitter's
 * per-row buffers, reading the model, the users (and the index) meanwhile. */
typedef struct dr__emit_split {
    dr_emitter_t *e;
    const dr_model_t *m;
    const dr_items_view_t *items;
    dr_user_t *const *users;
    size_t B;
    int err[DR_EMIT_THREADS_MAX]; /* each part's (the retrieval path's) */
} dr__emit_split_t;

/* Part `part` of `parts`' rows, [*r0, *r1). */
static inline void dr__emit_rows(const dr__emit_split_t *s, int part, int parts, size_t *r0, size_t *r1) {
    *r0 = s->B * (size_t)part / (size_t)parts;
    *r1 = s->B * (size_t)(part + 1) / (size_t)parts;
}

/* How many parts a batch of B lists is split into (emit.c): at most one
 * per min_rows lists and per thread, and each part past the first has its
 * co-engagement scratch (e->hop[part]) fitted to the catalog (out of
 * memory: 1, on the caller). */
int dr__emit_parts(dr_emitter_t *e, const dr_model_t *m, size_t B, size_t min_rows);

/* The retrieval path (retrieve.c): lists from candidates of an ANN index
 * once the catalog holds conf->retrieval.min_items items. */
int dr__retrieval_new(dr__retrieval_t **out, const dr_emitter_conf_t *conf, char *errstr,
                      size_t errstr_size);
/* Stops a background build under way (within about one insert) and joins
 * its thread, then frees everything. */
void dr__retrieval_free(dr__retrieval_t *r);
/* dr_emitter_save_index's work (r may be NULL). */
int dr__retrieval_save(dr__retrieval_t *r, const dr_model_t *m);
/* Brings the index closer to the items within the conf's time budget, on
 * the emit thread: takes over an index the builder thread has finished,
 * copies rows for a build to come, adds new items, re-inserts changed
 * ones. Never waits for the builder. True when the index is ready to
 * serve: then dr__retrieval_score serves users. */
bool dr__retrieval_sync(dr__retrieval_t *r, const dr_model_t *m, const dr_items_view_t *items,
                        dr_emit_stats_t *stats);
/* Scores users[0..B) from candidates into e->out / e->out_n (e->U, the
 * exclusions and the explore flags gathered). 0 or DR_ENOMEM. */
int dr__retrieval_score(dr_emitter_t *e, const dr_model_t *m, const dr_items_view_t *items,
                        dr_user_t *const *users, size_t B);

#endif /* DR_EMITTER_INTERNAL_H */
