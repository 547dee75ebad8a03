/* tlm.h: the one public C API of tinylm's core.
 *
 * Conventions
 * - Every fallible function returns tlm_status; on failure it leaves a
 *   message (naming the file, tensor or argument at fault) that
 *   tlm_last_error() returns. The core never exits, aborts or prints.
 * - Memory is explicit: objects own the blocks they plan (parameters,
 *   gradients, optimizer state, activation arena); callers own every buffer
 *   they pass in. Nothing is allocated inside a training step once the arena
 *   for its (B, T) exists.
 * - Shapes use one set of letters everywhere: B batch, T time, N = B*T
 *   tokens, D model dim, H query heads, K kv heads, E head dim, F ffn dim,
 *   V vocab, R lora rank, L layers.
 * - Tensors are row-major float32 unless a dtype says otherwise; a Linear
 *   weight is [out, in] as in PyTorch and Hugging Face.
 */
#ifndef TLM_H
#define TLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */

typedef enum {
    TLM_OK = 0,
    TLM_EINVAL,       /* bad argument: shape, range, state */
    TLM_EIO,          /* open/read/write/rename failed */
    TLM_EFORMAT,      /* a file's content is malformed */
    TLM_EUNSUPPORTED, /* well-formed, but a feature tinylm does not implement */
    TLM_ENOMEM,
    TLM_ENUMERIC      /* NaN or inf where a finite value is required */
} tlm_status;

/* The message left by the last failing call on this thread ("" if none). */
const char *tlm_last_error(void);

/* Crash tests only: stops the process with SIGSTOP at the named point of a
 * write when TINYLM_TEST_STOP_AT asks for it (see core/testpoint.c). */
void tlm_test_point(const char *name);

/* Threads used by OpenMP loops and OpenBLAS (one shared pool). */
void tlm_set_num_threads(int n);
int tlm_get_num_threads(void);

/* ---------------------------------------------------------------- dtypes */

typedef enum {
    TLM_F32 = 0, TLM_F16, TLM_BF16, TLM_F64,
    TLM_I64, TLM_I32, TLM_I16, TLM_I8, TLM_U8, TLM_BOOL,
    TLM_U16, TLM_U32, TLM_U64, TLM_F8_E4M3, TLM_F8_E5M2,
    TLM_DTYPE_COUNT
} tlm_dtype;

size_t tlm_dtype_size(tlm_dtype dt);
const char *tlm_dtype_name(tlm_dtype dt);               /* safetensors spelling, e.g. "BF16" */
tlm_status tlm_dtype_from_name(const char *name, tlm_dtype *out);

/* Converts n elements of a floating dtype (F32, F16, BF16, F64) to f32. */
tlm_status tlm_to_f32(const void *src, tlm_dtype dt, int64_t n, float *dst);
/* Converts n f32 values to F32, F16 or BF16 (round to nearest even). */
tlm_status tlm_from_f32(const float *src, int64_t n, tlm_dtype dt, void *dst);

/* ----------------------------------------------------------- safetensors */

#define TLM_MAX_DIMS 8

typedef struct {
    const char *name;          /* owned by the file object */
    tlm_dtype dtype;
    int ndim;
    int64_t shape[TLM_MAX_DIMS];
    const void *data;          /* points into the mapped file */
    uint64_t nbytes;
} tlm_st_tensor;

typedef struct tlm_st_file tlm_st_file;

/* Maps `path` read-only and validates the whole header before any data is
 * touched: length, JSON, dtypes, shapes, and that data_offsets are in range,
 * sized numel*itemsize, non-overlapping and cover the buffer exactly. */
tlm_status tlm_st_open(const char *path, tlm_st_file **out);
void tlm_st_close(tlm_st_file *f);
int64_t tlm_st_count(const tlm_st_file *f);
tlm_status tlm_st_get(const tlm_st_file *f, int64_t i, tlm_st_tensor *out);    /* in header order */
tlm_status tlm_st_find(const tlm_st_file *f, const char *name, tlm_st_tensor *out);
int64_t tlm_st_metadata_count(const tlm_st_file *f);
tlm_status tlm_st_metadata_get(const tlm_st_file *f, int64_t i, const char **key, const char **value);

/* Writes tensors (data in their own dtype) to `path` atomically: a
 * temporary file in the same folder, fsync, then rename. */
tlm_status tlm_st_write(const char *path, const tlm_st_tensor *tensors, int64_t n,
                        const char *const *meta_keys, const char *const *meta_values, int64_t n_meta);

/* ------------------------------------------------------------------ GGUF */

/* llama.cpp's file format (versions 2 and 3, little-endian): a header, typed
 * key/value metadata, tensor infos, then aligned tensor data in ggml's block
 * types (the tlm_ggml_* functions below the quantization section). */
typedef enum {
    TLM_GGUF_UINT8 = 0, TLM_GGUF_INT8 = 1, TLM_GGUF_UINT16 = 2, TLM_GGUF_INT16 = 3, TLM_GGUF_UINT32 = 4,
    TLM_GGUF_INT32 = 5, TLM_GGUF_FLOAT32 = 6, TLM_GGUF_BOOL = 7, TLM_GGUF_STRING = 8, TLM_GGUF_ARRAY = 9,
    TLM_GGUF_UINT64 = 10, TLM_GGUF_INT64 = 11, TLM_GGUF_FLOAT64 = 12, TLM_GGUF_TYPE_COUNT
} tlm_gguf_type;

#define TLM_GGUF_MAX_DIMS 4            /* ggml's GGML_MAX_DIMS */
#define TLM_GGUF_DEFAULT_ALIGNMENT 32  /* when general.alignment is absent */

