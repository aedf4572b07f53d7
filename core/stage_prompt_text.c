/* The `prompt.text` stage kind: text (+ media embeddings) -> the LLM's input rows.
 *
 *   text  "What is in the picture?"          media [R, n_embd] (every image/audio, in order)
 *     │ template: one user message ([system], user(text), generation prompt) rendered with
 *     │ the model's chat template (chat.h); none: the text is the prompt as is
 *     │ markers ("<image>", "<audio>", "<__media__>", the model's placeholder text) expand to
 *     │ media rows: k markers take R/k rows each, or media_rows[i] (mtmd.h, mmp_mm_prompt_from_text)
 *     ▼
 *   embeddings [n, n_embd]  (token embeddings, media rows spliced in)   tokens [n] (ids)
 *
 * Also the helpers shared with backbone.generate (core/stage-text.h). */
#include "stage-text.h"

#include "mmpipe/chat.h"
#include "mmpipe/gguf.h"
#include "mmpipe/json.h"
#include "mmpipe/llm.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/tokenizer.h"
#include "stage-impl.h"
#include "store-impl.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ shared helpers ---- */

static enum mmp_status cfg_token(const mmp_json *c, const char *path, const char *k1, const char *k2, int32_t *out) {
    const char *k = c && mmp_json_has(c, k1) ? k1 : c && mmp_json_has(c, k2) ? k2 : NULL;
    if (!k) return MMP_OK;
    int64_t v = -1;
    if (mmp_json_get_int(c, k, &v) != MMP_OK || v < 0 || v > INT32_MAX)
        return mmp__error(MMP_ERR_FORMAT, "%s: config.json %s is not a token id", path, k);
    *out = (int32_t)v;
    return MMP_OK;
}

enum mmp_status mmp__text_model_info_read(const mmp_stage_params *p, const char *path, const mmp_tokenizer *tok,
                                          mmp__text_model_info *out) {
    memset(out, 0, sizeof *out);
    out->markers = mmp_mm_markers_default();
    mmp_modelfile *own = NULL;
    const mmp_modelfile *mf = p->store ? mmp_store_open(p->store, path) : (const mmp_modelfile *)(own = mmp_modelfile_open(path));
    if (!mf) return MMP_ERR_IO;   /* the message names the file */
    enum mmp_status st = MMP_OK;
    const char *s = NULL;
    const mmp_gguf *g = mmp_modelfile_gguf(mf);
    if (g) {
        if (mmp_gguf_has(g, "tokenizer.chat_template") && mmp_gguf_get_str(g, "tokenizer.chat_template", &s) == MMP_OK &&
            !(out->chat_template = mmp__strdup(s)))
            st = MMP_ERR_NOMEM;
    } else if (mmp_modelfile_has_file(mf, "tokenizer_config.json")) {
        char *tp = mmp_modelfile_file_path(mf, "tokenizer_config.json");
        mmp_json *j = tp ? mmp_json_open(tp) : NULL;
        if (j && mmp_json_has(j, "chat_template") && mmp_json_get_string(j, "chat_template", &s) == MMP_OK &&
            !(out->chat_template = mmp__strdup(s)))
            st = MMP_ERR_NOMEM;
        mmp_json_free(j);
        free(tp);
    }
    const mmp_json *c = mmp_modelfile_config(mf);
    if (st == MMP_OK) st = cfg_token(c, path, "image_token_index", "image_token_id", &out->markers.image_token);
    if (st == MMP_OK) st = cfg_token(c, path, "audio_token_index", "audio_token_id", &out->markers.audio_token);
    const char *mt = NULL;
    if (st == MMP_OK && c && tok && mmp_json_has(c, "model_type") && mmp_json_get_string(c, "model_type", &mt) == MMP_OK &&
        !strcmp(mt, "qwen2_audio") && mmp_tokenizer_find(tok, "<|audio_bos|>", 13) >= 0 &&
        mmp_tokenizer_find(tok, "<|audio_eos|>", 13) >= 0) {
        /* as mmp_mm_load: Qwen2AudioProcessor writes <|audio_bos|><|AUDIO|>...<|audio_eos|> */
        out->markers.audio_begin = "<|audio_bos|>";
        out->markers.audio_end = "<|audio_eos|>";
    }
    if (p->store) mmp_store_close(p->store, mf);
    mmp_modelfile_free(own);
    if (st != MMP_OK) mmp__text_model_info_free(out);
    else mmp_clear_error();
    return st;
}

