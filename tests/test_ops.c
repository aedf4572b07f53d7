/* Every op of the graph: the CPU backend's fast path against the scalar reference
 * (core/cpu_ref.c) on random inputs of odd sizes, with 1, 2 and 3 threads.
 * Relative L2 error <= 1e-5 for f32 results; integer results (top-k, argmax) exact. */
#include "testutil.h"
#include "backend-impl.h"
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5
#define MAX_IN 16

static mmp_backend *g_be[3];   /* 1, 2, 3 threads */

struct inp {
    mmp_tensor *t;
    uint64_t seed;
    float lo, hi;
};

struct tc {
    mmp_graph *g;
    struct inp in[MAX_IN];
    int n_in;
    uint64_t seed;
};

static void tc_init(struct tc *c) {
    memset(c, 0, sizeof *c);
    c->g = mmp_graph_new(mmp_graph_params_default());
    assert_non_null(c->g);
    c->seed = 1234;
}

static void tc_free(struct tc *c) { mmp_graph_free(c->g); }

static mmp_tensor *inp(struct tc *c, enum mmp_type ty, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, float lo, float hi) {
    mmp_tensor *t = mmp_new_tensor_4d(c->g, ty, ne0, ne1, ne2, ne3);
    if (!t) fail_msg("input: %s", mmp_last_error());
    assert_true(c->n_in < MAX_IN);
    mmp_set_name(t, "in%d", c->n_in);
    c->in[c->n_in++] = (struct inp){t, ++c->seed * 7919, lo, hi};
    return t;
}
static mmp_tensor *inp_f32(struct tc *c, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    return inp(c, MMP_TYPE_F32, ne0, ne1, ne2, ne3, -1.0f, 1.0f);
}

/* Byte offsets of the fp16 scale fields in a K-quant block (random bytes elsewhere are valid). */
static void patch_kquant(enum mmp_type ty, uint8_t *blk, uint64_t *s) {
    int offs[2] = {-1, -1};
    switch (ty) {
    case MMP_TYPE_Q2_K: offs[0] = 80; offs[1] = 82; break;
    case MMP_TYPE_Q3_K: offs[0] = 108; break;
    case MMP_TYPE_Q4_K: case MMP_TYPE_Q5_K: offs[0] = 0; offs[1] = 2; break;
    case MMP_TYPE_Q6_K: offs[0] = 208; break;
    default: break;
    }
    for (int i = 0; i < 2; i++) {
        if (offs[i] < 0) continue;
        *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
        float v = 0.001f + 0.01f * (float)((*s >> 40) & 0xffff) / 65536.0f;
        uint16_t h = mmp_fp32_to_fp16(v);
        memcpy(blk + offs[i], &h, 2);
    }
}

static void fill(const struct inp *in) {
    mmp_tensor *t = in->t;
    if (!t->data) return;   /* not needed by the outputs: the planner gave it no memory */
    const int64_t n = mmp_nelements(t), ne0 = t->ne[0], nr = mmp_nrows(t);
    const mmp_type_traits *tr = mmp_type_get_traits(t->type);
    if (t->type == MMP_TYPE_I32) {
        uint64_t s = in->seed | 1;
        int32_t *d = t->data;
        for (int64_t i = 0; i < n; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            d[i] = (int32_t)in->lo + (int32_t)((s >> 20) % (uint64_t)(in->hi - in->lo));
        }
        return;
    }
    float *f = malloc((size_t)n * sizeof(float));
    assert_non_null(f);
    mmpt_rand_fill(f, (size_t)n, in->seed, in->lo, in->hi);
    if (t->type == MMP_TYPE_F32) {
        memcpy(t->data, f, (size_t)n * 4);
    } else if (tr->can_quantize) {
        size_t rs = mmp_row_size(t->type, ne0);
        for (int64_t r = 0; r < nr; r++)
            assert_int_equal(mmp_quantize_row(t->type, f + r * ne0, (char *)t->data + r * rs, ne0), MMP_OK);
    } else {
        /* K-quants: random bytes with sane fp16 scales */
        uint64_t s = in->seed | 1;
        uint8_t *d = t->data;
        size_t bytes = mmp_tensor_nbytes(t);
        for (size_t i = 0; i < bytes; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; d[i] = (uint8_t)(s >> 32); }
        for (size_t b = 0; b < bytes / tr->type_size; b++) patch_kquant(t->type, d + b * tr->type_size, &s);
    }
    free(f);
}

/* Gather a (possibly strided) f32/i32 tensor into contiguous memory. */
static void gather(const mmp_tensor *t, void *dst) {
    size_t es = t->type == MMP_TYPE_F32 || t->type == MMP_TYPE_I32 ? 4 : 2;
    char *o = dst;
    for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < t->ne[1]; i1++)
                for (int64_t i0 = 0; i0 < t->ne[0]; i0++, o += es)
                    memcpy(o, (const char *)t->data + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3], es);
}

