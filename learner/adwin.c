/* adwin.c - ADWIN2 change detector: MOA's ADWIN.java (exponential histogram
 * of buckets, incremental variance, clocked cut scan) in compact C, plus its
 * versioned little-endian encoding for the state store. */
#include "dr_adwin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"

/* ---- Row storage ------------------------------------------------------
 * One heap block: cap_rows rows of (max_buckets + 1) (total, variance)
 * pairs, followed by cap_rows one-byte bucket counts. Within a row, pair 0
 * is the oldest bucket; row nrows - 1 holds the oldest items overall. */

static size_t row_doubles(const dr_adwin_t *a) {
    return 2u * ((size_t)a->max_buckets + 1u);
}

static size_t block_bytes(const dr_adwin_t *a, size_t nrows) {
    return nrows * (row_doubles(a) * sizeof(double) + 1u);
}

static double *row(const dr_adwin_t *a, unsigned i) {
    return a->rows + (size_t)i * row_doubles(a);
}

static uint8_t *counts(const dr_adwin_t *a) {
    return (uint8_t *)(a->rows + (size_t)a->cap_rows * row_doubles(a));
}

/* Grows the block to hold `need` rows, moving the counts to its new end.
 * Leaves the detector untouched on failure. */
static int ensure_rows(dr_adwin_t *a, unsigned need) {
    if (need <= a->cap_rows)
        return 0;
    if (need > DR_ADWIN_MAX_ROWS)
        return DR_ERANGE;
    double *blk = realloc(a->rows, block_bytes(a, need));
    if (blk == NULL)
        return DR_ENOMEM;
    unsigned old = a->cap_rows;
    uint8_t *oldc = (uint8_t *)(blk + (size_t)old * row_doubles(a));
    a->rows = blk;
    a->cap_rows = (uint8_t)need;
    memmove(counts(a), oldc, old);
    memset(counts(a) + old, 0, need - old);
    return 0;
}

/* Items per bucket in row i, exactly (i < DR_ADWIN_MAX_ROWS < 53): the
 * value ldexp(1.0, i) gives, without the library call. */
static double bucket_size(unsigned i) {
    return (double)((uint64_t)1 << i);
}

static void push_bucket(dr_adwin_t *a, unsigned i, double total, double var) {
    uint8_t *c = &counts(a)[i];
    double *p = row(a, i) + 2u * *c;
    p[0] = total;
    p[1] = var;
    (*c)++;
}

/* Drops the n oldest buckets of row i (MOA compressBucketsRow). */
static void drop_oldest(dr_adwin_t *a, unsigned i, unsigned n) {
    uint8_t *c = &counts(a)[i];
    double *r = row(a, i);
    memmove(r, r + 2u * n, 2u * (*c - n) * sizeof(double));
    *c = (uint8_t)(*c - n);
}

/* True when inserting one item will cascade merges into a new row: there
 * are no rows yet, or every row is full. Amortised O(1), like the cascade. */
static bool needs_new_row(const dr_adwin_t *a) {
    for (unsigned i = 0; i < a->nrows; i++)
        if (counts(a)[i] != a->max_buckets)
            return false;
    return true;
}

/* ---- MOA's algorithm ----------------------------------------------------
 * The arithmetic follows ADWIN.java operation by operation (same operand
 * order), so results are bit-identical where Java's int products do not
 * overflow; here every product is taken in double. */

/* MOA compressBuckets: merge the two oldest buckets of each full row into
 * one bucket of the next row, combining variances exactly. */
static void compress(dr_adwin_t *a) {
    unsigned m = a->max_buckets;
    for (unsigned i = 0; i < a->nrows && counts(a)[i] == m + 1; i++) {
        if (i + 1 == a->nrows) {
            counts(a)[i + 1] = 0; /* capacity reserved by the caller */
            a->nrows++;
        }
        double n = bucket_size(i);
        const double *r = row(a, i);
        double u1 = r[0] / n;
        double u2 = r[2] / n;
        double inc = n * n * (u1 - u2) * (u1 - u2) / (n + n);
        push_bucket(a, i + 1, r[0] + r[2], r[1] + r[3] + inc);
        drop_oldest(a, i, 2);
        if (counts(a)[i + 1] <= m)
            break;
    }
}

