/* diffusers UNet2DConditionModel (Stable Diffusion 1.x / 2.x), driven by its config.json.
 *
 * Activations are [W, H, C, N] (ggml order of torch's [N, C, H, W]); attention works on token
 * rows [C, W*H, N]. Weight names are diffusers' (down_blocks.i.resnets.j.conv1.weight, ...).
 *
 *   temb = linear_2(silu(linear_1(sinusoid(t))))               [4*C0, N]
 *   x = conv_in(sample); skips = [x]
 *   down i: (resnet(x, temb) -> transformer(x, ctx)?) * layers, push each; downsample (stride 2), push
 *   mid:   resnet -> transformer -> resnet
 *   up i:  (concat(x, pop) -> resnet -> transformer?) * (layers + 1); upsample x2 + conv
 *   out = conv_out(silu(group_norm(x)))
 */
#include "gen-impl.h"
#include "util.h"

#include <math.h>
#include <string.h>

#define UNET_MAX_BLOCKS 8

struct mmp_unet {
    mmp__wstore ws;
    mmp_backend *be;
    mmp__gcache gc;
    int in_ch, out_ch, cross_dim, n_blocks, layers, groups, t_dim;
    float eps;
    bool cross_down[UNET_MAX_BLOCKS], cross_up[UNET_MAX_BLOCKS], has_mid;
    int heads[UNET_MAX_BLOCKS];
    bool flip_sin_to_cos;
    double freq_shift;
    int downsample_padding;
};

/* ---- config ---- */

static enum mmp_status cfg_int(const mmp_json *c, const char *key, int64_t def, int64_t lo, int64_t hi, int *out) {
    int64_t v = def;
    if (mmp_json_has(c, key)) {
        enum mmp_status st = mmp_json_get_int(c, key, &v);
        if (st != MMP_OK) return st;
    }
    if (v < lo || v > hi)
        return mmp__error(MMP_ERR_FORMAT, "%s: '%s' is %lld, expected %lld..%lld", mmp_json_name(c), key, (long long)v,
                          (long long)lo, (long long)hi);
    *out = (int)v;
    return MMP_OK;
}

/* A string key that must be null/absent or one of the allowed values. */
static enum mmp_status cfg_expect(const mmp_json *c, const char *key, const char *allowed) {
    if (!mmp_json_has(c, key)) return MMP_OK;
    const char *s;
    if (mmp_json_kind_of(c, key) == MMP_JSON_STRING && mmp_json_get_string(c, key, &s) == MMP_OK && allowed && strcmp(s, allowed) == 0)
        return MMP_OK;
    if (mmp_json_kind_of(c, key) == MMP_JSON_BOOL) {
        bool b;
        if (mmp_json_get_bool(c, key, &b) == MMP_OK && !b) return MMP_OK;
    }
    return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is set to an unsupported value (supported: %s)", mmp_json_name(c), key,
                      allowed ? allowed : "null/false");
}

/* int or list-per-block value */
static enum mmp_status cfg_per_block(const mmp_json *c, const char *key, int n, int *out) {
    char p[96];
    if (mmp_json_kind_of(c, key) == MMP_JSON_ARRAY) {
        int64_t len;
        if (mmp_json_array_len(c, key, &len) != MMP_OK) return MMP_ERR_FORMAT;
        if (len != n)
            return mmp__error(MMP_ERR_FORMAT, "%s: '%s' has %lld entries, expected %d (one per block)", mmp_json_name(c), key, (long long)len, n);
        for (int i = 0; i < n; i++) {
            snprintf(p, sizeof p, "%s[%d]", key, i);
            enum mmp_status st = cfg_int(c, p, 0, 1, 4096, &out[i]);
            if (st != MMP_OK) return st;
        }
        return MMP_OK;
    }
    int v = 0;
    enum mmp_status st = cfg_int(c, key, 8, 1, 4096, &v);
    if (st != MMP_OK) return st;
    for (int i = 0; i < n; i++) out[i] = v;
    return MMP_OK;
}

