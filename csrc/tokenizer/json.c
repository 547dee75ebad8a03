/* json.c: typed access to tokenizer.json / tokenizer_config.json members,
 * failing with TLM_EFORMAT messages that name the file and the field. */
#include "tokenizer/tok.h"

#include <stdio.h>
#include <string.h>

tlm_status tok_json_str(const cJSON *obj, const char *key, const char *path, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return TLM_OK;
    if (!cJSON_IsString(v)) return tlm_fail(TLM_EFORMAT, "%s: '%s' must be a string", path, key);
    *out = v->valuestring;
    return TLM_OK;
}

tlm_status tok_json_need_str(const cJSON *obj, const char *key, const char *path, const char *what, const char **out) {
    TLM_TRY(tok_json_str(obj, key, path, out));
    if (!*out) return tlm_fail(TLM_EFORMAT, "%s: %s needs a string '%s'", path, what, key);
    return TLM_OK;
}

tlm_status tok_json_bool(const cJSON *obj, const char *key, int dflt, const char *path, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = dflt; return TLM_OK; }
    if (!cJSON_IsBool(v)) return tlm_fail(TLM_EFORMAT, "%s: '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return TLM_OK;
}

tlm_status tok_json_size(const cJSON *obj, const char *key, size_t dflt, const char *path, size_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = dflt; return TLM_OK; }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15 || v->valuedouble != (double)(int64_t)v->valuedouble)
        return tlm_fail(TLM_EFORMAT, "%s: '%s' must be a non-negative integer", path, key);
    *out = (size_t)v->valuedouble;
    return TLM_OK;
}

char *tok_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* {"String": "..."} or {"Regex": "..."}, under obj[key]. */
tlm_status tok_json_pattern(const cJSON *obj, const char *key, const char *path, tok_pattern *out) {
    memset(out, 0, sizeof *out);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsObject(p)) return tlm_fail(TLM_EFORMAT, "%s: '%s' must be {\"String\": ...} or {\"Regex\": ...}", path, key);
    const char *lit, *re;
    TLM_TRY(tok_json_str(p, "String", path, &lit));
    TLM_TRY(tok_json_str(p, "Regex", path, &re));
    if (lit) {
        out->lit_len = strlen(lit);
        out->lit = tok_strndup(lit, out->lit_len);
        return out->lit ? TLM_OK : tlm_fail(TLM_ENOMEM, "%s: out of memory", path);
    }
    if (!re) return tlm_fail(TLM_EFORMAT, "%s: '%s' must be {\"String\": ...} or {\"Regex\": ...}", path, key);
    out->is_regex = 1;
    char where[600];
    snprintf(where, sizeof where, "%s: %s", path, key);
    return tok_regex_compile(&out->re, re, strlen(re), where);
}

/* The one code point of a string such as Metaspace's "replacement". */
tlm_status tok_json_char(const cJSON *obj, const char *key, const char *dflt, const char *path, uint32_t *out) {
    const char *s;
    TLM_TRY(tok_json_str(obj, key, path, &s));
    if (!s) s = dflt;
    size_t n = strlen(s), l;
    if (n == 0 || !tok_utf8_valid(s, n) || (*out = tok_utf8_next(s, 0, &l), l != n))
        return tlm_fail(TLM_EFORMAT, "%s: '%s' must be a single character", path, key);
    return TLM_OK;
}
