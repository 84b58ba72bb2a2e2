#!/usr/bin/env bash
# Import speed: `aeon import restic|borg` of one snapshot of the benchmark's source tree, against
# doing it by hand (`restic restore` / `borg extract` to a folder, then `aeon backup` of it).
# Usage: bench/import.sh [DATASET]   (default: bench/work/data/src; needs a release build,
# restic and borg). Prints a Markdown table; page caches are warm for every step.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="$(realpath "${1:-bench/work/data/src}")"
AEON="$PWD/target/release/aeon"
W="$(mktemp -d "${TMPDIR:-/tmp}/aeon-import-bench.XXXXXX")"
trap 'rm -rf "$W"' EXIT
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench AEON_PASSWORD=bench AEON_FROM_PASSWORD=bench
export RESTIC_CACHE_DIR="$W/restic-cache" BORG_BASE_DIR="$W/borg-base"
secs() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
aeon_init() { "$AEON" -r "$1" init --kdf-memory 64 --kdf-iterations 1 >/dev/null; }

restic init -q -r "$W/restic"
restic backup -q -r "$W/restic" "$DATA"
borg init -e repokey "$W/borg" >/dev/null 2>&1
borg create --compression lz4 "$W/borg::one" "$DATA"
size=$(du -sb "$DATA" | cut -f1)

aeon_init "$W/a1"; t_import_restic=$(secs "$AEON" -r "$W/a1" import restic "$W/restic")
t_restic_restore=$(secs restic restore -q -r "$W/restic" latest --target "$W/r1")
aeon_init "$W/a2"; t_backup_r=$(secs "$AEON" -r "$W/a2" backup "$W/r1$DATA")
rm -rf "$W/r1"
aeon_init "$W/a3"; t_import_borg=$(secs "$AEON" -r "$W/a3" import borg "$W/borg")
mkdir "$W/r2"; t_borg_extract=$(cd "$W/r2" && secs borg extract "$W/borg::one")
aeon_init "$W/a4"; t_backup_b=$(secs "$AEON" -r "$W/a4" backup "$W/r2$DATA")

ratio() { echo "scale=2; ($2) / $1" | bc; }
mb() { echo "scale=0; $size / 1000000 / $1" | bc; }
echo "| source | aeon import s | MB/s | by hand: restore/extract s + aeon backup s | by hand / import |"
echo "|---|---|---|---|---|"
echo "| restic $(restic version | cut -d' ' -f2) | $t_import_restic | $(mb "$t_import_restic") | $t_restic_restore + $t_backup_r | $(ratio "$t_import_restic" "$t_restic_restore + $t_backup_r") |"
echo "| borg $(borg --version | cut -d' ' -f2) | $t_import_borg | $(mb "$t_import_borg") | $t_borg_extract + $t_backup_b | $(ratio "$t_import_borg" "$t_borg_extract + $t_backup_b") |"
echo
echo "$(du -sh "$DATA" | cut -f1) in $(find "$DATA" | wc -l) entries ($DATA)"
