/* TAESD family (tiny autoencoders: TAESD, TAESDXL, TAEF1, TAEF2, diffusers AutoencoderTiny).
 *
 * Both namings are nn.Sequential indices:
 *   taesd.py    decoder: 0 Clamp, 1 conv, 2 ReLU, 3.. Blocks / Upsample / conv ...   ("3.conv.0.weight")
 *   diffusers   decoder.layers: the same list without the Clamp module (indices shifted by one,
 *               the clamp is applied in forward), and the output scaled to [-1, 1].
 * Modules without weights are told apart by what precedes them: after a conv it is a ReLU, after
 * a Block an Upsample(x2). Encoders: the first conv has stride 1, the following ones stride 2
 * except the last (the projection to latents). Block (x [W, H, 64, N]):
 *   x = x + pool(x)       (TAEF2 only: conv1x1 -> GroupNorm(4) -> ReLU -> conv1x1, no biases)
 *   y = ReLU(conv.4(ReLU(conv.2(ReLU(conv.0(x))))) + skip(x))     skip: 1x1 conv or identity
 * Any latent channel count: it comes from the first / last conv. */
#include "gen-impl.h"
#include "util.h"

#include <string.h>

#define TAESD_MAX_LAYERS 256

static mmp_tensor *block(mmp__wstore *ws, mmp_graph *g, mmp_tensor *x, int i) {
    char n[64];
    if (mmp__wstore_has(ws, "%d.pool.0.weight", i)) {
        snprintf(n, sizeof n, "%d.pool.0", i);
        mmp_tensor *p = mmp__conv(ws, g, x, n, false, 1, 0);
        snprintf(n, sizeof n, "%d.pool.1", i);
        p = mmp_relu(g, mmp__gn(ws, g, p, n, 4, 1e-5f));
        snprintf(n, sizeof n, "%d.pool.3", i);
        p = mmp__conv(ws, g, p, n, false, 1, 0);
        x = mmp_add(g, x, p);
    }
    snprintf(n, sizeof n, "%d.conv.0", i);
    mmp_tensor *h = mmp_relu(g, mmp__conv(ws, g, x, n, true, 1, 1));
    snprintf(n, sizeof n, "%d.conv.2", i);
    h = mmp_relu(g, mmp__conv(ws, g, h, n, true, 1, 1));
    snprintf(n, sizeof n, "%d.conv.4", i);
    h = mmp__conv(ws, g, h, n, true, 1, 1);
    if (mmp__wstore_has(ws, "%d.skip.weight", i)) {
        snprintf(n, sizeof n, "%d.skip", i);
        x = mmp__conv(ws, g, x, n, false, 1, 0);
    }
    return mmp_relu(g, mmp_add(g, h, x));
}

static bool is_conv(mmp__wstore *ws, int i) { return mmp__wstore_has(ws, "%d.weight", i); }
static bool is_block(mmp__wstore *ws, int i) { return mmp__wstore_has(ws, "%d.conv.0.weight", i); }

static int last_index(mmp__wstore *ws) {
    int last = -1;
    for (int i = 0; i < TAESD_MAX_LAYERS; i++)
        if (is_conv(ws, i) || is_block(ws, i)) last = i;
    return last;
}

int mmp__taesd_latent_channels(mmp__wstore *ws, bool decoder) {
    int last = last_index(ws);
    if (last < 0) return 0;
    if (decoder) {
        for (int i = 0; i <= last; i++) {
            const mmp_tensor_info *ti = mmp__wstore_info(ws, "%d.weight", i);
            if (ti) return ti->n_dims == 4 ? (int)ti->ne[2] : 0;
        }
        return 0;
    }
    const mmp_tensor_info *ti = mmp__wstore_info(ws, "%d.weight", last);
    return ti && ti->n_dims == 4 ? (int)ti->ne[3] : 0;
}

int mmp__taesd_n_upsamples(mmp__wstore *ws, bool decoder) {
    int last = last_index(ws), n = 0;
    if (decoder) {
        bool prev_block = false;
        for (int i = 0; i <= last; i++) {
            if (is_block(ws, i)) prev_block = true;
            else if (is_conv(ws, i)) prev_block = false;
            else if (prev_block) { n++; prev_block = false; }
        }
    } else {
        int first = -1;
        for (int i = 0; i <= last; i++)
            if (is_conv(ws, i)) { if (first < 0) first = i; else if (i != last) n++; }
    }
    return n;
}

mmp_tensor *mmp__taesd_decoder(mmp__wstore *ws, mmp_graph *g, mmp_tensor *z) {
    int last = last_index(ws);
    if (last < 0) return mmp__error_null(MMP_ERR_FORMAT, "%s: no TAESD decoder layers found", mmp_modelfile_path(ws->mf));
    /* Clamp: tanh(x / 3) * 3 */
    mmp_tensor *x = mmp_scale(g, mmp_tanh(g, mmp_scale(g, z, 1.0f / 3.0f)), 3.0f);
    int prev = 0; /* 0 none, 1 conv, 2 block */
    for (int i = 0; i <= last && x; i++) {
        char n[32];
        if (is_block(ws, i)) { x = block(ws, g, x, i); prev = 2; }
        else if (is_conv(ws, i)) {
            snprintf(n, sizeof n, "%d", i);
            x = mmp__conv(ws, g, x, n, mmp__wstore_has(ws, "%d.bias", i), 1, 1);
            prev = 1;
        } else if (prev == 1) { x = mmp_relu(g, x); prev = 0; }
        else if (prev == 2) { x = mmp_upsample_nearest(g, x, 2); prev = 0; }
        /* index 0 without weights in taesd.py is the Clamp, applied above */
    }
    return x;
}

mmp_tensor *mmp__taesd_encoder(mmp__wstore *ws, mmp_graph *g, mmp_tensor *img) {
    int last = last_index(ws);
    if (last < 0) return mmp__error_null(MMP_ERR_FORMAT, "%s: no TAESD encoder layers found", mmp_modelfile_path(ws->mf));
    mmp_tensor *x = img;
    bool first = true;
    int prev = 0;
    for (int i = 0; i <= last && x; i++) {
        char n[32];
        if (is_block(ws, i)) { x = block(ws, g, x, i); prev = 2; }
        else if (is_conv(ws, i)) {
            snprintf(n, sizeof n, "%d", i);
            int stride = (first || i == last) ? 1 : 2;
            x = mmp__conv(ws, g, x, n, mmp__wstore_has(ws, "%d.bias", i), stride, 1);
            first = false;
            prev = 1;
        } else if (prev == 1) { x = mmp_relu(g, x); prev = 0; }
        else return mmp__error_null(MMP_ERR_UNSUPPORTED, "%s: TAESD encoder layer %d has no weights and follows no conv",
                                    mmp_modelfile_path(ws->mf), i);
    }
    return x;
}