/* Plan + compute `node` on each backend; compare with the reference. */
static void check_node(struct tc *c, mmp_tensor *node, const char *what) {
    if (!node) fail_msg("%s: build failed: %s", what, mmp_last_error());
    mmp_set_output(node);
    const int64_t n = mmp_nelements(node);
    for (int b = 0; b < 3; b++) {
        enum mmp_status s = mmp_graph_plan(g_be[b], c->g);
        if (s != MMP_OK) fail_msg("%s: plan: %s", what, mmp_last_error());
        for (int i = 0; i < c->n_in; i++) fill(&c->in[i]);
        s = mmp_graph_compute(g_be[b], c->g, NULL, NULL);
        if (s != MMP_OK) fail_msg("%s: compute: %s", what, mmp_last_error());
        void *ref = calloc((size_t)n, 4), *got = calloc((size_t)n, 4);
        assert_true(ref && got);
        s = mmp__ref_compute(node, ref);
        if (s != MMP_OK) fail_msg("%s: ref: %s", what, mmp_last_error());
        gather(node, got);
        if (node->type == MMP_TYPE_I32) {
            if (memcmp(ref, got, (size_t)n * 4) != 0) {
                for (int64_t i = 0; i < n; i++)
                    if (((int32_t *)ref)[i] != ((int32_t *)got)[i])
                        fail_msg("%s (%d threads): element %lld: %d != ref %d", what, b + 1, (long long)i,
                                 ((int32_t *)got)[i], ((int32_t *)ref)[i]);
            }
        } else if (node->type == MMP_TYPE_F16 || node->type == MMP_TYPE_BF16) {
            /* compare after widening */
            float *rf = malloc((size_t)n * 4), *gf = malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) {
                uint16_t r = ((uint16_t *)ref)[i], q = ((uint16_t *)got)[i];
                rf[i] = node->type == MMP_TYPE_F16 ? mmp_fp16_to_fp32(r) : mmp_bf16_to_fp32(r);
                gf[i] = node->type == MMP_TYPE_F16 ? mmp_fp16_to_fp32(q) : mmp_bf16_to_fp32(q);
            }
            double e = mmpt_rel_l2(gf, rf, (size_t)n);
            free(rf); free(gf);
            if (!(e <= TOL)) fail_msg("%s (%d threads): rel L2 %.3g", what, b + 1, e);
        } else {
            double e = mmpt_rel_l2(got, ref, (size_t)n);
            if (!(e <= TOL)) fail_msg("%s (%d threads): rel L2 %.3g > %.1g", what, b + 1, e, TOL);
            /* a zero result would trivially match a zero reference: make sure it is not */
            double nrm = 0;
            for (int64_t i = 0; i < n; i++) nrm += fabs(((float *)ref)[i]);
            if (!(nrm > 0)) fail_msg("%s: reference is all zeros", what);
        }
        free(ref);
        free(got);
    }
}

/* ------------------------------------------------------------ matmul ---- */

static const enum mmp_type WTYPES[] = {
    MMP_TYPE_F32, MMP_TYPE_F16, MMP_TYPE_BF16, MMP_TYPE_Q8_0, MMP_TYPE_Q4_0, MMP_TYPE_Q4_1, MMP_TYPE_Q5_0,
    MMP_TYPE_Q5_1, MMP_TYPE_Q2_K, MMP_TYPE_Q3_K, MMP_TYPE_Q4_K, MMP_TYPE_Q5_K, MMP_TYPE_Q6_K,
};
#define N_WTYPES (sizeof WTYPES / sizeof WTYPES[0])

static int64_t k_for(enum mmp_type ty) {
    int64_t bs = mmp_type_get_traits(ty)->blck_size;
    return bs == 1 ? 67 : bs == 32 ? 96 + 64 + 32 : 768;   /* odd counts of blocks */
}

static void test_mul_mat(void **state) {
    (void)state;
    const int64_t Ns[] = {1, 3, 13};
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        enum mmp_type ty = WTYPES[ti];
        if (!mmp__vec_dot_fast(ty)) continue;
        for (size_t ni = 0; ni < 3; ni++) {
            struct tc c;
            tc_init(&c);
            const int64_t K = k_for(ty);
            mmp_tensor *a = inp(&c, ty, K, 37, 1, 1, -1, 1);
            mmp_tensor *b = inp_f32(&c, K, Ns[ni], 1, 1);
            char what[64];
            snprintf(what, sizeof what, "mul_mat %s N=%lld", mmp_type_name(ty), (long long)Ns[ni]);
            check_node(&c, mmp_mul_mat(c.g, a, b), what);
            tc_free(&c);
        }
    }
}

static void test_mul_mat_batched(void **state) {
    (void)state;
    const int64_t Ns[] = {1, 5, 11};
    for (size_t ni = 0; ni < 3; ni++) {
        /* a [K, M, 2, 1] broadcast over b [K, N, 6, 1]; b a permuted (non-contiguous) view */
        struct tc c;
        tc_init(&c);
        mmp_tensor *a = inp_f32(&c, 19, 23, 2, 1);
        mmp_tensor *bt = inp_f32(&c, 19, 6, Ns[ni], 1);
        mmp_tensor *b = mmp_permute(c.g, bt, 0, 2, 1, 3);   /* [19, N, 6] */
        check_node(&c, mmp_mul_mat(c.g, a, b), "mul_mat batched");
        tc_free(&c);
        /* f16 weights, batched */
        tc_init(&c);
        a = inp(&c, MMP_TYPE_F16, 19, 23, 3, 1, -1, 1);
        b = inp_f32(&c, 19, Ns[ni], 3, 2);
        mmp_tensor *a4 = mmp_reshape_4d(c.g, a, 19, 23, 3, 1);
        check_node(&c, mmp_mul_mat(c.g, a4, b), "mul_mat f16 batched");
        tc_free(&c);
    }
}

