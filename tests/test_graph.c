/* The op graph itself: build-time shape/type errors, NULL propagation, the planner's buffer
 * reuse, views, a small MLP against a hand loop, KV-cache writes in build order, the abort
 * callback, run-time id errors, and building large graphs quickly. */
#include "testutil.h"
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static mmp_backend *g_be;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define ASSERT_ERR_HAS(s) do { \
    if (!strstr(mmp_last_error(), (s))) fail_msg("error '%s' lacks '%s'", mmp_last_error(), (s)); \
} while (0)

static void test_shape_errors(void **state) {
    (void)state;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    mmp_tensor *w = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, 768, 32), "blk.0.attn_q");
    mmp_tensor *x = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, 1024, 3), "inp");
    assert_null(mmp_mul_mat(g, w, x));
    ASSERT_ERR_HAS("mmp_mul_mat");
    ASSERT_ERR_HAS("a.ne[0]=768 != b.ne[0]=1024");
    ASSERT_ERR_HAS("'blk.0.attn_q'");
    ASSERT_ERR_HAS("'inp'");

    /* broadcast that does not divide */
    mmp_tensor *y = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, 768, 3), "y");
    mmp_tensor *bias = mmp_set_name(mmp_new_tensor_1d(g, MMP_TYPE_F32, 500), "bias");
    assert_null(mmp_add(g, y, bias));
    ASSERT_ERR_HAS("mmp_add");
    ASSERT_ERR_HAS("'y'");
    ASSERT_ERR_HAS("'bias'");

    /* dtype: ids must be I32 */
    mmp_tensor *emb = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F16, 64, 100), "token_embd");
    mmp_tensor *fid = mmp_set_name(mmp_new_tensor_1d(g, MMP_TYPE_F32, 4), "ids_f32");
    assert_null(mmp_get_rows(g, emb, fid));
    ASSERT_ERR_HAS("i32");
    ASSERT_ERR_HAS("'ids_f32'");

    /* quantized rows need a multiple of the block size */
    assert_null(mmp_new_tensor_2d(g, MMP_TYPE_Q4_0, 33, 2));
    ASSERT_ERR_HAS("block size");

    /* attention heads */
    mmp_tensor *q = mmp_set_name(mmp_new_tensor_3d(g, MMP_TYPE_F32, 16, 5, 6), "q");
    mmp_tensor *k = mmp_set_name(mmp_new_tensor_3d(g, MMP_TYPE_F32, 16, 7, 4), "k");
    mmp_tensor *v = mmp_set_name(mmp_new_tensor_3d(g, MMP_TYPE_F32, 16, 7, 4), "v");
    assert_null(mmp_attn(g, q, k, v, NULL, 0.25f, true, 2));
    ASSERT_ERR_HAS("'q'");
    ASSERT_ERR_HAS("'k'");

    /* reshape count, view past the end, bad permutation, rope n_rot */
    assert_null(mmp_reshape_2d(g, y, 700, 3));
    ASSERT_ERR_HAS("'y'");
    assert_null(mmp_view_2d(g, y, 768, 3, y->nb[1], 4));
    ASSERT_ERR_HAS("past the");
    assert_null(mmp_view_2d(g, y, 4, 2, y->nb[1], 2));
    ASSERT_ERR_HAS("element size");
    assert_null(mmp_permute(g, y, 0, 0, 1, 2));
    ASSERT_ERR_HAS("permutation");
    mmp_tensor *pos = mmp_new_tensor_1d(g, MMP_TYPE_I32, 6);
    mmp_tensor *qq = mmp_new_tensor_3d(g, MMP_TYPE_F32, 16, 5, 6);
    assert_null(mmp_rope(g, qq, pos, 17, MMP_ROPE_NEOX, 10000.0f));
    ASSERT_ERR_HAS("n_rot");
    assert_non_null(mmp_rope(g, qq, pos, 16, MMP_ROPE_NEOX, 10000.0f));
    /* conv Cin mismatch, top_k k too big, group_norm groups */
    mmp_tensor *cw = mmp_set_name(mmp_new_tensor_4d(g, MMP_TYPE_F32, 3, 3, 4, 8), "conv.w");
    mmp_tensor *cx = mmp_set_name(mmp_new_tensor_4d(g, MMP_TYPE_F32, 9, 9, 5, 1), "img");
    assert_null(mmp_conv2d(g, cw, cx, 1, 1, 1, 1, 1, 1));
    ASSERT_ERR_HAS("'conv.w'");
    ASSERT_ERR_HAS("'img'");
    assert_null(mmp_top_k(g, y, 769));
    assert_null(mmp_group_norm(g, cx, 2, NULL, NULL, 1e-5f));
    /* mul_mat_id shape checks */
    mmp_tensor *ex = mmp_set_name(mmp_new_tensor_3d(g, MMP_TYPE_F32, 64, 32, 4), "ffn_up_exps");
    mmp_tensor *xb = mmp_set_name(mmp_new_tensor_3d(g, MMP_TYPE_F32, 64, 1, 5), "x");
    mmp_tensor *ids = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_I32, 2, 4), "sel");
    assert_null(mmp_mul_mat_id(g, ex, xb, ids));
    ASSERT_ERR_HAS("'sel'");
    /* a bad graph capacity */
    mmp_graph_params p = mmp_graph_params_default();
    p.max_tensors = 0;
    assert_null(mmp_graph_new(p));
    mmp_graph_free(g);
}

