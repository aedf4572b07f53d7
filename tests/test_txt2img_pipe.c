/* Text to image as a stage graph: the stock pipeline txt2img (pipelines/txt2img.pipe:
 * tokenize.clip -> encoder.clip_text (prompt and negative) -> generator.sample) on a tiny
 * Stable Diffusion model assembled from the golden unet / vae / clip_text cases, the fixture
 * tokenizer and SD1.5's scheduler config, against
 *  - mmp_sd_generate (the library's text-to-image driver): the same latents and image, bit for
 *    bit (the same kernels on the same inputs), for several samplers, with and without a
 *    negative prompt (none = the empty prompt), CFG on and off, clip skip;
 *  - golden `txt2img_loop` through generator.sample with model = the SD root: latents <= 1e-3
 *    relative, image <= 1/255 mean absolute error, for DDIM, Euler and DPM++ 2M;
 *  - a single-file LDM checkpoint made from the same tensors (renamed back to the LDM names,
 *    as test_sd_load.c does): the same output as the folder.
 * And the model store: the root is loaded once although five stages use it. */
#include "testutil.h"
#include "mmpipe/pipeline.h"
#include "mmpipe/sd.h"
#include "mmpipe/store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Single-file checkpoints are made with mmpt_ldm_add (tests/testutil_ldm.c), as test_sd_load.c does. */

static char g_dir[64], g_pipe[128], g_ckpt[128];

static void sym(const char *target, const char *dir, const char *name) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (symlink(target, p) != 0) fail_msg("symlink %s", p);
}

