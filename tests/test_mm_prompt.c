/* Multimodal prompt assembly (include/mmpipe/mtmd.h) on its own: where the media rows land for
 * token ids with placeholders (several items, two kinds), text markers in split and expand
 * mode, the embeddings of a prompt against the LLM's token embeddings and the items' rows,
 * decoding in pieces, and the errors (counts, kinds, widths, ranges).
 * Uses the small synthetic tokenizer and the LLM of tests/data/mm/llava_mixtral. */
#include "testutil.h"
#include "mmpipe/mtmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D 64

/* item rows: value = 1000 * item + row + col / 100 (every row distinct) */
static float *make_rows(int item, int n) {
    float *x = malloc((size_t)n * D * sizeof *x);
    assert_non_null(x);
    for (int r = 0; r < n; r++)
        for (int c = 0; c < D; c++) x[r * D + c] = 1000.0f * (float)item + (float)r + (float)c / 100.0f;
    return x;
}

static mmp_tokenizer *load_tok(void) {
    char tj[1024], tc[1024];
    snprintf(tj, sizeof tj, "%s", mmpt_data("mm/llava_mixtral/tokenizer.json"));
    snprintf(tc, sizeof tc, "%s", mmpt_data("mm/llava_mixtral/tokenizer_config.json"));
    mmp_tokenizer *t = mmp_tokenizer_from_hf(tj, tc);
    if (!t) fail_msg("tokenizer: %s", mmp_last_error());
    return t;
}

static void test_from_ids_order(void **state) {
    (void)state;
    float *i0 = make_rows(0, 3), *a1 = make_rows(1, 2), *i2 = make_rows(2, 2);
    mmp_media media[3] = { { MMP_MEDIA_IMAGE, 3, D, i0 }, { MMP_MEDIA_AUDIO, 2, D, a1 }, { MMP_MEDIA_IMAGE, 2, D, i2 } };
    mmp_mm_markers mk = mmp_mm_markers_default();
    mk.image_token = 200;
    mk.audio_token = 201;
    /* positions:    0  1    2    3    4  5    6    7  8    9   10 */
    int32_t ids[] = { 1, 200, 200, 200, 7, 201, 201, 8, 200, 200, 9 };
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, 11, &mk, media, 3);
    if (!p) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_mm_prompt_n_pos(p), 11);
    assert_int_equal(mmp_mm_prompt_n_media_pos(p), 7);
    assert_int_equal(mmp_mm_prompt_n_embd(p), D);
    assert_memory_equal(mmp_mm_prompt_ids(p), ids, sizeof ids);
    const bool media_at[11] = { 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0 };
    for (int i = 0; i < 11; i++) assert_int_equal(mmp_mm_prompt_is_media(p, i), media_at[i]);
    assert_false(mmp_mm_prompt_is_media(p, -1));
    assert_false(mmp_mm_prompt_is_media(p, 11));
    mmp_mm_prompt_free(p);

    /* kinds keep their own order even when the ids interleave differently from the items */
    int32_t ids2[] = { 201, 200, 201, 200, 200, 200, 200 };
    p = mmp_mm_prompt_from_ids(ids2, 7, &mk, media, 3);
    assert_non_null(p);
    mmp_mm_prompt_free(p);

    /* counts that do not match, per kind */
    int32_t ids3[] = { 1, 200, 200, 201, 201 };
    assert_null(mmp_mm_prompt_from_ids(ids3, 5, &mk, media, 3));
    assert_non_null(strstr(mmp_last_error(), "2 image placeholder tokens (id 200)"));
    assert_non_null(strstr(mmp_last_error(), "5 embedding rows"));
    /* no placeholder id for a kind that has items */
    mmp_mm_markers mk2 = mk;
    mk2.audio_token = MMP_TOKEN_NULL;
    assert_null(mmp_mm_prompt_from_ids(ids, 11, &mk2, media, 3));
    assert_non_null(strstr(mmp_last_error(), "no audio placeholder"));
    /* same id for both kinds */
    mk2.audio_token = 200;
    assert_null(mmp_mm_prompt_from_ids(ids, 11, &mk2, media, 3));
    /* items of different widths */
    mmp_media bad[2] = { media[0], { MMP_MEDIA_IMAGE, 2, D - 1, i2 } };
    assert_null(mmp_mm_prompt_from_ids(ids, 11, &mk, bad, 2));
    assert_non_null(strstr(mmp_last_error(), "width"));
    /* empty item, unknown kind, no ids */
    mmp_media empty = { MMP_MEDIA_IMAGE, 0, D, i0 };
    assert_null(mmp_mm_prompt_from_ids(ids, 11, &mk, &empty, 1));
    mmp_media weird = { (enum mmp_media_kind)7, 3, D, i0 };
    assert_null(mmp_mm_prompt_from_ids(ids, 11, &mk, &weird, 1));
    assert_null(mmp_mm_prompt_from_ids(NULL, 3, &mk, NULL, 0));
    assert_null(mmp_mm_prompt_from_ids(ids, 0, &mk, NULL, 0));
    /* no media at all: a plain text prompt */
    p = mmp_mm_prompt_from_ids(ids + 4, 1, &mk, NULL, 0);
    assert_non_null(p);
    assert_int_equal(mmp_mm_prompt_n_media_pos(p), 0);
    assert_int_equal(mmp_mm_prompt_n_embd(p), 0);
    mmp_mm_prompt_free(p);
    mmp_mm_prompt_free(NULL);
    free(i0);
    free(a1);
    free(i2);
}

