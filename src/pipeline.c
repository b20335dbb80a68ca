/* pipeline.c - wires ingest, learner, state and emitter on one libuv loop,
 * and implements the commit protocol described in dr_pipeline.h. */
#include "dr_pipeline.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dr_bytes.h"
#include "dr_emit.h"
#include "dr_epoch.h"
#include "dr_key.h"
#include "dr_err.h"
#include "dr_handoff.h"
#include "dr_ingest.h"
#include "dr_log.h"
#include "dr_schema_registry.h"
#include "dr_state.h"
#include "dr_withdraw.h"

/* How long a revoke or shutdown commit may wait for deliveries. */
#define FLUSH_STEP_MS 100
/* A commit's batch buffer up to this size is kept for the next commit;
 * a larger one (a revoke after a long pause) is given back. */
#define COMMIT_BUFFER_KEPT ((size_t)64 << 20)

struct dr_pipeline {
    dr_partition_set_t *partitions; /* ingest.partitions parsed; NULL: the group assigns */
    uv_loop_t *loop;
    dr_config_t cfg;
    dr_state_t *state;
    dr_user_cache_t *cache;
    dr_model_t *model;
    dr_codec_t *codec;           /* decoding on the loop thread */
    dr_schema_source_t *registry; /* schema.registry.url's client, or NULL */
    rd_kafka_t *producer;
    rd_kafka_queue_t *producer_queue;
    int producer_pipe[2];
    dr_flight_t flight;
    dr_emitter_t *emitter;
    dr_ingest_t *ingest;
    dr_catalog_t *catalog;       /* NULL without topic.catalog */
    dr_changelog_t *changelog;   /* NULL with topic.changelog=- */
    dr_standby_t *standby;       /* NULL unless state.standby.interval.ms */
    dr_model_sync_t *sync;       /* NULL with topic.model=- */
    double last_sync;            /* when item changes were last published */
    int64_t synced_version;      /* the prior's version then */
    /* per events partition: records put in the changelog by the commit being
     * built (each needs a marker after it), and the offset the partition
     * started from when it was assigned (the marker of a partition that has
     * consumed nothing yet) */
    bool changelog_touched[DR_INGEST_MAX_PARTITIONS];
    int64_t marked_offset[DR_INGEST_MAX_PARTITIONS]; /* last marker produced, -1: none */
    int64_t marked_ms[DR_INGEST_MAX_PARTITIONS];     /* ... and when (monotonic ms) */
    int64_t start_offset[DR_INGEST_MAX_PARTITIONS];
    /* where the open commit's markers landed (changelog offset + 1, -1:
     * none): stored with the commit, so that the next assignment of the
     * partition reads only what follows its marker */
    int64_t marker_landed[DR_INGEST_MAX_PARTITIONS];
    /* per events partition: whether this instance may write its changelog
     * (from its assignment until it is revoked or lost), the epoch it writes
     * under (dr_handoff.h, fencing), and the epoch of its last marker */
    bool changelog_owned[DR_INGEST_MAX_PARTITIONS];
    int64_t changelog_epoch[DR_INGEST_MAX_PARTITIONS];
    int64_t marked_epoch[DR_INGEST_MAX_PARTITIONS];
    /* where our next changelog message should land (-1: not known): one
     * that lands further on means someone else wrote in between (a former
     * owner), and the partition's users are written again (foreign) so
     * that compaction keeps ours */
    int64_t changelog_next[DR_INGEST_MAX_PARTITIONS];
    bool changelog_foreign[DR_INGEST_MAX_PARTITIONS];
    /* reports since an acknowledgement without an offset: their offsets
     * are not where they landed (changelog_delivered) */
    bool changelog_unanchored[DR_INGEST_MAX_PARTITIONS];
    uv_poll_t producer_poll;
    uv_timer_t emit_timer, commit_timer, housekeeping_timer;
    int open_handles;
    bool started, stopping, stopped;
    /* topic.catalog.first.ms: events wait for the catalog to be read */
    bool events_waiting;
    double catalog_wait_t0, catalog_wait_log_at;
    /* users owed a list, in the order they changed */
    int64_t *pending_ids;
    size_t n_pending, cap_pending;
    dr_user_t **emit_users;      /* scratch for one emit call */
    size_t cap_emit_users;
    /* lists and tombstones whose delivery failed: produced again as the
     * user's current list, under the failed message's delivery tag */
    struct reissue { int64_t user_id; int32_t partition; uint64_t tag; } *reissue;
    size_t n_reissue, cap_reissue;
    int64_t batch_offsets[DR_INGEST_MAX_PARTITIONS]; /* next offsets in commit_batch, -1: none */
    int batch_n_offsets;
    int64_t *withdrawn;          /* items newly blocked or deleted since the last emit */
    size_t n_withdrawn, cap_withdrawn;
    /* withdrawn items whose cached users were served, the stored ones not
     * yet (they wait for the scan under way, if any) */
    int64_t *unscanned;
    size_t n_unscanned, cap_unscanned;
    dr_withdraw_scan_t *withdraw_scan;
    /* the stored users scans found, served emit.withdraw.users.per.tick an
     * emit tick (from wq_head), checked against every item they were found
     * for: a takedown of a post in millions of lists neither holds the loop
     * nor loads them all into the cache at once */
    dr_withdraw_found_t *wq;
    size_t wq_head, wq_n, wq_cap;
    int64_t *wq_items; /* sorted */
    size_t n_wq_items, cap_wq_items;
    /* So that neither a crash nor a partition's move leaves a withdrawal
     * half done, stored with the commits (meta "withdrawals"): an owned
     * partition is clean again once every withdrawal was served
     * (withdrawals_idle); withdrawals are forgotten after
     * RECENT_WITHDRAWAL_MS. A partition taken while unchecked, or restored
     * from another owner's changelog, is scanned for the recent items and
     * every blocked one (recheck). */
    dr_withdraw_ledger_t ledger;
    bool ledger_stored;          /* as the last commit built holds it */
    bool recheck[DR_INGEST_MAX_PARTITIONS];
    bool recheck_running;        /* the scan under way is a recheck */
    int64_t *excluded;           /* scratch: the items a recheck looks for */
    size_t cap_excluded;
    /* the events topic's partition count the state was built with (-1:
     * unknown), and whether the store holds it (check_partition_count) */
    int32_t partition_count;
    bool partition_count_stored;
    /* a commit built and waiting for its deliveries */
    dr_state_batch_t *commit_batch;
    dr_state_batch_t *spare_batch; /* the last commit's, emptied: its buffer is reused */
    /* the next commit's batch while its users are encoded in steps
     * (state.commit.step.users), before it is sealed and becomes commit_batch */
    dr_state_batch_t *building_batch;
    uint64_t consumed_at_batch_end; /* records consumed up to the last batch's end */
    bool kept_up;                   /* the last batch took what the queue held */
    /* The commit's RocksDB write runs on libuv's thread pool, so that the
     * loop goes on consuming and emitting meanwhile (a second's batch takes
     * tens of ms to write, which was the tail of the lists' freshness). */
    uv_work_t write_req;
    bool write_req_active;       /* queued, its after-callback not run yet */
    bool write_in_flight;        /* commit_batch is being written; its end not handled */
    pthread_mutex_t write_lock;  /* guards write_done, write_rc, write_err */
    pthread_cond_t write_cond;
    bool write_done;
    int write_rc;
    char write_err[512];
    uint64_t inputs_at_build;    /* inputs_handled() when the last commit was built */
    dr_pipeline_stats_t stats;
    dr_adwin_pop_t global_drift; /* over blocks of all users' drift samples */
    double batch_start;          /* when the batch in hand began applying (0: none) */
    double rate_window_start;    /* ingest.max.rate: start of the current second */
    uint64_t rate_window_base;   /* records consumed before it */
    bool rate_paused;
    dr_event_observer_fn observer;
    void *observer_ctx;
    bool observer_ranks;      /* rank clicks for the observer ... */
    dr_rank_filter_fn rank_filter; /* ... those it needs (NULL: all) */
    const char **kafka_keys, **kafka_values;
};

const double dr_hist_bounds[DR_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,   0.25,   0.5,   1.0,  2.5,   10.0};

void dr_histogram_observe(dr_histogram_t *h, double seconds) {
    int b = 0;
    while (b < DR_HIST_BUCKETS && seconds > dr_hist_bounds[b]) b++;
    h->bucket[b]++;
    h->sum += seconds;
    h->count++;
}

/* ---- users ---------------------------------------------------------------- */

/* The user's state: cached, else stored under the events partition that
 * carries the user, else new at the prior (its home partition set, the key
 * its record is stored under). */
static int get_user(dr_pipeline_t *p, int32_t partition, int64_t user_id, dr_user_t **out) {
    dr_user_t *u = dr_user_cache_get(p->cache, user_id);
    if (u) { *out = u; return 0; }
    dr_user_cache_count_miss(p->cache);
    uint8_t *rec = NULL;
    size_t len = 0;
    int err = dr_state_get_user(p->state, partition, user_id, &rec, &len);
    if (err == 0) {
        err = dr_user_decode(user_id, &p->cfg.learner, rec, len, &u);
        free(rec);
        if (err == DR_ECORRUPT) {
            dr_log(DR_LOG_ERROR, "pipeline", "corrupt user record, starting from the prior | user=%" PRId64, user_id);
            err = 0;
            u = NULL;
        }
        if (err) return err;
    } else if (err != DR_ENOTFOUND) {
        return err;
    }
    if (!u && !(u = dr_user_new_conf(user_id, &p->cfg.learner))) return DR_ENOMEM;
    u->last_source.partition = partition;
    if ((err = dr_user_cache_put(p->cache, u))) { dr_user_free(u); return err; }
    *out = u;
    return 0;
}

/* Marks u as owed a list. A user is listed once in pending_ids while
 * emit_pending is set; an entry whose user was served meanwhile is skipped. */
static int owe_list(dr_pipeline_t *p, dr_user_t *u) {
    if (u->emit_pending) return 0;
    if (p->n_pending == p->cap_pending) {
        size_t cap = p->cap_pending ? p->cap_pending * 2 : 4096;
        int64_t *ids = realloc(p->pending_ids, cap * sizeof(*ids));
        if (!ids) return DR_ENOMEM;
        p->pending_ids = ids;
        p->cap_pending = cap;
    }
    p->pending_ids[p->n_pending++] = u->user_id;
    u->emit_pending = 1;
    u->owed_since = dr_mono_s();
    return 0;
}

/* How long a withdrawn item is remembered for a partition that changes
 * owner: far longer than a takeover (a session timeout) plus the serving of
 * a withdrawal. The ledger is rewritten with each commit that adds one: at
 * a steady 10 withdrawals a second it holds 36,000 (576 KB); beyond
 * RECENT_WITHDRAWALS_MAX the oldest go first (a blocked item is still found
 * through the model; a deleted one is not). */
#define RECENT_WITHDRAWAL_MS (3600LL * 1000)
#define RECENT_WITHDRAWALS_MAX 262144 /* 4 MiB stored */

#define HIT_K 10 /* hr@10 of clicks against the last list's head */
_Static_assert(HIT_K <= DR_OBSERVED_RANK_MAX, "eval.rank.clicks reuses the observer's rank");

static int head_hit(const dr_user_t *u, int64_t item_id) {
    if (u->last_list_len == 0) return -1;
    for (unsigned i = 0; i < u->last_list_len && i < HIT_K; i++)
        if (u->last_list[i] == item_id) return 1;
    return 0;
}

const char *const dr_cut_reason_names[DR_CUT__COUNT] = {"readapted", "improving", "control", "small"};

bool dr_pipeline_drift_arm(const dr_pipeline_t *p, int64_t user_id) {
    return dr_model_drift_handled(p->model, user_id);
}

static int emit_users(dr_pipeline_t *p, dr_user_t **users, const bool *drift, size_t n,
                      size_t *done);
static void fail(dr_pipeline_t *p, const char *what, const char *detail);

/* A cut of u's detector. In the drift arm, a cut in the worsening direction
 * re-adapts u from the prior (dr_learner_readapt) and publishes its new
 * list at once, flagged drift = true; an improving cut (the lists serve u
 * better than before) and a control-arm cut are counted only. */
static void handle_drift(dr_pipeline_t *p, dr_user_t *u, const dr_apply_result_t *res,
                         dr_observation_t *obs) {
    p->stats.drift_detections++;
    if (!dr_learner_should_respond(p->model, u, res)) {
        p->stats.drift_cuts[!obs->drift_arm ? DR_CUT_CONTROL : DR_CUT_IMPROVING]++;
        return;
    }
    p->stats.drift_cuts[DR_CUT_READAPTED]++;
    dr_learner_readapt(p->model, u, res->drift_direction);
    obs->readapted = true;
    p->stats.drift_readapted++;
    bool flag = true;
    size_t done = 0;
    if (emit_users(p, &u, &flag, 1, &done) == 0 && done == 1) u->emit_pending = 0;
}

/* The global detector (dr_adwin_pop_t) watches the same signal over all
 * users: a population-wide drift (the lists serve the population clearly
 * worse than before) starts the learner's trend term for the users with
 * drift handling and is logged as a warning; a fall is the model learning.
 * Returns +1 for a population-wide drift, -1 for a fall, 0 otherwise. */
static int observe_global(dr_pipeline_t *p, double sample) {
    dr_adwin_pop_view_t v;
    dr_adwin_pop_cut_t cut = dr_adwin_pop_observe(&p->global_drift, sample, &v);
    if (cut == DR_ADWIN_POP_NONE) return 0;
    p->stats.global_drifts++;
    dr_log(DR_LOG_DEBUG, "pipeline", "global cut | block=%.4f slow=%.4f fast=%.4f before=%.4f after=%.4f",
           v.block, v.slow, v.fast, v.before, v.after);
    if (cut == DR_ADWIN_POP_FALL) {
        p->stats.global_cuts_improving++;
        return -1;
    }
    if (cut == DR_ADWIN_POP_SMALL) {
        p->stats.global_cuts_small++;
        return 0;
    }
    p->stats.global_cuts_worse++;
    dr_model_trend_start(p->model);
    static dr_log_limit_t lim = DR_LOG_LIMIT_INIT(60000, 3);
    uint64_t dropped = 0;
    if (dr_log_allow(&lim, &dropped))
        dr_log(DR_LOG_WARN, "pipeline", "population-wide drift: the drift signal rose, trending items get a boost | level=%.4f now=%.4f positives=%llu detections=%llu suppressed=%llu",
               v.slow, v.fast, (unsigned long long)dr_model_trend_left(p->model),
               (unsigned long long)p->stats.global_drifts, (unsigned long long)dropped);
    return 1;
}

