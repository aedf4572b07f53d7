/* The text stage kinds: prompt.text (text + media -> LLM input rows) and backbone.generate
 * (generation inside one stage), alone and through pipelines/chat.pipe.
 *
 * References: `mmpipe run -m models/stories260K.gguf -n 200 --temp 0` (tests/data/cli/
 * expected_stdout.txt, llama2.c's run.c output), the chat template renderer + tokenizer as
 * `mmpipe chat` uses them, a fresh stage for KV-cache reuse, and the llava_mixtral golden's
 * greedy ids (tests/data/pipe/llava_mixtral). */
#include "testutil.h"

#include "mmpipe/mmpipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORIES MMP_SOURCE_DIR "/models/stories260K.gguf"
#define CHAT_PIPE MMP_SOURCE_DIR "/pipelines/chat.pipe"

/* ---- helpers ---- */

static mmp_array *text_array(const char *s) {
    int64_t n = (int64_t)strlen(s);
    mmp_array *a = mmp_array_new(MMP_TYPE_U8, 1, &n);
    assert_non_null(a);
    memcpy(a->data, s, (size_t)n);
    return a;
}

static mmp_array *ids_array(const int32_t *ids, int64_t n) {
    mmp_array *a = mmp_array_new(MMP_TYPE_I32, 1, &n);
    assert_non_null(a);
    memcpy(a->data, ids, (size_t)n * sizeof *ids);
    return a;
}

/* The array's bytes as a NUL-terminated string (malloc'ed). */
static char *array_text(const mmp_array *a) {
    size_t n = (size_t)a->dims[0];
    char *s = malloc(n + 1);
    assert_non_null(s);
    if (n) memcpy(s, a->data, n);
    s[n] = '\0';
    return s;
}

/* Callback record: streamed text, progress events, abort / stop after a count. */
typedef struct rec {
    char text[8192];
    size_t n_text;
    int n_pieces, stop_after;   /* on_text returns false at piece stop_after (0: never) */
    int64_t reused, prompt_rows, n_token_events;
    int abort_after;            /* abort_cb true from this call on (0: never) */
    int n_abort_calls;
} rec;

static bool rec_text(const char *piece, size_t len, void *user) {
    rec *r = user;
    assert_true(len > 0);
    assert_true(r->n_text + len < sizeof r->text);
    memcpy(r->text + r->n_text, piece, len);
    r->n_text += len;
    r->text[r->n_text] = '\0';
    r->n_pieces++;
    return !(r->stop_after && r->n_pieces >= r->stop_after);
}

static void rec_progress(const char *what, int64_t done, int64_t total, void *user) {
    rec *r = user;
    if (!strcmp(what, "prompt reused")) r->reused = done;
    else if (!strcmp(what, "prompt")) { assert_int_equal(done, total); r->prompt_rows = total; }
    else if (!strcmp(what, "tokens")) r->n_token_events++;
}

/* true once abort_after tokens were generated (it is polled per token and inside decodes) */
static bool rec_abort(void *user) {
    rec *r = user;
    r->n_abort_calls++;
    return r->abort_after && r->n_token_events >= r->abort_after;
}

static mmp_pipeline *chat_pipe_store(mmp_registry *reg, const char *const *set, rec *r, mmp_store *store) {
    mmp_pipeline_desc *d = mmp_pipeline_desc_load(CHAT_PIPE);
    if (!d) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_pipeline_desc_set_param(d, "model", STORIES), MMP_OK);
    for (int i = 0; set && set[i]; i += 2)
        if (mmp_pipeline_desc_set_param(d, set[i], set[i + 1]) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 1;
    pp.on_text = r ? rec_text : NULL;
    pp.cb_user = r;
    pp.abort_cb = r ? rec_abort : NULL;
    pp.progress = r ? rec_progress : NULL;
    pp.store = store;
    mmp_pipeline *p = mmp_pipeline_new(d, reg, &pp);
    mmp_pipeline_desc_free(d);
    if (!p) fail_msg("chat.pipe: %s", mmp_last_error());
    return p;
}

static mmp_pipeline *chat_pipe(mmp_registry *reg, const char *const *set, rec *r) {
    return chat_pipe_store(reg, set, r, NULL);
}

/* Run chat.pipe on one text; returns the text output (malloc'ed), *ids the tokens output. */
static char *chat_run(mmp_pipeline *p, const char *text, mmp_array **ids) {
    mmp_array *in = text_array(text);
    const mmp_array *ins[3] = { in, NULL, NULL };   /* text, media, media_rows */
    mmp_array *out[3] = { 0 };
    if (mmp_pipeline_run(p, ins, out) != MMP_OK) fail_msg("chat.pipe run: %s", mmp_last_error());
    mmp_array_free(in);
    char *s = array_text(out[mmp_pipeline_find_output(p, "text")]);
    mmp_array *t = out[mmp_pipeline_find_output(p, "tokens")];
    if (ids) *ids = t;
    else mmp_array_free(t);
    mmp_array_free(out[mmp_pipeline_find_output(p, "text")]);
    return s;
}

