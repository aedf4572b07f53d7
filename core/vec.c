/* Dot products weight-row(type) . f32 x, the kernel of decode mat-vec.
 *
 * The activations stay f32 (mmpipe's numerics are "dequantize then f32"; llama.cpp instead
 * rounds x to Q8 blocks). Each weight block is expanded to int8 quants in registers, converted
 * to f32 and multiplied with x; the block's scale multiplies the block's partial sum, and an
 * additive minimum (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) multiplies the sum of x over the block.
 * So the fast result equals the reference up to f32 summation order (tests allow 1e-5).
 *
 * Paths, picked at compile time (the build uses -march=native):
 *   AVX-512 (F/BW/VL/DQ): every type; small-range quants become f32 by a register table lookup
 *     (vpermps / vpermt2ps) instead of int->float conversion, the fp16 block scales are
 *     converted 8 at a time, and the additive minimums multiply precomputed sums of x per 32
 *     elements (computed once per mat-vec, see mmp__matvec_rows);
 *   AVX2 + FMA + F16C: every type, 8 lanes;
 *   scalar: dequantize one block to the stack, multiply-accumulate in double. This is also the
 *     reference (mmp__vec_dot_ref) that tests/test_vec.c compares the fast paths with.
 * No NEON path yet: aarch64 builds use the scalar path. */
#include "mmpipe/types.h"
#include "kernels.h"
#include "util.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define MMP_VEC_AVX2 1
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------------------------ */
/* scalar reference: dequantize a block (ggml order), accumulate in double                      */

static float ref_dot(enum mmp_type t, int64_t n, const void *w, const float *x) {
    const mmp_type_traits *tr = mmp_type_get_traits((int)t);
    /* A chunk of whole blocks, at most 256 elements (256 is a multiple of every block size). */
    const int64_t chunk = tr->blck_size > 1 ? tr->blck_size : 256;
    float buf[256];
    double acc = 0.0;
    const uint8_t *p = (const uint8_t *)w;
    for (int64_t i = 0; i < n; i += chunk) {
        const int64_t m = MMP_MIN(chunk, n - i);
        mmp__dequantize_row_ref(t, p, buf, m);
        p += mmp_row_size(t, m);
        for (int64_t j = 0; j < m; j++) acc += (double)buf[j] * (double)x[i + j];
    }
    return (float)acc;
}

#define MMP_REF(T, name) \
    static float ref_##name(int64_t n, const void *w, const float *x) { return ref_dot(T, n, w, x); }
MMP_REF(MMP_TYPE_F32, f32)
MMP_REF(MMP_TYPE_F16, f16)
MMP_REF(MMP_TYPE_BF16, bf16)
MMP_REF(MMP_TYPE_Q8_0, q8_0)
MMP_REF(MMP_TYPE_Q4_0, q4_0)
MMP_REF(MMP_TYPE_Q4_1, q4_1)
MMP_REF(MMP_TYPE_Q5_0, q5_0)
MMP_REF(MMP_TYPE_Q5_1, q5_1)
MMP_REF(MMP_TYPE_Q2_K, q2_k)
MMP_REF(MMP_TYPE_Q3_K, q3_k)
MMP_REF(MMP_TYPE_Q4_K, q4_k)
MMP_REF(MMP_TYPE_Q5_K, q5_k)
MMP_REF(MMP_TYPE_Q6_K, q6_k)

mmp_vec_dot_fn mmp__vec_dot_ref(enum mmp_type t) {
    switch (t) {
    case MMP_TYPE_F32: return ref_f32;
    case MMP_TYPE_F16: return ref_f16;
    case MMP_TYPE_BF16: return ref_bf16;
    case MMP_TYPE_Q8_0: return ref_q8_0;
    case MMP_TYPE_Q4_0: return ref_q4_0;
    case MMP_TYPE_Q4_1: return ref_q4_1;
    case MMP_TYPE_Q5_0: return ref_q5_0;
    case MMP_TYPE_Q5_1: return ref_q5_1;
    case MMP_TYPE_Q2_K: return ref_q2_k;
    case MMP_TYPE_Q3_K: return ref_q3_k;
    case MMP_TYPE_Q4_K: return ref_q4_k;
    case MMP_TYPE_Q5_K: return ref_q5_k;
    case MMP_TYPE_Q6_K: return ref_q6_k;
    default: return NULL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* AVX2 + FMA                                                                                   */
#if defined(MMP_VEC_AVX2)

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float half_at(const uint8_t *p) { return _cvtsh_ss(mmp__rd_u16(p)); }

/* 8 int8 (low 8 bytes of v) -> 8 f32 */
static inline __m256 i8x8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/* sum over 16 elements of q[i]*x[i], q: 16 int8 in v */
static inline __m256 dot16(__m128i v, const float *x) {
    __m256 s = _mm256_mul_ps(i8x8_ps(v), _mm256_loadu_ps(x));
    return _mm256_fmadd_ps(i8x8_ps(_mm_srli_si128(v, 8)), _mm256_loadu_ps(x + 8), s);
}
/* sum over 32 elements, q: 32 int8 in v (element i in byte i) */
static inline __m256 dot32(__m256i v, const float *x) {
    __m256 s = dot16(_mm256_castsi256_si128(v), x);
    __m256 t = dot16(_mm256_extracti128_si256(v, 1), x + 16);
    return _mm256_add_ps(s, t);
}
static inline __m256 sum16(const float *x) { return _mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)); }
static inline __m256 sum32(const float *x) { return _mm256_add_ps(sum16(x), sum16(x + 16)); }

