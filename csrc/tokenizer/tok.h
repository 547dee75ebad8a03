/* tok.h: internals of the BPE tokenizer, shared by the files of csrc/tokenizer/.
 *
 * The pipeline mirrors Hugging Face `tokenizers`, which is the reference for
 * every id we produce:
 *   raw text -> split on non-normalized added tokens (added.c)
 *            -> normalizer steps on each remaining segment (normalizer.c)
 *            -> split on normalized added tokens (added.c)
 *            -> pre-tokenizer steps, giving words (pretokenizer.c)
 *            -> BPE per word (bpe.c) -> post-processor ids around it (encode.c)
 * and decoding runs the decoder steps over the id strings (decoder.c).
 * Sequences of normalizers, pre-tokenizers and decoders are flattened into
 * arrays of steps when tokenizer.json is read (load.c). Strings are UTF-8
 * with explicit lengths everywhere (texts may contain NUL).
 */
#ifndef TLM_TOK_H
#define TLM_TOK_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdint.h>

#include "core/internal.h"

/* ------------------------------------------------------------ buffers */

typedef struct { char *p; size_t n, cap; } tok_buf;            /* bytes */

int tok_buf_reserve(tok_buf *b, size_t extra);                   /* 0, or -1 when out of memory */
int tok_buf_put(tok_buf *b, const void *s, size_t n);
void tok_buf_free(tok_buf *b);
int tok_ids_push(tlm_tok_ids *v, int32_t id);
int tok_ids_put(tlm_tok_ids *v, const int32_t *ids, size_t n);

/* A byte range of some string. head: how many of its first bytes stem from
 * the first character of the original input (0: none). tokenizers tracks
 * the original offsets of normalized text, and Metaspace's prepend_scheme
 * "first" prepends to a word whose start maps to original offset 0. */
typedef struct { size_t off, len, head; } tok_span;
typedef struct { tok_span *p; size_t n, cap; } tok_spans;
int tok_spans_push(tok_spans *v, size_t off, size_t len, size_t head);

/* The head of the sub-range [r, r + len) of a range whose head is `head`. */
static inline size_t tok_sub_head(size_t head, size_t r, size_t len) {
    return r >= head ? 0 : head - r < len ? head - r : len;
}

/* A match or gap of a pattern inside a string: [start, end). */
typedef struct { size_t start, end; int is_match; } tok_range;
typedef struct { tok_range *p; size_t n, cap; } tok_ranges;
int tok_ranges_push(tok_ranges *v, size_t start, size_t end, int is_match);

char *tok_strndup(const char *s, size_t n);   /* NUL-terminated copy, NULL when out of memory */

/* ------------------------------------------------------------ unicode */

/* Decodes the code point at s[i] (valid UTF-8), storing its byte length. */
uint32_t tok_utf8_next(const char *s, size_t i, size_t *len);
/* Writes cp as UTF-8 into out (4 bytes room); returns the byte length. */
size_t tok_utf8_put(uint32_t cp, char *out);
/* Byte length of the UTF-8 sequence whose lead byte is c (1 for stray bytes). */
static inline size_t tok_utf8_len(unsigned char c) {
    return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}
/* 1 if s[0..n) is valid UTF-8. */
int tok_utf8_valid(const char *s, size_t n);
/* Bytes of the longest valid UTF-8 prefix of s[0..n) (n when all of it is). */
size_t tok_utf8_valid_prefix(const char *s, size_t n);
/* Appends s[0..n) to out with each maximal invalid subsequence replaced by
 * U+FFFD, as Rust's String::from_utf8_lossy (and Python's "replace") do. */
int tok_utf8_lossy(const char *s, size_t n, tok_buf *out);

/* Character classes of Rust's `regex` crate, which tokenizers uses around
 * added tokens: \s is White_Space, \w is Alphabetic, M, Nd, Pc, Join_Control.
 * Backed by PCRE2's Unicode tables (compiled once, on first use). */
tlm_status tok_unicode_init(void);
int tok_is_space(uint32_t cp);
int tok_is_word(uint32_t cp);
/* Rust's char::is_numeric: general category Nd, Nl or No. */
int tok_is_numeric(uint32_t cp);

/* ------------------------------------------------------------ hashing */

uint64_t tok_hash(const char *s, size_t n);

