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

/* Length of the UTF-8 sequence at s (at most `left` bytes), or 0 if it is not
 * one Rust's str::from_utf8 accepts (no overlongs, surrogates or > U+10FFFF):
 * the rule of the safetensors reference reader, and of Python's decoder. */
size_t tlm_utf8_sequence(const unsigned char *s, size_t left);
int tlm_utf8_valid_n(const char *s, size_t n);
int tlm_utf8_valid(const char *s);  /* NUL-terminated */

static inline int64_t tlm_max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t tlm_min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

#endif
