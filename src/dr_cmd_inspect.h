/* dr_cmd_inspect.h - `driftrec inspect`: read a state directory (also
 * beside a running pipeline, read-only) and show users and items. */
#ifndef DR_CMD_INSPECT_H
#define DR_CMD_INSPECT_H

int dr_cmd_inspect(int argc, char **argv);

#endif /* DR_CMD_INSPECT_H */
