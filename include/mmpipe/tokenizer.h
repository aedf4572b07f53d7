/* mmpipe — tokenizers: text <-> token ids, exactly as llama.cpp tokenizes.
 *
 * Three algorithms, chosen by the model file:
 *  - SPM  (`tokenizer.ggml.model` = "llama"): SentencePiece BPE driven by token scores, spaces
 *         written as U+2581 "▁", an optional leading space (add_space_prefix), byte fallback to
 *         the <0xXX> tokens. Llama 1/2, Mistral, Mixtral, Phi-3, TinyLlama, llama2.c.
 *  - BPE  ("gpt2"): byte-level BPE with merge ranks, after a regex pre-tokenizer chosen by
 *         `tokenizer.ggml.pre` (gpt-2, llama-bpe, qwen2, starcoder, falcon, deepseek-*, ...:
 *         mmp_tokenizer_pre_type_name lists them all).
 *  - WPM  ("bert"): WordPiece with BERT normalisation (lower case, accents stripped).
 *
 * Special tokens (control, user-defined and unknown tokens) are cut out of the text before
 * pre-tokenizing; control and unknown tokens only when `parse_special` is set, user-defined
 * ones always (as llama.cpp and HF tokenizers do).
 *
 * Threads: a tokenizer is read-only after creation; encode/decode may run concurrently. */
#ifndef MMPIPE_TOKENIZER_H
#define MMPIPE_TOKENIZER_H

#include "mmpipe/base.h"
#include "mmpipe/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t mmp_token;
#define MMP_TOKEN_NULL (-1)

typedef struct mmp_tokenizer mmp_tokenizer;

enum mmp_tokenizer_kind {
    MMP_TOKENIZER_SPM = 0,
    MMP_TOKENIZER_BPE = 1,
    MMP_TOKENIZER_WPM = 2,
    MMP_TOKENIZER_KIND_COUNT = 3
};

/* Per-token attributes (bit flags, values as llama.cpp's llama_token_attr). The GGUF
 * `tokenizer.ggml.token_type` values map as 1 normal, 2 unknown, 3 control, 4 user-defined,
 * 5 unused, 6 byte. */
enum mmp_token_attr {
    MMP_TOKEN_ATTR_UNDEFINED    = 0,
    MMP_TOKEN_ATTR_UNKNOWN      = 1 << 0,
    MMP_TOKEN_ATTR_UNUSED       = 1 << 1,
    MMP_TOKEN_ATTR_NORMAL       = 1 << 2,
    MMP_TOKEN_ATTR_CONTROL      = 1 << 3,
    MMP_TOKEN_ATTR_USER_DEFINED = 1 << 4,
    MMP_TOKEN_ATTR_BYTE         = 1 << 5,
    MMP_TOKEN_ATTR_NORMALIZED   = 1 << 6,
    MMP_TOKEN_ATTR_LSTRIP       = 1 << 7,
    MMP_TOKEN_ATTR_RSTRIP       = 1 << 8,
    MMP_TOKEN_ATTR_SINGLE_WORD  = 1 << 9,
};

/* ---- creation ---- */

/* From the `tokenizer.ggml.*` metadata of an open GGUF file. The tokenizer copies what it
 * needs: the reader may be freed afterwards. NULL + mmp_last_error() (naming the file, the key
 * and the value) on missing keys, wrong types, ids out of range, duplicate tokens, unknown
 * model or pre-tokenizer. */
MMP_API mmp_tokenizer *mmp_tokenizer_from_gguf(const mmp_gguf *g);
/* Same, opening the file. */
MMP_API mmp_tokenizer *mmp_tokenizer_load_gguf(const char *path);

/* From a Hugging Face tokenizer.json (+ optional tokenizer_config.json, may be NULL).
 * Supported shapes: byte-level BPE (ByteLevel pre-tokenizer, optionally after a Split regex:
 * known regexes map to llama.cpp's pre-tokenizer types, others run as written with PCRE2),
 * Llama/Mistral-style BPE with byte_fallback and a "▁" normaliser or Metaspace pre-tokenizer
 * (encoded as SentencePiece would: merges by rank), and WordPiece. Unigram models are not
 * supported (MMP_ERR_UNSUPPORTED). */
MMP_API mmp_tokenizer *mmp_tokenizer_from_hf(const char *tokenizer_json, const char *tokenizer_config_json);

