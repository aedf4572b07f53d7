/* txt2img: a picture from a prompt with a Stable Diffusion model, with the stock "txt2img"
 * pipeline.
 *
 *   txt2img MODEL "PROMPT" OUT.png [NAME=VALUE ...]
 *
 * MODEL is a diffusers folder (model_index.json) or a single-file SD 1.x checkpoint. NAME=VALUE
 * sets any parameter of the pipeline (pipelines/txt2img.pipe): steps=20, width=512,
 * height=512, seed=0, cfg=7.5, sampler=euler_a, vae=TAESD_FILE, ... The pipeline tokenizes
 * and encodes the prompt (CLIP), runs the sampling loop (UNet + scheduler, classifier-free
 * guidance) and decodes the latents (VAE); its "image" output [3, H, W] in [0, 1] becomes an
 * 8-bit RGB image (mmp_array_to_image) written as a PNG that records the prompt. The progress
 * callback shows the stages and the denoising steps. Public API only (mmpipe/pipeline.h). */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* what: "stage NAME (KIND)" before each stage, "steps" during sampling, ... */
static void on_progress(const char *what, int64_t done, int64_t total, void *user) {
    (void)user;
    if (strcmp(what, "steps") == 0) fprintf(stderr, "\rsteps %lld/%lld%s", (long long)done, (long long)total, done == total ? "\n" : "");
    else if (strncmp(what, "stage ", 6) == 0) fprintf(stderr, "[%lld/%lld] %s\n", (long long)done, (long long)total, what);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: txt2img MODEL \"PROMPT\" OUT.png [NAME=VALUE ...]\n");
        return 2;
    }
    int rc = 1;
    mmp_pipeline *p = NULL;
    mmp_array **in = NULL, **out = NULL;  /* one per pipeline input / output, by index */
    int n_in = 0, n_out = 0;
    mmp_image *img = NULL;

    /* 1. the stock pipeline and its parameters */
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("txt2img");
    if (!reg || !d) goto done;
    if (mmp_pipeline_desc_set_param(d, "model", argv[1]) != MMP_OK) goto done;
    for (int i = 4; i < argc; i++) {
        char name[64];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq - argv[i] >= (int)sizeof name) { fprintf(stderr, "txt2img: want NAME=VALUE, got '%s'\n", argv[i]); rc = 2; goto done; }
        snprintf(name, sizeof name, "%.*s", (int)(eq - argv[i]), argv[i]);
        if (mmp_pipeline_desc_set_param(d, name, eq + 1) != MMP_OK) goto done;  /* unknown names are refused */
    }

    /* 2. load: the five stages name one model, which the pipeline's store loads once */
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    pp.progress = on_progress;
    if (!(p = mmp_pipeline_new(d, reg, &pp))) goto done;
    n_in = mmp_pipeline_n_inputs(p);
    n_out = mmp_pipeline_n_outputs(p);
    if (!(in = calloc((size_t)n_in, sizeof *in)) || !(out = calloc((size_t)n_out, sizeof *out))) goto done;

    /* 3. run on the prompt; the optional "negative" input stays NULL (the empty prompt) */
    int i_prompt = mmp_pipeline_find_input(p, "prompt"), o_image = mmp_pipeline_find_output(p, "image");
    if (i_prompt < 0 || o_image < 0) goto done;
    if (!(in[i_prompt] = mmp_array_from_text(argv[2], strlen(argv[2])))) goto done;
    if (mmp_pipeline_run(p, (const mmp_array *const *)in, out) != MMP_OK) goto done;

    /* 4. [3, H, W] in [0, 1] -> RGB bytes -> PNG with the prompt in a text chunk */
    if (!(img = mmp_array_to_image(out[o_image]))) goto done;
    mmp_png_text meta = { "prompt", argv[2] };
    if (mmp_image_write_png(argv[3], img, &meta, 1) != MMP_OK) goto done;
    printf("wrote %s (%dx%d)\n", argv[3], (int)img->width, (int)img->height);
    rc = 0;
done:
    if (rc == 1) fprintf(stderr, "txt2img: %s\n", mmp_last_error());
    mmp_image_free(img);
    for (int i = 0; in && i < n_in; i++) mmp_array_free(in[i]);
    for (int i = 0; out && i < n_out; i++) mmp_array_free(out[i]);
    free(in);
    free(out);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    return rc;
}
