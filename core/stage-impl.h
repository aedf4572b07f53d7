/* Private: the list of stage kinds built into the library (core/stage_builtin.c). */
#ifndef MMP_STAGE_IMPL_H
#define MMP_STAGE_IMPL_H
#include "mmpipe/stage.h"

/* NULL-terminated. */
extern const mmp_stage_kind *const mmp__builtin_kinds[];

extern const mmp_stage_kind mmp__stage_backbone_llm;  /* backbone/stage_llm.c */

#endif
