/* mmpipe — any-to-any turns (NExT-GPT / GILL style): text (and image / audio) in, text and an
 * image out.
 *
 *   prompt ──► LLM ──► generated tokens ... [IMG0] [IMG1] ... [IMGn-1] ... (text)
 *                          │ last-layer hidden states AFTER the final norm, at the positions
 *                          │ where the signal tokens are fed in            [n_signal, n_embd]
 *                          ▼
 *                output projector ──► conditioning [T, D]
 *                          ▼
 *   latents_init ──► UNet + scheduler, CFG against `uncond` (zeros unless given) ──► latents
 *                          ▼
 *                         VAE decode ──► image [3, H, W] in [0, 1]
 *
 * Signal tokens: n_signal ids [IMG0]..[IMGn-1], given by the caller or looked up in the LLM's
 * tokenizer by their text "[IMG0]", "[IMG1]", ... An image is made for the first complete group
 * of a turn: every signal id seen at least once in the response (its first occurrence is the one
 * used). With complete_signal (the default, as GILL and NExT-GPT decode), once the model emits
 * [IMG0] the remaining [IMG1]..[IMGn-1] are forced right after it. Signal tokens are left out of
 * the returned text. A group in the prompt is not used: to condition on a given group (tests,
 * teacher forcing), pass it as the response prefix (`forced`).
 *
 * Model vs session: an mmp_a2a is one session: the LLM's KV cache, and the UNet and VAE, which
 * keep per-call scratch. Use one per thread. The LLM and the output projector are read-only:
 * sessions created with one model store (mmp_a2a_params.store, store.h) share them (each is
 * loaded once, from one mapping of its file; pipelines on the same store share them too);
 * without a store each session loads its own. The UNet and VAE are built per session (never
 * shared between sessions), with a store on its one mapping of their files. Turns continue the conversation held in the KV cache;
 * mmp_a2a_reset() starts a new one. */
#ifndef MMPIPE_ANYTOANY_H
#define MMPIPE_ANYTOANY_H

#include "mmpipe/base.h"
#include "mmpipe/diffusion.h"
#include "mmpipe/llm.h"
#include "mmpipe/mtmd.h"
#include "mmpipe/projector.h"
#include "mmpipe/sampler.h"
#include "mmpipe/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_A2A_MAX_SIGNAL 64

typedef struct mmp_a2a_params {
    const char *llm_path;         /* GGUF file or HF folder of the backbone */
    const char *projector_path;   /* output projector weights (file or folder, projector.h) */
    const char *unet_path;        /* diffusers unet/ folder */
    const char *vae_path;         /* diffusers vae/ folder, or a TAESD file */
    int32_t n_threads;            /* <= 0: 1 */
    int32_t n_ctx;                /* LLM context; 0: the model's (capped at 4096) */
    /* Signal tokens: n_signal ids (1..MMP_A2A_MAX_SIGNAL). signal_ids NULL: looked up as
     * "[IMG0]".."[IMG<n_signal-1>]" in the LLM's tokenizer; n_signal 0 with signal_ids NULL:
     * as many "[IMGk]" as the vocabulary has, k = 0, 1, ... The array is copied. */
    int32_t n_signal;
    const int32_t *signal_ids;
    mmp_outproj_params proj;      /* heads etc. when no config.json sits next to the projector */
    bool add_input_embeds;        /* add the signal tokens' input embeddings to the hidden states
                                   * before the projector (off: the golden and NExT-GPT's decoder
                                   * side use the hidden states alone) */
    /* Model store (store.h) the LLM and the output projector come from, shared with the other
     * sessions and pipelines on it (the UNet and VAE are built per session on its mappings of
     * their files); it must outlive the session. NULL: everything loaded privately. */
    mmp_store *store;
    /* new fields only at the end */
} mmp_a2a_params;
MMP_API mmp_a2a_params mmp_a2a_params_default(void);

typedef struct mmp_a2a mmp_a2a;
/* Load the four models (the LLM and projector through p->store when given) and check that they fit: projector input = LLM hidden size, projector
 * output = UNet cross_attention_dim, UNet in channels = VAE latent channels (errors name both
 * numbers and both files), signal ids inside the vocabulary. NULL + mmp_last_error(). */
MMP_API mmp_a2a *mmp_a2a_load(const mmp_a2a_params *p);
MMP_API void mmp_a2a_free(mmp_a2a *a);
/* Borrowed, live as long as a. */
MMP_API const mmp_llm *mmp_a2a_llm(const mmp_a2a *a);
MMP_API mmp_unet *mmp_a2a_unet(mmp_a2a *a);
MMP_API mmp_vae *mmp_a2a_vae(mmp_a2a *a);
MMP_API int32_t mmp_a2a_n_signal(const mmp_a2a *a);
MMP_API const int32_t *mmp_a2a_signal_ids(const mmp_a2a *a);
/* Forget the conversation (clear the KV cache). */
MMP_API enum mmp_status mmp_a2a_reset(mmp_a2a *a);

