/* dr_err.h - driftrec's error codes: one X-macro table, 0 is success.
 *
 * Every fallible driftrec call returns int: 0 on success, a negative DR_E*
 * code on failure. Library errors (RocksDB, librdkafka, Avro) are converted
 * to these codes at the module edge, with details in the caller's errstr. */
#ifndef DR_ERR_H
#define DR_ERR_H

#define DR_ERRNO_MAP(X)                                                   \
    X(NOMEM, -1, "out of memory")                                         \
    X(INVAL, -2, "invalid argument")                                      \
    X(CONFIG, -3, "invalid configuration")                                \
    X(IO, -4, "I/O error")                                                \
    X(STORE, -5, "state store error")                                     \
    X(KAFKA, -6, "Kafka client error")                                    \
    X(DECODE, -7, "malformed record")                                     \
    X(SCHEMA, -8, "unknown or incompatible schema")                       \
    X(RANGE, -9, "value out of range")                                    \
    X(FULL, -10, "queue full")                                            \
    X(NOTFOUND, -11, "not found")                                         \
    X(CORRUPT, -12, "corrupt stored record")                              \
    X(AGAIN, -13, "try again")                                            \
    X(STOPPED, -14, "stopped")

enum dr_errno {
#define DR_ERRNO_ENUM(name, value, msg) DR_E##name = (value),
    DR_ERRNO_MAP(DR_ERRNO_ENUM)
#undef DR_ERRNO_ENUM
};

/* Human-readable text for a DR_E* code (or "success" for 0). Never NULL. */
const char *dr_strerror(int err);
/* The code's short name, e.g. "DR_EDECODE". Never NULL. */
const char *dr_err_name(int err);

#endif /* DR_ERR_H */
