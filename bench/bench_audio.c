/* bench_audio: the audio front end and the Whisper encoder against the machine's ceilings.
 *
 *   1. decode + mel: 30 s of 44.1 kHz stereo 16-bit WAV (written to a temp file) -> FFmpeg
 *      decode + resample to 16 kHz mono -> log-mel [80, 3000]; times for each part;
 *   2. the encoder at whisper-base (d 512, 6 layers, 8 heads, ffn 2048) and whisper-small
 *      (d 768, 12 layers, 12 heads, ffn 3072) shapes with synthetic f32 weights, one 30 s
 *      window (3000 mel frames -> 1500 positions): time, GFLOP/s, and the fraction of the
 *      OpenBLAS sgemm GFLOP/s measured in the same run (at 2048^3 and at the encoder's own FFN
 *      shape 1500 x ffn x d).
 *
 * Usage: bench_audio [--threads N] [--quick]   (--quick: base only, fewer repetitions) */
#include "ceilings.h"
#include "mmpipe/mmpipe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static char *write_wav_30s(void) {
    const uint32_t rate = 44100, n = rate * 30;
    const uint16_t ch = 2;
    size_t bytes = (size_t)n * ch * 2;
    uint8_t *buf = malloc(44 + bytes);
    if (!buf) return NULL;
    memcpy(buf, "RIFF", 4);
    put_u32(buf + 4, (uint32_t)(36 + bytes));
    memcpy(buf + 8, "WAVEfmt ", 8);
    put_u32(buf + 16, 16);
    put_u16(buf + 20, 1);
    put_u16(buf + 22, ch);
    put_u32(buf + 24, rate);
    put_u32(buf + 28, rate * ch * 2);
    put_u16(buf + 32, (uint16_t)(ch * 2));
    put_u16(buf + 34, 16);
    memcpy(buf + 36, "data", 4);
    put_u32(buf + 40, (uint32_t)bytes);
    int16_t *s = (int16_t *)(buf + 44);
    for (uint32_t i = 0; i < n; i++) {
        double t = (double)i / rate;
        double v = 0.3 * sin(2 * M_PI * 220 * t * (1 + 0.1 * sin(t))) + 0.1 * sin(2 * M_PI * 3100 * t);
        s[2 * i] = (int16_t)(v * 32767);
        s[2 * i + 1] = (int16_t)(-v * 20000);
    }
    char *path = strdup("/tmp/mmp-bench-audio-XXXXXX.wav");
    int fd = mkstemps(path, 4);
    if (fd < 0 || write(fd, buf, 44 + bytes) != (ssize_t)(44 + bytes)) {
        free(buf);
        free(path);
        return NULL;
    }
    close(fd);
    free(buf);
    return path;
}

typedef struct { const char *name; int d, layers, heads, ffn; } shape;

static int max4(int a, int b, int c, int d) {
    int m = a > b ? a : b;
    m = m > c ? m : c;
    return m > d ? m : d;
}

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 2.0f * scale;
    }
}

/* A synthetic encoder-only Whisper folder (names without prefix, config.json with the heads). */
static int write_model(const shape *sh, char *dir) {
    const int D = sh->d, F = sh->ffn, M = 80, P = 1500;
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    float *buf = malloc(sizeof(float) * (size_t)max4(D * F, D * M * 3, D * D * 3, D * P));
    if (!w || !buf) return -1;
    uint64_t seed = 1;
    char nm[128];
#define ADD(name, nd, ...) do { int64_t sh_[] = {__VA_ARGS__}; size_t n_ = 1; for (int i_ = 0; i_ < nd; i_++) n_ *= (size_t)sh_[i_]; \
        fill(buf, n_, seed++, 1.0f / sqrtf((float)sh_[nd - 1])); \
        if (strstr(name, "norm.weight")) for (size_t i_ = 0; i_ < n_; i_++) buf[i_] = 1.0f + 0.1f * buf[i_]; \
        if (mmp_safetensors_writer_add(w, name, MMP_TYPE_F32, nd, sh_, buf) != MMP_OK) return -1; } while (0)
    ADD("conv1.weight", 3, D, M, 3);
    ADD("conv1.bias", 1, D);
    ADD("conv2.weight", 3, D, D, 3);
    ADD("conv2.bias", 1, D);
    ADD("embed_positions.weight", 2, P, D);
    ADD("layer_norm.weight", 1, D);
    ADD("layer_norm.bias", 1, D);
    for (int l = 0; l < sh->layers; l++) {
        static const char *const sq[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "layers.%d.self_attn.%s.weight", l, sq[k]); ADD(nm, 2, D, D);
            if (k != 1) { snprintf(nm, sizeof nm, "layers.%d.self_attn.%s.bias", l, sq[k]); ADD(nm, 1, D); }
        }
        snprintf(nm, sizeof nm, "layers.%d.self_attn_layer_norm.weight", l); ADD(nm, 1, D);
        snprintf(nm, sizeof nm, "layers.%d.self_attn_layer_norm.bias", l); ADD(nm, 1, D);
        snprintf(nm, sizeof nm, "layers.%d.final_layer_norm.weight", l); ADD(nm, 1, D);
        snprintf(nm, sizeof nm, "layers.%d.final_layer_norm.bias", l); ADD(nm, 1, D);
        snprintf(nm, sizeof nm, "layers.%d.fc1.weight", l); ADD(nm, 2, F, D);
        snprintf(nm, sizeof nm, "layers.%d.fc1.bias", l); ADD(nm, 1, F);
        snprintf(nm, sizeof nm, "layers.%d.fc2.weight", l); ADD(nm, 2, D, F);
        snprintf(nm, sizeof nm, "layers.%d.fc2.bias", l); ADD(nm, 1, D);
    }
