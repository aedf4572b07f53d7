/* CPU kernels for every op except the matrix products (cpu_matmul.c).
 *
 * Each op runs as a pool task split by output rows (a "row" is everything above ne[0]); the
 * destination is contiguous (except for mmp_cpy, which writes a view). Sources may have any
 * strides. Small ops run on one thread to avoid the synchronisation cost. */
#include "backend-impl.h"
#include "kernels.h"
#include "util.h"

#include <math.h>
#include <float.h>

#define PTR(t, i0, i1, i2, i3) \
    ((char *)(t)->data + (size_t)(i0) * (t)->nb[0] + (size_t)(i1) * (t)->nb[1] + (size_t)(i2) * (t)->nb[2] + (size_t)(i3) * (t)->nb[3])

struct task {
    struct mmp__cpu_exec *ex;
    mmp_tensor *t;
};

/* Threads worth using for `n` units of work (an element of a copy or an add is 1 unit; see
 * op_cost). A second thread is used only from 2 * PAR_WORK units (tens of microseconds): below
 * that, waking it and moving the data between cores costs about what it saves, so tiny
 * decode nodes (norms, adds, rope on one token) run on the calling thread without touching
 * the pool at all. */
#define PAR_WORK 32768
static int nth_for(const struct mmp__cpu_exec *ex, int64_t n) {
    int64_t k = n / PAR_WORK;
    if (k < 1) k = 1;
    return (int)MMP_MIN((int64_t)ex->n_threads, k);
}

static inline void unravel(int64_t r, const mmp_tensor *t, int64_t *i1, int64_t *i2, int64_t *i3) {
    *i1 = r % t->ne[1];
    *i2 = (r / t->ne[1]) % t->ne[2];
    *i3 = r / (t->ne[1] * t->ne[2]);
}

/* Read a row of `a` (f32, any nb[0]) into contiguous floats, or return it in place. */
static inline const float *row_f32(const mmp_tensor *a, int64_t i1, int64_t i2, int64_t i3, float *tmp) {
    const char *p = PTR(a, 0, i1, i2, i3);
    if (a->nb[0] == sizeof(float)) return (const float *)p;
    for (int64_t i = 0; i < a->ne[0]; i++) memcpy(&tmp[i], p + (size_t)i * a->nb[0], sizeof(float));
    return tmp;
}

static inline float act(enum mmp_unary op, float x) {
    switch (op) {
    case MMP_UNARY_GELU:       return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case MMP_UNARY_GELU_TANH:  return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case MMP_UNARY_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    case MMP_UNARY_SILU:       return x / (1.0f + expf(-x));
    case MMP_UNARY_RELU:       return x > 0.0f ? x : 0.0f;
    case MMP_UNARY_SIGMOID:    return 1.0f / (1.0f + expf(-x));
    case MMP_UNARY_TANH:       return tanhf(x);
    default:                   return x;
    }
}

/* y[i] = act(op, x[i]) for GELU (erf) and the sigmoid family (SiLU, quick GELU, sigmoid), 8 lanes at a time
 * where AVX2 is there: sigmoid(z) from e = exp(-|z|) (never overflows) as 1/(1+e) for z >= 0
 * and e/(1+e) below. Returns how many leading elements it did (the caller does the rest). */
static int64_t act_sigmoid_vec(enum mmp_unary op, const float *x, float *y, int64_t n) {
    int64_t i = 0;
#ifdef MMP_HAVE_EXP_NEG_PS
    if (op == MMP_UNARY_GELU) {
        /* 0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7,
         * against a 1 it is added to), odd in its argument */
        const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(x + i);
            const __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
            const __m256 az = _mm256_andnot_ps(sign, z);
            const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
            __m256 p = _mm256_set1_ps(1.061405429f);
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
            p = _mm256_mul_ps(p, t);
            const __m256 e = mmp__exp_neg_ps(_mm256_or_ps(_mm256_mul_ps(z, z), sign));   /* exp(-z^2) */
            const __m256 erf_abs = _mm256_fnmadd_ps(p, e, one);
            const __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign, z));
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf)));
        }
        return i;
    }
    if (op != MMP_UNARY_SILU && op != MMP_UNARY_QUICK_GELU && op != MMP_UNARY_SIGMOID) return 0;
    const __m256 k = _mm256_set1_ps(op == MMP_UNARY_QUICK_GELU ? 1.702f : 1.0f);
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i), z = _mm256_mul_ps(v, k);
        const __m256 e = mmp__exp_neg_ps(_mm256_or_ps(z, sign));   /* exp(-|z|) */
        const __m256 den = _mm256_add_ps(one, e);
        const __m256 pos = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OQ);
        const __m256 sg = _mm256_div_ps(_mm256_blendv_ps(e, one, pos), den);
        _mm256_storeu_ps(y + i, op == MMP_UNARY_SIGMOID ? sg : _mm256_mul_ps(v, sg));
    }
