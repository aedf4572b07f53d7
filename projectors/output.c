/* NExT-GPT / GILL style output projector (signal-token hidden states -> diffusion
 * conditioning) and its stage kind `projector.output`.
 *
 *   x   = fc_in(h)                                      h [in, n_sig] -> x [d, n_sig]
 *   mem = encoder(x) (+ encoder.norm)                   torch.nn.TransformerEncoderLayer xN
 *   y   = decoder(queries [d, n_q], mem) (+ decoder.norm)  torch.nn.TransformerDecoderLayer xN
 *   out = fc_out(y)                                     [out, n_q]
 * (ggml order: ne[0] contiguous; a torch Linear weight [out, in] is ne {in, out}.)
 *
 * torch layers, norm_first = True:  x += SA(n1(x)); [y += MHA(n2(y), mem);] x += FF(nlast(x))
 *                norm_first = False: x = n1(x + SA(x)); [y = n2(y + MHA(y, mem));] x = nlast(x + FF(x))
 * FF(x) = linear2(act(linear1(x))). MultiheadAttention packs q, k, v in in_proj_weight
 * [3d, d] (ne {d, 3d}): rows [0, d) are q, [d, 2d) k, [2d, 3d) v; we take them as views. */
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

#define OP_MAX_LAYERS 256
#define OP_MAX_DIM    (1 << 16)

typedef mmp__weight op_w;

typedef struct op_mha {
    op_w in_w, in_b, out_w, out_b;
} op_mha;

typedef struct op_layer {
    op_mha sa, ca;              /* ca: decoder layers only */
    op_w ff1_w, ff1_b, ff2_w, ff2_b;
    op_w n1_w, n1_b, n2_w, n2_b, n3_w, n3_b;  /* n3: decoder layers only */
} op_layer;

struct mmp_outproj {
    const mmp_modelfile *mf;  /* borrowed, or own_mf */
    mmp_modelfile *own_mf;    /* opened by mmp_outproj_load */
    char *path;
    mmp_outproj_hparams hp;
    op_w fc_in_w, fc_in_b, fc_out_w, fc_out_b, queries;
    op_w enc_n_w, enc_n_b, dec_n_w, dec_n_b;
    op_layer *enc, *dec;
};

/* ------------------------------------------------------------ weights ---- */

static const mmp_tensor_info *find_quiet(const mmp_modelfile *mf, const char *name) {
    const mmp_tensor_info *ti = mmp_modelfile_find(mf, name);
    if (!ti) mmp_clear_error();
    return ti;
}

/* Load `name` with the expected shape (ggml order, trailing 1s allowed); `why` says where the
 * expected sizes come from. Matrices (mat) stay F16/BF16 in place; vectors become f32. */
static enum mmp_status w_load(const mmp_outproj *m, op_w *w, const char *name, bool mat, int n_dims, const int64_t *ne,
                              const char *why) {
    return mmp__weight_load(m->mf, m->path, "output projector", w, name, mat, n_dims, ne, why);
}

static enum mmp_status w_mat(const mmp_outproj *m, op_w *w, const char *name, int64_t in, int64_t out, const char *why) {
    int64_t ne[2] = {in, out};
    return w_load(m, w, name, true, 2, ne, why);
}

static enum mmp_status w_vec(const mmp_outproj *m, op_w *w, const char *name, int64_t n, const char *why) {
    int64_t ne[1] = {n};
    return w_load(m, w, name, false, 1, ne, why);
}

/* ------------------------------------------------------------ loading ---- */

mmp_outproj_params mmp_outproj_params_default(void) {
    mmp_outproj_params p = {.n_heads = 0, .norm_first = -1, .layer_norm_eps = 0.0f, .act = -1};
    return p;
}

static void layer_free(op_layer *L) {
    op_w *ws[] = {&L->sa.in_w, &L->sa.in_b, &L->sa.out_w, &L->sa.out_b, &L->ca.in_w, &L->ca.in_b, &L->ca.out_w,
                  &L->ca.out_b, &L->ff1_w, &L->ff1_b, &L->ff2_w, &L->ff2_b, &L->n1_w, &L->n1_b, &L->n2_w, &L->n2_b,
                  &L->n3_w, &L->n3_b};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) mmp__weight_free(ws[i]);
}

