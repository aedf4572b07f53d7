/* Stage kinds of the generation path:
 *   generator.unet         latents [C, H, W], timestep [1], conditioning [T, D] -> noise [C, H, W]
 *   generator.vae_decode   latents [C, h, w] (diffusion space) -> image [3, 8h, 8w] in [0, 1]
 *   generator.taesd_decode the same with a TAESD-family decoder
 *   generator.vae_encode   image [3, H, W] in [0, 1] -> latents [C, H/8, W/8] (mean * scaling_factor)
 * Option "raw" on the VAE kinds skips the scaling and range mapping: the decoder / encoder
 * exactly as the model computes it (latents unscaled, images in the model's own range).
 * Models come through the model store (mmp__unet_ref / mmp__vae_ref): a UNet or VAE that
 * several stages of one pipeline name is loaded once. */
#include "gen-impl.h"
#include "util.h"
#include "../core/stage-impl.h"
#include "../core/store-impl.h"

#include <stdio.h>
#include <stdlib.h>

#include <string.h>

/* ---- options ---- */

/* "raw" (the flag form, on), "raw=0|1" (mmp__opts_parse: "\," escapes a comma) for the VAE
 * kinds; raw == NULL (generator.unet): no options are known. "raw=" or "raw=auto" keeps the
 * default (off; a pipeline parameter left ""). */
static enum mmp_status parse_opts(const char *kind, const char *opt, bool *raw) {
    if (raw) *raw = false;
    mmp__opt items[8];
    char *store = NULL;
    int n = mmp__opts_parse(kind, opt, items, 8, &store);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        const char *k = items[i].key, *v = items[i].val;
        if (raw && !strcmp(k, "raw")) {
            if (items[i].bare || !strcmp(v, "1")) *raw = true;
            else if (!*v || !strcmp(v, "auto")) continue;
            else if (!strcmp(v, "0")) *raw = false;
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option raw=%s, expected 0 or 1 (known: raw, raw=0|1)", kind, v);
        } else {
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (%s)", kind, k, raw ? "known: raw, raw=0|1" : "none known");
        }
    }
    free(store);
    return st;
}

/* ---- generator.unet ---- */

static void unet_destroy(void *st) {
    mmp__model_put(st);
    free(st);
}

static void *unet_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "generator.unet: no model path (-m)");
    if (parse_opts("generator.unet", p->options, NULL) != MMP_OK) return NULL;
    mmp__model_ref *r = mmp__calloc(1, sizeof *r);
    if (!r) return NULL;
    if (mmp__unet_ref(p, p->model_path, r) != MMP_OK) { free(r); return NULL; }
    mmp_unet *u = r->model;
    in[0].dims[0] = mmp_unet_in_channels(u);
    in[2].dims[1] = mmp_unet_cross_attention_dim(u);
    out[0].dims[0] = mmp_unet_out_channels(u);
    return r;
}

