/* The decoder: one forward pass of a llama-family transformer as an op graph, the KV cache,
 * and the session API (mmp_llm_ctx_*, mmp_llm_decode).
 *
 * Per layer (x [n_embd, n]):
 *   h   = rms_norm(x) * attn_norm
 *   q,k,v = Wq h (+bq), Wk h (+bk), Wv h (+bv)       [n_head*hd, n], [n_kv*hd, n] x2
 *   (olmoe) q, k = rms_norm over the whole projection * q_norm / k_norm; clamp to clip_qkv
 *   q, k = rope(q, k) at positions n_past .. n_past+n-1
 *   K/V cache[layer][:, n_past : n_past+n, :] = k, v                (mmp_cpy into views)
 *   a   = attn(q, K[:, :n_past+n], V[:, :n_past+n], causal)          [hd*n_head, n]
 *   x   = x + Wo a
 *   x   = x + ffn(rms_norm(x) * ffn_norm)                            (dense SwiGLU or MoE)
 * then hidden = rms_norm(x) * output_norm and logits = output hidden.
 *
 * The KV cache is one pair of buffers per layer that the context owns, laid out
 * [hd, n_ctx, n_kv] (ggml order: per KV head, positions contiguous), so that a prefix
 * [hd, n_past+n, n_kv] is a strided view that mmp_attn reads directly. The graph is rebuilt
 * for every decode call (mmp_graph_reset keeps the planned buffer). */
#include "llm-impl.h"
#include "../core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mmp_llm_ctx {
    const mmp_llm *m;
    mmp_llm_ctx_params p;
    int32_t n_ctx, n_past;
    enum mmp_type kv_type;
    mmp_backend *be;
    mmp_graph *g;
    void **k_cache, **v_cache;   /* [n_layer] buffers of [hd, n_ctx, n_kv] kv_type */
};

mmp_tensor *mmp__w_tensor(mmp_graph *g, const mmp__w *w, const char *name, int il) {
    if (!w->data) return NULL;
    mmp_tensor *t = mmp_new_tensor_ext(g, w->type, w->n_dims, w->ne, w->data);
    if (t && name) {
        if (il >= 0) mmp_set_name(t, "blk.%d.%s", il, name);
        else mmp_set_name(t, "%s", name);
    }
    return t;
}

/* rms_norm(x) * w (w [ne0] f32). */
static mmp_tensor *norm(mmp_graph *g, mmp_tensor *x, const mmp__w *w, float eps, const char *name, int il) {
    return mmp_mul(g, mmp_rms_norm(g, x, eps), mmp__w_tensor(g, w, name, il));
}

/* W x (+ b). */
static mmp_tensor *linear(mmp_graph *g, const mmp__w *w, const mmp__w *b, mmp_tensor *x, const char *name, int il) {
    mmp_tensor *y = mmp_mul_mat(g, mmp__w_tensor(g, w, name, il), x);
    if (b && b->data) y = mmp_add(g, y, mmp__w_tensor(g, b, NULL, il));
    return y;
}

mmp_tensor *mmp__build_dense_ffn(mmp_graph *g, const mmp__llm_layer *L, int il, mmp_tensor *x) {
    /* down(silu(gate x) * up x): [n_embd, n] -> [n_ff, n] -> [n_embd, n] */
    mmp_tensor *gt = linear(g, &L->ffn_gate, NULL, x, "ffn_gate", il);
    mmp_tensor *up = linear(g, &L->ffn_up, NULL, x, "ffn_up", il);
    return linear(g, &L->ffn_down, NULL, mmp_swiglu(g, gt, up), "ffn_down", il);
}

typedef struct build_out {
    mmp_tensor *inp_tokens, *inp_embd, *inp_pos;
    mmp_tensor *hidden, *logits;
    mmp_tensor **router;   /* [n_layer] or NULL */
} build_out;

static enum mmp_status build(mmp_llm_ctx *c, const mmp_llm_batch *b, build_out *o) {
    const mmp_llm *m = c->m;
    const mmp_llm_hparams *h = &m->hp;
    mmp_graph *g = c->g;
    const int n = b->n;
    const int n_kv_tok = c->n_past + n;
    const int64_t hd = h->head_dim, H = h->n_head, Hkv = h->n_head_kv;
    const size_t es = mmp_type_get_traits(c->kv_type)->type_size;
    const size_t kv_nb1 = (size_t)hd * es, kv_nb2 = (size_t)hd * (size_t)c->n_ctx * es;

