/* LLM backbone from GGUF files.
 *  1. tiny-mixtral-{f16,q8_0,q4_0}.gguf (shared/goldens/gguf, see its README): last-position
 *     logits vs ref_last_logits (numpy float64 forward with dequantized weights, f32
 *     activations) <= 1e-4 and greedy tokens == ref_greedy_tokens for every file; F16 prompt
 *     logits vs llama.cpp's prompt_logits <= 1e-3; the quantized files' differences to
 *     llama.cpp (which rounds activations to 8 bits) are printed, not asserted.
 *  2. The HF goldens (llama, mixtral, qwen2_moe) rewritten here as GGUF files with llama.cpp's
 *     names and conventions (q/k rows permuted to adjacent-pair order for llama-type archs,
 *     stacked expert tensors, 1-D shared-expert gate) must give the goldens' logits: checks
 *     the GGUF name mapping, metadata keys and rope type table. */
#include "testutil.h"
#include "mmpipe/llm.h"
#include "mmpipe/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ tiny-mixtral */

static void run_tiny(const char *qname) {
    char rel[128];
    snprintf(rel, sizeof rel, "llm/gguf/tiny-mixtral-%s.gguf", qname);
    mmp_llm *m = mmp_llm_load(mmpt_data(rel), NULL);
    if (!m) fail_msg("load %s: %s", rel, mmp_last_error());
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    assert_string_equal(h->arch, "mixtral");
    assert_int_equal(h->n_vocab, 32000);
    assert_int_equal(h->n_expert, 4);
    assert_int_equal(h->n_expert_used, 2);
    snprintf(rel, sizeof rel, "llm/gguf/tiny-mixtral-%s.io.safetensors", qname);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(rel));
    assert_non_null(io);
    int64_t n, n_greedy;
    int32_t *prompt = mmpt_st_ids(io, "prompt_tokens", &n);
    int32_t *ref_greedy = mmpt_st_ids(io, "ref_greedy_tokens", &n_greedy);
    int32_t *cpp_greedy = NULL;
    int64_t n_cpp;
    cpp_greedy = mmpt_st_ids(io, "greedy_tokens", &n_cpp);
    float *ref_last = mmpt_st_f32(io, "ref_last_logits", NULL);
    float *cpp_logits = mmpt_st_f32(io, "prompt_logits", NULL);
    const int V = h->n_vocab;

    /* the model's tokenizer (GGUF metadata) gives llama.cpp's prompt tokens */
    const mmp_tokenizer *tk = mmp_llm_get_tokenizer(m);
    if (!tk) fail_msg("no tokenizer attached to %s", qname);
    const char *text = "The quick brown fox jumps over the lazy dog";
    mmp_token *enc = NULL;
    size_t n_enc = 0;
    if (mmp_tokenizer_encode(tk, text, strlen(text), true, false, &enc, &n_enc) != MMP_OK)
        fail_msg("encode: %s", mmp_last_error());
    assert_int_equal(n_enc, n);
    for (int64_t i = 0; i < n; i++) assert_int_equal(enc[i], prompt[i]);
    free(enc);

    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, &cp);
    assert_non_null(c);
    float *logits = malloc((size_t)n * V * sizeof(float));
    mmp_llm_batch b = {.n = (int)n, .tokens = prompt, .logits = logits, .logits_all = true};
    if (mmp_llm_decode(c, &b) != MMP_OK) fail_msg("decode: %s", mmp_last_error());
    double e_last = mmpt_rel_l2(logits + (size_t)(n - 1) * V, ref_last, (size_t)V);
    double e_cpp = mmpt_rel_l2(logits, cpp_logits, (size_t)n * V);
    double e_cpp_last = mmpt_rel_l2(logits + (size_t)(n - 1) * V, cpp_logits + (size_t)(n - 1) * V, (size_t)V);
    printf("[tiny-mixtral-%s] last logits vs f32 reference: rel L2 %.3g; vs llama.cpp: all positions %.3g, last %.3g\n",
           qname, e_last, e_cpp, e_cpp_last);
    assert_true(e_last <= 1e-4);
    if (strcmp(qname, "f16") == 0) assert_true(e_cpp <= 1e-3);

    int tok = mmpt_argmax(logits + (size_t)(n - 1) * V, V);
    int same_ref = 0, same_cpp = 0;
    bool diverged_cpp = false;
    for (int i = 0; i < n_greedy; i++) {
        if (tok == ref_greedy[i] && same_ref == i) same_ref++;
        if (!diverged_cpp && i < n_cpp && tok == cpp_greedy[i]) same_cpp++;
        else diverged_cpp = true;
        mmp_llm_batch s = {.n = 1, .tokens = &tok, .logits = logits};
        if (mmp_llm_decode(c, &s) != MMP_OK) fail_msg("decode step %d: %s", i, mmp_last_error());
        tok = mmpt_argmax(logits, V);
    }
    printf("[tiny-mixtral-%s] greedy: %d/%d equal to the f32 reference, %d/%d equal to llama.cpp\n", qname, same_ref,
           (int)n_greedy, same_cpp, (int)n_cpp);
    assert_int_equal(same_ref, n_greedy);
    if (strcmp(qname, "f16") == 0) assert_int_equal(same_cpp, n_cpp);

    free(logits);
    free(cpp_logits);
    free(ref_last);
    free(cpp_greedy);
    free(ref_greedy);
    free(prompt);
    mmp_safetensors_free(io);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
}

