/* anytoany: one NExT-GPT style turn -- a prompt in, text and (when the model emits its signal
 * tokens [IMG0]..[IMGn]) a picture out.
 *
 *   anytoany LLM PROJECTOR UNET VAE OUT.png "PROMPT" [options]
 *     PROMPT           text (tokenized with the LLM's tokenizer), or "ids:1,2,3" for token ids
 *     --signal IDS     signal token ids, e.g. 252,253,254,255 (default: "[IMG0]".. in the vocab)
 *     --heads N        output projector attention heads (when no config.json gives them)
 *     --size PX        image side in pixels (512)        --steps N   denoising steps (6)
 *     --image          start the answer with [IMG0]: ask for a picture outright
 *     --max N          response tokens (32)
 * The session (KV cache, UNet and VAE scratch) is loaded through a model store: further
 * sessions made with the same store -- one per thread -- share its LLM and output projector
 * (loaded once) and map the UNet and VAE files once. Public API only (mmpipe/anytoany.h). */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_ids(const char *s, int32_t *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) return -1;
        out[n++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* streaming: print each piece as it is decided */
static bool on_token(int32_t tok, const char *piece, size_t len, void *user) {
    (void)user;
    if (len) fwrite(piece, 1, len, stdout);
    else printf("<%d>", (int)tok);
    fflush(stdout);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: anytoany LLM PROJECTOR UNET VAE OUT.png \"PROMPT\" [--signal IDS] [--heads N] [--size PX] "
                        "[--steps N] [--image] [--max N]\n");
        return 2;
    }
    mmp_a2a_params ap = mmp_a2a_params_default();
    ap.llm_path = argv[1];
    ap.projector_path = argv[2];
    ap.unet_path = argv[3];
    ap.vae_path = argv[4];
    ap.n_threads = 2;
    mmp_a2a_turn_params tp = mmp_a2a_turn_params_default();
    tp.max_new_tokens = 32;
    tp.on_token = on_token;
    int32_t sig[MMP_A2A_MAX_SIGNAL];
    bool ask_image = false;
    for (int i = 7; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--image") == 0) { ask_image = true; continue; }
        if (!v) { fprintf(stderr, "anytoany: %s needs a value\n", a); return 2; }
        i++;
        if (strcmp(a, "--signal") == 0) {
            ap.n_signal = parse_ids(v, sig, MMP_A2A_MAX_SIGNAL);
            if (ap.n_signal < 1) { fprintf(stderr, "anytoany: bad --signal '%s'\n", v); return 2; }
            ap.signal_ids = sig;
        } else if (strcmp(a, "--heads") == 0) ap.proj.n_heads = atoi(v);
        else if (strcmp(a, "--size") == 0) tp.width = tp.height = atoi(v);
        else if (strcmp(a, "--steps") == 0) tp.steps = atoi(v);
        else if (strcmp(a, "--max") == 0) tp.max_new_tokens = atoi(v);
        else { fprintf(stderr, "anytoany: unknown option %s\n", a); return 2; }
    }

    /* 1. load the LLM, output projector, UNet and VAE (their widths are checked) through a
     *    store; another mmp_a2a_load(&ap) now would reuse the LLM and the projector */
    mmp_store *store = mmp_store_new();
    ap.store = store;
    mmp_a2a *a2a = store ? mmp_a2a_load(&ap) : NULL;
    if (!a2a) { fprintf(stderr, "anytoany: %s\n", mmp_last_error()); mmp_store_free(store); return 1; }

    /* 2. the prompt as token ids */
    int32_t *ids = NULL;
    int n_ids = 0;
    if (strncmp(argv[6], "ids:", 4) == 0) {
        ids = malloc(4096 * sizeof(int32_t));
        n_ids = ids ? parse_ids(argv[6] + 4, ids, 4096) : -1;
    } else {
        const mmp_tokenizer *tok = mmp_llm_get_tokenizer(mmp_a2a_llm(a2a));
        size_t n = 0;
        if (!tok) fprintf(stderr, "anytoany: the LLM has no tokenizer: give the prompt as ids:1,2,3\n");
        else if (mmp_tokenizer_encode(tok, argv[6], strlen(argv[6]), true, true, &ids, &n) != MMP_OK) fprintf(stderr, "anytoany: %s\n", mmp_last_error());
        n_ids = (int)n;
    }
    if (n_ids < 1) { free(ids); mmp_a2a_free(a2a); mmp_store_free(store); return 1; }

    /* 3. the turn: text streams out; the signal tokens' hidden states become the image */
    int32_t img0 = mmp_a2a_signal_ids(a2a)[0];
    if (ask_image) { tp.forced = &img0; tp.n_forced = 1; }
    mmp_a2a_result r;
    printf("answer: ");
    enum mmp_status st = mmp_a2a_turn(a2a, ids, n_ids, &tp, &r);
    printf("\n");
    if (st != MMP_OK) { fprintf(stderr, "anytoany: %s\n", mmp_last_error()); free(ids); mmp_a2a_free(a2a); mmp_store_free(store); return 1; }
    printf("text: \"%s\" (%d tokens)\n", r.text, (int)r.n_tokens);
    int rc = 0;
    if (r.has_image) {
        mmp_image *img = mmp_image_from_chw(r.image01, r.width, r.height);
        if (!img || mmp_image_write_png(argv[5], img, NULL, 0) != MMP_OK) { fprintf(stderr, "anytoany: %s\n", mmp_last_error()); rc = 1; }
        else printf("image: %s (%dx%d, conditioning [%d, %d])\n", argv[5], (int)r.width, (int)r.height, (int)r.t_ctx, (int)r.d_ctx);
        mmp_image_free(img);
    } else {
        printf("image: none (no complete signal group in the answer)\n");
    }
    mmp_a2a_result_free(&r);
    free(ids);
    mmp_a2a_free(a2a);
    mmp_store_free(store);  /* after every session made with it */
    return rc;
}
