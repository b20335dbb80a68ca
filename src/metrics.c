/* metrics.c - /metrics, /healthz and /readyz on the loop (see dr_metrics.h):
 * uv_tcp accepts, http-parser reads the request line, one response, close.
 * Connections are bounded in number and in time, so that idle or half-sent
 * ones can neither exhaust the descriptor table (shared with RocksDB and
 * librdkafka) nor keep /healthz from answering. */
#include "dr_metrics.h"

#include <http_parser.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dr_err.h"
#include "dr_ingest.h"
#include "dr_log.h"

#define MAX_URL 256
#define MAX_REQUEST 8192 /* headers beyond this are refused: nothing we serve needs them */

/* At most this share of the process's descriptor limit goes to metrics
 * connections, whatever metrics.max.connections says: the rest is for
 * RocksDB's files and librdkafka's sockets. */
#define FD_LIMIT_SHARE 4

typedef struct conn conn_t;

struct dr_metrics {
    uv_tcp_t server;
    uv_timer_t deadlines; /* fires at the oldest connection's deadline */
    dr_pipeline_t *p;
    int64_t ready_max_lag;
    int port;
    int max_connections, timeout_ms;
    /* open connections, oldest first: deadlines come in the same order, so
     * the head is the next to expire and the first to be evicted */
    conn_t *oldest, *newest;
    int n_open;
    int handles_open; /* server, timer, connections: m is freed after the last closes */
    bool closing;
    uint64_t accepted, evicted, timed_out;
};

struct conn {
    uv_tcp_t tcp;
    dr_metrics_t *m;
    conn_t *prev, *next; /* in m's list while open */
    uint64_t deadline_ms; /* on the loop's clock */
    http_parser parser;
    char url[MAX_URL];
    size_t url_len, received;
    bool responded;
    uv_write_t write;
    char *response;
};

/* ---- the exposition --------------------------------------------------------- */

static void counter(FILE *f, const char *name, const char *help, double v) {
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %.17g\n", name, help, name, name, v);
}

static void gauge(FILE *f, const char *name, const char *help, double v) {
    fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

/* Peak resident set size (VmHWM), from /proc/self/status. */
static double peak_rss_bytes(void) {
    char line[256];
    double kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024.0;
}

static double rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static void partitions(FILE *f, dr_pipeline_t *p) {
    int n = 0;
    const dr_partition_stats_t *ps = dr_pipeline_partitions(p, &n);
    fprintf(f, "# HELP driftrec_partition_consumed_total Records taken from each partition of the events topic.\n"
               "# TYPE driftrec_partition_consumed_total counter\n");
    for (int i = 0; i < n; i++)
        if (ps[i].consumed || ps[i].assigned)
            fprintf(f, "driftrec_partition_consumed_total{partition=\"%d\"} %" PRIu64 "\n", i, ps[i].consumed);
    fprintf(f, "# HELP driftrec_partition_lag Records behind the log end, per assigned partition.\n"
               "# TYPE driftrec_partition_lag gauge\n");
    for (int i = 0; i < n; i++) {
        if (!ps[i].assigned || ps[i].high_watermark < 0) continue;
        int64_t next = ps[i].next_offset >= 0 ? ps[i].next_offset : 0;
        fprintf(f, "driftrec_partition_lag{partition=\"%d\"} %" PRId64 "\n", i,
                ps[i].high_watermark > next ? ps[i].high_watermark - next : 0);
    }
}

static void histogram(FILE *f, const char *name, const char *help, const dr_histogram_t *h) {
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < DR_HIST_BUCKETS; b++) {
        cum += h->bucket[b];
        fprintf(f, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, dr_hist_bounds[b], cum);
    }
    cum += h->bucket[DR_HIST_BUCKETS];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.17g\n%s_count %" PRIu64 "\n", name, cum,
            name, h->sum, name, h->count);
}

