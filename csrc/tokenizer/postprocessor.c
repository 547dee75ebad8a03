/* postprocessor.c: the ids a post_processor puts around an encoded text
 * (TemplateProcessing, ByteLevel, and Sequences of them), and transformers'
 * rewrite of it from tokenizer_config.json's add_bos_token / add_eos_token. */
#include "tokenizer/tok.h"

#include <string.h>

static int append(int32_t **v, size_t *n, const int32_t *ids, size_t k, int front) {
    if (k == 0) return 0;
    int32_t *p = realloc(*v, (*n + k + 1) * sizeof *p);
    if (!p) return -1;
    if (front) {
        memmove(p + k, p, *n * sizeof *p);
        memcpy(p, ids, k * sizeof *p);
    } else {
        memcpy(p + *n, ids, k * sizeof *p);
    }
    *v = p;
    *n += k;
    return 0;
}

/* The ids of special token `name` in the template's special_tokens map. */
static tlm_status special_ids(const cJSON *specials, const char *name, const char *path, int32_t *ids, size_t *n) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(sp, "ids"), *c;
    if (!cJSON_IsArray(list)) return tlm_fail(TLM_EFORMAT, "%s: TemplateProcessing has no ids for special token '%s'", path, name);
    *n = 0;
    cJSON_ArrayForEach(c, list) {
        if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > INT32_MAX || *n == 16)
            return tlm_fail(TLM_EFORMAT, "%s: bad ids for special token '%s'", path, name);
        ids[(*n)++] = (int32_t)c->valuedouble;
    }
    return TLM_OK;
}

/* TemplateProcessing's "single" template: specials before $A, then after. */
static tlm_status template_ids(const cJSON *j, const char *path, int32_t **pre, size_t *n_pre, int32_t **post, size_t *n_post) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single"), *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens"), *it;
    if (!cJSON_IsArray(single)) return tlm_fail(TLM_EFORMAT, "%s: TemplateProcessing needs a 'single' template", path);
    int seen_a = 0;
    cJSON_ArrayForEach(it, single) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(it, "Sequence"), *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const char *id;
        if (seq) {
            TLM_TRY(tok_json_need_str(seq, "id", path, "a template Sequence", &id));
            if (strcmp(id, "A") != 0 || seen_a)
                return tlm_fail(TLM_EFORMAT, "%s: the single template must hold sequence A once (got '%s')", path, id);
            seen_a = 1;
            continue;
        }
        if (!sp) return tlm_fail(TLM_EFORMAT, "%s: template items must be Sequence or SpecialToken", path);
        TLM_TRY(tok_json_need_str(sp, "id", path, "a template SpecialToken", &id));
        int32_t ids[16];
        size_t n = 0;
        TLM_TRY(special_ids(specials, id, path, ids, &n));
        if (append(seen_a ? post : pre, seen_a ? n_post : n_pre, ids, n, 0) < 0) return tlm_fail(TLM_ENOMEM, "%s: out of memory", path);
    }
    if (!seen_a) return tlm_fail(TLM_EFORMAT, "%s: the single template has no sequence A", path);
    return TLM_OK;
}

tlm_status tok_post_parse(const cJSON *j, const char *path, tlm_tok *t) {
    if (!j || cJSON_IsNull(j)) return TLM_OK;
    const char *type;
    TLM_TRY(tok_json_need_str(j, "type", path, "a post_processor", &type));
    if (strcmp(type, "ByteLevel") == 0) return TLM_OK;   /* it only adjusts offsets */
    if (strcmp(type, "Sequence") == 0) {
        /* Each processor wraps the output of the ones before it. */
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "processors"), *c;
        if (!cJSON_IsArray(list)) return tlm_fail(TLM_EFORMAT, "%s: post_processor Sequence needs a 'processors' list", path);
        cJSON_ArrayForEach(c, list) TLM_TRY(tok_post_parse(c, path, t));
        return TLM_OK;
    }
    if (strcmp(type, "TemplateProcessing") == 0) {
        int32_t *pre = NULL, *post = NULL;
        size_t n_pre = 0, n_post = 0;
        tlm_status st = template_ids(j, path, &pre, &n_pre, &post, &n_post);
        if (st == TLM_OK && (append(&t->prefix, &t->n_prefix, pre, n_pre, 1) < 0 || append(&t->suffix, &t->n_suffix, post, n_post, 0) < 0))
            st = tlm_fail(TLM_ENOMEM, "%s: out of memory", path);
        free(pre);
        free(post);
        return st;
    }
    return tlm_fail(TLM_EUNSUPPORTED, "%s: unsupported post_processor '%s'", path, type);
}

/* tokenizer_config.json's add_bos_token / add_eos_token rewrite the
 * post-processor as "[bos] $A [eos]", as transformers' update_post_processor
 * does (transformers 4's Llama-family classes; transformers 5 only when they
 * reach the tokenizer as arguments). A flag the config leaves out keeps what
 * tokenizer.json's post-processor did: bos first, eos last. */
tlm_status tok_post_from_config(const cJSON *cfg, const char *path, tlm_tok *t) {
    const cJSON *flag[2] = {cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"), cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token")};
    if (!flag[0] && !flag[1]) return TLM_OK;
    const char *name[2] = {t->special[TLM_TOK_BOS], t->special[TLM_TOK_EOS]};
    int32_t id[2];
    int add[2];
    for (int k = 0; k < 2; k++) {
        id[k] = name[k] ? tlm_tok_token_to_id(t, name[k], strlen(name[k])) : -1;
        if (flag[k] && !cJSON_IsBool(flag[k]) && !cJSON_IsNull(flag[k]))
            return tlm_fail(TLM_EFORMAT, "%s: '%s' must be true or false", path, k ? "add_eos_token" : "add_bos_token");
        if (flag[k]) add[k] = cJSON_IsTrue(flag[k]);
        else if (k == 0) add[k] = id[0] >= 0 && t->n_prefix > 0 && t->prefix[0] == id[0];
        else add[k] = id[1] >= 0 && t->n_suffix > 0 && t->suffix[t->n_suffix - 1] == id[1];
        /* As in transformers, a flag without its token string adds nothing. */
        if (add[k] && name[k] && id[k] < 0)
            return tlm_fail(TLM_EFORMAT, "%s: %s_token '%s' is not in the vocabulary", path, k ? "eos" : "bos", name[k]);
        add[k] = add[k] && name[k];
    }
    t->n_prefix = t->n_suffix = 0;
    if (add[0] && append(&t->prefix, &t->n_prefix, &id[0], 1, 0) < 0) return tlm_fail(TLM_ENOMEM, "%s: out of memory", path);
    if (add[1] && append(&t->suffix, &t->n_suffix, &id[1], 1, 0) < 0) return tlm_fail(TLM_ENOMEM, "%s: out of memory", path);
    return TLM_OK;
}
