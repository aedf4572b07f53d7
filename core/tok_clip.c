/* The CLIP BPE tokenizer as transformers' (slow) CLIPTokenizer runs it without ftfy, which is
 * what diffusers pipelines use for Stable Diffusion prompts (tokenizer/vocab.json + merges.txt).
 *
 * encode(text):
 *  1. BasicTokenizer(strip_accents=False, do_split_on_punc=False): drop NUL, U+FFFD and control
 *     characters (Cc/Cf; \t \n \r are whitespace), whitespace -> word break, CJK ideographs
 *     become words of their own, each word lower-cased as str.lower() does (simple mappings
 *     plus U+0130 -> "i" U+0307); words joined with one space.
 *     (NFC normalisation is not applied: text is taken as given, which is NFC for nearly all
 *     typed input. "Control" here is all of \p{C}, so private-use characters are dropped too,
 *     where transformers keeps them.)
 *  2. findall of  <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
 *     [^\s\p{L}\p{N}]+  (alternatives tried in that order at each position, whitespace skipped).
 *  3. each piece: UTF-8 bytes -> GPT-2 printable stand-ins; symbols = its characters with
 *     "</w>" glued to the last one; merge the adjacent pair of lowest rank (all occurrences,
 *     left to right) until no pair has a rank; each symbol -> its vocab id (unk if absent).
 * Before 1., exact occurrences of the bos / eos / unk token texts are cut out of the text and
 * become their ids (transformers' added-token trie does the same).
 *
 * Merging uses a heap of (rank, position) with lazy deletion, as core/tok_bpe.c: identical to
 * the reference "merge every occurrence of the best pair, repeat" loop for any merges list in
 * which a merge's parts are created by earlier merges (true of every real BPE file), but
 * O(n log n) for a hostile long word. */
#include "tok_impl.h"
#include "mapfile.h"
#include "mmpipe/json.h"

#include <cJSON.h>
#include <stdio.h>
#include <string.h>

/* transformers: merges = f.read().strip().split("\n")[1 : 49152 - 256 - 2 + 1] */
#define CLIP_MAX_MERGES (49152 - 256 - 2)
#define CLIP_MAX_VOCAB  (1 << 24)

typedef struct {
    int32_t *slot;   /* index or -1 */
    uint32_t mask;
} clip_map;

struct mmp_clip_tokenizer {
    char *source;
    int32_t n_vocab;              /* max id + 1 */
    char **text;                  /* [n_vocab], NULL for ids not in vocab.json */
    uint32_t *text_len;
    clip_map vocab;               /* text -> id */
    int32_t n_merges;
    char **merge;                 /* "left right" */
    uint32_t *merge_len;
    clip_map merges;              /* "left right" -> rank */
    mmp_token bos, eos, pad, unk;
    int32_t model_max_length;
};

/* ---------------- small helpers ---------------- */

static char *read_all(const char *path, size_t *len, size_t limit) {
    mmp__mapfile mf;
    if (mmp__mapfile_open(&mf, path) != MMP_OK) return NULL;
    if (mf.size > limit) {
        mmp__error(MMP_ERR_LIMIT, "%s: file of %zu bytes is too large (limit %zu)", path, mf.size, limit);
        mmp__mapfile_close(&mf);
        return NULL;
    }
    char *p = mmp__malloc(mf.size + 1);
    if (p) { memcpy(p, mf.data, mf.size); p[mf.size] = 0; *len = mf.size; }
    mmp__mapfile_close(&mf);
    return p;
}

static bool map_init(clip_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    m->slot = mmp__malloc(cap * sizeof *m->slot);
    if (!m->slot) return false;
    memset(m->slot, 0xff, cap * sizeof *m->slot);
    m->mask = (uint32_t)(cap - 1);
    return true;
}

