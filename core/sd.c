/* Stable Diffusion models from a diffusers pipeline root or a single-file LDM checkpoint, and
 * the text-to-image driver on top of them. See include/mmpipe/sd.h.
 *
 * Single files: the UNet/VAE/text-encoder loaders (generators/, encoders/) load from paths
 * only and have no name-mapping hook, so the checkpoint is unpacked into a diffusers layout in
 * a temporary folder. The safetensors files there are written here by streaming the tensor
 * bytes from the mmapped checkpoint (mmp_safetensors_writer would copy every tensor into
 * memory first: 2-4 GB for a real checkpoint). The renaming follows diffusers'
 * convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint / convert_ldm_clip_checkpoint. */
#include "mmpipe/sd.h"
#include "sd-impl.h"
#include "mmpipe/json.h"
#include "mmpipe/safetensors.h"
#include "mapfile.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mmp_sd {
    mmp_clip_tokenizer *tok;
    mmp_clip_text *te;
    mmp_unet *unet;
    mmp_vae *vae;
    mmp_json *sched_cfg;   /* scheduler_config.json, or NULL */
    bool single_file;
    int32_t n_threads;
    char *path;
    /* loaded through a model store (stages): the component files it holds open there, so that
     * a stage naming ROOT/unet or ROOT/vae directly meets the same mapping */
    mmp_store *store;
    const mmp_modelfile *mf[3];   /* unet, vae, text_encoder; NULL when not from the store */
};

mmp_sd_params mmp_sd_params_default(void) {
    mmp_sd_params p;
    memset(&p, 0, sizeof p);
    p.n_threads = 4;
    return p;
}

mmp_sd_gen_params mmp_sd_gen_params_default(void) {
    mmp_sd_gen_params g;
    memset(&g, 0, sizeof g);
    g.prompt = "";
    g.width = 512;
    g.height = 512;
    g.steps = 20;
    g.cfg_scale = 7.5f;
    g.sampler = MMP_SCHED_EULER_A;
    return g;
}

void mmp_sd_free(mmp_sd *sd) {
    if (!sd) return;
    mmp_clip_tokenizer_free(sd->tok);
    mmp_clip_text_free(sd->te);
    mmp_unet_free(sd->unet);
    mmp_vae_free(sd->vae);
    for (int i = 0; i < 3; i++) mmp_store_close(sd->store, sd->mf[i]);   /* after the models borrowing them */
    mmp_json_free(sd->sched_cfg);
    free(sd->path);
    free(sd);
}

mmp_unet *mmp_sd_unet(mmp_sd *sd) { return sd ? sd->unet : NULL; }
mmp_vae *mmp_sd_vae(mmp_sd *sd) { return sd ? sd->vae : NULL; }
mmp_clip_text *mmp_sd_text_encoder(mmp_sd *sd) { return sd ? sd->te : NULL; }
const mmp_clip_tokenizer *mmp_sd_tokenizer(const mmp_sd *sd) { return sd ? sd->tok : NULL; }
bool mmp_sd_is_single_file(const mmp_sd *sd) { return sd && sd->single_file; }

