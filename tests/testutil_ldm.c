/* Test helper shared by test_sd_load.c and test_txt2img_pipe.c: the diffusers -> LDM renaming
 * used to build single-file Stable Diffusion checkpoints from the tiny golden folders (an
 * independent inverse of diffusers' convert_from_ckpt tables; golden unet: layers_per_block 1,
 * golden vae: 3 levels). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static const char *resnet_to_ldm(const char *r, char *buf, size_t n) {
    static const char *const m[][2] = { { "norm1.", "in_layers.0." }, { "conv1.", "in_layers.2." },
                                        { "time_emb_proj.", "emb_layers.1." }, { "norm2.", "out_layers.0." },
                                        { "conv2.", "out_layers.3." }, { "conv_shortcut.", "skip_connection." } };
    for (size_t i = 0; i < 6; i++)
        if (!strncmp(r, m[i][0], strlen(m[i][0]))) { snprintf(buf, n, "%s%s", m[i][1], r + strlen(m[i][0])); return buf; }
    fail_msg("unexpected resnet tensor %s", r);
    return NULL;
}

static void unet_to_ldm(const char *d, int L, const bool *up_attn, char *out, size_t n) {
    int b, l, k;
    char rest[256], r2[256];
    if (!strncmp(d, "conv_in.", 8)) snprintf(out, n, "model.diffusion_model.input_blocks.0.0.%s", d + 8);
    else if (!strncmp(d, "time_embedding.linear_1.", 24)) snprintf(out, n, "model.diffusion_model.time_embed.0.%s", d + 24);
    else if (!strncmp(d, "time_embedding.linear_2.", 24)) snprintf(out, n, "model.diffusion_model.time_embed.2.%s", d + 24);
    else if (!strncmp(d, "conv_norm_out.", 14)) snprintf(out, n, "model.diffusion_model.out.0.%s", d + 14);
    else if (!strncmp(d, "conv_out.", 9)) snprintf(out, n, "model.diffusion_model.out.2.%s", d + 9);
    else if (sscanf(d, "down_blocks.%d.resnets.%d.%255s", &b, &l, rest) == 3)
        snprintf(out, n, "model.diffusion_model.input_blocks.%d.0.%s", 1 + b * (L + 1) + l, resnet_to_ldm(rest, r2, sizeof r2));
    else if (sscanf(d, "down_blocks.%d.attentions.%d.%255s", &b, &l, rest) == 3)
        snprintf(out, n, "model.diffusion_model.input_blocks.%d.1.%s", 1 + b * (L + 1) + l, rest);
    else if (sscanf(d, "down_blocks.%d.downsamplers.0.conv.%255s", &b, rest) == 2)
        snprintf(out, n, "model.diffusion_model.input_blocks.%d.0.op.%s", 1 + b * (L + 1) + L, rest);
    else if (sscanf(d, "mid_block.resnets.%d.%255s", &k, rest) == 2)
        snprintf(out, n, "model.diffusion_model.middle_block.%d.%s", 2 * k, resnet_to_ldm(rest, r2, sizeof r2));
    else if (sscanf(d, "mid_block.attentions.0.%255s", rest) == 1)
        snprintf(out, n, "model.diffusion_model.middle_block.1.%s", rest);
    else if (sscanf(d, "up_blocks.%d.resnets.%d.%255s", &b, &l, rest) == 3)
        snprintf(out, n, "model.diffusion_model.output_blocks.%d.0.%s", b * (L + 1) + l, resnet_to_ldm(rest, r2, sizeof r2));
    else if (sscanf(d, "up_blocks.%d.attentions.%d.%255s", &b, &l, rest) == 3)
        snprintf(out, n, "model.diffusion_model.output_blocks.%d.1.%s", b * (L + 1) + l, rest);
    else if (sscanf(d, "up_blocks.%d.upsamplers.0.conv.%255s", &b, rest) == 2)
        snprintf(out, n, "model.diffusion_model.output_blocks.%d.%d.conv.%s", b * (L + 1) + L, up_attn[b] ? 2 : 1, rest);
    else fail_msg("unexpected unet tensor %s", d);
}

/* returns true when the weight must become a 1x1 conv */
static bool vae_to_ldm(const char *d, int n_up, char *out, size_t n) {
    int i, j;
    char side[16], rest[256], r2[256];
    if (!strncmp(d, "quant_conv.", 11) || !strncmp(d, "post_quant_conv.", 16)) { snprintf(out, n, "first_stage_model.%s", d); return false; }
    if (sscanf(d, "%15[^.].%255s", side, rest) != 2) fail_msg("bad vae name %s", d);
    const char *r = rest;
    if (!strncmp(r, "conv_in.", 8) || !strncmp(r, "conv_out.", 9)) snprintf(out, n, "first_stage_model.%s.%s", side, r);
    else if (!strncmp(r, "conv_norm_out.", 14)) snprintf(out, n, "first_stage_model.%s.norm_out.%s", side, r + 14);
    else if (sscanf(r, "down_blocks.%d.resnets.%d.%255s", &i, &j, r2) == 3)
        snprintf(out, n, "first_stage_model.encoder.down.%d.block.%d.%s", i, j,
                 !strncmp(r2, "conv_shortcut.", 14) ? (snprintf(rest, sizeof rest, "nin_shortcut.%s", r2 + 14), rest) : r2);
    else if (sscanf(r, "down_blocks.%d.downsamplers.0.conv.%255s", &i, r2) == 2)
        snprintf(out, n, "first_stage_model.encoder.down.%d.downsample.conv.%s", i, r2);
    else if (sscanf(r, "up_blocks.%d.resnets.%d.%255s", &i, &j, r2) == 3)
        snprintf(out, n, "first_stage_model.decoder.up.%d.block.%d.%s", n_up - 1 - i, j,
                 !strncmp(r2, "conv_shortcut.", 14) ? (snprintf(rest, sizeof rest, "nin_shortcut.%s", r2 + 14), rest) : r2);
    else if (sscanf(r, "up_blocks.%d.upsamplers.0.conv.%255s", &i, r2) == 2)
        snprintf(out, n, "first_stage_model.decoder.up.%d.upsample.conv.%s", n_up - 1 - i, r2);
    else if (sscanf(r, "mid_block.resnets.%d.%255s", &i, r2) == 2)
        snprintf(out, n, "first_stage_model.%s.mid.block_%d.%s", side, i + 1, r2);
    else if (sscanf(r, "mid_block.attentions.0.%255s", r2) == 1) {
        static const char *const m[][2] = { { "group_norm.", "norm." }, { "to_q.", "q." }, { "to_k.", "k." },
                                            { "to_v.", "v." }, { "to_out.0.", "proj_out." } };
        for (size_t k = 0; k < 5; k++)
            if (!strncmp(r2, m[k][0], strlen(m[k][0]))) {
                const char *wb = r2 + strlen(m[k][0]);
                snprintf(out, n, "first_stage_model.%s.mid.attn_1.%s%s", side, m[k][1], wb);
                return k > 0 && !strcmp(wb, "weight");
            }
        fail_msg("bad vae attention name %s", d);
    } else fail_msg("unexpected vae tensor %s", d);
    return false;
}

