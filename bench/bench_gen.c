/* Generation benchmarks, each as a fraction of the OpenBLAS sgemm peak measured in the same run:
 *   - UNet step at the Stable Diffusion 1.5 shape: 64x64x4 latents, 77x768 context, batch 2
 *     (one classifier-free-guidance step), synthetic weights in F32 and F16;
 *   - AutoencoderKL (SD VAE) decode and TAESD decode of 64x64 latents to 512x512.
 * The models are written by this program as diffusers folders (SD1.5 configs, random weights)
 * under $TMPDIR (default /tmp) and removed afterwards. FLOPs are counted from the architecture
 * (convolutions, linear layers, attention products; norms and activations not counted).
 *
 *   bench_gen [-t threads] [-r runs] [--quick] [--only unet|vae|taesd]
 *     --quick: 32x32 latents / 256x256 images, F32 only; --only: run just that model
 * Each measurement is the best of `runs` timed calls (default 2) after one untimed first call. */
#include "mmpipe/mmpipe.h"
#include "ceilings.h"

#include <math.h>
#include <stdarg.h>
#include <unistd.h>

typedef struct {
    char name[128];
    int nd;
    int64_t shape[4];   /* numpy order */
    int fill;           /* 0 random * scale, 1 ones, 2 zeros */
    float scale;
} tdesc;

typedef struct {
    tdesc *t;
    int n, cap;
    double flops;
} spec;

static void add(spec *s, int fill, float scale, int nd, const int64_t *shape, const char *fmt, ...) MMP_PRINTF(6, 7);
static void add(spec *s, int fill, float scale, int nd, const int64_t *shape, const char *fmt, ...) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->t = realloc(s->t, (size_t)s->cap * sizeof *s->t);
        if (!s->t) { fprintf(stderr, "out of memory\n"); exit(1); }
    }
    tdesc *d = &s->t[s->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->name, sizeof d->name, fmt, ap);
    va_end(ap);
    d->nd = nd;
    for (int i = 0; i < nd; i++) d->shape[i] = shape[i];
    d->fill = fill;
    d->scale = scale;
}

static void conv(spec *s, const char *name, int64_t cin, int64_t cout, int64_t k, bool bias, double out_pixels) {
    int64_t w[4] = { cout, cin, k, k }, b[1] = { cout };
    add(s, 0, 0.7f / sqrtf((float)(cin * k * k)), 4, w, "%s.weight", name);
    if (bias) add(s, 2, 0, 1, b, "%s.bias", name);
    s->flops += 2.0 * (double)(cin * k * k) * (double)cout * out_pixels;
}
static void linear(spec *s, const char *name, int64_t in, int64_t out, bool bias, double rows) {
    int64_t w[2] = { out, in }, b[1] = { out };
    add(s, 0, 0.7f / sqrtf((float)in), 2, w, "%s.weight", name);
    if (bias) add(s, 2, 0, 1, b, "%s.bias", name);
    s->flops += 2.0 * (double)in * (double)out * rows;
}
static void norm(spec *s, const char *name, int64_t c) {
    int64_t b[1] = { c };
    add(s, 1, 0, 1, b, "%s.weight", name);
    add(s, 2, 0, 1, b, "%s.bias", name);
}

/* ---- SD1.5 UNet ---- */

static void resnet(spec *s, const char *p, int64_t cin, int64_t cout, int64_t temb, double pix) {
    char n[160];
    snprintf(n, sizeof n, "%s.norm1", p); norm(s, n, cin);
    snprintf(n, sizeof n, "%s.conv1", p); conv(s, n, cin, cout, 3, true, pix);
    if (temb) { snprintf(n, sizeof n, "%s.time_emb_proj", p); linear(s, n, temb, cout, true, 0); }
    snprintf(n, sizeof n, "%s.norm2", p); norm(s, n, cout);
    snprintf(n, sizeof n, "%s.conv2", p); conv(s, n, cout, cout, 3, true, pix);
    if (cin != cout) { snprintf(n, sizeof n, "%s.conv_shortcut", p); conv(s, n, cin, cout, 1, true, pix); }
}

