/* TAESD: diffusers AutoencoderTiny naming against diffusers (golden `taesd_tiny`, 1e-4), and the
 * real TAEF2 (taesd.py Sequential names, fp16, mid-block GroupNorm pool, 32 latent channels):
 * decoder(latents) vs the reference decode, PSNR >= 45 dB; encoder(dog.png) vs the reference
 * latents <= 1e-3 relative; the decoded PNG is written (and copied to /tmp/taef2_decoded.png). */
#include "testutil.h"
#include "mmpipe/diffusion.h"
#include "mmpipe/image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double psnr01(const float *a, const float *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; se += d * d; }
    return -10.0 * log10(se / (double)n);
}

static void test_taesd_tiny_diffusers(void **state) {
    (void)state;
    mmp_vae *v = mmp_vae_load(mmpt_data("gen/taesd_tiny"), 2);
    if (!v) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_vae_get_kind(v), MMP_VAE_TINY);
    assert_int_equal(mmp_vae_latent_channels(v), 4);
    assert_int_equal(mmp_vae_scale(v), 8);
    assert_true(mmp_vae_output_signed(v));
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/taesd_tiny/io.safetensors"));
    int64_t ni;
    float *lat = mmpt_st_f32(st, "latents", NULL), *ref = mmpt_st_f32(st, "decoded", &ni);
    float *out = malloc((size_t)ni * 4);
    if (mmp_vae_decode(v, 1, 8, 8, lat, out, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    printf("# taesd_tiny decode: relative error %.3g\n", mmpt_rel_l2(out, ref, (size_t)ni));
    MMPT_ASSERT_REL_LE(out, ref, (size_t)ni, 1e-4);
    /* the encoder runs and gives latents of the right shape */
    float *lat2 = malloc(4 * 8 * 8 * 4);
    assert_int_equal(mmp_vae_encode(v, 1, 64, 64, out, lat2, NULL, NULL), MMP_OK);
    for (int i = 0; i < 4 * 8 * 8; i++) assert_true(isfinite(lat2[i]));
    free(lat2); free(out); free(lat); free(ref);
    mmp_safetensors_free(st);
    mmp_vae_free(v);
}

static void test_taef2_real(void **state) {
    (void)state;
    mmp_vae *v = mmp_vae_load_tiny2(mmpt_data("gen/taef2/taef2_encoder.safetensors"), mmpt_data("gen/taef2/taef2_decoder.safetensors"), 2);
    if (!v) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_vae_latent_channels(v), 32);
    assert_int_equal(mmp_vae_scale(v), 8);
    assert_false(mmp_vae_output_signed(v));
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/taef2/io.safetensors"));
    assert_non_null(st);
    int64_t nl, ni;
    float *lat_ref = mmpt_st_f32(st, "latents", &nl), *dec_ref = mmpt_st_f32(st, "decoded", &ni);
    assert_int_equal(nl, 32 * 32 * 32);
    assert_int_equal(ni, 3 * 256 * 256);
    /* decoder(reference latents) vs reference decode (clamped to [0, 1]) */
    float *dec = malloc((size_t)ni * 4);
    if (mmp_vae_decode(v, 1, 32, 32, lat_ref, dec, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    for (int64_t i = 0; i < ni; i++) dec[i] = dec[i] < 0 ? 0 : dec[i] > 1 ? 1 : dec[i];
    double p = psnr01(dec, dec_ref, (size_t)ni);
    printf("# taef2 decode vs reference: PSNR %.1f dB, relative error %.3g\n", p, mmpt_rel_l2(dec, dec_ref, (size_t)ni));
    if (!(p >= 45.0)) fail_msg("PSNR %.2f dB < 45", p);
    /* encoder(dog.png) vs reference latents */
    mmp_image *dog = mmp_image_load(mmpt_data("gen/taef2/dog.png"), 0);
    if (!dog) fail_msg("%s", mmp_last_error());
    assert_int_equal(dog->width, 256);
    assert_int_equal(dog->height, 256);
    float *img = mmp_image_to_chw(dog);
    assert_non_null(img);
    mmp_image_free(dog);
    float *img_ref = mmpt_st_f32(st, "image", NULL);
    assert_true(mmpt_max_abs(img, img_ref, (size_t)ni) < 1e-6);
    float *lat = malloc((size_t)nl * 4);
    if (mmp_vae_encode(v, 1, 256, 256, img, lat, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    double e = mmpt_rel_l2(lat, lat_ref, (size_t)nl);
    printf("# taef2 encode(dog.png): relative error %.3g\n", e);
    if (!(e <= 1e-3)) fail_msg("encoder relative error %.3g > 1e-3", e);
    /* round trip quality as the reference reports it */
    printf("# taef2 decode vs dog.png: PSNR %.2f dB\n", psnr01(dec, img, (size_t)ni));
    /* random latents, unclamped, non-square */
    int64_t nr, nrd;
    float *rl = mmpt_st_f32(st, "random_latents", &nr), *rd_ref = mmpt_st_f32(st, "random_decoded", &nrd);
    float *rd = malloc((size_t)nrd * 4);
    assert_int_equal(mmp_vae_decode(v, 1, 12, 16, rl, rd, NULL, NULL), MMP_OK);
    printf("# taef2 random decode 12x16: relative error %.3g\n", mmpt_rel_l2(rd, rd_ref, (size_t)nrd));
    MMPT_ASSERT_REL_LE(rd, rd_ref, (size_t)nrd, 1e-4);
    /* the PNG */
    char *path = mmpt_write_temp("", 0, ".png");
    assert_non_null(path);
    mmp_image *out_img = mmp_image_from_chw(dec, 256, 256);
    assert_non_null(out_img);
    mmp_png_text txt = { "Software", "mmpipe test_taesd (TAEF2 decode)" };
    assert_int_equal(mmp_image_write_png(path, out_img, &txt, 1), MMP_OK);
    mmp_image *back_img = mmp_image_load(path, 0);
    assert_non_null(back_img);
    float *back = mmp_image_to_chw(back_img);
    assert_true(mmpt_max_abs(back, dec, (size_t)ni) <= 0.5 / 255 + 1e-6);
    if (mmp_image_write_png("/tmp/taef2_decoded.png", out_img, &txt, 1) != MMP_OK) printf("# could not write /tmp/taef2_decoded.png\n");
    remove(path);
    mmp_image_free(out_img); mmp_image_free(back_img);
    free(path); free(back); free(rd); free(rd_ref); free(rl); free(lat); free(img_ref); free(img); free(dec); free(lat_ref); free(dec_ref);
    mmp_safetensors_free(st);
    mmp_vae_free(v);
}

static void test_taesd_bad(void **state) {
    (void)state;
    /* decoder + encoder of different latent widths */
    mmp_vae *v = mmp_vae_load_tiny2(mmpt_data("gen/taef2/taef2_encoder.safetensors"), mmpt_data("gen/taesd_tiny/diffusion_pytorch_model.safetensors"), 1);
    assert_null(v);
    assert_true(strlen(mmp_last_error()) > 0);
    /* a decoder-only file cannot encode */
    v = mmp_vae_load(mmpt_data("gen/taef2/taef2_decoder.safetensors"), 1);
    if (!v) fail_msg("%s", mmp_last_error());
    assert_true(mmp_vae_has_decoder(v) && !mmp_vae_has_encoder(v));
    float x[3 * 8 * 8] = {0}, z[32];
    assert_int_equal(mmp_vae_encode(v, 1, 8, 8, x, z, NULL, NULL), MMP_ERR_INVALID_ARG);
    mmp_vae_free(v);
    assert_null(mmp_image_to_chw(NULL));
    assert_null(mmp_image_from_chw(NULL, 4, 4));
}

/* generator.taesd_decode with the two taesd.py files (-m decoder, aux = encoder). */
static void test_taesd_stage(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    assert_non_null(r);
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = mmpt_data("gen/taef2/taef2_decoder.safetensors");
    sp.n_threads = 2;
    mmp_stage *s = mmp_stage_new(mmp_registry_find(r, "generator.taesd_decode"), &sp);
    if (!s) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_stage_input(s, 0)->type.dims[0], 32);
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/taef2/io.safetensors"));
    float *rl = mmpt_st_f32(st, "random_latents", NULL), *rd = mmpt_st_f32(st, "random_decoded", NULL);
    int64_t d[3] = { 32, 12, 16 };
    mmp_array *a = mmp_array_wrap(MMP_TYPE_F32, 3, d, rl);
    const mmp_array *in[1] = { a };
    mmp_array *out[1] = { NULL };
    if (mmp_stage_run(s, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(out[0]->dims[1], 96);
    assert_int_equal(out[0]->dims[2], 128);
    /* [0, 1] clamped: the reference unclamped output clamped */
    const float *o = out[0]->data;
    for (int i = 0; i < 3 * 96 * 128; i++) {
        float rr = rd[i] < 0 ? 0 : rd[i] > 1 ? 1 : rd[i];
        assert_true(o[i] - rr < 1e-4f && rr - o[i] < 1e-4f);
    }
    mmp_array_free(out[0]);
    mmp_array_free(a);
    free(rl); free(rd);
    mmp_safetensors_free(st);
    mmp_stage_free(s);
    mmp_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taesd_tiny_diffusers),
        cmocka_unit_test(test_taef2_real),
        cmocka_unit_test(test_taesd_bad),
        cmocka_unit_test(test_taesd_stage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
