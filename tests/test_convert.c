/* Converter: the q/k permutation, llama2.c -> GGUF (header, tokenizer keys, weights byte for
 * byte), HF -> GGUF checked against the llama2.c original (the HF golden was made from it by
 * HF's permutation, so our inverse must give back the exact llama2.c q/k rows), the MoE
 * upcycle (every expert equals the dense FFN), quantized output (each row equals
 * mmp_quantize_row of the f32 row, block-size fallback to f16, norms/routers f32), and bad
 * inputs. Logit equality of converted files with the HF goldens is checked through the CLI in
 * test_cli_llm.c. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp_path(const char *suffix) {
    char *p = mmpt_write_temp("", 0, suffix);
    assert_non_null(p);
    return p;
}

/* numpy: w.reshape(n_head, 2, D/2, ...).swapaxes(1, 2).reshape(w.shape), worked by hand:
 * n_head 2, D 6 (rows 0..11): head 0 = [[0,1,2],[3,4,5]] -> swap -> [[0,3],[1,4],[2,5]] ->
 * rows 0 3 1 4 2 5; head 1 likewise from 6. */
static void test_permute(void **state) {
    (void)state;
    float src[12 * 2], dst[12 * 2];
    for (int r = 0; r < 12; r++) { src[2 * r] = (float)r; src[2 * r + 1] = (float)(100 + r); }
    assert_int_equal(mmp_convert_permute_qk(dst, src, 12, 2, 2), MMP_OK);
    const int want[12] = { 0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11 };
    for (int r = 0; r < 12; r++) {
        assert_true(dst[2 * r] == (float)want[r]);
        assert_true(dst[2 * r + 1] == (float)(100 + want[r]));
    }
    assert_int_equal(mmp_convert_permute_qk(dst, src, 12, 2, 5), MMP_ERR_INVALID_ARG); /* 12 rows, 5 heads */
    assert_int_equal(mmp_convert_permute_qk(dst, src, 12, 2, 4), MMP_ERR_INVALID_ARG); /* odd head dim 3 */
}

static const mmp_tensor_info *need(const mmp_gguf *g, const char *name) {
    const mmp_tensor_info *t = mmp_gguf_find_tensor(g, name);
    if (!t) fail_msg("missing tensor %s", name);
    return t;
}

static void expect_u32(const mmp_gguf *g, const char *key, uint32_t want) {
    uint32_t v = 0;
    if (mmp_gguf_get_u32(g, key, &v) || v != want) fail_msg("%s = %u, want %u (%s)", key, v, want, mmp_last_error());
}

static char *convert_llama2c(enum mmp_type t) {
    char *out = tmp_path(".gguf");
    mmp_convert_params p = mmp_convert_params_default();
    p.out_type = t;
    enum mmp_status st = mmp_convert_llama2c_to_gguf(mmpt_data("convert/stories260K.bin"), mmpt_data("convert/tok512.bin"), out, &p);
    if (st) fail_msg("convert: %s", mmp_last_error());
    return out;
}

