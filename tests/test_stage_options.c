/* Stage options through the one shared parser (mmp__opts_parse: "key=value,key=value", "\,"
 * a comma inside a value) for projector.output, projector.qformer, backbone.llm, the generator
 * kinds (unet, vae_decode, taesd_decode, vae_encode), prompt.embed and preprocess.image. Each:
 *  - empty items, an empty value and "auto" are accepted and keep the default: the stage gives
 *    bit for bit the output of the stage made without options;
 *  - an explicit value still works (it changes the output, or gives the same as its default);
 *  - an escaped comma reaches the value ("heads=4\,5" is one value "4,5", named in the message);
 *  - an unknown option and a bad value give a message with the kind, the option, the value and
 *    the known options;
 *  - a lone trailing backslash gives the parser's message. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static mmp_stage *mk(const mmp_registry *r, const char *kind, const char *model, const char *opts) {
    const mmp_stage_kind *k = mmp_registry_find(r, kind);
    if (!k) fail_msg("%s: %s", kind, mmp_last_error());
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = model;
    sp.options = opts;
    sp.n_threads = 1;
    return mmp_stage_new(k, &sp);
}

static mmp_stage *mk_ok(const mmp_registry *r, const char *kind, const char *model, const char *opts) {
    mmp_stage *s = mk(r, kind, model, opts);
    if (!s) fail_msg("%s with options '%s': %s", kind, opts ? opts : "(none)", mmp_last_error());
    return s;
}

/* creating the stage fails with a message that names every needle */
static void expect_fail(const mmp_registry *r, const char *kind, const char *model, const char *opts,
                        const char *const *needles) {
    mmp_stage *s = mk(r, kind, model, opts);
    if (s) {
        mmp_stage_free(s);
        fail_msg("%s with options '%s' was accepted", kind, opts);
    }
    mmpt_expect_error_mentions(needles);
}

/* the common failures: a lone trailing backslash, an unknown option */
static void expect_common_fail(const mmp_registry *r, const char *kind, const char *model, const char *trailing_bs) {
    expect_fail(r, kind, model, trailing_bs, (const char *[]){ kind, "lone backslash", NULL });
    expect_fail(r, kind, model, "bogus=1", (const char *[]){ kind, "unknown option", "bogus", NULL });
}

/* run a stage and return output `which` (the others are freed) */
static mmp_array *run_out(mmp_stage *s, const mmp_array *const *ins, int which) {
    mmp_array *outs[8] = { NULL };
    int n = mmp_stage_n_outputs(s);
    assert_true(n <= 8 && which < n);
    if (mmp_stage_run(s, ins, outs) != MMP_OK) fail_msg("%s: %s", mmp_stage_get_kind(s)->name, mmp_last_error());
    for (int i = 0; i < n; i++)
        if (i != which) mmp_array_free(outs[i]);
    return outs[which];
}

static bool same(const mmp_array *a, const mmp_array *b) {
    if (a->type != b->type || a->n_dims != b->n_dims) return false;
    for (int i = 0; i < a->n_dims; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return memcmp(a->data, b->data, mmp_array_nbytes(a)) == 0;
}

/* stage(kind, model, opts) run on ins gives bit for bit `want` (output `which`) */
static void expect_same_output(const mmp_registry *r, const char *kind, const char *model, const char *opts,
                               const mmp_array *const *ins, int which, const mmp_array *want) {
    mmp_stage *s = mk_ok(r, kind, model, opts);
    mmp_array *o = run_out(s, ins, which);
    if (!same(o, want)) fail_msg("%s: options '%s' changed the output", kind, opts ? opts : "(none)");
    mmp_array_free(o);
    mmp_stage_free(s);
}

static mmp_array *tensor_f32(const mmp_safetensors *st, const char *name, int n_dims, const int64_t *dims) {
    float *x = mmpt_st_f32(st, name, NULL);
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, n_dims, dims);
    assert_non_null(a);
    memcpy(a->data, x, mmp_array_nbytes(a));
    free(x);
    return a;
}

/* ---- projector.output ---- */

