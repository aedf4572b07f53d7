/* Qwen2-Audio end to end against transformers (tests/data/mm/qwen2_audio, copied from
 * shared/goldens/qwen2_audio): Qwen2AudioForConditionalGeneration = Whisper-style encoder
 * (conv k3, conv k3 s2, 2 pre-LN blocks) + avg-pool 2 + LN -> linear projector -> Qwen2.
 * io.safetensors: input_features [80, 100] (all frames valid: feature_attention_mask of ones),
 * input_ids [34] (1, 5, 6, 25 x audio token 255, 6 ids), logits [34, 256].
 * Tolerance: relative L2 <= 1e-4. */
#include "testutil.h"
#include "mmpipe/mtmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CASE "mm/qwen2_audio"

static void check_golden(int64_t n_valid, int32_t n_batch) {
    mmp_llm *llm = mmp_llm_load(mmpt_data(CASE), NULL);
    if (!llm) fail_msg("llm: %s", mmp_last_error());
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(llm);
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = 2;
    mmp_mm *mm = mmp_mm_load(mmpt_data(CASE), NULL, llm, &mp);
    if (!mm) fail_msg("mm: %s", mmp_last_error());
    assert_true(mmp_mm_has(mm, MMP_MEDIA_AUDIO));
    assert_false(mmp_mm_has(mm, MMP_MEDIA_IMAGE));
    const mmp_mm_markers *mk = mmp_mm_get_markers(mm);
    assert_int_equal(mk->audio_token, 255);

    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(CASE "/io.safetensors"));
    assert_non_null(io);
    int64_t n_feat, n_ids, n_ref;
    float *feats = mmpt_st_f32(io, "input_features", &n_feat);
    assert_int_equal(n_feat, 80 * 100);
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n_ids);
    float *ref = mmpt_st_f32(io, "logits", &n_ref);
    assert_int_equal(n_ref, n_ids * hp->n_vocab);

    float *aud = NULL;
    int32_t n_aud = 0;
    if (mmp_mm_encode_mel(mm, feats, 100, n_valid, &aud, &n_aud)) fail_msg("encode: %s", mmp_last_error());
    assert_int_equal(n_aud, 25);
    mmp_media media = { MMP_MEDIA_AUDIO, n_aud, hp->n_embd, aud };
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, (int32_t)n_ids, mk, &media, 1);
    if (!p) fail_msg("prompt: %s", mmp_last_error());
    assert_int_equal(mmp_mm_prompt_n_media_pos(p), 25);

    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    mmp_llm_ctx *c = mmp_llm_ctx_new(llm, &cp);
    assert_non_null(c);
    float *logits = malloc((size_t)n_ref * sizeof *logits);
    assert_non_null(logits);
    if (mmp_mm_prompt_decode(c, llm, p, 0, n_batch, logits, true)) fail_msg("decode: %s", mmp_last_error());
    printf("qwen2_audio (n_valid %lld, batch %d): logits rel L2 %.3g, max abs %.3g\n", (long long)n_valid, n_batch,
           mmpt_rel_l2(logits, ref, (size_t)n_ref), mmpt_max_abs(logits, ref, (size_t)n_ref));
    MMPT_ASSERT_REL_LE(logits, ref, (size_t)n_ref, 1e-4);

    free(logits);
    mmp_llm_ctx_free(c);
    mmp_mm_prompt_free(p);
    free(aud);
    free(ref);
    free(ids);
    free(feats);
    mmp_safetensors_free(io);
    mmp_mm_free(mm);
    mmp_llm_free(llm);
}

/* n_valid 0 (all frames) and 100 (the mask of ones the reference used) are the same case */
static void test_golden(void **state) { (void)state; check_golden(0, 512); }
static void test_golden_mask_batches(void **state) { (void)state; check_golden(100, 7); }

