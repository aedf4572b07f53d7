/* mmpipe — latent diffusion: noise schedulers, the UNet (diffusers UNet2DConditionModel),
 * the autoencoders (AutoencoderKL, TAESD / AutoencoderTiny / TAEF2) and the text-to-image
 * sampling loop with classifier-free guidance.
 *
 * Array layouts here are the PyTorch ones, outermost first: a latent batch is [N, C, H, W]
 * (W contiguous), a context is [N, T, D] (D contiguous), an image [3, H, W] (or [N, 3, H, W]).
 *
 * Models load from diffusers component folders (config.json +
 * diffusion_pytorch_model.safetensors) or, for TAESD, a bare .safetensors in either naming
 * (diffusers `decoder.layers.N.*` or taesd.py Sequential `N.*`). Weights are mmapped and used
 * in place where their dtype and alignment allow (F32, F16), otherwise converted once at load.
 * A model object computes one call at a time (it caches the graph of the last shape): use one
 * per thread. */
#ifndef MMPIPE_DIFFUSION_H
#define MMPIPE_DIFFUSION_H

#include "mmpipe/base.h"
#include "mmpipe/json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================= schedulers ======================= */

enum mmp_sched_kind {
    MMP_SCHED_DDIM      = 0,  /* DDIMScheduler, eta = 0 */
    MMP_SCHED_EULER     = 1,  /* EulerDiscreteScheduler */
    MMP_SCHED_EULER_A   = 2,  /* EulerAncestralDiscreteScheduler (seeded noise) */
    MMP_SCHED_DPMPP_2M  = 3,  /* DPMSolverMultistepScheduler, dpmsolver++, order 2, midpoint */
    MMP_SCHED_COUNT     = 4
};
/* "ddim", "euler", "euler_a", "dpmpp_2m"; and back (MMP_SCHED_COUNT if unknown). */
MMP_API const char *mmp_sched_kind_name(enum mmp_sched_kind k);
MMP_API enum mmp_sched_kind mmp_sched_kind_from_name(const char *name);

enum mmp_timestep_spacing {
    MMP_SPACING_LEADING  = 0,
    MMP_SPACING_TRAILING = 1,
    MMP_SPACING_LINSPACE = 2,
    MMP_SPACING_COUNT    = 3
};

enum mmp_beta_schedule {
    MMP_BETAS_SCALED_LINEAR = 0,  /* linspace(sqrt(b0), sqrt(b1), N)^2 (Stable Diffusion) */
    MMP_BETAS_LINEAR        = 1,
    MMP_BETAS_COUNT         = 2
};

enum mmp_prediction_type {
    MMP_PREDICT_EPSILON = 0,
    MMP_PREDICT_V       = 1,  /* v_prediction (SD 2.x 768) */
    MMP_PREDICT_COUNT   = 2
};

typedef struct mmp_sched_params {
    enum mmp_sched_kind kind;
    int num_train_timesteps;          /* 1000 */
    double beta_start, beta_end;      /* 0.00085, 0.012 */
    enum mmp_beta_schedule beta_schedule;
    enum mmp_timestep_spacing spacing;/* the diffusers class default: DDIM leading, others linspace */
    int steps_offset;                 /* 1 (Stable Diffusion's scheduler_config.json) */
    bool set_alpha_to_one;            /* DDIM: false for SD */
    bool use_karras_sigmas;           /* Euler / Euler a / DPM++ 2M */
    bool lower_order_final;           /* DPM++ 2M: true */
    bool final_sigma_zero;            /* DPM++ 2M final_sigmas_type "zero" (true) or "sigma_min" */
    enum mmp_prediction_type prediction_type;
    uint64_t seed;                    /* Euler a noise */
    /* new fields only at the end */
} mmp_sched_params;

/* Stable Diffusion 1.x values for this kind (as diffusers' from_config on SD1.5's
 * scheduler_config.json gives them). */
MMP_API mmp_sched_params mmp_sched_params_default(enum mmp_sched_kind kind);
/* Overwrite fields from a diffusers scheduler config object: the keys num_train_timesteps,
 * beta_start, beta_end, beta_schedule, timestep_spacing, steps_offset, set_alpha_to_one,
 * use_karras_sigmas, lower_order_final, final_sigmas_type, prediction_type, trained_betas
 * (must be null) found under `prefix` ("" for the root, e.g. a scheduler_config.json, or
 * "ddim" for an object member). Missing or null keys leave the field as it is. Errors name
 * the file, the key and the value (unknown beta schedule, algorithm, solver order != 2 ...). */
