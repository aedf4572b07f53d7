/* The denoising stage kinds (generators/stage_sample.c):
 *  - scheduler.step against golden `schedulers`: every step of DDIM, Euler and DPM-Solver++ 2M
 *    run as its own stage (a fresh stage per index, fed the previous stage's output; DPM++ 2M
 *    also gets prev_sample / prev_output) <= 1e-5 relative; the scheduler configs are read by
 *    the stage from a JSON file (section=NAME); Euler a stage chain = the scheduler chain;
 *  - generator.sample against golden `txt2img_loop`: final latents <= 1e-3, image <= 1/255 mean
 *    abs error for the three schedulers;
 *  - bad options and missing ports. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mmp_array *io_arr(const mmp_safetensors *st, const char *name) {
    const mmp_tensor_info *ti = mmp_safetensors_find(st, name);
    if (!ti || ti->type != MMP_TYPE_F32) fail_msg("missing f32 tensor %s", name);
    int64_t d[4];
    for (int i = 0; i < ti->n_dims; i++) d[i] = ti->ne[ti->n_dims - 1 - i];
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, ti->n_dims, d);
    assert_non_null(a);
    memcpy(a->data, ti->data, ti->nbytes);
    return a;
}

/* case.json with Python's -Infinity made JSON (null = not clipped, the default), in a temp file */
static char *sched_config_file(void) {
    size_t len;
    char *text = mmpt_read_file(mmpt_data("gen/schedulers/case.json"), &len);
    assert_non_null(text);
    for (size_t i = 0; i + 9 <= len; i++)
        if (memcmp(text + i, "-Infinity", 9) == 0) memcpy(text + i, "null     ", 9);
    char *path = mmpt_write_temp(text, len, ".json");
    free(text);
    assert_non_null(path);
    return path;
}

static mmp_stage *step_stage(const mmp_registry *r, const char *config, const char *opts) {
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = config;
    sp.options = opts;
    return mmp_stage_new(mmp_registry_find(r, "scheduler.step"), &sp);
}

static void run_steps(const char *name, enum mmp_sched_kind kind) {
    mmp_registry *r = mmp_registry_new();
    char *cfg = sched_config_file();
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/schedulers/io.safetensors"));
    assert_non_null(st);
    char key[64], opts[128];
    snprintf(key, sizeof key, "%s.timesteps", name);
    int n_steps = (int)mmp_safetensors_find(st, key)->ne[0];
    /* the fake model needs t_i and scale_model_input(i): from a scheduler made the same way */
    mmp_json *j = mmp_json_open(cfg);
    assert_non_null(j);
    mmp_sched_params p = mmp_sched_params_default(kind);
    assert_int_equal(mmp_sched_params_from_json(&p, j, name), MMP_OK);
    mmp_json_free(j);
    mmp_scheduler *ref = mmp_scheduler_new(&p);
    assert_int_equal(mmp_scheduler_set_timesteps(ref, n_steps), MMP_OK);

    snprintf(key, sizeof key, "%s.x0", name);
    mmp_array *x = io_arr(st, key), *prev_x = NULL, *prev_e = NULL;
    int64_t n = mmp_array_nelements(x);
    double worst = 0;
    for (int i = 0; i < n_steps; i++) {
        mmp_array *eps = mmp_array_new(MMP_TYPE_F32, x->n_dims, x->dims);
        double t = mmp_scheduler_timestep(ref, i), sc = mmp_scheduler_input_scale(ref, i);
        const float *xv = x->data;
        float *ev = eps->data;
        for (int64_t k = 0; k < n; k++) ev[k] = (float)(0.3 * (float)(xv[k] * (float)sc) + 0.1 * cos(t / 100.0));
        snprintf(opts, sizeof opts, "kind=%s,steps=%d,index=%d,section=%s", mmp_sched_kind_name(kind), n_steps, i, name);
        mmp_stage *s = step_stage(r, cfg, opts);
        if (!s) fail_msg("%s", mmp_last_error());
        const mmp_array *in[4] = { x, eps, prev_x, prev_e };
        mmp_array *out[1] = { NULL };
        if (mmp_stage_run(s, in, out) != MMP_OK) fail_msg("%s step %d: %s", name, i, mmp_last_error());
        snprintf(key, sizeof key, "%s.x.%d", name, i);
        mmp_array *gold = io_arr(st, key);
        double e = mmpt_rel_l2(out[0]->data, gold->data, (size_t)n);
        if (e > worst) worst = e;
        if (!(e <= 1e-5)) fail_msg("%s step %d (stage): relative error %.3g > 1e-5", name, i, e);
        mmp_array_free(gold);
        mmp_stage_free(s);
        mmp_array_free(prev_x);
        mmp_array_free(prev_e);
        prev_x = x;
        prev_e = eps;
        x = out[0];
    }
    printf("# scheduler.step %s: %d stages, worst step relative error %.3g\n", name, n_steps, worst);
    mmp_array_free(prev_x);
    mmp_array_free(prev_e);
    mmp_array_free(x);
    mmp_scheduler_free(ref);
    mmp_safetensors_free(st);
    remove(cfg);
    free(cfg);
    mmp_registry_free(r);
}

