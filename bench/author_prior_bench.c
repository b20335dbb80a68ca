/* author_prior_bench.c - does a new post's author prior (issue 17,
 * learner.prior.popularity.authors) bring the new posts users like into
 * their feeds sooner? A closed-loop feed whose posts arrive over the stream,
 * each with a catalog record (content embedding, author, topic, publish
 * time) read before any event touches it; the learner is driven directly,
 * as bench/churn_bench.c drives it, and its lists decide what users see.
 *
 *   author_prior_bench SEED AUTHORS_TABLE [EVENTS [USERS [AUTHORS [POSTS [LIVE_POSTS]]]]]
 *
 * The world (seeded): AUTHORS authors of quality z ~ N(0, 1) and posting
 * activity heavy-tailed (a few post much); each post has its author's
 * quality plus noise (sd 0.3), one of 20 topics and a 16-float content
 * embedding near its topic's centre (the content says the topic, not the
 * quality). USERS users, each with a main topic, active heavy-tailed (many
 * with a few sessions, a few with many). A session shows 10 posts: 8 from
 * the head of the list the model would publish for the user now (the
 * full scan: every live post not excluded for the user, by
 * dr_model_scores_at), 2 organic (a live post of any topic, its age
 * exponential with a mean of a quarter of the live window). A post shown is
 * clicked with probability sigmoid(-3 + 2.5 match + 1.2 quality): in-topic
 * posts of a good author mostly, others rarely. Posts expire after the
 * time LIVE_POSTS posts take to arrive (learner.item.ttl.ms, an expiry pass
 * every 10,000 events).
 *
 * Measured: CTR (clicks / posts shown) over all impressions, over those of
 * posts younger than 2,000 and 10,000 events (a post lives ~30,000), and
 * over users' first 20 events. AUTHORS_TABLE is
 * learner.prior.popularity.authors (0: the author prior off). One line of
 * key=value. Built and run by bench/author_prior.sh. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_err.h"
#include "dr_learner.h"
#include "dr_log.h"

#define TOPICS 20
#define CONTENT_DIM 16
#define SESSION_LEN 10
#define EVENT_GAP_MS 2000
#define EXPIRY_EVERY 10000
#define YOUNG_EVENTS 2000
#define YOUNGISH_EVENTS 10000
#define ORGANIC_SLOTS 2

static void die(const char *what, int err) {
    fprintf(stderr, "author_prior_bench: %s: %s\n", what, dr_strerror(err));
    exit(1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n, size);
    if (!p) die("calloc", DR_ENOMEM);
    return p;
}

static double gauss(uint64_t *rng) {
    double u1 = dr_rand01(rng), u2 = dr_rand01(rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

typedef struct post {
    int64_t arrived; /* the event index at its catalog record */
    int topic;
    int64_t author;
    float quality;
} post_t;

typedef struct hits {
    uint64_t n, hit;
} hits_t;

static void count(hits_t *h, bool clicked) {
    h->n++;
    h->hit += clicked;
}

/* The best `want` posts of the list the model would publish for u now, by
 * the full scan: every live row not excluded for u, scored as the emitter
 * scores (dr_model_scores_at). *rows and *scores grow with the rows.
 * Returns how many (fewer when fewer are listable). */
static int list_head(dr_model_t *m, const dr_user_t *u, int64_t **rows, float **scores, int64_t *out,
                     int want) {
    dr_items_view_t v;
    dr_model_items(m, &v);
    int64_t *r = realloc(*rows, (v.n + 1) * sizeof(int64_t));
    if (!r) die("realloc", DR_ENOMEM);
    *rows = r;
    float *sc = realloc(*scores, (v.n + 1) * sizeof(float));
    if (!sc) die("realloc", DR_ENOMEM);
    *scores = sc;
    size_t n = 0;
    for (size_t i = 0; i < v.n; i++)
        if (!v.excluded[i] && !dr_user_excludes(u, v.ids[i]) && !dr_user_hides_source(u, v.author[i], v.topic[i]))
            r[n++] = (int64_t)i;
    dr_model_scores_at(m, u, r, n, sc);
    int got = 0;
    float best[SESSION_LEN];
    for (size_t j = 0; j < n; j++) {
        if (got == want && sc[j] <= best[want - 1]) continue;
        int at = got < want ? got++ : want - 1; /* full: the last one goes */
        while (at > 0 && best[at - 1] < sc[j]) {
            best[at] = best[at - 1];
            out[at] = out[at - 1];
            at--;
        }
        best[at] = sc[j];
        out[at] = v.ids[r[j]];
    }
    return got;
}

