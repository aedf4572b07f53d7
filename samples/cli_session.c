/* `mmpipe chat` and `mmpipe caption` as thin wrappers over stock pipelines (declared in cli.h):
 *
 *   each attached image / audio file ──► "image-embed" / "qwen2-audio" | "ultravox" | "voxtral"
 *                                        (preprocessing, encoder, projector) ──► embeddings
 *   the conversation, rendered with the chat template, + every item's embeddings
 *                                    ──► "chat" (prompt.text ─► backbone.generate) ──► answer
 *
 * Every pipeline is created on one model store, so each file is mapped once and the LLM loaded
 * once. What stays here is the user interface: the messages of the conversation, where the
 * markers of attached items go, and the timings. backbone.generate keeps the KV cache between
 * turns and decodes only what changed (keep=1). Uses only the public API. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Substituted --set values are escaped by the pipeline code; numbers go in as text. */
static int set_param(mmp_cli_session *s, mmp_pipeline_desc *d, const char *name, const char *value) {
    if (mmp_pipeline_desc_set_param(d, name, value) != MMP_OK) return mmp_cli_fail(s->cmd, "pipeline parameter");
    return 0;
}

static int set_num(mmp_cli_session *s, mmp_pipeline_desc *d, const char *name, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.9g", v);
    return set_param(s, d, name, buf);
}

static void on_progress(const char *what, int64_t done, int64_t total, void *user) {
    mmp_cli_session *s = user;
    double t = mmp_cli_now();
    if (!strcmp(what, "prompt reused")) s->n_reused = done;
    else if (!strcmp(what, "prompt")) {
        s->n_prompt = done;
        s->t_prompt = t;
    } else if (!strcmp(what, "tokens")) {
        s->n_tokens = done;
        s->t_last = t;
    }
    (void)total;
}

static bool on_text(const char *piece, size_t len, void *user) {
    (void)user;
    if (len) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    return true;
}

static mmp_pipeline_params session_params(mmp_cli_session *s) {
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = s->n_threads;
    pp.store = s->store;
    pp.progress = on_progress;
    pp.on_text = on_text;
    pp.cb_user = s;
    return pp;
}

