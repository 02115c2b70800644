#!/usr/bin/env bash
# Runs every fuzz target briefly (CI smoke run); `FUZZ_SECONDS=600 bash scripts/fuzz-smoke.sh`
# for a real session. Uses nightly when installed, else the stable toolchain in bootstrap mode.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain=(+nightly); else export RUSTC_BOOTSTRAP=1; fi
for target in $(cargo "${toolchain[@]}" fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  cargo "${toolchain[@]}" fuzz run "$target" --sanitizer none -- -max_total_time="$seconds" -max_len=16384 2>&1 | tail -n 3
done