static void test_mul_mat_id(void **state) {
    (void)state;
    const enum mmp_type tys[] = {MMP_TYPE_F32, MMP_TYPE_F16, MMP_TYPE_Q8_0, MMP_TYPE_Q4_0, MMP_TYPE_Q4_K, MMP_TYPE_Q6_K};
    const int64_t Ts[] = {1, 3, 29};
    for (size_t ti = 0; ti < sizeof tys / sizeof tys[0]; ti++) {
        if (!mmp__vec_dot_fast(tys[ti])) continue;
        for (size_t tt = 0; tt < 3; tt++)
            for (int nb = 0; nb < 2; nb++) {
                struct tc c;
                tc_init(&c);
                const int64_t K = k_for(tys[ti]), M = 21, E = 5, k = 2, T = Ts[tt];
                mmp_tensor *as = inp(&c, tys[ti], K, M, E, 1, -1, 1);
                mmp_tensor *b = inp_f32(&c, K, nb ? k : 1, T, 1);
                /* ids: random experts (repeats within a token allowed: still well defined) */
                mmp_tensor *ids = inp(&c, MMP_TYPE_I32, k, T, 1, 1, 0, (float)E);
                char what[80];
                snprintf(what, sizeof what, "mul_mat_id %s T=%lld n_b=%d", mmp_type_name(tys[ti]), (long long)T, nb ? 2 : 1);
                check_node(&c, mmp_mul_mat_id(c.g, as, b, ids), what);
                tc_free(&c);
            }
    }
}

static void test_get_rows(void **state) {
    (void)state;
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        enum mmp_type ty = WTYPES[ti];
        struct tc c;
        tc_init(&c);
        const int64_t K = k_for(ty);
        mmp_tensor *a = inp(&c, ty, K, 11, 1, 1, -1, 1);
        mmp_tensor *ids = inp(&c, MMP_TYPE_I32, 7, 3, 1, 1, 0, 11);
        char what[64];
        snprintf(what, sizeof what, "get_rows %s", mmp_type_name(ty));
        check_node(&c, mmp_get_rows(c.g, a, ids), what);
        tc_free(&c);
    }
    /* batched tables: a [K, R, B], ids [n, B] */
    struct tc c;
    tc_init(&c);
    mmp_tensor *a = inp_f32(&c, 1, 9, 5, 1);
    mmp_tensor *ids = inp(&c, MMP_TYPE_I32, 3, 5, 1, 1, 0, 9);
    check_node(&c, mmp_get_rows(c.g, a, ids), "get_rows batched");
    tc_free(&c);
}

/* --------------------------------------------------------- elementwise ---- */

static void test_binary(void **state) {
    (void)state;
    typedef mmp_tensor *(*bin_fn)(mmp_graph *, mmp_tensor *, mmp_tensor *);
    const bin_fn fns[] = {mmp_add, mmp_sub, mmp_mul, mmp_div};
    const char *names[] = {"add", "sub", "mul", "div"};
    const int64_t bshapes[][4] = {{13, 7, 5, 3}, {13, 1, 5, 1}, {1, 7, 1, 1}, {1, 1, 1, 1}, {13, 7, 1, 3}};
    for (int f = 0; f < 4; f++)
        for (int s = 0; s < 5; s++)
            for (int perm = 0; perm < 2; perm++) {
                struct tc c;
                tc_init(&c);
                mmp_tensor *a;
                if (perm) {
                    mmp_tensor *at = inp_f32(&c, 7, 13, 5, 3);
                    a = mmp_transpose(c.g, at);   /* [13, 7, 5, 3], non-contiguous */
                } else {
                    a = inp_f32(&c, 13, 7, 5, 3);
                }
                mmp_tensor *b = inp(&c, MMP_TYPE_F32, bshapes[s][0], bshapes[s][1], bshapes[s][2], bshapes[s][3],
                                    f == 3 ? 0.5f : -1.0f, f == 3 ? 2.0f : 1.0f);
                char what[64];
                snprintf(what, sizeof what, "%s shape %d perm %d", names[f], s, perm);
                check_node(&c, fns[f](c.g, a, b), what);
                tc_free(&c);
            }
}

static void test_unary(void **state) {
    (void)state;
    for (int op = 0; op < MMP_UNARY_COUNT; op++) {
        struct tc c;
        tc_init(&c);
        mmp_tensor *a = inp(&c, MMP_TYPE_F32, 37, 9, 3, 1, -4.0f, 4.0f);
        char what[64];
        snprintf(what, sizeof what, "unary %d", op);
        check_node(&c, mmp_unary(c.g, a, (enum mmp_unary)op), what);
        tc_free(&c);
    }
    struct tc c;
    tc_init(&c);
    mmp_tensor *a = inp(&c, MMP_TYPE_F32, 37, 9, 3, 1, -4.0f, 4.0f);
    check_node(&c, mmp_scale_bias(c.g, mmp_transpose(c.g, a), 0.37f, -0.5f), "scale_bias");
    tc_free(&c);
    tc_init(&c);
    a = inp(&c, MMP_TYPE_F32, 37, 9, 3, 1, -4.0f, 4.0f);
    check_node(&c, mmp_clamp(c.g, a, -1.5f, 2.0f), "clamp");
    tc_free(&c);
    tc_init(&c);
    a = inp(&c, MMP_TYPE_F32, 41, 9, 3, 1, -4.0f, 4.0f);
    mmp_tensor *b = inp_f32(&c, 41, 9, 3, 1);
    check_node(&c, mmp_swiglu(c.g, a, b), "swiglu");
    tc_free(&c);
    tc_init(&c);
    a = inp(&c, MMP_TYPE_F32, 41, 9, 3, 1, -4.0f, 4.0f);
    b = inp_f32(&c, 41, 9, 3, 1);
    check_node(&c, mmp_geglu(c.g, a, b), "geglu");
    tc_free(&c);
    tc_init(&c);
    a = inp_f32(&c, 53, 7, 3, 1);
    check_node(&c, mmp_sum_rows(c.g, a), "sum_rows");
    tc_free(&c);
}

