/* Input projectors that map encoder features into the LLM's embedding space:
 *   linear:  y = W x + b
 *   MLP:     y = W2 act(W1 x + b1) + b2      (LLaVA-1.5 "mlp2x_gelu", act = GELU, erf form
 *            as transformers' "gelu"; llama.cpp computes the tanh approximation here, which
 *            differs by ~1e-3 relative)
 * Names: LLaVA HF "multi_modal_projector.linear_1/2", mmproj GGUF "mm.0" / "mm.2"
 * (a lone "mm.0" is a linear projector), or "multi_modal_projector.linear" / "linear". */
#include "mmpipe/vision.h"
#include "mmpipe/graph.h"
#include "mmpipe/backend.h"
#include "mmpipe/modelfile.h"
#include "../core/util.h"

#include <stdlib.h>
#include <string.h>

typedef struct pw {
    enum mmp_type type;
    int64_t ne[2];
    void *data;  /* NULL = absent */
} pw;

struct mmp_projector {
    const mmp_modelfile *mf;    /* borrowed, or own_mf */
    mmp_modelfile *own_mf;      /* opened by mmp_projector_load */
    const char *path;
    enum mmp_projector_kind kind;
    enum mmp_unary act;
    int32_t n_in, n_mid, n_out;
    pw w1, b1, w2, b2;
    void *owned[4];
    mmp_backend *be;
    int be_threads;
};

void mmp_projector_free(mmp_projector *p) {
    if (!p) return;
    mmp_backend_free(p->be);
    for (int i = 0; i < 4; i++) free(p->owned[i]);
    mmp_modelfile_free(p->own_mf);
    free(p);
}

enum mmp_projector_kind mmp_projector_get_kind(const mmp_projector *p) { return p ? p->kind : MMP_PROJ_LINEAR; }
int32_t mmp_projector_n_in(const mmp_projector *p) { return p ? p->n_in : 0; }
int32_t mmp_projector_n_out(const mmp_projector *p) { return p ? p->n_out : 0; }

/* Bind a tensor: matrices (2-D) in place when the kernels can read them aligned, vectors
 * (biases) always as f32 (elementwise add wants f32). slot: index into owned[]. */
static enum mmp_status bind(mmp_projector *p, pw *w, const char *name, bool matrix, int slot) {
    memset(w, 0, sizeof *w);
    const mmp_tensor_info *ti = mmp_modelfile_find(p->mf, name);
    if (!ti) return MMP_ERR_NOT_FOUND;
    if (ti->n_dims != (matrix ? 2 : 1))
        return mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' has %d dims, expected %d", p->path, name, ti->n_dims, matrix ? 2 : 1);
    const mmp_type_traits *tr = mmp_type_get_traits(ti->type);
    if (!tr || ti->type == MMP_TYPE_I8 || ti->type == MMP_TYPE_I16 || ti->type == MMP_TYPE_I32 ||
        ti->type == MMP_TYPE_I64 || ti->type == MMP_TYPE_F64 || ti->type == MMP_TYPE_U8)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, not a weight type", p->path, name,
                          mmp_type_name(ti->type));
    w->ne[0] = ti->ne[0];
    w->ne[1] = matrix ? ti->ne[1] : 1;
    if (!matrix && ti->type != MMP_TYPE_F32) {
        float *d = mmp__malloc((size_t)w->ne[0] * sizeof(float));
        if (!d) return MMP_ERR_NOMEM;
        p->owned[slot] = d;
        enum mmp_status s = mmp_dequantize_row(ti->type, ti->data, d, w->ne[0]);
        if (s != MMP_OK) return s;
        w->type = MMP_TYPE_F32;
        w->data = d;
        return MMP_OK;
    }
    w->type = ti->type;
    size_t al = ti->type == MMP_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)ti->data % al) {
        void *d = mmp__malloc(ti->nbytes);
        if (!d) return MMP_ERR_NOMEM;
        memcpy(d, ti->data, ti->nbytes);
        p->owned[slot] = d;
        w->data = d;
    } else {
        w->data = (void *)ti->data;
    }
    return MMP_OK;
}