/* MOA insertElement on x - center. The variance increment uses the total
 * before x. The first item of an empty window becomes the center, so sums
 * stay small even for items like 1e15 + noise, where MOA's raw sums lose
 * the noise to rounding (MOA is the case center = 0). */
static void insert_element(dr_adwin_t *a, double x) {
    if (a->nrows == 0) {
        counts(a)[0] = 0;
        a->nrows = 1;
        a->center = x;
    }
    x -= a->center;
    a->width++;
    push_bucket(a, 0, x, 0.0);
    if (a->width > 1) {
        double w1 = (double)(a->width - 1);
        double d = x - a->total / w1;
        a->variance += w1 * d * d / (double)a->width;
    }
    a->total += x;
    compress(a);
}

/* Sum of squared deviations of the whole window, merged exactly from the
 * buckets, oldest first (the merge MOA's scan uses for v0). */
static double window_variance(const dr_adwin_t *a) {
    double n0 = 0.0, t0 = 0.0, v0 = 0.0;
    for (int i = (int)a->nrows - 1; i >= 0; i--) {
        double n2 = bucket_size((unsigned)i);
        const double *r = row(a, (unsigned)i);
        for (unsigned k = 0; k < counts(a)[i]; k++) {
            double d = n0 > 0.0 ? t0 / n0 - r[2u * k] / n2 : 0.0;
            v0 += r[2u * k + 1] + n0 * n2 * d * d / (n0 + n2);
            n0 += n2;
            t0 += r[2u * k];
        }
    }
    return v0;
}

/* MOA deleteElement: drop the oldest bucket and take its items out of
 * width, total and variance. When what is left is under 2^-20 of what was
 * taken out (a cut after a large jump), the subtraction has cancelled most
 * of its significant bits (MOA can even go negative there): the variance is
 * then re-merged from the buckets instead. */
static void delete_element(dr_adwin_t *a) {
    unsigned last = a->nrows - 1u;
    const double *r = row(a, last);
    double n1 = bucket_size(last);
    a->width -= (uint64_t)1 << last;
    a->total -= r[0];
    double u1 = r[0] / n1;
    double w = (double)a->width;
    double d = u1 - a->total / w;
    double removed = r[1] + n1 * w * d * d / (n1 + w);
    a->variance -= removed;
    drop_oldest(a, last, 1);
    if (counts(a)[last] == 0)
        a->nrows--;
    if (!(a->variance * 0x1p20 > removed))
        a->variance = window_variance(a);
}

/* MOA blnCutexpression; dd and v depend only on the whole window, so the
 * caller computes them once per scan (same values as MOA's per-call ones). */
static bool cut_expression(const dr_adwin_t *a, double dd, double v,
                           uint64_t n0, uint64_t n1, double absvalue) {
    double mwl = (double)a->min_sub_window;
    double m = 1.0 / ((double)n0 - mwl + 1) + 1.0 / ((double)n1 - mwl + 1);
    double epsilon = sqrt(2 * m * v * dd) + 2.0 / 3 * dd * m;
    return fabs(absvalue) > epsilon;
}

/* Moves the center to the window's mean once the mean has drifted more
 * than 2^10 standard deviations from it (about 10 bits of every sum lost
 * to cancellation); exact arithmetic would be unchanged: variances are
 * central moments and every mean difference is shift-invariant. */
static void recenter(dr_adwin_t *a) {
    double w = (double)a->width;
    if (a->total == 0.0 || a->total * a->total <= 0x1p20 * w * a->variance)
        return;
    double shift = a->total / w;
    double total = 0.0;
    for (int i = (int)a->nrows - 1; i >= 0; i--) {
        double n = bucket_size((unsigned)i);
        double *r = row(a, (unsigned)i);
        for (unsigned k = 0; k < counts(a)[i]; k++) {
            r[2u * k] -= n * shift;
            total += r[2u * k];
        }
    }
    a->center += shift;
    a->total = total;
}