    mmp_tensor *x;
    if (b->tokens) {
        o->inp_tokens = mmp_set_name(mmp_new_tensor_1d(g, MMP_TYPE_I32, n), "inp_tokens");
        x = mmp_get_rows(g, mmp__w_tensor(g, &m->tok_embd, "token_embd", -1), o->inp_tokens);
    } else {
        o->inp_embd = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, h->n_embd, n), "inp_embd");
        x = o->inp_embd;
    }
    o->inp_pos = mmp_set_name(mmp_new_tensor_1d(g, MMP_TYPE_I32, n), "inp_pos");
    const float scale = 1.0f / sqrtf((float)hd);

    for (int il = 0; il < h->n_layer; il++) {
        const mmp__llm_layer *L = &m->layers[il];
        mmp_tensor *cur = norm(g, x, &L->attn_norm, h->norm_eps, "attn_norm", il);
        mmp_tensor *q = linear(g, &L->wq, &L->bq, cur, "attn_q", il);
        mmp_tensor *k = linear(g, &L->wk, &L->bk, cur, "attn_k", il);
        mmp_tensor *v = linear(g, &L->wv, &L->bv, cur, "attn_v", il);
        if (L->q_norm.data) q = norm(g, q, &L->q_norm, h->norm_eps, "attn_q_norm", il);
        if (L->k_norm.data) k = norm(g, k, &L->k_norm, h->norm_eps, "attn_k_norm", il);
        if (m->clip_qkv > 0.0f) {
            q = mmp_clamp(g, q, -m->clip_qkv, m->clip_qkv);
            k = mmp_clamp(g, k, -m->clip_qkv, m->clip_qkv);
            v = mmp_clamp(g, v, -m->clip_qkv, m->clip_qkv);
        }
        /* [hd*H, n] -> [hd, H, n], rotate */
        q = mmp_rope_ext(g, mmp_reshape_3d(g, q, hd, H, n), o->inp_pos, m->n_rot, m->rope_mode, h->rope_theta,
                         m->rope_freq_scale);
        k = mmp_rope_ext(g, mmp_reshape_3d(g, k, hd, Hkv, n), o->inp_pos, m->n_rot, m->rope_mode, h->rope_theta,
                         m->rope_freq_scale);
        v = mmp_reshape_3d(g, v, hd, Hkv, n);

        /* write k, v ([hd, Hkv, n] -> [hd, n, Hkv]) at positions n_past.. of the cache */
        int64_t cne[3] = {hd, c->n_ctx, Hkv};
        mmp_tensor *kc = mmp_set_name(mmp_new_tensor_ext(g, c->kv_type, 3, cne, c->k_cache[il]), "cache_k.%d", il);
        mmp_tensor *vc = mmp_set_name(mmp_new_tensor_ext(g, c->kv_type, 3, cne, c->v_cache[il]), "cache_v.%d", il);
        size_t off = (size_t)c->n_past * kv_nb1;
        mmp_cpy(g, mmp_permute(g, k, 0, 2, 1, 3), mmp_view_3d(g, kc, hd, n, Hkv, kv_nb1, kv_nb2, off));
        mmp_cpy(g, mmp_permute(g, v, 0, 2, 1, 3), mmp_view_3d(g, vc, hd, n, Hkv, kv_nb1, kv_nb2, off));
        mmp_tensor *kall = mmp_view_3d(g, kc, hd, n_kv_tok, Hkv, kv_nb1, kv_nb2, 0);
        mmp_tensor *vall = mmp_view_3d(g, vc, hd, n_kv_tok, Hkv, kv_nb1, kv_nb2, 0);

        /* q [hd, H, n] -> [hd, n, H]; attention -> [hd, H, n] -> [hd*H, n] */
        mmp_tensor *qp = mmp_cont(g, mmp_permute(g, q, 0, 2, 1, 3));
        mmp_tensor *a = mmp_attn(g, qp, kall, vall, NULL, scale, true, c->n_past);
        a = mmp_reshape_2d(g, a, hd * H, n);
        x = mmp_add(g, x, linear(g, &L->wo, NULL, a, "attn_output", il));

        cur = norm(g, x, &L->ffn_norm, h->norm_eps, "ffn_norm", il);
        mmp_tensor *ff;
        if (L->is_moe) {
            mmp_tensor *rl = NULL;
            ff = mmp__build_moe_ffn(g, m, L, il, cur, o->router ? &rl : NULL);
            if (o->router) o->router[il] = rl;
        } else {
            ff = mmp__build_dense_ffn(g, L, il, cur);
        }
        x = mmp_add(g, x, ff);
        if (!x) break;
    }
    mmp_tensor *hid = norm(g, x, &m->output_norm, h->norm_eps, "output_norm", -1);
    if (b->hidden) o->hidden = mmp_set_output(mmp_set_name(hid, "hidden"));
    if (b->logits) {
        mmp_tensor *hl = hid;
        if (!b->logits_all && n > 1 && hid) hl = mmp_view_2d(g, hid, h->n_embd, 1, hid->nb[1], (size_t)(n - 1) * hid->nb[1]);
        o->logits = mmp_set_output(mmp_set_name(mmp_mul_mat(g, mmp__w_tensor(g, &m->output, "output", -1), hl), "logits"));
    }
    bool ok = x && hid && (!b->hidden || o->hidden) && (!b->logits || o->logits);
    for (int il = 0; ok && o->router && il < h->n_layer; il++)
        if (m->layers[il].is_moe && !o->router[il]) ok = false;
    if (!ok) {
        mmp__error_prefix("%s: building the decoder graph: ", m->path);
        return MMP_ERR_INTERNAL;
    }
    return MMP_OK;
}