void mmp_outproj_free(mmp_outproj *m) {
    if (!m) return;
    for (int l = 0; m->enc && l < m->hp.n_enc_layers; l++) layer_free(&m->enc[l]);
    for (int l = 0; m->dec && l < m->hp.n_dec_layers; l++) layer_free(&m->dec[l]);
    free(m->enc);
    free(m->dec);
    op_w *ws[] = {&m->fc_in_w, &m->fc_in_b, &m->fc_out_w, &m->fc_out_b, &m->queries,
                  &m->enc_n_w, &m->enc_n_b, &m->dec_n_w, &m->dec_n_b};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) mmp__weight_free(ws[i]);
    mmp_modelfile_free(m->own_mf);
    free(m->path);
    free(m);
}

const mmp_outproj_hparams *mmp_outproj_get_hparams(const mmp_outproj *m) { return m ? &m->hp : NULL; }

/* What the state_dict lacks: params > config.json sidecar > defaults (heads: none; norm_first
 * true as NExT-GPT's and GILL's projectors are built, unlike torch's own default; eps 1e-5 and
 * relu as torch). */
static enum mmp_status read_settings(mmp_outproj *m, const mmp_outproj_params *p) {
    const mmp_json *cfg = mmp_modelfile_config(m->mf);
    int64_t heads = 0;
    bool norm_first = true;
    double eps = 1e-5;
    const char *act = "relu";
    enum mmp_status st;
    if (cfg) {
        const char *hk[] = {"nhead", "num_heads", "n_heads", "num_attention_heads"};
        for (size_t i = 0; i < sizeof hk / sizeof hk[0] && !heads; i++)
            if (mmp_json_has(cfg, hk[i]) && (st = mmp_json_get_int(cfg, hk[i], &heads)) != MMP_OK) return st;
        if (mmp_json_has(cfg, "norm_first") && (st = mmp_json_get_bool(cfg, "norm_first", &norm_first)) != MMP_OK) return st;
        if (mmp_json_has(cfg, "layer_norm_eps") && (st = mmp_json_get_float(cfg, "layer_norm_eps", &eps)) != MMP_OK) return st;
        if (mmp_json_has(cfg, "activation") && (st = mmp_json_get_string(cfg, "activation", &act)) != MMP_OK) return st;
    }
    if (p && p->n_heads > 0) heads = p->n_heads;
    if (p && p->norm_first >= 0) norm_first = p->norm_first != 0;
    if (p && p->layer_norm_eps > 0) eps = p->layer_norm_eps;
    if (heads <= 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: the number of attention heads is not in the weights: give it "
                          "(stage option heads=N, or \"nhead\" in a config.json next to the weights)", m->path);
    if (heads > 4096) return mmp__error(MMP_ERR_FORMAT, "%s: nhead %lld out of range", m->path, (long long)heads);
    if (!(eps > 0 && eps < 1)) return mmp__error(MMP_ERR_FORMAT, "%s: layer_norm_eps %g out of range", m->path, eps);
    enum mmp_unary a;
    if (p && p->act >= 0) {
        if (p->act != MMP_UNARY_RELU && p->act != MMP_UNARY_GELU)
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: activation %d is not relu or gelu", m->path, p->act);
        a = (enum mmp_unary)p->act;
    } else if (!strcmp(act, "relu")) {
        a = MMP_UNARY_RELU;
    } else if (!strcmp(act, "gelu")) {
        a = MMP_UNARY_GELU;
    } else {
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: config activation '%s' is not supported (relu, gelu)", m->path, act);
    }
    m->hp.n_heads = (int32_t)heads;
    m->hp.norm_first = norm_first;
    m->hp.layer_norm_eps = (float)eps;
    m->hp.act = a;
    return MMP_OK;
}

/* Count "<tp><part>.layers.N." (N consecutive from 0; the highest index decides). */
static enum mmp_status count_layers(const mmp_outproj *m, const char *tp, const char *part, int32_t *out) {
    char mid[300];
    snprintf(mid, sizeof mid, "%s%s.layers.", tp, part);
    size_t lm = strlen(mid);
    long max_idx = -1;
    int64_t n = mmp_modelfile_n_tensors(m->mf);
    for (int64_t i = 0; i < n; i++) {
        const char *nm = mmp_modelfile_tensor(m->mf, i)->name;
        if (strncmp(nm, mid, lm) != 0) continue;
        char *end;
        long idx = strtol(nm + lm, &end, 10);
        if (end == nm + lm || *end != '.' || idx < 0) continue;
        if (idx >= OP_MAX_LAYERS)
            return mmp__error(MMP_ERR_LIMIT, "%s: tensor '%s': layer index %ld beyond the limit %d", m->path, nm, idx,
                              OP_MAX_LAYERS);
        if (idx > max_idx) max_idx = idx;
    }
    if (max_idx < 0) return mmp__error(MMP_ERR_NOT_FOUND, "%s: no %s layers (%sN.*)", m->path, part, mid);
    *out = (int32_t)(max_idx + 1);
    return MMP_OK;
}

