/* llama.cpp mmproj GGUF files: `mmpipe convert --mmproj` for LLaVA and the audio encoders /
 * projectors read from mmproj GGUF files.
 *
 * 1. LLaVA round trip: tests/data/mm/llava_mixtral (HF LlavaForConditionalGeneration, golden
 *    logits from transformers) -> LLM GGUF + mmproj GGUF with mmp_convert_hf_to_gguf /
 *    mmp_convert_llava_mmproj; the pair through the mtmd API (mmp_mm_load with --mmproj,
 *    mmp_mm_encode_pixels, mmp_mm_prompt_from_ids, mmp_mm_prompt_decode) must give the golden
 *    logits (F32: relative L2 <= 1e-4) and greedy ids; F16 / Q8_0 errors are printed.
 *    Metadata and tensor names/shapes are checked against what llama.cpp's converter writes.
 *    Bad input: non-LLaVA folders, "full" strategy, missing folder: clear errors.
 * 2. Audio: the golden whisper_encoder and qwen2_audio towers (HF safetensors) written here
 *    as mmproj GGUF files under llama.cpp's names (a.conv1d.1/2, a.position_embd, a.blk.N.*,
 *    a.post_ln, mm.a.fc, clip.audio.* keys); the GGUF-loaded encoder / projector must match
 *    the HF-loaded ones (relative L2 <= 1e-6: same weights, same graph) and the goldens;
 *    qwen2_audio also end to end through mtmd with --mmproj. Ultravox / Voxtral projectors:
 *    random weights written under both namings must give identical outputs. */
#include "testutil.h"
#include "mmpipe/mmpipe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LLAVA "mm/llava_mixtral"
#define WHISPER "audio/whisper_encoder"
#define QWEN2A "audio/qwen2_audio"

/* A whole file as a NUL-terminated string (mmpt_read_file's buffer is not terminated). */
static char *read_text(const char *path) {
    size_t n = 0;
    char *raw = mmpt_read_file(path, &n);
    char *s = malloc(n + 1);
    assert_non_null(s);
    if (raw) memcpy(s, raw, n);
    s[raw ? n : 0] = '\0';
    free(raw);
    return s;
}

static char *tmp_path(const char *suffix) {
    char *p = mmpt_write_temp("", 0, suffix);
    assert_non_null(p);
    return p;
}

/* ================================================================ LLaVA conversion ===== */

typedef struct pair {
    char *llm_path, *mm_path;
} pair;

static pair convert_llava(enum mmp_type t) {
    pair pr = { tmp_path(".gguf"), tmp_path("-mmproj.gguf") };
    mmp_convert_params p = mmp_convert_params_default();
    p.out_type = t;
    if (mmp_convert_hf_to_gguf(mmpt_data(LLAVA), pr.llm_path, &p)) fail_msg("convert LLM: %s", mmp_last_error());
    if (mmp_convert_llava_mmproj(mmpt_data(LLAVA), pr.mm_path, &p)) fail_msg("convert mmproj: %s", mmp_last_error());
    return pr;
}

static void pair_free(pair *pr) {
    unlink(pr->llm_path);
    unlink(pr->mm_path);
    free(pr->llm_path);
    free(pr->mm_path);
}

/* Logits of every prompt position and the greedy continuation of the converted pair. */
static void run_pair(const pair *pr, const mmp_safetensors *io, float *logits, int32_t *greedy, int n_greedy) {
    mmp_llm *llm = mmp_llm_load(pr->llm_path, NULL);
    if (!llm) fail_msg("load %s: %s", pr->llm_path, mmp_last_error());
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = 2;
    mmp_mm *mm = mmp_mm_load(NULL, pr->mm_path, llm, &mp);
    if (!mm) fail_msg("load %s: %s", pr->mm_path, mmp_last_error());
    assert_true(mmp_mm_has(mm, MMP_MEDIA_IMAGE));
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(llm);
    float *pv = mmpt_st_f32(io, "pixel_values", NULL);
    float *img = NULL;
    int32_t n_img = 0;
    if (mmp_mm_encode_pixels(mm, pv, 32, 32, &img, &n_img)) fail_msg("encode: %s", mmp_last_error());
    assert_int_equal(n_img, 16);
    int64_t n_ids;
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n_ids);
    /* the placeholder id is the HF config's image_token_index (a GGUF LLM has no such key) */
    mmp_mm_markers mk = mmp_mm_markers_default();
    mk.image_token = 255;
    mmp_media media = { MMP_MEDIA_IMAGE, n_img, hp->n_embd, img };
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, (int32_t)n_ids, &mk, &media, 1);
    if (!p) fail_msg("prompt: %s", mmp_last_error());
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    mmp_llm_ctx *c = mmp_llm_ctx_new(llm, &cp);
    assert_non_null(c);
    assert_int_equal(mmp_mm_prompt_decode(c, llm, p, 0, 0, logits, true), MMP_OK);
    /* greedy: argmax of the last position, then one token at a time through the KV cache
     * (a one-token prompt appended to the same context) */
    float *last = malloc((size_t)hp->n_vocab * sizeof *last);
    assert_non_null(last);
    memcpy(last, logits + (n_ids - 1) * hp->n_vocab, (size_t)hp->n_vocab * sizeof *last);
    for (int i = 0; i < n_greedy; i++) {
        greedy[i] = mmpt_argmax(last, hp->n_vocab);
        if (i + 1 == n_greedy) break;
        /* the prompt + the ids so far; only the new last position is decoded */
        int32_t n_all = (int32_t)n_ids + i + 1;
        int32_t *all = malloc((size_t)n_all * sizeof *all);
        assert_non_null(all);
        memcpy(all, ids, (size_t)n_ids * sizeof *all);
        memcpy(all + n_ids, greedy, (size_t)(i + 1) * sizeof *all);
        mmp_mm_prompt *full = mmp_mm_prompt_from_ids(all, n_all, &mk, &media, 1);
        assert_non_null(full);
        assert_int_equal(mmp_mm_prompt_decode(c, llm, full, n_all - 1, 0, last, false), MMP_OK);
        mmp_mm_prompt_free(full);
        free(all);
    }
    free(last);
    mmp_llm_ctx_free(c);
    mmp_mm_prompt_free(p);
    free(ids);
    free(img);
    free(pv);
    mmp_mm_free(mm);
    mmp_llm_free(llm);
}

