/* Audio projectors and the Qwen2-Audio tower.
 *
 * The qwen2_audio golden holds only the end-to-end logits (they need the LLM: the lead's
 * test), so the tower + projector are checked here against a plain scalar computation (double
 * accumulation) from the golden's weights and input_features, with and without the padding
 * mask. Ultravox and Voxtral are checked against scalar computations from synthetic weights. */
#include "testutil.h"
#include "mmpipe/audio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static float *get(const mmp_modelfile *mf, const char *fmt, ...) MMP_PRINTF(2, 3);
static float *get(const mmp_modelfile *mf, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const mmp_tensor_info *t = mmp_modelfile_find(mf, name);
    if (!t) fail_msg("%s", mmp_last_error());
    assert_int_equal(t->type, MMP_TYPE_F32);
    float *x = malloc(t->nbytes);
    assert_non_null(x);
    memcpy(x, t->data, t->nbytes);
    return x;
}

static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* y [n, out] = x [n, in] W^T + b, W torch [out, in] */
static void lin(const float *x, int n, int in, const float *W, const float *b, int out, float *y) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int k = 0; k < in; k++) acc += (double)x[i * in + k] * W[o * in + k];
            y[i * out + o] = (float)acc;
        }
}

static void layernorm(float *x, int n, int d, const float *w, const float *b) {
    for (int i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int k = 0; k < d; k++) m += x[i * d + k];
        m /= d;
        for (int k = 0; k < d; k++) v += (x[i * d + k] - m) * (x[i * d + k] - m);
        v /= d;
        for (int k = 0; k < d; k++) x[i * d + k] = (float)((x[i * d + k] - m) / sqrt(v + 1e-5) * w[k] + b[k]);
    }
}