/* The endpoint's own connection counters (only where it serves). */
static void endpoint(FILE *f, const dr_metrics_t *m) {
    counter(f, "driftrec_metrics_connections_accepted_total", "Connections accepted by the metrics endpoint.", (double)m->accepted);
    counter(f, "driftrec_metrics_connections_evicted_total", "Metrics connections closed unanswered to make room for a new one at metrics.max.connections.", (double)m->evicted);
    counter(f, "driftrec_metrics_connections_timed_out_total", "Metrics connections closed because the request and its response took longer than metrics.timeout.ms.", (double)m->timed_out);
    gauge(f, "driftrec_metrics_connections_open", "Connections open on the metrics endpoint.", m->n_open);
    gauge(f, "driftrec_metrics_connections_max", "Most connections the metrics endpoint keeps open (metrics.max.connections, bounded by the descriptor limit).", m->max_connections);
}

static char *render(dr_pipeline_t *p, const dr_metrics_t *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    dr_pipeline_stats_t s;
    dr_pipeline_stats(p, &s);
    counter(f, "driftrec_records_consumed_total", "Records taken from the events topic.", (double)s.consumed);
    counter(f, "driftrec_events_learned_total", "Valid events applied to the model.", (double)s.events);
    fprintf(f, "# HELP driftrec_dead_letters_total Records sent to the dead-letter topic, by reason class.\n"
               "# TYPE driftrec_dead_letters_total counter\n");
    for (int c = 0; c < DR_DLQ__COUNT; c++)
        fprintf(f, "driftrec_dead_letters_total{reason=\"%s\"} %" PRIu64 "\n", dr_ingest_dlq_reason_name(c),
                s.dlq_by_reason[c]);
    counter(f, "driftrec_lists_emitted_total", "Recommendation lists produced.", (double)s.lists_emitted);
    counter(f, "driftrec_lists_retrieved_total", "Lists ranked from the retrieval index's candidates rather than the whole catalog (emit.retrieval.min.items).", (double)s.lists_retrieved);
    gauge(f, "driftrec_retrieval_index_items", "Items in the retrieval index (0: the catalog is below emit.retrieval.min.items).", (double)s.retrieval_index_items);
    counter(f, "driftrec_retrieval_index_upserts_total", "Items inserted into the retrieval index, or re-inserted after their vector changed.", (double)s.retrieval_index_upserts);
    counter(f, "driftrec_retrieval_rows_checked_total", "Item rows the retrieval index's refresh pass compared with the index's copy, to re-insert those that moved (emit.retrieval.refresh.pass.ms).", (double)s.retrieval_rows_checked);
    counter(f, "driftrec_retrieval_audited_lists_total", "Lists ranked from the retrieval index's candidates that were ranked again by the full scan to measure the path's recall (emit.retrieval.audit.every).", (double)s.retrieval_audited_lists);
    counter(f, "driftrec_retrieval_audit_hits_total", "Items of those exact lists that the published lists held: recall = rate of this / rate of driftrec_retrieval_audit_slots_total.", (double)s.retrieval_audit_hits);
    counter(f, "driftrec_retrieval_audit_slots_total", "Items of the exact lists the audit ranked (emit.retrieval.audit.every).", (double)s.retrieval_audit_slots);
    counter(f, "driftrec_lists_delivered_total", "Recommendation lists acknowledged by the broker.", (double)s.lists_delivered);
    counter(f, "driftrec_acks_without_offset_total", "Deliveries the broker acknowledged without an offset: a retried batch it already had, or one acknowledged by a later batch's success.", (double)s.acks_without_offset);
    counter(f, "driftrec_delivery_errors_total", "Failed deliveries (each produced again: a dead letter as it was, a list as the user's current one).", (double)s.delivery_errors);
    counter(f, "driftrec_lists_reissued_total", "Lists produced again as the user's current list after a failed delivery.", (double)s.lists_reissued);
    counter(f, "driftrec_commits_total", "State commits written to RocksDB.", (double)s.commits);
    counter(f, "driftrec_commit_failures_total", "State commits that failed.", (double)s.commit_failures);
    counter(f, "driftrec_commit_build_seconds_total", "Time the loop thread spent building commits (encoding the changed users and items, the changelog records), steps ahead of them included; the write itself runs on the thread pool.", s.commit_build_seconds);
    gauge(f, "driftrec_commit_build_max_seconds", "The longest commit build (or step ahead of one) so far: events and lists wait that long behind it.", s.commit_build_max_seconds);
    counter(f, "driftrec_commit_steps_total", "Steps that encoded changed users ahead of their commit (state.commit.step.users), while the input was kept up with.", (double)s.commit_steps);
    counter(f, "driftrec_erasures_total", "Users erased on request.", (double)s.erasures);
    counter(f, "driftrec_erase_requests_total", "Erase requests consumed (not counted in driftrec_events_learned_total).", (double)s.erase_requests);
    counter(f, "driftrec_partitions_restored_total", "Partitions whose users were brought up to the changelog on assignment (docs/SCALING.md).", (double)s.partitions_restored);
    counter(f, "driftrec_users_restored_total", "User records and tombstones applied from the changelog.", (double)s.users_restored);
    counter(f, "driftrec_changelog_records_read_total", "Changelog messages read on assignment.", (double)s.restore_records);
    counter(f, "driftrec_changelog_fenced_total", "Changelog messages read on assignment and ignored: a former owner's, written after it lost the partition (fencing).", (double)s.changelog_fenced);
    counter(f, "driftrec_changelog_foreign_writes_total", "Times another writer was found in a changelog partition this instance owns (its users are then written again).", (double)s.changelog_foreign);
    counter(f, "driftrec_restore_seconds_total", "Time spent reading the changelog on assignment.", s.restore_seconds);
    gauge(f, "driftrec_standby_partitions", "Partitions of other instances this one keeps warm from their changelog (state.standby.interval.ms).", (double)s.standby_partitions);
    counter(f, "driftrec_standby_records_read_total", "Changelog messages read to keep other instances' partitions warm.", (double)s.standby_records);
    counter(f, "driftrec_standby_users_applied_total", "User records and tombstones applied to the warm copies.", (double)s.standby_users);
    counter(f, "driftrec_standby_fenced_total", "Changelog messages of a superseded owner the warm copies ignored.", (double)s.standby_fenced);
    counter(f, "driftrec_standby_failures_total", "Reads of a partition kept warm that failed (tried again at the next round).", (double)s.standby_failures);
    gauge(f, "driftrec_standby_behind_messages", "Changelog messages past the last commit marker the warm copies hold (an owner's commit under way).", (double)s.standby_behind);
    counter(f, "driftrec_standby_seconds_total", "Time spent keeping other instances' partitions warm.", s.standby_seconds);
    counter(f, "driftrec_model_items_published_total", "Item changes this instance shared through topic.model.", (double)s.model_items_published);
    gauge(f, "driftrec_model_items_pending", "Item changes not shared through topic.model yet (shared within model.sync.interval.ms).", (double)s.model_items_pending);
    counter(f, "driftrec_model_items_imported_total", "Item changes taken from the other instances.", (double)s.model_items_imported);
    counter(f, "driftrec_model_messages_rejected_total", "Model messages refused (malformed, or of another learner.dim).", (double)s.model_rejected);
    counter(f, "driftrec_model_messages_recovered_total", "This instance's model messages published by a process that died before its commit stored them, applied at the next start.", (double)s.model_own_recovered);
    counter(f, "driftrec_model_messages_lost_total", "Model messages this instance could not produce or deliver (their changes stay local).", (double)s.model_lost);
    counter(f, "driftrec_offset_reports_stale_total", "librdkafka's reports of a lost events position that a later assignment or record had overtaken: ignored, so that no record is read twice.", (double)s.offset_reports_stale);
    counter(f, "driftrec_offset_resets_total", "Stored or committed positions found out of the events log's range (ingest.offset.reset applied).", (double)s.offset_resets);
    counter(f, "driftrec_events_skipped_total", "Events known to be skipped by those resets (deleted by retention before they were read, or jumped over by latest).", (double)s.events_skipped);
    counter(f, "driftrec_withdrawn_list_refreshes_total", "Lists recomputed because a blocked or deleted item was in them.", (double)s.withdraw_refreshes);
    gauge(f, "driftrec_withdraw_queued_users", "Stored users found holding a blocked or deleted item in their last list, waiting for a new one (emit.withdraw.users.per.tick a tick).", (double)s.withdraw_queued);
    gauge(f, "driftrec_withdraw_scanning", "1 while a scan of the stored users for blocked or deleted items runs (on the thread pool).", s.withdraw_scanning ? 1.0 : 0.0);
    counter(f, "driftrec_withdraw_rechecked_partitions_total", "Partitions taken with their stored lists unchecked (a withdrawal a crash or a move interrupted, or lists another owner published), scanned for every recently withdrawn or blocked item.", (double)s.withdraw_rechecks);
    gauge(f, "driftrec_withdraw_unchecked_partitions", "Owned partitions whose stored lists may still hold a withdrawn item: 0 once every withdrawal was served.", (double)s.withdraw_unchecked);
    counter(f, "driftrec_items_expired_total", "Items that went past learner.item.ttl.ms and left the lists.", (double)s.items_expired);
    counter(f, "driftrec_items_removed_total", "Items removed from the model and the store: past the grace period after their TTL, or by a catalog tombstone.", (double)s.items_removed);
    gauge(f, "driftrec_items", "Items in the model at the last commit.", (double)s.items_live);
    counter(f, "driftrec_drift_detections_total", "Per-user ADWIN detections.", (double)s.drift_detections);
    counter(f, "driftrec_drift_readaptations_total", "Detections followed by re-adaptation.", (double)s.drift_readapted);
    fprintf(f, "# HELP driftrec_drift_cuts_total Per-user ADWIN cuts by what followed: readapted (drift arm, the user's signal rose: re-adapted, list published with drift = true), improving (the signal fell: no response), control (control arm: no response), small (the kept window's mean and the dropped part's differ by less than drift.min.change: not drift, no response).\n"
               "# TYPE driftrec_drift_cuts_total counter\n");
    for (int c = 0; c < DR_CUT__COUNT; c++)
        fprintf(f, "driftrec_drift_cuts_total{reason=\"%s\"} %" PRIu64 "\n", dr_cut_reason_names[c], s.drift_cuts[c]);
    counter(f, "driftrec_global_drifts_total", "Detections of the global ADWIN.", (double)s.global_drifts);
    fprintf(f, "# HELP driftrec_global_drift_cuts_total Global ADWIN cuts by what followed: worse (the population's signal rose by drift.global.min.rise or more: the trend term starts), small (a smaller rise: nothing), improving (nothing).\n"
               "# TYPE driftrec_global_drift_cuts_total counter\n"
               "driftrec_global_drift_cuts_total{direction=\"worse\"} %" PRIu64 "\n"
               "driftrec_global_drift_cuts_total{direction=\"small\"} %" PRIu64 "\n"
               "driftrec_global_drift_cuts_total{direction=\"improving\"} %" PRIu64 "\n",
            s.global_cuts_worse, s.global_cuts_small, s.global_cuts_improving);
    counter(f, "driftrec_cache_hits_total", "Hot-user cache hits.", (double)s.cache_hits);
    counter(f, "driftrec_cache_misses_total", "Hot-user cache misses.", (double)s.cache_misses);
    counter(f, "driftrec_pauses_total", "Times consumption was paused for backpressure.", (double)s.pauses);
    gauge(f, "driftrec_consumer_lag", "Records behind the log end over assigned partitions.", (double)s.lag);
    gauge(f, "driftrec_assigned_partitions", "Partitions of the events topic assigned here.", s.assigned_partitions);
    gauge(f, "driftrec_cache_users", "Users held in the hot cache.", (double)s.users_cached);
    gauge(f, "driftrec_paused", "1 while consumption is paused.", s.paused);
    gauge(f, "driftrec_failed", "1 after a fatal error stopped consumption.", s.failed);
    uint64_t live = 0, pending = 0;
    dr_pipeline_state_sizes(p, &live, &pending);
    gauge(f, "driftrec_rocksdb_live_bytes", "RocksDB's estimate of live data.", (double)live);
    gauge(f, "driftrec_rocksdb_pending_compaction_bytes", "RocksDB's estimate of bytes awaiting compaction.", (double)pending);
    uint64_t stopped = 0, delayed = 0;
    dr_pipeline_write_stall(p, &stopped, &delayed);
    gauge(f, "driftrec_rocksdb_write_stopped", "1 while RocksDB stops writes (a write stall).", (double)stopped);
    gauge(f, "driftrec_rocksdb_delayed_write_rate", "Rate RocksDB slows writes to while stalling (bytes/s, 0: none).", (double)delayed);
    gauge(f, "driftrec_process_resident_bytes", "Resident set size of the process.", rss_bytes());
    gauge(f, "driftrec_process_peak_resident_bytes", "Highest resident set size so far.", peak_rss_bytes());
    partitions(f, p);
    histogram(f, "driftrec_freshness_seconds",
              "From an event changing a user to its new list being produced.", &s.freshness);
    histogram(f, "driftrec_learn_batch_seconds",
              "Applying one batch from the consumer queue (decode, learn, bookkeeping).", &s.learn);
    if (m) endpoint(f, m);
    if (fclose(f) != 0) { free(buf); return NULL; }
    return buf;
}