/* find (keys[i], lens[i]) == (k, n): the index, or -1; *pos gets the free slot otherwise */
static int32_t map_find(const clip_map *m, char *const *keys, const uint32_t *lens, const char *k, size_t n,
                        uint32_t *pos) {
    uint32_t h = (uint32_t)mmp__hash_bytes(MMP__HASH_SEED, k, n) & m->mask;
    for (;;) {
        int32_t i = m->slot[h];
        if (i < 0) { if (pos) *pos = h; return -1; }
        if (lens[i] == n && !memcmp(keys[i], k, n)) return i;
        h = (h + 1) & m->mask;
    }
}

static char *strndup_(const char *s, size_t n) {
    char *p = mmp__malloc(n + 1);
    if (p) { memcpy(p, s, n); p[n] = 0; }
    return p;
}

void mmp_clip_tokenizer_free(mmp_clip_tokenizer *t) {
    if (!t) return;
    if (t->text) for (int32_t i = 0; i < t->n_vocab; i++) free(t->text[i]);
    if (t->merge) for (int32_t i = 0; i < t->n_merges; i++) free(t->merge[i]);
    free(t->text); free(t->text_len); free(t->vocab.slot);
    free(t->merge); free(t->merge_len); free(t->merges.slot);
    free(t->source);
    free(t);
}

static mmp_token find_token(const mmp_clip_tokenizer *t, const char *s, size_t n) {
    return map_find(&t->vocab, t->text, t->text_len, s, n, NULL);
}

/* a special token named in tokenizer_config.json / special_tokens_map.json: "text" or
 * {"content": "text", ...}; -2 if the key is absent, -1 if null, else its id (error if not in
 * the vocab) */
static int64_t special_id(const mmp_clip_tokenizer *t, const cJSON *cfg, const char *key, const char *file) {
    const cJSON *v = cJSON_IsObject(cfg) ? cJSON_GetObjectItemCaseSensitive(cfg, key) : NULL;
    if (!v) return -2;
    if (cJSON_IsNull(v)) return -1;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) {
        mmp__error(MMP_ERR_FORMAT, "%s: '%s' is neither a string nor an object with a 'content' string", file, key);
        return -3;
    }
    mmp_token id = find_token(t, v->valuestring, strlen(v->valuestring));
    if (id < 0) {
        mmp__error(MMP_ERR_FORMAT, "%s: %s '%s' is not in the vocabulary (%s)", file, key, v->valuestring, t->source);
        return -3;
    }
    return id;
}

static cJSON *parse_json_file(const char *path, size_t limit) {
    size_t len = 0;
    char *txt = read_all(path, &len, limit);
    if (!txt) return NULL;
    cJSON *j = NULL;
    if (mmp__json_too_deep(txt, len, MMP_JSON_MAX_DEPTH))
        mmp__error(MMP_ERR_FORMAT, "%s: JSON nested deeper than %d levels", path, MMP_JSON_MAX_DEPTH);
    else if (!(j = cJSON_ParseWithLength(txt, len)))
        mmp__error(MMP_ERR_FORMAT, "%s: not valid JSON", path);
    free(txt);
    return j;
}

/* ---------------- loading ---------------- */

static bool load_vocab(mmp_clip_tokenizer *t, const char *path) {
    cJSON *root = parse_json_file(path, 256u << 20);
    if (!root) return false;
    bool ok = false;
    if (!cJSON_IsObject(root)) { mmp__error(MMP_ERR_FORMAT, "%s: not a JSON object {token: id}", path); goto done; }
    int64_t max_id = -1, count = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= CLIP_MAX_VOCAB ||
            it->valuedouble != (double)(int64_t)it->valuedouble) {
            mmp__error(MMP_ERR_FORMAT, "%s: token '%s' has id %s (expected an integer in 0..%d)", path,
                       it->string ? it->string : "?", cJSON_IsNumber(it) ? "out of range" : "that is not a number",
                       CLIP_MAX_VOCAB - 1);
            goto done;
        }
        if ((int64_t)it->valuedouble > max_id) max_id = (int64_t)it->valuedouble;
        count++;
    }
    if (count == 0) { mmp__error(MMP_ERR_FORMAT, "%s: empty vocabulary", path); goto done; }
    t->n_vocab = (int32_t)(max_id + 1);
    t->text = mmp__calloc((size_t)t->n_vocab, sizeof *t->text);
    t->text_len = mmp__calloc((size_t)t->n_vocab, sizeof *t->text_len);
    if (!t->text || !t->text_len || !map_init(&t->vocab, (size_t)count)) goto done;
    cJSON_ArrayForEach(it, root) {
        int32_t id = (int32_t)it->valuedouble;
        size_t n = strlen(it->string);
        if (t->text[id]) {
            mmp__error(MMP_ERR_FORMAT, "%s: id %d is given to both '%s' and '%s'", path, id, t->text[id], it->string);
            goto done;
        }
        uint32_t pos;
        if (map_find(&t->vocab, t->text, t->text_len, it->string, n, &pos) >= 0) {
            mmp__error(MMP_ERR_FORMAT, "%s: token '%s' appears twice", path, it->string);
            goto done;
        }
        if (!(t->text[id] = strndup_(it->string, n))) goto done;
        t->text_len[id] = (uint32_t)n;
        t->vocab.slot[pos] = id;
    }
    ok = true;
