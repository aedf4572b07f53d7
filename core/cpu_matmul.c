/* CPU matrix products: mul_mat, mul_mat_id (MoE), conv1d/conv2d (im2col + GEMM), attention.
 *
 * Two regimes:
 *   - few right-hand columns (decode, N < GEMM_MIN_N): mat-vec over weight rows with the dot
 *     kernels of core/vec.c, reading F16/BF16/quantized weights in place; rows split across
 *     the pool's threads. Memory-bound: each weight byte is read once.
 *   - many columns (prefill, encoders, convolutions): OpenBLAS sgemm. Non-F32 weights are
 *     converted to f32 in blocks of rows into the work buffer (the pool does the conversion),
 *     then sgemm runs on the block with openblas_set_num_threads(n_threads) while the pool
 *     sleeps. */
#include "backend-impl.h"
#include "kernels.h"
#include "util.h"

#include <math.h>
#include <cblas.h>

#define GEMM_MIN_N 8
/* f32 elements of dequantized weight rows per sgemm block (8 MiB). */
#define DEQ_BLOCK_ELEMS ((int64_t)2 << 20)
/* f32 elements of an im2col chunk (16 MiB). */
#define COL_CHUNK_ELEMS ((int64_t)4 << 20)
/* pairs (token, slot) per gathered MoE GEMM chunk */
#define MOE_CHUNK 512
/* query rows per attention GEMM chunk */
#define ATTN_QCHUNK 256
/* vector attention: multiply-adds worth a second thread, and chunks per thread (scratch slots) */
#define ATTN_PAR_WORK ((int64_t)1 << 17)
#define ATTN_CHUNKS_PER_THREAD 4

#define PTR(t, i0, i1, i2, i3) \
    ((char *)(t)->data + (size_t)(i0) * (t)->nb[0] + (size_t)(i1) * (t)->nb[1] + (size_t)(i2) * (t)->nb[2] + (size_t)(i3) * (t)->nb[3])

static size_t al(size_t x) { return (x + 63) & ~(size_t)63; }

static int64_t deq_block_rows(int64_t K, int64_t M) {
    int64_t mb = DEQ_BLOCK_ELEMS / K;
    if (mb < 16) mb = 16;
    return mb < M ? mb : M;
}

static bool rows_unit(const mmp_tensor *t) { return t->nb[0] == sizeof(float) && t->nb[1] % sizeof(float) == 0; }

static void blas_threads(const struct mmp__cpu_exec *ex) { openblas_set_num_threads(ex->n_threads); }

/* Convert one weight row (any type) to f32. */
static void row_to_f32(enum mmp_type ty, const void *src, float *dst, int64_t n) {
    if (ty == MMP_TYPE_F32) memcpy(dst, src, (size_t)n * sizeof(float));
    else if (ty == MMP_TYPE_F16) mmp__fp16_to_fp32_row(src, dst, n);
    else mmp_dequantize_row(ty, src, dst, n);
}

/* -------------------------------------------------------------- helpers ---- */

/* Dequantize rows [m0, m0+mb) of a weight matrix (row r at base + r*nb1) into dst [mb, K]. */
struct deq_task {
    enum mmp_type ty;
    const char *base;
    size_t nb1;
    int64_t K, m0, mb;
    float *dst;
};

static void deq_fn(void *arg, int ith, int nth) {
    struct deq_task *d = arg;
    int64_t r0, r1;
    mmp__split(d->mb, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        row_to_f32(d->ty, d->base + (size_t)(d->m0 + r) * d->nb1, d->dst + r * d->K, d->K);
}

/* Contiguous f32 copy of a strided f32 tensor (rows split over threads). */
struct copy_task { const mmp_tensor *s; float *dst; };

static void copy_fn(void *arg, int ith, int nth) {
    struct copy_task *c = arg;
    const mmp_tensor *s = c->s;
    const int64_t nr = mmp_nrows(s), ne0 = s->ne[0];
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1 = r % s->ne[1], i2 = (r / s->ne[1]) % s->ne[2], i3 = r / (s->ne[1] * s->ne[2]);
        const char *x = PTR(s, 0, i1, i2, i3);
        float *y = c->dst + r * ne0;
        if (s->type == MMP_TYPE_F16 && s->nb[0] == 2) { mmp__fp16_to_fp32_row((const uint16_t *)x, y, ne0); continue; }
        for (int64_t i = 0; i < ne0; i++) {
            const char *p = x + (size_t)i * s->nb[0];
            if (s->type == MMP_TYPE_F16) y[i] = mmp_fp16_to_fp32(mmp__rd_u16(p));
            else memcpy(&y[i], p, sizeof(float));
        }
    }
}

