/* mmpipe — the typed op graph used inside every stage.
 *
 * A stage builds a graph of tensors with the builder functions below, marks the results it
 * wants with mmp_set_output(), and hands the graph to a backend (backend.h) that plans the
 * memory (buffer reuse by liveness) and computes it.
 *
 * Conventions (as ggml):
 *   - ne[0] is the contiguous, fastest-varying dimension. A matrix of M rows of K elements is
 *     ne = {K, M}. nb[i] are byte strides; nb[0] is the element (block) size.
 *   - Tensors have 4 dims; unused dims are 1. "rows" are everything above ne[0].
 *   - All computed results are F32 unless the builder says otherwise (top_k / argmax give
 *     I32; mmp_cpy writes the destination's type).
 *
 * Errors: every builder checks shapes and dtypes when the node is built. On a mismatch it
 * returns NULL and sets mmp_last_error() naming the op, the dims and both tensors:
 *   "mmp_mul_mat: a.ne[0]=768 != b.ne[0]=1024 (a='blk.0.attn_q', b='inp')".
 * A NULL required argument makes a builder return NULL without a new message, so a chain of
 * builders can be checked once at the end. Arguments documented as "optional" may be NULL
 * and then mean "absent".
 *
 * Memory: tensor structs, names and op parameters live in the graph's arena; nothing is
 * malloc'ed per node. Tensor pointers are borrowed and live until mmp_graph_reset() or
 * mmp_graph_free(). Weights are created over caller memory (e.g. an mmapped file) with
 * mmp_new_tensor_ext() and used in place; the caller keeps that memory alive while the graph
 * is computed. */
#ifndef MMPIPE_GRAPH_H
#define MMPIPE_GRAPH_H

#include <stdio.h>
#include "mmpipe/base.h"
#include "mmpipe/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_MAX_DIMS      4
#define MMP_MAX_SRC       6
#define MMP_MAX_OP_PARAMS 16   /* int32 slots (floats are stored bit-cast) */
#define MMP_MAX_NAME      64

/* Ops. Values are fixed forever; new ones are added before MMP_OP_COUNT. */
enum mmp_op {
    MMP_OP_NONE        = 0,   /* leaf: input, weight or constant */
    MMP_OP_MUL_MAT     = 1,
    MMP_OP_MUL_MAT_ID  = 2,
    MMP_OP_GET_ROWS    = 3,
    MMP_OP_ADD         = 4,
    MMP_OP_SUB         = 5,
    MMP_OP_MUL         = 6,
    MMP_OP_DIV         = 7,
    MMP_OP_SCALE       = 8,   /* a*s + b */
    MMP_OP_CLAMP       = 9,
    MMP_OP_UNARY       = 10,  /* op_params[0] = enum mmp_unary */
    MMP_OP_GLU         = 11,  /* act(a) * b; op_params[0] = enum mmp_unary */
    MMP_OP_RMS_NORM    = 12,
    MMP_OP_LAYER_NORM  = 13,
    MMP_OP_GROUP_NORM  = 14,
    MMP_OP_SOFTMAX     = 15,
    MMP_OP_ROPE        = 16,
    MMP_OP_CONV1D      = 17,
    MMP_OP_CONV2D      = 18,
    MMP_OP_UPSAMPLE    = 19,
    MMP_OP_POOL1D      = 20,
    MMP_OP_POOL2D      = 21,
    MMP_OP_CONCAT      = 22,
    MMP_OP_VIEW        = 23,  /* view, reshape, permute, transpose: no compute, alias src */
    MMP_OP_CONT        = 24,
    MMP_OP_ATTN        = 25,
    MMP_OP_TOP_K       = 26,
    MMP_OP_ARGMAX      = 27,
    MMP_OP_CPY         = 28,  /* write src[0] into the memory of view src[1] */
    MMP_OP_SUM_ROWS    = 29,
    MMP_OP_COUNT       = 30
};

enum mmp_unary {
    MMP_UNARY_GELU       = 0,  /* x/2 (1 + erf(x/sqrt 2)) */
    MMP_UNARY_GELU_TANH  = 1,  /* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    MMP_UNARY_QUICK_GELU = 2,  /* x sigmoid(1.702 x) */
    MMP_UNARY_SILU       = 3,  /* x sigmoid(x) */
    MMP_UNARY_RELU       = 4,
    MMP_UNARY_SIGMOID    = 5,
    MMP_UNARY_TANH       = 6,
    MMP_UNARY_COUNT      = 7
};

