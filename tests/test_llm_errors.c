/* LLM backbone on bad input: every failure is an error status with a message naming the
 * file, the tensor or key and the value; never a crash. Broken GGUFs are written here with
 * the GGUF writer; broken HF folders are copies of the llama golden with an edited config. */
#include "testutil.h"
#include "mmpipe/llm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    F_NONE = 0,
    F_NO_ATTN_K = 1,       /* drop blk.0.attn_k.weight */
    F_BAD_Q_SHAPE = 2,     /* blk.0.attn_q.weight is {16, 8} instead of {16, 16} */
    F_VOCAB_MISMATCH = 4,  /* tokenizer vocab 30 tokens, token_embd 32 rows */
    F_UNKNOWN_ARCH = 8,    /* general.architecture = "gpt-j-turbo" */
    F_NO_HEADS = 16,       /* no llama.attention.head_count */
};

/* A tiny dense llama GGUF: vocab 32, n_embd 16, 2 heads / 1 KV head, n_ff 32, 1 layer. */
static char *tiny_gguf(int flags) {
    const int V = 32, E = 16, F = 32, HKV = 1, HD = 8;
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_non_null(w);
    const char *arch = (flags & F_UNKNOWN_ARCH) ? "gpt-j-turbo" : "llama";
    mmp_gguf_writer_add_str(w, "general.architecture", arch);
    char k[96];
#define KEY(key, v) (snprintf(k, sizeof k, "%s." key, arch), mmp_gguf_writer_add_u32(w, k, (uint32_t)(v)))
    KEY("embedding_length", E);
    KEY("block_count", 1);
    if (!(flags & F_NO_HEADS)) KEY("attention.head_count", 2);
    KEY("attention.head_count_kv", HKV);
    KEY("feed_forward_length", F);
    KEY("context_length", 64);
#undef KEY
    if (flags & F_VOCAB_MISMATCH) {
        const char *toks[30];
        char buf[30][8];
        for (int i = 0; i < 30; i++) { snprintf(buf[i], sizeof buf[i], "t%d", i); toks[i] = buf[i]; }
        mmp_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 30);
    }
    static float data[8][32 * 32];
    for (int i = 0; i < 8; i++) mmpt_rand_fill(data[i], 32 * 32, 100 + i, -0.5f, 0.5f);
    static float ones[32];
    for (int i = 0; i < 32; i++) ones[i] = 1.0f;
    int64_t ne[2];
#define T2(name, a, b, d) (ne[0] = (a), ne[1] = (b), assert_int_equal(mmp_gguf_writer_add_tensor(w, name, MMP_TYPE_F32, 2, ne, d), MMP_OK))
#define T1(name, a) (ne[0] = (a), assert_int_equal(mmp_gguf_writer_add_tensor(w, name, MMP_TYPE_F32, 1, ne, ones), MMP_OK))
    T2("token_embd.weight", E, V, data[0]);
    T1("output_norm.weight", E);
    T1("blk.0.attn_norm.weight", E);
    T1("blk.0.ffn_norm.weight", E);
    T2("blk.0.attn_q.weight", E, (flags & F_BAD_Q_SHAPE) ? 8 : 2 * HD, data[1]);
    if (!(flags & F_NO_ATTN_K)) T2("blk.0.attn_k.weight", E, HKV * HD, data[2]);
    T2("blk.0.attn_v.weight", E, HKV * HD, data[3]);
    T2("blk.0.attn_output.weight", 2 * HD, E, data[4]);
    T2("blk.0.ffn_gate.weight", E, F, data[5]);
    T2("blk.0.ffn_up.weight", E, F, data[6]);
    T2("blk.0.ffn_down.weight", F, E, data[7]);
#undef T1
#undef T2
    void *mem;
    size_t len;
    assert_int_equal(mmp_gguf_writer_write_memory(w, &mem, &len), MMP_OK);
    mmp_gguf_writer_free(w);
    char *path = mmpt_write_temp(mem, len, ".gguf");
    free(mem);
    assert_non_null(path);
    return path;
}

static void expect_load_error(const char *path, enum mmp_status want, const char *const *needles) {
    mmp_llm *m = mmp_llm_load(path, NULL);
    if (m) fail_msg("%s loaded but should not", path);
    mmpt_expect_error_mentions(needles);
    (void)want;
}

