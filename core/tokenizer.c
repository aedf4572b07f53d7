/* The tokenizer object: vocab storage and lookup, construction rules (llama.cpp's
 * llama_vocab::impl::load), special-token partitioning, encode, token -> piece and decode.
 * The algorithms live in tok_spm.c, tok_bpe.c (+ tok_pre.c) and tok_wpm.c; the Hugging Face
 * and llama2.c loaders in tok_load.c. */
#include "tok_impl.h"

#include <ctype.h>
#include <string.h>

#define MAX_VOCAB  (1 << 24)   /* sanity limit on token counts read from files */
#define MAX_MERGES (1 << 24)

/* ---------------- hash maps ---------------- */

static bool strmap_build(mmp__strmap *m, int32_t n, const char *pool, const uint32_t *off, const uint32_t *len,
                         bool keep_first, int32_t *dup_a, int32_t *dup_b) {
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u) cap <<= 1;
    m->slot = mmp__malloc((size_t)cap * sizeof *m->slot);
    if (!m->slot) return false;
    memset(m->slot, 0xFF, (size_t)cap * sizeof *m->slot);
    m->mask = cap - 1;
    for (int32_t i = 0; i < n; i++) {
        const char *k = pool + off[i];
        uint32_t h = (uint32_t)mmp__hash_bytes(MMP__HASH_SEED, k, len[i]) & m->mask;
        for (;;) {
            int32_t j = m->slot[h];
            if (j < 0) { m->slot[h] = i; break; }
            if (len[j] == len[i] && memcmp(pool + off[j], k, len[i]) == 0) {
                if (!keep_first) { if (dup_a) *dup_a = j; if (dup_b) *dup_b = i; return false; }
                break; /* first occurrence wins */
            }
            h = (h + 1) & m->mask;
        }
    }
    return true;
}

mmp_token mmp__tok_find(const mmp_tokenizer *t, const char *text, size_t len) {
    if (!t->vocab_map.slot) return MMP_TOKEN_NULL;
    uint32_t h = (uint32_t)mmp__hash_bytes(MMP__HASH_SEED, text, len) & t->vocab_map.mask;
    for (;;) {
        int32_t j = t->vocab_map.slot[h];
        if (j < 0) return MMP_TOKEN_NULL;
        if (t->len[j] == len && memcmp(t->pool + t->off[j], text, len) == 0) return j;
        h = (h + 1) & t->vocab_map.mask;
    }
}

int32_t mmp__tok_merge_rank(const mmp_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn) {
    if (!t->merge_map.slot) return -1;
    uint64_t hh = mmp__hash_bytes(MMP__HASH_SEED, l, ln);
    hh = mmp__hash_bytes(hh, " ", 1);
    hh = mmp__hash_bytes(hh, r, rn);
    uint32_t h = (uint32_t)hh & t->merge_map.mask;
    size_t n = ln + 1 + rn;
    for (;;) {
        int32_t j = t->merge_map.slot[h];
        if (j < 0) return -1;
        const char *m = t->merge_pool + t->merge_off[j];
        if (t->merge_len[j] == n && memcmp(m, l, ln) == 0 && m[ln] == ' ' && memcmp(m + ln + 1, r, rn) == 0) return j;
        h = (h + 1) & t->merge_map.mask;
    }
}

/* ---------------- construction ---------------- */

void mmp__tok_builder_init(mmp__tok_builder *b) {
    memset(b, 0, sizeof *b);
    b->bos = b->eos = b->eot = b->eom = b->unk = b->sep = b->pad = b->mask = -2;
    b->add_bos = b->add_eos = b->add_sep = b->add_space_prefix = -1;
    b->wpm_lowercase = b->wpm_strip_accents = -1;
}

void mmp_tokenizer_free(mmp_tokenizer *t) {
    if (!t) return;
    free(t->model); free(t->pre); free(t->source);
    free(t->pool); free(t->off); free(t->len); free(t->score); free(t->attr);
    free(t->vocab_map.slot);
    free(t->merge_pool); free(t->merge_off); free(t->merge_len); free(t->merge_map.slot);
    mmp__pretok_free(&t->pretok);
    free(t->special); free(t->eog);
    free(t->piece_pool); free(t->piece_off); free(t->piece_len);
    free(t);
}

static uint32_t attr_of_type(int32_t type) {
    switch (type) {
    case 2: return MMP_TOKEN_ATTR_UNKNOWN;
    case 5: return MMP_TOKEN_ATTR_UNUSED;
    case 1: return MMP_TOKEN_ATTR_NORMAL;
    case 3: return MMP_TOKEN_ATTR_CONTROL;
    case 4: return MMP_TOKEN_ATTR_USER_DEFINED;
    case 6: return MMP_TOKEN_ATTR_BYTE;
    default: return MMP_TOKEN_ATTR_UNDEFINED;
    }
}

static bool parse_byte_token(const char *s, size_t n, uint8_t *out) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || !isxdigit((unsigned char)s[3]) || !isxdigit((unsigned char)s[4]))
        return false;
    char h[3] = { s[3], s[4], 0 };
    *out = (uint8_t)strtol(h, NULL, 16);
    return true;
}

/* llama_decode_text: every code point of a byte-level token is one byte's stand-in. */
static bool decode_byte_level(const char *s, size_t n, mmp__buf *out) {
    uint32_t *cp = mmp__malloc((n + 1) * sizeof *cp);
    if (!cp) return false;
    size_t k = mmp__utf8_decode(s, n, cp, NULL);
    bool ok = true;
    for (size_t i = 0; i < k && ok; i++) {
        int b = mmp__cpt_to_byte(cp[i]);
        if (b >= 0) { char c = (char)b; ok = mmp__buf_put(out, &c, 1); continue; }
        char u[4], hex[8];
        int nb = mmp__utf8_encode(cp[i], u);
        ok = mmp__buf_put(out, "[UNK_BYTE_0x", 12);
        for (int j = 0; j < nb && ok; j++) {
            snprintf(hex, sizeof hex, "%02x", (uint8_t)u[j]);
            ok = mmp__buf_put(out, hex, 2);
        }
        ok = ok && mmp__buf_put(out, s, n) && mmp__buf_put(out, "]", 1);
    }
    free(cp);
    return ok;
}

