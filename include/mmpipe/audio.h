/* mmpipe — the audio path: decoding (FFmpeg), the Whisper log-mel front end, the Whisper
 * encoder and the audio projectors (Qwen2-Audio, Ultravox, Voxtral).
 *
 *   file ─► mmp_audio_reader (any container/codec FFmpeg decodes, any rate/layout)
 *        ─► 16 kHz mono f32 samples, in chunks
 *        ─► mmp_mel (log-mel [n_mels, n_frames], WhisperFeatureExtractor numerics)
 *        ─► mmp_whisper (encoder: hidden [n_frames/2, d_model])
 *        ─► mmp_audio_proj (projector: embeddings [n_tok, n_embd] in the LLM's space)
 *
 * Shapes here are written outermost first (numpy order): mel [n_mels, n_frames] means n_mels
 * rows of n_frames contiguous floats, exactly like transformers' input_features[0].
 *
 * Threads: a reader, an mmp_mel, an mmp_whisper and an mmp_audio_proj each serve one call at
 * a time (they own scratch buffers / a CPU backend); use one per thread. The weights are
 * read-only and may be shared by loading the same modelfile into several of them.
 *
 * FFmpeg logging: FFmpeg prints warnings for damaged input to stderr through a process-global
 * log level. The library does not change it on its own (that would silently change the host
 * program's FFmpeg logging); a program that wants silence calls mmp_audio_quiet_ffmpeg()
 * once (the CLI and the tests do). Every failure is reported through mmp_last_error()
 * regardless. */
#ifndef MMPIPE_AUDIO_H
#define MMPIPE_AUDIO_H

#include "mmpipe/base.h"
#include "mmpipe/modelfile.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_AUDIO_SAMPLE_RATE 16000   /* what Whisper-family encoders expect */
#define MMP_AUDIO_MIN_RATE    1000    /* source sample rates outside [MIN, MAX] are refused */
#define MMP_AUDIO_MAX_RATE    768000
#define MMP_AUDIO_MAX_CHANNELS 64

/* Sets FFmpeg's process-global log level to AV_LOG_QUIET. Opt-in (see above). */
MMP_API void mmp_audio_quiet_ffmpeg(void);

/* ---- streaming decoder ---- */

typedef struct mmp_audio_reader mmp_audio_reader;

typedef struct mmp_audio_info {
    int src_sample_rate;    /* of the audio stream in the file */
    int src_channels;
    int sample_rate;        /* of the samples read() returns */
    double duration_s;      /* as the container says; < 0 if unknown (streams, pipes) */
    const char *codec;      /* "pcm_s16le", "flac", "mp3", ... (borrowed) */
    const char *container;  /* "wav", "flac", "ogg", "mov,mp4,m4a,...", ... (borrowed) */
} mmp_audio_info;

/* Open a file (or FIFO) for decoding to mono f32 at `sample_rate` Hz (0 = 16000). Only the
 * local file protocol is allowed. Nothing is decoded yet beyond the headers.
 * NULL + mmp_last_error() naming the file: missing, a directory, not audio, no audio stream,
 * an absurd sample rate or channel count. */
MMP_API mmp_audio_reader *mmp_audio_open(const char *path, int sample_rate);
/* Same over bytes in memory (a whole file image). `data` must stay valid until
 * mmp_audio_close(); `name` is used in messages only (may be NULL). */
MMP_API mmp_audio_reader *mmp_audio_open_memory(const void *data, size_t size, const char *name, int sample_rate);
MMP_API void mmp_audio_close(mmp_audio_reader *r);
MMP_API mmp_audio_info mmp_audio_get_info(const mmp_audio_reader *r);
/* Read up to `max` samples into out. *n_read = samples written; 0 means the end of the audio.
 * Memory stays bounded by one decoded packet whatever the file's length.
 * Errors (naming the file): corrupt data the decoder cannot skip, or a stream that ends
 * without producing a single sample (zero-length audio). */
MMP_API enum mmp_status mmp_audio_read(mmp_audio_reader *r, float *out, int64_t max, int64_t *n_read);
/* Samples returned so far. */
MMP_API int64_t mmp_audio_position(const mmp_audio_reader *r);

/* ---- convenience: whole files ---- */

