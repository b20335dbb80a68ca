/* dr_dataset.h - event histories from files (MovieLens u.data / ratings.csv,
 * CSV with a column mapping, JSON lines) and catalogs (MovieLens movies.csv
 * genres as multi-hot embeddings), sorted by event time for loading; and
 * user splicing, which injects abrupt per-user drift into a logged history
 * (docs/REPLAY.md, "Spliced users"). */
#ifndef DR_DATASET_H
#define DR_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dr_types.h"

typedef struct dr_dataset_opts {
    const char *format;        /* "movielens", "csv" or "jsonl" */
    /* csv column names (header required); jsonl field names */
    const char *user_col, *item_col, *time_col, *value_col, *type_col;
    const char *time_unit;     /* "s", "ms" or NULL: guess (< 1e11 means seconds) */
    const char *default_type;  /* type when the file has none: "RATE" */
    float min_rating;          /* RATE events below this are dropped (0: keep all) */
} dr_dataset_opts_t;

void dr_dataset_opts_default(dr_dataset_opts_t *o);

typedef struct dr_dataset {
    dr_event_t *events;
    size_t n, cap;
    size_t skipped;            /* lines that could not be read (reported, not fatal) */
    float rating_min, rating_max;
    /* catalog */
    int64_t *item_ids;
    float *item_emb;           /* n_items × emb_dim, row-major; NULL without embeddings */
    size_t n_items;
    int emb_dim;
    char **emb_names;          /* emb_dim names (e.g. genres) */
} dr_dataset_t;

/* Reads events; errors name the file and line. Lines that parse but fail
 * validation are skipped and counted. 0 or DR_EIO / DR_EDECODE / DR_ENOMEM. */
int dr_dataset_read(dr_dataset_t *d, const char *path, const dr_dataset_opts_t *o, char *errstr,
                    size_t errstr_size);
/* Reads a MovieLens movies.csv: item_id and genres as a multi-hot vector. */
int dr_dataset_read_catalog(dr_dataset_t *d, const char *path, char *errstr, size_t errstr_size);
/* Sorts events by timestamp, keeping file order among equal timestamps. */
int dr_dataset_sort(dr_dataset_t *d);
void dr_dataset_free(dr_dataset_t *d);

/* ---- spliced users --------------------------------------------------------
 * The users with at least min_events events are shuffled with the seed into
 * a cycle u_0, u_1, ..., u_{m-1}; composite i is u_i's first half (its first
 * floor(n/2) events, in time order) followed by u_{i+1 mod m}'s second half.
 * Every event is used once, so the stream keeps its length and every item its
 * interactions. The second half keeps its order and gaps and is moved later,
 * never earlier, just enough that it starts at least 1 ms after the first
 * half ends (an event never comes before its logged time). Composites get new
 * ids: 10^d + i, 10^d the smallest power of ten above every user id (i in the
 * order of the first-half users' ids). Users with fewer events are kept
 * unchanged. `control`: each eligible user is "spliced" with itself, keeping
 * its id: the stream is unchanged, and the truth marks each user's midpoint,
 * so the same figures can be read on data without the injected drift. */
#define DR_SPLICE_MIN_EVENTS 20
#define DR_SPLICE_SEED 1

typedef struct dr_splice_opts {
    uint64_t seed;
    int min_events;            /* >= 2 */
    bool control;
} dr_splice_opts_t;

typedef struct dr_splice_user {
    int64_t user_id;           /* the composite's id */
    int64_t first_user;        /* whose first half it starts with */
    int64_t second_user;       /* whose second half follows */
    uint32_t splice_index;     /* 0-based index, among the composite's events, of its
                                  first event from second_user: the ground truth */
    uint32_t events;           /* the composite's events */
    int64_t splice_ts;         /* that event's (shifted) timestamp */
    int64_t shift_ms;          /* added to second_user's second half (>= 0) */
} dr_splice_user_t;

typedef struct dr_splice {
    dr_splice_opts_t opts;
    dr_splice_user_t *users;   /* sorted by user_id */
    size_t n;
    size_t kept_users;         /* users with fewer than min_events: unchanged */
    size_t shifted_events;     /* events moved later */
    int64_t max_shift_ms;
} dr_splice_t;

/* Splices the users of events[0..n) (in replay order: by time, stable) in
 * place; the result is again in time order, ties in their previous order.
 * The truth goes to *out (free with dr_splice_free). DR_EINVAL with errstr
 * when fewer than two users (one for a control) have min_events events. */
int dr_splice_events(dr_event_t *events, size_t n, const dr_splice_opts_t *o, dr_splice_t *out,
                     char *errstr, size_t errstr_size);
void dr_splice_free(dr_splice_t *s);

#endif /* DR_DATASET_H */
