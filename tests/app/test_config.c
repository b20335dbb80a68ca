/* test_config.c - claims of dr_config.h: defaults, typed parsing with
 * bounds, unknown keys rejected by name, kafka.* pass-through, redaction. */
#include "dr_test.h"

#include "dr_config.h"
#include "dr_err.h"

/* "Unknown keys and bad values are rejected at start with a message naming the key." */
static void test_rejects_unknown_and_bad_values(void **state) {
    (void)state;
    dr_config_t *c = malloc(sizeof(*c));
    char err[512];
    dr_config_default(c);
    static const char *const bad[][2] = {
        {"learner.dimm", "32"}, {"learner.dim", "0"}, {"learner.dim", "abc"},
        {"learner.lr.user", "nan"}, {"state.sync", "maybe"}, {"learner.mode", "ratings"},
        {"emit.topk", "-1"}, {"emit.interval.ms", "1e3"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(dr_config_set(c, bad[i][0], bad[i][1], err, sizeof(err)), DR_ECONFIG);
        assert_non_null(strstr(err, bad[i][0]));
    }
    assert_int_equal(dr_config_set_pair(c, "no-equals-sign", err, sizeof(err)), DR_ECONFIG);
    /* no broker named at all: refused, not waited for */
    assert_int_equal(dr_config_set_pair(c, "kafka.bootstrap.servers=", err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "kafka.bootstrap.servers"));
    assert_int_equal(dr_config_set_pair(c, "kafka.bootstrap.servers= , ", err, sizeof(err)), DR_ECONFIG);
    assert_string_equal(dr_config_kafka(c, "bootstrap.servers"), "localhost:9092");
    free(c);
}

/* Defaults are the documented ones; values parse and kafka.* pass through. */
static void test_defaults_and_values(void **state) {
    (void)state;
    dr_config_t *c = malloc(sizeof(*c));
    char err[512];
    dr_config_default(c);
    assert_int_equal(c->learner.dim, 32);
    assert_int_equal(c->commit_interval_ms, 1000);
    assert_int_equal(c->emit_interval_ms, 100);
    assert_int_equal(c->topk, 50);
    assert_int_equal(dr_config_set_pair(c, " learner.mode = rating ", err, sizeof(err)), 0);
    assert_int_equal(dr_config_set_pair(c, "kafka.security.protocol=SASL_SSL", err, sizeof(err)), 0);
    assert_int_equal(dr_config_set_pair(c, "kafka.sasl.password=hunter2", err, sizeof(err)), 0);
    assert_int_equal(dr_config_finish(c, err, sizeof(err)), 0);
    assert_int_equal(c->learner.mode, DR_MODE_RATING);
    assert_string_equal(c->topic_dlq, "driftrec.events.dlq");
    assert_string_equal(dr_config_kafka(c, "security.protocol"), "SASL_SSL");
    /* "Secrets are never logged": the dump redacts them */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dr_config_dump(c, f);
    fclose(f);
    assert_null(strstr(buf, "hunter2"));
    assert_non_null(strstr(buf, "kafka.sasl.password = [redacted]"));
    free(buf);
    free(c);
}

/* Rating mode brings its own step sizes (the implicit ones diverge on
 * squared errors: mae 1.99 on ml-latest-small); a key the user set, in a
 * file or with --set, keeps the user's value. */
static void test_rating_mode_defaults(void **state) {
    (void)state;
    dr_config_t *c = malloc(sizeof(*c));
    char err[512];
    dr_config_default(c);
    assert_int_equal(dr_config_finish(c, err, sizeof(err)), 0);
    float implicit_lr = c->learner.lr_user;
    assert_true(implicit_lr == 0.5f);
    assert_int_equal(dr_config_set_pair(c, "learner.mode=rating", err, sizeof(err)), 0);
    assert_int_equal(dr_config_finish(c, err, sizeof(err)), 0);
    assert_true(c->learner.lr_user == 0.1f && c->learner.lr_item == 0.1f);
    assert_true(c->learner.reg_user == 0.1f && c->learner.init_scale == 0.1f);
    dr_config_default(c);
    assert_int_equal(dr_config_set_pair(c, "learner.lr.user=0.02", err, sizeof(err)), 0);
    assert_int_equal(dr_config_set_pair(c, "learner.mode=rating", err, sizeof(err)), 0);
    assert_int_equal(dr_config_finish(c, err, sizeof(err)), 0);
    assert_true(c->learner.lr_user == 0.02f); /* set: kept */
    assert_true(c->learner.lr_item == 0.1f);  /* not set: rating's */
    free(c);
}

/* "Secrets are never logged": every property librdkafka marks sensitive, and
 * the Schema Registry's credentials, are [redacted] by the dump, and a
 * malformed setting holding a secret is refused without echoing it. */
static void test_secrets_redacted(void **state) {
    (void)state;
    static const char *const secret_keys[] = {
        "kafka.sasl.password", "kafka.sasl.oauthbearer.config", "kafka.sasl.oauthbearer.client.secret",
        "kafka.ssl.key.password", "kafka.ssl.key.pem", "kafka.ssl.keystore.password",
        "schema.registry.basic.auth.user.info", "schema.registry.ssl.key.password"};
    dr_config_t *c = malloc(sizeof(*c));
    char err[512], pair[128];
    dr_config_default(c);
    for (size_t i = 0; i < sizeof(secret_keys) / sizeof(secret_keys[0]); i++) {
        snprintf(pair, sizeof(pair), "%s=hunter2-%zu", secret_keys[i], i);
        assert_int_equal(dr_config_set_pair(c, pair, err, sizeof(err)), 0);
    }
    assert_int_equal(dr_config_set_pair(c, "kafka.sasl.username=alice", err, sizeof(err)), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dr_config_dump(c, f);
    fclose(f);
    assert_null(strstr(buf, "hunter2"));
    for (size_t i = 0; i < sizeof(secret_keys) / sizeof(secret_keys[0]); i++) {
        snprintf(pair, sizeof(pair), "%s = [redacted]\n", secret_keys[i]);
        assert_non_null(strstr(buf, pair));
    }
    assert_non_null(strstr(buf, "kafka.sasl.username = alice\n")); /* not a secret */
    free(buf);
    /* a typo instead of '=' */
    err[0] = '\0';
    assert_int_equal(dr_config_set_pair(c, "kafka.sasl.password: hunter2", err, sizeof(err)), DR_ECONFIG);
    assert_true(err[0] != '\0');
    assert_null(strstr(err, "hunter2"));
    free(c);
}

/* "/metrics ... on metrics.listen (default 127.0.0.1:9464)": loopback only
 * unless chosen otherwise. */
static void test_listener_defaults_to_loopback(void **state) {
    (void)state;
    dr_config_t *c = malloc(sizeof(*c));
    dr_config_default(c);
    assert_string_equal(c->metrics_listen, "127.0.0.1:9464");
    free(c);
}

/* A properties file: comments, blanks, and errors naming file and line. */
static void test_load_file(void **state) {
    (void)state;
    char dir[64], path[128], err[512];
    dr_test_tmpdir(dir, sizeof(dir), "config");
    snprintf(path, sizeof(path), "%s/driftrec.conf", dir);
    FILE *f = fopen(path, "w");
    fputs("# comment\n\nlearner.dim = 16\nemit.topk=20\nbogus.key = 1\n", f);
    fclose(f);
    dr_config_t *c = malloc(sizeof(*c));
    dr_config_default(c);
    assert_int_equal(dr_config_load_file(c, path, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, ":5:"));
    assert_non_null(strstr(err, "bogus.key"));
    assert_int_equal(c->learner.dim, 16);
    assert_int_equal(c->topk, 20);
    free(c);
    dr_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_unknown_and_bad_values),
        cmocka_unit_test(test_defaults_and_values),
        cmocka_unit_test(test_rating_mode_defaults),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_secrets_redacted),
        cmocka_unit_test(test_listener_defaults_to_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
