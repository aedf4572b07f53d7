/* Private helpers for binding weights of a model file to a stage (not installed).
 *
 * mmp__weight / mmp__weight_load: the projector families (output projector, Q-Former) that take
 * F32/F16/BF16 weights only and own their f32 copies one by one.
 * mmp__weight_data: the last step of every family's bind (LLM, CLIP, Whisper): where the bytes
 * of a checked tensor come from (in place, aligned copy, or f32 conversion). */
#ifndef MMP_CORE_WEIGHTS_H
#define MMP_CORE_WEIGHTS_H

#include "mmpipe/base.h"
#include "mmpipe/gguf.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A weight as the graph will use it: in place over the mapped file when the dtype and the
 * alignment allow, else an owned f32 copy. */
typedef struct mmp__weight {
    enum mmp_type type;
    int n_dims;
    int64_t ne[4];      /* ggml order, entries past n_dims are 1 */
    void *data;
    bool owned;         /* data was malloc'ed here (free it) */
    const char *name;   /* borrowed from the modelfile */
} mmp__weight;

/* Frees an owned copy and zeroes *w (accepts a zeroed / never loaded weight). */
void mmp__weight_free(mmp__weight *w);

/* ne[0..n_dims) (ggml order) written in torch order, "[ne[n-1], ..., ne[0]]", as the
 * state_dict shows it; truncated to size. */
void mmp__shape_torch(char *buf, size_t size, int n_dims, const int64_t *ne);

/* Load tensor `name` of mf into *w, checking its shape against ne (ggml order, n_dims
 * entries; the file may add trailing 1s, e.g. query_tokens [1, n, D]). mat: F16/BF16 matrices
 * stay in place when aligned (mul_mat reads them); otherwise (vectors, unaligned) the weight
 * becomes an owned f32 copy. Only F32/F16/BF16 are accepted. Errors name path, the tensor,
 * both shapes and `why` (where the expected sizes come from); `who` names the stage
 * ("Q-Former"). */
enum mmp_status mmp__weight_load(const mmp_modelfile *mf, const char *path, const char *who, mmp__weight *w,
                                 const char *name, bool mat, int n_dims, const int64_t *ne, const char *why);

/* Allocator for owned weight memory: NULL (with the last error set) on failure. */
typedef void *(*mmp__weight_alloc_fn)(void *ctx, size_t n);

/* The data of tensor ti (its shape and type already checked; nel elements): to_f32 and not
 * stored as F32: dequantized into an f32 buffer from alloc (*type = F32); else its own type,
 * in place when the data is aligned for it (F32: 4 bytes, F16/BF16/quant blocks, which start
 * with an f16 scale: 2), an aligned copy from alloc when not. path/name name the tensor in
 * errors. */
enum mmp_status mmp__weight_data(const mmp_tensor_info *ti, int64_t nel, bool to_f32, mmp__weight_alloc_fn alloc,
                                 void *ctx, const char *path, const char *name, enum mmp_type *type, void **data);

#endif
