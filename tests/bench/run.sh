#!/usr/bin/env bash
# `make bench`: every number quoted in the README, reproducible.
#   1. Google Benchmark: auth decision (1M keys) and rate-limit decision.
#   2. `keygate serve` startup time and RSS with 1M keys in the store.
#   3. wrk on loopback: direct vs keygate vs nginx/HAProxy doing the same job,
#      measured in one run by ../shared/bench/peers.sh (ratios, medians).
#   4. HTTPS listener throughput beside plain HTTP.
# Settings: SKIP_MICRO=1, SKIP_STARTUP=1, SKIP_TLS=1, SKIP_WRK=1, KEYS=1000000, and the
# peers.sh variables (PIN, ROUNDS, DUR, CONFIGS).
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cmake --build "$ROOT/$BUILD" --target benchmarks >/dev/null
BIN="$ROOT/$BUILD/keygate"
W=$(mktemp -d /tmp/keygate-bench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT

if [[ -z ${SKIP_MICRO:-} ]]; then
  echo "== micro-benchmarks (ns per decision)"
  "$ROOT/$BUILD/tests/bench_auth" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  "$ROOT/$BUILD/tests/bench_ratelimit" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  echo "== rate-limit decision on Redis (local redis-server) beside local"
  "$ROOT/$BUILD/tests/bench_ratelimit_redis" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
fi

if [[ -z ${SKIP_STARTUP:-} ]]; then
  KEYS=${KEYS:-1000000}
  echo "== serve with $KEYS keys in the store"
  "$ROOT/$BUILD/tests/bench_seed" "$W/big.db" "$KEYS"
  cat >"$W/big.yaml" <<YAML
listen: 127.0.0.1:0
store: {sqlite: $W/big.db}
logging: {access_log: false}
YAML
  for run in 1 2 3; do
    start=$(date +%s.%N)
    "$BIN" serve --config "$W/big.yaml" 2>"$W/big.log" &
    pid=$!
    for _ in $(seq 600); do grep -q '"listening"' "$W/big.log" && break; sleep 0.05; done
    end=$(date +%s.%N)
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    kill -TERM $pid; wait $pid || true
    loaded=$(grep -o '"ms":[0-9.]*' "$W/big.log" | head -1 | cut -d: -f2)
    printf 'run %d: ready in %.2f s (index load %s ms), RSS %d MB\n' "$run" \
      "$(echo "$end - $start" | bc)" "$loaded" $((rss / 1024))
  done
fi

if [[ -z ${SKIP_TLS:-} ]]; then
  # HTTPS listener beside plain HTTP: same gateway config, same upstream (an nginx
  # returning a fixed 100-byte JSON), wrk -t1 -c50, alternating runs, medians.
  echo "== HTTPS listener vs plain HTTP (keep-alive; handshakes amortised)"
  TPL="$ROOT/../shared/bench/templates/upstream.nginx.conf"
  UP=19710 PLAIN=19711 TLSP=19712
  mkdir -p "$W/tmp"
  if [[ -f $TPL ]]; then
    sed -e "s|@DIR@|$W|g; s|@UPSTREAM_PORT@|$UP|g" "$TPL" >"$W/up.conf"
    nginx -p "$W" -e "$W/up.err" -c "$W/up.conf" & PIDS+=($!)
  else
    python3 "$ROOT/tests/integration/upstream.py" $UP >/dev/null & PIDS+=($!)
  fi
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -keyout "$W/tls.key" -out "$W/tls.pem" -subj /CN=localhost 2>/dev/null
  for mode in plain tls; do
    port=$([[ $mode == tls ]] && echo $TLSP || echo $PLAIN)
    {
      echo "listen: 127.0.0.1:$port"
      echo "threads: 1"
      echo "upstream: {url: http://127.0.0.1:$UP}"
      echo "store: {sqlite: $W/tls-bench.db}"
      echo "plans: {default: {rate: {requests: 1000000000, period: 1s}}}"
      echo "logging: {access_log: false, level: warn}"
      [[ $mode == tls ]] && echo "tls: {cert: $W/tls.pem, key: $W/tls.key}"
    } >"$W/$mode.yaml"
  done
  TKEY=$("$BIN" keys create --config "$W/plain.yaml" --name tlsbench --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  for mode in plain tls; do "$BIN" serve --config "$W/$mode.yaml" 2>/dev/null & PIDS+=($!); done
  sleep 1
  declare -A RPS=([plain]="" [tls]="")
  for round in 1 2 3; do
    for mode in plain tls; do
      url=$([[ $mode == tls ]] && echo "https://127.0.0.1:$TLSP/" || echo "http://127.0.0.1:$PLAIN/")
      r=$(wrk -t1 -c50 -d${DUR:-5}s -H "X-Api-Key: $TKEY" "$url" | awk '/Requests\/sec/ {print int($2)}')
      RPS[$mode]+="$r "
    done
  done
  med() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n 2p; }
  p=$(med "${RPS[plain]}") t=$(med "${RPS[tls]}")
  printf '%-14s %8s req/s (runs: %s)\n%-14s %8s req/s (runs: %s)\nhttps/http     %8s\n' \
    "plain HTTP" "$p" "${RPS[plain]}" "HTTPS" "$t" "${RPS[tls]}" "$(echo "scale=3; $t / $p" | bc)"
fi

if [[ -z ${SKIP_WRK:-} ]]; then
  PEERS="$ROOT/../shared/bench/peers.sh"
  if [[ ! -x $PEERS ]]; then
    echo "== wrk comparison skipped: $PEERS not found"
    exit 0
  fi
  echo "== wrk: direct vs keygate vs peers (one run; see ../shared/bench/README.md)"
  cat >"$W/gw.yaml" <<'YAML'
listen: "127.0.0.1:${GATEWAY_PORT:-0}"
threads: 1
upstream: {url: "http://127.0.0.1:${UPSTREAM_PORT:-9}"}
store: {sqlite: "${KG_BENCH_DB}"}
plans: {default: {rate: {requests: 1000000000, period: 1s}}}
logging: {access_log: false, level: warn}
YAML
  export KG_BENCH_DB="$W/gw.db"
  KEY=$("$BIN" keys create --config "$W/gw.yaml" --name bench --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  GATEWAY_CMD="$BIN serve --config $W/gw.yaml" GATEWAY_KEY="$KEY" \
    CONFIGS=${CONFIGS:-"nginx nginx-auth haproxy-auth"} PIN=${PIN:-one} ROUNDS=${ROUNDS:-3} \
    DUR=${DUR:-5} "$PEERS"
fi
