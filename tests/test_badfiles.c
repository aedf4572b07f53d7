/* Hostile and broken model files: every one must be refused with an error whose message
 * names the problem, and never crash or leak (this suite runs under ASan + UBSan in CI).
 * Inputs are exact-size heap copies so that any read past the end is caught. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

static void *dup_bytes(const void *p, size_t n) {
    void *q = malloc(n ? n : 1);
    assert_non_null(q);
    if (n) memcpy(q, p, n);
    return q;
}

/* The open must fail with a non-empty message containing `needle` (if given). */
#define EXPECT_FAIL(obj, needle, ctx)                                                                      \
    do {                                                                                                   \
        if ((obj) != NULL) fail_msg("%s: a broken file was accepted", (ctx));                             \
        const char *_e = mmp_last_error();                                                                 \
        if (!_e[0]) fail_msg("%s: empty error message", (ctx));                                           \
        if ((needle) && !strstr(_e, (needle))) fail_msg("%s: message \"%s\" lacks \"%s\"", (ctx), _e, (needle)); \
    } while (0)

static void gguf_bad(const void *buf, size_t len, const char *needle, const char *ctx) {
    void *c = dup_bytes(buf, len);
    mmp_clear_error();
    mmp_gguf *g = mmp_gguf_open_memory(c, len, "bad.gguf");
    EXPECT_FAIL(g, needle, ctx);
    assert_true(strstr(mmp_last_error(), "bad.gguf") != NULL); /* names the file */
    free(c);
}

static void st_bad(const void *buf, size_t len, const char *needle, const char *ctx) {
    void *c = dup_bytes(buf, len);
    mmp_clear_error();
    mmp_safetensors *st = mmp_safetensors_open_memory(c, len, "bad.safetensors");
    EXPECT_FAIL(st, needle, ctx);
    assert_true(strstr(mmp_last_error(), "bad.safetensors") != NULL);
    free(c);
}

static float g_f32[8 * 2];
static uint8_t g_q8[2 * 34];

/* A small valid GGUF: kvs of several kinds and two tensors. */
static void *make_gguf(size_t *len, const char *tensor_b_name) {
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_int_equal(mmp_gguf_writer_add_str(w, "general.architecture", "llama"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "llama.block_count", 2), MMP_OK);
    const char *toks[3] = {"<s>", "a", "b"};
    assert_int_equal(mmp_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 3), MMP_OK);
    const float sc[3] = {0, -1, -2};
    assert_int_equal(mmp_gguf_writer_add_arr(w, "tokenizer.ggml.scores", MMP_GGUF_F32, sc, 3), MMP_OK);
    const int64_t ne_a[2] = {8, 2}, ne_b[2] = {32, 2};
    mmpt_rand_fill(g_f32, 16, 5, -1, 1);
    for (size_t i = 0; i < sizeof g_q8; i++) g_q8[i] = (uint8_t)(i * 3);
    assert_int_equal(mmp_gguf_writer_add_tensor(w, "tensor_a", MMP_TYPE_F32, 2, ne_a, g_f32), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_tensor(w, tensor_b_name ? tensor_b_name : "tensor_b", MMP_TYPE_Q8_0, 2, ne_b, g_q8), MMP_OK);
    void *buf;
    assert_int_equal(mmp_gguf_writer_write_memory(w, &buf, len), MMP_OK);
    mmp_gguf_writer_free(w);
    return buf;
}

/* Position just past the bytes of `s` in buf (the first occurrence). */
static size_t find_after(const uint8_t *buf, size_t len, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, s, n) == 0) return i + n;
    fail_msg("'%s' not in the buffer", s);
    return 0;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ---------------------------------------------------------------- GGUF */

