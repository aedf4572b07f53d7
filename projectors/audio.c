/* Audio projectors: encoder hidden states [n, D] -> LLM input embeddings [n_out, n_embd].
 *
 * Qwen2-Audio (modeling_qwen2_audio.py): the avg-pool 2 and the layer norm belong to its audio
 * tower (encoders/whisper.c, avg_pool); the projector is one Linear with bias:
 *     multi_modal_projector.linear: [n, D] -> [n, n_embd]
 * Ultravox (ultravox_model.py, UltravoxProjector; llama.cpp PROJECTOR_TYPE_ULTRAVOX):
 *     stack s=8 frames (zero-pad n to a multiple of s): [n, D] -> [ceil(n/s), s*D]
 *     -> RMSNorm(ln_pre, eps 1e-6) -> linear_1 (no bias) [2H] -> SwiGLU: x, gate = chunk(2);
 *        silu(gate) * x  [H]   (the SECOND half goes through silu)
 *     -> RMSNorm(ln_mid) if present -> linear_2 (no bias) [n_embd] -> RMSNorm(ln_post) if present
 * Voxtral (modeling_voxtral.py, VoxtralMultiModalProjector):
 *     stack s=4 frames: reshape(-1, 4*D) -> linear_1 -> GELU -> linear_2 (biases if present)
 *
 * Also mmp_audio_embed(): samples -> 30 s windows -> mel -> encoder -> concatenate -> projector. */
#include "mmpipe/audio.h"
#include "mmpipe/backend.h"
#include "mmpipe/graph.h"
#include "mmpipe/gguf.h"
#include "../core/util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- private helpers defined in encoders/whisper.c ---- */
typedef struct mmp__audio_w {
    enum mmp_type type;
    int n_dims;
    int64_t ne[4];
    void *data;
} mmp__audio_w;
typedef struct mmp__audio_own mmp__audio_own;
void mmp__audio_own_free(mmp__audio_own *o);
enum mmp_status mmp__audio_bind(const mmp_modelfile *mf, mmp__audio_own **own, mmp__audio_w *w, const char *name,
                                int n_dims, const int64_t *ne, bool required, bool f32);
mmp_tensor *mmp__audio_wt(mmp_graph *g, const mmp__audio_w *w);

struct mmp_audio_proj {
    enum mmp_audio_proj_type type;
    mmp_modelfile *mf_owned;
    const mmp_modelfile *mf;
    mmp__audio_own *own;
    int n_in, n_embd, stack;
    float eps;
    mmp__audio_w l1_w, l1_b, l2_w, l2_b, ln_pre, ln_mid, ln_post;
    mmp_backend *be;
    int be_threads;
};

void mmp_audio_proj_free(mmp_audio_proj *p) {
    if (!p) return;
    mmp_backend_free(p->be);
    mmp__audio_own_free(p->own);
    mmp_modelfile_free(p->mf_owned);
    free(p);
}

int mmp_audio_proj_n_in(const mmp_audio_proj *p) { return p ? p->n_in : 0; }
int mmp_audio_proj_n_embd(const mmp_audio_proj *p) { return p ? p->n_embd : 0; }
int mmp_audio_proj_stack(const mmp_audio_proj *p) { return p ? p->stack : 0; }
int64_t mmp_audio_proj_n_out(const mmp_audio_proj *p, int64_t n) {
    if (!p || n < 1) return 0;
    return (n + p->stack - 1) / p->stack;
}

static enum mmp_status bind(mmp_audio_proj *p, mmp__audio_w *w, const char *name, int n_dims, int64_t ne0, int64_t ne1,
                            bool required, bool f32) {
    int64_t ne[4] = {ne0, ne1, 1, 1};
    return mmp__audio_bind(p->mf, &p->own, w, name, n_dims, ne, required, f32);
}

