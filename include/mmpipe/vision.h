/* mmpipe — the vision path: image preprocessing, the CLIP / SigLIP vision transformers, the
 * CLIP text transformer and the linear / MLP projectors.
 *
 * Shapes here are written outermost first (numpy order): pixels [3, H, W] planar f32,
 * hidden states [n_tokens, n_embd] row-major. */
#ifndef MMPIPE_VISION_H
#define MMPIPE_VISION_H

#include "mmpipe/base.h"
#include "mmpipe/image.h"
#include "mmpipe/json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------- preprocessing (encoders/preprocess.c) ---------------- */

/* Resampling filters, numbered as PIL.Image.Resampling (and HF "resample" values). */
enum mmp_resample {
    MMP_RESAMPLE_NEAREST  = 0,
    MMP_RESAMPLE_BILINEAR = 2,
    MMP_RESAMPLE_BICUBIC  = 3,
};

enum mmp_resize_mode {
    MMP_RESIZE_NONE          = 0,
    MMP_RESIZE_SHORTEST_EDGE = 1,  /* shortest edge -> size, the other edge scaled (floor) */
    MMP_RESIZE_EXACT         = 2,  /* to width x height (SigLIP: a square) */
    MMP_RESIZE_MODE_COUNT    = 3
};

/* What a reference image processor does, in order: [pad to square] -> resize -> [center
 * crop] -> rescale -> normalize -> planar [3, H, W] f32. */
typedef struct mmp_preproc {
    bool pad_square;                  /* LLaVA-1.5 expand2square, pad colour = int(mean * 255) */
    enum mmp_resize_mode resize;
    int32_t shortest_edge;            /* MMP_RESIZE_SHORTEST_EDGE */
    int32_t width, height;            /* MMP_RESIZE_EXACT */
    enum mmp_resample resample;
    bool center_crop;
    int32_t crop_width, crop_height;
    bool rescale;
    float rescale_factor;             /* 1/255 */
    bool normalize;
    float mean[3], std[3];
} mmp_preproc;

/* CLIPImageProcessor defaults for an encoder of `size` pixels (OpenAI CLIP mean/std, shortest
 * edge -> size, center crop size, bicubic). */
MMP_API mmp_preproc mmp_preproc_clip(int32_t size);
/* SiglipImageProcessor defaults: resize to size x size bicubic, mean = std = 0.5. */
MMP_API mmp_preproc mmp_preproc_siglip(int32_t size);
/* Read a HF preprocessor_config.json over `base` (keys: do_resize, size {shortest_edge |
 * height/width | int}, resample, do_center_crop, crop_size, do_rescale, rescale_factor,
 * do_normalize, image_mean, image_std, do_pad / image_aspect_ratio "pad"). Missing keys keep
 * base's values. MMP_ERR_FORMAT naming the key for bad values. */
MMP_API enum mmp_status mmp_preproc_from_json(const mmp_json *j, mmp_preproc *p);

/* Pillow-compatible resampling (ImagingResample: separable, horizontal then vertical, filter
 * support scaled by the downscale factor, 22-bit fixed point coefficients, rounding to u8
 * between the passes). New image, NULL + message on bad sizes. */
MMP_API mmp_image *mmp_image_resize(const mmp_image *img, int32_t width, int32_t height, enum mmp_resample filter);
/* LLaVA expand2square: the image centred on a max(w,h) square filled with rgb. */
MMP_API mmp_image *mmp_image_pad_square(const mmp_image *img, const uint8_t rgb[3]);
/* Crop [x0, x0+w) x [y0, y0+h) (must lie inside the image). */
MMP_API mmp_image *mmp_image_crop(const mmp_image *img, int32_t x0, int32_t y0, int32_t width, int32_t height);

/* Run the processor: returns a malloc'ed planar f32 [3, *out_h, *out_w] (caller frees), or
 * NULL + message. */
MMP_API float *mmp_preprocess(const mmp_image *img, const mmp_preproc *p, int32_t *out_h, int32_t *out_w);

/* ---------------- vision transformers (encoders/clip.c) ---------------- */

enum mmp_vit_arch {
    MMP_VIT_CLIP   = 0,  /* class token, pre_layrnorm, quick_gelu/gelu, post_layernorm on the pooled token */
    MMP_VIT_SIGLIP = 1,  /* no class token, patch bias, gelu-tanh, post_layernorm, attention-pool head */
    MMP_VIT_ARCH_COUNT = 2
};

typedef struct mmp_vit_hparams {
    enum mmp_vit_arch arch;
    int32_t image_size, patch_size, n_channels;
    int32_t n_embd, n_ff, n_head, n_layer;
    int32_t n_patches;        /* (image_size / patch_size)^2 */
    int32_t n_pos;            /* n_patches + 1 with a class token */
    float eps;
    int32_t act;              /* enum mmp_unary of the MLP */
    bool has_pre_ln, has_post_ln, has_head;
} mmp_vit_hparams;

typedef struct mmp_vit mmp_vit;

/* Load a vision tower from a HF folder or safetensors file: CLIPVisionModel,
 * SiglipVisionModel, CLIPModel/SiglipModel (their vision part), LlavaForConditionalGeneration
 * (tensor prefixes "vision_tower.vision_model.", "vision_tower.", "vision_model.", or none;
 * config from vision_config when present). Reads preprocessor_config.json next to it when
 * there is one. NULL + message naming the file, tensor or key. */
MMP_API mmp_vit *mmp_vit_load(const char *path);
/* The same from an opened model file, which the tower borrows (it must outlive the tower): the
 * model store opens each file once and several towers/stages share the mapping. */
