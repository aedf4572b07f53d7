/* Pipelines: building in code and from files, validation (every rejected graph with a precise
 * message, before any weight is read), the run (order, fan-out, row slices, outputs, progress,
 * abort), the stock pipeline files, golden cases end to end through pipeline files
 * (nextgpt_e2e: LLM -> signal hidden -> output projector -> UNet; blip2_qformer; whisper), the
 * worked example of docs/adding-a-stage.md, and two threads on one model. */
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline-impl.h"
#include "stage-impl.h"

#define EXAMPLE_NO_MAIN
#include "samples/examples/custom_stage.c"

/* A whole file as a NUL-terminated string (mmpt_read_file does not terminate). */
static char *read_text(const char *path) {
    size_t n = 0;
    char *raw = mmpt_read_file(path, &n);
    if (!raw) return NULL;
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, raw, n);
    s[n] = 0;
    free(raw);
    return s;
}

/* ---- small kinds for the graph tests (no model files) ---- */

/* test.add: a + b -> sum (any role, hidden[*,*]) */
static void *add_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    (void)p; (void)in; (void)out;
    static int token;
    return &token;
}
static enum mmp_status add_run(void *st, const mmp_stage_params *p, const mmp_array *const *in, mmp_array **out) {
    (void)st; (void)p;
    if (in[0]->dims[0] != in[1]->dims[0] || in[0]->dims[1] != in[1]->dims[1]) return MMP_ERR_SHAPE;
    mmp_array *y = mmp_array_new(MMP_TYPE_F32, 2, in[0]->dims);
    if (!y) return MMP_ERR_NOMEM;
    for (int64_t i = 0; i < mmp_array_nelements(y); i++)
        ((float *)y->data)[i] = ((const float *)in[0]->data)[i] + ((const float *)in[1]->data)[i];
    out[0] = y;
    return MMP_OK;
}
static void add_destroy(void *st) { (void)st; }
static const mmp_stage_kind add_kind = {
    .name = "test.add", .summary = "a + b", .n_inputs = 2, .n_outputs = 1,
    .inputs = { { "a", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "" },
                { "b", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "" } },
    .outputs = { { "sum", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "" } },
    .create = add_create, .run = add_run, .destroy = add_destroy,
};
/* test.w8 / test.w16: fixed declared widths (hidden[*,8] -> hidden[*,8]; in [*,16]) */
static const mmp_stage_kind w8_kind = {
    .name = "test.w8", .summary = "", .n_inputs = 1, .n_outputs = 1,
    .inputs = { { "x", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 8 } }, false, "" } },
    .outputs = { { "y", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 8 } }, false, "" } },
    .create = add_create, .run = add_run, .destroy = add_destroy,
};
static const mmp_stage_kind w16_kind = {
    .name = "test.w16", .summary = "", .n_inputs = 1, .n_outputs = 1,
    .inputs = { { "x", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 16 } }, false, "" } },
    .outputs = { { "y", { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, 16 } }, false, "" } },
    .create = add_create, .run = add_run, .destroy = add_destroy,
};

static const mmp_stage_kind h3_kind = {
    .name = "test.h3", .summary = "", .n_inputs = 1, .n_outputs = 1,
    .inputs = { { "x", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 3, { MMP_DIM_ANY, MMP_DIM_ANY, MMP_DIM_ANY } }, false, "" } },
    .outputs = { { "y", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 3, { MMP_DIM_ANY, MMP_DIM_ANY, MMP_DIM_ANY } }, false, "" } },
    .create = add_create, .run = add_run, .destroy = add_destroy,
};

/* test.optlen: output width = the length of option "msg" as the stage receives it (after
 * ${param} substitution and unescaping), so tests can see what arrived. */
static void *optlen_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    (void)in;
    mmp__opt o[8];
    char *store = NULL;
    int n = mmp__opts_parse("test.optlen", p->options, o, 8, &store);
    if (n < 0) return NULL;
    int64_t len = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(o[i].key, "msg")) len = (int64_t)strlen(o[i].val);
    free(store);
    if (len < 1) return NULL;
    out[0].dims[1] = len;
    static int token;
    return &token;
}
static const mmp_stage_kind optlen_kind = {
    .name = "test.optlen", .summary = "", .n_inputs = 1, .n_outputs = 1,
    .inputs = { { "x", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "" } },
    .outputs = { { "y", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "" } },
    .create = optlen_create, .run = add_run, .destroy = add_destroy,
};

/* The built-in kinds (prompt.embed included). */
static mmp_registry *registry_new(void) {
    mmp_registry *r = mmp_registry_new();
    assert_non_null(r);
    assert_non_null(mmp_registry_find(r, "prompt.embed"));
    return r;
}

static mmp_registry *test_registry(void) {
    mmp_registry *r = registry_new();
    assert_int_equal(mmp_registry_add(r, &add_kind), MMP_OK);
    assert_int_equal(mmp_registry_add(r, &w8_kind), MMP_OK);
    assert_int_equal(mmp_registry_add(r, &optlen_kind), MMP_OK);
    assert_int_equal(mmp_registry_add(r, &w16_kind), MMP_OK);
    assert_int_equal(mmp_registry_add(r, &h3_kind), MMP_OK);
    assert_int_equal(mmp_registry_add(r, &example_scale_kind), MMP_OK);
    return r;
}

static void expect_msg(const char *const *parts) {
    const char *e = mmp_last_error();
    for (int i = 0; parts[i]; i++)
        if (!strstr(e, parts[i])) fail_msg("message '%s' lacks '%s'", e, parts[i]);
}

static mmp_array *arr2(int64_t n, int64_t d, float base) {
    int64_t dims[2] = { n, d };
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, 2, dims);
    assert_non_null(a);
    for (int64_t i = 0; i < n * d; i++) ((float *)a->data)[i] = base + (float)i;
    return a;
}

/* ---- building in code, running ---- */

static int n_progress;
static void count_progress(const char *what, int64_t done, int64_t total, void *user) {
    (void)done; (void)total; (void)user;
    if (!strncmp(what, "stage ", 6)) n_progress++;
}
static bool abort_now(void *user) { return *(int *)user != 0; }