enum mmp_status mmp_sd_sched_params(const mmp_sd *sd, enum mmp_sched_kind kind, mmp_sched_params *out) {
    if (!sd || !out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_sd_sched_params: NULL argument");
    if ((int)kind < 0 || kind >= MMP_SCHED_COUNT) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_sd_sched_params: bad sampler %d", (int)kind);
    *out = mmp_sched_params_default(kind);
    if (sd->sched_cfg) return mmp_sched_params_from_json(out, sd->sched_cfg, "");
    return MMP_OK;
}

/* ======================= single-file checkpoints ======================= */

static bool starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

/* "%s" formatting into a fixed buffer; false if it does not fit */
static bool fmt(char *out, size_t n, const char *f, ...) MMP_PRINTF(3, 4);
static bool fmt(char *out, size_t n, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(out, n, f, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < n;
}

/* parse "N." at *s: the number, *s advanced past the dot; -1 if not there */
static long take_index(const char **s) {
    const char *p = *s;
    if (*p < '0' || *p > '9') return -1;
    long v = 0;
    while (*p >= '0' && *p <= '9') { v = v * 10 + (*p - '0'); if (v > 100000) return -1; p++; }
    if (*p != '.') return -1;
    *s = p + 1;
    return v;
}

/* LDM ResBlock names -> diffusers ResnetBlock2D */
static bool unet_resnet(const char *r, char *out, size_t n) {
    static const char *const map[][2] = { { "in_layers.0.", "norm1." }, { "in_layers.2.", "conv1." },
                                          { "emb_layers.1.", "time_emb_proj." }, { "out_layers.0.", "norm2." },
                                          { "out_layers.3.", "conv2." }, { "skip_connection.", "conv_shortcut." } };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (starts(r, map[i][0])) return fmt(out, n, "%s%s", map[i][1], r + strlen(map[i][0]));
    return false;
}

/* One UNet tensor (name after "model.diffusion_model.") -> diffusers name; L = layers_per_block.
 * false: not a name the converter knows. */
static bool unet_map(const char *s, int L, char *out, size_t n) {
    char r[400];
    if (starts(s, "time_embed.0.")) return fmt(out, n, "time_embedding.linear_1.%s", s + 13);
    if (starts(s, "time_embed.2.")) return fmt(out, n, "time_embedding.linear_2.%s", s + 13);
    if (starts(s, "out.0.")) return fmt(out, n, "conv_norm_out.%s", s + 6);
    if (starts(s, "out.2.")) return fmt(out, n, "conv_out.%s", s + 6);
    if (starts(s, "input_blocks.")) {
        const char *p = s + 13;
        long i = take_index(&p), k = take_index(&p);
        if (i < 0 || k < 0) return false;
        if (i == 0) return k == 0 && fmt(out, n, "conv_in.%s", p);
        long b = (i - 1) / (L + 1), l = (i - 1) % (L + 1);
        if (starts(p, "op.")) return fmt(out, n, "down_blocks.%ld.downsamplers.0.conv.%s", b, p + 3);
        if (k == 0) return unet_resnet(p, r, sizeof r) && fmt(out, n, "down_blocks.%ld.resnets.%ld.%s", b, l, r);
        if (k == 1) return fmt(out, n, "down_blocks.%ld.attentions.%ld.%s", b, l, p);
        return false;
    }
    if (starts(s, "middle_block.")) {
        const char *p = s + 13;
        long k = take_index(&p);
        if (k == 0 || k == 2) return unet_resnet(p, r, sizeof r) && fmt(out, n, "mid_block.resnets.%ld.%s", k / 2, r);
        if (k == 1) return fmt(out, n, "mid_block.attentions.0.%s", p);
        return false;
    }
    if (starts(s, "output_blocks.")) {
        const char *p = s + 14;
        long i = take_index(&p), k = take_index(&p);
        if (i < 0 || k < 0) return false;
        long b = i / (L + 1), l = i % (L + 1);
        if (k == 0) return unet_resnet(p, r, sizeof r) && fmt(out, n, "up_blocks.%ld.resnets.%ld.%s", b, l, r);
        /* Upsample is the last module of the block: output_blocks.i.1.conv (no attention) or
         * output_blocks.i.2.conv (after an attention) */
        if (starts(p, "conv.")) return fmt(out, n, "up_blocks.%ld.upsamplers.0.conv.%s", b, p + 5);
        if (k == 1) return fmt(out, n, "up_blocks.%ld.attentions.%ld.%s", b, l, p);
        return false;
    }
    return false;
}

static bool vae_resnet(const char *r, char *out, size_t n) {
    if (starts(r, "nin_shortcut.")) return fmt(out, n, "conv_shortcut.%s", r + 13);
    if (starts(r, "norm1.") || starts(r, "norm2.") || starts(r, "conv1.") || starts(r, "conv2."))
        return fmt(out, n, "%s", r);
    return false;
}

/* VAE tensor (after "first_stage_model.") -> diffusers name; n_up = number of decoder levels.
 * *squeeze: the mid attention's 1x1 conv weight becomes a linear weight. */
static bool vae_map(const char *s, int n_up, char *out, size_t n, bool *squeeze) {
    char r[400];
    *squeeze = false;
    if (starts(s, "quant_conv.") || starts(s, "post_quant_conv.")) return fmt(out, n, "%s", s);
    const char *side = starts(s, "encoder.") ? "encoder" : starts(s, "decoder.") ? "decoder" : NULL;
    if (!side) return false;
    const char *p = s + 8;
    if (starts(p, "conv_in.") || starts(p, "conv_out.")) return fmt(out, n, "%s.%s", side, p);
    if (starts(p, "norm_out.")) return fmt(out, n, "%s.conv_norm_out.%s", side, p + 9);
    if (starts(p, "mid.block_1.") || starts(p, "mid.block_2.")) {
        int k = p[10] - '1';
        return vae_resnet(p + 12, r, sizeof r) && fmt(out, n, "%s.mid_block.resnets.%d.%s", side, k, r);
    }
    if (starts(p, "mid.attn_1.")) {
        static const char *const map[][2] = { { "norm.", "group_norm." }, { "q.", "to_q." }, { "k.", "to_k." },
                                              { "v.", "to_v." }, { "proj_out.", "to_out.0." } };
        const char *a = p + 11;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (starts(a, map[i][0])) {
                *squeeze = i > 0 && !strcmp(a + strlen(map[i][0]), "weight");
                return fmt(out, n, "%s.mid_block.attentions.0.%s%s", side, map[i][1], a + strlen(map[i][0]));
            }
        return false;
    }
    bool enc = side[0] == 'e';
    if (starts(p, enc ? "down." : "up.")) {
        p += enc ? 5 : 3;
        long i = take_index(&p);
        if (i < 0 || (!enc && i >= n_up)) return false;
        long bi = enc ? i : n_up - 1 - i;
        const char *blocks = enc ? "down_blocks" : "up_blocks";
        if (starts(p, "block.")) {
            p += 6;
            long j = take_index(&p);
            return j >= 0 && vae_resnet(p, r, sizeof r) && fmt(out, n, "%s.%s.%ld.resnets.%ld.%s", side, blocks, bi, j, r);
        }
        if (enc && starts(p, "downsample.conv.")) return fmt(out, n, "encoder.down_blocks.%ld.downsamplers.0.conv.%s", bi, p + 16);
        if (!enc && starts(p, "upsample.conv.")) return fmt(out, n, "decoder.up_blocks.%ld.upsamplers.0.conv.%s", bi, p + 14);
    }
    return false;
}

typedef struct {
    char *name;
    const mmp_tensor_info *ti;
    int n_dims;
    int64_t ne[4];      /* ggml order, after a possible squeeze */
} st_entry;
typedef struct { st_entry *p; size_t n, cap; } st_list;

static void st_list_free(st_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->p[i].name);
    free(l->p);
    memset(l, 0, sizeof *l);
}

static bool st_list_add(st_list *l, const char *name, const mmp_tensor_info *ti, bool squeeze) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        st_entry *np = realloc(l->p, cap * sizeof *np);
        if (!np) { mmp__error(MMP_ERR_NOMEM, "single-file checkpoint: out of memory"); return false; }
        l->p = np; l->cap = cap;
    }
    st_entry *e = &l->p[l->n];
    if (!(e->name = mmp__strdup(name))) return false;
    e->ti = ti;
    e->n_dims = ti->n_dims;
    for (int d = 0; d < 4; d++) e->ne[d] = d < ti->n_dims ? ti->ne[d] : 1;
    if (squeeze && ti->n_dims == 4 && ti->ne[0] == 1 && ti->ne[1] == 1) {
        /* conv [C_out, C_in, 1, 1] (ggml {1, 1, C_in, C_out}) -> linear [C_out, C_in] */
        e->n_dims = 2; e->ne[0] = ti->ne[2]; e->ne[1] = ti->ne[3]; e->ne[2] = e->ne[3] = 1;
    }
    l->n++;
    return true;
}

static void json_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

