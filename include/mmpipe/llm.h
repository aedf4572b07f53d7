/* mmpipe — the LLM backbone: dense and Mixture-of-Experts decoders.
 *
 * One decoder code path for llama, mistral, qwen2, mixtral, qwen2_moe, olmoe (an
 * architecture table says what differs: qkv bias, q/k norm, MoE routing, shared expert, ...);
 * a dense model is the one-expert case with a plain FFN.
 *
 * Model vs context: an mmp_llm is read-only after loading (weights mmapped and used in place)
 * and may be shared by several threads; each thread uses its own mmp_llm_ctx (KV cache,
 * buffers, thread pool).
 *
 * Loading: a GGUF file (llama.cpp names: token_embd, blk.N.attn_q/k/v/output, ffn_gate_inp,
 * ffn_{gate,up,down}_exps, ffn_*_shexp, output_norm, output — tied to token_embd when absent)
 * in any tensor type of types.h, or a Hugging Face folder (config.json + safetensors, sharded
 * or not; Hub names `model.layers.N...` and nested `language_model.model[.model].layers...`).
 *
 * Positions: a context holds n_past tokens; mmp_llm_decode appends a batch at positions
 * n_past .. n_past+n-1 and fails with MMP_ERR_LIMIT (naming both numbers) if that passes
 * n_ctx. */
#ifndef MMPIPE_LLM_H
#define MMPIPE_LLM_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmp_llm mmp_llm;
typedef struct mmp_llm_ctx mmp_llm_ctx;
struct mmp_tokenizer; /* tokenizer.h */
struct mmp_modelfile; /* modelfile.h */

/* Hyper-parameters as read from the model files. */
typedef struct mmp_llm_hparams {
    char arch[32];            /* "llama", "mixtral", "qwen2", "qwen2_moe", "olmoe", ... */
    int32_t n_vocab;
    int32_t n_embd;           /* hidden size */
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;         /* n_embd / n_head unless the file says otherwise */
    int32_t n_ff;             /* dense FFN width (0 if every layer is MoE) */
    int32_t n_expert;         /* 0 for dense */
    int32_t n_expert_used;    /* top-k */
    int32_t n_ff_expert;      /* expert FFN width */
    int32_t n_ff_shared;      /* shared-expert FFN width (qwen2_moe), 0 if none */
    int32_t n_ctx_train;
    float rope_theta;
    float norm_eps;
    bool tied_output;         /* output projection is the token embedding table */
} mmp_llm_hparams;

typedef struct mmp_llm_load_params {
    bool vocab_only;          /* read hyper-parameters and tokenizer only (no weights bound) */
    /* new fields only at the end */
} mmp_llm_load_params;
MMP_API mmp_llm_load_params mmp_llm_load_params_default(void);

/* Load a model from a GGUF file or an HF folder. NULL + mmp_last_error() (names the file,
 * the tensor / key and the value: missing tensors, wrong shapes, vocab/embedding mismatch,
 * unknown architecture). */
MMP_API mmp_llm *mmp_llm_load(const char *path, const mmp_llm_load_params *params);
/* The same from a model file the caller opened (mmp_modelfile_open or mmp_store_open): the
 * model BORROWS mf (uses its mapped weights in place); keep mf open until the model is freed.
 * Messages name mmp_modelfile_path(mf). */
MMP_API mmp_llm *mmp_llm_load_modelfile(const struct mmp_modelfile *mf, const mmp_llm_load_params *params);
MMP_API void mmp_llm_free(mmp_llm *m);
MMP_API const mmp_llm_hparams *mmp_llm_get_hparams(const mmp_llm *m);   /* borrowed */
/* The model's tokenizer (GGUF metadata or tokenizer.json in the folder); NULL if it has none.
 * Borrowed: lives as long as the model. */
MMP_API const struct mmp_tokenizer *mmp_llm_get_tokenizer(const mmp_llm *m);
/* Token embeddings of ids (rows of the embedding table as f32): out [n, n_embd]. For
 * splicing text between image/audio embeddings. MMP_ERR_INVALID_ARG for an id out of range. */
MMP_API enum mmp_status mmp_llm_embed_tokens(const mmp_llm *m, const int32_t *ids, int n, float *out);

enum mmp_kv_type { MMP_KV_F32 = 0, MMP_KV_F16 = 1, MMP_KV_TYPE_COUNT = 2 };

typedef struct mmp_llm_ctx_params {
    int32_t n_ctx;            /* KV cache length; 0 = the model's n_ctx_train (capped at 4096) */
    int32_t n_threads;        /* <= 0: 1 */
    enum mmp_kv_type kv_type; /* default MMP_KV_F32 */
    mmp_abort_fn abort_cb;    /* optional */
    void *abort_user;
    /* new fields only at the end */
} mmp_llm_ctx_params;
MMP_API mmp_llm_ctx_params mmp_llm_ctx_params_default(void);

MMP_API mmp_llm_ctx *mmp_llm_ctx_new(const mmp_llm *m, const mmp_llm_ctx_params *params);
MMP_API void mmp_llm_ctx_free(mmp_llm_ctx *c);
MMP_API int32_t mmp_llm_ctx_n_past(const mmp_llm_ctx *c);
MMP_API int32_t mmp_llm_ctx_n_ctx(const mmp_llm_ctx *c);
/* Forget the positions from n_keep on (0 = clear the cache). */
MMP_API enum mmp_status mmp_llm_ctx_truncate(mmp_llm_ctx *c, int32_t n_keep);

/* One forward pass over n new positions. Exactly one of tokens / embd is given.
 * Outputs are optional caller buffers:
 *   logits         [n_vocab] for the last position, or [n, n_vocab] when logits_all;
 *   hidden         [n, n_embd] final hidden states after the final norm (NExT-GPT signal
 *                  tokens, tests);
 *   router_logits  [n_layer, n, n_expert] router scores before softmax (MoE models; tests;
 *                  rows of dense layers of a mixed model are zeros; MMP_ERR_INVALID_ARG for a
 *                  dense model).
 * The graph is rebuilt per call; a long prompt may be given in one batch (prefill: each
 * used expert runs one GEMM over its tokens) or in several. */
typedef struct mmp_llm_batch {
    int32_t n;
    const int32_t *tokens;    /* [n] or NULL */
    const float *embd;        /* [n, n_embd] or NULL */
    float *logits;
    bool logits_all;
    float *hidden;
    float *router_logits;
} mmp_llm_batch;

MMP_API enum mmp_status mmp_llm_decode(mmp_llm_ctx *c, const mmp_llm_batch *batch);

#ifdef __cplusplus
}
#endif
#endif
