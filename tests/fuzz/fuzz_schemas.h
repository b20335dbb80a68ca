/* fuzz_schemas.h - the writer schemas the event-decoder fuzz target registers
 * (so that schema resolution is fuzzed too) and the seed generator writes
 * records for: a newer UserEvent producer with strings, a map and an array,
 * and older Item / Recommendations producers that lack fields. */
#ifndef DR_FUZZ_SCHEMAS_H
#define DR_FUZZ_SCHEMAS_H

#define FUZZ_WRITER_ID 10

#define FUZZ_EVENT_TYPE_ENUM                                                                \
    "{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":[\"IMPRESSION\",\"CLICK\","     \
    "\"LIKE\",\"SHARE\",\"COMMENT\",\"PURCHASE\",\"HIDE\",\"DWELL\",\"RATE\",\"SAVE\"]}"

static const char fuzz_writer_event[] =
    "{\"type\":\"record\",\"name\":\"UserEvent\",\"namespace\":\"com.example\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"long\"},"
    "{\"name\":\"country\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"item_id\",\"type\":\"int\"},"
    "{\"name\":\"type\",\"type\":" FUZZ_EVENT_TYPE_ENUM "},"
    "{\"name\":\"value\",\"type\":\"float\",\"default\":0},"
    "{\"name\":\"timestamp\",\"type\":\"long\"},"
    "{\"name\":\"session_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"context\",\"type\":[\"null\",{\"type\":\"map\",\"values\":\"string\"}],\"default\":null},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[]},"
    "{\"name\":\"score\",\"type\":\"double\",\"default\":0}]}";

static const char fuzz_writer_item[] =
    "{\"type\":\"record\",\"name\":\"Item\",\"fields\":[{\"name\":\"item_id\",\"type\":\"long\"},"
    "{\"name\":\"embedding\",\"type\":[\"null\",{\"type\":\"array\",\"items\":\"float\"}],\"default\":null}]}";

static const char fuzz_writer_recs[] =
    "{\"type\":\"record\",\"name\":\"Recommendations\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"long\"},"
    "{\"name\":\"items\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
    "\"name\":\"ScoredItem\",\"fields\":[{\"name\":\"item_id\",\"type\":\"long\"},"
    "{\"name\":\"score\",\"type\":\"float\"}]}}},"
    "{\"name\":\"generated_at\",\"type\":\"long\"},{\"name\":\"model_version\",\"type\":\"long\"}]}";

#endif /* DR_FUZZ_SCHEMAS_H */
