/* mmpipe — the BLIP-2 Q-Former and the NExT-GPT style output projector.
 *
 * (The linear / LLaVA MLP / audio projectors live in projectors/mlp.c with their own header.)
 *
 * Both models are read-only once loaded (weights mapped in place where the dtype and the
 * alignment allow, otherwise converted once to f32) and may be used from several threads at
 * once: each run builds its own small op graph and CPU backend.
 *
 * Arrays are row-major in the human order (outermost first): image features [n_img, enc_dim]
 * means n_img rows of enc_dim floats. */
#ifndef MMPIPE_PROJECTOR_H
#define MMPIPE_PROJECTOR_H

#include "mmpipe/base.h"
#include "mmpipe/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mmp_modelfile; /* modelfile.h */

/* ------------------------------------------------------------------ Q-Former ----
 * BLIP-2 Q-Former (transformers Blip2QFormerModel) as the queries see it:
 *   x = LayerNorm(query_embeds)                              (`layernorm`)
 *   per layer i:  x = LN(x + SelfAttn(x))                    (`attention.*`, BERT post-LN)
 *                 x = LN(x + CrossAttn(x, image))            (`crossattention.*`, only in layers
 *                                                             that have it: i % cross_attention_frequency == 0)
 *                 x = LN(x + W2 act(W1 x))                   (`intermediate_query`, `output_query`)
 *   optional:     y = language_projection(x)                 (full Blip2 models)
 *
 * Loads from (a) a Blip2QFormerModel folder / safetensors file (names `encoder.layer.N.*`,
 * `layernorm.*`; config.json with the Blip2QFormerConfig fields), or (b) a full BLIP-2 folder
 * (Blip2ForConditionalGeneration / Blip2Model: `qformer.*`, `query_tokens` [1, n_query, D],
 * `language_projection.*`; config.json with `qformer_config` and `num_query_tokens`). Any name
 * prefix before `qformer.` / `encoder.layer.` is accepted. Sizes (hidden, encoder width, FFN
 * width, layers, which layers cross-attend) come from the tensor shapes; the number of heads,
 * layer_norm_eps and hidden_act come from the config (or the params below). */
typedef struct mmp_qformer mmp_qformer;

typedef struct mmp_qformer_params {
    int32_t n_heads;        /* 0: from config.json (num_attention_heads); > 0 overrides it */
    /* new fields only at the end */
} mmp_qformer_params;

MMP_API mmp_qformer_params mmp_qformer_params_default(void);

typedef struct mmp_qformer_hparams {
    int32_t hidden_size;          /* D */
    int32_t encoder_hidden_size;  /* width of the image features the cross-attention reads */
    int32_t intermediate_size;    /* query FFN width */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_cross_layers;       /* layers that have cross-attention */
    int32_t n_query;              /* learned query tokens in the file; 0 if none (give queries) */
    int32_t proj_dim;             /* language_projection output width; 0 if the file has none */
    float layer_norm_eps;
    enum mmp_unary act;           /* from hidden_act */
} mmp_qformer_hparams;

/* Load from a file or folder (see above). NULL + mmp_last_error() naming the file, tensor and
 * sizes on any inconsistency. params may be NULL (defaults). */
MMP_API mmp_qformer *mmp_qformer_load(const char *path, const mmp_qformer_params *params);
/* The same from a model file the caller opened (mmp_modelfile_open / mmp_store_open): the
 * Q-Former BORROWS mf (weights used in place); keep mf open until the Q-Former is freed. */
MMP_API mmp_qformer *mmp_qformer_load_modelfile(const struct mmp_modelfile *mf, const mmp_qformer_params *params);
MMP_API void mmp_qformer_free(mmp_qformer *q);
/* Borrowed; lives as long as q. */
MMP_API const mmp_qformer_hparams *mmp_qformer_get_hparams(const mmp_qformer *q);

typedef struct mmp_qformer_run_params {
    int n_threads;                /* <= 0: 1 */
    bool project;                 /* apply language_projection (if the model has one) */
    mmp_abort_fn abort_cb;        /* optional */
    void *abort_user;
    /* new fields only at the end */
} mmp_qformer_run_params;

MMP_API mmp_qformer_run_params mmp_qformer_run_params_default(void);  /* 1 thread, project = true */