/* ---------------------------------------------------------------- norms ---- */

static void test_norms(void **state) {
    (void)state;
    struct tc c;
    tc_init(&c);
    mmp_tensor *a = inp(&c, MMP_TYPE_F32, 67, 9, 3, 1, -2.0f, 3.0f);
    check_node(&c, mmp_rms_norm(c.g, a, 1e-6f), "rms_norm");
    tc_free(&c);
    for (int wb = 0; wb < 4; wb++) {
        tc_init(&c);
        a = inp(&c, MMP_TYPE_F32, 67, 9, 3, 1, -2.0f, 3.0f);
        mmp_tensor *w = (wb & 1) ? inp_f32(&c, 67, 1, 1, 1) : NULL;
        mmp_tensor *b = (wb & 2) ? inp_f32(&c, 67, 1, 1, 1) : NULL;
        check_node(&c, mmp_layer_norm(c.g, a, w, b, 1e-5f), "layer_norm");
        tc_free(&c);
    }
    for (int wb = 0; wb < 2; wb++) {
        tc_init(&c);
        a = inp(&c, MMP_TYPE_F32, 7, 5, 12, 2, -2.0f, 3.0f);
        mmp_tensor *w = wb ? inp_f32(&c, 12, 1, 1, 1) : NULL;
        mmp_tensor *b = wb ? inp_f32(&c, 12, 1, 1, 1) : NULL;
        check_node(&c, mmp_group_norm(c.g, a, 4, w, b, 1e-6f), "group_norm");
        tc_free(&c);
    }
}

static void test_softmax(void **state) {
    (void)state;
    struct tc c;
    tc_init(&c);
    mmp_tensor *a = inp(&c, MMP_TYPE_F32, 37, 9, 3, 1, -5, 5);
    check_node(&c, mmp_softmax(c.g, a), "softmax");
    tc_free(&c);
    for (int mode = 0; mode < 4; mode++) {
        tc_init(&c);
        a = inp(&c, MMP_TYPE_F32, 37, 9, 3, 1, -5, 5);
        mmp_tensor *m = NULL;
        if (mode == 1) m = inp_f32(&c, 37, 9, 1, 1);
        if (mode == 3) m = inp_f32(&c, 37, 9, 3, 1);
        check_node(&c, mmp_softmax_ext(c.g, a, m, 0.125f, mode >= 2, mode == 2 ? 5 : 0), "softmax_ext");
        tc_free(&c);
    }
}

static void test_rope(void **state) {
    (void)state;
    for (int mode = 0; mode < 2; mode++)
        for (int partial = 0; partial < 2; partial++) {
            struct tc c;
            tc_init(&c);
            /* [D=18, H=3, T=7] with positions up to 5000 */
            mmp_tensor *a = inp_f32(&c, 18, 3, 7, 1);
            mmp_tensor *pos = inp(&c, MMP_TYPE_I32, 7, 1, 1, 1, 0, 5000);
            check_node(&c, mmp_rope_ext(c.g, a, pos, partial ? 10 : 18, mode ? MMP_ROPE_NEOX : MMP_ROPE_NORMAL, 10000.0f,
                                        partial ? 0.5f : 1.0f),
                       mode ? "rope neox" : "rope normal");
            tc_free(&c);
        }
    /* a non-contiguous input: [D, T, H] permuted to [D, H, T] */
    struct tc c;
    tc_init(&c);
    mmp_tensor *at = inp_f32(&c, 16, 7, 3, 1);
    mmp_tensor *pos = inp(&c, MMP_TYPE_I32, 7, 1, 1, 1, 0, 100);
    check_node(&c, mmp_rope(c.g, mmp_permute(c.g, at, 0, 2, 1, 3), pos, 16, MMP_ROPE_NEOX, 1e6f), "rope permuted");
    tc_free(&c);
}

/* ---------------------------------------------------------- convolution ---- */

static void test_conv(void **state) {
    (void)state;
    const int cfg1[][3] = {{1, 1, 1}, {2, 1, 1}, {1, 2, 2}, {3, 0, 1}};
    for (int i = 0; i < 4; i++)
        for (int f16 = 0; f16 < 2; f16++) {
            struct tc c;
            tc_init(&c);
            mmp_tensor *w = inp(&c, f16 ? MMP_TYPE_F16 : MMP_TYPE_F32, 3, 5, 7, 1, -1, 1);
            mmp_tensor *x = inp_f32(&c, 37, 5, 2, 1);
            check_node(&c, mmp_conv1d(c.g, w, x, cfg1[i][0], cfg1[i][1], cfg1[i][2]), "conv1d");
            tc_free(&c);
        }
    const int cfg2[][6] = {{1, 1, 1, 1, 1, 1}, {2, 2, 1, 1, 1, 1}, {1, 2, 0, 1, 2, 1}, {2, 1, 1, 0, 1, 1}};
    for (int i = 0; i < 4; i++)
        for (int f16 = 0; f16 < 2; f16++) {
            struct tc c;
            tc_init(&c);
            mmp_tensor *w = inp(&c, f16 ? MMP_TYPE_F16 : MMP_TYPE_F32, 3, 3, 5, 6, -1, 1);
            mmp_tensor *x = inp_f32(&c, 13, 11, 5, 2);
            const int *p = cfg2[i];
            check_node(&c, mmp_conv2d(c.g, w, x, p[0], p[1], p[2], p[3], p[4], p[5]), "conv2d 3x3");
            tc_free(&c);
        }
    /* 1x1 on a permuted input */
    struct tc c;
    tc_init(&c);
    mmp_tensor *w = inp_f32(&c, 1, 1, 5, 9);
    mmp_tensor *xt = inp_f32(&c, 11, 13, 5, 1);
    check_node(&c, mmp_conv2d(c.g, w, mmp_transpose(c.g, xt), 1, 1, 0, 0, 1, 1), "conv2d 1x1");
    tc_free(&c);
}

