/* test_registry.c - the Schema Registry client (registry/dr_registry.h)
 * against tests/registry/registry_server.py, a small Confluent-compatible
 * registry started with python3 for each case: fetching and registering,
 * what each kind of refusal maps to, retries, the circuit breaker, a dead
 * port, a slow registry, basic auth and TLS. Skipped, with a message, where
 * python3 (or, for TLS, openssl) is missing. */
#include "dr_test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "dr_err.h"
#include "dr_log.h"
#include "dr_registry.h"

extern char **environ;

#define PRELOADED_ID 42
#define PRELOADED_SUBJECT "events-value"
/* Slack for scheduling and for python on a loaded machine, in the time bounds. */
#define MARGIN_MS 1000

typedef struct server {
    pid_t pid;
    int out_fd; /* its stdout, where it wrote its port */
    int port;
    char url[80];
} server_t;

typedef struct fixture {
    server_t srv;
    char dir[128];
    char schema_path[512]; /* schemas/UserEvent.avsc, preloaded as id 42 */
    char *schema42;        /* ... and its text */
    dr_registry_t *reg;
} fixture_t;

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("expected \"%s\" in \"%s\"", (needle), (haystack));                           \
    } while (0)

#define assert_lacks(haystack, needle)                                                             \
    do {                                                                                           \
        if (strstr((haystack), (needle)))                                                          \
            fail_msg("did not expect \"%s\" in \"%s\"", (needle), (haystack));                     \
    } while (0)

/* The calls on the fixture's client, with the case's local errstr `err`. */
#define FETCH(id, schema_out) dr_registry_schema_by_id(f->reg, (id), (schema_out), err, sizeof(err))
#define REGISTER(subject, schema, id_out)                                                          \
    dr_registry_register(f->reg, (subject), (schema), (id_out), err, sizeof(err))

/* ---- helpers ---------------------------------------------------------- */

static char *read_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = '\0';
    fclose(fp);
    return buf;
}

static bool on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path) return false;
    char *copy = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char full[1024];
        snprintf(full, sizeof(full), "%s/%s", d, prog);
        found = access(full, X_OK) == 0;
    }
    free(copy);
    return found;
}

static const char *source_dir(void) {
    const char *dir = getenv("DR_SOURCE_DIR");
    return dir && *dir ? dir : DR_SOURCE_DIR;
}

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Reads the port line the server writes first; -1 when it exits first. */
static int read_port(int fd) {
    char line[32];
    size_t len = 0;
    int64_t deadline = dr_mono_ms() + 15000;
    while (len + 1 < sizeof(line)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(deadline - dr_mono_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0) return -1;
        ssize_t got = read(fd, line + len, 1);
        if (got <= 0) return -1;
        if (line[len] == '\n') break;
        len++;
    }
    line[len] = '\0';
    return atoi(line);
}

static void stop_server(server_t *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int status;
        int64_t deadline = dr_mono_ms() + 5000;
        while (waitpid(s->pid, &status, WNOHANG) == 0) {
            if (dr_mono_ms() > deadline) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, &status, 0);
                break;
            }
            sleep_ms(10);
        }
    }
    if (s->out_fd > 0) close(s->out_fd);
    memset(s, 0, sizeof(*s));
}

/* Starts registry_server.py with id 42 preloaded, plus `extra` arguments
 * (NULL-terminated); skips the test when python3 or the script is missing. */
