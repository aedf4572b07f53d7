/* Any-to-any turns (anytoany.h) against golden `nextgpt_e2e`: the prompt, then the signal
 * tokens [IMG0]..[IMG3] in the response -> their last-layer hidden states -> output projector ->
 * DDIM 6 steps, CFG 7.5 against zero conditioning -> VAE. Signal hidden states and conditioning
 * <= 1e-4 relative, final latents <= 1e-3, image mean abs error <= 1/255. Also: signal tokens
 * the model generates itself (checked against one full-batch forward pass), streaming and
 * stopping, multi-turn / reset, the generator.sample stage and the stock nextgpt-any2any.pipe on
 * the same golden, and bad input. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLM "pipe/nextgpt_e2e/llm"
#define IO "pipe/nextgpt_e2e/io.safetensors"
#define PROJ "proj/nextgpt_e2e/output_projector/model.safetensors"

typedef struct golden {
    mmp_safetensors *st;
    int32_t ids[64];
    int n_ids;
    int32_t sig_pos[8];
    int n_sig;
    float *signal_hidden, *conditioning, *latents_init, *latents_final, *image;   /* owned copies */
    int lat_c, lat_h, lat_w, img_h, img_w;
} golden;

/* A copy (safetensors data need not be aligned for float). */
static float *g_f32(golden *g, const char *name, int64_t *ne) {
    const mmp_tensor_info *t = mmp_safetensors_find(g->st, name);
    if (!t || t->type != MMP_TYPE_F32) fail_msg("golden tensor %s missing or not f32", name);
    if (ne) for (int i = 0; i < 4; i++) ne[i] = i < t->n_dims ? t->ne[i] : 1;
    float *c = malloc(t->nbytes);
    memcpy(c, t->data, t->nbytes);
    return c;
}

static void golden_close(golden *g) {
    free(g->signal_hidden); free(g->conditioning); free(g->latents_init); free(g->latents_final); free(g->image);
    mmp_safetensors_free(g->st);
}

static void g_ids(golden *g, const char *name, int32_t *out, int *n) {
    const mmp_tensor_info *t = mmp_safetensors_find(g->st, name);
    if (!t || t->n_dims != 1 || t->ne[0] > 64) fail_msg("golden tensor %s", name);
    *n = (int)t->ne[0];
    for (int i = 0; i < *n; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int32_t)v;
    }
}

static void golden_open(golden *g) {
    memset(g, 0, sizeof *g);
    g->st = mmp_safetensors_open(mmpt_data(IO));
    if (!g->st) fail_msg("%s", mmp_last_error());
    g_ids(g, "input_ids", g->ids, &g->n_ids);
    g_ids(g, "signal_positions", g->sig_pos, &g->n_sig);
    int64_t ne[4];
    g->signal_hidden = g_f32(g, "signal_hidden", NULL);
    g->conditioning = g_f32(g, "conditioning", NULL);
    g->latents_final = g_f32(g, "latents_final", NULL);
    g->latents_init = g_f32(g, "latents_init", ne);
    /* safetensors ne are ggml order (ne[0] innermost): [4, 8, 8] is ne {8, 8, 4} */
    g->lat_w = (int)ne[0]; g->lat_h = (int)ne[1]; g->lat_c = (int)ne[2];
    g->image = g_f32(g, "image", ne);
    g->img_w = (int)ne[0]; g->img_h = (int)ne[1];
}

/* store NULL: the session loads its own models */
static mmp_a2a *load_on(const int32_t *sig, int n_sig, mmp_store *store) {
    mmp_a2a_params p = mmp_a2a_params_default();
    p.store = store;
    char llm[1024], proj[1024], unet[1024], vae[1024];
    snprintf(llm, sizeof llm, "%s", mmpt_data(LLM));
    snprintf(proj, sizeof proj, "%s", mmpt_data(PROJ));
    snprintf(unet, sizeof unet, "%s", mmpt_data("gen/unet"));
    snprintf(vae, sizeof vae, "%s", mmpt_data("gen/vae"));
    p.llm_path = llm; p.projector_path = proj; p.unet_path = unet; p.vae_path = vae;
    p.n_threads = 2;
    p.proj.n_heads = 4;   /* the projector file has no config.json; the golden's nhead */
    p.signal_ids = sig;
    p.n_signal = n_sig;
    mmp_a2a *a = mmp_a2a_load(&p);
    if (!a) fail_msg("mmp_a2a_load: %s", mmp_last_error());
    return a;
}