/* 16 packed bytes -> 32 nibbles: low nibbles in bytes 0..15, high nibbles in 16..31 */
static inline __m256i nibbles32(const uint8_t *p) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}
/* 32 bits -> 32 bytes, byte i = 0xFF if bit i is set else 0 (ggml's bytes_from_bits_32) */
static inline __m256i bits32(uint32_t x) {
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                            0x0202020202020202LL, 0x0303030303030303LL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    const __m256i bm = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL);
    v = _mm256_or_si256(v, bm);
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

static float avx_f32(int64_t n, const void *w, const float *x) {
    const float *a = (const float *)w;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
    float r = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) r += a[i] * x[i];
    return r;
}

static inline __m256 ld_f16x8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256 ld_bf16x8(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

static float avx_f16(int64_t n, const void *w, const float *x) {
    const uint8_t *a = (const uint8_t *)w;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(ld_f16x8(a + 2 * i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(ld_f16x8(a + 2 * i + 16), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(ld_f16x8(a + 2 * i + 32), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(ld_f16x8(a + 2 * i + 48), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(ld_f16x8(a + 2 * i), _mm256_loadu_ps(x + i), s0);
    float r = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) r += half_at(a + 2 * i) * x[i];
    return r;
}

static float avx_bf16(int64_t n, const void *w, const float *x) {
    const uint8_t *a = (const uint8_t *)w;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(ld_bf16x8(a + 2 * i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(ld_bf16x8(a + 2 * i + 16), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(ld_bf16x8(a + 2 * i + 32), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(ld_bf16x8(a + 2 * i + 48), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(ld_bf16x8(a + 2 * i), _mm256_loadu_ps(x + i), s0);
    float r = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) r += mmp_bf16_to_fp32(mmp__rd_u16(a + 2 * i)) * x[i];
    return r;
}

/* Two accumulators (even/odd block) so that consecutive blocks do not wait on one FMA chain. */
static float avx_q8_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, b += 68, x += 64) {
        __m256 p0 = dot32(_mm256_loadu_si256((const __m256i *)(b + 2)), x);
        __m256 p1 = dot32(_mm256_loadu_si256((const __m256i *)(b + 36)), x + 32);
        acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(half_at(b)), acc0);
        acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(half_at(b + 34)), acc1);
    }
    for (; i < nb; i++, b += 34, x += 32)
        acc0 = _mm256_fmadd_ps(dot32(_mm256_loadu_si256((const __m256i *)(b + 2)), x), _mm256_set1_ps(half_at(b)), acc0);
    return hsum8(_mm256_add_ps(acc0, acc1));
}

static float avx_q4_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    const __m256i off = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, b += 36, x += 64) {
        __m256 p0 = dot32(_mm256_sub_epi8(nibbles32(b + 2), off), x);
        __m256 p1 = dot32(_mm256_sub_epi8(nibbles32(b + 20), off), x + 32);
        acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(half_at(b)), acc0);
        acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(half_at(b + 18)), acc1);
    }
    for (; i < nb; i++, b += 18, x += 32)
        acc0 = _mm256_fmadd_ps(dot32(_mm256_sub_epi8(nibbles32(b + 2), off), x), _mm256_set1_ps(half_at(b)), acc0);
    return hsum8(_mm256_add_ps(acc0, acc1));
}

/* d*sum(q*x) + m*sum(x) */
static float avx_q4_1(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += 20, x += 32) {
        acc0 = _mm256_fmadd_ps(dot32(nibbles32(b + 4), x), _mm256_set1_ps(half_at(b)), acc0);
        acc1 = _mm256_fmadd_ps(sum32(x), _mm256_set1_ps(half_at(b + 2)), acc1);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

/* q = nibble | (bit ? 0x10 : 0) - 16 == nibble | (bit ? 0 : 0xF0) as int8 */
static float avx_q5_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    const __m256i hi = _mm256_set1_epi8((char)0xF0);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, b += 44, x += 64) {
        __m256i q0 = _mm256_or_si256(nibbles32(b + 6), _mm256_andnot_si256(bits32(mmp__rd_u32(b + 2)), hi));
        __m256i q1 = _mm256_or_si256(nibbles32(b + 28), _mm256_andnot_si256(bits32(mmp__rd_u32(b + 24)), hi));
        acc0 = _mm256_fmadd_ps(dot32(q0, x), _mm256_set1_ps(half_at(b)), acc0);
        acc1 = _mm256_fmadd_ps(dot32(q1, x + 32), _mm256_set1_ps(half_at(b + 22)), acc1);
    }
    for (; i < nb; i++, b += 22, x += 32) {
        __m256i q0 = _mm256_or_si256(nibbles32(b + 6), _mm256_andnot_si256(bits32(mmp__rd_u32(b + 2)), hi));
        acc0 = _mm256_fmadd_ps(dot32(q0, x), _mm256_set1_ps(half_at(b)), acc0);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

static float avx_q5_1(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    const __m256i h = _mm256_set1_epi8(0x10);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += 24, x += 32) {
        __m256i q = _mm256_or_si256(nibbles32(b + 8), _mm256_and_si256(bits32(mmp__rd_u32(b + 4)), h));
        acc0 = _mm256_fmadd_ps(dot32(q, x), _mm256_set1_ps(half_at(b)), acc0);
        acc1 = _mm256_fmadd_ps(sum32(x), _mm256_set1_ps(half_at(b + 2)), acc1);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

/* Q2_K: per 16 elements dl*q - ml; q = (qs[l] >> shift) & 3 */
static float avx_q2_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps(), accm = acc;
    for (int64_t i = 0; i < nb; i++, b += 84) {
        const float d = half_at(b + 80), dmin = half_at(b + 82);
        const uint8_t *sc = b;
        for (int c = 0; c < 2; c++) {                 /* 128 elements: 32 bytes of qs */
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * c));
            for (int j = 0; j < 4; j++, x += 32, sc += 2) {
                const __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                __m256 p0 = dot16(_mm256_castsi256_si128(v), x);
                __m256 p1 = dot16(_mm256_extracti128_si256(v, 1), x + 16);
                acc = _mm256_fmadd_ps(p0, _mm256_set1_ps(d * (float)(sc[0] & 0xF)), acc);
                acc = _mm256_fmadd_ps(p1, _mm256_set1_ps(d * (float)(sc[1] & 0xF)), acc);
                accm = _mm256_fmadd_ps(sum16(x), _mm256_set1_ps(dmin * (float)(sc[0] >> 4)), accm);
                accm = _mm256_fmadd_ps(sum16(x + 16), _mm256_set1_ps(dmin * (float)(sc[1] >> 4)), accm);
            }
        }
    }
    return hsum8(_mm256_sub_ps(acc, accm));
}

