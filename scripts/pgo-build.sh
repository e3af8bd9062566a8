#!/usr/bin/env bash
# The profile-guided build of `keygate` (the image's and `make bench`'s binary):
#   scripts/pgo-build.sh BUILD_DIR [CMAKE_ARGS...]
# builds an instrumented binary in BUILD_DIR (KEYGATE_PGO=generate), trains it
# on loopback traffic (scripts/pgo-train.py), and rebuilds it in the same
# directory with the profile (KEYGATE_PGO=use): the profile files sit beside
# the objects they describe, so both passes must share BUILD_DIR. g++ lays the
# hot path out from what the training ran (README "Benchmarks" has the gain).
set -euo pipefail
BUILD=${1:?usage: scripts/pgo-build.sh BUILD_DIR [CMAKE_ARGS...]}
shift
SRC=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKEYGATE_PGO=generate "$@"
cmake --build "$BUILD" --target keygate
find "$BUILD" -name '*.gcda' -delete  # a profile of older code would only mislead
python3 "$SRC/scripts/pgo-train.py" "$BUILD/keygate"
# (-fprofile-use is quiet about missing profiles: make sure the run wrote them.)
[[ -n $(find "$BUILD" -name 'proxy_session.cpp.gcda') ]] ||
  { echo "pgo-build: the training run wrote no profile" >&2; exit 1; }
cmake -S "$SRC" -B "$BUILD" -DKEYGATE_PGO=use
cmake --build "$BUILD" --target keygate
