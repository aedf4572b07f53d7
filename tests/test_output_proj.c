/* NExT-GPT style output projector (projectors/output.c) against goldens `output_projector`
 * and `nextgpt_e2e` (its conditioning from its signal hidden states), a scalar reference of
 * torch.nn.Transformer for the settings the goldens do not cover (post-norm, GELU), the GILL /
 * NExT-GPT naming, the config.json sidecar, the `projector.output` stage, and bad input. */
#include "testutil.h"
#include "mmpipe/projector.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_OP "proj/output_projector"
#define DIR_E2E "proj/nextgpt_e2e"

typedef struct io {
    mmp_safetensors *st;
    const float *hidden, *ref;   /* [4, 64], [7, 32] */
    int64_t n_sig;
} io;

static void io_open(io *c, const char *file) {
    c->st = mmp_safetensors_open(mmpt_data(file));
    assert_non_null(c->st);
    const mmp_tensor_info *h = mmp_safetensors_find(c->st, "signal_hidden");
    const mmp_tensor_info *r = mmp_safetensors_find(c->st, "conditioning");
    assert_non_null(h);
    assert_non_null(r);
    assert_true((uintptr_t)h->data % 4 == 0 && (uintptr_t)r->data % 4 == 0);
    assert_int_equal(h->ne[0], 64);
    assert_int_equal(r->ne[0], 32);
    assert_int_equal(r->ne[1], 7);
    c->hidden = h->data;
    c->ref = r->data;
    c->n_sig = h->ne[1];
}

static mmp_outproj_params golden_params(void) {
    /* golden case.json: 4 heads, pre-norm (norm_first=True), ReLU, torch's eps 1e-5 */
    mmp_outproj_params p = mmp_outproj_params_default();
    p.n_heads = 4;
    p.norm_first = 1;
    return p;
}

/* ---- scalar reference of fc_in -> torch.nn.Transformer -> fc_out (double accumulation) ---- */

typedef struct ref_model {
    mmp_safetensors *st;
    int d, H, ff, in, out, nq;
    bool norm_first, gelu;
    float eps;
} ref_model;

static const float *rw(const ref_model *r, const char *fmt, ...) MMP_PRINTF(2, 3);
static const float *rw(const ref_model *r, const char *fmt, ...) {
    char n[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n, sizeof n, fmt, ap);
    va_end(ap);
    const mmp_tensor_info *ti = mmp_safetensors_find(r->st, n);
    if (!ti) fail_msg("reference: no tensor %s", n);
    return ti->data;
}

/* y[n][o] = b[o] + sum_i W[o][i] x[n][i] */
static void r_lin(double *y, const double *x, int n, int in, int out, const float *W, const float *b) {
    for (int t = 0; t < n; t++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += (double)W[o * in + i] * x[t * in + i];
            y[t * out + o] = s;
        }
}

static void r_ln(double *y, const double *x, int n, int d, const float *w, const float *b, float eps) {
    for (int t = 0; t < n; t++) {
        double m = 0, v = 0;
        for (int i = 0; i < d; i++) m += x[t * d + i];
        m /= d;
        for (int i = 0; i < d; i++) v += (x[t * d + i] - m) * (x[t * d + i] - m);
        v /= d;
        for (int i = 0; i < d; i++) y[t * d + i] = (x[t * d + i] - m) / sqrt(v + eps) * w[i] + b[i];
    }
}

/* torch MultiheadAttention(q from xq [nq, d], k/v from xk [nk, d]) -> y [nq, d] */
static void r_mha(const ref_model *r, double *y, const double *xq, int nq, const double *xk, int nk, const char *p) {
    int d = r->d, H = r->H, hd = d / H;
    const float *W = rw(r, "%s.in_proj_weight", p), *B = rw(r, "%s.in_proj_bias", p);
    double *q = calloc((size_t)(nq * d), sizeof(double)), *k = calloc((size_t)(nk * d), sizeof(double));
    double *v = calloc((size_t)(nk * d), sizeof(double)), *o = calloc((size_t)(nq * d), sizeof(double));
    double *s = calloc((size_t)nk, sizeof(double));
    r_lin(q, xq, nq, d, d, W, B);
    r_lin(k, xk, nk, d, d, W + d * d, B + d);
    r_lin(v, xk, nk, d, d, W + 2 * d * d, B + 2 * d);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < nq; i++) {
            double mx = -1e300, sum = 0;
            for (int j = 0; j < nk; j++) {
                double a = 0;
                for (int c = 0; c < hd; c++) a += q[i * d + h * hd + c] * k[j * d + h * hd + c];
                s[j] = a / sqrt((double)hd);
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j < nk; j++) sum += (s[j] = exp(s[j] - mx));
            for (int c = 0; c < hd; c++) {
                double a = 0;
                for (int j = 0; j < nk; j++) a += s[j] / sum * v[j * d + h * hd + c];
                o[i * d + h * hd + c] = a;
            }
        }
    r_lin(y, o, nq, d, d, rw(r, "%s.out_proj.weight", p), rw(r, "%s.out_proj.bias", p));
    free(q); free(k); free(v); free(o); free(s);
}