static mmp_a2a *load(const int32_t *sig, int n_sig) { return load_on(sig, n_sig, NULL); }

static double mae(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] - b[i]);
    return s / (double)n;
}

static void check_image_side(const golden *g, const mmp_a2a_result *r, const char *what) {
    assert_true(r->has_image);
    assert_int_equal(r->n_signal, g->n_sig);
    assert_int_equal(r->lat_c, g->lat_c); assert_int_equal(r->lat_h, g->lat_h); assert_int_equal(r->lat_w, g->lat_w);
    assert_int_equal(r->width, g->img_w); assert_int_equal(r->height, g->img_h);
    size_t nh = (size_t)r->n_signal * r->n_embd, nc = (size_t)r->t_ctx * r->d_ctx;
    size_t nl = (size_t)r->lat_c * r->lat_h * r->lat_w, ni = (size_t)3 * r->width * r->height;
    double e_h = mmpt_rel_l2(r->signal_hidden, g->signal_hidden, nh);
    double e_c = mmpt_rel_l2(r->conditioning, g->conditioning, nc);
    double e_l = mmpt_rel_l2(r->latents, g->latents_final, nl);
    double e_i = mae(r->image01, g->image, ni);
    printf("# %s: signal_hidden %.3g, conditioning %.3g, latents %.3g (rel L2); image MAE %.3g (x255 = %.4f)\n", what, e_h, e_c, e_l,
           e_i, e_i * 255);
    if (!(e_h <= 1e-4)) fail_msg("%s: signal hidden %.3g > 1e-4", what, e_h);
    if (!(e_c <= 1e-4)) fail_msg("%s: conditioning %.3g > 1e-4", what, e_c);
    if (!(e_l <= 1e-3)) fail_msg("%s: latents %.3g > 1e-3", what, e_l);
    if (!(e_i <= 1.0 / 255)) fail_msg("%s: image MAE %.3g > 1/255", what, e_i);
}

static mmp_a2a_turn_params golden_turn(const golden *g) {
    mmp_a2a_turn_params tp = mmp_a2a_turn_params_default();
    tp.sampler = MMP_SCHED_DDIM;
    tp.steps = 6;
    tp.cfg_scale = 7.5f;
    tp.width = g->img_w;
    tp.height = g->img_h;
    tp.latents_init = g->latents_init;
    tp.max_new_tokens = g->n_sig;
    return tp;
}

struct stream { int calls; int stop_at; int32_t seen[64]; };
static bool on_token(int32_t tok, const char *piece, size_t len, void *user) {
    (void)piece; (void)len;
    struct stream *s = user;
    if (s->calls < 64) s->seen[s->calls] = tok;
    s->calls++;
    return s->stop_at < 0 || s->calls < s->stop_at;
}

/* The golden's signal tokens are the last n_sig positions: prompt = the rest, the response
 * starts with [IMG0] (forced) and the turn completes the group itself. */
