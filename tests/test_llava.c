/* LLaVA end to end against transformers (tests/data/mm/llava_mixtral, copied from
 * shared/goldens/llava_mixtral): LlavaForConditionalGeneration = CLIP ViT (hidden_states[-2],
 * class token dropped: strategy "default") -> 2-layer GELU MLP projector -> Mixtral.
 * io.safetensors: input_ids [29] (BOS, 4 ids, 16 x image token 255, 8 ids), pixel_values
 * [3, 32, 32], logits [29, 256] of one forward pass, greedy_ids [8] (argmax with KV cache).
 * Tolerance: relative L2 <= 1e-4, greedy ids identical.
 *
 * Also: the mismatched-width errors of mmp_mm_load, and `mmpipe chat --image` from the CLI
 * on the same folder (which holds a small synthetic tokenizer.json for that: see README). */
#include "testutil.h"
#include "mmpipe/mtmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CASE "mm/llava_mixtral"

typedef struct fixture {
    mmp_llm *llm;
    mmp_mm *mm;
    mmp_safetensors *io;
    float *img;       /* projected image rows [n_img, n_embd] */
    int32_t n_img;
} fixture;

static void fx_open(fixture *f) {
    memset(f, 0, sizeof *f);
    f->llm = mmp_llm_load(mmpt_data(CASE), NULL);
    if (!f->llm) fail_msg("llm: %s", mmp_last_error());
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = 2;
    f->mm = mmp_mm_load(mmpt_data(CASE), NULL, f->llm, &mp);
    if (!f->mm) fail_msg("mm: %s", mmp_last_error());
    f->io = mmp_safetensors_open(mmpt_data(CASE "/io.safetensors"));
    assert_non_null(f->io);
    float *pv = mmpt_st_f32(f->io, "pixel_values", NULL);
    if (mmp_mm_encode_pixels(f->mm, pv, 32, 32, &f->img, &f->n_img)) fail_msg("encode: %s", mmp_last_error());
    free(pv);
}

static void fx_close(fixture *f) {
    free(f->img);
    mmp_safetensors_free(f->io);
    mmp_mm_free(f->mm);
    mmp_llm_free(f->llm);
}

static mmp_llm_ctx *new_ctx(const mmp_llm *m) {
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    mmp_llm_ctx *c = mmp_llm_ctx_new(m, &cp);
    if (!c) fail_msg("ctx: %s", mmp_last_error());
    return c;
}

/* Logits of every position and the 8 greedy ids, with the prompt decoded in batches of
 * n_batch positions. */
