/* audio_caption: describe a sound with a Qwen2-Audio model, with the stock audio chat pipeline.
 *
 *   audio_caption MODEL AUDIO ["PROMPT"] [MAX_TOKENS] [--pcm]
 *
 * MODEL is a Hugging Face Qwen2AudioForConditionalGeneration folder (or a GGUF LLM; then give
 * its mmproj with the pipeline parameter "encoder"). The stock pipeline "audio-chat-qwen2"
 * turns the audio into log-mel features, encodes them (Whisper tower + projector), puts the
 * rows at the <audio> marker of the prompt and generates; the caption is printed as it is
 * generated. Ultravox and Voxtral models have their own stock pipelines, "audio-chat-ultravox"
 * and "audio-chat-voxtral", with the same inputs and outputs.
 *
 * The audio goes in as a file (any format FFmpeg reads: mmp_array_from_audio_file) or, with
 * --pcm, as a buffer of float samples (mmp_array_from_pcm, which takes any sample rate and
 * channel count): what a program that records or decodes the sound itself does. Both give the
 * same caption. Public API only (mmpipe/pipeline.h; audio.h to get samples for --pcm). */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SECONDS 30.0

static bool print_piece(const char *piece, size_t len, void *user) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* The audio as an array [n] (16 kHz mono): from the file, or from PCM samples in memory. */
static mmp_array *load_audio(const char *path, bool from_pcm) {
    if (!from_pcm) return mmp_array_from_audio_file(path, MAX_SECONDS);
    float *pcm = NULL;  /* stands for samples the program already has: here 16 kHz mono */
    int64_t n = 0;
    if (mmp_audio_decode_file(path, MAX_SECONDS, &pcm, &n, NULL) != MMP_OK) return NULL;
    mmp_array *a = mmp_array_from_pcm(pcm, n, 1, 16000);  /* interleaved frames, channels, rate */
    free(pcm);
    return a;
}

int main(int argc, char **argv) {
    bool from_pcm = argc > 3 && strcmp(argv[argc - 1], "--pcm") == 0;
    if (from_pcm) argc--;
    if (argc < 3) {
        fprintf(stderr, "usage: audio_caption MODEL AUDIO [\"PROMPT\"] [MAX_TOKENS] [--pcm]\n");
        return 2;
    }
    const char *ask = argc > 3 ? argv[3] : "Generate the caption in English:";
    const char *n_max = argc > 4 ? argv[4] : "256";
    int rc = 1;
    mmp_pipeline *p = NULL;
    mmp_array **in = NULL, **out = NULL;  /* one per pipeline input / output, by index */
    int n_in = 0, n_out = 0;

    /* 1. the stock pipeline with the model and the answer length; load it */
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("audio-chat-qwen2");
    if (!reg || !d) goto done;
    if (mmp_pipeline_desc_set_param(d, "model", argv[1]) != MMP_OK) goto done;
    if (mmp_pipeline_desc_set_param(d, "n", n_max) != MMP_OK) goto done;
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 2;
    pp.on_text = print_piece;
    if (!(p = mmp_pipeline_new(d, reg, &pp))) goto done;
    n_in = mmp_pipeline_n_inputs(p);
    n_out = mmp_pipeline_n_outputs(p);
    if (!(in = calloc((size_t)n_in, sizeof *in)) || !(out = calloc((size_t)n_out, sizeof *out))) goto done;

    /* 2. the inputs: the audio and the prompt with its <audio> marker */
    int i_audio = mmp_pipeline_find_input(p, "audio"), i_text = mmp_pipeline_find_input(p, "text");
    int o_tokens = mmp_pipeline_find_output(p, "tokens");
    if (i_audio < 0 || i_text < 0 || o_tokens < 0) goto done;
    char prompt[4096];
    snprintf(prompt, sizeof prompt, "<audio>%s", ask);
    if (!(in[i_audio] = load_audio(argv[2], from_pcm))) goto done;
    if (!(in[i_text] = mmp_array_from_text(prompt, strlen(prompt)))) goto done;
    printf("audio: %s, %.2f s%s\n", argv[2], (double)in[i_audio]->dims[0] / 16000.0, from_pcm ? " (from PCM samples)" : "");

    /* 3. run: the caption streams out through print_piece */
    printf("caption: ");
    fflush(stdout);
    if (mmp_pipeline_run(p, (const mmp_array *const *)in, out) != MMP_OK) { printf("\n"); goto done; }
    printf("\n[%lld tokens]\n", (long long)out[o_tokens]->dims[0]);
    rc = 0;
done:
    if (rc) fprintf(stderr, "audio_caption: %s\n", mmp_last_error());
    for (int i = 0; in && i < n_in; i++) mmp_array_free(in[i]);
    for (int i = 0; out && i < n_out; i++) mmp_array_free(out[i]);
    free(in);
    free(out);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    return rc;
}