static void check_llava(enum mmp_type t, double tol) {
    pair pr = convert_llava(t);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(LLAVA "/io.safetensors"));
    assert_non_null(io);
    int64_t n_ref, n_g;
    float *ref = mmpt_st_f32(io, "logits", &n_ref);
    int32_t *want = mmpt_st_ids(io, "greedy_ids", &n_g);
    float *got = malloc((size_t)n_ref * sizeof *got);
    int32_t *greedy = malloc((size_t)n_g * sizeof *greedy);
    assert_non_null(got);
    assert_non_null(greedy);
    run_pair(&pr, io, got, greedy, (int)n_g);
    double e = mmpt_rel_l2(got, ref, (size_t)n_ref);
    int same = 0;
    for (int64_t i = 0; i < n_g; i++) same += greedy[i] == want[i];
    printf("converted LLaVA pair (%s): logits rel L2 %.3g vs transformers, greedy ids %d/%lld identical\n",
           mmp_type_name(t), e, same, (long long)n_g);
    assert_true(isfinite(e));
    if (tol > 0) {
        MMPT_ASSERT_REL_LE(got, ref, (size_t)n_ref, tol);
        assert_memory_equal(greedy, want, (size_t)n_g * sizeof *want);
    }
    free(got);
    free(greedy);
    free(ref);
    free(want);
    mmp_safetensors_free(io);
    pair_free(&pr);
}

static void test_llava_f32(void **state) { (void)state; check_llava(MMP_TYPE_F32, 1e-4); }
/* F16 / Q8_0 weights: the error is reported, not bounded (the reference is an f32 model) */
static void test_llava_f16(void **state) { (void)state; check_llava(MMP_TYPE_F16, 0); }
static void test_llava_q8_0(void **state) { (void)state; check_llava(MMP_TYPE_Q8_0, 0); }

static uint32_t get_u32(const mmp_gguf *g, const char *k) {
    uint32_t v = 0;
    if (mmp_gguf_get_u32(g, k, &v)) fail_msg("%s: %s", k, mmp_last_error());
    return v;
}

