/* GGUF reader and writer: a writer round trip over every metadata type (nested arrays and
 * string arrays included) and several tensor types and alignments, read back from memory
 * and from a path; the real vocabulary files; the tiny Mixtral GGUF checked against e2e.json. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* encoded nested array payload: array of 2 arrays of u16: [[1,2],[3]] */
static size_t nested_payload(uint8_t *p) {
    size_t n = 0;
    uint32_t t = MMP_GGUF_ARRAY;
    uint64_t c = 2;
    memcpy(p + n, &t, 4); n += 4;
    memcpy(p + n, &c, 8); n += 8;
    uint16_t a[2] = {1, 2}, b[1] = {3};
    t = MMP_GGUF_U16;
    c = 2;
    memcpy(p + n, &t, 4); n += 4;
    memcpy(p + n, &c, 8); n += 8;
    memcpy(p + n, a, 4); n += 4;
    c = 1;
    memcpy(p + n, &t, 4); n += 4;
    memcpy(p + n, &c, 8); n += 8;
    memcpy(p + n, b, 2); n += 2;
    return n;
}

static float f32_data[3 * 64];
static uint16_t f16_data[2 * 32];
static uint8_t q8_data[4 * 34]; /* 4 rows of 32 Q8_0 = one block each */

static mmp_gguf_writer *make_writer(uint32_t alignment) {
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_non_null(w);
    if (alignment != 32) assert_int_equal(mmp_gguf_writer_set_alignment(w, alignment), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_str(w, "general.architecture", "test"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u8(w, "t.u8", 200), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_i8(w, "t.i8", -100), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u16(w, "t.u16", 60000), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_i16(w, "t.i16", -30000), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "t.u32", 4000000000u), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_i32(w, "t.i32", -2000000000), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u64(w, "t.u64", 18000000000000000000ull), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_i64(w, "t.i64", -9000000000000000000ll), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_f32(w, "t.f32", 1.5f), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_f64(w, "t.f64", -2.25e300), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_bool(w, "t.bool", true), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_str(w, "t.str", "h\xc3\xa9llo"), MMP_OK);
    const float fa[3] = {0.5f, -1.0f, 3.0f};
    assert_int_equal(mmp_gguf_writer_add_arr(w, "t.arr_f32", MMP_GGUF_F32, fa, 3), MMP_OK);
    const int32_t ia[4] = {-1, 0, 1, 2147483647};
    assert_int_equal(mmp_gguf_writer_add_arr(w, "t.arr_i32", MMP_GGUF_I32, ia, 4), MMP_OK);
    const uint8_t ba[2] = {1, 0};
    assert_int_equal(mmp_gguf_writer_add_arr(w, "t.arr_bool", MMP_GGUF_BOOL, ba, 2), MMP_OK);
    const char *sa[3] = {"a", "", "\xe2\x96\x81the"};
    assert_int_equal(mmp_gguf_writer_add_arr_str(w, "t.arr_str", sa, 3), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_arr(w, "t.arr_empty", MMP_GGUF_U64, NULL, 0), MMP_OK);
    uint8_t np[64];
    size_t nn = nested_payload(np);
    assert_int_equal(mmp_gguf_writer_add_raw(w, "t.nested", MMP_GGUF_ARRAY, np, nn), MMP_OK);
    /* duplicate key is refused */
    assert_int_equal(mmp_gguf_writer_add_u8(w, "t.u8", 1), MMP_ERR_INVALID_ARG);

    mmpt_rand_fill(f32_data, 3 * 64, 1, -1, 1);
    for (int i = 0; i < 2 * 32; i++) f16_data[i] = mmp_fp32_to_fp16((float)i * 0.25f);
    for (size_t i = 0; i < sizeof q8_data; i++) q8_data[i] = (uint8_t)(i * 7);
    const int64_t ne_f32[2] = {64, 3}, ne_f16[1] = {64}, ne_q8[3] = {32, 2, 2};
    assert_int_equal(mmp_gguf_writer_add_tensor(w, "a.weight", MMP_TYPE_F32, 2, ne_f32, f32_data), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_tensor(w, "b.f16", MMP_TYPE_F16, 1, ne_f16, f16_data), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_tensor(w, "c.q8", MMP_TYPE_Q8_0, 3, ne_q8, q8_data), MMP_OK);
    /* refused: duplicate, bad block multiple, bad n_dims */
    assert_int_equal(mmp_gguf_writer_add_tensor(w, "a.weight", MMP_TYPE_F32, 2, ne_f32, f32_data), MMP_ERR_INVALID_ARG);
    const int64_t bad_ne[1] = {33};
    assert_int_equal(mmp_gguf_writer_add_tensor(w, "d", MMP_TYPE_Q8_0, 1, bad_ne, q8_data), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_gguf_writer_add_tensor(w, "e", MMP_TYPE_F32, 5, ne_f32, f32_data), MMP_ERR_INVALID_ARG);
    return w;
}