static void test_resample(void **state) {
    (void)state;
    for (int k = 2; k <= 3; k++) {
        struct tc c;
        tc_init(&c);
        mmp_tensor *a = inp_f32(&c, 7, 5, 3, 2);
        check_node(&c, mmp_upsample_nearest(c.g, a, k), "upsample");
        tc_free(&c);
    }
    struct tc c;
    tc_init(&c);
    mmp_tensor *a = inp_f32(&c, 37, 5, 3, 1);
    check_node(&c, mmp_avg_pool1d(c.g, a, 2, 2, 0), "avg_pool1d k2s2");
    tc_free(&c);
    tc_init(&c);
    a = inp_f32(&c, 37, 5, 3, 1);
    check_node(&c, mmp_avg_pool1d(c.g, a, 3, 2, 1), "avg_pool1d k3s2p1");
    tc_free(&c);
    tc_init(&c);
    a = inp_f32(&c, 13, 11, 3, 2);
    check_node(&c, mmp_avg_pool2d(c.g, a, 3, 3, 2, 2, 1, 1), "avg_pool2d k3s2p1");
    tc_free(&c);
    tc_init(&c);
    a = inp_f32(&c, 13, 11, 3, 2);
    check_node(&c, mmp_avg_pool2d(c.g, a, 2, 2, 2, 2, 0, 0), "avg_pool2d k2s2");
    tc_free(&c);
}

static void test_layout(void **state) {
    (void)state;
    for (int dim = 0; dim < 4; dim++) {
        struct tc c;
        tc_init(&c);
        int64_t ne[4] = {5, 3, 4, 2};
        mmp_tensor *a = inp_f32(&c, ne[0], ne[1], ne[2], ne[3]);
        ne[dim] = 3;
        mmp_tensor *b = inp_f32(&c, ne[0], ne[1], ne[2], ne[3]);
        check_node(&c, mmp_concat(c.g, a, b, dim), "concat");
        tc_free(&c);
    }
    struct tc c;
    tc_init(&c);
    mmp_tensor *a = inp_f32(&c, 5, 3, 4, 2);
    check_node(&c, mmp_cont(c.g, mmp_permute(c.g, a, 2, 0, 3, 1)), "cont permute");
    tc_free(&c);
    tc_init(&c);
    a = inp(&c, MMP_TYPE_F16, 7, 3, 4, 1, -1, 1);
    check_node(&c, mmp_cont(c.g, mmp_transpose(c.g, a)), "cont f16 transpose");
    tc_free(&c);
    tc_init(&c);
    a = inp(&c, MMP_TYPE_BF16, 7, 3, 4, 1, -1, 1);
    check_node(&c, mmp_cont(c.g, a), "cont bf16");
    tc_free(&c);
    tc_init(&c);
    a = inp_f32(&c, 9, 7, 5, 1);
    /* view of rows 2..5 of each matrix, then a 3-D view with a gap */
    mmp_tensor *v = mmp_view_3d(c.g, a, 4, 3, 5, a->nb[1], a->nb[2], 2 * a->nb[1] + 4);
    check_node(&c, mmp_cont(c.g, v), "cont view");
    tc_free(&c);
}

static void test_cpy(void **state) {
    (void)state;
    const enum mmp_type tys[] = {MMP_TYPE_F32, MMP_TYPE_F16, MMP_TYPE_BF16};
    for (int ti = 0; ti < 3; ti++) {
        struct tc c;
        tc_init(&c);
        /* write a [6, 2, 3] block into rows 4..6 of a [12, 10] cache (row = 12 elements) */
        mmp_tensor *cache = inp(&c, tys[ti], 12, 10, 1, 1, -1, 1);
        mmp_tensor *src = inp_f32(&c, 6, 2, 3, 1);
        size_t es = tys[ti] == MMP_TYPE_F32 ? 4 : 2;
        mmp_tensor *dst = mmp_view_2d(c.g, cache, 12, 3, cache->nb[1], 4 * 12 * es);
        check_node(&c, mmp_cpy(c.g, src, dst), "cpy contiguous src");
        tc_free(&c);
        tc_init(&c);
        cache = inp(&c, tys[ti], 12, 10, 1, 1, -1, 1);
        mmp_tensor *srct = inp_f32(&c, 3, 12, 1, 1);
        /* strided source and a strided destination (every other row) */
        dst = mmp_view_2d(c.g, cache, 12, 3, cache->nb[1] * 2, 1 * 12 * es);
        check_node(&c, mmp_cpy(c.g, mmp_transpose(c.g, srct), dst), "cpy strided");
        tc_free(&c);
    }
}

/* ------------------------------------------------------------ attention ---- */

