/* Loading an LLM backbone from a llama.cpp GGUF file or a Hugging Face folder
 * (config.json + safetensors): hyper-parameters, tensor-name mapping, shape checks, and the
 * tokenizer. Weights stay in the mapped files where their layout allows; separate per-expert
 * tensors (HF, old GGUF Mixtral) are stacked into one [K, M, n_expert] buffer the model owns,
 * and 1-D weights (norms, biases) are converted to f32 copies when stored in another type. */
#include "llm-impl.h"
#include "../core/util.h"
#include "../core/weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ------------------------------------------------------------------ helpers */

static void *own(void *ctx, size_t n) {
    mmp_llm *m = ctx;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 16;
        void **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return mmp__error_null(MMP_ERR_NOMEM, "llm: out of memory");
        m->owned = p;
        m->cap_owned = cap;
    }
    void *b = mmp__malloc(n ? n : 1);
    if (!b) return NULL;
    m->owned[m->n_owned++] = b;
    return b;
}

static void shape_str(char *buf, size_t size, int n_dims, const int64_t *ne) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "{");
    for (int i = 0; i < n_dims && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (o < size) snprintf(buf + o, size - o, "}");
}

/* Element alignment a kernel may rely on when reading the weight in place. */
static size_t type_align(enum mmp_type t) {
    switch (t) {
    case MMP_TYPE_F32: return 4;
    case MMP_TYPE_F16: case MMP_TYPE_BF16: return 2;
    default: return 2; /* quant blocks start with an f16 scale */
    }
}

/* Bind tensor `name` of the model file to *w, checking its shape against ne (ggml order,
 * n_dims entries, trailing 1s allowed). f32: a 1-D/small weight used by elementwise ops,
 * converted to f32 when stored as F16/BF16. Missing + !required: *w stays absent, OK. */
static enum mmp_status bind(mmp_llm *m, mmp__w *w, const char *name, int n_dims, const int64_t *ne,
                            bool required, bool f32) {
    memset(w, 0, sizeof *w);
    const mmp_tensor_info *ti = mmp_modelfile_find(m->mf, name);
    if (!ti) {
        if (!required) { mmp_clear_error(); return MMP_OK; }
        return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing tensor '%s' (architecture %s)", m->path, name, m->hp.arch);
    }
    int64_t got[4] = {1, 1, 1, 1};
    for (int i = 0; i < ti->n_dims && i < 4; i++) got[i] = ti->ne[i];
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        int64_t want = i < n_dims ? ne[i] : 1;
        if (got[i] != want) ok = false;
    }
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, ti->n_dims, ti->ne);
        shape_str(b, sizeof b, n_dims, ne);
        return mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' has shape %s (ggml order), expected %s", m->path, name, a, b);
    }
    const mmp_type_traits *tr = mmp_type_get_traits(ti->type);
    if (!tr || ti->type == MMP_TYPE_I8 || ti->type == MMP_TYPE_I16 || ti->type == MMP_TYPE_I32 ||
        ti->type == MMP_TYPE_I64 || ti->type == MMP_TYPE_F64 || ti->type == MMP_TYPE_U8)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, not a weight type", m->path, name,
                          mmp_type_name(ti->type));
    w->n_dims = n_dims;
    for (int i = 0; i < 4; i++) w->ne[i] = got[i];
    int64_t nel = got[0] * got[1] * got[2] * got[3];
    return mmp__weight_data(ti, nel, f32, own, m, m->path, name, &w->type, &w->data);
}

static enum mmp_status bind2(mmp_llm *m, mmp__w *w, const char *name, int64_t ne0, int64_t ne1, bool required) {
    int64_t ne[2] = {ne0, ne1};
    return bind(m, w, name, 2, ne, required, false);
}

static enum mmp_status bind1(mmp_llm *m, mmp__w *w, const char *name, int64_t ne0, bool required) {
    int64_t ne[1] = {ne0};
    return bind(m, w, name, 1, ne, required, true);
}

/* Stack n_expert tensors {ne0, ne1} named by fmt(e) into one {ne0, ne1, n_expert} weight. In
 * place when the file already stores them back to back with one type; else copied. */
