/* Private: the backend interface. A backend (CPU now, CUDA later) implements this vtable;
 * backend.c and plan.c use only these entry points, so the same graph runs on any backend.
 *
 * Memory model: a graph owns one buffer from its backend, holding every planned tensor at an
 * offset (plan.c) followed by the ops' work scratch. On the CPU the buffer is host memory and
 * tensor->data points into it. Tensors over caller memory (mmp_new_tensor_ext) are host
 * memory; a device backend is expected to upload or map them itself. */
#ifndef MMP_CORE_BACKEND_IMPL_H
#define MMP_CORE_BACKEND_IMPL_H

#include "graph-impl.h"

struct mmp__buffer {
    const struct mmp__backend_iface *iface;
    void *base;     /* host pointer (CPU) or device address */
    size_t size;
    void *ctx;      /* backend-private */
};

struct mmp__backend_iface {
    const char *name;
    /* Buffer of `size` bytes (64-byte aligned base); NULL + message on failure. */
    struct mmp__buffer *(*buffer_alloc)(mmp_backend *b, size_t size);
    /* Frees a buffer; must work after the backend that made it is gone. */
    void (*buffer_free)(struct mmp__buffer *buf);
    enum mmp_status (*tensor_set)(mmp_backend *b, mmp_tensor *t, const void *data, size_t offset, size_t size);
    enum mmp_status (*tensor_get)(mmp_backend *b, const mmp_tensor *t, void *data, size_t offset, size_t size);
    bool (*supports_op)(const mmp_backend *b, const mmp_tensor *node);
    /* Scratch bytes the node needs during compute (shared by all nodes: max is taken). */
    size_t (*work_size)(const mmp_backend *b, const mmp_tensor *node);
    /* Compute g->order[0..g->n_order) in order; abort_cb checked between nodes. */
    enum mmp_status (*compute)(mmp_backend *b, mmp_graph *g, mmp_abort_fn abort_cb, void *abort_user);
    void (*free)(mmp_backend *b);
};

struct mmp_backend {
    const struct mmp__backend_iface *iface;
    int n_threads;
    void *ctx;
};

/* Planner (plan.c): order + liveness + offsets; allocates g->buf via b. */
enum mmp_status mmp__graph_plan(mmp_backend *b, mmp_graph *g);
/* Frees a buffer through its own iface (NULL ok). */
void mmp__buffer_release(struct mmp__buffer *buf);

/* exp(x) of 8 lanes with x <= 0 (softmax arguments after subtracting the row maximum, or
 * -|x| for a sigmoid). Cephes' expf polynomial on r = x - n ln2 (|r| <= ln2/2), scaled by 2^n
 * through the exponent bits: about 1 ulp; exactly 0 below -87 (where expf is denormal or 0)
 * so that masked keys get no weight. Callers keep a scalar expf path for other targets. */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MMP_HAVE_EXP_NEG_PS 1
static inline __m256 mmp__exp_neg_ps(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 dead = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(dead, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}
#endif

#endif

/* ---- CPU backend internals (backend_cpu.c, cpu_ops.c, cpu_matmul.c) ---- */
#include "threadpool.h"
#include <stdatomic.h>

struct mmp__cpu_exec {
    struct mmp__pool *pool;
    int n_threads;
    char *work;           /* scratch (the graph's work region) */
    size_t work_size;
    /* First run-time error found by a worker (e.g. an id out of range): the op returns it. */
    atomic_int err;       /* 0 or an enum mmp_status */
    int64_t err_val, err_lim;
};

/* Record a run-time error from a task (first one wins). */
void mmp__cpu_fail(struct mmp__cpu_exec *ex, enum mmp_status s, int64_t val, int64_t lim);

/* Ops: compute t from its sources (t->data and the sources' data are set). */
enum mmp_status mmp__cpu_op_elementwise(struct mmp__cpu_exec *ex, mmp_tensor *t);  /* everything in cpu_ops.c */
enum mmp_status mmp__cpu_mul_mat(struct mmp__cpu_exec *ex, mmp_tensor *t);
enum mmp_status mmp__cpu_mul_mat_id(struct mmp__cpu_exec *ex, mmp_tensor *t);
enum mmp_status mmp__cpu_conv1d(struct mmp__cpu_exec *ex, mmp_tensor *t);
enum mmp_status mmp__cpu_conv2d(struct mmp__cpu_exec *ex, mmp_tensor *t);
enum mmp_status mmp__cpu_attn(struct mmp__cpu_exec *ex, mmp_tensor *t);
/* Work bytes needed by t on n_threads threads (cpu_matmul.c / cpu_ops.c). */
size_t mmp__cpu_work_size_mm(const mmp_tensor *t, int n_threads);
size_t mmp__cpu_work_size_ops(const mmp_tensor *t, int n_threads);

/* Scalar references (cpu_ref.c): compute node t from its sources' data into dst
 * (contiguous, t's type and shape), with plain loops and double accumulation where it
 * matters. Independent of the fast code; the tests compare the two. */
enum mmp_status mmp__ref_compute(const mmp_tensor *t, void *dst);

/* Split n items over nth threads: [*i0, *i1) for thread ith. */
static inline void mmp__split(int64_t n, int ith, int nth, int64_t *i0, int64_t *i1) {
    *i0 = n * ith / nth;
    *i1 = n * (ith + 1) / nth;
}
