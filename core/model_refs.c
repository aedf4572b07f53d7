/* Models shared by several stage kinds, fetched through the store under one tag each
 * (core/store-impl.h): prompt.embed, prompt.text and backbone.llm / backbone.generate meet on
 * "llm" (any-to-any sessions too); projector.output and any-to-any meet on "outproj";
 * preprocess.image and encoder.clip / encoder.siglip meet on "vit". */
#include "store-impl.h"

#include "mmpipe/llm.h"
#include "mmpipe/projector.h"
#include "mmpipe/vision.h"

#include <stdio.h>

/* The LLM borrows the store's (or the private) mapping of its file: no second open. */
static void *llm_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    (void)ctx;
    return mmp_llm_load_modelfile(mf, NULL);
}
static void llm_free(void *m) { mmp_llm_free(m); }

enum mmp_status mmp__llm_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out) {
    return mmp__model_get(p, "llm", path, NULL, 0, llm_load, llm_free, NULL, out);
}

static void *vit_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    (void)ctx;
    return mmp_vit_load_modelfile(mf);  /* borrows the store's mapping of the file */
}
static void vit_free(void *v) { mmp_vit_free(v); }

enum mmp_status mmp__vit_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out) {
    return mmp__model_get(p, "vit", path, NULL, MMP__MODEL_SCRATCH, vit_load, vit_free, NULL, out);
}

static void *outproj_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)path;
    return mmp_outproj_load_modelfile(mf, ctx);
}
static void outproj_free(void *m) { mmp_outproj_free(m); }

enum mmp_status mmp__outproj_ref(const mmp_stage_params *p, const char *path, const struct mmp_outproj_params *params,
                                 mmp__model_ref *out) {
    mmp_outproj_params op = params ? *params : mmp_outproj_params_default();
    /* every field changes the object (heads, norm placement, eps, activation) */
    char key[96];
    snprintf(key, sizeof key, "heads=%d,norm_first=%d,eps=%.9g,act=%d", (int)op.n_heads, (int)op.norm_first,
             (double)op.layer_norm_eps, (int)op.act);
    return mmp__model_get(p, "outproj", path, key, 0, outproj_load, outproj_free, &op, out);
}