static void test_llama2c(void **state) {
    (void)state;
    char *out = convert_llama2c(MMP_TYPE_F32);
    mmp_gguf *g = mmp_gguf_open(out);
    assert_non_null(g);
    const char *s;
    assert_int_equal(mmp_gguf_get_str(g, "general.architecture", &s), MMP_OK);
    assert_string_equal(s, "llama");
    expect_u32(g, "llama.embedding_length", 64);
    expect_u32(g, "llama.feed_forward_length", 172);
    expect_u32(g, "llama.block_count", 5);
    expect_u32(g, "llama.attention.head_count", 8);
    expect_u32(g, "llama.attention.head_count_kv", 4);
    expect_u32(g, "llama.context_length", 512);
    expect_u32(g, "llama.rope.dimension_count", 8);
    expect_u32(g, "tokenizer.ggml.bos_token_id", 1);
    expect_u32(g, "tokenizer.ggml.eos_token_id", 2);
    assert_int_equal(mmp_gguf_get_str(g, "tokenizer.ggml.model", &s), MMP_OK);
    assert_string_equal(s, "llama");
    /* tokenizer: tok512.bin read independently here (f32 score, i32 len, bytes) */
    size_t tlen;
    uint8_t *tb = mmpt_read_file(mmpt_data("convert/tok512.bin"), &tlen);
    assert_non_null(tb);
    const mmp_gguf_value *toks, *scores, *types;
    assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks), MMP_OK);
    assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.scores", &scores), MMP_OK);
    assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.token_type", &types), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(toks), 512);
    size_t o = 4;
    for (int i = 0; i < 512; i++) {
        float sc;
        int32_t len;
        memcpy(&sc, tb + o, 4);
        memcpy(&len, tb + o + 4, 4);
        const char *raw = (const char *)tb + o + 8;
        o += 8 + (size_t)len;
        /* expected text: ids 0-2 renamed, ' ' -> U+2581 */
        char want[64];
        size_t wn = 0;
        int64_t want_type = 1;
        if (i == 0) { strcpy(want, "<unk>"); wn = 5; want_type = 2; }
        else if (i == 1) { strcpy(want, "<s>"); wn = 3; want_type = 3; }
        else if (i == 2) { strcpy(want, "</s>"); wn = 4; want_type = 3; }
        else {
            for (int k = 0; k < len; k++) {
                if (raw[k] == ' ') { memcpy(want + wn, "\xe2\x96\x81", 3); wn += 3; }
                else want[wn++] = raw[k];
            }
            if (i >= 3 && i < 259) want_type = 6; /* <0x00>..<0xFF> */
        }
        const char *got;
        size_t gl;
        assert_int_equal(mmp_gguf_arr_str(toks, (uint64_t)i, &got, &gl), MMP_OK);
        if (gl != wn || memcmp(got, want, wn)) fail_msg("token %d: got '%.*s' want '%.*s'", i, (int)gl, got, (int)wn, want);
        double gs;
        int64_t gt;
        assert_int_equal(mmp_gguf_arr_f64(scores, (uint64_t)i, &gs), MMP_OK);
        assert_true(gs == (double)sc);
        assert_int_equal(mmp_gguf_arr_i64(types, (uint64_t)i, &gt), MMP_OK);
        if (gt != want_type) fail_msg("token %d type %lld want %lld", i, (long long)gt, (long long)want_type);
    }
    free(tb);
    /* weights: byte-equal to the checkpoint, at run.c's offsets */
    size_t blen;
    uint8_t *bin = mmpt_read_file(mmpt_data("convert/stories260K.bin"), &blen);
    assert_non_null(bin);
    const float *f = (const float *)(bin + 28);
    const mmp_tensor_info *t = need(g, "token_embd.weight");
    assert_int_equal(t->type, MMP_TYPE_F32);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_memory_equal(t->data, f, 512 * 64 * 4);
    /* layer 3's wk: after emb (512*64), rms_att (5*64), wq (5*64*64), 3 layers of wk (64*32) */
    t = need(g, "blk.3.attn_k.weight");
    assert_memory_equal(t->data, f + 512 * 64 + 5 * 64 + 5 * 64 * 64 + 3 * 64 * 32, 64 * 32 * 4);
    /* layer 4's w2 (ffn_down, [64, 172]) */
    t = need(g, "blk.4.ffn_down.weight");
    assert_int_equal(t->ne[0], 172);
    size_t off_w2 = 512 * 64 + 5 * 64 + 5 * 64 * 64 + 2 * 5 * 64 * 32 + 5 * 64 * 64 + 5 * 64 + 5 * 172 * 64;
    assert_memory_equal(t->data, f + off_w2 + 4 * 64 * 172, 64 * 172 * 4);
    assert_null(mmp_gguf_find_tensor(g, "output.weight")); /* shared classifier: tied */
    assert_int_equal(mmp_gguf_n_tensors(g), 1 + 5 * 9 + 1);
    free(bin);
    mmp_gguf_free(g);
    unlink(out);
    free(out);
}

