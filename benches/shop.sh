#!/usr/bin/env bash
# The shop as a user starts it: the time from launching the release binary to its gateway
# answering through the registry (build excluded), and the resident memory of the whole shop
# (registry, gateway and six services in one process) idle and after a load on the catalog.
#
#   bash benches/shop.sh              # builds the release binary first
#   RUNS=10 LOAD=10s bash benches/shop.sh
#
# Needs wrk (Debian: `apt-get install wrk`). Logs stay at the binary's default (warn).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
LOAD=${LOAD:-10s}
CONNECTIONS=${CONNECTIONS:-64}
GATEWAY=127.0.0.1:18080
REGISTRY=127.0.0.1:18761

cargo build --release -p shop --quiet
bin=target/release/shop

now_ms() { date +%s%3N; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

starts=()
for run in $(seq "$RUNS"); do
  start=$(now_ms)
  "$bin" --gateway "$GATEWAY" --registry "$REGISTRY" >/dev/null 2>&1 &
  pid=$!
  until curl -sf -o /dev/null "http://$GATEWAY/api/products"; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "the shop exited" >&2; exit 1; fi
    sleep 0.005
  done
  starts+=($(( $(now_ms) - start )))
  if [ "$run" -lt "$RUNS" ]; then
    kill -INT "$pid"; wait "$pid" || true
  fi
done
sorted=$(printf '%s\n' "${starts[@]}" | sort -n)
echo "start to first answer through the gateway (ms), $RUNS runs: $(echo $sorted) (median $(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p"))"

idle=$(rss_kib "$pid")
echo "resident memory, idle: $(( idle / 1024 )) MiB"
wrk -t2 -c"$CONNECTIONS" -d"$LOAD" "http://$GATEWAY/api/products" | grep -E "Requests/sec|Latency|Non-2xx" || true
loaded=$(rss_kib "$pid")
echo "resident memory, after $LOAD of $CONNECTIONS connections on GET /api/products: $(( loaded / 1024 )) MiB"
kill -INT "$pid"; wait "$pid" || true