/* ---- Cut points that cannot cut ---------------------------------------
 * With clock 1 every cut point is tested on every update, and MOA's test
 * costs four divisions and a square root per point. Nearly every point
 * fails it by a wide margin, so each point first goes through a test made
 * of products and sums only, which proves that MOA's test fails there; the
 * points it cannot rule out get MOA's test, unchanged. A pass that cuts is
 * then a pass where MOA cuts, and a pass that does not cut is one where
 * MOA's test fails at every point; and a cut at any point does the same
 * thing (drop the oldest bucket). So every decision is MOA's, provided:
 *
 * MOA, at a point with n0 older and n1 newer items (n0, n1 > mwl + 1), from
 * the doubles u0, u1 (the two parts' sums, accumulated as MOA does), v
 * (variance / W), dd and cd = 2.0 / 3 * dd, computes in double precision
 *   alpha = u0/n0 - u1/n1,  m = 1/k0 + 1/k1  (k = n - mwl + 1, exact),
 *   eps = sqrt(2*m*v*dd) + cd*m,   and cuts iff |alpha| > eps.
 * With u = 2^-53, every rounding multiplies by some (1 + e), |e| <= u. In
 * real numbers, A = u0/n0 - u1/n1, S = |u0|/n0 + |u1|/n1, M = 1/k0 + 1/k1
 * and E = sqrt(2*M*v*dd) + cd*M:
 *   |alpha| <= (|A| + u*S) * (1 + u),   eps >= E * (1 - u)^4,
 * so a cut implies |A| + u*S > rho*E, rho = (1-u)^4/(1+u) > 1 - 5u.
 * Multiplied by N*K (N = n0*n1, K = k0*k1 > 0), with D = u0*n1 - u1*n0,
 * T = |u0|*n1 + |u1|*n0 and ks = k0 + k1 = W - 2*mwl + 2 (so M*K = ks):
 *   Pt = (|D| + u*T) * K > rho*cd*ks*N + rho*N*sqrt(2*ks*K*v*dd),
 * i.e. Lt = Pt - rho*cd*ks*N > 0 and Lt^2 > rho^2 * N^2*K*2*ks*v*dd.
 * The filter computes, in doubles, with g = 2^-40 (= 8192u),
 *   P = (|D| + g*W*(|u0| + |u1|)) * K,  Q = [cd*ks*(1-g)] * N,  L = P - Q,
 *   R = N*N*K * [2*ks*v*dd*(1-g)]       ([..]: once per scan),
 * and rules the point out iff L*|L| < R. That is sound:
 *  - W*(|u0| + |u1|) >= T, so the g term exceeds D's rounding (2u*T), the
 *    u*T above and P's roundings by at least 0.99*g*T*K:
 *    P >= Pt + 0.99*g*T*K. And Q <= rho*cd*ks*N: the factor (1 - g)
 *    outweighs Q's three roundings and rho's 5u.
 *  - Hence Lt <= P - Q - 0.99*g*T*K. If Lt > 0, the exact P - Q is positive,
 *    and a positive difference of doubles never rounds to 0 or below; then
 *    L >= (P - Q)(1 - u) >= Lt > 0. So L <= 0 implies Lt <= 0: no cut.
 *  - If L > 0, L*|L| = L*L >= Lt^2 * (1 - u), while R <= rho^2 * (1 - u) *
 *    N^2*K*2*ks*v*dd: (1 - g) outweighs R's six roundings and rho^2's 10u.
 *    So L*L < R implies Lt^2 < rho^2 * N^2*K*2*ks*v*dd: no cut.
 * Range (checked once per scan, else every point gets MOA's test): W and
 * mwl are at most 2^26, so n0, n1, N and K = N - (mwl-1)*(W-mwl+1) are
 * exact integers; v is 0 or within 2^+-200 and dd < 2^20. Items (less the
 * center) are below 2^334, so every quantity above stays finite (L*L is
 * below 2^900), and R, when v > 0, is above 2^-200, far from the
 * subnormals. Below the normal range an operation errs by up to 2^-1074
 * more; that matters only where T*K < 1, and there Pt < 2 while
 * cd*ks*N >= 0.68*6*4 (dd > 1.02 as W >= 4): no cut anyway.
 * A NaN, were one to arise, would leave its point open. v = 0 makes R = 0:
 * only L < 0 is ruled out. tests/learner/test_adwin.c checks, over random
 * streams and settings, that a scan of MOA's own never finds a cut in a
 * window this code has left. */