/* A NULL anywhere in a chain gives NULL at the end without crashing. */
static void test_null_chain(void **state) {
    (void)state;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    mmp_tensor *x = mmp_new_tensor_2d(g, MMP_TYPE_F32, 8, 2);
    mmp_tensor *bad = mmp_mul_mat(g, x, mmp_new_tensor_2d(g, MMP_TYPE_F32, 9, 2));
    assert_null(bad);
    char saved[256];
    snprintf(saved, sizeof saved, "%s", mmp_last_error());
    mmp_tensor *t = mmp_gelu(g, mmp_add(g, mmp_rms_norm(g, bad, 1e-5f), x));
    t = mmp_set_output(mmp_set_name(mmp_cont(g, mmp_permute(g, mmp_reshape_2d(g, t, 2, 8), 1, 0, 2, 3)), "out"));
    assert_null(t);
    assert_null(mmp_attn(g, NULL, x, x, NULL, 1.0f, false, 0));
    assert_null(mmp_mul_mat_id(g, x, NULL, x));
    assert_null(mmp_cpy(g, NULL, x));
    assert_null(mmp_concat(g, x, NULL, 0));
    assert_null(mmp_get_rows(NULL, x, x));
    /* the first error is what the caller sees */
    assert_string_equal(mmp_last_error(), saved);
    mmp_graph_free(g);
    mmp_graph_free(NULL);
    mmp_backend_free(NULL);
}