static void test_golden_turn(void **state) {
    (void)state;
    golden g;
    golden_open(&g);
    int32_t sig[8];
    for (int i = 0; i < g.n_sig; i++) sig[i] = g.ids[g.sig_pos[i]];
    int n_prompt = g.sig_pos[0];
    assert_int_equal(n_prompt + g.n_sig, g.n_ids);
    mmp_a2a *a = load(sig, g.n_sig);
    assert_int_equal(mmp_a2a_n_signal(a), g.n_sig);

    /* 1: [IMG0] forced, the rest completed by the turn, streamed */
    mmp_a2a_turn_params tp = golden_turn(&g);
    int32_t first = sig[0];
    tp.forced = &first;
    tp.n_forced = 1;
    struct stream s = { 0, -1, { 0 } };
    tp.on_token = on_token;
    tp.cb_user = &s;
    mmp_a2a_result r;
    if (mmp_a2a_turn(a, g.ids, n_prompt, &tp, &r) != MMP_OK) fail_msg("turn: %s", mmp_last_error());
    assert_int_equal(r.n_tokens, g.n_sig);
    assert_int_equal(s.calls, g.n_sig);
    for (int i = 0; i < g.n_sig; i++) { assert_int_equal(r.tokens[i], sig[i]); assert_int_equal(s.seen[i], sig[i]); }
    assert_non_null(r.text);
    assert_string_equal(r.text, "");   /* no tokenizer, and signal tokens are not text */
    check_image_side(&g, &r, "nextgpt_e2e (turn, [IMG0] forced + completed)");
    mmp_a2a_result_free(&r);
    assert_null(r.image01);

    /* 2: the whole group forced (not completed twice), after a reset, more tokens allowed:
     * generation goes on after the group, the image is the same */
    assert_int_equal(mmp_a2a_reset(a), MMP_OK);
    tp = golden_turn(&g);
    tp.forced = sig;
    tp.n_forced = g.n_sig;
    tp.max_new_tokens = g.n_sig + 3;
    if (mmp_a2a_turn(a, g.ids, n_prompt, &tp, &r) != MMP_OK) fail_msg("turn 2: %s", mmp_last_error());
    assert_int_equal(r.n_tokens, g.n_sig + 3);
    for (int i = 0; i < g.n_sig; i++) assert_int_equal(r.tokens[i], sig[i]);
    check_image_side(&g, &r, "nextgpt_e2e (turn, group forced)");
    mmp_a2a_result_free(&r);

    /* 3: without reset the next turn continues the conversation: different history, and no
     * group in it -> no image */
    tp = golden_turn(&g);
    tp.max_new_tokens = 2;
    tp.complete_signal = false;
    if (mmp_a2a_turn(a, g.ids, 2, &tp, &r) != MMP_OK) fail_msg("turn 3: %s", mmp_last_error());
    bool has_all = true;
    for (int k = 0; k < g.n_sig; k++) {
        bool f = false;
        for (int i = 0; i < r.n_tokens; i++) f |= r.tokens[i] == sig[k];
        has_all &= f;
    }
    assert_int_equal(r.has_image, has_all);
    mmp_a2a_result_free(&r);

    /* 4: the image half alone from the golden signal hidden states */
    tp = golden_turn(&g);
    memset(&r, 0, sizeof r);
    if (mmp_a2a_generate_image(a, g.signal_hidden, g.n_sig, &tp, &r) != MMP_OK) fail_msg("generate_image: %s", mmp_last_error());
    double e_c = mmpt_rel_l2(r.conditioning, g.conditioning, (size_t)r.t_ctx * r.d_ctx);
    double e_l = mmpt_rel_l2(r.latents, g.latents_final, (size_t)r.lat_c * r.lat_h * r.lat_w);
    printf("# generate_image from golden hidden: conditioning %.3g, latents %.3g\n", e_c, e_l);
    assert_true(e_c <= 1e-4 && e_l <= 1e-3);
    mmp_a2a_result_free(&r);

    mmp_a2a_free(a);
    golden_close(&g);
}

/* Signal tokens the model generates itself: declare the model's own greedy first token to be
 * [IMG0]; the turn must recognise it, complete the group, and take the hidden states at the
 * group's positions -- checked against one full-batch forward pass over prompt + response. */
