/* CPU matrix products: mul_mat, mul_mat_id (MoE), conv1d/conv2d (im2col + GEMM), attention.
 *
 * Regimes:
 *   - few right-hand columns (decode, N < GEMM_MIN_N): mat-vec over weight rows with the dot
 *     kernels of core/vec.c, reading F16/BF16/quantized weights in place; rows split across
 *     the pool's threads. Memory-bound: each weight byte is read once.
 *   - many columns (prefill, encoders, convolutions): OpenBLAS sgemm. Non-F32 weights are
 *     converted to f32 in blocks of rows into the work buffer (the pool does the conversion),
 *     then sgemm runs on the block with openblas_set_num_threads(n_threads) while the pool
 *     sleeps.
 *   - exceptions, where many independent small products beat one big one: prefill attention
 *     (per (batch, head, query block)) and convolutions with small weights (per tile of output
 *     positions) run single-threaded sgemm calls inside the pool's threads, with BLAS set to
 *     1 thread for the node, so each block's intermediate stays in its core's cache.
 * Convolutions use im2col in a [taps, positions] layout (sequential reads, NoTrans GEMM); a
 * contiguous 1x1 uses the input directly; <= 4 output channels skip the GEMM altogether. */
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
/* most query rows per attention GEMM unit (attn_qblock) */
#define ATTN_QCHUNK 256
/* vector attention: multiply-adds worth a second thread, and chunks per thread (scratch slots) */
#define ATTN_PAR_WORK ((int64_t)1 << 17)
#define ATTN_CHUNKS_PER_THREAD 4

#define PTR(t, i0, i1, i2, i3) \
    ((char *)(t)->data + (size_t)(i0) * (t)->nb[0] + (size_t)(i1) * (t)->nb[1] + (size_t)(i2) * (t)->nb[2] + (size_t)(i3) * (t)->nb[3])

static size_t al(size_t x) { return (x + 63) & ~(size_t)63; }

/* Queries per GEMM-attention unit: a score block of about 1 MiB (measured faster than
 * 256 KiB blocks for Whisper's 1500 keys: taller blocks suit sgemm), and at least 4 D rows,
 * since every unit packs its head's whole K and V (Tk x D each) again: with the VAE's one
 * 512-wide head, 64-row units spent about as long packing as multiplying. 16..ATTN_QCHUNK. */
static int64_t attn_qblock(int64_t Tq, int64_t Tk, int64_t D) {
    int64_t qb = ((int64_t)256 << 10) / MMP_MAX(Tk, (int64_t)1);
    qb = MMP_MAX(qb, 4 * D);
    qb = MMP_MAX((int64_t)16, MMP_MIN((int64_t)ATTN_QCHUNK, qb));
    return MMP_MIN(qb, Tq);
}

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

static size_t conv_work(const mmp_tensor *t, int n_threads);

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
    case MMP_OP_CONV1D: case MMP_OP_CONV2D:
        return conv_work(t, n_threads);
    case MMP_OP_ATTN: {
        const mmp_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2];
        const int64_t Tq = q->ne[1], Tk = k->ne[1];
        size_t vec = (size_t)n_threads * ATTN_CHUNKS_PER_THREAD * al((size_t)(Tk + 2 * v->ne[0]) * sizeof(float));
        const size_t qb = (size_t)attn_qblock(Tq, Tk, q->ne[0]);
        size_t gem = (size_t)n_threads * al((qb * (size_t)Tk + qb) * sizeof(float));
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

/* im2col in the "rows of kernel taps" layout: col [CK, qc], row r = (ci, kh, kw) holds the
 * input value under tap r for each of the qc output positions q0..q0+qc. Each row is built
 * from one input row (fixed ci, iy) read left to right, so the reads are sequential and, for
 * stride 1, a memcpy between two zero-padded edges; the GEMM is then out [Cout, qc] =
 * W [Cout, CK] . col [CK, qc], both operands untransposed (the fast case for OpenBLAS). */
