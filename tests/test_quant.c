/* Element types: traits (against ggml's block sizes), names, row sizes, fp16/bf16 conversions
 * (exhaustive over all 65536 values, RNE ties, checked against an independent nearest-value
 * search), quantize -> dequantize error bounds derived from each format's rounding rule,
 * quantize(dequantize(q)) == q, and the error paths.
 * (Bit-exact dequantization against ggml/gguf-py output is tests/test_quant_zoo.c.) */
#include "testutil.h"
#include "kernels.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ggml's block sizes and bytes per block (ggml-common.h, ggml.c type_traits). */
static void test_traits(void **state) {
    (void)state;
    static const struct { int t; const char *name; int64_t bs; size_t ts; bool q; } want[] = {
        { MMP_TYPE_F32, "f32", 1, 4, false },      { MMP_TYPE_F16, "f16", 1, 2, false },
        { MMP_TYPE_Q4_0, "q4_0", 32, 18, true },   { MMP_TYPE_Q4_1, "q4_1", 32, 20, true },
        { MMP_TYPE_Q5_0, "q5_0", 32, 22, true },   { MMP_TYPE_Q5_1, "q5_1", 32, 24, true },
        { MMP_TYPE_Q8_0, "q8_0", 32, 34, true },   { MMP_TYPE_Q8_1, "q8_1", 32, 36, true },
        { MMP_TYPE_Q2_K, "q2_K", 256, 84, true },  { MMP_TYPE_Q3_K, "q3_K", 256, 110, true },
        { MMP_TYPE_Q4_K, "q4_K", 256, 144, true }, { MMP_TYPE_Q5_K, "q5_K", 256, 176, true },
        { MMP_TYPE_Q6_K, "q6_K", 256, 210, true }, { MMP_TYPE_Q8_K, "q8_K", 256, 292, true },
        { MMP_TYPE_I8, "i8", 1, 1, false },        { MMP_TYPE_I16, "i16", 1, 2, false },
        { MMP_TYPE_I32, "i32", 1, 4, false },      { MMP_TYPE_I64, "i64", 1, 8, false },
        { MMP_TYPE_F64, "f64", 1, 8, false },      { MMP_TYPE_BF16, "bf16", 1, 2, false },
        { MMP_TYPE_U8, "u8", 1, 1, false },
    };
    int known = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const mmp_type_traits *tr = mmp_type_get_traits(want[i].t);
        assert_non_null(tr);
        assert_string_equal(tr->name, want[i].name);
        assert_string_equal(mmp_type_name(want[i].t), want[i].name);
        assert_int_equal(tr->blck_size, want[i].bs);
        assert_int_equal(tr->type_size, want[i].ts);
        assert_int_equal(tr->is_quantized, want[i].q);
        assert_int_equal(mmp_type_from_name(want[i].name), want[i].t);
    }
    for (int t = -3; t < MMP_TYPE_COUNT + 5; t++) known += mmp_type_get_traits(t) != NULL;
    assert_int_equal(known, (int)(sizeof want / sizeof want[0]));
    /* not types */
    assert_null(mmp_type_get_traits(4));
    assert_null(mmp_type_get_traits(5));
    assert_null(mmp_type_get_traits(-1));
    assert_null(mmp_type_get_traits(MMP_TYPE_COUNT));
    assert_null(mmp_type_get_traits(1 << 30));
    assert_string_equal(mmp_type_name(4), "unknown");
    assert_string_equal(mmp_type_name(-7), "unknown");
    /* names: case-insensitive, exact length */
    assert_int_equal(mmp_type_from_name("Q4_K"), MMP_TYPE_Q4_K);
    assert_int_equal(mmp_type_from_name("F16"), MMP_TYPE_F16);
    assert_int_equal(mmp_type_from_name("BF16"), MMP_TYPE_BF16);
    assert_int_equal(mmp_type_from_name("q4"), -1);
    assert_int_equal(mmp_type_from_name("q4_0x"), -1);
    assert_int_equal(mmp_type_from_name(""), -1);
    assert_int_equal(mmp_type_from_name(NULL), -1);
    /* quantizable set */
    const int can[] = { MMP_TYPE_F32, MMP_TYPE_F16, MMP_TYPE_BF16, MMP_TYPE_Q8_0, MMP_TYPE_Q4_0,
                        MMP_TYPE_Q4_1, MMP_TYPE_Q5_0, MMP_TYPE_Q5_1 };
    int ncan = 0;
    for (int t = 0; t < MMP_TYPE_COUNT; t++) {
        const mmp_type_traits *tr = mmp_type_get_traits(t);
        if (tr && tr->can_quantize) ncan++;
    }
    assert_int_equal(ncan, (int)(sizeof can / sizeof can[0]));
    for (size_t i = 0; i < sizeof can / sizeof can[0]; i++) assert_true(mmp_type_get_traits(can[i])->can_quantize);
}