int mmp_cli_session_open(mmp_cli_session *s, const char *cmd, const mmp_cli_llm_opts *o, const char *tmpl_name, bool raw_fallback,
                         const char *mmproj) {
    memset(s, 0, sizeof *s);
    s->cmd = cmd;
    s->model = o->model;
    s->mmproj = mmproj;
    s->n_threads = o->n_threads;
    if (o->n_stop > 4) {
        fprintf(stderr, "mmpipe %s: at most 4 --stop strings (chat.pipe takes stop..stop4)\n", cmd);
        return 2;
    }
    /* the tokenizer alone, for the template's BOS / EOS text */
    if (!(s->vocab = mmp_cli_llm_load(cmd, o->model, true))) return 1;
    s->tok = mmp_llm_get_tokenizer(s->vocab);
    if (!s->tok) {
        fprintf(stderr, "mmpipe %s: %s has no tokenizer (tokenizer.json or GGUF tokenizer metadata)\n", cmd, o->model);
        return 1;
    }
    s->bos_text = mmp_tokenizer_bos(s->tok) >= 0 ? mmp_tokenizer_token_text(s->tok, mmp_tokenizer_bos(s->tok), NULL) : "";
    s->eos_text = mmp_tokenizer_eos(s->tok) >= 0 ? mmp_tokenizer_token_text(s->tok, mmp_tokenizer_eos(s->tok), NULL) : "";
    s->raw = tmpl_name && !strcmp(tmpl_name, "none");
    if (!s->raw) {
        char *jinja = mmp_cli_model_template(o->model);
        enum mmp_status st = mmp_chat_resolve(tmpl_name, jinja, &s->tmpl);
        free(jinja);
        if (st != MMP_OK) {
            if (!raw_fallback) return mmp_cli_fail(cmd, NULL);
            /* base models (Qwen2-Audio-7B) have no template: their prompt is the raw text */
            mmp_clear_error();
            s->raw = true;
            fprintf(stderr, "mmpipe %s: the model has no chat template: the prompt is used as raw text\n", cmd);
        }
    }
    if (!(s->reg = mmp_registry_new()) || !(s->store = mmp_store_new())) return mmp_cli_fail(cmd, NULL);
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("chat");
    if (!d) return mmp_cli_fail(cmd, "stock pipeline chat");
    int rc = 0;
    /* the conversation is rendered here: prompt.text takes it as is, backbone.generate stops at
     * the template's end of turn */
    rc |= set_param(s, d, "model", o->model);
    rc |= set_param(s, d, "template", s->raw ? "none" : mmp_chat_template_name(s->tmpl));
    rc |= set_param(s, d, "prompt_template", "none");
    rc |= set_num(s, d, "n", o->n_predict);
    rc |= set_num(s, d, "temp", o->sp.temperature);
    rc |= set_num(s, d, "top_k", o->sp.top_k);
    rc |= set_num(s, d, "top_p", o->sp.top_p);
    rc |= set_num(s, d, "min_p", o->sp.min_p);
    rc |= set_num(s, d, "repeat_penalty", o->sp.repeat_penalty);
    rc |= set_num(s, d, "repeat_last_n", o->sp.repeat_last_n);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, (uint64_t)o->sp.seed);
    rc |= set_param(s, d, "seed", seed);
    rc |= set_num(s, d, "ctx", o->n_ctx);
    static const char *const stop_names[4] = { "stop", "stop2", "stop3", "stop4" };
    for (int i = 0; i < o->n_stop; i++) rc |= set_param(s, d, stop_names[i], o->stop[i]);
    if (rc) { mmp_pipeline_desc_free(d); return 1; }
    mmp_pipeline_params pp = session_params(s);
    double t0 = mmp_cli_now();
    s->chat = mmp_pipeline_new(d, s->reg, &pp);
    mmp_pipeline_desc_free(d);
    if (!s->chat) return mmp_cli_fail(cmd, "cannot load the model");
    fprintf(stderr, "mmpipe %s: %s loaded in %.1f ms (stock pipeline chat)\n", cmd, o->model, (mmp_cli_now() - t0) * 1e3);
    return 0;
}