static int on_event(void *ctx, const dr_event_t *ev, int32_t partition, int64_t offset,
                    char *reason, size_t reason_size) {
    dr_pipeline_t *p = ctx;
    dr_user_t *u;
    int err = get_user(p, partition, ev->user_id, &u);
    if (err) {
        dr_log(DR_LOG_ERROR, "pipeline", "cannot load user state, stopping | user=%" PRId64 " err=%s",
               ev->user_id, dr_strerror(err));
        p->stats.failed = true;
        return DR_ESTOPPED;
    }
    int hit = ev->type == DR_EV_IMPRESSION || dr_event_is_hide(ev->type) ? -1 : head_hit(u, ev->item_id);
    if (ev->type == DR_EV_CLICK && hit >= 0) {
        p->stats.clicks_scored++;
        p->stats.click_hits += (uint64_t)hit;
    }
    int64_t model_rank = -1;
    if (p->observer && p->observer_ranks && ev->type == DR_EV_CLICK &&
        (!p->rank_filter || p->rank_filter(p->observer_ctx, ev, u->events_applied + 1)))
        model_rank = dr_model_list_rank_within(p->model, u, ev->item_id, DR_OBSERVED_RANK_MAX);
    if (p->cfg.eval_rank_clicks && ev->type == DR_EV_CLICK) {
        int64_t rank = model_rank >= 0 ? model_rank : dr_model_list_rank_within(p->model, u, ev->item_id, HIT_K);
        p->stats.clicks_ranked++;
        p->stats.rank_hits += rank >= 1 && rank <= HIT_K;
    }
    dr_apply_result_t res;
    uint64_t seed = dr_mix64(((uint64_t)partition << 48) ^ (uint64_t)offset);
    err = dr_learner_apply(p->model, u, ev, seed, &res);
    if (err) {
        if (err == DR_ERANGE) /* the only refusal left: a new item with the catalog full */
            snprintf(reason, reason_size, "catalog full: item %" PRId64 " is new and all %" PRId64
                     " rows (learner.max.items) are taken", ev->item_id, p->cfg.learner.max_items);
        else
            snprintf(reason, reason_size, "learner rejected the event: %s", dr_strerror(err));
        return err;
    }
    u->last_source.partition = partition;
    u->last_source.offset = offset;
    if (p->batch_start == 0) p->batch_start = dr_mono_s();
    dr_observation_t obs = {.hit = hit,
                            .model_rank = model_rank,
                            .loss = res.learned ? res.loss : -1.0f,
                            .drift = res.drift,
                            .drift_direction = res.drift_direction,
                            .drift_arm = dr_pipeline_drift_arm(p, ev->user_id),
                            .user_events = u->events_applied};
    if (res.learned) {
        p->stats.loss_sum += res.loss;
        p->stats.loss_count++;
    }
    for (int k = 0; k < res.n_samples; k++) {
        double x;
        if (!dr_drift_global_sample(&p->cfg.learner, &res, k, p->cfg.global_relative, &x)) continue;
        int dir = observe_global(p, x);
        if (dir && !obs.global_drift) {
            obs.global_drift = true;
            obs.global_direction = dir;
        }
    }
    dr_user_cache_mark_dirty(p->cache, u);
    if ((err = owe_list(p, u))) return DR_ESTOPPED;
    if (res.drift) handle_drift(p, u, &res, &obs);
    if (res.drift_small) p->stats.drift_cuts[DR_CUT_SMALL]++;
    if (p->observer) p->observer(p->observer_ctx, ev, &obs);
    return 0;
}

/* Produces the user's tombstone (a null value: compaction removes the last
 * list) under delivery tag `tag`; the caller counts it in flight, or not
 * when it replaces a failed message. */
static rd_kafka_resp_err_t produce_tombstone(dr_pipeline_t *p, int32_t partition, int64_t user_id,
                                             uint64_t tag) {
    char key[DR_ID_KEY_MAX];
    size_t klen = dr_id_key(key, user_id);
    /* fenced as the lists are (dr_emitter_set_epochs) */
    int64_t epoch = partition >= 0 && partition < DR_INGEST_MAX_PARTITIONS ? p->changelog_epoch[partition] : 0;
    rd_kafka_headers_t *h = epoch > 0 ? dr_epoch_headers(epoch) : NULL;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->producer, RD_KAFKA_V_TOPIC(p->cfg.topic_recs), RD_KAFKA_V_KEY(key, klen),
        RD_KAFKA_V_VALUE(NULL, 0), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(dr_msg_opaque(tag, DR_MSG_RECS)),
        RD_KAFKA_V_END);
    if (err && h) rd_kafka_headers_destroy(h);
    return err;
}

/* An erase request: the cached user is replaced by a fresh one at the prior,
 * marked erased, so that the next commit deletes the stored record (and an
 * event arriving before that commit starts from the prior rather than from
 * the stored record), and a tombstone (null value) for the user goes to the
 * recommendations topic so that compaction removes the last list. */
static int on_erase(void *ctx, int64_t user_id, int32_t partition, int64_t offset, char *reason,
                    size_t reason_size) {
    dr_pipeline_t *p = ctx;
    (void)offset;
    dr_user_t *fresh = dr_user_new_conf(user_id, &p->cfg.learner);
    if (!fresh) return DR_ESTOPPED;
    fresh->erased = 1;
    fresh->last_source.partition = partition;
    if (dr_user_cache_put(p->cache, fresh)) {
        dr_user_free(fresh);
        return DR_ESTOPPED;
    }
    dr_user_cache_mark_dirty(p->cache, fresh);
    rd_kafka_resp_err_t err = produce_tombstone(p, partition, user_id, p->flight.epoch);
    if (err) {
        snprintf(reason, reason_size, "cannot publish the tombstone: %s", rd_kafka_err2str(err));
        return DR_ESTOPPED; /* retried from this record after a restart */
    }
    dr_flight_sent(&p->flight);
    p->stats.erasures++;
    dr_log(DR_LOG_INFO, "pipeline", "user erased | user=%" PRId64, user_id);
    return 0;
}

/* ---- emitting ------------------------------------------------------------- */

/* Publishes the lists owed; returns 0 or the emitter's error (the users not
 * served stay owed). */
static int emit_owed(dr_pipeline_t *p) {
    if (p->n_pending == 0) return 0;
    if (p->cap_emit_users < p->n_pending) {
        dr_user_t **a = realloc(p->emit_users, p->n_pending * sizeof(*a));
        if (!a) return DR_ENOMEM;
        p->emit_users = a;
        p->cap_emit_users = p->n_pending;
    }
    size_t n = 0;
    for (size_t i = 0; i < p->n_pending; i++) {
        dr_user_t *u = dr_user_cache_peek(p->cache, p->pending_ids[i]);
        if (u && u->emit_pending) p->emit_users[n++] = u; /* owed users are dirty: never evicted */
    }
    size_t done = 0;
    int err = emit_users(p, p->emit_users, NULL, n, &done);
    double now = dr_mono_s();
    for (size_t i = 0; i < done; i++) {
        p->emit_users[i]->emit_pending = 0;
        dr_histogram_observe(&p->stats.freshness, now - p->emit_users[i]->owed_since);
    }
    /* keep the ones not served, in order */
    size_t keep = 0;
    for (size_t i = done; i < n; i++) p->pending_ids[keep++] = p->emit_users[i]->user_id;
    p->n_pending = keep;
    p->stats.lists_emitted = dr_emitter_stats(p->emitter)->lists;
    if (err)
        dr_log(DR_LOG_WARN, "pipeline", "lists not published yet, will retry | owed=%zu err=%s",
               keep, dr_strerror(err));
    return err;
}

static int emit_users(dr_pipeline_t *p, dr_user_t **users, const bool *drift, size_t n,
                      size_t *done) {
    double t0 = dr_mono_s();
    int err = dr_emitter_emit(p->emitter, p->model, users, n, drift, dr_now_ms(), done);
    p->stats.emit_seconds += dr_mono_s() - t0;
    return err;
}

/* ---- withdrawing blocked and deleted items --------------------------------- */

/* When a catalog record blocks or deletes an item, every user whose last
 * list holds it is owed a new list: the cached users at the next emit
 * tick, the stored ones once the scan of the store (dr_withdraw.h) found
 * them, emit.withdraw.users.per.tick a tick, without holding the loop
 * meanwhile (docs/COLD-START.md). */

typedef struct sweep {
    dr_pipeline_t *p;
    const int64_t *items;
    size_t n_items;
    dr_withdraw_found_t *owed;
    size_t n, cap;
    const dr_partition_stats_t *parts;
    int n_parts;
} sweep_t;

static bool owned_partition(const dr_partition_stats_t *parts, int n_parts, int32_t part) {
    return part >= 0 && part < n_parts && parts[part].assigned;
}

/* Whether u's last published list may hold one of the items. Only users of
 * partitions this instance owns: the others are another's. */
static bool user_may_hold(dr_pipeline_t *p, const dr_partition_stats_t *parts, int n_parts, const dr_user_t *u,
                          const int64_t *items, size_t n_items) {
    return owned_partition(parts, n_parts, u->last_source.partition) &&
           dr_withdraw_list_may_hold(u->last_list, u->last_list_len, items, n_items, p->cfg.topk > DR_LAST_LIST);
}

static int sweep_cached(void *ctx, const dr_user_t *u) {
    sweep_t *s = ctx;
    if (!user_may_hold(s->p, s->parts, s->n_parts, u, s->items, s->n_items)) return 0;
    return dr_withdraw_found_append(&s->owed, &s->n, &s->cap, (dr_withdraw_found_t){u->last_source.partition, u->user_id});
}

/* A new list for u, which is never evicted while it is owed (a user owed
 * one already, as the cached sweep may have left it, is not counted
 * twice). */
static int refresh_for_withdrawal(dr_pipeline_t *p, dr_user_t *u) {
    dr_user_cache_mark_dirty(p->cache, u);
    if (u->emit_pending) return 0;
    p->stats.withdraw_refreshes++;
    return owe_list(p, u);
}

static int append_items(int64_t **v, size_t *n, size_t *cap, const int64_t *items, size_t n_items) {
    if (*n + n_items > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *n + n_items) c *= 2;
        int64_t *w = realloc(*v, c * sizeof(*w));
        if (!w) return DR_ENOMEM;
        *v = w;
        *cap = c;
    }
    memcpy(*v + *n, items, n_items * sizeof(*items));
    *n += n_items;
    return 0;
}

static void start_withdraw_scan(dr_pipeline_t *p);

/* The partitions assigned now, as a scan takes them. */
static void owned_partitions(dr_pipeline_t *p, bool owned[DR_INGEST_MAX_PARTITIONS]) {
    int n_parts;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n_parts);
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++) owned[i] = i < n_parts && parts[i].assigned;
}

/* On the loop thread: the users the scan found join the queue the emit
 * ticks serve (serve_withdrawals). Partitions assigned while it ran were
 * not read: their users are looked for again by a scan of every owned
 * partition. */
static void withdraw_scanned(void *ctx, const dr_withdraw_result_t *r) {
    dr_pipeline_t *p = ctx;
    bool recheck = p->recheck_running;
    p->recheck_running = false;
    if (p->stats.failed) return;
    int n_parts;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n_parts);
    int err = r->err;
    if (!err && r->n_found > 0 && p->wq_n + r->n_found > p->wq_cap) {
        size_t live = p->wq_n - p->wq_head, cap = p->wq_cap ? p->wq_cap : 1024;
        if (live > 0 && p->wq_head > 0) memmove(p->wq, p->wq + p->wq_head, live * sizeof(*p->wq));
        p->wq_head = 0;
        p->wq_n = live;
        while (cap < live + r->n_found) cap *= 2;
        if (cap > p->wq_cap) {
            dr_withdraw_found_t *v = realloc(p->wq, cap * sizeof(*v));
            if (!v) err = DR_ENOMEM;
            else p->wq = v, p->wq_cap = cap;
        }
    }
    if (!err && r->n_found > 0) {
        memcpy(p->wq + p->wq_n, r->found, r->n_found * sizeof(*r->found));
        p->wq_n += r->n_found;
        err = append_items(&p->wq_items, &p->n_wq_items, &p->cap_wq_items, r->items, r->n_items);
        if (!err) p->n_wq_items = dr_withdraw_sort_items(p->wq_items, p->n_wq_items);
    }
    bool missed = false;
    for (int i = 0; i < n_parts && i < DR_INGEST_MAX_PARTITIONS; i++) missed |= parts[i].assigned && !r->scanned[i];
    if (recheck) { /* a partition taken meanwhile has its own recheck */
        if (err) {
            for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++)
                if (r->scanned[i]) p->recheck[i] = true;
            dr_log(DR_LOG_WARN, "pipeline", "checking taken partitions' stored lists failed, will retry | items=%zu err=\"%s\"",
                   r->n_items, dr_strerror(err));
        }
    } else if (err || missed) {
        if (err)
            dr_log(DR_LOG_WARN, "pipeline", "withdrawing items from stored users' lists failed, will retry | items=%zu err=\"%s\"",
                   r->n_items, dr_strerror(err));
        if (append_items(&p->unscanned, &p->n_unscanned, &p->cap_unscanned, r->items, r->n_items) != 0)
            fail(p, "withdrawn items cannot be queued for another scan", "out of memory");
    }
    dr_log(DR_LOG_INFO, "pipeline", "stored users' lists holding withdrawn items found | items=%zu users_read=%" PRIu64
           " found=%zu queued=%zu seconds=%.3f recheck=%d", r->n_items, r->users_read, r->n_found, p->wq_n - p->wq_head,
           r->seconds, (int)recheck);
    start_withdraw_scan(p);
}

/* Up to `max` queued users (0: all) get a new list, those whose list may
 * still hold a withdrawn item and whose partition is still ours. */
static int serve_withdrawals(dr_pipeline_t *p, size_t max) {
    if (p->wq_head == p->wq_n) return 0;
    int n_parts;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n_parts);
    size_t end = max && p->wq_n - p->wq_head > max ? p->wq_head + max : p->wq_n;
    int err = 0;
    while (p->wq_head < end) { /* a user that fails stays first, for the next tick */
        dr_withdraw_found_t f = p->wq[p->wq_head];
        if (owned_partition(parts, n_parts, f.partition)) {
            dr_user_t *u;
            if ((err = get_user(p, f.partition, f.user_id, &u))) break;
            if (user_may_hold(p, parts, n_parts, u, p->wq_items, p->n_wq_items) &&
                (err = refresh_for_withdrawal(p, u)))
                break;
        }
        p->wq_head++;
    }
    if (p->wq_head == p->wq_n) {
        p->wq_head = p->wq_n = 0;
        p->n_wq_items = 0;
    }
    return err;
}

/* The owned partitions taken with their lists unchecked: their stored
 * users are scanned for every item withdrawn lately or blocked now. */
