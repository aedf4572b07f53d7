/* Tokenizer tests against llama.cpp's reference outputs.
 *
 * tests/data/vocab/ggml-vocab-*.gguf{,.inp,.out} are llama.cpp's models/ test files: the .inp
 * holds test strings separated by "\n__ggml_vocab_test__\n", the .out one line of token ids
 * per string. llama.cpp's test-tokenizer-0 tokenizes them with add_special = false and
 * parse_special = false; so do we, and every string must give exactly the same ids. */
#include "testutil.h"
#include "mmpipe/tokenizer.h"
#include "mmpipe/gguf.h"
#include "mmpipe/safetensors.h"
#include <cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char **inp;
    size_t *inp_len;
    mmp_token **ids;
    size_t *n_ids;
    size_t n;
} fixture;

static void fixture_free(fixture *f) {
    for (size_t i = 0; i < f->n; i++) { free(f->inp[i]); free(f->ids[i]); }
    free(f->inp); free(f->inp_len); free(f->ids); free(f->n_ids);
    memset(f, 0, sizeof *f);
}

/* the reading rules of llama.cpp's tests/test-tokenizer-0.cpp */
static bool fixture_load(const char *name, fixture *f) {
    char p[512];
    size_t li = 0, lo = 0;
    memset(f, 0, sizeof *f);
    snprintf(p, sizeof p, "vocab/%s.gguf.inp", name);
    char *inp = mmpt_read_file(mmpt_data(p), &li);
    snprintf(p, sizeof p, "vocab/%s.gguf.out", name);
    char *out = mmpt_read_file(mmpt_data(p), &lo);
    if (!inp || !out) { free(inp); free(out); return false; }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    size_t cap = 16;
    f->inp = malloc(cap * sizeof *f->inp);
    f->inp_len = malloc(cap * sizeof *f->inp_len);
    size_t pos = 0;
    while (pos < li) {
        char *nx = memmem(inp + pos, li - pos, sep, sl);
        size_t end = nx ? (size_t)(nx - inp) : li;
        if (f->n == cap) {
            cap *= 2;
            f->inp = realloc(f->inp, cap * sizeof *f->inp);
            f->inp_len = realloc(f->inp_len, cap * sizeof *f->inp_len);
        }
        f->inp[f->n] = malloc(end - pos + 1);
        memcpy(f->inp[f->n], inp + pos, end - pos);
        f->inp[f->n][end - pos] = 0;
        f->inp_len[f->n] = end - pos;
        f->n++;
        if (!nx) break;
        pos = end + sl;
    }
    f->ids = calloc(f->n, sizeof *f->ids);
    f->n_ids = calloc(f->n, sizeof *f->n_ids);
    size_t line = 0;
    char *s = out, *e = out + lo;
    while (s < e) {
        char *nl = memchr(s, '\n', (size_t)(e - s));
        char *le = nl ? nl : e;
        if (line < f->n) {
            f->ids[line] = malloc(((size_t)(le - s) / 2 + 1) * sizeof(mmp_token));
            char *q = s;
            while (q < le) {
                while (q < le && (*q == ' ' || *q == '\r' || *q == '\t')) q++;
                if (q >= le) break;
                f->ids[line][f->n_ids[line]++] = (mmp_token)strtol(q, &q, 10);
            }
        }
        line++;
        s = le + 1;
    }
    free(inp);
    free(out);
    if (line != f->n) {
        print_error("%s: %zu inputs but %zu output lines\n", name, f->n, line);
        fixture_free(f);
        return false;
    }
    return true;
}

static void print_ids(const char *what, const mmp_token *ids, size_t n) {
    print_message("    %s:", what);
    for (size_t i = 0; i < n; i++) print_message(" %d", (int)ids[i]);
    print_message("\n");
}

/* does llama.cpp's clean_spaces pass change this text? */
static bool clean_spaces_touches(const char *s, size_t n) {
    for (size_t i = 1; i < n; i++) {
        if (s[i - 1] != ' ') continue;
        char c = s[i];
        if (c == '?' || c == '!' || c == '.' || c == ',' || c == '\'') return true;
    }
    return false;
}

