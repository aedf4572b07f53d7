/* tokenize.clip: text -> CLIP token ids, padded as a diffusers pipeline (and
 * mmp_sd_encode_prompt) feeds the text encoder: [bos, ids (truncated), eos, pad, ...] of a fixed
 * length T.
 *
 *   model = a Stable Diffusion root (diffusers folder with model_index.json, or a single-file
 *           checkpoint): its tokenizer, T = min(model_max_length, the text encoder's n_ctx),
 *           from the mmp_sd shared through the store with encoder.clip_text and
 *           generator.sample (aux = the VAE override and the options tokenizer=DIR,
 *           ldm_heads=N, ldm_groups=N, ldm_text_heads=N must then be the same as theirs so that
 *           all meet on one loaded model);
 *   model = a CLIP tokenizer folder (vocab.json + merges.txt): T = model_max_length, or the
 *           option length=N.
 * The text input is optional: unconnected (or not given) it is the empty prompt "", which is
 * what Stable Diffusion uses as the unconditional (negative) prompt. */
#include "mmpipe/stage.h"
#include "mmpipe/tokenizer.h"
#include "../core/stage-impl.h"
#include "../core/store-impl.h"
#include "../core/sd-impl.h"
#include "../core/util.h"
#include "../core/mapfile.h"

#include <stdlib.h>
#include <string.h>

typedef struct tok_stage {
    mmp__model_ref ref;                 /* the SD root or the tokenizer */
    const mmp_clip_tokenizer *tok;
    int32_t length;
} tok_stage;

static void tok_destroy(void *state) {
    tok_stage *s = state;
    if (!s) return;
    mmp__model_put(&s->ref);
    free(s);
}

static bool is_file_in(const char *dir, const char *name) {
    char *f = mmp__path_join(dir, name);
    bool r = f && mmp__is_file(f);
    free(f);
    return r;
}

static void *tok_load_cb(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)mf;
    (void)ctx;
    return mmp_clip_tokenizer_load(path);
}
static void tok_free_cb(void *t) { mmp_clip_tokenizer_free(t); }

static void *tok_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    const char *K = "tokenize.clip";
    (void)in;
    if (!p || !p->model_path || !*p->model_path)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: model= is required (a Stable Diffusion root or a CLIP tokenizer folder)", K);
    mmp__opt items[16];
    char *storage = NULL;
    int n = mmp__opts_parse(K, p->options, items, 16, &storage);
    if (n < 0) return NULL;
    mmp__sd_opts so = {0};
    long length = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(items[i].key, "length")) {
            char *e;
            length = strtol(items[i].val, &e, 10);
            if (!*items[i].val || *e || length < 2 || length > 65536) {
                mmp__error(MMP_ERR_INVALID_ARG, "%s: option length=%s, expected 2..65536", K, items[i].val);
                goto bad;
            }
            continue;
        }
        int r = mmp__sd_opt(K, items[i].key, items[i].val, &so);
        if (r < 0) goto bad;
        if (r == 0) {
            mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (known: length=N; with an SD root: tokenizer=DIR, ldm_heads=N, "
                       "ldm_groups=N, ldm_text_heads=N)", K, items[i].key);
            goto bad;
        }
    }
    free(storage);
    storage = NULL;
    tok_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) goto bad;
    if (mmp__sd_is_root(p->model_path)) {
        if (length) {
            free(s);
            mmp__error(MMP_ERR_INVALID_ARG, "%s: option length: a Stable Diffusion root decides the prompt length itself", K);
            goto bad;
        }
        if (mmp__sd_ref(p, p->model_path, p->aux_path, &so, &s->ref) != MMP_OK) { free(s); goto bad; }
        s->tok = mmp_sd_tokenizer(s->ref.model);
        s->length = mmp__sd_prompt_length(s->ref.model);
    } else {
        if (mmp__is_dir(p->model_path) && !is_file_in(p->model_path, "vocab.json")) {
            free(s);
            mmp__error(MMP_ERR_NOT_FOUND, "%s: neither a Stable Diffusion model (no model_index.json) nor a CLIP tokenizer folder "
                       "(no vocab.json)", p->model_path);
            goto bad;
        }
        /* read-only after loading: shared across pipelines */
        if (mmp__model_get(p, "clip_tokenizer", p->model_path, NULL, MMP__MODEL_NO_FILE, tok_load_cb, tok_free_cb, NULL, &s->ref) != MMP_OK) {
            free(s);
           
            goto bad;
        }
        s->tok = s->ref.model;
        s->length = length ? (int32_t)length : mmp_clip_tokenizer_max_length(s->tok);
    }
    mmp__sd_opts_free(&so);
    out[0].dims[0] = s->length;
    return s;
bad:
    free(storage);
    mmp__sd_opts_free(&so);
    return NULL;
}

static enum mmp_status tok_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    (void)p;
    tok_stage *s = state;
    const mmp_array *t = inputs[0];
    const char *text = t ? (const char *)t->data : "";
    size_t len = t ? (size_t)mmp_array_nelements(t) : 0;
    int64_t d[1] = { s->length };
    mmp_array *o = mmp_array_new(MMP_TYPE_I32, 1, d);
    if (!o) return MMP_ERR_NOMEM;
    enum mmp_status st = mmp_clip_tokenizer_encode_padded(s->tok, text, len, s->length, o->data, NULL);
    if (st != MMP_OK) { mmp_array_free(o); return st; }
    outputs[0] = o;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_tokenize_clip = {
    .name = "tokenize.clip",
    .summary = "CLIP tokenizer: text -> token ids padded to the model's prompt length (model=SD root or tokenizer folder; "
               "option length=N for a folder; SD roots: aux=VAE, tokenizer=DIR, ldm_*=N as the other stages)",
    .n_inputs = 1,
    .n_outputs = 1,
    .inputs = { { "text", { MMP_ROLE_TEXT, MMP_TYPE_U8, 1, { MMP_DIM_ANY } }, true,
                  "UTF-8 prompt [n bytes]; unconnected: the empty prompt (Stable Diffusion's unconditional prompt)" } },
    .outputs = { { "tokens", { MMP_ROLE_TOKENS, MMP_TYPE_I32, 1, { MMP_DIM_ANY } }, false,
                   "[bos, ids, eos, pad...] [T] (T = 77 for SD 1.x/2.x)" } },
    .create = tok_create,
    .run = tok_run,
    .destroy = tok_destroy,
};
