/* BLIP-2 Q-Former (transformers Blip2QFormerModel, queries only) and its stage kind
 * `projector.qformer`.
 *
 * Shapes in the op graph are ggml order (ne[0] contiguous): the queries are x [D, n_q], the
 * image features img [E, n_img]; a torch Linear weight [out, in] is ne {in, out}.
 *
 * Per layer (BERT post-LN; what Blip2QFormerLayer does when query_length == n_q and there is
 * no text):
 *   x = LN(x + dense(SelfAttn(x)))                attention.{attention.{query,key,value}, output.{dense,LayerNorm}}
 *   x = LN(x + dense(CrossAttn(q=x, kv=img)))     crossattention.* (keys/values [E] -> [D])
 *   x = LN(x + W2 act(W1 x))                      intermediate_query.dense, output_query.{dense,LayerNorm}
 * The text FFN (`intermediate`, `output`) is never used by the queries and is not loaded. */
#include "mmpipe/projector.h"
#include "mmpipe/backend.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/stage.h"
#include "../core/util.h"
#include "../core/stage-impl.h"
#include "../core/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QF_MAX_LAYERS 256
#define QF_MAX_DIM    (1 << 16)

/* A weight as the graph will use it: in place over the mapped file when the dtype and the
 * alignment allow, else an owned f32 copy. */
typedef mmp__weight qf_w;

typedef struct qf_attn {
    qf_w q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln_w, ln_b;
} qf_attn;

typedef struct qf_layer {
    qf_attn self;
    bool has_cross;
    qf_attn cross;
    qf_w ff1_w, ff1_b, ff2_w, ff2_b, ln_w, ln_b;
} qf_layer;

struct mmp_qformer {
    const mmp_modelfile *mf;  /* borrowed, or own_mf */
    mmp_modelfile *own_mf;    /* opened by mmp_qformer_load */
    char *path;
    mmp_qformer_hparams hp;
    qf_w ln_w, ln_b;          /* embeddings LayerNorm [D] */
    qf_w query;               /* query_tokens [D, n_q] (n_query > 0) */
    qf_w proj_w, proj_b;      /* language_projection [D -> P] (proj_dim > 0) */
    qf_layer *layers;
};

/* ------------------------------------------------------------ weights ---- */

/* Load `name`; `mat` keeps F16/BF16 matrices as they are (mul_mat reads them), vectors are
 * always f32. n_dims/ne give the expected shape (ggml order); `why` says where the expected
 * sizes come from, for the error message. */
static enum mmp_status w_load(const mmp_qformer *q, qf_w *w, const char *name, bool mat, int n_dims,
                              const int64_t *ne, const char *why) {
    return mmp__weight_load(q->mf, q->path, "Q-Former", w, name, mat, n_dims, ne, why);
}

static enum mmp_status w_load2(const mmp_qformer *q, qf_w *w, const char *name, bool mat, int64_t ne0, int64_t ne1,
                               const char *why) {
    int64_t ne[2] = {ne0, ne1};
    return w_load(q, w, name, mat, mat ? 2 : 1, ne, why);
}

static const mmp_tensor_info *find_quiet(const mmp_modelfile *mf, const char *name) {
    const mmp_tensor_info *ti = mmp_modelfile_find(mf, name);
    if (!ti) mmp_clear_error();
    return ti;
}

/* ------------------------------------------------------------ loading ---- */

mmp_qformer_params mmp_qformer_params_default(void) {
    mmp_qformer_params p = {0};
    return p;
}

mmp_qformer_run_params mmp_qformer_run_params_default(void) {
    mmp_qformer_run_params p = {.n_threads = 1, .project = true};
    return p;
}

