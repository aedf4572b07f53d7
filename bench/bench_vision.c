/* bench_vision: the image path against the machine's own ceilings.
 *
 *   1. image encode at the CLIP ViT-L/14-336 shape (LLaVA-1.5's tower): 336x336 pixels, patch
 *      14 -> 576 patches + class token = 577 tokens, 24 layers, width 1024, 16 heads, FFN
 *      4096, quick_gelu. Synthetic f32 weights, written by the bench as a llama.cpp mmproj
 *      GGUF in /tmp (v.* / mm.* names, ~1.2 GB) and loaded with mmp_vit_load like a real one.
 *      Time and GFLOP/s, as a fraction of the OpenBLAS sgemm GFLOP/s measured in the same run
 *      at the tower's own FFN shape (577 x 4096 x 1024) and at 2048^3.
 *      FLOPs counted: 2*T*(4 d^2 + 2 d ff) per layer for the matrices + 4*T^2*d for attention
 *      (+ the patch embedding 2*576*d*3*14*14); norms and activations are not counted.
 *   2. where the time goes: the ops of one layer timed alone on graphs of the same shapes
 *      (matmuls q/k/v/o, fc1, fc2, attention, layer norms + activation + adds) x 24.
 *   3. projector + prefill for 576 image tokens: the LLaVA MLP (1024 -> n_embd -> n_embd) from
 *      the same GGUF and a small synthetic llama LLM (n_embd 1024, 8 layers, 16 heads, 4 kv
 *      heads, FFN 2816, vocab 8192, f32) prefilling the 576 rows as embeddings in one batch.
 *
 * The machine may be shared and noisy: the load average is printed next to the numbers, and
 * every time is the best of several runs.
 *
 * Usage: bench_vision [--threads N] [--quick]   (--quick: 6 layers instead of 24, 1 run) */