static void test_row_size(void **state) {
    (void)state;
    assert_int_equal(mmp_row_size(MMP_TYPE_F32, 4096), 16384);
    assert_int_equal(mmp_row_size(MMP_TYPE_F16, 3), 6);
    assert_int_equal(mmp_row_size(MMP_TYPE_Q4_0, 4096), 128 * 18);
    assert_int_equal(mmp_row_size(MMP_TYPE_Q8_0, 32), 34);
    assert_int_equal(mmp_row_size(MMP_TYPE_Q4_K, 4096), 16 * 144);
    assert_int_equal(mmp_row_size(MMP_TYPE_Q6_K, 14336), 56 * 210);
    assert_int_equal(mmp_row_size(MMP_TYPE_Q4_0, 0), 0);
    assert_int_equal(mmp_row_size(MMP_TYPE_Q4_0, 33), 0);     /* not a whole block */
    assert_int_equal(mmp_row_size(MMP_TYPE_Q4_K, 128), 0);
    assert_int_equal(mmp_row_size(MMP_TYPE_F32, -4), 0);
    assert_int_equal(mmp_row_size((enum mmp_type)4, 32), 0);  /* unknown type */
    assert_int_equal(mmp_row_size(MMP_TYPE_I64, INT64_MAX), 0); /* overflow */
}

static double half_value(uint16_t h) { return (double)mmp__fp16_to_fp32_ref(h); }

/* All 65536 halves: F16C and scalar agree bit for bit; the value is right (independent formula);
 * f32 -> f16 gives the half back. */
static void test_fp16_exhaustive(void **state) {
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        const uint16_t h = (uint16_t)i;
        const float a = mmp_fp16_to_fp32(h), r = mmp__fp16_to_fp32_ref(h);
        const int e = (h >> 10) & 31, m = h & 1023, neg = h >> 15;
        if (e == 31 && m) {
            assert_true(isnan(a) && isnan(r));
            assert_int_equal(f2u(a), f2u(r));
            assert_int_equal(signbit(a) != 0, neg);
            /* NaN stays NaN (quiet, same sign, same top payload bits) */
            const uint16_t back = mmp_fp32_to_fp16(a);
            assert_int_equal(back & 0x7c00, 0x7c00);
            assert_true((back & 0x3ff) != 0);
            assert_int_equal(back, mmp__fp32_to_fp16_ref(a));
            assert_int_equal(back & 0x81ff, h & 0x81ff);
            continue;
        }
        assert_int_equal(f2u(a), f2u(r));
        double want;
        if (e == 31) want = INFINITY;
        else if (e == 0) want = ldexp((double)m, -24);
        else want = ldexp(1024.0 + m, e - 25);
        if (neg) want = -want;
        assert_true((double)a == want);
        assert_int_equal(signbit(a) != 0, neg);
        assert_int_equal(mmp_fp32_to_fp16(a), h);
        assert_int_equal(mmp__fp32_to_fp16_ref(a), h);
    }
}

/* f32 -> f16 rounding: F16C and the scalar path agree, and the result is the nearest half with
 * ties to even, found by looking at the neighbours (independent of both implementations). */
