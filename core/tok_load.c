/* Tokenizer loaders for files other than GGUF: llama2.c's tokenizer.bin and Hugging Face
 * tokenizer.json (+ tokenizer_config.json). Both fill an mmp__tok_builder, so the
 * construction rules (defaults, checks, caches) are the same as for GGUF. */
#include "tok_impl.h"

#include <cJSON.h>
#include <stdio.h>
#include <string.h>

/* ---------------- small helpers ---------------- */

static char *read_all(const char *path, size_t *len, size_t limit) {
    FILE *f = fopen(path, "rb");
    if (!f) return mmp__error_null(MMP_ERR_IO, "%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return mmp__error_null(MMP_ERR_IO, "%s: cannot seek", path); }
    long sz = ftell(f);
    if (sz < 0 || (unsigned long)sz > limit) {
        fclose(f);
        return mmp__error_null(sz < 0 ? MMP_ERR_IO : MMP_ERR_LIMIT, "%s: size %ld (limit %zu bytes)", path, sz, limit);
    }
    rewind(f);
    char *buf = mmp__malloc((size_t)sz + 1);
    if (!buf) { fclose(f); return NULL; }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) { fclose(f); free(buf); return mmp__error_null(MMP_ERR_IO, "%s: read failed", path); }
    fclose(f);
    buf[sz] = 0;
    *len = (size_t)sz;
    return buf;
}

/* ---------------- llama2.c ---------------- */

mmp_tokenizer *mmp_tokenizer_from_llama2c(const char *path, int32_t vocab_size) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_tokenizer_from_llama2c: NULL path");
    if (vocab_size < 0 || vocab_size > (1 << 24))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: bad vocab_size %d", path, (int)vocab_size);
    size_t len = 0;
    char *data = read_all(path, &len, 1u << 30);
    if (!data) return NULL;
    mmp_tokenizer *t = NULL;
    char **texts = NULL;
    size_t *tlen = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    int32_t n = 0, cap = 0;
    if (len < 4) { mmp__error(MMP_ERR_FORMAT, "%s: %zu bytes, too short for a llama2.c tokenizer", path, len); goto done; }
    int32_t max_len;
    memcpy(&max_len, data, 4);
    if (max_len <= 0 || max_len > (1 << 20)) { mmp__error(MMP_ERR_FORMAT, "%s: max_token_length %d", path, (int)max_len); goto done; }
    size_t off = 4;
    while (vocab_size ? n < vocab_size : off < len) {
        if (len - off < 8) {
            mmp__error(MMP_ERR_FORMAT, "%s: token %d: truncated at byte %zu (expected %d tokens)", path, (int)n, off, (int)vocab_size);
            goto done;
        }
        float sc;
        int32_t l;
        memcpy(&sc, data + off, 4);
        memcpy(&l, data + off + 4, 4);
        off += 8;
        if (l < 0 || l > max_len || (size_t)l > len - off) {
            mmp__error(MMP_ERR_FORMAT, "%s: token %d: length %d (max_token_length %d, %zu bytes left)", path, (int)n, (int)l, (int)max_len, len - off);
            goto done;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 512;
            char **a = realloc(texts, (size_t)cap * sizeof *a);
            if (a) texts = a;
            size_t *b = realloc(tlen, (size_t)cap * sizeof *b);
            if (b) tlen = b;
            float *c = realloc(scores, (size_t)cap * sizeof *c);
            if (c) scores = c;
            int32_t *d = realloc(types, (size_t)cap * sizeof *d);
            if (d) types = d;
            if (!a || !b || !c || !d) { mmp__error(MMP_ERR_NOMEM, "%s: out of memory", path); goto done; }
        }
        /* llama2.c's export wrote SentencePiece pieces with "▁" turned into ' ' and BOS/EOS as
         * "\n<s>\n" / "\n</s>\n": undo both so the vocab is the SentencePiece one */
        const char *s = data + off;
        size_t sl = (size_t)l;
        if (sl >= 5 && s[0] == '\n' && s[sl - 1] == '\n' && s[1] == '<' && s[sl - 2] == '>') { s++; sl -= 2; }
        size_t spaces = 0;
        for (size_t i = 0; i < sl; i++) spaces += s[i] == ' ';
        char *x = mmp__malloc(sl + 2 * spaces + 1);
        if (!x) goto done;
        size_t k = 0;
        for (size_t i = 0; i < sl; i++) {
            if (s[i] == ' ') { memcpy(x + k, "\xE2\x96\x81", 3); k += 3; }
            else x[k++] = s[i];
        }
        x[k] = 0;
        texts[n] = x;
        tlen[n] = k;
        scores[n] = sc;
        uint8_t byte;
        (void)byte;
        if (k == 5 && !memcmp(x, "<unk>", 5)) types[n] = 2;
        else if ((k == 3 && !memcmp(x, "<s>", 3)) || (k == 4 && !memcmp(x, "</s>", 4))) types[n] = 3;
        else if (k == 6 && !memcmp(x, "<0x", 3) && x[5] == '>') types[n] = 6;
        else types[n] = 1;
        n++;
        off += (size_t)l;
    }
    if (n == 0) { mmp__error(MMP_ERR_FORMAT, "%s: no tokens", path); goto done; }
    mmp__tok_builder b;
    mmp__tok_builder_init(&b);
    b.kind = MMP_TOKENIZER_SPM;
    b.model = "llama";
    b.pre = "default";
    b.source = path;
    b.n_vocab = n;
    b.texts = (const char *const *)texts;
    b.text_lens = tlen;
    b.scores = scores;
    b.types = types;
    b.add_bos = 1;
    b.add_eos = 0;
    t = mmp__tok_finish(&b);
