/* config.c - the settings table: one row per key with type, target field,
 * bounds, default and doc, so parsing, validation, defaults and the
 * generated ops/CONFIG.md all come from the same place. */
#include "dr_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dr_err.h"
#include "dr_ingest.h"

typedef enum { T_INT, T_FLOAT, T_BOOL, T_STR, T_I64, T_DOUBLE } conf_type_t;

typedef struct conf_row {
    const char *key;
    conf_type_t type;
    size_t offset;
    size_t size;        /* T_STR: buffer size */
    double min, max;
    const char *def;
    const char *choices; /* T_STR: "a|b" or NULL */
    const char *doc;
} conf_row_t;

#define F(field) offsetof(dr_config_t, field)
#define S(field) offsetof(dr_config_t, field), sizeof(((dr_config_t *)0)->field)
#define W(t) offsetof(dr_config_t, learner.weight[t]), 0

static const conf_row_t rows[] = {
    {"topic.events", T_STR, S(topic_events), 0, 0, "driftrec.events", NULL, "Topic of UserEvent records (keyed by user)."},
    {"topic.recommendations", T_STR, S(topic_recs), 0, 0, "driftrec.recommendations", NULL, "Topic the lists are published to, keyed by user_id (make it compacted)."},
    {"topic.dlq", T_STR, S(topic_dlq), 0, 0, "", NULL, "Dead-letter topic for records that fail decoding or validation; empty means `<topic.events>.dlq`."},
    {"topic.catalog", T_STR, S(topic_catalog), 0, 0, "", NULL, "Topic of Item catalog records (blocked/deleted items, embeddings); empty: none."},
    {"topic.catalog.first.ms", T_INT, F(catalog_first_ms), 0, 0, 86400000, "120000", NULL, "At start, events wait until the catalog topic has been read up to where it ended then (as Kafka Streams restores a global table before processing), at most this long: every event then meets its item's catalog record (content, topic, publish time, blocked or deleted), and a new deployment's first lists know the whole catalog. After a restart only the records since the last commit are read. Past the limit events are read beside the rest of the catalog, with a warning. 0: no wait (docs/CATALOG.md)."},
    {"topic.changelog", T_STR, S(topic_changelog), 0, 0, "", NULL, "Compacted topic with the same partition count as topic.events: each commit writes the changed user records of a partition (tombstones for erasures) and a commit marker to the same partition number, so that another instance taking the partition restores its users (docs/SCALING.md). Empty means `<topic.events>.changelog`; `-` turns it off (one instance only)."},
    {"topic.model", T_STR, S(topic_model), 0, 0, "", NULL, "Topic through which the instances of a group share what they learn of the items and the prior: each publishes the sparse changes it made with its first commit after model.sync.interval.ms and adds the others'; a new instance reads it from the beginning (docs/SCALING.md). Any partition count, delete policy with a retention covering the life of the model. Empty means `<topic.events>.model`; `-` turns sharing off."},
    {"model.sync.interval.ms", T_INT, F(model_sync_interval_ms), 0, 10, 3600000, "1000", NULL, "How often an instance publishes its item changes to topic.model, with a commit (at most as often as state.commit.interval.ms); an instance's items lag the others' learning by about this much plus the commit interval."},
    {"group.id", T_STR, S(group_id), 0, 0, "driftrec", NULL, "Kafka consumer group; instances in one group split the partitions."},
    {"state.dir", T_STR, S(state_dir), 0, 0, "driftrec-state", NULL, "RocksDB directory holding users, items, globals and consumed offsets."},
    {"state.commit.interval.ms", T_INT, F(commit_interval_ms), 0, 10, 600000, "1000", NULL, "How often dirty state and offsets are written in one atomic batch."},
    {"state.commit.step.users", T_INT, F(commit_step_users), 0, 0, 1000000, "512", NULL, "While the pipeline keeps up with its input (or ingest.max.rate holds it back), the users changed since the last commit are encoded into the next one (their changelog records sent) this many at a time between events, so that the commit itself has only the rest to do: the loop thread then stops for one step at a time rather than for the whole commit, and lists wait less behind it. A user changed again before the commit is encoded again. 0: every user at commit time (the loop stops for all of them at once)."},
    {"state.cache.users", T_INT, F(cache_users), 0, 1, 100000000, "200000", NULL, "Hot users kept in memory (clean ones beyond this are evicted)."},
    {"state.block.cache.mb", T_INT, F(block_cache_mb), 0, 1, 65536, "256", NULL, "RocksDB block cache size."},
    {"state.write.buffer.mb", T_INT, F(write_buffer_mb), 0, 1, 4096, "64", NULL, "RocksDB memtable size: writes gather in memory up to this much before a flush writes them out as a table file (the users' and the items' column families each keep up to two memtables, so up to four times this in memory). Larger means fewer, larger flushes; a crash replays up to this much of the write-ahead log at the next start."},
    {"state.compression", T_STR, S(state_compression), 0, 0, "lz4", "none|snappy|lz4|zstd", "Compression of RocksDB's table files above the last level: data rewritten soon by compactions, so a fast codec. Changing it between starts is safe: each file keeps its own, new files take the new one (docs/BENCHMARKS.md, \"RocksDB's compression and memtables\")."},
    {"state.compression.bottommost", T_STR, S(state_compression_bottommost), 0, 0, "zstd", "none|snappy|lz4|zstd", "Compression of the last level, which holds nearly every live record: a dense codec, since it is written once per compaction and read on every cache miss."},
    {"state.min.free.mb", T_INT, F(state_min_free_mb), 0, 0, 1048576, "256", NULL, "Free space the state filesystem must keep: a commit that would leave less is refused and the pipeline stops (exit 1) before RocksDB meets a full disk; `run` also refuses to start below it. 0: no check."},
    {"state.changelog.idle.marker.ms", T_INT, F(changelog_idle_marker_ms), 0, 0, 3600000, "30000", NULL, "An owned changelog partition with nothing to write still gets a commit marker this often: where the marker lands tells the owner whether another instance wrote there meanwhile (a former owner paused past its session timeout), and the owner then writes its users of it again before a compaction could keep only the other writer's records (docs/SCALING.md). 0: markers only with changes."},
    {"state.standby.interval.ms", T_INT, F(standby_interval_ms), 0, 0, 3600000, "0", NULL, "Standby replicas: every this often, bring this instance's stored copy of every events partition it does not own up to that partition's changelog (on a thread of its own), so that taking a partition over reads only the commits since (docs/SCALING.md). Costs each instance the disk and the changelog reads of every partition. 0: off; a new owner restores on assignment."},
    {"state.partitions.changed", T_STR, S(partitions_changed), 0, 0, "refuse", "refuse|accept", "When the events topic has another partition count than when this state was built (partitions added, or the topic made again): a producer picks a partition by hashing the user key modulo the count, so most users' events now land in another partition than their stored state, which is kept per partition. refuse: the start stops (exit 1) and says so, before anything is consumed; accept: run on, the users that moved start again from the prior (their old records stay, unused), and the new count is stored (docs/SCALING.md, \"Changing the partition count\"). A count that grows while running stops the pipeline under refuse."},
    {"state.sync", T_BOOL, F(state_sync), 0, 0, 1, "false", NULL, "fsync every commit (the WAL is always on; this also survives power loss)."},
    {"ingest.batch", T_INT, F(ingest_batch), 0, 1, 100000, "4096", NULL, "Most records taken from the consumer queue per wake-up."},
    {"ingest.max.dirty.users", T_INT, F(max_dirty_users), 0, 100, 100000000, "200000", NULL, "Pause consumption while more users than this wait for their list."},
    {"ingest.max.producer.queue", T_INT, F(max_producer_queue), 0, 100, 100000000, "200000", NULL, "Pause consumption while more produced messages than this are undelivered."},
    {"ingest.max.rate", T_INT, F(max_rate), 0, 0, 100000000, "0", NULL, "Cap on events consumed per second (0: none), e.g. for a backfill beside live traffic; consumption pauses while over it."},
    {"ingest.partitions", T_STR, S(ingest_partitions), 0, 0, "", NULL, "Empty: join the consumer group kafka.group.id and consume the partitions Kafka hands out (rebalances move them between instances). Else \"all\" or a list such as \"0-7,12\": take exactly these partitions of the events topic at start, without joining the group, so a restart consumes at once (no group join: ~3 s on a real cluster, up to session.timeout.ms on the embedded broker). Each partition then belongs in one instance's list; nothing moves them on a failure (docs/SCALING.md, \"Partitions assigned statically\")."},
    {"ingest.offset.reset", T_STR, S(offset_reset), 0, 0, "earliest", "earliest|latest|fail", "Where a partition starts when its stored or committed position is out of the log's range (events deleted by retention before they were read, or the topic recreated or truncated): earliest (the oldest event still there), latest (the log end), or fail (stop, exit 1). Always logged as an error with the log's range and the number of events skipped. A partition with no position at all (a new group or partition) is normal: it starts at the oldest event under earliest and fail, at the log end under latest (logged as info). kafka.auto.offset.reset is ignored for the events topic."},
    {"emit.interval.ms", T_INT, F(emit_interval_ms), 0, 1, 600000, "100", NULL, "How often the lists of changed users are recomputed and published."},
    {"emit.withdraw.users.per.tick", T_INT, F(emit_withdraw_users_per_tick), 0, 1, 10000000, "1000", NULL, "Stored users whose last list holds a blocked or deleted item that get a new list per emit tick (each a load and a list: ~28 ms per 1,000 on a 2-core VM). A takedown of a post in millions of lists is served over many ticks instead of holding the loop and loading every such user into the cache at once; cached users are served on the next tick whatever this is (docs/COLD-START.md)."},
    {"emit.batch", T_INT, F(emit_batch), 0, 1, 65536, "512", NULL, "Users scored per sgemm call."},
    {"emit.topk", T_INT, F(topk), 0, 1, 10000, "50", NULL, "Length of each published list."},
    {"emit.retrieval.min.items", T_I64, F(emit_retrieval.min_items), 0, 0, 1e12, "500000", NULL, "From this catalog size on, lists are ranked from candidates instead of the whole catalog: an HNSW index over the item vectors (hnswlib) proposes emit.retrieval.candidates items per user, joined by the items its co-engagement term favours, the trending and the most popular; the exact score of every term ranks them (docs/RETRIEVAL.md: the crossover and recall). The emitter alone crosses at ~50,000 items, but in the live pipeline on 2 cores the full scan was faster end to end at 100,000 and 300,000 items: keeping the index up with items that learn costs more than its lists save there. The index is built on a thread of its own (emit.retrieval.build.threads) and kept up to date within emit.retrieval.sync.ms per emit; until it holds the catalog the full scan serves. 0: always the full scan."},
    {"emit.retrieval.candidates", T_INT, F(emit_retrieval.candidates), 0, 1, 10000, "50", NULL, "Candidates the index proposes per list (emit.retrieval.min.items)."},
    {"emit.retrieval.ef", T_INT, F(emit_retrieval.ef_search), 0, 1, 100000, "64", NULL, "The index's search breadth (HNSW ef): higher, better recall and slower lists."},
    {"emit.retrieval.m", T_INT, F(emit_retrieval.M), 0, 2, 256, "32", NULL, "Links per item of the index's graph (HNSW M): more, better recall, more memory (about 8 bytes each, twice on the bottom layer)."},
    {"emit.retrieval.ef.construction", T_INT, F(emit_retrieval.ef_construction), 0, 1, 100000, "100", NULL, "The index's build breadth (HNSW efConstruction)."},
    {"emit.retrieval.coengaged", T_INT, F(emit_retrieval.coengaged), 0, 0, 1024, "100", NULL, "Candidates per list from the user's co-engagement term (its recent items' neighbours)."},
    {"emit.retrieval.popular", T_INT, F(emit_retrieval.popular), 0, 0, 1024, "1000", NULL, "The most popular items (population prior), candidates of every list. They are the items whose rows learning moves most while the index holds older copies: with 50, lists from the index held 0.86-0.88 of the full scan's top 50 at 500,000 items; with 1,000, 0.994-0.998 at the same speed (docs/RETRIEVAL.md, \"Recall in the live pipeline\"). Scoring them costs a list ~1,000 dot products of rows that stay in cache."},
    {"emit.retrieval.sync.ms", T_DOUBLE, F(emit_retrieval.sync_ms), 0, 0, 10000, "20", NULL, "Time per emit the emit thread spends on the retrieval index: copying the item rows a background build starts from, adding new items and re-inserting items whose vectors changed (at the pace of emit.retrieval.refresh.pass.ms)."},
    {"emit.retrieval.refresh.change", T_DOUBLE, F(emit_retrieval.refresh_change), 0, 0, 10, "0.25", NULL, "An item whose index row (its vector, popularity and bias) moved by more than this share of its length since the retrieval index took it is re-inserted; smaller follows the model closer at more index work (docs/RETRIEVAL.md: what staleness costs)."},
    {"emit.retrieval.refresh.pass.ms", T_DOUBLE, F(emit_retrieval.refresh_pass_ms), 0, 0, 86400000, "20000", NULL, "The retrieval index's refresh pass (emit.retrieval.refresh.change) goes over the whole catalog at most once in this time, a share of it per emit: a row that moved is re-inserted within about this long. 0: the whole catalog at every emit (within emit.retrieval.sync.ms), which costs ~6 ms of every emit at 100k items and the whole budget at 1M even when nothing moved (docs/RETRIEVAL.md)."},
    {"emit.retrieval.build.threads", T_INT, F(emit_retrieval.build_threads), 0, 1, 256, "1", NULL, "Threads that build a retrieval index (the first, and a new one when re-inserted items have left dead slots past a fifth of the catalog) in the background, from a copy of the item rows taken within emit.retrieval.sync.ms per emit; the full scan, or the index it replaces, serves meanwhile. 1 leaves the other core of a 2-core machine to the consume/emit loop; 2 halves the build (docs/RETRIEVAL.md: 1M items)."},
    {"emit.retrieval.persist", T_BOOL, F(emit_retrieval.persist), 0, 0, 1, "true", NULL, "Save every retrieval index built under state.dir/retrieval (its graph and the ids of its items) and, at start, serve from the saved one: its items are named by id, the rows it lacks are inserted and those that moved since are re-inserted as they are found (docs/RETRIEVAL.md). At 1M items a build takes ~15 min of a core and the full scan serves meanwhile; a load takes seconds. Disk: about the index's graph (~420 bytes per item at d = 32 and M 32 by hnswlib's layout, 544 measured at M 48: ~420 MB at 1M items)."},
    {"emit.retrieval.audit.every", T_I64, F(emit_retrieval.audit_every), 0, 0, 1e12, "10000", NULL, "One list in this many ranked from the retrieval index's candidates is ranked again by the full scan, on the emit thread, and the share of that exact list's items the published list holds is counted: the path's recall as the items learn and the index follows them (metrics driftrec_retrieval_audit_hits_total / driftrec_retrieval_audit_slots_total; docs/RETRIEVAL.md). One audit is a one-user full scan: 15-18 ms at 1M items, 8 ms at 500,000 on a 2-core VM, so 1 in 10,000 adds ~1.7 us to each list, under 1% of a list from the index (~0.35 ms at 1M). 0: no audit."},
    {"emit.threads", T_INT, F(emit_threads), 0, 1, 64, "2", NULL, "Threads each emit batch's lists are scored on, the loop thread's included: the batch's users are split between them (at least 16 each), and the loop waits for all. More pay off where cores are spare (docs/BENCHMARKS.md)."},
    {"emit.blas.threads", T_INT, F(blas_threads), 0, 1, 256, "1", NULL, "OpenBLAS threads for scoring; more only pay off with spare cores (idle BLAS threads spin)."},
    {"learner.mode", T_STR, S(learner_mode), 0, 0, "implicit", "implicit|rating", "implicit: engagement labels, logistic loss; rating: RATE events, squared loss."},
    {"learner.dim", T_INT, F(learner.dim), 0, 1, DR_MAX_DIM, "32", NULL, "Latent dimension d."},
    {"learner.lr.user", T_FLOAT, F(learner.lr_user), 0, 0, 10, "0.5", NULL, "SGD rate of the per-user delta v_u and bias b_u."},
    {"learner.lr.user.decay", T_FLOAT, F(learner.lr_user_decay), 0, 0, 1e9, "0", NULL, "τ of the per-user step size α / sqrt(1 + n/τ), n = the user's events since its last re-adaptation after a drift cut (0: constant α)."},
    {"learner.lr.item", T_FLOAT, F(learner.lr_item), 0, 0, 10, "0.1", NULL, "SGD rate of item vectors q_i and biases b_i."},
    {"learner.prior.step", T_FLOAT, F(learner.prior_step), 0, 0, 1, "0.1", NULL, "Reptile ε: every learner.prior.period labelled events the shared prior û moves by ε × the mean v_u those events left (0: û stays fixed). Active users are re-based so their vectors do not jump (docs/COLD-START.md)."},
    {"learner.prior.period", T_INT, F(learner.prior_period), 0, 1, 100000000, "1000", NULL, "Labelled events per outer (Reptile) step on the prior; each step is a new model_version."},
    {"learner.content.dim", T_INT, F(learner.content_dim), 0, 0, 4096, "0", NULL, "Length c of the catalog's content embeddings (Item.embedding). Items with one are scored with q_i = W·e_i + δ_i, so new items rank by content before anyone touched them; 0: embeddings are ignored. A catalog record with another length is dead-lettered."},
    {"learner.lr.content", T_FLOAT, F(learner.lr_content), 0, 0, 10, "0.001", NULL, "Step size of the content projection W (shared by all items with an embedding)."},
    {"learner.content.refresh.rows", T_I64, F(learner.content_refresh_rows), 0, 0, 1e9, "16384", NULL, "Item rows an outer step (learner.prior.period) brings up to the W learned since, in turn, so that every content item's q_i = W·e_i + δ_i follows W within (items / this) steps; a row an event touches follows it at once. Bounds the step's cost at large catalogs: the whole catalog at every step is ~70 ns a row (70 ms at 1M items; 8% of the demo's time at 100k). 0: the whole catalog every step (docs/COLD-START.md)."},
    {"learner.prior.popularity.weight", T_FLOAT, F(learner.pop_weight), 0, 0, 100, "1", NULL, "γ at start of the population prior: a user's score adds γ / (1 + n_u/τ) × log(1 + c_i), c_i the item's decayed positives from all users, n_u the user's events, so new users get what the population engages with and the term fades as their own history grows. 0 together with learner.prior.popularity.step = 0: no such term (docs/COLD-START.md)."},
    {"learner.prior.popularity.fade", T_FLOAT, F(learner.pop_fade), 0, 0.1, 1e6, "20", NULL, "τ at start: after this many of a user's own events the population prior weighs half."},
    {"learner.prior.popularity.step", T_FLOAT, F(learner.pop_step), 0, 0, 10, "1", NULL, "Meta step on γ and log τ at every outer step: gradient ascent on log σ(s(u,i) − s(u,j)) over the period's positives i against uniformly drawn items j (0: γ and τ stay as set)."},
    {"learner.prior.popularity.halflife", T_FLOAT, F(learner.pop_halflife), 0, 0, 1e12, "20000", NULL, "Positives (of all users) after which a positive counts half in c_i (0: counts never decay)."},
    {"learner.prior.popularity.authors", T_I64, F(learner.pop_authors), 0, 0, 1e9, "1000000", NULL, "Authors whose posts' positives the population prior keeps (decayed like c_i), so that a new post of a known author (the catalog's author) starts with c_i = its author's mean positives per post, shrunk for authors with few posts; the post's own events replace it (it weighs half after 30). Full, a new author takes the place of the least active of 8 sampled. Memory: at most 48 bytes per author (24 per slot, load <= 3/4, power-of-two slots). Posts without an author are unaffected. 0: off (docs/CATALOG.md)."},
    {"learner.prior.popularity.content", T_BOOL, F(learner.pop_content), 0, 0, 1, "false", NULL, "A new post with a content embedding (learner.content.dim) whose author has no record to start from starts with c_i = what posts of similar content hold: a ridge regression of the live posts' decayed positives on their embeddings, each post weighed as the author table weighs it (one-hot embeddings give the author's mean). The post's own events replace it as they replace an author's. Memory: c² + 3c doubles, and 8 bytes per item; a new post costs one c × c solve when anything changed since the last. Off by default: on a closed-loop feed it changed CTR within the runs' noise (docs/CATALOG.md)."},
    {"learner.reg.user", T_FLOAT, F(learner.reg_user), 0, 0, 10, "0.01", NULL, "L2 on v_u: pulls the user toward the shared prior."},
    {"learner.reg.item", T_FLOAT, F(learner.reg_item), 0, 0, 10, "0.001", NULL, "L2 on item parameters."},
    {"learner.weight.click", T_FLOAT, W(DR_EV_CLICK), 0, 100, "1.0", NULL, "Label weight of a CLICK (positive)."},
    {"learner.weight.like", T_FLOAT, W(DR_EV_LIKE), 0, 100, "1.5", NULL, "Label weight of a LIKE (positive)."},
    {"learner.weight.share", T_FLOAT, W(DR_EV_SHARE), 0, 100, "2.0", NULL, "Label weight of a SHARE (positive)."},
    {"learner.weight.comment", T_FLOAT, W(DR_EV_COMMENT), 0, 100, "1.5", NULL, "Label weight of a COMMENT (positive)."},
    {"learner.weight.purchase", T_FLOAT, W(DR_EV_PURCHASE), 0, 100, "3.0", NULL, "Label weight of a PURCHASE (positive)."},
    {"learner.weight.hide", T_FLOAT, W(DR_EV_HIDE), 0, 100, "2.0", NULL, "Label weight of a HIDE (strong negative)."},
    {"learner.weight.hide_author", T_FLOAT, W(DR_EV_HIDE_AUTHOR), 0, 100, "2.0", NULL, "Label weight of a HIDE_AUTHOR on the item it names (strong negative); the author's items also leave the user's lists."},
    {"learner.weight.hide_topic", T_FLOAT, W(DR_EV_HIDE_TOPIC), 0, 100, "2.0", NULL, "Label weight of a HIDE_TOPIC on the item it names (strong negative); the topic's items also leave the user's lists."},
    {"learner.weight.dwell", T_FLOAT, W(DR_EV_DWELL), 0, 100, "1.0", NULL, "Label weight of a DWELL at or above the threshold (positive)."},
    {"learner.weight.rate", T_FLOAT, W(DR_EV_RATE), 0, 100, "1.0", NULL, "Label weight of a RATE event in implicit mode (positive)."},
    {"learner.dwell.threshold.s", T_FLOAT, F(learner.dwell_threshold_s), 0, 0, 86400, "10", NULL, "DWELL seconds from which a dwell is a positive (shorter: weak negative)."},
    {"learner.impression.weight", T_FLOAT, F(learner.impression_weight), 0, 0, 100, "1", NULL, "Weight of the weak negative for an impression with no engagement."},
    {"learner.impression.timeout.ms", T_I64, F(learner.impression_timeout_ms), 0, 0, 8.64e7, "60000", NULL, "Event-time window in which engagement cancels an impression's negative."},
    {"learner.negatives", T_INT, F(learner.negatives), 0, 0, 100, "2", NULL, "Negatives sampled by popularity per positive."},
    {"learner.negative.sampling", T_STR, S(negative_sampling), 0, 0, "uniform", "popularity|uniform", "Where sampled negatives come from: recent positives (popularity-proportional) or uniformly over known items."},
    {"learner.negative.weight", T_FLOAT, F(learner.negative_weight), 0, 0, 100, "1.0", NULL, "Label weight of each sampled negative."},
    {"learner.grad.clip", T_FLOAT, F(learner.grad_clip), 0, 1e-6, 1e6, "5", NULL, "Bound on one event's gradient on the score."},
    {"learner.max.norm", T_FLOAT, F(learner.max_norm), 0, 1e-6, 1e6, "10", NULL, "Bound on the norm of q_i and v_u."},
    {"learner.init.scale", T_FLOAT, F(learner.init_scale), 0, 0, 10, "0.3", NULL, "New item vectors start uniform in [-s, s] (seeded by item id)."},
    {"learner.recent.items", T_INT, F(learner.recent_items), 0, 1, DR_RECENT_MAX, "32", NULL, "Per-user ring of recent events (excluded from the user's lists)."},
    {"learner.explore.miss.rate", T_DOUBLE, F(learner.explore_miss_rate), 0, 0, 1, "0.9", NULL, "A user's lists explore the catalog's topics (every other slot holds another topic's best item, as after a drift response: drift.explore.events) while its drift window of at least 50 outcomes misses at least this share: the lists fail it, and its engagement with another topic is how the model finds what it likes. Stops by itself once the user engages. 1 turns it off."},
    {"learner.rest.impressions", T_INT, F(learner.rest_impressions), 0, 0, 15, "3", NULL, "Seen posts rest: an item shown this many times to a user who engaged with none of them leaves that user's lists for learner.rest.ms to twice that (a per-user Bloom filter of 392 bytes; README, \"What a list leaves out\"). 0: off."},
    {"learner.rest.ms", T_I64, F(learner.rest_ms), 0, 1, 3.1536e10, "86400000", NULL, "Event time an item rests (at least; at most twice this); impressions older than this count half."},
    {"learner.cooc.neighbors", T_INT, F(learner.cooc_neighbors), 0, 0, DR_MAX_NEIGHBORS, "512", NULL, "Co-engagement neighbours kept per item (the heaviest; a full table halves its counts and drops the lightest quarter). Lists add β·Σ_k w_k·n_jc/n_c^b over the user's last learner.cooc.window engaged items j, w_k = (1 + k)^-q·n_j^-a (learner.cooc.query.decay, .source.norm, .candidate.norm; docs/LEARNER.md). 0: the term is off. Memory: up to ~16 bytes × this per item."},
    {"learner.cooc.window", T_INT, F(learner.cooc_window), 0, 1, DR_RECENT_MAX, "8", NULL, "A new engagement pairs with the user's last this many engaged items, and lists are driven by them (at most learner.recent.items)."},
    {"learner.cooc.halflife", T_FLOAT, F(learner.cooc_halflife), 0, 0, 1e12, "10000", NULL, "Co-engagement counts (n_jc and n_c) halve every this many engagements, counted over all instances (each counts its own and those the model topic brings). The unit is engagements, not time: a stream far busier than MovieLens or the demo (about 100k engagements) may want more (docs/LEARNER.md). 0: counts never fade. 0 or at least 1."},
    {"learner.cooc.pair.decay", T_FLOAT, F(learner.cooc_pair_decay), 0, 0, 1e6, "5", NULL, "τ: a new engagement adds exp(-k/τ) to its pair with the user's k-th previous engaged item (k = 0: the last one). 0: 1 to every pair in the window."},
    {"learner.cooc.query.decay", T_FLOAT, F(learner.cooc_query_decay), 0, 0, 4, "0.5", NULL, "q: the user's k-th last engaged item weighs (1 + k)^-q in its lists. 0: all alike."},
    {"learner.cooc.source.norm", T_FLOAT, F(learner.cooc_source_norm), 0, 0, 1, "1", NULL, "a: a source item j's row weighs n_j^-a (n_j its decayed engagements): a popular item says less about what comes next, and at 1 each row counts as the share of j's engagements each neighbour follows (docs/LEARNER.md: less weakens the feed's drift detector)."},
    {"learner.cooc.candidate.norm", T_FLOAT, F(learner.cooc_candidate_norm), 0, 0, 1, "0.1", NULL, "b: a candidate's co-engagement score is divided by n_c^b (n_c its decayed engagements; 0.5 is the classic cosine-like normalisation, far too strong against popular items on both test streams)."},
    {"learner.cooc.hop.weight", T_FLOAT, F(learner.cooc_hop_weight), 0, 0, 100, "1.2", NULL, "The second hop: the learner.cooc.hop.seeds items the user's own rows score best add their rows too, each × its score, the hop scaled to the first's largest score × this × min(1, learner.cooc.hop.spread / items the first hop scored). Helps where a user's rows are sparse (docs/LEARNER.md). 0: off."},
    {"learner.cooc.hop.seeds", T_INT, F(learner.cooc_hop_seeds), 0, 0, DR_COOC_HOP_SEEDS_MAX, "5", NULL, "Items the second hop expands. 0: no second hop."},
    {"learner.cooc.hop.spread", T_FLOAT, F(learner.cooc_hop_spread), 0, 0, 1e9, "300", NULL, "The second hop weighs min(1, this / items the first hop scored): full where the user's rows reach few items. 0: always full."},
    {"learner.cooc.age", T_FLOAT, F(learner.cooc_age), 0, 0, 1e9, "50", NULL, "τ of a co-engagement source's fading: an item the user engaged with a drift samples ago (impression outcomes, else labelled events) weighs τ/(τ + a) in its lists, so that a run of ignored impressions lets a few chance clicks go. 0: no fading."},
    {"learner.cooc.weight", T_FLOAT, F(learner.cooc_weight), 0, 0, 1e6, "100", NULL, "β: weight of the co-engagement term against the factor score in a list. Large on purpose: where a user's rows reach an item, they rank it better than the factors do (both test streams, 30 to 300 alike; docs/LEARNER.md); the factors rank the rest, and every item for a user with no engagement yet."},
    {"learner.max.items", T_I64, F(learner.max_items), 0, 1, 1e9, "1000000", NULL, "Catalog bound: items held at once (rows of the item matrix; removed items' rows are reused, learner.item.ttl.ms). Once it is reached, an event on a new item (of any type) and a catalog record for a new item are dead-lettered (reason \"value out of range\") and the user's state is left as it was; known items keep learning, and a pending impression of an item that got no row is dropped when it goes stale. Memory per item: ~126 + 4·d bytes of rows and id table (+ 4·(c + d) with learner.content.dim c; the arrays grow by doubling), plus a full co-engagement table: 8 bytes × learner.cooc.neighbors and an index of 4 bytes × the smallest power of two >= 4/3 of it (8 KiB at 512). About 8.4 KB per item at the defaults: 7.9 GiB at 1,000,000."},
    {"learner.item.ttl.ms", T_I64, F(learner.item_ttl_ms), 0, 0, 315360000000000, "0", NULL, "An item older than this (event time, from its catalog publish time, else from when driftrec first met it) leaves every list; learner.item.grace.ms later it leaves the model and the store, and its row is reused (docs/CATALOG.md). A feed of posts sets about a day; 0: items never expire."},
    {"learner.item.grace.ms", T_I64, F(learner.item_grace_ms), 0, 0, 315360000000000, "3600000", NULL, "How long an expired item stays in the model (learning from late events, not listed) before it is removed with its co-engagement counts and stored record."},
    {"learner.item.fresh.weight", T_FLOAT, F(learner.fresh_weight), 0, 0, 1e4, "0", NULL, "Freshness in the lists: an item's score gains this × 2^(-age / learner.item.fresh.halflife.ms), its age in event time from its publish time (docs/CATALOG.md); ages are brought up to date with each commit. The co-engagement term weighs learner.cooc.weight (100) × its counts: a weight that should make new posts lead lists is of that order. 0: off."},
    {"learner.item.fresh.halflife.ms", T_I64, F(learner.fresh_halflife_ms), 0, 1, 315360000000000, "21600000", NULL, "Age at which the freshness term (learner.item.fresh.weight) is half its weight."},
    {"learner.rating.blend", T_BOOL, F(learner.rating_blend), 0, 0, 1, "true", NULL, "Rating mode: refine the biased MF's prediction with the rating blend, an online least-squares blend of per-user and per-item rating statistics and co-rated neighbours, then a per-user stage on what remains (docs/LEARNER.md, \"Rating mode\"). false: the MF's own prediction. No effect in implicit mode."},
    {"learner.seed", T_I64, F(learner.seed), 0, 0, 9.0e15, "42", NULL, "Seed of item initialisation and negative sampling."},
    {"drift.enabled", T_BOOL, F(learner.drift_enabled), 0, 0, 1, "true", NULL, "Run a per-user ADWIN over each user's drift signal (1 for an ignored impression, 0 for an engaged one, else the prequential surprise)."},
    {"drift.delta", T_DOUBLE, F(learner.drift.delta), 0, 1e-12, 0.5, "0.5", NULL, "ADWIN confidence δ of the per-user detectors (smaller: fewer cuts, later detections). 0.5 (MOA: 0.002) with drift.min.change 0.15 was measured on the closed-loop feed: 81% of the switches of users with 100 impressions before them detected, a median 23 impressions after they happened, 0.56 false alarms per 10,000 impressions of users who never drift (medians of 6 seeds; docs/DRIFT.md). Each cut that passes drift.min.change re-adapts a user: budget by that rate, not by δ."},
    {"drift.clock", T_INT, F(learner.drift.clock), 0, 1, 1024, "1", NULL, "Per-user detectors check for a cut every this many events (MOA: 32; users' streams are short)."},
    {"drift.max.buckets", T_INT, F(learner.drift.max_buckets), 0, 2, 64, "5", NULL, "ADWIN buckets per row (M)."},
    {"drift.min.window", T_INT, F(learner.drift.min_window), 0, 0, 100000, "10", NULL, "A per-user detector checks only once its window is wider than this."},
    {"drift.min.sub.window", T_INT, F(learner.drift.min_sub_window), 0, 0, 100000, "5", NULL, "A cut needs more than this + 1 events on each side."},
    {"drift.readapt.epochs", T_INT, F(learner.readapt_epochs), 0, 0, 100, "3", NULL, "On a cut, SGD passes over the user's events of the new regime (drift.regime.at.cut), from the prior."},
    {"drift.regime.at.cut", T_BOOL, F(learner.regime_at_cut), 0, 0, 1, "true", NULL, "Where a re-adapted user's new regime starts (the recent events that drive its lists' co-engagement term and are replayed). At a cut for the worse whose kept window holds misses (impressions left unanswered, hides), at the cut: the window's engagements are the old interest's last ones or the few that the stale lists still got, and kept they hold the lists on the old interest; the lists explore from the prior instead (drift.explore.*). A window of engagements only (ratings whose surprise rose) is the new regime either way. false: at the first sample of the window ADWIN kept (docs/DRIFT.md)."},
    {"drift.min.change", T_DOUBLE, F(learner.drift_min_change), 0, 0, 1, "0.15", NULL, "A cut of a user's detector is drift (a response, a list flagged drift, the demo's detection) only when the mean of the window ADWIN kept and that of the part it dropped differ by at least this, in the signal's units (a miss rate). Smaller cuts are counted (driftrec_drift_cuts_total{reason=\"small\"}) and nothing else: at a large drift.delta ADWIN also cuts on chance differences between short windows, while an interest switch moves a served user's miss rate by 0.3-0.5 (docs/DRIFT.md). 0: every cut is drift."},
    {"drift.signal.scale", T_FLOAT, F(learner.drift_scale), 0, 0.01, 100, "1", NULL, "Per-user detectors see their signal (in [0,1]: an impression's miss or hit, else the surprise) times this. ADWIN's bound assumes values in [0,1]; a scale above 1 detects sooner at the price of more false alarms (docs/DRIFT.md)."},
    {"drift.respond.improving", T_BOOL, F(learner.drift_respond_improving), 0, 0, 1, "false", NULL, "Also re-adapt a user after a cut in the improving direction (its signal fell: the lists serve it better than before). Off: such a cut is counted (reason \"improving\") and nothing else."},
    {"drift.explore.events", T_INT, F(learner.drift_explore_events), 0, 0, 1000000, "300", NULL, "After a re-adaptation (the response to a cut), the user's lists explore topics for at most this many of its events: every other slot holds the best item of another topic of the catalog, topics in the order of their best items' scores, so that a new interest is found by what the user engages with. Needs the catalog's topics (items of no topic are never explored); 0 turns it off."},
    {"drift.explore.engaged", T_INT, F(learner.drift_explore_engaged), 0, 1, 50, "3", NULL, "Exploration after a re-adaptation ends early once the user engaged with this many items in its new regime (drift.explore.events): a new interest was found and the lists exploit it."},
    {"drift.arm.share", T_DOUBLE, F(learner.drift_arm_share), 0, 0, 1, "1", NULL, "Share of users (by hash of user_id) whose drift is handled; the rest form a control arm (their cuts are counted, reason \"control\", with no response)."},
    {"drift.global.delta", T_DOUBLE, F(global_drift_delta), 0, 1e-12, 0.5, "0.05", NULL, "δ of the global ADWIN over all users' drift samples, in blocks (drift.global.block): population-wide drift. With the shipped settings the demo's shift is flagged after ~1,500 labelled events and nothing before it in 12 runs; 0.02 takes ~1,750 (docs/DRIFT.md)."},
    {"drift.global.block", T_INT, F(global_block), 0, 1, 1000000, "50", NULL, "The global detector sees the mean of every this many drift samples of all users (one sample per impression outcome): consecutive samples come in one user's sessions and are not independent, as ADWIN assumes; block means nearly are. Relative samples (drift.global.relative) spread less, so blocks can be shorter; blocks of 25 started trend periods before the demo's shift in 2 runs of 6 (docs/DRIFT.md)."},
    {"drift.global.relative", T_BOOL, F(global_relative), 0, 0, 1, "true", NULL, "The global detector sees each drift sample less its user's own level (the mean of the user's detector window, once it holds 10 samples; samples of users with shorter windows are left out): a population-wide drift moves everyone above their own level at once, while which users happen to fill a block (served or not, heavy or light) no longer moves the block means, whose spread falls by a third on the demo. false: the samples as they are (then also drift.global.delta 0.01, block 100 and scale 4, as before). Without per-user detectors (drift.enabled=false) the samples are used as they are, and a start warns unless the settings above are the raw samples' (or the trend response is off)."},
    {"drift.global.min.rise", T_DOUBLE, F(global_min_rise), 0, 0, 1, "0.07", NULL, "A rising global cut counts as a population-wide drift, and starts the trend term, when the block means are now (a fast mean over the last ~5 blocks) at least this far above their slow mean (~200 blocks): an impression's miss is 1, so 0.07 is seven more misses per 100 impressions than the users' own levels (the demo's shift makes ~11; docs/DRIFT.md). Smaller rises (the wobbles of a population that is still learning) are counted, reason \"small\", and nothing else."},
    {"drift.global.scale", T_DOUBLE, F(global_scale), 0, 1, 100, "6", NULL, "The global detector sees each block mean magnified this much around a slow mean of the block means (0.25 + scale × (block − mean), clipped to [0, 1]: a rise, the direction that matters, has three quarters of the range): ADWIN's bound is for values spread over [0, 1], block means spread over a few hundredths, and magnified a step shows within ~15-20 blocks instead of 40-80 (test_adwin_pop; docs/DRIFT.md). drift.global.min.rise is in the block means' own units. 1: unmagnified."},
    {"drift.global.trend.weight", T_FLOAT, F(learner.trend_weight), 0, 0, 100, "2", NULL, "The response to a population-wide drift (a global cut in the worsening direction): lists of users with drift handling add this × log(1 + t_i), t_i the item's share of the last 4096 positives of all users, for drift.global.trend.positives positives (and drift.global.trend.topic.weight's term). 0: none of this part."},
    {"drift.global.trend.topic.weight", T_FLOAT, F(learner.trend_topic_weight), 0, 0, 1000, "100", NULL, "The response's second part, for the same positives: lists of users with drift handling add this × log(lift) of the item's topic (the catalog's topic field), lift the topic's engaged share of all users' impression outcomes since the period began over that of all outcomes, starting from 50 outcomes at the mean, and only above 1 (the first 768 topics met in a period are followed). What is engaged with more than before is what the population turned to, even where few lists show it yet; the count part follows what the lists already show (docs/DRIFT.md: with it the demo's drift arm is back to 90% of its CTR in about half the rounds of the control arm). Items of no topic get none. 0: none of this part."},
    {"drift.global.trend.positives", T_I64, F(learner.trend_positives), 0, 0, 1e12, "100000", NULL, "How long the trend term of a population-wide drift lasts, in positives of all users (a later global cut extends it). Not stored: a restart ends it."},
    {"schema.framing", T_STR, S(framing), 0, 0, "confluent", "confluent|plain", "confluent: magic byte, 4-byte schema id, Avro binary; plain: Avro binary only."},
    {"schema.id.event", T_INT, F(codec.schema_id[DR_SCHEMA_EVENT]), 0, 0, 2147483647, "1", NULL, "Schema id of schemas/UserEvent.avsc in the framing."},
    {"schema.id.recommendations", T_INT, F(codec.schema_id[DR_SCHEMA_RECS]), 0, 0, 2147483647, "2", NULL, "Schema id of schemas/Recommendations.avsc."},
    {"schema.id.item", T_INT, F(codec.schema_id[DR_SCHEMA_ITEM]), 0, 0, 2147483647, "5", NULL, "Schema id of schemas/Item.avsc (3 before Item gained author and topic, 4 before published_at)."},
    {"schema.id.item.v1", T_INT, F(codec.item_v1_id), 0, -1, 2147483647, "3", NULL, "Id under which catalog records written with the first Item schema (schemas/Item_1.avsc, no author or topic) still decode; -1: none. Ignored with schema.registry.url (the registry knows every version)."},
    {"schema.id.item.v2", T_INT, F(codec.item_v2_id), 0, -1, 2147483647, "4", NULL, "Id under which catalog records written with the second Item schema (schemas/Item_2.avsc, no published_at) still decode; -1: none. Ignored with schema.registry.url."},
    {"schema.writers", T_STR, S(writer_schemas), 0, 0, "", NULL, "Other producers' writer schemas: comma-separated `id:event|item:path.avsc`."},
    {"schema.registry.url", T_STR, S(registry_url), 0, 0, "", NULL, "A Confluent-compatible Schema Registry (http:// or https://; empty: none). At start our three schemas are registered under the topic-name subjects (`<topic>-value` of the events, recommendations and catalog topics) and their ids framed; a record whose writer schema id is unknown is fetched once (`GET /schemas/ids/{id}`), checked against our reader schema and cached (README, \"Schemas from a registry\")."},
    {"schema.registry.basic.auth.user.info", T_STR, S(registry_user_info), 0, 0, "", NULL, "`user:password` for HTTP basic auth to the registry (hidden by `config --dump`)."},
    {"schema.registry.ssl.ca.location", T_STR, S(registry_ca), 0, 0, "", NULL, "PEM file of the CAs that sign the registry's certificate; empty: the system's."},
    {"schema.registry.ssl.certificate.location", T_STR, S(registry_cert), 0, 0, "", NULL, "Client certificate (PEM) for mutual TLS; empty: none."},
    {"schema.registry.ssl.key.location", T_STR, S(registry_key), 0, 0, "", NULL, "Private key (PEM) of that certificate."},
    {"schema.registry.ssl.key.password", T_STR, S(registry_key_password), 0, 0, "", NULL, "Password of that key (hidden by `config --dump`)."},
    {"schema.registry.timeout.ms", T_INT, F(registry_timeout_ms), 0, 100, 600000, "5000", NULL, "One request to the registry, connecting included."},
    {"schema.registry.wait.ms", T_INT, F(registry_wait_ms), 0, 0, 600000, "10000", NULL, "How long a record with an unknown schema id waits (consumption stops meanwhile) while the registry is unreachable, retrying, before it goes to the dead-letter topic with class `registry` and header `dr.retryable: true`; for this long afterwards such records go there at once. `driftrec dlq replay` puts them back."},
    {"log.level", T_STR, S(log_level), 0, 0, "info", "debug|info|warn|error|off", "Least severe level logged."},
    {"run.exit.idle.ms", T_INT, F(exit_idle_ms), 0, 0, 86400000, "0", NULL, "For catch-up jobs and tests: once partitions are assigned, stop cleanly (commit, exit 0) after this long without a new record and with no lag, the model topic (topic.model) read to its end too; 0 runs forever."},
    {"eval.rank.clicks", T_BOOL, F(eval_rank_clicks), 0, 0, 1, "false", NULL, "For backtests: rank each click's item under the model as it stands just before the click (test-then-train; a pass over the item matrix per click, cut short once 10 items score above it) and log hr@10 of those ranks when the run stops (clicks_ranked, rank_hits), beside that of the lists users had (clicks_scored, click_hits), which also depends on when the lists were emitted."},
    {"metrics.listen", T_STR, S(metrics_listen), 0, 0, "127.0.0.1:9464", NULL, "Address of /metrics, /healthz and /readyz for `driftrec run` (IPv4:port; port 0 picks one; empty: off). Loopback unless you choose otherwise."},
    {"metrics.max.connections", T_INT, F(metrics_max_connections), 0, 1, 100000, "64", NULL, "Most connections the metrics endpoint keeps open; at the cap the oldest is closed to make room, so idle clients cannot keep a health probe out. Never more than a quarter of the descriptor limit (`ulimit -n`, systemd's LimitNOFILE=), which RocksDB and librdkafka share."},
    {"metrics.timeout.ms", T_INT, F(metrics_timeout_ms), 0, 100, 600000, "5000", NULL, "A metrics connection is closed this long after it was accepted, whether or not its request arrived and its response was written."},
    {"metrics.ready.max.lag", T_I64, F(ready_max_lag), 0, 0, 1e15, "100000", NULL, "/readyz answers 503 while the consumer lag is above this (or no partition is assigned)."},
    {"shutdown.timeout.ms", T_INT, F(shutdown_timeout_ms), 0, 100, 600000, "10000", NULL, "Longest a SIGTERM/SIGINT shutdown waits for deliveries."},
};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))
_Static_assert(N_ROWS <= DR_CONFIG_ROWS_MAX, "raise DR_CONFIG_ROWS_MAX");