/* image [n_img, encoder_hidden_size]; queries [n_query, hidden_size] or NULL for the model's
 * learned query_tokens (then n_query is ignored; error if the model has none).
 * out receives [n_query, W] where W = proj_dim when projecting (and the model has a
 * language_projection), else hidden_size; mmp_qformer_out_dim() says which. */
MMP_API enum mmp_status mmp_qformer_run(const mmp_qformer *q, const float *image, int64_t n_img,
                                        const float *queries, int64_t n_query, float *out,
                                        const mmp_qformer_run_params *rp);
MMP_API int32_t mmp_qformer_out_dim(const mmp_qformer *q, bool project);

/* ---------------------------------------------------------- output projector ----
 * NExT-GPT / GILL style output projector: the LLM's signal-token hidden states become the
 * diffusion model's conditioning.
 *   x    = fc_in(hidden (+ input_embeds))                  [n_signal, d]
 *   mem  = torch.nn.Transformer encoder over x (+ transformer.encoder.norm)
 *   y    = decoder over the learned queries [n_q, d]: self-attn, cross-attn to mem, FFN
 *          (+ transformer.decoder.norm)
 *   out  = fc_out(y)                                       [n_q, out_dim]
 * Pre-norm (norm_first=True) or post-norm layers, ReLU or GELU FFN. Names: torch state_dict
 * of such a module, either {fc_in, queries, transformer, fc_out} or GILL/NExT-GPT's
 * {fc, query_embs, tfm, model}, with any common prefix. in_proj_weight [3d, d] packs q, k, v.
 *
 * d, layers, FFN width, queries and widths come from tensor shapes and names. What a
 * state_dict does not hold comes from the params, else from a `config.json` next to the
 * weights (keys: "nhead" (or "num_heads", "n_heads"), "norm_first", "layer_norm_eps",
 * "activation" ("relu" | "gelu")), else the defaults: norm_first true (NExT-GPT and GILL build
 * their nn.Transformer with norm_first=True; torch's own default is false), eps 1e-5 and relu
 * (torch's). The number of heads has no default: it must be given one of those ways. */
typedef struct mmp_outproj mmp_outproj;

typedef struct mmp_outproj_params {
    int32_t n_heads;       /* 0: from config.json (required there then) */
    int32_t norm_first;    /* -1: config/default (true); 0 post-norm; 1 pre-norm */
    float layer_norm_eps;  /* <= 0: config/default 1e-5 */
    int32_t act;           /* -1: config/default (relu); else MMP_UNARY_RELU or MMP_UNARY_GELU */
    /* new fields only at the end */
} mmp_outproj_params;

MMP_API mmp_outproj_params mmp_outproj_params_default(void);

typedef struct mmp_outproj_hparams {
    int32_t in_dim;        /* LLM hidden width (fc_in input) */
    int32_t d_model;
    int32_t n_heads;
    int32_t n_enc_layers, n_dec_layers;
    int32_t ff_dim;
    int32_t n_queries;
    int32_t out_dim;       /* conditioning width (fc_out output) */
    bool norm_first;
    bool has_enc_norm, has_dec_norm;
    float layer_norm_eps;
    enum mmp_unary act;
} mmp_outproj_hparams;

MMP_API mmp_outproj *mmp_outproj_load(const char *path, const mmp_outproj_params *params);
/* The same from a model file the caller opened: BORROWS mf (keep it open until the projector
 * is freed). The `config.json` next to the weights is read through mf. */
MMP_API mmp_outproj *mmp_outproj_load_modelfile(const struct mmp_modelfile *mf, const mmp_outproj_params *params);
MMP_API void mmp_outproj_free(mmp_outproj *m);
MMP_API const mmp_outproj_hparams *mmp_outproj_get_hparams(const mmp_outproj *m);

/* hidden [n_signal, in_dim]; input_embeds optional (NULL), same shape, added to hidden first
 * (NExT-GPT adds the signal tokens' input embeddings); out receives [n_queries, out_dim].
 * n_threads <= 0 means 1; abort_cb optional. */
MMP_API enum mmp_status mmp_outproj_run(const mmp_outproj *m, const float *hidden, const float *input_embeds,
                                        int64_t n_signal, float *out, int n_threads,
                                        mmp_abort_fn abort_cb, void *abort_user);

#ifdef __cplusplus
}
#endif
#endif
