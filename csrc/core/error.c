/* error.c: the per-thread error message behind tlm_last_error(). */
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *tlm_last_error(void) { return last_error; }

void tlm_clear_error(void) { last_error[0] = '\0'; }

tlm_status tlm_fail(tlm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

tlm_status tlm_fail_context(tlm_status st, const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
    return st;
}
