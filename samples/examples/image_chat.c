/* image_chat: ask a LLaVA model about a picture, with the stock "image-chat" pipeline.
 *
 *   image_chat MODEL IMAGE "QUESTION" [MAX_TOKENS] [--rgb]
 *
 * MODEL is a Hugging Face LlavaForConditionalGeneration folder (or a GGUF LLM; then give its
 * mmproj with the pipeline parameter "encoder"). The pipeline preprocesses the image, encodes
 * it (CLIP + projector), puts its rows at the <image> marker of the prompt and generates; the
 * answer is printed piece by piece as it is generated (the on_text callback).
 *
 * The image goes in as a file (mmp_array_from_image_file) or, with --rgb, as a buffer of RGB
 * bytes (mmp_array_from_rgb): what a program that has its pixels in memory (a camera frame, a
 * decoded video) does. Both give the same answer. Ctrl-C stops the run (the abort callback).
 * Public API only (mmpipe/pipeline.h). */
#include <mmpipe/mmpipe.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }
static bool should_abort(void *user) { (void)user; return g_stop != 0; }

/* Each piece of the answer as soon as it is decided. */
static bool print_piece(const char *piece, size_t len, void *user) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;  /* false would stop generating here */
}

/* The image as an array [3, H, W] in [0, 1]: from the file, or from RGB bytes in memory. */
static mmp_array *load_image(const char *path, bool from_rgb) {
    if (!from_rgb) return mmp_array_from_image_file(path);
    mmp_image *img = mmp_image_load(path, 0);  /* stands for pixels the program already has */
    if (!img) return NULL;
    mmp_array *a = mmp_array_from_rgb(img->data, img->width, img->height);  /* copies */
    mmp_image_free(img);
    return a;
}

int main(int argc, char **argv) {
    bool from_rgb = argc > 4 && strcmp(argv[argc - 1], "--rgb") == 0;
    if (from_rgb) argc--;
    if (argc < 4) {
        fprintf(stderr, "usage: image_chat MODEL IMAGE \"QUESTION\" [MAX_TOKENS] [--rgb]\n");
        return 2;
    }
    const char *n_max = argc > 4 ? argv[4] : "256";
    int rc = 1;
    mmp_pipeline *p = NULL;
    mmp_array **in = NULL, **out = NULL;  /* one per pipeline input / output, by index */
    int n_in = 0, n_out = 0;
    signal(SIGINT, on_sigint);

    /* 1. the stock pipeline, its parameters, then load it (validated before any weight is read) */
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("image-chat");
    if (!reg || !d) goto done;
    if (mmp_pipeline_desc_set_param(d, "model", argv[1]) != MMP_OK) goto done;
    if (mmp_pipeline_desc_set_param(d, "n", n_max) != MMP_OK) goto done;  /* most tokens */
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    pp.on_text = print_piece;
    pp.abort_cb = should_abort;
    if (!(p = mmp_pipeline_new(d, reg, &pp))) goto done;
    n_in = mmp_pipeline_n_inputs(p);
    n_out = mmp_pipeline_n_outputs(p);
    if (!(in = calloc((size_t)n_in, sizeof *in)) || !(out = calloc((size_t)n_out, sizeof *out))) goto done;

    /* 2. the inputs, in the pipeline's order: the image and the prompt with its <image> marker */
    int i_image = mmp_pipeline_find_input(p, "image"), i_text = mmp_pipeline_find_input(p, "text");
    int o_tokens = mmp_pipeline_find_output(p, "tokens");
    if (i_image < 0 || i_text < 0 || o_tokens < 0) goto done;
    char prompt[4096];
    snprintf(prompt, sizeof prompt, "<image>\n%s", argv[3]);
    if (!(in[i_image] = load_image(argv[2], from_rgb))) goto done;
    if (!(in[i_text] = mmp_array_from_text(prompt, strlen(prompt)))) goto done;
    printf("image: %s, %lldx%lld%s\n", argv[2], (long long)in[i_image]->dims[2], (long long)in[i_image]->dims[1],
           from_rgb ? " (from RGB bytes)" : "");

    /* 3. run: the answer streams out through print_piece; out[] hold "text" and "tokens" */
    printf("answer: ");
    fflush(stdout);
    if (mmp_pipeline_run(p, (const mmp_array *const *)in, out) != MMP_OK) { printf("\n"); goto done; }
    printf("\n[%lld tokens]\n", (long long)out[o_tokens]->dims[0]);
    rc = 0;
done:
    if (rc) fprintf(stderr, "image_chat: %s\n", mmp_last_error());
    for (int i = 0; in && i < n_in; i++) mmp_array_free(in[i]);
    for (int i = 0; out && i < n_out; i++) mmp_array_free(out[i]);
    free(in);
    free(out);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    return rc;
}
