/* retrieve.c - the emitter's retrieval path for large catalogs: an HNSW
 * index over the items' [q_i, p_i, b_i] (retrieval/dr_retrieval.h)
 * proposes each user's candidates, together with the items its
 * co-engagement term favours, the trending items and the most popular;
 * their exact scores (every term, dr_model_scores_at) rank the list. The
 * index's rows carry the population prior's p_i beside q_i, and the query
 * the user's weight of it beside u, so that the index ranks by the list's
 * score but for the co-engagement, trend and freshness terms, which have
 * candidates of their own: without it a light user's list, where γ·p_i
 * weighs most, was made of items neither the index nor the most popular
 * proposed (docs/RETRIEVAL.md).
 *
 * Building an index (the first, and a new one when re-inserted rows have
 * left dead slots past a fifth of the items) runs on a thread of its own:
 * the emit thread copies the rows into a snapshot within its time budget
 * per emit call (the item matrix changes between calls and may move), then
 * a builder thread builds the index from the snapshot while the emit loop
 * goes on, and the emit thread takes the finished index over at the start
 * of a later call. The emit thread alone touches an index that serves;
 * the builder alone touches the one it builds until it says it is done.
 * After that the index follows the item matrix on the emit thread, within
 * emit.retrieval.sync.ms per call: the items it lacks first, then a
 * round-robin pass that re-inserts the rows that moved by more than
 * emit.retrieval.refresh.change of their length since the index took
 * them. Until the first index holds the whole catalog the full scan
 * serves; a rebuild serves once it has caught up.
 *
 * With emit.retrieval.persist (index_dir set), the builder saves every
 * index it builds there (retrieval/dr_retrieval.h, dr_ann_save), and the
 * first build after a start loads the saved one instead, names its items
 * by the snapshot's ids (rows change across a restart, ids do not) and
 * inserts only the rows it lacks: at 1M items, seconds instead of ~15
 * minutes of a core. What moved since the save, the refresh pass finds as
 * it finds any row that moved. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_log.h"
#include "emitter_internal.h"

/* Items that joined the catalog since the index last caught up are
 * scored exactly for every list, up to this many; more, and the full scan
 * serves until the index has them. */
#define RETR_TAIL_MAX 1024
/* Fewer lists per thread than this are ranked on fewer threads (a list
 * from candidates costs an index search: more than a scan row). */
#define RETR_ROWS_PER_THREAD_MIN 4
#define RETR_TREND_TOP 64 /* trending candidates per list (the trend term) */
#define RETR_FRESH_TOP 64 /* freshest candidates per list (the freshness term, when on) */
/* The snapshot is copied in pieces of this many bytes between looks at the
 * clock: a fresh page costs ~15 us to fault in here (docs/RETRIEVAL.md),
 * so a piece stays well under a millisecond. */
#define RETR_COPY_BYTES (64 * 1024)
/* After a build that failed (memory, a thread not started), the next one
 * starts no sooner than this: each costs a copy of the catalog. */
#define RETR_RETRY_S 10.0
/* p_i's scale in the index's rows (the query's weight of it divided by
 * the same: the scores are unchanged). A log count up to ~10 against
 * factors of length ~1: unscaled, the graph linked the popular items to
 * each other and left others unreachable; at a tenth it ignored
 * popularity. 0.2-0.5 did equally well (docs/RETRIEVAL.md). */
#define RETR_POP_SCALE 0.3f

/* A background build. The emit thread owns every field until it starts the
 * thread and again once it has joined it; in between the builder owns
 * index, rc and built, and the two share only `stop` and `done`. */