static void test_step_ddim(void **state) { (void)state; run_steps("ddim", MMP_SCHED_DDIM); }
static void test_step_euler(void **state) { (void)state; run_steps("euler", MMP_SCHED_EULER); }
static void test_step_dpmpp_2m(void **state) { (void)state; run_steps("dpmpp_2m", MMP_SCHED_DPMPP_2M); }

/* Euler a: the stage replays the noise draws: a chain of stages equals one scheduler run. */
static void test_step_euler_a(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    const int N = 5, n = 32;
    mmp_sched_params p = mmp_sched_params_default(MMP_SCHED_EULER_A);
    p.seed = 1234;
    mmp_scheduler *ref = mmp_scheduler_new(&p);
    assert_int_equal(mmp_scheduler_set_timesteps(ref, N), MMP_OK);
    float xr[32], e[32];
    mmpt_rand_fill(xr, n, 7, -1, 1);
    mmp_array *x = mmp_array_new(MMP_TYPE_F32, 3, (int64_t[]){ 2, 4, 4 });
    memcpy(x->data, xr, sizeof xr);
    for (int i = 0; i < N; i++) {
        mmpt_rand_fill(e, n, 100 + i, -1, 1);
        assert_int_equal(mmp_scheduler_step(ref, i, e, xr, n), MMP_OK);
        mmp_array *eps = mmp_array_wrap(MMP_TYPE_F32, 3, x->dims, e);
        char opts[96];
        snprintf(opts, sizeof opts, "kind=euler_a,steps=%d,index=%d,seed=1234", N, i);
        mmp_stage *s = step_stage(r, NULL, opts);
        if (!s) fail_msg("%s", mmp_last_error());
        const mmp_array *in[4] = { x, eps, NULL, NULL };
        mmp_array *out[1] = { NULL };
        assert_int_equal(mmp_stage_run(s, in, out), MMP_OK);
        assert_memory_equal(out[0]->data, xr, sizeof xr);
        mmp_array_free(x);
        mmp_array_free(eps);
        mmp_stage_free(s);
        x = out[0];
    }
    mmp_array_free(x);
    mmp_scheduler_free(ref);
    mmp_registry_free(r);
}

static void test_step_bad(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    assert_null(step_stage(r, NULL, NULL));                                     /* options required */
    assert_non_null(strstr(mmp_last_error(), "kind="));
    assert_null(step_stage(r, NULL, "kind=ddim,steps=4,index=4"));              /* index past the end */
    assert_non_null(strstr(mmp_last_error(), "index=4"));
    assert_null(step_stage(r, NULL, "kind=heun,steps=4,index=0"));
    assert_non_null(strstr(mmp_last_error(), "heun"));
    assert_null(step_stage(r, NULL, "kind=ddim,steps=0,index=0"));
    assert_null(step_stage(r, NULL, "kind=ddim,steps=10000,index=0"));
    assert_null(step_stage(r, NULL, "kind=ddim,steps=4,index=0,colour=blue"));
    assert_non_null(strstr(mmp_last_error(), "colour"));
    assert_null(step_stage(r, "/nonexistent/scheduler_config.json", "kind=ddim,steps=4,index=0"));
    /* dpmpp_2m past step 0 without its history */
    mmp_stage *s = step_stage(r, NULL, "kind=dpmpp_2m,steps=4,index=1");
    assert_non_null(s);
    float v[16] = { 0 };
    mmp_array *x = mmp_array_wrap(MMP_TYPE_F32, 3, (int64_t[]){ 1, 4, 4 }, v);
    const mmp_array *in[4] = { x, x, NULL, NULL };
    mmp_array *out[1] = { NULL };
    assert_int_equal(mmp_stage_run(s, in, out), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "prev_sample"));
    const mmp_array *in2[4] = { x, x, x, NULL };
    assert_int_equal(mmp_stage_run(s, in2, out), MMP_ERR_INVALID_ARG);
    mmp_stage_free(s);
    mmp_array_free(x);
    mmp_registry_free(r);
}

