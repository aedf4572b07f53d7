/* Image preprocessing as the Hugging Face image processors do it (CLIPImageProcessor,
 * SiglipImageProcessor, LLaVA-1.5 pad-to-square), with Pillow-compatible resampling so that
 * pixel values match the reference within u8 rounding. */
#include "mmpipe/vision.h"
#include "../core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

mmp_preproc mmp_preproc_clip(int32_t size) {
    mmp_preproc p;
    memset(&p, 0, sizeof p);
    p.resize = MMP_RESIZE_SHORTEST_EDGE;
    p.shortest_edge = size;
    p.width = p.height = size;
    p.resample = MMP_RESAMPLE_BICUBIC;
    p.center_crop = true;
    p.crop_width = p.crop_height = size;
    p.rescale = true;
    p.rescale_factor = 1.0f / 255.0f;
    p.normalize = true;
    memcpy(p.mean, CLIP_MEAN, sizeof p.mean);
    memcpy(p.std, CLIP_STD, sizeof p.std);
    return p;
}

mmp_preproc mmp_preproc_siglip(int32_t size) {
    mmp_preproc p = mmp_preproc_clip(size);
    p.resize = MMP_RESIZE_EXACT;
    p.center_crop = false;
    for (int c = 0; c < 3; c++) p.mean[c] = p.std[c] = 0.5f;
    return p;
}

/* size-like value: an int, or {"shortest_edge": n}, or {"height": h, "width": w}. */
static enum mmp_status read_size(const mmp_json *j, const char *key, bool *is_short, int32_t *s, int32_t *w,
                                 int32_t *h) {
    char path[96];
    int64_t v, vw, vh;
    enum mmp_json_kind k = mmp_json_kind_of(j, key);
    if (k == MMP_JSON_MISSING || k == MMP_JSON_NULL) return MMP_OK;
    if (k == MMP_JSON_NUMBER) {
        if (mmp_json_get_int(j, key, &v) != MMP_OK) return MMP_ERR_FORMAT;
        if (v <= 0 || v > 16384) goto bad;
        *is_short = false;
        *w = *h = *s = (int32_t)v;
        return MMP_OK;
    }
    if (k != MMP_JSON_OBJECT) goto bad;
    snprintf(path, sizeof path, "%s.shortest_edge", key);
    if (mmp_json_has(j, path)) {
        if (mmp_json_get_int(j, path, &v) != MMP_OK) return MMP_ERR_FORMAT;
        if (v <= 0 || v > 16384) goto bad;
        *is_short = true;
        *s = (int32_t)v;
        return MMP_OK;
    }
    snprintf(path, sizeof path, "%s.height", key);
    if (mmp_json_get_int(j, path, &vh) != MMP_OK) return MMP_ERR_FORMAT;
    snprintf(path, sizeof path, "%s.width", key);
    if (mmp_json_get_int(j, path, &vw) != MMP_OK) return MMP_ERR_FORMAT;
    if (vw <= 0 || vh <= 0 || vw > 16384 || vh > 16384) goto bad;
    *is_short = false;
    *w = (int32_t)vw;
    *h = (int32_t)vh;
    return MMP_OK;
bad:
    return mmp__error(MMP_ERR_FORMAT, "%s: '%s' is not a usable size (an int 1..16384, {shortest_edge} or {height, width})",
                      mmp_json_name(j), key);
}

static enum mmp_status get_bool_opt(const mmp_json *j, const char *key, bool *out) {
    if (!mmp_json_has(j, key)) return MMP_OK;
    return mmp_json_get_bool(j, key, out);
}

static enum mmp_status get_triple(const mmp_json *j, const char *key, float out[3]) {
    if (!mmp_json_has(j, key)) return MMP_OK;
    int64_t n = 0;
    if (mmp_json_kind_of(j, key) == MMP_JSON_NUMBER) {
        double d;
        if (mmp_json_get_float(j, key, &d) != MMP_OK) return MMP_ERR_FORMAT;
        out[0] = out[1] = out[2] = (float)d;
        return MMP_OK;
    }
    if (mmp_json_array_len(j, key, &n) != MMP_OK) return MMP_ERR_FORMAT;
    if (n != 3) return mmp__error(MMP_ERR_FORMAT, "%s: '%s' has %lld values, expected 3", mmp_json_name(j), key, (long long)n);
    for (int i = 0; i < 3; i++) {
        double d;
        if (mmp_json_array_float(j, key, i, &d) != MMP_OK) return MMP_ERR_FORMAT;
        out[i] = (float)d;
    }
    return MMP_OK;
}

