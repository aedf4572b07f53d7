/* CLIP BPE tokenizer (core/tok_clip.c) on the fixture tests/data/sd/tokenizer/.
 *
 * There is no real CLIP vocabulary in the reference data, so the fixture is small and every
 * expected encoding below is derived by hand from transformers' CLIPTokenizer algorithm
 * (no ftfy): BasicTokenizer clean + lower case, the CLIP regex, bytes -> GPT-2 stand-ins,
 * "</w>" on the last character, merge the lowest-ranked pair until none applies.
 *
 * Fixture vocab.json (320 ids, like golden clip_text's vocab_size):
 *   0..93    the characters '!'..'~' (bytes 33..126, their own GPT-2 stand-ins)
 *   94..187  the same + "</w>"      (so char c -> c - 33, "c</w>" -> c - 33 + 94)
 *   188 "Ã", 189 "©</w>"             (the stand-ins of the UTF-8 bytes C3 A9 of 'é')
 *   190 he, 191 ll, 192 hell, 193 hello</w>, 194 or, 195 wor, 196 ld</w>, 197 ph, 198 aa,
 *   199 bc</w>, 200 ab, 201 it</w>, 202 's</w>
 *   318 <|startoftext|>, 319 <|endoftext|>   (ids 203..317 unused)
 * merges.txt ranks: 0 "h e", 1 "l l", 2 "he ll", 3 "hell o</w>", 4 "o r", 5 "w or",
 *   6 "l d</w>", 7 "p h", 8 "a a", 9 "b c</w>", 10 "a b", 11 "i t</w>", 12 "' s</w>"
 * tokenizer_config.json: model_max_length 16, pad = eos = unk = <|endoftext|>. */
#include "testutil.h"
#include "mmpipe/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define C(ch) ((mmp_token)((ch) - 33))        /* bare character token */
#define CW(ch) ((mmp_token)((ch) - 33 + 94))  /* character + "</w>" */

static mmp_clip_tokenizer *fixture(void) {
    mmp_clip_tokenizer *t = mmp_clip_tokenizer_load(mmpt_data("sd/tokenizer"));
    if (!t) fail_msg("%s", mmp_last_error());
    return t;
}

static void expect(const mmp_clip_tokenizer *t, const char *text, const mmp_token *want, size_t n_want) {
    mmp_token *ids = NULL;
    size_t n = 0;
    if (mmp_clip_tokenizer_encode(t, text, strlen(text), &ids, &n) != MMP_OK) fail_msg("%s", mmp_last_error());
    if (n != n_want) {
        fprintf(stderr, "'%s': got", text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
        fail_msg("'%s': %zu tokens, expected %zu", text, n, n_want);
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] != want[i]) fail_msg("'%s': token %zu is %d, expected %d", text, i, ids[i], want[i]);
    free(ids);
}
#define EXPECT(t, text, ...) do { const mmp_token w_[] = { __VA_ARGS__ }; expect(t, text, w_, sizeof w_ / sizeof w_[0]); } while (0)

static void test_properties(void **st) {
    (void)st;
    mmp_clip_tokenizer *t = fixture();
    assert_int_equal(mmp_clip_tokenizer_n_vocab(t), 320);
    assert_int_equal(mmp_clip_tokenizer_n_merges(t), 13); /* "#version" line skipped */
    assert_int_equal(mmp_clip_tokenizer_bos(t), 318);
    assert_int_equal(mmp_clip_tokenizer_eos(t), 319);
    assert_int_equal(mmp_clip_tokenizer_pad(t), 319);
    assert_int_equal(mmp_clip_tokenizer_unk(t), 319);
    assert_int_equal(mmp_clip_tokenizer_max_length(t), 16);
    assert_string_equal(mmp_clip_tokenizer_token_text(t, 193), "hello</w>");
    assert_null(mmp_clip_tokenizer_token_text(t, 250)); /* a gap in the ids */
    assert_null(mmp_clip_tokenizer_token_text(t, 320));
    assert_int_equal(mmp_clip_tokenizer_find(t, "wor"), 195);
    mmp_clip_tokenizer_free(t);
    mmp_clip_tokenizer_free(NULL);
}

