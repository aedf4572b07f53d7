/* The Whisper log-mel front end against transformers' WhisperFeatureExtractor (golden
 * whisper_mel: audio.wav -> input_features [80, 3000], mel_filters [201, 80]). */
#include "testutil.h"
#include "mmpipe/audio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_filters(void **state) {
    (void)state;
    mmp_modelfile *io = mmp_modelfile_open(mmpt_data("audio/whisper_mel/io.safetensors"));
    assert_non_null(io);
    int64_t n = 0;
    float *ref = mmpt_mf_f32(io, "mel_filters", &n);
    assert_int_equal(n, 201 * 80);
    mmp_mel *m = mmp_mel_new(mmp_mel_params_default());
    assert_non_null(m);
    const float *f = mmp_mel_filters(m);
    double maxd = mmpt_max_abs(f, ref, (size_t)n);
    print_message("mel filters [201, 80]: max |diff| %.3g, rel L2 %.3g\n", maxd, mmpt_rel_l2(f, ref, (size_t)n));
    assert_true(maxd <= 1e-6);
    mmp_mel_free(m);
    free(ref);
    mmp_modelfile_free(io);
}

static void test_features_from_wav(void **state) {
    (void)state;
    mmp_modelfile *io = mmp_modelfile_open(mmpt_data("audio/whisper_mel/io.safetensors"));
    assert_non_null(io);
    int64_t nref = 0, nwave = 0;
    float *ref = mmpt_mf_f32(io, "input_features", &nref);
    float *wave = mmpt_mf_f32(io, "waveform", &nwave);
    assert_int_equal(nref, 80 * 3000);
    /* through OUR decoder */
    float *x = NULL;
    int64_t n = 0;
    assert_int_equal(mmp_audio_decode_file(mmpt_data("audio/whisper_mel/audio.wav"), 60, &x, &n, NULL), MMP_OK);
    assert_int_equal(n, nwave);
    print_message("decoded audio.wav vs the golden waveform: max |diff| %.3g\n", mmpt_max_abs(x, wave, (size_t)n));
    assert_true(mmpt_max_abs(x, wave, (size_t)n) == 0.0);
    for (int64_t i = 0; i < n; i++) assert_true(isfinite(x[i]));
    mmp_mel *m = mmp_mel_new(mmp_mel_params_default());
    assert_non_null(m);
    assert_int_equal(mmp_mel_n_frames(m, n), 3000);
    float *out = malloc(sizeof(float) * 80 * 3000);
    assert_non_null(out);
    assert_int_equal(mmp_mel_compute(m, x, n, out), MMP_OK);
    for (int64_t i = 0; i < nref; i++) assert_true(isfinite(out[i]));
    double e = mmpt_rel_l2(out, ref, (size_t)nref);
    print_message("input_features [80, 3000]: rel L2 %.3g, max |diff| %.3g\n", e, mmpt_max_abs(out, ref, (size_t)nref));
    assert_true(e <= 1e-4);
    free(out);
    free(x);
    free(wave);
    free(ref);
    mmp_mel_free(m);
    mmp_modelfile_free(io);
}

/* Our FFT-based spectrogram against a plain O(n^2) DFT (double) for a few frames: n_fft 400
 * (Bluestein over a 1024-point FFT) and 512 (libavutil's real FFT directly). */