static void start_recheck(dr_pipeline_t *p, bool owned[DR_INGEST_MAX_PARTITIONS]) {
    bool any = false;
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++) any |= owned[i] = owned[i] && p->recheck[i];
    if (!any) return;
    size_t n = 0;
    if (dr_model_excluded_items(p->model, &p->excluded, &n, &p->cap_excluded) != 0) return; /* next tick */
    for (size_t k = 0; k < p->ledger.n_recent; k++)
        if (append_items(&p->excluded, &n, &p->cap_excluded, &p->ledger.recent[k].item_id, 1)) return;
    n = dr_withdraw_sort_items(p->excluded, n);
    if (n > 0 && dr_withdraw_scan_start(p->withdraw_scan, p->excluded, n, owned, p->cfg.topk > DR_LAST_LIST,
                                        withdraw_scanned, p) != 0)
        return;
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++)
        if (owned[i]) {
            p->recheck[i] = false;
            p->stats.withdraw_rechecks += n > 0;
        }
    p->recheck_running = n > 0;
}

/* The items waiting for the store's scan, else a recheck, when no scan is
 * under way. */
static void start_withdraw_scan(dr_pipeline_t *p) {
    if (dr_withdraw_scan_busy(p->withdraw_scan) || p->stopping) return;
    bool owned[DR_INGEST_MAX_PARTITIONS];
    owned_partitions(p, owned);
    if (p->n_unscanned == 0) {
        start_recheck(p, owned);
        return;
    }
    if (dr_withdraw_scan_start(p->withdraw_scan, p->unscanned, p->n_unscanned, owned, p->cfg.topk > DR_LAST_LIST,
                               withdraw_scanned, p) == 0)
        p->n_unscanned = 0;
}

/* Nothing a withdrawal owes is left: no item waits, no scan runs, no user
 * found waits for a list, no owned partition waits for a recheck. */
static bool withdrawals_idle(dr_pipeline_t *p) {
    if (p->n_withdrawn > 0 || p->n_unscanned > 0 || dr_withdraw_scan_busy(p->withdraw_scan) || p->wq_head < p->wq_n)
        return false;
    bool owned[DR_INGEST_MAX_PARTITIONS];
    owned_partitions(p, owned);
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++)
        if (owned[i] && p->recheck[i]) return false;
    return true;
}

/* Partitions are owned and every withdrawal was served: owned partitions
 * are clean, and old withdrawals may be forgotten (not before: a restart
 * after a long stop rechecks its partitions for them first). */
static bool withdrawals_settled(dr_pipeline_t *p) {
    int n_parts;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n_parts);
    bool assigned = false;
    for (int i = 0; i < n_parts && i < DR_INGEST_MAX_PARTITIONS && !assigned; i++) assigned = parts[i].assigned;
    return assigned && withdrawals_idle(p);
}

/* Whether the next commit stores another ledger than the last one: new
 * withdrawals, or owned partitions now clean, or old ones to forget. */
static bool withdrawals_changed(dr_pipeline_t *p) {
    const dr_withdraw_ledger_t *l = &p->ledger;
    if (!p->ledger_stored) return true;
    if (!withdrawals_settled(p)) return false;
    if (l->n_recent > 0 && l->recent[0].at_ms < dr_now_ms() - RECENT_WITHDRAWAL_MS) return true;
    int n_parts;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n_parts);
    bool any = false;
    for (int i = 0; i < n_parts && i < DR_INGEST_MAX_PARTITIONS && !any; i++)
        any = parts[i].assigned && l->unchecked[i];
    return any;
}

/* Into the commit's batch, when it changed: the ledger, the owned
 * partitions clean when every withdrawal was served (the lists owed were
 * handed to the producer before the batch was built, and the batch is
 * written after their delivery). */
static int put_withdrawals(dr_pipeline_t *p, dr_state_batch_t *b) {
    if (withdrawals_settled(p)) {
        bool owned[DR_INGEST_MAX_PARTITIONS];
        owned_partitions(p, owned);
        for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++)
            if (owned[i] && p->ledger.unchecked[i]) {
                p->ledger.unchecked[i] = 0;
                p->ledger_stored = false;
            }
        if (dr_withdraw_ledger_forget(&p->ledger, dr_now_ms() - RECENT_WITHDRAWAL_MS) > 0) p->ledger_stored = false;
    }
    size_t dropped = dr_withdraw_ledger_keep_newest(&p->ledger, RECENT_WITHDRAWALS_MAX);
    if (dropped > 0) {
        p->ledger_stored = false;
        dr_log(DR_LOG_WARN, "pipeline", "more withdrawals in the last hour than the ledger keeps: the oldest are forgotten (a partition taken later is not scanned for those of them that were deleted) | dropped=%zu kept=%zu",
               dropped, p->ledger.n_recent);
    }
    if (p->ledger_stored) return 0;
    uint8_t *val;
    size_t len;
    int err = dr_withdraw_ledger_encode(&p->ledger, &val, &len);
    if (err) return err;
    dr_state_batch_put_meta(b, "withdrawals", val, len);
    free(val);
    p->ledger_stored = true;
    return 0;
}

/* A ledger this build cannot read leaves every partition unchecked: a
 * needless scan costs time, a missed one leaves a withdrawn post in a list. */
static int load_withdrawals(dr_pipeline_t *p, char *errstr, size_t n) {
    uint8_t *val = NULL;
    size_t len = 0;
    int err = dr_state_get_meta(p->state, "withdrawals", &val, &len);
    if (err == DR_ENOTFOUND) { /* a new store, or one from before the ledger: none unfinished */
        p->ledger_stored = true;
        return 0;
    }
    if (!err) err = dr_withdraw_ledger_decode(&p->ledger, val, len);
    free(val);
    if (err == DR_ECORRUPT) {
        dr_log(DR_LOG_ERROR, "pipeline", "the stored withdrawals are unreadable: every partition's stored lists will be checked against the blocked items | bytes=%zu",
               len);
        memset(p->ledger.unchecked, 1, sizeof(p->ledger.unchecked));
        return 0;
    }
    if (err) {
        snprintf(errstr, n, "reading the unfinished withdrawals: %s", dr_strerror(err));
        return err;
    }
    p->ledger_stored = true;
    return 0;
}

/* Partition `part`, just taken, is scanned for the withdrawn items once
 * the scans before it are done; marked until then. */
static void recheck_later(dr_pipeline_t *p, int32_t part) {
    p->recheck[part] = true;
    if (!p->ledger.unchecked[part]) p->ledger_stored = false;
    p->ledger.unchecked[part] = 1;
}

/* The items withdrawn since the last tick leave the cached users' lists
 * now and the stored users' when the scan finds them. Before the consumer
 * group's assignment they wait: the users are not ours to serve yet. */
static int withdraw_items(dr_pipeline_t *p) {
    p->n_withdrawn = dr_withdraw_sort_items(p->withdrawn, p->n_withdrawn);
    sweep_t s = {.p = p, .items = p->withdrawn, .n_items = p->n_withdrawn};
    s.parts = dr_ingest_partitions(p->ingest, &s.n_parts);
    int assigned = 0;
    for (int i = 0; i < s.n_parts; i++) assigned += s.parts[i].assigned;
    if (assigned == 0) return 0;
    int err = dr_user_cache_for_each(p->cache, sweep_cached, &s);
    for (size_t i = 0; !err && i < s.n; i++) { /* looked up again: a load may evict */
        dr_user_t *u;
        if (!(err = get_user(p, s.owed[i].partition, s.owed[i].user_id, &u))) err = refresh_for_withdrawal(p, u);
    }
    free(s.owed);
    if (!err) err = append_items(&p->unscanned, &p->n_unscanned, &p->cap_unscanned, p->withdrawn, p->n_withdrawn);
    if (err) return err;
    dr_log(DR_LOG_INFO, "pipeline", "blocked or deleted items withdrawn from cached users' lists | items=%zu lists=%zu",
           p->n_withdrawn, s.n);
    p->n_withdrawn = 0;
    start_withdraw_scan(p);
    return 0;
}

/* A stop serves what withdrawals still owe before its last commit: a
 * restart would not look for those users again. The scan under way is
 * waited for, the items still waiting are scanned here (a stop takes that
 * long: ~3 s a million stored users). */
static void finish_withdrawals(dr_pipeline_t *p) {
    if (p->n_withdrawn > 0 && withdraw_items(p) != 0)
        dr_log(DR_LOG_WARN, "pipeline", "withdrawing blocked items from cached users' lists failed at stop | items=%zu",
               p->n_withdrawn);
    dr_withdraw_scan_finish(p->withdraw_scan);
    if (p->n_unscanned == 0) return;
    bool owned[DR_INGEST_MAX_PARTITIONS];
    owned_partitions(p, owned);
    size_t n = p->n_unscanned;
    p->n_unscanned = 0; /* what this scan gives back (an error) stays unserved: said below */
    int err = dr_withdraw_scan_run(p->withdraw_scan, p->unscanned, n, owned, p->cfg.topk > DR_LAST_LIST,
                                   withdraw_scanned, p);
    if (err || p->n_unscanned > 0)
        dr_log(DR_LOG_ERROR, "pipeline", "withdrawn items may stay in stored users' lists: the stop's scan failed | items=%zu err=\"%s\"",
               n, dr_strerror(err ? err : DR_ESTORE));
}

static void commit_now(dr_pipeline_t *p);

/* ... then the users found get their lists, ten ticks' worth at a time,
 * each part committed before the next is loaded (the cache holds owed
 * users until a commit); the stop's own commit takes the last part. */
static void serve_withdrawals_at_stop(dr_pipeline_t *p) {
    while (p->wq_head < p->wq_n && !p->stats.failed) {
        int err = serve_withdrawals(p, 10 * (size_t)p->cfg.emit_withdraw_users_per_tick);
        if (err) {
            dr_log(DR_LOG_ERROR, "pipeline", "withdrawn items may stay in stored users' lists: serving them failed at stop | users=%zu err=\"%s\"",
                   p->wq_n - p->wq_head, dr_strerror(err));
            return;
        }
        if (p->wq_head < p->wq_n) commit_now(p);
    }
}

static void on_emit_timer(uv_timer_t *t) {
    dr_pipeline_t *p = t->data;
    if (p->n_withdrawn > 0 && withdraw_items(p) != 0)
        dr_log(DR_LOG_WARN, "pipeline", "withdrawing blocked items failed, will retry | items=%zu", p->n_withdrawn);
    start_withdraw_scan(p); /* a start that failed (no memory) is tried again */
    if (serve_withdrawals(p, (size_t)p->cfg.emit_withdraw_users_per_tick) != 0)
        dr_log(DR_LOG_WARN, "pipeline", "serving a withdrawal's users failed, will retry | queued=%zu", p->wq_n - p->wq_head);
    (void)emit_owed(p);
}

/* ---- delivery reports ----------------------------------------------------- */

/* A list or tombstone of a user whose delivery failed. Its bytes are not
 * produced again: newer messages of the same user may already be on their
 * way, and a copy produced behind them would leave an older list last on
 * the compacted topic. The user's current list is produced instead (by
 * serve_reissues, outside the delivery callback, which can run inside the
 * emitter), under the failed message's tag so that the commit waiting for
 * it keeps waiting. */
static bool queue_reissue(dr_pipeline_t *p, const rd_kafka_message_t *m) {
    int64_t id;
    if (!dr_ingest_user_key(m, &id)) return false;
    if (p->n_reissue == p->cap_reissue) {
        size_t cap = p->cap_reissue ? p->cap_reissue * 2 : 64;
        struct reissue *v = realloc(p->reissue, cap * sizeof(*v));
        if (!v) return false;
        p->reissue = v;
        p->cap_reissue = cap;
    }
    const dr_user_t *u = dr_user_cache_peek(p->cache, id);
    p->reissue[p->n_reissue++] = (struct reissue){id, u ? u->last_source.partition : -1,
                                                  dr_msg_tag(m->_private)};
    return true;
}

/* One of our changelog messages landed: a marker is where the commit's
 * position is; a gap before it is another writer's (reports come in
 * produce order within a partition).
 *
 * Unless the batch was acknowledged without an offset (see on_delivery):
 * then librdkafka 2.0.2 reports its first message at -1 and numbers the
 * rest -1, 0, 1... (an implicit acknowledgement reports each at -1001).
 * Those offsets say nothing of where the records landed, so they neither
 * show another writer nor give a marker its position; the first report
 * that breaks the run starts a batch with real offsets and anchors the
 * check again. A zombie's records right there go unseen by this check,
 * not by the fencing a restore does (dr_handoff.h). */
static void changelog_delivered(dr_pipeline_t *p, const rd_kafka_message_t *m) {
    int32_t part = m->partition;
    bool unanchored = p->changelog_unanchored[part];
    if (m->offset < 0) {
        unanchored = p->changelog_unanchored[part] = true;
    } else if (unanchored && m->offset != p->changelog_next[part]) {
        unanchored = p->changelog_unanchored[part] = false;
        p->changelog_next[part] = -1;
    }
    if (!unanchored && p->changelog_next[part] >= 0 && m->offset != p->changelog_next[part] &&
        p->changelog_owned[part] && !p->changelog_foreign[part]) {
        p->changelog_foreign[part] = true;
        p->stats.changelog_foreign++;
        dr_log(DR_LOG_WARN, "pipeline", "another instance wrote to a changelog partition we own (a former owner that missed losing it): our users of it are written again | partition=%d expected=%" PRId64 " landed=%" PRId64,
               (int)part, p->changelog_next[part], m->offset);
    }
    p->changelog_next[part] = m->offset + 1;
    if (!unanchored && m->key_len == strlen(DR_CHANGELOG_MARKER_KEY) &&
        memcmp(m->key, DR_CHANGELOG_MARKER_KEY, m->key_len) == 0)
        p->marker_landed[part] = m->offset + 1;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    dr_pipeline_t *p = opaque;
    if (dr_msg_kind(m->_private) == DR_MSG_MODEL) {
        /* the commit waits for it, but a loss only costs the others this
         * commit's item changes: counted, not retried */
        dr_flight_done(&p->flight, dr_msg_tag(m->_private));
        if (m->err) {
            dr_model_sync_stats(p->sync)->lost++;
            dr_log(DR_LOG_WARN, "pipeline", "item changes not shared: the model message was not delivered | err=\"%s\"",
                   rd_kafka_err2str(m->err));
        }
        return;
    }
    if (!m->err) {
        dr_flight_done(&p->flight, dr_msg_tag(m->_private));
        /* An idempotent producer's batch can be acknowledged with no
         * offset: a retry the broker already had (DUPLICATE_SEQUENCE_NUMBER:
         * its first message reports -1) or one a later batch's success
         * acknowledged implicitly (each reports -1001). A real broker holds
         * it; counted, because the mock cluster may not (it checks no
         * sequence of a non-transactional producer). */
        if (m->offset < 0) p->stats.acks_without_offset++;
        if (dr_msg_kind(m->_private) == DR_MSG_RECS) p->stats.lists_delivered++;
        else if (dr_msg_kind(m->_private) == DR_MSG_CHANGELOG && m->partition >= 0 &&
                 m->partition < DR_INGEST_MAX_PARTITIONS)
            changelog_delivered(p, m);
        return;
    }
    /* Never drop output silently (the commit that depends on it keeps
     * waiting): a list is reissued as the user's current one, a dead letter
     * is produced again as it was. */
    p->stats.delivery_errors++;
    if (dr_msg_kind(m->_private) == DR_MSG_CHANGELOG) {
        /* produced again it could land behind a newer record of the same
         * user; the commit waiting for it is never written, and a restart
         * resumes from the last one stored */
        fail(p, "a changelog record could not be delivered", rd_kafka_err2str(m->err));
        return;
    }
    static dr_log_limit_t lim = DR_LOG_LIMIT_INIT(10000, 5);
    uint64_t dropped = 0;
    if (dr_log_allow(&lim, &dropped))
        dr_log(DR_LOG_WARN, "pipeline", "delivery failed, retrying | topic=%s err=\"%s\" suppressed=%" PRIu64,
               rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err), dropped);
    if (dr_msg_kind(m->_private) == DR_MSG_RECS) {
        if (!queue_reissue(p, m)) fail(p, "a failed list cannot be queued for reissue", "out of memory");
        return;
    }
    rd_kafka_headers_t *h = NULL, *copy = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) copy = rd_kafka_headers_copy(h);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(rd_kafka_topic_name(m->rkt)), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(copy), RD_KAFKA_V_OPAQUE(m->_private), RD_KAFKA_V_END);
    if (err) {
        if (copy) rd_kafka_headers_destroy(copy);
        fail(p, "a failed dead letter could not be produced again", rd_kafka_err2str(err));
    }
}

