/* internal.h: helpers shared by the C core; not part of the public API. */
#ifndef TLM_INTERNAL_H
#define TLM_INTERNAL_H

#include "tlm.h"

#include <stdarg.h>
#include <stdlib.h>

/* Records a printf-style message for tlm_last_error() and returns st. */
tlm_status tlm_fail(tlm_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: " (adds context on the way up). */
tlm_status tlm_fail_context(tlm_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tlm_clear_error(void);

#define TLM_TRY(expr) do { tlm_status st_ = (expr); if (st_ != TLM_OK) return st_; } while (0)

/* 64-byte aligned allocation of n bytes (zeroed); NULL on failure. */
void *tlm_alloc(size_t n);
void tlm_free(void *p);

static inline int64_t tlm_max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t tlm_min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

#endif