static bool unescape_ws(const char *s, size_t n, mmp__buf *out) {
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81) {
            if (!mmp__buf_put(out, " ", 1)) return false;
            i += 3;
        } else {
            if (!mmp__buf_put(out, s + i, 1)) return false;
            i++;
        }
    }
    return true;
}

/* token_to_piece(special = true), the cached form */
static bool make_piece(const mmp_tokenizer *t, int32_t id, mmp__buf *out) {
    const char *s = t->pool + t->off[id];
    size_t n = t->len[id];
    uint32_t a = t->attr[id];
    if (a & (MMP_TOKEN_ATTR_UNKNOWN | MMP_TOKEN_ATTR_CONTROL | MMP_TOKEN_ATTR_USER_DEFINED)) return mmp__buf_put(out, s, n);
    if (a & MMP_TOKEN_ATTR_NORMAL) {
        if (t->kind == MMP_TOKENIZER_BPE && !t->escape_whitespaces) return decode_byte_level(s, n, out);
        return unescape_ws(s, n, out);
    }
    if (a & MMP_TOKEN_ATTR_BYTE) {
        uint8_t b;
        if (parse_byte_token(s, n, &b)) return mmp__buf_put(out, &b, 1);
        return mmp__buf_put(out, s, n); /* a "byte" token that is not <0xXX>: keep its text */
    }
    return true; /* unused / undefined: empty */
}

static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
    "<end_of_utterance>", "<|eom_id|>", NULL
};

static int cmp_special(const void *pa, const void *pb, void *ctx);

