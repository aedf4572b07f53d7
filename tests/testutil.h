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

/* Tensors of a reference io file (io.safetensors from the goldens), as malloc'ed copies the
 * caller frees; a missing tensor or another element type fails the test. *n (may be NULL)
 * gets the element count (product of ne). _f32: F32 tensor. _ids: I64 tensor narrowed to
 * int32 (token ids). _mf_f32: the same as _f32 through an mmp_modelfile. */
float *mmpt_st_f32(const mmp_safetensors *st, const char *name, int64_t *n);
int32_t *mmpt_st_ids(const mmp_safetensors *st, const char *name, int64_t *n);
float *mmpt_mf_f32(const mmp_modelfile *mf, const char *name, int64_t *n);
/* Index of the first maximum of x[0..n). */
int mmpt_argmax(const float *x, int n);

/* Run the built CLI (MMP_CLI_PATH) as `cd CWD && mmpipe ARGS </dev/null` (CWD NULL: stay in
 * the current folder), ARGS a printf-formatted shell fragment. out != NULL: *out gets stdout
 * (malloc'ed, NUL-terminated; caller frees) and *out_len (may be NULL) its length; out == NULL:
 * stdout is read and dropped. err != NULL: stderr goes into err[err_cap] (truncated,
 * NUL-terminated); err == NULL: stderr is merged into stdout (2>&1). Returns the exit code,
 * -1 when the process did not exit normally. */
int mmpt_run_cli(const char *cwd, char **out, size_t *out_len, char *err, size_t err_cap,
                 const char *fmt, ...) MMP_PRINTF(6, 7);

/* Print mmp_last_error() ("  error: ...") and fail unless it contains every string of the
 * NULL-terminated list needles. */
void mmpt_expect_error_mentions(const char *const *needles);

/* tests/data/gen/schedulers/case.json (the diffusers scheduler configs of golden `schedulers`)
 * parsed, with Python's -Infinity (not JSON) turned into null (= not clipped, the default).
 * Fails the test if it cannot be read or parsed; caller frees with mmp_json_free. */
mmp_json *mmpt_sched_case_json(void);

/* A fresh folder "$TMPDIR/mmpt-TAG-XXXXXX" (malloc'ed path; fails the test if it cannot be made). */
char *mmpt_make_temp_dir(const char *tag);
/* Remove DIR/model.safetensors, DIR/config.json and the (then empty) folder DIR; frees dir. */
void mmpt_rm_model_dir(char *dir);
/* Write text to DIR/NAME (fails the test if the file cannot be opened). */
void mmpt_write_text(const char *dir, const char *name, const char *text);

/* `mmpipe stage ARGS -o OUT` as a user runs it (system(), from the current folder); fails the
 * test unless it exits 0 and OUT holds exactly one F32 tensor of n elements (ne[0] * ne[1]);
 * returns that tensor's relative L2 error against ref. */
double mmpt_cli_stage_rel_l2(const char *args, const float *ref, size_t n);

#define MMPT_ASSERT_REL_LE(a, b, n, tol) do { \
    double _e = mmpt_rel_l2((a), (b), (n)); \
    if (!(_e <= (tol))) fail_msg("relative L2 error %.3g > %.3g (%s:%d)", _e, (double)(tol), __FILE__, __LINE__); \
} while (0)

/* A golden tensor as an array: shape outermost first, F32 kept, I64 ids narrowed to I32 (want
 * MMP_TYPE_F32 / MMP_TYPE_I32). Fails the test if it is missing or of another type. */
mmp_array *mmpt_golden_array(const mmp_safetensors *st, const char *name, enum mmp_type want);

/* tests/testutil_ldm.c: add the tensors of a diffusers component file under their LDM names
 * (kind 0 the golden UNet, 1 the golden VAE, 2 the CLIP text encoder) to a single-file
 * checkpoint being written. Fails the test on an unexpected tensor name. */
void mmpt_ldm_add(mmp_safetensors_writer *w, const char *file, int kind);

#endif
