/* mmpipe — GGUF reader and writer (llama.cpp's model file format, versions 2 and 3).
 *
 * Layout (little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv, n_kv × {string key,
 * u32 value type, value}, n_tensors × {string name, u32 n_dims, n_dims × u64 ne, u32 ggml type,
 * u64 offset}, padding to `general.alignment` (default 32), then the data section; each
 * tensor's offset is relative to the data section and aligned. A string is u64 length + bytes
 * (no NUL). An array is u32 element type + u64 count + elements (elements may be strings or
 * arrays). Version 1 (32-bit counts) is rejected.
 *
 * Everything read from the file is validated when it is opened (counts against the bytes left,
 * string lengths, UTF-8 names, n_dims ≤ 4, ne > 0 without overflow, known ggml types, ne[0] a
 * multiple of the block size, aligned offsets, data inside the file, no overlapping tensors,
 * no duplicate keys or tensor names), so every accessor below is safe on any file that opened.
 * Tensor data is used in place (mmapped from a path, or borrowed memory).
 *
 * Threads: a reader is read-only after open; it may be shared between threads. */
#ifndef MMPIPE_GGUF_H
#define MMPIPE_GGUF_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One tensor of a model file (GGUF or safetensors), as every reader returns it.
 * Strings and `data` are borrowed: they live as long as the reader that returned the info. */
typedef struct mmp_tensor_info {
    const char *name;    /* NUL-terminated, valid UTF-8 */
    enum mmp_type type;  /* element type (a ggml type id for GGUF) */
    int n_dims;          /* 0..4 (0 only for a safetensors scalar) */
    int64_t ne[4];       /* GGML ORDER: ne[0] is the contiguous (fastest) dim, i.e. the numpy
                          * shape reversed; dims past n_dims are 1 */
    const void *data;    /* the tensor's bytes in the file (read-only, maybe unaligned for
                          * safetensors: check before using as float*) */
    size_t nbytes;       /* bytes of data */
    uint64_t offset;     /* offset of data from the start of its file */
    const char *file;    /* path (or memory name) of the file that holds the data */
} mmp_tensor_info;

/* GGUF metadata value types (values fixed by the GGUF spec). */
enum mmp_gguf_type {
    MMP_GGUF_U8 = 0, MMP_GGUF_I8 = 1, MMP_GGUF_U16 = 2, MMP_GGUF_I16 = 3,
    MMP_GGUF_U32 = 4, MMP_GGUF_I32 = 5, MMP_GGUF_F32 = 6, MMP_GGUF_BOOL = 7,
    MMP_GGUF_STRING = 8, MMP_GGUF_ARRAY = 9, MMP_GGUF_U64 = 10, MMP_GGUF_I64 = 11,
    MMP_GGUF_F64 = 12,
    MMP_GGUF_TYPE_COUNT = 13
};
/* "u8", "string", "array", ... ("unknown" for other values). */
MMP_API const char *mmp_gguf_type_name(int t);

/* Sane limits (files beyond them are rejected with MMP_ERR_LIMIT/FORMAT). */
#define MMP_GGUF_MAX_NAME      256        /* tensor name bytes (ggml: 64; we accept more) */
#define MMP_GGUF_MAX_KEY       65535      /* key bytes */
#define MMP_GGUF_MAX_DEPTH     8          /* nested array depth */
#define MMP_GGUF_MAX_ALIGNMENT (1u << 20) /* general.alignment upper bound */

typedef struct mmp_gguf mmp_gguf;
typedef struct mmp_gguf_value mmp_gguf_value; /* one metadata value (scalar or array) */

/* Open and validate a GGUF file (mmapped read-only). NULL + mmp_last_error() on failure;
 * the message names the file, the field and the value. Free with mmp_gguf_free. */
MMP_API mmp_gguf *mmp_gguf_open(const char *path);
/* Same from memory: `data` is NOT copied and must stay valid and unchanged until
 * mmp_gguf_free; `name` (may be NULL) is only used in messages. */
MMP_API mmp_gguf *mmp_gguf_open_memory(const void *data, size_t size, const char *name);
/* Frees the reader and unmaps the file: every pointer it returned dies. NULL is a no-op. */
MMP_API void mmp_gguf_free(mmp_gguf *g);

MMP_API const char *mmp_gguf_path(const mmp_gguf *g);      /* path or memory name */
MMP_API uint32_t mmp_gguf_version(const mmp_gguf *g);      /* 2 or 3 */
MMP_API uint32_t mmp_gguf_alignment(const mmp_gguf *g);    /* general.alignment or 32 */
MMP_API uint64_t mmp_gguf_data_offset(const mmp_gguf *g);  /* file offset of the data section */
MMP_API uint64_t mmp_gguf_file_size(const mmp_gguf *g);