static void start_server(fixture_t *f, bool tls, const char *const *extra) {
    char script[512], preload[700];
    snprintf(script, sizeof(script), "%s/tests/registry/registry_server.py", source_dir());
    if (access(script, R_OK) != 0 || !on_path("python3")) {
        fprintf(stderr, "skipped: needs python3 on PATH and %s\n", script);
        skip();
    }
    snprintf(preload, sizeof(preload), "%d:%s:%s", PRELOADED_ID, PRELOADED_SUBJECT, f->schema_path);
    const char *argv[24] = {"python3", script, "--port", "0", "--preload", preload};
    int argc = 6;
    for (int i = 0; extra && extra[i] && argc < 23; i++) argv[argc++] = extra[i];
    argv[argc] = NULL;

    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    int rc = posix_spawnp(&f->srv.pid, "python3", &actions, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    f->srv.out_fd = fds[0];
    if (rc != 0) {
        f->srv.pid = 0;
        fprintf(stderr, "skipped: cannot start python3: %s\n", strerror(rc));
        skip();
    }
    f->srv.port = read_port(f->srv.out_fd);
    if (f->srv.port <= 0) fail_msg("registry_server.py did not start (see its stderr above)");
    snprintf(f->srv.url, sizeof(f->srv.url), "%s://127.0.0.1:%d", tls ? "https" : "http",
             f->srv.port);
}

/* A request to the server's control or config endpoints (plain http);
 * returns the HTTP status, the body in out. */
static long control(const server_t *s, const char *method, const char *path, json_t *body,
                    char *out, size_t n) {
    char url[256];
    snprintf(url, sizeof(url), "%s%s", s->url, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    FILE *sink = fmemopen(out, n, "w");
    assert_non_null(sink);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    if (text) curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    fclose(sink);
    free(text);
    return status;
}

/* The next `count` requests (-1: all until cleared) answer `status`, with
 * `body` verbatim when not NULL, or a 200 of `size` bytes when size > 0. */
static void inject(const server_t *s, int status, int count, const char *body, const char *location,
                   int size) {
    json_t *req = json_pack("{s:i,s:i,s:i}", "status", status, "count", count, "size", size);
    if (body) json_object_set_new(req, "body", json_string(body));
    if (location) json_object_set_new(req, "location", json_string(location));
    char out[256];
    assert_int_equal(control(s, "POST", "/_test/fail", req, out, sizeof(out)), 200);
}

static void set_delay(const server_t *s, int ms) {
    char out[256];
    assert_int_equal(
        control(s, "POST", "/_test/delay", json_pack("{s:i}", "ms", ms), out, sizeof(out)), 200);
}

static dr_registry_t *client(const char *url, int timeout_ms, int wait_ms, const char *auth,
                             const char *ca) {
    dr_registry_conf_t conf;
    dr_registry_conf_default(&conf);
    conf.url = url;
    conf.timeout_ms = timeout_ms;
    conf.wait_ms = wait_ms;
    conf.basic_auth = auth;
    conf.ca_location = ca;
    char err[512] = "";
    dr_registry_t *r = NULL;
    int rc = dr_registry_new(&r, &conf, err, sizeof(err));
    if (rc) fail_msg("dr_registry_new(%s): %s", url, err);
    return r;
}

/* ---- fixture ---------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    dr_test_tmpdir(f->dir, sizeof(f->dir), "registry");
    snprintf(f->schema_path, sizeof(f->schema_path), "%s/schemas/UserEvent.avsc", source_dir());
    f->schema42 = read_file(f->schema_path);
    *state = f;
    return 0;
}

/* Runs after a failed test too: the server never outlives its case. */
static int teardown(void **state) {
    fixture_t *f = *state;
    dr_registry_free(f->reg);
    stop_server(&f->srv);
    int rc = nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f->schema42);
    free(f);
    return rc;
}

/* ---- cases ------------------------------------------------------------ */

/* "DR_ECONFIG for a missing/unsupported url (only http:// and https://), a
 * basic_auth without ':', timeout_ms <= 0, wait_ms < 0 ... Does no network I/O." */
static void test_new_refuses_bad_conf(void **state) {
    (void)state;
    static const struct {
        const char *url, *auth;
        int timeout_ms, wait_ms, rc;
    } cases[] = {
        /* 1 */ {NULL, NULL, 5000, 10000, DR_ECONFIG},
        /* 2 */ {"", NULL, 5000, 10000, DR_ECONFIG},
        /* 3 */ {"ftp://x", NULL, 5000, 10000, DR_ECONFIG},
        /* 4 */ {"file:///etc/passwd", NULL, 5000, 10000, DR_ECONFIG},
        /* 5 */ {"127.0.0.1:8081", NULL, 5000, 10000, DR_ECONFIG},
        /* 6 */ {"http://", NULL, 5000, 10000, DR_ECONFIG},
        /* 7 */ {"http://user:Secret-In-Url@host:8081", NULL, 5000, 10000, DR_ECONFIG},
        /* 8 */ {"http://host:8081/?x=1", NULL, 5000, 10000, DR_ECONFIG},
        /* 9 */ {"http://host:8081", "no-colon", 5000, 10000, DR_ECONFIG},
        /* 10 */ {"http://host:8081", NULL, 0, 10000, DR_ECONFIG},
        /* 11 */ {"http://host:8081", NULL, -5, 10000, DR_ECONFIG},
        /* 12 */ {"http://host:8081", NULL, 5000, -1, DR_ECONFIG},
        /* 13 */ {"http://host:8081", NULL, 5000, 0, 0},
        /* 14 */ {"https://registry.example/apis/ccompat/v7/", "u:p", 5000, 10000, 0},
        /* 15 */ {"HTTP://host:8081", "", 1, 0, 0},
        /* 16: nothing listens on port 1, and no I/O happens before the first call */
        {"http://127.0.0.1:1", NULL, 5000, 10000, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dr_registry_conf_t conf;
        dr_registry_conf_default(&conf);
        conf.url = cases[i].url;
        conf.basic_auth = cases[i].auth;
        conf.timeout_ms = cases[i].timeout_ms;
        conf.wait_ms = cases[i].wait_ms;
        char err[512] = "";
        dr_registry_t *r = (dr_registry_t *)&conf; /* must be reset to NULL on error */
        int rc = dr_registry_new(&r, &conf, err, sizeof(err));
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, want %d: %s", i + 1,
                     cases[i].url ? cases[i].url : "NULL", rc, cases[i].rc, err);
        if (rc) {
            assert_null(r);
            assert_true(err[0] != '\0');
            assert_lacks(err, "Secret-In-Url");
        }
        dr_registry_free(r);
    }
    dr_registry_conf_t defaults;
    dr_registry_conf_default(&defaults);
    assert_int_equal(defaults.timeout_ms, 5000);
    assert_int_equal(defaults.wait_ms, 10000);
    assert_null(defaults.url);
    dr_registry_free(NULL);
    assert_int_equal(dr_registry_new(NULL, &defaults, NULL, 0), DR_EINVAL);
}

/* "GET {url}/schemas/ids/{id}. On 0, *schema_json is a malloc'd copy of the
 * response's "schema" string"; DR_ENOTFOUND for a 404; DR_EINVAL for NULL/id < 0. */
static void test_fetch_by_id(void **state) {
    fixture_t *f = *state;
    start_server(f, false, NULL);
    f->reg = client(f->srv.url, 2000, 1000, NULL, NULL);
    char err[512] = "", *schema = NULL;
    assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
    assert_string_equal(schema, f->schema42); /* byte for byte, newlines and all */
    free(schema);
    /* again, on the kept-alive connection */
    assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
    assert_string_equal(schema, f->schema42);
    free(schema);

    schema = (char *)"untouched";
    assert_int_equal(FETCH(7, &schema), DR_ENOTFOUND);
    assert_null(schema);
    assert_contains(err, "schema id 7");
    assert_contains(err, "HTTP 404");
    assert_contains(err, "40403");

    /* a 404 that is not the registry's (a wrong path prefix, a proxy) */
    inject(&f->srv, 404, 1, "<html>no such page</html>", NULL, 0);
    assert_int_equal(FETCH(PRELOADED_ID, &schema), DR_ENOTFOUND);
    assert_contains(err, "no such page");
    assert_contains(err, "path");

    assert_int_equal(FETCH(-1, &schema), DR_EINVAL);
    assert_int_equal(FETCH(1, NULL), DR_EINVAL);
    assert_int_equal(dr_registry_schema_by_id(NULL, 1, &schema, err, sizeof(err)), DR_EINVAL);
    assert_int_equal(dr_registry_schema_by_id(f->reg, PRELOADED_ID, &schema, NULL, 0), 0);
    free(schema);

    dr_registry_stats_t st;
    dr_registry_stats(f->reg, &st);
    assert_int_equal(st.requests, 5);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.failures, 4); /* 7, the foreign 404, id -1, NULL out */
    assert_int_equal(st.fast_failures, 0);
}

