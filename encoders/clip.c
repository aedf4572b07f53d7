/* CLIP and SigLIP vision transformers and the CLIP text transformer (HF transformers
 * layouts). All three share the pre-LN encoder layer:
 *     x = x + out_proj(attn(q_proj(ln1 x), k_proj(ln1 x), v_proj(ln1 x)))
 *     x = x + fc2(act(fc1(ln2 x)))
 * Activations inside the graph are ggml-ordered: x is [n_embd, n_tokens] (ne[0] = n_embd). */
#include "mmpipe/vision.h"
#include "mmpipe/graph.h"
#include "mmpipe/modelfile.h"

/* A weight bound from the model file (data in the mmapped file or in an owned f32 copy). */
typedef struct wt {
    enum mmp_type type;
    int n_dims;
    int64_t ne[4];
    void *data;  /* NULL = absent */
} wt;

/* The model file, the tensor-name prefix and the converted copies we own. */
typedef struct clip_w {
    mmp_modelfile *mf;
    const char *path;
    char prefix[64];
    bool gguf;          /* llama.cpp mmproj names ("v.blk.N.attn_q.weight"): HF names are translated */
    bool borrowed;      /* mf belongs to the caller (a *_load_modelfile load, e.g. the model store) */
    void **owned;
    int n_owned, cap_owned;
} clip_w;

typedef struct clip_layer {
    wt ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} clip_layer;
#include "mmpipe/backend.h"
#include "../core/util.h"
#include "../core/weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- weight loading ---- */

static void *own(void *ctx, size_t n) {
    clip_w *ws = ctx;
    if (ws->n_owned == ws->cap_owned) {
        int cap = ws->cap_owned ? ws->cap_owned * 2 : 64;
        void **o = realloc(ws->owned, (size_t)cap * sizeof(void *));
        if (!o) return mmp__error_null(MMP_ERR_NOMEM, "out of memory");
        ws->owned = o;
        ws->cap_owned = cap;
    }
    void *p = mmp__malloc(n ? n : 1);
    if (p) ws->owned[ws->n_owned++] = p;
    return p;
}

static void clip_w_free(clip_w *ws) {
    if (!ws) return;
    for (int i = 0; i < ws->n_owned; i++) free(ws->owned[i]);
    free(ws->owned);
    ws->owned = NULL;
    ws->n_owned = ws->cap_owned = 0;
    if (!ws->borrowed) mmp_modelfile_free(ws->mf);
    ws->mf = NULL;
}


/* HF vision-tower name -> llama.cpp mmproj name (clip.cpp's TN_* names). fc1/fc2 are mapped
 * by clip_bind_layer (old converters swapped ffn_up and ffn_down). */
static bool gguf_name(const char *hf, char *out, size_t size) {
    static const char *const M[][2] = {
        {"embeddings.patch_embedding.weight", "v.patch_embd.weight"},
        {"embeddings.patch_embedding.bias", "v.patch_embd.bias"},
        {"embeddings.class_embedding", "v.class_embd"},
        {"embeddings.position_embedding.weight", "v.position_embd.weight"},
        {"pre_layrnorm.weight", "v.pre_ln.weight"}, {"pre_layrnorm.bias", "v.pre_ln.bias"},
        {"post_layernorm.weight", "v.post_ln.weight"}, {"post_layernorm.bias", "v.post_ln.bias"},
    };
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++)
        if (!strcmp(hf, M[i][0])) { snprintf(out, size, "%s", M[i][1]); return true; }
    int il, n = 0;
    if (sscanf(hf, "encoder.layers.%d.%n", &il, &n) == 1 && n > 0) {
        static const char *const L[][2] = {
            {"layer_norm1.", "ln1."}, {"layer_norm2.", "ln2."}, {"self_attn.q_proj.", "attn_q."},
            {"self_attn.k_proj.", "attn_k."}, {"self_attn.v_proj.", "attn_v."}, {"self_attn.out_proj.", "attn_out."},
            {"mlp.fc1.", "ffn_up."}, {"mlp.fc2.", "ffn_down."}, {"mlp.ffn_up.", "ffn_up."}, {"mlp.ffn_down.", "ffn_down."},
        };
        const char *rest = hf + n;
        for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
            size_t k = strlen(L[i][0]);
            if (!strncmp(rest, L[i][0], k)) {
                snprintf(out, size, "v.blk.%d.%s%s", il, L[i][1], rest + k);
                return true;
            }
        }
    }
    return false;
}

/* Bind `prefix name` to *w with ggml shape ne (n_dims entries). f32: small weights used by
 * elementwise ops (norms, biases, embeddings added) are converted to f32; matrices stay in
 * their file type when the kernels read it (F32/F16/BF16/quantized) and are aligned. */
static enum mmp_status clip_bind(clip_w *ws, wt *w, const char *name, int n_dims, const int64_t *ne,
                               bool required, bool f32) {
    char full[256];
    if (!ws->gguf || !gguf_name(name, full, sizeof full)) snprintf(full, sizeof full, "%s%s", ws->prefix, name);
    memset(w, 0, sizeof *w);
    const mmp_tensor_info *ti = mmp_modelfile_find(ws->mf, full);
    if (!ti) {
        if (!required) { mmp_clear_error(); return MMP_OK; }
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing tensor '%s'", ws->path, full);
    }
    int64_t nel = 1;
    for (int i = 0; i < 4; i++) {
        int64_t got = i < ti->n_dims ? ti->ne[i] : 1, want = i < n_dims ? ne[i] : 1;
        if (got != want) {
            return mmp__error(MMP_ERR_SHAPE,
                              "%s: tensor '%s' has shape {%lld, %lld, %lld, %lld} (ggml order), expected {%lld, %lld, %lld, %lld}",
                              ws->path, full, (long long)(ti->n_dims > 0 ? ti->ne[0] : 1), (long long)(ti->n_dims > 1 ? ti->ne[1] : 1),
                              (long long)(ti->n_dims > 2 ? ti->ne[2] : 1), (long long)(ti->n_dims > 3 ? ti->ne[3] : 1),
                              (long long)ne[0], (long long)(n_dims > 1 ? ne[1] : 1), (long long)(n_dims > 2 ? ne[2] : 1),
                              (long long)(n_dims > 3 ? ne[3] : 1));
        }
        nel *= got;
        w->ne[i] = got;
    }
    w->n_dims = n_dims;
    const mmp_type_traits *tr = mmp_type_get_traits(ti->type);
    if (!tr || ti->type == MMP_TYPE_I8 || ti->type == MMP_TYPE_I16 || ti->type == MMP_TYPE_I32 ||
        ti->type == MMP_TYPE_I64 || ti->type == MMP_TYPE_F64 || ti->type == MMP_TYPE_U8)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, not a weight type", ws->path, full,
                          mmp_type_name(ti->type));
    bool f32_needed = f32 || (ti->type != MMP_TYPE_F32 && ti->type != MMP_TYPE_F16 && ti->type != MMP_TYPE_BF16 && n_dims > 2);
    return mmp__weight_data(ti, nel, f32_needed, own, ws, ws->path, full, &w->type, &w->data);
}

static mmp_tensor *clip_t(mmp_graph *g, const wt *w) {
    if (!w->data) return NULL;
    return mmp_new_tensor_ext(g, w->type, w->n_dims, w->ne, w->data);
}

/* Linear layer: W {n_in, n_out} x [n_in, T] + b [n_out]. */
static mmp_tensor *clip_linear(mmp_graph *g, mmp_tensor *x, const wt *w, const wt *b) {
    mmp_tensor *y = mmp_mul_mat(g, clip_t(g, w), x);
    if (b->data) y = mmp_add(g, y, clip_t(g, b));
    return y;
}

