#!/usr/bin/env bash
# The benchmark: installs the peers, builds Aeon, measures the in-memory pipeline limit and the
# index size, then runs every tool on the same data (bench/bench.py). Needs root (it drops the
# page cache) and about 15 GB of free disk. Results go to bench/results/.
#   bench/run.sh [--reps N] [--datasets src,large,small] [--tools aeon,restic,rustic,borg]
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
command -v restic >/dev/null && command -v borg >/dev/null && [ -x /usr/bin/time ] || {
    apt-get update -qq && apt-get install -y -qq --no-upgrade restic borgbackup rsync time; }
command -v rustic >/dev/null || cargo install rustic-rs --locked
cargo build --release -p aeon -p aeon-core --examples --bins
mkdir -p bench/results
python3 bench/bench.py --prepare-only
# The pipeline limit is measured by bench.py in every repetition, beside the tools.
./target/release/examples/index_memory 10000000 > bench/results/index.md
exec python3 bench/bench.py "$@"