/* From a llama2.c `tokenizer.bin`: i32 max_token_length, then per token f32 score, i32 length,
 * bytes. The token count is not in the file: pass the model's vocab_size, or 0 to read tokens
 * until the end of the file. Pieces are converted to the SentencePiece form llama.cpp uses
 * (' ' -> "▁", "\n<s>\n" -> "<s>", ...), so the result is an SPM tokenizer with bos 1, eos 2,
 * unk 0, add_bos. */
MMP_API mmp_tokenizer *mmp_tokenizer_from_llama2c(const char *path, int32_t vocab_size);

/* NULL is a no-op. */
MMP_API void mmp_tokenizer_free(mmp_tokenizer *t);

/* ---- properties ---- */
MMP_API enum mmp_tokenizer_kind mmp_tokenizer_kind(const mmp_tokenizer *t);
MMP_API const char *mmp_tokenizer_model_name(const mmp_tokenizer *t); /* "llama", "gpt2", "bert" */
MMP_API const char *mmp_tokenizer_pre_name(const mmp_tokenizer *t);   /* tokenizer.ggml.pre or "" */
MMP_API int32_t mmp_tokenizer_n_vocab(const mmp_tokenizer *t);
MMP_API int32_t mmp_tokenizer_n_merges(const mmp_tokenizer *t);

/* Special ids, MMP_TOKEN_NULL when the vocab has none. */
MMP_API mmp_token mmp_tokenizer_bos(const mmp_tokenizer *t);
MMP_API mmp_token mmp_tokenizer_eos(const mmp_tokenizer *t);
MMP_API mmp_token mmp_tokenizer_eot(const mmp_tokenizer *t);
MMP_API mmp_token mmp_tokenizer_unk(const mmp_tokenizer *t);
MMP_API mmp_token mmp_tokenizer_sep(const mmp_tokenizer *t);
MMP_API mmp_token mmp_tokenizer_pad(const mmp_tokenizer *t);
MMP_API mmp_token mmp_tokenizer_nl(const mmp_tokenizer *t);
MMP_API bool mmp_tokenizer_add_bos(const mmp_tokenizer *t);
MMP_API bool mmp_tokenizer_add_eos(const mmp_tokenizer *t);
/* End of generation: eos, eot, eom and the end-of-turn tokens llama.cpp recognises by text. */
MMP_API bool mmp_tokenizer_is_eog(const mmp_tokenizer *t, mmp_token id);

/* Vocab entries. Out-of-range ids give NULL / 0 / MMP_TOKEN_ATTR_UNDEFINED. The text is the
 * raw vocab string (e.g. "▁the", "Ġthe", "<0x0A>"), borrowed for the tokenizer's lifetime. */
MMP_API const char *mmp_tokenizer_token_text(const mmp_tokenizer *t, mmp_token id, size_t *len);
MMP_API float mmp_tokenizer_token_score(const mmp_tokenizer *t, mmp_token id);
MMP_API uint32_t mmp_tokenizer_token_attr(const mmp_tokenizer *t, mmp_token id);
/* The id of an exact vocab string, or MMP_TOKEN_NULL. */
MMP_API mmp_token mmp_tokenizer_find(const mmp_tokenizer *t, const char *text, size_t len);

/* ---- encode / decode ---- */

/* Tokenize len bytes of text (need not be NUL-terminated; invalid UTF-8 is read as llama.cpp
 * reads it: each bad byte becomes U+FFFD). add_special: add BOS/EOS (and BERT's SEP) as the
 * model says; parse_special: also match control tokens such as "<|im_end|>" in the text.
 * *out gets a malloc'ed array the caller free()s (NULL when *n_out is 0). */
MMP_API enum mmp_status mmp_tokenizer_encode(const mmp_tokenizer *t, const char *text, size_t len,
                                             bool add_special, bool parse_special,
                                             mmp_token **out, size_t *n_out);

/* The text of one token as it appears in decoded output ("▁the" -> " the", "<0x0A>" -> "\n",
 * "Ġthe" -> " the"); control/unknown tokens give "" unless `special`. Writes at most `size`
 * bytes (no NUL) and returns the piece length (which may exceed size: call again with a
 * larger buffer), or a negative mmp_status for a bad id. A byte token yields one raw byte,
 * which may be part of a UTF-8 sequence that the next tokens complete. */
MMP_API int64_t mmp_tokenizer_token_to_piece(const mmp_tokenizer *t, mmp_token id, bool special,
                                             char *buf, size_t size);