static void run_fixture(const char *name) {
    fixture f;
    if (!fixture_load(name, &f)) fail_msg("cannot read the fixture %s", name);
    char p[512];
    snprintf(p, sizeof p, "vocab/%s.gguf", name);
    mmp_tokenizer *t = mmp_tokenizer_load_gguf(mmpt_data(p));
    if (!t) fail_msg("%s: %s", name, mmp_last_error());
    size_t ok = 0, rt_ok = 0, rt_n = 0;
    for (size_t i = 0; i < f.n; i++) {
        mmp_token *ids = NULL;
        size_t n = 0;
        assert_int_equal(mmp_tokenizer_encode(t, f.inp[i], f.inp_len[i], false, false, &ids, &n), MMP_OK);
        bool same = n == f.n_ids[i] && (n == 0 || memcmp(ids, f.ids[i], n * sizeof *ids) == 0);
        if (same) ok++;
        else {
            print_message("  %s: string %zu '%s' differs\n", name, i, f.inp[i]);
            print_ids("expected", f.ids[i], f.n_ids[i]);
            print_ids("got     ", ids, n);
        }
        /* decode round trip where the tokenizer is lossless: SPM and byte-level BPE (BERT
         * lower-cases and drops accents) */
        if (mmp_tokenizer_kind(t) != MMP_TOKENIZER_WPM) {
            char *txt = NULL;
            size_t tl = 0;
            assert_int_equal(mmp_tokenizer_decode(t, f.ids[i], f.n_ids[i], false, false, &txt, &tl), MMP_OK);
            bool cleaned = mmp_tokenizer_kind(t) == MMP_TOKENIZER_BPE && clean_spaces_touches(f.inp[i], f.inp_len[i]);
            if (!cleaned) {
                rt_n++;
                if (tl == f.inp_len[i] && memcmp(txt, f.inp[i], tl) == 0) rt_ok++;
                else print_message("  %s: decode of string %zu gives '%s' instead of '%s'\n", name, i, txt, f.inp[i]);
            }
            /* the raw pieces always concatenate back to the text */
            {
                size_t cap = f.inp_len[i] + 64, used = 0;
                char *cat = malloc(cap);
                for (size_t k = 0; k < f.n_ids[i]; k++) {
                    int64_t pl = mmp_tokenizer_token_to_piece(t, f.ids[i][k], false, NULL, 0);
                    assert_true(pl >= 0);
                    if (used + (size_t)pl > cap) { cap = (used + (size_t)pl) * 2; cat = realloc(cat, cap); }
                    assert_int_equal(mmp_tokenizer_token_to_piece(t, f.ids[i][k], false, cat + used, (size_t)pl), pl);
                    used += (size_t)pl;
                }
                const char *want = f.inp[i];
                size_t wl = f.inp_len[i];
                const char *got = cat;
                if (mmp_tokenizer_kind(t) == MMP_TOKENIZER_SPM && used > 0 && got[0] == ' ') { got++; used--; }
                if (!(used == wl && memcmp(got, want, wl) == 0))
                    fail_msg("%s: pieces of string %zu do not concatenate back to it", name, i);
                free(cat);
            }
            free(txt);
        }
        free(ids);
    }
    print_message("%s: %zu/%zu strings exact; decode round trip %zu/%zu\n", name, ok, f.n, rt_ok, rt_n);
    assert_int_equal(ok, f.n);
    assert_int_equal(rt_ok, rt_n);
    mmp_tokenizer_free(t);
    fixture_free(&f);
}

static void test_fixture_gpt2(void **state) { (void)state; run_fixture("ggml-vocab-gpt-2"); }
static void test_fixture_starcoder(void **state) { (void)state; run_fixture("ggml-vocab-starcoder"); }
static void test_fixture_falcon(void **state) { (void)state; run_fixture("ggml-vocab-falcon"); }
static void test_fixture_llama_spm(void **state) { (void)state; run_fixture("ggml-vocab-llama-spm"); }
static void test_fixture_phi3(void **state) { (void)state; run_fixture("ggml-vocab-phi-3"); }
static void test_fixture_bert_bge(void **state) { (void)state; run_fixture("ggml-vocab-bert-bge"); }

/* ---------------- the 32000-piece Llama vocab inside a model file ---------------- */

