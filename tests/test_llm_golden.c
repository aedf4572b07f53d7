/* LLM backbone against transformers reference cases (tests/data/llm/<case>/, copied from
 * shared/goldens and shared/real/goldens):
 *   llama, mixtral, qwen2_moe: io.safetensors holds input_ids [1, 12], logits [12, vocab]
 *     (every position of one forward pass), hidden_last [12, n_embd] (final hidden states after
 *     the final norm), router_logits.L [12, n_expert] (router scores before softmax, MoE) and
 *     greedy_ids [8]: argmax continuation of input_ids, one token per step with the KV cache.
 *   stories260K_hf, stories260K_moe_hf (real weights): greedy_ids [199] from BOS (token 1).
 * Tolerance: relative L2 <= 1e-4 (DESIGN.md), greedy ids identical. */
#include "testutil.h"
#include "mmpipe/llm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mmp_llm *load(const char *rel) {
    mmp_llm *m = mmp_llm_load(mmpt_data(rel), NULL);
    if (!m) fail_msg("load %s: %s", rel, mmp_last_error());
    return m;
}

static mmp_llm_ctx *new_ctx(const mmp_llm *m, int n_ctx, enum mmp_kv_type kv) {
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = n_ctx;
    cp.n_threads = 2;
    cp.kv_type = kv;
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, &cp);
    if (!c) fail_msg("ctx: %s", mmp_last_error());
    return c;
}

static void run_golden(const char *name, bool moe) {
    char rel[128];
    snprintf(rel, sizeof rel, "llm/%s", name);
    mmp_llm *m = load(rel);
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    snprintf(rel, sizeof rel, "llm/%s/io.safetensors", name);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(rel));
    assert_non_null(io);
    int64_t n_in, n_greedy, n_logits;
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n_in);
    int32_t *greedy = mmpt_st_ids(io, "greedy_ids", &n_greedy);
    float *ref_logits = mmpt_st_f32(io, "logits", &n_logits);
    float *ref_hidden = mmpt_st_f32(io, "hidden_last", NULL);
    const int n = (int)n_in, V = h->n_vocab, E = h->n_embd, L = h->n_layer, X = h->n_expert;
    assert_int_equal(n_logits, (int64_t)n * V);
    if (moe) assert_true(X > 0);

    /* 1. the whole prompt in one batch: logits at every position, hidden, router logits */
    mmp_llm_ctx *c = new_ctx(m, 64, MMP_KV_F32);
    float *logits = calloc((size_t)n * V, sizeof(float));
    float *hidden = calloc((size_t)n * E, sizeof(float));
    float *router = moe ? calloc((size_t)L * n * X, sizeof(float)) : NULL;
    mmp_llm_batch b = {.n = n, .tokens = ids, .logits = logits, .logits_all = true, .hidden = hidden,
                       .router_logits = router};
    if (mmp_llm_decode(c, &b) != MMP_OK) fail_msg("decode: %s", mmp_last_error());
    double e_all = mmpt_rel_l2(logits, ref_logits, (size_t)n * V), e_pos_max = 0;
    for (int i = 0; i < n; i++) {
        double e = mmpt_rel_l2(logits + (size_t)i * V, ref_logits + (size_t)i * V, (size_t)V);
        if (e > e_pos_max) e_pos_max = e;
    }
    double e_hid = mmpt_rel_l2(hidden, ref_hidden, (size_t)n * E);
    printf("[%s] logits rel L2 all %.3g, worst position %.3g; hidden %.3g\n", name, e_all, e_pos_max, e_hid);
    assert_true(e_pos_max <= 1e-4);
    assert_true(e_hid <= 1e-4);
    for (int l = 0; moe && l < L; l++) {
        char tn[64];
        snprintf(tn, sizeof tn, "router_logits.%d", l);
        float *rr = mmpt_st_f32(io, tn, NULL);
        double e = mmpt_rel_l2(router + (size_t)l * n * X, rr, (size_t)n * X);
        printf("[%s] router_logits.%d rel L2 %.3g\n", name, l, e);
        assert_true(e <= 1e-4);
        free(rr);
    }

    /* 2. greedy continuation, one token per decode with the KV cache */
    float *last = malloc((size_t)V * sizeof(float));
    int tok = mmpt_argmax(logits + (size_t)(n - 1) * V, V);
    for (int i = 0; i < n_greedy; i++) {
        if (tok != greedy[i]) fail_msg("[%s] greedy step %d: got %d, expected %d", name, i, tok, greedy[i]);
        if (i + 1 == n_greedy) break;
        mmp_llm_batch s = {.n = 1, .tokens = &tok, .logits = last};
        if (mmp_llm_decode(c, &s) != MMP_OK) fail_msg("decode step %d: %s", i, mmp_last_error());
        tok = mmpt_argmax(last, V);
    }
    assert_int_equal(mmp_llm_ctx_n_past(c), n + n_greedy - 1);

    /* 3. the prompt token by token (f32 and f16 cache): logits per position through the cache */
    for (int kv = 0; kv < 2; kv++) {
        mmp_llm_ctx *c2 = new_ctx(m, 32, kv ? MMP_KV_F16 : MMP_KV_F32);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            mmp_llm_batch s = {.n = 1, .tokens = &ids[i], .logits = last};
            if (mmp_llm_decode(c2, &s) != MMP_OK) fail_msg("decode pos %d: %s", i, mmp_last_error());
            double e = mmpt_rel_l2(last, ref_logits + (size_t)i * V, (size_t)V);
            if (e > worst) worst = e;
        }
        printf("[%s] token by token, %s cache: worst position rel L2 %.3g\n", name, kv ? "f16" : "f32", worst);
        /* the f16 option stores K/V rounded to 11 significant bits (relative 2^-11 ~ 4.9e-4 per
         * value), so its bound is that rounding's size, not the f32 reference tolerance */
        assert_true(worst <= (kv ? 2e-3 : 1e-4));
        mmp_llm_ctx_free(c2);
    }

    /* 4. truncate and redo the last position: same logits */
    assert_int_equal(mmp_llm_ctx_truncate(c, n - 1), MMP_OK);
    mmp_llm_batch s = {.n = 1, .tokens = &ids[n - 1], .logits = last};
    assert_int_equal(mmp_llm_decode(c, &s), MMP_OK);
    assert_true(mmpt_rel_l2(last, ref_logits + (size_t)(n - 1) * V, (size_t)V) <= 1e-4);

    free(last);
    free(router);
    free(hidden);
    free(logits);
    free(ref_hidden);
    free(ref_logits);
    free(greedy);
    free(ids);
    mmp_safetensors_free(io);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
}