/* Split mode (no placeholder ids: a llama.cpp-style LLM + mmproj): the text between the
 * markers is tokenized piece by piece, BOS on the first piece only. */
static void test_text_split(void **state) {
    (void)state;
    mmp_tokenizer *tok = load_tok();
    float *i0 = make_rows(0, 3), *a1 = make_rows(1, 2), *x2 = make_rows(2, 4);
    mmp_media media[3] = { { MMP_MEDIA_IMAGE, 3, D, i0 }, { MMP_MEDIA_AUDIO, 2, D, a1 }, { MMP_MEDIA_AUDIO, 4, D, x2 } };
    const char *text = "Look <image> and hear <audio>, then<__media__>!";
    mmp_mm_prompt *p = mmp_mm_prompt_from_text(tok, text, strlen(text), true, NULL, media, 3);
    if (!p) fail_msg("%s", mmp_last_error());
    /* expected: pieces tokenized alone */
    const char *pieces[4] = { "Look ", " and hear ", ", then", "!" };
    const int n_rows[3] = { 3, 2, 4 };
    int32_t want[64];
    bool want_media[64];
    int n = 0;
    for (int k = 0; k < 4; k++) {
        int32_t *t = NULL;
        size_t nt = 0;
        assert_int_equal(mmp_tokenizer_encode(tok, pieces[k], strlen(pieces[k]), k == 0, true, &t, &nt), MMP_OK);
        for (size_t j = 0; j < nt; j++) { want_media[n] = false; want[n++] = t[j]; }
        free(t);
        if (k < 3)
            for (int r = 0; r < n_rows[k]; r++) { want_media[n] = true; want[n++] = MMP_TOKEN_NULL; }
    }
    assert_int_equal(want[0], 1); /* BOS */
    assert_int_equal(mmp_mm_prompt_n_pos(p), n);
    assert_int_equal(mmp_mm_prompt_n_media_pos(p), 9);
    assert_memory_equal(mmp_mm_prompt_ids(p), want, (size_t)n * sizeof *want);
    for (int i = 0; i < n; i++) assert_int_equal(mmp_mm_prompt_is_media(p, i), want_media[i]);
    mmp_mm_prompt_free(p);

    /* marker/item count, marker kind */
    assert_null(mmp_mm_prompt_from_text(tok, text, strlen(text), true, NULL, media, 2));
    assert_non_null(strstr(mmp_last_error(), "3 media markers but 2"));
    const char *t2 = "<audio><audio><image>";
    assert_null(mmp_mm_prompt_from_text(tok, t2, strlen(t2), true, NULL, media, 3));
    assert_non_null(strstr(mmp_last_error(), "wants audio but media item 0 is image"));
    /* a marker alone, no BOS: only the media rows */
    p = mmp_mm_prompt_from_text(tok, "<image>", 7, false, NULL, media, 1);
    assert_non_null(p);
    assert_int_equal(mmp_mm_prompt_n_pos(p), 3);
    mmp_mm_prompt_free(p);
    /* nothing at all */
    assert_null(mmp_mm_prompt_from_text(tok, "", 0, false, NULL, NULL, 0));
    assert_null(mmp_mm_prompt_from_text(NULL, "x", 1, false, NULL, NULL, 0));
    /* a text without media works like plain tokenizing */
    p = mmp_mm_prompt_from_text(tok, "Hello there", 11, true, NULL, NULL, 0);
    assert_non_null(p);
    int32_t *t = NULL;
    size_t nt = 0;
    assert_int_equal(mmp_tokenizer_encode(tok, "Hello there", 11, true, true, &t, &nt), MMP_OK);
    assert_int_equal(mmp_mm_prompt_n_pos(p), (int32_t)nt);
    assert_memory_equal(mmp_mm_prompt_ids(p), t, nt * sizeof *t);
    free(t);
    mmp_mm_prompt_free(p);
    free(i0);
    free(a1);
    free(x2);
    mmp_tokenizer_free(tok);
}

