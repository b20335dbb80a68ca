/* emit.c - turns changed users into published lists: gather û+v_u rows,
 * score them in batches (topk.c), encode Recommendations, produce keyed by
 * user_id with the delivery epoch in the message opaque. */
#include "dr_emit.h"

#include <cblas.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_epoch.h"
#include "dr_key.h"
#include "dr_err.h"
#include "dr_log.h"
#include "emitter_internal.h"

int dr_emitter_new(dr_emitter_t **out, rd_kafka_t *rk, const char *topic,
                   const dr_emitter_conf_t *conf, dr_flight_t *flight, char *errstr, size_t n) {
    *out = NULL;
    if (conf->topk < 1 || conf->batch < 1) {
        snprintf(errstr, n, "emit.topk and emit.batch must be >= 1");
        return DR_ECONFIG;
    }
    if (conf->threads > DR_EMIT_THREADS_MAX) {
        snprintf(errstr, n, "emit.threads must be at most %d", DR_EMIT_THREADS_MAX);
        return DR_ECONFIG;
    }
    dr_emitter_t *e = calloc(1, sizeof(*e));
    if (!e) goto out_nomem;
    e->rk = rk;
    e->conf = *conf;
    e->flight = flight;
    size_t b = (size_t)conf->batch;
    e->topic = strdup(topic);
    e->out = malloc(b * (size_t)conf->topk * sizeof(*e->out));
    e->out_n = malloc(b * sizeof(*e->out_n));
    e->excl = malloc(b * sizeof(*e->excl));
    e->excl_idx = malloc(b * EXCL_MAX * sizeof(*e->excl_idx));
    e->pop_weight = malloc(b * sizeof(*e->pop_weight));
    e->cooc = malloc(b * sizeof(*e->cooc));
    e->explore = malloc(b * sizeof(*e->explore));
    e->topics = malloc(b * DR_EMIT_EXPLORE_TOPICS * sizeof(*e->topics));
    e->audit_out = malloc((size_t)conf->topk * sizeof(*e->audit_out));
    if (!e->topic || !e->out || !e->out_n || !e->excl || !e->excl_idx || !e->pop_weight ||
        !e->cooc || !e->explore || !e->topics || !e->audit_out)
        goto out_nomem;
    /* OpenBLAS's idle threads spin (sched_yield) between calls and would take
     * the loop thread's core on a small machine; one thread is the default. */
    if (conf->blas_threads > 0) openblas_set_num_threads(conf->blas_threads);
    int err = dr_codec_new(&e->codec, &conf->codec, errstr, n);
    if (!err) err = dr__retrieval_new(&e->retr, conf, errstr, n);
    if (!err && (err = dr_workers_new(&e->workers, conf->threads)) != 0)
        snprintf(errstr, n, "cannot start %d scoring threads: %s", conf->threads - 1, dr_strerror(err));
    if (!err && !(e->hop = calloc((size_t)dr_workers_threads(e->workers), sizeof(*e->hop))))
        goto out_nomem;
    if (err) {
        dr_emitter_free(e);
        return err;
    }
    *out = e;
    return 0;
out_nomem:
    dr_emitter_free(e);
    snprintf(errstr, n, "out of memory creating the emitter");
    return DR_ENOMEM;
}

int dr_emitter_save_index(dr_emitter_t *e, const dr_model_t *m) {
    return e ? dr__retrieval_save(e->retr, m) : 0;
}

void dr_emitter_free(dr_emitter_t *e) {
    if (!e) return;
    dr_codec_free(e->codec);
    dr__retrieval_free(e->retr);
    for (int t = 0; e->hop && t < dr_workers_threads(e->workers); t++) dr_cooc_scratch_free(&e->hop[t]);
    free(e->hop);
    dr_workers_free(e->workers);
    dr_buf_free(&e->buf);
    free(e->topic);
    free(e->U);
    free(e->scores);
    free(e->out);
    free(e->out_n);
    free(e->excl);
    free(e->excl_idx);
    free(e->pop_weight);
    free(e->cooc);
    free(e->explore);
    free(e->topics);
    free(e->audit_out);
    free(e);
}

const dr_emit_stats_t *dr_emitter_stats(const dr_emitter_t *e) { return &e->stats; }

void dr_emitter_set_epochs(dr_emitter_t *e, const int64_t *epochs, size_t n) {
    e->epochs = epochs;
    e->n_epochs = epochs ? n : 0;
}

/* Makes the scratch buffers fit the current catalog and dimension. */
static int fit_buffers(dr_emitter_t *e, int dim, size_t n_items) {
    size_t b = (size_t)e->conf.batch;
    if (e->dim != dim) {
        float *U = realloc(e->U, b * (size_t)dim * sizeof(float));
        if (!U) return DR_ENOMEM;
        e->U = U;
        e->dim = dim;
    }
    /* dr_emit_topk scores a chunk at a time: the scratch stops growing at
     * batch × DR_EMIT_CHUNK_ITEMS floats, whatever the catalog size */
    size_t need = dr_emit_scratch_items(n_items);
    if (need > e->scores_cap_items) {
        size_t cap = dr_emit_scratch_items(need + need / 2 + 1024);
        float *s = realloc(e->scores, b * cap * sizeof(float));
        if (!s) return DR_ENOMEM;
        e->scores = s;
        e->scores_cap_items = cap;
    }
    return 0;
}

