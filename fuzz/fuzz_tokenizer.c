/* libFuzzer target: tokenize arbitrary bytes with real vocabularies, then decode.
 *
 * Input: byte 0 picks the vocab (llama-spm, gpt-2, bert-bge, falcon, phi-3, starcoder) and
 * whether special tokens are parsed; the rest is the text. Checks: encode succeeds, every id
 * is in range, decode succeeds, and for SPM and byte-level BPE the pieces concatenate back to
 * the text whenever the text is valid UTF-8 that the tokenizer cannot alter (no special
 * tokens parsed, no NUL, no invalid sequences).
 * The vocab files are read from tests/data/vocab next to this source (or $MMP_VOCAB_DIR). */
#define _GNU_SOURCE /* memmem */
#include "mmpipe/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_VOCABS 6
static const char *const k_names[N_VOCABS] = {
    "ggml-vocab-llama-spm", "ggml-vocab-gpt-2", "ggml-vocab-bert-bge",
    "ggml-vocab-falcon", "ggml-vocab-phi-3", "ggml-vocab-starcoder",
};
static mmp_tokenizer *g_tok[N_VOCABS]; /* loaded once per process (harness state only) */

static mmp_tokenizer *get_vocab(int i) {
    if (g_tok[i]) return g_tok[i];
    char dir[1024], path[1200];
    const char *env = getenv("MMP_VOCAB_DIR");
    if (env) snprintf(dir, sizeof dir, "%s", env);
    else {
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
        strncat(dir, "/../tests/data/vocab", sizeof dir - strlen(dir) - 1);
    }
    snprintf(path, sizeof path, "%s/%s.gguf", dir, k_names[i]);
    g_tok[i] = mmp_tokenizer_load_gguf(path);
    if (!g_tok[i]) { fprintf(stderr, "fuzz_tokenizer: %s\n", mmp_last_error()); abort(); }
    return g_tok[i];
}

/* strictly valid UTF-8 without NUL (what the tokenizers reproduce byte for byte) */
static int plain_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        size_t k = (c >= 0xF0 && c <= 0xF4) ? 4 : (c >= 0xE0) && c < 0xF0 ? 3 : (c >= 0xC2 && c < 0xE0) ? 2 : 0;
        if (!k || i + k > n) return 0;
        uint32_t cp = c & (k == 2 ? 0x1F : k == 3 ? 0x0F : 0x07);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
        i += k;
    }
    return 1;
}

/* Byte-level BPE can only give back bytes whose GPT-2 stand-in character is a token (falcon
 * and starcoder lack some: llama.cpp then drops the byte, and so do we). */
static int bytes_representable(const mmp_tokenizer *t, const uint8_t *s, size_t n) {
    if (mmp_tokenizer_kind(t) != MMP_TOKENIZER_BPE) return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned b = s[i], cp;
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) cp = b;
        else {
            cp = 256;
            for (unsigned c = 0; c < b; c++) cp += !((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE));
        }
        char u[3];
        size_t ul;
        if (cp < 0x80) { u[0] = (char)cp; ul = 1; }
        else { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); ul = 2; }
        if (mmp_tokenizer_find(t, u, ul) == MMP_TOKEN_NULL) return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % N_VOCABS;
    int parse_special = (data[0] / N_VOCABS) & 1;
    int add_special = (data[0] / N_VOCABS / 2) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    mmp_tokenizer *t = get_vocab(which);
    mmp_token *ids = NULL;
    size_t n = 0;
    if (mmp_tokenizer_encode(t, text, len, add_special, parse_special, &ids, &n) != MMP_OK) {
        /* only the regex match limit may refuse a text */
        if (!strstr(mmp_last_error(), "regex")) { fprintf(stderr, "encode failed: %s\n", mmp_last_error()); abort(); }
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= mmp_tokenizer_n_vocab(t)) abort();
    char *out = NULL;
    size_t out_len = 0;
    if (mmp_tokenizer_decode(t, ids, n, add_special, parse_special, &out, &out_len) != MMP_OK) abort();
    enum mmp_tokenizer_kind kind = mmp_tokenizer_kind(t);
    if (kind != MMP_TOKENIZER_WPM && !parse_special && !add_special && plain_utf8(data + 1, len) &&
        bytes_representable(t, data + 1, len) &&
        /* SentencePiece writes spaces as U+2581, so a literal U+2581 decodes as a space */
        !(kind == MMP_TOKENIZER_SPM && memmem(text, len, "\xE2\x96\x81", 3))) {
        /* raw pieces (not the clean-up of decode) must give the text back */
        size_t cap = len + 16, used = 0;
        char *cat = malloc(cap);
        for (size_t i = 0; i < n; i++) {
            int64_t pl = mmp_tokenizer_token_to_piece(t, ids[i], false, NULL, 0);
            if (pl < 0) abort();
            if (used + (size_t)pl > cap) { cap = 2 * (used + (size_t)pl); cat = realloc(cat, cap); }
            mmp_tokenizer_token_to_piece(t, ids[i], false, cat + used, (size_t)pl);
            used += (size_t)pl;
        }
        const char *got = cat;
        if (kind == MMP_TOKENIZER_SPM && used > 0 && got[0] == ' ') { got++; used--; }
        /* user-defined tokens of phi-3 (e.g. "</s>") strip the spaces after them (RSTRIP) */
        int may_strip = which == 4;
        if (!may_strip && (used != len || memcmp(got, text, len) != 0)) {
            fprintf(stderr, "round trip failed for vocab %s\n", k_names[which]);
            abort();
        }
        free(cat);
    }
    free(out);
    free(ids);
    return 0;
}
