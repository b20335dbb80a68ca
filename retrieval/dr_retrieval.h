/* dr_retrieval.h - approximate maximum-inner-product retrieval over the item
 * matrix (issue 17): for a user vector u, the candidate items i with the
 * highest score(u, i) = u·q_i + b_i, from an HNSW graph (hnswlib, wrapped by
 * retrieval/ann.cpp) instead of a scan of the whole catalog. The caller
 * recomputes each candidate's exact score (its current q_i and b_i, plus any
 * sparse terms) and selects its top K: the index only proposes.
 *
 * Items are named by their index in the caller's item matrix (the learner's
 * items view): 0 <= idx < 2^40. Vectors are indexed as [q_i, b_i - bias_offset] and
 * searched with [u, 1], an inner-product space: the offset changes no score,
 * only the graph's shape (README.md: with raw biases, which are mostly
 * negative, recall@50 at 100k clustered items was 0.13 instead of 0.97).
 *
 * Following vectors that change online: dr_ann_upsert() new items and those
 * whose vector or bias moved far (the cost of an insert, ~200 us at 1M
 * items), and rebuild in the background now and then (dr_ann_build() into a
 * new index, then swap), which also reclaims dead slots. What an index that
 * lags costs in recall, and the policy: README.md, docs/RETRIEVAL.md.
 *
 * Errors: 0 or a negative DR_E* code (common/dr_err.h); no C++ exception
 * crosses this header.
 *
 * Threads: searches may run concurrently with each other (const index);
 * dr_ann_upsert, dr_ann_build, dr_ann_build_stoppable, dr_ann_remove,
 * dr_ann_set_ef and dr_ann_free need the index to themselves (no search
 * running). Different indexes are independent: one may be built on a
 * thread while another serves searches on another. */
#ifndef DR_RETRIEVAL_H
#define DR_RETRIEVAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DR_ANN_MAX_DIM 1024

typedef struct dr_ann dr_ann_t;

typedef struct dr_ann_conf {
    int dim;             /* length of q_i and u, 1..DR_ANN_MAX_DIM */
    size_t capacity;     /* initial item slots (grows by doubling), >= 1 */
    int M;               /* links per node (level 0 has 2M), 2..256 */
    int ef_construction; /* candidate list while inserting, >= 1 */
    int ef_search;       /* candidate list while searching, >= 1; a search
                            of k uses max(ef_search, k) */
    float bias_offset;   /* subtracted from every b_i inside the index: the
                            items' mean bias is a good value (0: none) */
    uint64_t seed;       /* level generator */
    int replace_in_place; /* 0: a replaced item is marked deleted and inserted
                             again (its old slot stays until a rebuild);
                             1: hnswlib's in-place update, no new slot but
                             slower and worse for recall (README.md) */
} dr_ann_conf_t;

/* Defaults measured on 2 cores, d = 32 (docs/RETRIEVAL.md): M 48,
 * ef_construction 100, ef_search 50 (recall@50 0.958 at 1M clustered
 * items), capacity 1024, offset 0, seed 100, replace_in_place 0. */
void dr_ann_conf_default(dr_ann_conf_t *conf, int dim);

/* 0, DR_ECONFIG (a bad setting, explained in errstr), DR_EINVAL (NULL
 * out or conf) or DR_ENOMEM. */
int dr_ann_new(dr_ann_t **out, const dr_ann_conf_t *conf, char *errstr, size_t errstr_size);
void dr_ann_free(dr_ann_t *a); /* NULL ok */

/* Adds item idx (0 <= idx < 2^40), or replaces its vector (conf.dim
 * floats) and bias (and brings it back if it was removed). Grows the
 * capacity when full. 0, DR_EINVAL (NULL, idx out of range, a value not
 * finite) or DR_ENOMEM (then the item may be absent). */
int dr_ann_upsert(dr_ann_t *a, int64_t idx, const float *vec, float bias);

/* Upserts items 0..n-1 (vecs: n rows of conf.dim floats, row-major, e.g.
 * an items view's q and bias) with `threads` threads (>= 1; 2 on a 2-core machine halves a
 * 1M-item build). Into a new index this is the periodic rebuild; rows
 * already in the index are updated in place. 0, or as dr_ann_upsert (then
 * some rows may be in and some not). */
int dr_ann_build(dr_ann_t *a, const float *vecs, const float *bias, size_t n, int threads);