#undef ADD
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    enum mmp_status st = mmp_safetensors_writer_write(w, path);
    mmp_safetensors_writer_free(w);
    free(buf);
    if (st != MMP_OK) return -1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"model_type\": \"whisper\", \"d_model\": %d, \"encoder_layers\": %d, \"encoder_attention_heads\": %d, "
               "\"encoder_ffn_dim\": %d, \"num_mel_bins\": 80, \"max_source_positions\": 1500}\n",
            D, sh->layers, sh->heads, F);
    fclose(f);
    return 0;
}

static void rm_model(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
}

int main(int argc, char **argv) {
    int nth = 2;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else { fprintf(stderr, "usage: bench_audio [--threads N] [--quick]\n"); return 2; }
    }
    if (nth < 1) nth = 1;
    mmp_audio_quiet_ffmpeg();
    double la[3] = {0};
    if (getloadavg(la, 3) > 0) printf("load average %.2f (the machine may be shared)\n", la[0]);

    /* ---- 1. decode + mel ---- */
    char *wav = write_wav_30s();
    if (!wav) { fprintf(stderr, "bench_audio: cannot write the test WAV\n"); return 1; }
    float *x = NULL;
    int64_t n = 0;
    double best_dec = 1e30, best_mel = 1e30;
    mmp_mel *mel = mmp_mel_new(mmp_mel_params_default());
    float *feat = malloc(sizeof(float) * 80 * 3000);
    for (int r = 0; r < (quick ? 2 : 5); r++) {
        free(x);
        double t0 = mmpb_now();
        if (mmp_audio_decode_file(wav, 60, &x, &n, NULL) != MMP_OK) { fprintf(stderr, "%s\n", mmp_last_error()); return 1; }
        double t1 = mmpb_now();
        if (mmp_mel_compute(mel, x, n, feat) != MMP_OK) { fprintf(stderr, "%s\n", mmp_last_error()); return 1; }
        double t2 = mmpb_now();
        best_dec = fmin(best_dec, t1 - t0);
        best_mel = fmin(best_mel, t2 - t1);
    }
    printf("30 s of 44.1 kHz stereo WAV: decode + resample to 16 kHz mono %.1f ms (%.0fx real time), "
           "log-mel [80, 3000] %.1f ms (%.0fx real time), 1 thread\n",
           best_dec * 1e3, 30.0 / best_dec, best_mel * 1e3, 30.0 / best_mel);
    unlink(wav);
    free(wav);

    /* ---- 2. encoder ---- */
    double peak = mmpb_sgemm_gflops(2048, 2048, 2048, nth, quick ? 2 : 3);
    printf("sgemm peak (2048^3, %d threads): %.1f GFLOP/s\n", nth, peak);
    const shape shapes[2] = {{"whisper-base", 512, 6, 8, 2048}, {"whisper-small", 768, 12, 12, 3072}};
    for (int si = 0; si < (quick ? 1 : 2); si++) {
        const shape *sh = &shapes[si];
        char dir[] = "/tmp/mmp-bench-whisperXXXXXX";
        if (!mkdtemp(dir) || write_model(sh, dir) != 0) { fprintf(stderr, "cannot write the synthetic model\n"); return 1; }
        mmp_whisper *w = mmp_whisper_load(dir);
        if (!w) { fprintf(stderr, "%s\n", mmp_last_error()); return 1; }
        const double T = 1500, D = sh->d, F = sh->ffn, L = 3000;
        double flops = 2 * L * 80 * 3 * D + 2 * T * D * 3 * D +
                       sh->layers * (2 * T * D * D * 4 + 2 * T * D * F * 2 + 2 * 2 * T * T * D);
        float *out = malloc(sizeof(float) * 1500 * (size_t)sh->d);
        mmp_whisper_encode(w, feat, 3000, 0, out, nth, NULL, NULL);   /* warm-up */
        double best = 1e30;
        for (int r = 0; r < (quick ? 1 : 3); r++) {
            double t0 = mmpb_now();
            if (mmp_whisper_encode(w, feat, 3000, 0, out, nth, NULL, NULL) != MMP_OK) { fprintf(stderr, "%s\n", mmp_last_error()); return 1; }
            best = fmin(best, mmpb_now() - t0);
        }
        double shape_peak = mmpb_sgemm_gflops(1500, sh->ffn, sh->d, nth, quick ? 2 : 3);
        double gf = flops / best / 1e9;
        printf("%-13s encoder, 30 s window (3000 frames -> 1500 x %d), %d threads: %.0f ms, %.1f GFLOP/s = %.2f of sgemm peak "
               "(%.2f of sgemm at its FFN shape 1500x%dx%d: %.1f GFLOP/s)\n",
               sh->name, sh->d, nth, best * 1e3, gf, gf / peak, gf / shape_peak, sh->ffn, sh->d, shape_peak);
        free(out);
        mmp_whisper_free(w);
        rm_model(dir);
    }
    free(feat);
    free(x);
    mmp_mel_free(mel);
    return 0;
}