struct mmp_modelfile;
MMP_API mmp_vit *mmp_vit_load_modelfile(const struct mmp_modelfile *mf);
MMP_API void mmp_vit_free(mmp_vit *v);
MMP_API const mmp_vit_hparams *mmp_vit_get_hparams(const mmp_vit *v);
/* The image processor that goes with the model (preprocessor_config.json, else the arch's
 * defaults at image_size). Borrowed; lives as long as v. */
MMP_API const mmp_preproc *mmp_vit_get_preproc(const mmp_vit *v);

typedef struct mmp_vit_params {
    int32_t layer;       /* which hidden state: HF hidden_states index, 0 = embeddings (after
                          * pre-LN for CLIP), i = output of layer i, negative counts from the
                          * end (-1 = last layer, -2 = LLaVA's feature layer). Default -1. */
    bool post_ln;        /* apply post_layernorm to every token of that state (SigLIP's
                          * last_hidden_state). Default false. */
    bool drop_cls;       /* drop the class token from the output (LLaVA "default"). Default false. */
    int32_t n_threads;   /* <= 0: 1 */
    mmp_abort_fn abort_cb;
    void *abort_user;
} mmp_vit_params;
MMP_API mmp_vit_params mmp_vit_params_default(void);

/* Rows of the hidden output for these params: n_patches (+1 with a kept class token). */
MMP_API int32_t mmp_vit_n_tokens(const mmp_vit *v, const mmp_vit_params *p);
/* pixels [3, image_size, image_size] -> hidden [n_tokens, n_embd] (caller memory), and
 * optionally pooled [n_embd] (CLIP: post_layernorm(last state)[class token]; SigLIP: the
 * attention-pool head of post_layernorm(last state); NULL to skip). */
MMP_API enum mmp_status mmp_vit_encode(mmp_vit *v, const float *pixels, int32_t height, int32_t width,
                                       const mmp_vit_params *p, float *hidden, float *pooled);

/* ---------------- CLIP text transformer (encoders/clip_text.c) ---------------- */

typedef struct mmp_clip_text_hparams {
    int32_t n_vocab, n_ctx, n_embd, n_ff, n_head, n_layer;
    float eps;
    int32_t act;              /* enum mmp_unary */
    int32_t eos_token_id;     /* pooled output: first position holding it; -1 or 2 (legacy) -> argmax id */
} mmp_clip_text_hparams;

typedef struct mmp_clip_text mmp_clip_text;
/* HF CLIPTextModel (folder, or a diffusers pipeline root -> text_encoder/), or the text part
 * of CLIPModel ("text_model." prefix, config text_config). NULL + message. */
MMP_API mmp_clip_text *mmp_clip_text_load(const char *path);
/* The same from an opened model file (borrowed: it must outlive the text model). */
MMP_API mmp_clip_text *mmp_clip_text_load_modelfile(const struct mmp_modelfile *mf);
MMP_API void mmp_clip_text_free(mmp_clip_text *t);
MMP_API const mmp_clip_text_hparams *mmp_clip_text_get_hparams(const mmp_clip_text *t);

typedef struct mmp_clip_text_params {
    int32_t layer;        /* hidden_states index as for the ViT; -1 = last layer */
    bool final_ln;        /* apply final_layer_norm to that state (true for last_hidden_state and
                           * for SD2-style clip-skip) */
    int32_t n_threads;
    mmp_abort_fn abort_cb;
    void *abort_user;
} mmp_clip_text_params;
MMP_API mmp_clip_text_params mmp_clip_text_params_default(void);  /* layer -1, final_ln true */

/* tokens [n] (n <= n_ctx) -> hidden [n, n_embd]; pooled [n_embd] (final-LN last state at the
 * EOS position; NULL to skip). */
MMP_API enum mmp_status mmp_clip_text_encode(mmp_clip_text *t, const int32_t *tokens, int32_t n,
                                             const mmp_clip_text_params *p, float *hidden, float *pooled);

/* ---------------- projectors (projectors/mlp.c) ---------------- */

enum mmp_projector_kind {
    MMP_PROJ_LINEAR = 0,   /* y = W x + b */
    MMP_PROJ_MLP    = 1,   /* y = W2 act(W1 x + b1) + b2 (LLaVA, act = GELU) */
    MMP_PROJ_KIND_COUNT = 2
};

typedef struct mmp_projector mmp_projector;
struct mmp_modelfile; /* modelfile.h */
/* From a LLaVA folder ("multi_modal_projector.linear_1/2", projector_hidden_act), an mmproj
 * GGUF ("mm.0" / "mm.2", "mm.0" alone = linear), or a file with "linear.weight" (+bias).
 * NULL + message. */
MMP_API mmp_projector *mmp_projector_load(const char *path);
/* The same from a model file the caller opened: the projector BORROWS mf (keep it open until
 * the projector is freed). A projector keeps a backend while running: one per thread. */
MMP_API mmp_projector *mmp_projector_load_modelfile(const struct mmp_modelfile *mf);
MMP_API void mmp_projector_free(mmp_projector *p);
MMP_API enum mmp_projector_kind mmp_projector_get_kind(const mmp_projector *p);
MMP_API int32_t mmp_projector_n_in(const mmp_projector *p);
MMP_API int32_t mmp_projector_n_out(const mmp_projector *p);
/* x [n, n_in] -> y [n, n_out]. */
MMP_API enum mmp_status mmp_projector_run(mmp_projector *p, const float *x, int32_t n, float *y, int32_t n_threads);

#ifdef __cplusplus
}
#endif
#endif
