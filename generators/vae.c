/* Autoencoders: diffusers AutoencoderKL (decoder and encoder) and the TAESD family (taesd.c)
 * behind one object.
 *
 * AutoencoderKL decoder (activations [W, H, C, N]):
 *   z -> post_quant_conv (1x1) -> conv_in -> mid (resnet, attention, resnet) ->
 *   up blocks (resnets, nearest x2 + conv) -> GroupNorm -> SiLU -> conv_out      ([-1, 1]-ish)
 * Encoder: conv_in -> down blocks (resnets, pad right/bottom by 1 + conv stride 2) -> mid ->
 *   GroupNorm -> SiLU -> conv_out (2 L channels) -> quant_conv -> the first L channels = mean.
 * Resnets have no time embedding and eps 1e-6; the mid attention has one head over C. */
#include "gen-impl.h"
#include "util.h"

#include <math.h>
#include <string.h>

struct mmp_vae {
    enum mmp_vae_kind kind;
    mmp__wstore ws;          /* KL: the model; tiny: the decoder */
    mmp__wstore ws_enc;      /* tiny: the encoder */
    bool has_dec, has_enc;
    mmp_backend *be;
    mmp__gcache gdec, genc;
    int latent_ch, groups, scale, max_ch;
    double scaling, shift;
    bool signed_out;         /* decoder output in [-1, 1] */
};

/* ---------------- AutoencoderKL ---------------- */

static mmp_tensor *kl_resnet(mmp_vae *v, mmp_graph *g, mmp_tensor *x, const char *p) {
    char n[160];
    snprintf(n, sizeof n, "%s.norm1", p);
    mmp_tensor *h = mmp_silu(g, mmp__gn(&v->ws, g, x, n, v->groups, 1e-6f));
    snprintf(n, sizeof n, "%s.conv1", p);
    h = mmp__conv(&v->ws, g, h, n, true, 1, 1);
    snprintf(n, sizeof n, "%s.norm2", p);
    h = mmp_silu(g, mmp__gn(&v->ws, g, h, n, v->groups, 1e-6f));
    snprintf(n, sizeof n, "%s.conv2", p);
    h = mmp__conv(&v->ws, g, h, n, true, 1, 1);
    if (mmp__wstore_has(&v->ws, "%s.conv_shortcut.weight", p)) {
        snprintf(n, sizeof n, "%s.conv_shortcut", p);
        x = mmp__conv(&v->ws, g, x, n, true, 1, 0);
    }
    return mmp_add(g, x, h);
}

/* single-head spatial self-attention with a residual */
static mmp_tensor *kl_attention(mmp_vae *v, mmp_graph *g, mmp_tensor *x, const char *p) {
    if (!x) return NULL;
    char n[160];
    int64_t W = x->ne[0], H = x->ne[1], C = x->ne[2], N = x->ne[3];
    snprintf(n, sizeof n, "%s.group_norm", p);
    mmp_tensor *h = mmp__gn(&v->ws, g, x, n, v->groups, 1e-6f);
    mmp_tensor *t = mmp_cont(g, mmp_transpose(g, mmp_reshape_3d(g, h, W * H, C, N)));  /* [C, WH, N] */
    snprintf(n, sizeof n, "%s.to_q", p);
    mmp_tensor *q = mmp__linear(&v->ws, g, t, n, true);
    snprintf(n, sizeof n, "%s.to_k", p);
    mmp_tensor *k = mmp__linear(&v->ws, g, t, n, true);
    snprintf(n, sizeof n, "%s.to_v", p);
    mmp_tensor *vv = mmp__linear(&v->ws, g, t, n, true);
    if (!q || !k || !vv) return NULL;
    /* one head: [C, T, N] -> [C, T, 1, N] */
    q = mmp_reshape_4d(g, q, C, W * H, 1, N);
    k = mmp_reshape_4d(g, k, C, W * H, 1, N);
    vv = mmp_reshape_4d(g, vv, C, W * H, 1, N);
    mmp_tensor *o = mmp_reshape_3d(g, mmp_attn(g, q, k, vv, NULL, 1.0f / sqrtf((float)C), false, 0), C, W * H, N);
    snprintf(n, sizeof n, "%s.to_out.0", p);
    o = mmp__linear(&v->ws, g, o, n, true);
    if (!o) return NULL;
    o = mmp_reshape_4d(g, mmp_cont(g, mmp_transpose(g, o)), W, H, C, N);
    return mmp_add(g, o, x);
}

