/* Float planes <-> the 8-bit RGB images of image.h (which owns stb_image / stb_image_write:
 * core/image.c compiles them as static functions, so there is one copy in the library). */
#include "mmpipe/diffusion.h"
#include "mmpipe/image.h"
#include "util.h"

#include <math.h>

float *mmp_image_to_chw(const mmp_image *img) {
    if (!img || !img->data || img->width < 1 || img->height < 1)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_to_chw: empty image");
    size_t plane = (size_t)img->width * (size_t)img->height;
    float *out = mmp__malloc(3 * plane * sizeof(float));
    if (!out) return NULL;
    /* HWC u8 -> CHW float, x / 255 */
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) out[(size_t)c * plane + i] = (float)img->data[i * 3 + (size_t)c] / 255.0f;
    return out;
}

mmp_image *mmp_image_from_chw(const float *chw01, int width, int height) {
    if (!chw01) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_from_chw: NULL planes");
    mmp_image *img = mmp_image_new(width, height);
    if (!img) return NULL;
    size_t plane = (size_t)width * (size_t)height;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = chw01[(size_t)c * plane + i];
            v = v != v ? 0.0f : v < 0 ? 0.0f : v > 1 ? 1.0f : v;
            img->data[i * 3 + (size_t)c] = (uint8_t)lrintf(v * 255.0f);
        }
    return img;
}
