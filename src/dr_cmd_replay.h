/* dr_cmd_replay.h - the `driftrec load` and `driftrec replay` commands. */
#ifndef DR_CMD_REPLAY_H
#define DR_CMD_REPLAY_H

int dr_cmd_load(int argc, char **argv);
int dr_cmd_replay(int argc, char **argv);

#endif /* DR_CMD_REPLAY_H */
