/* LLM backbone against a plain scalar reference (double precision, written from the
 * transformers modeling code) on tiny random HF folders this test writes itself: the
 * architectures without a transformers golden in tests/data (olmoe: q/k RMSNorm over the
 * whole projection, softmax -> top-k without renormalising; qwen2: qkv bias, tied embeddings;
 * mistral) and variants of the others (qwen2_moe with norm_topk_prob, BF16 weights).
 * Relative L2 of the logits at every position <= 1e-4. */
#include "testutil.h"
#include "mmpipe/llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { V = 64, E = 32, H = 4, HKV = 2, HD = 8, NL = 2, FF = 48, NX = 4, K_USED = 2, FX = 24, FS = 40, T = 10 };

typedef struct cfg {
    const char *model_type;
    bool bias, qk_norm, moe, norm_topk, shared, tied, bf16;
    bool rope_linear;                   /* rope_scaling linear, factor 2 */
    const char *router, *eg, *eu, *ed;  /* HF names (expert index %d) */
} cfg;

/* All weights as HF numpy arrays [out, in] (row-major), values already rounded to the stored type. */
typedef struct layer_w {
    float *in_norm, *post_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *qn, *kn;
    float *g, *u, *d;                 /* dense */
    float *r, *eg[NX], *eu[NX], *ed[NX];
    float *sg, *su, *sd, *sgate;
} layer_w;

typedef struct weights {
    float *emb, *norm, *head;
    layer_w l[NL];
} weights;

static uint64_t seed_ctr = 1;

static float *rnd(size_t n, float scale, float bias, bool bf16) {
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    mmpt_rand_fill(x, n, seed_ctr++, -scale, scale);
    for (size_t i = 0; i < n; i++) {
        x[i] += bias;
        if (bf16) x[i] = mmp_bf16_to_fp32(mmp_fp32_to_bf16(x[i]));
    }
    return x;
}

static void add(mmp_safetensors_writer *w, const char *name, const float *x, int64_t d0, int64_t d1, bool bf16) {
    int64_t shape[2] = {d0, d1};
    int nd = d1 ? 2 : 1;
    if (!d1) shape[1] = 1;
    size_t n = (size_t)(d0 * shape[1]);
    if (bf16) {
        uint16_t *b = malloc(n * sizeof *b);
        for (size_t i = 0; i < n; i++) b[i] = mmp_fp32_to_bf16(x[i]);
        assert_int_equal(mmp_safetensors_writer_add(w, name, MMP_TYPE_BF16, nd, shape, b), MMP_OK);
        free(b);
    } else {
        assert_int_equal(mmp_safetensors_writer_add(w, name, MMP_TYPE_F32, nd, shape, x), MMP_OK);
    }
}

