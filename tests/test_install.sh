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

# The model programs on the tiny test models of tests/data (random weights: the text is noise).
# Each one must give what the installed CLI gives when it runs the same stock pipeline on the
# same inputs (`mmpipe pipeline run NAME ...`), through every input path it shows.
d=$src/tests/data
cli=$prefix/bin/mmpipe
test -x "$cli" || { echo "no $cli installed"; exit 1; }
# a diffusers folder for txt2img from the tiny UNet, VAE and CLIP text encoder
sd=$tmp/sd-tiny
mkdir "$sd"
printf '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"]}\n' > "$sd/model_index.json"
ln -s "$d/gen/unet" "$sd/unet"
ln -s "$d/gen/vae" "$sd/vae"
ln -s "$d/vision/clip_text" "$sd/text_encoder"
ln -s "$d/sd/tokenizer" "$sd/tokenizer"
ln -s "$d/sd/scheduler" "$sd/scheduler"
llava=$d/mm/llava_mixtral
qaudio=$d/mm/qwen2_audio
question="What is in the picture?"
caption="Generate the caption in English:"
t2i_prompt="a lighthouse at dusk"
t2i_set="steps=4 width=32 height=40 seed=7"

echo "== reference outputs: the installed CLI on the same stock pipelines"
"$cli" pipeline run image-chat -q --set model="$llava" --set n=8 --in image="$llava/image.png" \
      --in text="<image>
$question" -o "$tmp/ref-chat" > /dev/null || { echo "mmpipe pipeline run image-chat failed"; exit 1; }
"$cli" pipeline run audio-chat-qwen2 -q --set model="$qaudio" --set n=8 --in audio="$qaudio/audio.wav" \
      --in text="<audio>$caption" -o "$tmp/ref-cap" > /dev/null || { echo "mmpipe pipeline run audio-chat-qwen2 failed"; exit 1; }
# shellcheck disable=SC2046,SC2086
"$cli" pipeline run txt2img -q --set model="$sd" $(printf -- '--set %s ' $t2i_set) --in prompt="$t2i_prompt" \
      -o "$tmp/ref-t2i" > /dev/null || { echo "mmpipe pipeline run txt2img failed"; exit 1; }
{ printf 'answer: '; cat "$tmp/ref-chat/text.txt"; echo; } > "$tmp/want-chat.txt"
{ printf 'caption: '; cat "$tmp/ref-cap/text.txt"; echo; } > "$tmp/want-cap.txt"

# pngcheck A.png W H [B.png]: A is a W x H PNG whose "prompt" text is $t2i_prompt, and has B's
# pixels (built against the installed library like the examples)
cat > "$tmp/pngcheck.c" <<'CEOF'
#include <mmpipe/mmpipe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    mmp_image *a = mmp_image_load(argv[1], 0), *b = argc > 4 ? mmp_image_load(argv[4], 0) : NULL;
    if (!a || (argc > 4 && !b)) { fprintf(stderr, "pngcheck: %s\n", mmp_last_error()); return 1; }
    if (a->width != atoi(argv[2]) || a->height != atoi(argv[3])) {
        fprintf(stderr, "pngcheck: %s is %dx%d, want %sx%s\n", argv[1], (int)a->width, (int)a->height, argv[2], argv[3]);
        return 1;
    }
    if (b && (b->width != a->width || b->height != a->height || memcmp(a->data, b->data, (size_t)3 * a->width * a->height))) {
        fprintf(stderr, "pngcheck: %s and %s have other pixels\n", argv[1], argv[4]);
        return 1;
    }
    FILE *f = fopen(argv[1], "rb");
    static unsigned char buf[1 << 20];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    char *t = mmp_png_get_text(buf, n, "prompt");
    printf("%s: %dx%d, prompt '%s'\n", argv[1], (int)a->width, (int)a->height, t ? t : "(none)");
    free(t);
    mmp_image_free(a);
    mmp_image_free(b);
    return 0;
}
CEOF

