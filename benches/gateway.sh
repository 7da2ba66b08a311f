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
#   nginx             proxy_pass to an `upstream` block with keep-alive, one worker (it has one
#                     core), access log off;
#   nginx+log         the same with nginx's default access log (`combined`, to a file);
#   mesh-gateway      the minimal public `Path=/**` route to the fixed upstream, the release
#                     binary, access log off (`MESH_LOG=warn`);
#   mesh-gateway+log  the same with the default settings: the JSON access log on, to a file;
#   mesh-gateway+jwt  the quiet `lb://app` route with `auth: required` (an HS256 token,
#                     verified and cached) and a per-user rate limit that the load never
#                     exhausts;
#   mesh-gateway+lb   the quiet route as `lb://app`, the upstream registered in a
#                     mesh-registry as the instance of `app`;
#   mesh-gateway+otlp the quiet route exporting every request's span over OTLP/HTTP (100 %
#                     sampling) to a receiver answering 200 (the upstream nginx).
#
# The gateways serve as the binary does, on the relay path where their routes allow it
# (docs/gateway.md). Each is compared with nginx, but mesh-gateway+log with nginx+log and
# mesh-gateway+otlp with mesh-gateway (the cost of trace export).
#
# With two cores, wrk gets core 0 and the upstream and the proxy share core 1, so every proxy
# pays for its own CPU. Each round runs the contenders back to back, starting with a different
# one each round; printed are the medians of throughput and latency percentiles and, for the
# ratios to the baseline, the median (and quartiles) of each round's own ratio, since the VM's
# speed drifts between rounds, and the proxy's own CPU time (user and system) per request, read
# from /proc around each round.
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
if [[ -z ${REGISTRY:-} ]]; then
    cargo build --release -q -p mesh-registry
    REGISTRY=target/release/mesh-registry
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

source benches/lib.sh
UPSTREAM=$(free_port)
NGINX_PORT=$(free_port)
NGINX_LOG_PORT=$(free_port)
PLAIN_PORT=$(free_port)
LOG_PORT=$(free_port)
JWT_PORT=$(free_port)
LB_PORT=$(free_port)
OTLP_PORT=$(free_port)
REGISTRY_PORT=$(free_port)

# Core 1 for upstream and proxies, core 0 for wrk (one core each way when there are two).
if [[ $(nproc) -ge 2 ]]; then
    serve=(taskset -c 1)
    load=(taskset -c 0)
else
    serve=()
    load=()
fi

