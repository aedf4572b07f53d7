/* Architecture tables of the LLM backbone: what differs between llama, mistral, qwen2,
 * mixtral, qwen2_moe and olmoe. The forward pass is one code path (decoder.c + moe.c); these
 * rows say which optional pieces it uses.
 *
 * Sources: transformers modeling_{llama,mistral,qwen2,mixtral,qwen2_moe,olmoe}.py (routing,
 * biases, q/k norm, names) and llama.cpp llama-arch.cpp / llama-model.cpp (GGUF names, keys,
 * rope type: NORM (adjacent pairs; convert_hf_to_gguf permutes q/k rows) for llama-type
 * archs, NEOX (rotate-half, no permutation) for qwen2, qwen2moe, olmoe). */
#include "llm-impl.h"

#include <string.h>

static const mmp__llm_arch k_archs[] = {
    /* name        gguf        hf_type      rope             bias   qknorm moe    norm   shexp */
    { "llama",     "llama",    "llama",     MMP_ROPE_NORMAL, false, false, false, true,  false,
      "block_sparse_moe.gate", "block_sparse_moe.experts.%d.w1", "block_sparse_moe.experts.%d.w3",
      "block_sparse_moe.experts.%d.w2" },
    { "mistral",   "mistral",  "mistral",   MMP_ROPE_NORMAL, false, false, false, true,  false,
      NULL, NULL, NULL, NULL },
    /* Mixtral GGUFs say general.architecture = "llama" (+ expert_count); HF says "mixtral". */
    { "mixtral",   "mixtral",  "mixtral",   MMP_ROPE_NORMAL, false, false, true,  true,  false,
      "block_sparse_moe.gate", "block_sparse_moe.experts.%d.w1", "block_sparse_moe.experts.%d.w3",
      "block_sparse_moe.experts.%d.w2" },
    { "qwen2",     "qwen2",    "qwen2",     MMP_ROPE_NEOX,   true,  false, false, true,  false,
      NULL, NULL, NULL, NULL },
    { "qwen2_moe", "qwen2moe", "qwen2_moe", MMP_ROPE_NEOX,   true,  false, true,  false, true,
      "mlp.gate", "mlp.experts.%d.gate_proj", "mlp.experts.%d.up_proj", "mlp.experts.%d.down_proj" },
    { "olmoe",     "olmoe",    "olmoe",     MMP_ROPE_NEOX,   false, true,  true,  false, false,
      "mlp.gate", "mlp.experts.%d.gate_proj", "mlp.experts.%d.up_proj", "mlp.experts.%d.down_proj" },
};
#define N_ARCHS ((int)(sizeof k_archs / sizeof k_archs[0]))

const mmp__llm_arch *mmp__llm_arch_by_hf(const char *model_type) {
    if (!model_type) return NULL;
    for (int i = 0; i < N_ARCHS; i++)
        if (strcmp(k_archs[i].hf_model_type, model_type) == 0) return &k_archs[i];
    return NULL;
}

const mmp__llm_arch *mmp__llm_arch_by_gguf(const char *gguf_arch) {
    if (!gguf_arch) return NULL;
    for (int i = 0; i < N_ARCHS; i++)
        if (k_archs[i].gguf_arch && strcmp(k_archs[i].gguf_arch, gguf_arch) == 0) return &k_archs[i];
    return NULL;
}

const char *mmp__llm_arch_list_hf(void) {
    return "llama, mistral, mixtral, qwen2, qwen2_moe, olmoe";
}

const char *mmp__llm_arch_list_gguf(void) {
    return "llama, mistral, mixtral, qwen2, qwen2moe, olmoe";
}
