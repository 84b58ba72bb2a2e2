#!/usr/bin/env bash
# Backup and restore throughput on the local backend versus S3 (SeaweedFS `weed mini`), WebDAV
# (SeaweedFS) and SFTP (OpenSSH sshd), all on loopback, with the same data.
# Usage (as root, after scripts/test-all.sh has installed the servers):
#   bench/remote.sh DATA_DIR            e.g. a 1 GiB tree from: python3 bench/gen_tree.py /tmp/gib/src 1024
set -euo pipefail
DATA="$(realpath "${1:?usage: bench/remote.sh DATA_DIR}")"
cd "$(dirname "$0")/.."
cargo build --release --quiet
AEON="$PWD/target/release/aeon"
WEED=${AEON_TEST_WEED:-/opt/aeon-test-venv/bin/weed}
W=$(mktemp -d /tmp/aeon-remote-bench.XXXXXX); chmod 755 "$W"
PIDS=()
cleanup() { kill -9 "${PIDS[@]}" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

# SeaweedFS: S3 on 18733, WebDAV on 18734.
cat > "$W/s3.json" <<'EOF'
{"identities":[{"name":"admin","credentials":[{"accessKey":"benchaccess","secretKey":"benchsecret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
mkdir -p "$W/weed"
"$WEED" mini -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -master.port=19733 -volume.port=18735 -filer.port=18736 -s3.port=18733 -webdav.port=18734 \
    -admin.port=19736 -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$W/s3.json" \
    -filer.localSocket="$W/filer.sock" -s3.localSocket="$W/s3.sock" > "$W/weed.log" 2>&1 < /dev/null &
PIDS+=($!)
until curl -s -o /dev/null http://127.0.0.1:18733/; do sleep 0.2; done
until curl -s http://127.0.0.1:19733/dir/status | grep -q '"DataNodes":\[{'; do sleep 0.2; done
until curl -sf -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user benchaccess:benchsecret http://127.0.0.1:18733/bench; do sleep 0.5; done

# sshd with a key-only SFTP user.
U=aeonsftp
id $U >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin $U
usermod -p '*' $U
mkdir -p "$W/sftp" "$W/keys" /run/sshd; chown $U: "$W/sftp"
ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"; ssh-keygen -q -t ed25519 -N '' -f "$W/client_key"
cp "$W/client_key.pub" "$W/keys/$U"
cat > "$W/sshd_config" <<EOF
Port 12722
ListenAddress 127.0.0.1
HostKey $W/host_key
PidFile $W/sshd.pid
AuthorizedKeysFile $W/keys/%u
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers $U
Subsystem sftp internal-sftp
Match User $U
    ForceCommand internal-sftp
EOF
/usr/sbin/sshd -D -e -f "$W/sshd_config" > "$W/sshd.log" 2>&1 < /dev/null &
PIDS+=($!)
until (exec 3<>/dev/tcp/127.0.0.1/12722) 2>/dev/null; do sleep 0.1; done

export AEON_PASSWORD=bench AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret
export AEON_SFTP_KEY="$W/client_key" AEON_SFTP_KNOWN_HOSTS=accept
BYTES=$(du -sb "$DATA" | cut -f1)
printf '| backend | backup s | backup MB/s | restore s | restore MB/s |\n|---|---|---|---|---|\n'
for target in "local:$W/local-repo" "s3:s3:http://127.0.0.1:18733/bench/repo" \
    "webdav:webdav:http://127.0.0.1:18734/repo" "sftp:sftp:$U@127.0.0.1:12722/$W/sftp/repo"; do
    name=${target%%:*}; repo=${target#*:}
    "$AEON" -r "$repo" init -q
    sync; echo 3 > /proc/sys/vm/drop_caches
    b0=$(date +%s.%N); "$AEON" -r "$repo" backup "$DATA" -q; b1=$(date +%s.%N)
    rm -rf "$W/out"; sync; echo 3 > /proc/sys/vm/drop_caches
    r0=$(date +%s.%N); "$AEON" -r "$repo" restore latest --target "$W/out" -q; r1=$(date +%s.%N)
    awk -v n="$name" -v b="$BYTES" -v b0="$b0" -v b1="$b1" -v r0="$r0" -v r1="$r1" 'BEGIN {
        printf "| %s | %.2f | %.0f | %.2f | %.0f |\n", n, b1-b0, b/1e6/(b1-b0), r1-r0, b/1e6/(r1-r0) }'
    rm -rf "$W/out"
done
