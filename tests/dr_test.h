/* dr_test.h - the few helpers every driftrec test shares: cmocka includes,
 * temporary directories that are removed afterwards, and ../shared lookup. */
#ifndef DR_TEST_H
#define DR_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dr_report.h"

/* A fresh directory under /tmp; fails the test when it cannot be made. */
static inline void dr_test_tmpdir(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/dr_test_%s_XXXXXX", tag);
    assert_non_null(mkdtemp(buf));
}

/* Path of a file under ../shared, or NULL (with a message) when absent. */
static inline const char *dr_test_shared(char *buf, size_t n, const char *rel) {
    const char *dir = getenv("DR_SHARED_DIR");
    snprintf(buf, n, "%s/%s", dir ? dir : DR_SOURCE_DIR "/../shared", rel);
    FILE *f = fopen(buf, "r");
    if (!f) {
        fprintf(stderr, "skipped: %s not found (../shared is absent)\n", buf);
        return NULL;
    }
    fclose(f);
    return buf;
}

#endif /* DR_TEST_H */