typedef struct retr_build {
    float *vecs;           /* the snapshot: rows [0, n) of [q, p], n × dim */
    float *bias;           /* and of the biases */
    int64_t *ids;          /* and of the item ids (-1: a free row) */
    bool try_load;         /* the first build after a start: the saved index first */
    bool loaded;           /* it was loaded (kept items from the save) */
    size_t kept;           /* items the saved index held for the snapshot's ids */
    int load_rc, save_rc;  /* 0 or why loading (DR_ENOTFOUND: nothing saved) or saving failed */
    char load_err[256], save_err[256];
    const char *dir;       /* the conf's index_dir ("" : none) */
    size_t n, copied;      /* rows in it; rows copied so far */
    int dim;               /* the index's: the items' + 1 */
    double bias_sum;       /* of the copied rows: the index's bias offset */
    bool started;          /* the thread runs, or has ended and waits to be joined */
    pthread_t thread;
    dr_ann_conf_t ann_conf;
    int threads;
    dr_ann_t *index;       /* what the builder made */
    size_t built;          /* rows it put in */
    uint64_t reuse_at;     /* the model's reuse count when the snapshot began */
    int rc;                /* 0, DR_ESTOPPED or its error */
    char err[256];
    atomic_bool stop;      /* the emit thread asks the builder to stop */
    atomic_bool done;      /* the builder has finished: index and rc are set */
} retr_build_t;

/* What one thread needs to rank a list from candidates: the candidates,
 * their scores, a set that keeps them apart (open addressing, -1 empty),
 * and the co-engagement term's candidates. */
typedef struct retr_lists {
    int64_t *cand;
    float *score;
    int64_t *set;
    int64_t *coengaged;    /* conf.coengaged */
} retr_lists_t;

struct dr__retrieval {
    dr_emit_retrieval_conf_t conf;
    dr_ann_t *ann;         /* the index that serves */
    size_t indexed;        /* items 0..indexed-1 are in it */
    dr_ann_t *next;        /* a rebuilt index catching up before it serves, or NULL */
    size_t next_indexed;
    retr_build_t *build;   /* the build under way (or asked to stop), or NULL */
    pthread_t retiring;    /* frees the index a rebuild replaced */
    bool retiring_started; /* it runs, or has ended and waits to be joined */
    double retry_at;       /* no new build before this (dr_mono_s) */
    bool loaded_once;      /* the saved index was tried (once per start) */
    int dim;               /* the items' dimension; the index's is one more (p_i) */
    size_t cursor;         /* the refresh pass's next row */
    double refresh_credit; /* rows it may look at (emit.retrieval.refresh.pass.ms) ... */
    double refresh_at;     /* ... as of this time (dr_mono_s; 0: not yet) */
    uint64_t reuse_cursor; /* rows taken over by new items, seen (dr_model_reused_rows) */
    /* per emit call: the global candidates */
    int64_t *popular;      /* conf.popular most popular indices */
    size_t n_popular;
    int64_t trend[RETR_TREND_TOP];
    int64_t fresh[RETR_FRESH_TOP];
    size_t n_fresh;
    size_t n_trend;
    /* per list, one scratch per thread that ranks lists (emit.threads) */
    retr_lists_t *lists;
    int n_lists;
    size_t cand_cap;       /* each scratch's candidates */
    size_t set_mask;       /* and its set's slots - 1 */
};

int dr__retrieval_new(dr__retrieval_t **out, const dr_emitter_conf_t *conf, char *errstr,
                      size_t errstr_size) {
    *out = NULL;
    const dr_emit_retrieval_conf_t *c = &conf->retrieval;
    if (c->min_items <= 0) return 0; /* off */
    dr__retrieval_t *r = calloc(1, sizeof(*r));
    if (!r) goto nomem;
    r->conf = *c;
    if (r->conf.build_threads <= 0) r->conf.build_threads = DR_EMIT_BUILD_THREADS;
    r->cand_cap = (size_t)c->candidates + EXCL_MAX + (size_t)c->coengaged + (size_t)c->popular +
                  RETR_TREND_TOP + RETR_FRESH_TOP + RETR_TAIL_MAX;
    size_t slots = 1;
    while (slots < 2 * (r->cand_cap + EXCL_MAX)) slots <<= 1;
    r->set_mask = slots - 1;
    r->n_lists = conf->threads > 1 ? conf->threads : 1;
    r->lists = calloc((size_t)r->n_lists, sizeof(*r->lists));
    if (!r->lists) goto nomem;
    for (int t = 0; t < r->n_lists; t++) {
        retr_lists_t *L = &r->lists[t];
        L->cand = malloc(r->cand_cap * sizeof(*L->cand));
        L->score = malloc(r->cand_cap * sizeof(*L->score));
        L->set = malloc(slots * sizeof(*L->set));
        L->coengaged = malloc(((size_t)c->coengaged + 1) * sizeof(*L->coengaged));
        if (!L->cand || !L->score || !L->set || !L->coengaged) goto nomem;
    }
    r->popular = malloc(((size_t)c->popular + 1) * sizeof(*r->popular));
    if (!r->popular) goto nomem;
    *out = r;
    return 0;
nomem:
    dr__retrieval_free(r);
    snprintf(errstr, errstr_size, "out of memory creating the retrieval path");
    return DR_ENOMEM;
}

