/* safetensors reader and writer: writer round trip (every dtype the writer takes, 0-d
 * tensors, empty tensors, metadata with escapes), the real llama and TAESD files checked
 * against their own headers and config.json, and a sharded index built from the llama file. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_roundtrip(void **state) {
    (void)state;
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    assert_non_null(w);
    float f[6];
    mmpt_rand_fill(f, 6, 3, -2, 2);
    uint16_t h[4] = {0x3c00, 0xbc00, 0x0001, 0x7bff};
    int64_t i64[3] = {-1, 0, INT64_MAX};
    int32_t i32[2] = {7, -7};
    uint8_t u8[5] = {0, 1, 2, 254, 255};
    double f64[1] = {3.25};
    const int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s2[1] = {2}, s5[1] = {5}, s0[2] = {0, 7};
    assert_int_equal(mmp_safetensors_writer_add(w, "f32 \"quoted\\", MMP_TYPE_F32, 2, s23, f), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "f16", MMP_TYPE_F16, 1, s4, h), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "bf16", MMP_TYPE_BF16, 1, s4, h), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "i64", MMP_TYPE_I64, 1, s3, i64), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "i32", MMP_TYPE_I32, 1, s2, i32), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "u8", MMP_TYPE_U8, 1, s5, u8), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "scalar", MMP_TYPE_F64, 0, NULL, f64), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add(w, "empty", MMP_TYPE_F32, 2, s0, NULL), MMP_OK);
    const int64_t ne[2] = {3, 2}; /* ggml order: 2 rows of 3 */
    assert_int_equal(mmp_safetensors_writer_add_ne(w, "by_ne", MMP_TYPE_F32, 2, ne, f), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add_meta(w, "format", "pt"), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add_meta(w, "note", "line\nbreak \"q\""), MMP_OK);
    /* refused */
    assert_int_equal(mmp_safetensors_writer_add(w, "f16", MMP_TYPE_F16, 1, s4, h), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_safetensors_writer_add(w, "q", MMP_TYPE_Q8_0, 1, s4, h), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_safetensors_writer_add(w, "__metadata__", MMP_TYPE_F32, 1, s4, f), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_safetensors_writer_add_meta(w, "format", "x"), MMP_ERR_INVALID_ARG);

    void *buf;
    size_t len;
    assert_int_equal(mmp_safetensors_writer_write_memory(w, &buf, &len), MMP_OK);
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    assert_int_equal((8 + hlen) % 8, 0);
    char path[] = "/tmp/mmpt_st_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(mmp_safetensors_writer_write(w, path), MMP_OK);
    mmp_safetensors_writer_free(w);
    size_t flen;
    void *fbytes = mmpt_read_file(path, &flen);
    assert_non_null(fbytes);
    assert_int_equal(flen, len);
    assert_memory_equal(fbytes, buf, len); /* file and memory writers agree */
    free(fbytes);

    for (int pass = 0; pass < 2; pass++) {
        mmp_safetensors *st = pass ? mmp_safetensors_open(path) : mmp_safetensors_open_memory(buf, len, "rt.safetensors");
        if (!st) fail_msg("%s", mmp_last_error());
        assert_int_equal(mmp_safetensors_n_tensors(st), 9);
        assert_int_equal(mmp_safetensors_n_files(st), 1);
        const mmp_tensor_info *t = mmp_safetensors_find(st, "f32 \"quoted\\");
        assert_non_null(t);
        assert_int_equal(t->type, MMP_TYPE_F32);
        assert_int_equal(t->n_dims, 2);
        assert_true(t->ne[0] == 3 && t->ne[1] == 2 && t->ne[2] == 1); /* numpy [2,3] -> ne {3,2} */
        assert_memory_equal(t->data, f, sizeof f);
        t = mmp_safetensors_find(st, "by_ne");
        assert_true(t && t->ne[0] == 3 && t->ne[1] == 2);
        assert_memory_equal(t->data, f, sizeof f);
        t = mmp_safetensors_find(st, "f16");
        assert_true(t && t->type == MMP_TYPE_F16 && t->nbytes == 8);
        assert_memory_equal(t->data, h, 8);
        t = mmp_safetensors_find(st, "bf16");
        assert_true(t && t->type == MMP_TYPE_BF16);
        t = mmp_safetensors_find(st, "i64");
        assert_true(t && t->type == MMP_TYPE_I64 && t->ne[0] == 3);
        assert_memory_equal(t->data, i64, sizeof i64);
        t = mmp_safetensors_find(st, "i32");
        assert_true(t && t->type == MMP_TYPE_I32);
        assert_memory_equal(t->data, i32, sizeof i32);
        t = mmp_safetensors_find(st, "u8");
        assert_true(t && t->type == MMP_TYPE_U8);
        assert_memory_equal(t->data, u8, sizeof u8);
        t = mmp_safetensors_find(st, "scalar");
        assert_true(t && t->n_dims == 0 && t->ne[0] == 1 && t->nbytes == 8);
        assert_memory_equal(t->data, f64, 8);
        t = mmp_safetensors_find(st, "empty");
        assert_true(t && t->nbytes == 0 && t->ne[1] == 0 && t->ne[0] == 7);
        assert_null(mmp_safetensors_find(st, "missing"));
        assert_true(strstr(mmp_last_error(), "missing") != NULL);
        assert_string_equal(mmp_safetensors_meta(st, "format"), "pt");
        assert_string_equal(mmp_safetensors_meta(st, "note"), "line\nbreak \"q\"");
        assert_int_equal(mmp_safetensors_n_meta(st), 2);
        assert_null(mmp_safetensors_meta(st, "nope"));
        mmp_safetensors_free(st);
    }
    free(buf);
    unlink(path);
    mmp_safetensors_free(NULL);
    mmp_safetensors_writer_free(NULL);
}

