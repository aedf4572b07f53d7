/* mmpipe — chat templates: turning a list of {role, content} messages into the prompt text a
 * chat model was trained on.
 *
 * Models ship their template as Jinja text (GGUF `tokenizer.chat_template`, HF
 * tokenizer_config.json `chat_template`). mmpipe does not run Jinja: like llama.cpp
 * (llm_chat_detect_template) it recognises the common templates by marker strings and renders
 * them with C code that reproduces the Jinja output exactly (including the bos/eos token text
 * the Jinja writes, and the role checks it raises errors for):
 *
 *   name     recognised by                          looks like
 *   chatml   "<|im_start|>"                          <|im_start|>user\nHi<|im_end|>\n
 *   llama2   "[INST]" and "<<SYS>>"                  <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] A </s>
 *   mistral  "[INST]" without "<<SYS>>"              <s>[INST] Hi [/INST]A</s>
 *   llama3   "<|start_header_id|>", "<|end_header_id|>"  <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
 *   phi3     "<|assistant|>" and "<|end|>"           <|user|>\nHi<|end|>\n<|assistant|>\n
 *   gemma    "<start_of_turn>"                       <bos><start_of_turn>user\nHi<end_of_turn>\n
 *   zephyr   "<|user|>" (no "<|end|>")               <|user|>\nHi</s>\n<|assistant|>\n
 *
 * The rendered text contains special-token text (e.g. "<|im_end|>", "<s>"): tokenize it with
 * parse_special, and add BOS only when the text does not already start with it. */
#ifndef MMPIPE_CHAT_H
#define MMPIPE_CHAT_H

#include "mmpipe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mmp_chat_template {
    MMP_CHAT_CHATML  = 0,
    MMP_CHAT_LLAMA2  = 1,
    MMP_CHAT_MISTRAL = 2,
    MMP_CHAT_LLAMA3  = 3,
    MMP_CHAT_PHI3    = 4,
    MMP_CHAT_GEMMA   = 5,
    MMP_CHAT_ZEPHYR  = 6,
    MMP_CHAT_TEMPLATE_COUNT = 7
};

typedef struct mmp_chat_msg {
    const char *role;      /* "system", "user", "assistant" */
    const char *content;
} mmp_chat_msg;

/* "chatml", "llama2", ... ("unknown" for other values). */
MMP_API const char *mmp_chat_template_name(int t);
/* All names, comma-separated: "chatml, llama2, mistral, llama3, phi3, gemma, zephyr". */
MMP_API const char *mmp_chat_template_names(void);
/* By name (case-insensitive); -1 if none (no error set). */
MMP_API int mmp_chat_template_from_name(const char *name);

/* Recognise a Jinja template text (or a bare template name). MMP_ERR_UNSUPPORTED with a
 * message that lists the known names when nothing matches. */
MMP_API enum mmp_status mmp_chat_detect(const char *jinja, enum mmp_chat_template *out);

/* The template to use: `override_name` if given (MMP_ERR_NOT_FOUND listing the names if it is
 * not one), else the detected model template (MMP_ERR_NOT_FOUND if the model has none, saying
 * to pass --chat-template NAME). */
MMP_API enum mmp_status mmp_chat_resolve(const char *override_name, const char *model_template,
                                         enum mmp_chat_template *out);

/* Render messages. bos_token / eos_token: the vocabulary's BOS/EOS text as the Jinja gets them
 * (e.g. "<s>", "</s>"); NULL gives "". add_generation_prompt: end with the assistant header.
 * MMP_ERR_INVALID_ARG (naming the message index and role) where the Jinja raises: roles not
 * alternating user/assistant (llama2, mistral, gemma), a system message where the template
 * has none (mistral, gemma), an unknown role. *out: malloc'ed, NUL-terminated (caller frees);
 * *len (may be NULL) without the NUL. */
MMP_API enum mmp_status mmp_chat_apply(enum mmp_chat_template t, const mmp_chat_msg *msgs, size_t n,
                                       bool add_generation_prompt, const char *bos_token,
                                       const char *eos_token, char **out, size_t *len);

/* The text that ends an assistant turn in this template ("<|im_end|>", "</s>", "<|eot_id|>",
 * "<|end|>", "<end_of_turn>"), usable as a stop string; `eos_token` is returned where the
 * template ends turns with eos_token. */
MMP_API const char *mmp_chat_template_end_of_turn(enum mmp_chat_template t, const char *eos_token);

#ifdef __cplusplus
}
#endif
#endif