void mmp__text_model_info_free(mmp__text_model_info *info) {
    free(info->chat_template);
    info->chat_template = NULL;
}

enum mmp_status mmp__text_template_option(const char *value, const char *model_template, bool lenient,
                                          int *out) {
    *out = -1;
    if (!strcmp(value, "none")) return MMP_OK;
    if (!strcmp(value, "auto")) {
        if (!model_template) return MMP_OK;
        enum mmp_chat_template t;
        if (mmp_chat_detect(model_template, &t) != MMP_OK) {
            if (lenient) { mmp_clear_error(); return MMP_OK; }
            return mmp__error(MMP_ERR_UNSUPPORTED, "the model's chat template is not one mmpipe knows: give template=NAME (%s) or "
                              "template=none", mmp_chat_template_names());
        }
        *out = (int)t;
        return MMP_OK;
    }
    int t = mmp_chat_template_from_name(value);
    if (t < 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "unknown chat template '%s' (known: auto, none, %s)", value,
                          mmp_chat_template_names());
    *out = t;
    return MMP_OK;
}

mmp_array *mmp__rows_array(enum mmp_type type, int n_dims, int64_t n, int64_t row_elems, const void *data) {
    int64_t dims[2] = { n, row_elems };
    mmp_array *a = mmp_array_new(type, n_dims, dims);   /* n may be 0: an empty list */
    if (a && data && n > 0) memcpy(a->data, data, mmp_array_nbytes(a));
    return a;
}

/* ------------------------------------------------------------------ the stage ---- */

#define KIND "prompt.text"
#define GENERIC_MARKER "<__media__>"

typedef struct pt_state {
    mmp__model_ref llm;
    const mmp_llm *m;
    const mmp_tokenizer *tok;
    int tmpl;                  /* enum mmp_chat_template, -1: none */
    char *system;              /* NULL: no system message */
    char *marker;              /* option marker=TEXT, NULL: none */
    int bos;                   /* -1 auto, 0, 1 */
    mmp_mm_markers mk;
    const char *bos_text, *eos_text;
    int64_t n_embd;
} pt_state;

static void pt_destroy(void *state) {
    pt_state *s = state;
    if (!s) return;
    free(s->system);
    free(s->marker);
    mmp__model_put(&s->llm);
    free(s);
}