/* Produces the current list of each user whose list failed (a tombstone
 * when the user has no state: erased since, or never had events). A
 * produce that finds the queue full is tried again on the next call. */
static void serve_reissues(dr_pipeline_t *p) {
    size_t i = 0;
    for (; i < p->n_reissue && !p->stats.failed; i++) {
        struct reissue r = p->reissue[i];
        /* a user with output in flight is in the open commit or dirty, so
         * cached (never evicted); the stored record is the fallback */
        dr_user_t *u = dr_user_cache_peek(p->cache, r.user_id);
        int err = u ? 0 : get_user(p, r.partition, r.user_id, &u);
        if (!err && u->events_applied == 0) {
            rd_kafka_resp_err_t kerr = produce_tombstone(p, r.partition, r.user_id, r.tag);
            err = kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL ? DR_EFULL : kerr ? DR_EKAFKA : 0;
        } else if (!err) {
            err = dr_emitter_reissue(p->emitter, p->model, u, r.tag, dr_now_ms());
            /* the head of the published list is part of the stored user (it
             * finds the lists a withdrawn item must leave) */
            if (!err) dr_user_cache_mark_dirty(p->cache, u);
        }
        if (err == DR_EFULL) break;
        if (err) {
            fail(p, "a failed list could not be reissued", dr_strerror(err));
            break;
        }
        p->stats.lists_reissued++;
    }
    memmove(p->reissue, p->reissue + i, (p->n_reissue - i) * sizeof(*p->reissue));
    p->n_reissue -= i;
}

/* Serves delivery reports (waiting up to timeout_ms for the first), then
 * the reissues they asked for. */
static void poll_producer(dr_pipeline_t *p, int timeout_ms) {
    if (rd_kafka_poll(p->producer, timeout_ms) > 0)
        while (rd_kafka_poll(p->producer, 0) > 0) {}
    if (p->n_reissue > 0) serve_reissues(p);
}

static void serve_producer(dr_pipeline_t *p) { poll_producer(p, 0); }

static void on_producer_readable(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    dr_pipeline_t *p = h->data;
    char buf[256];
    while (read(p->producer_pipe[0], buf, sizeof(buf)) > 0) {}
    serve_producer(p);
}

/* ---- commits -------------------------------------------------------------- */

/* How long a commit waits for room in a full producer queue. */
#define CHANGELOG_WAIT_MS 5000

static bool owns_partition(dr_pipeline_t *p, int32_t part) {
    int n = 0;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n);
    return part >= 0 && part < n && parts[part].assigned;
}

static bool owns_changelog(dr_pipeline_t *p, int32_t part) {
    return p->changelog && part >= 0 && part < DR_INGEST_MAX_PARTITIONS && p->changelog_owned[part];
}

/* A user's record (NULL: tombstone) for the changelog, counted in flight so
 * that the commit is written only once it is delivered. Only partitions
 * this instance owns: another owner's changelog is not ours to write. */
static int changelog_put(dr_pipeline_t *p, int32_t part, int64_t user_id, const void *rec, size_t len) {
    if (!owns_changelog(p, part)) return 0;
    int err = dr_changelog_put(p->changelog, part, p->changelog_epoch[part], user_id, rec, len,
                               dr_msg_opaque(p->flight.epoch, DR_MSG_CHANGELOG), CHANGELOG_WAIT_MS);
    if (err) return err;
    dr_flight_sent(&p->flight);
    p->changelog_touched[part] = true;
    return 0;
}

/* The commit markers after the records: for every owned partition whose
 * records or position changed, the next events offset the changelog's
 * state of it reflects. */
static int changelog_mark(dr_pipeline_t *p) {
    if (!p->changelog) return 0;
    for (int i = 0; i < p->batch_n_offsets; i++) {
        int64_t at = p->batch_offsets[i] >= 0 ? p->batch_offsets[i] : p->start_offset[i];
        if (!owns_partition(p, i) || !owns_changelog(p, i) || at < 0) continue;
        if (!p->changelog_touched[i] && at == p->marked_offset[i]) continue;
        int err = dr_changelog_mark(p->changelog, i, p->changelog_epoch[i], at,
                                    dr_msg_opaque(p->flight.epoch, DR_MSG_CHANGELOG), CHANGELOG_WAIT_MS);
        if (err) return err;
        dr_flight_sent(&p->flight);
        p->marked_offset[i] = at;
        p->marked_ms[i] = dr_mono_ms();
        p->marked_epoch[i] = p->changelog_epoch[i];
        p->changelog_touched[i] = false;
    }
    return 0;
}

/* state.changelog.idle.marker.ms: an owned partition nothing was written to
 * for that long owes a marker all the same. Another writer (a zombie) is
 * found only where our own messages land (changelog_delivered); without
 * this, an idle partition would keep the zombie's records as the newest of
 * their users until we next wrote there, and a compaction meanwhile would
 * leave only those, which a restore fences off: the users would be lost. */
static void owe_idle_markers(dr_pipeline_t *p) {
    if (!p->changelog || p->cfg.changelog_idle_marker_ms <= 0) return;
    int64_t now = dr_mono_ms();
    int n = 0;
    dr_ingest_partitions(p->ingest, &n);
    for (int i = 0; i < n && i < DR_INGEST_MAX_PARTITIONS; i++)
        if (owns_changelog(p, i) && now - p->marked_ms[i] >= p->cfg.changelog_idle_marker_ms)
            p->changelog_touched[i] = true;
}

typedef struct republish {
    dr_pipeline_t *p;
    int err;
    uint64_t users;
} republish_t;

static int republish_user(void *ctx, int32_t partition, int64_t user_id, const void *rec, size_t len) {
    republish_t *r = ctx;
    r->err = changelog_put(r->p, partition, user_id, rec, len);
    r->users++;
    return r->err;
}

/* Every stored user of the partition goes to its changelog again (the
 * users the cache holds dirty follow with the commit): *users of them. */
static int republish_partition(dr_pipeline_t *p, int32_t part, uint64_t *users) {
    republish_t rp = {p, 0, 0};
    int err = dr_state_for_each_partition_user(p->state, part, republish_user, &rp);
    *users = rp.users;
    if (err || rp.err) return err ? err : rp.err;
    p->changelog_touched[part] = true;
    return 0;
}

/* Partitions another writer wrote to: ours goes after theirs. */
static int supersede_foreign(dr_pipeline_t *p) {
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++) {
        if (!p->changelog_foreign[i]) continue;
        p->changelog_foreign[i] = false;
        uint64_t users = 0;
        int err = owns_changelog(p, i) ? republish_partition(p, i, &users) : 0;
        if (err) return err;
        /* users a step already sent must follow their older stored records */
        dr_user_cache_commit_restage(p->cache);
        dr_log(DR_LOG_INFO, "pipeline", "changelog partition written again after another writer | partition=%d users=%" PRIu64,
               i, users);
    }
    return 0;
}

static int put_user(void *ctx, dr_user_t *u) {
    dr_pipeline_t *p = ((void **)ctx)[0];
    dr_state_batch_t *b = ((void **)ctx)[1];
    /* an erased user: the stored record goes, once (every path where this
     * batch is not written fails the pipeline, and a restart replays the
     * erase); what the user did since is stored anew */
    int32_t part = u->last_source.partition;
    if (u->erased) {
        dr_state_batch_delete_user(b, part, u->user_id);
        u->erased = 0;
        if (u->events_applied == 0) return changelog_put(p, part, u->user_id, NULL, 0);
    }
    /* encoded in place in the batch, and copied from there by the producer */
    size_t max = dr_user_encoded_max(u, p->cfg.learner.dim);
    uint8_t *rec = dr_state_batch_user_room(b, part, u->user_id, max);
    if (!rec) return part < 0 ? DR_EINVAL : DR_ENOMEM;
    size_t len;
    int err = dr_user_encode_into(u, p->cfg.learner.dim, rec, max, &len);
    if (err) return err;
    dr_state_batch_user_done(b, len);
    return changelog_put(p, part, u->user_id, rec, len);
}

static int put_item(void *ctx, int64_t item_id, const void *rec, size_t len) {
    if (rec) dr_state_batch_put_item(ctx, item_id, rec, len);
    else dr_state_batch_delete_item(ctx, item_id); /* a removed item */
    return 0;
}

/* Rows of the item matrix the expiry pass looks at per commit: a pass over
 * a million items takes 16 commits. */
#define EXPIRY_ROWS_PER_COMMIT 65536

/* Items past learner.item.ttl.ms leave the lists, and past the grace
 * period the model; their records leave with this commit. */
static int expire_items(dr_pipeline_t *p) {
    dr_expiry_stats_t st;
    int err = dr_model_expire_items(p->model, EXPIRY_ROWS_PER_COMMIT, &st);
    p->stats.items_expired += st.expired;
    p->stats.items_removed += st.removed;
    p->stats.items_live = dr_model_live_items(p->model);
    if (st.removed > 0)
        dr_log(DR_LOG_DEBUG, "pipeline", "items removed | expired=%zu removed=%zu rows_freed=%zu live=%zu",
               st.expired, st.removed, st.released, dr_model_live_items(p->model));
    return err == DR_ENOMEM ? 0 : err; /* out of memory: the pass is retried next commit */
}

/* Item changes are owed to the other instances: there are some, and
 * model.sync.interval.ms has passed since the last publication, or the
 * pipeline stops. A commit is due then even when nothing else changed: an
 * instance whose input went quiet within an interval of its last
 * publication kept its last changes to itself for good (issue 14's
 * cli_instances saw 41% of the items apart when the stream ended so). */
static bool share_due(dr_pipeline_t *p) {
    return p->sync &&
           (p->stopping || (dr_mono_s() - p->last_sync) * 1000.0 >= p->cfg.model_sync_interval_ms) &&
           (dr_model_sync_pending(p->model) > 0 || dr_model_version(p->model) != p->synced_version);
}

/* With a commit: publishes the item changes made since the last
 * publication (share_due), counted in flight, and puts what goes with them
 * in the batch: the sync's sequence numbers and the model topic's positions
 * read so far. */
static int share_model(dr_pipeline_t *p, dr_state_batch_t *b) {
    if (share_due(p)) {
        p->last_sync = dr_mono_s();
        p->synced_version = dr_model_version(p->model);
        size_t messages = 0;
        (void)dr_model_sync_publish(p->sync, p->model, dr_msg_opaque(p->flight.epoch, DR_MSG_MODEL),
                                    &messages); /* what could not be produced is counted */
        for (size_t i = 0; i < messages; i++) dr_flight_sent(&p->flight);
    }
    uint8_t *state;
    size_t len;
    int err = dr_model_sync_encode_state(p->sync, &state, &len);
    if (err) return err;
    dr_state_batch_put_meta(b, "model_sync", state, len);
    free(state);
    /* the changes not published yet go with the items they changed: a
     * process that dies before publishing them leaves them to the next */
    if ((err = dr_model_sync_save_pending(p->model, &state, &len))) return err;
    dr_state_batch_put_meta(b, "model_pending", state, len);
    free(state);
    int n = 0;
    const int64_t *next = dr_model_sync_positions(p->sync, &n);
    for (int i = 0; i < n; i++)
        if (next[i] >= 0) dr_state_batch_put_offset(b, dr_model_sync_topic(p->sync), i, next[i]);
    return 0;
}

/* ---- the events topic's partition count ----------------------------------- */

/* Users are stored under the partition that carries their events, which a
 * producer picks by hashing the user key modulo the topic's partition
 * count: once the count changes, most users' events land in another
 * partition than their stored state, and would start again from the prior
 * without a word. So the count the state was built with is stored, and
 * another one stops the start (or, once accepted, replaces it). */
static void partition_count_key(const dr_pipeline_t *p, char *key, size_t n) {
    snprintf(key, n, "partitions/%s", p->cfg.topic_events);
}

static void put_partition_count(dr_pipeline_t *p, dr_state_batch_t *b) {
    char key[320];
    partition_count_key(p, key, sizeof(key));
    uint8_t val[4];
    memcpy(val, &p->partition_count, 4); /* little-endian, as every record */
    dr_state_batch_put_meta(b, key, val, sizeof(val));
    p->partition_count_stored = true;
}

static bool partitions_changed_accepted(const dr_pipeline_t *p) {
    return strcmp(p->cfg.partitions_changed, "accept") == 0;
}

static void partition_count_changed_message(const dr_pipeline_t *p, int32_t now, char *errstr, size_t n) {
    snprintf(errstr, n, "the events topic %s has %d partitions, but this state (state.dir) was built when it had %d: "
             "a user's events now land in another partition than its stored state, which would start again "
             "from the prior. Set state.partitions.changed=accept to run on that way, or see docs/SCALING.md "
             "(\"Changing the partition count\")", p->cfg.topic_events, (int)now, (int)p->partition_count);
}

static void log_partition_count_accepted(const dr_pipeline_t *p, int32_t now) {
    dr_log(DR_LOG_WARN, "pipeline", "partition count changed, accepted (state.partitions.changed=accept): users whose events moved start again from the prior | topic=%s was=%d now=%d",
           p->cfg.topic_events, (int)p->partition_count, (int)now);
}

/* At start, before anything is consumed: the count the broker gives
 * against the stored one (recorded when none is). A broker not reachable
 * yet leaves the comparison to the first assignment. */
