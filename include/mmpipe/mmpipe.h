/* mmpipe — multimodal LLM pipelines. The umbrella header: include this one. */
#ifndef MMPIPE_H
#define MMPIPE_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"
#include "mmpipe/graph.h"
#include "mmpipe/backend.h"
#include "mmpipe/gguf.h"
#include "mmpipe/safetensors.h"
#include "mmpipe/tokenizer.h"
#include "mmpipe/json.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/stage.h"
#include "mmpipe/store.h"
#include "mmpipe/pipeline.h"
#include "mmpipe/llm.h"
#include "mmpipe/sampler.h"
#include "mmpipe/convert.h"
#include "mmpipe/chat.h"
#include "mmpipe/diffusion.h"
#include "mmpipe/audio.h"
#include "mmpipe/projector.h"

#include "mmpipe/image.h"
#include "mmpipe/vision.h"
#include "mmpipe/sd.h"

#include "mmpipe/mtmd.h"
#include "mmpipe/anytoany.h"
#endif