done:
    cJSON_Delete(root);
    return ok;
}

static bool load_merges(mmp_clip_tokenizer *t, const char *path) {
    size_t len = 0;
    char *txt = read_all(path, &len, 256u << 20);
    if (!txt) return false;
    bool ok = false;
    /* .strip() then lines; the first line (the "#version: 0.2" header) is skipped */
    size_t b = 0, e = len;
    while (b < e && (txt[b] == ' ' || txt[b] == '\n' || txt[b] == '\r' || txt[b] == '\t')) b++;
    while (e > b && (txt[e - 1] == ' ' || txt[e - 1] == '\n' || txt[e - 1] == '\r' || txt[e - 1] == '\t')) e--;
    size_t n_lines = 0;
    for (size_t i = b; i < e; i++) n_lines += txt[i] == '\n';
    n_lines += e > b;
    size_t cap = n_lines > 1 ? n_lines - 1 : 0;
    if (cap > CLIP_MAX_MERGES) cap = CLIP_MAX_MERGES;
    t->merge = mmp__calloc(cap ? cap : 1, sizeof *t->merge);
    t->merge_len = mmp__calloc(cap ? cap : 1, sizeof *t->merge_len);
    if (!t->merge || !t->merge_len || !map_init(&t->merges, cap)) goto done;
    size_t line_no = 0;
    for (size_t p = b; p < e && (size_t)t->n_merges < cap;) {
        size_t q = p;
        while (q < e && txt[q] != '\n') q++;
        line_no++;
        if (line_no > 1) {
            /* tuple(line.split()): exactly two parts expected */
            const char *s = txt + p;
            size_t n = q - p;
            if (n && s[n - 1] == '\r') n--;
            size_t a0 = 0;
            while (a0 < n && (s[a0] == ' ' || s[a0] == '\t')) a0++;
            size_t a1 = a0;
            while (a1 < n && s[a1] != ' ' && s[a1] != '\t') a1++;
            size_t b0 = a1;
            while (b0 < n && (s[b0] == ' ' || s[b0] == '\t')) b0++;
            size_t b1 = b0;
            while (b1 < n && s[b1] != ' ' && s[b1] != '\t') b1++;
            size_t r = b1;
            while (r < n && (s[r] == ' ' || s[r] == '\t')) r++;
            if (a1 == a0) {
                /* an empty line: tuple("".split()) takes a rank but matches no pair */
                t->merge[t->n_merges] = NULL; t->merge_len[t->n_merges] = UINT32_MAX;
                t->n_merges++;
                p = q + 1;
                continue;
            }
            if (b1 == b0 || r != n) {
                mmp__error(MMP_ERR_FORMAT, "%s: line %zu is not a merge 'left right': '%.*s'", path, line_no,
                           (int)MMP_MIN(n, (size_t)80), s);
                goto done;
            }
            size_t ml = (a1 - a0) + 1 + (b1 - b0);
            char *m = mmp__malloc(ml + 1);
            if (!m) goto done;
            memcpy(m, s + a0, a1 - a0);
            m[a1 - a0] = ' ';
            memcpy(m + (a1 - a0) + 1, s + b0, b1 - b0);
            m[ml] = 0;
            uint32_t pos;
            if (map_find(&t->merges, t->merge, t->merge_len, m, ml, &pos) >= 0) {
                /* dict(zip(merges, range(...))): a repeated pair keeps its LAST rank */
                int32_t old = map_find(&t->merges, t->merge, t->merge_len, m, ml, NULL);
                free(t->merge[old]);
                t->merge[old] = NULL; t->merge_len[old] = UINT32_MAX;
                t->merge[t->n_merges] = m; t->merge_len[t->n_merges] = (uint32_t)ml;
                /* re-point the slot that held `old` */
                uint32_t h = (uint32_t)mmp__hash_bytes(MMP__HASH_SEED, m, ml) & t->merges.mask;
                while (t->merges.slot[h] != old) h = (h + 1) & t->merges.mask;
                t->merges.slot[h] = t->n_merges;
            } else {
                t->merge[t->n_merges] = m; t->merge_len[t->n_merges] = (uint32_t)ml;
                t->merges.slot[pos] = t->n_merges;
            }
            t->n_merges++;
        }
        p = q + 1;
    }
    ok = true;
done:
    free(txt);
    return ok;
}

