/* Image preprocessing against golden clip_preprocess (CLIPImageProcessor with PIL bicubic),
 * plus the processor config reader, pad-to-square and resampling properties. */
#include "testutil.h"
#include "mmpipe/vision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_clip_golden(void **st) {
    (void)st;
    mmp_image *img = mmp_image_load(mmpt_data("vision/clip_preprocess/image.png"), 0);
    if (!img) fail_msg("%s", mmp_last_error());
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("vision/clip_preprocess/io.safetensors"));
    assert_non_null(io);
    /* the decoded pixels are exactly the array the case was made from */
    const mmp_tensor_info *hwc = mmp_safetensors_find(io, "image_hwc_u8");
    assert_non_null(hwc);
    assert_int_equal(hwc->type, MMP_TYPE_I64);
    assert_int_equal(hwc->ne[2], img->height);
    assert_int_equal(hwc->ne[1], img->width);
    for (int64_t i = 0; i < (int64_t)img->width * img->height * 3; i++) {
        int64_t v;
        memcpy(&v, (const char *)hwc->data + i * 8, 8);
        if (v != img->data[i]) fail_msg("pixel byte %lld: %d, expected %lld", (long long)i, img->data[i], (long long)v);
    }
    const mmp_tensor_info *pv = mmp_safetensors_find(io, "pixel_values");
    assert_non_null(pv);
    mmp_preproc p = mmp_preproc_clip(32);
    int32_t h = 0, w = 0;
    float *out = mmp_preprocess(img, &p, &h, &w);
    if (!out) fail_msg("%s", mmp_last_error());
    assert_int_equal(h, pv->ne[1]);
    assert_int_equal(w, pv->ne[0]);
    size_t n = (size_t)3 * h * w;
    float *ref = malloc(n * sizeof(float));
    memcpy(ref, pv->data, n * sizeof(float));
    double mx = 0, mean = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)out[i] - ref[i]);
        mx = d > mx ? d : mx;
        mean += d;
    }
    mean /= (double)n;
    printf("clip_preprocess: max abs %.3g, mean abs %.3g (%dx%d)\n", mx, mean, (int)w, (int)h);
    assert_true(mx <= 0.02);
    assert_true(mean <= 0.002);
    free(ref);
    free(out);
    mmp_safetensors_free(io);
    mmp_image_free(img);
}

static void test_from_json(void **st) {
    (void)st;
    const char *txt = "{\"crop_size\": {\"height\": 336, \"width\": 336}, \"do_center_crop\": true, \"do_normalize\": true,"
                      "\"do_resize\": true, \"image_mean\": [0.5, 0.25, 0.125], \"image_std\": [0.5, 0.5, 0.5],"
                      "\"resample\": 2, \"rescale_factor\": 0.00392156862745098, \"size\": {\"shortest_edge\": 336},"
                      "\"do_pad\": true}";
    mmp_json *j = mmp_json_parse(txt, strlen(txt), "preprocessor_config.json");
    assert_non_null(j);
    mmp_preproc p = mmp_preproc_clip(224);
    assert_int_equal(mmp_preproc_from_json(j, &p), MMP_OK);
    assert_int_equal(p.shortest_edge, 336);
    assert_int_equal(p.crop_width, 336);
    assert_int_equal(p.resize, MMP_RESIZE_SHORTEST_EDGE);
    assert_int_equal(p.resample, MMP_RESAMPLE_BILINEAR);
    assert_true(p.pad_square);
    assert_true(fabsf(p.mean[1] - 0.25f) < 1e-7f);
    mmp_json_free(j);
    /* SigLIP style */
    txt = "{\"size\": {\"height\": 224, \"width\": 224}, \"do_center_crop\": false, \"image_mean\": [0.5,0.5,0.5]}";
    j = mmp_json_parse(txt, strlen(txt), "pp.json");
    p = mmp_preproc_clip(32);
    assert_int_equal(mmp_preproc_from_json(j, &p), MMP_OK);
    assert_int_equal(p.resize, MMP_RESIZE_EXACT);
    assert_int_equal(p.width, 224);
    assert_false(p.center_crop);
    mmp_json_free(j);
    /* bad values name the file and key */
    txt = "{\"size\": {\"shortest_edge\": -3}}";
    j = mmp_json_parse(txt, strlen(txt), "bad.json");
    assert_int_not_equal(mmp_preproc_from_json(j, &p), MMP_OK);
    assert_non_null(strstr(mmp_last_error(), "bad.json"));
    assert_non_null(strstr(mmp_last_error(), "size"));
    mmp_json_free(j);
    txt = "{\"image_std\": [0.5, 0, 0.5]}";
    j = mmp_json_parse(txt, strlen(txt), "bad.json");
    assert_int_not_equal(mmp_preproc_from_json(j, &p), MMP_OK);
    mmp_json_free(j);
    txt = "{\"resample\": 1}";
    j = mmp_json_parse(txt, strlen(txt), "bad.json");
    assert_int_equal(mmp_preproc_from_json(j, &p), MMP_ERR_UNSUPPORTED);
    mmp_json_free(j);
}

/* Exact reference of the resampler without fixed point: a separable filter in double with
 * Pillow's coefficient rules; the fixed-point result must be within 1 of it per pass. */