static char *reference(size_t *len) {
    char *e = mmpt_read_file(mmpt_data("cli/expected_stdout.txt"), len);
    assert_non_null(e);
    return e;
}

/* Tokens of `text` as `mmpipe run` makes them (BOS added). */
static int32_t *tokenize(const mmp_tokenizer *tok, const char *text, size_t *n) {
    int32_t *ids = NULL;
    assert_int_equal(mmp_tokenizer_encode(tok, text, strlen(text), true, true, &ids, n), MMP_OK);
    return ids;
}

static mmp_stage *gen_stage(const char *options, rec *r) {
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = STORIES;
    sp.options = options;
    sp.n_threads = 1;
    sp.on_text = r ? rec_text : NULL;
    sp.progress = r ? rec_progress : NULL;
    sp.abort_cb = r ? rec_abort : NULL;
    sp.cb_user = r;
    mmp_registry *reg = mmp_registry_new();
    const mmp_stage_kind *k = mmp_registry_find(reg, "backbone.generate");
    assert_non_null(k);
    mmp_stage *s = mmp_stage_new(k, &sp);
    mmp_registry_free(reg);   /* the kind table is static: the stage does not need the registry */
    return s;
}

/* Run a backbone.generate stage on token ids; returns the text (malloc'ed). */
static char *gen_ids(mmp_stage *s, const int32_t *ids, int64_t n, mmp_array **gen_ids_out) {
    mmp_array *t = ids_array(ids, n);
    const mmp_array *in[3] = { NULL, t };
    mmp_array *out[3] = { 0 };
    if (mmp_stage_run(s, in, out) != MMP_OK) fail_msg("generate: %s", mmp_last_error());
    mmp_array_free(t);
    char *txt = array_text(out[0]);
    mmp_array_free(out[0]);
    if (gen_ids_out) *gen_ids_out = out[1];
    else mmp_array_free(out[1]);
    return txt;
}

/* ---- (1) chat.pipe, template none, greedy = `mmpipe run -n 200 --temp 0` ---- */

static void test_chat_pipe_matches_run(void **state) {
    (void)state;
    size_t elen;
    char *want = reference(&elen);
    /* the prompt: the reference's first words (its text up to the first comma); the reference
     * started from BOS alone, so prompt + answer must be the reference when the prompt's tokens
     * are the ones the model generated first and n counts the rest of the 200 */
    const char *comma = strchr(want, ',');
    assert_non_null(comma);
    char prompt[64];
    snprintf(prompt, sizeof prompt, "%.*s", (int)(comma - want), want);
    mmp_llm_load_params lp = mmp_llm_load_params_default();
    lp.vocab_only = true;
    mmp_llm *m = mmp_llm_load(STORIES, &lp);
    assert_non_null(m);
    size_t np;
    int32_t *pids = tokenize(mmp_llm_get_tokenizer(m), prompt, &np);
    char n_str[16];
    snprintf(n_str, sizeof n_str, "%d", 200 - (int)(np - 1));
    mmp_registry *reg = mmp_registry_new();
    rec r = { 0 };
    const char *set[] = { "template", "none", "temp", "0", "n", n_str, NULL };
    mmp_store *store = mmp_store_new();
    mmp_pipeline *p = chat_pipe_store(reg, set, &r, store);
    /* prompt.text and backbone.generate share one loaded LLM */
    mmp_store_stats ss = mmp_store_get_stats(store);
    assert_int_equal(ss.model_loads, 1);
    assert_int_equal(ss.models_loaded, 1);
    mmp_array *ids = NULL;
    char *ans = chat_run(p, prompt, &ids);
    size_t pl = strlen(prompt), al = strlen(ans);
    if (pl + al != elen || memcmp(want, prompt, pl) || memcmp(want + pl, ans, al))
        fail_msg("chat.pipe answered:\n[%s%s]\nwant:\n[%s]", prompt, ans, want);
    /* streaming gives exactly the text */
    assert_int_equal(r.n_text, al);
    assert_memory_equal(r.text, ans, al);
    assert_true(r.n_pieces > 10);
    /* the tokens output: n ids (no end of text within 200 tokens), whose pieces make the text */
    assert_int_equal(ids->dims[0], 200 - (int64_t)(np - 1));
    mmp_array_free(ids);
    free(ans);
    free(pids);
    mmp_pipeline_free(p);
    assert_int_equal(mmp_store_get_stats(store).models_loaded, 0);
    mmp_store_free(store);
    mmp_registry_free(reg);
    mmp_llm_free(m);
    free(want);
}

/* ---- (2) the same through the tokens input: [BOS] alone is exactly `mmpipe run` ---- */

