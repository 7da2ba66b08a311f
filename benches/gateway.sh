#!/usr/bin/env bash
# mesh-gateway against nginx, in front of the same local upstream, in one run, loaded by wrk.
#
#   bash benches/gateway.sh            # 3 alternating rounds of 10 s per contender
#   ROUNDS=5 DURATION=20s bash benches/gateway.sh
#
# Needs wrk and nginx (Debian: `apt-get install wrk nginx-light`) and python3 (to sign the
# bench's token). The upstream is an nginx answering a fixed 200; the contenders are
#
#   nginx             proxy_pass with upstream keep-alive, one worker (it has one core);
#   mesh-gateway      the minimal public `Path=/**` route, the release binary;
#   mesh-gateway+jwt  the same route with `auth: required` (an HS256 token, verified and
#                     cached) and a per-user rate limit that the load never exhausts.
#
# With two cores, wrk gets core 0 and the upstream and the proxy share core 1, so every proxy
# pays for its own CPU. Access logs are off on both sides. Rounds alternate; the medians of
# throughput and latency percentiles are printed with each contender's ratio to nginx.
# docs/performance.md records the results.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
cd "$(dirname "$0")/.."

for tool in wrk nginx python3; do
    if ! command -v "$tool" >/dev/null && [[ ! -x /usr/sbin/$tool ]]; then
        echo "gateway bench: $tool is needed (apt-get install wrk nginx-light)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q -p mesh-gateway
GATEWAY=target/release/mesh-gateway

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
UPSTREAM=$(free_port)
NGINX_PORT=$(free_port)
PLAIN_PORT=$(free_port)
JWT_PORT=$(free_port)

# Core 1 for upstream and proxies, core 0 for wrk (one core each way when there are two).
if [[ $(nproc) -ge 2 ]]; then
    serve=(taskset -c 1)
    load=(taskset -c 0)
else
    serve=()
    load=()
fi

nginx_conf() { # name, body of the http block
    mkdir -p "$work/$1/logs"
    cat >"$work/$1/nginx.conf" <<EOF
daemon off;
worker_processes 1;
error_log $work/$1/logs/error.log;
pid $work/$1/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$1;
    proxy_temp_path $work/$1;
    fastcgi_temp_path $work/$1;
    uwsgi_temp_path $work/$1;
    scgi_temp_path $work/$1;
    $2
}
EOF
}

nginx_conf upstream "server { listen 127.0.0.1:$UPSTREAM; location / { return 200 'hello from upstream\n'; } }"
nginx_conf proxy "upstream app { server 127.0.0.1:$UPSTREAM; keepalive 128; }
    server { listen 127.0.0.1:$NGINX_PORT; location / {
        proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
"${serve[@]}" "$NGINX" -c "$work/upstream/nginx.conf" -p "$work/upstream" &
pids+=($!)
"${serve[@]}" "$NGINX" -c "$work/proxy/nginx.conf" -p "$work/proxy" &
pids+=($!)

SECRET="a bench secret of at least thirty-two bytes"
cat >"$work/plain.yaml" <<EOF
registry: { register: false }
routes: [{id: all, uri: "http://127.0.0.1:$UPSTREAM", predicates: ["Path=/**"], auth: public}]
EOF
cat >"$work/jwt.yaml" <<EOF
registry: { register: false }
auth:
  jwt: { secret: "$SECRET" }
routes:
  - id: all
    uri: http://127.0.0.1:$UPSTREAM
    predicates: ["Path=/**"]
    rate_limit: { replenish_rate: 1000000, burst_capacity: 100000000, key: subject }
EOF
TOKEN=$(SECRET="$SECRET" python3 - <<'EOF'
import base64, hashlib, hmac, json, os, time
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench", "roles": ["user"], "exp": int(time.time()) + 3600}).encode())
signature = b64(hmac.new(os.environ["SECRET"].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + signature).decode())
EOF
)

MESH_LOG=warn MESH_GATEWAY_ADDR=127.0.0.1:$PLAIN_PORT "${serve[@]}" "$GATEWAY" --config "$work/plain.yaml" >"$work/plain.log" 2>&1 &
pids+=($!)
MESH_LOG=warn MESH_GATEWAY_ADDR=127.0.0.1:$JWT_PORT "${serve[@]}" "$GATEWAY" --config "$work/jwt.yaml" >"$work/jwt.log" 2>&1 &
pids+=($!)

wait_up() { # port, extra curl args
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null "${@:2}" "http://127.0.0.1:$1/"; then return 0; fi
        sleep 0.1
    done
    echo "gateway bench: nothing answers on port $1" >&2
    cat "$work"/*.log >&2 || true
    exit 1
}
wait_up "$UPSTREAM"
wait_up "$NGINX_PORT"
wait_up "$PLAIN_PORT"
wait_up "$JWT_PORT" -H "Authorization: Bearer $TOKEN"

# One wrk round: prints "requests_per_second p50_ms p99_ms".
round() { # port, extra wrk args
    "${load[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${@:2}" "http://127.0.0.1:$1/" |
        awk '
            function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
            /Requests\/sec/ { rps = $2 }
            /^ +50%/ { p50 = ms($2) }
            /^ +99%/ { p99 = ms($2) }
            /Non-2xx|Socket errors/ { errors = errors " " $0 }
            END { if (errors != "") print "errors:" errors > "/dev/stderr"; printf "%s %s %s\n", rps, p50, p99 }'
}

declare -A results
for contender in nginx mesh-gateway mesh-gateway+jwt; do results[$contender]=""; done
# A warm-up round each, not counted.
round "$NGINX_PORT" >/dev/null
round "$PLAIN_PORT" >/dev/null
round "$JWT_PORT" -H "Authorization: Bearer $TOKEN" >/dev/null
for r in $(seq "$ROUNDS"); do
    n=$(round "$NGINX_PORT")
    g=$(round "$PLAIN_PORT")
    j=$(round "$JWT_PORT" -H "Authorization: Bearer $TOKEN")
    echo "round $r: nginx $n | mesh-gateway $g | mesh-gateway+jwt $j  (req/s p50_ms p99_ms)"
    results[nginx]+="$n"$'\n'
    results[mesh-gateway]+="$g"$'\n'
    results[mesh-gateway+jwt]+="$j"$'\n'
done

median() { # column
    sort -g | awk -v c="$1" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}
summary() { # contender -> "rps p50 p99" medians
    local rows=${results[$1]}
    echo "$(printf '%s' "$rows" | awk '{print $1}' | median 1)" \
        "$(printf '%s' "$rows" | awk '{print $2}' | median 1)" \
        "$(printf '%s' "$rows" | awk '{print $3}' | median 1)"
}
read -r n_rps n_p50 n_p99 <<<"$(summary nginx)"
echo
echo "| contender | req/s (median of $ROUNDS) | p50 | p99 | throughput vs nginx | p99 vs nginx |"
echo "|---|---|---|---|---|---|"
for contender in nginx mesh-gateway mesh-gateway+jwt; do
    read -r rps p50 p99 <<<"$(summary "$contender")"
    awk -v c="$contender" -v r="$rps" -v a="$p50" -v b="$p99" -v nr="$n_rps" -v nb="$n_p99" \
        'BEGIN { printf "| %s | %.0f | %.2f ms | %.2f ms | %.2f | %.2f |\n", c, r, a, b, r / nr, b / nb }'
done
