/* mmpipe chat: a conversation with a chat model, rendered with its chat template, run through
 * the stock pipelines "chat" (and "image-embed" for attached images) by samples/cli_session.c.
 * Each turn renders the whole conversation; backbone.generate keeps the KV cache of the prefix
 * that did not change and decodes only the new rows. */
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
        "It runs the stock pipelines 'chat' (and 'image-embed' for pictures): see\n"
        "'mmpipe pipeline show chat'; the KV cache of earlier turns is reused.\n"
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

/* A user message with n_images newly attached images: one "<image>" marker per image in
 * front of the text unless the text places them itself. */
static bool chat_add_user(chat *c, const char *text, int n_images) {
    if (n_images <= 0 || mmp_cli_count_markers(text) > 0) return chat_add(c, "user", text);
    size_t tl = strlen(text);
    char *s = malloc((size_t)n_images * 8 + tl + 2);
    if (!s) return false;
    s[0] = '\0';
    for (int i = 0; i < n_images; i++) strcat(s, "<image>");
    strcat(s, "\n");
    strcat(s, text);
    bool ok = chat_add(c, "user", s);
    free(s);
    return ok;
}

/* Render the conversation, generate the answer through the pipeline (printed as it comes) and
 * append it to the conversation. */
static int answer(mmp_cli_session *ss, chat *c) {
    char *text = mmp_cli_session_render(ss, c->msgs, c->n);
    if (!text) return 1;
    char *ans = NULL;
    int rc = mmp_cli_session_answer(ss, text, &ans);
    free(text);
    if (rc) return rc;
    bool ok = chat_add(c, "assistant", ans);
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
    mmp_cli_session ss;
    int n_pending = 0;      /* images attached to the next message */
    char *line = NULL;
    size_t line_cap = 0;
    int orc = mmp_cli_session_open(&ss, "chat", &o, tmpl_name, false, mmproj);
    if (orc) { rc = orc; goto done; }
    for (int i = 0; i < n_images; i++)
        if (mmp_cli_session_add_media(&ss, 0, images[i], 0)) goto done;
    n_pending = n_images;
    if (system && !chat_add(&c, "system", system)) goto done;
    size_t base = c.n;
    fprintf(stderr, "mmpipe chat: template %s%s\n", ss.raw ? "none" : mmp_chat_template_name(ss.tmpl),
            prompt ? "" : "; /reset to start over, /exit to quit");
    if (prompt) {
        if (!chat_add_user(&c, prompt, n_pending)) goto done;
        rc = answer(&ss, &c);
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
            if (mmp_cli_session_add_media(&ss, 0, line + 7, 0)) { if (!tty) goto done; continue; }
            n_pending++;
            fprintf(stderr, "(image attached to your next message)\n");
            continue;
        }
        if (!strcmp(line, "/reset")) {
            chat_truncate(&c, base);
            mmp_cli_session_truncate_media(&ss, 0);
            n_pending = 0;
            fprintf(stderr, "(conversation cleared)\n");
            continue;
        }
        if (!*line) continue;
        if (!chat_add_user(&c, line, n_pending)) goto done;
        int n_media_before = mmp_cli_session_n_media(&ss) - n_pending;
        n_pending = 0;
        if (answer(&ss, &c)) {
            chat_truncate(&c, c.n - 1); /* drop the message that failed, and its images */
            mmp_cli_session_truncate_media(&ss, n_media_before);
            if (!tty) goto done;
        }
    }
    rc = 0;
done:
    free(line);
    chat_truncate(&c, 0);
    free(c.msgs);
    free(c.owned);
    mmp_cli_session_close(&ss);
    return rc;
}