void mmp_qformer_free(mmp_qformer *q) {
    if (!q) return;
    if (q->layers) {
        for (int l = 0; l < q->hp.n_layers; l++) {
            qf_layer *L = &q->layers[l];
            qf_w *ws[] = {&L->self.q_w, &L->self.q_b, &L->self.k_w, &L->self.k_b, &L->self.v_w, &L->self.v_b,
                          &L->self.o_w, &L->self.o_b, &L->self.ln_w, &L->self.ln_b, &L->cross.q_w, &L->cross.q_b,
                          &L->cross.k_w, &L->cross.k_b, &L->cross.v_w, &L->cross.v_b, &L->cross.o_w, &L->cross.o_b,
                          &L->cross.ln_w, &L->cross.ln_b, &L->ff1_w, &L->ff1_b, &L->ff2_w, &L->ff2_b, &L->ln_w,
                          &L->ln_b};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) mmp__weight_free(ws[i]);
        }
        free(q->layers);
    }
    mmp__weight_free(&q->ln_w);
    mmp__weight_free(&q->ln_b);
    mmp__weight_free(&q->query);
    mmp__weight_free(&q->proj_w);
    mmp__weight_free(&q->proj_b);
    mmp_modelfile_free(q->own_mf);
    free(q->path);
    free(q);
}

const mmp_qformer_hparams *mmp_qformer_get_hparams(const mmp_qformer *q) { return q ? &q->hp : NULL; }

int32_t mmp_qformer_out_dim(const mmp_qformer *q, bool project) {
    if (!q) return 0;
    return project && q->hp.proj_dim > 0 ? q->hp.proj_dim : q->hp.hidden_size;
}

static enum mmp_status act_from_name(const char *path, const char *s, enum mmp_unary *out) {
    if (!strcmp(s, "gelu")) *out = MMP_UNARY_GELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast")) *out = MMP_UNARY_GELU_TANH;
    else if (!strcmp(s, "quick_gelu")) *out = MMP_UNARY_QUICK_GELU;
    else if (!strcmp(s, "relu")) *out = MMP_UNARY_RELU;
    else if (!strcmp(s, "silu") || !strcmp(s, "swish")) *out = MMP_UNARY_SILU;
    else
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: config hidden_act '%s' is not supported (gelu, gelu_new, "
                          "gelu_pytorch_tanh, quick_gelu, relu, silu)", path, s);
    return MMP_OK;
}

/* Hyper-parameters from config.json: a Blip2QFormerConfig at the root, or a Blip2Config with
 * `qformer_config`. Missing keys take the Blip2QFormerConfig defaults (12 heads, eps 1e-12,
 * gelu), as transformers does; without any config the heads must come from the params. */
static enum mmp_status read_config(mmp_qformer *q, const mmp_qformer_params *p) {
    const mmp_json *cfg = mmp_modelfile_config(q->mf);
    int64_t heads = 12;
    double eps = 1e-12;
    const char *act = "gelu";
    if (cfg) {
        const char *base = mmp_json_kind_of(cfg, "qformer_config") == MMP_JSON_OBJECT ? "qformer_config." : "";
        char key[96];
        enum mmp_status st;
        snprintf(key, sizeof key, "%snum_attention_heads", base);
        if (mmp_json_has(cfg, key) && (st = mmp_json_get_int(cfg, key, &heads)) != MMP_OK) return st;
        snprintf(key, sizeof key, "%slayer_norm_eps", base);
        if (mmp_json_has(cfg, key) && (st = mmp_json_get_float(cfg, key, &eps)) != MMP_OK) return st;
        snprintf(key, sizeof key, "%shidden_act", base);
        if (mmp_json_has(cfg, key) && (st = mmp_json_get_string(cfg, key, &act)) != MMP_OK) return st;
    } else if (!p || p->n_heads <= 0) {
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: no config.json next to the Q-Former weights: give the number of "
                          "heads (option heads=N)", q->path);
    }
    if (p && p->n_heads > 0) heads = p->n_heads;
    if (heads < 1 || heads > 4096) return mmp__error(MMP_ERR_FORMAT, "%s: num_attention_heads %lld out of range", q->path, (long long)heads);
    if (!(eps > 0 && eps < 1)) return mmp__error(MMP_ERR_FORMAT, "%s: layer_norm_eps %g out of range", q->path, eps);
    q->hp.n_heads = (int32_t)heads;
    q->hp.layer_norm_eps = (float)eps;
    return act_from_name(q->path, act, &q->hp.act);
}