static enum mmp_status bind_experts(mmp_llm *m, mmp__w *w, const char *const *names, int n_expert,
                                    int64_t ne0, int64_t ne1) {
    memset(w, 0, sizeof *w);
    mmp__w tmp;
    const mmp_tensor_info *first = NULL;
    bool adjacent = true;
    for (int e = 0; e < n_expert; e++) {
        enum mmp_status s = bind2(m, &tmp, names[e], ne0, ne1, true);
        if (s != MMP_OK) return s;
        const mmp_tensor_info *ti = mmp_modelfile_find(m->mf, names[e]);
        if (!ti) return MMP_ERR_INTERNAL;
        if (!first) first = ti;
        if (ti->type != first->type)
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: expert tensor '%s' has type %s but '%s' has %s", m->path,
                              names[e], mmp_type_name(ti->type), names[0], mmp_type_name(first->type));
        if ((const char *)ti->data != (const char *)first->data + (size_t)e * first->nbytes || tmp.data != ti->data)
            adjacent = false;
    }
    w->type = first->type;
    w->n_dims = 3;
    w->ne[0] = ne0; w->ne[1] = ne1; w->ne[2] = n_expert; w->ne[3] = 1;
    if (adjacent && (uintptr_t)first->data % type_align(first->type) == 0) {
        w->data = (void *)first->data;
        return MMP_OK;
    }
    uint64_t total;
    if (!mmp__mul_ok(first->nbytes, (uint64_t)n_expert, &total))
        return mmp__error(MMP_ERR_LIMIT, "%s: experts of '%s' too large", m->path, names[0]);
    char *dst = own(m, (size_t)total);
    if (!dst) return MMP_ERR_NOMEM;
    for (int e = 0; e < n_expert; e++) {
        const mmp_tensor_info *ti = mmp_modelfile_find(m->mf, names[e]);
        memcpy(dst + (size_t)e * first->nbytes, ti->data, first->nbytes);
    }
    w->data = dst;
    return MMP_OK;
}

/* Sanity limits on hyper-parameters read from files (everything is checked before use). */
static enum mmp_status check_hparams(mmp_llm *m) {
    mmp_llm_hparams *h = &m->hp;
#define CHK(cond, field, val) \
    if (!(cond)) return mmp__error(MMP_ERR_FORMAT, "%s: bad hyper-parameter %s = %lld", m->path, field, (long long)(val))
    CHK(h->n_vocab > 0 && h->n_vocab <= (1 << 24), "vocab size", h->n_vocab);
    CHK(h->n_embd > 0 && h->n_embd <= (1 << 16), "embedding length / hidden_size", h->n_embd);
    CHK(h->n_layer > 0 && h->n_layer <= 1024, "block count / num_hidden_layers", h->n_layer);
    CHK(h->n_head > 0 && h->n_head <= 1024, "head count / num_attention_heads", h->n_head);
    CHK(h->n_head_kv > 0 && h->n_head_kv <= h->n_head && h->n_head % h->n_head_kv == 0,
        "head count kv / num_key_value_heads", h->n_head_kv);
    CHK(h->head_dim > 0 && h->head_dim <= 1024 && h->head_dim % 2 == 0, "head_dim", h->head_dim);
    CHK(h->n_ff >= 0 && h->n_ff <= (1 << 20), "feed forward length / intermediate_size", h->n_ff);
    CHK(h->n_expert >= 0 && h->n_expert <= 1024, "expert count", h->n_expert);
    if (h->n_expert > 0) {
        CHK(h->n_expert_used > 0 && h->n_expert_used <= h->n_expert, "expert used count / num_experts_per_tok",
            h->n_expert_used);
        CHK(h->n_ff_expert > 0 && h->n_ff_expert <= (1 << 20), "expert feed forward length", h->n_ff_expert);
    }
    CHK(h->n_ff_shared >= 0 && h->n_ff_shared <= (1 << 20), "shared expert feed forward length", h->n_ff_shared);
    CHK(m->n_rot > 0 && m->n_rot <= h->head_dim && m->n_rot % 2 == 0, "rope dimension count", m->n_rot);
    if (!(h->rope_theta > 0.0f && h->rope_theta < 1e12f))
        return mmp__error(MMP_ERR_FORMAT, "%s: bad rope theta %g", m->path, (double)h->rope_theta);
    if (!(h->norm_eps > 0.0f && h->norm_eps < 1.0f))
        return mmp__error(MMP_ERR_FORMAT, "%s: bad rms norm epsilon %g", m->path, (double)h->norm_eps);
    if (h->n_ctx_train <= 0) h->n_ctx_train = 4096;
#undef CHK
    return MMP_OK;
}

/* ------------------------------------------------------------------ GGUF */

static enum mmp_status gguf_i32(const mmp_gguf *g, const char *arch, const char *key, int32_t *out, bool required,
                                int32_t dflt) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (!mmp_gguf_has(g, k)) {
        if (required) return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing key '%s'", mmp_gguf_path(g), k);
        *out = dflt;
        return MMP_OK;
    }
    return mmp_gguf_get_i32(g, k, out);
}

static enum mmp_status gguf_f32(const mmp_gguf *g, const char *arch, const char *key, float *out, bool required,
                                float dflt) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (!mmp_gguf_has(g, k)) {
        if (required) return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing key '%s'", mmp_gguf_path(g), k);
        *out = dflt;
        return MMP_OK;
    }
    return mmp_gguf_get_f32(g, k, out);
}