#include "ceilings.h"
#include "mmpipe/mmpipe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define D 1024
#define FF 4096
#define HEADS 16
#define PATCH 14
#define IMG 336
#define NPATCH 576
#define NTOK 577

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(float scale) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return scale * ((float)(rng >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
}
static float *rand_buf(size_t n, float scale) {
    float *x = malloc(n * sizeof *x);
    if (!x) { fprintf(stderr, "bench_vision: out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) x[i] = frand(scale);
    return x;
}
static float *const_buf(size_t n, float v) {
    float *x = malloc(n * sizeof *x);
    if (!x) { fprintf(stderr, "bench_vision: out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) x[i] = v;
    return x;
}

static void check(enum mmp_status st, const char *what) {
    if (st != MMP_OK) {
        fprintf(stderr, "bench_vision: %s: %s\n", what, mmp_last_error());
        exit(1);
    }
}

/* The mmproj GGUF of a ViT-L/14-336 tower (n_layer layers) + a 1024 -> E -> E MLP. One random
 * buffer per weight shape is shared by every layer (the writer copies at write time): the
 * values do not matter for timing, only that they are finite and not all zero. */
static void write_vit(const char *path, int n_layer, int E) {
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    if (!w) check(MMP_ERR_NOMEM, "writer");
    check(mmp_gguf_writer_add_str(w, "general.architecture", "clip"), "key");
    check(mmp_gguf_writer_add_bool(w, "clip.has_vision_encoder", true), "key");
    check(mmp_gguf_writer_add_bool(w, "clip.has_llava_projector", true), "key");
    check(mmp_gguf_writer_add_str(w, "clip.projector_type", "mlp"), "key");
    check(mmp_gguf_writer_add_u32(w, "clip.vision.image_size", IMG), "key");
    check(mmp_gguf_writer_add_u32(w, "clip.vision.patch_size", PATCH), "key");
    check(mmp_gguf_writer_add_u32(w, "clip.vision.embedding_length", D), "key");
    check(mmp_gguf_writer_add_u32(w, "clip.vision.feed_forward_length", FF), "key");
    check(mmp_gguf_writer_add_u32(w, "clip.vision.projection_dim", (uint32_t)E), "key");
    check(mmp_gguf_writer_add_u32(w, "clip.vision.attention.head_count", HEADS), "key");
    check(mmp_gguf_writer_add_u32(w, "clip.vision.block_count", (uint32_t)n_layer), "key");
    check(mmp_gguf_writer_add_f32(w, "clip.vision.attention.layer_norm_epsilon", 1e-5f), "key");
    float *ones = const_buf(FF, 1.0f), *zeros = const_buf(FF, 0.0f);
    float *patch = rand_buf((size_t)D * 3 * PATCH * PATCH, 0.02f), *pos = rand_buf((size_t)D * NTOK, 0.02f);
    float *wdd = rand_buf((size_t)D * D, 0.03f), *wdf = rand_buf((size_t)D * FF, 0.03f), *wfd = rand_buf((size_t)FF * D, 0.015f);
    float *m1 = rand_buf((size_t)D * E, 0.03f), *m2 = rand_buf((size_t)E * E, 0.03f);
    const int64_t pw[4] = {PATCH, PATCH, 3, D}, vd[1] = {D}, vf[1] = {FF}, pe[2] = {D, NTOK}, dd[2] = {D, D}, df[2] = {D, FF},
                  fd[2] = {FF, D}, e1[2] = {D, E}, e2[2] = {E, E}, ve[1] = {E};
    check(mmp_gguf_writer_add_tensor(w, "v.patch_embd.weight", MMP_TYPE_F32, 4, pw, patch), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "v.class_embd", MMP_TYPE_F32, 1, vd, pos), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "v.position_embd.weight", MMP_TYPE_F32, 2, pe, pos), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "v.pre_ln.weight", MMP_TYPE_F32, 1, vd, ones), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "v.pre_ln.bias", MMP_TYPE_F32, 1, vd, zeros), "tensor");
    for (int l = 0; l < n_layer; l++) {
        char n[64];
#define T(NAME, ND, NE, DATA) do { snprintf(n, sizeof n, "v.blk.%d." NAME, l); \
        check(mmp_gguf_writer_add_tensor(w, n, MMP_TYPE_F32, ND, NE, DATA), n); } while (0)
        T("ln1.weight", 1, vd, ones); T("ln1.bias", 1, vd, zeros);
        T("attn_q.weight", 2, dd, wdd); T("attn_q.bias", 1, vd, zeros);
        T("attn_k.weight", 2, dd, wdd); T("attn_k.bias", 1, vd, zeros);
        T("attn_v.weight", 2, dd, wdd); T("attn_v.bias", 1, vd, zeros);
        T("attn_out.weight", 2, dd, wdd); T("attn_out.bias", 1, vd, zeros);
        T("ln2.weight", 1, vd, ones); T("ln2.bias", 1, vd, zeros);
        T("ffn_up.weight", 2, df, wdf); T("ffn_up.bias", 1, vf, zeros);
        T("ffn_down.weight", 2, fd, wfd); T("ffn_down.bias", 1, vd, zeros);
#undef T
    }
    check(mmp_gguf_writer_add_tensor(w, "mm.0.weight", MMP_TYPE_F32, 2, e1, m1), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "mm.0.bias", MMP_TYPE_F32, 1, ve, zeros), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "mm.2.weight", MMP_TYPE_F32, 2, e2, m2), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "mm.2.bias", MMP_TYPE_F32, 1, ve, zeros), "tensor");
    check(mmp_gguf_writer_write(w, path), "write the ViT GGUF");
    mmp_gguf_writer_free(w);
    free(ones); free(zeros); free(patch); free(pos); free(wdd); free(wdf); free(wfd); free(m1); free(m2);
}

/* A small llama LLM (f32) for the prefill. */
typedef struct llm_shape { int n_embd, n_layer, n_head, n_kv, n_ff, n_vocab; } llm_shape;