static void test_run_in_code(void **state) {
    (void)state;
    mmp_registry *r = test_registry();
    /* declared out of order on purpose: the run order comes from the edges.
     *   x -> s1 (k=3) -> add.a ; x -> add.b ; add.sum[1:] -> s2 (k=0.5) ; outputs sum, rows, twice */
    mmp_pipeline_desc *d = mmp_pipeline_desc_new("code");
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "s2", "example.scale", NULL, NULL, "k=0.5"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "add", "test.add", NULL, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "s1", "example.scale", NULL, NULL, "k=3"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_input(d, "x", "s1.x"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_input(d, "x", "add.b"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "s1.y", "add.a"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "add.sum[1:]", "s2.x"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "sum", "add.sum"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "last", "add.sum[-1:]"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "half", "s2.y"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_validate(d, r), MMP_OK);

    int stop = 0;
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.progress = count_progress;
    pp.abort_cb = abort_now;
    pp.cb_user = &stop;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    if (!p) fail_msg("%s", mmp_last_error());
    mmp_pipeline_desc_free(d);   /* the pipeline keeps its own copy */
    assert_int_equal(mmp_pipeline_n_inputs(p), 1);
    assert_int_equal(mmp_pipeline_n_outputs(p), 3);
    assert_int_equal(mmp_pipeline_find_output(p, "half"), 2);
    assert_int_equal(mmp_pipeline_find_output(p, "nope"), -1);
    assert_non_null(strstr(mmp_last_error(), "sum, last, half"));
    assert_non_null(mmp_pipeline_stage(p, "s1"));

    mmp_array *x = arr2(3, 2, 1.0f), *out[3] = { 0 };
    const mmp_array *in[1] = { x };
    assert_int_equal(mmp_pipeline_run(p, in, out), MMP_OK);
    assert_int_equal(n_progress, 3);
    const float *xs = x->data;
    /* scalar reference: sum = 3x + x; last = row 2 of sum; half = 0.5 * rows 1..2 of sum */
    for (int i = 0; i < 6; i++) assert_true(((float *)out[0]->data)[i] == 4 * xs[i]);
    assert_int_equal(out[1]->dims[0], 1);
    for (int i = 0; i < 2; i++) assert_true(((float *)out[1]->data)[i] == 4 * xs[4 + i]);
    assert_int_equal(out[2]->dims[0], 2);
    for (int i = 0; i < 4; i++) assert_true(((float *)out[2]->data)[i] == 0.5f * 4 * xs[2 + i]);
    for (int i = 0; i < 3; i++) mmp_array_free(out[i]);

    /* a wrong input is named */
    mmp_array *bad = mmp_array_new(MMP_TYPE_I32, 1, (int64_t[]){ 3 });
    in[0] = bad;
    assert_int_equal(mmp_pipeline_run(p, in, out), MMP_ERR_SHAPE);
    expect_msg((const char *[]){ "pipeline input 'x'", "hidden[*,*] f32", NULL });
    assert_null(out[0]);
    mmp_array_free(bad);
    /* abort before a stage */
    stop = 1;
    in[0] = x;
    assert_int_equal(mmp_pipeline_run(p, in, out), MMP_ERR_ABORTED);
    for (int i = 0; i < 3; i++) assert_null(out[i]);
    /* a slice out of range at run time: one row only */
    stop = 0;
    mmp_array *one = arr2(1, 2, 0);
    in[0] = one;
    assert_int_equal(mmp_pipeline_run(p, in, out), MMP_ERR_SHAPE);
    expect_msg((const char *[]){ "add.sum[1:]", "1 rows", NULL });
    mmp_array_free(one);
    mmp_array_free(x);
    mmp_pipeline_free(p);
    mmp_registry_free(r);
}

/* ---- rejected graphs ---- */

typedef struct bad_case {
    const char *what;
    const char *text;
    enum mmp_status status;
    const char *parts[6];
    bool at_parse;   /* syntax: rejected by the parser */
} bad_case;

static void test_bad_files(void **state) {
    (void)state;
    mmp_registry *r = test_registry();
    /* model paths name files that do not exist: if a check were done after loading, the message
     * would be an I/O error instead of the graph error */
    static const bad_case cases[] = {
        { "unknown kind", "stage a encoder.nope model=/nonexistent\ninput x -> a.x\noutput y <- a.y\n", MMP_ERR_NOT_FOUND,
          { "bad.pipe:1:", "stage 'a'", "unknown stage kind 'encoder.nope'", "known:", "backbone.llm", NULL }, false },
        { "missing stage", "stage a test.w8\ninput x -> a.x\na.y -> b.x\noutput y <- a.y\n", MMP_ERR_NOT_FOUND,
          { "bad.pipe:3:", "a.y -> b.x", "no stage named 'b'", "stages: a", NULL }, false },
        { "unknown output port", "stage a test.w8\nstage b test.w8\ninput x -> a.x\na.out -> b.x\noutput y <- b.y\n", MMP_ERR_NOT_FOUND,
          { "bad.pipe:4:", "stage 'a' (test.w8) has no output port 'out'", "outputs: y", NULL }, false },
        { "unknown input port", "stage a test.w8\ninput x -> a.input\noutput y <- a.y\n", MMP_ERR_NOT_FOUND,
          { "bad.pipe:2:", "has no input port 'input'", "inputs: x", NULL }, false },
        { "width mismatch (declared)", "stage a test.w8\nstage b test.w16\ninput x -> a.x\na.y -> b.x\noutput y <- b.y\n", MMP_ERR_SHAPE,
          { "bad.pipe:4:", "a.y is hidden[*,8] f32 but b.x wants hidden[*,16] f32", "dim 1 is 8, expected 16", NULL }, false },
        { "role mismatch", "stage a test.w16\nstage b test.w16\ninput x -> a.x\na.y -> b.x\noutput y <- b.y\n", MMP_ERR_SHAPE,
          { "a.y is embeddings[*,16] f32 but b.x wants hidden[*,16] f32", "role embeddings is not hidden", NULL }, false },
        { "role+dtype mismatch", "stage l backbone.llm model=/nonexistent\nstage a test.w8\ninput x -> l.tokens, a.x\noutput y <- a.y\n",
          MMP_ERR_SHAPE, { "bad.pipe:3:", "input x is tokens[*] i32 but a.x wants hidden[*,8] f32", NULL }, false },
        { "rank mismatch", "stage a test.h3\nstage b test.w8\ninput x -> a.x\na.y -> b.x\noutput y <- b.y\n", MMP_ERR_SHAPE,
          { "bad.pipe:4:", "a.y is hidden[*,*,*] f32 but b.x wants hidden[*,8] f32", "3 dims, expected 2", NULL }, false },
        { "latents into hidden", "stage u generator.unet model=/nonexistent\nstage a test.add\ninput l -> u.latents\ninput t -> u.timestep\n"
          "input c -> u.conditioning\nu.noise -> a.a\ninput b -> a.b\noutput y <- a.sum\n", MMP_ERR_SHAPE,
          { "bad.pipe:6:", "u.noise is latents[*,*,*] f32 but a.a wants hidden[*,*] f32", NULL }, false },
        { "cycle", "stage a test.add\nstage b test.w8\ninput x -> a.b\na.sum -> b.x\nb.y -> a.a\noutput y <- b.y\n", MMP_ERR_INVALID_ARG,
          { "cycle", "a.sum -> b.x (line 4)", "b.y -> a.a (line 5)", NULL }, false },
        { "self loop", "stage a test.add\ninput x -> a.b\na.sum -> a.a\noutput y <- a.sum\n", MMP_ERR_INVALID_ARG,
          { "cycle through stage 'a'", "a.sum -> a.a (line 3)", NULL }, false },
        { "open input", "stage a test.add\ninput x -> a.a\noutput y <- a.sum\n", MMP_ERR_INVALID_ARG,
          { "bad.pipe:1:", "input port a.b (hidden[*,*] f32) is not connected", NULL }, false },
        { "two sources", "stage a test.w8\nstage b test.w8\ninput x -> a.x\ninput z -> b.x\na.y -> b.x\noutput y <- b.y\n", MMP_ERR_INVALID_ARG,
          { "bad.pipe:5:", "b.x has two sources", "input z -> b.x' (line 4)", "a.y -> b.x", NULL }, false },
        { "no outputs", "stage a test.w8\ninput x -> a.x\n", MMP_ERR_INVALID_ARG, { "has no outputs", NULL }, false },
        { "unknown param", "param model\nstage a test.w8 model=${modle}\ninput x -> a.x\noutput y <- a.y\n", MMP_ERR_NOT_FOUND,
          { "bad.pipe:2:", "parameter 'modle'", "declared: model", NULL }, false },
        /* syntax errors: rejected by the parser, with the line */
        { "unknown statement", "# comment\n\nstag a test.w8\n", MMP_ERR_FORMAT, { "bad.pipe:3:", "unknown statement 'stag'", NULL }, true },
        { "bad edge", "stage a test.w8\na.y => b.x\n", MMP_ERR_FORMAT, { "bad.pipe:2:", "expected an edge", NULL }, true },
        { "not STAGE.PORT", "stage a test.w8\ninput x -> ax\n", MMP_ERR_FORMAT, { "bad.pipe:2:", "'ax' is not STAGE.PORT", NULL }, true },
        { "stage key", "stage a test.w8 modle=x\n", MMP_ERR_FORMAT, { "bad.pipe:1:", "unknown key 'modle'", NULL }, true },
        { "quote", "stage a test.w8 model=\"a b\n", MMP_ERR_FORMAT, { "bad.pipe:1:", "unterminated", NULL }, true },
        { "duplicate stage", "stage a test.w8\nstage a test.w16\n", MMP_ERR_INVALID_ARG, { "bad.pipe:2:", "declared twice (first on line 1)", NULL }, true },
        { "bad slice", "stage a test.w8\noutput y <- a.y[1:x]\n", MMP_ERR_FORMAT, { "bad.pipe:2:", "bad row slice", NULL }, true },
        { "slice on destination", "stage a test.w8\nstage b test.w8\na.y -> b.x[0:1]\n", MMP_ERR_FORMAT, { "bad.pipe:3:", "only allowed on the source", NULL }, true },
        { "output arrow", "stage a test.w8\noutput y -> a.y\n", MMP_ERR_FORMAT, { "bad.pipe:2:", "output NAME <- STAGE.PORT", NULL }, true },
        { "bad name", "stage a.b test.w8\n", MMP_ERR_FORMAT, { "bad.pipe:1:", "stage name 'a.b'", NULL }, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        mmp_clear_error();
        mmp_pipeline_desc *d = mmp_pipeline_desc_parse(c->text, "bad.pipe");
        if (c->at_parse) {
            if (d) fail_msg("%s: parsed", c->what);
        } else {
            if (!d) fail_msg("%s: parse failed: %s", c->what, mmp_last_error());
            enum mmp_status st = mmp_pipeline_desc_validate(d, r);
            if (st != c->status) fail_msg("%s: status %d (%s), want %d", c->what, st, mmp_last_error(), c->status);
            /* creation reports the same graph error (not an I/O error on a model path) */
            char first[1024];   /* the whole thread-local message */
            snprintf(first, sizeof first, "%s", mmp_last_error());
            assert_null(mmp_pipeline_new(d, r, NULL));
            assert_string_equal(mmp_last_error(), first);
            /* and so does show */
            FILE *devnull = fopen("/dev/null", "w");
            assert_int_equal(mmp_pipeline_desc_print(d, r, devnull), c->status);
            assert_int_equal(mmp_pipeline_desc_write_dot(d, r, devnull), c->status);
            fclose(devnull);
        }
        printf("  %-28s %s\n", c->what, mmp_last_error());
        expect_msg(c->parts);
        mmp_pipeline_desc_free(d);
    }
    /* a required parameter without a value: rejected at creation, before loading */
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse("param model\nstage a test.w8 model=${model}\ninput x -> a.x\noutput y <- a.y\n", "p.pipe");
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_validate(d, r), MMP_OK);
    assert_null(mmp_pipeline_new(d, r, NULL));
    expect_msg((const char *[]){ "p.pipe:2:", "needs parameter 'model'", "--set model=", NULL });
    assert_int_equal(mmp_pipeline_desc_set_param(d, "modle", "x"), MMP_ERR_NOT_FOUND);
    expect_msg((const char *[]){ "no parameter 'modle'", "it has: model", NULL });
    mmp_pipeline_desc_free(d);
    /* a directory, a missing file, binary bytes */
    assert_null(mmp_pipeline_desc_load(mmpt_data("pipe")));
    assert_null(mmp_pipeline_desc_load("/nonexistent/x.pipe"));
    expect_msg((const char *[]){ "/nonexistent/x.pipe", "cannot open", NULL });
    mmp_registry_free(r);
}

/* The width a model decides is checked when the stages are created: whisper (d_model 64) into a
 * Q-Former whose image features are 48 wide. */
static void test_width_after_loading(void **state) {
    (void)state;
    mmp_registry *r = registry_new();
    char text[1024];
    snprintf(text, sizeof text,
             "stage enc encoder.whisper model=%s\n"
             "stage qf projector.qformer model=%s\n"
             "input mel -> enc.mel\nenc.hidden -> qf.image\noutput q <- qf.embeddings\n",
             mmpt_data("audio/whisper_encoder"), mmpt_data("proj/blip2_qformer"));
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(text, "w.pipe");
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_validate(d, r), MMP_OK);   /* declared: hidden[*,*] both */
    assert_null(mmp_pipeline_new(d, r, NULL));
    printf("  %s\n", mmp_last_error());
    expect_msg((const char *[]){ "w.pipe:4:", "enc.hidden is hidden[*,64] f32 but qf.image wants hidden[*,48] f32", "dim 1 is 64, expected 48", NULL });
    mmp_pipeline_desc_free(d);
    mmp_registry_free(r);
}