struct im2col_task {
    const mmp_tensor *x, *w;
    bool two;
    int s0, s1, p0, p1, d0, d1;
    int64_t n, nb;           /* batch items n .. n+nb-1 side by side (nb > 1 only when qc == P) */
    int64_t q0, qc, Wo;      /* first output position, count, output width */
    float *col;              /* [CK, nb * qc]: batch item k in columns k*qc .. (k+1)*qc */
};

/* d[0 .. ox1-ox0) = input under tap (ci, kh, kw) of image n for output row oy, columns
 * ox0..ox1 (zeros in the padding). */
static void col_segment(const struct im2col_task *c, int64_t ci, int64_t kh, int64_t kw, int64_t n, int64_t oy,
                        int64_t ox0, int64_t ox1, float *d) {
    const mmp_tensor *x = c->x;
    const int64_t Wi = x->ne[0], Hi = c->two ? x->ne[1] : 1, len = ox1 - ox0;
    const int64_t iy = c->two ? oy * c->s1 + kh * c->d1 - c->p1 : 0;
    if (iy < 0 || iy >= Hi) { memset(d, 0, (size_t)len * sizeof(float)); return; }
    const char *xr = c->two ? PTR(x, 0, iy, ci, n) : PTR(x, 0, ci, n, 0);
    const int64_t off = kw * c->d0 - c->p0;   /* ix = ox * s0 + off */
    if (c->s0 == 1 && x->nb[0] == sizeof(float)) {
        /* valid ox: 0 <= ox + off < Wi */
        const int64_t a = MMP_MAX(ox0, -off), b = MMP_MIN(ox1, Wi - off);
        if (a >= b) { memset(d, 0, (size_t)len * sizeof(float)); return; }
        if (a > ox0) memset(d, 0, (size_t)(a - ox0) * sizeof(float));
        memcpy(d + (a - ox0), (const float *)xr + (a + off), (size_t)(b - a) * sizeof(float));
        if (b < ox1) memset(d + (b - ox0), 0, (size_t)(ox1 - b) * sizeof(float));
        return;
    }
    for (int64_t ox = ox0; ox < ox1; ox++) {
        const int64_t ix = ox * c->s0 + off;
        float v = 0.0f;
        if (ix >= 0 && ix < Wi) memcpy(&v, xr + (size_t)ix * x->nb[0], sizeof v);
        d[ox - ox0] = v;
    }
}

