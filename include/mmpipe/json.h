/* mmpipe — a small typed reader for JSON config files (HF config.json, generation_config.json,
 * model_index.json, diffusers component configs).
 *
 * Paths: dotted keys with optional array indices: "hidden_size", "text_config.hidden_size",
 * "rope_parameters.rope_theta", "architectures[0]", "" (the root). A backslash makes the next
 * character part of the key: "hparams.attention\\.head_count" (C string "attention\\\\.head_count")
 * is the key "attention.head_count" inside "hparams"; keys are at most 255 bytes.
 *
 * Errors name the file (or the name given to mmp_json_parse), the path and what was found:
 * "config.json: 'hidden_size' is a string (\"64\"), expected an integer". Parsing limits:
 * MMP_JSON_MAX_SIZE bytes and MMP_JSON_MAX_DEPTH nesting levels. */
#ifndef MMPIPE_JSON_H
#define MMPIPE_JSON_H

#include "mmpipe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_JSON_MAX_SIZE  (64u * 1024u * 1024u)
#define MMP_JSON_MAX_DEPTH 64

typedef struct mmp_json mmp_json;

/* Read and parse a JSON file. NULL + message on error (I/O, empty, too big, malformed with the
 * line and column, too deep). Free with mmp_json_free. */
MMP_API mmp_json *mmp_json_open(const char *path);
/* Parse `len` bytes of `text` (no NUL needed; copied). `name` names it in messages. */
MMP_API mmp_json *mmp_json_parse(const char *text, size_t len, const char *name);
MMP_API void mmp_json_free(mmp_json *j);
MMP_API const char *mmp_json_name(const mmp_json *j);

/* Kinds of values (what a path points at). */
enum mmp_json_kind {
    MMP_JSON_MISSING = 0, MMP_JSON_NULL = 1, MMP_JSON_BOOL = 2, MMP_JSON_NUMBER = 3,
    MMP_JSON_STRING = 4, MMP_JSON_ARRAY = 5, MMP_JSON_OBJECT = 6, MMP_JSON_KIND_COUNT = 7
};
MMP_API enum mmp_json_kind mmp_json_kind_of(const mmp_json *j, const char *path);
/* True if the path exists and is not JSON null (HF writes "key": null for "unset"). */
MMP_API bool mmp_json_has(const mmp_json *j, const char *path);

/* Typed getters. MMP_ERR_NOT_FOUND if the path is missing or null; MMP_ERR_FORMAT if the type
 * differs (an int getter rejects 1.5 and numbers beyond int64; bool accepts only true/false).
 * Strings live as long as the reader. */
MMP_API enum mmp_status mmp_json_get_int(const mmp_json *j, const char *path, int64_t *out);
MMP_API enum mmp_status mmp_json_get_float(const mmp_json *j, const char *path, double *out);
MMP_API enum mmp_status mmp_json_get_bool(const mmp_json *j, const char *path, bool *out);
MMP_API enum mmp_status mmp_json_get_string(const mmp_json *j, const char *path, const char **out);

/* Alternatives: the first of the NULL-terminated list of paths that exists (not null) is
 * read; NOT_FOUND (naming all of them) if none does. Example:
 *   mmp_json_get_float_alt(cfg, &theta, "rope_theta", "rope_parameters.rope_theta", NULL); */
#if defined(__GNUC__)
#define MMP_SENTINEL __attribute__((sentinel))
#else
#define MMP_SENTINEL
#endif
MMP_API enum mmp_status mmp_json_get_int_alt(const mmp_json *j, int64_t *out, ...) MMP_SENTINEL;
MMP_API enum mmp_status mmp_json_get_float_alt(const mmp_json *j, double *out, ...) MMP_SENTINEL;
MMP_API enum mmp_status mmp_json_get_bool_alt(const mmp_json *j, bool *out, ...) MMP_SENTINEL;
MMP_API enum mmp_status mmp_json_get_string_alt(const mmp_json *j, const char **out, ...) MMP_SENTINEL;

/* Arrays: length (FORMAT if not an array) and typed elements (INVALID_ARG out of range). */
MMP_API enum mmp_status mmp_json_array_len(const mmp_json *j, const char *path, int64_t *n);
MMP_API enum mmp_status mmp_json_array_int(const mmp_json *j, const char *path, int64_t i, int64_t *out);
MMP_API enum mmp_status mmp_json_array_float(const mmp_json *j, const char *path, int64_t i, double *out);
MMP_API enum mmp_status mmp_json_array_string(const mmp_json *j, const char *path, int64_t i, const char **out);

/* Objects: member count and the i-th key in file order ("" = root). */
MMP_API enum mmp_status mmp_json_object_len(const mmp_json *j, const char *path, int64_t *n);
MMP_API enum mmp_status mmp_json_object_key(const mmp_json *j, const char *path, int64_t i, const char **out);

#ifdef __cplusplus
}
#endif
#endif