static void test_gguf_ok(void **state) {
    (void)state;
    char *p = tiny_gguf(F_NONE);
    mmp_llm *m = mmp_llm_load(p, NULL);
    if (!m) fail_msg("%s", mmp_last_error());
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    assert_int_equal(h->n_vocab, 32);
    assert_true(h->tied_output);
    assert_null(mmp_llm_get_tokenizer(m)); /* no tokenizer.ggml.* keys */

    /* prompt longer than the context */
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 8;
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, &cp);
    assert_non_null(c);
    int32_t ids[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    float logits[32];
    mmp_llm_batch b = {.n = 12, .tokens = ids, .logits = logits};
    assert_int_equal(mmp_llm_decode(c, &b), MMP_ERR_LIMIT);
    printf("  error: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "n_ctx 8"));
    assert_non_null(strstr(mmp_last_error(), "12"));
    b.n = 6;
    assert_int_equal(mmp_llm_decode(c, &b), MMP_OK);
    b.n = 3;
    assert_int_equal(mmp_llm_decode(c, &b), MMP_ERR_LIMIT);
    assert_int_equal(mmp_llm_ctx_n_past(c), 6);
    b.n = 2;
    assert_int_equal(mmp_llm_decode(c, &b), MMP_OK);
    /* token out of range, both inputs, none */
    assert_int_equal(mmp_llm_ctx_truncate(c, 0), MMP_OK);
    int32_t bad = 32;
    mmp_llm_batch bb = {.n = 1, .tokens = &bad, .logits = logits};
    assert_int_equal(mmp_llm_decode(c, &bb), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "32"));
    mmp_llm_batch none = {.n = 1, .logits = logits};
    assert_int_equal(mmp_llm_decode(c, &none), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_llm_ctx_truncate(c, 5), MMP_ERR_INVALID_ARG);
    mmp_llm_batch rl = {.n = 1, .tokens = ids, .router_logits = logits};
    assert_int_equal(mmp_llm_decode(c, &rl), MMP_ERR_INVALID_ARG);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
    unlink(p);
    free(p);
    mmp_llm_free(NULL);
    mmp_llm_ctx_free(NULL);
}

static void test_gguf_errors(void **state) {
    (void)state;
    struct { int flags; enum mmp_status st; const char *needles[3]; } cases[] = {
        {F_NO_ATTN_K, MMP_ERR_NOT_FOUND, {"blk.0.attn_k.weight", "missing", NULL}},
        {F_BAD_Q_SHAPE, MMP_ERR_SHAPE, {"blk.0.attn_q.weight", "{16, 8}", NULL}},
        {F_VOCAB_MISMATCH, MMP_ERR_SHAPE, {"30", "32", NULL}},
        {F_UNKNOWN_ARCH, MMP_ERR_UNSUPPORTED, {"gpt-j-turbo", "architecture", NULL}},
        {F_NO_HEADS, MMP_ERR_NOT_FOUND, {"llama.attention.head_count", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = tiny_gguf(cases[i].flags);
        expect_load_error(p, cases[i].st, cases[i].needles);
        unlink(p);
        free(p);
    }
    const char *n1[] = {"does-not-exist", NULL};
    expect_load_error("/nonexistent/does-not-exist.gguf", MMP_ERR_IO, n1);
}

/* A copy of the llama golden folder with config.json edited: s/from/to/. */
static char *hf_copy(const char *from, const char *to) {
    char tmpl[] = "/tmp/mmp_llm_hf_XXXXXX";
    const char *tmpdir = getenv("TMPDIR");
    char *dir;
    if (tmpdir) {
        size_t n = strlen(tmpdir) + 32;
        dir = malloc(n);
        snprintf(dir, n, "%s/mmp_llm_hf_XXXXXX", tmpdir);
    } else {
        dir = strdup(tmpl);
    }
    assert_non_null(mkdtemp(dir));
    size_t len;
    char *raw = mmpt_read_file(mmpt_data("llm/llama/config.json"), &len);
    assert_non_null(raw);
    char *cfg = calloc(1, len + 1); /* NUL-terminated copy */
    assert_non_null(cfg);
    memcpy(cfg, raw, len);
    free(raw);
    char *hit = strstr(cfg, from);
    assert_non_null(hit);
    char out[4096];
    size_t pre = (size_t)(hit - cfg);
    assert_true(len + strlen(to) < sizeof out);
    memcpy(out, cfg, pre);
    strcpy(out + pre, to);
    strcat(out, hit + strlen(from));
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(out, 1, strlen(out), f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t mlen;
    char *model = mmpt_read_file(mmpt_data("llm/llama/model.safetensors"), &mlen);
    assert_non_null(model);
    f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(model, 1, mlen, f);
    fclose(f);
    free(model);
    free(cfg);
    return dir;
}

static void test_hf_errors(void **state) {
    (void)state;
    struct { const char *from, *to; const char *needles[3]; } cases[] = {
        {"\"model_type\": \"llama\"", "\"model_type\": \"gpt-j-turbo\"", {"gpt-j-turbo", "model_type", NULL}},
        {"\"vocab_size\": 256", "\"vocab_size\": 300", {"300", "256", NULL}},
        {"\"hidden_size\": 64", "\"hidden_size\": 48", {"model.embed_tokens.weight", "{64, 256}", NULL}},
        {"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4", {"k_proj.weight", "{64, 32}", NULL}},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", {"model.layers.2.", "missing", NULL}},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"two\"", {"num_hidden_layers", NULL, NULL}},
        {"\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", {"yarn", "rope_parameters.rope_type", NULL}},
        {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": false, \"x\": 1", {NULL, NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = hf_copy(cases[i].from, cases[i].to);
        if (!cases[i].needles[0]) {
            mmp_llm *m = mmp_llm_load(dir, NULL);
            if (!m) fail_msg("%s", mmp_last_error());
            mmp_llm_free(m);
        } else {
            expect_load_error(dir, MMP_ERR_FORMAT, cases[i].needles);
        }
        mmpt_rm_model_dir(dir);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_ok),
        cmocka_unit_test(test_gguf_errors),
        cmocka_unit_test(test_hf_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
