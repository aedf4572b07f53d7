/* CLIP ViT against golden clip_vision (every hidden state, last_hidden_state, pooler_output)
 * and loading the same tower from a LLaVA folder (vision_tower.* names). */
#include "testutil.h"
#include "mmpipe/vision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static float *golden(mmp_safetensors *io, const char *name, int64_t *n) {
    const mmp_tensor_info *t = mmp_safetensors_find(io, name);
    if (!t) fail_msg("golden has no '%s'", name);
    assert_int_equal(t->type, MMP_TYPE_F32);
    float *f = malloc(t->nbytes);
    memcpy(f, t->data, t->nbytes);
    *n = (int64_t)(t->nbytes / 4);
    return f;
}

static void test_clip_golden(void **st) {
    (void)st;
    mmp_vit *v = mmp_vit_load(mmpt_data("vision/clip_vision"));
    if (!v) fail_msg("%s", mmp_last_error());
    const mmp_vit_hparams *hp = mmp_vit_get_hparams(v);
    assert_int_equal(hp->arch, MMP_VIT_CLIP);
    assert_int_equal(hp->n_pos, 17);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("vision/clip_vision/io.safetensors"));
    assert_non_null(io);
    int64_t npx, n, np;
    float *px = golden(io, "pixel_values", &npx);
    float *out = malloc(sizeof(float) * 17 * 64), pooled[64];
    for (int i = 0; i <= hp->n_layer; i++) {
        char name[32];
        snprintf(name, sizeof name, "hidden_states.%d", i);
        float *ref = golden(io, name, &n);
        mmp_vit_params p = mmp_vit_params_default();
        p.layer = i;
        p.n_threads = 2;
        assert_int_equal(mmp_vit_n_tokens(v, &p), 17);
        if (mmp_vit_encode(v, px, 32, 32, &p, out, NULL) != MMP_OK) fail_msg("%s", mmp_last_error());
        printf("clip_vision %s: rel L2 %.3g\n", name, mmpt_rel_l2(out, ref, (size_t)n));
        MMPT_ASSERT_REL_LE(out, ref, (size_t)n, 1e-4);
        /* negative index = same state */
        p.layer = i - hp->n_layer - 1;
        assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, NULL), MMP_OK);
        MMPT_ASSERT_REL_LE(out, ref, (size_t)n, 1e-4);
        /* drop_cls = rows 1.. */
        p.drop_cls = true;
        assert_int_equal(mmp_vit_n_tokens(v, &p), 16);
        assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, NULL), MMP_OK);
        MMPT_ASSERT_REL_LE(out, ref + 64, (size_t)n - 64, 1e-4);
        free(ref);
    }
    float *ref = golden(io, "last_hidden_state", &n), *pref = golden(io, "pooler_output", &np);
    mmp_vit_params p = mmp_vit_params_default();
    assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, pooled), MMP_OK);
    printf("clip_vision last_hidden_state: rel L2 %.3g, pooler_output: %.3g\n", mmpt_rel_l2(out, ref, (size_t)n),
           mmpt_rel_l2(pooled, pref, (size_t)np));
    MMPT_ASSERT_REL_LE(out, ref, (size_t)n, 1e-4);
    MMPT_ASSERT_REL_LE(pooled, pref, (size_t)np, 1e-4);
    free(ref);
    free(pref);
    /* bad calls */
    assert_int_equal(mmp_vit_encode(v, px, 16, 16, &p, out, NULL), MMP_ERR_SHAPE);
    assert_non_null(strstr(mmp_last_error(), "32x32"));
    p.layer = 4;
    assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, NULL), MMP_ERR_INVALID_ARG);
    p.layer = -5;
    assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, NULL), MMP_ERR_INVALID_ARG);
    free(out);
    free(px);
    mmp_safetensors_free(io);
    mmp_vit_free(v);
    mmp_vit_free(NULL);
}

