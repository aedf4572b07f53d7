/* mmpipe — multimodal prompts: text with image / audio markers -> one sequence of embeddings
 * for the LLM backbone (llama.cpp calls this "mtmd").
 *
 *   "USER: <image>\nWhat is this? ASSISTANT:"   +   image embeddings [576, 4096]
 *        │ tokenize the text, each marker expands to the N rows of its media item
 *        ▼
 *   positions: [BOS] [USER] [:] [img 0] ... [img 575] [\n] [What] ...     (n = text + 576)
 *        │ text rows = token embeddings (mmp_llm_embed_tokens), media rows = projector output
 *        ▼
 *   mmp_llm_decode(embd [n, n_embd])  -> logits / KV cache, then generate as usual
 *
 * This is what the Hugging Face models do: LlavaForConditionalGeneration and
 * Qwen2AudioForConditionalGeneration get input_ids in which the processor has already
 * repeated the placeholder token (LLaVA image_token_index, Qwen2-Audio audio_token_index
 * "<|AUDIO|>") once per feature row; the model embeds the ids and overwrites the k-th
 * placeholder position with the k-th feature row (masked_scatter, in order, per kind).
 *
 * Two levels:
 *  1. Prompt assembly (mmp_mm_prompt_*): needs only the LLM and its tokenizer; the media come
 *     in as embeddings already in the LLM's space (mmp_media). Used with any encoder.
 *  2. The media model (mmp_mm_*): loads the encoder + projector that go with an LLM (from
 *     an HF LLaVA / Qwen2-Audio folder, or a separate --mmproj file or folder), checks that
 *     the widths fit, and turns an image / audio samples into mmp_media embeddings.
 *
 * Markers in text (case-sensitive, matched longest first):
 *   "<__media__>"   llama.cpp's marker: the next media item, image or audio
 *   "<image>"       the next item, which must be an image
 *   "<audio>"       the next item, which must be audio
 *   the text of the model's own placeholder token when its vocabulary has one (LLaVA's
 *   "<image>", Qwen2-Audio's "<|AUDIO|>"), for its kind.
 * Markers take the media items in the order given; the number of markers must equal the
 * number of items (the error names both counts).
 *
 * How a marker expands (mmp_mm_prompt_from_text):
 *  - expand mode, when every marker's kind has a placeholder token in the vocabulary (HF
 *    models): the marker is replaced by begin + N x placeholder text + end (begin/end: the
 *    model's wrapping, e.g. Qwen2-Audio's "<|audio_bos|>" / "<|audio_eos|>", written only for
 *    the generic markers, not when the text already spells the placeholder itself), and the
 *    whole text is tokenized once with special tokens parsed, exactly as the HF processors
 *    expand then tokenize. Placeholder ids are then replaced by media rows in order.
 *  - split mode otherwise (e.g. a GGUF LLM with an mmproj file, no placeholder token): the
 *    text between markers is tokenized piece by piece (BOS only on the first piece, special
 *    tokens parsed) and the media rows are put between the pieces, as llama.cpp's mtmd does.
 *
 * Threads: a prompt is read-only after creation. An mmp_mm is NOT safe to use from several
 * threads at once (the encoders keep scratch); load one per thread. */
#ifndef MMPIPE_MTMD_H
#define MMPIPE_MTMD_H

#include "mmpipe/base.h"
#include "mmpipe/image.h"
#include "mmpipe/llm.h"
#include "mmpipe/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mmp_media_kind {
    MMP_MEDIA_IMAGE = 0,
    MMP_MEDIA_AUDIO = 1,
    MMP_MEDIA_KIND_COUNT = 2
};
/* "image", "audio" ("unknown" for other values). */
MMP_API const char *mmp_media_kind_name(int kind);

/* One media item already projected into the LLM's embedding space. The rows are copied by
 * the prompt builders: the caller keeps ownership of `embd`. */
typedef struct mmp_media {
    enum mmp_media_kind kind;
    int32_t n_tokens;         /* rows */
    int32_t n_embd;           /* must equal the LLM's hidden size */
    const float *embd;        /* [n_tokens, n_embd] */
} mmp_media;