static mmp_tensor *kl_mid(mmp_vae *v, mmp_graph *g, mmp_tensor *x, const char *part) {
    char p[96];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", part);
    x = kl_resnet(v, g, x, p);
    if (mmp__wstore_has(&v->ws, "%s.mid_block.attentions.0.to_q.weight", part)) {
        snprintf(p, sizeof p, "%s.mid_block.attentions.0", part);
        x = kl_attention(v, g, x, p);
    }
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", part);
    return kl_resnet(v, g, x, p);
}

static mmp_tensor *kl_decoder(mmp_vae *v, mmp_graph *g, mmp_tensor *z) {
    char p[128];
    if (mmp__wstore_has(&v->ws, "post_quant_conv.weight")) z = mmp__conv(&v->ws, g, z, "post_quant_conv", true, 1, 0);
    mmp_tensor *x = mmp__conv(&v->ws, g, z, "decoder.conv_in", true, 1, 1);
    x = kl_mid(v, g, x, "decoder");
    for (int i = 0; mmp__wstore_has(&v->ws, "decoder.up_blocks.%d.resnets.0.conv1.weight", i); i++) {
        for (int j = 0; mmp__wstore_has(&v->ws, "decoder.up_blocks.%d.resnets.%d.conv1.weight", i, j); j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            x = kl_resnet(v, g, x, p);
        }
        if (mmp__wstore_has(&v->ws, "decoder.up_blocks.%d.upsamplers.0.conv.weight", i)) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            x = mmp__conv(&v->ws, g, mmp_upsample_nearest(g, x, 2), p, true, 1, 1);
        }
    }
    x = mmp_silu(g, mmp__gn(&v->ws, g, x, "decoder.conv_norm_out", v->groups, 1e-6f));
    return mmp__conv(&v->ws, g, x, "decoder.conv_out", true, 1, 1);
}

/* zero leaf [ne0, ne1, ne2, ne3] over the cache's zero buffer */
static mmp_tensor *zeros(mmp__gcache *gc, size_t cap, mmp_graph *g, int64_t a, int64_t b, int64_t c, int64_t d) {
    if ((size_t)(a * b * c * d) > cap) return mmp__error_null(MMP_ERR_INTERNAL, "vae: zero padding buffer too small");
    int64_t ne[4] = { a, b, c, d };
    return mmp_new_tensor_ext(g, MMP_TYPE_F32, 4, ne, gc->zeros);
}

