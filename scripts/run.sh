#!/usr/bin/env bash
# `make run`: start keygate on the given config. If nothing listens on the
# upstream port, start the demo upstream there first, so a newcomer sees a
# request go through at once. Prints a curl line with a fresh demo key.
set -euo pipefail
BIN=${1:-build/keygate}
CONFIG=${2:-config/keygate.yaml}
HERE=$(cd "$(dirname "$0")/.." && pwd)

# The shipped config reads these (with these defaults).
UPSTREAM=${KEYGATE_UPSTREAM:-http://127.0.0.1:9000}
LISTEN=${KEYGATE_LISTEN:-0.0.0.0:8080}
up_hostport=${UPSTREAM#http://}
up_port=${up_hostport##*:}
gw_port=${LISTEN##*:}

"$BIN" check-config --config "$CONFIG" >/dev/null

demo_pid=""
cleanup() { [[ -n $demo_pid ]] && kill "$demo_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
if ! (exec 3<>"/dev/tcp/127.0.0.1/$up_port") 2>/dev/null; then
  python3 "$HERE/tests/integration/upstream.py" "$up_port" &
  demo_pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$up_port") 2>/dev/null && break; sleep 0.1; done
fi

# One demo key per store: rotated on every `make run`, so its secret is shown
# again without accumulating keys (the old one is revoked at once).
demo_id=$("$BIN" keys list --config "$CONFIG" --json |
  python3 -c 'import json,sys; ks=[k["id"] for k in json.load(sys.stdin) if k["name"]=="make-run-demo"]; print(ks[0] if ks else "")')
if [[ -n $demo_id ]]; then
  key_json=$("$BIN" keys rotate "$demo_id" --config "$CONFIG" --json)
else
  key_json=$("$BIN" keys create --name make-run-demo --owner demo --config "$CONFIG" --json)
fi
key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$key_json")

cat <<MSG

  keygate is starting on port $gw_port, in front of $UPSTREAM${demo_pid:+ (demo upstream)}.
  Try it:

    curl -i http://127.0.0.1:$gw_port/hello -H "Authorization: Bearer $key"
    curl -i http://127.0.0.1:$gw_port/hello            # 401: no key

  Manage keys:  $BIN keys list --config $CONFIG
  Stop:         Ctrl-C

MSG
"$BIN" serve --config "$CONFIG" &
gw_pid=$!
trap 'kill -TERM $gw_pid 2>/dev/null; wait $gw_pid; cleanup' INT TERM
wait $gw_pid
