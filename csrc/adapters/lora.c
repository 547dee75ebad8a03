/* lora.c: LoRA adapters on a model: creating them, choosing the active one,
 * merging it into the base weights and taking it out again.
 *
 * An adapter's A and B matrices are ordinary parameter slots (so gradients,
 * AdamW, clipping and freezing treat them like any other parameter) whose
 * data lives in a block owned by the adapter. */
#include "adapters/lora.h"
#include "core/internal.h"
#include "model/params.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Module name of entry i of a [L * n_proj] array. */
static const char *module_of(const tlm_model *m, int64_t i) {
    return tlm_names_of(m->cfg.names)->proj[m->projs.role[i % m->projs.n]];
}

static void lora_free(tlm_lora *a) {
    free(a->name);
    free(a->ranks);
    free(a->scales);
    free(a->a_idx);
    free(a->b_idx);
    tlm_free(a->block);
}

void tlm_lora_free_all(tlm_model *m) {
    for (int i = 0; i < m->n_adapters; i++) lora_free(&m->adapters[i]);
    free(m->adapters);
    m->adapters = NULL;
    m->n_adapters = 0;
}

static tlm_status validate(const tlm_model *m, const char *name, const int64_t *ranks, const float *scales,
                           float dropout) {
    if (!name || !name[0] || strchr(name, '.'))
        return tlm_fail(TLM_EINVAL, "adapter name \"%s\" must be non-empty and contain no '.'", name ? name : "");
    for (int i = 0; i < m->n_adapters; i++)
        if (strcmp(m->adapters[i].name, name) == 0)
            return tlm_fail(TLM_EINVAL, "an adapter named \"%s\" already exists", name);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return tlm_fail(TLM_EINVAL, "LoRA dropout must be in [0, 1), got %g", (double)dropout);
    int64_t P = m->projs.n, n = m->cfg.n_layers * P, adapted = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ranks[i] < 0)
            return tlm_fail(TLM_EINVAL, "LoRA rank of layer %lld %s is negative", (long long)(i / P), module_of(m, i));
        if (ranks[i] > 0 && !isfinite(scales[i]))
            return tlm_fail(TLM_EINVAL, "LoRA scale of layer %lld %s is not finite", (long long)(i / P),
                            module_of(m, i));
        adapted += ranks[i] > 0;
    }
    if (!adapted) return tlm_fail(TLM_EINVAL, "adapter \"%s\" adapts no projection (every rank is 0)", name);
    return TLM_OK;
}

tlm_status tlm_lora_add(tlm_model *m, const char *name, const int64_t *ranks, const float *scales, float dropout,
                        uint64_t seed, int *id) {
    TLM_TRY(validate(m, name, ranks, scales, dropout));
    const tlm_config *c = &m->cfg;
    int64_t P = m->projs.n, n = c->n_layers * P;
    tlm_lora *grown = realloc(m->adapters, (size_t)(m->n_adapters + 1) * sizeof *grown);
    if (!grown) return tlm_fail(TLM_ENOMEM, "out of memory adding adapter \"%s\"", name);
    m->adapters = grown;
    tlm_lora *a = &m->adapters[m->n_adapters];
    memset(a, 0, sizeof *a);
    a->name = strdup(name);
    a->dropout = dropout;
    a->seed = seed;
    a->ranks = malloc((size_t)n * sizeof *a->ranks);
    a->scales = malloc((size_t)n * sizeof *a->scales);
    a->a_idx = malloc((size_t)n * sizeof *a->a_idx);
    a->b_idx = malloc((size_t)n * sizeof *a->b_idx);
    if (!a->name || !a->ranks || !a->scales || !a->a_idx || !a->b_idx) goto oom;
    memcpy(a->ranks, ranks, (size_t)n * sizeof *ranks);
    memcpy(a->scales, scales, (size_t)n * sizeof *scales);

    /* Slots first (in PEFT's order: A then B, layer by layer), then one block. */
    int64_t first_slot = m->n_params, numel = 0;
    char pname[256];
    for (int64_t i = 0; i < n; i++) {
        a->a_idx[i] = a->b_idx[i] = -1;
        if (!ranks[i]) continue;
        int64_t l = i / P, in = m->projs.in[i % P], out = m->projs.out[i % P];
        snprintf(pname, sizeof pname, "model.layers.%lld.%s.lora_A.%s.weight", (long long)l, module_of(m, i), name);
        if ((a->a_idx[i] = tlm_model_add_param(m, pname, ranks[i], in, 1)) < 0) goto oom_slots;
        snprintf(pname, sizeof pname, "model.layers.%lld.%s.lora_B.%s.weight", (long long)l, module_of(m, i), name);
        if ((a->b_idx[i] = tlm_model_add_param(m, pname, out, ranks[i], 1)) < 0) goto oom_slots;
        numel += ((ranks[i] * in + 15) & ~(int64_t)15) + ((out * ranks[i] + 15) & ~(int64_t)15);
    }
    a->block = tlm_alloc((size_t)numel * sizeof(float));
    if (!a->block) goto oom_slots;
    for (int64_t s = first_slot, at = 0; s < m->n_params; s++) {
        m->params[s].data = a->block + at;
        at += (m->params[s].numel + 15) & ~(int64_t)15;
    }
    *id = m->n_adapters++;
    return TLM_OK;

oom_slots:
    while (m->n_params > first_slot) free(m->params[--m->n_params].name);
oom:
    lora_free(a);
    return tlm_fail(TLM_ENOMEM, "out of memory adding adapter \"%s\"", name);
}

