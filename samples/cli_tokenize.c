/* mmpipe tokenize: text -> token ids, or token ids -> text, with a model's tokenizer. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void tokenize_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe tokenize -m MODEL -p TEXT [options]\n"
        "       mmpipe tokenize -m MODEL --ids 1,2,3\n"
        "\n"
        "Show how a model's tokenizer splits a text into tokens (prints the ids, comma-separated,\n"
        "the form --token-ids of 'mmpipe run' takes), or turn token ids back into text.\n"
        "Only the tokenizer is read, not the weights.\n"
        "\n"
        "options:\n"
        "  -m, --model PATH   a GGUF file or a Hugging Face folder with a tokenizer (required)\n"
        "  -p, --prompt TEXT  the text to tokenize\n"
        "  --ids 1,2,3        decode these ids and print the text\n"
        "  --pieces           print one token per line: id and its text\n"
        "  --no-bos           do not add the BOS (begin-of-text) token the model normally adds\n"
        "  --no-special       read special-token text such as \"<|im_end|>\" as plain text\n"
        "  -h, --help         this help\n"
        "\n"
        "examples:\n"
        "  mmpipe tokenize -m models/stories260K.gguf -p \"Once upon a time\"\n"
        "  mmpipe tokenize -m models/stories260K.gguf --ids 1,403,407,261,378\n");
}

int mmp_cli_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *ids_arg = NULL;
    bool pieces = false, bos = true, special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_is_help(a)) { tokenize_usage(stdout); return 0; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-p") || !strcmp(a, "--prompt") || !strcmp(a, "--ids")) {
            if (i + 1 >= argc) { fprintf(stderr, "mmpipe tokenize: %s needs a value (see 'mmpipe tokenize --help')\n", a); return 2; }
            const char *v = argv[++i];
            if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
            else if (!strcmp(a, "--ids")) ids_arg = v;
            else text = v;
        } else if (!strcmp(a, "--pieces")) pieces = true;
        else if (!strcmp(a, "--no-bos")) bos = false;
        else if (!strcmp(a, "--no-special")) special = false;
        else { fprintf(stderr, "mmpipe tokenize: unknown argument '%s' (see 'mmpipe tokenize --help')\n", a); return 2; }
    }
    if (!model) { fprintf(stderr, "mmpipe tokenize: no model given: use -m MODEL\n"); return 2; }
    if (!!text == !!ids_arg) { fprintf(stderr, "mmpipe tokenize: give either -p TEXT or --ids 1,2,3 (see --help)\n"); return 2; }
    int32_t *ids = NULL;
    size_t n = 0;
    if (ids_arg && !mmp_cli_parse_ids(ids_arg, &ids, &n)) {
        fprintf(stderr, "mmpipe tokenize: --ids '%s': expected comma-separated non-negative integers like 1,2,3\n", ids_arg);
        return 2;
    }
    mmp_llm *m = mmp_cli_llm_load("tokenize", model, true);
    if (!m) { free(ids); return 1; }
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(m);
    int rc = 1;
    if (!tok) { fprintf(stderr, "mmpipe tokenize: %s has no tokenizer\n", model); goto done; }
    if (ids_arg) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] >= mmp_tokenizer_n_vocab(tok)) {
                fprintf(stderr, "mmpipe tokenize: id %d is out of range (the vocabulary has %d tokens)\n", ids[i], mmp_tokenizer_n_vocab(tok));
                rc = 2;
                goto done;
            }
        /* piece by piece, as `mmpipe run` prints them (the space SentencePiece puts before the
         * first word is dropped after BOS; control tokens such as BOS print nothing) */
        char piece[512];
        for (size_t i = 0; i < n; i++) {
            int64_t pn = mmp_cli_piece(tok, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
            if (pn < 0) { mmp_cli_fail("tokenize", "cannot decode"); goto done; }
            fwrite(piece, 1, (size_t)pn, stdout);
        }
        fputc('\n', stdout);
    } else {
        if (mmp_tokenizer_encode(tok, text, strlen(text), bos, special, &ids, &n)) { mmp_cli_fail("tokenize", "cannot tokenize"); goto done; }
        for (size_t i = 0; i < n; i++) {
            if (pieces) {
                size_t tl = 0;
                const char *t = mmp_tokenizer_token_text(tok, ids[i], &tl);
                printf("%6d  '%.*s'\n", ids[i], (int)tl, t ? t : "");
            } else {
                printf("%s%d", i ? "," : "", ids[i]);
            }
        }
        if (!pieces) printf("\n");
        fprintf(stderr, "%zu tokens\n", n);
    }
    rc = 0;
done:
    free(ids);
    mmp_llm_free(m);
    return rc;
}