/* Row i as the index holds it: [q_i, RETR_POP_SCALE·p_i] (its bias apart). */
static void index_row(const dr_items_view_t *items, size_t i, float *row) {
    memcpy(row, items->q + i * (size_t)items->dim, (size_t)items->dim * sizeof(float));
    row[items->dim] = RETR_POP_SCALE * items->pop[i];
}

/* ---- the background build ------------------------------------------------ */

static void build_free(retr_build_t *b) {
    if (!b) return;
    dr_ann_free(b->index);
    free(b->vecs);
    free(b->bias);
    free(b->ids);
    free(b);
}

static int build_should_stop(void *ctx) {
    retr_build_t *b = ctx;
    return atomic_load_explicit(&b->stop, memory_order_relaxed);
}

/* The saved index, its items named by the snapshot's ids, and the rows it
 * lacks put in: true when it serves as this build's result. */
static bool build_load(retr_build_t *b) {
    b->load_rc = dr_ann_load(&b->index, b->dir, &b->ann_conf, b->ids, b->n, &b->kept, b->load_err,
                             sizeof(b->load_err));
    if (b->load_rc) return false;
    size_t d = (size_t)b->dim;
    for (size_t i = 0; i < b->n && !b->rc; i++) {
        if (build_should_stop(b)) b->rc = DR_ESTOPPED;
        else if (dr_ann_get(b->index, (int64_t)i, NULL, NULL) == 0) continue;
        else if ((b->rc = dr_ann_upsert(b->index, (int64_t)i, b->vecs + i * d, b->bias[i])) == DR_EINVAL)
            b->rc = 0; /* a row not finite: left out, as a build leaves it */
        else if (!b->rc) b->built++;
    }
    b->loaded = true;
    return true;
}

/* dr_ann_save into dir, made first when missing. */
static int save_index(const dr_ann_t *ann, const char *dir, const int64_t *ids, size_t n, char *err,
                      size_t err_size) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "%s: %s", dir, strerror(errno));
        return DR_EIO;
    }
    return dr_ann_save(ann, dir, ids, n, err, err_size);
}

static void *build_main(void *arg) {
    retr_build_t *b = arg;
    if (!(b->try_load && build_load(b))) {
        b->rc = dr_ann_new(&b->index, &b->ann_conf, b->err, sizeof(b->err));
        if (!b->rc)
            b->rc = dr_ann_build_stoppable(b->index, b->vecs, b->bias, b->n, b->threads,
                                           build_should_stop, b, &b->built);
        /* off the emit thread, and before the index serves: it is the
         * builder's alone until done is set */
        if (!b->rc && b->dir[0])
            b->save_rc = save_index(b->index, b->dir, b->ids, b->n, b->save_err, sizeof(b->save_err));
    }
    if (b->rc && !b->err[0]) snprintf(b->err, sizeof(b->err), "%s", dr_strerror(b->rc));
    /* the snapshot is done with: freed here, not on the emit thread (tens
     * of ms at 1M items) */
    free(b->vecs);
    free(b->bias);
    free(b->ids);
    b->vecs = b->bias = NULL;
    b->ids = NULL;
    atomic_store_explicit(&b->done, true, memory_order_release);
    return NULL;
}

/* Asks the build to stop; the result is dropped when it ends (build_reap).
 * Does not wait. */
static void build_cancel(dr__retrieval_t *r) {
    if (!r->build) return;
    atomic_store(&r->build->stop, true);
    if (!r->build->started) { /* still copying: nothing runs */
        build_free(r->build);
        r->build = NULL;
    }
}

/* Stops a build under way and waits for it (within about one insert),
 * then drops it. */
static void build_stop_wait(dr__retrieval_t *r) {
    if (!r->build) return;
    atomic_store(&r->build->stop, true);
    if (r->build->started) pthread_join(r->build->thread, NULL);
    build_free(r->build);
    r->build = NULL;
}