static void fft_vs_dft(int n_fft) {
    mmp_mel_params p = mmp_mel_params_default();
    p.n_samples = 0;  /* no 30 s padding: n / hop frames */
    p.n_fft = n_fft;
    mmp_mel *m = mmp_mel_new(p);
    assert_non_null(m);
    const int n = 16000, nb = n_fft / 2 + 1, half = n_fft / 2;
    float *x = malloc(sizeof(float) * n);
    mmpt_rand_fill(x, n, 7, -0.5f, 0.5f);
    int64_t nf = mmp_mel_n_frames(m, n);
    assert_int_equal(nf, 100);
    float *out = malloc(sizeof(float) * 80 * (size_t)nf);
    assert_int_equal(mmp_mel_compute(m, x, n, out), MMP_OK);
    const float *fb = mmp_mel_filters(m);
    /* frames 0 (reflect at the start), 50, 99 (reflect at the end) */
    const int frames[3] = {0, 50, 99};
    double *pw = malloc(sizeof(double) * (size_t)nb);
    double maxd = 0;
    for (int fi = 0; fi < 3; fi++) {
        int t = frames[fi];
        for (int k = 0; k < nb; k++) {
            double re = 0, im = 0;
            for (int j = 0; j < n_fft; j++) {
                int i = t * 160 - half + j;
                if (i < 0) i = -i;
                if (i >= n) i = 2 * (n - 1) - i;
                double w = 0.5 - 0.5 * cos(2 * M_PI * j / (double)n_fft);
                double v = x[i] * w;
                re += v * cos(2 * M_PI * (double)k * j / n_fft);
                im -= v * sin(2 * M_PI * (double)k * j / n_fft);
            }
            pw[k] = re * re + im * im;
        }
        /* white noise stays far above the max - 8 floor, so the clamp does not act: compare
         * log10 values directly (out = (log10 + 4) / 4) */
        for (int b = 0; b < 80; b++) {
            double acc = 0;
            for (int k = 0; k < nb; k++) acc += (double)fb[k * 80 + b] * pw[k];
            double r = (log10(fmax(acc, 1e-10)) + 4.0) / 4.0;
            maxd = fmax(maxd, fabs(r - out[b * nf + t]));
        }
    }
    print_message("n_fft %d: FFT vs O(n^2) DFT (frames 0, 50, 99): max |diff| %.3g\n", n_fft, maxd);
    assert_true(maxd < 1e-5);
    free(pw);
    free(out);
    free(x);
    mmp_mel_free(m);
}

static void test_fft_vs_dft(void **state) {
    (void)state;
    fft_vs_dft(400);
    fft_vs_dft(512);
}

static void test_128_and_bad_args(void **state) {
    (void)state;
    mmp_mel_params p = mmp_mel_params_default();
    p.n_mels = 128;
    mmp_mel *m = mmp_mel_new(p);
    assert_non_null(m);
    /* every filter has positive area, and each is a triangle: rises then falls */
    const float *f = mmp_mel_filters(m);
    for (int b = 0; b < 128; b++) {
        double area = 0;
        for (int k = 0; k < 201; k++) area += f[k * 128 + b];
        assert_true(area > 0);
    }
    float x[1000] = {0};
    float *out = malloc(sizeof(float) * 128 * 3000);
    /* silence: every value is the floor, (log10(1e-10) + 4) / 4 */
    assert_int_equal(mmp_mel_compute(m, x, 1000, out), MMP_OK);
    for (int i = 0; i < 128 * 3000; i++) assert_true(fabsf(out[i] - (-10.0f + 4.0f) / 4.0f) < 1e-6f);
    free(out);
    mmp_mel_free(m);
    p = mmp_mel_params_default();
    p.n_fft = 401;
    assert_null(mmp_mel_new(p));
    p = mmp_mel_params_default();
    p.n_mels = 0;
    assert_null(mmp_mel_new(p));
    p = mmp_mel_params_default();
    p.hop = 0;
    assert_null(mmp_mel_new(p));
    p = mmp_mel_params_default();
    p.n_samples = 0;
    m = mmp_mel_new(p);
    float y[10] = {0};
    assert_int_not_equal(mmp_mel_compute(m, y, 10, y), MMP_OK);  /* 10 samples: no frame */
    assert_int_not_equal(mmp_mel_compute(m, NULL, 10, y), MMP_OK);
    mmp_mel_free(m);
    mmp_mel_free(NULL);
}

int main(void) {
    mmp_audio_quiet_ffmpeg();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_features_from_wav),
        cmocka_unit_test(test_fft_vs_dft),
        cmocka_unit_test(test_128_and_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
