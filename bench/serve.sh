#!/usr/bin/env bash
# Benchmark of the binlog server (issue: serve). A fresh MariaDB replica
# catches up a sysbench binlog (8 tables x 250k rows, ROW) three ways, on the
# same data and with the same replica settings:
#   A. replicating from the original primary,
#   B. replicating from understudy's binlog server (the archive of that primary),
#   C. mariadb-binlog FILE | mariadb (the usual manual replay).
# Usage: bench/serve.sh            (TABLES, ROWS override the size; THREADS the replicas' parallel appliers;
#                                  RUNS the runs of A and B, median; MODE=io times the replicas' IO thread
#                                  alone, and skips C; GO_TAGS=profile with UNDERSTUDY_CPU_PROFILE=F profiles
#                                  the binlog server)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-250000} THREADS=${THREADS:-2} RUNS=${RUNS:-1} MODE=${MODE:-all}
PORT=${PORT:-33081} SERVE_PORT=${SERVE_PORT:-33082}
bench_start serve

start_server "$WORK/primary" "$PORT" 1 --log-bin="$WORK/primary/mariadb-bin" --binlog-format=ROW \
  --max-binlog-size=1073741824 --sync-binlog=0 --gtid-domain-id=1
create_bench_user
sql "$PORT" -e "CREATE DATABASE sbtest"
echo "sysbench prepare: $TABLES tables x $ROWS rows"
sysbench_prepare
POS=$(sql "$PORT" -N -e 'SELECT @@gtid_binlog_pos')
echo "primary binlog: $(( $(sql "$PORT" -N -e "SHOW BINARY LOGS" | awk '{ s += $2 } END { print s }') / 1048576 )) MiB, $POS"

write_config <<YAML
    serve:
      listen: 127.0.0.1:$SERVE_PORT
      user: bench
      password: benchpw
YAML
"$WORK/understudy" run --config "$WORK/understudy.yaml" --until-caught-up 2>"$WORK/understudy.log"

REPLICA_ARGS=(--slave-parallel-threads=$THREADS --slave-parallel-mode=optimistic --log-bin=OFF)

# catch_up NAME HOST_PORT RPORT: a fresh replica of HOST_PORT, timed until it has $POS; the time is in T.
# With MODE=io only its IO thread runs, timed until its relay log has $POS (the sending side's speed).
# (Not in a subshell: the cleanup must know the replica's pid.)
catch_up() {
  local dir=$WORK/replica-$1 rport=$3
  start_server "$dir" "$rport" 50 "${REPLICA_ARGS[@]}"
  local pid=${BENCH_PIDS[-1]} t0 st
  t0=$(now_ms)
  if [ "$MODE" = io ]; then
    sql "$rport" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$2, MASTER_USER='bench', MASTER_PASSWORD='benchpw', MASTER_USE_GTID=slave_pos; START SLAVE IO_THREAD;"
    until st=$(sql "$rport" -e 'SHOW SLAVE STATUS\G') && echo "$st" | grep -q "Gtid_IO_Pos: $POS\$"; do
      err=$(echo "$st" | grep -E 'Last_IO_Error: .+' || true)
      [ -z "$err" ] || { echo "replica $1 failed: $err" >&2; exit 1; }
      sleep 0.05
    done
  else
    sql "$rport" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$2, MASTER_USER='bench', MASTER_PASSWORD='benchpw', MASTER_USE_GTID=slave_pos; START SLAVE;"
    until [ "$(sql "$rport" -N -e 'SELECT @@gtid_slave_pos')" = "$POS" ]; do
      err=$(sql "$rport" -e 'SHOW SLAVE STATUS\G' | grep -E 'Last_(IO|SQL)_Error: .+' || true)
      [ -z "$err" ] || { echo "replica $1 failed: $err" >&2; exit 1; }
      sleep 0.1
    done
  fi
  T=$(( $(now_ms) - t0 ))
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

echo
echo "== replica catch-up of $POS (MODE=$MODE, $RUNS runs, the order alternating)"
"$WORK/understudy" serve --config "$WORK/understudy.yaml" --source bench >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
BENCH_PIDS+=($SERVE_PID)
sleep 1
ta=() tb=()
for r in $(seq "$RUNS"); do
  if [ $((r % 2)) = 1 ]; then
    catch_up primary$r "$PORT" 33083; ta+=($T); catch_up understudy$r "$SERVE_PORT" 33084; tb+=($T)
  else
    catch_up understudy$r "$SERVE_PORT" 33084; tb+=($T); catch_up primary$r "$PORT" 33083; ta+=($T)
  fi
done
TA=$(median "${ta[@]}") TB=$(median "${tb[@]}")
kill -INT "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
echo "A. replica <- original primary:        ${TA} ms  runs: ${ta[*]}"
echo "B. replica <- understudy binlog server: ${TB} ms  runs: ${tb[*]}  $(grep -h 'peak RSS' "$WORK/serve.log" || true)"
echo "ratio A/B (primary as source / understudy as source): $(ratio "$TA" "$TB")x  (1 or more: understudy is at least as fast)"
[ "$MODE" = io ] && exit 0
start_server "$WORK/target-pipe" 33085 51 --log-bin=OFF
t0=$(now_ms)
mariadb-binlog --no-defaults "$WORK"/primary/mariadb-bin.[0-9]* | sql 33085
TC=$(( $(now_ms) - t0 ))
echo "C. mariadb-binlog | mariadb:            ${TC} ms"
echo "ratio C/B (pipe / understudy as source):              $(ratio "$TC" "$TB")x"
