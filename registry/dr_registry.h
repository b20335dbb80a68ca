/* dr_registry.h - a client of a Confluent-compatible Schema Registry (REST):
 * fetches writer schemas by id and registers ours under a subject.
 *
 * Speaks the documented v1 REST subset (registry/README.md) to Confluent
 * Schema Registry and to registries that imitate it (Redpanda, Apicurio's
 * ccompat API under a path prefix such as https://host/apis/ccompat/v7).
 * Only Avro schemas are accepted.
 *
 * Threads: not thread-safe. Use one dr_registry_t per thread; it keeps one
 * connection alive between calls. Calls block for at most about
 * max(timeout_ms, wait_ms) (see wait_ms). Secrets (the basic-auth password,
 * the key password) never appear in errstr and are never logged. */
#ifndef DR_REGISTRY_H
#define DR_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

typedef struct dr_registry_conf {
    const char *url;            /* e.g. "http://127.0.0.1:8081" or "https://host/prefix"; required */
    const char *basic_auth;     /* "user:password", NULL or "" for none */
    const char *ca_location;    /* PEM CA file for https; NULL/"" = system default */
    const char *cert_location;  /* client certificate (PEM) for mutual TLS; NULL/"" none */
    const char *key_location;   /* its private key (PEM); NULL/"" none */
    const char *key_password;   /* NULL/"" none */
    int timeout_ms;             /* one HTTP request, connect included; default 5000 */
    int wait_ms;                /* how long one call keeps retrying an unreachable registry
                                   (connection errors, timeouts, HTTP 5xx and 429) with
                                   exponential backoff 100 ms .. 2 s before it gives up with
                                   DR_EAGAIN; after giving up, calls fail at once with
                                   DR_EAGAIN for the next wait_ms ("circuit open"), so a
                                   registry that is down costs the caller at most wait_ms per
                                   wait_ms. Default 10000. 0 = one try, no circuit. */
} dr_registry_conf_t;

/* Zeroes the strings; timeout_ms 5000, wait_ms 10000. */
void dr_registry_conf_default(dr_registry_conf_t *conf);

typedef struct dr_registry dr_registry_t;

/* Creates a client; copies conf's strings (conf may go away afterwards).
 * DR_ECONFIG for a missing/unsupported url (only http:// and https://; no
 * credentials, query or fragment in it: credentials go in basic_auth), a
 * basic_auth without ':', timeout_ms <= 0, wait_ms < 0; DR_ENOMEM. Message in
 * errstr. Does no network I/O. *out is NULL on error. */
int dr_registry_new(dr_registry_t **out, const dr_registry_conf_t *conf, char *errstr,
                    size_t errstr_size);
void dr_registry_free(dr_registry_t *r); /* NULL ignored */

/* GET {url}/schemas/ids/{id}. On 0, *schema_json is a malloc'd copy of the response's
 * "schema" string (caller frees). Errors (one-line message in errstr naming the id, the
 * HTTP status and the registry's error_code/message when it sent one):
 *   DR_ENOTFOUND  404 (error_code 40403 or any 404);
 *   DR_ESCHEMA    the response is not a JSON object with a string "schema", or its
 *                 "schemaType" is present and not "AVRO", or it exceeds 4 MiB;
 *   DR_ECONFIG    401/403 (bad credentials or not allowed), other 4xx, a redirect (not
 *                 followed), a TLS certificate that does not verify (not retried);
 *   DR_EAGAIN     unreachable after wait_ms of retries, or the circuit is open (retryable);
 *   DR_EINVAL     NULL arguments or id < 0;
 *   DR_ENOMEM. */
int dr_registry_schema_by_id(dr_registry_t *r, int32_t id, char **schema_json, char *errstr,
                             size_t errstr_size);

/* POST {url}/subjects/{subject}/versions with {"schema": schema_json} (subject URL-escaped
 * with curl_easy_escape). On 0, *id is the registry's id (the same id again when the schema
 * is already registered under the subject, as real registries do).
 *   DR_ESCHEMA  409 (incompatible with the subject's compatibility setting) or 422 (invalid
 *               schema), with the registry's message; a response without an "id" in 0..2^31-1;
 *   DR_EINVAL   NULL arguments, an empty subject, a schema_json that is not UTF-8;
 *   other errors as above. */
int dr_registry_register(dr_registry_t *r, const char *subject, const char *schema_json,
                         int32_t *id, char *errstr, size_t errstr_size);

/* Counters since dr_registry_new. */
typedef struct dr_registry_stats {
    uint64_t requests;      /* HTTP requests attempted, retries included */
    uint64_t failures;      /* calls that returned an error (fast failures not included) */
    uint64_t retries;       /* requests repeated after a retryable failure */
    uint64_t fast_failures; /* calls refused at once with DR_EAGAIN: the circuit was open */
} dr_registry_stats_t;
void dr_registry_stats(const dr_registry_t *r, dr_registry_stats_t *out);

#endif /* DR_REGISTRY_H */
