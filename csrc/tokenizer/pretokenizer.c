/* pretokenizer.c: tokenizer.json "pre_tokenizer" (Split, ByteLevel,
 * Metaspace, Digits, and Sequences of them): splits a normalized segment into
 * the words BPE sees, rewriting their text where the step says so. */
#include "tokenizer/tok.h"

#include <string.h>

/* GPT-2's pattern, used by ByteLevel when use_regex is true. */
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static tlm_status parse_behavior(const cJSON *j, const char *path, tok_split_behavior *out) {
    const char *b;
    TLM_TRY(tok_json_need_str(j, "behavior", path, "Split", &b));
    if (strcmp(b, "Removed") == 0) *out = TOK_SPLIT_REMOVED;
    else if (strcmp(b, "Isolated") == 0) *out = TOK_SPLIT_ISOLATED;
    else if (strcmp(b, "MergedWithPrevious") == 0) *out = TOK_SPLIT_MERGED_PREV;
    else if (strcmp(b, "MergedWithNext") == 0) *out = TOK_SPLIT_MERGED_NEXT;
    else if (strcmp(b, "Contiguous") == 0) *out = TOK_SPLIT_CONTIGUOUS;
    else return tlm_fail(TLM_EFORMAT, "%s: unknown Split behavior '%s'", path, b);
    return TLM_OK;
}

static tlm_status parse_metaspace(const cJSON *j, const char *path, tok_pre *st) {
    uint32_t cp;
    TLM_TRY(tok_json_char(j, "replacement", "\xE2\x96\x81", path, &cp));
    st->repl_len = tok_utf8_put(cp, st->repl);
    const char *scheme;
    TLM_TRY(tok_json_str(j, "prepend_scheme", path, &scheme));
    if (!scheme) {
        /* Files written before prepend_scheme existed say add_prefix_space. */
        int add;
        TLM_TRY(tok_json_bool(j, "add_prefix_space", 1, path, &add));
        st->prepend = add ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    } else if (strcmp(scheme, "always") == 0) st->prepend = TOK_PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0) st->prepend = TOK_PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0) st->prepend = TOK_PREPEND_NEVER;
    else return tlm_fail(TLM_EFORMAT, "%s: unknown Metaspace prepend_scheme '%s'", path, scheme);
    return tok_json_bool(j, "split", 1, path, &st->split);
}

static tlm_status parse_one(const cJSON *j, const char *path, tok_pre *st) {
    const char *type;
    TLM_TRY(tok_json_need_str(j, "type", path, "a pre_tokenizer", &type));
    memset(st, 0, sizeof *st);
    if (strcmp(type, "Split") == 0) {
        st->kind = TOK_P_SPLIT;
        TLM_TRY(parse_behavior(j, path, &st->behavior));
        TLM_TRY(tok_json_bool(j, "invert", 0, path, &st->invert));
        return tok_json_pattern(j, "pattern", path, &st->pat);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        st->kind = TOK_P_BYTELEVEL;
        TLM_TRY(tok_json_bool(j, "add_prefix_space", 1, path, &st->add_prefix_space));
        TLM_TRY(tok_json_bool(j, "use_regex", 1, path, &st->use_regex));
        if (!st->use_regex) return TLM_OK;
        st->pat.is_regex = 1;
        return tok_regex_compile(&st->pat.re, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, path);
    }
    if (strcmp(type, "Metaspace") == 0) {
        st->kind = TOK_P_METASPACE;
        return parse_metaspace(j, path, st);
    }
    if (strcmp(type, "Digits") == 0) {
        int individual;
        st->kind = TOK_P_DIGITS;
        TLM_TRY(tok_json_bool(j, "individual_digits", 0, path, &individual));
        st->behavior = individual ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
        return TLM_OK;
    }
    return tlm_fail(TLM_EUNSUPPORTED, "%s: unsupported pre_tokenizer '%s'", path, type);
}