static enum mmp_status clip_bind_layer(clip_w *ws, clip_layer *L, int il, int64_t d, int64_t ff) {
    char n[128];
    const int64_t vd[1] = {d}, vff[1] = {ff}, mdd[2] = {d, d}, mdf[2] = {d, ff}, mfd[2] = {ff, d};
    struct { wt *w; const char *name; int nd; const int64_t *ne; bool f32; } t[] = {
        {&L->ln1_w, "layer_norm1.weight", 1, vd, true}, {&L->ln1_b, "layer_norm1.bias", 1, vd, true},
        {&L->q_w, "self_attn.q_proj.weight", 2, mdd, false}, {&L->q_b, "self_attn.q_proj.bias", 1, vd, true},
        {&L->k_w, "self_attn.k_proj.weight", 2, mdd, false}, {&L->k_b, "self_attn.k_proj.bias", 1, vd, true},
        {&L->v_w, "self_attn.v_proj.weight", 2, mdd, false}, {&L->v_b, "self_attn.v_proj.bias", 1, vd, true},
        {&L->o_w, "self_attn.out_proj.weight", 2, mdd, false}, {&L->o_b, "self_attn.out_proj.bias", 1, vd, true},
        {&L->ln2_w, "layer_norm2.weight", 1, vd, true}, {&L->ln2_b, "layer_norm2.bias", 1, vd, true},
        {&L->fc1_w, "mlp.fc1.weight", 2, mdf, false}, {&L->fc1_b, "mlp.fc1.bias", 1, vff, true},
        {&L->fc2_w, "mlp.fc2.weight", 2, mfd, false}, {&L->fc2_b, "mlp.fc2.bias", 1, vd, true},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        snprintf(n, sizeof n, "encoder.layers.%d.%s", il, t[i].name);
        if (ws->gguf && !strncmp(t[i].name, "mlp.fc", 6)) {
            /* mmproj: fc1 is the ffn_* tensor of shape {d, ff}; legacy files call it ffn_down */
            char up[96];
            snprintf(up, sizeof up, "v.blk.%d.ffn_up.weight", il);
            const mmp_tensor_info *ti = mmp_modelfile_find(ws->mf, up);
            mmp_clear_error();
            bool up_is_fc1 = ti && ti->n_dims == 2 && ti->ne[0] == d && ti->ne[1] == ff;
            bool fc1 = t[i].name[6] == '1';
            const char *which = fc1 == up_is_fc1 ? "ffn_up" : "ffn_down";
            snprintf(n, sizeof n, "encoder.layers.%d.mlp.%s.%s", il, which, strchr(t[i].name + 4, '.') + 1);
        }
        enum mmp_status s = clip_bind(ws, t[i].w, n, t[i].nd, t[i].ne, true, t[i].f32);
        if (s != MMP_OK) return s;
    }
    return MMP_OK;
}

/* One pre-LN encoder layer on x [d, T]. causal: text encoder. */
static mmp_tensor *clip_layer_build(mmp_graph *g, mmp_tensor *x, const clip_layer *L, int n_head, float eps,
                                  enum mmp_unary act, bool causal) {
    if (!x) return NULL;
    int64_t d = x->ne[0], T = x->ne[1], hd = d / n_head;
    mmp_tensor *h = mmp_layer_norm(g, x, clip_t(g, &L->ln1_w), clip_t(g, &L->ln1_b), eps);
    mmp_tensor *q = clip_linear(g, h, &L->q_w, &L->q_b);
    mmp_tensor *k = clip_linear(g, h, &L->k_w, &L->k_b);
    mmp_tensor *v = clip_linear(g, h, &L->v_w, &L->v_b);
    /* [d, T] -> [hd, H, T] -> [hd, T, H] */
    q = mmp_cont(g, mmp_permute(g, mmp_reshape_3d(g, q, hd, n_head, T), 0, 2, 1, 3));
    k = mmp_cont(g, mmp_permute(g, mmp_reshape_3d(g, k, hd, n_head, T), 0, 2, 1, 3));
    v = mmp_cont(g, mmp_permute(g, mmp_reshape_3d(g, v, hd, n_head, T), 0, 2, 1, 3));
    mmp_tensor *a = mmp_attn(g, q, k, v, NULL, 1.0f / sqrtf((float)hd), causal, 0);  /* [hd, H, T] */
    a = mmp_reshape_2d(g, a, d, T);
    x = mmp_add(g, x, clip_linear(g, a, &L->o_w, &L->o_b));
    h = mmp_layer_norm(g, x, clip_t(g, &L->ln2_w), clip_t(g, &L->ln2_b), eps);
    h = mmp_unary(g, clip_linear(g, h, &L->fc1_w, &L->fc1_b), act);
    return mmp_add(g, x, clip_linear(g, h, &L->fc2_w, &L->fc2_b));
}

