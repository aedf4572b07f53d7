/* mmpipe caption: describe / transcribe an audio file with an audio-LLM (Qwen2-Audio-style:
 * audio encoder + projector + LLM), printing the answer as it is generated.
 * Also the media helpers that `mmpipe chat --image` shares (declared in cli.h): load the
 * encoder/projector that go with the LLM, encode images / audio files with progress on
 * stderr, and build the multimodal prompt. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* shared media helpers                                                                        */

int mmp_cli_media_load(mmp_cli_media *s, const char *cmd, const char *model, const char *mmproj, const mmp_llm *llm,
                       int n_threads) {
    memset(s, 0, sizeof *s);
    mmp_mm_params p = mmp_mm_params_default();
    p.n_threads = n_threads;
    double t0 = mmp_cli_now();
    s->mm = mmp_mm_load(model, mmproj, llm, &p);
    if (!s->mm) return mmp_cli_fail(cmd, mmproj ? "cannot load the multimodal projector" : "cannot load the image/audio encoder");
    fprintf(stderr, "mmpipe %s: %s%s%s encoder + projector loaded from %s in %.1f ms\n", cmd,
            mmp_mm_has(s->mm, MMP_MEDIA_IMAGE) ? "image" : "",
            mmp_mm_has(s->mm, MMP_MEDIA_IMAGE) && mmp_mm_has(s->mm, MMP_MEDIA_AUDIO) ? " + " : "",
            mmp_mm_has(s->mm, MMP_MEDIA_AUDIO) ? "audio" : "", mmproj ? mmproj : model, (mmp_cli_now() - t0) * 1e3);
    return 0;
}

static int media_push(mmp_cli_media *s, const char *cmd, enum mmp_media_kind kind, float *embd, int32_t n_tok) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 4;
        mmp_media *q = realloc(s->items, (size_t)cap * sizeof *q);
        if (!q) { free(embd); fprintf(stderr, "mmpipe %s: out of memory\n", cmd); return 1; }
        s->items = q;
        s->cap = cap;
    }
    s->items[s->n++] = (mmp_media){ kind, n_tok, mmp_mm_n_embd(s->mm), embd };
    return 0;
}

int mmp_cli_media_add_image(mmp_cli_media *s, const char *cmd, const char *path) {
    if (!mmp_mm_has(s->mm, MMP_MEDIA_IMAGE)) {
        fprintf(stderr, "mmpipe %s: %s: this model has no image encoder (give one with --mmproj FILE)\n", cmd, path);
        return 1;
    }
    double t0 = mmp_cli_now();
    mmp_image *img = mmp_image_load(path, 0);
    if (!img) return mmp_cli_fail(cmd, "cannot read the image");
    double t1 = mmp_cli_now();
    float *embd = NULL;
    int32_t n_tok = 0;
    enum mmp_status st = mmp_mm_encode_image(s->mm, img, &embd, &n_tok);
    int w = img->width, h = img->height;
    mmp_image_free(img);
    if (st) {
        fprintf(stderr, "mmpipe %s: %s: ", cmd, path);
        return mmp_cli_fail(cmd, "cannot encode the image");
    }
    mmp_mm_timings t = mmp_mm_get_timings(s->mm);
    fprintf(stderr, "mmpipe %s: image %s (%dx%d): read %.1f ms, preprocess %.1f ms, encode %.1f ms, project %.1f ms -> %d tokens\n",
            cmd, path, w, h, (t1 - t0) * 1e3, t.preprocess_ms, t.encode_ms, t.project_ms, n_tok);
    return media_push(s, cmd, MMP_MEDIA_IMAGE, embd, n_tok);
}