/* Write a safetensors file from the list, streaming the data from the checkpoint map. */
static enum mmp_status st_write(const st_list *l, const char *path) {
    /* header into memory first (to know its length) */
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *hf = open_memstream(&hdr, &hlen);
    if (!hf) return mmp__error(MMP_ERR_NOMEM, "%s: out of memory", path);
    fputc('{', hf);
    uint64_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        const st_entry *e = &l->p[i];
        const char *dt = mmp_safetensors_dtype_name(e->ti->type);
        if (!dt) {
            fclose(hf); free(hdr);
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which safetensors cannot hold", path, e->ti->name,
                              mmp_type_name(e->ti->type));
        }
        if (i) fputc(',', hf);
        fputc('"', hf); json_escape(hf, e->name); fprintf(hf, "\":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int d = e->n_dims - 1; d >= 0; d--) fprintf(hf, "%lld%s", (long long)e->ne[d], d ? "," : "");
        fprintf(hf, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + e->ti->nbytes));
        off += e->ti->nbytes;
    }
    fputc('}', hf);
    if (fclose(hf) != 0 || !hdr) { free(hdr); return mmp__error(MMP_ERR_NOMEM, "%s: out of memory", path); }
    size_t padded = (hlen + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    if (!f) { free(hdr); return mmp__error(MMP_ERR_IO, "%s: cannot create: %s", path, strerror(errno)); }
    uint8_t len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (uint8_t)((uint64_t)padded >> (8 * b));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    for (size_t k = hlen; ok && k < padded; k++) ok = fputc(' ', f) != EOF;
    for (size_t i = 0; ok && i < l->n; i++)
        ok = fwrite(l->p[i].ti->data, 1, l->p[i].ti->nbytes, f) == l->p[i].ti->nbytes;
    free(hdr);
    if (fclose(f) != 0) ok = false;
    if (!ok) return mmp__error(MMP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MMP_OK;
}

static enum mmp_status write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return mmp__error(MMP_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fputs(text, f) >= 0;
    if (fclose(f) != 0) ok = false;
    return ok ? MMP_OK : mmp__error(MMP_ERR_IO, "%s: write failed", path);
}

static const mmp_tensor_info *find_q(const mmp_safetensors *st, const char *fmt_, ...) MMP_PRINTF(2, 3);
static const mmp_tensor_info *find_q(const mmp_safetensors *st, const char *fmt_, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt_);
    int k = vsnprintf(name, sizeof name, fmt_, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof name) return NULL;
    /* a probe: absence is an answer here, not an error, so leave no message behind */
    const mmp_tensor_info *ti = mmp_safetensors_find(st, name);
    if (!ti) mmp_clear_error();
    return ti;
}

/* growing text for the config files */
typedef struct { char *p; size_t n, cap; bool oom; } sbuf;
static void sb_printf(sbuf *b, const char *f, ...) MMP_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *f, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, f);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, f, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap ? b->cap : 256);
        while (cap <= b->n + (size_t)k) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np; b->cap = cap;
    }
}

#define UNET_P "model.diffusion_model."
#define VAE_P  "first_stage_model."
#define TE_P   "cond_stage_model.transformer."

typedef struct {
    int L, n_levels, C[8], cross_dim, in_ch, out_ch, tlayers;
    bool down_attn[8], up_attn[8], mid, mid_attn, linear_proj;
} unet_shape;

static enum mmp_status infer_unet(const mmp_safetensors *st, const char *src, unet_shape *u) {
    memset(u, 0, sizeof *u);
    const mmp_tensor_info *ci = find_q(st, UNET_P "input_blocks.0.0.weight"), *co = find_q(st, UNET_P "out.2.weight");
    if (!ci || !co || ci->n_dims != 4 || co->n_dims != 4)
        return mmp__error(MMP_ERR_FORMAT, "%s: no 4-d " UNET_P "input_blocks.0.0.weight / out.2.weight (not an SD checkpoint?)", src);
    u->in_ch = (int)ci->ne[2];
    u->out_ch = (int)co->ne[3];
    /* layers per block: resnets before the first downsampler */
    int n_in = 0;
    while (n_in < 1000 && find_q(st, UNET_P "input_blocks.%d.0.%s", n_in, n_in ? "in_layers.0.weight" : "weight")) n_in++;
    int first_op = -1;
    for (int i = 1; i < 1000 && first_op < 0; i++) {
        if (find_q(st, UNET_P "input_blocks.%d.0.op.weight", i)) first_op = i;
        else if (!find_q(st, UNET_P "input_blocks.%d.0.in_layers.0.weight", i)) break;
    }
    u->L = first_op > 0 ? first_op - 1 : n_in - 1;
    if (u->L < 1) return mmp__error(MMP_ERR_FORMAT, "%s: cannot find the UNet's input blocks (" UNET_P "input_blocks.1.0.*)", src);
    for (int b = 0; b < 8; b++) {
        int i = 1 + b * (u->L + 1);
        const mmp_tensor_info *c1 = find_q(st, UNET_P "input_blocks.%d.0.in_layers.2.weight", i);
        if (!c1) break;
        u->C[b] = (int)c1->ne[3];
        const mmp_tensor_info *pi = find_q(st, UNET_P "input_blocks.%d.1.proj_in.weight", i);
        u->down_attn[b] = pi != NULL;
        if (pi) u->linear_proj = pi->n_dims == 2;
        u->n_levels = b + 1;
        if (!find_q(st, UNET_P "input_blocks.%d.0.op.weight", i + u->L)) break;
    }
    for (int b = 0; b < u->n_levels; b++)
        u->up_attn[b] = find_q(st, UNET_P "output_blocks.%d.1.proj_in.weight", b * (u->L + 1)) != NULL;
    u->mid = find_q(st, UNET_P "middle_block.0.in_layers.0.weight") != NULL;
    u->mid_attn = find_q(st, UNET_P "middle_block.1.proj_in.weight") != NULL;
    /* cross_attention_dim and transformer depth from the first attention */
    const char *att = NULL;
    char name[256];
    for (int b = 0; b < u->n_levels && !att; b++)
        if (u->down_attn[b]) { snprintf(name, sizeof name, UNET_P "input_blocks.%d.1.", 1 + b * (u->L + 1)); att = name; }
    if (!att && u->mid_attn) { snprintf(name, sizeof name, UNET_P "middle_block.1."); att = name; }
    if (att) {
        const mmp_tensor_info *k = find_q(st, "%stransformer_blocks.0.attn2.to_k.weight", att);
        if (!k) return mmp__error(MMP_ERR_FORMAT, "%s: %stransformer_blocks.0.attn2.to_k.weight missing", src, att);
        u->cross_dim = (int)k->ne[0];
        while (u->tlayers < 64 && find_q(st, "%stransformer_blocks.%d.attn1.to_q.weight", att, u->tlayers)) u->tlayers++;
    }
    return MMP_OK;
}

