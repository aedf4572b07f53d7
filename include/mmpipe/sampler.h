/* mmpipe — choosing the next token from logits, and deciding when generation stops.
 *
 * Sampler: the logits of one position [n_vocab] go through, in this order (the order of
 * Hugging Face transformers' logits processors):
 *   1. repetition penalty on the ids seen in the last `repeat_last_n` accepted tokens
 *      (each distinct id once, CTRL rule: a logit > 0 is divided by the penalty, else
 *      multiplied — so the token always becomes less likely),
 *   2. temperature (logits / T); T <= 0 means greedy: the arg-max is returned, ties go to the
 *      lowest id, and no random number is drawn,
 *   3. top-k (keep the k largest; ties at the border broken by the lower id),
 *   4. top-p (keep the smallest prefix of the sorted candidates whose probability mass
 *      reaches p; the first candidate is always kept),
 *   5. min-p (drop candidates whose probability is below min_p × the largest probability),
 *   6. a draw from the softmax of what is left, with the sampler's own PRNG
 *      (xoshiro256** seeded through splitmix64 from `seed`): the same seed, logits and
 *      accepted tokens give the same ids on every machine (no rand(), no global state).
 *
 * Stop conditions (mmp_stop): end-of-generation ids, stop strings matched on the decoded text
 * (also when a stop string is split across several tokens), and a token budget. The stopper
 * holds back the text that could still become a stop string, so that a streaming caller never
 * prints part of a stop string.
 *
 * Threads: one sampler / stopper per generating thread. */
#ifndef MMPIPE_SAMPLER_H
#define MMPIPE_SAMPLER_H

#include "mmpipe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmp_sampler_params {
    float temperature;       /* <= 0: greedy (default 0.8) */
    int32_t top_k;           /* <= 0 or >= n_vocab: off (default 40) */
    float top_p;             /* >= 1: off (default 0.95) */
    float min_p;             /* <= 0: off (default 0.05) */
    float repeat_penalty;    /* 1: off (default 1.0); must be > 0 */
    int32_t repeat_last_n;   /* window of accepted tokens the penalty looks at (default 64;
                              * 0: off; -1: every accepted token up to the window capacity 4096) */
    uint64_t seed;           /* PRNG seed (default 0x5eed) */
    /* new fields only at the end */
} mmp_sampler_params;

MMP_API mmp_sampler_params mmp_sampler_params_default(void);
/* Greedy: temperature 0, no penalty (the other fields as default). */
MMP_API mmp_sampler_params mmp_sampler_params_greedy(void);

typedef struct mmp_sampler mmp_sampler;

/* A sampler for logits of n_vocab entries. NULL + mmp_last_error() for n_vocab < 1, a NaN
 * parameter, repeat_penalty <= 0, top_p <= 0, repeat_last_n < -1. */
MMP_API mmp_sampler *mmp_sampler_new(int32_t n_vocab, const mmp_sampler_params *params);
MMP_API void mmp_sampler_free(mmp_sampler *s);
MMP_API const mmp_sampler_params *mmp_sampler_get_params(const mmp_sampler *s); /* borrowed */

/* Choose a token from logits [n_vocab] (not modified). Returns the id (>= 0), or a negative
 * mmp_status: MMP_ERR_INVALID_ARG if logits is NULL or every logit is NaN / -inf.
 * Does NOT record the token: call mmp_sampler_accept with the token actually used (which may
 * differ, e.g. a forced prompt token). */
MMP_API int32_t mmp_sampler_sample(mmp_sampler *s, const float *logits);
/* Record a token in the repetition-penalty window (ids outside [0, n_vocab) are ignored). */
MMP_API void mmp_sampler_accept(mmp_sampler *s, int32_t token);
/* Forget the accepted tokens and restart the PRNG from the seed. */
MMP_API void mmp_sampler_reset(mmp_sampler *s);
/* Restart the PRNG from another seed (keeps the history). */
MMP_API void mmp_sampler_set_seed(mmp_sampler *s, uint64_t seed);

/* The probabilities the sampler would draw from for these logits, after steps 1-5, written to
 * probs [n_vocab] (0 for removed ids; for greedy a one-hot vector). For tests and tools. */
MMP_API enum mmp_status mmp_sampler_probs(mmp_sampler *s, const float *logits, float *probs);

/* ---- stop conditions ---- */

enum mmp_stop_reason {
    MMP_STOP_NONE       = 0,  /* keep going */
    MMP_STOP_EOG        = 1,  /* an end-of-generation id was pushed */
    MMP_STOP_STRING     = 2,  /* a stop string appeared in the text */
    MMP_STOP_MAX_TOKENS = 3,  /* the token budget is used up */
    MMP_STOP_REASON_COUNT = 4
};
/* "none", "eog", "stop string", "max tokens". */
MMP_API const char *mmp_stop_reason_name(enum mmp_stop_reason r);

typedef struct mmp_stop mmp_stop;

/* eog ids [n_eog] (may be NULL/0), stop strings [n_stop] (copied; empty strings are ignored),
 * max_tokens (<= 0: no limit). NULL + message on a bad argument. */
MMP_API mmp_stop *mmp_stop_new(const int32_t *eog, int n_eog, const char *const *stop, int n_stop,
                               int32_t max_tokens);
MMP_API void mmp_stop_free(mmp_stop *st);
/* Start a new generation (counts and held-back text cleared; ids and strings kept). */
MMP_API void mmp_stop_reset(mmp_stop *st);

/* Push one generated token and its decoded piece (piece may be NULL when len is 0).
 * Returns why to stop (MMP_STOP_NONE: continue). *emit / *emit_len get the text that is now
 * safe to print: everything except a tail that may be the start of a stop string. When the
 * result is not NONE, *emit is the final text: up to (not including) the stop string for
 * MMP_STOP_STRING, all held-back text for EOG (the end id's own piece is not added) and
 * MAX_TOKENS. *emit lives until the next call on st. */
MMP_API enum mmp_stop_reason mmp_stop_push(mmp_stop *st, int32_t token, const char *piece, size_t len,
                                           const char **emit, size_t *emit_len);
/* The text still held back (when the caller ends generation for its own reasons). */
MMP_API void mmp_stop_flush(mmp_stop *st, const char **emit, size_t *emit_len);
MMP_API int32_t mmp_stop_n_tokens(const mmp_stop *st);   /* tokens pushed since reset */

#ifdef __cplusplus
}
#endif
#endif