/* Rating mode learns from squared errors on a 0.5-5 scale, not from
 * logistic losses on 0/1 labels: the implicit steps make it diverge (mae
 * 1.99 on ml-latest-small). These replace the defaults with
 * learner.mode=rating, for the keys the user did not set
 * (docs/BENCHMARKS.md, "Rating mode"). */
static const struct { const char *key, *value; } rating_defaults[] = {
    {"learner.lr.user", "0.1"}, {"learner.init.scale", "0.1"},
    {"learner.reg.user", "0.1"}, {"learner.reg.item", "0.01"},
};

static const char *rating_default(const char *key) {
    for (size_t i = 0; i < sizeof(rating_defaults) / sizeof(rating_defaults[0]); i++)
        if (strcmp(rating_defaults[i].key, key) == 0) return rating_defaults[i].value;
    return NULL;
}

static const conf_row_t *find_row(const char *key) {
    for (size_t i = 0; i < N_ROWS; i++)
        if (strcmp(rows[i].key, key) == 0) return &rows[i];
    return NULL;
}

static int bad(char *errstr, size_t n, const char *key, const char *why, const char *value) {
    snprintf(errstr, n, "%s: %s (got \"%s\")", key, why, value);
    return DR_ECONFIG;
}

static bool in_choices(const char *choices, const char *v) {
    size_t len = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, v, n) == 0) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static int set_row(dr_config_t *cfg, const conf_row_t *r, const char *v, char *errstr, size_t n) {
    char *end = NULL;
    void *dst = (char *)cfg + r->offset;
    errno = 0;
    switch (r->type) {
    case T_INT: case T_I64: {
        long long x = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno) return bad(errstr, n, r->key, "not an integer", v);
        if (x < r->min || x > r->max) return bad(errstr, n, r->key, "out of range", v);
        if (r->type == T_INT) *(int *)dst = (int)x;
        else *(int64_t *)dst = (int64_t)x;
        return 0;
    }
    case T_FLOAT: case T_DOUBLE: {
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || errno || !isfinite(x))
            return bad(errstr, n, r->key, "not a number", v);
        if (x < r->min || x > r->max) return bad(errstr, n, r->key, "out of range", v);
        if (r->type == T_FLOAT) *(float *)dst = (float)x;
        else *(double *)dst = x;
        return 0;
    }
    case T_BOOL:
        if (!strcasecmp(v, "true") || !strcmp(v, "1")) *(bool *)dst = true;
        else if (!strcasecmp(v, "false") || !strcmp(v, "0")) *(bool *)dst = false;
        else return bad(errstr, n, r->key, "expected true or false", v);
        return 0;
    case T_STR:
        if (strlen(v) >= r->size) return bad(errstr, n, r->key, "too long", v);
        if (r->choices && !in_choices(r->choices, v))
            return bad(errstr, n, r->key, r->choices, v);
        strcpy(dst, v);
        return 0;
    }
    return DR_ECONFIG;
}

