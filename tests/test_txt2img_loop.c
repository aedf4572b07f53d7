/* The sampling loop with classifier-free guidance against diffusers (golden `txt2img_loop`:
 * 6 steps, CFG 7.5, the `unet` and `vae` weights): final latents <= 1e-3 relative and the image
 * within 1/255 mean absolute error, for DDIM, Euler and DPM-Solver++ 2M. Plus progress/abort
 * callbacks and bad input. */
#include "testutil.h"
#include "mmpipe/diffusion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* scheduler configs: the same diffusers objects as golden `schedulers` (its case.json) */
static mmp_scheduler *make_sched(const char *name, enum mmp_sched_kind kind) {
    mmp_json *cfg = mmpt_sched_case_json();
    mmp_sched_params p = mmp_sched_params_default(kind);
    assert_int_equal(mmp_sched_params_from_json(&p, cfg, name), MMP_OK);
    mmp_json_free(cfg);
    return mmp_scheduler_new(&p);
}

struct cb { int calls; int64_t last_done, total; int abort_at; };
static void on_progress(const char *what, int64_t done, int64_t total, void *user) {
    struct cb *c = user;
    assert_string_equal(what, "steps");
    c->calls++; c->last_done = done; c->total = total;
}
static bool on_abort(void *user) { struct cb *c = user; return c->abort_at >= 0 && c->calls >= c->abort_at; }

static void test_loop_golden(void **state) {
    (void)state;
    mmp_unet *u = mmp_unet_load(mmpt_data("gen/unet"), 2);
    mmp_vae *v = mmp_vae_load(mmpt_data("gen/vae"), 2);
    if (!u || !v) fail_msg("%s", mmp_last_error());
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/txt2img_loop/io.safetensors"));
    assert_non_null(st);
    int64_t nl, nc;
    float *cond = mmpt_st_f32(st, "cond", &nc), *uncond = mmpt_st_f32(st, "uncond", NULL), *x0 = mmpt_st_f32(st, "latents_init", &nl);
    const char *names[3] = { "ddim", "euler", "dpmpp_2m" };
    enum mmp_sched_kind kinds[3] = { MMP_SCHED_DDIM, MMP_SCHED_EULER, MMP_SCHED_DPMPP_2M };
    for (int k = 0; k < 3; k++) {
        mmp_scheduler *s = make_sched(names[k], kinds[k]);
        assert_non_null(s);
        mmp_txt2img_params p = mmp_txt2img_params_default();
        p.width = p.height = 32;
        p.steps = 6;
        p.cfg_scale = 7.5f;
        struct cb c = { 0, 0, 0, -1 };
        p.progress = on_progress;
        p.abort_cb = on_abort;
        p.cb_user = &c;
        float lat[4 * 8 * 8], img[3 * 32 * 32];
        if (mmp_txt2img_sample(u, s, v, &p, 7, 32, cond, uncond, x0, lat, img) != MMP_OK) fail_msg("%s", mmp_last_error());
        assert_int_equal(c.calls, 6);
        assert_int_equal(c.last_done, 6);
        assert_int_equal(c.total, 6);
        char key[64];
        snprintf(key, sizeof key, "%s.latents_final", names[k]);
        float *lref = mmpt_st_f32(st, key, NULL);
        snprintf(key, sizeof key, "%s.image", names[k]);
        float *iref = mmpt_st_f32(st, key, NULL);
        double e = mmpt_rel_l2(lat, lref, (size_t)nl), mae = 0;
        for (int i = 0; i < 3 * 32 * 32; i++) mae += fabs((double)img[i] - iref[i]);
        mae /= 3 * 32 * 32;
        printf("# txt2img %s: latents relative error %.3g, image mean abs error %.3g (x255 = %.4f)\n", names[k], e, mae, mae * 255);
        if (!(e <= 1e-3)) fail_msg("%s: latents relative error %.3g > 1e-3", names[k], e);
        if (!(mae <= 1.0 / 255)) fail_msg("%s: image mean abs error %.3g > 1/255", names[k], mae);
        free(lref); free(iref);
        /* abort after 2 steps */
        c.calls = 0; c.abort_at = 2;
        assert_int_equal(mmp_txt2img_sample(u, s, v, &p, 7, 32, cond, uncond, x0, lat, img), MMP_ERR_ABORTED);
        assert_true(c.calls == 2);
        mmp_scheduler_free(s);
    }
    free(cond); free(uncond); free(x0);
    mmp_safetensors_free(st);
    mmp_vae_free(v);
    mmp_unet_free(u);
}

static void test_loop_bad_input(void **state) {
    (void)state;
    mmp_unet *u = mmp_unet_load(mmpt_data("gen/unet"), 1);
    mmp_vae *v = mmp_vae_load(mmpt_data("gen/vae"), 1);
    mmp_vae *tf2 = mmp_vae_load(mmpt_data("gen/taef2/taef2_decoder.safetensors"), 1);
    assert_non_null(u); assert_non_null(v); assert_non_null(tf2);
    mmp_sched_params sp = mmp_sched_params_default(MMP_SCHED_EULER);
    mmp_scheduler *s = mmp_scheduler_new(&sp);
    float ctx[7 * 48] = {0}, x0[4 * 8 * 8] = {0}, lat[4 * 8 * 8], img[3 * 32 * 32];
    mmp_txt2img_params p = mmp_txt2img_params_default();
    p.width = p.height = 32;
    p.steps = 2;
    /* mismatched UNet / VAE channels: UNet 4, TAEF2 32 */
    assert_int_equal(mmp_txt2img_sample(u, s, tf2, &p, 7, 32, ctx, ctx, x0, lat, img), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "4 latent channels"));
    assert_non_null(strstr(mmp_last_error(), "32"));
    /* context width != cross_attention_dim, both named */
    assert_int_equal(mmp_txt2img_sample(u, s, v, &p, 7, 48, ctx, ctx, x0, lat, img), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "48"));
    assert_non_null(strstr(mmp_last_error(), "cross_attention_dim is 32"));
    /* zero and 10000 steps */
    p.steps = 0;
    assert_int_equal(mmp_txt2img_sample(u, s, v, &p, 7, 32, ctx, ctx, x0, lat, img), MMP_ERR_INVALID_ARG);
    p.steps = 10000;
    assert_int_equal(mmp_txt2img_sample(u, s, v, &p, 7, 32, ctx, ctx, x0, lat, img), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "10000"));
    /* W/H not multiples of 8 */
    p.steps = 2;
    p.width = 36;
    assert_int_equal(mmp_txt2img_sample(u, s, v, &p, 7, 32, ctx, ctx, x0, lat, img), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "36"));
    p.width = 32; p.height = 30;
    assert_int_equal(mmp_txt2img_sample(u, s, v, &p, 7, 32, ctx, ctx, x0, lat, img), MMP_ERR_INVALID_ARG);
    /* CFG without the unconditional context */
    p.height = 32;
    assert_int_equal(mmp_txt2img_sample(u, s, v, &p, 7, 32, ctx, NULL, x0, lat, img), MMP_ERR_INVALID_ARG);
    mmp_scheduler_free(s);
    mmp_vae_free(tf2);
    mmp_vae_free(v);
    mmp_unet_free(u);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_golden),
        cmocka_unit_test(test_loop_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