typedef struct {
    const char *ptr;  /* not NUL-terminated; may hold NULs */
    uint64_t len;
} tlm_gguf_str;

typedef struct {
    const char *key;           /* NUL-terminated, owned by the file/writer */
    tlm_gguf_type type;        /* TLM_GGUF_ARRAY for arrays */
    tlm_gguf_type elem_type;   /* an array's element type; the type itself for a scalar */
    uint64_t n;                /* elements: an array's length, 1 for a scalar */
    const void *data;          /* numbers and bools: n little-endian values (unaligned); NULL for strings */
    const tlm_gguf_str *strs;  /* strings: [n]; NULL otherwise */
} tlm_gguf_kv;

typedef struct {
    const char *name;               /* NUL-terminated, owned by the file */
    int ndim;
    int64_t ne[TLM_GGUF_MAX_DIMS];  /* ggml order: ne[0] is the contiguous (row) dimension; unused dims 1 */
    int type;                       /* a ggml type id */
    uint64_t offset;                /* from the start of the data section */
    const void *data;               /* points into the mapped file */
    uint64_t nbytes;
} tlm_gguf_tensor;

/* Bytes of one value of a fixed-size type; 0 for strings, arrays and unknown types. */
uint64_t tlm_gguf_value_size(tlm_gguf_type t);
const char *tlm_gguf_type_name(tlm_gguf_type t);  /* gguf's spelling: "uint32", "string", ... */

typedef struct tlm_gguf_file tlm_gguf_file;

/* Maps `path` read-only and validates everything before any tensor byte is
 * handed out: magic, version, counts against the file size, every key and
 * value (types, lengths, UTF-8), unique keys and names, general.alignment,
 * dimensions, ggml types, row lengths a multiple of the block, offsets
 * aligned, inside the file and not overlapping. */
tlm_status tlm_gguf_open(const char *path, tlm_gguf_file **out);
void tlm_gguf_close(tlm_gguf_file *f);
uint32_t tlm_gguf_version(const tlm_gguf_file *f);
uint64_t tlm_gguf_alignment(const tlm_gguf_file *f);
uint64_t tlm_gguf_data_offset(const tlm_gguf_file *f);  /* the data section's file offset */
int64_t tlm_gguf_kv_count(const tlm_gguf_file *f);
tlm_status tlm_gguf_kv_get(const tlm_gguf_file *f, int64_t i, tlm_gguf_kv *out);  /* in file order */
/* The index of `key`, or -1. */
int64_t tlm_gguf_kv_find(const tlm_gguf_file *f, const char *key);
int64_t tlm_gguf_tensor_count(const tlm_gguf_file *f);
tlm_status tlm_gguf_tensor_get(const tlm_gguf_file *f, int64_t i, tlm_gguf_tensor *out);  /* in file order */
tlm_status tlm_gguf_tensor_find(const tlm_gguf_file *f, const char *name, tlm_gguf_tensor *out);

/* A GGUF v3 file written atomically (temporary name, rename on commit):
 * add every key/value and every tensor info first, then write each tensor's
 * data in the order the infos were added. */
typedef struct tlm_gguf_writer tlm_gguf_writer;
tlm_status tlm_gguf_writer_create(const char *path, uint64_t alignment, tlm_gguf_writer **out);
/* Copies kv (keys unique; general.alignment is the writer's own). */
tlm_status tlm_gguf_writer_add_kv(tlm_gguf_writer *w, const tlm_gguf_kv *kv);
/* Shape in ggml order (ne[0] the row length, a multiple of the type's block). */
tlm_status tlm_gguf_writer_add_tensor(tlm_gguf_writer *w, const char *name, int ndim, const int64_t *ne, int type);
/* The data of the next tensor: exactly its nbytes. The first call writes the header. */
tlm_status tlm_gguf_writer_write_tensor(tlm_gguf_writer *w, const void *data, uint64_t nbytes);
/* After every tensor's data: fsync and rename into place. Frees w either way. */
tlm_status tlm_gguf_writer_commit(tlm_gguf_writer *w);
/* Drops the temporary file and frees w. */
void tlm_gguf_writer_abandon(tlm_gguf_writer *w);

/* ----------------------------------------------------------------- model */

/* A model is one decoder whose block is described by tlm_config: every
 * family (Llama, Qwen2/3, Gemma 1/2/3, Phi-2, Phi-3, StableLM, SmolLM3) is
 * a setting of these fields plus a naming scheme for its parameters. The
 * Python layer fills them from config.json (tinylm/families/). */

/* How parameters are named (Hugging Face's names; csrc/model/families/). */
typedef enum {
    TLM_NAMES_LLAMA = 0,    /* Llama, Qwen2, Qwen3, SmolLM3, Gemma */
    TLM_NAMES_GEMMA2 = 1,   /* Gemma 2/3: input, post_attention, pre/post_feedforward layernorms */
    TLM_NAMES_PHI = 2,      /* Phi-2: self_attn.dense, mlp.fc1/fc2, model.final_layernorm */
    TLM_NAMES_PHI3 = 3,     /* Phi-3: self_attn.qkv_proj, mlp.gate_up_proj (fused) */
    TLM_NAMES_STABLELM = 4, /* StableLM: Llama's, q/k LayerNorms per head */
    TLM_NAMES_COUNT
} tlm_names;

/* Storage of the frozen projection weights; embeddings, norms and the LM
 * head stay f32. */