static void test_generated_signal(void **state) {
    (void)state;
    golden g;
    golden_open(&g);
    int n_prompt = g.sig_pos[0];
    int32_t sig0[4] = { 0, 1, 2, 3 };
    mmp_a2a *a = load(sig0, 4);
    /* the greedy continuation, with no group recognised (ids 0..3 unlikely; checked below) */
    mmp_a2a_turn_params tp = golden_turn(&g);
    tp.max_new_tokens = 1;
    tp.complete_signal = false;
    mmp_a2a_result r;
    if (mmp_a2a_turn(a, g.ids, n_prompt, &tp, &r) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(r.n_tokens, 1);
    int32_t t0 = r.tokens[0];
    mmp_a2a_result_free(&r);
    mmp_a2a_free(a);

    /* [IMG0] = t0, the others three ids that are not t0 */
    int32_t sig[4] = { t0, 0, 0, 0 };
    for (int k = 1, c = 100; k < 4; c++) if (c != t0) sig[k++] = c;
    a = load(sig, 4);
    tp = golden_turn(&g);
    tp.max_new_tokens = 6;
    tp.stop_after_image = true;
    if (mmp_a2a_turn(a, g.ids, n_prompt, &tp, &r) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(r.n_tokens, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(r.tokens[i], sig[i]);
    assert_true(r.has_image);

    /* reference: prompt + group in one batch, hidden rows of the group */
    const mmp_llm *m = mmp_a2a_llm(a);
    int E = mmp_llm_get_hparams(m)->n_embd, n = n_prompt + 4;
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_threads = 2;
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, &cp);
    assert_non_null(c);
    int32_t seq[64];
    memcpy(seq, g.ids, (size_t)n_prompt * 4);
    memcpy(seq + n_prompt, sig, 16);
    float *hid = malloc((size_t)n * E * sizeof(float));
    mmp_llm_batch b = { .n = n, .tokens = seq, .hidden = hid };
    assert_int_equal(mmp_llm_decode(c, &b), MMP_OK);
    double e = mmpt_rel_l2(r.signal_hidden, hid + (size_t)n_prompt * E, (size_t)4 * E);
    printf("# generated group: signal hidden vs full-batch pass %.3g\n", e);
    assert_true(e <= 1e-4);
    free(hid);
    mmp_llm_ctx_free(c);
    mmp_a2a_result_free(&r);

    /* streaming stop: the callback ends the turn after 2 tokens: no complete group, no image */
    assert_int_equal(mmp_a2a_reset(a), MMP_OK);
    struct stream s = { 0, 2, { 0 } };
    tp.on_token = on_token;
    tp.cb_user = &s;
    if (mmp_a2a_turn(a, g.ids, n_prompt, &tp, &r) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_int_equal(r.n_tokens, 2);
    assert_false(r.has_image);
    assert_null(r.image01);
    mmp_a2a_result_free(&r);
    mmp_a2a_free(a);
    golden_close(&g);
}

static mmp_array *arr_f32(int nd, const int64_t *dims, const float *src) {
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, nd, dims);
    assert_non_null(a);
    memcpy(a->data, src, mmp_array_nbytes(a));
    return a;
}

/* The stock any-to-any pipeline (the loop as one generator.sample stage) on the golden. */
static void test_pipeline_any2any(void **state) {
    (void)state;
    golden g;
    golden_open(&g);
    mmp_registry *reg = mmp_registry_new();
    char path[1024];
    snprintf(path, sizeof path, "%s", mmpt_data("../../pipelines/nextgpt-any2any.pipe"));
    mmp_pipeline_desc *d = mmp_pipeline_desc_load(path);
    if (!d) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_pipeline_desc_set_param(d, "llm", mmpt_data(LLM)), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "projector", mmpt_data(PROJ)), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "unet", mmpt_data("gen/unet")), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "vae", mmpt_data("gen/vae")), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "steps", "6"), MMP_OK);
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    mmp_pipeline *p = mmp_pipeline_new(d, reg, &pp);
    if (!p) fail_msg("%s", mmp_last_error());
    mmp_array *ids = mmp_array_new(MMP_TYPE_I32, 1, (int64_t[]){ g.n_ids });
    memcpy(ids->data, g.ids, (size_t)g.n_ids * 4);
    mmp_array *lat = arr_f32(3, (int64_t[]){ g.lat_c, g.lat_h, g.lat_w }, g.latents_init);
    const mmp_array *in[4] = { 0 };
    in[mmp_pipeline_find_input(p, "tokens")] = ids;
    in[mmp_pipeline_find_input(p, "latents_init")] = lat;
    int n_out = mmp_pipeline_n_outputs(p);
    mmp_array *out[8] = { 0 };
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    const mmp_array *sh = out[mmp_pipeline_find_output(p, "signal_hidden")], *co = out[mmp_pipeline_find_output(p, "conditioning")];
    const mmp_array *lf = out[mmp_pipeline_find_output(p, "latents")], *im = out[mmp_pipeline_find_output(p, "image")];
    double e_h = mmpt_rel_l2(sh->data, g.signal_hidden, (size_t)mmp_array_nelements(sh));
    double e_c = mmpt_rel_l2(co->data, g.conditioning, (size_t)mmp_array_nelements(co));
    double e_l = mmpt_rel_l2(lf->data, g.latents_final, (size_t)mmp_array_nelements(lf));
    assert_int_equal(mmp_array_nelements(im), 3 * g.img_h * g.img_w);
    double e_i = mae(im->data, g.image, (size_t)mmp_array_nelements(im));
    printf("# nextgpt-any2any.pipe: signal_hidden %.3g, conditioning %.3g, latents %.3g; image MAE %.3g (x255 = %.4f)\n", e_h, e_c, e_l,
           e_i, e_i * 255);
    assert_true(e_h <= 1e-4 && e_c <= 1e-4 && e_l <= 1e-3 && e_i <= 1.0 / 255);
    for (int i = 0; i < n_out; i++) mmp_array_free(out[i]);
    mmp_array_free(ids);
    mmp_array_free(lat);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    golden_close(&g);
}

