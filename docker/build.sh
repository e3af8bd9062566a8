#!/usr/bin/env bash
# The build stage of docker/Dockerfile, as a script, so CI runs exactly the same
# commands natively (no Docker engine on the build machines):
#   bash docker/build.sh OUT_DIR
# installs the build dependencies, builds the Release binary profile-guided
# (scripts/pgo-build.sh: an instrumented build, a training run on loopback,
# the build with its profile) and installs it as OUT_DIR/usr/local/bin/keygate.
set -euo pipefail
OUT=${1:?usage: docker/build.sh OUT_DIR}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${KEYGATE_IMAGE_BUILD_DIR:-$SRC/build-image}
bash "$SRC/scripts/install-deps.sh"
bash "$SRC/scripts/pgo-build.sh" "$BUILD" -DKEYGATE_WERROR=ON -DKEYGATE_TESTS=OFF -DKEYGATE_BENCH=OFF
install -D -m 0755 "$BUILD/keygate" "$OUT/usr/local/bin/keygate"
install -D -m 0644 "$SRC/config/keygate.yaml" "$OUT/etc/keygate/keygate.yaml"
"$OUT/usr/local/bin/keygate" version
