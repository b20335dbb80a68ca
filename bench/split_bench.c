/* split_bench.c - what splitting the users over instances costs in model
 * quality, without the timing: the open-loop demo stream (dr_synth.h) played
 * through K learner models in one process, each owning the users of its
 * partitions (a hash of the user id over 12 partitions, partition p to
 * instance p mod K), sharing their item changes as the model topic does
 * (dr_model_sync_export / dr_model_sync_import) every SYNC events of the
 * whole stream. Each click's item is ranked under its owner's model just
 * before the click (dr_model_list_rank_within: test-then-train, as
 * eval.rank.clicks does in `driftrec run`), then the event is learned.
 *
 * A live group adds its own noise (which instance reads what when, its
 * speed on shared cores); here every run of the same arguments gives the
 * same figure, so a gap between 1 and K instances is what the split and the
 * sharing cost, and a gap left at SYNC=1 is what sharing does not carry.
 *
 *   split_bench EVENTS USERS ITEMS K SYNC SHARE [key=value ...]
 *
 * SHARE: "all" (factors and co-engagement counts), "factors" (the
 * co-engagement part of every export dropped), "none". key=value: settings
 * as `driftrec run --set` takes them (learner.content.dim=16: every model
 * knows every item's content embedding from the start, as each instance
 * reads the whole catalog), and three of the bench's own:
 * bench.global=0 runs without the population-wide detectors,
 * bench.share.w=0 zeroes the change of the content projection W in every
 * export (each instance learns its own W, as before messages "DRS3"),
 * bench.chunk=N plays each partition's events N at a time, round robin (the
 * order in which fetches of a backlog deliver them). Each instance has its
 * own population-wide detector, as each `driftrec run` has; SPLIT_DEBUG=1
 * names the event at which one starts the trend term. Prints one line of
 * key=value. Built and run by bench/split.sh. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_adwin.h"
#include "dr_bytes.h"
#include "dr_config.h"
#include "dr_err.h"
#include "dr_learner.h"
#include "dr_log.h"
#include "dr_synth.h"

#define PARTITIONS 12
#define MAX_K 16
#define HIT_K 10

/* The user's partition, as a hash partitioner spreads users. */
static int partition_of(int64_t user_id) { return (int)(dr_mix64((uint64_t)user_id) % PARTITIONS); }

static void die(const char *what, int rc) {
    fprintf(stderr, "split_bench: %s (%d)\n", what, rc);
    exit(1);
}

/* Drops the co-engagement part of a "DRS3" export (u32 m set to 0): the
 * layout is in dr_learner.h ("sharing"). */
static size_t without_coengagement(uint8_t *buf, size_t len, int dim) {
    size_t at = 4 + 4 + (size_t)dim * 4;
    uint32_t c, w_rows, n;
    memcpy(&c, buf + at, 4);
    memcpy(&w_rows, buf + at + 8, 4);
    at += 12 + (size_t)c * w_rows * 4; /* ΔW */
    memcpy(&n, buf + at, 4);
    at += 4 + (size_t)n * (8 + 1 + ((size_t)dim + 1) * 4 + 12);
    if (at + 4 > len) die("unexpected export layout", DR_ECORRUPT);
    memset(buf + at, 0, 4);
    return at + 4;
}

/* Zeroes the change of W in a "DRS3" export: the importer adds nothing. */
static void without_w(uint8_t *buf, size_t len, int dim) {
    size_t at = 4 + 4 + (size_t)dim * 4;
    uint32_t c, w_rows;
    memcpy(&c, buf + at, 4);
    memcpy(&w_rows, buf + at + 8, 4);
    if (at + 12 + (size_t)c * w_rows * 4 > len) die("unexpected export layout", DR_ECORRUPT);
    memset(buf + at + 12, 0, (size_t)c * w_rows * 4);
}

static bool share_w = true; /* bench.share.w */

