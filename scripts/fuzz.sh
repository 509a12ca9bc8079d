#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60).
#
#   scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address, -Cpasses=sancov-module, ...).
# On a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them; the sanitizer runtimes ship with the
# stable x86_64-unknown-linux-gnu standard library. Installs cargo-fuzz if missing. Corpora
# live in fuzz/corpus/<target> (not committed), crashes in fuzz/artifacts/<target>.
set -euo pipefail
secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list --fuzz-dir fuzz)
status=0
for t in $targets; do
    echo "== fuzz target $t: ${secs}s"
    mkdir -p "fuzz/corpus/$t"
    if ! cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=65536 -print_final_stats=1 2>&1 | tee "/tmp/fuzz-$t.log" | grep -E "^#|stat::|ERROR|panicked|SUMMARY" | tail -n 12; then
        status=1
    fi
    if grep -qE "ERROR: libFuzzer|panicked|SUMMARY: .*Sanitizer" "/tmp/fuzz-$t.log"; then
        echo "fuzz target $t FAILED (log: /tmp/fuzz-$t.log, artifacts: fuzz/artifacts/$t)"
        status=1
    fi
done
exit $status
