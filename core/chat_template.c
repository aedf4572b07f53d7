/* Chat templates: detection by marker strings (as llama.cpp's llm_chat_detect_template) and
 * rendering that reproduces each template's Jinja text (quoted above each renderer). */
#include "mmpipe/chat.h"
#include "util.h"

#include <ctype.h>
#include <string.h>

static const char *const k_names[MMP_CHAT_TEMPLATE_COUNT] = {
    "chatml", "llama2", "mistral", "llama3", "phi3", "gemma", "zephyr",
};

const char *mmp_chat_template_name(int t) {
    return (t >= 0 && t < MMP_CHAT_TEMPLATE_COUNT) ? k_names[t] : "unknown";
}

const char *mmp_chat_template_names(void) { return "chatml, llama2, mistral, llama3, phi3, gemma, zephyr"; }

int mmp_chat_template_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < MMP_CHAT_TEMPLATE_COUNT; i++) {
        const char *a = name, *b = k_names[i];
        while (*a && *b && tolower((unsigned char)*a) == *b) { a++; b++; }
        if (!*a && !*b) return i;
    }
    return -1;
}

enum mmp_status mmp_chat_detect(const char *t, enum mmp_chat_template *out) {
    if (!t || !out) return mmp__error(MMP_ERR_INVALID_ARG, "chat template: NULL argument");
    int byname = mmp_chat_template_from_name(t);
    if (byname >= 0) { *out = (enum mmp_chat_template)byname; return MMP_OK; }
#define HAS(s) (strstr(t, s) != NULL)
    /* same order of tests as llama.cpp, restricted to the templates we render */
    if (HAS("<|im_start|>")) *out = MMP_CHAT_CHATML;
    else if (HAS("[INST]")) *out = HAS("<<SYS>>") ? MMP_CHAT_LLAMA2 : MMP_CHAT_MISTRAL;
    else if (HAS("<|assistant|>") && HAS("<|end|>")) *out = MMP_CHAT_PHI3;
    else if (HAS("<|user|>") && HAS("<|assistant|>")) *out = MMP_CHAT_ZEPHYR;
    else if (HAS("<start_of_turn>")) *out = MMP_CHAT_GEMMA;
    else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) *out = MMP_CHAT_LLAMA3;
    else {
        char head[64];
        size_t n = strcspn(t, "\n");
        snprintf(head, sizeof head, "%.*s%s", (int)MMP_MIN(n, (size_t)40), t, n > 40 ? "..." : "");
        return mmp__error(MMP_ERR_UNSUPPORTED, "chat template not recognised (it starts \"%s\"); known templates: %s "
                          "(choose one with --chat-template NAME)", head, mmp_chat_template_names());
    }
#undef HAS
    return MMP_OK;
}

enum mmp_status mmp_chat_resolve(const char *override_name, const char *model_template, enum mmp_chat_template *out) {
    if (!out) return mmp__error(MMP_ERR_INVALID_ARG, "chat template: NULL argument");
    if (override_name) {
        int t = mmp_chat_template_from_name(override_name);
        if (t < 0)
            return mmp__error(MMP_ERR_NOT_FOUND, "unknown chat template '%s'; known templates: %s", override_name,
                              mmp_chat_template_names());
        *out = (enum mmp_chat_template)t;
        return MMP_OK;
    }
    if (!model_template || !*model_template)
        return mmp__error(MMP_ERR_NOT_FOUND, "the model has no chat template (tokenizer.chat_template); choose one with "
                          "--chat-template NAME, one of: %s", mmp_chat_template_names());
    return mmp_chat_detect(model_template, out);
}

const char *mmp_chat_template_end_of_turn(enum mmp_chat_template t, const char *eos) {
    switch (t) {
    case MMP_CHAT_CHATML: return "<|im_end|>";
    case MMP_CHAT_LLAMA3: return "<|eot_id|>";
    case MMP_CHAT_PHI3: return "<|end|>";
    case MMP_CHAT_GEMMA: return "<end_of_turn>";
    case MMP_CHAT_LLAMA2: case MMP_CHAT_MISTRAL: case MMP_CHAT_ZEPHYR: return eos ? eos : "";
    default: return "";
    }
}