/* ---- stock files ---- */

static void test_stock_files(void **state) {
    (void)state;
    mmp_registry *r = registry_new();
    const char *dir = mmpt_data("../../pipelines");
    char dirbuf[1024];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir);
    DIR *dp = opendir(dirbuf);
    assert_non_null(dp);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".pipe")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dirbuf, e->d_name);
        mmp_pipeline_desc *d = mmp_pipeline_desc_load(path);
        if (!d) fail_msg("%s", mmp_last_error());
        if (mmp_pipeline_desc_validate(d, r) != MMP_OK) fail_msg("%s", mmp_last_error());
        FILE *devnull = fopen("/dev/null", "w");
        assert_int_equal(mmp_pipeline_desc_print(d, r, devnull), MMP_OK);
        assert_int_equal(mmp_pipeline_desc_write_dot(d, r, devnull), MMP_OK);
        fclose(devnull);
        printf("  %-24s ok (%s)\n", e->d_name, mmp_pipeline_desc_name(d));
        mmp_pipeline_desc_free(d);
        /* the library carries the same text under the file's name */
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(l - 5), e->d_name);
        size_t sl = 0;
        const char *stock = mmp_pipeline_stock_text(name, &sl);
        if (!stock) fail_msg("%s", mmp_last_error());
        char *file = read_text(path);
        assert_non_null(file);
        assert_int_equal(sl, strlen(file));
        assert_string_equal(stock, file);
        free(file);
        mmp_pipeline_desc *sd = mmp_pipeline_desc_stock(name);
        if (!sd) fail_msg("%s", mmp_last_error());
        assert_int_equal(mmp_pipeline_desc_validate(sd, r), MMP_OK);
        mmp_pipeline_desc_free(sd);
        n++;
    }
    closedir(dp);
    assert_true(n >= 8);
    assert_int_equal(mmp_pipeline_stock_count(), n);
    for (int i = 0; i < n; i++) assert_non_null(mmp_pipeline_stock_name(i));
    assert_null(mmp_pipeline_stock_name(n));
    assert_null(mmp_pipeline_stock_name(-1));
    /* by name (".pipe" optional), by path, and the error for neither */
    mmp_pipeline_desc *sd = mmp_pipeline_desc_open("llava.pipe");
    if (!sd) fail_msg("%s", mmp_last_error());
    assert_string_equal(mmp_pipeline_desc_name(sd), "llava");
    mmp_pipeline_desc_free(sd);
    assert_null(mmp_pipeline_desc_open("no-such-pipeline"));
    expect_msg((const char *[]){ "no stock pipeline named 'no-such-pipeline'", "llava", NULL });
    assert_null(mmp_pipeline_desc_open("./no-such.pipe"));
    expect_msg((const char *[]){ "./no-such.pipe", "cannot open", NULL });
    assert_null(mmp_pipeline_stock_text(NULL, NULL));
    mmp_registry_free(r);
}