/* Try a naming scheme: first layer w1n/b1n, optional second w2n/b2n. MMP_ERR_NOT_FOUND when
 * w1n is not there (try the next scheme). */
static enum mmp_status try_names(mmp_projector *p, const char *w1n, const char *b1n, const char *w2n, const char *b2n) {
    enum mmp_status s = bind(p, &p->w1, w1n, true, 0);
    if (s != MMP_OK) { if (s == MMP_ERR_NOT_FOUND) mmp_clear_error(); return s; }
    if ((s = bind(p, &p->b1, b1n, false, 1)) != MMP_OK && s != MMP_ERR_NOT_FOUND) return s;
    if (w2n) {
        if ((s = bind(p, &p->w2, w2n, true, 2)) != MMP_OK && s != MMP_ERR_NOT_FOUND) return s;
        if ((s = bind(p, &p->b2, b2n, false, 3)) != MMP_OK && s != MMP_ERR_NOT_FOUND) return s;
    }
    mmp_clear_error();
    return MMP_OK;
}

static enum mmp_status proj_load(mmp_projector *p, const mmp_modelfile *mf) {
    const char *path = mmp_modelfile_path(mf);
    p->path = path;
    p->mf = mf;
    enum mmp_status s;
    if ((s = try_names(p, "multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_1.bias",
                       "multi_modal_projector.linear_2.weight", "multi_modal_projector.linear_2.bias")) == MMP_ERR_NOT_FOUND &&
        (s = try_names(p, "model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias",
                       "model.multi_modal_projector.linear_2.weight", "model.multi_modal_projector.linear_2.bias")) == MMP_ERR_NOT_FOUND &&
        (s = try_names(p, "mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias")) == MMP_ERR_NOT_FOUND &&
        (s = try_names(p, "multi_modal_projector.linear.weight", "multi_modal_projector.linear.bias", NULL, NULL)) == MMP_ERR_NOT_FOUND &&
        (s = try_names(p, "linear.weight", "linear.bias", NULL, NULL)) == MMP_ERR_NOT_FOUND)
        return mmp__error(MMP_ERR_NOT_FOUND,
                          "%s: no projector: looked for 'multi_modal_projector.linear_1.weight', 'mm.0.weight', "
                          "'multi_modal_projector.linear.weight' and 'linear.weight'", path);
    if (s != MMP_OK) return s;
    p->n_in = (int32_t)p->w1.ne[0];
    p->n_mid = (int32_t)p->w1.ne[1];
    if (p->b1.data && p->b1.ne[0] != p->n_mid)
        return mmp__error(MMP_ERR_SHAPE, "%s: first projector bias has %lld values, the weight has %d outputs", path,
                          (long long)p->b1.ne[0], (int)p->n_mid);
    p->kind = p->w2.data ? MMP_PROJ_MLP : MMP_PROJ_LINEAR;
    p->n_out = p->n_mid;
    if (p->kind == MMP_PROJ_MLP) {
        if (p->w2.ne[0] != p->n_mid)
            return mmp__error(MMP_ERR_SHAPE, "%s: projector layer 2 takes %lld inputs but layer 1 gives %d", path,
                              (long long)p->w2.ne[0], (int)p->n_mid);
        p->n_out = (int32_t)p->w2.ne[1];
        if (p->b2.data && p->b2.ne[0] != p->n_out)
            return mmp__error(MMP_ERR_SHAPE, "%s: second projector bias has %lld values, the weight has %d outputs", path,
                              (long long)p->b2.ne[0], (int)p->n_out);
    }
    /* activation: HF projector_hidden_act (gelu by default) */
    p->act = MMP_UNARY_GELU;
    const mmp_json *cfg = mmp_modelfile_config(p->mf);
    const char *a;
    if (cfg && mmp_json_get_string(cfg, "projector_hidden_act", &a) == MMP_OK) {
        if (!strcmp(a, "gelu")) p->act = MMP_UNARY_GELU;
        else if (!strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_new")) p->act = MMP_UNARY_GELU_TANH;
        else if (!strcmp(a, "quick_gelu")) p->act = MMP_UNARY_QUICK_GELU;
        else if (!strcmp(a, "silu")) p->act = MMP_UNARY_SILU;
        else if (!strcmp(a, "relu")) p->act = MMP_UNARY_RELU;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: projector_hidden_act '%s' is not supported", path, a);
    }
    mmp_clear_error();
    return MMP_OK;
}

mmp_projector *mmp_projector_load_modelfile(const mmp_modelfile *mf) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_projector_load_modelfile: NULL model file");
    mmp_projector *p = mmp__calloc(1, sizeof *p);
    if (!p) return NULL;
    if (proj_load(p, mf) != MMP_OK) {
        mmp_projector_free(p);
        return NULL;
    }
    return p;
}

