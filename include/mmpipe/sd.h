/* mmpipe — Stable Diffusion models as users have them, and text-to-image on top of them.
 *
 * mmp_sd_load takes either
 *  - a diffusers pipeline root: model_index.json with text_encoder/ (CLIPTextModel),
 *    tokenizer/ (vocab.json + merges.txt), unet/ (UNet2DConditionModel), vae/
 *    (AutoencoderKL or AutoencoderTiny) and scheduler/scheduler_config.json (optional: SD1.x
 *    values when absent), or
 *  - a single-file Stable Diffusion 1.x checkpoint (.safetensors) in the original LDM naming:
 *    model.diffusion_model.* (UNet), first_stage_model.* (VAE), cond_stage_model.transformer.*
 *    (HF CLIP text model). The tensors are renamed to diffusers names with the tables of
 *    diffusers' convert_from_ckpt.py (input_blocks/middle_block/output_blocks -> down/mid/up
 *    blocks; VAE down/up/mid.attn_1 with its 1x1-conv q/k/v/proj_out as linear weights), the
 *    component configs are inferred from the tensor shapes, and the result is written as a
 *    diffusers layout in a temporary folder (data streamed from the mmapped checkpoint, not
 *    held in memory), loaded, and the temporary files deleted (the loaders keep their maps).
 *    Single files carry no tokenizer: it is taken from params.tokenizer_path, else from a
 *    tokenizer/ folder or vocab.json + merges.txt next to the checkpoint.
 *    What the weights cannot tell: the number of attention heads (SD 1.x: 8 per block; other
 *    widths: 64 channels per head), GroupNorm groups (32) and the text encoder's heads
 *    (width / 64); params override them. SD 2.x single files (OpenCLIP text encoder,
 *    cond_stage_model.model.*) are refused with MMP_ERR_UNSUPPORTED.
 *
 * A model computes one generation at a time (its parts cache graphs): one per thread. */
#ifndef MMPIPE_SD_H
#define MMPIPE_SD_H

#include "mmpipe/base.h"
#include "mmpipe/diffusion.h"
#include "mmpipe/tokenizer.h"
#include "mmpipe/vision.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmp_sd_params {
    int32_t n_threads;          /* 0: 4 */
    const char *vae_path;       /* use this VAE instead of the model's (e.g. a TAESD file/folder) */
    const char *tokenizer_path; /* tokenizer folder (required for single files without one nearby) */
    int32_t ldm_unet_heads;     /* single file: heads per attention (0: 8 if cross dim 768, else ch/64) */
    int32_t ldm_norm_groups;    /* single file: GroupNorm groups of UNet and VAE (0: 32) */
    int32_t ldm_text_heads;     /* single file: text encoder heads (0: width / 64) */
    const char *tmp_dir;        /* single file: where the diffusers layout is written (NULL: $TMPDIR or /tmp) */
    /* new fields only at the end */
} mmp_sd_params;
MMP_API mmp_sd_params mmp_sd_params_default(void);

typedef struct mmp_sd mmp_sd;
MMP_API mmp_sd *mmp_sd_load(const char *path, const mmp_sd_params *p);
MMP_API void mmp_sd_free(mmp_sd *sd);

/* Parts (borrowed, live as long as sd). */
MMP_API mmp_unet *mmp_sd_unet(mmp_sd *sd);
MMP_API mmp_vae *mmp_sd_vae(mmp_sd *sd);
MMP_API mmp_clip_text *mmp_sd_text_encoder(mmp_sd *sd);
MMP_API const mmp_clip_tokenizer *mmp_sd_tokenizer(const mmp_sd *sd);
MMP_API bool mmp_sd_is_single_file(const mmp_sd *sd);
/* Scheduler parameters of this model for a sampler kind: mmp_sched_params_default(kind)
 * overwritten by scheduler/scheduler_config.json where there is one. */
MMP_API enum mmp_status mmp_sd_sched_params(const mmp_sd *sd, enum mmp_sched_kind kind, mmp_sched_params *out);

/* Write the diffusers layout of a single-file checkpoint to out_dir (created if missing;
 * existing files are overwritten): model_index.json, unet/, vae/, text_encoder/ with
 * config.json + weights, and tokenizer/ if p->tokenizer_path is given. */
MMP_API enum mmp_status mmp_sd_convert_single_file(const char *ckpt, const char *out_dir, const mmp_sd_params *p);

/* Prompt -> conditioning [t_ctx, d_ctx]: CLIP tokens padded to min(model_max_length, the text
 * encoder's n_ctx), the text encoder's last hidden state after the final LN; clip_skip >= 2
 * takes hidden_states[-clip_skip] with the final LN. *cond is malloc'ed (caller frees). */
MMP_API enum mmp_status mmp_sd_encode_prompt(mmp_sd *sd, const char *prompt, int32_t clip_skip, int32_t n_threads,
                                             float **cond, int32_t *t_ctx, int32_t *d_ctx);

typedef struct mmp_sd_gen_params {
    const char *prompt;
    const char *negative;       /* NULL = "" (the unconditional prompt) */
    int32_t width, height;      /* 512 x 512; multiples of 8 * mmp_unet_size_multiple */
    int32_t steps;              /* 1..1000 (20) */
    float cfg_scale;            /* 7.5; <= 1 runs the conditional branch only */
    enum mmp_sched_kind sampler;/* MMP_SCHED_EULER_A */
    bool karras;                /* Karras sigmas (Euler, Euler a, DPM++ 2M) */
    uint64_t seed;              /* initial noise and Euler a noise */
    int32_t clip_skip;          /* 0 or 1: last layer */
    int32_t n_threads;          /* 0: the load's n_threads */
    mmp_progress_fn progress;   /* ("steps", i, steps) after each step */
    mmp_abort_fn abort_cb;
    void *cb_user;
    /* new fields only at the end */
} mmp_sd_gen_params;
MMP_API mmp_sd_gen_params mmp_sd_gen_params_default(void);

/* Check the model and the parameters without running anything: W/H multiples, steps range,
 * UNet vs VAE latent channels, text-encoder width vs cross_attention_dim. MMP_OK or the
 * error (with a message naming the values). */
MMP_API enum mmp_status mmp_sd_check(mmp_sd *sd, const mmp_sd_gen_params *g);
/* Text to image: image01 [3, height, width] in [0, 1] (caller memory); latents (optional,
 * NULL to skip) [C, height/s, width/s] the final latents. */
MMP_API enum mmp_status mmp_sd_generate(mmp_sd *sd, const mmp_sd_gen_params *g, float *image01, float *latents);

#ifdef __cplusplus
}
#endif
#endif