char *dr_metrics_render(dr_pipeline_t *p) { return render(p, NULL); }

/* ---- HTTP --------------------------------------------------------------------- */

/* One of m's handles has closed; the last one frees m. */
static void release(dr_metrics_t *m) {
    if (--m->handles_open == 0) free(m);
}

static void on_handle_closed(uv_handle_t *h) { release(h->data); }

static void on_conn_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    dr_metrics_t *m = c->m;
    free(c->response);
    free(c);
    release(m);
}

/* Closes a connection now (its descriptor is released at once; a pending
 * write is cancelled). Safe to call again while it is closing. */
static void conn_close(conn_t *c) {
    dr_metrics_t *m = c->m;
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (c->prev) c->prev->next = c->next;
    else m->oldest = c->next;
    if (c->next) c->next->prev = c->prev;
    else m->newest = c->prev;
    c->prev = c->next = NULL;
    m->n_open--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    /* after dr_metrics_close, the timer goes once the last connection has */
    if (m->closing && !m->oldest && !uv_is_closing((uv_handle_t *)&m->deadlines))
        uv_close((uv_handle_t *)&m->deadlines, on_handle_closed);
}

/* Closes the connections whose deadline has passed and sets the timer to
 * the next one. */
static void on_deadline(uv_timer_t *t) {
    dr_metrics_t *m = t->data;
    uint64_t now = uv_now(t->loop);
    while (m->oldest && m->oldest->deadline_ms <= now) {
        m->timed_out++;
        conn_close(m->oldest);
    }
    if (m->oldest && !uv_is_closing((uv_handle_t *)t))
        uv_timer_start(t, on_deadline, m->oldest->deadline_ms - now, 0);
}

