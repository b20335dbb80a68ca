/* dr_workers.h - a small fork-join pool: a caller splits one piece of work
 * into parts and runs them at once on its own thread and the pool's, then
 * goes on when all are done. For work that must finish before the caller's
 * next step (an emit batch's lists), where a queue of jobs would only add
 * a wait. The pool's threads sleep on a condition variable between calls:
 * an idle pool takes no CPU from the loop thread or librdkafka's. */
#ifndef DR_WORKERS_H
#define DR_WORKERS_H

typedef struct dr_workers dr_workers_t;

/* Part `part` of `parts` of the work described by ctx. */
typedef void (*dr_work_fn)(void *ctx, int part, int parts);

/* A pool that runs calls on `threads` threads in all, the caller's
 * included (threads - 1 are started). threads <= 1: *out = NULL, a valid
 * pool that runs everything on the caller. 0 or DR_ENOMEM / DR_EIO. */
int dr_workers_new(dr_workers_t **out, int threads);
/* The threads a call may use, the caller's included (1 for NULL). */
int dr_workers_threads(const dr_workers_t *w);
/* Runs fn(ctx, 0..parts-1) and returns when every part has returned; part
 * 0 on the caller. parts is capped at dr_workers_threads(w). One caller at
 * a time: the pool is not to be shared between threads. */
void dr_workers_run(dr_workers_t *w, dr_work_fn fn, void *ctx, int parts);
/* Stops and joins the threads (NULL: nothing). */
void dr_workers_free(dr_workers_t *w);

#endif /* DR_WORKERS_H */
