/* mmpipe txt2img: a picture from a text prompt with a Stable Diffusion model (a diffusers
 * folder or a single-file .safetensors checkpoint), with a progress bar over the sampling
 * steps, written as a PNG that carries its own recipe in tEXt chunks.
 *
 * A thin wrapper over the stock pipeline `txt2img` (pipelines/txt2img.pipe, compiled into the
 * library): the options become its parameters, the prompts its inputs, and the progress bar
 * follows the ("steps", i, n) reports of its sampling stage. */
#include "cli.h"
#include "mmpipe/pipeline.h"
#include "mmpipe/sd.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe txt2img -m MODEL -p PROMPT [options] -o out.png\n"
        "\n"
        "Draw a picture from a text prompt with a Stable Diffusion 1.x/2.x model.\n"
        "\n"
        "MODEL is a diffusers folder (the one with model_index.json, text_encoder/, tokenizer/,\n"
        "unet/, vae/, scheduler/) or a single-file checkpoint (.safetensors in the original\n"
        "LDM naming, SD 1.x), which needs a CLIP tokenizer folder: --tokenizer DIR, or a\n"
        "tokenizer/ folder next to the file.\n"
        "\n"
        "options:\n"
        "  -m, --model PATH      the model (required)\n"
        "  -p, --prompt TEXT     what to draw (required)\n"
        "  -n, --negative TEXT   what to steer away from (default: empty)\n"
        "  -o, --output FILE     the PNG to write (default: txt2img.png)\n"
        "  -W, --width N         image width in pixels (default 512; a multiple of 8, or of the\n"
        "                        model's own multiple, which the error message tells)\n"
        "  -H, --height N        image height in pixels (default 512)\n"
        "      --steps N         sampling steps, 1..1000 (default 20)\n"
        "      --cfg S           classifier-free guidance scale (default 7.5; <= 1 turns it off)\n"
        "      --sampler NAME    ddim | euler | euler_a | dpmpp_2m (default euler_a)\n"
        "      --karras          Karras noise levels (euler, euler_a, dpmpp_2m)\n"
        "      --seed N          random seed (default: a new one, printed); the same seed, model\n"
        "                        and options give the same picture\n"
        "      --clip-skip N     use the text encoder's N-th layer from the end (default 1: last)\n"
        "      --taesd PATH      decode with a TAESD (tiny autoencoder) file or folder instead of\n"
        "                        the model's VAE: much faster, slightly softer\n"
        "      --vae PATH        another VAE (diffusers AutoencoderKL folder)\n"
        "      --tokenizer DIR   CLIP tokenizer folder (vocab.json + merges.txt)\n"
        "      --threads N       CPU threads (default 4)\n"
        "  single-file checkpoints whose shapes do not tell everything (rarely needed):\n"
        "      --ldm-heads N     UNet attention heads (default 8 for SD 1.x)\n"
        "      --ldm-groups N    GroupNorm groups (default 32)\n"
        "      --ldm-text-heads N  text encoder heads (default width / 64)\n"
        "  -h, --help            this help\n"
        "\n"
        "example:\n"
        "  mmpipe txt2img -m stable-diffusion-v1-5 -p \"a lighthouse at dusk, oil painting\" \\\n"
        "      --steps 25 --sampler dpmpp_2m --karras --seed 42 -o lighthouse.png\n");
}

typedef struct {
    double t0, last;
    int64_t total;
} progress_state;

static void on_progress(const char *what, int64_t done, int64_t total, void *user) {
    progress_state *p = user;
    if (strcmp(what, "steps") != 0) return;  /* the pipeline's own "stage ..." reports */

    double now = mmp_cli_now();
    double per = done > 0 ? (now - p->t0) / (double)done : 0;
    const int width = 30;
    int filled = total > 0 ? (int)(width * done / total) : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r  [%s] %lld/%lld %s, %.2f s/step, %.1f s left ", bar, (long long)done, (long long)total, what, per,
            per * (double)(total - done));
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
    p->last = now;
    p->total = total;
}

