/* cmd_inspect.c - `driftrec inspect [--state-dir D] [--json] user ID | item ID
 * | users | items | offsets | withdrawals`: decodes stored records read-only (a
 * point-in-time view that is safe beside a running pipeline) for people and for
 * tests. */
#include "dr_cmd_inspect.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_adwin.h"
#include "dr_config.h"
#include "dr_err.h"
#include "dr_learner.h"
#include "dr_report.h"
#include "dr_state.h"
#include "dr_withdraw.h"

typedef struct inspect {
    dr_config_t cfg;
    bool json, vectors;
    dr_state_t *st;
    dr_json_t j;
} inspect_t;

static void usage(FILE *f) {
    fprintf(f, "usage: driftrec inspect [--state-dir DIR] [--config FILE] [--set key=value]... [--json]\n"
               "                        user ID | item ID | users [--vectors] | items | offsets | withdrawals\n"
               "Shows what the state directory holds for a user (parameters and norms, drift\n"
               "detector, recent items, counters, the head of the last list) or an item (its\n"
               "parameters, popularity prior and heaviest co-engagement neighbours); `users`\n"
               "lists every user's event counter (with --vectors, v_u and b_u as exact hex floats);\n"
               "`items` lists every item: id, b_i and q_i as exact hex floats;\n"
               "`offsets` lists the stored next offset of each partition (where `run` resumes);\n"
               "`withdrawals` the partitions whose stored lists were not checked since the last\n"
               "blocked or deleted item (a run clears those it owns once every holder got a new\n"
               "list, and checks the others when it takes them) and the items withdrawn lately.\n"
               "Opens the store read-only. Records are read under the learner settings given\n"
               "(--config, --set): give those the pipeline runs with; a user's rating statistics\n"
               "per genre, for one, show only under its learner.content.dim. A user's recent items\n"
               "show as stored, whatever learner.recent.items says.\n");
}

/* The learner settings of a record: the configured ones, with the record's
 * own dimension, and a ring that holds every stored recent item. */
static dr_learner_conf_t record_conf(const inspect_t *in, const uint8_t *rec, size_t len) {
    dr_learner_conf_t c = in->cfg.learner;
    c.recent_items = DR_RECENT_MAX;
    if (len >= 3) c.dim = rec[1] | (rec[2] << 8);
    return c;
}

static double norm(const float *v, int n) {
    double s = 0;
    for (int k = 0; k < n; k++) s += (double)v[k] * v[k];
    return sqrt(s);
}

