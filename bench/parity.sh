#!/usr/bin/env bash
# Parity: what each scheme costs and buys on the same data (bench/work/data/large, 2 GiB of
# large files, made by bench.py --prepare-only): backup time and peak RSS, space, the time to
# find and rebuild one lost pack (`aeon repair`, which reads every object), and the time to
# rebuild a lost location of a mirror and of a stripe. Page cache dropped before each timed run.
#   bench/parity.sh [SCHEMES...]     (default: none 4+1 10+2 16+2)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p aeon
A=$PWD/target/release/aeon
DATA=$PWD/bench/work/data/large
[ -d "$DATA" ] || python3 bench/bench.py --prepare-only
W=$(mktemp -d /tmp/aeon-parity-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export AEON_PASSWORD=bench
OUT=bench/results/parity-$(date -u +%H%M).md
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() { drop; /usr/bin/time -f "%e %M" -o "$W/t" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; echo "failed 0"; return; }; cat "$W/t"; }
size() { du -sb "$1" | cut -f1; }
{
echo "# Parity: cost and repair ($(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) cores)"
echo
echo "Data: $(du -sh "$DATA" | cut -f1) of large files (bench/work/data/large), 16 MiB packs, zstd:3."
echo
echo "| scheme | backup s | backup RSS MiB | repository MB | parity MB | overhead | repair, 1 pack lost: s | repair, nothing lost: s |"
echo "|---|---|---|---|---|---|---|---|"
} > "$OUT"
for scheme in "${@:-none 4+1 10+2 16+2}"; do
  for s in $scheme; do
    R=$W/repo-$s; rm -rf "$R"
    if [ "$s" = none ]; then $A init -q -r "$R"; else $A init -q -r "$R" --parity "$s"; fi
    read -r bt brss < <(timed $A -r "$R" backup "$DATA")
    total=$(size "$R"); par=$(size "$R/parity")
    packs=$(( total - par ))
    if [ "$s" = none ]; then
      echo "| none | $bt | $((brss / 1024)) | $((total / 1000000)) | 0 | 0% | - | - |" >> "$OUT"; rm -rf "$R"; continue
    fi
    read -r clean _ < <(timed $A -r "$R" repair)
    victim=$(find "$R/data" -type f -size +8M -print -quit)
    rm "$victim"
    read -r rt _ < <(timed $A -r "$R" repair)
    $A -r "$R" check --read-data -q
    echo "| $s | $bt | $((brss / 1024)) | $((total / 1000000)) | $((par / 1000000)) | $(python3 -c "print(f'{$par*100/$packs:.1f}%')") | $rt | $clean |" >> "$OUT"
    rm -rf "$R"
  done
done
# A lost location: a mirror over two folders, and a stripe 2+1 over three, one folder emptied.
M=$W/mirror; rm -rf "$M"*
$A init -q -r "$M-a" --location "$M-b"
$A -r "$M-a" backup -q "$DATA"
rm -rf "$M-b"; mkdir "$M-b"
read -r mt _ < <(timed $A -r "$M-a" repair)
rm -rf "$M"*
S=$W/stripe; rm -rf "$S"*
$A init -q -r "$S-a" --location "$S-b" --location "$S-c" --layout stripe
read -r sbt _ < <(timed $A -r "$S-a" backup "$DATA")
ssize=$(( $(size "$S-a") + $(size "$S-b") + $(size "$S-c") ))
rm -rf "$S-b"; mkdir "$S-b"
read -r srestore _ < <(timed $A -r "$S-a" restore latest --target "$W/restored")
rm -rf "$W/restored"
read -r st _ < <(timed $A -r "$S-a" repair)
$A -r "$S-a" check --read-data -q
{
echo
echo "Lost location: mirror over 2 folders, one emptied: \`aeon repair\` ${mt} s."
echo "Stripe 2+1 over 3 folders: backup ${sbt} s, $((ssize / 1000000)) MB over the three; with one emptied, restore ${srestore} s (its packs rebuilt from the other two), \`aeon repair\` ${st} s."
} >> "$OUT"
cat "$OUT"
