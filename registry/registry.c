/* registry.c - the Schema Registry client (dr_registry.h): one libcurl easy
 * handle per client for keep-alive, jansson for the JSON, retries with
 * backoff and a circuit breaker around an unreachable registry. */
#include "dr_registry.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "dr_err.h"
#include "dr_log.h"

/* A schema is a few KiB; anything near this is not a registry answering. */
#define MAX_RESPONSE_BYTES (4u << 20)
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
/* The shortest timeout a retry gets when little of wait_ms is left: less
 * could not even complete a connect to a registry in the same data centre. */
#define RETRY_MIN_TIMEOUT_MS 100
/* How much of a registry's error message or unexpected body goes in errstr. */
#define SNIPPET_CHARS 200

struct dr_registry {
    char *url;          /* base URL, without trailing '/' */
    char *basic_auth;   /* "user:password" or NULL; wiped on free */
    char *key_password; /* NULL or the TLS key's password; wiped on free */
    int timeout_ms;
    int wait_ms;
    CURL *curl;
    struct curl_slist *get_headers, *post_headers;
    char curl_error[CURL_ERROR_SIZE];
    int64_t circuit_open_until_ms; /* dr_mono_ms(); 0 = closed */
    char last_failure[512];        /* why the circuit opened, for fast failures */
    dr_registry_stats_t stats;
};

/* What one HTTP request brought back. */
typedef struct reply {
    long status; /* 0 when no HTTP answer came */
    char *body;
    size_t len, cap;
    bool too_large;
} reply_t;

/* ---- small helpers ---------------------------------------------------- */