static void check_reader(const mmp_gguf *g, uint32_t alignment) {
    assert_int_equal(mmp_gguf_version(g), 3);
    assert_int_equal(mmp_gguf_alignment(g), alignment);
    assert_int_equal(mmp_gguf_data_offset(g) % alignment, 0);
    const char *s;
    assert_int_equal(mmp_gguf_get_str(g, "general.architecture", &s), MMP_OK);
    assert_string_equal(s, "test");
    uint32_t u32;
    int32_t i32;
    int64_t i64;
    uint64_t u64;
    float f;
    double d;
    bool b;
    assert_int_equal(mmp_gguf_get_u32(g, "t.u8", &u32), MMP_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(mmp_gguf_get_i32(g, "t.i8", &i32), MMP_OK);
    assert_int_equal(i32, -100);
    assert_int_equal(mmp_gguf_get_u32(g, "t.u16", &u32), MMP_OK);
    assert_int_equal(u32, 60000);
    assert_int_equal(mmp_gguf_get_i32(g, "t.i16", &i32), MMP_OK);
    assert_int_equal(i32, -30000);
    assert_int_equal(mmp_gguf_get_u32(g, "t.u32", &u32), MMP_OK);
    assert_true(u32 == 4000000000u);
    assert_int_equal(mmp_gguf_get_i32(g, "t.u32", &i32), MMP_ERR_FORMAT); /* does not fit */
    assert_true(strstr(mmp_last_error(), "t.u32") != NULL);
    assert_int_equal(mmp_gguf_get_i32(g, "t.i32", &i32), MMP_OK);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(mmp_gguf_get_u32(g, "t.i32", &u32), MMP_ERR_FORMAT); /* negative */
    assert_int_equal(mmp_gguf_get_u64(g, "t.u64", &u64), MMP_OK);
    assert_true(u64 == 18000000000000000000ull);
    assert_int_equal(mmp_gguf_get_i64(g, "t.u64", &i64), MMP_ERR_FORMAT);
    assert_int_equal(mmp_gguf_get_i64(g, "t.i64", &i64), MMP_OK);
    assert_true(i64 == -9000000000000000000ll);
    assert_int_equal(mmp_gguf_get_f32(g, "t.f32", &f), MMP_OK);
    assert_true(f == 1.5f);
    assert_int_equal(mmp_gguf_get_f64(g, "t.f64", &d), MMP_OK);
    assert_true(d == -2.25e300);
    assert_int_equal(mmp_gguf_get_f64(g, "t.u16", &d), MMP_OK); /* ints read as floats */
    assert_true(d == 60000.0);
    assert_int_equal(mmp_gguf_get_bool(g, "t.bool", &b), MMP_OK);
    assert_true(b);
    assert_int_equal(mmp_gguf_get_str(g, "t.str", &s), MMP_OK);
    assert_string_equal(s, "h\xc3\xa9llo");
    /* mismatches and missing keys name the key */
    assert_int_equal(mmp_gguf_get_u32(g, "t.str", &u32), MMP_ERR_FORMAT);
    assert_true(strstr(mmp_last_error(), "t.str") && strstr(mmp_last_error(), "string"));
    assert_int_equal(mmp_gguf_get_str(g, "t.u8", &s), MMP_ERR_FORMAT);
    assert_int_equal(mmp_gguf_get_bool(g, "t.u8", &b), MMP_ERR_FORMAT);
    assert_int_equal(mmp_gguf_get_u32(g, "no.such.key", &u32), MMP_ERR_NOT_FOUND);
    assert_true(strstr(mmp_last_error(), "no.such.key") != NULL);
    assert_false(mmp_gguf_has(g, "no.such.key"));
    assert_true(mmp_gguf_has(g, "t.nested"));

    const mmp_gguf_value *v;
    assert_int_equal(mmp_gguf_get_arr(g, "t.arr_f32", &v), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(v), 3);
    assert_int_equal(mmp_gguf_arr_type(v), MMP_GGUF_F32);
    assert_int_equal(mmp_gguf_arr_f64(v, 1, &d), MMP_OK);
    assert_true(d == -1.0);
    float raw[3];
    memcpy(raw, mmp_gguf_arr_data(v), sizeof raw);
    assert_true(raw[2] == 3.0f);
    assert_int_equal(mmp_gguf_arr_f64(v, 3, &d), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_gguf_arr_i64(v, 0, &i64), MMP_ERR_FORMAT);
    assert_int_equal(mmp_gguf_get_arr(g, "t.arr_i32", &v), MMP_OK);
    assert_int_equal(mmp_gguf_arr_i64(v, 0, &i64), MMP_OK);
    assert_int_equal(i64, -1);
    assert_int_equal(mmp_gguf_arr_i64(v, 3, &i64), MMP_OK);
    assert_int_equal(i64, 2147483647);
    assert_int_equal(mmp_gguf_get_arr(g, "t.arr_bool", &v), MMP_OK);
    assert_int_equal(mmp_gguf_arr_i64(v, 0, &i64), MMP_OK);
    assert_int_equal(i64, 1);
    assert_int_equal(mmp_gguf_get_arr(g, "t.arr_str", &v), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(v), 3);
    assert_null(mmp_gguf_arr_data(v));
    size_t len;
    assert_int_equal(mmp_gguf_arr_str(v, 0, &s, &len), MMP_OK);
    assert_true(len == 1 && s[0] == 'a');
    assert_int_equal(mmp_gguf_arr_str(v, 1, &s, &len), MMP_OK);
    assert_int_equal(len, 0);
    assert_int_equal(mmp_gguf_arr_str(v, 2, &s, &len), MMP_OK);
    assert_true(len == 6 && memcmp(s, "\xe2\x96\x81the", 6) == 0);
    assert_int_equal(mmp_gguf_get_arr(g, "t.arr_empty", &v), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(v), 0);
    assert_int_equal(mmp_gguf_arr_type(v), MMP_GGUF_U64);
    assert_int_equal(mmp_gguf_get_arr(g, "t.nested", &v), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(v), 2);
    assert_int_equal(mmp_gguf_arr_type(v), MMP_GGUF_ARRAY);
    const mmp_gguf_value *sub;
    assert_int_equal(mmp_gguf_arr_arr(v, 0, &sub), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(sub), 2);
    assert_int_equal(mmp_gguf_arr_i64(sub, 1, &i64), MMP_OK);
    assert_int_equal(i64, 2);
    assert_int_equal(mmp_gguf_arr_arr(v, 1, &sub), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(sub), 1);
    assert_int_equal(mmp_gguf_arr_i64(sub, 0, &i64), MMP_OK);
    assert_int_equal(i64, 3);
    assert_int_equal(mmp_gguf_get_arr(g, "t.u8", &v), MMP_ERR_FORMAT);

    /* iteration covers every key once, in file order */
    int64_t n_kv = mmp_gguf_n_kv(g);
    assert_true(n_kv >= 19);
    for (int64_t i = 0; i < n_kv; i++) assert_int_equal(mmp_gguf_find_kv(g, mmp_gguf_kv_key(g, i)), i);
    assert_null(mmp_gguf_kv_key(g, n_kv));

    assert_int_equal(mmp_gguf_n_tensors(g), 3);
    const mmp_tensor_info *t = mmp_gguf_find_tensor(g, "a.weight");
    assert_non_null(t);
    assert_int_equal(t->type, MMP_TYPE_F32);
    assert_int_equal(t->n_dims, 2);
    assert_true(t->ne[0] == 64 && t->ne[1] == 3 && t->ne[2] == 1 && t->ne[3] == 1);
    assert_int_equal(t->nbytes, sizeof f32_data);
    assert_memory_equal(t->data, f32_data, sizeof f32_data);
    assert_int_equal((t->offset - mmp_gguf_data_offset(g)) % alignment, 0);
    t = mmp_gguf_find_tensor(g, "b.f16");
    assert_non_null(t);
    assert_int_equal(t->type, MMP_TYPE_F16);
    assert_memory_equal(t->data, f16_data, sizeof f16_data);
    assert_int_equal((t->offset - mmp_gguf_data_offset(g)) % alignment, 0);
    t = mmp_gguf_find_tensor(g, "c.q8");
    assert_non_null(t);
    assert_int_equal(t->type, MMP_TYPE_Q8_0);
    assert_int_equal(t->n_dims, 3);
    assert_true(t->ne[0] == 32 && t->ne[1] == 2 && t->ne[2] == 2);
    assert_int_equal(t->nbytes, sizeof q8_data);
    assert_memory_equal(t->data, q8_data, sizeof q8_data);
    assert_ptr_equal(mmp_gguf_tensor(g, 2), t);
    assert_null(mmp_gguf_find_tensor(g, "nope"));
    assert_true(strstr(mmp_last_error(), "nope") != NULL);
}

static void test_roundtrip_memory(void **state) {
    (void)state;
    const uint32_t aligns[] = {32, 1, 64, 4096};
    for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
        mmp_gguf_writer *w = make_writer(aligns[k]);
        void *buf;
        size_t len;
        assert_int_equal(mmp_gguf_writer_write_memory(w, &buf, &len), MMP_OK);
        mmp_gguf_writer_free(w);
        mmp_gguf *g = mmp_gguf_open_memory(buf, len, "roundtrip.gguf");
        if (!g) fail_msg("open failed: %s", mmp_last_error());
        check_reader(g, aligns[k]);
        mmp_gguf_free(g);
        free(buf);
    }
}

