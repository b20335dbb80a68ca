/* dataset.c - readers for event histories and catalogs, and user splicing (see dr_dataset.h). */
#include "dr_dataset.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_bytes.h"
#include "dr_codec.h"
#include "dr_err.h"

#define MAX_FIELDS 64
#define MAX_GENRES 64

void dr_dataset_opts_default(dr_dataset_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->format = "movielens";
    o->user_col = "user_id";
    o->item_col = "item_id";
    o->time_col = "timestamp";
    o->value_col = "value";
    o->type_col = "type";
    o->default_type = "RATE";
}

void dr_dataset_free(dr_dataset_t *d) {
    free(d->events);
    free(d->item_ids);
    free(d->item_emb);
    for (int i = 0; i < d->emb_dim; i++) free(d->emb_names ? d->emb_names[i] : NULL);
    free(d->emb_names);
    memset(d, 0, sizeof(*d));
}

static int push_event(dr_dataset_t *d, const dr_event_t *ev) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 65536;
        dr_event_t *e = realloc(d->events, cap * sizeof(*e));
        if (!e) return DR_ENOMEM;
        d->events = e;
        d->cap = cap;
    }
    d->events[d->n++] = *ev;
    if (ev->type == DR_EV_RATE) {
        if (d->n == 1 || ev->value < d->rating_min) d->rating_min = ev->value;
        if (d->n == 1 || ev->value > d->rating_max) d->rating_max = ev->value;
    }
    return 0;
}

/* Splits line in place at sep (no quoting: ratings files have none). */
static int split(char *line, char sep, char **f, int max) {
    int n = 0;
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *q = strchr(p, sep);
        if (!q) break;
        *q = '\0';
        p = q + 1;
    }
    for (int i = 0; i < n; i++) {
        char *e = f[i] + strlen(f[i]);
        while (e > f[i] && isspace((unsigned char)e[-1])) *--e = '\0';
        while (isspace((unsigned char)*f[i])) f[i]++;
    }
    return n;
}

static bool parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno) return false;
    *out = v;
    return true;
}

static bool parse_f(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno) return false;
    *out = v;
    return true;
}

static int64_t to_ms(double t, const char *unit) {
    if (unit && !strcmp(unit, "ms")) return (int64_t)t;
    if (unit && !strcmp(unit, "s")) return (int64_t)(t * 1000.0);
    return t < 1e11 ? (int64_t)(t * 1000.0) : (int64_t)t;
}

/* Validates and stores one event; a bad one is counted as skipped. */
static int add(dr_dataset_t *d, const dr_dataset_opts_t *o, dr_event_t *ev) {
    if (ev->type == DR_EV_RATE && o->min_rating > 0 && ev->value < o->min_rating) return 0;
    if (dr_event_validate(ev, NULL, 0) != 0) {
        d->skipped++;
        return 0;
    }
    return push_event(d, ev);
}

static int col_index(char **names, int n, const char *want) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], want)) return i;
    return -1;
}

typedef struct columns {
    int user, item, time, value, type;
} columns_t;

static int read_delimited(dr_dataset_t *d, FILE *f, const dr_dataset_opts_t *o, char sep,
                          const columns_t *c, int first_line, const char *path, char *err, size_t n) {
    char line[4096], *fld[MAX_FIELDS];
    int lineno = first_line, def_type = dr_event_type_parse(o->default_type);
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (line[0] == '\n' || line[0] == '\0') continue;
        int nf = split(line, sep, fld, MAX_FIELDS);
        int64_t user, item;
        double t, v = 0;
        dr_event_t ev = {0};
        bool ok = c->user < nf && c->item < nf && c->time < nf && parse_i64(fld[c->user], &user) &&
                  parse_i64(fld[c->item], &item) && parse_f(fld[c->time], &t);
        if (ok && c->value >= 0 && c->value < nf) ok = parse_f(fld[c->value], &v);
        ev.type = (dr_event_type_t)def_type;
        if (ok && c->type >= 0 && c->type < nf) ok = (int)(ev.type = (dr_event_type_t)dr_event_type_parse(fld[c->type])) >= 0;
        if (!ok) {
            if (d->n == 0 && d->skipped == 0 && lineno <= 2) {
                snprintf(err, n, "%s:%d: cannot read an event from this line (wrong --format or columns?)", path, lineno);
                return DR_EDECODE;
            }
            d->skipped++;
            continue;
        }
        ev.user_id = user;
        ev.item_id = item;
        ev.value = (float)v;
        ev.timestamp_ms = to_ms(t, o->time_unit);
        int rc = add(d, o, &ev);
        if (rc) return rc;
    }
    return 0;
}