MMP_API enum mmp_status mmp_sched_params_from_json(mmp_sched_params *p, const mmp_json *cfg, const char *prefix);

typedef struct mmp_scheduler mmp_scheduler;
MMP_API mmp_scheduler *mmp_scheduler_new(const mmp_sched_params *p);
MMP_API void mmp_scheduler_free(mmp_scheduler *s);
/* Choose n inference steps (1..num_train_timesteps) and reset the state (multistep history,
 * the Euler a generator to its seed). */
MMP_API enum mmp_status mmp_scheduler_set_timesteps(mmp_scheduler *s, int n);
MMP_API int mmp_scheduler_n_steps(const mmp_scheduler *s);
/* Timestep fed to the model at step i (integer-valued, except Karras sigmas may give any). */
MMP_API double mmp_scheduler_timestep(const mmp_scheduler *s, int i);
/* Factor for the initial noise (x_T = noise * init_noise_sigma). */
MMP_API double mmp_scheduler_init_noise_sigma(const mmp_scheduler *s);
/* scale_model_input: the model sees sample * input_scale(i) at step i (1 for DDIM / DPM). */
MMP_API double mmp_scheduler_input_scale(const mmp_scheduler *s, int i);
/* One step: sample[n] (x_t, updated in place to x_{t-1}) from the model's output[n] at step
 * i. Steps must be taken in order 0, 1, ... (MMP_ERR_INVALID_ARG otherwise). */
MMP_API enum mmp_status mmp_scheduler_step(mmp_scheduler *s, int i, const float *model_output, float *sample, int64_t n);

/* Standard normal numbers from a seed (splitmix64 + xoshiro256** + Box-Muller): the same seed
 * gives the same numbers on every machine. */
MMP_API void mmp_randn(uint64_t seed, float *out, int64_t n);

/* ======================= UNet ======================= */

typedef struct mmp_unet mmp_unet;
/* A diffusers UNet2DConditionModel folder (config.json + weights) or a .safetensors with a
 * config.json next to it. NULL + message (unsupported block type, missing tensor, ...). */
MMP_API mmp_unet *mmp_unet_load(const char *path, int n_threads);
/* The same from an opened model file, which the UNet borrows (it must outlive the UNet): the
 * model store opens each file once and shares the mapping between models and stages. */
struct mmp_modelfile;
MMP_API mmp_unet *mmp_unet_load_modelfile(const struct mmp_modelfile *mf, int n_threads);
MMP_API void mmp_unet_free(mmp_unet *u);
MMP_API int mmp_unet_in_channels(const mmp_unet *u);
MMP_API int mmp_unet_out_channels(const mmp_unet *u);
MMP_API int mmp_unet_cross_attention_dim(const mmp_unet *u);
/* Latent size must be a multiple of this (2^(number of down blocks - 1)). */
MMP_API int mmp_unet_size_multiple(const mmp_unet *u);
/* Noise prediction. sample [N, C_in, H, W], timesteps [N], context [N, T, D] with D the
 * cross_attention_dim (MMP_ERR_SHAPE naming both widths otherwise) -> out [N, C_out, H, W].
 * abort_cb (optional) is polled between ops. */
MMP_API enum mmp_status mmp_unet_predict(mmp_unet *u, int n, int h, int w, const float *sample, const float *timesteps,
                                         int t_ctx, int d_ctx, const float *context, float *out,
                                         mmp_abort_fn abort_cb, void *abort_user);

/* ======================= autoencoders ======================= */

enum mmp_vae_kind {
    MMP_VAE_KL    = 0,  /* diffusers AutoencoderKL (SD 1.x / 2.x VAE) */
    MMP_VAE_TINY  = 1,  /* TAESD family (AutoencoderTiny, taesd.py, TAESDXL, TAEF1/TAEF2) */
    MMP_VAE_KIND_COUNT = 2
};

typedef struct mmp_vae mmp_vae;
/* AutoencoderKL or AutoencoderTiny folder (config.json `_class_name` decides), or a TAESD
 * .safetensors file (decoder and/or encoder, either naming). NULL + message on error. */