static void show_user(inspect_t *in, const dr_user_t *u, const dr_learner_conf_t *c) {
    int dim = c->dim;
    dr_json_t *j = &in->j;
    dr_json_object_begin(j, NULL);
    dr_json_int(j, "user_id", u->user_id);
    dr_json_int(j, "events_applied", (int64_t)u->events_applied);
    dr_json_int(j, "last_event_ms", u->last_event_ms);
    dr_json_int(j, "last_partition", u->last_source.partition);
    dr_json_int(j, "last_offset", u->last_source.offset);
    dr_json_num(j, "v_norm", norm(u->v, dim));
    dr_json_num(j, "bias", u->bias);
    dr_json_array_begin(j, "v");
    for (int k = 0; k < dim; k++) dr_json_num(j, NULL, u->v[k]);
    dr_json_array_end(j);
    /* the detector's window (its samples: 1 a missed impression, 0 an
     * engaged one, else a surprise; docs/DRIFT.md) and what the cuts did */
    dr_json_object_begin(j, "drift");
    dr_json_int(j, "window", (int64_t)dr_adwin_width(&u->drift));
    dr_json_num(j, "window_mean", dr_adwin_mean(&u->drift));
    dr_json_num(j, "window_variance", dr_adwin_variance(&u->drift));
    dr_json_int(j, "window_bucket_rows", dr_adwin_rows(&u->drift));
    dr_json_int(j, "samples", (int64_t)u->drift_samples);
    dr_json_int(j, "cuts", u->drift_cuts);
    dr_json_int(j, "last_cut_at_event", (int64_t)u->last_cut_event);
    dr_json_int(j, "readaptations", u->readapts);
    dr_json_int(j, "last_readaptation_at_event", (int64_t)u->readapt_event);
    dr_json_int(j, "regime_from_sample", (int64_t)u->regime_from);
    /* the lists explore topics after a re-adaptation (drift.explore.*) */
    dr_json_bool(j, "exploring", dr_user_exploring(c, u));
    /* ... the topics it passed over meanwhile last */
    dr_json_array_begin(j, "passed_topics");
    for (unsigned k = 0; k < u->passed_topics.len; k++) dr_json_int(j, NULL, u->passed_topics.id[k]);
    dr_json_array_end(j);
    dr_json_object_end(j);
    /* rating mode: what the rating blend knows of how the user rates
     * (docs/LEARNER.md, "Rating mode") */
    if (u->rating.n > 0) {
        const dr_rating_user_t *r = &u->rating;
        dr_json_object_begin(j, "rating_blend");
        dr_json_int(j, "ratings", r->n);
        dr_json_num(j, "mean_residual", r->residual_sum / (double)r->n);
        dr_json_num(j, "rms_error", sqrt(r->error_sq / (double)r->n));
        dr_json_array_begin(j, "residual_averages"); /* at rates 0.5, 0.2, 0.05 */
        for (int k = 0; k < 3; k++) dr_json_num(j, NULL, r->ema[k]);
        dr_json_array_end(j);
        dr_json_int(j, "session_ratings", r->session_n);
        dr_json_array_begin(j, "own_stage_weights");
        for (int k = 0; k < DR_RATING_USER_INPUTS; k++) dr_json_num(j, NULL, r->w[k]);
        dr_json_array_end(j);
        /* per content dimension (genre): the ratings' weight and the MF's
         * mean error on them (with a catalog of short embeddings) */
        dr_json_array_begin(j, "content_weight");
        for (int k = 0; k < r->content_len; k++) dr_json_num(j, NULL, r->content[r->content_len + k]);
        dr_json_array_end(j);
        dr_json_array_begin(j, "content_mean_error");
        for (int k = 0; k < r->content_len; k++) {
            float n = r->content[r->content_len + k];
            dr_json_num(j, NULL, n > 0 ? r->content[k] / n : 0.0);
        }
        dr_json_array_end(j);
        dr_json_object_end(j);
    }
    /* oldest first; in_regime: the entry drives the co-engagement term (it
     * joined after the last re-adaptation's regime began) */
    dr_json_array_begin(j, "recent_items");
    for (unsigned k = 0; k < u->recent_len; k++) {
        const dr_recent_event_t *r = &u->recent[(u->recent_head + k) % u->recent_len];
        dr_json_object_begin(j, NULL);
        dr_json_int(j, "item_id", r->item_id);
        dr_json_str(j, "type", dr_event_type_name(r->type));
        if (r->type == DR_EV_RATE) dr_json_num(j, "value", r->value);
        dr_json_bool(j, "in_regime", dr_user_in_regime(u, r));
        dr_json_object_end(j);
    }
    dr_json_array_end(j);
    dr_json_array_begin(j, "last_list_head");
    for (unsigned i = 0; i < u->last_list_len; i++) {
        dr_json_object_begin(j, NULL);
        dr_json_int(j, "item_id", u->last_list[i]);
        dr_json_num(j, "score", u->last_list_score[i]);
        dr_json_object_end(j);
    }
    dr_json_array_end(j);
    dr_json_object_end(j);
}