/* llama.cpp mmproj GGUF: the projector named by clip.projector_type (it overrides the type
 * the caller asked for: the file says what it holds), tensors
 *   qwen2a:   mm.a.fc.{weight,bias}
 *   ultravox: mm.a.norm_pre.weight, mm.a.mlp.1.weight, mm.a.norm_mid.weight, mm.a.mlp.2.weight
 *   voxtral:  mm.a.mlp.1.weight [+bias], mm.a.mlp.2.weight [+bias]
 * stack factor from clip.audio.projector.stack_factor (ultravox 8, voxtral 4 by default). */
enum mmp_status mmp__audio_gguf_proj_type(const mmp_modelfile *mf, enum mmp_audio_proj_type *type);

static enum mmp_status load_gguf(mmp_audio_proj *p) {
    const char *path = mmp_modelfile_path(p->mf);
    const mmp_gguf *g = mmp_modelfile_gguf(p->mf);
    enum mmp_status st;
    if ((st = mmp__audio_gguf_proj_type(p->mf, &p->type)) != MMP_OK) return st;
    p->eps = 1e-6f;
    p->stack = p->type == MMP_AUDIO_PROJ_ULTRAVOX ? 8 : p->type == MMP_AUDIO_PROJ_VOXTRAL ? 4 : 1;
    if (p->type != MMP_AUDIO_PROJ_QWEN2_AUDIO && mmp_gguf_has(g, "clip.audio.projector.stack_factor")) {
        uint32_t sf;
        if ((st = mmp_gguf_get_u32(g, "clip.audio.projector.stack_factor", &sf)) != MMP_OK) return st;
        if (sf < 1 || sf > 64)
            return mmp__error(MMP_ERR_FORMAT, "%s: clip.audio.projector.stack_factor = %u (1..64)", path, sf);
        p->stack = (int)sf;
    }
    switch (p->type) {
    case MMP_AUDIO_PROJ_QWEN2_AUDIO:
        if ((st = bind(p, &p->l1_w, "mm.a.fc.weight", 2, 0, 0, true, false)) != MMP_OK) return st;
        p->n_in = (int)p->l1_w.ne[0];
        p->n_embd = (int)p->l1_w.ne[1];
        return bind(p, &p->l1_b, "mm.a.fc.bias", 1, p->n_embd, 0, false, true);
    case MMP_AUDIO_PROJ_ULTRAVOX: {
        if ((st = bind(p, &p->ln_pre, "mm.a.norm_pre.weight", 1, 0, 0, true, true)) != MMP_OK) return st;
        int64_t in = p->ln_pre.ne[0];
        if (in % p->stack) return mmp__error(MMP_ERR_SHAPE, "%s: mm.a.norm_pre has %lld weights, not a multiple of the stack factor %d",
                                             path, (long long)in, p->stack);
        p->n_in = (int)(in / p->stack);
        if ((st = bind(p, &p->l1_w, "mm.a.mlp.1.weight", 2, in, 0, true, false)) != MMP_OK) return st;
        int64_t h2 = p->l1_w.ne[1];
        if (h2 % 2) return mmp__error(MMP_ERR_SHAPE, "%s: mm.a.mlp.1 gives %lld values, SwiGLU needs an even count", path, (long long)h2);
        if ((st = bind(p, &p->ln_mid, "mm.a.norm_mid.weight", 1, h2 / 2, 0, true, true)) != MMP_OK) return st;
        if ((st = bind(p, &p->l2_w, "mm.a.mlp.2.weight", 2, h2 / 2, 0, true, false)) != MMP_OK) return st;
        p->n_embd = (int)p->l2_w.ne[1];
        return MMP_OK;
    }
    case MMP_AUDIO_PROJ_VOXTRAL: {
        if ((st = bind(p, &p->l1_w, "mm.a.mlp.1.weight", 2, 0, 0, true, false)) != MMP_OK) return st;
        int64_t in = p->l1_w.ne[0], mid = p->l1_w.ne[1];
        if (in % p->stack) return mmp__error(MMP_ERR_SHAPE, "%s: mm.a.mlp.1 takes %lld values, not a multiple of the stack factor %d",
                                             path, (long long)in, p->stack);
        p->n_in = (int)(in / p->stack);
        if ((st = bind(p, &p->l1_b, "mm.a.mlp.1.bias", 1, mid, 0, false, true)) != MMP_OK) return st;
        if ((st = bind(p, &p->l2_w, "mm.a.mlp.2.weight", 2, mid, 0, true, false)) != MMP_OK) return st;
        p->n_embd = (int)p->l2_w.ne[1];
        return bind(p, &p->l2_b, "mm.a.mlp.2.bias", 1, p->n_embd, 0, false, true);
    }
    default:
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown projector type %d", path, (int)p->type);
    }
}

