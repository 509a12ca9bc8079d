#!/usr/bin/env bash
# Runs every test of the project on a fresh machine (Debian 12 with the rustup toolchain): installs
# what the tests need, then formatting, lints, the no_std build, unit/integration/property tests,
# the loom models and the main-job demo.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check
# The kernel modules' Rust files are not cargo targets; check their formatting directly. Through
# stdin, so that rustfmt does not follow `mod sys;` into bindings that only Kbuild generates.
for f in relay/src/kernel/*.rs klog/src/kernel/*.rs kernel-tests/module/*.rs examples/kernel/*.rs; do
    rustfmt --edition 2021 --emit stdout < "$f" | cmp -s - "$f" || { echo "rustfmt: $f is not formatted"; exit 1; }
done

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "relay core builds as no_std without dependencies"
cargo build -p relay --no-default-features
if cargo tree -p relay --no-default-features -e normal --prefix none | grep -v '^relay ' | grep -q .; then
  echo "relay --no-default-features pulls in dependencies" >&2
  exit 1
fi

step "klog builds as no_std (the kernel build compiles the same sources)"
cargo build -p klog --no-default-features
cargo build -p klog --features off
cargo build -p klog --features log

step "tests"
cargo test --workspace --release
cargo test -p klog --release --features log --test log_bridge

step "loom models"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p relay --test loom --release

step "demos"
cargo run --release -p klog-examples --bin quickstart
cargo run --release -p klog-examples --bin relay-demo -- --messages 20000 --show 2
demo_out=$(mktemp -d)
cargo run --release -p klog-examples --bin klog-demo -- --events 20000 --out "$demo_out/trace"
cargo run --release -p klog-examples --bin klog-demo -- --events 20000 --out "$demo_out/ring" \
  --mode overwrite --subbuf-size 4096 --n-subbufs 4
rm -rf "$demo_out"