typedef struct cut_filter {
    double slack;     /* g * W (exact): weight of |u0| + |u1| */
    double linear;    /* cd * ks * (1 - g) */
    double quadratic; /* 2 * ks * v * dd * (1 - g) */
    double k_shift;   /* (mwl - 1) * (W - mwl + 1): k0 * k1 = n0 * n1 - this */
    double min_side;  /* mwl + 1: each part needs more items (MOA) */
    double w;         /* W */
} cut_filter_t;

#define CUT_FILTER_MARGIN 0x1p-40

/* Sets up the filter for one scan pass; false where its range argument does
 * not hold (then every point gets MOA's test). */
static bool cut_filter_init(cut_filter_t *f, const dr_adwin_t *a, double dd,
                            double v) {
    double w = (double)a->width;
    double ks = w - 2.0 * (double)a->min_sub_window + 2.0;
    if (a->width > (UINT64_C(1) << 26) || a->min_sub_window > (1u << 26) ||
        !(ks >= 6.0) || !(dd > 0.0 && dd < 0x1p20))
        return false;
    if (v != 0.0 && !(v >= 0x1p-200 && v <= 0x1p200))
        return false;
    double cd = 2.0 / 3 * dd; /* MOA's operand order */
    f->slack = CUT_FILTER_MARGIN * w;
    f->linear = cd * ks * (1.0 - CUT_FILTER_MARGIN);
    f->quadratic = 2.0 * ks * v * dd * (1.0 - CUT_FILTER_MARGIN);
    double off = (double)a->min_sub_window - 1.0;
    f->k_shift = off * (w - off);
    f->min_side = (double)a->min_sub_window + 1.0;
    f->w = w;
    return true;
}

/* Filter verdict at one point: true when MOA's test must be run there, i.e.
 * the filter cannot rule the point out (proof above). L <= 0 and L*L < R
 * are tested at once as L*|L| < R (for L <= 0 no cut is possible anyway):
 * one test, so one branch, almost never taken, where a branch on each was
 * mispredicted (which of them rules a point out varies from point to
 * point). */
static inline bool point_open(const cut_filter_t *f, double u0, double u1,
                              double n0, double n1) {
    double d = u0 * n1 - u1 * n0;
    double nn = n0 * n1;
    double k = nn - f->k_shift;
    double l = (fabs(d) + f->slack * (fabs(u0) + fabs(u1))) * k -
               f->linear * nn;
    return !(l * fabs(l) < nn * nn * k * f->quadratic);
}

/* MOA's scan as it is, every point tested: where the filter's range
 * argument does not hold. */
static bool scan_unfiltered(dr_adwin_t *a, double dd, double v) {
    uint64_t mwl = a->min_sub_window;
    uint64_t n0 = 0, n1 = a->width;
    double u0 = 0, u1 = a->total;
    for (int i = (int)a->nrows - 1; i >= 0; i--) {
        const double *r = row(a, (unsigned)i);
        unsigned c = counts(a)[i];
        uint64_t size = (uint64_t)1 << i;
        for (unsigned k = 0; k < c; k++) {
            n0 += size;
            n1 -= size;
            u0 += r[2u * k];
            u1 -= r[2u * k];
            if (i == 0 && k == c - 1)
                return false; /* W1 would be empty */
            if (n1 <= mwl + 1 || n0 <= mwl + 1)
                continue; /* MOA tests the sizes first too: the means are not needed */
            double absvalue = u0 / (double)n0 - u1 / (double)n1;
            if (cut_expression(a, dd, v, n0, n1, absvalue)) {
                delete_element(a);
                return true;
            }
        }
    }
    return false;
}

/* MOA's scan with the filter in front of its test. The counts are kept
 * in doubles (exact: W <= 2^26), which MOA converts them to anyway. */
