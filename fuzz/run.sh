#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) from the checked-in corpus; a crash
# stops the run and leaves its input under fuzz/artifacts/. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); the stable toolchain is enough (RUSTC_BOOTSTRAP lets it take
# the sanitizer flags). Not part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
for target in $(cargo fuzz list); do
  echo "== $target for ${seconds}s"
  # The corpus is copied, so that what a run adds stays out of the checked-in one.
  work="$(mktemp -d)"
  cp -r "corpus/$target/." "$work/"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$work" -- -max_total_time="$seconds" -max_len=8192
  rm -rf "$work"
done