/* Answers no registry should give: each maps to the documented error, and
 * the connection stays usable afterwards. */
static void test_hostile_answers(void **state) {
    fixture_t *f = *state;
    start_server(f, false, NULL);
    f->reg = client(f->srv.url, 3000, 1000, NULL, NULL);
    static const struct {
        int status;
        const char *body, *location;
        int size;
        bool fetch; /* else register */
        int rc;
        const char *says;
    } cases[] = {
        /* 1 */ {200, "not json", NULL, 0, true, DR_ESCHEMA, "not JSON"},
        /* 2 */ {200, "[1, 2]", NULL, 0, true, DR_ESCHEMA, "not an object"},
        /* 3 */ {200, "{\"schema\": 5}", NULL, 0, true, DR_ESCHEMA, "\"schema\""},
        /* 4 */
        {200, "{\"schema\": \"\\\"int\\\"\", \"schemaType\": \"PROTOBUF\"}", NULL, 0, true,
         DR_ESCHEMA, "PROTOBUF"},
        /* 5 */
        {200, "{\"schema\": \"\\\"int\\\"\", \"schemaType\": 3}", NULL, 0, true, DR_ESCHEMA,
         "not a string"},
        /* 6: over the 4 MiB cap */
        {200, NULL, NULL, 5 << 20, true, DR_ESCHEMA, "too large"},
        /* 7 */ {403, NULL, NULL, 0, true, DR_ECONFIG, "not allowed"},
        /* 8 */ {418, NULL, NULL, 0, true, DR_ECONFIG, "HTTP 418"},
        /* 9: a redirect, to another protocol at that: not followed */
        {301, "", "ftp://elsewhere/schemas/ids/42", 0, true, DR_ECONFIG, "redirect"},
        /* 10: a multi-line registry message stays on one line */
        {400, "{\"error_code\": 40001, \"message\": \"bad\\nrequest\"}", NULL, 0, true, DR_ECONFIG,
         "error_code 40001: bad request"},
        /* 11 */
        {200, "{\"schema\": \"\\\"int\\\"\", \"schemaType\": \"AVRO\"}", NULL, 0, true, 0, NULL},
        /* 12 */ {200, "{\"id\": \"7\"}", NULL, 0, false, DR_ESCHEMA, "\"id\""},
        /* 13 */ {200, "{\"id\": 4294967296}", NULL, 0, false, DR_ESCHEMA, "\"id\""},
        /* 14 */ {200, "{\"id\": -3}", NULL, 0, false, DR_ESCHEMA, "\"id\""},
        /* 15 */ {200, "{}", NULL, 0, false, DR_ESCHEMA, "\"id\""},
        /* 16 */ {404, NULL, NULL, 0, false, DR_ENOTFOUND, "HTTP 404"},
        /* 17 */ {401, NULL, NULL, 0, false, DR_ECONFIG, "not authenticated"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        inject(&f->srv, cases[i].status, 1, cases[i].body, cases[i].location, cases[i].size);
        char err[512] = "", *schema = NULL;
        int32_t id = -1;
        int rc = cases[i].fetch ? FETCH(42, &schema) : REGISTER("s", "\"int\"", &id);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, want %d: %s", i + 1, rc, cases[i].rc, err);
        if (cases[i].says) assert_contains(err, cases[i].says);
        assert_null(strchr(err, '\n'));
        if (rc == 0 && cases[i].fetch) assert_string_equal(schema, "\"int\"");
        free(schema);
        /* and the next, normal call works */
        assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
        free(schema);
    }
    dr_registry_stats_t st;
    dr_registry_stats(f->reg, &st);
    assert_int_equal(st.retries, 0); /* none of these is worth retrying */
}

/* "retrying an unreachable registry (connection errors, timeouts, HTTP 5xx
 * and 429) with exponential backoff": two 503s and a 429, then success. */
static void test_retry_then_success(void **state) {
    fixture_t *f = *state;
    start_server(f, false, NULL);
    f->reg = client(f->srv.url, 2000, 4000, NULL, NULL);
    inject(&f->srv, 503, 2, NULL, NULL, 0);
    char err[512] = "", *schema = NULL;
    int64_t t0 = dr_mono_ms();
    assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
    int64_t took = dr_mono_ms() - t0;
    assert_string_equal(schema, f->schema42);
    free(schema);
    assert_true(took >= 100 + 200 - 20); /* the backoff: 100 ms, then 200 ms */
    dr_registry_stats_t st;
    dr_registry_stats(f->reg, &st);
    assert_true(st.retries >= 2);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.failures, 0);

    int32_t id = -1;
    inject(&f->srv, 429, 1, NULL, NULL, 0);
    assert_int_equal(REGISTER("copy-value", f->schema42, &id), 0);
    assert_int_equal(id, PRELOADED_ID);
    dr_registry_stats(f->reg, &st);
    assert_int_equal(st.retries, 3);

    char out[512];
    assert_int_equal(control(&f->srv, "GET", "/_test/requests", NULL, out, sizeof(out)), 200);
    json_t *counts = json_loads(out, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(counts, "schemas_ids")), 3);
    assert_int_equal(json_integer_value(json_object_get(counts, "subjects")), 2);
    json_decref(counts);
}