static void test_tokens_input_matches_run(void **state) {
    (void)state;
    size_t elen;
    char *want = reference(&elen);
    mmp_stage *s = gen_stage("template=none,temp=0,n=200", NULL);
    if (!s) fail_msg("%s", mmp_last_error());
    int32_t bos = 1;
    mmp_array *g = NULL;
    char *ans = gen_ids(s, &bos, 1, &g);
    if (strlen(ans) != elen || memcmp(ans, want, elen)) fail_msg("generate from BOS:\n[%s]\nwant:\n[%s]", ans, want);
    assert_int_equal(g->dims[0], 200);
    /* a second run from scratch (keep=1 reuses nothing but BOS's slot) gives the same */
    char *again = gen_ids(s, &bos, 1, NULL);
    assert_string_equal(again, ans);
    free(again);
    mmp_array_free(g);
    free(ans);
    mmp_stage_free(s);
    free(want);
}

/* ---- (3) keep=1: the second prompt extends the first; same as a fresh stage, fewer rows ---- */

static void test_keep_prefix(void **state) {
    (void)state;
    mmp_registry *reg = mmp_registry_new();
    /* through the embeddings path (chat.pipe) */
    rec r = { 0 };
    const char *set[] = { "template", "none", "temp", "0", "n", "24", NULL };
    mmp_pipeline *p = chat_pipe(reg, set, &r);
    const char *first = "Once upon a time, there was a cat";
    char *a1 = chat_run(p, first, NULL);
    /* a conversation goes on: the first prompt, its answer, more text */
    char second[1024];
    snprintf(second, sizeof second, "%s%s. The cat liked", first, a1);
    char *a2 = chat_run(p, second, NULL);
    /* a fresh pipeline (keep=0) on the second prompt */
    const char *set0[] = { "template", "none", "temp", "0", "n", "24", "keep", "0", NULL };
    rec r0 = { 0 };
    mmp_pipeline *p0 = chat_pipe(reg, set0, &r0);
    char *f2 = chat_run(p0, second, NULL);
    assert_string_equal(a2, f2);
    mmp_pipeline_free(p0);
    mmp_pipeline_free(p);
    free(a1);
    free(a2);
    free(f2);
    mmp_registry_free(reg);

    /* the same with token ids and a stage, watching the rows decoded through progress */
    rec rk = { 0 }, rf = { 0 };
    mmp_stage *sk = gen_stage("template=none,temp=0,n=16", &rk), *sf = gen_stage("template=none,temp=0,n=16,keep=0", &rf);
    assert_non_null(sk);
    assert_non_null(sf);
    mmp_llm_load_params lp = mmp_llm_load_params_default();
    lp.vocab_only = true;
    mmp_llm *m = mmp_llm_load(STORIES, &lp);
    size_t n1;
    int32_t *p1 = tokenize(mmp_llm_get_tokenizer(m), "Lily saw a big dog", &n1);
    mmp_array *g1 = NULL;
    char *t1 = gen_ids(sk, p1, (int64_t)n1, &g1);
    assert_int_equal(rk.reused, 0);
    assert_int_equal(rk.prompt_rows, (int64_t)n1);
    /* prompt 2 = prompt 1 + the generated ids + two more ids of prompt 1 */
    int64_t ng = g1->dims[0], n2 = (int64_t)n1 + ng + 2;
    int32_t *p2 = malloc((size_t)n2 * sizeof *p2);
    memcpy(p2, p1, n1 * sizeof *p1);
    memcpy(p2 + n1, g1->data, (size_t)ng * sizeof *p2);
    p2[n1 + ng] = p1[1];
    p2[n1 + ng + 1] = p1[2];
    char *t2 = gen_ids(sk, p2, n2, NULL);
    /* the cache held prompt 1 and every generated id but the last (sampled, not decoded) */
    assert_int_equal(rk.reused, (int64_t)n1 + ng - 1);
    assert_int_equal(rk.prompt_rows, n2);
    char *f = gen_ids(sf, p2, n2, NULL);
    assert_int_equal(rf.reused, 0);
    assert_string_equal(t2, f);
    /* a prompt that diverges early keeps only the common part */
    p2[2] = p2[2] == 100 ? 101 : 100;
    free(gen_ids(sk, p2, n2, NULL));
    assert_int_equal(rk.reused, 2);
    free(t1);
    free(t2);
    free(f);
    free(p1);
    free(p2);
    mmp_array_free(g1);
    mmp_stage_free(sk);
    mmp_stage_free(sf);
    mmp_llm_free(m);
}

/* ---- (4) streaming, stopping from the callback, abort ---- */