static void check_golden(int32_t n_batch) {
    fixture f;
    fx_open(&f);
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(f.llm);
    assert_int_equal(f.n_img, 16);
    assert_true(mmp_mm_has(f.mm, MMP_MEDIA_IMAGE));
    assert_false(mmp_mm_has(f.mm, MMP_MEDIA_AUDIO));
    assert_int_equal(mmp_mm_n_embd(f.mm), hp->n_embd);
    const mmp_mm_markers *mk = mmp_mm_get_markers(f.mm);
    assert_int_equal(mk->image_token, 255);

    int64_t n_ids, n_ref, n_greedy;
    int32_t *ids = mmpt_st_ids(f.io, "input_ids", &n_ids);
    int32_t *greedy = mmpt_st_ids(f.io, "greedy_ids", &n_greedy);
    float *ref = mmpt_st_f32(f.io, "logits", &n_ref);
    assert_int_equal(n_ref, n_ids * hp->n_vocab);

    mmp_media media = { MMP_MEDIA_IMAGE, f.n_img, hp->n_embd, f.img };
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, (int32_t)n_ids, mk, &media, 1);
    if (!p) fail_msg("prompt: %s", mmp_last_error());
    assert_int_equal(mmp_mm_prompt_n_pos(p), n_ids);
    assert_int_equal(mmp_mm_prompt_n_media_pos(p), 16);
    assert_false(mmp_mm_prompt_is_media(p, 4));
    assert_true(mmp_mm_prompt_is_media(p, 5));
    assert_true(mmp_mm_prompt_is_media(p, 20));
    assert_false(mmp_mm_prompt_is_media(p, 21));

    mmp_llm_ctx *c = new_ctx(f.llm);
    float *logits = malloc((size_t)n_ref * sizeof *logits);
    assert_non_null(logits);
    if (mmp_mm_prompt_decode(c, f.llm, p, 0, n_batch, logits, true)) fail_msg("decode: %s", mmp_last_error());
    double e = mmpt_rel_l2(logits, ref, (size_t)n_ref);
    printf("llava_mixtral (batch %d): logits rel L2 %.3g, max abs %.3g\n", n_batch, e,
           mmpt_max_abs(logits, ref, (size_t)n_ref));
    MMPT_ASSERT_REL_LE(logits, ref, (size_t)n_ref, 1e-4);

    /* greedy continuation with the KV cache, as generate() */
    int32_t tok = mmpt_argmax(logits + (size_t)(n_ids - 1) * hp->n_vocab, hp->n_vocab);
    for (int64_t i = 0; i < n_greedy; i++) {
        if (tok != greedy[i]) fail_msg("greedy id %lld: got %d, want %d", (long long)i, tok, greedy[i]);
        mmp_llm_batch b = { .n = 1, .tokens = &tok, .logits = logits };
        if (mmp_llm_decode(c, &b)) fail_msg("decode: %s", mmp_last_error());
        tok = mmpt_argmax(logits, hp->n_vocab);
    }
    printf("llava_mixtral: %lld greedy ids identical\n", (long long)n_greedy);

    /* the last-position logits alone, through the embeddings of mmp_mm_prompt_embed + plain decode */
    float *emb = malloc((size_t)n_ids * hp->n_embd * sizeof *emb);
    assert_non_null(emb);
    assert_int_equal(mmp_mm_prompt_embed(p, f.llm, 0, (int32_t)n_ids, emb), MMP_OK);
    mmp_llm_ctx_truncate(c, 0);
    mmp_llm_batch b = { .n = (int32_t)n_ids, .embd = emb, .logits = logits };
    assert_int_equal(mmp_llm_decode(c, &b), MMP_OK);
    MMPT_ASSERT_REL_LE(logits, ref + (size_t)(n_ids - 1) * hp->n_vocab, (size_t)hp->n_vocab, 1e-4);

    free(emb);
    free(logits);
    mmp_llm_ctx_free(c);
    mmp_mm_prompt_free(p);
    free(ref);
    free(greedy);
    free(ids);
    fx_close(&f);
}

static void test_golden_one_batch(void **state) { (void)state; check_golden(512); }
static void test_golden_small_batches(void **state) { (void)state; check_golden(5); }

/* The image given as text: "<image>" (the model's placeholder text) and llama.cpp's
 * "<__media__>" expand to the 16 placeholder ids where the marker is; the text around it is
 * tokenized as the tokenizer splits at special tokens. The decoded result must equal an
 * independent path: plain mmp_llm_decode of the text tokens before, the image rows as
 * embeddings, then the text tokens after. */
