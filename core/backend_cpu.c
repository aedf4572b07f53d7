/* The CPU backend: host buffers, a thread pool, and the node loop.
 *
 * Threads: each op decides from its own work (elements x per-element cost; for a mat-vec the
 * weight bytes it streams) whether it is worth more than one thread. Small nodes - most of a
 * decode graph: norms, adds, rope and attention for one token - run on the calling thread
 * and never touch the pool, so they need no barrier either. Big ones go to the pool as
 * chunks claimed dynamically by the caller and whichever workers are awake (threadpool.h):
 * the node's end is the only synchronisation, and it waits only for chunks a worker has
 * actually started, never for a worker that is asleep or preempted. Workers spin ~50 us
 * after a job, then sleep; the pool is parked at the end of every graph so idle workers do
 * not burn a core while the caller samples or builds the next graph.
 *
 * Big matrix products go to OpenBLAS sgemm from the calling thread with
 * openblas_set_num_threads(n_threads) after parking the pool, so the library's threads and
 * BLAS's threads never run at the same time and never oversubscribe the cores.
 * openblas_set_num_threads is process-wide: backends with different n_threads used from
 * different threads at once would reset each other's BLAS thread count (results stay
 * correct; only the speed is affected). */
#include "backend-impl.h"
#include "kernels.h"
#include "util.h"

#include <unistd.h>
#include <cblas.h>

struct cpu_ctx {
    struct mmp__pool *pool;
};

static struct mmp__buffer *cpu_buffer_alloc(mmp_backend *b, size_t size);

static void cpu_buffer_free(struct mmp__buffer *buf) {
    if (!buf) return;
    free(buf->base);
    free(buf);
}

static enum mmp_status cpu_tensor_set(mmp_backend *b, mmp_tensor *t, const void *data, size_t offset, size_t size) {
    if (size) memcpy((char *)t->data + offset, data, size);
    return MMP_OK;
}

static enum mmp_status cpu_tensor_get(mmp_backend *b, const mmp_tensor *t, void *data, size_t offset, size_t size) {
    if (size) memcpy(data, (const char *)t->data + offset, size);
    return MMP_OK;
}

static bool cpu_supports_op(const mmp_backend *b, const mmp_tensor *t) {
    switch (t->op) {
    case MMP_OP_MUL_MAT:
    case MMP_OP_MUL_MAT_ID:
        /* weights need a dot product (mat-vec) and a dequantizer (GEMM path) */
        return mmp__vec_dot_fast(t->src[0]->type) != NULL;
    case MMP_OP_GET_ROWS: {
        enum mmp_type ty = t->src[0]->type;
        if (ty == MMP_TYPE_F32 || ty == MMP_TYPE_I32) return true;
        float tmp[256];
        const mmp_type_traits *tr = mmp_type_get_traits(ty);
        /* probe: does the dequantizer know this type? (one block of zeros) */
        unsigned char zero[512] = {0};
        if (!tr || tr->blck_size > 256 || tr->type_size > sizeof zero) return false;
        return mmp_dequantize_row(ty, zero, tmp, tr->blck_size) == MMP_OK;
    }
    default:
        return t->op > MMP_OP_NONE && t->op < MMP_OP_COUNT;
    }
}

static size_t cpu_work_size(const mmp_backend *b, const mmp_tensor *t) {
    size_t a = mmp__cpu_work_size_mm(t, b->n_threads);
    size_t c = mmp__cpu_work_size_ops(t, b->n_threads);
    return a > c ? a : c;
}

void mmp__cpu_fail(struct mmp__cpu_exec *ex, enum mmp_status s, int64_t val, int64_t lim) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&ex->err, &expected, (int)s)) {
        ex->err_val = val;
        ex->err_lim = lim;
    }
}