static void test_tiny_mixtral_prompt(void **state) {
    (void)state;
    /* the backbone tests' copy of ../shared/goldens/gguf (same vocab as ggml-vocab-llama-spm) */
    mmp_tokenizer *t = mmp_tokenizer_load_gguf(mmpt_data("llm/gguf/tiny-mixtral-f16.gguf"));
    if (!t) fail_msg("%s", mmp_last_error());
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("llm/gguf/tiny-mixtral-f16.io.safetensors"));
    if (!st) fail_msg("%s", mmp_last_error());
    const char *prompt = mmp_safetensors_meta(st, "prompt");
    assert_non_null(prompt);
    int64_t n_ref64 = 0;
    mmp_token *ref = mmpt_st_ids(st, "prompt_tokens", &n_ref64);
    size_t n_ref = (size_t)n_ref64, n = 0;
    mmp_token *ids = NULL;
    assert_int_equal(mmp_tokenizer_encode(t, prompt, strlen(prompt), true, false, &ids, &n), MMP_OK);
    assert_int_equal(n, n_ref);
    assert_memory_equal(ids, ref, n * sizeof *ids);
    assert_int_equal(mmp_tokenizer_n_vocab(t), 32000);
    assert_int_equal(mmp_tokenizer_bos(t), 1);
    assert_int_equal(mmp_tokenizer_eos(t), 2);
    assert_true(mmp_tokenizer_is_eog(t, 2));
    char *txt = NULL;
    assert_int_equal(mmp_tokenizer_decode(t, ids, n, true, false, &txt, NULL), MMP_OK);
    /* llama.cpp keeps the SentencePiece space when it drops the BOS (remove_special) */
    assert_string_equal(txt + (txt[0] == ' '), prompt);
    free(txt);
    assert_int_equal(mmp_tokenizer_decode(t, ids + 1, n - 1, false, false, &txt, NULL), MMP_OK);
    assert_string_equal(txt, prompt);
    free(txt);
    free(ids);
    free(ref);
    mmp_safetensors_free(st);
    mmp_tokenizer_free(t);
}

/* ---------------- llama2.c tokenizer.bin ---------------- */

static void test_llama2c_stories(void **state) {
    (void)state;
    mmp_tokenizer *t = mmp_tokenizer_from_llama2c(mmpt_data("vocab/tok512.bin"), 512);
    if (!t) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_tokenizer_n_vocab(t), 512);
    assert_int_equal(mmp_tokenizer_kind(t), MMP_TOKENIZER_SPM);
    assert_int_equal(mmp_tokenizer_bos(t), 1);
    /* vocab_size 0: read to the end of the file */
    mmp_tokenizer *t0 = mmp_tokenizer_from_llama2c(mmpt_data("vocab/tok512.bin"), 0);
    assert_non_null(t0);
    assert_int_equal(mmp_tokenizer_n_vocab(t0), 512);
    mmp_tokenizer_free(t0);
    /* greedy ids of stories260K (HF reference run) decode to what llama2.c's run.c printed */
    mmp_safetensors *st = mmp_safetensors_open(mmpt_data("llm/stories260K_hf/io.safetensors"));
    if (!st) fail_msg("%s", mmp_last_error());
    int64_t n64 = 0;
    size_t elen = 0;
    mmp_token *greedy = mmpt_st_ids(st, "greedy_ids", &n64);
    size_t n = (size_t)n64;
    char *expect = mmpt_read_file(mmpt_data("vocab/stories260K_expected_stdout.txt"), &elen);
    assert_non_null(expect);
    char *txt = NULL;
    size_t tl = 0;
    assert_int_equal(mmp_tokenizer_decode(t, greedy, n, false, false, &txt, &tl), MMP_OK);
    assert_true(tl <= elen);
    assert_int_equal(tl, 460); /* case.json: the first 460 bytes */
    assert_memory_equal(txt, expect, tl);
    /* and the text encodes back to ids that decode to it */
    mmp_token *ids = NULL;
    size_t ni = 0;
    assert_int_equal(mmp_tokenizer_encode(t, expect, elen, true, false, &ids, &ni), MMP_OK);
    assert_int_equal(ids[0], 1);
    char *txt2 = NULL;
    assert_int_equal(mmp_tokenizer_decode(t, ids + 1, ni - 1, false, false, &txt2, &tl), MMP_OK);
    assert_int_equal(tl, elen);
    assert_memory_equal(txt2, expect, elen);
    free(txt2); free(ids); free(txt); free(expect); free(greedy);
    mmp_safetensors_free(st);
    mmp_tokenizer_free(t);
}

/* ---------------- Hugging Face tokenizer.json ---------------- */

/* Write a tokenizer.json built from a GGUF fixture vocab, load it with the HF loader and check
 * the fixture strings give the same ids. byte-level BPE (gpt-2) and WordPiece (bert-bge). */
