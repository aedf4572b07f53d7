/* Private: the tokenizer's internal structures, shared by core/tokenizer.c and core/tok_*.c.
 *
 * The algorithms follow llama.cpp (src/llama-vocab.cpp, src/unicode.cpp) closely, because the
 * reference outputs we test against (tests/data/vocab/ *.out) are llama.cpp's. */
#ifndef MMP_CORE_TOK_IMPL_H
#define MMP_CORE_TOK_IMPL_H

#include "mmpipe/tokenizer.h"
#include "util.h"

#include <stdint.h>
#include <stddef.h>

/* ---------------- unicode (core/tok_unicode.c, tables in core/tok_unicode_data.c) ---------- */

/* Category flags, same bit values as llama.cpp's unicode_cpt_flags. An assigned-nowhere code
 * point (Cn) is UNDEFINED (non-zero!); "no code point" (outside the text) is 0. */
enum {
    MMP__U_UNDEFINED   = 0x0001,
    MMP__U_NUMBER      = 0x0002, /* \p{N} */
    MMP__U_LETTER      = 0x0004, /* \p{L} */
    MMP__U_SEPARATOR   = 0x0008, /* \p{Z} */
    MMP__U_ACCENT_MARK = 0x0010, /* \p{M} */
    MMP__U_PUNCTUATION = 0x0020, /* \p{P} */
    MMP__U_SYMBOL      = 0x0040, /* \p{S} */
    MMP__U_CONTROL     = 0x0080, /* \p{C} */
    MMP__U_CATEGORIES  = 0x00FF,
    MMP__U_WHITESPACE  = 0x0100, /* Unicode White_Space (PropList.txt) */
};

typedef struct { uint32_t first; uint16_t flags; } mmp__ucat_range;
extern const mmp__ucat_range mmp__ucat_ranges[];
extern const size_t mmp__ucat_ranges_n;
extern const uint32_t mmp__ulower[][2];
extern const size_t mmp__ulower_n;
extern const uint32_t mmp__unfd[][3];
extern const size_t mmp__unfd_n;

/* Category | whitespace flags of a code point (0x110000 and above: UNDEFINED). */
uint16_t mmp__ucpt_flags(uint32_t cpt);
uint32_t mmp__utolower(uint32_t cpt);
uint32_t mmp__unfd_first(uint32_t cpt);
/* Bytes in the UTF-8 sequence that starts with byte c, from its high nibble (1 for a stray
 * continuation byte), exactly as llama.cpp's unicode_len_utf8. */
size_t mmp__utf8_len(uint8_t c);
/* Decode UTF-8 the way llama.cpp does: each invalid sequence start becomes U+FFFD and
 * consumes one byte (overlong forms and surrogates are NOT rejected). Returns the number of
 * code points written to cpts (capacity >= len). If byte_off is not NULL it gets, per code
 * point, the byte offset where it starts (capacity >= len + 1, the last entry = len). */
size_t mmp__utf8_decode(const char *s, size_t len, uint32_t *cpts, size_t *byte_off);
/* Encode one code point (> 0x10FFFF becomes U+FFFD); returns bytes written (1..4). */
int mmp__utf8_encode(uint32_t cpt, char out[4]);
/* GPT-2 byte-level mapping: byte -> code point (the printable stand-in) and back (-1 if the
 * code point is not one of the 256 stand-ins). */
uint32_t mmp__byte_to_cpt(uint8_t b);
int mmp__cpt_to_byte(uint32_t cpt);

/* ---------------- a growable buffer ---------------- */
typedef struct { char *p; size_t n, cap; } mmp__buf;
bool mmp__buf_reserve(mmp__buf *b, size_t extra);
bool mmp__buf_put(mmp__buf *b, const void *data, size_t n);
typedef struct { mmp_token *p; size_t n, cap; } mmp__ids;
bool mmp__ids_push(mmp__ids *v, mmp_token id);