static enum mmp_status load(mmp_audio_proj *p) {
    const char *path = mmp_modelfile_path(p->mf);
    const mmp_json *cfg = mmp_modelfile_config(p->mf);
    enum mmp_status st;
    if (mmp_modelfile_gguf(p->mf)) return load_gguf(p);
    p->eps = 1e-6f;
    switch (p->type) {
    case MMP_AUDIO_PROJ_QWEN2_AUDIO:
        p->stack = 1;
        if ((st = bind(p, &p->l1_w, "multi_modal_projector.linear.weight", 2, 0, 0, true, false)) != MMP_OK) return st;
        p->n_in = (int)p->l1_w.ne[0];
        p->n_embd = (int)p->l1_w.ne[1];
        return bind(p, &p->l1_b, "multi_modal_projector.linear.bias", 1, p->n_embd, 0, false, true);
    case MMP_AUDIO_PROJ_ULTRAVOX: {
        p->stack = 8;
        int64_t sf = 0;
        if (cfg && mmp_json_get_int_alt(cfg, &sf, "stack_factor", "adapter_config.stack_factor", NULL) == MMP_OK) {
            if (sf < 1 || sf > 64) return mmp__error(MMP_ERR_FORMAT, "%s: stack_factor %lld (1..64)", path, (long long)sf);
            p->stack = (int)sf;
        }
        mmp_clear_error();
        if ((st = bind(p, &p->ln_pre, "multi_modal_projector.ln_pre.weight", 1, 0, 0, true, true)) != MMP_OK) return st;
        int64_t in = p->ln_pre.ne[0];
        if (in % p->stack) return mmp__error(MMP_ERR_SHAPE, "%s: ln_pre has %lld weights, not a multiple of the stack factor %d",
                                             path, (long long)in, p->stack);
        p->n_in = (int)(in / p->stack);
        if ((st = bind(p, &p->l1_w, "multi_modal_projector.linear_1.weight", 2, in, 0, true, false)) != MMP_OK) return st;
        int64_t h2 = p->l1_w.ne[1];
        if (h2 % 2) return mmp__error(MMP_ERR_SHAPE, "%s: linear_1 gives %lld values, SwiGLU needs an even count", path, (long long)h2);
        if ((st = bind(p, &p->l2_w, "multi_modal_projector.linear_2.weight", 2, h2 / 2, 0, true, false)) != MMP_OK) return st;
        p->n_embd = (int)p->l2_w.ne[1];
        if ((st = bind(p, &p->ln_mid, "multi_modal_projector.ln_mid.weight", 1, h2 / 2, 0, false, true)) != MMP_OK) return st;
        return bind(p, &p->ln_post, "multi_modal_projector.ln_post.weight", 1, p->n_embd, 0, false, true);
    }
    case MMP_AUDIO_PROJ_VOXTRAL: {
        p->stack = 4;
        if ((st = bind(p, &p->l1_w, "multi_modal_projector.linear_1.weight", 2, 0, 0, true, false)) != MMP_OK) return st;
        int64_t in = p->l1_w.ne[0], mid = p->l1_w.ne[1];
        int64_t d = 0;
        /* the encoder width from the config when it has one, else in / 4 */
        if (cfg && mmp_json_get_int_alt(cfg, &d, "audio_config.hidden_size", "audio_config.d_model", NULL) == MMP_OK && d > 0 &&
            in % d == 0 && in / d <= 64)
            p->stack = (int)(in / d);
        mmp_clear_error();
        if (in % p->stack) return mmp__error(MMP_ERR_SHAPE, "%s: linear_1 takes %lld values, not a multiple of %d", path,
                                             (long long)in, p->stack);
        p->n_in = (int)(in / p->stack);
        if ((st = bind(p, &p->l1_b, "multi_modal_projector.linear_1.bias", 1, mid, 0, false, true)) != MMP_OK) return st;
        if ((st = bind(p, &p->l2_w, "multi_modal_projector.linear_2.weight", 2, mid, 0, true, false)) != MMP_OK) return st;
        p->n_embd = (int)p->l2_w.ne[1];
        return bind(p, &p->l2_b, "multi_modal_projector.linear_2.bias", 1, p->n_embd, 0, false, true);
    }
    default:
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_proj_load: unknown projector type %d", (int)p->type);
    }
}

