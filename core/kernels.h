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

#endif