/* Make a contiguous f32 view of s in work memory; fills a fake tensor describing it. */
static void to_contig(struct mmp__cpu_exec *ex, const mmp_tensor *s, float *dst, mmp_tensor *out) {
    struct copy_task c = {s, dst};
    int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, mmp_nelements(s) / 16384));
    mmp__pool_run(ex->pool, copy_fn, &c, nth);
    *out = *s;
    out->type = MMP_TYPE_F32;
    out->data = dst;
    out->nb[0] = sizeof(float);
    out->nb[1] = (size_t)s->ne[0] * sizeof(float);
    out->nb[2] = out->nb[1] * (size_t)s->ne[1];
    out->nb[3] = out->nb[2] * (size_t)s->ne[2];
}

/* ------------------------------------------------------------- mul_mat ---- */

/* Mat-vec splitting. A mat-vec streams its weights once: below MV_PAR_BYTES (a few tens of
 * microseconds of memory traffic) it runs on the calling thread, because waking a worker and
 * moving the result between cores costs about as much. Above, the rows go out in chunks of
 * about MV_CHUNK_BYTES (fits L2 with room to spare; ~10 us each), claimed dynamically, so a
 * thread that is preempted or slow to wake just takes fewer chunks instead of stalling the
 * node, and the tail a slow thread can add is one chunk. Chunks are whole multiples of 4
 * rows (the dot kernels' natural unroll). */
#define MV_PAR_BYTES ((int64_t)256 << 10)
#define MV_CHUNK_BYTES ((int64_t)64 << 10)

/* Rows per chunk for M rows of row_bytes each; returns the number of chunks (1: inline). */
static int mv_split(const struct mmp__cpu_exec *ex, int64_t M, int64_t row_bytes, int64_t *rpc) {
    const int64_t total = M * MMP_MAX(row_bytes, (int64_t)1);
    *rpc = M;
    if (ex->n_threads <= 1 || total < MV_PAR_BYTES || M < 8) return 1;
    int64_t r = MMP_MAX((int64_t)4, MV_CHUNK_BYTES / MMP_MAX(row_bytes, (int64_t)1));
    /* at least 4 chunks per thread, so the split can even out */
    r = MMP_MIN(r, (M + 4 * ex->n_threads - 1) / (4 * ex->n_threads));
    r = (r + 3) & ~(int64_t)3;
    if (r < 4) r = 4;
    *rpc = r;
    return (int)((M + r - 1) / r);
}

struct mv_task {
    struct mmp__cpu_exec *ex;
    const mmp_tensor *a, *b;   /* b: unit-stride rows */
    mmp_tensor *t;
    mmp_vec_dot_fn dot;
    int64_t rpc;               /* weight rows per chunk (mv_split) */
};

/* dst[batch][n][m] = dot(a row m of the batch's matrix, b row n); chunk ith is weight rows
 * [ith*rpc, (ith+1)*rpc) of every batch. */
static void mv_fn(void *arg, int ith, int nth) {
    struct mv_task *mv = arg;
    const mmp_tensor *a = mv->a, *b = mv->b;
    mmp_tensor *t = mv->t;
    const int64_t K = a->ne[0], M = a->ne[1], N = b->ne[1];
    const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
    (void)nth;
    const int64_t m0 = (int64_t)ith * mv->rpc, m1 = MMP_MIN(M, m0 + mv->rpc);
    if (m0 >= m1) return;
    for (int64_t i3 = 0; i3 < b->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < b->ne[2]; i2++) {
            const char *W = PTR(a, 0, 0, i2 / r2, i3 / r3);
            float *Y = (float *)t->data + (i3 * t->ne[2] + i2) * t->ne[1] * M;
            if (N == 1) {
                mmp__matvec_rows(a->type, W, a->nb[1], K, (const float *)PTR(b, 0, 0, i2, i3), Y, m0, m1);
                continue;
            }
            for (int64_t m = m0; m < m1; m++) {
                const char *w = W + (size_t)m * a->nb[1];
                for (int64_t n = 0; n < N; n++)
                    Y[n * M + m] = mv->dot(K, w, (const float *)PTR(b, 0, n, i2, i3));
            }
        }
}