static int setup(void **st) {
    (void)st;
    strcpy(g_dir, "/tmp/mmp_t2ipipeXXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_pipe, sizeof g_pipe, "%s/sd-tiny", g_dir);
    mkdir(g_pipe, 0755);
    mmpt_write_text(g_pipe, "model_index.json",
                    "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],"
                    " \"vae\": [\"diffusers\", \"AutoencoderKL\"], \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
                    " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], \"scheduler\": [\"diffusers\", \"PNDMScheduler\"]}");
    sym(mmpt_data("gen/unet"), g_pipe, "unet");
    sym(mmpt_data("gen/vae"), g_pipe, "vae");
    sym(mmpt_data("vision/clip_text"), g_pipe, "text_encoder");
    sym(mmpt_data("sd/tokenizer"), g_pipe, "tokenizer");
    sym(mmpt_data("sd/scheduler"), g_pipe, "scheduler");
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    mmpt_ldm_add(w, mmpt_data("gen/unet/diffusion_pytorch_model.safetensors"), 0);
    mmpt_ldm_add(w, mmpt_data("gen/vae/diffusion_pytorch_model.safetensors"), 1);
    mmpt_ldm_add(w, mmpt_data("vision/clip_text/model.safetensors"), 2);
    snprintf(g_ckpt, sizeof g_ckpt, "%s/sd-tiny.safetensors", g_dir);
    if (mmp_safetensors_writer_write(w, g_ckpt) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_safetensors_writer_free(w);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir); /* our own temporary folder (symlinks are not followed) */
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- running the stock pipeline ---- */

typedef struct run_cfg {
    const char *model, *prompt, *negative, *sampler, *cfg;
    int karras, steps, width, height, clip_skip;
    unsigned seed;
    bool single;           /* single-file load options (tokenizer, heads, groups) */
} run_cfg;

typedef struct { int steps_calls; int64_t last, total; } prog_t;
static void on_progress(const char *what, int64_t done, int64_t total, void *user) {
    prog_t *p = user;
    if (strcmp(what, "steps")) return;
    p->steps_calls++;
    p->last = done;
    p->total = total;
}

static void set(mmp_pipeline_desc *d, const char *k, const char *v) {
    if (mmp_pipeline_desc_set_param(d, k, v) != MMP_OK) fail_msg("%s", mmp_last_error());
}

/* The tiny VAE has 3 levels: 4 pixels per latent. */
#define SC 4

/* image [3, H, W] and latents [4, H/SC, W/SC] of the pipeline (caller frees) */
static void run_pipe(const run_cfg *c, mmp_store *store, float **img, float **lat) {
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("txt2img");
    if (!d) fail_msg("%s", mmp_last_error());
    char b[8][32];
    snprintf(b[0], 32, "%d", c->steps);
    snprintf(b[1], 32, "%d", c->width);
    snprintf(b[2], 32, "%d", c->height);
    snprintf(b[3], 32, "%u", c->seed);
    snprintf(b[4], 32, "%d", c->clip_skip);
    snprintf(b[5], 32, "%d", c->karras);
    set(d, "model", c->model);
    set(d, "sampler", c->sampler);
    set(d, "cfg", c->cfg);
    set(d, "steps", b[0]);
    set(d, "width", b[1]);
    set(d, "height", b[2]);
    set(d, "seed", b[3]);
    set(d, "clip_skip", b[4]);
    set(d, "karras", b[5]);
    if (c->single) {
        set(d, "tokenizer", mmpt_data("sd/tokenizer"));
        set(d, "ldm_heads", "4");       /* golden unet: attention_head_dim 4 */
        set(d, "ldm_groups", "8");      /* golden unet and vae: norm_num_groups 8 */
        set(d, "ldm_text_heads", "4");  /* golden clip_text: 4 heads */
    }
    mmp_registry *r = mmp_registry_new();
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    pp.store = store;
    prog_t prog = { 0, 0, 0 };
    pp.progress = on_progress;
    pp.cb_user = &prog;
    mmp_store_stats s0 = mmp_store_get_stats(store);
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    mmp_pipeline_desc_free(d);
    if (!p) fail_msg("%s", mmp_last_error());
    if (store) {
        /* one SD model for the five stages (tok, text, ntok, ntext, sample): loaded once, the
         * four other stages served from the store (the counters are cumulative) */
        mmp_store_stats s = mmp_store_get_stats(store);
        assert_int_equal(s.models_loaded, 1);
        assert_int_equal(s.model_loads - s0.model_loads, 1);
        assert_int_equal(s.hits - s0.hits, 4);
    }
    int ip = mmp_pipeline_find_input(p, "prompt"), in = mmp_pipeline_find_input(p, "negative");
    int oi = mmp_pipeline_find_output(p, "image"), ol = mmp_pipeline_find_output(p, "latents");
    assert_true(ip >= 0 && in >= 0 && oi >= 0 && ol >= 0);
    assert_true(mmp_pipeline_input_optional(p, in));
    int64_t lp = (int64_t)strlen(c->prompt), ln = c->negative ? (int64_t)strlen(c->negative) : 0;
    mmp_array *ap = mmp_array_wrap(MMP_TYPE_U8, 1, &lp, (void *)c->prompt);
    mmp_array *an = ln ? mmp_array_wrap(MMP_TYPE_U8, 1, &ln, (void *)c->negative) : NULL;
    const mmp_array *ins[2] = { 0 };
    ins[ip] = ap;
    ins[in] = an;
    mmp_array *outs[2] = { 0 };
    if (mmp_pipeline_run(p, ins, outs) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(prog.steps_calls, c->steps);
    assert_int_equal(prog.last, c->steps);
    assert_int_equal(prog.total, c->steps);
    mmp_array *ai = outs[oi], *al = outs[ol];
    assert_int_equal(ai->n_dims, 3);
    assert_int_equal(ai->dims[0], 3);
    assert_int_equal(ai->dims[1], c->height);
    assert_int_equal(ai->dims[2], c->width);
    assert_int_equal(al->dims[0], 4);
    assert_int_equal(al->dims[1], c->height / SC);
    assert_int_equal(al->dims[2], c->width / SC);
    *img = malloc(mmp_array_nbytes(ai));
    *lat = malloc(mmp_array_nbytes(al));
    memcpy(*img, ai->data, mmp_array_nbytes(ai));
    memcpy(*lat, al->data, mmp_array_nbytes(al));
    mmp_array_free(ai);
    mmp_array_free(al);
    mmp_array_free(ap);
    mmp_array_free(an);
    mmp_pipeline_free(p);
    mmp_registry_free(r);
    if (store) {
        mmp_store_stats s = mmp_store_get_stats(store);
        assert_int_equal(s.models_loaded, 0);
        assert_int_equal(s.files_open, 0);
    }
}

/* the same settings through mmp_sd_generate */
static void run_sd(const run_cfg *c, float **img, float **lat) {
    mmp_sd_params lp = mmp_sd_params_default();
    lp.n_threads = 2;
    mmp_sd *sd = mmp_sd_load(c->model, &lp);
    if (!sd) fail_msg("%s", mmp_last_error());
    mmp_sd_gen_params g = mmp_sd_gen_params_default();
    g.prompt = c->prompt;
    g.negative = c->negative;
    g.sampler = mmp_sched_kind_from_name(c->sampler);
    g.karras = c->karras != 0;
    g.steps = c->steps;
    g.cfg_scale = strtof(c->cfg, NULL);
    g.width = c->width;
    g.height = c->height;
    g.seed = c->seed;
    g.clip_skip = c->clip_skip;
    *img = malloc((size_t)3 * c->width * c->height * sizeof(float));
    *lat = malloc((size_t)4 * (c->width / SC) * (c->height / SC) * sizeof(float));
    if (mmp_sd_generate(sd, &g, *img, *lat) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_sd_free(sd);
}

static const run_cfg k_cases[] = {
    { NULL, "hello world, a photo", "aaa", "dpmpp_2m", "5", 1, 4, 32, 40, 1, 1234, false },
    { NULL, "a lighthouse at dusk", NULL, "euler_a", "7.5", 0, 3, 32, 32, 1, 7, false },    /* no negative: "" */
    { NULL, "hello", NULL, "ddim", "1", 0, 2, 16, 32, 2, 42, false },                      /* CFG off, clip skip 2 */
    { NULL, "hello world", "blurry", "euler", "6", 0, 3, 48, 16, 1, 99, false },
};

static void test_pipe_vs_sd_generate(void **st) {
    (void)st;
    mmp_store *store = mmp_store_new();
    assert_non_null(store);
    for (size_t k = 0; k < sizeof k_cases / sizeof k_cases[0]; k++) {
        run_cfg c = k_cases[k];
        c.model = g_pipe;
        float *pi, *pl, *ri, *rl;
        run_pipe(&c, store, &pi, &pl);
        run_sd(&c, &ri, &rl);
        size_t ni = (size_t)3 * c.width * c.height, nl = (size_t)4 * (c.width / SC) * (c.height / SC);
        double el = mmpt_rel_l2(pl, rl, nl), ei = mmpt_max_abs(pi, ri, ni);
        printf("# txt2img.pipe vs mmp_sd_generate, %s cfg %s%s: latents rel %.3g, image max abs %.3g\n", c.sampler, c.cfg,
               c.negative ? "" : " (no negative)", el, ei);
        if (memcmp(pl, rl, nl * sizeof(float)) || memcmp(pi, ri, ni * sizeof(float)))
            fail_msg("case %zu: the pipeline's output differs from mmp_sd_generate's", k);
        free(pi); free(pl); free(ri); free(rl);
    }
    mmp_store_free(store);
}

static void test_single_file(void **st) {
    (void)st;
    run_cfg c = k_cases[0];
    c.model = g_pipe;
    float *fi, *fl, *si, *sl;
    run_pipe(&c, NULL, &fi, &fl);
    c.model = g_ckpt;
    c.single = true;
    mmp_store *store = mmp_store_new();
    run_pipe(&c, store, &si, &sl);
    mmp_store_free(store);
    size_t ni = (size_t)3 * c.width * c.height, nl = (size_t)4 * (c.width / SC) * (c.height / SC);
    printf("# txt2img.pipe single file vs folder: latents rel %.3g, image max abs %.3g\n", mmpt_rel_l2(sl, fl, nl),
           mmpt_max_abs(si, fi, ni));
    if (memcmp(sl, fl, nl * sizeof(float)) || memcmp(si, fi, ni * sizeof(float)))
        fail_msg("the single-file checkpoint gives another output than the folder");
    free(fi); free(fl); free(si); free(sl);
}

/* golden txt2img_loop: generator.sample with model = the SD root (its UNet, VAE and scheduler
 * config) on the golden conditioning / uncond / initial noise */
static void test_golden_through_root(void **st) {
    (void)st;
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("gen/txt2img_loop/io.safetensors"));
    assert_non_null(io);
    int64_t nl, nc;
    float *cond = mmpt_st_f32(io, "cond", &nc), *uncond = mmpt_st_f32(io, "uncond", NULL), *x0 = mmpt_st_f32(io, "latents_init", &nl);
    assert_int_equal(nc, 7 * 32);
    const char *names[3] = { "ddim", "euler", "dpmpp_2m" };
    /* the golden's scheduler configs differ from SD1.5's scheduler_config.json only in the
     * spacing (case.json of golden `schedulers`): say it as an option */
    const char *spacing[3] = { "leading", "leading", "linspace" };
    mmp_registry *r = mmp_registry_new();
    for (int k = 0; k < 3; k++) {
        mmp_pipeline_desc *d = mmp_pipeline_desc_new("golden");
        char opts[128];
        snprintf(opts, sizeof opts, "sampler=%s,steps=6,cfg=7.5,spacing=%s", names[k], spacing[k]);
        assert_int_equal(mmp_pipeline_desc_add_stage(d, "s", "generator.sample", g_pipe, NULL, opts), MMP_OK);
        assert_int_equal(mmp_pipeline_desc_add_input(d, "cond", "s.conditioning"), MMP_OK);
        assert_int_equal(mmp_pipeline_desc_add_input(d, "uncond", "s.uncond"), MMP_OK);
        assert_int_equal(mmp_pipeline_desc_add_input(d, "x0", "s.latents_init"), MMP_OK);
        assert_int_equal(mmp_pipeline_desc_add_output(d, "latents", "s.latents"), MMP_OK);
        assert_int_equal(mmp_pipeline_desc_add_output(d, "image", "s.image"), MMP_OK);
        mmp_pipeline_params pp = mmp_pipeline_params_default();
        pp.n_threads = 2;
        mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
        mmp_pipeline_desc_free(d);
        if (!p) fail_msg("%s", mmp_last_error());
        int64_t dc[2] = { 7, 32 }, dx[3] = { 4, 8, 8 };
        mmp_array *ac = mmp_array_wrap(MMP_TYPE_F32, 2, dc, cond), *au = mmp_array_wrap(MMP_TYPE_F32, 2, dc, uncond),
                  *ax = mmp_array_wrap(MMP_TYPE_F32, 3, dx, x0);
        const mmp_array *ins[3] = { ac, au, ax };
        mmp_array *outs[2] = { 0 };
        if (mmp_pipeline_run(p, ins, outs) != MMP_OK) fail_msg("%s", mmp_last_error());
        char key[64];
        snprintf(key, sizeof key, "%s.latents_final", names[k]);
        float *lref = mmpt_st_f32(io, key, NULL);
        snprintf(key, sizeof key, "%s.image", names[k]);
        float *iref = mmpt_st_f32(io, key, NULL);
        double e = mmpt_rel_l2(outs[0]->data, lref, (size_t)nl), mae = 0;
        const float *img = outs[1]->data;
        for (int i = 0; i < 3 * 32 * 32; i++) mae += fabs((double)img[i] - iref[i]);
        mae /= 3 * 32 * 32;
        printf("# generator.sample (SD root) %s vs golden txt2img_loop: latents rel %.3g, image mean abs %.3g (x255 = %.4f)\n",
               names[k], e, mae, mae * 255);
        if (!(e <= 1e-3)) fail_msg("%s: latents relative error %.3g > 1e-3", names[k], e);
        if (!(mae <= 1.0 / 255)) fail_msg("%s: image mean abs error %.3g > 1/255", names[k], mae);
        free(lref); free(iref);
        mmp_array_free(outs[0]); mmp_array_free(outs[1]);
        mmp_array_free(ac); mmp_array_free(au); mmp_array_free(ax);
        mmp_pipeline_free(p);
    }
    mmp_registry_free(r);
    free(cond); free(uncond); free(x0);
    mmp_safetensors_free(io);
}

static void expect_new_fails(mmp_pipeline_desc *d, const char *needle) {
    mmp_registry *r = mmp_registry_new();
    mmp_pipeline *p = mmp_pipeline_new(d, r, NULL);
    if (p) fail_msg("created, expected an error mentioning '%s'", needle);
    if (!strstr(mmp_last_error(), needle)) fail_msg("'%s' lacks '%s'", mmp_last_error(), needle);
    mmp_registry_free(r);
}

/* A Stable Diffusion root opened by generator.sample and a stage naming one of its components
 * (ROOT/vae) directly meet on one mapping in the store: unet, vae and text_encoder are each open
 * once, and the VAE file is found in the cache by the second stage. */
static void test_root_shares_mapping(void **st) {
    (void)st;
    mmp_registry *r = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    assert_non_null(r);
    assert_non_null(store);
    int scope = 0;
    char vae[256];
    snprintf(vae, sizeof vae, "%s/vae", g_pipe);
    mmp_stage_params sp = mmp_stage_params_default();
    sp.store = store;
    sp.scope = &scope;
    sp.model_path = g_pipe;
    sp.options = "steps=2";
    mmp_stage *sample = mmp_stage_new(mmp_registry_find(r, "generator.sample"), &sp);
    if (!sample) fail_msg("%s", mmp_last_error());
    mmp_store_stats a = mmp_store_get_stats(store);
    assert_int_equal(a.files_open, 3);   /* ROOT/unet, ROOT/vae, ROOT/text_encoder */
    sp.model_path = vae;
    sp.options = NULL;
    mmp_stage *dec = mmp_stage_new(mmp_registry_find(r, "generator.vae_decode"), &sp);
    if (!dec) fail_msg("%s", mmp_last_error());
    mmp_store_stats b = mmp_store_get_stats(store);
    printf("  store: files_open %lld -> %lld, file_opens %lld -> %lld, hits %lld -> %lld\n", (long long)a.files_open,
           (long long)b.files_open, (long long)a.file_opens, (long long)b.file_opens, (long long)a.hits, (long long)b.hits);
    assert_int_equal(b.files_open, 3);             /* the VAE file was not opened again */
    assert_int_equal(b.file_opens, a.file_opens);
    assert_true(b.hits > a.hits);
    mmp_stage_free(dec);
    mmp_stage_free(sample);
    b = mmp_store_get_stats(store);
    assert_int_equal(b.files_open, 0);
    assert_int_equal(b.models_loaded, 0);
    mmp_store_free(store);
    mmp_registry_free(r);
}

static void test_errors(void **st) {
    (void)st;
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("txt2img");
    assert_non_null(d);
    /* the model is required: creation names the parameter before anything is opened */
    expect_new_fails(d, "model");
    set(d, "model", g_pipe);
    set(d, "width", "36");
    expect_new_fails(d, "multiples of 8");
    set(d, "width", "32");
    set(d, "sampler", "plms");
    expect_new_fails(d, "plms");
    set(d, "sampler", "ddim");
    set(d, "karras", "1");
    expect_new_fails(d, "Karras");
    set(d, "karras", "0");
    set(d, "clip_skip", "9");
    expect_new_fails(d, "clip_skip=9");
    set(d, "clip_skip", "1");
    set(d, "vae", mmpt_data("gen/taef2/taef2_decoder.safetensors"));
    expect_new_fails(d, "latent channels");
    set(d, "vae", "");
    set(d, "model", g_dir);  /* a folder that is no model */
    expect_new_fails(d, "model_index.json");
    mmp_pipeline_desc_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_vs_sd_generate),
        cmocka_unit_test(test_single_file),
        cmocka_unit_test(test_golden_through_root),
        cmocka_unit_test(test_root_shares_mapping),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