static void test_output(void **state) {
    (void)state;
    const char *K = "projector.output";
    mmp_registry *r = mmp_registry_new();
    char model[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("proj/output_projector"));
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("proj/output_projector/io.safetensors"));
    assert_non_null(io);
    const mmp_tensor_info *hi = mmp_safetensors_find(io, "signal_hidden");
    assert_non_null(hi);
    int64_t dh[2] = { hi->ne[1], 64 };
    mmp_array *h = tensor_f32(io, "signal_hidden", 2, dh);
    const mmp_array *ins[2] = { h, NULL };

    mmp_stage *s = mk_ok(r, K, model, "heads=4");
    mmp_array *want = run_out(s, ins, 0);
    mmp_stage_free(s);
    /* empty items, empty values, auto: the defaults */
    expect_same_output(r, K, model, ",heads=4,,norm_first=,eps=auto,act=,", ins, 0, want);
    expect_same_output(r, K, model, "heads=4,norm_first=auto,eps=,act=auto", ins, 0, want);
    /* an explicit value is applied (the golden is pre-norm: norm_first=0 differs) */
    s = mk_ok(r, K, model, "heads=4,norm_first=0");
    mmp_array *o = run_out(s, ins, 0);
    assert_false(same(o, want));
    mmp_array_free(o);
    mmp_stage_free(s);
    /* heads left empty is the default: from config.json, which this folder has not */
    expect_fail(r, K, model, "heads=", (const char *[]){ K, "heads=N", NULL });
    /* bad values name the option and the value; an escaped comma stays in the value */
    expect_fail(r, K, model, "heads=4\\,5", (const char *[]){ K, "heads=4,5", "1..4096", "known", NULL });
    expect_fail(r, K, model, "heads=0", (const char *[]){ K, "heads=0", NULL });
    expect_fail(r, K, model, "heads=4,act=swish", (const char *[]){ K, "act=swish", "relu or gelu", NULL });
    expect_fail(r, K, model, "heads=4,norm_first=2", (const char *[]){ K, "norm_first=2", NULL });
    expect_fail(r, K, model, "heads=4,eps=1.5", (const char *[]){ K, "eps=1.5", NULL });
    expect_fail(r, K, model, "heads=4,eps=x", (const char *[]){ K, "eps=x", NULL });
    expect_same_output(r, K, model, "heads=4,norm_first", ins, 0, want);   /* bare: an empty value, the default */
    expect_common_fail(r, K, model, "heads=4\\");
    expect_fail(r, K, model, "heads=4,bogus=1", (const char *[]){ K, "bogus", "heads=N, norm_first=0|1, eps=F, act=relu|gelu", NULL });
    mmp_array_free(want);
    mmp_array_free(h);
    mmp_safetensors_free(io);
    mmp_registry_free(r);
}

/* ---- projector.qformer ---- */

static void test_qformer(void **state) {
    (void)state;
    const char *K = "projector.qformer";
    mmp_registry *r = mmp_registry_new();
    char model[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("proj/blip2_qformer"));
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("proj/blip2_qformer/io.safetensors"));
    assert_non_null(io);
    const mmp_tensor_info *e = mmp_safetensors_find(io, "encoder_hidden_states"), *q = mmp_safetensors_find(io, "query_embeds");
    assert_non_null(e);
    assert_non_null(q);
    int64_t di[2] = { e->ne[1], 48 }, dq[2] = { q->ne[1], 64 };
    mmp_array *img = tensor_f32(io, "encoder_hidden_states", 2, di), *qr = tensor_f32(io, "query_embeds", 2, dq);
    const mmp_array *ins[2] = { img, qr };

    mmp_stage *s = mk_ok(r, K, model, NULL);
    mmp_array *want = run_out(s, ins, 0);
    mmp_stage_free(s);
    expect_same_output(r, K, model, "heads=,project=", ins, 0, want);
    expect_same_output(r, K, model, ",heads=auto,,project=auto,", ins, 0, want);
    expect_same_output(r, K, model, "project=1", ins, 0, want);
    /* heads=1 (the config says more) is applied: another attention split, another output */
    s = mk_ok(r, K, model, "heads=1");
    mmp_array *o = run_out(s, ins, 0);
    assert_false(same(o, want));
    mmp_array_free(o);
    mmp_stage_free(s);
    expect_fail(r, K, model, "heads=4\\,5", (const char *[]){ K, "heads=4,5", "1..4096", NULL });
    expect_fail(r, K, model, "heads=0", (const char *[]){ K, "heads=0", NULL });
    expect_fail(r, K, model, "project=yes", (const char *[]){ K, "project=yes", "0 or 1", NULL });
    expect_common_fail(r, K, model, "project=0\\");
    expect_fail(r, K, model, "heads=4,bogus=1", (const char *[]){ K, "bogus", "heads=N, project=0|1", NULL });
    mmp_array_free(want);
    mmp_array_free(img);
    mmp_array_free(qr);
    mmp_safetensors_free(io);
    mmp_registry_free(r);
}