/* Drops the build after a failure (what: the step, err: why); the next
 * build starts RETR_RETRY_S later. */
static void build_failed(dr__retrieval_t *r, const char *what, const char *err) {
    dr_log(DR_LOG_WARN, "emitter", "retrieval index build failed | step=%s err=\"%s\" retry_s=%.0f", what,
           err, RETR_RETRY_S);
    build_cancel(r);
    r->retry_at = dr_mono_s() + RETR_RETRY_S;
}

/* Starts a build of rows [0, items->n) (at least min.items >= 1 of them):
 * its snapshot, to be copied by build_copy, and the model's reuse count it
 * begins at. False when there is no memory for it (build_failed said so). */
static bool build_begin(dr__retrieval_t *r, const dr_model_t *m, const dr_items_view_t *items) {
    retr_build_t *b = calloc(1, sizeof(*b));
    if (b) {
        atomic_init(&b->stop, false);
        atomic_init(&b->done, false);
        b->n = items->n;
        b->dim = items->dim + 1;
        /* malloc leaves the pages untouched: they are faulted in piece by
         * piece as build_copy writes them */
        b->vecs = malloc(b->n * (size_t)b->dim * sizeof(float));
        b->bias = malloc(b->n * sizeof(float));
        b->ids = malloc(b->n * sizeof(int64_t));
        b->dir = r->conf.persist ? r->conf.index_dir : "";
        b->try_load = b->dir[0] && !r->ann && !r->loaded_once; /* a rebuild builds */
    }
    if (!b || !b->vecs || !b->bias || !b->ids) {
        build_free(b);
        build_failed(r, "snapshot", dr_strerror(DR_ENOMEM));
        return false;
    }
    b->reuse_at = dr_model_reuse_seq(m);
    r->build = b;
    r->dim = items->dim;
    return true;
}

/* Copies the snapshot's next rows until the deadline, and once all are in
 * starts the builder. NULL, or why this build ends. */
static const char *build_copy(dr__retrieval_t *r, const dr_items_view_t *items, double deadline) {
    retr_build_t *b = r->build;
    if (items->dim + 1 != b->dim || items->n < b->n) return "the item matrix changed shape";
    size_t row_bytes = (size_t)b->dim * sizeof(float);
    size_t piece = RETR_COPY_BYTES / row_bytes ? RETR_COPY_BYTES / row_bytes : 1;
    while (b->copied < b->n && dr_mono_s() < deadline) {
        size_t k = b->n - b->copied < piece ? b->n - b->copied : piece;
        for (size_t i = b->copied; i < b->copied + k; i++) index_row(items, i, b->vecs + i * (size_t)b->dim);
        memcpy(b->bias + b->copied, items->bias + b->copied, k * sizeof(float));
        memcpy(b->ids + b->copied, items->ids + b->copied, k * sizeof(int64_t));
        for (size_t i = b->copied; i < b->copied + k; i++) b->bias_sum += b->bias[i];
        b->copied += k;
    }
    if (b->copied < b->n) return NULL;
    /* a new index sized for the snapshot, its bias offset the rows' mean
     * bias (dr_retrieval.h: the graph's shape wants biases around 0) */
    dr_ann_conf_default(&b->ann_conf, b->dim);
    b->ann_conf.capacity = b->n;
    b->ann_conf.M = r->conf.M;
    b->ann_conf.ef_construction = r->conf.ef_construction;
    b->ann_conf.ef_search = r->conf.ef_search;
    float offset = (float)(b->bias_sum / (double)b->n);
    b->ann_conf.bias_offset = isfinite(offset) ? offset : 0.0f; /* a row not finite stays out */
    b->threads = r->conf.build_threads;
    int err = pthread_create(&b->thread, NULL, build_main, b);
    if (err) return "the builder thread could not start";
    b->started = true;
    return NULL;
}

/* Takes a finished build's index over: the first serves at once (with the
 * items that joined since its snapshot as the tail), a rebuild catches up
 * as `next` first. Does not wait for a build that is still running. */