/* Q3_K: q = ((qs >> shift) & 3) - (hmask bit ? 0 : 4), scale (s - 32) per 16 elements */
static float avx_q3_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += 110) {
        const float d = half_at(b + 108);
        int8_t scales[16];
        mmp__q3k_unpack_scales(b + 96, scales);
        const __m256i hmask = _mm256_loadu_si256((const __m256i *)b);
        int is = 0;
        for (int c = 0; c < 2; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * c));
            for (int j = 0; j < 4; j++, x += 32, is += 2) {
                const int bit = 4 * c + j;
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hmask, bit), _mm256_set1_epi8(1));
                /* bit clear -> subtract 4 */
                const __m256i sub = _mm256_andnot_si256(_mm256_slli_epi16(hb, 2), four);
                const __m256i v = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3), sub);
                __m256 p0 = dot16(_mm256_castsi256_si128(v), x);
                __m256 p1 = dot16(_mm256_extracti128_si256(v, 1), x + 16);
                acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d * (float)(scales[is] - 32)), acc0);
                acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d * (float)(scales[is + 1] - 32)), acc1);
            }
        }
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

static float avx_q4_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, accm = acc0;
    for (int64_t i = 0; i < nb; i++, b += 144) {
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        for (int c = 0; c < 4; c++, q += 32, x += 64) {
            uint8_t s1, m1, s2, m2;
            mmp__get_scale_min_k4(2 * c, scales, &s1, &m1);
            mmp__get_scale_min_k4(2 * c + 1, scales, &s2, &m2);
            const __m256i v = _mm256_loadu_si256((const __m256i *)q);
            const __m256i lo = _mm256_and_si256(v, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            acc0 = _mm256_fmadd_ps(dot32(lo, x), _mm256_set1_ps(d * (float)s1), acc0);
            acc1 = _mm256_fmadd_ps(dot32(hi, x + 32), _mm256_set1_ps(d * (float)s2), acc1);
            accm = _mm256_fmadd_ps(sum32(x), _mm256_set1_ps(dmin * (float)m1), accm);
            accm = _mm256_fmadd_ps(sum32(x + 32), _mm256_set1_ps(dmin * (float)m2), accm);
        }
    }
    return hsum8(_mm256_sub_ps(_mm256_add_ps(acc0, acc1), accm));
}

static float avx_q5_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, accm = acc0;
    for (int64_t i = 0; i < nb; i++, b += 176) {
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *scales = b + 4, *ql = b + 48;
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
        for (int c = 0; c < 4; c++, ql += 32, x += 64) {
            uint8_t s1, m1, s2, m2;
            mmp__get_scale_min_k4(2 * c, scales, &s1, &m1);
            mmp__get_scale_min_k4(2 * c + 1, scales, &s2, &m2);
            const __m256i v = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
            const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), h1);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h2);
            acc0 = _mm256_fmadd_ps(dot32(lo, x), _mm256_set1_ps(d * (float)s1), acc0);
            acc1 = _mm256_fmadd_ps(dot32(hi, x + 32), _mm256_set1_ps(d * (float)s2), acc1);
            accm = _mm256_fmadd_ps(sum32(x), _mm256_set1_ps(dmin * (float)m1), accm);
            accm = _mm256_fmadd_ps(sum32(x + 32), _mm256_set1_ps(dmin * (float)m2), accm);
        }
    }
    return hsum8(_mm256_sub_ps(_mm256_add_ps(acc0, acc1), accm));
}