static int check_partition_count(dr_pipeline_t *p, char *errstr, size_t n) {
    char key[320];
    partition_count_key(p, key, sizeof(key));
    uint8_t *val = NULL;
    size_t len = 0;
    int err = dr_state_get_meta(p->state, key, &val, &len);
    p->partition_count = -1;
    if (err == 0 && len == 4) memcpy(&p->partition_count, val, 4);
    free(val);
    if (err && err != DR_ENOTFOUND) {
        snprintf(errstr, n, "reading the stored partition count: %s", dr_strerror(err));
        return err;
    }
    int count = -1;
    if (dr_ingest_topic_partitions(dr_ingest_consumer(p->ingest), p->cfg.topic_events, 10000, &count) != 0 ||
        count <= 0) {
        dr_log(DR_LOG_WARN, "pipeline", "the events topic's partition count could not be read yet: compared at the first assignment | topic=%s",
               p->cfg.topic_events);
        p->partition_count_stored = true; /* nothing new to store */
        return 0;
    }
    if (p->partition_count == count) {
        p->partition_count_stored = true;
        return 0;
    }
    if (p->partition_count > 0) {
        partition_count_changed_message(p, count, errstr, n);
        if (!partitions_changed_accepted(p)) return DR_EINVAL;
        log_partition_count_accepted(p, count);
        errstr[0] = '\0';
    }
    /* stored now: no commit is due for it (nothing else may have changed) */
    p->partition_count = count;
    dr_state_batch_t *b = dr_state_batch_new();
    if (!b) return DR_ENOMEM;
    put_partition_count(p, b);
    err = dr_state_write(p->state, b, errstr, n);
    dr_state_batch_free(b);
    return err;
}

/* At an assignment: the count the broker gives now, or one the assigned
 * partitions prove, against the recorded one. Partitions added to the topic
 * make the group rebalance, so every member that gets an assignment sees
 * them. True when the pipeline stops. */
static bool partition_count_moved(dr_pipeline_t *p, const rd_kafka_topic_partition_list_t *parts) {
    int count = -1;
    if (dr_ingest_topic_partitions(dr_ingest_consumer(p->ingest), p->cfg.topic_events, 2000, &count) != 0)
        count = -1;
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].partition >= count) count = parts->elems[i].partition + 1;
    if (count <= 0 || count == p->partition_count) return false;
    if (p->partition_count <= 0) { /* none recorded, none read at start: recorded now */
        p->partition_count = count;
        p->partition_count_stored = false;
        return false;
    }
    char msg[2048];
    partition_count_changed_message(p, count, msg, sizeof(msg));
    if (!partitions_changed_accepted(p)) {
        fail(p, "the events topic's partition count changed", msg);
        return true;
    }
    log_partition_count_accepted(p, count);
    p->partition_count = count;
    p->partition_count_stored = false;
    return false;
}

/* An empty batch for the next commit: the last one's buffer when kept. */
static dr_state_batch_t *take_batch(dr_pipeline_t *p) {
    dr_state_batch_t *b = p->spare_batch ? p->spare_batch : dr_state_batch_new();
    p->spare_batch = NULL;
    return b;
}

/* Serialises everything dirty plus the positions into one batch (the one
 * steps began, if any) and seals it. */
static int build_commit(dr_pipeline_t *p, dr_state_batch_t **out) {
    dr_state_batch_t *b = p->building_batch ? p->building_batch : take_batch(p);
    p->building_batch = NULL;
    if (!b) return DR_ENOMEM;
    void *ctx[2] = {p, b};
    int err = supersede_foreign(p);
    if (err) {
        dr_user_cache_commit_end(p->cache, false); /* steps may have opened it */
        dr_state_batch_free(b);
        return err;
    }
    err = dr_user_cache_commit_begin(p->cache, put_user, ctx);
    if (!err) err = expire_items(p);
    if (!err) err = dr_model_drain_dirty_items(p->model, put_item, b);
    uint8_t *globals = NULL;
    size_t len = 0;
    if (!err) err = dr_model_encode_globals(p->model, &globals, &len);
    if (!err) err = put_withdrawals(p, b);
    if (!err && !p->partition_count_stored) put_partition_count(p, b);
    if (err) {
        free(globals);
        dr_user_cache_commit_end(p->cache, false);
        dr_state_batch_free(b);
        return err;
    }
    dr_state_batch_put_meta(b, "globals", globals, len);
    free(globals);
    int n = 0;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n);
    if (n > DR_INGEST_MAX_PARTITIONS) n = DR_INGEST_MAX_PARTITIONS;
    p->batch_n_offsets = n;
    for (int i = 0; i < n; i++) {
        p->batch_offsets[i] = parts[i].assigned ? parts[i].next_offset : -1;
        if (p->batch_offsets[i] >= 0)
            dr_state_batch_put_offset(b, p->cfg.topic_events, i, p->batch_offsets[i]);
    }
    if (p->catalog) {
        parts = dr_catalog_partitions(p->catalog, &n);
        for (int i = 0; i < n; i++)
            if (parts[i].next_offset >= 0)
                dr_state_batch_put_offset(b, p->cfg.topic_catalog, i, parts[i].next_offset);
    }
    if (p->sync && (err = share_model(p, b))) {
        dr_user_cache_commit_end(p->cache, false);
        dr_state_batch_free(b);
        return err;
    }
    if ((err = changelog_mark(p))) {
        dr_user_cache_commit_end(p->cache, false);
        dr_state_batch_free(b);
        return err;
    }
    *out = b;
    return 0;
}

static void fail(dr_pipeline_t *p, const char *what, const char *detail) {
    dr_log(DR_LOG_ERROR, "pipeline", "%s; consumption stopped, nothing past the last stored commit is acknowledged | detail=\"%s\"",
           what, detail);
    p->stats.failed = true;
    dr_ingest_stop(p->ingest);
}

/* The commit's write returned (rc): the batch's buffer is kept for the
 * next one, the users it held are clean (or dirty again on failure), and
 * Kafka gets the offsets the store now holds. Loop thread. */
static void commit_written(dr_pipeline_t *p, int rc, const char *err) {
    dr_state_batch_clear(p->commit_batch, COMMIT_BUFFER_KEPT);
    p->spare_batch = p->commit_batch;
    p->commit_batch = NULL;
    dr_user_cache_commit_end(p->cache, rc == 0);
    if (rc) {
        p->stats.commit_failures++;
        fail(p, "state commit failed", err);
        return;
    }
    p->stats.commits++;
    /* Kafka gets what the store now holds, not the positions reached since
     * the batch was built (for lag monitoring, and where a partition the
     * store does not know yet starts) */
    dr_ingest_commit_async(p->ingest, p->batch_offsets, p->batch_n_offsets);
}

/* On the thread pool: nothing else touches commit_batch meanwhile. */
static void write_work(uv_work_t *req) {
    dr_pipeline_t *p = req->data;
    char err[sizeof(p->write_err)] = "";
    int rc = dr_state_write(p->state, p->commit_batch, err, sizeof(err));
    pthread_mutex_lock(&p->write_lock);
    p->write_rc = rc;
    memcpy(p->write_err, err, sizeof(err));
    p->write_done = true;
    pthread_cond_signal(&p->write_cond);
    pthread_mutex_unlock(&p->write_lock);
}

static void write_after(uv_work_t *req, int status) {
    dr_pipeline_t *p = req->data;
    (void)status; /* never cancelled */
    p->write_req_active = false;
    if (!p->write_in_flight) return; /* await_write handled it */
    p->write_in_flight = false;
    commit_written(p, p->write_rc, p->write_err);
}

/* Blocks until the worker is done with a write under way, if any. */
static void wait_write_done(dr_pipeline_t *p) {
    pthread_mutex_lock(&p->write_lock);
    while (p->write_in_flight && !p->write_done) pthread_cond_wait(&p->write_cond, &p->write_lock);
    pthread_mutex_unlock(&p->write_lock);
}

/* Waits for a write under way and handles its end: for the paths that
 * must know the commit landed before going on (revoke, shutdown). */
static void await_write(dr_pipeline_t *p) {
    if (!p->write_in_flight) return;
    wait_write_done(p);
    p->write_in_flight = false;
    commit_written(p, p->write_rc, p->write_err);
}

/* Writes the waiting batch once everything produced before it is
 * delivered: on the thread pool, or here when the pool's request is still
 * busy with an earlier write's end (after an await_write). */
static void finish_commit(dr_pipeline_t *p) {
    if (!p->commit_batch || p->write_in_flight || !dr_flight_settled(&p->flight)) return;
    for (int i = 0; p->changelog && i < DR_INGEST_MAX_PARTITIONS; i++)
        if (p->marker_landed[i] >= 0) {
            dr_changelog_batch_position(p->changelog, p->commit_batch, i, p->marker_landed[i], p->marked_epoch[i]);
            p->marker_landed[i] = -1;
        }
    if (!p->write_req_active) {
        p->write_in_flight = p->write_req_active = true;
        p->write_done = false;
        p->write_req.data = p;
        if (uv_queue_work(p->loop, &p->write_req, write_work, write_after) == 0) return;
        p->write_in_flight = p->write_req_active = false;
    }
    char err[512] = "";
    int rc = dr_state_write(p->state, p->commit_batch, err, sizeof(err));
    commit_written(p, rc, err);
}

/* Records taken from the events and catalog topics so far: every change of
 * state (an applied event, a dead letter, an erasure, a catalog record)
 * handles one and moves an offset. */
static uint64_t inputs_handled(dr_pipeline_t *p) {
    uint64_t n = dr_ingest_stats(p->ingest)->consumed;
    int parts = 0;
    const dr_partition_stats_t *cat = p->catalog ? dr_catalog_partitions(p->catalog, &parts) : NULL;
    for (int i = 0; i < parts; i++) n += cat[i].consumed;
    return n;
}

/* Nothing to store since the last commit built: the state and the offsets
 * would be written again unchanged (the globals alone are up to 33 KB). */
static bool nothing_changed(dr_pipeline_t *p) {
    int n = 0;
    dr_ingest_partitions(p->ingest, &n);
    for (int i = 0; i < n && i < DR_INGEST_MAX_PARTITIONS; i++) /* a marker owed, users to write again */
        if ((p->changelog_touched[i] || p->changelog_foreign[i]) && owns_changelog(p, i)) return false;
    return inputs_handled(p) == p->inputs_at_build && dr_user_cache_dirty(p->cache) == 0 && !p->building_batch &&
           dr_model_dirty_items(p->model) == 0 && !share_due(p) && !withdrawals_changed(p) &&
           p->partition_count_stored;
}

static void count_build_time(dr_pipeline_t *p, double took) {
    p->stats.commit_build_seconds += took;
    if (took > p->stats.commit_build_max_seconds) p->stats.commit_build_max_seconds = took;
}

/* state.commit.step.users: while the loop has time to spare (the last
 * batch took what the queue held, or ingest.max.rate holds consumption
 * back), the users changed since the last commit are encoded into the next
 * one's batch, their changelog records sent, that many at a time once that
 * many wait; at a batch's end and on the housekeeping timer. The commit
 * then stops the loop only for the rest: at 10,000 events/s of 100,000
 * users a commit encodes ~9,000 users, 60-80 ms in which no event is
 * applied and no list leaves. Not while catching up on a backlog (full
 * batches), where a user changes again before the commit more often than
 * not and encoding it twice would cost throughput, nor while the last
 * commit is being written (the cache holds one open commit). */
static bool over_rate(dr_pipeline_t *p);
static void commit_step(dr_pipeline_t *p) {
    size_t step = (size_t)p->cfg.commit_step_users;
    if (step == 0 || p->commit_batch || p->stats.failed || p->stopping || dr_user_cache_unstaged(p->cache) < step)
        return;
    bool spare = over_rate(p) || (p->kept_up && !dr_ingest_stats(p->ingest)->paused); /* not backpressure */
    if (!spare) return;
    if (!p->building_batch && !(p->building_batch = take_batch(p))) {
        fail(p, "building the commit failed", dr_strerror(DR_ENOMEM));
        return;
    }
    double t0 = dr_mono_s();
    void *ctx[2] = {p, p->building_batch};
    int err = dr_user_cache_commit_step(p->cache, put_user, ctx, step, NULL);
    count_build_time(p, dr_mono_s() - t0);
    p->stats.commit_steps++;
    if (err) {
        dr_state_batch_free(p->building_batch);
        p->building_batch = NULL;
        fail(p, "building the commit failed", dr_strerror(err));
    }
}

/* Builds a commit (and writes it when nothing is in flight). 0 when one was
 * built or nothing changed; DR_EAGAIN when the lists owed could not all be
 * handed to the producer yet (the offsets must not move before them);
 * DR_ESTOPPED when the pipeline has failed. */
static int begin_commit(dr_pipeline_t *p) {
    if (p->stats.failed) return DR_ESTOPPED;
    if (p->commit_batch) return 0;
    if (emit_owed(p) != 0) return DR_EAGAIN;
    if (nothing_changed(p)) return 0;
    p->inputs_at_build = inputs_handled(p);
    double t0 = dr_mono_s();
    int err = build_commit(p, &p->commit_batch);
    count_build_time(p, dr_mono_s() - t0);
    if (err) {
        fail(p, "building the commit failed", dr_strerror(err));
        return DR_ESTOPPED;
    }
    dr_flight_mark(&p->flight);
    finish_commit(p);
    return 0;
}

/* Waits (serving delivery reports and reissuing failed lists) until the
 * commit in hand is written or the deadline passes; true when none is left
 * waiting. */
static bool wait_commit(dr_pipeline_t *p, int64_t deadline) {
    while (p->commit_batch && !p->stats.failed && dr_mono_ms() < deadline) {
        if (p->write_in_flight) {
            await_write(p);
            continue;
        }
        poll_producer(p, FLUSH_STEP_MS);
        finish_commit(p);
    }
    await_write(p); /* nothing may go on writing a batch the caller drops */
    return p->commit_batch == NULL;
}

/* A commit that must land now (revoke, shutdown): a commit already built by
 * the timer holds an older state, so it is finished first and then a new
 * one covers everything applied since. Lists that cannot be handed to the
 * producer (its queue full, say) are tried again until shutdown.timeout.ms.
 * A commit that cannot be made fails the pipeline loudly (exit status 1):
 * passing it as done would let the revoke go on and a later commit store
 * the revoked partitions' users without their offsets. */
static void commit_now(dr_pipeline_t *p) {
    int64_t deadline = dr_mono_ms() + p->cfg.shutdown_timeout_ms;
    const char *why = "deliveries did not complete in time";
    while (!p->stats.failed) {
        if (!wait_commit(p, deadline)) break;
        int err = begin_commit(p);
        if (err == 0) {
            if (wait_commit(p, deadline)) return;
            break;
        }
        if (err != DR_EAGAIN) return; /* failed, and said why */
        why = "the lists owed could not be handed to the producer";
        if (dr_mono_ms() >= deadline) break;
        poll_producer(p, FLUSH_STEP_MS);
    }
    if (p->stats.failed) return;
    dr_state_batch_free(p->commit_batch);
    p->commit_batch = NULL;
    dr_state_batch_free(p->building_batch);
    p->building_batch = NULL;
    dr_user_cache_commit_end(p->cache, false);
    fail(p, "the revoke or shutdown commit could not be made", why);
}