/* Expand mode (the vocabulary has the placeholder "<image>" = 255): every marker becomes N
 * placeholders; the wrapping text goes around generic markers only. */
static void test_text_expand(void **state) {
    (void)state;
    mmp_tokenizer *tok = load_tok();
    float *i0 = make_rows(0, 3), *i1 = make_rows(1, 2);
    mmp_media media[2] = { { MMP_MEDIA_IMAGE, 3, D, i0 }, { MMP_MEDIA_IMAGE, 2, D, i1 } };
    mmp_mm_markers mk = mmp_mm_markers_default();
    mk.image_token = 255;
    mk.image_begin = "<s>";     /* any special token will do to see the wrapping */
    mk.image_end = "</s>";
    const char *text = "A<__media__>B<image>C";
    mmp_mm_prompt *p = mmp_mm_prompt_from_text(tok, text, strlen(text), true, &mk, media, 2);
    if (!p) fail_msg("%s", mmp_last_error());
    /* the same as tokenizing the expanded text */
    const char *exp = "A<s><image><image><image></s>B<image><image>C";
    int32_t *t = NULL;
    size_t nt = 0;
    assert_int_equal(mmp_tokenizer_encode(tok, exp, strlen(exp), true, true, &t, &nt), MMP_OK);
    assert_int_equal(mmp_mm_prompt_n_pos(p), (int32_t)nt);
    assert_memory_equal(mmp_mm_prompt_ids(p), t, nt * sizeof *t);
    int n255 = 0;
    for (size_t i = 0; i < nt; i++) {
        assert_int_equal(mmp_mm_prompt_is_media(p, (int32_t)i), t[i] == 255);
        n255 += t[i] == 255;
    }
    assert_int_equal(n255, 5);
    assert_int_equal(t[2], 1); /* "<s>" wrapped the generic marker */
    free(t);
    mmp_mm_prompt_free(p);
    free(i0);
    free(i1);
    mmp_tokenizer_free(tok);
}

/* Embeddings and decoding with the LLM: text rows are the token embeddings, media rows the
 * items'; decoding in two pieces (from = k) equals decoding at once. */
