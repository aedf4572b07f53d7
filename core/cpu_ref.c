/* Scalar references for every op: the plainest loops that follow the op's definition, in
 * double precision, reading sources element by element through their strides. They share no
 * code with the fast kernels (cpu_ops.c, cpu_matmul.c) except the scalar reference
 * dequantizer; tests/test_ops.c compares the two on random inputs of odd sizes. */
#include "backend-impl.h"
#include "kernels.h"
#include "util.h"

#include <math.h>

static const char *eptr(const mmp_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return (const char *)t->data + (size_t)i0 * t->nb[0] + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] +
           (size_t)i3 * t->nb[3];
}

/* Element of a plain-typed tensor (F32/F16/BF16/I32) as double. */
static double get(const mmp_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    const char *p = eptr(t, i0, i1, i2, i3);
    switch (t->type) {
    case MMP_TYPE_F32: { float v; memcpy(&v, p, 4); return v; }
    case MMP_TYPE_F16: { uint16_t h; memcpy(&h, p, 2); return mmp__fp16_to_fp32_ref(h); }
    case MMP_TYPE_BF16: { uint16_t h; memcpy(&h, p, 2); uint32_t u = (uint32_t)h << 16; float v; memcpy(&v, &u, 4); return v; }
    case MMP_TYPE_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    default: return NAN;
    }
}

/* Row (i1, i2, i3) of any type (quantized included) into f32 via the reference dequantizer. */
static enum mmp_status get_row(const mmp_tensor *t, int64_t i1, int64_t i2, int64_t i3, float *dst) {
    const mmp_type_traits *tr = mmp_type_get_traits(t->type);
    if (tr->is_quantized || t->type == MMP_TYPE_F16 || t->type == MMP_TYPE_BF16)
        return mmp__dequantize_row_ref(t->type, eptr(t, 0, i1, i2, i3), dst, t->ne[0]);
    for (int64_t i = 0; i < t->ne[0]; i++) dst[i] = (float)get(t, i, i1, i2, i3);
    return MMP_OK;
}

static double ref_act(int op, double x) {
    switch (op) {
    case MMP_UNARY_GELU:       return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case MMP_UNARY_GELU_TANH:  return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case MMP_UNARY_QUICK_GELU: return x / (1.0 + exp(-1.702 * x));
    case MMP_UNARY_SILU:       return x / (1.0 + exp(-x));
    case MMP_UNARY_RELU:       return x > 0 ? x : 0;
    case MMP_UNARY_SIGMOID:    return 1.0 / (1.0 + exp(-x));
    case MMP_UNARY_TANH:       return tanh(x);
    default:                   return x;
    }
}

/* index into a contiguous dst of t's shape */
#define DI(t, i0, i1, i2, i3) ((((i3) * (t)->ne[2] + (i2)) * (t)->ne[1] + (i1)) * (t)->ne[0] + (i0))
#define FOR4(t) \
    for (int64_t i3 = 0; i3 < (t)->ne[3]; i3++) \
        for (int64_t i2 = 0; i2 < (t)->ne[2]; i2++) \
            for (int64_t i1 = 0; i1 < (t)->ne[1]; i1++) \
                for (int64_t i0 = 0; i0 < (t)->ne[0]; i0++)

static int cmp_desc(const void *x, const void *y, const float *v) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    float va = v[a], vb = v[b];
    bool na = va != va, nb = vb != vb;
    if (na != nb) return na ? 1 : -1;      /* NaN last */
    if (!na && va != vb) return va > vb ? -1 : 1;
    return a < b ? -1 : (a > b);
}

/* insertion sort of indices (stable, O(n^2) but only for tests) */
static void sort_idx(int32_t *idx, int64_t n, const float *v) {
    for (int64_t i = 1; i < n; i++) {
        int32_t x = idx[i];
        int64_t j = i;
        while (j > 0 && cmp_desc(&x, &idx[j - 1], v) < 0) { idx[j] = idx[j - 1]; j--; }
        idx[j] = x;
    }
}

