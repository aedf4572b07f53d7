/* Element types: traits, names, row sizes, fp16/bf16 conversions, and GGUF (ggml) block
 * (de)quantization.
 *
 * Dequantization follows ggml's dequantize_row_* (ggml/src/ggml-quants.c) operation by
 * operation, so the result is bit-identical to ggml's to_float (the quant zoo goldens demand
 * 0 ULP). In particular no multiply-add may be fused into an FMA: ggml computes e.g. Q4_K's
 * `d1 * q - m1` as a rounded product followed by a rounded subtraction. GCC in ISO C mode
 * (-std=c11, which the build uses) does not contract across or within expressions; clang
 * contracts within an expression by default, hence the pragma below.
 *
 * Quantization f32 -> Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 follows ggml's quantize_row_*_ref (the
 * deterministic reference quantizers), same scale choice and rounding.
 *
 * Block layouts (ggml-common.h; all little-endian, ggml_half = IEEE fp16):
 *   Q4_0 { half d; u8 qs[16]; }                              18 B / 32
 *   Q4_1 { half d, m; u8 qs[16]; }                           20 B / 32
 *   Q5_0 { half d; u8 qh[4]; u8 qs[16]; }                    22 B / 32
 *   Q5_1 { half d, m; u8 qh[4]; u8 qs[16]; }                 24 B / 32
 *   Q8_0 { half d; i8 qs[32]; }                              34 B / 32
 *   Q8_1 { half d, s; i8 qs[32]; }                           36 B / 32
 *   Q2_K { u8 scales[16]; u8 qs[64]; half d, dmin; }         84 B / 256
 *   Q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d; } 110 B / 256
 *   Q4_K { half d, dmin; u8 scales[12]; u8 qs[128]; }        144 B / 256
 *   Q5_K { half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; } 176 B / 256
 *   Q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }   210 B / 256
 *   Q8_K { f32 d; i8 qs[256]; i16 bsums[16]; }               292 B / 256
 * Byte offsets are used instead of C structs so that unaligned rows (a GGUF tensor slice)
 * are read with memcpy-safe loads. */
#include "mmpipe/types.h"
#include "kernels.h"
#include "util.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------------------------ */
/* traits                                                                                      */

static const mmp_type_traits k_traits[MMP_TYPE_COUNT] = {
    [MMP_TYPE_F32]  = { "f32",  1,   4,   false, true  },
    [MMP_TYPE_F16]  = { "f16",  1,   2,   false, true  },
    [MMP_TYPE_Q4_0] = { "q4_0", 32,  18,  true,  true  },
    [MMP_TYPE_Q4_1] = { "q4_1", 32,  20,  true,  true  },
    [MMP_TYPE_Q5_0] = { "q5_0", 32,  22,  true,  true  },
    [MMP_TYPE_Q5_1] = { "q5_1", 32,  24,  true,  true  },
    [MMP_TYPE_Q8_0] = { "q8_0", 32,  34,  true,  true  },
    [MMP_TYPE_Q8_1] = { "q8_1", 32,  36,  true,  false },
    [MMP_TYPE_Q2_K] = { "q2_K", 256, 84,  true,  false },
    [MMP_TYPE_Q3_K] = { "q3_K", 256, 110, true,  false },
    [MMP_TYPE_Q4_K] = { "q4_K", 256, 144, true,  false },
    [MMP_TYPE_Q5_K] = { "q5_K", 256, 176, true,  false },
    [MMP_TYPE_Q6_K] = { "q6_K", 256, 210, true,  false },
    [MMP_TYPE_Q8_K] = { "q8_K", 256, 292, true,  false },
    [MMP_TYPE_I8]   = { "i8",   1,   1,   false, false },
    [MMP_TYPE_I16]  = { "i16",  1,   2,   false, false },
    [MMP_TYPE_I32]  = { "i32",  1,   4,   false, false },
    [MMP_TYPE_I64]  = { "i64",  1,   8,   false, false },
    [MMP_TYPE_F64]  = { "f64",  1,   8,   false, false },
    [MMP_TYPE_BF16] = { "bf16", 1,   2,   false, true  },
    [MMP_TYPE_U8]   = { "u8",   1,   1,   false, false },
};

