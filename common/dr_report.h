/* dr_report.h - a small streaming JSON writer for report.json files:
 * objects, arrays and scalars, with commas and escaping handled here; and
 * two directory helpers (make a report directory, remove a scratch tree).
 * In common/ so that modules as well as src/ can write reports. */
#ifndef DR_REPORT_H
#define DR_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define DR_JSON_MAX_DEPTH 16

typedef struct dr_json {
    FILE *f;
    int depth;
    bool need_comma[DR_JSON_MAX_DEPTH];
} dr_json_t;

/* key is NULL inside arrays and for the top-level value. */
void dr_json_init(dr_json_t *j, FILE *f);
void dr_json_object_begin(dr_json_t *j, const char *key);
void dr_json_object_end(dr_json_t *j);
void dr_json_array_begin(dr_json_t *j, const char *key);
void dr_json_array_end(dr_json_t *j);
void dr_json_num(dr_json_t *j, const char *key, double v); /* non-finite -> null */
void dr_json_int(dr_json_t *j, const char *key, int64_t v);
void dr_json_str(dr_json_t *j, const char *key, const char *v);
void dr_json_bool(dr_json_t *j, const char *key, bool v);

/* Creates dir (and parents) when missing. 0 or DR_EIO. */
int dr_mkdirs(const char *dir);
/* Removes dir and everything below it (no symlinks followed). 0 or DR_EIO. */
int dr_rmtree(const char *dir);

#endif /* DR_REPORT_H */
