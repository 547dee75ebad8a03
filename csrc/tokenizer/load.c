/* load.c: reads tokenizer.json (+ tokenizer_config.json), from a folder or
 * from JSON text in memory, into a tlm_tok, and the accessors of a loaded
 * tokenizer. */
#include "tokenizer/tok.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define NOMEM(path) tlm_fail(TLM_ENOMEM, "%s: out of memory", path)
#define METASPACE "\xE2\x96\x81"   /* U+2581, SentencePiece's word marker */

/* Reads a whole file; *missing tells ENOENT apart from other failures. */
static tlm_status read_file(const char *path, char **data, size_t *len, int *missing) {
    *data = NULL;
    *missing = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        return tlm_fail(TLM_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    tok_buf b = {0};
    char chunk[1 << 16];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (tok_buf_put(&b, chunk, got) < 0) { fclose(f); tok_buf_free(&b); return NOMEM(path); }
    int err = ferror(f);
    fclose(f);
    if (err) { tok_buf_free(&b); return tlm_fail(TLM_EIO, "cannot read %s", path); }
    *data = b.p ? b.p : calloc(1, 1);
    *len = b.n;
    return *data ? TLM_OK : NOMEM(path);
}

/* Parses JSON text; `name` (a file, or the caller's source) is for messages. */
static tlm_status parse_text(const char *data, size_t len, const char *name, cJSON **out) {
    /* JSON text is UTF-8 (RFC 8259; tokenizers refuses anything else), and
     * every string in it reaches Python, which decodes strictly. */
    size_t valid = tok_utf8_valid_prefix(data, len);
    if (valid != len) return tlm_fail(TLM_EFORMAT, "%s: not valid UTF-8 (byte %zu)", name, valid);
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!*out) return tlm_fail(TLM_EFORMAT, "%s: malformed JSON near byte %ld", name, end ? (long)(end - data) : 0L);
    return TLM_OK;
}

static tlm_status parse_json(const char *path, cJSON **out, int *missing) {
    char *data;
    size_t len;
    TLM_TRY(read_file(path, &data, &len, missing));
    tlm_status st = parse_text(data, len, path, out);
    free(data);
    return st;
}

static tlm_status check_utf8(const char *s, const char *path, const char *what) {
    if (!tok_utf8_valid(s, strlen(s))) return tlm_fail(TLM_EFORMAT, "%s: %s is not valid UTF-8", path, what);
    return TLM_OK;
}

static tlm_status parse_id(const cJSON *v, const char *path, const char *what, int32_t *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= INT32_MAX || v->valuedouble != (double)(int32_t)v->valuedouble)
        return tlm_fail(TLM_EFORMAT, "%s: %s needs an integer id in [0, 2^31 - 1)", path, what);
    *id = (int32_t)v->valuedouble;
    return TLM_OK;
}

/* One merge: "a b" (exactly one space) or ["a", "b"]. */
static tlm_status merge_parts(const cJSON *m, const char *path, size_t rank, tok_buf *a, tok_buf *b) {
    a->n = b->n = 0;
    const char *s1, *s2;
    size_t n1, n2;
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return tlm_fail(TLM_EFORMAT, "%s: merge %zu ('%s') is not two tokens separated by one space", path, rank + 1, s);
        s1 = s; n1 = (size_t)(sp - s); s2 = sp + 1; n2 = strlen(s2);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        s1 = m->child->valuestring; n1 = strlen(s1);
        s2 = m->child->next->valuestring; n2 = strlen(s2);
    } else {
        return tlm_fail(TLM_EFORMAT, "%s: merge %zu must be \"a b\" or [\"a\", \"b\"]", path, rank + 1);
    }
    if (tok_buf_put(a, s1, n1) < 0 || tok_buf_put(b, s2, n2) < 0) return NOMEM(path);
    return TLM_OK;
}

/* The rank of merge k: ranks[k] when the model gives "merge_ranks", else k.
 * "merge_ranks" is tinylm's, not a `tokenizers` field: merges of equal rank
 * apply leftmost first, which is how a SentencePiece vocabulary read from
 * GGUF merges (by the score of the merged token, ties by position). */
static tlm_status merge_rank(const cJSON *r, size_t k, size_t fallback, const char *path, uint32_t *rank) {
    if (!r) { *rank = (uint32_t)fallback; return TLM_OK; }
    if (!cJSON_IsNumber(r) || r->valuedouble < 0 || r->valuedouble >= UINT32_MAX || r->valuedouble != (double)(uint32_t)r->valuedouble)
        return tlm_fail(TLM_EFORMAT, "%s: model.merge_ranks[%zu] must be an integer in [0, 2^32 - 1)", path, k);
    *rank = (uint32_t)r->valuedouble;
    return TLM_OK;
}

