/* measure.c - the feed simulator's CTR bookkeeping (see dr_feed.h): every
 * impression it plays, with its outcome, counted per arm, per round, around
 * each user's abrupt switch, during gradual drifts and for cold users. */
#include "dr_feed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"

const int dr_feed_window_from[DR_FEED_WINDOWS + 1] = {0, 30, 60, 100, 150, 200, 300};

#define SHIFT_BASELINE 10   /* rounds before the shift giving its CTR level */
#define RECOVERY_MIN_N 100  /* impressions a curve window needs to be trusted */
#define RECOVERED 0.9       /* share of the earlier CTR that counts as recovered */

typedef struct user_meas {
    uint32_t impressions; /* all of the user's */
    uint32_t pre;         /* before the abrupt switch */
    uint32_t post;        /* at or after it */
    uint32_t post_seen;   /* impressions in post_bits */
    uint64_t pre_bits;    /* the last 64 outcomes before the switch, newest in bit 0 */
    uint64_t post_bits[(DR_FEED_CURVE_TO + 64) / 64]; /* outcomes after it, before the shift */
    uint8_t arm;
} user_meas_t;

struct dr_feed_measure {
    const dr_feed_world_t *w;
    int rounds;
    int64_t shift_ms;
    user_meas_t *u;                              /* [users + 1] */
    uint64_t *round_n[DR_FEED_ARMS], *round_k[DR_FEED_ARMS]; /* [rounds] */
    uint64_t n[DR_FEED_ARMS], k[DR_FEED_ARMS];
    /* after the switch, eligible users, before the shift: by index */
    uint64_t curve_n[2][DR_FEED_CURVE_TO + 1], curve_k[2][DR_FEED_CURVE_TO + 1];
    uint64_t post_n[2], post_k[2];               /* every switched user, all traffic after */
    uint64_t grad_n[DR_FEED_ARMS][3], grad_k[DR_FEED_ARMS][3];
    uint64_t cold_users[DR_FEED_ARMS], cold_n[DR_FEED_ARMS], cold_k[DR_FEED_ARMS];
};

double dr_feed_ctr(uint64_t clicks, uint64_t impressions) {
    return impressions ? (double)clicks / (double)impressions : NAN;
}

int dr_feed_measure_new(dr_feed_measure_t **out, const dr_feed_world_t *w) {
    const dr_feed_conf_t *c = dr_feed_world_conf(w);
    dr_feed_measure_t *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m) return DR_ENOMEM;
    m->w = w;
    m->rounds = c->rounds;
    dr_feed_world_shift(w, NULL, &m->shift_ms, NULL);
    m->u = calloc(c->users + 1, sizeof(*m->u));
    bool ok = m->u != NULL;
    for (int a = 0; a < DR_FEED_ARMS && ok; a++) {
        m->round_n[a] = calloc((size_t)c->rounds, sizeof(uint64_t));
        m->round_k[a] = calloc((size_t)c->rounds, sizeof(uint64_t));
        ok = m->round_n[a] && m->round_k[a];
    }
    if (!ok) {
        dr_feed_measure_free(m);
        return DR_ENOMEM;
    }
    *out = m;
    return 0;
}

void dr_feed_measure_free(dr_feed_measure_t *m) {
    if (!m) return;
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        free(m->round_n[a]);
        free(m->round_k[a]);
    }
    free(m->u);
    free(m);
}

static bool user_ok(const dr_feed_measure_t *m, int64_t user_id) {
    return user_id >= 1 && (uint64_t)user_id <= dr_feed_world_conf(m->w)->users;
}

void dr_feed_measure_set_arm(dr_feed_measure_t *m, int64_t user_id, dr_feed_arm_t arm) {
    if (user_ok(m, user_id) && arm >= 0 && arm < DR_FEED_ARMS) m->u[user_id].arm = (uint8_t)arm;
}

dr_feed_arm_t dr_feed_measure_arm(const dr_feed_measure_t *m, int64_t user_id) {
    return user_ok(m, user_id) ? (dr_feed_arm_t)m->u[user_id].arm : DR_FEED_ARM_DRIFT;
}