enum mmp_rope_mode {
    MMP_ROPE_NORMAL = 0,  /* GGUF / llama.cpp order: rotate adjacent pairs (x[2i], x[2i+1]) */
    MMP_ROPE_NEOX   = 2,  /* HF rotate-half order: pairs (x[i], x[i + n_rot/2]) */
};

/* Tensor flags. */
enum {
    MMP_TENSOR_INPUT  = 1,  /* leaf whose memory the planner allocates; caller writes it */
    MMP_TENSOR_OUTPUT = 2,  /* result kept after compute; its memory is never reused */
    MMP_TENSOR_WEIGHT = 4,  /* leaf over caller memory (mmp_new_tensor_ext) */
};

/* A tensor (node) of a graph. Stage code may read every field; only the builders write them.
 * `data` is NULL for computed tensors and planner-allocated inputs until the graph is
 * planned (mmp_graph_plan / mmp_graph_compute); afterwards it points at the tensor's first
 * element in host memory on the CPU backend. */
typedef struct mmp_tensor {
    enum mmp_type type;
    int32_t flags;                     /* MMP_TENSOR_* */
    int64_t ne[MMP_MAX_DIMS];          /* elements per dim */
    size_t nb[MMP_MAX_DIMS];           /* byte strides */
    enum mmp_op op;
    int32_t op_params[MMP_MAX_OP_PARAMS];
    struct mmp_tensor *src[MMP_MAX_SRC];
    struct mmp_tensor *view_src;       /* for views: the tensor whose memory this aliases */
    size_t view_offs;                  /* byte offset into view_src */
    void *data;
    int32_t id;                        /* index in the graph (build order) */
    char name[MMP_MAX_NAME];
} mmp_tensor;

typedef struct mmp_graph mmp_graph;

typedef struct mmp_graph_params {
    int32_t max_tensors;   /* capacity in tensors (leafs + nodes + views); default 8192 */
} mmp_graph_params;

MMP_API mmp_graph_params mmp_graph_params_default(void);
/* New empty graph (arena for max_tensors tensors allocated once). NULL + message on failure. */
MMP_API mmp_graph *mmp_graph_new(mmp_graph_params params);
MMP_API void mmp_graph_free(mmp_graph *g);
/* Drop every tensor (pointers become invalid) but keep the arena and the planned buffer, so a
 * graph can be rebuilt per token without allocation. */
MMP_API void mmp_graph_reset(mmp_graph *g);
MMP_API int32_t mmp_graph_n_tensors(const mmp_graph *g);
MMP_API mmp_tensor *mmp_graph_tensor(const mmp_graph *g, int32_t i);  /* build order; NULL if out of range */
MMP_API mmp_tensor *mmp_graph_get_tensor(const mmp_graph *g, const char *name);  /* first with name */
/* One line per tensor: id, op, type, shape, name, sources, (after planning) offset. */
MMP_API void mmp_graph_print(const mmp_graph *g, FILE *out);

/* ---- tensor helpers ---- */
MMP_API int64_t mmp_nelements(const mmp_tensor *t);
MMP_API int64_t mmp_nrows(const mmp_tensor *t);          /* ne[1]*ne[2]*ne[3] */
MMP_API size_t mmp_tensor_nbytes(const mmp_tensor *t);   /* bytes spanned (for non-contiguous: up to the last element) */
MMP_API bool mmp_is_contiguous(const mmp_tensor *t);
MMP_API bool mmp_same_shape(const mmp_tensor *a, const mmp_tensor *b);
MMP_API int mmp_n_dims(const mmp_tensor *t);             /* 1..4: index of last dim > 1, plus 1 */
MMP_API const char *mmp_op_name(enum mmp_op op);
/* Set the name (printf-style, truncated to MMP_MAX_NAME-1). Returns t; NULL-safe. */
MMP_API mmp_tensor *mmp_set_name(mmp_tensor *t, const char *fmt, ...) MMP_PRINTF(2, 3);
/* Mark as an output: computed and kept. Returns t; NULL-safe. */
MMP_API mmp_tensor *mmp_set_output(mmp_tensor *t);