/* dr_ann_build for a build that runs beside other work and may have to
 * stop (the emitter's background build, emitter/retrieve.c): should_stop
 * (may be NULL) is called with ctx by every building thread before each
 * row, so from several threads at once (let it read an atomic flag); once
 * it returns nonzero the build stops within about one insert per thread
 * and returns DR_ESTOPPED, some rows in and some not. A row whose vector or
 * bias is not finite is left out, as dr_ann_upsert would refuse it, rather
 * than failing the build. *built (may be NULL) counts the rows put in. 0,
 * DR_ESTOPPED, DR_EINVAL (NULL index or rows, threads < 1, n over the
 * largest capacity) or DR_ENOMEM. */
int dr_ann_build_stoppable(dr_ann_t *a, const float *vecs, const float *bias, size_t n, int threads,
                           int (*should_stop)(void *ctx), void *ctx, size_t *built);

/* Takes item idx out of the results (its slot stays in the graph until a
 * rebuild). 0, DR_ENOTFOUND (absent or already removed), DR_EINVAL. */
int dr_ann_remove(dr_ann_t *a, int64_t idx);

/* Up to k candidates for query u (conf.dim floats), best first by the
 * indexed score: out_idx[0..*out_n), and out_score the score of the stored
 * vector (q_i·u + b_i as of its last upsert; may be NULL). *out_n < k only
 * when fewer items are indexed (or some are unreachable in the graph: rare).
 * 0, or DR_EINVAL (NULL, k == 0, a value not finite) / DR_ENOMEM. */
int dr_ann_search(const dr_ann_t *a, const float *query, size_t k, int64_t *out_idx,
                  float *out_score, size_t *out_n);

/* The vector (conf.dim floats into vec) and bias the index holds for item
 * idx, as of its last upsert (the bias within a rounding of what was given):
 * what a caller compares with the item's current row to decide whether it
 * moved enough to upsert again. vec or bias may be NULL. 0, DR_ENOTFOUND
 * (absent or removed), DR_EINVAL (NULL index, idx < 0). Safe beside
 * searches. */
int dr_ann_get(const dr_ann_t *a, int64_t idx, float *vec, float *bias);

/* Changes ef_search (the recall/speed knob) without a rebuild. 0, DR_EINVAL. */
int dr_ann_set_ef(dr_ann_t *a, int ef_search);

/* Saving an index, so that a restart serves from it at once instead of
 * building one (~15 min of a core at 1M items, docs/RETRIEVAL.md).
 *
 * dr_ann_save writes the index into directory dir (which must exist) as
 * two files: the graph, and index.meta, which names it and says which item
 * each saved idx was (ids[idx] for idx < n_ids; the caller's indices are
 * its own and change across a restart, ids do not). index.meta is replaced
 * last, by rename, so a crash mid-save leaves the previous save whole; the
 * previous graph file is removed after. 0, DR_EINVAL (NULL, or an idx in the
 * index at or past n_ids), DR_EIO (errstr says what failed).
 *
 * dr_ann_load reads what dr_ann_save wrote and names its items by the ids
 * of now: an item saved as id X becomes idx j where ids[j] == X (ids[j] < 0:
 * row j holds no item); a saved item whose id is not in ids is removed.
 * conf gives the dimension and the graph's M, which must be the saved ones
 * (else DR_ECONFIG: a build is due), and ef_search; the bias offset is the
 * saved one (the stored vectors are offset by it). *kept: the items it
 * holds afterwards; rows of ids it does not hold are the caller's to
 * upsert. DR_ENOTFOUND (nothing saved), DR_ECONFIG, DR_ECORRUPT (a file cut
 * short or not ours), DR_ENOMEM. Neither runs beside a search. */
int dr_ann_save(const dr_ann_t *a, const char *dir, const int64_t *ids, size_t n_ids, char *errstr,
                size_t errstr_size);
int dr_ann_load(dr_ann_t **out, const char *dir, const dr_ann_conf_t *conf, const int64_t *ids, size_t n_ids,
                size_t *kept, char *errstr, size_t errstr_size);

size_t dr_ann_count(const dr_ann_t *a);    /* items indexed and not removed (0 for NULL) */
size_t dr_ann_capacity(const dr_ann_t *a); /* slots allocated (0 for NULL) */
/* Slots of removed items and of replaced copies (replace_in_place = 0):
 * still walked by searches and held in memory until a rebuild; a rebuild
 * is due when they grow past ~20% of dr_ann_count(). 0 for NULL. */
size_t dr_ann_dead(const dr_ann_t *a);
/* Heap bytes the index holds (graph, vectors, id table, locks): an estimate
 * from its sizes, within a few % of malloc's count (bench/retrieval.sh). */
size_t dr_ann_bytes(const dr_ann_t *a);

#ifdef __cplusplus
}
#endif

#endif /* DR_RETRIEVAL_H */