/* An abrupt switcher's impression: the pre-switch ring, or the curve. */
static void count_switch(dr_feed_measure_t *m, user_meas_t *u, int64_t t_ms,
                         const dr_feed_truth_t *t, bool clicked) {
    if (u->arm == DR_FEED_ARM_POPULAR) return;
    if (t_ms < t->from_ms) {
        u->pre++;
        u->pre_bits = (u->pre_bits << 1) | (uint64_t)clicked;
        return;
    }
    m->post_n[u->arm]++;
    m->post_k[u->arm] += clicked;
    /* the curve stops at the shift: after it, every user's CTR moves */
    uint32_t k = u->post++;
    if (u->pre >= DR_FEED_ELIGIBLE_PRE && k <= DR_FEED_CURVE_TO && t_ms < m->shift_ms) {
        u->post_bits[k / 64] |= (uint64_t)clicked << (k % 64);
        u->post_seen = k + 1;
        m->curve_n[u->arm][k]++;
        m->curve_k[u->arm][k] += clicked;
    }
}

void dr_feed_measure_impression(dr_feed_measure_t *m, int64_t user_id, int64_t t_ms, bool clicked) {
    if (!user_ok(m, user_id)) return;
    user_meas_t *u = &m->u[user_id];
    int a = u->arm;
    int r = dr_feed_world_round_of(m->w, t_ms);
    m->n[a]++;
    m->k[a] += clicked;
    if (r >= 0 && r < m->rounds) {
        m->round_n[a][r]++;
        m->round_k[a][r] += clicked;
    }
    if (u->impressions++ < DR_FEED_COLD) {
        m->cold_users[a] += u->impressions == 1;
        m->cold_n[a]++;
        m->cold_k[a] += clicked;
    }
    dr_feed_truth_t t;
    dr_feed_world_truth(m->w, user_id, &t);
    if (t.kind == DR_FEED_ABRUPT) count_switch(m, u, t_ms, &t, clicked);
    if (t.kind == DR_FEED_GRADUAL) {
        int phase = t_ms < t.from_ms ? 0 : t_ms < t.to_ms ? 1 : 2;
        m->grad_n[a][phase]++;
        m->grad_k[a][phase] += clicked;
    }
}

/* The dip of one arm's CTR by round at the shift. */
static void shift_dip(const dr_feed_measure_t *m, int a, dr_feed_report_t *r) {
    int s = r->shift.round;
    uint64_t n = 0, k = 0;
    for (int i = s - SHIFT_BASELINE; i < s; i++)
        if (i >= 0 && i < m->rounds) {
            n += m->round_n[a][i];
            k += m->round_k[a][i];
        }
    double pre = dr_feed_ctr(k, n), lo = NAN;
    int below = -1, back = -1;
    for (int i = s; i < m->rounds; i++) {
        double ctr = dr_feed_ctr(m->round_k[a][i], m->round_n[a][i]);
        if (!isfinite(ctr)) continue;
        if (!(ctr >= lo)) lo = ctr;
        if (below < 0 && ctr < RECOVERED * pre) below = i;
        if (below >= 0 && back < 0 && ctr >= RECOVERED * pre) back = i;
    }
    r->shift.pre_ctr[a] = pre;
    r->shift.min_ctr[a] = lo;
    r->shift.depth[a] = pre - lo;
    /* never below 90%: no dip to recover from */
    r->shift.rounds_to_90[a] = !isfinite(lo) || !isfinite(pre) ? -1 : below < 0 ? 0
                               : back < 0 ? -1 : back - s;
}

/* The switch curve of one arm: the eligible users' last DR_FEED_PRE_WINDOW
 * impressions before their switch, then the counted ones after, smoothed by
 * a trailing window that never crosses the switch. */