enum mmp_status mmp_preproc_from_json(const mmp_json *j, mmp_preproc *p) {
    if (!j || !p) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_preproc_from_json: NULL argument");
    mmp_preproc q = *p;
    enum mmp_status s;
    bool do_resize = q.resize != MMP_RESIZE_NONE;
    if ((s = get_bool_opt(j, "do_resize", &do_resize)) != MMP_OK) return s;
    bool is_short = q.resize == MMP_RESIZE_SHORTEST_EDGE;
    if ((s = read_size(j, "size", &is_short, &q.shortest_edge, &q.width, &q.height)) != MMP_OK) return s;
    q.resize = !do_resize ? MMP_RESIZE_NONE : is_short ? MMP_RESIZE_SHORTEST_EDGE : MMP_RESIZE_EXACT;
    if (mmp_json_has(j, "resample")) {
        int64_t r;
        if ((s = mmp_json_get_int(j, "resample", &r)) != MMP_OK) return s;
        if (r != 0 && r != 2 && r != 3)
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: resample=%lld is not supported (0 nearest, 2 bilinear, 3 bicubic)",
                              mmp_json_name(j), (long long)r);
        q.resample = (enum mmp_resample)r;
    }
    if ((s = get_bool_opt(j, "do_center_crop", &q.center_crop)) != MMP_OK) return s;
    bool cs = false;
    int32_t dummy = 0;
    if ((s = read_size(j, "crop_size", &cs, &dummy, &q.crop_width, &q.crop_height)) != MMP_OK) return s;
    if (cs) return mmp__error(MMP_ERR_FORMAT, "%s: 'crop_size' must be a size, not shortest_edge", mmp_json_name(j));
    if ((s = get_bool_opt(j, "do_rescale", &q.rescale)) != MMP_OK) return s;
    if (mmp_json_has(j, "rescale_factor")) {
        double d;
        if ((s = mmp_json_get_float(j, "rescale_factor", &d)) != MMP_OK) return s;
        q.rescale_factor = (float)d;
    }
    if ((s = get_bool_opt(j, "do_normalize", &q.normalize)) != MMP_OK) return s;
    if ((s = get_triple(j, "image_mean", q.mean)) != MMP_OK) return s;
    if ((s = get_triple(j, "image_std", q.std)) != MMP_OK) return s;
    for (int c = 0; c < 3; c++)
        if (!(q.std[c] != 0.0f) || !isfinite(q.std[c]) || !isfinite(q.mean[c]))
            return mmp__error(MMP_ERR_FORMAT, "%s: image_std[%d]=%g / image_mean[%d]=%g not usable", mmp_json_name(j), c,
                              (double)q.std[c], c, (double)q.mean[c]);
    if ((s = get_bool_opt(j, "do_pad", &q.pad_square)) != MMP_OK) return s;
    const char *ar;
    if (mmp_json_get_string(j, "image_aspect_ratio", &ar) == MMP_OK) q.pad_square = strcmp(ar, "pad") == 0;
    mmp_clear_error();
    *p = q;
    return MMP_OK;
}

/* ---- Pillow-compatible resampling ---- */

static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}
static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

#define PREC_BITS (32 - 8 - 2)

/* Pillow precompute_coeffs + normalize_coeffs_8bpc: for each output index, the first input
 * index (bounds[2i]), the count (bounds[2i+1]) and ksize fixed-point weights. */
