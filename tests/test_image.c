/* Image input: every format and pixel layout to RGB, alpha over white, size limits checked
 * before decoding, clear errors for corrupt / truncated files of each format, a directory,
 * 0x0 and 100000x100000 headers; PNG output with text chunks read back. */
#include "testutil.h"
#include "mmpipe/image.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The test writes its inputs with stb_image_write (private to this file). */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#define W 7
#define H 5

typedef struct { uint8_t *p; size_t n, cap; } membuf;
static void mem_write(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->n + (size_t)size > m->cap) {
        m->cap = (m->n + (size_t)size) * 2;
        m->p = realloc(m->p, m->cap);
        assert_non_null(m->p);
    }
    memcpy(m->p + m->n, data, (size_t)size);
    m->n += (size_t)size;
}

/* Test pattern with `c` channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). */
static uint8_t *pattern(int c) {
    uint8_t *p = malloc((size_t)W * H * c);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < c; k++) {
                int v = (x * 37 + y * 23 + k * 61) & 255;
                if ((c == 2 && k == 1) || (c == 4 && k == 3)) v = (x == 0) ? 0 : (x == 1 ? 255 : 100 + x * 10);
                p[(y * W + x) * c + k] = (uint8_t)v;
            }
    return p;
}

/* What mmp_image must give for the pattern: RGB, alpha over white. */
static void expect_rgb(int c, uint8_t *out) {
    uint8_t *p = pattern(c);
    for (int i = 0; i < W * H; i++) {
        const uint8_t *s = p + i * c;
        for (int k = 0; k < 3; k++) {
            unsigned v = c <= 2 ? s[0] : s[k];
            unsigned a = c == 2 ? s[1] : c == 4 ? s[3] : 255;
            out[i * 3 + k] = (uint8_t)((v * a + 255u * (255u - a) + 127u) / 255u);
        }
    }
    free(p);
}

/* (JPEG inputs are files written by libjpeg: stb_image_write's JPEG encoder shifts negative
 * ints, which UBSan rejects.) */
enum fmt { F_PNG, F_BMP, F_TGA };
static membuf encode(enum fmt f, int c) {
    membuf m = {0};
    uint8_t *p = pattern(c);
    int ok = 0;
    switch (f) {
    case F_PNG: ok = stbi_write_png_to_func(mem_write, &m, W, H, c, p, W * c); break;
    case F_BMP: ok = stbi_write_bmp_to_func(mem_write, &m, W, H, c, p); break;
    case F_TGA: ok = stbi_write_tga_to_func(mem_write, &m, W, H, c, p); break;
    }
    assert_true(ok);
    free(p);
    return m;
}

static void test_png_all_layouts(void **st) {
    (void)st;
    for (int c = 1; c <= 4; c++) {
        membuf m = encode(F_PNG, c);
        mmp_image *img = mmp_image_load_memory(m.p, m.n, "t.png", 0);
        if (!img) fail_msg("%s", mmp_last_error());
        assert_int_equal(img->width, W);
        assert_int_equal(img->height, H);
        uint8_t want[W * H * 3];
        expect_rgb(c, want);
        assert_memory_equal(img->data, want, sizeof want);
        mmp_image_free(img);
        free(m.p);
    }
}

static void test_bmp_tga_lossless(void **st) {
    (void)st;
    for (int f = F_BMP; f <= F_TGA; f++)
        for (int c = 1; c <= 4; c++) {
            membuf m = encode((enum fmt)f, c);
            mmp_image *img = mmp_image_load_memory(m.p, m.n, f == F_BMP ? "t.bmp" : "t.tga", 0);
            if (!img) fail_msg("fmt %d c %d: %s", f, c, mmp_last_error());
            uint8_t want[W * H * 3];
            /* stb writes BMP without alpha for c=2 (gray+alpha -> RGB) and with alpha for 4 */
            expect_rgb(f == F_BMP && c == 2 ? 1 : c, want);
            if (f == F_BMP && c == 2) {
                /* BMP drops alpha of gray+alpha: the gray values are expected */
                uint8_t *p = pattern(2);
                for (int i = 0; i < W * H; i++) want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = p[2 * i];
                free(p);
            }
            assert_memory_equal(img->data, want, sizeof want);
            mmp_image_free(img);
            free(m.p);
        }
}