static void test_llava_tower(void **st) {
    (void)st;
    mmp_vit *v = mmp_vit_load(mmpt_data("vision/llava_mixtral"));
    if (!v) fail_msg("%s", mmp_last_error());
    const mmp_vit_hparams *hp = mmp_vit_get_hparams(v);
    assert_int_equal(hp->n_embd, 64);
    assert_int_equal(hp->n_layer, 3);
    assert_int_equal(hp->act, MMP_UNARY_QUICK_GELU);
    mmp_vit_params p = mmp_vit_params_default();
    p.layer = -2;
    p.drop_cls = true;
    assert_int_equal(mmp_vit_n_tokens(v, &p), 16);
    float px[3 * 32 * 32], out[16 * 64];
    mmpt_rand_fill(px, 3 * 32 * 32, 7, -2, 2);
    assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, NULL), MMP_OK);
    mmp_vit_free(v);
    /* not a vision model */
    assert_null(mmp_vit_load(mmpt_data("vision/clip_text")));
    assert_non_null(strstr(mmp_last_error(), "patch_embedding"));
    assert_null(mmp_vit_load("/nonexistent/model"));
}


/* ---- projectors (projectors/mlp.c): LLaVA MLP against a scalar computation from the weights ---- */

static float *weight(const char *file, const char *name, int64_t *ne0, int64_t *ne1) {
    mmp_safetensors *m = mmp_safetensors_open(file);
    assert_non_null(m);
    const mmp_tensor_info *t = mmp_safetensors_find(m, name);
    if (!t) fail_msg("no %s", name);
    float *f = malloc(t->nbytes);
    memcpy(f, t->data, t->nbytes);
    if (ne0) *ne0 = t->ne[0];
    if (ne1) *ne1 = t->n_dims > 1 ? t->ne[1] : 1;
    mmp_safetensors_free(m);
    return f;
}

/* y = W2 gelu_erf(W1 x + b1) + b2, in double. two_layers false: y = W1 x + b1. */
static void mlp_ref(const float *w1, const float *b1, const float *w2, const float *b2, int n_in, int n_mid, int n_out,
                    const float *x, int n, float *y, bool two_layers) {
    double *h = malloc(sizeof(double) * n_mid);
    for (int r = 0; r < n; r++) {
        for (int o = 0; o < n_mid; o++) {
            double s = b1[o];
            for (int i = 0; i < n_in; i++) s += (double)w1[o * n_in + i] * x[r * n_in + i];
            h[o] = two_layers ? 0.5 * s * (1 + erf(s / sqrt(2.0))) : s;
        }
        if (!two_layers) { for (int o = 0; o < n_mid; o++) y[r * n_mid + o] = (float)h[o]; continue; }
        for (int o = 0; o < n_out; o++) {
            double s = b2[o];
            for (int i = 0; i < n_mid; i++) s += (double)w2[o * n_mid + i] * h[i];
            y[r * n_out + o] = (float)s;
        }
    }
    free(h);
}