static enum mmp_status unet_read_config(mmp_unet *u, const mmp_json *c) {
    enum mmp_status st;
    const char *file = mmp_json_name(c);
    const char *cls;
    if (mmp_json_get_string(c, "_class_name", &cls) == MMP_OK && strcmp(cls, "UNet2DConditionModel") != 0)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: _class_name is \"%s\", expected UNet2DConditionModel", file, cls);
    mmp_clear_error();
    if ((st = cfg_int(c, "in_channels", 4, 1, 64, &u->in_ch)) || (st = cfg_int(c, "out_channels", 4, 1, 64, &u->out_ch)) ||
        (st = cfg_int(c, "layers_per_block", 2, 1, 16, &u->layers)) || (st = cfg_int(c, "norm_num_groups", 32, 1, 1024, &u->groups)) ||
        (st = cfg_int(c, "downsample_padding", 1, 0, 4, &u->downsample_padding)))
        return st;
    if (mmp_json_kind_of(c, "layers_per_block") == MMP_JSON_ARRAY)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: per-block layers_per_block lists are not supported", file);
    double d = 1e-5;
    if (mmp_json_has(c, "norm_eps") && (st = mmp_json_get_float(c, "norm_eps", &d)) != MMP_OK) return st;
    u->eps = (float)d;
    bool b = true;
    if (mmp_json_has(c, "flip_sin_to_cos") && (st = mmp_json_get_bool(c, "flip_sin_to_cos", &b)) != MMP_OK) return st;
    u->flip_sin_to_cos = b;
    u->freq_shift = 0;
    if (mmp_json_has(c, "freq_shift") && (st = mmp_json_get_float(c, "freq_shift", &u->freq_shift)) != MMP_OK) return st;
    int64_t n;
    if ((st = mmp_json_array_len(c, "down_block_types", &n)) != MMP_OK) return st;
    if (n < 1 || n > UNET_MAX_BLOCKS) return mmp__error(MMP_ERR_FORMAT, "%s: %lld down blocks, expected 1..%d", file, (long long)n, UNET_MAX_BLOCKS);
    u->n_blocks = (int)n;
    int64_t nu, nb;
    if ((st = mmp_json_array_len(c, "up_block_types", &nu)) != MMP_OK) return st;
    if ((st = mmp_json_array_len(c, "block_out_channels", &nb)) != MMP_OK) return st;
    if (nu != n || nb != n)
        return mmp__error(MMP_ERR_FORMAT, "%s: %lld down blocks, %lld up blocks and %lld block_out_channels must agree", file,
                          (long long)n, (long long)nu, (long long)nb);
    for (int i = 0; i < u->n_blocks; i++) {
        const char *dt, *ut;
        if ((st = mmp_json_array_string(c, "down_block_types", i, &dt)) || (st = mmp_json_array_string(c, "up_block_types", i, &ut))) return st;
        if (strcmp(dt, "CrossAttnDownBlock2D") == 0) u->cross_down[i] = true;
        else if (strcmp(dt, "DownBlock2D") == 0) u->cross_down[i] = false;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: down_block_types[%d] is \"%s\" (supported: CrossAttnDownBlock2D, DownBlock2D)", file, i, dt);
        if (strcmp(ut, "CrossAttnUpBlock2D") == 0) u->cross_up[i] = true;
        else if (strcmp(ut, "UpBlock2D") == 0) u->cross_up[i] = false;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: up_block_types[%d] is \"%s\" (supported: CrossAttnUpBlock2D, UpBlock2D)", file, i, ut);
    }
    u->has_mid = true;
    if (mmp_json_kind_of(c, "mid_block_type") == MMP_JSON_NULL) u->has_mid = false;
    else if ((st = cfg_expect(c, "mid_block_type", "UNetMidBlock2DCrossAttn")) != MMP_OK) return st;
    /* The legacy meaning: in SD configs attention_head_dim is the number of heads
     * (diffusers: num_attention_heads = num_attention_heads or attention_head_dim). */
    if (mmp_json_has(c, "num_attention_heads")) st = cfg_per_block(c, "num_attention_heads", u->n_blocks, u->heads);
    else st = cfg_per_block(c, "attention_head_dim", u->n_blocks, u->heads);
    if (st != MMP_OK) return st;
    if ((st = cfg_expect(c, "time_embedding_type", "positional")) || (st = cfg_expect(c, "class_embed_type", NULL)) ||
        (st = cfg_expect(c, "addition_embed_type", NULL)) || (st = cfg_expect(c, "encoder_hid_dim_type", NULL)) ||
        (st = cfg_expect(c, "resnet_time_scale_shift", "default")) || (st = cfg_expect(c, "center_input_sample", NULL)) ||
        (st = cfg_expect(c, "only_cross_attention", NULL)) || (st = cfg_expect(c, "dual_cross_attention", NULL)) ||
        (st = cfg_expect(c, "time_cond_proj_dim", NULL)) || (st = cfg_expect(c, "act_fn", "silu")))
        return st;
    int k;
    if ((st = cfg_int(c, "conv_in_kernel", 3, 3, 3, &k)) || (st = cfg_int(c, "conv_out_kernel", 3, 3, 3, &k))) return st;
    if (mmp_json_has(c, "mid_block_scale_factor")) {
        double f;
        if ((st = mmp_json_get_float(c, "mid_block_scale_factor", &f)) != MMP_OK) return st;
        if (f != 1.0) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: mid_block_scale_factor %g is not supported (1 only)", file, f);
    }
    return MMP_OK;
}