enum mmp_status mmp__llm_load_gguf(mmp_llm *m, bool vocab_only) {
    const mmp_gguf *g = mmp_modelfile_gguf(m->mf);
    mmp_llm_hparams *h = &m->hp;
    const char *ga = NULL;
    enum mmp_status s = mmp_gguf_get_str(g, "general.architecture", &ga);
    if (s != MMP_OK) return s;
    const mmp__llm_arch *arch = mmp__llm_arch_by_gguf(ga);
    if (!arch)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: unknown architecture general.architecture = '%s' (known: %s)",
                          m->path, ga, mmp__llm_arch_list_gguf());
    m->arch = arch;
    m->rope_mode = arch->gguf_rope;
    if ((s = gguf_i32(g, ga, "embedding_length", &h->n_embd, true, 0)) ||
        (s = gguf_i32(g, ga, "block_count", &h->n_layer, true, 0)) ||
        (s = gguf_i32(g, ga, "attention.head_count", &h->n_head, true, 0)) ||
        (s = gguf_i32(g, ga, "attention.head_count_kv", &h->n_head_kv, false, h->n_head)) ||
        (s = gguf_i32(g, ga, "feed_forward_length", &h->n_ff, false, 0)) ||
        (s = gguf_i32(g, ga, "expert_count", &h->n_expert, false, 0)) ||
        (s = gguf_i32(g, ga, "expert_used_count", &h->n_expert_used, false, 0)) ||
        (s = gguf_i32(g, ga, "context_length", &h->n_ctx_train, false, 4096)) ||
        (s = gguf_f32(g, ga, "rope.freq_base", &h->rope_theta, false, 10000.0f)) ||
        (s = gguf_f32(g, ga, "attention.layer_norm_rms_epsilon", &h->norm_eps, false, 1e-5f)))
        return s;
    if (h->n_head <= 0 || h->n_embd <= 0)
        return mmp__error(MMP_ERR_FORMAT, "%s: bad %s.embedding_length %d / attention.head_count %d", m->path, ga,
                          h->n_embd, h->n_head);
    if ((s = gguf_i32(g, ga, "attention.key_length", &h->head_dim, false, h->n_embd / h->n_head)) ||
        (s = gguf_i32(g, ga, "expert_feed_forward_length", &h->n_ff_expert, false, h->n_ff)) ||
        (s = gguf_i32(g, ga, "expert_shared_feed_forward_length", &h->n_ff_shared, false, 0)) ||
        (s = gguf_i32(g, ga, "rope.dimension_count", &m->n_rot, false, h->head_dim)))
        return s;
    /* a llama GGUF with experts is a Mixtral */
    if (h->n_expert > 0) {
        if (strcmp(arch->name, "llama") == 0 || strcmp(arch->name, "mistral") == 0) m->arch = arch = mmp__llm_arch_by_hf("mixtral");
    } else if (arch->moe) {
        return mmp__error(MMP_ERR_FORMAT, "%s: architecture %s needs %s.expert_count > 0", m->path, ga, ga);
    }
    snprintf(h->arch, sizeof h->arch, "%s", arch->name);
    m->norm_topk = arch->norm_topk_default;
    {   /* newer llama.cpp files say it explicitly */
        char k[160];
        snprintf(k, sizeof k, "%s.expert_weights_norm", ga);
        if (mmp_gguf_has(g, k) && (s = mmp_gguf_get_bool(g, k, &m->norm_topk)) != MMP_OK) return s;
    }
    if (strcmp(arch->name, "qwen2_moe") == 0 && h->n_ff_shared == 0 && h->n_ff > 0) h->n_ff_shared = h->n_ff;

    /* RoPE scaling: none or linear (positions scaled by 1/factor); llama3-style frequency
     * tables (rope_freqs.weight) and YaRN are not implemented */
    {
        char k[160];
        const char *st = NULL;
        snprintf(k, sizeof k, "%s.rope.scaling.type", ga);
        if (mmp_gguf_has(g, k) && (s = mmp_gguf_get_str(g, k, &st)) != MMP_OK) return s;
        if (st && strcmp(st, "linear") == 0) {
            float f = 1.0f;
            if ((s = gguf_f32(g, ga, "rope.scaling.factor", &f, true, 1.0f)) != MMP_OK) return s;
            if (!(f >= 1.0f && f <= 1024.0f))
                return mmp__error(MMP_ERR_FORMAT, "%s: bad %s.rope.scaling.factor %g", m->path, ga, (double)f);
            m->rope_freq_scale = 1.0f / f;
        } else if (st && strcmp(st, "none") != 0) {
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: %s = '%s' is not supported (none, linear)", m->path, k, st);
        }
        if (mmp_gguf_find_tensor(g, "rope_freqs.weight"))
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: per-frequency RoPE factors (tensor 'rope_freqs.weight', "
                              "llama-3.1 style) are not supported", m->path);
        mmp_clear_error();
    }

    /* vocab: tokenizer tokens, else <arch>.vocab_size, else the embedding rows */
    const mmp_tensor_info *te = mmp_gguf_find_tensor(g, "token_embd.weight");
    if (!te) return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing tensor 'token_embd.weight'", m->path);
    int64_t n_vocab = -1;
    const mmp_gguf_value *toks = NULL;
    if (mmp_gguf_has(g, "tokenizer.ggml.tokens")) {
        if ((s = mmp_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks)) != MMP_OK) return s;
        n_vocab = (int64_t)mmp_gguf_arr_n(toks);
    } else {
        int32_t v = 0;
        if ((s = gguf_i32(g, ga, "vocab_size", &v, false, 0)) != MMP_OK) return s;
        n_vocab = v > 0 ? v : te->ne[1];
    }
    if (te->n_dims == 2 && te->ne[1] != n_vocab)
        return mmp__error(MMP_ERR_SHAPE, "%s: vocab/embedding size mismatch: the vocabulary has %lld tokens but "
                          "'token_embd.weight' has %lld rows", m->path, (long long)n_vocab, (long long)te->ne[1]);
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return mmp__error(MMP_ERR_FORMAT, "%s: bad vocab size %lld", m->path, (long long)n_vocab);
    h->n_vocab = (int32_t)n_vocab;
    if ((s = check_hparams(m)) != MMP_OK) return s;

    if (mmp_gguf_has(g, "tokenizer.ggml.model")) {
        m->tok = mmp_tokenizer_from_gguf(g);
        if (!m->tok) { mmp__error_prefix("%s: tokenizer: ", m->path); return MMP_ERR_FORMAT; }
    }
    if (vocab_only) return MMP_OK;

    const int64_t E = h->n_embd, V = h->n_vocab, hd = h->head_dim;
    const int64_t nq = (int64_t)h->n_head * hd, nkv = (int64_t)h->n_head_kv * hd;
    if ((s = bind2(m, &m->tok_embd, "token_embd.weight", E, V, true)) ||
        (s = bind1(m, &m->output_norm, "output_norm.weight", E, true)) ||
        (s = bind2(m, &m->output, "output.weight", E, V, false)))
        return s;
    h->tied_output = m->output.data == NULL;
    if (h->tied_output) m->output = m->tok_embd;

    m->layers = mmp__calloc((size_t)h->n_layer, sizeof *m->layers);
    if (!m->layers) return MMP_ERR_NOMEM;
    char n[128];
