/* fuzz_tokenizer_check.h: what must hold of any loaded tokenizer and any
 * encoding it makes, whatever file it came from. Python decodes every
 * string the core returns strictly, so each must be valid UTF-8. */
#ifndef TLM_FUZZ_TOKENIZER_CHECK_H
#define TLM_FUZZ_TOKENIZER_CHECK_H

#include "fuzz_common.h"

static inline void check_utf8_or_die(const char *s, size_t n, const char *what) {
    if (!fuzz_utf8_valid(s, n)) {
        fprintf(stderr, "%s is not valid UTF-8 (%zu bytes)\n", what, n);
        abort();
    }
}

/* Encodes text, checks the ids are non-negative, decodes them
 * both ways and checks the text that comes back. */
static inline void check_encode(const tlm_tok *t, const char *text, size_t n, int add_special) {
    tlm_tok_ids ids = {0};
    tlm_status st = tlm_tok_encode(t, text, n, add_special, &ids);
    if (st != TLM_OK) {
        /* invalid UTF-8 is refused; anything valid must encode */
        if (st != TLM_EINVAL || fuzz_utf8_valid(text, n)) fuzz_expect_failure(TLM_OK, "tlm_tok_encode");
        tlm_tok_ids_free(&ids);
        return;
    }
    /* Not "ids the vocabulary names": a post-processor template may add any
     * id its file gives, as tokenizers does. */
    for (int64_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0) {
            fprintf(stderr, "encode produced id %d\n", ids.ids[i]);
            abort();
        }
    for (int skip = 0; skip < 2; skip++) {
        char *out;
        size_t len;
        if (tlm_tok_decode(t, ids.ids, ids.n, skip, &out, &len) != TLM_OK) abort();
        check_utf8_or_die(out, len, "decoded text");
        free(out);
    }
    tlm_tok_ids_free(&ids);
}

/* Every token string and special token must reach Python intact (a
 * normalized added token's string is its normalized form, which need not
 * map back to its id, so only the text is checked). */
static inline void check_vocabulary(const tlm_tok *t) {
    int64_t n = tlm_tok_vocab_size(t);
    for (int32_t id = 0, named = 0; named < n && id >= 0; id++) {
        size_t len;
        const char *s = tlm_tok_id_to_token(t, id, &len);
        if (!s) continue;
        named++;
        check_utf8_or_die(s, len, "a token string");
    }
    for (int k = 0; k < TLM_TOK_NSPECIAL; k++) {
        const char *s = tlm_tok_special_token(t, (tlm_tok_special)k);
        if (s) check_utf8_or_die(s, strlen(s), "a special token");
    }
}

#endif