static enum mmp_status clip_act(const char *path, const char *name, int32_t *act) {
    if (!strcmp(name, "quick_gelu")) *act = MMP_UNARY_QUICK_GELU;
    else if (!strcmp(name, "gelu")) *act = MMP_UNARY_GELU;
    else if (!strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_new") || !strcmp(name, "gelu_fast"))
        *act = MMP_UNARY_GELU_TANH;
    else if (!strcmp(name, "relu")) *act = MMP_UNARY_RELU;
    else if (!strcmp(name, "silu")) *act = MMP_UNARY_SILU;
    else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (quick_gelu, gelu, gelu_pytorch_tanh, relu, silu)", path, name);
    return MMP_OK;
}

/* Integer hyper-parameter `sec``key` from the config, in [lo, hi]; missing -> def (or an
 * error when def < 0). */
static enum mmp_status clip_cfg_int(const mmp_json *cfg, const char *path, const char *sec, const char *key, int64_t def,
                                  int64_t lo, int64_t hi, int32_t *out) {
    char k[128];
    snprintf(k, sizeof k, "%s%s", sec, key);
    int64_t v = def;
    if (cfg && mmp_json_has(cfg, k)) {
        enum mmp_status s = mmp_json_get_int(cfg, k, &v);
        if (s != MMP_OK) return s;
    } else if (def < 0) {
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: config has no '%s'", path, k);
    }
    if (v < lo || v > hi)
        return mmp__error(MMP_ERR_FORMAT, "%s: config '%s' = %lld is out of range [%lld, %lld]", path, k, (long long)v,
                          (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return MMP_OK;
}

/* Compute g with backend be (created on first use / when n_threads changes). */
static enum mmp_status clip_backend(mmp_backend **be, int *be_threads, int n_threads) {
    if (n_threads <= 0) n_threads = 1;
    if (*be && *be_threads == n_threads) return MMP_OK;
    mmp_backend_free(*be);
    *be = mmp_backend_cpu_new(n_threads);
    *be_threads = n_threads;
    return *be ? MMP_OK : MMP_ERR_NOMEM;
}


/* Without a config (single-file checkpoints): the sizes from the tensor shapes. Returns the
 * number of layers (probing encoder.layers.N.layer_norm1.weight), and the fc1 width. */
static int count_layers(clip_w *ws, int64_t *n_ff) {
    char n[192];
    int nl = 0;
    for (; nl < 1024; nl++) {
        snprintf(n, sizeof n, "%sencoder.layers.%d.layer_norm1.weight", ws->prefix, nl);
        if (!mmp_modelfile_find(ws->mf, n)) break;
    }
    snprintf(n, sizeof n, "%sencoder.layers.0.mlp.fc1.weight", ws->prefix);
    const mmp_tensor_info *t = mmp_modelfile_find(ws->mf, n);
    *n_ff = t && t->n_dims == 2 ? t->ne[1] : 0;
    mmp_clear_error();
    return nl;
}

static const mmp_tensor_info *find_p(clip_w *ws, const char *name) {
    char n[192];
    snprintf(n, sizeof n, "%s%s", ws->prefix, name);
    const mmp_tensor_info *t = mmp_modelfile_find(ws->mf, n);
    mmp_clear_error();
    return t;
}

/* ---------------- vision ---------------- */

struct mmp_vit {
    clip_w ws;
    mmp_vit_hparams hp;
    mmp_preproc pre;
    wt cls, patch_w, patch_b, pos, pre_ln_w, pre_ln_b, post_ln_w, post_ln_b;
    /* SigLIP attention-pool head */
    wt probe, in_w, in_b, out_w, out_b, head_ln_w, head_ln_b, hfc1_w, hfc1_b, hfc2_w, hfc2_b;
    clip_layer *layers;
    mmp_backend *be;
    int be_threads;
};

void mmp_vit_free(mmp_vit *v) {
    if (!v) return;
    mmp_backend_free(v->be);
    free(v->layers);
    clip_w_free(&v->ws);
    free(v);
}

const mmp_vit_hparams *mmp_vit_get_hparams(const mmp_vit *v) { return v ? &v->hp : NULL; }
const mmp_preproc *mmp_vit_get_preproc(const mmp_vit *v) { return v ? &v->pre : NULL; }

mmp_vit_params mmp_vit_params_default(void) {
    mmp_vit_params p;
    memset(&p, 0, sizeof p);
    p.layer = -1;
    p.n_threads = 1;
    return p;
}

static const char *const VIT_PREFIXES[] = {"vision_tower.vision_model.", "model.vision_tower.vision_model.",
                                           "vision_tower.", "model.vision_tower.", "vision_model.", "", NULL};

/* Bind every tensor of the tower once hp is known (HF or mmproj names). */
static enum mmp_status vit_bind_all(mmp_vit *v, bool has_cls) {
    clip_w *ws = &v->ws;
    mmp_vit_hparams *hp = &v->hp;
    enum mmp_status s;
    int64_t d = hp->n_embd, P = hp->patch_size;
    const int64_t vd[1] = {d}, pw[4] = {P, P, 3, d}, pos[2] = {d, hp->n_pos};
    if ((s = clip_bind(ws, &v->patch_w, "embeddings.patch_embedding.weight", 4, pw, true, false))) return s;
    /* conv2d reads F32/F16 kernels; anything else becomes f32 */
    if (v->patch_w.type != MMP_TYPE_F32 && v->patch_w.type != MMP_TYPE_F16 &&
        (s = clip_bind(ws, &v->patch_w, "embeddings.patch_embedding.weight", 4, pw, true, true)))
        return s;
    if ((s = clip_bind(ws, &v->patch_b, "embeddings.patch_embedding.bias", 1, vd, false, true)) ||
        (s = clip_bind(ws, &v->cls, "embeddings.class_embedding", 1, vd, has_cls, true)) ||
        (s = clip_bind(ws, &v->pos, "embeddings.position_embedding.weight", 2, pos, true, true)) ||
        (s = clip_bind(ws, &v->pre_ln_w, "pre_layrnorm.weight", 1, vd, false, true)) ||
        (s = clip_bind(ws, &v->pre_ln_b, "pre_layrnorm.bias", 1, vd, false, true)) ||
        (s = clip_bind(ws, &v->post_ln_w, "post_layernorm.weight", 1, vd, false, true)) ||
        (s = clip_bind(ws, &v->post_ln_b, "post_layernorm.bias", 1, vd, false, true)))
        return s;
    hp->has_pre_ln = v->pre_ln_w.data != NULL;
    hp->has_post_ln = v->post_ln_w.data != NULL;
    if (!(v->layers = mmp__calloc((size_t)hp->n_layer, sizeof *v->layers))) return MMP_ERR_NOMEM;
    for (int il = 0; il < hp->n_layer; il++)
        if ((s = clip_bind_layer(ws, &v->layers[il], il, d, hp->n_ff)) != MMP_OK) return s;
    /* SigLIP attention-pool head (optional: LLaVA-style towers drop it) */
    const int64_t probe[3] = {d, 1, 1}, inw[2] = {d, 3 * d}, inb[1] = {3 * d}, mdd[2] = {d, d}, mdf[2] = {d, hp->n_ff},
                  mfd[2] = {hp->n_ff, d}, vff[1] = {hp->n_ff};
    if ((s = clip_bind(ws, &v->probe, "head.probe", 3, probe, false, true))) return s;
    if (v->probe.data) {
        if ((s = clip_bind(ws, &v->in_w, "head.attention.in_proj_weight", 2, inw, true, true)) ||
            (s = clip_bind(ws, &v->in_b, "head.attention.in_proj_bias", 1, inb, true, true)) ||
            (s = clip_bind(ws, &v->out_w, "head.attention.out_proj.weight", 2, mdd, true, false)) ||
            (s = clip_bind(ws, &v->out_b, "head.attention.out_proj.bias", 1, vd, true, true)) ||
            (s = clip_bind(ws, &v->head_ln_w, "head.layernorm.weight", 1, vd, true, true)) ||
            (s = clip_bind(ws, &v->head_ln_b, "head.layernorm.bias", 1, vd, true, true)) ||
            (s = clip_bind(ws, &v->hfc1_w, "head.mlp.fc1.weight", 2, mdf, true, false)) ||
            (s = clip_bind(ws, &v->hfc1_b, "head.mlp.fc1.bias", 1, vff, true, true)) ||
            (s = clip_bind(ws, &v->hfc2_w, "head.mlp.fc2.weight", 2, mfd, true, false)) ||
            (s = clip_bind(ws, &v->hfc2_b, "head.mlp.fc2.bias", 1, vd, true, true)))
            return s;
        hp->has_head = true;
    }
    return MMP_OK;
}

/* llama.cpp mmproj GGUF: clip.vision.* keys, v.* tensors. */
static enum mmp_status vit_load_gguf(mmp_vit *v, const char *path) {
    clip_w *ws = &v->ws;
    const mmp_gguf *g = mmp_modelfile_gguf(ws->mf);
    ws->gguf = true;
    ws->prefix[0] = 0;
    if (!mmp_modelfile_find(ws->mf, "v.patch_embd.weight"))
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: no vision tower: the GGUF has no 'v.patch_embd.weight'", path);
    bool has_cls = mmp_modelfile_find(ws->mf, "v.class_embd") != NULL;
    mmp_clear_error();
    mmp_vit_hparams *hp = &v->hp;
    hp->arch = has_cls ? MMP_VIT_CLIP : MMP_VIT_SIGLIP;
    struct { const char *key; int32_t *out; uint32_t lo, hi; } K[] = {
        {"clip.vision.embedding_length", &hp->n_embd, 1, 65536},
        {"clip.vision.feed_forward_length", &hp->n_ff, 1, 1u << 20},
        {"clip.vision.attention.head_count", &hp->n_head, 1, 1024},
        {"clip.vision.block_count", &hp->n_layer, 1, 1024},
        {"clip.vision.image_size", &hp->image_size, 1, 16384},
        {"clip.vision.patch_size", &hp->patch_size, 1, 16384},
    };
    for (size_t i = 0; i < sizeof K / sizeof K[0]; i++) {
        uint32_t u;
        enum mmp_status s = mmp_gguf_get_u32(g, K[i].key, &u);
        if (s != MMP_OK) return s;
        if (u < K[i].lo || u > K[i].hi)
            return mmp__error(MMP_ERR_FORMAT, "%s: '%s' = %u is out of range [%u, %u]", path, K[i].key, u, K[i].lo, K[i].hi);
        *K[i].out = (int32_t)u;
    }
    hp->n_channels = 3;
    if (hp->n_embd % hp->n_head || hp->image_size % hp->patch_size)
        return mmp__error(MMP_ERR_FORMAT, "%s: embedding_length %d / head_count %d or image_size %d / patch_size %d do not divide",
                          path, (int)hp->n_embd, (int)hp->n_head, (int)hp->image_size, (int)hp->patch_size);
    int32_t side = hp->image_size / hp->patch_size;
    hp->n_patches = side * side;
    hp->n_pos = hp->n_patches + (has_cls ? 1 : 0);
    float eps = 1e-5f;
    if (mmp_gguf_has(g, "clip.vision.attention.layer_norm_epsilon") &&
        mmp_gguf_get_f32(g, "clip.vision.attention.layer_norm_epsilon", &eps) != MMP_OK)
        return MMP_ERR_FORMAT;
    hp->eps = eps;
    /* clip.use_gelu: GELU (the erf form for CLIP as HF "gelu", the tanh form for SigLIP as
     * HF "gelu_pytorch_tanh"); otherwise quick_gelu. clip.use_silu: SiLU. */
    bool gelu = false, silu = false;
    if (mmp_gguf_has(g, "clip.use_gelu") && mmp_gguf_get_bool(g, "clip.use_gelu", &gelu) != MMP_OK) return MMP_ERR_FORMAT;
    if (mmp_gguf_has(g, "clip.use_silu") && mmp_gguf_get_bool(g, "clip.use_silu", &silu) != MMP_OK) return MMP_ERR_FORMAT;
    hp->act = silu ? MMP_UNARY_SILU : gelu ? (has_cls ? MMP_UNARY_GELU : MMP_UNARY_GELU_TANH) : MMP_UNARY_QUICK_GELU;
    enum mmp_status s = vit_bind_all(v, has_cls);
    if (s != MMP_OK) return s;
    v->pre = has_cls ? mmp_preproc_clip(hp->image_size) : mmp_preproc_siglip(hp->image_size);
    const char *keys[2] = {"clip.vision.image_mean", "clip.vision.image_std"};
    for (int k = 0; k < 2; k++) {
        const mmp_gguf_value *a;
        if (!mmp_gguf_has(g, keys[k])) continue;
        if ((s = mmp_gguf_get_arr(g, keys[k], &a)) != MMP_OK) return s;
        if (mmp_gguf_arr_n(a) != 3) return mmp__error(MMP_ERR_FORMAT, "%s: '%s' has %llu values, expected 3", path, keys[k],
                                                      (unsigned long long)mmp_gguf_arr_n(a));
        for (int c = 0; c < 3; c++) {
            double x;
            if ((s = mmp_gguf_arr_f64(a, (uint64_t)c, &x)) != MMP_OK) return s;
            if (k == 1 && !(x > 0)) return mmp__error(MMP_ERR_FORMAT, "%s: '%s'[%d] = %g", path, keys[k], c, x);
            (k ? v->pre.std : v->pre.mean)[c] = (float)x;
        }
    }
    return MMP_OK;
}

/* ws->mf is set (owned or borrowed) */
static enum mmp_status vit_load(mmp_vit *v, const char *path) {
    clip_w *ws = &v->ws;
    ws->path = path;
    if (mmp_modelfile_format(ws->mf) == MMP_MODELFILE_GGUF) return vit_load_gguf(v, path);
    const char *pfx = NULL;
    for (int i = 0; VIT_PREFIXES[i]; i++) {
        char n[160];
        snprintf(n, sizeof n, "%sembeddings.patch_embedding.weight", VIT_PREFIXES[i]);
        if (mmp_modelfile_find(ws->mf, n)) { pfx = VIT_PREFIXES[i]; break; }
    }
    mmp_clear_error();
    if (!pfx)
        return mmp__error(MMP_ERR_NOT_FOUND,
                          "%s: no vision tower: looked for '[vision_tower.[vision_model.]|vision_model.]embeddings.patch_embedding.weight'",
                          path);
    snprintf(ws->prefix, sizeof ws->prefix, "%s", pfx);
    const mmp_json *cfg = mmp_modelfile_config(ws->mf);
    const char *sec = cfg && mmp_json_has(cfg, "vision_config") ? "vision_config." : "";
    mmp_vit_hparams *hp = &v->hp;
    enum mmp_status s;
    /* CLIP has a class embedding; SigLIP has a patch-embedding bias and no class token. */
    char n[160];
    snprintf(n, sizeof n, "%sembeddings.class_embedding", pfx);
    bool has_cls = mmp_modelfile_find(ws->mf, n) != NULL;
    mmp_clear_error();
    hp->arch = has_cls ? MMP_VIT_CLIP : MMP_VIT_SIGLIP;
    /* defaults when the config lacks a key: the tensor shapes (head size 64 assumed) */
    const mmp_tensor_info *pwi = find_p(ws, "embeddings.patch_embedding.weight"),
                          *pe = find_p(ws, "embeddings.position_embedding.weight");
    int64_t def_ff = 0, def_nl = count_layers(ws, &def_ff);
    int64_t def_d = pwi && pwi->n_dims == 4 ? pwi->ne[3] : 768, def_p = pwi ? pwi->ne[0] : 16;
    int64_t np_ = pe && pe->n_dims == 2 ? pe->ne[1] - (has_cls ? 1 : 0) : 196, side_ = (int64_t)sqrt((double)np_);
    if ((s = clip_cfg_int(cfg, path, sec, "hidden_size", def_d, 1, 65536, &hp->n_embd)) ||
        (s = clip_cfg_int(cfg, path, sec, "intermediate_size", def_ff > 0 ? def_ff : 4 * def_d, 1, 1 << 20, &hp->n_ff)) ||
        (s = clip_cfg_int(cfg, path, sec, "num_attention_heads", def_d >= 64 ? def_d / 64 : 1, 1, 1024, &hp->n_head)) ||
        (s = clip_cfg_int(cfg, path, sec, "num_hidden_layers", def_nl > 0 ? def_nl : 12, 1, 1024, &hp->n_layer)) ||
        (s = clip_cfg_int(cfg, path, sec, "image_size", side_ * def_p, 1, 16384, &hp->image_size)) ||
        (s = clip_cfg_int(cfg, path, sec, "patch_size", def_p, 1, 16384, &hp->patch_size)) ||
        (s = clip_cfg_int(cfg, path, sec, "num_channels", 3, 3, 3, &hp->n_channels)))
        return s;
    if (hp->n_embd % hp->n_head)
        return mmp__error(MMP_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                          (int)hp->n_embd, (int)hp->n_head);
    if (hp->image_size % hp->patch_size)
        return mmp__error(MMP_ERR_FORMAT, "%s: image_size %d is not a multiple of patch_size %d", path,
                          (int)hp->image_size, (int)hp->patch_size);
    int32_t side = hp->image_size / hp->patch_size;
    hp->n_patches = side * side;
    hp->n_pos = hp->n_patches + (has_cls ? 1 : 0);
    double eps = has_cls ? 1e-5 : 1e-6;
    char k[96];
    snprintf(k, sizeof k, "%slayer_norm_eps", sec);
    if (cfg && mmp_json_has(cfg, k) && (s = mmp_json_get_float(cfg, k, &eps)) != MMP_OK) return s;
    hp->eps = (float)eps;
    const char *act = has_cls ? "quick_gelu" : "gelu_pytorch_tanh";
    snprintf(k, sizeof k, "%shidden_act", sec);
    if (cfg && mmp_json_has(cfg, k) && (s = mmp_json_get_string(cfg, k, &act)) != MMP_OK) return s;
    if ((s = clip_act(path, act, &hp->act)) != MMP_OK) return s;

    if ((s = vit_bind_all(v, has_cls)) != MMP_OK) return s;
    /* image processor */
    v->pre = has_cls ? mmp_preproc_clip(hp->image_size) : mmp_preproc_siglip(hp->image_size);
    if (cfg && has_cls && mmp_json_has(cfg, "vision_config")) {
        /* LLaVA-1.5 (pad) when the config says so */
        const char *ar;
        if (mmp_json_get_string(cfg, "image_aspect_ratio", &ar) == MMP_OK && !strcmp(ar, "pad")) v->pre.pad_square = true;
        mmp_clear_error();
    }
    if (mmp_modelfile_has_file(ws->mf, "preprocessor_config.json")) {
        char *pp = mmp_modelfile_file_path(ws->mf, "preprocessor_config.json");
        mmp_json *j = pp ? mmp_json_open(pp) : NULL;
        free(pp);
        if (!j) return MMP_ERR_FORMAT;
        s = mmp_preproc_from_json(j, &v->pre);
        mmp_json_free(j);
        if (s != MMP_OK) return s;
    }
    return MMP_OK;
}

mmp_vit *mmp_vit_load(const char *path) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_vit_load: no path");
    mmp_vit *v = mmp__calloc(1, sizeof *v);
    if (!v) return NULL;
    if (!(v->ws.mf = mmp_modelfile_open(path)) || vit_load(v, path) != MMP_OK) {
        mmp_vit_free(v);
        return NULL;
    }
    v->ws.path = mmp_modelfile_path(v->ws.mf);
    return v;
}

mmp_vit *mmp_vit_load_modelfile(const mmp_modelfile *mf) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_vit_load_modelfile: NULL model file");
    mmp_vit *v = mmp__calloc(1, sizeof *v);
    if (!v) return NULL;
    v->ws.mf = (mmp_modelfile *)mf;  /* borrowed: read only, never freed here */
    v->ws.borrowed = true;
    if (vit_load(v, mmp_modelfile_path(mf)) != MMP_OK) {
        mmp_vit_free(v);
        return NULL;
    }
    v->ws.path = mmp_modelfile_path(mf);
    return v;
}

int32_t mmp_vit_n_tokens(const mmp_vit *v, const mmp_vit_params *p) {
    if (!v) return 0;
    bool cls = v->hp.arch == MMP_VIT_CLIP && !(p && p->drop_cls);
    return v->hp.n_patches + (cls ? 1 : 0);
}

/* hidden_states index -> number of layers to run (0..n_layer); -1 on a bad index. */
static int resolve_layer(int32_t layer, int n_layer) {
    int l = layer < 0 ? n_layer + 1 + layer : layer;
    return (l < 0 || l > n_layer) ? -1 : l;
}

/* SigLIP MultiheadAttentionPoolingHead on h [d, T] (post-LN'd states) -> [d, 1]. */
static mmp_tensor *siglip_head(mmp_graph *g, const mmp_vit *v, mmp_tensor *h) {
    const mmp_vit_hparams *hp = &v->hp;
    int64_t d = hp->n_embd, T = h->ne[1], H = hp->n_head, hd = d / H;
    mmp_tensor *inw = clip_t(g, &v->in_w), *inb = clip_t(g, &v->in_b);
    if (!inw || !inb) return NULL;
    /* in_proj_weight [3d, d] (torch) = ne {d, 3d}: rows [0,d) q, [d,2d) k, [2d,3d) v */
    mmp_tensor *wq = mmp_view_2d(g, inw, d, d, inw->nb[1], 0);
    mmp_tensor *wk = mmp_view_2d(g, inw, d, d, inw->nb[1], (size_t)d * inw->nb[1]);
    mmp_tensor *wv = mmp_view_2d(g, inw, d, d, inw->nb[1], (size_t)(2 * d) * inw->nb[1]);
    mmp_tensor *bq = mmp_view_1d(g, inb, d, 0), *bk = mmp_view_1d(g, inb, d, (size_t)d * sizeof(float)),
               *bv = mmp_view_1d(g, inb, d, (size_t)(2 * d) * sizeof(float));
    mmp_tensor *probe = mmp_reshape_2d(g, clip_t(g, &v->probe), d, 1);
    mmp_tensor *q = mmp_add(g, mmp_mul_mat(g, mmp_cont(g, wq), probe), bq);
    mmp_tensor *k = mmp_add(g, mmp_mul_mat(g, mmp_cont(g, wk), h), bk);
    mmp_tensor *vv = mmp_add(g, mmp_mul_mat(g, mmp_cont(g, wv), h), bv);
    q = mmp_cont(g, mmp_permute(g, mmp_reshape_3d(g, q, hd, H, 1), 0, 2, 1, 3));
    k = mmp_cont(g, mmp_permute(g, mmp_reshape_3d(g, k, hd, H, T), 0, 2, 1, 3));
    vv = mmp_cont(g, mmp_permute(g, mmp_reshape_3d(g, vv, hd, H, T), 0, 2, 1, 3));
    mmp_tensor *a = mmp_reshape_2d(g, mmp_attn(g, q, k, vv, NULL, 1.0f / sqrtf((float)hd), false, 0), d, 1);
    mmp_tensor *x = clip_linear(g, a, &v->out_w, &v->out_b);
    mmp_tensor *y = mmp_layer_norm(g, x, clip_t(g, &v->head_ln_w), clip_t(g, &v->head_ln_b), hp->eps);
    y = mmp_unary(g, clip_linear(g, y, &v->hfc1_w, &v->hfc1_b), (enum mmp_unary)hp->act);
    return mmp_add(g, x, clip_linear(g, y, &v->hfc2_w, &v->hfc2_b));
}

enum mmp_status mmp_vit_encode(mmp_vit *v, const float *pixels, int32_t height, int32_t width,
                               const mmp_vit_params *pp, float *hidden, float *pooled) {
    if (!v || !pixels || !hidden) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_vit_encode: NULL argument");
    mmp_vit_params p = pp ? *pp : mmp_vit_params_default();
    const mmp_vit_hparams *hp = &v->hp;
    if (height != hp->image_size || width != hp->image_size)
        return mmp__error(MMP_ERR_SHAPE, "%s: pixels are %dx%d, the encoder wants %dx%d (position embeddings are not interpolated)",
                          v->ws.path, (int)width, (int)height, (int)hp->image_size, (int)hp->image_size);
    int nl = resolve_layer(p.layer, hp->n_layer);
    if (nl < 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: layer %d does not exist (hidden states 0..%d, or -1..-%d)", v->ws.path,
                          (int)p.layer, (int)hp->n_layer, (int)hp->n_layer + 1);
    if (p.post_ln && !hp->has_post_ln)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: post_ln asked but the model has no post_layernorm", v->ws.path);
    if (pooled && (hp->arch == MMP_VIT_CLIP ? !hp->has_post_ln : !hp->has_head || !hp->has_post_ln))
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: no pooled output: the model has no %s", v->ws.path,
                          hp->arch == MMP_VIT_CLIP ? "post_layernorm" : "attention-pool head");
    enum mmp_status s = clip_backend(&v->be, &v->be_threads, p.n_threads);
    if (s != MMP_OK) return s;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    if (!g) return MMP_ERR_NOMEM;
    int64_t d = hp->n_embd, np = hp->n_patches;
    /* pixels [3, H, W] = ne {W, H, 3} -> conv -> {side, side, d} -> [np, d] -> [d, np] */
    mmp_tensor *px = mmp_set_name(mmp_new_tensor_3d(g, MMP_TYPE_F32, width, height, 3), "pixels");
    mmp_tensor *x = mmp_conv2d(g, clip_t(g, &v->patch_w), px, hp->patch_size, hp->patch_size, 0, 0, 1, 1);
    x = mmp_cont(g, mmp_transpose(g, mmp_reshape_2d(g, x, np, d)));
    if (v->patch_b.data) x = mmp_add(g, x, clip_t(g, &v->patch_b));
    if (hp->arch == MMP_VIT_CLIP) x = mmp_concat(g, mmp_reshape_2d(g, clip_t(g, &v->cls), d, 1), x, 1);
    x = mmp_add(g, x, clip_t(g, &v->pos));
    if (hp->has_pre_ln) x = mmp_layer_norm(g, x, clip_t(g, &v->pre_ln_w), clip_t(g, &v->pre_ln_b), hp->eps);
    mmp_tensor *sel = nl == 0 ? x : NULL;
    int run = pooled ? hp->n_layer : nl;
    for (int il = 0; il < run; il++) {
        x = clip_layer_build(g, x, &v->layers[il], hp->n_head, hp->eps, (enum mmp_unary)hp->act, false);
        if (il + 1 == nl) sel = x;
    }
    mmp_tensor *out = sel;
    if (out && hp->arch == MMP_VIT_CLIP && p.drop_cls)
        out = mmp_cont(g, mmp_view_2d(g, out, d, out->ne[1] - 1, out->nb[1], out->nb[1]));
    if (out && p.post_ln) out = mmp_layer_norm(g, out, clip_t(g, &v->post_ln_w), clip_t(g, &v->post_ln_b), hp->eps);
    if (out && out == sel) out = mmp_cont(g, out);  /* its own output node */
    mmp_set_output(out);
    mmp_tensor *pool = NULL;
    if (pooled && x) {
        if (hp->arch == MMP_VIT_CLIP) {
            mmp_tensor *c = mmp_view_2d(g, x, d, 1, x->nb[1], 0);
            pool = mmp_layer_norm(g, mmp_cont(g, c), clip_t(g, &v->post_ln_w), clip_t(g, &v->post_ln_b), hp->eps);
        } else {
            mmp_tensor *h = mmp_layer_norm(g, x, clip_t(g, &v->post_ln_w), clip_t(g, &v->post_ln_b), hp->eps);
            pool = siglip_head(g, v, h);
        }
        mmp_set_output(pool);
        if (!pool) out = NULL;
    }
    if (!out) {
        mmp__error_prefix("%s: building the encoder graph: ", v->ws.path);
        mmp_graph_free(g);
        return MMP_ERR_SHAPE;
    }
    if ((s = mmp_graph_plan(v->be, g)) != MMP_OK ||
        (s = mmp_backend_tensor_set(v->be, px, pixels, 0, (size_t)3 * width * height * sizeof(float))) != MMP_OK ||
        (s = mmp_graph_compute(v->be, g, p.abort_cb, p.abort_user)) != MMP_OK ||
        (s = mmp_backend_tensor_get(v->be, out, hidden, 0, (size_t)mmp_nelements(out) * sizeof(float))) != MMP_OK ||
        (pool && (s = mmp_backend_tensor_get(v->be, pool, pooled, 0, (size_t)d * sizeof(float))) != MMP_OK)) {
        mmp_graph_free(g);
        return s;
    }
    mmp_graph_free(g);
    return MMP_OK;
}