/* The transformer's prefix ("transformer." or "tfm.", after any module prefix): the name in
 * front of "encoder.layers.0.self_attn.in_proj_weight". */
static char *find_prefix(const mmp_outproj *m) {
    static const char tail[] = "encoder.layers.0.self_attn.in_proj_weight";
    const size_t lt = sizeof tail - 1;
    int64_t n = mmp_modelfile_n_tensors(m->mf);
    for (int64_t i = 0; i < n; i++) {
        const char *nm = mmp_modelfile_tensor(m->mf, i)->name;
        size_t l = strlen(nm);
        if (l < lt || strcmp(nm + l - lt, tail) != 0 || l - lt > 200) continue;
        char *p = mmp__malloc(l - lt + 1);
        if (!p) return NULL;
        memcpy(p, nm, l - lt);
        p[l - lt] = 0;
        return p;
    }
    return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: no output projector found: no tensor named "
                           "'[...]transformer.encoder.layers.0.self_attn.in_proj_weight'", m->path);
}

/* First of two alternative names that exists (outer + a or outer + b); writes it to buf. */
static bool pick(const mmp_outproj *m, char *buf, size_t size, const char *outer, const char *a, const char *b,
                 const char *suffix) {
    snprintf(buf, size, "%s%s%s", outer, a, suffix);
    if (find_quiet(m->mf, buf)) return true;
    snprintf(buf, size, "%s%s%s", outer, b, suffix);
    if (find_quiet(m->mf, buf)) return true;
    snprintf(buf, size, "%s%s%s", outer, a, suffix);  /* name the canonical one in the error */
    return false;
}

static enum mmp_status load_mha(const mmp_outproj *m, op_mha *a, const char *p, int64_t d, const char *why) {
    char n[320];
    enum mmp_status st;
    snprintf(n, sizeof n, "%s.in_proj_weight", p);
    if ((st = w_mat(m, &a->in_w, n, d, 3 * d, why)) != MMP_OK) return st;
    snprintf(n, sizeof n, "%s.in_proj_bias", p);
    if ((st = w_vec(m, &a->in_b, n, 3 * d, why)) != MMP_OK) return st;
    snprintf(n, sizeof n, "%s.out_proj.weight", p);
    if ((st = w_mat(m, &a->out_w, n, d, d, why)) != MMP_OK) return st;
    snprintf(n, sizeof n, "%s.out_proj.bias", p);
    return w_vec(m, &a->out_b, n, d, why);
}

static enum mmp_status load_layer(const mmp_outproj *m, op_layer *L, const char *p, bool dec, int64_t d, int64_t ff,
                                  const char *why, const char *why_ff) {
    char n[320];
    enum mmp_status st;
    snprintf(n, sizeof n, "%s.self_attn", p);
    if ((st = load_mha(m, &L->sa, n, d, why)) != MMP_OK) return st;
    if (dec) {
        snprintf(n, sizeof n, "%s.multihead_attn", p);
        if ((st = load_mha(m, &L->ca, n, d, why)) != MMP_OK) return st;
    }
    snprintf(n, sizeof n, "%s.linear1.weight", p);
    if ((st = w_mat(m, &L->ff1_w, n, d, ff, why_ff)) != MMP_OK) return st;
    snprintf(n, sizeof n, "%s.linear1.bias", p);
    if ((st = w_vec(m, &L->ff1_b, n, ff, why_ff)) != MMP_OK) return st;
    snprintf(n, sizeof n, "%s.linear2.weight", p);
    if ((st = w_mat(m, &L->ff2_w, n, ff, d, why_ff)) != MMP_OK) return st;
    snprintf(n, sizeof n, "%s.linear2.bias", p);
    if ((st = w_vec(m, &L->ff2_b, n, d, why)) != MMP_OK) return st;
    op_w *nw[3] = {&L->n1_w, &L->n2_w, &L->n3_w}, *nb[3] = {&L->n1_b, &L->n2_b, &L->n3_b};
    for (int i = 0; i < (dec ? 3 : 2); i++) {
        snprintf(n, sizeof n, "%s.norm%d.weight", p, i + 1);
        if ((st = w_vec(m, nw[i], n, d, why)) != MMP_OK) return st;
        snprintf(n, sizeof n, "%s.norm%d.bias", p, i + 1);
        if ((st = w_vec(m, nb[i], n, d, why)) != MMP_OK) return st;
    }
    return MMP_OK;
}

