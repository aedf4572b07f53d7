/* Shared helpers for the cmocka tests. */
#ifndef MMP_TESTUTIL_H
#define MMP_TESTUTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mmpipe/mmpipe.h"

/* ‖a − b‖₂ / ‖b‖₂ (b is the reference); returns 0 when both are all zero. */
double mmpt_rel_l2(const float *a, const float *b, size_t n);
double mmpt_max_abs(const float *a, const float *b, size_t n);
/* Deterministic uniform random floats in [lo, hi) from a seed (xorshift). */
void mmpt_rand_fill(float *x, size_t n, uint64_t seed, float lo, float hi);
/* Path inside tests/data: static buffer per call slot (rotating, 8 slots). */
const char *mmpt_data(const char *rel);
/* Read a whole file; NULL if missing. *len gets the size. Caller frees. */
void *mmpt_read_file(const char *path, size_t *len);
/* Write bytes to a fresh temporary file (under $TMPDIR); returns its path (caller frees). */
char *mmpt_write_temp(const void *data, size_t len, const char *suffix);

#define MMPT_ASSERT_REL_LE(a, b, n, tol) do { \
    double _e = mmpt_rel_l2((a), (b), (n)); \
    if (!(_e <= (tol))) fail_msg("relative L2 error %.3g > %.3g (%s:%d)", _e, (double)(tol), __FILE__, __LINE__); \
} while (0)

#endif