#else
    (void)op; (void)x; (void)y; (void)n;
#endif
    return i;
}

/* Per-thread row scratch for non-contiguous sources: ne0 floats per source per thread. */
static float *thread_tmp(struct mmp__cpu_exec *ex, int ith, int64_t n_per_thread) {
    return (float *)ex->work + (size_t)ith * (size_t)n_per_thread;
}

/* ------------------------------------------------------- elementwise ---- */

static void binary_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0], *b = t->src[1];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    float *tmp = thread_tmp(tk->ex, ith, 2 * ne0);
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        const float *x = row_f32(a, i1, i2, i3, tmp);
        const char *bp = PTR(b, 0, i1 % b->ne[1], i2 % b->ne[2], i3 % b->ne[3]);
        float *y = (float *)t->data + r * ne0;
        const int64_t bn = b->ne[0];
        float *yb = tmp + ne0;
        if (bn == 1 && ne0 > 1) {
            /* per-row scalar (a bias over channels on [W, H, C] maps) */
            float bv;
            memcpy(&bv, bp, sizeof bv);
            switch (t->op) {
            case MMP_OP_ADD: for (int64_t i = 0; i < ne0; i++) y[i] = x[i] + bv; break;
            case MMP_OP_SUB: for (int64_t i = 0; i < ne0; i++) y[i] = x[i] - bv; break;
            case MMP_OP_MUL: for (int64_t i = 0; i < ne0; i++) y[i] = x[i] * bv; break;
            default:         for (int64_t i = 0; i < ne0; i++) y[i] = x[i] / bv; break;
            }
            continue;
        }
        /* expand b's row to ne0 values (broadcast along ne[0] when bn < ne0) */
        const float *yv;
        if (bn == ne0 && b->nb[0] == sizeof(float)) {
            yv = (const float *)bp;
        } else {
            for (int64_t i = 0; i < ne0; i++) memcpy(&yb[i], bp + (size_t)(i % bn) * b->nb[0], sizeof(float));
            yv = yb;
        }
        switch (t->op) {
        case MMP_OP_ADD: for (int64_t i = 0; i < ne0; i++) y[i] = x[i] + yv[i]; break;
        case MMP_OP_SUB: for (int64_t i = 0; i < ne0; i++) y[i] = x[i] - yv[i]; break;
        case MMP_OP_MUL: for (int64_t i = 0; i < ne0; i++) y[i] = x[i] * yv[i]; break;
        default:         for (int64_t i = 0; i < ne0; i++) y[i] = x[i] / yv[i]; break;
        }
    }
}

