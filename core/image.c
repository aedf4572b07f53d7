/* Image input (stb_image) and PNG output with text chunks (stb_image_write + our own chunk
 * writer). stb itself is compiled in core/image_stb.c behind a few private wrappers. */
#include "mmpipe/image.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image-stb.h"

mmp_image *mmp_image_new(int32_t width, int32_t height) {
    uint64_t n;
    if (width <= 0 || height <= 0 || !mmp__mul_ok((uint64_t)width, (uint64_t)height, &n) ||
        !mmp__mul_ok(n, 3, &n) || n > ((uint64_t)1 << 31))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_new: bad size %dx%d", (int)width, (int)height);
    mmp_image *img = mmp__calloc(1, sizeof *img);
    if (!img) return NULL;
    img->data = mmp__calloc((size_t)n, 1);
    if (!img->data) { free(img); return NULL; }
    img->width = width;
    img->height = height;
    return img;
}

void mmp_image_free(mmp_image *img) {
    if (!img) return;
    free(img->data);
    free(img);
}

static const char *fmt_name(const uint8_t *p, size_t n) {
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) return "PNG";
    if (n >= 2 && p[0] == 0xFF) {
        /* stb accepts any run of FF fill bytes before the SOI marker (FF D8) */
        size_t i = 0;
        while (i < n && p[i] == 0xFF) i++;
        if (i < n && p[i] == 0xD8) return "JPEG";
    }
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return "BMP";
    if (n >= 4 && memcmp(p, "GIF8", 4) == 0) return "GIF";
    if (n >= 2 && p[0] == 'P' && (p[1] == '5' || p[1] == '6')) return "PNM";
    return NULL;  /* TGA has no magic */
}

static enum mmp_status check_before(const uint8_t *p, size_t n, const char *name);

enum mmp_status mmp_image_info_memory(const void *data, size_t size, const char *name, int32_t *width,
                                      int32_t *height, int32_t *channels) {
    if (!name) name = "<memory>";
    if (!data || size == 0) return mmp__error(MMP_ERR_FORMAT, "%s: empty image data", name);
    if (size > (size_t)INT32_MAX) return mmp__error(MMP_ERR_LIMIT, "%s: %zu bytes is too large for an image", name, size);
    enum mmp_status st = check_before(data, size, name);
    if (st != MMP_OK) return st;
    int w = 0, h = 0, c = 0;
    if (!mmp__stb_info(data, (int)size, &w, &h, &c)) {
        const char *f = fmt_name(data, size);
        const char *why = mmp__stb_failure_reason();
        if (why && !strcmp(why, "too large"))
            return mmp__error(MMP_ERR_LIMIT, "%s: the %s header gives dimensions too large to decode (over the size limit)",
                              name, f ? f : "image");
        if (f)
            return mmp__error(MMP_ERR_FORMAT, "%s: corrupt or truncated %s header (%s)", name, f, why ? why : "?");
        return mmp__error(MMP_ERR_FORMAT,
                          "%s: not an image in a known format (PNG, JPEG, BMP, GIF, PNM, TGA) or a corrupt header (%s)",
                          name, why ? why : "?");
    }
    if (w <= 0 || h <= 0) return mmp__error(MMP_ERR_FORMAT, "%s: image header says %dx%d pixels", name, w, h);
    if (width) *width = w;
    if (height) *height = h;
    if (channels) *channels = c;
    return MMP_OK;
}

/* ---- completeness checks ----
 * stb_image decodes many truncated files without complaint (it pads missing bytes with zeros),
 * which would hand a half-grey image to the encoder. These walks check that the data the
 * header promises is all there, per format, before decoding. */

static uint32_t get_be32(const uint8_t *p);
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n);
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }

