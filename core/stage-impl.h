/* Private: the list of stage kinds built into the library (core/stage_builtin.c). */
#ifndef MMP_STAGE_IMPL_H
#define MMP_STAGE_IMPL_H
#include "mmpipe/stage.h"

/* Stage options "key=value,key=value". A backslash escapes the next character: "\," is a comma
 * inside a value and "\\" a backslash (pipelines escape ${param} values substituted into
 * options this way, so a system prompt may hold commas). Items without '=' have val "" and
 * bare set (a flag such as "raw"); "raw=" is an empty value (the default).
 * Returns the number of items (<= max) or -1 with the error set naming `kind` (more than max
 * items, an empty key, a trailing backslash). keys/values point into *storage: free it. */
typedef struct mmp__opt {
    const char *key, *val;
    bool bare;              /* written without '=' ("raw"), as opposed to "raw=" */
} mmp__opt;
int mmp__opts_parse(const char *kind, const char *opts, mmp__opt *items, int max, char **storage);

/* NULL-terminated. */
extern const mmp_stage_kind *const mmp__builtin_kinds[];

/* The kinds (each defined in its family's file). */
extern const mmp_stage_kind mmp__stage_backbone_llm;   /* backbone/stage_llm.c */

extern const mmp_stage_kind mmp__stage_generator_unet;          /* generators/gen_stages.c */
extern const mmp_stage_kind mmp__stage_generator_vae_decode;    /* generators/gen_stages.c */
extern const mmp_stage_kind mmp__stage_generator_taesd_decode;  /* generators/gen_stages.c */
extern const mmp_stage_kind mmp__stage_generator_vae_encode;    /* generators/gen_stages.c */

extern const mmp_stage_kind mmp__stage_scheduler_step;          /* generators/stage_sample.c */
extern const mmp_stage_kind mmp__stage_generator_sample;        /* generators/stage_sample.c */

extern const mmp_stage_kind mmp__stage_projector_qformer;  /* projectors/qformer.c */
extern const mmp_stage_kind mmp__stage_projector_output;   /* projectors/output.c */

extern const mmp_stage_kind mmp__stage_frontend_mel;              /* encoders/mel.c */
extern const mmp_stage_kind mmp__stage_encoder_whisper;           /* encoders/whisper.c */
extern const mmp_stage_kind mmp__stage_projector_qwen2_audio;     /* projectors/audio.c */
extern const mmp_stage_kind mmp__stage_projector_ultravox;        /* projectors/audio.c */
extern const mmp_stage_kind mmp__stage_projector_voxtral;         /* projectors/audio.c */

extern const mmp_stage_kind mmp__stage_encoder_clip;          /* encoders/clip.c */
extern const mmp_stage_kind mmp__stage_encoder_siglip;        /* encoders/clip.c */
extern const mmp_stage_kind mmp__stage_encoder_vit;           /* encoders/clip.c */
extern const mmp_stage_kind mmp__stage_encoder_clip_text;     /* encoders/clip.c */
extern const mmp_stage_kind mmp__stage_tokenize_clip;         /* encoders/stage_tokenize_clip.c */
extern const mmp_stage_kind mmp__stage_projector_mlp;         /* projectors/mlp.c */
extern const mmp_stage_kind mmp__stage_projector_linear;      /* projectors/mlp.c */

extern const mmp_stage_kind mmp__stage_preprocess_image;    /* encoders/stage_preprocess.c */
extern const mmp_stage_kind mmp__stage_prompt_embed;         /* core/pipeline_prompt.c */
extern const mmp_stage_kind mmp__stage_prompt_text;          /* core/stage_prompt_text.c */
extern const mmp_stage_kind mmp__stage_backbone_generate;     /* backbone/stage_generate.c */

#endif