/* An optional final norm: both or neither of weight/bias. */
static enum mmp_status load_final_norm(const mmp_outproj *m, op_w *w, op_w *b, const char *tp, const char *part,
                                       int64_t d, const char *why, bool *has) {
    char n[320];
    snprintf(n, sizeof n, "%s%s.norm.weight", tp, part);
    *has = find_quiet(m->mf, n) != NULL;
    if (!*has) return MMP_OK;
    enum mmp_status st = w_vec(m, w, n, d, why);
    if (st != MMP_OK) return st;
    snprintf(n, sizeof n, "%s%s.norm.bias", tp, part);
    return w_vec(m, b, n, d, why);
}

mmp_outproj *mmp_outproj_load(const char *path, const mmp_outproj_params *params) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_outproj_load: path is NULL");
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) return NULL;
    mmp_outproj *m = mmp_outproj_load_modelfile(mf, params);
    if (!m) {
        mmp_modelfile_free(mf);
        return NULL;
    }
    m->own_mf = mf;
    return m;
}

mmp_outproj *mmp_outproj_load_modelfile(const mmp_modelfile *mf, const mmp_outproj_params *params) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_outproj_load_modelfile: model file is NULL");
    const char *path = mmp_modelfile_path(mf);
    mmp_outproj *m = mmp__calloc(1, sizeof *m);
    if (!m) return NULL;
    char *tp = NULL, *outer = NULL;
    m->mf = mf;
    if (!(m->path = mmp__strdup(path))) goto fail;
    if (!(tp = find_prefix(m))) goto fail;
    if (!(outer = mmp__strdup(tp))) goto fail;
    size_t lp = strlen(tp);
    if (lp >= 12 && !strcmp(tp + lp - 12, "transformer.")) outer[lp - 12] = 0;
    else if (lp >= 4 && !strcmp(tp + lp - 4, "tfm.")) outer[lp - 4] = 0;
    if (read_settings(m, params) != MMP_OK) goto fail;

    /* d_model and the input width from fc_in */
    char n[320], fcin[320], why[256], why_ff[256];
    if (!pick(m, fcin, sizeof fcin, outer, "fc_in", "fc", ".weight")) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s: output projector tensor '%s' is missing (nor '%sfc.weight')", path, fcin, outer);
        goto fail;
    }
    const mmp_tensor_info *ti = mmp_modelfile_find(m->mf, fcin);
    if (!ti) goto fail;
    int64_t in = ti->ne[0], d = ti->ne[1];
    if (ti->n_dims != 2 || in < 1 || in > OP_MAX_DIM * 4 || d < 1 || d > OP_MAX_DIM) {
        char have[96];
        mmp__shape_torch(have, sizeof have, ti->n_dims > 0 ? ti->n_dims : 1, ti->ne);
        mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' is %s; expected a [d_model, llm_dim] matrix", path, fcin, have);
        goto fail;
    }
    m->hp.in_dim = (int32_t)in;
    m->hp.d_model = (int32_t)d;
    snprintf(why, sizeof why, "d_model %lld from %s", (long long)d, fcin);
    if (d % m->hp.n_heads != 0) {
        mmp__error(MMP_ERR_SHAPE, "%s: d_model %lld (from %s) is not a multiple of %d heads", path, (long long)d, fcin,
                   m->hp.n_heads);
        goto fail;
    }
    if (w_mat(m, &m->fc_in_w, fcin, in, d, why) != MMP_OK) goto fail;
    size_t lw = strlen(fcin) - strlen("weight");
    snprintf(n, sizeof n, "%.*sbias", (int)lw, fcin);
    if (w_vec(m, &m->fc_in_b, n, d, why) != MMP_OK) goto fail;

    /* learned queries [1, n_q, d] */
    if (!pick(m, n, sizeof n, outer, "queries", "query_embs", "")) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s: output projector tensor '%s' is missing (nor '%squery_embs')", path, n, outer);
        goto fail;
    }
    ti = mmp_modelfile_find(m->mf, n);
    if (!ti) goto fail;
    int64_t nq = ti->ne[1];
    if (ti->ne[0] != d || ti->ne[2] != 1 || ti->ne[3] != 1 || nq < 1 || nq > OP_MAX_DIM) {
        char have[96];
        mmp__shape_torch(have, sizeof have, ti->n_dims > 0 ? ti->n_dims : 1, ti->ne);
        mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' is %s: its width %lld differs from d_model %lld (the output width "
                   "of %s); expected [1, n_queries, %lld]", path, n, have, (long long)ti->ne[0], (long long)d, fcin,
                   (long long)d);
        goto fail;
    }
    int64_t qne[2] = {d, nq};
    if (w_load(m, &m->queries, n, false, 2, qne, why) != MMP_OK) goto fail;
    m->hp.n_queries = (int32_t)nq;

    /* layers; FFN width from the first encoder layer */
    if (count_layers(m, tp, "encoder", &m->hp.n_enc_layers) != MMP_OK ||
        count_layers(m, tp, "decoder", &m->hp.n_dec_layers) != MMP_OK)
        goto fail;
    snprintf(n, sizeof n, "%sencoder.layers.0.linear1.weight", tp);
    if (!(ti = mmp_modelfile_find(m->mf, n))) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s: output projector tensor '%s' is missing", path, n);
        goto fail;
    }
    int64_t ff = ti->ne[1];
    if (ti->n_dims != 2 || ff < 1 || ff > OP_MAX_DIM * 8) {
        mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' must be a [dim_feedforward, %lld] matrix", path, n, (long long)d);
        goto fail;
    }
    m->hp.ff_dim = (int32_t)ff;
    snprintf(why_ff, sizeof why_ff, "dim_feedforward %lld from %s, %s", (long long)ff, n, why);
    if (!(m->enc = mmp__calloc((size_t)m->hp.n_enc_layers, sizeof *m->enc)) ||
        !(m->dec = mmp__calloc((size_t)m->hp.n_dec_layers, sizeof *m->dec)))
        goto fail;
    for (int l = 0; l < m->hp.n_enc_layers; l++) {
        snprintf(n, sizeof n, "%sencoder.layers.%d", tp, l);
        if (load_layer(m, &m->enc[l], n, false, d, ff, why, why_ff) != MMP_OK) goto fail;
    }
    for (int l = 0; l < m->hp.n_dec_layers; l++) {
        snprintf(n, sizeof n, "%sdecoder.layers.%d", tp, l);
        if (load_layer(m, &m->dec[l], n, true, d, ff, why, why_ff) != MMP_OK) goto fail;
    }
    if (load_final_norm(m, &m->enc_n_w, &m->enc_n_b, tp, "encoder", d, why, &m->hp.has_enc_norm) != MMP_OK ||
        load_final_norm(m, &m->dec_n_w, &m->dec_n_b, tp, "decoder", d, why, &m->hp.has_dec_norm) != MMP_OK)
        goto fail;

    /* fc_out [out, d] */
    char fcout[320];
    if (!pick(m, fcout, sizeof fcout, outer, "fc_out", "model", ".weight")) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s: output projector tensor '%s' is missing (nor '%smodel.weight')", path, fcout, outer);
        goto fail;
    }
    if (!(ti = mmp_modelfile_find(m->mf, fcout))) goto fail;
    int64_t od = ti->ne[1];
    if (ti->n_dims != 2 || ti->ne[0] != d || od < 1 || od > OP_MAX_DIM * 4) {
        char have[96];
        mmp__shape_torch(have, sizeof have, ti->n_dims > 0 ? ti->n_dims : 1, ti->ne);
        mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' is %s: its input width %lld differs from d_model %lld (%s); expected "
                   "[cross_dim, %lld]", path, fcout, have, (long long)ti->ne[0], (long long)d, why, (long long)d);
        goto fail;
    }
    m->hp.out_dim = (int32_t)od;
    if (w_mat(m, &m->fc_out_w, fcout, d, od, why) != MMP_OK) goto fail;
    lw = strlen(fcout) - strlen("weight");
    snprintf(n, sizeof n, "%.*sbias", (int)lw, fcout);
    if (w_vec(m, &m->fc_out_b, n, od, why) != MMP_OK) goto fail;
    free(tp);
    free(outer);
    return m;