int mmp_cli_media_add_audio(mmp_cli_media *s, const char *cmd, const char *path, double max_seconds) {
    if (!mmp_mm_has(s->mm, MMP_MEDIA_AUDIO)) {
        fprintf(stderr, "mmpipe %s: %s: this model has no audio encoder (give one with --mmproj FILE)\n", cmd, path);
        return 1;
    }
    double t0 = mmp_cli_now();
    float *pcm = NULL;
    int64_t n = 0;
    bool cut = false;
    if (mmp_audio_decode_file(path, max_seconds, &pcm, &n, &cut)) return mmp_cli_fail(cmd, "cannot decode the audio");
    double t1 = mmp_cli_now();
    if (cut) fprintf(stderr, "mmpipe %s: %s is longer than %.0f s: only the first %.0f s are used (--max-seconds)\n", cmd, path,
                     max_seconds, max_seconds);
    float *embd = NULL;
    int32_t n_tok = 0;
    enum mmp_status st = mmp_mm_encode_audio(s->mm, pcm, n, &embd, &n_tok);
    free(pcm);
    if (st) return mmp_cli_fail(cmd, "cannot encode the audio");
    mmp_mm_timings t = mmp_mm_get_timings(s->mm);
    fprintf(stderr, "mmpipe %s: audio %s (%.2f s): decode %.1f ms, mel %.1f ms, encode %.1f ms, project %.1f ms -> %d tokens\n",
            cmd, path, (double)n / MMP_AUDIO_SAMPLE_RATE, (t1 - t0) * 1e3, t.mel_ms, t.encode_ms, t.project_ms, n_tok);
    return media_push(s, cmd, MMP_MEDIA_AUDIO, embd, n_tok);
}

void mmp_cli_media_truncate(mmp_cli_media *s, int n) {
    while (s->n > n) free((void *)s->items[--s->n].embd);
}

void mmp_cli_media_free(mmp_cli_media *s) {
    mmp_cli_media_truncate(s, 0);
    free(s->items);
    mmp_mm_free(s->mm);
    memset(s, 0, sizeof *s);
}

int mmp_cli_media_count_markers(const mmp_cli_media *s, const mmp_tokenizer *tok, const char *text) {
    const char *pats[5] = { "<__media__>", "<image>", "<audio>", NULL, NULL };
    const mmp_mm_markers *mk = mmp_mm_get_markers(s->mm);
    char own[2][128];
    int np = 3;
    int32_t ids[2] = { mk ? mk->image_token : -1, mk ? mk->audio_token : -1 };
    for (int k = 0; k < 2; k++) {
        size_t l = 0;
        const char *t = ids[k] >= 0 ? mmp_tokenizer_token_text(tok, ids[k], &l) : NULL;
        if (t && l > 0 && l < sizeof own[k]) {
            memcpy(own[k], t, l);
            own[k][l] = '\0';
            pats[np++] = own[k];
        }
    }
    /* count as mmp_mm_prompt_from_text does: longest match at each offset */
    int n = 0;
    for (const char *p = text; *p;) {
        size_t best = 0;
        for (int k = 0; k < np; k++) {
            size_t l = strlen(pats[k]);
            if (l > best && !strncmp(p, pats[k], l)) best = l;
        }
        if (best) { n++; p += best; } else p++;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* caption                                                                                     */

#define DEFAULT_PROMPT "Describe this audio in one sentence. If it contains speech, transcribe it."

static void caption_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe caption -m MODEL [--mmproj FILE] --audio PATH [-p PROMPT] [options]\n"
        "\n"
        "Describe or transcribe an audio file with an audio language model (Qwen2-Audio style:\n"
        "audio encoder + projector + LLM). A Hugging Face Qwen2-Audio folder holds everything;\n"
        "otherwise give the encoder + projector with --mmproj. Any format FFmpeg decodes works\n"
        "(wav, flac, mp3, ogg, opus, m4a, ...); it is resampled to 16 kHz mono. The answer goes\n"
        "to stdout; progress and timings go to stderr.\n"
        "\n"
        "The prompt goes through the model's chat template when it has one. The audio is put\n"
        "where the prompt says <audio> (or <__media__>), else before the prompt.\n"
        "\n"
        "options:\n"
        "  --audio PATH           the audio file (repeatable: several clips, in order)\n"
        "  --mmproj FILE          audio encoder + projector file or folder (GGUF mmproj or HF)\n"
        "  -p, --prompt TEXT      what to ask (default: \"" DEFAULT_PROMPT "\")\n"
        "  --chat-template NAME   use this template instead of the model's (%s);\n"
        "                         'none' sends the prompt as raw text\n"
        "  --max-seconds S        use at most the first S seconds of each file (default 600)\n"
        "%s"
        "  -h, --help             this help\n"
        "\n"
        "examples:\n"
        "  mmpipe caption -m Qwen2-Audio-7B-Instruct --audio jfk.flac --temp 0\n"
        "  mmpipe caption -m model.gguf --mmproj mmproj.gguf --audio talk.mp3 -p \"<audio>Transcribe:\"\n",
        mmp_chat_template_names(), mmp_cli_llm_opts_help());
}