/* Decode a whole file to 16 kHz mono f32, at most max_seconds (> 0; longer audio is cut
 * there and *truncated, if given, is set). *samples is malloc'ed: free() it.
 * On error *samples is NULL and *n_samples 0. */
MMP_API enum mmp_status mmp_audio_decode_file(const char *path, double max_seconds, float **samples,
                                              int64_t *n_samples, bool *truncated);
MMP_API enum mmp_status mmp_audio_decode_memory(const void *data, size_t size, const char *name, double max_seconds,
                                                float **samples, int64_t *n_samples, bool *truncated);
/* Raw PCM from memory: interleaved f32 frames [n_frames, channels] at `sample_rate` -> 16 kHz
 * mono (channels averaged, as ffmpeg -ac 1 / librosa do), resampled with libswresample.
 * *out is malloc'ed (free()); *n_out its length. */
MMP_API enum mmp_status mmp_audio_from_pcm(const float *pcm, int64_t n_frames, int channels, int sample_rate,
                                           float **out, int64_t *n_out);

/* ---- log-mel front end (WhisperFeatureExtractor) ---- */

typedef struct mmp_mel_params {
    int n_mels;        /* 80 (Whisper v1-v2, Qwen2-Audio uses 128) */
    int n_fft;         /* 400: periodic Hann window of n_fft samples */
    int hop;           /* 160 */
    int sample_rate;   /* 16000; the filters span 0 .. sample_rate/2 */
    int n_samples;     /* audio is zero-padded / cut to this many samples: 480000 (30 s). 0 =
                          no padding: as many frames as the audio gives (n / hop). */
} mmp_mel_params;

MMP_API mmp_mel_params mmp_mel_params_default(void);

typedef struct mmp_mel mmp_mel;
/* Window, Slaney mel filters and the FFT plan. NULL + message for bad params. */
MMP_API mmp_mel *mmp_mel_new(mmp_mel_params p);
MMP_API void mmp_mel_free(mmp_mel *m);
/* The filter bank [n_fft/2 + 1, n_mels] (transformers' WhisperFeatureExtractor.mel_filters).
 * Borrowed; lives as long as m. */
MMP_API const float *mmp_mel_filters(const mmp_mel *m);
/* Frames produced for n input samples: n_samples/hop (with padding: p.n_samples/hop). */
MMP_API int64_t mmp_mel_n_frames(const mmp_mel *m, int64_t n);
/* samples [n] -> out [n_mels, n_frames] (n_frames = mmp_mel_n_frames(m, n)): center reflect
 * padding, power spectrum, mel, log10(max(., 1e-10)), max(., max - 8), (x + 4) / 4; the
 * last STFT frame is dropped as transformers does. Not thread-safe per mmp_mel (scratch). */
MMP_API enum mmp_status mmp_mel_compute(mmp_mel *m, const float *samples, int64_t n, float *out);

/* ---- Whisper encoder ---- */

typedef struct mmp_whisper mmp_whisper;

typedef struct mmp_whisper_hparams {
    int n_mels, d_model, n_layers, n_heads, d_ffn, n_positions;
    float eps;                 /* layer norm eps (1e-5) */
    bool avg_pool;             /* Qwen2-Audio tower: avg-pool 2 over time before the final LN */
} mmp_whisper_hparams;

/* Load the encoder from an HF Whisper folder/file (`model.encoder.*`), an encoder-only save
 * (no prefix), a Qwen2-Audio / Ultravox / Voxtral folder (`audio_tower.*`), or a llama.cpp
 * mmproj GGUF with an audio encoder (`a.*` tensors, `clip.audio.*` keys; the avg-pool of
 * projector types "qwen2a" and "voxtral" as llama.cpp's clip.cpp applies it). Hyper-parameters
 * come from config.json (`audio_config` for multimodal configs) or, without one, from the
 * tensor shapes (n_heads then defaults to d_model / 64). The modelfile is opened and owned. */