/* Q6_K: per 128 elements ql[64], qh[32], 8 int8 scales (one per 16 elements) */
static float avx_q6_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < nb; i++, b += 210) {
        const float d = half_at(b + 208);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int c = 0; c < 2; c++, ql += 64, qh += 32, sc += 8, x += 128) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_sub_epi8(q[k], off);
                __m256 p0 = dot16(_mm256_castsi256_si128(v), x + 32 * k);
                __m256 p1 = dot16(_mm256_extracti128_si256(v, 1), x + 32 * k + 16);
                acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d * (float)sc[2 * k]), acc0);
                acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d * (float)sc[2 * k + 1]), acc1);
            }
        }
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

#endif /* MMP_VEC_AVX2 */

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 (F+BW+VL+DQ): 16 lanes; one vpmovzxbd expands 16 bytes to 16 int32 lanes, whose low
 * bits index a small f32 table in a register (the quant levels, pre-scaled where a sub-block
 * has one scale). The Q4_1/Q5_1/Q4_K/Q5_K mins multiply the sums of x over 32-element groups
 * ("xs"), computed once per mat-vec call. Measured on the EPYC (in L2, 1 thread): Q4_0/Q4_K
 * ~20 G weights/s, Q8_0 ~21, F16 ~30; the FP/shuffle pipes, not the loads, are the limit. */
#if defined(MMP_VEC_AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define MMP_VEC_AVX512 1

static inline __m512 z_half(const uint8_t *p) { return _mm512_set1_ps(_cvtsh_ss(mmp__rd_u16(p))); }
static inline __m512i z_u8(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
static inline __m512 z_cvt(__m512i v) { return _mm512_cvtepi32_ps(v); }

static float z_f32(int64_t n, const void *w, const float *x) {
    const float *a = (const float *)w;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(x + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(x + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(x + i + 48), s3);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static inline __m512 z_f16x16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline __m512 z_bf16x16(const uint8_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

static float z_f16(int64_t n, const void *w, const float *x) {
    const uint8_t *a = (const uint8_t *)w;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(z_f16x16(a + 2 * i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(z_f16x16(a + 2 * i + 32), _mm512_loadu_ps(x + i + 16), s1);
        s2 = _mm512_fmadd_ps(z_f16x16(a + 2 * i + 64), _mm512_loadu_ps(x + i + 32), s2);
        s3 = _mm512_fmadd_ps(z_f16x16(a + 2 * i + 96), _mm512_loadu_ps(x + i + 48), s3);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + 2 * i));
        s0 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static float z_bf16(int64_t n, const void *w, const float *x) {
    const uint8_t *a = (const uint8_t *)w;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(z_bf16x16(a + 2 * i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(z_bf16x16(a + 2 * i + 32), _mm512_loadu_ps(x + i + 16), s1);
        s2 = _mm512_fmadd_ps(z_bf16x16(a + 2 * i + 64), _mm512_loadu_ps(x + i + 32), s2);
        s3 = _mm512_fmadd_ps(z_bf16x16(a + 2 * i + 96), _mm512_loadu_ps(x + i + 48), s3);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, a + 2 * i));
        s0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(h, 16)), _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* The fp16 scales of 8 consecutive blocks (stride `stride` bytes) -> f32, one conversion; the
 * per-block broadcasts then come from memory (load port, not a vector ALU slot). */
static inline void z_scales8(const uint8_t *b, int stride, float out[8]) {
    uint16_t h[8];
    for (int k = 0; k < 8; k++) h[k] = mmp__rd_u16(b + k * stride);
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
}

/* Q8_0: 32 int8 -> two 16-lane halves */
static inline __m512 z_q8_0_block(const uint8_t *b, const float *x) {
    const __m512 q0 = z_cvt(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2))));
    const __m512 q1 = z_cvt(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18))));
    return _mm512_fmadd_ps(q1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(q0, _mm512_loadu_ps(x)));
}
static float z_q8_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4, b += 136, x += 128) {
        a0 = _mm512_fmadd_ps(z_q8_0_block(b, x), z_half(b), a0);
        a1 = _mm512_fmadd_ps(z_q8_0_block(b + 34, x + 32), z_half(b + 34), a1);
        a2 = _mm512_fmadd_ps(z_q8_0_block(b + 68, x + 64), z_half(b + 68), a2);
        a3 = _mm512_fmadd_ps(z_q8_0_block(b + 102, x + 96), z_half(b + 102), a3);
    }
    for (; i < nb; i++, b += 34, x += 32) a0 = _mm512_fmadd_ps(z_q8_0_block(b, x), z_half(b), a0);
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Q4_0: a nibble indexes a 16-entry f32 table held in a register (vpermps reads only the
 * low 4 bits of each 32-bit lane), so no mask, offset or int->float conversion is needed:
 * lanes 0..15 = low nibbles (elements 0..15), the same lanes shifted by 4 = elements 16..31. */