static int set_kafka(dr_config_t *cfg, const char *key, const char *value, char *errstr, size_t n) {
    const char *rk = key + strlen("kafka.");
    if (*rk == '\0' || strlen(rk) >= DR_NAME_MAX || strlen(value) >= DR_PATH_MAX)
        return bad(errstr, n, key, "bad kafka property", "");
    /* else the clients would wait for brokers forever, none named */
    if (strcmp(rk, "bootstrap.servers") == 0 && value[strspn(value, " \t,")] == '\0')
        return bad(errstr, n, key, "empty: name the brokers, host:port[,host:port...]", "");
    for (int i = 0; i < cfg->n_kafka; i++)
        if (strcmp(cfg->kafka[i].key, rk) == 0) { strcpy(cfg->kafka[i].value, value); return 0; }
    if (cfg->n_kafka == DR_KAFKA_PROPS_MAX) return bad(errstr, n, key, "too many kafka.* keys", "");
    strcpy(cfg->kafka[cfg->n_kafka].key, rk);
    strcpy(cfg->kafka[cfg->n_kafka].value, value);
    cfg->n_kafka++;
    return 0;
}

int dr_config_set(dr_config_t *cfg, const char *key, const char *value, char *errstr, size_t n) {
    if (strncmp(key, "kafka.", 6) == 0) return set_kafka(cfg, key, value, errstr, n);
    const conf_row_t *r = find_row(key);
    if (!r) {
        snprintf(errstr, n, "%s: unknown key (see ops/CONFIG.md; Kafka client keys take the kafka. prefix)", key);
        return DR_ECONFIG;
    }
    int err = set_row(cfg, r, value, errstr, n);
    if (!err) cfg->set_by_user[r - rows] = true;
    return err;
}