#define NM(fmt) (snprintf(n, sizeof n, "blk.%d." fmt, il), n)
    for (int il = 0; il < h->n_layer; il++) {
        mmp__llm_layer *L = &m->layers[il];
        if ((s = bind1(m, &L->attn_norm, NM("attn_norm.weight"), E, true)) ||
            (s = bind2(m, &L->wq, NM("attn_q.weight"), E, nq, true)) ||
            (s = bind2(m, &L->wk, NM("attn_k.weight"), E, nkv, true)) ||
            (s = bind2(m, &L->wv, NM("attn_v.weight"), E, nkv, true)) ||
            (s = bind2(m, &L->wo, NM("attn_output.weight"), nq, E, true)) ||
            (s = bind1(m, &L->bq, NM("attn_q.bias"), nq, arch->qkv_bias)) ||
            (s = bind1(m, &L->bk, NM("attn_k.bias"), nkv, arch->qkv_bias)) ||
            (s = bind1(m, &L->bv, NM("attn_v.bias"), nkv, arch->qkv_bias)) ||
            (s = bind1(m, &L->q_norm, NM("attn_q_norm.weight"), nq, arch->qk_norm)) ||
            (s = bind1(m, &L->k_norm, NM("attn_k_norm.weight"), nkv, arch->qk_norm)) ||
            (s = bind1(m, &L->ffn_norm, NM("ffn_norm.weight"), E, true)))
            return s;
        L->is_moe = h->n_expert > 0;
        if (!L->is_moe) {
            if ((s = bind2(m, &L->ffn_gate, NM("ffn_gate.weight"), E, h->n_ff, true)) ||
                (s = bind2(m, &L->ffn_up, NM("ffn_up.weight"), E, h->n_ff, true)) ||
                (s = bind2(m, &L->ffn_down, NM("ffn_down.weight"), h->n_ff, E, true)))
                return s;
            continue;
        }
        const int64_t F = h->n_ff_expert, X = h->n_expert;
        if ((s = bind2(m, &L->router, NM("ffn_gate_inp.weight"), E, X, true))) return s;
        if (mmp_gguf_find_tensor(g, NM("ffn_gate_exps.weight"))) {
            int64_t ng[3] = {E, F, X}, nd[3] = {F, E, X};
            if ((s = bind(m, &L->gate_exps, NM("ffn_gate_exps.weight"), 3, ng, true, false)) ||
                (s = bind(m, &L->up_exps, NM("ffn_up_exps.weight"), 3, ng, true, false)) ||
                (s = bind(m, &L->down_exps, NM("ffn_down_exps.weight"), 3, nd, true, false)))
                return s;
        } else {
            /* older Mixtral GGUFs: one tensor per expert, blk.N.ffn_{gate,up,down}.E.weight */
            mmp_clear_error();
            char **names = mmp__calloc((size_t)X, sizeof *names);
            char *buf = names ? mmp__malloc((size_t)X * 96) : NULL;
            if (!buf) { free(names); return MMP_ERR_NOMEM; }
            for (int e = 0; e < X; e++) names[e] = buf + (size_t)e * 96;
            const char *parts[3] = {"gate", "up", "down"};
            mmp__w *dst[3] = {&L->gate_exps, &L->up_exps, &L->down_exps};
            for (int p = 0; p < 3 && s == MMP_OK; p++) {
                for (int e = 0; e < X; e++) snprintf(names[e], 96, "blk.%d.ffn_%s.%d.weight", il, parts[p], e);
                s = bind_experts(m, dst[p], (const char *const *)names, (int)X, p == 2 ? F : E, p == 2 ? E : F);
            }
            free(buf);
            free(names);
            if (s != MMP_OK) {
                mmp__error_prefix("%s: layer %d has neither 'blk.%d.ffn_gate_exps.weight' nor per-expert tensors: ",
                                  m->path, il, il);
                return s;
            }
        }
        if (arch->shared_expert) {
            const int64_t S = h->n_ff_shared;
            if ((s = bind2(m, &L->gate_shexp, NM("ffn_gate_shexp.weight"), E, S, true)) ||
                (s = bind2(m, &L->up_shexp, NM("ffn_up_shexp.weight"), E, S, true)) ||
                (s = bind2(m, &L->down_shexp, NM("ffn_down_shexp.weight"), S, E, true)))
                return s;
            /* llama.cpp stores the shared-expert gate as a 1-D {n_embd} tensor */
            int64_t ne1[1] = {E};
            if ((s = bind(m, &L->shexp_gate, NM("ffn_gate_inp_shexp.weight"), 1, ne1, true, true))) return s;
            L->shexp_gate.n_dims = 2;
        }
    }
