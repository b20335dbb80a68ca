/* session.c - one simulated user's session: which items fill its slots (the
 * user's list from the top, organic items in between) and how the user
 * reacts to each, drawn from the world's click model. */
#include "feed_internal.h"

#include <string.h>

#include "dr_bytes.h"

#define MAX_SESSION 64   /* slots a session can have (conf.session_max is capped) */
#define ORGANIC_TRIES 8  /* draws to find an organic item not yet shown */
#define LIKE_SHARE 0.2
#define SHARE_SHARE 0.05
#define HIDE_SHARE 0.03  /* of out-of-taste impressions left unclicked */

/* A user's last `cap` items of a kind (clicks, hides): a ring of ids. */
static bool ring_has(const int64_t *ring, int n, int64_t item) {
    for (int i = 0; i < n; i++)
        if (ring[i] == item) return true;
    return false;
}

static void ring_push(int64_t *ring, int cap, uint8_t *n, uint8_t *head, int64_t item) {
    ring[*head] = item;
    *head = (uint8_t)((*head + 1) % cap);
    if (*n < cap) (*n)++;
}

static bool recently_clicked(const feed_user_t *u, int64_t item) {
    return ring_has(u->clicks, u->n_clicks, item);
}

static bool was_hidden(const feed_user_t *u, int64_t item) { return ring_has(u->hidden, u->n_hidden, item); }

static void remember_hide(feed_user_t *u, int64_t item) {
    if (!was_hidden(u, item)) ring_push(u->hidden, FEED_HIDDEN, &u->n_hidden, &u->hidden_head, item);
}

static void remember_click(feed_user_t *u, int64_t item) {
    ring_push(u->clicks, FEED_RECENT_CLICKS, &u->n_clicks, &u->click_head, item);
}

/* How often the user passed item over since it last clicked it (as far as
 * the ring remembers). */
static int passed_times(const feed_user_t *u, int64_t item) {
    for (int i = 0; i < u->n_passed; i++)
        if (u->passed[i] == item) return u->passed_times[i];
    return 0;
}

static void remember_outcome(feed_user_t *u, int64_t item, bool clicked) {
    for (int i = 0; i < u->n_passed; i++)
        if (u->passed[i] == item) {
            u->passed_times[i] = clicked ? 0 : (uint8_t)(u->passed_times[i] < 255 ? u->passed_times[i] + 1 : 255);
            return;
        }
    if (clicked) return;
    u->passed_times[u->passed_head] = 1;
    ring_push(u->passed, FEED_PASSED, &u->n_passed, &u->passed_head, item);
}

/* The list the user is shown: driftrec's, or for the popular arm the
 * trending top without what the user clicked recently or hid (a feed that
 * showed hidden posts again would be a strawman). */
static int shown_list(const feed_player_t *p, const feed_user_t *u, int64_t *out) {
    if (u->arm != DR_FEED_ARM_POPULAR) {
        for (int i = 0; i < u->list_len; i++) out[i] = u->list[i];
        return u->list_len;
    }
    int n = 0;
    for (int i = 0; i < p->trend->n_top && n < FEED_LIST_MAX; i++)
        if (!recently_clicked(u, p->trend->top[i]) && !was_hidden(u, p->trend->top[i]))
            out[n++] = p->trend->top[i];
    return n;
}

static bool shown_before(const int64_t *shown, int n, int64_t item) {
    for (int i = 0; i < n; i++)
        if (shown[i] == item) return true;
    return false;
}

/* An organic item: half from what trends, half uniform over the catalog;
 * one not shown yet in this session when a few draws find one. */
static int64_t organic_item(feed_player_t *p, const int64_t *shown, int n) {
    uint64_t items = dr_feed_world_conf(p->w)->items;
    int64_t item = 0;
    for (int t = 0; t < ORGANIC_TRIES; t++) {
        if (dr_rand01(&p->rng) < 0.5 && p->trend->n_top > 0)
            item = p->trend->top[dr_rand64(&p->rng) % (uint64_t)p->trend->n_top];
        else
            item = (int64_t)(dr_rand64(&p->rng) % items) + 1;
        if (!shown_before(shown, n, item)) break;
    }
    return item;
}