/* The stock nextgpt-chat.pipe, which generates the answer inside the pipeline: the golden's
 * prompt (its signal group cut off) as token ids, [IMG0] forced as the response prefix, the rest
 * of the group completed by backbone.generate, the image branch fed by its signal_hidden. The
 * golden LLM folder has no tokenizer, so the prompt.text stage is replaced by a tokens input
 * (the rest of the file is used as shipped). A second run whose answer holds no signal token
 * skips the image branch: those outputs are absent, the text ones are there. */
static void test_chat_pipe_any2any(void **state) {
    (void)state;
    golden g;
    golden_open(&g);
    size_t len = 0;
    const char *stock = mmp_pipeline_stock_text("nextgpt-chat", &len);
    if (!stock) fail_msg("%s", mmp_last_error());
    /* drop the prompt stage: its line, the text / media inputs and its edge; feed ids to gen.tokens */
    char *text = malloc(len + 64);
    assert_non_null(text);
    text[0] = 0;
    for (const char *l = stock; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l + 1) : strlen(l);
        bool drop = !strncmp(l, "stage prompt ", 13) || !strncmp(l, "input text ", 11) || !strncmp(l, "input media", 11) ||
                    !strncmp(l, "prompt.embeddings ", 18);
        if (!drop) strncat(text, l, n);
        l += n;
    }
    strcat(text, "input tokens -> gen.tokens\n");
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(text, "nextgpt-chat-ids.pipe");
    free(text);
    if (!d) fail_msg("%s", mmp_last_error());
    char sig[64], first[16];
    int o = 0;
    for (int k = 0; k < g.n_sig; k++) o += snprintf(sig + o, sizeof sig - (size_t)o, "%s%d", k ? " " : "", (int)g.ids[g.sig_pos[k]]);
    snprintf(first, sizeof first, "%d", (int)g.ids[g.sig_pos[0]]);
    const char *set[][2] = { { "llm", mmpt_data(LLM) }, { "projector", mmpt_data(PROJ) }, { "unet", mmpt_data("gen/unet") },
                             { "vae", mmpt_data("gen/vae") }, { "steps", "6" }, { "signal", sig }, { "forced", first },
                             { "n", "4" }, { "template", "none" } };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        char v[1024];
        snprintf(v, sizeof v, "%s", set[i][1]);
        if (mmp_pipeline_desc_set_param(d, set[i][0], v) != MMP_OK) fail_msg("%s", mmp_last_error());
    }
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    mmp_pipeline *p = mmp_pipeline_new(d, reg, &pp);
    if (!p) fail_msg("%s", mmp_last_error());
    int n_prompt = g.sig_pos[0];   /* the ids before the signal group */
    mmp_array *ids = mmp_array_new(MMP_TYPE_I32, 1, (int64_t[]){ n_prompt });
    memcpy(ids->data, g.ids, (size_t)n_prompt * 4);
    mmp_array *lat = arr_f32(3, (int64_t[]){ g.lat_c, g.lat_h, g.lat_w }, g.latents_init);
    const mmp_array *in[2] = { 0 };
    in[mmp_pipeline_find_input(p, "tokens")] = ids;
    in[mmp_pipeline_find_input(p, "latents_init")] = lat;
    int n_out = mmp_pipeline_n_outputs(p);
    mmp_array *out[8] = { 0 };
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    const mmp_array *tk = out[mmp_pipeline_find_output(p, "tokens")];
    assert_int_equal(tk->dims[0], g.n_sig);   /* [IMG0] forced, [IMG1].. completed */
    for (int k = 0; k < g.n_sig; k++) assert_int_equal(((int32_t *)tk->data)[k], g.ids[g.sig_pos[k]]);
    const mmp_array *sh = out[mmp_pipeline_find_output(p, "signal_hidden")], *co = out[mmp_pipeline_find_output(p, "conditioning")];
    const mmp_array *lf = out[mmp_pipeline_find_output(p, "latents")], *im = out[mmp_pipeline_find_output(p, "image")];
    assert_non_null(sh); assert_non_null(co); assert_non_null(lf); assert_non_null(im);
    double e_h = mmpt_rel_l2(sh->data, g.signal_hidden, (size_t)mmp_array_nelements(sh));
    double e_c = mmpt_rel_l2(co->data, g.conditioning, (size_t)mmp_array_nelements(co));
    double e_l = mmpt_rel_l2(lf->data, g.latents_final, (size_t)mmp_array_nelements(lf));
    assert_int_equal(mmp_array_nelements(im), 3 * g.img_h * g.img_w);
    double e_i = mae(im->data, g.image, (size_t)mmp_array_nelements(im));
    printf("# nextgpt-chat.pipe (generated group): signal_hidden %.3g, conditioning %.3g, latents %.3g; image MAE %.3g (x255 = %.4f)\n",
           e_h, e_c, e_l, e_i, e_i * 255);
    assert_true(e_h <= 1e-4 && e_c <= 1e-4 && e_l <= 1e-3 && e_i <= 1.0 / 255);
    for (int i = 0; i < n_out; i++) { mmp_array_free(out[i]); out[i] = NULL; }
    mmp_pipeline_free(p);

    /* no signal token in the answer: forced ids that are not signals, two tokens */
    assert_int_equal(mmp_pipeline_desc_set_param(d, "forced", "5 6"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_set_param(d, "n", "2"), MMP_OK);
    p = mmp_pipeline_new(d, reg, &pp);
    if (!p) fail_msg("%s", mmp_last_error());
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    assert_non_null(out[mmp_pipeline_find_output(p, "text")]);
    tk = out[mmp_pipeline_find_output(p, "tokens")];
    assert_non_null(tk);
    assert_int_equal(tk->dims[0], 2);
    assert_null(out[mmp_pipeline_find_output(p, "signal_hidden")]);
    assert_null(out[mmp_pipeline_find_output(p, "conditioning")]);
    assert_null(out[mmp_pipeline_find_output(p, "latents")]);
    assert_null(out[mmp_pipeline_find_output(p, "image")]);
    for (int i = 0; i < n_out; i++) mmp_array_free(out[i]);
    mmp_pipeline_free(p);
    mmp_array_free(ids);
    mmp_array_free(lat);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    golden_close(&g);
}