static void on_written(uv_write_t *w, int status) {
    (void)status;
    conn_close(w->data);
}

static void respond(conn_t *c, int code, const char *type, const char *body) {
    const char *reason = code == 200 ? "OK" : code == 404 ? "Not Found" : code == 503 ? "Service Unavailable" : "Bad Request";
    size_t n = strlen(body) + 256;
    c->response = malloc(n);
    if (!c->response) { conn_close(c); return; }
    int len = snprintf(c->response, n, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s", code, reason, type, strlen(body), body);
    uv_buf_t b = uv_buf_init(c->response, (unsigned)len);
    c->write.data = c;
    c->responded = true;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) conn_close(c);
}

static void route(conn_t *c) {
    dr_pipeline_t *p = c->m->p;
    if (c->parser.method != HTTP_GET) { respond(c, 400, "text/plain", "only GET is served\n"); return; }
    if (!strcmp(c->url, "/metrics")) {
        char *text = render(p, c->m);
        respond(c, text ? 200 : 503, "text/plain; version=0.0.4", text ? text : "render failed\n");
        free(text);
    } else if (!strcmp(c->url, "/healthz")) {
        dr_pipeline_stats_t s;
        dr_pipeline_stats(p, &s);
        respond(c, s.failed ? 503 : 200, "text/plain", s.failed ? "failed\n" : "ok\n");
    } else if (!strcmp(c->url, "/readyz")) {
        dr_pipeline_stats_t s;
        dr_pipeline_stats(p, &s);
        bool ready = !s.failed && s.assigned_partitions > 0 && s.lag <= c->m->ready_max_lag;
        char body[160];
        snprintf(body, sizeof(body), "%s: partitions=%d lag=%" PRId64 " max_lag=%" PRId64 "\n",
                 ready ? "ready" : "not ready", s.assigned_partitions, s.lag, c->m->ready_max_lag);
        respond(c, ready ? 200 : 503, "text/plain", body);
    } else {
        respond(c, 404, "text/plain", "try /metrics, /healthz or /readyz\n");
    }
}