static void test_attn(void **state) {
    (void)state;
    const int64_t Tqs[] = {1, 5, 13};
    for (size_t tq = 0; tq < 3; tq++)
        for (int kv16 = 0; kv16 < 2; kv16++)
            for (int mode = 0; mode < 3; mode++) {
                struct tc c;
                tc_init(&c);
                const int64_t D = 16, Dv = 12, H = 4, Hkv = 2, Tq = Tqs[tq], n_past = 6, Tk = Tq + n_past;
                /* q arrives as [D, H, Tq] (after RoPE) and is permuted to [D, Tq, H] */
                mmp_tensor *qt = inp_f32(&c, D, H, Tq, 1);
                mmp_tensor *q = mmp_permute(c.g, qt, 0, 2, 1, 3);
                enum mmp_type kt = kv16 ? MMP_TYPE_F16 : MMP_TYPE_F32;
                mmp_tensor *kc = inp(&c, kt, D, Hkv, Tk, 1, -1, 1);
                mmp_tensor *vc = inp(&c, kt, Dv, Hkv, Tk, 1, -1, 1);
                mmp_tensor *k = mmp_permute(c.g, kc, 0, 2, 1, 3);
                mmp_tensor *v = mmp_permute(c.g, vc, 0, 2, 1, 3);
                mmp_tensor *mask = mode == 1 ? inp(&c, MMP_TYPE_F32, Tk, Tq, 1, 1, -2, 0) : NULL;
                char what[64];
                snprintf(what, sizeof what, "attn Tq=%lld f16=%d mode=%d", (long long)Tq, kv16, mode);
                check_node(&c, mmp_attn(c.g, q, k, v, mask, 0.25f, mode == 2, (int)n_past), what);
                tc_free(&c);
            }
    /* batch dim and a per-head mask, contiguous q/k/v */
    struct tc c;
    tc_init(&c);
    mmp_tensor *q = inp_f32(&c, 13, 9, 2, 2);
    mmp_tensor *k = inp_f32(&c, 13, 11, 1, 2);
    mmp_tensor *v = inp_f32(&c, 7, 11, 1, 2);
    mmp_tensor *m = inp(&c, MMP_TYPE_F32, 11, 9, 2, 1, -3, 0);
    check_node(&c, mmp_attn(c.g, q, k, v, m, 0.35f, false, 0), "attn batch");
    tc_free(&c);
    /* odd head dim, f16 cache, decode (vector path) */
    tc_init(&c);
    q = inp_f32(&c, 13, 1, 4, 1);
    k = inp(&c, MMP_TYPE_F16, 13, 21, 2, 1, -1, 1);
    v = inp(&c, MMP_TYPE_F16, 13, 21, 2, 1, -1, 1);
    check_node(&c, mmp_attn(c.g, q, k, v, NULL, 0.3f, true, 20), "attn decode f16 odd D");
    tc_free(&c);
}

/* ----------------------------------------------------------- selection ---- */

static void test_topk(void **state) {
    (void)state;
    for (int k = 1; k <= 7; k += 3) {
        struct tc c;
        tc_init(&c);
        mmp_tensor *a = inp_f32(&c, 37, 9, 2, 1);
        check_node(&c, mmp_top_k(c.g, a, k), "top_k");
        tc_free(&c);
    }
    /* ties: values drawn from a table of 4 levels */
    struct tc c;
    tc_init(&c);
    /* clamp to a few levels: values in {0,1,2,3} via rounding is not an op; use a fixed table */
    mmp_tensor *ids = inp(&c, MMP_TYPE_I32, 23, 5, 1, 1, 0, 4);
    mmp_tensor *levels = inp_f32(&c, 1, 4, 1, 1);
    mmp_tensor *a, *tied = mmp_reshape_2d(c.g, mmp_get_rows(c.g, levels, ids), 23, 5);
    check_node(&c, mmp_top_k(c.g, tied, 6), "top_k ties");
    tc_free(&c);
    tc_init(&c);
    ids = inp(&c, MMP_TYPE_I32, 23, 5, 1, 1, 0, 3);
    levels = inp_f32(&c, 1, 3, 1, 1);
    tied = mmp_reshape_2d(c.g, mmp_get_rows(c.g, levels, ids), 23, 5);
    check_node(&c, mmp_argmax(c.g, tied), "argmax ties");
    tc_free(&c);
    tc_init(&c);
    a = inp_f32(&c, 101, 7, 1, 1);
    check_node(&c, mmp_argmax(c.g, a), "argmax");
    tc_free(&c);
}

/* Sizes that make the fast paths work in chunks (core/cpu_matmul.c: dequantized weight
 * blocks of 2M floats, MoE gathers of 512 pairs, attention query chunks of 256, im2col
 * chunks of 4M floats). */
static void test_chunked_paths(void **state) {
    (void)state;
    struct tc c;
    tc_init(&c);
    mmp_tensor *a = inp(&c, MMP_TYPE_Q8_0, 65536, 37, 1, 1, -1, 1);   /* 32-row blocks: 2 blocks */
    mmp_tensor *b = inp_f32(&c, 65536, 8, 1, 1);
    check_node(&c, mmp_mul_mat(c.g, a, b), "mul_mat dequantized blocks");
    tc_free(&c);
    tc_init(&c);
    mmp_tensor *as = inp(&c, MMP_TYPE_F16, 32, 5, 2, 1, -1, 1);
    b = inp_f32(&c, 32, 1, 600, 1);
    mmp_tensor *ids = inp(&c, MMP_TYPE_I32, 1, 600, 1, 1, 0, 1);      /* all 600 tokens on expert 0 */
    check_node(&c, mmp_mul_mat_id(c.g, as, b, ids), "mul_mat_id chunks");
    tc_free(&c);
    tc_init(&c);
    mmp_tensor *q = inp_f32(&c, 8, 300, 2, 1);
    mmp_tensor *k = inp_f32(&c, 8, 310, 1, 1);
    mmp_tensor *v = inp_f32(&c, 8, 310, 1, 1);
    check_node(&c, mmp_attn(c.g, q, k, v, NULL, 0.3f, true, 10), "attn query chunks");
    tc_free(&c);
    tc_init(&c);
    mmp_tensor *w = inp_f32(&c, 3, 1024, 2, 1);
    mmp_tensor *x = inp_f32(&c, 1500, 1024, 1, 1);
    check_node(&c, mmp_conv1d(c.g, w, x, 1, 1, 1), "conv1d im2col chunks");
    tc_free(&c);
}