void dr_config_default(dr_config_t *cfg) {
    char err[256];
    memset(cfg, 0, sizeof(*cfg));
    dr_learner_conf_default(&cfg->learner);
    dr_codec_conf_default(&cfg->codec);
    for (size_t i = 0; i < N_ROWS; i++) (void)set_row(cfg, &rows[i], rows[i].def, err, sizeof(err));
    (void)set_kafka(cfg, "kafka.bootstrap.servers", "localhost:9092", err, sizeof(err));
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int dr_config_set_pair(dr_config_t *cfg, const char *pair, char *errstr, size_t n) {
    char buf[DR_PATH_MAX + DR_NAME_MAX];
    if (strlen(pair) >= sizeof(buf)) return bad(errstr, n, "--set", "too long", "");
    strcpy(buf, pair);
    char *eq = strchr(buf, '=');
    /* not echoed: the line may be a secret with a typo ("kafka.sasl.password: x") */
    if (!eq) {
        snprintf(errstr, n, "expected key=value (no '=' in the setting; its text is not shown)");
        return DR_ECONFIG;
    }
    *eq = '\0';
    return dr_config_set(cfg, trim(buf), trim(eq + 1), errstr, n);
}

int dr_config_load_file(dr_config_t *cfg, const char *path, char *errstr, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, n, "%s: %s", path, strerror(errno));
        return DR_EIO;
    }
    char line[4096], inner[1024];
    int lineno = 0, err = 0;
    while (!err && fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#') continue;
        err = dr_config_set_pair(cfg, s, inner, sizeof(inner));
        if (err) snprintf(errstr, n, "%s:%d: %s", path, lineno, inner);
    }
    fclose(f);
    return err;
}