size_t mmp__cpu_work_size_mm(const mmp_tensor *t, int n_threads) {
    switch (t->op) {
    case MMP_OP_MUL_MAT: {
        const mmp_tensor *a = t->src[0], *b = t->src[1];
        size_t w = rows_unit(b) ? 0 : al((size_t)mmp_nelements(b) * sizeof(float));
        if (b->ne[1] >= GEMM_MIN_N && !(a->type == MMP_TYPE_F32 && a->nb[1] % sizeof(float) == 0))
            w += al((size_t)deq_block_rows(a->ne[0], a->ne[1]) * (size_t)a->ne[0] * sizeof(float));
        return w;
    }
    case MMP_OP_MUL_MAT_ID: {
        const mmp_tensor *as = t->src[0], *ids = t->src[2];
        const int64_t E = as->ne[2], P = mmp_nelements(ids), K = as->ne[0], M = as->ne[1];
        const int64_t ch = MMP_MIN(P, (int64_t)MOE_CHUNK);
        size_t w = al((size_t)(3 * E + 1 + P) * sizeof(int32_t));
        w += al((size_t)ch * (size_t)K * sizeof(float)) + al((size_t)ch * (size_t)M * sizeof(float));
        if (as->type != MMP_TYPE_F32) w += al((size_t)deq_block_rows(K, M) * (size_t)K * sizeof(float));
        return w;
    }
    case MMP_OP_CONV1D: case MMP_OP_CONV2D: {
        const mmp_tensor *w = t->src[0];
        const int64_t CK = w->ne[0] * w->ne[1] * (t->op == MMP_OP_CONV2D ? w->ne[2] : 1);
        const int64_t P = t->ne[0] * (t->op == MMP_OP_CONV2D ? t->ne[1] : 1);
        int64_t chunk = MMP_MAX((int64_t)1, MMP_MIN(P, COL_CHUNK_ELEMS / CK));
        size_t s = al((size_t)chunk * (size_t)CK * sizeof(float));
        if (w->type != MMP_TYPE_F32) s += al((size_t)mmp_nelements(w) * sizeof(float));
        return s;
    }
    case MMP_OP_ATTN: {
        const mmp_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2];
        const int64_t Tq = q->ne[1], Tk = k->ne[1];
        size_t vec = (size_t)n_threads * ATTN_CHUNKS_PER_THREAD * al((size_t)(Tk + 2 * v->ne[0]) * sizeof(float));
        size_t gem = al((size_t)MMP_MIN(Tq, (int64_t)ATTN_QCHUNK) * (size_t)Tk * sizeof(float));
        if (k->type != MMP_TYPE_F32) gem += al((size_t)mmp_nelements(k) * sizeof(float));
        if (v->type != MMP_TYPE_F32) gem += al((size_t)mmp_nelements(v) * sizeof(float));
        return vec > gem ? vec : gem;
    }
    default:
        return 0;
    }
}

enum mmp_status mmp__cpu_mul_mat(struct mmp__cpu_exec *ex, mmp_tensor *t) {
    const mmp_tensor *a = t->src[0], *b = t->src[1];
    const int64_t K = a->ne[0], M = a->ne[1], N = b->ne[1];
    char *work = ex->work;
    mmp_tensor bc;
    if (!rows_unit(b)) {
        to_contig(ex, b, (float *)work, &bc);
        b = &bc;
        work += al((size_t)mmp_nelements(b) * sizeof(float));
    }
    if (N < GEMM_MIN_N) {
        struct mv_task mv = {ex, a, b, t, mmp__vec_dot_fast(a->type), M};
        if (!mv.dot) return mmp__error(MMP_ERR_UNSUPPORTED, "mul_mat: no dot product for %s", mmp_type_name(a->type));
        /* bytes streamed per weight row: the row once per batch, plus N dot products */
        const int64_t row_cost = (int64_t)a->nb[1] * b->ne[2] * b->ne[3] * (N > 1 ? N : 1);
        int n_chunks = mv_split(ex, M, row_cost, &mv.rpc);
        mmp__pool_run_chunks(ex->pool, mv_fn, &mv, n_chunks);
        return MMP_OK;
    }
    const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
    const bool direct = a->type == MMP_TYPE_F32 && a->nb[1] % sizeof(float) == 0;
    const int64_t mb = deq_block_rows(K, M);
    blas_threads(ex);
    for (int64_t i3 = 0; i3 < b->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < b->ne[2]; i2++) {
            const char *A = PTR(a, 0, 0, i2 / r2, i3 / r3);
            const float *B = (const float *)PTR(b, 0, 0, i2, i3);
            const int ldb = (int)(b->nb[1] / sizeof(float));
            float *C = (float *)t->data + (i3 * t->ne[2] + i2) * t->ne[1] * M;
            /* C [N, M] = B [N, K] . A[M, K]^T */
            if (direct) {
                mmp__pool_park(ex->pool);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)M, (int)K, 1.0f, B, ldb,
                            (const float *)A, (int)(a->nb[1] / sizeof(float)), 0.0f, C, (int)M);
                continue;
            }
            for (int64_t m0 = 0; m0 < M; m0 += mb) {
                struct deq_task d = {a->type, A, a->nb[1], K, m0, MMP_MIN(mb, M - m0), (float *)work};
                int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, d.mb * K / 16384));
                mmp__pool_run(ex->pool, deq_fn, &d, nth);
                mmp__pool_park(ex->pool);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)d.mb, (int)K, 1.0f, B, ldb,
                            d.dst, (int)K, 0.0f, C + m0, (int)M);
            }
        }
    return MMP_OK;
}