/* "after giving up, calls fail at once with DR_EAGAIN for the next wait_ms
 * ("circuit open")", and a call after that tries again. */
static void test_circuit_breaker(void **state) {
    fixture_t *f = *state;
    const int wait_ms = 600;
    start_server(f, false, NULL);
    f->reg = client(f->srv.url, 500, wait_ms, NULL, NULL);
    inject(&f->srv, 503, -1, NULL, NULL, 0);
    char err[512] = "", *schema = NULL;
    int64_t t0 = dr_mono_ms();
    assert_int_equal(FETCH(PRELOADED_ID, &schema), DR_EAGAIN);
    int64_t took = dr_mono_ms() - t0;
    assert_true(took >= wait_ms - 50);
    assert_true(took < wait_ms + 2000);
    assert_contains(err, "schema id 42");
    assert_contains(err, "HTTP 503");
    assert_contains(err, "50003");
    dr_registry_stats_t st;
    dr_registry_stats(f->reg, &st);
    assert_true(st.retries >= 2);
    assert_int_equal(st.failures, 1);
    uint64_t requests = st.requests;

    /* the circuit is open: no request, at once */
    t0 = dr_mono_ms();
    assert_int_equal(FETCH(PRELOADED_ID, &schema), DR_EAGAIN);
    assert_true(dr_mono_ms() - t0 < 100);
    assert_contains(err, "not retried");
    int32_t id;
    assert_int_equal(REGISTER("s", "\"int\"", &id), DR_EAGAIN);
    dr_registry_stats(f->reg, &st);
    assert_int_equal(st.fast_failures, 2);
    assert_int_equal(st.requests, requests);
    assert_int_equal(st.failures, 1);

    /* the registry recovers; once the circuit closes, calls go through */
    inject(&f->srv, 503, 0, NULL, NULL, 0);
    sleep_ms(wait_ms + 50);
    assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
    assert_string_equal(schema, f->schema42);
    free(schema);
}

