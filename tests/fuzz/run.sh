#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, their own build dir) and runs each for
# FUZZ_SECONDS (default 60) under ASan + UBSan, starting from its committed
# corpus; prints executions and crashes per target. Exit 1 if any target crashed:
# its input is kept in $FUZZ_BUILD/fuzz-crashes/<target>/ (add it to the corpus
# with the fix, see README.md).
#   FUZZ_SECONDS=30 FUZZ_TARGETS="config keys" bash tests/fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-build-fuzz}
cxx=${FUZZ_CXX:-clang++-16}

bash scripts/install-deps.sh --fuzz
if [[ ! -f $build/build.ninja ]]; then
  CXX=$cxx cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEYGATE_FUZZ=ON \
    >/dev/null
fi
cmake --build "$build" -j "${JOBS:-2}"

# Stack traces name functions when an llvm-symbolizer is installed (package llvm-NN).
llvm_bin=$(dirname "$(readlink -f "$(command -v "$cxx")")")
for s in "$llvm_bin/llvm-symbolizer" "$(command -v llvm-symbolizer || true)"; do
  if [[ -x $s ]]; then export ASAN_SYMBOLIZER_PATH=$s; break; fi
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
targets=${FUZZ_TARGETS:-$(cd "$build/tests/fuzz" && ls fuzz_* | sed 's/^fuzz_//')}

# One target: its log, crash inputs and "executions crashes corpus exit" in $work/<t>/.
fuzz_one() {
  local t=$1 rc=0 execs crashes corpus
  mkdir -p "$work/$t/new" "$work/$t/crashes"
  local args=("$work/$t/new" "tests/fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10
              -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$t/crashes/")
  [[ -f tests/fuzz/$t.dict ]] && args+=(-dict="tests/fuzz/$t.dict")
  "$build/tests/fuzz/fuzz_$t" "${args[@]}" >"$work/$t/log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log" | tail -1)
  [[ -n $execs ]] || execs=$(grep -o '^#[0-9]*' "$work/$t/log" | tail -1 | tr -d '#')
  crashes=$(find "$work/$t/crashes" -type f | wc -l)
  corpus=$(( $(find "tests/fuzz/corpus/$t" -type f | wc -l) + $(find "$work/$t/new" -type f | wc -l) ))
  echo "${execs:-?} $crashes $corpus $rc" >"$work/$t/result"
}

# FUZZ_JOBS targets at a time, one core each (CI: 2; a shared machine: 1).
for t in $targets; do
  while (( $(jobs -rp | wc -l) >= ${FUZZ_JOBS:-1} )); do wait -n || true; done
  fuzz_one "$t" &
done
wait

failed=0
printf '%-16s %12s %8s %10s\n' target executions crashes corpus
for t in $targets; do
  read -r execs crashes corpus rc <"$work/$t/result"
  printf '%-16s %12s %8s %10s\n' "$t" "$execs" "$crashes" "$corpus"
  if ((rc != 0 || crashes > 0)); then
    failed=1
    mkdir -p "$build/fuzz-crashes/$t"
    cp "$work/$t/crashes/"* "$build/fuzz-crashes/$t/" 2>/dev/null || true
    cp "$work/$t/log" "$build/fuzz-crashes/$t/log"
    echo "---- fuzz_$t failed (exit $rc); input and log in $build/fuzz-crashes/$t/:" >&2
    grep -v '^#[0-9]' "$work/$t/log" | tail -40 >&2
  fi
done
exit $failed
