/* Schedulers against diffusers (golden `schedulers`): timesteps identical, init_noise_sigma,
 * and every step of a fixed fake model eps = 0.3 * scale_model_input(x) + 0.1 cos(t / 100)
 * within 1e-5 relative. Plus the spacings, Karras sigmas, Euler a reproducibility and bad
 * input. */
#include "testutil.h"
#include "mmpipe/diffusion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tensor of the io file as float (F32 or I64 converted). Caller frees. */
static float *io_tensor(const mmp_safetensors *st, const char *name, int64_t *n_out) {
    const mmp_tensor_info *ti = mmp_safetensors_find(st, name);
    if (!ti) fail_msg("missing tensor %s", name);
    int64_t n = 1;
    for (int i = 0; i < ti->n_dims; i++) n *= ti->ne[i];
    float *out = malloc((size_t)n * sizeof(float));
    assert_non_null(out);
    if (ti->type == MMP_TYPE_F32) {
        memcpy(out, ti->data, (size_t)n * 4);
    } else if (ti->type == MMP_TYPE_I64) {
        for (int64_t i = 0; i < n; i++) { int64_t v; memcpy(&v, (const char *)ti->data + i * 8, 8); out[i] = (float)v; }
    } else {
        fail_msg("unexpected type of %s", name);
    }
    if (n_out) *n_out = n;
    return out;
}

static void run_case(const char *name, enum mmp_sched_kind kind) {
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("gen/schedulers/io.safetensors"));
    assert_non_null(st);
    /* case.json was written by Python's json, which writes lambda_min_clipped as -Infinity (not
     * JSON): the helper turns that token into null (= "not clipped", the default). */
    mmp_json *cfg = mmpt_sched_case_json();
    mmp_sched_params p = mmp_sched_params_default(kind);
    if (mmp_sched_params_from_json(&p, cfg, name) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_scheduler *s = mmp_scheduler_new(&p);
    assert_non_null(s);
    char key[64];
    int64_t nt;
    snprintf(key, sizeof key, "%s.timesteps", name);
    float *ts = io_tensor(st, key, &nt);
    assert_int_equal(mmp_scheduler_set_timesteps(s, (int)nt), MMP_OK);
    assert_int_equal(mmp_scheduler_n_steps(s), nt);
    for (int i = 0; i < nt; i++) {
        if (mmp_scheduler_timestep(s, i) != (double)ts[i])
            fail_msg("%s: timestep %d is %g, expected %g", name, i, mmp_scheduler_timestep(s, i), (double)ts[i]);
    }
    snprintf(key, sizeof key, "%s.init_noise_sigma", name);
    float *ins = io_tensor(st, key, NULL);
    assert_true(fabs(mmp_scheduler_init_noise_sigma(s) - ins[0]) <= 1e-6 * fabs(ins[0]));
    int64_t n;
    snprintf(key, sizeof key, "%s.x0", name);
    float *x = io_tensor(st, key, &n);
    float *eps = malloc((size_t)n * sizeof(float));
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        double t = mmp_scheduler_timestep(s, i), sc = mmp_scheduler_input_scale(s, i);
        for (int64_t j = 0; j < n; j++) eps[j] = (float)(0.3 * (float)(x[j] * (float)sc) + 0.1 * cos(t / 100.0));
        assert_int_equal(mmp_scheduler_step(s, i, eps, x, n), MMP_OK);
        snprintf(key, sizeof key, "%s.x.%d", name, i);
        float *ref = io_tensor(st, key, NULL);
        double e = mmpt_rel_l2(x, ref, (size_t)n);
        if (e > worst) worst = e;
        if (!(e <= 1e-5)) fail_msg("%s step %d: relative error %.3g > 1e-5", name, i, e);
        free(ref);
    }
    printf("# %s: %lld steps, worst step relative error %.3g\n", name, (long long)nt, worst);
    free(eps); free(x); free(ins); free(ts);
    mmp_scheduler_free(s);
    mmp_json_free(cfg);
    mmp_safetensors_free(st);
}

static void test_ddim(void **state) { (void)state; run_case("ddim", MMP_SCHED_DDIM); }
static void test_euler(void **state) { (void)state; run_case("euler", MMP_SCHED_EULER); }
static void test_dpmpp_2m(void **state) { (void)state; run_case("dpmpp_2m", MMP_SCHED_DPMPP_2M); }