static void im2col_fn(void *arg, int ith, int nth) {
    struct im2col_task *c = arg;
    const mmp_tensor *w = c->w;
    const int64_t Kw = w->ne[0], Kh = c->two ? w->ne[1] : 1, Cin = c->two ? w->ne[2] : w->ne[1];
    const int64_t CK = Kw * Kh * Cin;
    int64_t r0, r1;
    mmp__split(CK, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        for (int64_t bi = 0; bi < c->nb; bi++) {
            const int64_t kw = r % Kw, kh = (r / Kw) % Kh, ci = r / (Kw * Kh);
            float *dst = c->col + (r * c->nb + bi) * c->qc;
            /* walk the positions one output row (segment) at a time */
            for (int64_t q = c->q0; q < c->q0 + c->qc;) {
                const int64_t oy = q / c->Wo, ox0 = q % c->Wo;
                const int64_t ox1 = MMP_MIN(c->Wo, ox0 + (c->q0 + c->qc - q));
                col_segment(c, ci, kh, kw, c->n + bi, oy, ox0, ox1, dst + (q - c->q0));
                q += ox1 - ox0;
            }
        }
}

/* Few output channels (an RGB conv_out: Cout 3): a GEMM with M = 3 streams an im2col matrix
 * of CK x P floats (1.2 GB for a 512x512 image from 128 channels) to do 3 multiply-adds per
 * element. Instead, each unit (image, output row) builds one tap's input row at a time in
 * per-thread scratch [Wo] and adds it, times each channel's weight, into the output rows. */
#define CONV_DIRECT_MAX_COUT 4
struct conv_direct_task {
    struct im2col_task c;
    const float *W;        /* [Cout, CK] f32 */
    float *out;            /* [N, Cout, Ho, Wo] */
    int64_t Cout, Ho;
    float *scratch;        /* [n_threads][Wo] */
    atomic_llong next;
};

static void conv_direct_fn(void *arg, int ith, int nth) {
    struct conv_direct_task *d = arg;
    const struct im2col_task *c = &d->c;
    const mmp_tensor *w = c->w;
    const int64_t Kw = w->ne[0], Kh = c->two ? w->ne[1] : 1, Cin = c->two ? w->ne[2] : w->ne[1];
    const int64_t CK = Kw * Kh * Cin, Wo = c->Wo, Ho = d->Ho, N = c->nb;
    float *buf = d->scratch + (size_t)ith * (size_t)Wo;
    (void)nth;
    for (;;) {
        const int64_t u = atomic_fetch_add(&d->next, 1);
        if (u >= N * Ho) break;
        const int64_t n = u / Ho, oy = u % Ho;
        float *o[CONV_DIRECT_MAX_COUT];
        for (int64_t co = 0; co < d->Cout; co++) {
            o[co] = d->out + ((n * d->Cout + co) * Ho + oy) * Wo;
            memset(o[co], 0, (size_t)Wo * sizeof(float));
        }
        for (int64_t r = 0; r < CK; r++) {
            const int64_t kw = r % Kw, kh = (r / Kw) % Kh, ci = r / (Kw * Kh);
            col_segment(c, ci, kh, kw, n, oy, 0, Wo, buf);
            for (int64_t co = 0; co < d->Cout; co++) {
                const float wv = d->W[co * CK + r];
                float *restrict y = o[co];
                for (int64_t x = 0; x < Wo; x++) y[x] += wv * buf[x];
            }
        }
    }
}

/* Small weights (Cout x CK <= CONV_TILE_MAX_W floats: TAESD's 64-channel and the VAE's
 * 128-channel convs): each thread claims tiles of `tile` output positions of one image,
 * builds the tile's im2col [CK, tile] in its own L2-sized scratch and runs a single-threaded
 * sgemm on it at once, so the column matrix never leaves the core's cache and there is no
 * park / BLAS-wake round trip per chunk. (The weights, re-read per tile, are small.) */
#define CONV_TILE_MAX_W ((int64_t)256 << 10)
#define CONV_TILE_ELEMS ((int64_t)256 << 10)
struct conv_tile_task {
    struct im2col_task c;
    const float *W;
    float *out;
    int64_t Cout, CK, P, tile, N;
    float *scratch;   /* [n_threads][CK * tile] */
    atomic_llong next;
};

static int64_t conv_tile_of(int64_t CK, int64_t P) {
    int64_t t = MMP_MAX((int64_t)16, CONV_TILE_ELEMS / CK);
    t = (t + 15) & ~(int64_t)15;
    return MMP_MIN(t, P);
}

static void conv_tile_fn(void *arg, int ith, int nth) {
    struct conv_tile_task *d = arg;
    const struct im2col_task *c = &d->c;
    const mmp_tensor *w = c->w;
    const int64_t Kw = w->ne[0], Kh = c->two ? w->ne[1] : 1;
    const int64_t per = (d->P + d->tile - 1) / d->tile;
    float *col = d->scratch + (size_t)ith * (size_t)(d->CK * d->tile);
    (void)nth;
    for (;;) {
        const int64_t u = atomic_fetch_add(&d->next, 1);
        if (u >= d->N * per) break;
        const int64_t n = u / per, q0 = (u % per) * d->tile, qc = MMP_MIN(d->tile, d->P - q0);
        for (int64_t r = 0; r < d->CK; r++) {
            const int64_t kw = r % Kw, kh = (r / Kw) % Kh, ci = r / (Kw * Kh);
            float *dst = col + r * qc;
            for (int64_t q = q0; q < q0 + qc;) {
                const int64_t oy = q / c->Wo, ox0 = q % c->Wo;
                const int64_t ox1 = MMP_MIN(c->Wo, ox0 + (q0 + qc - q));
                col_segment(c, ci, kh, kw, n, oy, ox0, ox1, dst + (q - q0));
                q += ox1 - ox0;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d->Cout, (int)qc, (int)d->CK, 1.0f, d->W,
                    (int)d->CK, col, (int)qc, 0.0f, d->out + n * d->Cout * d->P + q0, (int)d->P);
    }
}

/* Columns of a conv GEMM: chunks of `chunk` output positions of one image; when a whole image
 * has fewer positions than the chunk budget (the UNet's 8x8 and 4x4 levels), `nb` images go
 * side by side in one GEMM, so each (large) weight matrix is streamed once for the batch
 * instead of once per image; the result then goes through a [Cout, nb*P] buffer. */
#define CONV_MERGE_COLS 4096
struct conv_plan { int64_t CK, P, N, Cout, chunk, nb; };

static struct conv_plan conv_plan_of(const mmp_tensor *t) {
    const bool two = t->op == MMP_OP_CONV2D;
    const mmp_tensor *w = t->src[0], *x = t->src[1];
    struct conv_plan p;
    p.Cout = two ? w->ne[3] : w->ne[2];
    p.CK = w->ne[0] * w->ne[1] * (two ? w->ne[2] : 1);
    p.P = t->ne[0] * (two ? t->ne[1] : 1);
    p.N = two ? x->ne[3] : x->ne[2];
    const int64_t budget = MMP_MAX((int64_t)1, COL_CHUNK_ELEMS / p.CK);
    p.chunk = MMP_MIN(p.P, budget);
    p.nb = 1;
    if (p.N > 1 && p.P < budget && 2 * p.P <= CONV_MERGE_COLS)
        p.nb = MMP_MIN(p.N, MMP_MIN(budget, (int64_t)CONV_MERGE_COLS) / p.P);
    return p;
}

/* Bytes of the first work region: the im2col chunk, or the direct path's per-thread rows. */
static size_t conv_col_bytes(const struct conv_plan *p, const mmp_tensor *t, int n_threads) {
    size_t s = (size_t)p->chunk * (size_t)p->nb * (size_t)p->CK;
    if (p->Cout <= CONV_DIRECT_MAX_COUT) s = MMP_MAX(s, (size_t)n_threads * (size_t)t->ne[0]);
    else if (p->Cout * p->CK <= CONV_TILE_MAX_W)
        s = MMP_MAX(s, (size_t)n_threads * (size_t)(p->CK * conv_tile_of(p->CK, p->P)));
    return al(s * sizeof(float));
}

static size_t conv_work(const mmp_tensor *t, int n_threads) {
    const struct conv_plan p = conv_plan_of(t);
    size_t s = conv_col_bytes(&p, t, n_threads);
    if (p.nb > 1) s += al((size_t)p.Cout * (size_t)p.nb * (size_t)p.P * sizeof(float));
    if (t->src[0]->type != MMP_TYPE_F32) s += al((size_t)mmp_nelements(t->src[0]) * sizeof(float));
    return s;
}

/* out image n0+k [Cout, P] = tmp [Cout, k*P .. (k+1)*P) */
struct conv_scatter { const float *tmp; float *out; int64_t Cout, P, nb; };

static void conv_scatter_fn(void *arg, int ith, int nth) {
    struct conv_scatter *c = arg;
    int64_t r0, r1;
    mmp__split(c->Cout * c->nb, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t co = r % c->Cout, k = r / c->Cout;
        memcpy(c->out + (k * c->Cout + co) * c->P, c->tmp + (co * c->nb + k) * c->P, (size_t)c->P * sizeof(float));
    }
}

static enum mmp_status conv_impl(struct mmp__cpu_exec *ex, mmp_tensor *t, bool two) {
    const mmp_tensor *w = t->src[0], *x = t->src[1];
    const struct conv_plan pl = conv_plan_of(t);
    const int64_t Cout = pl.Cout, CK = pl.CK, P = pl.P, N = pl.N, chunk = pl.chunk;
    char *wk = ex->work;
    float *col = (float *)wk;
    wk += conv_col_bytes(&pl, t, ex->n_threads);
    float *tmp = NULL;
    if (pl.nb > 1) {
        tmp = (float *)wk;
        wk += al((size_t)Cout * (size_t)pl.nb * (size_t)P * sizeof(float));
    }
    const float *W = (const float *)w->data;
    if (w->type != MMP_TYPE_F32) {
        float *wf = (float *)wk;
        struct deq_task d = {w->type, w->data, (size_t)CK * 2, CK, 0, Cout, wf};
        int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, Cout * CK / 16384));
        mmp__pool_run(ex->pool, deq_fn, &d, nth);
        W = wf;
    }
    struct im2col_task c = {x, w, two, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, col};
    if (two) {
        c.s0 = t->op_params[0]; c.s1 = t->op_params[1]; c.p0 = t->op_params[2];
        c.p1 = t->op_params[3]; c.d0 = t->op_params[4]; c.d1 = t->op_params[5];
    } else {
        c.s0 = t->op_params[0]; c.p0 = t->op_params[1]; c.d0 = t->op_params[2];
        c.s1 = 1; c.d1 = 1;
    }
    c.Wo = t->ne[0];
    /* A 1x1 kernel with stride 1 and no padding reads the input as it is: x [Cin, P] is
     * already the col matrix when each channel's plane is contiguous. */
    const bool pointwise = w->ne[0] == 1 && (!two || w->ne[1] == 1) && c.s0 == 1 && c.p0 == 0 &&
                           (!two || (c.s1 == 1 && c.p1 == 0)) && t->ne[0] == x->ne[0] &&
                           (!two || t->ne[1] == x->ne[1]) && x->nb[0] == sizeof(float) &&
                           (two ? x->nb[1] == (size_t)x->ne[0] * sizeof(float) &&
                                      x->nb[2] == (size_t)P * sizeof(float)
                                : x->nb[1] == (size_t)P * sizeof(float));
    if (Cout <= CONV_DIRECT_MAX_COUT && !pointwise) {
        struct conv_direct_task d;
        memset(&d, 0, sizeof d);
        d.c = c;
        d.c.n = 0;
        d.c.nb = N;
        d.W = W;
        d.out = (float *)t->data;
        d.Cout = Cout;
        d.Ho = two ? t->ne[1] : 1;
        d.scratch = col;
        atomic_init(&d.next, 0);
        const int64_t work = N * P * CK * (Cout + 1);
        int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MIN(N * d.Ho, MMP_MAX((int64_t)1, work / 65536)));
        mmp__pool_run(ex->pool, conv_direct_fn, &d, nth);
        return MMP_OK;
    }
    if (Cout * CK <= CONV_TILE_MAX_W && !pointwise) {
        struct conv_tile_task d;
        memset(&d, 0, sizeof d);
        d.c = c;
        d.W = W;
        d.out = (float *)t->data;
        d.Cout = Cout; d.CK = CK; d.P = P; d.N = N;
        d.tile = conv_tile_of(CK, P);
        d.scratch = col;
        atomic_init(&d.next, 0);
        const int64_t units = N * ((P + d.tile - 1) / d.tile);
        const int64_t work = N * P * CK * Cout;
        int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MIN(units, MMP_MAX((int64_t)1, work / ((int64_t)1 << 20))));
        openblas_set_num_threads(1);
        mmp__pool_run(ex->pool, conv_tile_fn, &d, nth);
        blas_threads(ex);
        return MMP_OK;
    }
    blas_threads(ex);
    for (int64_t n = 0; n < N;) {
        float *out = (float *)t->data + n * Cout * P;
        if (pointwise) {
            const float *B = (const float *)(two ? PTR(x, 0, 0, 0, n) : PTR(x, 0, 0, n, 0));
            mmp__pool_park(ex->pool);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cout, (int)P, (int)CK, 1.0f, W, (int)CK, B,
                        (int)P, 0.0f, out, (int)P);
            n++;
            continue;
        }
        c.n = n;
        c.nb = MMP_MIN(pl.nb, N - n);
        for (c.q0 = 0; c.q0 < P; c.q0 += chunk) {
            c.qc = MMP_MIN(chunk, P - c.q0);
            const int64_t cols = c.nb * c.qc;
            int nth = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, cols * CK / 16384));
            mmp__pool_run(ex->pool, im2col_fn, &c, nth);
            mmp__pool_park(ex->pool);
            if (c.nb == 1) {
                /* out [Cout, P] (columns q0..q0+qc) = W [Cout, CK] . col [CK, qc] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cout, (int)c.qc, (int)CK, 1.0f, W,
                            (int)CK, col, (int)c.qc, 0.0f, out + c.q0, (int)P);
            } else {
                /* tmp [Cout, nb*P] = W . col [CK, nb*P], then per image into out */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cout, (int)cols, (int)CK, 1.0f, W,
                            (int)CK, col, (int)cols, 0.0f, tmp, (int)cols);
                struct conv_scatter sc = {tmp, out, Cout, P, c.nb};
                int ns = (int)MMP_MIN((int64_t)ex->n_threads, MMP_MAX((int64_t)1, Cout * cols / 16384));
                mmp__pool_run(ex->pool, conv_scatter_fn, &sc, ns);
            }
        }
        n += c.nb;
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
    /* gemm path: queries per unit, next unit to claim */
    int64_t qb;
    atomic_llong next;
    mmp_vec_dot_fn kdot; /* vector path: dot(k row, q row) for k's type */
};