static void build_reap(dr__retrieval_t *r, dr_emit_stats_t *stats) {
    retr_build_t *b = r->build;
    if (!b || !b->started || !atomic_load_explicit(&b->done, memory_order_acquire)) return;
    /* done is set just before the thread returns; on a loaded machine it
     * may be descheduled in between: a join would wait for it, so the
     * next call tries again */
    if (pthread_tryjoin_np(b->thread, NULL) != 0) return;
    b->started = false;
    if (atomic_load(&b->stop)) { /* cancelled (the dimension changed): dropped */
        build_free(b);
        r->build = NULL;
        return;
    }
    if (b->try_load) {
        r->loaded_once = true; /* one try per start: later builds build */
        if (b->loaded)
            dr_log(DR_LOG_INFO, "emitter", "retrieval index loaded | dir=%s items=%zu kept=%zu inserted=%zu", b->dir,
                   b->n, b->kept, b->built);
        else if (b->load_rc != DR_ENOTFOUND)
            dr_log(DR_LOG_WARN, "emitter", "retrieval index not loaded, building one | dir=%s err=\"%s\"", b->dir,
                   b->load_err[0] ? b->load_err : dr_strerror(b->load_rc));
    }
    if (b->save_rc)
        dr_log(DR_LOG_WARN, "emitter", "retrieval index not saved | err=\"%s\"", b->save_err);
    if (b->rc) {
        build_failed(r, "build", b->err);
        return;
    }
    stats->index_upserts += b->built;
    /* rows new items took over since the snapshot are re-inserted into it
     * (into the serving index again too: harmless, a dead slot) */
    if (b->reuse_at < r->reuse_cursor || !r->ann) r->reuse_cursor = b->reuse_at;
    if (!r->ann) {
        r->ann = b->index;
        r->indexed = b->n;
    } else {
        dr_ann_free(r->next); /* none: a rebuild starts only without one */
        r->next = b->index;
        r->next_indexed = b->n;
    }
    b->index = NULL;
    build_free(b);
    r->build = NULL;
}

static void *retire_main(void *ann) {
    dr_ann_free(ann);
    return NULL;
}

static void join_retiring(dr__retrieval_t *r) {
    if (r->retiring_started) pthread_join(r->retiring, NULL);
    r->retiring_started = false;
}

/* Frees an index that no longer serves on a thread of its own: freeing
 * ~640 MB at 1M items takes 15-35 ms here, more than an emit call's
 * budget. The previous one ended long ago (rebuilds are minutes apart). */
static void retire(dr__retrieval_t *r, dr_ann_t *old) {
    join_retiring(r);
    if (pthread_create(&r->retiring, NULL, retire_main, old) == 0) r->retiring_started = true;
    else dr_ann_free(old); /* no thread: here, then */
}

int dr__retrieval_save(dr__retrieval_t *r, const dr_model_t *m) {
    if (!r || !r->ann || !r->conf.persist || !r->conf.index_dir[0]) return 0;
    build_stop_wait(r); /* its own save would race this one */
    dr_items_view_t items;
    dr_model_items(m, &items);
    if (items.n < r->indexed || items.dim != r->dim) return 0; /* not this index's model */
    double t0 = dr_mono_s();
    char err[sizeof(r->conf.index_dir) + 256] = "";
    int rc = save_index(r->ann, r->conf.index_dir, items.ids, r->indexed, err, sizeof(err));
    if (rc) dr_log(DR_LOG_WARN, "emitter", "retrieval index not saved | err=\"%s\"", err[0] ? err : dr_strerror(rc));
    else
        dr_log(DR_LOG_INFO, "emitter", "retrieval index saved | dir=%s items=%zu seconds=%.2f", r->conf.index_dir,
               dr_ann_count(r->ann), dr_mono_s() - t0);
    return rc;
}

void dr__retrieval_free(dr__retrieval_t *r) {
    if (!r) return;
    join_retiring(r);
    build_stop_wait(r);
    dr_ann_free(r->ann);
    dr_ann_free(r->next);
    free(r->popular);
    for (int t = 0; r->lists && t < r->n_lists; t++) {
        free(r->lists[t].cand);
        free(r->lists[t].score);
        free(r->lists[t].set);
        free(r->lists[t].coengaged);
    }
    free(r->lists);
    free(r);
}

/* ---- keeping up with the item matrix (the emit thread) -------------------- */