/* Write config.json + model.safetensors into a new temp folder; fill *W. */
static char *write_model(const cfg *c, weights *W) {
    const char *tmp = getenv("TMPDIR");
    char *dir = malloc(512);
    snprintf(dir, 512, "%s/mmp_llm_ref_XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    const bool b = c->bf16;
    const float s = 0.3f;
    memset(W, 0, sizeof *W);
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    W->emb = rnd((size_t)V * E, 1.0f, 0, b);
    W->norm = rnd(E, 0.2f, 1.0f, b);
    W->head = c->tied ? W->emb : rnd((size_t)V * E, s, 0, b);
    add(w, "model.embed_tokens.weight", W->emb, V, E, b);
    add(w, "model.norm.weight", W->norm, E, 0, b);
    if (!c->tied) add(w, "lm_head.weight", W->head, V, E, b);
    char n[160];
    for (int il = 0; il < NL; il++) {
#define NM(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, il), n)
        layer_w *L = &W->l[il];
        L->in_norm = rnd(E, 0.2f, 1.0f, b);
        L->post_norm = rnd(E, 0.2f, 1.0f, b);
        L->wq = rnd((size_t)H * HD * E, s, 0, b);
        L->wk = rnd((size_t)HKV * HD * E, s, 0, b);
        L->wv = rnd((size_t)HKV * HD * E, s, 0, b);
        L->wo = rnd((size_t)E * H * HD, s, 0, b);
        add(w, NM("input_layernorm.weight"), L->in_norm, E, 0, b);
        add(w, NM("post_attention_layernorm.weight"), L->post_norm, E, 0, b);
        add(w, NM("self_attn.q_proj.weight"), L->wq, H * HD, E, b);
        add(w, NM("self_attn.k_proj.weight"), L->wk, HKV * HD, E, b);
        add(w, NM("self_attn.v_proj.weight"), L->wv, HKV * HD, E, b);
        add(w, NM("self_attn.o_proj.weight"), L->wo, E, H * HD, b);
        if (c->bias) {
            L->bq = rnd(H * HD, 0.5f, 0, b);
            L->bk = rnd(HKV * HD, 0.5f, 0, b);
            L->bv = rnd(HKV * HD, 0.5f, 0, b);
            add(w, NM("self_attn.q_proj.bias"), L->bq, H * HD, 0, b);
            add(w, NM("self_attn.k_proj.bias"), L->bk, HKV * HD, 0, b);
            add(w, NM("self_attn.v_proj.bias"), L->bv, HKV * HD, 0, b);
        }
        if (c->qk_norm) {
            L->qn = rnd(H * HD, 0.2f, 1.0f, b);
            L->kn = rnd(HKV * HD, 0.2f, 1.0f, b);
            add(w, NM("self_attn.q_norm.weight"), L->qn, H * HD, 0, b);
            add(w, NM("self_attn.k_norm.weight"), L->kn, HKV * HD, 0, b);
        }
        if (!c->moe) {
            L->g = rnd((size_t)FF * E, s, 0, b);
            L->u = rnd((size_t)FF * E, s, 0, b);
            L->d = rnd((size_t)E * FF, s, 0, b);
            add(w, NM("mlp.gate_proj.weight"), L->g, FF, E, b);
            add(w, NM("mlp.up_proj.weight"), L->u, FF, E, b);
            add(w, NM("mlp.down_proj.weight"), L->d, E, FF, b);
        } else {
            L->r = rnd((size_t)NX * E, 1.0f, 0, b);
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", il, c->router);
            add(w, n, L->r, NX, E, b);
            for (int e = 0; e < NX; e++) {
                char part[96];
                L->eg[e] = rnd((size_t)FX * E, s, 0, b);
                L->eu[e] = rnd((size_t)FX * E, s, 0, b);
                L->ed[e] = rnd((size_t)E * FX, s, 0, b);
                snprintf(part, sizeof part, c->eg, e);
                snprintf(n, sizeof n, "model.layers.%d.%s.weight", il, part);
                add(w, n, L->eg[e], FX, E, b);
                snprintf(part, sizeof part, c->eu, e);
                snprintf(n, sizeof n, "model.layers.%d.%s.weight", il, part);
                add(w, n, L->eu[e], FX, E, b);
                snprintf(part, sizeof part, c->ed, e);
                snprintf(n, sizeof n, "model.layers.%d.%s.weight", il, part);
                add(w, n, L->ed[e], E, FX, b);
            }
            if (c->shared) {
                L->sg = rnd((size_t)FS * E, s, 0, b);
                L->su = rnd((size_t)FS * E, s, 0, b);
                L->sd = rnd((size_t)E * FS, s, 0, b);
                L->sgate = rnd(E, 1.0f, 0, b);
                add(w, NM("mlp.shared_expert.gate_proj.weight"), L->sg, FS, E, b);
                add(w, NM("mlp.shared_expert.up_proj.weight"), L->su, FS, E, b);
                add(w, NM("mlp.shared_expert.down_proj.weight"), L->sd, E, FS, b);
                add(w, NM("mlp.shared_expert_gate.weight"), L->sgate, 1, E, b);
            }
        }
#undef NM
    }
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(w, path), MMP_OK);
    mmp_safetensors_writer_free(w);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"model_type\": \"%s\", \"vocab_size\": %d, \"hidden_size\": %d, \"num_hidden_layers\": %d,\n"
               " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"intermediate_size\": %d,\n"
               " \"rms_norm_eps\": 1e-6, \"rope_theta\": 500.0, \"max_position_embeddings\": 128,\n"
               " \"tie_word_embeddings\": %s",
            c->model_type, V, E, NL, H, HKV, FF,
            c->tied ? "true" : "false");
    if (c->rope_linear) fprintf(f, ",\n \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
    if (c->moe)
        fprintf(f, ",\n \"num_experts\": %d, \"num_experts_per_tok\": %d, \"moe_intermediate_size\": %d,"
                   " \"norm_topk_prob\": %s, \"shared_expert_intermediate_size\": %d",
                NX, K_USED, FX, c->norm_topk ? "true" : "false", FS);
    fprintf(f, "}\n");
    fclose(f);
    return dir;
}

/* ---- the scalar reference ---- */

static void matvec(const float *W, const double *x, double *y, int out, int in, const float *bias) {
    for (int o = 0; o < out; o++) {
        double s = bias ? bias[o] : 0.0;
        for (int i = 0; i < in; i++) s += (double)W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void rmsnorm(double *x, int n, const float *w) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + 1e-6);
    for (int i = 0; i < n; i++) x[i] = x[i] * r * w[i];
}

