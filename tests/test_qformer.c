/* BLIP-2 Q-Former (projectors/qformer.c) against golden `blip2_qformer` (transformers
 * Blip2QFormerModel), the full-BLIP-2 naming (qformer. prefix, query_tokens,
 * language_projection), the `projector.qformer` stage, and bad input. */
#include "testutil.h"
#include "mmpipe/projector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_QF "proj/blip2_qformer"

typedef struct io {
    mmp_safetensors *st;
    const float *query, *image, *ref;  /* [8, 64], [17, 48], [8, 64] */
    int64_t n_query, n_img;
} io;

static void io_open(io *c) {
    c->st = mmp_safetensors_open(mmpt_data(DIR_QF "/io.safetensors"));
    assert_non_null(c->st);
    const mmp_tensor_info *q = mmp_safetensors_find(c->st, "query_embeds");
    const mmp_tensor_info *e = mmp_safetensors_find(c->st, "encoder_hidden_states");
    const mmp_tensor_info *r = mmp_safetensors_find(c->st, "last_hidden_state");
    assert_non_null(q);
    assert_non_null(e);
    assert_non_null(r);
    assert_int_equal(q->type, MMP_TYPE_F32);
    assert_true((uintptr_t)q->data % 4 == 0 && (uintptr_t)e->data % 4 == 0 && (uintptr_t)r->data % 4 == 0);
    c->query = q->data;
    c->image = e->data;
    c->ref = r->data;
    c->n_query = q->ne[1];
    c->n_img = e->ne[1];
    assert_int_equal(q->ne[0], 64);
    assert_int_equal(e->ne[0], 48);
}

/* ---- rewriting the golden model into a temp folder ---- */

enum { X_NONE = 0, X_DROP = 1, X_RESHAPE = 2 };

typedef struct rewrite {
    const char *prefix;        /* prepended to every name */
    const char *drop;          /* tensor (original name) to leave out */
    const char *reshape;       /* tensor (original name) replaced by random data of ne below */
    int64_t reshape_ne[4];
    int reshape_dims;
    bool add_blip2;            /* add query_tokens (= golden query_embeds) and language_projection */
    int64_t query_width;       /* width of query_tokens (64 unless testing a mismatch) */
    const char *config;        /* config.json text or NULL for none */
    int half;                  /* 1: store every tensor as F16, 2: as BF16, -1 / -2: F32 rounded through F16 / BF16 */
} rewrite;

#define PROJ_DIM 40
static float g_proj_w[PROJ_DIM * 64], g_proj_b[PROJ_DIM];

static char *rewrite_model(const rewrite *rw) {
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data(DIR_QF "/model.safetensors"));
    assert_non_null(st);
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    assert_non_null(w);
    char name[256];
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(st); i++) {
        const mmp_tensor_info *ti = mmp_safetensors_tensor(st, i);
        if (rw->drop && !strcmp(ti->name, rw->drop)) continue;
        snprintf(name, sizeof name, "%s%s", rw->prefix ? rw->prefix : "", ti->name);
        if (rw->reshape && !strcmp(ti->name, rw->reshape)) {
            int64_t n = 1;
            for (int k = 0; k < rw->reshape_dims; k++) n *= rw->reshape_ne[k];
            float *d = malloc((size_t)n * sizeof(float));
            mmpt_rand_fill(d, (size_t)n, 5, -0.1f, 0.1f);
            assert_int_equal(mmp_safetensors_writer_add_ne(w, name, MMP_TYPE_F32, rw->reshape_dims, rw->reshape_ne, d), MMP_OK);
            free(d);
            continue;
        }
        if (rw->half) {
            int64_t n = ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3];
            const float *src = ti->data;
            uint16_t *h = malloc((size_t)n * 2);
            float *f = malloc((size_t)n * 4);
            for (int64_t j = 0; j < n; j++) {
                bool bf = rw->half == 2 || rw->half == -2;
                h[j] = bf ? mmp_fp32_to_bf16(src[j]) : mmp_fp32_to_fp16(src[j]);
                f[j] = bf ? mmp_bf16_to_fp32(h[j]) : mmp_fp16_to_fp32(h[j]);
            }
            enum mmp_type t = rw->half == 1 ? MMP_TYPE_F16 : rw->half == 2 ? MMP_TYPE_BF16 : MMP_TYPE_F32;
            assert_int_equal(mmp_safetensors_writer_add_ne(w, name, t, ti->n_dims, ti->ne, rw->half > 0 ? (void *)h : (void *)f), MMP_OK);
            free(h);
            free(f);
            continue;
        }
        assert_int_equal(mmp_safetensors_writer_add_ne(w, name, ti->type, ti->n_dims, ti->ne, ti->data), MMP_OK);
    }
    if (rw->add_blip2) {
        io c;
        io_open(&c);
        int64_t qw = rw->query_width ? rw->query_width : 64;
        float *qt = calloc((size_t)(qw * c.n_query), sizeof(float));
        for (int64_t r = 0; r < c.n_query; r++)
            memcpy(qt + r * qw, c.query + r * 64, (size_t)(qw < 64 ? qw : 64) * sizeof(float));
        int64_t qne[3] = {qw, c.n_query, 1};
        assert_int_equal(mmp_safetensors_writer_add_ne(w, "query_tokens", MMP_TYPE_F32, 3, qne, qt), MMP_OK);
        free(qt);
        mmp_safetensors_free(c.st);
        mmpt_rand_fill(g_proj_w, PROJ_DIM * 64, 77, -0.125f, 0.125f);
        mmpt_rand_fill(g_proj_b, PROJ_DIM, 78, -0.05f, 0.05f);
        int64_t pne[2] = {64, PROJ_DIM}, bne[1] = {PROJ_DIM};
        assert_int_equal(mmp_safetensors_writer_add_ne(w, "language_projection.weight", MMP_TYPE_F32, 2, pne, g_proj_w), MMP_OK);
        assert_int_equal(mmp_safetensors_writer_add_ne(w, "language_projection.bias", MMP_TYPE_F32, 1, bne, g_proj_b), MMP_OK);
    }
    char *dir = mmpt_make_temp_dir("qf");
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(w, p), MMP_OK);
    mmp_safetensors_writer_free(w);
    mmp_safetensors_free(st);
    if (rw->config) mmpt_write_text(dir, "config.json", rw->config);
    return dir;
}

