/* The `backbone.llm` stage kind: the LLM backbone as a pipeline stage.
 *
 * Inputs (exactly one): tokens [*] i32, or embeddings [*, n_embd] f32 (e.g. projected image
 * features spliced with text embeddings). Outputs: hidden [*, n_embd] (final hidden states
 * after the final norm) and logits [*, n_vocab], one row per input position. Each run is one
 * fresh sequence (the KV cache is cleared first).
 *
 * Options: kv=f16 (f16 KV cache). */
#include "llm-impl.h"
#include "../core/util.h"
#include "../core/stage-impl.h"
#include "../core/store-impl.h"

#include <stdlib.h>
#include <string.h>

/* The model comes from the store (shared, read-only: prompt.embed and other pipelines meet on
 * it); the context (KV cache, buffers, thread pool) is this stage's own. */
typedef struct llm_stage {
    mmp__model_ref ref;
    const mmp_llm *m;
    mmp_llm_ctx *c;
    enum mmp_kv_type kv;
} llm_stage;

static void llm_stage_destroy(void *state) {
    llm_stage *s = state;
    if (!s) return;
    mmp_llm_ctx_free(s->c);
    mmp__model_put(&s->ref);
    free(s);
}

/* "kv=f32|f16" (mmp__opts_parse: "\," escapes a comma). An empty value or "auto" keeps the
 * default (f32; a pipeline parameter left ""). */
static enum mmp_status parse_options(llm_stage *s, const char *opt) {
    const char *K = "backbone.llm";
    mmp__opt items[8];
    char *store = NULL;
    int n = mmp__opts_parse(K, opt, items, 8, &store);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        const char *k = items[i].key, *v = items[i].val;
        if (!strcmp(k, "kv")) {
            if (!*v || !strcmp(v, "auto")) continue;
            if (!strcmp(v, "f16")) s->kv = MMP_KV_F16;
            else if (!strcmp(v, "f32")) s->kv = MMP_KV_F32;
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option kv=%s, expected f32 or f16 (known: kv=f32|f16)", K, v);
        } else {
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (known: kv=f32|f16)", K, k);
        }
    }
    free(store);
    return st;
}

static void *llm_stage_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "backbone.llm: no model path (-m)");
    llm_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    if (parse_options(s, p->options) != MMP_OK || mmp__llm_ref(p, p->model_path, &s->ref) != MMP_OK) {
        llm_stage_destroy(s);
        return NULL;
    }
    s->m = s->ref.model;
    const mmp_llm_hparams *h = mmp_llm_get_hparams(s->m);
    in[1].dims[1] = h->n_embd;   /* embeddings [*, n_embd] */
    out[0].dims[1] = h->n_embd;  /* hidden [*, n_embd] */
    out[1].dims[1] = h->n_vocab; /* logits [*, n_vocab] */
    return s;
}

static enum mmp_status llm_stage_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                     mmp_array **outputs) {
    llm_stage *s = state;
    const mmp_array *tok = inputs[0], *emb = inputs[1];
    if ((tok == NULL) == (emb == NULL))
        return mmp__error(MMP_ERR_INVALID_ARG, "backbone.llm: give exactly one of the inputs 'tokens' and 'embeddings'");
    const mmp_llm_hparams *h = mmp_llm_get_hparams(s->m);
    int64_t n = tok ? tok->dims[0] : emb->dims[0];
    if (n <= 0 || n > (1 << 20)) return mmp__error(MMP_ERR_INVALID_ARG, "backbone.llm: %lld input positions", (long long)n);
    if (!s->c || mmp_llm_ctx_n_ctx(s->c) < n) {
        mmp_llm_ctx_free(s->c);
        mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
        cp.n_ctx = (int32_t)MMP_MAX(n, (int64_t)MMP_MIN(h->n_ctx_train, 4096));
        cp.n_threads = p && p->n_threads > 0 ? p->n_threads : 1;
        cp.kv_type = s->kv;
        cp.abort_cb = p ? p->abort_cb : NULL;
        cp.abort_user = p ? p->cb_user : NULL;
        if (!(s->c = mmp_llm_ctx_new(s->m, &cp))) return MMP_ERR_NOMEM;
    }
    enum mmp_status st = mmp_llm_ctx_truncate(s->c, 0);
    if (st != MMP_OK) return st;
    int64_t dh[2] = {n, h->n_embd}, dl[2] = {n, h->n_vocab};
    mmp_array *hid = mmp_array_new(MMP_TYPE_F32, 2, dh);
    mmp_array *lg = hid ? mmp_array_new(MMP_TYPE_F32, 2, dl) : NULL;
    if (!lg) { mmp_array_free(hid); return MMP_ERR_NOMEM; }
    mmp_llm_batch b = {.n = (int32_t)n, .tokens = tok ? tok->data : NULL, .embd = emb ? emb->data : NULL,
                       .logits = lg->data, .logits_all = true, .hidden = hid->data};
    st = mmp_llm_decode(s->c, &b);
    if (st != MMP_OK) {
        mmp_array_free(hid);
        mmp_array_free(lg);
        return st;
    }
    outputs[0] = hid;
    outputs[1] = lg;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_backbone_llm = {
    .name = "backbone.llm",
    .summary = "LLM backbone (llama, mistral, qwen2, mixtral, qwen2_moe, olmoe): tokens or embeddings -> hidden, logits",
    .n_inputs = 2,
    .n_outputs = 2,
    .inputs = {
        {"tokens", {MMP_ROLE_TOKENS, MMP_TYPE_I32, 1, {MMP_DIM_ANY}}, true, "token ids (or give embeddings)"},
        {"embeddings", {MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, true,
         "input embeddings [n, n_embd] (or give tokens)"},
    },
    .outputs = {
        {"hidden", {MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "final hidden states after the final norm [n, n_embd]"},
        {"logits", {MMP_ROLE_LOGITS, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
         "next-token scores at every position [n, n_vocab]"},
    },
    .create = llm_stage_create,
    .run = llm_stage_run,
    .destroy = llm_stage_destroy,
};