/* Nothing listening: connection refused is retried, then DR_EAGAIN within
 * the bound; wait_ms 0 is one try and no circuit. */
static void test_nothing_listening(void **state) {
    (void)state;
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    assert_int_equal(bind(sock, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(getsockname(sock, (struct sockaddr *)&addr, &len), 0);
    close(sock); /* the port is now closed */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(addr.sin_port));

    const int wait_ms = 500;
    dr_registry_t *r = client(url, 300, wait_ms, NULL, NULL);
    char err[512] = "", *schema = NULL;
    int64_t t0 = dr_mono_ms();
    assert_int_equal(dr_registry_schema_by_id(r, 1, &schema, err, sizeof(err)), DR_EAGAIN);
    int64_t took = dr_mono_ms() - t0;
    assert_true(took < wait_ms + 2000);
    assert_contains(err, "unavailable");
    assert_contains(err, "Couldn't connect");
    dr_registry_stats_t st;
    dr_registry_stats(r, &st);
    assert_true(st.requests >= 3); /* at 0, ~100 and ~300 ms */
    dr_registry_free(r);

    r = client(url, 300, 0, NULL, NULL);
    assert_int_equal(dr_registry_schema_by_id(r, 1, &schema, err, sizeof(err)), DR_EAGAIN);
    assert_int_equal(dr_registry_schema_by_id(r, 1, &schema, err, sizeof(err)), DR_EAGAIN);
    dr_registry_stats(r, &st);
    assert_int_equal(st.requests, 2); /* one try each, no circuit */
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.fast_failures, 0);
    assert_int_equal(st.failures, 2);
    dr_registry_free(r);
}

