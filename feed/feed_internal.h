/* feed_internal.h - declarations shared by the feed simulator's files (not part
 * of dr_feed.h): the trending counts, the simulator's view of a user and the
 * session player. */
#ifndef DR_FEED_INTERNAL_H
#define DR_FEED_INTERNAL_H

#include "dr_feed.h"

#define FEED_LIST_MAX 20       /* head of a published list the simulator keeps */
#define FEED_RECENT_CLICKS 8   /* a user's recent clicks, clicked again far less */
#define FEED_TREND_TOP 50      /* trending items (most-popular feed, organic slots) */
#define FEED_HIDDEN 32 /* hides the simulator remembers per user (driftrec keeps 64) */
#define FEED_PASSED 32 /* items a user was shown and did not click, remembered with counts */
#define FEED_STALE 3   /* passed over this often, a list slot holding it is "stale" */
#define FEED_EVENT_GAP_MS 2000 /* between impressions of a session */

/* Clicks of all users, decayed every round: what trends now. */
typedef struct feed_trending {
    float *count;                  /* [items + 1] */
    uint64_t items;
    int64_t top[FEED_TREND_TOP];   /* most clicked first */
    int n_top;
} feed_trending_t;

/* 0 or DR_ENOMEM. */
int dr__feed_trending_init(feed_trending_t *t, uint64_t items);
void dr__feed_trending_free(feed_trending_t *t);
void dr__feed_trending_click(feed_trending_t *t, int64_t item_id);
/* Once per round: decays every count and recomputes the top. */
void dr__feed_trending_roll(feed_trending_t *t);

/* What the simulator knows of one user. */
typedef struct feed_user {
    int64_t list[FEED_LIST_MAX];   /* head of the latest list driftrec published */
    uint8_t list_len;
    bool list_drift;               /* ... published on a drift cut */
    bool waiting;                  /* for a list reflecting `want` */
    uint8_t arm;                   /* dr_feed_arm_t */
    dr_source_pos_t list_src;      /* the event that list reflects */
    dr_source_pos_t want;          /* the user's last delivered event */
    int64_t clicks[FEED_RECENT_CLICKS];
    uint8_t n_clicks, click_head;
    int64_t hidden[FEED_HIDDEN];   /* the user's last hides: what a list must not show again */
    uint8_t n_hidden, hidden_head;
    int64_t passed[FEED_PASSED];   /* items shown and not clicked (the newest) ... */
    uint8_t passed_times[FEED_PASSED]; /* ... and how often, since the last click on it */
    uint8_t n_passed, passed_head;
} feed_user_t;

/* What one session showed. */
typedef struct feed_session_counts {
    int impressions, clicks;
    int hidden_shown;              /* list slots holding an item the user had hidden */
    int repeat_shown;              /* list slots holding an item the user passed over before */
    int stale_shown;               /* ... FEED_STALE times or more */
} feed_session_counts_t;

/* Receives each event of a session, in time order. 0 or an error that
 * stops the session. */
typedef int (*feed_emit_fn)(void *ctx, int64_t user_id, const dr_event_t *ev);

typedef struct feed_player {
    const dr_feed_world_t *w;
    feed_trending_t *trend;
    dr_feed_measure_t *measure;
    uint64_t rng;                  /* the simulator's own draws */
    feed_emit_fn emit;
    void *emit_ctx;
} feed_player_t;

/* Plays user_id's session of `round`: fills its slots from the user's list
 * (or the most-popular feed) and organic items, draws each outcome from the
 * world and emits the events; *out gets what it showed.
 * 0 or the emit callback's error. */
int dr__feed_play_session(feed_player_t *p, feed_user_t *u, int64_t user_id, int round,
                          feed_session_counts_t *out);

#endif /* DR_FEED_INTERNAL_H */