static void test_streaming_stop_abort(void **state) {
    (void)state;
    mmp_registry *reg = mmp_registry_new();
    const char *set[] = { "template", "none", "temp", "0", "n", "40", NULL };
    rec r = { 0 };
    mmp_pipeline *p = chat_pipe(reg, set, &r);
    char *full = chat_run(p, "Once upon a time", NULL);
    assert_string_equal(r.text, full);
    /* false from on_text after 5 pieces: the answer is those 5 pieces, not an error */
    rec r5 = { .stop_after = 5 };
    mmp_pipeline *p5 = chat_pipe(reg, set, &r5);
    char *part = chat_run(p5, "Once upon a time", NULL);
    assert_int_equal(r5.n_pieces, 5);
    assert_string_equal(part, r5.text);
    assert_true(strlen(part) < strlen(full));
    assert_memory_equal(part, full, strlen(part));
    /* abort after a few polls: MMP_ERR_ABORTED, no outputs */
    rec ra = { .abort_after = 3 };
    mmp_pipeline *pa = chat_pipe(reg, set, &ra);
    mmp_array *in = text_array("Once upon a time");
    const mmp_array *ins[3] = { in, NULL, NULL };   /* text, media, media_rows */
    mmp_array *out[3] = { (mmp_array *)1, (mmp_array *)1, NULL };
    assert_int_equal(mmp_pipeline_run(pa, ins, out), MMP_ERR_ABORTED);
    assert_null(out[0]);
    assert_null(out[1]);
    mmpt_expect_error_mentions((const char *const[]){ "abort", NULL });
    assert_int_equal(ra.n_token_events, 3);
    assert_int_equal(ra.n_pieces, 3);
    /* and the pipeline still works afterwards */
    ra.abort_after = 0;
    ra.n_text = 0;
    char *again = chat_run(pa, "Once upon a time", NULL);
    assert_string_equal(again, full);
    mmp_array_free(in);
    free(again);
    free(full);
    free(part);
    mmp_pipeline_free(pa);
    mmp_pipeline_free(p5);
    mmp_pipeline_free(p);
    mmp_registry_free(reg);
}

/* ---- stop strings, end of turn, empty answers ---- */

static void test_stop_strings(void **state) {
    (void)state;
    size_t elen;
    char *want = reference(&elen);
    int32_t bos = 1;
    /* a stop string with a comma, escaped: the text ends right before it */
    const char *cut = strstr(want, ", red ball");
    assert_non_null(cut);
    mmp_stage *s = gen_stage("template=none,temp=0,n=200,stop=xyzzy,stop=\\, red ball", NULL);
    if (!s) fail_msg("%s", mmp_last_error());
    char *ans = gen_ids(s, &bos, 1, NULL);
    assert_int_equal(strlen(ans), (size_t)(cut - want));
    assert_memory_equal(ans, want, strlen(ans));
    free(ans);
    mmp_stage_free(s);
    /* a stop string that is the first generated text: an empty answer (0 bytes) */
    char first[8];
    snprintf(first, sizeof first, "%.4s", want);
    char opt[64];
    snprintf(opt, sizeof opt, "template=none,temp=0,n=50,stop=%s", first);
    rec r = { 0 };
    s = gen_stage(opt, &r);
    assert_non_null(s);
    mmp_array *t = ids_array(&bos, 1);
    const mmp_array *in[3] = { NULL, t };
    mmp_array *out[3] = { 0 };
    assert_int_equal(mmp_stage_run(s, in, out), MMP_OK);
    assert_int_equal(out[0]->dims[0], 0);
    assert_int_equal(mmp_array_nelements(out[0]), 0);
    assert_int_equal(r.n_pieces, 0);
    assert_true(out[1]->dims[0] >= 1);
    mmp_array_free(out[0]);
    mmp_array_free(out[1]);
    /* n=0: nothing generated */
    mmp_stage_free(s);
    s = gen_stage("n=0", NULL);
    assert_non_null(s);
    assert_int_equal(mmp_stage_run(s, in, out), MMP_OK);
    assert_int_equal(out[0]->dims[0], 0);
    assert_int_equal(out[1]->dims[0], 0);
    mmp_array_free(out[0]);
    mmp_array_free(out[1]);
    mmp_array_free(t);
    mmp_stage_free(s);
    free(want);
}

/* ---- prompt.text: templates as `mmpipe chat` renders them; media rows ---- */

static mmp_stage *prompt_stage(const char *options) {
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = STORIES;
    sp.options = options;
    mmp_registry *reg = mmp_registry_new();
    mmp_stage *s = mmp_stage_new(mmp_registry_find(reg, "prompt.text"), &sp);
    mmp_registry_free(reg);
    return s;
}

static enum mmp_status prompt_run(mmp_stage *s, const char *text, const mmp_array *media, mmp_array **emb, mmp_array **ids) {
    mmp_array *t = text_array(text);
    const mmp_array *in[3] = { t, media };
    mmp_array *out[3] = { 0 };
    enum mmp_status st = mmp_stage_run(s, in, out);
    mmp_array_free(t);
    *emb = out[0];
    *ids = out[1];
    return st;
}

