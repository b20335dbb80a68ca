/* dr_demo.h - `driftrec demo`: embedded broker, synthetic stream, the real
 * pipeline over it, live progress and report.json. */
#ifndef DR_DEMO_H
#define DR_DEMO_H

int dr_cmd_demo(int argc, char **argv);

#endif /* DR_DEMO_H */
