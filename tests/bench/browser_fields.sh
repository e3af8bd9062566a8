#!/usr/bin/env bash
# wrk with the fields a browser's fetch() sends (ten, ~560 bytes of head)
# instead of peers.sh's two: keygate against nginx doing the same job (the
# shared harness's nginx-auth template: key map, limit_req, key header
# stripped), valid key and unknown key (401). Everything on one CPU (peers.sh's
# PIN=one), so CPU µs a request of the server wrk talks to (from /proc) is the
# number to read; req/s is a cost ratio too. Rounds alternate the servers;
# medians are printed.
#
#   browser_fields.sh KEYGATE_BIN [MORE_KEYGATE_BINS...]
#
# More binaries (an older build, say) run beside the first, in the same rounds.
# ROUNDS (3), DUR (5 s), CONNS (50), CPU (1) as in peers.sh. Needs nginx and wrk
# (peers.sh installs them) and ../shared/bench's templates.
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 KEYGATE_BIN [MORE...]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench}
ROUNDS=${ROUNDS:-3} DUR=${DUR:-5} CONNS=${CONNS:-50} CPU=${CPU:-1}
for b in nginx wrk taskset; do
  command -v "$b" >/dev/null || { echo "browser_fields: $b not found (run peers.sh once as root)"; exit 0; }
done
[[ -d $PEERS_DIR/templates ]] || { echo "browser_fields: $PEERS_DIR/templates not found"; exit 0; }

W=$(mktemp -d /tmp/kg-browser.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$W/tmp"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UPSTREAM_PORT=$(port) NGINX_PORT=$(port)

"$PEERS_DIR/gen-keys.sh" "$W" 1000
GOOD=$(sed -n 500p "$W/keys.txt")
BAD=bk_00000000000000000000000000000000
fill() { # template port
  sed -e "s|@DIR@|$W|g; s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g; s|@PORT@|$2|g" \
    -e "s|@KEYS_NGINX@|$W/keys.nginx|g" "$PEERS_DIR/templates/$1" >"$W/$1"
}
listening() { # port pid
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "browser_fields: nothing listens on $1" >&2
  exit 1
}
start() { # port command... ; sets STARTED to its pid
  taskset -c "$CPU" "${@:2}" >>"$W/servers.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
  listening "$1" "$STARTED"
}
fill upstream.nginx.conf "$UPSTREAM_PORT"
fill nginx-auth.conf "$NGINX_PORT"
start "$UPSTREAM_PORT" nginx -p "$W" -e "$W/upstream.err" -c "$W/upstream.nginx.conf"
start "$NGINX_PORT" nginx -p "$W" -e "$W/nginx-auth.err" -c "$W/nginx-auth.conf"
NGINX_PID=$STARTED

declare -A PORT SERVER KEY
NAMES=()
add() { NAMES+=("$1"); PORT[$1]=$2 SERVER[$1]=$3 KEY[$1]=$4; }
add nginx-auth "$NGINX_PORT" "$NGINX_PID" "$GOOD"
add nginx-401 "$NGINX_PORT" "$NGINX_PID" "$BAD"
i=0
for bin in "$@"; do
  i=$((i + 1))
  p=$(port)
  tag=keygate
  [[ $# -eq 1 ]] || tag=keygate$i
  cat >"$W/$tag.yaml" <<YAML
listen: "127.0.0.1:$p"
threads: 1
upstream: {url: "http://127.0.0.1:$UPSTREAM_PORT"}
store: {sqlite: "$W/$tag.db"}
plans: {default: {rate: {requests: 1000000000, period: 1s}}}
logging: {access_log: false, level: warn}
YAML
  key=$("$bin" keys create --config "$W/$tag.yaml" --name bench --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  start "$p" "$bin" serve --config "$W/$tag.yaml"
  echo "$tag: $bin"
  add "$tag" "$p" "$STARTED" "$key"
  add "$tag-401" "$p" "$STARTED" "$BAD"
done

FIELDS=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
  -H "Accept: application/json, text/plain, */*" -H "Accept-Encoding: gzip, deflate, br"
  -H "Accept-Language: en-US,en;q=0.9" -H "Cache-Control: no-cache" -H "Connection: keep-alive"
  -H "Referer: https://app.example.com/dashboard" -H "Cookie: session=abcdef0123456789; theme=dark")
# CPU ticks of a server and its children (nginx's worker).
ticks() {
  local p sum=0
  for p in "$1" $(pgrep -P "$1" || true); do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$sum"
}
HZ=$(getconf CLK_TCK)
: >"$W/results"
for round in $(seq "$ROUNDS"); do
  # Rotate the order from round to round, as peers.sh does.
  n=${#NAMES[@]}
  for ((j = 0; j < n; j++)); do
    c=${NAMES[$(((j + round - 1) % n))]}
    url="http://127.0.0.1:${PORT[$c]}/"
    taskset -c "$CPU" wrk -t1 -c"$CONNS" -d1s "${FIELDS[@]}" -H "X-Api-Key: ${KEY[$c]}" "$url" >/dev/null
    t0=$(ticks "${SERVER[$c]}")
    out=$(taskset -c "$CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "${FIELDS[@]}" \
      -H "X-Api-Key: ${KEY[$c]}" "$url")
    t1=$(ticks "${SERVER[$c]}")
    echo "$out" | python3 -c '
import re, sys
c, t0, t1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = sys.stdin.read()
n = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
scale = {"us": 1, "ms": 1e3, "s": 1e6}[p99.group(2)]
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
bad = (n - int(non2xx.group(1)) if non2xx else n) if c.endswith("-401") else (int(non2xx.group(1)) if non2xx else 0)
print(c, rps, float(p99.group(1)) * scale, (t1 - t0) / hz * 1e6 / max(n, 1), bad)
' "$c" "$t0" "$t1" "$HZ" >>"$W/results"
  done
done
python3 - "$W/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    c, rps, p99, cpu, bad = line.split()
    r = rows.setdefault(c, {"rps": [], "p99": [], "cpu": [], "bad": 0})
    r["rps"].append(float(rps)); r["p99"].append(float(p99)); r["cpu"].append(float(cpu))
    r["bad"] += int(bad)
med = {c: {k: statistics.median(v) for k, v in r.items() if k != "bad"} for c, r in rows.items()}
print("wrk -t1 -c50, a browser's ten request fields, everything on one CPU; medians over rounds")
print(f"{'config':<14} {'req/s':>8} {'p99(us)':>8} {'cpu us/req':>10} {'x nginx':>8} {'cpu x nginx':>11} {'bad':>5}")
for c, m in med.items():
    ref = med["nginx-401" if c.endswith("-401") else "nginx-auth"]
    print(f"{c:<14} {m['rps']:8.0f} {m['p99']:8.0f} {m['cpu']:10.2f} {m['rps'] / ref['rps']:8.3f} "
          f"{m['cpu'] / ref['cpu']:11.3f} {rows[c]['bad']:5d}")
print("bad: a valid key not answered 2xx, or an unknown key answered 2xx/3xx")
PY