/* ---- output buffer ---- */
typedef struct { char *p; size_t n, cap; bool oom; } sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* Jinja's str.strip() / |trim: leading and trailing whitespace (space, \t, \n, \r, \f, \v). */
static void put_trim(sbuf *b, const char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n && isspace((unsigned char)s[i])) i++;
    while (n > i && isspace((unsigned char)s[n - 1])) n--;
    put_n(b, s + i, n - i);
}

static bool is_role(const mmp_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

/* The alternation check of llama2/mistral/gemma:
 * {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception(...) }} */
static enum mmp_status check_alternate(const char *tname, const mmp_chat_msg *m, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (is_role(&m[i], "user") != (i % 2 == 0))
            return mmp__error(MMP_ERR_INVALID_ARG, "chat template %s: message %zu has role '%s': conversation roles must "
                              "alternate user/assistant/user/... (after an optional system message where supported)",
                              tname, i, m[i].role ? m[i].role : "(null)");
    return MMP_OK;
}

enum mmp_status mmp_chat_apply(enum mmp_chat_template t, const mmp_chat_msg *msgs, size_t n, bool add_gen,
                               const char *bos, const char *eos, char **out, size_t *len) {
    if (!out || (n && !msgs)) return mmp__error(MMP_ERR_INVALID_ARG, "chat template: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    if ((int)t < 0 || t >= MMP_CHAT_TEMPLATE_COUNT)
        return mmp__error(MMP_ERR_INVALID_ARG, "chat template: unknown template id %d; known templates: %s", (int)t, mmp_chat_template_names());
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return mmp__error(MMP_ERR_INVALID_ARG, "chat template: message %zu has no role or content", i);
        if (!is_role(&msgs[i], "system") && !is_role(&msgs[i], "user") && !is_role(&msgs[i], "assistant"))
            return mmp__error(MMP_ERR_INVALID_ARG, "chat template %s: message %zu has unknown role '%s' (system, user, assistant)",
                              k_names[t], i, msgs[i].role);
    }
    if (!bos) bos = "";
    if (!eos) eos = "";
    const char *tn = k_names[t];
    sbuf b = { 0 };
    enum mmp_status st = MMP_OK;
    put(&b, ""); /* an empty conversation renders as "" (never NULL) */

    switch (t) {
    case MMP_CHAT_CHATML:
        /* {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']
         * + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %} */
        for (size_t i = 0; i < n; i++) {
            put(&b, "<|im_start|>"); put(&b, msgs[i].role); put(&b, "\n");
            put(&b, msgs[i].content); put(&b, "<|im_end|>\n");
        }
        if (add_gen) put(&b, "<|im_start|>assistant\n");
        break;

    case MMP_CHAT_LLAMA2: {
        /* Llama-2-chat: system message folded into the first user turn:
         * {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message =
         * messages[0]['content'] %}{% else %}...{% set system_message = false %}{% endif %}
         * {% for message in loop_messages %}(alternation check)
         * {% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message +
         * '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}
         * {% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
         * {% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}
         * (no generation prompt: the text already ends with "[/INST]") */
        const char *sys = NULL;
        size_t s0 = 0;
        if (n > 0 && is_role(&msgs[0], "system")) { sys = msgs[0].content; s0 = 1; }
        if ((st = check_alternate(tn, msgs + s0, n - s0))) break;
        for (size_t i = s0; i < n; i++) {
            sbuf c = { 0 };
            put(&c, "");
            if (i == s0 && sys) { put(&c, "<<SYS>>\n"); put(&c, sys); put(&c, "\n<</SYS>>\n\n"); }
            put(&c, msgs[i].content);
            if (c.oom) { free(c.p); b.oom = true; break; }
            if (is_role(&msgs[i], "user")) { put(&b, bos); put(&b, "[INST] "); put_trim(&b, c.p); put(&b, " [/INST]"); }
            else { put(&b, " "); put_trim(&b, c.p); put(&b, " "); put(&b, eos); }
            free(c.p);
        }
        break;
    }

    case MMP_CHAT_MISTRAL:
        /* Mistral-7B-Instruct v0.1/v0.2:
         * {{ bos_token }}{% for message in messages %}(alternation check){% if message['role'] == 'user' %}
         * {{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}
         * {{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are
         * supported!') }}{% endif %}{% endfor %} */
        for (size_t i = 0; i < n; i++)
            if (is_role(&msgs[i], "system")) {
                st = mmp__error(MMP_ERR_INVALID_ARG, "chat template mistral: message %zu is a system message: this template "
                                "supports only user and assistant roles", i);
                break;
            }
        if (st || (st = check_alternate(tn, msgs, n))) break;
        put(&b, bos);
        for (size_t i = 0; i < n; i++) {
            if (is_role(&msgs[i], "user")) { put(&b, "[INST] "); put(&b, msgs[i].content); put(&b, " [/INST]"); }
            else { put(&b, msgs[i].content); put(&b, eos); }
        }
        break;

    case MMP_CHAT_LLAMA3:
        /* Meta-Llama-3-8B-Instruct:
         * {% set loop_messages = messages %}{% for message in loop_messages %}{% set content =
         * '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}
         * {% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}
         * {% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
         * (the |trim filter binds to message['content'] only) */
        for (size_t i = 0; i < n; i++) {
            if (i == 0) put(&b, bos);
            put(&b, "<|start_header_id|>"); put(&b, msgs[i].role); put(&b, "<|end_header_id|>\n\n");
            put_trim(&b, msgs[i].content); put(&b, "<|eot_id|>");
        }
        if (add_gen) put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;

    case MMP_CHAT_PHI3:
        /* Phi-3-mini-4k-instruct:
         * {% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] +
         * '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}
         * {% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}
         * {% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %} */
        for (size_t i = 0; i < n; i++) {
            put(&b, "<|"); put(&b, msgs[i].role); put(&b, "|>\n"); put(&b, msgs[i].content); put(&b, "<|end|>\n");
        }
        put(&b, add_gen ? "<|assistant|>\n" : eos);
        break;

    case MMP_CHAT_GEMMA:
        /* gemma-7b-it:
         * {{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}
         * {% endif %}{% for message in messages %}(alternation check){% if (message['role'] == 'assistant') %}
         * {% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role +
         * '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}
         * {{'<start_of_turn>model\n'}}{% endif %} */
        if (n > 0 && is_role(&msgs[0], "system")) {
            st = mmp__error(MMP_ERR_INVALID_ARG, "chat template gemma: message 0 is a system message: System role not supported");
            break;
        }
        if ((st = check_alternate(tn, msgs, n))) break;
        put(&b, bos);
        for (size_t i = 0; i < n; i++) {
            put(&b, "<start_of_turn>"); put(&b, is_role(&msgs[i], "assistant") ? "model" : msgs[i].role); put(&b, "\n");
            put_trim(&b, msgs[i].content); put(&b, "<end_of_turn>\n");
        }
        if (add_gen) put(&b, "<start_of_turn>model\n");
        break;

    case MMP_CHAT_ZEPHYR:
        /* zephyr-7b-beta (rendered with trim_blocks: the newline after each {{ }} line stays):
         * {% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] +
         * eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n
         * {% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n
         * {% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %} */
        for (size_t i = 0; i < n; i++) {
            put(&b, "<|"); put(&b, msgs[i].role); put(&b, "|>\n"); put(&b, msgs[i].content); put(&b, eos); put(&b, "\n");
        }
        if (add_gen && n > 0) put(&b, "<|assistant|>\n");
        break;

    default:
        st = mmp__error(MMP_ERR_INTERNAL, "chat template %d has no renderer", (int)t);
    }
    if (!st && b.oom) st = mmp__error(MMP_ERR_NOMEM, "chat template: out of memory");
    if (st) { free(b.p); return st; }
    *out = b.p;
    if (len) *len = b.n;
    return MMP_OK;
}