/* Fills row r of U, the user's population-prior weight and its exclusions. */
static void gather_user(dr_emitter_t *e, const dr_model_t *m, const dr_user_t *u, size_t r) {
    dr_model_user_vector(m, u, e->U + r * (size_t)e->dim);
    e->pop_weight[r] = dr_model_pop_weight(m, u);
    e->explore[r] = dr_user_exploring(dr_model_conf(m), u);
    int64_t *idx = e->excl_idx + r * EXCL_MAX;
    e->excl[r].idx = idx;
    e->excl[r].n = dr_model_excluded_rows(m, u, idx);
    e->excl[r].user = u;
}

/* Produces row r's list for u under delivery tag `tag`; `counted`: a new
 * message in flight (false: it replaces a failed one whose count stands). */
static int produce_list(dr_emitter_t *e, const dr_model_t *m, dr_user_t *u, size_t r,
                        bool drift, int64_t now_ms, uint64_t tag, bool counted) {
    const dr_scored_item_t *items = e->out + r * (size_t)e->conf.topk;
    dr_recs_t recs = {u->user_id, items, e->out_n[r], now_ms, dr_model_version(m), drift,
                      u->last_source};
    int err = dr_codec_encode_recs(e->codec, &recs, &e->buf);
    if (err) return err;
    char key[DR_ID_KEY_MAX];
    size_t klen = dr_id_key(key, u->user_id);
    int32_t part = u->last_source.partition;
    int64_t epoch = part >= 0 && (size_t)part < e->n_epochs ? e->epochs[part] : 0;
    rd_kafka_headers_t *h = epoch > 0 ? dr_epoch_headers(epoch) : NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        e->rk, RD_KAFKA_V_TOPIC(e->topic), RD_KAFKA_V_KEY(key, klen),
        RD_KAFKA_V_VALUE(e->buf.data, e->buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(dr_msg_opaque(tag, DR_MSG_RECS)), RD_KAFKA_V_END);
    if (kerr && h) rd_kafka_headers_destroy(h);
    if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL) return DR_EFULL;
    if (kerr) {
        dr_log(DR_LOG_ERROR, "emitter", "produce failed | topic=%s err=\"%s\"", e->topic,
               rd_kafka_err2str(kerr));
        return DR_EKAFKA;
    }
    if (counted) dr_flight_sent(e->flight);
    e->stats.lists++;
    u->last_list_len = (uint8_t)(e->out_n[r] < DR_LAST_LIST ? e->out_n[r] : DR_LAST_LIST);
    for (unsigned j = 0; j < u->last_list_len; j++) {
        u->last_list[j] = items[j].item_id;
        u->last_list_score[j] = items[j].score;
    }
    return 0;
}

/* Produces lists[from..B); on a full queue serves delivery reports and tries
 * again, for at most ~1 s, so a stalled broker surfaces as DR_EFULL. */
static int produce_batch(dr_emitter_t *e, const dr_model_t *m, dr_user_t *const *users,
                         size_t B, const bool *drift, int64_t now_ms, size_t *done) {
    for (size_t r = 0; r < B; r++) {
        int err, tries = 0;
        while ((err = produce_list(e, m, users[r], r, drift && drift[r], now_ms, e->flight->epoch,
                                   true)) == DR_EFULL &&
               tries++ < 100) {
            e->stats.produce_retries++;
            rd_kafka_poll(e->rk, 10);
        }
        if (err) return err;
        (*done)++;
    }
    return 0;
}

/* The batch being scored, for add_sparse_terms. */
typedef struct batch_ctx {
    const dr_model_t *m;
    dr_user_t *const *users;
    const dr_cooc_sources_t *cooc; /* one per user */
} batch_ctx_t;

/* The terms that touch few items (co-engagement), run for a while only
 * (the trend term after a population-wide drift) or are off by default
 * (freshness). */
static void add_sparse_terms(void *ctx, size_t r, float *row, size_t first, size_t n) {
    const batch_ctx_t *b = ctx;
    dr_model_add_coengagement_sources(b->m, &b->cooc[r], row, first, n);
    dr_model_add_trend_range(b->m, b->users[r], row, first, n);
    dr_model_add_fresh_range(b->m, row, first, n);
}

/* Fewer rows per thread than this are scored on fewer threads: waking a
 * thread costs about what scoring a few rows does. */
#define ROWS_PER_THREAD_MIN 16

int dr__emit_parts(dr_emitter_t *e, const dr_model_t *m, size_t B, size_t min_rows) {
    size_t most = B / min_rows, threads = (size_t)dr_workers_threads(e->workers);
    int parts = most < 1 ? 1 : most < threads ? (int)most : (int)threads;
    for (int t = 1; parts > 1 && t < parts; t++)
        if (dr_cooc_scratch_fit(&e->hop[t], m) != 0) parts = 1;
    return parts;
}

