/* Weight access and small graph helpers shared by the generators. */
#include "gen-impl.h"
#include "util.h"

#include <stdarg.h>
#include <string.h>

enum mmp_status mmp__wstore_open(mmp__wstore *ws, const char *path) {
    memset(ws, 0, sizeof *ws);
    ws->mf = mmp_modelfile_open(path);
    if (!ws->mf) return MMP_ERR_IO; /* message set by mmp_modelfile_open */
    return MMP_OK;
}

void mmp__wstore_borrow(mmp__wstore *ws, const mmp_modelfile *mf) {
    memset(ws, 0, sizeof *ws);
    ws->mf = (mmp_modelfile *)mf;  /* read only: lookups and mapped data */
    ws->borrowed = true;
}

void mmp__wstore_close(mmp__wstore *ws) {
    if (!ws) return;
    for (int i = 0; i < ws->n; i++)
        if (ws->e[i].owned) free(ws->e[i].data);
    free(ws->e);
    if (!ws->borrowed) mmp_modelfile_free(ws->mf);
    memset(ws, 0, sizeof *ws);
}

static const mmp_tensor_info *find_v(mmp__wstore *ws, bool quiet, char *name, size_t size, const char *fmt, va_list ap) {
    size_t lp = strlen(ws->prefix);
    memcpy(name, ws->prefix, lp);
    vsnprintf(name + lp, size - lp, fmt, ap);
    if (!ws->mf) return NULL;
    const mmp_tensor_info *ti = mmp_modelfile_find(ws->mf, name);
    if (!ti && quiet) mmp_clear_error();
    return ti;
}

bool mmp__wstore_has(mmp__wstore *ws, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    const mmp_tensor_info *ti = find_v(ws, true, name, sizeof name, fmt, ap);
    va_end(ap);
    return ti != NULL;
}

const mmp_tensor_info *mmp__wstore_info(mmp__wstore *ws, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    const mmp_tensor_info *ti = find_v(ws, true, name, sizeof name, fmt, ap);
    va_end(ap);
    return ti;
}

static int64_t ti_nelem(const mmp_tensor_info *ti) {
    int64_t n = 1;
    for (int i = 0; i < 4; i++) n *= ti->ne[i];
    return n;
}

/* Resolve (convert once) a tensor for a mode; returns the cache entry. */
static struct mmp__went *resolve(mmp__wstore *ws, const mmp_tensor_info *ti, int mode) {
    for (int i = 0; i < ws->n; i++)
        if (ws->e[i].ti == ti && ws->e[i].mode == mode) return &ws->e[i];
    if (ws->n == ws->cap) {
        int nc = ws->cap ? ws->cap * 2 : 256;
        struct mmp__went *ne = realloc(ws->e, (size_t)nc * sizeof *ne);
        if (!ne) return mmp__error_null(MMP_ERR_NOMEM, "out of memory for the weight table");
        ws->e = ne;
        ws->cap = nc;
    }
    int64_t n = ti_nelem(ti);
    struct mmp__went en = { ti, mode, ti->type, (void *)ti->data, false };
    bool in_place = false;
    if (mode == MMP__W_MAT) {
        if (ti->type == MMP_TYPE_F32 && ((uintptr_t)ti->data % 4) == 0) in_place = true;
        if (ti->type == MMP_TYPE_F16 && ((uintptr_t)ti->data % 2) == 0) in_place = true;
        if (ti->type == MMP_TYPE_F16 && !in_place) {
            /* keep F16 (half the memory), just aligned */
            void *d = mmp__malloc((size_t)n * 2);
            if (!d) return NULL;
            memcpy(d, ti->data, (size_t)n * 2);
            en.data = d; en.owned = true; in_place = true;
        }
    } else if (ti->type == MMP_TYPE_F32 && ((uintptr_t)ti->data % 4) == 0) {
        in_place = true;
    }
    if (!in_place) {
        if (ti->type != MMP_TYPE_F32 && ti->type != MMP_TYPE_F16 && ti->type != MMP_TYPE_BF16)
            return mmp__error_null(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; the generators take F32, F16 or BF16 weights",
                                   ti->file, ti->name, mmp_type_name(ti->type));
        float *d = mmp__malloc((size_t)n * sizeof(float));
        if (!d) return NULL;
        const unsigned char *src = ti->data;
        for (int64_t i = 0; i < n; i++) {
            if (ti->type == MMP_TYPE_F32) memcpy(&d[i], src + i * 4, 4);
            else {
                uint16_t h;
                memcpy(&h, src + i * 2, 2);
                d[i] = ti->type == MMP_TYPE_F16 ? mmp_fp16_to_fp32(h) : mmp_bf16_to_fp32(h);
            }
        }
        en.data = d; en.owned = true; en.type = MMP_TYPE_F32;
    }
    ws->e[ws->n] = en;
    return &ws->e[ws->n++];
}

