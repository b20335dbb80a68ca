/* schema_registry.c - wires a Schema Registry into a command: registers our
 * three schemas under the topic-name subject strategy and hands the codec a
 * lookup for writer schema ids it has not seen (see dr_schema_registry.h). */
#include "dr_schema_registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_err.h"
#include "dr_log.h"

struct dr_schema_source {
    dr_registry_t *registry;
    double tokens;      /* look-ups left in the budget ... */
    double refilled_at; /* ... as of this monotonic time */
};

/* The .avsc texts compiled into the binary (cmake/embed_file.cmake). */
extern const char dr_schema_UserEvent[];
extern const char dr_schema_Recommendations[];
extern const char dr_schema_Item[];

static int register_one(dr_registry_t *r, const char *topic, const char *schema,
                        int32_t *id, char *errstr, size_t n) {
    char subject[DR_PATH_MAX + 8], why[512] = "";
    /* Confluent's TopicNameStrategy: the value schema of topic T is subject T-value */
    snprintf(subject, sizeof subject, "%s-value", topic);
    int err = dr_registry_register(r, subject, schema, id, why, sizeof why);
    if (err) {
        snprintf(errstr, n, "schema registry: cannot register our schema under \"%s\": %s",
                 subject, why);
        return err;
    }
    dr_log(DR_LOG_INFO, "schemas", "registered | subject=%s id=%d", subject, (int)*id);
    return 0;
}

int dr_schema_registry_open(dr_config_t *cfg, dr_schema_source_t **out, char *errstr, size_t n) {
    *out = NULL;
    if (!cfg->registry_url[0]) return 0;
    if (cfg->codec.framing != DR_FRAMING_CONFLUENT) {
        snprintf(errstr, n, "schema.registry.url needs schema.framing=confluent (plain records "
                            "carry no schema id)");
        return DR_ECONFIG;
    }
    dr_registry_conf_t rc;
    dr_registry_conf_default(&rc);
    rc.url = cfg->registry_url;
    rc.basic_auth = cfg->registry_user_info;
    rc.ca_location = cfg->registry_ca;
    rc.cert_location = cfg->registry_cert;
    rc.key_location = cfg->registry_key;
    rc.key_password = cfg->registry_key_password;
    rc.timeout_ms = cfg->registry_timeout_ms;
    rc.wait_ms = cfg->registry_wait_ms;
    dr_registry_t *r = NULL;
    int err = dr_registry_new(&r, &rc, errstr, n);
    int32_t *ids = cfg->codec.schema_id;
    cfg->codec.item_v1_id = -1; /* the registry's ids replace our fixed ones */
    cfg->codec.item_v2_id = -1;
    if (!err) err = register_one(r, cfg->topic_events, dr_schema_UserEvent, &ids[DR_SCHEMA_EVENT], errstr, n);
    if (!err) err = register_one(r, cfg->topic_recs, dr_schema_Recommendations, &ids[DR_SCHEMA_RECS], errstr, n);
    if (!err && cfg->topic_catalog[0])
        err = register_one(r, cfg->topic_catalog, dr_schema_Item, &ids[DR_SCHEMA_ITEM], errstr, n);
    dr_schema_source_t *src = err ? NULL : malloc(sizeof(*src));
    if (!err && !src) {
        snprintf(errstr, n, "out of memory");
        err = DR_ENOMEM;
    }
    if (err) {
        dr_registry_free(r);
        return err;
    }
    *src = (dr_schema_source_t){r, DR_SCHEMA_LOOKUP_BURST, dr_mono_s()};
    *out = src;
    return 0;
}

void dr_schema_registry_close(dr_schema_source_t *s) {
    if (!s) return;
    dr_registry_free(s->registry);
    free(s);
}

/* A token bucket: DR_SCHEMA_LOOKUP_BURST at once, DR_SCHEMA_LOOKUPS_PER_S after. */
static bool take_lookup(dr_schema_source_t *s) {
    double now = dr_mono_s();
    s->tokens += (now - s->refilled_at) * DR_SCHEMA_LOOKUPS_PER_S;
    if (s->tokens > DR_SCHEMA_LOOKUP_BURST) s->tokens = DR_SCHEMA_LOOKUP_BURST;
    s->refilled_at = now;
    if (s->tokens < 1.0) return false;
    s->tokens -= 1.0;
    return true;
}

static int lookup(void *ctx, int32_t id, char **schema_json, char *reason, size_t reason_size) {
    dr_schema_source_t *s = ctx;
    if (!take_lookup(s)) { /* "could not ask now": retryable, and asked again later */
        snprintf(reason, reason_size, "over the budget of schema look-ups (%d, then %.0f a second): "
                 "a producer frames records with ever new schema ids", DR_SCHEMA_LOOKUP_BURST,
                 DR_SCHEMA_LOOKUPS_PER_S);
        return DR_EAGAIN;
    }
    int err = dr_registry_schema_by_id(s->registry, id, schema_json, reason, reason_size);
    if (err == 0) dr_log(DR_LOG_INFO, "schemas", "writer schema fetched from the registry | id=%d", (int)id);
    return err;
}

void dr_schema_registry_attach(dr_codec_t *codec, dr_schema_source_t *s) {
    dr_codec_set_schema_lookup(codec, s ? lookup : NULL, s);
}