mmp_tokenizer *mmp__tok_finish(const mmp__tok_builder *b) {
    const char *src = b->source ? b->source : "(tokenizer)";
    if (b->n_vocab <= 0 || b->n_vocab > MAX_VOCAB)
        return mmp__error_null(MMP_ERR_FORMAT, "%s: tokenizer.ggml.tokens: bad token count %d", src, (int)b->n_vocab);
    if (b->n_merges < 0 || b->n_merges > MAX_MERGES)
        return mmp__error_null(MMP_ERR_FORMAT, "%s: tokenizer.ggml.merges: bad merge count %d", src, (int)b->n_merges);
    mmp_tokenizer *t = mmp__calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = b->kind;
    t->n_vocab = b->n_vocab;
    t->model = mmp__strdup(b->model ? b->model : "");
    t->pre = mmp__strdup(b->pre ? b->pre : "");
    t->source = mmp__strdup(src);
    if (!t->model || !t->pre || !t->source) goto fail;

    /* ---- vocab text, scores, attributes ---- */
    const int32_t n = b->n_vocab;
    uint64_t pool_size = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t l = b->text_lens[i] ? b->text_lens[i] : 24; /* "[EMPTY_i]" */
        if (l > (1u << 20)) { mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%d] is %zu bytes long", src, (int)i, l); goto fail; }
        pool_size += l + 1;
    }
    if (pool_size > UINT32_MAX) { mmp__error(MMP_ERR_LIMIT, "%s: tokenizer.ggml.tokens: %llu bytes of text", src, (unsigned long long)pool_size); goto fail; }
    t->pool = mmp__malloc((size_t)pool_size);
    t->off = mmp__malloc((size_t)n * sizeof *t->off);
    t->len = mmp__malloc((size_t)n * sizeof *t->len);
    t->score = mmp__calloc((size_t)n, sizeof *t->score);
    t->attr = mmp__malloc((size_t)n * sizeof *t->attr);
    if (!t->pool || !t->off || !t->len || !t->score || !t->attr) goto fail;
    uint32_t p = 0;
    for (int32_t i = 0; i < n; i++) {
        t->off[i] = p;
        if (b->text_lens[i]) {
            memcpy(t->pool + p, b->texts[i], b->text_lens[i]);
            t->len[i] = (uint32_t)b->text_lens[i];
        } else { /* llama.cpp renames empty tokens */
            t->len[i] = (uint32_t)snprintf(t->pool + p, 24, "[EMPTY_%d]", (int)i);
        }
        p += t->len[i];
        t->pool[p++] = 0;
        if ((int32_t)t->len[i] > t->max_token_len) t->max_token_len = (int32_t)t->len[i];
        t->score[i] = b->scores ? b->scores[i] : 0.0f;
        t->attr[i] = b->types ? attr_of_type(b->types[i]) : MMP_TOKEN_ATTR_NORMAL;
    }
    {
        int32_t da = -1, db = -1;
        if (!strmap_build(&t->vocab_map, n, t->pool, t->off, t->len, false, &da, &db)) {
            if (da >= 0) mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.tokens: duplicate token '%s' has ids %d and %d",
                                    src, t->pool + t->off[da], (int)da, (int)db);
            goto fail;
        }
    }

    /* ---- merges: "left right", split at the first space after position 0 ---- */
    if (b->n_merges > 0) {
        uint64_t msize = 0;
        for (int32_t i = 0; i < b->n_merges; i++) msize += b->merge_lens[i] + 1;
        if (msize > UINT32_MAX) { mmp__error(MMP_ERR_LIMIT, "%s: tokenizer.ggml.merges too large", src); goto fail; }
        t->merge_pool = mmp__malloc((size_t)msize + 1);
        t->merge_off = mmp__malloc((size_t)b->n_merges * sizeof *t->merge_off);
        t->merge_len = mmp__malloc((size_t)b->n_merges * sizeof *t->merge_len);
        if (!t->merge_pool || !t->merge_off || !t->merge_len) goto fail;
        uint32_t q = 0;
        for (int32_t i = 0; i < b->n_merges; i++) {
            const char *m = b->merges[i];
            size_t l = b->merge_lens[i];
            const char *sp = l > 1 ? memchr(m + 1, ' ', l - 1) : NULL;
            t->merge_off[i] = q;
            if (sp) {
                memcpy(t->merge_pool + q, m, l);
                t->merge_len[i] = (uint32_t)l;
            } else {
                /* llama.cpp keeps it as the pair ("", ""), which no lookup can hit */
                t->merge_len[i] = 0;
            }
            q += t->merge_len[i];
            t->merge_pool[q++] = 0;
        }
        t->n_merges = b->n_merges;
        if (!strmap_build(&t->merge_map, t->n_merges, t->merge_pool, t->merge_off, t->merge_len, true, NULL, NULL)) goto fail;
    }

    /* ---- model defaults (llama_vocab::impl::load) ---- */
    int64_t bos = MMP_TOKEN_NULL, eos = MMP_TOKEN_NULL, unk = MMP_TOKEN_NULL, sep = MMP_TOKEN_NULL,
            pad = MMP_TOKEN_NULL, mask = MMP_TOKEN_NULL, eot = MMP_TOKEN_NULL, eom = MMP_TOKEN_NULL;
    bool add_bos = false, add_eos = false, add_sep = false;
    switch (t->kind) {
    case MMP_TOKENIZER_SPM:
        bos = 1; eos = 2; unk = 0;
        t->add_space_prefix = true; t->clean_spaces = false; t->escape_whitespaces = true;
        add_bos = true;
        break;
    case MMP_TOKENIZER_WPM:
        bos = 101; unk = 100; sep = 102; pad = 0; mask = 103;
        t->add_space_prefix = false; t->clean_spaces = true;
        add_bos = true; add_sep = true;
        t->wpm_lowercase = true;
        break;
    case MMP_TOKENIZER_BPE: {
        bos = 11; eos = 11;
        const mmp__pre_type *pt = b->pre_override ? b->pre_override : mmp__pre_type_find(t->pre);
        if (!pt) {
            mmp__error(MMP_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre: unknown pre-tokenizer type '%s'", src, t->pre);
            goto fail;
        }
        t->pre_type = pt;
        t->ignore_merges = pt->ignore_merges;
        add_bos = pt->add_bos;
        t->clean_spaces = pt->clean_spaces;
        t->escape_whitespaces = pt->spm_style;
        t->byte_encode = !pt->spm_style;
        t->gemma4_newlines = pt->spm_style && !strncmp(pt->names, "gemma4", 6);
        if (pt->null_bos) bos = MMP_TOKEN_NULL;
        int nrx = 0;
        while (nrx < MMP__MAX_SPLITS && pt->regex[nrx]) nrx++;
        char what[512];
        snprintf(what, sizeof what, "%s: tokenizer.ggml.pre '%s'", src, t->pre);
        if (b->custom_regex) {
            if (mmp__pretok_init_ucp(&t->pretok, b->custom_regex, what) != MMP_OK) goto fail;
        } else if (mmp__pretok_init(&t->pretok, pt->regex, nrx, what) != MMP_OK) goto fail;
        t->bpe_space_prefix = b->bpe_space_prefix;
        if (b->bpe_space_prefix) t->add_space_prefix = true; /* decode strips it again */
        break;
    }
    default:
        mmp__error(MMP_ERR_INTERNAL, "%s: bad tokenizer kind %d", src, (int)t->kind);
        goto fail;
    }
    if (b->add_space_prefix >= 0) t->add_space_prefix = b->add_space_prefix;
    if (b->wpm_lowercase >= 0) t->wpm_lowercase = b->wpm_lowercase;
    t->wpm_strip_accents = b->wpm_strip_accents >= 0 ? b->wpm_strip_accents : t->wpm_lowercase;

    /* file ids: out of range -> keep the default (llama.cpp warns and does the same) */
    struct { int64_t given; int64_t *id; } ids[] = {
        { b->bos, &bos }, { b->eos, &eos }, { b->eot, &eot }, { b->eom, &eom },
        { b->unk, &unk }, { b->sep, &sep }, { b->pad, &pad }, { b->mask, &mask },
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        if (*ids[i].id >= n) *ids[i].id = MMP_TOKEN_NULL;
        if (ids[i].given == -1) *ids[i].id = MMP_TOKEN_NULL;
        else if (ids[i].given >= 0 && ids[i].given < n) *ids[i].id = ids[i].given;
    }
    t->bos = (mmp_token)bos; t->eos = (mmp_token)eos; t->unk = (mmp_token)unk; t->sep = (mmp_token)sep;
    t->pad = (mmp_token)pad; t->mask = (mmp_token)mask; t->eot = (mmp_token)eot; t->eom = (mmp_token)eom;
    if (b->add_bos >= 0) add_bos = b->add_bos;
    if (b->add_eos >= 0) add_eos = b->add_eos;
    if (b->add_sep >= 0) add_sep = b->add_sep;
    if (add_bos && t->bos == MMP_TOKEN_NULL) { mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set", src); goto fail; }
    if (add_eos && t->eos == MMP_TOKEN_NULL) { mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set", src); goto fail; }
    if (add_sep && t->sep == MMP_TOKEN_NULL) { mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.add_sep_token is true, but tokenizer.ggml.seperator_token_id is not set", src); goto fail; }
    t->add_bos = add_bos; t->add_eos = add_eos; t->add_sep = add_sep;

    /* end-of-turn tokens found by text (llama.cpp does this until the files carry them); such a
     * token becomes a control token */
    {
        size_t n_eog = 0;
        t->eog = mmp__malloc(sizeof *t->eog * 16);
        if (!t->eog) goto fail;
        for (int k = 0; k_eog_texts[k] && n_eog < 13; k++) {
            mmp_token id = mmp__tok_find(t, k_eog_texts[k], strlen(k_eog_texts[k]));
            if (id == MMP_TOKEN_NULL) continue;
            bool is_eom = !strcmp(k_eog_texts[k], "<|eom_id|>");
            if (is_eom) { if (t->eom == MMP_TOKEN_NULL) t->eom = id; }
            else if (t->eot == MMP_TOKEN_NULL) t->eot = id;
            t->attr[id] |= MMP_TOKEN_ATTR_CONTROL;
            t->eog[n_eog++] = id;
        }
        mmp_token extra[3] = { t->eos, t->eot, t->eom };
        for (int k = 0; k < 3; k++) {
            if (extra[k] == MMP_TOKEN_NULL) continue;
            bool have = false;
            for (size_t j = 0; j < n_eog; j++) have |= t->eog[j] == extra[k];
            if (!have) t->eog[n_eog++] = extra[k];
        }
        t->n_eog = (int32_t)n_eog;
    }

    /* ---- special tokens cache: longest text first ---- */
    {
        int32_t ns = 0;
        for (int32_t i = 0; i < n; i++)
            ns += (t->attr[i] & (MMP_TOKEN_ATTR_CONTROL | MMP_TOKEN_ATTR_USER_DEFINED | MMP_TOKEN_ATTR_UNKNOWN)) != 0;
        t->special = mmp__malloc((size_t)(ns ? ns : 1) * sizeof *t->special);
        if (!t->special) goto fail;
        ns = 0;
        for (int32_t i = 0; i < n; i++)
            if (t->attr[i] & (MMP_TOKEN_ATTR_CONTROL | MMP_TOKEN_ATTR_USER_DEFINED | MMP_TOKEN_ATTR_UNKNOWN)) t->special[ns++] = i;
        t->n_special = ns;
        qsort_r(t->special, (size_t)ns, sizeof *t->special, cmp_special, t);
    }

    /* ---- byte fallback ids ---- */
    for (int c = 0; c < 256; c++) {
        char hx[7];
        snprintf(hx, sizeof hx, "<0x%02X>", c);
        char one = (char)c;
        t->raw_byte[c] = mmp__tok_find(t, &one, 1);
        t->spm_byte[c] = mmp__tok_find(t, hx, 6);
        if (t->spm_byte[c] == MMP_TOKEN_NULL) t->spm_byte[c] = t->raw_byte[c];
    }

    /* ---- token -> piece cache ---- */
    {
        mmp__buf pb = {0};
        t->piece_off = mmp__malloc((size_t)n * sizeof *t->piece_off);
        t->piece_len = mmp__malloc((size_t)n * sizeof *t->piece_len);
        if (!t->piece_off || !t->piece_len) goto fail;
        for (int32_t i = 0; i < n; i++) {
            size_t before = pb.n;
            if (!make_piece(t, i, &pb) || pb.n > UINT32_MAX) { free(pb.p); mmp__error(MMP_ERR_NOMEM, "%s: piece cache", src); goto fail; }
            t->piece_off[i] = (uint32_t)before;
            t->piece_len[i] = (uint32_t)(pb.n - before);
        }
        if (!mmp__buf_put(&pb, "", 1)) { free(pb.p); goto fail; }
        t->piece_pool = pb.p;
    }

    /* ---- per-model attribute fixes llama.cpp applies by name (phi-3 strips spaces after its
     * special tokens) ---- */
    if (b->general_name) {
        char low[256];
        size_t l = strlen(b->general_name);
        if (l >= sizeof low) l = sizeof low - 1;
        for (size_t i = 0; i < l; i++) low[i] = (char)tolower((unsigned char)b->general_name[i]);
        low[l] = 0;
        if (strstr(low, "phi-3") || strstr(low, "phi3")) {
            for (int32_t i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= MMP_TOKEN_ATTR_RSTRIP;
            mmp_token id = mmp__tok_find(t, "</s>", 4);
            if (id != MMP_TOKEN_NULL) t->attr[id] |= MMP_TOKEN_ATTR_RSTRIP;
            static const char *const no[] = { "<unk>", "<s>", "<|endoftext|>" };
            for (int k = 0; k < 3; k++) {
                id = mmp__tok_find(t, no[k], strlen(no[k]));
                if (id != MMP_TOKEN_NULL) t->attr[id] &= ~(uint32_t)MMP_TOKEN_ATTR_RSTRIP;
            }
        }
    }

    /* ---- newline token ---- */
    if (t->kind == MMP_TOKENIZER_SPM) t->nl = t->spm_byte['\n'] != MMP_TOKEN_NULL ? t->spm_byte['\n'] : t->pad;
    else if (t->kind == MMP_TOKENIZER_WPM) t->nl = t->pad;
    else {
        mmp_token *ids_nl = NULL;
        size_t nn = 0;
        t->nl = t->pad;
        if (mmp_tokenizer_encode(t, "\n", 1, false, false, &ids_nl, &nn) == MMP_OK && nn > 0) t->nl = ids_nl[0];
        free(ids_nl);
    }
    return t;
fail:
    mmp_tokenizer_free(t);
    return NULL;
}

static int cmp_special(const void *pa, const void *pb, void *ctx) {
    const mmp_tokenizer *t = ctx;
    mmp_token a = *(const mmp_token *)pa, b = *(const mmp_token *)pb;
    if (t->len[a] != t->len[b]) return t->len[a] > t->len[b] ? -1 : 1;
    return (a > b) - (a < b);
}

/* ---------------- GGUF ---------------- */

static enum mmp_status get_opt_id(const mmp_gguf *g, const char *key, int64_t *out) {
    if (!mmp_gguf_has(g, key)) return MMP_OK;
    uint32_t v;
    enum mmp_status st = mmp_gguf_get_u32(g, key, &v);
    if (st != MMP_OK) return st;
    *out = v; /* range-checked against the vocab in mmp__tok_finish */
    return MMP_OK;
}

static enum mmp_status get_opt_bool(const mmp_gguf *g, const char *key, int *out) {
    if (!mmp_gguf_has(g, key)) return MMP_OK;
    bool v;
    enum mmp_status st = mmp_gguf_get_bool(g, key, &v);
    if (st != MMP_OK) return st;
    *out = v;
    return MMP_OK;
}

mmp_tokenizer *mmp_tokenizer_from_gguf(const mmp_gguf *g) {
    if (!g) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_tokenizer_from_gguf: NULL reader");
    const char *src = mmp_gguf_path(g);
    mmp__tok_builder b;
    mmp__tok_builder_init(&b);
    b.source = src;
    mmp_tokenizer *t = NULL;
    const char **texts = NULL, **merges = NULL;
    size_t *tlen = NULL, *mlen = NULL;
    float *scores = NULL;
    int32_t *types = NULL;

    const char *model = NULL, *pre = "";
    if (mmp_gguf_get_str(g, "tokenizer.ggml.model", &model) != MMP_OK) return NULL;
    if (mmp_gguf_has(g, "tokenizer.ggml.pre") && mmp_gguf_get_str(g, "tokenizer.ggml.pre", &pre) != MMP_OK) return NULL;
    b.model = model;
    b.pre = pre;
    bool need_merges = false;
    if (!strcmp(model, "llama")) b.kind = MMP_TOKENIZER_SPM;
    else if (!strcmp(model, "bert")) b.kind = MMP_TOKENIZER_WPM;
    else if (!strcmp(model, "gpt2")) { b.kind = MMP_TOKENIZER_BPE; need_merges = true; }
    else if (!strcmp(model, "gemma4")) { b.kind = MMP_TOKENIZER_BPE; need_merges = true; b.pre = "gemma4"; }
    else return mmp__error_null(MMP_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model: tokenizer '%s' is not supported "
                                "(supported: llama, gpt2, bert, gemma4)", src, model);

    const mmp_gguf_value *tv;
    if (mmp_gguf_get_arr(g, "tokenizer.ggml.tokens", &tv) != MMP_OK) return NULL;
    if (mmp_gguf_arr_type(tv) != MMP_GGUF_STRING)
        return mmp__error_null(MMP_ERR_FORMAT, "%s: tokenizer.ggml.tokens: array of %s, expected strings", src,
                               mmp_gguf_type_name(mmp_gguf_arr_type(tv)));
    uint64_t n = mmp_gguf_arr_n(tv);
    if (n == 0 || n > MAX_VOCAB)
        return mmp__error_null(MMP_ERR_FORMAT, "%s: tokenizer.ggml.tokens: bad token count %llu", src, (unsigned long long)n);
    texts = mmp__malloc(n * sizeof *texts);
    tlen = mmp__malloc(n * sizeof *tlen);
    if (!texts || !tlen) goto done;
    for (uint64_t i = 0; i < n; i++)
        if (mmp_gguf_arr_str(tv, i, &texts[i], &tlen[i]) != MMP_OK) goto done;
    b.n_vocab = (int32_t)n;
    b.texts = texts;
    b.text_lens = tlen;

    if (mmp_gguf_has(g, "tokenizer.ggml.scores")) {
        const mmp_gguf_value *sv;
        if (mmp_gguf_get_arr(g, "tokenizer.ggml.scores", &sv) != MMP_OK) goto done;
        enum mmp_gguf_type st = mmp_gguf_arr_type(sv);
        if (st != MMP_GGUF_F32 && st != MMP_GGUF_I32) {
            mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.scores: array of %s, expected f32 or i32", src, mmp_gguf_type_name(st));
            goto done;
        }
        if (mmp_gguf_arr_n(sv) < n) {
            mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.scores: %llu scores for %llu tokens", src,
                       (unsigned long long)mmp_gguf_arr_n(sv), (unsigned long long)n);
            goto done;
        }
        scores = mmp__malloc(n * sizeof *scores);
        if (!scores) goto done;
        const uint8_t *raw = mmp_gguf_arr_data(sv);
        for (uint64_t i = 0; i < n; i++) {
            if (st == MMP_GGUF_F32) memcpy(&scores[i], raw + 4 * i, 4);
            else { int32_t v; memcpy(&v, raw + 4 * i, 4); scores[i] = (float)v; }
        }
        b.scores = scores;
    }
    if (mmp_gguf_has(g, "tokenizer.ggml.token_type")) {
        const mmp_gguf_value *yv;
        if (mmp_gguf_get_arr(g, "tokenizer.ggml.token_type", &yv) != MMP_OK) goto done;
        if (mmp_gguf_arr_type(yv) != MMP_GGUF_I32) {
            mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.token_type: array of %s, expected i32", src,
                       mmp_gguf_type_name(mmp_gguf_arr_type(yv)));
            goto done;
        }
        if (mmp_gguf_arr_n(yv) < n) {
            mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.token_type: %llu types for %llu tokens", src,
                       (unsigned long long)mmp_gguf_arr_n(yv), (unsigned long long)n);
            goto done;
        }
        types = mmp__malloc(n * sizeof *types);
        if (!types) goto done;
        memcpy(types, mmp_gguf_arr_data(yv), n * 4);
        b.types = types;
    }
    if (need_merges) {
        const mmp_gguf_value *mv;
        if (!mmp_gguf_has(g, "tokenizer.ggml.merges")) {
            mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.merges: missing (needed by a '%s' tokenizer)", src, model);
            goto done;
        }
        if (mmp_gguf_get_arr(g, "tokenizer.ggml.merges", &mv) != MMP_OK) goto done;
        if (mmp_gguf_arr_type(mv) != MMP_GGUF_STRING) {
            mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.merges: array of %s, expected strings", src,
                       mmp_gguf_type_name(mmp_gguf_arr_type(mv)));
            goto done;
        }
        uint64_t nm = mmp_gguf_arr_n(mv);
        if (nm > MAX_MERGES) {
            mmp__error(MMP_ERR_FORMAT, "%s: tokenizer.ggml.merges: %llu merges", src, (unsigned long long)nm);
            goto done;
        }
        if (nm) {
            merges = mmp__malloc(nm * sizeof *merges);
            mlen = mmp__malloc(nm * sizeof *mlen);
            if (!merges || !mlen) goto done;
            for (uint64_t i = 0; i < nm; i++)
                if (mmp_gguf_arr_str(mv, i, &merges[i], &mlen[i]) != MMP_OK) goto done;
        }
        b.n_merges = (int32_t)nm;
        b.merges = merges;
        b.merge_lens = mlen;
    }
    if (get_opt_id(g, "tokenizer.ggml.bos_token_id", &b.bos) != MMP_OK ||
        get_opt_id(g, "tokenizer.ggml.eos_token_id", &b.eos) != MMP_OK ||
        get_opt_id(g, "tokenizer.ggml.eot_token_id", &b.eot) != MMP_OK ||
        get_opt_id(g, "tokenizer.ggml.eom_token_id", &b.eom) != MMP_OK ||
        get_opt_id(g, "tokenizer.ggml.unknown_token_id", &b.unk) != MMP_OK ||
        get_opt_id(g, "tokenizer.ggml.seperator_token_id", &b.sep) != MMP_OK ||
        get_opt_id(g, "tokenizer.ggml.padding_token_id", &b.pad) != MMP_OK ||
        get_opt_id(g, "tokenizer.ggml.mask_token_id", &b.mask) != MMP_OK ||
        get_opt_bool(g, "tokenizer.ggml.add_bos_token", &b.add_bos) != MMP_OK ||
        get_opt_bool(g, "tokenizer.ggml.add_eos_token", &b.add_eos) != MMP_OK ||
        get_opt_bool(g, "tokenizer.ggml.add_sep_token", &b.add_sep) != MMP_OK ||
        get_opt_bool(g, "tokenizer.ggml.add_space_prefix", &b.add_space_prefix) != MMP_OK ||
        get_opt_bool(g, "tokenizer.ggml.normalizer.lowercase", &b.wpm_lowercase) != MMP_OK ||
        get_opt_bool(g, "tokenizer.ggml.normalizer.strip_accents", &b.wpm_strip_accents) != MMP_OK)
        goto done;
    /* ids beyond the vocab: llama.cpp keeps the default; so do we, silently */
    if (mmp_gguf_has(g, "general.name")) {
        const char *name = NULL;
        if (mmp_gguf_get_str(g, "general.name", &name) == MMP_OK) b.general_name = name;
    }
    t = mmp__tok_finish(&b);
done:
    free(texts); free(tlen); free(merges); free(mlen); free(scores); free(types);
    return t;
}