static char *hf_json_from_gguf(const char *gguf, bool wordpiece) {
    mmp_gguf *g = mmp_gguf_open(mmpt_data(gguf));
    if (!g) fail_msg("%s", mmp_last_error());
    const mmp_gguf_value *tv, *yv, *mv = NULL;
    assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.tokens", &tv), MMP_OK);
    assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.token_type", &yv), MMP_OK);
    cJSON *root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (uint64_t i = 0; i < mmp_gguf_arr_n(tv); i++) {
        const char *s;
        size_t l;
        int64_t ty;
        assert_int_equal(mmp_gguf_arr_str(tv, i, &s, &l), MMP_OK);
        assert_int_equal(mmp_gguf_arr_i64(yv, i, &ty), MMP_OK);
        char *x = malloc(l + 3);
        if (wordpiece && l >= 3 && !memcmp(s, "\xE2\x96\x81", 3)) { memcpy(x, s + 3, l - 3); x[l - 3] = 0; }
        else if (wordpiece && !(s[0] == '[' && s[l - 1] == ']')) { x[0] = x[1] = '#'; memcpy(x + 2, s, l); x[l + 2] = 0; }
        else { memcpy(x, s, l); x[l] = 0; }
        cJSON_AddNumberToObject(vocab, x, (double)i);
        if (ty == 3) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", x);
            cJSON_AddBoolToObject(a, "special", 1);
            cJSON_AddItemToArray(added, a);
        }
        free(x);
    }
    if (wordpiece) {
        cJSON_AddStringToObject(model, "type", "WordPiece");
        cJSON_AddStringToObject(model, "unk_token", "[UNK]");
        cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
        cJSON_AddStringToObject(norm, "type", "BertNormalizer");
        cJSON_AddBoolToObject(norm, "lowercase", 1);
    } else {
        assert_int_equal(mmp_gguf_get_arr(g, "tokenizer.ggml.merges", &mv), MMP_OK);
        cJSON_AddStringToObject(model, "type", "BPE");
        cJSON *merges = cJSON_AddArrayToObject(model, "merges");
        for (uint64_t i = 0; i < mmp_gguf_arr_n(mv); i++) {
            const char *s;
            size_t l;
            assert_int_equal(mmp_gguf_arr_str(mv, i, &s, &l), MMP_OK);
            char *x = strndup(s, l);
            cJSON_AddItemToArray(merges, cJSON_CreateString(x));
            free(x);
        }
        cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
        cJSON_AddStringToObject(pre, "type", "ByteLevel");
    }
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    mmp_gguf_free(g);
    char *path = mmpt_write_temp(txt, strlen(txt), ".json");
    free(txt);
    return path;
}

static void check_hf_against_fixture(const char *name, bool wordpiece) {
    char gg[256];
    snprintf(gg, sizeof gg, "vocab/%s.gguf", name);
    char *path = hf_json_from_gguf(gg, wordpiece);
    mmp_tokenizer *t = mmp_tokenizer_from_hf(path, NULL);
    if (!t) fail_msg("%s", mmp_last_error());
    fixture f;
    assert_true(fixture_load(name, &f));
    size_t ok = 0;
    for (size_t i = 0; i < f.n; i++) {
        mmp_token *ids = NULL;
        size_t n = 0;
        assert_int_equal(mmp_tokenizer_encode(t, f.inp[i], f.inp_len[i], false, false, &ids, &n), MMP_OK);
        if (n == f.n_ids[i] && (n == 0 || !memcmp(ids, f.ids[i], n * sizeof *ids))) ok++;
        else print_message("  HF %s: string %zu differs\n", name, i);
        free(ids);
    }
    print_message("HF tokenizer.json from %s: %zu/%zu strings exact\n", name, ok, f.n);
    assert_int_equal(ok, f.n);
    fixture_free(&f);
    mmp_tokenizer_free(t);
    remove(path);
    free(path);
}

static void test_hf_bpe(void **state) { (void)state; check_hf_against_fixture("ggml-vocab-gpt-2", false); }
static void test_hf_wordpiece(void **state) { (void)state; check_hf_against_fixture("ggml-vocab-bert-bge", true); }

static void test_hf_spm_style(void **state) {
    (void)state;
    /* A Llama-style tokenizer.json: BPE + byte_fallback, Prepend/Replace "▁" normaliser.
     * Tiny hand-made vocab, so expectations follow from the merge ranks. */
    static const char js[] =
        "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true},"
        "{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
        "\"pre_tokenizer\":null,"
        "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x0A>\":3,\"<0x21>\":4,"
        "\"\\u2581\":5,\"h\":6,\"i\":7,\"\\u2581h\":8,\"\\u2581hi\":9},\"merges\":[\"\\u2581 h\",\"\\u2581h i\"]}}";
    char *path = mmpt_write_temp(js, sizeof js - 1, ".json");
    mmp_tokenizer *t = mmp_tokenizer_from_hf(path, NULL);
    if (!t) fail_msg("%s", mmp_last_error());
    mmp_token *ids = NULL;
    size_t n = 0;
    assert_int_equal(mmp_tokenizer_encode(t, "hi hi!\n", 7, true, false, &ids, &n), MMP_OK);
    mmp_token want[] = { 1, 9, 9, 4, 3 };
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    char *txt = NULL;
    assert_int_equal(mmp_tokenizer_decode(t, ids + 1, n - 1, false, false, &txt, NULL), MMP_OK);
    assert_string_equal(txt, "hi hi!\n");
    free(txt);
    free(ids);
    mmp_tokenizer_free(t);
    remove(path);
    free(path);
}

