#!/usr/bin/env bash
# MeshClient against a bare hyper-util client, in alternating rounds of the criterion bench.
#
#   bash benches/client.sh             # 5 rounds of 64 concurrent calls
#   ROUNDS=9 bash benches/client.sh
#
# `cargo bench -p mesh-benches --bench client` measures each client once, one after the other;
# on a shared VM whose speed drifts by tens of percent within minutes, that order alone can move
# the ratio. This script runs the concurrent benchmarks in turns (bare, whole stack, lean), a
# few seconds each, and prints every round's throughput, each round's ratio to bare, and the
# medians. docs/performance.md records the results.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
cd "$(dirname "$0")/.."
cargo bench -q -p mesh-benches --bench client --no-run

# One measurement: prints the throughput in thousands of calls per second.
measure() { # criterion filter
    cargo bench -q -p mesh-benches --bench client -- --warm-up-time 1 --measurement-time 4 "$1" 2>/dev/null |
        awk '/thrpt:/ && !done { print $4; done = 1 }'
}

rows=""
for r in $(seq "$ROUNDS"); do
    bare=$(measure "concurrent/bare hyper-util")
    whole=$(measure "concurrent/MeshClient, whole stack")
    lean=$(measure "concurrent/MeshClient, trace")
    row=$(awk -v b="$bare" -v w="$whole" -v l="$lean" 'BEGIN { printf "%s %s %s %.3f %.3f", b, w, l, w / b, l / b }')
    echo "round $r: bare $bare k/s | whole stack $(echo "$row" | cut -d' ' -f2) k/s ($(echo "$row" | cut -d' ' -f4)) | trace + metrics + balance $(echo "$row" | cut -d' ' -f3) k/s ($(echo "$row" | cut -d' ' -f5))"
    rows+="$row"$'\n'
done

median() { # column
    printf '%s' "$rows" | awk -v c="$1" '{ print $c }' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
echo
echo "| client (64 concurrent calls) | calls/s, median of $ROUNDS | median ratio to bare |"
echo "|---|---|---|"
echo "| bare hyper-util | $(median 1) k | 1.00 |"
echo "| MeshClient, whole stack | $(median 2) k | $(median 4) |"
echo "| MeshClient, trace + metrics + balance | $(median 3) k | $(median 5) |"
