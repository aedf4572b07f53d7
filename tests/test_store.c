/* The model store (store.h) through the stage kinds: one HF folder used by four stages of
 * llava-chat.pipe is opened once and the LLM (prompt.embed + backbone.llm) loaded once; two
 * pipelines on one store share the LLM; two threads with one pipeline each on one store give
 * the results of a single run; options that change a model (the output projector's heads) do
 * not collide; a missing path fails naming it. Results with a store are compared BITWISE
 * against the same stages created one by one without a store (same thread count). */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAVA "pipe/llava_mixtral"
#define LLAVA_IO "pipe/llava_mixtral/io.safetensors"
#define QWEN2A "audio/qwen2_audio"
#define OUTPROJ "proj/nextgpt_e2e/output_projector/model.safetensors"
#define N_THREADS 2


static void assert_same(const char *what, const mmp_array *a, const mmp_array *b) {
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->n_dims, b->n_dims);
    for (int k = 0; k < a->n_dims; k++) assert_int_equal(a->dims[k], b->dims[k]);
    if (memcmp(a->data, b->data, mmp_array_nbytes(a)) != 0) fail_msg("%s: not bitwise identical", what);
}

static void print_stats(const char *what, mmp_store_stats s) {
    printf("# %s: files_open %lld, models_loaded %lld, file_opens %lld, model_loads %lld, hits %lld\n", what,
           (long long)s.files_open, (long long)s.models_loaded, (long long)s.file_opens, (long long)s.model_loads,
           (long long)s.hits);
}

/* ---- llava-chat.pipe on the golden inputs ---- */

typedef struct llava_io {
    char model[1024];
    mmp_array *pixels, *ids;
    /* reference outputs: the stages one by one, no store */
    mmp_array *emb, *logits, *hidden;
    mmp_array *golden_logits;
} llava_io;

static void io_open(llava_io *io) {
    memset(io, 0, sizeof *io);
    snprintf(io->model, sizeof io->model, "%s", mmpt_data(LLAVA));
    mmp_safetensors *g = mmp_safetensors_open(mmpt_data(LLAVA_IO));
    assert_non_null(g);
    io->pixels = mmpt_golden_array(g, "pixel_values", MMP_TYPE_F32);
    io->ids = mmpt_golden_array(g, "input_ids", MMP_TYPE_I32);
    io->golden_logits = mmpt_golden_array(g, "logits", MMP_TYPE_F32);
    mmp_safetensors_free(g);
}

static void io_close(llava_io *io) {
    mmp_array_free(io->pixels);
    mmp_array_free(io->ids);
    mmp_array_free(io->emb);
    mmp_array_free(io->logits);
    mmp_array_free(io->hidden);
    mmp_array_free(io->golden_logits);
}

static mmp_stage *stage(const mmp_registry *r, const char *kind, const char *model, const char *options) {
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = model;
    sp.options = options;
    sp.n_threads = N_THREADS;
    mmp_stage *s = mmp_stage_new(mmp_registry_find(r, kind), &sp);
    if (!s) fail_msg("%s: %s", kind, mmp_last_error());
    return s;
}

/* The reference: clip -> mlp -> prompt.embed -> backbone.llm, each stage made on its own with
 * no store (each opens and loads its own copy, as before the store). */
static void io_reference(llava_io *io, const mmp_registry *r) {
    mmp_stage *clip = stage(r, "encoder.clip", io->model, "layer=-2,drop_cls=1");
    mmp_stage *mlp = stage(r, "projector.mlp", io->model, NULL);
    mmp_stage *prompt = stage(r, "prompt.embed", io->model, NULL);
    mmp_stage *llm = stage(r, "backbone.llm", io->model, NULL);
    mmp_array *hid = NULL, *pe = NULL, *out2[2] = {0};
    const mmp_array *in1[1] = {io->pixels};
    assert_int_equal(mmp_stage_run(clip, in1, &hid), MMP_OK);
    const mmp_array *in2[1] = {hid};
    assert_int_equal(mmp_stage_run(mlp, in2, &io->emb), MMP_OK);
    const mmp_array *in3[2] = {io->ids, io->emb};
    assert_int_equal(mmp_stage_run(prompt, in3, &pe), MMP_OK);
    const mmp_array *in4[2] = {NULL, pe};
    assert_int_equal(mmp_stage_run(llm, in4, out2), MMP_OK);
    io->hidden = out2[0];
    io->logits = out2[1];
    mmp_array_free(hid);
    mmp_array_free(pe);
    mmp_stage_free(clip);
    mmp_stage_free(mlp);
    mmp_stage_free(prompt);
    mmp_stage_free(llm);
    /* the reference itself is right: golden llava_mixtral logits <= 1e-4 relative */
    assert_int_equal(mmp_array_nelements(io->logits), mmp_array_nelements(io->golden_logits));
    MMPT_ASSERT_REL_LE(io->logits->data, io->golden_logits->data, (size_t)mmp_array_nelements(io->logits), 1e-4);
}

