#!/usr/bin/env bash
# The main job: install dependencies, build mmpipe (Release), and generate a story with
# stories260K, a real (tiny) Llama the repository ships in models/ (MIT; see models/README.md);
# then the same model through the stock `chat` pipeline (prompt.text -> backbone.generate).
# Usage: scripts/demo.sh ["prompt"] [extra mmpipe run options, e.g. --temp 0 -n 200]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build-release mmpipe_cli
prompt=${1:-"Once upon a time"}
[ $# -gt 0 ] && shift
echo "== mmpipe info models/stories260K-moe.gguf (a 4-expert MoE upcycling of it)" >&2
./build-release/mmpipe info --no-tensors models/stories260K-moe.gguf | sed -n '1,4p;/^tokenizer/p;/^totals/p' >&2
echo "== mmpipe run -m models/stories260K-moe.gguf -p \"$prompt\"" >&2
./build-release/mmpipe run -m models/stories260K-moe.gguf -p "$prompt" -n 200 --threads "$(nproc)" "$@"
echo >&2
echo "== mmpipe pipeline run chat --set model=models/stories260K-moe.gguf --set template=none --in text=\"$prompt\"" >&2
./build-release/mmpipe pipeline show chat | sed -n '/^stages/,/^$/p' | grep -E '^  [a-z]' >&2
exec ./build-release/mmpipe pipeline run chat --set model=models/stories260K-moe.gguf --set template=none --set n=100 \
  -t "$(nproc)" --in text="$prompt"