static void test_gguf_truncated(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = make_gguf(&len, NULL);
    mmp_gguf *g = mmp_gguf_open_memory(buf, len, "ok.gguf");
    if (!g) fail_msg("%s", mmp_last_error());
    uint64_t data_off = mmp_gguf_data_offset(g), last_end = 0;
    for (int64_t i = 0; i < mmp_gguf_n_tensors(g); i++) {
        const mmp_tensor_info *t = mmp_gguf_tensor(g, i);
        if (t->offset + t->nbytes > last_end) last_end = t->offset + t->nbytes;
    }
    mmp_gguf_free(g);
    /* every offset through the header, then strided through the data */
    for (size_t cut = 0; cut < last_end; cut += cut < data_off ? 1 : 5) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "gguf truncated at %zu of %zu", cut, len);
        gguf_bad(buf, cut, NULL, ctx);
        const char *e = mmp_last_error();
        if (!(strstr(e, "truncated") || strstr(e, "past the end") || strstr(e, "needs at least") || strstr(e, "impossible") || strstr(e, "magic")))
            fail_msg("%s: unexpected message: %s", ctx, e);
    }
    /* the last tensor's trailing padding is not needed */
    void *c = dup_bytes(buf, (size_t)last_end);
    g = mmp_gguf_open_memory(c, (size_t)last_end, "ok.gguf");
    assert_non_null(g);
    mmp_gguf_free(g);
    free(c);
    free(buf);
}

