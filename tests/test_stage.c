/* Stage interface: port types and the connect check, arrays, the registry, stage lifetime. */
#include "testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_port_type_str(void **state) {
    (void)state;
    mmp_port_type t = { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 4096 } };
    char buf[128];
    assert_string_equal(mmp_port_type_str(&t, buf, sizeof buf), "embeddings[*,4096] f32");
    mmp_port_type l = { MMP_ROLE_LATENTS, MMP_TYPE_F32, 3, { 4, 64, 64 } };
    assert_string_equal(mmp_port_type_str(&l, buf, sizeof buf), "latents[4,64,64] f32");
}

static void test_connect(void **state) {
    (void)state;
    mmp_port_type clip = { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 1024 } };
    mmp_port_type mlp = { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 768 } };
    mmp_port_type any = { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } };
    assert_int_equal(mmp_port_check_connect("clip.out", &clip, "mlp.in", &any), MMP_OK);
    assert_int_equal(mmp_port_check_connect("clip.out", &clip, "mlp.in", &mlp), MMP_ERR_SHAPE);
    const char *e = mmp_last_error();
    assert_non_null(strstr(e, "clip.out is embeddings[*,1024] f32"));
    assert_non_null(strstr(e, "mlp.in wants embeddings[*,768] f32"));
    assert_non_null(strstr(e, "1024"));
    mmp_port_type hid = clip;
    hid.role = MMP_ROLE_HIDDEN;
    assert_int_equal(mmp_port_check_connect("a.x", &hid, "b.y", &clip), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "role hidden is not embeddings"));
    mmp_port_type i32 = clip;
    i32.type = MMP_TYPE_I32;
    assert_int_equal(mmp_port_check_connect("a.x", &i32, "b.y", &clip), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "element type i32 is not f32"));
    mmp_port_type one = { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 1, { 1024 } };
    assert_int_equal(mmp_port_check_connect("a.x", &one, "b.y", &clip), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "1 dims, expected 2"));
}

static void test_arrays(void **state) {
    (void)state;
    int64_t dims[2] = { 3, 5 };
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, 2, dims);
    assert_non_null(a);
    assert_int_equal(mmp_array_nelements(a), 15);
    assert_int_equal(mmp_array_nbytes(a), 60);
    for (int i = 0; i < 15; i++) assert_true(((float *)a->data)[i] == 0.0f);
    mmp_port_type t = { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 5 } };
    assert_int_equal(mmp_array_check("s.in", a, &t), MMP_OK);
    t.dims[1] = 6;
    assert_int_equal(mmp_array_check("s.in", a, &t), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "dim 1 is 5, expected 6"));
    mmp_array_free(a);
    /* an empty list (outermost dim 0) is allowed and fits a free dim; an inner 0 is not */
    int64_t empty[2] = { 0, 5 };
    a = mmp_array_new(MMP_TYPE_F32, 2, empty);
    assert_non_null(a);
    assert_int_equal(mmp_array_nelements(a), 0);
    assert_int_equal(mmp_array_nbytes(a), 0);
    t.dims[1] = 5;
    assert_int_equal(mmp_array_check("s.in", a, &t), MMP_OK);
    mmp_array_free(a);
    int64_t bad[2] = { 5, 0 };
    assert_null(mmp_array_new(MMP_TYPE_F32, 2, bad));
    assert_true(strlen(mmp_last_error()) > 0);
    int64_t neg[2] = { -1, 5 };
    assert_null(mmp_array_new(MMP_TYPE_F32, 2, neg));
    int64_t huge[4] = { 1 << 20, 1 << 20, 1 << 20, 1 << 20 };
    assert_null(mmp_array_new(MMP_TYPE_F32, 4, huge));
    assert_null(mmp_array_new(MMP_TYPE_Q4_0, 2, dims));
    assert_null(mmp_array_new(MMP_TYPE_F32, 5, dims));
    mmp_array_free(NULL);
    float buf[6] = { 1, 2, 3, 4, 5, 6 };
    int64_t d2[2] = { 2, 3 };
    mmp_array *w = mmp_array_wrap(MMP_TYPE_F32, 2, d2, buf);
    assert_non_null(w);
    assert_ptr_equal(w->data, buf);
    mmp_array_free(w); /* must not free buf */
    assert_true(buf[5] == 6);
}

/* A tiny stage kind defined by the test: y = x * factor (factor from options "factor=K"). */
typedef struct { float factor; } scale_state;

static void *scale_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    scale_state *s = calloc(1, sizeof *s);
    s->factor = 2.0f;
    if (p->options && sscanf(p->options, "factor=%f", &s->factor) != 1) { free(s); return NULL; }
    in[0].dims[1] = 4; /* the "model" fixes the width */
    out[0].dims[1] = 4;
    return s;
}