/* 10 same-size elementwise ops in a chain: input + 2 ping-pong buffers. */
static void test_planner_reuse(void **state) {
    (void)state;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    const int64_t n = 1000;   /* 4000 bytes, 4032 aligned */
    mmp_tensor *x = mmp_new_tensor_1d(g, MMP_TYPE_F32, n);
    mmp_tensor *t = x;
    for (int i = 0; i < 10; i++) t = mmp_scale_bias(g, t, 1.0f, 1.0f);
    mmp_set_output(t);
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    mmp_graph_stats st = mmp_graph_get_stats(g);
    assert_int_equal(st.n_nodes, 10);
    assert_true(st.planned_bytes <= 3 * 4032);
    assert_true(st.naive_bytes >= 11 * 4000);
    for (int64_t i = 0; i < n; i++) ((float *)x->data)[i] = (float)i;
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_OK);
    for (int64_t i = 0; i < n; i++) assert_true(((float *)t->data)[i] == (float)i + 10.0f);
    /* compute again: same result (inputs and outputs are never reused) */
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_OK);
    for (int64_t i = 0; i < n; i++) assert_true(((float *)t->data)[i] == (float)i + 10.0f);

    /* A view keeps its source alive: y = x+1; v = view(y); z = (y*2) ... + v at the end. */
    mmp_graph_reset(g);
    x = mmp_new_tensor_1d(g, MMP_TYPE_F32, n);
    mmp_tensor *y = mmp_scale_bias(g, x, 1.0f, 1.0f);
    mmp_tensor *v = mmp_reshape_2d(g, y, 10, 100);
    mmp_tensor *z = mmp_scale(g, y, 2.0f);
    for (int i = 0; i < 6; i++) z = mmp_scale_bias(g, z, 1.0f, 0.5f);
    mmp_tensor *out = mmp_set_output(mmp_add(g, mmp_reshape_2d(g, z, 10, 100), v));
    assert_non_null(out);
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    for (int64_t i = 0; i < n; i++) ((float *)x->data)[i] = (float)i;
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_OK);
    for (int64_t i = 0; i < n; i++) {
        float yy = (float)i + 1.0f;
        assert_true(((float *)out->data)[i] == yy * 2.0f + 3.0f + yy);
    }
    mmp_graph_free(g);
}

/* reshape -> permute -> cont -> view -> add, against index arithmetic by hand. */
static void test_view_chain(void **state) {
    (void)state;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    const int64_t A = 5, B = 3, C = 4;
    mmp_tensor *x = mmp_new_tensor_1d(g, MMP_TYPE_F32, A * B * C);
    mmp_tensor *r = mmp_reshape_3d(g, x, A, B, C);          /* r[a, b, c] = x[a + A b + A B c] */
    mmp_tensor *p = mmp_permute(g, r, 2, 0, 1, 3);          /* p[b, c, a] = r[a, b, c]  -> ne {B, C, A} */
    assert_int_equal(p->ne[0], B);
    assert_int_equal(p->ne[1], C);
    assert_int_equal(p->ne[2], A);
    mmp_tensor *pc = mmp_cont(g, p);
    mmp_tensor *v = mmp_view_2d(g, pc, B, 2, pc->nb[1], pc->nb[1]);   /* rows c = 1..2 of a = 0 */
    mmp_tensor *out = mmp_set_output(mmp_add(g, v, v));
    assert_non_null(out);
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    for (int64_t i = 0; i < A * B * C; i++) ((float *)x->data)[i] = (float)i;
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_OK);
    const float *o = out->data;
    for (int64_t c = 1; c <= 2; c++)
        for (int64_t b = 0; b < B; b++) {
            const int64_t a = 0;
            float want = 2.0f * (float)(a + A * b + A * B * c);
            assert_true(o[(c - 1) * B + b] == want);
        }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    mmp_graph_print(g, f);
    fclose(f);
    assert_non_null(strstr(buf, "cont"));
    assert_non_null(strstr(buf, "planned"));
    free(buf);
    mmp_graph_free(g);
}