static int user_cb(void *ctx, int32_t partition, int64_t id, const void *rec, size_t len) {
    inspect_t *in = ctx;
    dr_learner_conf_t c = record_conf(in, rec, len);
    dr_user_t *u;
    if (dr_user_decode(id, &c, rec, len, &u) != 0) {
        fprintf(stderr, "driftrec inspect: user %" PRId64 ": corrupt record\n", id);
        return 0;
    }
    if (in->json) {
        dr_json_object_begin(&in->j, NULL);
        dr_json_int(&in->j, "user_id", id);
        dr_json_int(&in->j, "partition", partition);
        dr_json_int(&in->j, "events_applied", (int64_t)u->events_applied);
        dr_json_num(&in->j, "v_norm", norm(u->v, c.dim));
        dr_json_object_end(&in->j);
    } else {
        printf("%" PRId64 " %" PRIu64, id, u->events_applied);
        /* exact bits (%a), for comparing two states */
        for (int k = 0; in->vectors && k < c.dim; k++) printf(" %a", (double)u->v[k]);
        if (in->vectors) printf(" %a", (double)u->bias);
        printf("\n");
    }
    dr_user_free(u);
    return 0;
}

/* Users are stored by partition: the one asked for is looked for in each
 * partition the store holds (a seek and a read each, dr_state_find_user). */
static int inspect_user(inspect_t *in, int64_t id) {
    int32_t partition;
    uint8_t *rec;
    size_t len;
    int err = dr_state_find_user(in->st, id, &partition, &rec, &len);
    if (err) {
        fprintf(stderr, "driftrec inspect: user %" PRId64 ": %s\n", id, err == DR_ENOTFOUND ? "no stored state" : dr_strerror(err));
        return err;
    }
    dr_learner_conf_t c = record_conf(in, rec, len);
    dr_user_t *u;
    err = dr_user_decode(id, &c, rec, len, &u);
    free(rec);
    if (err) { fprintf(stderr, "driftrec inspect: user %" PRId64 ": corrupt record\n", id); return err; }
    show_user(in, u, &c);
    dr_user_free(u);
    return 0;
}

#define INSPECT_NEIGHBORS 20 /* co-engagement neighbours shown for an item */

/* `inspect items`: every stored item, loaded into one model. */
typedef struct items_load {
    inspect_t *in;
    dr_model_t *m;
} items_load_t;

static int items_cb(void *ctx, int64_t id, const void *rec, size_t len) {
    items_load_t *l = ctx;
    char err[256];
    if (!l->m) {
        dr_learner_conf_t c = record_conf(l->in, rec, len);
        c.max_items = (int64_t)1 << 30;
        if (dr_model_new(&l->m, &c, err, sizeof(err))) return DR_ENOMEM;
    }
    if (dr_model_load_item(l->m, id, rec, len))
        fprintf(stderr, "driftrec inspect: item %" PRId64 ": corrupt record\n", id);
    return 0;
}

/* One line per item: id, bias, then q (exact bits with --vectors, as users). */
static int inspect_items(inspect_t *in) {
    items_load_t l = {in, NULL};
    int err = dr_state_for_each_item(in->st, items_cb, &l);
    if (!err && l.m) {
        dr_items_view_t v;
        dr_model_items(l.m, &v);
        for (size_t i = 0; i < v.n; i++) {
            printf("%" PRId64 " %a", v.ids[i], (double)v.bias[i]);
            for (int k = 0; k < v.dim; k++) printf(" %a", (double)v.q[i * (size_t)v.dim + k]);
            printf("\n");
        }
    }
    dr_model_free(l.m);
    return err;
}

typedef struct item_find {
    int64_t id;
    inspect_t *in;
    bool found;
} item_find_t;