static void set_err(char *errstr, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errstr, size_t n, const char *fmt, ...) {
    if (!errstr || n == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
}

static bool empty(const char *s) { return !s || !*s; }

/* Copies at most SNIPPET_CHARS of untrusted text for a one-line message:
 * control characters (a registry's multi-line stack trace) become spaces. */
static void snippet(char *dst, size_t n, const char *src, size_t len) {
    size_t out = 0;
    for (size_t i = 0; i < len && out + 1 < n && i < SNIPPET_CHARS; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[out++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    if (n) dst[out] = '\0';
}

static void wipe_free(char *secret) {
    if (!secret) return;
    explicit_bzero(secret, strlen(secret));
    free(secret);
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* curl_global_init is not thread-safe on older libcurl and must run once
 * before the first easy handle; the result is kept for every later client.
 * The library never calls curl_global_cleanup: other code in the process may
 * use libcurl too (a program that wants a leak-free exit calls it last). */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;
static void curl_init_once(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- configuration ---------------------------------------------------- */

void dr_registry_conf_default(dr_registry_conf_t *conf) {
    memset(conf, 0, sizeof(*conf));
    conf->timeout_ms = 5000;
    conf->wait_ms = 10000;
}

/* Accepts http(s)://host[:port][/prefix] only: credentials would end up in
 * error messages, and a query or fragment would swallow the paths we append. */
static int check_url(const char *url, char *errstr, size_t n) {
    if (empty(url)) {
        set_err(errstr, n, "schema registry url is missing");
        return DR_ECONFIG;
    }
    CURLU *u = curl_url();
    if (!u) {
        set_err(errstr, n, "out of memory");
        return DR_ENOMEM;
    }
    int rc = DR_ECONFIG;
    char *scheme = NULL, *user = NULL, *query = NULL, *fragment = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        set_err(errstr, n, "schema registry url \"%s\" is not a URL: %s", url,
                curl_url_strerror(uc));
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        set_err(errstr, n, "schema registry url \"%s\": only http:// and https:// are supported",
                url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        /* The url itself is not echoed: it holds the credentials. */
        set_err(errstr, n, "schema registry url must not contain credentials; use basic_auth");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK) {
        set_err(errstr, n, "schema registry url \"%s\" must not have a query or fragment", url);
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(user);
    curl_free(query);
    curl_free(fragment);
    curl_url_cleanup(u);
    return rc;
}

static int check_conf(const dr_registry_conf_t *conf, char *errstr, size_t n) {
    int rc = check_url(conf->url, errstr, n);
    if (rc) return rc;
    if (!empty(conf->basic_auth) && !strchr(conf->basic_auth, ':')) {
        set_err(errstr, n, "schema registry basic_auth must be \"user:password\"");
        return DR_ECONFIG;
    }
    if (conf->timeout_ms <= 0) {
        set_err(errstr, n, "schema registry timeout_ms must be > 0 (is %d)", conf->timeout_ms);
        return DR_ECONFIG;
    }
    if (conf->wait_ms < 0) {
        set_err(errstr, n, "schema registry wait_ms must be >= 0 (is %d)", conf->wait_ms);
        return DR_ECONFIG;
    }
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque) {
    reply_t *rep = opaque;
    size_t len = size * nmemb;
    if (len > MAX_RESPONSE_BYTES - rep->len) {
        rep->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (rep->len + len + 1 > rep->cap) {
        size_t cap = rep->cap ? rep->cap : 4096;
        while (cap < rep->len + len + 1) cap *= 2;
        char *body = realloc(rep->body, cap);
        if (!body) return 0;
        rep->body = body;
        rep->cap = cap;
    }
    memcpy(rep->body + rep->len, data, len);
    rep->len += len;
    rep->body[rep->len] = '\0';
    return len;
}

/* The options that stay the same for every request of this client. */
static int setup_handle(dr_registry_t *r, const dr_registry_conf_t *conf) {
    CURL *c = r->curl;
    CURLcode e = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (e == CURLE_OK) e = curl_easy_setopt(c, opt, val)
    SET(CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for resolver timeouts in a threaded program */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* a registry does not redirect; credentials stay put */
    SET(CURLOPT_ERRORBUFFER, r->curl_error);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_USERAGENT, "driftrec-registry/1");
    SET(CURLOPT_TCP_NODELAY, 1L);
    if (!empty(conf->ca_location)) SET(CURLOPT_CAINFO, conf->ca_location);
    if (!empty(conf->cert_location)) SET(CURLOPT_SSLCERT, conf->cert_location);
    if (!empty(conf->key_location)) SET(CURLOPT_SSLKEY, conf->key_location);
    if (r->key_password) SET(CURLOPT_KEYPASSWD, r->key_password);
    if (r->basic_auth) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERPWD, r->basic_auth);
    }
#undef SET
    return e == CURLE_OK ? 0 : DR_ENOMEM;
}

int dr_registry_new(dr_registry_t **out, const dr_registry_conf_t *conf, char *errstr, size_t n) {
    if (!out || !conf) {
        set_err(errstr, n, "dr_registry_new: NULL argument");
        return DR_EINVAL;
    }
    *out = NULL;
    int rc = check_conf(conf, errstr, n);
    if (rc) return rc;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK) {
        set_err(errstr, n, "libcurl initialisation failed: %s",
                curl_easy_strerror(curl_init_result));
        return DR_ENOMEM;
    }
    dr_registry_t *r = calloc(1, sizeof(*r));
    if (!r) goto out_nomem;
    r->timeout_ms = conf->timeout_ms;
    r->wait_ms = conf->wait_ms;
    if (!(r->url = strdup(conf->url))) goto out_nomem;
    for (size_t len = strlen(r->url); len > 0 && r->url[len - 1] == '/'; len--)
        r->url[len - 1] = '\0';
    if (!empty(conf->basic_auth) && !(r->basic_auth = strdup(conf->basic_auth))) goto out_nomem;
    if (!empty(conf->key_password) && !(r->key_password = strdup(conf->key_password)))
        goto out_nomem;
    const char *accept = "Accept: application/vnd.schemaregistry.v1+json, application/json";
    if (!(r->get_headers = curl_slist_append(NULL, accept))) goto out_nomem;
    /* "Expect:" keeps curl from waiting for a 100-continue on larger schemas. */
    struct curl_slist *h = curl_slist_append(NULL, accept);
    if (h) r->post_headers = h;
    if (!h || !(h = curl_slist_append(h, "Content-Type: application/vnd.schemaregistry.v1+json")) ||
        !(h = curl_slist_append(h, "Expect:")))
        goto out_nomem;
    if (!(r->curl = curl_easy_init()) || setup_handle(r, conf) != 0) goto out_nomem;
    *out = r;
    return 0;
out_nomem:
    dr_registry_free(r);
    set_err(errstr, n, "out of memory");
    return DR_ENOMEM;
}

void dr_registry_free(dr_registry_t *r) {
    if (!r) return;
    if (r->curl) curl_easy_cleanup(r->curl);
    curl_slist_free_all(r->get_headers);
    curl_slist_free_all(r->post_headers);
    wipe_free(r->basic_auth);
    wipe_free(r->key_password);
    free(r->url);
    free(r);
}

void dr_registry_stats(const dr_registry_t *r, dr_registry_stats_t *out) {
    if (!out) return;
    if (!r) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = r->stats;
}

/* "HTTP 404, error_code 40403: Schema not found" from an error answer, with
 * a snippet of the body when it is not the registry's JSON error. Returns
 * the error_code, or -1 when there is none. */
static long long describe_status(const reply_t *rep, char *out, size_t n) {
    json_t *doc = rep->len ? json_loadb(rep->body, rep->len, 0, NULL) : NULL;
    json_t *code = json_object_get(doc, "error_code");
    json_t *msg = json_object_get(doc, "message");
    char text[SNIPPET_CHARS + 1] = "";
    long long error_code = json_is_integer(code) ? json_integer_value(code) : -1;
    if (json_is_integer(code)) {
        if (json_is_string(msg))
            snippet(text, sizeof(text), json_string_value(msg), json_string_length(msg));
        snprintf(out, n, "HTTP %ld, error_code %" JSON_INTEGER_FORMAT ": %s", rep->status,
                 json_integer_value(code), text);
    } else {
        snippet(text, sizeof(text), rep->body ? rep->body : "", rep->len);
        snprintf(out, n, "HTTP %ld%s%s", rep->status, text[0] ? ": " : "", text);
    }
    json_decref(doc);
    return error_code;
}

/* ---- one request, and the retry loop around it ------------------------ */

typedef enum attempt {
    ATTEMPT_ANSWERED,  /* an HTTP status came back that is not worth retrying */
    ATTEMPT_RETRYABLE, /* no answer, a timeout, a 5xx or a 429 */
    ATTEMPT_FAILED,    /* an error no retry fixes (TLS trust, a huge body); errstr set */
} attempt_t;

/* curl errors that say the configuration is wrong rather than the network:
 * retrying them only delays the message the operator needs. */
static bool curl_error_is_config(CURLcode e) {
    switch (e) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_LOGIN_DENIED:
        return true;
    default:
        return false;
    }
}

static attempt_t attempt_once(dr_registry_t *r, const char *url, const char *post_body,
                              long timeout_ms, reply_t *rep, int *fail_rc, char *why, size_t whyn) {
    CURL *c = r->curl;
    rep->len = 0;
    rep->status = 0;
    rep->too_large = false;
    if (rep->body) rep->body[0] = '\0';
    r->curl_error[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, rep);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    if (post_body) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(post_body));
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->post_headers);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->get_headers);
    }
    r->stats.requests++;
    CURLcode e = curl_easy_perform(c);
    const char *detail = r->curl_error[0] ? r->curl_error : curl_easy_strerror(e);
    if (rep->too_large) {
        snprintf(why, whyn, "response too large (over %u bytes)", MAX_RESPONSE_BYTES);
        *fail_rc = DR_ESCHEMA;
        return ATTEMPT_FAILED;
    }
    if (e == CURLE_WRITE_ERROR) { /* on_body could not allocate */
        snprintf(why, whyn, "out of memory reading the response");
        *fail_rc = DR_ENOMEM;
        return ATTEMPT_FAILED;
    }
    if (curl_error_is_config(e)) {
        snprintf(why, whyn, "%s (check ca_location, cert_location and key_location)", detail);
        *fail_rc = DR_ECONFIG;
        return ATTEMPT_FAILED;
    }
    if (e != CURLE_OK) {
        snprintf(why, whyn, "%s", detail);
        return ATTEMPT_RETRYABLE;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rep->status);
    if (rep->status >= 500 || rep->status == 429) {
        describe_status(rep, why, whyn);
        return ATTEMPT_RETRYABLE;
    }
    return ATTEMPT_ANSWERED;
}