/* ---------------------------------------------------------- mul_mat_id ---- */

struct moe_ctx {
    struct mmp__cpu_exec *ex;
    const mmp_tensor *as, *b, *ids;
    mmp_tensor *t;
    const int32_t *cnt, *off, *list;   /* pairs grouped by expert: list[off[e] .. off[e]+cnt[e]) */
    const int32_t *small;              /* experts that take the mat-vec path */
    int n_small;
    int64_t rpc;                       /* mat-vec path: weight rows per chunk */
    mmp_vec_dot_fn dot;
    /* gemm path */
    int e;
    int64_t p0, pc;
    float *X, *Y;
};

/* b row for pair p = j + t*k (slot j of token t). */
static const float *pair_x(const struct moe_ctx *c, int32_t p) {
    const int64_t k = c->ids->ne[0], j = p % k, tok = p / k;
    return (const float *)PTR(c->b, 0, c->b->ne[1] == 1 ? 0 : j, tok, 0);
}
static float *pair_y(const struct moe_ctx *c, int32_t p) {
    return (float *)c->t->data + (size_t)p * (size_t)c->t->ne[0];
}

/* Mat-vec experts: each thread does its slice of rows of every small expert's pairs. */
static void moe_mv_fn(void *arg, int ith, int nth) {
    struct moe_ctx *c = arg;
    const int64_t K = c->as->ne[0], M = c->as->ne[1];
    (void)nth;
    const int64_t m0 = (int64_t)ith * c->rpc, m1 = MMP_MIN(M, m0 + c->rpc);
    if (m0 >= m1) return;
    for (int s = 0; s < c->n_small; s++) {
        const int e = c->small[s];
        const char *W = PTR(c->as, 0, 0, e, 0);
        for (int32_t q = c->off[e]; q < c->off[e] + c->cnt[e]; q++) {
            const int32_t p = c->list[q];
            mmp__matvec_rows(c->as->type, W, c->as->nb[1], K, pair_x(c, p), pair_y(c, p), m0, m1);
        }
    }
}

static void moe_gather_fn(void *arg, int ith, int nth) {
    struct moe_ctx *c = arg;
    const int64_t K = c->as->ne[0];
    int64_t i0, i1;
    mmp__split(c->pc, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++)
        memcpy(c->X + i * K, pair_x(c, c->list[c->off[c->e] + c->p0 + i]), (size_t)K * sizeof(float));
}

static void moe_scatter_fn(void *arg, int ith, int nth) {
    struct moe_ctx *c = arg;
    const int64_t M = c->as->ne[1];
    int64_t i0, i1;
    mmp__split(c->pc, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++)
        memcpy(pair_y(c, c->list[c->off[c->e] + c->p0 + i]), c->Y + i * M, (size_t)M * sizeof(float));
}

