/* Dot products: the SIMD fast paths against the scalar references (dequantize a block in
 * ggml's order, accumulate in double), on random rows of many lengths, extreme scales and
 * zeros; mat-vec rows against per-row dots; error paths. */
#include "testutil.h"
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const enum mmp_type k_types[] = {
    MMP_TYPE_F32, MMP_TYPE_F16, MMP_TYPE_BF16, MMP_TYPE_Q8_0, MMP_TYPE_Q4_0, MMP_TYPE_Q4_1, MMP_TYPE_Q5_0,
    MMP_TYPE_Q5_1, MMP_TYPE_Q2_K, MMP_TYPE_Q3_K, MMP_TYPE_Q4_K, MMP_TYPE_Q5_K, MMP_TYPE_Q6_K,
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

/* Byte offsets of the fp16 scale fields (d, and m/dmin) of one block; -1 if none. */
static void half_fields(enum mmp_type t, int *f0, int *f1) {
    *f0 = *f1 = -1;
    switch (t) {
    case MMP_TYPE_Q4_0: case MMP_TYPE_Q5_0: case MMP_TYPE_Q8_0: *f0 = 0; break;
    case MMP_TYPE_Q4_1: case MMP_TYPE_Q5_1: case MMP_TYPE_Q4_K: case MMP_TYPE_Q5_K: *f0 = 0; *f1 = 2; break;
    case MMP_TYPE_Q2_K: *f0 = 80; *f1 = 82; break;
    case MMP_TYPE_Q3_K: *f0 = 108; break;
    case MMP_TYPE_Q6_K: *f0 = 208; break;
    default: break;
    }
}

/* A random row of type t: random quant bits, scale fields set to `scale` times a random
 * factor in [-1, 1) (or plain values in [-scale, scale) for float types). */
static void *random_row(enum mmp_type t, int64_t n, uint64_t seed, float scale) {
    size_t bytes = mmp_row_size(t, n);
    uint8_t *p = malloc(bytes + 1);
    assert_non_null(p);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)(rng_next(&s) >> 24);
    float *f = malloc((size_t)n * sizeof(float));
    assert_non_null(f);
    mmpt_rand_fill(f, (size_t)n, seed + 1, -scale, scale);
    if (t == MMP_TYPE_F32) memcpy(p, f, (size_t)n * 4);
    else if (t == MMP_TYPE_F16) for (int64_t i = 0; i < n; i++) { uint16_t h = mmp_fp32_to_fp16(f[i]); memcpy(p + 2 * i, &h, 2); }
    else if (t == MMP_TYPE_BF16) for (int64_t i = 0; i < n; i++) { uint16_t h = mmp_fp32_to_bf16(f[i]); memcpy(p + 2 * i, &h, 2); }
    else {
        int f0, f1;
        half_fields(t, &f0, &f1);
        const mmp_type_traits *tr = mmp_type_get_traits(t);
        for (int64_t b = 0; b < n / tr->blck_size; b++) {
            uint8_t *blk = p + b * tr->type_size;
            float r0 = f[b % n], r1 = f[(b * 7 + 3) % n];
            uint16_t h0 = mmp_fp32_to_fp16(r0), h1 = mmp_fp32_to_fp16(r1);
            if (f0 >= 0) memcpy(blk + f0, &h0, 2);
            if (f1 >= 0) memcpy(blk + f1, &h1, 2);
        }
    }
    free(f);
    return p;
}

/* fast vs ref over `rows` random rows of length n: relative L2 of the vector of dots */
static void check_type_len(enum mmp_type t, int64_t n, float wscale, float xscale, uint64_t seed) {
    enum { ROWS = 24 };
    mmp_vec_dot_fn fast = mmp__vec_dot_fast(t), ref = mmp__vec_dot_ref(t);
    assert_non_null(fast);
    assert_non_null(ref);
    float *x = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    mmpt_rand_fill(x, (size_t)n, seed * 31 + 5, -xscale, xscale);
    float yf[ROWS], yr[ROWS];
    for (int r = 0; r < ROWS; r++) {
        void *w = random_row(t, n, seed * 1000 + (uint64_t)r, wscale);
        yf[r] = fast(n, w, x);
        yr[r] = ref(n, w, x);
        free(w);
    }
    double e = mmpt_rel_l2(yf, yr, ROWS);
    if (!(e <= 1e-5))
        fail_msg("%s n=%lld wscale=%g xscale=%g: fast vs ref relative L2 %.3g > 1e-5", mmp_type_name(t),
                 (long long)n, (double)wscale, (double)xscale, e);
    free(x);
}