static void test_projector_llava(void **st) {
    (void)st;
    const char *f = mmpt_data("vision/llava_mixtral/model.safetensors");
    int64_t ni, nm, no;
    float *w1 = weight(f, "multi_modal_projector.linear_1.weight", &ni, &nm);
    float *b1 = weight(f, "multi_modal_projector.linear_1.bias", NULL, NULL);
    float *w2 = weight(f, "multi_modal_projector.linear_2.weight", NULL, &no);
    float *b2 = weight(f, "multi_modal_projector.linear_2.bias", NULL, NULL);
    mmp_projector *p = mmp_projector_load(mmpt_data("vision/llava_mixtral"));
    if (!p) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_projector_get_kind(p), MMP_PROJ_MLP);
    assert_int_equal(mmp_projector_n_in(p), ni);
    assert_int_equal(mmp_projector_n_out(p), no);
    /* the real path: CLIP layer -2 without the class token -> projector */
    mmp_vit *v = mmp_vit_load(mmpt_data("vision/llava_mixtral"));
    assert_non_null(v);
    mmp_vit_params vp = mmp_vit_params_default();
    vp.layer = -2;
    vp.drop_cls = true;
    float px[3 * 32 * 32], feat[16 * 64], y[16 * 64], ref[16 * 64];
    mmpt_rand_fill(px, 3 * 32 * 32, 11, -2, 2);
    assert_int_equal(mmp_vit_encode(v, px, 32, 32, &vp, feat, NULL), MMP_OK);
    assert_int_equal(mmp_projector_run(p, feat, 16, y, 2), MMP_OK);
    mlp_ref(w1, b1, w2, b2, (int)ni, (int)nm, (int)no, feat, 16, ref, true);
    printf("llava projector (CLIP layer -2 features) vs scalar MLP: rel L2 %.3g\n", mmpt_rel_l2(y, ref, 16 * 64));
    MMPT_ASSERT_REL_LE(y, ref, 16 * 64, 1e-5);
    mmp_vit_free(v);
    mmp_projector_free(p);

    /* the same weights as an mmproj GGUF (mm.0 / mm.2), F32 and F16 matrices */
    for (int f16 = 0; f16 < 2; f16++) {
        mmp_gguf_writer *gw = mmp_gguf_writer_new();
        const int64_t ne1[2] = {ni, nm}, ne2[2] = {nm, no}, nb1[1] = {nm}, nb2[1] = {no};
        uint16_t *h1 = malloc(2 * ni * nm), *h2 = malloc(2 * nm * no);
        for (int64_t i = 0; i < ni * nm; i++) { h1[i] = mmp_fp32_to_fp16(w1[i]); }
        for (int64_t i = 0; i < nm * no; i++) { h2[i] = mmp_fp32_to_fp16(w2[i]); }
        mmp_gguf_writer_add_str(gw, "clip.projector_type", "mlp");
        assert_int_equal(mmp_gguf_writer_add_tensor(gw, "mm.0.weight", f16 ? MMP_TYPE_F16 : MMP_TYPE_F32, 2, ne1, f16 ? (void *)h1 : (void *)w1), MMP_OK);
        assert_int_equal(mmp_gguf_writer_add_tensor(gw, "mm.0.bias", MMP_TYPE_F32, 1, nb1, b1), MMP_OK);
        assert_int_equal(mmp_gguf_writer_add_tensor(gw, "mm.2.weight", f16 ? MMP_TYPE_F16 : MMP_TYPE_F32, 2, ne2, f16 ? (void *)h2 : (void *)w2), MMP_OK);
        assert_int_equal(mmp_gguf_writer_add_tensor(gw, "mm.2.bias", MMP_TYPE_F32, 1, nb2, b2), MMP_OK);
        char *path = mmpt_write_temp("", 0, ".gguf");
        assert_int_equal(mmp_gguf_writer_write(gw, path), MMP_OK);
        mmp_gguf_writer_free(gw);
        p = mmp_projector_load(path);
        if (!p) fail_msg("%s", mmp_last_error());
        assert_int_equal(mmp_projector_get_kind(p), MMP_PROJ_MLP);
        assert_int_equal(mmp_projector_run(p, feat, 16, y, 1), MMP_OK);
        if (f16) {
            /* reference with the f16-rounded weights */
            for (int64_t i = 0; i < ni * nm; i++) h1[i] = 0, w1[i] = mmp_fp16_to_fp32(mmp_fp32_to_fp16(w1[i]));
            for (int64_t i = 0; i < nm * no; i++) w2[i] = mmp_fp16_to_fp32(mmp_fp32_to_fp16(w2[i]));
            mlp_ref(w1, b1, w2, b2, (int)ni, (int)nm, (int)no, feat, 16, ref, true);
        }
        printf("mmproj GGUF projector (%s): rel L2 %.3g\n", f16 ? "F16" : "F32", mmpt_rel_l2(y, ref, 16 * 64));
        /* f16 matrices: against dequantize-then-f32 (DESIGN: quantized weights <= 1e-4) */
        MMPT_ASSERT_REL_LE(y, ref, 16 * 64, f16 ? 1e-4 : 1e-5);
        mmp_projector_free(p);
        unlink(path);
        free(path);
        free(h1);
        free(h2);
    }

    /* linear (mm.0 only) and a width mismatch between the two layers */
    mmp_gguf_writer *gw = mmp_gguf_writer_new();
    const int64_t ne1[2] = {ni, nm}, nb1[1] = {nm}, bad[2] = {nm - 1, no};
    mmp_gguf_writer_add_tensor(gw, "mm.0.weight", MMP_TYPE_F32, 2, ne1, w1);
    mmp_gguf_writer_add_tensor(gw, "mm.0.bias", MMP_TYPE_F32, 1, nb1, b1);
    char *path = mmpt_write_temp("", 0, ".gguf");
    assert_int_equal(mmp_gguf_writer_write(gw, path), MMP_OK);
    p = mmp_projector_load(path);
    assert_non_null(p);
    assert_int_equal(mmp_projector_get_kind(p), MMP_PROJ_LINEAR);
    assert_int_equal(mmp_projector_run(p, feat, 16, y, 1), MMP_OK);
    mlp_ref(w1, b1, NULL, NULL, (int)ni, (int)nm, 0, feat, 16, ref, false);
    MMPT_ASSERT_REL_LE(y, ref, 16 * 64, 1e-5);
    mmp_projector_free(p);
    mmp_gguf_writer_add_tensor(gw, "mm.2.weight", MMP_TYPE_F32, 2, bad, w2);
    assert_int_equal(mmp_gguf_writer_write(gw, path), MMP_OK);
    assert_null(mmp_projector_load(path));
    assert_non_null(strstr(mmp_last_error(), "63"));
    printf("mismatch: %s\n", mmp_last_error());
    mmp_gguf_writer_free(gw);
    unlink(path);
    free(path);
    assert_null(mmp_projector_load(mmpt_data("vision/clip_vision")));
    assert_non_null(strstr(mmp_last_error(), "no projector"));
    free(w1); free(b1); free(w2); free(b2);
}

