/* Private helpers shared by the whole library (not installed). */
#ifndef MMP_CORE_UTIL_H
#define MMP_CORE_UTIL_H

#include "mmpipe/base.h"
#include <stdio.h>
#include <stdlib.h>

/* Set the thread's last error (printf-style) and return the status / NULL. */
enum mmp_status mmp__error(enum mmp_status s, const char *fmt, ...) MMP_PRINTF(2, 3);
void *mmp__error_null(enum mmp_status s, const char *fmt, ...) MMP_PRINTF(2, 3);
void mmp__error_prefix(const char *fmt, ...) MMP_PRINTF(1, 2);

/* Allocation that sets the last error on failure (and checks count*size for overflow). */
void *mmp__malloc(size_t n);
void *mmp__calloc(size_t count, size_t size);
char *mmp__strdup(const char *s);

/* Programmer errors only (never bad input): prints and aborts. */
#define MMP_ASSERT(x) do { if (!(x)) { fprintf(stderr, "mmpipe: %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x); abort(); } } while (0)

#define MMP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MMP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MMP_UNUSED(x) (void)(x)

/* Checked arithmetic for sizes read from files: false on overflow. */
static inline bool mmp__mul_ok(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool mmp__add_ok(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }

#endif