static enum mmp_status unet_config(const unet_shape *u, const mmp_sd_params *p, const char *src, sbuf *b) {
    sb_printf(b, "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"act_fn\": \"silu\",\n  \"attention_head_dim\": ");
    if (p->ldm_unet_heads > 0) sb_printf(b, "%d", (int)p->ldm_unet_heads);
    else if (u->cross_dim == 768 || u->cross_dim == 0) sb_printf(b, "8");
    else {
        sb_printf(b, "[");
        for (int i = 0; i < u->n_levels; i++) {
            if (u->C[i] % 64) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: %d channels is not a multiple of 64: give the number of attention heads", src, u->C[i]);
            sb_printf(b, "%s%d", i ? ", " : "", u->C[i] / 64);
        }
        sb_printf(b, "]");
    }
    sb_printf(b, ",\n  \"block_out_channels\": [");
    for (int i = 0; i < u->n_levels; i++) sb_printf(b, "%s%d", i ? ", " : "", u->C[i]);
    sb_printf(b, "],\n  \"center_input_sample\": false,\n  \"cross_attention_dim\": %d,\n  \"down_block_types\": [", u->cross_dim ? u->cross_dim : 768);
    for (int i = 0; i < u->n_levels; i++) sb_printf(b, "%s\"%s\"", i ? ", " : "", u->down_attn[i] ? "CrossAttnDownBlock2D" : "DownBlock2D");
    sb_printf(b, "],\n  \"downsample_padding\": 1,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n  \"in_channels\": %d,\n"
                 "  \"layers_per_block\": %d,\n  \"mid_block_scale_factor\": 1,\n  \"mid_block_type\": %s,\n"
                 "  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": %d,\n  \"out_channels\": %d,\n  \"sample_size\": 64,\n"
                 "  \"transformer_layers_per_block\": %d,\n  \"up_block_types\": [",
              u->in_ch, u->L, !u->mid ? "null" : u->mid_attn ? "\"UNetMidBlock2DCrossAttn\"" : "\"UNetMidBlock2D\"",
              p->ldm_norm_groups > 0 ? (int)p->ldm_norm_groups : 32, u->out_ch, u->tlayers ? u->tlayers : 1);
    for (int i = 0; i < u->n_levels; i++) sb_printf(b, "%s\"%s\"", i ? ", " : "", u->up_attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D");
    sb_printf(b, "],\n  \"use_linear_projection\": %s\n}\n", u->linear_proj ? "true" : "false");
    return b->oom ? mmp__error(MMP_ERR_NOMEM, "out of memory") : MMP_OK;
}

static enum mmp_status vae_config(const mmp_safetensors *st, const mmp_sd_params *p, const char *src, sbuf *b, int *n_up) {
    int C[8], n = 0, L = 0;
    for (; n < 8; n++) {
        const mmp_tensor_info *c = find_q(st, VAE_P "encoder.down.%d.block.0.conv1.weight", n);
        if (!c) break;
        C[n] = (int)c->ne[3];
    }
    while (L < 64 && find_q(st, VAE_P "encoder.down.0.block.%d.conv1.weight", L)) L++;
    const mmp_tensor_info *pq = find_q(st, VAE_P "post_quant_conv.weight"), *dci = find_q(st, VAE_P "decoder.conv_in.weight"),
                          *eci = find_q(st, VAE_P "encoder.conv_in.weight"), *dco = find_q(st, VAE_P "decoder.conv_out.weight");
    if (n == 0 || L == 0 || !dci || !eci || !dco)
        return mmp__error(MMP_ERR_FORMAT, "%s: no VAE (" VAE_P "encoder.down.0.block.0.conv1.weight, decoder.conv_in.weight ...)", src);
    int latent = (int)(pq ? pq->ne[2] : dci->ne[2]);
    *n_up = n;
    sb_printf(b, "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"act_fn\": \"silu\",\n  \"block_out_channels\": [");
    for (int i = 0; i < n; i++) sb_printf(b, "%s%d", i ? ", " : "", C[i]);
    sb_printf(b, "],\n  \"down_block_types\": [");
    for (int i = 0; i < n; i++) sb_printf(b, "%s\"DownEncoderBlock2D\"", i ? ", " : "");
    sb_printf(b, "],\n  \"in_channels\": %d,\n  \"latent_channels\": %d,\n  \"layers_per_block\": %d,\n"
                 "  \"mid_block_add_attention\": %s,\n  \"norm_num_groups\": %d,\n  \"out_channels\": %d,\n"
                 "  \"sample_size\": 512,\n  \"scaling_factor\": 0.18215,\n  \"up_block_types\": [",
              (int)eci->ne[2], latent, L, find_q(st, VAE_P "encoder.mid.attn_1.q.weight") ? "true" : "false",
              p->ldm_norm_groups > 0 ? (int)p->ldm_norm_groups : 32, (int)dco->ne[3]);
    for (int i = 0; i < n; i++) sb_printf(b, "%s\"UpDecoderBlock2D\"", i ? ", " : "");
    sb_printf(b, "],\n  \"use_post_quant_conv\": %s,\n  \"use_quant_conv\": %s\n}\n", pq ? "true" : "false",
              find_q(st, VAE_P "quant_conv.weight") ? "true" : "false");
    return b->oom ? mmp__error(MMP_ERR_NOMEM, "out of memory") : MMP_OK;
}

/* text model name after the prefix: "text_model.X" (newer) or "X" (older transformers) */
static bool te_map(const char *s, char *out, size_t n) {
    if (starts(s, "text_model.")) s += 11;
    if (!strcmp(s, "embeddings.position_ids")) return false; /* a buffer, not a weight */
    return fmt(out, n, "text_model.%s", s);
}

static enum mmp_status te_config(const mmp_safetensors *st, const mmp_sd_params *p, const char *src, const char *pre, sbuf *b) {
    const mmp_tensor_info *tok = find_q(st, "%sembeddings.token_embedding.weight", pre),
                          *pos = find_q(st, "%sembeddings.position_embedding.weight", pre),
                          *fc1 = find_q(st, "%sencoder.layers.0.mlp.fc1.weight", pre);
    if (!tok || !pos || !fc1)
        return mmp__error(MMP_ERR_FORMAT, "%s: text encoder tensors %sembeddings.token_embedding.weight / position_embedding / "
                          "encoder.layers.0.mlp.fc1.weight missing", src, pre);
    int d = (int)tok->ne[0], nl = 0;
    while (nl < 1000 && find_q(st, "%sencoder.layers.%d.mlp.fc1.weight", pre, nl)) nl++;
    int heads = p->ldm_text_heads > 0 ? p->ldm_text_heads : d / 64;
    if (heads < 1 || d % heads)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: text encoder width %d: cannot pick the number of heads (give it)", src, d);
    sb_printf(b, "{\n  \"architectures\": [\"CLIPTextModel\"],\n  \"model_type\": \"clip_text_model\",\n  \"bos_token_id\": 0,\n"
                 "  \"eos_token_id\": 2,\n  \"hidden_act\": \"quick_gelu\",\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
                 "  \"layer_norm_eps\": 1e-05,\n  \"max_position_embeddings\": %d,\n  \"num_attention_heads\": %d,\n"
                 "  \"num_hidden_layers\": %d,\n  \"pad_token_id\": 1,\n  \"vocab_size\": %d\n}\n",
              d, (int)fc1->ne[1], (int)pos->ne[1], heads, nl, (int)tok->ne[1]);
    return b->oom ? mmp__error(MMP_ERR_NOMEM, "out of memory") : MMP_OK;
}

static enum mmp_status mkdir_p(const char *path) {
    if (mmp__is_dir(path)) return MMP_OK;
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return mmp__error(MMP_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
    return MMP_OK;
}

static enum mmp_status write_component(const char *root, const char *sub, const char *weights, const st_list *l, const char *cfg) {
    char *dir = mmp__path_join(root, sub), *w = NULL, *c = NULL;
    enum mmp_status s = MMP_ERR_NOMEM;
    if (!dir || !(w = mmp__path_join(dir, weights)) || !(c = mmp__path_join(dir, "config.json"))) goto done;
    if ((s = mkdir_p(dir)) != MMP_OK || (s = write_text(c, cfg)) != MMP_OK) goto done;
    s = st_write(l, w);
done:
    free(dir); free(w); free(c);
    return s;
}

static enum mmp_status copy_file(const char *from, const char *to) {
    mmp__mapfile mf;
    enum mmp_status s = mmp__mapfile_open(&mf, from);
    if (s != MMP_OK) return s;
    FILE *f = fopen(to, "wb");
    if (!f) { mmp__mapfile_close(&mf); return mmp__error(MMP_ERR_IO, "%s: cannot create: %s", to, strerror(errno)); }
    bool ok = fwrite(mf.data, 1, mf.size, f) == mf.size;
    if (fclose(f) != 0) ok = false;
    mmp__mapfile_close(&mf);
    return ok ? MMP_OK : mmp__error(MMP_ERR_IO, "%s: write failed", to);
}

/* the tokenizer folder for a single file: given, <dir>/tokenizer/, or <dir> with vocab.json */
static char *find_tokenizer_dir(const char *ckpt, const mmp_sd_params *p) {
    if (p->tokenizer_path) return mmp__strdup(p->tokenizer_path);
    char *dir = mmp__strdup(ckpt);
    if (!dir) return NULL;
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    char *t = mmp__path_join(dir, "tokenizer"), *v = mmp__path_join(dir, "vocab.json");
    char *res = NULL;
    if (t && mmp__is_dir(t)) { res = t; t = NULL; }
    else if (v && mmp__is_file(v)) { res = dir; dir = NULL; }
    free(t); free(v); free(dir);
    return res;
}

enum mmp_status mmp_sd_convert_single_file(const char *ckpt, const char *out_dir, const mmp_sd_params *pp) {
    if (!ckpt || !out_dir) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_sd_convert_single_file: NULL path");
    mmp_sd_params p = pp ? *pp : mmp_sd_params_default();
    mmp_safetensors *st = mmp_safetensors_open(ckpt);
    if (!st) return MMP_ERR_IO; /* the reader's message says what is wrong with the file */
    st_list lu = {0}, lv = {0}, lt = {0};
    sbuf cu = {0}, cv = {0}, ct = {0};
    enum mmp_status s = MMP_OK;
    char te_pre[64] = TE_P;
    if (find_q(st, "cond_stage_model.model.token_embedding.weight")) {
        s = mmp__error(MMP_ERR_UNSUPPORTED, "%s: OpenCLIP text encoder (cond_stage_model.model.*, SD 2.x) in a single file is not "
                       "supported: use the diffusers folder of this model", ckpt);
        goto done;
    }
    if (find_q(st, TE_P "text_model.embeddings.token_embedding.weight")) strcat(te_pre, "text_model.");
    unet_shape us;
    int n_up = 0;
    if ((s = infer_unet(st, ckpt, &us)) != MMP_OK || (s = unet_config(&us, &p, ckpt, &cu)) != MMP_OK ||
        (s = vae_config(st, &p, ckpt, &cv, &n_up)) != MMP_OK || (s = te_config(st, &p, ckpt, te_pre, &ct)) != MMP_OK)
        goto done;
    char name[512];
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(st); i++) {
        const mmp_tensor_info *ti = mmp_safetensors_tensor(st, i);
        const char *n = ti->name;
        bool sq = false;
        if (starts(n, UNET_P)) {
            if (!unet_map(n + strlen(UNET_P), us.L, name, sizeof name)) {
                s = mmp__error(MMP_ERR_FORMAT, "%s: tensor %s: not a UNet name the LDM converter knows", ckpt, n);
                goto done;
            }
            if (!st_list_add(&lu, name, ti, false)) { s = MMP_ERR_NOMEM; goto done; }
        } else if (starts(n, VAE_P)) {
            if (starts(n + strlen(VAE_P), "loss.")) continue; /* training-only discriminator */
            if (!vae_map(n + strlen(VAE_P), n_up, name, sizeof name, &sq)) {
                s = mmp__error(MMP_ERR_FORMAT, "%s: tensor %s: not a VAE name the LDM converter knows", ckpt, n);
                goto done;
            }
            if (!st_list_add(&lv, name, ti, sq)) { s = MMP_ERR_NOMEM; goto done; }
        } else if (starts(n, TE_P)) {
            if (!te_map(n + strlen(TE_P), name, sizeof name)) continue;
            if (!st_list_add(&lt, name, ti, false)) { s = MMP_ERR_NOMEM; goto done; }
        }
        /* anything else (model_ema.*, alphas_cumprod, ...) is not part of the pipeline */
    }
    if ((s = mkdir_p(out_dir)) != MMP_OK) goto done;
    if ((s = write_component(out_dir, "unet", "diffusion_pytorch_model.safetensors", &lu, cu.p)) != MMP_OK ||
        (s = write_component(out_dir, "vae", "diffusion_pytorch_model.safetensors", &lv, cv.p)) != MMP_OK ||
        (s = write_component(out_dir, "text_encoder", "model.safetensors", &lt, ct.p)) != MMP_OK)
        goto done;
    {
        char *mi = mmp__path_join(out_dir, "model_index.json");
        if (!mi) { s = MMP_ERR_NOMEM; goto done; }
        s = write_text(mi, "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n"
                           "  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n"
                           "  \"vae\": [\"diffusers\", \"AutoencoderKL\"]\n}\n");
        free(mi);
        if (s != MMP_OK) goto done;
    }
    if (p.tokenizer_path) {
        static const char *const files[] = { "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json" };
        char *td = mmp__path_join(out_dir, "tokenizer");
        if (!td || (s = mkdir_p(td)) != MMP_OK) { free(td); if (s == MMP_OK) s = MMP_ERR_NOMEM; goto done; }
        for (size_t i = 0; i < 4 && s == MMP_OK; i++) {
            char *from = mmp__path_join(p.tokenizer_path, files[i]), *to = mmp__path_join(td, files[i]);
            if (!from || !to) s = MMP_ERR_NOMEM;
            else if (mmp__is_file(from)) s = copy_file(from, to);
            else if (i < 2) s = mmp__error(MMP_ERR_NOT_FOUND, "%s: no %s in the tokenizer folder", p.tokenizer_path, files[i]);
            free(from); free(to);
        }
        free(td);
    }
done:
    st_list_free(&lu); st_list_free(&lv); st_list_free(&lt);
    free(cu.p); free(cv.p); free(ct.p);
    mmp_safetensors_free(st);
    return s;
}

/* remove what convert wrote (the loaders hold their own maps of the files) */
static void remove_tree(const char *root) {
    static const char *const files[] = { "unet/diffusion_pytorch_model.safetensors", "unet/config.json",
                                          "vae/diffusion_pytorch_model.safetensors", "vae/config.json",
                                          "text_encoder/model.safetensors", "text_encoder/config.json", "model_index.json" };
    static const char *const dirs[] = { "unet", "vae", "text_encoder" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *f = mmp__path_join(root, files[i]);
        if (f) unlink(f);
        free(f);
    }
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *d = mmp__path_join(root, dirs[i]);
        if (d) rmdir(d);
        free(d);
    }
    rmdir(root);
}

