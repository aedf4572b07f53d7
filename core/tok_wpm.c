/* WordPiece as llama.cpp runs it for BERT vocabularies (llm_tokenizer_wpm_session). The GGUF
 * vocab stores word-initial pieces with a "▁" prefix and continuation pieces bare (the
 * converter turned "##ing" into "ing" and "play" into "▁play"). Normalisation: each code point
 * mapped to the first code point of its NFD form and accent marks dropped (strip_accents),
 * lower-cased, control characters dropped; whitespace splits words; punctuation, ASCII symbols
 * and CJK ideographs become words of their own. Each word, prefixed with "▁", is cut greedily
 * into the longest vocab pieces; a word with a position no piece matches becomes [UNK]. */
#include "tok_impl.h"

#include <string.h>

static bool is_chinese_char(uint32_t c) {
    return (c >= 0x04E00 && c <= 0x09FFF) || (c >= 0x03400 && c <= 0x04DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) || /* sic: HF uses 0x2B920 */
           (c >= 0x0F900 && c <= 0x0FAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static enum mmp_status wpm_word(const mmp_tokenizer *t, const char *w, size_t n, mmp__ids *out) {
    if (n == 0) return MMP_OK;
    size_t before = out->n;
    for (size_t i = 0; i < n; i++) {
        bool match = false;
        size_t jmax = i + (size_t)t->max_token_len + 1;
        if (jmax > n) jmax = n;
        for (size_t j = jmax; j > i; j--) {
            mmp_token id = mmp__tok_find(t, w + i, j - i);
            if (id != MMP_TOKEN_NULL) {
                if (!mmp__ids_push(out, id)) return MMP_ERR_NOMEM;
                match = true;
                i = j - 1;
                break;
            }
        }
        if (!match) { out->n = before; break; }
    }
    if (out->n == before && t->unk != MMP_TOKEN_NULL && !mmp__ids_push(out, t->unk)) return MMP_ERR_NOMEM;
    return MMP_OK;
}

enum mmp_status mmp__wpm_encode(const mmp_tokenizer *t, const char *text, size_t len, mmp__ids *out) {
    if (len == 0) return MMP_OK;
    enum mmp_status st = MMP_OK;
    uint32_t *cpts = mmp__malloc(len * sizeof *cpts);
    mmp__buf word = {0};
    if (!cpts) return MMP_ERR_NOMEM;
    size_t n = mmp__utf8_decode(text, len, cpts, NULL);
    static const char phantom[] = "\xE2\x96\x81"; /* ▁ */
#define FLUSH() do { if (word.n > 3) { st = wpm_word(t, word.p, word.n, out); if (st != MMP_OK) goto done; } \
                     word.n = 0; if (!mmp__buf_put(&word, phantom, 3)) { st = MMP_ERR_NOMEM; goto done; } } while (0)
    FLUSH();
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cpts[i];
        if (t->wpm_strip_accents) c = mmp__unfd_first(c);
        uint16_t f = mmp__ucpt_flags(c);
        if (f & MMP__U_WHITESPACE) { FLUSH(); continue; }
        if (c == 0 || c == 0xFFFD || (f & MMP__U_CONTROL)) continue;
        if (t->wpm_strip_accents && (f & MMP__U_ACCENT_MARK)) continue;
        char u[4];
        int nb = mmp__utf8_encode(t->wpm_lowercase ? mmp__utolower(c) : c, u);
        if ((f & MMP__U_PUNCTUATION) || (c < 0x7F && (f & MMP__U_SYMBOL)) || is_chinese_char(c)) {
            FLUSH();
            if (!mmp__buf_put(&word, u, (size_t)nb)) { st = MMP_ERR_NOMEM; goto done; }
            FLUSH();
        } else if (!mmp__buf_put(&word, u, (size_t)nb)) { st = MMP_ERR_NOMEM; goto done; }
    }
    FLUSH();
#undef FLUSH
done:
    free(word.p);
    free(cpts);
    return st;
}