static enum mmp_status unet_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    mmp_unet *u = ((mmp__model_ref *)state)->model;
    const mmp_array *x = inputs[0], *t = inputs[1], *c = inputs[2];
    if (!x || !t || !c) return mmp__error(MMP_ERR_INVALID_ARG, "generator.unet: latents, timestep and conditioning are required");
    if (c->dims[1] != mmp_unet_cross_attention_dim(u))
        return mmp__error(MMP_ERR_SHAPE, "generator.unet: conditioning is [%lld, %lld] but the UNet's cross_attention_dim is %d",
                          (long long)c->dims[0], (long long)c->dims[1], mmp_unet_cross_attention_dim(u));
    int64_t d[3] = { mmp_unet_out_channels(u), x->dims[1], x->dims[2] };
    if (x->dims[1] > 4096 || x->dims[2] > 4096 || c->dims[0] > 100000)
        return mmp__error(MMP_ERR_LIMIT, "generator.unet: latents %lldx%lld or context %lld too large", (long long)x->dims[1],
                          (long long)x->dims[2], (long long)c->dims[0]);
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 3, d);
    if (!o) return MMP_ERR_NOMEM;
    const float *tv = t->data;
    enum mmp_status st = mmp_unet_predict(u, 1, (int)x->dims[1], (int)x->dims[2], x->data, tv, (int)c->dims[0], (int)c->dims[1], c->data,
                                          o->data, p ? p->abort_cb : NULL, p ? p->cb_user : NULL);
    if (st != MMP_OK) { mmp_array_free(o); return st; }
    outputs[0] = o;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_generator_unet = {
    .name = "generator.unet",
    .summary = "diffusers UNet2DConditionModel (SD 1.x/2.x): noise prediction for one latent at one timestep",
    .n_inputs = 3,
    .n_outputs = 1,
    .inputs = {
        {"latents", {MMP_ROLE_LATENTS, MMP_TYPE_F32, 3, {MMP_DIM_ANY, MMP_DIM_ANY, MMP_DIM_ANY}}, false, "noisy latents x_t [C, H, W]"},
        {"timestep", {MMP_ROLE_TIMESTEP, MMP_TYPE_F32, 1, {1}}, false, "diffusion timestep t (0..999) [1]"},
        {"conditioning", {MMP_ROLE_CONDITIONING, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "cross-attention context [T, cross_attention_dim]"},
    },
    .outputs = {
        {"noise", {MMP_ROLE_LATENTS, MMP_TYPE_F32, 3, {MMP_DIM_ANY, MMP_DIM_ANY, MMP_DIM_ANY}}, false, "predicted noise (or v) [C, H, W]"},
    },
    .create = unet_create,
    .run = unet_run,
    .destroy = unet_destroy,
};

/* ---- VAE kinds ---- */

typedef struct vae_stage {
    mmp__model_ref ref;
    mmp_vae *v;
    bool raw;
} vae_stage;

static void vae_destroy(void *state) {
    vae_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

/* TAESD as two files: stored under the first path, keyed by the second */
typedef struct { const char *enc, *dec; int n_threads; } tiny2_ctx;
static void *tiny2_load_cb(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)mf;
    (void)path;
    const tiny2_ctx *c = ctx;
    return mmp_vae_load_tiny2(c->enc, c->dec, c->n_threads);
}
static void vae_free_cb(void *m) { mmp_vae_free(m); }

static vae_stage *vae_open(const char *kind, const mmp_stage_params *p, bool need_tiny, bool need_enc) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: no model path (-m)", kind);
    vae_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    if (parse_opts(kind, p->options, &s->raw) != MMP_OK) { free(s); return NULL; }
    /* TAESD as two taesd.py files: -m decoder, --aux encoder (or the other way for encode) */
    enum mmp_status st;
    if (p->aux_path && *p->aux_path) {
        tiny2_ctx c = { need_enc ? p->model_path : p->aux_path, need_enc ? p->aux_path : p->model_path, p->n_threads > 0 ? p->n_threads : 1 };
        /* one object per (decoder, encoder) pair, whichever stage asks: keyed under the decoder */
        char *ca = realpath(c.enc, NULL);
        size_t kl = strlen(ca ? ca : c.enc) + 64;
        char *key = mmp__malloc(kl);
        if (key) snprintf(key, kl, "threads=%d;encoder=%s", c.n_threads, ca ? ca : c.enc);
        free(ca);
        st = key ? mmp__model_get(p, "vae_tiny2", c.dec, key, MMP__MODEL_NO_FILE | MMP__MODEL_SCRATCH, tiny2_load_cb, vae_free_cb, &c,
                                  &s->ref)
                 : MMP_ERR_NOMEM;
        free(key);
    } else {
        st = mmp__vae_ref(p, p->model_path, &s->ref);
    }
    if (st != MMP_OK) { mmp__error_prefix("%s: ", kind); free(s); return NULL; }
    s->v = s->ref.model;
    if (need_tiny && mmp_vae_get_kind(s->v) != MMP_VAE_TINY) {
        mmp__error(MMP_ERR_UNSUPPORTED, "%s: %s is not a TAESD-family model (use generator.vae_decode)", kind, p->model_path);
        vae_destroy(s);
        return NULL;
    }
    if (need_enc ? !mmp_vae_has_encoder(s->v) : !mmp_vae_has_decoder(s->v)) {
        mmp__error(MMP_ERR_UNSUPPORTED, "%s: %s has no %s", kind, p->model_path, need_enc ? "encoder" : "decoder");
        vae_destroy(s);
        return NULL;
    }
    return s;
}

static void *vae_decode_create_common(const char *kind, const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out, bool tiny) {
    vae_stage *s = vae_open(kind, p, tiny, false);
    if (!s) return NULL;
    in[0].dims[0] = mmp_vae_latent_channels(s->v);
    out[0].dims[0] = 3;
    return s;
}
static void *vae_decode_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    return vae_decode_create_common("generator.vae_decode", p, in, out, false);
}
static void *taesd_decode_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    return vae_decode_create_common("generator.taesd_decode", p, in, out, true);
}

static enum mmp_status vae_decode_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    vae_stage *s = state;
    const mmp_array *z = inputs[0];
    if (!z) return mmp__error(MMP_ERR_INVALID_ARG, "vae decode: latents are required");
    if (z->dims[1] > 1024 || z->dims[2] > 1024)
        return mmp__error(MMP_ERR_LIMIT, "vae decode: latents %lldx%lld too large", (long long)z->dims[1], (long long)z->dims[2]);
    int sc = mmp_vae_scale(s->v);
    int64_t d[3] = { 3, z->dims[1] * sc, z->dims[2] * sc };
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 3, d);
    if (!o) return MMP_ERR_NOMEM;
    int h = (int)z->dims[1], w = (int)z->dims[2];
    mmp_abort_fn ab = p ? p->abort_cb : NULL;
    void *u = p ? p->cb_user : NULL;
    enum mmp_status st = s->raw ? mmp_vae_decode(s->v, 1, h, w, z->data, o->data, ab, u) : mmp_vae_decode_to_image(s->v, 1, h, w, z->data, o->data, ab, u);
    if (st != MMP_OK) { mmp_array_free(o); return st; }
    outputs[0] = o;
    return MMP_OK;
}