/* Activations over a wide range (the vectorized exp/erf paths: saturation, exp underflow)
 * and softmax over rows with a wide spread of scores. */
static void test_unary_wide(void **state) {
    (void)state;
    for (int op = 0; op < MMP_UNARY_COUNT; op++) {
        struct tc c;
        tc_init(&c);
        mmp_tensor *a = inp(&c, MMP_TYPE_F32, 67, 5, 2, 1, -60.0f, 60.0f);
        char what[64];
        snprintf(what, sizeof what, "unary wide %d", op);
        check_node(&c, mmp_unary(c.g, a, (enum mmp_unary)op), what);
        tc_free(&c);
    }
    struct tc c;
    tc_init(&c);
    mmp_tensor *q = inp(&c, MMP_TYPE_F32, 16, 40, 2, 1, -6.0f, 6.0f);
    mmp_tensor *k = inp(&c, MMP_TYPE_F32, 16, 45, 2, 1, -6.0f, 6.0f);
    mmp_tensor *v = inp_f32(&c, 16, 45, 2, 1);
    check_node(&c, mmp_attn(c.g, q, k, v, NULL, 1.0f, false, 0), "attn wide scores");
    tc_free(&c);
}

/* Convolution GEMM layouts of the CPU backend: a contiguous 1x1 (the input used as the GEMM
 * operand directly, F16 weights, batch 2); a 3x3 whose im2col chunks end mid-row (CK = 4608,
 * 1600 positions); batch items merged side by side in one GEMM (small images, batch 3);
 * per-thread tiles (small weights) and the shared GEMM (big weights); the direct path for a
 * few output channels. */
static void test_conv_gemm_paths(void **state) {
    (void)state;
    struct tc c;
    tc_init(&c);
    mmp_tensor *w = inp(&c, MMP_TYPE_F16, 1, 1, 6, 7, -1, 1);
    mmp_tensor *x = inp_f32(&c, 9, 5, 6, 2);
    check_node(&c, mmp_conv2d(c.g, w, x, 1, 1, 0, 0, 1, 1), "conv2d 1x1 pointwise");
    tc_free(&c);
    tc_init(&c);
    w = inp_f32(&c, 3, 3, 512, 5);
    x = inp_f32(&c, 40, 40, 512, 1);
    check_node(&c, mmp_conv2d(c.g, w, x, 1, 1, 1, 1, 1, 1), "conv2d im2col chunks");
    tc_free(&c);
    tc_init(&c);
    w = inp_f32(&c, 3, 3, 4, 5);
    x = inp_f32(&c, 6, 5, 4, 3);
    check_node(&c, mmp_conv2d(c.g, w, x, 2, 1, 1, 0, 1, 2), "conv2d merged batch");
    tc_free(&c);
    /* weights above the per-thread tile limit (64 x 4608 floats): the shared GEMM, in chunks
     * that end mid-row, and with batch items merged */
    tc_init(&c);
    w = inp_f32(&c, 3, 3, 512, 64);
    x = inp_f32(&c, 34, 30, 512, 1);
    check_node(&c, mmp_conv2d(c.g, w, x, 1, 1, 1, 1, 1, 1), "conv2d big weights chunks");
    tc_free(&c);
    tc_init(&c);
    w = inp_f32(&c, 3, 3, 512, 64);
    x = inp_f32(&c, 6, 5, 512, 3);
    check_node(&c, mmp_conv2d(c.g, w, x, 1, 1, 1, 1, 1, 1), "conv2d big weights merged batch");
    tc_free(&c);
    /* per-thread tiles across a 1D signal (2 tiles of 1376 positions) */
    tc_init(&c);
    w = inp_f32(&c, 3, 64, 8, 1);
    x = inp_f32(&c, 1500, 64, 1, 1);
    check_node(&c, mmp_conv1d(c.g, w, x, 1, 1, 1), "conv1d tiles");
    tc_free(&c);
    /* few output channels: the direct (no GEMM) path, 2D with stride/padding and F16
     * weights, batch 2; and 1D */
    tc_init(&c);
    w = inp(&c, MMP_TYPE_F16, 3, 3, 24, 3, -1, 1);
    x = inp_f32(&c, 33, 17, 24, 2);
    check_node(&c, mmp_conv2d(c.g, w, x, 2, 1, 1, 1, 1, 1), "conv2d direct Cout 3");
    tc_free(&c);
    tc_init(&c);
    w = inp_f32(&c, 5, 16, 2, 1);
    x = inp_f32(&c, 300, 16, 2, 1);
    check_node(&c, mmp_conv1d(c.g, w, x, 1, 2, 2), "conv1d direct Cout 2");
    tc_free(&c);
}

