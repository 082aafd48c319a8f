#!/usr/bin/env bash
# Runs one fuzz target for a while over its corpora; the one command behind
# `make fuzz` and the short ctest runs (tests/fuzz/README.md).
#   tests/fuzz/run.sh BUILD_DIR TARGET SECONDS [libFuzzer options...]
# Corpora, in libFuzzer's order (the first one receives new inputs):
#   BUILD_DIR/tests/fuzz/corpus/TARGET   grows while fuzzing (not committed);
#                                        FUZZ_CORPUS=DIR puts DIR/TARGET there
#                                        instead, e.g. a corpus kept outside the
#                                        build folder across campaigns
#   BUILD_DIR/tests/fuzz/seeds/TARGET    generated from a real run (gen_seeds.py)
#   tests/fuzz/seeds/TARGET              small committed seeds
#   tests/fuzz/regressions/TARGET        every crash ever found, minimised
# A crash, leak, UB report or timeout exits non-zero and leaves the input in
# BUILD_DIR/tests/fuzz/artifacts/.
set -euo pipefail
if (($# < 3)); then
  echo "usage: $0 BUILD_DIR TARGET SECONDS [libFuzzer options...]" >&2
  exit 2
fi
build=$1 target=$2 seconds=$3
shift 3
src=$(cd "$(dirname "$0")" && pwd)
bin=$build/tests/fuzz
exe=$bin/fuzz_$target
if [[ ! -x $exe ]]; then
  echo "run.sh: no fuzz target $exe (configure with CC=clang -DML_FUZZ=ON and build it)" >&2
  exit 2
fi
corpus=${FUZZ_CORPUS:-$bin/corpus}/$target
mkdir -p "$corpus" "$bin/artifacts"
dirs=("$corpus")
for d in "$bin/seeds/$target" "$src/seeds/$target" "$src/regressions/$target"; do
  if [[ -d $d ]]; then dirs+=("$d"); fi
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec "$exe" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -print_final_stats=1 \
  -artifact_prefix="$bin/artifacts/$target-" "$@" "${dirs[@]}"