static mmp_tensor *kl_encoder(mmp_vae *v, mmp_graph *g, mmp_tensor *img, size_t zcap) {
    char p[128];
    mmp_tensor *x = mmp__conv(&v->ws, g, img, "encoder.conv_in", true, 1, 1);
    for (int i = 0; mmp__wstore_has(&v->ws, "encoder.down_blocks.%d.resnets.0.conv1.weight", i); i++) {
        for (int j = 0; mmp__wstore_has(&v->ws, "encoder.down_blocks.%d.resnets.%d.conv1.weight", i, j); j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            x = kl_resnet(v, g, x, p);
        }
        if (x && mmp__wstore_has(&v->ws, "encoder.down_blocks.%d.downsamplers.0.conv.weight", i)) {
            /* diffusers Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then a stride-2 conv */
            int64_t W = x->ne[0], H = x->ne[1], C = x->ne[2], N = x->ne[3];
            x = mmp_concat(g, x, zeros(&v->genc, zcap, g, 1, H, C, N), 0);
            x = mmp_concat(g, x, zeros(&v->genc, zcap, g, W + 1, 1, C, N), 1);
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            x = mmp__conv(&v->ws, g, x, p, true, 2, 0);
        }
    }
    x = kl_mid(v, g, x, "encoder");
    x = mmp_silu(g, mmp__gn(&v->ws, g, x, "encoder.conv_norm_out", v->groups, 1e-6f));
    x = mmp__conv(&v->ws, g, x, "encoder.conv_out", true, 1, 1);
    if (mmp__wstore_has(&v->ws, "quant_conv.weight")) x = mmp__conv(&v->ws, g, x, "quant_conv", true, 1, 0);
    if (!x) return NULL;
    if (x->ne[2] != 2 * v->latent_ch)
        return mmp__error_null(MMP_ERR_SHAPE, "vae %s: encoder gives %lld channels, expected 2 x %d (mean, logvar)",
                               mmp_modelfile_path(v->ws.mf), (long long)x->ne[2], v->latent_ch);
    /* the mean: the first latent_ch channels */
    mmp_tensor *m = mmp_view_4d(g, x, x->ne[0], x->ne[1], v->latent_ch, x->ne[3], x->nb[1], x->nb[2], x->nb[3], 0);
    return mmp_cont(g, m);
}

static enum mmp_status kl_config(mmp_vae *v, const mmp_json *c) {
    const char *file = mmp_json_name(c);
    int64_t iv;
    enum mmp_status st;
    v->groups = 32;
    if (mmp_json_has(c, "norm_num_groups")) {
        if ((st = mmp_json_get_int(c, "norm_num_groups", &iv)) != MMP_OK) return st;
        if (iv < 1 || iv > 1024) return mmp__error(MMP_ERR_FORMAT, "%s: norm_num_groups %lld out of range", file, (long long)iv);
        v->groups = (int)iv;
    }
    v->scaling = 0.18215;
    if (mmp_json_has(c, "scaling_factor") && (st = mmp_json_get_float(c, "scaling_factor", &v->scaling)) != MMP_OK) return st;
    if (!(v->scaling > 0)) return mmp__error(MMP_ERR_FORMAT, "%s: scaling_factor %g must be > 0", file, v->scaling);
    v->shift = 0;
    if (mmp_json_has(c, "shift_factor") && (st = mmp_json_get_float(c, "shift_factor", &v->shift)) != MMP_OK) return st;
    if (mmp_json_has(c, "latents_mean"))
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: latents_mean / latents_std normalisation is not supported", file);
    return MMP_OK;
}

/* ---------------- loading ---------------- */

static mmp_vae *vae_new(int n_threads) {
    mmp_vae *v = mmp__calloc(1, sizeof *v);
    if (!v) return NULL;
    v->scale = 8;
    v->be = mmp_backend_cpu_new(n_threads > 0 ? n_threads : 1);
    if (!v->be) { free(v); return NULL; }
    return v;
}

static enum mmp_status tiny_check(mmp_vae *v) {
    int ld = v->has_dec ? mmp__taesd_latent_channels(&v->ws, true) : 0;
    int le = v->has_enc ? mmp__taesd_latent_channels(&v->ws_enc, false) : 0;
    if (v->has_dec && v->has_enc && ld != le)
        return mmp__error(MMP_ERR_SHAPE, "taesd: decoder takes %d latent channels but the encoder makes %d", ld, le);
    v->latent_ch = v->has_dec ? ld : le;
    if (v->latent_ch <= 0) return mmp__error(MMP_ERR_FORMAT, "taesd: cannot find the latent channel count");
    int ups = v->has_dec ? mmp__taesd_n_upsamples(&v->ws, true) : mmp__taesd_n_upsamples(&v->ws_enc, false);
    if (ups < 0 || ups > 6) return mmp__error(MMP_ERR_FORMAT, "taesd: %d upsampling stages", ups);
    v->scale = 1 << ups;
    v->max_ch = 0;
    return MMP_OK;
}