static void on_commit_timer(uv_timer_t *t) {
    dr_pipeline_t *p = t->data;
    if (p->commit_batch) {
        finish_commit(p);
    } else {
        owe_idle_markers(p);
        (void)begin_commit(p);
    }
}

/* ---- backpressure and housekeeping --------------------------------------- */

/* ingest.max.rate: true while this second's budget is spent. */
static bool over_rate(dr_pipeline_t *p) {
    if (p->cfg.max_rate <= 0) return false;
    double now = dr_mono_s();
    uint64_t consumed = dr_ingest_stats(p->ingest)->consumed;
    if (now - p->rate_window_start >= 1.0) {
        p->rate_window_start = now;
        p->rate_window_base = consumed;
    }
    return consumed - p->rate_window_base >= (uint64_t)p->cfg.max_rate;
}

static void check_backpressure(dr_pipeline_t *p) {
    size_t owed = p->n_pending;
    int outq = rd_kafka_outq_len(p->producer);
    bool throttled = over_rate(p);
    bool over = owed > (size_t)p->cfg.max_dirty_users || outq > p->cfg.max_producer_queue || throttled;
    bool under = owed < (size_t)p->cfg.max_dirty_users / 2 && outq < p->cfg.max_producer_queue / 2 &&
                 !throttled;
    const dr_ingest_stats_t *s = dr_ingest_stats(p->ingest);
    if (over && !s->paused) {
        if (owed > (size_t)p->cfg.max_dirty_users) (void)emit_owed(p);
        dr_ingest_set_paused(p->ingest, true);
        dr_log(DR_LOG_DEBUG, "pipeline", "paused consumption | owed=%zu outq=%d", owed, outq);
    } else if (under && s->paused && !p->stopping) {
        dr_ingest_set_paused(p->ingest, false);
    }
}

static void on_batch_end(void *ctx) {
    dr_pipeline_t *p = ctx;
    if (dr_ingest_stats(p->ingest)->halted && !p->stats.failed)
        fail(p, "consumption halted", dr_ingest_stats(p->ingest)->halt_reason[0]
                                          ? dr_ingest_stats(p->ingest)->halt_reason
                                          : "a record could be neither handled nor dead-lettered");
    double now = dr_mono_s();
    if (p->stats.first_event_s == 0) p->stats.first_event_s = now;
    p->stats.last_event_s = now;
    if (p->batch_start > 0) dr_histogram_observe(&p->stats.learn, now - p->batch_start);
    p->batch_start = 0;
    p->stats.batches++;
    check_backpressure(p);
    uint64_t consumed = dr_ingest_stats(p->ingest)->consumed;
    p->kept_up = consumed - p->consumed_at_batch_end < (uint64_t)p->cfg.ingest_batch;
    p->consumed_at_batch_end = consumed;
    commit_step(p);
}

/* Applies the other instances' item changes waiting on the model topic. */
static void take_shared_model(dr_pipeline_t *p) {
    if (p->sync && !p->stats.failed) dr_model_sync_poll(p->sync, p->model, 4096);
}

/* ---- the catalog before events (topic.catalog.first.ms) ------------------- */

static void start_events(dr_pipeline_t *p) {
    if (!p->events_waiting) return;
    p->events_waiting = false;
    if (p->stopping || p->stats.failed) return;
    char errstr[512] = "";
    if (dr_ingest_start(p->ingest, errstr, sizeof(errstr)) != 0) fail(p, "the events consumer did not start", errstr);
}

static void log_catalog_read(dr_pipeline_t *p, double since) {
    dr_log(DR_LOG_INFO, "pipeline", "catalog read, consuming events | items=%" PRIu64 " seconds=%.2f",
           dr_catalog_items_seen(p->catalog), dr_mono_s() - since);
}

/* The catalog reader's handler: read up to where the topic ended at start. */
static void on_catalog_caught_up(void *ctx) {
    dr_pipeline_t *p = ctx;
    if (!p->events_waiting) return;
    log_catalog_read(p, p->catalog_wait_t0);
    start_events(p);
}

/* While events wait for the catalog (housekeeping): progress every 5 s,
 * and past topic.catalog.first.ms events start beside the rest of it. */
static void wait_for_catalog(dr_pipeline_t *p) {
    if (!p->events_waiting || dr_catalog_caught_up(p->catalog)) return;
    double now = dr_mono_s();
    if ((now - p->catalog_wait_t0) * 1000.0 >= p->cfg.catalog_first_ms) {
        dr_log(DR_LOG_WARN, "pipeline",
               "catalog not read within topic.catalog.first.ms: consuming events beside the rest of it | records_left=%" PRId64
               " partitions_unanswered=%d records_read=%" PRIu64,
               dr_catalog_behind(p->catalog), dr_catalog_ends_unknown(p->catalog), dr_catalog_items_seen(p->catalog));
        start_events(p);
    } else if (now >= p->catalog_wait_log_at) {
        dr_log(DR_LOG_INFO, "pipeline",
               "reading the catalog before events | records_left=%" PRId64 " partitions_unanswered=%d records_read=%" PRIu64,
               dr_catalog_behind(p->catalog), dr_catalog_ends_unknown(p->catalog), dr_catalog_items_seen(p->catalog));
        p->catalog_wait_log_at = now + 5.0;
    }
}

static void on_housekeeping(uv_timer_t *t) {
    dr_pipeline_t *p = t->data;
    wait_for_catalog(p);
    serve_producer(p);
    take_shared_model(p);
    finish_commit(p);
    check_backpressure(p);
    commit_step(p); /* also while no batch comes: throttled, or between events */
}

/* ---- partitions ----------------------------------------------------------- */

typedef struct partition_users {
    int32_t partition;
    int64_t *ids;
    size_t n, cap;
} partition_users_t;

static int collect_partition_user(void *ctx, const dr_user_t *u) {
    partition_users_t *c = ctx;
    if (u->last_source.partition != c->partition) return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        int64_t *v = realloc(c->ids, cap * sizeof(*v));
        if (!v) return DR_ENOMEM;
        c->ids = v;
        c->cap = cap;
    }
    c->ids[c->n++] = u->user_id;
    return 0;
}

/* Forgets the cached users of a partition whose store was just brought up
 * to the changelog (another owner changed them meanwhile): our copies are
 * older. Users owed a list are kept: after the revoke commit there are none. */
static void drop_cached_partition(dr_pipeline_t *p, int32_t partition) {
    partition_users_t c = {.partition = partition};
    if (dr_user_cache_for_each(p->cache, collect_partition_user, &c) != 0) {
        free(c.ids);
        fail(p, "dropping a revoked partition's users", "out of memory");
        return;
    }
    size_t dropped = 0;
    for (size_t i = 0; i < c.n; i++) {
        dr_user_t *u = dr_user_cache_peek(p->cache, c.ids[i]);
        if (!u || u->emit_pending) continue;
        dr_user_cache_remove(p->cache, c.ids[i]);
        dropped++;
    }
    if (dropped < c.n)
        dr_log(DR_LOG_DEBUG, "pipeline", "partition users kept while dirty | partition=%d kept=%zu",
               (int)partition, c.n - dropped);
    free(c.ids);
}

/* Brings a newly assigned partition's users here: restores them from the
 * changelog when the local state is missing or behind it; republishes the
 * local state when the changelog is behind it (new, or it lost data); and
 * supersedes records of an unfinished commit (orphans) with the current
 * state of those users. Returns where consumption starts, -1: Kafka's
 * committed offset or ingest.offset.reset. */
static int64_t take_partition(dr_pipeline_t *p, const char *topic, int32_t part) {
    int64_t local = -1, local_pos = -1, local_epoch = 0;
    /* first the standby lets go of it: what it stored is where we start */
    bool standby_wrote = p->standby && dr_standby_take(p->standby, part);
    /* a withdrawal left unfinished here, or lists another owner published */
    if (p->ledger.unchecked[part] || standby_wrote) recheck_later(p, part);
    if (dr_state_get_offset(p->state, topic, part, &local) != 0) local = -1;
    p->marked_offset[part] = -1;
    p->start_offset[part] = local;
    if (!p->changelog) return local;
    dr_changelog_stored_position(p->changelog, p->state, part, &local_pos, &local_epoch);
    dr_restore_t r = {.marker_offset = -1};
    char err[512] = "";
    int rc = dr_changelog_restore(p->changelog, p->state, topic, part, local, local_pos, local_epoch,
                                  p->cfg.shutdown_timeout_ms * 2, &r, err, sizeof(err));
    if (rc) {
        fail(p, "restoring the partition from its changelog failed", err);
        dr_restore_clear(&r);
        return local;
    }
    /* ours from now on, under an epoch above every one read: a marker at
     * the next commit claims it, and fences off what a former owner that
     * missed its revocation still writes */
    p->changelog_owned[part] = true;
    p->marked_ms[part] = dr_mono_ms(); /* the claim's marker, owed below, starts the clock */
    p->changelog_epoch[part] = dr_changelog_next_epoch(r.epoch);
    p->changelog_next[part] = r.log_end;
    p->changelog_foreign[part] = p->changelog_unanchored[part] = false;
    p->stats.changelog_fenced += r.fenced;
    if (r.fenced > 0)
        dr_log(DR_LOG_WARN, "pipeline", "changelog records of a former owner ignored: it wrote after losing the partition | partition=%d records=%" PRIu64,
               (int)part, r.fenced);
    p->stats.restore_seconds += r.seconds;
    p->stats.restore_records += r.records;
    if (r.restored || standby_wrote) {
        /* the store moved on underneath the cache: its copies are stale */
        drop_cached_partition(p, part);
    }
    if (r.restored) {
        recheck_later(p, part);
        p->stats.partitions_restored++;
        p->stats.users_restored += r.users;
        dr_log(DR_LOG_INFO, "pipeline", "partition restored from the changelog | partition=%d local_next=%" PRId64
               " next=%" PRId64 " incremental=%d users=%" PRIu64 " records=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f",
               (int)part, local, r.marker_offset, (int)r.incremental, r.users, r.records, r.bytes, r.seconds);
        if (!r.incremental && r.log_start > 0)
            dr_log(DR_LOG_ERROR, "pipeline", "the changelog lost its head (retention, not compaction): users whose last record was before it are not restored | topic=%s partition=%d log_start=%" PRId64,
                   dr_changelog_topic(p->changelog), (int)part, r.log_start);
        local = r.marker_offset;
        p->start_offset[part] = local;
        p->marked_offset[part] = local;
    } else if (local >= 0 && (r.marker_offset < local || (!r.incremental && r.log_start > 0))) {
        /* the changelog does not hold what this store does (it is new, or
         * lost its head to retention): put it there, so that the partition
         * can move with nothing lost */
        uint64_t users = 0;
        int e = republish_partition(p, part, &users);
        if (e) {
            fail(p, "republishing a partition's users to the changelog failed", dr_strerror(e));
        } else {
            dr_log(DR_LOG_INFO, "pipeline", "changelog behind the local state: users republished | partition=%d local_next=%" PRId64
                   " changelog_next=%" PRId64 " users=%" PRIu64, (int)part, local, r.marker_offset, users);
        }
    } else {
        p->marked_offset[part] = r.marker_offset;
    }
    /* records of a commit that never got its marker: the current state of
     * those users (or a tombstone) goes out with the next commit */
    for (size_t i = 0; i < r.n_orphans && !p->stats.failed; i++) {
        dr_user_t *u;
        if (get_user(p, part, r.orphans[i], &u) != 0) {
            fail(p, "loading a user to supersede an unfinished changelog commit", "see above");
            break;
        }
        if (u->events_applied == 0) u->erased = 1;
        dr_user_cache_mark_dirty(p->cache, u);
    }
    if (r.n_orphans > 0)
        dr_log(DR_LOG_INFO, "pipeline", "changelog records after the last marker superseded | partition=%d users=%zu",
               (int)part, r.n_orphans);
    dr_restore_clear(&r);
    if (local >= 0) p->changelog_touched[part] = true; /* the claim: a marker under our epoch */
    return local;
}

static void on_assign(void *ctx, rd_kafka_topic_partition_list_t *parts) {
    dr_pipeline_t *p = ctx;
    if (partition_count_moved(p, parts)) return;
    /* records steps sent must not meet a restore or a republication of
     * the same users: stored first */
    if (p->building_batch) commit_now(p);
    for (int i = 0; i < parts->cnt && !p->stats.failed; i++) {
        int32_t part = parts->elems[i].partition;
        if (part < 0 || part >= DR_INGEST_MAX_PARTITIONS) continue;
        int64_t next = take_partition(p, parts->elems[i].topic, part);
        if (next >= 0) parts->elems[i].offset = next;
    }
    /* what this instance owns is known: the others' partitions can be kept warm */
    if (p->standby) dr_standby_begin(p->standby);
}

/* The item leaves every published list at the next emit (withdraw_items). */
static int withdraw_later(dr_pipeline_t *p, int64_t item_id) {
    /* the topic's partitions, or every one while its count is unknown */
    int n_parts = p->partition_count > 0 ? p->partition_count : DR_INGEST_MAX_PARTITIONS;
    if (dr_withdraw_ledger_add(&p->ledger, item_id, dr_now_ms(), n_parts)) return DR_ESTOPPED;
    p->ledger_stored = false;
    return append_items(&p->withdrawn, &p->n_withdrawn, &p->cap_withdrawn, &item_id, 1) ? DR_ESTOPPED : 0;
}

/* A catalog record: blocked or deleted items leave every later list; a
 * content embedding lets a new item be ranked before anyone touched it; a
 * publish time starts its age (learner.item.ttl.ms). */
static int on_item(void *ctx, const dr_item_rec_t *item, char *reason, size_t reason_size) {
    dr_pipeline_t *p = ctx;
    /* exclusion first: a deleted item must leave lists even when the rest
     * of its record is refused */
    bool exclude = item->blocked || item->deleted;
    if (exclude && !dr_model_item_excluded(p->model, item->item_id) && withdraw_later(p, item->item_id))
        return DR_ESTOPPED;
    int err = dr_model_set_item_excluded(p->model, item->item_id, exclude);
    if (!err) err = dr_model_set_item_source(p->model, item->item_id, item->author, item->topic);
    if (!err && item->published_ms >= 0)
        err = dr_model_set_item_published(p->model, item->item_id, item->published_ms);
    if (err) {
        snprintf(reason, reason_size, "catalog item %" PRId64 " rejected: %s", item->item_id, dr_strerror(err));
        return err;
    }
    int content_dim = p->cfg.learner.content_dim;
    if (item->embedding_len == 0 || content_dim == 0) return 0;
    if (item->embedding_len != (size_t)content_dim) {
        snprintf(reason, reason_size, "catalog item %" PRId64 ": embedding has %zu floats, learner.content.dim is %d",
                 item->item_id, item->embedding_len, content_dim);
        return DR_EINVAL;
    }
    err = dr_model_set_item_content(p->model, item->item_id, item->embedding, item->embedding_len);
    if (err)
        snprintf(reason, reason_size, "catalog item %" PRId64 ": embedding refused: %s", item->item_id,
                 err == DR_EINVAL ? "all zeros, or a value not finite or beyond 1e6" : dr_strerror(err));
    return err;
}