/* ---------------- string -> index hash (open addressing) ---------------- */
typedef struct {
    int32_t *slot;   /* index or -1 */
    uint32_t mask;   /* capacity - 1 (power of two) */
} mmp__strmap;
uint64_t mmp__hash_bytes(uint64_t h, const void *p, size_t n);
#define MMP__HASH_SEED 0xcbf29ce484222325ull

/* ---------------- pre-tokenizer (core/tok_pre.c) ---------------- */
/* How one regex of a pre-tokenizer is run (llama.cpp's unicode_regex_split). */
enum mmp__split_kind {
    MMP__SPLIT_PCRE_COLLAPSED = 0, /* regex uses \p{..}: run on llama.cpp's 1-byte-per-code-point
                                    * "collapsed" text, PCRE2 in byte mode */
    MMP__SPLIT_PCRE_CPTS      = 1, /* no categories: PCRE2 in UTF mode on the code points */
    MMP__SPLIT_GPT2           = 2, /* llama.cpp's hand-written matcher for the GPT-2 regex */
    MMP__SPLIT_LLAMA3         = 3, /* ... for the llama-3 regex */
    MMP__SPLIT_KIMI_K2        = 4, /* ... for Kimi-K2 */
    MMP__SPLIT_AFMOE_DIGITS   = 5, /* ... AFMoE digit groups */
    MMP__SPLIT_PCRE_UCP       = 6, /* a regex from a HF tokenizer.json that llama.cpp does not
                                    * know: PCRE2 with UTF + Unicode properties, as written */
};
typedef struct {
    enum mmp__split_kind kind;
    void *code; /* pcre2_code_8 * for the PCRE kinds */
} mmp__split;

#define MMP__MAX_SPLITS 8
typedef struct {
    int n;
    mmp__split s[MMP__MAX_SPLITS];
} mmp__pretok;

/* Compile the regex list of a pre-tokenizer type; the strings are llama.cpp's. */
enum mmp_status mmp__pretok_init(mmp__pretok *p, const char *const *regexes, int n, const char *what);
/* One regex run as written (UTF + UCP), e.g. from a tokenizer.json Split pre-tokenizer. */
enum mmp_status mmp__pretok_init_ucp(mmp__pretok *p, const char *regex, const char *what);
void mmp__pretok_free(mmp__pretok *p);
/* Split code points cpts[0..n) into words: *out_lens gets the length (in code points) of each
 * word, in order, summing to n. Returns MMP_OK or NOMEM/INTERNAL. The caller frees *out_lens. */
enum mmp_status mmp__pretok_split(const mmp__pretok *p, const uint32_t *cpts, size_t n,
                                  size_t **out_lens, size_t *n_out);

/* One known `tokenizer.ggml.pre` type. */
typedef struct {
    const char *names;          /* '|' separated names that select it */
    const char *regex[MMP__MAX_SPLITS]; /* NULL-terminated */
    bool ignore_merges;
    bool add_bos;               /* forces add_bos (before the file's add_bos_token key) */
    bool clean_spaces;          /* detokenize clean-up (llama.cpp clean_spaces) */
    bool spm_style;             /* gemma4/sarvam: ▁ for spaces, raw UTF-8, <0xXX> bytes */
    bool null_bos;              /* chatglm: no BOS */
} mmp__pre_type;
/* The table entry for a name, or NULL. "default" and "" give the default entry. */
const mmp__pre_type *mmp__pre_type_find(const char *name);
const mmp__pre_type *mmp__pre_type_at(int i); /* NULL past the end */

/* ---------------- the tokenizer ---------------- */
struct mmp_tokenizer {
    enum mmp_tokenizer_kind kind;
    char *model;             /* tokenizer.ggml.model */
    char *pre;               /* tokenizer.ggml.pre ("" if none) */
    const mmp__pre_type *pre_type; /* BPE only */
    char *source;            /* file name, for messages */