/* What llama.cpp's clip.cpp reads: keys, names, shapes, types. */
static void test_llava_metadata(void **state) {
    (void)state;
    pair pr = convert_llava(MMP_TYPE_F16);
    mmp_gguf *g = mmp_gguf_open(pr.mm_path);
    if (!g) fail_msg("open: %s", mmp_last_error());
    const char *s;
    bool b;
    assert_int_equal(mmp_gguf_get_str(g, "general.architecture", &s), MMP_OK);
    assert_string_equal(s, "clip");
    assert_int_equal(mmp_gguf_get_str(g, "clip.projector_type", &s), MMP_OK);
    assert_string_equal(s, "mlp");
    assert_int_equal(mmp_gguf_get_bool(g, "clip.has_vision_encoder", &b), MMP_OK);
    assert_true(b);
    assert_int_equal(mmp_gguf_get_bool(g, "clip.has_llava_projector", &b), MMP_OK);
    assert_true(b);
    assert_int_equal(mmp_gguf_get_bool(g, "clip.use_gelu", &b), MMP_OK);
    assert_false(b); /* quick_gelu tower */
    /* the golden config: 3 layers, feature layer -2 -> 2 kept */
    assert_int_equal(get_u32(g, "clip.vision.block_count"), 2);
    assert_int_equal(get_u32(g, "clip.vision.image_size"), 32);
    assert_int_equal(get_u32(g, "clip.vision.patch_size"), 8);
    assert_int_equal(get_u32(g, "clip.vision.embedding_length"), 64);
    assert_int_equal(get_u32(g, "clip.vision.feed_forward_length"), 128);
    assert_int_equal(get_u32(g, "clip.vision.attention.head_count"), 4);
    assert_int_equal(get_u32(g, "clip.vision.projection_dim"), 64);
    assert_int_equal(get_u32(g, "general.file_type"), 1);
    float eps;
    assert_int_equal(mmp_gguf_get_f32(g, "clip.vision.attention.layer_norm_epsilon", &eps), MMP_OK);
    assert_true(fabsf(eps - 1e-5f) < 1e-12f);
    const mmp_gguf_value *mean;
    assert_int_equal(mmp_gguf_get_arr(g, "clip.vision.image_mean", &mean), MMP_OK);
    assert_int_equal(mmp_gguf_arr_n(mean), 3);
    double m0;
    assert_int_equal(mmp_gguf_arr_f64(mean, 0, &m0), MMP_OK);
    assert_true(fabs(m0 - 0.48145466) < 1e-6); /* OpenAI CLIP mean (no preprocessor_config.json) */
    /* tensors */
    static const struct { const char *name; int nd; int64_t ne[4]; enum mmp_type t; } T[] = {
        { "v.patch_embd.weight", 4, { 8, 8, 3, 64 }, MMP_TYPE_F16 },
        { "v.class_embd", 1, { 64 }, MMP_TYPE_F32 },
        { "v.position_embd.weight", 2, { 64, 17 }, MMP_TYPE_F32 },
        { "v.pre_ln.weight", 1, { 64 }, MMP_TYPE_F32 },
        { "v.blk.0.attn_q.weight", 2, { 64, 64 }, MMP_TYPE_F16 },
        { "v.blk.1.attn_out.bias", 1, { 64 }, MMP_TYPE_F32 },
        { "v.blk.1.ffn_up.weight", 2, { 64, 128 }, MMP_TYPE_F16 },
        { "v.blk.1.ffn_down.weight", 2, { 128, 64 }, MMP_TYPE_F16 },
        { "v.blk.1.ln2.bias", 1, { 64 }, MMP_TYPE_F32 },
        { "mm.0.weight", 2, { 64, 64 }, MMP_TYPE_F16 },
        { "mm.2.bias", 1, { 64 }, MMP_TYPE_F32 },
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        const mmp_tensor_info *t = mmp_gguf_find_tensor(g, T[i].name);
        if (!t) fail_msg("tensor %s missing", T[i].name);
        assert_int_equal(t->n_dims, T[i].nd);
        for (int d = 0; d < T[i].nd; d++) assert_int_equal(t->ne[d], T[i].ne[d]);
        assert_int_equal(t->type, T[i].t);
    }
    /* cut after the feature layer, no post-LN, no LLM tensors */
    assert_null(mmp_gguf_find_tensor(g, "v.blk.2.attn_q.weight"));
    assert_null(mmp_gguf_find_tensor(g, "v.post_ln.weight"));
    assert_null(mmp_gguf_find_tensor(g, "token_embd.weight"));
    mmp_clear_error();
    assert_int_equal(mmp_gguf_n_tensors(g), 3 + 2 + 2 * 16 + 4);
    mmp_gguf_free(g);
    /* the LLM part: a plain llama-architecture GGUF (mixtral experts stacked) */
    mmp_gguf *l = mmp_gguf_open(pr.llm_path);
    assert_non_null(l);
    assert_int_equal(mmp_gguf_get_str(l, "general.architecture", &s), MMP_OK);
    assert_string_equal(s, "llama");
    assert_int_equal(get_u32(l, "llama.expert_count"), 4);
    assert_non_null(mmp_gguf_find_tensor(l, "blk.1.ffn_gate_exps.weight"));
    assert_null(mmp_gguf_find_tensor(l, "v.patch_embd.weight"));
    mmp_clear_error();
    mmp_gguf_free(l);
    pair_free(&pr);
}

/* A temp folder with the golden weights (symlinked) and a config edited by `edit`. */
static char *llava_variant(const char *from, const char *to) {
    char tmpl[] = "/tmp/mmp_mmproj_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char path[512], src[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(src, sizeof src, "%s", mmpt_data(LLAVA "/model.safetensors"));
    assert_int_equal(symlink(src, path), 0);
    char *cfg = read_text(mmpt_data(LLAVA "/config.json"));
    char *hit = strstr(cfg, from);
    assert_non_null(hit);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(cfg, 1, (size_t)(hit - cfg), f);
    fputs(to, f);
    fputs(hit + strlen(from), f);
    fclose(f);
    free(cfg);
    return strdup(dir);
}