static void share(dr_model_t **m, int k, int dim, const char *how) {
    for (int from = 0; from < k; from++) {
        bool first = true;
        while (first || dr_model_sync_pending(m[from]) > 0) {
            uint8_t *buf;
            size_t len, items, applied, skipped;
            int rc = dr_model_sync_export(m[from], 4096, &buf, &len, &items);
            if (rc) die("export", rc);
            first = false;
            if (!share_w) without_w(buf, len, dim);
            if (strcmp(how, "factors") == 0) len = without_coengagement(buf, len, dim);
            for (int to = 0; to < k && strcmp(how, "none") != 0; to++)
                if (to != from && (rc = dr_model_sync_import(m[to], buf, len, &applied, &skipped)))
                    die("import", rc);
            free(buf);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: split_bench EVENTS USERS ITEMS K SYNC all|factors|none [key=value ...]\n");
        return 2;
    }
    dr_log_set_level(DR_LOG_WARN);
    uint64_t events = strtoull(argv[1], NULL, 10), users = strtoull(argv[2], NULL, 10);
    uint64_t items = strtoull(argv[3], NULL, 10), sync_every = strtoull(argv[5], NULL, 10);
    int k = atoi(argv[4]);
    const char *how = argv[6];
    if (k < 1 || k > MAX_K || sync_every < 1 || users < 1 ||
        (strcmp(how, "all") && strcmp(how, "factors") && strcmp(how, "none")))
        die("bad arguments", DR_EINVAL);
    char err[512];
    static dr_config_t cfg;
    dr_config_default(&cfg);
    uint64_t chunk = 0; /* bench.chunk=N: the order of fetched chunks (0: the stream's) */
    bool global_on = true; /* bench.global=0: no population-wide detector */
    for (int i = 7; i < argc; i++)
        if (strncmp(argv[i], "bench.chunk=", 12) == 0) chunk = strtoull(argv[i] + 12, NULL, 10);
        else if (strncmp(argv[i], "bench.global=", 13) == 0) global_on = atoi(argv[i] + 13) != 0;
        else if (strncmp(argv[i], "bench.share.w=", 14) == 0) share_w = atoi(argv[i] + 14) != 0;
        else if (dr_config_set_pair(&cfg, argv[i], err, sizeof(err))) die(err, DR_ECONFIG);
    if (dr_config_finish(&cfg, err, sizeof(err))) die(err, DR_ECONFIG);

    /* each instance its model and, as `driftrec run`, its population-wide
     * drift detector (fed its own users' samples: a cut starts the trend
     * term of its own model) */
    dr_model_t *m[MAX_K];
    dr_adwin_pop_t global[MAX_K];
    dr_adwin_pop_conf_t gc = {cfg.global_drift_delta, cfg.global_block, cfg.global_scale, cfg.global_min_rise};
    uint64_t trends = 0;
    for (int i = 0; i < k; i++) {
        int rc = dr_model_new(&m[i], &cfg.learner, err, sizeof(err));
        if (rc) die(err, rc);
        if (k > 1 && (rc = dr_model_sync_enable(m[i]))) die("sync", rc);
        if ((rc = dr_adwin_pop_init(&global[i], &gc))) die("drift.global.*", rc);
    }
    dr_user_t **state = calloc(users + 1, sizeof(*state));
    if (!state) die("users", DR_ENOMEM);
    dr_synth_conf_t sc;
    dr_synth_conf_default(&sc);
    sc.events = events;
    sc.users = users;
    sc.items = items;
    dr_synth_t *s;
    int rc = dr_synth_new(&s, &sc);
    if (rc) die("synth", rc);
    if (cfg.learner.content_dim == DR_SYNTH_CONTENT_DIM)
        for (uint64_t item = 1; item <= items; item++) {
            float emb[DR_SYNTH_CONTENT_DIM];
            dr_synth_item_embedding(s, (int64_t)item, emb);
            for (int i = 0; i < k; i++)
                if ((rc = dr_model_set_item_content(m[i], (int64_t)item, emb, DR_SYNTH_CONTENT_DIM))) die("content", rc);
        }

    uint64_t ranked = 0, hits = 0, n = 0, syncs = 0;
    double t0 = dr_mono_s();
    /* the order: the stream's, or each partition's events in chunks taken
     * round robin (as fetches of a backlog deliver them) */
    dr_event_t *all = NULL;
    size_t n_all = 0, *part_next = NULL;
    size_t *order = NULL;
    if (chunk > 0) {
        all = malloc(events * sizeof(*all));
        order = malloc(events * sizeof(*order));
        part_next = calloc(PARTITIONS, sizeof(*part_next));
        if (!all || !order || !part_next) die("chunks", DR_ENOMEM);
        while (n_all < events && dr_synth_next(s, &all[n_all])) n_all++;
        /* per partition, its events in stream order; then chunk by chunk */
        size_t *count = calloc(PARTITIONS + 1, sizeof(*count));
        if (!count) die("chunks", DR_ENOMEM);
        for (size_t e = 0; e < n_all; e++) count[partition_of(all[e].user_id) + 1]++;
        for (int p = 0; p < PARTITIONS; p++) count[p + 1] += count[p];
        size_t *by_part = malloc(n_all * sizeof(*by_part)), *fill = calloc(PARTITIONS, sizeof(*fill));
        if (!by_part || !fill) die("chunks", DR_ENOMEM);
        for (size_t e = 0; e < n_all; e++) {
            int p = partition_of(all[e].user_id);
            by_part[count[p] + fill[p]++] = e;
        }
        size_t placed = 0;
        while (placed < n_all)
            for (int p = 0; p < PARTITIONS; p++)
                for (uint64_t c = 0; c < chunk && part_next[p] < fill[p]; c++)
                    order[placed++] = by_part[count[p] + part_next[p]++];
        free(by_part);
        free(fill);
        free(count);
    }
    dr_event_t ev;
    size_t at = 0;
    while (chunk > 0 ? at < n_all : dr_synth_next(s, &ev)) {
        if (chunk > 0) ev = all[order[at++]];
        if (ev.user_id < 1 || (uint64_t)ev.user_id > users) die("user id out of range", DR_ERANGE);
        int owner = partition_of(ev.user_id) % k;
        dr_model_t *mo = m[owner];
        dr_user_t *u = state[ev.user_id];
        if (!u && !(u = state[ev.user_id] = dr_user_new_conf(ev.user_id, &cfg.learner))) die("user", DR_ENOMEM);
        if (ev.type == DR_EV_CLICK) {
            int64_t rank = dr_model_list_rank_within(mo, u, ev.item_id, HIT_K);
            ranked++;
            hits += rank >= 1 && rank <= HIT_K;
        }
        dr_apply_result_t res;
        if ((rc = dr_learner_apply(mo, u, &ev, dr_mix64(n), &res))) die("apply", rc);
        for (int j = 0; j < res.n_samples && global_on; j++) {
            dr_adwin_pop_view_t v;
            double x; /* as the pipeline feeds its detector */
            if (!dr_drift_global_sample(&cfg.learner, &res, j, cfg.global_relative, &x)) continue;
            if (dr_adwin_pop_observe(&global[owner], x, &v) == DR_ADWIN_POP_DRIFT) {
                dr_model_trend_start(mo);
                trends++;
                if (getenv("SPLIT_DEBUG")) fprintf(stderr, "trend start: instance %d at event %zu\n", owner, (size_t)n);
            }
        }
        if (res.drift && dr_learner_should_respond(mo, u, &res)) dr_learner_readapt(mo, u, res.drift_direction);
        if (++n % sync_every == 0 && k > 1) {
            share(m, k, cfg.learner.dim, how);
            syncs++;
        }
    }
    free(all);
    free(order);
    free(part_next);
    printf("instances=%d sync_events=%" PRIu64 " share=%s chunk=%" PRIu64 " events=%" PRIu64 " clicks_ranked=%" PRIu64
           " rank_hits=%" PRIu64 " hr10=%.4f syncs=%" PRIu64 " trend_starts=%" PRIu64 " seconds=%.1f\n",
           k, sync_every, how, chunk, n, ranked, hits, ranked ? (double)hits / (double)ranked : 0.0, syncs, trends,
           dr_mono_s() - t0);
    for (uint64_t i = 0; i <= users; i++) dr_user_free(state[i]);
    free(state);
    dr_synth_free(s);
    for (int i = 0; i < k; i++) dr_model_free(m[i]), dr_adwin_pop_free(&global[i]);
    return 0;
}