static const char *BLIP2_CONFIG =
    "{\"architectures\": [\"Blip2ForConditionalGeneration\"], \"model_type\": \"blip-2\", \"num_query_tokens\": 8,\n"
    " \"qformer_config\": {\"num_attention_heads\": 4, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\",\n"
    "   \"hidden_size\": 64, \"cross_attention_frequency\": 1, \"encoder_hidden_size\": 48}}\n";

/* ---- golden ---- */

static void test_golden(void **state) {
    (void)state;
    io c;
    io_open(&c);
    mmp_qformer *q = mmp_qformer_load(mmpt_data(DIR_QF), NULL);
    if (!q) fail_msg("load: %s", mmp_last_error());
    const mmp_qformer_hparams *h = mmp_qformer_get_hparams(q);
    assert_int_equal(h->hidden_size, 64);
    assert_int_equal(h->encoder_hidden_size, 48);
    assert_int_equal(h->intermediate_size, 128);
    assert_int_equal(h->n_layers, 2);
    assert_int_equal(h->n_heads, 4);
    assert_int_equal(h->n_cross_layers, 2);
    assert_int_equal(h->n_query, 0);
    assert_int_equal(h->proj_dim, 0);
    assert_int_equal(h->act, MMP_UNARY_GELU);
    assert_true(h->layer_norm_eps == 1e-12f);
    float out[8 * 64];
    for (int th = 1; th <= 2; th++) {
        mmp_qformer_run_params rp = mmp_qformer_run_params_default();
        rp.n_threads = th;
        memset(out, 0, sizeof out);
        enum mmp_status st = mmp_qformer_run(q, c.image, c.n_img, c.query, c.n_query, out, &rp);
        if (st != MMP_OK) fail_msg("run: %s", mmp_last_error());
        double e = mmpt_rel_l2(out, c.ref, 8 * 64);
        printf("  blip2_qformer last_hidden_state rel L2 (%d thread%s): %.3g\n", th, th > 1 ? "s" : "", e);
        assert_true(e <= 1e-4);
    }
    /* no learned queries in this file: NULL queries is an error naming what to give */
    assert_int_equal(mmp_qformer_run(q, c.image, c.n_img, NULL, 0, out, NULL), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "query_tokens"));
    mmp_qformer_free(q);
    mmp_qformer_free(NULL);
    mmp_safetensors_free(c.st);
}