static mmp_pipeline *llava_pipeline(const llava_io *io, const mmp_registry *r, mmp_store *store) {
    mmp_pipeline_desc *d = mmp_pipeline_desc_load(MMP_SOURCE_DIR "/pipelines/llava-chat.pipe");
    if (!d) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", io->model), MMP_OK);
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = N_THREADS;
    pp.store = store;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    mmp_pipeline_desc_free(d);
    if (!p) fail_msg("llava-chat.pipe: %s", mmp_last_error());
    return p;
}

/* Run the pipeline once; 0 when every output is bitwise the reference (no cmocka calls: this
 * runs in threads too). */
static int llava_run_check(mmp_pipeline *p, const llava_io *io) {
    const mmp_array *in[2] = {0};
    in[mmp_pipeline_find_input(p, "pixels")] = io->pixels;
    in[mmp_pipeline_find_input(p, "tokens")] = io->ids;
    mmp_array *out[3] = {0};
    if (mmp_pipeline_run(p, in, out) != MMP_OK) return -1;
    const mmp_array *want[3] = {io->emb, io->logits, io->hidden};
    const char *names[3] = {"image_embeddings", "logits", "hidden"};
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        const mmp_array *a = out[mmp_pipeline_find_output(p, names[i])], *b = want[i];
        if (!a || a->n_dims != b->n_dims || mmp_array_nbytes(a) != mmp_array_nbytes(b) ||
            memcmp(a->data, b->data, mmp_array_nbytes(a)) != 0)
            bad |= 1 << i;
    }
    for (int i = 0; i < 3; i++) mmp_array_free(out[i]);
    return bad;
}

static int setup(void **state) {
    llava_io *io = calloc(1, sizeof *io);
    io_open(io);
    mmp_registry *r = mmp_registry_new();
    io_reference(io, r);
    mmp_registry_free(r);
    *state = io;
    return 0;
}

static int teardown(void **state) {
    io_close(*state);
    free(*state);
    return 0;
}

/* One pipeline: four stages on one folder, one open; the LLM loaded once for prompt.embed and
 * backbone.llm. */
static void test_one_pipeline(void **state) {
    llava_io *io = *state;
    mmp_registry *r = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    assert_non_null(store);
    mmp_pipeline *p = llava_pipeline(io, r, store);
    mmp_store_stats s = mmp_store_get_stats(store);
    print_stats("llava-chat.pipe", s);
    assert_int_equal(s.files_open, 1);    /* the one HF folder */
    assert_int_equal(s.file_opens, 1);
    /* ViT (clip), MLP projector, LLM: prompt.embed and backbone.llm meet on one LLM */
    assert_int_equal(s.models_loaded, 3);
    assert_int_equal(s.model_loads, 3);
    assert_true(s.hits >= 2);             /* the LLM for backbone.llm, the folder for the LLM */
    assert_int_equal(llava_run_check(p, io), 0);
    assert_int_equal(llava_run_check(p, io), 0);   /* again: per-stage state is reset */
    mmp_pipeline_free(p);
    s = mmp_store_get_stats(store);
    assert_int_equal(s.files_open, 0);
    assert_int_equal(s.models_loaded, 0);
    mmp_store_free(store);
    /* a pipeline's own store (params.store NULL) behaves the same */
    p = llava_pipeline(io, r, NULL);
    assert_int_equal(llava_run_check(p, io), 0);
    mmp_pipeline_free(p);
    mmp_registry_free(r);
}

/* Two pipelines on one caller store share the LLM (read-only); the ViT and the MLP keep
 * scratch state and are one per pipeline. */
