/* The Whisper audio encoder (also the audio tower of Qwen2-Audio, Ultravox, Voxtral).
 *
 *   mel [n_mels, L] -> conv1d(k3, s1, p1) + b -> GELU -> conv1d(k3, s2, p1) + b -> GELU
 *   -> [T = ceil(L/2), D] + embed_positions[:T]
 *   -> n_layers x pre-LN block:
 *        x += out_proj(attn(q_proj(LN1 x) + bq, k_proj(LN1 x) (no bias), v_proj(LN1 x) + bv))
 *        x += fc2(GELU(fc1(LN2 x) + b1)) + b2
 *   -> [Qwen2-Audio: avg-pool 2 over time] -> final LN -> hidden [T', D]
 *
 * GELU is the erf form (activation_function "gelu"). Attention is bidirectional; the
 * Qwen2-Audio tower masks keys past the valid audio when a window is zero-padded.
 *
 * Tensor names (prefix found from the file): "model.encoder." (WhisperModel /
 * WhisperForConditionalGeneration), "audio_tower." (Qwen2-Audio, Ultravox, Voxtral), "encoder."
 * and "" (WhisperEncoder.save_pretrained); or a llama.cpp mmproj GGUF ("a.*": see load_gguf). */
#include "mmpipe/audio.h"
#include "mmpipe/backend.h"
#include "mmpipe/graph.h"
#include "mmpipe/gguf.h"
#include "../core/util.h"
#include "../core/weights.h"
#include "audio-impl.h"

#include <math.h>
#include <string.h>

/* ---- weight binding shared with projectors/audio.c (private, declared in both files) ---- */

typedef struct mmp__audio_w {
    enum mmp_type type;
    int n_dims;
    int64_t ne[4];
    void *data;     /* NULL: absent (optional weight) */
} mmp__audio_w;

typedef struct mmp__audio_own {
    struct mmp__audio_own *next;
    max_align_t data[];
} mmp__audio_own;

void mmp__audio_own_free(mmp__audio_own *o);
enum mmp_status mmp__audio_bind(const mmp_modelfile *mf, mmp__audio_own **own, mmp__audio_w *w, const char *name,
                                int n_dims, const int64_t *ne, bool required, bool f32);
mmp_tensor *mmp__audio_wt(mmp_graph *g, const mmp__audio_w *w);

void mmp__audio_own_free(mmp__audio_own *o) {
    while (o) {
        mmp__audio_own *n = o->next;
        free(o);
        o = n;
    }
}

static void *own_alloc(void *ctx, size_t n) {
    mmp__audio_own **own = ctx;
    mmp__audio_own *o = mmp__malloc(sizeof *o + n);
    if (!o) return NULL;
    o->next = *own;
    *own = o;
    return o->data;
}

/* Bind tensor `name` to *w, checking its shape: ne[] in ggml order, n_dims entries, an entry
 * <= 0 accepts any size (the caller reads it back from w->ne). f32: converted to an owned f32
 * copy when stored as F16/BF16 (elementwise ops want f32). Unaligned data is copied. */
enum mmp_status mmp__audio_bind(const mmp_modelfile *mf, mmp__audio_own **own, mmp__audio_w *w, const char *name,
                                int n_dims, const int64_t *ne, bool required, bool f32) {
    memset(w, 0, sizeof *w);
    const mmp_tensor_info *ti = mmp_modelfile_find(mf, name);
    if (!ti) {
        if (!required) { mmp_clear_error(); return MMP_OK; }
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing tensor '%s'", mmp_modelfile_path(mf), name);
    }
    int64_t got[4] = {1, 1, 1, 1};
    for (int i = 0; i < ti->n_dims && i < 4; i++) got[i] = ti->ne[i];
    bool ok = ti->n_dims <= n_dims || n_dims == 4;
    for (int i = 0; i < 4; i++) {
        int64_t want = i < n_dims ? ne[i] : 1;
        if (want > 0 && got[i] != want) ok = false;
    }
    if (!ok) {
        char a[96] = "", b[96] = "";
        size_t oa = 0, ob = 0;
        for (int i = 0; i < ti->n_dims; i++) oa += (size_t)snprintf(a + oa, sizeof a - oa, "%s%lld", i ? ", " : "", (long long)ti->ne[i]);
        for (int i = 0; i < n_dims; i++) {
            if (ne[i] > 0) ob += (size_t)snprintf(b + ob, sizeof b - ob, "%s%lld", i ? ", " : "", (long long)ne[i]);
            else ob += (size_t)snprintf(b + ob, sizeof b - ob, "%s*", i ? ", " : "");
            if (ob >= sizeof b) break;
        }
        return mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' has shape {%s} (ggml order), expected {%s}",
                          mmp_modelfile_path(mf), name, a, b);
    }
    if (ti->type != MMP_TYPE_F32 && ti->type != MMP_TYPE_F16 && ti->type != MMP_TYPE_BF16 &&
        !(ti->type >= MMP_TYPE_Q4_0 && ti->type < MMP_TYPE_I8 && !f32 && n_dims >= 2))
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s (want f32, f16 or bf16)", mmp_modelfile_path(mf),
                          name, mmp_type_name(ti->type));
    w->n_dims = n_dims;
    for (int i = 0; i < 4; i++) w->ne[i] = got[i];
    int64_t nel = got[0] * got[1] * got[2] * got[3];
    return mmp__weight_data(ti, nel, f32, own_alloc, own, mmp_modelfile_path(mf), name, &w->type, &w->data);
}