const mmp_type_traits *mmp_type_get_traits(int t) {
    if (t < 0 || t >= MMP_TYPE_COUNT || k_traits[t].name == NULL) return NULL;
    return &k_traits[t];
}

const char *mmp_type_name(int t) {
    const mmp_type_traits *tr = mmp_type_get_traits(t);
    return tr ? tr->name : "unknown";
}

int mmp_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < MMP_TYPE_COUNT; t++) {
        const char *n = k_traits[t].name;
        if (!n) continue;
        size_t i = 0;
        while (n[i] && name[i] && tolower((unsigned char)n[i]) == tolower((unsigned char)name[i])) i++;
        if (n[i] == 0 && name[i] == 0) return t;
    }
    return -1;
}

size_t mmp_row_size(enum mmp_type t, int64_t ne0) {
    const mmp_type_traits *tr = mmp_type_get_traits((int)t);
    if (!tr || ne0 < 0 || ne0 % tr->blck_size != 0) return 0;
    uint64_t bytes;
    if (!mmp__mul_ok((uint64_t)(ne0 / tr->blck_size), tr->type_size, &bytes) || bytes > SIZE_MAX) return 0;
    return (size_t)bytes;
}

/* ------------------------------------------------------------------------------------------ */
/* fp16 / bf16                                                                                  */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Exact half -> single. NaN keeps sign and payload and is made quiet (as VCVTPH2PS does). */
float mmp__fp16_to_fp32_ref(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {                       /* subnormal half: normalize (every one is normal in f32) */
            uint32_t e = 113;          /* 127 - 15 + 1 */
            while (!(mant & 0x400u)) { mant <<= 1; e--; }
            bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
        if (mant) bits |= 0x00400000u; /* quiet NaN */
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    return bits_f32(bits);
}

/* Single -> half, round to nearest even; overflow to Inf; subnormal halves; NaN made quiet
 * with the top payload bits kept (as VCVTPS2PH does). */
uint16_t mmp__fp32_to_fp16_ref(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);     /* >= 65520: rounds to Inf */
    if (a < 0x38800000u) {                                     /* below 2^-14: subnormal half */
        uint32_t e = a >> 23;
        if (e < 102) return sign;                              /* < 2^-25: rounds to zero */
        uint32_t m = (a & 0x7fffffu) | 0x800000u;              /* value = m * 2^(e-150) */
        uint32_t shift = 126 - e;                              /* half units: 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((((a >> 23) - 112) << 10) | ((a >> 13) & 0x3ffu));
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;   /* carry into the exponent is right */
    return (uint16_t)(sign | h);
}

float mmp_fp16_to_fp32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return mmp__fp16_to_fp32_ref(h);
#endif
}

uint16_t mmp_fp32_to_fp16(float f) {
#if defined(__F16C__)
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    return mmp__fp32_to_fp16_ref(f);
#endif
}

float mmp_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* ggml's ggml_compute_fp32_to_bf16: NaN -> quiet NaN (top bits kept), else RNE. */
uint16_t mmp_fp32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

void mmp__fp16_to_fp32_row(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + i, 2);
        dst[i] = mmp_fp16_to_fp32(h);
    }
}

void mmp__fp32_to_fp16_row(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) {
        uint16_t h = mmp_fp32_to_fp16(src[i]);
        memcpy(dst + i, &h, 2);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* dequantization (scalar, ggml order of operations)                                           */

static inline float ld_half(const uint8_t *p) { return mmp_fp16_to_fp32(mmp__rd_u16(p)); }

static void deq_q4_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 18, y += 32) {
        const float d = ld_half(x);
        const uint8_t *qs = x + 2;
        for (int j = 0; j < 16; j++) {
            const int x0 = (qs[j] & 0x0F) - 8;
            const int x1 = (qs[j] >> 4) - 8;
            y[j] = (float)x0 * d;
            y[j + 16] = (float)x1 * d;
        }
    }
}