/* ------------------------------------------------------------------ context */

mmp_llm_ctx_params mmp_llm_ctx_params_default(void) {
    mmp_llm_ctx_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_threads = 1;
    p.kv_type = MMP_KV_F32;
    return p;
}

void mmp_llm_ctx_free(mmp_llm_ctx *c) {
    if (!c) return;
    if (c->k_cache)
        for (int i = 0; i < c->m->hp.n_layer; i++) free(c->k_cache[i]);
    if (c->v_cache)
        for (int i = 0; i < c->m->hp.n_layer; i++) free(c->v_cache[i]);
    free(c->k_cache);
    free(c->v_cache);
    mmp_graph_free(c->g);
    mmp_backend_free(c->be);
    free(c);
}

mmp_llm_ctx *mmp_llm_ctx_new(const mmp_llm *m, const mmp_llm_ctx_params *params) {
    if (!m) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_llm_ctx_new: NULL model");
    if (!m->layers) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_llm_ctx_new: %s was loaded vocab-only", m->path);
    mmp_llm_ctx_params p = params ? *params : mmp_llm_ctx_params_default();
    if (p.n_ctx < 0 || p.n_ctx > (1 << 24))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_llm_ctx_new: bad n_ctx %d", p.n_ctx);
    if (p.kv_type != MMP_KV_F32 && p.kv_type != MMP_KV_F16)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_llm_ctx_new: bad kv_type %d", (int)p.kv_type);
    if (p.n_threads <= 0) p.n_threads = 1;
    mmp_llm_ctx *c = mmp__calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m;
    c->p = p;
    c->n_ctx = p.n_ctx > 0 ? p.n_ctx : MMP_MIN(m->hp.n_ctx_train, 4096);
    c->kv_type = p.kv_type == MMP_KV_F16 ? MMP_TYPE_F16 : MMP_TYPE_F32;
    const mmp_llm_hparams *h = &m->hp;
    uint64_t bytes;
    if (!mmp__mul_ok((uint64_t)h->head_dim * (uint64_t)h->n_head_kv, (uint64_t)c->n_ctx, &bytes) ||
        !mmp__mul_ok(bytes, mmp_type_get_traits(c->kv_type)->type_size, &bytes) || bytes > ((uint64_t)1 << 40)) {
        mmp_llm_ctx_free(c);
        return mmp__error_null(MMP_ERR_LIMIT, "mmp_llm_ctx_new: KV cache for n_ctx %d is too large", p.n_ctx);
    }
    c->k_cache = mmp__calloc((size_t)h->n_layer, sizeof(void *));
    c->v_cache = mmp__calloc((size_t)h->n_layer, sizeof(void *));
    if (!c->k_cache || !c->v_cache) { mmp_llm_ctx_free(c); return NULL; }
    for (int i = 0; i < h->n_layer; i++) {
        /* zeroed: positions past n_past are never read, but keep the memory defined */
        c->k_cache[i] = mmp__calloc(1, (size_t)bytes);
        c->v_cache[i] = mmp__calloc(1, (size_t)bytes);
        if (!c->k_cache[i] || !c->v_cache[i]) {
            mmp_llm_ctx_free(c);
            return mmp__error_null(MMP_ERR_NOMEM, "mmp_llm_ctx_new: cannot allocate the KV cache (%llu bytes per layer)",
                                   (unsigned long long)(2 * bytes));
        }
    }
    c->be = mmp_backend_cpu_new(p.n_threads);
    mmp_graph_params gp = mmp_graph_params_default();
    /* weights (~20 per layer for MoE) + nodes and views (~50 per layer) */
    gp.max_tensors = 256 + 128 * h->n_layer;
    if (c->be) c->g = mmp_graph_new(gp);
    if (!c->be || !c->g) { mmp_llm_ctx_free(c); return NULL; }
    return c;
}