/* The name prefix of the Q-Former: "" (Blip2QFormerModel), "qformer." (Blip2 models), or
 * anything else in front of "encoder.layer.0.attention.attention.query.weight" that also has
 * "layernorm.weight". Returns a malloc'ed prefix or NULL + message. */
static char *find_prefix(const mmp_qformer *q) {
    static const char tail[] = "encoder.layer.0.attention.attention.query.weight";
    const size_t lt = sizeof tail - 1;
    int64_t n = mmp_modelfile_n_tensors(q->mf);
    for (int64_t i = 0; i < n; i++) {
        const char *nm = mmp_modelfile_tensor(q->mf, i)->name;
        size_t l = strlen(nm);
        if (l < lt || strcmp(nm + l - lt, tail) != 0) continue;
        size_t lp = l - lt;
        if (lp > 200) continue;
        char ln[256];
        snprintf(ln, sizeof ln, "%.*slayernorm.weight", (int)lp, nm);
        if (!find_quiet(q->mf, ln)) continue;
        char *p = mmp__malloc(lp + 1);
        if (!p) return NULL;
        memcpy(p, nm, lp);
        p[lp] = 0;
        return p;
    }
    return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: no Q-Former found: no tensor named "
                           "'[qformer.]encoder.layer.0.attention.attention.query.weight' with a "
                           "'[qformer.]layernorm.weight' next to it", q->path);
}

/* Layers: count the consecutive encoder.layer.N and reject gaps / stray higher indices. */
static enum mmp_status count_layers(mmp_qformer *q, const char *pre) {
    size_t lp = strlen(pre);
    static const char mid[] = "encoder.layer.";
    long max_idx = -1;
    int64_t n = mmp_modelfile_n_tensors(q->mf);
    for (int64_t i = 0; i < n; i++) {
        const char *nm = mmp_modelfile_tensor(q->mf, i)->name;
        if (strncmp(nm, pre, lp) != 0 || strncmp(nm + lp, mid, sizeof mid - 1) != 0) continue;
        char *end;
        long idx = strtol(nm + lp + sizeof mid - 1, &end, 10);
        if (end == nm + lp + sizeof mid - 1 || *end != '.' || idx < 0) continue;
        if (idx >= QF_MAX_LAYERS)
            return mmp__error(MMP_ERR_LIMIT, "%s: tensor '%s': layer index %ld beyond the limit %d", q->path, nm, idx,
                              QF_MAX_LAYERS);
        if (idx > max_idx) max_idx = idx;
    }
    if (max_idx < 0) return mmp__error(MMP_ERR_NOT_FOUND, "%s: no Q-Former layers (%sencoder.layer.N.*)", q->path, pre);
    q->hp.n_layers = (int32_t)(max_idx + 1);
    return MMP_OK;
}

static enum mmp_status load_attn(mmp_qformer *q, qf_attn *a, const char *p, int64_t D, int64_t kv_in, const char *why_kv) {
    char n[320], why[160];
    snprintf(why, sizeof why, "hidden_size %lld from layernorm.weight", (long long)D);
    enum mmp_status st;
#define LD(field, suffix, mat, ne0, ne1, w)                                                       \
    do {                                                                                          \
        snprintf(n, sizeof n, "%s.%s", p, suffix);                                                \
        if ((st = w_load2(q, &a->field, n, mat, ne0, ne1, w)) != MMP_OK) return st;               \
    } while (0)
    LD(q_w, "attention.query.weight", true, D, D, why);
    LD(q_b, "attention.query.bias", false, D, 1, why);
    LD(k_w, "attention.key.weight", true, kv_in, D, why_kv);
    LD(k_b, "attention.key.bias", false, D, 1, why);
    LD(v_w, "attention.value.weight", true, kv_in, D, why_kv);
    LD(v_b, "attention.value.bias", false, D, 1, why);
    LD(o_w, "output.dense.weight", true, D, D, why);
    LD(o_b, "output.dense.bias", false, D, 1, why);
    LD(ln_w, "output.LayerNorm.weight", false, D, 1, why);
    LD(ln_b, "output.LayerNorm.bias", false, D, 1, why);
#undef LD
    return MMP_OK;
}