/* ---- graph ---- */

static mmp_tensor *resnet(mmp_unet *u, mmp_graph *g, mmp_tensor *x, mmp_tensor *temb_act, const char *p) {
    char n[160];
    snprintf(n, sizeof n, "%s.norm1", p);
    mmp_tensor *h = mmp_silu(g, mmp__gn(&u->ws, g, x, n, u->groups, u->eps));
    snprintf(n, sizeof n, "%s.conv1", p);
    h = mmp__conv(&u->ws, g, h, n, true, 1, 1);
    if (!h) return NULL;
    snprintf(n, sizeof n, "%s.time_emb_proj", p);
    mmp_tensor *t = mmp__linear(&u->ws, g, temb_act, n, true);  /* [Cout, N] */
    if (!t) return NULL;
    h = mmp_add(g, h, mmp_reshape_4d(g, t, 1, 1, t->ne[0], t->ne[1]));
    snprintf(n, sizeof n, "%s.norm2", p);
    h = mmp_silu(g, mmp__gn(&u->ws, g, h, n, u->groups, u->eps));
    snprintf(n, sizeof n, "%s.conv2", p);
    h = mmp__conv(&u->ws, g, h, n, true, 1, 1);
    if (mmp__wstore_has(&u->ws, "%s.conv_shortcut.weight", p)) {
        snprintf(n, sizeof n, "%s.conv_shortcut", p);
        x = mmp__conv(&u->ws, g, x, n, true, 1, 0);
    }
    return mmp_add(g, x, h);
}

/* [C, T, N] -> [D, T, H, N] contiguous (heads as the batch of mmp_attn) */
static mmp_tensor *split_heads(mmp_graph *g, mmp_tensor *x, int heads) {
    if (!x) return NULL;
    int64_t C = x->ne[0], T = x->ne[1], N = x->ne[2];
    return mmp_cont(g, mmp_permute(g, mmp_reshape_4d(g, x, C / heads, heads, T, N), 0, 2, 1, 3));
}

static mmp_tensor *attention(mmp_unet *u, mmp_graph *g, mmp_tensor *x, mmp_tensor *ctx, const char *p, int heads) {
    char n[160];
    mmp_tensor *src = ctx ? ctx : x;
    snprintf(n, sizeof n, "%s.to_q", p);
    mmp_tensor *q = mmp__linear(&u->ws, g, x, n, mmp__wstore_has(&u->ws, "%s.bias", n));
    snprintf(n, sizeof n, "%s.to_k", p);
    mmp_tensor *k = mmp__linear(&u->ws, g, src, n, mmp__wstore_has(&u->ws, "%s.bias", n));
    snprintf(n, sizeof n, "%s.to_v", p);
    mmp_tensor *v = mmp__linear(&u->ws, g, src, n, mmp__wstore_has(&u->ws, "%s.bias", n));
    if (!q || !k || !v) return NULL;
    int64_t C = q->ne[0], T = q->ne[1], N = q->ne[2];
    if (C % heads != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: attention '%s': %lld channels not divisible by %d heads",
                               mmp_modelfile_path(u->ws.mf), p, (long long)C, heads);
    mmp_tensor *o = mmp_attn(g, split_heads(g, q, heads), split_heads(g, k, heads), split_heads(g, v, heads), NULL,
                             1.0f / sqrtf((float)(C / heads)), false, 0);  /* [D, H, T, N] */
    o = mmp_reshape_3d(g, o, C, T, N);
    snprintf(n, sizeof n, "%s.to_out.0", p);
    return mmp__linear(&u->ws, g, o, n, true);
}