static void test_bad_input(void **state) {
    (void)state;
    golden g;
    golden_open(&g);
    char llm[1024], proj[1024], unet[1024], vae[1024];
    snprintf(llm, sizeof llm, "%s", mmpt_data(LLM));
    snprintf(proj, sizeof proj, "%s", mmpt_data(PROJ));
    snprintf(unet, sizeof unet, "%s", mmpt_data("gen/unet"));
    snprintf(vae, sizeof vae, "%s", mmpt_data("gen/vae"));
    int32_t sig[4] = { 252, 253, 254, 255 };
    mmp_a2a_params p = mmp_a2a_params_default();
    p.llm_path = llm; p.projector_path = proj; p.unet_path = unet; p.vae_path = vae;
    p.proj.n_heads = 4;
    /* missing path */
    p.vae_path = NULL;
    assert_null(mmp_a2a_load(&p));
    p.vae_path = vae;
    /* (every LLM and projector in tests/data is 64 wide: the width check is not exercised) */
    /* signal ids: none (no tokenizer), out of range, duplicated */
    p.signal_ids = NULL; p.n_signal = 0;
    assert_null(mmp_a2a_load(&p));
    assert_non_null(strstr(mmp_last_error(), "signal_ids"));
    int32_t bad[2] = { 3, 256 };
    p.signal_ids = bad; p.n_signal = 2;
    assert_null(mmp_a2a_load(&p));
    assert_non_null(strstr(mmp_last_error(), "256"));
    int32_t dup[2] = { 3, 3 };
    p.signal_ids = dup;
    assert_null(mmp_a2a_load(&p));
    /* a UNet whose channels do not fit the VAE: a TAEF2 decoder has 32 */
    char taef2[1024];
    snprintf(taef2, sizeof taef2, "%s", mmpt_data("gen/taef2/taef2_decoder.safetensors"));
    p.signal_ids = sig; p.n_signal = 4;
    p.vae_path = taef2;
    assert_null(mmp_a2a_load(&p));
    assert_non_null(strstr(mmp_last_error(), "32"));
    p.vae_path = vae;

    mmp_a2a *a = mmp_a2a_load(&p);
    assert_non_null(a);
    mmp_a2a_turn_params tp = golden_turn(&g);
    mmp_a2a_result r;
    int32_t prompt[3] = { 1, 300, 5 };
    assert_int_equal(mmp_a2a_turn(a, prompt, 3, &tp, &r), MMP_ERR_INVALID_ARG);      /* id outside the vocab */
    assert_null(r.text);
    assert_int_equal(mmp_a2a_turn(a, prompt, 0, &tp, &r), MMP_ERR_INVALID_ARG);      /* empty prompt */
    int32_t big[300];
    for (int i = 0; i < 300; i++) big[i] = 5;
    assert_int_equal(mmp_a2a_turn(a, big, 300, &tp, &r), MMP_ERR_LIMIT);            /* past n_ctx 256 */
    tp.width = 30;   /* not a multiple of the VAE scale */
    assert_int_equal(mmp_a2a_generate_image(a, g.signal_hidden, 4, &tp, &r), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "30x"));
    tp = golden_turn(&g);
    tp.steps = 0;
    assert_int_equal(mmp_a2a_generate_image(a, g.signal_hidden, 4, &tp, &r), MMP_ERR_INVALID_ARG);
    tp.steps = 10000;
    assert_int_equal(mmp_a2a_generate_image(a, g.signal_hidden, 4, &tp, &r), MMP_ERR_INVALID_ARG);
    mmp_a2a_free(a);
    mmp_a2a_free(NULL);
    mmp_a2a_result_free(NULL);
    golden_close(&g);
}