static char *convert_hf(const char *dir, enum mmp_type t, bool tok) {
    char *out = tmp_path(".gguf");
    mmp_convert_params p = mmp_convert_params_default();
    p.out_type = t;
    if (tok) p.tokenizer_llama2c = mmpt_data("convert/tok512.bin");
    enum mmp_status st = mmp_convert_hf_to_gguf(mmpt_data(dir), out, &p);
    if (st) fail_msg("convert %s: %s", dir, mmp_last_error());
    return out;
}

/* HF stories260K (q/k permuted to rotate-half order by the golden's maker) converted back must
 * give exactly the llama2.c tensors. */
static void test_hf_equals_llama2c(void **state) {
    (void)state;
    char *a = convert_llama2c(MMP_TYPE_F32), *b = convert_hf("llm/stories260K_hf", MMP_TYPE_F32, true);
    mmp_gguf *ga = mmp_gguf_open(a), *gb = mmp_gguf_open(b);
    assert_non_null(ga);
    assert_non_null(gb);
    for (int64_t i = 0; i < mmp_gguf_n_tensors(ga); i++) {
        const mmp_tensor_info *ta = mmp_gguf_tensor(ga, i), *tb = need(gb, ta->name);
        assert_int_equal(ta->type, tb->type);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(ta->data, tb->data, ta->nbytes)) fail_msg("tensor %s differs", ta->name);
    }
    /* HF has an untied lm_head that equals the llama2.c shared embedding */
    const mmp_tensor_info *o = need(gb, "output.weight"), *e = need(ga, "token_embd.weight");
    assert_memory_equal(o->data, e->data, e->nbytes);
    /* the same tokenizer keys */
    const mmp_gguf_value *va, *vb;
    assert_int_equal(mmp_gguf_get_arr(ga, "tokenizer.ggml.tokens", &va), MMP_OK);
    assert_int_equal(mmp_gguf_get_arr(gb, "tokenizer.ggml.tokens", &vb), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(va), mmp_gguf_arr_n(vb));
    mmp_gguf_free(ga);
    mmp_gguf_free(gb);
    unlink(a); unlink(b);
    free(a); free(b);
}

static void test_moe(void **state) {
    (void)state;
    char *d = convert_hf("llm/stories260K_hf", MMP_TYPE_F32, true), *m = convert_hf("llm/stories260K_moe_hf", MMP_TYPE_F32, true);
    mmp_gguf *gd = mmp_gguf_open(d), *gm = mmp_gguf_open(m);
    assert_non_null(gd);
    assert_non_null(gm);
    expect_u32(gm, "llama.expert_count", 4);
    expect_u32(gm, "llama.expert_used_count", 2);
    const char *parts[3][2] = { { "ffn_gate", "ffn_gate_exps" }, { "ffn_up", "ffn_up_exps" }, { "ffn_down", "ffn_down_exps" } };
    for (int l = 0; l < 5; l++) {
        char n1[64], n2[64];
        for (int k = 0; k < 3; k++) {
            snprintf(n1, sizeof n1, "blk.%d.%s.weight", l, parts[k][0]);
            snprintf(n2, sizeof n2, "blk.%d.%s.weight", l, parts[k][1]);
            const mmp_tensor_info *td = need(gd, n1), *tm = need(gm, n2);
            assert_int_equal(tm->n_dims, 3);
            assert_int_equal(tm->ne[2], 4);
            for (int e = 0; e < 4; e++)
                if (memcmp((const char *)tm->data + (size_t)e * td->nbytes, td->data, td->nbytes))
                    fail_msg("%s expert %d differs from the dense %s", n2, e, n1);
        }
        snprintf(n1, sizeof n1, "blk.%d.attn_q.weight", l);
        assert_memory_equal(need(gd, n1)->data, need(gm, n1)->data, need(gd, n1)->nbytes);
        snprintf(n1, sizeof n1, "blk.%d.ffn_gate_inp.weight", l);
        assert_int_equal(need(gm, n1)->type, MMP_TYPE_F32);
        assert_int_equal(need(gm, n1)->ne[1], 4);
    }
    mmp_gguf_free(gd);
    mmp_gguf_free(gm);
    unlink(d); unlink(m);
    free(d); free(m);
}