static inline __m512 z_q4_0_block(const uint8_t *b, const float *x, __m512 tbl) {
    const __m512i z = z_u8(b + 2);
    const __m512 lo = _mm512_permutexvar_ps(z, tbl);
    const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(z, 4), tbl);
    return _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(x)));
}
static float z_q4_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    const __m512 tbl = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    float d[8];
    for (; i + 8 <= nb; i += 8, b += 144, x += 256) {
        z_scales8(b, 18, d);
        for (int k = 0; k < 8; k += 4) {
            a0 = _mm512_fmadd_ps(z_q4_0_block(b + 18 * k, x + 32 * k, tbl), _mm512_set1_ps(d[k]), a0);
            a1 = _mm512_fmadd_ps(z_q4_0_block(b + 18 * (k + 1), x + 32 * (k + 1), tbl), _mm512_set1_ps(d[k + 1]), a1);
            a2 = _mm512_fmadd_ps(z_q4_0_block(b + 18 * (k + 2), x + 32 * (k + 2), tbl), _mm512_set1_ps(d[k + 2]), a2);
            a3 = _mm512_fmadd_ps(z_q4_0_block(b + 18 * (k + 3), x + 32 * (k + 3), tbl), _mm512_set1_ps(d[k + 3]), a3);
        }
    }
    for (; i < nb; i++, b += 18, x += 32) a0 = _mm512_fmadd_ps(z_q4_0_block(b, x, tbl), z_half(b), a0);
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Q4_K with xs[n/32] = sums of x over 32-element groups (the mins multiply those). The 12
 * packed scale bytes are unpacked as ggml's AVX code does: bytes 0..7 = scales, 8..15 = mins. */
static inline void q4k_scales_mins(const uint8_t *packed, uint8_t out[16]) {
    const uint32_t kmask1 = 0x3f3f3f3fu, kmask2 = 0x0f0f0f0fu, kmask3 = 0x03030303u;
    uint32_t u[4];
    memcpy(u, packed, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
    memcpy(out, u, 16);
}
static float z_q4_k_xs(int64_t n, const void *w, const float *x, const float *xs) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m512 tbl = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m256 am = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, b += 144, xs += 8) {
        uint8_t sm[16];
        q4k_scales_mins(b + 4, sm);
        const float d = _cvtsh_ss(mmp__rd_u16(b)), dmin = _cvtsh_ss(mmp__rd_u16(b + 2));
        float sc[8];
        _mm256_storeu_ps(sc, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sm))),
                                           _mm256_set1_ps(d)));
        const __m256 mn = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sm + 8)))),
                                        _mm256_set1_ps(dmin));
        am = _mm256_fmadd_ps(mn, _mm256_loadu_ps(xs), am);
        const uint8_t *q = b + 16;
        for (int c = 0; c < 4; c++, q += 32, x += 64) {
            const __m512i z0 = z_u8(q), z1 = z_u8(q + 16);
            /* nibble -> f32 by table lookup (see Q4_0) */
            __m512 p1 = _mm512_mul_ps(_mm512_permutexvar_ps(z0, tbl), _mm512_loadu_ps(x));
            p1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(z1, tbl), _mm512_loadu_ps(x + 16), p1);
            __m512 p2 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(z0, 4), tbl), _mm512_loadu_ps(x + 32));
            p2 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(z1, 4), tbl), _mm512_loadu_ps(x + 48), p2);
            a0 = _mm512_fmadd_ps(p1, _mm512_set1_ps(sc[2 * c]), a0);
            a1 = _mm512_fmadd_ps(p2, _mm512_set1_ps(sc[2 * c + 1]), a1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) - hsum8(am);
}

/* 32-entry f32 table lookup by the low 5 bits of each lane (two-source vpermt2ps) */
static inline __m512 z_lut32(__m512i idx, __m512 t_lo, __m512 t_hi) { return _mm512_permutex2var_ps(t_lo, idx, t_hi); }

/* Q4_1 with xs: d * sum(q x) + m * xs[block] */
static float z_q4_1_xs(int64_t n, const void *w, const float *x, const float *xs) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    const __m512 tbl = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    float am = 0.0f;
    for (int64_t i = 0; i < nb; i++, b += 20, x += 32) {
        const __m512i z = z_u8(b + 4);
        __m512 p = _mm512_mul_ps(_mm512_permutexvar_ps(z, tbl), _mm512_loadu_ps(x));
        p = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(z, 4), tbl), _mm512_loadu_ps(x + 16), p);
        if (i & 1) a1 = _mm512_fmadd_ps(p, z_half(b), a1);
        else a0 = _mm512_fmadd_ps(p, z_half(b), a0);
        am += _cvtsh_ss(mmp__rd_u16(b + 2)) * xs[i];
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + am;
}

/* Q5_0 / Q5_1: 5-bit index = nibble | (qh bit << 4), looked up in a 32-entry table; the qh bits
 * go in through a lane mask (bit j of qh -> lane j). */
