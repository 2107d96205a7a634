#!/usr/bin/env bash
# Benchmark of restore (issue: restore), side by side on the same data:
#  1. Snapshot load of sysbench 8 tables x 250k rows: understudy restore (LOAD DATA from zstd chunks,
#     secondary indexes after the data, chunk checksums verified) vs myloader -t 2 vs mariadb < dump.sql.
#  2. Binlog replay of the same data's ROW binlog (~733 MiB): understudy restore from an empty snapshot
#     (the target replicates from understudy's binlog server with 2 parallel applier threads)
#     vs mariadb-binlog FILE | mariadb.
# Usage: bench/restore.sh          (TABLES, ROWS override; THREADS the tools' threads; SMALL_TABLES=N adds N
#                                  tables of 20 rows each to sbtest; MYDUMPER_ROWS=N has mydumper cut tables
#                                  into files of N rows, which myloader needs to load one table in parallel;
#                                  PARTS=load skips the binlog replay)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-250000} THREADS=${THREADS:-2}
PORT=${PORT:-33101}
command -v myloader >/dev/null || { echo "myloader not found: apt-get install -y mydumper" >&2; exit 1; }
bench_start restore
start_server "$WORK/primary" "$PORT" 1 --log-bin="$WORK/primary/mariadb-bin" --binlog-format=ROW \
  --max-binlog-size=1073741824 --sync-binlog=0 --gtid-domain-id=1
create_bench_user
sql "$PORT" -e "CREATE DATABASE sbtest"
write_config <<YAML
    snapshot:
      threads: $THREADS
YAML
U="$WORK/understudy"
$U snapshot --config "$WORK/understudy.yaml" --source bench >/dev/null 2>&1   # empty: the replay base
EMPTY_POS=$(sql "$PORT" -N -e 'SELECT @@gtid_binlog_pos')
sysbench_prepare
small_tables_prepare
sql "$PORT" -e "ANALYZE TABLE $(seq -s, -f 'sbtest.sbtest%g' 1 "$TABLES")" >/dev/null
END_POS=$(sql "$PORT" -N -e 'SELECT @@gtid_binlog_pos')
$U run --config "$WORK/understudy.yaml" --until-caught-up 2>"$WORK/run.log"
sleep 1
$U snapshot --config "$WORK/understudy.yaml" --source bench >/dev/null 2>&1   # full: the load benchmark
mariadb-dump --no-defaults -h127.0.0.1 -P"$PORT" -uroot --single-transaction --databases sbtest >"$WORK/dump.sql"
mydumper -h 127.0.0.1 -P "$PORT" -u root -t "$THREADS" ${MYDUMPER_ROWS:+--rows "$MYDUMPER_ROWS"} --trx-consistency-only -B sbtest -o "$WORK/mydumper" >/dev/null 2>&1
echo "data: $TABLES x $ROWS rows, binlog $(( $(sql "$PORT" -N -e "SHOW BINARY LOGS" | awk '{ s += $2 } END { print s }') / 1048576 )) MiB, $EMPTY_POS -> $END_POS"

TARGET_ARGS=(--innodb-flush-log-at-trx-commit=2 --log-bin=OFF)
n=0
# target starts a fresh server; its port is in P. (Not in a subshell: the cleanup must know it.)
target() { n=$((n + 1)); start_server "$WORK/target$n" $((PORT + n)) $((100 + n)) "${TARGET_ARGS[@]}"; P=$((PORT + n)); }
timed() { local t0; t0=$(now_ms); "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }; echo $(( $(now_ms) - t0 )); }
export UNDERSTUDY_TARGET_PASSWORD=

echo
echo "== 1. snapshot load"
target; TU=$(timed $U restore --config "$WORK/understudy.yaml" --source bench --target root@127.0.0.1:$P --until-gtid "$END_POS" --threads "$THREADS")
grep -o 'verified: .*' "$WORK/last.log" || true
target; TM=$(timed myloader -h 127.0.0.1 -P "$P" -u root -t "$THREADS" -d "$WORK/mydumper")
target; TD=$(timed sh -c "mariadb --no-defaults -h127.0.0.1 -P$P -uroot < $WORK/dump.sql")
echo "understudy restore (load + verify): ${TU} ms"
echo "myloader -t $THREADS:                  ${TM} ms"
echo "mariadb < dump.sql:                 ${TD} ms"
echo "ratio myloader/understudy: $(ratio "$TM" "$TU")x (target >= 1.5)   mariadb/understudy: $(ratio "$TD" "$TU")x"

[ "${PARTS:-all}" = load ] && exit 0
echo
echo "== 2. binlog replay of $EMPTY_POS -> $END_POS"
EMPTY_ID=$($U snapshots --config "$WORK/understudy.yaml" --source bench --json | grep -o '"id": "[^"]*"' | head -1 | cut -d'"' -f4)
target; TR=$(timed $U restore --config "$WORK/understudy.yaml" --source bench --target root@127.0.0.1:$P --snapshot "$EMPTY_ID" --until-gtid "$END_POS" --threads "$THREADS")
grep -o 'transactions replayed.*' "$WORK/last.log" || true
target
TP=$(timed sh -c "mariadb-binlog --no-defaults $WORK/primary/mariadb-bin.[0-9]* | mariadb --no-defaults -h127.0.0.1 -P$P -uroot")
echo "understudy restore (replay through the binlog server): ${TR} ms"
echo "mariadb-binlog | mariadb:                              ${TP} ms"
echo "ratio pipe/understudy: $(ratio "$TP" "$TR")x (target >= 2)"