static void test_embed_decode(void **state) {
    (void)state;
    mmp_llm *m = mmp_llm_load(mmpt_data("mm/llava_mixtral"), NULL);
    if (!m) fail_msg("%s", mmp_last_error());
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(m);
    assert_int_equal(hp->n_embd, D);
    float *i0 = make_rows(0, 3), *a1 = make_rows(1, 2);
    for (int i = 0; i < 3 * D; i++) i0[i] = i0[i] * 1e-3f - 0.1f;  /* keep the activations tame */
    for (int i = 0; i < 2 * D; i++) a1[i] = a1[i] * 1e-3f - 1.0f;
    mmp_media media[2] = { { MMP_MEDIA_IMAGE, 3, D, i0 }, { MMP_MEDIA_AUDIO, 2, D, a1 } };
    mmp_mm_markers mk = mmp_mm_markers_default();
    mk.image_token = 255;
    mk.audio_token = 254;
    int32_t ids[] = { 1, 17, 255, 255, 255, 40, 41, 254, 254, 99 };
    const int n = 10;
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, n, &mk, media, 2);
    assert_non_null(p);
    float *e = malloc((size_t)n * D * sizeof *e), *te = malloc(D * sizeof *te);
    assert_int_equal(mmp_mm_prompt_embed(p, m, 0, n, e), MMP_OK);
    for (int i = 0; i < n; i++) {
        const float *want;
        if (i >= 2 && i <= 4) want = i0 + (i - 2) * D;
        else if (i == 7 || i == 8) want = a1 + (i - 7) * D;
        else {
            assert_int_equal(mmp_llm_embed_tokens(m, &ids[i], 1, te), MMP_OK);
            want = te;
        }
        assert_memory_equal(e + (size_t)i * D, want, D * sizeof(float));
    }
    /* a sub-range */
    assert_int_equal(mmp_mm_prompt_embed(p, m, 3, 5, e), MMP_OK);
    assert_memory_equal(e, i0 + D, D * sizeof(float));
    assert_int_equal(mmp_mm_prompt_embed(p, m, 8, 3, e), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_mm_prompt_embed(p, m, -1, 2, e), MMP_ERR_INVALID_ARG);

    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 32;
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, &cp);
    assert_non_null(c);
    float *all = malloc((size_t)n * hp->n_vocab * sizeof *all), *last = malloc((size_t)hp->n_vocab * sizeof *last);
    assert_int_equal(mmp_mm_prompt_decode(c, m, p, 0, 0, all, true), MMP_OK);
    assert_int_equal(mmp_llm_ctx_n_past(c), n);
    /* again in two calls: [0, 4) then [4, 10) in batches of 3 */
    mmp_llm_ctx_truncate(c, 0);
    assert_int_equal(mmp_mm_prompt_decode(c, m, p, 4, 0, last, false), MMP_ERR_INVALID_ARG); /* context holds 0 */
    mmp_mm_prompt *head = mmp_mm_prompt_from_ids(ids, 4, &mk, NULL, 0);
    assert_null(head); /* 3 image placeholders, no rows */
    float *part = malloc(4 * (size_t)hp->n_vocab * sizeof *part);
    {
        /* the first 4 positions through the full prompt's embeddings */
        assert_int_equal(mmp_mm_prompt_embed(p, m, 0, 4, e), MMP_OK);
        mmp_llm_batch b = { .n = 4, .embd = e, .logits = part, .logits_all = true };
        assert_int_equal(mmp_llm_decode(c, &b), MMP_OK);
    }
    assert_int_equal(mmp_mm_prompt_decode(c, m, p, 4, 3, last, false), MMP_OK);
    MMPT_ASSERT_REL_LE(part, all, 4 * (size_t)hp->n_vocab, 1e-5);
    MMPT_ASSERT_REL_LE(last, all + (size_t)(n - 1) * hp->n_vocab, (size_t)hp->n_vocab, 1e-5);
    /* out of range start */
    assert_int_equal(mmp_mm_prompt_decode(c, m, p, n, 0, last, false), MMP_ERR_INVALID_ARG);

    /* a placeholder outside the vocabulary is fine (never embedded); a text id is not */
    mk.image_token = 100000;
    int32_t ids2[] = { 1, 100000, 100000, 100000, 300 };
    mmp_mm_prompt *p2 = mmp_mm_prompt_from_ids(ids2, 5, &mk, media, 1);
    assert_non_null(p2);
    assert_int_equal(mmp_mm_prompt_embed(p2, m, 0, 4, e), MMP_OK);
    assert_int_not_equal(mmp_mm_prompt_embed(p2, m, 0, 5, e), MMP_OK);
    assert_non_null(strstr(mmp_last_error(), "positions 4..4"));
    mmp_mm_prompt_free(p2);

    free(part);
    free(all);
    free(last);
    mmp_llm_ctx_free(c);
    free(e);
    free(te);
    mmp_mm_prompt_free(p);
    free(i0);
    free(a1);
    mmp_llm_free(m);
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(mmp_media_kind_name(MMP_MEDIA_IMAGE), "image");
    assert_string_equal(mmp_media_kind_name(MMP_MEDIA_AUDIO), "audio");
    assert_string_equal(mmp_media_kind_name(42), "unknown");
    mmp_mm_markers mk = mmp_mm_markers_default();
    assert_int_equal(mk.image_token, MMP_TOKEN_NULL);
    assert_int_equal(mk.audio_token, MMP_TOKEN_NULL);
    assert_null(mmp_mm_load(NULL, NULL, NULL, NULL));
    mmp_mm_free(NULL);
    assert_false(mmp_mm_has(NULL, MMP_MEDIA_IMAGE));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_ids_order),
        cmocka_unit_test(test_text_split),
        cmocka_unit_test(test_text_expand),
        cmocka_unit_test(test_embed_decode),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
