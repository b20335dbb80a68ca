/* report.c - the JSON writer behind every report.json, and two directory
 * helpers: make a report directory, remove a scratch tree (see dr_report.h). */
#include "dr_report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

#include "dr_err.h"

void dr_json_init(dr_json_t *j, FILE *f) {
    memset(j, 0, sizeof(*j));
    j->f = f;
}

static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void prefix(dr_json_t *j, const char *key) {
    if (j->need_comma[j->depth]) fputc(',', j->f);
    j->need_comma[j->depth] = true;
    if (j->depth > 0) fprintf(j->f, "\n%*s", 2 * j->depth, "");
    if (key) {
        put_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void open_container(dr_json_t *j, const char *key, char c) {
    prefix(j, key);
    fputc(c, j->f);
    if (j->depth + 1 < DR_JSON_MAX_DEPTH) j->depth++;
    j->need_comma[j->depth] = false;
}

static void close_container(dr_json_t *j, char c) {
    bool had = j->need_comma[j->depth];
    if (j->depth > 0) j->depth--;
    if (had) fprintf(j->f, "\n%*s", 2 * j->depth, "");
    fputc(c, j->f);
    if (j->depth == 0) fputc('\n', j->f);
}

void dr_json_object_begin(dr_json_t *j, const char *key) { open_container(j, key, '{'); }
void dr_json_object_end(dr_json_t *j) { close_container(j, '}'); }
void dr_json_array_begin(dr_json_t *j, const char *key) { open_container(j, key, '['); }
void dr_json_array_end(dr_json_t *j) { close_container(j, ']'); }

void dr_json_num(dr_json_t *j, const char *key, double v) {
    prefix(j, key);
    /* an integral value (a count) exactly, not 1.23457e+06 */
    if (isfinite(v) && v == floor(v) && fabs(v) < 0x1p53) fprintf(j->f, "%.0f", v);
    else if (isfinite(v)) fprintf(j->f, "%.6g", v);
    else fputs("null", j->f);
}

void dr_json_int(dr_json_t *j, const char *key, int64_t v) {
    prefix(j, key);
    fprintf(j->f, "%" PRId64, v);
}

void dr_json_str(dr_json_t *j, const char *key, const char *v) {
    prefix(j, key);
    put_string(j->f, v);
}

void dr_json_bool(dr_json_t *j, const char *key, bool v) {
    prefix(j, key);
    fputs(v ? "true" : "false", j->f);
}

int dr_mkdirs(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) return DR_EINVAL;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return DR_EIO;
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return DR_EIO;
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int dr_rmtree(const char *dir) {
    return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : DR_EIO;
}