run_models() {  # $1: directory with the programs, $2: suffix of their names
  x=$1; s=$2
  # image chat: from the file and from RGB bytes, the CLI's answer
  "$x/image_chat$s" "$llava" "$llava/image.png" "$question" 8 > "$tmp/chat$s.txt"
  "$x/image_chat$s" "$llava" "$llava/image.png" "$question" 8 --rgb > "$tmp/chat-rgb$s.txt"
  grep -q '(from RGB bytes)' "$tmp/chat-rgb$s.txt"
  for f in chat chat-rgb; do
    sed '1d;$d' "$tmp/$f$s.txt" > "$tmp/got.txt"
    cmp "$tmp/got.txt" "$tmp/want-chat.txt" || { echo "image_chat$s ($f) answers otherwise than mmpipe pipeline run image-chat:"; cat "$tmp/$f$s.txt" "$tmp/want-chat.txt"; exit 1; }
    tail -n 1 "$tmp/$f$s.txt" | grep -Eqx '\[[0-9]+ tokens\]'
  done
  # audio caption: from the file and from PCM samples, the CLI's caption
  "$x/audio_caption$s" "$qaudio" "$qaudio/audio.wav" "$caption" 8 > "$tmp/cap$s.txt"
  "$x/audio_caption$s" "$qaudio" "$qaudio/audio.wav" "$caption" 8 --pcm > "$tmp/cap-pcm$s.txt"
  for f in cap cap-pcm; do
    sed '1d;$d' "$tmp/$f$s.txt" > "$tmp/got.txt"
    cmp "$tmp/got.txt" "$tmp/want-cap.txt" || { echo "audio_caption$s ($f) captions otherwise than mmpipe pipeline run audio-chat-qwen2:"; cat "$tmp/$f$s.txt" "$tmp/want-cap.txt"; exit 1; }
  done
  # txt2img: a 32x40 PNG with the CLI's pixels and the prompt recorded; 4 steps reported
  # shellcheck disable=SC2086
  "$x/txt2img$s" "$sd" "$t2i_prompt" "$tmp/t2i$s.png" $t2i_set > /dev/null 2> "$tmp/t2i$s.err"
  grep -q 'steps 4/4' "$tmp/t2i$s.err"
  "$tmp/pngcheck" "$tmp/t2i$s.png" 32 40 "$tmp/ref-t2i/image.png" | grep -Fq "prompt '$t2i_prompt'"
  # any-to-any: a 32x32 picture from the forced signal tokens
  "$x/anytoany$s" "$d/pipe/nextgpt_e2e/llm" "$d/proj/nextgpt_e2e/output_projector/model.safetensors" "$d/gen/unet" "$d/gen/vae" \
    "$tmp/a2a$s.png" "ids:1,108,107,111,109,121,13,171,25,153" --signal 252,253,254,255 --heads 4 --size 32 --image --max 6 > "$tmp/a2a$s.txt"
  grep -q '^image: .*32x32' "$tmp/a2a$s.txt"
  "$tmp/pngcheck" "$tmp/a2a$s.png" 32 32 > /dev/null
  # two threads, two pipelines on one store: both give the one-thread answer
  "$x/threads$s" "$llava" "$llava/image.png" "$question" 8 > "$tmp/threads$s.txt"
  grep -qx 'same answer: yes' "$tmp/threads$s.txt"
  { printf 'thread 0: '; cat "$tmp/ref-chat/text.txt"; echo; printf 'thread 1: '; cat "$tmp/ref-chat/text.txt"; echo; } > "$tmp/want-threads.txt"
  head -n 2 "$tmp/threads$s.txt" | cmp - "$tmp/want-threads.txt" || { echo "threads$s answers otherwise than image-chat:"; cat "$tmp/threads$s.txt"; exit 1; }
}
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
$cc -std=c11 -Wall -Wextra -Werror "$tmp/pngcheck.c" $(pkg-config --cflags --libs mmpipe) -Wl,-rpath,"$libdir" -o "$tmp/pngcheck"
run_models "$tmp/build-cmake" ""

echo "== pkg-config: build and run the same programs"
flags=$(pkg-config --cflags --libs mmpipe)
for ex in custom_stage pipeline_show image_chat audio_caption txt2img anytoany threads; do
  # shellcheck disable=SC2086
  $cc -std=c11 -Wall -Wextra -Werror -pthread "$src/samples/examples/$ex.c" $flags -Wl,-rpath,"$libdir" -o "$tmp/$ex-pc"
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
