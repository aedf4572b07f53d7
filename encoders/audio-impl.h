/* Private: how audio is cut into windows and encoded window by window, shared by core/mtmd.c
 * (mmp_mm_encode_audio, what `mmpipe caption --audio` runs) and the stage kinds frontend.mel,
 * encoder.whisper and projector.* (encoders/mel.c, encoders/whisper.c, projectors/audio.c),
 * so that the audio pipelines give exactly mtmd's embeddings.
 *
 *   samples [n] -> windows of W samples (the last one shorter), each zero-padded to W
 *   -> log-mel [n_mels, W / hop] per window + the frames holding audio: min(ceil(len / hop), W / hop)
 *   -> encoder per window (Qwen2-Audio towers mask the padding) -> only the rows holding audio
 *   -> projector per window (the stacking projectors zero-pad each window's last stack)
 *   -> rows concatenated in time order. */
#ifndef MMP_AUDIO_IMPL_H
#define MMP_AUDIO_IMPL_H

#include "mmpipe/audio.h"

/* Samples per window for an encoder with n_positions positions: WhisperFeatureExtractor's
 * 30 s (`max_samples`, 480000), or 2 * n_positions frames of `hop` samples when that is less
 * (a small encoder). 0 for n_positions < 1 or hop < 1. */
int64_t mmp__audio_window_samples(int n_positions, int hop, int64_t max_samples);

/* Windows for n samples with m's padding (p.n_samples; 0 = no padding: one window of all n):
 * ceil(n / n_samples); 0 for n < 1. */
int64_t mmp__mel_n_windows(const mmp_mel *m, int64_t n);
/* Window i of samples [n] -> out [n_mels, mmp_mel_n_frames(m, 1)] (padded) and *valid = frames
 * holding audio (WhisperFeatureExtractor's attention mask taken every hop). */
enum mmp_status mmp__mel_window(mmp_mel *m, const float *samples, int64_t n, int64_t i, float *out, int64_t *valid);
/* The mel's hop (samples per frame). */
int mmp__mel_hop(const mmp_mel *m);

/* Rows of one window that hold audio: mmp_whisper_n_valid_out(n_valid), or every row for
 * n_valid 0. 0 when the window gives none or n_valid is out of range (no message set). */
int64_t mmp__whisper_window_keep(const mmp_whisper *w, int64_t n_frames, int64_t n_valid);
/* One window: mel [n_mels, n_frames] -> hidden [mmp_whisper_n_out(n_frames), d_model], the
 * padding masked for the Qwen2-Audio tower only (plain Whisper towers attend to it, as
 * Ultravox and Voxtral do); the caller keeps the first mmp__whisper_window_keep rows. */
enum mmp_status mmp__whisper_encode_window(mmp_whisper *w, const float *mel, int64_t n_frames, int64_t n_valid, float *hidden,
                                           int n_threads, mmp_abort_fn abort_cb, void *abort_user);
/* The n_mels and positions of the Whisper encoder in a model file (its tensor shapes, as
 * mmp_whisper_load reads them) without loading it; MMP_ERR_NOT_FOUND (message set) if the
 * file has none. */
enum mmp_status mmp__whisper_peek(const mmp_modelfile *mf, int *n_mels, int *n_positions);

#endif