/* ======================= loading ======================= */

static mmp_sd *load_parts(mmp_sd *sd, const char *root, const char *tok_dir, const mmp_sd_params *p) {
    const char *src = sd->path;
    char *d = NULL;
    static const char *const need[] = { "unet", "text_encoder" };
    for (size_t i = 0; i < 2; i++) {
        d = mmp__path_join(root, need[i]);
        if (!d) return NULL;
        bool ok = mmp__is_dir(d);
        free(d);
        if (!ok) return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: the Stable Diffusion model has no %s/ folder", src, need[i]);
    }
    if (!(d = mmp__path_join(root, "unet"))) return NULL;
    if (sd->store) {
        if ((sd->mf[0] = mmp_store_open(sd->store, d))) sd->unet = mmp_unet_load_modelfile(sd->mf[0], p->n_threads);
    } else sd->unet = mmp_unet_load(d, p->n_threads);
    free(d);
    if (!sd->unet) { mmp__error_prefix("%s: unet: ", src); return NULL; }
    const char *vsrc = p->vae_path;
    char *vdir = NULL;
    if (!vsrc) {
        if (!(vdir = mmp__path_join(root, "vae"))) return NULL;
        if (!mmp__is_dir(vdir)) {
            free(vdir);
            return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: the Stable Diffusion model has no vae/ folder (give a VAE, e.g. --taesd FILE)", src);
        }
        vsrc = vdir;
    }
    if (sd->store) {
        if ((sd->mf[1] = mmp_store_open(sd->store, vsrc))) sd->vae = mmp_vae_load_modelfile(sd->mf[1], p->n_threads);
    } else sd->vae = mmp_vae_load(vsrc, p->n_threads);
    free(vdir);
    if (!sd->vae) { mmp__error_prefix("%s: vae: ", p->vae_path ? p->vae_path : src); return NULL; }
    if (!(d = mmp__path_join(root, "text_encoder"))) return NULL;
    if (sd->store) {
        if ((sd->mf[2] = mmp_store_open(sd->store, d))) sd->te = mmp_clip_text_load_modelfile(sd->mf[2]);
    } else sd->te = mmp_clip_text_load(d);
    free(d);
    if (!sd->te) { mmp__error_prefix("%s: text_encoder: ", src); return NULL; }
    if (!tok_dir)
        return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: no CLIP tokenizer (a single-file checkpoint holds none: give a tokenizer folder "
                               "with vocab.json and merges.txt, e.g. --tokenizer DIR, or put tokenizer/ next to the file)", src);
    sd->tok = mmp_clip_tokenizer_load(tok_dir);
    if (!sd->tok) { mmp__error_prefix("%s: tokenizer: ", src); return NULL; }
    return sd;
}