static void r_ffn(const ref_model *r, double *y, const double *x, int n, const char *p) {
    double *h = calloc((size_t)(n * r->ff), sizeof(double));
    r_lin(h, x, n, r->d, r->ff, rw(r, "%s.linear1.weight", p), rw(r, "%s.linear1.bias", p));
    for (int i = 0; i < n * r->ff; i++)
        h[i] = r->gelu ? 0.5 * h[i] * (1.0 + erf(h[i] / sqrt(2.0))) : (h[i] > 0 ? h[i] : 0);
    r_lin(y, h, n, r->ff, r->d, rw(r, "%s.linear2.weight", p), rw(r, "%s.linear2.bias", p));
    free(h);
}

/* x += f(norm(x)) (pre-norm) or x = norm(x + f(x)) (post-norm), f = attention or FFN */
static void r_sub(const ref_model *r, double *x, int n, const char *lp, int norm_i, int kind, const double *mem, int nm) {
    int d = r->d;
    char nn[200], sub[200];
    snprintf(nn, sizeof nn, "%s.norm%d", lp, norm_i);
    const float *w = rw(r, "%s.weight", nn), *b = rw(r, "%s.bias", nn);
    double *in = calloc((size_t)(n * d), sizeof(double)), *f = calloc((size_t)(n * d), sizeof(double));
    if (r->norm_first) r_ln(in, x, n, d, w, b, r->eps);
    else memcpy(in, x, (size_t)(n * d) * sizeof(double));
    if (kind == 0) { snprintf(sub, sizeof sub, "%s.self_attn", lp); r_mha(r, f, in, n, in, n, sub); }
    else if (kind == 1) { snprintf(sub, sizeof sub, "%s.multihead_attn", lp); r_mha(r, f, in, n, mem, nm, sub); }
    else r_ffn(r, f, in, n, lp);
    for (int i = 0; i < n * d; i++) x[i] += f[i];
    if (!r->norm_first) r_ln(x, x, n, d, w, b, r->eps);
    free(in);
    free(f);
}

static void ref_forward(const ref_model *r, const float *hidden, int n, float *out) {
    int d = r->d;
    double *hx = calloc((size_t)(n * r->in), sizeof(double)), *x = calloc((size_t)(n * d), sizeof(double));
    double *y = calloc((size_t)(r->nq * d), sizeof(double)), *o = calloc((size_t)(r->nq * r->out), sizeof(double));
    for (int i = 0; i < n * r->in; i++) hx[i] = hidden[i];
    r_lin(x, hx, n, r->in, d, rw(r, "fc_in.weight"), rw(r, "fc_in.bias"));
    char lp[64];
    for (int l = 0; l < 2; l++) {
        snprintf(lp, sizeof lp, "transformer.encoder.layers.%d", l);
        r_sub(r, x, n, lp, 1, 0, NULL, 0);
        r_sub(r, x, n, lp, 2, 2, NULL, 0);
    }
    r_ln(x, x, n, d, rw(r, "transformer.encoder.norm.weight"), rw(r, "transformer.encoder.norm.bias"), r->eps);
    const float *qs = rw(r, "queries");
    for (int i = 0; i < r->nq * d; i++) y[i] = qs[i];
    for (int l = 0; l < 2; l++) {
        snprintf(lp, sizeof lp, "transformer.decoder.layers.%d", l);
        r_sub(r, y, r->nq, lp, 1, 0, NULL, 0);
        r_sub(r, y, r->nq, lp, 2, 1, x, n);
        r_sub(r, y, r->nq, lp, 3, 2, NULL, 0);
    }
    r_ln(y, y, r->nq, d, rw(r, "transformer.decoder.norm.weight"), rw(r, "transformer.decoder.norm.bias"), r->eps);
    r_lin(o, y, r->nq, d, r->out, rw(r, "fc_out.weight"), rw(r, "fc_out.bias"));
    for (int i = 0; i < r->nq * r->out; i++) out[i] = (float)o[i];
    free(hx); free(x); free(y); free(o);
}

