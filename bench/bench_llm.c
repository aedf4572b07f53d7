/* bench_llm: decode and prefill speed of the LLM backbone on synthetic models, each as a
 * fraction of the machine's ceilings measured in the same run (bench/ceilings.h).
 *
 * Models (written by this program as GGUF files in $TMPDIR or /tmp, deterministic random
 * weights, removed at the end):
 *   moe:   Mixtral-like: n_embd 1024, 8 layers, 16 heads / 4 KV heads, 8 experts top-2 with
 *          expert FFN width F (2048; 1024 with --quick), vocab 8192;
 *   dense: the same with one dense FFN of width 2F, i.e. the same ACTIVE parameters per token.
 * in F32, Q8_0 and Q4_0 (norms and router F32, as llama-quantize leaves them).
 *
 * Decode: time per token (one token per mmp_llm_decode after a 64-token prompt) against
 *   bytes of weights touched per token (attention + router + the k chosen experts + output) /
 *   memory read bandwidth. Target >= 0.7.
 * Prefill: 512 tokens in one batch against FLOPs (2 * active params * tokens + attention) /
 *   OpenBLAS sgemm peak (M 512, N 2048, K 1024). Target >= 0.6.
 * MoE vs dense decode time ratio: target <= 1.2. */
#include "ceilings.h"
#include "mmpipe/mmpipe.h"
#include "mmpipe/llm.h"

#include <math.h>
#include <unistd.h>

typedef struct {
    int n_embd, n_layer, n_head, n_kv, n_ff, n_expert, n_used, n_vocab;
} shape;

typedef struct {
    void *bufs[4096];
    int n;
} keeper;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

/* Random tensor {ne0, ne1, ne2} of `type`, values uniform in +-scale. */
static int add_tensor(mmp_gguf_writer *w, keeper *kp, const char *name, enum mmp_type type, int n_dims, int64_t ne0,
                      int64_t ne1, int64_t ne2, float scale, float bias) {
    int64_t rows = ne1 * ne2;
    size_t rs = mmp_row_size(type, ne0);
    char *data = malloc(rs * (size_t)rows);
    float *row = malloc((size_t)ne0 * sizeof(float));
    if (!data || !row || kp->n == 4096) { fprintf(stderr, "bench_llm: out of memory\n"); exit(1); }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < ne0; i++) row[i] = bias + scale * frand();
        if (type == MMP_TYPE_F32) memcpy(data + r * rs, row, rs);
        else if (mmp_quantize_row(type, row, data + r * rs, ne0) != MMP_OK) {
            fprintf(stderr, "bench_llm: quantize %s: %s\n", name, mmp_last_error());
            exit(1);
        }
    }
    free(row);
    kp->bufs[kp->n++] = data;
    int64_t ne[3] = {ne0, ne1, ne2};
    if (mmp_gguf_writer_add_tensor(w, name, type, n_dims, ne, data) != MMP_OK) {
        fprintf(stderr, "bench_llm: %s\n", mmp_last_error());
        exit(1);
    }
    return 0;
}