/* String -> int32 dictionary; strings are copied into an arena. */
typedef struct { size_t off; uint32_t len; int32_t val; } tok_dict_entry;
typedef struct {
    tok_buf arena;
    tok_dict_entry *e; size_t n, cap;
    uint64_t *slots; size_t mask;   /* (hash >> 32) << 32 | (entry index + 1); 0 = empty */
} tok_dict;

/* Inserts or overwrites (a later duplicate wins, as in a Rust HashMap). */
int tok_dict_put(tok_dict *d, const char *s, size_t n, int32_t val);
int32_t tok_dict_get(const tok_dict *d, const char *s, size_t n);   /* -1 when absent */
void tok_dict_free(tok_dict *d);

/* (left id, right id) -> (rank, merged id) for BPE merges. */
typedef struct { uint64_t key; uint32_t rank; int32_t id; } tok_merge;
typedef struct { tok_merge *slots; size_t mask, n; } tok_merges;

int tok_merges_init(tok_merges *m, size_t expected);
int tok_merges_put(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
const tok_merge *tok_merges_get(const tok_merges *m, int32_t a, int32_t b);
void tok_merges_free(tok_merges *m);

/* ------------------------------------------------------------ regex */

typedef struct { pcre2_code *code; } tok_regex;

/* Compiles a tokenizer.json regex (Oniguruma syntax, as tokenizers uses)
 * with PCRE2 in UTF + UCP mode and JIT. `where` names the file and field. */
tlm_status tok_regex_compile(tok_regex *re, const char *pat, size_t n, const char *where);
void tok_regex_free(tok_regex *re);

/* A literal string or a regex, as tokenizer.json's {"String"} / {"Regex"}. */
typedef struct { int is_regex; char *lit; size_t lit_len; tok_regex re; } tok_pattern;
void tok_pattern_free(tok_pattern *p);

/* ------------------------------------------------------------ json */

/* Typed members of a JSON object; an absent or null member gives NULL or the
 * default; a member of the wrong type is TLM_EFORMAT naming `path`. */
tlm_status tok_json_str(const cJSON *obj, const char *key, const char *path, const char **out);
tlm_status tok_json_need_str(const cJSON *obj, const char *key, const char *path, const char *what, const char **out);
tlm_status tok_json_bool(const cJSON *obj, const char *key, int dflt, const char *path, int *out);
tlm_status tok_json_size(const cJSON *obj, const char *key, size_t dflt, const char *path, size_t *out);
tlm_status tok_json_char(const cJSON *obj, const char *key, const char *dflt, const char *path, uint32_t *out);
/* {"String": s} or {"Regex": r} under obj[key]. */
tlm_status tok_json_pattern(const cJSON *obj, const char *key, const char *path, tok_pattern *out);

/* Scratch memory for one thread's encode/decode calls. */
typedef struct tok_ws tok_ws;

/* Appends to out the matches of p in s[0..n) and the gaps between them,
 * covering s, in order (tokenizers' Pattern::find_matches). */
tlm_status tok_pattern_ranges(const tok_pattern *p, const char *s, size_t n, tok_ws *ws, tok_ranges *out);

/* ------------------------------------------------------------ byte level */

/* GPT-2's bytes_to_unicode alphabet: byte -> printable code point. */
typedef struct {
    char enc[256][2]; uint8_t enc_len[256];   /* UTF-8 of each byte's code point */
    int16_t dec[324];                          /* code point -> byte, -1 when not in the alphabet */
} tok_bytelevel;

void tok_bytelevel_init(tok_bytelevel *bl);

/* ------------------------------------------------------------ normalizer */

typedef enum { TOK_N_NFC, TOK_N_NFD, TOK_N_NFKC, TOK_N_NFKD, TOK_N_PREPEND, TOK_N_REPLACE } tok_norm_kind;

typedef struct {
    tok_norm_kind kind;
    tok_pattern pat;              /* Replace */
    char *text; size_t text_len;  /* Prepend: prefix; Replace: content */
} tok_norm;

/* Reads a normalizer (null: none) into a flat list of steps. */
tlm_status tok_norm_parse(const cJSON *j, const char *path, tok_norm **steps, size_t *n);
void tok_norm_free(tok_norm *steps, size_t n);
/* Applies the steps to s[0..n), leaving the result in ws->norm and, given
 * the head of s, the head of the result in ws->norm_head. */
tlm_status tok_normalize(const tok_norm *steps, size_t n_steps, const char *s, size_t n, size_t head, tok_ws *ws);

/* ------------------------------------------------------------ pre-tokenizer */

typedef enum { TOK_P_SPLIT, TOK_P_BYTELEVEL, TOK_P_METASPACE, TOK_P_DIGITS } tok_pre_kind;
typedef enum {
    TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT, TOK_SPLIT_CONTIGUOUS
} tok_split_behavior;
typedef enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } tok_prepend_scheme;