/* Sends one request, retrying what is retryable for up to wait_ms, behind
 * the circuit breaker. 0 with a final HTTP status in rep, or an error code
 * with errstr set ("<what>: ..."). */
static int perform(dr_registry_t *r, const char *what, const char *path, const char *post_body,
                   reply_t *rep, char *errstr, size_t n) {
    int64_t start = dr_mono_ms();
    if (r->circuit_open_until_ms && start < r->circuit_open_until_ms) {
        r->stats.fast_failures++;
        set_err(errstr, n,
                "%s: schema registry %s unavailable, not retried for another %" PRId64
                " ms (last: %s)",
                what, r->url, r->circuit_open_until_ms - start, r->last_failure);
        return DR_EAGAIN;
    }
    r->circuit_open_until_ms = 0;
    size_t url_len = strlen(r->url) + strlen(path) + 1;
    char *url = malloc(url_len);
    if (!url) {
        set_err(errstr, n, "out of memory");
        return DR_ENOMEM;
    }
    snprintf(url, url_len, "%s%s", r->url, path);
    int64_t deadline = start + r->wait_ms;
    int64_t backoff = BACKOFF_FIRST_MS;
    long timeout = r->timeout_ms;
    int tries = 0, rc = 0, fail_rc = 0;
    char why[512] = "";
    for (;;) {
        tries++;
        attempt_t a = attempt_once(r, url, post_body, timeout, rep, &fail_rc, why, sizeof(why));
        if (a == ATTEMPT_ANSWERED) break;
        if (a == ATTEMPT_FAILED) {
            set_err(errstr, n, "%s: schema registry %s: %s", what, r->url, why);
            rc = fail_rc;
            break;
        }
        int64_t left = deadline - dr_mono_ms();
        if (r->wait_ms == 0 || left <= 0) {
            set_err(errstr, n,
                    "%s: schema registry %s unavailable (%d %s in %" PRId64 " ms; last: %s)", what,
                    r->url, tries, tries == 1 ? "try" : "tries", dr_mono_ms() - start, why);
            rc = DR_EAGAIN;
            if (r->wait_ms > 0) {
                snprintf(r->last_failure, sizeof(r->last_failure), "%s", why);
                r->circuit_open_until_ms = dr_mono_ms() + r->wait_ms;
            }
            break;
        }
        sleep_ms(backoff < left ? backoff : left);
        backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
        /* The last tries get what is left of wait_ms, so a call that keeps
         * failing ends near wait_ms rather than up to timeout_ms after it. */
        left = deadline - dr_mono_ms();
        timeout = left < r->timeout_ms ? (left > RETRY_MIN_TIMEOUT_MS ? left : RETRY_MIN_TIMEOUT_MS)
                                       : r->timeout_ms;
        r->stats.retries++;
    }
    free(url);
    return rc;
}