/* PNG: chunk lengths within the data, CRCs right, IEND present. */
static enum mmp_status check_png(const uint8_t *p, size_t n, const char *name) {
    size_t o = 8;
    while (o + 12 <= n) {
        uint32_t len = get_be32(p + o);
        if (len > n - o - 12)
            return mmp__error(MMP_ERR_FORMAT, "%s: truncated PNG: chunk '%.4s' at offset %zu needs %u bytes, %zu left",
                              name, (const char *)p + o + 4, o, len, n - o - 12);
        if ((crc32_update(0xFFFFFFFFu, p + o + 4, 4 + (size_t)len) ^ 0xFFFFFFFFu) != get_be32(p + o + 8 + len))
            return mmp__error(MMP_ERR_FORMAT, "%s: corrupt PNG: bad CRC in chunk '%.4s' at offset %zu", name,
                              (const char *)p + o + 4, o);
        if (memcmp(p + o + 4, "IEND", 4) == 0) return MMP_OK;
        o += 12 + (size_t)len;
    }
    return mmp__error(MMP_ERR_FORMAT, "%s: truncated PNG: no IEND chunk (data ends at byte %zu)", name, n);
}

/* JPEG: walk the markers. Every segment must fit, each DHT table may define at most 256
 * codes (stb_image 2.27 writes past its 257-entry size table otherwise), and an EOI marker
 * must end the data (entropy-coded data never holds a marker: a data byte FF is stuffed as
 * FF 00, and RSTn markers are skipped). */
static enum mmp_status check_jpeg(const uint8_t *p, size_t n, const char *name) {
    size_t o = 0;
    while (o < n && p[o] == 0xFF) o++;
    o++; /* past D8 (fmt_name found it); the walk starts at the next marker */
    /* Huffman tables defined so far (class 0 = DC, 1 = AC; ids 0..3): stb_image 2.27 decodes
     * with a never-defined table's uninitialised memory, so a scan must only use defined ones. */
    bool defined[2][4] = {{false}};
    bool progressive = false;
    while (o + 2 <= n) {
        if (p[o] != 0xFF) return mmp__error(MMP_ERR_FORMAT, "%s: corrupt JPEG: no marker at offset %zu", name, o);
        uint8_t m = p[o + 1];
        if (m == 0xFF) { o++; continue; }  /* fill byte */
        if (m == 0xD9) return MMP_OK;
        if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) { o += 2; continue; }
        if (o + 4 > n) break;
        size_t len = ((size_t)p[o + 2] << 8) | p[o + 3];
        if (len < 2 || len > n - o - 2) break;
        const uint8_t *seg = p + o + 4;  /* segment payload, len - 2 bytes */
        size_t sl = len - 2;
        if (m == 0xC2) progressive = true;
        if (m == 0xC4) {
            size_t q = 0;
            while (q < sl) {
                if (sl - q < 17) return mmp__error(MMP_ERR_FORMAT, "%s: corrupt JPEG: short DHT segment", name);
                unsigned tc = seg[q] >> 4, th = seg[q] & 15;
                if (tc > 1 || th > 3)
                    return mmp__error(MMP_ERR_FORMAT, "%s: corrupt JPEG: Huffman table class %u id %u", name, tc, th);
                size_t codes = 0;
                for (int i = 0; i < 16; i++) codes += seg[q + 1 + i];
                if (codes > 256 || codes > sl - q - 17)
                    return mmp__error(MMP_ERR_FORMAT, "%s: corrupt JPEG: Huffman table with %zu codes", name, codes);
                defined[tc][th] = true;
                q += 17 + codes;
            }
        }
        if (m == 0xDA) {
            if (sl < 1) return mmp__error(MMP_ERR_FORMAT, "%s: corrupt JPEG: empty SOS", name);
            size_t ns = seg[0];
            if (ns < 1 || ns > 4 || sl < 1 + 2 * ns + 3)
                return mmp__error(MMP_ERR_FORMAT, "%s: corrupt JPEG: SOS with %zu components", name, ns);
            unsigned ss = seg[1 + 2 * ns], ah = seg[3 + 2 * ns] >> 4;
            bool need_dc = !progressive || (ss == 0 && ah == 0), need_ac = !progressive || ss > 0;
            for (size_t c = 0; c < ns; c++) {
                unsigned td = seg[2 + 2 * c] >> 4, ta = seg[2 + 2 * c] & 15;
                if ((need_dc && (td > 3 || !defined[0][td])) || (need_ac && (ta > 3 || !defined[1][ta])))
                    return mmp__error(MMP_ERR_FORMAT, "%s: corrupt JPEG: a scan uses an undefined Huffman table", name);
            }
        }
        o += 2 + len;
        if (m == 0xDA) {
            while (o + 1 < n && !(p[o] == 0xFF && p[o + 1] != 0 && !(p[o + 1] >= 0xD0 && p[o + 1] <= 0xD7))) o++;
            if (o + 1 >= n) break;
        }
    }
    return mmp__error(MMP_ERR_FORMAT, "%s: truncated JPEG: no end-of-image marker", name);
}

