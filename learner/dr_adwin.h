/* dr_adwin.h - ADWIN2 change detector (Bifet & Gavaldà, SDM 2007), a faithful
 * port of MOA's ADWIN.java, sized to be embedded once per user and stored in
 * RocksDB with a compact versioned encoding. */
#ifndef DR_ADWIN_H
#define DR_ADWIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Largest number of bucket rows a detector may hold. Row i holds buckets of
 *  2^i items, so this bounds the window at about max_buckets * 2^48 items; it
 *  also bounds what dr_adwin_deserialize() will ever allocate. */
#define DR_ADWIN_MAX_ROWS 48
/** Largest accepted dr_adwin_conf_t.max_buckets. */
#define DR_ADWIN_MAX_BUCKETS 64
/** Largest accepted |x| in dr_adwin_update(): keeps every sum of squared
 *  deviations far from overflow. */
#define DR_ADWIN_MAX_ABS 1e100
/** Version byte written first by dr_adwin_serialize(). */
#define DR_ADWIN_FORMAT_VERSION 1
/** Encoded size of a detector with an empty window. */
#define DR_ADWIN_HEADER_SIZE 44

/** Detector parameters. Defaults (dr_adwin_conf_default) are MOA's. */
typedef struct dr_adwin_conf {
    double delta;       /**< confidence, 0 < delta < 1 (MOA mdbldelta, 0.002) */
    int clock;          /**< check every `clock` updates, >= 1
                             (mintClock, 32) */
    int max_buckets;    /**< buckets per row, 2..64 (MAXBUCKETS, 5) */
    int min_window;     /**< check only when width > this, >= 0
                             (mintMinimLongitudWindow, 10) */
    int min_sub_window; /**< a cut needs both parts > this + 1 items, >= 0
                             (mintMinWinLength, 5) */
    bool reset_on_cut;  /**< empty the window after a detection (as River)
                             instead of MOA's shrink-only behaviour (false) */
} dr_adwin_conf_t;

/** One detector. The caller allocates it (it may be embedded in a larger
 *  struct); every field is private: use the functions below. The fixed part
 *  is 80 bytes; the bucket rows live in one heap block of
 *  rows * (16 * (max_buckets + 1) + 1) bytes, grown one row at a time. */
typedef struct dr_adwin {
    double delta;
    double center;    /* reference point: items are stored as x - center */
    double total;     /* sum of (item - center) over the window (MOA TOTAL) */
    double variance;  /* sum of squared deviations (MOA VARIANCE) */
    double *rows;     /* row-major (total, variance) pairs, then counts */
    uint64_t width;   /* items in the window (MOA WIDTH) */
    uint64_t updates; /* lifetime number of accepted updates */
    uint32_t detections;
    uint32_t phase;   /* updates since the last check slot, < clock */
    uint32_t clock;
    uint32_t min_window;
    uint32_t min_sub_window;
    uint8_t max_buckets;
    uint8_t nrows;    /* rows in use; row 0 holds single items */
    uint8_t cap_rows; /* rows allocated */
    uint8_t reset_on_cut;
} dr_adwin_t;

/** @brief Fills @p conf with MOA's defaults: delta 0.002, clock 32,
 *  max_buckets 5, min_window 10, min_sub_window 5, reset_on_cut false.
 *  Can't fail. */
void dr_adwin_conf_default(dr_adwin_conf_t *conf);

/** @brief Checks every field of @p conf against the ranges documented on
 *  dr_adwin_conf_t.
 *  @returns 0, or DR_ECONFIG when a field is out of range or not finite,
 *  DR_EINVAL when @p conf is NULL. */
int dr_adwin_conf_check(const dr_adwin_conf_t *conf);

/** @brief Initialises @p a as an empty detector with the parameters of
 *  @p conf (copied; NULL means the defaults). Allocates nothing: the first
 *  update allocates the first row. @p a is treated as uninitialised memory.
 *  @returns 0, DR_EINVAL if @p a is NULL, DR_ECONFIG if @p conf is invalid
 *  (then @p a is left as an empty detector with default parameters). */
int dr_adwin_init(dr_adwin_t *a, const dr_adwin_conf_t *conf);