mmp_clip_tokenizer *mmp_clip_tokenizer_from_files(const char *vocab_json, const char *merges_txt,
                                                  const char *tokenizer_config_json, const char *special_tokens_map_json) {
    if (!vocab_json || !merges_txt)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_clip_tokenizer_from_files: vocab.json and merges.txt paths are required");
    mmp_clip_tokenizer *t = mmp__calloc(1, sizeof *t);
    cJSON *cfg = NULL, *stm = NULL;
    if (!t) return NULL;
    if (!(t->source = mmp__strdup(vocab_json))) goto fail;
    if (!load_vocab(t, vocab_json) || !load_merges(t, merges_txt)) goto fail;
    if (tokenizer_config_json && !(cfg = parse_json_file(tokenizer_config_json, 64u << 20))) goto fail;
    if (special_tokens_map_json && !(stm = parse_json_file(special_tokens_map_json, 64u << 20))) goto fail;

    /* CLIPTokenizer defaults: bos <|startoftext|>, eos = unk = pad = <|endoftext|> */
    int64_t bos = find_token(t, "<|startoftext|>", 15), eos = find_token(t, "<|endoftext|>", 13);
    int64_t unk = eos, pad = eos;
    struct { const char *key; int64_t *id; } sp[] = { { "bos_token", &bos }, { "eos_token", &eos },
                                                       { "unk_token", &unk }, { "pad_token", &pad } };
    /* special_tokens_map.json first, tokenizer_config.json overrides (as from_pretrained) */
    for (int f = 0; f < 2; f++) {
        const cJSON *j = f == 0 ? stm : cfg;
        const char *file = f == 0 ? special_tokens_map_json : tokenizer_config_json;
        if (!j) continue;
        for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) {
            int64_t id = special_id(t, j, sp[k].key, file);
            if (id == -3) goto fail;
            if (id >= -1) *sp[k].id = id;
        }
    }
    if (bos < 0 || eos < 0) {
        mmp__error(MMP_ERR_FORMAT, "%s: no %s token (<|startoftext|> / <|endoftext|> or the configured one) in the vocabulary",
                   vocab_json, bos < 0 ? "bos" : "eos");
        goto fail;
    }
    t->bos = (mmp_token)bos; t->eos = (mmp_token)eos;
    t->unk = (mmp_token)unk; t->pad = (mmp_token)(pad >= 0 ? pad : eos);
    t->model_max_length = 77;
    const cJSON *ml = cJSON_IsObject(cfg) ? cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length") : NULL;
    if (cJSON_IsNumber(ml)) {
        /* transformers writes a huge sentinel (1e30) when no length is known: keep 77 then */
        if (ml->valuedouble >= 2 && ml->valuedouble <= 1e6) t->model_max_length = (int32_t)ml->valuedouble;
        else if (ml->valuedouble < 2) {
            mmp__error(MMP_ERR_FORMAT, "%s: model_max_length %g is too small (need room for bos and eos)",
                       tokenizer_config_json, ml->valuedouble);
            goto fail;
        }
    }
    cJSON_Delete(cfg);
    cJSON_Delete(stm);
    return t;