static inline void z_q5_idx(const uint8_t *qs, uint32_t qh, __m512i *lo, __m512i *hi) {
    const __m512i z = z_u8(qs), m4 = _mm512_set1_epi32(15), b4 = _mm512_set1_epi32(16);
    const __m512i l = _mm512_and_si512(z, m4), h = _mm512_srli_epi32(z, 4);
    *lo = _mm512_mask_or_epi32(l, (__mmask16)(qh & 0xFFFFu), l, b4);
    *hi = _mm512_mask_or_epi32(h, (__mmask16)(qh >> 16), h, b4);
}
static float z_q5_0(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    const __m512 tl = _mm512_setr_ps(-16, -15, -14, -13, -12, -11, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1);
    const __m512 th = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < nb; i++, b += 22, x += 32) {
        __m512i lo, hi;
        z_q5_idx(b + 6, mmp__rd_u32(b + 2), &lo, &hi);
        __m512 p = _mm512_mul_ps(z_lut32(lo, tl, th), _mm512_loadu_ps(x));
        p = _mm512_fmadd_ps(z_lut32(hi, tl, th), _mm512_loadu_ps(x + 16), p);
        if (i & 1) a1 = _mm512_fmadd_ps(p, z_half(b), a1);
        else a0 = _mm512_fmadd_ps(p, z_half(b), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}
static float z_q5_1_xs(int64_t n, const void *w, const float *x, const float *xs) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 32;
    const __m512 tl = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 th = _mm512_setr_ps(16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    float am = 0.0f;
    for (int64_t i = 0; i < nb; i++, b += 24, x += 32) {
        __m512i lo, hi;
        z_q5_idx(b + 8, mmp__rd_u32(b + 4), &lo, &hi);
        __m512 p = _mm512_mul_ps(z_lut32(lo, tl, th), _mm512_loadu_ps(x));
        p = _mm512_fmadd_ps(z_lut32(hi, tl, th), _mm512_loadu_ps(x + 16), p);
        if (i & 1) a1 = _mm512_fmadd_ps(p, z_half(b), a1);
        else a0 = _mm512_fmadd_ps(p, z_half(b), a0);
        am += _cvtsh_ss(mmp__rd_u16(b + 2)) * xs[i];
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + am;
}

/* Q5_K with xs: as Q4_K, the 5th bit from qh (bit 2c for the low nibbles of chunk c, 2c+1 for
 * the high ones), values 0..31 by a 32-entry table. */
static float z_q5_k_xs(int64_t n, const void *w, const float *x, const float *xs) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m512 tl = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 th = _mm512_setr_ps(16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
    const __m512i m4 = _mm512_set1_epi32(15), one = _mm512_set1_epi32(1);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m256 am = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, b += 176, xs += 8) {
        uint8_t sm[16];
        q4k_scales_mins(b + 4, sm);
        const float d = _cvtsh_ss(mmp__rd_u16(b)), dmin = _cvtsh_ss(mmp__rd_u16(b + 2));
        float sc[8];
        _mm256_storeu_ps(sc, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sm))),
                                           _mm256_set1_ps(d)));
        const __m256 mn = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sm + 8)))),
                                        _mm256_set1_ps(dmin));
        am = _mm256_fmadd_ps(mn, _mm256_loadu_ps(xs), am);
        const __m512i zh0 = z_u8(b + 16), zh1 = z_u8(b + 32);
        const uint8_t *ql = b + 48;
        for (int c = 0; c < 4; c++, ql += 32, x += 64) {
            const __m512i z0 = z_u8(ql), z1 = z_u8(ql + 16);
            const __m512i l0 = _mm512_or_si512(_mm512_and_si512(z0, m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(zh0, 2 * c), one), 4));
            const __m512i l1 = _mm512_or_si512(_mm512_and_si512(z1, m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(zh1, 2 * c), one), 4));
            const __m512i h0 = _mm512_or_si512(_mm512_srli_epi32(z0, 4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(zh0, 2 * c + 1), one), 4));
            const __m512i h1 = _mm512_or_si512(_mm512_srli_epi32(z1, 4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(zh1, 2 * c + 1), one), 4));
            __m512 p1 = _mm512_mul_ps(z_lut32(l0, tl, th), _mm512_loadu_ps(x));
            p1 = _mm512_fmadd_ps(z_lut32(l1, tl, th), _mm512_loadu_ps(x + 16), p1);
            __m512 p2 = _mm512_mul_ps(z_lut32(h0, tl, th), _mm512_loadu_ps(x + 32));
            p2 = _mm512_fmadd_ps(z_lut32(h1, tl, th), _mm512_loadu_ps(x + 48), p2);
            a0 = _mm512_fmadd_ps(p1, _mm512_set1_ps(sc[2 * c]), a0);
            a1 = _mm512_fmadd_ps(p2, _mm512_set1_ps(sc[2 * c + 1]), a1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) - hsum8(am);
}

/* Q6_K: 6-bit q from ql nibble + 2 qh bits; (q - 32) * scale is formed in integers (|.| <= 4096,
 * exact in f32), so each 16 elements cost one conversion and one FMA; d once per super-block. */
