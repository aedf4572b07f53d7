/* The audio pipelines against the mtmd path (mmp_mm_encode_audio, what `mmpipe caption
 * --audio` computes): pipelines/qwen2-audio.pipe, ultravox.pipe and voxtral.pipe (frontend.mel
 * window=auto -> encoder.whisper with valid -> projector with rows) must give exactly the same
 * embeddings for audio shorter than, equal to and longer than one window, and the
 * audio-chat-*.pipe the same greedy tokens as mmp_mm_encode_audio + mmp_mm_prompt_from_text +
 * greedy decoding.
 *
 * Models: tests/data/mm/qwen2_audio (golden Qwen2-Audio: a 50-position tower, so a window is
 * 100 frames = 1 s) and, for Ultravox and Voxtral, folders made here from its audio tower plus
 * a seeded random projector of the family (the LLM stays qwen2_audio's, hidden size 64);
 * Voxtral also as a llama.cpp-style mmproj GGUF (clip.projector_type "voxtral": the tower then
 * pools and masks its padding as Qwen2-Audio's does, and stacks 4 frames). */
#include "testutil.h"
#include "mmpipe/mmpipe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { NT = 2, D = 64, WIN = 16000 /* samples per window of the tiny tower */ };

#define QA mmpt_data("mm/qwen2_audio")

/* ---- model folders ---- */

static float *rnd(size_t n, uint64_t seed, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    mmpt_rand_fill(x, n, seed, lo, hi);
    return x;
}

static void st_add(mmp_safetensors_writer *w, const char *name, int n_dims, int64_t d0, int64_t d1, const float *x) {
    int64_t shape[2] = {d0, d1};
    assert_int_equal(mmp_safetensors_writer_add(w, name, MMP_TYPE_F32, n_dims, shape, x), MMP_OK);
}

/* A folder with qwen2_audio's audio tower (audio_tower.*, config as a plain Whisper encoder: no
 * pool) and a random projector of `model_type` ("ultravox": stack 8, SwiGLU, ln_mid; "voxtral":
 * stack 4, linear + GELU + linear with biases), projecting to 64 (the LLM's width). */
static char *make_hf(const char *model_type) {
    char *dir = mmpt_make_temp_dir(model_type);
    mmp_modelfile *mf = mmp_modelfile_open(QA);
    if (!mf) fail_msg("%s", mmp_last_error());
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    for (int64_t i = 0; i < mmp_modelfile_n_tensors(mf); i++) {
        const mmp_tensor_info *t = mmp_modelfile_tensor(mf, i);
        if (strncmp(t->name, "audio_tower.", 12) != 0) continue;
        assert_int_equal(mmp_safetensors_writer_add_ne(w, t->name, t->type, t->n_dims, t->ne, t->data), MMP_OK);
    }
    mmp_modelfile_free(mf);
    const char *audio_cfg = "\"audio_config\": {\"model_type\": \"whisper\", \"d_model\": 64, \"hidden_size\": 64, "
                            "\"encoder_attention_heads\": 4, \"encoder_layers\": 2, \"encoder_ffn_dim\": 160, "
                            "\"num_mel_bins\": 80, \"max_source_positions\": 50}";
    char cfg[512];
    if (!strcmp(model_type, "ultravox")) {
        const int S = 8, H = 40;
        float *pre = rnd(D * S, 21, 0.5f, 1.5f), *l1 = rnd((size_t)2 * H * D * S, 22, -0.06f, 0.06f);
        float *mid = rnd(H, 23, 0.5f, 1.5f), *l2 = rnd((size_t)D * H, 24, -0.2f, 0.2f);
        st_add(w, "multi_modal_projector.ln_pre.weight", 1, D * S, 0, pre);
        st_add(w, "multi_modal_projector.linear_1.weight", 2, 2 * H, D * S, l1);
        st_add(w, "multi_modal_projector.ln_mid.weight", 1, H, 0, mid);
        st_add(w, "multi_modal_projector.linear_2.weight", 2, D, H, l2);
        free(pre); free(l1); free(mid); free(l2);
        snprintf(cfg, sizeof cfg, "{\"model_type\": \"ultravox\", \"stack_factor\": 8, %s}", audio_cfg);
    } else {
        const int S = 4, M = 48;
        float *l1 = rnd((size_t)M * D * S, 31, -0.08f, 0.08f), *b1 = rnd(M, 32, -0.1f, 0.1f);
        float *l2 = rnd((size_t)D * M, 33, -0.2f, 0.2f), *b2 = rnd(D, 34, -0.1f, 0.1f);
        st_add(w, "multi_modal_projector.linear_1.weight", 2, M, D * S, l1);
        st_add(w, "multi_modal_projector.linear_1.bias", 1, M, 0, b1);
        st_add(w, "multi_modal_projector.linear_2.weight", 2, D, M, l2);
        st_add(w, "multi_modal_projector.linear_2.bias", 1, D, 0, b2);
        free(l1); free(b1); free(l2); free(b2);
        snprintf(cfg, sizeof cfg, "{\"model_type\": \"voxtral\", %s}", audio_cfg);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(w, path), MMP_OK);
    mmp_safetensors_writer_free(w);
    mmpt_write_text(dir, "config.json", cfg);
    return dir;
}