mmp_qformer *mmp_qformer_load(const char *path, const mmp_qformer_params *params) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_qformer_load: path is NULL");
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) return NULL;
    mmp_qformer *q = mmp_qformer_load_modelfile(mf, params);
    if (!q) {
        mmp_modelfile_free(mf);
        return NULL;
    }
    q->own_mf = mf;
    return q;
}

mmp_qformer *mmp_qformer_load_modelfile(const mmp_modelfile *mf, const mmp_qformer_params *params) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_qformer_load_modelfile: model file is NULL");
    const char *path = mmp_modelfile_path(mf);
    mmp_qformer *q = mmp__calloc(1, sizeof *q);
    if (!q) return NULL;
    char *pre = NULL, *outer = NULL;
    q->mf = mf;
    if (!(q->path = mmp__strdup(path))) goto fail;
    if (!(pre = find_prefix(q))) goto fail;
    if (read_config(q, params) != MMP_OK || count_layers(q, pre) != MMP_OK) goto fail;

    char n[320], why[200];
    /* D from the embeddings LayerNorm: every other size is checked against it */
    snprintf(n, sizeof n, "%slayernorm.weight", pre);
    const mmp_tensor_info *ln = mmp_modelfile_find(q->mf, n);
    if (!ln) goto fail;
    int64_t D = ln->ne[0];
    if (ln->n_dims != 1 || D < 1 || D > QF_MAX_DIM) {
        mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' must be a vector of at most %d, has %d dims and %lld elements", path,
                   n, QF_MAX_DIM, ln->n_dims, (long long)D);
        goto fail;
    }
    q->hp.hidden_size = (int32_t)D;
    if (D % q->hp.n_heads != 0) {
        mmp__error(MMP_ERR_SHAPE, "%s: hidden_size %lld is not a multiple of num_attention_heads %d", path, (long long)D,
                   q->hp.n_heads);
        goto fail;
    }
    snprintf(why, sizeof why, "hidden_size %lld from %slayernorm.weight", (long long)D, pre);
    if (w_load2(q, &q->ln_w, n, false, D, 1, why) != MMP_OK) goto fail;
    snprintf(n, sizeof n, "%slayernorm.bias", pre);
    if (w_load2(q, &q->ln_b, n, false, D, 1, why) != MMP_OK) goto fail;

    /* encoder width and FFN width from the first layer that has them */
    int64_t E = 0, I = 0;
    for (int l = 0; l < q->hp.n_layers && !E; l++) {
        snprintf(n, sizeof n, "%sencoder.layer.%d.crossattention.attention.key.weight", pre, l);
        const mmp_tensor_info *ti = find_quiet(q->mf, n);
        if (ti) E = ti->ne[0];
    }
    if (E < 1 || E > QF_MAX_DIM) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s: no layer of the Q-Former has cross-attention (%sencoder.layer.N.crossattention.*)"
                   " or its key width %lld is out of range", path, pre, (long long)E);
        goto fail;
    }
    snprintf(n, sizeof n, "%sencoder.layer.0.intermediate_query.dense.weight", pre);
    const mmp_tensor_info *ti = mmp_modelfile_find(q->mf, n);
    if (!ti) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s: Q-Former tensor '%s' is missing", path, n);
        goto fail;
    }
    I = ti->n_dims == 2 ? ti->ne[1] : 0;
    if (I < 1 || I > QF_MAX_DIM * 4) {
        mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' must be a [intermediate, %lld] matrix", path, n, (long long)D);
        goto fail;
    }
    q->hp.encoder_hidden_size = (int32_t)E;
    q->hp.intermediate_size = (int32_t)I;

    if (!(q->layers = mmp__calloc((size_t)q->hp.n_layers, sizeof *q->layers))) goto fail;
    char why_kv[200], why_i[200];
    snprintf(why_kv, sizeof why_kv, "encoder_hidden_size %lld from the first cross-attention key, hidden_size %lld",
             (long long)E, (long long)D);
    snprintf(why_i, sizeof why_i, "intermediate_size %lld from layer 0's intermediate_query, hidden_size %lld",
             (long long)I, (long long)D);
    for (int l = 0; l < q->hp.n_layers; l++) {
        qf_layer *L = &q->layers[l];
        char p[280];
        snprintf(p, sizeof p, "%sencoder.layer.%d.attention", pre, l);
        if (load_attn(q, &L->self, p, D, D, why) != MMP_OK) goto fail;
        snprintf(n, sizeof n, "%sencoder.layer.%d.crossattention.attention.query.weight", pre, l);
        L->has_cross = find_quiet(q->mf, n) != NULL;
        if (L->has_cross) {
            snprintf(p, sizeof p, "%sencoder.layer.%d.crossattention", pre, l);
            if (load_attn(q, &L->cross, p, D, E, why_kv) != MMP_OK) goto fail;
            q->hp.n_cross_layers++;
        }
        snprintf(n, sizeof n, "%sencoder.layer.%d.intermediate_query.dense.weight", pre, l);
        if (w_load2(q, &L->ff1_w, n, true, D, I, why_i) != MMP_OK) goto fail;
        snprintf(n, sizeof n, "%sencoder.layer.%d.intermediate_query.dense.bias", pre, l);
        if (w_load2(q, &L->ff1_b, n, false, I, 1, why_i) != MMP_OK) goto fail;
        snprintf(n, sizeof n, "%sencoder.layer.%d.output_query.dense.weight", pre, l);
        if (w_load2(q, &L->ff2_w, n, true, I, D, why_i) != MMP_OK) goto fail;
        snprintf(n, sizeof n, "%sencoder.layer.%d.output_query.dense.bias", pre, l);
        if (w_load2(q, &L->ff2_b, n, false, D, 1, why) != MMP_OK) goto fail;
        snprintf(n, sizeof n, "%sencoder.layer.%d.output_query.LayerNorm.weight", pre, l);
        if (w_load2(q, &L->ln_w, n, false, D, 1, why) != MMP_OK) goto fail;
        snprintf(n, sizeof n, "%sencoder.layer.%d.output_query.LayerNorm.bias", pre, l);
        if (w_load2(q, &L->ln_b, n, false, D, 1, why) != MMP_OK) goto fail;
    }

    /* query_tokens and language_projection sit next to "qformer." in a full BLIP-2 model */
    size_t lp = strlen(pre);
    if (!(outer = mmp__strdup(pre))) goto fail;
    if (lp >= 8 && strcmp(pre + lp - 8, "qformer.") == 0) outer[lp - 8] = 0;
    const char *qnames[2] = {"query_tokens", "query_embeds"};
    for (int k = 0; k < 2 && !q->hp.n_query; k++) {
        snprintf(n, sizeof n, "%s%s", outer, qnames[k]);
        const mmp_tensor_info *qt = find_quiet(q->mf, n);
        if (!qt) continue;
        /* [1, n_query, D] or [n_query, D] */
        int64_t nq = qt->ne[1];
        if (qt->ne[0] != D || qt->ne[2] != 1 || qt->ne[3] != 1 || nq < 1 || nq > QF_MAX_DIM) {
            char have[96];
            mmp__shape_torch(have, sizeof have, qt->n_dims > 0 ? qt->n_dims : 1, qt->ne);
            mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' is %s but the Q-Former needs [1, n_query, %lld] (%s)", path, n,
                       have, (long long)D, why);
            goto fail;
        }
        int64_t ne[2] = {D, nq};
        if (w_load(q, &q->query, n, false, 2, ne, why) != MMP_OK) goto fail;
        q->hp.n_query = (int32_t)nq;
    }
    snprintf(n, sizeof n, "%slanguage_projection.weight", outer);
    const mmp_tensor_info *pw = find_quiet(q->mf, n);
    if (pw) {
        int64_t P = pw->ne[1];
        if (pw->n_dims != 2 || pw->ne[0] != D || P < 1 || P > QF_MAX_DIM * 4) {
            char have[96];
            mmp__shape_torch(have, sizeof have, pw->n_dims > 0 ? pw->n_dims : 1, pw->ne);
            mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' is %s but must be [llm_dim, %lld] (%s)", path, n, have,
                       (long long)D, why);
            goto fail;
        }
        char whyp[200];
        snprintf(whyp, sizeof whyp, "llm width %lld from language_projection.weight", (long long)P);
        if (w_load2(q, &q->proj_w, n, true, D, P, why) != MMP_OK) goto fail;
        snprintf(n, sizeof n, "%slanguage_projection.bias", outer);
        if (w_load2(q, &q->proj_b, n, false, P, 1, whyp) != MMP_OK) goto fail;
        q->hp.proj_dim = (int32_t)P;
    }
    free(pre);
    free(outer);
    return q;