static void test_text_marker(void **state) {
    (void)state;
    fixture f;
    fx_open(&f);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(f.llm);
    if (!tok) fail_msg("the test copy of llava_mixtral should have a tokenizer.json");
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(f.llm);
    const char *pre = "[INST] Look: ", *post = "\nWhat is in it? [/INST]";
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(mmp_tokenizer_encode(tok, pre, strlen(pre), true, true, &a, &na), MMP_OK);
    assert_int_equal(mmp_tokenizer_encode(tok, post, strlen(post), false, true, &b, &nb), MMP_OK);
    assert_int_equal(a[0], 1); /* BOS */

    mmp_media media = { MMP_MEDIA_IMAGE, f.n_img, hp->n_embd, f.img };
    const char *markers[2] = { "<image>", "<__media__>" };
    float *want = malloc((size_t)hp->n_vocab * sizeof *want), *got = malloc((size_t)hp->n_vocab * sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    mmp_llm_ctx *c = new_ctx(f.llm);
    {
        mmp_llm_batch b1 = { .n = (int32_t)na, .tokens = a };
        mmp_llm_batch b2 = { .n = f.n_img, .embd = f.img };
        mmp_llm_batch b3 = { .n = (int32_t)nb, .tokens = b, .logits = want };
        assert_int_equal(mmp_llm_decode(c, &b1), MMP_OK);
        assert_int_equal(mmp_llm_decode(c, &b2), MMP_OK);
        assert_int_equal(mmp_llm_decode(c, &b3), MMP_OK);
    }
    for (int k = 0; k < 2; k++) {
        char text[256];
        snprintf(text, sizeof text, "%s%s%s", pre, markers[k], post);
        mmp_mm_prompt *p = mmp_mm_prompt_from_text(tok, text, strlen(text), true, mmp_mm_get_markers(f.mm), &media, 1);
        if (!p) fail_msg("prompt: %s", mmp_last_error());
        const int32_t *ids = mmp_mm_prompt_ids(p);
        assert_int_equal(mmp_mm_prompt_n_pos(p), (int32_t)(na + 16 + nb));
        assert_memory_equal(ids, a, na * sizeof *a);
        for (int i = 0; i < 16; i++) {
            assert_int_equal(ids[na + i], 255);
            assert_true(mmp_mm_prompt_is_media(p, (int32_t)(na + i)));
        }
        assert_memory_equal(ids + na + 16, b, nb * sizeof *b);
        mmp_llm_ctx_truncate(c, 0);
        assert_int_equal(mmp_mm_prompt_decode(c, f.llm, p, 0, 0, got, false), MMP_OK);
        double e = mmpt_rel_l2(got, want, (size_t)hp->n_vocab);
        printf("text marker %s: last logits rel L2 vs the three-call decode %.3g\n", markers[k], e);
        MMPT_ASSERT_REL_LE(got, want, (size_t)hp->n_vocab, 1e-5);
        mmp_mm_prompt_free(p);
    }
    /* wrong number of markers, a kind that does not fit */
    assert_null(mmp_mm_prompt_from_text(tok, "no marker", 9, true, mmp_mm_get_markers(f.mm), &media, 1));
    assert_non_null(strstr(mmp_last_error(), "0 media markers but 1"));
    assert_null(mmp_mm_prompt_from_text(tok, "<audio>", 7, true, mmp_mm_get_markers(f.mm), &media, 1));
    assert_non_null(strstr(mmp_last_error(), "wants audio"));

    mmp_llm_ctx_free(c);
    free(want);
    free(got);
    free(a);
    free(b);
    fx_close(&f);
}

/* ---- mismatched widths: a projector whose output is not the LLM's hidden size ---- */

static char *copy_with_projector_width(int32_t n_out) {
    char tmpl[] = "/tmp/mmp_llava_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char path[512];
    mmp_safetensors *src = mmp_safetensors_open(mmpt_data(CASE "/model.safetensors"));
    assert_non_null(src);
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    assert_non_null(w);
    float *fake_w = calloc((size_t)n_out * 64, sizeof(float)), *fake_b = calloc((size_t)n_out, sizeof(float));
    assert_non_null(fake_w);
    assert_non_null(fake_b);
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(src); i++) {
        const mmp_tensor_info *t = mmp_safetensors_tensor(src, i);
        if (!strcmp(t->name, "multi_modal_projector.linear_2.weight")) {
            int64_t shape[2] = { n_out, t->ne[0] };
            assert_int_equal(mmp_safetensors_writer_add(w, t->name, MMP_TYPE_F32, 2, shape, fake_w), MMP_OK);
        } else if (!strcmp(t->name, "multi_modal_projector.linear_2.bias")) {
            int64_t shape[1] = { n_out };
            assert_int_equal(mmp_safetensors_writer_add(w, t->name, MMP_TYPE_F32, 1, shape, fake_b), MMP_OK);
        } else {
            int64_t shape[4];
            for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
            assert_int_equal(mmp_safetensors_writer_add(w, t->name, t->type, t->n_dims, shape, t->data), MMP_OK);
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(mmp_safetensors_writer_write(w, path), MMP_OK);
    mmp_safetensors_writer_free(w);
    mmp_safetensors_free(src);
    free(fake_w);
    free(fake_b);
    size_t len;
    char *cfg = mmpt_read_file(mmpt_data(CASE "/config.json"), &len);
    assert_non_null(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(cfg, 1, len, fp), len);
    fclose(fp);
    free(cfg);
    return strdup(dir);
}

static void remove_dir(char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}

static void test_mismatched_widths(void **state) {
    (void)state;
    mmp_llm *llm = mmp_llm_load(mmpt_data(CASE), NULL);
    assert_non_null(llm);
    char *dir = copy_with_projector_width(48);
    mmp_mm *mm = mmp_mm_load(mmpt_data(CASE), dir, llm, NULL);
    assert_null(mm);
    const char *e = mmp_last_error();
    printf("mismatched projector: %s\n", e);
    assert_non_null(strstr(e, "48"));
    assert_non_null(strstr(e, "64"));
    assert_non_null(strstr(e, "hidden size"));
    remove_dir(dir);

    /* media rows of the wrong width in a prompt */
    float rows[4 * 48] = { 0 };
    mmp_media media = { MMP_MEDIA_IMAGE, 4, 48, rows };
    mmp_mm_markers mk = mmp_mm_markers_default();
    mk.image_token = 255;
    int32_t ids[6] = { 1, 255, 255, 255, 255, 7 };
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, 6, &mk, &media, 1);
    assert_non_null(p);
    float out[6 * 64];
    assert_int_equal(mmp_mm_prompt_embed(p, llm, 0, 6, out), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "48"));
    assert_non_null(strstr(mmp_last_error(), "64"));
    mmp_mm_prompt_free(p);
    mmp_llm_free(llm);
}

