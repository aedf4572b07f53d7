/* mmpipe — model conversion to GGUF (what `mmpipe convert` does).
 *
 * 1. Hugging Face folder (config.json + safetensors, sharded or not) -> GGUF with llama.cpp's
 *    tensor names and metadata keys, as llama.cpp's convert_hf_to_gguf.py writes them:
 *      model_type llama / mistral / mixtral -> general.architecture "llama" (mixtral's experts
 *      stacked into 3-D ffn_{gate,up,down}_exps, router ffn_gate_inp);
 *      qwen2 -> "qwen2" (q/k/v biases); qwen2_moe -> "qwen2moe" (+ shared expert *_shexp and
 *      its sigmoid gate ffn_gate_inp_shexp).
 *    For the llama family the q and k projection rows (and biases) are PERMUTED from HF's
 *    rotate-half order to the adjacent-pair RoPE order llama.cpp uses (LlamaModel.permute:
 *    per head of D rows, new row 2i+j = old row j*D/2+i, with n_head_kv heads for k); qwen2 /
 *    qwen2_moe keep HF's order (llama.cpp runs them with NEOX rope).
 *    Tensor types: 1-D tensors, norms and MoE routers stay F32 (as llama.cpp does); the other
 *    weights get the requested type; a tensor whose rows are not a multiple of that type's
 *    block size falls back to F16 and the log callback says so.
 *    Tokenizer: tokenizer.json is NOT converted (not implemented yet); pass a llama2.c
 *    tokenizer.bin, or a GGUF file (e.g. a vocab-only one) to copy the tokenizer.* keys from.
 *    config.json's bos/eos ids are checked against it. tokenizer_config.json's chat_template
 *    (a single string) is copied to tokenizer.chat_template.
 * 2. llama2.c checkpoint (run.c's format: Config of 7 int32 {dim, hidden_dim, n_layers,
 *    n_heads, n_kv_heads, vocab_size, seq_len}, a negative vocab_size meaning an unshared
 *    classifier; then the f32 weights in run.c's order) + its tokenizer.bin -> GGUF "llama"
 *    with the tokenizer as tokenizer.ggml.* keys (model "llama", bos 1, eos 2, unk 0). llama2.c
 *    weights are already in adjacent-pair RoPE order: nothing is permuted.
 * 3. Multimodal HF folders (LLaVA "llava", Qwen2-Audio "qwen2_audio", any config with a
 *    text_config): mmp_convert_hf_to_gguf converts their language model (text_config keys,
 *    tensors under language_model.model. / model.language_model. / language_model.model.model.,
 *    lm_head under language_model.lm_head. or lm_head.) as in 1.; mmp_convert_llava_mmproj
 *    writes the LLaVA vision tower + projector as a llama.cpp mmproj GGUF (see below). The
 *    pair (LLM GGUF + mmproj GGUF) is what llama.cpp's mtmd and `mmpipe chat --mmproj` load. */
#ifndef MMPIPE_CONVERT_H
#define MMPIPE_CONVERT_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmp_convert_params {
    enum mmp_type out_type;        /* F32 (default), F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 */
    const char *tokenizer_llama2c; /* HF conversion: a llama2.c tokenizer.bin to embed (or NULL) */
    const char *vocab_gguf;        /* HF conversion: copy every tokenizer.* key of this GGUF file */
    const char *name;              /* general.name (default: the input's base name) */
    mmp_log_fn log;                /* notes such as "falling back to F16" (optional) */
    void *log_user;
    /* new fields only at the end */
} mmp_convert_params;

MMP_API mmp_convert_params mmp_convert_params_default(void);

/* Whether `t` is a valid output type of the converter. */
MMP_API bool mmp_convert_type_ok(enum mmp_type t);

/* HF folder -> GGUF file (written atomically). Errors name the file, the tensor / key and
 * the value: unknown model_type, missing tensors, shapes that disagree with config.json,
 * tokenizer ids that disagree with config.json's bos/eos. */
MMP_API enum mmp_status mmp_convert_hf_to_gguf(const char *hf_dir, const char *out_path,
                                               const mmp_convert_params *params);

/* llama2.c model.bin + tokenizer.bin -> GGUF file. The checkpoint size must match its header
 * exactly (with or without a separate classifier). */
MMP_API enum mmp_status mmp_convert_llama2c_to_gguf(const char *model_bin, const char *tokenizer_bin,
                                                    const char *out_path, const mmp_convert_params *params);

/* LLaVA HF folder (model_type "llava", CLIP vision tower, 2-layer GELU MLP projector) ->
 * llama.cpp mmproj GGUF, as llama.cpp's LLaVA converters write it:
 *   keys: general.architecture "clip", clip.has_vision_encoder / has_llava_projector true,
 *     clip.has_text_encoder false, clip.projector_type "mlp", clip.use_gelu (vision hidden_act
 *     "gelu"; quick_gelu otherwise), clip.vision.{image_size, patch_size, embedding_length,
 *     feed_forward_length, projection_dim (= the LLM's hidden size), attention.head_count,
 *     attention.layer_norm_epsilon, block_count, image_mean, image_std};
 *   tensors: v.patch_embd.weight (F16 at most: ggml's conv2d), v.class_embd,
 *     v.position_embd.weight, v.pre_ln.*, v.blk.N.{ln1, attn_q, attn_k, attn_v, attn_out, ln2,
 *     ffn_up (fc1), ffn_down (fc2)}.{weight,bias}, mm.0.* (linear_1), mm.2.* (linear_2).
 * The tower is cut after vision_feature_layer (block_count = the layers up to it: -2 -> all
 * but the last) and post_layernorm is not written, so the file's last layer output is HF's
 * hidden_states[vision_feature_layer]; the class token is dropped by the reader (llama.cpp
 * always does for "mlp"). Image mean/std come from preprocessor_config.json (else CLIP's).
 * Tensor types as for LLMs (params->out_type for matrices, F32 for vectors and embeddings).
 * Errors: a folder that is not LLaVA (model_type), vision_feature_select_strategy "full",
 * a list-valued vision_feature_layer, a projector activation other than "gelu", a SigLIP
 * tower, missing / misshapen tensors; each names the folder, key or tensor and value. */
MMP_API enum mmp_status mmp_convert_llava_mmproj(const char *hf_dir, const char *out_path, const mmp_convert_params *params);

/* The HF q/k row permutation on its own (rows [n_rows, row_len] f32, n_rows = n_head * D, D
 * even): dst row h*D + 2i + j = src row h*D + j*D/2 + i. dst and src must not overlap. */
MMP_API enum mmp_status mmp_convert_permute_qk(float *dst, const float *src, int64_t n_rows,
                                               int64_t row_len, int32_t n_head);

#ifdef __cplusplus
}
#endif
#endif