static void *vae_encode_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    vae_stage *s = vae_open("generator.vae_encode", p, false, true);
    if (!s) return NULL;
    in[0].dims[0] = 3;
    out[0].dims[0] = mmp_vae_latent_channels(s->v);
    return s;
}

static enum mmp_status vae_encode_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    vae_stage *s = state;
    const mmp_array *x = inputs[0];
    if (!x) return mmp__error(MMP_ERR_INVALID_ARG, "generator.vae_encode: image is required");
    int sc = mmp_vae_scale(s->v);
    if (x->dims[1] % sc || x->dims[2] % sc || x->dims[1] > 8192 || x->dims[2] > 8192)
        return mmp__error(MMP_ERR_SHAPE, "generator.vae_encode: image %lldx%lld (HxW) must be a multiple of %d (at most 8192)",
                          (long long)x->dims[1], (long long)x->dims[2], sc);
    int64_t d[3] = { mmp_vae_latent_channels(s->v), x->dims[1] / sc, x->dims[2] / sc };
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 3, d);
    if (!o) return MMP_ERR_NOMEM;
    size_t n = (size_t)mmp_array_nelements(x);
    const float *in = x->data;
    float *tmp = NULL;
    if (!s->raw && mmp_vae_output_signed(s->v)) {
        /* [0, 1] -> the model's [-1, 1] */
        tmp = mmp__malloc(n * sizeof(float));
        if (!tmp) { mmp_array_free(o); return MMP_ERR_NOMEM; }
        for (size_t i = 0; i < n; i++) tmp[i] = in[i] * 2.0f - 1.0f;
        in = tmp;
    }
    enum mmp_status st = mmp_vae_encode(s->v, 1, (int)x->dims[1], (int)x->dims[2], in, o->data, p ? p->abort_cb : NULL, p ? p->cb_user : NULL);
    free(tmp);
    if (st != MMP_OK) { mmp_array_free(o); return st; }
    if (!s->raw) {
        float *z = o->data;
        float sf = (float)mmp_vae_scaling_factor(s->v), sh = (float)mmp_vae_shift_factor(s->v);
        for (int64_t i = 0; i < mmp_array_nelements(o); i++) z[i] = (z[i] - sh) * sf;
    }
    outputs[0] = o;
    return MMP_OK;
}

#define LAT3 {MMP_ROLE_LATENTS, MMP_TYPE_F32, 3, {MMP_DIM_ANY, MMP_DIM_ANY, MMP_DIM_ANY}}
#define IMG3 {MMP_ROLE_IMAGE, MMP_TYPE_F32, 3, {3, MMP_DIM_ANY, MMP_DIM_ANY}}

const mmp_stage_kind mmp__stage_generator_vae_decode = {
    .name = "generator.vae_decode",
    .summary = "AutoencoderKL (or TAESD) decoder: diffusion latents -> image in [0, 1] (option raw: decoder as is)",
    .n_inputs = 1, .n_outputs = 1,
    .inputs = { {"latents", LAT3, false, "latents [C, h, w] as the UNet makes them (scaled by scaling_factor)"} },
    .outputs = { {"image", IMG3, false, "RGB image [3, 8h, 8w] in [0, 1]"} },
    .create = vae_decode_create, .run = vae_decode_run, .destroy = vae_destroy,
};

const mmp_stage_kind mmp__stage_generator_taesd_decode = {
    .name = "generator.taesd_decode",
    .summary = "TAESD-family tiny decoder (TAESD, TAESDXL, TAEF1, TAEF2; diffusers or taesd.py names): latents -> image in [0, 1]",
    .n_inputs = 1, .n_outputs = 1,
    .inputs = { {"latents", LAT3, false, "latents [C, h, w]"} },
    .outputs = { {"image", IMG3, false, "RGB image [3, 8h, 8w] in [0, 1]"} },
    .create = taesd_decode_create, .run = vae_decode_run, .destroy = vae_destroy,
};

const mmp_stage_kind mmp__stage_generator_vae_encode = {
    .name = "generator.vae_encode",
    .summary = "AutoencoderKL / TAESD encoder: image in [0, 1] -> diffusion latents (KL: mean * scaling_factor)",
    .n_inputs = 1, .n_outputs = 1,
    .inputs = { {"image", IMG3, false, "RGB image [3, H, W] in [0, 1], H and W multiples of 8"} },
    .outputs = { {"latents", LAT3, false, "latents [C, H/8, W/8]"} },
    .create = vae_encode_create, .run = vae_encode_run, .destroy = vae_destroy,
};