void mmpt_ldm_add(mmp_safetensors_writer *w, const char *file, int kind) {
    mmp_safetensors *st = mmp_safetensors_open(file);
    if (!st) fail_msg("%s", mmp_last_error());
    const bool up_attn[2] = { false, true }; /* golden unet: UpBlock2D, CrossAttnUpBlock2D */
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(st); i++) {
        const mmp_tensor_info *ti = mmp_safetensors_tensor(st, i);
        char name[512];
        int64_t ne[4] = { ti->ne[0], ti->ne[1], ti->ne[2], ti->ne[3] };
        int nd = ti->n_dims;
        if (kind == 0) unet_to_ldm(ti->name, 1, up_attn, name, sizeof name);
        else if (kind == 1) {
            if (vae_to_ldm(ti->name, 3, name, sizeof name)) {
                assert_int_equal(nd, 2);
                ne[0] = 1; ne[1] = 1; ne[2] = ti->ne[0]; ne[3] = ti->ne[1]; nd = 4;
            }
        } else snprintf(name, sizeof name, "cond_stage_model.transformer.text_model.%s", ti->name);
        /* the data may be unaligned in the mmap: the writer copies bytes */
        if (mmp_safetensors_writer_add_ne(w, name, ti->type, nd, ne, ti->data) != MMP_OK) fail_msg("%s", mmp_last_error());
    }
    mmp_safetensors_free(st);
}

