#!/usr/bin/env bash
# Instructions per request of the release mesh-gateway, counted by callgrind (repeatable,
# whatever else the machine does), on each route kind the gateway bench measures, and where
# the difference between two of them goes.
#
#   bash benches/requests.sh                 # quiet fixed route, lb:// route, trace export
#   REQUESTS=20000 bash benches/requests.sh  # more requests per contender
#
# Each contender is the release gateway under `valgrind --tool=callgrind` in front of an nginx
# answering a fixed 200 (the `lb://` one through a mesh-registry); after a warm-up its counters
# are zeroed, wrk sends requests over 4 connections, and the counters are dumped: the
# instructions per request are the gateway's (every thread) divided by the requests wrk saw
# answered. Then the functions whose self cost grows most from the quiet route to each other
# contender, per request. Needs valgrind, wrk, nginx and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in wrk valgrind callgrind_control python3; do
    command -v "$tool" >/dev/null || { echo "requests: $tool is needed" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
DURATION=${DURATION:-10s}

cargo build --release -q -p mesh-gateway -p mesh-registry
GATEWAY=target/release/mesh-gateway
REGISTRY=target/release/mesh-registry

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
REGISTRY_PORT=$(free_port)
nginx_conf upstream "server { listen 127.0.0.1:$UPSTREAM; location / { return 200 'hello from upstream\n'; } }"
"$NGINX" -c "$work/upstream/nginx.conf" -p "$work/upstream" &
pids+=($!)
registry_with_app "$REGISTRY_PORT" "$UPSTREAM"

cat >"$work/plain.yaml" <<EOF
registry: { register: false }
routes: [{id: all, uri: "http://127.0.0.1:$UPSTREAM", predicates: ["Path=/**"], auth: public}]
EOF
cat >"$work/lb.yaml" <<EOF
registry: { url: "http://127.0.0.1:$REGISTRY_PORT", register: false }
routes: [{id: all, uri: "lb://app", predicates: ["Path=/**"], auth: public}]
EOF
cp "$work/plain.yaml" "$work/otlp.yaml"

# Counts one contender: prints "requests instructions" and leaves the dump in $work/$1.out.
count() { # name, extra environment...
    local port pid requests
    port=$(free_port)
    env "${@:2}" MESH_LOG=warn MESH_GATEWAY_MANAGEMENT_ADDR=127.0.0.1:0 \
        MESH_GATEWAY_ADDR=127.0.0.1:$port \
        valgrind --tool=callgrind --callgrind-out-file="$work/$1.out" "$GATEWAY" \
        --config "$work/$1.yaml" >"$work/$1.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
        sleep 0.1
    done
    wrk -t1 -c4 -d3s "http://127.0.0.1:$port/" >/dev/null # warm-up
    callgrind_control -z "$pid" >/dev/null 2>&1
    requests=$(wrk -t1 -c4 -d"$DURATION" "http://127.0.0.1:$port/" |
        awk '/ requests in / { print $1 }')
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    # The dump taken after the zeroing: the highest-numbered part.
    local dump
    dump=$(ls -v "$work/$1.out".* 2>/dev/null | grep -v '\.log$' | tail -1)
    cp "$dump" "$work/$1.dump"
    echo "$requests $(callgrind_annotate "$work/$1.dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
}

read -r plain_requests plain_total <<<"$(count plain)"
read -r lb_requests lb_total <<<"$(count lb)"
read -r otlp_requests otlp_total <<<"$(count otlp OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$UPSTREAM")"

python3 - "$work" "$plain_requests" "$plain_total" "$lb_requests" "$lb_total" \
    "$otlp_requests" "$otlp_total" <<'PY'
import re, subprocess, sys
work = sys.argv[1]
counts = {
    "plain": (int(sys.argv[2]), int(sys.argv[3])),
    "lb": (int(sys.argv[4]), int(sys.argv[5])),
    "otlp": (int(sys.argv[6]), int(sys.argv[7])),
}
names = {"plain": "fixed route, quiet", "lb": "lb:// route, quiet",
         "otlp": "fixed route, every span exported"}
per = {k: total / requests for k, (requests, total) in counts.items()}
print("| route | requests counted | instructions per request | vs the quiet fixed route |")
print("|---|---|---|---|")
for key, (requests, _) in counts.items():
    print(f"| {names[key]} | {requests} | {per[key]:.0f} | {per[key] / per['plain']:.2f}× |")

# Threads' and the program's entry points, which the listing shows with what they call.
ENTRIES = re.compile(r"^(clone|start_thread|main|\(below main\)|__libc_start_main.*|0x[0-9a-f]+|"
                     r".*thread_start|.*call_once\{\{vtable\.shim\}\}|.*__rust_begin_short_backtrace)$")

def self_costs(key):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                          f"{work}/{key}.dump"], capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*?:(.+?) \[", line)
        if m and not ENTRIES.match(m.group(2)):
            costs[m.group(2)] = costs.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    requests = counts[key][0]
    return {name: cost / requests for name, cost in costs.items()}

base = self_costs("plain")
for key in ("lb", "otlp"):
    costs = self_costs(key)
    grown = sorted(((costs[n] - base.get(n, 0), n) for n in costs), reverse=True)[:20]
    print()
    print(f"| where {names[key]} spends more than the quiet fixed route (self cost) | per request |")
    print("|---|---|")
    for delta, name in grown:
        print(f"| `{name[:90]}` | {delta:.0f} |")
PY