/* ---- leafs ---- */
/* Input tensor: the planner allocates its memory; write it after mmp_graph_plan() (t->data,
 * or mmp_backend_tensor_set). Any type; ne[0] a multiple of the block size. */
MMP_API mmp_tensor *mmp_new_tensor(mmp_graph *g, enum mmp_type type, int n_dims, const int64_t *ne);
MMP_API mmp_tensor *mmp_new_tensor_1d(mmp_graph *g, enum mmp_type type, int64_t ne0);
MMP_API mmp_tensor *mmp_new_tensor_2d(mmp_graph *g, enum mmp_type type, int64_t ne0, int64_t ne1);
MMP_API mmp_tensor *mmp_new_tensor_3d(mmp_graph *g, enum mmp_type type, int64_t ne0, int64_t ne1, int64_t ne2);
MMP_API mmp_tensor *mmp_new_tensor_4d(mmp_graph *g, enum mmp_type type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3);
/* Tensor over caller memory (contiguous, e.g. an mmapped weight or a KV cache buffer), used
 * in place and never written by the planner (except through mmp_cpy into a view of it). */
MMP_API mmp_tensor *mmp_new_tensor_ext(mmp_graph *g, enum mmp_type type, int n_dims, const int64_t *ne, void *data);

/* ---- linear algebra ---- */
/* a [K, M, A2, A3] any type with a dot kernel (weights) x b [K, N, B2, B3] f32 -> [M, N, B2, B3].
 * B2 % A2 == 0 and B3 % A3 == 0: a is broadcast over the batch dims (grouped-query style). */
MMP_API mmp_tensor *mmp_mul_mat(mmp_graph *g, mmp_tensor *a, mmp_tensor *b);
/* Mixture of experts. as [K, M, n_expert] (stacked expert weights, any type),
 * b [K, n_b, n_tok] f32 with n_b == 1 (same input for every chosen expert) or n_b == k,
 * ids I32 [k, n_tok] (expert per slot and token) -> [M, k, n_tok].
 * Tokens are grouped per expert so each used expert runs one GEMM; unused experts are not read. */
MMP_API mmp_tensor *mmp_mul_mat_id(mmp_graph *g, mmp_tensor *as, mmp_tensor *b, mmp_tensor *ids);
/* Rows of a table. a [K, R] (F32/F16/BF16/quantized; I32 gives I32), ids I32 of any shape
 * [n, b, c] -> f32 [K, n, b, c] (e.g. token embeddings: ids [n_tok] -> [K, n_tok]).
 * Batched tables: a [K, R, B] with ids [n, B] -> [K, n, B] (row ids[i, j] of table j).
 * Ids out of range make mmp_graph_compute fail with MMP_ERR_INVALID_ARG (message names the id). */
MMP_API mmp_tensor *mmp_get_rows(mmp_graph *g, mmp_tensor *a, mmp_tensor *ids);

/* ---- elementwise (f32). b is broadcast: b.ne[i] must divide a.ne[i]; result has a's shape. */
MMP_API mmp_tensor *mmp_add(mmp_graph *g, mmp_tensor *a, mmp_tensor *b);
MMP_API mmp_tensor *mmp_sub(mmp_graph *g, mmp_tensor *a, mmp_tensor *b);
MMP_API mmp_tensor *mmp_mul(mmp_graph *g, mmp_tensor *a, mmp_tensor *b);
MMP_API mmp_tensor *mmp_div(mmp_graph *g, mmp_tensor *a, mmp_tensor *b);
MMP_API mmp_tensor *mmp_scale(mmp_graph *g, mmp_tensor *a, float s);              /* a*s */
MMP_API mmp_tensor *mmp_scale_bias(mmp_graph *g, mmp_tensor *a, float s, float b); /* a*s + b */
MMP_API mmp_tensor *mmp_clamp(mmp_graph *g, mmp_tensor *a, float lo, float hi);
MMP_API mmp_tensor *mmp_unary(mmp_graph *g, mmp_tensor *a, enum mmp_unary op);
MMP_API mmp_tensor *mmp_gelu(mmp_graph *g, mmp_tensor *a);        /* erf form */
MMP_API mmp_tensor *mmp_gelu_tanh(mmp_graph *g, mmp_tensor *a);
MMP_API mmp_tensor *mmp_quick_gelu(mmp_graph *g, mmp_tensor *a);
MMP_API mmp_tensor *mmp_silu(mmp_graph *g, mmp_tensor *a);
MMP_API mmp_tensor *mmp_relu(mmp_graph *g, mmp_tensor *a);
MMP_API mmp_tensor *mmp_sigmoid(mmp_graph *g, mmp_tensor *a);
MMP_API mmp_tensor *mmp_tanh(mmp_graph *g, mmp_tensor *a);
/* act(a) * b, same shapes: mmp_swiglu = silu(a)*b, mmp_geglu = gelu(a)*b (erf form). */
MMP_API mmp_tensor *mmp_glu(mmp_graph *g, mmp_tensor *a, mmp_tensor *b, enum mmp_unary act);
MMP_API mmp_tensor *mmp_swiglu(mmp_graph *g, mmp_tensor *a, mmp_tensor *b);
MMP_API mmp_tensor *mmp_geglu(mmp_graph *g, mmp_tensor *a, mmp_tensor *b);
/* Sum along ne[0]: [n, r1, r2, r3] -> [1, r1, r2, r3]. */
MMP_API mmp_tensor *mmp_sum_rows(mmp_graph *g, mmp_tensor *a);