/* ---- backbone.llm ---- */

static void test_llm(void **state) {
    (void)state;
    const char *K = "backbone.llm";
    mmp_registry *r = mmp_registry_new();
    char model[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("llm/llama"));
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("llm/llama/io.safetensors"));
    assert_non_null(io);
    int64_t n;
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n);
    mmp_array *tok = mmp_array_wrap(MMP_TYPE_I32, 1, &n, ids);
    const mmp_array *ins[2] = { tok, NULL };

    mmp_stage *s = mk_ok(r, K, model, NULL);
    mmp_array *want = run_out(s, ins, 1);   /* logits */
    mmp_stage_free(s);
    expect_same_output(r, K, model, "kv=", ins, 1, want);
    expect_same_output(r, K, model, ",kv=auto,", ins, 1, want);
    expect_same_output(r, K, model, "kv=f32", ins, 1, want);
    /* kv=f16: another cache type, close to but (with more than one position) not the f32 logits */
    s = mk_ok(r, K, model, "kv=f16");
    mmp_array *o = run_out(s, ins, 1);
    printf("  backbone.llm kv=f16 vs f32: rel L2 %.3g\n", mmpt_rel_l2(o->data, want->data, (size_t)mmp_array_nelements(want)));
    assert_false(same(o, want));
    assert_true(mmpt_rel_l2(o->data, want->data, (size_t)mmp_array_nelements(want)) <= 1e-2);
    mmp_array_free(o);
    mmp_stage_free(s);
    expect_fail(r, K, model, "kv=q8", (const char *[]){ K, "kv=q8", "f32 or f16", NULL });
    expect_fail(r, K, model, "kv=f16\\,f32", (const char *[]){ K, "kv=f16,f32", NULL });
    expect_common_fail(r, K, model, "kv=f16\\");
    expect_fail(r, K, model, "kv=f16,bogus=1", (const char *[]){ K, "bogus", "kv=f32|f16", NULL });
    mmp_array_free(want);
    mmp_array_free(tok);
    free(ids);
    mmp_safetensors_free(io);
    mmp_registry_free(r);
}

/* ---- generator kinds ---- */

