/* unicode.c: UTF-8 coding, lossy decoding, and the character classes that
 * tokenizers' Rust code tests (White_Space, word characters, numerics).
 * The classes come from PCRE2's and utf8proc's Unicode tables, never ours. */
#include "tokenizer/tok.h"

#include <pthread.h>
#include <utf8proc.h>

uint32_t tok_utf8_next(const char *s, size_t i, size_t *len) {
    const unsigned char *u = (const unsigned char *)s + i;
    if (u[0] < 0x80) { *len = 1; return u[0]; }
    if (u[0] < 0xE0) { *len = 2; return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); }
    if (u[0] < 0xF0) { *len = 3; return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F); }
    *len = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
}

size_t tok_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12)); o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18)); o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s[i..n), or 0 if invalid; *maximal
 * gets the length of its longest valid prefix (the "maximal subpart" that one
 * U+FFFD replaces, per Unicode's recommended practice that Rust follows). */
static size_t valid_seq(const unsigned char *s, size_t i, size_t n, size_t *maximal) {
    unsigned char c = s[i];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
    if (c < 0x80) { *maximal = 1; return 1; }
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) { need = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else { *maximal = 1; return 0; }
    size_t k = 1;
    for (; k < need && i + k < n; k++) {
        unsigned char b = s[i + k];
        unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) break;
    }
    *maximal = k;
    return k == need ? need : 0;
}

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (size_t m, l; i < n && (l = valid_seq(u, i, n, &m)) != 0;) i += l;
    return i;
}

int tok_utf8_valid(const char *s, size_t n) { return tok_utf8_valid_prefix(s, n) == n; }

int tok_utf8_lossy(const char *s, size_t n, tok_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0;   /* start of the pending valid run */
    for (size_t i = 0; i < n;) {
        size_t m, l = valid_seq(u, i, n, &m);
        if (l) { i += l; continue; }
        if (tok_buf_put(out, s + run, i - run) < 0 || tok_buf_put(out, "\xEF\xBF\xBD", 3) < 0) return -1;
        i += m;
        run = i;
    }
    /* an empty text may come as NULL, where even s + 0 is undefined */
    return run < n ? tok_buf_put(out, s + run, n - run) : 0;
}

/* One-character classes, matched anchored at a single code point. */
static pcre2_code *space_re, *word_re;
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;
static int classes_ok;

static pcre2_code *class_regex(const char *pat) {
    int err;
    PCRE2_SIZE at;
    return pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
}

static void classes_init(void) {
    space_re = class_regex("\\p{White_Space}");
    word_re = class_regex("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]");
    classes_ok = space_re && word_re;
}

tlm_status tok_unicode_init(void) {
    pthread_once(&classes_once, classes_init);
    return classes_ok ? TLM_OK : tlm_fail(TLM_ENOMEM, "tokenizer: cannot compile the Unicode class patterns");
}

static int in_class(const pcre2_code *re, uint32_t cp) {
    char u[4];
    size_t n = tok_utf8_put(cp, u);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return 0;
    int rc = pcre2_match(re, (PCRE2_SPTR)u, n, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

int tok_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= '\t' && cp <= '\r');
    return in_class(space_re, cp);
}

int tok_is_word(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    return in_class(word_re, cp);
}

int tok_is_numeric(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}