static float z_q6_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m512i m4 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3), m30 = _mm512_set1_epi32(0x30),
                  e32 = _mm512_set1_epi32(32);
    __m512 tot = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < 2; c++, ql += 64, qh += 32, sc += 8, x += 128) {
            for (int h = 0; h < 2; h++) {
                const __m512i zl0 = z_u8(ql + 16 * h), zl1 = z_u8(ql + 32 + 16 * h), zh = z_u8(qh + 16 * h);
                const __m512i q1 = _mm512_or_si512(_mm512_and_si512(zl0, m4), _mm512_slli_epi32(_mm512_and_si512(zh, m3), 4));
                const __m512i q2 = _mm512_or_si512(_mm512_and_si512(zl1, m4), _mm512_and_si512(_mm512_slli_epi32(zh, 2), m30));
                const __m512i q3 = _mm512_or_si512(_mm512_srli_epi32(zl0, 4), _mm512_and_si512(zh, m30));
                const __m512i q4 = _mm512_or_si512(_mm512_srli_epi32(zl1, 4), _mm512_and_si512(_mm512_srli_epi32(zh, 2), m30));
                a0 = _mm512_fmadd_ps(z_cvt(_mm512_mullo_epi32(_mm512_sub_epi32(q1, e32), _mm512_set1_epi32(sc[h]))),
                                     _mm512_loadu_ps(x + 16 * h), a0);
                a1 = _mm512_fmadd_ps(z_cvt(_mm512_mullo_epi32(_mm512_sub_epi32(q2, e32), _mm512_set1_epi32(sc[2 + h]))),
                                     _mm512_loadu_ps(x + 32 + 16 * h), a1);
                a2 = _mm512_fmadd_ps(z_cvt(_mm512_mullo_epi32(_mm512_sub_epi32(q3, e32), _mm512_set1_epi32(sc[4 + h]))),
                                     _mm512_loadu_ps(x + 64 + 16 * h), a2);
                a3 = _mm512_fmadd_ps(z_cvt(_mm512_mullo_epi32(_mm512_sub_epi32(q4, e32), _mm512_set1_epi32(sc[6 + h]))),
                                     _mm512_loadu_ps(x + 96 + 16 * h), a3);
            }
        }
        tot = _mm512_fmadd_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), z_half(b + 208), tot);
    }
    return _mm512_reduce_add_ps(tot);
}

/* Q3_K and Q2_K: a 16-element sub-block has one scale, and its values take 8 (Q3_K) or 4 (Q2_K)
 * levels, so the sub-block's dequantized levels are computed once into a register table
 * (levels * scale, minus the min for Q2_K) and every element is one vpermps lookup + one FMA. */
static float z_q3_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    /* index = (q & 3) | (hmask bit << 2), level = index - 4 */
    const __m512 lv = _mm512_setr_ps(-4, -3, -2, -1, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < nb; i++, b += 110, x += 256) {
        int8_t scales[16];
        mmp__q3k_unpack_scales(b + 96, scales);
        const float d = _cvtsh_ss(mmp__rd_u16(b + 108));
        float ds[16];
        for (int k = 0; k < 16; k++) ds[k] = d * (float)(scales[k] - 32);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)b);
        for (int c = 0; c < 2; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * c));
            for (int j = 0; j < 4; j++) {
                /* the 32 indices of group j, built on bytes (one 256-bit op covers 32 elements) */
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * c + j), one);
                const __m256i idx = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3), _mm256_slli_epi16(hb, 2));
                const __m512i i0 = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(idx));
                const __m512i i1 = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(idx, 1));
                const int is = 8 * c + 2 * j;
                const float *xp = x + 128 * c + 32 * j;
                a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i0, _mm512_mul_ps(lv, _mm512_set1_ps(ds[is]))), _mm512_loadu_ps(xp), a0);
                a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i1, _mm512_mul_ps(lv, _mm512_set1_ps(ds[is + 1]))), _mm512_loadu_ps(xp + 16), a1);
            }
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static float z_q2_k(int64_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const int64_t nb = n / 256;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m512 lv = _mm512_setr_ps(0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < nb; i++, b += 84, x += 256) {
        const float d = _cvtsh_ss(mmp__rd_u16(b + 80)), dmin = _cvtsh_ss(mmp__rd_u16(b + 82));
        float dl[16], ml[16];
        for (int k = 0; k < 16; k++) {
            dl[k] = d * (float)(b[k] & 0xF);
            ml[k] = dmin * (float)(b[k] >> 4);
        }
        for (int c = 0; c < 2; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * c));
            for (int j = 0; j < 4; j++) {
                const __m256i idx = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                const __m512i i0 = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(idx));
                const __m512i i1 = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(idx, 1));
                const int is = 8 * c + 2 * j;
                const float *xp = x + 128 * c + 32 * j;
                const __m512 t0 = _mm512_fmsub_ps(lv, _mm512_set1_ps(dl[is]), _mm512_set1_ps(ml[is]));
                const __m512 t1 = _mm512_fmsub_ps(lv, _mm512_set1_ps(dl[is + 1]), _mm512_set1_ps(ml[is + 1]));
                a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i0, t0), _mm512_loadu_ps(xp), a0);
                a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i1, t1), _mm512_loadu_ps(xp + 16), a1);
            }
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Sums of x over 32-element groups, n a multiple of 32. One fixed order (the mat-vec and the
 * single dot compute the same values). */
static void xsums32(const float *x, int64_t n, float *xs) {
    for (int64_t g = 0; g < n / 32; g++, x += 32)
        xs[g] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16)));
}

typedef float (*dot_xs_fn)(int64_t n, const void *w, const float *x, const float *xs);
/* Elements per chunk when a single dot computes its own xs (a 1 KiB stack buffer); the
 * mat-vec uses the same chunking so that both give bit-identical results. */
#define MMP_XS_CHUNK 8192

static float dot_xs_row(dot_xs_fn k, enum mmp_type t, int64_t n, const void *w, const float *x, const float *xs_all) {
    float buf[MMP_XS_CHUNK / 32];
    float r = 0.0f;
    const uint8_t *p = (const uint8_t *)w;
    for (int64_t i = 0; i < n; i += MMP_XS_CHUNK) {
        const int64_t m = MMP_MIN((int64_t)MMP_XS_CHUNK, n - i);
        const float *xs = xs_all ? xs_all + i / 32 : buf;
        if (!xs_all) xsums32(x + i, m, buf);
        r += k(m, p, x + i, xs);
        p += mmp_row_size(t, m);
    }
    return r;
}