enum mmp_status mmp__cpu_mul_mat_id(struct mmp__cpu_exec *ex, mmp_tensor *t) {
    const mmp_tensor *as = t->src[0], *b = t->src[1], *ids = t->src[2];
    const int64_t K = as->ne[0], M = as->ne[1], E = as->ne[2], k = ids->ne[0], T = ids->ne[1];
    const int64_t P = k * T;
    int32_t *cnt = (int32_t *)ex->work, *off = cnt + E, *list = off + E + 1, *small = list + P;
    char *fw = ex->work + al((size_t)(3 * E + 1 + P) * sizeof(int32_t));
    /* Counting sort of the (slot, token) pairs by expert, in token order within an expert. */
    memset(cnt, 0, (size_t)E * sizeof(int32_t));
    for (int64_t tok = 0; tok < T; tok++)
        for (int64_t j = 0; j < k; j++) {
            const int32_t e = *(const int32_t *)PTR(ids, j, tok, 0, 0);
            if (e < 0 || e >= E) {
                char lb[80];
                return mmp__error(MMP_ERR_INVALID_ARG, "mul_mat_id: expert id %d out of range [0, %lld) (ids='%s', token %lld)",
                                  (int)e, (long long)E, mmp__tensor_label(ids, lb, sizeof lb), (long long)tok);
            }
            cnt[e]++;
        }
    off[0] = 0;
    for (int64_t e = 0; e < E; e++) off[e + 1] = off[e] + cnt[e];
    for (int64_t e = 0; e < E; e++) cnt[e] = 0;
    for (int64_t tok = 0; tok < T; tok++)
        for (int64_t j = 0; j < k; j++) {
            const int32_t e = *(const int32_t *)PTR(ids, j, tok, 0, 0);
            list[off[e] + cnt[e]++] = (int32_t)(j + tok * k);
        }

    struct moe_ctx c = {0};
    c.ex = ex; c.as = as; c.b = b; c.ids = ids; c.t = t;
    c.cnt = cnt; c.off = off; c.list = list; c.small = small;
    c.dot = mmp__vec_dot_fast(as->type);
    for (int64_t e = 0; e < E; e++)
        if (cnt[e] > 0 && cnt[e] < GEMM_MIN_N) small[c.n_small++] = (int32_t)e;
    if (c.n_small > 0) {
        int64_t pairs = 0;
        for (int s = 0; s < c.n_small; s++) pairs += cnt[small[s]];
        /* per row chunk: one weight row of each small expert per pair (rows of different
         * experts are different memory) */
        int n_chunks = mv_split(ex, M, (int64_t)as->nb[1] * pairs, &c.rpc);
        mmp__pool_run_chunks(ex->pool, moe_mv_fn, &c, n_chunks);
    }
    /* Experts with many tokens: gather their inputs, one GEMM per expert (per chunk), scatter. */
    const int64_t ch = MMP_MIN(P, (int64_t)MOE_CHUNK);
    c.X = (float *)fw;
    c.Y = (float *)(fw + al((size_t)ch * (size_t)K * sizeof(float)));
    float *D = (float *)(fw + al((size_t)ch * (size_t)K * sizeof(float)) + al((size_t)ch * (size_t)M * sizeof(float)));
    const int64_t mb = deq_block_rows(K, M);
    bool blas_set = false;
    for (int64_t e = 0; e < E; e++) {
        if (cnt[e] < GEMM_MIN_N) continue;
        if (!blas_set) { blas_threads(ex); blas_set = true; }
        c.e = (int)e;
        const char *W = PTR(as, 0, 0, e, 0);
        for (c.p0 = 0; c.p0 < cnt[e]; c.p0 += ch) {
            c.pc = MMP_MIN(ch, cnt[e] - c.p0);
            int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, c.pc * K / 16384));
            mmp__pool_run(ex->pool, moe_gather_fn, &c, nth);
            if (as->type == MMP_TYPE_F32 && as->nb[1] % sizeof(float) == 0) {
                mmp__pool_park(ex->pool);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c.pc, (int)M, (int)K, 1.0f, c.X, (int)K,
                            (const float *)W, (int)(as->nb[1] / sizeof(float)), 0.0f, c.Y, (int)M);
            } else {
                for (int64_t m0 = 0; m0 < M; m0 += mb) {
                    struct deq_task d = {as->type, W, as->nb[1], K, m0, MMP_MIN(mb, M - m0), D};
                    int nd = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, d.mb * K / 16384));
                    mmp__pool_run(ex->pool, deq_fn, &d, nd);
                    mmp__pool_park(ex->pool);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c.pc, (int)d.mb, (int)K, 1.0f, c.X,
                                (int)K, D, (int)K, 0.0f, c.Y + m0, (int)M);
                }
            }
            nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, c.pc * M / 16384));
            mmp__pool_run(ex->pool, moe_scatter_fn, &c, nth);
        }
    }
    return MMP_OK;
}