/* ---- normalisation (along ne[0] unless stated) ---- */
/* x / sqrt(mean(x^2) + eps) */
MMP_API mmp_tensor *mmp_rms_norm(mmp_graph *g, mmp_tensor *a, float eps);
/* (x - mean) / sqrt(var + eps) * w + b; w, b optional, f32 [ne0]. */
MMP_API mmp_tensor *mmp_layer_norm(mmp_graph *g, mmp_tensor *a, mmp_tensor *w, mmp_tensor *b, float eps);
/* a [W, H, C, N] (1-D data: [T, 1, C, N]); C split into n_groups groups, each normalised over
 * W*H*C/n_groups values; w, b optional f32 [C] applied per channel. */
MMP_API mmp_tensor *mmp_group_norm(mmp_graph *g, mmp_tensor *a, int n_groups, mmp_tensor *w, mmp_tensor *b, float eps);
/* softmax along ne[0]. */
MMP_API mmp_tensor *mmp_softmax(mmp_graph *g, mmp_tensor *a);
/* softmax(a*scale + mask) along ne[0]. mask optional f32 [ne0, ne1] (broadcast over dims 2, 3)
 * or [ne0, ne1, ne2]. causal: element (i0, i1) is masked (-inf) when i0 > i1 + n_past. */
MMP_API mmp_tensor *mmp_softmax_ext(mmp_graph *g, mmp_tensor *a, mmp_tensor *mask, float scale, bool causal, int n_past);

/* ---- position ---- */
/* Rotary embedding. a [D, H, T, 1] (head dim, heads, tokens), pos I32 [T]; the first n_rot
 * (even, <= D) elements of each head rotate by pos * freq_scale * theta_base^(-2i/n_rot). */
MMP_API mmp_tensor *mmp_rope(mmp_graph *g, mmp_tensor *a, mmp_tensor *pos, int n_rot, enum mmp_rope_mode mode, float theta_base);
MMP_API mmp_tensor *mmp_rope_ext(mmp_graph *g, mmp_tensor *a, mmp_tensor *pos, int n_rot, enum mmp_rope_mode mode, float theta_base, float freq_scale);

/* ---- convolution, resampling ---- */
/* w [Kw, Cin, Cout] (F32/F16) * x [L, Cin, N] -> [Lout, Cout, N];
 * Lout = (L + 2 pad - dil (Kw - 1) - 1) / stride + 1. No bias (add a [1, Cout] tensor). */
MMP_API mmp_tensor *mmp_conv1d(mmp_graph *g, mmp_tensor *w, mmp_tensor *x, int stride, int pad, int dilation);
/* w [Kw, Kh, Cin, Cout] (F32/F16) * x [W, H, Cin, N] -> [Wout, Hout, Cout, N] (im2col + GEMM). */
MMP_API mmp_tensor *mmp_conv2d(mmp_graph *g, mmp_tensor *w, mmp_tensor *x, int s0, int s1, int p0, int p1, int d0, int d1);
/* Nearest: [W, H, C, N] -> [W*k, H*k, C, N]. */
MMP_API mmp_tensor *mmp_upsample_nearest(mmp_graph *g, mmp_tensor *a, int k);
/* Average pool along ne[0] (1-D) or ne[0], ne[1] (2-D); padding counts as zeros in the mean
 * (PyTorch count_include_pad=True). Out = (n + 2p - k) / s + 1. */