static void write_llm(const char *path, const llm_shape *s) {
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    if (!w) check(MMP_ERR_NOMEM, "writer");
    check(mmp_gguf_writer_add_str(w, "general.architecture", "llama"), "key");
    check(mmp_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)s->n_embd), "key");
    check(mmp_gguf_writer_add_u32(w, "llama.block_count", (uint32_t)s->n_layer), "key");
    check(mmp_gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)s->n_head), "key");
    check(mmp_gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv), "key");
    check(mmp_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff), "key");
    check(mmp_gguf_writer_add_u32(w, "llama.context_length", 2048), "key");
    check(mmp_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)s->n_vocab), "key");
    check(mmp_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f), "key");
    check(mmp_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f), "key");
    const int64_t E = s->n_embd, kvd = (int64_t)s->n_kv * (E / s->n_head), F = s->n_ff, V = s->n_vocab;
    float *ones = const_buf((size_t)E, 1.0f), *emb = rand_buf((size_t)E * V, 0.02f), *wee = rand_buf((size_t)E * E, 0.03f),
          *wek = rand_buf((size_t)E * kvd, 0.03f), *wef = rand_buf((size_t)E * F, 0.03f), *wfe = rand_buf((size_t)F * E, 0.02f);
    const int64_t ve[1] = {E}, ev[2] = {E, V}, ee[2] = {E, E}, ek[2] = {E, kvd}, ef[2] = {E, F}, fe[2] = {F, E};
    check(mmp_gguf_writer_add_tensor(w, "token_embd.weight", MMP_TYPE_F32, 2, ev, emb), "tensor");
    for (int l = 0; l < s->n_layer; l++) {
        char n[64];
#define T(NAME, ND, NE, DATA) do { snprintf(n, sizeof n, "blk.%d." NAME, l); \
        check(mmp_gguf_writer_add_tensor(w, n, MMP_TYPE_F32, ND, NE, DATA), n); } while (0)
        T("attn_norm.weight", 1, ve, ones); T("attn_q.weight", 2, ee, wee); T("attn_k.weight", 2, ek, wek);
        T("attn_v.weight", 2, ek, wek); T("attn_output.weight", 2, ee, wee); T("ffn_norm.weight", 1, ve, ones);
        T("ffn_gate.weight", 2, ef, wef); T("ffn_up.weight", 2, ef, wef); T("ffn_down.weight", 2, fe, wfe);
#undef T
    }
    check(mmp_gguf_writer_add_tensor(w, "output_norm.weight", MMP_TYPE_F32, 1, ve, ones), "tensor");
    check(mmp_gguf_writer_add_tensor(w, "output.weight", MMP_TYPE_F32, 2, ev, emb), "tensor");
    check(mmp_gguf_writer_write(w, path), "write the LLM GGUF");
    mmp_gguf_writer_free(w);
    free(ones); free(emb); free(wee); free(wek); free(wef); free(wfe);
}

/* ---- one op alone: best time of `reps` computes of a graph built by `build` ---- */

typedef mmp_tensor *(*build_fn)(mmp_graph *g, float **bufs);

static float *g_wdd, *g_wdf, *g_wfd, *g_vd, *g_vf;

static mmp_tensor *in2(mmp_graph *g, int64_t ne0, int64_t ne1) { return mmp_new_tensor_2d(g, MMP_TYPE_F32, ne0, ne1); }
static mmp_tensor *ext2(mmp_graph *g, float *d, int64_t ne0, int64_t ne1) {
    int64_t ne[2] = {ne0, ne1};
    return mmp_new_tensor_ext(g, MMP_TYPE_F32, 2, ne, d);
}
static mmp_tensor *ext1(mmp_graph *g, float *d, int64_t ne0) {
    int64_t ne[1] = {ne0};
    return mmp_new_tensor_ext(g, MMP_TYPE_F32, 1, ne, d);
}
/* W [d, d] x [d, T] (one of q/k/v/o) */
static mmp_tensor *b_mm_dd(mmp_graph *g, float **b) { (void)b; return mmp_mul_mat(g, ext2(g, g_wdd, D, D), in2(g, D, NTOK)); }
static mmp_tensor *b_mm_df(mmp_graph *g, float **b) { (void)b; return mmp_mul_mat(g, ext2(g, g_wdf, D, FF), in2(g, D, NTOK)); }
static mmp_tensor *b_mm_fd(mmp_graph *g, float **b) { (void)b; return mmp_mul_mat(g, ext2(g, g_wfd, FF, D), in2(g, FF, NTOK)); }
/* attention of 16 heads of 64 over 577 tokens: q, k, v [64, T, 16] -> [64, 16, T] */
static mmp_tensor *b_attn(mmp_graph *g, float **b) {
    (void)b;
    mmp_tensor *q = mmp_new_tensor_3d(g, MMP_TYPE_F32, D / HEADS, NTOK, HEADS);
    mmp_tensor *k = mmp_new_tensor_3d(g, MMP_TYPE_F32, D / HEADS, NTOK, HEADS);
    mmp_tensor *v = mmp_new_tensor_3d(g, MMP_TYPE_F32, D / HEADS, NTOK, HEADS);
    return mmp_attn(g, q, k, v, NULL, 0.125f, false, 0);
}
/* what else a layer does: the head permutes (3 conts), 2 layer norms, the activation, 4 bias
 * adds + 2 residual adds */