/* The weight as a graph leaf (NULL stays NULL: absent optional weights). */
mmp_tensor *mmp__audio_wt(mmp_graph *g, const mmp__audio_w *w) {
    if (!w->data) return NULL;
    return mmp_new_tensor_ext(g, w->type, w->n_dims, w->ne, w->data);
}

/* ---- the encoder ---- */

typedef struct wlayer {
    mmp__audio_w ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} wlayer;

struct mmp_whisper {
    mmp_modelfile *mf_owned;
    const mmp_modelfile *mf;
    mmp__audio_own *own;
    mmp_whisper_hparams hp;
    mmp__audio_w conv1_w, conv1_b, conv2_w, conv2_b, pos, ln_w, ln_b;
    wlayer *layers;
    mmp_backend *be;
    int be_threads;
};

void mmp_whisper_free(mmp_whisper *w) {
    if (!w) return;
    mmp_backend_free(w->be);
    free(w->layers);
    mmp__audio_own_free(w->own);
    mmp_modelfile_free(w->mf_owned);
    free(w);
}

const mmp_whisper_hparams *mmp_whisper_get_hparams(const mmp_whisper *w) { return w ? &w->hp : NULL; }

/* Read an int hyper-parameter from config (audio_config.<key> first, then <key>); keeps *v
 * when absent. */
static enum mmp_status cfg_int(const mmp_json *cfg, const char *key, int *v, const char *path) {
    if (!cfg) return MMP_OK;
    char a[128];
    snprintf(a, sizeof a, "audio_config.%s", key);
    int64_t x;
    enum mmp_status st = mmp_json_get_int_alt(cfg, &x, a, key, NULL);
    if (st == MMP_ERR_NOT_FOUND) { mmp_clear_error(); return MMP_OK; }
    if (st != MMP_OK) return st;
    if (x < 1 || x > (1 << 20)) return mmp__error(MMP_ERR_FORMAT, "%s: config %s = %lld is out of range", path, key, (long long)x);
    *v = (int)x;
    return MMP_OK;
}

static bool has_tensor(const mmp_modelfile *mf, const char *name) {
    bool h = mmp_modelfile_find(mf, name) != NULL;
    if (!h) mmp_clear_error();
    return h;
}

/* llama.cpp mmproj GGUF with an audio encoder (clip.cpp / convert_hf_to_gguf.py names):
 *   a.conv1d.1.{weight,bias} (conv1; the bias stored [D, 1]: ne {1, D}), a.conv1d.2.* (conv2),
 *   a.position_embd.weight, a.blk.N.{ln1 (self_attn_layer_norm), attn_q, attn_k (no bias),
 *   attn_v, attn_out, ln2 (final_layer_norm), ffn_up (fc1), ffn_down (fc2)}.*, a.post_ln.*
 *   keys clip.audio.{embedding_length, feed_forward_length, block_count, attention.head_count,
 *   attention.layer_norm_epsilon, num_mel_bins}; clip.projector_type names the projector:
 *   "qwen2a" / "voxtral" pool 2 over time before a.post_ln (clip.cpp audio_has_avgpool),
 *   "ultravox" does not. */
enum mmp_status mmp__audio_gguf_proj_type(const mmp_modelfile *mf, enum mmp_audio_proj_type *type);
enum mmp_status mmp__audio_gguf_proj_type(const mmp_modelfile *mf, enum mmp_audio_proj_type *type) {
    const mmp_gguf *g = mmp_modelfile_gguf(mf);
    const char *pt = NULL;
    if (!g) return mmp__error(MMP_ERR_INVALID_ARG, "%s: not a GGUF file", mmp_modelfile_path(mf));
    if (mmp_gguf_get_str(g, "clip.projector_type", &pt) != MMP_OK) {
        mmp__error_prefix("%s: audio mmproj: ", mmp_modelfile_path(mf));
        return MMP_ERR_FORMAT;
    }
    if (!strcmp(pt, "qwen2a")) *type = MMP_AUDIO_PROJ_QWEN2_AUDIO;
    else if (!strcmp(pt, "ultravox")) *type = MMP_AUDIO_PROJ_ULTRAVOX;
    else if (!strcmp(pt, "voxtral")) *type = MMP_AUDIO_PROJ_VOXTRAL;
    else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: clip.projector_type '%s' is not an audio projector this library runs "
                           "(qwen2a, ultravox, voxtral)", mmp_modelfile_path(mf), pt);
    return MMP_OK;
}

