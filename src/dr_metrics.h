/* dr_metrics.h - the operations endpoint on the pipeline's libuv loop:
 * GET /metrics (Prometheus text format), /healthz (alive) and /readyz
 * (partitions assigned, lag under a bound). Requests are parsed with
 * http-parser (Debian's libhttp-parser); one response per connection.
 * Listens on 127.0.0.1 unless configured otherwise. Connections are capped
 * in number and in time (metrics.max.connections, metrics.timeout.ms). */
#ifndef DR_METRICS_H
#define DR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dr_pipeline.h"

typedef struct dr_metrics dr_metrics_t;

/* Defaults of metrics.max.connections and metrics.timeout.ms. */
#define DR_METRICS_MAX_CONNECTIONS 64
#define DR_METRICS_TIMEOUT_MS 5000

/* Binds `listen` ("HOST:PORT", an IPv4 literal; port 0 picks a free one)
 * and serves the pipeline's counters. The pipeline is borrowed. Starts
 * with the default limits (see dr_metrics_set_limits). */
int dr_metrics_new(dr_metrics_t **out, uv_loop_t *loop, const char *listen, dr_pipeline_t *p,
                   int64_t ready_max_lag, char *errstr, size_t errstr_size);
/* Bounds the connections: at most max_connections open (and never more
 * than a quarter of RLIMIT_NOFILE, which RocksDB and librdkafka share; at
 * the cap the oldest is closed to make room), each closed timeout_ms after
 * it was accepted whatever it is doing. Values <= 0 mean the defaults.
 * Call it before the loop runs: connections already open keep the
 * deadline they were given. NULL ok. */
void dr_metrics_set_limits(dr_metrics_t *m, int max_connections, int timeout_ms);
/* The port actually bound. */
int dr_metrics_port(const dr_metrics_t *m);
/* Stops listening and closes the connections still waiting for a request;
 * answers being written finish (within their deadline); memory is freed
 * once the loop has closed every handle. NULL ok. */
void dr_metrics_close(dr_metrics_t *m);
/* Writes the Prometheus text exposition of the pipeline into a malloc'd
 * string (for the endpoint and for tests). */
char *dr_metrics_render(dr_pipeline_t *p);

#endif /* DR_METRICS_H */