static mmp_tensor *layer_norm(mmp_unet *u, mmp_graph *g, mmp_tensor *x, const char *p, const char *name) {
    mmp_tensor *w = mmp__wt(&u->ws, g, MMP__W_F32, 0, NULL, "%s.%s.weight", p, name);
    mmp_tensor *b = mmp__wt(&u->ws, g, MMP__W_F32, 0, NULL, "%s.%s.bias", p, name);
    if (!w || !b || !x) return NULL;
    if (mmp_nelements(w) != x->ne[0] || mmp_nelements(b) != x->ne[0])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: layer norm '%s.%s' has %lld / %lld values for width %lld", mmp_modelfile_path(u->ws.mf), p,
                               name, (long long)mmp_nelements(w), (long long)mmp_nelements(b), (long long)x->ne[0]);
    return mmp_layer_norm(g, x, w, b, 1e-5f);
}

/* BasicTransformerBlock on tokens [C, T, N]. */
static mmp_tensor *basic_block(mmp_unet *u, mmp_graph *g, mmp_tensor *t, mmp_tensor *ctx, const char *p, int heads) {
    char n[160];
    snprintf(n, sizeof n, "%s.attn1", p);
    t = mmp_add(g, t, attention(u, g, layer_norm(u, g, t, p, "norm1"), NULL, n, heads));
    snprintf(n, sizeof n, "%s.attn2", p);
    t = mmp_add(g, t, attention(u, g, layer_norm(u, g, t, p, "norm2"), ctx, n, heads));
    mmp_tensor *h = layer_norm(u, g, t, p, "norm3");
    /* GEGLU: proj -> [hidden | gate], out = hidden * gelu(gate); the fused weight is split by rows */
    const mmp_tensor_info *pi = mmp__wstore_info(&u->ws, "%s.ff.net.0.proj.weight", p);
    if (!pi || pi->n_dims != 2 || pi->ne[1] % 2 != 0)
        return mmp__error_null(MMP_ERR_FORMAT, "%s: '%s.ff.net.0.proj.weight' is missing or not a [2*inner, dim] matrix",
                               mmp_modelfile_path(u->ws.mf), p);
    int64_t inner = pi->ne[1] / 2;
    mmp_tensor *wa = mmp__wt_rows(&u->ws, g, MMP__W_MAT, 0, inner, "%s.ff.net.0.proj.weight", p);
    mmp_tensor *wg = mmp__wt_rows(&u->ws, g, MMP__W_MAT, inner, inner, "%s.ff.net.0.proj.weight", p);
    mmp_tensor *ba = mmp__wt_rows(&u->ws, g, MMP__W_F32, 0, inner, "%s.ff.net.0.proj.bias", p);
    mmp_tensor *bg = mmp__wt_rows(&u->ws, g, MMP__W_F32, inner, inner, "%s.ff.net.0.proj.bias", p);
    if (!wa || !wg || !ba || !bg || !h) return NULL;
    if (pi->ne[0] != h->ne[0])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: '%s.ff.net.0.proj.weight' takes width %lld, the block has %lld", mmp_modelfile_path(u->ws.mf), p,
                               (long long)pi->ne[0], (long long)h->ne[0]);
    mmp_tensor *hid = mmp_add(g, mmp_mul_mat(g, wa, h), ba);
    mmp_tensor *gate = mmp_add(g, mmp_mul_mat(g, wg, h), bg);
    snprintf(n, sizeof n, "%s.ff.net.2", p);
    mmp_tensor *f = mmp__linear(&u->ws, g, mmp_geglu(g, gate, hid), n, true);
    return mmp_add(g, t, f);
}

