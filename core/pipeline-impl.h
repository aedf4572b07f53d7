/* Private: shared between core/pipeline.c (graph, validation, run) and core/pipeline_file.c
 * (the pipeline file parser). */
#ifndef MMP_PIPELINE_IMPL_H
#define MMP_PIPELINE_IMPL_H
#include "mmpipe/pipeline.h"

/* The file line that the next mmp_pipeline_desc_add_* / _connect call came from (0: built in
 * code). Messages about that element then say "SOURCE:LINE: ...". */
void mmp__pipeline_desc_set_line(mmp_pipeline_desc *d, int line);
/* The name used in messages ("pipelines/llava.pipe"); copied. */
enum mmp_status mmp__pipeline_desc_set_source(mmp_pipeline_desc *d, const char *source);
enum mmp_status mmp__pipeline_desc_set_name(mmp_pipeline_desc *d, const char *name);

/* The `prompt.embed` stage kind (core/pipeline_prompt.c): token embeddings with the marker
 * positions replaced by media embeddings. To be listed in core/stage_builtin.c. */
extern const mmp_stage_kind mmp__stage_prompt_embed;

#endif