static void write_model(const char *path, const shape *s, enum mmp_type wt) {
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    keeper *kp = calloc(1, sizeof *kp);
    if (!w || !kp) exit(1);
    rng_state = 0x9E3779B97F4A7C15ull;
    const int hd = s->n_embd / s->n_head;
    mmp_gguf_writer_add_str(w, "general.architecture", "llama");
    mmp_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)s->n_embd);
    mmp_gguf_writer_add_u32(w, "llama.block_count", (uint32_t)s->n_layer);
    mmp_gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)s->n_head);
    mmp_gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv);
    mmp_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff);
    mmp_gguf_writer_add_u32(w, "llama.context_length", 2048);
    mmp_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)s->n_vocab);
    mmp_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
    mmp_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (s->n_expert) {
        mmp_gguf_writer_add_u32(w, "llama.expert_count", (uint32_t)s->n_expert);
        mmp_gguf_writer_add_u32(w, "llama.expert_used_count", (uint32_t)s->n_used);
    }
    const float sc = 1.0f / sqrtf((float)s->n_embd), scf = 1.0f / sqrtf((float)s->n_ff);
    const int64_t E = s->n_embd, F = s->n_ff, X = s->n_expert;
    add_tensor(w, kp, "token_embd.weight", wt, 2, E, s->n_vocab, 1, 1.0f, 0.0f);
    add_tensor(w, kp, "output_norm.weight", MMP_TYPE_F32, 1, E, 1, 1, 0.1f, 1.0f);
    add_tensor(w, kp, "output.weight", wt, 2, E, s->n_vocab, 1, sc, 0.0f);
    char n[96];
    for (int il = 0; il < s->n_layer; il++) {
#define BLK(x) (snprintf(n, sizeof n, "blk.%d." x, il), n)
        add_tensor(w, kp, BLK("attn_norm.weight"), MMP_TYPE_F32, 1, E, 1, 1, 0.1f, 1.0f);
        add_tensor(w, kp, BLK("ffn_norm.weight"), MMP_TYPE_F32, 1, E, 1, 1, 0.1f, 1.0f);
        add_tensor(w, kp, BLK("attn_q.weight"), wt, 2, E, (int64_t)s->n_head * hd, 1, sc, 0.0f);
        add_tensor(w, kp, BLK("attn_k.weight"), wt, 2, E, (int64_t)s->n_kv * hd, 1, sc, 0.0f);
        add_tensor(w, kp, BLK("attn_v.weight"), wt, 2, E, (int64_t)s->n_kv * hd, 1, sc, 0.0f);
        add_tensor(w, kp, BLK("attn_output.weight"), wt, 2, (int64_t)s->n_head * hd, E, 1, sc, 0.0f);
        if (X) {
            add_tensor(w, kp, BLK("ffn_gate_inp.weight"), MMP_TYPE_F32, 2, E, X, 1, sc, 0.0f);
            add_tensor(w, kp, BLK("ffn_gate_exps.weight"), wt, 3, E, F, X, sc, 0.0f);
            add_tensor(w, kp, BLK("ffn_up_exps.weight"), wt, 3, E, F, X, sc, 0.0f);
            add_tensor(w, kp, BLK("ffn_down_exps.weight"), wt, 3, F, E, X, scf, 0.0f);
        } else {
            add_tensor(w, kp, BLK("ffn_gate.weight"), wt, 2, E, F, 1, sc, 0.0f);
            add_tensor(w, kp, BLK("ffn_up.weight"), wt, 2, E, F, 1, sc, 0.0f);
            add_tensor(w, kp, BLK("ffn_down.weight"), wt, 2, F, E, 1, scf, 0.0f);
        }
#undef BLK
    }
    if (mmp_gguf_writer_write(w, path) != MMP_OK) {
        fprintf(stderr, "bench_llm: write %s: %s\n", path, mmp_last_error());
        exit(1);
    }
    mmp_gguf_writer_free(w);
    for (int i = 0; i < kp->n; i++) free(kp->bufs[i]);
    free(kp);
}

/* Bytes of weights one decoded token reads, and matmul FLOPs per token (2 per weight). */
static void active_cost(const shape *s, enum mmp_type wt, double *bytes, double *flops) {
    const int hd = s->n_embd / s->n_head;
    const double E = s->n_embd;
    double attn_params = E * s->n_head * hd * 2 + E * s->n_kv * hd * 2;
    double ffn_params = 3.0 * E * s->n_ff * (s->n_expert ? s->n_used : 1);
    double bpw = (double)mmp_row_size(wt, 1024) / 1024.0;
    double per_layer_b = (attn_params + ffn_params) * bpw + (s->n_expert ? E * s->n_expert * 4 : 0) + 2 * E * 4;
    *bytes = s->n_layer * per_layer_b + E * s->n_vocab * bpw + E * 4;
    *flops = 2.0 * (s->n_layer * (attn_params + ffn_params + (s->n_expert ? E * s->n_expert : 0)) + E * s->n_vocab);
}

typedef struct { double decode_s, prefill_s; } timing;

static timing run_model(const char *path, const shape *s, int nth, int n_decode, int n_prefill) {
    mmp_llm *m = mmp_llm_load(path, NULL);
    if (!m) { fprintf(stderr, "bench_llm: load: %s\n", mmp_last_error()); exit(1); }
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = n_prefill + 64;
    cp.n_threads = nth;
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, &cp);
    if (!c) { fprintf(stderr, "bench_llm: ctx: %s\n", mmp_last_error()); exit(1); }
    int32_t *toks = malloc((size_t)n_prefill * sizeof *toks);
    float *logits = malloc((size_t)s->n_vocab * sizeof(float));
    for (int i = 0; i < n_prefill; i++) toks[i] = (int32_t)((i * 7919u + 13u) % (unsigned)s->n_vocab);
    timing t = {1e30, 1e30};
    /* prefill: best of 2 */
    for (int r = 0; r < 2; r++) {
        mmp_llm_ctx_truncate(c, 0);
        double t0 = mmpb_now();
        mmp_llm_batch b = {.n = n_prefill, .tokens = toks, .logits = logits};
        if (mmp_llm_decode(c, &b) != MMP_OK) { fprintf(stderr, "bench_llm: prefill: %s\n", mmp_last_error()); exit(1); }
        double dt = mmpb_now() - t0;
        if (dt < t.prefill_s) t.prefill_s = dt;
    }
    /* decode after a 64-token prompt: mean time per token over n_decode greedy steps */
    mmp_llm_ctx_truncate(c, 0);
    mmp_llm_batch b = {.n = 64, .tokens = toks, .logits = logits};
    if (mmp_llm_decode(c, &b) != MMP_OK) { fprintf(stderr, "bench_llm: prompt: %s\n", mmp_last_error()); exit(1); }
    int32_t tok = toks[64];
    for (int i = 0; i < 2; i++) { /* warm-up: graph buffer sized for one token */
        mmp_llm_batch d = {.n = 1, .tokens = &tok, .logits = logits};
        if (mmp_llm_decode(c, &d) != MMP_OK) { fprintf(stderr, "bench_llm: decode: %s\n", mmp_last_error()); exit(1); }
    }
    double t0 = mmpb_now();
    for (int i = 0; i < n_decode; i++) {
        mmp_llm_batch d = {.n = 1, .tokens = &tok, .logits = logits};
        if (mmp_llm_decode(c, &d) != MMP_OK) { fprintf(stderr, "bench_llm: decode: %s\n", mmp_last_error()); exit(1); }
        int best = 0;
        for (int v = 1; v < s->n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        tok = best;
    }
    t.decode_s = (mmpb_now() - t0) / n_decode;
    free(toks);
    free(logits);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
    return t;
}

