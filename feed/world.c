/* world.c - the feed's hidden world (see dr_feed.h): every user's tastes,
 * activity and drift schedule and every item's quality, drawn once from the
 * seed, then only read. */
#include "dr_feed.h"

#include <math.h>
#include <stdlib.h>

#include "dr_bytes.h"
#include "dr_err.h"

/* An engagement here is an engaged view (a click, a long watch): a user
 * engages with most of what matches the interest and with little else, as
 * on a short-video feed, so a list that stops matching is visible in a few
 * dozen impressions (docs/DRIFT.md has the detection delay against the
 * in-taste engagement rate). */
#define LOGIT_OUT (-3.5)     /* out-of-taste logit before quality: ~0.03 */
#define LOGIT_IN 2.0         /* in-taste logit before quality: ~0.88 */
#define SECOND_TASTE 0.4     /* taste of a second cluster: logit -1.3 + quality */
/* Logit a user's own clusters lose after the shift (x taste): in-taste items
 * fall from ~0.88 to ~0.5, a dip of the lists published before it. */
#define SHIFT_PENALTY 2.0
#define REPEAT_FACTOR 0.1    /* a recently clicked item is clicked this much as often */
#define EXAM_DECAY 0.1       /* examination(k) = 1 / (1 + 0.1 k) */
/* Switches fall between 35% and 60% of the run: late enough for users to
 * have a history, early enough to watch recovery before the shift at 75%. */
#define SWITCH_FROM 0.35
#define SWITCH_SPAN 0.25
/* Gradual drifts start between 20% and 50% and last a fifth of the run, so
 * they are over before the shift. */
#define GRADUAL_FROM 0.20
#define GRADUAL_SPAN 0.30
#define GRADUAL_LENGTH 0.20

/* Salts: each kind of draw has its own stream, so adding one never moves
 * another. */
enum { SALT_USER = 1, SALT_ACTIVE, SALT_ITEM, SALT_SHIFT, SALT_POPULAR, SALT_CENTRE, SALT_NOISE };

typedef struct world_user {
    dr_feed_truth_t t;
} world_user_t;

struct dr_feed_world {
    dr_feed_conf_t conf;
    int64_t round_ms;
    world_user_t *users;   /* [users + 1] */
    float *quality;        /* [items + 1] */
    int shift_round, shift_cluster;
    int64_t shift_ms;
};

void dr_feed_conf_default(dr_feed_conf_t *c) {
    c->users = 8000;
    c->items = 5000;
    c->clusters = 20;
    c->rounds = 240;
    c->round_minutes = 30;
    c->start_ms = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    c->seed = 1;
    c->switch_share = 0.2;
    c->gradual_share = 0.1;
    c->second_share = 0.5;
    c->shift_at = 0.75;
    c->popular_share = 0.1;
    c->explore_share = 0.2;
    /* p = min(0.95, 0.03 * U^(-1/0.9)): the median user has ~15 sessions in
     * 240 rounds, 3% have one in nearly every round (see feed/README.md) */
    c->activity_min = 0.03;
    c->activity_alpha = 0.9;
    c->activity_max = 0.95;
    c->session_min = 5;
    c->session_max = 15;
}

/* One seeded draw for (salt, a, b). The seed is mixed before a joins it:
 * seed ^ a alone would only relabel users from one seed to the next. */
static uint64_t draw(const dr_feed_conf_t *c, int salt, uint64_t a, uint64_t b) {
    return dr_mix64(dr_mix64(dr_mix64(c->seed ^ ((uint64_t)salt << 56)) ^ a) ^ b);
}

static double unit(uint64_t h) { return (double)(h >> 11) * 0x1.0p-53; }

static bool share_ok(double x) { return x >= 0 && x <= 1; }

static bool conf_ok(const dr_feed_conf_t *c) {
    return c->clusters >= 3 && c->users >= 1 && c->items >= (uint64_t)c->clusters &&
           c->rounds >= 10 && c->round_minutes >= 1 && share_ok(c->switch_share) &&
           share_ok(c->gradual_share) && c->switch_share + c->gradual_share <= 1 &&
           share_ok(c->second_share) && share_ok(c->shift_at) && share_ok(c->popular_share) &&
           share_ok(c->explore_share) && c->activity_min > 0 && c->activity_alpha > 0 &&
           c->activity_max >= c->activity_min && c->activity_max <= 1 && c->session_min >= 1 &&
           c->session_max >= c->session_min && c->users < (uint64_t)DR_MAX_ID &&
           c->items < (uint64_t)DR_MAX_ID;
}

