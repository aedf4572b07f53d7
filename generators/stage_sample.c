/* Stage kinds of the denoising loop:
 *
 *   scheduler.step     one scheduler step: sample x_t [C, H, W] + model output at step `index`
 *                      -> x_{t-1}. Options: kind=ddim|euler|euler_a|dpmpp_2m, steps=N, index=i,
 *                      spacing=leading|trailing|linspace, offset=K (steps_offset), karras=0|1,
 *                      prediction=epsilon|v, seed=S (Euler a noise); model (optional): a diffusers
 *                      scheduler_config.json whose values come first (options override them),
 *                      with option section=NAME to read an object member of it instead of the root.
 *   generator.sample   the whole CFG sampling loop as one stage: conditioning [T, D] (+ optional
 *                      uncond [T, D], zeros when absent, as NExT-GPT) + initial noise [C, h, w]
 *                      -> final latents [C, h, w] + image [3, s*h, s*w] in [0, 1].
 *                      model = a Stable Diffusion root (diffusers folder with model_index.json
 *                      or a single-file checkpoint): its UNet, VAE and scheduler config, from
 *                      the mmp_sd shared through the store with tokenize.clip and
 *                      encoder.clip_text (core/sd-impl.h; aux = an optional other VAE / TAESD,
 *                      options tokenizer=DIR, ldm_heads/ldm_groups/ldm_text_heads=N), checked
 *                      as mmp_sd_check does at creation; or model = the UNet folder and aux =
 *                      the VAE (folder or TAESD file), through the store as generator.unet /
 *                      generator.vae_decode get them.
 *                      Options: sampler=ddim|euler|euler_a|dpmpp_2m, steps=N (20), cfg=F (7.5),
 *                      spacing, offset, karras, prediction, seed as above; latents_init may be
 *                      left unconnected: then noise from `seed` of size=WxH pixels (option).
 *
 * The state caveat. A pipeline runs each stage once (no loops), so a scheduler.step stage starts
 * from a fresh scheduler every run and gets to step `index` by replaying steps 0..index-1 on
 * scratch data (elementwise, cheap). That reproduces everything a step depends on EXCEPT the
 * history of the multistep solver: DPM-Solver++ 2M's step i >= 1 uses the x0 prediction of step
 * i-1, which is a function of the previous sample and model output. So for dpmpp_2m at
 * index >= 1 the two optional ports prev_sample and prev_output (x_{i-1} and the model output
 * of step i-1) are required; step i-1 is replayed on them to rebuild the history exactly.
 * Euler a draws its noise from a generator seeded by `seed`; the replay advances it the same
 * number of draws (so the sample size must be the same at every step). DDIM and Euler are
 * stateless. Note also that Euler / Euler a models see sample * input_scale(i)
 * (scale_model_input), which the UNet stage does not apply: scale its input yourself. */
#include "gen-impl.h"
#include "util.h"
#include "../core/stage-impl.h"
#include "../core/store-impl.h"
#include "../core/sd-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- options shared by both kinds ---- */

typedef struct sample_opts {
    bool have_kind;
    enum mmp_sched_kind kind;
    int steps, index;
    bool have_steps, have_index;
    float cfg;
    int spacing;      /* -1: unset */
    int offset;       /* -1: unset */
    int karras;       /* -1: unset */
    int prediction;   /* -1: unset */
    bool have_seed;
    uint64_t seed;
    int width, height;
    char section[64];
} sample_opts;

static enum mmp_status parse_int(const char *kind, const char *key, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: option %s=%s, expected an integer in %lld..%lld", kind, key, v, lo, hi);
    *out = x;
    return MMP_OK;
}

/* "k=v,k=v" (mmp__opts_parse: "\," escapes a comma) -> o. `loop` selects the keys of
 * generator.sample (sampler, cfg, size, and the SD root load options into *sd) vs
 * scheduler.step (kind, index). */
