#!/usr/bin/env bash
# Build and run every mmpipe test: a Release build and an AddressSanitizer+UBSan build, both
# with -Wall -Wextra -Werror, then a short libFuzzer smoke run of every fuzz target.
# Usage: scripts/test.sh [--no-asan] [--no-fuzz]   (FUZZ_SECONDS=30 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
asan=1; fuzz=1
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "usage: scripts/test.sh [--no-asan] [--no-fuzz]" >&2; exit 2 ;;
  esac
done
jobs=$(nproc)
summary=()

run_suite() {  # name builddir cmake-args...
  local name=$1 dir=$2; shift 2
  echo "=== $name build ($dir)"
  cmake -S . -B "$dir" -G Ninja -DMMP_WERROR=ON "$@" >/dev/null
  ninja -C "$dir" -j"$jobs"
  echo "=== $name tests"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 1200)
  summary+=("$name: ok")
}

run_suite release build-release -DCMAKE_BUILD_TYPE=Release
if [ $asan -eq 1 ]; then
  # detect_leaks: every error path must free what it took.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite asan+ubsan build-asan -DCMAKE_BUILD_TYPE=Debug -DMMP_SANITIZE=ON -DMMP_BENCH=OFF
fi
if [ $fuzz -eq 1 ] && [ -f scripts/fuzz-smoke.sh ]; then
  echo "=== fuzz smoke (${FUZZ_SECONDS:-30} s per target)"
  bash scripts/fuzz-smoke.sh build-fuzz "${FUZZ_SECONDS:-30}"
  summary+=("fuzz smoke: ok")
fi
printf '%s\n' "${summary[@]}"