mmp_tokenizer *mmp_tokenizer_load_gguf(const char *path) {
    mmp_gguf *g = mmp_gguf_open(path);
    if (!g) return NULL;
    mmp_tokenizer *t = mmp_tokenizer_from_gguf(g);
    mmp_gguf_free(g);
    return t;
}

/* ---------------- accessors ---------------- */

enum mmp_tokenizer_kind mmp_tokenizer_kind(const mmp_tokenizer *t) { return t->kind; }
const char *mmp_tokenizer_model_name(const mmp_tokenizer *t) { return t->model; }
const char *mmp_tokenizer_pre_name(const mmp_tokenizer *t) { return t->pre; }
int32_t mmp_tokenizer_n_vocab(const mmp_tokenizer *t) { return t->n_vocab; }
int32_t mmp_tokenizer_n_merges(const mmp_tokenizer *t) { return t->n_merges; }
mmp_token mmp_tokenizer_bos(const mmp_tokenizer *t) { return t->bos; }
mmp_token mmp_tokenizer_eos(const mmp_tokenizer *t) { return t->eos; }
mmp_token mmp_tokenizer_eot(const mmp_tokenizer *t) { return t->eot; }
mmp_token mmp_tokenizer_unk(const mmp_tokenizer *t) { return t->unk; }
mmp_token mmp_tokenizer_sep(const mmp_tokenizer *t) { return t->sep; }
mmp_token mmp_tokenizer_pad(const mmp_tokenizer *t) { return t->pad; }
mmp_token mmp_tokenizer_nl(const mmp_tokenizer *t) { return t->nl; }
bool mmp_tokenizer_add_bos(const mmp_tokenizer *t) { return t->add_bos; }
bool mmp_tokenizer_add_eos(const mmp_tokenizer *t) { return t->add_eos; }

