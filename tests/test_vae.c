/* AutoencoderKL against diffusers (golden `vae`): decode(latents / scaling_factor) and
 * encode(image).latent_dist.mean within 1e-4 relative; batch 2; bad input. */
#include "testutil.h"
#include "mmpipe/diffusion.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_vae_golden(void **state) {
    (void)state;
    mmp_vae *v = mmp_vae_load(mmpt_data("gen/vae"), 2);
    if (!v) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_vae_get_kind(v), MMP_VAE_KL);
    assert_int_equal(mmp_vae_latent_channels(v), 4);
    assert_int_equal(mmp_vae_scale(v), 4);  /* 3 blocks: two upsamplers */
    assert_true(mmp_vae_has_encoder(v) && mmp_vae_has_decoder(v));
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/vae/io.safetensors"));
    assert_non_null(st);
    int64_t nl, ni;
    float *lat = mmpt_st_f32(st, "latents", &nl);
    float *dec_ref = mmpt_st_f32(st, "decoded", &ni);
    float *img = mmpt_st_f32(st, "image", NULL);
    float *mean_ref = mmpt_st_f32(st, "encoded_mean", NULL);
    float *z = malloc((size_t)nl * 4 * 2), *out = malloc((size_t)ni * 4 * 2), *m = malloc((size_t)nl * 4 * 2);
    for (int64_t i = 0; i < nl; i++) z[i] = (float)(lat[i] / mmp_vae_scaling_factor(v));
    if (mmp_vae_decode(v, 1, 8, 8, z, out, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    double e = mmpt_rel_l2(out, dec_ref, (size_t)ni);
    printf("# vae decode: relative error %.3g\n", e);
    MMPT_ASSERT_REL_LE(out, dec_ref, (size_t)ni, 1e-4);
    if (mmp_vae_encode(v, 1, 32, 32, img, m, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    e = mmpt_rel_l2(m, mean_ref, (size_t)nl);
    printf("# vae encode mean: relative error %.3g\n", e);
    MMPT_ASSERT_REL_LE(m, mean_ref, (size_t)nl, 1e-4);
    /* decode_to_image = clamp(decode(z / s) / 2 + 0.5) */
    float *im01 = malloc((size_t)ni * 4);
    assert_int_equal(mmp_vae_decode_to_image(v, 1, 8, 8, lat, im01, NULL, NULL), MMP_OK);
    for (int64_t i = 0; i < ni; i++) {
        float r = dec_ref[i] / 2 + 0.5f;
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        if (!(im01[i] - r < 1e-4f && r - im01[i] < 1e-4f)) fail_msg("pixel %lld: %g vs %g", (long long)i, im01[i], r);
    }
    /* batch 2 */
    memcpy(z + nl, z, (size_t)nl * 4);
    assert_int_equal(mmp_vae_decode(v, 2, 8, 8, z, out, NULL, NULL), MMP_OK);
    MMPT_ASSERT_REL_LE(out + ni, dec_ref, (size_t)ni, 1e-4);
    /* bad input */
    assert_int_equal(mmp_vae_encode(v, 1, 30, 32, img, m, NULL, NULL), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "30"));
    assert_int_equal(mmp_vae_decode(v, 0, 8, 8, z, out, NULL, NULL), MMP_ERR_INVALID_ARG);
    free(im01); free(z); free(out); free(m); free(lat); free(dec_ref); free(img); free(mean_ref);
    mmp_safetensors_free(st);
    mmp_vae_free(v);
    mmp_vae_free(NULL);
}

static void test_vae_bad_files(void **state) {
    (void)state;
    assert_null(mmp_vae_load(mmpt_data("gen/nope"), 1));
    /* a UNet folder is not a VAE */
    assert_null(mmp_vae_load(mmpt_data("gen/unet"), 1));
    assert_non_null(strstr(mmp_last_error(), "UNet2DConditionModel"));
}

/* generator.vae_decode / generator.vae_encode stages: decode_to_image semantics and latents
 * scaled by scaling_factor. */
static void test_vae_stages(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    assert_non_null(r);
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = mmpt_data("gen/vae");
    mmp_stage *dec = mmp_stage_new(mmp_registry_find(r, "generator.vae_decode"), &sp);
    mmp_stage *enc = mmp_stage_new(mmp_registry_find(r, "generator.vae_encode"), &sp);
    if (!dec || !enc) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_stage_input(dec, 0)->type.dims[0], 4);
    assert_int_equal(mmp_stage_output(enc, 0)->type.dims[0], 4);
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/vae/io.safetensors"));
    float *lat = mmpt_st_f32(st, "latents", NULL), *dec_ref = mmpt_st_f32(st, "decoded", NULL);
    float *img = mmpt_st_f32(st, "image", NULL), *mean_ref = mmpt_st_f32(st, "encoded_mean", NULL);
    int64_t dl[3] = { 4, 8, 8 }, di[3] = { 3, 32, 32 };
    mmp_array *al = mmp_array_wrap(MMP_TYPE_F32, 3, dl, lat);
    const mmp_array *in[1] = { al };
    mmp_array *out[1] = { NULL };
    if (mmp_stage_run(dec, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(out[0]->dims[1], 32);
    const float *o = out[0]->data;
    for (int i = 0; i < 3 * 32 * 32; i++) {
        float rr = dec_ref[i] / 2 + 0.5f;
        rr = rr < 0 ? 0 : rr > 1 ? 1 : rr;
        assert_true(o[i] - rr < 1e-4f && rr - o[i] < 1e-4f);
    }
    mmp_array_free(out[0]);
    /* encode: image in [0, 1] = (image_ref + 1) / 2 -> mean * scaling_factor */
    for (int i = 0; i < 3 * 32 * 32; i++) img[i] = (img[i] + 1) / 2;
    mmp_array *ai = mmp_array_wrap(MMP_TYPE_F32, 3, di, img);
    in[0] = ai;
    out[0] = NULL;
    if (mmp_stage_run(enc, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    for (int i = 0; i < 4 * 8 * 8; i++) mean_ref[i] *= 0.18215f;
    MMPT_ASSERT_REL_LE((const float *)out[0]->data, mean_ref, 4 * 8 * 8, 1e-4);
    mmp_array_free(out[0]);
    /* latents with the wrong channel count: a typed-port error */
    int64_t d3[3] = { 3, 8, 8 };
    mmp_array *bad = mmp_array_wrap(MMP_TYPE_F32, 3, d3, lat);
    in[0] = bad;
    out[0] = NULL;
    assert_int_equal(mmp_stage_run(dec, in, out), MMP_ERR_SHAPE);
    mmp_array_free(bad); mmp_array_free(al); mmp_array_free(ai);
    free(lat); free(dec_ref); free(img); free(mean_ref);
    mmp_safetensors_free(st);
    mmp_stage_free(dec);
    mmp_stage_free(enc);
    /* taesd_decode refuses an AutoencoderKL */
    assert_null(mmp_stage_new(mmp_registry_find(r, "generator.taesd_decode"), &sp));
    assert_non_null(strstr(mmp_last_error(), "TAESD"));
    mmp_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vae_golden),
        cmocka_unit_test(test_vae_bad_files),
        cmocka_unit_test(test_vae_stages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
