/* The Whisper log-mel front end, numerically as transformers' WhisperFeatureExtractor
 * (_np_extract_fbank_features -> audio_utils.spectrogram + mel_filter_bank):
 *
 *   x [n] -> zero-pad / cut to n_samples (30 s) -> reflect-pad n_fft/2 both sides (center=True)
 *   -> frames of n_fft every hop, times a periodic Hann window -> real FFT -> |X|^2 [n_fft/2+1]
 *   -> mel = filters^T |X|^2 [n_mels] -> log10(max(mel, 1e-10)) -> drop the last frame
 *   -> max(., global max - 8) -> (x + 4) / 4  => out [n_mels, n_frames]
 *
 * transformers computes in float64 (np.fft.rfft on float64 frames) and casts the log to f32;
 * we do the same in double with libavutil's FFT. n_fft = 400 = 2^4 * 5^2 is a length that
 * libavutil 57 (FFmpeg 5.1, Debian 12) only has an O(n^2) fallback for (measured: 2 ms per
 * 400-point transform, 6 s for 30 s of audio), so non-power-of-two lengths use Bluestein's
 * algorithm on top of libavutil's power-of-two complex FFT (AV_TX_DOUBLE_FFT, M >= 2 n_fft - 1):
 *     X_k = w_k sum_n (x_n w_n) b_(k-n),   w_n = exp(-i pi n^2 / N),  b_m = conj(w_|m|)
 * i.e. one forward and one inverse M-point FFT per frame (M = 1024: ~20 us). Power-of-two
 * lengths use AV_TX_DOUBLE_RDFT directly.
 * Filters: Slaney mel scale and Slaney area normalisation, linspace'd exactly as numpy. */
#include "mmpipe/audio.h"
#include "../core/util.h"
#include "audio-impl.h"

#include <math.h>
#include <string.h>

#include <libavutil/mem.h>
#include <libavutil/tx.h>

struct mmp_mel {
    mmp_mel_params p;
    int n_bins;           /* n_fft/2 + 1 */
    double *window;       /* [n_fft] */
    double *filters;      /* [n_bins, n_mels] */
    float *filters_f32;   /* same, f32 (the public view) */
    double *filters_t;    /* [n_mels, n_bins]: transposed for the per-frame dot */
    int *lo, *hi;         /* per mel: its nonzero bins are [lo, hi) (a triangle) */
    AVTXContext *tx;      /* RDFT n_fft (power of two), or forward FFT M (Bluestein) */
    av_tx_fn tx_fn;
    AVTXContext *itx;     /* Bluestein: inverse FFT M, scaled by 1/M */
    av_tx_fn itx_fn;
    int M;                /* Bluestein length (0: direct RDFT) */
    AVComplexDouble *chirp;   /* [n_fft] w_n */
    AVComplexDouble *bfft;    /* [M] FFT of b */
    AVComplexDouble *work;    /* [M] */
    AVComplexDouble *work2;   /* [M] */
    double *frame;        /* [n_fft] (av_malloc'ed: aligned for av_tx) */
    AVComplexDouble *spec;/* [n_bins] */
    double *power;        /* [n_bins] */
};

mmp_mel_params mmp_mel_params_default(void) {
    mmp_mel_params p = {.n_mels = 80, .n_fft = 400, .hop = 160, .sample_rate = 16000, .n_samples = 480000};
    return p;
}

/* Slaney mel scale (librosa htk=False; transformers mel_scale="slaney"). */
static double hz_to_mel(double f) {
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = 27.0 / log(6.4);
    if (f >= min_log_hz) return min_log_mel + log(f / min_log_hz) * logstep;
    return 3.0 * f / 200.0;
}
static double mel_to_hz(double m) {
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = log(6.4) / 27.0;
    if (m >= min_log_mel) return min_log_hz * exp(logstep * (m - min_log_mel));
    return 200.0 * m / 3.0;
}
/* numpy.linspace(a, b, n)[i]: i*step + a, the last one exactly b. */
static double linspace(double a, double b, int n, int i) {
    if (n > 1 && i == n - 1) return b;
    return (double)i * ((b - a) / (double)(n - 1)) + a;
}