static int item_cb(void *ctx, int64_t id, const void *rec, size_t len) {
    item_find_t *f = ctx;
    if (id != f->id) return 0;
    f->found = true;
    dr_learner_conf_t c = record_conf(f->in, rec, len);
    c.cooc_neighbors = DR_MAX_NEIGHBORS; /* show every stored neighbour, whatever the setting now */
    dr_model_t *m;
    char err[256];
    if (dr_model_new(&m, &c, err, sizeof(err)) || dr_model_load_item(m, id, rec, len)) {
        fprintf(stderr, "driftrec inspect: item %" PRId64 ": corrupt record\n", id);
        return 1;
    }
    dr_items_view_t v;
    dr_model_items(m, &v);
    dr_json_t *j = &f->in->j;
    dr_json_object_begin(j, NULL);
    dr_json_int(j, "item_id", id);
    dr_json_num(j, "bias", v.bias[0]);
    dr_json_num(j, "q_norm", norm(v.q, v.dim));
    dr_json_bool(j, "excluded", v.excluded[0]);
    /* when it was published (ms; -1: not known yet); tombstoned: the id came
     * back after a catalog tombstone and is never listed */
    int64_t published = dr_model_item_published(m, id);
    dr_json_int(j, "published_at", published == INT64_MIN ? -1 : published);
    dr_json_bool(j, "tombstoned", published == INT64_MIN);
    dr_json_num(j, "popularity_prior", v.pop[0]);
    dr_json_array_begin(j, "q");
    for (int k = 0; k < v.dim; k++) dr_json_num(j, NULL, v.q[k]);
    dr_json_array_end(j);
    /* the items this one is most often engaged next to (its co-engagement head) */
    int64_t nb_ids[INSPECT_NEIGHBORS];
    float nb_w[INSPECT_NEIGHBORS], engaged;
    size_t nb = dr_model_item_neighbors(m, 0, &engaged, nb_ids, nb_w, INSPECT_NEIGHBORS);
    dr_json_num(j, "engagements", engaged);
    dr_json_array_begin(j, "neighbors");
    for (size_t k = 0; k < nb; k++) {
        dr_json_object_begin(j, NULL);
        dr_json_int(j, "item_id", nb_ids[k]);
        dr_json_num(j, "count", nb_w[k]);
        dr_json_object_end(j);
    }
    dr_json_array_end(j);
    dr_json_object_end(j);
    dr_model_free(m);
    return 1;
}

static int offset_cb(void *ctx, const char *topic, int32_t partition, int64_t next_offset) {
    inspect_t *in = ctx;
    if (!in->json) {
        printf("%s %" PRId32 " %" PRId64 "\n", topic, partition, next_offset);
        return 0;
    }
    dr_json_object_begin(&in->j, NULL);
    dr_json_str(&in->j, "topic", topic);
    dr_json_int(&in->j, "partition", partition);
    dr_json_int(&in->j, "next_offset", next_offset);
    dr_json_object_end(&in->j);
    return 0;
}

/* The partitions marked, as ingest.partitions writes them ("0-3,8"), or
 * "none". */
static void partition_ranges(const uint8_t *marked, char *out, size_t n) {
    size_t len = 0;
    out[0] = '\0';
    for (int p = 0; p < DR_INGEST_MAX_PARTITIONS && len < n; p++) {
        if (!marked[p]) continue;
        int hi = p;
        while (hi + 1 < DR_INGEST_MAX_PARTITIONS && marked[hi + 1]) hi++;
        int w = hi > p ? snprintf(out + len, n - len, "%s%d-%d", len ? "," : "", p, hi)
                       : snprintf(out + len, n - len, "%s%d", len ? "," : "", p);
        len += w > 0 ? (size_t)w : 0;
        p = hi;
    }
    if (len == 0) snprintf(out, n, "none");
}

/* The withdrawal ledger (dr_withdraw.h): "unchecked RANGES" (or none),
 * then "withdrawn ITEM AT_MS" a line each, oldest first. */
static int inspect_withdrawals(inspect_t *in) {
    uint8_t *val = NULL;
    size_t len = 0;
    dr_withdraw_ledger_t l = {0};
    int err = dr_state_get_meta(in->st, "withdrawals", &val, &len);
    if (!err) err = dr_withdraw_ledger_decode(&l, val, len);
    free(val);
    if (err == DR_ECORRUPT) fprintf(stderr, "driftrec inspect: the stored withdrawals are malformed\n");
    if (err && err != DR_ENOTFOUND) return err;
    static char ranges[DR_INGEST_MAX_PARTITIONS * 6];
    partition_ranges(l.unchecked, ranges, sizeof(ranges));
    if (in->json) {
        dr_json_object_begin(&in->j, NULL);
        dr_json_str(&in->j, "unchecked_partitions", ranges);
        dr_json_array_begin(&in->j, "withdrawn");
        for (size_t k = 0; k < l.n_recent; k++) {
            dr_json_object_begin(&in->j, NULL);
            dr_json_int(&in->j, "item_id", l.recent[k].item_id);
            dr_json_int(&in->j, "at_ms", l.recent[k].at_ms);
            dr_json_object_end(&in->j);
        }
        dr_json_array_end(&in->j);
        dr_json_object_end(&in->j);
    } else {
        printf("unchecked %s\n", ranges);
        for (size_t k = 0; k < l.n_recent; k++)
            printf("withdrawn %" PRId64 " %" PRId64 "\n", l.recent[k].item_id, l.recent[k].at_ms);
    }
    dr_withdraw_ledger_free(&l);
    return 0;
}