/* Sizes above the CPU backend's thresholds for using more than one thread (mat-vec weights of
 * 256 KiB and more, split in row chunks claimed dynamically; elementwise work of 64K units;
 * vector attention of 128K multiply-adds), so the pool's chunked paths are compared with the
 * references too. Row counts are not multiples of the chunk size (partial last chunk).
 * Each graph is computed several times: the pool's state carries over between jobs. */
static void test_parallel_split(void **state) {
    (void)state;
    struct tc c;
    const enum mmp_type tys[] = {MMP_TYPE_F32, MMP_TYPE_Q8_0, MMP_TYPE_Q4_0, MMP_TYPE_Q4_K};
    for (size_t ti = 0; ti < sizeof tys / sizeof tys[0]; ti++) {
        if (!mmp__vec_dot_fast(tys[ti])) continue;
        for (int64_t N = 1; N <= 3; N += 2) {
            tc_init(&c);
            mmp_tensor *a = inp(&c, tys[ti], 2048, 301, 1, 1, -1, 1);
            mmp_tensor *b = inp_f32(&c, 2048, N, 1, 1);
            char what[64];
            snprintf(what, sizeof what, "mul_mat split %s N=%lld", mmp_type_name(tys[ti]), (long long)N);
            mmp_tensor *y = mmp_mul_mat(c.g, a, b);
            for (int rep = 0; rep < 3; rep++) check_node(&c, y, what);
            tc_free(&c);
        }
    }
    /* broadcast batches: a [1024, 130, 2] . b [1024, 1, 4] */
    tc_init(&c);
    mmp_tensor *a = inp_f32(&c, 1024, 130, 2, 1);
    mmp_tensor *b = inp_f32(&c, 1024, 1, 4, 1);
    check_node(&c, mmp_mul_mat(c.g, a, b), "mul_mat split batched");
    tc_free(&c);
    /* MoE decode: 2 of 4 experts, 301 rows each */
    tc_init(&c);
    mmp_tensor *as = inp(&c, MMP_TYPE_Q8_0, 1024, 301, 4, 1, -1, 1);
    b = inp_f32(&c, 1024, 1, 2, 1);
    mmp_tensor *ids = inp(&c, MMP_TYPE_I32, 2, 2, 1, 1, 0, 4);
    check_node(&c, mmp_mul_mat_id(c.g, as, b, ids), "mul_mat_id split");
    tc_free(&c);
    /* decode attention over 300 cached keys, 8 heads on 2 KV heads */
    tc_init(&c);
    mmp_tensor *q = inp_f32(&c, 64, 1, 8, 1);
    mmp_tensor *k = inp(&c, MMP_TYPE_F16, 64, 300, 2, 1, -1, 1);
    mmp_tensor *v = inp_f32(&c, 64, 300, 2, 1);
    mmp_tensor *o = mmp_attn(c.g, q, k, v, NULL, 0.125f, true, 299);
    for (int rep = 0; rep < 3; rep++) check_node(&c, o, "attn decode split");
    tc_free(&c);
    /* elementwise ops on [4096, 21] */
    tc_init(&c);
    mmp_tensor *x = inp_f32(&c, 4096, 21, 1, 1);
    mmp_tensor *z = inp_f32(&c, 4096, 21, 1, 1);
    check_node(&c, mmp_add(c.g, x, z), "add split");
    check_node(&c, mmp_silu(c.g, x), "silu split");
    check_node(&c, mmp_swiglu(c.g, x, z), "swiglu split");
    check_node(&c, mmp_rms_norm(c.g, x, 1e-5f), "rms_norm split");
    check_node(&c, mmp_softmax(c.g, z), "softmax split");
    tc_free(&c);
    tc_init(&c);
    mmp_tensor *r = inp_f32(&c, 128, 32, 17, 1);
    mmp_tensor *pos = inp(&c, MMP_TYPE_I32, 17, 1, 1, 1, 0, 4000);
    check_node(&c, mmp_rope(c.g, r, pos, 128, MMP_ROPE_NEOX, 10000.0f), "rope split");
    tc_free(&c);
}

/* The top-k tie rule against an explicit expectation (independent of both implementations). */
static void test_topk_tie_rule(void **state) {
    (void)state;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    mmp_tensor *a = mmp_new_tensor_1d(g, MMP_TYPE_F32, 8);
    mmp_tensor *t = mmp_set_output(mmp_top_k(g, a, 5));
    mmp_tensor *am = mmp_set_output(mmp_argmax(g, a));
    assert_int_equal(mmp_graph_plan(g_be[1], g), MMP_OK);
    const float v[8] = {1, 3, 2, 3, -1, 2, 3, 0};
    memcpy(a->data, v, sizeof v);
    assert_int_equal(mmp_graph_compute(g_be[1], g, NULL, NULL), MMP_OK);
    const int32_t want[5] = {1, 3, 6, 2, 5};
    assert_memory_equal(t->data, want, sizeof want);
    assert_int_equal(((int32_t *)am->data)[0], 1);
    mmp_graph_free(g);
}

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        g_be[i] = mmp_backend_cpu_new(i + 1);
        if (!g_be[i]) return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) mmp_backend_free(g_be[i]);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mul_mat),
        cmocka_unit_test(test_mul_mat_batched),
        cmocka_unit_test(test_mul_mat_id),
        cmocka_unit_test(test_parallel_split),
        cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_conv_gemm_paths),
        cmocka_unit_test(test_unary_wide),
        cmocka_unit_test(test_resample),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_cpy),
        cmocka_unit_test(test_attn),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_topk_tie_rule),
        cmocka_unit_test(test_chunked_paths),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
