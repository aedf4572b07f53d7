#!/usr/bin/env bash
# The main job: install dependencies, build mmpipe (Release), and run the demo on a model
# the repository ships. Usage: scripts/demo.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build-release mmpipe_cli
./build-release/mmpipe info --max-tensors 24 "${1:-tests/data/llama}"