static void check_f32_to_f16(float f) {
    const uint16_t h = mmp_fp32_to_fp16(f), r = mmp__fp32_to_fp16_ref(f);
    if (h != r) fail_msg("f32 %a (0x%08x): F16C 0x%04x != scalar 0x%04x", (double)f, f2u(f), h, r);
    if (isnan(f)) { assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff)); return; }
    const double v = (double)f, got = half_value(h);
    if (!signbit(f) != !signbit(got) && got != 0) fail_msg("sign of %a", v);
    const double av = fabs(v);
    if (av >= 65520.0) { assert_true(isinf(got)); return; } /* 65520 = 65504 + half an ulp: tie -> Inf (even) */
    /* neighbours of |h| */
    const uint16_t ah = h & 0x7fff;
    const double g = fabs(got);
    const double lo = ah > 0 ? half_value((uint16_t)(ah - 1)) : -1.0;
    const double hi = ah < 0x7bff ? half_value((uint16_t)(ah + 1)) : INFINITY;
    const double err = fabs(av - g);
    if (lo >= 0 && fabs(av - lo) < err) fail_msg("%a: 0x%04x is not nearest (lower neighbour closer)", v, h);
    if (!isinf(hi) && fabs(av - hi) < err) fail_msg("%a: 0x%04x is not nearest (upper neighbour closer)", v, h);
    if ((lo >= 0 && fabs(av - lo) == err) || (!isinf(hi) && fabs(av - hi) == err))
        if (ah & 1) fail_msg("%a: tie not rounded to even (0x%04x)", v, h);
}

static void test_fp16_rounding(void **state) {
    (void)state;
    /* every tie and near-tie around every half value (normal, subnormal, overflow edge) */
    for (uint32_t i = 0; i < 0x7c00; i++) {
        const double a = half_value((uint16_t)i), b = half_value((uint16_t)(i + 1));
        const double mid = 0.5 * (a + b);
        const float fm = (float)mid; /* exact in f32: halves have 11 bits */
        check_f32_to_f16(fm);
        check_f32_to_f16(-fm);
        check_f32_to_f16(nextafterf(fm, 0.0f));
        check_f32_to_f16(nextafterf(fm, INFINITY));
    }
    /* random f32 bit patterns over the whole range */
    uint64_t s = 0x1234567;
    for (int i = 0; i < 2000000; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        check_f32_to_f16(u2f((uint32_t)(s >> 16)));
    }
    check_f32_to_f16(INFINITY);
    check_f32_to_f16(-INFINITY);
    check_f32_to_f16(FLT_MAX);
    check_f32_to_f16(FLT_TRUE_MIN);
    check_f32_to_f16(0.0f);
    check_f32_to_f16(-0.0f);
    /* known values */
    assert_int_equal(mmp_fp32_to_fp16(1.0f), 0x3c00);
    assert_int_equal(mmp_fp32_to_fp16(65504.0f), 0x7bff);
    assert_int_equal(mmp_fp32_to_fp16(65519.996f), 0x7bff);
    assert_int_equal(mmp_fp32_to_fp16(65520.0f), 0x7c00);
    assert_int_equal(mmp_fp32_to_fp16(ldexpf(1.0f, -24)), 0x0001);
    assert_int_equal(mmp_fp32_to_fp16(ldexpf(1.0f, -25)), 0x0000);             /* tie -> even (0) */
    assert_int_equal(mmp_fp32_to_fp16(ldexpf(3.0f, -25)), 0x0002);             /* 1.5 ulp -> 2 */
    assert_int_equal(mmp_fp32_to_fp16(1.0f + ldexpf(1.0f, -11)), 0x3c00);       /* tie -> even */
    assert_int_equal(mmp_fp32_to_fp16(1.0f + ldexpf(3.0f, -11)), 0x3c02);       /* tie -> even (up) */
    assert_int_equal(mmp_fp32_to_fp16(-2.0f), 0xc000);
}