fail:
    free(pre);
    free(outer);
    mmp_qformer_free(q);
    return NULL;
}

/* ------------------------------------------------------------ compute ---- */

static mmp_tensor *leaf(mmp_graph *g, const qf_w *w) {
    mmp_tensor *t = mmp_new_tensor_ext(g, w->type, w->n_dims, w->ne, w->data);
    return mmp_set_name(t, "%s", w->name);
}

static mmp_tensor *linear(mmp_graph *g, mmp_tensor *x, const qf_w *w, const qf_w *b) {
    return mmp_add(g, mmp_mul_mat(g, leaf(g, w), x), leaf(g, b));
}

/* BERT attention block: LN(x + dense(MHA(q = x, kv = src))). x [D, Tq], src [E, Tk]. */
static mmp_tensor *attn_block(mmp_graph *g, const mmp_qformer *q, const qf_attn *a, mmp_tensor *x, mmp_tensor *src) {
    if (!x || !src) return NULL;
    int64_t D = q->hp.hidden_size, H = q->hp.n_heads, hd = D / H, Tq = x->ne[1], Tk = src->ne[1];
    mmp_tensor *qq = linear(g, x, &a->q_w, &a->q_b);     /* [D, Tq] */
    mmp_tensor *kk = linear(g, src, &a->k_w, &a->k_b);   /* [D, Tk] */
    mmp_tensor *vv = linear(g, src, &a->v_w, &a->v_b);   /* [D, Tk] */
    /* [D, T] -> [hd, H, T] -> [hd, T, H] (a strided view; mmp_attn reads it in place) */
    qq = mmp_permute(g, mmp_reshape_3d(g, qq, hd, H, Tq), 0, 2, 1, 3);
    kk = mmp_permute(g, mmp_reshape_3d(g, kk, hd, H, Tk), 0, 2, 1, 3);
    vv = mmp_permute(g, mmp_reshape_3d(g, vv, hd, H, Tk), 0, 2, 1, 3);
    mmp_tensor *o = mmp_attn(g, qq, kk, vv, NULL, 1.0f / sqrtf((float)hd), false, 0);  /* [hd, H, Tq] */
    o = mmp_reshape_2d(g, o, D, Tq);
    o = linear(g, o, &a->o_w, &a->o_b);
    return mmp_layer_norm(g, mmp_add(g, o, x), leaf(g, &a->ln_w), leaf(g, &a->ln_b), q->hp.layer_norm_eps);
}