/* HF rotate_half RoPE on one head of HD values at position p, base 500 */
static void rope(double *x, double p) {
    for (int i = 0; i < HD / 2; i++) {
        double th = p * pow(500.0, -2.0 * i / HD);
        double a = x[i], b = x[i + HD / 2];
        x[i] = a * cos(th) - b * sin(th);
        x[i + HD / 2] = b * cos(th) + a * sin(th);
    }
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

static void swiglu_ffn(const float *g, const float *u, const float *d, int F, const double *x, double *y) {
    double a[64], bb[64];
    matvec(g, x, a, F, E, NULL);
    matvec(u, x, bb, F, E, NULL);
    for (int i = 0; i < F; i++) a[i] = silu(a[i]) * bb[i];
    matvec(d, a, y, E, F, NULL);
}

static void reference(const cfg *c, const weights *W, const int32_t *ids, float *logits) {
    static double kc[NL][T][HKV * HD], vc[NL][T][HKV * HD];
    for (int t = 0; t < T; t++) {
        double x[E], h[E], q[H * HD], k[HKV * HD], v[HKV * HD], att[H * HD], o[E], y[E];
        for (int i = 0; i < E; i++) x[i] = W->emb[(size_t)ids[t] * E + i];
        for (int il = 0; il < NL; il++) {
            const layer_w *L = &W->l[il];
            memcpy(h, x, sizeof h);
            rmsnorm(h, E, L->in_norm);
            matvec(L->wq, h, q, H * HD, E, L->bq);
            matvec(L->wk, h, k, HKV * HD, E, L->bk);
            matvec(L->wv, h, v, HKV * HD, E, L->bv);
            if (c->qk_norm) {
                rmsnorm(q, H * HD, L->qn);
                rmsnorm(k, HKV * HD, L->kn);
            }
            const double pos = c->rope_linear ? t / 2.0 : (double)t;
            for (int hh = 0; hh < H; hh++) rope(q + hh * HD, pos);
            for (int hh = 0; hh < HKV; hh++) rope(k + hh * HD, pos);
            memcpy(kc[il][t], k, sizeof k);
            memcpy(vc[il][t], v, sizeof v);
            for (int hh = 0; hh < H; hh++) {
                int kh = hh / (H / HKV);
                double sc[T], mx = -1e300, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (int i = 0; i < HD; i++) d += q[hh * HD + i] * kc[il][s][kh * HD + i];
                    sc[s] = d / sqrt((double)HD);
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s <= t; s++) { sc[s] = exp(sc[s] - mx); sum += sc[s]; }
                for (int i = 0; i < HD; i++) {
                    double a = 0;
                    for (int s = 0; s <= t; s++) a += sc[s] / sum * vc[il][s][kh * HD + i];
                    att[hh * HD + i] = a;
                }
            }
            matvec(L->wo, att, o, E, H * HD, NULL);
            for (int i = 0; i < E; i++) x[i] += o[i];
            memcpy(h, x, sizeof h);
            rmsnorm(h, E, L->post_norm);
            if (!c->moe) {
                swiglu_ffn(L->g, L->u, L->d, FF, h, y);
            } else {
                double r[NX], p[NX], mx = -1e300, sum = 0;
                matvec(L->r, h, r, NX, E, NULL);
                for (int e = 0; e < NX; e++) if (r[e] > mx) mx = r[e];
                for (int e = 0; e < NX; e++) { p[e] = exp(r[e] - mx); sum += p[e]; }
                for (int e = 0; e < NX; e++) p[e] /= sum;
                int sel[K_USED];
                bool used[NX] = {false};
                double wsum = 0;
                for (int j = 0; j < K_USED; j++) {
                    int best = -1;
                    for (int e = 0; e < NX; e++)
                        if (!used[e] && (best < 0 || p[e] > p[best])) best = e;
                    used[best] = true;
                    sel[j] = best;
                    wsum += p[best];
                }
                memset(y, 0, sizeof y);
                for (int j = 0; j < K_USED; j++) {
                    double ye[E], wgt = p[sel[j]] / (c->norm_topk ? wsum : 1.0);
                    swiglu_ffn(L->eg[sel[j]], L->eu[sel[j]], L->ed[sel[j]], FX, h, ye);
                    for (int i = 0; i < E; i++) y[i] += wgt * ye[i];
                }
                if (c->shared) {
                    double ys[E], gdot = 0;
                    swiglu_ffn(L->sg, L->su, L->sd, FS, h, ys);
                    for (int i = 0; i < E; i++) gdot += (double)L->sgate[i] * h[i];
                    double gate = 1.0 / (1.0 + exp(-gdot));
                    for (int i = 0; i < E; i++) y[i] += gate * ys[i];
                }
            }
            for (int i = 0; i < E; i++) x[i] += y[i];
        }
        memcpy(h, x, sizeof h);
        rmsnorm(h, E, W->norm);
        double lg[V];
        matvec(W->head, h, lg, V, E, NULL);
        for (int i = 0; i < V; i++) logits[(size_t)t * V + i] = (float)lg[i];
    }
}

