/* Private: helpers shared by the text stage kinds prompt.text (core/stage_prompt_text.c) and
 * backbone.generate (backbone/stage_generate.c). */
#ifndef MMP_STAGE_TEXT_H
#define MMP_STAGE_TEXT_H

#include "mmpipe/stage.h"
#include "mmpipe/mtmd.h"

/* Options are read with mmp__opts_parse (stage-impl.h): "\," is a comma inside a value. */
#define MMP__TEXT_MAX_OPTS 48

/* What the text kinds read from the model file besides the LLM: the chat template text (GGUF
 * tokenizer.chat_template or tokenizer_config.json chat_template; NULL when there is none) and
 * the media placeholders (config.json image_token_index / audio_token_index, Qwen2-Audio's
 * <|audio_bos|> / <|audio_eos|> wrapping), as mmp_mm_load reads them. The file is opened
 * through p->store when there is one. `tok` may be NULL (no wrapping check). */
typedef struct mmp__text_model_info {
    char *chat_template;         /* malloc'ed or NULL */
    mmp_mm_markers markers;
} mmp__text_model_info;
enum mmp_status mmp__text_model_info_read(const mmp_stage_params *p, const char *path, const mmp_tokenizer *tok,
                                          mmp__text_model_info *out);
void mmp__text_model_info_free(mmp__text_model_info *info);

/* Resolve a template option: "auto" (the model's template if it has one: -1 when it has none;
 * an unrecognised model template is an error unless `lenient`), "none" (-1) or a name.
 * *out: the template or -1. */
enum mmp_status mmp__text_template_option(const char *value, const char *model_template, bool lenient, int *out);

/* An array of `n` rows (n >= 0) of `row_bytes / elem size` elements copied from data: [n] for
 * 1-D (row_elems 1), [n, row_elems] for 2-D. n == 0 gives an array whose outermost dim is 0
 * (no data): mmp_array_new refuses 0-sized dims, an empty answer still needs an array. */
mmp_array *mmp__rows_array(enum mmp_type type, int n_dims, int64_t n, int64_t row_elems, const void *data);

#endif