/* What a model calls its media placeholders. */
typedef struct mmp_mm_markers {
    int32_t image_token;      /* placeholder id for image rows (LLaVA image_token_index); MMP_TOKEN_NULL: none */
    int32_t audio_token;      /* placeholder id for audio rows (Qwen2-Audio audio_token_index); MMP_TOKEN_NULL: none */
    const char *image_begin, *image_end;   /* text around an expanded image; NULL: nothing */
    const char *audio_begin, *audio_end;   /* text around expanded audio (Qwen2-Audio: "<|audio_bos|>", "<|audio_eos|>") */
    /* new fields only at the end */
} mmp_mm_markers;
/* No placeholder ids, no wrapping (pure split mode). */
MMP_API mmp_mm_markers mmp_mm_markers_default(void);

/* ------------------------------------------------------------------ prompt assembly ---- */

typedef struct mmp_mm_prompt mmp_mm_prompt;

/* From token ids as an HF processor makes them: every id equal to markers->image_token takes
 * the next row of the image items (in the order given, rows concatenated), likewise for
 * audio. The number of placeholder ids of a kind must equal the rows of that kind's items
 * (MMP_ERR_SHAPE naming both). Items must all have the same n_embd. NULL + message. */
MMP_API mmp_mm_prompt *mmp_mm_prompt_from_ids(const int32_t *ids, int32_t n, const mmp_mm_markers *markers,
                                              const mmp_media *media, int n_media);

/* From text with markers (see the top of this header). add_special: let the tokenizer add
 * BOS (and EOS) as the model says, on the first piece only. NULL + message: marker/item count
 * or kind mismatch, tokenizer errors, an empty result. */
MMP_API mmp_mm_prompt *mmp_mm_prompt_from_text(const mmp_tokenizer *tok, const char *text, size_t len, bool add_special,
                                               const mmp_mm_markers *markers, const mmp_media *media, int n_media);

/* NULL is a no-op. */
MMP_API void mmp_mm_prompt_free(mmp_mm_prompt *p);

/* Positions (text tokens + media rows). */
MMP_API int32_t mmp_mm_prompt_n_pos(const mmp_mm_prompt *p);
/* Media rows among them. */
MMP_API int32_t mmp_mm_prompt_n_media_pos(const mmp_mm_prompt *p);
/* Width of the media rows (0 when the prompt has no media). */
MMP_API int32_t mmp_mm_prompt_n_embd(const mmp_mm_prompt *p);
/* The id at each position [n_pos]: the text tokens, and at media positions the placeholder id
 * (expand mode / from_ids) or MMP_TOKEN_NULL (split mode). Borrowed, lives as long as p.
 * Handy for KV-cache prefix reuse when media are only ever appended. */
MMP_API const int32_t *mmp_mm_prompt_ids(const mmp_mm_prompt *p);
/* True where position i holds a media row. */
MMP_API bool mmp_mm_prompt_is_media(const mmp_mm_prompt *p, int32_t i);

/* Embeddings of positions [from, from + n): out [n, n_embd of the LLM]. Text rows are the
 * model's token embeddings, media rows are copied. MMP_ERR_SHAPE if the media width is not
 * the LLM's hidden size (naming both), MMP_ERR_INVALID_ARG for a range outside the prompt or
 * a token id outside the vocabulary. */
MMP_API enum mmp_status mmp_mm_prompt_embed(const mmp_mm_prompt *p, const mmp_llm *m, int32_t from, int32_t n,
                                            float *out);

/* Decode positions [from, n_pos) into the context (which must hold exactly `from` positions
 * already: MMP_ERR_INVALID_ARG otherwise), in batches of at most n_batch positions (<= 0:
 * 512) given as embeddings. logits: optional, [n_vocab] for the last position, or
 * [n_pos - from, n_vocab] when logits_all. */
MMP_API enum mmp_status mmp_mm_prompt_decode(mmp_llm_ctx *c, const mmp_llm *m, const mmp_mm_prompt *p, int32_t from,
                                             int32_t n_batch, float *logits, bool logits_all);