static mmp_vae *vae_load(mmp_vae *v, const char *path);

mmp_vae *mmp_vae_load(const char *path, int n_threads) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_vae_load: NULL path");
    mmp_vae *v = vae_new(n_threads);
    if (!v) return NULL;
    if (mmp__wstore_open(&v->ws, path) != MMP_OK) { mmp__error_prefix("vae: "); mmp_vae_free(v); return NULL; }
    return vae_load(v, path);
}

mmp_vae *mmp_vae_load_modelfile(const mmp_modelfile *mf, int n_threads) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_vae_load_modelfile: NULL model file");
    mmp_vae *v = vae_new(n_threads);
    if (!v) return NULL;
    mmp__wstore_borrow(&v->ws, mf);
    return vae_load(v, mmp_modelfile_path(mf));
}

/* v->ws is open (owned or borrowed); frees v on failure */
static mmp_vae *vae_load(mmp_vae *v, const char *path) {
    const mmp_json *c = mmp_modelfile_config(v->ws.mf);
    const char *cls = NULL;
    if (c && mmp_json_get_string(c, "_class_name", &cls) != MMP_OK) cls = NULL;
    mmp_clear_error();
    if (cls && strcmp(cls, "AutoencoderKL") == 0) {
        v->kind = MMP_VAE_KL;
        v->signed_out = true;
        if (kl_config(v, c) != MMP_OK) goto fail;
        const mmp_tensor_info *ci = mmp__wstore_info(&v->ws, "decoder.conv_in.weight");
        const mmp_tensor_info *ei = mmp__wstore_info(&v->ws, "encoder.conv_in.weight");
        v->has_dec = ci != NULL;
        v->has_enc = ei != NULL;
        if (!ci && !ei) { mmp__error(MMP_ERR_FORMAT, "vae %s: neither decoder.conv_in nor encoder.conv_in weights", path); goto fail; }
        v->latent_ch = ci ? (int)ci->ne[2] : 0;
        int64_t lc;
        if (c && mmp_json_has(c, "latent_channels") && mmp_json_get_int(c, "latent_channels", &lc) == MMP_OK) {
            if (ci && lc != v->latent_ch) {
                mmp__error(MMP_ERR_FORMAT, "vae %s: latent_channels %lld but decoder.conv_in takes %d", path, (long long)lc, v->latent_ch);
                goto fail;
            }
            v->latent_ch = (int)lc;
        }
        if (v->latent_ch < 1 || v->latent_ch > 256) { mmp__error(MMP_ERR_FORMAT, "vae %s: latent channels %d", path, v->latent_ch); goto fail; }
        int ups = 0;
        for (int i = 0; mmp__wstore_has(&v->ws, "decoder.up_blocks.%d.resnets.0.conv1.weight", i); i++)
            if (mmp__wstore_has(&v->ws, "decoder.up_blocks.%d.upsamplers.0.conv.weight", i)) ups++;
        int downs = 0;
        for (int i = 0; mmp__wstore_has(&v->ws, "encoder.down_blocks.%d.resnets.0.conv1.weight", i); i++) {
            if (mmp__wstore_has(&v->ws, "encoder.down_blocks.%d.downsamplers.0.conv.weight", i)) downs++;
            const mmp_tensor_info *r = mmp__wstore_info(&v->ws, "encoder.down_blocks.%d.resnets.0.conv1.weight", i);
            if (r && r->ne[3] > v->max_ch) v->max_ch = (int)r->ne[3];
        }
        if (v->has_dec && v->has_enc && ups != downs) { mmp__error(MMP_ERR_FORMAT, "vae %s: %d upsamplers but %d downsamplers", path, ups, downs); goto fail; }
        v->scale = 1 << (v->has_dec ? ups : downs);
        return v;
    }
    if (cls && strcmp(cls, "AutoencoderTiny") != 0) {
        mmp__error(MMP_ERR_UNSUPPORTED, "vae %s: _class_name \"%s\" (supported: AutoencoderKL, AutoencoderTiny)", path, cls);
        goto fail;
    }
    /* TAESD: diffusers names (decoder.layers.N / encoder.layers.N) or a taesd.py Sequential file */
    v->kind = MMP_VAE_TINY;
    v->scaling = 1.0;
    v->shift = 0.0;
    if (c) {
        if (mmp_json_has(c, "scaling_factor") && mmp_json_get_float(c, "scaling_factor", &v->scaling) != MMP_OK) goto fail;
        if (mmp_json_has(c, "shift_factor") && mmp_json_get_float(c, "shift_factor", &v->shift) != MMP_OK) goto fail;
    }
    bool diffusers = mmp__wstore_has(&v->ws, "decoder.layers.0.weight") || mmp__wstore_has(&v->ws, "encoder.layers.0.weight");
    if (diffusers) {
        v->signed_out = true;
        v->has_dec = mmp__wstore_has(&v->ws, "decoder.layers.0.weight");
        v->has_enc = mmp__wstore_has(&v->ws, "encoder.layers.0.weight");
        if (v->has_enc) {
            /* a second weight table over the same file (other prefix) */
            if (v->ws.borrowed) mmp__wstore_borrow(&v->ws_enc, v->ws.mf);
            else if (mmp__wstore_open(&v->ws_enc, path) != MMP_OK) goto fail;
        }
        snprintf(v->ws.prefix, sizeof v->ws.prefix, "decoder.layers.");
        snprintf(v->ws_enc.prefix, sizeof v->ws_enc.prefix, "encoder.layers.");
    } else if (mmp__wstore_has(&v->ws, "0.weight")) {
        /* taesd.py encoder file (its index 0 is a conv; a decoder's index 0 is the Clamp) */
        v->signed_out = false;
        v->has_enc = true;
        v->ws_enc = v->ws;
        memset(&v->ws, 0, sizeof v->ws);
    } else if (mmp__wstore_has(&v->ws, "1.weight")) {
        v->signed_out = false;
        v->has_dec = true;
    } else {
        mmp__error(MMP_ERR_FORMAT, "vae %s: not a TAESD file (no decoder.layers.0.weight, 0.weight or 1.weight) and no config.json "
                   "naming an AutoencoderKL", path);
        goto fail;
    }
    if (tiny_check(v) != MMP_OK) goto fail;
    return v;
fail:
    mmp_vae_free(v);
    return NULL;
}