/* ---------------- CLIP text transformer ---------------- */

struct mmp_clip_text {
    clip_w ws;
    mmp_modelfile *root;     /* a diffusers pipeline root, when the path was one */
    mmp_clip_text_hparams hp;
    wt tok, pos, fin_w, fin_b;
    clip_layer *layers;
    mmp_backend *be;
    int be_threads;
};

void mmp_clip_text_free(mmp_clip_text *t) {
    if (!t) return;
    mmp_backend_free(t->be);
    free(t->layers);
    if (t->root || t->ws.borrowed) t->ws.mf = NULL;  /* the component belongs to the root / the caller */
    clip_w_free(&t->ws);
    mmp_modelfile_free(t->root);
    free(t);
}

const mmp_clip_text_hparams *mmp_clip_text_get_hparams(const mmp_clip_text *t) { return t ? &t->hp : NULL; }

mmp_clip_text_params mmp_clip_text_params_default(void) {
    mmp_clip_text_params p;
    memset(&p, 0, sizeof p);
    p.layer = -1;
    p.final_ln = true;
    p.n_threads = 1;
    return p;
}

/* mf: opened here (owned) or the caller's (borrowed, then t->ws.borrowed is set) */
static enum mmp_status text_load(mmp_clip_text *t, mmp_modelfile *mf, const char *path) {
    clip_w *ws = &t->ws;
    ws->path = path;
    if (mmp_modelfile_format(mf) == MMP_MODELFILE_PIPELINE) {
        if (!ws->borrowed) t->root = mf;
        const mmp_modelfile *c = mmp_modelfile_component(mf, "text_encoder");
        ws->mf = (mmp_modelfile *)c;
        if (!c) return MMP_ERR_NOT_FOUND;
    } else {
        ws->mf = mf;
    }
    const char *pfx = NULL;
    static const char *const P[] = {"text_model.", "", "cond_stage_model.transformer.text_model.", NULL};
    for (int i = 0; P[i]; i++) {
        char n[160];
        snprintf(n, sizeof n, "%sembeddings.token_embedding.weight", P[i]);
        if (mmp_modelfile_find(ws->mf, n)) { pfx = P[i]; break; }
    }
    mmp_clear_error();
    if (!pfx)
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: no CLIP text model: looked for '[text_model.]embeddings.token_embedding.weight'",
                          path);
    snprintf(ws->prefix, sizeof ws->prefix, "%s", pfx);
    const mmp_json *cfg = mmp_modelfile_config(ws->mf);
    const char *sec = cfg && mmp_json_has(cfg, "text_config") ? "text_config." : "";
    mmp_clip_text_hparams *hp = &t->hp;
    enum mmp_status s;
    int32_t eos = 2;
    /* defaults when the config lacks a key (single-file SD checkpoints have none): the tensor
     * shapes, head size 64 (OpenAI CLIP text models), legacy eos_token_id 2 (argmax pooling) */
    const mmp_tensor_info *te0 = find_p(ws, "embeddings.token_embedding.weight"),
                          *pe0 = find_p(ws, "embeddings.position_embedding.weight");
    int64_t def_ff = 0, def_nl = count_layers(ws, &def_ff);
    int64_t def_d = te0 && te0->n_dims == 2 ? te0->ne[0] : 512, def_v = te0 && te0->n_dims == 2 ? te0->ne[1] : 49408;
    int64_t def_ctx = pe0 && pe0->n_dims == 2 ? pe0->ne[1] : 77;
    if ((s = clip_cfg_int(cfg, path, sec, "hidden_size", def_d, 1, 65536, &hp->n_embd)) ||
        (s = clip_cfg_int(cfg, path, sec, "intermediate_size", def_ff > 0 ? def_ff : 4 * def_d, 1, 1 << 20, &hp->n_ff)) ||
        (s = clip_cfg_int(cfg, path, sec, "num_attention_heads", def_d >= 64 ? def_d / 64 : 1, 1, 1024, &hp->n_head)) ||
        (s = clip_cfg_int(cfg, path, sec, "num_hidden_layers", def_nl > 0 ? def_nl : 12, 1, 1024, &hp->n_layer)) ||
        (s = clip_cfg_int(cfg, path, sec, "max_position_embeddings", def_ctx, 1, 1 << 16, &hp->n_ctx)) ||
        (s = clip_cfg_int(cfg, path, sec, "vocab_size", def_v, 1, 1 << 24, &hp->n_vocab)) ||
        (s = clip_cfg_int(cfg, path, sec, "eos_token_id", 2, 0, 1 << 24, &eos)))
        return s;
    hp->eos_token_id = eos;
    if (hp->n_embd % hp->n_head)
        return mmp__error(MMP_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                          (int)hp->n_embd, (int)hp->n_head);
    double eps = 1e-5;
    char k[96];
    snprintf(k, sizeof k, "%slayer_norm_eps", sec);
    if (cfg && mmp_json_has(cfg, k) && (s = mmp_json_get_float(cfg, k, &eps)) != MMP_OK) return s;
    hp->eps = (float)eps;
    const char *act = "quick_gelu";
    snprintf(k, sizeof k, "%shidden_act", sec);
    if (cfg && mmp_json_has(cfg, k) && (s = mmp_json_get_string(cfg, k, &act)) != MMP_OK) return s;
    if ((s = clip_act(path, act, &hp->act)) != MMP_OK) return s;
    int64_t d = hp->n_embd;
    const int64_t vd[1] = {d}, te[2] = {d, hp->n_vocab}, pe[2] = {d, hp->n_ctx};
    if ((s = clip_bind(ws, &t->tok, "embeddings.token_embedding.weight", 2, te, true, false)) ||
        (s = clip_bind(ws, &t->pos, "embeddings.position_embedding.weight", 2, pe, true, true)) ||
        (s = clip_bind(ws, &t->fin_w, "final_layer_norm.weight", 1, vd, true, true)) ||
        (s = clip_bind(ws, &t->fin_b, "final_layer_norm.bias", 1, vd, true, true)))
        return s;
    if (!(t->layers = mmp__calloc((size_t)hp->n_layer, sizeof *t->layers))) return MMP_ERR_NOMEM;
    for (int il = 0; il < hp->n_layer; il++)
        if ((s = clip_bind_layer(ws, &t->layers[il], il, d, hp->n_ff)) != MMP_OK) return s;
    return MMP_OK;
}