static void test_llava_bad_input(void **state) {
    (void)state;
    char *out = tmp_path(".gguf");
    /* not LLaVA: an audio model, an LLM folder, a missing folder */
    assert_int_not_equal(mmp_convert_llava_mmproj(mmpt_data(QWEN2A), out, NULL), MMP_OK);
    printf("qwen2_audio folder: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "qwen2_audio"));
    assert_non_null(strstr(mmp_last_error(), "not a LLaVA model"));
    assert_int_not_equal(mmp_convert_llava_mmproj(mmpt_data(WHISPER), out, NULL), MMP_OK);
    printf("whisper folder: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "whisper"));
    assert_int_not_equal(mmp_convert_llava_mmproj("/nonexistent/llava", out, NULL), MMP_OK);
    printf("missing folder: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "/nonexistent/llava"));
    /* what an mmproj "mlp" file cannot express */
    char *d = llava_variant("\"vision_feature_select_strategy\": \"default\"", "\"vision_feature_select_strategy\": \"full\"");
    assert_int_not_equal(mmp_convert_llava_mmproj(d, out, NULL), MMP_OK);
    printf("strategy full: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "full"));
    mmpt_rm_model_dir(d);
    d = llava_variant("\"vision_feature_layer\": -2", "\"vision_feature_layer\": -9");
    assert_int_not_equal(mmp_convert_llava_mmproj(d, out, NULL), MMP_OK);
    printf("feature layer -9: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "-9"));
    mmpt_rm_model_dir(d);
    d = llava_variant("\"projector_hidden_act\": \"gelu\"", "\"projector_hidden_act\": \"relu\"");
    assert_int_not_equal(mmp_convert_llava_mmproj(d, out, NULL), MMP_OK);
    printf("relu projector: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "relu"));
    mmpt_rm_model_dir(d);
    /* feature layer -1: all three layers kept */
    d = llava_variant("\"vision_feature_layer\": -2", "\"vision_feature_layer\": -1");
    assert_int_equal(mmp_convert_llava_mmproj(d, out, NULL), MMP_OK);
    mmp_gguf *g = mmp_gguf_open(out);
    assert_non_null(g);
    assert_int_equal(get_u32(g, "clip.vision.block_count"), 3);
    mmp_gguf_free(g);
    mmpt_rm_model_dir(d);
    unlink(out);
    free(out);
}

/* `mmpipe convert LLAVA OUT --mmproj MM` from the CLI, and its error for a non-LLaVA folder. */
static void test_llava_cli(void **state) {
    (void)state;
    char *llm = tmp_path(".gguf"), *mm = tmp_path("-mmproj.gguf"), *err = tmp_path(".err");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' --mmproj '%s' --type f16 2>'%s'", MMP_CLI_PATH, mmpt_data(LLAVA), llm, mm, err);
    int rc = system(cmd);
    char *e = read_text(err);
    printf("cli: rc %d\n%s", rc, e);
    assert_int_equal(WEXITSTATUS(rc), 0);
    assert_non_null(strstr(e, "mmproj"));
    free(e);
    struct stat sb;
    assert_int_equal(stat(llm, &sb), 0);
    assert_true(sb.st_size > 1000);
    assert_int_equal(stat(mm, &sb), 0);
    assert_true(sb.st_size > 1000);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' --mmproj '%s' 2>'%s'", MMP_CLI_PATH, mmpt_data(QWEN2A), mm, err);
    rc = system(cmd);
    e = read_text(err);
    printf("cli non-LLaVA: rc %d\n%s", rc, e);
    assert_int_not_equal(WEXITSTATUS(rc), 0);
    assert_non_null(strstr(e, "not a LLaVA model"));
    free(e);
    unlink(llm);
    unlink(mm);
    unlink(err);
    free(llm);
    free(mm);
    free(err);
}

/* ================================================================ audio mmproj =========== */

/* HF Whisper-tower name (after the prefix) -> llama.cpp mmproj name. */
static bool audio_name(const char *hf, char *out, size_t size) {
    static const char *const M[][2] = {
        { "conv1.weight", "a.conv1d.1.weight" }, { "conv1.bias", "a.conv1d.1.bias" },
        { "conv2.weight", "a.conv1d.2.weight" }, { "conv2.bias", "a.conv1d.2.bias" },
        { "embed_positions.weight", "a.position_embd.weight" },
        { "layer_norm.weight", "a.post_ln.weight" }, { "layer_norm.bias", "a.post_ln.bias" },
    };
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++)
        if (!strcmp(hf, M[i][0])) { snprintf(out, size, "%s", M[i][1]); return true; }
    static const char *const L[][2] = {
        { "self_attn_layer_norm.", "ln1." }, { "final_layer_norm.", "ln2." }, { "self_attn.q_proj.", "attn_q." },
        { "self_attn.k_proj.", "attn_k." }, { "self_attn.v_proj.", "attn_v." }, { "self_attn.out_proj.", "attn_out." },
        { "fc1.", "ffn_up." }, { "fc2.", "ffn_down." },
    };
    int il, n = 0;
    if (sscanf(hf, "layers.%d.%n", &il, &n) == 1 && n > 0)
        for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
            size_t k = strlen(L[i][0]);
            if (!strncmp(hf + n, L[i][0], k)) { snprintf(out, size, "a.blk.%d.%s%s", il, L[i][1], hf + n + k); return true; }
        }
    return false;
}

/* Write the tower under `prefix` of folder `dir` (+ the Qwen2-Audio linear projector as
 * mm.a.fc when present) as an mmproj GGUF of projector type `ptype`, the way
 * convert_hf_to_gguf.py's WhisperEncoderModel does (conv biases as [D, 1]). */
static char *write_audio_gguf(const char *dir, const char *prefix, const char *ptype, int n_layers, int heads) {
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    mmp_safetensors *src = mmp_safetensors_open(p);
    assert_non_null(src);
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mmp_gguf_writer_add_str(w, "general.architecture", "clip"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_bool(w, "clip.has_audio_encoder", true), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_bool(w, "clip.has_vision_encoder", false), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_str(w, "clip.projector_type", ptype), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.audio.embedding_length", 64), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.audio.feed_forward_length", 160), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.audio.block_count", (uint32_t)n_layers), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.audio.attention.head_count", (uint32_t)heads), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_f32(w, "clip.audio.attention.layer_norm_epsilon", 1e-5f), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.audio.num_mel_bins", 80), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.audio.projection_dim", 64), MMP_OK);
    size_t pl = strlen(prefix);
    int n_written = 0;
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(src); i++) {
        const mmp_tensor_info *t = mmp_safetensors_tensor(src, i);
        char name[160];
        int64_t ne[4] = { t->ne[0], t->ne[1], t->ne[2], t->ne[3] };
        int nd = t->n_dims;
        if (!strcmp(t->name, "multi_modal_projector.linear.weight")) snprintf(name, sizeof name, "mm.a.fc.weight");
        else if (!strcmp(t->name, "multi_modal_projector.linear.bias")) snprintf(name, sizeof name, "mm.a.fc.bias");
        else if (strncmp(t->name, prefix, pl) || !audio_name(t->name + pl, name, sizeof name)) continue;
        if (strstr(name, "conv1d") && strstr(name, ".bias")) { ne[1] = ne[0]; ne[0] = 1; nd = 2; } /* unsqueeze(-1) */
        assert_int_equal(mmp_gguf_writer_add_tensor(w, name, t->type, nd, ne, t->data), MMP_OK);
        n_written++;
    }
    assert_true(n_written >= 7 + 15 * n_layers);
    char *path = tmp_path(".gguf");
    assert_int_equal(mmp_gguf_writer_write(w, path), MMP_OK);
    mmp_gguf_writer_free(w);
    mmp_safetensors_free(src);
    return path;
}

