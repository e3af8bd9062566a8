#!/usr/bin/env bash
# keygate against nginx doing the same job (the shared harness's nginx-auth
# template: key map, limit_req, key header stripped), valid key and unknown key
# (401), with wrk, the upstream and the server all on one CPU (peers.sh's
# PIN=one), so req/s is a cost ratio. Rounds alternate the servers; medians are
# printed. Two tables:
#   1. req/s, p99 and CPU µs a request of the server wrk talks to (from /proc);
#   2. where the one CPU's time went, a request: that server, the upstream, wrk,
#      idle (their sum is 1 / req/s; the kernel's work for each, softirqs
#      included, is in its column); wrk's wake-ups (its voluntary context
#      switches) and the server's preemptions (its involuntary ones). So the
#      table says how much of a req/s gap is the server's own CPU and how much
#      is what it makes the others do.
#
#   one_cpu.sh KEYGATE_BIN [MORE_KEYGATE_BINS...]
#
# FIELDS: browser (default: the ten fields a browser's fetch() sends, ~560
# bytes of head) or wrk (wrk's own two and the key, as peers.sh sends).
# More binaries (an older build, say) run beside the first, in the same rounds.
# ROUNDS (3), DUR (5 s), CONNS (50), CPU (1) as in peers.sh. Needs nginx and wrk
# (peers.sh installs them) and ../shared/bench's templates.
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 KEYGATE_BIN [MORE...]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench}
ROUNDS=${ROUNDS:-3} DUR=${DUR:-5} CONNS=${CONNS:-50} CPU=${CPU:-1} FIELDS=${FIELDS:-browser}
for b in nginx wrk taskset; do
  command -v "$b" >/dev/null || { echo "one_cpu: $b not found (run peers.sh once as root)"; exit 0; }
done
[[ -d $PEERS_DIR/templates ]] || { echo "one_cpu: $PEERS_DIR/templates not found"; exit 0; }

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
  echo "one_cpu: nothing listens on $1" >&2
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
UPSTREAM_PID=$STARTED
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

case $FIELDS in
  browser)
    HEAD=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
      -H "Accept: application/json, text/plain, */*" -H "Accept-Encoding: gzip, deflate, br"
      -H "Accept-Language: en-US,en;q=0.9" -H "Cache-Control: no-cache" -H "Connection: keep-alive"
      -H "Referer: https://app.example.com/dashboard" -H "Cookie: session=abcdef0123456789; theme=dark") ;;
  wrk) HEAD=() ;;
  *) echo "one_cpu: FIELDS is browser or wrk, not $FIELDS" >&2; exit 2 ;;