/* x [K, N] -> gelu(W1 x + b1) -> W2 h + b2, weights over caller memory (as mmapped). */
static void mlp_case(int64_t N, enum mmp_type wtype) {
    const int64_t K = 64, Hd = 47, O = 11;
    float *w1 = malloc((size_t)(K * Hd) * 4), *b1 = malloc((size_t)Hd * 4);
    float *w2 = malloc((size_t)(Hd * O) * 4), *b2 = malloc((size_t)O * 4), *xin = malloc((size_t)(K * N) * 4);
    mmpt_rand_fill(w1, (size_t)(K * Hd), 1, -0.3f, 0.3f);
    mmpt_rand_fill(b1, (size_t)Hd, 2, -0.1f, 0.1f);
    mmpt_rand_fill(w2, (size_t)(Hd * O), 3, -0.3f, 0.3f);
    mmpt_rand_fill(b2, (size_t)O, 4, -0.1f, 0.1f);
    mmpt_rand_fill(xin, (size_t)(K * N), 5, -1.0f, 1.0f);
    /* W1 stored as f16 when asked (used in place); the hand loop uses the same rounded values */
    uint16_t *w1h = malloc((size_t)(K * Hd) * 2);
    for (int64_t i = 0; i < K * Hd; i++) {
        w1h[i] = mmp_fp32_to_fp16(w1[i]);
        if (wtype == MMP_TYPE_F16) w1[i] = mmp_fp16_to_fp32(w1h[i]);
    }
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    int64_t ne1[2] = {K, Hd}, ne2[2] = {Hd, O}, nb1[1] = {Hd}, nb2[1] = {O};
    mmp_tensor *W1 = mmp_new_tensor_ext(g, wtype, 2, ne1, wtype == MMP_TYPE_F16 ? (void *)w1h : (void *)w1);
    mmp_tensor *B1 = mmp_new_tensor_ext(g, MMP_TYPE_F32, 1, nb1, b1);
    mmp_tensor *W2 = mmp_new_tensor_ext(g, MMP_TYPE_F32, 2, ne2, w2);
    mmp_tensor *B2 = mmp_new_tensor_ext(g, MMP_TYPE_F32, 1, nb2, b2);
    mmp_tensor *x = mmp_set_name(mmp_new_tensor_2d(g, MMP_TYPE_F32, K, N), "x");
    mmp_tensor *h = mmp_gelu(g, mmp_add(g, mmp_mul_mat(g, W1, x), B1));
    mmp_tensor *y = mmp_set_output(mmp_add(g, mmp_mul_mat(g, W2, h), B2));
    assert_non_null(y);
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    assert_int_equal(mmp_backend_tensor_set(g_be, x, xin, 0, (size_t)(K * N) * 4), MMP_OK);
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_OK);
    float *got = malloc((size_t)(O * N) * 4), *want = malloc((size_t)(O * N) * 4);
    assert_int_equal(mmp_backend_tensor_get(g_be, y, got, 0, (size_t)(O * N) * 4), MMP_OK);
    for (int64_t n = 0; n < N; n++) {
        double hv[47];
        for (int64_t j = 0; j < Hd; j++) {
            double s = b1[j];
            for (int64_t k = 0; k < K; k++) s += (double)w1[j * K + k] * xin[n * K + k];
            hv[j] = 0.5 * s * (1.0 + erf(s / sqrt(2.0)));
        }
        for (int64_t o = 0; o < O; o++) {
            double s = b2[o];
            for (int64_t j = 0; j < Hd; j++) s += (double)w2[o * Hd + j] * hv[j];
            want[n * O + o] = (float)s;
        }
    }
    MMPT_ASSERT_REL_LE(got, want, (size_t)(O * N), 1e-5);
    free(got); free(want); free(w1); free(w1h); free(b1); free(w2); free(b2); free(xin);
    mmp_graph_free(g);
}

static void test_mlp(void **state) {
    (void)state;
    mlp_case(1, MMP_TYPE_F32);
    mlp_case(9, MMP_TYPE_F32);
    mlp_case(1, MMP_TYPE_F16);
    mlp_case(9, MMP_TYPE_F16);
}

/* KV cache: write the new keys with mmp_cpy into an external cache, then attend over a view of
 * the cache built afterwards; build order makes the write happen first. */