static int read_csv_header(dr_dataset_t *d, FILE *f, const dr_dataset_opts_t *o, const char *path,
                           char *err, size_t n) {
    char line[4096], *names[MAX_FIELDS];
    if (!fgets(line, sizeof(line), f)) {
        snprintf(err, n, "%s: empty file", path);
        return DR_EDECODE;
    }
    int nf = split(line, ',', names, MAX_FIELDS);
    columns_t c = {col_index(names, nf, o->user_col), col_index(names, nf, o->item_col),
                   col_index(names, nf, o->time_col), col_index(names, nf, o->value_col),
                   col_index(names, nf, o->type_col)};
    if (c.user < 0 || c.item < 0 || c.time < 0) {
        snprintf(err, n, "%s:1: the header lacks a column %s, %s or %s (set --user-col/--item-col/--time-col)",
                 path, o->user_col, o->item_col, o->time_col);
        return DR_EDECODE;
    }
    return read_delimited(d, f, o, ',', &c, 1, path, err, n);
}

/* MovieLens: ratings.csv (userId,movieId,rating,timestamp with a header) or
 * u.data (user, item, rating, timestamp separated by tabs, no header). */
static int read_movielens(dr_dataset_t *d, FILE *f, const dr_dataset_opts_t *o, const char *path,
                          char *err, size_t n) {
    char first[4096];
    if (!fgets(first, sizeof(first), f)) {
        snprintf(err, n, "%s: empty file", path);
        return DR_EDECODE;
    }
    columns_t c = {0, 1, 3, 2, -1};
    if (strchr(first, '\t')) {
        rewind(f);
        return read_delimited(d, f, o, '\t', &c, 0, path, err, n);
    }
    if (strncmp(first, "userId,movieId,rating,timestamp", 31) != 0) {
        snprintf(err, n, "%s:1: not a MovieLens ratings file (expected u.data or a ratings.csv header)", path);
        return DR_EDECODE;
    }
    return read_delimited(d, f, o, ',', &c, 1, path, err, n);
}

/* One flat JSON object per line: {"user_id": 1, "item_id": 2, "type": "CLICK", ...}.
 * Only numbers and strings are read; nested values make the line skipped. */
static bool json_field(const char *line, const char *key, char *out, size_t n) {
    char pat[160];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(line, pat);
    if (!p) return false;
    p += strlen(pat);
    while (isspace((unsigned char)*p)) p++;
    if (*p++ != ':') return false;
    while (isspace((unsigned char)*p)) p++;
    size_t i = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && i + 1 < n; p++) out[i++] = *p;
    } else {
        for (; *p && (isalnum((unsigned char)*p) || strchr("+-.", *p)) && i + 1 < n; p++) out[i++] = *p;
    }
    out[i] = '\0';
    return i > 0;
}

static int read_jsonl(dr_dataset_t *d, FILE *f, const dr_dataset_opts_t *o) {
    char line[8192], u[32], it[32], t[32], v[32], ty[32];
    int def_type = dr_event_type_parse(o->default_type);
    while (fgets(line, sizeof(line), f)) {
        dr_event_t ev = {0};
        double tt, vv = 0;
        if (!json_field(line, o->user_col, u, sizeof(u)) || !json_field(line, o->item_col, it, sizeof(it)) ||
            !json_field(line, o->time_col, t, sizeof(t)) || !parse_i64(u, &ev.user_id) ||
            !parse_i64(it, &ev.item_id) || !parse_f(t, &tt)) {
            if (line[0] != '\n') d->skipped++;
            continue;
        }
        if (json_field(line, o->value_col, v, sizeof(v)) && !parse_f(v, &vv)) { d->skipped++; continue; }
        int type = json_field(line, o->type_col, ty, sizeof(ty)) ? dr_event_type_parse(ty) : def_type;
        if (type < 0) { d->skipped++; continue; }
        ev.type = (dr_event_type_t)type;
        ev.value = (float)vv;
        ev.timestamp_ms = to_ms(tt, o->time_unit);
        int rc = add(d, o, &ev);
        if (rc) return rc;
    }
    return 0;
}

int dr_dataset_read(dr_dataset_t *d, const char *path, const dr_dataset_opts_t *o, char *err, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return DR_EIO;
    }
    int rc;
    if (!strcmp(o->format, "movielens")) rc = read_movielens(d, f, o, path, err, n);
    else if (!strcmp(o->format, "csv")) rc = read_csv_header(d, f, o, path, err, n);
    else if (!strcmp(o->format, "jsonl")) rc = read_jsonl(d, f, o);
    else {
        snprintf(err, n, "unknown --format '%s' (movielens, csv or jsonl)", o->format);
        rc = DR_EINVAL;
    }
    fclose(f);
    if (rc == DR_ENOMEM) snprintf(err, n, "%s: out of memory", path);
    return rc;
}