/* ---- metadata ---- */
MMP_API int64_t mmp_gguf_n_kv(const mmp_gguf *g);
/* Key / value of the i-th pair (file order), 0 <= i < n_kv; NULL for a bad index. */
MMP_API const char *mmp_gguf_kv_key(const mmp_gguf *g, int64_t i);
MMP_API const mmp_gguf_value *mmp_gguf_kv_value(const mmp_gguf *g, int64_t i);
/* Index of a key, or -1 (no error set). Hash lookup. */
MMP_API int64_t mmp_gguf_find_kv(const mmp_gguf *g, const char *key);
MMP_API bool mmp_gguf_has(const mmp_gguf *g, const char *key);
/* The value of a key, or NULL + MMP_ERR_NOT_FOUND message naming file and key. */
MMP_API const mmp_gguf_value *mmp_gguf_get(const mmp_gguf *g, const char *key);

/* Typed getters by key. MMP_ERR_NOT_FOUND if absent; MMP_ERR_FORMAT if the value has another
 * type or does not fit (message names file, key, found type and value). Integer getters
 * accept any integer type (and bool) whose value fits; float getters accept f32/f64 and any
 * integer. Strings are NUL-terminated copies that live as long as the reader (a string that
 * contains a NUL byte reads as cut there; use mmp_gguf_value_str for the length). */
MMP_API enum mmp_status mmp_gguf_get_u32(const mmp_gguf *g, const char *key, uint32_t *out);
MMP_API enum mmp_status mmp_gguf_get_i32(const mmp_gguf *g, const char *key, int32_t *out);
MMP_API enum mmp_status mmp_gguf_get_u64(const mmp_gguf *g, const char *key, uint64_t *out);
MMP_API enum mmp_status mmp_gguf_get_i64(const mmp_gguf *g, const char *key, int64_t *out);
MMP_API enum mmp_status mmp_gguf_get_f32(const mmp_gguf *g, const char *key, float *out);
MMP_API enum mmp_status mmp_gguf_get_f64(const mmp_gguf *g, const char *key, double *out);
MMP_API enum mmp_status mmp_gguf_get_bool(const mmp_gguf *g, const char *key, bool *out);
MMP_API enum mmp_status mmp_gguf_get_str(const mmp_gguf *g, const char *key, const char **out);
/* An array value: *out gets it (use the mmp_gguf_arr_* calls). FORMAT if not an array. */
MMP_API enum mmp_status mmp_gguf_get_arr(const mmp_gguf *g, const char *key, const mmp_gguf_value **out);

/* ---- values (borrowed from the reader) ---- */
MMP_API enum mmp_gguf_type mmp_gguf_value_type(const mmp_gguf_value *v);
/* Scalars (same conversion rules as the keyed getters; messages name the value's key). */
MMP_API enum mmp_status mmp_gguf_value_i64(const mmp_gguf_value *v, int64_t *out);
MMP_API enum mmp_status mmp_gguf_value_u64(const mmp_gguf_value *v, uint64_t *out);
MMP_API enum mmp_status mmp_gguf_value_f64(const mmp_gguf_value *v, double *out);
MMP_API enum mmp_status mmp_gguf_value_bool(const mmp_gguf_value *v, bool *out);
/* String: NUL-terminated copy; *len (may be NULL) gets the byte length. */
MMP_API enum mmp_status mmp_gguf_value_str(const mmp_gguf_value *v, const char **out, size_t *len);

/* Arrays. n: element count (0 for a non-array); elem type: MMP_GGUF_TYPE_COUNT for a
 * non-array. Element access returns MMP_ERR_INVALID_ARG for an index out of range and
 * MMP_ERR_FORMAT for a type that does not convert. */
MMP_API uint64_t mmp_gguf_arr_n(const mmp_gguf_value *v);
MMP_API enum mmp_gguf_type mmp_gguf_arr_type(const mmp_gguf_value *v);
/* Raw little-endian elements of an array of a fixed-size type (not string/array), e.g. the
 * f32 token scores; NULL otherwise. Lives as long as the reader. May be unaligned. */
MMP_API const void *mmp_gguf_arr_data(const mmp_gguf_value *v);
MMP_API enum mmp_status mmp_gguf_arr_i64(const mmp_gguf_value *v, uint64_t i, int64_t *out);
MMP_API enum mmp_status mmp_gguf_arr_f64(const mmp_gguf_value *v, uint64_t i, double *out);
/* String element i: pointer INTO THE FILE (not NUL-terminated; may contain NUL bytes) and
 * its byte length. Lives as long as the reader. */
