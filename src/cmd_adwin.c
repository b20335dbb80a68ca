/* cmd_adwin.c - `driftrec adwin`: feeds stdin, one number per line, to an
 * ADWIN detector (learner/dr_adwin.h) and prints the 0-based index of each
 * update that detected a change. Handy to check the detector on a file. */
#include "dr_cmd_adwin.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dr_adwin.h"
#include "dr_err.h"

#define EXIT_BAD_USE 2

static const char *const usage_text =
    "usage: driftrec adwin [--delta D] [--clock C] [--max-buckets M]\n"
    "                      [--min-window W] [--min-sub-window S] [--reset]\n"
    "Reads one number per line from stdin; prints the 0-based index of each\n"
    "number on which ADWIN detected a change, one per line.\n"
    "  --delta D           confidence, 0 < D < 1 (default 0.002)\n"
    "  --clock C           check every C updates, >= 1 (default 32)\n"
    "  --max-buckets M     buckets per histogram row, 2..64 (default 5)\n"
    "  --min-window W      check only when the window holds > W (default 10)\n"
    "  --min-sub-window S  both sides of a cut need > S+1 items (default 5)\n"
    "  --reset             empty the window after each detection\n";

enum { OPT_DELTA = 256, OPT_CLOCK, OPT_BUCKETS, OPT_MINWIN, OPT_MINSUB };

static const struct option long_options[] = {
    {"delta", required_argument, NULL, OPT_DELTA},
    {"clock", required_argument, NULL, OPT_CLOCK},
    {"max-buckets", required_argument, NULL, OPT_BUCKETS},
    {"min-window", required_argument, NULL, OPT_MINWIN},
    {"min-sub-window", required_argument, NULL, OPT_MINSUB},
    {"reset", no_argument, NULL, 'r'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parses all of `s` as an int in [lo, hi]; complains about option `name`
 * otherwise. */
static int parse_int(const char *name, const char *s, long lo, long hi,
                     int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "driftrec adwin: --%s: need an integer in [%ld, %ld]: "
                        "'%s'\n", name, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_delta(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0.0 && v < 1.0)) {
        fprintf(stderr, "driftrec adwin: --delta: need a number in (0, 1): "
                        "'%s'\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Applies one option to `conf`: 0, 1 when --help was printed, -1 on error. */
static int apply_option(int opt, const char *arg, dr_adwin_conf_t *conf) {
    switch (opt) {
    case OPT_DELTA: return parse_delta(arg, &conf->delta);
    case OPT_CLOCK: return parse_int("clock", arg, 1, INT_MAX, &conf->clock);
    case OPT_BUCKETS:
        return parse_int("max-buckets", arg, 2, DR_ADWIN_MAX_BUCKETS,
                         &conf->max_buckets);
    case OPT_MINWIN:
        return parse_int("min-window", arg, 0, INT_MAX, &conf->min_window);
    case OPT_MINSUB:
        return parse_int("min-sub-window", arg, 0, INT_MAX,
                         &conf->min_sub_window);
    case 'r': conf->reset_on_cut = true; return 0;
    case 'h': fputs(usage_text, stdout); return 1;
    default: fputs(usage_text, stderr); return -1; /* getopt complained */
    }
}

/* Fills `conf` from argv: 0 to run, 1 when --help was printed, -1 on error. */
static int parse_options(int argc, char **argv, dr_adwin_conf_t *conf) {
    int opt, rc = 0;
    dr_adwin_conf_default(conf);
    optind = 0; /* glibc: full re-initialisation, main may have used getopt */
    while (rc == 0 && (opt = getopt_long(argc, argv, "h", long_options,
                                         NULL)) != -1)
        rc = apply_option(opt, optarg, conf);
    if (rc != 0)
        return rc;
    if (optind < argc) {
        fprintf(stderr, "driftrec adwin: unexpected argument '%s'\n%s",
                argv[optind], usage_text);
        return -1;
    }
    if (dr_adwin_conf_check(conf) != 0) { /* the parsers' ranges are its own */
        fprintf(stderr, "driftrec adwin: invalid configuration\n");
        return -1;
    }
    return 0;
}

/* Parses one input line (n bytes, newline included) as a number that
 * dr_adwin_update accepts, surrounding whitespace allowed. Returns NULL, or
 * what is wrong with the line. */
static const char *parse_line(const char *line, size_t n, double *x) {
    char *end;
    if (memchr(line, '\0', n) != NULL)
        return "contains a NUL byte";
    double v = strtod(line, &end);
    if (end == line)
        return "not a number";
    while (isspace((unsigned char)*end))
        end++;
    if (*end != '\0')
        return "trailing characters after the number";
    if (!isfinite(v))
        return "not a finite number";
    if (fabs(v) > DR_ADWIN_MAX_ABS)
        return "magnitude above 1e100";
    *x = v;
    return NULL;
}

static void bad_line(uint64_t lineno, const char *why, const char *line,
                     size_t n) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    fprintf(stderr, "driftrec adwin: line %" PRIu64 ": %s: '%.*s%s'\n",
            lineno, why, (int)(n > 40 ? 40 : n), line, n > 40 ? "..." : "");
}

/* Feeds every line of `in` to `a`; returns the command's exit status. */
static int run(dr_adwin_t *a, FILE *in, FILE *out) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, in)) >= 0) {
        double x;
        int det = 0;
        const char *why = parse_line(line, (size_t)n, &x);
        lineno++;
        if (why != NULL) {
            bad_line(lineno, why, line, (size_t)n);
            rc = EXIT_BAD_USE;
        } else if ((det = dr_adwin_update(a, x)) < 0) {
            fprintf(stderr, "driftrec adwin: line %" PRIu64 ": %s\n", lineno,
                    dr_strerror(det));
            rc = 1;
        } else if (det == 1) {
            fprintf(out, "%" PRIu64 "\n", lineno - 1);
        }
    }
    if (rc == 0 && ferror(in)) {
        fprintf(stderr, "driftrec adwin: reading stdin: %s\n", strerror(errno));
        rc = 1;
    }
    free(line);
    return rc;
}

int dr_cmd_adwin(int argc, char **argv) {
    dr_adwin_conf_t conf;
    dr_adwin_t a;
    int rc = parse_options(argc, argv, &conf);
    if (rc != 0)
        return rc < 0 ? EXIT_BAD_USE : 0;
    if (dr_adwin_init(&a, &conf) != 0)
        return EXIT_BAD_USE; /* unreachable: conf was checked */
    rc = run(&a, stdin, stdout);
    dr_adwin_free_buckets(&a);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "driftrec adwin: writing stdout: %s\n",
                strerror(errno));
        if (rc == 0)
            rc = 1;
    }
    return rc;
}
