/* Weight binding helpers shared by the stage families (see weights.h). */
#include "weights.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mmp__weight_free(mmp__weight *w) {
    if (w->owned) free(w->data);
    memset(w, 0, sizeof *w);
}

void mmp__shape_torch(char *buf, size_t size, int n_dims, const int64_t *ne) {
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int i = n_dims - 1; i >= 0 && o < size; i--)
        o += (size_t)snprintf(buf + o, size - o, "%lld%s", (long long)ne[i], i ? ", " : "");
    if (o < size) snprintf(buf + o, size - o, "]");
}

enum mmp_status mmp__weight_load(const mmp_modelfile *mf, const char *path, const char *who, mmp__weight *w,
                                 const char *name, bool mat, int n_dims, const int64_t *ne, const char *why) {
    const mmp_tensor_info *ti = mmp_modelfile_find(mf, name);
    if (!ti) return mmp__error(MMP_ERR_NOT_FOUND, "%s: %s tensor '%s' is missing", path, who, name);
    /* shape: compare per dim, allowing trailing 1s */
    bool ok = ti->n_dims >= 1;
    for (int i = 0; i < 4 && ok; i++) ok = ti->ne[i] == (i < n_dims ? ne[i] : 1);
    if (!ok) {
        char have[96], want[96];
        mmp__shape_torch(have, sizeof have, ti->n_dims > 0 ? ti->n_dims : 1, ti->ne);
        mmp__shape_torch(want, sizeof want, n_dims, ne);
        return mmp__error(MMP_ERR_SHAPE, "%s: tensor '%s' is %s but the %s needs %s (%s)", path, name, have, who, want,
                          why);
    }
    if (ti->type != MMP_TYPE_F32 && ti->type != MMP_TYPE_F16 && ti->type != MMP_TYPE_BF16)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; the %s takes F32, F16 or BF16", path, name,
                          mmp_type_name(ti->type), who);
    memset(w, 0, sizeof *w);
    w->n_dims = n_dims;
    for (int i = 0; i < 4; i++) w->ne[i] = i < n_dims ? ne[i] : 1;
    w->name = ti->name;
    int64_t n = w->ne[0] * w->ne[1] * w->ne[2] * w->ne[3];
    size_t esz = ti->type == MMP_TYPE_F32 ? 4 : 2;
    if ((ti->type == MMP_TYPE_F32 || mat) && (uintptr_t)ti->data % esz == 0) {
        w->type = ti->type;
        w->data = (void *)ti->data;
        return MMP_OK;
    }
    float *d = mmp__malloc((size_t)n * sizeof(float));
    if (!d) return MMP_ERR_NOMEM;
    const unsigned char *s = ti->data;
    for (int64_t i = 0; i < n; i++) {
        if (ti->type == MMP_TYPE_F32) {
            memcpy(&d[i], s + i * 4, 4);
        } else {
            uint16_t h;
            memcpy(&h, s + i * 2, 2);
            d[i] = ti->type == MMP_TYPE_F16 ? mmp_fp16_to_fp32(h) : mmp_bf16_to_fp32(h);
        }
    }
    w->type = MMP_TYPE_F32;
    w->data = d;
    w->owned = true;
    return MMP_OK;
}

enum mmp_status mmp__weight_data(const mmp_tensor_info *ti, int64_t nel, bool to_f32, mmp__weight_alloc_fn alloc,
                                 void *ctx, const char *path, const char *name, enum mmp_type *type, void **data) {
    if (to_f32 && ti->type != MMP_TYPE_F32) {
        float *dst = alloc(ctx, (size_t)nel * sizeof(float));
        if (!dst) return MMP_ERR_NOMEM;
        enum mmp_status s = mmp_dequantize_row(ti->type, ti->data, dst, nel);
        if (s != MMP_OK) { mmp__error_prefix("%s: tensor '%s': ", path, name); return s; }
        *type = MMP_TYPE_F32;
        *data = dst;
        return MMP_OK;
    }
    *type = ti->type;
    size_t align = ti->type == MMP_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)ti->data % align != 0) {
        void *dst = alloc(ctx, ti->nbytes);
        if (!dst) return MMP_ERR_NOMEM;
        memcpy(dst, ti->data, ti->nbytes);
        *data = dst;
    } else {
        *data = (void *)ti->data;
    }
    return MMP_OK;
}