/* full BLIP-2 naming: qformer.* + query_tokens + language_projection, config with qformer_config */
static void test_blip2_names(void **state) {
    (void)state;
    rewrite rw = {.prefix = "qformer.", .add_blip2 = true, .config = BLIP2_CONFIG};
    char *dir = rewrite_model(&rw);
    io c;
    io_open(&c);
    mmp_qformer *q = mmp_qformer_load(dir, NULL);
    if (!q) fail_msg("load: %s", mmp_last_error());
    const mmp_qformer_hparams *h = mmp_qformer_get_hparams(q);
    assert_int_equal(h->n_query, 8);
    assert_int_equal(h->proj_dim, PROJ_DIM);
    assert_int_equal(h->n_heads, 4);
    assert_int_equal(mmp_qformer_out_dim(q, true), PROJ_DIM);
    assert_int_equal(mmp_qformer_out_dim(q, false), 64);

    /* learned queries (= the golden's query_embeds), no projection: the golden output */
    float hid[8 * 64], proj[8 * PROJ_DIM];
    mmp_qformer_run_params rp = mmp_qformer_run_params_default();
    rp.project = false;
    assert_int_equal(mmp_qformer_run(q, c.image, c.n_img, NULL, 0, hid, &rp), MMP_OK);
    double e = mmpt_rel_l2(hid, c.ref, 8 * 64);
    printf("  qformer.* names + query_tokens: rel L2 %.3g\n", e);
    assert_true(e <= 1e-4);

    /* with language_projection: against a scalar Linear over the golden hidden state */
    rp.project = true;
    assert_int_equal(mmp_qformer_run(q, c.image, c.n_img, NULL, 0, proj, &rp), MMP_OK);
    float ref[8 * PROJ_DIM];
    for (int r = 0; r < 8; r++)
        for (int o = 0; o < PROJ_DIM; o++) {
            double s = g_proj_b[o];
            for (int i = 0; i < 64; i++) s += (double)g_proj_w[o * 64 + i] * c.ref[r * 64 + i];
            ref[r * PROJ_DIM + o] = (float)s;
        }
    e = mmpt_rel_l2(proj, ref, 8 * PROJ_DIM);
    printf("  + language_projection: rel L2 %.3g\n", e);
    assert_true(e <= 1e-4);

    /* the stage: ports narrowed to the model, output after the projection */
    mmp_registry *reg = mmp_registry_new();
    const mmp_stage_kind *k = mmp_registry_find(reg, "projector.qformer");
    assert_non_null(k);
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = dir;
    mmp_stage *s = mmp_stage_new(k, &sp);
    if (!s) fail_msg("stage: %s", mmp_last_error());
    char buf[96];
    assert_string_equal(mmp_port_type_str(&mmp_stage_input(s, 0)->type, buf, sizeof buf), "hidden[*,48] f32");
    assert_string_equal(mmp_port_type_str(&mmp_stage_output(s, 0)->type, buf, sizeof buf), "embeddings[8,40] f32");
    int64_t dims[2] = {c.n_img, 48};
    mmp_array *img = mmp_array_wrap(MMP_TYPE_F32, 2, dims, (void *)c.image);
    const mmp_array *ins[2] = {img, NULL};
    mmp_array *outs[1] = {NULL};
    assert_int_equal(mmp_stage_run(s, ins, outs), MMP_OK);
    assert_int_equal(outs[0]->dims[0], 8);
    assert_int_equal(outs[0]->dims[1], PROJ_DIM);
    assert_true(mmpt_rel_l2(outs[0]->data, ref, 8 * PROJ_DIM) <= 1e-4);
    mmp_array_free(outs[0]);
    mmp_array_free(img);
    mmp_stage_free(s);

    /* project=0 gives the Q-Former output */
    sp.options = "project=0";
    s = mmp_stage_new(k, &sp);
    assert_non_null(s);
    assert_string_equal(mmp_port_type_str(&mmp_stage_output(s, 0)->type, buf, sizeof buf), "embeddings[8,64] f32");
    mmp_stage_free(s);
    mmp_registry_free(reg);
    mmp_qformer_free(q);
    mmp_safetensors_free(c.st);
    mmpt_rm_model_dir(dir);
}

