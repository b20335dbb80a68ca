/* workers.c - the fork-join pool of dr_workers.h: each call bumps a
 * generation number under the lock and wakes the threads; thread t runs
 * part t if the call has one, and the last to finish wakes the caller. */
#include "dr_workers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "dr_err.h"

typedef struct worker {
    dr_workers_t *pool;
    int part; /* the part this thread runs: 1 .. threads - 1 */
    pthread_t th;
} worker_t;

struct dr_workers {
    pthread_mutex_t mu;
    pthread_cond_t go;   /* a new call, or stop */
    pthread_cond_t done; /* the last part of a call finished */
    uint64_t gen;        /* calls so far */
    int parts, pending;  /* the current call's parts; parts still running on the pool */
    dr_work_fn fn;
    void *ctx;
    bool stop;
    int threads, started;
    worker_t *w;
};

static void *worker_main(void *arg) {
    worker_t *me = arg;
    dr_workers_t *p = me->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        if (me->part >= p->parts) continue; /* this call has fewer parts */
        dr_work_fn fn = p->fn;
        void *ctx = p->ctx;
        int parts = p->parts;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, me->part, parts);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int dr_workers_new(dr_workers_t **out, int threads) {
    *out = NULL;
    if (threads <= 1) return 0;
    dr_workers_t *p = calloc(1, sizeof(*p));
    if (!p) return DR_ENOMEM;
    p->threads = threads;
    p->w = calloc((size_t)threads, sizeof(*p->w));
    if (!p->w) {
        free(p);
        return DR_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int t = 1; t < threads; t++) {
        p->w[t] = (worker_t){p, t, 0};
        if (pthread_create(&p->w[t].th, NULL, worker_main, &p->w[t]) != 0) {
            dr_workers_free(p);
            return DR_EIO;
        }
        p->started = t;
    }
    *out = p;
    return 0;
}

int dr_workers_threads(const dr_workers_t *w) { return w ? w->threads : 1; }

void dr_workers_run(dr_workers_t *w, dr_work_fn fn, void *ctx, int parts) {
    int most = dr_workers_threads(w);
    if (parts > most) parts = most;
    if (parts <= 1) {
        if (parts == 1) fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->fn = fn;
    w->ctx = ctx;
    w->parts = parts;
    w->pending = parts - 1;
    w->gen++;
    pthread_cond_broadcast(&w->go);
    pthread_mutex_unlock(&w->mu);
    fn(ctx, 0, parts);
    pthread_mutex_lock(&w->mu);
    while (w->pending > 0) pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

void dr_workers_free(dr_workers_t *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->go);
    pthread_mutex_unlock(&w->mu);
    for (int t = 1; t <= w->started; t++) pthread_join(w->w[t].th, NULL);
    pthread_cond_destroy(&w->done);
    pthread_cond_destroy(&w->go);
    pthread_mutex_destroy(&w->mu);
    free(w->w);
    free(w);
}