static void test_prompt_text(void **state) {
    (void)state;
    mmp_llm *m = mmp_llm_load(STORIES, NULL);
    assert_non_null(m);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(m);
    int32_t n_embd = mmp_llm_get_hparams(m)->n_embd;
    /* llama2 template with a system message holding a comma: the ids `mmpipe chat` makes */
    mmp_stage *s = prompt_stage("template=llama2,system=Be kind\\, and brief.");
    if (!s) fail_msg("%s", mmp_last_error());
    mmp_array *emb = NULL, *ids = NULL;
    assert_int_equal(prompt_run(s, "Tell a story", NULL, &emb, &ids), MMP_OK);
    mmp_chat_msg msgs[2] = { { "system", "Be kind, and brief." }, { "user", "Tell a story" } };
    char *text = NULL;
    size_t tl = 0;
    const char *bos_text = mmp_tokenizer_token_text(tok, mmp_tokenizer_bos(tok), NULL);
    const char *eos_text = mmp_tokenizer_token_text(tok, mmp_tokenizer_eos(tok), NULL);
    assert_int_equal(mmp_chat_apply(MMP_CHAT_LLAMA2, msgs, 2, true, bos_text, eos_text, &text, &tl), MMP_OK);
    bool has_bos = !strncmp(text, bos_text, strlen(bos_text));
    int32_t *want = NULL;
    size_t nw = 0;
    assert_int_equal(mmp_tokenizer_encode(tok, text, tl, !has_bos, true, &want, &nw), MMP_OK);
    assert_int_equal(ids->dims[0], (int64_t)nw);
    assert_memory_equal(ids->data, want, nw * sizeof *want);
    /* the embeddings are the token embeddings of those ids */
    float *ref = malloc(nw * (size_t)n_embd * sizeof *ref);
    assert_int_equal(mmp_llm_embed_tokens(m, want, (int)nw, ref), MMP_OK);
    assert_int_equal(emb->dims[1], n_embd);
    assert_memory_equal(emb->data, ref, nw * (size_t)n_embd * sizeof *ref);
    free(ref);
    free(want);
    free(text);
    mmp_array_free(emb);
    mmp_array_free(ids);
    mmp_stage_free(s);

    /* media without a marker: all rows before the text (after BOS; no placeholder id in this
     * vocabulary: split mode, id -1 at media positions) */
    s = prompt_stage("template=none");
    assert_non_null(s);
    int64_t md[2] = { 6, n_embd };
    mmp_array *media = mmp_array_new(MMP_TYPE_F32, 2, md);
    mmpt_rand_fill(media->data, (size_t)(6 * n_embd), 7, -1, 1);
    assert_int_equal(prompt_run(s, "Hi", media, &emb, &ids), MMP_OK);
    /* (the piece after the media is tokenized without BOS) */
    int32_t *tail = NULL;
    size_t ntail = 0;
    assert_int_equal(mmp_tokenizer_encode(tok, "\nHi", 3, false, true, &tail, &ntail), MMP_OK);
    assert_int_equal(ids->dims[0], 1 + 6 + (int64_t)ntail);
    const int32_t *iv = ids->data;
    assert_int_equal(iv[0], mmp_tokenizer_bos(tok));
    for (int i = 1; i <= 6; i++) assert_int_equal(iv[i], -1);
    assert_memory_equal(iv + 7, tail, ntail * sizeof *tail);
    assert_memory_equal((float *)emb->data + n_embd, media->data, (size_t)(6 * n_embd) * sizeof(float));
    free(tail);
    mmp_array_free(emb);
    mmp_array_free(ids);
    /* two markers share the rows: 3 each, in order */
    assert_int_equal(prompt_run(s, "a<image>b<__media__>c", media, &emb, &ids), MMP_OK);
    iv = ids->data;
    int seen = 0;
    for (int64_t i = 0; i < ids->dims[0]; i++)
        if (iv[i] == -1) {
            assert_memory_equal((float *)emb->data + i * n_embd, (float *)media->data + seen * n_embd, (size_t)n_embd * sizeof(float));
            seen++;
        }
    assert_int_equal(seen, 6);
    mmp_array_free(emb);
    mmp_array_free(ids);
    /* a marker=TEXT of the caller's */
    mmp_stage *sm = prompt_stage("template=none,marker=[IMG]");
    assert_non_null(sm);
    assert_int_equal(prompt_run(sm, "look: [IMG] [IMG]!", media, &emb, &ids), MMP_OK);
    seen = 0;
    for (int64_t i = 0; i < ids->dims[0]; i++) seen += ((int32_t *)ids->data)[i] == -1;
    assert_int_equal(seen, 6);
    mmp_array_free(emb);
    mmp_array_free(ids);
    mmp_stage_free(sm);

    /* items of different sizes: media_rows {2, 4} gives the first marker 2 rows, the second 4 */
    {
        int64_t kd[1] = { 2 };
        mmp_array *rows = mmp_array_new(MMP_TYPE_I32, 1, kd);
        ((int32_t *)rows->data)[0] = 2;
        ((int32_t *)rows->data)[1] = 4;
        mmp_array *tt = text_array("x<audio>y<image>z");
        const mmp_array *in3[3] = { tt, media, rows };
        mmp_array *o3[3] = { 0 };
        assert_int_equal(mmp_stage_run(s, in3, o3), MMP_OK);
        const int32_t *iv3 = o3[1]->data;
        int64_t first = -1, run1 = 0, gap = 0, run2 = 0;
        for (int64_t i = 0; i < o3[1]->dims[0]; i++) {
            if (iv3[i] != -1) { if (run1 && !run2) gap++; continue; }
            if (first < 0) first = i;
            if (!gap) run1++; else run2++;
        }
        assert_int_equal(run1, 2);   /* "x" then 2 rows, "y", then 4 rows */
        assert_int_equal(run2, 4);
        assert_true(gap > 0);
        seen = 0;
        for (int64_t i = 0; i < o3[1]->dims[0]; i++)
            if (iv3[i] == -1) {
                assert_memory_equal((float *)o3[0]->data + i * n_embd, (float *)media->data + seen * n_embd, (size_t)n_embd * sizeof(float));
                seen++;
            }
        mmp_array_free(o3[0]);
        mmp_array_free(o3[1]);
        /* counts that do not add up, or do not match the markers, are refused by name */
        ((int32_t *)rows->data)[1] = 3;
        assert_int_equal(mmp_stage_run(s, in3, o3), MMP_ERR_SHAPE);
        mmpt_expect_error_mentions((const char *const[]){ "media_rows add up to 5", "6 rows", NULL });
        mmp_array_free(tt);
        tt = text_array("one <image> only");
        in3[0] = tt;
        assert_int_equal(mmp_stage_run(s, in3, o3), MMP_ERR_SHAPE);
        mmpt_expect_error_mentions((const char *const[]){ "media_rows lists 2 items", "1 media marker", NULL });
        mmp_array_free(tt);
        mmp_array_free(rows);
    }

    /* errors: a marker without media; rows that do not divide */
    assert_int_equal(prompt_run(s, "What is <image>?", NULL, &emb, &ids), MMP_ERR_INVALID_ARG);
    assert_null(emb);
    mmpt_expect_error_mentions((const char *const[]){ "1 media marker", "no media", NULL });
    assert_int_equal(prompt_run(s, "<image><image><image><image>", media, &emb, &ids), MMP_ERR_SHAPE);
    mmpt_expect_error_mentions((const char *const[]){ "6 rows", "4 media markers", NULL });
    mmp_array_free(media);
    mmp_stage_free(s);
    mmp_llm_free(m);
}