static void test_gguf_header_fields(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = make_gguf(&len, NULL);
    uint8_t *b = dup_bytes(buf, len);
#define RESET() memcpy(b, buf, len)

    RESET(); memcpy(b, "GGML", 4); gguf_bad(b, len, "magic", "wrong magic");
    RESET(); put_u32(b + 4, 1); gguf_bad(b, len, "version 1", "version 1");
    RESET(); put_u32(b + 4, 4); gguf_bad(b, len, "version 4", "version 4");
    RESET(); put_u32(b + 4, 0xFFFFFFFFu); gguf_bad(b, len, "version", "version max");
    RESET(); put_u64(b + 8, UINT64_MAX); gguf_bad(b, len, "tensor count", "huge tensor count");
    RESET(); put_u64(b + 8, 1ull << 32); gguf_bad(b, len, "tensor count", "large tensor count");
    RESET(); put_u64(b + 8, 3); gguf_bad(b, len, NULL, "one tensor too many");
    RESET(); put_u64(b + 16, UINT64_MAX); gguf_bad(b, len, "kv count", "huge kv count");
    RESET(); put_u64(b + 16, 5); gguf_bad(b, len, NULL, "one kv too many");
    RESET(); put_u64(b + 24, UINT64_MAX); gguf_bad(b, len, "length", "huge key length");
    RESET(); put_u64(b + 24, 60000); gguf_bad(b, len, "past the end", "key past the end");
    RESET(); put_u64(b + 24, 0); gguf_bad(b, len, "empty", "empty key");
    /* the first key "general.architecture": bad UTF-8 and an embedded NUL */
    RESET(); b[24 + 8 + 3] = 0xFF; gguf_bad(b, len, "UTF-8", "key not UTF-8");
    RESET(); b[24 + 8 + 3] = 0; gguf_bad(b, len, "NUL", "key with NUL");
    /* its value type and string length */
    size_t vt = find_after(buf, len, "general.architecture");
    RESET(); put_u32(b + vt, 13); gguf_bad(b, len, "unknown value type", "kv type 13");
    RESET(); put_u32(b + vt, 0xFFFFFFFFu); gguf_bad(b, len, "unknown value type", "kv type max");
    RESET(); put_u64(b + vt + 4, UINT64_MAX); gguf_bad(b, len, "past the end", "huge string length");
    RESET(); put_u64(b + vt + 4, (uint64_t)len); gguf_bad(b, len, "past the end", "string length = file size");
    /* string array: element type, count, element length */
    size_t at = find_after(buf, len, "tokenizer.ggml.tokens");
    RESET(); put_u32(b + at + 4, 77); gguf_bad(b, len, "element type", "array elem type");
    RESET(); put_u64(b + at + 8, UINT64_MAX); gguf_bad(b, len, "array length", "huge string array");
    RESET(); put_u64(b + at + 8, 1ull << 40); gguf_bad(b, len, "array length", "large string array");
    RESET(); put_u64(b + at + 16, UINT64_MAX); gguf_bad(b, len, NULL, "huge array string length");
    /* f32 array count */
    size_t af = find_after(buf, len, "tokenizer.ggml.scores");
    RESET(); put_u64(b + af + 8, UINT64_MAX / 2); gguf_bad(b, len, "array length", "huge f32 array");
    RESET(); put_u64(b + af + 8, 1000); gguf_bad(b, len, "array length", "f32 array past end");

    /* tensor infos: name, n_dims, ne, type, offset */
    size_t ta = find_after(buf, len, "tensor_a"), tb = find_after(buf, len, "tensor_b");
    RESET(); b[ta - 1] = 0xC0; gguf_bad(b, len, "UTF-8", "tensor name not UTF-8");
    RESET(); put_u64(b + ta - 8 - 8, 300); gguf_bad(b, len, "exceeds the limit", "tensor name too long");
    RESET(); put_u64(b + ta - 8 - 8, UINT64_MAX); gguf_bad(b, len, "tensor name", "tensor name length max");
    RESET(); b[tb - 1] = 'a'; gguf_bad(b, len, "duplicate tensor name 'tensor_a'", "duplicate tensor");
    RESET(); put_u32(b + ta, 5); gguf_bad(b, len, "n_dims 5", "n_dims 5");
    RESET(); put_u32(b + ta, 0); gguf_bad(b, len, "n_dims 0", "n_dims 0");
    RESET(); put_u32(b + ta, 0xFFFFFFFFu); gguf_bad(b, len, "n_dims", "n_dims max");
    RESET(); put_u64(b + ta + 4, 0); gguf_bad(b, len, "ne[0]", "ne 0");
    RESET(); put_u64(b + ta + 4, UINT64_MAX); gguf_bad(b, len, "ne[0]", "ne -1");
    RESET(); put_u64(b + ta + 4 + 8, 1ull << 62); gguf_bad(b, len, "overflow", "ne product overflow");
    RESET(); put_u64(b + ta + 4 + 8, 1ull << 40); gguf_bad(b, len, "tensor 'tensor_a' offset", "ne huge: data past end");
    RESET(); put_u64(b + tb + 4, 33); gguf_bad(b, len, "block size", "ne[0] not a block multiple");
    RESET(); put_u32(b + ta + 4 + 16, 4); gguf_bad(b, len, "type 4", "removed type id");
    RESET(); put_u32(b + ta + 4 + 16, 999); gguf_bad(b, len, "type 999", "unknown type id");
    RESET(); put_u32(b + ta + 4 + 16, MMP_TYPE_COUNT); gguf_bad(b, len, "type", "type COUNT");
    RESET(); put_u32(b + ta + 4 + 16, MMP_TYPE_F64); gguf_bad(b, len, "tensor 'tensor_a'", "bigger type: data runs into the next");
    size_t off_a = ta + 4 + 16 + 4, off_b = tb + 4 + 16 + 4;
    RESET(); put_u64(b + off_a, 1); gguf_bad(b, len, "not a multiple of the alignment", "unaligned offset");
    RESET(); put_u64(b + off_a, 1ull << 62); gguf_bad(b, len, "tensor 'tensor_a' offset", "offset past the end");
    RESET(); put_u64(b + off_a, UINT64_MAX - 31); gguf_bad(b, len, "past the end", "offset overflow");
    RESET(); put_u64(b + off_b, 0); gguf_bad(b, len, "overlaps", "overlapping tensors");
    free(b);
    free(buf);
#undef RESET
}

