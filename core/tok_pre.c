/* Byte-level BPE pre-tokenizers: the regex lists of every `tokenizer.ggml.pre` type llama.cpp
 * knows (src/llama-vocab.cpp, llm_tokenizer_bpe) and the way llama.cpp runs them
 * (src/unicode.cpp, unicode_regex_split):
 *
 *  - regexes are applied in order; each one splits every piece produced by the previous one,
 *    and the text between two matches becomes a piece of its own;
 *  - the GPT-2 and llama-3 regexes (and Kimi-K2, AFMoE digits) are not run as regexes but by
 *    hand-written matchers; we port those matchers, so their quirks carry over;
 *  - any other regex that mentions \p{N}, \p{L}, \p{P}, \p{M}, \p{S}, \p{Lu}... runs on a
 *    "collapsed" text, one byte per code point: ASCII stays, non-ASCII whitespace becomes \v,
 *    other code points become a byte per category (0xD1 number, 0xD2 letter, 0xD3
 *    punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 other), and \p{X} in the regex becomes a class
 *    of that byte plus the ASCII members. We build the same collapsed text and regex and run
 *    them with PCRE2 in byte mode, which gives the same results as std::regex (ECMAScript)
 *    for these patterns: leftmost alternative wins in both, \s is ASCII whitespace in both,
 *    and `$` is end-only (PCRE2_DOLLAR_ENDONLY);
 *  - a regex without categories runs on the code points (non-ASCII whitespace -> \v) with
 *    PCRE2 in UTF mode, without UCP (std::wregex classes are ASCII).
 * Category data (tok_unicode_data.c) is generated from Python's unicodedata; llama.cpp
 * generates its tables the same way, possibly from a newer Unicode version (only code points
 * assigned after Unicode 14 can differ). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok_impl.h"

#include <string.h>

/* ---------------- the table of pre-tokenizer types ---------------- */

#define RX_GPT2   "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_LLAMA3 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_LLAMA3_ORIG "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_DS3_3  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
#define RX_PORO   " ?[^(\\s|.,!?…。，、।۔،)]+"
#define RX_GPT4O  "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_SPMNL  "[^\\n]+|[\\n]+"