/* ---- answers ---------------------------------------------------------- */

/* Maps an HTTP status that is not 2xx to an error code, errstr set. */
static int status_error(const dr_registry_t *r, const char *what, const reply_t *rep,
                        bool schema_rejections, char *errstr, size_t n) {
    char desc[512];
    long long error_code = describe_status(rep, desc, sizeof(desc));
    long s = rep->status;
    if (s == 404) {
        /* 4040x are the registry's own "not found"s; any other 404 is most
         * likely a url whose path prefix is wrong (Apicurio's ccompat API
         * lives under /apis/ccompat/v7, for one). */
        bool registry_404 = error_code >= 40400 && error_code <= 40499;
        set_err(errstr, n, "%s: not found (%s; registry %s%s)", what, desc, r->url,
                registry_404 ? "" : "; is the url's path right?");
        return DR_ENOTFOUND;
    }
    if (schema_rejections && (s == 409 || s == 422)) {
        set_err(errstr, n, "%s: rejected by the registry (%s)", what, desc);
        return DR_ESCHEMA;
    }
    if (s == 401 || s == 403) {
        set_err(errstr, n, "%s: %s by schema registry %s (%s; check basic_auth)", what,
                s == 401 ? "not authenticated" : "not allowed", r->url, desc);
        return DR_ECONFIG;
    }
    if (s >= 300 && s < 400) {
        set_err(errstr, n,
                "%s: schema registry %s answered with a redirect (%s), which is not "
                "followed; set url to the registry itself",
                what, r->url, desc);
        return DR_ECONFIG;
    }
    set_err(errstr, n, "%s: unexpected answer from schema registry %s (%s)", what, r->url, desc);
    return DR_ECONFIG;
}