#define PROBE_V1                                                                                   \
    "{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"dr.test\",\"fields\":["               \
    "{\"name\":\"user\",\"type\":\"long\"}]}"
/* the same schema, other whitespace and key order */
#define PROBE_V1_RESPACED                                                                          \
    "{ \"namespace\": \"dr.test\", \"name\": \"Probe\", \"type\": \"record\",\n"                   \
    "  \"fields\": [ {\"type\": \"long\", \"name\": \"user\"} ] }"
/* a new field with a default: backward compatible */
#define PROBE_V2                                                                                   \
    "{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"dr.test\",\"fields\":["               \
    "{\"name\":\"user\",\"type\":\"long\"},{\"name\":\"score\",\"type\":\"double\","               \
    "\"default\":0.0}]}"
/* a new field without a default: not backward compatible */
#define PROBE_V3                                                                                   \
    "{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"dr.test\",\"fields\":["               \
    "{\"name\":\"user\",\"type\":\"long\"},{\"name\":\"item\",\"type\":\"long\"}]}"

/* "On 0, *id is the registry's id (the same id again when the schema is
 * already registered under the subject)"; DR_ESCHEMA for 409 and 422. */
static void test_register(void **state) {
    fixture_t *f = *state;
    start_server(f, false, NULL);
    f->reg = client(f->srv.url, 2000, 1000, NULL, NULL);
    char err[512] = "";
    int32_t v1 = -1, id = -1;
    assert_int_equal(REGISTER("probe-value", PROBE_V1, &v1), 0);
    assert_true(v1 > 0 && v1 != PRELOADED_ID);
    assert_int_equal(REGISTER("probe-value", PROBE_V1, &id), 0);
    assert_int_equal(id, v1);
    assert_int_equal(REGISTER("probe-value", PROBE_V1_RESPACED, &id), 0);
    assert_int_equal(id, v1);
    assert_int_equal(REGISTER("other-value", PROBE_V1, &id), 0);
    assert_int_equal(id, v1);
    /* a subject that needs escaping in the path */
    assert_int_equal(REGISTER("team/a b?c", PROBE_V1, &id), 0);
    assert_int_equal(id, v1);
    char out[1024];
    assert_int_equal(control(&f->srv, "GET", "/subjects", NULL, out, sizeof(out)), 200);
    assert_contains(out, "\"team/a b?c\"");
    /* the preloaded schema's text under another subject: its pinned id */
    assert_int_equal(REGISTER("copy-value", f->schema42, &id), 0);
    assert_int_equal(id, PRELOADED_ID);

    int32_t v2 = -1, v3 = -1;
    assert_int_equal(REGISTER("probe-value", PROBE_V2, &v2), 0);
    assert_true(v2 > 0 && v2 != v1);
    assert_int_equal(REGISTER("probe-value", PROBE_V3, &v3), DR_ESCHEMA);
    assert_int_equal(v3, -1);
    assert_contains(err, "probe-value");
    assert_contains(err, "HTTP 409");
    assert_contains(err, "incompatible"); /* the registry's own message */
    assert_contains(err, "'item'");

    json_t *none = json_pack("{s:s}", "compatibility", "NONE");
    assert_int_equal(control(&f->srv, "PUT", "/config/probe-value", none, out, sizeof(out)), 200);
    assert_int_equal(REGISTER("probe-value", PROBE_V3, &v3), 0);
    assert_true(v3 > 0 && v3 != v1 && v3 != v2);
    char *schema = NULL;
    assert_int_equal(FETCH(v3, &schema), 0);
    assert_string_equal(schema, PROBE_V3);
    free(schema);
    /* other subjects keep the default, BACKWARD */
    assert_int_equal(REGISTER("other-value", PROBE_V3, &id), DR_ESCHEMA);
    /* FORWARD: the old schema (V2) must read the new (V3: its "score" has a
     * default), which BACKWARD refused; FULL asks both ways and refuses it */
    json_t *fwd = json_pack("{s:s}", "compatibility", "FORWARD");
    json_t *full = json_pack("{s:s}", "compatibility", "FULL");
    assert_int_equal(REGISTER("fwd-value", PROBE_V2, &id), 0);
    assert_int_equal(control(&f->srv, "PUT", "/config/fwd-value", fwd, out, sizeof(out)), 200);
    assert_int_equal(REGISTER("fwd-value", PROBE_V3, &id), 0);
    assert_int_equal(REGISTER("full-value", PROBE_V2, &id), 0);
    assert_int_equal(control(&f->srv, "PUT", "/config/full-value", full, out, sizeof(out)), 200);
    assert_int_equal(REGISTER("full-value", PROBE_V3, &id), DR_ESCHEMA);
    assert_contains(err, "'item'");

    assert_int_equal(REGISTER("probe-value", "{not json", &id), DR_ESCHEMA);
    assert_contains(err, "HTTP 422");
    assert_contains(err, "42201");
    assert_int_equal(REGISTER("", PROBE_V1, &id), DR_EINVAL);
    assert_int_equal(REGISTER("s", "\"\xff\xfe\"", &id), DR_EINVAL);
    assert_int_equal(REGISTER("s", NULL, &id), DR_EINVAL);
    assert_int_equal(REGISTER("s", PROBE_V1, NULL), DR_EINVAL);
}