mmp_clip_text *mmp_clip_text_load(const char *path) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_clip_text_load: no path");
    mmp_clip_text *t = mmp__calloc(1, sizeof *t);
    if (!t) return NULL;
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) { free(t); return NULL; }
    t->ws.mf = mf;
    if (text_load(t, mf, path) != MMP_OK) {
        mmp_clip_text_free(t);
        return NULL;
    }
    t->ws.path = mmp_modelfile_path(t->root ? t->root : t->ws.mf);
    return t;
}

mmp_clip_text *mmp_clip_text_load_modelfile(const mmp_modelfile *mf) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_clip_text_load_modelfile: NULL model file");
    mmp_clip_text *t = mmp__calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ws.borrowed = true;
    if (text_load(t, (mmp_modelfile *)mf, mmp_modelfile_path(mf)) != MMP_OK) {
        mmp_clip_text_free(t);
        return NULL;
    }
    t->ws.path = mmp_modelfile_path(mf);
    return t;
}

enum mmp_status mmp_clip_text_encode(mmp_clip_text *t, const int32_t *tokens, int32_t n, const mmp_clip_text_params *pp,
                                     float *hidden, float *pooled) {
    if (!t || !tokens || !hidden) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_clip_text_encode: NULL argument");
    mmp_clip_text_params p = pp ? *pp : mmp_clip_text_params_default();
    const mmp_clip_text_hparams *hp = &t->hp;
    if (n <= 0 || n > hp->n_ctx)
        return mmp__error(MMP_ERR_LIMIT, "%s: %d tokens, the text encoder takes 1..%d", t->ws.path, (int)n, (int)hp->n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: token %d at position %d is outside the vocabulary (%d)", t->ws.path,
                              (int)tokens[i], (int)i, (int)hp->n_vocab);
    int nl = resolve_layer(p.layer, hp->n_layer);
    if (nl < 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: layer %d does not exist (hidden states 0..%d, or -1..-%d)", t->ws.path,
                          (int)p.layer, (int)hp->n_layer, (int)hp->n_layer + 1);
    /* pooled position (transformers CLIPTextTransformer): eos_token_id == 2 is the legacy
     * config -> position of the largest id; else the first position holding eos (0 if none). */
    int32_t pos_eos = 0;
    for (int32_t i = 0; i < n; i++) {
        if (hp->eos_token_id == 2 ? tokens[i] > tokens[pos_eos] : tokens[i] == hp->eos_token_id) {
            pos_eos = i;
            if (hp->eos_token_id != 2) break;
        }
    }
    enum mmp_status s = clip_backend(&t->be, &t->be_threads, p.n_threads);
    if (s != MMP_OK) return s;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    if (!g) return MMP_ERR_NOMEM;
    int64_t d = hp->n_embd;
    mmp_tensor *ids = mmp_set_name(mmp_new_tensor_1d(g, MMP_TYPE_I32, n), "tokens");
    mmp_tensor *pos = clip_t(g, &t->pos);
    mmp_tensor *x = mmp_get_rows(g, clip_t(g, &t->tok), ids);
    x = mmp_add(g, x, mmp_view_2d(g, pos, d, n, pos ? pos->nb[1] : 0, 0));
    mmp_tensor *sel = nl == 0 ? x : NULL;
    int run = pooled ? hp->n_layer : nl;
    for (int il = 0; il < run; il++) {
        x = clip_layer_build(g, x, &t->layers[il], hp->n_head, hp->eps, (enum mmp_unary)hp->act, true);
        if (il + 1 == nl) sel = x;
    }
    mmp_tensor *out = sel;
    if (out && p.final_ln) out = mmp_layer_norm(g, out, clip_t(g, &t->fin_w), clip_t(g, &t->fin_b), hp->eps);
    else if (out) out = mmp_cont(g, out);
    mmp_set_output(out);
    mmp_tensor *pool = NULL;
    if (pooled && x) {
        mmp_tensor *r = mmp_cont(g, mmp_view_2d(g, x, d, 1, x->nb[1], (size_t)pos_eos * x->nb[1]));
        pool = mmp_set_output(mmp_layer_norm(g, r, clip_t(g, &t->fin_w), clip_t(g, &t->fin_b), hp->eps));
        if (!pool) out = NULL;
    }
    if (!out) {
        mmp__error_prefix("%s: building the text encoder graph: ", t->ws.path);
        mmp_graph_free(g);
        return MMP_ERR_SHAPE;
    }
    if ((s = mmp_graph_plan(t->be, g)) != MMP_OK ||
        (s = mmp_backend_tensor_set(t->be, ids, tokens, 0, (size_t)n * sizeof(int32_t))) != MMP_OK ||
        (s = mmp_graph_compute(t->be, g, p.abort_cb, p.abort_user)) != MMP_OK ||
        (s = mmp_backend_tensor_get(t->be, out, hidden, 0, (size_t)n * d * sizeof(float))) != MMP_OK ||
        (pool && (s = mmp_backend_tensor_get(t->be, pool, pooled, 0, (size_t)d * sizeof(float))) != MMP_OK)) {
        mmp_graph_free(g);
        return s;
    }
    mmp_graph_free(g);
    return MMP_OK;
}