/* Quantized output: each row is exactly mmp_quantize_row of the f32 row; rows of 172 (not a
 * multiple of 32) fall back to f16; norms and routers stay f32; qwen2 names and biases. */
static void test_quantized(void **state) {
    (void)state;
    const enum mmp_type types[3] = { MMP_TYPE_F16, MMP_TYPE_Q8_0, MMP_TYPE_Q4_0 };
    char *ref = convert_hf("llm/stories260K_hf", MMP_TYPE_F32, false);
    mmp_gguf *gr = mmp_gguf_open(ref);
    assert_non_null(gr);
    for (int ti = 0; ti < 3; ti++) {
        char *q = convert_hf("llm/stories260K_hf", types[ti], false);
        mmp_gguf *gq = mmp_gguf_open(q);
        assert_non_null(gq);
        expect_u32(gq, "general.file_type", types[ti] == MMP_TYPE_F16 ? 1 : types[ti] == MMP_TYPE_Q8_0 ? 7 : 2);
        for (int64_t i = 0; i < mmp_gguf_n_tensors(gr); i++) {
            const mmp_tensor_info *tr = mmp_gguf_tensor(gr, i), *tq = need(gq, tr->name);
            enum mmp_type want = tr->n_dims == 1 ? MMP_TYPE_F32 : (tr->ne[0] % 32 ? MMP_TYPE_F16 : types[ti]);
            if (tq->type != want) fail_msg("%s: %s is %s, want %s", mmp_type_name(types[ti]), tr->name, mmp_type_name(tq->type), mmp_type_name(want));
            size_t rs = mmp_row_size(want, tr->ne[0]);
            uint8_t *buf = malloc(rs);
            for (int64_t r = 0; r < tr->ne[1]; r++) {
                assert_int_equal(mmp_quantize_row(want, (const float *)tr->data + r * tr->ne[0], buf, tr->ne[0]), MMP_OK);
                if (memcmp(buf, (const uint8_t *)tq->data + r * rs, rs)) fail_msg("%s row %lld differs", tr->name, (long long)r);
            }
            free(buf);
        }
        mmp_gguf_free(gq);
        unlink(q);
        free(q);
    }
    mmp_gguf_free(gr);
    unlink(ref);
    free(ref);

    /* qwen2_moe: arch keys, no permutation (q rows equal the HF rows), shared expert */
    char *qm = convert_hf("llm/qwen2_moe", MMP_TYPE_F32, false);
    mmp_gguf *g = mmp_gguf_open(qm);
    assert_non_null(g);
    const char *s;
    assert_int_equal(mmp_gguf_get_str(g, "general.architecture", &s), MMP_OK);
    assert_string_equal(s, "qwen2moe");
    expect_u32(g, "qwen2moe.expert_count", 8);
    expect_u32(g, "qwen2moe.expert_feed_forward_length", 64);
    expect_u32(g, "qwen2moe.expert_shared_feed_forward_length", 128);
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("llm/qwen2_moe/model.safetensors"));
    assert_non_null(st);
    const mmp_tensor_info *hq = mmp_safetensors_find(st, "model.layers.1.self_attn.q_proj.weight");
    assert_memory_equal(need(g, "blk.1.attn_q.weight")->data, hq->data, hq->nbytes);
    hq = mmp_safetensors_find(st, "model.layers.1.self_attn.k_proj.bias");
    assert_memory_equal(need(g, "blk.1.attn_k.bias")->data, hq->data, hq->nbytes);
    need(g, "blk.1.ffn_gate_inp_shexp.weight");
    need(g, "blk.1.ffn_down_shexp.weight");
    mmp_safetensors_free(st);
    mmp_gguf_free(g);
    unlink(qm);
    free(qm);
}

