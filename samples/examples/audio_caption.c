/* audio_caption: describe a sound with a Qwen2-Audio model.
 *
 *   audio_caption MODEL_DIR AUDIO_FILE ["PROMPT"] [MAX_TOKENS]
 *
 * MODEL_DIR is a Hugging Face Qwen2AudioForConditionalGeneration folder. The audio file (any
 * format FFmpeg reads) is decoded to 16 kHz mono, turned into log-mel features, encoded by the
 * Whisper-style audio tower and projected into the LLM's space; the rows replace the <audio>
 * marker of the prompt (wrapped in <|audio_bos|> ... <|audio_eos|> as the model expects).
 * Then greedy generation. Public API only. */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "audio_caption: %s: %s\n", what, mmp_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: audio_caption MODEL_DIR AUDIO_FILE [\"PROMPT\"] [MAX_TOKENS]\n");
        return 2;
    }
    const char *ask = argc > 3 ? argv[3] : "Generate the caption in English:";
    int max_tokens = argc > 4 ? atoi(argv[4]) : 64;
    int rc = 1;
    mmp_llm_ctx *ctx = NULL;
    mmp_mm *mm = NULL;
    mmp_mm_prompt *prompt = NULL;
    float *pcm = NULL, *emb = NULL, *logits = NULL;
    mmp_sampler *smp = NULL;

    mmp_llm_load_params lp = mmp_llm_load_params_default();
    mmp_llm *llm = mmp_llm_load(argv[1], &lp);
    if (!llm) return fail(argv[1]);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(llm);
    if (!tok) { fprintf(stderr, "audio_caption: %s has no tokenizer\n", argv[1]); goto done; }

    /* the audio side: decode (at most 30 s), encode, project */
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = 2;
    if (!(mm = mmp_mm_load(argv[1], NULL, llm, &mp))) { fail("audio model"); goto done; }
    int64_t n_samples = 0;
    if (mmp_audio_decode_file(argv[2], 30.0, &pcm, &n_samples, NULL) != MMP_OK) { fail(argv[2]); goto done; }
    int32_t n_rows = 0;
    if (mmp_mm_encode_audio(mm, pcm, n_samples, &emb, &n_rows) != MMP_OK) { fail("encode audio"); goto done; }

    /* a base model: the prompt is raw text with the audio marker in front */
    char text[4096];
    snprintf(text, sizeof text, "<audio>%s", ask);
    mmp_media media = { MMP_MEDIA_AUDIO, n_rows, mmp_mm_n_embd(mm), emb };
    prompt = mmp_mm_prompt_from_text(tok, text, strlen(text), true, mmp_mm_get_markers(mm), &media, 1);
    if (!prompt) { fail("prompt"); goto done; }

    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_threads = 2;
    if (!(ctx = mmp_llm_ctx_new(llm, &cp))) { fail("context"); goto done; }
    int32_t n_vocab = mmp_llm_get_hparams(llm)->n_vocab;
    logits = malloc((size_t)n_vocab * sizeof(float));
    mmp_sampler_params sp = mmp_sampler_params_greedy();
    smp = mmp_sampler_new(n_vocab, &sp);
    if (!logits || !smp) { fail("memory"); goto done; }
    if (mmp_mm_prompt_decode(ctx, llm, prompt, 0, 0, logits, false) != MMP_OK) { fail("prefill"); goto done; }
    printf("audio: %.2f s -> %d rows\ncaption: ", (double)n_samples / 16000.0, n_rows);
    int n_out = 0;
    for (; n_out < max_tokens; n_out++) {
        int32_t id = mmp_sampler_sample(smp, logits);
        if (id < 0 || mmp_tokenizer_is_eog(tok, id)) break;
        mmp_sampler_accept(smp, id);
        char piece[256];
        int64_t len = mmp_tokenizer_token_to_piece(tok, id, false, piece, sizeof piece);
        if (len > 0 && len <= (int64_t)sizeof piece) fwrite(piece, 1, (size_t)len, stdout);
        mmp_llm_batch b = { .n = 1, .tokens = &id, .logits = logits };
        if (mmp_llm_decode(ctx, &b) != MMP_OK) { fail("decode"); goto done; }
    }
    printf("\n[%d tokens]\n", n_out);
    rc = 0;
done:
    mmp_sampler_free(smp);
    free(logits);
    free(emb);
    free(pcm);
    mmp_mm_prompt_free(prompt);
    mmp_mm_free(mm);
    mmp_llm_ctx_free(ctx);
    mmp_llm_free(llm);
    return rc;
}