static void deq_q4_1(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 20, y += 32) {
        const float d = ld_half(x), m = ld_half(x + 2);
        const uint8_t *qs = x + 4;
        for (int j = 0; j < 16; j++) {
            const float p0 = (float)(qs[j] & 0x0F) * d;
            const float p1 = (float)(qs[j] >> 4) * d;
            y[j] = p0 + m;
            y[j + 16] = p1 + m;
        }
    }
}

static void deq_q5_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 22, y += 32) {
        const float d = ld_half(x);
        const uint32_t qh = mmp__rd_u32(x + 2);
        const uint8_t *qs = x + 6;
        for (int j = 0; j < 16; j++) {
            const uint8_t xh_0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh_1 = (uint8_t)(((qh >> (j + 12))) & 0x10);
            const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16;
            const int32_t x1 = ((qs[j] >> 4) | xh_1) - 16;
            y[j] = (float)x0 * d;
            y[j + 16] = (float)x1 * d;
        }
    }
}

static void deq_q5_1(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 24, y += 32) {
        const float d = ld_half(x), m = ld_half(x + 2);
        const uint32_t qh = mmp__rd_u32(x + 4);
        const uint8_t *qs = x + 8;
        for (int j = 0; j < 16; j++) {
            const uint8_t xh_0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh_1 = (uint8_t)(((qh >> (j + 12))) & 0x10);
            const int x0 = (qs[j] & 0x0F) | xh_0;
            const int x1 = (qs[j] >> 4) | xh_1;
            const float p0 = (float)x0 * d;
            const float p1 = (float)x1 * d;
            y[j] = p0 + m;
            y[j + 16] = p1 + m;
        }
    }
}

static void deq_q8_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 34, y += 32) {
        const float d = ld_half(x);
        const int8_t *qs = (const int8_t *)(x + 2);
        for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
    }
}

static void deq_q2_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 84) {
        const uint8_t *scales = x, *q = x + 16;
        const float d = ld_half(x + 80), min = ld_half(x + 82);
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int h = 0; h < 2; h++) {          /* two sub-blocks of 16: q[0..15], q[16..31] */
                    const uint8_t sc = scales[is++];
                    const float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) {
                        const float p = dl * (float)((int8_t)((q[l + 16 * h] >> shift) & 3));
                        *y++ = p - ml;
                    }
                }
                shift += 2;
            }
            q += 32;
        }
    }
}