enum mmp_status mmp_qformer_run(const mmp_qformer *q, const float *image, int64_t n_img, const float *queries,
                                int64_t n_query, float *out, const mmp_qformer_run_params *rp) {
    if (!q || !image || !out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_qformer_run: NULL model, image or output");
    mmp_qformer_run_params dp = mmp_qformer_run_params_default();
    if (!rp) rp = &dp;
    const mmp_qformer_hparams *hp = &q->hp;
    if (!queries) {
        if (hp->n_query <= 0)
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: the model has no query_tokens; give the queries [n_query, %d]",
                              q->path, hp->hidden_size);
        n_query = hp->n_query;
    }
    if (n_img < 1 || n_img > (1 << 20)) return mmp__error(MMP_ERR_INVALID_ARG, "%s: %lld image feature rows", q->path, (long long)n_img);
    if (n_query < 1 || n_query > (1 << 16)) return mmp__error(MMP_ERR_INVALID_ARG, "%s: %lld queries", q->path, (long long)n_query);
    bool project = rp->project && hp->proj_dim > 0;
    int64_t D = hp->hidden_size, E = hp->encoder_hidden_size;

    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    mmp_backend *be = g ? mmp_backend_cpu_new(rp->n_threads > 0 ? rp->n_threads : 1) : NULL;
    if (!be) {
        mmp_graph_free(g);
        return MMP_ERR_NOMEM;
    }
    enum mmp_status st = MMP_OK;
    mmp_tensor *img = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, E, n_img), "image");
    mmp_tensor *qin = queries ? mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, D, n_query), "queries") : leaf(g, &q->query);
    mmp_tensor *x = mmp_layer_norm(g, qin, leaf(g, &q->ln_w), leaf(g, &q->ln_b), hp->layer_norm_eps);
    for (int l = 0; l < hp->n_layers; l++) {
        const qf_layer *L = &q->layers[l];
        x = attn_block(g, q, &L->self, x, x);
        if (L->has_cross) x = attn_block(g, q, &L->cross, x, img);
        mmp_tensor *h = mmp_unary(g, linear(g, x, &L->ff1_w, &L->ff1_b), hp->act);
        h = linear(g, h, &L->ff2_w, &L->ff2_b);
        x = mmp_layer_norm(g, mmp_add(g, h, x), leaf(g, &L->ln_w), leaf(g, &L->ln_b), hp->layer_norm_eps);
    }
    if (project) x = linear(g, x, &q->proj_w, &q->proj_b);
    x = mmp_set_output(x);
    if (!x || !img || !qin) {
        st = MMP_ERR_SHAPE;
        mmp__error_prefix("%s: building the Q-Former graph: ", q->path);
        goto done;
    }
    if ((st = mmp_graph_plan(be, g)) != MMP_OK) goto done;
    memcpy(img->data, image, (size_t)(E * n_img) * sizeof(float));
    if (queries) memcpy(qin->data, queries, (size_t)(D * n_query) * sizeof(float));
    if ((st = mmp_graph_compute(be, g, rp->abort_cb, rp->abort_user)) != MMP_OK) goto done;
    memcpy(out, x->data, (size_t)(x->ne[0] * x->ne[1]) * sizeof(float));