/* Scalar Qwen2-Audio tower + projector: mel [M, L] -> [T/2, n_embd]; keys >= t_valid masked. */
static float *ref_qwen2_audio(const mmp_modelfile *mf, const float *mel, int M, int L, int t_valid, int *n_out) {
    const char *p = "audio_tower.";
    const int D = 64, H = 4, hd = 16, F = 160, NL = 2;
    int T = (L - 1) / 2 + 1;
    float *w1 = get(mf, "%sconv1.weight", p), *b1 = get(mf, "%sconv1.bias", p);
    float *w2 = get(mf, "%sconv2.weight", p), *b2 = get(mf, "%sconv2.bias", p);
    float *pos = get(mf, "%sembed_positions.weight", p);
    float *c1 = malloc(sizeof(float) * L * D), *x = malloc(sizeof(float) * T * D);
    for (int t = 0; t < L; t++)
        for (int c = 0; c < D; c++) {
            double acc = b1[c];
            for (int ci = 0; ci < M; ci++)
                for (int k = 0; k < 3; k++) {
                    int s = t + k - 1;
                    if (s >= 0 && s < L) acc += (double)w1[(c * M + ci) * 3 + k] * mel[ci * L + s];
                }
            c1[t * D + c] = (float)gelu(acc);
        }
    for (int t = 0; t < T; t++)
        for (int c = 0; c < D; c++) {
            double acc = b2[c];
            for (int ci = 0; ci < D; ci++)
                for (int k = 0; k < 3; k++) {
                    int s = 2 * t + k - 1;
                    if (s >= 0 && s < L) acc += (double)w2[(c * D + ci) * 3 + k] * c1[s * D + ci];
                }
            x[t * D + c] = (float)(gelu(acc) + pos[t * D + c]);
        }
    float *h = malloc(sizeof(float) * T * D), *q = malloc(sizeof(float) * T * D), *kk = malloc(sizeof(float) * T * D);
    float *v = malloc(sizeof(float) * T * D), *a = malloc(sizeof(float) * T * D), *o = malloc(sizeof(float) * T * D);
    float *f1 = malloc(sizeof(float) * T * F);
    double *sc = malloc(sizeof(double) * T);
    for (int l = 0; l < NL; l++) {
        float *lw = get(mf, "%slayers.%d.self_attn_layer_norm.weight", p, l), *lb = get(mf, "%slayers.%d.self_attn_layer_norm.bias", p, l);
        float *qw = get(mf, "%slayers.%d.self_attn.q_proj.weight", p, l), *qb = get(mf, "%slayers.%d.self_attn.q_proj.bias", p, l);
        float *kw = get(mf, "%slayers.%d.self_attn.k_proj.weight", p, l);
        float *vw = get(mf, "%slayers.%d.self_attn.v_proj.weight", p, l), *vb = get(mf, "%slayers.%d.self_attn.v_proj.bias", p, l);
        float *ow = get(mf, "%slayers.%d.self_attn.out_proj.weight", p, l), *ob = get(mf, "%slayers.%d.self_attn.out_proj.bias", p, l);
        float *l2w = get(mf, "%slayers.%d.final_layer_norm.weight", p, l), *l2b = get(mf, "%slayers.%d.final_layer_norm.bias", p, l);
        float *f1w = get(mf, "%slayers.%d.fc1.weight", p, l), *f1b = get(mf, "%slayers.%d.fc1.bias", p, l);
        float *f2w = get(mf, "%slayers.%d.fc2.weight", p, l), *f2b = get(mf, "%slayers.%d.fc2.bias", p, l);
        memcpy(h, x, sizeof(float) * T * D);
        layernorm(h, T, D, lw, lb);
        lin(h, T, D, qw, qb, D, q);
        lin(h, T, D, kw, NULL, D, kk);
        lin(h, T, D, vw, vb, D, v);
        for (int hh = 0; hh < H; hh++)
            for (int i = 0; i < T; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < T; j++) {
                    double s = 0;
                    for (int e = 0; e < hd; e++) s += (double)q[i * D + hh * hd + e] * kk[j * D + hh * hd + e];
                    sc[j] = j < t_valid ? s / sqrt((double)hd) : -INFINITY;
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j < T; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
                for (int e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++) acc += sc[j] / sum * v[j * D + hh * hd + e];
                    a[i * D + hh * hd + e] = (float)acc;
                }
            }
        lin(a, T, D, ow, ob, D, o);
        for (int i = 0; i < T * D; i++) x[i] += o[i];
        memcpy(h, x, sizeof(float) * T * D);
        layernorm(h, T, D, l2w, l2b);
        lin(h, T, D, f1w, f1b, F, f1);
        for (int i = 0; i < T * F; i++) f1[i] = (float)gelu(f1[i]);
        lin(f1, T, F, f2w, f2b, D, o);
        for (int i = 0; i < T * D; i++) x[i] += o[i];
        free(lw); free(lb); free(qw); free(qb); free(kw); free(vw); free(vb); free(ow); free(ob);
        free(l2w); free(l2b); free(f1w); free(f1b); free(f2w); free(f2b);
    }
    /* AvgPool1d(2, 2) then the tower's layer_norm, then the projector */
    int T2 = T / 2;
    for (int t = 0; t < T2; t++)
        for (int c = 0; c < D; c++) h[t * D + c] = 0.5f * (x[2 * t * D + c] + x[(2 * t + 1) * D + c]);
    float *lw = get(mf, "%slayer_norm.weight", p), *lb = get(mf, "%slayer_norm.bias", p);
    layernorm(h, T2, D, lw, lb);
    float *pw = get(mf, "multi_modal_projector.linear.weight"), *pb = get(mf, "multi_modal_projector.linear.bias");
    float *y = malloc(sizeof(float) * T2 * 64);
    lin(h, T2, D, pw, pb, 64, y);
    *n_out = T2;
    free(lw); free(lb); free(pw); free(pb);
    free(w1); free(b1); free(w2); free(b2); free(pos); free(c1); free(x); free(h); free(q); free(kk); free(v);
    free(a); free(o); free(f1); free(sc);
    return y;
}