int mmp_cli_caption(int argc, char **argv) {
    mmp_cli_llm_opts o;
    mmp_cli_llm_opts_init(&o);
    const char *mmproj = NULL, *prompt = DEFAULT_PROMPT, *tmpl_name = NULL;
    const char *audio[16];
    int n_audio = 0;
    double max_seconds = 600.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_is_help(a)) { caption_usage(stdout); return 0; }
        int r = mmp_cli_llm_opt("caption", argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--audio") || !strcmp(a, "--mmproj") || !strcmp(a, "-p") || !strcmp(a, "--prompt") ||
            !strcmp(a, "--chat-template") || !strcmp(a, "--max-seconds")) {
            if (i + 1 >= argc) { fprintf(stderr, "mmpipe caption: %s needs a value (see 'mmpipe caption --help')\n", a); return 2; }
            const char *v = argv[++i];
            if (!strcmp(a, "--audio")) {
                if (n_audio == (int)(sizeof audio / sizeof audio[0])) { fprintf(stderr, "mmpipe caption: at most 16 --audio files\n"); return 2; }
                audio[n_audio++] = v;
            } else if (!strcmp(a, "--mmproj")) mmproj = v;
            else if (!strcmp(a, "--chat-template")) tmpl_name = v;
            else if (!strcmp(a, "--max-seconds")) {
                char *end;
                max_seconds = strtod(v, &end);
                if (end == v || *end || !(max_seconds > 0 && max_seconds <= 86400)) {
                    fprintf(stderr, "mmpipe caption: bad value '%s' for --max-seconds (seconds, > 0)\n", v);
                    return 2;
                }
            } else prompt = v;
        } else { fprintf(stderr, "mmpipe caption: unknown argument '%s' (see 'mmpipe caption --help')\n", a); return 2; }
    }
    if (!o.model) { fprintf(stderr, "mmpipe caption: no model given: use -m MODEL (see 'mmpipe caption --help')\n"); return 2; }
    if (n_audio == 0) { fprintf(stderr, "mmpipe caption: no audio given: use --audio PATH (see 'mmpipe caption --help')\n"); return 2; }
    bool raw = tmpl_name && !strcmp(tmpl_name, "none");
    if (tmpl_name && !raw && mmp_chat_template_from_name(tmpl_name) < 0) {
        fprintf(stderr, "mmpipe caption: unknown chat template '%s'; known templates: %s, none\n", tmpl_name, mmp_chat_template_names());
        return 2;
    }
    if (o.n_predict < 0) o.n_predict = 256;
    if (!o.seed_set) o.sp.seed = mmp_cli_random_seed();
    mmp_audio_quiet_ffmpeg();

    int rc = 1;
    mmp_cli_media med = { 0 };
    mmp_llm_ctx *ctx = NULL;
    mmp_sampler *smp = NULL;
    mmp_stop *stop = NULL;
    mmp_mm_prompt *mp = NULL;
    float *logits = NULL;
    char *text = NULL, *user = NULL;
    mmp_llm *m = mmp_cli_llm_load("caption", o.model, false);
    if (!m) return 1;
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(m);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(m);
    if (!tok) { fprintf(stderr, "mmpipe caption: %s has no tokenizer (tokenizer.json or GGUF tokenizer metadata)\n", o.model); goto done; }
    if (mmp_cli_media_load(&med, "caption", o.model, mmproj, m, o.n_threads)) goto done;
    for (int i = 0; i < n_audio; i++)
        if (mmp_cli_media_add_audio(&med, "caption", audio[i], max_seconds)) goto done;

    /* the user message: the prompt, with one marker per clip in front unless it has them */
    {
        int n_mark = mmp_cli_media_count_markers(&med, tok, prompt);
        size_t pl = strlen(prompt);
        user = malloc(pl + (size_t)n_audio * 8 + 2);
        if (!user) goto done;
        user[0] = '\0';
        if (n_mark == 0) {
            for (int i = 0; i < n_audio; i++) strcat(user, "<audio>");
            if (!raw) strcat(user, "\n");
        }
        strcat(user, prompt);
    }
    const char *bos_text = mmp_tokenizer_bos(tok) >= 0 ? mmp_tokenizer_token_text(tok, mmp_tokenizer_bos(tok), NULL) : "";
    const char *eos_text = mmp_tokenizer_eos(tok) >= 0 ? mmp_tokenizer_token_text(tok, mmp_tokenizer_eos(tok), NULL) : "";
    enum mmp_chat_template tmpl = MMP_CHAT_CHATML;
    const char *eot = NULL;
    if (!raw) {
        char *jinja = mmp_cli_model_template(o.model);
        if (mmp_chat_resolve(tmpl_name, jinja, &tmpl)) {
            /* base models (Qwen2-Audio-7B) have no template: their prompt is the raw text */
            mmp_clear_error();
            raw = true;
            fprintf(stderr, "mmpipe caption: the model has no chat template: the prompt is used as raw text\n");
        }
        free(jinja);
    }
    if (raw) {
        text = strdup(user);
        if (!text) goto done;
    } else {
        mmp_chat_msg msg = { "user", user };
        if (mmp_chat_apply(tmpl, &msg, 1, true, bos_text, eos_text, &text, NULL)) { mmp_cli_fail("caption", NULL); goto done; }
        eot = mmp_chat_template_end_of_turn(tmpl, eos_text);
    }
    bool has_bos = bos_text && *bos_text && !strncmp(text, bos_text, strlen(bos_text));
    if (!(mp = mmp_mm_prompt_from_text(tok, text, strlen(text), !has_bos, mmp_mm_get_markers(med.mm), med.items, med.n))) {
        mmp_cli_fail("caption", "cannot build the prompt");
        goto done;
    }
    int32_t n_pos = mmp_mm_prompt_n_pos(mp);
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = o.n_ctx;
    cp.n_threads = o.n_threads;
    if (!(ctx = mmp_llm_ctx_new(m, &cp))) { mmp_cli_fail("caption", "cannot create the context"); goto done; }
    if (n_pos >= mmp_llm_ctx_n_ctx(ctx)) {
        fprintf(stderr, "mmpipe caption: the prompt has %d positions (%d of them audio) but the context holds %d (use --ctx N or --max-seconds S)\n",
                n_pos, mmp_mm_prompt_n_media_pos(mp), mmp_llm_ctx_n_ctx(ctx));
        goto done;
    }
    if (!(smp = mmp_sampler_new(hp->n_vocab, &o.sp))) { mmp_cli_fail("caption", "bad sampling options"); goto done; }
    {
        const char *stops[MMP_CLI_MAX_STOP + 1];
        int ns = 0;
        if (eot && *eot) stops[ns++] = eot;
        for (int i = 0; i < o.n_stop; i++) stops[ns++] = o.stop[i];
        int32_t eog[2];
        int n_eog = 0;
        if (mmp_tokenizer_eos(tok) >= 0) eog[n_eog++] = mmp_tokenizer_eos(tok);
        if (mmp_tokenizer_eot(tok) >= 0 && mmp_tokenizer_eot(tok) != mmp_tokenizer_eos(tok)) eog[n_eog++] = mmp_tokenizer_eot(tok);
        if (!(stop = mmp_stop_new(eog, n_eog, stops, ns, o.n_predict))) { mmp_cli_fail("caption", NULL); goto done; }
    }
    if (!(logits = malloc((size_t)hp->n_vocab * sizeof *logits))) { fprintf(stderr, "mmpipe caption: out of memory\n"); goto done; }
    const int32_t *pids = mmp_mm_prompt_ids(mp);
    for (int32_t i = 0; i < n_pos; i++)
        if (pids[i] >= 0 && !mmp_mm_prompt_is_media(mp, i)) mmp_sampler_accept(smp, pids[i]);

    double t0 = mmp_cli_now();
    if (mmp_mm_prompt_decode(ctx, m, mp, 0, 0, logits, false)) { mmp_cli_fail("caption", "decode failed"); goto done; }
    double t1 = mmp_cli_now(), t_gen = 0.0;
    int n_gen = 0;
    int32_t prev = -1;
    enum mmp_stop_reason why = o.n_predict == 0 ? MMP_STOP_MAX_TOKENS : MMP_STOP_NONE;
    char piece[512];
    while (why == MMP_STOP_NONE) {
        int32_t id = mmp_sampler_sample(smp, logits);
        if (id < 0) { mmp_cli_fail("caption", "sampling failed"); goto done; }
        mmp_sampler_accept(smp, id);
        n_gen++;
        bool eog = mmp_tokenizer_is_eog(tok, id);
        int64_t pn = eog ? 0 : mmp_cli_piece(tok, prev, id, piece, sizeof piece);
        if (pn < 0) { mmp_cli_fail("caption", "cannot decode a token"); goto done; }
        const char *emit;
        size_t emit_n;
        why = mmp_stop_push(stop, id, piece, (size_t)pn, &emit, &emit_n);
        if (why == MMP_STOP_NONE && eog) why = MMP_STOP_EOG;
        if (emit_n) { fwrite(emit, 1, emit_n, stdout); fflush(stdout); }
        if (why != MMP_STOP_NONE) break;
        if (mmp_llm_ctx_n_past(ctx) >= mmp_llm_ctx_n_ctx(ctx)) {
            mmp_stop_flush(stop, &emit, &emit_n);
            fwrite(emit, 1, emit_n, stdout);
            fprintf(stderr, "\nmmpipe caption: the context is full (%d positions; use --ctx N)", mmp_llm_ctx_n_ctx(ctx));
            break;
        }
        double ts = mmp_cli_now();
        mmp_llm_batch bb = { .n = 1, .tokens = &id, .logits = logits };
        if (mmp_llm_decode(ctx, &bb)) { mmp_cli_fail("caption", "decode failed"); goto done; }
        t_gen += mmp_cli_now() - ts;
        prev = id;
    }
    fputc('\n', stdout);
    fflush(stdout);
    int n_dec = n_gen > 0 ? n_gen - (why != MMP_STOP_NONE ? 1 : 0) : 0;
    fprintf(stderr, "mmpipe caption: prompt: %d positions (%d audio) in %.1f ms (%.1f positions/s) | generation: %d tokens, "
            "%d decoded in %.1f ms (%.1f tokens/s) | stop: %s | seed %llu\n", n_pos, mmp_mm_prompt_n_media_pos(mp), (t1 - t0) * 1e3,
            (double)n_pos / MMP_CLI_MAXD(t1 - t0, 1e-9), n_gen, n_dec, t_gen * 1e3,
            n_dec > 0 ? (double)n_dec / MMP_CLI_MAXD(t_gen, 1e-9) : 0.0, mmp_stop_reason_name(why), (unsigned long long)o.sp.seed);
    rc = 0;
done:
    free(text);
    free(user);
    free(logits);
    mmp_mm_prompt_free(mp);
    mmp_stop_free(stop);
    mmp_sampler_free(smp);
    mmp_llm_ctx_free(ctx);
    mmp_cli_media_free(&med);
    mmp_llm_free(m);
    return rc;
}
