/* rating.c - the rating blend. In rating mode the learner's biased MF
 * (base = μ + b_u + b_i + (û + v_u)·q_i, learned by SGD in model.c) predicts
 * within 0.2% of a biases-only model: one online SGD pass learns little
 * more. The blend refines base with two linear stages, both fitted online
 * by recursive least squares, test then train, on the same ratings:
 *
 *   y  = base + w · x      x: a constant, base, the MF's dot, the item's and
 *                          the user's shrunk mean residuals and the spread of
 *                          their errors, the user's residual averaged at three
 *                          rates and over the session, a co-rated
 *                          neighbours' term (the user's recent residuals on
 *                          items co-rated with this one) and, with a catalog
 *                          of short content embeddings (genres), the user's
 *                          mean error on items of this one's content;
 *   y2 = y + w_u · x2      the user's own stage over y - base and four of x:
 *                          in effect the user's own rating scale.
 *
 * The prediction is y2 clipped to the ratings seen. What was measured, and
 * what did not help, is in docs/LEARNER.md ("Rating mode"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"
#include "learner_internal.h"

#define ITEM_SHRINK 5.0      /* pseudo-ratings at 0 of the item's mean residual ... */
#define USER_SHRINK 5.0      /* ... of the user's ... */
#define SESSION_SHRINK 2.0   /* ... and of the session's */
#define CONTENT_SHRINK 5.0   /* ... and of the user's per content dimension, and a */
#define CONTENT_SHRINK_SLOW 20.0 /* second input shrunk harder: the blend picks the mix */
#define SESSION_GAP_MS 3600000 /* a longer pause starts a new session */
#define SPREAD_PRIOR 0.5     /* a user's or item's error spread starts at sqrt(0.5) */
#define FORGET 0.9998        /* the global stage: a rating's weight halves in ~3,500 */
#define GLOBAL_P0 100.0      /* its covariance at start (a weak ridge) */
#define GLOBAL_P_MAX 1e8     /* a covariance whose trace passes this has wound up: restart it */
#define USER_P0 0.02         /* the user's stage: a ridge that keeps few ratings near 0 ... */
#define USER_DRIFT 1e-4      /* ... and a random walk that lets its weights follow the user */

static const float ema_rate[3] = {0.5f, 0.2f, 0.05f};

_Static_assert(DR_RATING_USER_INPUTS <= DR__RATING_INPUTS, "rls_step's scratch holds the larger stage");

/* Content embeddings of c floats whose dimensions mean something one by
 * one (genres, topics): the blend keeps the user's statistics per dimension. */
static bool per_dimension(int c) { return c > 0 && c <= DR_RATING_CONTENT_MAX; }

int dr__rating_inputs(const dr_learner_conf_t *conf) {
    return per_dimension(conf->content_dim) ? DR__RATING_INPUTS : DR__RATING_BASE_INPUTS;
}

/* An input that stays 0 (content inputs without a catalog) is not merely
 * useless: forgetting winds its covariance up until the trace check
 * restarts the whole stage. So the stage has only the inputs it can use. */
void dr__rating_blend_reset(dr__rating_blend_t *b, int n) {
    memset(b->w, 0, sizeof(b->w));
    memset(b->p, 0, sizeof(b->p));
    b->inputs = n;
    for (int k = 0; k < n; k++) b->p[k * n + k] = GLOBAL_P0;
    b->n = 0;
}

/* The weights a_k of item idx's content dimensions for the per-content
 * statistics: its embedding's positive part over its largest value, so a
 * genre's multi-hot 0/1 stays 0/1 however the catalog normalised it.
 * Returns Σ a_k, 0 when the item has none the statistics can use. */
static float content_weights(const dr_model_t *m, size_t idx, float *a) {
    int c = m->content_dim;
    if (!per_dimension(c) || !m->has_content[idx]) return 0.0f;
    const float *e = m->emb + idx * (size_t)c;
    float top = 0.0f, sum = 0.0f;
    for (int k = 0; k < c; k++) top = fmaxf(top, e[k]);
    if (!(top > 0.0f)) return 0.0f;
    for (int k = 0; k < c; k++) sum += a[k] = fmaxf(e[k], 0.0f) / top;
    return sum;
}

int dr__rating_reserve(const dr_model_t *m, dr_user_t *u, size_t idx) {
    dr_rating_user_t *ru = &u->rating;
    int c = m->content_dim;
    if (!m->conf.rating_blend || !per_dimension(c) || !m->has_content[idx]) return 0;
    if (ru->content_len == c) return 0;
    float *stats = calloc(2 * (size_t)c, sizeof(float)); /* another length: settings changed */
    if (!stats) return DR_ENOMEM;
    free(ru->content);
    ru->content = stats;
    ru->content_len = (uint16_t)c;
    return 0;
}