/* The full scan of one part's rows (dr__emit_split_t): into its share of
 * the scratch and of out, its co-engagement sources worked out in a
 * scratch of its own (part 0, on the caller: the model's). */
static void score_rows(void *ctx, int part, int parts) {
    const dr__emit_split_t *s = ctx;
    dr_emitter_t *e = s->e;
    size_t r0, r1;
    dr__emit_rows(s, part, parts, &r0, &r1);
    size_t k = (size_t)e->conf.topk;
    for (size_t r = r0; r < r1; r++)
        dr_model_cooc_sources_in(s->m, s->users[r], &e->cooc[r], part == 0 ? NULL : &e->hop[part]);
    batch_ctx_t ctx_rows = {s->m, s->users + r0, e->cooc + r0};
    dr_emit_terms_t terms = {e->pop_weight + r0, add_sparse_terms, &ctx_rows, e->explore + r0,
                             e->topics + r0 * DR_EMIT_EXPLORE_TOPICS};
    dr_emit_topk(e->U + r0 * (size_t)e->dim, r1 - r0, s->items, e->conf.topk, e->excl + r0, &terms,
                 e->scores + r0 * e->scores_cap_items, e->out + r0 * k, e->out_n + r0);
}

/* Ranks row r's user again by the full scan, on the caller's thread, and
 * counts how many items of that exact list the list ranked from candidates
 * (row r of out) holds: the retrieval path's recall where it is paid, with
 * the items learning and the index following them at its upkeep's pace
 * (docs/RETRIEVAL.md, "Recall in the live pipeline"). */
static void audit_row(dr_emitter_t *e, const dr_model_t *m, const dr_items_view_t *items,
                      dr_user_t *const *users, size_t r) {
    double t0 = dr_mono_s();
    dr_model_cooc_sources_in(m, users[r], &e->cooc[r], NULL);
    batch_ctx_t ctx = {m, users + r, e->cooc + r};
    dr_emit_terms_t terms = {e->pop_weight + r, add_sparse_terms, &ctx, e->explore + r,
                             e->topics + r * DR_EMIT_EXPLORE_TOPICS};
    size_t n = 0, hits = 0, k = (size_t)e->conf.topk;
    dr_emit_topk(e->U + r * (size_t)e->dim, 1, items, e->conf.topk, e->excl + r, &terms, e->scores,
                 e->audit_out, &n);
    const dr_scored_item_t *served = e->out + r * k;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < e->out_n[r]; j++)
            if (served[j].item_id == e->audit_out[i].item_id) {
                hits++;
                break;
            }
    e->stats.audited_lists++;
    e->stats.audit_hits += hits;
    e->stats.audit_slots += n;
    e->stats.audit_seconds += dr_mono_s() - t0;
}

/* Scores users[0..B) (B <= the batch size) into the rows of out. */
static void score_batch(dr_emitter_t *e, const dr_model_t *m, const dr_items_view_t *items,
                        dr_user_t *const *users, size_t B) {
    double t0 = dr_mono_s();
    for (size_t r = 0; r < B; r++) gather_user(e, m, users[r], r);
    int err = e->retr_ready ? dr__retrieval_score(e, m, items, users, B) : DR_EAGAIN;
    if (err) { /* the full scan: small catalogs, an index not ready, or out of memory */
        dr__emit_split_t split = {e, m, items, users, B, {0}};
        dr_workers_run(e->workers, score_rows, &split, dr__emit_parts(e, m, B, ROWS_PER_THREAD_MIN));
        e->stats.batches++;
    }
    e->stats.score_seconds += dr_mono_s() - t0;
    uint64_t every = e->conf.retrieval.audit_every > 0 ? (uint64_t)e->conf.retrieval.audit_every : 0;
    for (size_t r = 0; !err && every && r < B; r++)
        if (++e->audit_clock % every == 0) audit_row(e, m, items, users, r);
}

int dr_emitter_emit(dr_emitter_t *e, const dr_model_t *m, dr_user_t *const *users, size_t n,
                    const bool *drift, int64_t now_ms, size_t *emitted) {
    dr_items_view_t items;
    *emitted = 0;
    dr_model_items(m, &items);
    int err = fit_buffers(e, items.dim, items.n);
    if (err) return err;
    e->retr_ready = dr__retrieval_sync(e->retr, m, &items, &e->stats);
    for (size_t start = 0; start < n; start += (size_t)e->conf.batch) {
        size_t B = n - start < (size_t)e->conf.batch ? n - start : (size_t)e->conf.batch;
        score_batch(e, m, &items, users + start, B);
        err = produce_batch(e, m, users + start, B, drift ? drift + start : NULL, now_ms, emitted);
        if (err) return err;
    }
    return 0;
}

int dr_emitter_reissue(dr_emitter_t *e, const dr_model_t *m, dr_user_t *u, uint64_t tag,
                       int64_t now_ms) {
    dr_items_view_t items;
    dr_model_items(m, &items);
    int err = fit_buffers(e, items.dim, items.n);
    if (err) return err;
    score_batch(e, m, &items, &u, 1);
    return produce_list(e, m, u, 0, false, now_ms, tag, false);
}