/* Detokenize as llama.cpp does: pieces concatenated, the SentencePiece leading space removed,
 * byte tokens reassembled, BPE clean-up of " ," etc. where the model asks for it.
 * remove_special: drop a leading BOS / trailing EOS that add_special would add;
 * unparse_special: render control tokens as their text. *out gets a malloc'ed NUL-terminated
 * string (*len without the NUL, may be NULL); bad ids give MMP_ERR_INVALID_ARG. The bytes are
 * what the tokens encode, which is not always valid UTF-8 (e.g. a cut multi-byte sequence). */
MMP_API enum mmp_status mmp_tokenizer_decode(const mmp_tokenizer *t, const mmp_token *ids, size_t n,
                                             bool remove_special, bool unparse_special,
                                             char **out, size_t *len);

/* The pre-tokenizer types this build knows (`tokenizer.ggml.pre` values), i = 0, 1, ...;
 * NULL past the end. Each string may list several '|'-separated names of one type. */
MMP_API const char *mmp_tokenizer_pre_type_name(int i);

/* ---- CLIP BPE (Stable Diffusion's tokenizer/ folder: vocab.json + merges.txt) ----
 * transformers' CLIPTokenizer without ftfy (core/tok_clip.c says exactly what it does):
 * BERT-style basic cleaning and lower case, the CLIP regex, byte-level BPE with "</w>" word
 * ends. A separate object from mmp_tokenizer because the model differs (end-of-word suffix,
 * its own normaliser, fixed-length padded output). Read-only after creation. */
typedef struct mmp_clip_tokenizer mmp_clip_tokenizer;
/* A tokenizer folder (vocab.json, merges.txt, optional tokenizer_config.json and
 * special_tokens_map.json), or a diffusers pipeline root (uses its tokenizer/ folder). */
MMP_API mmp_clip_tokenizer *mmp_clip_tokenizer_load(const char *path);
/* The files one by one (the last two may be NULL). Special tokens: bos "<|startoftext|>",
 * eos / unk / pad "<|endoftext|>" unless the JSON files name others ("pad_token": "!" for
 * SD 2.x); model_max_length from tokenizer_config.json (77 when absent). */
MMP_API mmp_clip_tokenizer *mmp_clip_tokenizer_from_files(const char *vocab_json, const char *merges_txt,
                                                          const char *tokenizer_config_json,
                                                          const char *special_tokens_map_json);
MMP_API void mmp_clip_tokenizer_free(mmp_clip_tokenizer *t);
MMP_API int32_t mmp_clip_tokenizer_n_vocab(const mmp_clip_tokenizer *t);   /* max id + 1 */
MMP_API int32_t mmp_clip_tokenizer_n_merges(const mmp_clip_tokenizer *t);
MMP_API mmp_token mmp_clip_tokenizer_bos(const mmp_clip_tokenizer *t);
MMP_API mmp_token mmp_clip_tokenizer_eos(const mmp_clip_tokenizer *t);
MMP_API mmp_token mmp_clip_tokenizer_pad(const mmp_clip_tokenizer *t);
MMP_API mmp_token mmp_clip_tokenizer_unk(const mmp_clip_tokenizer *t);
MMP_API int32_t mmp_clip_tokenizer_max_length(const mmp_clip_tokenizer *t); /* model_max_length (77) */
/* Vocab text of an id (e.g. "photo</w>"), NULL for ids not in vocab.json; borrowed. */
MMP_API const char *mmp_clip_tokenizer_token_text(const mmp_clip_tokenizer *t, mmp_token id);
MMP_API mmp_token mmp_clip_tokenizer_find(const mmp_clip_tokenizer *t, const char *text);
/* Token ids of text without bos/eos and without truncation; *out malloc'ed (caller frees). */
MMP_API enum mmp_status mmp_clip_tokenizer_encode(const mmp_clip_tokenizer *t, const char *text, size_t len,
                                                  mmp_token **out, size_t *n_out);
/* What a diffusers pipeline feeds the text encoder: [bos, ids truncated to max_length - 2,
 * eos, pad, pad, ...] in out[max_length] (max_length 0 = model_max_length). *n_used (may be
 * NULL) gets the count before the padding. */
MMP_API enum mmp_status mmp_clip_tokenizer_encode_padded(const mmp_clip_tokenizer *t, const char *text, size_t len,
                                                         int32_t max_length, mmp_token *out, int32_t *n_used);

#ifdef __cplusplus
}
#endif
#endif