/* s[j] = exp(s[j] - mx) for j < n; returns the sum (double, as the reference). */
static double exp_sub_sum(float *s, int64_t n, float mx) {
    int64_t j = 0;
    double sum = 0.0;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 e = mmp__exp_neg_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float a8[8];
    _mm256_storeu_ps(a8, acc);
    for (int i = 0; i < 8; i++) sum += a8[i];
#endif
    for (; j < n; j++) { float e = expf(s[j] - mx); s[j] = e; sum += e; }
    return sum;
}

/* max of s[0..n) (n >= 1; -INFINITY when all are) */
static float row_max(const float *s, int64_t n) {
    int64_t j = 0;
    float mx = -INFINITY;
#if defined(__AVX2__) && defined(__FMA__)
    if (n >= 8) {
        __m256 m = _mm256_set1_ps(-INFINITY);
        for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
        float a8[8];
        _mm256_storeu_ps(a8, m);
        for (int i = 0; i < 8; i++) mx = a8[i] > mx ? a8[i] : mx;
    }
#endif
    for (; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    return mx;
}

/* Scaled scores row i (query) for head h, batch b, already in s[0..n_cols): mask, causal,
 * exp(s - max). Normalized in place when `normalize`; otherwise the caller scales the output
 * row by the returned 1/sum (0 when every key is masked: the row is zeros). Columns from the
 * causal horizon up to n_cols are zeroed. */
static float softmax_scores(const struct attn_ctx *c, float *s, int64_t i, int64_t h, int64_t n_cols, bool normalize) {
    const int64_t Tk = c->k->ne[1];
    const int64_t n_vis = c->causal ? MMP_MIN(Tk, i + c->n_past + 1) : Tk;
    const float *m = c->mask ? (const float *)PTR(c->mask, 0, i, c->mask->ne[2] > 1 ? h : 0, 0) : NULL;
    if (m)
        for (int64_t j = 0; j < n_vis; j++) s[j] += m[j];
    const float mx = n_vis > 0 ? row_max(s, n_vis) : -INFINITY;
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < n_cols; j++) s[j] = 0.0f;
        return 0.0f;
    }
    const double sum = exp_sub_sum(s, n_vis, mx);
    const float inv = (float)(1.0 / sum);
    if (normalize)
        for (int64_t j = 0; j < n_vis; j++) s[j] *= inv;
    for (int64_t j = n_vis; j < n_cols; j++) s[j] = 0.0f;
    return normalize ? 1.0f : inv;
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
        softmax_scores(c, s, i, h, Tk, true);
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

