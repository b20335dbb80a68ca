/* synth.c - the seeded synthetic stream behind `driftrec demo` (see dr_synth.h). */
#include "dr_synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"

#define SESSION_MIN 6
#define SESSION_MAX 18
#define ZIPF_EXPONENT 0.8
#define EVENT_GAP_MS 2000

struct dr_synth {
    dr_synth_conf_t conf;
    uint64_t emitted, sessions_total, session_idx;
    uint64_t rng;
    double *cdf;              /* Zipf CDF over an item's rank in its cluster */
    uint64_t per_cluster;
    /* the session being played back */
    dr_event_t queue[SESSION_MAX * 4];
    int q_len, q_pos;
};

void dr_synth_conf_default(dr_synth_conf_t *c) {
    c->events = 200000;
    c->users = 10000;
    c->items = 5000;
    c->clusters = 20;
    c->switch_share = 0.2;
    c->in_cluster = 0.6;
    c->start_ms = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    c->span_ms = 2LL * 24 * 3600 * 1000;
    c->seed = 7;
}

int dr_synth_new(dr_synth_t **out, const dr_synth_conf_t *conf) {
    *out = NULL;
    if (conf->users < 1 || conf->items < (uint64_t)conf->clusters || conf->clusters < 2)
        return DR_EINVAL;
    dr_synth_t *s = calloc(1, sizeof(*s));
    if (!s) return DR_ENOMEM;
    s->conf = *conf;
    s->per_cluster = conf->items / (uint64_t)conf->clusters;
    s->cdf = malloc(s->per_cluster * sizeof(double));
    if (!s->cdf) { free(s); return DR_ENOMEM; }
    double total = 0;
    for (uint64_t r = 0; r < s->per_cluster; r++) s->cdf[r] = total += pow((double)r + 1, -ZIPF_EXPONENT);
    for (uint64_t r = 0; r < s->per_cluster; r++) s->cdf[r] /= total;
    s->sessions_total = conf->events / ((SESSION_MIN + SESSION_MAX) / 2) + 1;
    s->rng = dr_mix64(conf->seed);
    *out = s;
    return 0;
}

void dr_synth_free(dr_synth_t *s) {
    if (!s) return;
    free(s->cdf);
    free(s);
}

int dr_synth_item_cluster(const dr_synth_t *s, int64_t item_id) {
    return (int)((item_id - 1) % s->conf.clusters);
}

bool dr_synth_user_switch(const dr_synth_t *s, int64_t user_id, int64_t *switch_ms) {
    uint64_t h = dr_mix64((uint64_t)user_id ^ (s->conf.seed << 1));
    bool switches = (double)(h >> 11) * 0x1.0p-53 < s->conf.switch_share;
    /* switch somewhere in the middle fifth of the stream */
    double at = 0.4 + 0.2 * (double)(dr_mix64(h) >> 11) * 0x1.0p-53;
    if (switch_ms) *switch_ms = s->conf.start_ms + (int64_t)(at * (double)s->conf.span_ms);
    return switches;
}

int dr_synth_user_interest(const dr_synth_t *s, int64_t user_id, int64_t t_ms) {
    uint64_t h = dr_mix64((uint64_t)user_id ^ s->conf.seed);
    int c0 = (int)(h % (uint64_t)s->conf.clusters);
    int64_t at;
    if (!dr_synth_user_switch(s, user_id, &at) || t_ms < at) return c0;
    return (c0 + 1 + (int)((h >> 32) % (uint64_t)(s->conf.clusters - 1))) % s->conf.clusters;
}

void dr_synth_item_embedding(const dr_synth_t *s, int64_t item_id, float *out) {
    uint64_t centre = dr_mix64(s->conf.seed ^ 0xc0ffeeULL ^ (uint64_t)dr_synth_item_cluster(s, item_id));
    uint64_t noise = dr_mix64(s->conf.seed ^ ((uint64_t)item_id << 8) ^ 0x5eedULL);
    for (int j = 0; j < DR_SYNTH_CONTENT_DIM; j++)
        out[j] = (float)(2.0 * dr_rand01(&centre) - 1.0 + 1.2 * (dr_rand01(&noise) - 0.5));
}

/* An item of cluster c, popular ones more often (Zipf over rank). */
static int64_t draw_item(dr_synth_t *s, int c) {
    double x = dr_rand01(&s->rng);
    uint64_t lo = 0, hi = s->per_cluster - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (s->cdf[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return (int64_t)(lo * (uint64_t)s->conf.clusters + (uint64_t)c) + 1;
}

static void push(dr_synth_t *s, int64_t user, int64_t item, dr_event_type_t type, float value,
                 int64_t ts) {
    dr_event_t *e = &s->queue[s->q_len++];
    e->user_id = user;
    e->item_id = item;
    e->type = type;
    e->value = value;
    e->timestamp_ms = ts;
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One browsing session: impressions, and the reactions the model draws. */
static void play_session(dr_synth_t *s) {
    s->q_len = s->q_pos = 0;
    int64_t user = (int64_t)(dr_rand64(&s->rng) % s->conf.users) + 1;
    int64_t ts = s->conf.start_ms +
                 (int64_t)((double)s->session_idx / (double)s->sessions_total * (double)s->conf.span_ms);
    s->session_idx++;
    int interest = dr_synth_user_interest(s, user, ts);
    int len = SESSION_MIN + (int)(dr_rand64(&s->rng) % (SESSION_MAX - SESSION_MIN + 1));
    for (int k = 0; k < len; k++, ts += EVENT_GAP_MS) {
        bool from_interest = dr_rand01(&s->rng) < s->conf.in_cluster;
        int c = from_interest ? interest : (int)(dr_rand64(&s->rng) % (uint64_t)s->conf.clusters);
        int64_t item = draw_item(s, c);
        bool match = c == interest;
        push(s, user, item, DR_EV_IMPRESSION, 0.0f, ts);
        if (dr_rand01(&s->rng) < sigmoid(match ? -0.5f : -3.0f)) {
            push(s, user, item, DR_EV_CLICK, 0.0f, ts + 500);
            push(s, user, item, DR_EV_DWELL, (float)(5.0 + 40.0 * dr_rand01(&s->rng)), ts + 1500);
            if (dr_rand01(&s->rng) < 0.2) push(s, user, item, DR_EV_LIKE, 0.0f, ts + 1600);
            if (dr_rand01(&s->rng) < 0.05) push(s, user, item, DR_EV_SHARE, 0.0f, ts + 1700);
        } else if (!match && dr_rand01(&s->rng) < 0.03) {
            push(s, user, item, DR_EV_HIDE, 0.0f, ts + 800);
        }
    }
}

bool dr_synth_next(dr_synth_t *s, dr_event_t *ev) {
    if (s->emitted >= s->conf.events) return false;
    if (s->q_pos == s->q_len) play_session(s);
    *ev = s->queue[s->q_pos++];
    s->emitted++;
    return true;
}