#undef NM
    return MMP_OK;
}

/* ------------------------------------------------------------------ HF */

static enum mmp_status cfg_int(const mmp_json *c, const char *pre, const char *key, int32_t *out, bool required,
                               int32_t dflt) {
    char k[160];
    snprintf(k, sizeof k, "%s%s", pre, key);
    if (!mmp_json_has(c, k)) {
        if (required) return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing key '%s'", mmp_json_name(c), k);
        *out = dflt;
        return MMP_OK;
    }
    int64_t v;
    enum mmp_status s = mmp_json_get_int(c, k, &v);
    if (s != MMP_OK) return s;
    if (v < INT32_MIN || v > INT32_MAX)
        return mmp__error(MMP_ERR_FORMAT, "%s: '%s' = %lld is out of range", mmp_json_name(c), k, (long long)v);
    *out = (int32_t)v;
    return MMP_OK;
}

static enum mmp_status cfg_float(const mmp_json *c, const char *pre, float *out, float dflt, const char *k1,
                                 const char *k2) {
    char a[160], b[160];
    snprintf(a, sizeof a, "%s%s", pre, k1);
    snprintf(b, sizeof b, "%s%s", pre, k2 ? k2 : k1);
    const char *key = mmp_json_has(c, a) ? a : (k2 && mmp_json_has(c, b)) ? b : NULL;
    if (!key) { *out = dflt; return MMP_OK; }
    double v;
    enum mmp_status s = mmp_json_get_float(c, key, &v);
    if (s != MMP_OK) return s;
    *out = (float)v;
    return MMP_OK;
}

static bool cfg_bool(const mmp_json *c, const char *pre, const char *key, bool dflt) {
    char k[160];
    snprintf(k, sizeof k, "%s%s", pre, key);
    bool v;
    if (mmp_json_has(c, k) && mmp_json_get_bool(c, k, &v) == MMP_OK) return v;
    return dflt;
}