static bool scan_filtered(dr_adwin_t *a, const cut_filter_t *f, double dd,
                          double v) {
    double n0 = 0.0, n1 = f->w, u0 = 0.0, u1 = a->total;
    for (int i = (int)a->nrows - 1; i >= 0; i--) {
        const double *r = row(a, (unsigned)i);
        unsigned c = counts(a)[i];
        if (i == 0 && c > 0)
            c--; /* the newest bucket is no cut point: W1 would be empty */
        double size = bucket_size((unsigned)i);
        for (unsigned k = 0; k < c; k++) {
            n0 += size;
            n1 -= size;
            u0 += r[2u * k];
            u1 -= r[2u * k];
            if ((n0 < n1 ? n0 : n1) <= f->min_side)
                continue; /* MOA's size test */
            if (!point_open(f, u0, u1, n0, n1))
                continue;
            double absvalue = u0 / n0 - u1 / n1;
            if (cut_expression(a, dd, v, (uint64_t)n0, (uint64_t)n1,
                               absvalue)) {
                delete_element(a);
                return true;
            }
        }
    }
    return false;
}

/* One pass of MOA's scan: walk the buckets from the oldest, W0 = the older
 * part, W1 = the newer part; at the first cut whose means differ by more
 * than epsilon, delete the oldest bucket and return true. MOA's v0/v1 are
 * not computed: its cut expression never reads them. The newest bucket is
 * no cut point (W1 would be empty). */
static bool scan_once(dr_adwin_t *a) {
    if (a->width < 2u * (uint64_t)a->min_sub_window + 4u)
        return false; /* no cut leaves both parts more than mwl + 1 items */
    double n = (double)a->width;
    double dd = log(2 * log(n) / a->delta);
    double v = a->variance / n;
    cut_filter_t f;
    if (cut_filter_init(&f, a, dd, v))
        return scan_filtered(a, &f, dd, v);
    return scan_unfiltered(a, dd, v);
}

/* ---- Public API ----------------------------------------------------- */

void dr_adwin_conf_default(dr_adwin_conf_t *conf) {
    conf->delta = 0.002;
    conf->clock = 32;
    conf->max_buckets = 5;
    conf->min_window = 10;
    conf->min_sub_window = 5;
    conf->reset_on_cut = false;
}

int dr_adwin_conf_check(const dr_adwin_conf_t *conf) {
    if (conf == NULL)
        return DR_EINVAL;
    if (!(conf->delta > 0.0 && conf->delta < 1.0))
        return DR_ECONFIG; /* also rejects NaN */
    if (conf->clock < 1 || conf->min_window < 0 || conf->min_sub_window < 0)
        return DR_ECONFIG;
    if (conf->max_buckets < 2 || conf->max_buckets > DR_ADWIN_MAX_BUCKETS)
        return DR_ECONFIG; /* MOA's deleteElement assumes no empty rows */
    return 0;
}

int dr_adwin_init(dr_adwin_t *a, const dr_adwin_conf_t *conf) {
    dr_adwin_conf_t def;
    if (a == NULL)
        return DR_EINVAL;
    dr_adwin_conf_default(&def);
    int rc = conf ? dr_adwin_conf_check(conf) : 0;
    if (conf == NULL || rc != 0)
        conf = &def;
    memset(a, 0, sizeof(*a));
    a->delta = conf->delta;
    a->clock = (uint32_t)conf->clock;
    a->max_buckets = (uint8_t)conf->max_buckets;
    a->min_window = (uint32_t)conf->min_window;
    a->min_sub_window = (uint32_t)conf->min_sub_window;
    a->reset_on_cut = conf->reset_on_cut;
    return rc;
}

void dr_adwin_reset(dr_adwin_t *a) {
    if (a == NULL)
        return;
    a->width = 0;
    a->center = 0.0;
    a->total = 0.0;
    a->variance = 0.0;
    a->nrows = 0;
    a->phase = 0;
}

void dr_adwin_free_buckets(dr_adwin_t *a) {
    if (a == NULL)
        return;
    free(a->rows);
    a->rows = NULL;
    a->cap_rows = 0;
    dr_adwin_reset(a);
}

