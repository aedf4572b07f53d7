#!/usr/bin/env bash
# Fuzz smoke run: build the libFuzzer targets (fuzz/fuzz_*.c) with clang and run each one for
# a short time from a copy of its seed corpus (fuzz/corpus/<target>/).
#
#   scripts/fuzz-smoke.sh [BUILD_DIR] [SECONDS]      (defaults: build-fuzz, 30 s per target)
#
# The library itself is built with ASan + UBSan and libFuzzer coverage
# (-fsanitize=fuzzer-no-link), so the readers are what gets explored. Exits non-zero if a
# target crashes, leaks or times out; the reproducer is left in BUILD_DIR/fuzz-artifacts/
# (replay: BUILD_DIR/fuzz/<target> <file>).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-fuzz}
SECS=${2:-${MMP_FUZZ_SECONDS:-30}}
JOBS=${MMP_JOBS:-2}
# A fixed seed makes the CI smoke run reproducible: a slower machine explores a prefix of the
# same mutation sequence. Set MMP_FUZZ_SEED=0 for a random seed in longer local runs.
SEED=${MMP_FUZZ_SEED:-1}

command -v clang >/dev/null || { echo "fuzz-smoke: clang not found: sudo apt-get install clang" >&2; exit 2; }

CC=clang cmake -S "$ROOT" -B "$BUILD" -G Ninja \
  -DMMP_FUZZ=ON -DMMP_TESTS=OFF -DMMP_BENCH=OFF -DMMP_SANITIZE=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null

targets=()
for src in "$ROOT"/fuzz/fuzz_*.c; do
  targets+=("$(basename "$src" .c)")
done
ninja -C "$BUILD" -j"$JOBS" "${targets[@]}"

mkdir -p "$BUILD/fuzz-artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  corpus="$work/$t"
  mkdir -p "$corpus"
  if [ -d "$ROOT/fuzz/corpus/$t" ]; then cp -r "$ROOT/fuzz/corpus/$t/." "$corpus/"; fi
  echo "== $t: ${SECS}s from $(ls "$corpus" | wc -l) seeds"
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$BUILD/fuzz/$t" "$corpus" -max_total_time="$SECS" -seed="$SEED" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD/fuzz-artifacts/$t-" \
       >"$BUILD/fuzz-artifacts/$t.log" 2>&1; then
    echo "!! $t FAILED (log: $BUILD/fuzz-artifacts/$t.log)"
    grep -E "ERROR|SUMMARY|Test unit written" "$BUILD/fuzz-artifacts/$t.log" | head -20 || true
    failed+=("$t")
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$BUILD/fuzz-artifacts/$t.log" | tr '\n' ' '
    echo
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: ${#failed[@]} target(s) failed: ${failed[*]}"
  exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets ran ${SECS}s each without a crash"