static mmp_tensor *make_leaf(mmp_graph *g, struct mmp__went *en, int n_dims, const int64_t *ne, size_t byte_off, const char *name) {
    mmp_tensor *t = mmp_new_tensor_ext(g, en->type, n_dims, ne, (char *)en->data + byte_off);
    if (t) mmp_set_name(t, "%s", name);
    return t;
}

mmp_tensor *mmp__wt(mmp__wstore *ws, mmp_graph *g, int mode, int n_dims, const int64_t *ne, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    const mmp_tensor_info *ti = find_v(ws, false, name, sizeof name, fmt, ap);
    va_end(ap);
    if (!ti) return NULL;
    struct mmp__went *en = resolve(ws, ti, mode);
    if (!en) return NULL;
    int64_t ne2[4];
    int nd = n_dims;
    if (n_dims > 0) {
        int64_t a = 1;
        for (int i = 0; i < n_dims; i++) { a *= ne[i]; ne2[i] = ne[i]; }
        if (a != ti_nelem(ti))
            return mmp__error_null(MMP_ERR_SHAPE, "%s: tensor '%s' has %lld elements, expected %lld", ti->file, ti->name,
                                   (long long)ti_nelem(ti), (long long)a);
    } else {
        nd = ti->n_dims > 0 ? ti->n_dims : 1;
        for (int i = 0; i < 4; i++) ne2[i] = ti->ne[i];
    }
    return make_leaf(g, en, nd, ne2, 0, ti->name);
}

mmp_tensor *mmp__wt_rows(mmp__wstore *ws, mmp_graph *g, int mode, int64_t r0, int64_t nr, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    const mmp_tensor_info *ti = find_v(ws, false, name, sizeof name, fmt, ap);
    va_end(ap);
    if (!ti) return NULL;
    struct mmp__went *en = resolve(ws, ti, mode);
    if (!en) return NULL;
    int nd = ti->n_dims;
    if (nd < 1 || nd > 2)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: tensor '%s' has %d dims, expected 1 or 2", ti->file, ti->name, nd);
    int64_t rows = ti->ne[nd - 1], row_elems = nd == 2 ? ti->ne[0] : 1;
    if (r0 < 0 || nr < 1 || r0 + nr > rows)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: tensor '%s' has %lld rows, cannot take rows %lld..%lld", ti->file, ti->name,
                               (long long)rows, (long long)r0, (long long)(r0 + nr));
    size_t esz = en->type == MMP_TYPE_F16 ? 2 : 4;
    int64_t ne2[2] = { nd == 2 ? row_elems : nr, nr };
    return make_leaf(g, en, nd, ne2, (size_t)(r0 * row_elems) * esz, ti->name);
}

