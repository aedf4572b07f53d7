/* Private: what the CLI needs from the multimodal model detection of core/mtmd.c. */
#ifndef MMP_MTMD_IMPL_H
#define MMP_MTMD_IMPL_H

/* The stock audio chat pipeline for a model, decided as mmp_mm_load decides the audio
 * projector: from `mmproj` when given (llama.cpp mmproj GGUF: clip.projector_type qwen2a /
 * ultravox / voxtral; an HF folder: config.json model_type), else from `model` (HF folder:
 * model_type "ultravox" / "voxtral", any other model with audio_config or audio_tower.* / a.*
 * tensors is Qwen2-Audio). Returns "audio-chat-qwen2", "audio-chat-ultravox" or
 * "audio-chat-voxtral" (static strings, mmp_pipeline_desc_stock names), or NULL + message: a
 * file that cannot be opened, one without an audio encoder (MMP_ERR_NOT_FOUND), an unknown GGUF
 * projector type (MMP_ERR_UNSUPPORTED). */
const char *mmp__audio_pipeline_for(const char *model, const char *mmproj);

#endif