mmp_audio_proj *mmp_audio_proj_load_modelfile(const mmp_modelfile *mf, enum mmp_audio_proj_type type) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_audio_proj_load_modelfile: NULL modelfile");
    mmp_audio_proj *p = mmp__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->mf = mf;
    p->type = type;
    if (load(p) != MMP_OK) {
        mmp_audio_proj_free(p);
        return NULL;
    }
    return p;
}

mmp_audio_proj *mmp_audio_proj_load(const char *path, enum mmp_audio_proj_type type) {
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) return NULL;
    mmp_audio_proj *p = mmp_audio_proj_load_modelfile(mf, type);
    if (!p) {
        mmp_modelfile_free(mf);
        return NULL;
    }
    p->mf_owned = mf;
    return p;
}

static mmp_tensor *linear(mmp_graph *g, mmp_tensor *x, const mmp__audio_w *w, const mmp__audio_w *b) {
    mmp_tensor *y = mmp_mul_mat(g, mmp__audio_wt(g, w), x);
    if (b && b->data) y = mmp_add(g, y, mmp__audio_wt(g, b));
    return y;
}

static mmp_tensor *rms(mmp_graph *g, mmp_tensor *x, const mmp__audio_w *w, float eps) {
    if (!w->data) return x;
    return mmp_mul(g, mmp_rms_norm(g, x, eps), mmp__audio_wt(g, w));
}

enum mmp_status mmp_audio_proj_run(mmp_audio_proj *p, const float *x, int64_t n, float *out, int n_threads) {
    if (!p || !x || !out || n < 1) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_proj_run: bad arguments (n %lld)", (long long)n);
    if (n > (1 << 24)) return mmp__error(MMP_ERR_LIMIT, "mmp_audio_proj_run: %lld rows", (long long)n);
    if (n_threads <= 0) n_threads = 1;
    if (!p->be || p->be_threads != n_threads) {
        mmp_backend_free(p->be);
        p->be = mmp_backend_cpu_new(n_threads);
        p->be_threads = n_threads;
        if (!p->be) return MMP_ERR_NOMEM;
    }
    const int64_t s = p->stack, n_out = mmp_audio_proj_n_out(p, n), in = (int64_t)p->n_in * s;
    mmp_graph_params gp = mmp_graph_params_default();
    gp.max_tensors = 64;
    mmp_graph *g = mmp_graph_new(gp);
    if (!g) return MMP_ERR_NOMEM;
    /* stacked input: rows of s consecutive frames [n_out, s*D] = ne {s*D, n_out} */
    mmp_tensor *inp = mmp_new_tensor_2d(g, MMP_TYPE_F32, in, n_out);
    mmp_tensor *y = NULL;
    switch (p->type) {
    case MMP_AUDIO_PROJ_QWEN2_AUDIO:
        y = linear(g, inp, &p->l1_w, &p->l1_b);
        break;
    case MMP_AUDIO_PROJ_ULTRAVOX: {
        mmp_tensor *h = linear(g, rms(g, inp, &p->ln_pre, p->eps), &p->l1_w, NULL);   /* [2H, n_out] */
        int64_t H = h ? h->ne[0] / 2 : 0;
        mmp_tensor *xa = mmp_cont(g, mmp_view_2d(g, h, H, n_out, h ? h->nb[1] : 0, 0));
        mmp_tensor *gate = mmp_cont(g, mmp_view_2d(g, h, H, n_out, h ? h->nb[1] : 0, (size_t)H * sizeof(float)));
        h = mmp_swiglu(g, gate, xa);                                                    /* silu(gate) * x */
        h = rms(g, h, &p->ln_mid, p->eps);
        y = rms(g, linear(g, h, &p->l2_w, NULL), &p->ln_post, p->eps);
        break;
    }
    case MMP_AUDIO_PROJ_VOXTRAL:
        y = linear(g, mmp_gelu(g, linear(g, inp, &p->l1_w, &p->l1_b)), &p->l2_w, &p->l2_b);
        break;
    default: break;
    }
    enum mmp_status st = MMP_OK;
    y = mmp_set_output(y);
    if (!y) {
        mmp__error_prefix("audio projector graph: ");
        st = MMP_ERR_SHAPE;
        goto done;
    }
    if ((st = mmp_graph_plan(p->be, g)) != MMP_OK) goto done;
    {
        float *d = inp->data;
        size_t have = (size_t)n * (size_t)p->n_in, total = (size_t)n_out * (size_t)in;
        memcpy(d, x, have * sizeof(float));
        memset(d + have, 0, (total - have) * sizeof(float));   /* zero-padded last stack */
    }
    if ((st = mmp_graph_compute(p->be, g, NULL, NULL)) != MMP_OK) goto done;
    memcpy(out, y->data, sizeof(float) * (size_t)n_out * (size_t)p->n_embd);
done:
    mmp_graph_free(g);
    return st;
}

