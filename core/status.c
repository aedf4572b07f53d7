/* Status codes and the per-thread last-error message. */
#include "mmpipe/base.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char tl_error[1024];

const char *mmp_version(void) { return MMP_VERSION_STRING; }

const char *mmp_status_str(enum mmp_status s) {
    switch (s) {
    case MMP_OK: return "ok";
    case MMP_ERR_INVALID_ARG: return "invalid argument";
    case MMP_ERR_IO: return "I/O error";
    case MMP_ERR_FORMAT: return "format error";
    case MMP_ERR_UNSUPPORTED: return "unsupported";
    case MMP_ERR_NOMEM: return "out of memory";
    case MMP_ERR_SHAPE: return "shape mismatch";
    case MMP_ERR_NOT_FOUND: return "not found";
    case MMP_ERR_ABORTED: return "aborted";
    case MMP_ERR_INTERNAL: return "internal error";
    case MMP_ERR_LIMIT: return "limit exceeded";
    case MMP_STATUS_COUNT: break;
    }
    return "unknown status";
}

const char *mmp_last_error(void) { return tl_error; }
void mmp_clear_error(void) { tl_error[0] = 0; }

enum mmp_status mmp__error(enum mmp_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_error, sizeof tl_error, fmt, ap);
    va_end(ap);
    return s;
}

void *mmp__error_null(enum mmp_status s, const char *fmt, ...) {
    (void)s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_error, sizeof tl_error, fmt, ap);
    va_end(ap);
    return NULL;
}

/* Prefix the current message with more context: "file.gguf: " + old message. */
void mmp__error_prefix(const char *fmt, ...) {
    char pre[512], old[sizeof tl_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, tl_error, sizeof old);
    snprintf(tl_error, sizeof tl_error, "%s%s", pre, old);
}

void *mmp__malloc(size_t n) {
    if (n == 0) n = 1;
    void *p = malloc(n);
    if (!p) mmp__error(MMP_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *mmp__calloc(size_t count, size_t size) {
    if (count && size > SIZE_MAX / count) {
        mmp__error(MMP_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) mmp__error(MMP_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

char *mmp__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = mmp__malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
