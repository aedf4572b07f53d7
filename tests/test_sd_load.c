/* Loading Stable Diffusion models (core/sd.c): a diffusers pipeline root assembled from the
 * golden unet / vae / clip_text cases and the fixture tokenizer, and a synthetic single-file
 * LDM checkpoint made from the same tensors renamed BACK to the original LDM names (the
 * inverse of diffusers' convert_from_ckpt tables, written here independently). Both must
 * give identical outputs (<= 1e-6), and the UNet must still match its golden (<= 1e-4). */
#include "testutil.h"
#include "mmpipe/sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- diffusers -> LDM names (golden unet: layers_per_block 1; golden vae: 3 levels) ---- */

typedef struct {
    char dir[64];
    char pipe[96], ckpt[96], bad[96], sd2[96];
} fixture_t;

static void sym(const char *target, const char *dir, const char *name) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (symlink(target, p) != 0) fail_msg("symlink %s", p);
}

static void write_str(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void make_fixture(fixture_t *f) {
    strcpy(f->dir, "/tmp/mmp_sdloadXXXXXX");
    assert_non_null(mkdtemp(f->dir));
    /* diffusers root */
    snprintf(f->pipe, sizeof f->pipe, "%s/pipe", f->dir);
    assert_int_equal(mkdir(f->pipe, 0755), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/model_index.json", f->pipe);
    write_str(p, "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
                 " \"vae\": [\"diffusers\", \"AutoencoderKL\"], \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
                 " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], \"scheduler\": [\"diffusers\", \"PNDMScheduler\"]}");
    sym(mmpt_data("gen/unet"), f->pipe, "unet");
    sym(mmpt_data("gen/vae"), f->pipe, "vae");
    sym(mmpt_data("vision/clip_text"), f->pipe, "text_encoder");
    sym(mmpt_data("sd/tokenizer"), f->pipe, "tokenizer");
    sym(mmpt_data("sd/scheduler"), f->pipe, "scheduler");
    /* single file */
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    mmpt_ldm_add(w, mmpt_data("gen/unet/diffusion_pytorch_model.safetensors"), 0);
    mmpt_ldm_add(w, mmpt_data("gen/vae/diffusion_pytorch_model.safetensors"), 1);
    mmpt_ldm_add(w, mmpt_data("vision/clip_text/model.safetensors"), 2);
    /* tensors real checkpoints carry that are not part of the pipeline */
    int64_t pos[16];
    for (int i = 0; i < 16; i++) pos[i] = i;
    int64_t ne16 = 16, ne1 = 1;
    float one = 1.0f;
    assert_int_equal(mmp_safetensors_writer_add_ne(w, "cond_stage_model.transformer.text_model.embeddings.position_ids",
                                                   MMP_TYPE_I64, 1, &ne16, pos), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add_ne(w, "model_ema.decay", MMP_TYPE_F32, 1, &ne1, &one), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add_ne(w, "first_stage_model.loss.logvar", MMP_TYPE_F32, 1, &ne1, &one), MMP_OK);
    assert_int_equal(mmp_safetensors_writer_add_ne(w, "alphas_cumprod", MMP_TYPE_F32, 1, &ne1, &one), MMP_OK);
    snprintf(f->ckpt, sizeof f->ckpt, "%s/sd15.safetensors", f->dir);
    if (mmp_safetensors_writer_write(w, f->ckpt) != MMP_OK) fail_msg("%s", mmp_last_error());
    /* a bad one: an extra UNet tensor with a name the converter does not know */
    int64_t ne2 = 2;
    float two[2] = { 0, 0 };
    assert_int_equal(mmp_safetensors_writer_add_ne(w, "model.diffusion_model.strange_block.weight", MMP_TYPE_F32, 1, &ne2, two), MMP_OK);
    snprintf(f->bad, sizeof f->bad, "%s/bad.safetensors", f->dir);
    assert_int_equal(mmp_safetensors_writer_write(w, f->bad), MMP_OK);
    /* SD 2.x style: OpenCLIP text tower */
    assert_int_equal(mmp_safetensors_writer_add_ne(w, "cond_stage_model.model.token_embedding.weight", MMP_TYPE_F32, 1, &ne2, two), MMP_OK);
    snprintf(f->sd2, sizeof f->sd2, "%s/sd2.safetensors", f->dir);
    assert_int_equal(mmp_safetensors_writer_write(w, f->sd2), MMP_OK);
    mmp_safetensors_writer_free(w);
}

static void rm_fixture(fixture_t *f) {
    static const char *const links[] = { "unet", "vae", "text_encoder", "tokenizer", "scheduler", "model_index.json" };
    char p[256];
    for (size_t i = 0; i < 6; i++) { snprintf(p, sizeof p, "%s/%s", f->pipe, links[i]); unlink(p); }
    rmdir(f->pipe);
    unlink(f->ckpt); unlink(f->bad); unlink(f->sd2);
    rmdir(f->dir);
}

static mmp_sd_params tiny_params(void) {
    mmp_sd_params p = mmp_sd_params_default();
    p.n_threads = 2;
    p.ldm_unet_heads = 4;   /* golden unet: attention_head_dim 4 (legacy: heads) */
    p.ldm_norm_groups = 8;  /* golden unet and vae: norm_num_groups 8 */
    p.ldm_text_heads = 4;   /* golden clip_text: 4 heads */
    p.tokenizer_path = mmpt_data("sd/tokenizer");
    return p;
}

static void compare_models(mmp_sd *a, mmp_sd *b) {
    /* UNet on the golden input at t = 500 (and against the golden) */
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("gen/unet/io.safetensors"));
    assert_non_null(io);
    float x[256], ctx[7 * 32], ref[256], ya[256], yb[256], t = 500.0f;
    memcpy(x, mmp_safetensors_find(io, "sample")->data, sizeof x);
    memcpy(ctx, mmp_safetensors_find(io, "encoder_hidden_states")->data, sizeof ctx);
    memcpy(ref, mmp_safetensors_find(io, "noise_pred.t500")->data, sizeof ref);
    if (mmp_unet_predict(mmp_sd_unet(a), 1, 8, 8, x, &t, 7, 32, ctx, ya, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    if (mmp_unet_predict(mmp_sd_unet(b), 1, 8, 8, x, &t, 7, 32, ctx, yb, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    printf("unet single-file vs folder: rel L2 %.3g; folder vs golden %.3g\n", mmpt_rel_l2(yb, ya, 256), mmpt_rel_l2(ya, ref, 256));
    MMPT_ASSERT_REL_LE(yb, ya, 256, 1e-6);
    MMPT_ASSERT_REL_LE(ya, ref, 256, 1e-4);
    mmp_safetensors_free(io);
    /* VAE decode of the golden latents */
    io = mmp_safetensors_open(mmpt_data("gen/vae/io.safetensors"));
    assert_non_null(io);
    float lat[256], *ia = malloc(3 * 32 * 32 * sizeof(float)), *ib = malloc(3 * 32 * 32 * sizeof(float));
    memcpy(lat, mmp_safetensors_find(io, "latents")->data, sizeof lat);
    assert_int_equal(mmp_vae_latent_channels(mmp_sd_vae(b)), 4);
    assert_true(mmp_vae_scaling_factor(mmp_sd_vae(b)) == mmp_vae_scaling_factor(mmp_sd_vae(a)));
    if (mmp_vae_decode(mmp_sd_vae(a), 1, 8, 8, lat, ia, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    if (mmp_vae_decode(mmp_sd_vae(b), 1, 8, 8, lat, ib, NULL, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    printf("vae decode single-file vs folder: rel L2 %.3g\n", mmpt_rel_l2(ib, ia, 3 * 32 * 32));
    MMPT_ASSERT_REL_LE(ib, ia, 3 * 32 * 32, 1e-6);
    /* encoder too (mid attention q/k/v 1x1 convs -> linear) */
    float ea[256], eb[256];
    memcpy(ia, mmp_safetensors_find(io, "image")->data, 3 * 32 * 32 * sizeof(float));
    assert_int_equal(mmp_vae_encode(mmp_sd_vae(a), 1, 32, 32, ia, ea, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_vae_encode(mmp_sd_vae(b), 1, 32, 32, ia, eb, NULL, NULL), MMP_OK);
    MMPT_ASSERT_REL_LE(eb, ea, 256, 1e-6);
    free(ia); free(ib);
    mmp_safetensors_free(io);
    /* prompt conditioning through tokenizer + text encoder */
    float *ca = NULL, *cb = NULL;
    int32_t ta, da, tb, db;
    if (mmp_sd_encode_prompt(a, "hello world, it's a photo", 0, 2, &ca, &ta, &da) != MMP_OK) fail_msg("%s", mmp_last_error());
    if (mmp_sd_encode_prompt(b, "hello world, it's a photo", 0, 2, &cb, &tb, &db) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(ta, 16); assert_int_equal(da, 32);
    assert_int_equal(tb, 16); assert_int_equal(db, 32);
    printf("text conditioning single-file vs folder: rel L2 %.3g\n", mmpt_rel_l2(cb, ca, 16 * 32));
    MMPT_ASSERT_REL_LE(cb, ca, 16 * 32, 1e-6);
    free(ca); free(cb);
    /* clip skip 2 differs from the last layer */
    assert_int_equal(mmp_sd_encode_prompt(a, "hello", 2, 2, &ca, &ta, &da), MMP_OK);
    assert_int_equal(mmp_sd_encode_prompt(a, "hello", 0, 2, &cb, &tb, &db), MMP_OK);
    assert_true(mmpt_rel_l2(ca, cb, 16 * 32) > 1e-3);
    free(ca); free(cb);
}

static void test_folder_and_single_file(void **st) {
    (void)st;
    fixture_t f;
    make_fixture(&f);
    mmp_sd_params p = tiny_params();
    p.tokenizer_path = NULL; /* the folder has its own */
    mmp_sd *a = mmp_sd_load(f.pipe, &p);
    if (!a) fail_msg("%s", mmp_last_error());
    assert_false(mmp_sd_is_single_file(a));
    p = tiny_params();
    mmp_sd *b = mmp_sd_load(f.ckpt, &p);
    if (!b) fail_msg("%s", mmp_last_error());
    assert_true(mmp_sd_is_single_file(b));
    compare_models(a, b);
    /* scheduler config of the folder (tests/data/sd/scheduler: SD1.5's values, PNDM class) */
    mmp_sched_params sp;
    assert_int_equal(mmp_sd_sched_params(a, MMP_SCHED_DDIM, &sp), MMP_OK);
    assert_int_equal(sp.steps_offset, 1);
    assert_true(sp.beta_end == 0.012);
    assert_int_equal(mmp_sd_sched_params(b, MMP_SCHED_EULER, &sp), MMP_OK);
    assert_int_equal(sp.kind, MMP_SCHED_EULER);
    mmp_sd_free(a);
    mmp_sd_free(b);
    mmp_sd_free(NULL);
    /* nothing left in the temporary folder: only our own files */
    rm_fixture(&f);
}

static void test_convert_to_folder(void **st) {
    (void)st;
    fixture_t f;
    make_fixture(&f);
    char out[128];
    snprintf(out, sizeof out, "%s/converted", f.dir);
    mmp_sd_params p = tiny_params();
    if (mmp_sd_convert_single_file(f.ckpt, out, &p) != MMP_OK) fail_msg("%s", mmp_last_error());
    /* the result is a diffusers root that loads without any hints */
    mmp_sd_params q = mmp_sd_params_default();
    q.n_threads = 2;
    mmp_sd *c = mmp_sd_load(out, &q);
    if (!c) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_unet_cross_attention_dim(mmp_sd_unet(c)), 32);
    assert_int_equal(mmp_clip_tokenizer_max_length(mmp_sd_tokenizer(c)), 16);
    p.tokenizer_path = NULL;
    mmp_sd *a = mmp_sd_load(f.pipe, &p);
    assert_non_null(a);
    compare_models(a, c);
    mmp_sd_free(a);
    mmp_sd_free(c);
    static const char *const files[] = { "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                                          "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                                          "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
                                          "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
                                          "model_index.json", "unet", "vae", "text_encoder", "tokenizer", "" };
    char path[256];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", out, files[i]);
        if (unlink(path) != 0) assert_int_equal(rmdir(path), 0);
    }
    rm_fixture(&f);
}

static void test_errors(void **st) {
    (void)st;
    fixture_t f;
    make_fixture(&f);
    mmp_sd_params p = tiny_params();
    assert_null(mmp_sd_load(f.bad, &p));
    assert_non_null(strstr(mmp_last_error(), "model.diffusion_model.strange_block.weight"));
    assert_null(mmp_sd_load(f.sd2, &p));
    assert_non_null(strstr(mmp_last_error(), "OpenCLIP"));
    /* no tokenizer anywhere for a single file */
    p.tokenizer_path = NULL;
    assert_null(mmp_sd_load(f.ckpt, &p));
    assert_non_null(strstr(mmp_last_error(), "tokenizer"));
    /* a folder that is not a pipeline, a missing path */
    assert_null(mmp_sd_load(f.dir, &p));
    assert_non_null(strstr(mmp_last_error(), "model_index.json"));
    assert_null(mmp_sd_load("/nonexistent/model.safetensors", &p));
    assert_null(mmp_sd_load(NULL, &p));
    /* a pipeline without unet/ */
    char un[160];
    snprintf(un, sizeof un, "%s/unet", f.pipe);
    unlink(un);
    assert_null(mmp_sd_load(f.pipe, &p));
    assert_non_null(strstr(mmp_last_error(), "unet/"));
    sym(mmpt_data("gen/unet"), f.pipe, "unet");
    /* the temporary folders of failed loads are gone */
    rm_fixture(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_and_single_file),
        cmocka_unit_test(test_convert_to_folder),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