static void test_two_pipelines(void **state) {
    llava_io *io = *state;
    mmp_registry *r = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    mmp_pipeline *p1 = llava_pipeline(io, r, store);
    mmp_store_stats s1 = mmp_store_get_stats(store);
    mmp_pipeline *p2 = llava_pipeline(io, r, store);
    mmp_store_stats s2 = mmp_store_get_stats(store);
    print_stats("after pipeline 1", s1);
    print_stats("after pipeline 2", s2);
    assert_int_equal(s2.files_open, 1);
    assert_int_equal(s2.file_opens, 1);
    /* the second pipeline loads only its own ViT and MLP, not the LLM */
    assert_int_equal(s2.model_loads - s1.model_loads, 2);
    assert_int_equal(s2.models_loaded, 5);
    assert_true(s2.hits >= s1.hits + 2);
    assert_int_equal(llava_run_check(p1, io), 0);
    assert_int_equal(llava_run_check(p2, io), 0);
    mmp_pipeline_free(p1);
    mmp_store_stats s3 = mmp_store_get_stats(store);
    assert_int_equal(s3.files_open, 1);
    assert_int_equal(s3.models_loaded, 3);
    assert_int_equal(llava_run_check(p2, io), 0);   /* still works on the shared LLM */
    mmp_pipeline_free(p2);
    s3 = mmp_store_get_stats(store);
    print_stats("after freeing both", s3);
    assert_int_equal(s3.files_open, 0);
    assert_int_equal(s3.models_loaded, 0);
    mmp_store_free(store);
    mmp_registry_free(r);
}

/* Two threads, one pipeline each on one store, running at the same time. */
typedef struct worker {
    mmp_pipeline *p;
    const llava_io *io;
    pthread_barrier_t *start;
    int bad;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < 3 && !w->bad; i++) w->bad = llava_run_check(w->p, w->io);
    return NULL;
}

static void test_threads(void **state) {
    llava_io *io = *state;
    mmp_registry *r = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    worker w[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) w[i] = (worker){.p = llava_pipeline(io, r, store), .io = io, .start = &start};
    mmp_store_stats s = mmp_store_get_stats(store);
    print_stats("two threads", s);
    assert_int_equal(s.model_loads, 5);   /* one LLM for both */
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (w[i].bad) fail_msg("thread %d: outputs differ from the single run (mask %d): %s", i, w[i].bad, mmp_last_error());
        mmp_pipeline_free(w[i].p);
    }
    pthread_barrier_destroy(&start);
    s = mmp_store_get_stats(store);
    assert_int_equal(s.files_open, 0);
    assert_int_equal(s.models_loaded, 0);
    mmp_store_free(store);
    mmp_registry_free(r);
}

/* ---- the other converted kinds ---- */

/* qwen2-audio-chat.pipe: whisper, the audio projector, prompt.embed and backbone.llm on one
 * folder: one open, one LLM. */
static void test_audio_pipeline(void **state) {
    (void)state;
    char model[1024];
    snprintf(model, sizeof model, "%s", mmpt_data(QWEN2A));
    mmp_registry *r = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_load(MMP_SOURCE_DIR "/pipelines/qwen2-audio-chat.pipe");
    if (!d) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", model), MMP_OK);
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.store = store;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    if (!p) fail_msg("qwen2-audio-chat.pipe: %s", mmp_last_error());
    mmp_store_stats s = mmp_store_get_stats(store);
    print_stats("qwen2-audio-chat.pipe", s);
    assert_int_equal(s.files_open, 1);
    assert_int_equal(s.file_opens, 1);
    assert_int_equal(s.model_loads, 3);   /* whisper, projector, one LLM */
    /* frontend.mel reads the config through the store: no second open */
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = model;
    sp.store = store;
    mmp_stage *mel = mmp_stage_new(mmp_registry_find(r, "frontend.mel"), &sp);
    if (!mel) fail_msg("frontend.mel: %s", mmp_last_error());
    s = mmp_store_get_stats(store);
    assert_int_equal(s.file_opens, 1);
    assert_int_equal(s.files_open, 1);
    mmp_stage_free(mel);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    s = mmp_store_get_stats(store);
    assert_int_equal(s.files_open, 0);
    assert_int_equal(s.models_loaded, 0);
    mmp_store_free(store);
    mmp_registry_free(r);
}

/* projector.output: the same options share one object, other options load another; results
 * equal those of a stage without a store. */
