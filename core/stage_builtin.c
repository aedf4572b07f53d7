/* The stage kinds built into the library. A new stage family adds its kind here (one line)
 * and its table in its own file (encoders/, projectors/, backbone/, generators/). */
#include "stage-impl.h"

const mmp_stage_kind *const mmp__builtin_kinds[] = {
    &mmp__stage_backbone_llm,
    &mmp__stage_generator_unet,
    &mmp__stage_generator_vae_decode,
    &mmp__stage_generator_taesd_decode,
    &mmp__stage_generator_vae_encode,
    &mmp__stage_scheduler_step,
    &mmp__stage_generator_sample,
    &mmp__stage_projector_qformer,
    &mmp__stage_projector_output,
    &mmp__stage_frontend_mel,
    &mmp__stage_encoder_whisper,
    &mmp__stage_projector_qwen2_audio,
    &mmp__stage_projector_ultravox,
    &mmp__stage_projector_voxtral,
    &mmp__stage_encoder_clip,
    &mmp__stage_encoder_siglip,
    &mmp__stage_encoder_vit,
    &mmp__stage_encoder_clip_text,
    &mmp__stage_tokenize_clip,
    &mmp__stage_projector_mlp,
    &mmp__stage_projector_linear,
    &mmp__stage_preprocess_image,
    &mmp__stage_prompt_embed,
    &mmp__stage_prompt_text,
    &mmp__stage_backbone_generate,
    NULL
};