static enum mmp_status scale_run(void *st, const mmp_stage_params *p, const mmp_array *const *in, mmp_array **out) {
    (void)p;
    scale_state *s = st;
    out[0] = mmp_array_new(MMP_TYPE_F32, in[0]->n_dims, in[0]->dims);
    if (!out[0]) return MMP_ERR_NOMEM;
    for (int64_t i = 0; i < mmp_array_nelements(in[0]); i++)
        ((float *)out[0]->data)[i] = ((const float *)in[0]->data)[i] * s->factor;
    return MMP_OK;
}

static void scale_destroy(void *st) { free(st); }

static const mmp_stage_kind scale_kind = {
    .name = "test.scale", .summary = "multiply by a factor",
    .n_inputs = 1, .n_outputs = 1,
    .inputs = { { "x", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "input" } },
    .outputs = { { "y", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "output" } },
    .create = scale_create, .run = scale_run, .destroy = scale_destroy,
};

static void test_registry(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    assert_non_null(r);
    int n0 = mmp_registry_count(r);
    for (int i = 0; i < n0; i++) {
        const mmp_stage_kind *k = mmp_registry_at(r, i);
        assert_non_null(k->name);
        assert_ptr_equal(mmp_registry_find(r, k->name), k);
    }
    assert_int_equal(mmp_registry_add(r, &scale_kind), MMP_OK);
    assert_int_equal(mmp_registry_count(r), n0 + 1);
    assert_int_equal(mmp_registry_add(r, &scale_kind), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "already registered"));
    assert_ptr_equal(mmp_registry_find(r, "test.scale"), &scale_kind);
    assert_null(mmp_registry_find(r, "encoder.nope"));
    assert_non_null(strstr(mmp_last_error(), "unknown stage kind 'encoder.nope'"));
    assert_non_null(strstr(mmp_last_error(), "test.scale"));
    mmp_stage_kind bad = scale_kind;
    bad.name = "test.bad";
    bad.n_outputs = 2;
    bad.outputs[1] = bad.outputs[0]; /* duplicate port name */
    assert_int_equal(mmp_registry_add(r, &bad), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "duplicate output port 'y'"));
    bad = scale_kind;
    bad.name = "test.bad2";
    bad.run = NULL;
    assert_int_equal(mmp_registry_add(r, &bad), MMP_ERR_INVALID_ARG);
    mmp_registry_free(r);
    mmp_registry_free(NULL);
}

static void test_stage_run(void **state) {
    (void)state;
    mmp_stage_params p = mmp_stage_params_default();
    p.options = "factor=3";
    mmp_stage *s = mmp_stage_new(&scale_kind, &p);
    assert_non_null(s);
    assert_int_equal(mmp_stage_input(s, 0)->type.dims[1], 4); /* narrowed by create */
    assert_int_equal(mmp_stage_find_input(s, "x"), 0);
    assert_int_equal(mmp_stage_find_output(s, "y"), 0);
    assert_int_equal(mmp_stage_find_input(s, "z"), -1);
    assert_non_null(strstr(mmp_last_error(), "no input port 'z' (it has: x)"));
    float xs[8];
    for (int i = 0; i < 8; i++) xs[i] = (float)i;
    int64_t d[2] = { 2, 4 };
    mmp_array *x = mmp_array_wrap(MMP_TYPE_F32, 2, d, xs);
    mmp_array *y = NULL;
    const mmp_array *ins[1] = { x };
    assert_int_equal(mmp_stage_run(s, ins, &y), MMP_OK);
    for (int i = 0; i < 8; i++) assert_true(((float *)y->data)[i] == 3.0f * (float)i);
    mmp_array_free(y);
    /* wrong width: the stage says which port and which dim */
    int64_t d3[2] = { 2, 3 };
    mmp_array *x3 = mmp_array_wrap(MMP_TYPE_F32, 2, d3, xs);
    ins[0] = x3;
    assert_int_equal(mmp_stage_run(s, ins, &y), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "test.scale.x"));
    assert_non_null(strstr(mmp_last_error(), "dim 1 is 3, expected 4"));
    ins[0] = NULL;
    assert_int_equal(mmp_stage_run(s, ins, &y), MMP_ERR_INVALID_ARG);
    mmp_array_free(x);
    mmp_array_free(x3);
    mmp_stage_free(s);
    /* a failing create names the kind */
    p.options = "factor=oops";
    assert_null(mmp_stage_new(&scale_kind, &p));
    assert_non_null(strstr(mmp_last_error(), "test.scale"));
    mmp_stage_free(NULL);
}

static void test_status(void **state) {
    (void)state;
    for (int s = 0; s > -MMP_STATUS_COUNT; s--) {
        const char *str = mmp_status_str((enum mmp_status)s);
        assert_non_null(str);
        assert_string_not_equal(str, "unknown status");
    }
    assert_string_equal(mmp_status_str((enum mmp_status)-1000), "unknown status");
    assert_string_equal(mmp_version(), MMP_VERSION_STRING);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_type_str),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_stage_run),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