int tlm_lora_count(const tlm_model *m) { return m->n_adapters; }

int tlm_lora_active(const tlm_model *m) { return m->active; }

int tlm_lora_merged(const tlm_model *m) { return m->merged; }

tlm_status tlm_lora_set_active(tlm_model *m, int id) {
    if (id < -1 || id >= m->n_adapters)
        return tlm_fail(TLM_EINVAL, "adapter id %d out of range [-1, %d)", id, m->n_adapters);
    if (m->merged && id != m->active)
        return tlm_fail(TLM_EINVAL, "adapter \"%s\" is merged into the weights: unmerge it before switching",
                        m->adapters[m->active].name);
    m->active = id;
    m->have_loss = 0;
    return TLM_OK;
}

/* W += sign * scale * B A over every adapted projection of the active
 * adapter. A quantized W is dequantized, merged in f32 and requantized (so
 * merging into an NF4/int8 base is lossy, as in PEFT). */
static tlm_status fold(tlm_model *m, float sign) {
    if (m->active < 0) return tlm_fail(TLM_EINVAL, "no active adapter to merge");
    const tlm_lora *a = &m->adapters[m->active];
    int64_t P = m->projs.n;
    float *tmp = NULL;
    for (int64_t i = 0; i < m->cfg.n_layers * P; i++) {
        if (!a->ranks[i]) continue;
        int64_t l = i / P, in = m->projs.in[i % P], out = m->projs.out[i % P];
        int w = m->layer_params[l][TLM_ROLE_PROJ_W(m->projs.role[i % P])];
        float *W = m->params[w].data;
        if (m->params[w].qw) {
            if (!tmp && !(tmp = malloc((size_t)m->projs.max_elems * sizeof(float))))
                return tlm_fail(TLM_ENOMEM, "out of memory merging adapter \"%s\"", a->name);
            tlm_status st = tlm_model_get_weight(m, w, tmp);
            if (st != TLM_OK) { free(tmp); return st; }
            W = tmp;
        }
        tlm_lora_merge_weight(W, tlm_pdata(m, a->a_idx[i]), tlm_pdata(m, a->b_idx[i]), sign * a->scales[i], out, in,
                              a->ranks[i]);
        if (m->params[w].qw) {
            tlm_status st = tlm_model_set_weight(m, w, tmp);
            if (st != TLM_OK) { free(tmp); return st; }
        }
    }
    free(tmp);
    m->have_loss = 0;
    return TLM_OK;
}

tlm_status tlm_lora_merge(tlm_model *m) {
    if (m->merged) return tlm_fail(TLM_EINVAL, "adapter \"%s\" is already merged", m->adapters[m->active].name);
    TLM_TRY(fold(m, 1.0f));
    m->merged = 1;
    return TLM_OK;
}

tlm_status tlm_lora_unmerge(tlm_model *m) {
    if (!m->merged) return tlm_fail(TLM_EINVAL, "no adapter is merged");
    TLM_TRY(fold(m, -1.0f));
    m->merged = 0;
    return TLM_OK;
}

tlm_status tlm_lora_merged_weight(tlm_model *m, int64_t layer, int proj, float *out) {
    if (layer < 0 || layer >= m->cfg.n_layers || proj < 0 || proj >= m->projs.n)
        return tlm_fail(TLM_EINVAL, "no projection %d in layer %lld", proj, (long long)layer);
    int64_t i = layer * m->projs.n + proj, in = m->projs.in[proj], n_out = m->projs.out[proj];
    TLM_TRY(tlm_model_get_weight(m, m->layer_params[layer][TLM_ROLE_PROJ_W(m->projs.role[proj])], out));
    const tlm_lora *a = tlm_active_lora(m);
    if (a && a->ranks[i])
        tlm_lora_merge_weight(out, tlm_pdata(m, a->a_idx[i]), tlm_pdata(m, a->b_idx[i]), a->scales[i], n_out, in,
                              a->ranks[i]);
    return TLM_OK;
}

const tlm_lora *tlm_active_lora(const tlm_model *m) {
    return m->active >= 0 && !m->merged ? &m->adapters[m->active] : NULL;
}

uint64_t tlm_model_rng_counter(const tlm_model *m) { return m->rng_counter; }

void tlm_model_set_rng_counter(tlm_model *m, uint64_t counter) { m->rng_counter = counter; }