/* ---- stage kinds ---- */
static void test_stages(void **st) {
    (void)st;
    mmp_registry *r = mmp_registry_new();
    assert_non_null(r);
    const mmp_stage_kind *kc = mmp_registry_find(r, "encoder.clip"), *km = mmp_registry_find(r, "projector.mlp"),
                         *kt = mmp_registry_find(r, "encoder.clip_text");
    assert_non_null(kc);
    assert_non_null(km);
    assert_non_null(kt);
    assert_non_null(mmp_registry_find(r, "encoder.siglip"));
    assert_non_null(mmp_registry_find(r, "projector.linear"));
    /* LLaVA folder: the config's vision_feature_layer -2 / "default" strategy are the defaults */
    mmp_stage_params p = mmp_stage_params_default();
    p.model_path = mmpt_data("vision/llava_mixtral");
    mmp_stage *enc = mmp_stage_new(kc, &p);
    if (!enc) fail_msg("%s", mmp_last_error());
    mmp_stage *proj = mmp_stage_new(km, &p);
    if (!proj) fail_msg("%s", mmp_last_error());
    const mmp_port *eo = mmp_stage_output(enc, 0), *pi = mmp_stage_input(proj, 0);
    assert_int_equal(eo->type.dims[0], 16);
    assert_int_equal(eo->type.dims[1], 64);
    assert_int_equal(mmp_stage_input(enc, 0)->type.dims[1], 32);
    assert_int_equal(mmp_port_check_connect("clip.hidden", &eo->type, "mlp.hidden", &pi->type), MMP_OK);
    float px[3 * 32 * 32], feat[16 * 64];
    mmpt_rand_fill(px, 3 * 32 * 32, 5, -2, 2);
    int64_t dims[3] = {3, 32, 32};
    mmp_array *in = mmp_array_wrap(MMP_TYPE_F32, 3, dims, px);
    mmp_array *out[2] = {NULL, NULL}, *emb[1] = {NULL};
    const mmp_array *ins[1] = {in};
    if (mmp_stage_run(enc, ins, out) != MMP_OK) fail_msg("%s", mmp_last_error());
    /* same as the library call */
    mmp_vit *v = mmp_vit_load(mmpt_data("vision/llava_mixtral"));
    mmp_vit_params vp = mmp_vit_params_default();
    vp.layer = -2;
    vp.drop_cls = true;
    assert_int_equal(mmp_vit_encode(v, px, 32, 32, &vp, feat, NULL), MMP_OK);
    MMPT_ASSERT_REL_LE((const float *)out[0]->data, feat, 16 * 64, 1e-6);
    mmp_vit_free(v);
    const mmp_array *pin[1] = {out[0]};
    assert_int_equal(mmp_stage_run(proj, pin, emb), MMP_OK);
    assert_int_equal(emb[0]->dims[0], 16);
    assert_int_equal(emb[0]->dims[1], 64);
    mmp_array_free(emb[0]);
    mmp_array_free(out[0]);
    /* wrong image size is refused by the port check */
    int64_t bad[3] = {3, 16, 16};
    mmp_array *in2 = mmp_array_wrap(MMP_TYPE_F32, 3, bad, px);
    const mmp_array *ins2[1] = {in2};
    assert_int_not_equal(mmp_stage_run(enc, ins2, out), MMP_OK);
    mmp_array_free(in2);
    mmp_array_free(in);
    /* text encoder pooled [1, 32] into the 64-wide projector: the typed ports name both widths */
    mmp_stage_params tp = mmp_stage_params_default();
    tp.model_path = mmpt_data("vision/clip_text");
    tp.options = "layer=-2,final_ln=1";
    mmp_stage *te = mmp_stage_new(kt, &tp);
    if (!te) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_port_check_connect("clip_text.pooled", &mmp_stage_output(te, 1)->type, "mlp.hidden", &pi->type),
                     MMP_ERR_SHAPE);
    printf("width mismatch: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "32"));
    assert_non_null(strstr(mmp_last_error(), "64"));
    mmp_stage_free(te);
    /* options and kinds */
    tp.options = "layer=7";
    assert_null(mmp_stage_new(kt, &tp));
    tp.options = "bogus=1";
    assert_null(mmp_stage_new(kt, &tp));
    assert_non_null(strstr(mmp_last_error(), "bogus"));
    p.model_path = mmpt_data("vision/siglip_vision");
    assert_null(mmp_stage_new(kc, &p));
    assert_non_null(strstr(mmp_last_error(), "SigLIP"));
    /* encoder.vit takes either tower: the same output as encoder.clip on the LLaVA folder and as
     * encoder.siglip on the SigLIP model (defaults included) */
    const mmp_stage_kind *kv = mmp_registry_find(r, "encoder.vit"), *ks = mmp_registry_find(r, "encoder.siglip");
    assert_non_null(kv);
    const char *const models[2] = { "vision/llava_mixtral", "vision/siglip_vision" };
    for (int mi = 0; mi < 2; mi++) {
        mmp_stage_params vp2 = mmp_stage_params_default();
        vp2.model_path = mmpt_data(models[mi]);
        mmp_stage *a = mmp_stage_new(kv, &vp2), *b = mmp_stage_new(mi ? ks : kc, &vp2);
        if (!a || !b) fail_msg("%s", mmp_last_error());
        int64_t sz = mmp_stage_input(a, 0)->type.dims[1];
        assert_int_equal(sz, mmp_stage_input(b, 0)->type.dims[1]);
        int64_t d3[3] = { 3, sz, sz };
        mmp_array *x = mmp_array_new(MMP_TYPE_F32, 3, d3);
        mmpt_rand_fill(x->data, (size_t)(3 * sz * sz), 9, -1, 1);
        const mmp_array *xi[1] = { x };
        mmp_array *oa[1] = { NULL }, *ob[1] = { NULL };
        assert_int_equal(mmp_stage_run(a, xi, oa), MMP_OK);
        assert_int_equal(mmp_stage_run(b, xi, ob), MMP_OK);
        assert_int_equal(oa[0]->dims[0], ob[0]->dims[0]);
        assert_int_equal(oa[0]->dims[1], ob[0]->dims[1]);
        assert_memory_equal(oa[0]->data, ob[0]->data, mmp_array_nbytes(ob[0]));
        mmp_array_free(oa[0]);
        mmp_array_free(ob[0]);
        mmp_array_free(x);
        mmp_stage_free(a);
        mmp_stage_free(b);
    }
    mmp_stage_free(enc);
    mmp_stage_free(proj);
    mmp_registry_free(r);
}