static enum mmp_status load_gguf(mmp_whisper *w) {
    const mmp_modelfile *mf = w->mf;
    const mmp_gguf *g = mmp_modelfile_gguf(mf);
    const char *path = mmp_modelfile_path(mf);
    mmp_whisper_hparams *hp = &w->hp;
    enum mmp_audio_proj_type pt;
    enum mmp_status st;
    if ((st = mmp__audio_gguf_proj_type(mf, &pt)) != MMP_OK) return st;
    struct { const char *key; int *out; uint32_t lo, hi; } K[] = {
        {"clip.audio.embedding_length", &hp->d_model, 1, 65536},
        {"clip.audio.feed_forward_length", &hp->d_ffn, 1, 1u << 20},
        {"clip.audio.block_count", &hp->n_layers, 1, 4096},
        {"clip.audio.attention.head_count", &hp->n_heads, 1, 4096},
        {"clip.audio.num_mel_bins", &hp->n_mels, 1, 4096},
    };
    for (size_t i = 0; i < sizeof K / sizeof K[0]; i++) {
        uint32_t u;
        if ((st = mmp_gguf_get_u32(g, K[i].key, &u)) != MMP_OK) return st;
        if (u < K[i].lo || u > K[i].hi)
            return mmp__error(MMP_ERR_FORMAT, "%s: '%s' = %u is out of range [%u, %u]", path, K[i].key, u, K[i].lo, K[i].hi);
        *K[i].out = (int)u;
    }
    if (hp->d_model % hp->n_heads)
        return mmp__error(MMP_ERR_FORMAT, "%s: clip.audio.attention.head_count %d does not divide embedding_length %d", path,
                          hp->n_heads, hp->d_model);
    hp->eps = 1e-5f;
    if (mmp_gguf_has(g, "clip.audio.attention.layer_norm_epsilon") &&
        (st = mmp_gguf_get_f32(g, "clip.audio.attention.layer_norm_epsilon", &hp->eps)) != MMP_OK)
        return st;
    if (!(hp->eps > 0 && hp->eps < 1))
        return mmp__error(MMP_ERR_FORMAT, "%s: clip.audio.attention.layer_norm_epsilon = %g", path, (double)hp->eps);
    hp->avg_pool = pt == MMP_AUDIO_PROJ_QWEN2_AUDIO || pt == MMP_AUDIO_PROJ_VOXTRAL;
    const int64_t D = hp->d_model, F = hp->d_ffn, M = hp->n_mels;
    char nm[128];
#define BIND(dst, nd, required, f32, ...) do { \
        int64_t ne_[4] = {__VA_ARGS__}; \
        if ((st = mmp__audio_bind(mf, &w->own, &(dst), nm, nd, ne_, required, f32)) != MMP_OK) return st; \
    } while (0)
#define NAME(...) snprintf(nm, sizeof nm, __VA_ARGS__)
    NAME("a.conv1d.1.weight"); BIND(w->conv1_w, 3, true, false, 3, M, D);
    NAME("a.conv1d.2.weight"); BIND(w->conv2_w, 3, true, false, 3, D, D);
    for (int k = 0; k < 2; k++) {
        const mmp__audio_w *cw = k ? &w->conv2_w : &w->conv1_w;
        if (cw->type != MMP_TYPE_F32 && cw->type != MMP_TYPE_F16)
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: a.conv1d.%d.weight has type %s (conv1d takes f32 or f16)", path, k + 1,
                              mmp_type_name(cw->type));
        /* the bias as [1, D] (what the add wants); llama.cpp's converter stores it so, a 1-D
         * [D] is taken too */
        mmp__audio_w *b = k ? &w->conv2_b : &w->conv1_b;
        NAME("a.conv1d.%d.bias", k + 1);
        const mmp_tensor_info *ti = mmp_modelfile_find(mf, nm);
        if (ti && ti->n_dims == 1) BIND(*b, 1, true, true, D);
        else BIND(*b, 2, true, true, 1, D);
        b->n_dims = 2; b->ne[0] = 1; b->ne[1] = D;
    }
    NAME("a.position_embd.weight"); BIND(w->pos, 2, true, true, D, 0);
    hp->n_positions = (int)w->pos.ne[1];
    NAME("a.post_ln.weight"); BIND(w->ln_w, 1, true, true, D);
    NAME("a.post_ln.bias"); BIND(w->ln_b, 1, true, true, D);
    w->layers = mmp__calloc((size_t)hp->n_layers, sizeof *w->layers);
    if (!w->layers) return MMP_ERR_NOMEM;
    for (int i = 0; i < hp->n_layers; i++) {
        wlayer *L = &w->layers[i];
        NAME("a.blk.%d.ln1.weight", i); BIND(L->ln1_w, 1, true, true, D);
        NAME("a.blk.%d.ln1.bias", i); BIND(L->ln1_b, 1, true, true, D);
        NAME("a.blk.%d.attn_q.weight", i); BIND(L->q_w, 2, true, false, D, D);
        NAME("a.blk.%d.attn_q.bias", i); BIND(L->q_b, 1, true, true, D);
        NAME("a.blk.%d.attn_k.weight", i); BIND(L->k_w, 2, true, false, D, D);
        NAME("a.blk.%d.attn_k.bias", i); BIND(L->k_b, 1, false, true, D);
        NAME("a.blk.%d.attn_v.weight", i); BIND(L->v_w, 2, true, false, D, D);
        NAME("a.blk.%d.attn_v.bias", i); BIND(L->v_b, 1, true, true, D);
        NAME("a.blk.%d.attn_out.weight", i); BIND(L->o_w, 2, true, false, D, D);
        NAME("a.blk.%d.attn_out.bias", i); BIND(L->o_b, 1, true, true, D);
        NAME("a.blk.%d.ln2.weight", i); BIND(L->ln2_w, 1, true, true, D);
        NAME("a.blk.%d.ln2.bias", i); BIND(L->ln2_b, 1, true, true, D);
        NAME("a.blk.%d.ffn_up.weight", i); BIND(L->fc1_w, 2, true, false, D, F);
        NAME("a.blk.%d.ffn_up.bias", i); BIND(L->fc1_b, 1, true, true, F);
        NAME("a.blk.%d.ffn_down.weight", i); BIND(L->fc2_w, 2, true, false, F, D);
        NAME("a.blk.%d.ffn_down.bias", i); BIND(L->fc2_b, 1, true, true, D);
    }
#undef BIND
#undef NAME
    return MMP_OK;
}

