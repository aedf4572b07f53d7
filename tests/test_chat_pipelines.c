/* The stock chat pipelines (pipelines/image-chat.pipe, pipelines/audio-chat-*.pipe) and the
 * preprocess.image stage kind:
 *  - preprocess.image on the tests' image file gives the clip_preprocess golden's pixel values
 *    (the tolerance of test_preprocess.c) and exactly what mmp_preprocess gives for the decoded
 *    file (the path of `mmpipe chat --image`), with and without LLaVA pad-to-square;
 *  - golden llava_mixtral through image-chat.pipe, greedy: the golden's greedy ids (its input
 *    is pixel values and token ids, so they enter at encoder.clip and at the prompt's token
 *    level: see test_image_chat_golden);
 *  - image-chat.pipe from the image file and a text prompt gives the tokens of the mtmd path
 *    (mmp_mm_encode_image + mmp_mm_prompt_from_text + greedy decoding);
 *  - golden qwen2_audio through audio-chat-qwen2.pipe from a text prompt: the golden's prompt
 *    ids, and greedy tokens equal to the golden's logits' argmax / the mtmd path's;
 *  - mmp__audio_pipeline_for picks the family; bad inputs give clear errors. */
#include "testutil.h"
#include "mmpipe/mmpipe.h"
#include "mtmd-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool has_kind(const mmp_registry *r, const char *name) {
    for (int i = 0; i < mmp_registry_count(r); i++)
        if (!strcmp(mmp_registry_at(r, i)->name, name)) return true;
    return false;
}

/* The array `mmpipe pipeline run --in image=FILE` makes: [3, H, W] = u8 / 255. */
static mmp_array *image_array(const mmp_image *img) {
    int64_t dims[3] = { 3, img->height, img->width };
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, 3, dims);
    assert_non_null(a);
    size_t hw = (size_t)img->width * img->height;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) ((float *)a->data)[c * hw + i] = img->data[i * 3 + c] / 255.0f;
    return a;
}


static mmp_stage *preprocess_stage(const mmp_registry *r, const char *model, const char *options) {
    const mmp_stage_kind *k = mmp_registry_find(r, "preprocess.image");
    if (!k) fail_msg("%s", mmp_last_error());
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = model;
    sp.options = options;
    return mmp_stage_new(k, &sp);
}

static mmp_array *run_pre(mmp_stage *s, const mmp_array *img) {
    const mmp_array *in[1] = { img };
    mmp_array *out[1] = { NULL };
    if (mmp_stage_run(s, in, out) != MMP_OK) fail_msg("preprocess.image: %s", mmp_last_error());
    return out[0];
}

/* pixels from the stage == mmp_preprocess(decoded file, the model's processor [, pad]) */
static void expect_same_as_mtmd(const mmp_array *px, const mmp_image *img, const char *model, int pad) {
    mmp_vit *v = mmp_vit_load(model);
    if (!v) fail_msg("%s", mmp_last_error());
    mmp_preproc pre = *mmp_vit_get_preproc(v);
    if (pad >= 0) pre.pad_square = pad != 0;
    int32_t h = 0, w = 0;
    float *ref = mmp_preprocess(img, &pre, &h, &w);
    assert_non_null(ref);
    assert_int_equal(px->n_dims, 3);
    assert_int_equal(px->dims[0], 3);
    assert_int_equal(px->dims[1], h);
    assert_int_equal(px->dims[2], w);
    assert_memory_equal(px->data, ref, (size_t)3 * h * w * sizeof(float));
    free(ref);
    mmp_vit_free(v);
}