/* Sessions on one store, one per thread: the LLM and the output projector are loaded once and
 * shared, the UNet and VAE are per session on one mapping of their files; each session's turns
 * give bitwise the results of a session with its own models. */
typedef struct session_job {
    mmp_a2a *a;
    const golden *g;
    const int32_t *sig;
    const mmp_a2a_result *want;
    pthread_barrier_t *start;
    int bad;   /* 0: every turn matched; else the first mismatch (1 status, 2 tokens, 3 hidden, ...) */
} session_job;

static bool same_f32(const float *a, const float *b, size_t n) { return a && b && !memcmp(a, b, n * sizeof(float)); }

static int turn_compare(mmp_a2a *a, const golden *g, const int32_t *sig, const mmp_a2a_result *want, mmp_a2a_result *keep) {
    mmp_a2a_turn_params tp = golden_turn(g);
    tp.forced = sig;
    tp.n_forced = 1;
    tp.max_new_tokens = g->n_sig + 3;   /* generation goes on after the group */
    mmp_a2a_result r;
    if (mmp_a2a_reset(a) != MMP_OK || mmp_a2a_turn(a, g->ids, g->sig_pos[0], &tp, &r) != MMP_OK) return 1;
    int bad = 0;
    if (want) {
        if (r.n_tokens != want->n_tokens || memcmp(r.tokens, want->tokens, (size_t)r.n_tokens * sizeof(int32_t))) bad = 2;
        else if (r.has_image != want->has_image || r.n_embd != want->n_embd ||
                 !same_f32(r.signal_hidden, want->signal_hidden, (size_t)r.n_signal * r.n_embd)) bad = 3;
        else if (!same_f32(r.conditioning, want->conditioning, (size_t)r.t_ctx * r.d_ctx)) bad = 4;
        else if (!same_f32(r.latents, want->latents, (size_t)r.lat_c * r.lat_h * r.lat_w)) bad = 5;
        else if (!same_f32(r.image01, want->image01, (size_t)3 * r.width * r.height)) bad = 6;
    }
    if (keep) *keep = r;
    else mmp_a2a_result_free(&r);
    return bad;
}