/* ---------------- stage kinds ----------------
 * encoder.clip / encoder.siglip: pixels [3, S, S] -> hidden [n, D]. Options:
 *   layer=N     hidden_states index (default: the config's vision_feature_layer when there
 *               is one (LLaVA), else -1)
 *   drop_cls=0|1  drop the class token (default: 1 when vision_feature_select_strategy is
 *               "default" (LLaVA), else 0)
 *   post_ln=0|1 apply post_layernorm (default 0 for CLIP, 1 for SigLIP with layer -1:
 *               HF last_hidden_state)
 *   pooled=1    output the pooled vector [1, D] instead (CLIP pooler / SigLIP head)
 * encoder.clip_text: tokens [n] -> hidden [n, D] (conditioning), pooled [1, D]. Options:
 *   layer=N (default -1), final_ln=0|1 (default 1): clip-skip 2 = layer=-2;
 *   clip_skip=N  as Stable Diffusion UIs and mmp_sd_encode_prompt: 0 or 1 the last layer,
 *               N >= 2 hidden_states[-N] with the final LN (overrides layer / final_ln).
 *   model may be a Stable Diffusion root (diffusers folder with model_index.json or a
 *   single-file checkpoint): its text_encoder is used from the model shared through the store
 *   (core/sd-impl.h), with aux = the VAE override and the SD load options tokenizer=DIR,
 *   ldm_heads=N, ldm_groups=N, ldm_text_heads=N, so that the sampler stage meets the same
 *   loaded model.
 * Models come through the model store (store-impl.h): the ViT via mmp__vit_ref, the text model
 * under tag "clip_text" (both keep scratch state: shared within one pipeline). */

