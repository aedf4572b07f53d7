#!/bin/sh
# Install mmpipe to a temporary prefix, then build the example programs of samples/examples
# against the INSTALLED library twice -- with CMake's find_package(mmpipe) and with
# pkg-config -- and run them. Checks that the installed headers are self-contained, that
# mmpipeConfig.cmake / mmpipe.pc point at the right places, and that the examples use only the
# public API.
#   tests/test_install.sh BUILD_DIR SOURCE_DIR
set -eu
build=${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mmpipe-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cc=${CC:-cc}

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
for f in include/mmpipe/mmpipe.h include/mmpipe/pipeline.h include/mmpipe/version.h; do
  test -f "$prefix/$f" || { echo "missing $prefix/$f"; exit 1; }
done
pc=$(find "$prefix" -name mmpipe.pc | head -n 1)
cfg=$(find "$prefix" -name mmpipeConfig.cmake | head -n 1)
test -n "$pc" || { echo "no mmpipe.pc installed"; exit 1; }
test -n "$cfg" || { echo "no mmpipeConfig.cmake installed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")

echo "== every public header compiles on its own (C11, -Wall -Wextra -Werror)"
for h in "$prefix"/include/mmpipe/*.h; do
  printf '#include <mmpipe/%s>\nint main(void) { return 0; }\n' "$(basename "$h")" > "$tmp/h.c"
  $cc -std=c11 -Wall -Wextra -Werror -I"$prefix/include" -c "$tmp/h.c" -o "$tmp/h.o" ||
    { echo "header $h does not compile on its own"; exit 1; }
done

echo "== find_package(mmpipe): configure, build and run samples/examples"
cmake -S "$src/samples/examples" -B "$tmp/build-cmake" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_BUILD_TYPE=Release > "$tmp/cmake.log" || { cat "$tmp/cmake.log"; exit 1; }
cmake --build "$tmp/build-cmake" > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
"$tmp/build-cmake/custom_stage" > "$tmp/out1.txt"
grep -q 'hidden\[\*,4\] f32' "$tmp/out1.txt"
"$tmp/build-cmake/pipeline_show" "$src/pipelines/nextgpt-image.pipe" > "$tmp/out2.txt"
grep -q 'llm.hidden\[-4:\]' "$tmp/out2.txt"
# a bad file fails with a message
printf 'stage a encoder.nope\n' > "$tmp/bad.pipe"
if "$tmp/build-cmake/pipeline_show" "$tmp/bad.pipe" > /dev/null 2> "$tmp/err.txt"; then echo "bad.pipe was accepted"; exit 1; fi
grep -q "unknown stage kind 'encoder.nope'" "$tmp/err.txt"

# the model programs on the tiny test models of tests/data (random weights: the text is noise,
# what is checked is that each one runs end to end and writes what it says)
d=$src/tests/data
run_models() {  # $1: directory with the programs, $2: suffix of their names
  "$1/image_chat$2" "$d/mm/llava_mixtral" "$d/mm/llava_mixtral/image.png" "What is in the picture?" 8 > "$tmp/chat$2.txt"
  grep -q '^answer: ' "$tmp/chat$2.txt"
  grep -q '(16 image rows)' "$tmp/chat$2.txt"
  "$1/audio_caption$2" "$d/mm/qwen2_audio" "$d/mm/qwen2_audio/audio.wav" "Generate the caption in English:" 8 > "$tmp/cap$2.txt"
  grep -q '^caption: ' "$tmp/cap$2.txt"
  "$1/txt2img$2" "$d/gen/unet" "$d/gen/vae" 6 "$tmp/t2i$2.png" cond "$d/gen/txt2img_loop/io.safetensors" cond uncond > /dev/null
  "$1/txt2img$2" "$d/gen/unet" "$d/gen/vae" 3 "$tmp/clip$2.png" clip "$d/vision/clip_text" 318,5,6,7,319 318,319,319,319,319 > /dev/null
  "$1/anytoany$2" "$d/pipe/nextgpt_e2e/llm" "$d/proj/nextgpt_e2e/output_projector/model.safetensors" "$d/gen/unet" "$d/gen/vae" \
    "$tmp/a2a$2.png" "ids:1,108,107,111,109,121,13,171,25,153" --signal 252,253,254,255 --heads 4 --size 32 --image --max 6 > "$tmp/a2a$2.txt"
  grep -q '^image: .*32x32' "$tmp/a2a$2.txt"
  for f in t2i clip a2a; do
    head -c 8 "$tmp/$f$2.png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' || { echo "$f$2.png is not a PNG"; exit 1; }
  done
}
run_models "$tmp/build-cmake" ""

echo "== pkg-config: build and run the same programs"
export PKG_CONFIG_PATH="$(dirname "$pc")"
flags=$(pkg-config --cflags --libs mmpipe)
for ex in custom_stage pipeline_show image_chat audio_caption txt2img anytoany; do
  # shellcheck disable=SC2086
  $cc -std=c11 -Wall -Wextra -Werror "$src/samples/examples/$ex.c" $flags -Wl,-rpath,"$libdir" -o "$tmp/$ex-pc"
done
"$tmp/custom_stage-pc" > "$tmp/out3.txt"
cmp "$tmp/out1.txt" "$tmp/out3.txt"
"$tmp/pipeline_show-pc" "$src/pipelines/qwen2-audio.pipe" > /dev/null
run_models "$tmp" "-pc"
# both builds compute the same image from the same inputs
cmp "$tmp/a2a.png" "$tmp/a2a-pc.png"
cmp "$tmp/t2i.png" "$tmp/t2i-pc.png"
# the program really uses the installed shared library
if command -v ldd > /dev/null; then
  ldd "$tmp/custom_stage-pc" | grep -q "$prefix" || { echo "custom_stage-pc does not load the installed libmmpipe"; ldd "$tmp/custom_stage-pc"; exit 1; }
fi
echo "install test passed"