/* Encoder from GGUF vs from HF on the same mel; rel L2 between the two, and vs a reference. */
static void compare_encoders(const char *hf, const char *gg, const float *mel, int64_t n_valid, const float *ref,
                             size_t n_ref) {
    mmp_whisper *a = mmp_whisper_load(hf), *b = mmp_whisper_load(gg);
    if (!a || !b) fail_msg("load: %s", mmp_last_error());
    const mmp_whisper_hparams *ha = mmp_whisper_get_hparams(a), *hb = mmp_whisper_get_hparams(b);
    assert_int_equal(ha->d_model, hb->d_model);
    assert_int_equal(ha->n_layers, hb->n_layers);
    assert_int_equal(ha->n_heads, hb->n_heads);
    assert_int_equal(ha->d_ffn, hb->d_ffn);
    assert_int_equal(ha->n_mels, hb->n_mels);
    assert_int_equal(ha->n_positions, hb->n_positions);
    assert_int_equal(ha->avg_pool, hb->avg_pool);
    int64_t n = mmp_whisper_n_out(a, 100);
    assert_int_equal(n, mmp_whisper_n_out(b, 100));
    float *oa = malloc((size_t)n * 64 * sizeof *oa), *ob = malloc((size_t)n * 64 * sizeof *ob);
    assert_non_null(oa);
    assert_non_null(ob);
    assert_int_equal(mmp_whisper_encode(a, mel, 100, n_valid, oa, 2, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_whisper_encode(b, mel, 100, n_valid, ob, 2, NULL, NULL), MMP_OK);
    double e = mmpt_rel_l2(ob, oa, (size_t)n * 64);
    printf("%s: GGUF encoder vs HF encoder rel L2 %.3g", gg, e);
    if (ref) printf(", vs golden %.3g", mmpt_rel_l2(ob, ref, n_ref));
    printf("\n");
    MMPT_ASSERT_REL_LE(ob, oa, (size_t)n * 64, 1e-6);
    if (ref) MMPT_ASSERT_REL_LE(ob, ref, n_ref, 1e-4);
    free(oa);
    free(ob);
    mmp_whisper_free(a);
    mmp_whisper_free(b);
}

static void test_whisper_gguf(void **state) {
    (void)state;
    /* plain Whisper: no pooling, as llama.cpp's "ultravox" tower */
    char *gg = write_audio_gguf(mmpt_data(WHISPER), "", "ultravox", 2, 4);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(WHISPER "/io.safetensors"));
    assert_non_null(io);
    int64_t n_ref;
    float *mel = mmpt_st_f32(io, "input_features", NULL), *ref = mmpt_st_f32(io, "last_hidden_state", &n_ref);
    compare_encoders(mmpt_data(WHISPER), gg, mel, 0, ref, (size_t)n_ref);
    /* the projector: ultravox needs mm.a.* tensors this file does not have */
    assert_null(mmp_audio_proj_load(gg, MMP_AUDIO_PROJ_ULTRAVOX));
    printf("no projector: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "mm.a.norm_pre.weight"));
    free(mel);
    free(ref);
    mmp_safetensors_free(io);
    unlink(gg);
    free(gg);
}

static void test_qwen2_audio_gguf(void **state) {
    (void)state;
    char *gg = write_audio_gguf(mmpt_data(QWEN2A), "audio_tower.", "qwen2a", 2, 4);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data(QWEN2A "/io.safetensors"));
    assert_non_null(io);
    float *mel = mmpt_st_f32(io, "input_features", NULL);
    compare_encoders(mmpt_data(QWEN2A), gg, mel, 0, NULL, 0);
    compare_encoders(mmpt_data(QWEN2A), gg, mel, 60, NULL, 0); /* padding mask */
    /* projector: the file's type wins over the argument */
    mmp_audio_proj *pa = mmp_audio_proj_load(mmpt_data(QWEN2A), MMP_AUDIO_PROJ_QWEN2_AUDIO);
    mmp_audio_proj *pb = mmp_audio_proj_load(gg, MMP_AUDIO_PROJ_ULTRAVOX);
    if (!pa || !pb) fail_msg("projector: %s", mmp_last_error());
    assert_int_equal(mmp_audio_proj_n_in(pb), 64);
    assert_int_equal(mmp_audio_proj_n_embd(pb), 64);
    assert_int_equal(mmp_audio_proj_stack(pb), 1);
    float x[25 * 64], ya[25 * 64], yb[25 * 64];
    mmpt_rand_fill(x, 25 * 64, 7, -1, 1);
    assert_int_equal(mmp_audio_proj_run(pa, x, 25, ya, 1), MMP_OK);
    assert_int_equal(mmp_audio_proj_run(pb, x, 25, yb, 1), MMP_OK);
    MMPT_ASSERT_REL_LE(yb, ya, 25 * 64, 1e-6);
    mmp_audio_proj_free(pa);
    mmp_audio_proj_free(pb);

    /* end to end through mtmd: HF LLM + --mmproj GGUF vs the golden logits */
    mmp_llm *llm = mmp_llm_load(mmpt_data(QWEN2A), NULL);
    if (!llm) fail_msg("llm: %s", mmp_last_error());
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = 2;
    mmp_mm *mm = mmp_mm_load(mmpt_data(QWEN2A), gg, llm, &mp), *mh = mmp_mm_load(mmpt_data(QWEN2A), NULL, llm, &mp);
    if (!mm || !mh) fail_msg("mm: %s", mmp_last_error());
    assert_true(mmp_mm_has(mm, MMP_MEDIA_AUDIO));
    assert_int_equal(mmp_mm_get_markers(mm)->audio_token, 255);
    float *aud = NULL, *audh = NULL;
    int32_t n_aud = 0, n_audh = 0;
    if (mmp_mm_encode_mel(mm, mel, 100, 0, &aud, &n_aud)) fail_msg("encode: %s", mmp_last_error());
    assert_int_equal(mmp_mm_encode_mel(mh, mel, 100, 0, &audh, &n_audh), MMP_OK);
    assert_int_equal(n_aud, n_audh);
    MMPT_ASSERT_REL_LE(aud, audh, (size_t)n_aud * 64, 1e-6);
    int64_t n_ids, n_ref;
    int32_t *ids = mmpt_st_ids(io, "input_ids", &n_ids);
    float *ref = mmpt_st_f32(io, "logits", &n_ref);
    mmp_media media = { MMP_MEDIA_AUDIO, n_aud, 64, aud };
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, (int32_t)n_ids, mmp_mm_get_markers(mm), &media, 1);
    if (!p) fail_msg("prompt: %s", mmp_last_error());
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    mmp_llm_ctx *c = mmp_llm_ctx_new(llm, &cp);
    assert_non_null(c);
    float *logits = malloc((size_t)n_ref * sizeof *logits);
    assert_non_null(logits);
    assert_int_equal(mmp_mm_prompt_decode(c, llm, p, 0, 0, logits, true), MMP_OK);
    printf("qwen2_audio via mmproj GGUF: logits rel L2 %.3g\n", mmpt_rel_l2(logits, ref, (size_t)n_ref));
    MMPT_ASSERT_REL_LE(logits, ref, (size_t)n_ref, 1e-4);
    free(logits);
    mmp_llm_ctx_free(c);
    mmp_mm_prompt_free(p);
    free(ids);
    free(ref);
    free(aud);
    free(audh);
    mmp_mm_free(mm);
    mmp_mm_free(mh);
    mmp_llm_free(llm);
    free(mel);
    mmp_safetensors_free(io);
    unlink(gg);
    free(gg);
}

