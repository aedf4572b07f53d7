/* mmpipe — image input and PNG output.
 *
 * Reading: PNG (8/16-bit, interlaced), JPEG (baseline and progressive), BMP, GIF (the first
 * frame), PNM (PPM/PGM), TGA, from a file or from memory, decoded with stb_image. Every image
 * becomes 8-bit RGB:
 *   - gray          -> R = G = B = gray
 *   - gray + alpha, RGBA -> alpha composited ON WHITE: c' = (c * a + 255 * (255 - a) + 127) / 255
 *     (a transparent pixel becomes white, as a browser shows it on a white page; the CLIP
 *     processors' convert("RGB") would instead drop alpha and keep the hidden colour).
 * The size is checked from the header BEFORE anything is decoded: width * height must be
 * <= max_pixels (MMP_IMAGE_MAX_PIXELS_DEFAULT when 0 is given), else MMP_ERR_LIMIT. Errors name
 * the file (or the memory name) and say what is wrong: missing file, a directory, empty,
 * unknown format, truncated or corrupt data, a 0x0 header. Because stb_image pads missing
 * bytes with zeros, the data is checked for completeness first, per format: PNG chunks must
 * fit, have correct CRCs and end with IEND; JPEG segments must fit, Huffman tables hold at
 * most 256 codes and an end-of-image marker must follow; the first GIF frame must be
 * complete (and followed by a block or the trailer); uncompressed BMP/TGA/PNM rasters and
 * RLE TGA packets must fit in the data. 16-bit PNG/PNM samples are reduced to 8 bits.
 * Decoding is thread-safe (stb's failure reason is thread-local in C11).
 *
 * Writing: 8-bit RGB PNG with optional text chunks (key/value pairs: tEXt for ASCII values,
 * iTXt for UTF-8 values), e.g. the prompt, seed, steps and sampler of a txt2img run. */
#ifndef MMPIPE_IMAGE_H
#define MMPIPE_IMAGE_H

#include "mmpipe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 8192 x 8192: far above what any encoder wants, small enough that a hostile header cannot
 * make us allocate gigabytes. */
#define MMP_IMAGE_MAX_PIXELS_DEFAULT ((int64_t)8192 * 8192)
/* Files larger than this are refused before they are read. */
#define MMP_IMAGE_MAX_FILE_BYTES ((int64_t)1 << 30)

/* An 8-bit RGB image, rows top to bottom, pixels interleaved: data[(y * width + x) * 3 + c]. */
typedef struct mmp_image {
    int32_t width, height;
    uint8_t *data;          /* 3 * width * height bytes, owned by the image */
} mmp_image;

/* New image filled with black; NULL + message for sizes <= 0 or too large (> 2^31 bytes). */
MMP_API mmp_image *mmp_image_new(int32_t width, int32_t height);
MMP_API void mmp_image_free(mmp_image *img);

/* Decode a file / bytes into RGB. max_pixels <= 0 means MMP_IMAGE_MAX_PIXELS_DEFAULT. `name`
 * names the bytes in messages (NULL: "<memory>"). NULL + mmp_last_error() on failure. */
MMP_API mmp_image *mmp_image_load(const char *path, int64_t max_pixels);
MMP_API mmp_image *mmp_image_load_memory(const void *data, size_t size, const char *name, int64_t max_pixels);

/* Header only: width, height and channels in the file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA),
 * without decoding. MMP_ERR_FORMAT if stb_image cannot read the header. */
MMP_API enum mmp_status mmp_image_info_memory(const void *data, size_t size, const char *name,
                                              int32_t *width, int32_t *height, int32_t *channels);

/* A PNG text chunk. key: 1..79 printable ASCII characters, no leading/trailing or double
 * spaces (PNG spec 11.3.4.3). value: any NUL-terminated UTF-8 string. */
typedef struct mmp_png_text {
    const char *key;
    const char *value;
} mmp_png_text;

/* Encode img as a PNG with n_text text chunks (placed right after IHDR). Returns malloc'ed
 * bytes (caller frees) and *size, or NULL + message (bad key, allocation). */
MMP_API uint8_t *mmp_image_encode_png(const mmp_image *img, const mmp_png_text *text, int n_text, size_t *size);
/* Same, written to `path`. */
MMP_API enum mmp_status mmp_image_write_png(const char *path, const mmp_image *img, const mmp_png_text *text,
                                            int n_text);
/* The value of the first tEXt/iTXt (uncompressed) chunk with this key in PNG bytes: a
 * malloc'ed string the caller frees, or NULL + MMP_ERR_NOT_FOUND (MMP_ERR_FORMAT for bytes
 * that are not a well-formed PNG chunk sequence: bad signature, chunk past the end, bad CRC). */
MMP_API char *mmp_png_get_text(const void *png, size_t size, const char *key);

#ifdef __cplusplus
}
#endif
#endif