static void test_roundtrip_file_and_v2(void **state) {
    (void)state;
    mmp_gguf_writer *w = make_writer(32);
    char path[] = "/tmp/mmpt_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(mmp_gguf_writer_write(w, path), MMP_OK);
    mmp_gguf *g = mmp_gguf_open(path);
    if (!g) fail_msg("open failed: %s", mmp_last_error());
    check_reader(g, 32);
    assert_string_equal(mmp_gguf_path(g), path);
    assert_string_equal(mmp_gguf_find_tensor(g, "a.weight")->file, path);
    mmp_gguf_free(g);
    /* version 2 has the same layout and is read */
    assert_int_equal(mmp_gguf_writer_set_version(w, 2), MMP_OK);
    assert_int_equal(mmp_gguf_writer_write(w, path), MMP_OK);
    g = mmp_gguf_open(path);
    assert_non_null(g);
    assert_int_equal(mmp_gguf_version(g), 2);
    mmp_gguf_free(g);
    assert_int_equal(mmp_gguf_writer_set_version(w, 1), MMP_ERR_INVALID_ARG);
    mmp_gguf_writer_free(w);
    unlink(path);
    mmp_gguf_free(NULL);
    mmp_gguf_writer_free(NULL);
}

/* Real vocabulary-only files: arrays of 32000+ strings, no tensors. The token, score and
 * token-type arrays must agree in length, and every token must be valid to read. */