static void test_llama(void **state) { (void)state; run_golden("llama", false); }
static void test_mixtral(void **state) { (void)state; run_golden("mixtral", true); }
static void test_qwen2_moe(void **state) { (void)state; run_golden("qwen2_moe", true); }

/* Real stories260K (dense and the 4-expert upcycled copy): 199 greedy tokens from BOS, and the
 * io logits of the first 32 positions. */
static void run_stories(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "llm/%s", name);
    mmp_llm *m = load(rel);
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    snprintf(rel, sizeof rel, "llm/%s/io.safetensors", name);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(rel));
    assert_non_null(io);
    int64_t n_greedy, n_in, n_logits;
    int32_t *greedy = mmpt_st_ids(io, "greedy_ids", &n_greedy);
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n_in);
    float *ref_logits = mmpt_st_f32(io, "logits", &n_logits);
    const int V = h->n_vocab;
    assert_int_equal(n_logits, n_in * V);

    mmp_llm_ctx *c = new_ctx(m, 256, MMP_KV_F32);
    float *logits = malloc((size_t)n_in * V * sizeof(float));
    mmp_llm_batch b = {.n = (int)n_in, .tokens = ids, .logits = logits, .logits_all = true};
    assert_int_equal(mmp_llm_decode(c, &b), MMP_OK);
    double e = mmpt_rel_l2(logits, ref_logits, (size_t)n_in * V);
    printf("[%s] prompt logits (%d positions) rel L2 %.3g\n", name, (int)n_in, e);
    assert_true(e <= 1e-4);

    assert_int_equal(mmp_llm_ctx_truncate(c, 0), MMP_OK);
    int tok = 1;
    int same = 0;
    for (int i = 0; i < n_greedy; i++) {
        mmp_llm_batch s = {.n = 1, .tokens = &tok, .logits = logits};
        if (mmp_llm_decode(c, &s) != MMP_OK) fail_msg("decode step %d: %s", i, mmp_last_error());
        tok = mmpt_argmax(logits, V);
        if (tok != greedy[i]) break;
        same++;
    }
    printf("[%s] greedy: %d/%d ids identical\n", name, same, (int)n_greedy);
    assert_int_equal(same, n_greedy);
    free(logits);
    free(ref_logits);
    free(ids);
    free(greedy);
    mmp_safetensors_free(io);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
}

static void test_stories(void **state) { (void)state; run_stories("stories260K_hf"); }
static void test_stories_moe(void **state) { (void)state; run_stories("stories260K_moe_hf"); }