static void test_preprocess_golden(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    const char *model = mmpt_data("mm/llava_mixtral");
    mmp_image *img = mmp_image_load(mmpt_data("mm/llava_mixtral/image.png"), 0);
    if (!img) fail_msg("%s", mmp_last_error());
    mmp_array *a = image_array(img);
    mmp_stage *s = preprocess_stage(r, model, NULL);
    if (!s) fail_msg("%s", mmp_last_error());
    /* the output is narrowed to the tower's crop size */
    const mmp_port *op = mmp_stage_output(s, 0);
    assert_int_equal(op->type.dims[1], 32);
    assert_int_equal(op->type.dims[2], 32);
    mmp_array *px = run_pre(s, a);

    /* the golden: CLIPImageProcessor(size 32) on the same picture (test_preprocess.c's case
     * and tolerance: PIL's and our bicubic differ by a rounding step here and there) */
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("vision/clip_preprocess/io.safetensors"));
    assert_non_null(io);
    mmp_array *ref = mmpt_golden_array(io, "pixel_values", MMP_TYPE_F32);
    assert_int_equal(ref->dims[ref->n_dims - 1], px->dims[2]);
    assert_int_equal(ref->dims[ref->n_dims - 2], px->dims[1]);
    size_t n = (size_t)mmp_array_nelements(px);
    assert_int_equal((size_t)mmp_array_nelements(ref), n);
    double mx = 0, mean = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)((float *)px->data)[i] - ((float *)ref->data)[i]);
        mx = d > mx ? d : mx;
        mean += d;
    }
    mean /= (double)n;
    printf("preprocess.image vs clip_preprocess golden: max abs %.3g, mean abs %.3g\n", mx, mean);
    assert_true(mx <= 0.02);
    assert_true(mean <= 0.002);
    /* bit-exact with the mtmd path (mmp_preprocess on the decoded file) */
    expect_same_as_mtmd(px, img, model, -1);

    mmp_array_free(ref);
    mmp_safetensors_free(io);
    mmp_array_free(px);
    mmp_array_free(a);
    mmp_stage_free(s);
    mmp_image_free(img);
    mmp_registry_free(r);
}

/* pad=1 / pad=0 / auto from the model's processor config (preprocessor_config.json do_pad and
 * LLaVA-1.5's image_aspect_ratio "pad" in config.json) */
static void test_preprocess_pad(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    const char *model = mmpt_data("mm/llava_mixtral");
    mmp_image *img = mmp_image_load(mmpt_data("mm/llava_mixtral/image.png"), 0);
    assert_non_null(img);
    assert_true(img->width != img->height);  /* padding changes something */
    mmp_array *a = image_array(img);

    mmp_stage *s0 = preprocess_stage(r, model, "pad=0"), *s1 = preprocess_stage(r, model, "pad=1");
    assert_non_null(s0);
    assert_non_null(s1);
    mmp_array *p0 = run_pre(s0, a), *p1 = run_pre(s1, a);
    expect_same_as_mtmd(p0, img, model, 0);
    expect_same_as_mtmd(p1, img, model, 1);
    assert_true(memcmp(p0->data, p1->data, mmp_array_nbytes(p0)) != 0);

    /* a model folder whose config asks for padding: auto pads, pad=0 does not */
    static const char *const how[2] = { "preprocessor_config.json", "config.json" };
    for (int k = 0; k < 2; k++) {
        char *dir = mmpt_make_temp_dir("prepad");
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/model.safetensors", model);
        snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
        assert_int_equal(symlink(src, dst), 0);
        size_t len = 0;
        char *raw = mmpt_read_file(mmpt_data("mm/llava_mixtral/config.json"), &len);
        assert_non_null(raw);
        char *cfg = malloc(len + 1);  /* NUL-terminated copy */
        memcpy(cfg, raw, len);
        cfg[len] = 0;
        free(raw);
        if (k == 0) {
            mmpt_write_text(dir, "config.json", cfg);
            mmpt_write_text(dir, "preprocessor_config.json", "{\"do_pad\": true}");
        } else {
            /* "{ ... }" -> "{ "image_aspect_ratio": "pad", ... }" */
            char *brace = strchr(cfg, '{');
            assert_non_null(brace);
            size_t cap = len + 64;
            char *c2 = malloc(cap);
            snprintf(c2, cap, "{\"image_aspect_ratio\": \"pad\",%s", brace + 1);
            mmpt_write_text(dir, "config.json", c2);
            free(c2);
        }
        free(cfg);
        mmp_stage *sa = preprocess_stage(r, dir, NULL), *sn = preprocess_stage(r, dir, "pad=0");
        if (!sa || !sn) fail_msg("%s", mmp_last_error());
        mmp_array *pa = run_pre(sa, a), *pn = run_pre(sn, a);
        printf("  padding from %s: auto pads\n", how[k]);
        assert_memory_equal(pa->data, p1->data, mmp_array_nbytes(p1));
        assert_memory_equal(pn->data, p0->data, mmp_array_nbytes(p0));
        mmp_array_free(pa);
        mmp_array_free(pn);
        mmp_stage_free(sa);
        mmp_stage_free(sn);
        snprintf(dst, sizeof dst, "%s/preprocessor_config.json", dir);
        unlink(dst);
        mmpt_rm_model_dir(dir);
    }
    mmp_array_free(p0);
    mmp_array_free(p1);
    mmp_array_free(a);
    mmp_stage_free(s0);
    mmp_stage_free(s1);
    mmp_image_free(img);
    mmp_registry_free(r);
}