/* ---- the same model through a llama.cpp-style mmproj GGUF ----
 * Written here from the HF weights the way llama.cpp's LLaVA converter does it: v.* / mm.*
 * names, clip.vision.* keys, and the tower cut after the feature layer (block_count = layers
 * - 1, no post_layernorm), so the GGUF's last layer is HF's hidden_states[-2]. */
static const char *const k_vit_map[][2] = {
    {"embeddings.patch_embedding.weight", "v.patch_embd.weight"},
    {"embeddings.class_embedding", "v.class_embd"},
    {"embeddings.position_embedding.weight", "v.position_embd.weight"},
    {"pre_layrnorm.weight", "v.pre_ln.weight"}, {"pre_layrnorm.bias", "v.pre_ln.bias"},
};
static const char *const k_layer_map[][2] = {
    {"layer_norm1.", "ln1."}, {"layer_norm2.", "ln2."}, {"self_attn.q_proj.", "attn_q."},
    {"self_attn.k_proj.", "attn_k."}, {"self_attn.v_proj.", "attn_v."}, {"self_attn.out_proj.", "attn_out."},
    {"mlp.fc1.", "ffn_up."}, {"mlp.fc2.", "ffn_down."},
};

static bool mmproj_name(const char *hf, int n_keep, char *out, size_t size) {
    if (!strncmp(hf, "multi_modal_projector.linear_1.", 31)) { snprintf(out, size, "mm.0.%s", hf + 31); return true; }
    if (!strncmp(hf, "multi_modal_projector.linear_2.", 31)) { snprintf(out, size, "mm.2.%s", hf + 31); return true; }
    if (strncmp(hf, "vision_tower.", 13)) return false;
    hf += 13;
    for (size_t i = 0; i < sizeof k_vit_map / sizeof k_vit_map[0]; i++)
        if (!strcmp(hf, k_vit_map[i][0])) { snprintf(out, size, "%s", k_vit_map[i][1]); return true; }
    int il, n = 0;
    if (sscanf(hf, "encoder.layers.%d.%n", &il, &n) == 1 && n > 0 && il < n_keep)
        for (size_t i = 0; i < sizeof k_layer_map / sizeof k_layer_map[0]; i++) {
            size_t k = strlen(k_layer_map[i][0]);
            if (!strncmp(hf + n, k_layer_map[i][0], k)) {
                snprintf(out, size, "v.blk.%d.%s%s", il, k_layer_map[i][1], hf + n + k);
                return true;
            }
        }
    return false; /* post_layernorm, the layers after the feature layer, the LLM */
}