int mmp_cli_session_add_media(mmp_cli_session *s, int kind, const char *path, double max_seconds) {
    const char *what = kind ? "audio" : "image";
    if (!s->media_pipe[kind]) {
        const char *name = mmp_pipeline_stock_for_media(s->model, s->mmproj, kind);
        if (!name) return mmp_cli_fail(s->cmd, s->mmproj ? "cannot load the multimodal projector" : "no media encoder");
        mmp_pipeline_desc *d = mmp_pipeline_desc_stock(name);
        if (!d) return mmp_cli_fail(s->cmd, name);
        if (set_param(s, d, "model", s->mmproj ? s->mmproj : s->model)) { mmp_pipeline_desc_free(d); return 1; }
        mmp_pipeline_params pp = session_params(s);
        double t0 = mmp_cli_now();
        s->media_pipe[kind] = mmp_pipeline_new(d, s->reg, &pp);
        mmp_pipeline_desc_free(d);
        if (!s->media_pipe[kind]) return mmp_cli_fail(s->cmd, "cannot load the encoder + projector");
        /* the projector must give the LLM's width: say so with both files before any encoding */
        int oi = mmp_pipeline_find_output(s->media_pipe[kind], "embeddings"), ci = mmp_pipeline_find_input(s->chat, "media");
        if (oi >= 0 && ci >= 0) {
            int64_t have = mmp_pipeline_output_type(s->media_pipe[kind], oi)->dims[1];
            int64_t want = mmp_pipeline_input_type(s->chat, ci)->dims[1];
            if (have > 0 && want > 0 && have != want) {
                fprintf(stderr, "mmpipe %s: the %s projector (%s) gives %" PRId64 "-wide embeddings but the LLM (%s) takes %" PRId64 "\n",
                        s->cmd, what, s->mmproj ? s->mmproj : s->model, have, s->model, want);
                mmp_pipeline_free(s->media_pipe[kind]);
                s->media_pipe[kind] = NULL;
                return 1;
            }
        }
        mmp_clear_error();
        fprintf(stderr, "mmpipe %s: %s encoder + projector loaded from %s in %.1f ms (stock pipeline %s)\n", s->cmd, what,
                s->mmproj ? s->mmproj : s->model, (mmp_cli_now() - t0) * 1e3, name);
    }
    double t0 = mmp_cli_now();
    mmp_array *in = kind ? mmp_array_from_audio_file(path, max_seconds) : mmp_array_from_image_file(path);
    if (!in) return mmp_cli_fail(s->cmd, kind ? "cannot decode the audio" : "cannot read the image");
    if (kind && (double)in->dims[0] >= max_seconds * 16000.0 - 1)
        fprintf(stderr, "mmpipe %s: %s is longer than %.0f s: only the first %.0f s are used (--max-seconds)\n", s->cmd, path,
                max_seconds, max_seconds);
    double t1 = mmp_cli_now();
    mmp_array *out = NULL;
    const mmp_array *ins[1] = { in };
    enum mmp_status st = mmp_pipeline_run(s->media_pipe[kind], ins, &out);
    char shape[64];
    if (kind) snprintf(shape, sizeof shape, "%.1f s", (double)in->dims[0] / 16000.0);
    else snprintf(shape, sizeof shape, "%" PRId64 "x%" PRId64, in->dims[2], in->dims[1]);
    mmp_array_free(in);
    if (st != MMP_OK) {
        char w[1024];
        snprintf(w, sizeof w, "%s: cannot encode the %s", path, what);
        return mmp_cli_fail(s->cmd, w);
    }
    if (s->n_media == s->cap_media) {
        int cap = s->cap_media ? s->cap_media * 2 : 4;
        mmp_array **q = realloc(s->media, (size_t)cap * sizeof *q);
        if (!q) { mmp_array_free(out); fprintf(stderr, "mmpipe %s: out of memory\n", s->cmd); return 1; }
        s->media = q;
        s->cap_media = cap;
    }
    s->media[s->n_media++] = out;
    fprintf(stderr, "mmpipe %s: %s %s (%s): read %.1f ms, encoded in %.1f ms -> %" PRId64 " embeddings\n", s->cmd, what, path, shape,
            (t1 - t0) * 1e3, (mmp_cli_now() - t1) * 1e3, out->dims[0]);
    return 0;
}

int mmp_cli_session_n_media(const mmp_cli_session *s) { return s->n_media; }

void mmp_cli_session_truncate_media(mmp_cli_session *s, int n) {
    while (s->n_media > n) mmp_array_free(s->media[--s->n_media]);
}

int mmp_cli_count_markers(const char *text) {
    static const char *const pats[] = { "<__media__>", "<image>", "<audio>", NULL };
    int n = 0;
    for (const char *p = text; *p;) {
        size_t best = 0;
        for (int k = 0; pats[k]; k++) {
            size_t l = strlen(pats[k]);
            if (l > best && !strncmp(p, pats[k], l)) best = l;
        }
        if (best) { n++; p += best; } else p++;
    }
    return n;
}

char *mmp_cli_session_render(mmp_cli_session *s, const mmp_chat_msg *msgs, size_t n) {
    char *text = NULL;
    if (s->raw) {
        /* no template: the messages' text one after the other */
        size_t len = 1;
        for (size_t i = 0; i < n; i++) len += strlen(msgs[i].content);
        if (!(text = malloc(len))) { fprintf(stderr, "mmpipe %s: out of memory\n", s->cmd); return NULL; }
        text[0] = '\0';
        for (size_t i = 0; i < n; i++) strcat(text, msgs[i].content);
        return text;
    }
    if (mmp_chat_apply(s->tmpl, msgs, n, true, s->bos_text, s->eos_text, &text, NULL) != MMP_OK) {
        mmp_cli_fail(s->cmd, "chat template");
        return NULL;
    }
    return text;
}