/* ---------------- bad input ---------------- */

typedef struct {
    const char *model;          /* NULL: no tokenizer.ggml.model key */
    const char *pre;            /* NULL: no key */
    const char *const *tokens;  /* NULL: no key */
    int n_tokens;
    bool tokens_as_i32;
    int n_scores;               /* -1: no key */
    bool types_as_f32;
    const char *const *merges;  /* NULL: no key */
    int n_merges;
    int64_t bos;                /* -1: no key */
    int add_bos;                /* -1: no key */
} fake_vocab;

static mmp_tokenizer *load_fake(const fake_vocab *v, void **mem) {
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mmp_gguf_writer_add_str(w, "general.architecture", "llama"), MMP_OK);
    if (v->model) assert_int_equal(mmp_gguf_writer_add_str(w, "tokenizer.ggml.model", v->model), MMP_OK);
    if (v->pre) assert_int_equal(mmp_gguf_writer_add_str(w, "tokenizer.ggml.pre", v->pre), MMP_OK);
    if (v->tokens && !v->tokens_as_i32)
        assert_int_equal(mmp_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", v->tokens, (uint64_t)v->n_tokens), MMP_OK);
    if (v->tokens && v->tokens_as_i32) {
        int32_t x[4] = { 1, 2, 3, 4 };
        assert_int_equal(mmp_gguf_writer_add_arr(w, "tokenizer.ggml.tokens", MMP_GGUF_I32, x, 4), MMP_OK);
    }
    if (v->n_scores >= 0) {
        float sc[64] = { 0 };
        assert_int_equal(mmp_gguf_writer_add_arr(w, "tokenizer.ggml.scores", MMP_GGUF_F32, sc, (uint64_t)v->n_scores), MMP_OK);
    }
    if (v->types_as_f32) {
        float ty[64] = { 0 };
        assert_int_equal(mmp_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", MMP_GGUF_F32, ty, (uint64_t)v->n_tokens), MMP_OK);
    }
    if (v->merges) assert_int_equal(mmp_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", v->merges, (uint64_t)v->n_merges), MMP_OK);
    if (v->bos >= 0) assert_int_equal(mmp_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos), MMP_OK);
    if (v->add_bos >= 0) assert_int_equal(mmp_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos != 0), MMP_OK);
    size_t len = 0;
    assert_int_equal(mmp_gguf_writer_write_memory(w, mem, &len), MMP_OK);
    mmp_gguf_writer_free(w);
    mmp_gguf *g = mmp_gguf_open_memory(*mem, len, "fake.gguf");
    if (!g) fail_msg("%s", mmp_last_error());
    mmp_tokenizer *t = mmp_tokenizer_from_gguf(g);
    mmp_gguf_free(g);
    return t;
}

static void expect_fail(const fake_vocab *v, const char *needle) {
    void *mem = NULL;
    mmp_tokenizer *t = load_fake(v, &mem);
    if (t) fail_msg("expected a failure mentioning '%s'", needle);
    if (!strstr(mmp_last_error(), needle)) fail_msg("error '%s' does not mention '%s'", mmp_last_error(), needle);
    free(mem);
}