void mmp_mel_free(mmp_mel *m) {
    if (!m) return;
    av_tx_uninit(&m->tx);
    av_tx_uninit(&m->itx);
    av_free(m->chirp);
    av_free(m->bfft);
    av_free(m->work);
    av_free(m->work2);
    av_free(m->frame);
    av_free(m->spec);
    free(m->window);
    free(m->filters);
    free(m->filters_f32);
    free(m->filters_t);
    free(m->lo);
    free(m->hi);
    free(m->power);
    free(m);
}

mmp_mel *mmp_mel_new(mmp_mel_params p) {
    if (p.n_mels < 1 || p.n_mels > 512) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_mel_new: n_mels %d (1..512)", p.n_mels);
    if (p.n_fft < 4 || p.n_fft > 65536 || p.n_fft % 2)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_mel_new: n_fft %d (even, 4..65536)", p.n_fft);
    if (p.hop < 1 || p.hop > p.n_fft) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_mel_new: hop %d (1..n_fft)", p.hop);
    if (p.sample_rate < 1000 || p.sample_rate > 768000)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_mel_new: sample_rate %d", p.sample_rate);
    if (p.n_samples < 0 || p.n_samples > (1 << 30))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_mel_new: n_samples %d", p.n_samples);
    mmp_mel *m = mmp__calloc(1, sizeof *m);
    if (!m) return NULL;
    m->p = p;
    int nb = m->n_bins = p.n_fft / 2 + 1, nm = p.n_mels;
    m->window = mmp__malloc(sizeof(double) * (size_t)p.n_fft);
    m->filters = mmp__calloc((size_t)nb * nm, sizeof(double));
    m->filters_f32 = mmp__calloc((size_t)nb * nm, sizeof(float));
    m->power = mmp__malloc(sizeof(double) * (size_t)nb);
    m->filters_t = mmp__calloc((size_t)nb * nm, sizeof(double));
    m->lo = mmp__calloc((size_t)nm, sizeof(int));
    m->hi = mmp__calloc((size_t)nm, sizeof(int));
    m->frame = av_mallocz(sizeof(double) * (size_t)(p.n_fft + 64));
    m->spec = av_mallocz(sizeof(AVComplexDouble) * (size_t)(nb + 64));
    if (!m->window || !m->filters || !m->filters_f32 || !m->power || !m->frame || !m->spec || !m->filters_t || !m->lo ||
        !m->hi) {
        mmp_mel_free(m);
        return mmp__error_null(MMP_ERR_NOMEM, "mmp_mel_new: out of memory");
    }
    double scale = 1.0;
    int e;
    if ((p.n_fft & (p.n_fft - 1)) == 0) {
        e = av_tx_init(&m->tx, &m->tx_fn, AV_TX_DOUBLE_RDFT, 0, p.n_fft, &scale, 0);
    } else {
        int M = 1;
        while (M < 2 * p.n_fft - 1) M *= 2;
        m->M = M;
        double iscale = 1.0;   /* libavutil 57's FFT ignores the scale: 1/M is applied below */
        m->chirp = av_malloc(sizeof(AVComplexDouble) * (size_t)p.n_fft);
        m->bfft = av_mallocz(sizeof(AVComplexDouble) * (size_t)M);
        m->work = av_mallocz(sizeof(AVComplexDouble) * (size_t)M);
        m->work2 = av_mallocz(sizeof(AVComplexDouble) * (size_t)M);
        if (!m->chirp || !m->bfft || !m->work || !m->work2) {
            mmp_mel_free(m);
            return mmp__error_null(MMP_ERR_NOMEM, "mmp_mel_new: out of memory");
        }
        e = av_tx_init(&m->tx, &m->tx_fn, AV_TX_DOUBLE_FFT, 0, M, &scale, 0);
        if (e >= 0) e = av_tx_init(&m->itx, &m->itx_fn, AV_TX_DOUBLE_FFT, 1, M, &iscale, 0);
        if (e >= 0) {
            const int64_t N = p.n_fft;
            for (int64_t i = 0; i < N; i++) {
                double ang = -M_PI * (double)((i * i) % (2 * N)) / (double)N;   /* n^2 mod 2N: exact */
                m->chirp[i].re = cos(ang);
                m->chirp[i].im = sin(ang);
            }
            /* b_m = conj(w_|m|) for m = -(N-1) .. N-1, wrapped into [0, M) */
            m->work[0].re = m->chirp[0].re;
            m->work[0].im = -m->chirp[0].im;
            for (int64_t i = 1; i < N; i++) {
                m->work[i].re = m->work[M - i].re = m->chirp[i].re;
                m->work[i].im = m->work[M - i].im = -m->chirp[i].im;
            }
            m->tx_fn(m->tx, m->bfft, m->work, sizeof(AVComplexDouble));
        }
    }
    if (e < 0 || !m->tx) {
        mmp_mel_free(m);
        return mmp__error_null(MMP_ERR_UNSUPPORTED, "mmp_mel_new: av_tx_init(n_fft %d) failed (%d)", p.n_fft, e);
    }
    /* periodic Hann: np.hanning(n_fft + 1)[:-1] */
    for (int i = 0; i < p.n_fft; i++) m->window[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / (double)p.n_fft);
    /* mel_filter_bank(num_frequency_bins=nb, num_mel_filters=nm, 0, sr/2, sr, "slaney", "slaney") */
    double mel_lo = hz_to_mel(0.0), mel_hi = hz_to_mel((double)p.sample_rate / 2.0);
    double *ff = mmp__malloc(sizeof(double) * (size_t)(nm + 2));
    if (!ff) {
        mmp_mel_free(m);
        return NULL;
    }
    for (int j = 0; j < nm + 2; j++) ff[j] = mel_to_hz(linspace(mel_lo, mel_hi, nm + 2, j));
    for (int i = 0; i < nb; i++) {
        double f = linspace(0.0, (double)(p.sample_rate / 2), nb, i);   /* sampling_rate // 2 */
        for (int j = 0; j < nm; j++) {
            /* slopes = filter_freqs - fft_freq; down = -slopes[j] / diff[j]; up = slopes[j+2] / diff[j+1] */
            double down = -(ff[j] - f) / (ff[j + 1] - ff[j]);
            double up = (ff[j + 2] - f) / (ff[j + 2] - ff[j + 1]);
            double v = fmax(0.0, fmin(down, up));
            v *= 2.0 / (ff[j + 2] - ff[j]);   /* slaney norm */
            m->filters[(size_t)i * nm + j] = v;
            m->filters_f32[(size_t)i * nm + j] = (float)v;
        }
    }
    free(ff);
    for (int j = 0; j < nm; j++) {
        m->lo[j] = nb;
        m->hi[j] = 0;
        for (int i = 0; i < nb; i++) {
            double v = m->filters[(size_t)i * nm + j];
            m->filters_t[(size_t)j * nb + i] = v;
            if (v != 0.0) {
                if (i < m->lo[j]) m->lo[j] = i;
                m->hi[j] = i + 1;
            }
        }
        if (m->hi[j] == 0) m->lo[j] = 0;   /* an empty filter (n_mels too large for n_fft) */
    }
    return m;
}