static void test_qwen2_audio_tower_projector(void **state) {
    (void)state;
    const char *dir = mmpt_data("audio/qwen2_audio");
    mmp_modelfile *mf = mmp_modelfile_open(dir);
    assert_non_null(mf);
    mmp_modelfile *io = mmp_modelfile_open(mmpt_data("audio/qwen2_audio/io.safetensors"));
    assert_non_null(io);
    float *mel = get(io, "input_features");   /* [80, 100] */
    mmp_whisper *w = mmp_whisper_load_modelfile(mf);
    if (!w) fail_msg("%s", mmp_last_error());
    assert_true(mmp_whisper_get_hparams(w)->avg_pool);
    assert_int_equal(mmp_whisper_n_out(w, 100), 25);
    mmp_audio_proj *pj = mmp_audio_proj_load_modelfile(mf, MMP_AUDIO_PROJ_QWEN2_AUDIO);
    if (!pj) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_audio_proj_n_in(pj), 64);
    assert_int_equal(mmp_audio_proj_n_embd(pj), 64);
    assert_int_equal(mmp_audio_proj_stack(pj), 1);
    float hid[25 * 64], emb[25 * 64];
    /* the golden's case: all 100 frames valid (25 audio tokens) */
    const int valids[2] = {100, 61};
    for (int vi = 0; vi < 2; vi++) {
        int nv = valids[vi];
        int t_valid = (nv - 1) / 2 + 1, n_ref = 0;
        float *ref = ref_qwen2_audio(mf, mel, 80, 100, t_valid, &n_ref);
        assert_int_equal(n_ref, 25);
        assert_int_equal(mmp_whisper_encode(w, mel, 100, nv, hid, 2, NULL, NULL), MMP_OK);
        assert_int_equal(mmp_audio_proj_run(pj, hid, 25, emb, 2), MMP_OK);
        /* compare the rows that hold audio (all 25 when nothing is padded) */
        int64_t rows = mmp_whisper_n_valid_out(w, nv);
        double e = mmpt_rel_l2(emb, ref, (size_t)rows * 64);
        print_message("qwen2_audio tower + projector, %d/100 valid frames: %lld audio tokens, rel L2 vs scalar %.3g\n", nv,
                      (long long)rows, e);
        assert_true(e <= 1e-4);
        if (nv == 100) assert_int_equal(rows, 25);
        else assert_int_equal(rows, (((nv - 1) / 2 + 1) - 2) / 2 + 1);
        free(ref);
    }
    /* the whole path from samples: 2.5 s -> 1 s windows (this tiny tower has 50 positions) */
    float *x = malloc(sizeof(float) * 40000);
    mmpt_rand_fill(x, 40000, 3, -0.3f, 0.3f);
    float *e = NULL;
    int64_t nt = 0;
    assert_int_equal(mmp_audio_embed(w, pj, x, 40000, &e, &nt, 2), MMP_OK);
    /* windows of 100 frames: 25 + 25 + the half window (50 valid frames -> 12 tokens) */
    print_message("mmp_audio_embed: 2.5 s -> %lld tokens\n", (long long)nt);
    assert_int_equal(nt, 25 + 25 + 12);
    for (int64_t i = 0; i < nt * 64; i++) assert_true(isfinite(e[i]));
    free(e);
    free(x);
    mmp_audio_proj_free(pj);
    mmp_whisper_free(w);
    free(mel);
    mmp_modelfile_free(io);
    mmp_modelfile_free(mf);
}

/* ---- synthetic Ultravox / Voxtral projectors ---- */

typedef struct { const char *name; int n_dims; int64_t shape[2]; float *data; } wdef;

static char *write_model(wdef *w, int n, const char *config) {
    char dir[] = "/tmp/mmpt-projXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512];
    mmp_safetensors_writer *wr = mmp_safetensors_writer_new();
    for (int i = 0; i < n; i++) assert_int_equal(mmp_safetensors_writer_add(wr, w[i].name, MMP_TYPE_F32, w[i].n_dims, w[i].shape, w[i].data), MMP_OK);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(wr, path), MMP_OK);
    mmp_safetensors_writer_free(wr);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs(config, f);
    fclose(f);
    return strdup(dir);
}

static float *rnd(size_t n, uint64_t seed, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    mmpt_rand_fill(x, n, seed, lo, hi);
    return x;
}

static void rmsnorm(float *x, int n, int d, const float *w) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < d; k++) s += (double)x[i * d + k] * x[i * d + k];
        double r = 1.0 / sqrt(s / d + 1e-6);
        for (int k = 0; k < d; k++) x[i * d + k] = (float)(x[i * d + k] * r * w[k]);
    }
}