enum mmp_status mmp__llm_load_hf(mmp_llm *m, bool vocab_only) {
    const mmp_json *c = mmp_modelfile_config(m->mf);
    if (!c) return mmp__error(MMP_ERR_NOT_FOUND, "%s: no config.json", m->path);
    mmp_llm_hparams *h = &m->hp;
    /* multimodal configs (llava, ...) nest the LLM under text_config */
    const char *pre = mmp_json_kind_of(c, "text_config") == MMP_JSON_OBJECT ? "text_config." : "";
    char k[160];
    snprintf(k, sizeof k, "%smodel_type", pre);
    const char *mt = NULL;
    enum mmp_status s = mmp_json_get_string(c, k, &mt);
    if (s != MMP_OK) return s;
    const mmp__llm_arch *arch = mmp__llm_arch_by_hf(mt);
    if (!arch)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: unknown architecture model_type = '%s' (known: %s)",
                          mmp_json_name(c), mt, mmp__llm_arch_list_hf());
    m->arch = arch;
    m->rope_mode = MMP_ROPE_NEOX; /* HF checkpoints store q/k in rotate-half order */
    snprintf(h->arch, sizeof h->arch, "%s", arch->name);
    if ((s = cfg_int(c, pre, "vocab_size", &h->n_vocab, true, 0)) ||
        (s = cfg_int(c, pre, "hidden_size", &h->n_embd, true, 0)) ||
        (s = cfg_int(c, pre, "num_hidden_layers", &h->n_layer, true, 0)) ||
        (s = cfg_int(c, pre, "num_attention_heads", &h->n_head, true, 0)) ||
        (s = cfg_int(c, pre, "num_key_value_heads", &h->n_head_kv, false, h->n_head)) ||
        (s = cfg_int(c, pre, "intermediate_size", &h->n_ff, false, 0)) ||
        (s = cfg_int(c, pre, "max_position_embeddings", &h->n_ctx_train, false, 4096)))
        return s;
    if (h->n_head <= 0 || h->n_embd <= 0)
        return mmp__error(MMP_ERR_FORMAT, "%s: bad hidden_size %d / num_attention_heads %d", mmp_json_name(c), h->n_embd,
                          h->n_head);
    if ((s = cfg_int(c, pre, "head_dim", &h->head_dim, false, h->n_embd / h->n_head))) return s;
    m->n_rot = h->head_dim;
    if ((s = cfg_float(c, pre, &h->rope_theta, 10000.0f, "rope_theta", "rope_parameters.rope_theta")) ||
        (s = cfg_float(c, pre, &h->norm_eps, 1e-6f, "rms_norm_eps", NULL)))
        return s;
    h->tied_output = cfg_bool(c, pre, "tie_word_embeddings", false);
    {   /* RoPE scaling: "default" or "linear" (rope_scaling or rope_parameters) */
        static const char *const objs[] = {"rope_scaling", "rope_parameters"};
        for (int i = 0; i < 2; i++) {
            char ok[160], tk[192];
            snprintf(ok, sizeof ok, "%s%s", pre, objs[i]);
            if (mmp_json_kind_of(c, ok) != MMP_JSON_OBJECT) continue;
            const char *rt = NULL;
            snprintf(tk, sizeof tk, "%s.rope_type", ok);
            if (!mmp_json_has(c, tk)) snprintf(tk, sizeof tk, "%s.type", ok);
            if (mmp_json_has(c, tk) && (s = mmp_json_get_string(c, tk, &rt)) != MMP_OK) return s;
            if (!rt || strcmp(rt, "default") == 0) continue;
            if (strcmp(rt, "linear") != 0)
                return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' = '%s' is not supported (default, linear)",
                                  mmp_json_name(c), tk, rt);
            double f;
            snprintf(tk, sizeof tk, "%s.factor", ok);
            if ((s = mmp_json_get_float(c, tk, &f)) != MMP_OK) return s;
            if (!(f >= 1.0 && f <= 1024.0))
                return mmp__error(MMP_ERR_FORMAT, "%s: bad '%s' = %g", mmp_json_name(c), tk, f);
            m->rope_freq_scale = (float)(1.0 / f);
        }
    }
    if (arch->moe) {
        if ((s = cfg_int(c, pre, "num_local_experts", &h->n_expert, false, 0))) return s;
        if (h->n_expert == 0 && (s = cfg_int(c, pre, "num_experts", &h->n_expert, true, 0))) return s;
        if ((s = cfg_int(c, pre, "num_experts_per_tok", &h->n_expert_used, true, 0))) return s;
        if ((s = cfg_int(c, pre, "moe_intermediate_size", &h->n_ff_expert, false, h->n_ff))) return s;
        if (arch->shared_expert &&
            (s = cfg_int(c, pre, "shared_expert_intermediate_size", &h->n_ff_shared, true, 0)))
            return s;
        m->norm_topk = cfg_bool(c, pre, "norm_topk_prob", arch->norm_topk_default);
        float clip = 0.0f;
        if (arch->qk_norm && (s = cfg_float(c, pre, &clip, 0.0f, "clip_qkv", NULL))) return s;
        m->clip_qkv = clip > 0.0f ? clip : 0.0f;
    }
    if ((s = check_hparams(m)) != MMP_OK) return s;

    if (mmp_modelfile_has_file(m->mf, "tokenizer.json")) {
        char *tj = mmp_modelfile_file_path(m->mf, "tokenizer.json");
        char *tc = mmp_modelfile_has_file(m->mf, "tokenizer_config.json")
                       ? mmp_modelfile_file_path(m->mf, "tokenizer_config.json") : NULL;
        m->tok = tj ? mmp_tokenizer_from_hf(tj, tc) : NULL;
        free(tj);
        free(tc);
        if (!m->tok) { mmp__error_prefix("%s: tokenizer: ", m->path); return MMP_ERR_FORMAT; }
    }
    if (vocab_only) return MMP_OK;

    /* tensor-name prefix: Hub names, or the nested names of multimodal checkpoints */
    static const char *const prefixes[] = {"model.", "language_model.model.", "model.language_model.",
                                           "language_model.model.model.", "language_model.", NULL};
    const char *tp = NULL;
    for (int i = 0; prefixes[i]; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "%sembed_tokens.weight", prefixes[i]);
        if (mmp_modelfile_find(m->mf, nm)) { tp = prefixes[i]; break; }
    }
    mmp_clear_error();
    if (!tp) return mmp__error(MMP_ERR_NOT_FOUND, "%s: missing tensor 'model.embed_tokens.weight' (also looked for "
                               "the language_model.* names)", m->path);
    const int64_t E = h->n_embd, V = h->n_vocab, hd = h->head_dim;
    const int64_t nq = (int64_t)h->n_head * hd, nkv = (int64_t)h->n_head_kv * hd;
    char n[256];
    snprintf(n, sizeof n, "%sembed_tokens.weight", tp);
    {
        const mmp_tensor_info *te = mmp_modelfile_find(m->mf, n);
        if (te && te->n_dims == 2 && te->ne[0] == E && te->ne[1] != V)
            return mmp__error(MMP_ERR_SHAPE, "%s: vocab/embedding size mismatch: vocab_size is %lld but '%s' has %lld "
                              "rows", m->path, (long long)V, n, (long long)te->ne[1]);
    }
    if ((s = bind2(m, &m->tok_embd, n, E, V, true))) return s;
    snprintf(n, sizeof n, "%snorm.weight", tp);
    if ((s = bind1(m, &m->output_norm, n, E, true))) return s;
    if (h->tied_output) {
        m->output = m->tok_embd;
    } else {
        /* lm_head sits next to the "model." level */
        static const char *const heads[] = {"lm_head.weight", "language_model.lm_head.weight",
                                            "language_model.model.lm_head.weight", NULL};
        const char *hn = heads[0];
        for (int i = 0; heads[i]; i++)
            if (mmp_modelfile_find(m->mf, heads[i])) { hn = heads[i]; break; }
        mmp_clear_error();
        if ((s = bind2(m, &m->output, hn, E, V, true))) return s;
    }

    m->layers = mmp__calloc((size_t)h->n_layer, sizeof *m->layers);
    if (!m->layers) return MMP_ERR_NOMEM;
    /* qwen2_moe: dense layers listed in mlp_only_layers or off the decoder_sparse_step grid */
    int32_t sparse_step = 1;
    if (arch->moe && (s = cfg_int(c, pre, "decoder_sparse_step", &sparse_step, false, 1))) return s;
    if (sparse_step <= 0) sparse_step = 1;
    char mol[160];
    snprintf(mol, sizeof mol, "%smlp_only_layers", pre);
    int64_t n_mlp_only = 0;
    if (mmp_json_kind_of(c, mol) == MMP_JSON_ARRAY && (s = mmp_json_array_len(c, mol, &n_mlp_only))) return s;