static mmp_tensor *b_misc(mmp_graph *g, float **b) {
    (void)b;
    mmp_tensor *x = in2(g, D, NTOK), *h = in2(g, FF, NTOK), *qkv = in2(g, D, NTOK);
    mmp_tensor *acc = NULL;
    for (int i = 0; i < 3; i++) {
        mmp_tensor *p = mmp_cont(g, mmp_permute(g, mmp_reshape_3d(g, qkv, D / HEADS, HEADS, NTOK), 0, 2, 1, 3));
        acc = acc ? mmp_add(g, acc, mmp_reshape_2d(g, p, D, NTOK)) : mmp_reshape_2d(g, p, D, NTOK);
    }
    mmp_tensor *n1 = mmp_layer_norm(g, x, ext1(g, g_vd, D), ext1(g, g_vd, D), 1e-5f);
    mmp_tensor *n2 = mmp_layer_norm(g, n1, ext1(g, g_vd, D), ext1(g, g_vd, D), 1e-5f);
    mmp_tensor *a = mmp_quick_gelu(g, mmp_add(g, h, ext1(g, g_vf, FF)));
    mmp_set_output(a);
    mmp_tensor *y = mmp_add(g, n2, ext1(g, g_vd, D));
    for (int i = 0; i < 4; i++) y = mmp_add(g, y, i % 2 ? acc : x);
    return y;
}

static double time_graph(mmp_backend *be, build_fn build, int reps) {
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    if (!g) check(MMP_ERR_NOMEM, "graph");
    mmp_tensor *out = mmp_set_output(build(g, NULL));
    if (!out) check(MMP_ERR_SHAPE, "build an op graph");
    check(mmp_graph_plan(be, g), "plan");
    /* inputs: small finite values everywhere the planner put an input */
    for (int32_t i = 0; i < mmp_graph_n_tensors(g); i++) {
        mmp_tensor *t = mmp_graph_tensor(g, i);
        if (t->op == MMP_OP_NONE && t->data && t->type == MMP_TYPE_F32 && t->data != g_wdd && t->data != g_wdf &&
            t->data != g_wfd && t->data != g_vd && t->data != g_vf) {
            float *d = t->data;
            for (int64_t j = 0; j < mmp_nelements(t); j++) d[j] = 0.01f * (float)((j * 7) % 13);
        }
    }
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = mmpb_now();
        check(mmp_graph_compute(be, g, NULL, NULL), "compute");
        double dt = mmpb_now() - t0;
        if (r > 0 && dt < best) best = dt; /* the first run warms up */
    }
    mmp_graph_free(g);
    return best;
}