static double rate(const hits_t *h) { return h->n ? (double)h->hit / (double)h->n : 0.0; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: author_prior_bench SEED AUTHORS_TABLE [EVENTS [USERS [AUTHORS [POSTS [LIVE_POSTS]]]]]\n");
        return 2;
    }
    uint64_t seed = strtoull(argv[1], NULL, 10);
    int64_t table = atoll(argv[2]);
    int64_t events = argc > 3 ? atoll(argv[3]) : 300000, users = argc > 4 ? atoll(argv[4]) : 5000,
            authors = argc > 5 ? atoll(argv[5]) : 500, posts = argc > 6 ? atoll(argv[6]) : 20000,
            live = argc > 7 ? atoll(argv[7]) : 2000;
    if (table < 0 || events < 1 || users < 1 || authors < 1 || posts < TOPICS || live < TOPICS || live > posts) {
        fprintf(stderr, "author_prior_bench: bad arguments\n");
        return 2;
    }
    dr_log_set_level(DR_LOG_WARN);
    double events_per_post = (double)events / (double)posts;
    dr_learner_conf_t conf;
    dr_learner_conf_default(&conf);
    conf.content_dim = CONTENT_DIM;
    conf.pop_authors = table;
    /* CONTENT_PRIOR=0: learner.prior.popularity.content off (bench/author_prior.sh) */
    const char *content_prior = getenv("CONTENT_PRIOR");
    if (content_prior) conf.pop_content = atoi(content_prior) != 0;
    /* QUALITY_IN_CONTENT=x: the embedding's last coordinate carries x times
     * the post's quality (default 0: the content says the topic only) */
    const char *qic = getenv("QUALITY_IN_CONTENT");
    float quality_in_content = qic ? (float)atof(qic) : 0.0f;
    conf.item_ttl_ms = (int64_t)((double)live * events_per_post * EVENT_GAP_MS);
    conf.item_grace_ms = conf.item_ttl_ms / 10;
    dr_model_t *m;
    char err[256];
    int rc;
    if ((rc = dr_model_new(&m, &conf, err, sizeof err))) die(err, rc);

    /* the world */
    uint64_t rng = dr_mix64(seed ^ 0xa7b0f1ULL);
    float *author_quality = xcalloc((size_t)authors, sizeof(float));
    double *author_cdf = xcalloc((size_t)authors, sizeof(double)), total = 0.0;
    for (int64_t a = 0; a < authors; a++) {
        author_quality[a] = (float)gauss(&rng);
        total += pow(1.0 - dr_rand01(&rng), -1.0 / 1.2); /* Pareto: a few post much */
        author_cdf[a] = total;
    }
    float centre[TOPICS][CONTENT_DIM];
    for (int t = 0; t < TOPICS; t++)
        for (int j = 0; j < CONTENT_DIM; j++) centre[t][j] = (float)(2.0 * dr_rand01(&rng) - 1.0);
    int *user_topic = xcalloc((size_t)users, sizeof(int));
    for (int64_t u = 0; u < users; u++) user_topic[u] = (int)(dr_rand64(&rng) % TOPICS);
    post_t *post = xcalloc((size_t)posts + 1, sizeof(post_t)); /* ids 1..posts */
    /* per topic, its posts in arrival order (a post of age k in its topic is
     * k back from the newest) */
    int64_t *by_topic[TOPICS], topic_n[TOPICS];
    for (int t = 0; t < TOPICS; t++) {
        by_topic[t] = xcalloc((size_t)posts, sizeof(int64_t));
        topic_n[t] = 0;
    }
    dr_user_t **state = xcalloc((size_t)users, sizeof(dr_user_t *));

    hits_t all = {0}, young = {0}, youngish = {0}, new_users = {0};
    int64_t *rows = NULL;
    float *scores = NULL;
    int64_t next_post = 1, e = 0;
    const int64_t t0_ms = 1767225600000;
    double t0 = dr_mono_s();
    while (e < events) {
        /* posts whose time has come: their catalog record first */
        while (next_post <= posts && (double)(next_post - 1) * events_per_post <= (double)e) {
            post_t *p = &post[next_post];
            double x = dr_rand01(&rng) * total;
            int64_t lo = 0, hi = authors - 1;
            while (lo < hi) {
                int64_t mid = (lo + hi) / 2;
                if (author_cdf[mid] < x) lo = mid + 1;
                else hi = mid;
            }
            p->author = lo + 1;
            p->topic = (int)(dr_rand64(&rng) % TOPICS);
            p->quality = author_quality[lo] + 0.3f * (float)gauss(&rng);
            p->arrived = e;
            float emb[CONTENT_DIM];
            for (int j = 0; j < CONTENT_DIM; j++)
                emb[j] = centre[p->topic][j] + 1.2f * (float)(dr_rand01(&rng) - 0.5);
            emb[CONTENT_DIM - 1] += quality_in_content * p->quality; /* an encoder that sees quality */
            if ((rc = dr_model_set_item_content(m, next_post, emb, CONTENT_DIM))) die("content", rc);
            if ((rc = dr_model_set_item_source(m, next_post, p->author, p->topic))) die("source", rc);
            if ((rc = dr_model_set_item_published(m, next_post, t0_ms + e * EVENT_GAP_MS))) die("published", rc);
            by_topic[p->topic][topic_n[p->topic]++] = next_post;
            next_post++;
        }
        /* a session of a user drawn heavy-tailed: low ids are the active ones */
        double r = dr_rand01(&rng);
        int64_t uid = (int64_t)((double)users * r * r * r);
        if (!state[uid] && !(state[uid] = dr_user_new_conf(uid + 1, &conf))) die("user", DR_ENOMEM);
        dr_user_t *u = state[uid];
        /* the head of the user's list, then the organic slots */
        int64_t shown[SESSION_LEN];
        int n_shown = list_head(m, u, &rows, &scores, shown, SESSION_LEN - ORGANIC_SLOTS);
        while (n_shown < SESSION_LEN) {
            int topic = (int)(dr_rand64(&rng) % TOPICS);
            if (topic_n[topic] == 0) continue;
            int64_t age = (int64_t)(-log(1.0 - dr_rand01(&rng)) * (double)(live / TOPICS) / 4.0);
            if (age >= topic_n[topic]) age = topic_n[topic] - 1;
            shown[n_shown++] = by_topic[topic][topic_n[topic] - 1 - age];
        }
        for (int k = 0; k < SESSION_LEN && e < events; k++) {
            int64_t item = shown[k];
            const post_t *p = &post[item];
            double logit = -3.0 + (p->topic == user_topic[uid] ? 2.5 : 0.0) + 1.2 * p->quality;
            bool clicked = dr_rand01(&rng) < 1.0 / (1.0 + exp(-logit));
            count(&all, clicked);
            if (e - p->arrived < YOUNG_EVENTS) count(&young, clicked);
            if (e - p->arrived < YOUNGISH_EVENTS) count(&youngish, clicked);
            if (u->events_applied < 20) count(&new_users, clicked);
            int64_t ts = t0_ms + e * EVENT_GAP_MS;
            dr_event_t imp = {u->user_id, item, DR_EV_IMPRESSION, 0.0f, ts};
            dr_apply_result_t res;
            if ((rc = dr_learner_apply(m, u, &imp, (uint64_t)e * 2, &res)) && rc != DR_ERANGE) die("apply", rc);
            if (++e % EXPIRY_EVERY == 0 && (rc = dr_model_expire_items(m, 1u << 20, NULL))) die("expire", rc);
            if (clicked) {
                dr_event_t click = {u->user_id, item, DR_EV_CLICK, 0.0f, ts + 500};
                if ((rc = dr_learner_apply(m, u, &click, (uint64_t)e * 2 + 1, &res)) && rc != DR_ERANGE)
                    die("apply", rc);
                if (++e % EXPIRY_EVERY == 0 && (rc = dr_model_expire_items(m, 1u << 20, NULL))) die("expire", rc);
            }
        }
    }
    float gamma, tau;
    dr_model_pop_fade(m, &gamma, &tau);
    uint64_t evicted = 0;
    size_t n_authors = dr_model_authors(m, &evicted);
    printf("seed=%" PRIu64 " authors_table=%" PRId64 " content_prior=%d quality_in_content=%.2f ctr=%.4f ctr_young=%.4f young_n=%" PRIu64
           " ctr_under10k=%.4f under10k_n=%" PRIu64 " ctr_users_first20=%.4f users_first20_n=%" PRIu64
           " impressions=%" PRIu64 " gamma=%.2f tau=%.1f authors_held=%zu evicted=%" PRIu64
           " live_items=%zu seconds=%.1f\n",
           seed, table, (int)conf.pop_content, quality_in_content, rate(&all), rate(&young), young.n, rate(&youngish), youngish.n, rate(&new_users),
           new_users.n, all.n, gamma, tau, n_authors, evicted, dr_model_live_items(m), dr_mono_s() - t0);
    free(rows);
    free(scores);
    for (int64_t u = 0; u < users; u++) dr_user_free(state[u]);
    for (int t = 0; t < TOPICS; t++) free(by_topic[t]);
    free(state);
    free(post);
    free(user_topic);
    free(author_cdf);
    free(author_quality);
    dr_model_free(m);
    return 0;
}
