/* mmpipe — safetensors reader and writer (Hugging Face's tensor file format).
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string value", ...}}, then the data; offsets are relative to the
 * end of the header. `shape` is in numpy order (last dim contiguous); the mmp_tensor_info this
 * reader returns has ne[] in GGML order (ne[0] = the LAST numpy dim).
 *
 * dtypes: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL (BOOL and U8 map to MMP_TYPE_U8);
 * others (F8_*, U16, U32, U64, ...) are rejected with MMP_ERR_UNSUPPORTED naming the tensor.
 * Validated at open: header length ≤ 100 MB and inside the file, JSON well-formed (nesting
 * limited), every entry an object with the three fields of the right types, 0..4 dims,
 * dims ≥ 0 with no overflow, begin ≤ end ≤ data size, end − begin = elements × dtype size,
 * no two tensors overlapping. Data is mmapped and used in place (it may be unaligned: the
 * format guarantees no alignment).
 *
 * Sharded checkpoints: opening `X.safetensors.index.json` reads its "weight_map"
 * {tensor name: shard file name} and opens every shard named (relative to the index's
 * folder; names with '/' or ".." are rejected): all their tensors form one lookup. */
#ifndef MMPIPE_SAFETENSORS_H
#define MMPIPE_SAFETENSORS_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"
#include "mmpipe/gguf.h" /* mmp_tensor_info */

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_ST_MAX_HEADER (100u * 1024u * 1024u) /* the format's own limit on the JSON header */

typedef struct mmp_safetensors mmp_safetensors;

/* Open a .safetensors file, or a *.safetensors.index.json (sharded). NULL + message on error
 * (names the file, the tensor, the field and the value). Free with mmp_safetensors_free. */
MMP_API mmp_safetensors *mmp_safetensors_open(const char *path);
/* One safetensors file from memory: not copied, must outlive the reader. */
MMP_API mmp_safetensors *mmp_safetensors_open_memory(const void *data, size_t size, const char *name);
/* Frees and unmaps everything; all returned pointers die. NULL is a no-op. */
MMP_API void mmp_safetensors_free(mmp_safetensors *st);

/* Files (1 for a single file; the shards in first-mention order for an index). */
MMP_API int mmp_safetensors_n_files(const mmp_safetensors *st);
MMP_API const char *mmp_safetensors_file(const mmp_safetensors *st, int i);

/* Tensors: count, i-th (per file in header order — sorted by name as safetensors writes
 * them — files one after the other), by name (hash lookup; NULL + MMP_ERR_NOT_FOUND). */
MMP_API int64_t mmp_safetensors_n_tensors(const mmp_safetensors *st);
MMP_API const mmp_tensor_info *mmp_safetensors_tensor(const mmp_safetensors *st, int64_t i);
MMP_API const mmp_tensor_info *mmp_safetensors_find(const mmp_safetensors *st, const char *name);

/* __metadata__ string pairs (of the first file; for an index, its own "metadata" object's
 * string/number values are appended). Borrowed, live as long as the reader. */
MMP_API int64_t mmp_safetensors_n_meta(const mmp_safetensors *st);
MMP_API const char *mmp_safetensors_meta_key(const mmp_safetensors *st, int64_t i);
MMP_API const char *mmp_safetensors_meta_value(const mmp_safetensors *st, int64_t i);
/* Value of a metadata key, or NULL (no error set). */
MMP_API const char *mmp_safetensors_meta(const mmp_safetensors *st, const char *key);

/* safetensors dtype name of a type ("F32", ...) or NULL if it has none (quantized types). */
MMP_API const char *mmp_safetensors_dtype_name(enum mmp_type t);

/* ---- writer ----
 * Tensors and metadata are COPIED when added (outputs and logits are small), so the caller
 * may free its buffers right away. Writes tensors in the order added, data 8-byte aligned
 * (header padded with spaces as the reference implementation does). */
typedef struct mmp_safetensors_writer mmp_safetensors_writer;
MMP_API mmp_safetensors_writer *mmp_safetensors_writer_new(void);
MMP_API void mmp_safetensors_writer_free(mmp_safetensors_writer *w);
/* A "__metadata__" string pair (copied). Duplicate keys are an error. */
MMP_API enum mmp_status mmp_safetensors_writer_add_meta(mmp_safetensors_writer *w, const char *key, const char *value);
/* A tensor of type F32/F16/BF16/F64/I64/I32/I16/I8/U8 with `shape` in NUMPY order
 * (shape[n_dims-1] contiguous), 0 <= n_dims <= 4. Copies the bytes. */
MMP_API enum mmp_status mmp_safetensors_writer_add(mmp_safetensors_writer *w, const char *name, enum mmp_type type,
                                                   int n_dims, const int64_t *shape, const void *data);
/* Same with ne in GGML order (ne[0] contiguous), as mmp_tensor_info and the op graph use. */
MMP_API enum mmp_status mmp_safetensors_writer_add_ne(mmp_safetensors_writer *w, const char *name, enum mmp_type type,
                                                      int n_dims, const int64_t *ne, const void *data);
MMP_API enum mmp_status mmp_safetensors_writer_write(mmp_safetensors_writer *w, const char *path);
MMP_API enum mmp_status mmp_safetensors_writer_write_memory(mmp_safetensors_writer *w, void **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