/* store != NULL: the components of a diffusers root are opened through it (a single-file
 * checkpoint is converted into a temporary folder first, so its parts are loaded apart). */
static mmp_sd *sd_load(const char *path, const mmp_sd_params *pp, mmp_store *store) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_sd_load: NULL path");
    mmp_sd_params p = pp ? *pp : mmp_sd_params_default();
    if (p.n_threads <= 0) p.n_threads = 4;
    mmp_sd *sd = mmp__calloc(1, sizeof *sd);
    if (!sd) return NULL;
    sd->n_threads = p.n_threads;
    sd->store = mmp__is_dir(path) ? store : NULL;
    if (!(sd->path = mmp__strdup(path))) goto fail;
    if (mmp__is_dir(path)) {
        char *mi = mmp__path_join(path, "model_index.json"), *tok = mmp__path_join(path, "tokenizer"),
             *sc = mmp__path_join(path, "scheduler/scheduler_config.json");
        mmp_sd *ok = NULL;
        if (!mi || !tok || !sc) goto dir_done;
        if (!mmp__is_file(mi)) {
            mmp__error(MMP_ERR_NOT_FOUND, "%s: not a diffusers pipeline folder (no model_index.json) nor a .safetensors checkpoint", path);
            goto dir_done;
        }
        if (mmp__is_file(sc) && !(sd->sched_cfg = mmp_json_open(sc))) goto dir_done;
        ok = load_parts(sd, path, p.tokenizer_path ? p.tokenizer_path : mmp__is_dir(tok) ? tok : NULL, &p);
    dir_done:
        free(mi); free(tok); free(sc);
        if (!ok) goto fail;
        return sd;
    }
    /* a single file */
    sd->single_file = true;
    const char *tmp = p.tmp_dir ? p.tmp_dir : getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    char *templ = mmp__path_join(tmp, "mmpipe_sd_XXXXXX");
    char *tok = NULL;
    if (!templ) goto fail;
    if (!mkdtemp(templ)) {
        mmp__error(MMP_ERR_IO, "%s: cannot create a temporary folder under %s: %s", path, tmp, strerror(errno));
        free(templ);
        goto fail;
    }
    mmp_sd_params cp = p;
    cp.tokenizer_path = NULL; /* the tokenizer is read where it is */
    enum mmp_status s = mmp_sd_convert_single_file(path, templ, &cp);
    mmp_sd *ok = NULL;
    if (s == MMP_OK) {
        tok = find_tokenizer_dir(path, &p);
        ok = load_parts(sd, templ, tok, &p);
    }
    remove_tree(templ);
    free(templ);
    free(tok);
    if (!ok) goto fail;
    return sd;