/* A cluster for a user's taste, uniformly among those other than `not`
 * (-1: none) and the shift's: nobody cares for that one until it trends, so
 * neither the lists nor the trending top hold much of it before the shift,
 * and only a response to the shift brings it in. (A cluster that happened
 * to be popular already hid the dip in early runs.) */
static int taste_cluster(const dr_feed_world_t *w, int not, uint64_t h) {
    int n = w->conf.clusters - 1 - (not >= 0);
    int k = (int)(h % (uint64_t)n);
    for (int c = 0;; c++) {
        if (c == w->shift_cluster || c == not) continue;
        if (k-- == 0) return c;
    }
}

static void draw_user(dr_feed_world_t *w, uint64_t id, dr_feed_truth_t *t) {
    const dr_feed_conf_t *c = &w->conf;
    uint64_t h = draw(c, SALT_USER, id, 0);
    t->c0 = t->c1 = taste_cluster(w, -1, h);
    double kind = unit(draw(c, SALT_USER, id, 1));
    t->second = unit(draw(c, SALT_USER, id, 2)) < c->second_share
                    ? taste_cluster(w, t->c0, draw(c, SALT_USER, id, 3)) : -1;
    /* heavy tail: a Pareto draw, capped (U in (0, 1]) */
    double u = 1.0 - unit(draw(c, SALT_USER, id, 4));
    t->activity = fmin(c->activity_max, c->activity_min * pow(u, -1.0 / c->activity_alpha));
    t->popular = unit(draw(c, SALT_POPULAR, id, 0)) < c->popular_share;
    double when = unit(draw(c, SALT_USER, id, 5));
    t->kind = DR_FEED_STABLE;
    t->from_round = -1;
    t->from_ms = t->to_ms = INT64_MAX;
    if (kind < c->switch_share + c->gradual_share) {
        bool abrupt = kind < c->switch_share;
        t->kind = abrupt ? DR_FEED_ABRUPT : DR_FEED_GRADUAL;
        t->c1 = taste_cluster(w, t->c0, draw(c, SALT_USER, id, 6));
        if (t->second == t->c1) t->second = -1; /* the new main cluster is not also a second one */
        double at = abrupt ? SWITCH_FROM + SWITCH_SPAN * when : GRADUAL_FROM + GRADUAL_SPAN * when;
        t->from_round = (int)(at * c->rounds);
        t->from_ms = dr_feed_world_round_ms(w, t->from_round);
        int len = abrupt ? 0 : (int)(GRADUAL_LENGTH * c->rounds);
        t->to_ms = dr_feed_world_round_ms(w, t->from_round + len);
    }
}

int dr_feed_world_new(dr_feed_world_t **out, const dr_feed_conf_t *conf) {
    *out = NULL;
    if (!conf_ok(conf)) return DR_EINVAL;
    dr_feed_world_t *w = calloc(1, sizeof(*w));
    if (!w) return DR_ENOMEM;
    w->conf = *conf;
    w->round_ms = (int64_t)conf->round_minutes * 60000;
    w->users = calloc(conf->users + 1, sizeof(*w->users));
    w->quality = calloc(conf->items + 1, sizeof(*w->quality));
    if (!w->users || !w->quality) {
        dr_feed_world_free(w);
        return DR_ENOMEM;
    }
    for (uint64_t i = 1; i <= conf->items; i++) {
        /* roughly normal, sd ~0.4: the sum of three uniforms */
        double q = 0;
        for (uint64_t k = 0; k < 3; k++) q += unit(draw(conf, SALT_ITEM, i, k));
        w->quality[i] = (float)(0.8 * (q - 1.5));
    }
    w->shift_round = (int)(conf->shift_at * conf->rounds);
    w->shift_ms = dr_feed_world_round_ms(w, w->shift_round);
    w->shift_cluster = (int)(draw(conf, SALT_SHIFT, 0, 0) % (uint64_t)conf->clusters);
    for (uint64_t u = 1; u <= conf->users; u++) draw_user(w, u, &w->users[u].t);
    *out = w;
    return 0;
}

void dr_feed_world_free(dr_feed_world_t *w) {
    if (!w) return;
    free(w->users);
    free(w->quality);
    free(w);
}

const dr_feed_conf_t *dr_feed_world_conf(const dr_feed_world_t *w) { return &w->conf; }

int64_t dr_feed_world_round_ms(const dr_feed_world_t *w, int round) {
    return w->conf.start_ms + (int64_t)round * w->round_ms;
}

int dr_feed_world_round_of(const dr_feed_world_t *w, int64_t t_ms) {
    int64_t d = t_ms - w->conf.start_ms;
    return (int)(d >= 0 ? d / w->round_ms : -1 - (-d - 1) / w->round_ms);
}