static enum mmp_status parse_opts(const char *kind, const char *opt, bool loop, sample_opts *o, mmp__sd_opts *sd) {
    memset(o, 0, sizeof *o);
    o->spacing = o->offset = o->karras = o->prediction = -1;
    o->cfg = 7.5f;
    o->steps = 20;
    mmp__opt items[24];
    char *storage = NULL;
    int n = mmp__opts_parse(kind, opt, items, 24, &storage);
    if (n < 0) return MMP_ERR_INVALID_ARG;
    enum mmp_status st = MMP_OK;
    for (int i = 0; i < n && st == MMP_OK; i++) {
        const char *k = items[i].key, *v = items[i].val;
        long long x = 0;
        if (!*v || !strcmp(v, "auto")) continue;   /* the default (a pipeline parameter left "") */
        if (strcmp(k, loop ? "sampler" : "kind") == 0) {
            o->kind = mmp_sched_kind_from_name(v);
            if (o->kind == MMP_SCHED_COUNT)
                st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option %s=%s, expected ddim, euler, euler_a or dpmpp_2m", kind, k, v);
            o->have_kind = true;
        } else if (strcmp(k, "steps") == 0) {
            if ((st = parse_int(kind, k, v, 1, 1000, &x)) == MMP_OK) { o->steps = (int)x; o->have_steps = true; }
        } else if (!loop && strcmp(k, "index") == 0) {
            if ((st = parse_int(kind, k, v, 0, 999, &x)) == MMP_OK) { o->index = (int)x; o->have_index = true; }
        } else if (loop && strcmp(k, "cfg") == 0) {
            char *e;
            double f = strtod(v, &e);
            if (!*v || *e || !(f >= 0 && f <= 100)) st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option cfg=%s, expected 0..100", kind, v);
            else o->cfg = (float)f;
        } else if (loop && strcmp(k, "size") == 0) {
            int w, h;
            char c;
            if (sscanf(v, "%dx%d%c", &w, &h, &c) != 2 || w < 1 || h < 1 || w > 8192 || h > 8192)
                st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option size=%s, expected WxH pixels (1..8192)", kind, v);
            else { o->width = w; o->height = h; }
        } else if (strcmp(k, "spacing") == 0) {
            if (strcmp(v, "leading") == 0) o->spacing = MMP_SPACING_LEADING;
            else if (strcmp(v, "trailing") == 0) o->spacing = MMP_SPACING_TRAILING;
            else if (strcmp(v, "linspace") == 0) o->spacing = MMP_SPACING_LINSPACE;
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option spacing=%s, expected leading, trailing or linspace", kind, v);
        } else if (strcmp(k, "offset") == 0) {
            if ((st = parse_int(kind, k, v, 0, 1000, &x)) == MMP_OK) o->offset = (int)x;
        } else if (strcmp(k, "karras") == 0) {
            if ((st = parse_int(kind, k, v, 0, 1, &x)) == MMP_OK) o->karras = (int)x;
        } else if (strcmp(k, "prediction") == 0) {
            if (strcmp(v, "epsilon") == 0) o->prediction = MMP_PREDICT_EPSILON;
            else if (strcmp(v, "v") == 0 || strcmp(v, "v_prediction") == 0) o->prediction = MMP_PREDICT_V;
            else st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option prediction=%s, expected epsilon or v", kind, v);
        } else if (strcmp(k, "seed") == 0) {
            char *e;
            unsigned long long sd_ = strtoull(v, &e, 10);
            if (!*v || *e || *v == '-') st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option seed=%s, expected an unsigned integer", kind, v);
            else { o->seed = sd_; o->have_seed = true; }
        } else if (!loop && strcmp(k, "section") == 0) {
            if (strlen(v) >= sizeof o->section) st = mmp__error(MMP_ERR_INVALID_ARG, "%s: option section too long", kind);
            else strcpy(o->section, v);
        } else {
            int r = loop && sd ? mmp__sd_opt(kind, k, v, sd) : 0;
            if (r < 0) st = MMP_ERR_INVALID_ARG;
            else if (r == 0)
                st = mmp__error(MMP_ERR_INVALID_ARG, "%s: unknown option '%s' (known: %s)", kind, k,
                                loop ? "sampler, steps, cfg, spacing, offset, karras, prediction, seed, size; with an SD root: "
                                       "tokenizer, ldm_heads, ldm_groups, ldm_text_heads"
                                     : "kind, steps, index, spacing, offset, karras, prediction, seed, section");
        }
    }
    free(storage);
    return st;
}

/* Scheduler parameters: defaults of the kind (or *sp as given with `base`), then the config file,
 * then the options. */
