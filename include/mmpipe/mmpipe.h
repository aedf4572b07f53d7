/* mmpipe — multimodal LLM pipelines. The umbrella header: include this one. */
#ifndef MMPIPE_H
#define MMPIPE_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"

#endif