/* ------------------------------------------------------------ conv1d/2d ---- */

struct im2col_task {
    const mmp_tensor *x, *w;
    bool two;
    int s0, s1, p0, p1, d0, d1;
    int64_t n, q0, qc, Wo;   /* batch, first output position, count, output width */
    float *col;              /* [qc, CK] */
};

static void im2col_fn(void *arg, int ith, int nth) {
    struct im2col_task *c = arg;
    const mmp_tensor *x = c->x, *w = c->w;
    const int64_t Kw = w->ne[0], Kh = c->two ? w->ne[1] : 1, Cin = c->two ? w->ne[2] : w->ne[1];
    const int64_t CK = Kw * Kh * Cin;
    int64_t i0, i1;
    mmp__split(c->qc, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        const int64_t q = c->q0 + i, ox = q % c->Wo, oy = q / c->Wo;
        float *row = c->col + i * CK;
        for (int64_t ci = 0; ci < Cin; ci++)
            for (int64_t kh = 0; kh < Kh; kh++) {
                const int64_t iy = c->two ? oy * c->s1 + kh * c->d1 - c->p1 : 0;
                for (int64_t kw = 0; kw < Kw; kw++) {
                    const int64_t ix = ox * c->s0 + kw * c->d0 - c->p0;
                    float v = 0.0f;
                    if (c->two) {
                        if (ix >= 0 && ix < x->ne[0] && iy >= 0 && iy < x->ne[1])
                            memcpy(&v, PTR(x, ix, iy, ci, c->n), sizeof v);
                    } else if (ix >= 0 && ix < x->ne[0]) {
                        memcpy(&v, PTR(x, ix, ci, c->n, 0), sizeof v);
                    }
                    row[(ci * Kh + kh) * Kw + kw] = v;
                }
            }
    }
}

static enum mmp_status conv_impl(struct mmp__cpu_exec *ex, mmp_tensor *t, bool two) {
    const mmp_tensor *w = t->src[0], *x = t->src[1];
    const int64_t Cout = two ? w->ne[3] : w->ne[2];
    const int64_t CK = w->ne[0] * w->ne[1] * (two ? w->ne[2] : 1);
    const int64_t P = t->ne[0] * (two ? t->ne[1] : 1);   /* output positions per image */
    const int64_t N = two ? x->ne[3] : x->ne[2];
    const int64_t chunk = MMP_MAX((int64_t)1, MMP_MIN(P, COL_CHUNK_ELEMS / CK));
    float *col = (float *)ex->work;
    const float *W = (const float *)w->data;
    if (w->type != MMP_TYPE_F32) {
        float *wf = (float *)(ex->work + al((size_t)chunk * (size_t)CK * sizeof(float)));
        struct deq_task d = {w->type, w->data, (size_t)CK * 2, CK, 0, Cout, wf};
        int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, Cout * CK / 16384));
        mmp__pool_run(ex->pool, deq_fn, &d, nth);
        W = wf;
    }
    struct im2col_task c = {x, w, two, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, col};
    if (two) {
        c.s0 = t->op_params[0]; c.s1 = t->op_params[1]; c.p0 = t->op_params[2];
        c.p1 = t->op_params[3]; c.d0 = t->op_params[4]; c.d1 = t->op_params[5];
    } else {
        c.s0 = t->op_params[0]; c.p0 = t->op_params[1]; c.d0 = t->op_params[2];
        c.s1 = 1; c.d1 = 1;
    }
    c.Wo = t->ne[0];
    blas_threads(ex);
    for (int64_t n = 0; n < N; n++) {
        c.n = n;
        float *out = (float *)t->data + n * Cout * P;
        for (c.q0 = 0; c.q0 < P; c.q0 += chunk) {
            c.qc = MMP_MIN(chunk, P - c.q0);
            int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, c.qc * CK / 16384));
            mmp__pool_run(ex->pool, im2col_fn, &c, nth);
            /* out [Cout, P] (columns q0..q0+qc) = W [Cout, CK] . col [qc, CK]^T */
            mmp__pool_park(ex->pool);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Cout, (int)c.qc, (int)CK, 1.0f, W, (int)CK, col,
                        (int)CK, 0.0f, out + c.q0, (int)P);
        }
    }
    return MMP_OK;
}