static void test_encode(void **st) {
    (void)st;
    mmp_clip_tokenizer *t = fixture();
    /* h e l l o</w> -> he (rank 0) -> ll (1) -> hell (2) -> hello</w> (3) */
    EXPECT(t, "hello", 193);
    /* lower case, whitespace runs and edges removed: two words */
    EXPECT(t, "  HeLLo \t\n hello  ", 193, 193);
    /* w o r l d</w>: "o r" (4) -> wor (5), "l d</w>" (6); no "wor ld</w>" merge -> 2 tokens */
    EXPECT(t, "world", 195, 196);
    /* a single character gets "</w>" without merging */
    EXPECT(t, "a", CW('a'));
    /* p h o t o</w>: only "p h" (7) applies */
    EXPECT(t, "photo", 197, C('o'), C('t'), CW('o'));
    /* a a a</w>: "a a" (8) merges left to right, non-overlapping -> aa, a</w> */
    EXPECT(t, "aaa", 198, CW('a'));
    /* a b c</w>: both "a b" (10) and "b c</w>" (9) apply; the lower rank wins -> a, bc</w> */
    EXPECT(t, "abc", C('a'), 199);
    /* contraction: regex gives "it" and "'s" -> i t</w> (11), ' s</w> (12) */
    EXPECT(t, "it's", 201, 202);
    /* numbers are single characters: [\p{N}] */
    EXPECT(t, "42", CW('4'), CW('2'));
    /* a punctuation run is one piece: ! ! ?</w> */
    EXPECT(t, "!!?", C('!'), C('!'), CW('?'));
    /* punctuation then letters then a number: "hello,world2" -> hello | , | world | 2 */
    EXPECT(t, "hello,world2", 193, CW(','), 195, 196, CW('2'));
    /* 'é' = C3 A9 -> stand-ins "Ã" "©" -> "Ã", "©</w>"; 'É' lower-cases to 'é' */
    EXPECT(t, "\xC3\x89", 188, 189);
    /* a symbol that is not in the vocab -> unk (<|endoftext|>) */
    EXPECT(t, "\xC3\xA8", 188, 319);
    /* control characters are dropped before splitting: "hel\x01lo" is "hello" */
    EXPECT(t, "hel\x01lo", 193);
    /* a form feed is a control character: dropped, so it joins "a" and "b" into one word
     * (a b</w>: "a b" (10) is for a non-final b, so no merge); a line separator U+2028
     * splits words */
    EXPECT(t, "a\x0c" "b", C('a'), CW('b'));
    EXPECT(t, "a\xE2\x80\xA8" "b", CW('a'), CW('b'));
    /* special token texts are cut out of the text first */
    EXPECT(t, "hello<|endoftext|>world", 193, 319, 195, 196);
    EXPECT(t, "<|startoftext|>a", 318, CW('a'));
    /* empty / whitespace only */
    mmp_token *ids = (mmp_token *)1;
    size_t n = 5;
    assert_int_equal(mmp_clip_tokenizer_encode(t, " \n", 2, &ids, &n), MMP_OK);
    assert_int_equal(n, 0);
    free(ids);
    mmp_clip_tokenizer_free(t);
}

static void test_padded(void **st) {
    (void)st;
    mmp_clip_tokenizer *t = fixture();
    mmp_token out[16];
    int32_t used = 0;
    assert_int_equal(mmp_clip_tokenizer_encode_padded(t, "hello world", 11, 0, out, &used), MMP_OK);
    const mmp_token want[16] = { 318, 193, 195, 196, 319, 319, 319, 319, 319, 319, 319, 319, 319, 319, 319, 319 };
    assert_int_equal(used, 5);
    assert_memory_equal(out, want, sizeof want);
    /* empty prompt (the unconditional branch): [bos, eos, pad...] */
    assert_int_equal(mmp_clip_tokenizer_encode_padded(t, "", 0, 0, out, &used), MMP_OK);
    assert_int_equal(used, 2);
    assert_int_equal(out[0], 318);
    for (int i = 1; i < 16; i++) assert_int_equal(out[i], 319);
    /* truncation: 20 words "a" -> 14 kept, then eos */
    char text[64] = "";
    for (int i = 0; i < 20; i++) strcat(text, "a ");
    assert_int_equal(mmp_clip_tokenizer_encode_padded(t, text, strlen(text), 0, out, &used), MMP_OK);
    assert_int_equal(used, 16);
    assert_int_equal(out[0], 318);
    for (int i = 1; i < 15; i++) assert_int_equal(out[i], CW('a'));
    assert_int_equal(out[15], 319);
    /* explicit length */
    mmp_token o8[8];
    assert_int_equal(mmp_clip_tokenizer_encode_padded(t, "abc", 3, 8, o8, &used), MMP_OK);
    const mmp_token w8[8] = { 318, C('a'), 199, 319, 319, 319, 319, 319 };
    assert_memory_equal(o8, w8, sizeof w8);
    assert_int_equal(mmp_clip_tokenizer_encode_padded(t, "abc", 3, 1, o8, &used), MMP_ERR_INVALID_ARG);
    mmp_clip_tokenizer_free(t);
}

