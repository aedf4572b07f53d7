/* txt2img: latent diffusion from a conditioning, with classifier-free guidance.
 *
 *   txt2img UNET_DIR VAE STEPS OUT.png cond FILE.safetensors COND_TENSOR [UNCOND_TENSOR]
 *   txt2img UNET_DIR VAE STEPS OUT.png clip TEXT_ENCODER_DIR "IDS" ["UNCOND_IDS"]
 *
 * The conditioning (the UNet's cross-attention context [T, D]) comes either from a tensor in a
 * safetensors file, or from a CLIP text encoder run on token ids ("49406,320,1929,49407";
 * tokenize with the CLIP tokenizer of your model). The unconditional context is the second
 * tensor / the encoder on the second ids, or zeros. DDIM, CFG 7.5, seed 42, size from the
 * UNet/VAE: 8 latents per side times the VAE scale. Public API only. */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "txt2img: %s: %s\n", what, mmp_last_error());
    return 1;
}

/* A [T, D] f32 tensor of a safetensors file, copied (file data may be unaligned). */
static float *read_ctx(const mmp_safetensors *st, const char *name, int *t, int *d) {
    const mmp_tensor_info *ti = mmp_safetensors_find(st, name);
    if (!ti || ti->type != MMP_TYPE_F32 || ti->n_dims != 2) {
        fprintf(stderr, "txt2img: no 2-D f32 tensor '%s'\n", name);
        return NULL;
    }
    *d = (int)ti->ne[0];  /* ne is innermost first */
    *t = (int)ti->ne[1];
    float *c = malloc(ti->nbytes);
    if (c) memcpy(c, ti->data, ti->nbytes);
    return c;
}

/* "1,2,3" -> CLIP text encoder last hidden state [n, D] */
static float *encode_ids(mmp_clip_text *te, const char *list, int *t, int *d) {
    int32_t ids[1024];
    int n = 0;
    for (const char *p = list; *p && n < 1024;) {
        char *end;
        ids[n++] = (int32_t)strtol(p, &end, 10);
        if (end == p) { fprintf(stderr, "txt2img: bad id list '%s'\n", list); return NULL; }
        p = *end == ',' ? end + 1 : end;
    }
    *t = n;
    *d = mmp_clip_text_get_hparams(te)->n_embd;
    float *h = malloc((size_t)n * (size_t)*d * sizeof(float));
    mmp_clip_text_params cp = mmp_clip_text_params_default();
    cp.n_threads = 2;
    if (!h || mmp_clip_text_encode(te, ids, n, &cp, h, NULL) != MMP_OK) { free(h); fail("text encoder"); return NULL; }
    return h;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: txt2img UNET_DIR VAE STEPS OUT.png cond FILE.safetensors COND [UNCOND]\n"
                        "       txt2img UNET_DIR VAE STEPS OUT.png clip TEXT_ENCODER_DIR IDS [UNCOND_IDS]\n");
        return 2;
    }
    int rc = 1, t = 0, d = 0, tu = 0, du = 0;
    float *cond = NULL, *uncond = NULL, *noise = NULL, *lat = NULL, *img01 = NULL;
    mmp_safetensors *st = NULL;
    mmp_clip_text *te = NULL;
    mmp_scheduler *sched = NULL;
    mmp_image *img = NULL;
    mmp_vae *vae = NULL;
    mmp_unet *unet = mmp_unet_load(argv[1], 2);
    if (!unet) return fail(argv[1]);
    if (!(vae = mmp_vae_load(argv[2], 2))) { fail(argv[2]); goto done; }

    /* 1. the conditioning and the unconditional context */
    if (strcmp(argv[5], "cond") == 0) {
        if (!(st = mmp_safetensors_open(argv[6]))) { fail(argv[6]); goto done; }
        if (!(cond = read_ctx(st, argv[7], &t, &d))) goto done;
        if (argc > 8 && !(uncond = read_ctx(st, argv[8], &tu, &du))) goto done;
    } else if (strcmp(argv[5], "clip") == 0) {
        if (!(te = mmp_clip_text_load(argv[6]))) { fail(argv[6]); goto done; }
        if (!(cond = encode_ids(te, argv[7], &t, &d))) goto done;
        if (argc > 8 && !(uncond = encode_ids(te, argv[8], &tu, &du))) goto done;
    } else {
        fprintf(stderr, "txt2img: mode '%s', expected cond or clip\n", argv[5]);
        goto done;
    }
    if (uncond && (tu != t || du != d)) { fprintf(stderr, "txt2img: uncond is [%d, %d], cond [%d, %d]\n", tu, du, t, d); goto done; }
    if (!uncond && !(uncond = calloc((size_t)t * (size_t)d, sizeof(float)))) goto done;

    /* 2. the sampling loop: DDIM with SD 1.x settings, noise from a seed */
    mmp_sched_params sp = mmp_sched_params_default(MMP_SCHED_DDIM);
    if (!(sched = mmp_scheduler_new(&sp))) { fail("scheduler"); goto done; }
    mmp_txt2img_params tp = mmp_txt2img_params_default();
    int s = mmp_vae_scale(vae), lh = 8, lw = 8, C = mmp_unet_in_channels(unet);
    tp.width = lw * s;
    tp.height = lh * s;
    tp.steps = atoi(argv[3]);
    tp.cfg_scale = 7.5f;
    size_t nl = (size_t)C * lh * lw, np = (size_t)3 * tp.width * tp.height;
    noise = malloc(nl * sizeof(float));
    lat = malloc(nl * sizeof(float));
    img01 = malloc(np * sizeof(float));
    if (!noise || !lat || !img01) goto done;
    mmp_randn(42, noise, (int64_t)nl);
    if (mmp_txt2img_sample(unet, sched, vae, &tp, t, d, cond, uncond, noise, lat, img01) != MMP_OK) { fail("sampling"); goto done; }

    /* 3. [3, H, W] in [0, 1] -> 8-bit RGB -> PNG */
    if (!(img = mmp_image_from_chw(img01, tp.width, tp.height))) { fail("image"); goto done; }
    mmp_png_text meta = { "parameters", "mmpipe samples/examples/txt2img, DDIM, CFG 7.5, seed 42" };
    if (mmp_image_write_png(argv[4], img, &meta, 1) != MMP_OK) { fail(argv[4]); goto done; }
    printf("wrote %s (%dx%d, %d steps, context [%d, %d])\n", argv[4], tp.width, tp.height, tp.steps, t, d);
    rc = 0;
done:
    mmp_image_free(img);
    mmp_scheduler_free(sched);
    free(noise); free(lat); free(img01); free(cond); free(uncond);
    mmp_clip_text_free(te);
    mmp_safetensors_free(st);
    mmp_vae_free(vae);
    mmp_unet_free(unet);
    return rc;
}
