#!/usr/bin/env bash
# Proves Prometheus's Eureka service discovery against mesh-registry: starts the shop (its
# registry on 127.0.0.1:8761, its gateway on 127.0.0.1:8080), starts Debian's `prometheus`
# with docs/prometheus/prometheus.yml, sends a few requests through the gateway, and checks
# that Prometheus discovered every registered service through the registry, scrapes each one
# (`up` is 1) and has its request counts. Needs `prometheus` (apt-get install prometheus).
set -euo pipefail
cd "$(dirname "$0")/../.."
PROM_PORT="${PROM_PORT:-9099}"
work="$(mktemp -d)"
cleanup() {
  kill "$prom_pid" "$shop_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
prom_pid="" shop_pid=""
trap cleanup EXIT

command -v prometheus >/dev/null || { echo "prometheus is not installed (apt-get install prometheus)" >&2; exit 1; }
cargo build -q -p shop
./target/debug/shop >"$work/shop.log" 2>&1 &
shop_pid=$!
for _ in $(seq 120); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/api/products 2>/dev/null && break
  sleep 0.5
done
curl -fsS -o /dev/null http://127.0.0.1:8080/api/products || { cat "$work/shop.log"; exit 1; }

prometheus --config.file=docs/prometheus/prometheus.yml --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$work/prometheus.log" 2>&1 &
prom_pid=$!

registered=$(curl -fsS -H 'Accept: application/json' http://127.0.0.1:8761/eureka/apps \
  | python3 -c 'import json,sys; apps=json.load(sys.stdin)["applications"]["application"]; print(sum(len(a["instance"]) for a in apps))')
echo "the registry holds $registered instances"

query() {
  curl -fsS --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}
up=0
for _ in $(seq 60); do
  for _ in 1 2 3; do curl -fsS -o /dev/null http://127.0.0.1:8080/api/products; done
  up=$(query 'sum(up{job="mesh"})')
  counted=$(query 'count(count by (app) (mesh_server_requests_total{job="mesh"}))')
  [ "${up%.*}" -ge "$registered" ] && [ "${counted%.*}" -ge 1 ] && break
  sleep 2
done
echo "Prometheus scrapes $up of them (up == 1), discovered through the registry's Eureka API:"
curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/targets" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print("  ", t["labels"]["app"], t["scrapeUrl"], t["health"])'
echo "product-service requests Prometheus has counted: $(query 'sum(mesh_server_requests_total{app="PRODUCT-SERVICE"})')"
[ "${up%.*}" -ge "$registered" ] && [ "$registered" -ge 6 ] || { echo "FAILED: not every instance is scraped" >&2; tail -20 "$work/prometheus.log" >&2; exit 1; }
echo "ok"