int dr_config_finish(dr_config_t *cfg, char *errstr, size_t n) {
    /* topics left empty are named after the events topic */
    static const struct { size_t offset, size; const char *suffix; } derived[] = {
        {S(topic_dlq), ".dlq"}, {S(topic_changelog), ".changelog"}, {S(topic_model), ".model"}};
    for (size_t i = 0; i < sizeof(derived) / sizeof(derived[0]); i++) {
        char *topic = (char *)cfg + derived[i].offset;
        if (topic[0] != '\0') continue;
        size_t len = strlen(cfg->topic_events), slen = strlen(derived[i].suffix);
        if (len + slen >= derived[i].size)
            return bad(errstr, n, "topic.events", "too long", cfg->topic_events);
        memcpy(topic, cfg->topic_events, len);
        memcpy(topic + len, derived[i].suffix, slen + 1);
    }
    cfg->learner.mode = strcmp(cfg->learner_mode, "rating") == 0 ? DR_MODE_RATING : DR_MODE_IMPLICIT;
    for (size_t i = 0; cfg->learner.mode == DR_MODE_RATING && i < N_ROWS; i++) {
        const char *v = rating_default(rows[i].key);
        if (v && !cfg->set_by_user[i]) (void)set_row(cfg, &rows[i], v, errstr, n);
    }
    cfg->learner.negative_uniform = strcmp(cfg->negative_sampling, "uniform") == 0;
    cfg->codec.framing = strcmp(cfg->framing, "plain") == 0 ? DR_FRAMING_PLAIN : DR_FRAMING_CONFLUENT;
    if (cfg->topk > 0 && cfg->emit_batch < 1) return bad(errstr, n, "emit.batch", "must be >= 1", "");
    if (cfg->ingest_partitions[0]) {
        int err = dr_ingest_parse_partitions(cfg->ingest_partitions, NULL, errstr, n);
        if (err) return err;
    }
    char inner[512];
    if (dr_learner_conf_check(&cfg->learner, inner, sizeof(inner))) {
        snprintf(errstr, n, "%s", inner);
        return DR_ECONFIG;
    }
    return 0;
}