static int upsert_row(dr_ann_t *ann, const dr_items_view_t *items, size_t i) {
    float row[DR_MAX_DIM + 1];
    index_row(items, i, row);
    int rc = dr_ann_upsert(ann, (int64_t)i, row, items->bias[i]);
    return rc == DR_EINVAL ? 0 : rc; /* a row not finite: left out until it is */
}

/* Whether row i moved enough since the index took it to be worth a new
 * slot: |Δ|² > change² · |row|², over the row as the index holds it,
 * [q_i, p_i scaled, b_i] (a popular item's p_i moves little against its
 * length; a first positive or two move a new item's). */
static bool moved(const dr__retrieval_t *r, const dr_items_view_t *items, size_t i) {
    float old[DR_ANN_MAX_DIM + 1], now[DR_ANN_MAX_DIM + 1];
    const int d = items->dim + 1;
    if (dr_ann_get(r->ann, (int64_t)i, old, &old[d]) != 0) return true;
    index_row(items, i, now);
    now[d] = items->bias[i];
    double d2 = 0, n2 = 0;
    for (int k = 0; k <= d; k++) {
        d2 += ((double)now[k] - old[k]) * ((double)now[k] - old[k]);
        n2 += (double)now[k] * now[k];
    }
    return d2 > r->conf.refresh_change * r->conf.refresh_change * (n2 + 1e-12);
}

/* Adds rows [*indexed, n) to ann until the deadline. */
static int catch_up(dr_ann_t *ann, size_t *indexed, const dr_items_view_t *items, double deadline,
                    uint64_t *upserts) {
    int rc = 0;
    while (!rc && *indexed < items->n && dr_mono_s() < deadline)
        for (int k = 0; k < 64 && !rc && *indexed < items->n; k++, (*upserts)++)
            rc = upsert_row(ann, items, (*indexed)++);
    return rc;
}

static void global_candidates(dr__retrieval_t *r, const dr_model_t *m);

/* Rows the refresh pass may look at now, of n: what a whole pass per
 * refresh_pass_ms has earned since the last call, at most n. Checking a
 * row reads the index's copy of it (a hash look-up and a cache miss or two:
 * ~60 ns at 100k items, 0.2-0.5 us at 1M): a pass per emit call over a
 * catalog that hardly moved cost 6 ms of every 100 ms emit at 100k items
 * and the whole 20 ms budget at 1M (docs/RETRIEVAL.md). */
static size_t refresh_allowance(dr__retrieval_t *r, size_t n, double now) {
    if (r->conf.refresh_pass_ms <= 0) return n;
    if (r->refresh_at > 0)
        r->refresh_credit += (double)n * (now - r->refresh_at) * 1000.0 / r->conf.refresh_pass_ms;
    r->refresh_at = now;
    if (r->refresh_credit > (double)n) r->refresh_credit = (double)n;
    return (size_t)r->refresh_credit;
}

/* A row a new item took over from a removed one (learner.item.ttl.ms, a
 * catalog tombstone) lies below the indexed rows, so it is not among the
 * items newer than the index: it is re-inserted at once, with the new
 * item's vector, into every index that holds the row (the serving one and
 * a rebuild catching up). More reuses than the model remembers: the
 * refresh pass finds the rest by their vectors. */
static int take_reused(dr__retrieval_t *r, const dr_model_t *m, const dr_items_view_t *items,
                       uint64_t *upserts) {
    int64_t rows[256];
    bool lost;
    size_t n;
    int rc = 0;
    while (!rc && (n = dr_model_reused_rows(m, &r->reuse_cursor, rows, 256, &lost)) > 0) {
        if (lost) dr_log(DR_LOG_DEBUG, "emitter", "retrieval index: reused rows beyond the model's log, left to the refresh pass");
        for (size_t k = 0; k < n && !rc; k++) {
            size_t i = (size_t)rows[k];
            if (i >= items->n) continue;
            if (i < r->indexed) {
                rc = upsert_row(r->ann, items, i);
                (*upserts)++;
            }
            if (!rc && r->next && i < r->next_indexed) {
                rc = upsert_row(r->next, items, i);
                (*upserts)++;
            }
        }
    }
    return rc;
}