static void test_bad_gguf(void **state) {
    (void)state;
    static const char *const toks[] = { "<unk>", "<s>", "</s>", "a", "b", "ab" };
    static const char *const dup[] = { "<unk>", "<s>", "</s>", "a", "a" };
    static const char *const merges[] = { "a b" };
    fake_vocab base = { "llama", NULL, toks, 6, false, 6, false, NULL, 0, -1, -1 };
    fake_vocab v;
    v = base; v.model = NULL; expect_fail(&v, "tokenizer.ggml.model");
    v = base; v.model = "t5"; expect_fail(&v, "t5");
    v = base; v.tokens = NULL; expect_fail(&v, "tokenizer.ggml.tokens");
    v = base; v.tokens_as_i32 = true; v.n_scores = -1; expect_fail(&v, "tokenizer.ggml.tokens");
    v = base; v.n_scores = 3; expect_fail(&v, "tokenizer.ggml.scores");
    v = base; v.n_tokens = 0; v.n_scores = -1; expect_fail(&v, "tokenizer.ggml.tokens");
    v = base; v.types_as_f32 = true; expect_fail(&v, "tokenizer.ggml.token_type");
    v = base; v.tokens = dup; v.n_tokens = 5; v.n_scores = 5; expect_fail(&v, "duplicate");
    v = base; v.model = "gpt2"; v.pre = "gpt-2"; v.n_scores = -1; expect_fail(&v, "tokenizer.ggml.merges");
    v = base; v.model = "gpt2"; v.pre = "no-such-pre"; v.merges = merges; v.n_merges = 1; expect_fail(&v, "no-such-pre");
    /* BPE: the default BOS (11) is outside a 6-token vocab, so add_bos cannot be honoured */
    v = base; v.model = "gpt2"; v.pre = "gpt-2"; v.merges = merges; v.n_merges = 1; v.add_bos = 1; expect_fail(&v, "add_bos_token");

    /* an out-of-range bos id keeps the default (as llama.cpp does) */
    void *mem = NULL;
    v = base; v.bos = 1000;
    mmp_tokenizer *t = load_fake(&v, &mem);
    if (!t) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_tokenizer_bos(t), 1);
    mmp_token *ids = NULL;
    size_t n = 0;
    /* "ab" is a token; "c" is not and there are no byte tokens: it becomes <unk> */
    assert_int_equal(mmp_tokenizer_encode(t, "ab c", 4, true, false, &ids, &n), MMP_OK);
    assert_true(n >= 2);
    assert_int_equal(ids[0], 1);
    free(ids);
    mmp_tokenizer_free(t);
    free(mem);

    /* a working BPE vocab from the same helper */
    static const char *const btoks[] = { "a", "b", "ab", "\xC4\xA0" /* Ġ */ };
    fake_vocab bv = { "gpt2", "gpt-2", btoks, 4, false, -1, false, merges, 1, -1, -1 };
    t = load_fake(&bv, &mem);
    if (!t) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_tokenizer_encode(t, "ab abx", 6, true, false, &ids, &n), MMP_OK);
    /* "ab" -> 2; " abx": Ġ+ab, then 'x' has no token and no byte token: dropped (llama.cpp) */
    mmp_token want[] = { 2, 3, 2 };
    assert_int_equal(n, 3);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    mmp_tokenizer_free(t);
    free(mem);

    assert_null(mmp_tokenizer_load_gguf(mmpt_data("vocab/does-not-exist.gguf")));
    assert_null(mmp_tokenizer_from_gguf(NULL));
    mmp_tokenizer_free(NULL);
}