/* Parses a 2xx body as a JSON object; NULL with errstr set otherwise. */
static json_t *answer_object(const char *what, const reply_t *rep, char *errstr, size_t n) {
    json_error_t jerr;
    json_t *doc = json_loadb(rep->body ? rep->body : "", rep->len, 0, &jerr);
    if (!json_is_object(doc)) {
        char text[SNIPPET_CHARS + 1];
        snippet(text, sizeof(text), rep->body ? rep->body : "", rep->len);
        set_err(errstr, n, "%s: HTTP %ld with %s: %s", what, rep->status,
                doc ? "a JSON value that is not an object" : "a body that is not JSON", text);
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* Counts a failed call, unless the circuit refused it (fast_failures did). */
static int finish(dr_registry_t *r, int rc, uint64_t fast_failures_before) {
    if (rc && r->stats.fast_failures == fast_failures_before) r->stats.failures++;
    return rc;
}

/* The schema of a 2xx answer to GET /schemas/ids/{id}. */
static int parse_schema(const char *what, const reply_t *rep, char **schema_json, char *errstr,
                        size_t n) {
    json_t *doc = answer_object(what, rep, errstr, n);
    if (!doc) return DR_ESCHEMA;
    int rc = 0;
    json_t *schema = json_object_get(doc, "schema");
    json_t *type = json_object_get(doc, "schemaType");
    if (!json_is_string(schema)) {
        set_err(errstr, n, "%s: the registry's answer has no \"schema\" string", what);
        rc = DR_ESCHEMA;
    } else if (type && !(json_is_string(type) && strcmp(json_string_value(type), "AVRO") == 0)) {
        char name[64] = "(not a string)";
        if (json_is_string(type))
            snippet(name, sizeof(name), json_string_value(type), json_string_length(type));
        set_err(errstr, n, "%s: schemaType %s is not AVRO", what, name);
        rc = DR_ESCHEMA;
    } else if (!(*schema_json = strdup(json_string_value(schema)))) {
        set_err(errstr, n, "out of memory");
        rc = DR_ENOMEM;
    }
    json_decref(doc);
    return rc;
}

int dr_registry_schema_by_id(dr_registry_t *r, int32_t id, char **schema_json, char *errstr,
                             size_t n) {
    if (schema_json) *schema_json = NULL;
    if (!r || !schema_json || id < 0) {
        set_err(errstr, n, "dr_registry_schema_by_id: %s",
                r && schema_json ? "negative schema id" : "NULL argument");
        if (r) r->stats.failures++;
        return DR_EINVAL;
    }
    uint64_t fast_before = r->stats.fast_failures;
    char what[48], path[48];
    snprintf(what, sizeof(what), "schema id %" PRId32, id);
    snprintf(path, sizeof(path), "/schemas/ids/%" PRId32, id);
    reply_t rep = {0};
    int rc = perform(r, what, path, NULL, &rep, errstr, n);
    if (rc == 0 && (rep.status < 200 || rep.status >= 300))
        rc = status_error(r, what, &rep, false, errstr, n);
    else if (rc == 0)
        rc = parse_schema(what, &rep, schema_json, errstr, n);
    free(rep.body);
    return finish(r, rc, fast_before);
}

/* {"schema": schema_json} as compact JSON (malloc'd), or NULL when
 * schema_json is not UTF-8 (jansson refuses it) or memory runs out. */
static char *register_body(const char *schema_json) {
    json_t *req = json_pack("{s:s}", "schema", schema_json);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    return body;
}

/* The id of a 2xx answer to POST /subjects/{subject}/versions. */
static int parse_id(const char *what, const reply_t *rep, int32_t *id, char *errstr, size_t n) {
    json_t *doc = answer_object(what, rep, errstr, n);
    if (!doc) return DR_ESCHEMA;
    json_t *jid = json_object_get(doc, "id");
    int rc = 0;
    if (!json_is_integer(jid) || json_integer_value(jid) < 0 ||
        json_integer_value(jid) > INT32_MAX) {
        set_err(errstr, n, "%s: the registry's answer has no \"id\" in 0..2147483647", what);
        rc = DR_ESCHEMA;
    } else {
        *id = (int32_t)json_integer_value(jid);
    }
    json_decref(doc);
    return rc;
}

int dr_registry_register(dr_registry_t *r, const char *subject, const char *schema_json,
                         int32_t *id, char *errstr, size_t n) {
    if (!r || empty(subject) || !schema_json || !id) {
        set_err(errstr, n, "dr_registry_register: %s",
                r && subject && schema_json && id ? "empty subject" : "NULL argument");
        if (r) r->stats.failures++;
        return DR_EINVAL;
    }
    uint64_t fast_before = r->stats.fast_failures;
    int rc = 0;
    reply_t rep = {0};
    char *path = NULL, *what = NULL;
    char *escaped = curl_easy_escape(r->curl, subject, 0);
    char *body = register_body(schema_json);
    if (!body) {
        set_err(errstr, n, "subject %s: the schema is not valid UTF-8 (or out of memory)", subject);
        rc = DR_EINVAL;
        goto out;
    }
    size_t path_len = escaped ? strlen(escaped) + sizeof("/subjects//versions") : 0;
    size_t what_len = strlen(subject) + sizeof("registering under subject ");
    if (!escaped || !(path = malloc(path_len)) || !(what = malloc(what_len))) {
        set_err(errstr, n, "out of memory");
        rc = DR_ENOMEM;
        goto out;
    }
    snprintf(path, path_len, "/subjects/%s/versions", escaped);
    snprintf(what, what_len, "registering under subject %s", subject);
    rc = perform(r, what, path, body, &rep, errstr, n);
    if (rc == 0 && (rep.status < 200 || rep.status >= 300))
        rc = status_error(r, what, &rep, true, errstr, n);
    else if (rc == 0)
        rc = parse_id(what, &rep, id, errstr, n);
out:
    free(rep.body);
    free(what);
    free(path);
    curl_free(escaped);
    free(body);
    return finish(r, rc, fast_before);
}
