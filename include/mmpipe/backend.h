/* mmpipe — backends: plan and compute an op graph (graph.h).
 *
 * Usage:
 *     mmp_backend *be = mmp_backend_cpu_new(n_threads);
 *     mmp_graph *g = mmp_graph_new(mmp_graph_params_default());
 *     mmp_tensor *x = mmp_new_tensor_2d(g, MMP_TYPE_F32, 768, n_tok);        // input
 *     mmp_tensor *w = mmp_new_tensor_ext(g, MMP_TYPE_Q8_0, 2, ne, mapped);  // weight in place
 *     mmp_tensor *y = mmp_set_output(mmp_gelu(g, mmp_mul_mat(g, w, x)));
 *     if (!y) -> mmp_last_error() says which builder failed and why
 *     mmp_graph_plan(be, g);                    // allocates x and every intermediate
 *     memcpy(x->data, ..., mmp_tensor_nbytes(x));  // or mmp_backend_tensor_set
 *     mmp_graph_compute(be, g, abort_cb, user); // y->data holds the result
 *
 * Planning: the nodes needed for the outputs (and every mmp_cpy node) run in build order.
 * Intermediate results share one buffer owned by the graph; a result's memory is reused once
 * its last reader has run (views extend the lifetime of what they alias). Outputs and
 * inputs are never reused. The buffer is kept across mmp_graph_reset(), so rebuilding a
 * decode graph per token does not allocate once the buffer is large enough.
 *
 * Threads: the CPU backend owns a pool of n_threads-1 workers plus the calling thread; each op
 * is split by rows across them. For large matrix products it calls OpenBLAS sgemm with
 * openblas_set_num_threads(n_threads) while the pool's workers sleep, so the two never run
 * at once. A backend computes one graph at a time: use one backend per thread. */
#ifndef MMPIPE_BACKEND_H
#define MMPIPE_BACKEND_H

#include "mmpipe/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmp_backend mmp_backend;

/* CPU backend with n_threads threads (>= 1; 0 means the number of online CPUs). */
MMP_API mmp_backend *mmp_backend_cpu_new(int n_threads);
/* Free a backend (NULL ok). Graphs planned with it may outlive it (their buffer is freed by
 * mmp_graph_free) but cannot be computed with it any more. */
MMP_API void mmp_backend_free(mmp_backend *b);
MMP_API const char *mmp_backend_name(const mmp_backend *b);   /* "cpu" */
MMP_API int mmp_backend_n_threads(const mmp_backend *b);
/* Whether the backend can compute this node (its op with these types). */
MMP_API bool mmp_backend_supports(const mmp_backend *b, const mmp_tensor *t);

/* Order the needed nodes, assign memory to inputs and intermediates (reuse by liveness),
 * allocate the graph's buffer on the backend. After it, input tensors have `data`. */
MMP_API enum mmp_status mmp_graph_plan(mmp_backend *b, mmp_graph *g);
/* Compute the planned graph (plans first if it never was and has no planner-allocated
 * inputs). abort_cb (optional) is called between nodes; returning true stops with
 * MMP_ERR_ABORTED. Errors found at run time (an id out of range) stop with a message. */
MMP_API enum mmp_status mmp_graph_compute(mmp_backend *b, mmp_graph *g, mmp_abort_fn abort_cb, void *abort_user);

typedef struct mmp_graph_stats {
    int32_t n_tensors;      /* all tensors built */
    int32_t n_nodes;        /* nodes that compute something in the plan */
    size_t planned_bytes;   /* size of the graph's buffer (inputs + intermediates + outputs) */
    size_t naive_bytes;     /* what it would be without reuse */
    size_t work_bytes;      /* scratch for the ops (im2col, dequantized blocks, ...) */
} mmp_graph_stats;
/* Stats of the last plan (zeros before planning). */
MMP_API mmp_graph_stats mmp_graph_get_stats(const mmp_graph *g);

/* Copy bytes into / out of a planned tensor's memory (offset and size in bytes; the tensor
 * must be contiguous). Works for every backend; on the CPU, t->data may be used directly. */
MMP_API enum mmp_status mmp_backend_tensor_set(mmp_backend *b, mmp_tensor *t, const void *data, size_t offset, size_t size);
MMP_API enum mmp_status mmp_backend_tensor_get(mmp_backend *b, const mmp_tensor *t, void *data, size_t offset, size_t size);

#ifdef __cplusplus
}
#endif
#endif