bool mmp_tokenizer_is_eog(const mmp_tokenizer *t, mmp_token id) {
    if (id == MMP_TOKEN_NULL) return false;
    for (int32_t i = 0; i < t->n_eog; i++) if (t->eog[i] == id) return true;
    return false;
}

const char *mmp_tokenizer_token_text(const mmp_tokenizer *t, mmp_token id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { if (len) *len = 0; return NULL; }
    if (len) *len = t->len[id];
    return t->pool + t->off[id];
}

float mmp_tokenizer_token_score(const mmp_tokenizer *t, mmp_token id) {
    return (id >= 0 && id < t->n_vocab) ? t->score[id] : 0.0f;
}

uint32_t mmp_tokenizer_token_attr(const mmp_tokenizer *t, mmp_token id) {
    return (id >= 0 && id < t->n_vocab) ? t->attr[id] : MMP_TOKEN_ATTR_UNDEFINED;
}

mmp_token mmp_tokenizer_find(const mmp_tokenizer *t, const char *text, size_t len) {
    if (!text) return MMP_TOKEN_NULL;
    return mmp__tok_find(t, text, len);
}

/* ---------------- encode ---------------- */

typedef struct { mmp_token tok; size_t off, len; } frag; /* tok == MMP_TOKEN_NULL: raw text */
typedef struct { frag *p; size_t n, cap; } frag_vec;