MMP_API mmp_tensor *mmp_avg_pool1d(mmp_graph *g, mmp_tensor *a, int k, int s, int p);
MMP_API mmp_tensor *mmp_avg_pool2d(mmp_graph *g, mmp_tensor *a, int k0, int k1, int s0, int s1, int p0, int p1);
/* a and b equal except along dim -> f32 concatenation along dim. */
MMP_API mmp_tensor *mmp_concat(mmp_graph *g, mmp_tensor *a, mmp_tensor *b, int dim);

/* ---- views (no copy; alias the source and extend its lifetime) ---- */
/* Views with explicit byte strides nb1.. and byte offset into a. Checked against a's extent. */
MMP_API mmp_tensor *mmp_view_1d(mmp_graph *g, mmp_tensor *a, int64_t ne0, size_t offset);
MMP_API mmp_tensor *mmp_view_2d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset);
MMP_API mmp_tensor *mmp_view_3d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1, size_t nb2, size_t offset);
MMP_API mmp_tensor *mmp_view_4d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, size_t nb1, size_t nb2, size_t nb3, size_t offset);
/* Same elements, new shape; a must be contiguous (use mmp_cont first). */
MMP_API mmp_tensor *mmp_reshape(mmp_graph *g, mmp_tensor *a, int n_dims, const int64_t *ne);
MMP_API mmp_tensor *mmp_reshape_1d(mmp_graph *g, mmp_tensor *a, int64_t ne0);
MMP_API mmp_tensor *mmp_reshape_2d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1);
MMP_API mmp_tensor *mmp_reshape_3d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2);
MMP_API mmp_tensor *mmp_reshape_4d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3);
/* ggml semantics: source dim i becomes result dim axis_i. E.g. [D, H, T] -> [D, T, H] is
 * mmp_permute(g, a, 0, 2, 1, 3). */
MMP_API mmp_tensor *mmp_permute(mmp_graph *g, mmp_tensor *a, int axis0, int axis1, int axis2, int axis3);
MMP_API mmp_tensor *mmp_transpose(mmp_graph *g, mmp_tensor *a);   /* swap dims 0 and 1 */
/* Contiguous f32 copy (of a view / permutation / F16 tensor). */
MMP_API mmp_tensor *mmp_cont(mmp_graph *g, mmp_tensor *a);

/* ---- attention ---- */
/* Scaled dot-product attention.
 * q [D, Tq, H, B] f32, k [D, Tk, Hkv, B] and v [Dv, Tk, Hkv, B] f32 or f16 (views of a KV cache
 * are fine), H % Hkv == 0 (query head h uses kv head h / (H/Hkv)).
 * scores = q.k * scale (+ mask, optional f32 [Tk, Tq], broadcast over heads, or [Tk, Tq, H]);
 * causal: key j is visible to query i iff j <= i + n_past.
 * -> [Dv, H, Tq, B] (reshape to [Dv*H, Tq] for the output projection). */
MMP_API mmp_tensor *mmp_attn(mmp_graph *g, mmp_tensor *q, mmp_tensor *k, mmp_tensor *v, mmp_tensor *mask,
                             float scale, bool causal, int n_past);

/* ---- selection ---- */
/* Indices of the k largest values along ne[0], sorted by value descending, ties -> lower
 * index first: a [n, r...] f32 -> I32 [k, r...]. */
MMP_API mmp_tensor *mmp_top_k(mmp_graph *g, mmp_tensor *a, int k);
/* Index of the largest value along ne[0] (first on ties): [n, r...] -> I32 [1, r...]. */
MMP_API mmp_tensor *mmp_argmax(mmp_graph *g, mmp_tensor *a);

/* ---- writes ---- */
/* Copy src (f32, any strides) into dst, a tensor or view (F32/F16/BF16) with the same number
 * of elements (e.g. a slice of an external KV cache). Returns a node that aliases dst and is
 * always computed (even if not an output), in build order: ops built later that read the
 * destination memory see the new values. */
MMP_API mmp_tensor *mmp_cpy(mmp_graph *g, mmp_tensor *src, mmp_tensor *dst);

#ifdef __cplusplus
}
#endif
#endif
