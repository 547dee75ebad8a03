/* testpoint.c: where the crash tests freeze a writer (docs/reliability-crash.md).
 *
 * Writers call tlm_test_point("name") at the moments a crash matters: a file
 * half written, or complete but not yet renamed into place. When
 * TINYLM_TEST_STOP_AT is "name" or "name:N", the N-th call with that name
 * (the first by default) stops the whole process with SIGSTOP; the test then
 * looks at the files on disk and SIGKILLs it, so the kill lands exactly
 * there instead of wherever a timer happens to fire. Unset, a call costs one
 * getenv. Only calls whose name matches count, so one counter is enough. */
#include "core/internal.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>

void tlm_test_point(const char *name) {
    static atomic_long hits;
    const char *spec = getenv("TINYLM_TEST_STOP_AT");
    size_t len = strlen(name);
    if (!spec || strncmp(spec, name, len) != 0 || (spec[len] != '\0' && spec[len] != ':')) return;
    long want = spec[len] == ':' ? strtol(spec + len + 1, NULL, 10) : 1;
    if (atomic_fetch_add(&hits, 1) + 1 == want) raise(SIGSTOP);
}
