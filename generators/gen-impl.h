/* Private helpers shared by the generators (unet.c, vae.c, taesd.c, txt2img.c, gen_stages.c). */
#ifndef MMP_GEN_IMPL_H
#define MMP_GEN_IMPL_H

#include "mmpipe/diffusion.h"
#include "mmpipe/graph.h"
#include "mmpipe/backend.h"
#include "mmpipe/modelfile.h"

/* How a weight is handed to the graph. */
enum mmp__wmode {
    MMP__W_F32 = 0,  /* always an f32 copy (biases, norm parameters: the elementwise ops want f32) */
    MMP__W_MAT = 1,  /* matrices / conv kernels: F32 or F16 used in place when aligned, others -> f32 */
};

struct mmp__went {
    const mmp_tensor_info *ti;
    int mode;
    enum mmp_type type;
    void *data;
    bool owned;
};

/* Weights of one model file, resolved lazily and cached (conversions happen once). */
typedef struct mmp__wstore {
    mmp_modelfile *mf;
    bool borrowed;            /* mf is the caller's (a *_load_modelfile load): not freed here */
    char prefix[64];          /* prepended to every name ("" or "decoder." ...) */
    struct mmp__went *e;
    int n, cap;
} mmp__wstore;

enum mmp_status mmp__wstore_open(mmp__wstore *ws, const char *path);
/* Use an opened model file (the caller keeps it open while ws lives). */
void mmp__wstore_borrow(mmp__wstore *ws, const mmp_modelfile *mf);
void mmp__wstore_close(mmp__wstore *ws);
/* Whether a tensor exists (prefix + printf name). */
bool mmp__wstore_has(mmp__wstore *ws, const char *fmt, ...) MMP_PRINTF(2, 3);
/* The info of a tensor, or NULL (no error set). */
const mmp_tensor_info *mmp__wstore_info(mmp__wstore *ws, const char *fmt, ...) MMP_PRINTF(2, 3);
/* A graph leaf over the weight (prefix + printf name), reshaped to ne[n_dims] when n_dims > 0
 * (same element count), or NULL + message naming the tensor and the file. */
mmp_tensor *mmp__wt(mmp__wstore *ws, mmp_graph *g, int mode, int n_dims, const int64_t *ne, const char *fmt, ...) MMP_PRINTF(6, 7);
/* Rows [r0, r0 + nr) of the outermost dim of a weight (for a 1-D tensor: elements), as a leaf of
 * ne {ne0, nr} (2-D) or {nr} (1-D). Used to split fused projections (GEGLU). */
mmp_tensor *mmp__wt_rows(mmp__wstore *ws, mmp_graph *g, int mode, int64_t r0, int64_t nr, const char *fmt, ...) MMP_PRINTF(6, 7);

/* Graph helpers on [W, H, C, N] activations. */
/* conv2d with a bias (optional: pass bias_name NULL), square kernel from the weight. */
mmp_tensor *mmp__conv(mmp__wstore *ws, mmp_graph *g, mmp_tensor *x, const char *name, bool bias, int stride, int pad);
/* y = W x + b on [K, T, N] rows (weight name + ".weight" / ".bias"). */
mmp_tensor *mmp__linear(mmp__wstore *ws, mmp_graph *g, mmp_tensor *x, const char *name, bool bias);
/* group_norm with weight/bias name.weight / name.bias. */
mmp_tensor *mmp__gn(mmp__wstore *ws, mmp_graph *g, mmp_tensor *x, const char *name, int groups, float eps);

/* One cached graph: rebuilt when the shape key changes. */
typedef struct mmp__gcache {
    mmp_graph *g;
    int64_t key[6];
    bool valid;
    mmp_tensor *in[4];
    mmp_tensor *out;
    float *zeros;             /* zero padding source (encoders), sized at build */
} mmp__gcache;
void mmp__gcache_free(mmp__gcache *c);

/* Copy a contiguous f32 output / input. */
void mmp__copy_in(mmp_tensor *t, const float *src);
void mmp__copy_out(const mmp_tensor *t, float *dst);

/* TAESD graphs (taesd.c). ws has the naming prefix set ("" for taesd.py files,
 * "decoder.layers." / "encoder.layers." for diffusers AutoencoderTiny). */
mmp_tensor *mmp__taesd_decoder(mmp__wstore *ws, mmp_graph *g, mmp_tensor *z);   /* tanh clamp included; raw output */
mmp_tensor *mmp__taesd_encoder(mmp__wstore *ws, mmp_graph *g, mmp_tensor *img);
int mmp__taesd_latent_channels(mmp__wstore *ws, bool decoder);   /* 0 if not a TAESD file */
int mmp__taesd_n_upsamples(mmp__wstore *ws, bool decoder);      /* 3 for 8x */

/* The UNet / VAE of a stage through the model store (generators/stage_sample.c): tags "unet" and
 * "vae", keyed by the thread count, scratch models (shared within p->scope). */
struct mmp_stage_params;
struct mmp__model_ref;
enum mmp_status mmp__unet_ref(const struct mmp_stage_params *p, const char *path, struct mmp__model_ref *out);
enum mmp_status mmp__vae_ref(const struct mmp_stage_params *p, const char *path, struct mmp__model_ref *out);

#endif