nginx_conf upstream "server { listen 127.0.0.1:$UPSTREAM; location / { return 200 'hello from upstream\n'; } }"
nginx_conf proxy "upstream app { server 127.0.0.1:$UPSTREAM; keepalive 128; }
    server { listen 127.0.0.1:$NGINX_PORT; location / {
        proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
"${serve[@]}" "$NGINX" -c "$work/upstream/nginx.conf" -p "$work/upstream" &
pids+=($!)
"${serve[@]}" "$NGINX" -c "$work/proxy/nginx.conf" -p "$work/proxy" &
pids+=($!)
NGINX_PID=$!
nginx_conf logged "upstream app { server 127.0.0.1:$UPSTREAM; keepalive 128; }
    server { listen 127.0.0.1:$NGINX_LOG_PORT; location / {
        proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" \
    "$work/logged/logs/access.log"
"${serve[@]}" "$NGINX" -c "$work/logged/nginx.conf" -p "$work/logged" &
pids+=($!)
NGINX_LOG_PID=$!

registry_with_app "$REGISTRY_PORT" "$UPSTREAM"

SECRET="a bench secret of at least thirty-two bytes"
cat >"$work/plain.yaml" <<EOF
registry: { register: false }
routes: [{id: all, uri: "http://127.0.0.1:$UPSTREAM", predicates: ["Path=/**"], auth: public}]
EOF
cat >"$work/lb.yaml" <<EOF
registry: { url: "http://127.0.0.1:$REGISTRY_PORT", register: false }
routes: [{id: all, uri: "lb://app", predicates: ["Path=/**"], auth: public}]
EOF
cat >"$work/jwt.yaml" <<EOF
registry: { url: "http://127.0.0.1:$REGISTRY_PORT", register: false }
auth:
  jwt: { secret: "$SECRET" }
routes:
  - id: all
    uri: lb://app
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

gateway() { # port, config, log filter; the pid in $!
    MESH_LOG=$3 MESH_GATEWAY_MANAGEMENT_ADDR=127.0.0.1:0 MESH_GATEWAY_ADDR=127.0.0.1:$1 \
        "${serve[@]}" "$GATEWAY" --config "$2" >"$2.log" 2>&1 &
    pids+=($!)
}
gateway "$PLAIN_PORT" "$work/plain.yaml" warn
PLAIN_PID=$!
cp "$work/plain.yaml" "$work/logged.yaml"
gateway "$LOG_PORT" "$work/logged.yaml" info
LOG_PID=$!
gateway "$JWT_PORT" "$work/jwt.yaml" warn
JWT_PID=$!
gateway "$LB_PORT" "$work/lb.yaml" warn
LB_PID=$!
cp "$work/plain.yaml" "$work/otlp.yaml"
OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$UPSTREAM \
    gateway "$OTLP_PORT" "$work/otlp.yaml" warn
OTLP_PID=$!

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
wait_up "$NGINX_LOG_PORT"
wait_up "$PLAIN_PORT"
wait_up "$LOG_PORT"
wait_up "$JWT_PORT" -H "Authorization: Bearer $TOKEN"
wait_up "$LB_PORT"
wait_up "$OTLP_PORT"

rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
IDLE_RSS="$(rss_mib "$PLAIN_PID") MiB (lb:// $(rss_mib "$LB_PID") MiB)"
load_started=$(date +%s)

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

contenders=(nginx nginx+log mesh-gateway mesh-gateway+log mesh-gateway+jwt mesh-gateway+lb
    mesh-gateway+otlp)
declare -A baseline=([nginx]=nginx [nginx+log]=nginx [mesh-gateway]=nginx [mesh-gateway+log]=nginx+log
    [mesh-gateway+jwt]=nginx [mesh-gateway+lb]=nginx [mesh-gateway+otlp]=mesh-gateway)
measure() { # contender
    case $1 in
        nginx) round "$NGINX_PORT" "$NGINX_PID" ;;
        nginx+log) round "$NGINX_LOG_PORT" "$NGINX_LOG_PID" ;;
        mesh-gateway) round "$PLAIN_PORT" "$PLAIN_PID" ;;
        mesh-gateway+log) round "$LOG_PORT" "$LOG_PID" ;;
        mesh-gateway+jwt) round "$JWT_PORT" "$JWT_PID" -H "Authorization: Bearer $TOKEN" ;;
        mesh-gateway+lb) round "$LB_PORT" "$LB_PID" ;;
        mesh-gateway+otlp) round "$OTLP_PORT" "$OTLP_PID" ;;
    esac
}
declare -A results ratios
for contender in "${contenders[@]}"; do
    results[$contender]=""
    ratios[$contender]=""
    measure "$contender" >/dev/null # a warm-up round each, not counted
done
# The VM's speed drifts within seconds, so each round measures every contender back to back,
# starting with a different one each round, and each is compared with its baseline in its own
# round.
n=${#contenders[@]}
for r in $(seq "$ROUNDS"); do
    declare -A row=()
    line="round $r:"
    for k in $(seq 0 $((n - 1))); do
        contender=${contenders[$(((k + r) % n))]}
        row[$contender]=$(measure "$contender")
    done
    for contender in "${contenders[@]}"; do
        line+=" $contender ${row[$contender]} |"
        results[$contender]+="${row[$contender]}"$'\n'
        # Throughput and p99 relative to the baseline's in the same round.
        ratios[$contender]+="$(awk -v a="${row[$contender]}" -v b="${row[${baseline[$contender]}]}" \
            'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.3f %.3f", x[1] / y[1], x[3] / y[3] }')"$'\n'
    done
    echo "$line (req/s p50_ms p99_ms cpu_us)"
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
echo "| contender | req/s (median of $ROUNDS) | p50 | p99 | baseline | throughput vs baseline, median of rounds (quartiles) | p99 vs baseline, median of rounds | proxy CPU per request |"
echo "|---|---|---|---|---|---|---|---|"
for contender in "${contenders[@]}"; do
    rows=${results[$contender]}
    read -r rate rate_q1 rate_q3 <<<"$(column "${ratios[$contender]}" 1 | quartiles)"
    awk -v c="$contender" -v r="$(column "$rows" 1 | median)" -v a="$(column "$rows" 2 | median)" \
        -v b="$(column "$rows" 3 | median)" -v t="$rate" -v t1="$rate_q1" -v t3="$rate_q3" \
        -v p="$(column "${ratios[$contender]}" 2 | median)" -v u="$(column "$rows" 4 | median)" \
        -v base="${baseline[$contender]}" \
        'BEGIN { printf "| %s | %.0f | %.2f ms | %.2f ms | %s | %.2f (%.2f–%.2f) | %.2f | %.1f µs |\n", c, r, a, b, base, t, t1, t3, p, u }'
done

echo
echo "gateway resident memory: idle ${IDLE_RSS}; after $(( $(date +%s) - load_started )) s of rounds at $CONNECTIONS connections $(rss_mib "$PLAIN_PID") MiB (lb:// $(rss_mib "$LB_PID") MiB)"