/* Set a parameter of the stock pipeline (all of txt2img.pipe's are declared there). */
static bool set_param(mmp_pipeline_desc *d, const char *name, const char *value) {
    return mmp_pipeline_desc_set_param(d, name, value) == MMP_OK;
}

int mmp_cli_txt2img(int argc, char **argv) {
    const char *cmd = "txt2img";
    const char *model = NULL, *out = "txt2img.png", *taesd = NULL, *vae = NULL, *tokenizer = NULL, *cfg_text = NULL;
    mmp_sd_gen_params g = mmp_sd_gen_params_default();
    int32_t n_threads = 4, ldm[3] = { 0, 0, 0 };
    bool seed_set = false, have_prompt = false;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_is_help(a)) { usage(stdout); return 0; }
        if (!strcmp(a, "--karras")) { g.karras = true; continue; }
        if (a[0] != '-') { fprintf(stderr, "mmpipe %s: unexpected argument '%s' (see 'mmpipe txt2img --help')\n", cmd, a); return 2; }
        if (i + 1 >= argc) { fprintf(stderr, "mmpipe %s: %s needs a value (see 'mmpipe txt2img --help')\n", cmd, a); return 2; }
        const char *val = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = val;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { g.prompt = val; have_prompt = true; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--negative")) g.negative = val;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = val;
        else if (!strcmp(a, "--taesd")) taesd = val;
        else if (!strcmp(a, "--vae")) vae = val;
        else if (!strcmp(a, "--tokenizer")) tokenizer = val;
        else if (!strcmp(a, "-W") || !strcmp(a, "--width") || !strcmp(a, "-H") || !strcmp(a, "--height")) {
            bool w = a[1] == 'W' || !strcmp(a, "--width");
            if (!mmp_cli_parse_long(val, 1, 8192, &v) || v % 8) {
                fprintf(stderr, "mmpipe %s: %s %s: the %s must be a multiple of 8 between 8 and 8192\n", cmd, a, val, w ? "width" : "height");
                return 2;
            }
            if (w) g.width = (int32_t)v; else g.height = (int32_t)v;
        } else if (!strcmp(a, "--steps")) {
            if (!mmp_cli_parse_long(val, 1, 1000, &v)) { fprintf(stderr, "mmpipe %s: --steps %s: must be a number from 1 to 1000\n", cmd, val); return 2; }
            g.steps = (int32_t)v;
        } else if (!strcmp(a, "--cfg")) {
            char *end;
            errno = 0;
            double d = strtod(val, &end);
            if (errno || end == val || *end || !isfinite(d) || d < 0 || d > 100) {
                fprintf(stderr, "mmpipe %s: --cfg %s: must be a number from 0 to 100 (7.5 is usual)\n", cmd, val);
                return 2;
            }
            g.cfg_scale = (float)d;
            cfg_text = val;   /* handed on as typed: the stage parses it the same way */
        } else if (!strcmp(a, "--sampler")) {
            enum mmp_sched_kind k = mmp_sched_kind_from_name(val);
            if (k == MMP_SCHED_COUNT) { fprintf(stderr, "mmpipe %s: --sampler %s: use ddim, euler, euler_a or dpmpp_2m\n", cmd, val); return 2; }
            g.sampler = k;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-') { fprintf(stderr, "mmpipe %s: --seed %s: must be a non-negative integer\n", cmd, val); return 2; }
            g.seed = (uint64_t)s;
            seed_set = true;
        } else if (!strcmp(a, "--clip-skip")) {
            if (!mmp_cli_parse_long(val, 1, 64, &v)) { fprintf(stderr, "mmpipe %s: --clip-skip %s: must be 1..64\n", cmd, val); return 2; }
            g.clip_skip = (int32_t)v;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (!mmp_cli_parse_long(val, 1, 1024, &v)) { fprintf(stderr, "mmpipe %s: %s %s: must be 1..1024\n", cmd, a, val); return 2; }
            n_threads = (int32_t)v;
        } else if (!strcmp(a, "--ldm-heads") || !strcmp(a, "--ldm-groups") || !strcmp(a, "--ldm-text-heads")) {
            if (!mmp_cli_parse_long(val, 1, 1024, &v)) { fprintf(stderr, "mmpipe %s: %s %s: must be 1..1024\n", cmd, a, val); return 2; }
            ldm[!strcmp(a, "--ldm-heads") ? 0 : !strcmp(a, "--ldm-groups") ? 1 : 2] = (int32_t)v;
        } else {
            fprintf(stderr, "mmpipe %s: unknown option '%s' (see 'mmpipe txt2img --help')\n", cmd, a);
            return 2;
        }
    }
    if (!model || !have_prompt) {
        fprintf(stderr, "mmpipe %s: %s\n\n", cmd, !model ? "give the model with -m PATH" : "give the prompt with -p TEXT");
        usage(stderr);
        return 2;
    }
    if (taesd && vae) { fprintf(stderr, "mmpipe %s: give either --taesd or --vae, not both\n", cmd); return 2; }
    if (g.karras && g.sampler == MMP_SCHED_DDIM) {
        fprintf(stderr, "mmpipe %s: --karras works with euler, euler_a and dpmpp_2m, not ddim\n", cmd);
        return 2;
    }
    if (!seed_set) g.seed = mmp_cli_random_seed() & 0xffffffffu; /* short enough to retype */

    char seed_s[32], steps_s[16], cfg_s[32], size_s[32], w_s[16], h_s[16], cs_s[16], ldm_s[3][16];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)g.seed);
    snprintf(steps_s, sizeof steps_s, "%d", (int)g.steps);
    snprintf(cfg_s, sizeof cfg_s, "%g", (double)g.cfg_scale);
    snprintf(size_s, sizeof size_s, "%dx%d", (int)g.width, (int)g.height);
    snprintf(w_s, sizeof w_s, "%d", (int)g.width);
    snprintf(h_s, sizeof h_s, "%d", (int)g.height);
    snprintf(cs_s, sizeof cs_s, "%d", g.clip_skip > 0 ? (int)g.clip_skip : 1);
    for (int k = 0; k < 3; k++) snprintf(ldm_s[k], sizeof ldm_s[k], "%d", (int)ldm[k]);
    char sampler_s[32];
    snprintf(sampler_s, sizeof sampler_s, "%s%s", mmp_sched_kind_name(g.sampler), g.karras ? " karras" : "");

    /* the stock pipeline with the options as its parameters */
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("txt2img");
    if (!d) return mmp_cli_fail(cmd, "no stock pipeline txt2img");
    const char *vae_path = taesd ? taesd : vae;
    if (!set_param(d, "model", model) || !set_param(d, "vae", vae_path ? vae_path : "") ||
        !set_param(d, "tokenizer", tokenizer ? tokenizer : "") || !set_param(d, "sampler", mmp_sched_kind_name(g.sampler)) ||
        !set_param(d, "karras", g.karras ? "1" : "0") || !set_param(d, "steps", steps_s) ||
        !set_param(d, "cfg", cfg_text ? cfg_text : cfg_s) || !set_param(d, "width", w_s) || !set_param(d, "height", h_s) ||
        !set_param(d, "seed", seed_s) || !set_param(d, "clip_skip", cs_s) || !set_param(d, "ldm_heads", ldm_s[0]) ||
        !set_param(d, "ldm_groups", ldm_s[1]) || !set_param(d, "ldm_text_heads", ldm_s[2])) {
        mmp_pipeline_desc_free(d);
        return mmp_cli_fail(cmd, "the stock pipeline txt2img lacks a parameter");
    }
    mmp_registry *reg = mmp_registry_new();
    if (!reg) { mmp_pipeline_desc_free(d); return mmp_cli_fail(cmd, "out of memory"); }
    progress_state ps = { 0, 0, 0 };
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = n_threads;
    pp.progress = on_progress;
    pp.cb_user = &ps;

    double t0 = mmp_cli_now();
    mmp_pipeline *pl = mmp_pipeline_new(d, reg, &pp);
    mmp_pipeline_desc_free(d);
    if (!pl) { mmp_registry_free(reg); return mmp_cli_fail(cmd, "cannot load the model or use these settings"); }
    struct stat sb;
    bool single = stat(model, &sb) == 0 && !S_ISDIR(sb.st_mode);
    fprintf(stderr, "mmpipe %s: model loaded from %s%s in %.1f s\n", cmd, model, single ? " (single file)" : "", mmp_cli_now() - t0);
    fprintf(stderr, "mmpipe %s: %s, %s steps, %s, cfg %s, seed %s\n", cmd, size_s, steps_s, sampler_s, cfg_s, seed_s);

    /* the inputs: UTF-8 bytes; an empty prompt is left unconnected (the stage's "" prompt) */
    const char *neg = g.negative ? g.negative : "";
    int n_in = mmp_pipeline_n_inputs(pl), i_p = mmp_pipeline_find_input(pl, "prompt"), i_n = mmp_pipeline_find_input(pl, "negative");
    int i_img = mmp_pipeline_find_output(pl, "image"), n_out = mmp_pipeline_n_outputs(pl);
    if (i_p < 0 || i_n < 0 || i_img < 0 || n_in > 8 || n_out > 8) {
        mmp_pipeline_free(pl);
        mmp_registry_free(reg);
        return mmp_cli_fail(cmd, "the stock pipeline txt2img lacks an input or output");
    }
    const mmp_array *ins[8] = { 0 };
    mmp_array *outs[8] = { 0 };
    int64_t lp_ = (int64_t)strlen(g.prompt), ln = (int64_t)strlen(neg);
    mmp_array *a_p = lp_ ? mmp_array_wrap(MMP_TYPE_U8, 1, &lp_, (void *)g.prompt) : NULL;
    mmp_array *a_n = ln ? mmp_array_wrap(MMP_TYPE_U8, 1, &ln, (void *)neg) : NULL;
    ins[i_p] = a_p;
    ins[i_n] = a_n;
    ps.t0 = mmp_cli_now();
    enum mmp_status st = (lp_ && !a_p) || (ln && !a_n) ? MMP_ERR_NOMEM : mmp_pipeline_run(pl, ins, outs);
    mmp_array_free(a_p);
    mmp_array_free(a_n);
    mmp_pipeline_free(pl);
    mmp_registry_free(reg);
    mmp_array *img = outs[i_img];
    outs[i_img] = NULL;
    for (int k = 0; k < n_out; k++) mmp_array_free(outs[k]);
    if (st != MMP_OK) { mmp_array_free(img); return mmp_cli_fail(cmd, "generation failed"); }
    double t_gen = mmp_cli_now() - ps.t0;

    mmp_image *im = img->n_dims == 3 && img->dims[0] == 3 ? mmp_image_from_chw(img->data, (int)img->dims[2], (int)img->dims[1]) : NULL;
    mmp_array_free(img);
    if (!im) return mmp_cli_fail(cmd, "cannot make the image");
    /* the recipe, as separate keys and as the one-string "parameters" other tools read */
    size_t plen = strlen(g.prompt) + strlen(neg) + 256;
    char *params = malloc(plen);
    if (!params) { mmp_image_free(im); fprintf(stderr, "mmpipe %s: out of memory\n", cmd); return 1; }
    snprintf(params, plen, "%s\nNegative prompt: %s\nSteps: %s, Sampler: %s, CFG scale: %s, Seed: %s, Size: %s", g.prompt, neg,
             steps_s, sampler_s, cfg_s, seed_s, size_s);
    char sw[64];
    snprintf(sw, sizeof sw, "mmpipe %s", mmp_version());
    mmp_png_text text[] = {
        { "prompt", g.prompt }, { "negative_prompt", neg }, { "seed", seed_s }, { "steps", steps_s },
        { "sampler", sampler_s }, { "cfg_scale", cfg_s }, { "size", size_s }, { "parameters", params }, { "Software", sw },
    };
    st = mmp_image_write_png(out, im, text, (int)(sizeof text / sizeof text[0]));
    mmp_image_free(im);
    free(params);
    if (st != MMP_OK) return mmp_cli_fail(cmd, "cannot write the PNG");
    fprintf(stderr, "mmpipe %s: wrote %s (%s) in %.1f s (%.2f s/step)\n", cmd, out, size_s, t_gen, t_gen / g.steps);
    return 0;
}
