/* Private contract between the CPU backend (graph executor, core/cpu_*.c) and the dot-product
 * and quantization kernels (core/quant*.c, core/vec*.c).
 *
 * Every fast kernel here has a plain scalar reference with the same signature, and a test
 * compares the two (tests/test_quant.c, tests/test_vec.c). */
#ifndef MMP_CORE_KERNELS_H
#define MMP_CORE_KERNELS_H

#include "mmpipe/types.h"

/* dot(w_row, x): one weight row of `n` elements stored as type t (n a multiple of its block
 * size) times an f32 vector x [n]. Used by mat-vec (decode) for F32, F16, BF16 and every
 * quantized type, reading the weights in place without dequantizing them to memory. */
typedef float (*mmp_vec_dot_fn)(int64_t n, const void *w_row, const float *x);

/* Fastest available implementation (SIMD where the CPU has it) / the scalar reference.
 * NULL if the type has no dot product. */
mmp_vec_dot_fn mmp__vec_dot_fast(enum mmp_type t);
mmp_vec_dot_fn mmp__vec_dot_ref(enum mmp_type t);

/* Scalar reference dequantization (ggml's order of operations; what the fast path must equal). */
enum mmp_status mmp__dequantize_row_ref(enum mmp_type t, const void *src, float *dst, int64_t n);

/* ---- Appended by the quant/vec kernels (core/quant.c, core/vec.c) ---- */
#include <string.h>

/* Exact scalar fp16 <-> f32 (RNE; NaN made quiet, sign and top payload bits kept): the
 * references for the F16C paths behind mmp_fp16_to_fp32 / mmp_fp32_to_fp16. */
float mmp__fp16_to_fp32_ref(uint16_t h);
uint16_t mmp__fp32_to_fp16_ref(float f);
/* Row conversions, vectorized with F16C where available (bit-identical to the scalar ones).
 * Pointers need no alignment. */
void mmp__fp16_to_fp32_row(const uint16_t *src, float *dst, int64_t n);
void mmp__fp32_to_fp16_row(const float *src, uint16_t *dst, int64_t n);

/* Mat-vec over a range of weight rows: y[r] = dot(W row r, x) for r in [row_begin, row_end).
 * W: rows of `n` elements of type t, row r at (const char *)W + r * row_stride_bytes;
 * x: f32 [n]; y: f32 indexed by the absolute row number (y[row_begin] .. y[row_end-1]).
 * Bit-identical to calling mmp__vec_dot_fast row by row, but faster for the types with an
 * additive minimum (Q4_1, Q5_1, Q4_K, Q5_K on AVX-512): their sums of x per 32 elements are
 * computed once per call instead of once per row. Returns MMP_ERR_INVALID_ARG (message set)
 * for a type without a dot product, n not a multiple of the block size or a bad row range,
 * MMP_ERR_NOMEM if n > 131072 and the scratch for those sums cannot be allocated.
 * Thread-safe: split rows across threads (contiguous ranges keep each thread's stream sequential). */
enum mmp_status mmp__matvec_rows(enum mmp_type t, const void *W, size_t row_stride_bytes, int64_t n,
                                 const float *x, float *y, int64_t row_begin, int64_t row_end);

/* Little-endian unaligned loads/stores of block fields. */
static inline uint16_t mmp__rd_u16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t mmp__rd_u32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline void mmp__wr_u16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void mmp__wr_u32(void *p, uint32_t v) { memcpy(p, &v, 4); }

/* Q4_K/Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes (ggml's
 * get_scale_min_k4). */
static inline void mmp__get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}
/* Q3_K: the 16 6-bit scales (12 packed bytes) -> values 0..63 (subtract 32 at use). */
void mmp__q3k_unpack_scales(const uint8_t *packed, int8_t out[16]);

#endif
