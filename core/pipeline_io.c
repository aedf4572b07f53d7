/* Arrays from text, RGB bytes, image and audio files, PCM; image / text outputs back
 * (include/mmpipe/pipeline.h). The shapes are the ones the stock pipelines' inputs take. */
#include "mmpipe/audio.h"
#include "mmpipe/diffusion.h"
#include "mmpipe/image.h"
#include "mmpipe/pipeline.h"
#include "util.h"

#include <string.h>

mmp_array *mmp_array_from_text(const char *text, size_t len) {
    if (!text) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_array_from_text: NULL text");
    if (len == 0) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_array_from_text: the text is empty");
    int64_t dims[1] = { (int64_t)len };
    mmp_array *a = mmp_array_new(MMP_TYPE_U8, 1, dims);
    if (a) memcpy(a->data, text, len);
    return a;
}

char *mmp_array_to_text(const mmp_array *a) {
    if (!a || a->type != MMP_TYPE_U8 || a->n_dims != 1)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_array_to_text: not a text array (u8 [n])");
    size_t n = mmp_array_nbytes(a);
    char *s = mmp__malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, a->data, n);
    s[n] = 0;
    return s;
}

mmp_array *mmp_array_from_rgb(const uint8_t *rgb, int32_t width, int32_t height) {
    if (!rgb || width < 1 || height < 1)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_array_from_rgb: %s (width %d, height %d)", rgb ? "bad size" : "NULL pixels",
                               (int)width, (int)height);
    int64_t dims[3] = { 3, height, width }, hw = (int64_t)height * width;
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, 3, dims);
    if (!a) return NULL;
    float *x = a->data;
    for (int64_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) x[c * hw + i] = rgb[i * 3 + c] / 255.0f;
    return a;
}

mmp_array *mmp_array_from_image_file(const char *path) {
    mmp_image *img = mmp_image_load(path, 0);
    if (!img) return NULL;
    mmp_array *a = mmp_array_from_rgb(img->data, img->width, img->height);
    mmp_image_free(img);
    return a;
}

static mmp_array *wrap_samples(float *s, int64_t n, const char *what) {
    if (n < 1) {
        free(s);
        return mmp__error_null(MMP_ERR_FORMAT, "%s: no audio samples", what);
    }
    int64_t dims[1] = { n };
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, 1, dims);
    if (a) memcpy(a->data, s, (size_t)n * sizeof *s);
    free(s);
    return a;
}

mmp_array *mmp_array_from_pcm(const float *pcm, int64_t n_frames, int channels, int sample_rate) {
    float *s = NULL;
    int64_t n = 0;
    if (mmp_audio_from_pcm(pcm, n_frames, channels, sample_rate, &s, &n) != MMP_OK) return NULL;
    return wrap_samples(s, n, "mmp_array_from_pcm");
}

mmp_array *mmp_array_from_audio_file(const char *path, double max_seconds) {
    float *s = NULL;
    int64_t n = 0;
    if (mmp_audio_decode_file(path, max_seconds, &s, &n, NULL) != MMP_OK) return NULL;
    return wrap_samples(s, n, path);
}

struct mmp_image *mmp_array_to_image(const mmp_array *a) {
    if (!a || a->type != MMP_TYPE_F32 || a->n_dims != 3 || a->dims[0] != 3 || a->dims[1] > INT32_MAX || a->dims[2] > INT32_MAX)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_array_to_image: not an image array (f32 [3, H, W])");
    return mmp_image_from_chw(a->data, (int)a->dims[2], (int)a->dims[1]);
}