typedef struct {
    tok_pre_kind kind;
    tok_pattern pat;              /* Split; ByteLevel with use_regex (GPT-2's pattern) */
    tok_split_behavior behavior;  /* Split, Digits */
    int invert;                   /* Split */
    int add_prefix_space;         /* ByteLevel */
    int use_regex;                /* ByteLevel */
    char repl[4]; size_t repl_len; /* Metaspace replacement character */
    tok_prepend_scheme prepend;   /* Metaspace */
    int split;                    /* Metaspace */
} tok_pre;

tlm_status tok_pre_parse(const cJSON *j, const char *path, tok_pre **steps, size_t *n);
void tok_pre_free(tok_pre *steps, size_t n);

/* Words of one segment: spans over `base`, which is the segment itself or a
 * workspace buffer once a step has rewritten the text. */
typedef struct { const char *base; tok_spans *spans; } tok_words;

/* Runs the steps over s[0..n), whose head is `head`. */
tlm_status tok_pretokenize(const tok_pre *steps, size_t n_steps, const tok_bytelevel *bl,
                           const char *s, size_t n, size_t head, tok_ws *ws, tok_words *out);

/* ------------------------------------------------------------ model */

typedef struct {
    tok_dict vocab;               /* token -> id */
    tok_merges merges;
    int32_t *bmp_id;              /* [0x10000] id of each single-code-point token of the BMP, -1 if none */
    int32_t byte_id[256];         /* id of "<0xNN>", -1 if none */
    int32_t unk_id;               /* -1 when the model has no unk_token */
    int fuse_unk, byte_fallback, ignore_merges;
    /* No merge joins a token not ending in U+2581 ('▁') to one starting with
     * it, and '▁' is a token: so BPE never crosses the start of a '▁' run,
     * and a long SentencePiece-style word (a whole text when there is no
     * pre-tokenizer) can be merged one '▁'-led piece at a time. */
    int split_at_metaspace;
} tok_bpe;

/* Appends the ids of one pre-tokenized word. */
tlm_status tok_bpe_word(const tok_bpe *m, const char *w, size_t n, tok_ws *ws, tlm_tok_ids *out);
void tok_bpe_free(tok_bpe *m);

/* ------------------------------------------------------------ added tokens */

typedef struct {
    char *content; size_t len;
    /* The normalized content when `normalized` (else a copy of content):
     * tokenizers matches it in normalized text and decodes the id to it. */
    char *form; size_t form_len;
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} tok_added;

/* Leftmost-longest matcher over the contents (or normalized contents) of a
 * subset of the added tokens, as tokenizers' Aho-Corasick tries. */
typedef struct {
    size_t n;
    char **pat; size_t *pat_len;  /* [n], sorted by first byte, then longest first */
    int32_t *added;               /* [n] index into tlm_tok.added */
    uint32_t first[257];          /* patterns starting with byte c are first[c]..first[c+1] */
} tok_matcher;

/* A piece of text between added tokens (added < 0) or an added token match. */
typedef struct { size_t start, end; int32_t added; } tok_seg;
typedef struct { tok_seg *p; size_t n, cap; } tok_segs;

/* Matcher over the non-normalized tokens' contents, or the normalized ones' forms. */
int tok_matcher_build(tok_matcher *m, const tok_added *added, size_t n_added, int normalized);
void tok_matcher_free(tok_matcher *m);
/* Splits s[0..n) into segments with tokenizers' single_word/lstrip/rstrip rules. */
int tok_matcher_split(const tok_matcher *m, const tok_added *added, const char *s, size_t n, tok_segs *out);

/* ------------------------------------------------------------ decoder */

typedef enum {
    TOK_D_BYTELEVEL, TOK_D_METASPACE, TOK_D_REPLACE, TOK_D_BYTEFALLBACK, TOK_D_FUSE, TOK_D_STRIP
} tok_dec_kind;

typedef struct {
    tok_dec_kind kind;
    tok_pattern pat; char *content; size_t content_len;  /* Replace */
    uint32_t cp;                  /* Strip: content; Metaspace: replacement */
    size_t start, stop;           /* Strip */
    tok_prepend_scheme prepend;   /* Metaspace */
} tok_dec;