static void test_fast_vs_ref(void **state) {
    (void)state;
    for (size_t k = 0; k < N_TYPES; k++) {
        enum mmp_type t = k_types[k];
        const mmp_type_traits *tr = mmp_type_get_traits(t);
        int64_t bs = tr->blck_size;
        int64_t lens[12];
        int nl = 0;
        if (bs == 1) {
            static const int64_t plain[] = { 1, 7, 8, 31, 33, 100, 256, 257, 768, 4096, 4099 };
            for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) lens[nl++] = plain[i];
        } else if (bs == 32) {
            static const int64_t b32[] = { 32, 64, 96, 160, 256, 768, 4096, 4128 };
            for (size_t i = 0; i < sizeof b32 / sizeof b32[0]; i++) lens[nl++] = b32[i];
        } else {
            static const int64_t b256[] = { 256, 512, 768, 1280, 4096 };
            for (size_t i = 0; i < sizeof b256 / sizeof b256[0]; i++) lens[nl++] = b256[i];
        }
        for (int i = 0; i < nl; i++) check_type_len(t, lens[i], 1.0f, 1.0f, (uint64_t)(k * 100 + i));
    }
}

/* Large scales (fp16 near its max) and large activations; tiny scales. */
static void test_extreme_scales(void **state) {
    (void)state;
    for (size_t k = 0; k < N_TYPES; k++) {
        enum mmp_type t = k_types[k];
        const int64_t n = 1024;
        check_type_len(t, n, 60000.0f, 1000.0f, 77 + k);
        check_type_len(t, n, 1e-4f, 1e-3f, 99 + k);
    }
}

/* All-zero rows give exactly 0 on both paths; zero x too. */
static void test_zeros(void **state) {
    (void)state;
    for (size_t k = 0; k < N_TYPES; k++) {
        enum mmp_type t = k_types[k];
        const int64_t n = 512;
        size_t bytes = mmp_row_size(t, n);
        uint8_t *w = calloc(bytes, 1);
        float *x = malloc(n * sizeof(float));
        assert_non_null(w);
        assert_non_null(x);
        mmpt_rand_fill(x, n, 3, -1, 1);
        assert_true(mmp__vec_dot_fast(t)(n, w, x) == 0.0f);
        assert_true(mmp__vec_dot_ref(t)(n, w, x) == 0.0f);
        void *w2 = random_row(t, n, 11, 1.0f);
        memset(x, 0, n * sizeof(float));
        assert_true(mmp__vec_dot_fast(t)(n, w2, x) == 0.0f);
        assert_true(mmp__vec_dot_ref(t)(n, w2, x) == 0.0f);
        free(w2);
        free(w);
        free(x);
    }
}

/* The reference dot equals a dot of mmp_dequantize_row's output (same dequantization). */
static void test_ref_matches_dequantize(void **state) {
    (void)state;
    for (size_t k = 0; k < N_TYPES; k++) {
        enum mmp_type t = k_types[k];
        const int64_t n = 768;
        void *w = random_row(t, n, 5 + k, 2.0f);
        float *x = malloc(n * sizeof(float)), *deq = malloc(n * sizeof(float));
        assert_non_null(x);
        assert_non_null(deq);
        mmpt_rand_fill(x, n, 9, -1, 1);
        assert_int_equal(mmp_dequantize_row(t, w, deq, n), MMP_OK);
        double acc = 0;
        for (int64_t i = 0; i < n; i++) acc += (double)deq[i] * (double)x[i];
        float r = mmp__vec_dot_ref(t)(n, w, x);
        assert_true(fabs((double)r - acc) <= 1e-6 * fabs(acc) + 1e-30);
        free(w);
        free(x);
        free(deq);
    }
}

