#!/usr/bin/env bash
# Benchmark of the binlog server (issue: serve). A fresh MariaDB replica
# catches up a sysbench binlog (8 tables x 250k rows, ROW) three ways, on the
# same data and with the same replica settings:
#   A. replicating from the original primary,
#   B. replicating from understudy's binlog server (the archive of that primary),
#   C. mariadb-binlog FILE | mariadb (the usual manual replay).
# Usage: bench/serve.sh            (TABLES, ROWS override the size; THREADS the replicas' parallel appliers)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-250000} THREADS=${THREADS:-2}
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
# (Not in a subshell: the cleanup must know the replica's pid.)
catch_up() {
  local dir=$WORK/replica-$1 rport=$3
  start_server "$dir" "$rport" 50 "${REPLICA_ARGS[@]}"
  local t0; t0=$(now_ms)
  sql "$rport" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$2, MASTER_USER='bench', MASTER_PASSWORD='benchpw', MASTER_USE_GTID=slave_pos; START SLAVE;"
  until [ "$(sql "$rport" -N -e 'SELECT @@gtid_slave_pos')" = "$POS" ]; do
    err=$(sql "$rport" -e 'SHOW SLAVE STATUS\G' | grep -E 'Last_(IO|SQL)_Error: .+' || true)
    [ -z "$err" ] || { echo "replica $1 failed: $err" >&2; exit 1; }
    sleep 0.1
  done
  T=$(( $(now_ms) - t0 ))
}

echo
echo "== replica catch-up of $POS"
"$WORK/understudy" serve --config "$WORK/understudy.yaml" --source bench >"$WORK/serve.log" 2>&1 &
BENCH_PIDS+=($!)
sleep 1
catch_up primary "$PORT" 33083; TA=$T
echo "A. replica <- original primary:        ${TA} ms"
catch_up understudy "$SERVE_PORT" 33084; TB=$T
echo "B. replica <- understudy binlog server: ${TB} ms"
start_server "$WORK/target-pipe" 33085 51 --log-bin=OFF
t0=$(now_ms)
mariadb-binlog --no-defaults "$WORK"/primary/mariadb-bin.[0-9]* | sql 33085
TC=$(( $(now_ms) - t0 ))
echo "C. mariadb-binlog | mariadb:            ${TC} ms"
echo "ratio A/B (primary as source / understudy as source): $(ratio "$TA" "$TB")x  (1 or more: understudy is at least as fast)"
echo "ratio C/B (pipe / understudy as source):              $(ratio "$TC" "$TB")x"
