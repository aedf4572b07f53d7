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

/* The stock pipelines compiled into the library (generated from the .pipe files of pipelines/ by
 * cmake/embed_pipelines.cmake): sorted by name, terminated by a NULL name. */
typedef struct mmp__stock_pipe {
    const char *name;   /* file name without .pipe */
    const char *text;   /* NUL-terminated */
    size_t len;
} mmp__stock_pipe;
extern const mmp__stock_pipe mmp__stock_pipes[];

#endif