/* Walk GIF sub-blocks from *o; false if they run past the end. */
static bool gif_subblocks(const uint8_t *p, size_t n, size_t *o) {
    while (*o < n) {
        uint8_t len = p[(*o)++];
        if (len == 0) return true;
        if ((size_t)len > n - *o) return false;
        *o += len;
    }
    return false;
}

/* GIF: the blocks up to and including the first image's data are complete. */
static enum mmp_status check_gif(const uint8_t *p, size_t n, const char *name) {
    if (n < 13) goto trunc;
    size_t o = 13;
    if (p[10] & 0x80) o += 3u << ((p[10] & 7) + 1);
    while (o < n) {
        uint8_t b = p[o++];
        if (b == 0x21) {
            if (o >= n) goto trunc;
            o++;
            if (!gif_subblocks(p, n, &o)) goto trunc;
        } else if (b == 0x2C) {
            if (n - o < 9) goto trunc;
            uint8_t fl = p[o + 8];
            o += 9;
            if (fl & 0x80) o += 3u << ((fl & 7) + 1);
            if (o >= n) goto trunc;
            o++; /* LZW minimum code size */
            if (!gif_subblocks(p, n, &o)) goto trunc;
            if (o >= n) goto trunc; /* no trailer and no next block: cut after the frame */
            return MMP_OK;
        } else if (b == 0x3B) {
            return mmp__error(MMP_ERR_FORMAT, "%s: GIF has no image (trailer before the first frame)", name);
        } else {
            return mmp__error(MMP_ERR_FORMAT, "%s: corrupt GIF: unknown block 0x%02x at offset %zu", name, b, o - 1);
        }
    }
trunc:
    return mmp__error(MMP_ERR_FORMAT, "%s: truncated GIF (%zu bytes)", name, n);
}

/* BMP, uncompressed (BI_RGB / BI_BITFIELDS): the pixel array fits. RLE data is left to stb. */
static enum mmp_status check_bmp(const uint8_t *p, size_t n, const char *name, int64_t w, int64_t h) {
    if (n < 34) return mmp__error(MMP_ERR_FORMAT, "%s: truncated BMP header", name);
    uint32_t off = le32(p + 10), hsz = le32(p + 14);
    if (hsz < 40) return MMP_OK; /* OS/2 v1 header: stb checks it */
    uint16_t bpp = le16(p + 28);
    uint32_t comp = le32(p + 30);
    if (comp != 0 && comp != 3) return MMP_OK;
    uint64_t stride = (((uint64_t)w * bpp + 31) / 32) * 4, need = (uint64_t)off + stride * (uint64_t)h;
    if (need > n)
        return mmp__error(MMP_ERR_FORMAT, "%s: truncated BMP: %dx%d at %u bits needs %llu bytes, the data has %zu",
                          name, (int)w, (int)h, bpp, (unsigned long long)need, n);
    return MMP_OK;
}