static tlm_status add_steps(const cJSON *j, const char *path, tok_pre **steps, size_t *n, size_t *cap) {
    const char *type;
    TLM_TRY(tok_json_need_str(j, "type", path, "a pre_tokenizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *c;
        if (!cJSON_IsArray(list)) return tlm_fail(TLM_EFORMAT, "%s: pre_tokenizer Sequence needs a 'pretokenizers' list", path);
        cJSON_ArrayForEach(c, list) TLM_TRY(add_steps(c, path, steps, n, cap));
        return TLM_OK;
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        tok_pre *p = realloc(*steps, c * sizeof *p);
        if (!p) return tlm_fail(TLM_ENOMEM, "%s: out of memory", path);
        *steps = p;
        *cap = c;
    }
    /* Counted before parsing so that a half-built step is freed with the rest. */
    return parse_one(j, path, &(*steps)[(*n)++]);
}

tlm_status tok_pre_parse(const cJSON *j, const char *path, tok_pre **steps, size_t *n) {
    size_t cap = 0;
    *steps = NULL;
    *n = 0;
    if (!j || cJSON_IsNull(j)) return TLM_OK;
    return add_steps(j, path, steps, n, &cap);
}

void tok_pre_free(tok_pre *steps, size_t n) {
    for (size_t i = 0; i < n; i++) tok_pattern_free(&steps[i].pat);
    free(steps);
}

/* Folds the ranges of one piece as tokenizers' SplitDelimiterBehavior does,
 * then appends the kept, non-empty ones to out (offsets relative to `off`). */
static int emit_split(tok_ranges *rg, tok_split_behavior b, size_t off, size_t head, tok_spans *out) {
    tok_range *r = rg->p;
    size_t n = rg->n, k = 0;
    int prev_match = 0;
    switch (b) {
    case TOK_SPLIT_REMOVED:
    case TOK_SPLIT_ISOLATED:
        k = n;
        break;
    case TOK_SPLIT_CONTIGUOUS:
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            int merge = b == TOK_SPLIT_CONTIGUOUS ? r[i].is_match == prev_match : r[i].is_match && !prev_match;
            prev_match = r[i].is_match;
            if (merge && k > 0) r[k - 1].end = r[i].end;
            else r[k++] = (tok_range){r[i].start, r[i].end, 0};
        }
        break;
    case TOK_SPLIT_MERGED_NEXT:
        /* Right to left, packing the result at the end of the array. */
        k = n;
        for (size_t i = n; i-- > 0;) {
            int merge = r[i].is_match && !prev_match;
            prev_match = r[i].is_match;
            if (merge && k < n) r[k].start = r[i].start;
            else r[--k] = (tok_range){r[i].start, r[i].end, 0};
        }
        memmove(r, r + k, (n - k) * sizeof *r);
        k = n - k;
        break;
    }
    for (size_t i = 0; i < k; i++) {
        if (b == TOK_SPLIT_REMOVED && r[i].is_match) continue;
        if (r[i].end == r[i].start) continue;
        size_t len = r[i].end - r[i].start;
        if (tok_spans_push(out, off + r[i].start, len, tok_sub_head(head, r[i].start, len)) < 0) return -1;
    }
    return 0;
}

/* Ranges of single characters matching a class or equal to `cp`, with gaps:
 * tokenizers' Pattern for char and Fn(char) -> bool. */
static int char_ranges(const char *s, size_t n, int numeric, const char *cp, size_t cp_len, tok_ranges *out) {
    if (n == 0) return tok_ranges_push(out, 0, 0, 0);
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        int hit;
        if (numeric) hit = tok_is_numeric(tok_utf8_next(s, i, &l));
        else { l = tok_utf8_len((unsigned char)s[i]); hit = l == cp_len && memcmp(s + i, cp, l) == 0; }
        if (hit) {
            if (last < i && tok_ranges_push(out, last, i, 0) < 0) return -1;
            if (tok_ranges_push(out, i, i + l, 1) < 0) return -1;
            last = i + l;
        }
        i += l;
    }
    if (last < n && tok_ranges_push(out, last, n, 0) < 0) return -1;
    return 0;
}

#define NOMEM tlm_fail(TLM_ENOMEM, "tokenizer: out of memory")

static tlm_status split_step(const tok_pre *st, const char *base, const tok_spans *in, tok_ws *ws, tok_spans *out) {
    for (size_t i = 0; i < in->n; i++) {
        const tok_span *sp = &in->p[i];
        ws->ranges.n = 0;
        if (st->kind == TOK_P_SPLIT) {
            TLM_TRY(tok_pattern_ranges(&st->pat, base + sp->off, sp->len, ws, &ws->ranges));
            if (st->invert)
                for (size_t k = 0; k < ws->ranges.n; k++) ws->ranges.p[k].is_match = !ws->ranges.p[k].is_match;
        } else if (char_ranges(base + sp->off, sp->len, 1, NULL, 0, &ws->ranges) < 0) {
            return NOMEM;
        }
        if (emit_split(&ws->ranges, st->behavior, sp->off, sp->head, out) < 0) return NOMEM;
    }
    return TLM_OK;
}

/* Metaspace: spaces become the replacement, which is also prepended per the
 * scheme; then (split) each replacement starts a new word. */