done:
    for (int32_t i = 0; i < n; i++) free(texts[i]);
    free(texts); free(tlen); free(scores); free(types);
    free(data);
    return t;
}

/* ---------------- Hugging Face tokenizer.json ---------------- */

/* The original regexes from tokenizer.json that llama.cpp maps to its own types. */
static const struct { const char *regex; const char *pre; } k_hf_regex[] = {
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe" },
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2" },
    { "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "gpt-2" },
};

/* SPM-style BPE from tokenizer.json: no pre-split, "▁" for spaces, <0xXX> byte fallback. */
static const mmp__pre_type k_hf_spm = { "hf-spm", { NULL }, false, false, false, true, false };
/* byte-level BPE with a Split regex llama.cpp does not know */
static const mmp__pre_type k_hf_custom = { "hf-regex", { NULL }, false, false, true, false, false };

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL; }
static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* find a pre-tokenizer / normaliser node of a type, searching Sequence nodes */
static const cJSON *find_type(const cJSON *node, const char *type, const char *list_key) {
    if (!cJSON_IsObject(node)) return NULL;
    const char *ty = jstr(node, "type");
    if (ty && !strcmp(ty, type)) return node;
    const cJSON *seq = jget(node, list_key);
    const cJSON *it;
    cJSON_ArrayForEach(it, seq) {
        const cJSON *r = find_type(it, type, list_key);
        if (r) return r;
    }
    return NULL;
}

