/* Models shared by several stage kinds, fetched through the store under one tag each
 * (core/store-impl.h): prompt.embed, prompt.text and backbone.llm / backbone.generate meet on
 * "llm"; preprocess.image and encoder.clip / encoder.siglip meet on "vit". */
#include "store-impl.h"

#include "mmpipe/llm.h"
#include "mmpipe/vision.h"

static void *llm_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)mf;
    (void)ctx;
    return mmp_llm_load(path, NULL);
}
static void llm_free(void *m) { mmp_llm_free(m); }

enum mmp_status mmp__llm_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out) {
    return mmp__model_get(p, "llm", path, NULL, MMP__MODEL_NO_FILE, llm_load, llm_free, NULL, out);
}

static void *vit_load(const mmp_modelfile *mf, const char *path, void *ctx) {
    (void)mf;
    (void)ctx;
    return mmp_vit_load(path);
}
static void vit_free(void *v) { mmp_vit_free(v); }

enum mmp_status mmp__vit_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out) {
    return mmp__model_get(p, "vit", path, NULL, MMP__MODEL_NO_FILE | MMP__MODEL_SCRATCH, vit_load, vit_free, NULL, out);
}
