#!/usr/bin/env bash
# Installs the Debian packages keygate needs to build, test and run.
# Idempotent: a no-op (no apt call at all) when every package is present.
# Usage: scripts/install-deps.sh [--runtime | --bench | --ci | --fuzz]
set -euo pipefail

build_pkgs=(cmake ninja-build g++ make libboost1.81-dev nlohmann-json3-dev libspdlog-dev
  libfmt-dev libyaml-cpp-dev libcli11-dev libsqlite3-dev libssl-dev libgtest-dev libgmock-dev
  libbenchmark-dev ccache mold python3 openssl curl
  python3-yaml  # test_docker parses the manifests, test_metrics the alert rules
  libpq-dev postgresql  # postgresql: the integration tests start a real server
  libboost-url1.81-dev libhiredis-dev redis-server  # redis-server: likewise
  systemd  # systemd-analyze verifies deploy/keygate.service
  nginx  # nginx: the real upstream of the security tests, and a forward-auth ingress
  caddy  # caddy (2.6, forward_auth): the other forward-auth ingress of the tests
  strace)  # strace: test_reliability counts the relay's read calls
runtime_pkgs=(libyaml-cpp0.7 libsqlite3-0 libssl3 libspdlog1.10 libfmt9 libpq5 ca-certificates curl
  libboost-url1.81.0 libhiredis0.14)
bench_pkgs=(wrk nginx haproxy)
ci_pkgs=(yamllint)
fuzz_pkgs=(clang-16 libclang-rt-16-dev)  # libFuzzer; clang 14 cannot compile std::expected

want=()
case "${1:-}" in
  --runtime) want=("${runtime_pkgs[@]}") ;;
  --bench) want=("${bench_pkgs[@]}") ;;
  --ci) want=("${ci_pkgs[@]}") ;;
  --fuzz) want=("${fuzz_pkgs[@]}") ;;
  *) want=("${build_pkgs[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >/dev/null
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# Packages such as nginx start a system service on install; the bench and tests start their own.
for s in nginx haproxy postgresql redis-server caddy; do
  if [[ " ${missing[*]} " == *" $s "* ]] && [[ -d /run/systemd/system ]]; then
    "${sudo[@]}" systemctl disable --now "$s" >/dev/null 2>&1 || true
  fi
done