mmp_projector *mmp_projector_load(const char *path) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_projector_load: no path");
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) return NULL;
    mmp_projector *p = mmp_projector_load_modelfile(mf);
    if (!p) {
        mmp_modelfile_free(mf);
        return NULL;
    }
    p->own_mf = mf;
    return p;
}

static mmp_tensor *lin(mmp_graph *g, mmp_tensor *x, const pw *w, const pw *b) {
    mmp_tensor *y = mmp_mul_mat(g, mmp_new_tensor_ext(g, w->type, 2, w->ne, w->data), x);
    if (b->data) y = mmp_add(g, y, mmp_new_tensor_ext(g, b->type, 1, b->ne, b->data));
    return y;
}

enum mmp_status mmp_projector_run(mmp_projector *p, const float *x, int32_t n, float *y, int32_t n_threads) {
    if (!p || !x || !y) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_projector_run: NULL argument");
    if (n <= 0 || n > (1 << 20)) return mmp__error(MMP_ERR_INVALID_ARG, "%s: %d input rows", p->path, (int)n);
    if (n_threads <= 0) n_threads = 1;
    if (!p->be || p->be_threads != n_threads) {
        mmp_backend_free(p->be);
        if (!(p->be = mmp_backend_cpu_new(n_threads))) return MMP_ERR_NOMEM;
        p->be_threads = n_threads;
    }
    mmp_graph_params gp = mmp_graph_params_default();
    gp.max_tensors = 64;
    mmp_graph *g = mmp_graph_new(gp);
    if (!g) return MMP_ERR_NOMEM;
    mmp_tensor *in = mmp_new_tensor_2d(g, MMP_TYPE_F32, p->n_in, n);  /* [n, n_in] rows */
    mmp_tensor *h = lin(g, in, &p->w1, &p->b1);
    if (p->kind == MMP_PROJ_MLP) h = lin(g, mmp_unary(g, h, p->act), &p->w2, &p->b2);
    if (!mmp_set_output(h)) {
        mmp__error_prefix("%s: ", p->path);
        mmp_graph_free(g);
        return MMP_ERR_SHAPE;
    }
    enum mmp_status s;
    if ((s = mmp_graph_plan(p->be, g)) == MMP_OK &&
        (s = mmp_backend_tensor_set(p->be, in, x, 0, (size_t)n * p->n_in * sizeof(float))) == MMP_OK &&
        (s = mmp_graph_compute(p->be, g, NULL, NULL)) == MMP_OK)
        s = mmp_backend_tensor_get(p->be, h, y, 0, (size_t)n * p->n_out * sizeof(float));
    mmp_graph_free(g);
    return s;
}

/* ---------------- stage kinds: projector.mlp / projector.linear ----------------
 * hidden [n, n_in] (encoder features) -> embeddings [n, n_out] (the LLM's input space). */