fail:
    mmp_sd_free(sd);
    return NULL;
}

/* ======================= prompts and generation ======================= */

enum mmp_status mmp_sd_encode_prompt(mmp_sd *sd, const char *prompt, int32_t clip_skip, int32_t n_threads,
                                     float **cond, int32_t *t_ctx, int32_t *d_ctx) {
    if (!sd || !cond || !t_ctx || !d_ctx) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_sd_encode_prompt: NULL argument");
    *cond = NULL;
    const mmp_clip_text_hparams *hp = mmp_clip_text_get_hparams(sd->te);
    int32_t T = mmp__sd_prompt_length(sd);
    if (clip_skip < 0 || clip_skip > hp->n_layer)
        return mmp__error(MMP_ERR_INVALID_ARG, "clip skip %d: the text encoder has %d layers", (int)clip_skip, (int)hp->n_layer);
    mmp_token *ids = mmp__malloc((size_t)T * sizeof *ids);
    float *out = mmp__malloc((size_t)T * (size_t)hp->n_embd * sizeof *out);
    enum mmp_status s = MMP_ERR_NOMEM;
    if (!ids || !out) goto fail;
    const char *text = prompt ? prompt : "";
    if ((s = mmp_clip_tokenizer_encode_padded(sd->tok, text, strlen(text), T, ids, NULL)) != MMP_OK) goto fail;
    mmp_clip_text_params cp = mmp_clip_text_params_default();
    cp.n_threads = n_threads > 0 ? n_threads : sd->n_threads;
    if (clip_skip >= 2) { cp.layer = -clip_skip; cp.final_ln = true; }
    if ((s = mmp_clip_text_encode(sd->te, ids, T, &cp, out, NULL)) != MMP_OK) goto fail;
    free(ids);
    *cond = out; *t_ctx = T; *d_ctx = hp->n_embd;
    return MMP_OK;
fail:
    free(ids); free(out);
    return s;
}

enum mmp_status mmp_sd_check(mmp_sd *sd, const mmp_sd_gen_params *g) {
    if (!sd || !g) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_sd_check: NULL argument");
    int scale = mmp_vae_scale(sd->vae), mult = scale * mmp_unet_size_multiple(sd->unet);
    if (g->width <= 0 || g->height <= 0 || g->width > 8192 || g->height > 8192)
        return mmp__error(MMP_ERR_INVALID_ARG, "image size %dx%d: width and height must be 1..8192 (and multiples of %d)",
                          (int)g->width, (int)g->height, mult);
    if (g->width % mult || g->height % mult)
        return mmp__error(MMP_ERR_INVALID_ARG, "image size %dx%d: width and height must be multiples of %d for this model "
                          "(VAE scale %d x UNet multiple %d)", (int)g->width, (int)g->height, mult, scale, mmp_unet_size_multiple(sd->unet));
    if (g->steps < 1 || g->steps > 1000)
        return mmp__error(MMP_ERR_INVALID_ARG, "steps %d: must be 1..1000", (int)g->steps);
    if ((int)g->sampler < 0 || g->sampler >= MMP_SCHED_COUNT)
        return mmp__error(MMP_ERR_INVALID_ARG, "sampler %d is not one of ddim, euler, euler_a, dpmpp_2m", (int)g->sampler);
    if (g->karras && (g->sampler == MMP_SCHED_DDIM))
        return mmp__error(MMP_ERR_INVALID_ARG, "Karras sigmas apply to euler, euler_a and dpmpp_2m, not ddim");
    int lc = mmp_vae_latent_channels(sd->vae);
    if (mmp_unet_in_channels(sd->unet) != lc || mmp_unet_out_channels(sd->unet) != lc)
        return mmp__error(MMP_ERR_SHAPE, "the UNet works on %d latent channels (in %d, out %d) but the VAE has %d",
                          mmp_unet_out_channels(sd->unet), mmp_unet_in_channels(sd->unet), mmp_unet_out_channels(sd->unet), lc);
    if (!mmp_vae_has_decoder(sd->vae)) return mmp__error(MMP_ERR_INVALID_ARG, "the VAE has no decoder");
    const mmp_clip_text_hparams *hp = mmp_clip_text_get_hparams(sd->te);
    if (hp->n_embd != mmp_unet_cross_attention_dim(sd->unet))
        return mmp__error(MMP_ERR_SHAPE, "the text encoder's width is %d but the UNet's cross_attention_dim is %d",
                          (int)hp->n_embd, mmp_unet_cross_attention_dim(sd->unet));
    if (g->clip_skip < 0 || g->clip_skip > hp->n_layer)
        return mmp__error(MMP_ERR_INVALID_ARG, "clip skip %d: the text encoder has %d layers", (int)g->clip_skip, (int)hp->n_layer);
    return MMP_OK;
}

