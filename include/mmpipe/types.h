/* mmpipe — element types: plain floats and ints, and the GGUF/ggml block-quantized types.
 *
 * The numeric values of the types that ggml also has are ggml's own type ids (so a GGUF
 * tensor-info type field maps 1:1); they are fixed forever. Quantized types store blocks of
 * `blck_size` elements in `type_size` bytes; a row of ne0 elements (ne0 a multiple of the
 * block size) takes mmp_row_size(t, ne0) bytes. Dequantization reproduces ggml's to_float
 * bit for bit. */
#ifndef MMPIPE_TYPES_H
#define MMPIPE_TYPES_H

#include "mmpipe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mmp_type {
    MMP_TYPE_F32  = 0,
    MMP_TYPE_F16  = 1,
    MMP_TYPE_Q4_0 = 2,
    MMP_TYPE_Q4_1 = 3,
    /* 4, 5: removed Q4_2/Q4_3 in ggml, never used */
    MMP_TYPE_Q5_0 = 6,
    MMP_TYPE_Q5_1 = 7,
    MMP_TYPE_Q8_0 = 8,
    MMP_TYPE_Q8_1 = 9,
    MMP_TYPE_Q2_K = 10,
    MMP_TYPE_Q3_K = 11,
    MMP_TYPE_Q4_K = 12,
    MMP_TYPE_Q5_K = 13,
    MMP_TYPE_Q6_K = 14,
    MMP_TYPE_Q8_K = 15,
    MMP_TYPE_I8   = 24,
    MMP_TYPE_I16  = 25,
    MMP_TYPE_I32  = 26,
    MMP_TYPE_I64  = 27,
    MMP_TYPE_F64  = 28,
    MMP_TYPE_BF16 = 30,
    MMP_TYPE_U8   = 40,   /* not a ggml type: safetensors U8 (and BOOL) */
    MMP_TYPE_COUNT = 41   /* one past the largest value; not every value below is a type */
};

typedef struct mmp_type_traits {
    const char *name;      /* "f32", "q4_K", ... as ggml spells them */
    int64_t blck_size;     /* elements per block (1 for plain types) */
    size_t type_size;      /* bytes per block */
    bool is_quantized;
    bool can_quantize;     /* mmp_quantize_row supports it */
} mmp_type_traits;

/* Traits of a type, or NULL if `t` is not a known type (e.g. a value read from a file). */
MMP_API const mmp_type_traits *mmp_type_get_traits(int t);
/* Name of a type, or "unknown" for a value that is not one. */
MMP_API const char *mmp_type_name(int t);
/* Type by name ("q8_0", "F16", case-insensitive); -1 if none. */
MMP_API int mmp_type_from_name(const char *name);
/* Bytes of a row of ne0 elements; 0 if ne0 is not a multiple of the block size or t unknown. */
MMP_API size_t mmp_row_size(enum mmp_type t, int64_t ne0);

/* Row conversion. `n` must be a multiple of the type's block size.
 * dequantize: F32/F16/BF16/F64/I* and every quantized type except Q8_1/Q8_K -> f32.
 * quantize: f32 -> F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (round-to-nearest as ggml's
 * reference quantizers). */
MMP_API enum mmp_status mmp_dequantize_row(enum mmp_type t, const void *src, float *dst, int64_t n);
MMP_API enum mmp_status mmp_quantize_row(enum mmp_type t, const float *src, void *dst, int64_t n);

/* IEEE half and bfloat16 conversions (round to nearest even, NaN preserved). */
MMP_API float mmp_fp16_to_fp32(uint16_t h);
MMP_API uint16_t mmp_fp32_to_fp16(float f);
MMP_API float mmp_bf16_to_fp32(uint16_t h);
MMP_API uint16_t mmp_fp32_to_bf16(float f);

#ifdef __cplusplus
}
#endif
#endif