/* The user's mean error on items of this content, Σ_k a_k s_k / (shrink +
 * n_k) / Σ_k a_k: per genre, what the MF gets wrong about how this user
 * rates it. The MF's own content projection learns the genre's place in
 * the factors, slowly and for everyone; this follows each user at once. */
static void content_terms(const dr_model_t *m, const dr_rating_user_t *ru, size_t idx, double *fast,
                          double *slow) {
    float a[DR_RATING_CONTENT_MAX];
    *fast = *slow = 0.0;
    float sum = ru->content_len == m->content_dim ? content_weights(m, idx, a) : 0.0f;
    if (sum <= 0.0f) return;
    const float *s = ru->content, *n = ru->content + ru->content_len;
    for (int k = 0; k < ru->content_len; k++) {
        if (a[k] <= 0.0f) continue;
        *fast += a[k] * s[k] / (CONTENT_SHRINK + n[k]);
        *slow += a[k] * s[k] / (CONTENT_SHRINK_SLOW + n[k]);
    }
    *fast /= sum;
    *slow /= sum;
}

static float item_mean(const dr_model_t *m, size_t idx) {
    return (float)(m->rated[idx].residual_sum / (ITEM_SHRINK + m->rated[idx].n));
}

static float user_mean(const dr_rating_user_t *r) {
    return (float)(r->residual_sum / (USER_SHRINK + r->n));
}

static bool same_session(const dr_user_t *u, int64_t ts) {
    return u->rating.n > 0 && ts - u->last_event_ms <= SESSION_GAP_MS;
}

/* Σ s_ij (r_j - μ - b_u - b_j) / (1 + Σ s_ij) over the user's last rated
 * items j (the co-engagement term's sources: learner.cooc.window of them),
 * s_ij = c_ij / sqrt(n_i n_j) from the co-engagement counts (in rating mode
 * every rating engages): the residuals of items rated close to this one by
 * the same users. The user's whole ring gives a little more (rmse 0.8413
 * against 0.8431 over the last 8) at a look-up of each of its items per
 * rating (docs/LEARNER.md). */
static double neighbours_term(const dr_model_t *m, size_t idx, const int32_t *near, const float *near_residual,
                              int n_near) {
    if (n_near == 0) return 0.0; /* none: also when the co-engagement term is off */
    double scale = dr__cooc_scale(m, idx), n_i = m->engaged[idx] * scale, num = 0.0, den = 1.0;
    if (n_i <= 0) return 0.0;
    const dr__nbr_t *t = &m->nbr[idx];
    for (int k = 0; k < n_near; k++) {
        if ((size_t)near[k] == idx) continue;
        float c = dr__nbr_get(t, near[k]);
        double n_j = c > 0 ? dr__cooc_engaged(m, (size_t)near[k]) : 0.0;
        if (n_j <= 0) continue;
        double sim = c * scale / sqrt(n_i * n_j);
        num += sim * near_residual[k];
        den += sim;
    }
    return num / den;
}

float dr__rating_predict(const dr_model_t *m, const dr_user_t *u, size_t idx, float base, float dot,
                         int64_t ts, const int32_t *near, const float *near_residual, int n_near,
                         dr__rating_pred_t *p) {
    memset(p, 0, sizeof(*p));
    p->base = base;
    p->prediction = base;
    const dr_rating_user_t *ru = &u->rating;
    p->item_mean = item_mean(m, idx); /* the statistics learn from them, blend or not */
    p->user_mean = user_mean(ru);
    if (!m->conf.rating_blend) return base;
    const dr__item_ratings_t *ri = &m->rated[idx];
    double session = same_session(u, ts) ? ru->session_sum / (SESSION_SHRINK + ru->session_n) : 0.0;
    double knn = neighbours_term(m, idx, near, near_residual, n_near);
    double *x = p->x;
    x[0] = 1.0;
    x[1] = base;
    x[2] = p->item_mean;
    x[3] = p->user_mean;
    x[4] = ru->ema[0];
    x[5] = ru->ema[1];
    x[6] = ru->ema[2];
    x[7] = session;
    x[8] = dot;
    x[9] = sqrt(ru->error_sq / (ru->n + 3.0) + SPREAD_PRIOR);
    x[10] = sqrt(ri->error_sq / (ri->n + 3.0) + SPREAD_PRIOR);
    x[11] = knn;
    const dr__rating_blend_t *b = &m->blend;
    if (b->inputs > DR__RATING_BASE_INPUTS) content_terms(m, ru, idx, &x[12], &x[13]);
    double y = base;
    for (int k = 0; k < b->inputs; k++) y += b->w[k] * x[k];
    double *x2 = p->x2;
    x2[0] = 1.0;
    x2[1] = y - base;
    x2[2] = ru->ema[0];
    x2[3] = knn;
    x2[4] = p->item_mean;
    x2[5] = ru->ema[2];
    double y2 = y;
    for (int k = 0; k < DR_RATING_USER_INPUTS; k++) y2 += ru->w[k] * x2[k];
    p->y = y;
    p->y2 = y2;
    float pred = (float)y2;
    if (b->n > 0) pred = fminf(fmaxf(pred, b->lo), b->hi);
    p->prediction = isfinite(pred) ? pred : base;
    return p->prediction;
}

