#!/usr/bin/env bash
# `make bench`: every number quoted in the README, reproducible.
#   1. Google Benchmark: auth decision (1M keys) and rate-limit decision.
#   2. `keygate serve` startup time and RSS with 1M and 10M keys in the store, and
#      the auth decision with 10M keys in the index.
#   3. wrk on loopback: direct vs keygate vs nginx/HAProxy doing the same job,
#      measured in one run by ../shared/bench/peers.sh (ratios, medians).
#   4. HTTPS listener throughput beside plain HTTP.
#   5. rate_limit.backend: redis beside local (a real redis-server on loopback).
#   6. Heap allocations per request, valid key and 401, access log off and on.
#   7. Forward auth: nginx auth_request -> keygate (the shipped deploy/forward-auth/
#      nginx.conf) vs nginx's own key map, measured by peers.sh as well.
#   8. Access log on (JSON, to a file) vs off: wrk, everything on one CPU, medians.
#   9. keygate vs nginx-auth, everything on one CPU (tests/bench/one_cpu.sh), with
#      wrk's request fields (peers.sh's) and with a browser's ten: req/s, CPU, and
#      where the CPU's time went (server, upstream, wrk; wrk's wake-ups).
# Settings: SKIP_PGO=1 (measure the ordinary build), SKIP_ALLOC=1, SKIP_ACCESS_LOG=1, LOG_ROUNDS (5), SKIP_MICRO=1, SKIP_STARTUP=1, SKIP_TLS=1, SKIP_REDIS=1, SKIP_WRK=1,
# SKIP_BROWSER=1,
# SKIP_FORWARD_AUTH=1, KEYS=1000000, SHARED_BENCH (default ../shared/bench), FA_CONFIGS,
# and the peers.sh variables (PIN, ROUNDS, DUR, CONFIGS); SKIP_10M=1, KEYS_BIG=10000000.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cmake --build "$ROOT/$BUILD" --target benchmarks >/dev/null
# The gateway measured is the image's: profile-guided (scripts/pgo-build.sh), in
# BUILD-pgo; the ordinary build's binary runs beside it where noted.
# SKIP_PGO=1 measures the ordinary build instead.
PLAIN_BIN="$ROOT/$BUILD/keygate"
if [[ -z ${SKIP_PGO:-} ]]; then
  echo "== the profile-guided build (scripts/pgo-build.sh ${BUILD}-pgo)"
  bash "$ROOT/scripts/pgo-build.sh" "$ROOT/${BUILD}-pgo" -DKEYGATE_TESTS=OFF -DKEYGATE_BENCH=OFF |
    grep -E '^pgo-train' || true
  BIN="$ROOT/${BUILD}-pgo/keygate"
else
  BIN=$PLAIN_BIN