int mmp_cli_session_answer(mmp_cli_session *s, const char *text, char **answer) {
    *answer = NULL;
    mmp_array *in_text = mmp_array_from_text(text, strlen(text)), *media = NULL, *rows = NULL;
    if (!in_text) return mmp_cli_fail(s->cmd, "prompt");
    int rc = 1;
    if (s->n_media > 0) {
        /* every item of the conversation, in order, with its row count */
        int64_t total = 0, d = s->media[0]->dims[1];
        for (int i = 0; i < s->n_media; i++) total += s->media[i]->dims[0];
        int64_t md[2] = { total, d }, kd[1] = { s->n_media };
        if (!(media = mmp_array_new(MMP_TYPE_F32, 2, md)) || !(rows = mmp_array_new(MMP_TYPE_I32, 1, kd))) {
            mmp_cli_fail(s->cmd, "media");
            goto done;
        }
        size_t off = 0;
        for (int i = 0; i < s->n_media; i++) {
            if (s->media[i]->dims[1] != d) {
                fprintf(stderr, "mmpipe %s: media item %d has width %" PRId64 ", the first %" PRId64 "\n", s->cmd, i,
                        s->media[i]->dims[1], d);
                goto done;
            }
            size_t nb = mmp_array_nbytes(s->media[i]);
            memcpy((char *)media->data + off, s->media[i]->data, nb);
            off += nb;
            ((int32_t *)rows->data)[i] = (int32_t)s->media[i]->dims[0];
        }
    }
    const mmp_array *ins[3] = { in_text, media, rows };
    mmp_array *outs[2] = { 0 };
    s->n_reused = s->n_prompt = s->n_tokens = 0;
    s->t0 = mmp_cli_now();
    s->t_prompt = s->t_last = s->t0;
    enum mmp_status st = mmp_pipeline_run(s->chat, ins, outs);
    fputc('\n', stdout);
    fflush(stdout);
    if (st != MMP_OK) { mmp_cli_fail(s->cmd, NULL); goto done; }
    *answer = mmp_array_to_text(outs[0]);
    mmp_array_free(outs[0]);
    mmp_array_free(outs[1]);
    if (!*answer) { mmp_cli_fail(s->cmd, "answer"); goto done; }
    double tp = s->t_prompt - s->t0, tg = s->t_last - s->t_prompt;
    int64_t n_new = s->n_prompt - s->n_reused;
    fprintf(stderr, "mmpipe %s: prompt: %" PRId64 " positions (%" PRId64 " reused from the cache, %" PRId64 " decoded in %.1f ms, "
            "%.1f/s) | generation: %" PRId64 " tokens in %.1f ms (%.1f tokens/s)\n", s->cmd, s->n_prompt, s->n_reused, n_new,
            tp * 1e3, (double)n_new / MMP_CLI_MAXD(tp, 1e-9), s->n_tokens, tg * 1e3,
            s->n_tokens > 0 ? (double)s->n_tokens / MMP_CLI_MAXD(tg, 1e-9) : 0.0);
    rc = 0;
done:
    mmp_array_free(in_text);
    mmp_array_free(media);
    mmp_array_free(rows);
    return rc;
}

void mmp_cli_session_close(mmp_cli_session *s) {
    mmp_cli_session_truncate_media(s, 0);
    free(s->media);
    mmp_pipeline_free(s->chat);
    for (int k = 0; k < 2; k++) mmp_pipeline_free(s->media_pipe[k]);
    mmp_store_free(s->store);
    mmp_registry_free(s->reg);
    mmp_llm_free(s->vocab);
    memset(s, 0, sizeof *s);
}