const char *dr_config_kafka(const dr_config_t *cfg, const char *key) {
    for (int i = 0; i < cfg->n_kafka; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0) return cfg->kafka[i].value;
    return NULL;
}

int dr_config_kafka_arrays(const dr_config_t *cfg, const char ***keys, const char ***values) {
    *keys = calloc((size_t)cfg->n_kafka + 1, sizeof(char *));
    *values = calloc((size_t)cfg->n_kafka + 1, sizeof(char *));
    if (!*keys || !*values) {
        free(*keys);
        free(*values);
        *keys = *values = NULL;
        return DR_ENOMEM;
    }
    for (int i = 0; i < cfg->n_kafka; i++) {
        (*keys)[i] = cfg->kafka[i].key;
        (*values)[i] = cfg->kafka[i].value;
    }
    return 0;
}

/* Keys whose values `config --dump` hides: every property librdkafka 2.0.2
 * marks sensitive (sasl.password, sasl.oauthbearer.config,
 * sasl.oauthbearer.client.secret, ssl.key.password, ssl.key.pem,
 * ssl.keystore.password) and anything else that looks like one. */
static bool is_secret(const char *key) {
    static const char *const words[] = {"password", "secret", "key", "token", "jaas", "credential",
                                        "oauthbearer.config", "user.info"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasestr(key, words[i])) return true;
    return false;
}