static void check_vocab(const char *rel) {
    mmp_gguf *g = mmp_gguf_open(mmpt_data(rel));
    if (!g) fail_msg("%s: %s", rel, mmp_last_error());
    assert_int_equal(mmp_gguf_n_tensors(g), 0);
    const char *model;
    assert_int_equal(mmp_gguf_get_str(g, "tokenizer.ggml.model", &model), MMP_OK);
    assert_true(strlen(model) > 0);
    const mmp_gguf_value *tok;
    assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.tokens", &tok), MMP_OK);
    assert_int_equal(mmp_gguf_arr_type(tok), MMP_GGUF_STRING);
    uint64_t n = mmp_gguf_arr_n(tok);
    assert_true(n > 1000);
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        assert_int_equal(mmp_gguf_arr_str(tok, i, &s, &len), MMP_OK);
        total += len;
    }
    assert_true(total >= n / 2);
    const mmp_gguf_value *tt;
    if (mmp_gguf_get_arr(g, "tokenizer.ggml.token_type", &tt) == MMP_OK) assert_int_equal(mmp_gguf_arr_n(tt), n);
    const mmp_gguf_value *sc;
    if (mmp_gguf_get_arr(g, "tokenizer.ggml.scores", &sc) == MMP_OK) {
        assert_int_equal(mmp_gguf_arr_n(sc), n);
        assert_int_equal(mmp_gguf_arr_type(sc), MMP_GGUF_F32);
    }
    uint32_t bos;
    if (mmp_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos) == MMP_OK) assert_true(bos < n);
    for (int64_t i = 0; i < mmp_gguf_n_kv(g); i++) assert_non_null(mmp_gguf_kv_value(g, i));
    mmp_gguf_free(g);
}

static void test_real_vocab(void **state) {
    (void)state;
    check_vocab("vocab/ggml-vocab-llama-spm.gguf");
    check_vocab("vocab/ggml-vocab-bert-bge.gguf");
}

/* "a.b" -> "a\.b" so that a key with dots can be used in a json path. */
static void escape_dots(char *out, size_t n, const char *key) {
    size_t k = 0;
    for (; *key && k + 2 < n; key++) {
        if (*key == '.') out[k++] = '\\';
        out[k++] = *key;
    }
    out[k] = 0;
}

/* tiny-mixtral-q4_0.gguf against e2e.json (made by the same generator): every hparam,
 * the tensor type counts, the vocabulary size and general.name. */
