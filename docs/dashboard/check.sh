#!/usr/bin/env bash
# Checks the registry's live dashboard in a real browser: starts the shop (its registry on
# 127.0.0.1:8761, its gateway on 127.0.0.1:8080), opens http://127.0.0.1:8761/dashboard in
# headless Chromium, checks that every shop service and its instance appear, then switches
# the payment provider off and places orders through the gateway until the order service's
# circuit breaker opens, and checks that the open circuit appears on the page without a
# reload. Saves docs/dashboard/dashboard.png. Needs Debian's `chromium` (apt-get install
# chromium) and npm (for playwright-core, installed into a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
work="$(mktemp -d)"
cleanup() {
  kill "$shop_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
shop_pid=""
trap cleanup EXIT

command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 1; }
(cd "$work" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
cargo build -q -p shop
export SHOP_ADMIN_PASSWORD="dashboard check admin password"
./target/debug/shop >"$work/shop.log" 2>&1 &
shop_pid=$!
for _ in $(seq 120); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/api/products 2>/dev/null && break
  sleep 0.5
done
curl -fsS -o /dev/null http://127.0.0.1:8080/api/products || { cat "$work/shop.log"; exit 1; }

NODE_PATH="$work/node_modules" node docs/dashboard/check.mjs \
  http://127.0.0.1:8761/dashboard http://127.0.0.1:8080 "$root/docs/dashboard/dashboard.png"