enum mmp_status mmp__cpu_conv1d(struct mmp__cpu_exec *ex, mmp_tensor *t) { return conv_impl(ex, t, false); }
enum mmp_status mmp__cpu_conv2d(struct mmp__cpu_exec *ex, mmp_tensor *t) { return conv_impl(ex, t, true); }

/* ------------------------------------------------------------ attention ---- */

struct attn_ctx {
    struct mmp__cpu_exec *ex;
    const mmp_tensor *q, *k, *v, *mask;
    mmp_tensor *t;
    float scale;
    bool causal;
    int64_t n_past;
    char *scratch;       /* per-thread (vector path) */
    size_t scratch_per;
    /* gemm path: one (b, h) and a chunk of queries */
    int64_t b, h, i0, qc;
    float *S;            /* [qc, Tk] */
    mmp_vec_dot_fn kdot; /* vector path: dot(k row, q row) for k's type */
};

/* Scaled scores row i (query) for head h, batch b, already in s[0..Tk): mask, causal,
 * softmax in place; returns false (and zeros) if every key is masked. */
static void softmax_scores(const struct attn_ctx *c, float *s, int64_t i, int64_t h) {
    const int64_t Tk = c->k->ne[1];
    const int64_t n_vis = c->causal ? MMP_MIN(Tk, i + c->n_past + 1) : Tk;
    const float *m = c->mask ? (const float *)PTR(c->mask, 0, i, c->mask->ne[2] > 1 ? h : 0, 0) : NULL;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n_vis; j++) {
        if (m) s[j] += m[j];
        if (s[j] > mx) mx = s[j];
    }
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < Tk; j++) s[j] = 0.0f;
        return;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n_vis; j++) { float e = expf(s[j] - mx); s[j] = e; sum += e; }
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n_vis; j++) s[j] *= inv;
    for (int64_t j = n_vis; j < Tk; j++) s[j] = 0.0f;
}

/* Decode-style attention: one (batch, head, query) row per step. Keys are read in place
 * (f32 or f16) with the SIMD dot kernels; f16 value rows are widened one at a time. */
static void attn_vec_fn(void *arg, int ith, int nth) {
    struct attn_ctx *c = arg;
    const mmp_tensor *q = c->q, *k = c->k, *v = c->v;
    const int64_t D = q->ne[0], Tq = q->ne[1], H = q->ne[2], B = q->ne[3];
    const int64_t Tk = k->ne[1], Hkv = k->ne[2], Dv = v->ne[0], grp = H / Hkv;
    float *s = (float *)(c->scratch + (size_t)ith * c->scratch_per);
    float *acc = s + Tk, *vrow = acc + Dv;
    const bool v16 = v->type == MMP_TYPE_F16;
    int64_t r0, r1;
    mmp__split(B * H * Tq, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t i = r % Tq, h = (r / Tq) % H, b = r / (Tq * H), hk = h / grp;
        const float *qr = (const float *)PTR(q, 0, i, h, b);
        const int64_t n_vis = c->causal ? MMP_MIN(Tk, i + c->n_past + 1) : Tk;
        for (int64_t j = 0; j < n_vis; j++) s[j] = c->kdot(D, PTR(k, 0, j, hk, b), qr) * c->scale;
        softmax_scores(c, s, i, h);
        for (int64_t x = 0; x < Dv; x++) acc[x] = 0.0f;
        for (int64_t j = 0; j < n_vis; j++) {
            const float p = s[j];
            if (p == 0.0f) continue;
            const float *vr = (const float *)PTR(v, 0, j, hk, b);
            if (v16) { mmp__fp16_to_fp32_row((const uint16_t *)vr, vrow, Dv); vr = vrow; }
            for (int64_t x = 0; x < Dv; x++) acc[x] += p * vr[x];
        }
        float *out = (float *)c->t->data + ((b * Tq + i) * H + h) * Dv;
        memcpy(out, acc, (size_t)Dv * sizeof(float));
    }
}

static void attn_softmax_fn(void *arg, int ith, int nth) {
    struct attn_ctx *c = arg;
    const int64_t Tk = c->k->ne[1];
    int64_t r0, r1;
    mmp__split(c->qc, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) softmax_scores(c, c->S + r * Tk, c->i0 + r, c->h);
}