#include "mmpipe/stage.h"
#include "../core/stage-impl.h"
#include "../core/store-impl.h"
#include "../core/sd-impl.h"

typedef struct enc_stage {
    mmp__model_ref ref;     /* the ViT, the text model or the SD root holding it */
    mmp_vit *v;
    mmp_clip_text *t;
    mmp_vit_params vp;
    mmp_clip_text_params tp;
    bool pooled;
} enc_stage;

static void enc_stage_destroy(void *state) {
    enc_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

/* "key=value,key=value" (mmp__opts_parse: "\," escapes a comma): integer values for `keys`;
 * other keys go to `extra` (may be NULL: then they are errors), which returns 1 if it took the
 * key, 0 if not, -1 on a bad value. */
typedef int (*extra_opt_fn)(const char *kind, const char *key, const char *val, void *ctx);
static enum mmp_status parse_opts(const char *kind, const char *opt, const char *const *keys, int64_t *vals, bool *set,
                                  extra_opt_fn extra, void *ctx) {
    mmp__opt items[16];
    char *store = NULL;
    int n = mmp__opts_parse(kind, opt, items, 16, &store);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        int k = -1;
        for (int j = 0; keys[j]; j++)
            if (!strcmp(items[i].key, keys[j])) k = j;
        if (k >= 0) {
            /* "" or "auto": the default (a pipeline parameter left to the model) */
            if (!*items[i].val || !strcmp(items[i].val, "auto")) continue;
            char *e = NULL;
            long long v = strtoll(items[i].val, &e, 10);
            if (*items[i].val && !*e) { vals[k] = v; set[k] = true; continue; }
        } else if (extra) {
            int r = extra(kind, items[i].key, items[i].val, ctx);
            if (r > 0) continue;
            if (r < 0) { st = MMP_ERR_INVALID_ARG; break; }
        }
        char known[200] = "";
        for (int j = 0; keys[j]; j++) snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s=N", j ? ", " : "", keys[j]);
        if (extra) snprintf(known + strlen(known), sizeof known - strlen(known), ", tokenizer=DIR, ldm_heads=N, ldm_groups=N, ldm_text_heads=N");
        st = mmp__error(MMP_ERR_INVALID_ARG, "%s: bad option '%s=%s' (known: %s)", kind, items[i].key, items[i].val, known);
    }
    free(store);
    return st;
}

/* `want` for encoder.vit: either tower, as the model file says */
#define VIT_ANY ((enum mmp_vit_arch)-1)

static void *vit_stage_create(const char *kind, enum mmp_vit_arch want, const mmp_stage_params *p, mmp_port_type *in,
                              mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: no model path (-m)", kind);
    static const char *const keys[] = {"layer", "drop_cls", "post_ln", "pooled", NULL};
    int64_t val[4] = {0};
    bool set[4] = {false};
    if (parse_opts(kind, p->options, keys, val, set, NULL, NULL) != MMP_OK) return NULL;
    enc_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    if (mmp__vit_ref(p, p->model_path, &s->ref) != MMP_OK) { enc_stage_destroy(s); return NULL; }
    s->v = s->ref.model;
    const mmp_vit_hparams *hp = mmp_vit_get_hparams(s->v);
    if (want != VIT_ANY && hp->arch != want) {
        bool clip = hp->arch == MMP_VIT_CLIP;
        enc_stage_destroy(s);
        return mmp__error_null(MMP_ERR_UNSUPPORTED, "%s: %s is a %s vision tower; use encoder.%s", kind, p->model_path,
                               clip ? "CLIP" : "SigLIP", clip ? "clip" : "siglip");
    }
    s->vp = mmp_vit_params_default();
    /* The feature layer and class token of an LLaVA model, as mtmd (core/mtmd.c) decides them:
     * a llama.cpp mmproj GGUF stores the tower only up to the feature layer and its clip.cpp
     * drops the class token (-1, drop); an HF LLaVA config says vision_feature_layer (default
     * -2) and vision_feature_select_strategy ("default" drops it). A bare vision model: the
     * last layer, every token. */
    const mmp_modelfile *vmf = s->v->ws.mf;
    const mmp_json *cfg = mmp_modelfile_config(vmf);
    const mmp_gguf *vg = mmp_modelfile_gguf(vmf);
    bool llava_proj = false;
    const char *mt = NULL;
    if (vg) llava_proj = mmp_gguf_get_bool(vg, "clip.has_llava_projector", &llava_proj) == MMP_OK && llava_proj;
    else if (cfg && mmp_json_get_string(cfg, "model_type", &mt) == MMP_OK) llava_proj = strstr(mt, "llava") != NULL;
    if (llava_proj) {
        s->vp.layer = vg ? -1 : -2;
        s->vp.drop_cls = true;
    }
    int64_t fl;
    const char *strat;
    if (cfg && mmp_json_get_int(cfg, "vision_feature_layer", &fl) == MMP_OK) s->vp.layer = (int32_t)fl;
    if (cfg && mmp_json_get_string(cfg, "vision_feature_select_strategy", &strat) == MMP_OK)
        s->vp.drop_cls = !strcmp(strat, "default");
    mmp_clear_error();
    s->vp.post_ln = hp->arch == MMP_VIT_SIGLIP && s->vp.layer == -1 && hp->has_post_ln;
    if (set[0]) s->vp.layer = (int32_t)val[0];
    if (set[1]) s->vp.drop_cls = val[1] != 0;
    if (set[2]) s->vp.post_ln = val[2] != 0;
    if (set[3]) s->pooled = val[3] != 0;
    if (resolve_layer(s->vp.layer, hp->n_layer) < 0) {
        int layer = s->vp.layer, nl = hp->n_layer;
        enc_stage_destroy(s);
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: layer=%d but the model has hidden states 0..%d", kind, layer, nl);
    }
    s->vp.n_threads = p->n_threads > 0 ? p->n_threads : 1;
    s->vp.abort_cb = p->abort_cb;
    s->vp.abort_user = p->cb_user;
    in[0].dims[1] = in[0].dims[2] = hp->image_size;
    out[0].dims[0] = s->pooled ? 1 : mmp_vit_n_tokens(s->v, &s->vp);
    out[0].dims[1] = hp->n_embd;
    return s;
}