static void test_tiny_mixtral(void **state) {
    (void)state;
    const char *file = "tiny-mixtral-q4_0.gguf";
    mmp_json *e2e = mmp_json_open(mmpt_data("gguf/e2e.json"));
    if (!e2e) fail_msg("%s", mmp_last_error());
    int64_t n_models;
    assert_int_equal(mmp_json_array_len(e2e, "models", &n_models), MMP_OK);
    int64_t mi = -1;
    char p[256], q[512], esc[128];
    for (int64_t i = 0; i < n_models; i++) {
        const char *f;
        snprintf(p, sizeof p, "models[%lld].file", (long long)i);
        assert_int_equal(mmp_json_get_string(e2e, p, &f), MMP_OK);
        if (strcmp(f, file) == 0) mi = i;
    }
    assert_true(mi >= 0);
    mmp_gguf *g = mmp_gguf_open(mmpt_data("gguf/tiny-mixtral-q4_0.gguf"));
    if (!g) fail_msg("%s", mmp_last_error());
    const char *arch, *name, *want_name;
    assert_int_equal(mmp_gguf_get_str(g, "general.architecture", &arch), MMP_OK);
    assert_int_equal(mmp_gguf_get_str(g, "general.name", &name), MMP_OK);
    snprintf(p, sizeof p, "models[%lld].general\\.name", (long long)mi);
    assert_int_equal(mmp_json_get_string(e2e, p, &want_name), MMP_OK);
    assert_string_equal(name, want_name);

    char hp[64];
    snprintf(hp, sizeof hp, "models[%lld].hparams", (long long)mi);
    int64_t n_hp;
    assert_int_equal(mmp_json_object_len(e2e, hp, &n_hp), MMP_OK);
    assert_true(n_hp >= 10);
    for (int64_t k = 0; k < n_hp; k++) {
        const char *key;
        assert_int_equal(mmp_json_object_key(e2e, hp, k, &key), MMP_OK);
        escape_dots(esc, sizeof esc, key);
        snprintf(q, sizeof q, "%s.%s", hp, esc);
        double want, got;
        assert_int_equal(mmp_json_get_float(e2e, q, &want), MMP_OK);
        if (strcmp(key, "vocab_size") == 0) {
            const mmp_gguf_value *tok;
            assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.tokens", &tok), MMP_OK);
            got = (double)mmp_gguf_arr_n(tok);
        } else {
            char gk[128];
            snprintf(gk, sizeof gk, "%s.%s", arch, key);
            if (mmp_gguf_get_f64(g, gk, &got) != MMP_OK) fail_msg("%s", mmp_last_error());
        }
        if (got != want) fail_msg("%s: gguf %.17g, e2e.json %.17g", key, got, want);
    }

    /* tensor types: counts per type name as e2e.json lists them */
    snprintf(p, sizeof p, "models[%lld].tensor_types", (long long)mi);
    int64_t n_types, total = 0;
    assert_int_equal(mmp_json_object_len(e2e, p, &n_types), MMP_OK);
    for (int64_t k = 0; k < n_types; k++) {
        const char *tname;
        int64_t want;
        assert_int_equal(mmp_json_object_key(e2e, p, k, &tname), MMP_OK);
        snprintf(q, sizeof q, "%s.%s", p, tname);
        assert_int_equal(mmp_json_get_int(e2e, q, &want), MMP_OK);
        int t = mmp_type_from_name(tname);
        assert_true(t >= 0);
        int64_t got = 0;
        for (int64_t i = 0; i < mmp_gguf_n_tensors(g); i++) got += mmp_gguf_tensor(g, i)->type == (enum mmp_type)t;
        if (got != want) fail_msg("type %s: %lld tensors, e2e.json says %lld", tname, (long long)got, (long long)want);
        total += want;
    }
    assert_int_equal(total, mmp_gguf_n_tensors(g));

    /* shapes follow the hparams: token_embd is {n_embd, n_vocab} */
    int64_t n_embd;
    snprintf(q, sizeof q, "%s.embedding_length", hp);
    assert_int_equal(mmp_json_get_int(e2e, q, &n_embd), MMP_OK);
    const mmp_tensor_info *te = mmp_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(te);
    assert_int_equal(te->ne[0], n_embd);
    assert_int_equal(te->n_dims, 2);
    assert_int_equal(te->nbytes, mmp_row_size(te->type, te->ne[0]) * (size_t)te->ne[1]);
    mmp_json_free(e2e);
    mmp_gguf_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_memory),
        cmocka_unit_test(test_roundtrip_file_and_v2),
        cmocka_unit_test(test_real_vocab),
        cmocka_unit_test(test_tiny_mixtral),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