static enum mmp_status load(mmp_whisper *w) {
    const mmp_modelfile *mf = w->mf;
    const char *path = mmp_modelfile_path(mf);
    if (mmp_modelfile_gguf(mf)) {
        if (!has_tensor(mf, "a.conv1d.1.weight"))
            return mmp__error(MMP_ERR_NOT_FOUND, "%s: no audio encoder in this GGUF file (no 'a.conv1d.1.weight')", path);
        return load_gguf(w);
    }
    static const char *const prefixes[] = {"model.encoder.", "audio_tower.", "encoder.", "", NULL};
    const char *pre = NULL;
    char nm[256];
    for (int i = 0; prefixes[i]; i++) {
        snprintf(nm, sizeof nm, "%sconv1.weight", prefixes[i]);
        if (has_tensor(mf, nm)) { pre = prefixes[i]; break; }
    }
    if (!pre)
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: no Whisper encoder found (looked for conv1.weight under 'model.encoder.', "
                          "'audio_tower.', 'encoder.' and no prefix)", path);
    enum mmp_status st;
#define BIND(dst, nd, required, f32, ...) do { \
        int64_t ne_[4] = {__VA_ARGS__}; \
        if ((st = mmp__audio_bind(mf, &w->own, &(dst), nm, nd, ne_, required, f32)) != MMP_OK) return st; \
    } while (0)
#define NAME(...) snprintf(nm, sizeof nm, __VA_ARGS__)
    /* conv1.weight torch [D, n_mels, 3] -> ne {3, n_mels, D} */
    NAME("%sconv1.weight", pre); BIND(w->conv1_w, 3, true, false, 3, 0, 0);
    mmp_whisper_hparams *hp = &w->hp;
    hp->n_mels = (int)w->conv1_w.ne[1];
    hp->d_model = (int)w->conv1_w.ne[2];
    if (w->conv1_w.type != MMP_TYPE_F32 && w->conv1_w.type != MMP_TYPE_F16)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: %sconv1.weight has type %s (conv1d takes f32 or f16)", path, pre,
                          mmp_type_name(w->conv1_w.type));
    const int64_t D = hp->d_model;
    /* conv biases [D] are added to [L, D] outputs as [1, D] */
    NAME("%sconv1.bias", pre); BIND(w->conv1_b, 1, true, true, D);
    w->conv1_b.n_dims = 2; w->conv1_b.ne[0] = 1; w->conv1_b.ne[1] = D;
    NAME("%sconv2.weight", pre); BIND(w->conv2_w, 3, true, false, 3, D, D);
    if (w->conv2_w.type != MMP_TYPE_F32 && w->conv2_w.type != MMP_TYPE_F16)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: %sconv2.weight has type %s (conv1d takes f32 or f16)", path, pre,
                          mmp_type_name(w->conv2_w.type));
    NAME("%sconv2.bias", pre); BIND(w->conv2_b, 1, true, true, D);
    w->conv2_b.n_dims = 2; w->conv2_b.ne[0] = 1; w->conv2_b.ne[1] = D;
    NAME("%sembed_positions.weight", pre); BIND(w->pos, 2, true, true, D, 0);
    hp->n_positions = (int)w->pos.ne[1];
    NAME("%slayer_norm.weight", pre); BIND(w->ln_w, 1, true, true, D);
    NAME("%slayer_norm.bias", pre); BIND(w->ln_b, 1, true, true, D);
    int nl = 0;
    for (;; nl++) {
        NAME("%slayers.%d.fc1.weight", pre, nl);
        if (!has_tensor(mf, nm) || nl > 4096) break;
    }
    if (nl == 0) return mmp__error(MMP_ERR_NOT_FOUND, "%s: no encoder layers (%slayers.0.fc1.weight)", path, pre);
    hp->n_layers = nl;
    NAME("%slayers.0.fc1.weight", pre);
    const mmp_tensor_info *fc1 = mmp_modelfile_find(mf, nm);
    hp->d_ffn = fc1 && fc1->n_dims == 2 ? (int)fc1->ne[1] : 0;
    hp->n_heads = hp->d_model % 64 == 0 ? hp->d_model / 64 : 1;
    hp->eps = 1e-5f;
    /* config: check the sizes agree with the tensors; take the head count from it */
    const mmp_json *cfg = mmp_modelfile_config(mf);
    int c_heads = hp->n_heads, c_d = hp->d_model, c_layers = hp->n_layers, c_mels = hp->n_mels, c_ffn = hp->d_ffn;
    if ((st = cfg_int(cfg, "encoder_attention_heads", &c_heads, path)) != MMP_OK ||
        (st = cfg_int(cfg, "d_model", &c_d, path)) != MMP_OK || (st = cfg_int(cfg, "encoder_layers", &c_layers, path)) != MMP_OK ||
        (st = cfg_int(cfg, "num_mel_bins", &c_mels, path)) != MMP_OK || (st = cfg_int(cfg, "encoder_ffn_dim", &c_ffn, path)) != MMP_OK)
        return st;
    if (c_d != hp->d_model || c_layers != hp->n_layers || c_mels != hp->n_mels || c_ffn != hp->d_ffn)
        return mmp__error(MMP_ERR_FORMAT,
                          "%s: config (d_model %d, encoder_layers %d, num_mel_bins %d, encoder_ffn_dim %d) does not match the "
                          "tensors (%d, %d, %d, %d)", path, c_d, c_layers, c_mels, c_ffn, hp->d_model, hp->n_layers, hp->n_mels,
                          hp->d_ffn);
    if (c_heads < 1 || hp->d_model % c_heads != 0)
        return mmp__error(MMP_ERR_FORMAT, "%s: encoder_attention_heads %d does not divide d_model %d", path, c_heads, hp->d_model);
    hp->n_heads = c_heads;
    const char *mt = NULL;
    if (cfg && (mmp_json_get_string_alt(cfg, &mt, "audio_config.model_type", "model_type", NULL) == MMP_OK) && mt &&
        strcmp(mt, "qwen2_audio_encoder") == 0)
        hp->avg_pool = true;
    else
        mmp_clear_error();
    const int64_t F = hp->d_ffn;
    if (F < 1) return mmp__error(MMP_ERR_FORMAT, "%s: %slayers.0.fc1.weight is not 2-D", path, pre);
    w->layers = mmp__calloc((size_t)nl, sizeof *w->layers);
    if (!w->layers) return MMP_ERR_NOMEM;
    for (int i = 0; i < nl; i++) {
        wlayer *L = &w->layers[i];
        const char *p = pre;
        NAME("%slayers.%d.self_attn_layer_norm.weight", p, i); BIND(L->ln1_w, 1, true, true, D);
        NAME("%slayers.%d.self_attn_layer_norm.bias", p, i); BIND(L->ln1_b, 1, true, true, D);
        NAME("%slayers.%d.self_attn.q_proj.weight", p, i); BIND(L->q_w, 2, true, false, D, D);
        NAME("%slayers.%d.self_attn.q_proj.bias", p, i); BIND(L->q_b, 1, true, true, D);
        NAME("%slayers.%d.self_attn.k_proj.weight", p, i); BIND(L->k_w, 2, true, false, D, D);
        NAME("%slayers.%d.self_attn.k_proj.bias", p, i); BIND(L->k_b, 1, false, true, D);   /* Whisper has none */
        NAME("%slayers.%d.self_attn.v_proj.weight", p, i); BIND(L->v_w, 2, true, false, D, D);
        NAME("%slayers.%d.self_attn.v_proj.bias", p, i); BIND(L->v_b, 1, true, true, D);
        NAME("%slayers.%d.self_attn.out_proj.weight", p, i); BIND(L->o_w, 2, true, false, D, D);
        NAME("%slayers.%d.self_attn.out_proj.bias", p, i); BIND(L->o_b, 1, true, true, D);
        NAME("%slayers.%d.final_layer_norm.weight", p, i); BIND(L->ln2_w, 1, true, true, D);
        NAME("%slayers.%d.final_layer_norm.bias", p, i); BIND(L->ln2_b, 1, true, true, D);
        NAME("%slayers.%d.fc1.weight", p, i); BIND(L->fc1_w, 2, true, false, D, F);
        NAME("%slayers.%d.fc1.bias", p, i); BIND(L->fc1_b, 1, true, true, F);
        NAME("%slayers.%d.fc2.weight", p, i); BIND(L->fc2_w, 2, true, false, F, D);
        NAME("%slayers.%d.fc2.bias", p, i); BIND(L->fc2_b, 1, true, true, D);
    }