/* ---- rewriting the golden model into a temp folder ---- */

typedef struct rewrite {
    bool gill;                 /* fc/tfm/model/query_embs names under "gen_text_hidden_fcs.0." */
    const char *drop;          /* original name to leave out */
    const char *reshape;       /* original name replaced by random data of reshape_ne */
    int64_t reshape_ne[4];
    int reshape_dims;
    const char *config;        /* config.json text or NULL */
} rewrite;

static void rename_gill(const char *in, char *out, size_t size) {
    static const char *const from[] = {"fc_in.", "transformer.", "fc_out.", "queries"};
    static const char *const to[] = {"fc.", "tfm.", "model.", "query_embs"};
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(from[i]);
        if (!strncmp(in, from[i], l)) {
            snprintf(out, size, "gen_text_hidden_fcs.0.%s%s", to[i], in + l);
            return;
        }
    }
    snprintf(out, size, "gen_text_hidden_fcs.0.%s", in);
}

static char *rewrite_model(const rewrite *r) {
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data(DIR_OP "/model.safetensors"));
    assert_non_null(st);
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    assert_non_null(w);
    char name[256];
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(st); i++) {
        const mmp_tensor_info *ti = mmp_safetensors_tensor(st, i);
        if (r->drop && !strcmp(ti->name, r->drop)) continue;
        if (r->gill) rename_gill(ti->name, name, sizeof name);
        else snprintf(name, sizeof name, "%s", ti->name);
        if (r->reshape && !strcmp(ti->name, r->reshape)) {
            int64_t n = 1;
            for (int k = 0; k < r->reshape_dims; k++) n *= r->reshape_ne[k];
            float *d = malloc((size_t)n * sizeof(float));
            mmpt_rand_fill(d, (size_t)n, 9, -0.1f, 0.1f);
            assert_int_equal(mmp_safetensors_writer_add_ne(w, name, MMP_TYPE_F32, r->reshape_dims, r->reshape_ne, d), MMP_OK);
            free(d);
            continue;
        }
        assert_int_equal(mmp_safetensors_writer_add_ne(w, name, ti->type, ti->n_dims, ti->ne, ti->data), MMP_OK);
    }
    char *dir = mmpt_make_temp_dir("op");
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(w, p), MMP_OK);
    mmp_safetensors_writer_free(w);
    mmp_safetensors_free(st);
    if (r->config) {
        snprintf(p, sizeof p, "%s/config.json", dir);
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        fputs(r->config, f);
        fclose(f);
    }
    return dir;
}

/* ---- tests ---- */

static void check_run(const char *path, const mmp_outproj_params *p, const io *c, const char *what) {
    mmp_outproj *m = mmp_outproj_load(path, p);
    if (!m) fail_msg("%s: load: %s", what, mmp_last_error());
    float out[7 * 32];
    memset(out, 0, sizeof out);
    enum mmp_status st = mmp_outproj_run(m, c->hidden, NULL, c->n_sig, out, 2, NULL, NULL);
    if (st != MMP_OK) fail_msg("%s: run: %s", what, mmp_last_error());
    double e = mmpt_rel_l2(out, c->ref, 7 * 32);
    printf("  %s: conditioning rel L2 %.3g\n", what, e);
    assert_true(e <= 1e-4);
    mmp_outproj_free(m);
}