/* Basic auth: the right credentials work; wrong or missing ones are a
 * configuration error (not retried), and the password never shows. */
static void test_basic_auth(void **state) {
    fixture_t *f = *state;
    const char *const args[] = {"--basic-auth", "reader:s3cret-Pw0rd", NULL};
    start_server(f, false, args);
    f->reg = client(f->srv.url, 2000, 2000, "reader:s3cret-Pw0rd", NULL);
    char err[512] = "", *schema = NULL;
    int32_t id = -1;
    assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
    assert_string_equal(schema, f->schema42);
    free(schema);
    assert_int_equal(REGISTER("probe-value", PROBE_V1, &id), 0);

    static const char *const wrong[] = {"reader:wrong-Pw0rd-xyz", "intruder:s3cret-Pw0rd", NULL};
    for (int i = 0; i < 3; i++) {
        dr_registry_t *r = client(f->srv.url, 2000, 2000, wrong[i], NULL);
        int64_t t0 = dr_mono_ms();
        assert_int_equal(dr_registry_schema_by_id(r, PRELOADED_ID, &schema, err, sizeof(err)),
                         DR_ECONFIG);
        assert_true(dr_mono_ms() - t0 < 1000); /* not retried */
        assert_contains(err, "HTTP 401");
        assert_lacks(err, "Pw0rd");
        assert_int_equal(dr_registry_register(r, "probe-value", PROBE_V1, &id, err, sizeof(err)),
                         DR_ECONFIG);
        assert_lacks(err, "Pw0rd");
        dr_registry_stats_t st;
        dr_registry_stats(r, &st);
        assert_int_equal(st.requests, 2);
        dr_registry_free(r);
    }
}