mmp_vae *mmp_vae_load_tiny2(const char *encoder_path, const char *decoder_path, int n_threads) {
    if (!encoder_path && !decoder_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_vae_load_tiny2: no file given");
    mmp_vae *v = vae_new(n_threads);
    if (!v) return NULL;
    v->kind = MMP_VAE_TINY;
    v->scaling = 1.0;
    v->signed_out = false;
    if (decoder_path) {
        if (mmp__wstore_open(&v->ws, decoder_path) != MMP_OK) goto fail;
        if (mmp__wstore_has(&v->ws, "decoder.layers.0.weight")) {
            snprintf(v->ws.prefix, sizeof v->ws.prefix, "decoder.layers.");
            v->signed_out = true;
        }
        v->has_dec = true;
    }
    if (encoder_path) {
        if (mmp__wstore_open(&v->ws_enc, encoder_path) != MMP_OK) goto fail;
        if (mmp__wstore_has(&v->ws_enc, "encoder.layers.0.weight")) snprintf(v->ws_enc.prefix, sizeof v->ws_enc.prefix, "encoder.layers.");
        v->has_enc = true;
        if (decoder_path && (strcmp(v->ws_enc.prefix, "") == 0) == v->signed_out) {
            mmp__error(MMP_ERR_UNSUPPORTED, "taesd: %s and %s use different namings (diffusers vs taesd.py)", encoder_path, decoder_path);
            goto fail;
        }
        if (!decoder_path) v->signed_out = strcmp(v->ws_enc.prefix, "") != 0;
    }
    if (tiny_check(v) != MMP_OK) goto fail;
    return v;
fail:
    mmp_vae_free(v);
    return NULL;
}

void mmp_vae_free(mmp_vae *v) {
    if (!v) return;
    mmp__gcache_free(&v->gdec);
    mmp__gcache_free(&v->genc);
    mmp_backend_free(v->be);
    mmp__wstore_close(&v->ws);
    mmp__wstore_close(&v->ws_enc);
    free(v);
}

enum mmp_vae_kind mmp_vae_get_kind(const mmp_vae *v) { return v ? v->kind : MMP_VAE_KIND_COUNT; }
int mmp_vae_latent_channels(const mmp_vae *v) { return v ? v->latent_ch : 0; }
int mmp_vae_scale(const mmp_vae *v) { return v ? v->scale : 0; }
bool mmp_vae_has_encoder(const mmp_vae *v) { return v && v->has_enc; }
bool mmp_vae_has_decoder(const mmp_vae *v) { return v && v->has_dec; }
double mmp_vae_scaling_factor(const mmp_vae *v) { return v ? v->scaling : 0; }
double mmp_vae_shift_factor(const mmp_vae *v) { return v ? v->shift : 0; }
bool mmp_vae_output_signed(const mmp_vae *v) { return v && v->signed_out; }

/* ---------------- running ---------------- */

static enum mmp_status run_cached(mmp_vae *v, mmp__gcache *gc, bool decode, int n, int h, int w, const float *in, float *out,
                                  mmp_abort_fn abort_cb, void *abort_user) {
    int64_t key[6] = { n, h, w, 0, 0, 0 };
    if (!gc->valid || memcmp(key, gc->key, sizeof key) != 0) {
        gc->valid = false;
        if (!gc->g) {
            mmp_graph_params gp = mmp_graph_params_default();
            gp.max_tensors = 8192;
            gc->g = mmp_graph_new(gp);
            if (!gc->g) return MMP_ERR_NOMEM;
        } else {
            mmp_graph_reset(gc->g);
        }
        mmp_graph *g = gc->g;
        mmp_tensor *x, *y;
        if (decode) {
            x = mmp_set_name(mmp_new_tensor_4d(g, MMP_TYPE_F32, w, h, v->latent_ch, n), "latents");
            y = v->kind == MMP_VAE_KL ? kl_decoder(v, g, x) : mmp__taesd_decoder(&v->ws, g, x);
            if (y && v->kind == MMP_VAE_TINY && v->signed_out) y = mmp_scale_bias(g, y, 2.0f, -1.0f);
        } else {
            x = mmp_set_name(mmp_new_tensor_4d(g, MMP_TYPE_F32, w, h, 3, n), "image");
            if (v->kind == MMP_VAE_KL) {
                size_t cap = (size_t)(w + h + 2) * (size_t)(v->max_ch > 0 ? v->max_ch : 512) * (size_t)n;
                free(gc->zeros);
                gc->zeros = mmp__calloc(cap, sizeof(float));
                if (!gc->zeros) return MMP_ERR_NOMEM;
                y = kl_encoder(v, g, x, cap);
            } else {
                /* diffusers AutoencoderTiny takes [-1, 1] images: x.add(1).div(2) */
                mmp_tensor *xi = v->signed_out ? mmp_scale_bias(g, x, 0.5f, 0.5f) : x;
                y = mmp__taesd_encoder(&v->ws_enc, g, xi);
            }
        }
        y = mmp_set_output(y);
        if (!y) { mmp__error_prefix("vae %s: ", decode ? "decode" : "encode"); return MMP_ERR_SHAPE; }
        int64_t want_c = decode ? 3 : v->latent_ch, sc = decode ? v->scale : 1, sd = decode ? 1 : v->scale;
        if (y->ne[2] != want_c || y->ne[0] != (int64_t)w * sc / sd || y->ne[1] != (int64_t)h * sc / sd)
            return mmp__error(MMP_ERR_SHAPE, "vae %s: output is [%lld, %lld, %lld] (C, H, W), expected %lld channels at %lldx scale",
                              decode ? "decode" : "encode", (long long)y->ne[2], (long long)y->ne[1], (long long)y->ne[0],
                              (long long)want_c, (long long)v->scale);
        enum mmp_status st = mmp_graph_plan(v->be, g);
        if (st != MMP_OK) return st;
        gc->in[0] = x;
        gc->out = y;
        memcpy(gc->key, key, sizeof key);
        gc->valid = true;
    }
    mmp__copy_in(gc->in[0], in);
    enum mmp_status st = mmp_graph_compute(v->be, gc->g, abort_cb, abort_user);
    if (st != MMP_OK) return st;
    mmp__copy_out(gc->out, out);
    return MMP_OK;
}

enum mmp_status mmp_vae_decode(mmp_vae *v, int n, int h, int w, const float *latents, float *image, mmp_abort_fn abort_cb, void *abort_user) {
    if (!v || !latents || !image) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_vae_decode: NULL argument");
    if (!v->has_dec) return mmp__error(MMP_ERR_INVALID_ARG, "vae: this model has no decoder");
    if (n < 1 || n > 64 || h < 1 || w < 1 || h > 1024 || w > 1024)
        return mmp__error(MMP_ERR_INVALID_ARG, "vae decode: bad sizes batch %d, latent %dx%d", n, h, w);
    return run_cached(v, &v->gdec, true, n, h, w, latents, image, abort_cb, abort_user);
}

enum mmp_status mmp_vae_encode(mmp_vae *v, int n, int h, int w, const float *image, float *latents, mmp_abort_fn abort_cb, void *abort_user) {
    if (!v || !latents || !image) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_vae_encode: NULL argument");
    if (!v->has_enc) return mmp__error(MMP_ERR_INVALID_ARG, "vae: this model has no encoder");
    if (n < 1 || n > 64 || h < 1 || w < 1 || h > 8192 || w > 8192)
        return mmp__error(MMP_ERR_INVALID_ARG, "vae encode: bad sizes batch %d, image %dx%d", n, h, w);
    if (h % v->scale != 0 || w % v->scale != 0)
        return mmp__error(MMP_ERR_SHAPE, "vae encode: image %dx%d (HxW) is not a multiple of %d", h, w, v->scale);
    return run_cached(v, &v->genc, false, n, h, w, image, latents, abort_cb, abort_user);
}

enum mmp_status mmp_vae_decode_to_image(mmp_vae *v, int n, int h, int w, const float *latents, float *image01, mmp_abort_fn abort_cb,
                                        void *abort_user) {
    if (!v || !latents || !image01) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_vae_decode_to_image: NULL argument");
    if (n < 1 || h < 1 || w < 1 || n > 64 || h > 1024 || w > 1024)
        return mmp__error(MMP_ERR_INVALID_ARG, "vae decode: bad sizes batch %d, latent %dx%d", n, h, w);
    size_t nl = (size_t)n * (size_t)v->latent_ch * (size_t)h * (size_t)w;
    float *z = mmp__malloc(nl * sizeof(float));
    if (!z) return MMP_ERR_NOMEM;
    float inv = (float)(1.0 / v->scaling), sh = (float)v->shift;
    for (size_t i = 0; i < nl; i++) z[i] = latents[i] * inv + sh;
    enum mmp_status st = mmp_vae_decode(v, n, h, w, z, image01, abort_cb, abort_user);
    free(z);
    if (st != MMP_OK) return st;
    size_t ni = (size_t)n * 3 * (size_t)(h * v->scale) * (size_t)(w * v->scale);
    for (size_t i = 0; i < ni; i++) {
        float x = v->signed_out ? image01[i] / 2.0f + 0.5f : image01[i];
        image01[i] = x < 0 ? 0 : x > 1 ? 1 : x;
    }
    return MMP_OK;
}