static void test_tiny_f16(void **state) { (void)state; run_tiny("f16"); }
static void test_tiny_q8_0(void **state) { (void)state; run_tiny("q8_0"); }
static void test_tiny_q4_0(void **state) { (void)state; run_tiny("q4_0"); }

/* ------------------------------------------------------------ HF golden -> GGUF */

typedef struct conv {
    mmp_gguf_writer *w;
    void *bufs[512];
    int n_bufs;
} conv;

static void *keep(conv *cv, size_t n) {
    assert_true(cv->n_bufs < 512);
    void *p = malloc(n);
    assert_non_null(p);
    cv->bufs[cv->n_bufs++] = p;
    return p;
}

static const mmp_tensor_info *st_get(const mmp_safetensors *st, const char *fmt, int il, int e) {
    char n[256];
    snprintf(n, sizeof n, fmt, il, e);
    const mmp_tensor_info *t = mmp_safetensors_find(st, n);
    if (!t) fail_msg("golden tensor %s missing", n);
    return t;
}

/* Copy of an f32 tensor; permute_heads > 0: rows reordered from HF rotate-half to llama.cpp's
 * adjacent pairs within each of permute_heads heads (convert_hf_to_gguf's permute()). */
static float *copy_rows(conv *cv, const mmp_tensor_info *t, int permute_heads) {
    int64_t K = t->ne[0], R = t->ne[1] * t->ne[2];
    float *src = keep(cv, (size_t)(K * R) * sizeof(float));
    memcpy(src, t->data, (size_t)(K * R) * sizeof(float));
    if (permute_heads <= 0) return src;
    float *dst = keep(cv, (size_t)(K * R) * sizeof(float));
    int64_t hd = R / permute_heads;
    for (int64_t hh = 0; hh < permute_heads; hh++)
        for (int64_t i = 0; i < hd / 2; i++)
            for (int64_t j = 0; j < 2; j++)
                memcpy(dst + (hh * hd + 2 * i + j) * K, src + (hh * hd + j * hd / 2 + i) * K, (size_t)K * sizeof(float));
    return dst;
}

static void add(conv *cv, const char *name, const mmp_tensor_info *t, int permute_heads) {
    float *d = copy_rows(cv, t, permute_heads);
    assert_int_equal(mmp_gguf_writer_add_tensor(cv->w, name, MMP_TYPE_F32, t->n_dims, t->ne, d), MMP_OK);
}

static void add_stacked(conv *cv, const char *name, const mmp_safetensors *st, const char *fmt, int il, int n_exp) {
    const mmp_tensor_info *t0 = st_get(st, fmt, il, 0);
    size_t one = (size_t)(t0->ne[0] * t0->ne[1]) * sizeof(float);
    char *d = keep(cv, one * (size_t)n_exp);
    for (int e = 0; e < n_exp; e++) memcpy(d + (size_t)e * one, st_get(st, fmt, il, e)->data, one);
    int64_t ne[3] = {t0->ne[0], t0->ne[1], n_exp};
    assert_int_equal(mmp_gguf_writer_add_tensor(cv->w, name, MMP_TYPE_F32, 3, ne, d), MMP_OK);
}