/* The golden clip_text input_ids (what the text encoder's reference was run on) have the
 * layout the padded encoder produces for this vocab: bos 318, tokens, eos 319, padding with
 * eos (319) to max_position_embeddings (16). */
static void test_golden_layout(void **st) {
    (void)st;
    mmp_clip_tokenizer *t = fixture();
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("vision/clip_text/io.safetensors"));
    if (!io) fail_msg("%s", mmp_last_error());
    const mmp_tensor_info *ti = mmp_safetensors_find(io, "input_ids");
    assert_non_null(ti);
    assert_int_equal(ti->ne[0], 16);
    int64_t g[16];
    memcpy(g, ti->data, sizeof g);
    int n_used = 0;
    while (n_used < 16 && g[n_used] != mmp_clip_tokenizer_eos(t)) n_used++;
    n_used++; /* include the first eos */
    assert_true(n_used >= 2 && n_used <= 16);
    assert_int_equal(g[0], mmp_clip_tokenizer_bos(t));
    for (int i = n_used; i < 16; i++) assert_int_equal(g[i], mmp_clip_tokenizer_pad(t));
    /* a prompt with the same number of tokens gives bos/eos/pad at the same places */
    char text[128] = "";
    for (int i = 0; i < n_used - 2; i++) strcat(text, "a ");
    mmp_token out[16];
    int32_t used = 0;
    assert_int_equal(mmp_clip_tokenizer_encode_padded(t, text, strlen(text), 16, out, &used), MMP_OK);
    assert_int_equal(used, n_used);
    for (int i = 0; i < 16; i++)
        if (i == 0 || i >= n_used - 1) assert_int_equal(out[i], (mmp_token)g[i]);
    mmp_safetensors_free(io);
    mmp_clip_tokenizer_free(t);
}