/* TGA: raw pixel data fits, or the RLE packets cover every pixel within the data. */
static enum mmp_status check_tga(const uint8_t *p, size_t n, const char *name, int64_t w, int64_t h) {
    if (n < 18) return mmp__error(MMP_ERR_FORMAT, "%s: truncated TGA header", name);
    uint64_t o = 18 + (uint64_t)p[0];
    if (p[1]) o += (uint64_t)le16(p + 5) * (uint64_t)((p[7] + 7) / 8);
    unsigned type = p[2], bpp = (p[16] + 7u) / 8u;
    uint64_t npx = (uint64_t)w * (uint64_t)h;
    if (bpp == 0) return mmp__error(MMP_ERR_FORMAT, "%s: corrupt TGA: 0 bits per pixel", name);
    if (type == 1 || type == 2 || type == 3) {
        if (o + npx * bpp > n) goto trunc;
        return MMP_OK;
    }
    if (type == 9 || type == 10 || type == 11) {
        uint64_t done = 0;
        while (done < npx) {
            if (o >= n) goto trunc;
            uint8_t hd = p[o++];
            uint64_t cnt = (uint64_t)(hd & 127) + 1;
            uint64_t bytes = (hd & 128) ? bpp : cnt * bpp;
            if (o + bytes > n) goto trunc;
            o += bytes;
            done += cnt;
        }
        return MMP_OK;
    }
    return MMP_OK; /* other types: stb decides */
trunc:
    return mmp__error(MMP_ERR_FORMAT, "%s: truncated TGA: the pixel data of %dx%d does not fit in %zu bytes", name,
                      (int)w, (int)h, n);
}

/* PNM (P5/P6): header fields, then one whitespace byte, then the raster. */
static enum mmp_status check_pnm(const uint8_t *p, size_t n, const char *name) {
    size_t o = 2;
    uint64_t v[3] = {0, 0, 0};
    for (int f = 0; f < 3; f++) {
        for (;;) {
            while (o < n && (p[o] == ' ' || p[o] == '\t' || p[o] == '\n' || p[o] == '\r' || p[o] == '\f' || p[o] == '\v')) o++;
            if (o < n && p[o] == '#') { while (o < n && p[o] != '\n' && p[o] != '\r') o++; continue; }
            break;
        }
        if (o >= n || p[o] < '0' || p[o] > '9') return mmp__error(MMP_ERR_FORMAT, "%s: corrupt or truncated PNM header", name);
        while (o < n && p[o] >= '0' && p[o] <= '9') {
            v[f] = v[f] * 10 + (uint64_t)(p[o++] - '0');
            /* stb parses these into an int: refuse what it cannot hold (2^24 is its size cap) */
            if (v[f] > ((uint64_t)1 << 24)) return mmp__error(MMP_ERR_FORMAT, "%s: corrupt PNM header (field over 2^24)", name);
        }
    }
    o++;
    uint64_t c = p[1] == '6' ? 3 : 1, need = v[0] * v[1] * c * (v[2] > 255 ? 2 : 1);
    if (o > n || need > n - o)
        return mmp__error(MMP_ERR_FORMAT, "%s: truncated PNM: %llux%llu needs %llu bytes of pixels, %zu left", name,
                          (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)need, o > n ? 0 : n - o);
    return MMP_OK;
}

/* Before stb sees the bytes at all (stbi_info already parses JPEG tables and PNM fields):
 * the formats with a magic number. */
static enum mmp_status check_before(const uint8_t *p, size_t n, const char *name) {
    const char *f = fmt_name(p, n);
    if (!f) return MMP_OK;
    if (!strcmp(f, "PNG")) return check_png(p, n, name);
    if (!strcmp(f, "JPEG")) return check_jpeg(p, n, name);
    if (!strcmp(f, "GIF")) return check_gif(p, n, name);
    if (!strcmp(f, "PNM")) return check_pnm(p, n, name);
    return MMP_OK;
}

/* After the header is read: the formats whose data size follows from width x height. */
static enum mmp_status check_complete(const uint8_t *p, size_t n, const char *name, int64_t w, int64_t h) {
    const char *f = fmt_name(p, n);
    if (!f) return check_tga(p, n, name, w, h); /* stbi_info accepted it; TGA is the format without magic */
    if (!strcmp(f, "BMP")) return check_bmp(p, n, name, w, h);
    return MMP_OK;
}

/* alpha-over-white in u8: c*a/255 + 255*(1-a/255), rounded. */
static inline uint8_t over_white(unsigned c, unsigned a) { return (uint8_t)((c * a + 255u * (255u - a) + 127u) / 255u); }

/* Dimensions straight from the header for the formats where stb_image itself refuses large
 * sizes with a vague message ("unknown image type" once every format was tried), so that the
 * limit error can say what the header asks for. */