/* Placeholder count must match the audio rows. */
static void test_count_mismatch(void **state) {
    (void)state;
    mmp_llm *llm = mmp_llm_load(mmpt_data(CASE), NULL);
    assert_non_null(llm);
    mmp_mm *mm = mmp_mm_load(mmpt_data(CASE), NULL, llm, NULL);
    assert_non_null(mm);
    float rows[24 * 64] = { 0 };
    mmp_media media = { MMP_MEDIA_AUDIO, 24, 64, rows };
    int32_t ids[27] = { 1 };
    for (int i = 1; i < 26; i++) ids[i] = 255;
    ids[26] = 9;
    assert_null(mmp_mm_prompt_from_ids(ids, 27, mmp_mm_get_markers(mm), &media, 1));
    printf("count mismatch: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "25"));
    assert_non_null(strstr(mmp_last_error(), "24"));
    /* an image for an audio-only model */
    media.kind = MMP_MEDIA_IMAGE;
    assert_null(mmp_mm_prompt_from_ids(ids, 27, mmp_mm_get_markers(mm), &media, 1));
    float *out = NULL;
    int32_t n = 0;
    float px[3 * 32 * 32] = { 0 };
    assert_int_equal(mmp_mm_encode_pixels(mm, px, 32, 32, &out, &n), MMP_ERR_UNSUPPORTED);
    assert_null(out);
    mmp_mm_free(mm);
    mmp_llm_free(llm);
}

/* Audio samples -> embeddings: this encoder has 50 positions, so windows are 100 frames (1 s);
 * 2.5 s of audio gives windows of 100, 100 and 50 valid frames -> 25 + 25 + 12 rows (Qwen2-Audio
 * output lengths), and the first window's rows equal encoding that window's mel directly. */
static void test_encode_audio_windows(void **state) {
    (void)state;
    mmp_llm *llm = mmp_llm_load(mmpt_data(CASE), NULL);
    assert_non_null(llm);
    mmp_mm *mm = mmp_mm_load(mmpt_data(CASE), NULL, llm, NULL);
    assert_non_null(mm);
    float *pcm = NULL;
    int64_t n = 0;
    assert_int_equal(mmp_audio_decode_file(mmpt_data(CASE "/audio.wav"), 60.0, &pcm, &n, NULL), MMP_OK);
    assert_int_equal(n, 40000);
    float *e = NULL;
    int32_t ne = 0;
    if (mmp_mm_encode_audio(mm, pcm, n, &e, &ne)) fail_msg("%s", mmp_last_error());
    assert_int_equal(ne, 25 + 25 + 12);
    mmp_mm_timings t = mmp_mm_get_timings(mm);
    assert_true(t.mel_ms > 0 && t.encode_ms > 0);

    mmp_mel_params mp = mmp_mel_params_default();
    mp.n_samples = 16000;
    mmp_mel *mel = mmp_mel_new(mp);
    assert_non_null(mel);
    float *m0 = malloc(80 * 100 * sizeof *m0);
    assert_non_null(m0);
    assert_int_equal(mmp_mel_compute(mel, pcm, 16000, m0), MMP_OK);
    float *e0 = NULL;
    int32_t n0 = 0;
    assert_int_equal(mmp_mm_encode_mel(mm, m0, 100, 100, &e0, &n0), MMP_OK);
    assert_int_equal(n0, 25);
    MMPT_ASSERT_REL_LE(e, e0, 25 * 64, 1e-6);
    /* the last window: 8000 samples, 50 valid frames of 100 */
    assert_int_equal(mmp_mel_compute(mel, pcm + 32000, 8000, m0), MMP_OK);
    free(e0);
    assert_int_equal(mmp_mm_encode_mel(mm, m0, 100, 50, &e0, &n0), MMP_OK);
    assert_int_equal(n0, 12);
    MMPT_ASSERT_REL_LE(e + 50 * 64, e0, 12 * 64, 1e-6);
    free(e0);
    /* bad arguments: no output */
    assert_int_equal(mmp_mm_encode_mel(mm, m0, 100, 101, &e0, &n0), MMP_ERR_INVALID_ARG);
    assert_null(e0);
    assert_int_equal(mmp_mm_encode_audio(mm, pcm, 0, &e0, &n0), MMP_ERR_INVALID_ARG);
    assert_null(e0);
    assert_int_equal(n0, 0);
    free(m0);
    mmp_mel_free(mel);
    free(e);
    free(pcm);
    mmp_mm_free(mm);
    mmp_llm_free(llm);
}

/* ---- the CLI: mmpipe caption ---- */

static char g_err[8192];

#define mmpipe(out, ...) mmpt_run_cli(MMP_TEST_DATA, (out), NULL, g_err, sizeof g_err, __VA_ARGS__)

static void test_cli_caption(void **state) {
    (void)state;
    char *out = NULL;
    int rc = mmpipe(&out, "caption -m " CASE " --audio " CASE "/audio.wav -n 6 --temp 0 -t 2");
    printf("caption: rc %d\nstdout: %s\nstderr: %s\n", rc, out, g_err);
    assert_int_equal(rc, 0);
    assert_true(strlen(out) > 1);
    assert_non_null(strstr(g_err, "-> 62 embeddings"));   /* the audio rows of a 2.5 s clip, as mtmd */
    assert_non_null(strstr(g_err, "tokens/s"));
    free(out);
    /* an explicit marker, two clips */
    rc = mmpipe(&out, "caption -m " CASE " --audio " CASE "/audio.wav --audio " CASE "/audio.wav -p '<audio> and <|AUDIO|>: ' -n 3 --temp 0");
    assert_int_equal(rc, 0);
    free(out);
}

static void test_cli_caption_bad(void **state) {
    (void)state;
    int rc = mmpipe(NULL, "caption -m " CASE " --audio " CASE "/missing.wav -n 2");
    printf("missing: rc %d: %s\n", rc, g_err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "missing.wav"));
    char *bad = mmpt_write_temp("just some text, not audio at all", 32, ".wav");
    rc = mmpipe(NULL, "caption -m " CASE " --audio '%s' -n 2", bad);
    printf("text as wav: rc %d: %s\n", rc, g_err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, bad));
    unlink(bad);
    free(bad);
    rc = mmpipe(NULL, "caption -m mm/llava_mixtral --audio " CASE "/audio.wav -n 2");
    printf("image model: rc %d: %s\n", rc, g_err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "no audio encoder"));
    rc = mmpipe(NULL, "caption -m " CASE " -n 2");
    assert_int_equal(rc, 2);
    /* two markers for one clip */
    rc = mmpipe(NULL, "caption -m " CASE " --audio " CASE "/audio.wav -p '<audio><audio>' -n 2");
    printf("markers: rc %d: %s\n", rc, g_err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "lists 1 item but the text has 2 media markers"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_golden_mask_batches),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_encode_audio_windows),
        cmocka_unit_test(test_cli_caption),
        cmocka_unit_test(test_cli_caption_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
