/* Private: how stage kinds get their models through the model store (store.h). */
#ifndef MMP_STORE_IMPL_H
#define MMP_STORE_IMPL_H

#include "mmpipe/stage.h"
#include "mmpipe/store.h"

/* Builds a model from an opened model file (mf: NULL with MMP__MODEL_NO_FILE). The model may
 * borrow mf: the file stays open while the model lives. NULL + mmp_last_error() on failure. */
typedef void *(*mmp__model_load_fn)(const mmp_modelfile *mf, const char *path, void *ctx);
typedef void (*mmp__model_free_fn)(void *model);

enum {
    MMP__MODEL_SCRATCH = 1,  /* keeps scratch state while running: share only within p->scope */
    MMP__MODEL_NO_FILE = 2,  /* the loader opens `path` itself (no shared mmp_modelfile) */
};

/* A model held by a stage. */
typedef struct mmp__model_ref {
    void *model;
    mmp__model_free_fn free_fn;
    mmp_store *store;               /* NULL: private */
    void *entry;                    /* the store's cache entry, NULL when not cached */
    mmp_modelfile *own_mf;          /* a privately opened file (no store) */
    const mmp_modelfile *store_mf;  /* a file reference taken from the store (not cached model) */
} mmp__model_ref;

/* Get the model `tag` ("llm", "vit", ...) of `path` for a stage: from p->store when there is one
 * (cached under tag + canonical path + key: `key` holds the load options that change the
 * object, may be NULL), else opened and loaded privately. MMP_OK or the loader's error, with
 * *out zeroed. */
enum mmp_status mmp__model_get(const mmp_stage_params *p, const char *tag, const char *path, const char *key, int flags,
                               mmp__model_load_fn load, mmp__model_free_fn free_fn, void *ctx, mmp__model_ref *out);
/* Give the model back (frees it when this was the last user). Zeroes *ref; a zeroed ref is fine. */
void mmp__model_put(mmp__model_ref *ref);


/* The models several stage kinds share, under one tag each so that they meet in the store
 * (core/model_refs.c). The LLM is read-only (shared across scopes); the ViT keeps scratch
 * state (shared within p->scope). `path` is the model file or folder. */
struct mmp_llm;
struct mmp_vit;
enum mmp_status mmp__llm_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out);
enum mmp_status mmp__vit_ref(const mmp_stage_params *p, const char *path, mmp__model_ref *out);
/* The output projector (read-only, shared across scopes) under "outproj", keyed by its load
 * params: projector.output stages and any-to-any sessions meet on it. params may be NULL. */
struct mmp_outproj_params;
enum mmp_status mmp__outproj_ref(const mmp_stage_params *p, const char *path, const struct mmp_outproj_params *params,
                                 mmp__model_ref *out);

#endif