fail:
    free(tp);
    free(outer);
    mmp_outproj_free(m);
    return NULL;
}

/* ------------------------------------------------------------ compute ---- */

static mmp_tensor *leaf(mmp_graph *g, const op_w *w) {
    return mmp_set_name(mmp_new_tensor_ext(g, w->type, w->n_dims, w->ne, w->data), "%s", w->name);
}

static mmp_tensor *linear(mmp_graph *g, mmp_tensor *x, const op_w *w, const op_w *b) {
    return mmp_add(g, mmp_mul_mat(g, leaf(g, w), x), leaf(g, b));
}

static mmp_tensor *norm(mmp_graph *g, const mmp_outproj *m, mmp_tensor *x, const op_w *w, const op_w *b) {
    return mmp_layer_norm(g, x, leaf(g, w), leaf(g, b), m->hp.layer_norm_eps);
}

/* rows [r0, r0 + nr) of an in_proj weight leaf W (ne {d, 3d}) / bias leaf b (ne {3d}) */
static mmp_tensor *w_rows(mmp_graph *g, mmp_tensor *W, int64_t r0, int64_t nr) {
    if (!W) return NULL;
    return mmp_view_2d(g, W, W->ne[0], nr, W->nb[1], (size_t)r0 * W->nb[1]);
}
static mmp_tensor *b_rows(mmp_graph *g, mmp_tensor *b, int64_t r0, int64_t nr) {
    if (!b) return NULL;
    return mmp_view_1d(g, b, nr, (size_t)r0 * b->nb[0]);
}