static void switch_curve(const dr_feed_measure_t *m, int a, dr_feed_report_t *r) {
    uint64_t n[DR_FEED_CURVE_LEN] = {0}, k[DR_FEED_CURVE_LEN] = {0};
    const int zero = -DR_FEED_CURVE_FROM;
    uint64_t users = dr_feed_world_conf(m->w)->users;
    for (uint64_t id = 1; id <= users; id++) {
        const user_meas_t *u = &m->u[id];
        dr_feed_truth_t t;
        dr_feed_world_truth(m->w, (int64_t)id, &t);
        if (t.kind != DR_FEED_ABRUPT || u->arm != a) continue;
        r->sw.users[a]++;
        if (u->pre < DR_FEED_ELIGIBLE_PRE) continue;
        r->sw.eligible[a]++;
        for (int j = 1; j <= DR_FEED_PRE_WINDOW && zero - j >= 0; j++) {
            n[zero - j]++;
            k[zero - j] += (u->pre_bits >> (j - 1)) & 1;
        }
    }
    memcpy(n + zero, m->curve_n[a], sizeof(m->curve_n[a]));
    memcpy(k + zero, m->curve_k[a], sizeof(m->curve_k[a]));
    uint64_t pn = 0, pk = 0;
    for (int i = 0; i < zero; i++) pn += n[i], pk += k[i];
    r->sw.pre_ctr[a] = dr_feed_ctr(pk, pn);
    r->sw.post_ctr[a] = dr_feed_ctr(m->post_k[a], m->post_n[a]);
    r->sw.recovery[a] = -1;
    bool searching = true;
    for (int i = 0; i < DR_FEED_CURVE_LEN; i++) {
        int side_start = i < zero ? 0 : zero;
        uint64_t wn = 0, wk = 0;
        for (int j = i; j >= side_start && j > i - DR_FEED_SMOOTH; j--) wn += n[j], wk += k[j];
        r->sw.curve[a][i] = dr_feed_ctr(wk, wn);
        r->sw.curve_n[a][i] = n[i];
        if (i < zero || !searching) continue;
        if (wn < RECOVERY_MIN_N && i - zero >= DR_FEED_SMOOTH) searching = false; /* too few left */
        else if (wn >= RECOVERY_MIN_N && r->sw.curve[a][i] >= RECOVERED * r->sw.pre_ctr[a]) {
            r->sw.recovery[a] = i - zero;
            searching = false;
        }
    }
}

void dr_feed_measure_report(const dr_feed_measure_t *m, dr_feed_report_t *r) {
    memset(r, 0, sizeof(*r));
    r->rounds = m->rounds;
    dr_feed_world_shift(m->w, &r->shift.round, NULL, &r->shift.cluster);
    uint64_t users = dr_feed_world_conf(m->w)->users;
    for (uint64_t id = 1; id <= users; id++) {
        dr_feed_truth_t t;
        dr_feed_world_truth(m->w, (int64_t)id, &t);
        r->users[m->u[id].arm]++;
        r->gradual.users[m->u[id].arm] += t.kind == DR_FEED_GRADUAL;
    }
    for (int a = 0; a < DR_FEED_ARMS; a++) {
        r->impressions[a] = m->n[a];
        r->clicks[a] = m->k[a];
        r->round_impressions[a] = m->round_n[a];
        r->round_clicks[a] = m->round_k[a];
        memcpy(r->gradual.impressions[a], m->grad_n[a], sizeof(m->grad_n[a]));
        memcpy(r->gradual.clicks[a], m->grad_k[a], sizeof(m->grad_k[a]));
        r->cold.users[a] = m->cold_users[a];
        r->cold.impressions[a] = m->cold_n[a];
        r->cold.clicks[a] = m->cold_k[a];
        shift_dip(m, a, r);
    }
    for (int a = 0; a < 2; a++) switch_curve(m, a, r);
}

void dr_feed_measure_detected_curve(const dr_feed_measure_t *m, const dr_feed_detect_t *d,
                                    dr_feed_detected_curve_t *out) {
    memset(out, 0, sizeof(*out));
    uint64_t users = dr_feed_world_conf(m->w)->users;
    for (uint64_t id = 1; id <= users; id++) {
        const user_meas_t *u = &m->u[id];
        int32_t delay = dr_feed_detect_delay(d, (int64_t)id);
        if (u->arm > DR_FEED_ARM_CONTROL || u->pre < DR_FEED_ELIGIBLE_PRE || delay < 1 ||
            delay > DR_FEED_DETECT_WITHIN)
            continue;
        out->users[u->arm]++;
        for (int w = 0; w < DR_FEED_WINDOWS; w++)
            for (int k = dr_feed_window_from[w]; k < dr_feed_window_from[w + 1] && k < (int)u->post_seen; k++) {
                out->impressions[u->arm][w]++;
                out->clicks[u->arm][w] += (u->post_bits[k / 64] >> (k % 64)) & 1;
            }
    }
}