static void transformer(spec *s, const char *p, int64_t c, int64_t ctx_dim, double tokens, double ctx_tokens, int batch) {
    char n[192];
    snprintf(n, sizeof n, "%s.norm", p); norm(s, n, c);
    snprintf(n, sizeof n, "%s.proj_in", p); conv(s, n, c, c, 1, true, tokens * batch);
    const char *b = "transformer_blocks.0";
    for (int k = 1; k <= 3; k++) { snprintf(n, sizeof n, "%s.%s.norm%d", p, b, k); norm(s, n, c); }
    snprintf(n, sizeof n, "%s.%s.attn1.to_q", p, b); linear(s, n, c, c, false, tokens * batch);
    snprintf(n, sizeof n, "%s.%s.attn1.to_k", p, b); linear(s, n, c, c, false, tokens * batch);
    snprintf(n, sizeof n, "%s.%s.attn1.to_v", p, b); linear(s, n, c, c, false, tokens * batch);
    snprintf(n, sizeof n, "%s.%s.attn1.to_out.0", p, b); linear(s, n, c, c, true, tokens * batch);
    s->flops += 4.0 * tokens * tokens * (double)c * batch;
    snprintf(n, sizeof n, "%s.%s.attn2.to_q", p, b); linear(s, n, c, c, false, tokens * batch);
    snprintf(n, sizeof n, "%s.%s.attn2.to_k", p, b); linear(s, n, ctx_dim, c, false, ctx_tokens * batch);
    snprintf(n, sizeof n, "%s.%s.attn2.to_v", p, b); linear(s, n, ctx_dim, c, false, ctx_tokens * batch);
    snprintf(n, sizeof n, "%s.%s.attn2.to_out.0", p, b); linear(s, n, c, c, true, tokens * batch);
    s->flops += 4.0 * tokens * ctx_tokens * (double)c * batch;
    snprintf(n, sizeof n, "%s.%s.ff.net.0.proj", p, b); linear(s, n, c, 8 * c, true, tokens * batch);
    snprintf(n, sizeof n, "%s.%s.ff.net.2", p, b); linear(s, n, 4 * c, c, true, tokens * batch);
    snprintf(n, sizeof n, "%s.proj_out", p); conv(s, n, c, c, 1, true, tokens * batch);
}

static const char *UNET_CONFIG =
    "{\"_class_name\": \"UNet2DConditionModel\", \"act_fn\": \"silu\", \"attention_head_dim\": 8,\n"
    " \"block_out_channels\": [320, 640, 1280, 1280], \"center_input_sample\": false, \"cross_attention_dim\": 768,\n"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],\n"
    " \"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4, \"layers_per_block\": 2,\n"
    " \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, \"norm_num_groups\": 32, \"out_channels\": 4, \"sample_size\": 64,\n"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}\n";

static void sd15_unet(spec *s, int lat, int batch) {
    const int64_t bo[4] = { 320, 640, 1280, 1280 };
    const bool cross[4] = { true, true, true, false };
    char p[128];
    double pix = (double)lat * lat * batch;
    conv(s, "conv_in", 4, 320, 3, true, pix);
    linear(s, "time_embedding.linear_1", 320, 1280, true, batch);
    linear(s, "time_embedding.linear_2", 1280, 1280, true, batch);
    int64_t skip_ch[16];
    int ns = 0, size = lat;
    skip_ch[ns++] = 320;
    int64_t ch = 320;
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 2; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            resnet(s, p, ch, bo[i], 1280, (double)size * size * batch);
            ch = bo[i];
            if (cross[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                transformer(s, p, ch, 768, (double)size * size, 77, batch);
            }
            skip_ch[ns++] = ch;
        }
        if (i < 3) {
            size /= 2;
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            conv(s, p, ch, ch, 3, true, (double)size * size * batch);
            skip_ch[ns++] = ch;
        }
    }
    resnet(s, "mid_block.resnets.0", 1280, 1280, 1280, (double)size * size * batch);
    transformer(s, "mid_block.attentions.0", 1280, 768, (double)size * size, 77, batch);
    resnet(s, "mid_block.resnets.1", 1280, 1280, 1280, (double)size * size * batch);
    for (int i = 0; i < 4; i++) {
        int64_t out = bo[3 - i];
        for (int j = 0; j < 3; j++) {
            int64_t cin = ch + skip_ch[--ns];
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            resnet(s, p, cin, out, 1280, (double)size * size * batch);
            ch = out;
            if (i > 0) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                transformer(s, p, ch, 768, (double)size * size, 77, batch);
            }
        }
        if (i < 3) {
            size *= 2;
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            conv(s, p, ch, ch, 3, true, (double)size * size * batch);
        }
    }
    norm(s, "conv_norm_out", 320);
    conv(s, "conv_out", 320, 4, 3, true, pix);
}