/* Spacings as diffusers' formulas give them (hand-computed from the definitions). */
static void test_spacings(void **state) {
    (void)state;
    mmp_sched_params p = mmp_sched_params_default(MMP_SCHED_DDIM);
    p.spacing = MMP_SPACING_TRAILING;
    mmp_scheduler *s = mmp_scheduler_new(&p);
    assert_int_equal(mmp_scheduler_set_timesteps(s, 4), MMP_OK);
    /* round(arange(1000, 0, -250)) - 1 */
    assert_true(mmp_scheduler_timestep(s, 0) == 999 && mmp_scheduler_timestep(s, 1) == 749 &&
                mmp_scheduler_timestep(s, 2) == 499 && mmp_scheduler_timestep(s, 3) == 249);
    mmp_scheduler_free(s);
    p.spacing = MMP_SPACING_LINSPACE;
    s = mmp_scheduler_new(&p);
    assert_int_equal(mmp_scheduler_set_timesteps(s, 4), MMP_OK);
    /* round(linspace(0, 999, 4))[::-1] = 999, 666, 333, 0 */
    assert_true(mmp_scheduler_timestep(s, 0) == 999 && mmp_scheduler_timestep(s, 1) == 666 &&
                mmp_scheduler_timestep(s, 2) == 333 && mmp_scheduler_timestep(s, 3) == 0);
    mmp_scheduler_free(s);
    p.spacing = MMP_SPACING_LEADING;
    s = mmp_scheduler_new(&p);
    assert_int_equal(mmp_scheduler_set_timesteps(s, 4), MMP_OK);
    assert_true(mmp_scheduler_timestep(s, 0) == 751 && mmp_scheduler_timestep(s, 3) == 1);
    mmp_scheduler_free(s);
}

/* Karras sigmas: DPM++ 2M and Euler run, sigmas decrease, the last step lands on x0. */
static void test_karras_and_ancestral(void **state) {
    (void)state;
    enum mmp_sched_kind kinds[3] = { MMP_SCHED_DPMPP_2M, MMP_SCHED_EULER, MMP_SCHED_EULER_A };
    for (int k = 0; k < 3; k++) {
        mmp_sched_params p = mmp_sched_params_default(kinds[k]);
        p.use_karras_sigmas = true;
        p.seed = 42;
        mmp_scheduler *s = mmp_scheduler_new(&p);
        assert_int_equal(mmp_scheduler_set_timesteps(s, 10), MMP_OK);
        for (int i = 1; i < 10; i++) assert_true(mmp_scheduler_timestep(s, i) < mmp_scheduler_timestep(s, i - 1));
        assert_true(mmp_scheduler_timestep(s, 0) >= 990 && mmp_scheduler_timestep(s, 9) <= 30);
        float x1[16], x2[16], e[16];
        for (int rep = 0; rep < 2; rep++) {
            float *x = rep ? x2 : x1;
            assert_int_equal(mmp_scheduler_set_timesteps(s, 10), MMP_OK);
            mmp_randn(7, x, 16);
            for (int j = 0; j < 16; j++) x[j] *= (float)mmp_scheduler_init_noise_sigma(s);
            for (int i = 0; i < 10; i++) {
                for (int j = 0; j < 16; j++) e[j] = 0.5f * x[j] * (float)mmp_scheduler_input_scale(s, i);
                assert_int_equal(mmp_scheduler_step(s, i, e, x, 16), MMP_OK);
            }
            for (int j = 0; j < 16; j++) assert_true(isfinite(x[j]));
        }
        /* same seed, same numbers (Euler a reseeds on set_timesteps) */
        assert_memory_equal(x1, x2, sizeof x1);
        mmp_scheduler_free(s);
    }
}

static void test_bad_input(void **state) {
    (void)state;
    mmp_sched_params p = mmp_sched_params_default(MMP_SCHED_EULER);
    mmp_scheduler *s = mmp_scheduler_new(&p);
    assert_int_equal(mmp_scheduler_set_timesteps(s, 0), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "0 steps"));
    assert_int_equal(mmp_scheduler_set_timesteps(s, 10000), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "10000"));
    float x[4] = {0}, e[4] = {0};
    assert_int_equal(mmp_scheduler_step(s, 0, e, x, 4), MMP_ERR_INVALID_ARG);  /* no set_timesteps */
    assert_int_equal(mmp_scheduler_set_timesteps(s, 5), MMP_OK);
    assert_int_equal(mmp_scheduler_step(s, 1, e, x, 4), MMP_ERR_INVALID_ARG);  /* out of order */
    mmp_scheduler_free(s);
    /* DDIM leading with steps_offset 1 and 1000 steps would need timestep 1000 */
    p = mmp_sched_params_default(MMP_SCHED_DDIM);
    s = mmp_scheduler_new(&p);
    assert_int_equal(mmp_scheduler_set_timesteps(s, 1000), MMP_ERR_INVALID_ARG);
    mmp_scheduler_free(s);
    const char *bad = "{\"beta_schedule\": \"cosine_fancy\"}";
    mmp_json *j = mmp_json_parse(bad, strlen(bad), "scheduler_config.json");
    assert_non_null(j);
    assert_int_equal(mmp_sched_params_from_json(&p, j, ""), MMP_ERR_UNSUPPORTED);
    assert_non_null(strstr(mmp_last_error(), "cosine_fancy"));
    mmp_json_free(j);
    mmp_scheduler_free(NULL);
    assert_int_equal(mmp_sched_kind_from_name("dpmpp_2m"), MMP_SCHED_DPMPP_2M);
    assert_int_equal(mmp_sched_kind_from_name("nope"), MMP_SCHED_COUNT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ddim),
        cmocka_unit_test(test_euler),
        cmocka_unit_test(test_dpmpp_2m),
        cmocka_unit_test(test_spacings),
        cmocka_unit_test(test_karras_and_ancestral),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