typedef enum {
    TLM_WEIGHTS_F32 = 0,
    TLM_WEIGHTS_NF4 = 1,
    TLM_WEIGHTS_INT8 = 2,
    TLM_WEIGHTS_GGUF = 3, /* ggml blocks, each projection its own type (tlm_model_set_weight_blocks) */
} tlm_weight_storage;
typedef enum { TLM_ROPE_DEFAULT = 0, TLM_ROPE_LINEAR = 1, TLM_ROPE_LLAMA3 = 2, TLM_ROPE_LONGROPE = 3 } tlm_rope_type;

#define TLM_MAX_LAYERS 4096
#define TLM_MAX_ROPE_PAIRS 256   /* longrope factors per rotary pair */

/* Rotary frequencies of one kind of layer, as transformers' rope_parameters. */
typedef struct {
    tlm_rope_type type;
    float theta;
    float factor;                          /* linear, llama3 */
    float low_freq_factor, high_freq_factor; /* llama3 */
    int64_t original_max_position;         /* llama3; longrope: longer sequences use long_factor */
    float attention_factor;                /* longrope: multiplies cos and sin; 1 otherwise */
    float short_factor[TLM_MAX_ROPE_PAIRS], long_factor[TLM_MAX_ROPE_PAIRS]; /* longrope [R/2] */
} tlm_rope;

/* Per-layer switches (tlm_config.layer_flags). */
enum {
    TLM_LAYER_SLIDING = 1,   /* sliding-window attention (window, rope[1]) */
    TLM_LAYER_NO_ROPE = 2,   /* no rotary embedding (SmolLM3's no_rope_layers) */
};

typedef enum { TLM_QK_NORM_NONE = 0, TLM_QK_NORM_SHARED = 1, TLM_QK_NORM_PER_HEAD = 2 } tlm_qk_norm;

typedef struct {
    tlm_names names;
    /* dimensions */
    int64_t vocab_size;          /* V */
    int64_t hidden_size;         /* D */
    int64_t intermediate_size;   /* F */
    int64_t n_layers;            /* L */
    int64_t n_heads;             /* H */
    int64_t n_kv_heads;          /* K; H % K == 0 */
    int64_t head_dim;            /* E */
    int64_t rotary_dim;          /* R: leading elements of a head RoPE rotates (even, <= E) */
    /* norms: every norm of the model is this kind */
    int norm_kind;               /* tlm_norm_kind: 0 RMS, 1 LayerNorm */
    float norm_eps;
    float norm_offset;           /* RMS scales by (w + offset): 1 for Gemma */
    int norm_bias;               /* LayerNorms carry a bias */
    int sandwich_norms;          /* Gemma 2/3: a norm on the attention and the MLP outputs too */
    int parallel_residual;       /* x + attn(n(x)) + mlp(n(x)) from one norm (Phi-2, StableLM) */
    float resid_dropout;         /* training mode: dropout on each sublayer's output before the residual
                                    add (Phi's resid_pdrop); 0 none */
    int qk_norm;                 /* tlm_qk_norm: q and k normed per head before RoPE */
    int qk_norm_bias;
    /* MLP */
    int act;                     /* tlm_act */
    int gated;                   /* act(gate) * up; else act(fc1) */
    /* attention */
    float attn_scale;            /* scores = attn_scale * q.k */
    float attn_softcap;          /* 0: none */
    int64_t sliding_window;      /* window of TLM_LAYER_SLIDING layers */
    tlm_rope rope[2];            /* [0] full-attention layers, [1] sliding-window layers */
    uint8_t layer_flags[TLM_MAX_LAYERS]; /* [L] TLM_LAYER_* */
    /* head and embedding */
    float embed_scale;           /* the embedding output times this (Gemma: sqrt(D)); 1 otherwise */
    int64_t padding_idx;         /* pad_token_id: its row gets no gradient through the lookup
                                    (nn.Embedding's padding_idx, as transformers builds it); -1 none */
    float final_softcap;         /* logits = cap * tanh(logits / cap); 0: none */
    int tie_word_embeddings;
    int lm_head_bias;
    /* projections */
    int qkv_bias;                /* q/k/v (or qkv) carry a bias */
    int o_bias;
    int mlp_bias;
    int fused_qkv;               /* one qkv projection, q then k then v */
    int fused_gate_up;           /* one gate_up projection, gate then up */
    tlm_weight_storage weights;  /* how projection weights are stored */
} tlm_config;

/* A fake quantizer for QAT (functions: "fake quantization" below). */
typedef enum {
    TLM_FQ_NONE = 0,
    TLM_FQ_GGML = 1,       /* a ggml block type: the values save_gguf writes and llama.cpp reads, bit for bit */
    TLM_FQ_INT4_ASYM = 2,  /* torchao QATConfig(Int4WeightOnlyConfig(group_size)): per-group min/max uint4,
                              its gradient through the group's min and max included */
    TLM_FQ_INTX_SYM = 3,   /* torchao IntxFakeQuantizeConfig(int<bits>, group_size), symmetric, scale detached */
} tlm_fq_kind;

typedef struct {
    tlm_fq_kind kind;
    int ggml_type;         /* TLM_FQ_GGML: a type tlm_ggml_quantize implements */
    int64_t group_size;    /* INT4_ASYM, INTX_SYM: values per scale along a row (divides the row) */
    int bits;              /* INTX_SYM: 2..8 */
    int act_int8;          /* also the projection's input, int8 asymmetric per token, dynamic (torchao's
                              Int8DynamicActivationIntxWeightConfig: "8da4w" with bits 4) */
} tlm_fake_quant;

typedef struct tlm_model tlm_model;