static void test_bf16(void **state) {
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        const uint16_t h = (uint16_t)i;
        const float f = mmp_bf16_to_fp32(h);
        assert_int_equal(f2u(f), (uint32_t)h << 16);
        const uint16_t back = mmp_fp32_to_bf16(f);
        if (isnan(f)) {
            assert_true((back & 0x7f80) == 0x7f80 && (back & 0x7f));
            assert_int_equal(back & 0x8000, h & 0x8000);
            assert_true(back & 0x40); /* quiet */
        } else {
            assert_int_equal(back, h);
        }
    }
    /* RNE: halfway cases go to even, just above goes up */
    assert_int_equal(mmp_fp32_to_bf16(u2f(0x3f808000u)), 0x3f80);
    assert_int_equal(mmp_fp32_to_bf16(u2f(0x3f818000u)), 0x3f82);
    assert_int_equal(mmp_fp32_to_bf16(u2f(0x3f808001u)), 0x3f81);
    assert_int_equal(mmp_fp32_to_bf16(u2f(0x3f807fffu)), 0x3f80);
    assert_int_equal(mmp_fp32_to_bf16(FLT_MAX), 0x7f80);            /* rounds up to Inf */
    assert_int_equal(mmp_fp32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(mmp_fp32_to_bf16(u2f(0x00000001u)), 0x0000); /* tiny subnormal -> 0 */
    assert_int_equal(mmp_fp32_to_bf16(u2f(0x00018000u)), 0x0002); /* subnormal tie -> even */
    /* independent check on random values: result is one of the two truncation neighbours and the nearer */
    uint64_t s = 99;
    for (int i = 0; i < 1000000; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        const uint32_t u = (uint32_t)(s >> 20);
        const float f = u2f(u);
        if (isnan(f)) continue;
        const uint16_t b = mmp_fp32_to_bf16(f);
        const uint16_t t = (uint16_t)(u >> 16);
        const uint32_t low = u & 0xffffu;
        const uint16_t want = low > 0x8000u || (low == 0x8000u && (t & 1)) ? (uint16_t)(t + 1) : t;
        assert_int_equal(b, want);
    }
}

/* Quantize random blocks and bound the error of each element by the format's rounding rule:
 *  Q8_0: q = round(x/d), d = amax/127                   -> |err| <= d/2
 *  Q4_0: q = min(15, trunc(x/d + 8.5)), d = max/-8      -> |err| <= |d|/2, or <= |d| where x/d > 7.5 (clamped)
 *  Q5_0: same with 16 / 31 / 15.5
 *  Q4_1: q = min(15, trunc((x-min)/d + .5)), d = range/15 -> |err| <= d/2
 *  Q5_1: same with 31
 * plus the fp16 rounding of the stored d (times the largest |q|) and m. */
/* error of an fp16-stored scale/min (absolute: tiny scales are fp16 subnormals) */
static double fp16_err(double v) { return fabs(v - (double)mmp_fp16_to_fp32(mmp_fp32_to_fp16((float)v))); }

static void check_quant_bounds(enum mmp_type t, float lo, float hi, uint64_t seed) {
    const int64_t n = 32 * 64;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *q = malloc(mmp_row_size(t, n));
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    mmpt_rand_fill(x, n, seed, lo, hi);
    /* a few blocks with structure: constant, all zero, one spike */
    for (int j = 0; j < 32; j++) { x[j] = 0.0f; x[32 + j] = 0.75f * hi; x[64 + j] = j == 5 ? hi : 0.001f * lo; }
    assert_int_equal(mmp_quantize_row(t, x, q, n), MMP_OK);
    assert_int_equal(mmp_dequantize_row(t, q, y, n), MMP_OK);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b, *yb = y + 32 * b;
        float amax = 0, max = 0, mn = FLT_MAX, mx = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); max = xb[j]; }
            mn = fminf(mn, xb[j]);
            mx = fmaxf(mx, xb[j]);
        }
        for (int j = 0; j < 32; j++) {
            double err = fabs((double)xb[j] - (double)yb[j]), bound;
            switch (t) {
            case MMP_TYPE_Q8_0: { double d = amax / 127.0; bound = 0.5 * d + 127 * fp16_err(d); break; }
            case MMP_TYPE_Q4_0: case MMP_TYPE_Q5_0: {
                const double k = t == MMP_TYPE_Q4_0 ? 8.0 : 16.0;
                const double d = max / -k;
                const double r = d != 0 ? xb[j] / d : 0;
                bound = (r > k - 0.5 ? fabs(d) : 0.5 * fabs(d)) + k * fp16_err(d);
                break;
            }
            default: {
                const double k = t == MMP_TYPE_Q4_1 ? 15.0 : 31.0;
                const double d = ((double)mx - mn) / k;
                bound = 0.5 * d + k * fp16_err(d) + fp16_err(mn);
                break;
            }
            }
            bound += 1e-6 * (amax + 1e-30);
            if (!(err <= bound))
                fail_msg("%s block %lld elem %d: x=%g deq=%g err=%g > bound %g", mmp_type_name(t), (long long)b, j,
                         (double)xb[j], (double)yb[j], err, bound);
        }
    }
    free(x);
    free(y);
    free(q);
}