static void test_jpeg(void **st) {
    (void)st;
    /* baseline (SOF0) and progressive (SOF2, jpeg_simple_progression), both written by libjpeg
     * at quality 98: 16x12, r = 16x, g = 20y, b = 128 */
    for (int f = 0; f < 2; f++) {
        mmp_image *img = mmp_image_load(mmpt_data(f ? "vision/progressive.jpg" : "vision/baseline.jpg"), 0);
        if (!img) fail_msg("%s", mmp_last_error());
        assert_int_equal(img->width, 16);
        assert_int_equal(img->height, 12);
        double s = 0;
        for (int y = 0; y < 12; y++)
            for (int x = 0; x < 16; x++) {
                const uint8_t *px = img->data + (y * 16 + x) * 3;
                s += abs(px[0] - x * 16) + abs(px[1] - y * 20) + abs(px[2] - 128);
            }
        assert_true(s / (16 * 12 * 3) < 4.0);
        mmp_image_free(img);
    }
}

/* Hand-made 1x1 GIFs: palette colour 0 = (10, 200, 30); LZW data 02 02 44 01 = clear, 0, end. */
static const uint8_t gif_opaque[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 10, 200, 30, 0, 0, 0,
                                     0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b};
/* Same with a graphic control extension making index 0 transparent: must come out white. */
static const uint8_t gif_transparent[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 10, 200, 30, 0, 0, 0,
                                          0x21, 0xf9, 4, 1, 0, 0, 0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2,
                                          0x44, 1, 0, 0x3b};

static void test_gif_pnm(void **st) {
    (void)st;
    mmp_image *img = mmp_image_load_memory(gif_opaque, sizeof gif_opaque, "t.gif", 0);
    if (!img) fail_msg("%s", mmp_last_error());
    assert_int_equal(img->width, 1);
    assert_int_equal(img->data[0], 10);
    assert_int_equal(img->data[1], 200);
    assert_int_equal(img->data[2], 30);
    mmp_image_free(img);
    img = mmp_image_load_memory(gif_transparent, sizeof gif_transparent, "t.gif", 0);
    if (!img) fail_msg("%s", mmp_last_error());
    assert_int_equal(img->data[0], 255);
    assert_int_equal(img->data[1], 255);
    assert_int_equal(img->data[2], 255);
    mmp_image_free(img);

    uint8_t ppm[64];
    int n = snprintf((char *)ppm, sizeof ppm, "P6\n2 2\n255\n");
    const uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    memcpy(ppm + n, px, 12);
    img = mmp_image_load_memory(ppm, (size_t)n + 12, "t.ppm", 0);
    if (!img) fail_msg("%s", mmp_last_error());
    assert_memory_equal(img->data, px, 12);
    mmp_image_free(img);

    n = snprintf((char *)ppm, sizeof ppm, "P5\n2 2\n255\n");
    memcpy(ppm + n, px, 4);
    img = mmp_image_load_memory(ppm, (size_t)n + 4, "t.pgm", 0);
    if (!img) fail_msg("%s", mmp_last_error());
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++) assert_int_equal(img->data[3 * i + k], px[i]);
    mmp_image_free(img);
    /* truncated PNM pixel data */
    assert_null(mmp_image_load_memory(ppm, (size_t)n + 2, "t.pgm", 0));
    assert_non_null(strstr(mmp_last_error(), "t.pgm"));
}

/* Every truncation point of every format must give an error naming the file, never a crash
 * (ASan build) and never a half-decoded image. */
static void check_damaged(const char *name, const uint8_t *p, size_t n) {
    /* truncations: every prefix for small files, else a spread */
    size_t step = n > 400 ? n / 97 : 1;
    for (size_t k = 0; k < n; k += step) {
        mmp_image *img = mmp_image_load_memory(p, k, name, 0);
        if (img) fail_msg("%s truncated to %zu of %zu bytes decoded without error", name, k, n);
        assert_non_null(strstr(mmp_last_error(), name));
    }
    /* corruptions: flip bytes; decoding may succeed (the byte was in the pixels) or fail,
     * but must not crash and a failure names the file */
    uint8_t *q = malloc(n);
    for (size_t i = 0; i < n; i++) {
        memcpy(q, p, n);
        q[i] ^= 0xA5;
        mmp_image *img = mmp_image_load_memory(q, n, name, 0);
        if (img) mmp_image_free(img);
        else assert_non_null(strstr(mmp_last_error(), name));
    }
    free(q);
}