static void test_ultravox(void **state) {
    (void)state;
    const int D = 16, S = 8, H2 = 48, H = 24, E = 20, n = 21;   /* 21 frames -> 3 stacks, the last zero-padded */
    float *pre = rnd(D * S, 1, 0.5f, 1.5f), *l1 = rnd(H2 * D * S, 2, -0.1f, 0.1f);
    float *mid = rnd(H, 3, 0.5f, 1.5f), *l2 = rnd(E * H, 4, -0.2f, 0.2f), *post = rnd(E, 5, 0.5f, 1.5f);
    for (int with_post = 0; with_post < 2; with_post++) {
        wdef w[5] = {
            {"multi_modal_projector.ln_pre.weight", 1, {D * S, 0}, pre},
            {"multi_modal_projector.linear_1.weight", 2, {H2, D * S}, l1},
            {"multi_modal_projector.linear_2.weight", 2, {E, H}, l2},
            {with_post ? "multi_modal_projector.ln_post.weight" : "multi_modal_projector.ln_mid.weight", 1,
             {with_post ? E : H, 0}, with_post ? post : mid},
        };
        char *dir = write_model(w, 4, "{\"model_type\": \"ultravox\", \"stack_factor\": 8}");
        mmp_audio_proj *p = mmp_audio_proj_load(dir, MMP_AUDIO_PROJ_ULTRAVOX);
        if (!p) fail_msg("%s", mmp_last_error());
        assert_int_equal(mmp_audio_proj_n_in(p), D);
        assert_int_equal(mmp_audio_proj_stack(p), S);
        assert_int_equal(mmp_audio_proj_n_embd(p), E);
        assert_int_equal(mmp_audio_proj_n_out(p, n), 3);
        float *x = rnd((size_t)n * D, 6, -1, 1);
        float out[3 * 20];
        assert_int_equal(mmp_audio_proj_run(p, x, n, out, 1), MMP_OK);
        /* scalar: stack (zero pad) -> rms(pre) -> l1 -> silu(second half) * first half -> [rms mid] -> l2 -> [rms post] */
        float st[3 * 128] = {0}, h2[3 * 48], h[3 * 24], ref[3 * 20];
        memcpy(st, x, sizeof(float) * n * D);
        rmsnorm(st, 3, D * S, pre);
        lin(st, 3, D * S, l1, NULL, H2, h2);
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < H; k++) {
                double g = h2[i * H2 + H + k];
                h[i * H + k] = (float)(g / (1.0 + exp(-g)) * h2[i * H2 + k]);
            }
        if (!with_post) rmsnorm(h, 3, H, mid);
        lin(h, 3, H, l2, NULL, E, ref);
        if (with_post) rmsnorm(ref, 3, E, post);
        double e = mmpt_rel_l2(out, ref, 3 * E);
        print_message("ultravox projector (%s): rel L2 vs scalar %.3g\n", with_post ? "ln_post" : "ln_mid", e);
        assert_true(e <= 1e-5);
        free(x);
        mmp_audio_proj_free(p);
        mmpt_rm_model_dir(dir);
    }
    free(pre); free(l1); free(mid); free(l2); free(post);
}

static void test_voxtral(void **state) {
    (void)state;
    const int D = 16, S = 4, M = 40, E = 24, n = 10;   /* 10 frames -> 3 stacks */
    float *l1 = rnd(M * D * S, 11, -0.2f, 0.2f), *l2 = rnd(E * M, 12, -0.2f, 0.2f), *b1 = rnd(M, 13, -0.1f, 0.1f);
    wdef w[3] = {
        {"multi_modal_projector.linear_1.weight", 2, {M, D * S}, l1},
        {"multi_modal_projector.linear_2.weight", 2, {E, M}, l2},
        {"multi_modal_projector.linear_1.bias", 1, {M, 0}, b1},
    };
    char *dir = write_model(w, 3, "{\"model_type\": \"voxtral\", \"audio_config\": {\"hidden_size\": 16}}");
    mmp_audio_proj *p = mmp_audio_proj_load(dir, MMP_AUDIO_PROJ_VOXTRAL);
    if (!p) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_audio_proj_n_in(p), D);
    assert_int_equal(mmp_audio_proj_stack(p), S);
    float *x = rnd((size_t)n * D, 14, -1, 1);
    float out[3 * 24], st[3 * 64] = {0}, h[3 * 40], ref[3 * 24];
    assert_int_equal(mmp_audio_proj_run(p, x, n, out, 2), MMP_OK);
    memcpy(st, x, sizeof(float) * n * D);
    lin(st, 3, D * S, l1, b1, M, h);
    for (int i = 0; i < 3 * M; i++) h[i] = (float)gelu(h[i]);
    lin(h, 3, M, l2, NULL, E, ref);
    double e = mmpt_rel_l2(out, ref, 3 * E);
    print_message("voxtral projector: rel L2 vs scalar %.3g\n", e);
    assert_true(e <= 1e-5);
    free(x);
    mmp_audio_proj_free(p);
    mmpt_rm_model_dir(dir);
    free(l1); free(l2); free(b1);
}