/* ---- golden cases end to end ---- */


static void check_rel(const char *what, const mmp_array *a, const mmp_array *ref, double tol) {
    assert_int_equal(a->n_dims, ref->n_dims);
    for (int k = 0; k < a->n_dims; k++) assert_int_equal(a->dims[k], ref->dims[k]);
    double e = mmpt_rel_l2(a->data, ref->data, (size_t)mmp_array_nelements(a));
    printf("  %-34s rel L2 %.3g\n", what, e);
    if (!(e <= tol)) fail_msg("%s: rel L2 %.3g > %.3g", what, e, tol);
}

static void test_nextgpt_e2e(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    char path[1024];
    snprintf(path, sizeof path, "%s", mmpt_data("../../pipelines/nextgpt-image.pipe"));
    mmp_pipeline_desc *d = mmp_pipeline_desc_load(path);
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "llm", mmpt_data("pipe/nextgpt_e2e/llm")), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "projector", mmpt_data("proj/nextgpt_e2e/output_projector/model.safetensors")), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "unet", mmpt_data("gen/unet")), MMP_OK);
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    if (!p) fail_msg("%s", mmp_last_error());

    mmp_safetensors *g = mmp_safetensors_open(mmpt_data("pipe/nextgpt_e2e/io.safetensors"));
    assert_non_null(g);
    mmp_array *ids = mmpt_golden_array(g, "input_ids", MMP_TYPE_I32), *lat = mmpt_golden_array(g, "latents_init", MMP_TYPE_F32);
    mmp_array *sig_ref = mmpt_golden_array(g, "signal_hidden", MMP_TYPE_F32), *cond_ref = mmpt_golden_array(g, "conditioning", MMP_TYPE_F32);
    /* the golden's signal tokens are the last four positions: the pipeline's [-4:] */
    const mmp_tensor_info *pos = mmp_safetensors_find(g, "signal_positions");
    assert_non_null(pos);
    for (int i = 0; i < 4; i++) {
        int64_t v;
        memcpy(&v, (const char *)pos->data + 8 * i, 8);
        assert_int_equal(v, ids->dims[0] - 4 + i);
    }
    mmp_array *t = mmp_array_new(MMP_TYPE_F32, 1, (int64_t[]){ 1 });
    ((float *)t->data)[0] = 999.0f;
    const mmp_array *in[3] = { 0 };
    in[mmp_pipeline_find_input(p, "tokens")] = ids;
    in[mmp_pipeline_find_input(p, "latents")] = lat;
    in[mmp_pipeline_find_input(p, "timestep")] = t;
    mmp_array *out[3] = { 0 };
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    check_rel("nextgpt signal_hidden (pipeline)", out[mmp_pipeline_find_output(p, "signal_hidden")], sig_ref, 1e-4);
    check_rel("nextgpt conditioning (pipeline)", out[mmp_pipeline_find_output(p, "conditioning")], cond_ref, 1e-4);

    /* the UNet output against the UNet stage alone, fed the golden conditioning */
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = mmpt_data("gen/unet");
    mmp_stage *u = mmp_stage_new(mmp_registry_find(r, "generator.unet"), &sp);
    assert_non_null(u);
    const mmp_array *uin[3] = { lat, t, cond_ref };
    mmp_array *uout[1] = { NULL };
    assert_int_equal(mmp_stage_run(u, uin, uout), MMP_OK);
    check_rel("nextgpt noise vs unet(golden cond)", out[mmp_pipeline_find_output(p, "noise")], uout[0], 1e-4);
    mmp_array_free(uout[0]);
    mmp_stage_free(u);
    for (int i = 0; i < 3; i++) mmp_array_free(out[i]);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);

    /* the same from the golden signal hidden states through output-to-unet.pipe */
    snprintf(path, sizeof path, "%s", mmpt_data("../../pipelines/output-to-unet.pipe"));
    d = mmp_pipeline_desc_load(path);
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "projector", mmpt_data("proj/nextgpt_e2e/output_projector/model.safetensors")), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "unet", mmpt_data("gen/unet")), MMP_OK);
    p = mmp_pipeline_new(d, r, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    const mmp_array *in2[3] = { sig_ref, lat, t };
    assert_int_equal(mmp_pipeline_run(p, in2, out), MMP_OK);
    check_rel("output-to-unet conditioning", out[0], cond_ref, 1e-4);
    for (int i = 0; i < 2; i++) mmp_array_free(out[i]);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);

    mmp_array_free(ids); mmp_array_free(lat); mmp_array_free(sig_ref); mmp_array_free(cond_ref); mmp_array_free(t);
    mmp_safetensors_free(g);
    mmp_registry_free(r);
}