const float *mmp_mel_filters(const mmp_mel *m) { return m ? m->filters_f32 : NULL; }

int64_t mmp_mel_n_frames(const mmp_mel *m, int64_t n) {
    if (!m || n < 0) return 0;
    int64_t len = m->p.n_samples > 0 ? m->p.n_samples : n;
    /* 1 + (len + n_fft - n_fft) / hop frames, minus the dropped last one */
    return len / m->p.hop;
}

/* np.pad(x, mode="reflect") index for position i of the padded signal (i may be < 0 or
 * >= len): reflection without repeating the edge sample, repeated for pads longer than len. */
static int64_t reflect(int64_t i, int64_t len) {
    if (len == 1) return 0;
    int64_t period = 2 * (len - 1);
    i %= period;
    if (i < 0) i += period;
    return i < len ? i : period - i;
}

/* |FFT(frame)| bins 0..n_fft/2 into m->spec. */
static void fft(mmp_mel *m) {
    const int N = m->p.n_fft, nb = m->n_bins;
    if (!m->M) {
        m->tx_fn(m->tx, m->spec, m->frame, sizeof(double));
        /* libavutil 57 (FFmpeg 5.1) leaves the imaginary part of the Nyquist bin unwritten (and
         * that of DC is 0 only by luck): both are 0 for real input */
        m->spec[0].im = 0.0;
        m->spec[nb - 1].im = 0.0;
        return;
    }
    /* Bluestein: a_n = x_n w_n (zero-padded to M) -> A = FFT(a) -> A * FFT(b) -> IFFT -> * w_k */
    AVComplexDouble *a = m->work, *A = m->work2;
    for (int i = 0; i < N; i++) {
        a[i].re = m->frame[i] * m->chirp[i].re;
        a[i].im = m->frame[i] * m->chirp[i].im;
    }
    memset(a + N, 0, sizeof(AVComplexDouble) * (size_t)(m->M - N));
    m->tx_fn(m->tx, A, a, sizeof(AVComplexDouble));
    for (int i = 0; i < m->M; i++) {
        double re = A[i].re * m->bfft[i].re - A[i].im * m->bfft[i].im;
        double im = A[i].re * m->bfft[i].im + A[i].im * m->bfft[i].re;
        A[i].re = re;
        A[i].im = im;
    }
    m->itx_fn(m->itx, a, A, sizeof(AVComplexDouble));
    const double inv = 1.0 / m->M;
    for (int k = 0; k < nb; k++) {
        m->spec[k].re = (a[k].re * m->chirp[k].re - a[k].im * m->chirp[k].im) * inv;
        m->spec[k].im = (a[k].re * m->chirp[k].im + a[k].im * m->chirp[k].re) * inv;
    }
}