/* ---- whole audio -> embeddings ---- */

enum mmp_status mmp_audio_embed(mmp_whisper *enc, mmp_audio_proj *proj, const float *samples, int64_t n, float **out,
                                int64_t *n_tok, int n_threads) {
    if (!out || !n_tok) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_embed: NULL output");
    *out = NULL;
    *n_tok = 0;
    if (!enc || !proj || !samples || n < 1) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_embed: bad arguments");
    const mmp_whisper_hparams *hp = mmp_whisper_get_hparams(enc);
    if (hp->d_model != proj->n_in)
        return mmp__error(MMP_ERR_SHAPE, "mmp_audio_embed: the encoder gives %d-wide states, the projector takes %d", hp->d_model,
                          proj->n_in);
    mmp_mel_params mp = mmp_mel_params_default();
    mp.n_mels = hp->n_mels;
    /* a window is as long as the encoder's positions allow (30 s for Whisper's 1500) */
    const int64_t win_frames = MMP_MIN((int64_t)2 * hp->n_positions, (int64_t)3000);
    const int64_t win = win_frames * mp.hop;
    /* Ultravox feeds the last window unpadded (padding="longest"); Whisper, Qwen2-Audio and
     * Voxtral pad every window to 30 s. */
    const bool pad_last = proj->type != MMP_AUDIO_PROJ_ULTRAVOX;
    mp.n_samples = (int)win;
    mmp_mel *mel_pad = mmp_mel_new(mp);
    mp.n_samples = 0;
    mmp_mel *mel_nopad = mmp_mel_new(mp);
    float *mel = mmp__malloc(sizeof(float) * (size_t)hp->n_mels * (size_t)win_frames);
    float *hid = NULL, *h1 = mmp__malloc(sizeof(float) * (size_t)hp->d_model * (size_t)hp->n_positions);
    int64_t n_hid = 0;
    enum mmp_status st = MMP_OK;
    if (!mel_pad || !mel_nopad || !mel || !h1) { st = MMP_ERR_NOMEM; goto done; }
    for (int64_t off = 0; off < n; off += win) {
        int64_t len = MMP_MIN(win, n - off);
        bool last = off + win >= n;
        mmp_mel *m = (last && !pad_last) ? mel_nopad : mel_pad;
        int64_t nf = mmp_mel_n_frames(m, len);
        if (nf < 1) break;   /* a tail shorter than one hop */
        if ((st = mmp_mel_compute(m, samples + off, len, mel)) != MMP_OK) goto done;
        /* Qwen2-Audio masks the padding and keeps only the rows that hold audio; its
         * feature_attention_mask counts ceil(len / hop) frames (the sample mask taken every hop) */
        int64_t valid = proj->type == MMP_AUDIO_PROJ_QWEN2_AUDIO ? MMP_MIN((len + mp.hop - 1) / mp.hop, nf) : 0;
        if ((st = mmp_whisper_encode(enc, mel, nf, valid, h1, n_threads, NULL, NULL)) != MMP_OK) goto done;
        int64_t rows = valid ? MMP_MIN(mmp_whisper_n_valid_out(enc, valid), mmp_whisper_n_out(enc, nf)) : mmp_whisper_n_out(enc, nf);
        float *nh = realloc(hid, sizeof(float) * (size_t)hp->d_model * (size_t)(n_hid + rows));
        if (!nh) { st = mmp__error(MMP_ERR_NOMEM, "mmp_audio_embed: out of memory"); goto done; }
        hid = nh;
        memcpy(hid + (size_t)n_hid * hp->d_model, h1, sizeof(float) * (size_t)rows * hp->d_model);
        n_hid += rows;
    }
    if (n_hid < 1) { st = mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_embed: %lld samples are too few", (long long)n); goto done; }
    {
        int64_t nt = mmp_audio_proj_n_out(proj, n_hid);
        float *e = mmp__malloc(sizeof(float) * (size_t)nt * (size_t)proj->n_embd);
        if (!e) { st = MMP_ERR_NOMEM; goto done; }
        if ((st = mmp_audio_proj_run(proj, hid, n_hid, e, n_threads)) != MMP_OK) { free(e); goto done; }
        *out = e;
        *n_tok = nt;
    }
done:
    free(hid);
    free(h1);
    free(mel);
    mmp_mel_free(mel_pad);
    mmp_mel_free(mel_nopad);
    return st;
}

/* ---- the `projector.qwen2_audio`, `projector.ultravox`, `projector.voxtral` stage kinds ----
 * hidden [n, D] (audio encoder states) -> embeddings [ceil(n / stack), n_embd]. */
#include "mmpipe/stage.h"
#include "../core/stage-impl.h"

#include "../core/store-impl.h"

/* The projector comes from the model store (MMP__MODEL_SCRATCH: it keeps a backend while
 * running), keyed by the projector type: one file read as two types gives two objects. */
typedef struct aproj_stage {
    mmp__model_ref ref;
    mmp_audio_proj *p;
    const char *kind;    /* "projector.ultravox", ... (messages) */
} aproj_stage;

static void proj_stage_destroy(void *state) {
    aproj_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

static void *aproj_model_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    return mmp_audio_proj_load_modelfile(mf, *(const enum mmp_audio_proj_type *)ctx);
}
static void aproj_model_free(void *m) { mmp_audio_proj_free(m); }

static void *proj_stage_create(const mmp_stage_params *sp, mmp_port_type *in, mmp_port_type *out,
                               enum mmp_audio_proj_type type, const char *kind) {
    if (!sp || !sp->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: no model path (-m)", kind);
    if (sp->options && *sp->options) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: takes no options (got '%s')", kind, sp->options);
    aproj_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    char key[32];
    snprintf(key, sizeof key, "type=%d", (int)type);
    if (mmp__model_get(sp, "audio_proj", sp->model_path, key, MMP__MODEL_SCRATCH, aproj_model_load, aproj_model_free, &type,
                       &s->ref) != MMP_OK) {
        free(s);
        return NULL;
    }
    s->p = s->ref.model;
    s->kind = kind;
    in[0].dims[1] = s->p->n_in;
    out[0].dims[1] = s->p->n_embd;
    return s;
}
static void *qwen2a_create(const mmp_stage_params *sp, mmp_port_type *in, mmp_port_type *out) {
    return proj_stage_create(sp, in, out, MMP_AUDIO_PROJ_QWEN2_AUDIO, "projector.qwen2_audio");
}
static void *ultravox_create(const mmp_stage_params *sp, mmp_port_type *in, mmp_port_type *out) {
    return proj_stage_create(sp, in, out, MMP_AUDIO_PROJ_ULTRAVOX, "projector.ultravox");
}
static void *voxtral_create(const mmp_stage_params *sp, mmp_port_type *in, mmp_port_type *out) {
    return proj_stage_create(sp, in, out, MMP_AUDIO_PROJ_VOXTRAL, "projector.voxtral");
}

/* hidden [n, D] (+ rows [k], the encoder's rows per window) -> embeddings. With rows each
 * window's rows are projected alone, as mmp_mm_encode_audio does (a stacking projector
 * zero-pads each window's last stack): [sum ceil(rows_i / stack), n_embd]. */
static enum mmp_status proj_stage_run(void *state, const mmp_stage_params *sp, const mmp_array *const *inputs,
                                      mmp_array **outputs) {
    const aproj_stage *s = state;
    mmp_audio_proj *p = s->p;
    const mmp_array *x = inputs[0], *rows = inputs[1];
    const int64_t n = x->dims[0], k = rows ? rows->dims[0] : 1;
    const int32_t *rd = rows ? rows->data : NULL;
    int64_t n_out = 0, sum = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t r = rd ? rd[i] : n;
        if (r < 1)
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: rows[%lld] = %lld (each window needs >= 1 row)", s->kind,
                              (long long)i, (long long)r);
        sum += r;
        n_out += mmp_audio_proj_n_out(p, r);
    }
    if (sum != n || k < 1)
        return mmp__error(MMP_ERR_SHAPE, "%s: the rows input adds up to %lld rows in %lld windows but hidden has %lld rows",
                          s->kind, (long long)sum, (long long)k, (long long)n);
    int64_t d[2] = {n_out, p->n_embd};
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 2, d);
    if (!o) return MMP_ERR_NOMEM;
    enum mmp_status st = MMP_OK;
    int64_t at = 0, at_out = 0;
    for (int64_t i = 0; i < k && st == MMP_OK; i++) {
        int64_t r = rd ? rd[i] : n;
        st = mmp_audio_proj_run(p, (const float *)x->data + (size_t)(at * p->n_in), r,
                                (float *)o->data + (size_t)(at_out * p->n_embd), sp ? sp->n_threads : 1);
        at += r;
        at_out += mmp_audio_proj_n_out(p, r);
    }
    if (st != MMP_OK) {
        mmp_array_free(o);
        return st;
    }
    outputs[0] = o;
    return MMP_OK;
}

