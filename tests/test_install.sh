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

echo "== pkg-config: build and run the same programs"
export PKG_CONFIG_PATH="$(dirname "$pc")"
flags=$(pkg-config --cflags --libs mmpipe)
for ex in custom_stage pipeline_show; do
  # shellcheck disable=SC2086
  $cc -std=c11 -Wall -Wextra -Werror "$src/samples/examples/$ex.c" $flags -Wl,-rpath,"$libdir" -o "$tmp/$ex-pc"
done
"$tmp/custom_stage-pc" > "$tmp/out3.txt"
cmp "$tmp/out1.txt" "$tmp/out3.txt"
"$tmp/pipeline_show-pc" "$src/pipelines/qwen2-audio.pipe" > /dev/null
# the program really uses the installed shared library
if command -v ldd > /dev/null; then
  ldd "$tmp/custom_stage-pc" | grep -q "$prefix" || { echo "custom_stage-pc does not load the installed libmmpipe"; ldd "$tmp/custom_stage-pc"; exit 1; }
fi
echo "install test passed"