static void test_gguf_crafted_values(void **state) {
    (void)state;
    const int64_t ne[1] = {8};
    float f[8] = {0};
    struct {
        const char *key;
        int type;
        uint8_t payload[64];
        size_t size;
        const char *needle;
    } cases[] = {
        {"general.alignment", MMP_GGUF_U32, {3, 0, 0, 0}, 4, "power of two"},
        {"general.alignment", MMP_GGUF_U32, {0, 0, 0, 0}, 4, "power of two"},
        {"general.alignment", MMP_GGUF_U32, {0, 0, 0, 0x80}, 4, "power of two"},
        {"general.alignment", MMP_GGUF_F32, {0, 0, 0x80, 0x3f}, 4, "general.alignment"},
        {"x.bool", MMP_GGUF_BOOL, {2}, 1, "bool"},
        {"x.arr_bool", MMP_GGUF_ARRAY, {MMP_GGUF_BOOL, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7}, 13, "bool"},
        {"x.arr_u8", MMP_GGUF_ARRAY, {MMP_GGUF_U8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f}, 12, "array length"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mmp_gguf_writer *w = mmp_gguf_writer_new();
        assert_int_equal(mmp_gguf_writer_add_raw(w, cases[k].key, (enum mmp_gguf_type)cases[k].type, cases[k].payload, cases[k].size), MMP_OK);
        assert_int_equal(mmp_gguf_writer_add_tensor(w, "t", MMP_TYPE_F32, 1, ne, f), MMP_OK);
        void *buf;
        size_t len;
        assert_int_equal(mmp_gguf_writer_write_memory(w, &buf, &len), MMP_OK);
        mmp_gguf_writer_free(w);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "crafted value %zu (%s)", k, cases[k].key);
        gguf_bad(buf, len, cases[k].needle, ctx);
        free(buf);
    }
    /* arrays nested deeper than the limit: [[[[...]]]] one element each */
    uint8_t deep[64 * 12];
    size_t n = 0;
    for (int d = 0; d < 60; d++) {
        put_u32(deep + n, MMP_GGUF_ARRAY);
        put_u64(deep + n + 4, 1);
        n += 12;
    }
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_int_equal(mmp_gguf_writer_add_raw(w, "x.deep", MMP_GGUF_ARRAY, deep, n), MMP_OK);
    void *buf;
    size_t len;
    assert_int_equal(mmp_gguf_writer_write_memory(w, &buf, &len), MMP_OK);
    mmp_gguf_writer_free(w);
    gguf_bad(buf, len, "nested", "deep nesting");
    free(buf);
    /* a key longer than the limit */
    size_t kl = MMP_GGUF_MAX_KEY + 10;
    char *key = malloc(kl + 1);
    memset(key, 'k', kl);
    key[kl] = 0;
    w = mmp_gguf_writer_new();
    assert_int_equal(mmp_gguf_writer_add_u8(w, key, 1), MMP_OK);
    assert_int_equal(mmp_gguf_writer_write_memory(w, &buf, &len), MMP_OK);
    mmp_gguf_writer_free(w);
    gguf_bad(buf, len, "exceeds the limit", "long key");
    free(buf);
    free(key);
    /* duplicate keys (the writer refuses them: patch one) */
    w = mmp_gguf_writer_new();
    assert_int_equal(mmp_gguf_writer_add_u8(w, "dup.a", 1), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u8(w, "dup.b", 1), MMP_OK);
    assert_int_equal(mmp_gguf_writer_write_memory(w, &buf, &len), MMP_OK);
    mmp_gguf_writer_free(w);
    uint8_t *pb = buf;
    pb[find_after(pb, len, "dup.b") - 1] = 'a';
    gguf_bad(buf, len, "duplicate key 'dup.a'", "duplicate key");
    free(buf);
}

/* ---------------------------------------------------------------- safetensors */