/** @brief Releases the bucket memory of @p a and empties its window; the
 *  counters (updates, detections) are kept and @p a remains usable.
 *  Safe to call repeatedly; NULL is ignored. Can't fail. */
void dr_adwin_free_buckets(dr_adwin_t *a);

/** @brief Empties the window and restarts the check clock, keeping the
 *  allocated rows for reuse and the lifetime counters. This is what
 *  reset_on_cut does after a detection. NULL is ignored. Can't fail. */
void dr_adwin_reset(dr_adwin_t *a);

/** @brief Adds @p x to the window (MOA setInput). Every `clock`-th update
 *  since the last reset, when width > min_window, scans every cut of the
 *  window from the oldest bucket and drops the oldest bucket while some cut
 *  splits it into two parts whose means differ by more than ADWIN's epsilon.
 *  Cost: amortised O(1), plus O(max_buckets * log width) per check and per
 *  dropped bucket.
 *  @returns 1 if a change was detected on this update (the window was cut;
 *  with reset_on_cut it is now empty), 0 if not; DR_EINVAL if @p a is NULL
 *  or @p x is not finite, DR_ERANGE if |x| > DR_ADWIN_MAX_ABS or the window
 *  would need more than DR_ADWIN_MAX_ROWS rows, DR_ENOMEM if a new row
 *  could not be allocated. On error the detector is unchanged.
 *  @remark The arithmetic is MOA's, applied to x - center, where center is
 *  the first item of the window (moved to the window's mean if the mean
 *  drifts over 2^10 standard deviations away), and the variance is re-merged
 *  from the buckets when a cut cancels all but 2^-20 of it. Where MOA's
 *  sums are well conditioned this changes results only in the last bits
 *  (bit-identical when the first item is 0); where they are not (items like
 *  1e15 + noise) MOA's variance is wrong and this one is not. */
int dr_adwin_update(dr_adwin_t *a, double x);

/** @brief Number of items in the window (MOA getWidth). */
uint64_t dr_adwin_width(const dr_adwin_t *a);
/** @brief Sum of the items in the window (MOA getTotal). */
double dr_adwin_total(const dr_adwin_t *a);
/** @brief Mean of the window, total / width (MOA getEstimation); 0 when the
 *  window is empty. */
double dr_adwin_mean(const dr_adwin_t *a);
/** @brief Population variance of the window: sum of squared deviations /
 *  width (MOA getVariance); 0 when the window is empty. Never negative. */
double dr_adwin_variance(const dr_adwin_t *a);
/** @brief Updates that reported a change, over the detector's life
 *  (saturates at UINT32_MAX). */
uint32_t dr_adwin_detections(const dr_adwin_t *a);
/** @brief Updates accepted over the detector's life (resets included). */
uint64_t dr_adwin_updates(const dr_adwin_t *a);
/** @brief Bucket rows in use: at most about log2(width / max_buckets) + 2. */
unsigned dr_adwin_rows(const dr_adwin_t *a);
/** @brief Heap bytes held by @p a (not counting the dr_adwin_t itself). */
size_t dr_adwin_heap_bytes(const dr_adwin_t *a);

/** @brief Exact size dr_adwin_serialize() will write for @p a's state:
 *  DR_ADWIN_HEADER_SIZE + sum over rows of (1 + 16 * buckets in the row). */
size_t dr_adwin_serialized_size(const dr_adwin_t *a);

/** @brief Writes @p a's state into @p buf (layout in docs/ADWIN.md: version
 *  byte, then little-endian fixed-width fields; doubles as their IEEE-754
 *  bits, so a round trip is bit-exact). The parameters are not stored,
 *  except max_buckets, which must match on reading.
 *  @param written set to the bytes written, or to the size needed when
 *  @p cap is too small; may be NULL.
 *  @returns 0, DR_EINVAL if @p a or @p buf is NULL, DR_ERANGE if @p cap is
 *  below dr_adwin_serialized_size(a) (nothing written). */
int dr_adwin_serialize(const dr_adwin_t *a, uint8_t *buf, size_t cap,
                       size_t *written);