static int on_url(http_parser *hp, const char *at, size_t len) {
    conn_t *c = hp->data;
    if (c->url_len + len >= MAX_URL) return 1;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    char *q = strchr(c->url, '?');
    if (q) *q = '\0';
    return 0;
}

static int on_complete(http_parser *hp) {
    route(hp->data);
    return 1; /* one request per connection */
}

static const http_parser_settings settings = {.on_url = on_url, .on_message_complete = on_complete};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    conn_t *c = s->data;
    if (n > 0 && !c->responded) {
        c->received += (size_t)n;
        size_t used = http_parser_execute(&c->parser, &settings, buf->base, (size_t)n);
        if (!c->responded && (c->parser.http_errno != HPE_OK && c->parser.http_errno != HPE_CB_message_complete))
            respond(c, 400, "text/plain", "bad request\n");
        else if (!c->responded && (used < (size_t)n || c->received > MAX_REQUEST))
            respond(c, 400, "text/plain", "request too large\n");
    } else if (n < 0 && !c->responded) {
        conn_close(c);
    }
    free(buf->base);
}

/* At the cap, the oldest connection is closed to make room for the new one,
 * rather than refusing the new one or leaving it in the listen backlog until
 * a slot frees: a health probe sends its request as soon as it connects and
 * is answered as soon as that is read, so it is among the newest, while the
 * connections that sit idle or half-sent (the ones that fill the cap) are
 * the oldest. Refusing the newest, or not accepting, would fail or stall
 * every probe until the idle ones reach their deadline. (A probe can still
 * be evicted if more than the cap connect between its accept and its
 * request: a flood that fast is beyond what a cap can absorb.) */