static char *write_mmproj_gguf(void) {
    mmp_safetensors *src = mmp_safetensors_open(mmpt_data(CASE "/model.safetensors"));
    assert_non_null(src);
    mmp_gguf_writer *w = mmp_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mmp_gguf_writer_add_str(w, "general.architecture", "clip"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_bool(w, "clip.has_vision_encoder", true), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_bool(w, "clip.has_llava_projector", true), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_str(w, "clip.projector_type", "mlp"), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.vision.embedding_length", 64), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.vision.feed_forward_length", 128), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.vision.attention.head_count", 4), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.vision.block_count", 2), MMP_OK); /* 3 layers, feature layer -2 */
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.vision.image_size", 32), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_u32(w, "clip.vision.patch_size", 8), MMP_OK);
    assert_int_equal(mmp_gguf_writer_add_f32(w, "clip.vision.attention.layer_norm_epsilon", 1e-5f), MMP_OK);
    int n_written = 0;
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(src); i++) {
        const mmp_tensor_info *t = mmp_safetensors_tensor(src, i);
        char name[160];
        if (!mmproj_name(t->name, 2, name, sizeof name)) continue;
        assert_int_equal(t->type, MMP_TYPE_F32);
        assert_int_equal(mmp_gguf_writer_add_tensor(w, name, MMP_TYPE_F32, t->n_dims, t->ne, t->data), MMP_OK);
        n_written++;
    }
    assert_int_equal(n_written, 3 + 2 + 2 * 16 + 4); /* embeddings, pre-LN, 2 layers, mm.0 + mm.2 */
    char *path = mmpt_write_temp("", 0, ".gguf");
    assert_int_equal(mmp_gguf_writer_write(w, path), MMP_OK);
    mmp_gguf_writer_free(w);
    mmp_safetensors_free(src);
    return path;
}

static void test_mmproj_gguf(void **state) {
    (void)state;
    fixture f;
    fx_open(&f);
    char *gg = write_mmproj_gguf();
    mmp_mm_params mp = mmp_mm_params_default();
    mp.n_threads = 2;
    mmp_mm *mm = mmp_mm_load(mmpt_data(CASE), gg, f.llm, &mp);
    if (!mm) fail_msg("mmproj: %s", mmp_last_error());
    assert_int_equal(mmp_mm_get_markers(mm)->image_token, 255); /* from the model's config */
    float *pv = mmpt_st_f32(f.io, "pixel_values", NULL);
    float *img = NULL;
    int32_t n_img = 0;
    if (mmp_mm_encode_pixels(mm, pv, 32, 32, &img, &n_img)) fail_msg("encode: %s", mmp_last_error());
    assert_int_equal(n_img, 16);
    double e_rows = mmpt_rel_l2(img, f.img, 16 * 64);
    printf("mmproj GGUF: image rows vs the HF folder's rel L2 %.3g\n", e_rows);

    const mmp_llm_hparams *hp = mmp_llm_get_hparams(f.llm);
    int64_t n_ids, n_ref;
    int32_t *ids = mmpt_st_ids(f.io, "input_ids", &n_ids);
    float *ref = mmpt_st_f32(f.io, "logits", &n_ref);
    mmp_media media = { MMP_MEDIA_IMAGE, n_img, hp->n_embd, img };
    mmp_mm_prompt *p = mmp_mm_prompt_from_ids(ids, (int32_t)n_ids, mmp_mm_get_markers(mm), &media, 1);
    assert_non_null(p);
    mmp_llm_ctx *c = new_ctx(f.llm);
    float *logits = malloc((size_t)n_ref * sizeof *logits);
    assert_non_null(logits);
    assert_int_equal(mmp_mm_prompt_decode(c, f.llm, p, 0, 0, logits, true), MMP_OK);
    printf("mmproj GGUF: logits rel L2 %.3g\n", mmpt_rel_l2(logits, ref, (size_t)n_ref));
    MMPT_ASSERT_REL_LE(logits, ref, (size_t)n_ref, 1e-4);

    free(logits);
    mmp_llm_ctx_free(c);
    mmp_mm_prompt_free(p);
    free(ref);
    free(ids);
    free(img);
    free(pv);
    mmp_mm_free(mm);
    unlink(gg);
    free(gg);
    fx_close(&f);
}