static void format_value(const dr_config_t *cfg, const conf_row_t *r, char *out, size_t n) {
    const void *src = (const char *)cfg + r->offset;
    switch (r->type) {
    case T_INT: snprintf(out, n, "%d", *(const int *)src); break;
    case T_I64: snprintf(out, n, "%lld", (long long)*(const int64_t *)src); break;
    case T_FLOAT: snprintf(out, n, "%g", (double)*(const float *)src); break;
    case T_DOUBLE: snprintf(out, n, "%g", *(const double *)src); break;
    case T_BOOL: snprintf(out, n, "%s", *(const bool *)src ? "true" : "false"); break;
    case T_STR: snprintf(out, n, "%s", (const char *)src); break;
    }
}

void dr_config_dump(const dr_config_t *cfg, FILE *out) {
    char v[DR_PATH_MAX];
    for (size_t i = 0; i < N_ROWS; i++) {
        format_value(cfg, &rows[i], v, sizeof(v));
        /* settings of our own that hold secrets (the registry's credentials) */
        bool hide = rows[i].type == T_STR && v[0] && is_secret(rows[i].key);
        fprintf(out, "%s = %s\n", rows[i].key, hide ? "[redacted]" : v);
    }
    for (int i = 0; i < cfg->n_kafka; i++)
        fprintf(out, "kafka.%s = %s\n", cfg->kafka[i].key,
                is_secret(cfg->kafka[i].key) ? "[redacted]" : cfg->kafka[i].value);
}

