/* dr_cmd_adwin.h - the `driftrec adwin` subcommand: run an ADWIN detector
 * over numbers read from stdin and print where it detects change. */
#ifndef DR_CMD_ADWIN_H
#define DR_CMD_ADWIN_H

/* Runs `adwin [--delta D] [--clock C] [--max-buckets M] [--min-window W]
 * [--min-sub-window S] [--reset]`: reads one number per line from stdin and
 * prints the 0-based index of each update that detected a change, one per
 * line. argv[0] is "adwin". Returns 0 on success, 2 on a bad option or input
 * line (with a message on stderr naming it), 1 on other failures. */
int dr_cmd_adwin(int argc, char **argv);

#endif /* DR_CMD_ADWIN_H */