enum mmp_status mmp_mel_compute(mmp_mel *m, const float *samples, int64_t n, float *out) {
    if (!m || !out || (n > 0 && !samples) || n < 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_mel_compute: bad arguments");
    const int n_fft = m->p.n_fft, hop = m->p.hop, nm = m->p.n_mels, nb = m->n_bins;
    /* the signal after padding/cutting: len samples, x[i] = samples[i] for i < n, else 0 */
    int64_t len = m->p.n_samples > 0 ? m->p.n_samples : n;
    if (len < 1) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_mel_compute: no samples");
    int64_t n_frames = mmp_mel_n_frames(m, n);
    if (n_frames < 1)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_mel_compute: %lld samples give no frame (hop %d)", (long long)len, hop);
    int64_t nx = MMP_MIN(n, len);
    double vmax = -INFINITY;
    for (int64_t t = 0; t < n_frames; t++) {
        int64_t start = t * hop - n_fft / 2;   /* in signal coordinates */
        /* a frame entirely in the zero padding (also after reflection at the end) is skipped */
        int64_t last = start + n_fft - 1;
        bool all_zero = start >= nx && (last < len || 2 * (len - 1) - last >= nx);
        if (!all_zero) {
            for (int k = 0; k < n_fft; k++) {
                int64_t i = start + k;
                if (i < 0 || i >= len) i = reflect(i, len);
                double x = i < nx ? (double)samples[i] : 0.0;
                m->frame[k] = x * m->window[k];
            }
            fft(m);
            for (int b = 0; b < nb; b++) m->power[b] = m->spec[b].re * m->spec[b].re + m->spec[b].im * m->spec[b].im;
        }
        for (int j = 0; j < nm; j++) {
            double acc = 0.0;
            if (!all_zero) {
                const double *f = m->filters_t + (size_t)j * nb;
                for (int b = m->lo[j]; b < m->hi[j]; b++) acc += f[b] * m->power[b];
            }
            double v = log10(fmax(acc, 1e-10));
            out[(size_t)j * n_frames + t] = (float)v;
            if (v > vmax) vmax = v;
        }
    }
    /* transformers: np.maximum(log_spec, log_spec.max() - 8.0) on the f32 array */
    float fmax_v = (float)vmax, floor_v = fmax_v - 8.0f;
    size_t total = (size_t)nm * (size_t)n_frames;
    for (size_t i = 0; i < total; i++) {
        float v = out[i] > floor_v ? out[i] : floor_v;
        out[i] = (v + 4.0f) / 4.0f;
    }
    return MMP_OK;
}

/* ---- mtmd's windows (encoders/audio-impl.h) ---- */

int mmp__mel_hop(const mmp_mel *m) { return m ? m->p.hop : 0; }

int64_t mmp__mel_n_windows(const mmp_mel *m, int64_t n) {
    if (!m || n < 1) return 0;
    if (m->p.n_samples <= 0) return 1;
    return (n + m->p.n_samples - 1) / m->p.n_samples;
}

enum mmp_status mmp__mel_window(mmp_mel *m, const float *samples, int64_t n, int64_t i, float *out, int64_t *valid) {
    if (!m || !valid || i < 0 || i >= mmp__mel_n_windows(m, n))
        return mmp__error(MMP_ERR_INVALID_ARG, "log-mel: window %lld of %lld samples", (long long)i, (long long)n);
    const int64_t win = m->p.n_samples > 0 ? m->p.n_samples : n, hop = m->p.hop;
    const int64_t s0 = i * win, len = MMP_MIN(win, n - s0);
    enum mmp_status st = mmp_mel_compute(m, samples + s0, len, out);
    if (st != MMP_OK) return st;
    /* WhisperFeatureExtractor's attention mask [::hop]: ceil(len / hop) frames hold audio */
    *valid = MMP_MIN((len + hop - 1) / hop, mmp_mel_n_frames(m, len));
    return MMP_OK;
}

/* ---- the `frontend.mel` stage kind ----
 * audio [n] f32 (16 kHz mono) -> mel [n_mels, n_frames] + valid [k] (frames holding audio in
 * each window). No model is needed; when one is given (-m, a Whisper / Qwen2-Audio / Ultravox /
 * Voxtral folder or an audio mmproj GGUF) its n_mels is used (the encoder's conv1, else
 * config num_mel_bins) and window=auto takes its window. Options:
 *   n_mels=N
 *   pad=30s (default): one window of WhisperFeatureExtractor's 3000 frames, longer audio cut
 *   pad=none: one window of n / 160 frames, no padding
 *   window=auto|30s|N: as many windows of N frames (30s = 3000; auto = the model's encoder:
 *     30 s, or 2 x n_positions frames when it has fewer positions, else 30 s) as the audio
 *     needs, each padded: mel [n_mels, k * N] (the windows one after the other in time) and
 *     valid [k]. With encoder.whisper's valid input and the projector's rows input this is
 *     exactly mmp_mm_encode_audio (`mmpipe caption --audio`). */
#include "mmpipe/stage.h"
#include "../core/stage-impl.h"

#include "mmpipe/store.h"

#include <errno.h>

/* With a store, the model file read for its config stays referenced while the stage lives, so
 * that the encoder stages after it find it mapped already (one open for the folder). */
typedef struct mel_stage {
    mmp_mel *m;
    bool windows;        /* window=: as many windows as the audio needs; else one (pad=) */
    mmp_store *store;
    const mmp_modelfile *mf;
} mel_stage;

static void mel_stage_destroy(void *state) {
    mel_stage *s = state;
    if (!s) return;
    mmp_mel_free(s->m);
    mmp_store_close(s->store, s->mf);
    free(s);
}

static void *mel_stage_create(const mmp_stage_params *sp, mmp_port_type *in, mmp_port_type *out) {
    (void)in;
    mmp_mel_params p = mmp_mel_params_default();
    mel_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    int n_positions = 0;   /* the model's encoder positions (0: no model / no encoder found) */
    if (sp && sp->model_path) {
        mmp_modelfile *own = NULL;
        const mmp_modelfile *mf;
        if (sp->store) {
            s->store = sp->store;
            mf = s->mf = mmp_store_open(sp->store, sp->model_path);
        } else {
            mf = own = mmp_modelfile_open(sp->model_path);
        }
        if (!mf) {
            mel_stage_destroy(s);
            return NULL;
        }
        int nm = 0;
        if (mmp__whisper_peek(mf, &nm, &n_positions) == MMP_OK) {
            p.n_mels = nm;
        } else {
            n_positions = 0;
            const mmp_json *cfg = mmp_modelfile_config(mf);
            int64_t c = 0;
            if (cfg && mmp_json_get_int_alt(cfg, &c, "audio_config.num_mel_bins", "num_mel_bins", NULL) == MMP_OK) p.n_mels = (int)c;
        }
        mmp_clear_error();
        mmp_modelfile_free(own);
    }
    mmp__opt opt[8];
    char *storage = NULL;
    int n_opt = mmp__opts_parse("frontend.mel", sp ? sp->options : NULL, opt, 8, &storage);
    bool bad = n_opt < 0;
    for (int i = 0; i < n_opt && !bad; i++) {
        const char *k = opt[i].key, *v = opt[i].val;
        if (!strcmp(k, "n_mels")) {
            char *e = NULL;
            long nm = strtol(v, &e, 10);
            if (!*v || *e || nm < 1 || nm > 512) bad = true;
            else p.n_mels = (int)nm;
        } else if (!strcmp(k, "pad") && (!strcmp(v, "none") || !strcmp(v, "30s"))) {
            p.n_samples = !strcmp(v, "none") ? 0 : 480000;
            s->windows = false;
        } else if (!strcmp(k, "window")) {
            s->windows = true;
            if (!strcmp(v, "auto")) {
                p.n_samples = n_positions > 0 ? (int)mmp__audio_window_samples(n_positions, p.hop, 480000) : 480000;
            } else if (!strcmp(v, "30s")) {
                p.n_samples = 480000;
            } else {
                char *e = NULL;
                errno = 0;
                long long f = strtoll(v, &e, 10);
                if (errno || !*v || *e || f < 1 || f > (1 << 30) / p.hop) bad = true;
                else p.n_samples = (int)(f * p.hop);
            }
        } else {
            bad = true;
        }
        if (bad)
            mmp__error(MMP_ERR_INVALID_ARG, "frontend.mel: bad option '%s%s%s' (known: n_mels=N, pad=30s, pad=none, "
                       "window=auto|30s|N frames)", k, *v ? "=" : "", v);
    }
    free(storage);
    if (bad) {
        mel_stage_destroy(s);
        return NULL;
    }
    if (!(s->m = mmp_mel_new(p))) {
        mel_stage_destroy(s);
        return NULL;
    }
    out[0].dims[0] = p.n_mels;
    if (p.n_samples > 0 && !s->windows) out[0].dims[1] = p.n_samples / p.hop;
    if (!s->windows) out[1].dims[0] = 1;
    return s;
}

static enum mmp_status mel_stage_run(void *state, const mmp_stage_params *sp, const mmp_array *const *inputs,
                                     mmp_array **outputs) {
    mel_stage *s = state;
    mmp_mel *m = s->m;
    const mmp_array *a = inputs[0];
    const float *x = a->data;
    int64_t n = a->dims[0];
    if (n < 1) return mmp__error(MMP_ERR_INVALID_ARG, "frontend.mel: no samples (the audio is empty)");
    /* one window (pad=): the samples past it are cut */
    if (!s->windows && m->p.n_samples > 0) n = MMP_MIN(n, m->p.n_samples);
    int64_t k = mmp__mel_n_windows(m, n);
    int64_t W = mmp_mel_n_frames(m, n);   /* frames per window */
    if (W < 1 || k < 1) return mmp__error(MMP_ERR_INVALID_ARG, "frontend.mel: %lld samples give no mel frame", (long long)n);
    if (k > (int64_t)1 << 24 || W > INT32_MAX || W > (INT64_MAX / 4) / (k * m->p.n_mels))
        return mmp__error(MMP_ERR_LIMIT, "frontend.mel: %lld samples give too many windows (%lld)", (long long)n, (long long)k);
    int64_t d[2] = {m->p.n_mels, k * W}, dv[1] = {k};
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, 2, d), *v = mmp_array_new(MMP_TYPE_I32, 1, dv);
    float *buf = k > 1 ? mmp__malloc(sizeof(float) * (size_t)m->p.n_mels * (size_t)W) : NULL;
    enum mmp_status st = (!o || !v || (k > 1 && !buf)) ? MMP_ERR_NOMEM : MMP_OK;
    for (int64_t i = 0; i < k && st == MMP_OK; i++) {
        if (sp && sp->abort_cb && sp->abort_cb(sp->cb_user)) {
            st = mmp__error(MMP_ERR_ABORTED, "frontend.mel: aborted at window %lld of %lld", (long long)i, (long long)k);
            break;
        }
        int64_t valid = 0;
        float *dst = k > 1 ? buf : o->data;
        if ((st = mmp__mel_window(m, x, n, i, dst, &valid)) != MMP_OK) break;
        ((int32_t *)v->data)[i] = (int32_t)valid;
        if (k > 1)   /* window i -> columns [i W, (i + 1) W) of every mel row */
            for (int64_t r = 0; r < m->p.n_mels; r++)
                memcpy((float *)o->data + (size_t)r * (size_t)(k * W) + (size_t)(i * W), buf + (size_t)r * (size_t)W,
                       sizeof(float) * (size_t)W);
    }
    free(buf);
    if (st != MMP_OK) {
        mmp_array_free(o);
        mmp_array_free(v);
        return st;
    }
    outputs[0] = o;
    outputs[1] = v;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_frontend_mel = {
    .name = "frontend.mel",
    .summary = "Whisper log-mel front end (WhisperFeatureExtractor): 16 kHz audio -> mel [n_mels, 3000] (options n_mels=N, "
               "pad=30s|none, window=auto|30s|N: mtmd's windows)",
    .n_inputs = 1,
    .n_outputs = 2,
    .inputs = {{"audio", {MMP_ROLE_AUDIO, MMP_TYPE_F32, 1, {MMP_DIM_ANY}}, false, "16 kHz mono samples [n]"}},
    .outputs = {{"mel", {MMP_ROLE_MEL, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}, false,
                 "log-mel features [n_mels, k * frames per window] (k windows one after the other)"},
                {"valid", {MMP_ROLE_COUNTS, MMP_TYPE_I32, 1, {MMP_DIM_ANY}}, false,
                 "frames holding audio in each window [k] (the rest is padding); for encoder.whisper's valid"}},
    .create = mel_stage_create,
    .run = mel_stage_run,
    .destroy = mel_stage_destroy,
};