/* "a.b" -> "a\\.b": tensor names have dots, json paths split on them. */
static void escape_dots(char *out, size_t n, const char *key) {
    size_t k = 0;
    for (; *key && k + 2 < n; key++) {
        if (*key == '.') out[k++] = '\\';
        out[k++] = *key;
    }
    out[k] = 0;
}

/* Every tensor against the file read independently: its header (through the JSON reader)
 * gives dtype, shape and data_offsets, and the bytes at 8 + header length + begin must be
 * the tensor's data. */
static void check_against_raw(const mmp_safetensors *st, const char *path) {
    size_t len;
    uint8_t *raw = mmpt_read_file(path, &len);
    assert_non_null(raw);
    uint64_t hlen;
    memcpy(&hlen, raw, 8);
    mmp_json *hdr = mmp_json_parse((const char *)raw + 8, (size_t)hlen, path);
    assert_non_null(hdr);
    int64_t n_members;
    assert_int_equal(mmp_json_object_len(hdr, "", &n_members), MMP_OK);
    int64_t n = 0;
    for (int64_t i = 0; i < n_members; i++) {
        const char *name;
        assert_int_equal(mmp_json_object_key(hdr, "", i, &name), MMP_OK);
        if (strcmp(name, "__metadata__") == 0) continue;
        n++;
        char p[512], esc[400];
        escape_dots(esc, sizeof esc, name);
        int64_t b, e, nd;
        snprintf(p, sizeof p, "%s.data_offsets", esc);
        assert_int_equal(mmp_json_array_int(hdr, p, 0, &b), MMP_OK);
        assert_int_equal(mmp_json_array_int(hdr, p, 1, &e), MMP_OK);
        const mmp_tensor_info *t = mmp_safetensors_find(st, name);
        assert_non_null(t);
        assert_int_equal(t->nbytes, (size_t)(e - b));
        assert_int_equal(t->offset, 8 + hlen + (uint64_t)b);
        assert_memory_equal(t->data, raw + 8 + hlen + b, t->nbytes);
        snprintf(p, sizeof p, "%s.shape", esc);
        assert_int_equal(mmp_json_array_len(hdr, p, &nd), MMP_OK);
        assert_int_equal(t->n_dims, nd);
        for (int64_t d = 0; d < nd; d++) {
            int64_t dim;
            assert_int_equal(mmp_json_array_int(hdr, p, d, &dim), MMP_OK);
            assert_int_equal(t->ne[nd - 1 - d], dim);
        }
        const char *dtype;
        snprintf(p, sizeof p, "%s.dtype", esc);
        assert_int_equal(mmp_json_get_string(hdr, p, &dtype), MMP_OK);
        assert_string_equal(mmp_safetensors_dtype_name(t->type), dtype);
    }
    assert_int_equal(n, mmp_safetensors_n_tensors(st));
    mmp_json_free(hdr);
    free(raw);
}

static void test_real_llama(void **state) {
    (void)state;
    const char *path = mmpt_data("st/llama/model.safetensors");
    mmp_safetensors *st = mmp_safetensors_open(path);
    if (!st) fail_msg("%s", mmp_last_error());
    check_against_raw(st, path);
    /* names and shapes follow config.json */
    mmp_json *cfg = mmp_json_open(mmpt_data("st/llama/config.json"));
    assert_non_null(cfg);
    int64_t hidden, vocab, layers, inter, heads, kv_heads, head_dim;
    assert_int_equal(mmp_json_get_int(cfg, "hidden_size", &hidden), MMP_OK);
    assert_int_equal(mmp_json_get_int(cfg, "vocab_size", &vocab), MMP_OK);
    assert_int_equal(mmp_json_get_int(cfg, "num_hidden_layers", &layers), MMP_OK);
    assert_int_equal(mmp_json_get_int(cfg, "intermediate_size", &inter), MMP_OK);
    assert_int_equal(mmp_json_get_int(cfg, "num_attention_heads", &heads), MMP_OK);
    assert_int_equal(mmp_json_get_int(cfg, "num_key_value_heads", &kv_heads), MMP_OK);
    assert_int_equal(mmp_json_get_int(cfg, "head_dim", &head_dim), MMP_OK);
    const mmp_tensor_info *t = mmp_safetensors_find(st, "model.embed_tokens.weight");
    assert_true(t && t->ne[0] == hidden && t->ne[1] == vocab && t->type == MMP_TYPE_F32);
    for (int64_t l = 0; l < layers; l++) {
        char n[128];
        snprintf(n, sizeof n, "model.layers.%lld.self_attn.k_proj.weight", (long long)l);
        t = mmp_safetensors_find(st, n);
        assert_true(t && t->ne[0] == hidden && t->ne[1] == kv_heads * head_dim);
        snprintf(n, sizeof n, "model.layers.%lld.mlp.down_proj.weight", (long long)l);
        t = mmp_safetensors_find(st, n);
        assert_true(t && t->ne[0] == inter && t->ne[1] == hidden);
        snprintf(n, sizeof n, "model.layers.%lld.self_attn.q_proj.weight", (long long)l);
        t = mmp_safetensors_find(st, n);
        assert_true(t && t->ne[0] == hidden && t->ne[1] == heads * head_dim);
    }
    assert_int_equal(mmp_safetensors_n_tensors(st), 3 + layers * 9);
    assert_string_equal(mmp_safetensors_meta(st, "format"), "pt");
    mmp_json_free(cfg);
    mmp_safetensors_free(st);
}