/* arch: "llama" (llama/mixtral goldens) or "qwen2moe". Returns the temp file path. */
static char *hf_golden_to_gguf(const char *golden, const char *arch) {
    char rel[128];
    snprintf(rel, sizeof rel, "llm/%s/model.safetensors", golden);
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data(rel));
    assert_non_null(st);
    snprintf(rel, sizeof rel, "llm/%s", golden);
    mmp_llm *ref = mmp_llm_load(mmpt_data(rel), NULL);
    assert_non_null(ref);
    const mmp_llm_hparams *h = mmp_llm_get_hparams(ref);
    conv cv = {.w = mmp_gguf_writer_new()};
    assert_non_null(cv.w);
    char k[128];
    const bool permute = strcmp(arch, "llama") == 0;
    mmp_gguf_writer_add_str(cv.w, "general.architecture", arch);
#define KEY_U32(key, v) (snprintf(k, sizeof k, "%s." key, arch), mmp_gguf_writer_add_u32(cv.w, k, (uint32_t)(v)))
    KEY_U32("embedding_length", h->n_embd);
    KEY_U32("block_count", h->n_layer);
    KEY_U32("attention.head_count", h->n_head);
    KEY_U32("attention.head_count_kv", h->n_head_kv);
    KEY_U32("context_length", h->n_ctx_train);
    KEY_U32("vocab_size", h->n_vocab);
    if (h->n_ff) KEY_U32("feed_forward_length", h->n_ff);
    if (h->n_expert) {
        KEY_U32("expert_count", h->n_expert);
        KEY_U32("expert_used_count", h->n_expert_used);
        KEY_U32("expert_feed_forward_length", h->n_ff_expert);
    }
    if (h->n_ff_shared) KEY_U32("expert_shared_feed_forward_length", h->n_ff_shared);