/* The same decode through the pipeline's generation stage (backbone.generate: greedy sampling,
 * stop handling, streaming hooks) on a 64-token prompt: seconds per decoded token, from the
 * stage's progress events (token 1 is sampled from the prompt's logits; tokens 2..n each cost
 * one decode). */
typedef struct gen_clock { double t_first, t_last; int64_t n_last; } gen_clock;
static void gen_progress(const char *what, int64_t done, int64_t total, void *user) {
    (void)total;
    gen_clock *c = user;
    if (strcmp(what, "tokens") != 0) return;
    double t = mmpb_now();
    if (done == 1) c->t_first = t;
    c->t_last = t;
    c->n_last = done;
}

/* Bare greedy decode (the loop of run_model) on an open context: seconds per token. */
static double bare_decode(mmp_llm_ctx *c, const int32_t *prompt, int n_prompt, float *logits, int n_vocab, int n_decode) {
    mmp_llm_ctx_truncate(c, 0);
    mmp_llm_batch b = {.n = n_prompt, .tokens = prompt, .logits = logits};
    if (mmp_llm_decode(c, &b) != MMP_OK) { fprintf(stderr, "bench_llm: prompt: %s\n", mmp_last_error()); exit(1); }
    int32_t tok = 0;
    double t0 = mmpb_now();
    for (int i = 0; i < n_decode; i++) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        tok = best;
        mmp_llm_batch d = {.n = 1, .tokens = &tok, .logits = logits};
        if (mmp_llm_decode(c, &d) != MMP_OK) { fprintf(stderr, "bench_llm: decode: %s\n", mmp_last_error()); exit(1); }
    }
    return (mmpb_now() - t0) / n_decode;
}

/* Pipeline overhead: the bare loop and backbone.generate on the same model and prompt,
 * alternated 3 times (best of each), so that a busy machine hits both alike. */
static void run_generate_stage(const char *path, const shape *s, int nth, int n_decode, double *bare_s, double *stage_s) {
    mmp_registry *reg = mmp_registry_new();
    char opts[128];
    snprintf(opts, sizeof opts, "n=%d,temp=0,ctx=%d,keep=0", n_decode + 1, 64 + n_decode + 8);
    gen_clock clk = {0, 0, 0};
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = path;
    sp.options = opts;
    sp.n_threads = nth;
    sp.progress = gen_progress;
    sp.cb_user = &clk;
    mmp_stage *st = reg ? mmp_stage_new(mmp_registry_find(reg, "backbone.generate"), &sp) : NULL;
    mmp_llm *m = mmp_llm_load(path, NULL);
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 64 + n_decode + 8;
    cp.n_threads = nth;
    mmp_llm_ctx *c = m ? mmp_llm_ctx_new(m, &cp) : NULL;
    if (!st || !c) { fprintf(stderr, "bench_llm: generate: %s\n", mmp_last_error()); exit(1); }
    int64_t dims[1] = {64};
    mmp_array *ids = mmp_array_new(MMP_TYPE_I32, 1, dims);
    for (int i = 0; i < 64; i++) ((int32_t *)ids->data)[i] = (int32_t)((i * 7919u + 13u) % (unsigned)s->n_vocab);
    float *logits = malloc((size_t)s->n_vocab * sizeof(float));
    *bare_s = *stage_s = 1e30;
    for (int r = 0; r < 3; r++) {
        double b = bare_decode(c, ids->data, 64, logits, s->n_vocab, n_decode);
        if (b < *bare_s) *bare_s = b;
        const mmp_array *in[2] = {NULL, ids};
        mmp_array *out[3] = {NULL, NULL, NULL};
        if (mmp_stage_run(st, in, out) != MMP_OK) { fprintf(stderr, "bench_llm: generate: %s\n", mmp_last_error()); exit(1); }
        for (int k = 0; k < 3; k++) mmp_array_free(out[k]);
        if (clk.n_last > 1) {
            double per = (clk.t_last - clk.t_first) / (double)(clk.n_last - 1);
            if (per < *stage_s) *stage_s = per;
        }
    }
    free(logits);
    mmp_array_free(ids);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
    mmp_stage_free(st);
    mmp_registry_free(reg);
}