static char *write_tmp(const char *dir, const char *name, const char *text) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_config_and_errors(void **st) {
    (void)st;
    char dir[] = "/tmp/mmp_cliptokXXXXXX";
    assert_non_null(mkdtemp(dir));
    char *v = strdup(mmpt_data("sd/tokenizer/vocab.json")), *m = strdup(mmpt_data("sd/tokenizer/merges.txt"));
    /* SD 2.x style: pad_token "!" (id 0), no model_max_length -> 77 */
    char *cfg = write_tmp(dir, "tokenizer_config.json", "{\"pad_token\": \"!\", \"model_max_length\": 1e30}");
    mmp_clip_tokenizer *t = mmp_clip_tokenizer_from_files(v, m, cfg, NULL);
    if (!t) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_clip_tokenizer_pad(t), 0);
    assert_int_equal(mmp_clip_tokenizer_max_length(t), 77);
    mmp_token out[77];
    int32_t used;
    assert_int_equal(mmp_clip_tokenizer_encode_padded(t, "a", 1, 0, out, &used), MMP_OK);
    assert_int_equal(out[2], 319);
    assert_int_equal(out[3], 0);
    assert_int_equal(out[76], 0);
    mmp_clip_tokenizer_free(t);
    /* a special token that is not in the vocab */
    char *cfg2 = write_tmp(dir, "bad_config.json", "{\"pad_token\": \"<pad>\"}");
    assert_null(mmp_clip_tokenizer_from_files(v, m, cfg2, NULL));
    assert_non_null(strstr(mmp_last_error(), "<pad>"));
    /* bad vocab / merges */
    char *bv = write_tmp(dir, "vocab_bad.json", "{\"a\": 1, \"b\": \"x\"}");
    assert_null(mmp_clip_tokenizer_from_files(bv, m, NULL, NULL));
    assert_non_null(strstr(mmp_last_error(), "'b'"));
    char *dup = write_tmp(dir, "vocab_dup.json", "{\"a\": 1, \"b\": 1}");
    assert_null(mmp_clip_tokenizer_from_files(dup, m, NULL, NULL));
    char *nobos = write_tmp(dir, "vocab_nobos.json", "{\"a\": 0, \"<|endoftext|>\": 1}");
    assert_null(mmp_clip_tokenizer_from_files(nobos, m, NULL, NULL));
    assert_non_null(strstr(mmp_last_error(), "bos"));
    char *bm = write_tmp(dir, "merges_bad.txt", "#version: 0.2\na b c\n");
    assert_null(mmp_clip_tokenizer_from_files(v, bm, NULL, NULL));
    assert_non_null(strstr(mmp_last_error(), "line 2"));
    assert_null(mmp_clip_tokenizer_load(dir)); /* no vocab.json there */
    assert_non_null(strstr(mmp_last_error(), "vocab.json"));
    assert_null(mmp_clip_tokenizer_load("/nonexistent/tok"));
    char *files[] = { cfg, cfg2, bv, dup, nobos, bm };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) { unlink(files[i]); free(files[i]); }
    rmdir(dir);
    free(v); free(m);
}

/* A long word costs O(n log n), not O(n^2): 200k letters tokenize quickly. */
static void test_long_word(void **st) {
    (void)st;
    mmp_clip_tokenizer *t = fixture();
    size_t n = 200000;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++) s[i] = "helo"[i % 4];
    mmp_token *ids = NULL;
    size_t k = 0;
    assert_int_equal(mmp_clip_tokenizer_encode(t, s, n, &ids, &k), MMP_OK);
    assert_true(k > 0 && k <= n);
    free(ids);
    free(s);
    mmp_clip_tokenizer_free(t);
}

/* 400 random strings against tests/data/sd/clip_xcheck/cases.txt, made by make_cases.py
 * there: transformers' algorithm transcribed to Python (regex module, unicodedata), so the
 * Unicode categories, Python's str.lower() (U+0130 -> "i" U+0307), control / whitespace
 * handling and the merge loop are checked against an independent implementation. */
static void test_xcheck(void **st) {
    (void)st;
    mmp_clip_tokenizer *t = mmp_clip_tokenizer_load(mmpt_data("sd/clip_xcheck/tok"));
    if (!t) fail_msg("%s", mmp_last_error());
    size_t n = 0;
    char *all = mmpt_read_file(mmpt_data("sd/clip_xcheck/cases.txt"), &n);
    assert_non_null(all);
    int cases = 0;
    char *save = NULL;
    for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = 0;
        size_t len = strlen(line) / 2;
        char *text = malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            unsigned v;
            assert_int_equal(sscanf(line + 2 * i, "%2x", &v), 1);
            text[i] = (char)v;
        }
        mmp_token *ids = NULL;
        size_t k = 0;
        if (mmp_clip_tokenizer_encode(t, text, len, &ids, &k) != MMP_OK) fail_msg("%s", mmp_last_error());
        char *p = tab + 1, *end;
        size_t j = 0;
        for (;; j++) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (j >= k || ids[j] != v) fail_msg("case %d (%s): token %zu differs (want %ld, got %d)", cases, line, j, v, j < k ? ids[j] : -1);
            p = end;
        }
        if (j != k) fail_msg("case %d (%s): %zu tokens, expected %zu", cases, line, k, j);
        free(ids);
        free(text);
        cases++;
    }
    assert_int_equal(cases, 400);
    free(all);
    mmp_clip_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_padded),
        cmocka_unit_test(test_golden_layout),
        cmocka_unit_test(test_config_and_errors),
        cmocka_unit_test(test_long_word),
        cmocka_unit_test(test_xcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