fail:
    cJSON_Delete(cfg);
    cJSON_Delete(stm);
    mmp_clip_tokenizer_free(t);
    return NULL;
}

mmp_clip_tokenizer *mmp_clip_tokenizer_load(const char *path) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_clip_tokenizer_load: NULL path");
    char *dir = NULL, *v = NULL, *m = NULL, *c = NULL, *s = NULL;
    mmp_clip_tokenizer *t = NULL;
    /* a pipeline root (model_index.json) -> its tokenizer/ folder */
    char *sub = mmp__path_join(path, "tokenizer");
    if (!sub) return NULL;
    if (mmp__is_dir(sub)) dir = sub;
    else { free(sub); dir = mmp__strdup(path); }
    if (!dir) return NULL;
    if (!mmp__is_dir(dir)) { mmp__error(MMP_ERR_IO, "%s: not a folder (expected a tokenizer folder with vocab.json and merges.txt)", path); goto done; }
    if (!(v = mmp__path_join(dir, "vocab.json")) || !(m = mmp__path_join(dir, "merges.txt")) ||
        !(c = mmp__path_join(dir, "tokenizer_config.json")) || !(s = mmp__path_join(dir, "special_tokens_map.json")))
        goto done;
    if (!mmp__is_file(v) || !mmp__is_file(m)) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s: no CLIP tokenizer here (missing %s)", dir, !mmp__is_file(v) ? "vocab.json" : "merges.txt");
        goto done;
    }
    t = mmp_clip_tokenizer_from_files(v, m, mmp__is_file(c) ? c : NULL, mmp__is_file(s) ? s : NULL);
done:
    free(dir); free(v); free(m); free(c); free(s);
    return t;
}

/* ---------------- properties ---------------- */

int32_t mmp_clip_tokenizer_n_vocab(const mmp_clip_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t mmp_clip_tokenizer_n_merges(const mmp_clip_tokenizer *t) { return t ? t->n_merges : 0; }
mmp_token mmp_clip_tokenizer_bos(const mmp_clip_tokenizer *t) { return t ? t->bos : MMP_TOKEN_NULL; }
mmp_token mmp_clip_tokenizer_eos(const mmp_clip_tokenizer *t) { return t ? t->eos : MMP_TOKEN_NULL; }
mmp_token mmp_clip_tokenizer_pad(const mmp_clip_tokenizer *t) { return t ? t->pad : MMP_TOKEN_NULL; }
mmp_token mmp_clip_tokenizer_unk(const mmp_clip_tokenizer *t) { return t ? t->unk : MMP_TOKEN_NULL; }
int32_t mmp_clip_tokenizer_max_length(const mmp_clip_tokenizer *t) { return t ? t->model_max_length : 0; }
const char *mmp_clip_tokenizer_token_text(const mmp_clip_tokenizer *t, mmp_token id) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->text[id];
}
mmp_token mmp_clip_tokenizer_find(const mmp_clip_tokenizer *t, const char *text) {
    if (!t || !text) return MMP_TOKEN_NULL;
    return find_token(t, text, strlen(text));
}

/* ---------------- BPE on one piece ---------------- */

typedef struct { int prev, next; uint32_t start, n; } sym_t;
typedef struct { int left, right; int32_t rank; uint32_t ln, rn; } pair_t;
typedef struct {
    mmp__buf word;      /* byte-encoded piece + "</w>" */
    mmp__buf key;       /* scratch "left right" */
    sym_t *sym; size_t sym_cap;
    pair_t *heap; size_t heap_n, heap_cap;
} work_t;

