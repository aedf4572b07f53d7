/* mmpipe — the model store: each model file opened once, loaded models shared.
 *
 * A store caches, by canonical path:
 *   - opened model files (mmp_modelfile: the GGUF / safetensors mappings and configs), and
 *   - the models stage kinds load from them (an mmp_llm, a ViT, a UNet, ...), keyed by what
 *     they are, the path and the load options.
 * Stages created with one store (mmp_stage_params.store, mmp_pipeline_params.store) get the
 * same objects: two stages or two pipelines naming one file map it once, and a model two
 * stages need (e.g. prompt.embed and backbone.llm both use the LLM) is loaded once.
 *
 * Sharing rules: read-only models (the LLM, the Q-Former, the output projector) are shared by
 * every user of the store, from any thread; each stage keeps its own session (KV cache).
 * Models that keep scratch state while they run (ViT, UNet, VAE, Whisper, ...) are shared only
 * between stages of one scope (one pipeline, which runs its stages one at a time); a pipeline
 * in another thread builds its own from the same mapping.
 *
 * Thread safety: every call is thread-safe. Lifetime: the store must outlive every stage and
 * pipeline created with it; an object stays loaded while any stage uses it and is freed when
 * the last one is freed. */
#ifndef MMPIPE_STORE_H
#define MMPIPE_STORE_H

#include "mmpipe/base.h"
#include "mmpipe/modelfile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmp_store mmp_store;

/* NULL + mmp_last_error() on no memory. */
MMP_API mmp_store *mmp_store_new(void);
/* Frees the store; every stage / pipeline using it must be freed first. NULL is fine. */
MMP_API void mmp_store_free(mmp_store *s);

/* Counters, for tests and `--verbose` output. */
typedef struct mmp_store_stats {
    int64_t files_open;     /* model files open now */
    int64_t models_loaded;  /* models loaded now */
    int64_t file_opens;     /* times a file was actually opened (cache misses) */
    int64_t model_loads;    /* times a model was actually loaded (cache misses) */
    int64_t hits;           /* requests served from the cache */
} mmp_store_stats;
MMP_API mmp_store_stats mmp_store_get_stats(const mmp_store *s);

/* Open a model file or folder through the store: a new reference to the shared view (the same
 * pointer for the same canonical path). NULL + mmp_last_error() as mmp_modelfile_open. Give it
 * back with mmp_store_close. */
MMP_API const mmp_modelfile *mmp_store_open(mmp_store *s, const char *path);
MMP_API void mmp_store_close(mmp_store *s, const mmp_modelfile *mf);

#ifdef __cplusplus
}
#endif
#endif
