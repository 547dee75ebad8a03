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
    char combined[2 * sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(combined, sizeof last_error, fmt, ap);
    va_end(ap);
    size_t at = n < 0 ? 0 : (size_t)n < sizeof last_error ? (size_t)n : sizeof last_error - 1;
    snprintf(combined + at, sizeof combined - at, ": %s", last_error);
    memcpy(last_error, combined, sizeof last_error - 1);
    last_error[sizeof last_error - 1] = '\0';
    return st;
}