/* A catalog tombstone: the item leaves every published list and the model
 * (its record leaves the store with the next commit). */
static int on_item_removed(void *ctx, int64_t item_id, char *reason, size_t reason_size) {
    dr_pipeline_t *p = ctx;
    (void)reason;
    (void)reason_size;
    if (dr_model_item_published(p->model, item_id) == DR_ENOTFOUND) return 0; /* never met */
    if (withdraw_later(p, item_id)) return DR_ESTOPPED;
    int err = dr_model_remove_item(p->model, item_id);
    if (err == DR_ENOMEM) return DR_ESTOPPED; /* as any out-of-memory: stop, nothing lost */
    p->stats.items_removed += err == 0;
    return 0;
}

static int64_t catalog_start(void *ctx, int32_t partition) {
    dr_pipeline_t *p = ctx;
    int64_t next;
    return dr_state_get_offset(p->state, p->cfg.topic_catalog, partition, &next) == 0 ? next : -1;
}

/* Partitions leave: everything applied so far is committed (state,
 * changelog and offsets). Their cached users stay, clean, until evicted:
 * an eager rebalance revokes and gives back the same partitions, and a
 * partition that comes back after another owner changed it is restored,
 * which drops them (take_partition). */
static void on_revoke(void *ctx, const rd_kafka_topic_partition_list_t *parts, bool lost) {
    dr_pipeline_t *p = ctx;
    /* Lost (the group moved on without us: another member may already own
     * them): what we applied is kept in our store, but their changelogs are
     * no longer ours to write, and the store's position in them stops being
     * one (the next assignment reads them whole, under the new owner's epochs). */
    if (lost)
        for (int i = 0; i < parts->cnt; i++) {
            int32_t part = parts->elems[i].partition;
            if (part >= 0 && part < DR_INGEST_MAX_PARTITIONS) p->changelog_owned[part] = false;
        }
    commit_now(p);
    if (p->stats.failed) return;
    dr_state_batch_t *b = lost && p->changelog ? dr_state_batch_new() : NULL;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t part = parts->elems[i].partition;
        if (part < 0 || part >= DR_INGEST_MAX_PARTITIONS) continue;
        p->marked_offset[part] = -1;
        p->changelog_touched[part] = false;
        p->changelog_owned[part] = false;
        p->recheck[part] = false; /* taken again, it is looked at again */
        if (b) dr_changelog_batch_position(p->changelog, b, part, -1, 0);
    }
    char err[512];
    if (b && dr_state_write(p->state, b, err, sizeof(err)) != 0)
        fail(p, "forgetting the changelog positions of lost partitions failed", err);
    dr_state_batch_free(b);
    /* stored, and another instance's from now on: kept warm from its changelog */
    for (int i = 0; p->standby && !p->stats.failed && i < parts->cnt; i++)
        dr_standby_release(p->standby, parts->elems[i].partition);
}

/* ---- lifecycle ------------------------------------------------------------ */

static int load_item(void *ctx, int64_t item_id, const void *rec, size_t len) {
    int err = dr_model_load_item(ctx, item_id, rec, len);
    if (err == DR_ECORRUPT) {
        dr_log(DR_LOG_ERROR, "pipeline", "corrupt item record skipped | item=%" PRId64, item_id);
        return 0;
    }
    return err;
}

/* A store from before users were keyed by partition: each user moves to
 * the partition of its last event (the one its events come from); a user
 * that cannot be read keeps nothing (it restarts from the prior). */
static int legacy_partition(void *ctx, int64_t user_id, const void *rec, size_t len,
                            int32_t *partition) {
    dr_pipeline_t *p = ctx;
    dr_user_t *u = NULL;
    *partition = -1;
    if (dr_user_decode(user_id, &p->cfg.learner, rec, len, &u) == 0) {
        *partition = u->last_source.partition;
        dr_user_free(u);
    }
    return 0;
}

static int restore(dr_pipeline_t *p, char *errstr, size_t n) {
    uint64_t moved = 0;
    int err = dr_state_upgrade_user_keys(p->state, legacy_partition, p, &moved, errstr, n);
    if (err) return err;
    if (moved > 0)
        dr_log(DR_LOG_INFO, "pipeline", "state upgraded: users are now stored by partition | users=%" PRIu64, moved);
    if ((err = load_withdrawals(p, errstr, n))) return err;
    uint8_t *rec = NULL;
    size_t len = 0;
    err = dr_state_get_meta(p->state, "globals", &rec, &len);
    if (err == 0) {
        err = dr_model_load_globals(p->model, rec, len);
        free(rec);
        if (err) {
            snprintf(errstr, n, "stored globals do not match this configuration (learner.dim?)");
            return err;
        }
    } else if (err != DR_ENOTFOUND) {
        snprintf(errstr, n, "reading globals: %s", dr_strerror(err));
        return err;
    }
    if ((err = dr_state_for_each_item(p->state, load_item, p->model))) {
        if (err == DR_ERANGE)
            snprintf(errstr, n, "the state holds more items than learner.max.items (%" PRId64
                     "): set it to at least the number stored", p->cfg.learner.max_items);
        else
            snprintf(errstr, n, "restoring items: %s", dr_strerror(err));
        return err;
    }
    dr_items_view_t v;
    dr_model_items(p->model, &v);
    if (v.n > 0) dr_log(DR_LOG_INFO, "pipeline", "state restored | items=%zu", v.n);
    return 0;
}

static int make_producer(dr_pipeline_t *p, char *errstr, size_t n) {
    char e[512];
    /* Defaults first, so kafka.* settings can override them. */
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"}, {"linger.ms", "5"}, {"compression.type", "lz4"},
        {"queue.buffering.max.messages", "1000000"}, {"client.id", "driftrec"}};
    rd_kafka_conf_t *kc = dr_ingest_kafka_conf(defaults, sizeof(defaults) / sizeof(defaults[0]),
                                               p->kafka_keys, p->kafka_values, p->cfg.n_kafka, errstr, n);
    if (!kc) return DR_ECONFIG;
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_opaque(kc, p);
    p->producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof(e));
    if (!p->producer) {
        snprintf(errstr, n, "creating the producer: %s", e);
        rd_kafka_conf_destroy(kc);
        return DR_EKAFKA;
    }
    p->producer_queue = rd_kafka_queue_get_main(p->producer);
    /* the lists' topic's metadata now: a producer that learns it from its
     * first record holds that record, and every list behind it, for about a
     * second (the first lists after a start arrived 1.35 s after they were
     * built). Best effort: what fails here fails again, with its reason,
     * when a list is produced. */
    int parts;
    (void)dr_ingest_topic_partitions(p->producer, p->cfg.topic_recs, 2000, &parts);
    return 0;
}

/* One meta value written at once, outside a commit (start-up records). */
static int write_meta(dr_pipeline_t *p, const char *key, const void *val, size_t len, char *errstr,
                      size_t n) {
    dr_state_batch_t *b = dr_state_batch_new();
    if (!b) return DR_ENOMEM;
    dr_state_batch_put_meta(b, key, val, len);
    int err = dr_state_write(p->state, b, errstr, n);
    dr_state_batch_free(b);
    return err;
}

/* This state directory's instance id (made once and stored): the model
 * topic's messages are keyed by it, and an instance skips its own, also
 * those it published before a restart. */
static int instance_id(dr_pipeline_t *p, uint64_t *id, char *errstr, size_t n) {
    uint8_t *val = NULL;
    size_t len = 0;
    int err = dr_state_get_meta(p->state, "instance", &val, &len);
    if (err == 0 && len == 8) {
        memcpy(id, val, 8);
        free(val);
        return 0;
    }
    free(val);
    if (err != 0 && err != DR_ENOTFOUND) {
        snprintf(errstr, n, "reading the instance id: %s", dr_strerror(err));
        return err;
    }
    uint64_t seed = (uint64_t)dr_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)p;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&seed, sizeof(seed), 1, f) != 1) seed ^= (uint64_t)dr_mono_ms();
        fclose(f);
    }
    *id = dr_mix64(seed) >> 1; /* positive as a decimal key */
    return write_meta(p, "instance", id, sizeof(*id), errstr, n);
}

/* The sync state alone, at start: the new epoch is stored before this
 * process publishes anything under it. */
static int store_sync_state(dr_pipeline_t *p, char *errstr, size_t n) {
    uint8_t *val;
    size_t len;
    int err = dr_model_sync_encode_state(p->sync, &val, &len);
    if (err) return err;
    err = write_meta(p, "model_sync", val, len, errstr, n);
    free(val);
    return err;
}

static int64_t model_start(void *ctx, int32_t partition) {
    dr_pipeline_t *p = ctx;
    int64_t next;
    return dr_state_get_offset(p->state, dr_model_sync_topic(p->sync), partition, &next) == 0 ? next : -1;
}

static int make_clients(dr_pipeline_t *p, char *errstr, size_t n) {
    int err = make_producer(p, errstr, n);
    if (err) return err;
    dr_emitter_conf_t ec = {p->cfg.topk, p->cfg.emit_batch, p->cfg.blas_threads, p->cfg.codec,
                          p->cfg.emit_retrieval, p->cfg.emit_threads};
    /* the saved retrieval index lives beside the state it indexes */
    if (ec.retrieval.persist && p->cfg.state_dir[0] &&
        snprintf(ec.retrieval.index_dir, sizeof(ec.retrieval.index_dir), "%s/retrieval", p->cfg.state_dir) >=
            (int)sizeof(ec.retrieval.index_dir))
        ec.retrieval.index_dir[0] = '\0'; /* too long a path: not saved */
    if ((err = dr_emitter_new(&p->emitter, p->producer, p->cfg.topic_recs, &ec, &p->flight,
                              errstr, n)))
        return err;
    /* lists carry their partition's owner epoch (0 without a changelog: no header) */
    dr_emitter_set_epochs(p->emitter, p->changelog_epoch, DR_INGEST_MAX_PARTITIONS);
    dr_ingest_conf_t ic = {p->cfg.topic_events, p->cfg.topic_dlq, p->cfg.group_id,
                           p->cfg.ingest_batch, p->kafka_keys, p->kafka_values,
                           p->cfg.n_kafka, p->codec, p->cfg.offset_reset, NULL};
    if (p->cfg.ingest_partitions[0]) {
        if (!p->partitions && !(p->partitions = malloc(sizeof(*p->partitions)))) return DR_ENOMEM;
        if ((err = dr_ingest_parse_partitions(p->cfg.ingest_partitions, p->partitions, errstr, n))) return err;
        ic.partitions = p->partitions;
    }
    if (strcmp(p->cfg.topic_model, "-") != 0) {
        uint64_t id = 0;
        if ((err = instance_id(p, &id, errstr, n))) return err;
        if ((err = dr_model_sync_enable(p->model)) ||
            (err = dr_model_sync_new(&p->sync, p->producer, p->cfg.topic_model, id, p->kafka_keys,
                                     p->kafka_values, p->cfg.n_kafka, errstr, n)))
            return err;
        p->synced_version = dr_model_version(p->model);
        uint8_t *val = NULL;
        size_t len = 0;
        err = dr_state_get_meta(p->state, "model_sync", &val, &len);
        if (err == 0) err = dr_model_sync_load_state(p->sync, val, len);
        free(val);
        if (err && err != DR_ENOTFOUND) {
            snprintf(errstr, n, "the stored model sync state is unreadable: %s", dr_strerror(err));
            return err;
        }
        err = dr_state_get_meta(p->state, "model_pending", &val, &len);
        if (err == 0) err = dr_model_sync_load_pending(p->model, val, len);
        free(val);
        if (err && err != DR_ENOTFOUND) {
            snprintf(errstr, n, "the stored unpublished item changes are unreadable: %s", dr_strerror(err));
            return err;
        }
        dr_model_sync_begin_epoch(p->sync);
        if ((err = store_sync_state(p, errstr, n))) return err;
    }
    if (strcmp(p->cfg.topic_changelog, "-") != 0 &&
        (err = dr_changelog_new(&p->changelog, p->producer, p->cfg.topic_changelog, p->kafka_keys,
                                p->kafka_values, p->cfg.n_kafka, errstr, n)))
        return err;
    if (p->cfg.standby_interval_ms > 0) {
        if (!p->changelog) {
            snprintf(errstr, n, "state.standby.interval.ms keeps partitions warm from their changelog, "
                     "and topic.changelog is -: set one, or state.standby.interval.ms=0");
            return DR_ECONFIG;
        }
        if ((err = dr_standby_new(&p->standby, p->state, p->producer, p->cfg.topic_changelog,
                                  p->cfg.topic_events, p->cfg.standby_interval_ms,
                                  p->cfg.shutdown_timeout_ms * 2, p->kafka_keys, p->kafka_values,
                                  p->cfg.n_kafka, errstr, n)))
            return err;
    }
    dr_ingest_handler_t h = {p, on_event, on_batch_end, on_assign, on_revoke, on_erase};
    if ((err = dr_ingest_new(&p->ingest, p->loop, &ic, &h, p->producer, &p->flight, errstr, n)))
        return err;
    if (!p->cfg.topic_catalog[0]) return 0;
    dr_catalog_handler_t ch = {p, on_item, on_item_removed, catalog_start, on_catalog_caught_up};
    return dr_catalog_new(&p->catalog, p->loop, p->cfg.topic_catalog, &ic, &ch, p->ingest, errstr, n);
}

/* Registers the writer schemas named by schema.writers ("id:kind:path,..."). */
static int add_writer_schemas(dr_pipeline_t *p, char *errstr, size_t n) {
    char list[DR_PATH_MAX];
    snprintf(list, sizeof(list), "%s", p->cfg.writer_schemas);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char kind[16], path[DR_PATH_MAX];
        int id;
        if (sscanf(tok, "%d:%15[^:]:%1023s", &id, kind, path) != 3 ||
            (strcmp(kind, "event") && strcmp(kind, "item"))) {
            snprintf(errstr, n, "schema.writers: expected id:event|item:path, got \"%s\"", tok);
            return DR_ECONFIG;
        }
        FILE *f = fopen(path, "r");
        char *json = f ? calloc(1, 1 << 20) : NULL;
        size_t len = json ? fread(json, 1, (1 << 20) - 1, f) : 0;
        if (f) fclose(f);
        int err = json && len > 0 ? dr_codec_add_writer_schema(p->codec, strcmp(kind, "event") ? DR_SCHEMA_ITEM : DR_SCHEMA_EVENT, id, json, errstr, n)
                                  : DR_EIO;
        if (err == DR_EIO) snprintf(errstr, n, "schema.writers: cannot read %s", path);
        free(json);
        if (err) return err;
    }
    return 0;
}