static bool frag_push(frag_vec *v, mmp_token tok, size_t off, size_t len) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        frag *p = realloc(v->p, cap * sizeof *p);
        if (!p) { mmp__error(MMP_ERR_NOMEM, "tokenizer: out of memory"); return false; }
        v->p = p; v->cap = cap;
    }
    v->p[v->n++] = (frag){ tok, off, len };
    return true;
}

static bool c_isspace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

/* llama.cpp's tokenizer_st_partition: cut every occurrence of each special token (longest
 * first) out of the raw fragments. */
static enum mmp_status partition(const mmp_tokenizer *t, const char *text, size_t len, bool parse_special, frag_vec *out) {
    frag_vec cur = {0}, nxt = {0};
    if (len == 0) { *out = cur; return MMP_OK; }
    if (!frag_push(&cur, MMP_TOKEN_NULL, 0, len)) return MMP_ERR_NOMEM;
    for (int32_t s = 0; s < t->n_special; s++) {
        mmp_token id = t->special[s];
        uint32_t a = t->attr[id];
        if (!parse_special && (a & (MMP_TOKEN_ATTR_CONTROL | MMP_TOKEN_ATTR_UNKNOWN))) continue;
        const char *st = t->pool + t->off[id];
        size_t sl = t->len[id];
        bool any = false;
        for (size_t i = 0; i < cur.n && !any; i++)
            any = cur.p[i].tok == MMP_TOKEN_NULL && cur.p[i].len >= sl && memmem(text + cur.p[i].off, cur.p[i].len, st, sl);
        if (!any) continue;
        nxt.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            frag f = cur.p[i];
            if (f.tok != MMP_TOKEN_NULL) { if (!frag_push(&nxt, f.tok, 0, 0)) goto nomem; continue; }
            size_t base = f.off, blen = f.len;
            for (;;) {
                const char *m = blen >= sl ? memmem(text + base, blen, st, sl) : NULL;
                if (!m) { if (blen > 0 && !frag_push(&nxt, MMP_TOKEN_NULL, base, blen)) goto nomem; break; }
                size_t mo = (size_t)(m - text);
                size_t left = mo - base;
                if (a & MMP_TOKEN_ATTR_LSTRIP) while (left > 0 && c_isspace(text[base + left - 1])) left--;
                if (left > 0 && !frag_push(&nxt, MMP_TOKEN_NULL, base, left)) goto nomem;
                if (!frag_push(&nxt, id, 0, 0)) goto nomem;
                size_t roff = mo + sl, rlen = base + blen - roff;
                if (a & MMP_TOKEN_ATTR_RSTRIP) while (rlen > 0 && c_isspace(text[roff])) { roff++; rlen--; }
                base = roff; blen = rlen;
                if (blen == 0) break;
            }
        }
        frag_vec tmp = cur; cur = nxt; nxt = tmp;
    }
    free(nxt.p);
    *out = cur;
    return MMP_OK;