typedef struct {
    const char *name;      /* Hugging Face parameter name */
    int ndim;              /* 1 or 2 */
    int64_t shape[2];
    int64_t numel;
    float *data;           /* [shape] in the model's parameter block; NULL when quantized */
    int quantized;         /* stored NF4/int8/ggml blocks: frozen, read with tlm_model_get_weight */
    int ggml_type;         /* TLM_WEIGHTS_GGUF: the blocks' ggml type, -1 before they are set; else -1 */
    float *grad;           /* same shape; NULL while frozen or before the first backward */
    float *adam_m, *adam_v;/* AdamW moments; NULL until the optimizer is set up */
    int trainable;
    int decay;             /* AdamW applies weight decay to it */
} tlm_param;

/* Checks cfg without allocating: every field in range (messages name the
 * Hugging Face field), and the sizes derived from it within bounds, so no
 * size computed from a config can overflow. param_bytes, unless NULL, gets
 * the bytes of the model's f32 parameters (an upper bound when quantized). */
tlm_status tlm_config_check(const tlm_config *cfg, uint64_t *param_bytes);
/* tlm_config_check, then allocates the parameter block (zeroed). */
tlm_status tlm_model_create(const tlm_config *cfg, tlm_model **out);
void tlm_model_free(tlm_model *m);
const tlm_config *tlm_model_config(const tlm_model *m);
int64_t tlm_model_n_params(const tlm_model *m);
tlm_status tlm_model_param(tlm_model *m, int64_t i, tlm_param *out);
tlm_status tlm_model_set_trainable(tlm_model *m, int64_t i, int trainable);
/* Copies src [numel] into parameter i, quantizing it if it is stored quantized. */
tlm_status tlm_model_set_weight(tlm_model *m, int64_t i, const float *src);
/* Copies parameter i into dst [numel], dequantizing it if needed. */
tlm_status tlm_model_get_weight(tlm_model *m, int64_t i, float *dst);
/* A TLM_WEIGHTS_GGUF projection weight: takes a copy of its rows as ggml
 * blocks of `type` (nbytes = rows * row bytes, rows in the parameter's order).
 * set_weight on it afterwards quantizes to the same type. */
tlm_status tlm_model_set_weight_blocks(tlm_model *m, int64_t i, int type, const void *blocks, uint64_t nbytes);
/* The blocks of such a weight (into the model; valid until it changes). */
tlm_status tlm_model_weight_blocks(tlm_model *m, int64_t i, const void **blocks, uint64_t *nbytes);
/* Trains projection weight i through a fake quantizer (see "fake
 * quantization" below; NULL or TLM_FQ_NONE removes it): forward, generation
 * and backward read FQ(W), or FQ(W + s B A) for a projection the active
 * adapter adapts. The weight must be held in f32. The token embedding and
 * the LM head take a ggml type (TLM_FQ_GGML): compute reads a fake-quantized
 * copy, rebuilt after set_weight and optimizer steps (a write through a
 * tlm_param's data pointer is not seen: set the quantizer again). */
tlm_status tlm_model_set_fake_quant(tlm_model *m, int64_t i, const tlm_fake_quant *fq);
/* Skips every fake quantizer (on = 0, QAT's warm-up steps) or applies them again (1, the default). */
void tlm_model_enable_fake_quant(tlm_model *m, int on);
/* Bytes held by parameter i as stored. */
size_t tlm_model_param_bytes(const tlm_model *m, int64_t i);
tlm_status tlm_model_set_decay(tlm_model *m, int64_t i, int decay);

/* input_ids [B,T]; attention_mask [B,T] of 0/1 or NULL (all ones);
 * position_ids [B,T] or NULL (0..T-1); logits [B,T,V] written. */
tlm_status tlm_model_forward(tlm_model *m, const int32_t *input_ids, const int32_t *attention_mask,
                             const int32_t *position_ids, int64_t B, int64_t T, float *logits);

/* Mean cross-entropy of logits[:, t] against labels[:, t+1] over labels != -100
 * (Hugging Face's shift). Keeps what backward needs; the [B,T,V] logits are
 * never held (the LM head runs over vocabulary chunks). n_tokens gets the
 * number of labels counted. */
tlm_status tlm_model_loss(tlm_model *m, const int32_t *input_ids, const int32_t *labels,
                          const int32_t *attention_mask, const int32_t *position_ids,
                          int64_t B, int64_t T, float *loss, int64_t *n_tokens);

/* Distillation: loss() against a teacher, on the rows with a label.
 * loss = (1 - kd_ratio) * CE + kd_ratio * KD, each the mean over those rows;
 * KD is the divergence (forward KL(teacher || student), reverse KL, or the
 * generalized JSD with beta: TRL's convention, 0 forward, 1 reverse) between
 * softmax(teacher / T) and softmax(student / T), over the whole vocabulary
 * or the teacher's top_k ids (then with a tail bucket 1 - their sum, or
 * renormalised over them), times T^2 when scale_by_t2. */
typedef enum { TLM_KD_FORWARD_KL = 0, TLM_KD_REVERSE_KL = 1, TLM_KD_JSD = 2 } tlm_kd_loss;
typedef struct {
    tlm_kd_loss loss;
    float beta;
    float temperature;
    int64_t top_k;         /* 0: the whole vocabulary */
    int tail;
    float kd_ratio;
    int scale_by_t2;
} tlm_distill_config;

/* The teacher is a model (online: forward only, on the same inputs; it may
 * be stored quantized and carry its own active adapter; its vocabulary may
 * be padded past the student's, the extra rows ignored), or its top-k per
 * position (offline: ids and log-probs [B, T, k] aligned with the logits,
 * log-probs taken at topk_temperature). Exactly one of teacher and topk_ids
 * is given. ce and kd (may be NULL) get the two terms' means. Backward as
 * after tlm_model_loss. */
