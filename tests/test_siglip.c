/* SigLIP ViT against golden siglip_vision (last_hidden_state = post-LN last layer,
 * hidden_states[-2]); the attention-pool head against a scalar reference written here. */
#include "testutil.h"
#include "mmpipe/vision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *tensor(mmp_safetensors *st, const char *name, int64_t *n) {
    const mmp_tensor_info *t = mmp_safetensors_find(st, name);
    if (!t) fail_msg("no '%s'", name);
    assert_int_equal(t->type, MMP_TYPE_F32);
    float *f = malloc(t->nbytes);
    memcpy(f, t->data, t->nbytes);
    if (n) *n = (int64_t)(t->nbytes / 4);
    return f;
}

/* y[o] = sum_i W[o][i] x[i] + b[o]; W torch layout [n_out, n_in]. */
static void lin(const float *W, const float *b, const float *x, float *y, int n_in, int n_out) {
    for (int o = 0; o < n_out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < n_in; i++) s += (double)W[(size_t)o * n_in + i] * x[i];
        y[o] = (float)s;
    }
}
static void ln(const float *x, const float *w, const float *b, float *y, int d, float eps) {
    double m = 0, v = 0;
    for (int i = 0; i < d; i++) m += x[i];
    m /= d;
    for (int i = 0; i < d; i++) v += (x[i] - m) * (x[i] - m);
    v /= d;
    for (int i = 0; i < d; i++) y[i] = (float)((x[i] - m) / sqrt(v + eps) * w[i] + b[i]);
}

/* MultiheadAttentionPoolingHead(last_hidden_state [T, d]) -> [d], in double-ish scalar code. */
static void head_ref(mmp_safetensors *m, const float *h, int T, int d, int H, float eps, float *out) {
    float *probe = tensor(m, "head.probe", NULL), *inw = tensor(m, "head.attention.in_proj_weight", NULL),
          *inb = tensor(m, "head.attention.in_proj_bias", NULL), *ow = tensor(m, "head.attention.out_proj.weight", NULL),
          *ob = tensor(m, "head.attention.out_proj.bias", NULL), *lw = tensor(m, "head.layernorm.weight", NULL),
          *lb = tensor(m, "head.layernorm.bias", NULL), *f1w = tensor(m, "head.mlp.fc1.weight", NULL),
          *f1b = tensor(m, "head.mlp.fc1.bias", NULL), *f2w = tensor(m, "head.mlp.fc2.weight", NULL),
          *f2b = tensor(m, "head.mlp.fc2.bias", NULL);
    int hd = d / H, ff = 2 * d;
    float *q = malloc(sizeof(float) * d), *k = malloc(sizeof(float) * T * d), *v = malloc(sizeof(float) * T * d),
          *a = calloc((size_t)d, sizeof(float)), *x = malloc(sizeof(float) * d), *y = malloc(sizeof(float) * d),
          *z = malloc(sizeof(float) * ff);
    lin(inw, inb, probe, q, d, d);
    for (int t = 0; t < T; t++) {
        lin(inw + (size_t)d * d, inb + d, h + (size_t)t * d, k + (size_t)t * d, d, d);
        lin(inw + (size_t)2 * d * d, inb + 2 * d, h + (size_t)t * d, v + (size_t)t * d, d, d);
    }
    for (int hh = 0; hh < H; hh++) {
        double sc[256], mx = -1e30, sum = 0;
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int i = 0; i < hd; i++) s += (double)q[hh * hd + i] * k[(size_t)t * d + hh * hd + i];
            sc[t] = s / sqrt((double)hd);
            mx = sc[t] > mx ? sc[t] : mx;
        }
        for (int t = 0; t < T; t++) sum += (sc[t] = exp(sc[t] - mx));
        for (int i = 0; i < hd; i++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += sc[t] / sum * v[(size_t)t * d + hh * hd + i];
            a[hh * hd + i] = (float)s;
        }
    }
    lin(ow, ob, a, x, d, d);
    ln(x, lw, lb, y, d, eps);
    lin(f1w, f1b, y, z, d, ff);
    for (int i = 0; i < ff; i++) {
        double u = z[i];
        z[i] = (float)(0.5 * u * (1 + tanh(sqrt(2 / M_PI) * (u + 0.044715 * u * u * u))));
    }
    lin(f2w, f2b, z, y, ff, d);
    for (int i = 0; i < d; i++) out[i] = x[i] + y[i];
    free(probe); free(inw); free(inb); free(ow); free(ob); free(lw); free(lb); free(f1w); free(f1b); free(f2w); free(f2b);
    free(q); free(k); free(v); free(a); free(x); free(y); free(z);
}

static void test_siglip_golden(void **st) {
    (void)st;
    mmp_vit *v = mmp_vit_load(mmpt_data("vision/siglip_vision"));
    if (!v) fail_msg("%s", mmp_last_error());
    const mmp_vit_hparams *hp = mmp_vit_get_hparams(v);
    assert_int_equal(hp->arch, MMP_VIT_SIGLIP);
    assert_int_equal(hp->n_pos, 16);
    assert_int_equal(hp->act, MMP_UNARY_GELU_TANH);
    assert_true(hp->has_head);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("vision/siglip_vision/io.safetensors"));
    assert_non_null(io);
    int64_t n;
    float *px = tensor(io, "pixel_values", NULL);
    float out[16 * 64], pooled[64], pref[64];
    float *last = tensor(io, "last_hidden_state", &n), *m2 = tensor(io, "hidden_states.-2", NULL);
    mmp_vit_params p = mmp_vit_params_default();
    p.post_ln = true;
    assert_int_equal(mmp_vit_n_tokens(v, &p), 16);
    if (mmp_vit_encode(v, px, 32, 32, &p, out, pooled) != MMP_OK) fail_msg("%s", mmp_last_error());
    printf("siglip_vision last_hidden_state: rel L2 %.3g\n", mmpt_rel_l2(out, last, (size_t)n));
    MMPT_ASSERT_REL_LE(out, last, (size_t)n, 1e-4);
    mmp_safetensors *m = mmp_safetensors_open(mmpt_data("vision/siglip_vision/model.safetensors"));
    head_ref(m, last, 16, 64, 4, hp->eps, pref);
    printf("siglip_vision pooler (vs scalar head on the golden last_hidden_state): rel L2 %.3g\n",
           mmpt_rel_l2(pooled, pref, 64));
    MMPT_ASSERT_REL_LE(pooled, pref, 64, 1e-4);
    mmp_safetensors_free(m);
    p.post_ln = false;
    p.layer = -2;
    assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, NULL), MMP_OK);
    printf("siglip_vision hidden_states[-2]: rel L2 %.3g\n", mmpt_rel_l2(out, m2, (size_t)n));
    MMPT_ASSERT_REL_LE(out, m2, (size_t)n, 1e-4);
    /* drop_cls is a no-op without a class token */
    p.drop_cls = true;
    assert_int_equal(mmp_vit_n_tokens(v, &p), 16);
    free(px); free(last); free(m2);
    mmp_safetensors_free(io);
    mmp_vit_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siglip_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
