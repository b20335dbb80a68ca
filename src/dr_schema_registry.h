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

/** A registry client with the budget of its look-ups (see dr_schema_registry_attach). */
typedef struct dr_schema_source dr_schema_source_t;

/**
 * @brief Connects to cfg's registry, if it names one, and registers our schemas.
 *
 * UserEvent goes under `<topic.events>-value`, Recommendations under
 * `<topic.recommendations>-value` and Item under `<topic.catalog>-value`
 * (when a catalog topic is set); the ids the registry gives replace
 * cfg->codec.schema_id, so that what we write is framed with them.
 * @param out receives the source (free with dr_schema_registry_close() after
 *            the codecs that use it), or NULL when schema.registry.url is empty.
 * @returns 0, or the registry's error (DR_ECONFIG, DR_ESCHEMA: our schema is
 *          incompatible with the subject, DR_EAGAIN: unreachable) with a
 *          message naming the subject in @p errstr.
 */
int dr_schema_registry_open(dr_config_t *cfg, dr_schema_source_t **out, char *errstr, size_t n);

/** Frees the source and its client. NULL is ignored. */
void dr_schema_registry_close(dr_schema_source_t *s);

/** Most look-ups of unknown schema ids a source makes in a burst, and per
 *  second after it. Each id is asked once (the codec remembers the answer),
 *  but a producer framing with ever new ids (garbage, a bug) would make the
 *  event loop wait on the registry for every record: beyond the budget such
 *  records go to the dead-letter topic as retryable (class registry) without
 *  a request, and the partition flows on. */
#define DR_SCHEMA_LOOKUP_BURST 20
#define DR_SCHEMA_LOOKUPS_PER_S 20.0

/** Lets @p codec fetch the writer schemas of unknown ids from @p s (NULL:
 *  unknown ids stay refused). @p s must outlive the codec's decodes. */
void dr_schema_registry_attach(dr_codec_t *codec, dr_schema_source_t *s);

#endif /* DR_SCHEMA_REGISTRY_H */
