/* image_chat: ask a LLaVA model about a picture.
 *
 *   image_chat MODEL_DIR IMAGE "QUESTION" [MAX_TOKENS]
 *
 * MODEL_DIR is a Hugging Face LlavaForConditionalGeneration folder (config.json, safetensors,
 * tokenizer.json). Steps: load the LLM, load the vision tower + projector that go with it,
 * encode the image into embeddings in the LLM's space, splice them into the prompt at the
 * <image> marker, then generate greedily and print the answer as it comes. Public API only. */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "image_chat: %s: %s\n", what, mmp_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: image_chat MODEL_DIR IMAGE \"QUESTION\" [MAX_TOKENS]\n");
        return 2;
    }
    int max_tokens = argc > 4 ? atoi(argv[4]) : 64;
    int rc = 1;
    mmp_llm_ctx *ctx = NULL;
    mmp_mm *mm = NULL;
    mmp_image *img = NULL;
    mmp_mm_prompt *prompt = NULL;
    float *emb = NULL, *logits = NULL;
    mmp_sampler *smp = NULL;

    /* 1. the language model and its tokenizer */
    mmp_llm_load_params lp = mmp_llm_load_params_default();
    mmp_llm *llm = mmp_llm_load(argv[1], &lp);
    if (!llm) return fail(argv[1]);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(llm);
    if (!tok) { fprintf(stderr, "image_chat: %s has no tokenizer\n", argv[1]); goto done; }

    /* 2. the image side: vision tower + projector from the same folder */
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = 2;
    if (!(mm = mmp_mm_load(argv[1], NULL, llm, &mp))) { fail("vision model"); goto done; }
    if (!(img = mmp_image_load(argv[2], 0))) { fail(argv[2]); goto done; }
    int32_t n_img = 0;
    if (mmp_mm_encode_image(mm, img, &emb, &n_img) != MMP_OK) { fail("encode image"); goto done; }

    /* 3. the prompt: <image> expands to the image's n_img embedding rows */
    char text[4096];
    snprintf(text, sizeof text, "[INST] <image>\n%s [/INST]", argv[3]);
    mmp_media media = { MMP_MEDIA_IMAGE, n_img, mmp_mm_n_embd(mm), emb };
    prompt = mmp_mm_prompt_from_text(tok, text, strlen(text), true, mmp_mm_get_markers(mm), &media, 1);
    if (!prompt) { fail("prompt"); goto done; }

    /* 4. prefill, then generate greedily until end of generation or MAX_TOKENS */
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_threads = 2;
    if (!(ctx = mmp_llm_ctx_new(llm, &cp))) { fail("context"); goto done; }
    int32_t n_vocab = mmp_llm_get_hparams(llm)->n_vocab;
    logits = malloc((size_t)n_vocab * sizeof(float));
    mmp_sampler_params sp = mmp_sampler_params_greedy();
    smp = mmp_sampler_new(n_vocab, &sp);
    if (!logits || !smp) { fail("memory"); goto done; }
    if (mmp_mm_prompt_decode(ctx, llm, prompt, 0, 0, logits, false) != MMP_OK) { fail("prefill"); goto done; }
    printf("prompt: %d positions (%d image rows)\nanswer: ", mmp_mm_prompt_n_pos(prompt), n_img);
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
    mmp_mm_prompt_free(prompt);
    mmp_image_free(img);
    mmp_mm_free(mm);
    mmp_llm_ctx_free(ctx);
    mmp_llm_free(llm);
    return rc;
}