static void map_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    float *tmp = thread_tmp(tk->ex, ith, 2 * a->ne[0]);
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    const float p0 = mmp__param_f(t, 0), p1 = mmp__param_f(t, 1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        const float *x = row_f32(a, i1, i2, i3, tmp);
        float *y = (float *)t->data + r * ne0;
        switch (t->op) {
        case MMP_OP_SCALE:
            for (int64_t i = 0; i < ne0; i++) y[i] = x[i] * p0 + p1;
            break;
        case MMP_OP_CLAMP:
            for (int64_t i = 0; i < ne0; i++) y[i] = x[i] < p0 ? p0 : (x[i] > p1 ? p1 : x[i]);
            break;
        case MMP_OP_UNARY: {
            enum mmp_unary op = (enum mmp_unary)t->op_params[0];
            for (int64_t i = act_sigmoid_vec(op, x, y, ne0); i < ne0; i++) y[i] = act(op, x[i]);
            break;
        }
        case MMP_OP_GLU: {
            enum mmp_unary op = (enum mmp_unary)t->op_params[0];
            const float *g = row_f32(t->src[1], i1, i2, i3, tmp + a->ne[0]);
            int64_t i = 0;
            if (y != g) {   /* act into y, then scale by the gate */
                i = act_sigmoid_vec(op, x, y, ne0);
                for (int64_t j = 0; j < i; j++) y[j] *= g[j];
            }
            for (; i < ne0; i++) y[i] = act(op, x[i]) * g[i];
            break;
        }
        case MMP_OP_SUM_ROWS: {
            double s = 0.0;
            for (int64_t i = 0; i < a->ne[0]; i++) s += x[i];
            y = (float *)t->data + r;
            y[0] = (float)s;
            break;
        }
        case MMP_OP_RMS_NORM: {
            double s = 0.0;
            for (int64_t i = 0; i < ne0; i++) s += (double)x[i] * x[i];
            const float k = (float)(1.0 / sqrt(s / (double)ne0 + (double)p0));
            for (int64_t i = 0; i < ne0; i++) y[i] = x[i] * k;
            break;
        }
        case MMP_OP_LAYER_NORM: {
            double s = 0.0, s2 = 0.0;
            for (int64_t i = 0; i < ne0; i++) s += x[i];
            const double mean = s / (double)ne0;
            for (int64_t i = 0; i < ne0; i++) { double d = x[i] - mean; s2 += d * d; }
            const float k = (float)(1.0 / sqrt(s2 / (double)ne0 + (double)p0));
            const float m = (float)mean;
            const float *w = t->src[1] ? (const float *)t->src[1]->data : NULL;
            const float *b = t->src[2] ? (const float *)t->src[2]->data : NULL;
            for (int64_t i = 0; i < ne0; i++) {
                float v = (x[i] - m) * k;
                if (w) v *= w[i];
                if (b) v += b[i];
                y[i] = v;
            }
            break;
        }
        default:
            break;
        }
    }
}

/* ------------------------------------------------------------ softmax ---- */

static void softmax_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0], *mask = t->src[1];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    float *tmp = thread_tmp(tk->ex, ith, ne0);
    const float scale = mmp__param_f(t, 0);
    const bool causal = t->op_params[1] != 0;
    const int64_t n_past = t->op_params[2];
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        const float *x = row_f32(a, i1, i2, i3, tmp);
        float *y = (float *)t->data + r * ne0;
        const float *m = mask ? (const float *)PTR(mask, 0, i1, i2 % mask->ne[2], 0) : NULL;
        const int64_t n_vis = causal ? MMP_MIN(ne0, i1 + n_past + 1) : ne0;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n_vis; i++) {
            float v = x[i] * scale + (m ? m[i] : 0.0f);
            y[i] = v;
            if (v > mx) mx = v;
        }
        if (mx == -INFINITY) {   /* every key masked: a zero row rather than NaNs */
            for (int64_t i = 0; i < ne0; i++) y[i] = 0.0f;
            continue;
        }
        double sum = 0.0;
        for (int64_t i = 0; i < n_vis; i++) { float e = expf(y[i] - mx); y[i] = e; sum += e; }
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n_vis; i++) y[i] *= inv;
        for (int64_t i = n_vis; i < ne0; i++) y[i] = 0.0f;
    }
}

/* --------------------------------------------------------------- rope ---- */