/* [n*d rows of a projection, T] (n packed projections of width d per column) -> the k-th one
 * split in heads as a strided view [hd, T, H]. */
static mmp_tensor *heads_view(mmp_graph *g, mmp_tensor *p, int64_t d, int64_t H, int k) {
    if (!p) return NULL;
    int64_t hd = d / H, T = p->ne[1];
    size_t es = sizeof(float);
    /* [hd, H, T] view: head stride hd floats, token stride = p's column stride */
    mmp_tensor *v = mmp_view_3d(g, p, hd, H, T, (size_t)hd * es, p->nb[1], (size_t)k * (size_t)d * es);
    return mmp_permute(g, v, 0, 2, 1, 3);
}

/* torch MultiheadAttention: q from x [d, Tq], k/v from src [d, Tk] (src == x: self-attention,
 * one GEMM for all three). -> [d, Tq] after out_proj. */
static mmp_tensor *mha(mmp_graph *g, const mmp_outproj *m, const op_mha *a, mmp_tensor *x, mmp_tensor *src) {
    if (!x || !src) return NULL;
    int64_t d = m->hp.d_model, H = m->hp.n_heads, Tq = x->ne[1];
    mmp_tensor *W = leaf(g, &a->in_w), *B = leaf(g, &a->in_b);
    mmp_tensor *q, *k, *v;
    if (src == x) {
        mmp_tensor *qkv = mmp_add(g, mmp_mul_mat(g, W, x), B);  /* [3d, T] */
        q = heads_view(g, qkv, d, H, 0);
        k = heads_view(g, qkv, d, H, 1);
        v = heads_view(g, qkv, d, H, 2);
    } else {
        mmp_tensor *qp = mmp_add(g, mmp_mul_mat(g, w_rows(g, W, 0, d), x), b_rows(g, B, 0, d));          /* [d, Tq] */
        mmp_tensor *kv = mmp_add(g, mmp_mul_mat(g, w_rows(g, W, d, 2 * d), src), b_rows(g, B, d, 2 * d)); /* [2d, Tk] */
        q = heads_view(g, qp, d, H, 0);
        k = heads_view(g, kv, d, H, 0);
        v = heads_view(g, kv, d, H, 1);
    }
    mmp_tensor *o = mmp_attn(g, q, k, v, NULL, 1.0f / sqrtf((float)(d / H)), false, 0);  /* [hd, H, Tq] */
    o = mmp_reshape_2d(g, o, d, Tq);
    return linear(g, o, &a->out_w, &a->out_b);
}

static mmp_tensor *ffn(mmp_graph *g, const mmp_outproj *m, const op_layer *L, mmp_tensor *x) {
    mmp_tensor *h = mmp_unary(g, linear(g, x, &L->ff1_w, &L->ff1_b), m->hp.act);
    return linear(g, h, &L->ff2_w, &L->ff2_b);
}

static mmp_tensor *enc_layer(mmp_graph *g, const mmp_outproj *m, const op_layer *L, mmp_tensor *x) {
    if (m->hp.norm_first) {
        mmp_tensor *h = norm(g, m, x, &L->n1_w, &L->n1_b);
        x = mmp_add(g, x, mha(g, m, &L->sa, h, h));
        return mmp_add(g, x, ffn(g, m, L, norm(g, m, x, &L->n2_w, &L->n2_b)));
    }
    x = norm(g, m, mmp_add(g, x, mha(g, m, &L->sa, x, x)), &L->n1_w, &L->n1_b);
    return norm(g, m, mmp_add(g, x, ffn(g, m, L, x)), &L->n2_w, &L->n2_b);
}

