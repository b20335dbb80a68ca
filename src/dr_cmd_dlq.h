/* dr_cmd_dlq.h - `driftrec dlq replay`: dead-lettered records back on their
 * source topic once their cause is fixed (see cmd_dlq.c). */
#ifndef DR_CMD_DLQ_H
#define DR_CMD_DLQ_H

/* argv[0] is "dlq", argv[1] the subcommand. Returns the exit status: 0 done,
 * 1 a failure (reported on stderr), 2 bad usage. */
int dr_cmd_dlq(int argc, char **argv);

#endif /* DR_CMD_DLQ_H */
