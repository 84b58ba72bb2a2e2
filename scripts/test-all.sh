#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs unit, property and end-to-end tests
# (through the real binary) and a short fuzz run of every decoder of repository data.
# Usage: scripts/test-all.sh            (FUZZ_SECONDS=N to fuzz longer; FUZZ_SECONDS=0 to skip)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-10}"

step() { printf '\n==> %s\n' "$*"; }

step "tools"
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
if [ "$FUZZ_SECONDS" != 0 ] && ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# setpriv runs one test as an unprivileged user when the suite runs as root (util-linux).
command -v setpriv >/dev/null || { echo "setpriv (util-linux) is required" >&2; exit 1; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
cargo nextest run --workspace --no-fail-fast

if [ "$FUZZ_SECONDS" != 0 ]; then
    step "fuzz: ${FUZZ_SECONDS}s per target"
    export RUSTC_BOOTSTRAP=1   # cargo fuzz needs nightly flags; the stable compiler allows them with this
    for target in $(cargo fuzz list --fuzz-dir fuzz); do
        cargo fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 2>&1 \
            | grep -E 'Done|ERROR|panicked|SUMMARY' || true
        test "${PIPESTATUS[0]}" -eq 0 || { echo "fuzz target $target failed" >&2; exit 1; }
    done
fi
echo
echo "all tests passed"
