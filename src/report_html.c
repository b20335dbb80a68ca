/* report_html.c - writes report.html: a page template compiled in from src/
 * (report_template.html for backtests and other reports, report_feed_template.html
 * when report.json has a top-level "feed" object, the closed-loop demo) with
 * report.json embedded in its data script tag; the page's own script draws the
 * plots and tables (see dr_report_html.h). */
#include "dr_report_html.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dr_err.h"

/* Generated at build time by cmake/embed_file.cmake from src/report_template.html
 * and src/report_feed_template.html. */
extern const char dr_template_report_template[];
extern const char dr_template_report_feed_template[];

#define PLACEHOLDER "/*REPORT_JSON*/"
#define READ_CHUNK ((size_t)1 << 16)

typedef struct page_parts {
    const char *before, *after;
    size_t before_len;
    const char *json;
    size_t json_len;
} page_parts_t;

static int fail(char *errstr, size_t errstr_size, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *errstr, size_t errstr_size, int err, const char *fmt, ...) {
    if (errstr && errstr_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* Reads all of fd (at most DR_REPORT_HTML_MAX_JSON bytes) into a new buffer. */
static int read_all(int fd, const char *path, char **out, size_t *out_len,
                    char *errstr, size_t errstr_size) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < READ_CHUNK) {
            char *nb = realloc(buf, cap + READ_CHUNK * 4);
            if (!nb) {
                free(buf);
                return fail(errstr, errstr_size, DR_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap += READ_CHUNK * 4;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            return fail(errstr, errstr_size, DR_EIO, "%s: %s", path, strerror(e));
        }
        if (n == 0) break;
        len += (size_t)n;
        if (len > DR_REPORT_HTML_MAX_JSON) {
            free(buf);
            return fail(errstr, errstr_size, DR_EINVAL, "%s: larger than %zu MiB", path,
                        DR_REPORT_HTML_MAX_JSON >> 20);
        }
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* Opens json_path, checks it is a regular file of an acceptable size and
 * reads it. */
static int read_json(const char *path, char **out, size_t *out_len, char *errstr,
                     size_t errstr_size) {
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(errstr, errstr_size, DR_EIO, "%s: %s", path, strerror(errno));
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = fail(errstr, errstr_size, DR_EIO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = fail(errstr, errstr_size, DR_EINVAL, "%s: not a regular file", path);
    else if ((unsigned long long)st.st_size > DR_REPORT_HTML_MAX_JSON)
        rc = fail(errstr, errstr_size, DR_EINVAL, "%s: larger than %zu MiB", path,
                  DR_REPORT_HTML_MAX_JSON >> 20);
    else
        rc = read_all(fd, path, out, out_len, errstr, errstr_size);
    close(fd);
    return rc;
}

/* The JSON must hold something and start (after whitespace) with '{'. */
static int check_json(const char *path, const char *buf, size_t len, char *errstr,
                      size_t errstr_size) {
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'))
        i++;
    if (i == len)
        return fail(errstr, errstr_size, DR_EINVAL, "%s: empty file", path);
    if (buf[i] != '{')
        return fail(errstr, errstr_size, DR_EINVAL, "%s: not a JSON object (starts with '%c')",
                    path, buf[i] >= 0x20 && buf[i] < 0x7f ? buf[i] : '?');
    return 0;
}

/* Writes the JSON so that it cannot end the script element it sits in nor
 * open an HTML comment there: "</" -> "<\/", "<!--" -> "\u003c!--". Both are
 * valid escapes inside JSON strings, the only place '<' may occur. */
static void put_json(FILE *f, const char *s, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '<') continue;
        bool close_tag = i + 1 < n && s[i + 1] == '/';
        bool comment = i + 3 < n && memcmp(s + i + 1, "!--", 3) == 0;
        if (!close_tag && !comment) continue;
        fwrite(s + start, 1, i - start, f);
        if (close_tag) {
            fputs("<\\/", f);
            start = i + 2;
        } else {
            fputs("\\u003c", f);
            start = i + 1;
        }
        i = start - 1;
    }
    fwrite(s + start, 1, n - start, f);
}

/* Writes the page to an open temporary file; closes it. */
static int write_page(FILE *f, const char *tmp, const page_parts_t *p, char *errstr,
                      size_t errstr_size) {
    fwrite(p->before, 1, p->before_len, f);
    put_json(f, p->json, p->json_len);
    fputs(p->after, f);
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad)
        return fail(errstr, errstr_size, DR_EIO, "%s: %s", tmp, strerror(e));
    return 0;
}

/* Writes the page to html_path.XXXXXX, then renames it over html_path. */
static int write_atomic(const char *html_path, const page_parts_t *p, char *errstr,
                        size_t errstr_size) {
    size_t n = strlen(html_path);
    char *tmp = malloc(n + 8);
    if (!tmp) return fail(errstr, errstr_size, DR_ENOMEM, "%s: out of memory", html_path);
    memcpy(tmp, html_path, n);
    memcpy(tmp + n, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = fail(errstr, errstr_size, DR_EIO, "%s: %s", html_path, strerror(errno));
        free(tmp);
        return rc;
    }
    FILE *f = fchmod(fd, 0644) == 0 ? fdopen(fd, "w") : NULL;
    int rc;
    if (!f) {
        rc = fail(errstr, errstr_size, DR_EIO, "%s: %s", tmp, strerror(errno));
        close(fd);
    } else {
        rc = write_page(f, tmp, p, errstr, errstr_size);
    }
    if (rc == 0 && rename(tmp, html_path) != 0)
        rc = fail(errstr, errstr_size, DR_EIO, "%s: %s", html_path, strerror(errno));
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc;
}

/* ---------- which page: a shallow scan of the top-level object ---------- */

static size_t skip_ws(const char *s, size_t i, size_t n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* s[i] is '"': the index just past the closing quote, or n when unterminated. */
static size_t skip_string(const char *s, size_t i, size_t n) {
    for (i++; i < n; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return n;
}

/* The index just past the value starting at s[i]: a string, a container
 * (brackets counted, strings inside skipped; kinds not matched) or a scalar
 * (up to the next ',', '}', ']' or whitespace). n when it does not end. */
static size_t skip_value(const char *s, size_t i, size_t n) {
    if (i >= n) return n;
    if (s[i] == '"') return skip_string(s, i, n);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char c = s[i];
            if (c == '"') {
                i = skip_string(s, i, n);
                continue;
            }
            if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') depth--;
            i++;
            if (depth == 0) return i;
        }
        return n;
    }
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
           s[i] != '\n' && s[i] != '\r')
        i++;
    return i;
}