done:
    mmp_backend_free(be);
    mmp_graph_free(g);
    return st;
}

/* ------------------------------------------------------------ the stage ---- */

#include "../core/store-impl.h"

/* The Q-Former comes from the model store: read-only (mmp_qformer_run takes it const), so one
 * is shared by every stage and thread; keyed by the load params (heads=N). */
typedef struct qf_stage {
    mmp__model_ref ref;
    const mmp_qformer *q;
    bool project;
} qf_stage;

static void qf_stage_destroy(void *state) {
    qf_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

static void *qf_model_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    return mmp_qformer_load_modelfile(mf, ctx);
}
static void qf_model_free(void *m) { mmp_qformer_free(m); }

/* "heads=N,project=0|1" (mmp__opts_parse: "\," escapes a comma). An empty value or "auto" keeps
 * the default (a pipeline parameter left ""): heads from config.json, project=1. */
#define QF_KNOWN "heads=N, project=0|1"
static enum mmp_status qf_parse_options(const char *opt, mmp_qformer_params *qp, bool *project) {
    const char *K = "projector.qformer";
    mmp__opt items[8];
    char *store = NULL;
    int n = mmp__opts_parse(K, opt, items, 8, &store);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        const char *k = items[i].key, *v = items[i].val;
        bool dflt = !*v || !strcmp(v, "auto");
        if (!strcmp(k, "heads")) {
            if (dflt) continue;
            char *e = NULL;
            long x = strtol(v, &e, 10);
            if (e == v || *e || x < 1 || x > 4096)
                st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option heads=%s, expected an integer in 1..4096 (known: " QF_KNOWN ")", K, v);
            else qp->n_heads = (int32_t)x;
        } else if (!strcmp(k, "project")) {
            if (dflt) continue;
            if (!strcmp(v, "0") || !strcmp(v, "1")) *project = v[0] == '1';
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option project=%s, expected 0 or 1 (known: " QF_KNOWN ")", K, v);
        } else {
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (known: " QF_KNOWN ")", K, k);
        }
    }
    free(store);
    return st;
}
#undef QF_KNOWN