static void test_generators(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    char unet[1024], vae[1024], taesd[1024];
    snprintf(unet, sizeof unet, "%s", mmpt_data("gen/unet"));
    snprintf(vae, sizeof vae, "%s", mmpt_data("gen/vae"));
    snprintf(taesd, sizeof taesd, "%s", mmpt_data("gen/taesd_tiny"));

    /* generator.unet knows no options: empty items are nothing, any option is unknown */
    mmp_stage_free(mk_ok(r, "generator.unet", unet, ",,"));
    expect_fail(r, "generator.unet", unet, "raw", (const char *[]){ "generator.unet", "unknown option 'raw'", "none known", NULL });
    expect_fail(r, "generator.unet", unet, "raw\\", (const char *[]){ "generator.unet", "lone backslash", NULL });

    /* generator.vae_decode: raw=auto / raw=0 / empty items = the default; raw = raw=1 = the
     * decoder as is (the golden's `decoded`) */
    const char *K = "generator.vae_decode";
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("gen/vae/io.safetensors"));
    assert_non_null(io);
    int64_t dl[3] = { 4, 8, 8 };
    mmp_array *lat = tensor_f32(io, "latents", 3, dl);
    const mmp_array *ins[1] = { lat };
    mmp_stage *s = mk_ok(r, K, vae, NULL);
    mmp_array *want = run_out(s, ins, 0);
    mmp_stage_free(s);
    expect_same_output(r, K, vae, "raw=auto", ins, 0, want);
    expect_same_output(r, K, vae, ",raw=0,", ins, 0, want);
    s = mk_ok(r, K, vae, "raw");
    mmp_array *raw = run_out(s, ins, 0);
    mmp_stage_free(s);
    assert_false(same(raw, want));
    /* raw: the decoder as is, on latents not divided by scaling_factor (config.json: 0.18215):
     * on latents / 0.18215 it is the golden's `decoded` */
    mmp_array *lat_u = tensor_f32(io, "latents", 3, dl);
    for (int i = 0; i < 4 * 8 * 8; i++) ((float *)lat_u->data)[i] /= 0.18215f;
    const mmp_array *ins_u[1] = { lat_u };
    s = mk_ok(r, K, vae, "raw=1");
    mmp_array *raw_u = run_out(s, ins_u, 0);
    mmp_stage_free(s);
    float *dec_ref = mmpt_st_f32(io, "decoded", NULL);
    printf("  generator.vae_decode raw=1 vs golden decoded: max abs %.3g\n", mmpt_max_abs(raw_u->data, dec_ref, 3 * 32 * 32));
    assert_true(mmpt_max_abs(raw_u->data, dec_ref, 3 * 32 * 32) < 1e-4);
    mmp_array_free(raw_u);
    mmp_array_free(lat_u);
    expect_same_output(r, K, vae, "raw=1", ins, 0, raw);
    expect_same_output(r, K, vae, "raw=0,raw", ins, 0, raw);    /* the bare flag turns it on */
    expect_same_output(r, K, vae, "raw=1,raw=", ins, 0, raw);   /* an empty value keeps what was set */
    expect_same_output(r, K, vae, "raw=", ins, 0, want);        /* ... or the default */
    expect_fail(r, K, vae, "raw=2", (const char *[]){ K, "raw=2", "0 or 1", "known: raw", NULL });
    expect_fail(r, K, vae, "raw=1\\,0", (const char *[]){ K, "raw=1,0", NULL });
    expect_common_fail(r, K, vae, "raw=1\\");
    free(dec_ref);
    mmp_array_free(raw);
    mmp_array_free(want);
    mmp_array_free(lat);
    mmp_safetensors_free(io);

    /* generator.taesd_decode */
    K = "generator.taesd_decode";
    io = mmp_safetensors_open(mmpt_data("gen/taesd_tiny/io.safetensors"));
    assert_non_null(io);
    lat = tensor_f32(io, "latents", 3, dl);
    ins[0] = lat;
    s = mk_ok(r, K, taesd, NULL);
    want = run_out(s, ins, 0);
    mmp_stage_free(s);
    expect_same_output(r, K, taesd, "raw=auto,", ins, 0, want);
    s = mk_ok(r, K, taesd, "raw");
    raw = run_out(s, ins, 0);
    mmp_stage_free(s);
    assert_false(same(raw, want));
    expect_same_output(r, K, taesd, "raw=1", ins, 0, raw);
    expect_fail(r, K, taesd, "raw=yes", (const char *[]){ K, "raw=yes", NULL });
    expect_common_fail(r, K, taesd, "\\");
    mmp_array_free(raw);
    mmp_array_free(want);
    mmp_array_free(lat);
    mmp_safetensors_free(io);

    /* generator.vae_encode: the same parser */
    K = "generator.vae_encode";
    mmp_stage_free(mk_ok(r, K, vae, "raw=,raw=auto,,"));
    mmp_stage_free(mk_ok(r, K, vae, "raw=0"));
    expect_fail(r, K, vae, "raw=-1", (const char *[]){ K, "raw=-1", NULL });
    expect_common_fail(r, K, vae, "raw=0\\");
    mmp_registry_free(r);
}

/* ---- prompt.embed ---- */

static void test_prompt_embed(void **state) {
    (void)state;
    const char *K = "prompt.embed";
    mmp_registry *r = mmp_registry_new();
    char model[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("pipe/llava_mixtral"));   /* image_token_index 255, n_embd 64 */
    int32_t ids[6] = { 1, 255, 17, 255, 9, 2 };
    int64_t nt = 6, dm[2] = { 2, 64 };
    mmp_array *tok = mmp_array_wrap(MMP_TYPE_I32, 1, &nt, ids);
    mmp_array *media = mmp_array_new(MMP_TYPE_F32, 2, dm);
    assert_non_null(media);
    mmpt_rand_fill(media->data, 2 * 64, 7, -1.0f, 1.0f);
    const mmp_array *ins[2] = { tok, media };

    mmp_stage *s = mk_ok(r, K, model, NULL);
    mmp_array *want = run_out(s, ins, 0);
    mmp_stage_free(s);
    expect_same_output(r, K, model, "marker=", ins, 0, want);
    expect_same_output(r, K, model, ",marker=auto,,", ins, 0, want);
    expect_same_output(r, K, model, "marker=255", ins, 0, want);
    /* another marker is applied: id 17 appears once, the media has two rows */
    s = mk_ok(r, K, model, "marker=17");
    mmp_array *outs[1] = { NULL };
    assert_int_equal(mmp_stage_run(s, ins, outs), MMP_ERR_SHAPE);
    mmpt_expect_error_mentions((const char *[]){ K, "1 marker tokens", "id 17", NULL });
    mmp_stage_free(s);
    expect_fail(r, K, model, "marker=-1", (const char *[]){ K, "marker=-1", "token id", NULL });
    expect_fail(r, K, model, "marker=x", (const char *[]){ K, "marker=x", NULL });
    expect_fail(r, K, model, "marker=99999999999", (const char *[]){ K, "marker=99999999999", NULL });
    expect_fail(r, K, model, "marker=1\\,2", (const char *[]){ K, "marker=1,2", NULL });
    expect_common_fail(r, K, model, "marker=3\\");
    expect_fail(r, K, model, "bogus=1", (const char *[]){ K, "bogus", "marker=ID", NULL });
    mmp_array_free(want);
    mmp_array_free(media);
    mmp_array_free(tok);
    mmp_registry_free(r);
}