bool dr__retrieval_sync(dr__retrieval_t *r, const dr_model_t *m, const dr_items_view_t *items,
                        dr_emit_stats_t *stats) {
    if (!r || items->n < (size_t)r->conf.min_items) return false;
    double t0 = dr_mono_s(), deadline = t0 + r->conf.sync_ms / 1000.0;
    if ((r->ann || r->build) && r->dim != items->dim) { /* the dimension changed: start over */
        build_cancel(r); /* a running build is dropped once it has stopped */
        dr_ann_free(r->ann);
        dr_ann_free(r->next);
        r->ann = r->next = NULL;
        r->indexed = r->next_indexed = r->cursor = 0;
        r->retry_at = 0;
    }
    build_reap(r, stats);
    int rc = 0;
    uint64_t upserts = 0;
    if (!r->ann && !r->build && t0 >= r->retry_at) (void)build_begin(r, m, items);
    if (r->ann) rc = take_reused(r, m, items, &upserts);
    if (!rc && r->ann) {
        /* the items the index lacks first */
        rc = catch_up(r->ann, &r->indexed, items, deadline, &upserts);
        if (!rc && r->indexed == items->n && !r->next && !r->build) {
            /* then the rows that moved, round robin */
            size_t looked = 0, allowed = refresh_allowance(r, items->n, t0);
            while (!rc && looked < allowed && dr_mono_s() < deadline)
                for (int k = 0; k < 1024 && !rc && looked < allowed; k++, looked++) {
                    size_t i = r->cursor++ % items->n;
                    r->cursor %= items->n;
                    if (!moved(r, items, i)) continue;
                    rc = upsert_row(r->ann, items, i);
                    upserts++;
                }
            r->refresh_credit -= (double)looked;
            stats->index_rows_checked += looked;
            /* replaced rows leave dead slots that searches still walk: past
             * a fifth of the items, a new index is built beside it */
            if (!rc && dr_ann_dead(r->ann) > dr_ann_count(r->ann) / 5 && t0 >= r->retry_at &&
                build_begin(r, m, items))
                stats->index_rebuilds++;
        }
    }
    /* the snapshot of a build: its rows are copied here, between emit
     * calls' use of the item matrix, never read by the builder from it */
    if (r->build && !r->build->started) {
        const char *why = build_copy(r, items, deadline);
        if (why) build_failed(r, "copy", why);
    }
    if (!rc && r->next) {
        rc = catch_up(r->next, &r->next_indexed, items, deadline, &upserts);
        if (!rc && r->next_indexed == items->n) { /* the rebuild has caught up: it serves */
            retire(r, r->ann);
            r->ann = r->next;
            r->indexed = r->next_indexed;
            r->next = NULL;
        }
    }
    if (rc) dr_log(DR_LOG_WARN, "emitter", "retrieval index update failed | err=\"%s\"", dr_strerror(rc));
    stats->index_items = dr_ann_count(r->ann);
    stats->index_upserts += upserts;
    bool ready = r->ann && items->n - r->indexed <= RETR_TAIL_MAX;
    if (ready) global_candidates(r, m);
    stats->index_seconds += dr_mono_s() - t0;
    return ready;
}

/* The popular, trending and (with the freshness term) freshest candidates
 * of this emit call's lists: passes over the catalog, made only when the
 * index serves. */
static void global_candidates(dr__retrieval_t *r, const dr_model_t *m) {
    float *scratch = r->lists[0].score; /* free between lists */
    r->n_popular = dr_model_popular_top(m, r->popular, scratch, r->conf.popular > 0 ? (size_t)r->conf.popular : 0);
    r->n_trend = dr_model_trend_top(m, r->trend, scratch, RETR_TREND_TOP);
    r->n_fresh = dr_model_fresh_top(m, r->fresh, scratch, RETR_FRESH_TOP);
}

/* Adds item index i to the list's candidates unless the set has it; the
 * set also holds the user's exclusions, which so never enter. */
static bool set_add(const dr__retrieval_t *r, retr_lists_t *L, int64_t i) {
    size_t s = dr_mix64((uint64_t)i) & r->set_mask;
    while (L->set[s] != -1) {
        if (L->set[s] == i) return false;
        s = (s + 1) & r->set_mask;
    }
    L->set[s] = i;
    return true;
}

static void add_candidate(const dr__retrieval_t *r, retr_lists_t *L, size_t *n, int64_t i) {
    if (*n < r->cand_cap && set_add(r, L, i)) L->cand[(*n)++] = i;
}