static void test_outproj_keys(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s", mmpt_data(OUTPROJ));
    mmp_registry *r = mmp_registry_new();
    const mmp_stage_kind *k = mmp_registry_find(r, "projector.output");
    mmp_store *store = mmp_store_new();
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = path;
    sp.options = "heads=4";
    mmp_stage *ref = mmp_stage_new(k, &sp);   /* no store */
    if (!ref) fail_msg("%s", mmp_last_error());
    sp.store = store;
    mmp_stage *a = mmp_stage_new(k, &sp), *b = mmp_stage_new(k, &sp);
    assert_non_null(a);
    assert_non_null(b);
    mmp_store_stats s = mmp_store_get_stats(store);
    assert_int_equal(s.model_loads, 1);
    sp.options = "heads=2";
    mmp_stage *c = mmp_stage_new(k, &sp);
    assert_non_null(c);
    s = mmp_store_get_stats(store);
    print_stats("projector.output heads=4 x2, heads=2", s);
    assert_int_equal(s.model_loads, 2);
    assert_int_equal(s.files_open, 1);
    int64_t n_in = mmp_stage_input(ref, 0)->type.dims[1];
    int64_t dims[2] = {4, n_in};
    mmp_array *x = mmp_array_new(MMP_TYPE_F32, 2, dims);
    mmpt_rand_fill(x->data, (size_t)(4 * n_in), 7, -1, 1);
    const mmp_array *in[2] = {x, NULL};
    mmp_array *y0 = NULL, *y1 = NULL, *y2 = NULL;
    assert_int_equal(mmp_stage_run(ref, in, &y0), MMP_OK);
    assert_int_equal(mmp_stage_run(a, in, &y1), MMP_OK);
    assert_int_equal(mmp_stage_run(c, in, &y2), MMP_OK);
    assert_same("projector.output through the store", y1, y0);
    assert_true(memcmp(y2->data, y0->data, mmp_array_nbytes(y0)) != 0);   /* 2 heads is another model */
    mmp_array_free(x); mmp_array_free(y0); mmp_array_free(y1); mmp_array_free(y2);
    mmp_stage_free(ref); mmp_stage_free(a); mmp_stage_free(b); mmp_stage_free(c);
    s = mmp_store_get_stats(store);
    assert_int_equal(s.files_open, 0);
    assert_int_equal(s.models_loaded, 0);
    mmp_store_free(store);
    mmp_registry_free(r);
}

/* A missing model through the store: the message names the path; nothing stays open. */
static void test_missing(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    const char *kinds[] = {"backbone.llm", "prompt.embed", "projector.mlp", "projector.qformer", "projector.output",
                           "projector.qwen2_audio", "encoder.whisper", "frontend.mel"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        mmp_stage_params sp = mmp_stage_params_default();
        sp.model_path = "/no/such/model-dir";
        sp.store = store;
        sp.scope = store;
        mmp_stage *s = mmp_stage_new(mmp_registry_find(r, kinds[i]), &sp);
        if (s) fail_msg("%s: created from a missing path", kinds[i]);
        printf("# %s\n", kinds[i]);
        mmpt_expect_error_mentions((const char *[]){"/no/such/model-dir", NULL});
    }
    /* a file that opens but holds another model: the loader's message names it, and the file
     * the store opened for it is closed again */
    char wrong[1024];
    snprintf(wrong, sizeof wrong, "%s", mmpt_data(OUTPROJ));
    const char *kinds2[] = {"backbone.llm", "projector.mlp", "encoder.whisper", "projector.qformer"};
    for (size_t i = 0; i < sizeof kinds2 / sizeof kinds2[0]; i++) {
        mmp_stage_params sp = mmp_stage_params_default();
        sp.model_path = wrong;
        sp.store = store;
        sp.scope = store;
        assert_null(mmp_stage_new(mmp_registry_find(r, kinds2[i]), &sp));
        printf("# %s on the output projector file\n", kinds2[i]);
        mmpt_expect_error_mentions((const char *[]){"model.safetensors", NULL});
        assert_int_equal(mmp_store_get_stats(store).files_open, 0);
    }
    /* and a whole pipeline */
    mmp_pipeline_desc *d = mmp_pipeline_desc_load(MMP_SOURCE_DIR "/pipelines/llava-chat.pipe");
    assert_non_null(d);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", "/no/such/model-dir"), MMP_OK);
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.store = store;
    assert_null(mmp_pipeline_new(d, r, &pp));
    mmpt_expect_error_mentions((const char *[]){"/no/such/model-dir", NULL});
    mmp_pipeline_desc_free(d);
    mmp_store_stats s = mmp_store_get_stats(store);
    assert_int_equal(s.files_open, 0);
    assert_int_equal(s.models_loaded, 0);
    assert_int_equal(s.model_loads, 0);
    mmp_store_free(store);
    mmp_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_pipelines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test(test_audio_pipeline),
        cmocka_unit_test(test_outproj_keys),
        cmocka_unit_test(test_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