static void test_encode_edge_cases(void **state) {
    (void)state;
    static const char *const names[] = { "ggml-vocab-llama-spm", "ggml-vocab-gpt-2", "ggml-vocab-bert-bge", "ggml-vocab-falcon" };
    static const char bad_utf8[] = "\xff\xfe a\xc3 \xe2\x82 \xf0\x9f\x98 \xed\xa0\x80 \xf8\x88\x80\x80\x80 \xc0\xaf end\x80";
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char p[256];
        snprintf(p, sizeof p, "vocab/%s.gguf", names[k]);
        mmp_tokenizer *t = mmp_tokenizer_load_gguf(mmpt_data(p));
        if (!t) fail_msg("%s", mmp_last_error());
        mmp_token *ids = NULL;
        size_t n = 7;
        /* empty text */
        assert_int_equal(mmp_tokenizer_encode(t, "", 0, false, false, &ids, &n), MMP_OK);
        assert_int_equal(n, 0);
        assert_null(ids);
        assert_int_equal(mmp_tokenizer_encode(t, NULL, 0, false, false, &ids, &n), MMP_OK);
        assert_int_equal(n, 0);
        assert_int_equal(mmp_tokenizer_encode(t, NULL, 3, false, false, &ids, &n), MMP_ERR_INVALID_ARG);
        assert_int_equal(mmp_tokenizer_encode(t, "x", 1, false, false, NULL, &n), MMP_ERR_INVALID_ARG);
        /* invalid UTF-8: each bad byte reads as U+FFFD; ids are valid and decode */
        assert_int_equal(mmp_tokenizer_encode(t, bad_utf8, sizeof bad_utf8 - 1, true, true, &ids, &n), MMP_OK);
        assert_true(n > 0);
        for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < mmp_tokenizer_n_vocab(t));
        char *txt = NULL;
        assert_int_equal(mmp_tokenizer_decode(t, ids, n, true, true, &txt, NULL), MMP_OK);
        free(txt);
        free(ids);
        /* a NUL byte inside the text is just a byte */
        assert_int_equal(mmp_tokenizer_encode(t, "a\0b", 3, false, false, &ids, &n), MMP_OK);
        free(ids);
        /* bad ids */
        mmp_token bad[] = { 0, -5 };
        assert_int_equal(mmp_tokenizer_decode(t, bad, 2, false, false, &txt, NULL), MMP_ERR_INVALID_ARG);
        assert_null(txt);
        bad[1] = mmp_tokenizer_n_vocab(t);
        assert_int_equal(mmp_tokenizer_decode(t, bad, 2, false, false, &txt, NULL), MMP_ERR_INVALID_ARG);
        assert_true(mmp_tokenizer_token_to_piece(t, -1, true, NULL, 0) < 0);
        assert_true(mmp_tokenizer_token_to_piece(t, mmp_tokenizer_n_vocab(t), true, NULL, 0) < 0);
        assert_null(mmp_tokenizer_token_text(t, -1, NULL));
        assert_int_equal(mmp_tokenizer_decode(t, NULL, 0, false, false, &txt, NULL), MMP_OK);
        assert_string_equal(txt, "");
        free(txt);
        /* add_special on empty text: only what the model adds */
        assert_int_equal(mmp_tokenizer_encode(t, "", 0, true, false, &ids, &n), MMP_OK);
        if (mmp_tokenizer_kind(t) == MMP_TOKENIZER_SPM) { assert_int_equal(n, 1); assert_int_equal(ids[0], mmp_tokenizer_bos(t)); }
        if (mmp_tokenizer_kind(t) == MMP_TOKENIZER_WPM) { assert_int_equal(n, 2); assert_int_equal(ids[1], mmp_tokenizer_sep(t)); }
        free(ids);
        mmp_tokenizer_free(t);
    }
}

static void test_special_tokens(void **state) {
    (void)state;
    mmp_tokenizer *t = mmp_tokenizer_load_gguf(mmpt_data("vocab/ggml-vocab-gpt-2.gguf"));
    if (!t) fail_msg("%s", mmp_last_error());
    const char *s = "a<|endoftext|>b";
    mmp_token eot = mmp_tokenizer_find(t, "<|endoftext|>", 13);
    assert_int_equal(eot, 50256);
    assert_true(mmp_tokenizer_is_eog(t, eot));
    mmp_token *ids = NULL;
    size_t n = 0;
    assert_int_equal(mmp_tokenizer_encode(t, s, strlen(s), false, true, &ids, &n), MMP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], eot);
    char *txt = NULL;
    assert_int_equal(mmp_tokenizer_decode(t, ids, n, false, true, &txt, NULL), MMP_OK);
    assert_string_equal(txt, s);
    free(txt);
    /* control tokens are not rendered unless asked */
    assert_int_equal(mmp_tokenizer_decode(t, ids, n, false, false, &txt, NULL), MMP_OK);
    assert_string_equal(txt, "ab");
    free(txt);
    free(ids);
    /* without parse_special the text is plain text */
    assert_int_equal(mmp_tokenizer_encode(t, s, strlen(s), false, false, &ids, &n), MMP_OK);
    assert_true(n > 3);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(ids[i], eot);
    free(ids);
    char piece[8];
    assert_int_equal(mmp_tokenizer_token_to_piece(t, eot, false, piece, sizeof piece), 0);
    assert_int_equal(mmp_tokenizer_token_to_piece(t, eot, true, piece, sizeof piece), 13); /* truncated copy */
    assert_memory_equal(piece, "<|endoft", 8);
    mmp_tokenizer_free(t);

    /* phi-3: "<|end|>" is a control token; parse_special splits it out */
    t = mmp_tokenizer_load_gguf(mmpt_data("vocab/ggml-vocab-phi-3.gguf"));
    if (!t) fail_msg("%s", mmp_last_error());
    mmp_token end = mmp_tokenizer_find(t, "<|end|>", 7);
    assert_true(end >= 0);
    s = "<|user|>\nHi<|end|>\n";
    assert_int_equal(mmp_tokenizer_encode(t, s, strlen(s), true, true, &ids, &n), MMP_OK);
    assert_int_equal(ids[0], mmp_tokenizer_bos(t));
    bool found = false;
    for (size_t i = 0; i < n; i++) found |= ids[i] == end;
    assert_true(found);
    free(ids);
    mmp_tokenizer_free(t);
}