#define NM(fmt) (snprintf(n, sizeof n, "%slayers.%d." fmt, tp, il), n)
    for (int il = 0; il < h->n_layer; il++) {
        mmp__llm_layer *L = &m->layers[il];
        if ((s = bind1(m, &L->attn_norm, NM("input_layernorm.weight"), E, true)) ||
            (s = bind2(m, &L->wq, NM("self_attn.q_proj.weight"), E, nq, true)) ||
            (s = bind2(m, &L->wk, NM("self_attn.k_proj.weight"), E, nkv, true)) ||
            (s = bind2(m, &L->wv, NM("self_attn.v_proj.weight"), E, nkv, true)) ||
            (s = bind2(m, &L->wo, NM("self_attn.o_proj.weight"), nq, E, true)) ||
            (s = bind1(m, &L->bq, NM("self_attn.q_proj.bias"), nq, arch->qkv_bias)) ||
            (s = bind1(m, &L->bk, NM("self_attn.k_proj.bias"), nkv, arch->qkv_bias)) ||
            (s = bind1(m, &L->bv, NM("self_attn.v_proj.bias"), nkv, arch->qkv_bias)) ||
            (s = bind1(m, &L->q_norm, NM("self_attn.q_norm.weight"), nq, arch->qk_norm)) ||
            (s = bind1(m, &L->k_norm, NM("self_attn.k_norm.weight"), nkv, arch->qk_norm)) ||
            (s = bind1(m, &L->ffn_norm, NM("post_attention_layernorm.weight"), E, true)))
            return s;
        bool moe = arch->moe && h->n_expert > 0 && (il + 1) % sparse_step == 0;
        for (int64_t i = 0; moe && i < n_mlp_only; i++) {
            int64_t v;
            if (mmp_json_array_int(c, mol, i, &v) == MMP_OK && v == il) moe = false;
        }
        L->is_moe = moe;
        if (!moe) {
            if (h->n_ff <= 0)
                return mmp__error(MMP_ERR_FORMAT, "%s: layer %d is dense but intermediate_size is %d", mmp_json_name(c),
                                  il, h->n_ff);
            if ((s = bind2(m, &L->ffn_gate, NM("mlp.gate_proj.weight"), E, h->n_ff, true)) ||
                (s = bind2(m, &L->ffn_up, NM("mlp.up_proj.weight"), E, h->n_ff, true)) ||
                (s = bind2(m, &L->ffn_down, NM("mlp.down_proj.weight"), h->n_ff, E, true)))
                return s;
            continue;
        }
        const int64_t F = h->n_ff_expert, X = h->n_expert;
        char rn[160];
        snprintf(rn, sizeof rn, "%s.weight", arch->hf_router);
        snprintf(n, sizeof n, "%slayers.%d.%s", tp, il, rn);
        if ((s = bind2(m, &L->router, n, E, X, true))) return s;
        char **names = mmp__calloc((size_t)X, sizeof *names);
        char *buf = names ? mmp__malloc((size_t)X * 256) : NULL;
        if (!buf) { free(names); return MMP_ERR_NOMEM; }
        for (int e = 0; e < X; e++) names[e] = buf + (size_t)e * 256;
        const char *fmts[3] = {arch->hf_exp_gate, arch->hf_exp_up, arch->hf_exp_down};
        mmp__w *dst[3] = {&L->gate_exps, &L->up_exps, &L->down_exps};
        for (int p = 0; p < 3 && s == MMP_OK; p++) {
            for (int e = 0; e < X; e++) {
                char part[128];
                snprintf(part, sizeof part, fmts[p], e);
                snprintf(names[e], 256, "%slayers.%d.%s.weight", tp, il, part);
            }
            s = bind_experts(m, dst[p], (const char *const *)names, (int)X, p == 2 ? F : E, p == 2 ? E : F);
        }
        free(buf);
        free(names);
        if (s != MMP_OK) return s;
        if (arch->shared_expert) {
            const int64_t S = h->n_ff_shared;
            if ((s = bind2(m, &L->gate_shexp, NM("mlp.shared_expert.gate_proj.weight"), E, S, true)) ||
                (s = bind2(m, &L->up_shexp, NM("mlp.shared_expert.up_proj.weight"), E, S, true)) ||
                (s = bind2(m, &L->down_shexp, NM("mlp.shared_expert.down_proj.weight"), S, E, true)))
                return s;
            int64_t ne2[2] = {E, 1};
            if ((s = bind(m, &L->shexp_gate, NM("mlp.shared_expert_gate.weight"), 2, ne2, true, true))) return s;
        }
    }