static void *qf_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "projector.qformer: no model path (-m)");
    mmp_qformer_params qp = mmp_qformer_params_default();
    qf_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->project = true;
    if (qf_parse_options(p->options, &qp, &s->project) != MMP_OK) {
        qf_stage_destroy(s);
        return NULL;
    }
    char key[32];
    snprintf(key, sizeof key, "heads=%d", (int)qp.n_heads);
    if (mmp__model_get(p, "qformer", p->model_path, key, 0, qf_model_load, qf_model_free, &qp, &s->ref) != MMP_OK) {
        qf_stage_destroy(s);
        return NULL;
    }
    s->q = s->ref.model;
    const mmp_qformer_hparams *h = mmp_qformer_get_hparams(s->q);
    in[0].dims[1] = h->encoder_hidden_size;   /* image [*, E] */
    in[1].dims[1] = h->hidden_size;           /* queries [n_query, D] */
    if (h->n_query > 0) {
        in[1].dims[0] = h->n_query;
        out[0].dims[0] = h->n_query;
    }
    out[0].dims[1] = mmp_qformer_out_dim(s->q, s->project);
    return s;
}

static enum mmp_status qf_stage_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                    mmp_array **outputs) {
    qf_stage *s = state;
    const mmp_array *img = inputs[0], *qr = inputs[1];
    const mmp_qformer_hparams *h = mmp_qformer_get_hparams(s->q);
    if (!img) return mmp__error(MMP_ERR_INVALID_ARG, "projector.qformer: input 'image' is required");
    if (!qr && h->n_query <= 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "projector.qformer: the model has no query_tokens: give the input 'queries' [n, %d]",
                          h->hidden_size);
    int64_t nq = qr ? qr->dims[0] : h->n_query;
    int64_t dims[2] = {nq, mmp_qformer_out_dim(s->q, s->project)};
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 2, dims);
    if (!o) return MMP_ERR_NOMEM;
    mmp_qformer_run_params rp = mmp_qformer_run_params_default();
    rp.n_threads = p && p->n_threads > 0 ? p->n_threads : 1;
    rp.project = s->project;
    rp.abort_cb = p ? p->abort_cb : NULL;
    rp.abort_user = p ? p->cb_user : NULL;
    enum mmp_status st = mmp_qformer_run(s->q, img->data, img->dims[0], qr ? qr->data : NULL, nq, o->data, &rp);
    if (st != MMP_OK) {
        mmp_array_free(o);
        return st;
    }
    outputs[0] = o;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_projector_qformer = {
    .name = "projector.qformer",
    .summary = "BLIP-2 Q-Former (+ language_projection when present): image features -> query embeddings. "
               "Options: heads=N (overrides config.json), project=0|1 (default 1)",
    .n_inputs = 2,
    .n_outputs = 1,
    .inputs = {
        {"image", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "image encoder hidden states [n_patches, encoder_hidden_size]"},
        {"queries", {MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, true,
         "query embeddings [n_query, hidden_size] (default: the model's query_tokens)"},
    },
    .outputs = {
        {"embeddings", {MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "[n_query, llm_dim] after language_projection (or [n_query, hidden_size] without it / project=0)"},
    },
    .create = qf_stage_create,
    .run = qf_stage_run,
    .destroy = qf_stage_destroy,
};