int32_t mmp_llm_ctx_n_past(const mmp_llm_ctx *c) { return c ? c->n_past : 0; }
int32_t mmp_llm_ctx_n_ctx(const mmp_llm_ctx *c) { return c ? c->n_ctx : 0; }

enum mmp_status mmp_llm_ctx_truncate(mmp_llm_ctx *c, int32_t n_keep) {
    if (!c) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_ctx_truncate: NULL context");
    if (n_keep < 0 || n_keep > c->n_past)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_ctx_truncate: n_keep %d is outside [0, n_past = %d]", n_keep,
                          c->n_past);
    c->n_past = n_keep;
    return MMP_OK;
}

enum mmp_status mmp_llm_decode(mmp_llm_ctx *c, const mmp_llm_batch *b) {
    if (!c || !b) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_decode: NULL argument");
    const mmp_llm *m = c->m;
    const mmp_llm_hparams *h = &m->hp;
    if (b->n <= 0) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_decode: batch of %d tokens", b->n);
    if ((b->tokens == NULL) == (b->embd == NULL))
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_decode: give exactly one of tokens and embd");
    if ((int64_t)c->n_past + b->n > c->n_ctx)
        return mmp__error(MMP_ERR_LIMIT, "mmp_llm_decode: context full: %d tokens in the cache + %d new > n_ctx %d",
                          c->n_past, b->n, c->n_ctx);
    if (b->tokens)
        for (int i = 0; i < b->n; i++)
            if (b->tokens[i] < 0 || b->tokens[i] >= h->n_vocab)
                return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_decode: token id %d at %d is out of range [0, %d)",
                                  b->tokens[i], i, h->n_vocab);
    if (b->router_logits && h->n_expert == 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_llm_decode: router_logits asked of dense model %s", m->path);

    mmp_graph_reset(c->g);
    build_out o;
    memset(&o, 0, sizeof o);
    mmp_tensor *router_buf[1024];
    if (b->router_logits) {
        memset(router_buf, 0, sizeof router_buf);
        o.router = router_buf;
    }
    enum mmp_status s = build(c, b, &o);
    if (s != MMP_OK) return s;
    if ((s = mmp_graph_plan(c->be, c->g)) != MMP_OK) return s;
    if (o.inp_tokens) memcpy(o.inp_tokens->data, b->tokens, (size_t)b->n * sizeof(int32_t));
    if (o.inp_embd) memcpy(o.inp_embd->data, b->embd, (size_t)b->n * (size_t)h->n_embd * sizeof(float));
    int32_t *pos = o.inp_pos->data;
    for (int i = 0; i < b->n; i++) pos[i] = c->n_past + i;
    if ((s = mmp_graph_compute(c->be, c->g, c->p.abort_cb, c->p.abort_user)) != MMP_OK) return s;

    if (b->logits) {
        size_t rows = b->logits_all ? (size_t)b->n : 1;
        memcpy(b->logits, o.logits->data, rows * (size_t)h->n_vocab * sizeof(float));
    }
    if (b->hidden) memcpy(b->hidden, o.hidden->data, (size_t)b->n * (size_t)h->n_embd * sizeof(float));
    if (b->router_logits) {
        const size_t per = (size_t)b->n * (size_t)h->n_expert;
        for (int il = 0; il < h->n_layer; il++) {
            float *dst = b->router_logits + (size_t)il * per;
            if (o.router[il]) memcpy(dst, o.router[il]->data, per * sizeof(float));
            else memset(dst, 0, per * sizeof(float)); /* dense layer of a mixed model */
        }
    }
    c->n_past += b->n;
    return MMP_OK;
}