/* generator.sample = the golden loop (the schedulers' configs: Euler's case uses leading spacing) */
static void test_sample_golden(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/txt2img_loop/io.safetensors"));
    assert_non_null(st);
    mmp_array *cond = io_arr(st, "cond"), *uncond = io_arr(st, "uncond"), *x0 = io_arr(st, "latents_init");
    const char *names[3] = { "ddim", "euler", "dpmpp_2m" };
    const char *opts[3] = { "sampler=ddim,steps=6,cfg=7.5", "sampler=euler,steps=6,cfg=7.5,spacing=leading", "sampler=dpmpp_2m,steps=6,cfg=7.5" };
    char unet[1024], vae[1024];
    snprintf(unet, sizeof unet, "%s", mmpt_data("gen/unet"));
    snprintf(vae, sizeof vae, "%s", mmpt_data("gen/vae"));
    for (int k = 0; k < 3; k++) {
        mmp_stage_params sp = mmp_stage_params_default();
        sp.model_path = unet;
        sp.aux_path = vae;
        sp.options = opts[k];
        sp.n_threads = 2;
        mmp_stage *s = mmp_stage_new(mmp_registry_find(r, "generator.sample"), &sp);
        if (!s) fail_msg("%s", mmp_last_error());
        const mmp_array *in[3] = { cond, uncond, x0 };
        mmp_array *out[2] = { NULL, NULL };
        if (mmp_stage_run(s, in, out) != MMP_OK) fail_msg("%s: %s", names[k], mmp_last_error());
        char key[64];
        snprintf(key, sizeof key, "%s.latents_final", names[k]);
        mmp_array *lref = io_arr(st, key);
        snprintf(key, sizeof key, "%s.image", names[k]);
        mmp_array *iref = io_arr(st, key);
        assert_int_equal(mmp_array_nelements(out[1]), mmp_array_nelements(iref));
        double e = mmpt_rel_l2(out[0]->data, lref->data, (size_t)mmp_array_nelements(lref)), mae = 0;
        const float *a = out[1]->data, *b = iref->data;
        for (int64_t i = 0; i < mmp_array_nelements(iref); i++) mae += fabs((double)a[i] - b[i]);
        mae /= (double)mmp_array_nelements(iref);
        printf("# generator.sample %s: latents relative error %.3g, image MAE %.3g (x255 = %.4f)\n", names[k], e, mae, mae * 255);
        if (!(e <= 1e-3)) fail_msg("%s: latents %.3g > 1e-3", names[k], e);
        if (!(mae <= 1.0 / 255)) fail_msg("%s: image MAE %.3g > 1/255", names[k], mae);
        mmp_array_free(lref); mmp_array_free(iref);
        mmp_array_free(out[0]); mmp_array_free(out[1]);
        mmp_stage_free(s);
    }

    /* seeded noise instead of latents_init; the same seed gives the same image */
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = unet;
    sp.aux_path = vae;
    sp.options = "steps=2,seed=5,size=32x32";
    mmp_stage *s = mmp_stage_new(mmp_registry_find(r, "generator.sample"), &sp);
    assert_non_null(s);
    const mmp_array *in[3] = { cond, NULL, NULL };
    mmp_array *o1[2] = { 0 }, *o2[2] = { 0 };
    assert_int_equal(mmp_stage_run(s, in, o1), MMP_OK);
    assert_int_equal(mmp_stage_run(s, in, o2), MMP_OK);
    assert_int_equal(o1[1]->dims[1], 32);
    assert_memory_equal(o1[1]->data, o2[1]->data, mmp_array_nbytes(o1[1]));
    for (int i = 0; i < 2; i++) { mmp_array_free(o1[i]); mmp_array_free(o2[i]); }
    mmp_stage_free(s);

    /* bad: no VAE, size not a multiple, uncond of another length, wrong width */
    sp.aux_path = NULL;
    assert_null(mmp_stage_new(mmp_registry_find(r, "generator.sample"), &sp));
    assert_non_null(strstr(mmp_last_error(), "aux="));
    sp.aux_path = vae;
    sp.options = "steps=2,size=30x32";
    s = mmp_stage_new(mmp_registry_find(r, "generator.sample"), &sp);
    assert_non_null(s);
    assert_int_equal(mmp_stage_run(s, in, o1), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "30x32"));
    mmp_array *short_unc = mmp_array_new(MMP_TYPE_F32, 2, (int64_t[]){ 3, 32 });
    const mmp_array *in2[3] = { cond, short_unc, x0 };
    assert_int_equal(mmp_stage_run(s, in2, o1), MMP_ERR_SHAPE);
    mmp_array *wide = mmp_array_new(MMP_TYPE_F32, 2, (int64_t[]){ 7, 48 });
    const mmp_array *in3[3] = { wide, NULL, x0 };
    assert_int_equal(mmp_stage_run(s, in3, o1), MMP_ERR_SHAPE);   /* the port says [*, 32] */
    assert_non_null(strstr(mmp_last_error(), "48"));
    mmp_array_free(short_unc);
    mmp_array_free(wide);
    mmp_stage_free(s);
    sp.options = "sampler=plms";
    assert_null(mmp_stage_new(mmp_registry_find(r, "generator.sample"), &sp));
    sp.options = "cfg=-1";
    assert_null(mmp_stage_new(mmp_registry_find(r, "generator.sample"), &sp));

    mmp_array_free(cond); mmp_array_free(uncond); mmp_array_free(x0);
    mmp_safetensors_free(st);
    mmp_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_ddim),
        cmocka_unit_test(test_step_euler),
        cmocka_unit_test(test_step_dpmpp_2m),
        cmocka_unit_test(test_step_euler_a),
        cmocka_unit_test(test_step_bad),
        cmocka_unit_test(test_sample_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