/* True when the top-level object's last "feed" key (the one JSON.parse keeps)
 * holds an object. Keys are compared as written (an escaped "feed" is not
 * recognised); anything malformed gives false: the backtest page then shows
 * the parse error. */
static bool is_feed_report(const char *s, size_t n) {
    size_t i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{') return false;
    bool feed = false;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}') return false;
    while (i < n) {
        if (s[i] != '"') return false;
        size_t key = i + 1, end = skip_string(s, i, n);
        if (end >= n) return false;
        bool is_feed = end - key == 5 && memcmp(s + key, "feed\"", 5) == 0;
        i = skip_ws(s, end, n);
        if (i >= n || s[i] != ':') return false;
        i = skip_ws(s, i + 1, n);
        if (i >= n) return false;
        if (is_feed) feed = s[i] == '{';
        i = skip_ws(s, skip_value(s, i, n), n);
        if (i >= n) return false;
        if (s[i] == '}') return feed;
        if (s[i] != ',') return false;
        i = skip_ws(s, i + 1, n);
    }
    return false;
}

int dr_report_html_write(const char *json_path, const char *html_path, char *errstr,
                         size_t errstr_size) {
    if (!json_path || !html_path || !*json_path || !*html_path)
        return fail(errstr, errstr_size, DR_EINVAL, "report html: missing path");
    char *json = NULL;
    size_t len = 0;
    int rc = read_json(json_path, &json, &len, errstr, errstr_size);
    if (rc == 0) rc = check_json(json_path, json, len, errstr, errstr_size);
    if (rc == 0) {
        bool feed = is_feed_report(json, len);
        const char *page = feed ? dr_template_report_feed_template : dr_template_report_template;
        const char *mark = strstr(page, PLACEHOLDER);
        if (!mark) {
            rc = fail(errstr, errstr_size, DR_EINVAL, "report html: %s template has no " PLACEHOLDER
                      " placeholder", feed ? "feed" : "backtest");
        } else {
            page_parts_t p = {.before = page,
                              .before_len = (size_t)(mark - page),
                              .after = mark + strlen(PLACEHOLDER),
                              .json = json,
                              .json_len = len};
            rc = write_atomic(html_path, &p, errstr, errstr_size);
        }
    }
    free(json);
    return rc;
}

int dr_report_html_write_dir(const char *dir, char *errstr, size_t errstr_size) {
    if (!dir || !*dir) return fail(errstr, errstr_size, DR_EINVAL, "report html: missing DIR");
    size_t n = strlen(dir);
    while (n > 0 && dir[n - 1] == '/') /* "/" gives "/report.json" */
        n--;
    if (n > (size_t)1 << 20)
        return fail(errstr, errstr_size, DR_EINVAL, "report html: DIR is too long");
    char *json_path = malloc(n + sizeof("/report.json"));
    char *html_path = malloc(n + sizeof("/report.html"));
    int rc;
    if (!json_path || !html_path) {
        rc = fail(errstr, errstr_size, DR_ENOMEM, "report html: out of memory");
    } else {
        snprintf(json_path, n + sizeof("/report.json"), "%.*s/report.json", (int)n, dir);
        snprintf(html_path, n + sizeof("/report.html"), "%.*s/report.html", (int)n, dir);
        rc = dr_report_html_write(json_path, html_path, errstr, errstr_size);
    }
    free(json_path);
    free(html_path);
    return rc;
}
