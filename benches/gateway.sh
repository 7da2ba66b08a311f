#!/usr/bin/env bash
# mesh-gateway against nginx, in front of the same local upstream, in one run, loaded by wrk.
#
#   bash benches/gateway.sh            # 10 rounds of 3 s per contender
#   ROUNDS=20 DURATION=5s bash benches/gateway.sh
#   GATEWAY=/path/to/mesh-gateway bash benches/gateway.sh   # another build of the gateway
#
# Needs wrk and nginx (Debian: `apt-get install wrk nginx-light`) and python3 (to sign the
# bench's token). The upstream is an nginx answering a fixed 200; the contenders are
#
#   nginx             proxy_pass with upstream keep-alive, one worker (it has one core);
#   mesh-gateway      the minimal public `Path=/**` route, the release binary;
#   mesh-gateway+jwt  the same route with `auth: required` (an HS256 token, verified and
#                     cached) and a per-user rate limit that the load never exhausts.
#
# Both gateways serve as the binary does, on the relay path (docs/gateway.md): each request
# after a token's first is relayed from its bytes.
#
# With two cores, wrk gets core 0 and the upstream and the proxy share core 1, so every proxy
# pays for its own CPU. Access logs are off on both sides. Each round runs the three contenders
# back to back, starting with a different one each round; printed are the medians of
# throughput and latency percentiles and, for the ratios to nginx, the median (and quartiles)
# of each round's own ratio, since the VM's speed drifts between rounds, and the proxy's own
# CPU time (user and system) per request, read from /proc around each round.
# docs/performance.md records the results.
set -euo pipefail

ROUNDS=${ROUNDS:-10}
DURATION=${DURATION:-3s}
CONNECTIONS=${CONNECTIONS:-64}
cd "$(dirname "$0")/.."

for tool in wrk nginx python3; do
    if ! command -v "$tool" >/dev/null && [[ ! -x /usr/sbin/$tool ]]; then
        echo "gateway bench: $tool is needed (apt-get install wrk nginx-light)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# GATEWAY=path/to/mesh-gateway measures that build (an earlier commit's, say) instead.
if [[ -z ${GATEWAY:-} ]]; then
    cargo build --release -q -p mesh-gateway
    GATEWAY=target/release/mesh-gateway
fi

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
NGINX_PID=$!

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

MESH_LOG=warn MESH_GATEWAY_MANAGEMENT_ADDR=127.0.0.1:0 MESH_GATEWAY_ADDR=127.0.0.1:$PLAIN_PORT "${serve[@]}" "$GATEWAY" --config "$work/plain.yaml" >"$work/plain.log" 2>&1 &
pids+=($!)
PLAIN_PID=$!
MESH_LOG=warn MESH_GATEWAY_MANAGEMENT_ADDR=127.0.0.1:0 MESH_GATEWAY_ADDR=127.0.0.1:$JWT_PORT "${serve[@]}" "$GATEWAY" --config "$work/jwt.yaml" >"$work/jwt.log" 2>&1 &
pids+=($!)
JWT_PID=$!

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

# CPU time (user and system, in clock ticks) a process and its children (nginx's worker)
# have used so far.
cpu_ticks() { # pid
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        # utime and stime: fields 14 and 15, counted after the command name's parenthesis.
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# One wrk round: prints "requests_per_second p50_ms p99_ms cpu_us_per_request".
round() { # port, the contender's pid, extra wrk args
    local before after
    before=$(cpu_ticks "$2")
    "${load[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${@:3}" "http://127.0.0.1:$1/" >"$work/wrk.out"
    after=$(cpu_ticks "$2")
    awk -v ticks=$((after - before)) -v tick_us="$TICK_US" '
            function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
            / requests in / { requests = $1 }
            /Requests\/sec/ { rps = $2 }
            /^ +50%/ { p50 = ms($2) }
            /^ +99%/ { p99 = ms($2) }
            /Non-2xx|Socket errors/ { errors = errors " " $0 }
            END {
                if (errors != "") print "errors:" errors > "/dev/stderr"
                printf "%s %s %s %.1f\n", rps, p50, p99, ticks * tick_us / requests
            }' "$work/wrk.out"
}

declare -A results ratios
for contender in nginx mesh-gateway mesh-gateway+jwt; do results[$contender]=""; ratios[$contender]=""; done
# A warm-up round each, not counted.
round "$NGINX_PORT" "$NGINX_PID" >/dev/null
round "$PLAIN_PORT" "$PLAIN_PID" >/dev/null
round "$JWT_PORT" "$JWT_PID" -H "Authorization: Bearer $TOKEN" >/dev/null
# The VM's speed drifts within seconds, so each round measures all three back to back, starting
# with a different one each round, and each gateway is compared with nginx in its own round.
contenders=(nginx mesh-gateway mesh-gateway+jwt)
for r in $(seq "$ROUNDS"); do
    declare -A row=()
    for k in 0 1 2; do
        contender=${contenders[$(((k + r) % 3))]}
        case $contender in
            nginx) row[$contender]=$(round "$NGINX_PORT" "$NGINX_PID") ;;
            mesh-gateway) row[$contender]=$(round "$PLAIN_PORT" "$PLAIN_PID") ;;
            mesh-gateway+jwt) row[$contender]=$(round "$JWT_PORT" "$JWT_PID" -H "Authorization: Bearer $TOKEN") ;;
        esac
    done
    echo "round $r: nginx ${row[nginx]} | mesh-gateway ${row[mesh-gateway]} | mesh-gateway+jwt ${row[mesh-gateway+jwt]}  (req/s p50_ms p99_ms cpu_us)"
    for contender in "${contenders[@]}"; do
        results[$contender]+="${row[$contender]}"$'\n'
        # Throughput and p99 relative to nginx's in the same round.
        ratios[$contender]+="$(awk -v a="${row[$contender]}" -v b="${row[nginx]}" \
            'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.3f %.3f", x[1] / y[1], x[3] / y[3] }')"$'\n'
    done
done

median() { # the median of one number per line
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
quartiles() { # "median q1 q3" of one number per line
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[int((NR + 3) / 4)], v[int((3 * NR + 3) / 4)] }'
}
column() { # rows, column number
    printf '%s' "$1" | awk -v c="$2" '{ print $c }'
}
echo
echo "| contender | req/s (median of $ROUNDS) | p50 | p99 | throughput vs nginx, median of rounds (quartiles) | p99 vs nginx, median of rounds | proxy CPU per request |"
echo "|---|---|---|---|---|---|---|"
for contender in "${contenders[@]}"; do
    rows=${results[$contender]}
    read -r rate rate_q1 rate_q3 <<<"$(column "${ratios[$contender]}" 1 | quartiles)"
    awk -v c="$contender" -v r="$(column "$rows" 1 | median)" -v a="$(column "$rows" 2 | median)" \
        -v b="$(column "$rows" 3 | median)" -v t="$rate" -v t1="$rate_q1" -v t3="$rate_q3" \
        -v p="$(column "${ratios[$contender]}" 2 | median)" -v u="$(column "$rows" 4 | median)" \
        'BEGIN { printf "| %s | %.0f | %.2f ms | %.2f ms | %.2f (%.2f–%.2f) | %.2f | %.1f µs |\n", c, r, a, b, t, t1, t3, p, u }'
done
