/* stb_image (decoding) and stb_image_write (PNG encoding) from Debian's libstb-dev, compiled
 * here alone, as static functions behind the wrappers of image-stb.h, so that:
 *  - their symbols stay private to the library;
 *  - the build can exempt exactly this third-party code from one sanitizer check. Debian 12's
 *    stb_image 2.27 shifts a 32-bit buffer by up to 33 bits on corrupt JPEG entropy data
 *    (stbi__grow_buffer_unsafe when code_bits goes negative; fixed upstream in 2.28). The
 *    result only feeds masked Huffman lookups (garbage pixels, no memory access), so
 *    CMakeLists.txt compiles this file with -fno-sanitize=shift; every other UBSan check, and
 *    ASan, stays on. core/image.c also rejects the malformed JPEG/PNM headers that 2.27 turns
 *    into out-of-bounds accesses before stb sees the bytes. */
#include "image-stb.h"

#include <stdlib.h>

/* ---- stb (third-party code: its own warnings are not ours) ---- */
/* These two are reported at the end of the file / after inlining, outside any push/pop:
 * stb declares a few static functions it never defines, and gcc's -O3 stringop checker
 * misreads stbi__build_huffman's table writes. Ignored for the whole file. */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wtype-limits"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_WRITE_STATIC
/* stb's asserts are consistency checks that corrupt data can trip (e.g. in the JPEG Huffman
 * decoder); a library must not abort on bad input. Release builds of stb compile them out
 * (NDEBUG) and this makes Debug builds behave the same. */
#define STBI_ASSERT(x) ((void)0)
#define STBIW_ASSERT(x) ((void)0)
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
/* Only the formats we promise; no stdio inside stb (we read files ourselves). */
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
#define STBI_ONLY_TGA
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_WRITE_NO_STDIO
#include "stb_image.h"
#include "stb_image_write.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

int mmp__stb_info(const void *data, int size, int *w, int *h, int *comp) {
    return stbi_info_from_memory(data, size, w, h, comp);
}

uint8_t *mmp__stb_load(const void *data, int size, int *w, int *h, int *comp) {
    return stbi_load_from_memory(data, size, w, h, comp, 0);
}

const char *mmp__stb_failure_reason(void) { return stbi_failure_reason(); }

void mmp__stb_free(void *p) { stbi_image_free(p); }

uint8_t *mmp__stb_write_png(const uint8_t *px, int stride, int w, int h, int comp, int *len) {
    return stbi_write_png_to_mem(px, stride, w, h, comp, len);
}
