#!/usr/bin/env bash
# Runs every fuzz target briefly (CI smoke run); `FUZZ_SECONDS=600 bash scripts/fuzz-smoke.sh`
# for a real session. Uses nightly when installed, else the stable toolchain in bootstrap mode.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain=(+nightly); else export RUSTC_BOOTSTRAP=1; fi
# Memory limits: an input that makes a target allocate more than this fails the run (libFuzzer
# reports "out-of-memory" and saves the input), so an expansion bomb cannot pass as slow. The
# pickle reader gets 32 MB per allocation and 512 MB in all: a 16 KB input needs well under 1 MB.
# With `--sanitizer none` libFuzzer has no malloc hooks, so the pickle target runs under
# AddressSanitizer to enforce `-malloc_limit_mb`; `-rss_limit_mb` holds for every target.
for target in $(cargo "${toolchain[@]}" fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  sanitizer=none limits=(-rss_limit_mb=2048)
  if [ "$target" = pickle ]; then sanitizer=address limits=(-rss_limit_mb=512 -malloc_limit_mb=32); fi
  seeds=()
  if [ -d "seeds/$target" ]; then mkdir -p "corpus/$target"; seeds=("corpus/$target" "seeds/$target"); fi
  cargo "${toolchain[@]}" fuzz run "$target" --sanitizer "$sanitizer" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len=16384 "${limits[@]}" 2>&1 | tail -n 3
done