static int run(inspect_t *in, const char *what, const char *arg) {
    char *end = NULL;
    int64_t id = arg ? strtoll(arg, &end, 10) : 0;
    if (arg && (*end || id < 0)) { fprintf(stderr, "driftrec inspect: bad id '%s'\n", arg); return DR_EINVAL; }
    if (!strcmp(what, "user") && arg) return inspect_user(in, id);
    if (!strcmp(what, "users")) {
        if (in->json) dr_json_array_begin(&in->j, NULL);
        int err = dr_state_for_each_user(in->st, user_cb, in);
        if (in->json) dr_json_array_end(&in->j);
        return err;
    }
    if (!strcmp(what, "items")) return inspect_items(in);
    if (!strcmp(what, "withdrawals")) return inspect_withdrawals(in);
    if (!strcmp(what, "offsets")) {
        if (in->json) dr_json_array_begin(&in->j, NULL);
        int err = dr_state_for_each_offset(in->st, offset_cb, in);
        if (in->json) dr_json_array_end(&in->j);
        if (err == DR_ECORRUPT) fprintf(stderr, "driftrec inspect: a stored offset is malformed\n");
        return err;
    }
    if (!strcmp(what, "item") && arg) {
        item_find_t f = {id, in, false};
        dr_state_for_each_item(in->st, item_cb, &f);
        if (!f.found) fprintf(stderr, "driftrec inspect: item %" PRId64 ": no stored state\n", id);
        return f.found ? 0 : DR_ENOTFOUND;
    }
    usage(stderr);
    return DR_EINVAL;
}

int dr_cmd_inspect(int argc, char **argv) {
    static const struct option lo[] = {{"state-dir", 1, 0, 'd'}, {"config", 1, 0, 'c'},
                                       {"set", 1, 0, 's'}, {"json", 0, 0, 'j'},
                                       {"vectors", 0, 0, 'v'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    inspect_t *in = calloc(1, sizeof(*in));
    char err[1024];
    int c, rc = 0;
    if (!in) return 1;
    dr_config_default(&in->cfg);
    while (!rc && (c = getopt_long(argc, argv, "d:c:s:jvh", lo, NULL)) != -1) {
        if (c == 'd') rc = dr_config_set(&in->cfg, "state.dir", optarg, err, sizeof(err));
        else if (c == 'c') rc = dr_config_load_file(&in->cfg, optarg, err, sizeof(err));
        else if (c == 's') rc = dr_config_set_pair(&in->cfg, optarg, err, sizeof(err));
        else if (c == 'j') in->json = true;
        else if (c == 'v') in->vectors = true;
        else { usage(c == 'h' ? stdout : stderr); free(in); return c == 'h' ? 0 : 2; }
        if (rc) fprintf(stderr, "driftrec inspect: %s\n", err);
    }
    if (rc || optind >= argc) { if (!rc) usage(stderr); free(in); return 2; }
    dr_config_finish(&in->cfg, err, sizeof(err));
    dr_state_conf_t sc;
    dr_state_conf_default(&sc);
    sc.path = in->cfg.state_dir;
    sc.read_only = true;
    if (dr_state_open(&in->st, &sc, err, sizeof(err))) {
        fprintf(stderr, "driftrec inspect: %s\n", err);
        free(in);
        return 1;
    }
    dr_json_init(&in->j, stdout);
    rc = run(in, argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL);
    dr_state_close(in->st);
    free(in);
    return rc == DR_EINVAL ? 2 : rc ? 1 : 0;
}