/* qwen2_audio's tower under llama.cpp's mmproj names (a.*) + a random Voxtral projector
 * (mm.a.mlp.*), clip.projector_type "voxtral": the tower pools 2 and masks its padding. */
static char *make_voxtral_gguf(void) {
    char *path = mmpt_write_temp("", 0, "-voxtral-mmproj.gguf");
    assert_non_null(path);
    mmp_modelfile *mf = mmp_modelfile_open(QA);
    if (!mf) fail_msg("%s", mmp_last_error());
    mmp_gguf_writer *g = mmp_gguf_writer_new();
    assert_int_equal(mmp_gguf_writer_add_str(g, "clip.projector_type", "voxtral"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(g, "clip.audio.embedding_length", 64), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(g, "clip.audio.feed_forward_length", 160), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(g, "clip.audio.block_count", 2), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(g, "clip.audio.attention.head_count", 4), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(g, "clip.audio.num_mel_bins", 80), MMP_OK);
    static const char *const map[][2] = {
        {"conv1.", "a.conv1d.1."}, {"conv2.", "a.conv1d.2."}, {"embed_positions.", "a.position_embd."},
        {"layer_norm.", "a.post_ln."}, {"self_attn_layer_norm.", "ln1."}, {"self_attn.q_proj.", "attn_q."},
        {"self_attn.k_proj.", "attn_k."}, {"self_attn.v_proj.", "attn_v."}, {"self_attn.out_proj.", "attn_out."},
        {"final_layer_norm.", "ln2."}, {"fc1.", "ffn_up."}, {"fc2.", "ffn_down."},
    };
    /* names stay alive until the write: the writer borrows the data, not the names */
    char names[64][96];
    int n_names = 0;
    for (int64_t i = 0; i < mmp_modelfile_n_tensors(mf); i++) {
        const mmp_tensor_info *t = mmp_modelfile_tensor(mf, i);
        const char *nm = t->name;
        if (strncmp(nm, "audio_tower.", 12) != 0) continue;
        nm += 12;
        int layer = -1;
        if (!strncmp(nm, "layers.", 7)) {
            layer = atoi(nm + 7);
            nm = strchr(nm + 7, '.') + 1;
        }
        const char *to = NULL, *rest = NULL;
        for (size_t k = 0; k < sizeof map / sizeof map[0] && !to; k++)
            if (!strncmp(nm, map[k][0], strlen(map[k][0]))) {
                to = map[k][1];
                rest = nm + strlen(map[k][0]);
            }
        if (!to) fail_msg("unmapped tensor %s", t->name);
        assert_true(n_names < 64);
        if (layer >= 0) snprintf(names[n_names], sizeof names[0], "a.blk.%d.%s%s", layer, to, rest);
        else snprintf(names[n_names], sizeof names[0], "%s%s", to, rest);
        assert_int_equal(mmp_gguf_writer_add_tensor(g, names[n_names], t->type, t->n_dims, t->ne, t->data), MMP_OK);
        n_names++;
    }
    const int S = 4, M = 48;
    float *l1 = rnd((size_t)M * D * S, 41, -0.08f, 0.08f), *b1 = rnd(M, 42, -0.1f, 0.1f);
    float *l2 = rnd((size_t)D * M, 43, -0.2f, 0.2f), *b2 = rnd(D, 44, -0.1f, 0.1f);
    int64_t ne1[2] = {D * S, M}, nb1[1] = {M}, ne2[2] = {M, D}, nb2[1] = {D};
    assert_int_equal(mmp_gguf_writer_add_tensor(g, "mm.a.mlp.1.weight", MMP_TYPE_F32, 2, ne1, l1), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_tensor(g, "mm.a.mlp.1.bias", MMP_TYPE_F32, 1, nb1, b1), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_tensor(g, "mm.a.mlp.2.weight", MMP_TYPE_F32, 2, ne2, l2), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_tensor(g, "mm.a.mlp.2.bias", MMP_TYPE_F32, 1, nb2, b2), MMP_OK);
    if (mmp_gguf_writer_write(g, path) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_gguf_writer_free(g);
    free(l1); free(b1); free(l2); free(b2);
    mmp_modelfile_free(mf);
    return path;
}

/* ---- helpers ---- */

/* a tone, a sweep and noise: every window differs and has structure */
static float *synth(int64_t n, uint64_t seed) {
    float *x = rnd((size_t)(n > 0 ? n : 1), seed, -0.05f, 0.05f);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / 16000.0;
        x[i] += (float)(0.3 * sin(2 * M_PI * 440.0 * t) + 0.2 * sin(2 * M_PI * (200.0 + 900.0 * t) * t));
    }
    return x;
}

/* a stock pipeline; r must outlive it */
static mmp_pipeline *stock_pipe(const mmp_registry *r, const char *name, const char *const *params) {
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock(name);
    if (!d) fail_msg("%s", mmp_last_error());
    for (int i = 0; params[i]; i += 2)
        if (mmp_pipeline_desc_set_param(d, params[i], params[i + 1]) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = NT;
    mmp_pipeline *p = mmp_pipeline_new(d, r, &pp);
    if (!p) fail_msg("%s: %s", name, mmp_last_error());
    mmp_pipeline_desc_free(d);
    return p;
}

static mmp_array *run1(mmp_pipeline *p, const char *in_name, const mmp_array *in, const char *out_name) {
    const mmp_array *ins[8] = {0};
    mmp_array *outs[8] = {0};
    int ii = mmp_pipeline_find_input(p, in_name), oi = mmp_pipeline_find_output(p, out_name);
    assert_true(ii >= 0 && oi >= 0);
    ins[ii] = in;
    if (mmp_pipeline_run(p, ins, outs) != MMP_OK) fail_msg("run: %s", mmp_last_error());
    mmp_array *o = outs[oi];
    for (int i = 0; i < mmp_pipeline_n_outputs(p); i++)
        if (i != oi) mmp_array_free(outs[i]);
    return o;
}

static mmp_mm *mtmd_load(const mmp_llm *llm, const char *mmproj) {
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = NT;
    mmp_mm *mm = mmp_mm_load(QA, mmproj, llm, &mp);
    if (!mm) fail_msg("%s", mmp_last_error());
    return mm;
}

/* The audio side `pipe` on model `audio` == mmp_mm_encode_audio with `mmproj` (NULL: the
 * qwen2_audio folder itself) for lengths below, at and above one window (1 s here). */
static void same_as_mtmd(const char *pipe, const char *audio, const char *mmproj, const int32_t *want_tok) {
    mmp_llm *llm = mmp_llm_load(QA, NULL);
    assert_non_null(llm);
    mmp_mm *mm = mtmd_load(llm, mmproj);
    mmp_registry *r = mmp_registry_new();
    mmp_pipeline *p = stock_pipe(r, pipe, (const char *const[]){"model", audio, NULL});
    static const int64_t lens[] = {1, 159, 161, 8000, WIN - 1, WIN, WIN + 1, 2 * WIN, 40000, 3 * WIN + 4321};
    printf("  %s:", pipe);
    for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++) {
        int64_t n = lens[c];
        float *x = synth(n, 100 + c);
        float *ref = NULL;
        int32_t nt = 0;
        if (mmp_mm_encode_audio(mm, x, n, &ref, &nt) != MMP_OK) fail_msg("mtmd: %s", mmp_last_error());
        mmp_array *a = mmp_array_wrap(MMP_TYPE_F32, 1, &n, x);
        mmp_array *e = run1(p, "audio", a, "embeddings");
        printf(" %lld->%d", (long long)n, nt);
        if (e->dims[0] != nt || e->dims[1] != D)
            fail_msg("%s, %lld samples: the pipeline gives [%lld, %lld], mtmd [%d, %d]", pipe, (long long)n, (long long)e->dims[0],
                     (long long)e->dims[1], nt, D);
        if (memcmp(e->data, ref, (size_t)nt * D * sizeof(float)) != 0)
            fail_msg("%s, %lld samples: not bit-identical to mtmd (rel L2 %.3g)", pipe, (long long)n,
                     mmpt_rel_l2(e->data, ref, (size_t)nt * D));
        if (want_tok && (n == 8000 || n == WIN || n == 40000)) {
            int32_t w = n == 8000 ? want_tok[0] : n == WIN ? want_tok[1] : want_tok[2];
            assert_int_equal(nt, w);
        }
        for (int64_t i = 0; i < (int64_t)nt * D; i++) assert_true(isfinite(ref[i]));
        mmp_array_free(e);
        mmp_array_free(a);
        free(ref);
        free(x);
    }
    printf(" (samples -> audio rows, bit-identical)\n");
    mmp_pipeline_free(p);
    mmp_registry_free(r);
    mmp_mm_free(mm);
    mmp_llm_free(llm);
}

/* ---- embeddings ---- */

static void test_qwen2_audio_embeddings(void **state) {
    (void)state;
    /* 0.5 s: 50 valid frames -> 25 conv rows -> (25 - 2) / 2 + 1 = 12; 1 s: 25; 2.5 s: 25 + 25 + 12 */
    same_as_mtmd("qwen2-audio", QA, NULL, (const int32_t[]){12, 25, 62});
}

static void test_ultravox_embeddings(void **state) {
    (void)state;
    char *dir = make_hf("ultravox");
    /* no pool: 0.5 s -> 25 rows -> ceil(25 / 8) = 4; 1 s: 50 -> 7; 2.5 s: 7 + 7 + 4 */
    same_as_mtmd("ultravox", dir, dir, (const int32_t[]){4, 7, 18});
    mmpt_rm_model_dir(dir);
}

static void test_voxtral_embeddings(void **state) {
    (void)state;
    char *dir = make_hf("voxtral");
    /* no pool (HF folder): 0.5 s -> 25 rows -> ceil(25 / 4) = 7; 1 s: 50 -> 13; 2.5 s: 13 + 13 + 7 */
    same_as_mtmd("voxtral", dir, dir, (const int32_t[]){7, 13, 33});
    mmpt_rm_model_dir(dir);
    char *gguf = make_voxtral_gguf();
    /* the GGUF tower pools and masks: 0.5 s -> 12 rows -> 3; 1 s: 25 -> 7; 2.5 s: 7 + 7 + 3 */
    same_as_mtmd("voxtral", gguf, gguf, (const int32_t[]){3, 7, 17});
    unlink(gguf);
    free(gguf);
}

/* ---- audio chat: greedy tokens ---- */

/* greedy tokens after a prompt, stopping after n tokens or at EOS / EOT (not included: what
 * backbone.generate's tokens output holds), as `mmpipe caption` */
static int mtmd_greedy(const mmp_llm *m, const mmp_mm_prompt *pr, int n, int32_t *ids) {
    const mmp_llm_hparams *h = mmp_llm_get_hparams(m);
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, NULL);
    assert_non_null(c);
    float *logits = malloc((size_t)h->n_vocab * sizeof(float));
    if (mmp_mm_prompt_decode(c, m, pr, 0, 0, logits, false) != MMP_OK) fail_msg("%s", mmp_last_error());
    int k = 0;
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(m);
    const int32_t eos = mmp_tokenizer_eos(tok), eot = mmp_tokenizer_eot(tok);
    while (k < n) {
        int32_t t = (int32_t)mmpt_argmax(logits, h->n_vocab);
        if (t == eos || t == eot) break;
        ids[k++] = t;
        mmp_llm_batch b = {.n = 1, .tokens = &t, .logits = logits};
        if (mmp_llm_decode(c, &b) != MMP_OK) fail_msg("%s", mmp_last_error());
    }
    free(logits);
    mmp_llm_ctx_free(c);
    return k;
}