#undef BIND
#undef NAME
    return MMP_OK;
}

mmp_whisper *mmp_whisper_load_modelfile(const mmp_modelfile *mf) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_whisper_load_modelfile: NULL modelfile");
    mmp_whisper *w = mmp__calloc(1, sizeof *w);
    if (!w) return NULL;
    w->mf = mf;
    if (load(w) != MMP_OK) {
        mmp_whisper_free(w);
        return NULL;
    }
    return w;
}

mmp_whisper *mmp_whisper_load(const char *path) {
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) return NULL;
    mmp_whisper *w = mmp_whisper_load_modelfile(mf);
    if (!w) {
        mmp_modelfile_free(mf);
        return NULL;
    }
    w->mf_owned = mf;
    return w;
}

/* conv output length for k3 s2 p1 */
static int64_t conv_out(int64_t L) { return (L - 1) / 2 + 1; }

int64_t mmp_whisper_n_out(const mmp_whisper *w, int64_t n_frames) {
    if (!w || n_frames < 1) return 0;
    int64_t t = conv_out(n_frames);
    return w->hp.avg_pool ? t / 2 : t;
}

int64_t mmp_whisper_n_valid_out(const mmp_whisper *w, int64_t n_valid_frames) {
    if (!w || n_valid_frames < 1) return 0;
    /* Qwen2-Audio _get_feat_extract_output_lengths: (L-1)//2+1, then (x-2)//2+1 */
    int64_t t = conv_out(n_valid_frames);
    return w->hp.avg_pool ? (t - 2) / 2 + 1 : t;
}

/* ---- mtmd's window-by-window encoding (encoders/audio-impl.h) ---- */

int64_t mmp__audio_window_samples(int n_positions, int hop, int64_t max_samples) {
    if (n_positions < 1 || hop < 1) return 0;
    int64_t win = (int64_t)2 * n_positions * hop;
    return win < max_samples ? win : max_samples;
}

int64_t mmp__whisper_window_keep(const mmp_whisper *w, int64_t n_frames, int64_t n_valid) {
    if (!w || n_frames < 1 || n_valid < 0 || n_valid > n_frames) return 0;
    int64_t n_out = mmp_whisper_n_out(w, n_frames);
    int64_t keep = n_valid > 0 ? mmp_whisper_n_valid_out(w, n_valid) : n_out;
    return (n_out > 0 && keep > 0 && keep <= n_out) ? keep : 0;
}

enum mmp_status mmp__whisper_encode_window(mmp_whisper *w, const float *mel, int64_t n_frames, int64_t n_valid, float *hidden,
                                           int n_threads, mmp_abort_fn abort_cb, void *abort_user) {
    if (!w) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_whisper_encode: NULL argument");
    /* Qwen2-Audio masks its padding; plain Whisper towers (Ultravox, Voxtral) attend to it and
     * the rows past the audio are dropped afterwards */
    return mmp_whisper_encode(w, mel, n_frames, w->hp.avg_pool ? n_valid : 0, hidden, n_threads, abort_cb, abort_user);
}