static inline bool pair_before(const pair_t *a, const pair_t *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool heap_push(work_t *w, pair_t p) {
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap * 2 : 64;
        pair_t *np = realloc(w->heap, cap * sizeof *np);
        if (!np) { mmp__error(MMP_ERR_NOMEM, "clip tokenizer: out of memory"); return false; }
        w->heap = np; w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0 && pair_before(&p, &w->heap[(i - 1) / 2])) { w->heap[i] = w->heap[(i - 1) / 2]; i = (i - 1) / 2; }
    w->heap[i] = p;
    return true;
}

static pair_t heap_pop(work_t *w) {
    pair_t top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const pair_t *bp = &last;
        if (l < w->heap_n && pair_before(&w->heap[l], bp)) { best = l; bp = &w->heap[l]; }
        if (r < w->heap_n && pair_before(&w->heap[r], bp)) best = r;
        if (best == i) break;
        w->heap[i] = w->heap[best];
        i = best;
    }
    if (w->heap_n) w->heap[i] = last;
    return top;
}

static bool add_pair(const mmp_clip_tokenizer *t, work_t *w, int left, int right) {
    if (left < 0 || right < 0) return true;
    const sym_t *l = &w->sym[left], *r = &w->sym[right];
    w->key.n = 0;
    if (!mmp__buf_put(&w->key, w->word.p + l->start, l->n) || !mmp__buf_put(&w->key, " ", 1) ||
        !mmp__buf_put(&w->key, w->word.p + r->start, r->n))
        return false;
    int32_t rank = map_find(&t->merges, t->merge, t->merge_len, w->key.p, w->key.n, NULL);
    if (rank < 0) return true;
    pair_t p = { left, right, rank, l->n, r->n };
    return heap_push(w, p);
}

/* w->word holds the byte-encoded piece followed by "</w>" (suffix_len bytes glued to the last
 * character) */
static enum mmp_status bpe_piece(const mmp_clip_tokenizer *t, work_t *w, mmp__ids *out) {
    const char *p = w->word.p;
    size_t len = w->word.n, body = len - 4;
    if (body == 0) return MMP_OK;
    if (len > INT32_MAX / 2) return mmp__error(MMP_ERR_LIMIT, "clip tokenizer: word of %zu bytes is too long", len);
    if (len > w->sym_cap) {
        sym_t *s = realloc(w->sym, len * sizeof *s);
        if (!s) return mmp__error(MMP_ERR_NOMEM, "clip tokenizer: out of memory");
        w->sym = s; w->sym_cap = len;
    }
    sym_t *s = w->sym;
    int n = 0;
    for (size_t off = 0; off < body;) {
        size_t cl = mmp__utf8_len((uint8_t)p[off]);
        if (cl > body - off) cl = body - off;
        s[n].start = (uint32_t)off; s[n].n = (uint32_t)cl; s[n].prev = n - 1;
        off += cl;
        s[n].next = off == body ? -1 : n + 1;
        n++;
    }
    s[n - 1].n += 4; /* the last character carries "</w>" */
    w->heap_n = 0;
    for (int i = 1; i < n; i++)
        if (!add_pair(t, w, i - 1, i)) return MMP_ERR_NOMEM;
    while (w->heap_n) {
        pair_t b = heap_pop(w);
        sym_t *l = &s[b.left], *r = &s[b.right];
        if (l->n == 0 || r->n == 0 || l->n != b.ln || r->n != b.rn || l->next != b.right) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        if (!add_pair(t, w, l->prev, b.left) || !add_pair(t, w, b.left, l->next)) return MMP_ERR_NOMEM;
    }
    for (int i = 0; i != -1; i = s[i].next) {
        if (s[i].n == 0) continue;
        mmp_token id = find_token(t, p + s[i].start, s[i].n);
        /* self.encoder.get(token, self.encoder.get(self.unk_token)) */
        if (id < 0) id = t->unk;
        if (id >= 0 && !mmp__ids_push(out, id)) return MMP_ERR_NOMEM;
    }
    return MMP_OK;
}

