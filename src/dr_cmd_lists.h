/* dr_cmd_lists.h - `driftrec lists`: the recommendations topic's messages,
 * or each user's newest one (see cmd_lists.c). */
#ifndef DR_CMD_LISTS_H
#define DR_CMD_LISTS_H

int dr_cmd_lists(int argc, char **argv);

#endif /* DR_CMD_LISTS_H */