MMP_API mmp_whisper *mmp_whisper_load(const char *path);
/* Same over an open modelfile (borrowed: keep it alive while the encoder lives). */
MMP_API mmp_whisper *mmp_whisper_load_modelfile(const mmp_modelfile *mf);
MMP_API void mmp_whisper_free(mmp_whisper *w);
MMP_API const mmp_whisper_hparams *mmp_whisper_get_hparams(const mmp_whisper *w);
/* Output rows for n_frames mel frames: ceil(n_frames / 2) (halved again, floor, with avg_pool). */
MMP_API int64_t mmp_whisper_n_out(const mmp_whisper *w, int64_t n_frames);
/* Rows that hold audio when only the first n_valid_frames frames of a padded window do:
 * ceil(n/2), or for the Qwen2-Audio tower (ceil(n/2) - 2) / 2 + 1 (its
 * _get_feat_extract_output_lengths). */
MMP_API int64_t mmp_whisper_n_valid_out(const mmp_whisper *w, int64_t n_valid_frames);
/* mel [n_mels, n_frames] -> out [mmp_whisper_n_out(n_frames), d_model]; needs
 * ceil(n_frames / 2) <= n_positions (the first positional embeddings are used).
 * n_valid (0 = all): frames holding audio; with 0 < n_valid < n_frames the keys of positions
 * past ceil(n_valid / 2) are masked in every attention (Qwen2-Audio's padding mask; plain
 * Whisper attends to its padding: pass 0). n_threads <= 0 means 1. */
MMP_API enum mmp_status mmp_whisper_encode(mmp_whisper *w, const float *mel, int64_t n_frames, int64_t n_valid, float *out,
                                           int n_threads, mmp_abort_fn abort_cb, void *abort_user);

/* ---- audio projectors ---- */

enum mmp_audio_proj_type {
    MMP_AUDIO_PROJ_QWEN2_AUDIO = 0,  /* linear (multi_modal_projector.linear) */
    MMP_AUDIO_PROJ_ULTRAVOX    = 1,  /* stack 8 -> RMSNorm -> linear -> SwiGLU -> RMSNorm -> linear [-> RMSNorm] */
    MMP_AUDIO_PROJ_VOXTRAL     = 2,  /* stack 4 -> linear -> GELU -> linear */
    MMP_AUDIO_PROJ_COUNT       = 3
};

typedef struct mmp_audio_proj mmp_audio_proj;

/* Load from a folder/file holding `multi_modal_projector.*` tensors. The stack factor comes
 * from config.json (`stack_factor`, Ultravox) or the weight shapes.
 * A llama.cpp mmproj GGUF (`mm.a.*` tensors) is also taken: there clip.projector_type
 * ("qwen2a", "ultravox", "voxtral") decides the type and `type` is ignored, and the stack
 * factor comes from clip.audio.projector.stack_factor. */
MMP_API mmp_audio_proj *mmp_audio_proj_load(const char *path, enum mmp_audio_proj_type type);
MMP_API mmp_audio_proj *mmp_audio_proj_load_modelfile(const mmp_modelfile *mf, enum mmp_audio_proj_type type);
MMP_API void mmp_audio_proj_free(mmp_audio_proj *p);
MMP_API int mmp_audio_proj_n_in(const mmp_audio_proj *p);      /* encoder width it takes */
MMP_API int mmp_audio_proj_n_embd(const mmp_audio_proj *p);    /* LLM width it gives */
MMP_API int mmp_audio_proj_stack(const mmp_audio_proj *p);     /* frames stacked (1 for Qwen2-Audio) */
/* Rows out for n encoder rows: ceil(n / stack) (frames are zero-padded to a multiple). */
MMP_API int64_t mmp_audio_proj_n_out(const mmp_audio_proj *p, int64_t n);
/* x [n, n_in] -> out [n_out, n_embd]. */
MMP_API enum mmp_status mmp_audio_proj_run(mmp_audio_proj *p, const float *x, int64_t n, float *out, int n_threads);

/* ---- whole audio -> LLM embeddings ---- */

/* Decoded 16 kHz samples -> embeddings for the LLM: 30 s windows (each padded like
 * WhisperFeatureExtractor), encoded one by one and concatenated, then projected.
 * *out malloc'ed [*n_tok, n_embd] (free()). mel_params.n_mels must match the encoder. */
MMP_API enum mmp_status mmp_audio_embed(mmp_whisper *enc, mmp_audio_proj *proj, const float *samples, int64_t n,
                                        float **out, int64_t *n_tok, int n_threads);

#ifdef __cplusplus
}
#endif
#endif