typedef struct keyed {
    int64_t ts;
    size_t pos;
} keyed_t;

static int cmp_keyed(const void *a, const void *b) {
    const keyed_t *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

int dr_dataset_sort(dr_dataset_t *d) {
    keyed_t *k = malloc(d->n * sizeof(*k) + 1);
    dr_event_t *sorted = malloc(d->n * sizeof(*sorted) + 1);
    if (!k || !sorted) { free(k); free(sorted); return DR_ENOMEM; }
    for (size_t i = 0; i < d->n; i++) k[i] = (keyed_t){d->events[i].timestamp_ms, i};
    qsort(k, d->n, sizeof(*k), cmp_keyed);
    for (size_t i = 0; i < d->n; i++) sorted[i] = d->events[k[i].pos];
    free(k);
    free(d->events);
    d->events = sorted;
    d->cap = d->n;
    return 0;
}

/* Genre index, adding it when new. */
static int genre_index(dr_dataset_t *d, const char *name) {
    for (int i = 0; i < d->emb_dim; i++)
        if (!strcmp(d->emb_names[i], name)) return i;
    if (d->emb_dim == MAX_GENRES) return -1;
    d->emb_names[d->emb_dim] = strdup(name);
    return d->emb_names[d->emb_dim] ? d->emb_dim++ : -1;
}

/* movies.csv: movieId,title,genres where title may be quoted with commas;
 * the genres are the text after the last comma. */
int dr_dataset_read_catalog(dr_dataset_t *d, const char *path, char *err, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return DR_EIO;
    }
    char line[8192];
    size_t cap = 0;
    int rc = 0;
    uint8_t (*hot)[MAX_GENRES] = NULL;
    d->emb_names = calloc(MAX_GENRES, sizeof(char *));
    if (!fgets(line, sizeof(line), f) || strncmp(line, "movieId,", 8) != 0 || !d->emb_names) {
        snprintf(err, n, "%s:1: expected a MovieLens movies.csv header", path);
        rc = DR_EDECODE;
        goto out;
    }
    while (fgets(line, sizeof(line), f)) {
        char *comma = strrchr(line, ',');
        int64_t id;
        char *first = strchr(line, ',');
        if (!comma || !first) continue;
        *first = '\0';
        if (!parse_i64(line, &id)) continue;
        if (d->n_items == cap) {
            cap = cap ? cap * 2 : 16384;
            int64_t *ids = realloc(d->item_ids, cap * sizeof(*ids));
            void *h = realloc(hot, cap * sizeof(*hot));
            if (ids) d->item_ids = ids;
            if (h) hot = h;
            if (!ids || !h) { rc = DR_ENOMEM; goto out; }
        }
        memset(hot[d->n_items], 0, MAX_GENRES);
        char *save = NULL;
        comma[strcspn(comma, "\r\n")] = '\0';
        for (char *g = strtok_r(comma + 1, "|", &save); g; g = strtok_r(NULL, "|", &save)) {
            int gi = strcmp(g, "(no genres listed)") ? genre_index(d, g) : -1;
            if (gi >= 0) hot[d->n_items][gi] = 1;
        }
        d->item_ids[d->n_items++] = id;
    }
    d->item_emb = malloc(d->n_items * (size_t)d->emb_dim * sizeof(float) + 1);
    if (!d->item_emb) { rc = DR_ENOMEM; goto out; }
    for (size_t i = 0; i < d->n_items; i++)
        for (int g = 0; g < d->emb_dim; g++) d->item_emb[i * (size_t)d->emb_dim + (size_t)g] = hot[i][g];
out:
    free(hot);
    fclose(f);
    if (rc == DR_ENOMEM) snprintf(err, n, "%s: out of memory", path);
    return rc;
}

/* ---- spliced users (see dr_dataset.h) -------------------------------------- */

typedef struct user_ref {
    int64_t user;
    size_t pos;
} user_ref_t;

