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
 * (Prefill attention and small-weight convolutions instead call single-threaded sgemm from
 * the pool's own threads with BLAS set to 1 thread: see cpu_matmul.c.)
 * openblas_set_num_threads is process-wide: backends with different n_threads used from
 * different threads at once would reset each other's BLAS thread count (results stay
 * correct; only the speed is affected). */
#include "backend-impl.h"
#include "kernels.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
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


/* ------------------------------------------------------------ profiling ----
 * MMP_PROFILE=1 in the environment: time every node and print, at the end of each graph
 * (to stderr), the time per op kind and the 12 slowest nodes with their shapes and, for the
 * matrix ops, GFLOP/s. Off by default; the cost when off is one getenv per graph. */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Multiply-add FLOPs (2 per MAC) of a matrix node; 0 for the others. */
static double node_flops(const mmp_tensor *t) {
    switch (t->op) {
    case MMP_OP_MUL_MAT:
        return 2.0 * (double)t->src[0]->ne[0] * (double)mmp_nelements(t);
    case MMP_OP_MUL_MAT_ID:
        return 2.0 * (double)t->src[0]->ne[0] * (double)mmp_nelements(t);
    case MMP_OP_CONV1D: {
        const mmp_tensor *w = t->src[0];
        return 2.0 * (double)(w->ne[0] * w->ne[1]) * (double)mmp_nelements(t);
    }
    case MMP_OP_CONV2D: {
        const mmp_tensor *w = t->src[0];
        return 2.0 * (double)(w->ne[0] * w->ne[1] * w->ne[2]) * (double)mmp_nelements(t);
    }
    case MMP_OP_ATTN: {
        const mmp_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2];
        return 2.0 * (double)(q->ne[1] * q->ne[2] * q->ne[3]) * (double)k->ne[1] * (double)(q->ne[0] + v->ne[0]);
    }
    default:
        return 0.0;
    }
}

struct prof_node { int32_t idx; double s; };

static int prof_cmp(const void *a, const void *b) {
    const struct prof_node *x = a, *y = b;
    return (x->s < y->s) - (x->s > y->s);
}

static void prof_report(const mmp_graph *g, struct prof_node *pn, int32_t n) {
    double op_s[MMP_OP_COUNT] = {0}, op_f[MMP_OP_COUNT] = {0}, tot = 0;
    int op_n[MMP_OP_COUNT] = {0};
    for (int32_t i = 0; i < n; i++) {
        const mmp_tensor *t = &g->tensors[pn[i].idx];
        int o = (int)t->op;
        if (o < 0 || o >= MMP_OP_COUNT) continue;
        op_s[o] += pn[i].s;
        op_f[o] += node_flops(t);
        op_n[o]++;
        tot += pn[i].s;
    }
    fprintf(stderr, "[mmp profile] %d nodes, %.2f ms\n", (int)n, tot * 1e3);
    for (int o = 0; o < MMP_OP_COUNT; o++) {
        if (!op_n[o]) continue;
        fprintf(stderr, "  %-14s x%-5d %9.2f ms %5.1f%%", mmp_op_name((enum mmp_op)o), op_n[o], op_s[o] * 1e3,
                tot > 0 ? 100.0 * op_s[o] / tot : 0.0);
        if (op_f[o] > 0 && op_s[o] > 0) fprintf(stderr, "  %8.2f GFLOP/s", op_f[o] / op_s[o] * 1e-9);
        fputc('\n', stderr);
    }
    qsort(pn, (size_t)n, sizeof *pn, prof_cmp);
    for (int32_t i = 0; i < n && i < 12; i++) {
        const mmp_tensor *t = &g->tensors[pn[i].idx];
        char lb[80];
        fprintf(stderr, "  %8.2f ms %-12s %-24s [%lld %lld %lld %lld]", pn[i].s * 1e3, mmp_op_name(t->op),
                mmp__tensor_label(t, lb, sizeof lb), (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                (long long)t->ne[3]);
        for (int j = 0; j < 2 && t->src[j]; j++)
            fprintf(stderr, " src%d %s[%lld %lld %lld %lld]", j, mmp_type_name(t->src[j]->type), (long long)t->src[j]->ne[0],
                    (long long)t->src[j]->ne[1], (long long)t->src[j]->ne[2], (long long)t->src[j]->ne[3]);
        double f = node_flops(t);
        if (f > 0 && pn[i].s > 0) fprintf(stderr, " %.2f GFLOP/s", f / pn[i].s * 1e-9);
        fputc('\n', stderr);
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
    const char *pe = getenv("MMP_PROFILE");
    struct prof_node *prof = NULL;
    if (pe && pe[0] && strcmp(pe, "0") != 0 && g->n_order > 0)
        prof = malloc((size_t)g->n_order * sizeof *prof);   /* no profile if this fails */
    for (int32_t p = 0; p < g->n_order; p++) {
        if (abort_cb && abort_cb(abort_user)) {
            mmp__pool_park(ex.pool);
            free(prof);
            return mmp__error(MMP_ERR_ABORTED, "mmp_graph_compute: aborted before node %d of %d", (int)p, (int)g->n_order);
        }
        mmp_tensor *t = &g->tensors[g->order[p]];
        const double t0 = prof ? now_s() : 0.0;
        enum mmp_status s = run_node(&ex, t);
        if (prof) {
            prof[p].idx = g->order[p];
            prof[p].s = now_s() - t0;
        }
        if (s == MMP_OK && atomic_load(&ex.err) != 0) {
            char lb[80];
            s = (enum mmp_status)atomic_load(&ex.err);
            mmp__pool_park(ex.pool);
            free(prof);
            return mmp__error(s, "mmp_graph_compute: node '%s' (%s): index %lld out of range [0, %lld)",
                              mmp__tensor_label(t, lb, sizeof lb), mmp_op_name(t->op), (long long)ex.err_val,
                              (long long)ex.err_lim);
        }
        if (s != MMP_OK) {
            mmp__pool_park(ex.pool);
            free(prof);
            char lb[80];
            mmp__error_prefix("mmp_graph_compute: node '%s' (%s): ", mmp__tensor_label(t, lb, sizeof lb), mmp_op_name(t->op));
            return s;
        }
    }
    mmp__pool_park(ex.pool);
    if (prof) {
        prof_report(g, prof, g->n_order);
        free(prof);
    }
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