static tlm_status parse_merges(const cJSON *list, const cJSON *ranks, const char *path, tok_bpe *m) {
    if (!cJSON_IsArray(list)) return tlm_fail(TLM_EFORMAT, "%s: model.merges must be a list", path);
    if (ranks && !cJSON_IsNull(ranks) && (!cJSON_IsArray(ranks) || cJSON_GetArraySize(ranks) != cJSON_GetArraySize(list)))
        return tlm_fail(TLM_EFORMAT, "%s: model.merge_ranks must be a list as long as model.merges", path);
    /* ranks walks along the merges: an array's items are a linked list. */
    const cJSON *r_item = ranks && !cJSON_IsNull(ranks) ? ranks->child : NULL;
    if (tok_merges_init(&m->merges, (size_t)cJSON_GetArraySize(list)) < 0) return NOMEM(path);
    tok_buf a = {0}, b = {0}, ab = {0};
    tlm_status st = TLM_OK;
    size_t rank = 0, k = 0;
    m->split_at_metaspace = 1;
    const cJSON *c;
    for (c = list->child; c; c = c->next, k++) {
        const cJSON *given = r_item;
        if (r_item) r_item = r_item->next;
        /* merges.txt headers survive in some converted files; tokenizers skips them. */
        if (cJSON_IsString(c) && strncmp(c->valuestring, "#version", 8) == 0) continue;
        uint32_t r = 0;
        if ((st = merge_rank(given, k, rank, path, &r)) != TLM_OK) break;
        if ((st = merge_parts(c, path, rank, &a, &b)) != TLM_OK) break;
        ab.n = 0;
        if (tok_buf_put(&ab, a.p, a.n) < 0 || tok_buf_put(&ab, b.p, b.n) < 0) { st = NOMEM(path); break; }
        int32_t ia = tok_dict_get(&m->vocab, a.p, a.n), ib = tok_dict_get(&m->vocab, b.p, b.n);
        int32_t iab = tok_dict_get(&m->vocab, ab.p, ab.n);
        if (ia < 0 || ib < 0 || iab < 0) {
            const tok_buf *miss = ia < 0 ? &a : ib < 0 ? &b : &ab;
            st = tlm_fail(TLM_EFORMAT, "%s: merge %zu uses '%.*s', which is not in the vocabulary", path, rank + 1, (int)miss->n, miss->p);
            break;
        }
        if (tok_merges_put(&m->merges, ia, ib, r, iab) < 0) { st = NOMEM(path); break; }
        if (b.n >= 3 && memcmp(b.p, METASPACE, 3) == 0 && (a.n < 3 || memcmp(a.p + a.n - 3, METASPACE, 3) != 0))
            m->split_at_metaspace = 0;
        rank++;
    }
    tok_buf_free(&a);
    tok_buf_free(&b);
    tok_buf_free(&ab);
    return st;
}

static tlm_status parse_bpe(const cJSON *model, const char *path, tok_bpe *m) {
    const char *type;
    TLM_TRY(tok_json_str(model, "type", path, &type));
    if (type && strcmp(type, "BPE") != 0) return tlm_fail(TLM_EUNSUPPORTED, "%s: unsupported model '%s' (tinylm reads BPE)", path, type);
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return tlm_fail(TLM_EUNSUPPORTED, "%s: model has no type and is not BPE (no merges)", path);

    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return tlm_fail(TLM_EUNSUPPORTED, "%s: unsupported BPE dropout %g (encoding would be random)", path, dropout->valuedouble);
    const char *affix[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const char *s;
        TLM_TRY(tok_json_str(model, affix[k], path, &s));
        if (s && s[0]) return tlm_fail(TLM_EUNSUPPORTED, "%s: unsupported BPE %s '%s'", path, affix[k], s);
    }
    TLM_TRY(tok_json_bool(model, "fuse_unk", 0, path, &m->fuse_unk));
    TLM_TRY(tok_json_bool(model, "byte_fallback", 0, path, &m->byte_fallback));
    TLM_TRY(tok_json_bool(model, "ignore_merges", 0, path, &m->ignore_merges));

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *c;
    if (!cJSON_IsObject(vocab)) return tlm_fail(TLM_EFORMAT, "%s: model.vocab must be an object", path);
    cJSON_ArrayForEach(c, vocab) {
        int32_t id = -1;
        TLM_TRY(check_utf8(c->string, path, "a vocabulary token"));
        TLM_TRY(parse_id(c, path, "model.vocab", &id));
        if (tok_dict_put(&m->vocab, c->string, strlen(c->string), id) < 0) return NOMEM(path);
    }
    TLM_TRY(parse_merges(cJSON_GetObjectItemCaseSensitive(model, "merges"),
                         cJSON_GetObjectItemCaseSensitive(model, "merge_ranks"), path, m));

    const char *unk;
    TLM_TRY(tok_json_str(model, "unk_token", path, &unk));
    m->unk_id = -1;
    if (unk && (m->unk_id = tok_dict_get(&m->vocab, unk, strlen(unk))) < 0)
        return tlm_fail(TLM_EFORMAT, "%s: unk_token '%s' is not in the vocabulary", path, unk);

    if (!(m->bmp_id = malloc(0x10000 * sizeof *m->bmp_id))) return NOMEM(path);
    memset(m->bmp_id, 0xFF, 0x10000 * sizeof *m->bmp_id);
    for (size_t i = 0; i < m->vocab.n; i++) {
        const tok_dict_entry *e = &m->vocab.e[i];
        size_t l;
        uint32_t cp = tok_utf8_next(m->vocab.arena.p + e->off, 0, &l);
        if (e->len > 0 && l == e->len && cp < 0x10000) m->bmp_id[cp] = e->val;
    }
    if (m->bmp_id[0x2581] < 0) m->split_at_metaspace = 0;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = tok_dict_get(&m->vocab, name, 6);
    }
    return TLM_OK;
}