static void test_kv_cache(void **state) {
    (void)state;
    const int64_t D = 8, Tmax = 10, n_past = 3, T = 2;
    float *kc = calloc((size_t)(D * Tmax), 4), *vc = calloc((size_t)(D * Tmax), 4);
    mmpt_rand_fill(kc, (size_t)(D * n_past), 7, -1, 1);
    mmpt_rand_fill(vc, (size_t)(D * n_past), 8, -1, 1);
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    int64_t ne[2] = {D, Tmax};
    mmp_tensor *K = mmp_new_tensor_ext(g, MMP_TYPE_F32, 2, ne, kc);
    mmp_tensor *V = mmp_new_tensor_ext(g, MMP_TYPE_F32, 2, ne, vc);
    mmp_tensor *q = mmp_new_tensor_3d(g, MMP_TYPE_F32, D, T, 1);
    mmp_tensor *kn = mmp_new_tensor_2d(g, MMP_TYPE_F32, D, T);
    mmp_tensor *vn = mmp_new_tensor_2d(g, MMP_TYPE_F32, D, T);
    mmp_cpy(g, kn, mmp_view_2d(g, K, D, T, K->nb[1], (size_t)n_past * K->nb[1]));
    mmp_cpy(g, vn, mmp_view_2d(g, V, D, T, V->nb[1], (size_t)n_past * V->nb[1]));
    mmp_tensor *kall = mmp_view_3d(g, K, D, n_past + T, 1, K->nb[1], K->nb[1] * (size_t)Tmax, 0);
    mmp_tensor *vall = mmp_view_3d(g, V, D, n_past + T, 1, V->nb[1], V->nb[1] * (size_t)Tmax, 0);
    mmp_tensor *o = mmp_set_output(mmp_attn(g, q, kall, vall, NULL, 0.5f, true, (int)n_past));
    assert_non_null(o);
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    mmpt_rand_fill(q->data, (size_t)(D * T), 9, -1, 1);
    mmpt_rand_fill(kn->data, (size_t)(D * T), 10, -1, 1);
    mmpt_rand_fill(vn->data, (size_t)(D * T), 11, -1, 1);
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_OK);
    /* the cache holds the new rows */
    assert_memory_equal(kc + n_past * D, kn->data, (size_t)(D * T) * 4);
    assert_memory_equal(vc + n_past * D, vn->data, (size_t)(D * T) * 4);
    /* hand attention over the updated cache */
    const float *qd = q->data;
    for (int64_t i = 0; i < T; i++) {
        double s[16], mx = -1e300, sum = 0;
        const int64_t nv = n_past + i + 1;
        for (int64_t j = 0; j < nv; j++) {
            double d = 0;
            for (int64_t x = 0; x < D; x++) d += (double)qd[i * D + x] * kc[j * D + x];
            s[j] = d * 0.5;
            if (s[j] > mx) mx = s[j];
        }
        for (int64_t j = 0; j < nv; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
        float want[8];
        for (int64_t x = 0; x < D; x++) {
            double a = 0;
            for (int64_t j = 0; j < nv; j++) a += s[j] * vc[j * D + x];
            want[x] = (float)(a / sum);
        }
        MMPT_ASSERT_REL_LE((const float *)o->data + i * D, want, (size_t)D, 1e-5);
    }
    mmp_graph_free(g);
    free(kc);
    free(vc);
}

static int g_calls;
static bool abort_after_3(void *user) {
    (void)user;
    return ++g_calls > 3;
}

static void test_abort(void **state) {
    (void)state;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    mmp_tensor *t = mmp_new_tensor_1d(g, MMP_TYPE_F32, 17);
    mmp_tensor *x = t;
    for (int i = 0; i < 20; i++) t = mmp_scale(g, t, 1.0f);
    mmp_set_output(t);
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    memset(x->data, 0, 17 * 4);
    g_calls = 0;
    assert_int_equal(mmp_graph_compute(g_be, g, abort_after_3, NULL), MMP_ERR_ABORTED);
    assert_int_equal(g_calls, 4);
    ASSERT_ERR_HAS("abort");
    mmp_graph_free(g);
}

