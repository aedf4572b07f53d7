/* mmpipe chat: a conversation with a chat model, rendered with its chat template.
 * Each turn renders the whole conversation, tokenizes it, keeps the KV cache for the prefix
 * that did not change and decodes only the new tokens. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void chat_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe chat -m MODEL [--mmproj FILE] [--image PATH] [--chat-template NAME] [--system TEXT] [-p MESSAGE] [options]\n"
        "\n"
        "Talk with a chat (instruction-tuned) model. Type a message and press Enter; the answer is\n"
        "printed as it is generated. Commands: /reset forgets the conversation (keeps --system),\n"
        "/exit (or end of input, Ctrl-D) quits. With -p, answer that one message and exit.\n"
        "/image PATH attaches a picture to your next message (image chat models: LLaVA, or an LLM\n"
        "with --mmproj); it goes where the message says <image>, else before the message.\n"
        "\n"
        "The conversation is turned into text with the model's chat template (the\n"
        "tokenizer.chat_template in the model file). Known templates: %s.\n"
        "\n"
        "options:\n"
        "  --chat-template NAME   use this template instead of the model's (one of the names above)\n"
        "  --system TEXT          a system message that sets the assistant's behaviour\n"
        "  -p, --prompt MESSAGE   answer one message and exit\n"
        "  --image PATH           attach a picture to the first message (repeatable)\n"
        "  --mmproj FILE          image encoder + projector (llama.cpp mmproj GGUF or HF folder);\n"
        "                         not needed for a Hugging Face LLaVA folder\n"
        "%s"
        "  -h, --help             this help\n"
        "\n"
        "examples:\n"
        "  mmpipe chat -m qwen2.5-0.5b-instruct-q8_0.gguf --system \"You answer briefly.\"\n"
        "  mmpipe chat -m models/stories260K.gguf --chat-template chatml -p \"Hello\" -n 20\n"
        "  mmpipe chat -m llava-1.5-7b-hf --image cat.jpg -p \"What is in the picture?\"\n",
        mmp_chat_template_names(), mmp_cli_llm_opts_help());
}

typedef struct chat {
    mmp_chat_msg *msgs;
    char **owned;          /* contents we allocated (indexes match msgs) */
    size_t n, cap;
    int32_t *past;         /* tokens in the KV cache */
    size_t n_past, cap_past;
} chat;

static bool chat_add(chat *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        mmp_chat_msg *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return false;
        c->msgs = m;
        char **o = realloc(c->owned, cap * sizeof *o);
        if (!o) return false;
        c->owned = o;
        c->cap = cap;
    }
    char *cp = strdup(content);
    if (!cp) return false;
    c->owned[c->n] = cp;
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = cp;
    c->n++;
    return true;
}

static void chat_truncate(chat *c, size_t n) {
    while (c->n > n) free(c->owned[--c->n]);
}

typedef struct chat_run {
    mmp_llm *m;
    const mmp_tokenizer *tok;
    mmp_llm_ctx *ctx;
    mmp_sampler *smp;
    mmp_stop *stop;
    enum mmp_chat_template tmpl;
    const char *bos_text, *eos_text;
    float *logits;
    mmp_cli_media *med;    /* images attached so far (NULL: text only) */
} chat_run;

/* A user message with n_images newly attached images: one "<image>" marker per image in
 * front of the text unless the text places them itself. */
static bool chat_add_user(chat *c, const chat_run *r, const char *text, int n_images) {
    if (n_images <= 0 || !r->med || mmp_cli_media_count_markers(r->med, r->tok, text) > 0) return chat_add(c, "user", text);
    size_t tl = strlen(text);
    char *s = malloc((size_t)n_images * 8 + tl + 1);
    if (!s) return false;
    s[0] = '\0';
    for (int i = 0; i < n_images; i++) strcat(s, "<image>");
    strcat(s, "\n");
    strcat(s, text);
    bool ok = chat_add(c, "user", s);
    free(s);
    return ok;
}

/* Render + tokenize the conversation with the generation prompt, reuse the cached prefix,
 * generate the answer (printed as it comes) and append it to the conversation. */