/* ---- SD VAE decoder ---- */

static const char *VAE_CONFIG =
    "{\"_class_name\": \"AutoencoderKL\", \"act_fn\": \"silu\", \"block_out_channels\": [128, 256, 512, 512],\n"
    " \"in_channels\": 3, \"latent_channels\": 4, \"layers_per_block\": 2, \"norm_num_groups\": 32, \"out_channels\": 3,\n"
    " \"sample_size\": 512, \"scaling_factor\": 0.18215}\n";

static void sd_vae_decoder(spec *s, int lat) {
    char p[128];
    const int64_t rev[4] = { 512, 512, 256, 128 };
    double pix = (double)lat * lat;
    conv(s, "post_quant_conv", 4, 4, 1, true, pix);
    conv(s, "decoder.conv_in", 4, 512, 3, true, pix);
    resnet(s, "decoder.mid_block.resnets.0", 512, 512, 0, pix);
    norm(s, "decoder.mid_block.attentions.0.group_norm", 512);
    const char *qkv[4] = { "to_q", "to_k", "to_v", "to_out.0" };
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "decoder.mid_block.attentions.0.%s", qkv[k]);
        linear(s, p, 512, 512, true, pix);
    }
    s->flops += 4.0 * pix * pix * 512;
    resnet(s, "decoder.mid_block.resnets.1", 512, 512, 0, pix);
    int64_t ch = 512;
    int size = lat;
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 3; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            resnet(s, p, ch, rev[i], 0, (double)size * size);
            ch = rev[i];
        }
        if (i < 3) {
            size *= 2;
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            conv(s, p, ch, ch, 3, true, (double)size * size);
        }
    }
    norm(s, "decoder.conv_norm_out", 128);
    conv(s, "decoder.conv_out", 128, 3, 3, true, (double)size * size);
}

/* ---- TAESD decoder (taesd.py names) ---- */

static void taesd_decoder(spec *s, int lat) {
    char p[64];
    int size = lat, idx = 1;
    conv(s, "1", 4, 64, 3, true, (double)size * size);
    idx = 3;
    for (int stage = 0; stage < 4; stage++) {
        int nb = stage < 3 ? 3 : 1;
        for (int b = 0; b < nb; b++, idx++)
            for (int k = 0; k <= 4; k += 2) {
                snprintf(p, sizeof p, "%d.conv.%d", idx, k);
                conv(s, p, 64, 64, 3, true, (double)size * size);
            }
        if (stage < 3) {
            idx++;  /* Upsample */
            size *= 2;
            snprintf(p, sizeof p, "%d", idx++);
            conv(s, p, 64, 64, 3, false, (double)size * size);
        }
    }
    snprintf(p, sizeof p, "%d", idx);
    conv(s, p, 64, 3, 3, true, (double)size * size);
}

