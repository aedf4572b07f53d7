/* UNet2DConditionModel against diffusers (golden `unet`): noise prediction at t = 999, 500, 1
 * within 1e-4 relative; batch of 2 equals two single runs; bad input. */
#include "testutil.h"
#include "mmpipe/diffusion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_unet_golden(void **state) {
    (void)state;
    mmp_unet *u = mmp_unet_load(mmpt_data("gen/unet"), 2);
    if (!u) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_unet_in_channels(u), 4);
    assert_int_equal(mmp_unet_cross_attention_dim(u), 32);
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/unet/io.safetensors"));
    assert_non_null(st);
    int64_t ns, nc;
    float *x = mmpt_st_f32(st, "sample", &ns);
    float *ctx = mmpt_st_f32(st, "encoder_hidden_states", &nc);
    float *out = malloc((size_t)ns * sizeof(float));
    const int ts[3] = { 999, 500, 1 };
    for (int i = 0; i < 3; i++) {
        char key[64];
        snprintf(key, sizeof key, "noise_pred.t%d", ts[i]);
        float *ref = mmpt_st_f32(st, key, NULL);
        float t = (float)ts[i];
        if (mmp_unet_predict(u, 1, 8, 8, x, &t, 7, 32, ctx, out, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
        double e = mmpt_rel_l2(out, ref, (size_t)ns);
        printf("# unet t=%d: relative error %.3g\n", ts[i], e);
        if (!(e <= 1e-4)) fail_msg("t=%d: relative error %.3g > 1e-4", ts[i], e);
        free(ref);
    }
    /* batch 2: [x, x] with t = 999 and 1 equals the single runs */
    float *x2 = malloc((size_t)ns * 2 * sizeof(float)), *c2 = malloc((size_t)nc * 2 * sizeof(float));
    float *o2 = malloc((size_t)ns * 2 * sizeof(float));
    memcpy(x2, x, (size_t)ns * 4); memcpy(x2 + ns, x, (size_t)ns * 4);
    memcpy(c2, ctx, (size_t)nc * 4); memcpy(c2 + nc, ctx, (size_t)nc * 4);
    float t2[2] = { 999, 1 };
    assert_int_equal(mmp_unet_predict(u, 2, 8, 8, x2, t2, 7, 32, c2, o2, NULL, NULL), MMP_OK);
    float *r999 = mmpt_st_f32(st, "noise_pred.t999", NULL), *r1 = mmpt_st_f32(st, "noise_pred.t1", NULL);
    MMPT_ASSERT_REL_LE(o2, r999, (size_t)ns, 1e-4);
    MMPT_ASSERT_REL_LE(o2 + ns, r1, (size_t)ns, 1e-4);
    free(r999); free(r1); free(x2); free(c2); free(o2);

    /* bad input: context width, latent size, batch */
    assert_int_equal(mmp_unet_predict(u, 1, 8, 8, x, t2, 7, 48, ctx, out, NULL, NULL), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "48"));
    assert_non_null(strstr(mmp_last_error(), "32"));
    assert_int_equal(mmp_unet_predict(u, 1, 7, 8, x, t2, 7, 32, ctx, out, NULL, NULL), MMP_ERR_SHAPE);
    assert_int_equal(mmp_unet_predict(u, 0, 8, 8, x, t2, 7, 32, ctx, out, NULL, NULL), MMP_ERR_INVALID_ARG);
    free(x); free(ctx); free(out);
    mmp_safetensors_free(st);
    mmp_unet_free(u);
    mmp_unet_free(NULL);
}

/* A folder with the golden's weights (symlinked) and config.json with `from` replaced by `to`. */
static char *config_variant(const char *from, const char *to) {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *dir = malloc(512);
    snprintf(dir, 512, "%s/mmp_unetcfg_XXXXXX", tmp);
    assert_non_null(mkdtemp(dir));
    size_t len;
    char *cfg = mmpt_read_file(mmpt_data("gen/unet/config.json"), &len);
    assert_non_null(cfg);
    char *text = calloc(1, len + strlen(to) + 1);
    memcpy(text, cfg, len);
    char *at = strstr(text, from);
    assert_non_null(at);
    size_t lf = strlen(from);
    memmove(at + strlen(to), at + lf, strlen(at + lf) + 1);
    memcpy(at, to, strlen(to));
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    char target[600];
    snprintf(target, sizeof target, "%s", mmpt_data("gen/unet/diffusion_pytorch_model.safetensors"));
    if (target[0] != '/') {  /* make the link target absolute */
        char cwd[400];
        assert_non_null(getcwd(cwd, sizeof cwd));
        char t2[1100];
        snprintf(t2, sizeof t2, "%s/%s", cwd, target);
        snprintf(target, sizeof target, "%s", t2);
    }
    assert_int_equal(symlink(target, path), 0);
    free(cfg);
    free(text);
    return dir;
}