static void test_quant_error_bounds(void **state) {
    (void)state;
    const enum mmp_type ts[] = { MMP_TYPE_Q8_0, MMP_TYPE_Q4_0, MMP_TYPE_Q5_0, MMP_TYPE_Q4_1, MMP_TYPE_Q5_1 };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        check_quant_bounds(ts[i], -1.0f, 1.0f, 1 + i);
        check_quant_bounds(ts[i], -3.0f, 0.5f, 10 + i);
        check_quant_bounds(ts[i], 2.0f, 5.0f, 20 + i);     /* all positive: Q4_1/Q5_1 min > 0 */
        check_quant_bounds(ts[i], -1000.0f, 1000.0f, 30 + i);
        check_quant_bounds(ts[i], -1e-3f, 1e-3f, 40 + i);
    }
}

/* The blocks a quantizer produces are fixed points: quantize(dequantize(q)) == q. */
static void test_requantize_fixed_point(void **state) {
    (void)state;
    const enum mmp_type ts[] = { MMP_TYPE_Q8_0, MMP_TYPE_Q4_0, MMP_TYPE_Q5_0 };
    const int64_t n = 32 * 128;
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        const size_t rs = mmp_row_size(ts[i], n);
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
        uint8_t *q1 = malloc(rs), *q2 = malloc(rs);
        assert_non_null(x);
        assert_non_null(y);
        assert_non_null(q1);
        assert_non_null(q2);
        mmpt_rand_fill(x, n, 5 + i, -2.0f, 2.0f);
        assert_int_equal(mmp_quantize_row(ts[i], x, q1, n), MMP_OK);
        assert_int_equal(mmp_dequantize_row(ts[i], q1, y, n), MMP_OK);
        assert_int_equal(mmp_quantize_row(ts[i], y, q2, n), MMP_OK);
        assert_memory_equal(q1, q2, rs);
        free(x);
        free(y);
        free(q1);
        free(q2);
    }
}

/* Plain float quantizers: F16/BF16 equal the scalar conversions; F32 is a copy. */
static void test_quantize_plain(void **state) {
    (void)state;
    const int64_t n = 1003;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint16_t *h = malloc(n * 2);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(h);
    mmpt_rand_fill(x, n, 8, -70000.0f, 70000.0f);
    x[0] = NAN;
    x[1] = INFINITY;
    x[2] = 1e-7f;
    assert_int_equal(mmp_quantize_row(MMP_TYPE_F16, x, h, n), MMP_OK);
    for (int64_t i = 0; i < n; i++) assert_int_equal(h[i], mmp__fp32_to_fp16_ref(x[i]));
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_F16, h, y, n), MMP_OK);
    for (int64_t i = 0; i < n; i++) assert_int_equal(f2u(y[i]), f2u(mmp__fp16_to_fp32_ref(h[i])));
    assert_int_equal(mmp_quantize_row(MMP_TYPE_BF16, x, h, n), MMP_OK);
    for (int64_t i = 0; i < n; i++) assert_int_equal(h[i], mmp_fp32_to_bf16(x[i]));
    assert_int_equal(mmp_quantize_row(MMP_TYPE_F32, x, y, n), MMP_OK);
    assert_memory_equal(x, y, n * sizeof(float));
    free(x);
    free(y);
    free(h);
}

/* Dequantization of the plain and integer types, and fast == reference for every type on
 * random bytes (unaligned source). */
