#!/usr/bin/env bash
# Checks the marketplace's chat in a real browser: starts the marketplace (its gateway on
# 127.0.0.1:8080), opens a page of the gateway's origin for two users in headless Chromium,
# each signing up and logging in from the page (the gateway's HttpOnly cookie, which the
# page's script cannot read), and has them chat with the browser build of socket.io-client,
# first over the polling transport, then over WebSocket: each message must appear on the
# other user's page. Saves docs/marketplace/chat.png. Needs Debian's `chromium` (apt-get
# install chromium) and npm (for playwright-core, installed into a temporary directory, and the
# lock file's socket.io-client of examples/marketplace/tests/socketio).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
work="$(mktemp -d)"
market_pid=""
cleanup() {
  kill "$market_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 1; }
(cd "$work" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
client=examples/marketplace/tests/socketio
[[ -d $client/node_modules/socket.io-client ]] || (cd "$client" && npm ci --silent --no-audit --no-fund)
cargo build -q -p marketplace
./target/debug/marketplace >"$work/market.log" 2>&1 &
market_pid=$!
for _ in $(seq 120); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/gigs) == 401 ]] && break
  sleep 0.5
done
[[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/gigs) == 401 ]] ||
  { cat "$work/market.log"; exit 1; }

NODE_PATH="$work/node_modules" node docs/marketplace/check.mjs http://127.0.0.1:8080 \
  "$root/$client/node_modules/socket.io-client/dist/socket.io.min.js" \
  "$root/docs/marketplace/chat.png"