enum mmp_status mmp__whisper_peek(const mmp_modelfile *mf, int *n_mels, int *n_positions) {
    const mmp_tensor_info *conv = NULL, *pos = NULL;
    char nm[256];
    if (mmp_modelfile_gguf(mf)) {
        conv = mmp_modelfile_find(mf, "a.conv1d.1.weight");
        pos = mmp_modelfile_find(mf, "a.position_embd.weight");
    } else {
        static const char *const prefixes[] = {"model.encoder.", "audio_tower.", "encoder.", "", NULL};
        for (int i = 0; prefixes[i] && !conv; i++) {
            snprintf(nm, sizeof nm, "%sconv1.weight", prefixes[i]);
            if (!has_tensor(mf, nm)) continue;
            conv = mmp_modelfile_find(mf, nm);
            snprintf(nm, sizeof nm, "%sembed_positions.weight", prefixes[i]);
            pos = mmp_modelfile_find(mf, nm);
        }
    }
    /* conv1 ne {3, n_mels, D}; positions ne {D, n_positions} */
    if (!conv || !pos || conv->n_dims != 3 || pos->n_dims != 2 || conv->ne[1] < 1 || conv->ne[1] > 4096 || pos->ne[1] < 1 ||
        pos->ne[1] > (1 << 24))
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: no Whisper encoder (conv1 and positional embedding tensors) found",
                          mmp_modelfile_path(mf));
    *n_mels = (int)conv->ne[1];
    *n_positions = (int)pos->ne[1];
    return MMP_OK;
}

enum mmp_status mmp_whisper_encode(mmp_whisper *w, const float *mel, int64_t n_frames, int64_t n_valid, float *out,
                                   int n_threads, mmp_abort_fn abort_cb, void *abort_user) {
    if (!w || !mel || !out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_whisper_encode: NULL argument");
    const mmp_whisper_hparams *hp = &w->hp;
    const int64_t D = hp->d_model, H = hp->n_heads, hd = D / H;
    if (n_frames < 1) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_whisper_encode: %lld mel frames", (long long)n_frames);
    const int64_t T = conv_out(n_frames);
    if (T > hp->n_positions)
        return mmp__error(MMP_ERR_LIMIT, "mmp_whisper_encode: %lld mel frames give %lld positions, the model has %d (at most %d frames)",
                          (long long)n_frames, (long long)T, hp->n_positions, 2 * hp->n_positions);
    if (hp->avg_pool && T < 2)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_whisper_encode: %lld mel frames are too few to pool", (long long)n_frames);
    if (n_threads <= 0) n_threads = 1;
    if (!w->be || w->be_threads != n_threads) {
        mmp_backend_free(w->be);
        w->be = mmp_backend_cpu_new(n_threads);
        w->be_threads = n_threads;
        if (!w->be) return MMP_ERR_NOMEM;
    }
    /* keys at or after the first padded position are masked (Qwen2-Audio's padding mask) */
    int64_t t_valid = T;
    if (n_valid > 0 && n_valid < n_frames) t_valid = conv_out(n_valid);
    mmp_graph_params gp = mmp_graph_params_default();
    gp.max_tensors = 64 + 48 * hp->n_layers;
    mmp_graph *g = mmp_graph_new(gp);
    if (!g) return MMP_ERR_NOMEM;
    enum mmp_status st = MMP_OK;
    /* mel [n_mels, L] row-major = ne {L, n_mels} = conv1d's x [L, Cin] */
    mmp_tensor *inp = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, n_frames, hp->n_mels), "mel");
    mmp_tensor *mask = NULL;
    if (t_valid < T) mask = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, T, T), "mask");
    mmp_tensor *x = mmp_conv1d(g, mmp__audio_wt(g, &w->conv1_w), inp, 1, 1, 1);          /* [L, D] */
    x = mmp_gelu(g, mmp_add(g, x, mmp__audio_wt(g, &w->conv1_b)));                       /* bias [1, D] */
    x = mmp_conv1d(g, mmp__audio_wt(g, &w->conv2_w), x, 2, 1, 1);                        /* [T, D] */
    x = mmp_gelu(g, mmp_add(g, x, mmp__audio_wt(g, &w->conv2_b)));
    x = mmp_cont(g, mmp_transpose(g, x));                                                /* [D, T] */
    mmp_tensor *pos = mmp__audio_wt(g, &w->pos);
    x = mmp_add(g, x, mmp_view_2d(g, pos, D, T, pos ? pos->nb[1] : 0, 0));               /* + embed_positions[:T] */
    const float scale = 1.0f / sqrtf((float)hd);
    for (int il = 0; il < hp->n_layers; il++) {
        const wlayer *L = &w->layers[il];
        mmp_tensor *h = mmp_layer_norm(g, x, mmp__audio_wt(g, &L->ln1_w), mmp__audio_wt(g, &L->ln1_b), hp->eps);
        mmp_tensor *q = mmp_add(g, mmp_mul_mat(g, mmp__audio_wt(g, &L->q_w), h), mmp__audio_wt(g, &L->q_b));
        mmp_tensor *k = mmp_mul_mat(g, mmp__audio_wt(g, &L->k_w), h);
        if (L->k_b.data) k = mmp_add(g, k, mmp__audio_wt(g, &L->k_b));
        mmp_tensor *v = mmp_add(g, mmp_mul_mat(g, mmp__audio_wt(g, &L->v_w), h), mmp__audio_wt(g, &L->v_b));
        /* [D, T] -> [hd, H, T] -> [hd, T, H] */
        q = mmp_permute(g, mmp_reshape_3d(g, q, hd, H, T), 0, 2, 1, 3);
        k = mmp_permute(g, mmp_reshape_3d(g, k, hd, H, T), 0, 2, 1, 3);
        v = mmp_permute(g, mmp_reshape_3d(g, v, hd, H, T), 0, 2, 1, 3);
        mmp_tensor *a = mmp_attn(g, q, k, v, mask, scale, false, 0);                     /* [hd, H, T] */
        a = mmp_reshape_2d(g, a, D, T);
        a = mmp_add(g, mmp_mul_mat(g, mmp__audio_wt(g, &L->o_w), a), mmp__audio_wt(g, &L->o_b));
        x = mmp_add(g, x, a);
        h = mmp_layer_norm(g, x, mmp__audio_wt(g, &L->ln2_w), mmp__audio_wt(g, &L->ln2_b), hp->eps);
        h = mmp_gelu(g, mmp_add(g, mmp_mul_mat(g, mmp__audio_wt(g, &L->fc1_w), h), mmp__audio_wt(g, &L->fc1_b)));
        h = mmp_add(g, mmp_mul_mat(g, mmp__audio_wt(g, &L->fc2_w), h), mmp__audio_wt(g, &L->fc2_b));
        x = mmp_add(g, x, h);
    }
    if (hp->avg_pool) {
        /* AvgPool1d(2, 2) over time: [D, T] -> [T, D] -> pool along T -> [T/2, D] -> [D, T/2] */
        x = mmp_avg_pool1d(g, mmp_cont(g, mmp_transpose(g, x)), 2, 2, 0);
        x = mmp_cont(g, mmp_transpose(g, x));
    }
    x = mmp_layer_norm(g, x, mmp__audio_wt(g, &w->ln_w), mmp__audio_wt(g, &w->ln_b), hp->eps);
    x = mmp_set_output(mmp_set_name(x, "whisper.out"));
    if (!x) {
        mmp__error_prefix("whisper encoder graph: ");
        st = MMP_ERR_SHAPE;
        goto done;
    }
    if ((st = mmp_graph_plan(w->be, g)) != MMP_OK) goto done;
    memcpy(inp->data, mel, sizeof(float) * (size_t)n_frames * (size_t)hp->n_mels);
    if (mask) {
        float *m = mask->data;
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) m[i * T + j] = j < t_valid ? 0.0f : -INFINITY;
    }
    if ((st = mmp_graph_compute(w->be, g, abort_cb, abort_user)) != MMP_OK) goto done;
    memcpy(out, x->data, sizeof(float) * (size_t)x->ne[0] * (size_t)x->ne[1]);