static void test_damaged_each_format(void **st) {
    (void)st;
    const char *names[] = {"d.png", "d.bmp", "d.tga"};
    for (int f = F_PNG; f <= F_TGA; f++) {
        membuf m = encode((enum fmt)f, 4);
        check_damaged(names[f], m.p, m.n);
        free(m.p);
    }
    check_damaged("d.gif", gif_opaque, sizeof gif_opaque);
    size_t n;
    for (int f = 0; f < 2; f++) {
        uint8_t *pj = mmpt_read_file(mmpt_data(f ? "vision/progressive.jpg" : "vision/baseline.jpg"), &n);
        assert_non_null(pj);
        check_damaged(f ? "p.jpg" : "b.jpg", pj, n);
        free(pj);
    }
    uint8_t ppm[32];
    int k = snprintf((char *)ppm, sizeof ppm, "P6\n2 2\n255\n");
    memset(ppm + k, 77, 12);
    check_damaged("d.ppm", ppm, (size_t)k + 12);
    /* garbage and empty */
    assert_null(mmp_image_load_memory("hello world, not an image", 25, "junk.bin", 0));
    assert_non_null(strstr(mmp_last_error(), "junk.bin"));
    assert_null(mmp_image_load_memory("", 0, "empty.png", 0));
    assert_non_null(strstr(mmp_last_error(), "empty.png"));
}