static bool raw_dims(const uint8_t *p, size_t n, int64_t *w, int64_t *h) {
    const char *f = fmt_name(p, n);
    if (!f) return false;
    if (!strcmp(f, "PNG") && n >= 24 && memcmp(p + 12, "IHDR", 4) == 0) {
        *w = get_be32(p + 16); *h = get_be32(p + 20);
        return true;
    }
    if (!strcmp(f, "BMP") && n >= 26 && le32(p + 14) >= 40) {
        int32_t hh = (int32_t)le32(p + 22);
        *w = (int32_t)le32(p + 18);
        *h = hh < 0 ? -(int64_t)hh : hh;
        return true;
    }
    if (!strcmp(f, "GIF") && n >= 10) {
        *w = le16(p + 6); *h = le16(p + 8);
        return true;
    }
    return false;
}

mmp_image *mmp_image_load_memory(const void *data, size_t size, const char *name, int64_t max_pixels) {
    if (!name) name = "<memory>";
    if (max_pixels <= 0) max_pixels = MMP_IMAGE_MAX_PIXELS_DEFAULT;
    int64_t rw, rh;
    /* rw, rh < 2^32: compare by division (the product may not fit in int64) */
    if (data && raw_dims(data, size, &rw, &rh) && rw > 0 && rh > 0 && rw > max_pixels / rh)
        return mmp__error_null(MMP_ERR_LIMIT, "%s: image header says %lldx%lld = %.0f pixels, more than the limit of %lld",
                               name, (long long)rw, (long long)rh, (double)rw * (double)rh, (long long)max_pixels);
    int32_t w, h, c;
    if (mmp_image_info_memory(data, size, name, &w, &h, &c) != MMP_OK) return NULL;
    if ((int64_t)w * (int64_t)h > max_pixels)
        return mmp__error_null(MMP_ERR_LIMIT, "%s: image is %dx%d = %lld pixels, more than the limit of %lld", name,
                               (int)w, (int)h, (long long)w * h, (long long)max_pixels);
    if (check_complete(data, size, name, w, h) != MMP_OK) return NULL;
    int dw = 0, dh = 0, dc = 0;
    uint8_t *px = mmp__stb_load(data, (int)size, &dw, &dh, &dc);
    if (!px) {
        const char *f = fmt_name(data, size);
        const char *why = mmp__stb_failure_reason();
        return mmp__error_null(MMP_ERR_FORMAT, "%s: corrupt or truncated %s data (%s)", name, f ? f : "image",
                               why ? why : "?");
    }
    /* The decoder re-reads the header: it must agree with what we checked. */
    if (dw != w || dh != h || dc < 1 || dc > 4) {
        mmp__stb_free(px);
        return mmp__error_null(MMP_ERR_FORMAT, "%s: decoder gave %dx%dx%d, header said %dx%d", name, dw, dh, dc,
                               (int)w, (int)h);
    }
    mmp_image *img = mmp_image_new(w, h);
    if (!img) {
        mmp__stb_free(px);
        mmp__error_prefix("%s: ", name);
        return NULL;
    }
    size_t n = (size_t)w * (size_t)h;
    uint8_t *o = img->data;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = px + i * (size_t)dc;
        switch (dc) {
        case 1: o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = s[0]; break;
        case 2: o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = over_white(s[0], s[1]); break;
        case 3: o[3 * i] = s[0]; o[3 * i + 1] = s[1]; o[3 * i + 2] = s[2]; break;
        default:
            o[3 * i] = over_white(s[0], s[3]);
            o[3 * i + 1] = over_white(s[1], s[3]);
            o[3 * i + 2] = over_white(s[2], s[3]);
            break;
        }
    }
    mmp__stb_free(px);
    return img;
}

