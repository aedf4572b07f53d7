/* `mmpipe txt2img` run as a user runs it (the built binary through popen) on a tiny diffusers
 * folder assembled in a temporary folder from the golden unet, vae and clip_text cases, the
 * fixture CLIP tokenizer (tests/data/sd/tokenizer) and SD1.5's scheduler config
 * (tests/data/sd/scheduler). The golden clip_text width (32) equals the golden unet's
 * cross_attention_dim (32), so the set runs end to end; a synthetic 16-wide text encoder and
 * the TAEF2 decoder (32 latent channels) make the mismatch errors. */
#include "testutil.h"
#include "mmpipe/sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_err[8192]; /* stderr of the last command */

#define mmpipe(...) mmpt_run_cli(MMP_SOURCE_DIR, NULL, NULL, g_err, sizeof g_err, __VA_ARGS__)

static char g_dir[64], g_pipe[128], g_bad[128];

static void link_in(const char *target, const char *dir, const char *name) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (symlink(target, p) != 0) fail_msg("symlink %s", p);
}

static const char *k_model_index =
    "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
    " \"vae\": [\"diffusers\", \"AutoencoderKL\"], \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
    " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], \"scheduler\": [\"diffusers\", \"PNDMScheduler\"]}";

/* A CLIPTextModel of width 16 (random weights): only its width matters here. */
static void write_narrow_text_encoder(const char *dir) {
    mkdir(dir, 0755);
    mmpt_write_text(dir, "config.json",
              "{\"architectures\": [\"CLIPTextModel\"], \"model_type\": \"clip_text_model\", \"hidden_size\": 16,"
              " \"intermediate_size\": 32, \"num_attention_heads\": 2, \"num_hidden_layers\": 1,"
              " \"max_position_embeddings\": 16, \"vocab_size\": 320, \"hidden_act\": \"quick_gelu\","
              " \"layer_norm_eps\": 1e-05, \"bos_token_id\": 318, \"eos_token_id\": 319, \"pad_token_id\": 319}");
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    static float buf[320 * 32];
    struct { const char *name; int nd; int64_t ne[2]; } t[] = {
        { "text_model.embeddings.token_embedding.weight", 2, { 16, 320 } },
        { "text_model.embeddings.position_embedding.weight", 2, { 16, 16 } },
        { "text_model.encoder.layers.0.layer_norm1.weight", 1, { 16, 1 } }, { "text_model.encoder.layers.0.layer_norm1.bias", 1, { 16, 1 } },
        { "text_model.encoder.layers.0.layer_norm2.weight", 1, { 16, 1 } }, { "text_model.encoder.layers.0.layer_norm2.bias", 1, { 16, 1 } },
        { "text_model.encoder.layers.0.self_attn.q_proj.weight", 2, { 16, 16 } }, { "text_model.encoder.layers.0.self_attn.q_proj.bias", 1, { 16, 1 } },
        { "text_model.encoder.layers.0.self_attn.k_proj.weight", 2, { 16, 16 } }, { "text_model.encoder.layers.0.self_attn.k_proj.bias", 1, { 16, 1 } },
        { "text_model.encoder.layers.0.self_attn.v_proj.weight", 2, { 16, 16 } }, { "text_model.encoder.layers.0.self_attn.v_proj.bias", 1, { 16, 1 } },
        { "text_model.encoder.layers.0.self_attn.out_proj.weight", 2, { 16, 16 } }, { "text_model.encoder.layers.0.self_attn.out_proj.bias", 1, { 16, 1 } },
        { "text_model.encoder.layers.0.mlp.fc1.weight", 2, { 16, 32 } }, { "text_model.encoder.layers.0.mlp.fc1.bias", 1, { 32, 1 } },
        { "text_model.encoder.layers.0.mlp.fc2.weight", 2, { 32, 16 } }, { "text_model.encoder.layers.0.mlp.fc2.bias", 1, { 16, 1 } },
        { "text_model.final_layer_norm.weight", 1, { 16, 1 } }, { "text_model.final_layer_norm.bias", 1, { 16, 1 } },
    };
    mmpt_rand_fill(buf, sizeof buf / sizeof buf[0], 5, -0.1f, 0.1f);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(mmp_safetensors_writer_add_ne(w, t[i].name, MMP_TYPE_F32, t[i].nd, t[i].ne, buf), MMP_OK);
    char p[256];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (mmp_safetensors_writer_write(w, p) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_safetensors_writer_free(w);
}

static int setup(void **st) {
    (void)st;
    strcpy(g_dir, "/tmp/mmp_t2icliXXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_pipe, sizeof g_pipe, "%s/sd-tiny", g_dir);
    mkdir(g_pipe, 0755);
    mmpt_write_text(g_pipe, "model_index.json", k_model_index);
    link_in(mmpt_data("gen/unet"), g_pipe, "unet");
    link_in(mmpt_data("gen/vae"), g_pipe, "vae");
    link_in(mmpt_data("vision/clip_text"), g_pipe, "text_encoder");
    link_in(mmpt_data("sd/tokenizer"), g_pipe, "tokenizer");
    link_in(mmpt_data("sd/scheduler"), g_pipe, "scheduler");
    /* the same with a 16-wide text encoder */
    snprintf(g_bad, sizeof g_bad, "%s/sd-narrow", g_dir);
    mkdir(g_bad, 0755);
    mmpt_write_text(g_bad, "model_index.json", k_model_index);
    link_in(mmpt_data("gen/unet"), g_bad, "unet");
    link_in(mmpt_data("gen/vae"), g_bad, "vae");
    link_in(mmpt_data("sd/tokenizer"), g_bad, "tokenizer");
    char te[160];
    snprintf(te, sizeof te, "%s/text_encoder", g_bad);
    write_narrow_text_encoder(te);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir); /* our own temporary folder (symlinks are not followed) */
    return system(cmd) == 0 ? 0 : -1;
}

static char *png_text(const char *path, const char *key) {
    size_t n = 0;
    void *b = mmpt_read_file(path, &n);
    assert_non_null(b);
    char *v = mmp_png_get_text(b, n, key);
    free(b);
    return v;
}

static void expect_text(const char *path, const char *key, const char *want) {
    char *v = png_text(path, key);
    if (!v) fail_msg("%s: no tEXt '%s': %s", path, key, mmp_last_error());
    if (strcmp(v, want)) fail_msg("%s: tEXt '%s' is '%s', expected '%s'", path, key, v, want);
    free(v);
}

static void test_generate(void **st) {
    (void)st;
    char a[160], b[160], c[160];
    snprintf(a, sizeof a, "%s/a.png", g_dir);
    snprintf(b, sizeof b, "%s/b.png", g_dir);
    snprintf(c, sizeof c, "%s/c.png", g_dir);
    const char *opts = "-p 'hello world, a photo' -n 'aaa' --steps 4 --cfg 5 --sampler dpmpp_2m --karras --seed 1234 -W 32 -H 40 --threads 2";
    int rc = mmpipe("txt2img -m '%s' %s -o '%s'", g_pipe, opts, a);
    if (rc != 0) fail_msg("rc %d: %s", rc, g_err);
    assert_non_null(strstr(g_err, "4/4 steps"));
    assert_non_null(strstr(g_err, "s/step"));
    rc = mmpipe("txt2img -m '%s' %s -o '%s'", g_pipe, opts, b);
    if (rc != 0) fail_msg("rc %d: %s", rc, g_err);
    /* decodes, right size, same seed -> same bytes */
    mmp_image *ia = mmp_image_load(a, 0), *ib = mmp_image_load(b, 0);
    if (!ia || !ib) fail_msg("%s", mmp_last_error());
    assert_int_equal(ia->width, 32);
    assert_int_equal(ia->height, 40);
    assert_memory_equal(ia->data, ib->data, 3 * 32 * 40);
    /* not a flat image */
    int lo = 255, hi = 0;
    for (int i = 0; i < 3 * 32 * 40; i++) { lo = ia->data[i] < lo ? ia->data[i] : lo; hi = ia->data[i] > hi ? ia->data[i] : hi; }
    assert_true(hi - lo > 8);
    expect_text(a, "prompt", "hello world, a photo");
    expect_text(a, "negative_prompt", "aaa");
    expect_text(a, "seed", "1234");
    expect_text(a, "steps", "4");
    expect_text(a, "sampler", "dpmpp_2m karras");
    expect_text(a, "cfg_scale", "5");
    expect_text(a, "size", "32x40");
    /* the PNG is what the library computes for the same settings */
    mmp_sd_params lp = mmp_sd_params_default();
    lp.n_threads = 2;
    mmp_sd *sd = mmp_sd_load(g_pipe, &lp);
    if (!sd) fail_msg("%s", mmp_last_error());
    mmp_sd_gen_params g = mmp_sd_gen_params_default();
    g.prompt = "hello world, a photo"; g.negative = "aaa"; g.steps = 4; g.cfg_scale = 5; g.sampler = MMP_SCHED_DPMPP_2M;
    g.karras = true; g.seed = 1234; g.width = 32; g.height = 40;
    float *img = malloc(3 * 32 * 40 * sizeof(float));
    if (mmp_sd_generate(sd, &g, img, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_image *ic = mmp_image_from_chw(img, 32, 40);
    assert_memory_equal(ic->data, ia->data, 3 * 32 * 40);
    mmp_image_free(ic);
    free(img);
    mmp_sd_free(sd);
    /* another seed gives another picture */
    rc = mmpipe("txt2img -m '%s' -p 'hello world, a photo' -n 'aaa' --steps 4 --cfg 5 --sampler dpmpp_2m --karras --seed 1235 "
                "-W 32 -H 40 -o '%s'", g_pipe, c);
    assert_int_equal(rc, 0);
    mmp_image *icc = mmp_image_load(c, 0);
    assert_non_null(icc);
    assert_true(memcmp(icc->data, ia->data, 3 * 32 * 40) != 0);
    mmp_image_free(icc);
    mmp_image_free(ia);
    mmp_image_free(ib);
    /* every sampler runs; without a seed one is chosen and recorded */
    const char *samplers[] = { "ddim", "euler", "euler_a" };
    for (int i = 0; i < 3; i++) {
        rc = mmpipe("txt2img -m '%s' -p hello --steps 2 --sampler %s -W 16 -H 16 -o '%s'", g_pipe, samplers[i], c);
        if (rc != 0) fail_msg("%s: rc %d: %s", samplers[i], rc, g_err);
        expect_text(c, "sampler", samplers[i]);
        char *seed = png_text(c, "seed");
        assert_non_null(seed);
        assert_non_null(strstr(g_err, seed));
        free(seed);
    }
    /* TAESD instead of the VAE (scale 8: sizes must be multiples of 16 with this UNet) */
    rc = mmpipe("txt2img -m '%s' -p hello --steps 2 --seed 1 -W 32 -H 16 --taesd '%s' -o '%s'", g_pipe,
                mmpt_data("gen/taesd_tiny"), c);
    if (rc != 0) fail_msg("taesd: rc %d: %s", rc, g_err);
    mmp_image *it = mmp_image_load(c, 0);
    assert_non_null(it);
    assert_int_equal(it->width, 32);
    assert_int_equal(it->height, 16);
    mmp_image_free(it);
    unlink(a); unlink(b); unlink(c);
}

static void expect_fail(int want_rc, const char *needle, const char *fmt, ...) MMP_PRINTF(3, 4);
static void expect_fail(int want_rc, const char *needle, const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = mmpipe("%s", args);
    if (rc != want_rc) fail_msg("'%s': rc %d, expected %d: %s", args, rc, want_rc, g_err);
    if (!strstr(g_err, needle)) fail_msg("'%s': stderr lacks '%s': %s", args, needle, g_err);
}

static void test_errors(void **st) {
    (void)st;
    char out[160];
    snprintf(out, sizeof out, "%s/x.png", g_dir);
    expect_fail(2, "multiple of 8", "txt2img -m '%s' -p a -W 30 -H 32 -o '%s'", g_pipe, out);
    expect_fail(2, "multiple of 8", "txt2img -m '%s' -p a -W 32 -H 0 -o '%s'", g_pipe, out);
    expect_fail(2, "--steps 0", "txt2img -m '%s' -p a --steps 0 -o '%s'", g_pipe, out);
    expect_fail(2, "--steps 10000", "txt2img -m '%s' -p a --steps 10000 -o '%s'", g_pipe, out);
    expect_fail(2, "--sampler", "txt2img -m '%s' -p a --sampler plms -o '%s'", g_pipe, out);
    expect_fail(2, "--cfg", "txt2img -m '%s' -p a --cfg abc -o '%s'", g_pipe, out);
    expect_fail(2, "--karras", "txt2img -m '%s' -p a --sampler ddim --karras -o '%s'", g_pipe, out);
    expect_fail(2, "-p", "txt2img -m '%s' -o '%s'", g_pipe, out);
    expect_fail(2, "unknown option", "txt2img -m '%s' -p a --bogus 1 -o '%s'", g_pipe, out);
    /* the model's own multiple: TAESD (8x) with a 2-level UNet -> 16 */
    expect_fail(1, "multiples of 16", "txt2img -m '%s' -p a -W 40 -H 32 --taesd '%s' -o '%s'", g_pipe,
                mmpt_data("gen/taesd_tiny"), out);
    /* UNet on 4 latent channels, TAEF2 on 32 */
    expect_fail(1, "latent channels", "txt2img -m '%s' -p a -W 32 -H 32 --taesd '%s' -o '%s'", g_pipe,
                mmpt_data("gen/taef2/taef2_decoder.safetensors"), out);
    /* text encoder width 16 vs cross_attention_dim 32: the message names both */
    expect_fail(1, "width is 16 but the UNet's cross_attention_dim is 32", "txt2img -m '%s' -p a -W 32 -H 32 -o '%s'", g_bad, out);
    /* missing components / files */
    expect_fail(1, "model_index.json", "txt2img -m '%s' -p a -o '%s'", g_dir, out);
    char p[200];
    snprintf(p, sizeof p, "%s/tokenizer", g_bad);
    unlink(p);
    expect_fail(1, "tokenizer", "txt2img -m '%s' -p a -W 32 -H 32 -o '%s'", g_bad, out);
    link_in(mmpt_data("sd/tokenizer"), g_bad, "tokenizer");
    snprintf(p, sizeof p, "%s/vae", g_bad);
    unlink(p);
    expect_fail(1, "vae/", "txt2img -m '%s' -p a -W 32 -H 32 -o '%s'", g_bad, out);
    link_in(mmpt_data("gen/vae"), g_bad, "vae");
    assert_int_equal(access(out, F_OK), -1); /* nothing was written */
    /* help for a newcomer */
    assert_int_equal(mmpipe("txt2img --help"), 0);
    assert_int_equal(mmpipe("txt2img"), 2);
    assert_non_null(strstr(g_err, "usage: mmpipe txt2img"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