int dr_adwin_update(dr_adwin_t *a, double x) {
    if (a == NULL || !isfinite(x))
        return DR_EINVAL;
    if (fabs(x) > DR_ADWIN_MAX_ABS)
        return DR_ERANGE;
    if (needs_new_row(a)) {
        int rc = ensure_rows(a, a->nrows + 1u);
        if (rc != 0)
            return rc;
    }
    a->updates++;
    insert_element(a, x);
    if (++a->phase < a->clock)
        return 0;
    a->phase = 0; /* MOA: mintTime % mintClock == 0 */
    if (a->width <= a->min_window)
        return 0;
    recenter(a);
    bool cut = false;
    while (scan_once(a)) /* MOA's blnReduceWidth loop */
        cut = true;
    if (!cut)
        return 0;
    if (a->detections < UINT32_MAX)
        a->detections++;
    if (a->reset_on_cut)
        dr_adwin_reset(a);
    return 1;
}

uint64_t dr_adwin_width(const dr_adwin_t *a) { return a->width; }

double dr_adwin_total(const dr_adwin_t *a) {
    return a->center * (double)a->width + a->total;
}

double dr_adwin_mean(const dr_adwin_t *a) {
    return a->width ? a->center + a->total / (double)a->width : 0.0;
}

double dr_adwin_variance(const dr_adwin_t *a) {
    return a->width ? a->variance / (double)a->width : 0.0;
}

uint32_t dr_adwin_detections(const dr_adwin_t *a) { return a->detections; }

uint64_t dr_adwin_updates(const dr_adwin_t *a) { return a->updates; }

unsigned dr_adwin_rows(const dr_adwin_t *a) { return a->nrows; }

size_t dr_adwin_heap_bytes(const dr_adwin_t *a) {
    return block_bytes(a, a->cap_rows);
}

/* ---- Encoding ------------------------------------------------------------
 * v1: u8 version, u8 max_buckets, u8 rows, u8 reserved (0), u32 phase,
 * u32 detections, u64 updates, f64 center, f64 total, f64 variance; then
 * per row from row 0: u8 count, count x (f64 total, f64 variance), oldest
 * first. */

static uint8_t *put_u64(uint8_t *p, uint64_t v, unsigned nbytes) {
    for (unsigned i = 0; i < nbytes; i++)
        *p++ = (uint8_t)(v >> (8u * i));
    return p;
}

static uint8_t *put_f64(uint8_t *p, double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    return put_u64(p, bits, 8);
}

size_t dr_adwin_serialized_size(const dr_adwin_t *a) {
    size_t n = DR_ADWIN_HEADER_SIZE;
    for (unsigned i = 0; i < a->nrows; i++)
        n += 1u + 16u * counts(a)[i];
    return n;
}

int dr_adwin_serialize(const dr_adwin_t *a, uint8_t *buf, size_t cap,
                       size_t *written) {
    if (a == NULL || buf == NULL)
        return DR_EINVAL;
    size_t need = dr_adwin_serialized_size(a);
    if (written)
        *written = need;
    if (cap < need)
        return DR_ERANGE;
    uint8_t *p = buf;
    p = put_u64(p, DR_ADWIN_FORMAT_VERSION, 1);
    p = put_u64(p, a->max_buckets, 1);
    p = put_u64(p, a->nrows, 1);
    p = put_u64(p, 0, 1);
    p = put_u64(p, a->phase, 4);
    p = put_u64(p, a->detections, 4);
    p = put_u64(p, a->updates, 8);
    p = put_f64(p, a->center);
    p = put_f64(p, a->total);
    p = put_f64(p, a->variance);
    for (unsigned i = 0; i < a->nrows; i++) {
        unsigned c = counts(a)[i];
        const double *r = row(a, i);
        p = put_u64(p, c, 1);
        for (unsigned k = 0; k < 2u * c; k++)
            p = put_f64(p, r[k]);
    }
    return 0;
}

/* Bounds-checked little-endian reader: a short read sets `bad` and
 * yields 0, so callers check once at the end of a group of reads. */
typedef struct reader {
    const uint8_t *p;
    size_t len;
    size_t off;
    bool bad;
} reader_t;

static uint64_t get_u64(reader_t *r, unsigned nbytes) {
    uint64_t v = 0;
    if (r->bad || r->len - r->off < nbytes) {
        r->bad = true;
        return 0;
    }
    for (unsigned i = 0; i < nbytes; i++)
        v |= (uint64_t)r->p[r->off + i] << (8u * i);
    r->off += nbytes;
    return v;
}