mmp_image *mmp_image_load(const char *path, int64_t max_pixels) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_load: no path");
    struct stat st;
    if (stat(path, &st) != 0) return mmp__error_null(MMP_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return mmp__error_null(MMP_ERR_IO, "%s: is a directory, not an image file", path);
    if (!S_ISREG(st.st_mode)) return mmp__error_null(MMP_ERR_IO, "%s: not a regular file", path);
    if (st.st_size == 0) return mmp__error_null(MMP_ERR_FORMAT, "%s: empty file", path);
    if ((int64_t)st.st_size > MMP_IMAGE_MAX_FILE_BYTES)
        return mmp__error_null(MMP_ERR_LIMIT, "%s: %lld bytes is larger than the image file limit (%lld)", path,
                               (long long)st.st_size, (long long)MMP_IMAGE_MAX_FILE_BYTES);
    FILE *f = fopen(path, "rb");
    if (!f) return mmp__error_null(MMP_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    size_t n = (size_t)st.st_size;
    uint8_t *buf = mmp__malloc(n);
    if (!buf) { fclose(f); return NULL; }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return mmp__error_null(MMP_ERR_IO, "%s: read %zu of %zu bytes", path, got, n);
    }
    mmp_image *img = mmp_image_load_memory(buf, n, path, max_pixels);
    free(buf);
    return img;
}

/* ---- PNG writing ---- */

/* CRC-32 (ISO 3309 / PNG spec annex D), bitwise: the chunks we write are small. */
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static uint32_t get_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static enum mmp_status check_key(const char *k) {
    size_t n = k ? strlen(k) : 0;
    if (n < 1 || n > 79) return mmp__error(MMP_ERR_INVALID_ARG, "PNG text key '%s': must be 1 to 79 characters", k ? k : "");
    if (k[0] == ' ' || k[n - 1] == ' ')
        return mmp__error(MMP_ERR_INVALID_ARG, "PNG text key '%s': leading or trailing space", k);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c < 32 || c > 126) return mmp__error(MMP_ERR_INVALID_ARG, "PNG text key '%s': byte 0x%02x is not printable ASCII", k, c);
        if (c == ' ' && k[i + 1] == ' ') return mmp__error(MMP_ERR_INVALID_ARG, "PNG text key '%s': double space", k);
    }
    return MMP_OK;
}

static bool is_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s > 126 || ((unsigned char)*s < 32 && *s != '\n')) return false;
    return true;
}

/* One chunk: length, type, data, CRC(type + data). ASCII values -> tEXt (key NUL text);
 * others -> iTXt (key NUL, compression flag 0, method 0, empty language NUL, empty
 * translated key NUL, UTF-8 text). Returns bytes written at out (or needed if out is NULL). */
static size_t text_chunk(uint8_t *out, const mmp_png_text *t) {
    size_t kl = strlen(t->key), vl = strlen(t->value);
    bool itxt = !is_ascii(t->value);
    size_t dl = kl + 1 + (itxt ? 4 : 0) + vl;
    if (!out) return 12 + dl;
    uint8_t *d = out + 8;
    memcpy(d, t->key, kl);
    d[kl] = 0;
    size_t o = kl + 1;
    if (itxt) { d[o++] = 0; d[o++] = 0; d[o++] = 0; d[o++] = 0; }
    memcpy(d + o, t->value, vl);
    put_be32(out, (uint32_t)dl);
    memcpy(out + 4, itxt ? "iTXt" : "tEXt", 4);
    put_be32(out + 8 + dl, crc32_update(0xFFFFFFFFu, out + 4, 4 + dl) ^ 0xFFFFFFFFu);
    return 12 + dl;
}