int dr_pipeline_new(dr_pipeline_t **out, uv_loop_t *loop, const dr_config_t *cfg, char *errstr,
                    size_t n) {
    *out = NULL;
    dr_pipeline_t *p = calloc(1, sizeof(*p));
    if (!p) return DR_ENOMEM;
    p->loop = loop;
    p->cfg = *cfg;
    p->producer_pipe[0] = p->producer_pipe[1] = -1;
    pthread_mutex_init(&p->write_lock, NULL);
    pthread_cond_init(&p->write_cond, NULL);
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++)
        p->marked_offset[i] = p->start_offset[i] = p->marker_landed[i] = p->changelog_next[i] = -1;
    int err = dr_config_kafka_arrays(&p->cfg, &p->kafka_keys, &p->kafka_values);
    if (err) goto out_fail;
    dr_state_conf_t sc;
    dr_state_conf_default(&sc);
    sc.path = p->cfg.state_dir;
    sc.sync = cfg->state_sync;
    sc.block_cache_mb = (size_t)cfg->block_cache_mb;
    sc.write_buffer_mb = (size_t)cfg->write_buffer_mb;
    /* the config check allows only the codecs the parser knows */
    if (dr_state_compression_parse(cfg->state_compression, &sc.compression) ||
        dr_state_compression_parse(cfg->state_compression_bottommost, &sc.bottommost_compression)) {
        snprintf(errstr, n, "state.compression: none, snappy, lz4 or zstd");
        err = DR_ECONFIG;
        goto out_fail;
    }
    sc.min_free_bytes = (uint64_t)cfg->state_min_free_mb << 20;
    if ((err = dr_state_open(&p->state, &sc, errstr, n))) goto out_fail;
    if ((err = dr_user_cache_new(&p->cache, (size_t)cfg->cache_users, cfg->learner.dim))) goto out_fail;
    if ((err = dr_withdraw_scan_new(&p->withdraw_scan, loop, p->state))) goto out_fail;
    if ((err = dr_model_new(&p->model, &cfg->learner, errstr, n))) goto out_fail;
    dr_adwin_pop_conf_t global = {cfg->global_drift_delta, cfg->global_block, cfg->global_scale,
                                  cfg->global_min_rise};
    if ((err = dr_adwin_pop_init(&p->global_drift, &global))) {
        snprintf(errstr, n, "drift.global.*: invalid");
        goto out_fail;
    }
    bool raw_tuned = cfg->global_block >= 100 && cfg->global_drift_delta <= 0.01 && cfg->global_scale <= 4;
    bool responds = cfg->learner.trend_weight > 0 || cfg->learner.trend_topic_weight > 0;
    if (cfg->global_relative && !cfg->learner.drift_enabled && !raw_tuned && responds)
        dr_log(DR_LOG_WARN, "pipeline", "drift.enabled=false: no user has a level, so the global detector sees the drift samples as they are, with settings chosen for relative ones (blocks that short start trend periods at random: docs/DRIFT.md); set drift.global.delta=0.01, drift.global.block=100 and drift.global.scale=4, or drift.global.trend.weight=0 and drift.global.trend.topic.weight=0");
    if ((err = restore(p, errstr, n))) goto out_fail;
    if ((err = dr_schema_registry_open(&p->cfg, &p->registry, errstr, n))) goto out_fail;
    if ((err = dr_codec_new(&p->codec, &p->cfg.codec, errstr, n))) goto out_fail;
    dr_schema_registry_attach(p->codec, p->registry);
    if ((err = add_writer_schemas(p, errstr, n))) goto out_fail;
    if ((err = make_clients(p, errstr, n))) goto out_fail;
    *out = p;
    return 0;
out_fail:
    if (err == DR_ENOMEM && !errstr[0]) snprintf(errstr, n, "out of memory");
    dr_pipeline_free(p);
    return err;
}

static void on_closed(uv_handle_t *h) {
    dr_pipeline_t *p = h->data;
    p->open_handles--;
}

int dr_pipeline_start(dr_pipeline_t *p, char *errstr, size_t n) {
    if (p->started) return 0;
    if (pipe2(p->producer_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(errstr, n, "pipe failed");
        return DR_EIO;
    }
    uv_poll_init(p->loop, &p->producer_poll, p->producer_pipe[0]);
    uv_timer_init(p->loop, &p->emit_timer);
    uv_timer_init(p->loop, &p->commit_timer);
    uv_timer_init(p->loop, &p->housekeeping_timer);
    p->producer_poll.data = p->emit_timer.data = p->commit_timer.data = p->housekeeping_timer.data = p;
    p->open_handles = 4;
    p->started = true;
    rd_kafka_queue_io_event_enable(p->producer_queue, p->producer_pipe[1], "1", 1);
    uv_poll_start(&p->producer_poll, UV_READABLE, on_producer_readable);
    uv_timer_start(&p->emit_timer, on_emit_timer, (uint64_t)p->cfg.emit_interval_ms,
                   (uint64_t)p->cfg.emit_interval_ms);
    uv_timer_start(&p->commit_timer, on_commit_timer, (uint64_t)p->cfg.commit_interval_ms,
                   (uint64_t)p->cfg.commit_interval_ms);
    uv_timer_start(&p->housekeeping_timer, on_housekeeping, 50, 50);
    serve_producer(p);
    /* a missing changelog topic is a configuration error, said at start; a
     * broker not reachable yet is not (the clients keep trying) */
    int err = p->changelog ? dr_changelog_check(p->changelog, p->cfg.topic_events, 10000, errstr, n) : 0;
    if (err == DR_EKAFKA) {
        dr_log(DR_LOG_WARN, "pipeline",
               "no broker answered at %s yet: the changelog topic could not be checked; the clients keep trying | detail=\"%s\"",
               dr_config_kafka(&p->cfg, "bootstrap.servers"), errstr);
        errstr[0] = '\0';
        err = 0;
    }
    /* the count first: a withdrawal the catalog's start applies marks the
     * topic's partitions */
    if (!err) err = check_partition_count(p, errstr, n);
    if (!err && p->sync) err = dr_model_sync_start(p->sync, model_start, p, 10000, errstr, n);
    double catalog_t0 = dr_mono_s();
    if (!err && p->catalog) err = dr_catalog_start(p->catalog, errstr, n);
    bool wait = !err && p->catalog && p->cfg.catalog_first_ms > 0;
    if (wait && !dr_catalog_caught_up(p->catalog)) {
        /* events once the catalog is read (on_catalog_caught_up), or its wait is over */
        p->events_waiting = true;
        p->catalog_wait_t0 = catalog_t0;
        p->catalog_wait_log_at = dr_mono_s() + 5.0;
        dr_log(DR_LOG_INFO, "pipeline", "reading the catalog before events | partitions=%d limit_ms=%d",
               dr_catalog_ends_unknown(p->catalog), p->cfg.catalog_first_ms);
    } else if (!err) {
        if (wait) log_catalog_read(p, catalog_t0); /* within its start: all had been fetched already */
        err = dr_ingest_start(p->ingest, errstr, n);
    }
    if (err) p->stats.failed = true; /* the caller's stop then writes nothing */
    return err;
}

void dr_pipeline_stop(dr_pipeline_t *p) {
    if (!p || p->stopping) return;
    p->stopping = true;
    if (p->stats.failed) dr_log(DR_LOG_INFO, "pipeline", "stopping after a failure: nothing more is committed");
    else dr_log(DR_LOG_INFO, "pipeline", "stopping: publishing owed lists and committing");
    dr_ingest_stop(p->ingest);
    if (!p->stats.failed) finish_withdrawals(p);
    if (!p->stats.failed) serve_withdrawals_at_stop(p);
    take_shared_model(p);
    if (!p->stats.failed) commit_now(p);
    /* the retrieval index as it serves now, for the next start (its items
     * named by the ids just committed) */
    if (!p->stats.failed) (void)dr_emitter_save_index(p->emitter, p->model);
    dr_catalog_close(p->catalog);
    dr_ingest_close(p->ingest); /* leaves the group; the revoke commit finds nothing new */
    rd_kafka_flush(p->producer, p->cfg.shutdown_timeout_ms);
    if (p->started) {
        rd_kafka_queue_io_event_enable(p->producer_queue, -1, NULL, 0);
        uv_close((uv_handle_t *)&p->producer_poll, on_closed);
        uv_close((uv_handle_t *)&p->emit_timer, on_closed);
        uv_close((uv_handle_t *)&p->commit_timer, on_closed);
        uv_close((uv_handle_t *)&p->housekeeping_timer, on_closed);
    }
    p->stopped = true;
}

void dr_pipeline_free(dr_pipeline_t *p) {
    if (!p) return;
    /* a loop left before a write's end was handled: the worker must be done
     * with the batch and the store before they go */
    wait_write_done(p);
    dr_withdraw_scan_free(p->withdraw_scan); /* ... and the scan with the store */
    dr_catalog_free(p->catalog);
    dr_ingest_free(p->ingest);
    free(p->partitions);
    dr_standby_free(p->standby); /* before the store and the producer it uses */
    dr_changelog_free(p->changelog);
    dr_model_sync_free(p->sync);
    dr_emitter_free(p->emitter);
    if (p->producer_queue) rd_kafka_queue_destroy(p->producer_queue);
    if (p->producer) rd_kafka_destroy(p->producer);
    for (int i = 0; i < 2; i++)
        if (p->producer_pipe[i] >= 0) close(p->producer_pipe[i]);
    dr_state_batch_free(p->commit_batch);
    dr_state_batch_free(p->building_batch);
    dr_state_batch_free(p->spare_batch);
    pthread_mutex_destroy(&p->write_lock);
    pthread_cond_destroy(&p->write_cond);
    dr_codec_free(p->codec);
    dr_schema_registry_close(p->registry);
    dr_user_cache_free(p->cache);
    dr_model_free(p->model);
    dr_adwin_pop_free(&p->global_drift);
    dr_state_close(p->state);
    free(p->pending_ids);
    free(p->emit_users);
    free(p->reissue);
    free(p->withdrawn);
    free(p->unscanned);
    free(p->excluded);
    dr_withdraw_ledger_free(&p->ledger);
    free(p->wq);
    free(p->wq_items);
    free(p->kafka_keys);
    free(p->kafka_values);
    free(p);
}

void dr_pipeline_stats(dr_pipeline_t *p, dr_pipeline_stats_t *out) {
    const dr_ingest_stats_t *s = dr_ingest_stats(p->ingest);
    p->stats.consumed = s->consumed;
    p->stats.events = s->events;
    p->stats.erase_requests = s->erase_requests;
    p->stats.dead_lettered = s->dead_lettered;
    memcpy(p->stats.dlq_by_reason, s->dlq_by_reason, sizeof(p->stats.dlq_by_reason));
    p->stats.pauses = s->pauses;
    p->stats.paused = s->paused;
    p->stats.offset_resets = s->offset_resets;
    p->stats.offset_reports_stale = s->offset_reports_stale;
    p->stats.withdraw_queued = p->wq_n - p->wq_head;
    p->stats.withdraw_scanning = dr_withdraw_scan_busy(p->withdraw_scan);
    bool owned[DR_INGEST_MAX_PARTITIONS];
    owned_partitions(p, owned);
    p->stats.withdraw_unchecked = 0;
    for (int i = 0; i < DR_INGEST_MAX_PARTITIONS; i++) p->stats.withdraw_unchecked += owned[i] && p->ledger.unchecked[i];
    if (p->standby) {
        dr_standby_stats_t ss;
        dr_standby_stats(p->standby, &ss);
        p->stats.standby_partitions = ss.partitions;
        p->stats.standby_records = ss.records;
        p->stats.standby_users = ss.users;
        p->stats.standby_fenced = ss.fenced;
        p->stats.standby_failures = ss.failures;
        p->stats.standby_behind = ss.behind;
        p->stats.standby_seconds = ss.seconds;
    }
    if (p->sync) {
        const dr_model_sync_stats_t *ms = dr_model_sync_stats(p->sync);
        p->stats.model_items_published = ms->items_published;
        p->stats.model_items_imported = ms->items_imported;
        p->stats.model_rejected = ms->rejected;
        p->stats.model_lost = ms->lost;
        p->stats.model_own_recovered = ms->own_recovered;
        p->stats.model_items_pending = dr_model_sync_pending(p->model);
    }
    p->stats.events_skipped = s->events_skipped;
    p->stats.lag = p->stopped ? 0 : dr_ingest_lag(p->ingest);
    p->stats.model_lag = p->sync && !p->stopped ? dr_model_sync_lag(p->sync) : 0;
    int n = 0;
    const dr_partition_stats_t *parts = dr_ingest_partitions(p->ingest, &n);
    p->stats.assigned_partitions = 0;
    for (int i = 0; i < n; i++) p->stats.assigned_partitions += parts[i].assigned;
    p->stats.users_cached = dr_user_cache_size(p->cache);
    dr_user_cache_stats(p->cache, &p->stats.cache_hits, &p->stats.cache_misses);
    const dr_emit_stats_t *es = dr_emitter_stats(p->emitter);
    p->stats.lists_emitted = es->lists;
    p->stats.lists_retrieved = es->retrieved_lists;
    p->stats.retrieval_index_items = es->index_items;
    p->stats.retrieval_index_upserts = es->index_upserts;
    p->stats.retrieval_rows_checked = es->index_rows_checked;
    p->stats.retrieval_audited_lists = es->audited_lists;
    p->stats.retrieval_audit_hits = es->audit_hits;
    p->stats.retrieval_audit_slots = es->audit_slots;
    *out = p->stats;
}

const dr_partition_stats_t *dr_pipeline_partitions(dr_pipeline_t *p, int *n) {
    return dr_ingest_partitions(p->ingest, n);
}

void dr_pipeline_state_sizes(dr_pipeline_t *p, uint64_t *live, uint64_t *pending) {
    *live = *pending = 0;
    dr_state_sizes(p->state, live, pending);
}

void dr_pipeline_write_stall(dr_pipeline_t *p, uint64_t *stopped, uint64_t *delayed_rate) {
    if (dr_state_write_stall(p->state, stopped, delayed_rate) != 0) *stopped = *delayed_rate = 0;
}

int dr_pipeline_exit_code(const dr_pipeline_t *p) { return p->stats.failed ? 1 : 0; }

void dr_pipeline_set_observer(dr_pipeline_t *p, dr_event_observer_fn fn, void *ctx) {
    p->observer = fn;
    p->observer_ctx = ctx;
}

void dr_pipeline_set_observer_ranks(dr_pipeline_t *p, bool on) { p->observer_ranks = on; }
void dr_pipeline_set_rank_filter(dr_pipeline_t *p, dr_rank_filter_fn fn) { p->rank_filter = fn; }