nomem:
    free(cur.p); free(nxt.p);
    return MMP_ERR_NOMEM;
}

/* ' ' -> "▁" (and the optional leading space) for SPM and SPM-style BPE */
static bool escape_into(mmp__buf *b, bool lead_space, const char *s, size_t n) {
    b->n = 0;
    if (lead_space && !mmp__buf_put(b, "\xE2\x96\x81", 3)) return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { if (!mmp__buf_put(b, "\xE2\x96\x81", 3)) return false; }
        else if (!mmp__buf_put(b, s + i, 1)) return false;
    }
    return true;
}

enum mmp_status mmp_tokenizer_encode(const mmp_tokenizer *t, const char *text, size_t len,
                                     bool add_special, bool parse_special, mmp_token **out, size_t *n_out) {
    if (!out || !n_out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_tokenizer_encode: NULL output");
    *out = NULL;
    *n_out = 0;
    if (!t) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_tokenizer_encode: NULL tokenizer");
    if (!text && len) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_tokenizer_encode: NULL text with length %zu", len);
    frag_vec fr = {0};
    mmp__ids ids = {0};
    mmp__buf tmp = {0};
    enum mmp_status st = partition(t, text, len, parse_special, &fr);
    if (st != MMP_OK) return st;

    switch (t->kind) {
    case MMP_TOKENIZER_SPM: {
        bool prev_special = true; /* a leading space before the first text */
        if (add_special && t->add_bos && !mmp__ids_push(&ids, t->bos)) { st = MMP_ERR_NOMEM; break; }
        for (size_t i = 0; i < fr.n && st == MMP_OK; i++) {
            if (fr.p[i].tok != MMP_TOKEN_NULL) {
                if (!mmp__ids_push(&ids, fr.p[i].tok)) st = MMP_ERR_NOMEM;
                prev_special = true;
                continue;
            }
            if (!escape_into(&tmp, t->add_space_prefix && prev_special, text + fr.p[i].off, fr.p[i].len)) { st = MMP_ERR_NOMEM; break; }
            st = mmp__spm_encode(t, tmp.p, tmp.n, &ids);
            prev_special = false;
        }
        if (st == MMP_OK && add_special && t->add_eos && !mmp__ids_push(&ids, t->eos)) st = MMP_ERR_NOMEM;
        break;
    }
    case MMP_TOKENIZER_BPE: {
        bool prev_special = true;
        if (add_special && t->add_bos && !mmp__ids_push(&ids, t->bos)) { st = MMP_ERR_NOMEM; break; }
        for (size_t i = 0; i < fr.n && st == MMP_OK; i++) {
            if (fr.p[i].tok != MMP_TOKEN_NULL) {
                if (!mmp__ids_push(&ids, fr.p[i].tok)) st = MMP_ERR_NOMEM;
                prev_special = true;
                continue;
            }
            if (t->escape_whitespaces) {
                if (!escape_into(&tmp, t->bpe_space_prefix && prev_special, text + fr.p[i].off, fr.p[i].len)) { st = MMP_ERR_NOMEM; break; }
                prev_special = false;
                st = mmp__bpe_encode(t, tmp.p, tmp.n, &ids);
            } else {
                st = mmp__bpe_encode(t, text + fr.p[i].off, fr.p[i].len, &ids);
            }
        }
        if (st == MMP_OK && add_special && t->add_eos && !mmp__ids_push(&ids, t->eos)) st = MMP_ERR_NOMEM;
        break;
    }
    case MMP_TOKENIZER_WPM:
        if (add_special && t->bos != MMP_TOKEN_NULL && !mmp__ids_push(&ids, t->bos)) { st = MMP_ERR_NOMEM; break; }
        for (size_t i = 0; i < fr.n && st == MMP_OK; i++) {
            if (fr.p[i].tok != MMP_TOKEN_NULL) {
                if (!mmp__ids_push(&ids, fr.p[i].tok)) st = MMP_ERR_NOMEM;
                continue;
            }
            st = mmp__wpm_encode(t, text + fr.p[i].off, fr.p[i].len, &ids);
        }
        if (st == MMP_OK && add_special && t->sep != MMP_TOKEN_NULL && !mmp__ids_push(&ids, t->sep)) st = MMP_ERR_NOMEM;
        break;
    default:
        st = mmp__error(MMP_ERR_INTERNAL, "tokenizer: bad kind %d", (int)t->kind);
    }
    free(fr.p);
    free(tmp.p);
    if (st != MMP_OK) { free(ids.p); return st; }
    if (ids.n == 0) { free(ids.p); return MMP_OK; }
    *out = ids.p;
    *n_out = ids.n;
    return MMP_OK;
}

/* ---------------- decode ---------------- */

int64_t mmp_tokenizer_token_to_piece(const mmp_tokenizer *t, mmp_token id, bool special, char *buf, size_t size) {
    if (!t) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_tokenizer_token_to_piece: NULL tokenizer");
    if (id < 0 || id >= t->n_vocab)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: token id %d out of range [0, %d)", t->source, (int)id, (int)t->n_vocab);
    if (!special && (t->attr[id] & (MMP_TOKEN_ATTR_UNKNOWN | MMP_TOKEN_ATTR_CONTROL))) return 0;
    size_t n = t->piece_len[id];
    if (buf && size) memcpy(buf, t->piece_pool + t->piece_off[id], n < size ? n : size);
    return (int64_t)n;
}

enum mmp_status mmp_tokenizer_decode(const mmp_tokenizer *t, const mmp_token *ids, size_t n,
                                     bool remove_special, bool unparse_special, char **out, size_t *len) {
    if (!out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_tokenizer_decode: NULL output");
    *out = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n)) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_tokenizer_decode: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: decode: token %zu is %d, out of range [0, %d)", t->source, i, (int)ids[i], (int)t->n_vocab);
    bool remove_space = t->add_space_prefix;
    if (remove_special && t->add_bos && n > 0 && ids[0] == t->bos) { remove_space = false; ids++; n--; }
    if (remove_special && t->add_eos && n > 0 && ids[n - 1] == t->eos) n--;
    mmp__buf b = {0};
    if (!mmp__buf_reserve(&b, 1)) return MMP_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        mmp_token id = ids[i];
        if (!unparse_special && (t->attr[id] & (MMP_TOKEN_ATTR_UNKNOWN | MMP_TOKEN_ATTR_CONTROL))) { remove_space = false; continue; }
        const char *p = t->piece_pool + t->piece_off[id];
        size_t pl = t->piece_len[id];
        if (remove_space && pl && *p == ' ') { p++; pl--; }
        remove_space = false;
        if (!mmp__buf_put(&b, p, pl)) { free(b.p); return MMP_ERR_NOMEM; }
    }
    if (!mmp__buf_put(&b, "", 1)) { free(b.p); return MMP_ERR_NOMEM; }
    size_t total = b.n - 1;
    char *x = b.p;
    if (t->clean_spaces && total > 0) {
        /* llama.cpp's three clean-up passes, byte for byte */
        size_t t1 = total, k = 1;
        for (size_t i = 1; i < t1; i++) {
            char c = x[i];
            if (x[i - 1] == ' ' && (c == '?' || c == '!' || c == '.' || c == ',')) k--;
            x[k++] = c;
        }
        size_t t2 = k; k = 1;
        for (size_t i = 1; i < t2; i++) {
            char c = x[i];
            if (c == '\'' && i + 1 < t2 && x[i - 1] == ' ' && x[i + 1] == ' ') { k--; x[++i] = '\0'; }
            x[k++] = c;
        }
        size_t t3 = k; k = 1;
        for (size_t i = 1; i < t3; i++) {
            char c = x[i];
            if (x[i - 1] == ' ' && c == '\'' && i + 1 < t3) {
                char c1 = x[i + 1];
                if (c1 == 's' || c1 == 'm') k--;
                else if (i + 2 < t3) {
                    char c2 = x[i + 2];
                    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e')) k--;
                }
            }
            x[k++] = c;
        }
        total = k;
    }
    x[total] = 0;
    *out = x;
    if (len) *len = total;
    return MMP_OK;
}