/* matvec rows == per-row fast dots, bit for bit; unaligned row stride. */
static void test_matvec_rows(void **state) {
    (void)state;
    for (size_t k = 0; k < N_TYPES; k++) {
        enum mmp_type t = k_types[k];
        const int64_t n = 512, rows = 9;
        size_t rs = mmp_row_size(t, n), stride = rs + 3;
        uint8_t *W = malloc(stride * rows);
        float *x = malloc(n * sizeof(float)), y[9], yd[9];
        assert_non_null(W);
        assert_non_null(x);
        for (int64_t r = 0; r < rows; r++) {
            void *row = random_row(t, n, 40 + r, 1.0f);
            memcpy(W + r * stride, row, rs);
            free(row);
        }
        mmpt_rand_fill(x, n, 2, -1, 1);
        for (int64_t r = 0; r < rows; r++) y[r] = -1.0f;
        assert_int_equal(mmp__matvec_rows(t, W, stride, n, x, y, 2, 7), MMP_OK);
        for (int64_t r = 0; r < rows; r++) {
            yd[r] = mmp__vec_dot_fast(t)(n, W + r * stride, x);
            if (r >= 2 && r < 7) assert_memory_equal(&y[r], &yd[r], sizeof(float));
            else assert_true(y[r] == -1.0f);
        }
        free(W);
        free(x);
    }
}

/* Long rows: more than one xs chunk, and (n > 131072) the heap scratch for the x sums. */
static void test_matvec_long_rows(void **state) {
    (void)state;
    const enum mmp_type ts[] = { MMP_TYPE_Q4_K, MMP_TYPE_Q4_1, MMP_TYPE_Q5_K, MMP_TYPE_Q8_0 };
    const int64_t n = 140032; /* 547 * 256 */
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    mmpt_rand_fill(x, n, 4, -1, 1);
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        const size_t rs = mmp_row_size(ts[k], n);
        uint8_t *W = malloc(2 * rs);
        assert_non_null(W);
        for (int r = 0; r < 2; r++) {
            void *row = random_row(ts[k], n, 70 + r, 1.0f);
            memcpy(W + r * rs, row, rs);
            free(row);
        }
        float y[2], yd[2], yr[2];
        assert_int_equal(mmp__matvec_rows(ts[k], W, rs, n, x, y, 0, 2), MMP_OK);
        for (int r = 0; r < 2; r++) {
            yd[r] = mmp__vec_dot_fast(ts[k])(n, W + r * rs, x);
            yr[r] = mmp__vec_dot_ref(ts[k])(n, W + r * rs, x);
            assert_memory_equal(&y[r], &yd[r], sizeof(float));
        }
        MMPT_ASSERT_REL_LE(yd, yr, 2, 1e-5);
        free(W);
    }
    free(x);
}

static void test_errors(void **state) {
    (void)state;
    assert_null(mmp__vec_dot_fast(MMP_TYPE_Q8_K));
    assert_null(mmp__vec_dot_ref(MMP_TYPE_I32));
    assert_null(mmp__vec_dot_fast((enum mmp_type)4));
    float x[64] = { 0 }, y[2];
    uint8_t w[64] = { 0 };
    assert_int_equal(mmp__matvec_rows(MMP_TYPE_Q8_K, w, 0, 256, x, y, 0, 1), MMP_ERR_INVALID_ARG);
    assert_true(strlen(mmp_last_error()) > 0);
    assert_int_equal(mmp__matvec_rows(MMP_TYPE_Q4_0, w, 18, 33, x, y, 0, 1), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp__matvec_rows(MMP_TYPE_Q4_0, w, 18, 32, x, y, 1, 0), MMP_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_vs_ref),
        cmocka_unit_test(test_extreme_scales),
        cmocka_unit_test(test_zeros),
        cmocka_unit_test(test_ref_matches_dequantize),
        cmocka_unit_test(test_matvec_rows),
        cmocka_unit_test(test_matvec_long_rows),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