/* Phase 1: cos/sin table [T][n_rot/2][2] in the work buffer (angles in double). */
static void rope_table_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t;
    const int n_rot = t->op_params[0];
    const double base = mmp__param_f(t, 2), fs = mmp__param_f(t, 3);
    const int32_t *pos = (const int32_t *)t->src[1]->data;
    float *tab = (float *)tk->ex->work;
    int64_t t0, t1;
    mmp__split(t->ne[2], ith, nth, &t0, &t1);
    for (int64_t ti = t0; ti < t1; ti++)
        for (int i = 0; i < n_rot / 2; i++) {
            double th = (double)pos[ti] * fs * pow(base, -2.0 * i / n_rot);
            tab[(ti * (n_rot / 2) + i) * 2 + 0] = (float)cos(th);
            tab[(ti * (n_rot / 2) + i) * 2 + 1] = (float)sin(th);
        }
}

static void rope_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    const int n_rot = t->op_params[0], half = n_rot / 2;
    const bool neox = t->op_params[1] == MMP_ROPE_NEOX;
    float *tmp = (float *)tk->ex->work + (size_t)t->ne[2] * (size_t)n_rot + (size_t)ith * (size_t)ne0;
    const float *tab = (const float *)tk->ex->work;
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        const float *x = row_f32(a, i1, i2, i3, tmp);
        float *y = (float *)t->data + r * ne0;
        const float *cs = tab + (size_t)i2 * (size_t)n_rot;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int j0 = neox ? i : 2 * i, j1 = neox ? i + half : 2 * i + 1;
            const float x0 = x[j0], x1 = x[j1];
            y[j0] = x0 * c - x1 * s;
            y[j1] = x0 * s + x1 * c;
        }
        for (int64_t i = n_rot; i < ne0; i++) y[i] = x[i];
    }
}

/* ----------------------------------------------------------- group norm ---- */

static void group_norm_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0];
    const int G = t->op_params[0];
    const double eps = mmp__param_f(t, 1);
    const int64_t W = a->ne[0], H = a->ne[1], C = a->ne[2], N = a->ne[3], cpg = C / G;
    const float *w = t->src[1] ? (const float *)t->src[1]->data : NULL;
    const float *b = t->src[2] ? (const float *)t->src[2]->data : NULL;
    int64_t g0, g1;
    mmp__split(N * G, ith, nth, &g0, &g1);
    for (int64_t gi = g0; gi < g1; gi++) {
        const int64_t n = gi / G, c0 = (gi % G) * cpg;
        double s = 0.0, s2 = 0.0;
        for (int64_t c = c0; c < c0 + cpg; c++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t x = 0; x < W; x++) s += *(const float *)PTR(a, x, h, c, n);
        const double cnt = (double)(cpg * H * W), mean = s / cnt;
        for (int64_t c = c0; c < c0 + cpg; c++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t x = 0; x < W; x++) { double d = *(const float *)PTR(a, x, h, c, n) - mean; s2 += d * d; }
        const float k = (float)(1.0 / sqrt(s2 / cnt + eps)), m = (float)mean;
        for (int64_t c = c0; c < c0 + cpg; c++) {
            const float wc = w ? w[c] : 1.0f, bc = b ? b[c] : 0.0f;
            for (int64_t h = 0; h < H; h++) {
                float *y = (float *)t->data + ((n * C + c) * H + h) * W;
                for (int64_t x = 0; x < W; x++) y[x] = (*(const float *)PTR(a, x, h, c, n) - m) * k * wc + bc;
            }
        }
    }
}

/* ------------------------------------------------------- copies, layout ---- */

static inline float load_elem(enum mmp_type ty, const char *p) {
    switch (ty) {
    case MMP_TYPE_F32: { float v; memcpy(&v, p, 4); return v; }
    case MMP_TYPE_F16: return mmp_fp16_to_fp32(mmp__rd_u16(p));
    case MMP_TYPE_BF16: return mmp_bf16_to_fp32(mmp__rd_u16(p));
    default: return 0.0f;
    }
}

static void cont_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        const char *x = PTR(a, 0, i1, i2, i3);
        if (a->type == MMP_TYPE_I32 || a->type == MMP_TYPE_F32) {
            char *y = (char *)t->data + (size_t)r * (size_t)ne0 * 4;
            if (a->nb[0] == 4) memcpy(y, x, (size_t)ne0 * 4);
            else for (int64_t i = 0; i < ne0; i++) memcpy(y + i * 4, x + (size_t)i * a->nb[0], 4);
        } else if (a->type == MMP_TYPE_F16 && a->nb[0] == 2) {
            mmp__fp16_to_fp32_row((const uint16_t *)x, (float *)t->data + r * ne0, ne0);
        } else {
            float *y = (float *)t->data + r * ne0;
            for (int64_t i = 0; i < ne0; i++) y[i] = load_elem(a->type, x + (size_t)i * a->nb[0]);
        }
    }
}