/* The id tokenizers gives an added token: its existing id if the content is
 * already an added or model token, else the next one after the model's
 * vocabulary and the added tokens so far. tokenizers itself only warns when
 * the file's "id" differs, so the file's id is checked for form only. */
static int32_t added_id(const tlm_tok *t, const char *content, size_t len) {
    int32_t a = tok_dict_get(&t->added_ids, content, len);
    if (a >= 0) return t->added[a].id;
    int32_t id = tok_dict_get(&t->bpe.vocab, content, len);
    if (id >= 0) return id;
    int64_t model = (int64_t)t->bpe.vocab.n, max = -1;
    for (size_t i = 0; i < t->n_added; i++) if (t->added[i].id > max) max = t->added[i].id;
    return (int32_t)(max >= 0 && (max >= model || model == 0) ? max + 1 : model);
}

static tlm_status parse_added(const cJSON *list, const char *path, tlm_tok *t) {
    if (!list || cJSON_IsNull(list)) return TLM_OK;
    if (!cJSON_IsArray(list)) return tlm_fail(TLM_EFORMAT, "%s: added_tokens must be a list", path);
    size_t n = (size_t)cJSON_GetArraySize(list);
    if (!(t->added = calloc(n + 1, sizeof *t->added))) return NOMEM(path);
    const cJSON *c;
    cJSON_ArrayForEach(c, list) {
        const char *content;
        int32_t file_id;
        int special, normalized, lstrip, rstrip, single;
        TLM_TRY(tok_json_need_str(c, "content", path, "an added token", &content));
        TLM_TRY(check_utf8(content, path, "an added token"));
        TLM_TRY(parse_id(cJSON_GetObjectItemCaseSensitive(c, "id"), path, "an added token", &file_id));
        TLM_TRY(tok_json_bool(c, "special", 0, path, &special));
        TLM_TRY(tok_json_bool(c, "normalized", !special, path, &normalized));
        TLM_TRY(tok_json_bool(c, "lstrip", 0, path, &lstrip));
        TLM_TRY(tok_json_bool(c, "rstrip", 0, path, &rstrip));
        TLM_TRY(tok_json_bool(c, "single_word", 0, path, &single));
        size_t len = strlen(content);
        if (len == 0) continue;   /* tokenizers ignores empty added tokens */
        /* A repeated content updates the flags of its first entry. */
        int32_t dup = tok_dict_get(&t->added_ids, content, len);
        tok_added *a = dup >= 0 ? &t->added[dup] : &t->added[t->n_added];
        if (dup < 0) {
            a->id = added_id(t, content, len);
            a->len = len;
            if (!(a->content = tok_strndup(content, len))) return NOMEM(path);
            if (tok_dict_put(&t->added_ids, a->content, a->len, (int32_t)t->n_added) < 0) return NOMEM(path);
            t->n_added++;
        }
        a->special = (uint8_t)special;
        a->normalized = (uint8_t)normalized;
        a->lstrip = (uint8_t)lstrip;
        a->rstrip = (uint8_t)rstrip;
        a->single_word = (uint8_t)single;
    }
    return TLM_OK;
}