static void on_connection(uv_stream_t *server, int status) {
    dr_metrics_t *m = server->data;
    if (status < 0 || m->closing) return;
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->m = m;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    m->handles_open++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    /* link first, so that every path out goes through conn_close */
    c->deadline_ms = uv_now(server->loop) + (uint64_t)m->timeout_ms;
    c->prev = m->newest;
    if (m->newest) m->newest->next = c;
    else m->oldest = c;
    m->newest = c;
    m->n_open++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) { conn_close(c); return; }
    m->accepted++;
    if (m->n_open > m->max_connections) {
        m->evicted++;
        conn_close(m->oldest);
    }
    if (!uv_is_active((uv_handle_t *)&m->deadlines))
        uv_timer_start(&m->deadlines, on_deadline, (uint64_t)m->timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) conn_close(c);
}

/* metrics.max.connections, bounded by FD_LIMIT_SHARE of RLIMIT_NOFILE. */
static int connection_cap(int wanted) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t share = rl.rlim_cur / FD_LIMIT_SHARE;
        if (share < 1) share = 1;
        if ((rlim_t)wanted > share) {
            dr_log(DR_LOG_WARN, "metrics", "connection cap lowered to a quarter of the descriptor limit"
                   " | metrics.max.connections=%d nofile=%llu cap=%llu", wanted,
                   (unsigned long long)rl.rlim_cur, (unsigned long long)share);
            return (int)share;
        }
    }
    return wanted;
}

