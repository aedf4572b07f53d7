/* The `prompt.embed` stage kind: prompt assembly for multimodal LLMs as a pipeline stage.
 *
 * tokens [n] i32 (a prompt in which each image/audio position holds the marker token, e.g.
 * LLaVA's <image> id repeated once per patch) + media [m, n_embd] f32 (projected image or audio
 * embeddings) -> embeddings [n, n_embd]: the LLM's token embeddings with the marker rows
 * replaced, in order, by the media rows (HF LlavaForConditionalGeneration /
 * Qwen2AudioForConditionalGeneration with the markers already expanded). The result feeds
 * backbone.llm's `embeddings` port.
 *
 * model: the LLM (GGUF or HF folder) whose embedding table is used; options: marker=ID (default:
 * the config's image_token_index / audio_token_index / image_token_id / audio_token_id). */
#include "mmpipe/llm.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/store.h"
#include "stage-impl.h"
#include "store-impl.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The LLM comes from the store under "llm" (mmp__llm_ref): backbone.llm in the same pipeline
 * gets the same object, so the embedding table is loaded once. */
typedef struct prompt_state {
    mmp__model_ref ref;
    const mmp_llm *m;
    int64_t marker;
    int64_t n_embd, n_vocab;
} prompt_state;

static void prompt_destroy(void *state) {
    prompt_state *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

/* "marker=ID" (mmp__opts_parse: "\," escapes a comma) -> *marker; an empty value or "auto"
 * keeps the default (-1: from the model's config; a pipeline parameter left ""). */
static enum mmp_status parse_options(const char *opt, int64_t *marker) {
    const char *K = "prompt.embed";
    mmp__opt items[8];
    char *store = NULL;
    int n = mmp__opts_parse(K, opt, items, 8, &store);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        const char *k = items[i].key, *v = items[i].val;
        if (!strcmp(k, "marker")) {
            if (!*v || !strcmp(v, "auto")) continue;
            char *e = NULL;
            long long x = strtoll(v, &e, 10);
            if (e == v || *e || x < 0 || x > INT32_MAX)
                st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option marker=%s, expected a token id in 0..%d (known: marker=ID)", K, v,
                                (int)INT32_MAX);
            else *marker = x;
        } else {
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (known: marker=ID, a token id >= 0)", K, k);
        }
    }
    free(store);
    return st;
}

static void *prompt_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "needs model= the LLM whose token embedding table it uses");
    prompt_state *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->marker = -1;
    if (parse_options(p->options, &s->marker) != MMP_OK) { prompt_destroy(s); return NULL; }
    if (mmp__llm_ref(p, p->model_path, &s->ref) != MMP_OK) { prompt_destroy(s); return NULL; }
    s->m = s->ref.model;
    if (s->marker < 0) {
        /* the marker id from the model's config.json, read through the mapping the LLM was
         * loaded from (the store's, or the ref's private one) */
        const mmp_modelfile *mf = p->store ? mmp_store_open(p->store, p->model_path) : s->ref.own_mf;
        if (!mf) { prompt_destroy(s); return NULL; }
        const mmp_json *cfg = mmp_modelfile_config(mf);
        int64_t id = -1;
        enum mmp_status st = cfg ? mmp_json_get_int_alt(cfg, &id, "image_token_index", "audio_token_index", "image_token_id",
                                                        "audio_token_id", NULL)
                                 : MMP_ERR_NOT_FOUND;
        if (p->store) mmp_store_close(p->store, mf);
        if (st != MMP_OK) {
            prompt_destroy(s);
            return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: no image_token_index / audio_token_index in the config: give options=marker=ID",
                                   p->model_path);
        }
        if (id < 0 || id > INT32_MAX) {
            prompt_destroy(s);
            return mmp__error_null(MMP_ERR_FORMAT, "%s: marker token id %lld out of range", p->model_path, (long long)id);
        }
        s->marker = id;
    }
    const mmp_llm_hparams *h = mmp_llm_get_hparams(s->m);
    s->n_embd = h->n_embd;
    s->n_vocab = h->n_vocab;
    in[1].dims[1] = s->n_embd;     /* media [*, n_embd]: a projector of another width is refused */
    out[0].dims[1] = s->n_embd;
    return s;
}

static enum mmp_status prompt_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    (void)p;
    const prompt_state *s = state;
    const mmp_array *tok = inputs[0], *media = inputs[1];
    const int32_t *ids = tok->data;
    int64_t n = tok->dims[0], n_mark = 0, m = media ? media->dims[0] : 0;
    for (int64_t i = 0; i < n; i++) n_mark += ids[i] == s->marker;
    if (n_mark != m)
        return mmp__error(MMP_ERR_SHAPE, "prompt.embed: the prompt has %lld marker tokens (id %lld) but the media embeddings have %lld rows",
                          (long long)n_mark, (long long)s->marker, (long long)m);
    int64_t dims[2] = { n, s->n_embd };
    mmp_array *y = mmp_array_new(MMP_TYPE_F32, 2, dims);
    if (!y) return MMP_ERR_NOMEM;
    float *out = y->data;
    const float *rows = media ? media->data : NULL;
    /* runs of text tokens are embedded together; each marker takes the next media row (the
     * marker id itself may lie outside the embedding table, as LLaVA's <image> can) */
    int64_t i = 0, next = 0;
    while (i < n) {
        if (ids[i] == s->marker) {
            memcpy(out + i * s->n_embd, rows + next * s->n_embd, (size_t)s->n_embd * sizeof(float));
            next++;
            i++;
            continue;
        }
        int64_t j = i;
        while (j < n && ids[j] != s->marker) j++;
        enum mmp_status st = mmp_llm_embed_tokens(s->m, ids + i, (int)(j - i), out + i * s->n_embd);
        if (st != MMP_OK) {
            mmp_array_free(y);
            mmp__error_prefix("prompt.embed: ");
            return st;
        }
        i = j;
    }
    outputs[0] = y;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_prompt_embed = {
    .name = "prompt.embed",
    .summary = "prompt assembly: token embeddings of the LLM with each marker token replaced by the next media embedding "
               "(options marker=ID; default from the config's image_token_index / audio_token_index)",
    .n_inputs = 2,
    .n_outputs = 1,
    .inputs = {
        { "tokens", { MMP_ROLE_TOKENS, MMP_TYPE_I32, 1, { MMP_DIM_ANY } }, false,
          "prompt token ids [n], one marker token per media row" },
        { "media", { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, true,
          "projected image/audio embeddings [m, n_embd] (m = number of markers)" },
    },
    .outputs = {
        { "embeddings", { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false,
          "LLM input embeddings [n, n_embd]" },
    },
    .create = prompt_create,
    .run = prompt_run,
    .destroy = prompt_destroy,
};