/** @brief Initialises @p a (treated as uninitialised memory) with @p conf
 *  (NULL: defaults) and the state read from @p buf. Every field is bounds
 *  and consistency checked; at most DR_ADWIN_MAX_ROWS rows are allocated.
 *  Bytes after the record are ignored.
 *  @param consumed set to the bytes read on success; may be NULL.
 *  @returns 0; DR_ECORRUPT if @p buf is truncated, has an unknown version or
 *  is inconsistent; DR_ECONFIG if @p conf is invalid or the state was written
 *  with another max_buckets; DR_EINVAL for NULL arguments; DR_ENOMEM. On
 *  error @p a is an empty detector holding no memory. */
int dr_adwin_deserialize(dr_adwin_t *a, const dr_adwin_conf_t *conf,
                         const uint8_t *buf, size_t len, size_t *consumed);

/* ---- Population drift: ADWIN over block means --------------------------
 * The global detector of all users' drift samples (docs/DRIFT.md,
 * "Population-wide drift"). A sample is either a drift sample as it is, in
 * [0, 1], or (what the pipeline gives it by default) a drift sample less
 * the user's own level, in [-1, 1]: a population-wide shift moves everyone
 * above their level at once, while which users happen to fill a block no
 * longer moves its mean. Consecutive samples come from one user's
 * sessions and are far from independent, so ADWIN sees the mean of each
 * block of `block` samples; and since block means spread over a few
 * hundredths where ADWIN's bound assumes values spread over [0, 1] (its
 * range term, 2/3 · ln(..) / m, would hold a step of 0.15 back for ~80
 * blocks), each is magnified `scale` times around a slow mean of the block
 * means, placed at 0.25 (a rise gets three quarters of the range), and
 * clipped to [0, 1]. A rising cut is a population-wide drift when
 * the block means are now (a fast mean) at least `min_rise` above their slow
 * mean; smaller rising cuts are the wobbles of a population that learns. */

/** Blocks the slow mean (the level a rise is measured from) and the fast
 *  mean (where the blocks are now) follow, as EWMAs. */
#define DR_ADWIN_POP_SLOW_BLOCKS 200.0
#define DR_ADWIN_POP_FAST_BLOCKS 5.0

typedef struct dr_adwin_pop_conf {
    double delta;    /**< ADWIN's δ over the blocks */
    int block;       /**< samples per block, >= 1 */
    double scale;    /**< magnification, >= 1 (1: unmagnified) */
    double min_rise; /**< a drift is a rise of the fast mean over the slow one of at least this */
} dr_adwin_pop_conf_t;

typedef struct dr_adwin_pop {
    dr_adwin_t adwin;
    dr_adwin_pop_conf_t conf;
    double sum;          /* samples of the block being filled ... */
    int n;               /* ... and how many */
    double slow, fast;   /* EWMAs of the block means; NAN before the first */
} dr_adwin_pop_t;

/** What one sample led to. */
typedef enum {
    DR_ADWIN_POP_NONE = 0,  /**< no cut (or the block is not full yet) */
    DR_ADWIN_POP_DRIFT = 1, /**< a rising cut of at least min_rise: a population-wide drift */
    DR_ADWIN_POP_SMALL = 2, /**< a rising cut below min_rise */
    DR_ADWIN_POP_FALL = 3,  /**< a cut for the better */
} dr_adwin_pop_cut_t;

/** What the last completed block looked like (for logs). */
typedef struct dr_adwin_pop_view {
    double block, slow, fast; /**< the block mean and the two EWMAs, as samples */
    double before, after;     /**< at a cut: the magnified means of the dropped and kept windows */
} dr_adwin_pop_view_t;

/** 0, or DR_ECONFIG (bad δ, block < 1, scale < 1, min_rise < 0). */
int dr_adwin_pop_init(dr_adwin_pop_t *d, const dr_adwin_pop_conf_t *conf);
void dr_adwin_pop_free(dr_adwin_pop_t *d);
/** Adds one sample in [-1, 1] (a drift sample, or one less the user's
 *  level); view (may be NULL) is filled when a block completes. */
dr_adwin_pop_cut_t dr_adwin_pop_observe(dr_adwin_pop_t *d, double sample, dr_adwin_pop_view_t *view);

#endif /* DR_ADWIN_H */