static tlm_status metaspace_step(const tok_pre *st, const char *base, const tok_spans *in, tok_ws *ws,
                                 tok_buf *text, tok_spans *out) {
    text->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const tok_span *sp = &in->p[i];
        const char *s = base + sp->off;
        size_t off = text->n;
        int starts = sp->len > 0 && (s[0] == ' ' || (sp->len >= st->repl_len && memcmp(s, st->repl, st->repl_len) == 0));
        int prepend = !starts && (st->prepend == TOK_PREPEND_ALWAYS || (st->prepend == TOK_PREPEND_FIRST && sp->head > 0));
        if (tok_buf_reserve(text, (sp->len + 1) * st->repl_len) < 0) return NOMEM;
        char *o = text->p + off;
        if (prepend) { memcpy(o, st->repl, st->repl_len); o += st->repl_len; }
        size_t head = 0;   /* the prefix, like the head's bytes, stems from the head's character */
        for (size_t k = 0; k < sp->len; k++) {
            if (s[k] == ' ') { memcpy(o, st->repl, st->repl_len); o += st->repl_len; }
            else *o++ = s[k];
            if (k + 1 == sp->head) head = (size_t)(o - (text->p + off));
        }
        text->n = (size_t)(o - text->p);
        size_t len = text->n - off;
        if (!st->split) {
            if (tok_spans_push(out, off, len, head) < 0) return NOMEM;
            continue;
        }
        ws->ranges.n = 0;
        if (char_ranges(text->p + off, len, 0, st->repl, st->repl_len, &ws->ranges) < 0 ||
            emit_split(&ws->ranges, TOK_SPLIT_MERGED_NEXT, off, head, out) < 0)
            return NOMEM;
    }
    return TLM_OK;
}

/* ByteLevel: optional leading space and GPT-2 split, then every byte becomes
 * its printable stand-in from the byte-level alphabet. */
static tlm_status bytelevel_step(const tok_pre *st, const tok_bytelevel *bl, const char *base, const tok_spans *in,
                                 tok_ws *ws, tok_buf *text, tok_spans *out) {
    text->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const tok_span *sp = &in->p[i];
        const char *s = base + sp->off;
        size_t n = sp->len;
        int space = st->add_prefix_space && !(n > 0 && s[0] == ' ');
        size_t head = sp->head;
        /* The GPT-2 split must see the prefixed text; build it in norm_tmp,
         * which normalization no longer needs at this point. */
        if (space) {
            tok_buf *pre = &ws->norm_tmp;
            pre->n = 0;
            if (tok_buf_put(pre, " ", 1) < 0 || tok_buf_put(pre, s, n) < 0) return NOMEM;
            s = pre->p;
            n = pre->n;
            if (head > 0) head++;
        }
        ws->ranges.n = 0;
        if (st->use_regex) TLM_TRY(tok_pattern_ranges(&st->pat, s, n, ws, &ws->ranges));
        else if (tok_ranges_push(&ws->ranges, 0, n, 0) < 0) return NOMEM;
        for (size_t k = 0; k < ws->ranges.n; k++) {
            const tok_range *r = &ws->ranges.p[k];
            if (r->end == r->start) continue;
            size_t off = text->n, sub_head = tok_sub_head(head, r->start, r->end - r->start), mapped_head = 0;
            if (tok_buf_reserve(text, 2 * (r->end - r->start)) < 0) return NOMEM;
            char *o = text->p + text->n;
            for (size_t b = r->start; b < r->end; b++) {
                unsigned char c = (unsigned char)s[b];
                o[0] = bl->enc[c][0];
                o[1] = bl->enc[c][1];
                o += bl->enc_len[c];
                if (b + 1 - r->start == sub_head) mapped_head = (size_t)(o - (text->p + off));
            }
            text->n = (size_t)(o - text->p);
            if (tok_spans_push(out, off, text->n - off, mapped_head) < 0) return NOMEM;
        }
    }
    return TLM_OK;
}

tlm_status tok_pretokenize(const tok_pre *steps, size_t n_steps, const tok_bytelevel *bl,
                           const char *s, size_t n, size_t head, tok_ws *ws, tok_words *out) {
    int cur = 0;          /* ws->spans[cur] holds the current words */
    int text = -1;        /* ws->text[text] holds their base, -1: s itself */
    const char *base = s;
    ws->spans[0].n = 0;
    if (n > 0 && tok_spans_push(&ws->spans[0], 0, n, head) < 0) return NOMEM;
    for (size_t i = 0; i < n_steps; i++) {
        const tok_pre *st = &steps[i];
        tok_spans *in = &ws->spans[cur], *o = &ws->spans[!cur];
        o->n = 0;
        if (st->kind == TOK_P_SPLIT || st->kind == TOK_P_DIGITS) {
            TLM_TRY(split_step(st, base, in, ws, o));
        } else {
            int t = text == 0 ? 1 : 0;
            if (st->kind == TOK_P_METASPACE) TLM_TRY(metaspace_step(st, base, in, ws, &ws->text[t], o));
            else TLM_TRY(bytelevel_step(st, bl, base, in, ws, &ws->text[t], o));
            text = t;
            base = ws->text[t].p;
        }
        cur = !cur;
    }
    out->base = base;
    out->spans = &ws->spans[cur];
    return TLM_OK;
}