MMP_API enum mmp_status mmp_gguf_arr_str(const mmp_gguf_value *v, uint64_t i, const char **out, size_t *len);
/* Nested array element i (an mmp_gguf_value of type ARRAY). */
MMP_API enum mmp_status mmp_gguf_arr_arr(const mmp_gguf_value *v, uint64_t i, const mmp_gguf_value **out);

/* ---- tensors ---- */
MMP_API int64_t mmp_gguf_n_tensors(const mmp_gguf *g);
/* i-th tensor in file order; NULL for a bad index. */
MMP_API const mmp_tensor_info *mmp_gguf_tensor(const mmp_gguf *g, int64_t i);
/* Tensor by name (hash lookup), or NULL + MMP_ERR_NOT_FOUND message. */
MMP_API const mmp_tensor_info *mmp_gguf_find_tensor(const mmp_gguf *g, const char *name);

/* ---- writer ----
 * Collects metadata and tensors, then writes a GGUF v3 file. Keys and tensor names are
 * copied. Tensor DATA is borrowed (big weights are not duplicated): it must stay valid until
 * the write call. Errors: duplicate key/name, bad name, unknown type, shape not a multiple
 * of the block size. */
typedef struct mmp_gguf_writer mmp_gguf_writer;
MMP_API mmp_gguf_writer *mmp_gguf_writer_new(void);
MMP_API void mmp_gguf_writer_free(mmp_gguf_writer *w);
/* Power of two >= 1 (default 32); also written as general.alignment (u32) when not 32. */
MMP_API enum mmp_status mmp_gguf_writer_set_alignment(mmp_gguf_writer *w, uint32_t alignment);
/* Version written in the header (default 3; 2 is allowed: same layout). */
MMP_API enum mmp_status mmp_gguf_writer_set_version(mmp_gguf_writer *w, uint32_t version);
MMP_API enum mmp_status mmp_gguf_writer_add_u8(mmp_gguf_writer *w, const char *key, uint8_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_i8(mmp_gguf_writer *w, const char *key, int8_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_u16(mmp_gguf_writer *w, const char *key, uint16_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_i16(mmp_gguf_writer *w, const char *key, int16_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_u32(mmp_gguf_writer *w, const char *key, uint32_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_i32(mmp_gguf_writer *w, const char *key, int32_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_u64(mmp_gguf_writer *w, const char *key, uint64_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_i64(mmp_gguf_writer *w, const char *key, int64_t v);
MMP_API enum mmp_status mmp_gguf_writer_add_f32(mmp_gguf_writer *w, const char *key, float v);
MMP_API enum mmp_status mmp_gguf_writer_add_f64(mmp_gguf_writer *w, const char *key, double v);
MMP_API enum mmp_status mmp_gguf_writer_add_bool(mmp_gguf_writer *w, const char *key, bool v);
MMP_API enum mmp_status mmp_gguf_writer_add_str(mmp_gguf_writer *w, const char *key, const char *v);
/* Array of a fixed-size type: n elements of `elem` packed little-endian at `data` (copied). */
MMP_API enum mmp_status mmp_gguf_writer_add_arr(mmp_gguf_writer *w, const char *key, enum mmp_gguf_type elem,
                                                const void *data, uint64_t n);
/* Array of n NUL-terminated strings (copied). */
MMP_API enum mmp_status mmp_gguf_writer_add_arr_str(mmp_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Any value given as its already-encoded payload bytes (what follows the u32 type in the
 * file), e.g. nested arrays. Not validated: meant for converters that copy values and for
 * tests that craft hostile files. */
MMP_API enum mmp_status mmp_gguf_writer_add_raw(mmp_gguf_writer *w, const char *key, enum mmp_gguf_type type,
                                                const void *payload, size_t size);
/* A tensor: ne in GGML order (ne[0] contiguous), n_dims 1..4; data holds
 * mmp_row_size(type, ne[0]) * ne[1] * ne[2] * ne[3] bytes (borrowed until the write). */
MMP_API enum mmp_status mmp_gguf_writer_add_tensor(mmp_gguf_writer *w, const char *name, enum mmp_type type,
                                                   int n_dims, const int64_t *ne, const void *data);
/* Write the file (atomic: a temp file renamed over `path`). */
MMP_API enum mmp_status mmp_gguf_writer_write(mmp_gguf_writer *w, const char *path);
/* Write to a new malloc'ed buffer (*out, *len; the caller free()s it). */
MMP_API enum mmp_status mmp_gguf_writer_write_memory(mmp_gguf_writer *w, void **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
