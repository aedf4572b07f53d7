/* mmpipe — one view of "the model files a user points at".
 *
 * A path may be:
 *  - a .gguf file                                   -> MMP_MODELFILE_GGUF
 *  - a .safetensors file or a *.safetensors.index.json -> MMP_MODELFILE_SAFETENSORS
 *    (config.json next to it, if any, is read as the config)
 *  - a Hugging Face transformers folder: config.json + model.safetensors or
 *    model.safetensors.index.json (maybe generation_config.json, tokenizer.json)
 *                                                   -> MMP_MODELFILE_HF
 *  - a diffusers component folder: config.json + diffusion_pytorch_model.safetensors (or its
 *    .index.json)                                   -> MMP_MODELFILE_DIFFUSERS
 *  - a diffusers pipeline root: model_index.json with component subfolders
 *                                                   -> MMP_MODELFILE_PIPELINE (no tensors of
 *    its own; its components are modelfiles)
 *
 * Tensors come as mmp_tensor_info with ne[] IN GGML ORDER for every format: ne[0] is the
 * contiguous dim, i.e. for safetensors the numpy shape reversed (a torch Linear weight
 * [out, in] gives ne = {in, out}). Data points into the mmapped files and lives as long as
 * the modelfile. */
#ifndef MMPIPE_MODELFILE_H
#define MMPIPE_MODELFILE_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"
#include "mmpipe/gguf.h"
#include "mmpipe/safetensors.h"
#include "mmpipe/json.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mmp_modelfile_format {
    MMP_MODELFILE_GGUF = 0,
    MMP_MODELFILE_SAFETENSORS = 1,
    MMP_MODELFILE_HF = 2,
    MMP_MODELFILE_DIFFUSERS = 3,
    MMP_MODELFILE_PIPELINE = 4,
    MMP_MODELFILE_FORMAT_COUNT = 5
};
/* "gguf", "safetensors", "hf", "diffusers", "pipeline". */
MMP_API const char *mmp_modelfile_format_name(enum mmp_modelfile_format f);

typedef struct mmp_modelfile mmp_modelfile;

/* Open whatever `path` is (see above). NULL + message on error: a folder without
 * recognizable files says what it looked for. Free with mmp_modelfile_free. */
MMP_API mmp_modelfile *mmp_modelfile_open(const char *path);
MMP_API void mmp_modelfile_free(mmp_modelfile *m);

MMP_API enum mmp_modelfile_format mmp_modelfile_format(const mmp_modelfile *m);
MMP_API const char *mmp_modelfile_path(const mmp_modelfile *m); /* as given */
MMP_API const char *mmp_modelfile_dir(const mmp_modelfile *m);  /* folder holding the files */

/* Tensors over all files (0 for a pipeline root). Borrowed; live as long as m. */
MMP_API int64_t mmp_modelfile_n_tensors(const mmp_modelfile *m);
MMP_API const mmp_tensor_info *mmp_modelfile_tensor(const mmp_modelfile *m, int64_t i);
/* By name (hash lookup), or NULL + MMP_ERR_NOT_FOUND naming the tensor and the model path. */
MMP_API const mmp_tensor_info *mmp_modelfile_find(const mmp_modelfile *m, const char *name);

/* Underlying readers (borrowed; NULL when not that format). */
MMP_API const mmp_gguf *mmp_modelfile_gguf(const mmp_modelfile *m);
MMP_API const mmp_safetensors *mmp_modelfile_safetensors(const mmp_modelfile *m);
/* config.json (HF/diffusers/safetensors with a config next to it; model_index.json for a
 * pipeline root), generation_config.json: NULL if there is none. */
MMP_API const mmp_json *mmp_modelfile_config(const mmp_modelfile *m);
MMP_API const mmp_json *mmp_modelfile_generation_config(const mmp_modelfile *m);

/* Sibling files: whether `name` exists as a regular file in mmp_modelfile_dir(m), and its path
 * (new malloc'ed string the caller frees, or NULL + MMP_ERR_NOT_FOUND). */
MMP_API bool mmp_modelfile_has_file(const mmp_modelfile *m, const char *name);
MMP_API char *mmp_modelfile_file_path(const mmp_modelfile *m, const char *name);

/* Pipeline roots: the components listed in model_index.json (keys whose value is a
 * [library, class] pair), in file order. component() gives the component folder opened as a
 * modelfile (borrowed, lives as long as m), or NULL + MMP_ERR_NOT_FOUND if it has no weights
 * (e.g. "scheduler", "tokenizer") or is not listed. */
MMP_API int mmp_modelfile_n_components(const mmp_modelfile *m);
MMP_API const char *mmp_modelfile_component_name(const mmp_modelfile *m, int i);
MMP_API const char *mmp_modelfile_component_class(const mmp_modelfile *m, int i);
MMP_API const mmp_modelfile *mmp_modelfile_component(const mmp_modelfile *m, const char *name);

#ifdef __cplusplus
}
#endif
#endif
