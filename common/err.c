/* err.c - text for the DR_E* codes declared in dr_err.h. */
#include "dr_err.h"

const char *dr_strerror(int err) {
    switch (err) {
    case 0: return "success";
#define DR_ERRNO_MSG(name, value, msg) case DR_E##name: return msg;
    DR_ERRNO_MAP(DR_ERRNO_MSG)
#undef DR_ERRNO_MSG
    }
    return "unknown error";
}

const char *dr_err_name(int err) {
    switch (err) {
    case 0: return "OK";
#define DR_ERRNO_NAME(name, value, msg) case DR_E##name: return "DR_E" #name;
    DR_ERRNO_MAP(DR_ERRNO_NAME)
#undef DR_ERRNO_NAME
    }
    return "DR_E?";
}