tlm_status tlm_model_loss_distill(tlm_model *m, const tlm_distill_config *dc, tlm_model *teacher,
                                  const int32_t *topk_ids, const float *topk_logp, int64_t k,
                                  float topk_temperature, const int32_t *input_ids, const int32_t *labels,
                                  const int32_t *attention_mask, const int32_t *position_ids, int64_t B, int64_t T,
                                  float *loss, int64_t *n_tokens, float *ce, float *kd);

/* Training mode (the default) applies LoRA dropout in loss() and advances
 * the RNG counter; evaluation mode computes the same loss without dropout. */
void tlm_model_set_training(tlm_model *m, int on);
int tlm_model_training(const tlm_model *m);

/* Gradient checkpointing: training keeps only each layer's input and
 * recomputes the layer in backward (less memory, about a third more compute). */
void tlm_model_set_checkpointing(tlm_model *m, int on);
int tlm_model_checkpointing(const tlm_model *m);

/* Adds scale * d(last loss)/d(param) to the grads of trainable params. */
tlm_status tlm_model_backward(tlm_model *m, float scale);
void tlm_model_zero_grad(tlm_model *m);

/* --------------------------------------------------------------- optimizer */

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} tlm_adamw_hparams;

/* Plans the gradient block and allocates the (zeroed) AdamW moments for the
 * current trainable set, so a checkpoint's moments can be restored before
 * the first step. */
tlm_status tlm_adamw_prepare(tlm_model *m);
/* One AdamW step (decoupled decay, bias correction) over trainable params;
 * allocates the moment block on first use. step counts from 1. */
tlm_status tlm_adamw_step(tlm_model *m, const tlm_adamw_hparams *hp, int64_t step);
/* Global L2 norm of all trainable grads; if max_norm > 0, scales the grads
 * by min(1, max_norm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_. */
tlm_status tlm_clip_grad_norm(tlm_model *m, float max_norm, float *norm);

/* ------------------------------------------- fake quantization (QAT) */
/* A weight trained for the quantizer it will ship with: the forward uses
 * the values that quantizer produces, the backward passes the gradient
 * straight through (zero where its range clamp cut a value's code, as
 * torchao). Per projection weight, set with tlm_model_set_fake_quant. */

/* Whether fq is a scheme tinylm implements for rows of `cols` values. */
tlm_status tlm_fake_quant_check(const tlm_fake_quant *fq, int64_t cols);
/* w_hat [rows, cols] = FQ(w) (w_hat may be w); clip [rows * cols] (or NULL)
 * 1 where the gradient stops. The activation part (act_int8) is separate. */
tlm_status tlm_fake_quantize(const tlm_fake_quant *fq, const float *w, int64_t rows, int64_t cols, float *w_hat,
                             uint8_t *clip);
/* gw = d sum(gy * FQ(w)) / dw, with clip from tlm_fake_quantize of the same
 * w (gw may be gy). */
tlm_status tlm_fake_quantize_backward(const tlm_fake_quant *fq, const float *w, const uint8_t *clip,
                                      const float *gy, int64_t rows, int64_t cols, float *gw);
/* torchao's int8 per-token activations: x_hat [N, in] (may be x), clip as above;
 * backward: gx = beta * gx + the straight-through gradient of gy (gx may be gy when beta is 0). */
void tlm_fq_act_forward(const float *x, int64_t N, int64_t in, float *x_hat, uint8_t *clip);
void tlm_fq_act_backward(const float *x, const uint8_t *clip, const float *gy, int64_t N, int64_t in, float *gx,
                         float beta);

/* --------------------------------------------------------- quantization */
/* bitsandbytes-compatible kernels, exposed so tests can compare them with
 * bitsandbytes itself. NF4: blocks of 64, packed [(n+1)/2] with the even
 * element in the high nibble, absmax [ceil(n/64)]. */
void tlm_nf4_quantize(const float *x, int64_t n, uint8_t *packed, float *absmax);
void tlm_nf4_dequantize(const uint8_t *packed, const float *absmax, int64_t i0, int64_t i1, float *out);
/* Double quantization of NF4's absmax: offset (their mean), then 8-bit
 * blockwise (256) codes and scales with bitsandbytes' signed dynamic map. */
float tlm_nf4_absmax_offset(const float *absmax, int64_t nblocks);
void tlm_nf4_double_quantize(const float *absmax, int64_t nblocks, float offset, uint8_t *q, float *scales,
                             float *scratch);
const float *tlm_dynamic_map(void); /* the 256 codes, ascending */
/* int8 per row: q = round(x * 127 / absmax_row). */
void tlm_int8_rows_quantize(const float *x, int64_t rows, int64_t cols, int8_t *q, float *absmax);

/* ------------------------------------------------------ ggml block types */
/* The tensor encodings of GGUF files, as ggml defines them (ggml.h's
 * ggml_type ids, ggml-common.h's block layouts). A row of n values of a
 * block type is n / block_elems blocks of block_bytes bytes each; the codecs
 * are bit-exact with llama.cpp's ggml-quants.c (quantize: its reference
 * quantizers, quantize_row_*_ref, the ones llama-quantize uses without an
 * importance matrix). */