/* A folder with a symlink to a real model.safetensors and a config.json we write. */
static char *fake_hf(const char *model_dir, const char *config) {
    char tmpl[] = "/tmp/mmpt_convXXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char p[512], src[512];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    snprintf(src, sizeof src, "%s/model.safetensors", mmpt_data(model_dir));
    assert_int_equal(symlink(src, p), 0);
    snprintf(p, sizeof p, "%s/config.json", d);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(config, f);
    fclose(f);
    return strdup(d);
}

static void expect_hf_error(const char *config, enum mmp_status want, const char *needle, const char *tok) {
    char *d = fake_hf("llm/stories260K_hf", config);
    char *out = tmp_path(".gguf");
    mmp_convert_params p = mmp_convert_params_default();
    p.tokenizer_llama2c = tok;
    enum mmp_status st = mmp_convert_hf_to_gguf(d, out, &p);
    if (st != want) fail_msg("status %d want %d (%s)", st, want, mmp_last_error());
    if (!strstr(mmp_last_error(), needle)) fail_msg("message '%s' lacks '%s'", mmp_last_error(), needle);
    unlink(out);
    free(out);
    mmpt_rm_model_dir(d);
}

/* config.json text of stories260K with one field changed (layers, kv heads, ff, vocab, bos). */
static const char *cfg(int layers, int kv, int ff, int vocab, int bos) {
    static char buf[512];
    snprintf(buf, sizeof buf, "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": 8, \"num_key_value_heads\": %d, \"intermediate_size\": %d, \"vocab_size\": %d, "
             "\"bos_token_id\": %d, \"eos_token_id\": 2}", layers, kv, ff, vocab, bos);
    return buf;
}

/* tokenizer_config.json's chat_template is copied to tokenizer.chat_template. */
static void test_chat_template_copied(void **state) {
    (void)state;
    char *d = fake_hf("llm/stories260K_hf", cfg(5, 4, 172, 512, 1));
    char p[512];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", d);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"chat_template\": \"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\"}", f);
    fclose(f);
    char *out = tmp_path(".gguf");
    mmp_convert_params cp = mmp_convert_params_default();
    cp.tokenizer_llama2c = mmpt_data("convert/tok512.bin");
    assert_int_equal(mmp_convert_hf_to_gguf(d, out, &cp), MMP_OK);
    mmp_gguf *g = mmp_gguf_open(out);
    assert_non_null(g);
    const char *t;
    assert_int_equal(mmp_gguf_get_str(g, "tokenizer.chat_template", &t), MMP_OK);
    assert_non_null(strstr(t, "'<|im_start|>' + message['role'] + '\n'"));
    enum mmp_chat_template ct;
    assert_int_equal(mmp_chat_detect(t, &ct), MMP_OK);
    assert_int_equal(ct, MMP_CHAT_CHATML);
    mmp_gguf_free(g);
    unlink(out);
    free(out);
    unlink(p);
    mmpt_rm_model_dir(d);
}

/* --vocab copies every tokenizer.* key of another GGUF file (here: the llama2.c conversion)
 * and checks its size against the model. */