static double get_f64(reader_t *r) {
    uint64_t bits = get_u64(r, 8);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

/* Reads the fixed header into `a`; returns the row count or an error. */
static int read_header(dr_adwin_t *a, reader_t *r) {
    if (get_u64(r, 1) != DR_ADWIN_FORMAT_VERSION || r->bad)
        return DR_ECORRUPT;
    unsigned m = (unsigned)get_u64(r, 1);
    unsigned nrows = (unsigned)get_u64(r, 1);
    unsigned reserved = (unsigned)get_u64(r, 1);
    uint32_t phase = (uint32_t)get_u64(r, 4);
    a->detections = (uint32_t)get_u64(r, 4);
    a->updates = get_u64(r, 8);
    a->center = get_f64(r);
    a->total = get_f64(r);
    a->variance = get_f64(r);
    if (r->bad || reserved != 0 || nrows > DR_ADWIN_MAX_ROWS)
        return DR_ECORRUPT;
    if (!isfinite(a->center) || !isfinite(a->total) ||
        !isfinite(a->variance) || a->variance < 0.0)
        return DR_ECORRUPT;
    if (a->detections > a->updates)
        return DR_ECORRUPT;
    if (nrows == 0 && (a->center != 0.0 || a->total != 0.0 ||
                       a->variance != 0.0))
        return DR_ECORRUPT; /* an empty window has no sums */
    if (m != a->max_buckets)
        return DR_ECONFIG;
    a->phase = phase % a->clock; /* the clock may have been reconfigured */
    return (int)nrows;
}

/* Walks the rows without storing them: checks every count and that the
 * buffer holds them all, so that nothing is allocated for a short buffer. */
static int measure_rows(const dr_adwin_t *a, reader_t r, unsigned nrows) {
    for (unsigned i = 0; i < nrows; i++) {
        unsigned c = (unsigned)get_u64(&r, 1);
        if (r.bad || c < 1 || c > a->max_buckets)
            return DR_ECORRUPT;
        if (r.len - r.off < 16u * c)
            return DR_ECORRUPT;
        r.off += 16u * c;
    }
    return 0;
}

/* Reads one row; bucket totals must be finite, variances finite and >= 0
 * (they are sums of non-negative terms). Adds its items to *width. */
static int read_row(dr_adwin_t *a, reader_t *r, unsigned i, uint64_t *width) {
    unsigned c = (unsigned)get_u64(r, 1);
    for (unsigned k = 0; k < c; k++) {
        double t = get_f64(r);
        double v = get_f64(r);
        if (r->bad || !isfinite(t) || !isfinite(v) || v < 0.0)
            return DR_ECORRUPT;
        push_bucket(a, i, t, v);
    }
    *width += (uint64_t)c << i;
    return 0;
}

static int read_rows(dr_adwin_t *a, reader_t *r, unsigned nrows) {
    int rc = measure_rows(a, *r, nrows);
    if (rc == 0)
        rc = ensure_rows(a, nrows);
    if (rc != 0)
        return rc;
    uint64_t width = 0;
    for (unsigned i = 0; i < nrows && rc == 0; i++) {
        counts(a)[i] = 0;
        a->nrows = (uint8_t)(i + 1);
        rc = read_row(a, r, i, &width);
    }
    if (rc == 0 && width > a->updates)
        rc = DR_ECORRUPT; /* every item in the window was an update */
    a->width = width;
    return rc;
}

int dr_adwin_deserialize(dr_adwin_t *a, const dr_adwin_conf_t *conf,
                         const uint8_t *buf, size_t len, size_t *consumed) {
    if (a == NULL)
        return DR_EINVAL;
    int rc = dr_adwin_init(a, conf);
    if (rc != 0)
        return rc;
    if (buf == NULL)
        return DR_EINVAL;
    reader_t r = {buf, len, 0, false};
    rc = read_header(a, &r);
    if (rc >= 0)
        rc = read_rows(a, &r, (unsigned)rc);
    if (rc != 0) {
        dr_adwin_free_buckets(a);
        dr_adwin_init(a, conf);
        return rc;
    }
    if (consumed)
        *consumed = r.off;
    return 0;
}