static void test_audio_vision_goldens(void **state) {
    (void)state;
    mmp_registry *r = registry_new();
    /* whisper: mel -> encoder, built in code */
    mmp_pipeline_desc *d = mmp_pipeline_desc_new("whisper");
    assert_int_equal(mmp_pipeline_desc_add_param(d, "model", NULL), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "enc", "encoder.whisper", "${model}", NULL, NULL), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_input(d, "mel", "enc.mel"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "hidden", "enc.hidden"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", mmpt_data("audio/whisper_encoder")), MMP_OK);
    mmp_pipeline *p = mmp_pipeline_new(d, r, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    mmp_safetensors *g = mmp_safetensors_open(mmpt_data("audio/whisper_encoder/io.safetensors"));
    mmp_array *mel = mmpt_golden_array(g, "input_features", MMP_TYPE_F32), *ref = mmpt_golden_array(g, "last_hidden_state", MMP_TYPE_F32);
    const mmp_array *in[1] = { mel };
    mmp_array *out[1] = { NULL };
    assert_int_equal(mmp_pipeline_run(p, in, out), MMP_OK);
    check_rel("whisper_encoder (pipeline)", out[0], ref, 1e-4);
    mmp_array_free(out[0]); mmp_array_free(mel); mmp_array_free(ref);
    mmp_safetensors_free(g);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);

    /* blip2: the stock file, with the Q-Former's own output (project=0) */
    char path[1024];
    snprintf(path, sizeof path, "%s", mmpt_data("../../pipelines/blip2-qformer.pipe"));
    d = mmp_pipeline_desc_load(path);
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", mmpt_data("proj/blip2_qformer")), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "options", "project=0"), MMP_OK);
    p = mmp_pipeline_new(d, r, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    g = mmp_safetensors_open(mmpt_data("proj/blip2_qformer/io.safetensors"));
    mmp_array *img = mmpt_golden_array(g, "encoder_hidden_states", MMP_TYPE_F32);
    ref = mmpt_golden_array(g, "last_hidden_state", MMP_TYPE_F32);
    /* this small golden model has no query_tokens: the golden's query_embeds are the queries */
    mmp_array *queries = mmpt_golden_array(g, "query_embeds", MMP_TYPE_F32);
    assert_true(mmp_pipeline_input_optional(p, 1));
    const mmp_array *qin[2] = { img, queries };
    assert_int_equal(mmp_pipeline_run(p, qin, out), MMP_OK);
    check_rel("blip2_qformer (blip2-qformer.pipe)", out[0], ref, 1e-4);
    mmp_array_free(out[0]); mmp_array_free(img); mmp_array_free(ref); mmp_array_free(queries);
    mmp_safetensors_free(g);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(r);
}

/* llava_mixtral and qwen2_audio end to end through the stock chat pipelines: media encoder ->
 * projector -> prompt.embed (splice at the marker tokens) -> backbone.llm: logits. */
static void run_chat_golden(const char *pipe, const char *model, const char *io, const char *media_in, const char *media_tensor) {
    mmp_registry *r = registry_new();
    char path[1024], mpath[1024];
    snprintf(path, sizeof path, "%s/%s", MMP_SOURCE_DIR "/pipelines", pipe);
    snprintf(mpath, sizeof mpath, "%s", model);
    mmp_pipeline_desc *d = mmp_pipeline_desc_load(path);
    if (!d) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", mpath), MMP_OK);
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    if (!p) fail_msg("%s: %s", pipe, mmp_last_error());
    mmp_safetensors *g = mmp_safetensors_open(io);
    assert_non_null(g);
    mmp_array *ids = mmpt_golden_array(g, "input_ids", MMP_TYPE_I32), *media = mmpt_golden_array(g, media_tensor, MMP_TYPE_F32);
    mmp_array *ref = mmpt_golden_array(g, "logits", MMP_TYPE_F32);
    const mmp_array *in[2] = { 0 };
    in[mmp_pipeline_find_input(p, "tokens")] = ids;
    in[mmp_pipeline_find_input(p, media_in)] = media;
    mmp_array *out[3] = { 0 };
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("%s: %s", pipe, mmp_last_error());
    char what[128];
    snprintf(what, sizeof what, "%s logits", pipe);
    check_rel(what, out[mmp_pipeline_find_output(p, "logits")], ref, 1e-4);
    for (int i = 0; i < mmp_pipeline_n_outputs(p); i++) { mmp_array_free(out[i]); out[i] = NULL; }
    /* one marker fewer than media rows: refused, naming both counts */
    int32_t *t = ids->data;
    int64_t k = ids->dims[0] - 1;
    while (k >= 0 && t[k] != 255) k--;
    assert_true(k >= 0);
    t[k] = t[0];
    assert_int_equal(mmp_pipeline_run(p, in, out), MMP_ERR_SHAPE);
    expect_msg((const char *[]){ "stage 'prompt'", "marker tokens (id 255)", "media embeddings have", NULL });
    mmp_array_free(ids); mmp_array_free(media); mmp_array_free(ref);
    mmp_safetensors_free(g);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(r);
}

static void test_chat_goldens(void **state) {
    (void)state;
    char model[1024], io[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("pipe/llava_mixtral"));
    snprintf(io, sizeof io, "%s", mmpt_data("pipe/llava_mixtral/io.safetensors"));
    run_chat_golden("llava-chat.pipe", model, io, "pixels", "pixel_values");
    snprintf(model, sizeof model, "%s", mmpt_data("audio/qwen2_audio"));
    snprintf(io, sizeof io, "%s", mmpt_data("audio/qwen2_audio/io.safetensors"));
    run_chat_golden("qwen2-audio-chat.pipe", model, io, "mel", "input_features");
}

/* ---- the worked example of docs/adding-a-stage.md stays true ---- */

static void test_doc_example(void **state) {
    (void)state;
    /* every ```c block of the document is a verbatim piece of samples/examples/custom_stage.c */
    char *doc = read_text(mmpt_data("../../docs/adding-a-stage.md"));
    char *src = read_text(mmpt_data("../../samples/examples/custom_stage.c"));
    assert_non_null(doc);
    assert_non_null(src);
    int blocks = 0;
    for (char *p = doc; (p = strstr(p, "```c\n"));) {
        p += 5;
        char *e = strstr(p, "```");
        assert_non_null(e);
        *e = 0;
        if (!strstr(src, p)) fail_msg("docs/adding-a-stage.md code block %d is not in custom_stage.c:\n%s", blocks + 1, p);
        blocks++;
        p = e + 3;
    }
    assert_true(blocks >= 4);
    free(doc);
    free(src);
    /* and the example kind behaves as the document says: width=4 narrows both ports */
    mmp_stage_params sp = mmp_stage_params_default();
    sp.options = "k=0.5,width=4";
    mmp_stage *s = mmp_stage_new(&example_scale_kind, &sp);
    assert_non_null(s);
    char buf[64];
    assert_string_equal(mmp_port_type_str(&mmp_stage_input(s, 0)->type, buf, sizeof buf), "hidden[*,4] f32");
    mmp_array *x = arr2(2, 4, 1), *y = NULL;
    const mmp_array *in[1] = { x };
    assert_int_equal(mmp_stage_run(s, in, &y), MMP_OK);
    for (int i = 0; i < 8; i++) assert_true(((float *)y->data)[i] == 0.5f * ((float *)x->data)[i]);
    mmp_array_free(y);
    mmp_array *x3 = arr2(2, 3, 1);
    in[0] = x3;
    assert_int_equal(mmp_stage_run(s, in, &y), MMP_ERR_SHAPE);
    mmp_array_free(x3);
    mmp_array_free(x);
    mmp_stage_free(s);
}

/* ---- threads: one loaded model, two contexts; two pipelines ---- */

#define N_TOK 24
typedef struct llm_job {
    const mmp_llm *m;
    int32_t ids[N_TOK];
    float logits[N_TOK * 512];
    enum mmp_status st;
} llm_job;

static void *llm_job_run(void *arg) {
    llm_job *j = arg;
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    mmp_llm_ctx *c = mmp_llm_ctx_new(j->m, &cp);
    if (!c) { j->st = MMP_ERR_NOMEM; return NULL; }
    /* token by token, as generation does: many small graphs, all reading the shared weights */
    j->st = MMP_OK;
    for (int i = 0; i < N_TOK && j->st == MMP_OK; i++) {
        mmp_llm_batch b = { .n = 1, .tokens = &j->ids[i], .logits = &j->logits[i * 512] };
        j->st = mmp_llm_decode(c, &b);
    }
    mmp_llm_ctx_free(c);
    return NULL;
}

typedef struct pipe_job {
    mmp_pipeline *p;
    const mmp_array *tokens;
    mmp_array *out[1];
    enum mmp_status st;
} pipe_job;

static void *pipe_job_run(void *arg) {
    pipe_job *j = arg;
    const mmp_array *in[1] = { j->tokens };
    for (int rep = 0; rep < 5; rep++) {
        mmp_array_free(j->out[0]);
        j->out[0] = NULL;
        if ((j->st = mmp_pipeline_run(j->p, in, j->out)) != MMP_OK) break;
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    const char *model = mmpt_data("../../models/stories260K.gguf");
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s", model);
    mmp_llm *m = mmp_llm_load(mpath, NULL);
    if (!m) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_llm_get_hparams(m)->n_vocab, 512);
    static llm_job jobs[4];
    for (int k = 0; k < 4; k++) {
        jobs[k].m = m;
        for (int i = 0; i < N_TOK; i++) jobs[k].ids[i] = 1 + (int32_t)((i * 37 + (k % 2) * 11) % 500);
    }
    /* one at a time: jobs 0 and 1 (two different prompts) */
    llm_job_run(&jobs[0]);
    llm_job_run(&jobs[1]);
    assert_int_equal(jobs[0].st, MMP_OK);
    assert_int_equal(jobs[1].st, MMP_OK);
    /* the same two prompts at the same time on the same model */
    pthread_t th[2];
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_create(&th[k], NULL, llm_job_run, &jobs[2 + k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(jobs[2 + k].st, MMP_OK);
        assert_memory_equal(jobs[2 + k].logits, jobs[k].logits, sizeof jobs[k].logits);
    }
    printf("  mmp_llm: 2 threads x 1 model, %d tokens each: logits identical to one thread\n", N_TOK);
    mmp_llm_free(m);

    /* two pipelines (backbone.llm on the same file) in two threads vs one pipeline alone */
    mmp_registry *r = mmp_registry_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse("param model\nstage llm backbone.llm model=${model}\n"
                                                   "input tokens -> llm.tokens\noutput logits <- llm.logits[-1:]\n", "t.pipe");
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", mpath), MMP_OK);
    mmp_pipeline *p1 = mmp_pipeline_new(d, r, NULL), *p2 = mmp_pipeline_new(d, r, NULL);
    assert_non_null(p1);
    assert_non_null(p2);
    mmp_array *tok = mmp_array_new(MMP_TYPE_I32, 1, (int64_t[]){ N_TOK });
    memcpy(tok->data, jobs[0].ids, sizeof jobs[0].ids);
    pipe_job alone = { .p = p1, .tokens = tok }, a = { .p = p1, .tokens = tok }, b = { .p = p2, .tokens = tok };
    pipe_job_run(&alone);
    assert_int_equal(alone.st, MMP_OK);
    /* the pipeline's last-position logits equal the token-by-token run's */
    assert_true(mmpt_rel_l2(alone.out[0]->data, &jobs[0].logits[(N_TOK - 1) * 512], 512) <= 1e-5);
    assert_int_equal(pthread_create(&th[0], NULL, pipe_job_run, &a), 0);
    assert_int_equal(pthread_create(&th[1], NULL, pipe_job_run, &b), 0);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    assert_int_equal(a.st, MMP_OK);
    assert_int_equal(b.st, MMP_OK);
    assert_memory_equal(a.out[0]->data, alone.out[0]->data, 512 * sizeof(float));
    assert_memory_equal(b.out[0]->data, alone.out[0]->data, 512 * sizeof(float));
    printf("  pipelines: 2 threads x 5 runs: last-position logits identical to one thread\n");
    mmp_array_free(alone.out[0]); mmp_array_free(a.out[0]); mmp_array_free(b.out[0]);
    mmp_array_free(tok);
    mmp_pipeline_free(p1);
    mmp_pipeline_free(p2);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(r);
}

/* ---- parser details ---- */

static void test_parse_details(void **state) {
    (void)state;
    mmp_registry *r = test_registry();
    const char *text =
        "# a comment line\n"
        "pipeline demo   # trailing comment\n"
        "param k = 3\n"
        "param w=4\n"
        "stage s1 example.scale options=\"k=${k}\"\n"
        "stage s2 example.scale options=k=2,width=${w}\r\n"
        "input x -> s1.x,\n"
        "s1.y -> s2.x\n"
        "output y <- s2.y\n";
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(text, "demo.pipe");
    if (!d) fail_msg("%s", mmp_last_error());
    assert_string_equal(mmp_pipeline_desc_name(d), "demo");
    mmp_pipeline *p = mmp_pipeline_new(d, r, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    char buf[64];
    assert_string_equal(mmp_port_type_str(mmp_pipeline_output_type(p, 0), buf, sizeof buf), "hidden[*,4] f32");
    mmp_array *x = arr2(1, 4, 1), *y = NULL;
    const mmp_array *in[1] = { x };
    assert_int_equal(mmp_pipeline_run(p, in, &y), MMP_OK);
    for (int i = 0; i < 4; i++) assert_true(((float *)y->data)[i] == 6.0f * ((float *)x->data)[i]);
    mmp_array_free(y);
    /* s1 is free-width, s2 is 4 wide: a 5-wide input passes s1 and is stopped at s2, by name */
    mmp_array *x5 = arr2(1, 5, 1);
    in[0] = x5;
    assert_int_equal(mmp_pipeline_run(p, in, &y), MMP_ERR_SHAPE);
    expect_msg((const char *[]){ "demo.pipe:6: stage 's2'", "hidden[1,5] f32", "hidden[*,4] f32", NULL });
    assert_null(y);
    mmp_array_free(x5);
    mmp_array_free(x);
    mmp_pipeline_free(p);
    /* a set parameter overrides the default */
    assert_int_equal(mmp_pipeline_desc_set_param(d, "w", "5"), MMP_OK);
    p = mmp_pipeline_new(d, r, NULL);
    assert_string_equal(mmp_port_type_str(mmp_pipeline_output_type(p, 0), buf, sizeof buf), "hidden[*,5] f32");
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    /* unnamed pipelines are named after the file */
    d = mmp_pipeline_desc_parse("stage a test.w8\ninput x -> a.x\noutput y <- a.y\n", "dir/my pipe.v2.pipe");
    assert_non_null(d);
    assert_string_equal(mmp_pipeline_desc_name(d), "my_pipe");
    mmp_pipeline_desc_free(d);
    /* parameters using parameters; substituted option values keep their commas and backslashes */
    const char *nested =
        "param a = x,y\\z\n"                /* x,y\z: 5 characters, the backslash kept */
        "param b = <${a}>\n"                    /* 7 */
        "stage s test.optlen options=msg=${b}\n"
        "input x -> s.x\noutput y <- s.y\n";
    d = mmp_pipeline_desc_parse(nested, "nested.pipe");
    if (!d) fail_msg("%s", mmp_last_error());
    p = mmp_pipeline_new(d, r, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    assert_string_equal(mmp_port_type_str(mmp_pipeline_output_type(p, 0), buf, sizeof buf), "hidden[*,7] f32");
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    /* a loop between parameters is an error at validation, not a hang */
    d = mmp_pipeline_desc_parse("param a = ${b}\nparam b = ${a}\nstage s test.optlen options=msg=${a}\n"
                                "input x -> s.x\noutput y <- s.y\n", "loop.pipe");
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_validate(d, r), MMP_ERR_FORMAT);
    expect_msg((const char *[]){ "loop.pipe:3", "refer to each other in a loop", NULL });
    mmp_pipeline_desc_free(d);
    /* the option splitter itself */
    {
        mmp__opt o[4];
        char *st = NULL;
        assert_int_equal(mmp__opts_parse("k", "a=1,b=x\\,y,,c,d=e=f", o, 4, &st), 4);
        assert_string_equal(o[0].key, "a"); assert_string_equal(o[0].val, "1");
        assert_string_equal(o[1].key, "b"); assert_string_equal(o[1].val, "x,y");
        assert_string_equal(o[2].key, "c"); assert_string_equal(o[2].val, "");
        assert_true(o[2].bare);            /* "c": a flag */
        assert_false(o[0].bare);
        assert_string_equal(o[3].key, "d"); assert_string_equal(o[3].val, "e=f");
        free(st);
        assert_int_equal(mmp__opts_parse("k", "a=1,b=2,c=3", o, 2, &st), -1);
        expect_msg((const char *[]){ "k: more than 2 options", NULL });
        assert_int_equal(mmp__opts_parse("k", "=1", o, 4, &st), -1);
        assert_int_equal(mmp__opts_parse("k", "a=1\\", o, 4, &st), -1);
        expect_msg((const char *[]){ "lone backslash", NULL });
        assert_int_equal(mmp__opts_parse("k", NULL, o, 4, &st), 0);
    }
    /* NULLs */
    assert_null(mmp_pipeline_desc_parse(NULL, NULL));
    assert_int_equal(mmp_pipeline_desc_validate(NULL, r), MMP_ERR_INVALID_ARG);
    assert_null(mmp_pipeline_new(NULL, r, NULL));
    mmp_pipeline_free(NULL);
    mmp_pipeline_desc_free(NULL);
    mmp_registry_free(r);
}

/* ---- inputs and outputs from / to the outside world ---- */

static void test_io_arrays(void **state) {
    (void)state;
    /* text */
    mmp_array *t = mmp_array_from_text("héllo", 6);
    assert_non_null(t);
    assert_int_equal(t->type, MMP_TYPE_U8);
    assert_int_equal(t->dims[0], 6);
    char *s = mmp_array_to_text(t);
    assert_string_equal(s, "héllo");
    free(s);
    mmp_array_free(t);
    assert_null(mmp_array_from_text("", 0));
    expect_msg((const char *[]){ "empty", NULL });
    assert_null(mmp_array_from_text(NULL, 3));
    mmp_array *f = arr2(2, 2, 0);
    assert_null(mmp_array_to_text(f));
    expect_msg((const char *[]){ "not a text array", NULL });
    /* RGB bytes -> [3,H,W] /255 -> back to the same bytes */
    uint8_t rgb[2 * 3 * 3];
    for (int i = 0; i < (int)sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37 + 5);
    mmp_array *im = mmp_array_from_rgb(rgb, 3, 2);
    assert_non_null(im);
    assert_int_equal(im->n_dims, 3);
    assert_int_equal(im->dims[0], 3);
    assert_int_equal(im->dims[1], 2);
    assert_int_equal(im->dims[2], 3);
    assert_true(((float *)im->data)[1 * 6 + 4] == rgb[4 * 3 + 1] / 255.0f);   /* channel 1, pixel 4 */
    mmp_image *back = mmp_array_to_image(im);
    assert_non_null(back);
    assert_memory_equal(back->data, rgb, sizeof rgb);
    mmp_image_free(back);
    mmp_array_free(im);
    assert_null(mmp_array_from_rgb(rgb, 0, 2));
    assert_null(mmp_array_to_image(f));
    mmp_array_free(f);
    /* image files: the decoded pixels, /255 */
    mmp_array *jp = mmp_array_from_image_file(mmpt_data("vision/baseline.jpg"));
    if (!jp) fail_msg("%s", mmp_last_error());
    mmp_image *ref = mmp_image_load(mmpt_data("vision/baseline.jpg"), 0);
    assert_non_null(ref);
    assert_int_equal(jp->dims[1], ref->height);
    assert_int_equal(jp->dims[2], ref->width);
    back = mmp_array_to_image(jp);
    assert_memory_equal(back->data, ref->data, (size_t)ref->width * ref->height * 3);
    mmp_image_free(back);
    mmp_image_free(ref);
    mmp_array_free(jp);
    assert_null(mmp_array_from_image_file("/nonexistent/dog.png"));
    expect_msg((const char *[]){ "/nonexistent/dog.png", NULL });
    /* audio: a file, and PCM at 16 kHz mono passes through unchanged in length */
    mmp_array *au = mmp_array_from_audio_file(mmpt_data("audio/jfk.wav"), 60.0);
    if (!au) fail_msg("%s", mmp_last_error());
    assert_int_equal(au->n_dims, 1);
    assert_true(au->dims[0] > 16000 * 10 && au->dims[0] < 16000 * 12);   /* jfk.wav is 11 s */
    mmp_array *pc = mmp_array_from_pcm(au->data, au->dims[0], 1, 16000);
    if (!pc) fail_msg("%s", mmp_last_error());
    assert_int_equal(pc->dims[0], au->dims[0]);
    mmp_array_free(pc);
    mmp_array_free(au);
    assert_null(mmp_array_from_audio_file("/nonexistent.wav", 10));
    expect_msg((const char *[]){ "/nonexistent.wav", NULL });
    assert_null(mmp_array_from_pcm(NULL, 10, 1, 16000));
}

/* ---- the CLI: mmpipe pipeline show / run ---- */

static int sh(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli(void **state) {
    (void)state;
    char pipes[1024], cmd[8192], tmpl[] = "/tmp/mmpt-pipe-XXXXXX";
    snprintf(pipes, sizeof pipes, "%s", mmpt_data("../../pipelines"));
    char *tmp = mkdtemp(tmpl);
    assert_non_null(tmp);
    /* every stock file validates through `pipeline show`, as text and as DOT */
    DIR *dp = opendir(pipes);
    assert_non_null(dp);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".pipe")) continue;
        snprintf(cmd, sizeof cmd, "'%s' pipeline show '%s/%s' > %s/show.txt 2>&1 && '%s' pipeline show '%s/%s' --dot %s/g.dot 2>/dev/null",
                 MMP_CLI_PATH, pipes, e->d_name, tmp, MMP_CLI_PATH, pipes, e->d_name, tmp);
        if (sh(cmd) != 0) fail_msg("pipeline show %s failed", e->d_name);
        n++;
    }
    closedir(dp);
    assert_true(n >= 8);
    char path[2048];
    snprintf(path, sizeof path, "%s/g.dot", tmp);
    char *dot = read_text(path);
    assert_non_null(dot);
    assert_non_null(strstr(dot, "digraph"));
    free(dot);

    /* a bad file: exit 1, the message names the line and both ports */
    snprintf(path, sizeof path, "%s/bad.pipe", tmp);
    FILE *f = fopen(path, "w");
    fprintf(f, "stage enc encoder.whisper model=x\nstage qf projector.qformer model=y\ninput mel -> enc.mel\n"
               "enc.hidden -> qf.queries\ninput img -> qf.image\noutput q <- qf.embeddings\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' pipeline show '%s' > %s/err.txt 2>&1", MMP_CLI_PATH, path, tmp);
    assert_int_equal(sh(cmd), 1);
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    char *err = read_text(path);
    assert_non_null(err);
    printf("  %s", err);
    assert_non_null(strstr(err, "bad.pipe:4: enc.hidden is hidden[*,*] f32 but qf.queries wants embeddings[*,*] f32"));
    free(err);

    /* run: output-to-unet.pipe on the nextgpt_e2e golden, outputs read back */
    char gold[1024];
    snprintf(gold, sizeof gold, "%s", mmpt_data("pipe/nextgpt_e2e/io.safetensors"));
    snprintf(cmd, sizeof cmd,
             "'%s' pipeline run '%s/output-to-unet.pipe' --set projector='%s' --set unet='%s' --in hidden='%s:signal_hidden' "
             "--in latents='%s:latents_init' --in timestep=values:999 -t 2 -q -o '%s/out' > %s/run.txt 2>&1",
             MMP_CLI_PATH, pipes, mmpt_data("proj/nextgpt_e2e/output_projector/model.safetensors"), mmpt_data("gen/unet"), gold, gold,
             tmp, tmp);
    if (sh(cmd) != 0) {
        snprintf(path, sizeof path, "%s/run.txt", tmp);
        char *o = read_text(path);
        fail_msg("pipeline run failed: %s", o ? o : "");
    }
    snprintf(path, sizeof path, "%s/out/outputs.safetensors", tmp);
    mmp_safetensors *st = mmp_safetensors_open(path), *g = mmp_safetensors_open(gold);
    assert_non_null(st);
    assert_non_null(g);
    mmp_array *c = mmpt_golden_array(st, "conditioning", MMP_TYPE_F32), *cref = mmpt_golden_array(g, "conditioning", MMP_TYPE_F32);
    check_rel("CLI run conditioning", c, cref, 1e-4);
    assert_non_null(mmp_safetensors_find(st, "noise"));
    mmp_array_free(c);
    mmp_array_free(cref);
    mmp_safetensors_free(st);
    mmp_safetensors_free(g);
    /* an unknown parameter and a missing input are usage errors with a message */
    snprintf(cmd, sizeof cmd, "'%s' pipeline run '%s/vae-decode.pipe' --set modle=x -o '%s/o2' 2>/dev/null", MMP_CLI_PATH, pipes, tmp);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, "'%s' pipeline run '%s/output-to-unet.pipe' --set projector='%s' --set unet='%s' -o '%s/o3' 2>/dev/null",
             MMP_CLI_PATH, pipes, mmpt_data("proj/nextgpt_e2e/output_projector/model.safetensors"), mmpt_data("gen/unet"), tmp);
    assert_int_equal(sh(cmd), 2);

    /* stock pipelines by name; a text input and a streamed text output: the chat pipeline with
     * no template gives what `mmpipe run` prints after the prompt */
    char *out = NULL, cerr[8192];
    int rc = mmpt_run_cli(MMP_TEST_DATA, &out, NULL, cerr, sizeof cerr, "pipeline list");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "  chat "));
    assert_non_null(strstr(out, "  txt2img "));
    free(out);
    char *ref = NULL;
    rc = mmpt_run_cli(MMP_TEST_DATA, &ref, NULL, cerr, sizeof cerr,
                      "run -m ../../models/stories260K.gguf -p 'Once upon a time' -n 40 --temp 0");
    assert_int_equal(rc, 0);
    rc = mmpt_run_cli(MMP_TEST_DATA, &out, NULL, cerr, sizeof cerr,
                      "pipeline run chat --set model=../../models/stories260K.gguf --set template=none --set temp=0 --set n=40 "
                      "--in text='Once upon a time'");
    if (rc) fail_msg("pipeline run chat: %s", cerr);
    printf("  pipeline run chat: %s", out);
    assert_non_null(strstr(cerr, "tokens/s"));
    assert_non_null(strstr(cerr, "'tokens' is not kept"));
    assert_true(strlen(ref) > strlen("Once upon a time"));
    assert_int_equal(strncmp(ref, "Once upon a time", 16), 0);
    /* the continuation, byte for byte (the pipeline ends its streamed text with a newline) */
    assert_int_equal(strlen(out), strlen(ref + 16) + 1);
    assert_memory_equal(out, ref + 16, strlen(ref + 16));
    assert_int_equal(out[strlen(out) - 1], '\n');
    free(out);
    /* the same text from a file (@FILE), kept under -o as NAME.txt */
    snprintf(path, sizeof path, "%s/prompt.txt", tmp);
    f = fopen(path, "w");
    fputs("Once upon a time", f);
    fclose(f);
    rc = mmpt_run_cli(MMP_TEST_DATA, &out, NULL, cerr, sizeof cerr,
                      "pipeline run chat --set model=../../models/stories260K.gguf --set template=none --set temp=0 --set n=40 "
                      "--in text=@%s -q -o %s/chat", path, tmp);
    if (rc) fail_msg("pipeline run chat @file: %s", cerr);
    free(out);
    snprintf(path, sizeof path, "%s/chat/text.txt", tmp);
    char *txt = read_text(path);
    assert_non_null(txt);
    assert_string_equal(txt, ref + 16);
    free(txt);
    free(ref);
    /* errors: an unknown stock name lists the names; a text input given from a missing file; a
     * pipeline without text outputs needs -o */
    rc = mmpt_run_cli(MMP_TEST_DATA, NULL, NULL, cerr, sizeof cerr, "pipeline show no-such-pipe");
    assert_int_equal(rc, 1);
    assert_non_null(strstr(cerr, "no stock pipeline named 'no-such-pipe'"));
    assert_non_null(strstr(cerr, "image-chat"));
    rc = mmpt_run_cli(MMP_TEST_DATA, NULL, NULL, cerr, sizeof cerr,
                      "pipeline run chat --set model=../../models/stories260K.gguf --in text=@/nonexistent/p.txt");
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(cerr, "/nonexistent/p.txt"));
    rc = mmpt_run_cli(MMP_TEST_DATA, NULL, NULL, cerr, sizeof cerr,
                      "pipeline run output-to-unet --set projector=%s --set unet=%s --in timestep=values:1",
                      mmpt_data("proj/nextgpt_e2e/output_projector/model.safetensors"), mmpt_data("gen/unet"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(cerr, "no text output"));
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    assert_int_equal(sh(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_in_code),
        cmocka_unit_test(test_parse_details),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_width_after_loading),
        cmocka_unit_test(test_stock_files),
        cmocka_unit_test(test_nextgpt_e2e),
        cmocka_unit_test(test_audio_vision_goldens),
        cmocka_unit_test(test_chat_goldens),
        cmocka_unit_test(test_doc_example),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_io_arrays),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