/* preprocess.image and encoder.clip on one file in one pipeline share the ViT through the store
 * (both get it with mmp__vit_ref): one load */
static void test_preprocess_shares_vit(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    assert_non_null(store);
    char text[2048];
    snprintf(text, sizeof text,
             "pipeline pre2\n"
             "stage a preprocess.image model=%s options=pad=1\n"
             "stage b encoder.clip model=%s\n"
             "input image -> a.image\n"
             "a.pixels -> b.pixels\n"
             "output h <- b.hidden\n",
             mmpt_data("mm/llava_mixtral"), mmpt_data("mm/llava_mixtral"));
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(text, "pre2.pipe");
    if (!d) fail_msg("%s", mmp_last_error());
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.store = store;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    if (!p) fail_msg("%s", mmp_last_error());
    mmp_store_stats st = mmp_store_get_stats(store);
    printf("  store: %lld model loads, %lld models loaded, %lld hits\n", (long long)st.model_loads,
           (long long)st.models_loaded, (long long)st.hits);
    assert_int_equal(st.model_loads, 1);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_store_free(store);
    mmp_registry_free(r);
}

static void test_preprocess_errors(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    const char *model = mmpt_data("mm/llava_mixtral");
    assert_null(preprocess_stage(r, model, "pad=2"));
    mmpt_expect_error_mentions((const char *[]){ "preprocess.image", "pad=2", "pad=auto|0|1", NULL });
    assert_null(preprocess_stage(r, NULL, NULL));
    mmpt_expect_error_mentions((const char *[]){ "preprocess.image", "model", NULL });
    assert_null(preprocess_stage(r, "/nonexistent/model-dir", NULL));
    mmpt_expect_error_mentions((const char *[]){ "preprocess.image", "/nonexistent/model-dir", NULL });

    mmp_stage *s = preprocess_stage(r, model, NULL);
    assert_non_null(s);
    mmp_array *out[1] = { NULL };
    /* wrong rank: [3, 8] (an image is [3, H, W]) */
    int64_t d2[2] = { 3, 8 };
    mmp_array *bad = mmp_array_new(MMP_TYPE_F32, 2, d2);
    const mmp_array *in[1] = { bad };
    assert_int_not_equal(mmp_stage_run(s, in, out), MMP_OK);
    mmpt_expect_error_mentions((const char *[]){ "image", "[3,*,*]", NULL });
    assert_null(out[0]);
    mmp_array_free(bad);
    /* four channels */
    int64_t d4[3] = { 4, 8, 8 };
    bad = mmp_array_new(MMP_TYPE_F32, 3, d4);
    in[0] = bad;
    assert_int_not_equal(mmp_stage_run(s, in, out), MMP_OK);
    mmpt_expect_error_mentions((const char *[]){ "image", "4", "3", NULL });
    mmp_array_free(bad);
    /* values outside [0, 1] (an image in [-1, 1] or 0..255) */
    int64_t d3[3] = { 3, 8, 8 };
    bad = mmp_array_new(MMP_TYPE_F32, 3, d3);
    ((float *)bad->data)[64 + 8 * 2 + 5] = 255.0f;
    in[0] = bad;
    assert_int_equal(mmp_stage_run(s, in, out), MMP_ERR_INVALID_ARG);
    mmpt_expect_error_mentions((const char *[]){ "preprocess.image", "255", "channel 1, row 2, column 5", "[0, 1]", NULL });
    ((float *)bad->data)[64 + 8 * 2 + 5] = NAN;
    assert_int_equal(mmp_stage_run(s, in, out), MMP_ERR_INVALID_ARG);
    mmpt_expect_error_mentions((const char *[]){ "preprocess.image", "nan", NULL });
    assert_null(out[0]);
    mmp_array_free(bad);
    mmp_stage_free(s);
    mmp_registry_free(r);
}