typedef enum {
    TLM_GGML_F32 = 0, TLM_GGML_F16 = 1, TLM_GGML_Q4_0 = 2, TLM_GGML_Q4_1 = 3,
    TLM_GGML_Q5_0 = 6, TLM_GGML_Q5_1 = 7, TLM_GGML_Q8_0 = 8, TLM_GGML_Q8_1 = 9,
    TLM_GGML_Q2_K = 10, TLM_GGML_Q3_K = 11, TLM_GGML_Q4_K = 12, TLM_GGML_Q5_K = 13,
    TLM_GGML_Q6_K = 14, TLM_GGML_Q8_K = 15,
    TLM_GGML_IQ2_XXS = 16, TLM_GGML_IQ2_XS = 17, TLM_GGML_IQ3_XXS = 18, TLM_GGML_IQ1_S = 19,
    TLM_GGML_IQ4_NL = 20, TLM_GGML_IQ3_S = 21, TLM_GGML_IQ2_S = 22, TLM_GGML_IQ4_XS = 23,
    TLM_GGML_I8 = 24, TLM_GGML_I16 = 25, TLM_GGML_I32 = 26, TLM_GGML_I64 = 27, TLM_GGML_F64 = 28,
    TLM_GGML_IQ1_M = 29, TLM_GGML_BF16 = 30,
    TLM_GGML_TQ1_0 = 34, TLM_GGML_TQ2_0 = 35, TLM_GGML_MXFP4 = 39, TLM_GGML_NVFP4 = 40,
    TLM_GGML_Q1_0 = 41, TLM_GGML_Q2_0 = 42,
    TLM_GGML_TYPE_COUNT = 43  /* ids 4, 5, 31-33, 36-38 are ones ggml removed: unknown here */
} tlm_ggml_type;

/* ggml's name of a type ("q4_K", "bf16"); NULL for an unknown id. */
const char *tlm_ggml_type_name(int type);
/* Values per block and bytes per block; 0 for an unknown id. */
int64_t tlm_ggml_block_elems(int type);
int64_t tlm_ggml_block_bytes(int type);
/* Whether tlm_ggml_dequantize / tlm_ggml_quantize implement a type. */
int tlm_ggml_can_dequantize(int type);
int tlm_ggml_can_quantize(int type);
/* *bytes = the bytes of n values; TLM_EINVAL for an unknown id or an n that
 * is negative or not a multiple of the block. */
tlm_status tlm_ggml_row_bytes(int type, int64_t n, int64_t *bytes);
/* Decodes n values (a multiple of the block) from src into dst; one thread
 * (callers split the work). F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K..Q6_K, Q8_K; another known type is TLM_EUNSUPPORTED naming it. */
tlm_status tlm_ggml_dequantize(int type, const void *src, int64_t n, float *dst);
/* Encodes rows x n_per_row values (n_per_row a multiple of the block) into
 * dst [rows * row bytes]: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K..Q6_K, Q8_K. Without an importance matrix every block is encoded on
 * its own, so rows only set the size. F16 and BF16 round to nearest even,
 * NaN to a quiet NaN as ggml does. */
tlm_status tlm_ggml_quantize(int type, const float *src, int64_t rows, int64_t n_per_row, void *dst);
/* Fake quantization to a ggml type: dst = dequantize(quantize(src)), the
 * values a file of that type holds, bit for bit (dst may be src); clip (NULL
 * or [rows * n_per_row]) gets 1 where the type's range clamp cut a value's
 * code (QAT's straight-through gradient is zero there), else 0. */
tlm_status tlm_ggml_fake_quantize(int type, const float *src, int64_t rows, int64_t n_per_row, float *dst,
                                  uint8_t *clip);

/* ------------------------------------------------------------------ LoRA */

/* The projections of a decoder layer, as the model reports them: the same
 * list for every layer, in Hugging Face's module order; per-projection arrays
 * are [L * tlm_model_n_proj(m)], layer-major. */
typedef enum {
    TLM_PROJ_Q, TLM_PROJ_K, TLM_PROJ_V, TLM_PROJ_QKV, TLM_PROJ_O,
    TLM_PROJ_GATE, TLM_PROJ_UP, TLM_PROJ_GATE_UP, TLM_PROJ_DOWN, TLM_PROJ_ROLES
} tlm_proj_role;

typedef struct {
    const char *module;   /* Hugging Face module name within a layer, e.g. "self_attn.q_proj" */
    tlm_proj_role role;
    int64_t in, out;      /* features: the weight is [out, in] */
} tlm_proj_info;

int tlm_model_n_proj(const tlm_model *m);
tlm_status tlm_model_proj(const tlm_model *m, int p, tlm_proj_info *out);

/* Adds a LoRA adapter. ranks and scales are [L * tlm_model_n_proj(m)]; rank 0
 * leaves that projection alone. Creates the parameters
 * "<module>.lora_A.<name>.weight" [R, In] and "<module>.lora_B.<name>.weight"
 * [Out, R] (zeroed, trainable) in a block of the adapter's own, so existing
 * parameters never move. Dropout p applies to the LoRA path's input only,
 * during loss(); its masks derive from (seed, the model's RNG counter). */
tlm_status tlm_lora_add(tlm_model *m, const char *name, const int64_t *ranks, const float *scales, float dropout,
                        uint64_t seed, int *id);
int tlm_lora_count(const tlm_model *m);
/* Selects the adapter used by forward/loss/backward; -1 for none. */
tlm_status tlm_lora_set_active(tlm_model *m, int id);
int tlm_lora_active(const tlm_model *m);
/* W += scale * B A for the active adapter (the LoRA path then stays off until
 * unmerge, which subtracts it again). */