/* Ultravox and Voxtral projectors: random weights under HF names (safetensors + config) and
 * mmproj names (GGUF) must give the same outputs. */
static void write_hf_proj(const char *dir, const char *cfg, const char *const *names, int n, float *const *data,
                          const int64_t (*shapes)[2], const int *nd) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(cfg, f);
    fclose(f);
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    assert_non_null(w);
    for (int i = 0; i < n; i++) {
        int64_t sh[2] = { shapes[i][1], shapes[i][0] }; /* torch order */
        assert_int_equal(mmp_safetensors_writer_add(w, names[i], MMP_TYPE_F32, nd[i], nd[i] == 1 ? shapes[i] : sh, data[i]), MMP_OK);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(w, p), MMP_OK);
    mmp_safetensors_writer_free(w);
}

static void check_stacked_proj(bool ultravox) {
    const int D = 16, S = ultravox ? 8 : 4, H = 24, E = 32;
    const int64_t in = (int64_t)D * S;
    /* ggml shapes {ne0, ne1} */
    int64_t shapes[6][2];
    int nd[6], n = 0;
    float *data[6];
    const char *hf[6], *gg[6];
    uint64_t seed = 11;
#define T(H_, G_, NE0, NE1, ND) do { hf[n] = H_; gg[n] = G_; shapes[n][0] = NE0; shapes[n][1] = NE1; nd[n] = ND; \
        data[n] = malloc((size_t)(NE0) * (NE1) * sizeof(float)); assert_non_null(data[n]); \
        mmpt_rand_fill(data[n], (size_t)(NE0) * (NE1), seed++, -0.5f, 0.5f); n++; } while (0)
    if (ultravox) {
        T("multi_modal_projector.ln_pre.weight", "mm.a.norm_pre.weight", in, 1, 1);
        T("multi_modal_projector.linear_1.weight", "mm.a.mlp.1.weight", in, 2 * H, 2);
        T("multi_modal_projector.ln_mid.weight", "mm.a.norm_mid.weight", H, 1, 1);
        T("multi_modal_projector.linear_2.weight", "mm.a.mlp.2.weight", H, E, 2);
    } else {
        T("multi_modal_projector.linear_1.weight", "mm.a.mlp.1.weight", in, H, 2);
        T("multi_modal_projector.linear_1.bias", "mm.a.mlp.1.bias", H, 1, 1);
        T("multi_modal_projector.linear_2.weight", "mm.a.mlp.2.weight", H, E, 2);
        T("multi_modal_projector.linear_2.bias", "mm.a.mlp.2.bias", E, 1, 1);
    }