static void test_vocab_copy(void **state) {
    (void)state;
    char *ref = convert_llama2c(MMP_TYPE_F32), *out = tmp_path(".gguf");
    mmp_convert_params p = mmp_convert_params_default();
    p.vocab_gguf = ref;
    assert_int_equal(mmp_convert_hf_to_gguf(mmpt_data("llm/stories260K_hf"), out, &p), MMP_OK);
    mmp_gguf *a = mmp_gguf_open(ref), *b = mmp_gguf_open(out);
    assert_non_null(a);
    assert_non_null(b);
    int n_tok_keys = 0;
    for (int64_t i = 0; i < mmp_gguf_n_kv(a); i++) {
        const char *k = mmp_gguf_kv_key(a, i);
        if (strncmp(k, "tokenizer.", 10)) continue;
        n_tok_keys++;
        assert_true(mmp_gguf_has(b, k));
    }
    assert_int_equal(n_tok_keys, 9);
    const mmp_gguf_value *va, *vb;
    assert_int_equal(mmp_gguf_get_arr(a, "tokenizer.ggml.scores", &va), MMP_OK);
    assert_int_equal(mmp_gguf_get_arr(b, "tokenizer.ggml.scores", &vb), MMP_OK);
    assert_memory_equal(mmp_gguf_arr_data(va), mmp_gguf_arr_data(vb), 512 * 4);
    for (uint64_t i = 0; i < 512; i += 37) {
        const char *sa, *sb;
        size_t la, lb;
        assert_int_equal(mmp_gguf_arr_str(mmp_gguf_get(a, "tokenizer.ggml.tokens"), i, &sa, &la), MMP_OK);
        assert_int_equal(mmp_gguf_arr_str(mmp_gguf_get(b, "tokenizer.ggml.tokens"), i, &sb, &lb), MMP_OK);
        assert_int_equal(la, lb);
        assert_memory_equal(sa, sb, la);
    }
    mmp_gguf_free(a);
    mmp_gguf_free(b);
    /* a 32000-token vocabulary does not fit a 512-token model */
    p.vocab_gguf = mmpt_data("vocab/ggml-vocab-llama-spm.gguf");
    assert_int_equal(mmp_convert_hf_to_gguf(mmpt_data("llm/stories260K_hf"), out, &p), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "32000"));
    p.tokenizer_llama2c = mmpt_data("convert/tok512.bin"); /* both: refused */
    assert_int_equal(mmp_convert_hf_to_gguf(mmpt_data("llm/stories260K_hf"), out, &p), MMP_ERR_INVALID_ARG);
    unlink(ref); unlink(out);
    free(ref); free(out);
}

static void test_bad_input(void **state) {
    (void)state;
    /* sanity: the fake folder converts */
    char *d = fake_hf("llm/stories260K_hf", cfg(5, 4, 172, 512, 1));
    char *out = tmp_path(".gguf");
    mmp_convert_params p = mmp_convert_params_default();
    assert_int_equal(mmp_convert_hf_to_gguf(d, out, &p), MMP_OK);
    mmpt_rm_model_dir(d);
    expect_hf_error("{\"model_type\": \"gpt_neox\", \"hidden_size\": 64}", MMP_ERR_UNSUPPORTED, "gpt_neox", NULL);
    expect_hf_error(cfg(5, 4, 170, 512, 1), MMP_ERR_SHAPE, "mlp", NULL);   /* shapes disagree */
    expect_hf_error(cfg(6, 4, 172, 512, 1), MMP_ERR_NOT_FOUND, "model.layers.5", NULL);
    expect_hf_error(cfg(5, 3, 172, 512, 1), MMP_ERR_FORMAT, "num_key_value_heads", NULL);
    expect_hf_error(cfg(5, 4, 172, 512, 5), MMP_ERR_FORMAT, "bos", mmpt_data("convert/tok512.bin"));
    expect_hf_error(cfg(5, 4, 172, 600, 1), MMP_ERR_FORMAT, "tok512.bin", mmpt_data("convert/tok512.bin")); /* 512 tokens */
    assert_int_equal(mmp_convert_hf_to_gguf("/nonexistent/folder", out, &p), MMP_ERR_IO);
    assert_non_null(strstr(mmp_last_error(), "/nonexistent/folder"));
    p.out_type = MMP_TYPE_Q6_K;
    assert_int_equal(mmp_convert_hf_to_gguf(mmpt_data("llm/stories260K_hf"), out, &p), MMP_ERR_UNSUPPORTED);
    p.out_type = MMP_TYPE_F32;

    /* llama2.c: truncated, a bad header field, a size that does not match */
    size_t blen;
    uint8_t *bin = mmpt_read_file(mmpt_data("convert/stories260K.bin"), &blen);
    assert_non_null(bin);
    const size_t cuts[4] = { 0, 10, 28, 100000 };
    for (int i = 0; i < 4; i++) {
        char *f = mmpt_write_temp(bin, cuts[i], ".bin");
        enum mmp_status st = mmp_convert_llama2c_to_gguf(f, NULL, out, &p);
        assert_true(st == MMP_ERR_FORMAT || st == MMP_ERR_IO || (cuts[i] == 0 && st != MMP_OK));
        assert_true(strlen(mmp_last_error()) > 0);
        unlink(f);
        free(f);
    }
    int32_t bad = 7; /* n_heads 7 does not divide dim 64 */
    memcpy(bin + 12, &bad, 4);
    char *f = mmpt_write_temp(bin, blen, ".bin");
    assert_int_equal(mmp_convert_llama2c_to_gguf(f, NULL, out, &p), MMP_ERR_FORMAT);
    assert_non_null(strstr(mmp_last_error(), "n_heads"));
    unlink(f); free(f);
    bad = -5; /* n_layers */
    memcpy(bin + 8, &bad, 4);
    f = mmpt_write_temp(bin, blen, ".bin");
    assert_int_equal(mmp_convert_llama2c_to_gguf(f, NULL, out, &p), MMP_ERR_FORMAT);
    assert_non_null(strstr(mmp_last_error(), "n_layers"));
    unlink(f); free(f);
    free(bin);
    /* a tokenizer with fewer tokens than the model's vocab, and a token length past the end */
    size_t tlen;
    uint8_t *tb = mmpt_read_file(mmpt_data("convert/tok512.bin"), &tlen);
    f = mmpt_write_temp(tb, tlen / 2, ".bin");
    assert_int_equal(mmp_convert_llama2c_to_gguf(mmpt_data("convert/stories260K.bin"), f, out, &p), MMP_ERR_FORMAT);
    assert_non_null(strstr(mmp_last_error(), "vocab_size"));
    unlink(f); free(f);
    int32_t huge = 1 << 30;
    memcpy(tb + 4 + 4, &huge, 4); /* token 0's length */
    f = mmpt_write_temp(tb, tlen, ".bin");
    assert_int_equal(mmp_convert_llama2c_to_gguf(mmpt_data("convert/stories260K.bin"), f, out, &p), MMP_ERR_FORMAT);
    assert_non_null(strstr(mmp_last_error(), "token 0"));
    unlink(f); free(f);
    free(tb);
    unlink(out);
    free(out);
}

