/* dr_cmd_report.h - the `driftrec report` subcommand: render a backtest's or
 * the closed-loop demo's DIR/report.json as the self-contained page DIR/report.html. */
#ifndef DR_CMD_REPORT_H
#define DR_CMD_REPORT_H

/* Runs `report [--help] DIR`; argv[0] is "report". (Re)writes
 * DIR/report.html from DIR/report.json and prints the page's path. Returns 0
 * on success, 2 on a usage error, 1 when the JSON cannot be read or the page
 * cannot be written (with a message on stderr). */
int dr_cmd_report(int argc, char **argv);

#endif /* DR_CMD_REPORT_H */