MMP_API mmp_vae *mmp_vae_load(const char *path, int n_threads);
/* The same from an opened model file (borrowed: it must outlive the VAE). */
MMP_API mmp_vae *mmp_vae_load_modelfile(const struct mmp_modelfile *mf, int n_threads);
/* Two files (e.g. taef2_encoder.safetensors + taef2_decoder.safetensors); either may be NULL. */
MMP_API mmp_vae *mmp_vae_load_tiny2(const char *encoder_path, const char *decoder_path, int n_threads);
MMP_API void mmp_vae_free(mmp_vae *v);
MMP_API enum mmp_vae_kind mmp_vae_get_kind(const mmp_vae *v);
MMP_API int mmp_vae_latent_channels(const mmp_vae *v);
MMP_API int mmp_vae_scale(const mmp_vae *v);           /* pixels per latent (8) */
MMP_API bool mmp_vae_has_encoder(const mmp_vae *v);
MMP_API bool mmp_vae_has_decoder(const mmp_vae *v);
/* scaling_factor (0.18215 for SD1.x; 1 for TAESD) and shift_factor (0 unless the config says). */
MMP_API double mmp_vae_scaling_factor(const mmp_vae *v);
MMP_API double mmp_vae_shift_factor(const mmp_vae *v);

/* Raw decoder: latents [N, C, h, w] exactly as the decoder takes them (no scaling) ->
 * image [N, 3, 8h, 8w]: in [-1, 1] for AutoencoderKL and diffusers AutoencoderTiny folders,
 * in [0, 1] for taesd.py Sequential files (mmp_vae_output_range tells which). */
MMP_API enum mmp_status mmp_vae_decode(mmp_vae *v, int n, int h, int w, const float *latents, float *image,
                                       mmp_abort_fn abort_cb, void *abort_user);
/* Raw encoder: image [N, 3, H, W] in the decoder's output range -> latents [N, C, H/8, W/8]
 * (AutoencoderKL: the mean of the latent distribution, unscaled). */
MMP_API enum mmp_status mmp_vae_encode(mmp_vae *v, int n, int h, int w, const float *image, float *latents,
                                       mmp_abort_fn abort_cb, void *abort_user);
/* true: the decoder's output is in [-1, 1]; false: [0, 1]. */
MMP_API bool mmp_vae_output_signed(const mmp_vae *v);
/* Diffusion latents (what the UNet works on) -> image in [0, 1] clamped, [N, 3, 8h, 8w]:
 * applies 1/scaling_factor + shift_factor and maps the decoder's range to [0, 1]. */
MMP_API enum mmp_status mmp_vae_decode_to_image(mmp_vae *v, int n, int h, int w, const float *latents, float *image01,
                                                mmp_abort_fn abort_cb, void *abort_user);

/* ======================= text-to-image loop ======================= */

typedef struct mmp_txt2img_params {
    int width, height;        /* pixels; multiples of 8 * mmp_unet_size_multiple (512) */
    int steps;                /* 1..1000 (20) */
    float cfg_scale;          /* classifier-free guidance (7.5); <= 1 runs the cond batch only */
    mmp_progress_fn progress; /* called after each step with ("steps", i+1, steps) */
    mmp_abort_fn abort_cb;
    void *cb_user;
    /* new fields only at the end */
} mmp_txt2img_params;
MMP_API mmp_txt2img_params mmp_txt2img_params_default(void);

/* Run the sampling loop. cond / uncond [T, D] (uncond may be NULL when cfg_scale <= 1);
 * latents_init [C, h, w] standard-normal noise (scaled by init_noise_sigma inside) ->
 * latents_out [C, h, w] (the final latents, unscaled). If vae is not NULL also image01
 * [3, 8h, 8w] in [0, 1]. The scheduler is set to p.steps steps. */
MMP_API enum mmp_status mmp_txt2img_sample(mmp_unet *unet, mmp_scheduler *sched, mmp_vae *vae, const mmp_txt2img_params *p,
                                           int t_ctx, int d_ctx, const float *cond, const float *uncond,
                                           const float *latents_init, float *latents_out, float *image01);

/* ======================= images ======================= */
/* Conversions between the 8-bit RGB images of image.h (files are read and written there, with
 * stb_image) and the float planes the decoders use. */
struct mmp_image;
/* [3, H, W] floats in [0, 1] (x / 255, as torchvision's to_tensor); caller frees. */
MMP_API float *mmp_image_to_chw(const struct mmp_image *img);
/* [3, H, W] floats in [0, 1] (clamped, NaN -> 0, rounded to nearest) -> a new image. */
MMP_API struct mmp_image *mmp_image_from_chw(const float *chw01, int width, int height);

#ifdef __cplusplus
}
#endif
#endif
