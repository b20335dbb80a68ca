/* dr_dataset.h - event histories from files (MovieLens u.data / ratings.csv,
 * CSV with a column mapping, JSON lines) and catalogs (MovieLens movies.csv
 * genres as multi-hot embeddings), sorted by event time for loading. */
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

#endif /* DR_DATASET_H */
