/* check.h: a minimal harness for the C unit tests. CHECK counts a pass or
 * prints the failed condition with the case being run and the core's last
 * error; check_summary prints "N passed, N failed" and gives the exit code. */
#ifndef TLM_TEST_CHECK_H
#define TLM_TEST_CHECK_H

#include <stdio.h>

#include "tlm.h"

static int checks_passed, checks_failed;
static const char *check_case = ""; /* set by each case so failures say where they are */

static int check_record(int ok, const char *file, int line, const char *expr) {
    if (ok) {
        checks_passed++;
    } else {
        checks_failed++;
        printf("%s:%d: [%s] failed: %s (last error: %s)\n", file, line, check_case, expr, tlm_last_error());
    }
    return ok;
}

#define CHECK(cond) check_record((cond) != 0, __FILE__, __LINE__, #cond)

static int check_summary(void) {
    printf("%d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed ? 1 : 0;
}

#endif