enum mmp_status mmp_sd_generate(mmp_sd *sd, const mmp_sd_gen_params *g, float *image01, float *latents) {
    enum mmp_status s = mmp_sd_check(sd, g);
    if (s != MMP_OK) return s;
    if (!image01) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_sd_generate: NULL image");
    float *cond = NULL, *uncond = NULL, *init = NULL, *lat = NULL;
    mmp_scheduler *sch = NULL;
    int32_t T = 0, D = 0, T2 = 0, D2 = 0;
    int scale = mmp_vae_scale(sd->vae), C = mmp_vae_latent_channels(sd->vae);
    int h = g->height / scale, w = g->width / scale;
    size_t nl = (size_t)C * (size_t)h * (size_t)w;
    if ((s = mmp_sd_encode_prompt(sd, g->prompt, g->clip_skip, g->n_threads, &cond, &T, &D)) != MMP_OK) goto done;
    if (g->cfg_scale > 1.0f &&
        (s = mmp_sd_encode_prompt(sd, g->negative ? g->negative : "", g->clip_skip, g->n_threads, &uncond, &T2, &D2)) != MMP_OK)
        goto done;
    mmp_sched_params sp;
    if ((s = mmp_sd_sched_params(sd, g->sampler, &sp)) != MMP_OK) goto done;
    sp.use_karras_sigmas = g->karras;
    sp.seed = g->seed;
    if (!(sch = mmp_scheduler_new(&sp))) { s = MMP_ERR_INVALID_ARG; goto done; }
    init = mmp__malloc(nl * sizeof *init);
    lat = mmp__malloc(nl * sizeof *lat);
    if (!init || !lat) { s = MMP_ERR_NOMEM; goto done; }
    /* the initial noise comes from the seed (mmp_randn: the same on every machine) */
    mmp_randn(g->seed, init, (int64_t)nl);
    mmp_txt2img_params tp = mmp_txt2img_params_default();
    tp.width = g->width;
    tp.height = g->height;
    tp.steps = g->steps;
    tp.cfg_scale = g->cfg_scale;
    tp.progress = g->progress;
    tp.abort_cb = g->abort_cb;
    tp.cb_user = g->cb_user;
    s = mmp_txt2img_sample(sd->unet, sch, sd->vae, &tp, T, D, cond, uncond, init, lat, image01);
    if (s == MMP_OK && latents) memcpy(latents, lat, nl * sizeof *lat);
done:
    free(cond); free(uncond); free(init); free(lat);
    mmp_scheduler_free(sch);
    return s;
}

/* ======================= SD roots as stage models (sd-impl.h) ======================= */

int32_t mmp__sd_prompt_length(const mmp_sd *sd) {
    int32_t T = mmp_clip_tokenizer_max_length(sd->tok), n_ctx = mmp_clip_text_get_hparams(sd->te)->n_ctx;
    return T < n_ctx ? T : n_ctx;
}

bool mmp__sd_is_root(const char *path) {
    if (!path || !*path) return false;
    if (mmp__is_dir(path)) {
        char *mi = mmp__path_join(path, "model_index.json");
        bool r = mi && mmp__is_file(mi);
        free(mi);
        mmp_clear_error();
        return r;
    }
    size_t n = strlen(path);
    if (n < 12 || strcmp(path + n - 12, ".safetensors") != 0 || !mmp__is_file(path)) { mmp_clear_error(); return false; }
    /* the header only: a map of the file, no tensor data is read */
    mmp_safetensors *st = mmp_safetensors_open(path);
    /* a whole checkpoint: the UNet is there (a text-encoder-only extract loads as a CLIP text
     * model, encoder.clip_text reads cond_stage_model.* names itself) */
    bool r = st && find_q(st, UNET_P "input_blocks.0.0.weight");
    mmp_safetensors_free(st);
    mmp_clear_error();
    return r;
}

void mmp__sd_opts_free(mmp__sd_opts *o) {
    if (!o) return;
    free(o->tokenizer);
    memset(o, 0, sizeof *o);
}

int mmp__sd_opt(const char *kind, const char *key, const char *val, mmp__sd_opts *o) {
    if (!strcmp(key, "tokenizer")) {
        free(o->tokenizer);
        o->tokenizer = NULL;
        if (*val && !(o->tokenizer = mmp__strdup(val))) return -1;
        return 1;
    }
    int *dst = !strcmp(key, "ldm_heads") ? &o->ldm_heads : !strcmp(key, "ldm_groups") ? &o->ldm_groups
             : !strcmp(key, "ldm_text_heads") ? &o->ldm_text_heads : NULL;
    if (!dst) return 0;
    char *end;
    long v = *val ? strtol(val, &end, 10) : 0;
    if ((*val && *end) || v < 0 || v > 1024)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: option %s=%s, expected 0 (from the weights) or 1..1024", kind, key, val), -1;
    *dst = (int)v;
    return 1;
}

mmp_sd *mmp_sd_load(const char *path, const mmp_sd_params *p) { return sd_load(path, p, NULL); }

typedef struct sd_load_ctx {
    const mmp__sd_opts *o;
    const char *vae;
    int n_threads;
    mmp_store *store;
} sd_load_ctx;

static void *sd_load_cb(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)mf;
    const sd_load_ctx *c = ctx;
    mmp_sd_params lp = mmp_sd_params_default();
    lp.n_threads = c->n_threads;
    lp.vae_path = c->vae;
    if (c->o) {
        lp.tokenizer_path = c->o->tokenizer;
        lp.ldm_unet_heads = c->o->ldm_heads;
        lp.ldm_norm_groups = c->o->ldm_groups;
        lp.ldm_text_heads = c->o->ldm_text_heads;
    }
    return sd_load(path, &lp, c->store);
}
static void sd_free_cb(void *m) { mmp_sd_free(m); }

enum mmp_status mmp__sd_ref(const mmp_stage_params *p, const char *root, const char *vae, const mmp__sd_opts *o,
                            mmp__model_ref *out) {
    memset(out, 0, sizeof *out);
    if (vae && !*vae) vae = NULL;
    sd_load_ctx c = { o, vae, p && p->n_threads > 0 ? p->n_threads : 1, p ? p->store : NULL };
    /* the key holds everything that changes the loaded object; the VAE path canonical so that
     * two spellings of one file meet */
    char *cv = vae ? realpath(vae, NULL) : NULL;
    char *key = NULL;
    size_t kl = 0;
    FILE *f = open_memstream(&key, &kl);
    if (!f) { free(cv); return mmp__error(MMP_ERR_NOMEM, "out of memory"); }
    fprintf(f, "threads=%d;vae=%s;tokenizer=%s;ldm=%d,%d,%d", c.n_threads, cv ? cv : vae ? vae : "", o && o->tokenizer ? o->tokenizer : "",
            o ? o->ldm_heads : 0, o ? o->ldm_groups : 0, o ? o->ldm_text_heads : 0);
    bool ok = fclose(f) == 0 && key;
    free(cv);
    if (!ok) { free(key); return mmp__error(MMP_ERR_NOMEM, "out of memory"); }
    enum mmp_status s = mmp__model_get(p, "sd", root, key, MMP__MODEL_NO_FILE | MMP__MODEL_SCRATCH, sd_load_cb, sd_free_cb, &c, out);
    free(key);
    return s;
}