#include "mmpipe/stage.h"
#include "../core/stage-impl.h"

#include "../core/store-impl.h"

/* The projector comes from the model store (MMP__MODEL_SCRATCH: it keeps a backend while
 * running, so it is shared only within one pipeline). */
typedef struct proj_stage {
    mmp__model_ref ref;
    mmp_projector *pr;
} proj_stage;

static void proj_stage_destroy(void *state) {
    proj_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

static void *proj_model_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    (void)ctx;
    return mmp_projector_load_modelfile(mf);
}
static void proj_model_free(void *m) { mmp_projector_free(m); }

static void *proj_stage_create_kind(const char *kind, enum mmp_projector_kind want, const mmp_stage_params *p,
                                    mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: no model path (-m)", kind);
    if (p->options && *p->options) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: takes no options (got '%s')", kind, p->options);
    proj_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    const char *path = p->aux_path ? p->aux_path : p->model_path;
    if (mmp__model_get(p, "projector", path, NULL, MMP__MODEL_SCRATCH, proj_model_load, proj_model_free, NULL, &s->ref) !=
        MMP_OK) {
        free(s);
        return NULL;
    }
    s->pr = s->ref.model;
    if (s->pr->kind != want) {
        proj_stage_destroy(s);
        return mmp__error_null(MMP_ERR_UNSUPPORTED, "%s: %s holds a %s projector; use projector.%s", kind, path,
                               want == MMP_PROJ_MLP ? "linear" : "2-layer MLP", want == MMP_PROJ_MLP ? "linear" : "mlp");
    }
    in[0].dims[1] = s->pr->n_in;
    out[0].dims[1] = s->pr->n_out;
    return s;
}

static void *mlp_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    return proj_stage_create_kind("projector.mlp", MMP_PROJ_MLP, p, in, out);
}
static void *linear_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    return proj_stage_create_kind("projector.linear", MMP_PROJ_LINEAR, p, in, out);
}

static enum mmp_status proj_stage_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                      mmp_array **outputs) {
    mmp_projector *pr = ((proj_stage *)state)->pr;
    const mmp_array *x = inputs[0];
    int64_t n = x->dims[0], dims[2] = {n, pr->n_out};
    if (n <= 0 || n > (1 << 20)) return mmp__error(MMP_ERR_INVALID_ARG, "%s: %lld input rows", pr->path, (long long)n);
    mmp_array *y = mmp_array_new(MMP_TYPE_F32, 2, dims);
    if (!y) return MMP_ERR_NOMEM;
    enum mmp_status st = mmp_projector_run(pr, x->data, (int32_t)n, y->data, p && p->n_threads > 0 ? p->n_threads : 1);
    if (st != MMP_OK) { mmp_array_free(y); return st; }
    outputs[0] = y;
    return MMP_OK;
}

#define PROJ_KIND(NAME, SUMMARY, CREATE)                                                                    \
    {                                                                                                       \
        .name = NAME, .summary = SUMMARY, .n_inputs = 1, .n_outputs = 1,                                    \
        .inputs = {{"hidden", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,        \
                    "encoder features [n, n_in]"}},                                                         \
        .outputs = {{"embeddings", {MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false, \
                     "features in the LLM's embedding space [n, n_out]"}},                                   \
        .create = CREATE, .run = proj_stage_run, .destroy = proj_stage_destroy,                             \
    }

const mmp_stage_kind mmp__stage_projector_mlp = PROJ_KIND(
    "projector.mlp", "LLaVA 2-layer MLP projector (linear -> GELU -> linear; HF multi_modal_projector or mmproj mm.0/mm.2)",
    mlp_stage_create);
const mmp_stage_kind mmp__stage_projector_linear = PROJ_KIND(
    "projector.linear", "linear projector (mmproj mm.0 alone, multi_modal_projector.linear, linear)", linear_stage_create);