tlm_status tlm_lora_merge(tlm_model *m);
tlm_status tlm_lora_unmerge(tlm_model *m);
int tlm_lora_merged(const tlm_model *m);
/* out [Out, In] = W + scale * B A of projection proj (an index into the
 * model's projection list, tlm_model_proj) of a layer under the active
 * adapter (W alone where it does not adapt that projection); the model's
 * weights are left as they are. */
tlm_status tlm_lora_merged_weight(tlm_model *m, int64_t layer, int proj, float *out);

/* The counter each training loss() advances to key dropout masks; saving and
 * restoring it makes a resumed run draw the same masks. */
uint64_t tlm_model_rng_counter(const tlm_model *m);
void tlm_model_set_rng_counter(tlm_model *m, uint64_t counter);

/* --- token cache (HDF5) --- */
/* Tokenized datasets on disk, so a second run skips tokenization and data
 * larger than memory streams. One file holds n examples: int32 input_ids and
 * uint8 loss_mask [N] back to back, int64 offsets [n+1] (example i is tokens
 * [offsets[i], offsets[i+1])), int64 lines [n] (1-based source line), and
 * string attributes (the caller's key and options). */

typedef struct tlm_cache tlm_cache;

/* Starts a cache that becomes `path` on commit: it is filled under a
 * temporary sibling name. */
tlm_status tlm_cache_create(const char *path, tlm_cache **out);
/* Sets (or replaces) a root string attribute of a cache being written;
 * "tinylm_cache_version" is reserved. */
tlm_status tlm_cache_set_attr(tlm_cache *c, const char *key, const char *value);
/* Appends n examples: ids and mask hold sum(lengths) tokens back to back;
 * lengths [n]; lines [n]. */
tlm_status tlm_cache_append(tlm_cache *c, const int32_t *ids, const uint8_t *mask, const int64_t *lengths,
                            const int64_t *lines, int64_t n);
/* Flushes, fsyncs and renames the temporary file onto path. */
tlm_status tlm_cache_commit(tlm_cache *c);

/* Opens a finished cache and validates it: datasets present with the right
 * types and ranks, lengths that agree, offsets from 0 to N non-decreasing,
 * the format version. Any mismatch is TLM_EFORMAT (rebuild the cache). */
tlm_status tlm_cache_open(const char *path, tlm_cache **out);
int64_t tlm_cache_count(const tlm_cache *c);               /* n */
int64_t tlm_cache_n_tokens(const tlm_cache *c);            /* N */
const int64_t *tlm_cache_offsets(const tlm_cache *c);      /* [n+1], owned by c */
const int64_t *tlm_cache_lines(const tlm_cache *c);        /* [n], owned by c */
int64_t tlm_cache_attr_count(const tlm_cache *c);
tlm_status tlm_cache_attr_get(const tlm_cache *c, int64_t i, const char **key, const char **value);
/* Reads examples [first, first+n): ids and mask get offsets[first+n] -
 * offsets[first] tokens each. */
tlm_status tlm_cache_read(const tlm_cache *c, int64_t first, int64_t n, int32_t *ids, uint8_t *mask);
/* Closes a reader, or discards an uncommitted writer's temporary file. */
void tlm_cache_close(tlm_cache *c);

/* --- teacher top-k cache (HDF5) --- */
/* A teacher's next-token distribution for offline distillation, kept as
 * its k most likely ids per position: int32 ids and float32 logprobs [P, k],
 * float32 tail [P] (log of the mass outside the k), int64 row_offsets [R+1]
 * (row r of a dataset owns positions [row_offsets[r], row_offsets[r+1])),
 * and string attributes (k, vocab_size and the caller's manifest). */

typedef struct tlm_topk_cache tlm_topk_cache;

/* Starts a cache of k ids per position over a vocabulary of vocab_size;
 * it becomes `path` on commit. */
tlm_status tlm_topk_create(const char *path, int64_t k, int64_t vocab_size, tlm_topk_cache **out);
/* Sets a root string attribute; tinylm_topk_version, k, vocab_size are reserved. */
tlm_status tlm_topk_set_attr(tlm_topk_cache *c, const char *key, const char *value);
/* Appends n_rows rows, row r with counts[r] positions: ids and logprobs
 * [sum(counts), k], tail [sum(counts)]. */
tlm_status tlm_topk_append(tlm_topk_cache *c, const int64_t *counts, int64_t n_rows, const int32_t *ids,
                           const float *logprobs, const float *tail);
/* Flushes, seals, fsyncs and renames the temporary file onto path. */
tlm_status tlm_topk_commit(tlm_topk_cache *c);

/* Opens a finished cache and validates its layout (TLM_EFORMAT otherwise). */
tlm_status tlm_topk_open(const char *path, tlm_topk_cache **out);
int64_t tlm_topk_rows(const tlm_topk_cache *c);            /* R */
int64_t tlm_topk_k(const tlm_topk_cache *c);
int64_t tlm_topk_vocab_size(const tlm_topk_cache *c);
int64_t tlm_topk_positions(const tlm_topk_cache *c);       /* P */
const int64_t *tlm_topk_row_offsets(const tlm_topk_cache *c);   /* [R+1], owned by c */
int64_t tlm_topk_attr_count(const tlm_topk_cache *c);
tlm_status tlm_topk_attr_get(const tlm_topk_cache *c, int64_t i, const char **key, const char **value);
/* Reads row `row`'s n = row_offsets[row+1] - row_offsets[row] positions:
 * ids and logprobs [n, k], tail [n]; TLM_EFORMAT if an id is outside the
 * vocabulary or a log-probability is NaN or positive. */