static inline void store_elem(enum mmp_type ty, char *p, float v) {
    switch (ty) {
    case MMP_TYPE_F32: memcpy(p, &v, 4); break;
    case MMP_TYPE_F16: mmp__wr_u16(p, mmp_fp32_to_fp16(v)); break;
    case MMP_TYPE_BF16: mmp__wr_u16(p, mmp_fp32_to_bf16(v)); break;
    default: break;
    }
}

/* src (f32, any strides) -> dst view (any float type, any strides), element order = flat
 * index order of each. Rows of dst are split across threads. */
static void cpy_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *s = t->src[0];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    const bool s_flat = mmp_is_contiguous(s);
    const bool same_rows = s->ne[0] == ne0;
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        char *y = PTR(t, 0, i1, i2, i3);
        if (s_flat) {
            const float *x = (const float *)s->data + r * ne0;
            if (t->type == MMP_TYPE_F32 && t->nb[0] == 4) memcpy(y, x, (size_t)ne0 * 4);
            else if (t->type == MMP_TYPE_F16 && t->nb[0] == 2) mmp__fp32_to_fp16_row(x, (uint16_t *)y, ne0);
            else for (int64_t i = 0; i < ne0; i++) store_elem(t->type, y + (size_t)i * t->nb[0], x[i]);
        } else if (same_rows) {
            int64_t j1, j2, j3;
            unravel(r, s, &j1, &j2, &j3);
            const char *x = PTR(s, 0, j1, j2, j3);
            for (int64_t i = 0; i < ne0; i++) {
                float v;
                memcpy(&v, x + (size_t)i * s->nb[0], 4);
                store_elem(t->type, y + (size_t)i * t->nb[0], v);
            }
        } else {
            for (int64_t i = 0; i < ne0; i++) {
                int64_t f = r * ne0 + i;
                int64_t j0 = f % s->ne[0], rr = f / s->ne[0], j1, j2, j3;
                unravel(rr, s, &j1, &j2, &j3);
                float v;
                memcpy(&v, PTR(s, j0, j1, j2, j3), 4);
                store_elem(t->type, y + (size_t)i * t->nb[0], v);
            }
        }
    }
}

static void concat_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0], *b = t->src[1];
    const int dim = t->op_params[0];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i[4];
        unravel(r, t, &i[1], &i[2], &i[3]);
        float *y = (float *)t->data + r * ne0;
        for (int64_t x = 0; x < ne0; x++) {
            i[0] = x;
            const mmp_tensor *s = i[dim] < a->ne[dim] ? a : b;
            int64_t j[4] = {i[0], i[1], i[2], i[3]};
            if (s == b) j[dim] -= a->ne[dim];
            memcpy(&y[x], PTR(s, j[0], j[1], j[2], j[3]), 4);
        }
    }
}

static void upsample_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0];
    const int k = t->op_params[0];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        const char *x = PTR(a, 0, i1 / k, i2, i3);
        float *y = (float *)t->data + r * ne0;
        for (int64_t i = 0; i < ne0; i++) memcpy(&y[i], x + (size_t)(i / k) * a->nb[0], 4);
    }
}