/* Ranks row u's list from candidates in scratch L; the co-engagement sums
 * in hop (NULL: the model's own). */
static int rank_from_candidates(dr_emitter_t *e, const dr_model_t *m, const dr_items_view_t *items,
                                dr_user_t *user, size_t u, retr_lists_t *L, dr_cooc_scratch_t *hop) {
    const dr__retrieval_t *r = e->retr;
    size_t C = (size_t)r->conf.candidates, M = (size_t)r->conf.coengaged;
    memset(L->set, 0xff, (r->set_mask + 1) * sizeof(*L->set));
    for (size_t j = 0; j < e->excl[u].n; j++) set_add(r, L, e->excl[u].idx[j]);
    size_t n = 0, found = 0;
    /* the index's candidates (as many more as the user excludes) land at
     * the end of cand, then move to the front through the set */
    size_t want = C + e->excl[u].n;
    int64_t *tail = L->cand + r->cand_cap - want;
    float query[DR_MAX_DIM + 1]; /* [u, the user's weight of p_i] */
    memcpy(query, e->U + u * (size_t)e->dim, (size_t)e->dim * sizeof(float));
    query[e->dim] = dr_model_pop_weight(m, user) / RETR_POP_SCALE;
    int err = dr_ann_search(r->ann, query, want, tail, NULL, &found);
    if (err) return err;
    for (size_t j = 0; j < found; j++) add_candidate(r, L, &n, tail[j]);
    /* L->score is free until the candidates are scored */
    dr_model_cooc_sources_in(m, user, &e->cooc[u], hop); /* once for both uses below */
    size_t held;
    size_t k = dr_model_coengagement_hold(m, &e->cooc[u], L->coengaged, L->score, M, hop, &held);
    for (size_t j = 0; j < k; j++) add_candidate(r, L, &n, L->coengaged[j]);
    for (size_t j = 0; j < r->n_trend; j++) add_candidate(r, L, &n, r->trend[j]);
    for (size_t j = 0; j < r->n_fresh; j++) add_candidate(r, L, &n, r->fresh[j]);
    for (size_t j = 0; j < r->n_popular; j++) add_candidate(r, L, &n, r->popular[j]);
    for (size_t i = r->indexed; i < items->n; i++) add_candidate(r, L, &n, (int64_t)i);
    dr_model_scores_at_held(m, user, hop, L->cand, n, L->score);
    dr_model_cooc_release(m, hop, held);
    dr_emit_topic_best_t *topics = e->explore[u] ? e->topics + u * DR_EMIT_EXPLORE_TOPICS : NULL;
    return dr_emit_select(items, L->cand, L->score, n, e->conf.topk, e->excl[u].user, topics,
                          e->out + u * (size_t)e->conf.topk, &e->out_n[u]);
}

/* One part's lists (dr__emit_split_t), as the full scan's rows are split:
 * the index is only searched meanwhile (the emit thread changes it only
 * between calls). */
static void rank_rows(void *ctx, int part, int parts) {
    dr__emit_split_t *s = ctx;
    size_t r0, r1;
    dr__emit_rows(s, part, parts, &r0, &r1);
    dr_cooc_scratch_t *hop = part == 0 ? NULL : &s->e->hop[part]; /* part 0: the caller's, the model's own */
    int err = 0;
    for (size_t u = r0; u < r1 && !err; u++)
        err = rank_from_candidates(s->e, s->m, s->items, s->users[u], u, &s->e->retr->lists[part], hop);
    s->err[part] = err;
}

int dr__retrieval_score(dr_emitter_t *e, const dr_model_t *m, const dr_items_view_t *items,
                        dr_user_t *const *users, size_t B) {
    dr__emit_split_t split = {e, m, items, users, B, {0}};
    int parts = dr__emit_parts(e, m, B, RETR_ROWS_PER_THREAD_MIN);
    if (parts > e->retr->n_lists) parts = e->retr->n_lists;
    dr_workers_run(e->workers, rank_rows, &split, parts);
    for (int t = 0; t < parts; t++)
        if (split.err[t]) return split.err[t]; /* the full scan serves the batch */
    e->stats.retrieved_lists += B;
    return 0;
}