/* ---- the CLI ---- */

static char g_err[8192];

#define mmpipe(out, ...) mmpt_run_cli(MMP_TEST_DATA, (out), NULL, g_err, sizeof g_err, __VA_ARGS__)

static void test_cli_chat_image(void **state) {
    (void)state;
    char *out = NULL;
    int rc = mmpipe(&out, "chat -m " CASE " --image " CASE "/image.png -p 'What is in the picture?' -n 8 --temp 0 -t 2");
    printf("chat --image: rc %d\nstdout: %s\nstderr: %s\n", rc, out, g_err);
    assert_int_equal(rc, 0);
    assert_true(strlen(out) > 1);
    assert_non_null(strstr(g_err, "image"));
    free(out);
    /* two images placed by the message itself */
    rc = mmpipe(&out, "chat -m " CASE " --image " CASE "/image.png --image " CASE "/image.png -p '<image> or <image>?' -n 4 --temp 0 -t 2");
    printf("chat two images: rc %d\nstdout: %s\nstderr: %s\n", rc, out, g_err);
    assert_int_equal(rc, 0);
    const char *first = strstr(g_err, "-> 16 embeddings");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "-> 16 embeddings")); /* both images encoded */
    assert_non_null(strstr(g_err, "tokens/s"));
    free(out);
    /* one image, two markers: an error that names both counts */
    rc = mmpipe(&out, "chat -m " CASE " --image " CASE "/image.png -p '<image> or <image>?' -n 4");
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g_err, "1 item"));
    assert_non_null(strstr(g_err, "2 media markers"));
    free(out);
    /* /image in the interactive chat (stdin from a here-string) */
    rc = mmpipe(&out, "chat -m " CASE " -n 4 --temp 0 -t 2 <<'EOF'\n/image " CASE "/image.png\nDescribe it.\n/exit\nEOF\n");
    printf("chat /image: rc %d\nstdout: %s\nstderr: %s\n", rc, out, g_err);
    assert_int_equal(rc, 0);
    assert_true(strlen(out) > 1);
    free(out);
}

static void test_cli_bad_inputs(void **state) {
    (void)state;
    /* missing image */
    int rc = mmpipe(NULL, "chat -m " CASE " --image " CASE "/no-such.png -p hi -n 2");
    printf("missing image: rc %d: %s\n", rc, g_err);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(g_err, "no-such.png"));
    /* corrupt image: a text file named .png */
    char *bad = mmpt_write_temp("this is not a png", 17, ".png");
    rc = mmpipe(NULL, "chat -m " CASE " --image '%s' -p hi -n 2", bad);
    printf("corrupt image: rc %d: %s\n", rc, g_err);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(g_err, bad));
    unlink(bad);
    free(bad);
    /* mismatched projector */
    char *dir = copy_with_projector_width(48);
    rc = mmpipe(NULL, "chat -m " CASE " --mmproj '%s' --image " CASE "/image.png -p hi -n 2", dir);
    printf("mismatched projector: rc %d: %s\n", rc, g_err);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(g_err, "gives 48-wide embeddings"));
    assert_non_null(strstr(g_err, "takes 64"));
    remove_dir(dir);
    /* an image for a model without a vision part */
    rc = mmpipe(NULL, "chat -m ../../models/stories260K.gguf --chat-template chatml --image " CASE "/image.png -p hi -n 2");
    printf("text-only model: rc %d: %s\n", rc, g_err);
    assert_int_not_equal(rc, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_one_batch),
        cmocka_unit_test(test_golden_small_batches),
        cmocka_unit_test(test_text_marker),
        cmocka_unit_test(test_mismatched_widths),
        cmocka_unit_test(test_mmproj_gguf),
        cmocka_unit_test(test_cli_chat_image),
        cmocka_unit_test(test_cli_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