static void test_golden(void **state) {
    (void)state;
    io c;
    io_open(&c, DIR_OP "/io.safetensors");
    mmp_outproj_params p = golden_params();
    mmp_outproj *m = mmp_outproj_load(mmpt_data(DIR_OP), &p);
    if (!m) fail_msg("load: %s", mmp_last_error());
    const mmp_outproj_hparams *h = mmp_outproj_get_hparams(m);
    assert_int_equal(h->in_dim, 64);
    assert_int_equal(h->d_model, 32);
    assert_int_equal(h->n_heads, 4);
    assert_int_equal(h->n_enc_layers, 2);
    assert_int_equal(h->n_dec_layers, 2);
    assert_int_equal(h->ff_dim, 64);
    assert_int_equal(h->n_queries, 7);
    assert_int_equal(h->out_dim, 32);
    assert_true(h->norm_first && h->has_enc_norm && h->has_dec_norm);
    assert_int_equal(h->act, MMP_UNARY_RELU);
    assert_true(h->layer_norm_eps == 1e-5f);
    float out[7 * 32];
    for (int th = 1; th <= 2; th++) {
        assert_int_equal(mmp_outproj_run(m, c.hidden, NULL, c.n_sig, out, th, NULL, NULL), MMP_OK);
        double e = mmpt_rel_l2(out, c.ref, 7 * 32);
        printf("  output_projector conditioning rel L2 (%d thread%s): %.3g\n", th, th > 1 ? "s" : "", e);
        assert_true(e <= 1e-4);
    }
    /* input_embeds are added to hidden before fc_in: hidden - e plus e gives the same result */
    float hm[4 * 64], e4[4 * 64], out2[7 * 32];
    mmpt_rand_fill(e4, 4 * 64, 3, -1.0f, 1.0f);
    for (int i = 0; i < 4 * 64; i++) hm[i] = c.hidden[i] - e4[i];
    assert_int_equal(mmp_outproj_run(m, hm, e4, c.n_sig, out2, 1, NULL, NULL), MMP_OK);
    assert_true(mmpt_rel_l2(out2, c.ref, 7 * 32) <= 1e-4);
    /* a different number of signal tokens is fine (the queries fix the output length) */
    assert_int_equal(mmp_outproj_run(m, c.hidden, NULL, 2, out2, 1, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_outproj_run(m, c.hidden, NULL, 0, out2, 1, NULL, NULL), MMP_ERR_INVALID_ARG);
    mmp_outproj_free(m);
    mmp_outproj_free(NULL);
    mmp_safetensors_free(c.st);
}

static void test_e2e(void **state) {
    (void)state;
    io c;
    io_open(&c, DIR_E2E "/io.safetensors");
    mmp_outproj_params p = golden_params();
    check_run(mmpt_data(DIR_E2E "/output_projector"), &p, &c, "nextgpt_e2e");
    /* the .safetensors file itself is a valid path too */
    check_run(mmpt_data(DIR_E2E "/output_projector/model.safetensors"), &p, &c, "nextgpt_e2e (file path)");
    mmp_safetensors_free(c.st);
}

/* the scalar reference matches the golden (pre-norm, ReLU); then the library matches the
 * reference where no golden exists: post-norm, GELU, another eps */
static void test_reference_modes(void **state) {
    (void)state;
    io c;
    io_open(&c, DIR_OP "/io.safetensors");
    ref_model r = {.d = 32, .H = 4, .ff = 64, .in = 64, .out = 32, .nq = 7, .norm_first = true, .eps = 1e-5f};
    r.st = mmp_safetensors_open(mmpt_data(DIR_OP "/model.safetensors"));
    assert_non_null(r.st);
    float ref[7 * 32], out[7 * 32];
    ref_forward(&r, c.hidden, 4, ref);
    double e = mmpt_rel_l2(ref, c.ref, 7 * 32);
    printf("  scalar reference vs golden: %.3g\n", e);
    assert_true(e <= 1e-5);
    for (int mode = 0; mode < 3; mode++) {
        r.norm_first = mode == 2;
        r.gelu = mode >= 1;
        r.eps = mode == 1 ? 1e-3f : 1e-5f;
        ref_forward(&r, c.hidden, 4, ref);
        mmp_outproj_params p = mmp_outproj_params_default();
        p.n_heads = 4;
        p.norm_first = r.norm_first;
        p.act = r.gelu ? MMP_UNARY_GELU : MMP_UNARY_RELU;
        p.layer_norm_eps = r.eps;
        mmp_outproj *m = mmp_outproj_load(mmpt_data(DIR_OP), &p);
        assert_non_null(m);
        assert_int_equal(mmp_outproj_run(m, c.hidden, NULL, 4, out, 2, NULL, NULL), MMP_OK);
        e = mmpt_rel_l2(out, ref, 7 * 32);
        printf("  norm_first=%d act=%s eps=%g vs scalar reference: %.3g\n", r.norm_first, r.gelu ? "gelu" : "relu",
               (double)r.eps, e);
        assert_true(e <= 1e-4);
        mmp_outproj_free(m);
    }
    mmp_safetensors_free(r.st);
    mmp_safetensors_free(c.st);
}

static void test_names_and_sidecar(void **state) {
    (void)state;
    io c;
    io_open(&c, DIR_OP "/io.safetensors");
    {   /* GILL / NExT-GPT names under a module prefix, settings from config.json */
        rewrite rw = {.gill = true, .config = "{\"nhead\": 4, \"norm_first\": true, \"layer_norm_eps\": 1e-5, \"activation\": \"relu\"}"};
        char *dir = rewrite_model(&rw);
        check_run(dir, NULL, &c, "fc/tfm/model/query_embs names + config.json");
        mmpt_rm_model_dir(dir);
    }
    {   /* params override the sidecar */
        rewrite rw = {.config = "{\"num_heads\": 8, \"norm_first\": false}"};
        char *dir = rewrite_model(&rw);
        mmp_outproj_params p = golden_params();
        check_run(dir, &p, &c, "params over config.json");
        mmp_outproj *m = mmp_outproj_load(dir, NULL);
        assert_non_null(m);
        assert_int_equal(mmp_outproj_get_hparams(m)->n_heads, 8);
        assert_false(mmp_outproj_get_hparams(m)->norm_first);
        mmp_outproj_free(m);
        mmpt_rm_model_dir(dir);
    }
    mmp_safetensors_free(c.st);
}

static void test_stage(void **state) {
    (void)state;
    io c;
    io_open(&c, DIR_OP "/io.safetensors");
    mmp_registry *reg = mmp_registry_new();
    const mmp_stage_kind *k = mmp_registry_find(reg, "projector.output");
    assert_non_null(k);
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = mmpt_data(DIR_OP);
    /* no heads anywhere: a clear error */
    assert_null(mmp_stage_new(k, &sp));
    printf("  error: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "heads=N"));
    sp.options = "heads=4";  /* norm_first defaults to 1 (NExT-GPT) */
    sp.n_threads = 2;
    mmp_stage *s = mmp_stage_new(k, &sp);
    if (!s) fail_msg("stage: %s", mmp_last_error());
    char buf[96];
    assert_string_equal(mmp_port_type_str(&mmp_stage_input(s, 0)->type, buf, sizeof buf), "hidden[*,64] f32");
    assert_string_equal(mmp_port_type_str(&mmp_stage_output(s, 0)->type, buf, sizeof buf), "conditioning[7,32] f32");
    int64_t dh[2] = {c.n_sig, 64};
    mmp_array *h = mmp_array_wrap(MMP_TYPE_F32, 2, dh, (void *)c.hidden);
    const mmp_array *ins[2] = {h, NULL};
    mmp_array *outs[1] = {NULL};
    assert_int_equal(mmp_stage_run(s, ins, outs), MMP_OK);
    double e = mmpt_rel_l2(outs[0]->data, c.ref, 7 * 32);
    printf("  stage projector.output: rel L2 %.3g\n", e);
    assert_true(e <= 1e-4);
    mmp_array_free(outs[0]);
    outs[0] = NULL;
    /* hidden states of another LLM width: the typed port names both widths */
    int64_t dbad[2] = {4, 48};
    mmp_array *bad = mmp_array_wrap(MMP_TYPE_F32, 2, dbad, (void *)c.hidden);
    const mmp_array *ins2[2] = {bad, NULL};
    assert_int_equal(mmp_stage_run(s, ins2, outs), MMP_ERR_SHAPE);
    printf("  error: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "48"));
    assert_non_null(strstr(mmp_last_error(), "64"));
    /* input_embeds with another row count */
    int64_t d3[2] = {3, 64};
    mmp_array *e3 = mmp_array_wrap(MMP_TYPE_F32, 2, d3, (void *)c.hidden);
    const mmp_array *ins3[2] = {h, e3};
    assert_int_equal(mmp_stage_run(s, ins3, outs), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "input_embeds"));
    mmp_array_free(e3);
    mmp_array_free(bad);
    mmp_array_free(h);
    mmp_stage_free(s);
    sp.options = "heads=4,act=swish";
    assert_null(mmp_stage_new(k, &sp));
    assert_non_null(strstr(mmp_last_error(), "act=swish"));
    mmp_registry_free(reg);
    mmp_safetensors_free(c.st);
}

static void test_cli(void **state) {
    (void)state;
    const char *cases[2][2] = {{DIR_OP, DIR_OP}, {DIR_E2E "/output_projector", DIR_E2E}};
    for (int i = 0; i < 2; i++) {
        io c;
        char iof[256];
        snprintf(iof, sizeof iof, "%s/io.safetensors", cases[i][1]);
        io_open(&c, iof);
        char args[4096], model[2048];
        snprintf(model, sizeof model, "%s", mmpt_data(cases[i][0]));
        snprintf(args, sizeof args, "projector.output -m '%s' --opt heads=4 --in hidden='%s:signal_hidden'", model,
                 mmpt_data(iof));
        double e = mmpt_cli_stage_rel_l2(args, c.ref, 7 * 32);
        printf("  mmpipe stage projector.output (%s): rel L2 %.3g\n", cases[i][0], e);
        assert_true(e <= 1e-4);
        mmp_safetensors_free(c.st);
    }
}

static void expect_fail(const rewrite *rw, const mmp_outproj_params *p, const char *const *needles) {
    char *dir = rewrite_model(rw);
    mmp_outproj *m = mmp_outproj_load(dir, p);
    if (m) fail_msg("loaded but should not");
    mmpt_expect_error_mentions(needles);
    mmpt_rm_model_dir(dir);
}

static void test_bad(void **state) {
    (void)state;
    mmp_outproj_params p = golden_params();
    {   /* queries 24 wide but fc_in gives d_model 32 */
        rewrite rw = {.reshape = "queries", .reshape_ne = {24, 7, 1}, .reshape_dims = 3};
        expect_fail(&rw, &p, (const char *[]){"'queries'", "24", "d_model 32", "fc_in.weight", NULL});
    }
    {   /* a missing tensor */
        rewrite rw = {.drop = "transformer.decoder.layers.1.norm3.bias"};
        expect_fail(&rw, &p, (const char *[]){"transformer.decoder.layers.1.norm3.bias", "missing", NULL});
    }
    {   /* packed q,k,v of the wrong height */
        rewrite rw = {.reshape = "transformer.encoder.layers.1.self_attn.in_proj_weight", .reshape_ne = {32, 90}, .reshape_dims = 2};
        expect_fail(&rw, &p, (const char *[]){"in_proj_weight", "[90, 32]", "[96, 32]", NULL});
    }
    {   /* decoder FFN width differs from the encoder's */
        rewrite rw = {.reshape = "transformer.decoder.layers.0.linear1.weight", .reshape_ne = {32, 48}, .reshape_dims = 2};
        expect_fail(&rw, &p, (const char *[]){"decoder.layers.0.linear1.weight", "[48, 32]", "[64, 32]", NULL});
    }
    {   /* fc_out reads another width */
        rewrite rw = {.reshape = "fc_out.weight", .reshape_ne = {16, 32}, .reshape_dims = 2};
        expect_fail(&rw, &p, (const char *[]){"fc_out.weight", "16", "d_model 32", NULL});
    }
    {   /* no fc_in at all */
        rewrite rw = {.drop = "fc_in.weight"};
        expect_fail(&rw, &p, (const char *[]){"fc_in.weight", "missing", NULL});
    }
    {   /* heads do not divide d_model */
        rewrite rw = {0};
        mmp_outproj_params p5 = golden_params();
        p5.n_heads = 5;
        expect_fail(&rw, &p5, (const char *[]){"d_model 32", "5 heads", NULL});
    }
    {   /* no heads: neither params nor config */
        rewrite rw = {0};
        expect_fail(&rw, NULL, (const char *[]){"heads", NULL});
    }
    {   /* bad sidecar values */
        rewrite rw = {.config = "{\"nhead\": \"four\"}"};
        expect_fail(&rw, NULL, (const char *[]){"nhead", NULL});
        rewrite rw2 = {.config = "{\"nhead\": 4, \"activation\": \"tanh\"}"};
        expect_fail(&rw2, NULL, (const char *[]){"tanh", NULL});
    }
    assert_null(mmp_outproj_load("/nonexistent/outproj", &p));
    assert_true(strlen(mmp_last_error()) > 0);
    /* a Q-Former is not an output projector */
    assert_null(mmp_outproj_load(mmpt_data("proj/blip2_qformer"), &p));
    assert_non_null(strstr(mmp_last_error(), "no output projector"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_e2e),
        cmocka_unit_test(test_reference_modes),
        cmocka_unit_test(test_names_and_sidecar),
        cmocka_unit_test(test_stage),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