done:
    mmp_graph_free(g);
    return st;
}

/* ---- the `encoder.whisper` stage kind ----
 * mel [n_mels, n_frames] -> hidden [n_out, d_model] + rows [k] (Qwen2-Audio towers include
 * the avg-pool and their final LN).
 * Without the valid input the mel is one window and every row is kept; option valid=N: only
 * the first N frames hold audio (the keys past them are masked, whatever the tower).
 * With valid [k] (frontend.mel's, window=...): the mel is k windows of n_frames / k frames,
 * each encoded as mmp_mm_encode_audio does (encoders/audio-impl.h: the Qwen2-Audio tower masks
 * the padding), and only the rows holding audio are kept: hidden [sum rows, d_model], rows [k]
 * the rows of each window (for the projector's rows input). */
#include "mmpipe/stage.h"
#include "../core/stage-impl.h"

#include "../core/store-impl.h"

/* The encoder comes from the model store (MMP__MODEL_SCRATCH: mmp_whisper_encode keeps a
 * backend and buffers in the model, so it is shared only within one pipeline). */
typedef struct whisper_stage {
    mmp__model_ref ref;
    mmp_whisper *w;
    int64_t valid;
} whisper_stage;

static void whisper_stage_destroy(void *state) {
    whisper_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

static void *whisper_model_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    (void)ctx;
    return mmp_whisper_load_modelfile(mf);
}
static void whisper_model_free(void *m) { mmp_whisper_free(m); }

static void *whisper_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "encoder.whisper: no model path (-m)");
    whisper_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    mmp__opt opt[4];
    char *storage = NULL;
    int n_opt = mmp__opts_parse("encoder.whisper", p->options, opt, 4, &storage);
    bool bad = n_opt < 0;
    for (int i = 0; i < n_opt && !bad; i++) {
        char *e = NULL;
        if (!strcmp(opt[i].key, "valid") && *opt[i].val && (s->valid = strtoll(opt[i].val, &e, 10)) >= 0 && !*e) continue;
        bad = true;
        mmp__error(MMP_ERR_INVALID_ARG, "encoder.whisper: bad option '%s=%s' (known: valid=N frames)", opt[i].key, opt[i].val);
    }
    free(storage);
    if (bad) {
        free(s);
        return NULL;
    }
    if (mmp__model_get(p, "whisper", p->model_path, NULL, MMP__MODEL_SCRATCH, whisper_model_load, whisper_model_free, NULL,
                       &s->ref) != MMP_OK) {
        free(s);
        return NULL;
    }
    s->w = s->ref.model;
    in[0].dims[0] = s->w->hp.n_mels;
    out[0].dims[1] = s->w->hp.d_model;
    return s;
}

