#!/usr/bin/env bash
# The "gateway" of peers.sh for the forward-auth comparison: nginx with the
# shipped deploy/forward-auth/nginx.conf (auth_request) on $GATEWAY_PORT,
# asking keygate (threads: 1, on $KG_FA_PORT) about every request, proxying to
# $UPSTREAM_PORT. Stays in the foreground; peers.sh stops the whole tree.
# Needs: KG_BIN, KG_FA_CONFIG (a keygate config listening on $KG_FA_PORT),
# KG_FA_PORT, GATEWAY_PORT, UPSTREAM_PORT, and the repo root as KG_ROOT.
set -euo pipefail
W=$(mktemp -d /tmp/kg-fa-gw.XXXXXX)
mkdir -p "$W/tmp"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
sed -e "s|127.0.0.1:8080|127.0.0.1:$KG_FA_PORT|; s|127.0.0.1:9000|127.0.0.1:$UPSTREAM_PORT|" \
    -e "s|listen 80;|listen 127.0.0.1:$GATEWAY_PORT backlog=4096;|" \
    "$KG_ROOT/deploy/forward-auth/nginx.conf" >"$W/keygate.conf"
cat >"$W/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path $W/tmp;
    proxy_temp_path $W/tmp;
    fastcgi_temp_path $W/tmp;
    uwsgi_temp_path $W/tmp;
    scgi_temp_path $W/tmp;
    include $W/keygate.conf;
}
NGINX
"$KG_BIN" serve --config "$KG_FA_CONFIG" 2>"$W/keygate.log" &
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KG_FA_PORT") 2>/dev/null && break; sleep 0.1; done
nginx -p "$W" -e "$W/error.log" -c "$W/nginx.conf" &
wait -n