static void print_ids(const char *what, const int32_t *ids, int64_t n) {
    printf("    %s:", what);
    for (int64_t i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* audio-chat-<fam>.pipe as is (model = the qwen2_audio LLM, encoder = the audio side) on the
 * test clip (2.5 s: three windows) and a text prompt == the mtmd path. */
static void chat_same_as_mtmd(const char *pipe, const char *encoder) {
    enum { N = 10 };
    const char *prompt = "Audio: <audio> Transcript of the speech:";
    float *x = NULL;
    int64_t n = 0;
    if (mmp_audio_decode_file(mmpt_data("mm/qwen2_audio/audio.wav"), 60.0, &x, &n, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
    mmp_registry *r = mmp_registry_new();
    mmp_pipeline *p = stock_pipe(r, pipe, (const char *const[]){"model", QA, "encoder", encoder ? encoder : QA, "n", "10", "template",
                                                             "none", NULL});
    mmp_array *a = mmp_array_wrap(MMP_TYPE_F32, 1, &n, x);
    int64_t tl = (int64_t)strlen(prompt);
    mmp_array *t = mmp_array_wrap(MMP_TYPE_U8, 1, &tl, (void *)prompt);
    const mmp_array *ins[8] = {0};
    mmp_array *outs[8] = {0};
    ins[mmp_pipeline_find_input(p, "audio")] = a;
    ins[mmp_pipeline_find_input(p, "text")] = t;
    if (mmp_pipeline_run(p, ins, outs) != MMP_OK) fail_msg("%s: %s", pipe, mmp_last_error());
    const mmp_array *got = outs[mmp_pipeline_find_output(p, "tokens")], *text = outs[mmp_pipeline_find_output(p, "text")];

    mmp_llm *llm = mmp_llm_load(QA, NULL);
    assert_non_null(llm);
    mmp_mm *mm = mtmd_load(llm, encoder);
    float *emb = NULL;
    int32_t nt = 0;
    assert_int_equal(mmp_mm_encode_audio(mm, x, n, &emb, &nt), MMP_OK);
    mmp_media med = {MMP_MEDIA_AUDIO, nt, mmp_mm_n_embd(mm), emb};
    mmp_mm_prompt *pr = mmp_mm_prompt_from_text(mmp_llm_get_tokenizer(llm), prompt, strlen(prompt), true, mmp_mm_get_markers(mm),
                                                &med, 1);
    if (!pr) fail_msg("%s", mmp_last_error());
    int32_t ref[N];
    int nr = mtmd_greedy(llm, pr, N, ref);
    printf("  %s: %d audio rows, %d prompt positions\n", pipe, nt, mmp_mm_prompt_n_pos(pr));
    print_ids("pipeline", got->data, got->dims[0]);
    print_ids("mtmd    ", ref, nr);
    printf("    text: '%.*s'\n", (int)text->dims[0], (const char *)text->data);
    assert_int_equal(got->dims[0], nr);
    assert_memory_equal(got->data, ref, (size_t)nr * sizeof(int32_t));
    mmp_mm_prompt_free(pr);
    free(emb);
    mmp_mm_free(mm);
    mmp_llm_free(llm);
    for (int i = 0; i < mmp_pipeline_n_outputs(p); i++) mmp_array_free(outs[i]);
    mmp_array_free(a);
    mmp_array_free(t);
    mmp_pipeline_free(p);
    mmp_registry_free(r);
    free(x);
}

static void test_audio_chat(void **state) {
    (void)state;
    chat_same_as_mtmd("audio-chat-qwen2", NULL);
    char *dir = make_hf("ultravox");
    chat_same_as_mtmd("audio-chat-ultravox", dir);
    mmpt_rm_model_dir(dir);
    char *gguf = make_voxtral_gguf();
    chat_same_as_mtmd("audio-chat-voxtral", gguf);
    unlink(gguf);
    free(gguf);
}

/* ---- the stages' window ports and their errors ---- */

static mmp_stage *stage(const char *kind, const char *model, const char *options) {
    mmp_registry *r = mmp_registry_new();
    mmp_stage_params sp = mmp_stage_params_default();
    sp.model_path = model;
    sp.options = options;
    sp.n_threads = NT;
    const mmp_stage_kind *k = mmp_registry_find(r, kind);
    assert_non_null(k);
    mmp_stage *s = mmp_stage_new(k, &sp);
    mmp_registry_free(r);
    return s;
}

static void test_stage_windows(void **state) {
    (void)state;
    const mmp_array *in[MMP_STAGE_MAX_PORTS] = {0};
    mmp_array *out[MMP_STAGE_MAX_PORTS] = {0};
    /* window=auto without a model: 30 s windows; 1 s -> one window, 100 frames of audio */
    mmp_stage *mel = stage("frontend.mel", NULL, "window=auto");
    assert_non_null(mel);
    assert_int_equal(mmp_stage_output(mel, 0)->type.dims[1], MMP_DIM_ANY);
    int64_t n = WIN;
    float *x = synth(n, 7);
    mmp_array *a = mmp_array_wrap(MMP_TYPE_F32, 1, &n, x);
    in[0] = a;
    assert_int_equal(mmp_stage_run(mel, in, out), MMP_OK);
    assert_int_equal(out[0]->dims[1], 3000);
    assert_int_equal(out[1]->dims[0], 1);
    assert_int_equal(((int32_t *)out[1]->data)[0], 100);
    mmp_array_free(out[0]);
    mmp_array_free(out[1]);
    mmp_stage_free(mel);
    /* the model's window (100 frames), and window=N: 2.5 s -> 3 windows (100, 100, 50 frames of audio) */
    static const char *const opts[] = {"window=auto", "window=100"};
    for (int k = 0; k < 2; k++) {
        mel = stage("frontend.mel", QA, opts[k]);
        assert_non_null(mel);
        int64_t n2 = 40000;
        float *x2 = synth(n2, 8);
        mmp_array *a2 = mmp_array_wrap(MMP_TYPE_F32, 1, &n2, x2);
        in[0] = a2;
        assert_int_equal(mmp_stage_run(mel, in, out), MMP_OK);
        assert_int_equal(out[0]->dims[0], 80);
        assert_int_equal(out[0]->dims[1], 300);
        assert_int_equal(out[1]->dims[0], 3);
        const int32_t *v = out[1]->data;
        assert_true(v[0] == 100 && v[1] == 100 && v[2] == 50);
        mmp_array_free(out[0]);
        mmp_array_free(out[1]);
        mmp_array_free(a2);
        free(x2);
        mmp_stage_free(mel);
    }
    /* empty audio: an error, not a window of padding */
    mel = stage("frontend.mel", QA, "window=auto");
    assert_non_null(mel);
    int64_t n0 = 0;
    mmp_array *a0 = mmp_array_new(MMP_TYPE_F32, 1, &n0);
    assert_non_null(a0);
    in[0] = a0;
    assert_int_not_equal(mmp_stage_run(mel, in, out), MMP_OK);
    printf("  empty audio: %s\n", mmp_last_error());
    assert_null(out[0]);
    assert_null(out[1]);
    mmp_array_free(a0);
    mmp_stage_free(mel);
    /* pad=30s (the default) stays one window, cut: valid [1] */
    mel = stage("frontend.mel", QA, NULL);
    assert_non_null(mel);
    assert_int_equal(mmp_stage_output(mel, 0)->type.dims[1], 3000);
    assert_int_equal(mmp_stage_output(mel, 1)->type.dims[0], 1);
    mmp_stage_free(mel);
    /* bad options */
    static const char *const bad[] = {"window=0", "window=abc", "window=", "window=-5", "window=100x", NULL};
    for (int k = 0; bad[k]; k++) {
        assert_null(stage("frontend.mel", NULL, bad[k]));
        mmpt_expect_error_mentions((const char *[]){"frontend.mel", bad[k], "window=auto|30s|N", NULL});
    }

    /* encoder.whisper with valid: the mel must split into the windows, each valid in 0..W */
    mmp_stage *enc = stage("encoder.whisper", QA, NULL);
    assert_non_null(enc);
    int64_t md[2] = {80, 200}, vd[1] = {3};
    mmp_array *m = mmp_array_new(MMP_TYPE_F32, 2, md), *v = mmp_array_new(MMP_TYPE_I32, 1, vd);
    in[0] = m;
    in[1] = v;
    assert_int_equal(mmp_stage_run(enc, in, out), MMP_ERR_SHAPE);
    mmpt_expect_error_mentions((const char *[]){"encoder.whisper", "200 mel frames", "3 windows", NULL});
    assert_null(out[0]);
    mmp_array_free(v);
    vd[0] = 2;
    v = mmp_array_new(MMP_TYPE_I32, 1, vd);
    ((int32_t *)v->data)[0] = 100;
    ((int32_t *)v->data)[1] = 101;
    in[1] = v;
    assert_int_equal(mmp_stage_run(enc, in, out), MMP_ERR_INVALID_ARG);
    mmpt_expect_error_mentions((const char *[]){"encoder.whisper", "window 1", "101", NULL});
    /* 100 + 40 frames of audio: 25 + (20 - 2) / 2 + 1 = 35 rows, rows [25, 10] */
    ((int32_t *)v->data)[1] = 40;
    assert_int_equal(mmp_stage_run(enc, in, out), MMP_OK);
    assert_int_equal(out[0]->dims[0], 35);
    assert_int_equal(out[1]->dims[0], 2);
    assert_int_equal(((int32_t *)out[1]->data)[0], 25);
    assert_int_equal(((int32_t *)out[1]->data)[1], 10);
    mmp_array *hid = out[0], *rows = out[1];
    out[0] = out[1] = NULL;
    /* the projector: rows must add up to hidden's */
    mmp_stage *pj = stage("projector.qwen2_audio", QA, NULL);
    assert_non_null(pj);
    in[0] = hid;
    in[1] = rows;
    assert_int_equal(mmp_stage_run(pj, in, out), MMP_OK);
    assert_int_equal(out[0]->dims[0], 35);
    mmp_array_free(out[0]);
    out[0] = NULL;
    ((int32_t *)rows->data)[1] = 11;
    assert_int_equal(mmp_stage_run(pj, in, out), MMP_ERR_SHAPE);
    mmpt_expect_error_mentions((const char *[]){"projector.qwen2_audio", "36 rows", "2 windows", "35 rows", NULL});
    ((int32_t *)rows->data)[1] = 0;
    ((int32_t *)rows->data)[0] = 35;
    assert_int_equal(mmp_stage_run(pj, in, out), MMP_ERR_INVALID_ARG);
    mmpt_expect_error_mentions((const char *[]){"projector.qwen2_audio", "rows[1] = 0", NULL});
    mmp_stage_free(pj);
    mmp_array_free(hid);
    mmp_array_free(rows);
    mmp_stage_free(enc);
    /* valid input and the valid=N option together */
    enc = stage("encoder.whisper", QA, "valid=50");
    assert_non_null(enc);
    in[0] = m;
    in[1] = v;
    assert_int_equal(mmp_stage_run(enc, in, out), MMP_ERR_INVALID_ARG);
    mmpt_expect_error_mentions((const char *[]){"encoder.whisper", "valid=50", NULL});
    mmp_stage_free(enc);
    mmp_array_free(m);
    mmp_array_free(v);
    mmp_array_free(a);
    free(x);
}

int main(void) {
    mmp_audio_quiet_ffmpeg();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen2_audio_embeddings),
        cmocka_unit_test(test_ultravox_embeddings),
        cmocka_unit_test(test_voxtral_embeddings),
        cmocka_unit_test(test_audio_chat),
        cmocka_unit_test(test_stage_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