#define AUDIO_PROJ_KIND(var, kname, summ, createfn)                                                                  \
    const mmp_stage_kind var = {                                                                                     \
        .name = kname,                                                                                               \
        .summary = summ,                                                                                             \
        .n_inputs = 2,                                                                                               \
        .n_outputs = 1,                                                                                              \
        .inputs = {{"hidden", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,                 \
                    "audio encoder states [n, d_audio]"},                                                            \
                   {"rows", {MMP_ROLE_COUNTS, MMP_TYPE_I32, 1, {MMP_DIM_ANY}}, true,                                 \
                    "rows of hidden per window [k] (encoder.whisper's): each window projected alone"}},              \
        .outputs = {{"embeddings", {MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,        \
                     "LLM input embeddings [n / stack, n_embd]"}},                                                   \
        .create = createfn,                                                                                          \
        .run = proj_stage_run,                                                                                       \
        .destroy = proj_stage_destroy,                                                                               \
    }

AUDIO_PROJ_KIND(mmp__stage_projector_qwen2_audio, "projector.qwen2_audio",
                "Qwen2-Audio projector (multi_modal_projector.linear): audio tower states -> embeddings", qwen2a_create);
AUDIO_PROJ_KIND(mmp__stage_projector_ultravox, "projector.ultravox",
                "Ultravox projector: stack 8 -> RMSNorm -> linear -> SwiGLU -> RMSNorm -> linear", ultravox_create);
AUDIO_PROJ_KIND(mmp__stage_projector_voxtral, "projector.voxtral",
                "Voxtral projector: stack 4 -> linear -> GELU -> linear", voxtral_create);