/* The clip_vision tower written as a llama.cpp mmproj GGUF (clip.vision.* keys, v.* names),
 * once with the current ffn_up/ffn_down naming and once with the legacy swapped one. */
static void test_clip_gguf(void **st) {
    (void)st;
    mmp_safetensors *m = mmp_safetensors_open(mmpt_data("vision/clip_vision/model.safetensors"));
    assert_non_null(m);
    mmp_safetensors *io = mmp_safetensors_open(mmpt_data("vision/clip_vision/io.safetensors"));
    int64_t npx, n;
    float *px = golden(io, "pixel_values", &npx);
    for (int legacy = 0; legacy < 2; legacy++) {
        mmp_gguf_writer *gw = mmp_gguf_writer_new();
        mmp_gguf_writer_add_str(gw, "general.architecture", "clip");
        mmp_gguf_writer_add_bool(gw, "clip.has_vision_encoder", true);
        mmp_gguf_writer_add_bool(gw, "clip.use_gelu", false);
        mmp_gguf_writer_add_u32(gw, "clip.vision.embedding_length", 64);
        mmp_gguf_writer_add_u32(gw, "clip.vision.feed_forward_length", 128);
        mmp_gguf_writer_add_u32(gw, "clip.vision.attention.head_count", 4);
        mmp_gguf_writer_add_u32(gw, "clip.vision.block_count", 3);
        mmp_gguf_writer_add_u32(gw, "clip.vision.image_size", 32);
        mmp_gguf_writer_add_u32(gw, "clip.vision.patch_size", 8);
        mmp_gguf_writer_add_f32(gw, "clip.vision.attention.layer_norm_epsilon", 1e-5f);
        float **bufs = calloc(256, sizeof(float *));
        int nb = 0;
        for (int64_t i = 0; i < mmp_safetensors_n_tensors(m); i++) {
            const mmp_tensor_info *t = mmp_safetensors_tensor(m, i);
            char name[128];
            int il, k = 0;
            const char *map[][2] = {{"embeddings.patch_embedding.weight", "v.patch_embd.weight"},
                                    {"embeddings.class_embedding", "v.class_embd"},
                                    {"embeddings.position_embedding.weight", "v.position_embd.weight"},
                                    {"pre_layrnorm.weight", "v.pre_ln.weight"}, {"pre_layrnorm.bias", "v.pre_ln.bias"},
                                    {"post_layernorm.weight", "v.post_ln.weight"}, {"post_layernorm.bias", "v.post_ln.bias"}};
            name[0] = 0;
            for (int j = 0; j < 7; j++)
                if (!strcmp(t->name, map[j][0])) snprintf(name, sizeof name, "%s", map[j][1]);
            if (!name[0] && sscanf(t->name, "encoder.layers.%d.%n", &il, &k) == 1) {
                const char *r = t->name + k;
                const char *lm[][2] = {{"layer_norm1.", "ln1."}, {"layer_norm2.", "ln2."}, {"self_attn.q_proj.", "attn_q."},
                                       {"self_attn.k_proj.", "attn_k."}, {"self_attn.v_proj.", "attn_v."},
                                       {"self_attn.out_proj.", "attn_out."}, {"mlp.fc1.", legacy ? "ffn_down." : "ffn_up."},
                                       {"mlp.fc2.", legacy ? "ffn_up." : "ffn_down."}};
                for (int j = 0; j < 8; j++)
                    if (!strncmp(r, lm[j][0], strlen(lm[j][0])))
                        snprintf(name, sizeof name, "v.blk.%d.%s%s", il, lm[j][1], r + strlen(lm[j][0]));
            }
            if (!name[0]) fail_msg("unmapped %s", t->name);
            bufs[nb] = malloc(t->nbytes);
            memcpy(bufs[nb], t->data, t->nbytes);
            assert_int_equal(mmp_gguf_writer_add_tensor(gw, name, MMP_TYPE_F32, t->n_dims, t->ne, bufs[nb]), MMP_OK);
            nb++;
        }
        char *path = mmpt_write_temp("", 0, ".gguf");
        assert_int_equal(mmp_gguf_writer_write(gw, path), MMP_OK);
        mmp_gguf_writer_free(gw);
        for (int i = 0; i < nb; i++) free(bufs[i]);
        free(bufs);
        mmp_vit *v = mmp_vit_load(path);
        if (!v) fail_msg("%s", mmp_last_error());
        float out[17 * 64];
        for (int i = 0; i <= 3; i++) {
            char hn[32];
            snprintf(hn, sizeof hn, "hidden_states.%d", i);
            float *ref = golden(io, hn, &n);
            mmp_vit_params p = mmp_vit_params_default();
            p.layer = i;
            assert_int_equal(mmp_vit_encode(v, px, 32, 32, &p, out, NULL), MMP_OK);
            MMPT_ASSERT_REL_LE(out, ref, (size_t)n, 1e-4);
            free(ref);
        }
        printf("mmproj GGUF tower (%s ffn names): all hidden states match the golden\n", legacy ? "legacy" : "current");
        mmp_vit_free(v);
        unlink(path);
        free(path);
    }
    free(px);
    mmp_safetensors_free(io);
    mmp_safetensors_free(m);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    void *b = mmpt_read_file(from, &n);
    assert_non_null(b);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

/* preprocessor_config.json next to the model sets the processor; a bad one is an error
 * naming the file. */
static void test_preproc_config(void **st) {
    (void)st;
    char dir[] = "/tmp/mmp_vitcfgXXXXXX", a[96], b[96], c[96];
    assert_non_null(mkdtemp(dir));
    snprintf(a, sizeof a, "%s/config.json", dir);
    snprintf(b, sizeof b, "%s/model.safetensors", dir);
    snprintf(c, sizeof c, "%s/preprocessor_config.json", dir);
    copy_file(mmpt_data("vision/clip_vision/config.json"), a);
    copy_file(mmpt_data("vision/clip_vision/model.safetensors"), b);
    mmp_vit *v = mmp_vit_load(dir);
    assert_non_null(v);
    const mmp_preproc *pp = mmp_vit_get_preproc(v);
    assert_int_equal(pp->resize, MMP_RESIZE_SHORTEST_EDGE);
    assert_int_equal(pp->shortest_edge, 32);
    mmp_vit_free(v);
    const char *js = "{\"size\": {\"shortest_edge\": 40}, \"crop_size\": 32, \"resample\": 2, \"image_mean\": [0.5, 0.5, 0.5]}";
    FILE *f = fopen(c, "w");
    fputs(js, f);
    fclose(f);
    v = mmp_vit_load(dir);
    if (!v) fail_msg("%s", mmp_last_error());
    pp = mmp_vit_get_preproc(v);
    assert_int_equal(pp->shortest_edge, 40);
    assert_int_equal(pp->crop_width, 32);
    assert_int_equal(pp->resample, MMP_RESAMPLE_BILINEAR);
    assert_true(pp->mean[0] == 0.5f);
    mmp_vit_free(v);
    f = fopen(c, "w");
    fputs("{\"size\": \"big\"}", f);
    fclose(f);
    assert_null(mmp_vit_load(dir));
    assert_non_null(strstr(mmp_last_error(), "preprocessor_config.json"));
    unlink(a);
    unlink(b);
    unlink(c);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_golden),
        cmocka_unit_test(test_llava_tower),
        cmocka_unit_test(test_clip_gguf),
        cmocka_unit_test(test_preproc_config),
        cmocka_unit_test(test_projector_llava),
        cmocka_unit_test(test_stages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