static bool is_cjk(uint32_t c) { /* BasicTokenizer._is_chinese_char */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* step 1 on one fragment: cleaned, lower-cased code points with single spaces between words
 * (leading/trailing spaces possible; the regex skips them) */
static size_t basic_clean(const uint32_t *in, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        uint16_t f = mmp__ucpt_flags(c);
        bool tnr = c == '\t' || c == '\n' || c == '\r';
        /* _clean_text drops control characters first (so \f, \v, U+0085 vanish rather than
         * separate words), then maps whitespace to ' '; whitespace_tokenize's str.split()
         * also breaks at the remaining White_Space characters (U+2028 ...) */
        if (!tnr && (c == 0 || c == 0xFFFD || (f & MMP__U_CONTROL))) continue;
        bool ws = tnr || c == ' ' || (f & (MMP__U_WHITESPACE | MMP__U_SEPARATOR));
        if (ws || is_cjk(c)) {
            if (k && out[k - 1] != ' ') out[k++] = ' ';
            if (ws) continue;
            out[k++] = c;
            out[k++] = ' ';
            continue;
        }
        /* str.lower(): the one unconditional multi-character lowercase mapping
         * (SpecialCasing.txt) is U+0130 -> "i" U+0307 */
        if (c == 0x130) { out[k++] = 'i'; out[k++] = 0x307; continue; }
        out[k++] = mmp__utolower(c);
    }
    return k;
}

static bool has_prefix(const uint32_t *c, size_t n, const char *ascii) {
    size_t m = strlen(ascii);
    if (m > n) return false;
    for (size_t i = 0; i < m; i++) if (c[i] != (uint32_t)(unsigned char)ascii[i]) return false;
    return true;
}

/* step 2: length (in code points) of the regex match starting at c[0], 0 if none (skip c[0]) */
static size_t clip_match(const uint32_t *c, size_t n) {
    static const char *const lit[] = { "<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d" };
    for (size_t i = 0; i < sizeof lit / sizeof lit[0]; i++)
        if (has_prefix(c, n, lit[i])) return strlen(lit[i]);
    uint16_t f = mmp__ucpt_flags(c[0]);
    if (f & MMP__U_LETTER) {
        size_t k = 1;
        while (k < n && (mmp__ucpt_flags(c[k]) & MMP__U_LETTER)) k++;
        return k;
    }
    if (f & MMP__U_NUMBER) return 1;
    if (f & MMP__U_WHITESPACE) return 0;
    size_t k = 1;
    while (k < n) {
        uint16_t g = mmp__ucpt_flags(c[k]);
        if (g & (MMP__U_LETTER | MMP__U_NUMBER | MMP__U_WHITESPACE)) break;
        k++;
    }
    return k;
}

static enum mmp_status encode_text(const mmp_clip_tokenizer *t, const char *text, size_t len, work_t *w, mmp__ids *out) {
    if (len == 0) return MMP_OK;
    enum mmp_status st = MMP_OK;
    uint32_t *cpts = mmp__malloc(len * sizeof *cpts);
    uint32_t *clean = mmp__malloc(3 * len * sizeof *clean + 4); /* a CJK char may gain two spaces */
    if (!cpts || !clean) { st = MMP_ERR_NOMEM; goto done; }
    size_t n = mmp__utf8_decode(text, len, cpts, NULL);
    size_t m = basic_clean(cpts, n, clean);
    const char *lit;
    for (size_t i = 0; i < m;) {
        size_t k = clip_match(clean + i, m - i);
        if (k == 0) { i++; continue; }
        w->word.n = 0;
        for (size_t j = i; j < i + k; j++) {
            char u[4];
            int nb = mmp__utf8_encode(clean[j], u);
            for (int q = 0; q < nb; q++) {
                char e[4];
                int ne = mmp__utf8_encode(mmp__byte_to_cpt((uint8_t)u[q]), e);
                if (!mmp__buf_put(&w->word, e, (size_t)ne)) { st = MMP_ERR_NOMEM; goto done; }
            }
        }
        if (k == 15 && has_prefix(clean + i, k, "<|startoftext|>")) lit = "<|startoftext|>";
        else if (k == 13 && has_prefix(clean + i, k, "<|endoftext|>")) lit = "<|endoftext|>";
        else lit = NULL;
        if (lit) {
            /* self.cache maps these two pieces to themselves: their vocab ids, no "</w>" */
            mmp_token id = find_token(t, lit, strlen(lit));
            if (id < 0) id = t->unk;
            if (id >= 0 && !mmp__ids_push(out, id)) { st = MMP_ERR_NOMEM; goto done; }
            i += k;
            continue;
        }
        if (!mmp__buf_put(&w->word, "</w>", 4)) { st = MMP_ERR_NOMEM; goto done; }
        if ((st = bpe_piece(t, w, out)) != MMP_OK) goto done;
        i += k;
    }
done:
    free(cpts);
    free(clean);
    return st;
}