static void free_weights(const cfg *c, weights *W) {
    free(W->emb);
    free(W->norm);
    if (!c->tied) free(W->head);
    for (int il = 0; il < NL; il++) {
        layer_w *L = &W->l[il];
        float *ps[] = {L->in_norm, L->post_norm, L->wq, L->wk, L->wv, L->wo, L->bq, L->bk, L->bv, L->qn, L->kn,
                       L->g, L->u, L->d, L->r, L->sg, L->su, L->sd, L->sgate};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) free(ps[i]);
        for (int e = 0; e < NX; e++) { free(L->eg[e]); free(L->eu[e]); free(L->ed[e]); }
    }
}

static void run(const cfg *c) {
    weights W;
    char *dir = write_model(c, &W);
    mmp_llm *m = mmp_llm_load(dir, NULL);
    if (!m) fail_msg("load %s: %s", c->model_type, mmp_last_error());
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 37 + 5) % V);
    float *ref = malloc((size_t)T * V * sizeof(float)), *out = malloc((size_t)T * V * sizeof(float));
    reference(c, &W, ids, ref);
    mmp_llm_ctx *ctx = mmp_llm_ctx_new(m, NULL);
    assert_non_null(ctx);
    mmp_llm_batch b = {.n = T, .tokens = ids, .logits = out, .logits_all = true};
    if (mmp_llm_decode(ctx, &b) != MMP_OK) fail_msg("decode: %s", mmp_last_error());
    double e = mmpt_rel_l2(out, ref, (size_t)T * V), worst = 0;
    for (int t = 0; t < T; t++) {
        double et = mmpt_rel_l2(out + (size_t)t * V, ref + (size_t)t * V, V);
        if (et > worst) worst = et;
    }
    printf("[%s%s%s%s%s] logits vs scalar reference: rel L2 all %.3g, worst position %.3g\n", c->model_type,
           c->bf16 ? " bf16" : "", c->tied ? " tied" : "", c->norm_topk ? " norm_topk" : "", c->rope_linear ? " rope linear x2" : "", e, worst);
    assert_true(worst <= 1e-4);
    free(ref);
    free(out);
    mmp_llm_ctx_free(ctx);
    mmp_llm_free(m);
    free_weights(c, &W);
    mmpt_rm_model_dir(dir);
}

static const cfg k_olmoe = {"olmoe", false, true, true, false, false, false, false, false,
                            "mlp.gate", "mlp.experts.%d.gate_proj", "mlp.experts.%d.up_proj", "mlp.experts.%d.down_proj"};

static void test_olmoe(void **s) { (void)s; run(&k_olmoe); }
static void test_olmoe_norm_topk(void **s) {
    (void)s;
    cfg c = k_olmoe;
    c.norm_topk = true;
    run(&c);
}
static void test_qwen2_tied(void **s) {
    (void)s;
    cfg c = {"qwen2", true, false, false, false, false, true, false, false, NULL, NULL, NULL, NULL};
    run(&c);
}
static void test_qwen2_bf16(void **s) {
    (void)s;
    cfg c = {"qwen2", true, false, false, false, false, false, true, false, NULL, NULL, NULL, NULL};
    run(&c);
}
static void test_mistral(void **s) {
    (void)s;
    cfg c = {"mistral", false, false, false, false, false, false, false, true, NULL, NULL, NULL, NULL};
    run(&c);
}
static void test_qwen2_moe_norm_topk(void **s) {
    (void)s;
    cfg c = {"qwen2_moe", true, false, true, true, true, false, false, false, "mlp.gate", "mlp.experts.%d.gate_proj",
             "mlp.experts.%d.up_proj", "mlp.experts.%d.down_proj"};
    run(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_olmoe),
        cmocka_unit_test(test_olmoe_norm_topk),
        cmocka_unit_test(test_qwen2_tied),
        cmocka_unit_test(test_qwen2_bf16),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_qwen2_moe_norm_topk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