static void *make_st(size_t *len) {
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    float f[12];
    mmpt_rand_fill(f, 12, 9, -1, 1);
    const int64_t s34[2] = {3, 4}, s2[1] = {2};
    int64_t ids[2] = {5, 6};
    assert_int_equal(mmp_safetensors_writer_add(w, "w.weight", MMP_TYPE_F32, 2, s34, f), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "ids", MMP_TYPE_I64, 1, s2, ids), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "h", MMP_TYPE_F16, 1, s2, f), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add_meta(w, "format", "pt"), MMP_OK);
    void *buf;
    assert_int_equal(mmp_safetensors_writer_write_memory(w, &buf, len), MMP_OK);
    mmp_safetensors_writer_free(w);
    return buf;
}

/* A file from a header text and `data_len` zero bytes of data. */
static void st_bad_header(const char *hdr, size_t data_len, const char *needle) {
    size_t hl = strlen(hdr), len = 8 + hl + data_len;
    uint8_t *b = calloc(1, len);
    uint64_t h = hl;
    memcpy(b, &h, 8);
    memcpy(b + 8, hdr, hl);
    st_bad(b, len, needle, hdr);
    free(b);
}

static void test_st_truncated_and_lengths(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = make_st(&len);
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    for (size_t cut = 0; cut < len; cut += cut < 8 + hlen ? 1 : 3) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "safetensors truncated at %zu of %zu", cut, len);
        st_bad(buf, cut, NULL, ctx);
    }
    uint8_t *b = dup_bytes(buf, len);
    put_u64(b, UINT64_MAX); st_bad(b, len, "header length", "huge header length");
    put_u64(b, MMP_ST_MAX_HEADER + 1ull); st_bad(b, len, "limit", "header over the limit");
    put_u64(b, len - 7); st_bad(b, len, "past the end", "header length past end");
    put_u64(b, 0); st_bad(b, len, "header length", "zero header length");
    {
        uint64_t close = hlen; /* cut the header just before its closing brace */
        while (close > 0 && buf[8 + close - 1] != '}') close--;
        put_u64(b, close - 1);
        st_bad(b, len, "JSON", "header without its closing brace");
    }
    memcpy(b, buf, len);
    b[8] = '['; st_bad(b, len, NULL, "header not an object");
    free(b);
    free(buf);
}