static double cubic(double x) {
    x = fabs(x);
    if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
    return 0;
}
static void ref_pass(const double *in, int n_in, int stride_in, double *out, int n_out, int stride_out, int count,
                     int step_in, int step_out) {
    double scale = (double)n_in / n_out, fs = scale < 1 ? 1 : scale, sup = 2 * fs;
    for (int o = 0; o < n_out; o++) {
        double c = (o + 0.5) * scale, ww = 0, wk[64];
        int lo = (int)(c - sup + 0.5), hi = (int)(c + sup + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        for (int i = lo; i < hi; i++) ww += (wk[i - lo] = cubic((i - c + 0.5) / fs));
        for (int r = 0; r < count; r++) {
            double s = 0;
            for (int i = lo; i < hi; i++) s += in[r * step_in + i * stride_in] * wk[i - lo] / ww;
            out[r * step_out + o * stride_out] = s;
        }
    }
}

static void test_resize_vs_reference(void **st) {
    (void)st;
    const int W0 = 23, H0 = 17;
    mmp_image *img = mmp_image_new(W0, H0);
    for (int i = 0; i < W0 * H0 * 3; i++) img->data[i] = (uint8_t)((i * 97 + (i / 7) * 13) & 255);
    const int sizes[][2] = {{11, 9}, {40, 30}, {23, 8}, {5, 17}};
    for (int t = 0; t < 4; t++) {
        int W1 = sizes[t][0], H1 = sizes[t][1];
        mmp_image *o = mmp_image_resize(img, W1, H1, MMP_RESAMPLE_BICUBIC);
        assert_non_null(o);
        double *a = malloc(sizeof(double) * W0 * H0 * 3), *b = malloc(sizeof(double) * W1 * H0 * 3),
               *c = malloc(sizeof(double) * W1 * H1 * 3);
        for (int i = 0; i < W0 * H0 * 3; i++) a[i] = img->data[i];
        for (int ch = 0; ch < 3; ch++) {
            if (W1 != W0) ref_pass(a + ch, W0, 3, b + ch, W1, 3, H0, W0 * 3, W1 * 3);
            else for (int i = 0; i < H0 * W0; i++) b[i * 3 + ch] = a[i * 3 + ch];
        }
        /* Pillow rounds to u8 between the passes */
        for (int i = 0; i < W1 * H0 * 3; i++) b[i] = fmin(255, fmax(0, floor(b[i] + 0.5)));
        for (int ch = 0; ch < 3; ch++) {
            if (H1 != H0) ref_pass(b + ch, H0, W1 * 3, c + ch, H1, W1 * 3, W1, 3, 3);
            else for (int i = 0; i < H0 * W1; i++) c[i * 3 + ch] = b[i * 3 + ch];
        }
        for (int i = 0; i < W1 * H1 * 3; i++) {
            double r = fmin(255, fmax(0, c[i]));
            if (fabs(o->data[i] - r) > 1.0) fail_msg("%dx%d byte %d: %d vs reference %.3f", W1, H1, i, o->data[i], r);
        }
        free(a); free(b); free(c);
        mmp_image_free(o);
    }
    /* identity size is a copy */
    mmp_image *o = mmp_image_resize(img, W0, H0, MMP_RESAMPLE_BICUBIC);
    assert_memory_equal(o->data, img->data, (size_t)W0 * H0 * 3);
    mmp_image_free(o);
    assert_null(mmp_image_resize(img, 0, 5, MMP_RESAMPLE_BICUBIC));
    mmp_image_free(img);
}

static void test_pad_square_and_siglip(void **st) {
    (void)st;
    mmp_image *img = mmp_image_new(4, 2);
    memset(img->data, 200, 4 * 2 * 3);
    mmp_preproc p = mmp_preproc_clip(4);
    p.pad_square = true;
    int32_t h, w;
    float *out = mmp_preprocess(img, &p, &h, &w);
    assert_non_null(out);
    assert_int_equal(h, 4);
    assert_int_equal(w, 4);
    /* rows 0 and 3 are the pad colour: int(mean*255) = (122, 116, 104) */
    const int pad[3] = {122, 116, 104};
    for (int c = 0; c < 3; c++) {
        float want_pad = ((float)pad[c] / 255.0f - p.mean[c]) / p.std[c];
        float want_img = (200.0f / 255.0f - p.mean[c]) / p.std[c];
        assert_true(fabsf(out[(c * 4 + 0) * 4 + 1] - want_pad) < 1e-5f);
        assert_true(fabsf(out[(c * 4 + 1) * 4 + 2] - want_img) < 1e-5f);
    }
    free(out);
    /* SigLIP: exact resize of a uniform image stays uniform; mean = std = 0.5 */
    mmp_preproc s = mmp_preproc_siglip(8);
    out = mmp_preprocess(img, &s, &h, &w);
    assert_int_equal(h, 8);
    assert_int_equal(w, 8);
    for (int i = 0; i < 3 * 64; i++) assert_true(fabsf(out[i] - (200.0f / 255.0f - 0.5f) / 0.5f) < 1e-5f);
    free(out);
    mmp_image_free(img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_golden),
        cmocka_unit_test(test_from_json),
        cmocka_unit_test(test_resize_vs_reference),
        cmocka_unit_test(test_pad_square_and_siglip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