/* ---- the family choice for `mmpipe caption` ---- */

static void test_audio_pipeline_for(void **state) {
    (void)state;
    const char *name = mmp__audio_pipeline_for(mmpt_data("mm/qwen2_audio"), NULL);
    if (!name) fail_msg("%s", mmp_last_error());
    assert_string_equal(name, "audio-chat-qwen2");
    /* the mmproj decides when given */
    name = mmp__audio_pipeline_for(mmpt_data("mm/llava_mixtral"), mmpt_data("mm/qwen2_audio"));
    assert_non_null(name);
    assert_string_equal(name, "audio-chat-qwen2");
    /* every name is a stock pipeline */
    static const char *const fams[3][2] = { { "qwen2_audio", "audio-chat-qwen2" }, { "ultravox", "audio-chat-ultravox" },
                                            { "voxtral", "audio-chat-voxtral" } };
    for (int k = 0; k < 3; k++) {
        char *dir = mmpt_make_temp_dir("afam");
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/model.safetensors", mmpt_data("mm/qwen2_audio"));
        snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
        assert_int_equal(symlink(src, dst), 0);
        char cfg[256];
        snprintf(cfg, sizeof cfg, "{\"model_type\": \"%s\", \"audio_config\": {}}", fams[k][0]);
        mmpt_write_text(dir, "config.json", cfg);
        name = mmp__audio_pipeline_for(dir, NULL);
        if (!name) fail_msg("%s", mmp_last_error());
        assert_string_equal(name, fams[k][1]);
        mmp_pipeline_desc *d = mmp_pipeline_desc_stock(name);
        if (!d) fail_msg("%s", mmp_last_error());
        mmp_pipeline_desc_free(d);
        mmpt_rm_model_dir(dir);
    }
    /* no audio encoder */
    assert_null(mmp__audio_pipeline_for(mmpt_data("mm/llava_mixtral"), NULL));
    mmpt_expect_error_mentions((const char *[]){ "llava_mixtral", "no audio encoder", "--mmproj", NULL });
    assert_null(mmp__audio_pipeline_for("/nonexistent/x.gguf", NULL));
    mmpt_expect_error_mentions((const char *[]){ "/nonexistent/x.gguf", NULL });
    assert_null(mmp__audio_pipeline_for(NULL, NULL));
}

/* ---- the chat pipelines end to end ---- */

/* The stock pipeline's text with lines edited: every line starting with one of drop[] removed,
 * add appended. */
static char *pipe_variant(const char *stock, const char *const *drop, const char *add) {
    size_t len = 0;
    const char *t = mmp_pipeline_stock_text(stock, &len);
    if (!t) fail_msg("%s", mmp_last_error());
    char *out = malloc(len + strlen(add) + 2);
    size_t n = 0;
    for (const char *l = t; *l;) {
        const char *e = strchr(l, '\n');
        size_t ll = e ? (size_t)(e - l + 1) : strlen(l);
        bool keep = true;
        for (int k = 0; drop[k]; k++)
            if (!strncmp(l, drop[k], strlen(drop[k]))) keep = false;
        if (keep) { memcpy(out + n, l, ll); n += ll; }
        l += ll;
    }
    strcpy(out + n, add);
    return out;
}