static int cmp_user_ref(const void *a, const void *b) {
    const user_ref_t *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

typedef struct user_span {
    int64_t id;
    size_t off, n;             /* its events: refs[off .. off + n) */
    size_t rank;               /* among the eligible users, by id */
} user_span_t;

typedef struct splice_key {
    int64_t ts;
    size_t orig;               /* index in the input: ties keep their order */
    int64_t user;
} splice_key_t;

static int cmp_splice_key(const void *a, const void *b) {
    const splice_key_t *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->orig < y->orig ? -1 : (x->orig > y->orig);
}

void dr_splice_free(dr_splice_t *s) {
    free(s->users);
    memset(s, 0, sizeof(*s));
}

int dr_splice_events(dr_event_t *ev, size_t n, const dr_splice_opts_t *o, dr_splice_t *out, char *err,
                     size_t errn) {
    memset(out, 0, sizeof(*out));
    out->opts = *o;
    if (o->min_events < 2) {
        snprintf(err, errn, "splicing needs a minimum of at least 2 events per user, not %d", o->min_events);
        return DR_EINVAL;
    }
    int rc = DR_ENOMEM;
    user_ref_t *refs = malloc(n * sizeof(*refs) + 1);
    user_span_t *users = NULL;
    size_t *order = NULL, n_users = 0, m = 0;
    splice_key_t *keys = NULL;
    dr_event_t *copy = NULL;
    if (!refs) goto out;
    for (size_t i = 0; i < n; i++) refs[i] = (user_ref_t){ev[i].user_id, i};
    qsort(refs, n, sizeof(*refs), cmp_user_ref);
    for (size_t i = 0; i < n; i++) n_users += i == 0 || refs[i].user != refs[i - 1].user;
    users = malloc(n_users * sizeof(*users) + 1);
    order = malloc(n_users * sizeof(*order) + 1);
    if (!users || !order) goto out;
    n_users = 0;
    int64_t max_id = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || refs[i].user != refs[i - 1].user)
            users[n_users++] = (user_span_t){refs[i].user, i, 0, 0};
        users[n_users - 1].n++;
        if (refs[i].user > max_id) max_id = refs[i].user;
    }
    for (size_t u = 0; u < n_users; u++)
        if (users[u].n >= (size_t)o->min_events) {
            users[u].rank = m;
            order[m++] = u;
        }
    out->kept_users = n_users - m;
    if (m < (o->control ? 1u : 2u)) {
        snprintf(err, errn, "splicing users needs at least %s with %d or more events; %zu of the %zu users have that many",
                 o->control ? "one user" : "two users", o->min_events, m, n_users);
        rc = DR_EINVAL;
        goto out;
    }
    /* composite ids: 10^d + rank, above every id in the stream */
    int64_t base = 1;
    while (base <= max_id && base <= DR_MAX_ID / 10) base *= 10;
    if (!o->control && (base <= max_id || base + (int64_t)m >= DR_MAX_ID)) {
        snprintf(err, errn, "splicing users: no room for %zu new user ids above %lld below 2^53", m, (long long)max_id);
        rc = DR_ERANGE;
        goto out;
    }
    uint64_t state = o->seed;
    if (!o->control)
        for (size_t i = m - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)(dr_rand64(&state) % (uint64_t)(i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    keys = malloc(n * sizeof(*keys) + 1);
    copy = malloc(n * sizeof(*copy) + 1);
    out->users = calloc(m, sizeof(*out->users));
    if (!keys || !copy || !out->users) goto out;
    for (size_t i = 0; i < n; i++) keys[i] = (splice_key_t){ev[i].timestamp_ms, i, ev[i].user_id};
    for (size_t i = 0; i < m; i++) {
        const user_span_t *a = &users[order[i]], *b = &users[order[o->control ? i : (i + 1) % m]];
        size_t ha = a->n / 2, sb = b->n / 2;
        int64_t id = o->control ? a->id : base + (int64_t)a->rank;
        int64_t a_last = ev[refs[a->off + ha - 1].pos].timestamp_ms;
        int64_t b_first = ev[refs[b->off + sb].pos].timestamp_ms;
        int64_t shift = !o->control && b_first <= a_last ? a_last + 1 - b_first : 0;
        for (size_t k = 0; k < ha; k++) keys[refs[a->off + k].pos].user = id;
        for (size_t k = sb; k < b->n; k++) {
            splice_key_t *key = &keys[refs[b->off + k].pos];
            key->user = id;
            key->ts += shift;
        }
        if (shift > 0) out->shifted_events += b->n - sb;
        if (shift > out->max_shift_ms) out->max_shift_ms = shift;
        out->users[a->rank] = (dr_splice_user_t){id, a->id, b->id, (uint32_t)ha, (uint32_t)(ha + b->n - sb),
                                                 b_first + shift, shift};
    }
    out->n = m;
    qsort(keys, n, sizeof(*keys), cmp_splice_key);
    for (size_t i = 0; i < n; i++) {
        copy[i] = ev[keys[i].orig];
        copy[i].user_id = keys[i].user;
        copy[i].timestamp_ms = keys[i].ts;
    }
    memcpy(ev, copy, n * sizeof(*ev));
    rc = 0;
out:
    if (rc == DR_ENOMEM) snprintf(err, errn, "splicing users: out of memory");
    if (rc) dr_splice_free(out);
    free(refs); free(users); free(order); free(keys); free(copy);
    return rc;
}