static void pool_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    const bool two = t->op == MMP_OP_POOL2D;
    int k0, k1, s0, s1, p0, p1;
    if (two) {
        k0 = t->op_params[0]; k1 = t->op_params[1]; s0 = t->op_params[2];
        s1 = t->op_params[3]; p0 = t->op_params[4]; p1 = t->op_params[5];
    } else {
        k0 = t->op_params[0]; s0 = t->op_params[1]; p0 = t->op_params[2];
        k1 = 1; s1 = 1; p1 = 0;
    }
    const float inv = 1.0f / (float)(k0 * k1);
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        float *y = (float *)t->data + r * ne0;
        for (int64_t o = 0; o < ne0; o++) {
            float s = 0.0f;
            for (int dy = 0; dy < k1; dy++) {
                int64_t yy = two ? i1 * s1 - p1 + dy : i1;
                if (yy < 0 || yy >= a->ne[1]) continue;
                for (int dx = 0; dx < k0; dx++) {
                    int64_t xx = o * s0 - p0 + dx;
                    if (xx < 0 || xx >= a->ne[0]) continue;
                    s += *(const float *)PTR(a, xx, yy, i2, i3);
                }
            }
            y[o] = s * inv;
        }
    }
}

/* ------------------------------------------------------------- get_rows ---- */

static void get_rows_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0], *ids = t->src[1];
    const int64_t ne0 = t->ne[0], nr = mmp_nrows(t);
    const size_t row_bytes = mmp_row_size(a->type, ne0);
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);   /* ids index (i1, i2, i3) */
        const int32_t id = *(const int32_t *)PTR(ids, i1, i2, i3, 0);
        if (id < 0 || id >= a->ne[1]) { mmp__cpu_fail(tk->ex, MMP_ERR_INVALID_ARG, id, a->ne[1]); return; }
        const char *x = PTR(a, 0, id, a->ne[2] > 1 ? i2 : 0, 0);
        char *y = (char *)t->data + (size_t)r * (size_t)ne0 * 4;
        if (a->type == MMP_TYPE_F32 || a->type == MMP_TYPE_I32) memcpy(y, x, row_bytes);
        else if (a->type == MMP_TYPE_F16) mmp__fp16_to_fp32_row((const uint16_t *)x, (float *)y, ne0);
        else mmp_dequantize_row(a->type, x, (float *)y, ne0);
    }
}

/* --------------------------------------------------------- top_k, argmax ---- */

static void topk_task(void *arg, int ith, int nth) {
    struct task *tk = arg;
    mmp_tensor *t = tk->t, *a = t->src[0];
    const int64_t n = a->ne[0], nr = mmp_nrows(t);
    const int k = t->op == MMP_OP_TOP_K ? t->op_params[0] : 1;
    float *vals = (float *)tk->ex->work + (size_t)ith * (size_t)(k + n);
    float *tmp = vals + k;
    int64_t r0, r1;
    mmp__split(nr, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1, i2, i3;
        unravel(r, t, &i1, &i2, &i3);
        const float *x = row_f32(a, i1, i2, i3, tmp);
        int32_t *y = (int32_t *)t->data + r * k;
        if (k == 1) {
            /* first maximum; NaN never wins (index 0 if all are NaN) */
            int64_t best = 0;
            float bv = x[0];
            for (int64_t i = 1; i < n; i++)
                if (x[i] > bv || (bv != bv && x[i] == x[i])) { bv = x[i]; best = i; }
            y[0] = (int32_t)best;
            continue;
        }
        /* Sorted insertion of a running top-k (descending); scanning in index order and
         * inserting only past strictly smaller values keeps lower indices first on ties.
         * NaN compares as smaller than everything. */
        int cnt = 0;
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i];
            if (cnt == k && !(v > vals[k - 1] || (vals[k - 1] != vals[k - 1] && v == v))) continue;
            int p = cnt < k ? cnt : k - 1;
            while (p > 0 && (v > vals[p - 1] || (vals[p - 1] != vals[p - 1] && v == v))) {
                vals[p] = vals[p - 1];
                y[p] = y[p - 1];
                p--;
            }
            vals[p] = v;
            y[p] = (int32_t)i;
            if (cnt < k) cnt++;
        }
    }
}

/* ----------------------------------------------------------- dispatcher ---- */

/* Relative cost per element: transcendentals (exp, erf, tanh, sin/cos) and the two passes
 * of a norm cost more than an add or a copy. */