    int32_t n_vocab;
    char *pool;              /* all token texts, each NUL-terminated */
    uint32_t *off, *len;     /* text of token i: pool + off[i], len[i] bytes */
    float *score;
    uint32_t *attr;          /* enum mmp_token_attr bits */
    int32_t max_token_len;
    mmp__strmap vocab_map;   /* text -> id */

    /* BPE merges: merge i is "left right" (stored as given); map keyed by that string. */
    int32_t n_merges;
    char *merge_pool;
    uint32_t *merge_off, *merge_len;
    mmp__strmap merge_map;

    mmp__pretok pretok;
    bool byte_encode;        /* GPT-2 byte-level (false for SPM-style BPE) */

    /* special ids (MMP_TOKEN_NULL when absent) */
    mmp_token bos, eos, eot, eom, unk, sep, pad, mask, nl;
    bool add_bos, add_eos, add_sep, add_space_prefix, ignore_merges, clean_spaces,
         escape_whitespaces, remove_extra_whitespaces;
    bool bpe_space_prefix;   /* SPM-style BPE from a tokenizer.json with a "▁" prefix */
    bool wpm_lowercase, wpm_strip_accents;

    /* control / user-defined / unknown ids sorted by text length (longest first) */
    mmp_token *special;
    int32_t n_special;
    mmp_token *eog;
    int32_t n_eog;

    /* byte fallback ids: spm_byte[b] = "<0xXX>" (or the 1-char string b), raw_byte[b] = the
     * 1-byte string b; MMP_TOKEN_NULL when absent */
    mmp_token spm_byte[256], raw_byte[256];
    bool gemma4_newlines;    /* llama.cpp's gemma-4 fix: a word of only '\n' that is a token */

    /* token -> piece cache (special = true form), in piece_pool */
    char *piece_pool;
    uint32_t *piece_off, *piece_len;
};

/* Helpers shared by the loaders (core/tokenizer.c). */
mmp_token mmp__tok_find(const mmp_tokenizer *t, const char *text, size_t len);
int32_t mmp__tok_merge_rank(const mmp_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn);

/* The loaders fill a builder, then mmp__tok_finish builds maps, caches and checks. */
typedef struct {
    enum mmp_tokenizer_kind kind;
    const char *model, *pre, *source;
    int32_t n_vocab;
    const char *const *texts; const size_t *text_lens; /* n_vocab entries */
    const float *scores;      /* may be NULL */
    const int32_t *types;     /* llama.cpp token types (1 normal .. 6 byte); may be NULL */
    int32_t n_merges;
    const char *const *merges; const size_t *merge_lens;
    /* special ids: -2 = keep the default for the model, -1 = none */
    int64_t bos, eos, eot, eom, unk, sep, pad, mask;
    int add_bos, add_eos, add_sep, add_space_prefix; /* -1 = default for the model */
    int wpm_lowercase, wpm_strip_accents;            /* -1 = default */
    const char *general_name; /* for llama.cpp's per-model attribute fixes (phi-3), may be NULL */
    /* Hugging Face loader only (BPE): a pre-tokenizer type not in the table, and/or a regex
     * run as written; bpe_space_prefix: prepend "▁" to text (Metaspace / Prepend normaliser) */
    const mmp__pre_type *pre_override;
    const char *custom_regex;
    bool bpe_space_prefix;
} mmp__tok_builder;
void mmp__tok_builder_init(mmp__tok_builder *b);
mmp_tokenizer *mmp__tok_finish(const mmp__tok_builder *b);

/* Encoders (core/tok_spm.c, tok_bpe.c, tok_wpm.c): append ids for one raw-text fragment. */
enum mmp_status mmp__spm_encode(const mmp_tokenizer *t, const char *text, size_t len, mmp__ids *out);
enum mmp_status mmp__bpe_encode(const mmp_tokenizer *t, const char *text, size_t len, mmp__ids *out);
enum mmp_status mmp__wpm_encode(const mmp_tokenizer *t, const char *text, size_t len, mmp__ids *out);

#endif
