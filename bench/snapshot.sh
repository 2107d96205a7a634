#!/usr/bin/env bash
# Benchmark of snapshots (issue: snapshot), side by side on the same data:
# sysbench 8 tables x 250k rows (~496 MB), 2 threads each where the tool has threads.
#   mariadb-dump --single-transaction      (one thread, plain SQL)
#   mydumper -t 2 --trx-consistency-only   (no compression, and with -c: gzip)
#   understudy snapshot --threads 2        (zstd, chunk checksums, fsync)
# Usage: bench/snapshot.sh         (TABLES, ROWS, THREADS, RUNS override; SMALL_TABLES=N adds N tables of
#                                  20 rows each to sbtest)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-250000} THREADS=${THREADS:-2} RUNS=${RUNS:-3}
PORT=${PORT:-33091}
command -v mydumper >/dev/null || { echo "mydumper not found: apt-get install -y mydumper" >&2; exit 1; }
bench_start snap
start_server "$WORK/primary" "$PORT" 1 --log-bin="$WORK/primary/mariadb-bin" --binlog-format=ROW --sync-binlog=0
create_bench_user
sql "$PORT" -e "CREATE DATABASE sbtest"
sysbench_prepare
small_tables_prepare
sql "$PORT" -e "ANALYZE TABLE $(seq -s, -f 'sbtest.sbtest%g' 1 "$TABLES")" >/dev/null
echo "data: $(sql "$PORT" -N -e "SELECT ROUND(SUM(DATA_LENGTH+INDEX_LENGTH)/1048576) FROM information_schema.TABLES WHERE TABLE_SCHEMA='sbtest'") MiB in $TABLES tables"
write_config <<YAML
    snapshot:
      threads: $THREADS
YAML
td=() tm=() tc=() tu=()
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/dump.sql" "$WORK/mydumper" "$WORK/archive"
  sync; t0=$(now_ms)
  mariadb-dump --no-defaults -h127.0.0.1 -P"$PORT" -uroot --single-transaction sbtest >"$WORK/dump.sql"; sync
  td+=($(( $(now_ms) - t0 )))
  sync; t0=$(now_ms)
  mydumper -h 127.0.0.1 -P "$PORT" -u root -t "$THREADS" --trx-consistency-only -B sbtest -o "$WORK/mydumper" >/dev/null 2>&1; sync
  tm+=($(( $(now_ms) - t0 )))
  rm -rf "$WORK/mydumper-c"; sync; t0=$(now_ms)
  mydumper -h 127.0.0.1 -P "$PORT" -u root -t "$THREADS" --trx-consistency-only -c -B sbtest -o "$WORK/mydumper-c" >/dev/null 2>&1; sync
  tc+=($(( $(now_ms) - t0 )))
  sync; t0=$(now_ms)
  "$WORK/understudy" snapshot --config "$WORK/understudy.yaml" --source bench >/dev/null 2>"$WORK/snapshot.log"
  tu+=($(( $(now_ms) - t0 )))
done
D=$(median "${td[@]}") M=$(median "${tm[@]}") C=$(median "${tc[@]}") U=$(median "${tu[@]}")
echo "mariadb-dump --single-transaction: ${D} ms  runs: ${td[*]}  ($(( $(du -sb "$WORK/dump.sql" | cut -f1) / 1048576 )) MiB)"
echo "mydumper -t $THREADS --trx-consistency-only: ${M} ms  runs: ${tm[*]}  ($(( $(du -sb "$WORK/mydumper" | cut -f1) / 1048576 )) MiB)"
echo "mydumper -t $THREADS --trx-consistency-only -c (gzip): ${C} ms  runs: ${tc[*]}  ($(( $(du -sb "$WORK/mydumper-c" | cut -f1) / 1048576 )) MiB)"
echo "understudy snapshot --threads $THREADS: ${U} ms  runs: ${tu[*]}  ($(( $(du -sb "$WORK/archive" | cut -f1) / 1048576 )) MiB, zstd)"
echo "ratio mydumper/understudy: $(ratio "$M" "$U")x   mydumper -c/understudy: $(ratio "$C" "$U")x   mariadb-dump/understudy: $(ratio "$D" "$U")x  (above 1: understudy is faster)"
grep -o 'commit_block_ms=[0-9.]*' "$WORK/snapshot.log" | tail -1