static float z_q4_k(int64_t n, const void *w, const float *x) { return dot_xs_row(z_q4_k_xs, MMP_TYPE_Q4_K, n, w, x, NULL); }
static float z_q5_k(int64_t n, const void *w, const float *x) { return dot_xs_row(z_q5_k_xs, MMP_TYPE_Q5_K, n, w, x, NULL); }
static float z_q4_1(int64_t n, const void *w, const float *x) { return dot_xs_row(z_q4_1_xs, MMP_TYPE_Q4_1, n, w, x, NULL); }
static float z_q5_1(int64_t n, const void *w, const float *x) { return dot_xs_row(z_q5_1_xs, MMP_TYPE_Q5_1, n, w, x, NULL); }

static dot_xs_fn xs_kernel(enum mmp_type t) {
    switch (t) {
    case MMP_TYPE_Q4_K: return z_q4_k_xs;
    case MMP_TYPE_Q5_K: return z_q5_k_xs;
    case MMP_TYPE_Q4_1: return z_q4_1_xs;
    case MMP_TYPE_Q5_1: return z_q5_1_xs;
    default: return NULL;
    }
}

#endif /* AVX-512 */

mmp_vec_dot_fn mmp__vec_dot_fast(enum mmp_type t) {
#if defined(MMP_VEC_AVX512)
    switch (t) {
    case MMP_TYPE_F32: return z_f32;
    case MMP_TYPE_F16: return z_f16;
    case MMP_TYPE_BF16: return z_bf16;
    case MMP_TYPE_Q8_0: return z_q8_0;
    case MMP_TYPE_Q4_0: return z_q4_0;
    case MMP_TYPE_Q4_K: return z_q4_k;
    case MMP_TYPE_Q4_1: return z_q4_1;
    case MMP_TYPE_Q5_0: return z_q5_0;
    case MMP_TYPE_Q5_1: return z_q5_1;
    case MMP_TYPE_Q2_K: return z_q2_k;
    case MMP_TYPE_Q3_K: return z_q3_k;
    case MMP_TYPE_Q5_K: return z_q5_k;
    case MMP_TYPE_Q6_K: return z_q6_k;
    default: break;
    }
#endif
#if defined(MMP_VEC_AVX2)
    switch (t) {
    case MMP_TYPE_F32: return avx_f32;
    case MMP_TYPE_F16: return avx_f16;
    case MMP_TYPE_BF16: return avx_bf16;
    case MMP_TYPE_Q8_0: return avx_q8_0;
    case MMP_TYPE_Q4_0: return avx_q4_0;
    case MMP_TYPE_Q4_1: return avx_q4_1;
    case MMP_TYPE_Q5_0: return avx_q5_0;
    case MMP_TYPE_Q5_1: return avx_q5_1;
    case MMP_TYPE_Q2_K: return avx_q2_k;
    case MMP_TYPE_Q3_K: return avx_q3_k;
    case MMP_TYPE_Q4_K: return avx_q4_k;
    case MMP_TYPE_Q5_K: return avx_q5_k;
    case MMP_TYPE_Q6_K: return avx_q6_k;
    default: return NULL;
    }
#else
    return mmp__vec_dot_ref(t);
#endif
}

enum mmp_status mmp__matvec_rows(enum mmp_type t, const void *W, size_t row_stride_bytes, int64_t n,
                                 const float *x, float *y, int64_t row_begin, int64_t row_end) {
    mmp_vec_dot_fn dot = mmp__vec_dot_fast(t);
    if (!dot) return mmp__error(MMP_ERR_INVALID_ARG, "matvec: type %s has no dot product", mmp_type_name((int)t));
    const mmp_type_traits *tr = mmp_type_get_traits((int)t);
    if (n < 0 || n % tr->blck_size != 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "matvec: row length %lld is not a multiple of the %s block size %lld",
                          (long long)n, tr->name, (long long)tr->blck_size);
    if (row_begin < 0 || row_end < row_begin)
        return mmp__error(MMP_ERR_INVALID_ARG, "matvec: bad row range [%lld, %lld)", (long long)row_begin, (long long)row_end);
    const char *base = (const char *)W;
#if defined(MMP_VEC_AVX512)
    dot_xs_fn kx = xs_kernel(t);
    if (kx && row_end > row_begin) {
        /* sums of x per 32 elements, once for all rows */
        float stack_xs[4096];
        float *xs = n / 32 <= 4096 ? stack_xs : mmp__malloc((size_t)(n / 32) * sizeof(float));
        if (!xs) return MMP_ERR_NOMEM;
        for (int64_t i = 0; i < n; i += MMP_XS_CHUNK) xsums32(x + i, MMP_MIN((int64_t)MMP_XS_CHUNK, n - i), xs + i / 32);
        for (int64_t r = row_begin; r < row_end; r++) y[r] = dot_xs_row(kx, t, n, base + (size_t)r * row_stride_bytes, x, xs);
        if (xs != stack_xs) free(xs);
        return MMP_OK;
    }
#endif
    for (int64_t r = row_begin; r < row_end; r++) y[r] = dot(n, base + (size_t)r * row_stride_bytes, x);
    return MMP_OK;
}