static void test_runtime_errors(void **state) {
    (void)state;
    mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
    mmp_tensor *emb = mmp_new_tensor_2d(g, MMP_TYPE_F32, 4, 10);
    mmp_tensor *ids = mmp_new_tensor_1d(g, MMP_TYPE_I32, 3);
    mmp_tensor *r = mmp_set_output(mmp_set_name(mmp_get_rows(g, emb, ids), "lookup"));
    /* compute before plan: inputs would be unwritten */
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    memset(emb->data, 0, 40 * 4);
    int32_t bad[3] = {1, 10, 2};
    memcpy(ids->data, bad, sizeof bad);
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("lookup");
    ASSERT_ERR_HAS("10");
    int32_t good[3] = {1, 9, 2};
    memcpy(ids->data, good, sizeof good);
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_OK);
    (void)r;
    /* adding a tensor after planning: compute refuses until planned again */
    mmp_set_output(mmp_scale(g, r, 2.0f));
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("plan again");
    /* out-of-range expert ids */
    mmp_graph_reset(g);
    mmp_tensor *ex = mmp_new_tensor_3d(g, MMP_TYPE_F32, 8, 4, 3);
    mmp_tensor *xb = mmp_new_tensor_3d(g, MMP_TYPE_F32, 8, 1, 2);
    mmp_tensor *sel = mmp_new_tensor_2d(g, MMP_TYPE_I32, 2, 2);
    mmp_set_output(mmp_mul_mat_id(g, ex, xb, sel));
    assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
    memset(ex->data, 0, 8 * 4 * 3 * 4);
    memset(xb->data, 0, 8 * 2 * 4);
    int32_t e[4] = {0, 1, 2, -1};
    memcpy(sel->data, e, sizeof e);
    assert_int_equal(mmp_graph_compute(g_be, g, NULL, NULL), MMP_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("-1");
    /* planned for 2 threads (work scratch per thread): a 3-thread backend must plan again */
    mmp_backend *b3 = mmp_backend_cpu_new(3);
    assert_non_null(b3);
    assert_string_equal(mmp_backend_name(b3), "cpu");
    assert_int_equal(mmp_backend_n_threads(b3), 3);
    assert_int_equal(mmp_graph_compute(b3, g, NULL, NULL), MMP_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("threads");
    memcpy(sel->data, (int32_t[4]){0, 1, 2, 2}, 4 * sizeof(int32_t));
    assert_true(mmp_backend_supports(b3, mmp_graph_tensor(g, mmp_graph_n_tensors(g) - 1)));
    mmp_backend_free(b3);
    assert_null(mmp_backend_cpu_new(-1));
    /* a graph that is full reports it */
    mmp_graph_params p = {.max_tensors = 3};
    mmp_graph *small = mmp_graph_new(p);
    mmp_tensor *a = mmp_new_tensor_1d(small, MMP_TYPE_F32, 4);
    a = mmp_scale(small, mmp_scale(small, a, 1.0f), 1.0f);
    assert_non_null(a);
    assert_null(mmp_scale(small, a, 1.0f));
    ASSERT_ERR_HAS("full");
    mmp_graph_free(small);
    mmp_graph_free(g);
}

/* 10k nodes: building, planning and rebuilding after reset are cheap. */
static void test_big_graph(void **state) {
    (void)state;
    mmp_graph_params p = mmp_graph_params_default();
    p.max_tensors = 20000;
    mmp_graph *g = mmp_graph_new(p);
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        mmp_graph_reset(g);
        mmp_tensor *x = mmp_new_tensor_1d(g, MMP_TYPE_F32, 64);
        mmp_tensor *t = x;
        for (int i = 0; i < 10000; i++) t = (i % 2) ? mmp_silu(g, t) : mmp_add(g, t, x);
        mmp_set_output(t);
        assert_non_null(t);
        double t1 = now_s();
        assert_int_equal(mmp_graph_plan(g_be, g), MMP_OK);
        double t2 = now_s();
        if (t1 - t0 < best) best = t1 - t0;
        assert_true(t2 - t1 < 1.0);
        assert_true(mmp_graph_get_stats(g).planned_bytes <= 3 * 256);
    }
    /* generous bound so that sanitizer builds pass; release takes well under a millisecond */
    assert_true(best < 0.25);
    assert_int_equal(mmp_graph_n_tensors(g), 10001);
    mmp_graph_free(g);
}

