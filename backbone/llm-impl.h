/* Private: the LLM backbone's internal structures, shared by backbone/arch.c (architecture
 * tables), backbone/llm_load.c (GGUF + HF loaders), backbone/decoder.c (graph building, KV
 * cache, decode), backbone/moe.c (router, top-k, experts, shared expert) and
 * backbone/stage_llm.c (the `backbone.llm` stage kind). */
#ifndef MMP_BACKBONE_LLM_IMPL_H
#define MMP_BACKBONE_LLM_IMPL_H

#include "mmpipe/llm.h"
#include "mmpipe/graph.h"
#include "mmpipe/backend.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/tokenizer.h"

/* How the router's probabilities become expert weights. */
enum mmp__moe_gating {
    MMP__GATE_SOFTMAX_TOPK_NORM = 0,  /* mixtral: softmax over all experts, top-k, renormalise */
    MMP__GATE_SOFTMAX_TOPK      = 1,  /* qwen2_moe / olmoe (norm_topk_prob false): no renorm */
};

/* One architecture: what differs between the decoders that share the one code path. */
typedef struct mmp__llm_arch {
    const char *name;           /* our name, copied into hparams.arch */
    const char *gguf_arch;      /* general.architecture (NULL: not loadable from GGUF) */
    const char *hf_model_type;  /* config.json model_type */
    enum mmp_rope_mode gguf_rope; /* llama.cpp's rope type for this arch's GGUF files */
    bool qkv_bias;              /* q/k/v projections have biases (qwen2, qwen2_moe) */
    bool qk_norm;               /* RMSNorm over the whole q and k projections (olmoe) */
    bool moe;                   /* FFN is a mixture of experts (unless n_expert == 0 for llama GGUF) */
    bool norm_topk_default;     /* renormalise the top-k weights unless config says otherwise */
    bool shared_expert;         /* qwen2_moe: shared expert with a sigmoid gate */
    /* HF tensor names inside a layer ("%d" = expert index) */
    const char *hf_router;      /* "block_sparse_moe.gate" / "mlp.gate" */
    const char *hf_exp_gate, *hf_exp_up, *hf_exp_down;
} mmp__llm_arch;

const mmp__llm_arch *mmp__llm_arch_by_hf(const char *model_type);
const mmp__llm_arch *mmp__llm_arch_by_gguf(const char *gguf_arch);
/* Comma-separated list of known names for messages ("llama, mistral, ..."). */
const char *mmp__llm_arch_list_hf(void);
const char *mmp__llm_arch_list_gguf(void);

/* A weight bound to memory (mmapped file data or a buffer the model owns). ne in GGML order. */
typedef struct mmp__w {
    enum mmp_type type;
    int n_dims;
    int64_t ne[4];
    void *data;                 /* NULL = absent */
} mmp__w;

typedef struct mmp__llm_layer {
    mmp__w attn_norm;           /* [n_embd] */
    mmp__w wq, wk, wv, wo;      /* {n_embd, n_head*hd}, {n_embd, n_kv*hd} x2, {n_head*hd, n_embd} */
    mmp__w bq, bk, bv;          /* optional biases */
    mmp__w q_norm, k_norm;      /* olmoe: [n_head*hd], [n_kv*hd] */
    mmp__w ffn_norm;            /* [n_embd] */
    bool is_moe;
    /* dense FFN */
    mmp__w ffn_gate, ffn_up, ffn_down;   /* {n_embd, n_ff}, {n_embd, n_ff}, {n_ff, n_embd} */
    /* MoE */
    mmp__w router;                       /* {n_embd, n_expert} */
    mmp__w gate_exps, up_exps, down_exps;/* {n_embd, n_ff_exp, n_expert}, ..., {n_ff_exp, n_embd, n_expert} */
    mmp__w gate_shexp, up_shexp, down_shexp; /* shared expert (qwen2_moe) */
    mmp__w shexp_gate;                   /* {n_embd, 1}: sigmoid gate of the shared expert */
} mmp__llm_layer;

struct mmp_llm {
    mmp_llm_hparams hp;
    const mmp__llm_arch *arch;
    char *path;
    const mmp_modelfile *mf;    /* the mapped data (borrowed or own_mf) */
    mmp_modelfile *own_mf;      /* the file when mmp_llm_load opened it; NULL when borrowed */
    enum mmp_rope_mode rope_mode;
    int32_t n_rot;              /* rotated dims per head (== head_dim unless the file says) */
    bool norm_topk;             /* renormalise the top-k expert weights */
    float rope_freq_scale;      /* linear RoPE scaling: 1/factor (1 = none) */
    float clip_qkv;             /* olmoe: clamp q/k/v to +-clip_qkv (0 = off) */
    mmp__w tok_embd;            /* {n_embd, n_vocab} */
    mmp__w output_norm;         /* [n_embd] */
    mmp__w output;              /* {n_embd, n_vocab}; == tok_embd when tied */
    mmp__llm_layer *layers;     /* [n_layer] */
    void **owned;               /* buffers the model allocated (stacked experts, f32 copies) */
    int n_owned, cap_owned;
    mmp_tokenizer *tok;
};

/* Loaders (llm_load.c). */
enum mmp_status mmp__llm_load_gguf(mmp_llm *m, bool vocab_only);
enum mmp_status mmp__llm_load_hf(mmp_llm *m, bool vocab_only);

/* Graph building (decoder.c / moe.c). A tensor over a bound weight (NULL if absent). */
mmp_tensor *mmp__w_tensor(mmp_graph *g, const mmp__w *w, const char *name, int il);
/* FFN of one layer: x [n_embd, n] -> [n_embd, n]. router_out (MoE only, may be NULL) gets
 * the router logits tensor [n_expert, n] (marked as an output). */
mmp_tensor *mmp__build_moe_ffn(mmp_graph *g, const mmp_llm *m, const mmp__llm_layer *L, int il,
                               mmp_tensor *x, mmp_tensor **router_out);
mmp_tensor *mmp__build_dense_ffn(mmp_graph *g, const mmp__llm_layer *L, int il, mmp_tensor *x);

#endif