void dr_metrics_set_limits(dr_metrics_t *m, int max_connections, int timeout_ms) {
    if (!m) return;
    m->max_connections = connection_cap(max_connections > 0 ? max_connections : DR_METRICS_MAX_CONNECTIONS);
    m->timeout_ms = timeout_ms > 0 ? timeout_ms : DR_METRICS_TIMEOUT_MS;
}

int dr_metrics_new(dr_metrics_t **out, uv_loop_t *loop, const char *listen, dr_pipeline_t *p,
                   int64_t ready_max_lag, char *errstr, size_t n) {
    char host[64];
    int port;
    struct sockaddr_in addr;
    *out = NULL;
    if (sscanf(listen, "%63[^:]:%d", host, &port) != 2 || port < 0 || port > 65535 ||
        uv_ip4_addr(host, port, &addr) != 0) {
        snprintf(errstr, n, "metrics.listen: expected IPV4:PORT, got \"%s\"", listen);
        return DR_ECONFIG;
    }
    dr_metrics_t *m = calloc(1, sizeof(*m));
    if (!m) return DR_ENOMEM;
    m->p = p;
    m->ready_max_lag = ready_max_lag;
    dr_metrics_set_limits(m, DR_METRICS_MAX_CONNECTIONS, DR_METRICS_TIMEOUT_MS);
    uv_tcp_init(loop, &m->server);
    uv_timer_init(loop, &m->deadlines);
    m->server.data = m->deadlines.data = m;
    m->handles_open = 2;
    int rc = uv_tcp_bind(&m->server, (const struct sockaddr *)&addr, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&m->server, 64, on_connection);
    if (rc) {
        snprintf(errstr, n, "metrics.listen %s: %s", listen, uv_strerror(rc));
        m->closing = true;
        uv_close((uv_handle_t *)&m->server, on_handle_closed);
        uv_close((uv_handle_t *)&m->deadlines, on_handle_closed);
        return DR_EIO;
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&m->server, (struct sockaddr *)&bound, &len);
    m->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    dr_log(DR_LOG_INFO, "metrics", "serving /metrics, /healthz, /readyz | listen=%s:%d", host, m->port);
    *out = m;
    return 0;
}

int dr_metrics_port(const dr_metrics_t *m) { return m->port; }

void dr_metrics_close(dr_metrics_t *m) {
    if (!m || m->closing) return;
    m->closing = true;
    uv_close((uv_handle_t *)&m->server, on_handle_closed);
    /* a stop does not wait for clients that have not sent a whole request;
     * answers being written finish (or reach their deadline) */
    for (conn_t *c = m->oldest, *next; c; c = next) {
        next = c->next;
        if (!c->responded) conn_close(c);
    }
    if (!m->oldest && !uv_is_closing((uv_handle_t *)&m->deadlines))
        uv_close((uv_handle_t *)&m->deadlines, on_handle_closed);
}