static void *pt_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "needs model= the LLM (its tokenizer, chat template and embedding table)");
    pt_state *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->bos = -1;
    const char *tmpl_opt = "auto";
    char *tmpl_buf = NULL;
    mmp__text_model_info info = { 0 };
    mmp__opt opts[MMP__TEXT_MAX_OPTS];
    char *ostore = NULL;
    int n_opts = mmp__opts_parse(KIND, p->options, opts, MMP__TEXT_MAX_OPTS, &ostore);
    enum mmp_status st = n_opts < 0 ? MMP_ERR_INVALID_ARG : MMP_OK;
    for (int i = 0; st == MMP_OK && i < n_opts; i++) {
        const char *k = opts[i].key, *v = opts[i].val;
        if (!strcmp(k, "template")) {
            free(tmpl_buf);
            if (!(tmpl_buf = mmp__strdup(v))) st = MMP_ERR_NOMEM;
            tmpl_opt = tmpl_buf;
        } else if (!strcmp(k, "system")) {
            free(s->system);
            s->system = NULL;
            if (*v && !(s->system = mmp__strdup(v))) st = MMP_ERR_NOMEM;
        } else if (!strcmp(k, "marker")) {
            free(s->marker);
            s->marker = NULL;
            if (!*v) st = mmp__error(MMP_ERR_INVALID_ARG, "option marker= needs a text");
            else if (!(s->marker = mmp__strdup(v))) st = MMP_ERR_NOMEM;
        } else if (!strcmp(k, "bos")) {
            if (!strcmp(v, "auto")) s->bos = -1;
            else if (!strcmp(v, "0") || !strcmp(v, "1")) s->bos = v[0] - '0';
            else st = mmp__error(MMP_ERR_INVALID_ARG, "option bos='%s': expected auto, 0 or 1", v);
        } else {
            st = mmp__error(MMP_ERR_INVALID_ARG, "unknown option '%s' (known: template=auto|none|NAME, system=TEXT, "
                            "marker=TEXT, bos=auto|0|1)", k);
        }
    }
    free(ostore);
    if (st == MMP_OK) st = mmp__llm_ref(p, p->model_path, &s->llm);
    if (st == MMP_OK) {
        s->m = s->llm.model;
        if (!(s->tok = mmp_llm_get_tokenizer(s->m)))
            st = mmp__error(MMP_ERR_NOT_FOUND, "%s has no tokenizer (the text has to be tokenized)", p->model_path);
    }
    if (st == MMP_OK) st = mmp__text_model_info_read(p, p->model_path, s->tok, &info);
    if (st == MMP_OK) st = mmp__text_template_option(tmpl_opt, info.chat_template, false, &s->tmpl);
    if (st == MMP_OK && s->system && s->tmpl < 0)
        st = mmp__error(MMP_ERR_INVALID_ARG, "system= needs a chat template (template=%s renders no messages)", tmpl_opt);
    free(tmpl_buf);
    if (st != MMP_OK) {
        mmp__text_model_info_free(&info);
        pt_destroy(s);
        return NULL;
    }
    s->mk = info.markers;    /* no pointers into info: begin/end are static strings */
    mmp__text_model_info_free(&info);
    int32_t bos = mmp_tokenizer_bos(s->tok), eos = mmp_tokenizer_eos(s->tok);
    s->bos_text = bos >= 0 ? mmp_tokenizer_token_text(s->tok, bos, NULL) : NULL;
    s->eos_text = eos >= 0 ? mmp_tokenizer_token_text(s->tok, eos, NULL) : NULL;
    s->n_embd = mmp_llm_get_hparams(s->m)->n_embd;
    in[1].dims[1] = s->n_embd;      /* media [*, n_embd]: a projector of another width is refused */
    out[0].dims[1] = s->n_embd;     /* embeddings [*, n_embd] */
    return s;
}

/* A marker found in the text: its kind (-1: the next item, any kind). */
typedef struct pt_marker { size_t off, len; int kind; } pt_marker;

/* The markers of `text`, matched as mmp_mm_prompt_from_text does (the model's placeholder
 * texts first, then <__media__>, <image>, <audio>; longest match at each offset). Returns the
 * count; kinds[] (up to cap) get each marker's kind. */
static size_t find_markers(const pt_state *s, const char *text, size_t len, int *kinds, size_t cap) {
    struct { const char *t; size_t len; int kind; } pats[5];
    int np = 0;
    const int32_t ph[2] = { s->mk.image_token, s->mk.audio_token };
    for (int kd = 0; kd < 2; kd++) {
        size_t l = 0;
        const char *t = ph[kd] >= 0 ? mmp_tokenizer_token_text(s->tok, ph[kd], &l) : NULL;
        if (t && l > 0) { pats[np].t = t; pats[np].len = l; pats[np].kind = kd; np++; }
    }
    pats[np].t = GENERIC_MARKER; pats[np].len = 11; pats[np].kind = -1; np++;
    pats[np].t = "<image>"; pats[np].len = 7; pats[np].kind = MMP_MEDIA_IMAGE; np++;
    pats[np].t = "<audio>"; pats[np].len = 7; pats[np].kind = MMP_MEDIA_AUDIO; np++;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int best = -1;
        for (int k = 0; k < np; k++)
            if (pats[k].len <= len - i && !memcmp(text + i, pats[k].t, pats[k].len) && (best < 0 || pats[k].len > pats[best].len))
                best = k;
        if (best < 0) { i++; continue; }
        if (kinds && n < cap) kinds[n] = pats[best].kind;
        n++;
        i += pats[best].len;
    }
    return n;
}

/* `text` with every occurrence of `from` replaced by `to`; malloc'ed. */
static char *replace_all(const char *text, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to), n = 0;
    for (const char *q = text; (q = strstr(q, from)); q += lf) n++;
    char *r = mmp__malloc(strlen(text) + n * (lt > lf ? lt - lf : 0) + 1);
    if (!r) return NULL;
    char *o = r;
    for (const char *q = text;;) {
        const char *f = strstr(q, from);
        if (!f) { strcpy(o, q); break; }
        memcpy(o, q, (size_t)(f - q));
        o += f - q;
        memcpy(o, to, lt);
        o += lt;
        q = f + lf;
    }
    return r;
}

