#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts the servers the tests need,
# then runs every test (unit, conformance on every engine, HTTP, browser) and the lints.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/install-browser.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
# Real Django from PyPI for the interop tests, made once here rather than by the first tests.
sh scripts/django-env.sh >/dev/null
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
cargo test --workspace --all-features --doc
# Fuzz smoke run: every target in fuzz/ for a few seconds (nightly cargo-fuzz; installs it).
FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash scripts/fuzz-smoke.sh
echo "all tests passed"