esac
# A server and its children (nginx's worker): CPU ticks; involuntary context
# switches of all their threads.
family() { echo "$1"; pgrep -P "$1" || true; }
ticks() {
  local p sum=0
  for p in $(family "$1"); do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$sum"
}
preemptions() {
  local p
  for p in $(family "$1"); do cat /proc/"$p"/task/*/status; done |
    awk '/^nonvoluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}
# The CPU's idle (idle + iowait) ticks.
idle_ticks() { awk -v c="cpu$CPU" '$1 == c { print $5 + $6 }' /proc/stat; }
# wrk, followed by a line with its CPU seconds and context switches (getrusage).
run_wrk() {
  python3 -c '
import resource, subprocess, sys
out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True, check=True).stdout
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(out + f"\nRUSAGE {r.ru_utime + r.ru_stime} {r.ru_nvcsw}")' taskset -c "$CPU" wrk "$@"
}
HZ=$(getconf CLK_TCK)
: >"$W/results"
for round in $(seq "$ROUNDS"); do
  # Rotate the order from round to round, as peers.sh does.
  n=${#NAMES[@]}
  for ((j = 0; j < n; j++)); do
    c=${NAMES[$(((j + round - 1) % n))]}
    url="http://127.0.0.1:${PORT[$c]}/"
    taskset -c "$CPU" wrk -t1 -c"$CONNS" -d1s "${HEAD[@]}" -H "X-Api-Key: ${KEY[$c]}" "$url" >/dev/null
    t0=$(ticks "${SERVER[$c]}") u0=$(ticks "$UPSTREAM_PID") s0=$(preemptions "${SERVER[$c]}")
    d0=$(idle_ticks)
    out=$(run_wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "${HEAD[@]}" -H "X-Api-Key: ${KEY[$c]}" "$url")
    d1=$(idle_ticks)
    t1=$(ticks "${SERVER[$c]}") u1=$(ticks "$UPSTREAM_PID") s1=$(preemptions "${SERVER[$c]}")
    echo "$out" | python3 -c '
import re, sys
c, hz = sys.argv[1], int(sys.argv[2])
server, upstream, idle, preempted = (int(v) for v in sys.argv[3:])
out = sys.stdin.read()
n = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
scale = {"us": 1, "ms": 1e3, "s": 1e6}[p99.group(2)]
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
bad = (n - int(non2xx.group(1)) if non2xx else n) if c.endswith("-401") else (int(non2xx.group(1)) if non2xx else 0)
wrk_cpu, wrk_wakeups = re.search(r"RUSAGE ([\d.]+) (\d+)", out).groups()
us = lambda t: t / hz * 1e6 / max(n, 1)
print(c, rps, float(p99.group(1)) * scale, us(server), bad, us(upstream),
      float(wrk_cpu) * 1e6 / max(n, 1), us(idle), int(wrk_wakeups) / max(n, 1),
      preempted / max(n, 1))
' "$c" "$HZ" $((t1 - t0)) $((u1 - u0)) $((d1 - d0)) $((s1 - s0)) >>"$W/results"
  done
done
python3 - "$W/results" "$FIELDS" <<'PY'
import statistics, sys
keys = ["rps", "p99", "cpu", "bad", "upstream", "wrk", "idle", "wakeups", "preempted"]
rows = {}
for line in open(sys.argv[1]):
    c, *vals = line.split()
    r = rows.setdefault(c, {k: [] for k in keys})
    for k, v in zip(keys, vals):
        r[k].append(float(v))
med = {c: {k: statistics.median(v) for k, v in r.items()} for c, r in rows.items()}
fields = {"browser": "a browser's ten request fields", "wrk": "wrk's request fields (as peers.sh)"}
print(f"wrk -t1 -c50, {fields[sys.argv[2]]}, everything on one CPU; medians over rounds")
print(f"{'config':<14} {'req/s':>8} {'p99(us)':>8} {'cpu us/req':>10} {'x nginx':>8} {'cpu x nginx':>11} {'bad':>5}")
for c, m in med.items():
    ref = med["nginx-401" if c.endswith("-401") else "nginx-auth"]
    print(f"{c:<14} {m['rps']:8.0f} {m['p99']:8.0f} {m['cpu']:10.2f} {m['rps'] / ref['rps']:8.3f} "
          f"{m['cpu'] / ref['cpu']:11.3f} {int(sum(rows[c]['bad'])):5d}")
print("bad: a valid key not answered 2xx, or an unknown key answered 2xx/3xx")
print()
print("the CPU's time a request, us (their sum is 1e6 / req/s, give or take the clock's ticks)")
print(f"{'config':<14} {'server':>7} {'upstrm':>7} {'wrk':>7} {'idle':>7} {'1e6/rps':>7}"
      f" {'wrk wake-ups':>12} {'preempted':>9}")
for c, m in med.items():
    print(f"{c:<14} {m['cpu']:7.2f} {m['upstream']:7.2f} {m['wrk']:7.2f} {m['idle']:7.2f} "
          f"{1e6 / m['rps']:7.2f} {m['wakeups']:12.2f} {m['preempted']:9.2f}")
print("wrk wake-ups: wrk's voluntary context switches a request (each a sleep in epoll_wait")
print("ended by a response); preempted: the server's involuntary ones a request")
PY