tlm_status tlm_topk_read(const tlm_topk_cache *c, int64_t row, int32_t *ids, float *logprobs, float *tail);
/* Closes a reader, or discards an uncommitted writer's temporary file. */
void tlm_topk_close(tlm_topk_cache *c);

/* --- tokenizer --- */

/* A BPE tokenizer read from Hugging Face's tokenizer.json (byte-level BPE as
 * GPT-2, SmolLM, Qwen, Llama-3; SentencePiece-style BPE as Llama-2,
 * TinyLlama, Mistral), encoding exactly as the `tokenizers` library does.
 * A loaded tokenizer is read-only: any number of threads may encode and
 * decode with it at once. */
typedef struct tlm_tok tlm_tok;

/* Growable id list; the caller owns it (zero-initialise, then tlm_tok_ids_free). */
typedef struct { int32_t *ids; int64_t n, cap; } tlm_tok_ids;
void tlm_tok_ids_free(tlm_tok_ids *v);

/* Reads dir/tokenizer.json and, when present, dir/tokenizer_config.json
 * (special token strings; add_bos_token / add_eos_token rewrite the
 * post-processor as transformers does). A model, normalizer, pre-tokenizer,
 * decoder or post-processor tinylm does not implement is TLM_EUNSUPPORTED
 * naming it and the file; malformed JSON is TLM_EFORMAT; a missing
 * tokenizer.json is TLM_EIO. */
tlm_status tlm_tok_load(const char *dir, tlm_tok **out);
/* The same from JSON text in memory: tokenizer.json's json[0..len) and,
 * unless config is NULL, tokenizer_config.json's config[0..config_len).
 * Messages name `source` (e.g. the GGUF file the JSON was made from). */
tlm_status tlm_tok_load_json(const char *json, size_t len, const char *config, size_t config_len,
                             const char *source, tlm_tok **out);
void tlm_tok_free(tlm_tok *t);

/* Replaces out's ids with the encoding of text[0..len) (valid UTF-8). With
 * add_special_tokens the post-processor's ids (BOS/EOS) are added. */
tlm_status tlm_tok_encode(const tlm_tok *t, const char *text, size_t len, int add_special_tokens, tlm_tok_ids *out);
/* Encodes n texts over the OpenMP threads; outs[i] as tlm_tok_encode. */
tlm_status tlm_tok_encode_batch(const tlm_tok *t, const char *const *texts, const size_t *lens, int64_t n,
                                int add_special_tokens, tlm_tok_ids *outs);
/* Decodes ids into a malloc'd UTF-8 string (*out, NUL-terminated, *out_len
 * bytes; free with free()). Ids outside the vocabulary are skipped. */
tlm_status tlm_tok_decode(const tlm_tok *t, const int32_t *ids, int64_t n, int skip_special_tokens,
                          char **out, size_t *out_len);

/* Number of distinct ids, added tokens included (len() of a transformers tokenizer). */
int64_t tlm_tok_vocab_size(const tlm_tok *t);
int32_t tlm_tok_token_to_id(const tlm_tok *t, const char *token, size_t len);   /* -1 when absent */
const char *tlm_tok_id_to_token(const tlm_tok *t, int32_t id, size_t *len);     /* NULL when absent */

typedef enum {
    TLM_TOK_BOS = 0, TLM_TOK_EOS, TLM_TOK_UNK, TLM_TOK_SEP, TLM_TOK_PAD, TLM_TOK_CLS, TLM_TOK_MASK,
    TLM_TOK_NSPECIAL
} tlm_tok_special;
/* The named special token's string from tokenizer_config.json (the model's
 * unk_token for TLM_TOK_UNK when the config names none); NULL when unset. */
const char *tlm_tok_special_token(const tlm_tok *t, tlm_tok_special which);

/* --- generation --- */
/* Incremental decoding with a KV cache. A session caches the keys and values
 * of B rows of up to max_len positions (prompt plus new tokens) in one block
 * planned at creation; it borrows the model, which must outlive it and not
 * change its active adapter between feeds of one generation. Each feed runs
 * the decoder on the new positions only, through the same projections as
 * forward() (adapters, however base weights are stored). */
typedef struct tlm_gen tlm_gen;

tlm_status tlm_gen_create(tlm_model *m, int64_t B, int64_t max_len, tlm_gen **out);
void tlm_gen_free(tlm_gen *g);
/* Starts a generation: empties the cache; row b's first n_pad[b] positions
 * will be left padding (never attended; its real tokens get RoPE positions
 * 0, 1, ... after it, as transformers derives them from the mask). */
tlm_status tlm_gen_begin(tlm_gen *g, const int32_t *n_pad);
/* Appends S positions to every row: ids [B,S] (the prompts, left-padded, on
 * the first feed; then one token per row per step). logits [B,V] of each
 * row's last new position, or NULL. */
tlm_status tlm_gen_feed(tlm_gen *g, const int32_t *ids, int64_t S, float *logits);
int64_t tlm_gen_length(const tlm_gen *g); /* positions fed since tlm_gen_begin */

/* Per-token log-likelihoods for evaluation, in inference mode (nothing kept
 * for backward): out[b,t] = log softmax(logits[b,t])[targets[b,t]], 0 where
 * targets[b,t] == -100. targets are aligned with the logits, not shifted:
 * pass input_ids[b,t+1] to score the next token. Inputs as in forward(). */
tlm_status tlm_model_logprobs(tlm_model *m, const int32_t *input_ids, const int32_t *attention_mask,
                              const int32_t *position_ids, const int32_t *targets, int64_t B, int64_t T, float *out);

#ifdef __cplusplus
}
#endif
#endif /* TLM_H */