uint8_t *mmp_image_encode_png(const mmp_image *img, const mmp_png_text *text, int n_text, size_t *size) {
    if (!img || !img->data || img->width <= 0 || img->height <= 0 || !size || n_text < 0 || (n_text > 0 && !text))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_image_encode_png: bad arguments");
    size_t extra = 0;
    for (int i = 0; i < n_text; i++) {
        if (check_key(text[i].key) != MMP_OK) return NULL;
        if (!text[i].value) return mmp__error_null(MMP_ERR_INVALID_ARG, "PNG text '%s': NULL value", text[i].key);
        size_t vl = strlen(text[i].value);
        if (vl > ((size_t)1 << 30)) return mmp__error_null(MMP_ERR_LIMIT, "PNG text '%s': value too long", text[i].key);
        extra += text_chunk(NULL, &text[i]);
    }
    int len = 0;
    uint8_t *png = mmp__stb_write_png(img->data, img->width * 3, img->width, img->height, 3, &len);
    if (!png || len < 33) {
        if (png) mmp__stb_free(png);
        return mmp__error_null(MMP_ERR_NOMEM, "mmp_image_encode_png: PNG encoding of %dx%d failed", (int)img->width,
                               (int)img->height);
    }
    /* Signature (8) + IHDR chunk (4 len + 4 type + 13 data + 4 CRC = 25) = 33: the text chunks
     * go right after IHDR, before the image data. */
    size_t total = (size_t)len + extra;
    uint8_t *out = mmp__malloc(total);
    if (!out) { mmp__stb_free(png); return NULL; }
    memcpy(out, png, 33);
    size_t o = 33;
    for (int i = 0; i < n_text; i++) o += text_chunk(out + o, &text[i]);
    memcpy(out + o, png + 33, (size_t)len - 33);
    mmp__stb_free(png);
    *size = total;
    return out;
}

enum mmp_status mmp_image_write_png(const char *path, const mmp_image *img, const mmp_png_text *text, int n_text) {
    if (!path) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_image_write_png: no path");
    size_t n = 0;
    uint8_t *png = mmp_image_encode_png(img, text, n_text, &n);
    if (!png) {
        /* encode fails on bad arguments / keys (the common case) or allocation */
        mmp__error_prefix("%s: ", path);
        return strstr(mmp_last_error(), "memory") || strstr(mmp_last_error(), "encoding") ? MMP_ERR_NOMEM
                                                                                          : MMP_ERR_INVALID_ARG;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(png);
        return mmp__error(MMP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    size_t put = fwrite(png, 1, n, f);
    int cl = fclose(f);
    free(png);
    if (put != n || cl != 0) return mmp__error(MMP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MMP_OK;
}

char *mmp_png_get_text(const void *data, size_t size, const char *key) {
    const uint8_t *p = data;
    if (!p || size < 8 || memcmp(p, "\x89PNG\r\n\x1a\n", 8) != 0)
        return mmp__error_null(MMP_ERR_FORMAT, "not a PNG (bad signature)");
    if (!key) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_png_get_text: no key");
    size_t kl = strlen(key);
    size_t o = 8;
    while (o + 12 <= size) {
        uint32_t len = get_be32(p + o);
        if (len > size - o - 12)
            return mmp__error_null(MMP_ERR_FORMAT, "PNG chunk at offset %zu: length %u runs past the end (%zu bytes)", o,
                                   len, size);
        const uint8_t *type = p + o + 4, *d = p + o + 8;
        uint32_t crc = crc32_update(0xFFFFFFFFu, type, 4 + (size_t)len) ^ 0xFFFFFFFFu;
        if (crc != get_be32(d + len))
            return mmp__error_null(MMP_ERR_FORMAT, "PNG chunk '%.4s' at offset %zu: bad CRC", (const char *)type, o);
        bool t = memcmp(type, "tEXt", 4) == 0, it = memcmp(type, "iTXt", 4) == 0;
        if ((t || it) && len > kl && memcmp(d, key, kl) == 0 && d[kl] == 0) {
            size_t s = kl + 1;
            if (it) {
                /* compression flag, method, language NUL, translated keyword NUL */
                if (len < s + 2 || d[s] != 0) goto next;  /* compressed iTXt: not supported, skip */
                s += 2;
                for (int z = 0; z < 2; z++) {
                    while (s < len && d[s]) s++;
                    if (s >= len) goto next;
                    s++;
                }
            }
            char *v = mmp__malloc(len - s + 1);
            if (!v) return NULL;
            memcpy(v, d + s, len - s);
            v[len - s] = 0;
            return v;
        }
        if (memcmp(type, "IEND", 4) == 0) break;
    next:
        o += 12 + (size_t)len;
    }
    return mmp__error_null(MMP_ERR_NOT_FOUND, "PNG has no text chunk '%s'", key);
}