/* step 0: cut out the texts of bos / eos / unk, encode the rest */
static enum mmp_status encode_all(const mmp_clip_tokenizer *t, const char *text, size_t len, mmp__ids *out) {
    mmp_token sp[3] = { t->bos, t->eos, t->unk };
    work_t w = {0};
    enum mmp_status st = MMP_OK;
    size_t start = 0, i = 0;
    while (i < len && st == MMP_OK) {
        mmp_token hit = MMP_TOKEN_NULL;
        size_t hit_len = 0;
        for (int k = 0; k < 3; k++) {
            if (sp[k] < 0 || !t->text[sp[k]]) continue;
            size_t l = t->text_len[sp[k]];
            if (l && l <= len - i && l > hit_len && !memcmp(text + i, t->text[sp[k]], l)) { hit = sp[k]; hit_len = l; }
        }
        if (hit == MMP_TOKEN_NULL) { i++; continue; }
        st = encode_text(t, text + start, i - start, &w, out);
        if (st == MMP_OK && !mmp__ids_push(out, hit)) st = MMP_ERR_NOMEM;
        i += hit_len;
        start = i;
    }
    if (st == MMP_OK) st = encode_text(t, text + start, len - start, &w, out);
    free(w.word.p); free(w.key.p); free(w.sym); free(w.heap);
    if (st == MMP_ERR_NOMEM && !*mmp_last_error()) mmp__error(MMP_ERR_NOMEM, "clip tokenizer: out of memory");
    return st;
}

enum mmp_status mmp_clip_tokenizer_encode(const mmp_clip_tokenizer *t, const char *text, size_t len,
                                          mmp_token **out, size_t *n_out) {
    if (!out || !n_out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_clip_tokenizer_encode: NULL output");
    *out = NULL; *n_out = 0;
    if (!t) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_clip_tokenizer_encode: NULL tokenizer");
    if (!text && len) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_clip_tokenizer_encode: NULL text with length %zu", len);
    mmp__ids ids = {0};
    enum mmp_status st = encode_all(t, text, len, &ids);
    if (st != MMP_OK) { free(ids.p); return st; }
    *out = ids.p; *n_out = ids.n;
    return MMP_OK;
}

enum mmp_status mmp_clip_tokenizer_encode_padded(const mmp_clip_tokenizer *t, const char *text, size_t len,
                                                 int32_t max_length, mmp_token *out, int32_t *n_used) {
    if (!t || !out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_clip_tokenizer_encode_padded: NULL %s", t ? "output" : "tokenizer");
    if (max_length == 0) max_length = t->model_max_length;
    if (max_length < 2)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_clip_tokenizer_encode_padded: max_length %d leaves no room for bos and eos",
                          (int)max_length);
    mmp_token *ids = NULL;
    size_t n = 0;
    enum mmp_status st = mmp_clip_tokenizer_encode(t, text, len, &ids, &n);
    if (st != MMP_OK) return st;
    /* truncation=True with add_special_tokens: keep max_length - 2 text tokens */
    size_t keep = MMP_MIN(n, (size_t)max_length - 2);
    out[0] = t->bos;
    if (keep) memcpy(out + 1, ids, keep * sizeof *ids);
    out[keep + 1] = t->eos;
    for (size_t i = keep + 2; i < (size_t)max_length; i++) out[i] = t->pad;
    if (n_used) *n_used = (int32_t)(keep + 2);
    free(ids);
    return MMP_OK;
}
