/* cmd_report.c - `driftrec report DIR`: (re)writes DIR/report.html from
 * DIR/report.json with dr_report_html_write (plots drawn in the browser; the
 * backtest page, or the feed page for a closed-loop demo report). */
#include "dr_cmd_report.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "dr_err.h"
#include "dr_report_html.h"

#define EXIT_BAD_USE 2

static const char *const usage_text =
    "usage: driftrec report DIR\n"
    "Renders DIR/report.json as DIR/report.html, one self-contained page.\n"
    "A backtest's report (driftrec replay): hr@K and ndcg@K per arm over time,\n"
    "the drift detections, the throughput and a summary table. A closed-loop\n"
    "demo's report (a \"feed\" object): CTR per arm and a summary of the\n"
    "switches, delays, false alarms and recoveries, CTR per round around the\n"
    "shift and the average recovery curve after an interest switch.\n"
    "Open it in any browser; it needs no network.\n"
    "  --help  show this text\n";

static const struct option long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Finds DIR in argv: 0 with *dir set, 1 when --help was printed, -1 on a
 * usage error (already reported). */
static int parse_args(int argc, char **argv, const char **dir) {
    int opt;
    optind = 0; /* glibc: full re-initialisation, main may have used getopt */
    opterr = 0; /* the message below names the command */
    while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage_text, stdout);
            return 1;
        }
        fprintf(stderr, "driftrec report: unknown option '%s'\n%s", argv[optind - 1],
                usage_text);
        return -1;
    }
    if (optind >= argc) {
        fprintf(stderr, "driftrec report: missing DIR\n%s", usage_text);
        return -1;
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "driftrec report: unexpected argument '%s'\n%s",
                argv[optind + 1], usage_text);
        return -1;
    }
    *dir = argv[optind];
    if (**dir == '\0') {
        fprintf(stderr, "driftrec report: DIR is empty\n%s", usage_text);
        return -1;
    }
    return 0;
}

int dr_cmd_report(int argc, char **argv) {
    const char *dir = NULL;
    char json_path[PATH_MAX], html_path[PATH_MAX], err[PATH_MAX + 256];
    int rc = parse_args(argc, argv, &dir);
    if (rc != 0)
        return rc < 0 ? EXIT_BAD_USE : 0;
    size_t n = strlen(dir);
    while (n > 0 && dir[n - 1] == '/') /* "/" gives "/report.json" */
        n--;
    int a = snprintf(json_path, sizeof(json_path), "%.*s/report.json", (int)n, dir);
    int b = snprintf(html_path, sizeof(html_path), "%.*s/report.html", (int)n, dir);
    if (a < 0 || b < 0 || (size_t)a >= sizeof(json_path) || (size_t)b >= sizeof(html_path)) {
        fprintf(stderr, "driftrec report: DIR is too long\n");
        return EXIT_BAD_USE;
    }
    rc = dr_report_html_write(json_path, html_path, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "driftrec report: %s (%s)\n", err, dr_err_name(rc));
        return 1;
    }
    printf("%s\n", html_path);
    return fflush(stdout) == 0 ? 0 : 1;
}