static void test_st_bad_headers(void **state) {
    (void)state;
    st_bad_header("{", 0, "JSON");
    st_bad_header("[]      ", 0, "'{'");
    st_bad_header("{\"a\": 1}", 0, "'a' is a number");
    st_bad_header("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "dtype");
    st_bad_header("{\"a\": {\"dtype\": 3, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "dtype");
    st_bad_header("{\"a\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1, "F8_E4M3");
    st_bad_header("{\"a\": {\"dtype\": \"Q4\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1, "not supported");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", 16, "shape");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", 16, "shape[0]");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 16]}}", 16, "shape[0]");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [\"4\"], \"data_offsets\": [0, 16]}}", 16, "shape[0]");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4, "5 dims");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1099511627776, 1099511627776, 1099511627776], \"data_offsets\": [0, 4]}}", 4,
                  "overflow");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0]}}", 16, "data_offsets");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": \"0-16\"}}", 16, "data_offsets");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [16, 0]}}", 16, "begin > end");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 17]}}", 16, "past the end");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 1e300]}}", 16, "data_offsets");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 12]}}", 16, "need 16");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
                  "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                  16, "overlaps");
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                  "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                  8, "duplicate tensor name 'a'");
    st_bad_header("{\"\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "tensor name");
    st_bad_header("{\"\xff\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "UTF-8");
    st_bad_header("{\"__metadata__\": 5}", 0, "__metadata__");
    st_bad_header("{\"__metadata__\": {\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}", 0, "deeper");
    st_bad_header("{} trailing", 0, "trailing");
    /* a big array of huge-valued shapes must not be slow or crash */
    st_bad_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 15, "past the end");
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_st_index(void **state) {
    (void)state;
    char dir[] = "/tmp/mmpt_badidx_XXXXXX", p[512], s1[512];
    assert_non_null(mkdtemp(dir));
    size_t len;
    void *buf = make_st(&len);
    snprintf(s1, sizeof s1, "%s/model-00001-of-00002.safetensors", dir);
    write_file(s1, buf, len);
    free(buf);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    struct {
        const char *text, *needle;
    } cases[] = {
        {"{\"weight_map\": {\"w.weight\": \"model-00001-of-00002.safetensors\", \"x\": \"model-00002-of-00002.safetensors\"}}",
         "model-00002-of-00002.safetensors"},
        {"{\"weight_map\": {\"w.weight\": \"../model-00001-of-00002.safetensors\"}}", "not a plain file name"},
        {"{\"weight_map\": {\"w.weight\": \"/etc/passwd\"}}", "not a plain file name"},
        {"{\"weight_map\": {\"w.weight\": 1}}", "weight_map['w.weight']"},
        {"{\"weight_map\": {}}", "empty"},
        {"{\"metadata\": {}}", "weight_map"},
        {"{\"weight_map\": {\"nope\": \"model-00001-of-00002.safetensors\"}}", "'nope'"},
        {"{\"weight_map\": ", "JSON"},
        {"[1]", "object"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_file(p, cases[k].text, strlen(cases[k].text));
        mmp_clear_error();
        mmp_safetensors *st = mmp_safetensors_open(p);
        EXPECT_FAIL(st, cases[k].needle, cases[k].text);
        mmp_modelfile *m = mmp_modelfile_open(dir);
        EXPECT_FAIL(m, cases[k].needle, cases[k].text);
    }
    /* and the valid one opens */
    const char *ok = "{\"weight_map\": {\"w.weight\": \"model-00001-of-00002.safetensors\"}}";
    write_file(p, ok, strlen(ok));
    mmp_safetensors *st = mmp_safetensors_open(p);
    if (!st) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_safetensors_n_tensors(st), 3);
    mmp_safetensors_free(st);
    unlink(p);
    unlink(s1);
    rmdir(dir);
}

/* ---------------------------------------------------------------- JSON configs */

static void test_json_bad(void **state) {
    (void)state;
    size_t len;
    char *txt = mmpt_read_file(mmpt_data("cfg/nested.json"), &len);
    assert_non_null(txt);
    size_t last = len;
    while (last > 0 && txt[last - 1] != '}') last--;
    for (size_t cut = 0; cut + 1 < last; cut++) {
        char *c = dup_bytes(txt, cut);
        mmp_clear_error();
        mmp_json *j = mmp_json_parse(c, cut, "cut.json");
        char ctx[64];
        snprintf(ctx, sizeof ctx, "json truncated at %zu", cut);
        EXPECT_FAIL(j, "cut.json", ctx);
        free(c);
    }
    free(txt);
    /* wrong types through a config: each names the key */
    const char *cfg = "{\"hidden_size\": \"4096\", \"num_layers\": 2.5, \"act\": 3, \"flag\": \"true\", \"arr\": {\"a\": 1}}";
    mmp_json *j = mmp_json_parse(cfg, strlen(cfg), "config.json");
    assert_non_null(j);
    int64_t i;
    double d;
    bool b;
    const char *s;
    assert_int_equal(mmp_json_get_int(j, "hidden_size", &i), MMP_ERR_FORMAT);
    assert_true(strstr(mmp_last_error(), "config.json: 'hidden_size' is a string (\"4096\")") != NULL);
    assert_int_equal(mmp_json_get_int(j, "num_layers", &i), MMP_ERR_FORMAT);
    assert_true(strstr(mmp_last_error(), "2.5") != NULL);
    assert_int_equal(mmp_json_get_string(j, "act", &s), MMP_ERR_FORMAT);
    assert_int_equal(mmp_json_get_bool(j, "flag", &b), MMP_ERR_FORMAT);
    assert_int_equal(mmp_json_get_float(j, "flag", &d), MMP_ERR_FORMAT);
    assert_int_equal(mmp_json_array_len(j, "arr", &i), MMP_ERR_FORMAT);
    assert_true(strstr(mmp_last_error(), "'arr' is an object") != NULL);
    mmp_json_free(j);
    /* too big */
    assert_null(mmp_json_parse("{}", (size_t)MMP_JSON_MAX_SIZE + 1, "huge.json"));
    assert_true(strstr(mmp_last_error(), "limit") != NULL);
}

/* ---------------------------------------------------------------- files */

static void test_files(void **state) {
    (void)state;
    /* missing */
    const char *missing = "/tmp/mmpt-definitely-missing.gguf";
    assert_null(mmp_gguf_open(missing));
    assert_true(strstr(mmp_last_error(), missing) && strstr(mmp_last_error(), strerror(ENOENT)));
    assert_null(mmp_safetensors_open("/tmp/mmpt-definitely-missing.safetensors"));
    assert_true(strstr(mmp_last_error(), "mmpt-definitely-missing.safetensors") != NULL);
    /* a directory */
    assert_null(mmp_gguf_open("/tmp"));
    assert_true(strstr(mmp_last_error(), "/tmp") && strstr(mmp_last_error(), "directory"));
    assert_null(mmp_safetensors_open("/tmp"));
    assert_true(strstr(mmp_last_error(), "directory") != NULL);
    /* empty */
    char path[] = "/tmp/mmpt_empty_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_null(mmp_gguf_open(path));
    assert_true(strstr(mmp_last_error(), path) && strstr(mmp_last_error(), "empty"));
    assert_null(mmp_safetensors_open(path));
    assert_true(strstr(mmp_last_error(), "empty") != NULL);
    assert_null(mmp_json_open(path));
    assert_true(strstr(mmp_last_error(), "empty") != NULL);
    assert_null(mmp_modelfile_open(path));
    assert_true(strstr(mmp_last_error(), "empty") != NULL);
    /* permission denied (root reads anything: only checked for other users) */
    write_file(path, "GGUF", 4);
    chmod(path, 0);
    if (geteuid() != 0) {
        assert_null(mmp_gguf_open(path));
        assert_true(strstr(mmp_last_error(), path) && strstr(mmp_last_error(), strerror(EACCES)));
    }
    unlink(path);
    /* a truncated file through the path (mmap) route */
    size_t len;
    void *buf = make_gguf(&len, NULL);
    char p2[] = "/tmp/mmpt_trunc_XXXXXX";
    fd = mkstemp(p2);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len / 2), (ssize_t)(len / 2));
    close(fd);
    assert_null(mmp_gguf_open(p2));
    assert_true(strstr(mmp_last_error(), p2) != NULL);
    assert_null(mmp_modelfile_open(p2));
    assert_true(strstr(mmp_last_error(), p2) != NULL);
    unlink(p2);
    free(buf);
    /* random bytes never crash the readers */
    uint8_t rnd[4096];
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(x % sizeof rnd);
        for (size_t k = 0; k < n; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            rnd[k] = (uint8_t)x;
        }
        if (n >= 4 && round % 2) memcpy(rnd, "GGUF\x03\0\0\0", n < 8 ? n : 8);
        void *c = dup_bytes(rnd, n);
        mmp_gguf *g = mmp_gguf_open_memory(c, n, "rnd.gguf");
        mmp_gguf_free(g);
        mmp_safetensors *st = mmp_safetensors_open_memory(c, n, "rnd.safetensors");
        mmp_safetensors_free(st);
        mmp_json *j = mmp_json_parse(c, n, "rnd.json");
        mmp_json_free(j);
        free(c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_truncated),
        cmocka_unit_test(test_gguf_header_fields),
        cmocka_unit_test(test_gguf_crafted_values),
        cmocka_unit_test(test_st_truncated_and_lengths),
        cmocka_unit_test(test_st_bad_headers),
        cmocka_unit_test(test_st_index),
        cmocka_unit_test(test_json_bad),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
