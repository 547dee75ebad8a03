/* regex.c: tokenizer.json patterns on PCRE2 (UTF + UCP, JIT).
 *
 * tokenizers compiles its regexes with Oniguruma (Ruby syntax). The patterns
 * the model families ship are Perl-compatible, but a few escapes mean
 * something else in PCRE2, so they are rewritten before compiling:
 *   \s \S   Oniguruma: Unicode White_Space. PCRE2's \s also takes U+180E.
 *   \w \W   Oniguruma: Alphabetic, marks, Nd, Pc, and Latin-1's superscript
 *           digits and vulgar fractions. PCRE2 10.42: L, N, _.
 *   \h \H   Oniguruma: hex digit. PCRE2: horizontal space.
 * Ruby's ^ and $ are line anchors, hence PCRE2_MULTILINE. Matches are
 * iterated as the `onig` crate's find_iter does (an empty match right where
 * the previous match ended is skipped by one character). */
#include "tokenizer/tok.h"

#include <string.h>

/* First occurrence of needle (k >= 1 bytes) in s[0..n), or NULL. */
static const char *find_lit(const char *s, size_t n, const char *needle, size_t k) {
    for (const char *end = s + n; (size_t)(end - s) >= k;) {
        const char *c = memchr(s, needle[0], (size_t)(end - s) - k + 1);
        if (!c) return NULL;
        if (memcmp(c, needle, k) == 0) return c;
        s = c + 1;
    }
    return NULL;
}

#define WORD_PROPS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}"

/* Rewrites the escapes listed above; returns 0, or -1 with *bad set to the
 * escape that has no PCRE2 spelling inside a character class. */
static int translate(const char *pat, size_t n, tok_buf *out, char *bad) {
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char e = pat[++i];
            const char *rep = NULL;
            switch (e) {
            case 's': rep = "\\p{White_Space}"; break;
            case 'S': rep = "\\P{White_Space}"; break;
            case 'w': rep = in_class ? WORD_PROPS : "[" WORD_PROPS "]"; break;
            case 'W': rep = in_class ? NULL : "[^" WORD_PROPS "]"; break;
            case 'h': rep = in_class ? "0-9a-fA-F" : "[0-9a-fA-F]"; break;
            case 'H': rep = in_class ? NULL : "[^0-9a-fA-F]"; break;
            default: {
                char two[2] = {'\\', e};
                if (tok_buf_put(out, two, 2) < 0) return -2;
                continue;
            }
            }
            if (!rep) { *bad = e; return -1; }
            if (tok_buf_put(out, rep, strlen(rep)) < 0) return -2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            if (tok_buf_put(out, &c, 1) < 0) return -2;
            /* A ']' first in the class (after an optional '^') is literal. */
            if (i + 1 < n && pat[i + 1] == '^') { if (tok_buf_put(out, "^", 1) < 0) return -2; i++; }
            if (i + 1 < n && pat[i + 1] == ']') { if (tok_buf_put(out, "]", 1) < 0) return -2; i++; }
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && pat[i + 1] == ':') {
            /* POSIX class [:name:] inside a class: copy through its closing ":]". */
            const char *end = find_lit(pat + i + 2, n - i - 2, ":]", 2);
            if (end) {
                size_t len = (size_t)(end + 2 - (pat + i));
                if (tok_buf_put(out, pat + i, len) < 0) return -2;
                i += len - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        if (tok_buf_put(out, &c, 1) < 0) return -2;
    }
    return 0;
}

tlm_status tok_regex_compile(tok_regex *re, const char *pat, size_t n, const char *where) {
    tok_buf tr = {0};
    char bad = 0;
    int rc = translate(pat, n, &tr, &bad);
    if (rc == -2) { tok_buf_free(&tr); return tlm_fail(TLM_ENOMEM, "%s: out of memory", where); }
    if (rc == -1) {
        tok_buf_free(&tr);
        return tlm_fail(TLM_EUNSUPPORTED, "%s: regex escape \\%c inside a character class is not supported", where, bad);
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) { tok_buf_free(&tr); return tlm_fail(TLM_ENOMEM, "%s: out of memory", where); }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int err;
    PCRE2_SIZE at;
    re->code = pcre2_compile((PCRE2_SPTR)(tr.p ? tr.p : ""), tr.n, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &at, cc);
    pcre2_compile_context_free(cc);
    tok_buf_free(&tr);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return tlm_fail(TLM_EFORMAT, "%s: bad regex '%.*s': %s", where, (int)(n > 200 ? 200 : n), pat, (char *)msg);
    }
    /* Without JIT (unsupported CPU) PCRE2's interpreter gives the same matches, only slower. */
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    return TLM_OK;
}

void tok_regex_free(tok_regex *re) {
    pcre2_code_free(re->code);
    re->code = NULL;
}

void tok_pattern_free(tok_pattern *p) {
    free(p->lit);
    p->lit = NULL;
    if (p->is_regex) tok_regex_free(&p->re);
}

/* Appends the gap before [ms, me) and the match itself. */
static int add_match(tok_ranges *out, size_t *prev, size_t ms, size_t me) {
    if (*prev != ms && tok_ranges_push(out, *prev, ms, 0) < 0) return -1;
    if (tok_ranges_push(out, ms, me, 1) < 0) return -1;
    *prev = me;
    return 0;
}

static tlm_status regex_ranges(const tok_regex *re, const char *s, size_t n, tok_ws *ws, tok_ranges *out) {
    size_t pos = 0, prev = 0, last_end = 0;
    int have_last = 0;
    while (pos <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, ws->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return tlm_fail(TLM_EINVAL, "tokenizer regex match failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ws->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && have_last && last_end == me) {
            if (pos >= n) break;
            pos += tok_utf8_len((unsigned char)s[pos]);
            continue;
        }
        pos = last_end = me;
        have_last = 1;
        if (add_match(out, &prev, ms, me) < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    }
    if (prev != n && tok_ranges_push(out, prev, n, 0) < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    return TLM_OK;
}

tlm_status tok_pattern_ranges(const tok_pattern *p, const char *s, size_t n, tok_ws *ws, tok_ranges *out) {
    if (n == 0) return tok_ranges_push(out, 0, 0, 0) < 0 ? tlm_fail(TLM_ENOMEM, "tokenizer: out of memory") : TLM_OK;
    if (p->is_regex) return regex_ranges(&p->re, s, n, ws, out);
    if (p->lit_len == 0) return tok_ranges_push(out, 0, n, 0) < 0 ? tlm_fail(TLM_ENOMEM, "tokenizer: out of memory") : TLM_OK;
    size_t prev = 0, pos = 0;
    const char *hit;
    while (pos < n && (hit = find_lit(s + pos, n - pos, p->lit, p->lit_len))) {
        size_t ms = (size_t)(hit - s);
        if (add_match(out, &prev, ms, ms + p->lit_len) < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
        pos = ms + p->lit_len;
    }
    if (prev != n && tok_ranges_push(out, prev, n, 0) < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    return TLM_OK;
}
