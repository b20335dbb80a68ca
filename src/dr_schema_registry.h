/* dr_schema_registry.h - wires a Schema Registry (registry/dr_registry.h)
 * into a command: our schemas are registered under the topic-name subjects
 * at start and framed with the registry's ids, and the codec fetches the
 * writer schemas it does not know (schema.registry.* settings). */
#ifndef DR_SCHEMA_REGISTRY_H
#define DR_SCHEMA_REGISTRY_H

#include <stddef.h>

#include "dr_codec.h"
#include "dr_config.h"
#include "dr_registry.h"

/**
 * @brief Connects to cfg's registry, if it names one, and registers our schemas.
 *
 * UserEvent goes under `<topic.events>-value`, Recommendations under
 * `<topic.recommendations>-value` and Item under `<topic.catalog>-value`
 * (when a catalog topic is set); the ids the registry gives replace
 * cfg->codec.schema_id, so that what we write is framed with them.
 * @param out receives the client (free with dr_registry_free() after the
 *            codecs that use it), or NULL when schema.registry.url is empty.
 * @returns 0, or the registry's error (DR_ECONFIG, DR_ESCHEMA: our schema is
 *          incompatible with the subject, DR_EAGAIN: unreachable) with a
 *          message naming the subject in @p errstr.
 */
int dr_schema_registry_open(dr_config_t *cfg, dr_registry_t **out, char *errstr, size_t n);

/** Lets @p codec fetch the writer schemas of unknown ids from @p r (NULL:
 *  unknown ids stay refused). @p r must outlive the codec's decodes. */
void dr_schema_registry_attach(dr_codec_t *codec, dr_registry_t *r);

#endif /* DR_SCHEMA_REGISTRY_H */