static enum mmp_status pt_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    (void)p;
    const pt_state *s = state;
    const mmp_array *txt = inputs[0], *media = inputs[1], *sizes = inputs[2];
    int64_t tl = txt->dims[0], rows = media ? media->dims[0] : 0;
    if (tl > 0 && memchr(txt->data, 0, (size_t)tl))
        return mmp__error(MMP_ERR_INVALID_ARG, KIND ": the text holds a NUL byte (at %lld)",
                          (long long)((const char *)memchr(txt->data, 0, (size_t)tl) - (const char *)txt->data));
    enum mmp_status st = MMP_OK;
    char *user = NULL, *rendered = NULL;
    int *kinds = NULL;
    mmp_media *items = NULL;
    mmp_mm_prompt *mp = NULL;
    mmp_array *emb = NULL, *ids = NULL;
    if (!(user = mmp__malloc((size_t)tl + 1))) return MMP_ERR_NOMEM;
    if (tl > 0) memcpy(user, txt->data, (size_t)tl);
    user[tl] = '\0';
    if (s->marker) {
        /* the caller's marker text is the generic marker: it takes the next media item */
        char *u = replace_all(user, s->marker, GENERIC_MARKER);
        free(user);
        if (!(user = u)) return MMP_ERR_NOMEM;
    }
    if (rows > 0 && find_markers(s, user, strlen(user), NULL, 0) == 0) {
        /* media but no marker: all of them before the message, as `mmpipe chat` does */
        char *u = mmp__malloc(strlen(user) + 13);
        if (!u) { free(user); return MMP_ERR_NOMEM; }
        strcpy(u, GENERIC_MARKER "\n");
        strcat(u, user);
        free(user);
        user = u;
    }
    size_t len = 0;
    if (s->tmpl >= 0) {
        mmp_chat_msg msgs[2];
        size_t nm = 0;
        if (s->system) msgs[nm++] = (mmp_chat_msg){ "system", s->system };
        msgs[nm++] = (mmp_chat_msg){ "user", user };
        if ((st = mmp_chat_apply((enum mmp_chat_template)s->tmpl, msgs, nm, true, s->bos_text, s->eos_text, &rendered, &len))) {
            mmp__error_prefix(KIND ": ");
            goto done;
        }
    } else {
        rendered = user;
        user = NULL;
        len = strlen(rendered);
    }
    bool add_special = s->bos == 1 ||
                       (s->bos < 0 && !(s->bos_text && *s->bos_text && !strncmp(rendered, s->bos_text, strlen(s->bos_text))));
    size_t k = find_markers(s, rendered, len, NULL, 0);
    if (k > 0 && rows == 0) {
        st = mmp__error(MMP_ERR_INVALID_ARG, KIND ": the text has %zu media marker%s but no media embeddings were given "
                        "(connect the media input, or take the marker out of the text)", k, k == 1 ? "" : "s");
        goto done;
    }
    if (sizes && !media) {
        st = mmp__error(MMP_ERR_INVALID_ARG, KIND ": media_rows given without media");
        goto done;
    }
    if (sizes && media) {
        /* explicit rows per item: as many items as markers, adding up to the media rows */
        const int32_t *r = sizes->data;
        int64_t sum = 0;
        if ((size_t)sizes->dims[0] != k) {
            st = mmp__error(MMP_ERR_SHAPE, KIND ": media_rows lists %lld item%s but the text has %zu media marker%s",
                            (long long)sizes->dims[0], sizes->dims[0] == 1 ? "" : "s", k, k == 1 ? "" : "s");
            goto done;
        }
        for (size_t i = 0; i < k; i++) {
            if (r[i] < 1) { st = mmp__error(MMP_ERR_INVALID_ARG, KIND ": media_rows[%zu] = %d (must be >= 1)", i, (int)r[i]); goto done; }
            sum += r[i];
        }
        if (sum != rows) {
            st = mmp__error(MMP_ERR_SHAPE, KIND ": media_rows add up to %lld but the media embeddings have %lld rows",
                            (long long)sum, (long long)rows);
            goto done;
        }
    } else if (k > 0 && rows % (int64_t)k != 0) {
        st = mmp__error(MMP_ERR_SHAPE, KIND ": the media embeddings have %lld rows, which do not divide among the %zu media "
                        "markers of the text", (long long)rows, k);
        goto done;
    }
    if (k > 0) {
        if (!(kinds = mmp__calloc(k, sizeof *kinds)) || !(items = mmp__calloc(k, sizeof *items))) { st = MMP_ERR_NOMEM; goto done; }
        find_markers(s, rendered, len, kinds, k);
        /* the generic marker takes the model's media kind (audio for an audio-only model) */
        int dflt = s->mk.image_token < 0 && s->mk.audio_token >= 0 ? MMP_MEDIA_AUDIO : MMP_MEDIA_IMAGE;
        int64_t per = rows / (int64_t)k;
        if (per > INT32_MAX) { st = mmp__error(MMP_ERR_LIMIT, KIND ": %lld media rows per marker", (long long)per); goto done; }
        size_t row0 = 0;
        for (size_t i = 0; i < k; i++) {
            int32_t n_i = sizes ? ((const int32_t *)sizes->data)[i] : (int32_t)per;
            items[i].kind = kinds[i] >= 0 ? (enum mmp_media_kind)kinds[i] : (enum mmp_media_kind)dflt;
            items[i].n_tokens = n_i;
            items[i].n_embd = (int32_t)s->n_embd;
            items[i].embd = (const float *)media->data + row0 * (size_t)s->n_embd;
            row0 += (size_t)n_i;
        }
    }
    if (!(mp = mmp_mm_prompt_from_text(s->tok, rendered, len, add_special, &s->mk, items, (int)k))) {
        mmp__error_prefix(KIND ": ");
        st = MMP_ERR_INVALID_ARG;
        goto done;
    }
    int32_t n = mmp_mm_prompt_n_pos(mp);
    if (!(emb = mmp__rows_array(MMP_TYPE_F32, 2, n, s->n_embd, NULL)) ||
        !(ids = mmp__rows_array(MMP_TYPE_I32, 1, n, 1, mmp_mm_prompt_ids(mp)))) {
        st = MMP_ERR_NOMEM;
        goto done;
    }
    if ((st = mmp_mm_prompt_embed(mp, s->m, 0, n, emb->data)) != MMP_OK) { mmp__error_prefix(KIND ": "); goto done; }
    outputs[0] = emb;
    outputs[1] = ids;
    emb = ids = NULL;