static enum mmp_status make_params(const char *kind, const sample_opts *o, const char *config, bool base, mmp_sched_params *sp) {
    if (!base) *sp = mmp_sched_params_default(o->kind);
    if (config) {
        mmp_json *j = mmp_json_open(config);
        if (!j) { mmp__error_prefix("%s: ", kind); return MMP_ERR_IO; }
        enum mmp_status st = mmp_sched_params_from_json(sp, j, o->section);
        mmp_json_free(j);
        if (st != MMP_OK) { mmp__error_prefix("%s: ", kind); return st; }
        sp->kind = o->kind;
    }
    if (o->spacing >= 0) sp->spacing = (enum mmp_timestep_spacing)o->spacing;
    if (o->offset >= 0) sp->steps_offset = o->offset;
    if (o->karras >= 0) sp->use_karras_sigmas = o->karras != 0;
    if (o->prediction >= 0) sp->prediction_type = (enum mmp_prediction_type)o->prediction;
    if (o->have_seed) sp->seed = o->seed;
    return MMP_OK;
}

/* ---- scheduler.step ---- */

typedef struct step_stage {
    mmp_sched_params sp;
    int steps, index;
} step_stage;

static void step_destroy(void *st) { free(st); }

static void *step_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    (void)in; (void)out;
    const char *K = "scheduler.step";
    sample_opts o;
    if (parse_opts(K, p ? p->options : NULL, false, &o, NULL) != MMP_OK) return NULL;
    if (!o.have_kind || !o.have_steps || !o.have_index)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: options kind=, steps= and index= are required (e.g. kind=ddim,steps=20,index=0)", K);
    if (o.index >= o.steps) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: index=%d but only %d steps (0..%d)", K, o.index, o.steps, o.steps - 1);
    step_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    if (make_params(K, &o, p ? p->model_path : NULL, false, &s->sp) != MMP_OK) { free(s); return NULL; }
    s->steps = o.steps;
    s->index = o.index;
    /* the timesteps must exist for these settings: fail now, before any run */
    mmp_scheduler *sc = mmp_scheduler_new(&s->sp);
    if (!sc || mmp_scheduler_set_timesteps(sc, s->steps) != MMP_OK) {
        mmp__error_prefix("%s: ", K);
        mmp_scheduler_free(sc);
        free(s);
        return NULL;
    }
    mmp_scheduler_free(sc);
    return s;
}

static bool same_shape(const mmp_array *a, const mmp_array *b) {
    if (a->n_dims != b->n_dims) return false;
    for (int i = 0; i < a->n_dims; i++) if (a->dims[i] != b->dims[i]) return false;
    return true;
}

static enum mmp_status step_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    (void)p;
    step_stage *s = state;
    const char *K = "scheduler.step";
    const mmp_array *x = inputs[0], *eps = inputs[1], *px = inputs[2], *pe = inputs[3];
    if (!x || !eps) return mmp__error(MMP_ERR_INVALID_ARG, "%s: sample and model_output are required", K);
    if (!same_shape(x, eps)) return mmp__error(MMP_ERR_SHAPE, "%s: model_output is not the shape of sample", K);
    if ((px != NULL) != (pe != NULL))
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: prev_sample and prev_output go together (one of them is unconnected)", K);
    if (px && (!same_shape(px, x) || !same_shape(pe, x)))
        return mmp__error(MMP_ERR_SHAPE, "%s: prev_sample / prev_output are not the shape of sample", K);
    bool multistep = s->sp.kind == MMP_SCHED_DPMPP_2M;
    if (multistep && s->index >= 1 && !px)
        return mmp__error(MMP_ERR_INVALID_ARG,
                          "%s: dpmpp_2m step %d needs the multistep history: connect prev_sample and prev_output (step %d's sample and "
                          "model output)", K, s->index, s->index - 1);
    int64_t n = mmp_array_nelements(x);
    mmp_array *o = mmp_array_new(MMP_TYPE_F32, x->n_dims, x->dims);
    float *scratch = mmp__calloc((size_t)n, sizeof(float)), *zero = mmp__calloc((size_t)n, sizeof(float));
    mmp_scheduler *sc = mmp_scheduler_new(&s->sp);
    enum mmp_status st = MMP_OK;
    if (!o || !scratch || !zero || !sc) { st = sc ? MMP_ERR_NOMEM : MMP_ERR_INVALID_ARG; goto done; }
    if ((st = mmp_scheduler_set_timesteps(sc, s->steps)) != MMP_OK) goto done;
    /* replay steps 0..index-1 (the last one on the real previous step when given) */
    for (int i = 0; i < s->index; i++) {
        bool real = px && i == s->index - 1;
        if (real) memcpy(scratch, px->data, (size_t)n * sizeof(float));
        if ((st = mmp_scheduler_step(sc, i, real ? (const float *)pe->data : zero, scratch, n)) != MMP_OK) goto done;
    }
    memcpy(o->data, x->data, (size_t)n * sizeof(float));
    if ((st = mmp_scheduler_step(sc, s->index, eps->data, o->data, n)) != MMP_OK) goto done;
    outputs[0] = o;
    o = NULL;
