/* mmpipe txt2img: a picture from a text prompt with a Stable Diffusion model (a diffusers
 * folder or a single-file .safetensors checkpoint), with a progress bar over the sampling
 * steps, written as a PNG that carries its own recipe in tEXt chunks. */
#include "cli.h"
#include "mmpipe/sd.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

int mmp_cli_txt2img(int argc, char **argv) {
    const char *cmd = "txt2img";
    const char *model = NULL, *out = "txt2img.png", *taesd = NULL, *vae = NULL, *tokenizer = NULL;
    mmp_sd_gen_params g = mmp_sd_gen_params_default();
    mmp_sd_params lp = mmp_sd_params_default();
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
            lp.n_threads = (int32_t)v;
        } else if (!strcmp(a, "--ldm-heads") || !strcmp(a, "--ldm-groups") || !strcmp(a, "--ldm-text-heads")) {
            if (!mmp_cli_parse_long(val, 1, 1024, &v)) { fprintf(stderr, "mmpipe %s: %s %s: must be 1..1024\n", cmd, a, val); return 2; }
            if (!strcmp(a, "--ldm-heads")) lp.ldm_unet_heads = (int32_t)v;
            else if (!strcmp(a, "--ldm-groups")) lp.ldm_norm_groups = (int32_t)v;
            else lp.ldm_text_heads = (int32_t)v;
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
    lp.vae_path = taesd ? taesd : vae;
    lp.tokenizer_path = tokenizer;
    g.n_threads = lp.n_threads;

    double t0 = mmp_cli_now();
    mmp_sd *sd = mmp_sd_load(model, &lp);
    if (!sd) return mmp_cli_fail(cmd, "cannot load the model");
    fprintf(stderr, "mmpipe %s: model loaded from %s%s in %.1f s\n", cmd, model, mmp_sd_is_single_file(sd) ? " (single file)" : "",
            mmp_cli_now() - t0);
    if (mmp_sd_check(sd, &g) != MMP_OK) { mmp_sd_free(sd); return mmp_cli_fail(cmd, "cannot run"); }

    char seed_s[32], steps_s[16], cfg_s[32], size_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)g.seed);
    snprintf(steps_s, sizeof steps_s, "%d", (int)g.steps);
    snprintf(cfg_s, sizeof cfg_s, "%g", (double)g.cfg_scale);
    snprintf(size_s, sizeof size_s, "%dx%d", (int)g.width, (int)g.height);
    char sampler_s[32];
    snprintf(sampler_s, sizeof sampler_s, "%s%s", mmp_sched_kind_name(g.sampler), g.karras ? " karras" : "");
    fprintf(stderr, "mmpipe %s: %s, %s steps, %s, cfg %s, seed %s\n", cmd, size_s, steps_s, sampler_s, cfg_s, seed_s);

    float *img = malloc((size_t)3 * (size_t)g.width * (size_t)g.height * sizeof *img);
    if (!img) { mmp_sd_free(sd); fprintf(stderr, "mmpipe %s: out of memory\n", cmd); return 1; }
    progress_state ps = { mmp_cli_now(), 0, 0 };
    g.progress = on_progress;
    g.cb_user = &ps;
    enum mmp_status st = mmp_sd_generate(sd, &g, img, NULL);
    mmp_sd_free(sd);
    if (st != MMP_OK) { free(img); return mmp_cli_fail(cmd, "generation failed"); }
    double t_gen = mmp_cli_now() - ps.t0;

    mmp_image *im = mmp_image_from_chw(img, g.width, g.height);
    free(img);
    if (!im) return mmp_cli_fail(cmd, "cannot make the image");
    /* the recipe, as separate keys and as the one-string "parameters" other tools read */
    const char *neg = g.negative ? g.negative : "";
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