static mmp_pipeline *make_pipe(const mmp_registry *r, const char *text, const char *src, const char *const *params) {
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(text, src);
    if (!d) fail_msg("%s", mmp_last_error());
    for (int i = 0; params[i]; i += 2)
        if (mmp_pipeline_desc_set_param(d, params[i], params[i + 1]) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    if (!p) fail_msg("%s: %s", src, mmp_last_error());
    mmp_pipeline_desc_free(d);
    return p;
}

static mmp_array *text_array(const char *s) {
    int64_t dims[1] = { (int64_t)strlen(s) };
    mmp_array *a = mmp_array_new(MMP_TYPE_U8, 1, dims);
    assert_non_null(a);
    memcpy(a->data, s, strlen(s));
    return a;
}

/* Run; returns the outputs (array of n_outputs, caller frees each). */
static mmp_array **run_pipe(mmp_pipeline *p, const char *const *names, const mmp_array *const *arrays) {
    const mmp_array *in[8] = { 0 };
    for (int i = 0; names[i]; i++) {
        int k = mmp_pipeline_find_input(p, names[i]);
        if (k < 0) fail_msg("%s", mmp_last_error());
        in[k] = arrays[i];
    }
    mmp_array **out = calloc(8, sizeof *out);
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("run: %s", mmp_last_error());
    return out;
}

static void free_outs(mmp_pipeline *p, mmp_array **out) {
    for (int i = 0; i < mmp_pipeline_n_outputs(p); i++) mmp_array_free(out[i]);
    free(out);
}

static const mmp_array *out_named(mmp_pipeline *p, mmp_array **out, const char *name) {
    int k = mmp_pipeline_find_output(p, name);
    if (k < 0) fail_msg("%s", mmp_last_error());
    return out[k];
}

static void print_ids(const char *what, const int32_t *ids, int64_t n) {
    printf("  %s:", what);
    for (int64_t i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* The mtmd path, what `mmpipe chat` / `caption` do: greedy tokens after a prompt, stopping
 * after n tokens or at EOS (included). Returns the count. */
static int mtmd_greedy(const mmp_llm *m, const mmp_mm_prompt *pr, int n, int32_t *ids) {
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, NULL);
    assert_non_null(c);
    float *logits = malloc((size_t)h->n_vocab * sizeof(float));
    if (mmp_mm_prompt_decode(c, m, pr, 0, 0, logits, false) != MMP_OK) fail_msg("%s", mmp_last_error());
    int k = 0;
    int32_t eos = mmp_tokenizer_eos(mmp_llm_get_tokenizer(m));
    while (k < n) {
        int32_t t = (int32_t)mmpt_argmax(logits, h->n_vocab);
        ids[k++] = t;
        if (t == eos) break;
        mmp_llm_batch b = { .n = 1, .tokens = &t, .logits = logits };
        if (mmp_llm_decode(c, &b) != MMP_OK) fail_msg("%s", mmp_last_error());
    }
    free(logits);
    mmp_llm_ctx_free(c);
    return k;
}

/* Golden llava_mixtral: pixel_values and input_ids (the BPE of the test vocabulary does not
 * give these ids back from their text: "cans mx" is 71,155,87,111,92, the golden has
 * 197,201,111,92), so the pixels enter at encoder.vit and the ids at the token level
 * (prompt.embed in place of prompt.text); the rest is image-chat.pipe: encoder.vit ->
 * projector.mlp -> backbone.generate, greedy. */
static void test_image_chat_golden(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    if (!has_kind(r, "backbone.generate")) {
        printf("  SKIPPED: no backbone.generate stage kind in this build\n");
        mmp_registry_free(r);
        skip();
    }
    const char *model = mmpt_data("mm/llava_mixtral");
    char *text = pipe_variant("image-chat", (const char *const[]){ "stage pre ", "input image", "pre.pixels", "stage prompt ",
                                                                    "input text", NULL },
                              "input pixels -> vit.pixels\n"
                              "stage prompt prompt.embed model=${model}\n"
                              "input tokens -> prompt.tokens\n");
    mmp_safetensors *g = mmp_safetensors_open(mmpt_data("mm/llava_mixtral/io.safetensors"));
    assert_non_null(g);
    mmp_array *ids = mmpt_golden_array(g, "input_ids", MMP_TYPE_I32), *px = mmpt_golden_array(g, "pixel_values", MMP_TYPE_F32);
    mmp_array *want = mmpt_golden_array(g, "greedy_ids", MMP_TYPE_I32);
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%lld", (long long)want->dims[0]);
    mmp_pipeline *p = make_pipe(r, text, "image-chat(golden).pipe",
                                (const char *const[]){ "model", model, "encoder", model, "n", nbuf, "temp", "0", NULL });
    mmp_array **out = run_pipe(p, (const char *const[]){ "pixels", "tokens", NULL }, (const mmp_array *const[]){ px, ids });
    const mmp_array *got = out_named(p, out, "tokens");
    print_ids("greedy ", got->data, got->dims[0]);
    print_ids("golden ", want->data, want->dims[0]);
    assert_int_equal(got->dims[0], want->dims[0]);
    assert_memory_equal(got->data, want->data, (size_t)want->dims[0] * sizeof(int32_t));
    free_outs(p, out);
    mmp_pipeline_free(p);
    free(text);
    mmp_array_free(ids);
    mmp_array_free(px);
    mmp_array_free(want);
    mmp_safetensors_free(g);
    mmp_registry_free(r);
}

/* image-chat.pipe as is on (model, encoder): the image file + a text prompt -> the tokens of the
 * mtmd path (mmp_mm_load(model, mmproj) + mmp_mm_encode_image + mmp_mm_prompt_from_text +
 * greedy decoding), which is what `mmpipe chat --image` runs. */
static void chat_vs_mtmd(const char *model, const char *encoder, const char *layer, bool bad_rank) {
    mmp_registry *r = mmp_registry_new();
    const char *prompt = "Look: <image>\nWhat is it?";
    enum { N = 12 };
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("image-chat");
    if (!d) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_pipeline_desc_validate(d, r), MMP_OK);
    mmp_pipeline_desc_free(d);
    /* encoder defaults to ${model} */
    bool same = !strcmp(model, encoder);
    mmp_pipeline *p = make_pipe(r, mmp_pipeline_stock_text("image-chat", NULL), "stock:image-chat",
                                (const char *const[]){ "model", model, "layer", layer, "n", "12", "template", "none",
                                                       same ? NULL : "encoder", encoder, NULL });
    mmp_image *img = mmp_image_load(mmpt_data("mm/llava_mixtral/image.png"), 0);
    assert_non_null(img);
    mmp_array *ia = image_array(img), *ta = text_array(prompt);
    mmp_array **out = run_pipe(p, (const char *const[]){ "image", "text", NULL }, (const mmp_array *const[]){ ia, ta });
    const mmp_array *got = out_named(p, out, "tokens"), *gtext = out_named(p, out, "text");

    /* the mtmd path */
    mmp_llm *m = mmp_llm_load(model, NULL);
    assert_non_null(m);
    mmp_mm *mm = mmp_mm_load(model, same ? NULL : encoder, m, NULL);
    if (!mm) fail_msg("%s", mmp_last_error());
    float *emb = NULL;
    int32_t nt = 0;
    assert_int_equal(mmp_mm_encode_image(mm, img, &emb, &nt), MMP_OK);
    mmp_media med = { MMP_MEDIA_IMAGE, nt, mmp_mm_n_embd(mm), emb };
    mmp_mm_prompt *pr = mmp_mm_prompt_from_text(mmp_llm_get_tokenizer(m), prompt, strlen(prompt), true,
                                                mmp_mm_get_markers(mm), &med, 1);
    if (!pr) fail_msg("%s", mmp_last_error());
    int32_t ref[N];
    int nr = mtmd_greedy(m, pr, N, ref);
    print_ids("pipeline", got->data, got->dims[0]);
    print_ids("mtmd    ", ref, nr);
    printf("  text: '%.*s'\n", (int)gtext->dims[0], (const char *)gtext->data);
    assert_int_equal(got->dims[0], nr);
    assert_memory_equal(got->data, ref, (size_t)nr * sizeof(int32_t));
    mmp_mm_prompt_free(pr);
    free(emb);
    mmp_mm_free(mm);
    mmp_llm_free(m);
    free_outs(p, out);

    if (bad_rank) {
        /* an image input of the wrong rank: refused, naming the input and both types */
        int64_t d2[2] = { 3, 16 };
        mmp_array *bad = mmp_array_new(MMP_TYPE_F32, 2, d2);
        const mmp_array *in[8] = { 0 };
        in[mmp_pipeline_find_input(p, "image")] = bad;
        in[mmp_pipeline_find_input(p, "text")] = ta;
        mmp_array *o2[8] = { 0 };
        assert_int_not_equal(mmp_pipeline_run(p, in, o2), MMP_OK);
        mmpt_expect_error_mentions((const char *[]){ "image", "[3,*,*]", NULL });
        for (int i = 0; i < 8; i++) assert_null(o2[i]);
        mmp_array_free(bad);
    }
    mmp_array_free(ia);
    mmp_array_free(ta);
    mmp_image_free(img);
    mmp_pipeline_free(p);
    mmp_registry_free(r);
}

static bool have_generate(void) {
    mmp_registry *r = mmp_registry_new();
    bool ok = has_kind(r, "backbone.generate") && has_kind(r, "prompt.text");
    mmp_registry_free(r);
    if (!ok) printf("  SKIPPED: no prompt.text / backbone.generate stage kinds in this build\n");
    return ok;
}

/* the HF folder as both the LLM and the vision side */
static void test_image_chat_from_file(void **state) {
    (void)state;
    if (!have_generate()) skip();
    const char *model = mmpt_data("mm/llava_mixtral");
    chat_vs_mtmd(model, model, "auto", true);   /* the config's feature layer, as mtmd */
    chat_vs_mtmd(model, model, "-2", false);
}

/* the vision side from the llama.cpp mmproj GGUF made from it (the tower stored up to the
 * feature layer: layer auto = -1 and the class token dropped, as mtmd); the LLM stays the HF folder (the converted LLM GGUF carries no
 * tokenizer for this test vocabulary) */
static void test_image_chat_mmproj(void **state) {
    (void)state;
    if (!have_generate()) skip();
    char *mmproj = mmpt_write_temp("", 0, "-mmproj.gguf");
    assert_non_null(mmproj);
    mmp_convert_params cp = mmp_convert_params_default();
    if (mmp_convert_llava_mmproj(mmpt_data("mm/llava_mixtral"), mmproj, &cp)) fail_msg("convert mmproj: %s", mmp_last_error());
    chat_vs_mtmd(mmpt_data("mm/llava_mixtral"), mmproj, "auto", false);
    unlink(mmproj);
    free(mmproj);
}

/* Golden qwen2_audio: input_features (log-mel [80, 100], so they enter at encoder.mel) and
 * input_ids = "<s>!\"" 25 x <|AUDIO|> " matti@ebat" (ids 1, 5, 6, 255 x 25, ...), which this
 * vocabulary gives back from that text: audio-chat-qwen2.pipe's prompt.text must make exactly the golden ids;
 * the first greedy token is the argmax of the golden's last logits row, and the greedy tokens
 * equal the mtmd path's (mmp_mm_encode_mel + prompt from the golden ids). */
static void test_audio_chat_golden(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    if (!has_kind(r, "backbone.generate") || !has_kind(r, "prompt.text")) {
        printf("  SKIPPED: no prompt.text / backbone.generate stage kinds in this build\n");
        mmp_registry_free(r);
        skip();
    }
    const char *model = mmpt_data("mm/qwen2_audio");
    mmp_safetensors *g = mmp_safetensors_open(mmpt_data("mm/qwen2_audio/io.safetensors"));
    assert_non_null(g);
    mmp_array *ids = mmpt_golden_array(g, "input_ids", MMP_TYPE_I32), *mel = mmpt_golden_array(g, "input_features", MMP_TYPE_F32);
    mmp_array *logits = mmpt_golden_array(g, "logits", MMP_TYPE_F32);
    const int32_t *gid = ids->data;
    const int64_t n_ids = ids->dims[0];
    /* the prompt text: the golden's text pieces around its run of audio placeholders */
    mmp_llm *m = mmp_llm_load(model, NULL);
    assert_non_null(m);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(m);
    int64_t a0 = 0, a1;
    while (a0 < n_ids && gid[a0] != 255) a0++;
    for (a1 = a0; a1 < n_ids && gid[a1] == 255; a1++) {}
    assert_true(a0 > 1 && a1 > a0 && a1 < n_ids);
    /* the golden starts with BOS, which this tokenizer does not add (add_bos_token false):
     * the text spells it ("<s>", a special token the prompt's tokenizer parses) */
    assert_int_equal(gid[0], mmp_tokenizer_bos(tok));
    char *before = NULL, *after = NULL, prompt[600];
    assert_int_equal(mmp_tokenizer_decode(tok, gid, (size_t)a0, false, true, &before, NULL), MMP_OK);
    assert_int_equal(mmp_tokenizer_decode(tok, gid + a1, (size_t)(n_ids - a1), false, false, &after, NULL), MMP_OK);
    snprintf(prompt, sizeof prompt, "%s<audio>%s", before, after);
    free(before);
    free(after);
    printf("  prompt: '%s'\n", prompt);

    /* the mel enters at encoder.mel: frontend.mel and its edges (mel.mel, mel.valid) go; with
     * encoder.valid open the mel is one window and every encoder row is kept */
    char *text = pipe_variant("audio-chat-qwen2", (const char *const[]){ "stage mel ", "input audio", "mel.", NULL },
                              "input mel -> encoder.mel\n"
                              "output prompt_tokens <- prompt.tokens\n");
    enum { N = 6 };
    mmp_pipeline *p = make_pipe(r, text, "audio-chat-qwen2(golden).pipe",
                                (const char *const[]){ "model", model, "n", "6", "template", "none", NULL });
    mmp_array *ta = text_array(prompt);
    mmp_array **out = run_pipe(p, (const char *const[]){ "mel", "text", NULL }, (const mmp_array *const[]){ mel, ta });
    const mmp_array *pt = out_named(p, out, "prompt_tokens"), *got = out_named(p, out, "tokens");
    print_ids("prompt  ", pt->data, pt->dims[0]);
    assert_int_equal(pt->dims[0], n_ids);
    assert_memory_equal(pt->data, gid, (size_t)n_ids * sizeof(int32_t));
    int V = (int)logits->dims[1];
    int first = mmpt_argmax((const float *)logits->data + (size_t)(n_ids - 1) * V, V);
    print_ids("greedy  ", got->data, got->dims[0]);
    printf("  golden logits argmax of the last position: %d\n", first);
    assert_true(got->dims[0] >= 1);
    assert_int_equal(((const int32_t *)got->data)[0], first);

    /* the mtmd path from the same mel and the golden ids */
    mmp_mm *mm = mmp_mm_load(model, NULL, m, NULL);
    if (!mm) fail_msg("%s", mmp_last_error());
    float *emb = NULL;
    int32_t nt = 0;
    assert_int_equal(mmp_mm_encode_mel(mm, mel->data, mel->dims[1], 0, &emb, &nt), MMP_OK);
    assert_int_equal(nt, a1 - a0);
    mmp_media med = { MMP_MEDIA_AUDIO, nt, mmp_mm_n_embd(mm), emb };
    mmp_mm_prompt *pr = mmp_mm_prompt_from_ids(gid, (int32_t)n_ids, mmp_mm_get_markers(mm), &med, 1);
    if (!pr) fail_msg("%s", mmp_last_error());
    int32_t ref[N];
    int nr = mtmd_greedy(m, pr, N, ref);
    print_ids("mtmd    ", ref, nr);
    assert_int_equal(got->dims[0], nr);
    assert_memory_equal(got->data, ref, (size_t)nr * sizeof(int32_t));
    mmp_mm_prompt_free(pr);
    free(emb);
    mmp_mm_free(mm);
    free_outs(p, out);
    mmp_pipeline_free(p);
    free(text);
    mmp_array_free(ta);
    mmp_llm_free(m);
    mmp_array_free(ids);
    mmp_array_free(mel);
    mmp_array_free(logits);
    mmp_safetensors_free(g);
    mmp_registry_free(r);
}

/* Every chat pipeline validates against the registry (kinds, ports, types) */
static void test_chat_pipes_validate(void **state) {
    (void)state;
    mmp_registry *r = mmp_registry_new();
    if (!has_kind(r, "backbone.generate") || !has_kind(r, "prompt.text")) {
        printf("  SKIPPED: no prompt.text / backbone.generate stage kinds in this build\n");
        mmp_registry_free(r);
        skip();
    }
    static const char *const names[] = { "image-chat", "audio-chat-qwen2", "audio-chat-ultravox", "audio-chat-voxtral", NULL };
    for (int i = 0; names[i]; i++) {
        mmp_pipeline_desc *d = mmp_pipeline_desc_stock(names[i]);
        if (!d) fail_msg("%s", mmp_last_error());
        if (mmp_pipeline_desc_validate(d, r) != MMP_OK) fail_msg("%s: %s", names[i], mmp_last_error());
        mmp_pipeline_desc_free(d);
    }
    mmp_registry_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preprocess_golden),
        cmocka_unit_test(test_preprocess_pad),
        cmocka_unit_test(test_preprocess_shares_vit),
        cmocka_unit_test(test_preprocess_errors),
        cmocka_unit_test(test_audio_pipeline_for),
        cmocka_unit_test(test_chat_pipes_validate),
        cmocka_unit_test(test_image_chat_golden),
        cmocka_unit_test(test_image_chat_from_file),
        cmocka_unit_test(test_image_chat_mmproj),
        cmocka_unit_test(test_audio_chat_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
