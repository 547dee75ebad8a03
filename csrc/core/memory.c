/* memory.c: aligned, zeroed blocks for parameters, state and arenas. */
#include "core/internal.h"

#include <string.h>

void *tlm_alloc(size_t n) {
    size_t rounded = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded);
    return p;
}

void tlm_free(void *p) { free(p); }