/* Patch the IHDR width/height of a valid PNG (and fix its CRC so only the size is wrong). */
static uint32_t crc32_ref(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}
static void be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static void test_size_limits(void **st) {
    (void)st;
    membuf m = encode(F_PNG, 3);
    /* IHDR data starts at 16: width, height */
    be32(m.p + 16, 100000);
    be32(m.p + 20, 100000);
    be32(m.p + 29, crc32_ref(m.p + 12, 17));
    mmp_image *img = mmp_image_load_memory(m.p, m.n, "huge.png", 0);
    assert_null(img);
    printf("100000x100000 PNG: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "huge.png"));
    assert_non_null(strstr(mmp_last_error(), "limit"));
    be32(m.p + 16, 0);
    be32(m.p + 20, 0);
    be32(m.p + 29, crc32_ref(m.p + 12, 17));
    assert_null(mmp_image_load_memory(m.p, m.n, "zero.png", 0));
    assert_non_null(strstr(mmp_last_error(), "zero.png"));
    free(m.p);
    /* a caller limit below the real size */
    m = encode(F_PNG, 3);
    assert_null(mmp_image_load_memory(m.p, m.n, "small.png", W * H - 1));
    assert_non_null(strstr(mmp_last_error(), "limit"));
    img = mmp_image_load_memory(m.p, m.n, "small.png", W * H);
    assert_non_null(img);
    mmp_image_free(img);
    free(m.p);
    /* found by fuzzing: IHDR of 4211058086 x 2812848554 (the pixel count overflows int64) */
    static const uint8_t ovf[] = {0x89, 0x50, 0x4e, 0x47, 0xd, 0xa, 0x1a, 0xa, 0x0, 0x0, 0x0, 0xd, 0x49, 0x48,
                                  0x44, 0x52, 0xfa, 0xff, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0x78};
    assert_null(mmp_image_load_memory(ovf, sizeof ovf, "ovf.png", 0));
    assert_non_null(strstr(mmp_last_error(), "ovf.png"));
    /* PNM fields beyond what stb's int parser holds */
    const char *pnm = "P6\n99999999999 2\n255\n";
    assert_null(mmp_image_load_memory(pnm, strlen(pnm), "big.ppm", 0));
    assert_non_null(strstr(mmp_last_error(), "big.ppm"));
    /* BMP header 0x0 and huge */
    m = encode(F_BMP, 3);
    memset(m.p + 18, 0, 8);
    assert_null(mmp_image_load_memory(m.p, m.n, "zero.bmp", 0));
    assert_non_null(strstr(mmp_last_error(), "zero.bmp"));
    free(m.p);
    m = encode(F_BMP, 3);
    m.p[18] = 0xa0; m.p[19] = 0x86; m.p[20] = 0x01; m.p[21] = 0; /* 100000 */
    m.p[22] = 0xa0; m.p[23] = 0x86; m.p[24] = 0x01; m.p[25] = 0;
    assert_null(mmp_image_load_memory(m.p, m.n, "huge.bmp", 0));
    assert_non_null(strstr(mmp_last_error(), "huge.bmp"));
    free(m.p);
}

static void test_files(void **st) {
    (void)st;
    char dir[] = "/tmp/mmp_img_dirXXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_null(mmp_image_load(dir, 0));
    assert_non_null(strstr(mmp_last_error(), "directory"));
    assert_non_null(strstr(mmp_last_error(), dir));
    rmdir(dir);
    assert_null(mmp_image_load("/nonexistent/x.png", 0));
    assert_non_null(strstr(mmp_last_error(), "/nonexistent/x.png"));
    char *empty = mmpt_write_temp("", 0, ".png");
    assert_null(mmp_image_load(empty, 0));
    assert_non_null(strstr(mmp_last_error(), empty));
    unlink(empty);
    free(empty);
    membuf m = encode(F_PNG, 4);
    char *path = mmpt_write_temp(m.p, m.n / 2, ".png");
    assert_null(mmp_image_load(path, 0));
    assert_non_null(strstr(mmp_last_error(), path));
    unlink(path);
    free(path);
    free(m.p);
}

static void test_png_write_text(void **st) {
    (void)st;
    mmp_image *img = mmp_image_new(W, H);
    expect_rgb(3, img->data);
    const mmp_png_text txt[] = {
        {"prompt", "a red fox in the snow, 4k"},
        {"seed", "42"},
        {"steps", "20"},
        {"sampler", "euler_a"},
        {"negative", "caf\xc3\xa9 blur"},   /* UTF-8 -> iTXt */
    };
    size_t n = 0;
    uint8_t *png = mmp_image_encode_png(img, txt, 5, &n);
    assert_non_null(png);
    for (int i = 0; i < 5; i++) {
        char *v = mmp_png_get_text(png, n, txt[i].key);
        if (!v) fail_msg("%s: %s", txt[i].key, mmp_last_error());
        assert_string_equal(v, txt[i].value);
        free(v);
    }
    assert_null(mmp_png_get_text(png, n, "missing"));
    /* the PNG still decodes to the same pixels */
    mmp_image *back = mmp_image_load_memory(png, n, "w.png", 0);
    assert_non_null(back);
    assert_memory_equal(back->data, img->data, (size_t)W * H * 3);
    mmp_image_free(back);
    /* a damaged CRC is detected by the text reader */
    png[40] ^= 1;
    assert_null(mmp_png_get_text(png, n, "seed"));
    assert_non_null(strstr(mmp_last_error(), "CRC"));
    free(png);

    char *path = mmpt_write_temp("", 0, ".png");
    assert_int_equal(mmp_image_write_png(path, img, txt, 4), MMP_OK);
    size_t fn;
    uint8_t *f = mmpt_read_file(path, &fn);
    char *v = mmp_png_get_text(f, fn, "sampler");
    assert_string_equal(v, "euler_a");
    free(v);
    free(f);
    unlink(path);
    free(path);
    /* bad keys */
    const mmp_png_text bad[] = {{"", "x"}, {" lead", "x"}, {"a  b", "x"}, {"caf\xc3\xa9", "x"}};
    for (int i = 0; i < 4; i++) {
        assert_null(mmp_image_encode_png(img, &bad[i], 1, &n));
        assert_non_null(strstr(mmp_last_error(), "key"));
    }
    assert_int_not_equal(mmp_image_write_png("/nonexistent/dir/x.png", img, NULL, 0), MMP_OK);
    mmp_image_free(img);
    mmp_image_free(NULL);
}

/* Inputs found by fuzzing (stb_image 2.27 bugs and ours): each must give an error or an image,
 * never a crash, an abort or undefined behaviour (ASan/UBSan build). */
static void test_fuzz_regressions(void **st) {
    (void)st;
    const char *files[] = {"vision/fuzz/jpeg_ff_prefix_dht.jpg", "vision/fuzz/jpeg_huff_assert.jpg",
                           "vision/fuzz/png_ihdr_overflow.png", "vision/fuzz/jpeg_undefined_table.jpg"};
    for (int i = 0; i < 4; i++) {
        mmp_image *img = mmp_image_load(mmpt_data(files[i]), 0);
        if (img) mmp_image_free(img);
        else assert_non_null(strstr(mmp_last_error(), "fuzz/"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_all_layouts),
        cmocka_unit_test(test_bmp_tga_lossless),
        cmocka_unit_test(test_jpeg),
        cmocka_unit_test(test_gif_pnm),
        cmocka_unit_test(test_damaged_each_format),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_png_write_text),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
