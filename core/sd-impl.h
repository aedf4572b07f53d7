/* Private: Stable Diffusion roots (a diffusers pipeline folder or a single-file LDM checkpoint)
 * as stage models. The stage kinds that accept a root (tokenize.clip, encoder.clip_text,
 * generator.sample) get ONE mmp_sd per pipeline through the model store (tag "sd", keyed by the
 * root, the VAE override and the load options), so a txt2img pipeline maps and loads the model
 * once although several stages use it. core/sd.c. */
#ifndef MMP_SD_IMPL_H
#define MMP_SD_IMPL_H

#include "mmpipe/sd.h"
#include "store-impl.h"

/* Load options of an SD root that stages take as options (tokenizer=DIR, ldm_heads=N,
 * ldm_groups=N, ldm_text_heads=N; empty or 0 = unset) plus the VAE override (the stage's aux). */
typedef struct mmp__sd_opts {
    char *tokenizer;       /* owned; NULL = unset */
    int ldm_heads, ldm_groups, ldm_text_heads;
} mmp__sd_opts;

/* Is `path` a Stable Diffusion root: a folder with model_index.json, or a .safetensors file
 * holding an LDM UNet (model.diffusion_model.input_blocks.0.0.weight)? No error is left set. */
bool mmp__sd_is_root(const char *path);

/* If key is one of the SD load options, store its value in o and return 1; 0 if it is not one;
 * -1 with the error set (naming `kind`) on a bad value. */
int mmp__sd_opt(const char *kind, const char *key, const char *val, mmp__sd_opts *o);
void mmp__sd_opts_free(mmp__sd_opts *o);

/* The shared mmp_sd of `root` for a stage (vae: another VAE / TAESD, NULL or "" for the
 * model's own). Scratch model: shared within p->scope. MMP_OK or the load error. */
enum mmp_status mmp__sd_ref(const mmp_stage_params *p, const char *root, const char *vae, const mmp__sd_opts *o,
                            mmp__model_ref *out);

/* Prompt length the model's prompts are padded to: min(tokenizer model_max_length, text n_ctx). */
int32_t mmp__sd_prompt_length(const mmp_sd *sd);

#endif
