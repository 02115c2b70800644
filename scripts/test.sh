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
# The docs as docs.rs builds them, without warnings (broken or private intra-doc links).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps
# Every crate meant for crates.io packs, with its README and licenses, and passes
# `cargo publish --dry-run`. `--workspace` (cargo >= 1.90) packs the crates together and
# resolves their dependencies on each other through a local registry overlay, so the dependants
# verify before anything is on crates.io. The verify builds share the target dir (warm after the
# tests above). cloakroom-bench is `publish = false`.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
publishable=(--workspace --exclude cloakroom-bench)
cargo package "${publishable[@]}" --no-verify
for crate in "$CARGO_TARGET_DIR"/package/cloakroom*-0*.crate; do
  # The listing is read whole first: `tar | grep -q` under pipefail fails when grep stops
  # reading early and tar dies of SIGPIPE, which a large crate makes likely.
  listing=$(tar -tzf "$crate")
  for file in README.md LICENSE-MIT LICENSE-APACHE; do
    grep -q "^[^/]*/$file\$" <<<"$listing" || { echo "$crate lacks $file"; exit 1; }
  done
done
cargo publish --dry-run "${publishable[@]}"
# Fuzz smoke run: every target in fuzz/ for a few seconds (nightly cargo-fuzz; installs it).
FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash scripts/fuzz-smoke.sh
echo "all tests passed"