/* ------------------------------------------------------------------ the media model ---- */

typedef struct mmp_mm mmp_mm;

typedef struct mmp_mm_params {
    int32_t n_threads;        /* <= 0: 1 */
    mmp_abort_fn abort_cb;    /* optional */
    void *abort_user;
    /* new fields only at the end */
} mmp_mm_params;
MMP_API mmp_mm_params mmp_mm_params_default(void);

/* Load the encoder(s) and projector(s) that feed `llm`:
 *  - mmproj == NULL: from model_path, an HF folder holding the whole model
 *    (LlavaForConditionalGeneration: vision_tower + multi_modal_projector, vision_feature_layer,
 *    vision_feature_select_strategy, image_token_index; Qwen2AudioForConditionalGeneration:
 *    audio_tower + multi_modal_projector, audio_token_index);
 *  - mmproj given: the encoder + projector come from that file or folder (llama.cpp mmproj
 *    GGUF or an HF folder); model_path (may be NULL) is only read for the placeholder ids.
 * The projector's input must be the encoder's width and its output the LLM's hidden size:
 * MMP_ERR_SHAPE naming both widths and both files otherwise. NULL + message; a file with no
 * vision or audio parts is MMP_ERR_NOT_FOUND. llm is borrowed only during the call. */
MMP_API mmp_mm *mmp_mm_load(const char *model_path, const char *mmproj, const mmp_llm *llm, const mmp_mm_params *params);
MMP_API void mmp_mm_free(mmp_mm *mm);

MMP_API bool mmp_mm_has(const mmp_mm *mm, enum mmp_media_kind kind);
/* Width of the embeddings it makes (= the LLM's hidden size). */
MMP_API int32_t mmp_mm_n_embd(const mmp_mm *mm);
/* The model's placeholders (borrowed, lives as long as mm). */
MMP_API const mmp_mm_markers *mmp_mm_get_markers(const mmp_mm *mm);

/* Image -> embeddings: the model's preprocessing, the vision tower's feature layer (class
 * token dropped for LLaVA's "default" strategy), the projector. *out malloc'ed
 * [*n_tok, n_embd] (free()). */
MMP_API enum mmp_status mmp_mm_encode_image(mmp_mm *mm, const mmp_image *img, float **out, int32_t *n_tok);
/* Same from preprocessed pixels [3, height, width] (HF pixel_values[0]). */
MMP_API enum mmp_status mmp_mm_encode_pixels(mmp_mm *mm, const float *pixels, int32_t height, int32_t width,
                                             float **out, int32_t *n_tok);
/* 16 kHz mono samples -> embeddings: log-mel in 30 s windows padded as
 * WhisperFeatureExtractor does (shorter windows, 2 x n_positions frames, for an encoder with
 * fewer than 1500 positions), each window encoded with its padding masked (Qwen2-Audio) and
 * cut to the rows that hold audio, each window projected, the rows concatenated. */
MMP_API enum mmp_status mmp_mm_encode_audio(mmp_mm *mm, const float *samples, int64_t n, float **out, int32_t *n_tok);
/* Same from a log-mel window [n_mels, n_frames] (HF input_features[0]); n_valid frames hold
 * audio (0 = all); only the rows for those frames are kept. */
MMP_API enum mmp_status mmp_mm_encode_mel(mmp_mm *mm, const float *mel, int64_t n_frames, int64_t n_valid,
                                          float **out, int32_t *n_tok);

/* Wall-clock time of the stages of the last encode call (ms; 0 for stages it did not run). */
typedef struct mmp_mm_timings {
    double preprocess_ms;     /* image resize / crop / normalize */
    double mel_ms;            /* log-mel front end */
    double encode_ms;         /* vision tower / audio encoder */
    double project_ms;        /* projector */
} mmp_mm_timings;
MMP_API mmp_mm_timings mmp_mm_get_timings(const mmp_mm *mm);

#ifdef __cplusplus
}
#endif
#endif