done:
    mmp_array_free(emb);
    mmp_array_free(ids);
    mmp_mm_prompt_free(mp);
    free(items);
    free(kinds);
    free(rendered);
    free(user);
    return st;
}

const mmp_stage_kind mmp__stage_prompt_text = {
    .name = KIND,
    .summary = "text (+ media embeddings) -> LLM input rows: one user message rendered with the chat template, media markers "
               "expanded to media rows (options template=auto|none|NAME, system=TEXT, marker=TEXT, bos=auto|0|1; "
               "'\\,' is a comma in a value)",
    .n_inputs = 3,
    .n_outputs = 2,
    .inputs = {
        { "text", { MMP_ROLE_TEXT, MMP_TYPE_U8, 1, { MMP_DIM_ANY } }, false,
          "the user's message (UTF-8); with template=none the whole prompt" },
        { "media", { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, true,
          "embeddings of every attached image/audio, concatenated [R, n_embd]; k markers take R/k rows each" },
        { "media_rows", { MMP_ROLE_COUNTS, MMP_TYPE_I32, 1, { MMP_DIM_ANY } }, true,
          "rows of each media item [k] in marker order (items of different sizes); must add up to R" },
    },
    .outputs = {
        { "embeddings", { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false,
          "LLM input embeddings [n, n_embd] (token embeddings, media rows spliced in)" },
        { "tokens", { MMP_ROLE_TOKENS, MMP_TYPE_I32, 1, { MMP_DIM_ANY } }, false,
          "the ids [n]; at media positions the placeholder id (-1 where the model has none)" },
    },
    .create = pt_create,
    .run = pt_run,
    .destroy = pt_destroy,
};
