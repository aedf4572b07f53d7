/* Private: the list of stage kinds built into the library (core/stage_builtin.c). */
#ifndef MMP_STAGE_IMPL_H
#define MMP_STAGE_IMPL_H
#include "mmpipe/stage.h"

/* NULL-terminated. */
extern const mmp_stage_kind *const mmp__builtin_kinds[];

/* The kinds (each defined in its family's file). */
extern const mmp_stage_kind mmp__stage_backbone_llm;   /* backbone/stage_llm.c */


extern const mmp_stage_kind mmp__stage_projector_qformer;  /* projectors/qformer.c */
extern const mmp_stage_kind mmp__stage_projector_output;   /* projectors/output.c */



#endif