static const char *type_name(const conf_row_t *r) {
    switch (r->type) {
    case T_INT: case T_I64: return "int";
    case T_FLOAT: case T_DOUBLE: return "float";
    case T_BOOL: return "bool";
    case T_STR: return r->choices ? r->choices : "string";
    }
    return "?";
}

void dr_config_write_markdown(FILE *out) {
    fprintf(out, "# driftrec configuration\n\n"
                 "Generated by `driftrec config --markdown` from the table in src/config.c; "
                 "do not edit by hand.\n\nSettings come from `--config FILE` (`key = value` lines, "
                 "`#` comments) and `--set key=value`, later ones winning. Every key that starts "
                 "with `kafka.` is passed to librdkafka without the prefix (e.g. "
                 "`kafka.bootstrap.servers`, `kafka.security.protocol`, `kafka.sasl.password`); "
                 "see librdkafka's CONFIGURATION.md. Unknown keys are rejected.\n\n"
                 "| key | type | default | range | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_ROWS; i++) {
        const conf_row_t *r = &rows[i];
        char range[64] = "";
        if (r->type != T_BOOL && r->type != T_STR)
            snprintf(range, sizeof(range), "%g .. %g", r->min, r->max);
        const char *rating = rating_default(r->key);
        char def[96];
        snprintf(def, sizeof(def), rating ? "`%s` (rating mode: `%s`)" : "`%s`", r->def, rating);
        fprintf(out, "| `%s` | %s | %s | %s | %s |\n", r->key, type_name(r), def, range, r->doc);
    }
}