/* A registry slower than timeout_ms: DR_EAGAIN within wait_ms + timeout_ms. */
static void test_slow_registry(void **state) {
    fixture_t *f = *state;
    const int timeout_ms = 300, wait_ms = 500;
    start_server(f, false, NULL);
    f->reg = client(f->srv.url, timeout_ms, wait_ms, NULL, NULL);
    set_delay(&f->srv, 1500);
    char err[512] = "", *schema = NULL;
    int64_t t0 = dr_mono_ms();
    assert_int_equal(FETCH(PRELOADED_ID, &schema), DR_EAGAIN);
    int64_t took = dr_mono_ms() - t0;
    assert_true(took >= timeout_ms);
    assert_true(took < wait_ms + timeout_ms + MARGIN_MS);
    assert_contains(err, "timed out");
    set_delay(&f->srv, 0);
    sleep_ms(wait_ms + 50); /* the circuit closes */
    assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
    free(schema);
}

/* https: verified against ca_location; a certificate that does not verify
 * is DR_ECONFIG at once (retrying cannot fix trust), not DR_EAGAIN. */
static void test_tls(void **state) {
    fixture_t *f = *state;
    if (!on_path("openssl")) {
        fprintf(stderr, "skipped: openssl is not on PATH (needed to make a test certificate)\n");
        skip();
    }
    char cert[200], key[200], cmd[800];
    snprintf(cert, sizeof(cert), "%s/cert.pem", f->dir);
    snprintf(key, sizeof(key), "%s/key.pem", f->dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout '%s' -out '%s' "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null",
             key, cert);
    assert_int_equal(system(cmd), 0);
    const char *const args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    start_server(f, true, args);

    f->reg = client(f->srv.url, 2000, 2000, NULL, cert);
    char err[512] = "", *schema = NULL;
    assert_int_equal(FETCH(PRELOADED_ID, &schema), 0);
    assert_string_equal(schema, f->schema42);
    free(schema);
    char url[80];
    snprintf(url, sizeof(url), "https://localhost:%d/", f->srv.port);
    dr_registry_t *r = client(url, 2000, 2000, NULL, cert);
    assert_int_equal(dr_registry_schema_by_id(r, PRELOADED_ID, &schema, err, sizeof(err)), 0);
    free(schema);
    dr_registry_free(r);

    r = client(f->srv.url, 2000, 5000, NULL, NULL); /* the system's CAs do not know it */
    int64_t t0 = dr_mono_ms();
    assert_int_equal(dr_registry_schema_by_id(r, PRELOADED_ID, &schema, err, sizeof(err)),
                     DR_ECONFIG);
    assert_true(dr_mono_ms() - t0 < 1000);
    assert_contains(err, "certificate");
    assert_contains(err, "ca_location");
    dr_registry_stats_t st;
    dr_registry_stats(r, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.retries, 0);
    dr_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refuses_bad_conf),
        cmocka_unit_test_setup_teardown(test_fetch_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_circuit_breaker, setup, teardown),
        cmocka_unit_test(test_nothing_listening),
        cmocka_unit_test_setup_teardown(test_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
    };
    /* The control requests use libcurl before any client exists; and its
     * global state is released at the end so that LeakSanitizer sees none. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