/* Each added token's form (normalized content when it is normalized), then
 * the matchers for raw text and for normalized text. */
static tlm_status build_matchers(tlm_tok *t, const char *path) {
    tok_ws *ws = tok_ws_new();
    if (!ws) return NOMEM(path);
    tlm_status st = TLM_OK;
    for (size_t i = 0; st == TLM_OK && i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        const char *s = a->content;
        size_t n = a->len;
        if (a->normalized && t->n_norm > 0) {
            st = tok_normalize(t->norm, t->n_norm, a->content, a->len, 0, ws);
            s = ws->norm.p;
            n = ws->norm.n;
        }
        if (st == TLM_OK && !(a->form = tok_strndup(s, n))) st = NOMEM(path);
        a->form_len = n;
    }
    tok_ws_free(ws);
    TLM_TRY(st);
    if (tok_matcher_build(&t->raw_match, t->added, t->n_added, 0) < 0 ||
        tok_matcher_build(&t->norm_match, t->added, t->n_added, 1) < 0)
        return NOMEM(path);
    return TLM_OK;
}

/* id -> string for decoding (added tokens over model tokens) and the count of ids. */
static tlm_status build_id_table(tlm_tok *t, const char *path) {
    int32_t max = -1;
    for (size_t i = 0; i < t->bpe.vocab.n; i++) if (t->bpe.vocab.e[i].val > max) max = t->bpe.vocab.e[i].val;
    for (size_t i = 0; i < t->n_added; i++) if (t->added[i].id > max) max = t->added[i].id;
    t->n_ids = max + 1;
    t->id_str = calloc((size_t)t->n_ids + 1, sizeof *t->id_str);
    t->id_len = calloc((size_t)t->n_ids + 1, sizeof *t->id_len);
    t->id_special = calloc((size_t)t->n_ids + 1, 1);
    if (!t->id_str || !t->id_len || !t->id_special) return NOMEM(path);
    for (size_t i = 0; i < t->bpe.vocab.n; i++) {
        const tok_dict_entry *e = &t->bpe.vocab.e[i];
        t->id_str[e->val] = t->bpe.vocab.arena.p + e->off;
        t->id_len[e->val] = e->len;
    }
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        t->id_str[a->id] = a->form;
        t->id_len[a->id] = (uint32_t)a->form_len;
        t->id_special[a->id] = a->special;
    }
    for (int32_t i = 0; i < t->n_ids; i++) t->vocab_size += t->id_str[i] != NULL;
    return TLM_OK;
}

/* A special token in tokenizer_config.json: a string or {"content": ...}. */
static tlm_status config_token(const cJSON *cfg, const char *key, const char *path, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v) return TLM_OK;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    free(*out);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return TLM_OK;   /* an explicit null unsets the token */
    if (!cJSON_IsString(v)) return tlm_fail(TLM_EFORMAT, "%s: '%s' must be a string or {\"content\": ...}", path, key);
    TLM_TRY(check_utf8(v->valuestring, path, key));
    return (*out = tok_strndup(v->valuestring, strlen(v->valuestring))) ? TLM_OK : NOMEM(path);
}

/* tokenizer_config.json's special token strings and add_bos/eos flags (cfg NULL: none). */
static tlm_status apply_config(tlm_tok *t, const cJSON *cfg, const char *name) {
    static const char *const keys[TLM_TOK_NSPECIAL] = {
        "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    if (!cfg) return TLM_OK;
    if (!cJSON_IsObject(cfg)) return tlm_fail(TLM_EFORMAT, "%s: must hold a JSON object", name);
    for (int k = 0; k < TLM_TOK_NSPECIAL; k++) TLM_TRY(config_token(cfg, keys[k], name, &t->special[k]));
    return tok_post_from_config(cfg, name, t);
}

/* Builds t from parsed tokenizer.json; t->path names it in messages. */
static tlm_status load_root(tlm_tok *t, const cJSON *root) {
    TLM_TRY(tok_unicode_init());
    tok_bytelevel_init(&t->bl);
    const char *path = t->path;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return tlm_fail(TLM_EFORMAT, "%s: no 'model' object", path);
    TLM_TRY(parse_bpe(model, path, &t->bpe));
    TLM_TRY(tok_norm_parse(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path, &t->norm, &t->n_norm));
    TLM_TRY(tok_pre_parse(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path, &t->pre, &t->n_pre));
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    t->has_decoder = dec && !cJSON_IsNull(dec);
    TLM_TRY(tok_dec_parse(dec, path, &t->dec, &t->n_dec));
    TLM_TRY(tok_post_parse(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), path, t));
    TLM_TRY(parse_added(cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), path, t));
    TLM_TRY(build_matchers(t, path));
    TLM_TRY(build_id_table(t, path));
    const char *unk = t->bpe.unk_id >= 0 ? t->id_str[t->bpe.unk_id] : NULL;
    if (unk && !(t->special[TLM_TOK_UNK] = tok_strndup(unk, t->id_len[t->bpe.unk_id]))) return NOMEM(path);
    return TLM_OK;
}

