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
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
cargo test --workspace --all-features --doc
echo "all tests passed"