/* GEMM attention, one unit = (batch, head, block of qb queries), claimed dynamically by each
 * pool chunk (one scratch slot S [qb, Tk] per chunk): S = scale Q K^T, softmax rows,
 * O = S V written straight into out [Dv, H, Tq] (row stride H*Dv). The products run as
 * single-threaded sgemm calls inside the pool's threads (BLAS set to 1 thread for the node):
 * a block's scores stay in that core's cache between the three steps, and there is no
 * park / BLAS-wake round trip per block. */
static void attn_gemm_fn(void *arg, int ith, int nth) {
    struct attn_ctx *c = arg;
    (void)nth;
    const int64_t Tq = c->q->ne[1], H = c->q->ne[2], B = c->q->ne[3], D = c->q->ne[0];
    const int64_t Tk = c->k->ne[1], Hkv = c->k->ne[2], Dv = c->v->ne[0], grp = H / Hkv;
    const int64_t nqb = (Tq + c->qb - 1) / c->qb, units = B * H * nqb;
    float *S = (float *)(c->scratch + (size_t)ith * c->scratch_per);
    float *inv = S + c->qb * Tk;   /* [qb] */
    for (;;) {
        const int64_t u = atomic_fetch_add(&c->next, 1);
        if (u >= units) break;
        const int64_t ib = u % nqb, h = (u / nqb) % H, b = u / (nqb * H), hk = h / grp;
        const int64_t i0 = ib * c->qb, qc = MMP_MIN(c->qb, Tq - i0);
        const float *Q = (const float *)PTR(c->q, 0, i0, h, b);
        const float *Kp = (const float *)PTR(c->k, 0, 0, hk, b);
        const float *Vp = (const float *)PTR(c->v, 0, 0, hk, b);
        /* causal: keys past the last query's horizon get no weight; skip them in the products */
        const int64_t nk = c->causal ? MMP_MIN(Tk, i0 + qc + c->n_past) : Tk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)qc, (int)nk, (int)D, c->scale, Q,
                    (int)(c->q->nb[1] / 4), Kp, (int)(c->k->nb[1] / 4), 0.0f, S, (int)Tk);
        /* unnormalized probabilities; each output row is scaled by its 1/sum afterwards (Dv
         * multiplies per row instead of another pass over Tk scores) */
        for (int64_t r = 0; r < qc; r++) inv[r] = softmax_scores(c, S + r * Tk, i0 + r, h, nk, false);
        float *O = (float *)c->t->data + ((b * Tq + i0) * H + h) * Dv;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)qc, (int)Dv, (int)nk, 1.0f, S, (int)Tk,
                    Vp, (int)(c->v->nb[1] / 4), 0.0f, O, (int)(H * Dv));
        for (int64_t r = 0; r < qc; r++) {
            float *o = O + r * H * Dv;
            for (int64_t x = 0; x < Dv; x++) o[x] *= inv[r];
        }
    }
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
    const int64_t Tk = c.k->ne[1], Dv = c.v->ne[0];
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
    c.qb = attn_qblock(Tq, Tk, D);
    c.scratch = w;
    c.scratch_per = al(((size_t)c.qb * (size_t)Tk + (size_t)c.qb) * sizeof(float));
    atomic_init(&c.next, 0);
    const int64_t units = B * H * ((Tq + c.qb - 1) / c.qb);
    const int nth = (int)MMP_MIN((int64_t)ex->n_threads, units);
    openblas_set_num_threads(1);
    mmp__pool_run(ex->pool, attn_gemm_fn, &c, nth);
    blas_threads(ex);
    return MMP_OK;
}
