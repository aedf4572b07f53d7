/* bench_attn: prefill attention (mmp_attn, the CPU backend's GEMM path) alone at the encoder
 * shapes that dominate: SD1.5 UNet self-attention (4096 tokens, 8 heads x 40, batch 2),
 * Whisper (1500 tokens, 8 x 64), CLIP ViT-L (577 tokens, 16 x 64) and the SD VAE's mid-block
 * attention (4096 tokens, one 512-wide head). Inputs are random
 * (values do not matter for speed); the time is the best of a few calls after one warm-up.
 * FLOPs: 2 * Tq * Tk * (D + Dv) per head.
 *
 *   bench_attn [-t threads] [-r runs] */
#include "mmpipe/mmpipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(mmp_backend *be, const char *name, int64_t D, int64_t T, int64_t H, int64_t B, int reps) {
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    if (!g) return 1;
    mmp_tensor *q = mmp_new_tensor_4d(g, MMP_TYPE_F32, D, T, H, B);
    mmp_tensor *k = mmp_new_tensor_4d(g, MMP_TYPE_F32, D, T, H, B);
    mmp_tensor *v = mmp_new_tensor_4d(g, MMP_TYPE_F32, D, T, H, B);
    mmp_tensor *o = q && k && v ? mmp_attn(g, q, k, v, NULL, 0.125f, false, 0) : NULL;
    if (o) mmp_set_output(o);
    if (!o || mmp_graph_plan(be, g) != MMP_OK) {
        fprintf(stderr, "%s: %s\n", name, mmp_last_error());
        mmp_graph_free(g);
        return 1;
    }
    const int64_t n = D * T * H * B;
    float *buf = malloc((size_t)n * sizeof(float));
    if (!buf) { mmp_graph_free(g); return 1; }
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        buf[i] = (float)((s >> 40) & 0xffff) / 32768.0f - 1.0f;
    }
    mmp_tensor *in[3] = {q, k, v};
    for (int i = 0; i < 3; i++) mmp_backend_tensor_set(be, in[i], buf, 0, (size_t)n * sizeof(float));
    free(buf);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now_s();
        if (mmp_graph_compute(be, g, NULL, NULL) != MMP_OK) {
            fprintf(stderr, "%s: %s\n", name, mmp_last_error());
            mmp_graph_free(g);
            return 1;
        }
        double dt = now_s() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    const double fl = 2.0 * (double)(T * T) * (double)(2 * D) * (double)(H * B);
    printf("%-28s D %3lld T %5lld H %2lld B %lld: %8.2f ms %7.1f GFLOP/s\n", name, (long long)D, (long long)T,
           (long long)H, (long long)B, best * 1e3, fl / best * 1e-9);
    mmp_graph_free(g);
    return 0;
}

int main(int argc, char **argv) {
    int nth = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [-t threads] [-r runs]\n", argv[0]); return 2; }
    }
    mmp_backend *be = mmp_backend_cpu_new(nth);
    if (!be) { fprintf(stderr, "%s\n", mmp_last_error()); return 1; }
    double la[3] = {0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = -1; fclose(f); }
    printf("bench_attn: load average %.2f %.2f %.2f\n", la[0], la[1], la[2]);
    int rc = 0;
    rc |= run(be, "UNet 64x64 self-attn", 40, 4096, 8, 2, reps);
    rc |= run(be, "Whisper encoder", 64, 1500, 8, 1, reps);
    rc |= run(be, "CLIP ViT-L/14-336", 64, 577, 16, 1, reps);
    rc |= run(be, "SD VAE mid-block (64x64)", 512, 4096, 1, 1, reps);
    mmp_backend_free(be);
    return rc;
}