done:
    mmp_array_free(o);
    mmp_scheduler_free(sc);
    free(scratch);
    free(zero);
    return st;
}

#define LAT3 {MMP_ROLE_LATENTS, MMP_TYPE_F32, 3, {MMP_DIM_ANY, MMP_DIM_ANY, MMP_DIM_ANY}}
#define IMG3 {MMP_ROLE_IMAGE, MMP_TYPE_F32, 3, {3, MMP_DIM_ANY, MMP_DIM_ANY}}
#define COND2 {MMP_ROLE_CONDITIONING, MMP_TYPE_F32, 2, {MMP_DIM_ANY, MMP_DIM_ANY}}

const mmp_stage_kind mmp__stage_scheduler_step = {
    .name = "scheduler.step",
    .summary = "one DDIM / Euler / Euler a / DPM++ 2M step at index i of N (options kind, steps, index; dpmpp_2m: prev_* ports)",
    .n_inputs = 4,
    .n_outputs = 1,
    .inputs = {
        {"sample", LAT3, false, "x_t at step index [C, H, W]"},
        {"model_output", LAT3, false, "the model's output (noise or v) for sample at step index [C, H, W]"},
        {"prev_sample", LAT3, true, "dpmpp_2m, index >= 1: the sample at step index-1"},
        {"prev_output", LAT3, true, "dpmpp_2m, index >= 1: the model output at step index-1"},
    },
    .outputs = {
        {"latents", LAT3, false, "x at step index+1 (the final latents after the last step) [C, H, W]"},
    },
    .create = step_create,
    .run = step_run,
    .destroy = step_destroy,
};

/* ---- generator.sample ---- */

typedef struct loop_stage {
    mmp__model_ref r_unet, r_vae, r_sd;   /* UNet + VAE, or the SD root holding both */
    mmp_unet *unet;
    mmp_vae *vae;
    mmp_sched_params sp;
    sample_opts o;
} loop_stage;

static void loop_destroy(void *st) {
    loop_stage *s = st;
    if (!s) return;
    mmp__model_put(&s->r_unet);
    mmp__model_put(&s->r_vae);
    mmp__model_put(&s->r_sd);
    free(s);
}

/* UNet and VAE through the model store (generator.unet / vae_decode meet on the same tags) */
typedef struct { int n_threads; } gen_load_ctx;
static void *unet_load_cb(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    return mmp_unet_load_modelfile(mf, ((gen_load_ctx *)ctx)->n_threads);
}
static void unet_free_cb(void *m) { mmp_unet_free(m); }
static void *vae_load_cb(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    return mmp_vae_load_modelfile(mf, ((gen_load_ctx *)ctx)->n_threads);
}
static void vae_free_cb(void *m) { mmp_vae_free(m); }

enum mmp_status mmp__unet_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out) {
    gen_load_ctx c = { p && p->n_threads > 0 ? p->n_threads : 1 };
    char key[32];
    snprintf(key, sizeof key, "threads=%d", c.n_threads);
    return mmp__model_get(p, "unet", path, key, MMP__MODEL_SCRATCH, unet_load_cb, unet_free_cb, &c, out);
}
enum mmp_status mmp__vae_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out) {
    gen_load_ctx c = { p && p->n_threads > 0 ? p->n_threads : 1 };
    char key[32];
    snprintf(key, sizeof key, "threads=%d", c.n_threads);
    return mmp__model_get(p, "vae", path, key, MMP__MODEL_SCRATCH, vae_load_cb, vae_free_cb, &c, out);
}