/* Transformer2DModel on [W, H, C, N]. */
static mmp_tensor *transformer(mmp_unet *u, mmp_graph *g, mmp_tensor *x, mmp_tensor *ctx, const char *p, int heads) {
    if (!x) return NULL;
    char n[160];
    int64_t W = x->ne[0], H = x->ne[1], C = x->ne[2], N = x->ne[3];
    snprintf(n, sizeof n, "%s.norm", p);
    mmp_tensor *h = mmp__gn(&u->ws, g, x, n, u->groups, 1e-6f);
    mmp_tensor *t = mmp_cont(g, mmp_transpose(g, mmp_reshape_3d(g, h, W * H, C, N)));  /* [C, WH, N] */
    snprintf(n, sizeof n, "%s.proj_in", p);
    t = mmp__linear(&u->ws, g, t, n, true);
    int nl = 0;
    while (mmp__wstore_has(&u->ws, "%s.transformer_blocks.%d.norm1.weight", p, nl)) nl++;
    if (nl == 0)
        return mmp__error_null(MMP_ERR_FORMAT, "%s: '%s' has no transformer_blocks", mmp_modelfile_path(u->ws.mf), p);
    for (int l = 0; l < nl; l++) {
        snprintf(n, sizeof n, "%s.transformer_blocks.%d", p, l);
        t = basic_block(u, g, t, ctx, n, heads);
    }
    snprintf(n, sizeof n, "%s.proj_out", p);
    t = mmp__linear(&u->ws, g, t, n, true);
    if (!t) return NULL;
    mmp_tensor *s = mmp_reshape_4d(g, mmp_cont(g, mmp_transpose(g, t)), W, H, C, N);
    return mmp_add(g, s, x);
}

static mmp_tensor *build(mmp_unet *u, mmp_graph *g, mmp_tensor *sample, mmp_tensor *tproj, mmp_tensor *ctx) {
    char p[128];
    mmp_tensor *temb = mmp__linear(&u->ws, g, tproj, "time_embedding.linear_1", true);
    temb = mmp__linear(&u->ws, g, mmp_silu(g, temb), "time_embedding.linear_2", true);
    mmp_tensor *temb_act = mmp_silu(g, temb);
    mmp_tensor *x = mmp__conv(&u->ws, g, sample, "conv_in", true, 1, 1);
    mmp_tensor *skips[UNET_MAX_BLOCKS * 20];
    int ns = 0;
    skips[ns++] = x;
    for (int i = 0; i < u->n_blocks; i++) {
        for (int j = 0; j < u->layers; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            x = resnet(u, g, x, temb_act, p);
            if (u->cross_down[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                x = transformer(u, g, x, ctx, p, u->heads[i]);
            }
            skips[ns++] = x;
        }
        if (i < u->n_blocks - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            x = mmp__conv(&u->ws, g, x, p, true, 2, u->downsample_padding);
            skips[ns++] = x;
        }
    }
    if (u->has_mid) {
        x = resnet(u, g, x, temb_act, "mid_block.resnets.0");
        x = transformer(u, g, x, ctx, "mid_block.attentions.0", u->heads[u->n_blocks - 1]);
        x = resnet(u, g, x, temb_act, "mid_block.resnets.1");
    }
    for (int i = 0; i < u->n_blocks; i++) {
        for (int j = 0; j <= u->layers; j++) {
            if (!x) return NULL;
            x = mmp_concat(g, x, skips[--ns], 2);
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            x = resnet(u, g, x, temb_act, p);
            if (u->cross_up[i]) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                x = transformer(u, g, x, ctx, p, u->heads[u->n_blocks - 1 - i]);
            }
        }
        if (i < u->n_blocks - 1) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            x = mmp__conv(&u->ws, g, mmp_upsample_nearest(g, x, 2), p, true, 1, 1);
        }
    }
    x = mmp_silu(g, mmp__gn(&u->ws, g, x, "conv_norm_out", u->groups, u->eps));
    return mmp__conv(&u->ws, g, x, "conv_out", true, 1, 1);
}