static int64_t op_cost(const mmp_tensor *t) {
    switch (t->op) {
    case MMP_OP_UNARY: case MMP_OP_GLU: return t->op_params[0] == MMP_UNARY_RELU ? 1 : 8;
    case MMP_OP_SOFTMAX: case MMP_OP_ROPE: return 8;
    case MMP_OP_RMS_NORM: case MMP_OP_LAYER_NORM: case MMP_OP_GROUP_NORM: return 2;
    default: return 1;
    }
}

size_t mmp__cpu_work_size_ops(const mmp_tensor *t, int n_threads) {
    const size_t nt = (size_t)n_threads;
    switch (t->op) {
    case MMP_OP_ADD: case MMP_OP_SUB: case MMP_OP_MUL: case MMP_OP_DIV:
    case MMP_OP_SCALE: case MMP_OP_CLAMP: case MMP_OP_UNARY: case MMP_OP_GLU:
    case MMP_OP_RMS_NORM: case MMP_OP_LAYER_NORM: case MMP_OP_SUM_ROWS:
        return nt * 2 * (size_t)t->src[0]->ne[0] * sizeof(float);
    case MMP_OP_SOFTMAX:
        return nt * (size_t)t->ne[0] * sizeof(float);
    case MMP_OP_ROPE:
        return ((size_t)t->ne[2] * (size_t)t->op_params[0] + nt * (size_t)t->ne[0]) * sizeof(float);
    case MMP_OP_TOP_K: case MMP_OP_ARGMAX: {
        size_t k = t->op == MMP_OP_TOP_K ? (size_t)t->op_params[0] : 1;
        return nt * (k + (size_t)t->src[0]->ne[0]) * sizeof(float);
    }
    default:
        return 0;
    }
}

enum mmp_status mmp__cpu_op_elementwise(struct mmp__cpu_exec *ex, mmp_tensor *t) {
    struct task tk = {ex, t};
    const int64_t n = mmp_nelements(t);
    mmp__task_fn fn = NULL;
    int64_t par = mmp_nrows(t);   /* units the op splits over */
    int64_t cost = n;
    switch (t->op) {
    case MMP_OP_ADD: case MMP_OP_SUB: case MMP_OP_MUL: case MMP_OP_DIV: fn = binary_task; break;
    case MMP_OP_SCALE: case MMP_OP_CLAMP: case MMP_OP_UNARY: case MMP_OP_GLU:
    case MMP_OP_RMS_NORM: case MMP_OP_LAYER_NORM: fn = map_task; break;
    case MMP_OP_SUM_ROWS: fn = map_task; cost = mmp_nelements(t->src[0]); break;
    case MMP_OP_SOFTMAX: fn = softmax_task; break;
    case MMP_OP_GROUP_NORM: fn = group_norm_task; par = t->ne[3] * t->op_params[0]; break;
    case MMP_OP_CONT: fn = cont_task; break;
    case MMP_OP_CPY: fn = cpy_task; break;
    case MMP_OP_CONCAT: fn = concat_task; break;
    case MMP_OP_UPSAMPLE: fn = upsample_task; break;
    case MMP_OP_POOL1D: fn = pool_task; cost = n * t->op_params[0]; break;
    case MMP_OP_POOL2D: fn = pool_task; cost = n * t->op_params[0] * t->op_params[1]; break;
    case MMP_OP_GET_ROWS: fn = get_rows_task; break;
    case MMP_OP_TOP_K: case MMP_OP_ARGMAX: fn = topk_task; cost = mmp_nelements(t->src[0]); break;
    case MMP_OP_ROPE: {
        int nth = (int)MMP_MIN((int64_t)nth_for(ex, t->ne[2] * t->op_params[0] * 8), t->ne[2]);
        mmp__pool_run(ex->pool, rope_table_task, &tk, nth < 1 ? 1 : nth);
        fn = rope_task;
        break;
    }
    default:
        return mmp__error(MMP_ERR_INTERNAL, "cpu backend: no kernel for op %s", mmp_op_name(t->op));
    }
    int nth = nth_for(ex, cost * op_cost(t));
    if (nth > par) nth = (int)par;
    if (nth < 1) nth = 1;
    mmp__pool_run(ex->pool, fn, &tk, nth);
    return MMP_OK;
}