/* a special-token entry of tokenizer_config.json: "text" or {"content": "text"} */
static const char *cfg_token(const cJSON *cfg, const char *key) {
    const cJSON *v = jget(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return jstr(v, "content");
    return NULL;
}

static int cfg_bool(const cJSON *cfg, const char *key) {
    const cJSON *v = jget(cfg, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

mmp_tokenizer *mmp_tokenizer_from_hf(const char *tokenizer_json, const char *tokenizer_config_json) {
    if (!tokenizer_json) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_tokenizer_from_hf: NULL path");
    const char *src = tokenizer_json;
    size_t len = 0;
    char *txt = read_all(tokenizer_json, &len, 512u << 20), *ctxt = NULL;
    cJSON *root = NULL, *cfg = NULL;
    mmp_tokenizer *t = NULL;
    char **texts = NULL;
    size_t *tlen = NULL;
    int32_t *types = NULL;
    char **merges = NULL;
    size_t *mlen = NULL;
    int32_t n = 0, nm = 0;
    if (!txt) return NULL;
    root = cJSON_ParseWithLength(txt, len);
    if (!root) { mmp__error(MMP_ERR_FORMAT, "%s: not valid JSON", src); goto done; }
    if (tokenizer_config_json) {
        size_t cl = 0;
        ctxt = read_all(tokenizer_config_json, &cl, 64u << 20);
        if (!ctxt) goto done;
        cfg = cJSON_ParseWithLength(ctxt, cl);
        if (!cfg) { mmp__error(MMP_ERR_FORMAT, "%s: not valid JSON", tokenizer_config_json); goto done; }
    }
    const cJSON *model = jget(root, "model");
    const char *mtype = jstr(model, "type");
    if (!mtype) { mmp__error(MMP_ERR_FORMAT, "%s: model.type missing", src); goto done; }
    bool is_bpe = !strcmp(mtype, "BPE"), is_wpm = !strcmp(mtype, "WordPiece");
    if (!is_bpe && !is_wpm) {
        mmp__error(MMP_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (BPE and WordPiece are)", src, mtype);
        goto done;
    }
    const cJSON *vocab = jget(model, "vocab");
    if (!cJSON_IsObject(vocab)) { mmp__error(MMP_ERR_FORMAT, "%s: model.vocab is not an object", src); goto done; }
    const cJSON *added = jget(root, "added_tokens");

    /* ids: the vocab object plus added_tokens; holes become "[PAD<id>]" (as llama.cpp's
     * converter does) */
    int64_t max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24)) {
            mmp__error(MMP_ERR_FORMAT, "%s: model.vocab['%s'] = bad id", src, it->string ? it->string : "?");
            goto done;
        }
        if ((int64_t)it->valuedouble > max_id) max_id = (int64_t)it->valuedouble;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = jget(it, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 24) || !jstr(it, "content")) {
            mmp__error(MMP_ERR_FORMAT, "%s: added_tokens: entry without a valid id/content", src);
            goto done;
        }
        if ((int64_t)id->valuedouble > max_id) max_id = (int64_t)id->valuedouble;
    }
    if (max_id < 0) { mmp__error(MMP_ERR_FORMAT, "%s: empty vocab", src); goto done; }
    n = (int32_t)(max_id + 1);
    texts = mmp__calloc((size_t)n, sizeof *texts);
    tlen = mmp__calloc((size_t)n, sizeof *tlen);
    types = mmp__calloc((size_t)n, sizeof *types);
    if (!texts || !tlen || !types) goto done;

    bool byte_level = find_type(jget(root, "pre_tokenizer"), "ByteLevel", "pretokenizers") != NULL ||
                      find_type(jget(root, "decoder"), "ByteLevel", "decoders") != NULL;
    const cJSON *meta = find_type(jget(root, "pre_tokenizer"), "Metaspace", "pretokenizers");
    const cJSON *prepend = find_type(jget(root, "normalizer"), "Prepend", "normalizers");
    const cJSON *replace = find_type(jget(root, "normalizer"), "Replace", "normalizers");
    bool byte_fallback = cJSON_IsTrue(jget(model, "byte_fallback"));
    bool spm_style = is_bpe && !byte_level && (meta || replace || prepend || byte_fallback);
    if (is_bpe && !byte_level && !spm_style) {
        mmp__error(MMP_ERR_UNSUPPORTED, "%s: BPE without a ByteLevel or Metaspace/\"▁\" pre-tokenizer is not supported", src);
        goto done;
    }

    cJSON_ArrayForEach(it, vocab) {
        int32_t id = (int32_t)it->valuedouble;
        const char *s = it->string ? it->string : "";
        char *x;
        if (is_wpm) {
            /* llama.cpp's BERT converter: "##x" -> "x", "[X]" stays, "x" -> "▁x" */
            size_t sl = strlen(s);
            if (sl >= 2 && s[0] == '[' && s[sl - 1] == ']') x = mmp__strdup(s);
            else if (sl >= 2 && s[0] == '#' && s[1] == '#') x = mmp__strdup(s + 2);
            else { x = mmp__malloc(sl + 4); if (x) { memcpy(x, "\xE2\x96\x81", 3); memcpy(x + 3, s, sl + 1); } }
        } else {
            x = mmp__strdup(s);
        }
        if (!x) goto done;
        if (texts[id]) { free(x); mmp__error(MMP_ERR_FORMAT, "%s: id %d appears twice in model.vocab", src, (int)id); goto done; }
        texts[id] = x;
        tlen[id] = strlen(x);
        types[id] = (spm_style && tlen[id] == 6 && !memcmp(x, "<0x", 3) && x[5] == '>') ? 6 : 1;
    }
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)jget(it, "id")->valuedouble;
        const char *s = jstr(it, "content");
        if (texts[id]) {
            if (strcmp(texts[id], s) != 0 && !is_wpm) {
                mmp__error(MMP_ERR_FORMAT, "%s: added token %d '%s' differs from vocab '%s'", src, (int)id, s, texts[id]);
                goto done;
            }
            free(texts[id]);
        }
        texts[id] = mmp__strdup(s);
        if (!texts[id]) goto done;
        tlen[id] = strlen(s);
        types[id] = cJSON_IsTrue(jget(it, "special")) ? 3 : 4;
    }
    for (int32_t i = 0; i < n; i++) {
        if (texts[i]) continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%d]", (int)i);
        texts[i] = mmp__strdup(buf);
        if (!texts[i]) goto done;
        tlen[i] = strlen(buf);
        types[i] = 5; /* unused */
    }

    mmp__tok_builder b;
    mmp__tok_builder_init(&b);
    b.source = src;
    b.n_vocab = n;
    b.texts = (const char *const *)texts;
    b.text_lens = tlen;
    b.types = types;
    /* no file says which ids are special for HF models other than by text */
    b.bos = b.eos = b.unk = b.sep = b.pad = b.mask = -1;

    if (is_bpe) {
        b.kind = MMP_TOKENIZER_BPE;
        b.model = "gpt2";
        const cJSON *jm = jget(model, "merges");
        int sz = cJSON_GetArraySize(jm);
        if (jm && !cJSON_IsArray(jm)) { mmp__error(MMP_ERR_FORMAT, "%s: model.merges is not an array", src); goto done; }
        if (sz > 0) {
            merges = mmp__calloc((size_t)sz, sizeof *merges);
            mlen = mmp__calloc((size_t)sz, sizeof *mlen);
            if (!merges || !mlen) goto done;
        }
        cJSON_ArrayForEach(it, jm) {
            char *m = NULL;
            if (cJSON_IsString(it)) m = mmp__strdup(it->valuestring);
            else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                     cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
                const char *l = cJSON_GetArrayItem(it, 0)->valuestring, *r = cJSON_GetArrayItem(it, 1)->valuestring;
                size_t ll = strlen(l), rl = strlen(r);
                m = mmp__malloc(ll + rl + 2);
                if (m) { memcpy(m, l, ll); m[ll] = ' '; memcpy(m + ll + 1, r, rl + 1); }
            } else {
                mmp__error(MMP_ERR_FORMAT, "%s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", src, (int)nm);
                goto done;
            }
            if (!m) goto done;
            merges[nm] = m;
            mlen[nm] = strlen(m);
            nm++;
        }
        b.n_merges = nm;
        b.merges = (const char *const *)merges;
        b.merge_lens = mlen;
        b.pre = "";
        if (spm_style) {
            b.pre_override = &k_hf_spm;
            b.pre = "hf-spm";
            const char *scheme = jstr(meta, "prepend_scheme");
            bool meta_prefix = meta && (scheme ? strcmp(scheme, "never") != 0 : !cJSON_IsFalse(jget(meta, "add_prefix_space")));
            b.bpe_space_prefix = prepend != NULL || meta_prefix;
        } else {
            /* byte-level: the Split regex picks llama.cpp's type; plain ByteLevel is GPT-2 */
            const cJSON *split = find_type(jget(root, "pre_tokenizer"), "Split", "pretokenizers");
            const char *rx = split ? jstr(jget(split, "pattern"), "Regex") : NULL;
            b.pre = "gpt-2";
            if (rx) {
                b.pre = NULL;
                for (size_t k = 0; k < sizeof k_hf_regex / sizeof k_hf_regex[0]; k++)
                    if (!strcmp(rx, k_hf_regex[k].regex)) b.pre = k_hf_regex[k].pre;
                if (!b.pre) { b.pre = "hf-regex"; b.pre_override = &k_hf_custom; b.custom_regex = rx; }
            }
        }
    } else {
        b.kind = MMP_TOKENIZER_WPM;
        b.model = "bert";
        b.pre = "";
        const cJSON *bn = find_type(jget(root, "normalizer"), "BertNormalizer", "normalizers");
        if (bn) {
            const cJSON *lc = jget(bn, "lowercase"), *sa = jget(bn, "strip_accents");
            if (cJSON_IsBool(lc)) b.wpm_lowercase = cJSON_IsTrue(lc);
            if (cJSON_IsBool(sa)) b.wpm_strip_accents = cJSON_IsTrue(sa);
        }
        b.add_bos = b.add_sep = 0; /* set below when [CLS]/[SEP] exist */
    }

    /* special ids by text: the token tokenizer_config.json names, else the usual names */
    {
        static const char *const bos_names[] = { "<s>", "<|begin_of_text|>", "[CLS]", "<|startoftext|>", NULL };
        static const char *const eos_names[] = { "</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", NULL };
        static const char *const unk_names[] = { "<unk>", "[UNK]", NULL };
        static const char *const sep_names[] = { "[SEP]", NULL };
        static const char *const pad_names[] = { "<pad>", "[PAD]", NULL };
        static const char *const mask_names[] = { "[MASK]", "<mask>", NULL };
        struct { const char *key; const char *const *names; int64_t *id; } sp[] = {
            { "bos_token", bos_names, &b.bos }, { "eos_token", eos_names, &b.eos },
            { "unk_token", unk_names, &b.unk }, { "sep_token", sep_names, &b.sep },
            { "pad_token", pad_names, &b.pad }, { "mask_token", mask_names, &b.mask },
        };
        const char *unk_model = jstr(model, "unk_token");
        for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) {
            const char *want = cfg ? cfg_token(cfg, sp[k].key) : NULL;
            if (!want && !strcmp(sp[k].key, "unk_token")) want = unk_model;
            *sp[k].id = -1;
            if (want) {
                for (int32_t i = 0; i < n && *sp[k].id < 0; i++)
                    if (!strcmp(texts[i], want)) *sp[k].id = i;
                continue;
            }
            for (int q = 0; sp[k].names[q] && *sp[k].id < 0; q++)
                for (int32_t i = 0; i < n && *sp[k].id < 0; i++)
                    if (!strcmp(texts[i], sp[k].names[q])) *sp[k].id = i;
        }
        if (is_wpm) {
            if (b.bos >= 0) b.add_bos = 1;
            if (b.sep >= 0) b.add_sep = 1;
        } else {
            b.add_bos = cfg ? cfg_bool(cfg, "add_bos_token") : -1;
            b.add_eos = cfg ? cfg_bool(cfg, "add_eos_token") : -1;
            if (b.add_bos < 0) b.add_bos = spm_style && b.bos >= 0; /* Llama: BOS by default */
            if (b.add_eos < 0) b.add_eos = 0;
        }
    }
    t = mmp__tok_finish(&b);
done:
    if (texts) for (int32_t i = 0; i < n; i++) free(texts[i]);
    free(texts); free(tlen); free(types);
    if (merges) for (int32_t i = 0; i < nm; i++) free(merges[i]);
    free(merges); free(mlen);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    free(txt);
    free(ctxt);
    return t;
}
