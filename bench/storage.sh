#!/usr/bin/env bash
# Benchmark of object storage (issue 13), on a real S3 server on loopback (versitygw, posix backend on the
# same disk), with age encryption and zstd, side by side with the same work done on the local disk:
#  1. Upload throughput: `understudy run --until-caught-up` with a store, on an archive already caught up
#     locally, ships the whole archive (zstd + age + sha256 + PUT + commit points); against the same bytes
#     copied to another directory of the local disk and synced (cp + sync).
#  2. Remote lag under a write load: bench/lag archives and ships in-process (upload_interval 1s) while
#     sysbench oltp_write_only runs, and times single commits to the archive's fsync and to the store's
#     commit point that holds them: p50/p99.
#  3. Restore from the store alone (a new host: an empty archive directory, the config and the identity)
#     against the same restore from the local directory.
# Usage: bench/storage.sh     (TABLES, ROWS, THREADS, SAMPLES override)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-100000} THREADS=${THREADS:-2}
PORT=${PORT:-33301} S3PORT=${S3PORT:-33399}
VGW=$(command -v versitygw || echo "$(go env GOPATH)/bin/versitygw")
[ -x "$VGW" ] || { echo "versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0" >&2; exit 1; }
command -v sysbench >/dev/null || { echo "sysbench not found: apt-get install -y sysbench" >&2; exit 1; }
for c in curl python3; do command -v $c >/dev/null || { echo "$c not found: apt-get install -y $c" >&2; exit 1; }; done
bench_start storage
U="$WORK/understudy"

# The store.
mkdir -p "$WORK/s3/bench-bucket" "$WORK/vgw-meta"
export ROOT_ACCESS_KEY=benchkey ROOT_SECRET_KEY=benchsecret0123456789 TEST_S3_ACCESS=benchkey TEST_S3_SECRET=benchsecret0123456789
"$VGW" --port "127.0.0.1:$S3PORT" --quiet posix --sidecar "$WORK/vgw-meta" "$WORK/s3" >"$WORK/versitygw.log" 2>&1 &
BENCH_PIDS+=($!)
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$S3PORT) 2>/dev/null && break; sleep 0.1; done
(echo >/dev/tcp/127.0.0.1/$S3PORT) 2>/dev/null || { cat "$WORK/versitygw.log" >&2; exit 1; }
$U keygen --dir "$WORK/keys" >/dev/null

start_server "$WORK/primary" "$PORT" 1 --log-bin="$WORK/primary/mariadb-bin" --binlog-format=ROW \
  --max-binlog-size=1073741824 --sync-binlog=0 --gtid-domain-id=1
create_bench_user
sql "$PORT" -e "CREATE DATABASE sbtest"
STATUS=127.0.0.1:$((PORT + 50))
# config DIR IDENTITY(yes|no) writes DIR/understudy.yaml with the store.
config() {
  local dir=$1 identity=""
  mkdir -p "$dir"
  [ "$2" = yes ] && identity="    identity_file: $WORK/keys/age.key"
  WORK_SAVE=$WORK; WORK=$dir
  write_config <<YAML
    snapshot:
      threads: $THREADS
YAML
  WORK=$WORK_SAVE
  sed -i "s|listen: \"off\"|listen: $STATUS|" "$dir/understudy.yaml"
  cat - "$dir/understudy.yaml" >"$dir/u.tmp" <<YAML
storage:
  upload_interval: 1s
  s3:
    bucket: bench-bucket
    prefix: bench/
    endpoint: http://127.0.0.1:$S3PORT
    region: us-east-1
    access_key_env: TEST_S3_ACCESS
    secret_key_env: TEST_S3_SECRET
    path_style: true
  encryption:
    recipients_file: $WORK/keys/age.pub
$identity
YAML
  mv "$dir/u.tmp" "$dir/understudy.yaml"
}
config "$WORK/local" no
# The same config without the store: the local-only archive.
sed '/^storage:/,/^archive:/{/^archive:/!d}' "$WORK/local/understudy.yaml" >"$WORK/local/plain.yaml"

sysbench_prepare
sql "$PORT" -e "ANALYZE TABLE $(seq -s, -f 'sbtest.sbtest%g' 1 "$TABLES")" >/dev/null
$U run --config "$WORK/local/plain.yaml" --until-caught-up 2>"$WORK/run-local.log"
$U snapshot --config "$WORK/local/plain.yaml" --source bench >/dev/null 2>&1
BYTES=$(du -sb "$WORK/local/archive/bench" | cut -f1)
echo "data: $TABLES x $ROWS rows; the archive with its snapshot: $((BYTES / 1048576)) MiB"