enum mmp_status mmp__ref_compute(const mmp_tensor *t, void *dst_) {
    float *dst = dst_;
    const mmp_tensor *a = t->src[0], *b = t->src[1];
    switch (t->op) {
    case MMP_OP_MUL_MAT: {
        const int64_t K = a->ne[0], r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
        float *row = mmp__malloc((size_t)K * sizeof(float));
        if (!row) return MMP_ERR_NOMEM;
        for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
            for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
                for (int64_t m = 0; m < t->ne[0]; m++) {
                    enum mmp_status s = get_row(a, m, i2 / r2, i3 / r3, row);
                    if (s != MMP_OK) { free(row); return s; }
                    for (int64_t n = 0; n < t->ne[1]; n++) {
                        double acc = 0;
                        for (int64_t k = 0; k < K; k++) acc += (double)row[k] * get(b, k, n, i2, i3);
                        dst[DI(t, m, n, i2, i3)] = (float)acc;
                    }
                }
        free(row);
        return MMP_OK;
    }
    case MMP_OP_MUL_MAT_ID: {
        const mmp_tensor *ids = t->src[2];
        const int64_t K = a->ne[0];
        float *row = mmp__malloc((size_t)K * sizeof(float));
        if (!row) return MMP_ERR_NOMEM;
        for (int64_t tok = 0; tok < ids->ne[1]; tok++)
            for (int64_t j = 0; j < ids->ne[0]; j++) {
                int64_t e = (int64_t)get(ids, j, tok, 0, 0);
                if (e < 0 || e >= a->ne[2]) { free(row); return mmp__error(MMP_ERR_INVALID_ARG, "ref mul_mat_id: id %lld", (long long)e); }
                for (int64_t m = 0; m < a->ne[1]; m++) {
                    get_row(a, m, e, 0, row);
                    double acc = 0;
                    for (int64_t k = 0; k < K; k++) acc += (double)row[k] * get(b, k, b->ne[1] == 1 ? 0 : j, tok, 0);
                    dst[DI(t, m, j, tok, 0)] = (float)acc;
                }
            }
        free(row);
        return MMP_OK;
    }
    case MMP_OP_GET_ROWS: {
        float *row = mmp__malloc((size_t)a->ne[0] * sizeof(float));
        if (!row) return MMP_ERR_NOMEM;
        for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
            for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
                for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
                    int64_t id = (int64_t)get(b, i1, i2, i3, 0);
                    if (id < 0 || id >= a->ne[1]) { free(row); return mmp__error(MMP_ERR_INVALID_ARG, "ref get_rows: id %lld", (long long)id); }
                    if (a->type == MMP_TYPE_I32) {
                        for (int64_t i0 = 0; i0 < t->ne[0]; i0++)
                            ((int32_t *)dst)[DI(t, i0, i1, i2, i3)] = (int32_t)get(a, i0, id, a->ne[2] > 1 ? i2 : 0, 0);
                        continue;
                    }
                    get_row(a, id, a->ne[2] > 1 ? i2 : 0, 0, row);
                    for (int64_t i0 = 0; i0 < t->ne[0]; i0++) dst[DI(t, i0, i1, i2, i3)] = row[i0];
                }
        free(row);
        return MMP_OK;
    }
    case MMP_OP_ADD: case MMP_OP_SUB: case MMP_OP_MUL: case MMP_OP_DIV:
        FOR4(t) {
            double x = get(a, i0, i1, i2, i3);
            double y = get(b, i0 % b->ne[0], i1 % b->ne[1], i2 % b->ne[2], i3 % b->ne[3]);
            double r = t->op == MMP_OP_ADD ? x + y : t->op == MMP_OP_SUB ? x - y : t->op == MMP_OP_MUL ? x * y : x / y;
            dst[DI(t, i0, i1, i2, i3)] = (float)r;
        }
        return MMP_OK;
    case MMP_OP_SCALE:
        FOR4(t) dst[DI(t, i0, i1, i2, i3)] = (float)(get(a, i0, i1, i2, i3) * mmp__param_f(t, 0) + mmp__param_f(t, 1));
        return MMP_OK;
    case MMP_OP_CLAMP:
        FOR4(t) dst[DI(t, i0, i1, i2, i3)] = (float)fmin(fmax(get(a, i0, i1, i2, i3), mmp__param_f(t, 0)), mmp__param_f(t, 1));
        return MMP_OK;
    case MMP_OP_UNARY:
        FOR4(t) dst[DI(t, i0, i1, i2, i3)] = (float)ref_act(t->op_params[0], get(a, i0, i1, i2, i3));
        return MMP_OK;
    case MMP_OP_GLU:
        FOR4(t) dst[DI(t, i0, i1, i2, i3)] = (float)(ref_act(t->op_params[0], get(a, i0, i1, i2, i3)) * get(b, i0, i1, i2, i3));
        return MMP_OK;
    case MMP_OP_SUM_ROWS:
        for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
            for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
                for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
                    double s = 0;
                    for (int64_t i0 = 0; i0 < a->ne[0]; i0++) s += get(a, i0, i1, i2, i3);
                    dst[DI(t, 0, i1, i2, i3)] = (float)s;
                }
        return MMP_OK;
    case MMP_OP_RMS_NORM: case MMP_OP_LAYER_NORM: {
        const double eps = mmp__param_f(t, 0);
        const mmp_tensor *w = t->src[1], *bb = t->src[2];
        for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
            for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
                for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
                    const int64_t n = a->ne[0];
                    double mean = 0, var = 0;
                    if (t->op == MMP_OP_LAYER_NORM) {
                        for (int64_t i0 = 0; i0 < n; i0++) mean += get(a, i0, i1, i2, i3);
                        mean /= n;
                    }
                    for (int64_t i0 = 0; i0 < n; i0++) { double d = get(a, i0, i1, i2, i3) - mean; var += d * d; }
                    var /= n;
                    for (int64_t i0 = 0; i0 < n; i0++) {
                        double v = (get(a, i0, i1, i2, i3) - mean) / sqrt(var + eps);
                        if (t->op == MMP_OP_LAYER_NORM) {
                            if (w) v *= get(w, i0, 0, 0, 0);
                            if (bb) v += get(bb, i0, 0, 0, 0);
                        }
                        dst[DI(t, i0, i1, i2, i3)] = (float)v;
                    }
                }
        return MMP_OK;
    }
    case MMP_OP_GROUP_NORM: {
        const int G = t->op_params[0];
        const double eps = mmp__param_f(t, 1);
        const mmp_tensor *w = t->src[1], *bb = t->src[2];
        const int64_t cpg = a->ne[2] / G;
        for (int64_t n = 0; n < a->ne[3]; n++)
            for (int g = 0; g < G; g++) {
                double mean = 0, var = 0, cnt = (double)(cpg * a->ne[0] * a->ne[1]);
                for (int64_t c = g * cpg; c < (g + 1) * cpg; c++)
                    for (int64_t y = 0; y < a->ne[1]; y++)
                        for (int64_t x = 0; x < a->ne[0]; x++) mean += get(a, x, y, c, n);
                mean /= cnt;
                for (int64_t c = g * cpg; c < (g + 1) * cpg; c++)
                    for (int64_t y = 0; y < a->ne[1]; y++)
                        for (int64_t x = 0; x < a->ne[0]; x++) { double d = get(a, x, y, c, n) - mean; var += d * d; }
                var /= cnt;
                for (int64_t c = g * cpg; c < (g + 1) * cpg; c++)
                    for (int64_t y = 0; y < a->ne[1]; y++)
                        for (int64_t x = 0; x < a->ne[0]; x++) {
                            double v = (get(a, x, y, c, n) - mean) / sqrt(var + eps);
                            if (w) v *= get(w, c, 0, 0, 0);
                            if (bb) v += get(bb, c, 0, 0, 0);
                            dst[DI(t, x, y, c, n)] = (float)v;
                        }
            }
        return MMP_OK;
    }
    case MMP_OP_SOFTMAX: {
        const double scale = mmp__param_f(t, 0);
        const bool causal = t->op_params[1] != 0;
        const int64_t n_past = t->op_params[2];
        for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
            for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
                for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
                    double mx = -INFINITY, sum = 0;
                    const int64_t n = a->ne[0];
                    double *v = mmp__malloc((size_t)n * sizeof(double));
                    if (!v) return MMP_ERR_NOMEM;
                    for (int64_t i0 = 0; i0 < n; i0++) {
                        double x = get(a, i0, i1, i2, i3) * scale;
                        if (b) x += get(b, i0, i1, b->ne[2] > 1 ? i2 : 0, 0);
                        if (causal && i0 > i1 + n_past) x = -INFINITY;
                        v[i0] = x;
                        if (x > mx) mx = x;
                    }
                    for (int64_t i0 = 0; i0 < n; i0++) { v[i0] = mx == -INFINITY ? 0 : exp(v[i0] - mx); sum += v[i0]; }
                    for (int64_t i0 = 0; i0 < n; i0++) dst[DI(t, i0, i1, i2, i3)] = sum > 0 ? (float)(v[i0] / sum) : 0.0f;
                    free(v);
                }
        return MMP_OK;
    }
    case MMP_OP_ROPE: {
        const int n_rot = t->op_params[0];
        const bool neox = t->op_params[1] == MMP_ROPE_NEOX;
        const double base = mmp__param_f(t, 2), fs = mmp__param_f(t, 3);
        for (int64_t tok = 0; tok < a->ne[2]; tok++) {
            const double p = get(b, tok, 0, 0, 0);
            for (int64_t h = 0; h < a->ne[1]; h++) {
                for (int64_t i0 = 0; i0 < a->ne[0]; i0++) dst[DI(t, i0, h, tok, 0)] = (float)get(a, i0, h, tok, 0);
                for (int i = 0; i < n_rot / 2; i++) {
                    const double th = p * fs / pow(base, (2.0 * i) / n_rot);
                    const int64_t j0 = neox ? i : 2 * i, j1 = neox ? i + n_rot / 2 : 2 * i + 1;
                    const double x0 = get(a, j0, h, tok, 0), x1 = get(a, j1, h, tok, 0);
                    dst[DI(t, j0, h, tok, 0)] = (float)(x0 * cos(th) - x1 * sin(th));
                    dst[DI(t, j1, h, tok, 0)] = (float)(x0 * sin(th) + x1 * cos(th));
                }
            }
        }
        return MMP_OK;
    }
    case MMP_OP_CONV1D: {
        const mmp_tensor *w = a, *x = b;
        const int s = t->op_params[0], pd = t->op_params[1], d = t->op_params[2];
        for (int64_t n = 0; n < t->ne[2]; n++)
            for (int64_t co = 0; co < t->ne[1]; co++)
                for (int64_t l = 0; l < t->ne[0]; l++) {
                    double acc = 0;
                    for (int64_t ci = 0; ci < w->ne[1]; ci++)
                        for (int64_t k = 0; k < w->ne[0]; k++) {
                            int64_t ix = l * s + k * d - pd;
                            if (ix >= 0 && ix < x->ne[0]) acc += get(w, k, ci, co, 0) * get(x, ix, ci, n, 0);
                        }
                    dst[DI(t, l, co, n, 0)] = (float)acc;
                }
        return MMP_OK;
    }
    case MMP_OP_CONV2D: {
        const mmp_tensor *w = a, *x = b;
        const int32_t *p = t->op_params;   /* s0 s1 p0 p1 d0 d1 */
        for (int64_t n = 0; n < t->ne[3]; n++)
            for (int64_t co = 0; co < t->ne[2]; co++)
                for (int64_t oy = 0; oy < t->ne[1]; oy++)
                    for (int64_t ox = 0; ox < t->ne[0]; ox++) {
                        double acc = 0;
                        for (int64_t ci = 0; ci < w->ne[2]; ci++)
                            for (int64_t ky = 0; ky < w->ne[1]; ky++)
                                for (int64_t kx = 0; kx < w->ne[0]; kx++) {
                                    int64_t ix = ox * p[0] + kx * p[4] - p[2], iy = oy * p[1] + ky * p[5] - p[3];
                                    if (ix >= 0 && ix < x->ne[0] && iy >= 0 && iy < x->ne[1])
                                        acc += get(w, kx, ky, ci, co) * get(x, ix, iy, ci, n);
                                }
                        dst[DI(t, ox, oy, co, n)] = (float)acc;
                    }
        return MMP_OK;
    }
    case MMP_OP_UPSAMPLE: {
        const int k = t->op_params[0];
        FOR4(t) dst[DI(t, i0, i1, i2, i3)] = (float)get(a, i0 / k, i1 / k, i2, i3);
        return MMP_OK;
    }
    case MMP_OP_POOL1D: case MMP_OP_POOL2D: {
        const bool two = t->op == MMP_OP_POOL2D;
        const int32_t *p = t->op_params;
        const int k0 = p[0], k1 = two ? p[1] : 1, s0 = two ? p[2] : p[1], s1 = two ? p[3] : 1;
        const int p0 = two ? p[4] : p[2], p1 = two ? p[5] : 0;
        FOR4(t) {
            double s = 0;
            for (int dy = 0; dy < k1; dy++)
                for (int dx = 0; dx < k0; dx++) {
                    int64_t x = i0 * s0 - p0 + dx, y = two ? i1 * s1 - p1 + dy : i1;
                    if (x >= 0 && x < a->ne[0] && y >= 0 && y < a->ne[1]) s += get(a, x, y, i2, i3);
                }
            dst[DI(t, i0, i1, i2, i3)] = (float)(s / (k0 * k1));
        }
        return MMP_OK;
    }
    case MMP_OP_CONCAT: {
        const int dim = t->op_params[0];
        FOR4(t) {
            int64_t i[4] = {i0, i1, i2, i3};
            const mmp_tensor *s = a;
            if (i[dim] >= a->ne[dim]) { s = b; i[dim] -= a->ne[dim]; }
            dst[DI(t, i0, i1, i2, i3)] = (float)get(s, i[0], i[1], i[2], i[3]);
        }
        return MMP_OK;
    }
    case MMP_OP_CONT: case MMP_OP_VIEW:
        FOR4(t) {
            if (t->type == MMP_TYPE_I32) ((int32_t *)dst)[DI(t, i0, i1, i2, i3)] = (int32_t)get(a, i0, i1, i2, i3);
            else dst[DI(t, i0, i1, i2, i3)] = (float)get(t->op == MMP_OP_VIEW ? t : a, i0, i1, i2, i3);
        }
        return MMP_OK;
    case MMP_OP_CPY: {
        /* flat element f of src goes to flat element f of dst (written contiguous here) */
        int64_t f = 0;
        for (int64_t j3 = 0; j3 < a->ne[3]; j3++)
            for (int64_t j2 = 0; j2 < a->ne[2]; j2++)
                for (int64_t j1 = 0; j1 < a->ne[1]; j1++)
                    for (int64_t j0 = 0; j0 < a->ne[0]; j0++, f++) {
                        float v = (float)get(a, j0, j1, j2, j3);
                        if (t->type == MMP_TYPE_F32) dst[f] = v;
                        else if (t->type == MMP_TYPE_F16) ((uint16_t *)dst_)[f] = mmp__fp32_to_fp16_ref(v);
                        else ((uint16_t *)dst_)[f] = mmp_fp32_to_bf16(v);
                    }
        return MMP_OK;
    }
    case MMP_OP_ATTN: {
        const mmp_tensor *q = a, *k = b, *v = t->src[2], *mask = t->src[3];
        const double scale = mmp__param_f(t, 0);
        const bool causal = t->op_params[1] != 0;
        const int64_t n_past = t->op_params[2];
        const int64_t Tk = k->ne[1], grp = q->ne[2] / k->ne[2];
        double *s = mmp__malloc((size_t)Tk * sizeof(double));
        if (!s) return MMP_ERR_NOMEM;
        for (int64_t bb = 0; bb < q->ne[3]; bb++)
            for (int64_t h = 0; h < q->ne[2]; h++)
                for (int64_t i = 0; i < q->ne[1]; i++) {
                    double mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < Tk; j++) {
                        double d = 0;
                        for (int64_t x = 0; x < q->ne[0]; x++) d += get(q, x, i, h, bb) * get(k, x, j, h / grp, bb);
                        d *= scale;
                        if (mask) d += get(mask, j, i, mask->ne[2] > 1 ? h : 0, 0);
                        if (causal && j > i + n_past) d = -INFINITY;
                        s[j] = d;
                        if (d > mx) mx = d;
                    }
                    for (int64_t j = 0; j < Tk; j++) { s[j] = mx == -INFINITY ? 0 : exp(s[j] - mx); sum += s[j]; }
                    for (int64_t x = 0; x < v->ne[0]; x++) {
                        double o = 0;
                        for (int64_t j = 0; j < Tk; j++) if (s[j] != 0) o += s[j] * get(v, x, j, h / grp, bb);
                        dst[DI(t, x, h, i, bb)] = sum > 0 ? (float)(o / sum) : 0.0f;
                    }
                }
        free(s);
        return MMP_OK;
    }
    case MMP_OP_TOP_K: case MMP_OP_ARGMAX: {
        const int64_t n = a->ne[0], k = t->ne[0];
        float *v = mmp__malloc((size_t)n * sizeof(float));
        int32_t *idx = mmp__malloc((size_t)n * sizeof(int32_t));
        if (!v || !idx) { free(v); free(idx); return MMP_ERR_NOMEM; }
        for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
            for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
                for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
                    for (int64_t i = 0; i < n; i++) { v[i] = (float)get(a, i, i1, i2, i3); idx[i] = (int32_t)i; }
                    sort_idx(idx, n, v);
                    for (int64_t j = 0; j < k; j++) ((int32_t *)dst)[DI(t, j, i1, i2, i3)] = idx[j];
                }
        free(v);
        free(idx);
        return MMP_OK;
    }
    default:
        return mmp__error(MMP_ERR_UNSUPPORTED, "ref: no reference for op %s", mmp_op_name(t->op));
    }
}