static mmp_tensor *dec_layer(mmp_graph *g, const mmp_outproj *m, const op_layer *L, mmp_tensor *y, mmp_tensor *mem) {
    if (m->hp.norm_first) {
        mmp_tensor *h = norm(g, m, y, &L->n1_w, &L->n1_b);
        y = mmp_add(g, y, mha(g, m, &L->sa, h, h));
        y = mmp_add(g, y, mha(g, m, &L->ca, norm(g, m, y, &L->n2_w, &L->n2_b), mem));
        return mmp_add(g, y, ffn(g, m, L, norm(g, m, y, &L->n3_w, &L->n3_b)));
    }
    y = norm(g, m, mmp_add(g, y, mha(g, m, &L->sa, y, y)), &L->n1_w, &L->n1_b);
    y = norm(g, m, mmp_add(g, y, mha(g, m, &L->ca, y, mem)), &L->n2_w, &L->n2_b);
    return norm(g, m, mmp_add(g, y, ffn(g, m, L, y)), &L->n3_w, &L->n3_b);
}

enum mmp_status mmp_outproj_run(const mmp_outproj *m, const float *hidden, const float *input_embeds, int64_t n_signal,
                                float *out, int n_threads, mmp_abort_fn abort_cb, void *abort_user) {
    if (!m || !hidden || !out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_outproj_run: NULL model, hidden or output");
    if (n_signal < 1 || n_signal > (1 << 20))
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: %lld signal tokens", m->path, (long long)n_signal);
    const mmp_outproj_hparams *hp = &m->hp;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    mmp_backend *be = g ? mmp_backend_cpu_new(n_threads > 0 ? n_threads : 1) : NULL;
    if (!be) {
        mmp_graph_free(g);
        return MMP_ERR_NOMEM;
    }
    enum mmp_status st = MMP_OK;
    mmp_tensor *h = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, hp->in_dim, n_signal), "signal_hidden");
    mmp_tensor *e = input_embeds ? mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, hp->in_dim, n_signal), "input_embeds") : NULL;
    mmp_tensor *x = linear(g, e ? mmp_add(g, h, e) : h, &m->fc_in_w, &m->fc_in_b);   /* [d, n_sig] */
    for (int l = 0; l < hp->n_enc_layers; l++) x = enc_layer(g, m, &m->enc[l], x);
    if (hp->has_enc_norm) x = norm(g, m, x, &m->enc_n_w, &m->enc_n_b);
    mmp_tensor *y = leaf(g, &m->queries);                                            /* [d, n_q] */
    for (int l = 0; l < hp->n_dec_layers; l++) y = dec_layer(g, m, &m->dec[l], y, x);
    if (hp->has_dec_norm) y = norm(g, m, y, &m->dec_n_w, &m->dec_n_b);
    y = mmp_set_output(linear(g, y, &m->fc_out_w, &m->fc_out_b));                    /* [out, n_q] */
    if (!y || !h || (input_embeds && !e)) {
        st = MMP_ERR_SHAPE;
        mmp__error_prefix("%s: building the output projector graph: ", m->path);
        goto done;
    }
    if ((st = mmp_graph_plan(be, g)) != MMP_OK) goto done;
    memcpy(h->data, hidden, (size_t)(hp->in_dim * n_signal) * sizeof(float));
    if (e) memcpy(e->data, input_embeds, (size_t)(hp->in_dim * n_signal) * sizeof(float));
    if ((st = mmp_graph_compute(be, g, abort_cb, abort_user)) != MMP_OK) goto done;
    memcpy(out, y->data, (size_t)(y->ne[0] * y->ne[1]) * sizeof(float));
done:
    mmp_backend_free(be);
    mmp_graph_free(g);
    return st;
}

/* ------------------------------------------------------------ the stage ---- */

#include "../core/store-impl.h"

/* The projector comes from the model store (mmp__outproj_ref): read-only (mmp_outproj_run
 * takes it const and builds its own backend), so one is shared by every stage, thread and
 * any-to-any session; keyed by the load params, which change the object. */
typedef struct op_stage {
    mmp__model_ref ref;
    const mmp_outproj *m;
} op_stage;

