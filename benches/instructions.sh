#!/usr/bin/env bash
# Instructions per call of the whole client layer stack, counted by callgrind (repeatable,
# whatever else the machine does), and where they go.
#
#   bash benches/instructions.sh
#
# Runs the layers bench's "bare service" and "whole stack" under `valgrind --tool=callgrind`
# and prints the instructions per call of each, their difference, and the functions that
# spend the most of the whole stack's instructions (self cost, per call; the bench's own loop
# and the bare service are among them). Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions: valgrind is needed" >&2; exit 1; }
cargo bench -q -p mesh-benches --bench layers --no-run 2>/dev/null
bench=$(ls -t target/release/deps/layers-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

profile() { # bench name, output file
    valgrind --tool=callgrind --callgrind-out-file="$2" "$bench" --bench "$1" --profile-time 2 \
        >/dev/null 2>&1
}
profile "bare service" "$work/bare"
profile "whole stack" "$work/stack"

python3 - "$work/bare" "$work/stack" <<'PY'
import re, subprocess, sys

def annotate(path, *args):
    return subprocess.run(["callgrind_annotate", *args, path], capture_output=True,
                          text=True, check=True).stdout

def per_call(path):
    """Total instructions, and calls: the bench clones its request template once per call."""
    total = int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", annotate(path))
                .group(1).replace(",", ""))
    calls = 0
    for block in annotate(path, "--tree=caller").split("\n\n"):
        if re.search(r"\*\s+\S*<http::request::Parts as core::clone::Clone>::clone", block):
            for caller in re.findall(r"<\s+\S*layers::calls\S* \(([\d,]+)x\)", block):
                calls += int(caller.replace(",", ""))
    return total, calls

bare_total, bare_calls = per_call(sys.argv[1])
stack_total, stack_calls = per_call(sys.argv[2])
bare, stack = bare_total / bare_calls, stack_total / stack_calls
print(f"| measure | instructions per call |")
print(f"|---|---|")
print(f"| bare service | {bare:.0f} |")
print(f"| whole stack | {stack:.0f} |")
print(f"| added by the stack | {stack - bare:.0f} |")
print()
print("| where the whole stack's instructions go (self cost) | per call | share |")
print("|---|---|---|")
rows = []
for line in annotate(sys.argv[2]).splitlines():
    match = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+\S*?:(.+?) \[", line)
    if match:
        rows.append((int(match.group(1).replace(",", "")), float(match.group(2)), match.group(3)))
for cost, share, name in rows[:12]:
    for _ in range(3):  # generic arguments, not `<T as Trait>` paths
        name = re.sub(r"(?<=\w)<[^<>]*>", "", name)
    name = name.replace("|", "\\|")
    print(f"| `{name[:90]}` | {cost / stack_calls:.0f} | {share:.1f} % |")
PY