static void *loop_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    const char *K = "generator.sample";
    if (!p || !p->model_path || !*p->model_path)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: model= (a Stable Diffusion root, or the UNet folder with aux= the VAE) is required", K);
    const char *aux = p->aux_path && *p->aux_path ? p->aux_path : NULL;
    bool root = mmp__sd_is_root(p->model_path);
    if (!root && !aux)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: %s is not a Stable Diffusion root (model_index.json or a single-file "
                               "checkpoint): then model= is the UNet folder and aux= the VAE, both required", K, p->model_path);
    loop_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    mmp__sd_opts so = {0};
    if (parse_opts(K, p->options, true, &s->o, &so) != MMP_OK) goto fail;
    if (!s->o.have_kind) s->o.kind = MMP_SCHED_DDIM;
    if (root) {
        /* the model shared with the text stages: UNet, VAE (or aux) and the scheduler config */
        if (mmp__sd_ref(p, p->model_path, aux, &so, &s->r_sd) != MMP_OK) goto fail;
        mmp_sd *sd = s->r_sd.model;
        s->unet = mmp_sd_unet(sd);
        s->vae = mmp_sd_vae(sd);
        if (mmp_sd_sched_params(sd, s->o.kind, &s->sp) != MMP_OK || make_params(K, &s->o, NULL, true, &s->sp) != MMP_OK) goto fail;
        /* the model checks of mmp_sd_generate, with the messages users know (sizes, channels,
         * the text encoder's width vs the UNet's cross_attention_dim) */
        mmp_sd_gen_params g = mmp_sd_gen_params_default();
        int mult = mmp_vae_scale(s->vae) * mmp_unet_size_multiple(s->unet);
        g.width = s->o.width ? s->o.width : mult;
        g.height = s->o.width ? s->o.height : mult;
        g.steps = s->o.steps;
        g.sampler = s->o.kind;
        g.karras = s->sp.use_karras_sigmas;
        if (mmp_sd_check(sd, &g) != MMP_OK) goto fail;
    } else {
        if (make_params(K, &s->o, NULL, false, &s->sp) != MMP_OK) goto fail;
        if (mmp__unet_ref(p, p->model_path, &s->r_unet) != MMP_OK || mmp__vae_ref(p, aux, &s->r_vae) != MMP_OK) goto fail;
        s->unet = s->r_unet.model;
        s->vae = s->r_vae.model;
    }
    mmp__sd_opts_free(&so);
    int C = mmp_unet_in_channels(s->unet);
    if (mmp_vae_latent_channels(s->vae) != C || mmp_unet_out_channels(s->unet) != C || !mmp_vae_has_decoder(s->vae)) {
        mmp__error(MMP_ERR_SHAPE, "%s: the UNet %s works on %d latent channels but the VAE %s decodes %d%s", K, p->model_path, C,
                   aux ? aux : "(the model's)", mmp_vae_latent_channels(s->vae), mmp_vae_has_decoder(s->vae) ? "" : " (and has no decoder)");
        goto fail;
    }
    int D = mmp_unet_cross_attention_dim(s->unet);
    in[0].dims[1] = D;
    in[1].dims[1] = D;
    in[2].dims[0] = C;
    out[0].dims[0] = C;
    return s;
fail:
    mmp__sd_opts_free(&so);
    loop_destroy(s);
    return NULL;
}