static void test_real_taesd(void **state) {
    (void)state;
    const char *path = mmpt_data("st/taesd_tiny/diffusion_pytorch_model.safetensors");
    mmp_safetensors *st = mmp_safetensors_open(path);
    if (!st) fail_msg("%s", mmp_last_error());
    check_against_raw(st, path);
    mmp_json *cfg = mmp_json_open(mmpt_data("st/taesd_tiny/config.json"));
    int64_t lat;
    assert_int_equal(mmp_json_get_int(cfg, "latent_channels", &lat), MMP_OK);
    const mmp_tensor_info *t = mmp_safetensors_find(st, "decoder.layers.0.weight");
    /* conv [out, in, kh, kw] -> ne {kw, kh, in, out}; the first decoder conv reads the latents */
    assert_true(t && t->n_dims == 4 && t->ne[2] == lat);
    mmp_json_free(cfg);
    mmp_safetensors_free(st);
}

/* Shard the llama file in two by hand (the writer + an index.json) and check that the index
 * opens as one lookup with the same bytes. */
static void test_sharded(void **state) {
    (void)state;
    mmp_safetensors *one = mmp_safetensors_open(mmpt_data("st/llama/model.safetensors"));
    assert_non_null(one);
    char dir[] = "/tmp/mmpt_shard_XXXXXX";
    assert_non_null(mkdtemp(dir));
    mmp_safetensors_writer *w[2] = {mmp_safetensors_writer_new(), mmp_safetensors_writer_new()};
    int64_t n = mmp_safetensors_n_tensors(one);
    size_t cap = 64 + (size_t)n * 256, used = 0;
    char *index = malloc(cap);
    used += (size_t)snprintf(index + used, cap - used, "{\"metadata\": {\"total_size\": 123}, \"weight_map\": {");
    for (int64_t i = 0; i < n; i++) {
        const mmp_tensor_info *t = mmp_safetensors_tensor(one, i);
        int k = (int)(i % 2);
        assert_int_equal(mmp_safetensors_writer_add_ne(w[k], t->name, t->type, t->n_dims, t->ne, t->data), MMP_OK);
        used += (size_t)snprintf(index + used, cap - used, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", t->name, k + 1);
    }
    snprintf(index + used, cap - used, "}}");
    char p[256];
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/model-0000%d-of-00002.safetensors", dir, k + 1);
        assert_int_equal(mmp_safetensors_writer_write(w[k], p), MMP_OK);
        mmp_safetensors_writer_free(w[k]);
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(index, f);
    fclose(f);
    free(index);

    mmp_safetensors *sh = mmp_safetensors_open(p);
    if (!sh) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_safetensors_n_files(sh), 2);
    assert_int_equal(mmp_safetensors_n_tensors(sh), n);
    for (int64_t i = 0; i < n; i++) {
        const mmp_tensor_info *a = mmp_safetensors_tensor(one, i), *b = mmp_safetensors_find(sh, a->name);
        assert_non_null(b);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->nbytes, b->nbytes);
        for (int d = 0; d < 4; d++) assert_int_equal(a->ne[d], b->ne[d]);
        assert_memory_equal(a->data, b->data, a->nbytes);
        assert_non_null(strstr(b->file, i % 2 ? "00002-of" : "00001-of"));
    }
    assert_string_equal(mmp_safetensors_meta(sh, "total_size"), "123");
    /* the folder opens as an HF model too (no config.json: config is NULL) */
    mmp_modelfile *m = mmp_modelfile_open(dir);
    if (!m) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_modelfile_format(m), MMP_MODELFILE_HF);
    assert_int_equal(mmp_modelfile_n_tensors(m), n);
    assert_null(mmp_modelfile_config(m));
    mmp_modelfile_free(m);
    mmp_safetensors_free(sh);
    mmp_safetensors_free(one);
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/model-0000%d-of-00002.safetensors", dir, k + 1);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    unlink(p);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_real_llama),
        cmocka_unit_test(test_real_taesd),
        cmocka_unit_test(test_sharded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
