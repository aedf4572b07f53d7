/* CLIP text encoder against golden clip_text: last_hidden_state, hidden_states[-2] (no final
 * LN, as HF returns it) and pooler_output (final-LN state at the first eos). */
#include "testutil.h"
#include "mmpipe/vision.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_clip_text_golden(void **st) {
    (void)st;
    mmp_clip_text *t = mmp_clip_text_load(mmpt_data("vision/clip_text"));
    if (!t) fail_msg("%s", mmp_last_error());
    const mmp_clip_text_hparams *hp = mmp_clip_text_get_hparams(t);
    assert_int_equal(hp->n_ctx, 16);
    assert_int_equal(hp->eos_token_id, 319);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("vision/clip_text/io.safetensors"));
    assert_non_null(io);
    const mmp_tensor_info *ids = mmp_safetensors_find(io, "input_ids");
    assert_non_null(ids);
    int32_t tok[16];
    for (int i = 0; i < 16; i++) {
        int64_t v;
        memcpy(&v, (const char *)ids->data + 8 * i, 8);
        tok[i] = (int32_t)v;
    }
    float out[16 * 32], pooled[32], ref[16 * 32], pref[32];
    const mmp_tensor_info *r = mmp_safetensors_find(io, "last_hidden_state");
    memcpy(ref, r->data, sizeof ref);
    r = mmp_safetensors_find(io, "pooler_output");
    memcpy(pref, r->data, sizeof pref);
    mmp_clip_text_params p = mmp_clip_text_params_default();
    p.n_threads = 2;
    if (mmp_clip_text_encode(t, tok, 16, &p, out, pooled) != MMP_OK) fail_msg("%s", mmp_last_error());
    printf("clip_text last_hidden_state: rel L2 %.3g, pooler_output: %.3g\n", mmpt_rel_l2(out, ref, 512),
           mmpt_rel_l2(pooled, pref, 32));
    MMPT_ASSERT_REL_LE(out, ref, 512, 1e-4);
    MMPT_ASSERT_REL_LE(pooled, pref, 32, 1e-4);
    r = mmp_safetensors_find(io, "hidden_states.-2");
    memcpy(ref, r->data, sizeof ref);
    p.layer = -2;
    p.final_ln = false;
    assert_int_equal(mmp_clip_text_encode(t, tok, 16, &p, out, NULL), MMP_OK);
    printf("clip_text hidden_states[-2]: rel L2 %.3g\n", mmpt_rel_l2(out, ref, 512));
    MMPT_ASSERT_REL_LE(out, ref, 512, 1e-4);
    /* causal: a prefix gives the same states for its positions */
    float pre[8 * 32];
    p = mmp_clip_text_params_default();
    assert_int_equal(mmp_clip_text_encode(t, tok, 8, &p, pre, NULL), MMP_OK);
    r = mmp_safetensors_find(io, "last_hidden_state");
    memcpy(ref, r->data, sizeof ref);
    MMPT_ASSERT_REL_LE(pre, ref, 8 * 32, 1e-4);
    /* bad input */
    assert_int_equal(mmp_clip_text_encode(t, tok, 17, &p, out, NULL), MMP_ERR_LIMIT);
    tok[3] = 320;
    assert_int_equal(mmp_clip_text_encode(t, tok, 16, &p, out, NULL), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "320"));
    mmp_safetensors_free(io);
    mmp_clip_text_free(t);
    assert_null(mmp_clip_text_load(mmpt_data("vision/clip_vision")));
    assert_non_null(strstr(mmp_last_error(), "token_embedding"));
}

/* A bare safetensors file (no config.json next to it, as single-file checkpoints come): the
 * sizes are read from the tensor shapes. */
static void test_no_config(void **st) {
    (void)st;
    size_t n;
    void *b = mmpt_read_file(mmpt_data("vision/clip_text/model.safetensors"), &n);
    assert_non_null(b);
    char dir[] = "/tmp/mmp_ctxtXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/te.safetensors", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
    mmp_clip_text *t = mmp_clip_text_load(path);
    if (!t) fail_msg("%s", mmp_last_error());
    const mmp_clip_text_hparams *hp = mmp_clip_text_get_hparams(t);
    assert_int_equal(hp->n_embd, 32);
    assert_int_equal(hp->n_vocab, 320);
    assert_int_equal(hp->n_ctx, 16);
    assert_int_equal(hp->n_layer, 2);
    assert_int_equal(hp->n_ff, 64);
    assert_int_equal(hp->eos_token_id, 2);
    mmp_clip_text_free(t);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_text_golden),
        cmocka_unit_test(test_no_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
