/* The Stable Diffusion sampling loop with classifier-free guidance:
 *   x = noise * init_noise_sigma
 *   for each step i:  x_in = x * input_scale(i)
 *                     [e_u, e_c] = unet([x_in, x_in], t_i, [uncond, cond])     (one batch of 2)
 *                     x = scheduler.step(e_u + cfg (e_c - e_u), x)
 *   image = vae.decode(x / scaling_factor) mapped to [0, 1] */
#include "gen-impl.h"
#include "util.h"

#include <string.h>

mmp_txt2img_params mmp_txt2img_params_default(void) {
    mmp_txt2img_params p;
    memset(&p, 0, sizeof p);
    p.width = 512;
    p.height = 512;
    p.steps = 20;
    p.cfg_scale = 7.5f;
    return p;
}

enum mmp_status mmp_txt2img_sample(mmp_unet *unet, mmp_scheduler *sched, mmp_vae *vae, const mmp_txt2img_params *p, int t_ctx, int d_ctx,
                                   const float *cond, const float *uncond, const float *latents_init, float *latents_out, float *image01) {
    if (!unet || !sched || !p || !cond || !latents_init || !latents_out)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_txt2img_sample: NULL argument");
    bool cfg = p->cfg_scale > 1.0f;
    if (cfg && !uncond) return mmp__error(MMP_ERR_INVALID_ARG, "txt2img: cfg scale %g needs the unconditional context", (double)p->cfg_scale);
    if (image01 && !vae) return mmp__error(MMP_ERR_INVALID_ARG, "txt2img: an image was asked for but no VAE given");
    int C = mmp_unet_in_channels(unet);
    if (mmp_unet_out_channels(unet) != C)
        return mmp__error(MMP_ERR_SHAPE, "txt2img: the UNet takes %d channels but predicts %d", C, mmp_unet_out_channels(unet));
    if (vae && mmp_vae_latent_channels(vae) != C)
        return mmp__error(MMP_ERR_SHAPE, "txt2img: the UNet works on %d latent channels but the VAE decodes %d", C, mmp_vae_latent_channels(vae));
    if (vae && !mmp_vae_has_decoder(vae)) return mmp__error(MMP_ERR_INVALID_ARG, "txt2img: the VAE has no decoder");
    if (d_ctx != mmp_unet_cross_attention_dim(unet))
        return mmp__error(MMP_ERR_SHAPE, "txt2img: conditioning width is %d but the UNet's cross_attention_dim is %d", d_ctx,
                          mmp_unet_cross_attention_dim(unet));
    if (t_ctx < 1 || t_ctx > 100000) return mmp__error(MMP_ERR_INVALID_ARG, "txt2img: conditioning length %d", t_ctx);
    int scale = vae ? mmp_vae_scale(vae) : 8, mult = scale * mmp_unet_size_multiple(unet);
    if (p->width < 1 || p->height < 1 || p->width > 8192 || p->height > 8192 || p->width % mult || p->height % mult)
        return mmp__error(MMP_ERR_INVALID_ARG, "txt2img: size %dx%d (WxH) must be positive multiples of %d (%dx VAE, %d UNet levels)", p->width,
                          p->height, mult, scale, mmp_unet_size_multiple(unet));
    if (p->steps < 1 || p->steps > 1000) return mmp__error(MMP_ERR_INVALID_ARG, "txt2img: %d steps, expected 1..1000", p->steps);
    enum mmp_status st = mmp_scheduler_set_timesteps(sched, p->steps);
    if (st != MMP_OK) return st;
    int h = p->height / scale, w = p->width / scale, nb = cfg ? 2 : 1;
    size_t n = (size_t)C * (size_t)h * (size_t)w, nc = (size_t)t_ctx * (size_t)d_ctx;
    float *xin = mmp__malloc(n * nb * sizeof(float)), *eps = mmp__malloc(n * nb * sizeof(float));
    float *ctx = mmp__malloc(nc * nb * sizeof(float));
    if (!xin || !eps || !ctx) { st = MMP_ERR_NOMEM; goto done; }
    if (cfg) { memcpy(ctx, uncond, nc * sizeof(float)); memcpy(ctx + nc, cond, nc * sizeof(float)); }
    else memcpy(ctx, cond, nc * sizeof(float));
    float sig0 = (float)mmp_scheduler_init_noise_sigma(sched);
    for (size_t j = 0; j < n; j++) latents_out[j] = latents_init[j] * sig0;
    int steps = mmp_scheduler_n_steps(sched);
    for (int i = 0; i < steps; i++) {
        if (p->abort_cb && p->abort_cb(p->cb_user)) { st = mmp__error(MMP_ERR_ABORTED, "txt2img: aborted at step %d of %d", i, steps); goto done; }
        float s = (float)mmp_scheduler_input_scale(sched, i), t = (float)mmp_scheduler_timestep(sched, i);
        for (size_t j = 0; j < n; j++) xin[j] = latents_out[j] * s;
        if (cfg) memcpy(xin + n, xin, n * sizeof(float));
        float ts[2] = { t, t };
        st = mmp_unet_predict(unet, nb, h, w, xin, ts, t_ctx, d_ctx, ctx, eps, p->abort_cb, p->cb_user);
        if (st != MMP_OK) goto done;
        if (cfg)
            for (size_t j = 0; j < n; j++) eps[j] = eps[j] + p->cfg_scale * (eps[n + j] - eps[j]);
        st = mmp_scheduler_step(sched, i, eps, latents_out, (int64_t)n);
        if (st != MMP_OK) goto done;
        if (p->progress) p->progress("steps", i + 1, steps, p->cb_user);
    }
    if (image01) st = mmp_vae_decode_to_image(vae, 1, h, w, latents_out, image01, p->abort_cb, p->cb_user);
done:
    free(xin);
    free(eps);
    free(ctx);
    return st;
}