static enum mmp_status run_node(struct mmp__cpu_exec *ex, mmp_tensor *t) {
    switch (t->op) {
    case MMP_OP_MUL_MAT:    return mmp__cpu_mul_mat(ex, t);
    case MMP_OP_MUL_MAT_ID: return mmp__cpu_mul_mat_id(ex, t);
    case MMP_OP_CONV1D:     return mmp__cpu_conv1d(ex, t);
    case MMP_OP_CONV2D:     return mmp__cpu_conv2d(ex, t);
    case MMP_OP_ATTN:       return mmp__cpu_attn(ex, t);
    default:                return mmp__cpu_op_elementwise(ex, t);
    }
}

static enum mmp_status cpu_compute(mmp_backend *b, mmp_graph *g, mmp_abort_fn abort_cb, void *abort_user) {
    struct cpu_ctx *ctx = b->ctx;
    struct mmp__cpu_exec ex;
    memset(&ex, 0, sizeof ex);
    ex.pool = ctx->pool;
    ex.n_threads = b->n_threads;
    ex.work = g->work;
    ex.work_size = g->work_size;
    atomic_init(&ex.err, 0);
    for (int32_t p = 0; p < g->n_order; p++) {
        if (abort_cb && abort_cb(abort_user)) {
            mmp__pool_park(ex.pool);
            return mmp__error(MMP_ERR_ABORTED, "mmp_graph_compute: aborted before node %d of %d", (int)p, (int)g->n_order);
        }
        mmp_tensor *t = &g->tensors[g->order[p]];
        enum mmp_status s = run_node(&ex, t);
        if (s == MMP_OK && atomic_load(&ex.err) != 0) {
            char lb[80];
            s = (enum mmp_status)atomic_load(&ex.err);
            mmp__pool_park(ex.pool);
            return mmp__error(s, "mmp_graph_compute: node '%s' (%s): index %lld out of range [0, %lld)",
                              mmp__tensor_label(t, lb, sizeof lb), mmp_op_name(t->op), (long long)ex.err_val,
                              (long long)ex.err_lim);
        }
        if (s != MMP_OK) {
            mmp__pool_park(ex.pool);
            char lb[80];
            mmp__error_prefix("mmp_graph_compute: node '%s' (%s): ", mmp__tensor_label(t, lb, sizeof lb), mmp_op_name(t->op));
            return s;
        }
    }
    mmp__pool_park(ex.pool);
    return MMP_OK;
}

static void cpu_free(mmp_backend *b) {
    struct cpu_ctx *ctx = b->ctx;
    if (ctx) mmp__pool_free(ctx->pool);
    free(ctx);
    free(b);
}

static const struct mmp__backend_iface CPU_IFACE = {
    .name = "cpu",
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .tensor_set = cpu_tensor_set,
    .tensor_get = cpu_tensor_get,
    .supports_op = cpu_supports_op,
    .work_size = cpu_work_size,
    .compute = cpu_compute,
    .free = cpu_free,
};

static struct mmp__buffer *cpu_buffer_alloc(mmp_backend *b, size_t size) {
    struct mmp__buffer *buf = mmp__calloc(1, sizeof *buf);
    if (!buf) return NULL;
    size_t sz = (size + 63) & ~(size_t)63;
    if (sz < size || posix_memalign(&buf->base, 64, sz ? sz : 64) != 0) {
        free(buf);
        return mmp__error_null(MMP_ERR_NOMEM, "cpu backend: cannot allocate a %zu-byte graph buffer", size);
    }
    buf->iface = &CPU_IFACE;
    buf->size = sz;
    return buf;
}

mmp_backend *mmp_backend_cpu_new(int n_threads) {
    if (n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)MMP_MIN(n, 256) : 1;
    }
    if (n_threads < 1 || n_threads > 1024)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_backend_cpu_new: n_threads=%d (must be 0..1024)", n_threads);
    mmp_backend *b = mmp__calloc(1, sizeof *b);
    struct cpu_ctx *ctx = mmp__calloc(1, sizeof *ctx);
    if (!b || !ctx) { free(b); free(ctx); return NULL; }
    ctx->pool = mmp__pool_new(n_threads);
    if (!ctx->pool) { free(b); free(ctx); return NULL; }
    b->iface = &CPU_IFACE;
    b->n_threads = n_threads;
    b->ctx = ctx;
    return b;
}