static void test_errors(void **state) {
    (void)state;
    /* a Qwen2-Audio folder has no Ultravox projector */
    assert_null(mmp_audio_proj_load(mmpt_data("audio/qwen2_audio"), MMP_AUDIO_PROJ_ULTRAVOX));
    print_message("%s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "ln_pre"));
    assert_null(mmp_audio_proj_load(mmpt_data("audio/qwen2_audio"), (enum mmp_audio_proj_type)99));
    assert_null(mmp_audio_proj_load("/nonexistent", MMP_AUDIO_PROJ_VOXTRAL));
    mmp_audio_proj *p = mmp_audio_proj_load(mmpt_data("audio/qwen2_audio"), MMP_AUDIO_PROJ_QWEN2_AUDIO);
    assert_non_null(p);
    float x[64] = {0}, y[64];
    assert_int_not_equal(mmp_audio_proj_run(p, x, 0, y, 1), MMP_OK);
    assert_int_not_equal(mmp_audio_proj_run(p, NULL, 1, y, 1), MMP_OK);
    mmp_audio_proj_free(p);
    mmp_audio_proj_free(NULL);
}

/* The stage kinds through the registry: ports narrowed to the model, runs match the API. */
static void test_stages(void **state) {
    (void)state;
    mmp_registry *reg = mmp_registry_new();
    assert_non_null(reg);
    char buf[128];
    /* frontend.mel on the golden waveform == input_features */
    const mmp_stage_kind *k = mmp_registry_find(reg, "frontend.mel");
    assert_non_null(k);
    mmp_stage_params sp = mmp_stage_params_default();
    mmp_stage *st = mmp_stage_new(k, &sp);
    if (!st) fail_msg("%s", mmp_last_error());
    print_message("frontend.mel: %s -> %s\n", mmp_port_type_str(&mmp_stage_input(st, 0)->type, buf, sizeof buf),
                  mmp_port_type_str(&mmp_stage_output(st, 0)->type, buf + 64, 64));
    assert_int_equal(mmp_stage_output(st, 0)->type.dims[0], 80);
    assert_int_equal(mmp_stage_output(st, 0)->type.dims[1], 3000);
    mmp_modelfile *io = mmp_modelfile_open(mmpt_data("audio/whisper_mel/io.safetensors"));
    float *wave = get(io, "waveform"), *feat = get(io, "input_features");
    int64_t dn = 40000;
    mmp_array *a = mmp_array_wrap(MMP_TYPE_F32, 1, &dn, wave);
    const mmp_array *ins[2] = {a, NULL};   /* [1]: encoder.whisper's / the projector's optional input */
    mmp_array *outs[2] = {NULL, NULL};     /* [1]: frontend.mel's valid, encoder.whisper's rows */
    assert_int_equal(mmp_stage_run(st, ins, outs), MMP_OK);
    assert_int_equal(outs[0]->dims[0], 80);
    assert_int_equal(outs[0]->dims[1], 3000);
    double e = mmpt_rel_l2(outs[0]->data, feat, 80 * 3000);
    print_message("frontend.mel stage vs input_features: rel L2 %.3g\n", e);
    assert_true(e <= 1e-4);
    mmp_array_free(outs[0]);
    mmp_array_free(outs[1]);
    outs[1] = NULL;
    mmp_array_free(a);
    mmp_stage_free(st);
    free(wave);
    free(feat);
    mmp_modelfile_free(io);
    sp.options = "n_mels=128,pad=none";
    st = mmp_stage_new(k, &sp);
    assert_non_null(st);
    assert_int_equal(mmp_stage_output(st, 0)->type.dims[0], 128);
    assert_int_equal(mmp_stage_output(st, 0)->type.dims[1], MMP_DIM_ANY);
    mmp_stage_free(st);
    sp.options = "bogus=1";
    assert_null(mmp_stage_new(k, &sp));
    sp.options = NULL;

    /* encoder.whisper + projector.qwen2_audio on the qwen2_audio folder: connectable, and equal
     * to the API */
    sp.model_path = mmpt_data("audio/qwen2_audio");
    mmp_stage *enc = mmp_stage_new(mmp_registry_find(reg, "encoder.whisper"), &sp);
    if (!enc) fail_msg("%s", mmp_last_error());
    mmp_stage *pj = mmp_stage_new(mmp_registry_find(reg, "projector.qwen2_audio"), &sp);
    if (!pj) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_stage_input(enc, 0)->type.dims[0], 80);
    assert_int_equal(mmp_stage_output(enc, 0)->type.dims[1], 64);
    assert_int_equal(mmp_stage_input(pj, 0)->type.dims[1], 64);
    assert_int_equal(mmp_stage_output(pj, 0)->type.dims[1], 64);
    assert_int_equal(mmp_port_check_connect("enc.hidden", &mmp_stage_output(enc, 0)->type, "proj.hidden",
                                            &mmp_stage_input(pj, 0)->type), MMP_OK);
    io = mmp_modelfile_open(mmpt_data("audio/qwen2_audio/io.safetensors"));
    float *mel = get(io, "input_features");
    int64_t md[2] = {80, 100};
    a = mmp_array_wrap(MMP_TYPE_F32, 2, md, mel);
    ins[0] = a;
    assert_int_equal(mmp_stage_run(enc, ins, outs), MMP_OK);
    assert_int_equal(outs[0]->dims[0], 25);
    mmp_array *hid = outs[0];
    mmp_array_free(outs[1]);
    outs[1] = NULL;
    ins[0] = hid;
    assert_int_equal(mmp_stage_run(pj, ins, outs), MMP_OK);
    assert_int_equal(outs[0]->dims[0], 25);
    assert_int_equal(outs[0]->dims[1], 64);
    /* the same through the API */
    mmp_modelfile *mf = mmp_modelfile_open(sp.model_path);
    mmp_whisper *w = mmp_whisper_load_modelfile(mf);
    mmp_audio_proj *p = mmp_audio_proj_load_modelfile(mf, MMP_AUDIO_PROJ_QWEN2_AUDIO);
    float h[25 * 64], y[25 * 64];
    assert_int_equal(mmp_whisper_encode(w, mel, 100, 0, h, 1, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_audio_proj_run(p, h, 25, y, 1), MMP_OK);
    assert_true(mmpt_rel_l2(outs[0]->data, y, 25 * 64) <= 1e-6);
    /* an 128-mel input does not fit the 80-mel encoder */
    int64_t bad[2] = {128, 100};
    mmp_array *b = mmp_array_new(MMP_TYPE_F32, 2, bad);
    ins[0] = b;
    mmp_array *o2[2] = {NULL, NULL};
    assert_int_not_equal(mmp_stage_run(enc, ins, o2), MMP_OK);
    print_message("128-mel into the 80-mel encoder: %s\n", mmp_last_error());
    mmp_array_free(b);
    mmp_audio_proj_free(p);
    mmp_whisper_free(w);
    mmp_modelfile_free(mf);
    mmp_array_free(outs[0]);
    mmp_array_free(hid);
    mmp_array_free(a);
    free(mel);
    mmp_modelfile_free(io);
    mmp_stage_free(enc);
    mmp_stage_free(pj);
    /* the other projector kinds exist and say what is missing in this folder */
    assert_null(mmp_stage_new(mmp_registry_find(reg, "projector.ultravox"), &sp));
    assert_null(mmp_stage_new(mmp_registry_find(reg, "projector.voxtral"), &sp));
    print_message("projector.voxtral on qwen2_audio: %s\n", mmp_last_error());
    mmp_registry_free(reg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen2_audio_tower_projector),
        cmocka_unit_test(test_ultravox),
        cmocka_unit_test(test_voxtral),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_stages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