static enum mmp_status loop_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    loop_stage *s = state;
    const char *K = "generator.sample";
    const mmp_array *cond = inputs[0], *unc = inputs[1], *x0 = inputs[2];
    if (!cond) return mmp__error(MMP_ERR_INVALID_ARG, "%s: conditioning is required", K);
    int64_t T = cond->dims[0], D = cond->dims[1];
    if (unc && (unc->dims[0] != T || unc->dims[1] != D))
        return mmp__error(MMP_ERR_SHAPE, "%s: uncond is [%lld, %lld] but conditioning is [%lld, %lld]", K, (long long)unc->dims[0],
                          (long long)unc->dims[1], (long long)T, (long long)D);
    if (T > 100000) return mmp__error(MMP_ERR_LIMIT, "%s: conditioning of %lld rows", K, (long long)T);
    int C = mmp_unet_in_channels(s->unet), sc = mmp_vae_scale(s->vae);
    int64_t h, w;
    if (x0) {
        h = x0->dims[1]; w = x0->dims[2];
        if (h > 1024 || w > 1024) return mmp__error(MMP_ERR_LIMIT, "%s: latents %lldx%lld too large", K, (long long)h, (long long)w);
    } else {
        if (!s->o.width) return mmp__error(MMP_ERR_INVALID_ARG, "%s: latents_init is unconnected and no size=WxH option says how large", K);
        if (s->o.width % sc || s->o.height % sc)
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: size=%dx%d is not a multiple of the VAE's %d", K, s->o.width, s->o.height, sc);
        h = s->o.height / sc; w = s->o.width / sc;
    }
    size_t nl = (size_t)C * (size_t)h * (size_t)w;
    enum mmp_status st = MMP_OK;
    mmp_array *lat = mmp_array_new(MMP_TYPE_F32, 3, (int64_t[]){ C, h, w });
    mmp_array *img = mmp_array_new(MMP_TYPE_F32, 3, (int64_t[]){ 3, h * sc, w * sc });
    float *noise = NULL, *zeros = NULL;
    mmp_scheduler *sched = mmp_scheduler_new(&s->sp);
    if (!lat || !img || !sched) { st = sched ? MMP_ERR_NOMEM : MMP_ERR_INVALID_ARG; goto done; }
    const float *x = x0 ? x0->data : NULL, *u = unc ? unc->data : NULL;
    if (!x) {
        if (!(noise = mmp__malloc(nl * sizeof(float)))) { st = MMP_ERR_NOMEM; goto done; }
        mmp_randn(s->o.seed, noise, (int64_t)nl);
        x = noise;
    }
    if (!u && s->o.cfg > 1.0f) {
        /* no unconditional context given: zeros (NExT-GPT's negative conditioning) */
        if (!(zeros = mmp__calloc((size_t)T * (size_t)D, sizeof(float)))) { st = MMP_ERR_NOMEM; goto done; }
        u = zeros;
    }
    mmp_txt2img_params tp = mmp_txt2img_params_default();
    tp.width = (int)(w * sc);
    tp.height = (int)(h * sc);
    tp.steps = s->o.steps;
    tp.cfg_scale = s->o.cfg;
    tp.progress = p ? p->progress : NULL;
    tp.abort_cb = p ? p->abort_cb : NULL;
    tp.cb_user = p ? p->cb_user : NULL;
    st = mmp_txt2img_sample(s->unet, sched, s->vae, &tp, (int)T, (int)D, cond->data, u, x, lat->data, img->data);
    if (st != MMP_OK) { mmp__error_prefix("%s: ", K); goto done; }
    outputs[0] = lat;
    outputs[1] = img;
    lat = img = NULL;
done:
    mmp_array_free(lat);
    mmp_array_free(img);
    mmp_scheduler_free(sched);
    free(noise);
    free(zeros);
    return st;
}

const mmp_stage_kind mmp__stage_generator_sample = {
    .name = "generator.sample",
    .summary = "the CFG sampling loop: conditioning (+ uncond, zeros if absent) + initial noise -> final latents + image "
               "(model=SD root, aux=optional VAE/TAESD; or model=UNet, aux=VAE)",
    .n_inputs = 3,
    .n_outputs = 2,
    .inputs = {
        {"conditioning", COND2, false, "cross-attention context [T, cross_attention_dim]"},
        {"uncond", COND2, true, "unconditional context [T, D] for CFG; zeros when unconnected (NExT-GPT)"},
        {"latents_init", LAT3, true, "standard-normal noise [C, h, w] (scaled by init_noise_sigma inside); unconnected: from seed, size=WxH"},
    },
    .outputs = {
        {"latents", LAT3, false, "final latents [C, h, w] (UNet space)"},
        {"image", IMG3, false, "decoded RGB image [3, s*h, s*w] in [0, 1]"},
    },
    .create = loop_create,
    .run = loop_run,
    .destroy = loop_destroy,
};
