#!/usr/bin/env bash
# Benchmark of the archiver (issue: archive), side by side with the stock tool.
#  1. Catch-up: archive an existing sysbench binlog (8 tables x 250k rows, ROW format, with ANNOTATE_ROWS)
#     with `understudy run --until-caught-up` vs `mariadb-binlog --read-from-remote-server --raw`.
#  2. Peak RSS while archiving one 500 MB transaction, understudy vs mariadb-binlog.
#  3. Commit-to-durable lag (p50/p99) under a sysbench write load (bench/lag).
# Usage: bench/archive.sh            (TABLES, ROWS, RUNS, BIGROWS override the sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-250000} RUNS=${RUNS:-3} BIGROWS=${BIGROWS:-500000}
PORT=${PORT:-33071}
bench_start archive
go build -o "$WORK/lag" ./bench/lag

start_server "$WORK/primary" "$PORT" 1 --log-bin="$WORK/primary/mariadb-bin" --binlog-format=ROW \
  --max-binlog-size=1073741824 --sync-binlog=0 --gtid-domain-id=1
create_bench_user
sql "$PORT" -e "CREATE DATABASE sbtest"
echo "sysbench prepare: $TABLES tables x $ROWS rows"
sysbench_prepare
BINLOG_BYTES=$(sql "$PORT" -N -e "SHOW BINARY LOGS" | awk '{ s += $2 } END { print s }')
echo "primary binlog: $((BINLOG_BYTES / 1048576)) MiB, $(sql "$PORT" -N -e 'SELECT @@gtid_binlog_pos')"

write_config </dev/null

FIRST=$(sql "$PORT" -N -e "SHOW BINARY LOGS" | head -1 | awk '{print $1}')
echo
echo "== 1. catch-up of the existing binlog ($RUNS runs each, median)"
tm=() tu=()
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/raw" && mkdir -p "$WORK/raw"
  sync; t0=$(now_ms)
  mariadb-binlog --no-defaults --read-from-remote-server --raw --host=127.0.0.1 --port="$PORT" --user=root \
    --result-file="$WORK/raw/" --to-last-log "$FIRST"
  sync; t1=$(now_ms)   # mariadb-binlog does not fsync; the sync is part of making it durable
  tm+=($((t1 - t0)))
  rm -rf "$WORK/archive"
  t0=$(now_ms)
  "$WORK/understudy" run --config "$WORK/understudy.yaml" --until-caught-up 2>"$WORK/understudy.log"
  t1=$(now_ms)
  tu+=($((t1 - t0)))
done
M=$(median "${tm[@]}") U=$(median "${tu[@]}")
RAW_BYTES=$(du -sb "$WORK/raw" | cut -f1) ARCH_BYTES=$(du -sb --exclude='*.idx' "$WORK/archive" | cut -f1)
echo "mariadb-binlog --raw (+sync): ${M} ms  runs: ${tm[*]}  ($((RAW_BYTES / 1048576)) MiB)"
echo "understudy (fsync + index):   ${U} ms  runs: ${tu[*]}  ($((ARCH_BYTES / 1048576)) MiB)"
echo "ratio mariadb-binlog/understudy: $(ratio "$M" "$U")x  (above 1 means understudy is faster)"

echo
echo "== 2. peak RSS with one $((BIGROWS / 1000))k-row (~$((BIGROWS / 1000)) MB) transaction"
rm -rf "$WORK/archive"
"$WORK/understudy" run --config "$WORK/understudy.yaml" --until-caught-up 2>>"$WORK/understudy.log"
sql "$PORT" -e "CREATE TABLE sbtest.big (id INT PRIMARY KEY, pad VARCHAR(2000)) ENGINE=InnoDB;
  INSERT INTO sbtest.big SELECT seq, REPEAT(SHA2(seq, 256), 16) FROM sbtest.seq_1_to_$BIGROWS;"
LAST=$(sql "$PORT" -N -e "SHOW BINARY LOGS" | tail -1 | awk '{print $1}')
rm -rf "$WORK/raw" && mkdir -p "$WORK/raw"
/usr/bin/time -f '%M' -o "$WORK/rss.mariadb-binlog" mariadb-binlog --no-defaults --read-from-remote-server --raw \
  --host=127.0.0.1 --port="$PORT" --user=root --result-file="$WORK/raw/" --to-last-log "$FIRST"
/usr/bin/time -f '%M' -o "$WORK/rss.understudy" "$WORK/understudy" run --config "$WORK/understudy.yaml" --until-caught-up 2>>"$WORK/understudy.log"
MRSS=$(tail -1 "$WORK/rss.mariadb-binlog") URSS=$(tail -1 "$WORK/rss.understudy")
echo "mariadb-binlog --raw peak RSS: $((MRSS / 1024)) MiB"
echo "understudy peak RSS:           $((URSS / 1024)) MiB (target <= 64 MiB)"

echo
echo "== 3. commit-to-durable lag under a sysbench oltp_write_only load"
sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT" --mysql-user=root \
  --tables="$TABLES" --table-size="$ROWS" --threads=2 --time=300 --report-interval=0 run >"$WORK/sysbench-run.log" &
SB=$!
sleep 2
"$WORK/lag" --port "$PORT" --dir "$WORK/lag-archive" --samples 500
kill $SB 2>/dev/null || true
wait $SB || true
grep -E "transactions:" "$WORK/sysbench-run.log" | sed 's/^ */sysbench load: /' || true