#undef NM
    return MMP_OK;
}

/* ------------------------------------------------------------------ public */

mmp_llm_load_params mmp_llm_load_params_default(void) {
    mmp_llm_load_params p;
    memset(&p, 0, sizeof p);
    return p;
}

void mmp_llm_free(mmp_llm *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    mmp_tokenizer_free(m->tok);
    mmp_modelfile_free(m->own_mf);
    free(m->path);
    free(m);
}

mmp_llm *mmp_llm_load_modelfile(const mmp_modelfile *mf, const mmp_llm_load_params *params) {
    if (!mf) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_llm_load_modelfile: NULL model file");
    mmp_llm_load_params p = params ? *params : mmp_llm_load_params_default();
    mmp_llm *m = mmp__calloc(1, sizeof *m);
    if (!m) return NULL;
    m->rope_freq_scale = 1.0f;
    m->mf = mf;
    const char *path = mmp_modelfile_path(mf);
    if (!(m->path = mmp__strdup(path))) {
        mmp_llm_free(m);
        return NULL;
    }
    enum mmp_status s;
    switch (mmp_modelfile_format(mf)) {
    case MMP_MODELFILE_GGUF: s = mmp__llm_load_gguf(m, p.vocab_only); break;
    case MMP_MODELFILE_HF:
    case MMP_MODELFILE_SAFETENSORS: s = mmp__llm_load_hf(m, p.vocab_only); break;
    default:
        s = mmp__error(MMP_ERR_UNSUPPORTED, "%s: a %s is not an LLM (expected a GGUF file or an HF folder)", path,
                       mmp_modelfile_format_name(mmp_modelfile_format(mf)));
    }
    if (s != MMP_OK) {
        mmp_llm_free(m);
        return NULL;
    }
    return m;
}

mmp_llm *mmp_llm_load(const char *path, const mmp_llm_load_params *params) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_llm_load: NULL path");
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) return NULL;
    mmp_llm *m = mmp_llm_load_modelfile(mf, params);
    if (!m) {
        mmp_modelfile_free(mf);
        return NULL;
    }
    m->own_mf = mf;
    return m;
}

const mmp_llm_hparams *mmp_llm_get_hparams(const mmp_llm *m) { return m ? &m->hp : NULL; }

const struct mmp_tokenizer *mmp_llm_get_tokenizer(const mmp_llm *m) { return m ? m->tok : NULL; }

enum mmp_status mmp_llm_embed_tokens(const mmp_llm *m, const int32_t *ids, int n, float *out) {
    if (!m || (n > 0 && (!ids || !out)) || n < 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_embed_tokens: bad arguments");
    if (!m->tok_embd.data)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_embed_tokens: %s was loaded vocab-only", m->path);
    const size_t row = mmp_row_size(m->tok_embd.type, m->hp.n_embd);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->hp.n_vocab)
            return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_embed_tokens: token id %d at %d is out of range [0, %d)",
                              ids[i], i, m->hp.n_vocab);
        enum mmp_status s = mmp_dequantize_row(m->tok_embd.type, (const char *)m->tok_embd.data + (size_t)ids[i] * row,
                                               out + (size_t)i * m->hp.n_embd, m->hp.n_embd);
        if (s != MMP_OK) return s;
    }
    return MMP_OK;
}