static void rm_dir(char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

static void test_unet_bad_config(void **state) {
    (void)state;
    char *d = config_variant("\"CrossAttnDownBlock2D\"", "\"AttnDownBlock2D\"");
    assert_null(mmp_unet_load(d, 1));
    assert_non_null(strstr(mmp_last_error(), "AttnDownBlock2D"));
    assert_non_null(strstr(mmp_last_error(), "down_block_types[0]"));
    rm_dir(d);
    d = config_variant("\"attention_head_dim\": 4", "\"attention_head_dim\": [4, 4, 4]");
    assert_null(mmp_unet_load(d, 1));
    assert_non_null(strstr(mmp_last_error(), "attention_head_dim"));
    rm_dir(d);
    d = config_variant("\"norm_num_groups\": 8", "\"norm_num_groups\": 7");
    mmp_unet *u = mmp_unet_load(d, 1);  /* loads; the graph cannot be built */
    assert_non_null(u);
    float x[256] = {0}, c[7 * 32] = {0}, o[256], t = 1;
    assert_int_not_equal(mmp_unet_predict(u, 1, 8, 8, x, &t, 7, 32, c, o, NULL, NULL), MMP_OK);
    assert_non_null(strstr(mmp_last_error(), "7 groups"));
    mmp_unet_free(u);
    rm_dir(d);
    d = config_variant("\"in_channels\": 4", "\"in_channels\": 9");
    assert_null(mmp_unet_load(d, 1));
    assert_non_null(strstr(mmp_last_error(), "9"));
    rm_dir(d);
    d = config_variant("\"addition_embed_type\": null", "\"addition_embed_type\": \"text_time\"");
    assert_null(mmp_unet_load(d, 1));
    assert_non_null(strstr(mmp_last_error(), "addition_embed_type"));
    rm_dir(d);
}

static void test_unet_bad_files(void **state) {
    (void)state;
    assert_null(mmp_unet_load(mmpt_data("gen/does_not_exist"), 1));
    assert_true(strlen(mmp_last_error()) > 0);
    /* a VAE folder is not a UNet */
    assert_null(mmp_unet_load(mmpt_data("gen/vae"), 1));
    assert_non_null(strstr(mmp_last_error(), "AutoencoderKL"));
}

/* generator.unet as a stage: ports narrowed to the model, golden through mmp_stage_run, and the
 * typed-port error naming both widths. */
static void test_unet_stage(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    if (!r) fail_msg("%s", mmp_last_error());
    const mmp_stage_kind *k = mmp_registry_find(r, "generator.unet");
    assert_non_null(k);
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = mmpt_data("gen/unet");
    sp.n_threads = 2;
    mmp_stage *s = mmp_stage_new(k, &sp);
    if (!s) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_stage_input(s, 0)->type.dims[0], 4);
    assert_int_equal(mmp_stage_input(s, 2)->type.dims[1], 32);
    assert_int_equal(mmp_stage_output(s, 0)->type.dims[0], 4);
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/unet/io.safetensors"));
    float *x = mmpt_st_f32(st, "sample", NULL), *ctx = mmpt_st_f32(st, "encoder_hidden_states", NULL), *ref = mmpt_st_f32(st, "noise_pred.t500", NULL);
    float t = 500;
    int64_t dx[3] = { 4, 8, 8 }, dt[1] = { 1 }, dc[2] = { 7, 32 };
    mmp_array *ax = mmp_array_wrap(MMP_TYPE_F32, 3, dx, x), *at = mmp_array_wrap(MMP_TYPE_F32, 1, dt, &t);
    mmp_array *ac = mmp_array_wrap(MMP_TYPE_F32, 2, dc, ctx);
    const mmp_array *in[3] = { ax, at, ac };
    mmp_array *out[1] = { NULL };
    if (mmp_stage_run(s, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(out[0]->dims[0], 4);
    MMPT_ASSERT_REL_LE((const float *)out[0]->data, ref, 4 * 8 * 8, 1e-4);
    mmp_array_free(out[0]);
    /* conditioning of width 48 into a UNet with cross_attention_dim 32 */
    float c48[7 * 48] = {0};
    int64_t dc48[2] = { 7, 48 };
    mmp_array *a48 = mmp_array_wrap(MMP_TYPE_F32, 2, dc48, c48);
    const mmp_array *in2[3] = { ax, at, a48 };
    out[0] = NULL;
    assert_int_equal(mmp_stage_run(s, in2, out), MMP_ERR_SHAPE);
    printf("# bad width: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "48"));
    assert_non_null(strstr(mmp_last_error(), "32"));
    assert_null(out[0]);
    mmp_array_free(a48); mmp_array_free(ax); mmp_array_free(at); mmp_array_free(ac);
    free(x); free(ctx); free(ref);
    mmp_safetensors_free(st);
    mmp_stage_free(s);
    mmp_registry_free(r);
}

/* Write the golden's weights to a folder: matrices as F16 (half = true) or as F32 holding the
 * same F16-rounded values (half = false); 1-D tensors stay F32. */
static void write_variant(const char *dir, bool half) {
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/unet/diffusion_pytorch_model.safetensors"));
    assert_non_null(st);
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(st); i++) {
        const mmp_tensor_info *ti = mmp_safetensors_tensor(st, i);
        assert_int_equal(ti->type, MMP_TYPE_F32);
        size_t n = ti->nbytes / 4;
        float *f = malloc(n * 4);
        uint16_t *h = malloc(n * 2);
        memcpy(f, ti->data, n * 4);
        for (size_t j = 0; j < n; j++) { h[j] = mmp_fp32_to_fp16(f[j]); if (ti->n_dims > 1) f[j] = mmp_fp16_to_fp32(h[j]); }
        bool as_half = half && ti->n_dims > 1;
        assert_int_equal(mmp_safetensors_writer_add_ne(w, ti->name, as_half ? MMP_TYPE_F16 : MMP_TYPE_F32, ti->n_dims, ti->ne,
                                                       as_half ? (const void *)h : (const void *)f), MMP_OK);
        free(f); free(h);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(w, path), MMP_OK);
    mmp_safetensors_writer_free(w);
    mmp_safetensors_free(st);
    size_t len;
    void *cfg = mmpt_read_file(mmpt_data("gen/unet/config.json"), &len);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(cfg, 1, len, f);
    fclose(f);
    free(cfg);
}

/* F16 weights (used in place by conv2d / mul_mat) against the dequantize-then-f32 reference. */
static void test_unet_f16(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char d16[400], d32[400];
    snprintf(d16, sizeof d16, "%s/mmp_unet16_XXXXXX", tmp);
    snprintf(d32, sizeof d32, "%s/mmp_unet32_XXXXXX", tmp);
    assert_non_null(mkdtemp(d16));
    assert_non_null(mkdtemp(d32));
    write_variant(d16, true);
    write_variant(d32, false);
    mmp_unet *u16 = mmp_unet_load(d16, 2), *u32 = mmp_unet_load(d32, 2);
    if (!u16 || !u32) fail_msg("%s", mmp_last_error());
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/unet/io.safetensors"));
    float *x = mmpt_st_f32(st, "sample", NULL), *ctx = mmpt_st_f32(st, "encoder_hidden_states", NULL), *ref = mmpt_st_f32(st, "noise_pred.t500", NULL);
    float o16[256], o32[256], t = 500;
    assert_int_equal(mmp_unet_predict(u16, 1, 8, 8, x, &t, 7, 32, ctx, o16, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_unet_predict(u32, 1, 8, 8, x, &t, 7, 32, ctx, o32, NULL, NULL), MMP_OK);
    printf("# unet F16 weights vs F32 of the same values: %.3g; vs the F32 golden: %.3g\n", mmpt_rel_l2(o16, o32, 256),
           mmpt_rel_l2(o16, ref, 256));
    MMPT_ASSERT_REL_LE(o16, o32, 256, 1e-4);
    free(x); free(ctx); free(ref);
    mmp_safetensors_free(st);
    mmp_unet_free(u16);
    mmp_unet_free(u32);
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", d16, d32);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unet_golden),
        cmocka_unit_test(test_unet_bad_files),
        cmocka_unit_test(test_unet_bad_config),
        cmocka_unit_test(test_unet_stage),
        cmocka_unit_test(test_unet_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