static tlm_status load_dir(tlm_tok *t, const char *dir) {
    size_t plen = strlen(dir) + 32;
    if (!(t->path = malloc(plen))) return NOMEM(dir);
    snprintf(t->path, plen, "%s/tokenizer.json", dir);
    cJSON *root;
    int missing;
    TLM_TRY(parse_json(t->path, &root, &missing));
    tlm_status st = load_root(t, root);
    cJSON_Delete(root);
    TLM_TRY(st);
    char *path = malloc(plen);
    if (!path) return NOMEM(dir);
    snprintf(path, plen, "%s/tokenizer_config.json", dir);
    cJSON *cfg = NULL;
    st = parse_json(path, &cfg, &missing);
    if (st != TLM_OK && missing) { st = TLM_OK; tlm_clear_error(); }   /* the config is optional */
    if (st == TLM_OK) st = apply_config(t, cfg, path);
    cJSON_Delete(cfg);
    free(path);
    return st;
}

static tlm_status load_text(tlm_tok *t, const char *json, size_t len, const char *config, size_t config_len,
                            const char *source) {
    if (!(t->path = tok_strndup(source, strlen(source)))) return NOMEM(source);
    cJSON *root, *cfg = NULL;
    TLM_TRY(parse_text(json, len, source, &root));
    tlm_status st = load_root(t, root);
    cJSON_Delete(root);
    if (st == TLM_OK && config) st = parse_text(config, config_len, source, &cfg);
    if (st == TLM_OK) st = apply_config(t, cfg, source);
    cJSON_Delete(cfg);
    return st;
}

static tlm_tok *tok_new(void) {
    tlm_tok *t = calloc(1, sizeof *t);
    if (t && !(t->pool = tok_pool_new())) { free(t); t = NULL; }
    return t;
}

tlm_status tlm_tok_load(const char *dir, tlm_tok **out) {
    *out = NULL;
    tlm_tok *t = tok_new();
    if (!t) return NOMEM(dir);
    tlm_status st = load_dir(t, dir);
    if (st != TLM_OK) { tlm_tok_free(t); return st; }
    *out = t;
    return TLM_OK;
}

tlm_status tlm_tok_load_json(const char *json, size_t len, const char *config, size_t config_len,
                             const char *source, tlm_tok **out) {
    *out = NULL;
    tlm_tok *t = tok_new();
    if (!t) return NOMEM(source);
    tlm_status st = load_text(t, json, len, config, config_len, source);
    if (st != TLM_OK) { tlm_tok_free(t); return st; }
    *out = t;
    return TLM_OK;
}

void tlm_tok_free(tlm_tok *t) {
    if (!t) return;
    tok_pool_free(t->pool);
    free(t->path);
    tok_norm_free(t->norm, t->n_norm);
    tok_pre_free(t->pre, t->n_pre);
    tok_dec_free(t->dec, t->n_dec);
    tok_bpe_free(&t->bpe);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].form);
    }
    free(t->added);
    tok_dict_free(&t->added_ids);
    tok_matcher_free(&t->raw_match);
    tok_matcher_free(&t->norm_match);
    free(t->prefix);
    free(t->suffix);
    free(t->id_str);
    free(t->id_len);
    free(t->id_special);
    for (int k = 0; k < TLM_TOK_NSPECIAL; k++) free(t->special[k]);
    free(t);
}

int64_t tlm_tok_vocab_size(const tlm_tok *t) { return t->vocab_size; }

int32_t tlm_tok_token_to_id(const tlm_tok *t, const char *token, size_t len) {
    int32_t a = tok_dict_get(&t->added_ids, token, len);
    return a >= 0 ? t->added[a].id : tok_dict_get(&t->bpe.vocab, token, len);
}

const char *tlm_tok_id_to_token(const tlm_tok *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || !t->id_str[id]) return NULL;
    *len = t->id_len[id];
    return t->id_str[id];
}

const char *tlm_tok_special_token(const tlm_tok *t, tlm_tok_special which) {
    return which >= 0 && which < TLM_TOK_NSPECIAL ? t->special[which] : NULL;
}