/* Q3_K's 16 6-bit scales (12 bytes) -> int8 values 0..63 (minus 32 at use), ggml's unpacking. */
void mmp__q3k_unpack_scales(const uint8_t *packed, int8_t out[16]) {
    const uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu;
    uint32_t aux[4];
    memcpy(aux, packed, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    memcpy(out, aux, 16);
}

static void deq_q3_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 110) {
        const uint8_t *hm = x, *q = x + 32;
        const float d_all = ld_half(x + 108);
        int8_t scales[16];
        mmp__q3k_unpack_scales(x + 96, scales);
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int h = 0; h < 2; h++) {
                    const float dl = d_all * (float)(scales[is++] - 32);
                    for (int l = 0; l < 16; l++) {
                        const int v = (int8_t)((q[l + 16 * h] >> shift) & 3) - ((hm[l + 16 * h] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
                shift += 2;
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

static void deq_q4_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 144) {
        const float d = ld_half(x), min = ld_half(x + 2);
        const uint8_t *scales = x + 4, *q = x + 16;
        int is = 0;
        for (int j = 0; j < 256; j += 64) {
            uint8_t sc, m;
            mmp__get_scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            mmp__get_scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++) { const float p = d1 * (float)(q[l] & 0xF); *y++ = p - m1; }
            for (int l = 0; l < 32; l++) { const float p = d2 * (float)(q[l] >> 4); *y++ = p - m2; }
            q += 32;
            is += 2;
        }
    }
}

static void deq_q5_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 176) {
        const float d = ld_half(x), min = ld_half(x + 2);
        const uint8_t *scales = x + 4, *qh = x + 16, *ql = x + 48;
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 256; j += 64) {
            uint8_t sc, m;
            mmp__get_scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            mmp__get_scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++) {
                const float p = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0));
                *y++ = p - m1;
            }
            for (int l = 0; l < 32; l++) {
                const float p = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0));
                *y++ = p - m2;
            }
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static void deq_q6_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 210) {
        const float d = ld_half(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int8_t q1 = (int8_t)((int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                const int8_t q2 = (int8_t)((int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                const int8_t q3 = (int8_t)((int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                const int8_t q4 = (int8_t)((int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* Shared argument checks: type known, supported by `what`, n a multiple of the block. */
static enum mmp_status check_row(const char *what, enum mmp_type t, const void *a, const void *b, int64_t n,
                                 const mmp_type_traits **out) {
    const mmp_type_traits *tr = mmp_type_get_traits((int)t);
    if (!tr) return mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown type id %d", what, (int)t);
    if (n < 0 || n % tr->blck_size != 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: n = %lld is not a non-negative multiple of the %s block size %lld",
                          what, (long long)n, tr->name, (long long)tr->blck_size);
    if (n > 0 && (!a || !b)) return mmp__error(MMP_ERR_INVALID_ARG, "%s: NULL buffer for %lld elements", what, (long long)n);
    *out = tr;
    return MMP_OK;
}

enum mmp_status mmp__dequantize_row_ref(enum mmp_type t, const void *src, float *dst, int64_t n) {
    const mmp_type_traits *tr;
    enum mmp_status st = check_row("dequantize_row", t, src, dst, n, &tr);
    if (st != MMP_OK) return st;
    const uint8_t *s = (const uint8_t *)src;
    const int64_t nb = n / tr->blck_size;
    switch (t) {
    case MMP_TYPE_F32: if (n) memcpy(dst, src, (size_t)n * 4); return MMP_OK;
    case MMP_TYPE_F16: for (int64_t i = 0; i < n; i++) dst[i] = mmp__fp16_to_fp32_ref(mmp__rd_u16(s + 2 * i)); return MMP_OK;
    case MMP_TYPE_BF16: for (int64_t i = 0; i < n; i++) dst[i] = mmp_bf16_to_fp32(mmp__rd_u16(s + 2 * i)); return MMP_OK;
    case MMP_TYPE_F64: for (int64_t i = 0; i < n; i++) { double v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; } return MMP_OK;
    case MMP_TYPE_I8: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)s[i]; return MMP_OK;
    case MMP_TYPE_U8: for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; return MMP_OK;
    case MMP_TYPE_I16: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int16_t)mmp__rd_u16(s + 2 * i); return MMP_OK;
    case MMP_TYPE_I32: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int32_t)mmp__rd_u32(s + 4 * i); return MMP_OK;
    case MMP_TYPE_I64: for (int64_t i = 0; i < n; i++) { int64_t v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; } return MMP_OK;
    case MMP_TYPE_Q4_0: deq_q4_0(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q4_1: deq_q4_1(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q5_0: deq_q5_0(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q5_1: deq_q5_1(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q8_0: deq_q8_0(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q2_K: deq_q2_k(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q3_K: deq_q3_k(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q4_K: deq_q4_k(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q5_K: deq_q5_k(s, dst, nb); return MMP_OK;
    case MMP_TYPE_Q6_K: deq_q6_k(s, dst, nb); return MMP_OK;
    default: break;
    }
    return mmp__error(MMP_ERR_UNSUPPORTED, "dequantize_row: type %s has no dequantization", tr->name);
}

enum mmp_status mmp_dequantize_row(enum mmp_type t, const void *src, float *dst, int64_t n) {
    /* F16 takes the vector conversion (bit-identical: both are exact); the rest is the reference,
     * which the compiler vectorizes well enough for a load-time conversion. */
    if (t == MMP_TYPE_F16 && n > 0 && src && dst) {
        mmp__fp16_to_fp32_row((const uint16_t *)src, dst, n);
        return MMP_OK;
    }
    return mmp__dequantize_row_ref(t, src, dst, n);
}

/* ------------------------------------------------------------------------------------------ */
/* quantization (ggml's quantize_row_*_ref)                                                     */

static inline void st_half(uint8_t *p, float f) { mmp__wr_u16(p, mmp_fp32_to_fp16(f)); }

static void q_q4_0(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float v = x[j];
            if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(y, d);
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id, x1 = x[16 + j] * id;
            const uint8_t xi0 = (uint8_t)MMP_MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t xi1 = (uint8_t)MMP_MIN(15, (int8_t)(x1 + 8.5f));
            y[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void q_q4_1(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, y += 20) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(y, d);
        st_half(y + 2, min);
        for (int j = 0; j < 16; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            const uint8_t xi0 = (uint8_t)MMP_MIN(15, (int8_t)(x0 + 0.5f));
            const uint8_t xi1 = (uint8_t)MMP_MIN(15, (int8_t)(x1 + 0.5f));
            y[4 + j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void q_q5_0(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, y += 22) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float v = x[j];
            if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(y, d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id, x1 = x[16 + j] * id;
            const uint8_t xi0 = (uint8_t)MMP_MIN(31, (int8_t)(x0 + 16.5f));
            const uint8_t xi1 = (uint8_t)MMP_MIN(31, (int8_t)(x1 + 16.5f));
            y[6 + j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
        mmp__wr_u32(y + 2, qh);
    }
}

static void q_q5_1(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, y += 24) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(y, d);
        st_half(y + 2, min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            const uint8_t xi0 = (uint8_t)(x0 + 0.5f);
            const uint8_t xi1 = (uint8_t)(x1 + 0.5f);
            y[8 + j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
        mmp__wr_u32(y + 4, qh);
    }
}

static void q_q8_0(const float *x, uint8_t *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = MMP_MAX(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(y, d);
        for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

enum mmp_status mmp_quantize_row(enum mmp_type t, const float *src, void *dst, int64_t n) {
    const mmp_type_traits *tr;
    enum mmp_status st = check_row("quantize_row", t, src, dst, n, &tr);
    if (st != MMP_OK) return st;
    if (!tr->can_quantize) return mmp__error(MMP_ERR_UNSUPPORTED, "quantize_row: cannot quantize to %s", tr->name);
    /* The block quantizers convert scaled values to small integers; a NaN or Inf would make
     * that conversion undefined, so such input is refused (plain float types accept it). */
    if (tr->is_quantized) {
        for (int64_t i = 0; i < n; i++)
            if (!(fabsf(src[i]) <= FLT_MAX))
                return mmp__error(MMP_ERR_INVALID_ARG, "quantize_row: element %lld is %g; %s needs finite values",
                                  (long long)i, (double)src[i], tr->name);
    }
    uint8_t *d = (uint8_t *)dst;
    const int64_t nb = n / tr->blck_size;
    switch (t) {
    case MMP_TYPE_F32: if (n) memcpy(dst, src, (size_t)n * 4); return MMP_OK;
    case MMP_TYPE_F16: mmp__fp32_to_fp16_row(src, (uint16_t *)dst, n); return MMP_OK;
    case MMP_TYPE_BF16: for (int64_t i = 0; i < n; i++) mmp__wr_u16(d + 2 * i, mmp_fp32_to_bf16(src[i])); return MMP_OK;
    case MMP_TYPE_Q4_0: q_q4_0(src, d, nb); return MMP_OK;
    case MMP_TYPE_Q4_1: q_q4_1(src, d, nb); return MMP_OK;
    case MMP_TYPE_Q5_0: q_q5_0(src, d, nb); return MMP_OK;
    case MMP_TYPE_Q5_1: q_q5_1(src, d, nb); return MMP_OK;
    case MMP_TYPE_Q8_0: q_q8_0(src, d, nb); return MMP_OK;
    default: break;
    }
    return mmp__error(MMP_ERR_INTERNAL, "quantize_row: %s marked quantizable but not handled", tr->name);
}