/* the stage on the golden folder with the queries given as an input */
static void test_stage_golden(void **state) {
    (void)state;
    io c;
    io_open(&c);
    mmp_registry *reg = mmp_registry_new();
    const mmp_stage_kind *k = mmp_registry_find(reg, "projector.qformer");
    assert_non_null(k);
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = mmpt_data(DIR_QF);
    sp.n_threads = 2;
    mmp_stage *s = mmp_stage_new(k, &sp);
    if (!s) fail_msg("stage: %s", mmp_last_error());
    char buf[96];
    assert_string_equal(mmp_port_type_str(&mmp_stage_input(s, 1)->type, buf, sizeof buf), "embeddings[*,64] f32");
    assert_string_equal(mmp_port_type_str(&mmp_stage_output(s, 0)->type, buf, sizeof buf), "embeddings[*,64] f32");
    int64_t di[2] = {c.n_img, 48}, dq[2] = {c.n_query, 64};
    mmp_array *img = mmp_array_wrap(MMP_TYPE_F32, 2, di, (void *)c.image);
    mmp_array *qr = mmp_array_wrap(MMP_TYPE_F32, 2, dq, (void *)c.query);
    const mmp_array *ins[2] = {img, qr};
    mmp_array *outs[1] = {NULL};
    assert_int_equal(mmp_stage_run(s, ins, outs), MMP_OK);
    double e = mmpt_rel_l2(outs[0]->data, c.ref, 8 * 64);
    printf("  stage projector.qformer: rel L2 %.3g\n", e);
    assert_true(e <= 1e-4);
    mmp_array_free(outs[0]);
    outs[0] = NULL;

    /* no queries and none in the model */
    const mmp_array *ins2[2] = {img, NULL};
    assert_int_not_equal(mmp_stage_run(s, ins2, outs), MMP_OK);
    assert_non_null(strstr(mmp_last_error(), "queries"));
    /* image features of the wrong width: the typed port names both widths */
    int64_t dbad[2] = {16, 51};
    mmp_array *bad = mmp_array_wrap(MMP_TYPE_F32, 2, dbad, (void *)c.image);
    const mmp_array *ins3[2] = {bad, qr};
    assert_int_equal(mmp_stage_run(s, ins3, outs), MMP_ERR_SHAPE);
    printf("  error: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "51"));
    assert_non_null(strstr(mmp_last_error(), "48"));
    assert_null(outs[0]);
    mmp_array_free(bad);
    mmp_array_free(img);
    mmp_array_free(qr);
    mmp_stage_free(s);

    sp.options = "heads=4,bogus=1";
    assert_null(mmp_stage_new(k, &sp));
    assert_non_null(strstr(mmp_last_error(), "bogus"));
    sp.options = "heads=0";
    assert_null(mmp_stage_new(k, &sp));
    assert_non_null(strstr(mmp_last_error(), "heads"));
    mmp_registry_free(reg);
    mmp_safetensors_free(c.st);
}

static void test_cli(void **state) {
    (void)state;
    io c;
    io_open(&c);
    char args[4096];
    const char *d = mmpt_data(DIR_QF);
    snprintf(args, sizeof args, "projector.qformer -m '%s' --in image='%s/io.safetensors:encoder_hidden_states' "
             "--in queries='%s/io.safetensors:query_embeds'", d, d, d);
    double e = mmpt_cli_stage_rel_l2(args, c.ref, 8 * 64);
    printf("  mmpipe stage projector.qformer: rel L2 %.3g\n", e);
    assert_true(e <= 1e-4);
    mmp_safetensors_free(c.st);
}

/* F16 / BF16 weights (matrices used in place, vectors converted) against the f32 model with
 * the same rounded values */
static void test_half_weights(void **state) {
    (void)state;
    static const char *CFG = "{\"num_attention_heads\": 4, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}";
    io c;
    io_open(&c);
    rewrite r16 = {.half = 1, .config = CFG}, rb16 = {.half = 2, .config = CFG}, rref = {.half = -1, .config = CFG};
    rewrite rrefb = {.half = -2, .config = CFG};
    char *d16 = rewrite_model(&r16), *db16 = rewrite_model(&rb16), *dref = rewrite_model(&rref), *drefb = rewrite_model(&rrefb);
    mmp_qformer *q16 = mmp_qformer_load(d16, NULL), *qb16 = mmp_qformer_load(db16, NULL), *qref = mmp_qformer_load(dref, NULL);
    mmp_qformer *qrefb = mmp_qformer_load(drefb, NULL);
    if (!q16 || !qb16 || !qref || !qrefb) fail_msg("load: %s", mmp_last_error());
    float o16[8 * 64], ob16[8 * 64], oref[8 * 64], orefb[8 * 64];
    assert_int_equal(mmp_qformer_run(qrefb, c.image, c.n_img, c.query, 8, orefb, NULL), MMP_OK);
    assert_int_equal(mmp_qformer_run(q16, c.image, c.n_img, c.query, 8, o16, NULL), MMP_OK);
    assert_int_equal(mmp_qformer_run(qb16, c.image, c.n_img, c.query, 8, ob16, NULL), MMP_OK);
    assert_int_equal(mmp_qformer_run(qref, c.image, c.n_img, c.query, 8, oref, NULL), MMP_OK);
    double e16 = mmpt_rel_l2(o16, oref, 8 * 64);
    printf("  F16 weights vs f32 of the same values: rel L2 %.3g (vs golden %.3g)\n", e16, mmpt_rel_l2(o16, c.ref, 8 * 64));
    double eb16 = mmpt_rel_l2(ob16, orefb, 8 * 64);
    printf("  BF16 weights vs f32 of the same values: rel L2 %.3g (vs golden %.3g)\n", eb16, mmpt_rel_l2(ob16, c.ref, 8 * 64));
    assert_true(e16 <= 1e-4);
    assert_true(eb16 <= 1e-4);
    mmp_qformer_free(q16);
    mmp_qformer_free(qb16);
    mmp_qformer_free(qref);
    mmp_qformer_free(qrefb);
    mmpt_rm_model_dir(drefb);
    mmpt_rm_model_dir(d16);
    mmpt_rm_model_dir(db16);
    mmpt_rm_model_dir(dref);
    mmp_safetensors_free(c.st);
}

/* ---- bad input ---- */

static void expect_fail(const rewrite *rw, const mmp_qformer_params *p, const char *const *needles) {
    char *dir = rewrite_model(rw);
    mmp_qformer *q = mmp_qformer_load(dir, p);
    if (q) fail_msg("loaded but should not");
    mmpt_expect_error_mentions(needles);
    mmpt_rm_model_dir(dir);
}

static void test_bad(void **state) {
    (void)state;
    static const char *CFG = "{\"num_attention_heads\": 4, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}";
    {   /* a missing tensor */
        rewrite rw = {.drop = "encoder.layer.1.output_query.dense.bias", .config = CFG};
        expect_fail(&rw, NULL, (const char *[]){"encoder.layer.1.output_query.dense.bias", "missing", NULL});
    }
    {   /* cross-attention key of layer 1 reads 40-wide features where layer 0 reads 48 */
        rewrite rw = {.reshape = "encoder.layer.1.crossattention.attention.value.weight", .reshape_ne = {40, 64},
                      .reshape_dims = 2, .config = CFG};
        expect_fail(&rw, NULL, (const char *[]){"encoder.layer.1.crossattention.attention.value.weight", "[64, 40]",
                                                "[64, 48]", NULL});
    }
    {   /* FFN width differs between layers */
        rewrite rw = {.reshape = "encoder.layer.1.intermediate_query.dense.weight", .reshape_ne = {64, 100},
                      .reshape_dims = 2, .config = CFG};
        expect_fail(&rw, NULL, (const char *[]){"intermediate_query.dense.weight", "[100, 64]", "[128, 64]", NULL});
    }
    {   /* query_tokens narrower than the Q-Former */
        rewrite rw = {.prefix = "qformer.", .add_blip2 = true, .query_width = 60, .config = BLIP2_CONFIG};
        expect_fail(&rw, NULL, (const char *[]){"query_tokens", "[1, 8, 60]", "64", NULL});
    }
    {   /* no config and no heads given */
        rewrite rw = {0};
        expect_fail(&rw, NULL, (const char *[]){"heads", NULL});
        /* ... works with heads given */
        char *dir = rewrite_model(&rw);
        mmp_qformer_params p = mmp_qformer_params_default();
        p.n_heads = 4;
        mmp_qformer *q = mmp_qformer_load(dir, &p);
        assert_non_null(q);
        mmp_qformer_free(q);
        /* heads that do not divide the width */
        p.n_heads = 5;
        assert_null(mmp_qformer_load(dir, &p));
        assert_non_null(strstr(mmp_last_error(), "num_attention_heads 5"));
        mmpt_rm_model_dir(dir);
    }
    {   /* unknown activation */
        rewrite rw = {.config = "{\"num_attention_heads\": 4, \"hidden_act\": \"mish2\"}"};
        expect_fail(&rw, NULL, (const char *[]){"mish2", NULL});
    }
    {   /* no Q-Former in the file at all */
        rewrite rw = {.prefix = "something.", .drop = "layernorm.weight", .config = CFG};
        expect_fail(&rw, NULL, (const char *[]){"no Q-Former", NULL});
    }
    assert_null(mmp_qformer_load("/nonexistent/qformer", NULL));
    assert_true(strlen(mmp_last_error()) > 0);
    assert_null(mmp_qformer_load(NULL, NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_blip2_names),
        cmocka_unit_test(test_stage_golden),
        cmocka_unit_test(test_half_weights),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