#undef KEY_U32
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    mmp_gguf_writer_add_f32(cv.w, k, h->rope_theta);
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    mmp_gguf_writer_add_f32(cv.w, k, h->norm_eps);

    add(&cv, "token_embd.weight", st_get(st, "model.embed_tokens.weight", 0, 0), 0);
    add(&cv, "output_norm.weight", st_get(st, "model.norm.weight", 0, 0), 0);
    add(&cv, "output.weight", st_get(st, "lm_head.weight", 0, 0), 0);
    const bool mixtral = h->n_expert > 0 && permute;
    for (int il = 0; il < h->n_layer; il++) {
        char n[96];
#define BLK(x) (snprintf(n, sizeof n, "blk.%d." x, il), n)
        add(&cv, BLK("attn_norm.weight"), st_get(st, "model.layers.%d.input_layernorm.weight", il, 0), 0);
        add(&cv, BLK("attn_q.weight"), st_get(st, "model.layers.%d.self_attn.q_proj.weight", il, 0), permute ? h->n_head : 0);
        add(&cv, BLK("attn_k.weight"), st_get(st, "model.layers.%d.self_attn.k_proj.weight", il, 0), permute ? h->n_head_kv : 0);
        add(&cv, BLK("attn_v.weight"), st_get(st, "model.layers.%d.self_attn.v_proj.weight", il, 0), 0);
        add(&cv, BLK("attn_output.weight"), st_get(st, "model.layers.%d.self_attn.o_proj.weight", il, 0), 0);
        add(&cv, BLK("ffn_norm.weight"), st_get(st, "model.layers.%d.post_attention_layernorm.weight", il, 0), 0);
        if (!permute) {
            add(&cv, BLK("attn_q.bias"), st_get(st, "model.layers.%d.self_attn.q_proj.bias", il, 0), 0);
            add(&cv, BLK("attn_k.bias"), st_get(st, "model.layers.%d.self_attn.k_proj.bias", il, 0), 0);
            add(&cv, BLK("attn_v.bias"), st_get(st, "model.layers.%d.self_attn.v_proj.bias", il, 0), 0);
        }
        if (h->n_expert == 0) {
            add(&cv, BLK("ffn_gate.weight"), st_get(st, "model.layers.%d.mlp.gate_proj.weight", il, 0), 0);
            add(&cv, BLK("ffn_up.weight"), st_get(st, "model.layers.%d.mlp.up_proj.weight", il, 0), 0);
            add(&cv, BLK("ffn_down.weight"), st_get(st, "model.layers.%d.mlp.down_proj.weight", il, 0), 0);
        } else if (mixtral) {
            add(&cv, BLK("ffn_gate_inp.weight"), st_get(st, "model.layers.%d.block_sparse_moe.gate.weight", il, 0), 0);
            add_stacked(&cv, BLK("ffn_gate_exps.weight"), st, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", il, h->n_expert);
            add_stacked(&cv, BLK("ffn_up_exps.weight"), st, "model.layers.%d.block_sparse_moe.experts.%d.w3.weight", il, h->n_expert);
            add_stacked(&cv, BLK("ffn_down_exps.weight"), st, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", il, h->n_expert);
        } else {
            add(&cv, BLK("ffn_gate_inp.weight"), st_get(st, "model.layers.%d.mlp.gate.weight", il, 0), 0);
            add_stacked(&cv, BLK("ffn_gate_exps.weight"), st, "model.layers.%d.mlp.experts.%d.gate_proj.weight", il, h->n_expert);
            add_stacked(&cv, BLK("ffn_up_exps.weight"), st, "model.layers.%d.mlp.experts.%d.up_proj.weight", il, h->n_expert);
            add_stacked(&cv, BLK("ffn_down_exps.weight"), st, "model.layers.%d.mlp.experts.%d.down_proj.weight", il, h->n_expert);
            add(&cv, BLK("ffn_gate_shexp.weight"), st_get(st, "model.layers.%d.mlp.shared_expert.gate_proj.weight", il, 0), 0);
            add(&cv, BLK("ffn_up_shexp.weight"), st_get(st, "model.layers.%d.mlp.shared_expert.up_proj.weight", il, 0), 0);
            add(&cv, BLK("ffn_down_shexp.weight"), st_get(st, "model.layers.%d.mlp.shared_expert.down_proj.weight", il, 0), 0);
            /* llama.cpp: 1-D {n_embd} */
            const mmp_tensor_info *sg = st_get(st, "model.layers.%d.mlp.shared_expert_gate.weight", il, 0);
            float *d = copy_rows(&cv, sg, 0);
            int64_t ne1[1] = {sg->ne[0]};
            assert_int_equal(mmp_gguf_writer_add_tensor(cv.w, BLK("ffn_gate_inp_shexp.weight"), MMP_TYPE_F32, 1, ne1, d), MMP_OK);
        }
#undef BLK
    }
    void *mem;
    size_t len;
    assert_int_equal(mmp_gguf_writer_write_memory(cv.w, &mem, &len), MMP_OK);
    char *path = mmpt_write_temp(mem, len, ".gguf");
    assert_non_null(path);
    free(mem);
    for (int i = 0; i < cv.n_bufs; i++) free(cv.bufs[i]);
    mmp_gguf_writer_free(cv.w);
    mmp_llm_free(ref);
    mmp_safetensors_free(st);
    return path;
}

static void run_converted(const char *golden, const char *arch, const char *want_arch) {
    char *path = hf_golden_to_gguf(golden, arch);
    mmp_llm *m = mmp_llm_load(path, NULL);
    if (!m) fail_msg("load converted %s: %s", golden, mmp_last_error());
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    assert_string_equal(h->arch, want_arch);
    char rel[128];
    snprintf(rel, sizeof rel, "llm/%s/io.safetensors", golden);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(rel));
    int64_t n;
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n);
    float *ref = mmpt_st_f32(io, "logits", NULL);
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, NULL);
    assert_non_null(c);
    float *logits = malloc((size_t)n * h->n_vocab * sizeof(float));
    mmp_llm_batch b = {.n = (int)n, .tokens = ids, .logits = logits, .logits_all = true};
    if (mmp_llm_decode(c, &b) != MMP_OK) fail_msg("decode: %s", mmp_last_error());
    double e = mmpt_rel_l2(logits, ref, (size_t)n * h->n_vocab);
    printf("[%s as GGUF '%s'] logits rel L2 %.3g\n", golden, arch, e);
    assert_true(e <= 1e-4);
    free(logits);
    free(ref);
    free(ids);
    mmp_safetensors_free(io);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
    unlink(path);
    free(path);
}

static void test_conv_llama(void **state) { (void)state; run_converted("llama", "llama", "llama"); }
static void test_conv_mixtral(void **state) { (void)state; run_converted("mixtral", "llama", "mixtral"); }
static void test_conv_qwen2_moe(void **state) { (void)state; run_converted("qwen2_moe", "qwen2moe", "qwen2_moe"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_f16),
        cmocka_unit_test(test_tiny_q8_0),
        cmocka_unit_test(test_tiny_q4_0),
        cmocka_unit_test(test_conv_llama),
        cmocka_unit_test(test_conv_mixtral),
        cmocka_unit_test(test_conv_qwen2_moe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