/* ---- (5) errors: inputs and options, each with a clear message ---- */

static void test_errors(void **state) {
    (void)state;
    mmp_stage *s = gen_stage("n=4", NULL);
    assert_non_null(s);
    const mmp_array *in[3] = { NULL, NULL };
    mmp_array *out[3] = { 0 };
    assert_int_equal(mmp_stage_run(s, in, out), MMP_ERR_INVALID_ARG);
    mmpt_expect_error_mentions((const char *const[]){ "embeddings", "tokens", "neither", NULL });
    int32_t bad = 999999;
    mmp_array *t = ids_array(&bad, 1);
    in[1] = t;
    assert_int_equal(mmp_stage_run(s, in, out), MMP_ERR_INVALID_ARG);
    mmpt_expect_error_mentions((const char *const[]){ "999999", "vocabulary", NULL });
    mmp_array_free(t);
    /* a prompt longer than the context */
    mmp_stage_free(s);
    s = gen_stage("ctx=8", NULL);
    assert_non_null(s);
    int32_t ids[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    t = ids_array(ids, 12);
    in[1] = t;
    assert_int_equal(mmp_stage_run(s, in, out), MMP_ERR_LIMIT);
    mmpt_expect_error_mentions((const char *const[]){ "12 rows", "context holds 8", "ctx=N", NULL });
    mmp_array_free(t);
    mmp_stage_free(s);
    /* the context fills during generation: the text so far, not an error */
    s = gen_stage("ctx=16,temp=0,n=100", NULL);
    assert_non_null(s);
    int32_t bos = 1;
    mmp_array *g = NULL;
    char *txt = gen_ids(s, &bos, 1, &g);
    assert_int_equal(g->dims[0], 16);   /* 15 decoded after BOS, the 16th sampled */
    assert_true(strlen(txt) > 10);
    free(txt);
    mmp_array_free(g);
    mmp_stage_free(s);

    struct { const char *kind, *opt, *needle; } bad_opts[] = {
        { "backbone.generate", "n=abc", "n='abc'" },
        { "backbone.generate", "temp=-1", "temp='-1'" },
        { "backbone.generate", "top_p=0", "top_p" },
        { "backbone.generate", "kv=q8", "kv='q8'" },
        { "backbone.generate", "keep=2", "keep='2'" },
        { "backbone.generate", "seed=-3", "seed='-3'" },
        { "backbone.generate", "colour=red", "unknown option 'colour'" },
        { "backbone.generate", "template=vicuna", "unknown chat template 'vicuna'" },
        { "backbone.generate", "stop=a\\", "lone backslash" },
        { "prompt.text", "template=vicuna", "unknown chat template 'vicuna'" },
        { "prompt.text", "system=Hello", "needs a chat template" },
        { "prompt.text", "bos=2", "bos='2'" },
        { "prompt.text", "marker=", "marker=" },
        { "prompt.text", "size=3", "unknown option 'size'" },
    };
    mmp_registry *reg = mmp_registry_new();
    for (size_t i = 0; i < sizeof bad_opts / sizeof bad_opts[0]; i++) {
        mmp_stage_params sp = mmp_stage_params_default();
        sp.model_path = STORIES;
        sp.options = bad_opts[i].opt;
        mmp_stage *b = mmp_stage_new(mmp_registry_find(reg, bad_opts[i].kind), &sp);
        if (b) fail_msg("%s options=%s was accepted", bad_opts[i].kind, bad_opts[i].opt);
        mmpt_expect_error_mentions((const char *const[]){ bad_opts[i].needle, NULL });
    }
    /* no model; a model that does not exist */
    mmp_stage_params sp = mmp_stage_params_default();
    assert_null(mmp_stage_new(mmp_registry_find(reg, "backbone.generate"), &sp));
    mmpt_expect_error_mentions((const char *const[]){ "model", NULL });
    sp.model_path = "/nonexistent/model.gguf";
    assert_null(mmp_stage_new(mmp_registry_find(reg, "prompt.text"), &sp));
    mmpt_expect_error_mentions((const char *const[]){ "/nonexistent/model.gguf", NULL });
    /* the model's template is needed for system= with template=auto: stories260K has none */
    sp.model_path = STORIES;
    sp.options = "system=Hi";
    assert_null(mmp_stage_new(mmp_registry_find(reg, "prompt.text"), &sp));
    mmpt_expect_error_mentions((const char *const[]){ "needs a chat template", NULL });
    mmp_registry_free(reg);
}

/* ---- (6) llava_mixtral golden: media through prompt.embed + backbone.generate = greedy ids ---- */


static void test_llava_greedy(void **state) {
    (void)state;
    char model[1024], io[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("pipe/llava_mixtral"));
    snprintf(io, sizeof io, "%s", mmpt_data("pipe/llava_mixtral/io.safetensors"));
    mmp_safetensors *g = mmp_safetensors_open(io);
    assert_non_null(g);
    mmp_array *ids = mmpt_golden_array(g, "input_ids", MMP_TYPE_I32), *pix = mmpt_golden_array(g, "pixel_values", MMP_TYPE_F32);
    mmp_array *want = mmpt_golden_array(g, "greedy_ids", MMP_TYPE_I32);
    char n_opt[32];
    snprintf(n_opt, sizeof n_opt, "n=%lld,temp=0", (long long)want->dims[0]);
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_new("llava-generate");
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "clip", "encoder.clip", model, NULL, "layer=-2,drop_cls=1"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "mlp", "projector.mlp", model, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "prompt", "prompt.embed", model, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "gen", "backbone.generate", model, NULL, n_opt), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_input(d, "pixels", "clip.pixels"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_input(d, "tokens", "prompt.tokens"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "clip.hidden", "mlp.hidden"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "mlp.embeddings", "prompt.media"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "prompt.embeddings", "gen.embeddings"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "ids", "gen.tokens"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "text", "gen.text"), MMP_OK);
    mmp_pipeline *p = mmp_pipeline_new(d, reg, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    const mmp_array *in[3] = { 0 };
    in[mmp_pipeline_find_input(p, "pixels")] = pix;
    in[mmp_pipeline_find_input(p, "tokens")] = ids;
    mmp_array *out[3] = { 0 };
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_array *got = out[mmp_pipeline_find_output(p, "ids")];
    assert_int_equal(got->dims[0], want->dims[0]);
    assert_memory_equal(got->data, want->data, (size_t)want->dims[0] * sizeof(int32_t));
    /* this model folder has no tokenizer: ids only, the text is empty */
    assert_int_equal(out[mmp_pipeline_find_output(p, "text")]->dims[0], 0);
    mmp_array_free(out[0]);
    mmp_array_free(out[1]);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    mmp_array_free(ids);
    mmp_array_free(pix);
    mmp_array_free(want);
    mmp_safetensors_free(g);
}

/* ---- prompt.text in expand mode (a vocabulary with the <image> placeholder): the HF layout,
 * the same rows as prompt.embed (golden-tested) gives, the same greedy ids ---- */

static void test_llava_prompt_text(void **state) {
    (void)state;
    char model[1024], io[1024];
    snprintf(model, sizeof model, "%s", mmpt_data("mm/llava_mixtral"));
    snprintf(io, sizeof io, "%s", mmpt_data("mm/llava_mixtral/io.safetensors"));
    mmp_safetensors *g = mmp_safetensors_open(io);
    assert_non_null(g);
    mmp_array *pix = mmpt_golden_array(g, "pixel_values", MMP_TYPE_F32);
    mmp_registry *reg = mmp_registry_new();
    /* A: clip -> mlp -> prompt.text (text with one <image>) -> generate;
     * B: the same media and prompt.text's ids -> prompt.embed -> generate */
    mmp_pipeline_desc *d = mmp_pipeline_desc_new("llava-text");
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "clip", "encoder.clip", model, NULL, "layer=-2,drop_cls=1"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "mlp", "projector.mlp", model, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "pt", "prompt.text", model, NULL, "template=none"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "pe", "prompt.embed", model, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "ga", "backbone.generate", model, NULL, "n=8,temp=0"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_stage(d, "gb", "backbone.generate", model, NULL, "n=8,temp=0"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_input(d, "pixels", "clip.pixels"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_input(d, "text", "pt.text"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "clip.hidden", "mlp.hidden"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "mlp.embeddings", "pt.media"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "mlp.embeddings", "pe.media"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "pt.tokens", "pe.tokens"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "pt.embeddings", "ga.embeddings"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_connect(d, "pe.embeddings", "gb.embeddings"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "ids", "pt.tokens"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "emb_a", "pt.embeddings"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "emb_b", "pe.embeddings"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "gen_a", "ga.tokens"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "gen_b", "gb.tokens"), MMP_OK);
    assert_int_equal(mmp_pipeline_desc_add_output(d, "text_a", "ga.text"), MMP_OK);
    mmp_pipeline *p = mmp_pipeline_new(d, reg, NULL);
    if (!p) fail_msg("%s", mmp_last_error());
    mmp_array *txt = text_array("cans mx<image>nd4 kagra Lb,");
    const mmp_array *in[3] = { 0 };
    in[mmp_pipeline_find_input(p, "pixels")] = pix;
    in[mmp_pipeline_find_input(p, "text")] = txt;
    mmp_array *out[6] = { 0 };
    if (mmp_pipeline_run(p, in, out) != MMP_OK) fail_msg("%s", mmp_last_error());
#define OUT(name) out[mmp_pipeline_find_output(p, name)]
    /* the ids: the text tokenized with the marker expanded to one <image> per patch (16) */
    mmp_llm_load_params lp = mmp_llm_load_params_default();
    lp.vocab_only = true;
    mmp_llm *m = mmp_llm_load(model, &lp);
    assert_non_null(m);
    char expanded[512] = "cans mx";
    for (int i = 0; i < 16; i++) strcat(expanded, "<image>");
    strcat(expanded, "nd4 kagra Lb,");
    size_t nw;
    int32_t *want = tokenize(mmp_llm_get_tokenizer(m), expanded, &nw);
    mmp_array *ids = OUT("ids");
    assert_int_equal(ids->dims[0], (int64_t)nw);
    assert_memory_equal(ids->data, want, nw * sizeof *want);
    int n255 = 0;
    for (size_t i = 0; i < nw; i++) n255 += want[i] == 255;
    assert_int_equal(n255, 16);
    /* the rows are prompt.embed's, bit for bit, and so are the greedy ids */
    assert_int_equal(mmp_array_nbytes(OUT("emb_a")), mmp_array_nbytes(OUT("emb_b")));
    assert_memory_equal(OUT("emb_a")->data, OUT("emb_b")->data, mmp_array_nbytes(OUT("emb_a")));
    assert_int_equal(OUT("gen_a")->dims[0], OUT("gen_b")->dims[0]);
    assert_memory_equal(OUT("gen_a")->data, OUT("gen_b")->data, mmp_array_nbytes(OUT("gen_a")));
    /* this folder has a tokenizer: the text is the ids' pieces (EOG excluded) */
    assert_true(OUT("gen_a")->dims[0] > 0);
#undef OUT
    for (int i = 0; i < 6; i++) mmp_array_free(out[i]);
    /* template=auto: the model's [INST] template (recognised as mistral), as `mmpipe chat` renders it */
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = model;
    mmp_stage *st = mmp_stage_new(mmp_registry_find(reg, "prompt.text"), &sp);
    if (!st) fail_msg("%s", mmp_last_error());
    mmp_array *emb = NULL, *tids = NULL;
    assert_int_equal(prompt_run(st, "hi there", NULL, &emb, &tids), MMP_OK);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(m);
    mmp_chat_msg msg = { "user", "hi there" };
    char *r = NULL;
    size_t rl = 0;
    assert_int_equal(mmp_chat_apply(MMP_CHAT_MISTRAL, &msg, 1, true, "<s>", "</s>", &r, &rl), MMP_OK);
    int32_t *rw = NULL;
    size_t nrw = 0;
    assert_int_equal(mmp_tokenizer_encode(tok, r, rl, strncmp(r, "<s>", 3) != 0, true, &rw, &nrw), MMP_OK);
    assert_int_equal(tids->dims[0], (int64_t)nrw);
    assert_memory_equal(tids->data, rw, nrw * sizeof *rw);
    assert_int_equal(((int32_t *)tids->data)[0], mmp_tokenizer_bos(tok));   /* BOS once */
    assert_true(nrw < 2 || ((int32_t *)tids->data)[1] != mmp_tokenizer_bos(tok));
    free(r);
    free(rw);
    mmp_array_free(emb);
    mmp_array_free(tids);
    mmp_stage_free(st);
    free(want);
    mmp_llm_free(m);
    mmp_array_free(txt);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    mmp_array_free(pix);
    mmp_safetensors_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_pipe_matches_run),
        cmocka_unit_test(test_tokens_input_matches_run),
        cmocka_unit_test(test_keep_prefix),
        cmocka_unit_test(test_streaming_stop_abort),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_prompt_text),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_llava_greedy),
        cmocka_unit_test(test_llava_prompt_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