/* Hostile llama2.c headers (edge values in every field, on a cut file): an error with a
 * message or a valid conversion, never a crash (run under ASan/UBSan in the sanitizer build). */
static void test_header_fuzz(void **state) {
    (void)state;
    size_t blen;
    uint8_t *bin = mmpt_read_file(mmpt_data("convert/stories260K.bin"), &blen);
    assert_non_null(bin);
    const int32_t edge[] = { 0, -1, 1, 2, 3, 8, 64, 172, 512, -512, 1 << 24, (1 << 24) + 1, INT32_MAX, INT32_MIN };
    const size_t ne = sizeof edge / sizeof edge[0];
    char *out = tmp_path(".gguf");
    mmp_convert_params p = mmp_convert_params_default();
    uint64_t x = 12345;
    for (int it = 0; it < 300; it++) {
        uint8_t buf[4096];
        memcpy(buf, bin, sizeof buf);
        for (int k = 0; k < 3; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int field = (int)((x >> 33) % 7);
            int32_t v = edge[(x >> 40) % ne];
            memcpy(buf + 4 * field, &v, 4);
        }
        size_t len = 28 + (size_t)((x >> 20) % (sizeof buf - 28));
        char *f = mmpt_write_temp(buf, len, ".bin");
        enum mmp_status st = mmp_convert_llama2c_to_gguf(f, mmpt_data("convert/tok512.bin"), out, &p);
        if (st) assert_true(strlen(mmp_last_error()) > 0);
        unlink(f);
        free(f);
    }
    unlink(out);
    free(out);
    free(bin);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_permute),
        cmocka_unit_test(test_llama2c),
        cmocka_unit_test(test_hf_equals_llama2c),
        cmocka_unit_test(test_moe),
        cmocka_unit_test(test_quantized),
        cmocka_unit_test(test_chat_template_copied),
        cmocka_unit_test(test_vocab_copy),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_header_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