/* ---- writing a safetensors file without holding it in memory ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static int write_st(const char *path, const spec *s, enum mmp_type type) {
    size_t esz = type == MMP_TYPE_F16 ? 2 : 4;
    size_t cap = 1 << 20, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    uint64_t off = 0;
    for (int i = 0; i < s->n; i++) {
        const tdesc *d = &s->t[i];
        uint64_t n = 1;
        for (int k = 0; k < d->nd; k++) n *= (uint64_t)d->shape[k];
        if (cap - len < 512) { cap *= 2; h = realloc(h, cap); }
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", d->name,
                                type == MMP_TYPE_F16 && d->nd > 1 ? "F16" : "F32");
        for (int k = 0; k < d->nd; k++) len += (size_t)snprintf(h + len, cap - len, "%s%lld", k ? "," : "", (long long)d->shape[k]);
        size_t e = type == MMP_TYPE_F16 && d->nd > 1 ? esz : 4;
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                (unsigned long long)(off + n * e));
        off += n * e;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) { free(h); return -1; }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, len, f);
    free(h);
    float *buf = malloc(1 << 22);
    for (int i = 0; i < s->n; i++) {
        const tdesc *d = &s->t[i];
        uint64_t n = 1;
        for (int k = 0; k < d->nd; k++) n *= (uint64_t)d->shape[k];
        bool half = type == MMP_TYPE_F16 && d->nd > 1;
        for (uint64_t j = 0; j < n;) {
            size_t chunk = (size_t)(n - j < (uint64_t)(1 << 20) ? n - j : (uint64_t)(1 << 20));
            for (size_t q = 0; q < chunk; q++) {
                float v = d->fill == 1 ? 1.0f : d->fill == 2 ? 0.0f : frand() * d->scale;
                if (half) ((uint16_t *)buf)[q] = mmp_fp32_to_fp16(v);
                else buf[q] = v;
            }
            fwrite(buf, half ? 2 : 4, chunk, f);
            j += chunk;
        }
    }
    free(buf);
    return fclose(f) == 0 ? 0 : -1;
}

static int write_folder(const char *dir, const char *config, const spec *s, enum mmp_type type) {
    char p[512];
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    if (system(p) != 0) return -1;
    if (config) {
        snprintf(p, sizeof p, "%s/config.json", dir);
        FILE *f = fopen(p, "w");
        if (!f) return -1;
        fputs(config, f);
        fclose(f);
        snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
    } else {
        snprintf(p, sizeof p, "%s/taesd_decoder.safetensors", dir);
    }
    return write_st(p, s, type);
}

static void rm_rf(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "rm -rf '%s'", dir);
    if (system(p) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  /* results appear as they come, also into a file */
    int nth = 2, lat = 64, reps = 2;
    bool quick = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [-t threads] [-r runs] [--quick] [--only unet|vae|taesd]\n", argv[0]); return 2; }
    }
    if (reps < 1) reps = 1;
    if (quick) lat = 32;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[400];
    snprintf(dir, sizeof dir, "%s/mmp_bench_gen_%d", tmp, (int)getpid());

    /* The same peak the other benches use (2048^3), so fractions compare across benches. */
    double peak = mmpb_sgemm_gflops(2048, 2048, 2048, nth, 3);
    printf("ceiling: sgemm 2048x2048x2048 %.1f GFLOP/s (%d threads)\n\n", peak, nth);

    const int vl = quick ? 32 : 64;
    /* UNet */
    if (!only || !strcmp(only, "unet")) {
    spec su = {0};
    sd15_unet(&su, lat, 2);
    printf("UNet SD1.5, latents %dx%dx4, context 77x768, batch 2 (one CFG step): %.1f GFLOP\n", lat, lat, su.flops / 1e9);
    enum mmp_type types[2] = { MMP_TYPE_F32, MMP_TYPE_F16 };
    for (int ti = 0; ti < (quick ? 1 : 2); ti++) {
        char ud[512];
        snprintf(ud, sizeof ud, "%s/unet", dir);
        double t0 = mmpb_now();
        if (write_folder(ud, UNET_CONFIG, &su, types[ti]) != 0) { fprintf(stderr, "cannot write %s\n", ud); return 1; }
        double tw = mmpb_now() - t0;
        mmp_unet *u = mmp_unet_load(ud, nth);
        if (!u) { fprintf(stderr, "unet: %s\n", mmp_last_error()); rm_rf(dir); return 1; }
        size_t nx = (size_t)2 * 4 * lat * lat, nc = (size_t)2 * 77 * 768;
        float *x = malloc(nx * 4), *c = malloc(nc * 4), *o = malloc(nx * 4);
        mmp_randn(1, x, (int64_t)nx);
        mmp_randn(2, c, (int64_t)nc);
        float ts[2] = { 500, 500 };
        double best = 1e30;
        for (int r = 0; r <= reps; r++) {  /* the first run builds and plans the graph */
            t0 = mmpb_now();
            if (mmp_unet_predict(u, 2, lat, lat, x, ts, 77, 768, c, o, NULL, NULL) != MMP_OK) {
                fprintf(stderr, "unet: %s\n", mmp_last_error());
                rm_rf(dir);
                return 1;
            }
            double dt = mmpb_now() - t0;
            if (r == 0) printf("  %s weights (written in %.1f s): first call (build + plan + run) %.2f s\n", mmp_type_name(types[ti]), tw, dt);
            else if (dt < best) best = dt;
        }
        printf("  %s: step %.2f s = %.1f GFLOP/s = %.2f of sgemm peak\n", mmp_type_name(types[ti]), best, su.flops / best / 1e9,
                             su.flops / best / 1e9 / peak);
        bool finite = true;
        for (size_t i = 0; i < nx; i++) finite = finite && isfinite(o[i]);
        if (!finite) printf("  (warning: non-finite outputs)\n");
        free(x); free(c); free(o);
        mmp_unet_free(u);
        rm_rf(ud);
    }
    free(su.t);

    }

    /* latents and image buffers shared by the two decoders */
    size_t nz = (size_t)4 * vl * vl, ni = (size_t)3 * 64 * vl * vl;
    float *z = malloc(nz * 4), *img = malloc(ni * 4);
    if (!z || !img) { fprintf(stderr, "out of memory\n"); rm_rf(dir); return 1; }
    mmp_randn(3, z, (int64_t)nz);
    mmp_vae *v = NULL;
    double best = 1e30;

    /* VAE decode */
    if (!only || !strcmp(only, "vae")) {
    spec sv = {0};
    sd_vae_decoder(&sv, vl);
    char vd[512];
    snprintf(vd, sizeof vd, "%s/vae", dir);
    if (write_folder(vd, VAE_CONFIG, &sv, MMP_TYPE_F32) != 0) return 1;
    v = mmp_vae_load(vd, nth);
    if (!v) { fprintf(stderr, "vae: %s\n", mmp_last_error()); rm_rf(dir); return 1; }
    best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = mmpb_now();
        if (mmp_vae_decode(v, 1, vl, vl, z, img, NULL, NULL) != MMP_OK) { fprintf(stderr, "vae: %s\n", mmp_last_error()); rm_rf(dir); return 1; }
        double dt = mmpb_now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    printf("\nVAE (AutoencoderKL SD) decode %dx%d -> %dx%d, F32: %.2f s, %.1f GFLOP = %.1f GFLOP/s = %.2f of sgemm peak\n", vl, vl, vl * 8,
           vl * 8, best, sv.flops / 1e9, sv.flops / best / 1e9, sv.flops / best / 1e9 / peak);
    mmp_vae_free(v);
    free(sv.t);

    }

    /* TAESD decode */
    if (!only || !strcmp(only, "taesd")) {
    spec st = {0};
    taesd_decoder(&st, vl);
    char td[512];
    snprintf(td, sizeof td, "%s/taesd", dir);
    if (write_folder(td, NULL, &st, MMP_TYPE_F32) != 0) return 1;
    char tf[600];
    snprintf(tf, sizeof tf, "%s/taesd_decoder.safetensors", td);
    v = mmp_vae_load(tf, nth);
    if (!v) { fprintf(stderr, "taesd: %s\n", mmp_last_error()); rm_rf(dir); return 1; }
    best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = mmpb_now();
        if (mmp_vae_decode(v, 1, vl, vl, z, img, NULL, NULL) != MMP_OK) { fprintf(stderr, "taesd: %s\n", mmp_last_error()); rm_rf(dir); return 1; }
        double dt = mmpb_now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    printf("TAESD decode %dx%d -> %dx%d, F32: %.3f s, %.1f GFLOP = %.1f GFLOP/s = %.2f of sgemm peak\n", vl, vl, vl * 8, vl * 8, best,
           st.flops / 1e9, st.flops / best / 1e9, st.flops / best / 1e9 / peak);
    mmp_vae_free(v);
    free(st.t);
    }
    free(z); free(img);
    rm_rf(dir);
    return 0;
}
