/* The `preprocess.image` stage kind: a decoded image -> the pixels a vision tower wants.
 *
 *   image [3, H, W] f32 in [0, 1]   (what `--in image=dog.png` gives: u8 / 255 per channel)
 *     │ back to 8-bit RGB: u8 = round(255 * v)  (exact for an image read from a file)
 *     │ the model's image processor (mmp_preprocess with mmp_vit_get_preproc): [LLaVA
 *     │ expand2square] -> resize -> [center crop] -> rescale -> normalize
 *     ▼
 *   pixels [3, S, S] f32             (HF pixel_values[0], what encoder.clip / encoder.siglip take)
 *
 * Why through u8: the reference processors (CLIPImageProcessor, SiglipImageProcessor with PIL
 * resampling) work on 8-bit images and round to u8 between the resize passes, so the same
 * numbers as `mmpipe chat --image` (mtmd: mmp_image -> mmp_preprocess) come only from the same
 * 8-bit image. For input read from an image file, v = u / 255 and round(255 * v) = u exactly;
 * an image made elsewhere (a VAE output) is quantised to 8 bits, as saving it as a PNG would.
 * Values outside [0, 1] (beyond a 1e-3 slack for rounding) or NaN are refused.
 *
 * model: the vision model (HF LLaVA / CLIP / SigLIP folder or safetensors, llama.cpp mmproj
 * GGUF). The ViT is fetched with mmp__vit_ref so that encoder.clip / encoder.siglip on the same
 * file in the same pipeline share it; only its image processor is used here.
 * options: pad=auto|0|1  LLaVA pad-to-square (expand2square with the mean colour). auto (the
 *          default) does what mtmd does: pad when the model's processor config asks for it
 *          (preprocessor_config.json do_pad, or image_aspect_ratio "pad" in the config).
 * Errors of create() get the "preprocess.image: " prefix from mmp_stage_new; run() names the kind. */
#include "mmpipe/stage.h"
#include "mmpipe/vision.h"
#include "../core/stage-impl.h"
#include "../core/store-impl.h"
#include "../core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct pre_stage {
    mmp__model_ref vit;     /* the shared ViT (only its processor config is read) */
    mmp_preproc pre;        /* the model's processor, pad_square per the pad option */
} pre_stage;

static void pre_destroy(void *state) {
    pre_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->vit);
    free(s);
}

/* "pad=auto|0|1" (the only option; mmp__opts_parse: "\," escapes a comma). pad: -1 auto, 0, 1.
 * An empty value is auto, the default (a pipeline parameter left ""). */
static enum mmp_status parse_pre_opts(const char *opt, int *pad) {
    const char *K = "preprocess.image";
    *pad = -1;
    mmp__opt items[8];
    char *store = NULL;
    int n = mmp__opts_parse(K, opt, items, 8, &store);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        const char *k = items[i].key, *v = items[i].val;
        if (!strcmp(k, "pad")) {
            if (!*v || !strcmp(v, "auto")) *pad = -1;
            else if (!strcmp(v, "0")) *pad = 0;
            else if (!strcmp(v, "1")) *pad = 1;
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: bad option pad=%s, expected auto, 0 or 1 (known: pad=auto|0|1)", K, v);
        } else {
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (known: pad=auto|0|1)", K, k);
        }
    }
    free(store);
    return st;
}

static void *pre_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    (void)in;
    if (!p || !p->model_path)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "needs model= the vision model whose image processor it applies");
    int pad;
    if (parse_pre_opts(p->options, &pad) != MMP_OK) return NULL;
    pre_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    if (mmp__vit_ref(p, p->model_path, &s->vit) != MMP_OK) {
        pre_destroy(s);
        return NULL;
    }
    s->pre = *mmp_vit_get_preproc(s->vit.model);
    if (pad >= 0) s->pre.pad_square = pad != 0;
    /* the output size when the processor fixes it (a crop, or an exact resize) */
    if (s->pre.center_crop) {
        out[0].dims[1] = s->pre.crop_height;
        out[0].dims[2] = s->pre.crop_width;
    } else if (s->pre.resize == MMP_RESIZE_EXACT) {
        out[0].dims[1] = s->pre.height;
        out[0].dims[2] = s->pre.width;
    }
    return s;
}

static enum mmp_status pre_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    (void)p;
    const pre_stage *s = state;
    const mmp_array *a = inputs[0];
    /* mmp_stage_run checked role-free shape [3, *, *] f32; the sizes must make an mmp_image */
    if (a->dims[1] > INT32_MAX || a->dims[2] > INT32_MAX || a->dims[1] * a->dims[2] > MMP_IMAGE_MAX_PIXELS_DEFAULT)
        return mmp__error(MMP_ERR_LIMIT, "preprocess.image: a %lldx%lld image is larger than %lld pixels",
                          (long long)a->dims[2], (long long)a->dims[1], (long long)MMP_IMAGE_MAX_PIXELS_DEFAULT);
    const int32_t h = (int32_t)a->dims[1], w = (int32_t)a->dims[2];
    const size_t hw = (size_t)h * (size_t)w;
    mmp_image *img = mmp_image_new(w, h);
    if (!img) return MMP_ERR_NOMEM;
    const float *x = a->data;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < hw; i++) {
            float v = x[(size_t)c * hw + i];
            if (!(v >= -1e-3f && v <= 1.0f + 1e-3f)) {
                mmp_image_free(img);
                return mmp__error(MMP_ERR_INVALID_ARG, "preprocess.image: image value %g at channel %d, row %lld, column %lld "
                                  "is outside [0, 1] (the image input is RGB in [0, 1])",
                                  (double)v, c, (long long)(i / (size_t)w), (long long)(i % (size_t)w));
            }
            long q = lrintf(v * 255.0f);
            img->data[i * 3 + (size_t)c] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
        }
    int32_t oh = 0, ow = 0;
    float *px = mmp_preprocess(img, &s->pre, &oh, &ow);
    mmp_image_free(img);
    if (!px) { mmp__error_prefix("preprocess.image: "); return MMP_ERR_INVALID_ARG; }
    int64_t dims[3] = { 3, oh, ow };
    mmp_array *o = mmp_array_wrap(MMP_TYPE_F32, 3, dims, px);
    if (!o) { free(px); return MMP_ERR_NOMEM; }
    o->owns_data = true;  /* px is malloc'ed: mmp_array_free frees it */
    outputs[0] = o;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_preprocess_image = {
    .name = "preprocess.image",
    .summary = "image processor of a vision model: image [3, H, W] in [0, 1] -> pixels [3, S, S] "
               "(options pad=auto|0|1: LLaVA pad-to-square; auto = as the model's config says)",
    .n_inputs = 1,
    .n_outputs = 1,
    .inputs = {
        { "image", { MMP_ROLE_IMAGE, MMP_TYPE_F32, 3, { 3, MMP_DIM_ANY, MMP_DIM_ANY } }, false,
          "RGB image [3, H, W] in [0, 1] (an image file read by the CLI: u8 / 255)" },
    },
    .outputs = {
        { "pixels", { MMP_ROLE_PIXELS, MMP_TYPE_F32, 3, { 3, MMP_DIM_ANY, MMP_DIM_ANY } }, false,
          "preprocessed image [3, S, S] for encoder.clip / encoder.siglip (HF pixel_values[0])" },
    },
    .create = pre_create,
    .run = pre_run,
    .destroy = pre_destroy,
};