static int emit(feed_player_t *p, int64_t user, int64_t item, dr_event_type_t type, float value,
                int64_t ts) {
    dr_event_t ev = {.user_id = user, .item_id = item, .type = type, .value = value, .timestamp_ms = ts};
    return p->emit(p->emit_ctx, user, &ev);
}

/* One impression at slot `pos` and time ts, and the user's reaction. */
static int react(feed_player_t *p, feed_user_t *u, int64_t user, int64_t item, int pos, int64_t ts,
                 bool *clicked) {
    double pc = dr_feed_world_click_prob(p->w, user, item, pos, ts, recently_clicked(u, item));
    int err = emit(p, user, item, DR_EV_IMPRESSION, 0, ts);
    *clicked = false;
    if (err) return err;
    *clicked = dr_rand01(&p->rng) < pc;
    if (*clicked) {
        remember_click(u, item);
        dr__feed_trending_click(p->trend, item);
        float dwell = (float)(5.0 + 40.0 * dr_rand01(&p->rng));
        if (!(err = emit(p, user, item, DR_EV_CLICK, 0, ts + 500)))
            err = emit(p, user, item, DR_EV_DWELL, dwell, ts + 1500);
        if (!err && dr_rand01(&p->rng) < LIKE_SHARE) err = emit(p, user, item, DR_EV_LIKE, 0, ts + 1600);
        if (!err && dr_rand01(&p->rng) < SHARE_SHARE) err = emit(p, user, item, DR_EV_SHARE, 0, ts + 1700);
    } else if (!dr_feed_world_in_taste(p->w, user, item, ts) && dr_rand01(&p->rng) < HIDE_SHARE) {
        err = emit(p, user, item, DR_EV_HIDE, 0, ts + 800);
        remember_hide(u, item);
    }
    dr_feed_measure_impression(p->measure, user, ts, *clicked);
    remember_outcome(u, item, *clicked);
    return err;
}

int dr__feed_play_session(feed_player_t *p, feed_user_t *u, int64_t user_id, int round,
                          feed_session_counts_t *out) {
    const dr_feed_conf_t *c = dr_feed_world_conf(p->w);
    int span = c->session_max - c->session_min + 1;
    int len = c->session_min + (int)(dr_rand64(&p->rng) % (uint64_t)span);
    if (len > MAX_SESSION) len = MAX_SESSION;
    /* the session starts anywhere in the round that leaves room for it */
    int64_t start = dr_feed_world_round_ms(p->w, round);
    int64_t room = dr_feed_world_round_ms(p->w, round + 1) - start - (int64_t)(len + 1) * FEED_EVENT_GAP_MS;
    int64_t ts = start + (room > 0 ? (int64_t)(dr_rand64(&p->rng) % (uint64_t)room) : 0);
    int64_t list[FEED_LIST_MAX > FEED_TREND_TOP ? FEED_LIST_MAX : FEED_TREND_TOP];
    int64_t shown[MAX_SESSION];
    int n_list = shown_list(p, u, list), next = 0;
    memset(out, 0, sizeof(*out));
    for (int k = 0; k < len; k++, ts += FEED_EVENT_GAP_MS) {
        int64_t item = 0;
        if (next < n_list && dr_rand01(&p->rng) >= c->explore_share) {
            while (next < n_list && shown_before(shown, k, list[next])) next++;
            if (next < n_list) {
                item = list[next++];
                out->hidden_shown += was_hidden(u, item);
                int passed = passed_times(u, item);
                out->repeat_shown += passed > 0;
                out->stale_shown += passed >= FEED_STALE;
            }
        }
        if (item == 0) item = organic_item(p, shown, k);
        shown[k] = item;
        bool clicked;
        int err = react(p, u, user_id, item, k, ts, &clicked);
        if (err) return err;
        out->impressions++;
        out->clicks += clicked;
    }
    return 0;
}