# store_caught_up: run's /status says the store holds everything archived.
store_caught_up() {
  curl -fsS "http://$STATUS/status" 2>/dev/null | python3 -c 'import json, sys
s = json.load(sys.stdin)[0].get("store") or {}
sys.exit(0 if s.get("last_upload") and s.get("behind_bytes") == 0 else 1)' 2>/dev/null
}

echo
echo "== 1. upload throughput (the whole archive and its snapshot, encrypted, to versitygw on loopback)"
t0=$(now_ms)
cp -r "$WORK/local/archive" "$WORK/copy" && sync
TC=$(( $(now_ms) - t0 ))
t0=$(now_ms)
# run ships the archive (already caught up) before it exits; the snapshot is shipped by the snapshot loop,
# so a short run with the status page waits for it.
$U run --config "$WORK/local/understudy.yaml" 2>"$WORK/run-ship.log" &
RUNPID=$!
until store_caught_up; do
  kill -0 $RUNPID 2>/dev/null || { tail -5 "$WORK/run-ship.log" >&2; exit 1; }
  sleep 0.05
done
until grep -q "snapshot shipped to the store" "$WORK/run-ship.log"; do
  kill -0 $RUNPID 2>/dev/null || { tail -5 "$WORK/run-ship.log" >&2; exit 1; }
  sleep 0.05
done
TU=$(( $(now_ms) - t0 ))
kill -TERM $RUNPID; wait $RUNPID || true
STORED=$(du -sb "$WORK/s3/bench-bucket" | cut -f1)
echo "cp -r + sync to the local disk:   ${TC} ms ($(awk -v b="$BYTES" -v t="$TC" 'BEGIN { printf "%.0f", b / 1048576 / (t / 1000) }') MiB/s)"
echo "understudy ship to the store:     ${TU} ms ($(awk -v b="$BYTES" -v t="$TU" 'BEGIN { printf "%.0f", b / 1048576 / (t / 1000) }') MiB/s; stored $((STORED / 1048576)) MiB, zstd + age)"
echo "ratio local/store: $(ratio "$TC" "$TU")x"

echo
echo "== 2. commit-to-store lag under sysbench oltp_write_only, $THREADS threads (upload_interval 1s, zstd + age)"
# bench/lag commits a row every 5-55 ms and times it to the archive's fsync and to the store's commit point
# (a tip or manifest that holds it), while sysbench writes.
go build -o "$WORK/lag" ./bench/lag
sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT" --mysql-user=root \
  --tables="$TABLES" --table-size="$ROWS" --threads="$THREADS" --time=3600 run >"$WORK/sysbench.log" 2>&1 &
SBPID=$!
"$WORK/lag" --port "$PORT" --dir "$WORK/lag-archive" --samples "${SAMPLES:-150}" \
  --s3-endpoint "http://127.0.0.1:$S3PORT" --s3-bucket bench-bucket --recipients "$WORK/keys/age.pub" --upload-interval 1s
kill -KILL $SBPID 2>/dev/null; wait $SBPID 2>/dev/null || true
grep -o 'transactions: *[0-9]* *([0-9.]* per sec' "$WORK/sysbench.log" || true

echo
echo "== 3. restore of the snapshot + the archive after it: from the local directory, then from the store alone"
END_POS=$(sql "$PORT" -N -e 'SELECT @@gtid_binlog_pos')
# Everything shipped (a one-shot run ships before it exits).
$U run --config "$WORK/local/understudy.yaml" --until-caught-up 2>>"$WORK/run-lag.log"
config "$WORK/newhost" yes
export UNDERSTUDY_TARGET_PASSWORD=
n=0
target() { n=$((n + 1)); start_server "$WORK/target$n" $((PORT + n)) $((100 + n)) --log-bin=OFF; P=$((PORT + n)); }
timed() { local t0; t0=$(now_ms); "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }; echo $(( $(now_ms) - t0 )); }
target; TL=$(timed $U restore --config "$WORK/local/plain.yaml" --source bench --target "root@127.0.0.1:$P" --until-gtid "$END_POS" --threads "$THREADS")
grep -o 'restored .*' "$WORK/last.log" | head -1
target; TS=$(timed $U restore --config "$WORK/newhost/understudy.yaml" --source bench --target "root@127.0.0.1:$P" --until-gtid "$END_POS" --threads "$THREADS")
grep -o 'restored .*' "$WORK/last.log" | head -1
echo "restore from the local directory: ${TL} ms"
echo "restore from the store alone:     ${TS} ms (fetch, decrypt, check, then the same restore)"
echo "ratio local/store: $(ratio "$TL" "$TS")x"
