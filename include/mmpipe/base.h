/* mmpipe — base definitions: export macros, version, status codes, errors, callbacks.
 *
 * Errors: functions that can fail return an `enum mmp_status` (0 = ok, negative = error) or a
 * pointer that is NULL on failure. Either way a human-readable message that names the file,
 * the field and the offending value is stored per thread and read with mmp_last_error().
 * The library never calls exit() or abort() on bad input. */
#ifndef MMPIPE_BASE_H
#define MMPIPE_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "mmpipe/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MMP_BUILD) && defined(__GNUC__)
#define MMP_API __attribute__((visibility("default")))
#else
#define MMP_API
#endif

#if defined(__GNUC__)
#define MMP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MMP_PRINTF(f, a)
#endif

/* "0.1.0": the version of the library actually linked (may differ from MMP_VERSION_STRING). */
MMP_API const char *mmp_version(void);

/* Status codes. Values are fixed forever; new ones are added before MMP_STATUS_COUNT. */
enum mmp_status {
    MMP_OK              =  0,
    MMP_ERR_INVALID_ARG = -1,  /* a caller passed something impossible */
    MMP_ERR_IO          = -2,  /* open/read/mmap failed (missing file, directory, permissions) */
    MMP_ERR_FORMAT      = -3,  /* a file is malformed: bad magic, truncated, offsets past the end */
    MMP_ERR_UNSUPPORTED = -4,  /* well-formed but not supported: unknown dtype, architecture, version */
    MMP_ERR_NOMEM       = -5,  /* allocation failed or a size exceeds sane limits */
    MMP_ERR_SHAPE       = -6,  /* tensor shapes or types do not fit together */
    MMP_ERR_NOT_FOUND   = -7,  /* a named tensor, key, port or stage kind does not exist */
    MMP_ERR_ABORTED     = -8,  /* the abort callback asked to stop */
    MMP_ERR_INTERNAL    = -9,  /* a bug in mmpipe: please report it */
    MMP_ERR_LIMIT       = -10, /* a run-time limit was hit (context length, image size) */
    MMP_STATUS_COUNT    = 11   /* number of codes (codes are 0 .. -(COUNT-1)) */
};

/* Short constant name of a status, e.g. "format error". Never NULL. */
MMP_API const char *mmp_status_str(enum mmp_status s);

/* The message of the last error on this thread ("" if none). Valid until the next mmpipe
 * call on this thread that fails. */
MMP_API const char *mmp_last_error(void);
MMP_API void mmp_clear_error(void);

/* Progress: `done` out of `total` units of `what` ("tokens", "steps", ...).
 * Abort: return true to stop; the running call then returns MMP_ERR_ABORTED. */
typedef void (*mmp_progress_fn)(const char *what, int64_t done, int64_t total, void *user);
typedef bool (*mmp_abort_fn)(void *user);
/* Streaming text: called with each new piece of generated text (UTF-8, not NUL-terminated,
 * possibly empty) as soon as it is decided. Return false to stop generating (the text so far
 * is kept; that is not an error). */
typedef bool (*mmp_text_fn)(const char *piece, size_t len, void *user);

/* Log levels; the library logs through a per-call sink where it takes one, never to a global. */
enum mmp_log_level { MMP_LOG_ERROR = 0, MMP_LOG_WARN = 1, MMP_LOG_INFO = 2, MMP_LOG_DEBUG = 3, MMP_LOG_LEVEL_COUNT = 4 };
typedef void (*mmp_log_fn)(enum mmp_log_level level, const char *msg, void *user);

#ifdef __cplusplus
}
#endif
#endif