enum mmp_status mmp__cpu_attn(struct mmp__cpu_exec *ex, mmp_tensor *t) {
    struct attn_ctx c = {0};
    c.ex = ex;
    c.q = t->src[0];
    c.k = t->src[1];
    c.v = t->src[2];
    c.mask = t->src[3];
    c.t = t;
    c.scale = mmp__param_f(t, 0);
    c.causal = t->op_params[1] != 0;
    c.n_past = t->op_params[2];
    char *w = ex->work;
    const int64_t D = c.q->ne[0], Tq = c.q->ne[1], H = c.q->ne[2], B = c.q->ne[3];
    const int64_t Tk = c.k->ne[1], Hkv = c.k->ne[2], Dv = c.v->ne[0], grp = H / Hkv;
    const bool strides_ok = c.q->nb[1] % 4 == 0 && c.k->nb[1] % 4 == 0 && c.v->nb[1] % 4 == 0 &&
                            c.k->nb[1] % c.k->nb[0] == 0 && c.v->nb[1] % c.v->nb[0] == 0;
    if (Tq < GEMM_MIN_N || Tk < GEMM_MIN_N || !strides_ok) {
        c.kdot = mmp__vec_dot_fast(c.k->type);
        if (!c.kdot) return mmp__error(MMP_ERR_UNSUPPORTED, "attn: no dot product for keys of type %s", mmp_type_name(c.k->type));
        c.scratch = w;
        c.scratch_per = al((size_t)(Tk + 2 * Dv) * sizeof(float));
        /* multiply-adds; below ATTN_PAR_WORK it runs on the calling thread. Chunks (each with
         * its own scratch slot) are rows of (batch, head, query), several per thread so that
         * a late thread only takes fewer. */
        const int64_t rows = B * H * Tq, cost = rows * Tk * (D + Dv);
        int64_t nc = 1;
        if (ex->n_threads > 1 && cost >= ATTN_PAR_WORK)
            nc = MMP_MIN(rows, MMP_MIN((int64_t)ex->n_threads * ATTN_CHUNKS_PER_THREAD, cost / (ATTN_PAR_WORK / 2)));
        mmp__pool_run_chunks(ex->pool, attn_vec_fn, &c, (int)MMP_MAX(nc, (int64_t)1));
        return MMP_OK;
    }
    /* GEMM path: f16 keys/values are widened to f32 first. */
    mmp_tensor kc, vc;
    if (c.k->type != MMP_TYPE_F32) {
        to_contig(ex, c.k, (float *)w, &kc);
        w += al((size_t)mmp_nelements(c.k) * sizeof(float));
        c.k = &kc;
    }
    if (c.v->type != MMP_TYPE_F32) {
        to_contig(ex, c.v, (float *)w, &vc);
        w += al((size_t)mmp_nelements(c.v) * sizeof(float));
        c.v = &vc;
    }
    /* Per (batch, head) and chunk of queries: S = scale Q K^T (sgemm), softmax rows (pool),
     * O = S V (sgemm) written straight into out [Dv, H, Tq] (row stride H*Dv). */
    c.S = (float *)w;
    blas_threads(ex);
    for (c.b = 0; c.b < B; c.b++)
        for (c.h = 0; c.h < H; c.h++) {
            const int64_t hk = c.h / grp;
            for (c.i0 = 0; c.i0 < Tq; c.i0 += ATTN_QCHUNK) {
                c.qc = MMP_MIN((int64_t)ATTN_QCHUNK, Tq - c.i0);
                const float *Q = (const float *)PTR(c.q, 0, c.i0, c.h, c.b);
                const float *Kp = (const float *)PTR(c.k, 0, 0, hk, c.b);
                const float *Vp = (const float *)PTR(c.v, 0, 0, hk, c.b);
                mmp__pool_park(ex->pool);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c.qc, (int)Tk, (int)D, c.scale, Q,
                            (int)(c.q->nb[1] / 4), Kp, (int)(c.k->nb[1] / 4), 0.0f, c.S, (int)Tk);
                int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, c.qc * Tk / 16384));
                mmp__pool_run(ex->pool, attn_softmax_fn, &c, nth);
                float *O = (float *)t->data + ((c.b * Tq + c.i0) * H + c.h) * Dv;
                mmp__pool_park(ex->pool);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c.qc, (int)Dv, (int)Tk, 1.0f, c.S, (int)Tk,
                            Vp, (int)(c.v->nb[1] / 4), 0.0f, O, (int)(H * Dv));
            }
        }
    return MMP_OK;
}