int main(int argc, char **argv) {
    int quick = 0, nth = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nth = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--threads N]\n", argv[0]);
            return 2;
        }
    }
    if (nth < 1 || nth > MMPB_MAX_THREADS) nth = 2;
    const int n_prefill = 512, n_decode = quick ? 16 : 64;
    const int F = quick ? 1024 : 2048;
    shape moe = {1024, 8, 16, 4, F, 8, 2, 8192};
    shape dense = moe;
    dense.n_ff = 2 * F;
    dense.n_expert = dense.n_used = 0;

    printf("mmpipe bench_llm%s  (%s), %d thread%s\n\n", quick ? " --quick" : "", mmp_version(), nth, nth > 1 ? "s" : "");
    double bw = mmpb_read_bandwidth(quick ? ((size_t)256 << 20) : ((size_t)1 << 30), nth, quick ? 3 : 5);
    double gf = mmpb_sgemm_gflops(512, 2048, 1024, nth, quick ? 1 : 3);
    printf("ceilings: memory read %.2f GB/s, sgemm 512x2048x1024 %.1f GFLOP/s\n\n", bw, gf);
    printf("%-6s %-5s %9s %9s %8s %8s | %10s %9s %8s\n", "model", "type", "MB/token", "ms/token", "tok/s", "frac_bw",
           "prefill/s", "GFLOP/s", "frac_mm");

    const char *tmp = getenv("TMPDIR");
    if (!tmp) tmp = "/tmp";
    const enum mmp_type types[3] = {MMP_TYPE_F32, MMP_TYPE_Q8_0, MMP_TYPE_Q4_0};
    for (int ti = 0; ti < 3; ti++) {
        double dec[2] = {0, 0};
        for (int mi = 0; mi < 2; mi++) {
            const shape *s = mi == 0 ? &moe : &dense;
            char path[512];
            snprintf(path, sizeof path, "%s/mmp_bench_llm_%d_%s.gguf", tmp, (int)getpid(), mi == 0 ? "moe" : "dense");
            write_model(path, s, types[ti]);
            timing t = run_model(path, s, nth, n_decode, n_prefill);
            unlink(path);
            double bytes, flops;
            active_cost(s, types[ti], &bytes, &flops);
            /* attention FLOPs of the prefill (QK^T and AV over the causal half) */
            const double hd = s->n_embd / s->n_head;
            double attn_fl = s->n_layer * 4.0 * s->n_head * hd * (double)n_prefill * (n_prefill + 1) / 2.0;
            double pf_flops = flops * n_prefill + attn_fl;
            double dec_bw = bytes / t.decode_s / 1e9;
            double pf_gf = pf_flops / t.prefill_s / 1e9;
            printf("%-6s %-5s %9.1f %9.2f %8.1f %8.2f | %10.1f %9.1f %8.2f\n", mi == 0 ? "moe" : "dense",
                   mmp_type_name(types[ti]), bytes / 1e6, t.decode_s * 1e3, 1.0 / t.decode_s, dec_bw / bw,
                   n_prefill / t.prefill_s, pf_gf, pf_gf / gf);
            dec[mi] = t.decode_s;
            if (mi == 0) {
                write_model(path, s, types[ti]);
                double gb, gs;
                run_generate_stage(path, s, nth, n_decode, &gb, &gs);
                unlink(path);
                printf("%-6s %-5s decode through backbone.generate %.2f ms/token, bare loop %.2f: ratio %.2f (pipeline overhead)\n",
                       "", mmp_type_name(types[ti]), gs * 1e3, gb * 1e3, gs / gb);
            }
        }
        printf("%-6s %-5s MoE / dense decode time: %.2f (target <= 1.2)\n\n", "", mmp_type_name(types[ti]), dec[0] / dec[1]);
    }
    printf("targets: decode frac_bw >= 0.7, prefill frac_mm >= 0.6 (512 tokens), MoE/dense decode <= 1.2\n");
    return 0;
}