static void test_bad_other_files(void **state) {
    (void)state;
    size_t len = 0;
    char *tok = mmpt_read_file(mmpt_data("vocab/tok512.bin"), &len);
    assert_non_null(tok);
    /* truncated */
    char *p = mmpt_write_temp(tok, 100, ".bin");
    assert_null(mmp_tokenizer_from_llama2c(p, 512));
    assert_non_null(strstr(mmp_last_error(), "truncated"));
    remove(p); free(p);
    /* a negative token length */
    char *bad = malloc(len);
    memcpy(bad, tok, len);
    int32_t neg = -7;
    memcpy(bad + 8, &neg, 4);
    p = mmpt_write_temp(bad, len, ".bin");
    assert_null(mmp_tokenizer_from_llama2c(p, 512));
    assert_non_null(strstr(mmp_last_error(), "length"));
    remove(p); free(p);
    /* more tokens asked than the file holds */
    p = mmpt_write_temp(tok, len, ".bin");
    assert_null(mmp_tokenizer_from_llama2c(p, 513));
    assert_null(mmp_tokenizer_from_llama2c(p, -1));
    remove(p); free(p);
    assert_null(mmp_tokenizer_from_llama2c(mmpt_data("vocab/missing.bin"), 0));
    free(bad);
    free(tok);
    /* tokenizer.json */
    static const char notjson[] = "{\"model\": ";
    p = mmpt_write_temp(notjson, sizeof notjson - 1, ".json");
    assert_null(mmp_tokenizer_from_hf(p, NULL));
    remove(p); free(p);
    static const char unigram[] = "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}}";
    p = mmpt_write_temp(unigram, sizeof unigram - 1, ".json");
    assert_null(mmp_tokenizer_from_hf(p, NULL));
    assert_non_null(strstr(mmp_last_error(), "Unigram"));
    remove(p); free(p);
    static const char badid[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}";
    p = mmpt_write_temp(badid, sizeof badid - 1, ".json");
    assert_null(mmp_tokenizer_from_hf(p, NULL));
    remove(p); free(p);
}

/* Encode speed on a large text (informational: MB/s is printed, not asserted). */
static void test_encode_speed(void **state) {
    (void)state;
    fixture f;
    assert_true(fixture_load("ggml-vocab-gpt-2", &f));
    size_t chunk = 0;
    for (size_t i = 0; i < f.n; i++) chunk += f.inp_len[i] + 1;
    size_t target = 2u << 20, len = 0;
    char *text = malloc(target + chunk + 1);
    while (len < target)
        for (size_t i = 0; i < f.n; i++) { memcpy(text + len, f.inp[i], f.inp_len[i]); len += f.inp_len[i]; text[len++] = '\n'; }
    fixture_free(&f);
    static const char *const names[] = { "ggml-vocab-gpt-2", "ggml-vocab-llama-spm", "ggml-vocab-bert-bge", "ggml-vocab-falcon" };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char p[256];
        snprintf(p, sizeof p, "vocab/%s.gguf", names[k]);
        mmp_tokenizer *t = mmp_tokenizer_load_gguf(mmpt_data(p));
        assert_non_null(t);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        mmp_token *ids = NULL;
        size_t n = 0;
        assert_int_equal(mmp_tokenizer_encode(t, text, len, false, false, &ids, &n), MMP_OK);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        print_message("encode %s: %.2f MB in %.3f s = %.2f MB/s (%zu tokens)\n", names[k], (double)len / 1e6, s, (double)len / 1e6 / s, n);
        free(ids);
        mmp_tokenizer_free(t);
    }
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_gpt2),
        cmocka_unit_test(test_fixture_starcoder),
        cmocka_unit_test(test_fixture_falcon),
        cmocka_unit_test(test_fixture_llama_spm),
        cmocka_unit_test(test_fixture_phi3),
        cmocka_unit_test(test_fixture_bert_bge),
        cmocka_unit_test(test_tiny_mixtral_prompt),
        cmocka_unit_test(test_llama2c_stories),
        cmocka_unit_test(test_hf_bpe),
        cmocka_unit_test(test_hf_wordpiece),
        cmocka_unit_test(test_hf_spm_style),
        cmocka_unit_test(test_bad_gguf),
        cmocka_unit_test(test_encode_edge_cases),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_bad_other_files),
        cmocka_unit_test(test_encode_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