tlm_status tok_dec_parse(const cJSON *j, const char *path, tok_dec **steps, size_t *n);
void tok_dec_free(tok_dec *steps, size_t n);

/* A list of strings, each a span of one buffer. */
typedef struct { tok_buf text; tok_spans spans; } tok_strs;

/* Runs the steps over the token strings, leaving the result in `toks`. */
tlm_status tok_decode_steps(const tok_dec *steps, size_t n_steps, const tok_bytelevel *bl, tok_ws *ws, tok_strs *toks);

/* ------------------------------------------------------------ word cache */

/* BPE results of recent short words (one cache per workspace, so no locks):
 * direct-mapped slots over an arena of word bytes and ids; when the arena
 * fills up, everything is dropped and the cache starts over. */
typedef struct { uint64_t hash; uint32_t off; uint16_t len, n_ids; } tok_cache_slot;
typedef struct {
    tok_cache_slot *slots; size_t mask;   /* hash 0 marks an empty slot */
    tok_buf arena;                        /* word bytes, then its int32 ids (aligned) */
} tok_cache;

#define TOK_CACHE_MAX_WORD 64   /* bytes; longer words are merged every time */

/* The cached ids of w (NULL on a miss), their count in *n. */
const int32_t *tok_cache_get(const tok_cache *c, const char *w, size_t len, uint64_t hash, size_t *n);
void tok_cache_put(tok_cache *c, const char *w, size_t len, uint64_t hash, const int32_t *ids, size_t n);
void tok_cache_free(tok_cache *c);

/* ------------------------------------------------------------ workspace */

struct tok_ws {
    pcre2_match_data *md;
    tok_buf norm, norm_tmp;       /* normalizer output and scratch */
    size_t norm_head;             /* head of norm (see tok_span) */
    tok_buf text[2];              /* pre-tokenizer rewrites (ping-pong) */
    tok_spans spans[2];           /* pre-tokenizer words (ping-pong) */
    tok_ranges ranges;
    tok_segs raw_segs, norm_segs; /* added-token splits */
    void *sym; size_t sym_cap;    /* BPE symbols */
    void *heap; size_t heap_cap;  /* BPE merge queue, or pair ranks for short words */
    tok_cache cache;              /* BPE results by word */
    tok_strs strs[2];             /* decoder ping-pong */
};

tok_ws *tok_ws_new(void);
void tok_ws_free(tok_ws *ws);

/* Workspaces kept by a tokenizer between calls, so that their buffers and
 * word caches outlive one encode. Calls borrow one each (thread-safe). */
typedef struct tok_pool tok_pool;
tok_pool *tok_pool_new(void);
void tok_pool_free(tok_pool *p);
tok_ws *tok_ws_acquire(tok_pool *p);              /* NULL when out of memory */
void tok_ws_release(tok_pool *p, tok_ws *ws);

/* ------------------------------------------------------------ tokenizer */

struct tlm_tok {
    char *path;                   /* tokenizer.json, for messages */
    tok_norm *norm; size_t n_norm;
    tok_pre *pre; size_t n_pre;
    tok_bpe bpe;
    tok_bytelevel bl;
    tok_added *added; size_t n_added;
    tok_dict added_ids;           /* content -> index into added */
    tok_matcher raw_match, norm_match;
    int32_t *prefix, *suffix; size_t n_prefix, n_suffix;  /* post-processor ids around a sequence */
    int has_decoder;
    tok_dec *dec; size_t n_dec;
    int32_t n_ids;                /* 1 + the largest id */
    const char **id_str; uint32_t *id_len; uint8_t *id_special;  /* [n_ids]; id_str NULL for unused ids */
    int64_t vocab_size;           /* distinct ids, model and added tokens together */
    char *special[TLM_TOK_NSPECIAL];
    tok_pool *pool;               /* workspaces; mutable behind the const tokenizer */
};

/* The post_processor's ids (null: none) appended to t->prefix / t->suffix. */
tlm_status tok_post_parse(const cJSON *j, const char *path, tlm_tok *t);
/* tokenizer_config.json's add_bos_token / add_eos_token over the post-processor;
 * needs the special token strings. */
tlm_status tok_post_from_config(const cJSON *cfg, const char *path, tlm_tok *t);

#endif