mmp_tensor *mmp__conv(mmp__wstore *ws, mmp_graph *g, mmp_tensor *x, const char *name, bool bias, int stride, int pad) {
    if (!x) return NULL;
    mmp_tensor *w = mmp__wt(ws, g, MMP__W_MAT, 0, NULL, "%s.weight", name);
    if (!w) return NULL;
    if (w->ne[2] != x->ne[2])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: conv '%s' takes %lld channels but its input has %lld",
                               mmp_modelfile_path(ws->mf), w->name, (long long)w->ne[2], (long long)x->ne[2]);
    mmp_tensor *y = mmp_conv2d(g, w, x, stride, stride, pad, pad, 1, 1);
    if (bias) {
        int64_t ne[4] = { 1, 1, w->ne[3], 1 };
        mmp_tensor *b = mmp__wt(ws, g, MMP__W_F32, 4, ne, "%s.bias", name);
        if (!b) return NULL;
        y = mmp_add(g, y, b);
    }
    return y;
}

mmp_tensor *mmp__linear(mmp__wstore *ws, mmp_graph *g, mmp_tensor *x, const char *name, bool bias) {
    if (!x) return NULL;
    mmp_tensor *w = mmp__wt(ws, g, MMP__W_MAT, 0, NULL, "%s.weight", name);
    if (!w) return NULL;
    if (w->ne[2] * w->ne[3] != 1) {
        /* a 1x1 conv used as a linear layer: [1, 1, Cin, Cout] -> [Cin, Cout] */
        if (w->ne[0] != 1 || w->ne[1] != 1)
            return mmp__error_null(MMP_ERR_SHAPE, "%s: '%s' is not a linear or 1x1 conv weight", mmp_modelfile_path(ws->mf), w->name);
        int64_t ne[2] = { w->ne[2], w->ne[3] };
        w = mmp__wt(ws, g, MMP__W_MAT, 2, ne, "%s.weight", name);
    }
    mmp_tensor *y = mmp_mul_mat(g, w, x);
    if (bias) {
        mmp_tensor *b = mmp__wt(ws, g, MMP__W_F32, 0, NULL, "%s.bias", name);
        if (!b) return NULL;
        /* elementwise add would broadcast a shorter vector: insist on one value per output */
        if (mmp_nelements(b) != w->ne[1])
            return mmp__error_null(MMP_ERR_SHAPE, "%s: '%s' has %lld values, expected %lld (the outputs of %s.weight)",
                                   mmp_modelfile_path(ws->mf), b->name, (long long)mmp_nelements(b), (long long)w->ne[1], name);
        y = mmp_add(g, y, b);
    }
    return y;
}

mmp_tensor *mmp__gn(mmp__wstore *ws, mmp_graph *g, mmp_tensor *x, const char *name, int groups, float eps) {
    if (!x) return NULL;
    mmp_tensor *w = mmp__wt(ws, g, MMP__W_F32, 0, NULL, "%s.weight", name);
    mmp_tensor *b = mmp__wt(ws, g, MMP__W_F32, 0, NULL, "%s.bias", name);
    if (!w || !b) return NULL;
    if (mmp_nelements(w) != x->ne[2] || mmp_nelements(b) != x->ne[2])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: group norm '%s' has %lld / %lld weights / biases for %lld channels",
                               mmp_modelfile_path(ws->mf), name, (long long)mmp_nelements(w), (long long)mmp_nelements(b),
                               (long long)x->ne[2]);
    if (x->ne[2] % groups != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: group norm '%s': %lld channels not divisible by %d groups",
                               mmp_modelfile_path(ws->mf), name, (long long)x->ne[2], groups);
    return mmp_group_norm(g, x, groups, w, b, eps);
}

void mmp__gcache_free(mmp__gcache *c) {
    if (!c) return;
    mmp_graph_free(c->g);
    free(c->zeros);
    memset(c, 0, sizeof *c);
}

void mmp__copy_in(mmp_tensor *t, const float *src) { memcpy(t->data, src, (size_t)mmp_nelements(t) * sizeof(float)); }
void mmp__copy_out(const mmp_tensor *t, float *dst) { memcpy(dst, t->data, (size_t)mmp_nelements(t) * sizeof(float)); }