/* ---- public ---- */

static mmp_unet *unet_load(mmp_unet *u, const char *path, int n_threads);

mmp_unet *mmp_unet_load(const char *path, int n_threads) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_unet_load: NULL path");
    mmp_unet *u = mmp__calloc(1, sizeof *u);
    if (!u) return NULL;
    if (mmp__wstore_open(&u->ws, path) != MMP_OK) { mmp__error_prefix("unet: "); free(u); return NULL; }
    return unet_load(u, path, n_threads);
}

mmp_unet *mmp_unet_load_modelfile(const mmp_modelfile *mf, int n_threads) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_unet_load_modelfile: NULL model file");
    mmp_unet *u = mmp__calloc(1, sizeof *u);
    if (!u) return NULL;
    mmp__wstore_borrow(&u->ws, mf);
    return unet_load(u, mmp_modelfile_path(mf), n_threads);
}

/* u->ws is open; frees u on failure */
static mmp_unet *unet_load(mmp_unet *u, const char *path, int n_threads) {
    const mmp_json *cfg = mmp_modelfile_config(u->ws.mf);
    if (!cfg) {
        mmp__error(MMP_ERR_NOT_FOUND, "unet %s: no config.json (a diffusers UNet2DConditionModel folder is expected)", path);
        goto fail;
    }
    if (unet_read_config(u, cfg) != MMP_OK) goto fail;
    /* sizes from the weights: they decide, the config is checked against them */
    const mmp_tensor_info *ci = mmp__wstore_info(&u->ws, "conv_in.weight");
    const mmp_tensor_info *co = mmp__wstore_info(&u->ws, "conv_out.weight");
    const mmp_tensor_info *tl = mmp__wstore_info(&u->ws, "time_embedding.linear_1.weight");
    if (!ci || !co || !tl) {
        mmp__error(MMP_ERR_FORMAT, "unet %s: conv_in / conv_out / time_embedding.linear_1 weights missing", path);
        goto fail;
    }
    if (ci->ne[2] != u->in_ch || co->ne[3] != u->out_ch) {
        mmp__error(MMP_ERR_FORMAT, "unet %s: config says in/out channels %d/%d but conv_in/conv_out have %lld/%lld", path, u->in_ch,
                   u->out_ch, (long long)ci->ne[2], (long long)co->ne[3]);
        goto fail;
    }
    u->t_dim = (int)tl->ne[0];
    u->cross_dim = 0;
    for (int i = 0; i < u->n_blocks && !u->cross_dim; i++) {
        const mmp_tensor_info *k = u->cross_down[i] ? mmp__wstore_info(&u->ws, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", i) : NULL;
        if (k) u->cross_dim = (int)k->ne[0];
    }
    if (!u->cross_dim && u->has_mid) {
        const mmp_tensor_info *k = mmp__wstore_info(&u->ws, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight");
        if (k) u->cross_dim = (int)k->ne[0];
    }
    if (mmp_json_kind_of(cfg, "cross_attention_dim") == MMP_JSON_NUMBER) {
        int64_t cd;
        if (mmp_json_get_int(cfg, "cross_attention_dim", &cd) == MMP_OK && u->cross_dim && cd != u->cross_dim) {
            mmp__error(MMP_ERR_FORMAT, "unet %s: config cross_attention_dim %lld but attn2.to_k takes %d", path, (long long)cd, u->cross_dim);
            goto fail;
        }
    }
    u->be = mmp_backend_cpu_new(n_threads > 0 ? n_threads : 1);
    if (!u->be) goto fail;
    return u;
fail:
    mmp_unet_free(u);
    return NULL;
}

void mmp_unet_free(mmp_unet *u) {
    if (!u) return;
    mmp__gcache_free(&u->gc);
    mmp_backend_free(u->be);
    mmp__wstore_close(&u->ws);
    free(u);
}

int mmp_unet_in_channels(const mmp_unet *u) { return u ? u->in_ch : 0; }
int mmp_unet_out_channels(const mmp_unet *u) { return u ? u->out_ch : 0; }
int mmp_unet_cross_attention_dim(const mmp_unet *u) { return u ? u->cross_dim : 0; }
int mmp_unet_size_multiple(const mmp_unet *u) { return u ? 1 << (u->n_blocks - 1) : 0; }

/* diffusers get_timestep_embedding, in float32 as torch computes it. */
static void timestep_embedding(const mmp_unet *u, float t, float *out) {
    int dim = u->t_dim, half = dim / 2;
    for (int i = 0; i < half; i++) {
        float e = expf((-9.21034037197618f * (float)i) / (float)((double)half - u->freq_shift));
        float a = t * e;
        float s = sinf(a), c = cosf(a);
        out[i] = u->flip_sin_to_cos ? c : s;
        out[half + i] = u->flip_sin_to_cos ? s : c;
    }
    if (dim % 2) out[dim - 1] = 0;
}

enum mmp_status mmp_unet_predict(mmp_unet *u, int n, int h, int w, const float *sample, const float *timesteps, int t_ctx, int d_ctx,
                                 const float *context, float *out, mmp_abort_fn abort_cb, void *abort_user) {
    if (!u || !sample || !timesteps || !context || !out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_unet_predict: NULL argument");
    int m = mmp_unet_size_multiple(u);
    if (n < 1 || n > 64 || h < 1 || w < 1 || h > 4096 || w > 4096 || t_ctx < 1 || t_ctx > 100000)
        return mmp__error(MMP_ERR_INVALID_ARG, "unet: bad sizes batch %d, latent %dx%d, context length %d", n, h, w, t_ctx);
    if (h % m != 0 || w % m != 0)
        return mmp__error(MMP_ERR_SHAPE, "unet: latent size %dx%d (HxW) must be a multiple of %d for %d down blocks", h, w, m, u->n_blocks);
    if (d_ctx != u->cross_dim)
        return mmp__error(MMP_ERR_SHAPE, "unet: conditioning width is %d but the UNet's cross_attention_dim is %d", d_ctx, u->cross_dim);
    mmp__gcache *gc = &u->gc;
    int64_t key[6] = { n, h, w, t_ctx, 0, 0 };
    if (!gc->valid || memcmp(key, gc->key, sizeof key) != 0) {
        gc->valid = false;
        if (!gc->g) {
            mmp_graph_params gp = mmp_graph_params_default();
            gp.max_tensors = 32768;
            gc->g = mmp_graph_new(gp);
            if (!gc->g) return MMP_ERR_NOMEM;
        } else {
            mmp_graph_reset(gc->g);
        }
        mmp_graph *g = gc->g;
        mmp_tensor *xs = mmp_set_name(mmp_new_tensor_4d(g, MMP_TYPE_F32, w, h, u->in_ch, n), "sample");
        mmp_tensor *tp = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, u->t_dim, n), "t_proj");
        mmp_tensor *cx = mmp_set_name(mmp_new_tensor_3d(g, MMP_TYPE_F32, d_ctx, t_ctx, n), "context");
        mmp_tensor *y = mmp_set_output(build(u, g, xs, tp, cx));
        if (!y) { mmp__error_prefix("unet %s: ", mmp_modelfile_path(u->ws.mf)); return MMP_ERR_SHAPE; }
        enum mmp_status st = mmp_graph_plan(u->be, g);
        if (st != MMP_OK) return st;
        gc->in[0] = xs; gc->in[1] = tp; gc->in[2] = cx; gc->out = y;
        memcpy(gc->key, key, sizeof key);
        gc->valid = true;
    }
    mmp__copy_in(gc->in[0], sample);
    float *tp = gc->in[1]->data;
    for (int i = 0; i < n; i++) timestep_embedding(u, timesteps[i], tp + (size_t)i * u->t_dim);
    mmp__copy_in(gc->in[2], context);
    enum mmp_status st = mmp_graph_compute(u->be, gc->g, abort_cb, abort_user);
    if (st != MMP_OK) return st;
    mmp__copy_out(gc->out, out);
    return MMP_OK;
}