/* Embeddings in give the same result as token ids in. */
static void test_embd_input(void **state) {
    (void)state;
    mmp_llm *m = load("llm/mixtral");
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    int32_t ids[5] = {3, 17, 200, 5, 99};
    float *emb = malloc(5 * (size_t)h->n_embd * sizeof(float));
    float *l1 = malloc(5 * (size_t)h->n_vocab * sizeof(float)), *l2 = malloc(5 * (size_t)h->n_vocab * sizeof(float));
    assert_int_equal(mmp_llm_embed_tokens(m, ids, 5, emb), MMP_OK);
    int bad = 256;
    assert_int_equal(mmp_llm_embed_tokens(m, &bad, 1, emb), MMP_ERR_INVALID_ARG);
    mmp_llm_ctx *c = new_ctx(m, 16, MMP_KV_F32);
    mmp_llm_batch b1 = {.n = 5, .tokens = ids, .logits = l1, .logits_all = true};
    assert_int_equal(mmp_llm_decode(c, &b1), MMP_OK);
    assert_int_equal(mmp_llm_ctx_truncate(c, 0), MMP_OK);
    mmp_llm_batch b2 = {.n = 5, .embd = emb, .logits = l2, .logits_all = true};
    assert_int_equal(mmp_llm_decode(c, &b2), MMP_OK);
    assert_true(mmpt_rel_l2(l2, l1, 5 * (size_t)h->n_vocab) <= 1e-6);
    /* logits of the last position only */
    assert_int_equal(mmp_llm_ctx_truncate(c, 0), MMP_OK);
    mmp_llm_batch b3 = {.n = 5, .tokens = ids, .logits = l2};
    assert_int_equal(mmp_llm_decode(c, &b3), MMP_OK);
    assert_true(mmpt_rel_l2(l2, l1 + 4 * (size_t)h->n_vocab, (size_t)h->n_vocab) <= 1e-6);
    free(emb);
    free(l1);
    free(l2);
    mmp_llm_ctx_free(c);
    mmp_llm_free(m);
}

/* The backbone.llm stage: ports narrowed to the model, tokens in -> the golden logits. */
static void test_stage(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    assert_non_null(r);
    const mmp_stage_kind *k = mmp_registry_find(r, "backbone.llm");
    if (!k) fail_msg("%s", mmp_last_error());
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = mmpt_data("llm/qwen2_moe");
    mmp_stage *s = mmp_stage_new(k, &sp);
    if (!s) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_stage_input(s, 1)->type.dims[1], 64);
    assert_int_equal(mmp_stage_output(s, 0)->type.dims[1], 64);
    assert_int_equal(mmp_stage_output(s, 1)->type.dims[1], 256);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("llm/qwen2_moe/io.safetensors"));
    int64_t n;
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n);
    float *ref = mmpt_st_f32(io, "logits", NULL);
    float *ref_h = mmpt_st_f32(io, "hidden_last", NULL);
    int64_t dims[1] = {n};
    mmp_array *in = mmp_array_wrap(MMP_TYPE_I32, 1, dims, ids);
    const mmp_array *ins[2] = {in, NULL};
    mmp_array *outs[2] = {NULL, NULL};
    for (int rep = 0; rep < 2; rep++) { /* each run is a fresh sequence */
        if (mmp_stage_run(s, ins, outs) != MMP_OK) fail_msg("%s", mmp_last_error());
        assert_int_equal(outs[1]->dims[0], n);
        assert_int_equal(outs[1]->dims[1], 256);
        MMPT_ASSERT_REL_LE(outs[1]->data, ref, (size_t)n * 256, 1e-4);
        MMPT_ASSERT_REL_LE(outs[0]->data, ref_h, (size_t)n * 64, 1e-4);
        mmp_array_free(outs[0]);
        mmp_array_free(outs[1]);
    }
    /* neither / both inputs */
    const mmp_array *none[2] = {NULL, NULL};
    assert_int_not_equal(mmp_stage_run(s, none, outs), MMP_OK);
    mmp_array_free(in);
    free(ids);
    free(ref);
    free(ref_h);
    mmp_safetensors_free(io);
    mmp_stage_free(s);
    mmp_registry_free(r);
}

/* `mmpipe stage backbone.llm -m MODEL --in tokens=FILE -o OUT` gives the golden logits. */
static void test_stage_cli(void **state) {
    (void)state;
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("llm/llama/io.safetensors"));
    int64_t n;
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n);
    float *ref = mmpt_st_f32(io, "logits", NULL);
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    int64_t shape[1] = {n};
    assert_int_equal(mmp_safetensors_writer_add(w, "tokens", MMP_TYPE_I32, 1, shape, ids), MMP_OK);
    void *mem;
    size_t len;
    assert_int_equal(mmp_safetensors_writer_write_memory(w, &mem, &len), MMP_OK);
    mmp_safetensors_writer_free(w);
    char *in = mmpt_write_temp(mem, len, ".safetensors");
    free(mem);
    char *out = mmpt_write_temp("", 0, ".safetensors");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' stage backbone.llm -m '%s' --in 'tokens=%s' -o '%s' > /dev/null", MMP_CLI_PATH,
             mmpt_data("llm/llama"), in, out);
    assert_int_equal(system(cmd), 0);
    mmp_safetensors *res = mmp_safetensors_open(out);
    if (!res) fail_msg("%s", mmp_last_error());
    float *lg = mmpt_st_f32(res, "logits", NULL);
    MMPT_ASSERT_REL_LE(lg, ref, (size_t)n * 256, 1e-4);
    free(lg);
    mmp_safetensors_free(res);
    unlink(in);
    unlink(out);
    free(in);
    free(out);
    free(ids);
    free(ref);
    mmp_safetensors_free(io);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_mixtral),
        cmocka_unit_test(test_qwen2_moe),
        cmocka_unit_test(test_stories),
        cmocka_unit_test(test_stories_moe),
        cmocka_unit_test(test_embd_input),
        cmocka_unit_test(test_stage),
        cmocka_unit_test(test_stage_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