/* One RLS step on w and the symmetric P (n × n) for input x and error err,
 * forgetting lambda, with drift added to P's diagonal. False when the
 * result is not usable (a non-finite value, or P's trace at or past
 * max_trace: a covariance that wound up); w and P are then to be reset. */
static bool rls_step(double *w, double *P, const double *x, int n, double err, double lambda,
                     double drift, double max_trace) {
    double Px[DR__RATING_INPUTS], g = lambda;
    for (int a = 0; a < n; a++) {
        double s = 0.0;
        for (int c = 0; c < n; c++) s += P[a * n + c] * x[c];
        Px[a] = s;
        g += x[a] * s;
    }
    double inv_g = 1.0 / g, inv_lambda = 1.0 / lambda, trace = 0.0, sum = 0.0;
    for (int a = 0; a < n; a++) {
        w[a] += Px[a] * inv_g * err;
        sum += w[a];
        double k = Px[a] * inv_g;
        for (int c = a; c < n; c++) {
            double v = (P[a * n + c] - k * Px[c]) * inv_lambda;
            P[a * n + c] = P[c * n + a] = v;
            sum += v;
        }
        P[a * n + a] += drift;
        trace += P[a * n + a];
    }
    return isfinite(sum) && trace > 0 && trace < max_trace;
}

static void learn_user_stage(dr_rating_user_t *ru, const dr__rating_pred_t *p, float r) {
    enum { N = DR_RATING_USER_INPUTS };
    double w[N], P[N * N];
    for (int a = 0; a < N; a++) w[a] = ru->w[a];
    bool started = ru->p[0] > 0;
    for (int a = 0; a < N * N; a++) P[a] = started ? ru->p[a] : (a % (N + 1) == 0 ? USER_P0 : 0.0);
    if (!rls_step(w, P, p->x2, N, r - p->y2, 1.0, USER_DRIFT, 1e3)) { /* not reached with these
                                                                          constants: start again */
        memset(ru->w, 0, sizeof(ru->w));
        memset(ru->p, 0, sizeof(ru->p));
        return;
    }
    for (int a = 0; a < N; a++) ru->w[a] = (float)w[a];
    for (int a = 0; a < N * N; a++) ru->p[a] = (float)P[a];
}

float dr__rating_learn(dr_model_t *m, dr_user_t *u, size_t idx, float r, int64_t ts,
                       const dr__rating_pred_t *p) {
    dr__rating_blend_t *b = &m->blend;
    dr_rating_user_t *ru = &u->rating;
    dr__item_ratings_t *ri = &m->rated[idx];
    if (m->conf.rating_blend) {
        learn_user_stage(ru, p, r);
        if (!rls_step(b->w, b->p, p->x, b->inputs, r - p->y, FORGET, 0.0, GLOBAL_P_MAX)) {
            double w[DR__RATING_INPUTS];
            memcpy(w, b->w, sizeof(w));
            dr__rating_blend_reset(b, b->inputs);
            for (int k = 0; k < b->inputs; k++) b->w[k] = isfinite(w[k]) ? w[k] : 0.0;
        }
    }
    b->lo = b->n > 0 ? fminf(b->lo, r) : r;
    b->hi = b->n > 0 ? fmaxf(b->hi, r) : r;
    b->n++;
    /* the statistics, each from what the prediction saw */
    float e = (float)(r - p->base);
    float mu = (float)m->mu;
    float user_resid = r - mu - p->item_mean, item_resid = r - mu - p->user_mean;
    for (int k = 0; k < 3; k++) ru->ema[k] += ema_rate[k] * (user_resid - ru->ema[k]);
    if (!same_session(u, ts)) ru->session_sum = 0.0f, ru->session_n = 0;
    ru->session_sum += user_resid;
    ru->session_n++;
    ru->residual_sum += user_resid;
    ru->error_sq += e * e;
    ru->n++;
    float a[DR_RATING_CONTENT_MAX]; /* room made by dr__rating_reserve() */
    if (ru->content_len == m->content_dim && content_weights(m, idx, a) > 0.0f) {
        float *s = ru->content, *n = ru->content + ru->content_len;
        for (int k = 0; k < ru->content_len; k++) s[k] += a[k] * e, n[k] += a[k];
    }
    ri->residual_sum += item_resid;
    ri->error_sq += e * e;
    ri->n++;
    return r - mu - u->bias - m->bias[idx];
}
