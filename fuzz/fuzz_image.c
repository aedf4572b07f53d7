/* libFuzzer target: the image decoder on arbitrary bytes, with a small pixel limit (so that
 * the fuzzer explores headers and corrupt data instead of spending its time on large valid
 * images), plus the PNG text-chunk reader on the same bytes. */
#include "mmpipe/mmpipe.h"

#include <stdint.h>
#include <stdlib.h>

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t w, h, c;
    if (mmp_image_info_memory(data, size, "fuzz", &w, &h, &c) == MMP_OK) sink += (uint64_t)w + (uint64_t)h + (uint64_t)c;
    mmp_image *img = mmp_image_load_memory(data, size, "fuzz", 1 << 16);
    if (img) {
        /* every pixel is readable */
        for (size_t i = 0; i < (size_t)img->width * (size_t)img->height * 3; i++) sink += img->data[i];
        mmp_image_free(img);
    }
    char *t = mmp_png_get_text(data, size, "prompt");
    if (t) { sink += t[0]; free(t); }
    return 0;
}