fi
W=$(mktemp -d /tmp/keygate-bench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT

if [[ -z ${SKIP_MICRO:-} ]]; then
  echo "== micro-benchmarks (ns per decision)"
  "$ROOT/$BUILD/tests/bench_auth" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  "$ROOT/$BUILD/tests/bench_ratelimit" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  echo "== the head going upstream: wrk's fields, a browser's; 3000 Connection options over 2400 fields refused"
  "$ROOT/$BUILD/tests/bench_forward" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  echo "== valid-key path with credits off vs on (issue 17 target: within 5%)"
  "$ROOT/$BUILD/tests/bench_credits" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  echo "== rate-limit decision on Redis (local redis-server) beside local"
  "$ROOT/$BUILD/tests/bench_ratelimit_redis" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
fi

if [[ -z ${SKIP_ALLOC:-} ]]; then
  # Counted, not timed: the same on a busy machine. Needs nginx for the upstream
  # (../shared/bench's template); tests/integration/upstream.py is the fallback.
  echo "== heap allocations per request (whole process, LD_PRELOAD counter)"
  python3 "$ROOT/tests/bench/per_request.py" "$ROOT/$BUILD" --bin "$BIN" --mode alloc
  echo "== the same with a browser's ten request fields (access log off)"
  python3 "$ROOT/tests/bench/per_request.py" "$ROOT/$BUILD" --bin "$BIN" --mode alloc --headers browser --access-log off
  echo "== system calls per request (strace -c on every gateway thread, one request at a time per connection)"
  python3 "$ROOT/tests/bench/per_request.py" "$ROOT/$BUILD" --bin "$BIN" --mode syscalls --access-log off
  if [[ $BIN != "$PLAIN_BIN" ]]; then
    echo "== instructions per request (callgrind), the ordinary build, then the profile-guided one"
    python3 "$ROOT/tests/bench/per_request.py" "$ROOT/$BUILD" --bin "$PLAIN_BIN" --mode instr --access-log off
    python3 "$ROOT/tests/bench/per_request.py" "$ROOT/$BUILD" --bin "$BIN" --mode instr --access-log off
  fi
fi

if [[ -z ${SKIP_ACCESS_LOG:-} ]]; then
  # The same gateway (threads: 1) twice, access log off and on (JSON, stdout to
  # a file), both running; wrk, the upstream (nginx, a fixed 100-byte JSON) and
  # both gateways pinned on one CPU as peers.sh's PIN=one, so req/s is a CPU-cost
  # ratio. wrk -t1 -c50, runs alternating off/on, medians; CPU is the gateway's
  # own (utime+stime from /proc/<pid>/stat over the run, its log writer included).
  LOG_CPU=${CPU_B:-1} LOG_ROUNDS=${LOG_ROUNDS:-5}
  echo "== access log on (JSON to a file) vs off: valid key and 401, wrk -t1 -c50 on CPU $LOG_CPU" \
    "with upstream and gateway, ${DUR:-5} s x $LOG_ROUNDS alternating rounds, medians" \
    "(load average $(cut -d' ' -f1 /proc/loadavg))"
  free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  UP=$(free_port)
  declare -A LPORT=([off]=$(free_port) [on]=$(free_port)) LPID=() LAST=()
  mkdir -p "$W/tmp"
  TPL="${SHARED_BENCH:-$ROOT/../shared/bench}/templates/upstream.nginx.conf"
  if [[ -f $TPL ]]; then
    sed -e "s|@DIR@|$W|g; s|@UPSTREAM_PORT@|$UP|g" "$TPL" >"$W/log-up.conf"
    taskset -c "$LOG_CPU" nginx -p "$W" -e "$W/log-up.err" -c "$W/log-up.conf" & PIDS+=($!)
  else
    taskset -c "$LOG_CPU" python3 "$ROOT/tests/integration/upstream.py" "$UP" >/dev/null & PIDS+=($!)
  fi
  for mode in off on; do
    cat >"$W/log-$mode.yaml" <<YAML
listen: 127.0.0.1:${LPORT[$mode]}
threads: 1
upstream: {url: "http://127.0.0.1:$UP"}
store: {sqlite: $W/log-bench.db}
plans: {default: {rate: {requests: 1000000000, period: 1s}}}
logging: {access_log: $([[ $mode == on ]] && echo true || echo false), format: json, level: warn}
YAML
  done
  LKEY=$("$BIN" keys create --config "$W/log-off.yaml" --name logbench --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  taskset -c "$LOG_CPU" "$BIN" serve --config "$W/log-off.yaml" >/dev/null 2>"$W/log-off.err" &
  LPID[off]=$!; PIDS+=($!)
  taskset -c "$LOG_CPU" "$BIN" serve --config "$W/log-on.yaml" >"$W/access.log" 2>"$W/log-on.err" &
  LPID[on]=$!; PIDS+=($!)
  for _ in $(seq 200); do  # bounded: 10 s
    curl -fsS -o /dev/null "http://127.0.0.1:${LPORT[off]}/live" 2>/dev/null &&
      curl -fsS -o /dev/null "http://127.0.0.1:${LPORT[on]}/live" 2>/dev/null && break
    sleep 0.05
  done
  TCK=$(getconf CLK_TCK)
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  medn() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
  SENT_ON=0
  for path in valid 401; do
    key=$([[ $path == valid ]] && echo "$LKEY" || echo "bk_00000000000000000000000000000000")
    declare -A RPS=() CPU=() P99=()
    RATIOS=""
    for round in $(seq "$LOG_ROUNDS"); do
      # Pairs, their order alternating; each pair's on/off ratio cancels slow drifts.
      order=$( ((round % 2)) && echo "off on" || echo "on off")
      for mode in $order; do
        t0=$(cpu_ticks "${LPID[$mode]}")
        out=$(taskset -c "$LOG_CPU" wrk -t1 -c50 -d"${DUR:-5}"s --latency -H "X-Api-Key: $key" \
          "http://127.0.0.1:${LPORT[$mode]}/")
        t1=$(cpu_ticks "${LPID[$mode]}")
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        [[ $mode == on ]] && SENT_ON=$((SENT_ON + reqs))
        non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
        [[ $path == valid && -n $non2xx ]] && echo "warning: $mode round $round: $non2xx non-2xx answers"
        rps=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
        RPS[$mode]+="$rps "
        LAST[$mode]=$rps
        CPU[$mode]+="$(echo "scale=2; ($t1 - $t0) * 1000000 / $TCK / $reqs" | bc) "
        P99[$mode]+="$(awk '$1 == "99%" {v = $2; f = v ~ /us$/ ? 1 : v ~ /ms$/ ? 1000 : 1000000
          sub(/[um]?s$/, "", v); print int(v * f)}' <<<"$out") "
      done
      RATIOS+="$(echo "scale=3; ${LAST[on]} / ${LAST[off]}" | bc) "
    done
    for mode in off on; do
      printf '%-6s log %-3s %8s req/s  %6s CPU us/req  p99 %6s us  (req/s runs: %s)\n' "$path" \
        "$mode" "$(medn "${RPS[$mode]}")" "$(medn "${CPU[$mode]}")" "$(medn "${P99[$mode]}")" \
        "${RPS[$mode]}"
    done
    printf '%-6s on/off: %s x req/s (median of the rounds'"'"' ratios: %s), %s x CPU per request' \
      "$path" "$(medn "$RATIOS")" "$RATIOS" \
      "$(echo "scale=3; $(medn "${CPU[on]}") / $(medn "${CPU[off]}")" | bc)"
    printf ' (target: >= 0.9x req/s)\n'
    unset RPS CPU P99
  done
  for mode in off on; do kill "${LPID[$mode]}"; wait "${LPID[$mode]}" 2>/dev/null || true; done
  # Every answered request has its line (a run's last in-flight requests may add a few).
  printf 'access log: %d lines for %d answered requests\n' "$(wc -l <"$W/access.log")" "$SENT_ON"
fi

if [[ -z ${SKIP_STARTUP:-} ]]; then
  # `serve` with KEYS (1M) and KEYS_BIG (10M; SKIP_10M=1 skips it) keys in the
  # store: ready time (to the "listening" line), the index load it logs, the CPU
  # seconds spent by then (what a busy machine does not inflate), RSS, and RSS
  # over an empty store's per key. Then the auth decision with KEYS_BIG keys.
  sizes=(0 "${KEYS:-1000000}")
  [[ -z ${SKIP_10M:-} ]] && sizes+=("${KEYS_BIG:-10000000}")
  tick=$(getconf CLK_TCK)
  base_rss=0
  for keys in "${sizes[@]}"; do
    db="$W/big-$keys.db"
    seeded=$(date +%s)
    "$ROOT/$BUILD/tests/bench_seed" "$db" "$keys" >/dev/null
    printf '== serve with %d keys in the store (seeded in %d s)\n' "$keys" $(($(date +%s) - seeded))
    printf 'listen: 127.0.0.1:0\nstore: {sqlite: %s}\nlogging: {access_log: false}\n' "$db" >"$W/big.yaml"
    for run in 1 2 3; do
      rm -f "$W/big.log"  # a line left from the last run would end the wait at once
      start=$(date +%s.%N)
      "$BIN" serve --config "$W/big.yaml" 2>"$W/big.log" &
      pid=$!
      for _ in $(seq 3600); do grep -qs '"listening"' "$W/big.log" && break; sleep 0.05; done
      end=$(date +%s.%N)
      rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
      cpu=$(awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' /proc/$pid/stat)
      ready=$(grep -c '"listening"' "$W/big.log" || true)
      kill -TERM $pid; wait $pid || true
      [[ $ready == 1 ]] || { echo "run $run: not ready after 180 s"; continue; }
      loaded=$(grep -o '"ms":[0-9.]*' "$W/big.log" | head -1 | cut -d: -f2)
      if ((keys == 0)); then
        base_rss=$rss
        printf 'run %d: ready in %.2f s, RSS %d MB\n' "$run" "$(echo "$end - $start" | bc)" \
          $((rss / 1024))
      else
        printf 'run %d: ready in %.2f s (index load %s ms, %s s CPU), RSS %d MB, %d bytes a key\n' \
          "$run" "$(echo "$end - $start" | bc)" "$loaded" "$cpu" $((rss / 1024)) \
          $(((rss - base_rss) * 1024 / keys))
      fi
    done
    rm -f "$db" "$db"-*
  done
  if [[ -z ${SKIP_10M:-} ]]; then
    echo "== auth decision with ${KEYS_BIG:-10000000} keys in the index (hot: 1000 keys; cold: 100k)"
    KEYGATE_BENCH_KEYS=${KEYS_BIG:-10000000} "$ROOT/$BUILD/tests/bench_auth" \
      --benchmark_filter=ValidKey --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  fi
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

if [[ -z ${SKIP_REDIS:-} ]]; then
  # The same gateway (threads: 1) with its buckets local and on Redis, both
  # running, alternating wrk runs (-t1 -c50), medians. Every request is admitted
  # (limit 1e9/s), so every redis-backend decision is a round trip: the worst
  # case. CPU is keygate's own (utime+stime from /proc/<pid>/stat over the run).
  echo "== rate_limit.backend: redis vs local (wrk -t1 -c50, ${DUR:-5} s x 3 alternating rounds, medians)"
  UP=19720 RPORT=19721
  declare -A PORT=([local]=19722 [redis]=19723) ADMINP=([local]=19724 [redis]=19725) PID=()
  mkdir -p "$W/tmp"
  # Upstream: one nginx worker answering a fixed 100-byte JSON (as ../shared/bench's).
  cat >"$W/rl-up.conf" <<NGINX
worker_processes 1;
daemon off;
pid $W/rl-up.pid;
error_log $W/rl-up.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $W/tmp;
  proxy_temp_path $W/tmp;
  fastcgi_temp_path $W/tmp;
  uwsgi_temp_path $W/tmp;
  scgi_temp_path $W/tmp;
  server {
    listen 127.0.0.1:$UP backlog=4096;
    default_type application/json;
    location / { return 200 '{"ok":true,"service":"upstream","items":[1,2,3],"pad":"0123456789abcdef0123456789ab"}\n'; }
  }
}
NGINX
  nginx -p "$W" -e "$W/rl-up.err" -c "$W/rl-up.conf" & PIDS+=($!)
  redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no --dir "$W" \
    --logfile "$W/redis.log" & RPID=$!; PIDS+=($!)
  for mode in local redis; do
    {
      echo "listen: 127.0.0.1:${PORT[$mode]}"
      echo "threads: 1"
      echo "upstream: {url: http://127.0.0.1:$UP}"
      echo "store: {sqlite: $W/rl-bench.db}"
      echo "admin: {listen: 127.0.0.1:${ADMINP[$mode]}, token: bench-admin-token-0123456789}"
      echo "plans: {default: {rate: {requests: 1000000000, period: 1s}}}"
      echo "rate_limit: {backend: $mode, redis: {url: redis://127.0.0.1:$RPORT/0, timeout: 50ms}}"
      echo "logging: {access_log: false, level: warn}"
    } >"$W/rl-$mode.yaml"
  done
  RKEY=$("$BIN" keys create --config "$W/rl-local.yaml" --name rlbench --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  metric() { curl -fsS "http://127.0.0.1:${ADMINP[$1]}/metrics" | awk -v n="$2" '$1 == n {print $2}'; }
  evalsha() {
    local n
    n=$(redis-cli -p $RPORT INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\).*/\1/p')
    echo "${n:-0}"
  }
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  for mode in local redis; do
    "$BIN" serve --config "$W/rl-$mode.yaml" 2>"$W/rl-$mode.log" & PID[$mode]=$!; PIDS+=($!)
  done
  for _ in $(seq 200); do  # bounded: 10 s
    [[ $(metric redis keygate_redis_connections_up 2>/dev/null) == 1 ]] &&
      curl -fsS -o /dev/null "http://127.0.0.1:${PORT[local]}/live" 2>/dev/null && break
    sleep 0.05
  done
  [[ $(metric redis keygate_redis_connections_up) == 1 ]] || { echo "redis backend not connected"; cat "$W/rl-redis.log"; exit 1; }
  TCK=$(getconf CLK_TCK)
  declare -A RPS=() CPU=()
  TRIPS="" CALLS="" RCPU=""
  for round in 1 2 3; do
    for mode in local redis; do
      t0=$(cpu_ticks "${PID[$mode]}") r0=$(cpu_ticks $RPID)
      rt0=$(metric redis keygate_redis_round_trips_total) ev0=$(evalsha)
      out=$(wrk -t1 -c50 -d"${DUR:-5}"s -H "X-Api-Key: $RKEY" "http://127.0.0.1:${PORT[$mode]}/")
      t1=$(cpu_ticks "${PID[$mode]}") r1=$(cpu_ticks $RPID)
      rt1=$(metric redis keygate_redis_round_trips_total) ev1=$(evalsha)
      reqs=$(awk '/requests in/ {print $1}' <<<"$out")
      non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
      [[ -n $non2xx ]] && echo "warning: $mode round $round: $non2xx non-2xx answers"
      RPS[$mode]+="$(awk '/Requests\/sec/ {print int($2)}' <<<"$out") "
      CPU[$mode]+="$(echo "scale=2; ($t1 - $t0) * 1000000 / $TCK / $reqs" | bc) "
      if [[ $mode == redis ]]; then
        TRIPS+="$(echo "scale=3; ($rt1 - $rt0) / $reqs" | bc) "
        CALLS+="$(echo "scale=3; ($ev1 - $ev0) / $reqs" | bc) "
        RCPU+="$(echo "scale=2; ($r1 - $r0) * 1000000 / $TCK / $reqs" | bc) "
      fi
    done
  done
  medn() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n 2p; }
  lr=$(medn "${RPS[local]}") rr=$(medn "${RPS[redis]}")
  lc=$(medn "${CPU[local]}") rc=$(medn "${CPU[redis]}")
  printf '%-16s %8s req/s  %7s CPU us/req  (runs: %s| %s)\n' \
    "backend: local" "$lr" "$lc" "${RPS[local]}" "${CPU[local]}" \
    "backend: redis" "$rr" "$rc" "${RPS[redis]}" "${CPU[redis]}"
  printf 'redis/local: %s x req/s, %s x CPU per request (target >= 0.7x req/s)\n' \
    "$(echo "scale=3; $rr / $lr" | bc)" "$(echo "scale=3; $rc / $lc" | bc)"
  printf 'redis round trips per request: %s (keygate metric), %s (EVALSHA calls in INFO commandstats)\n' \
    "$(medn "$TRIPS")" "$(medn "$CALLS")"
  printf 'redis-server CPU per request: %s us (besides keygate'"'"'s)\n' "$(medn "$RCPU")"
  for mode in local redis; do kill "${PID[$mode]}"; wait "${PID[$mode]}" 2>/dev/null || true; done
fi

if [[ -z ${SKIP_FORWARD_AUTH:-} ]]; then
  FA_PEERS="${SHARED_BENCH:-$ROOT/../shared/bench}/peers.sh"
  if [[ ! -x $FA_PEERS ]]; then
    echo "== forward-auth comparison skipped: $FA_PEERS not found"
  else
    # "gateway" below is nginx (1 worker, auth_request) + keygate (threads: 1), both
    # on the proxy CPU; "nginx-auth" is nginx alone checking its key map.
    echo "== forward auth: nginx auth_request -> keygate vs nginx's own key map"
    KG_FA_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$W/fa.yaml" <<YAML
listen: "127.0.0.1:$KG_FA_PORT"
threads: 1
upstream: {url: "http://127.0.0.1:9"}
store: {sqlite: "$W/fa.db"}
forward_auth: {path: /_keygate/auth}
trusted_proxies: [127.0.0.1/32]
plans: {default: {rate: {requests: 1000000000, period: 1s}}}
logging: {access_log: false, level: warn}
YAML
    FA_KEY=$("$BIN" keys create --config "$W/fa.yaml" --name fabench --json |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    KG_BIN="$BIN" KG_FA_CONFIG="$W/fa.yaml" KG_FA_PORT="$KG_FA_PORT" KG_ROOT="$ROOT" \
      GATEWAY_CMD="$ROOT/tests/bench/forward_auth_gateway.sh" GATEWAY_KEY="$FA_KEY" \
      CONFIGS=${FA_CONFIGS:-"nginx-auth"} PIN=${PIN:-one} ROUNDS=${ROUNDS:-3} DUR=${DUR:-5} \
      "$FA_PEERS"
  fi
fi

if [[ -z ${SKIP_BROWSER:-} ]]; then
  for fields in wrk browser; do
    # wrk's fields: the ordinary build's binary too, in the same rounds.
    more=()
    [[ $fields == wrk && $BIN != "$PLAIN_BIN" ]] && more=("$PLAIN_BIN")
    echo "== keygate vs nginx-auth, everything on one CPU, $fields request fields (${BIN#"$ROOT/"} ${more[*]#"$ROOT/"})"
    FIELDS=$fields PEERS_DIR="${SHARED_BENCH:-$ROOT/../shared/bench}" "$ROOT/tests/bench/one_cpu.sh" "$BIN" "${more[@]}"
  done
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
    CONFIGS=${CONFIGS:-"nginx nginx-auth haproxy-auth nginx-401 haproxy-401"} \
    PIN=${PIN:-"one split"} ROUNDS=${ROUNDS:-3} \
    DUR=${DUR:-5} "$PEERS"
fi