static void test_dequantize_plain_and_ref(void **state) {
    (void)state;
    const int8_t i8[4] = { -128, -1, 0, 127 };
    const int16_t i16[4] = { -32768, -2, 3, 32767 };
    const int32_t i32[4] = { INT32_MIN, -5, 16777217, INT32_MAX };
    const int64_t i64[4] = { INT64_MIN, -7, 1, INT64_MAX };
    const double f64[4] = { 1e300, -0.1, 5e-324, 3.0 };
    const uint8_t u8[4] = { 0, 1, 200, 255 };
    float y[4];
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_I8, i8, y, 4), MMP_OK);
    for (int i = 0; i < 4; i++) assert_true(y[i] == (float)i8[i]);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_I16, i16, y, 4), MMP_OK);
    for (int i = 0; i < 4; i++) assert_true(y[i] == (float)i16[i]);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_I32, i32, y, 4), MMP_OK);
    for (int i = 0; i < 4; i++) assert_true(y[i] == (float)i32[i]);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_I64, i64, y, 4), MMP_OK);
    for (int i = 0; i < 4; i++) assert_true(y[i] == (float)i64[i]);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_F64, f64, y, 4), MMP_OK);
    for (int i = 0; i < 4; i++) assert_true(y[i] == (float)f64[i]);
    assert_true(isinf(y[0]) && y[2] == 0.0f);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_U8, u8, y, 4), MMP_OK);
    for (int i = 0; i < 4; i++) assert_true(y[i] == (float)u8[i]);

    const int types[] = { MMP_TYPE_F32, MMP_TYPE_F16, MMP_TYPE_BF16, MMP_TYPE_Q4_0, MMP_TYPE_Q4_1, MMP_TYPE_Q5_0,
                          MMP_TYPE_Q5_1, MMP_TYPE_Q8_0, MMP_TYPE_Q2_K, MMP_TYPE_Q3_K, MMP_TYPE_Q4_K, MMP_TYPE_Q5_K,
                          MMP_TYPE_Q6_K };
    const int64_t n = 512;
    uint8_t *raw = malloc(mmp_row_size(MMP_TYPE_F32, n) + 1);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    assert_non_null(raw);
    assert_non_null(a);
    assert_non_null(b);
    uint64_t s = 3;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const size_t rs = mmp_row_size(types[k], n);
        for (size_t i = 0; i < rs + 1; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; raw[i] = (uint8_t)(s >> 40); }
        assert_int_equal(mmp_dequantize_row(types[k], raw + 1, a, n), MMP_OK);
        assert_int_equal(mmp__dequantize_row_ref(types[k], raw + 1, b, n), MMP_OK);
        assert_memory_equal(a, b, n * sizeof(float)); /* bitwise, NaNs included */
    }
    free(raw);
    free(a);
    free(b);
}

static void test_errors(void **state) {
    (void)state;
    float x[64] = { 0 }, y[64];
    uint8_t q[64];
    mmp_clear_error();
    assert_int_equal(mmp_dequantize_row((enum mmp_type)4, q, y, 32), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "4"));
    assert_int_equal(mmp_dequantize_row((enum mmp_type)99, q, y, 32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_dequantize_row((enum mmp_type)-1, q, y, 32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_Q4_0, q, y, 33), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "33"));
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_Q4_K, q, y, 32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_Q4_0, q, y, -32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_Q4_0, NULL, y, 32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_F16, q, NULL, 32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_Q8_K, q, y, 256), MMP_ERR_UNSUPPORTED);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_Q8_1, q, y, 32), MMP_ERR_UNSUPPORTED);
    assert_int_equal(mmp_dequantize_row(MMP_TYPE_Q4_0, NULL, NULL, 0), MMP_OK);
    assert_int_equal(mmp__dequantize_row_ref((enum mmp_type)5, q, y, 32), MMP_ERR_INVALID_ARG);

    assert_int_equal(mmp_quantize_row(MMP_TYPE_Q4_K, x, q, 0), MMP_ERR_UNSUPPORTED);
    assert_int_equal(mmp_quantize_row(MMP_TYPE_I32, x, q, 4), MMP_ERR_UNSUPPORTED);
    assert_int_equal(mmp_quantize_row(MMP_TYPE_Q8_0, x, q, 31), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_quantize_row((enum mmp_type)4, x, q, 32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_quantize_row(MMP_TYPE_Q8_0, NULL, q, 32), MMP_ERR_INVALID_ARG);
    x[7] = NAN;
    assert_int_equal(mmp_quantize_row(MMP_TYPE_Q8_0, x, q, 32), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "element 7"));
    x[7] = INFINITY;
    assert_int_equal(mmp_quantize_row(MMP_TYPE_Q4_0, x, q, 32), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_quantize_row(MMP_TYPE_F16, x, q, 32), MMP_OK); /* plain types take Inf */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traits),
        cmocka_unit_test(test_row_size),
        cmocka_unit_test(test_fp16_exhaustive),
        cmocka_unit_test(test_fp16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_quant_error_bounds),
        cmocka_unit_test(test_requantize_fixed_point),
        cmocka_unit_test(test_quantize_plain),
        cmocka_unit_test(test_dequantize_plain_and_ref),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