#undef T
    char tmpl[] = "/tmp/mmp_aproj_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char cfg[256];
    if (ultravox) snprintf(cfg, sizeof cfg, "{\"model_type\": \"ultravox\", \"stack_factor\": %d}", S);
    else snprintf(cfg, sizeof cfg, "{\"model_type\": \"voxtral\", \"audio_config\": {\"hidden_size\": %d}}", D);
    write_hf_proj(dir, cfg, hf, n, data, (const int64_t(*)[2])shapes, nd);
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mmp_gguf_writer_add_str(w, "general.architecture", "clip"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_str(w, "clip.projector_type", ultravox ? "ultravox" : "voxtral"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.audio.projector.stack_factor", (uint32_t)S), MMP_OK);
    for (int i = 0; i < n; i++) assert_int_equal(mmp_gguf_writer_add_tensor(w, gg[i], MMP_TYPE_F32, nd[i], shapes[i], data[i]), MMP_OK);
    char *ggp = tmp_path(".gguf");
    assert_int_equal(mmp_gguf_writer_write(w, ggp), MMP_OK);
    mmp_gguf_writer_free(w);
    enum mmp_audio_proj_type t = ultravox ? MMP_AUDIO_PROJ_ULTRAVOX : MMP_AUDIO_PROJ_VOXTRAL;
    mmp_audio_proj *pa = mmp_audio_proj_load(dir, t), *pb = mmp_audio_proj_load(ggp, MMP_AUDIO_PROJ_QWEN2_AUDIO);
    if (!pa || !pb) fail_msg("projector: %s", mmp_last_error());
    assert_int_equal(mmp_audio_proj_stack(pa), S);
    assert_int_equal(mmp_audio_proj_stack(pb), S);
    assert_int_equal(mmp_audio_proj_n_in(pb), D);
    assert_int_equal(mmp_audio_proj_n_embd(pb), E);
    const int rows = 37; /* not a multiple of the stack: zero padding */
    float x[37 * 16];
    mmpt_rand_fill(x, sizeof x / sizeof x[0], 99, -1, 1);
    int64_t n_out = mmp_audio_proj_n_out(pb, rows);
    float *ya = malloc((size_t)n_out * E * sizeof *ya), *yb = malloc((size_t)n_out * E * sizeof *yb);
    assert_non_null(ya);
    assert_non_null(yb);
    assert_int_equal(mmp_audio_proj_run(pa, x, rows, ya, 1), MMP_OK);
    assert_int_equal(mmp_audio_proj_run(pb, x, rows, yb, 1), MMP_OK);
    printf("%s projector GGUF vs HF: rel L2 %.3g\n", ultravox ? "ultravox" : "voxtral", mmpt_rel_l2(yb, ya, (size_t)n_out * E));
    MMPT_ASSERT_REL_LE(yb, ya, (size_t)n_out * E, 1e-6);
    free(ya);
    free(yb);
    mmp_audio_proj_free(pa);
    mmp_audio_proj_free(pb);
    for (int i = 0; i < n; i++) free(data[i]);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
    unlink(ggp);
    free(ggp);
}

static void test_ultravox_gguf(void **state) { (void)state; check_stacked_proj(true); }
static void test_voxtral_gguf(void **state) { (void)state; check_stacked_proj(false); }

/* Bad audio mmproj files: unknown projector type, a missing key, an out-of-range value. */
static void test_audio_bad(void **state) {
    (void)state;
    static const struct { const char *key; uint32_t v; const char *ptype; const char *want; } C[] = {
        { "clip.audio.block_count", 0, "qwen2a", "block_count" },
        { "clip.audio.attention.head_count", 3, "qwen2a", "head_count" },
        { NULL, 0, "mlp", "mlp" },
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        mmp_gguf_writer *w = mmp_gguf_writer_new();
        assert_non_null(w);
        assert_int_equal(mmp_gguf_writer_add_str(w, "clip.projector_type", C[i].ptype), MMP_OK);
        const char *keys[] = { "clip.audio.embedding_length", "clip.audio.feed_forward_length", "clip.audio.block_count",
                               "clip.audio.attention.head_count", "clip.audio.num_mel_bins" };
        const uint32_t vals[] = { 64, 160, 2, 4, 80 };
        for (int k = 0; k < 5; k++)
            assert_int_equal(mmp_gguf_writer_add_u32(w, keys[k], C[i].key && !strcmp(C[i].key, keys[k]) ? C[i].v : vals[k]), MMP_OK);
        float z[3 * 80 * 64] = { 0 };
        int64_t ne[3] = { 3, 80, 64 };
        assert_int_equal(mmp_gguf_writer_add_tensor(w, "a.conv1d.1.weight", MMP_TYPE_F32, 3, ne, z), MMP_OK);
        char *p = tmp_path(".gguf");
        assert_int_equal(mmp_gguf_writer_write(w, p), MMP_OK);
        mmp_gguf_writer_free(w);
        assert_null(mmp_whisper_load(p));
        printf("bad audio mmproj %zu: %s\n", i, mmp_last_error());
        assert_non_null(strstr(mmp_last_error(), C[i].want));
        unlink(p);
        free(p);
    }
    /* a vision mmproj is not an audio encoder */
    pair pr = convert_llava(MMP_TYPE_F32);
    assert_null(mmp_whisper_load(pr.mm_path));
    assert_non_null(strstr(mmp_last_error(), "a.conv1d.1.weight"));
    pair_free(&pr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llava_f32),
        cmocka_unit_test(test_llava_f16),
        cmocka_unit_test(test_llava_q8_0),
        cmocka_unit_test(test_llava_metadata),
        cmocka_unit_test(test_llava_bad_input),
        cmocka_unit_test(test_llava_cli),
        cmocka_unit_test(test_whisper_gguf),
        cmocka_unit_test(test_qwen2_audio_gguf),
        cmocka_unit_test(test_ultravox_gguf),
        cmocka_unit_test(test_voxtral_gguf),
        cmocka_unit_test(test_audio_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