/* names, regexes, ignore_merges, add_bos, clean_spaces, spm_style, null_bos */
static const mmp__pre_type k_pre_types[] = {
    { "default", { "[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2, "\\p{N}+", "[0-9][0-9][0-9]" }, false, false, true, false, false },
    { "llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", { RX_LLAMA3 }, true, true, true, false, false },
    { "jais-2", { "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}" }, false, false, true, false, false },
    { "dbrx|smaug-bpe", { RX_LLAMA3 }, false, false, true, false, false },
    { "deepseek-llm", { "[\r\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+" }, false, false, false, false, false },
    { "deepseek-v3|hunyuan-dense|joyai-llm|hy_v4", { "\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", RX_DS3_3 }, false, false, false, false, false },
    { "spark2_5", { "\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
        "\\p{N}" }, false, false, false, false, false },
    { "youtu", { "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        true, false, false, false, false },
    { "deepseek-coder", { "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}" }, false, false, false, false, false },
    { "falcon", { "[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]" }, false, false, true, false, false },
    { "starcoder|refact|codeshell|exaone|minerva-7b|mellum2", { "\\p{N}", RX_GPT2 }, false, false, true, false, false },
    { "command-r|smollm", { "\\p{N}", RX_GPT2 }, false, false, false, false, false },
    { "gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|modern-bert|exaone4|mpt|olmo|jais|jina-v1-en|jina-v2-code|roberta-bpe",
        { RX_GPT2 }, false, false, true, false, false },
    { "trillion|granite-docling", { RX_GPT2 }, false, false, false, false, false },
    { "qwen2|deepseek-r1-qwen|kormo|f2llmv2|hunyuan|solar-open", { RX_QWEN2 }, false, false, false, false, false },
    { "stablelm2|megrez", { RX_QWEN2 }, false, false, true, false, false },
    { "qwen35", { "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        false, false, false, false, false },
    { "poro-chat", { RX_PORO }, false, false, false, false, false },
    { "bloom|gpt3-finnish", { RX_PORO }, false, false, true, false, false },
    { "glm4|chatglm-bpe", { RX_LLAMA3 }, false, false, true, false, true },
    { "viking", { RX_PORO, "\\p{N}" }, false, false, false, false, false },
    { "tekken", { "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        true, true, false, false, false },
    { "chameleon", { "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
        "[\\p{P}!-/:-@\\[-`{-~]", RX_GPT2 }, false, true, false, false, false },
    { "gpt-4o|llama4|kanana2|talkie|minimax-m2", { RX_GPT4O }, false, false, false, false, false },
    { "granite-embed-multi-97m", { "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        true, false, false, false, false },
    { "tiny_aya|cohere2moe", { "\\d{1,3}(?=(?:\\d{3})*\\b)",
        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        false, false, false, false, false },
    { "kimi-k2", { "\\p{Han}+" }, false, false, false, false, false },
    { "superbpe", { "\\p{N}+", "(?=(\\d{3})+(?!\\d))" }, false, false, false, false, false },
    { "bailingmoe|bailingmoe2|llada-moe", { "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+" },
        false, false, false, false, false },
    { "seed-coder", { "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        false, false, false, false, false },
    { "ufakzeka", { "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        false, false, false, false, false },
    { "grok-2", { RX_QWEN2 }, false, false, false, false, false },
    { "afmoe", { "\\p{AFMoE_digits}", "[一-鿿㐀-䶿\\x{F900}-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+", RX_DS3_3 },
        false, false, false, false, false },
    { "laguna", { RX_SPMNL, RX_QWEN2 }, false, false, false, false, false },
    { "exaone-moe", { "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+" },
        false, false, true, false, false },
    { "gemma4|granite-embed-multi-311m", { RX_SPMNL }, false, false, true, true, false },
    { "sarvam-moe", { RX_SPMNL }, false, false, false, true, false },
    { "minicpm5", { "\\p{N}{1,3}", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
        true, false, true, false, false },
};
#define N_PRE_TYPES ((int)(sizeof k_pre_types / sizeof k_pre_types[0]))

static bool name_in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

const mmp__pre_type *mmp__pre_type_find(const char *name) {
    if (!name || !*name) return &k_pre_types[0];
    for (int i = 0; i < N_PRE_TYPES; i++)
        if (name_in_list(k_pre_types[i].names, name)) return &k_pre_types[i];
    return NULL;
}

const mmp__pre_type *mmp__pre_type_at(int i) {
    return (i >= 0 && i < N_PRE_TYPES) ? &k_pre_types[i] : NULL;
}

const char *mmp_tokenizer_pre_type_name(int i) {
    return (i >= 0 && i < N_PRE_TYPES) ? k_pre_types[i].names : NULL;
}

/* ---------------- compiling ---------------- */

/* llama.cpp's category names and their collapsed byte + ASCII members. */
static const struct { const char *name; uint8_t byte; const char *ascii; } k_ucat[] = {
    { "\\p{N}",  0xD1, "\x30-\x39" },
    { "\\p{L}",  0xD2, "\x41-\x5A\x61-\x7A" },
    { "\\p{P}",  0xD3, "\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\\\x5B-\\\x5D\x5F\\\x7B\\\x7D" },
    { "\\p{M}",  0xD4, "" },
    { "\\p{S}",  0xD5, "\\\x24\\\x2B\x3C-\x3E\x5E\x60\\\x7C" },
    { "\\p{Lu}", 0xD2, "\x41-\x5A\x61-\x7A" },
    { "\\p{Ll}", 0xD2, "\x41-\x5A\x61-\x7A" },
    { "\\p{Lt}", 0xD2, "\x41-\x5A\x61-\x7A" },
    { "\\p{Lm}", 0xD2, "\x41-\x5A\x61-\x7A" },
    { "\\p{Lo}", 0xD2, "\x41-\x5A\x61-\x7A" },
};
#define N_UCAT ((int)(sizeof k_ucat / sizeof k_ucat[0]))

static bool uses_categories(const char *rx) {
    for (int i = 0; i < N_UCAT; i++)
        if (strstr(rx, k_ucat[i].name)) return true;
    return false;
}

/* llama.cpp's regex_expr_collapsed construction, byte for byte. */
static char *collapse_regex(const char *rx) {
    size_t n = strlen(rx);
    mmp__buf b = {0};
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (rx[i] == '[' && (i == 0 || rx[i - 1] != '\\')) {
            if (!mmp__buf_put(&b, "[", 1)) goto fail;
            inside = true;
            continue;
        }
        if (inside && rx[i] == ']' && rx[i - 1] != '\\') {
            if (!mmp__buf_put(&b, "]", 1)) goto fail;
            inside = false;
            continue;
        }
        if (rx[i] == '\\' && i + 3 < n && rx[i + 1] == 'p' && rx[i + 2] == '{') {
            const char *cb = strchr(rx + i + 3, '}');
            if (cb && (size_t)(cb - rx) <= i + 10) {
                size_t pl = (size_t)(cb - rx) - i + 1;
                int k = -1;
                for (int j = 0; j < N_UCAT; j++)
                    if (strlen(k_ucat[j].name) == pl && memcmp(k_ucat[j].name, rx + i, pl) == 0) { k = j; break; }
                if (k >= 0) {
                    if (!inside && !mmp__buf_put(&b, "[", 1)) goto fail;
                    char c = (char)k_ucat[k].byte;
                    if (!mmp__buf_put(&b, &c, 1) || !mmp__buf_put(&b, k_ucat[k].ascii, strlen(k_ucat[k].ascii))) goto fail;
                    if (!inside && !mmp__buf_put(&b, "]", 1)) goto fail;
                    i = (size_t)(cb - rx);
                    continue;
                }
            }
        }
        if (!mmp__buf_put(&b, rx + i, 1)) goto fail;
    }
    if (!mmp__buf_put(&b, "", 1)) goto fail;
    return b.p;
fail:
    free(b.p);
    return NULL;
}

enum mmp_status mmp__pretok_init(mmp__pretok *p, const char *const *regexes, int n, const char *what) {
    memset(p, 0, sizeof *p);
    if (n > MMP__MAX_SPLITS) return mmp__error(MMP_ERR_INTERNAL, "%s: too many pre-tokenizer regexes", what);
    for (int i = 0; i < n; i++) {
        const char *rx = regexes[i];
        mmp__split *s = &p->s[i];
        if (!strcmp(rx, RX_GPT2)) { s->kind = MMP__SPLIT_GPT2; p->n++; continue; }
        if (!strcmp(rx, RX_LLAMA3) || !strcmp(rx, RX_LLAMA3_ORIG)) { s->kind = MMP__SPLIT_LLAMA3; p->n++; continue; }
        if (!strcmp(rx, "\\p{Han}+")) { s->kind = MMP__SPLIT_KIMI_K2; p->n++; continue; }
        if (!strcmp(rx, "\\p{AFMoE_digits}")) { s->kind = MMP__SPLIT_AFMOE_DIGITS; p->n++; continue; }
        char *pat = NULL;
        uint32_t opts = PCRE2_DOLLAR_ENDONLY;
        if (uses_categories(rx)) {
            for (const unsigned char *c = (const unsigned char *)rx; *c; c++)
                if (*c >= 0x80) {
                    mmp__pretok_free(p);
                    return mmp__error(MMP_ERR_UNSUPPORTED, "%s: pre-tokenizer regex mixes unicode categories and non-ASCII characters "
                                      "(llama.cpp rejects it too): %s", what, rx);
                }
            pat = collapse_regex(rx);
            if (!pat) { mmp__pretok_free(p); return MMP_ERR_NOMEM; }
            s->kind = MMP__SPLIT_PCRE_COLLAPSED;
        } else {
            pat = mmp__strdup(rx);
            if (!pat) { mmp__pretok_free(p); return MMP_ERR_NOMEM; }
            s->kind = MMP__SPLIT_PCRE_CPTS;
            opts |= PCRE2_UTF | PCRE2_NO_UTF_CHECK;
        }
        int err = 0;
        PCRE2_SIZE erroff = 0;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &erroff, NULL);
        free(pat);
        if (!code) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            mmp__pretok_free(p);
            return mmp__error(MMP_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu (%s): %s",
                              what, (size_t)erroff, (const char *)msg, rx);
        }
        (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
        s->code = code;
        p->n++;
    }
    return MMP_OK;
}

enum mmp_status mmp__pretok_init_ucp(mmp__pretok *p, const char *regex, const char *what) {
    memset(p, 0, sizeof *p);
    int err = 0;
    PCRE2_SIZE erroff = 0;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)regex, PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return mmp__error(MMP_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu (%s): %s",
                          what, (size_t)erroff, (const char *)msg, regex);
    }
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    p->s[0].kind = MMP__SPLIT_PCRE_UCP;
    p->s[0].code = code;
    p->n = 1;
    return MMP_OK;
}

void mmp__pretok_free(mmp__pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++)
        if (p->s[i].code) pcre2_code_free((pcre2_code *)p->s[i].code);
    memset(p, 0, sizeof *p);
}

/* ---------------- splitting ---------------- */

typedef struct { size_t *p; size_t n, cap; } lens_vec;

static bool lens_push(lens_vec *v, size_t x) {
    if (x == 0) return true; /* empty pieces produce no tokens: drop them */
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        size_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) { mmp__error(MMP_ERR_NOMEM, "tokenizer: out of memory"); return false; }
        v->p = p; v->cap = cap;
    }
    v->p[v->n++] = x;
    return true;
}

#define OOR 0xFFFFFFFFu

typedef struct {
    const uint32_t *cpts;
    const uint16_t *flags;
    size_t ini, end;      /* the piece: [ini, end) */
    size_t prev_end;
    lens_vec *out;
    bool ok;
} piece_ctx;

static inline uint32_t pc_cpt(const piece_ctx *c, size_t pos) { return (pos >= c->ini && pos < c->end) ? c->cpts[pos] : OOR; }
static inline uint16_t pc_flags(const piece_ctx *c, size_t pos) { return (pos >= c->ini && pos < c->end) ? c->flags[pos] : 0; }
static inline size_t pc_add(piece_ctx *c, size_t end) {
    size_t len = end - c->prev_end;
    if (len > 0 && !lens_push(c->out, len)) c->ok = false;
    c->prev_end = end;
    return len;
}
#define F_L(f) ((f) & MMP__U_LETTER)
#define F_N(f) ((f) & MMP__U_NUMBER)
#define F_WS(f) ((f) & MMP__U_WHITESPACE)

/* unicode_regex_split_custom_gpt2 */
static void split_gpt2(piece_ctx *c) {
    for (size_t pos = c->ini; pos < c->end && c->ok;) {
        const uint32_t cpt = pc_cpt(c, pos);
        const uint16_t flags = pc_flags(c, pos);
        if (cpt == '\'' && pos + 1 < c->end) {
            uint32_t nx = pc_cpt(c, pos + 1);
            if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') { pos += pc_add(c, pos + 2); continue; }
            if (pos + 2 < c->end) {
                uint32_t nn = pc_cpt(c, pos + 2);
                if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) { pos += pc_add(c, pos + 3); continue; }
            }
        }
        uint16_t f2 = (cpt == ' ') ? pc_flags(c, pos + 1) : flags;
        if (F_L(f2)) {
            pos += (cpt == ' ');
            while (F_L(f2)) f2 = pc_flags(c, ++pos);
            pc_add(c, pos);
            continue;
        }
        if (F_N(f2)) {
            pos += (cpt == ' ');
            while (F_N(f2)) f2 = pc_flags(c, ++pos);
            pc_add(c, pos);
            continue;
        }
        if (!(F_WS(f2) | F_L(f2) | F_N(f2)) && f2) {
            pos += (cpt == ' ');
            while (!(F_WS(f2) | F_L(f2) | F_N(f2)) && f2) f2 = pc_flags(c, ++pos);
            pc_add(c, pos);
            continue;
        }
        size_t nws = 0;
        while (F_WS(pc_flags(c, pos + nws))) nws++;
        if (nws > 1 && pc_cpt(c, pos + nws) != OOR) { pos += nws - 1; pc_add(c, pos); continue; }
        if (nws > 0) { pos += nws; pc_add(c, pos); continue; }
        pc_add(c, ++pos);
    }
}

static bool is_contraction_at(const piece_ctx *c, size_t pos, size_t *len) {
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) with pos at the apostrophe */
    if (pc_cpt(c, pos) != '\'' || !(pos + 1 < c->end)) return false;
    uint32_t nx = mmp__utolower(pc_cpt(c, pos + 1));
    if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') { *len = 2; return true; }
    if (pos + 2 < c->end) {
        uint32_t nn = mmp__utolower(pc_cpt(c, pos + 2));
        if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) { *len = 3; return true; }
    }
    return false;
}

/* shared tail of the llama-3 and Kimi-K2 matchers: numbers, punctuation runs, whitespace */
static bool split_tail_llama3(piece_ctx *c, size_t *ppos, bool numbers) {
    size_t pos = *ppos;
    const uint32_t cpt = pc_cpt(c, pos);
    const uint16_t flags = pc_flags(c, pos);
    if (numbers && F_N(flags)) {
        size_t ini = pos;
        while (F_N(pc_flags(c, pos))) {
            if (++pos - ini >= 3) { pc_add(c, pos); ini = pos; }
        }
        pc_add(c, pos);
        *ppos = pos;
        return true;
    }
    uint16_t f2 = (cpt == ' ') ? pc_flags(c, pos + 1) : flags;
    if (!(F_WS(f2) | F_L(f2) | F_N(f2)) && flags) {
        pos += (cpt == ' ');
        while (!(F_WS(f2) | F_L(f2) | F_N(f2)) && f2) f2 = pc_flags(c, ++pos);
        uint32_t c2 = pc_cpt(c, pos);
        while (c2 == '\r' || c2 == '\n') c2 = pc_cpt(c, ++pos);
        pc_add(c, pos);
        *ppos = pos;
        return true;
    }
    size_t nws = 0, last_rn = 0;
    while (F_WS(pc_flags(c, pos + nws))) {
        uint32_t c2 = pc_cpt(c, pos + nws);
        if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
        nws++;
    }
    if (last_rn > 0) { pos = last_rn; pc_add(c, pos); *ppos = pos; return true; }
    if (nws > 1 && pc_cpt(c, pos + nws) != OOR) { pos += nws - 1; pc_add(c, pos); *ppos = pos; return true; }
    if (nws > 0) { pos += nws; pc_add(c, pos); *ppos = pos; return true; }
    pc_add(c, ++pos);
    *ppos = pos;
    return true;
}

/* unicode_regex_split_custom_llama3 */
static void split_llama3(piece_ctx *c) {
    for (size_t pos = c->ini; pos < c->end && c->ok;) {
        const uint32_t cpt = pc_cpt(c, pos);
        const uint16_t flags = pc_flags(c, pos);
        size_t cl;
        if (is_contraction_at(c, pos, &cl)) { pos += pc_add(c, pos + cl); continue; }
        if (!(cpt == '\r' || cpt == '\n' || F_N(flags))) {
            if (F_L(flags) || F_L(pc_flags(c, pos + 1))) {
                pos++;
                while (F_L(pc_flags(c, pos))) pos++;
                pc_add(c, pos);
                continue;
            }
        }
        split_tail_llama3(c, &pos, true);
    }
}

static bool is_han(uint32_t cpt) {
    return (cpt >= 0x4E00 && cpt <= 0x9FFF) || (cpt >= 0x3400 && cpt <= 0x4DBF) ||
           (cpt >= 0x20000 && cpt <= 0x2A6DF) || (cpt >= 0x2A700 && cpt <= 0x2B73F) ||
           (cpt >= 0x2B740 && cpt <= 0x2B81F) || (cpt >= 0x2B820 && cpt <= 0x2CEAF) ||
           (cpt >= 0x2CEB0 && cpt <= 0x2EBEF) || (cpt >= 0xF900 && cpt <= 0xFAFF) ||
           (cpt >= 0x2F800 && cpt <= 0x2FA1F);
}

/* unicode_regex_split_custom_kimi_k2 */
static void split_kimi(piece_ctx *c) {
    for (size_t pos = c->ini; pos < c->end && c->ok;) {
        const uint32_t cpt = pc_cpt(c, pos);
        const uint16_t flags = pc_flags(c, pos);
        if (is_han(cpt)) {
            while (is_han(pc_cpt(c, pos))) pos++;
            pc_add(c, pos);
            continue;
        }
        bool lead_ok = !(cpt == '\r' || cpt == '\n' || F_L(flags) || F_N(flags));
        bool is_letter_pattern = (F_L(flags) && !is_han(cpt)) ||
                                 (lead_ok && F_L(pc_flags(c, pos + 1)) && !is_han(pc_cpt(c, pos + 1)));
        if (is_letter_pattern) {
            bool has_lead = false, has_letters = false;
            if (lead_ok) { has_lead = true; pos++; }
            while (F_L(pc_flags(c, pos)) && !is_han(pc_cpt(c, pos))) { has_letters = true; pos++; }
            if (has_letters || (!has_lead && F_L(pc_flags(c, pos)) && !is_han(pc_cpt(c, pos)))) {
                if (!has_letters) pos++;
                while (F_L(pc_flags(c, pos)) && !is_han(pc_cpt(c, pos))) pos++;
                if (pc_cpt(c, pos) == '\'' && pos + 1 < c->end) {
                    uint32_t nx = mmp__utolower(pc_cpt(c, pos + 1));
                    if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') pos += 2;
                    else if (pos + 2 < c->end) {
                        uint32_t nn = mmp__utolower(pc_cpt(c, pos + 2));
                        if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) pos += 3;
                    }
                }
                pc_add(c, pos);
                continue;
            } else if (has_lead) {
                pos--;
            }
        }
        split_tail_llama3(c, &pos, true);
    }
}

/* unicode_regex_split_custom_afmoe: digit runs cut as 1-2 leading digits then groups of 3 */
static void split_afmoe(piece_ctx *c) {
    for (size_t pos = c->ini; pos < c->end && c->ok;) {
        if (F_N(pc_flags(c, pos))) {
            size_t start = pos, count = 0;
            while (F_N(pc_flags(c, pos)) && pos < c->end) { count++; pos++; }
            size_t rem = count % 3, cur = start;
            if (rem > 0) { pc_add(c, cur + rem); cur += rem; }
            while (cur < start + count) { pc_add(c, cur + 3); cur += 3; }
            continue;
        }
        pos++;
    }
    if (c->prev_end < c->end) pc_add(c, c->end);
}

/* Code points in n bytes of our own (valid) UTF-8. */
static size_t count_cps(const uint8_t *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (s[i] & 0xC0) != 0x80;
    return k;
}

/* Run one PCRE2 regex over each piece of `in`, llama.cpp's unicode_regex_split_stl: matches
 * and the gaps between them become pieces. subj: the subject bytes; byte_of[i]: byte offset of
 * code point i in subj (NULL: one byte per code point). */
static enum mmp_status split_pcre(const mmp__split *s, const char *subj, const size_t *byte_of, size_t n_cpts,
                                  const size_t *in, size_t n_in, lens_vec *out) {
    pcre2_code *code = (pcre2_code *)s->code;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!md || !mc) {
        pcre2_match_data_free(md); pcre2_match_context_free(mc);
        return mmp__error(MMP_ERR_NOMEM, "tokenizer: out of memory (regex match data)");
    }
    /* a hostile text must not make the pre-tokenizer run for ever */
    pcre2_set_match_limit(mc, 50u * 1000 * 1000);
    enum mmp_status st = MMP_OK;
    size_t cp0 = 0;
    for (size_t k = 0; k < n_in && st == MMP_OK; k++) {
        size_t cp1 = cp0 + in[k];
        size_t b0 = byte_of ? byte_of[cp0] : cp0;
        size_t b1 = byte_of ? byte_of[cp1] : cp1;
        const PCRE2_SPTR sub = (PCRE2_SPTR)(subj + b0);
        size_t slen = b1 - b0;
        size_t pos = 0, last = 0;
        uint32_t opts = 0;
        while (pos <= slen) {
            int rc = pcre2_match(code, sub, slen, pos, opts | (byte_of ? PCRE2_NO_UTF_CHECK : 0), md, mc);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                rc = pcre2_match(code, sub, slen, pos, opts | PCRE2_NO_JIT | (byte_of ? PCRE2_NO_UTF_CHECK : 0), md, mc);
            if (rc == PCRE2_ERROR_NOMATCH) {
                if (opts == 0 || pos >= slen) break;
                /* no non-empty match here after an empty one: step one character */
                opts = 0;
                pos++;
                if (byte_of) while (pos < slen && (sub[pos] & 0xC0) == 0x80) pos++;
                continue;
            }
            if (rc < 0) {
                PCRE2_UCHAR msg[128];
                pcre2_get_error_message(rc, msg, sizeof msg);
                st = mmp__error(rc == PCRE2_ERROR_MATCHLIMIT ? MMP_ERR_LIMIT : MMP_ERR_INTERNAL,
                                "tokenizer: pre-tokenizer regex failed on the text: %s", (const char *)msg);
                break;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me < ms) me = ms; /* \K tricks: not in our regexes */
            if (byte_of) {
                if (ms > last && !lens_push(out, count_cps(sub + last, ms - last))) { st = MMP_ERR_NOMEM; break; }
                if (!lens_push(out, count_cps(sub + ms, me - ms))) { st = MMP_ERR_NOMEM; break; }
            } else {
                if (ms > last && !lens_push(out, ms - last)) { st = MMP_ERR_NOMEM; break; }
                if (!lens_push(out, me - ms)) { st = MMP_ERR_NOMEM; break; }
            }
            last = me;
            pos = me;
            opts = (me == ms) ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
        }
        if (st == MMP_OK && last < slen) {
            size_t gap = byte_of ? count_cps(sub + last, slen - last) : slen - last;
            if (!lens_push(out, gap)) st = MMP_ERR_NOMEM;
        }
        cp0 = cp1;
    }
    (void)n_cpts;
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    return st;
}

enum mmp_status mmp__pretok_split(const mmp__pretok *p, const uint32_t *cpts, size_t n,
                                  size_t **out_lens, size_t *n_out) {
    *out_lens = NULL;
    *n_out = 0;
    enum mmp_status st = MMP_OK;
    uint16_t *flags = NULL;
    char *collapsed = NULL, *utf = NULL, *utf_plain = NULL;
    size_t *byte_of = NULL;
    lens_vec cur = {0}, nxt = {0};
    if (n == 0) return MMP_OK;

    bool need_collapsed = false, need_utf = false, need_flags = false, need_plain = false;
    for (int i = 0; i < p->n; i++) {
        switch (p->s[i].kind) {
        case MMP__SPLIT_PCRE_COLLAPSED: need_collapsed = true; need_flags = true; break;
        case MMP__SPLIT_PCRE_CPTS: need_utf = true; need_flags = true; break;
        case MMP__SPLIT_PCRE_UCP: need_plain = true; break;
        default: need_flags = true; break;
        }
    }
    if (need_flags) {
        flags = mmp__malloc(n * sizeof *flags);
        if (!flags) { st = MMP_ERR_NOMEM; goto done; }
        for (size_t i = 0; i < n; i++) flags[i] = mmp__ucpt_flags(cpts[i]);
    }
    if (need_collapsed) {
        collapsed = mmp__malloc(n + 1);
        if (!collapsed) { st = MMP_ERR_NOMEM; goto done; }
        for (size_t i = 0; i < n; i++) {
            uint32_t c = cpts[i];
            uint8_t b;
            if (c < 128) b = (uint8_t)c;
            else if (flags[i] & MMP__U_WHITESPACE) b = 0x0B;
            else {
                switch (flags[i] & MMP__U_CATEGORIES) {
                case MMP__U_NUMBER: b = 0xD1; break;
                case MMP__U_LETTER: b = 0xD2; break;
                case MMP__U_PUNCTUATION: b = 0xD3; break;
                case MMP__U_ACCENT_MARK: b = 0xD4; break;
                case MMP__U_SYMBOL: b = 0xD5; break;
                default: b = 0xD0; break;
                }
            }
            collapsed[i] = (char)b;
        }
        collapsed[n] = 0;
    }
    if (need_utf || need_plain) {
        /* code points re-encoded for PCRE2's UTF mode: non-ASCII whitespace -> \v (as llama.cpp
         * does for std::wregex), surrogates and values past U+10FFFF -> U+FFFD (they only
         * ever match negated classes, like U+FFFD) */
        size_t cap = 0;
        if (!mmp__mul_ok(n, 4, (uint64_t *)&cap)) { st = mmp__error(MMP_ERR_NOMEM, "tokenizer: text too long"); goto done; }
        utf = mmp__malloc(cap + 1);
        byte_of = mmp__malloc((n + 1) * sizeof *byte_of);
        if (!utf || !byte_of) { st = MMP_ERR_NOMEM; goto done; }
        if (need_plain && need_utf && !(utf_plain = mmp__malloc(cap + 1))) { st = MMP_ERR_NOMEM; goto done; }
        size_t b = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t c = cpts[i];
            if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = 0xFFFD;
            if (utf_plain) mmp__utf8_encode(c, utf_plain + b);
            if (need_utf && c > 0x7F && (flags[i] & MMP__U_WHITESPACE)) c = 0x0B;
            if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = 0xFFFD;
            byte_of[i] = b;
            b += (size_t)mmp__utf8_encode(c, utf + b);
        }
        byte_of[n] = b;
        utf[b] = 0;
        if (utf_plain) utf_plain[b] = 0;
        if (!need_utf) { utf_plain = utf; utf = NULL; } /* only the plain form is needed */
    }

    if (!lens_push(&cur, n)) { st = MMP_ERR_NOMEM; goto done; }
    for (int r = 0; r < p->n; r++) {
        const mmp__split *s = &p->s[r];
        nxt.n = 0;
        if (s->kind == MMP__SPLIT_PCRE_COLLAPSED) {
            st = split_pcre(s, collapsed, NULL, n, cur.p, cur.n, &nxt);
        } else if (s->kind == MMP__SPLIT_PCRE_CPTS) {
            st = split_pcre(s, utf, byte_of, n, cur.p, cur.n, &nxt);
        } else if (s->kind == MMP__SPLIT_PCRE_UCP) {
            st = split_pcre(s, utf_plain, byte_of, n, cur.p, cur.n, &nxt);
        } else {
            size_t start = 0;
            for (size_t k = 0; k < cur.n; k++) {
                piece_ctx c = { cpts, flags, start, start + cur.p[k], start, &nxt, true };
                switch (s->kind) {
                case MMP__SPLIT_GPT2: split_gpt2(&c); break;
                case MMP__SPLIT_LLAMA3: split_llama3(&c); break;
                case MMP__SPLIT_KIMI_K2: split_kimi(&c); break;
                default: split_afmoe(&c); break;
                }
                if (!c.ok) { st = MMP_ERR_NOMEM; break; }
                start += cur.p[k];
            }
        }
        if (st != MMP_OK) goto done;
        lens_vec t = cur; cur = nxt; nxt = t;
    }
    *out_lens = cur.p;
    *n_out = cur.n;
    cur.p = NULL;
done:
    free(cur.p);
    free(nxt.p);
    free(flags);
    free(collapsed);
    free(utf);
    free(utf_plain);
    free(byte_of);
    return st;
}