int dr_feed_world_item_cluster(const dr_feed_world_t *w, int64_t item_id) {
    return (int)((item_id - 1) % w->conf.clusters);
}

float dr_feed_world_item_quality(const dr_feed_world_t *w, int64_t item_id) {
    if (item_id < 1 || (uint64_t)item_id > w->conf.items) return 0;
    return w->quality[item_id];
}

void dr_feed_world_item_embedding(const dr_feed_world_t *w, int64_t item_id, float *out) {
    uint64_t centre = draw(&w->conf, SALT_CENTRE, (uint64_t)dr_feed_world_item_cluster(w, item_id), 0);
    uint64_t noise = draw(&w->conf, SALT_NOISE, (uint64_t)item_id, 0);
    for (int j = 0; j < DR_FEED_CONTENT_DIM; j++)
        out[j] = (float)(2.0 * dr_rand01(&centre) - 1.0 + 1.2 * (dr_rand01(&noise) - 0.5));
}

static const dr_feed_truth_t *truth_of(const dr_feed_world_t *w, int64_t user_id) {
    static const dr_feed_truth_t none = {.second = -1, .from_round = -1,
                                         .from_ms = INT64_MAX, .to_ms = INT64_MAX};
    if (user_id < 1 || (uint64_t)user_id > w->conf.users) return &none;
    return &w->users[user_id].t;
}

void dr_feed_world_truth(const dr_feed_world_t *w, int64_t user_id, dr_feed_truth_t *out) {
    *out = *truth_of(w, user_id);
}

bool dr_feed_world_active(const dr_feed_world_t *w, int64_t user_id, int round) {
    const dr_feed_truth_t *t = truth_of(w, user_id);
    return unit(draw(&w->conf, SALT_ACTIVE, (uint64_t)user_id, (uint64_t)round)) < t->activity;
}

void dr_feed_world_shift(const dr_feed_world_t *w, int *round, int64_t *t_ms, int *cluster) {
    if (round) *round = w->shift_round;
    if (t_ms) *t_ms = w->shift_ms;
    if (cluster) *cluster = w->shift_cluster;
}

double dr_feed_world_taste(const dr_feed_world_t *w, int64_t user_id, int cluster, int64_t t_ms) {
    const dr_feed_truth_t *t = truth_of(w, user_id);
    double taste = 0;
    if (t->kind == DR_FEED_GRADUAL) {
        double a = t_ms <= t->from_ms ? 0 : t_ms >= t->to_ms ? 1
                 : (double)(t_ms - t->from_ms) / (double)(t->to_ms - t->from_ms);
        taste = cluster == t->c0 ? 1 - a : cluster == t->c1 ? a : 0;
    } else {
        taste = cluster == (t_ms < t->from_ms ? t->c0 : t->c1);
    }
    if (cluster == t->second && taste < SECOND_TASTE) taste = SECOND_TASTE;
    return taste;
}

double dr_feed_world_logit(const dr_feed_world_t *w, int64_t user_id, int64_t item_id, int64_t t_ms) {
    int c = dr_feed_world_item_cluster(w, item_id);
    double taste = dr_feed_world_taste(w, user_id, c, t_ms);
    double q = dr_feed_world_item_quality(w, item_id);
    double logit = LOGIT_OUT + (LOGIT_IN - LOGIT_OUT) * taste + q;
    if (t_ms >= w->shift_ms) {
        if (c == w->shift_cluster) logit = fmax(logit, LOGIT_IN + q);
        else logit -= SHIFT_PENALTY * taste;
    }
    return logit;
}

bool dr_feed_world_in_taste(const dr_feed_world_t *w, int64_t user_id, int64_t item_id, int64_t t_ms) {
    int c = dr_feed_world_item_cluster(w, item_id);
    return dr_feed_world_taste(w, user_id, c, t_ms) >= 0.5 ||
           (t_ms >= w->shift_ms && c == w->shift_cluster);
}

double dr_feed_world_click_prob(const dr_feed_world_t *w, int64_t user_id, int64_t item_id,
                                int position, int64_t t_ms, bool clicked_recently) {
    double exam = 1.0 / (1.0 + EXAM_DECAY * (position > 0 ? position : 0));
    double p = exam / (1.0 + exp(-dr_feed_world_logit(w, user_id, item_id, t_ms)));
    return clicked_recently ? p * REPEAT_FACTOR : p;
}

const char *dr_feed_arm_name(int arm) {
    static const char *const names[DR_FEED_ARMS] = {"drift", "control", "popular"};
    return arm >= 0 && arm < DR_FEED_ARMS ? names[arm] : "?";
}