static void *clip_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    return vit_stage_create("encoder.clip", MMP_VIT_CLIP, p, in, out);
}
static void *siglip_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    return vit_stage_create("encoder.siglip", MMP_VIT_SIGLIP, p, in, out);
}

static enum mmp_status vit_stage_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                     mmp_array **outputs) {
    (void)p;
    enc_stage *s = state;
    const mmp_vit_hparams *hp = mmp_vit_get_hparams(s->v);
    const mmp_array *px = inputs[0];
    int64_t n = s->pooled ? 1 : mmp_vit_n_tokens(s->v, &s->vp), dims[2] = {n, hp->n_embd};
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 2, dims);
    if (!o) return MMP_ERR_NOMEM;
    enum mmp_status st;
    if (s->pooled) {
        /* the pooled vector needs every layer; the hidden state computed with it is discarded */
        float *tmp = mmp__malloc((size_t)mmp_vit_n_tokens(s->v, &s->vp) * hp->n_embd * sizeof(float));
        st = tmp ? mmp_vit_encode(s->v, px->data, (int32_t)px->dims[1], (int32_t)px->dims[2], &s->vp, tmp, o->data)
                 : MMP_ERR_NOMEM;
        free(tmp);
    } else {
        st = mmp_vit_encode(s->v, px->data, (int32_t)px->dims[1], (int32_t)px->dims[2], &s->vp, o->data, NULL);
    }
    if (st != MMP_OK) { mmp_array_free(o); return st; }
    outputs[0] = o;
    return MMP_OK;
}

#define VIT_KIND(NAME, SUMMARY, CREATE)                                                                            \
    {                                                                                                              \
        .name = NAME, .summary = SUMMARY, .n_inputs = 1, .n_outputs = 1,                                           \
        .inputs = {{"pixels", {MMP_ROLE_PIXELS, MMP_TYPE_F32, 3, {3, MMP_DIM_ANY, MMP_DIM_ANY}}, false,           \
                    "preprocessed image [3, S, S] (S = the model's image_size)"}},                                \
        .outputs = {{"hidden", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,              \
                     "hidden states of the chosen layer [n, D] (or [1, D] with pooled=1)"}},                       \
        .create = CREATE, .run = vit_stage_run, .destroy = enc_stage_destroy,                                      \
    }

const mmp_stage_kind mmp__stage_encoder_clip = VIT_KIND(
    "encoder.clip", "CLIP vision transformer: pixels -> hidden (options layer=N, drop_cls=0|1, post_ln=0|1, pooled=0|1)",
    clip_stage_create);
const mmp_stage_kind mmp__stage_encoder_siglip = VIT_KIND(
    "encoder.siglip", "SigLIP vision transformer: pixels -> hidden (options layer=N, post_ln=0|1, pooled=0|1)",
    siglip_stage_create);

static void *vit_any_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    return vit_stage_create("encoder.vit", VIT_ANY, p, in, out);
}
const mmp_stage_kind mmp__stage_encoder_vit = VIT_KIND(
    "encoder.vit", "CLIP or SigLIP vision transformer, as the model file says (the image side of LLaVA-style models): "
                   "pixels -> hidden (options layer=N, drop_cls=0|1, post_ln=0|1, pooled=0|1)",
    vit_any_stage_create);

static int sd_extra(const char *kind, const char *key, const char *val, void *ctx) { return mmp__sd_opt(kind, key, val, ctx); }

static void *text_model_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    (void)ctx;
    return mmp_clip_text_load_modelfile(mf);
}
static void text_model_free(void *t) { mmp_clip_text_free(t); }

static void *text_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    const char *K = "encoder.clip_text";
    if (!p || !p->model_path || !*p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: no model path (-m)", K);
    static const char *const keys[] = {"layer", "final_ln", "clip_skip", NULL};
    int64_t val[3] = {0};
    bool set[3] = {false};
    mmp__sd_opts so = {0};
    if (parse_opts(K, p->options, keys, val, set, sd_extra, &so) != MMP_OK) { mmp__sd_opts_free(&so); return NULL; }
    enc_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) { mmp__sd_opts_free(&so); return NULL; }
    enum mmp_status st;
    bool root = mmp__sd_is_root(p->model_path);
    if (root) {
        /* the SD model's text encoder, from the model the sampler stage shares */
        if ((st = mmp__sd_ref(p, p->model_path, p->aux_path, &so, &s->ref)) == MMP_OK) s->t = mmp_sd_text_encoder(s->ref.model);
    } else {
        st = mmp__model_get(p, "clip_text", p->model_path, NULL, MMP__MODEL_SCRATCH, text_model_load, text_model_free, NULL, &s->ref);
        if (st == MMP_OK) s->t = s->ref.model;
    }
    mmp__sd_opts_free(&so);
    if (st != MMP_OK) { enc_stage_destroy(s); return NULL; }
    const mmp_clip_text_hparams *hp = mmp_clip_text_get_hparams(s->t);
    s->tp = mmp_clip_text_params_default();
    if (set[0]) s->tp.layer = (int32_t)val[0];
    if (set[1]) s->tp.final_ln = val[1] != 0;
    if (set[2]) {
        /* as mmp_sd_encode_prompt */
        if (val[2] < 0 || val[2] > hp->n_layer) {
            int nl = hp->n_layer;
            long long cs = (long long)val[2];
            enc_stage_destroy(s);
            return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: clip_skip=%lld but the text encoder has %d layers", K, cs, nl);
        }
        s->tp.layer = val[2] >= 2 ? -(int32_t)val[2] : -1;
        s->tp.final_ln = true;
    }
    if (resolve_layer(s->tp.layer, hp->n_layer) < 0) {
        int layer = s->tp.layer, nl = hp->n_layer;
        enc_stage_destroy(s);
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: layer=%d but the model has hidden states 0..%d", K, layer, nl);
    }
    s->tp.n_threads = p->n_threads > 0 ? p->n_threads : 1;
    s->tp.abort_cb = p->abort_cb;
    s->tp.abort_user = p->cb_user;
    (void)in;
    out[0].dims[1] = hp->n_embd;
    out[1].dims[1] = hp->n_embd;
    return s;
}

static enum mmp_status text_stage_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                      mmp_array **outputs) {
    (void)p;
    enc_stage *s = state;
    const mmp_clip_text_hparams *hp = mmp_clip_text_get_hparams(s->t);
    const mmp_array *tok = inputs[0];
    int64_t n = tok->dims[0];
    if (n <= 0 || n > hp->n_ctx)
        return mmp__error(MMP_ERR_LIMIT, "encoder.clip_text: %lld tokens, the model takes 1..%d", (long long)n, (int)hp->n_ctx);
    int64_t dh[2] = {n, hp->n_embd}, dp[2] = {1, hp->n_embd};
    mmp_array *h = mmp_array_new(MMP_TYPE_F32, 2, dh), *pl = h ? mmp_array_new(MMP_TYPE_F32, 2, dp) : NULL;
    if (!pl) { mmp_array_free(h); return MMP_ERR_NOMEM; }
    enum mmp_status st = mmp_clip_text_encode(s->t, tok->data, (int32_t)n, &s->tp, h->data, pl->data);
    if (st != MMP_OK) { mmp_array_free(h); mmp_array_free(pl); return st; }
    outputs[0] = h;
    outputs[1] = pl;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_encoder_clip_text = {
    .name = "encoder.clip_text",
    .summary = "CLIP text transformer (or a Stable Diffusion root's text encoder): tokens -> conditioning [n, D], pooled [1, D] "
               "(options layer=N, final_ln=0|1, clip_skip=N; SD roots: aux=VAE, tokenizer=DIR, ldm_heads/ldm_groups/ldm_text_heads=N)",
    .n_inputs = 1,
    .n_outputs = 2,
    .inputs = {{"tokens", {MMP_ROLE_TOKENS, MMP_TYPE_I32, 1, {MMP_DIM_ANY}}, false, "token ids (<= max_position_embeddings)"}},
    .outputs = {
        {"hidden", {MMP_ROLE_CONDITIONING, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "final-LN hidden states [n, D]: the UNet's cross-attention context"},
        {"pooled", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {1, MMP_DIM_ANY}}, false, "final-LN state at the EOS token [1, D]"},
    },
    .create = text_stage_create,
    .run = text_stage_run,
    .destroy = enc_stage_destroy,
};