/* The pool directly: every chunk of every job runs exactly once, jobs of 1..40 chunks back to
 * back (the same pool state reused), chunks done by workers and the caller alike, a park
 * between some jobs (workers must wake for the next one), and results visible to the caller
 * when mmp__pool_run_chunks returns. Run under -fsanitize=thread this is the race check of
 * the pool's protocol (join, claim, close, sleep, wake). */
struct pool_job {
    atomic_int hits[64];
    int plain[64];              /* written by whoever runs the chunk, read by the caller after */
    double sink[64];
    pthread_t caller;
    atomic_int by_workers;
    atomic_int bad;
};

static void pool_job_fn(void *arg, int ith, int nth) {
    struct pool_job *j = arg;
    if (ith < 0 || ith >= nth || nth > 64) {   /* no cmocka assert off the main thread */
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    atomic_fetch_add(&j->hits[ith], 1);
    j->plain[ith] = ith * 7 + nth;
    if (!pthread_equal(pthread_self(), j->caller)) atomic_fetch_add(&j->by_workers, 1);
    /* a little work so that workers get a chance to join */
    double x = 0;
    for (int i = 0; i < 2000; i++) x += i * 0.5;
    j->sink[ith] = x;           /* keeps the loop */
}

static void test_pool_jobs(void **state) {
    (void)state;
    for (int nt = 1; nt <= 3; nt++) {
        struct mmp__pool *p = mmp__pool_new(nt);
        assert_non_null(p);
        assert_int_equal(mmp__pool_n_threads(p), nt);
        int workers_total = 0;
        for (int it = 0; it < 3000; it++) {
            struct pool_job j;
            memset(&j, 0, sizeof j);
            for (int i = 0; i < 64; i++) atomic_init(&j.hits[i], 0);
            atomic_init(&j.by_workers, 0);
            atomic_init(&j.bad, 0);
            j.caller = pthread_self();
            const int n = 1 + (it * 7) % 40;
            if (it % 3 == 0) mmp__pool_run(p, pool_job_fn, &j, n);   /* clamped to nt */
            else mmp__pool_run_chunks(p, pool_job_fn, &j, n);
            assert_int_equal(atomic_load(&j.bad), 0);
            const int ran = it % 3 == 0 ? (n < nt ? n : nt) : n;
            for (int i = 0; i < 64; i++) {
                assert_int_equal(atomic_load(&j.hits[i]), i < ran ? 1 : 0);
                if (i < ran) assert_int_equal(j.plain[i], i * 7 + ran);
            }
            workers_total += atomic_load(&j.by_workers);
            if (it % 97 == 0) mmp__pool_park(p);
        }
        /* informational: how much the workers took (the pool may run jobs serially on a
         * loaded machine, see threadpool.c adapt()) */
        print_message("pool of %d: %d chunks ran on workers\n", nt, workers_total);
        if (nt == 1) assert_int_equal(workers_total, 0);
        mmp__pool_free(p);
    }
    assert_null(mmp__pool_new(0));
    mmp__pool_free(NULL);
}

static int setup(void **state) {
    (void)state;
    g_be = mmp_backend_cpu_new(2);
    return g_be ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    mmp_backend_free(g_be);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_null_chain),
        cmocka_unit_test(test_planner_reuse),
        cmocka_unit_test(test_view_chain),
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_big_graph),
        cmocka_unit_test(test_pool_jobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