/* mel [n_mels, k W] + valid [k] -> hidden [sum keep_i, D], rows [k]: window i (columns
 * [i W, (i + 1) W) of every mel row) encoded alone, its first keep_i rows kept. */
static enum mmp_status encode_windows(whisper_stage *s, const mmp_stage_params *p, const mmp_array *mel,
                                      const mmp_array *valid, mmp_array **outputs) {
    mmp_whisper *w = s->w;
    const int64_t M = w->hp.n_mels, D = w->hp.d_model, nf = mel->dims[1], k = valid->dims[0];
    if (s->valid > 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "encoder.whisper: the valid input and the option valid=%lld are both given",
                          (long long)s->valid);
    if (k < 1 || nf % k)
        return mmp__error(MMP_ERR_SHAPE, "encoder.whisper: %lld mel frames do not split into %lld windows (valid has %lld entries)",
                          (long long)nf, (long long)k, (long long)k);
    const int64_t W = nf / k;
    const int32_t *vd = valid->data;
    int64_t dr[1] = {k}, total = 0;
    mmp_array *rows = mmp_array_new(MMP_TYPE_I32, 1, dr);
    if (!rows) return MMP_ERR_NOMEM;
    int32_t *rd = rows->data;
    for (int64_t i = 0; i < k; i++) {
        int64_t keep = mmp__whisper_window_keep(w, W, vd[i]);
        if (keep <= 0) {
            mmp_array_free(rows);
            return mmp__error(MMP_ERR_INVALID_ARG, "encoder.whisper: window %lld of %lld frames has valid = %d (0..%lld) and gives no rows",
                              (long long)i, (long long)W, vd[i], (long long)W);
        }
        rd[i] = (int32_t)keep;
        total += keep;
    }
    int64_t dh[2] = {total, D};
    mmp_array *hid = mmp_array_new(MMP_TYPE_F32, 2, dh);
    float *win = k > 1 ? mmp__malloc(sizeof(float) * (size_t)M * (size_t)W) : NULL;
    float *h = mmp__malloc(sizeof(float) * (size_t)mmp_whisper_n_out(w, W) * (size_t)D);
    enum mmp_status st = (!hid || (k > 1 && !win) || !h) ? MMP_ERR_NOMEM : MMP_OK;
    int64_t at = 0;
    for (int64_t i = 0; i < k && st == MMP_OK; i++) {
        const float *src = mel->data;
        if (k > 1) {
            for (int64_t r = 0; r < M; r++)
                memcpy(win + (size_t)(r * W), (const float *)mel->data + (size_t)(r * nf + i * W), sizeof(float) * (size_t)W);
            src = win;
        }
        st = mmp__whisper_encode_window(w, src, W, vd[i], h, p ? p->n_threads : 1, p ? p->abort_cb : NULL, p ? p->cb_user : NULL);
        if (st != MMP_OK) break;
        memcpy((float *)hid->data + (size_t)(at * D), h, sizeof(float) * (size_t)rd[i] * (size_t)D);
        at += rd[i];
    }
    free(win);
    free(h);
    if (st != MMP_OK) {
        mmp_array_free(hid);
        mmp_array_free(rows);
        return st;
    }
    outputs[0] = hid;
    outputs[1] = rows;
    return MMP_OK;
}

static enum mmp_status whisper_stage_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                         mmp_array **outputs) {
    whisper_stage *s = state;
    const mmp_array *a = inputs[0];
    if (inputs[1]) return encode_windows(s, p, a, inputs[1], outputs);
    int64_t nf = a->dims[1];
    int64_t d[2] = {mmp_whisper_n_out(s->w, nf), s->w->hp.d_model}, dr[1] = {1};
    if (d[0] < 1) return mmp__error(MMP_ERR_INVALID_ARG, "encoder.whisper: %lld mel frames", (long long)nf);
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 2, d), *rows = mmp_array_new(MMP_TYPE_I32, 1, dr);
    enum mmp_status st = (!o || !rows) ? MMP_ERR_NOMEM : MMP_OK;
    if (st == MMP_OK)
        st = mmp_whisper_encode(s->w, a->data, nf, s->valid, o->data, p ? p->n_threads : 1, p ? p->abort_cb : NULL,
                                p ? p->cb_user : NULL);
    if (st != MMP_OK) {
        mmp_array_free(o);
        mmp_array_free(rows);
        return st;
    }
    ((int32_t *)rows->data)[0] = (int32_t)d[0];
    outputs[0] = o;
    outputs[1] = rows;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_encoder_whisper = {
    .name = "encoder.whisper",
    .summary = "Whisper audio encoder (HF Whisper, Qwen2-Audio / Ultravox / Voxtral audio towers): mel -> hidden",
    .n_inputs = 2,
    .n_outputs = 2,
    .inputs = {{"mel", {MMP_ROLE_MEL, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false, "log-mel [n_mels, n_frames]"},
               {"valid", {MMP_ROLE_COUNTS, MMP_TYPE_I32, 1, {MMP_DIM_ANY}}, true,
                "frames holding audio per window [k] (frontend.mel's): the mel is k windows, only audio rows are kept"}},
    .outputs = {{"hidden", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
                 "encoder states [n_frames/2 (/4 with the Qwen2-Audio pool), d_model]; with valid: the audio rows of each window"},
                {"rows", {MMP_ROLE_COUNTS, MMP_TYPE_I32, 1, {MMP_DIM_ANY}}, false,
                 "rows of hidden per window [k] (for the projector's rows input)"}},
    .create = whisper_stage_create,
    .run = whisper_stage_run,
    .destroy = whisper_stage_destroy,
};