static int answer(chat_run *r, chat *c) {
    char *text = NULL;
    size_t tlen = 0;
    if (mmp_chat_apply(r->tmpl, c->msgs, c->n, true, r->bos_text, r->eos_text, &text, &tlen))
        return mmp_cli_fail("chat", NULL);
    /* add BOS only when the template did not write it */
    bool has_bos = r->bos_text && *r->bos_text && !strncmp(text, r->bos_text, strlen(r->bos_text));
    int32_t *ids = NULL;
    size_t n = 0;
    enum mmp_status st;
    mmp_mm_prompt *mp = NULL;
    if (r->med) {
        /* the images' markers expand to their embeddings (include/mmpipe/mtmd.h); a marker
         * without an image is an error, as in the HF processors */
        mp = mmp_mm_prompt_from_text(r->tok, text, tlen, !has_bos, mmp_mm_get_markers(r->med->mm), r->med->items, r->med->n);
        free(text);
        if (!mp) return mmp_cli_fail("chat", "cannot build the prompt");
        n = (size_t)mmp_mm_prompt_n_pos(mp);
        ids = malloc(n * sizeof *ids);
        if (!ids) { mmp_mm_prompt_free(mp); fprintf(stderr, "mmpipe chat: out of memory\n"); return 1; }
        memcpy(ids, mmp_mm_prompt_ids(mp), n * sizeof *ids);
        st = MMP_OK;
    } else {
        st = mmp_tokenizer_encode(r->tok, text, tlen, !has_bos, true, &ids, &n);
        free(text);
    }
    if (st) return mmp_cli_fail("chat", "cannot tokenize the conversation");
    int32_t n_ctx = mmp_llm_ctx_n_ctx(r->ctx);
    if (n >= (size_t)n_ctx) {
        free(ids);
        mmp_mm_prompt_free(mp);
        fprintf(stderr, "mmpipe chat: the conversation has %zu tokens but the context holds %d: use /reset or --ctx N\n", n, n_ctx);
        return 1;
    }
    /* keep the common prefix of what is cached */
    size_t keep = 0;
    while (keep < c->n_past && keep < n && c->past[keep] == ids[keep]) keep++;
    if (keep == n) keep--; /* decode at least one token to get logits */
    mmp_llm_ctx_truncate(r->ctx, (int32_t)keep);
    if (n > c->cap_past) {
        int32_t *p = realloc(c->past, (n + 1024) * sizeof *p);
        if (!p) { free(ids); mmp_mm_prompt_free(mp); fprintf(stderr, "mmpipe chat: out of memory\n"); return 1; }
        c->past = p;
        c->cap_past = n + 1024;
    }
    memcpy(c->past, ids, n * sizeof *ids);
    c->n_past = keep;
    double t0 = mmp_cli_now();
    if (mp) {
        st = mmp_mm_prompt_decode(r->ctx, r->m, mp, (int32_t)keep, 0, r->logits, false);
        mmp_mm_prompt_free(mp);
    } else {
        mmp_llm_batch b = { .n = (int32_t)(n - keep), .tokens = ids + keep, .logits = r->logits };
        st = mmp_llm_decode(r->ctx, &b);
    }
    free(ids);
    if (st) return mmp_cli_fail("chat", "decode failed");
    double t_prompt = mmp_cli_now() - t0, t_gen = 0.0;
    int n_gen = 0;
    c->n_past = n;

    mmp_sampler_reset(r->smp);
    mmp_stop_reset(r->stop);
    char *ans = NULL;
    size_t an = 0, acap = 0;
    char piece[512];
    int32_t prev = c->past[n - 1];
    enum mmp_stop_reason why = MMP_STOP_NONE;
    while (why == MMP_STOP_NONE) {
        int32_t id = mmp_sampler_sample(r->smp, r->logits);
        if (id < 0) { free(ans); return mmp_cli_fail("chat", "sampling failed"); }
        mmp_sampler_accept(r->smp, id);
        bool eog = mmp_tokenizer_is_eog(r->tok, id);
        int64_t pn = eog ? 0 : mmp_cli_piece(r->tok, prev, id, piece, sizeof piece);
        if (pn < 0) { free(ans); return mmp_cli_fail("chat", "cannot decode a token"); }
        const char *emit;
        size_t en;
        why = mmp_stop_push(r->stop, id, piece, (size_t)pn, &emit, &en);
        if (eog && why == MMP_STOP_NONE) why = MMP_STOP_EOG;
        if (en) {
            fwrite(emit, 1, en, stdout);
            fflush(stdout);
            if (an + en + 1 > acap) {
                size_t cap = (an + en + 1) * 2;
                char *p = realloc(ans, cap);
                if (!p) { free(ans); fprintf(stderr, "mmpipe chat: out of memory\n"); return 1; }
                ans = p;
                acap = cap;
            }
            memcpy(ans + an, emit, en);
            an += en;
        }
        if (why != MMP_STOP_NONE) break;
        if (mmp_llm_ctx_n_past(r->ctx) >= n_ctx) {
            fprintf(stderr, "\nmmpipe chat: the context is full (%d tokens): use /reset or --ctx N\n", n_ctx);
            break;
        }
        mmp_llm_batch bb = { .n = 1, .tokens = &id, .logits = r->logits };
        double ts = mmp_cli_now();
        if (mmp_llm_decode(r->ctx, &bb)) { free(ans); return mmp_cli_fail("chat", "decode failed"); }
        t_gen += mmp_cli_now() - ts;
        n_gen++;
        if (c->n_past < c->cap_past) c->past[c->n_past++] = id;
        prev = id;
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (r->med)
        fprintf(stderr, "mmpipe chat: prompt: %zu new positions in %.1f ms (%.1f/s) | generation: %d tokens decoded in %.1f ms (%.1f tokens/s)\n",
                n - keep, t_prompt * 1e3, (double)(n - keep) / MMP_CLI_MAXD(t_prompt, 1e-9), n_gen, t_gen * 1e3,
                n_gen > 0 ? n_gen / MMP_CLI_MAXD(t_gen, 1e-9) : 0.0);
    bool ok = chat_add(c, "assistant", ans ? (ans[an] = '\0', ans) : "");
    free(ans);
    if (!ok) { fprintf(stderr, "mmpipe chat: out of memory\n"); return 1; }
    return 0;
}

int mmp_cli_chat(int argc, char **argv) {
    mmp_cli_llm_opts o;
    mmp_cli_llm_opts_init(&o);
    const char *tmpl_name = NULL, *system = NULL, *prompt = NULL, *mmproj = NULL;
    const char *images[16];
    int n_images = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_is_help(a)) { chat_usage(stdout); return 0; }
        int r = mmp_cli_llm_opt("chat", argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--chat-template") || !strcmp(a, "--system") || !strcmp(a, "-p") || !strcmp(a, "--prompt") ||
            !strcmp(a, "--image") || !strcmp(a, "--mmproj")) {
            if (i + 1 >= argc) { fprintf(stderr, "mmpipe chat: %s needs a value (see 'mmpipe chat --help')\n", a); return 2; }
            const char *v = argv[++i];
            if (!strcmp(a, "--image")) {
                if (n_images == (int)(sizeof images / sizeof images[0])) { fprintf(stderr, "mmpipe chat: at most 16 --image files\n"); return 2; }
                images[n_images++] = v;
            } else if (!strcmp(a, "--mmproj")) mmproj = v;
            else if (!strcmp(a, "--chat-template")) tmpl_name = v;
            else if (!strcmp(a, "--system")) system = v;
            else prompt = v;
        } else { fprintf(stderr, "mmpipe chat: unknown argument '%s' (see 'mmpipe chat --help')\n", a); return 2; }
    }
    if (!o.model) { fprintf(stderr, "mmpipe chat: no model given: use -m MODEL (see 'mmpipe chat --help')\n"); return 2; }
    if (tmpl_name && mmp_chat_template_from_name(tmpl_name) < 0) {
        fprintf(stderr, "mmpipe chat: unknown chat template '%s'; known templates: %s\n", tmpl_name, mmp_chat_template_names());
        return 2;
    }
    if (o.n_predict < 0) o.n_predict = 512;
    if (!o.seed_set) o.sp.seed = mmp_cli_random_seed();

    int rc = 1;
    chat c = { 0 };
    chat_run r = { 0 };
    mmp_cli_media med = { 0 };
    int n_pending = 0;      /* images attached to the next message */
    char *line = NULL;
    size_t line_cap = 0;
    char *jinja = mmp_cli_model_template(o.model);
    if (mmp_chat_resolve(tmpl_name, jinja, &r.tmpl)) { free(jinja); return mmp_cli_fail("chat", NULL); }
    free(jinja);
    if (!(r.m = mmp_cli_llm_load("chat", o.model, false))) return 1;
    r.tok = mmp_llm_get_tokenizer(r.m);
    if (!r.tok) { fprintf(stderr, "mmpipe chat: %s has no tokenizer\n", o.model); goto done; }
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(r.m);
    r.bos_text = mmp_tokenizer_bos(r.tok) >= 0 ? mmp_tokenizer_token_text(r.tok, mmp_tokenizer_bos(r.tok), NULL) : "";
    r.eos_text = mmp_tokenizer_eos(r.tok) >= 0 ? mmp_tokenizer_token_text(r.tok, mmp_tokenizer_eos(r.tok), NULL) : "";
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = o.n_ctx;
    cp.n_threads = o.n_threads;
    if (!(r.ctx = mmp_llm_ctx_new(r.m, &cp))) { mmp_cli_fail("chat", "cannot create the context"); goto done; }
    if (!(r.smp = mmp_sampler_new(hp->n_vocab, &o.sp))) { mmp_cli_fail("chat", "bad sampling options"); goto done; }
    {
        /* stop at end-of-generation ids, at the template's end-of-turn text (for vocabularies
         * where it is not a single EOG token) and at the user's --stop strings */
        const char *stops[MMP_CLI_MAX_STOP + 1];
        int ns = 0;
        const char *eot = mmp_chat_template_end_of_turn(r.tmpl, r.eos_text);
        if (eot && *eot) stops[ns++] = eot;
        for (int i = 0; i < o.n_stop; i++) stops[ns++] = o.stop[i];
        int32_t eog[2];
        int n_eog = 0;
        if (mmp_tokenizer_eos(r.tok) >= 0) eog[n_eog++] = mmp_tokenizer_eos(r.tok);
        if (mmp_tokenizer_eot(r.tok) >= 0) eog[n_eog++] = mmp_tokenizer_eot(r.tok);
        if (!(r.stop = mmp_stop_new(eog, n_eog, stops, ns, o.n_predict))) { mmp_cli_fail("chat", NULL); goto done; }
    }
    if (!(r.logits = malloc((size_t)hp->n_vocab * sizeof *r.logits))) goto done;
    if (n_images > 0 || mmproj) {
        if (mmp_cli_media_load(&med, "chat", o.model, mmproj, r.m, o.n_threads)) goto done;
        r.med = &med;
        for (int i = 0; i < n_images; i++)
            if (mmp_cli_media_add_image(&med, "chat", images[i])) goto done;
        n_pending = n_images;
    }
    if (system && !chat_add(&c, "system", system)) goto done;
    size_t base = c.n;
    fprintf(stderr, "mmpipe chat: template %s%s\n", mmp_chat_template_name(r.tmpl), prompt ? "" : "; /reset to start over, /exit to quit");
    if (prompt) {
        if (!chat_add_user(&c, &r, prompt, n_pending)) goto done;
        rc = answer(&r, &c);
        goto done;
    }
    bool tty = isatty(0);
    for (;;) {
        if (tty) { fprintf(stderr, "> "); fflush(stderr); }
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strncmp(line, "/image ", 7)) {
            if (!r.med) {
                if (mmp_cli_media_load(&med, "chat", o.model, mmproj, r.m, o.n_threads)) { if (!tty) goto done; continue; }
                r.med = &med;
            }
            if (mmp_cli_media_add_image(&med, "chat", line + 7)) { if (!tty) goto done; continue; }
            n_pending++;
            fprintf(stderr, "(image attached to your next message)\n");
            continue;
        }
        if (!strcmp(line, "/reset")) {
            chat_truncate(&c, base);
            if (r.med) mmp_cli_media_truncate(&med, 0);
            n_pending = 0;
            c.n_past = 0;
            mmp_llm_ctx_truncate(r.ctx, 0);
            fprintf(stderr, "(conversation cleared)\n");
            continue;
        }
        if (!*line) continue;
        if (!chat_add_user(&c, &r, line, n_pending)) goto done;
        int n_media_before = r.med ? med.n - n_pending : 0;
        n_pending = 0;
        if (answer(&r, &c)) {
            chat_truncate(&c, c.n - 1); /* drop the message that failed, and its images */
            if (r.med) mmp_cli_media_truncate(&med, n_media_before);
            if (!tty) goto done;
        }
    }
    rc = 0;
done:
    free(line);
    chat_truncate(&c, 0);
    free(c.msgs);
    free(c.owned);
    free(c.past);
    free(r.logits);
    mmp_stop_free(r.stop);
    mmp_sampler_free(r.smp);
    mmp_llm_ctx_free(r.ctx);
    mmp_cli_media_free(&med);
    mmp_llm_free(r.m);
    return rc;
}