static void op_stage_destroy(void *state) {
    op_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

/* "heads=N,norm_first=0|1,eps=F,act=relu|gelu" (mmp__opts_parse: "\," escapes a comma). An
 * empty value or "auto" keeps the default (a pipeline parameter left ""): heads from
 * config.json, the rest from mmp_outproj_params_default / the sidecar. */
#define OP_KNOWN "heads=N, norm_first=0|1, eps=F, act=relu|gelu"
static enum mmp_status op_parse_options(const char *opt, mmp_outproj_params *op) {
    const char *K = "projector.output";
    mmp__opt items[16];
    char *store = NULL;
    int n = mmp__opts_parse(K, opt, items, 16, &store);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        const char *k = items[i].key, *v = items[i].val;
        bool dflt = !*v || !strcmp(v, "auto");
        char *e = NULL;
        if (!strcmp(k, "heads")) {
            if (dflt) continue;
            long x = strtol(v, &e, 10);
            if (e == v || *e || x < 1 || x > 4096)
                st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option heads=%s, expected an integer in 1..4096 (known: " OP_KNOWN ")", K, v);
            else op->n_heads = (int32_t)x;
        } else if (!strcmp(k, "norm_first")) {
            if (dflt) continue;
            if (!strcmp(v, "0") || !strcmp(v, "1")) op->norm_first = v[0] == '1';
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option norm_first=%s, expected 0 or 1 (known: " OP_KNOWN ")", K, v);
        } else if (!strcmp(k, "eps")) {
            if (dflt) continue;
            double x = strtod(v, &e);
            if (e == v || *e || !(x > 0 && x < 1))
                st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option eps=%s, expected a number in (0, 1) (known: " OP_KNOWN ")", K, v);
            else op->layer_norm_eps = (float)x;
        } else if (!strcmp(k, "act")) {
            if (dflt) continue;
            if (!strcmp(v, "relu")) op->act = MMP_UNARY_RELU;
            else if (!strcmp(v, "gelu")) op->act = MMP_UNARY_GELU;
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option act=%s, expected relu or gelu (known: " OP_KNOWN ")", K, v);
        } else {
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (known: " OP_KNOWN ")", K, k);
        }
    }
    free(store);
    return st;
}
#undef OP_KNOWN

static void *op_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "projector.output: no model path (-m)");
    mmp_outproj_params op = mmp_outproj_params_default();
    if (op_parse_options(p->options, &op) != MMP_OK) return NULL;
    op_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    if (mmp__outproj_ref(p, p->model_path, &op, &s->ref) != MMP_OK) {
        free(s);
        return NULL;
    }
    s->m = s->ref.model;
    const mmp_outproj_hparams *h = mmp_outproj_get_hparams(s->m);
    in[0].dims[1] = h->in_dim;       /* hidden [*, llm_dim] */
    in[1].dims[1] = h->in_dim;       /* input_embeds [*, llm_dim] */
    out[0].dims[0] = h->n_queries;   /* conditioning [n_queries, cross_dim] */
    out[0].dims[1] = h->out_dim;
    return s;
}

static enum mmp_status op_stage_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                    mmp_array **outputs) {
    const mmp_outproj *m = ((const op_stage *)state)->m;
    const mmp_array *h = inputs[0], *e = inputs[1];
    if (!h) return mmp__error(MMP_ERR_INVALID_ARG, "projector.output: input 'hidden' is required");
    if (e && e->dims[0] != h->dims[0])
        return mmp__error(MMP_ERR_SHAPE, "projector.output: 'input_embeds' has %lld rows but 'hidden' has %lld",
                          (long long)e->dims[0], (long long)h->dims[0]);
    const mmp_outproj_hparams *hp = mmp_outproj_get_hparams(m);
    int64_t dims[2] = {hp->n_queries, hp->out_dim};
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 2, dims);
    if (!o) return MMP_ERR_NOMEM;
    enum mmp_status st = mmp_outproj_run(m, h->data, e ? e->data : NULL, h->dims[0], o->data,
                                         p && p->n_threads > 0 ? p->n_threads : 1, p ? p->abort_cb : NULL,
                                         p ? p->cb_user : NULL);
    if (st != MMP_OK) {
        mmp_array_free(o);
        return st;
    }
    outputs[0] = o;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_projector_output = {
    .name = "projector.output",
    .summary = "NExT-GPT style output projector (fc_in -> transformer encoder-decoder with learned queries -> fc_out): "
               "signal-token hidden states -> diffusion conditioning. Options: heads=N (required unless a config.json "
               "next to the weights has \"nhead\"), norm_first=0|1 (default 1 as NExT-GPT/GILL), eps=F (1e-5), act=relu|gelu",
    .n_inputs = 2,
    .n_outputs = 1,
    .inputs = {
        {"hidden", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "LLM last-layer hidden states (after the final norm) at the signal tokens [n_signal, llm_dim]"},
        {"input_embeds", {MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, true,
         "the signal tokens' input embeddings, added to hidden first [n_signal, llm_dim]"},
    },
    .outputs = {
        {"conditioning", {MMP_ROLE_CONDITIONING, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "cross-attention context for the UNet [n_queries, cross_dim]"},
    },
    .create = op_stage_create,
    .run = op_stage_run,
    .destroy = op_stage_destroy,
};