/* Called with each response token as it is decided (forced ones included) and its text piece
 * (empty for signal tokens and tokens without text). Return false to stop generating. */
typedef bool (*mmp_a2a_token_fn)(int32_t token, const char *piece, size_t len, void *user);

typedef struct mmp_a2a_turn_params {
    /* text */
    int32_t max_new_tokens;       /* response length limit, forced tokens included (256) */
    mmp_sampler_params sampling;  /* greedy by default */
    const int32_t *forced;        /* response prefix decided in advance (may hold signal ids) */
    int32_t n_forced;
    bool complete_signal;         /* after [IMG0], force the rest of the group (true) */
    bool stop_after_image;        /* stop the response when the group is complete (false) */
    int32_t eos_id;               /* extra end-of-generation id (-1: none; the tokenizer's EOG
                                   * tokens always end it) */
    mmp_a2a_token_fn on_token;    /* optional streaming */
    /* image */
    enum mmp_sched_kind sampler;  /* MMP_SCHED_DDIM */
    const mmp_sched_params *sched;/* optional full scheduler parameters (sampler is then ignored) */
    int32_t steps;                /* 1..1000 (default 6, the golden's; real models want 25..50) */
    float cfg_scale;              /* 7.5; <= 1: no guidance */
    int32_t width, height;        /* pixels, multiples of VAE scale * UNet size multiple (512) */
    const float *latents_init;    /* [C, H/s, W/s] standard normal; NULL: mmp_randn(seed) */
    uint64_t seed;
    const float *uncond;          /* [T, D] unconditional context; NULL: zeros (NExT-GPT) */
    /* callbacks: progress gets ("tokens", n, max) while generating and ("steps", i, steps)
     * while denoising; abort is polled between tokens and ops */
    mmp_progress_fn progress;
    mmp_abort_fn abort_cb;
    void *cb_user;
    /* new fields only at the end */
} mmp_a2a_turn_params;
MMP_API mmp_a2a_turn_params mmp_a2a_turn_params_default(void);

/* What a turn returns. Every pointer is malloc'ed and owned by the result: free it with
 * mmp_a2a_result_free. Image fields are NULL / 0 when no complete signal group appeared. */
typedef struct mmp_a2a_result {
    char *text;                   /* NUL-terminated response text (signal tokens left out; "" when
                                   * the model has no tokenizer) */
    int32_t *tokens;              /* [n_tokens] the response ids, EOS excluded */
    int32_t n_tokens;
    bool has_image;
    int32_t n_signal, n_embd;
    float *signal_hidden;         /* [n_signal, n_embd] */
    int32_t t_ctx, d_ctx;
    float *conditioning;          /* [t_ctx, d_ctx] output projector */
    int32_t lat_c, lat_h, lat_w;
    float *latents;               /* [lat_c, lat_h, lat_w] final latents (UNet space) */
    int32_t width, height;
    float *image01;               /* [3, height, width] in [0, 1] */
} mmp_a2a_result;
MMP_API void mmp_a2a_result_free(mmp_a2a_result *r);   /* frees the members, zeroes *r */

/* One turn from prompt token ids appended to the conversation. *out is filled (zeroed first);
 * on error it is left empty and the message names the step (LLM, projector, sampling); the KV
 * cache may then hold part of the turn: call mmp_a2a_reset before the next one. The prompt and
 * the response must fit the context (MMP_ERR_LIMIT for the prompt; the response is cut at the
 * end of the context). */
MMP_API enum mmp_status mmp_a2a_turn(mmp_a2a *a, const int32_t *prompt, int32_t n_prompt,
                                     const mmp_a2a_turn_params *p, mmp_a2a_result *out);
/* The same from a multimodal prompt (mtmd.h: text with image / audio embeddings spliced in). */
MMP_API enum mmp_status mmp_a2a_turn_mm(mmp_a2a *a, const mmp_mm_prompt *prompt,
                                        const mmp_a2a_turn_params *p, mmp_a2a_result *out);

/* The image half alone: signal hidden states [n_signal, n_embd] -> conditioning -> denoising
 * -> image, with the turn parameters' image fields. Fills the image fields of *out (the others
 * stay zero). */
MMP_API enum mmp_status mmp_a2a_generate_image(mmp_a2a *a, const float *signal_hidden, int32_t n_signal,
                                               const mmp_a2a_turn_params *p, mmp_a2a_result *out);

#ifdef __cplusplus
}
#endif
#endif