static int32_t *coeffs(int in_size, int out_size, double (*f)(double), double support0, int *bounds, int *ksize_out) {
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = mmp__calloc((size_t)out_size * (size_t)ksize, sizeof(double));
    int32_t *ik = kk ? mmp__calloc((size_t)out_size * (size_t)ksize, sizeof(int32_t)) : NULL;
    if (!ik) { free(kk); return NULL; }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = kk + (size_t)xx * ksize;
        for (int x = 0; x < xmax; x++) {
            double w = f((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        ik[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PREC_BITS)) : (int32_t)(0.5 + kk[i] * (1 << PREC_BITS));
    free(kk);
    *ksize_out = ksize;
    return ik;
}

static inline uint8_t clip8(int32_t v) {
    int32_t s = v >> PREC_BITS;  /* arithmetic shift, as Pillow's lookup index */
    return (uint8_t)(s < 0 ? 0 : s > 255 ? 255 : s);
}

mmp_image *mmp_image_resize(const mmp_image *img, int32_t width, int32_t height, enum mmp_resample filter) {
    if (!img || !img->data || img->width <= 0 || img->height <= 0)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_resize: no image");
    if (width <= 0 || height <= 0 || width > 65536 || height > 65536)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_resize: bad target size %dx%d", (int)width, (int)height);
    int W0 = img->width, H0 = img->height;
    if (filter == MMP_RESAMPLE_NEAREST) {
        /* Pillow nearest: source index floor((x + 0.5) * in / out) */
        mmp_image *o = mmp_image_new(width, height);
        if (!o) return NULL;
        for (int y = 0; y < height; y++) {
            int sy = (int)(((double)y + 0.5) * H0 / height);
            if (sy >= H0) sy = H0 - 1;
            for (int x = 0; x < width; x++) {
                int sx = (int)(((double)x + 0.5) * W0 / width);
                if (sx >= W0) sx = W0 - 1;
                memcpy(o->data + ((size_t)y * width + x) * 3, img->data + ((size_t)sy * W0 + sx) * 3, 3);
            }
        }
        return o;
    }
    double (*f)(double) = filter == MMP_RESAMPLE_BILINEAR ? filter_bilinear : filter_bicubic;
    double support = filter == MMP_RESAMPLE_BILINEAR ? 1.0 : 2.0;
    if (filter != MMP_RESAMPLE_BILINEAR && filter != MMP_RESAMPLE_BICUBIC)
        return mmp__error_null(MMP_ERR_UNSUPPORTED, "mmp_image_resize: resample filter %d not supported", (int)filter);

    /* Horizontal pass (skipped when the width does not change), then vertical. */
    mmp_image *tmp = NULL;
    const mmp_image *src = img;
    if (width != W0) {
        int *bx = mmp__malloc((size_t)width * 2 * sizeof(int)), ks = 0;
        int32_t *kx = bx ? coeffs(W0, width, f, support, bx, &ks) : NULL;
        tmp = kx ? mmp_image_new(width, H0) : NULL;
        if (!tmp) { free(bx); free(kx); return NULL; }
        for (int y = 0; y < H0; y++) {
            const uint8_t *row = img->data + (size_t)y * W0 * 3;
            uint8_t *orow = tmp->data + (size_t)y * width * 3;
            for (int xx = 0; xx < width; xx++) {
                const int32_t *k = kx + (size_t)xx * ks;
                int xmin = bx[2 * xx], n = bx[2 * xx + 1];
                for (int c = 0; c < 3; c++) {
                    int32_t ss = 1 << (PREC_BITS - 1);
                    for (int x = 0; x < n; x++) ss += row[(xmin + x) * 3 + c] * k[x];
                    orow[xx * 3 + c] = clip8(ss);
                }
            }
        }
        free(bx);
        free(kx);
        src = tmp;
    }
    if (height == H0) {
        if (tmp) return tmp;
        mmp_image *o = mmp_image_new(W0, H0);
        if (o) memcpy(o->data, img->data, (size_t)W0 * H0 * 3);
        return o;
    }
    int *by = mmp__malloc((size_t)height * 2 * sizeof(int)), ks = 0;
    int32_t *ky = by ? coeffs(H0, height, f, support, by, &ks) : NULL;
    mmp_image *o = ky ? mmp_image_new(width, height) : NULL;
    if (!o) { free(by); free(ky); mmp_image_free(tmp); return NULL; }
    for (int yy = 0; yy < height; yy++) {
        const int32_t *k = ky + (size_t)yy * ks;
        int ymin = by[2 * yy], n = by[2 * yy + 1];
        uint8_t *orow = o->data + (size_t)yy * width * 3;
        for (int x = 0; x < width * 3; x++) {
            int32_t ss = 1 << (PREC_BITS - 1);
            for (int y = 0; y < n; y++) ss += src->data[(size_t)(ymin + y) * width * 3 + x] * k[y];
            orow[x] = clip8(ss);
        }
    }
    free(by);
    free(ky);
    mmp_image_free(tmp);
    return o;
}

mmp_image *mmp_image_pad_square(const mmp_image *img, const uint8_t rgb[3]) {
    if (!img || !img->data) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_pad_square: no image");
    int32_t s = MMP_MAX(img->width, img->height);
    mmp_image *o = mmp_image_new(s, s);
    if (!o) return NULL;
    for (size_t i = 0; i < (size_t)s * s; i++) memcpy(o->data + i * 3, rgb, 3);
    /* expand2square pastes at ((s - w) // 2, 0) or (0, (s - h) // 2) */
    int32_t x0 = (s - img->width) / 2, y0 = (s - img->height) / 2;
    for (int32_t y = 0; y < img->height; y++)
        memcpy(o->data + ((size_t)(y + y0) * s + x0) * 3, img->data + (size_t)y * img->width * 3, (size_t)img->width * 3);
    return o;
}

mmp_image *mmp_image_crop(const mmp_image *img, int32_t x0, int32_t y0, int32_t width, int32_t height) {
    if (!img || !img->data) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_crop: no image");
    if (x0 < 0 || y0 < 0 || width <= 0 || height <= 0 || x0 > img->width - width || y0 > img->height - height)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_crop: %dx%d at (%d,%d) is outside the %dx%d image",
                               (int)width, (int)height, (int)x0, (int)y0, (int)img->width, (int)img->height);
    mmp_image *o = mmp_image_new(width, height);
    if (!o) return NULL;
    for (int32_t y = 0; y < height; y++)
        memcpy(o->data + (size_t)y * width * 3, img->data + ((size_t)(y + y0) * img->width + x0) * 3, (size_t)width * 3);
    return o;
}

float *mmp_preprocess(const mmp_image *img, const mmp_preproc *p, int32_t *out_h, int32_t *out_w) {
    if (!img || !img->data || !p || !out_h || !out_w)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_preprocess: NULL argument");
    mmp_image *cur = NULL;  /* owned intermediate, or NULL while still `img` */
    const mmp_image *in = img;
    if (p->pad_square) {
        uint8_t bg[3];
        for (int c = 0; c < 3; c++) {
            float v = p->mean[c] * 255.0f;
            bg[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : (int)v);  /* int(x * 255), truncation */
        }
        if (!(cur = mmp_image_pad_square(in, bg))) return NULL;
        in = cur;
    }
    int32_t tw = in->width, th = in->height;
    if (p->resize == MMP_RESIZE_SHORTEST_EDGE) {
        if (p->shortest_edge <= 0) { mmp_image_free(cur); return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_preprocess: shortest_edge %d", (int)p->shortest_edge); }
        /* transformers get_resize_output_image_size(default_to_square=False) */
        int32_t sh = MMP_MIN(in->width, in->height), lo = MMP_MAX(in->width, in->height);
        int32_t ns = p->shortest_edge, nl = (int32_t)((double)((int64_t)ns * lo) / sh);
        if (in->width <= in->height) { tw = ns; th = nl; } else { tw = nl; th = ns; }
    } else if (p->resize == MMP_RESIZE_EXACT) {
        tw = p->width;
        th = p->height;
    }
    if (p->resize != MMP_RESIZE_NONE) {
        mmp_image *r = mmp_image_resize(in, tw, th, p->resample);
        mmp_image_free(cur);
        if (!r) return NULL;
        cur = r;
        in = cur;
    }
    int32_t ow = in->width, oh = in->height, x0 = 0, y0 = 0;
    if (p->center_crop) {
        if (p->crop_width <= 0 || p->crop_height <= 0) {
            mmp_image_free(cur);
            return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_preprocess: crop size %dx%d", (int)p->crop_width, (int)p->crop_height);
        }
        ow = p->crop_width;
        oh = p->crop_height;
        /* transformers center_crop: floor((orig - crop) / 2); may be negative (zero padding) */
        int32_t dx = in->width - ow, dy = in->height - oh;
        x0 = dx >= 0 ? dx / 2 : -((-dx + 1) / 2);
        y0 = dy >= 0 ? dy / 2 : -((-dy + 1) / 2);
    }
    float *out = mmp__malloc((size_t)3 * ow * oh * sizeof(float));
    if (!out) { mmp_image_free(cur); return NULL; }
    for (int c = 0; c < 3; c++)
        for (int32_t y = 0; y < oh; y++)
            for (int32_t x = 0; x < ow; x++) {
                int32_t sx = x + x0, sy = y + y0;
                float v = 0.0f;
                if (sx >= 0 && sy >= 0 && sx < in->width && sy < in->height)
                    v = in->data[((size_t)sy * in->width + sx) * 3 + c];
                if (p->rescale) v = (float)((double)v * (double)p->rescale_factor);
                if (p->normalize) v = (v - p->mean[c]) / p->std[c];
                out[((size_t)c * oh + y) * ow + x] = v;
            }
    mmp_image_free(cur);
    *out_h = oh;
    *out_w = ow;
    return out;
}
