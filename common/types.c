/* types.c - names of the event types shared by every module. */
#include "dr_types.h"

#include <strings.h>

static const char *const event_type_names[DR_EV__COUNT] = {
    "IMPRESSION", "CLICK", "LIKE", "SHARE", "COMMENT",
    "PURCHASE",   "HIDE",  "DWELL", "RATE",    "HIDE_AUTHOR", "HIDE_TOPIC",
};

const char *dr_event_type_name(int type) {
    if (type < 0 || type >= DR_EV__COUNT) return NULL;
    return event_type_names[type];
}

int dr_event_type_parse(const char *name) {
    for (int t = 0; t < DR_EV__COUNT; t++)
        if (strcasecmp(name, event_type_names[t]) == 0) return t;
    return -1;
}