int main(int argc, char **argv) {
    int nth = (int)sysconf(_SC_NPROCESSORS_ONLN);
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else { fprintf(stderr, "usage: bench_vision [--threads N] [--quick]\n"); return 2; }
    }
    if (nth < 1) nth = 1;
    const int n_layer = quick ? 6 : 24, reps = quick ? 1 : 3;
    const llm_shape ls = {1024, 8, 16, 4, 2816, 8192};
    double la[3] = {0};
    getloadavg(la, 3);
    printf("bench_vision: %d threads, %s; load average %.2f %.2f %.2f (the machine may be shared)\n", nth,
           quick ? "quick (6 layers)" : "CLIP ViT-L/14-336, 24 layers", la[0], la[1], la[2]);

    /* ceilings */
    double peak_ffn = mmpb_sgemm_gflops(NTOK, FF, D, nth, quick ? 2 : 5);
    double peak_big = mmpb_sgemm_gflops(2048, 2048, 2048, nth, quick ? 1 : 3);
    double peak = peak_ffn > peak_big ? peak_ffn : peak_big;
    printf("sgemm (OpenBLAS): %.1f GFLOP/s at 577x4096x1024, %.1f GFLOP/s at 2048^3 -> peak %.1f\n", peak_ffn, peak_big, peak);

    /* the tower */
    char vpath[] = "/tmp/mmp-bench-vit-XXXXXX.gguf", lpath[] = "/tmp/mmp-bench-llm-XXXXXX.gguf";
    int fd = mkstemps(vpath, 5);
    if (fd < 0) { perror("mkstemps"); return 1; }
    close(fd);
    fd = mkstemps(lpath, 5);
    if (fd < 0) { perror("mkstemps"); return 1; }
    close(fd);
    double t0 = mmpb_now();
    write_vit(vpath, n_layer, ls.n_embd);
    write_llm(lpath, &ls);
    printf("wrote the synthetic models in %.1f s\n", mmpb_now() - t0);
    mmp_vit *vit = mmp_vit_load(vpath);
    if (!vit) check(MMP_ERR_FORMAT, vpath);
    mmp_vit_params vp = mmp_vit_params_default();
    vp.n_threads = nth;
    float *px = rand_buf((size_t)3 * IMG * IMG, 1.0f);
    float *hid = malloc((size_t)NTOK * D * sizeof *hid);
    if (!hid) return 1;
    double t_enc = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double s = mmpb_now();
        check(mmp_vit_encode(vit, px, IMG, IMG, &vp, hid, NULL), "encode");
        double dt = mmpb_now() - s;
        if ((r > 0 || reps == 1) && dt < t_enc) t_enc = dt;
    }
    for (size_t i = 0; i < (size_t)NTOK * D; i++)
        if (!isfinite(hid[i])) { fprintf(stderr, "bench_vision: non-finite hidden state\n"); return 1; }
    const double flop_layer = 2.0 * NTOK * (4.0 * D * D + 2.0 * D * FF) + 4.0 * NTOK * (double)NTOK * D;
    const double flop_enc = n_layer * flop_layer + 2.0 * NPATCH * D * 3.0 * PATCH * PATCH;
    double gf_enc = flop_enc / t_enc / 1e9;
    getloadavg(la, 3);

    /* per-op */
    mmp_backend *be = mmp_backend_cpu_new(nth);
    if (!be) return 1;
    g_wdd = rand_buf((size_t)D * D, 0.03f);
    g_wdf = rand_buf((size_t)D * FF, 0.03f);
    g_wfd = rand_buf((size_t)FF * D, 0.015f);
    g_vd = const_buf(D, 1.0f);
    g_vf = const_buf(FF, 0.0f);
    int oreps = quick ? 2 : 5;
    double t_dd = time_graph(be, b_mm_dd, oreps), t_df = time_graph(be, b_mm_df, oreps), t_fd = time_graph(be, b_mm_fd, oreps);
    double t_at = time_graph(be, b_attn, oreps), t_misc = time_graph(be, b_misc, oreps);
    double t_layer_ops = 4 * t_dd + t_df + t_fd + t_at + t_misc;

    /* projector + prefill */
    mmp_projector *proj = mmp_projector_load(vpath);
    if (!proj) check(MMP_ERR_FORMAT, "projector");
    mmp_llm *llm = mmp_llm_load(lpath, NULL);
    if (!llm) check(MMP_ERR_FORMAT, lpath);
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 1024;
    cp.n_threads = nth;
    mmp_llm_ctx *ctx = mmp_llm_ctx_new(llm, &cp);
    if (!ctx) check(MMP_ERR_NOMEM, "llm context");
    float *feat = rand_buf((size_t)NPATCH * D, 1.0f), *emb = malloc((size_t)NPATCH * ls.n_embd * sizeof *emb);
    float *logits = malloc((size_t)ls.n_vocab * sizeof *logits);
    if (!emb || !logits) return 1;
    double t_proj = 1e30, t_pre = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double s = mmpb_now();
        check(mmp_projector_run(proj, feat, NPATCH, emb, nth), "projector");
        double dt = mmpb_now() - s;
        if ((r > 0 || reps == 1) && dt < t_proj) t_proj = dt;
        check(mmp_llm_ctx_truncate(ctx, 0), "truncate");
        mmp_llm_batch b = {.n = NPATCH, .embd = emb, .logits = logits};
        s = mmpb_now();
        check(mmp_llm_decode(ctx, &b), "prefill");
        dt = mmpb_now() - s;
        if ((r > 0 || reps == 1) && dt < t_pre) t_pre = dt;
    }
    const double E = ls.n_embd, kvd = (double)ls.n_kv * (E / ls.n_head);
    const double flop_proj = 2.0 * NPATCH * (D * E + E * E);
    const double flop_pre = ls.n_layer * (2.0 * NPATCH * (2 * E * E + 2 * E * kvd + 3 * E * ls.n_ff) +
                                          2.0 * NPATCH * (double)NPATCH * E) + 2.0 * E * ls.n_vocab;
    double la2[3] = {0};
    getloadavg(la2, 3);

    printf("\n%-44s %10s %10s %9s %8s\n", "stage", "time ms", "GFLOP/s", "of peak", "load");
    printf("%-44s %10.1f %10.1f %9.2f %8.2f\n", "ViT-L/14-336 encode (577 tok)", t_enc * 1e3, gf_enc, gf_enc / peak, la[0]);
    printf("%-44s %10.1f %10.1f %9.2f\n", "  per layer (encode / layers)", t_enc * 1e3 / n_layer, flop_layer / (t_enc / n_layer) / 1e9,
           flop_layer / (t_enc / n_layer) / 1e9 / peak);
    printf("  one layer's ops timed alone (x %d layers = %.0f ms; the rest is graph overhead):\n", n_layer, t_layer_ops * n_layer * 1e3);
    struct { const char *n; double t, f; } ops[] = {
        {"    4 x matmul d x d (q, k, v, out)", 4 * t_dd, 4 * 2.0 * NTOK * D * D},
        {"    fc1 matmul d -> ff", t_df, 2.0 * NTOK * D * FF},
        {"    fc2 matmul ff -> d", t_fd, 2.0 * NTOK * D * FF},
        {"    attention (16 heads, 577 x 577)", t_at, 4.0 * NTOK * (double)NTOK * D},
        {"    norms, act, adds, head permutes", t_misc, 0},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (ops[i].f > 0)
            printf("%-44s %10.2f %10.1f %9.2f   %4.1f%% of the layer\n", ops[i].n, ops[i].t * 1e3, ops[i].f / ops[i].t / 1e9,
                   ops[i].f / ops[i].t / 1e9 / peak, 100 * ops[i].t / t_layer_ops);
        else
            printf("%-44s %10.2f %10s %9s   %4.1f%% of the layer\n", ops[i].n, ops[i].t * 1e3, "-", "-", 100 * ops[i].t / t_layer_ops);
    }
    printf("%-44s %10.1f %10.1f %9.2f %8.2f\n", "LLaVA MLP projector (576 x 1024 -> 1024)", t_proj * 1e3, flop_proj / t_proj / 1e9,
           flop_proj / t_proj / 1e9 / peak, la2[0]);
    printf("%-44s %10.1f %10.1f %9.2f %8.2f\n", "prefill 576 image rows (llama 1024 x 8, f32)", t_pre * 1e3, flop_pre / t_pre / 1e9,
           flop_pre / t_pre / 1e9 / peak, la2[0]);
    printf("%-44s %10.1f\n", "image -> LLM ready (encode + proj + prefill)", (t_enc + t_proj + t_pre) * 1e3);
    printf("\ntarget: encode >= 0.60 of sgemm peak: %s (%.2f)\n", gf_enc / peak >= 0.6 ? "met" : "NOT met", gf_enc / peak);

    free(feat); free(emb); free(logits); free(px); free(hid);
    free(g_wdd); free(g_wdf); free(g_wfd); free(g_vd); free(g_vf);
    mmp_llm_ctx_free(ctx);
    mmp_llm_free(llm);
    mmp_projector_free(proj);
    mmp_backend_free(be);
    mmp_vit_free(vit);
    unlink(vpath);
    unlink(lpath);
    return 0;
}