static void *session_work(void *arg) {
    session_job *j = arg;
    pthread_barrier_wait(j->start);
    for (int i = 0; i < 2 && !j->bad; i++) j->bad = turn_compare(j->a, j->g, j->sig, j->want, NULL);
    return NULL;
}

static void test_shared_sessions(void **state) {
    (void)state;
    golden g;
    golden_open(&g);
    int32_t sig[8];
    for (int i = 0; i < g.n_sig; i++) sig[i] = g.ids[g.sig_pos[i]];
    /* the reference: one session with its own models */
    mmp_a2a *solo = load(sig, g.n_sig);
    mmp_a2a_result want;
    assert_int_equal(turn_compare(solo, &g, sig, NULL, &want), 0);
    mmp_a2a_free(solo);
    check_image_side(&g, &want, "nextgpt_e2e (reference session)");

    mmp_store *store = mmp_store_new();
    assert_non_null(store);
    mmp_a2a *a[2] = {load_on(sig, g.n_sig, store), load_on(sig, g.n_sig, store)};
    mmp_store_stats s = mmp_store_get_stats(store);
    printf("# two sessions on one store: files_open %lld, models_loaded %lld, file_opens %lld, model_loads %lld, hits %lld\n",
           (long long)s.files_open, (long long)s.models_loaded, (long long)s.file_opens, (long long)s.model_loads,
           (long long)s.hits);
    assert_int_equal(s.model_loads, 2);      /* the LLM and the output projector, once each */
    assert_int_equal(s.models_loaded, 2);
    /* the LLM folder, the projector file, the UNet and VAE folders: each mapped once */
    assert_int_equal(s.file_opens, 4);
    assert_int_equal(s.files_open, 4);
    /* the second session: its LLM and projector, and the UNet and VAE mappings */
    assert_int_equal(s.hits, 4);
    assert_ptr_equal(mmp_a2a_llm(a[0]), mmp_a2a_llm(a[1]));
    assert_ptr_not_equal(mmp_a2a_unet(a[0]), mmp_a2a_unet(a[1]));   /* scratch: per session */
    assert_ptr_not_equal(mmp_a2a_vae(a[0]), mmp_a2a_vae(a[1]));

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    session_job jobs[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (session_job){.a = a[i], .g = &g, .sig = sig, .want = &want, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, session_work, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; i++)
        if (jobs[i].bad) fail_msg("session %d: differs from the single session (step %d): %s", i, jobs[i].bad, mmp_last_error());
    /* one session gone, the other still runs on the shared models */
    mmp_a2a_free(a[0]);
    assert_int_equal(turn_compare(a[1], &g, sig, &want, NULL), 0);
    mmp_a2a_free(a[1]);
    s = mmp_store_get_stats(store);
    assert_int_equal(s.files_open, 0);
    assert_int_equal(s.models_loaded, 0);
    /* a missing UNet through the store: named, and everything taken from the store given back */
    mmp_a2a_params bp = mmp_a2a_params_default();
    char llm[1024], proj[1024], vae[1024];
    snprintf(llm, sizeof llm, "%s", mmpt_data(LLM));
    snprintf(proj, sizeof proj, "%s", mmpt_data(PROJ));
    snprintf(vae, sizeof vae, "%s", mmpt_data("gen/vae"));
    bp.llm_path = llm; bp.projector_path = proj; bp.unet_path = "/no/such/unet"; bp.vae_path = vae;
    bp.proj.n_heads = 4;
    bp.signal_ids = sig;
    bp.n_signal = g.n_sig;
    bp.store = store;
    assert_null(mmp_a2a_load(&bp));
    printf("  error: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "/no/such/unet"));
    s = mmp_store_get_stats(store);
    assert_int_equal(s.files_open, 0);
    assert_int_equal(s.models_loaded, 0);
    mmp_store_free(store);
    mmp_a2a_result_free(&want);
    golden_close(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_turn),
        cmocka_unit_test(test_generated_signal),
        cmocka_unit_test(test_pipeline_any2any),
        cmocka_unit_test(test_chat_pipe_any2any),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_shared_sessions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