/* ---- preprocess.image ---- */

static void test_preprocess(void **state) {
    (void)state;
    const char *K = "preprocess.image";
    mmp_registry *r = mmp_registry_new();
    char model[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("mm/llava_mixtral"));
    /* a non-square 8-bit image as the CLI reads one: u8 / 255 */
    int64_t di[3] = { 3, 24, 40 };
    mmp_array *img = mmp_array_new(MMP_TYPE_F32, 3, di);
    assert_non_null(img);
    float *x = img->data;
    mmpt_rand_fill(x, 3 * 24 * 40, 11, 0.0f, 256.0f);
    for (int i = 0; i < 3 * 24 * 40; i++) x[i] = (float)(int)(x[i] < 255.0f ? x[i] : 255.0f) / 255.0f;
    const mmp_array *ins[1] = { img };

    mmp_stage *s = mk_ok(r, K, model, NULL);
    mmp_array *want = run_out(s, ins, 0);
    mmp_stage_free(s);
    expect_same_output(r, K, model, "pad=", ins, 0, want);
    expect_same_output(r, K, model, ",pad=auto,", ins, 0, want);
    /* pad=0 and pad=1 differ on a non-square image; the default is one of them */
    s = mk_ok(r, K, model, "pad=0");
    mmp_array *p0 = run_out(s, ins, 0);
    mmp_stage_free(s);
    s = mk_ok(r, K, model, "pad=1");
    mmp_array *p1 = run_out(s, ins, 0);
    mmp_stage_free(s);
    assert_false(same(p0, p1));
    assert_true(same(want, p0) || same(want, p1));
    expect_fail(r, K, model, "pad=2", (const char *[]){ K, "pad=2", "pad=auto|0|1", NULL });
    expect_fail(r, K, model, "pad=1\\,0", (const char *[]){ K, "pad=1,0", NULL });
    expect_common_fail(r, K, model, "pad=1\\");
    expect_fail(r, K, model, "bogus=1", (const char *[]){ K, "bogus", "pad=auto|0|1", NULL });
    mmp_array_free(p0);
    mmp_array_free(p1);
    mmp_array_free(want);
    mmp_array_free(img);
    mmp_registry_free(r);
}

/* ---- a pipeline parameter left "" reaches the stage as an empty value ---- */

static void test_pipeline_empty_param(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    char text[2048];
    snprintf(text, sizeof text,
             "pipeline opts\n"
             "param pad = \"\"\n"
             "stage pre preprocess.image model=%s options=pad=${pad}\n"
             "input image -> pre.image\n"
             "output pixels <- pre.pixels\n",
             mmpt_data("mm/llava_mixtral"));
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(text, "opts.pipe");
    if (!d) fail_msg("%s", mmp_last_error());
    mmp_pipeline *p = mmp_pipeline_new(d, r, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    mmp_pipeline_free(p);
    /* a value with a comma is escaped by the substitution: one bad value, not two options */
    assert_int_equal(mmp_pipeline_desc_set_param(d, "pad", "1,bogus=2"), MMP_OK);
    assert_null(mmp_pipeline_new(d, r, NULL));
    mmpt_expect_error_mentions((const char *[]){ "preprocess.image", "pad=1,bogus=2", NULL });
    mmp_pipeline_desc_free(d);
    mmp_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output),
        cmocka_unit_test(test_qformer),
        cmocka_unit_test(test_llm),
        cmocka_unit_test(test_generators),
        cmocka_unit_test(test_prompt_embed),
        cmocka_unit_test(test_preprocess),
        cmocka_unit_test(test_pipeline_empty_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
