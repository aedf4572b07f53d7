#!/bin/sh
# Regenerate the shipped demo models in models/ from the reference files in ../shared (see
# models/README.md for provenance and licenses), with the mmpipe binary built from this tree.
#
#   tools/make-models.sh [MMPIPE_BINARY] [SHARED_DIR]
#
# defaults: build/mmpipe and ../shared (relative to the repository root).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
mmpipe=${1:-$root/build/mmpipe}
shared=${2:-$root/../shared}
llm=$shared/real/llm
moe=$shared/real/goldens/stories260K_moe_hf
for f in "$mmpipe" "$llm/stories260K.bin" "$llm/tok512.bin" "$moe/config.json" "$moe/model.safetensors"; do
  [ -e "$f" ] || { echo "make-models: missing $f" >&2; exit 1; }
done
mkdir -p "$root/models"
# dense: karpathy's llama2.c checkpoint + its 512-piece tokenizer
"$mmpipe" convert --llama2c "$llm/stories260K.bin" --tokenizer "$llm/tok512.bin" \
  --name stories260K "$root/models/stories260K.gguf"
# MoE: the same weights upcycled to 4 identical experts (Mixtral layout, random router), with
# the same tokenizer (config.json's bos 1 / eos 2 are checked against it)
"$mmpipe" convert "$moe" "$root/models/stories260K-moe.gguf" --tokenizer "$llm/tok512.bin" \
  --name stories260K-moe
ls -l "$root/models/"*.gguf
